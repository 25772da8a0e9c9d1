//! Index page parsers: PEP 503 simple HTML, PEP 691 simple JSON (with the PEP 700 fields),
//! flat find-links HTML pages (release pages, directory listings) and project list pages.
//!
//! Everything here is pure: bytes of a page plus the URL it came from in, plain data out.
//! This module must not do network or file I/O, choose versions, or parse dist filenames
//! (filenames stay `String`s; `crate::filename` interprets them).

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;
use url::Url;

/// The PEP 691 JSON content type, version 1.
pub const SIMPLE_JSON_CONTENT_TYPE: &str = "application/vnd.pypi.simple.v1+json";

/// The PEP 691 HTML content type, version 1.
pub const SIMPLE_HTML_CONTENT_TYPE: &str = "application/vnd.pypi.simple.v1+html";

/// `Accept` header for simple-API requests: JSON v1 preferred, then HTML v1, then any HTML.
pub const SIMPLE_ACCEPT: &str = "application/vnd.pypi.simple.v1+json, \
                                 application/vnd.pypi.simple.v1+html;q=0.2, \
                                 text/html;q=0.01";

/// Filename endings kept by [`parse_find_links_html`] (compared case-insensitively).
pub const DIST_EXTENSIONS: &[&str] = &[".whl", ".tar.gz", ".zip", ".tar.bz2", ".tgz"];

/// Hashes published for a file. Algorithm names are lowercase, digests lowercase hex.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hashes {
    /// The SHA-256 digest, 64 lowercase hex digits.
    pub sha256: Option<String>,
    /// Every other algorithm the index published (`md5`, `sha512`, ...), name → hex digest.
    pub other: BTreeMap<String, String>,
}

impl Hashes {
    /// True when no digest at all is known.
    pub fn is_empty(&self) -> bool {
        self.sha256.is_none() && self.other.is_empty()
    }
}

/// Whether (and why) a file is yanked (PEP 592).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Yanked {
    #[default]
    No,
    Yes {
        reason: Option<String>,
    },
}

impl Yanked {
    pub fn is_yanked(&self) -> bool {
        matches!(self, Yanked::Yes { .. })
    }
}

/// Whether the index serves the file's METADATA separately at `<url>.metadata` (PEP 658/714).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CoreMetadataRef {
    #[default]
    Absent,
    Present {
        /// SHA-256 of the `.metadata` file, lowercase hex, when the index published it.
        sha256: Option<String>,
    },
}

impl CoreMetadataRef {
    pub fn is_present(&self) -> bool {
        matches!(self, CoreMetadataRef::Present { .. })
    }
}

/// One downloadable file listed on an index page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistFile {
    /// The file name: the last path segment of the URL, percent-decoded (HTML), or the
    /// `filename` key (JSON). Never contains `/` or `\`.
    pub filename: String,
    /// Absolute URL, resolved against the page URL (or `<base href>`), fragment removed.
    pub url: Url,
    pub hashes: Hashes,
    /// The `Requires-Python` specifier text, HTML-unescaped; `None` when absent or empty.
    pub requires_python: Option<String>,
    pub yanked: Yanked,
    pub core_metadata: CoreMetadataRef,
    /// File size in bytes (PEP 700, JSON only).
    pub size: Option<u64>,
    /// Upload time as published (PEP 700, JSON only), RFC 3339 text kept verbatim.
    pub upload_time: Option<String>,
}

impl DistFile {
    /// The PEP 658 metadata URL: the file URL with `.metadata` appended to its path
    /// (any query string is kept).
    pub fn metadata_url(&self) -> Url {
        let mut url = self.url.clone();
        let path = format!("{}.metadata", url.path());
        url.set_path(&path);
        url
    }
}

/// A parsed project page (`/simple/<project>/`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectPage {
    pub files: Vec<DistFile>,
    /// The names of the files a filtered parse passed over (see
    /// [`parse_simple_json_filtered`]); checked no further than their name. Empty otherwise.
    pub other_names: Vec<String>,
    /// `meta.api-version` (JSON) or `<meta name="pypi:repository-version">` (HTML), if given.
    pub api_version: Option<String>,
}

/// Why an index page could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error(
        "index page {url} is not an HTML document: {reason}; check that the index URL points \
         at a simple-API or find-links page"
    )]
    NotHtml { url: String, reason: String },
    #[error(
        "index page {url} is not valid JSON at line {line}, column {column}: {message}; \
         the server sent a malformed or truncated PEP 691 response"
    )]
    InvalidJson {
        url: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error(
        "index page {url} uses simple-API version {version}, but only major version 1 is \
         supported; pin the index to an older API or upgrade comfypak"
    )]
    UnsupportedApiVersion { url: String, version: String },
    #[error("index page {url} has an invalid API version {version:?}: expected `MAJOR.MINOR`")]
    InvalidApiVersion { url: String, version: String },
    #[error("index page {url} has a link {href:?} that is not a valid URL: {message}")]
    BadLinkUrl {
        url: String,
        href: String,
        message: String,
    },
    #[error("index page {url}: link {href:?} has an invalid hash {hash:?}: {reason}")]
    BadHash {
        url: String,
        href: String,
        hash: String,
        reason: String,
    },
    #[error("index page {url}: link {href:?} has an unusable file name {filename:?}: {reason}")]
    BadFilename {
        url: String,
        href: String,
        filename: String,
        reason: String,
    },
    #[error("index page {url} has an unsupported content type {content_type:?}; expected {SIMPLE_JSON_CONTENT_TYPE}, {SIMPLE_HTML_CONTENT_TYPE} or text/html")]
    UnsupportedContentType { url: String, content_type: String },
}

pub use crate::wheel::normalize_name;

/// Parse a project page by its response `Content-Type` (JSON v1, HTML v1 or `text/html`;
/// a missing content type is treated as HTML, as `file://` pages have none).
pub fn parse_simple_page(
    page_url: &Url,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<ProjectPage, PageError> {
    parse_simple_page_filtered(page_url, content_type, body, &|_| true)
}

/// [`parse_simple_page`] with a filter on file names (see [`parse_simple_json_filtered`]).
pub fn parse_simple_page_filtered(
    page_url: &Url,
    content_type: Option<&str>,
    body: &[u8],
    keep: &dyn Fn(&str) -> bool,
) -> Result<ProjectPage, PageError> {
    let essence = content_type
        .map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    match essence.as_str() {
        SIMPLE_JSON_CONTENT_TYPE | "application/json" => {
            parse_simple_json_filtered(page_url, body, keep)
        }
        "" | SIMPLE_HTML_CONTENT_TYPE | "text/html" | "application/xhtml+xml" | "text/plain" => {
            parse_simple_html_filtered(page_url, &String::from_utf8_lossy(body), keep)
        }
        other => Err(PageError::UnsupportedContentType {
            url: page_url.to_string(),
            content_type: other.to_string(),
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// HTML
// ---------------------------------------------------------------------------------------------

/// Parse a PEP 503 project page. Every anchor with an `href` that resolves to a file name is a
/// file; anchors to non-file URLs (`mailto:`, a trailing `/`) are skipped.
pub fn parse_simple_html(page_url: &Url, body: &str) -> Result<ProjectPage, PageError> {
    parse_simple_html_filtered(page_url, body, &|_| true)
}

/// [`parse_simple_html`], decoding in full only the files whose name `keep` accepts; the
/// others are listed in [`ProjectPage::other_names`].
pub fn parse_simple_html_filtered(
    page_url: &Url,
    body: &str,
    keep: &dyn Fn(&str) -> bool,
) -> Result<ProjectPage, PageError> {
    let doc = HtmlDocument::parse(page_url, body)?;
    let api_version = doc.repository_version.clone();
    if let Some(version) = &api_version {
        check_api_version(page_url, version)?;
    }
    let base = doc.base_url(page_url)?;
    let mut files = Vec::new();
    let mut other_names = Vec::new();
    for anchor in &doc.anchors {
        match dist_file_from_anchor(page_url, &base, anchor, keep)? {
            Some(Anchored::File(file)) => files.push(*file),
            Some(Anchored::Other(name)) => other_names.push(name),
            None => {}
        }
    }
    Ok(ProjectPage {
        files,
        other_names,
        api_version,
    })
}

/// Parse any HTML page of links (a release page, a directory listing) as a find-links source:
/// only links whose file name ends in one of [`DIST_EXTENSIONS`] are kept, duplicates (same
/// URL) are dropped, and the same attributes as on simple pages are honoured.
pub fn parse_find_links_html(page_url: &Url, body: &str) -> Result<Vec<DistFile>, PageError> {
    let doc = HtmlDocument::parse(page_url, body)?;
    let base = doc.base_url(page_url)?;
    let mut files: Vec<DistFile> = Vec::new();
    let mut seen_urls = std::collections::HashSet::new();
    for anchor in &doc.anchors {
        let Some(href) = anchor.attr("href") else {
            continue;
        };
        // Cheap pre-filter before any validation: in-page links and pages are not dists.
        let Ok(resolved) = base.join(href.trim_matches(is_html_whitespace)) else {
            continue;
        };
        let Some(filename) = last_segment_decoded(&resolved) else {
            continue;
        };
        if !has_dist_extension(&filename) {
            continue;
        }
        if let Some(Anchored::File(file)) =
            dist_file_from_anchor(page_url, &base, anchor, &|_| true)?
        {
            if seen_urls.insert(file.url.to_string()) {
                files.push(*file);
            }
        }
    }
    Ok(files)
}

/// True when `filename` ends in one of [`DIST_EXTENSIONS`] (case-insensitive).
pub fn has_dist_extension(filename: &str) -> bool {
    let lower = filename.to_ascii_lowercase();
    DIST_EXTENSIONS.iter().any(|ext| lower.ends_with(ext))
}

/// Parse a PEP 503 root page (`/simple/`) into normalized project names, in page order,
/// without duplicates. The anchor text is the name; an anchor without text falls back to the
/// last non-empty path segment of its `href`.
pub fn parse_project_list_html(page_url: &Url, body: &str) -> Result<Vec<String>, PageError> {
    let doc = HtmlDocument::parse(page_url, body)?;
    let mut names = Vec::new();
    for anchor in &doc.anchors {
        let text = anchor.text.trim();
        let raw = if !text.is_empty() {
            text.to_string()
        } else if let Some(href) = anchor.attr("href") {
            let href = href.trim_matches(is_html_whitespace);
            let path = href.split(['?', '#']).next().unwrap_or("");
            match path.split('/').rfind(|s| !s.is_empty()) {
                Some(seg) => crate::http::percent_decode(seg),
                None => continue,
            }
        } else {
            continue;
        };
        let name = normalize_name(&raw);
        if !name.is_empty() && !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

/// Parse a PEP 691 root page (`{"projects": [{"name": ...}]}`) into normalized project names.
pub fn parse_project_list_json(page_url: &Url, body: &[u8]) -> Result<Vec<String>, PageError> {
    #[derive(Deserialize)]
    struct Root {
        meta: Option<JsonMeta>,
        projects: Vec<Project>,
    }
    #[derive(Deserialize)]
    struct Project {
        name: String,
    }
    let root: Root = serde_json::from_slice(body).map_err(|e| json_error(page_url, &e))?;
    if let Some(version) = root.meta.and_then(|m| m.api_version) {
        check_api_version(page_url, &version)?;
    }
    let mut names = Vec::new();
    for project in root.projects {
        let name = normalize_name(&project.name);
        if !name.is_empty() && !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

/// A file anchor, decoded in full or (passed over by the caller's filter) by name.
enum Anchored {
    File(Box<DistFile>),
    Other(String),
}

fn dist_file_from_anchor(
    page_url: &Url,
    base: &Url,
    anchor: &HtmlElement,
    keep: &dyn Fn(&str) -> bool,
) -> Result<Option<Anchored>, PageError> {
    let Some(href_raw) = anchor.attr("href") else {
        return Ok(None);
    };
    let href = href_raw.trim_matches(is_html_whitespace);
    if href.is_empty() || href.starts_with('#') {
        return Ok(None);
    }
    let mut url = base.join(href).map_err(|e| PageError::BadLinkUrl {
        url: page_url.to_string(),
        href: href.to_string(),
        message: e.to_string(),
    })?;
    if !matches!(url.scheme(), "http" | "https" | "file") {
        return Ok(None);
    }
    let Some(filename) = last_segment_decoded(&url) else {
        return Ok(None);
    };
    check_filename(page_url, href, &filename)?;
    if !keep(&filename) {
        return Ok(Some(Anchored::Other(filename)));
    }
    let mut hashes = Hashes::default();
    if let Some(fragment) = url.fragment() {
        parse_hash_fragment(page_url, href, fragment, &mut hashes)?;
    }
    url.set_fragment(None);

    let requires_python = anchor
        .attr("data-requires-python")
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty());
    let yanked = match anchor.attr("data-yanked") {
        None => Yanked::No,
        Some(reason) => {
            let reason = reason.trim();
            Yanked::Yes {
                reason: (!reason.is_empty()).then(|| reason.to_string()),
            }
        }
    };
    let core_metadata = match anchor
        .attr("data-core-metadata")
        .or_else(|| anchor.attr("data-dist-info-metadata"))
    {
        None => CoreMetadataRef::Absent,
        Some(value) => core_metadata_from_attr(page_url, href, value.trim())?,
    };
    Ok(Some(Anchored::File(Box::new(DistFile {
        filename,
        url,
        hashes,
        requires_python,
        yanked,
        core_metadata,
        size: None,
        upload_time: None,
    }))))
}

/// `data-core-metadata` / `data-dist-info-metadata`: `true`, or `<hashname>=<hex>`. Like pip,
/// any other non-`false` value means "present, hash unknown".
fn core_metadata_from_attr(
    page_url: &Url,
    href: &str,
    value: &str,
) -> Result<CoreMetadataRef, PageError> {
    if value.eq_ignore_ascii_case("false") {
        return Ok(CoreMetadataRef::Absent);
    }
    let Some((algo, digest)) = value.split_once('=') else {
        return Ok(CoreMetadataRef::Present { sha256: None });
    };
    let algo = algo.trim().to_ascii_lowercase();
    let digest = digest.trim();
    let sha256 = if algo == "sha256" {
        Some(validate_digest(page_url, href, &algo, digest)?)
    } else {
        None
    };
    Ok(CoreMetadataRef::Present { sha256 })
}

/// Parse a URL fragment such as `sha256=abc...` into `hashes`. Parts are separated by `&`;
/// `egg=` and `subdirectory=` parts (pip's legacy fragment keys) are ignored.
fn parse_hash_fragment(
    page_url: &Url,
    href: &str,
    fragment: &str,
    hashes: &mut Hashes,
) -> Result<(), PageError> {
    for part in fragment.split('&').filter(|p| !p.is_empty()) {
        let Some((algo, digest)) = part.split_once('=') else {
            return Err(PageError::BadHash {
                url: page_url.to_string(),
                href: href.to_string(),
                hash: part.to_string(),
                reason: "a URL fragment must be `<algorithm>=<hex digest>`, e.g. `sha256=...`"
                    .to_string(),
            });
        };
        let algo = algo.trim().to_ascii_lowercase();
        if matches!(algo.as_str(), "egg" | "subdirectory") {
            continue;
        }
        let digest = validate_digest(page_url, href, &algo, digest.trim())?;
        insert_hash(hashes, algo, digest);
    }
    Ok(())
}

fn insert_hash(hashes: &mut Hashes, algo: String, digest: String) {
    if algo == "sha256" {
        hashes.sha256.get_or_insert(digest);
    } else {
        hashes.other.entry(algo).or_insert(digest);
    }
}

fn expected_digest_len(algo: &str) -> Option<usize> {
    match algo {
        "md5" => Some(32),
        "sha1" => Some(40),
        "sha224" | "sha3_224" => Some(56),
        "sha256" | "sha3_256" | "blake2s" => Some(64),
        "sha384" | "sha3_384" => Some(96),
        "sha512" | "sha3_512" | "blake2b" => Some(128),
        _ => None,
    }
}

/// Check that `digest` is hex (of the right length for a known algorithm); return it lowercase.
fn validate_digest(
    page_url: &Url,
    href: &str,
    algo: &str,
    digest: &str,
) -> Result<String, PageError> {
    let bad = |reason: String| PageError::BadHash {
        url: page_url.to_string(),
        href: href.to_string(),
        hash: format!("{algo}={digest}"),
        reason,
    };
    if algo.is_empty() || !algo.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(bad("the algorithm name is not a hash name".to_string()));
    }
    if digest.is_empty() || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad("the digest is not hexadecimal".to_string()));
    }
    if let Some(len) = expected_digest_len(algo) {
        if digest.len() != len {
            return Err(bad(format!(
                "a {algo} digest has {len} hex digits, this one has {}",
                digest.len()
            )));
        }
    }
    Ok(digest.to_ascii_lowercase())
}

fn check_filename(page_url: &Url, href: &str, filename: &str) -> Result<(), PageError> {
    let reason = if filename.contains(['/', '\\']) {
        Some("it contains a path separator")
    } else if filename == "." || filename == ".." {
        Some("it is a relative path component")
    } else if filename.contains('\0') {
        Some("it contains a NUL byte")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(PageError::BadFilename {
            url: page_url.to_string(),
            href: href.to_string(),
            filename: filename.to_string(),
            reason: reason.to_string(),
        }),
        None => Ok(()),
    }
}

/// The last path segment of `url`, percent-decoded; `None` for URLs without one (a trailing
/// `/`, or a URL that cannot be a base such as `mailto:`).
fn last_segment_decoded(url: &Url) -> Option<String> {
    let segment = url.path_segments()?.next_back()?;
    if segment.is_empty() {
        return None;
    }
    Some(crate::http::percent_decode(segment))
}

fn check_api_version(page_url: &Url, version: &str) -> Result<(), PageError> {
    let invalid = || PageError::InvalidApiVersion {
        url: page_url.to_string(),
        version: version.to_string(),
    };
    let major_text = version.trim().split('.').next().unwrap_or("");
    let major: u64 = major_text.parse().map_err(|_| invalid())?;
    if major != 1 {
        return Err(PageError::UnsupportedApiVersion {
            url: page_url.to_string(),
            version: version.to_string(),
        });
    }
    Ok(())
}

fn is_html_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0c')
}

/// What the HTML parsers need from a document: anchors, the first `<base href>`, and the
/// PEP 629 `pypi:repository-version` meta tag.
struct HtmlDocument {
    anchors: Vec<HtmlElement>,
    base_href: Option<String>,
    repository_version: Option<String>,
}

impl HtmlDocument {
    fn parse(page_url: &Url, body: &str) -> Result<Self, PageError> {
        let not_html = |reason: &str| PageError::NotHtml {
            url: page_url.to_string(),
            reason: reason.to_string(),
        };
        let trimmed = body.trim_start_matches('\u{feff}').trim();
        if trimmed.is_empty() {
            return Err(not_html("the body is empty"));
        }
        if body.contains('\0') {
            return Err(not_html("the body contains NUL bytes (binary data)"));
        }
        let replacement_chars = body.chars().filter(|&c| c == '\u{fffd}').count();
        if replacement_chars > 8 && replacement_chars * 20 > body.chars().count() {
            return Err(not_html("the body is mostly invalid UTF-8 (binary data)"));
        }
        if trimmed.starts_with('{') || trimmed.starts_with('[') {
            return Err(not_html(
                "the body looks like JSON; a PEP 691 JSON page must be served with \
                 Content-Type application/vnd.pypi.simple.v1+json",
            ));
        }
        let tokens = tokenize(body);
        if !tokens
            .iter()
            .any(|t| matches!(t, Token::Start(_) | Token::End(_)))
        {
            return Err(not_html("the body contains no HTML tags"));
        }

        let mut anchors: Vec<HtmlElement> = Vec::new();
        let mut open_anchor: Option<HtmlElement> = None;
        let mut base_href = None;
        let mut repository_version = None;
        for token in tokens {
            match token {
                Token::Start(element) => match element.name.as_str() {
                    "a" => {
                        // An `<a>` inside an unclosed `<a>` closes it (HTML adoption rules).
                        if let Some(previous) = open_anchor.take() {
                            anchors.push(previous);
                        }
                        if element.self_closing {
                            anchors.push(element);
                        } else {
                            open_anchor = Some(element);
                        }
                    }
                    "base" if base_href.is_none() => {
                        base_href = element.attr("href").map(str::to_string);
                    }
                    "meta" if repository_version.is_none() => {
                        let is_version = element
                            .attr("name")
                            .is_some_and(|n| n.eq_ignore_ascii_case("pypi:repository-version"));
                        if is_version {
                            repository_version =
                                element.attr("content").map(|c| c.trim().to_string());
                        }
                    }
                    _ => {}
                },
                Token::End(name) => {
                    if name == "a" {
                        if let Some(anchor) = open_anchor.take() {
                            anchors.push(anchor);
                        }
                    }
                }
                Token::Text(text) => {
                    if let Some(anchor) = open_anchor.as_mut() {
                        anchor
                            .text
                            .push_str(&html_escape::decode_html_entities(text));
                    }
                }
            }
        }
        if let Some(anchor) = open_anchor.take() {
            anchors.push(anchor);
        }
        Ok(HtmlDocument {
            anchors,
            base_href,
            repository_version,
        })
    }

    /// The URL links resolve against: `<base href>` (itself resolved against the page URL) or
    /// the page URL.
    fn base_url(&self, page_url: &Url) -> Result<Url, PageError> {
        match &self.base_href {
            None => Ok(page_url.clone()),
            Some(href) => {
                let href = href.trim_matches(is_html_whitespace);
                page_url.join(href).map_err(|e| PageError::BadLinkUrl {
                    url: page_url.to_string(),
                    href: href.to_string(),
                    message: format!("invalid <base href>: {e}"),
                })
            }
        }
    }
}

/// A start tag: lowercase name, attributes with lowercase names and entity-decoded values
/// (first occurrence of a name wins, as in HTML), plus the anchor text for `<a>`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HtmlElement {
    name: String,
    attrs: Vec<(String, String)>,
    self_closing: bool,
    text: String,
}

impl HtmlElement {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Token<'a> {
    Start(HtmlElement),
    End(String),
    Text(&'a str),
}

/// Elements whose content is raw text (no tags inside) up to the matching end tag.
const RAW_TEXT_ELEMENTS: &[&str] = &["script", "style", "textarea", "title", "xmp"];

/// A small, forgiving HTML tokenizer: enough of the HTML5 tokenization rules for link pages.
/// Handles comments, doctypes / processing instructions, quoted (single or double) and
/// unquoted attribute values, valueless attributes, uppercase names, raw-text elements, and a
/// `<` that does not start a tag. A tag cut off by the end of input is dropped.
fn tokenize(html: &str) -> Vec<Token<'_>> {
    let bytes = html.as_bytes();
    let len = bytes.len();
    let mut tokens = Vec::new();
    let mut text_start = 0;
    let mut i = 0;
    while i < len {
        if bytes[i] != b'<' {
            i += 1;
            continue;
        }
        let next = bytes.get(i + 1).copied();
        let tag_start = i;
        if html[i..].starts_with("<!--") {
            push_text(&mut tokens, html, text_start, tag_start);
            let body_start = i + 4;
            // `<!-->` and `<!--->` are complete (empty) comments in HTML.
            i = if html[body_start..].starts_with('>') {
                body_start + 1
            } else if html[body_start..].starts_with("->") {
                body_start + 2
            } else {
                match html[body_start..].find("-->") {
                    Some(pos) => body_start + pos + 3,
                    None => len,
                }
            };
            text_start = i;
        } else if matches!(next, Some(b'!') | Some(b'?')) {
            push_text(&mut tokens, html, text_start, tag_start);
            i = skip_past_gt(bytes, i + 2);
            text_start = i;
        } else if next == Some(b'/') {
            push_text(&mut tokens, html, text_start, tag_start);
            let name_start = i + 2;
            if bytes.get(name_start).is_some_and(u8::is_ascii_alphabetic) {
                let name_end = scan_tag_name(bytes, name_start);
                tokens.push(Token::End(html[name_start..name_end].to_ascii_lowercase()));
            }
            // `</>` and `</ 1>` are bogus comments: skipped either way.
            i = skip_past_gt(bytes, name_start);
            text_start = i;
        } else if next.is_some_and(|b| b.is_ascii_alphabetic()) {
            push_text(&mut tokens, html, text_start, tag_start);
            match parse_start_tag(html, i + 1) {
                Some((element, end)) => {
                    i = end;
                    let raw_text =
                        RAW_TEXT_ELEMENTS.contains(&element.name.as_str()) && !element.self_closing;
                    let name = element.name.clone();
                    tokens.push(Token::Start(element));
                    if raw_text {
                        i = skip_raw_text(html, i, &name);
                    }
                }
                None => i = len,
            }
            text_start = i;
        } else {
            // A literal `<` in text.
            i += 1;
        }
    }
    push_text(&mut tokens, html, text_start, len);
    tokens
}

fn push_text<'a>(tokens: &mut Vec<Token<'a>>, html: &'a str, start: usize, end: usize) {
    if start < end {
        tokens.push(Token::Text(&html[start..end]));
    }
}

fn skip_past_gt(bytes: &[u8], from: usize) -> usize {
    match bytes
        .get(from..)
        .and_then(|rest| rest.iter().position(|&b| b == b'>'))
    {
        Some(pos) => from + pos + 1,
        None => bytes.len(),
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c')
}

fn scan_tag_name(bytes: &[u8], from: usize) -> usize {
    let mut j = from;
    while j < bytes.len() && !is_ws(bytes[j]) && bytes[j] != b'/' && bytes[j] != b'>' {
        j += 1;
    }
    j
}

/// Skip the content of a raw-text element up to (not including) its end tag `</name`.
fn skip_raw_text(html: &str, from: usize, name: &str) -> usize {
    let bytes = html.as_bytes();
    let mut j = from;
    while let Some(pos) = bytes[j..].iter().position(|&b| b == b'<') {
        let at = j + pos;
        let candidate_end = at + 2 + name.len();
        if bytes.get(at + 1) == Some(&b'/')
            && candidate_end <= bytes.len()
            && bytes[at + 2..candidate_end].eq_ignore_ascii_case(name.as_bytes())
            && bytes
                .get(candidate_end)
                .is_none_or(|&b| is_ws(b) || b == b'>' || b == b'/')
        {
            return at;
        }
        j = at + 1;
    }
    bytes.len()
}

/// Parse a start tag whose name begins at `from` (just after `<`). Returns the element and the
/// index just past its `>`, or `None` when the input ends inside the tag.
fn parse_start_tag(html: &str, from: usize) -> Option<(HtmlElement, usize)> {
    let bytes = html.as_bytes();
    let len = bytes.len();
    let name_end = scan_tag_name(bytes, from);
    let mut element = HtmlElement {
        name: html[from..name_end].to_ascii_lowercase(),
        attrs: Vec::new(),
        self_closing: false,
        text: String::new(),
    };
    let mut j = name_end;
    loop {
        while j < len && (is_ws(bytes[j]) || bytes[j] == b'/') {
            element.self_closing = bytes[j] == b'/';
            j += 1;
        }
        if j >= len {
            return None;
        }
        if bytes[j] == b'>' {
            return Some((element, j + 1));
        }
        element.self_closing = false;
        // Attribute name: a leading `=` belongs to the name, as in HTML.
        let attr_start = j;
        j += 1;
        while j < len && !is_ws(bytes[j]) && !matches!(bytes[j], b'/' | b'>' | b'=') {
            j += 1;
        }
        let attr_name = html[attr_start..j].to_ascii_lowercase();
        let mut k = j;
        while k < len && is_ws(bytes[k]) {
            k += 1;
        }
        let mut value = String::new();
        if k < len && bytes[k] == b'=' {
            k += 1;
            while k < len && is_ws(bytes[k]) {
                k += 1;
            }
            if k >= len {
                return None;
            }
            match bytes[k] {
                quote @ (b'"' | b'\'') => {
                    let value_start = k + 1;
                    let close = bytes[value_start..].iter().position(|&b| b == quote)?;
                    value =
                        html_escape::decode_html_entities(&html[value_start..value_start + close])
                            .into_owned();
                    j = value_start + close + 1;
                }
                b'>' => {
                    // `name=>`: empty value, the `>` closes the tag.
                    j = k;
                }
                _ => {
                    let value_start = k;
                    while k < len && !is_ws(bytes[k]) && bytes[k] != b'>' {
                        k += 1;
                    }
                    value = html_escape::decode_html_entities(&html[value_start..k]).into_owned();
                    j = k;
                }
            }
        }
        if !element.attrs.iter().any(|(n, _)| *n == attr_name) {
            element.attrs.push((attr_name, value));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// JSON (PEP 691 + PEP 700)
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct JsonMeta {
    #[serde(rename = "api-version")]
    api_version: Option<String>,
}

#[derive(Deserialize)]
struct JsonMetaOnly {
    meta: Option<JsonMeta>,
}

/// A project page as it is read: each file's name, and the other fields as spans of the
/// body, decoded only for the files a caller keeps (most of a large page is wheels for other
/// platforms and Pythons, which the resolver needs by name alone).
#[derive(Deserialize)]
struct JsonProjectPageRef<'a> {
    meta: Option<JsonMeta>,
    #[serde(borrow)]
    files: Vec<JsonFileRef<'a>>,
}

#[derive(Deserialize)]
struct JsonFileRef<'a> {
    #[serde(borrow)]
    filename: Cow<'a, str>,
    #[serde(borrow)]
    url: &'a RawValue,
    #[serde(borrow, default)]
    hashes: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "requires-python")]
    requires_python: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "core-metadata")]
    core_metadata: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "dist-info-metadata")]
    dist_info_metadata: Option<&'a RawValue>,
    #[serde(borrow, default)]
    yanked: Option<&'a RawValue>,
    #[serde(borrow, default)]
    size: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "upload-time")]
    upload_time: Option<&'a RawValue>,
}

/// One file of a JSON page, decoded.
struct JsonFile {
    filename: String,
    url: String,
    hashes: BTreeMap<String, String>,
    requires_python: Option<String>,
    core_metadata: Option<JsonCoreMetadata>,
    dist_info_metadata: Option<JsonCoreMetadata>,
    yanked: Option<JsonYanked>,
    size: Option<u64>,
    upload_time: Option<String>,
}

impl JsonFileRef<'_> {
    /// Decodes every field; errors point into `body`.
    fn decode(self, page_url: &Url, body: &[u8]) -> Result<JsonFile, PageError> {
        fn field<T: serde::de::DeserializeOwned>(
            page_url: &Url,
            body: &[u8],
            raw: Option<&RawValue>,
        ) -> Result<Option<T>, PageError> {
            raw.map(|raw| {
                serde_json::from_str(raw.get()).map_err(|e| span_error(page_url, body, raw, &e))
            })
            .transpose()
        }
        Ok(JsonFile {
            filename: self.filename.into_owned(),
            url: field(page_url, body, Some(self.url))?.unwrap_or_default(),
            hashes: field(page_url, body, self.hashes)?.unwrap_or_default(),
            requires_python: field(page_url, body, self.requires_python)?,
            core_metadata: field(page_url, body, self.core_metadata)?,
            dist_info_metadata: field(page_url, body, self.dist_info_metadata)?,
            yanked: field(page_url, body, self.yanked)?,
            size: field(page_url, body, self.size)?,
            upload_time: field(page_url, body, self.upload_time)?,
        })
    }
}

/// An error decoding `raw`, a span of `body`, placed at its line and column in `body`.
fn span_error(page_url: &Url, body: &[u8], raw: &RawValue, e: &serde_json::Error) -> PageError {
    let offset = (raw.get().as_ptr() as usize)
        .checked_sub(body.as_ptr() as usize)
        .filter(|offset| *offset <= body.len())
        .unwrap_or(0);
    let before = &body[..offset];
    let lines_before = before.iter().filter(|b| **b == b'\n').count();
    // On the span's first line, columns count from where the span starts.
    let column = if e.line() <= 1 {
        let line_start = before
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        offset - line_start + e.column()
    } else {
        e.column()
    };
    let line = lines_before + e.line().max(1);
    PageError::InvalidJson {
        url: page_url.to_string(),
        line,
        column,
        message: e.to_string(),
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum JsonCoreMetadata {
    Bool(bool),
    Hashes(BTreeMap<String, String>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum JsonYanked {
    Bool(bool),
    Reason(String),
}

fn json_error(page_url: &Url, e: &serde_json::Error) -> PageError {
    PageError::InvalidJson {
        url: page_url.to_string(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    }
}

/// Parse a PEP 691 JSON project page. Relative file URLs resolve against `page_url`.
/// `meta.api-version` must have major version 1 (a missing `meta` is tolerated).
pub fn parse_simple_json(page_url: &Url, body: &[u8]) -> Result<ProjectPage, PageError> {
    parse_simple_json_filtered(page_url, body, &|_| true)
}

/// [`parse_simple_json`], decoding in full only the files whose name `keep` accepts; the
/// others are listed in [`ProjectPage::other_names`], checked no further than their name.
pub fn parse_simple_json_filtered(
    page_url: &Url,
    body: &[u8],
    keep: &dyn Fn(&str) -> bool,
) -> Result<ProjectPage, PageError> {
    let page: JsonProjectPageRef = match serde_json::from_slice(body) {
        Ok(page) => page,
        Err(e) => {
            // A 2.x page gets a version error, not a shape one.
            let meta: JsonMetaOnly =
                serde_json::from_slice(body).map_err(|e| json_error(page_url, &e))?;
            if let Some(version) = meta.meta.and_then(|m| m.api_version) {
                check_api_version(page_url, &version)?;
            }
            return Err(json_error(page_url, &e));
        }
    };
    let api_version = page.meta.and_then(|m| m.api_version);
    if let Some(version) = &api_version {
        check_api_version(page_url, version)?;
    }
    let mut files = Vec::new();
    let mut other_names = Vec::new();
    for file in page.files {
        if keep(&file.filename) {
            files.push(dist_file_from_json(page_url, file.decode(page_url, body)?)?);
        } else {
            check_filename(page_url, &file.filename, &file.filename)?;
            other_names.push(file.filename.into_owned());
        }
    }
    Ok(ProjectPage {
        files,
        other_names,
        api_version,
    })
}

fn dist_file_from_json(page_url: &Url, file: JsonFile) -> Result<DistFile, PageError> {
    let href = file.url.trim();
    let mut url = page_url.join(href).map_err(|e| PageError::BadLinkUrl {
        url: page_url.to_string(),
        href: href.to_string(),
        message: e.to_string(),
    })?;
    check_filename(page_url, href, &file.filename)?;
    if file.filename.is_empty() {
        return Err(PageError::BadFilename {
            url: page_url.to_string(),
            href: href.to_string(),
            filename: String::new(),
            reason: "the `filename` key is empty".to_string(),
        });
    }
    let mut hashes = Hashes::default();
    for (algo, digest) in &file.hashes {
        let algo = algo.trim().to_ascii_lowercase();
        let digest = validate_digest(page_url, href, &algo, digest.trim())?;
        insert_hash(&mut hashes, algo, digest);
    }
    if let Some(fragment) = url.fragment() {
        let fragment = fragment.to_string();
        parse_hash_fragment(page_url, href, &fragment, &mut hashes)?;
    }
    url.set_fragment(None);

    let core_metadata = match file.core_metadata.or(file.dist_info_metadata) {
        None | Some(JsonCoreMetadata::Bool(false)) => CoreMetadataRef::Absent,
        Some(JsonCoreMetadata::Bool(true)) => CoreMetadataRef::Present { sha256: None },
        Some(JsonCoreMetadata::Hashes(map)) => {
            let mut sha256 = None;
            for (algo, digest) in &map {
                let algo = algo.trim().to_ascii_lowercase();
                let digest = validate_digest(page_url, href, &algo, digest.trim())?;
                if algo == "sha256" {
                    sha256 = Some(digest);
                }
            }
            CoreMetadataRef::Present { sha256 }
        }
    };
    let yanked = match file.yanked {
        None | Some(JsonYanked::Bool(false)) => Yanked::No,
        Some(JsonYanked::Bool(true)) => Yanked::Yes { reason: None },
        Some(JsonYanked::Reason(reason)) => {
            let reason = reason.trim();
            Yanked::Yes {
                reason: (!reason.is_empty()).then(|| reason.to_string()),
            }
        }
    };
    Ok(DistFile {
        filename: file.filename,
        url,
        hashes,
        requires_python: file
            .requires_python
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty()),
        yanked,
        core_metadata,
        size: file.size,
        upload_time: file.upload_time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> Url {
        Url::parse("https://index.example/simple/demo/").unwrap()
    }

    fn start_tags(html: &str) -> Vec<HtmlElement> {
        tokenize(html)
            .into_iter()
            .filter_map(|t| match t {
                Token::Start(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn tokenizer_handles_quoting_styles_and_case() {
        let tags = start_tags(
            r#"<A HREF="x.whl" Data-Yanked='r &amp; s' data-x=plain/v.whl disabled>t</A>"#,
        );
        assert_eq!(tags.len(), 1);
        let a = &tags[0];
        assert_eq!(a.name, "a");
        assert_eq!(a.attr("href"), Some("x.whl"));
        assert_eq!(a.attr("data-yanked"), Some("r & s"));
        assert_eq!(a.attr("data-x"), Some("plain/v.whl"));
        assert_eq!(a.attr("disabled"), Some(""));
    }

    #[test]
    fn tokenizer_skips_comments_scripts_and_stray_lt() {
        let html = "<!-- <a href=c.whl> --><script>if (a < b) { x = '<a href=s.whl>' }</script>\
                    1 < 2 <a href=\"real.whl\">r</a><!--> <a href=after-empty-comment.whl>";
        let hrefs: Vec<_> = start_tags(html)
            .into_iter()
            .filter(|t| t.name == "a")
            .map(|t| t.attr("href").unwrap().to_string())
            .collect();
        assert_eq!(hrefs, vec!["real.whl", "after-empty-comment.whl"]);
    }

    #[test]
    fn tokenizer_keeps_gt_inside_quoted_values_and_first_duplicate_attr() {
        let tags = start_tags(r#"<a data-requires-python=">=3.9" href=a.whl href=b.whl>"#);
        assert_eq!(tags[0].attr("data-requires-python"), Some(">=3.9"));
        assert_eq!(tags[0].attr("href"), Some("a.whl"));
    }

    #[test]
    fn tokenizer_allows_whitespace_around_equals_and_newlines_in_tags() {
        let tags = start_tags("<a\n  href = \"x.whl\"\n\tdata-yanked =\nr>t</a>");
        assert_eq!(tags[0].attr("href"), Some("x.whl"));
        assert_eq!(tags[0].attr("data-yanked"), Some("r"));
    }

    #[test]
    fn tokenizer_drops_tag_cut_by_eof() {
        assert!(start_tags(r#"<a href="x.whl"#).is_empty());
    }

    #[test]
    fn normalize_name_runs() {
        assert_eq!(normalize_name("Foo.Bar__baz--Q"), "foo-bar-baz-q");
        assert_eq!(normalize_name("nvidia_cuda_runtime"), "nvidia-cuda-runtime");
    }

    #[test]
    fn metadata_url_appends_to_path_keeping_query() {
        let f = DistFile {
            filename: "a-1-py3-none-any.whl".into(),
            url: Url::parse("https://files.example/p/a-1-py3-none-any.whl?sig=1").unwrap(),
            hashes: Hashes::default(),
            requires_python: None,
            yanked: Yanked::No,
            core_metadata: CoreMetadataRef::Absent,
            size: None,
            upload_time: None,
        };
        assert_eq!(
            f.metadata_url().as_str(),
            "https://files.example/p/a-1-py3-none-any.whl.metadata?sig=1"
        );
    }

    #[test]
    fn api_version_major_check() {
        assert!(check_api_version(&page(), "1.0").is_ok());
        assert!(check_api_version(&page(), "1.4").is_ok());
        assert!(matches!(
            check_api_version(&page(), "2.0"),
            Err(PageError::UnsupportedApiVersion { .. })
        ));
        assert!(matches!(
            check_api_version(&page(), "one"),
            Err(PageError::InvalidApiVersion { .. })
        ));
    }
}

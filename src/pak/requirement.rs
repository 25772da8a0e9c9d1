//! The requirement part of a pak line: a PEP 508 requirement or a bare URL pip accepts.
//!
//! Owns telling named requirements, bare URLs and local paths apart, mapping pep508_rs errors to
//! a byte offset and an actionable message, and saying which URLs need a build. It must not read
//! files, expand variables or look at options.

use std::str::FromStr;

use pep508_rs::{PackageName, Pep508Error, Pep508ErrorSource, VerbatimUrlError, VersionOrUrl};

use super::error::PakErrorKind;
use super::PakRequirement;

/// A problem in a requirement, at a byte offset of the requirement text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReqError {
    pub offset: usize,
    pub kind: PakErrorKind,
    pub message: String,
    pub help: String,
}

impl ReqError {
    fn new(offset: usize, kind: PakErrorKind, message: String, help: impl Into<String>) -> Self {
        ReqError {
            offset,
            kind,
            message,
            help: help.into(),
        }
    }
}

const LOCAL_PATH_HELP: &str = "write the path relative to this pak file (`./name-1.0.tar.gz`, `name @ ./folder`, `name @ ../src/name`) or as an absolute URL (`name @ file:///abs/path/folder`); sources are built in the target runtime; wheels can also come from a find-links directory (`-f file:///abs/dir`)";

/// [`parse_requirement_in`] without a folder: relative paths are refused.
#[cfg(test)]
pub(crate) fn parse_requirement(text: &str) -> Result<PakRequirement, ReqError> {
    parse_requirement_in(text, None)
}

/// Parses the requirement part of a line (already expanded and trimmed, not empty), where
/// `./path` and `../path` (bare, or after `name @`) are relative
/// to `base` (the pak file's folder) and become `file://` URLs: a bare sdist takes its name
/// from its file name; a folder must be named (`name @ ./folder`).
pub(crate) fn parse_requirement_in(
    text: &str,
    base: Option<&std::path::Path>,
) -> Result<PakRequirement, ReqError> {
    if let Some(base) = base {
        if let Some(rewritten) = relative_path_requirement(text, base)? {
            return parse_requirement_in(&rewritten, None);
        }
    }
    let first_word_len = text.find(char::is_whitespace).unwrap_or(text.len());
    let first_word = &text[..first_word_len];

    if let Some((scheme, _)) = pep508_rs::split_scheme(first_word) {
        // A one-letter "scheme" is a Windows drive (`C:\pkg`), a local path.
        if scheme.len() > 1 {
            return parse_bare_url(text, first_word);
        }
    }
    if looks_like_local_path(first_word) {
        return Err(local_path_error(0, first_word));
    }
    // pep508_rs panics on a name that ends in `.`, `-` or `_` when more text follows
    // (`name- ==1`): refuse such a name before it gets there.
    // pep508_rs also panics on some non-ASCII text (after a marker's quoted value); PEP 508
    // requirements are ASCII (names, versions, markers and URLs), so refuse it here.
    if let Some((at, c)) = crate::filename::pep508_first_non_ascii(text) {
        let in_name = text[..at]
            .trim_start()
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        let kind = if in_name {
            PakErrorKind::InvalidName
        } else if text[..at].contains(';') {
            PakErrorKind::InvalidMarker
        } else {
            PakErrorKind::InvalidSpecifier
        };
        return Err(ReqError::new(
            at,
            kind,
            format!("invalid requirement: non-ASCII character {c:?}"),
            "PEP 508 requirements are ASCII: names, versions, markers and URLs (percent-encode a URL's other characters)",
        ));
    }
    if let Some(name) = crate::filename::pep508_bad_leading_name(text) {
        return Err(ReqError::new(
            name.len() - 1,
            PakErrorKind::InvalidName,
            format!(
                "invalid requirement: the package name `{name}` must end with a letter or digit"
            ),
            "start the line with a package name (letters, digits, `.`, `-`, `_`; starting and ending with a letter or digit), e.g. `numpy>=2`",
        ));
    }

    match pep508_rs::Requirement::<pep508_rs::VerbatimUrl>::from_str(text) {
        Ok(requirement) => {
            if let Some(VersionOrUrl::Url(url)) = &requirement.version_or_url {
                let given = url.given().unwrap_or(url.as_str());
                let offset = text
                    .find('@')
                    .map(|at| at + 1 + text[at + 1..].len() - text[at + 1..].trim_start().len())
                    .unwrap_or(0);
                check_url(given, offset)?;
            }
            Ok(PakRequirement::Named(requirement))
        }
        Err(err) => Err(map_pep508_error(text, err)),
    }
}

/// A line that is a URL with no name before it (`git+https://host/x.git@v1#egg=x`).
fn parse_bare_url(text: &str, url: &str) -> Result<PakRequirement, ReqError> {
    let rest = &text[url.len()..];
    let rest_offset = url.len() + rest.len() - rest.trim_start().len();
    let rest = rest.trim();
    if rest.starts_with(';') {
        return Err(ReqError::new(
            rest_offset,
            PakErrorKind::InvalidUrl,
            "an environment marker after a bare URL is not supported".into(),
            "name the package and keep the marker: `name @ URL ; python_version >= \"3.12\"`",
        ));
    }
    if !rest.is_empty() {
        return Err(ReqError::new(
            rest_offset,
            PakErrorKind::InvalidUrl,
            format!("unexpected `{rest}` after the URL"),
            "put one URL on the line, or write `name @ URL`; only `--hash=sha256:...` may follow it",
        ));
    }
    check_url(url, 0)?;
    let file = last_segment(url);
    if url.to_ascii_lowercase().starts_with("file:") && !is_wheel(file) && !is_sdist(file) {
        return Err(ReqError::new(
            0,
            PakErrorKind::LocalPath,
            format!("`{url}` is a local folder without a project name"),
            LOCAL_PATH_HELP,
        ));
    }
    let name = match egg_name(url) {
        Some((egg, egg_offset)) => Some(PackageName::from_str(egg).map_err(|e| {
            ReqError::new(
                egg_offset,
                PakErrorKind::InvalidName,
                format!("invalid package name `{egg}` in `#egg=`: {e}"),
                "write `#egg=name` with a plain package name, or write `name @ URL`",
            )
        })?),
        None => wheel_name(url),
    };
    Ok(PakRequirement::UnnamedUrl {
        url: url.to_string(),
        name,
    })
}

/// Checks that a URL is one comfypak can at least describe: a known scheme, well formed, and
/// not a local directory. `offset` is where the URL starts in the requirement text.
fn check_url(url: &str, offset: usize) -> Result<(), ReqError> {
    let Some((scheme, rest)) = pep508_rs::split_scheme(url) else {
        return Err(local_path_error(offset, url));
    };
    let scheme_lower = scheme.to_ascii_lowercase();
    if pep508_rs::Scheme::parse(&scheme_lower).is_none() {
        return Err(ReqError::new(
            offset,
            PakErrorKind::UnsupportedUrl,
            format!("unsupported URL scheme `{scheme}:`"),
            "use an `https://`, `http://` or `file:///` URL (or a `git+https://` URL, which needs a build)",
        ));
    }
    if let Err(e) = url::Url::parse(url) {
        return Err(ReqError::new(
            offset,
            PakErrorKind::InvalidUrl,
            format!("invalid URL `{}`: {e}", redact(url)),
            "write a complete URL such as `https://files.example/pkg/name-1.0-py3-none-any.whl`",
        ));
    }
    // An absolute `file:` URL of a wheel, an sdist or a folder (built from source, as pip
    // builds it) is accepted.
    if scheme_lower == "file" && !rest.starts_with("//") {
        return Err(ReqError::new(
            offset,
            PakErrorKind::LocalPath,
            format!("`{url}` is a relative `file:` path"),
            "write an absolute URL such as `file:///abs/path/name-1.0-py3-none-any.whl`",
        ));
    }
    Ok(())
}

fn local_path_error(offset: usize, path: &str) -> ReqError {
    ReqError::new(
        offset,
        PakErrorKind::LocalPath,
        format!("`{path}` is a local path; comfypak cannot install from local paths"),
        LOCAL_PATH_HELP,
    )
}

/// `./pkg`, `../pkg`, `/abs/pkg`, `~/pkg`, `dir/pkg`, `C:\pkg`, `pkg.whl`, `pkg-1.0.tar.gz`.
fn looks_like_local_path(word: &str) -> bool {
    // Only the part before anything PEP 508 gives a meaning to.
    let head = word
        .split(['[', ';', '@', '(', '<', '>', '=', '!', '~', ','])
        .next()
        .unwrap_or(word);
    word.starts_with(['.', '/', '\\', '~'])
        || head.contains(['/', '\\'])
        || is_wheel(head)
        || is_sdist(head)
}

/// Whether `path` is written relative (`./x`, `../x`).
fn is_relative_path(path: &str) -> bool {
    path == "." || path == ".." || path.starts_with("./") || path.starts_with("../")
}

/// `base/path` with `.` and `..` resolved lexically, as a `file://` URL.
fn relative_url(path: &str, base: &std::path::Path) -> Option<String> {
    use std::path::Component;
    let mut out = std::path::PathBuf::new();
    for component in base.join(path).components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    url::Url::from_file_path(&out).ok().map(|u| u.to_string())
}

/// The requirement with its relative path replaced by a `file://` URL, or None when it has
/// none.
fn relative_path_requirement(
    text: &str,
    base: &std::path::Path,
) -> Result<Option<String>, ReqError> {
    let end_of = |s: &str| {
        s.find(|c: char| c.is_whitespace() || c == ';')
            .unwrap_or(s.len())
    };
    // `name @ ./path ...`
    if let Some(at) = text.find('@') {
        let after = &text[at + 1..];
        let start = at + 1 + after.len() - after.trim_start().len();
        let rest = &text[start..];
        let path = &rest[..end_of(rest)];
        if is_relative_path(path) {
            let url = relative_url(path, base).ok_or_else(|| local_path_error(start, path))?;
            return Ok(Some(format!(
                "{} {url}{}",
                text[..=at].trim_end(),
                &rest[path.len()..]
            )));
        }
        return Ok(None);
    }
    // A bare `./name-1.0.tar.gz` (named by its file name) or `./folder` (needs a name).
    let path = &text[..end_of(text)];
    if !is_relative_path(path) {
        return Ok(None);
    }
    let (path, egg) = match path.split_once("#egg=") {
        Some((path, egg)) => (path, Some(egg)),
        None => (path, None),
    };
    let url = relative_url(path, base).ok_or_else(|| local_path_error(0, path))?;
    let file = last_segment(path);
    let name = match egg {
        Some(egg) => egg.to_string(),
        None if is_sdist(file) || is_wheel(file) => {
            match crate::filename::DistFilename::parse(file, None) {
                Ok(parsed) => parsed.name().to_string(),
                Err(e) => {
                    return Err(ReqError::new(
                        0,
                        PakErrorKind::LocalPath,
                        format!("`{path}`: {e}"),
                        "name the project: `name @ ./path/name-1.0.tar.gz`",
                    ))
                }
            }
        }
        None => {
            return Err(ReqError::new(
                0,
                PakErrorKind::LocalPath,
                format!("`{path}` is a local folder without a project name"),
                format!(
                    "name the project: `name @ {path}` (built from source in the target runtime)"
                ),
            ))
        }
    };
    let rest = &text[path.len() + egg.map_or(0, |e| e.len() + 5)..];
    Ok(Some(format!("{name} @ {url}{rest}")))
}

/// The `#egg=NAME` of a URL, with the byte offset of NAME.
fn egg_name(url: &str) -> Option<(&str, usize)> {
    let hash = url.find('#')?;
    let mut offset = hash + 1;
    for part in url[hash + 1..].split('&') {
        if let Some(name) = part.strip_prefix("egg=") {
            return Some((name, offset + 4));
        }
        offset += part.len() + 1;
    }
    None
}

/// The project name of a wheel file name at the end of a URL.
fn wheel_name(url: &str) -> Option<PackageName> {
    let file = last_segment(url);
    if !is_wheel(file) {
        return None;
    }
    // {name}-{version}(-{build})?-{python}-{abi}-{platform}.whl
    let parts: Vec<&str> = file.split('-').collect();
    if parts.len() < 5 {
        return None;
    }
    PackageName::from_str(parts[0]).ok()
}

/// The last path segment of a URL, without query or fragment.
fn last_segment(url: &str) -> &str {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    let path = &url[..end];
    path.rsplit('/').next().unwrap_or(path)
}

fn is_wheel(file: &str) -> bool {
    file.to_ascii_lowercase().ends_with(".whl")
}

/// The archive extensions pip builds from (its `ARCHIVE_EXTENSIONS`).
fn is_sdist(file: &str) -> bool {
    let lower = file.to_ascii_lowercase();
    [
        ".tar.gz",
        ".tgz",
        ".tar",
        ".zip",
        ".tar.bz2",
        ".tbz",
        ".tar.xz",
        ".txz",
        ".tlz",
        ".tar.lz",
        ".tar.lzma",
    ]
    .iter()
    .any(|ext| lower.ends_with(ext))
}

/// A URL with any password replaced by `***`, for messages.
pub(crate) fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

/// Why a URL cannot be installed as a prebuilt wheel, or None for a wheel URL.
pub(crate) fn url_needs_build(url: &str) -> Option<String> {
    let scheme = pep508_rs::split_scheme(url)
        .map(|(s, _)| s.to_ascii_lowercase())
        .unwrap_or_default();
    if let Some((vcs, _)) = scheme.split_once('+') {
        let vcs = match vcs {
            "git" => "git",
            "hg" => "Mercurial",
            "svn" => "Subversion",
            "bzr" => "Bazaar",
            other => other,
        };
        if vcs == "git" {
            return Some(
                "a git repository URL: it is built into a wheel before resolving, in \
                 the target runtime of the stack's base (`[base]` in stack.toml); it needs a \
                 project name (`name @ git+URL` or `#egg=name`)"
                    .to_string(),
            );
        }
        return Some(format!(
            "a {vcs} repository URL: comfypak builds git repositories only (git, sdist and \
             folder sources are built into wheels before resolving)"
        ));
    }
    let file = last_segment(url);
    if is_wheel(file) {
        None
    } else if is_sdist(file) {
        Some(format!(
            "`{file}` is a source distribution: it is built into a wheel before resolving, in the target runtime of the stack's base (`[base]` in stack.toml)"
        ))
    } else if scheme == "file" {
        Some("a local folder: it is built into a wheel before resolving, in the target runtime of the stack's base (`[base]` in stack.toml)".into())
    } else {
        Some(format!(
            "`{}` is neither a wheel (.whl) nor a source archive (.tar.gz, .zip) URL: \
             comfypak installs wheels, and builds sdists, folders and git sources into wheels",
            redact(url)
        ))
    }
}

/// Which part of a PEP 508 requirement a byte offset falls in.
enum Region {
    Name,
    Extras,
    Specifier,
    Url,
    Marker,
}

fn region_of(text: &str, offset: usize) -> Region {
    let name_end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
        .unwrap_or(text.len());
    if offset < name_end || name_end == 0 {
        return Region::Name;
    }
    let after_name = &text[name_end..];
    let mut rest_start = name_end + after_name.len() - after_name.trim_start().len();
    if text[rest_start..].starts_with('[') {
        match text[rest_start..].find(']') {
            Some(close) if offset > rest_start + close => rest_start += close + 1,
            _ => return Region::Extras,
        }
    }
    let rest = &text[rest_start..];
    if rest.trim_start().starts_with('@') {
        // A URL ends at whitespace followed by `;`.
        let marker = rest.find(" ;").or_else(|| rest.find("\t;"));
        return match marker {
            Some(m) if offset > rest_start + m + 1 => Region::Marker,
            _ => Region::Url,
        };
    }
    match rest.find(';') {
        Some(m) if offset > rest_start + m => Region::Marker,
        _ => Region::Specifier,
    }
}

fn map_pep508_error(text: &str, err: Pep508Error) -> ReqError {
    let offset = err.start.min(text.len());
    let name_end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
        .unwrap_or(text.len());
    let name = if name_end == 0 {
        "name"
    } else {
        &text[..name_end]
    };
    match &err.message {
        Pep508ErrorSource::UrlError(VerbatimUrlError::NotAUrl(path)) => {
            return local_path_error(offset, path)
        }
        Pep508ErrorSource::UrlError(e) => {
            return ReqError::new(
                offset,
                PakErrorKind::InvalidUrl,
                format!("invalid URL: {e}"),
                format!("write `{name} @ https://files.example/pkg/{name}-1.0-py3-none-any.whl`"),
            )
        }
        Pep508ErrorSource::UnsupportedRequirement(_) => {
            let word = text.split_whitespace().next().unwrap_or(text);
            return local_path_error(0, word);
        }
        Pep508ErrorSource::String(_) => {}
    }
    let detail = err.message.to_string();
    match region_of(text, offset) {
        Region::Name => ReqError::new(
            offset,
            PakErrorKind::InvalidName,
            format!("invalid requirement: {detail}"),
            "start the line with a package name (letters, digits, `.`, `-`, `_`; starting and ending with a letter or digit), e.g. `numpy>=2`",
        ),
        Region::Extras => ReqError::new(
            offset,
            PakErrorKind::InvalidExtras,
            format!("invalid extras: {detail}"),
            format!("write extras as names in brackets, e.g. `{name}[extra1,extra2]`"),
        ),
        Region::Url => ReqError::new(
            offset,
            PakErrorKind::InvalidUrl,
            format!("invalid URL requirement: {detail}"),
            format!(
                "write `{name} @ URL`, with a space before any `; marker` (e.g. `{name} @ https://files.example/{name}-1.0-py3-none-any.whl ; python_version >= \"3.12\"`)"
            ),
        ),
        Region::Marker => {
            let marker = text.split_once(';').map(|(_, m)| m.trim()).unwrap_or("");
            ReqError::new(
                offset,
                PakErrorKind::InvalidMarker,
                format!("invalid environment marker `{marker}`: {detail}"),
                format!(
                    "write a marker such as `{name}; python_version >= \"3.12\" and sys_platform == \"linux\"` (quote the values)"
                ),
            )
        }
        Region::Specifier => {
            let spec_start = text[name_end..]
                .find(['<', '>', '=', '!', '~', '(', '@'])
                .map(|i| name_end + i)
                .unwrap_or(offset.min(text.len()));
            let spec_start = spec_start.min(offset);
            let spec_end = text[spec_start..]
                .find(';')
                .map(|i| spec_start + i)
                .unwrap_or(text.len());
            let spec = text[spec_start..spec_end].trim();
            ReqError::new(
                offset,
                PakErrorKind::InvalidSpecifier,
                format!("invalid version specifier `{spec}`: {detail}"),
                format!("write a complete specifier such as `{name}>=1.0,<2`"),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_requirements() {
        for text in [
            "numpy",
            "imageio[ffmpeg]",
            "requests [security,socks] >= 2.8.1, == 2.8.* ; python_version < \"3.13\"",
            "torch==2.11.0+cu130",
            "x @ https://files.example/x-1.0-py3-none-any.whl",
            "x @ file:///srv/wheels/x-1.0-py3-none-any.whl ; sys_platform == \"linux\"",
        ] {
            let parsed = parse_requirement(text).unwrap_or_else(|e| panic!("{text}: {e:?}"));
            assert!(matches!(parsed, PakRequirement::Named(_)), "{text}");
        }
    }

    #[test]
    fn bare_urls_and_their_names() {
        let name = |text: &str| match parse_requirement(text).unwrap() {
            PakRequirement::UnnamedUrl { name, .. } => name.map(|n| n.to_string()),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            name("git+https://git.example/o/r@main#egg=Cozy_Comfy"),
            Some("cozy-comfy".into())
        );
        assert_eq!(name("git+https://git.example/o/CLIP.git"), None);
        assert_eq!(
            name("https://files.example/flash_attn-2.8.3+cu130torch2.11-cp313-cp313-linux_x86_64.whl"),
            Some("flash-attn".into())
        );
        assert_eq!(name("https://files.example/x-1.0.tar.gz"), None);
        assert_eq!(
            name("https://files.example/x-1.0.tar.gz#sha256=00&egg=x"),
            Some("x".into())
        );
    }

    #[test]
    fn needs_build_by_url_kind() {
        assert!(url_needs_build("git+https://git.example/o/r.git")
            .unwrap()
            .contains("git repository"));
        assert!(url_needs_build("https://files.example/x-1.0.tar.gz#egg=x")
            .unwrap()
            .contains("source distribution"));
        assert_eq!(
            url_needs_build("https://files.example/x-1.0-py3-none-any.whl#sha256=ab"),
            None
        );
        assert!(url_needs_build("https://u:secret@files.example/simple/x/")
            .unwrap()
            .contains("u:***@"));
    }

    #[test]
    fn regions() {
        let t = "a[b] >=1 ; python_version > \"3\"";
        assert!(matches!(region_of(t, 0), Region::Name));
        assert!(matches!(region_of(t, 2), Region::Extras));
        assert!(matches!(region_of(t, 6), Region::Specifier));
        assert!(matches!(region_of(t, 12), Region::Marker));
    }

    #[test]
    fn local_paths() {
        for text in [
            "./pkg",
            "../pkg[x]",
            "/abs/pkg",
            "dir/pkg",
            "pkg-1.0-py3-none-any.whl",
            "C:\\pkg",
            "~/pkg",
        ] {
            let e = parse_requirement(text).unwrap_err();
            assert_eq!(e.kind, PakErrorKind::LocalPath, "{text}");
            assert_eq!(e.offset, 0, "{text}");
        }
        // A named folder is built from source; an unnamed one cannot be.
        let named = parse_requirement("x @ file:///srv/src/x").unwrap();
        assert!(named.needs_build().unwrap().contains("local folder"));
        let e = parse_requirement("file:///srv/src/x").unwrap_err();
        assert_eq!((e.kind, e.offset), (PakErrorKind::LocalPath, 0));
        let e = parse_requirement("x @ file:srv/src/x").unwrap_err();
        assert_eq!((e.kind, e.offset), (PakErrorKind::LocalPath, 4));
    }

    #[test]
    fn relative_paths_are_relative_to_the_pak_file() {
        let base = std::path::Path::new("/srv/stack/pak");
        let url_of = |text: &str| match parse_requirement_in(text, Some(base)).unwrap() {
            PakRequirement::Named(r) => match r.version_or_url {
                Some(VersionOrUrl::Url(url)) => (r.name.to_string(), url.to_string(), r.marker),
                other => panic!("{text}: {other:?}"),
            },
            other => panic!("{text}: {other:?}"),
        };
        let (name, url, _) = url_of("./dl/demo-1.0.tar.gz");
        assert_eq!(name, "demo");
        assert_eq!(url, "file:///srv/stack/pak/dl/demo-1.0.tar.gz");
        let (name, url, marker) = url_of("x @ ../src/x ; python_version > '3'");
        assert_eq!(name, "x");
        assert_eq!(url, "file:///srv/stack/src/x");
        assert!(marker.try_to_string().is_some());
        let (name, url, _) = url_of("../folder#egg=foo");
        assert_eq!(
            (name.as_str(), url.as_str()),
            ("foo", "file:///srv/stack/folder")
        );
        let e = parse_requirement_in("./folder", Some(base)).unwrap_err();
        assert_eq!(e.kind, PakErrorKind::LocalPath);
        assert!(e.help.contains("name @ ./folder"), "{e:?}");
        // Without the file's folder (a pak text from elsewhere) they stay refused.
        assert!(parse_requirement("./dl/demo-1.0.tar.gz").is_err());
    }
}

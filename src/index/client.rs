//! The index client: project pages and wheel metadata from simple indexes, find-links pages
//! and local folders, through the HTTP client and the cache.
//!
//! Owns the index strategy (a pinned package comes from its index only; an unpinned one
//! from the first default index that has it), page caching with revalidation, and the
//! cheapest way to a wheel's METADATA: the PEP 658 file when advertised, else HTTP ranges
//! over the zip's tail, else the whole wheel once (kept in the cache). With
//! [`IndexClient::write_behind`], cache entries are written (and synced) on the blocking pool
//! while the caller goes on with the page or METADATA it already holds, until
//! [`IndexClient::flush`]. It must not choose versions (that is `resolve`) and never writes a
//! cache entry for something that failed to parse or verify.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pep508_rs::PackageName;
use reqwest::header::{HeaderMap, HeaderValue, IF_MODIFIED_SINCE, IF_NONE_MATCH};
use sha2::{Digest, Sha256};
use url::Url;

use super::core_metadata::{CoreMetadata, MetadataError};
use super::definition::{IndexDef, IndexKind};
use super::page::{self, CoreMetadataRef, DistFile, Hashes, PageError, Yanked, SIMPLE_ACCEPT};
use super::remote_zip::{self, TailRead, ZipError};
use super::trace::{FetchTrace, RequestKind};
use crate::cache::{now_secs, parse_cache_control, Cache, CacheError, CachedPage, MetadataKey};
use crate::digest::Sha256Hex;
use crate::filename::SafeFileName;
use crate::http::{redact, ByteRange, HttpClient, HttpError, RangeResponse};
use crate::stack::IndexSettings;

/// How much of a wheel's tail the first range request asks for.
pub const TAIL_BYTES: u64 = 64 * 1024;

/// Pages at least this large are parsed off the async worker threads (on a multi-thread
/// runtime), so one large page does not hold up the connections' other responses.
const HEAVY_PAGE: usize = 256 * 1024;

/// The most a second range request reaches back before the central directory.
const MAX_REACH_BACK: u64 = 16 * 1024 * 1024;

/// Where the second range request over a wheel starts, when the first one's tail began at
/// `tail_start` and the zip reader needs the bytes from `needed` on (usually the central
/// directory's start) in a file of `total` bytes. The METADATA member usually sits before the
/// RECORD, which sits just before the central directory and is about as long (a line per
/// member, as the directory has an entry per member); so the request reaches back a
/// directory's length and a quarter, plus a first tail's length, and the member comes with
/// it instead of costing a third round trip.
pub fn reach_back(needed: u64, total: u64) -> u64 {
    let directory = total.saturating_sub(needed);
    let reach = (directory + directory / 4 + TAIL_BYTES).min(MAX_REACH_BACK);
    needed.saturating_sub(reach)
}

/// Runs `parse` over a body of `len` bytes: off the async worker threads when the body is
/// large and the runtime can lend the thread ([`tokio::task::block_in_place`]), else here.
fn parse_off_worker<T>(len: usize, parse: impl FnOnce() -> T) -> T {
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if len >= HEAVY_PAGE && multi_thread {
        tokio::task::block_in_place(parse)
    } else {
        parse()
    }
}

/// When cached pages may be used without asking the server.
#[derive(Debug, Clone)]
pub struct CachePolicy {
    /// Use only the cache; a missing entry is an error that names it.
    pub offline: bool,
    /// Revalidate every page, however fresh.
    pub refresh: bool,
    /// How long a page from a server that sends no validators and no max-age is reused.
    pub freshness: Duration,
}

impl Default for CachePolicy {
    fn default() -> Self {
        CachePolicy {
            offline: false,
            refresh: false,
            freshness: Duration::from_secs(10 * 60),
        }
    }
}

/// Why a page or metadata could not be had.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("index page {url}: {source}")]
    Page {
        url: String,
        #[source]
        source: Box<PageError>,
    },
    #[error("METADATA of {url}: {source}")]
    Metadata {
        url: String,
        #[source]
        source: MetadataError,
    },
    #[error("{url}: {source}")]
    Zip {
        url: String,
        #[source]
        source: ZipError,
    },
    #[error("{url}: sha256 mismatch: the index says {expected}, the bytes hash to {actual}")]
    HashMismatch {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("{url} is not in the cache and --offline forbids the network")]
    Offline { url: String },
    #[error("cannot read {}: {source}", path.display())]
    Local {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{name}` is pinned to index `{index}`, which does not have it")]
    PinnedMissing { name: String, index: String },
    #[error("`{name}` was not found on any default index ({indexes})")]
    NotFound { name: String, indexes: String },
    #[error("{0}")]
    Config(String),
    /// An index sdist's metadata could not be had (its PKG-INFO or a prepare hook in the
    /// target runtime).
    #[error("{message}")]
    SourceMetadata {
        message: String,
        help: Option<String>,
        /// Its build hook failed (the command line exits 1).
        build_failed: bool,
    },
    #[error("index `{index}`: the https page {page} links {link} over plain http; refusing to downgrade")]
    InsecureLink {
        index: String,
        page: String,
        link: String,
    },
    #[error("index `{index}` ({url}) cannot be reached")]
    Unreachable {
        index: String,
        url: String,
        #[source]
        source: Box<HttpError>,
    },
}

impl IndexError {
    /// Whether an sdist's build hook failed while its metadata was read.
    pub fn is_build_failure(&self) -> bool {
        matches!(
            self,
            IndexError::SourceMetadata {
                build_failed: true,
                ..
            }
        )
    }

    /// What the user can do about it.
    pub fn help(&self) -> Option<String> {
        match self {
            IndexError::Cache(e) => e.help(),
            IndexError::HashMismatch { .. } => Some("the index or a proxy serves a different file than it advertises; nothing was cached".to_string()),
            IndexError::Offline { .. } => Some("run once without --offline to fill the cache".to_string()),
            IndexError::PinnedMissing { index, .. } => Some(format!("a pinned package is never taken from another index; fix the pin in stack.toml or point `{index}` at an index that has it (--index {index}=URL)")),
            IndexError::NotFound { .. } => Some("check the spelling, or add the index that has it to [indexes] default in stack.toml".to_string()),
            IndexError::Unreachable { index, .. } => Some(format!(
                "point `{index}` at a mirror or a local copy with --index {index}=URL (file:// \
                 works; `comfypak mirror` makes one); see README.md, \"Offline builds\""
            )),
            IndexError::InsecureLink { index, .. } => Some(format!(
                "use an index that links its files over https, or declare `{index}` with an \
                 http:// URL if plain http is really meant"
            )),
            IndexError::Http(e) => e.help(),
            IndexError::SourceMetadata { help, .. } => help.clone(),
            _ => None,
        }
    }
}

/// The files one index offers for one project.
#[derive(Debug, Clone)]
pub struct ProjectFiles {
    /// The index they came from.
    pub index: String,
    pub files: Vec<DistFile>,
    /// The names of the files a filter passed over ([`IndexClient::candidates_filtered`]);
    /// empty otherwise.
    pub other_names: Vec<String>,
}

/// Which files of a project a caller needs in full, by file name; the others are given by
/// name only, which keeps large pages cheap to read.
pub type FileFilter<'a> = &'a (dyn Fn(&str) -> bool + Sync);

/// Keeps every file.
fn keep_all(_: &str) -> bool {
    true
}

/// Cache writes running on the blocking pool.
type PendingWrites = Arc<Mutex<Vec<tokio::task::JoinHandle<Result<(), CacheError>>>>>;

/// The client: cheap to clone, safe to share across tasks.
#[derive(Debug, Clone)]
pub struct IndexClient {
    http: HttpClient,
    cache: Cache,
    policy: CachePolicy,
    /// Some: cache entries are written in the background until [`IndexClient::flush`].
    pending: Option<PendingWrites>,
}

impl IndexClient {
    pub fn new(http: HttpClient, cache: Cache, policy: CachePolicy) -> Self {
        IndexClient {
            http,
            cache,
            policy,
            pending: None,
        }
    }

    /// A client sharing this one's connections and cache that writes cache entries on the
    /// blocking pool (each still to a temp file, synced, then renamed), so a page or METADATA
    /// is handed on without waiting for the disk. The caller must [`IndexClient::flush`] it
    /// before it is done, inside a tokio runtime.
    pub fn write_behind(&self) -> IndexClient {
        IndexClient {
            pending: Some(PendingWrites::default()),
            ..self.clone()
        }
    }

    /// Waits for the cache writes started so far; the first that failed is the error.
    pub async fn flush(&self) -> Result<(), IndexError> {
        let Some(pending) = &self.pending else {
            return Ok(());
        };
        let handles = std::mem::take(
            &mut *pending
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        let mut first = None;
        for handle in handles {
            let outcome = match handle.await {
                Ok(outcome) => outcome.map_err(IndexError::from),
                Err(e) => Err(IndexError::Config(format!("a cache write failed: {e}"))),
            };
            if let Err(e) = outcome {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Runs `write` now, or on the blocking pool when writing behind.
    fn write_cache(
        &self,
        write: impl FnOnce(&Cache) -> Result<(), CacheError> + Send + 'static,
    ) -> Result<(), IndexError> {
        let handle = tokio::runtime::Handle::try_current();
        match (&self.pending, handle) {
            (Some(pending), Ok(handle)) => {
                let cache = self.cache.clone();
                let task = handle.spawn_blocking(move || write(&cache));
                let mut pending = pending
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                pending.push(task);
                Ok(())
            }
            _ => write(&self.cache).map_err(IndexError::from),
        }
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// Where `name` comes from under the stack's index strategy, and what that index offers.
    /// A pinned package is looked up on its index only; an unpinned one on each default
    /// index in order until one has it (uv's first-index).
    pub async fn candidates(
        &self,
        settings: &IndexSettings,
        name: &PackageName,
    ) -> Result<ProjectFiles, IndexError> {
        self.candidates_filtered(settings, name, &keep_all).await
    }

    /// [`IndexClient::candidates`], with only the files `keep` accepts in full.
    pub async fn candidates_filtered(
        &self,
        settings: &IndexSettings,
        name: &PackageName,
        keep: FileFilter<'_>,
    ) -> Result<ProjectFiles, IndexError> {
        let mut trace = FetchTrace::default();
        self.candidates_traced(settings, name, keep, &mut trace)
            .await
    }

    /// [`IndexClient::candidates_filtered`], recording its requests in `trace`.
    pub async fn candidates_traced(
        &self,
        settings: &IndexSettings,
        name: &PackageName,
        keep: FileFilter<'_>,
        trace: &mut FetchTrace,
    ) -> Result<ProjectFiles, IndexError> {
        if let Some(index) = settings.pinned_index(name) {
            let def = settings
                .definitions
                .get(index)
                .ok_or_else(|| IndexError::Config(format!("unknown index `{index}`")))?;
            return match self.project_page(def, name, keep, trace).await? {
                Some((files, other_names)) => Ok(ProjectFiles {
                    index: index.to_string(),
                    files,
                    other_names,
                }),
                None => Err(IndexError::PinnedMissing {
                    name: name.to_string(),
                    index: index.to_string(),
                }),
            };
        }
        for index in &settings.default {
            let def = settings
                .definitions
                .get(index)
                .ok_or_else(|| IndexError::Config(format!("unknown index `{index}`")))?;
            if let Some((files, other_names)) = self.project_page(def, name, keep, trace).await? {
                return Ok(ProjectFiles {
                    index: index.clone(),
                    files,
                    other_names,
                });
            }
        }
        Err(IndexError::NotFound {
            name: name.to_string(),
            indexes: settings.default.join(", "),
        })
    }

    /// The files `index` offers for `name`; `None` when the index does not have the project.
    pub async fn project_files(
        &self,
        index: &IndexDef,
        name: &PackageName,
    ) -> Result<Option<Vec<DistFile>>, IndexError> {
        Ok(self
            .project_page(index, name, &keep_all, &mut FetchTrace::default())
            .await?
            .map(|(files, _)| files))
    }

    /// The files `index` offers for `name` that `keep` accepts, and the names of the others;
    /// `None` when the index does not have the project.
    async fn project_page(
        &self,
        index: &IndexDef,
        name: &PackageName,
        keep: FileFilter<'_>,
        trace: &mut FetchTrace,
    ) -> Result<Option<(Vec<DistFile>, Vec<String>)>, IndexError> {
        let page = self
            .project_page_unchecked(index, name, keep, trace)
            .await
            .map_err(|e| match e {
                IndexError::Http(source) if source.is_unreachable() => IndexError::Unreachable {
                    index: index.name.clone(),
                    url: redact(&index.url),
                    source: Box::new(source),
                },
                other => other,
            })?;
        // https never silently becomes http: a page read over https must not send the
        // resolver (and the lock) to plain-http files.
        if index.url.scheme() == "https" {
            if let Some((files, _)) = &page {
                if let Some(file) = files.iter().find(|f| f.url.scheme() == "http") {
                    return Err(IndexError::InsecureLink {
                        index: index.name.clone(),
                        page: redact(&index.url),
                        link: redact(&file.url),
                    });
                }
            }
        }
        Ok(page)
    }

    async fn project_page_unchecked(
        &self,
        index: &IndexDef,
        name: &PackageName,
        keep: FileFilter<'_>,
        trace: &mut FetchTrace,
    ) -> Result<Option<(Vec<DistFile>, Vec<String>)>, IndexError> {
        let normalized = page::normalize_name(name.as_ref());
        let files = match (index.kind, index.url.scheme()) {
            (IndexKind::Simple, "file") => self.local_simple(&index.url, &normalized),
            (IndexKind::Simple, _) => {
                let url = index
                    .url
                    .join(&format!("{normalized}/"))
                    .map_err(|e| IndexError::Config(format!("{}: {e}", index.url)))?;
                return self
                    .fetch_page(&url, SIMPLE_ACCEPT, trace, |url, body, content_type| {
                        page::parse_simple_page_filtered(url, content_type, body, keep)
                            .map(|p| (p.files, p.other_names))
                    })
                    .await;
            }
            (IndexKind::FindLinks, "file") => {
                let path = file_path(&index.url)?;
                if path.join(&normalized).is_dir() {
                    // A PEP 503 tree (`comfypak mirror`'s `simple/`) given for a find-links
                    // index: read the project's page, as for a `simple` index.
                    self.local_simple(&index.url, &normalized)
                } else if path.is_dir() {
                    self.local_dir(&path, &normalized).map(Some)
                } else {
                    let body = std::fs::read(&path).map_err(|source| IndexError::Local {
                        path: path.clone(),
                        source,
                    })?;
                    let files =
                        page::parse_find_links_html(&index.url, &String::from_utf8_lossy(&body))
                            .map_err(|source| IndexError::Page {
                                url: redact(&index.url),
                                source: Box::new(source),
                            })?;
                    Ok(Some(filter_project(files, &normalized)))
                }
            }
            (IndexKind::FindLinks, _) => {
                let files = self
                    .fetch_page(&index.url, "text/html", trace, |url, body, _| {
                        page::parse_find_links_html(url, &String::from_utf8_lossy(body))
                    })
                    .await?
                    .unwrap_or_default();
                Ok(Some(filter_project(files, &normalized)))
            }
            (IndexKind::Dir, _) => {
                let path = file_path(&index.url)?;
                self.local_dir(&path, &normalized).map(Some)
            }
        }?;
        Ok(files.map(|files| {
            let (kept, others): (Vec<DistFile>, Vec<DistFile>) =
                files.into_iter().partition(|f| keep(&f.filename));
            (kept, others.into_iter().map(|f| f.filename).collect())
        }))
    }

    /// GET a page through the cache. `parse` validates it; only a page that parses is
    /// cached. A 404 means the index does not have the project.
    async fn fetch_page<T>(
        &self,
        url: &Url,
        accept: &str,
        trace: &mut FetchTrace,
        parse: impl Fn(&Url, &[u8], Option<&str>) -> Result<T, PageError>,
    ) -> Result<Option<T>, IndexError> {
        let key = format!("{url}#accept={accept}");
        let cached = self.cache.read_page(&key);
        let page_error = |source| IndexError::Page {
            url: redact(url),
            source: Box::new(source),
        };
        if let Some(page) = &cached {
            let now = now_secs();
            let fresh = match page.max_age {
                Some(max_age) => !page.no_cache && page.age(now) < max_age,
                None => !page.has_validators() && page.age(now) < self.policy.freshness.as_secs(),
            };
            if self.policy.offline || (fresh && !self.policy.refresh) {
                trace.from_cache = true;
                return parse_off_worker(page.body.len(), || {
                    parse(url, &page.body, page.content_type.as_deref())
                })
                .map(Some)
                .map_err(page_error);
            }
        } else if self.policy.offline {
            return Err(IndexError::Offline { url: redact(url) });
        }

        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(accept) {
            headers.insert(reqwest::header::ACCEPT, v);
        }
        if let Some(page) = &cached {
            if let Some(Ok(v)) = page.etag.as_deref().map(HeaderValue::from_str) {
                headers.insert(IF_NONE_MATCH, v);
            }
            if let Some(Ok(v)) = page.last_modified.as_deref().map(HeaderValue::from_str) {
                headers.insert(IF_MODIFIED_SINCE, v);
            }
        }
        let started = Instant::now();
        let response = match self.http.get(url, headers).await {
            Ok(r) => r,
            Err(e) if e.status() == Some(404) => {
                trace.record(RequestKind::Page, 0, started);
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        let kind = match response.status {
            304 => RequestKind::PageNotModified,
            _ => RequestKind::Page,
        };
        trace.record(kind, response.body.len(), started);
        if response.status == 304 {
            if let Some(mut page) = cached {
                let parsed = parse_off_worker(page.body.len(), || {
                    parse(url, &page.body, page.content_type.as_deref())
                })
                .map_err(page_error)?;
                page.fetched_at = now_secs();
                self.write_cache(move |cache| cache.write_page(&page))?;
                return Ok(Some(parsed));
            }
        }
        let content_type = response.header("content-type").map(str::to_string);
        // Relative links resolve against the final URL, after redirects.
        let parsed = parse_off_worker(response.body.len(), || {
            parse(&response.url, &response.body, content_type.as_deref())
        })
        .map_err(page_error)?;
        let (max_age, no_cache) = response
            .header("cache-control")
            .map(parse_cache_control)
            .unwrap_or((None, false));
        let page = CachedPage {
            url: key,
            fetched_at: now_secs(),
            etag: response.header("etag").map(str::to_string),
            last_modified: response.header("last-modified").map(str::to_string),
            max_age,
            no_cache,
            content_type,
            body: response.body,
        };
        self.write_cache(move |cache| cache.write_page(&page))?;
        Ok(Some(parsed))
    }

    /// A PEP 503 tree on disk: `<root>/<name>/index.json` or `index.html`.
    fn local_simple(
        &self,
        root: &Url,
        normalized: &str,
    ) -> Result<Option<Vec<DistFile>>, IndexError> {
        let dir = file_path(root)?.join(normalized);
        for (file, json) in [("index.json", true), ("index.html", false)] {
            let path = dir.join(file);
            let body = match std::fs::read(&path) {
                Ok(body) => body,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(IndexError::Local { path, source }),
            };
            let url = Url::from_file_path(&path).map_err(|_| {
                IndexError::Config(format!("{} is not an absolute path", path.display()))
            })?;
            let files = if json {
                page::parse_simple_json(&url, &body).map(|p| p.files)
            } else {
                page::parse_simple_html(&url, &String::from_utf8_lossy(&body)).map(|p| p.files)
            }
            .map_err(|source| IndexError::Page {
                url: url.to_string(),
                source: Box::new(source),
            })?;
            return Ok(Some(files));
        }
        Ok(None)
    }

    /// A flat folder of distributions; sha256 computed from the files.
    fn local_dir(&self, dir: &Path, normalized: &str) -> Result<Vec<DistFile>, IndexError> {
        let entries = std::fs::read_dir(dir).map_err(|source| IndexError::Local {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| IndexError::Local {
                path: dir.to_path_buf(),
                source,
            })?;
            let path = entry.path();
            let Some(filename) = path
                .file_name()
                .and_then(|f| f.to_str())
                .map(str::to_string)
            else {
                continue;
            };
            if !page::has_dist_extension(&filename) || project_of(&filename, normalized).is_none() {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(|source| IndexError::Local {
                path: path.clone(),
                source,
            })?;
            let url = Url::from_file_path(&path).map_err(|_| {
                IndexError::Config(format!("{} is not an absolute path", path.display()))
            })?;
            files.push(DistFile {
                filename,
                url,
                hashes: Hashes {
                    sha256: Some(hex::encode(Sha256::digest(&bytes))),
                    ..Hashes::default()
                },
                requires_python: None,
                yanked: Yanked::No,
                core_metadata: CoreMetadataRef::Absent,
                size: Some(bytes.len() as u64),
                upload_time: None,
            });
        }
        files.sort_by(|a, b| a.filename.cmp(&b.filename));
        Ok(files)
    }

    /// The core metadata of a wheel: from the cache, the PEP 658 file, HTTP ranges over the
    /// zip's tail, or (when the server ignores ranges) the whole wheel, which is then kept.
    pub async fn metadata(&self, file: &DistFile) -> Result<CoreMetadata, IndexError> {
        self.metadata_traced(file, &mut FetchTrace::default()).await
    }

    /// [`IndexClient::metadata`], recording its requests in `trace`.
    pub async fn metadata_traced(
        &self,
        file: &DistFile,
        trace: &mut FetchTrace,
    ) -> Result<CoreMetadata, IndexError> {
        let key = metadata_key(file);
        let url_text = redact(&file.url);
        let parse = |bytes: &[u8]| {
            CoreMetadata::parse(bytes).map_err(|source| IndexError::Metadata {
                url: url_text.clone(),
                source,
            })
        };
        if let Some(bytes) = self.cache.read_metadata(&key) {
            if let Ok(metadata) = CoreMetadata::parse(&bytes) {
                trace.from_cache = true;
                return Ok(metadata);
            }
        }
        if self.policy.offline && file.url.scheme() != "file" {
            return Err(IndexError::Offline { url: url_text });
        }
        let bytes = if file.url.scheme() == "file" {
            let path = file_path(&file.url)?;
            let whole = std::fs::read(&path).map_err(|source| IndexError::Local {
                path: path.clone(),
                source,
            })?;
            self.verify_whole(file, &whole)?;
            metadata_from_whole(&file.url, &whole)?
        } else if let CoreMetadataRef::Present { sha256 } = &file.core_metadata {
            let url = file.metadata_url();
            let started = Instant::now();
            let response = self.http.get(&url, HeaderMap::new()).await?;
            trace.record(RequestKind::MetadataFile, response.body.len(), started);
            if let Some(expected) = sha256 {
                let actual = hex::encode(Sha256::digest(&response.body));
                if !actual.eq_ignore_ascii_case(expected) {
                    return Err(IndexError::HashMismatch {
                        url: redact(&url),
                        expected: expected.clone(),
                        actual,
                    });
                }
            }
            response.body
        } else {
            self.metadata_by_range(file, trace).await?
        };
        let metadata = parse(&bytes)?;
        self.write_cache(move |cache| cache.write_metadata(&key, &bytes))?;
        Ok(metadata)
    }

    async fn metadata_by_range(
        &self,
        file: &DistFile,
        trace: &mut FetchTrace,
    ) -> Result<Vec<u8>, IndexError> {
        let zip_error = |source| IndexError::Zip {
            url: redact(&file.url),
            source,
        };
        let started = Instant::now();
        let (mut start, total, mut tail) = match self
            .http
            .get_range(&file.url, ByteRange::Suffix(TAIL_BYTES))
            .await?
        {
            RangeResponse::Partial {
                start,
                total,
                bytes,
            } => {
                trace.record(RequestKind::RangeTail, bytes.len(), started);
                trace.file_size = Some(total);
                (start, total, bytes)
            }
            RangeResponse::Full(whole) => {
                trace.record(RequestKind::Whole, whole.len(), started);
                trace.file_size = Some(whole.len() as u64);
                // The server ignored the range: we hold the whole wheel; keep it.
                self.verify_whole(file, &whole)?;
                let sha = file
                    .hashes
                    .sha256
                    .as_deref()
                    .and_then(|sha| Sha256Hex::parse_any_case(sha).ok());
                let name = SafeFileName::parse(&file.filename).ok();
                if let (Some(sha), Some(name)) = (sha, name) {
                    self.cache
                        .write_atomic(&self.cache.wheel_path(&sha, &name), &whole)?;
                }
                return metadata_from_whole(&file.url, &whole);
            }
        };
        let directory = loop {
            match remote_zip::read_central_directory(&tail, start, total).map_err(zip_error)? {
                TailRead::Directory(directory) => break directory,
                TailRead::NeedFrom { start: needed } => {
                    if needed >= start {
                        return Err(IndexError::Config(format!(
                            "{}: the zip reader asked for bytes it already has",
                            redact(&file.url)
                        )));
                    }
                    // METADATA usually sits before the RECORD, just before the central
                    // directory: reach back far enough that it comes with the same request.
                    let from = reach_back(needed, total);
                    let mut joined = self
                        .span(&file.url, from, start, RequestKind::RangeDirectory, trace)
                        .await?;
                    joined.extend_from_slice(&tail);
                    tail = joined;
                    start = from;
                }
            }
        };
        let entry = remote_zip::find_metadata_entry(&directory.entries).map_err(zip_error)?;
        let member_bytes = match remote_zip::member_bytes_in_tail(entry, &tail, start) {
            Some(bytes) => bytes.to_vec(),
            None => {
                let (span_start, span_end) = remote_zip::member_span(entry, directory.start);
                self.span(
                    &file.url,
                    span_start,
                    span_end,
                    RequestKind::RangeMember,
                    trace,
                )
                .await?
            }
        };
        remote_zip::extract_member(entry, &member_bytes).map_err(zip_error)
    }

    async fn span(
        &self,
        url: &Url,
        start: u64,
        end: u64,
        kind: RequestKind,
        trace: &mut FetchTrace,
    ) -> Result<Vec<u8>, IndexError> {
        let started = Instant::now();
        match self
            .http
            .get_range(url, ByteRange::Span(start, end))
            .await?
        {
            RangeResponse::Partial { bytes, .. } => {
                trace.record(kind, bytes.len(), started);
                Ok(bytes)
            }
            RangeResponse::Full(whole) => {
                trace.record(RequestKind::Whole, whole.len(), started);
                let end = (end as usize).min(whole.len());
                let start = (start as usize).min(end);
                Ok(whole[start..end].to_vec())
            }
        }
    }

    fn verify_whole(&self, file: &DistFile, bytes: &[u8]) -> Result<(), IndexError> {
        if let Some(expected) = &file.hashes.sha256 {
            let actual = hex::encode(Sha256::digest(bytes));
            if !actual.eq_ignore_ascii_case(expected) {
                return Err(IndexError::HashMismatch {
                    url: redact(&file.url),
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        Ok(())
    }
}

fn metadata_from_whole(url: &Url, whole: &[u8]) -> Result<Vec<u8>, IndexError> {
    remote_zip::read_metadata_from_whole_file(whole)
        .map(|(_, bytes)| bytes)
        .map_err(|source| IndexError::Zip {
            url: redact(url),
            source,
        })
}

fn file_path(url: &Url) -> Result<PathBuf, IndexError> {
    url.to_file_path()
        .map_err(|_| IndexError::Config(format!("{url} is not a local file URL")))
}

/// `Some(())` when `filename` is a distribution of the project `normalized`.
fn project_of(filename: &str, normalized: &str) -> Option<()> {
    if let Some(stem) = filename.strip_suffix(".whl") {
        let name = stem.split('-').next()?;
        return (page::normalize_name(name) == normalized).then_some(());
    }
    // An sdist: `name-version.ext` where the name may itself hold dashes.
    let lower = page::normalize_name(filename);
    let rest = lower.strip_prefix(normalized)?.strip_prefix('-')?;
    rest.chars()
        .next()
        .filter(|c| c.is_ascii_digit())
        .map(|_| ())
}

fn filter_project(files: Vec<DistFile>, normalized: &str) -> Vec<DistFile> {
    files
        .into_iter()
        .filter(|f| project_of(&f.filename, normalized).is_some())
        .collect()
}

/// What a file's METADATA is cached under: its sha256 when the index published one, else
/// its URL.
pub fn metadata_key(file: &DistFile) -> MetadataKey {
    match file
        .hashes
        .sha256
        .as_deref()
        .and_then(|sha| Sha256Hex::parse_any_case(sha).ok())
    {
        Some(sha) => MetadataKey::Sha256(sha),
        None => MetadataKey::Url(file.url.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_second_range_reaches_back_a_directory_and_a_quarter_and_a_tail() {
        // A 100,000-byte directory at 9,900,000 of 10,000,000: 125,000 + 65,536 back.
        assert_eq!(reach_back(9_900_000, 10_000_000), 9_900_000 - 190_536);
        // Never before the file's start, never more than MAX_REACH_BACK.
        assert_eq!(reach_back(100_000, 1_000_000), 0);
        let huge = 4_000_000_000;
        assert_eq!(
            reach_back(huge - 100_000_000, huge),
            huge - 100_000_000 - MAX_REACH_BACK
        );
    }

    #[test]
    fn project_names_from_filenames() {
        assert!(project_of(
            "flash_attn-2.8.3+cu12torch2.8cxx11abiTRUE-cp313-cp313-linux_x86_64.whl",
            "flash-attn"
        )
        .is_some());
        assert!(project_of(
            "flash_attn_3-3.0.0-cp39-abi3-linux_x86_64.whl",
            "flash-attn"
        )
        .is_none());
        assert!(project_of("foo-bar-1.0.tar.gz", "foo-bar").is_some());
        assert!(project_of("foo-bar-1.0.tar.gz", "foo").is_none());
        assert!(project_of(
            "sageattention-2.2.0-hopper-cp313-cp313-linux_x86_64.whl",
            "sageattention"
        )
        .is_some());
    }
}

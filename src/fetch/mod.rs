//! Fetching locked wheels into the content-addressed cache.
//!
//! Owns: choosing each package's wheel for a platform ([`select`]), parallel downloads (largest first) with
//! bounded concurrency over the shared [`HttpClient`], sha256 and size verification while
//! streaming, resumption with a `Range` request after a dropped connection, per-entry file
//! locks so several processes can share one cache, temp-file-then-rename so an entry is
//! either whole and verified or absent, and progress output ([`progress`]).
//!
//! The layout is [`Cache::wheel_path`] (`wheels/v1/<sha[..2]>/<sha>/<filename>`), the same
//! one the index client uses for whole wheels. Must not: resolve, read index pages or index
//! definitions (a transport error names the index the lock says a wheel came from), or
//! unpack wheels (that is `install`).

pub mod progress;
pub mod select;

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use futures::StreamExt;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT_ENCODING, CONTENT_RANGE, RANGE};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use url::Url;

use crate::cache::{Cache, EntryLock};
use crate::digest::Sha256Hex;
use crate::filename::SafeFileName;
use crate::http::{parse_content_range, redact, Attempts, HttpClient, HttpError};
use progress::{FileProgress, Progress, ProgressMode};
pub use select::{select_wheels, targets_for, SelectError, SelectedWheel};

/// Where a wheel's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WheelLocation {
    /// `http(s)://` URL.
    Url(Url),
    /// A local file (a lock `path`, or a `file://` URL).
    Path(PathBuf),
    /// A wheel comfypak built from source: only the cache has it.
    Built,
}

impl std::fmt::Display for WheelLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WheelLocation::Url(url) => f.write_str(&redact(url)),
            WheelLocation::Path(path) => write!(f, "{}", path.display()),
            WheelLocation::Built => f.write_str("comfypak's built-wheel cache"),
        }
    }
}

/// The index a locked wheel came from, as the lock names it: what a transport error names,
/// so the user knows which `--index NAME=URL` to give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WheelIndex {
    /// `pypi`, `pytorch-cu130`: the index definition's name.
    pub name: String,
    /// The index URL the lock records (redacted when shown).
    pub url: String,
}

/// One wheel to fetch: where from, and what it must hash to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WheelSource {
    pub filename: SafeFileName,
    pub location: WheelLocation,
    pub sha256: Sha256Hex,
    pub size: Option<u64>,
    /// The index the lock says it came from; None for a direct URL, a path or a built wheel.
    pub index: Option<WheelIndex>,
}

impl WheelSource {
    /// The source of a selected wheel; relative lock `path`s are taken from `lock_dir`.
    pub fn from_selected(selected: &SelectedWheel, lock_dir: &Path) -> Result<Self, FetchError> {
        let wheel = &selected.wheel;
        let location = match (&wheel.url, &wheel.path) {
            (Some(url), _) => {
                let parsed = Url::parse(url).map_err(|e| FetchError::BadLocation {
                    filename: wheel.name.clone(),
                    message: format!("url `{url}` does not parse: {e}"),
                })?;
                match parsed.scheme() {
                    "http" | "https" => WheelLocation::Url(parsed),
                    "file" => WheelLocation::Path(parsed.to_file_path().map_err(|_| {
                        FetchError::BadLocation {
                            filename: wheel.name.clone(),
                            message: format!("`{url}` is not a local file path"),
                        }
                    })?),
                    other => {
                        return Err(FetchError::BadLocation {
                            filename: wheel.name.clone(),
                            message: format!(
                                "url scheme `{other}` is not supported (use http, https or file)"
                            ),
                        })
                    }
                }
            }
            (None, Some(path)) => WheelLocation::Path(lock_dir.join(path)),
            (None, None) if selected.built => WheelLocation::Built,
            (None, None) => {
                return Err(FetchError::BadLocation {
                    filename: wheel.name.clone(),
                    message: "the lock gives neither `url` nor `path`".to_string(),
                })
            }
        };
        Ok(WheelSource {
            filename: wheel.name.clone(),
            location,
            sha256: selected.sha256().clone(),
            size: wheel.size,
            index: selected.index.clone(),
        })
    }
}

/// How a wheel got into the cache in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchOutcome {
    /// It was already there.
    Cached,
    /// Downloaded; `resumed` Range requests continued it after dropped connections.
    Downloaded { resumed: u32 },
    /// Copied from a local path.
    Copied,
}

/// A verified wheel in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedWheel {
    pub filename: SafeFileName,
    pub sha256: Sha256Hex,
    pub size: u64,
    /// The cache entry: `Cache::wheel_path(sha256, filename)`.
    pub path: PathBuf,
    pub outcome: FetchOutcome,
}

/// Fetch settings.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Downloads in flight at once.
    pub concurrency: usize,
    /// Use only the cache.
    pub offline: bool,
    pub progress: ProgressMode,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            concurrency: 8,
            offline: false,
            progress: ProgressMode::Quiet,
        }
    }
}

/// Why a wheel could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(
        "{filename} (sha256 {sha256}) is not in the cache, and --offline forbids downloading it"
    )]
    NotCached {
        filename: SafeFileName,
        sha256: Sha256Hex,
    },
    #[error("{filename} from {source_location}: sha256 mismatch: expected {expected}, received {actual}; the download was discarded and nothing was cached")]
    HashMismatch {
        filename: SafeFileName,
        source_location: String,
        expected: Sha256Hex,
        actual: Sha256Hex,
    },
    #[error("{filename} from {source_location}: the lock says {expected} bytes, received {actual}; the download was discarded and nothing was cached")]
    SizeMismatch {
        filename: SafeFileName,
        source_location: String,
        expected: u64,
        actual: u64,
    },
    #[error("{filename}: {source}")]
    Http {
        filename: SafeFileName,
        #[source]
        source: Box<HttpError>,
    },
    #[error("{filename} from {url}: the download kept breaking off ({message}), at most {received} bytes received{attempts}")]
    Interrupted {
        filename: SafeFileName,
        url: String,
        message: String,
        attempts: Box<Attempts>,
        received: u64,
    },
    #[error(
        "{filename} (sha256 {sha256}) was built from source by comfypak and is not in this cache"
    )]
    NotBuilt {
        filename: SafeFileName,
        sha256: Sha256Hex,
    },
    #[error("{filename}: {message}")]
    BadLocation {
        filename: SafeFileName,
        message: String,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A wheel's server could not be reached: the index the lock says it came from, and the
    /// download's error as the cause.
    #[error("index `{index}` ({index_url}) cannot be reached")]
    IndexUnreachable {
        index: String,
        index_url: String,
        #[source]
        source: Box<FetchError>,
    },
    #[error("{} wheels could not be fetched:\n{}", .0.len(), .0.iter().map(|e| format!("  - {}", e.one_line())).collect::<Vec<_>>().join("\n"))]
    Several(Vec<FetchError>),
}

impl FetchError {
    /// What the user can do about it.
    pub fn help(&self) -> Option<String> {
        match self {
            FetchError::NotCached { .. } => Some("run `comfypak fetch` once with network access to fill the cache".to_string()),
            FetchError::NotBuilt { .. } => Some("run `comfypak resolve` (or `comfypak build`) on this machine: it builds the package's source again".to_string()),
            FetchError::HashMismatch { .. } => Some("the server sent other bytes than the lock records; if the file legitimately changed upstream, re-create the lock with `comfypak resolve`".to_string()),
            FetchError::IndexUnreachable { index, .. } => Some(format!(
                "point `{index}` at a mirror or a local copy with --index {index}=URL and lock \
                 again (`comfypak resolve --index {index}=URL`, or `comfypak build --index \
                 {index}=URL`): the lock's wheel URLs come from the index it was made from \
                 (file:// works; `comfypak mirror` makes one); see README.md, \"Offline builds\""
            )),
            FetchError::Several(errors) => {
                let mut helps: Vec<String> = Vec::new();
                for help in errors.iter().filter_map(FetchError::help) {
                    if !helps.contains(&help) {
                        helps.push(help);
                    }
                }
                (!helps.is_empty()).then(|| helps.join("\n"))
            }
            _ => None,
        }
    }

    /// The error, when `source` came from an index and its server could not be reached, as
    /// [`FetchError::IndexUnreachable`] naming that index.
    fn naming_index(self, source: &WheelSource) -> FetchError {
        match (&self, &source.index) {
            (FetchError::Http { source: http, .. }, Some(index)) if http.is_unreachable() => {
                FetchError::IndexUnreachable {
                    index: index.name.clone(),
                    index_url: Url::parse(&index.url)
                        .map(|url| redact(&url))
                        .unwrap_or_else(|_| index.url.clone()),
                    source: Box::new(self),
                }
            }
            _ => self,
        }
    }

    /// The message and its causes on one line (for a list of several errors).
    fn one_line(&self) -> String {
        match self {
            FetchError::IndexUnreachable { source, .. } => format!("{self}: {source}"),
            _ => self.to_string(),
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> FetchError + '_ {
    move |source| FetchError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A temp file removed on drop unless kept.
struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The cache entry of `source` when it is there, whole.
pub fn cached(cache: &Cache, source: &WheelSource) -> Option<CachedWheel> {
    let path = cache.wheel_path(&source.sha256, &source.filename);
    let meta = std::fs::metadata(&path).ok()?;
    if !meta.is_file() || source.size.is_some_and(|s| s != meta.len()) {
        return None;
    }
    Some(CachedWheel {
        filename: source.filename.clone(),
        sha256: source.sha256.clone(),
        size: meta.len(),
        path,
        outcome: FetchOutcome::Cached,
    })
}

/// Fetches every wheel into the cache (those already there are not touched) and returns
/// them in input order. Wheels with the same sha256 are fetched once.
pub async fn fetch_wheels(
    http: &HttpClient,
    cache: &Cache,
    wheels: &[WheelSource],
    options: &FetchOptions,
) -> Result<Vec<CachedWheel>, FetchError> {
    fetch_wheels_then(http, cache, wheels, options, &|_| {}).await
}

/// [`fetch_wheels`], handing each wheel to `ready` as soon as it is whole and verified in
/// the cache: a cache hit at once, a download when it is persisted, while the others are
/// still downloading. `ready` must return quickly (queue the work, do not do it).
pub async fn fetch_wheels_then(
    http: &HttpClient,
    cache: &Cache,
    wheels: &[WheelSource],
    options: &FetchOptions,
    ready: &(dyn Fn(&CachedWheel) + Sync),
) -> Result<Vec<CachedWheel>, FetchError> {
    let mut seen = HashSet::new();
    let mut done: HashMap<Sha256Hex, CachedWheel> = HashMap::new();
    let mut missing: Vec<&WheelSource> = Vec::new();
    let mut errors = Vec::new();
    for source in wheels {
        if !seen.insert(source.sha256.clone()) {
            continue;
        }
        if let Some(hit) = cached(cache, source) {
            ready(&hit);
            done.insert(source.sha256.clone(), hit);
        } else if source.location == WheelLocation::Built {
            errors.push(FetchError::NotBuilt {
                filename: source.filename.clone(),
                sha256: source.sha256.clone(),
            });
        } else if options.offline {
            errors.push(FetchError::NotCached {
                filename: source.filename.clone(),
                sha256: source.sha256.clone(),
            });
        } else {
            missing.push(source);
        }
    }
    // Largest first (the lock's sizes; unknown sizes last, ties in lock order): the big
    // wheels are the long poles of a cold install (their download, then their unpack on one
    // thread), so starting them first lets the small ones fill in around them instead of
    // leaving a large wheel that sorts late by name to finish alone at the end.
    missing.sort_by_key(|source| std::cmp::Reverse(source.size));
    let cached_count = done.len();
    let total_bytes = missing.iter().filter_map(|s| s.size).sum();
    let progress = Progress::new(options.progress, total_bytes);
    let outcomes: Vec<Result<CachedWheel, FetchError>> =
        futures::stream::iter(missing.iter().map(|source| async {
            let fetched = fetch_one(http, cache, source, &progress)
                .await
                .map_err(|e| e.naming_index(source));
            if let Ok(wheel) = &fetched {
                ready(wheel);
            }
            fetched
        }))
        .buffer_unordered(options.concurrency.max(1))
        .collect()
        .await;
    for outcome in outcomes {
        match outcome {
            Ok(wheel) => {
                done.insert(wheel.sha256.clone(), wheel);
            }
            Err(e) => errors.push(e),
        }
    }
    if !missing.is_empty() || errors.is_empty() {
        progress.finish(seen.len(), cached_count);
    }
    match errors.len() {
        0 => {}
        1 => return Err(errors.remove(0)),
        _ => return Err(FetchError::Several(errors)),
    }
    Ok(wheels
        .iter()
        .filter_map(|s| done.get(&s.sha256).cloned())
        .collect())
}

/// Fetches one wheel under its entry lock.
async fn fetch_one(
    http: &HttpClient,
    cache: &Cache,
    source: &WheelSource,
    progress: &Progress,
) -> Result<CachedWheel, FetchError> {
    let lock_path = cache.entry_lock_path("wheels", &source.sha256);
    let lock_for_task = lock_path.clone();
    let _lock = tokio::task::spawn_blocking(move || EntryLock::acquire(&lock_for_task))
        .await
        .map_err(|e| FetchError::Io {
            path: lock_path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?
        .map_err(io_err(&lock_path))?;
    // Another process may have finished it while we waited.
    if let Some(hit) = cached(cache, source) {
        return Ok(hit);
    }
    cache.remove_stale_temps(&source.sha256);
    let tmp_dir = cache.root().join("tmp");
    std::fs::create_dir_all(&tmp_dir).map_err(io_err(&tmp_dir))?;
    let mut tmp = TempFile {
        path: cache.unique_temp_path(&source.sha256, "part"),
        keep: false,
    };
    let mut file_progress = progress.start_file(&source.filename, source.size);
    let (size, actual, outcome) = match &source.location {
        WheelLocation::Url(url) => {
            let (size, sha, resumed) =
                download(http, url, &tmp.path, source, &mut file_progress).await?;
            (size, sha, FetchOutcome::Downloaded { resumed })
        }
        WheelLocation::Path(path) => {
            let (size, sha) = copy_local(path, &tmp.path, &mut file_progress)?;
            (size, sha, FetchOutcome::Copied)
        }
        WheelLocation::Built => {
            return Err(FetchError::NotBuilt {
                filename: source.filename.clone(),
                sha256: source.sha256.clone(),
            })
        }
    };
    if let Some(expected) = source.size {
        if expected != size {
            return Err(FetchError::SizeMismatch {
                filename: source.filename.clone(),
                source_location: source.location.to_string(),
                expected,
                actual: size,
            });
        }
    }
    if actual != source.sha256 {
        return Err(FetchError::HashMismatch {
            filename: source.filename.clone(),
            source_location: source.location.to_string(),
            expected: source.sha256.clone(),
            actual,
        });
    }
    let final_path = cache.wheel_path(&source.sha256, &source.filename);
    crate::fsutil::persist(&tmp.path, &final_path).map_err(io_err(&final_path))?;
    tmp.keep = true;
    let resumed = match outcome {
        FetchOutcome::Downloaded { resumed } => resumed,
        _ => 0,
    };
    file_progress.done(resumed);
    Ok(CachedWheel {
        filename: source.filename.clone(),
        sha256: source.sha256.clone(),
        size,
        path: final_path,
        outcome,
    })
}

/// Copies a local wheel into `tmp`, hashing as it goes.
fn copy_local(
    path: &Path,
    tmp: &Path,
    file_progress: &mut FileProgress,
) -> Result<(u64, Sha256Hex), FetchError> {
    let mut input = std::fs::File::open(path).map_err(io_err(path))?;
    let mut output = std::fs::File::create(tmp).map_err(io_err(tmp))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = input.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        output.write_all(&buf[..n]).map_err(io_err(tmp))?;
        total += n as u64;
        file_progress.advance(n as u64);
    }
    output.sync_all().map_err(io_err(tmp))?;
    Ok((total, Sha256Hex::from_hasher(hasher)))
}

/// Streams `url` into `tmp`, hashing while writing. A connection that drops mid-body is
/// continued with `Range: bytes=N-` from the bytes already written; a server that answers
/// the range with the whole file restarts the download from zero.
async fn download(
    http: &HttpClient,
    url: &Url,
    tmp: &Path,
    source: &WheelSource,
    file_progress: &mut FileProgress,
) -> Result<(u64, Sha256Hex, u32), FetchError> {
    let settings = http.settings().clone();
    let file = tokio::fs::File::create(tmp).await.map_err(io_err(tmp))?;
    let mut writer = tokio::io::BufWriter::with_capacity(1 << 20, file);
    let mut hasher = Sha256::new();
    let mut written = 0u64;
    let mut resumed = 0u32;
    // The most bytes any attempt got to: only an attempt that goes beyond it made progress.
    // A server that drops every answer half-way and ignores Range makes none after the
    // first, so the retry policy's failures-in-a-row cap ends it.
    let mut high_water = 0u64;
    let mut retry = http.retry_state();
    let interrupted =
        |message: String, attempts: Attempts, received: u64| FetchError::Interrupted {
            filename: source.filename.clone(),
            url: redact(url),
            message,
            attempts: Box::new(attempts),
            received,
        };
    'request: loop {
        if source.size.is_some_and(|s| s == written) && written > 0 {
            break;
        }
        retry.attempt();
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        if written > 0 {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes={written}-")) {
                headers.insert(RANGE, v);
            }
        }
        let response =
            http.get_stream(url, headers)
                .await
                .map_err(|source_err| FetchError::Http {
                    filename: source.filename.clone(),
                    source: Box::new(source_err),
                })?;
        if written > 0 {
            let continues = response.status().as_u16() == 206
                && response
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_content_range)
                    .is_some_and(|(start, _)| start == written);
            if continues {
                resumed += 1;
                file_progress.note(&format!("resuming {} at byte {written}", source.filename));
            } else {
                // The server sent the whole file (or another range): start over.
                writer.flush().await.map_err(io_err(tmp))?;
                writer.get_mut().set_len(0).await.map_err(io_err(tmp))?;
                writer
                    .get_mut()
                    .seek(std::io::SeekFrom::Start(0))
                    .await
                    .map_err(io_err(tmp))?;
                hasher = Sha256::new();
                written = 0;
                file_progress.restart();
                let status = response.status().as_u16();
                if status != 200 {
                    drop(response);
                    let message =
                        format!("the server answered a resumption with {status} for another range");
                    match retry.failed(true, None) {
                        Ok(delay) => {
                            tokio::time::sleep(delay).await;
                            continue 'request;
                        }
                        Err(attempts) => return Err(interrupted(message, attempts, high_water)),
                    }
                }
            }
        }
        let mut response = response;
        loop {
            let next = match tokio::time::timeout(settings.read_timeout, response.chunk()).await {
                Ok(Ok(Some(chunk))) => Ok(chunk),
                Ok(Ok(None)) => break 'request,
                Ok(Err(e)) => Err(crate::http::error_chain(&e)),
                Err(_) => Err(format!("no data for {:?}", settings.read_timeout)),
            };
            let chunk = match next {
                Ok(chunk) => chunk,
                Err(message) => {
                    if written > high_water {
                        high_water = written;
                        retry.progressed();
                    }
                    match retry.failed(true, None) {
                        Ok(delay) => {
                            tokio::time::sleep(delay).await;
                            continue 'request;
                        }
                        Err(attempts) => return Err(interrupted(message, attempts, high_water)),
                    }
                }
            };
            hasher.update(&chunk);
            writer.write_all(&chunk).await.map_err(io_err(tmp))?;
            written += chunk.len() as u64;
            file_progress.advance(chunk.len() as u64);
            if let Some(expected) = source.size {
                if written > expected {
                    return Err(FetchError::SizeMismatch {
                        filename: source.filename.clone(),
                        source_location: redact(url),
                        expected,
                        actual: written,
                    });
                }
            }
        }
    }
    writer.flush().await.map_err(io_err(tmp))?;
    let file = writer.into_inner();
    file.sync_all().await.map_err(io_err(tmp))?;
    Ok((written, Sha256Hex::from_hasher(hasher), resumed))
}

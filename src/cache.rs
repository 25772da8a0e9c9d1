//! The on-disk cache: index pages with their HTTP validators, wheel metadata by the wheel's
//! sha256, whole wheels (`wheels/v1/<sha[..2]>/<sha>/<file>`), and the entry locks and temp
//! names every stage that writes into the cache uses.
//!
//! Owns the cache location (`--cache-dir`, `COMFYPAK_CACHE_DIR`, `$XDG_CACHE_HOME/comfypak`,
//! `~/.cache/comfypak`), the entry formats, per-entry advisory locks ([`EntryLock`],
//! [`Cache::entry_lock_path`]) so several processes can share one cache, temp names
//! ([`Cache::unique_temp_path`], [`Cache::remove_stale_temps`]), and atomic writes through
//! [`crate::fsutil`], so a killed process never leaves a torn entry. Entry paths are built
//! only from validated values ([`Sha256Hex`], [`SafeFileName`]). It must not decide
//! freshness policy for a caller beyond reporting what an entry says, and it must not talk
//! to the network.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::digest::Sha256Hex;
use crate::filename::SafeFileName;

/// Bump when an entry format changes; old entries are then ignored, not misread.
const FORMAT: &str = "v1";

/// The layout of pages and METADATA: `v2` keeps them in one folder each, without the
/// two-letter subfolders of `v1`. A cold resolution writes a few hundred entries; each new
/// subfolder was one more inode to allocate, and on an ext4 without a journal every inode
/// allocation walks past the inodes freed in the last seconds (a third of a cold resolve's CPU
/// went there). One folder of thousands of entries is cheap for ext4's hashed directories.
const INDEX_FORMAT: &str = "v2";

/// A cache rooted at one directory.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

/// Why the cache could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl CacheError {
    /// What the user can do about it.
    pub fn help(&self) -> Option<String> {
        match self {
            CacheError::Io { .. } => {
                Some("pick a writable folder with --cache-dir or COMFYPAK_CACHE_DIR".to_string())
            }
        }
    }
}

/// An index page as it was fetched, with what is needed to revalidate it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedPage {
    pub url: String,
    /// Seconds since the Unix epoch when the page was fetched or last revalidated.
    pub fetched_at: u64,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// From `Cache-Control: max-age`.
    pub max_age: Option<u64>,
    /// From `Cache-Control: no-cache` / `no-store`: always revalidate.
    pub no_cache: bool,
    pub content_type: Option<String>,
    #[serde(skip)]
    pub body: Vec<u8>,
}

impl CachedPage {
    /// Whether the page has validators a server can answer 304 to.
    pub fn has_validators(&self) -> bool {
        self.etag.is_some() || self.last_modified.is_some()
    }

    /// Age in seconds at `now`.
    pub fn age(&self, now: u64) -> u64 {
        now.saturating_sub(self.fetched_at)
    }
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Cache {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Cache { root: root.into() }
    }

    /// `--cache-dir` when given, else `COMFYPAK_CACHE_DIR`, else the XDG cache folder; made
    /// absolute against the current folder, since cached paths end up in `file:` URLs and in
    /// sandboxes that run elsewhere (a relative `--cache-dir` broke direct source builds).
    pub fn default_root(explicit: Option<&Path>) -> PathBuf {
        let root = Self::configured_root(explicit);
        std::path::absolute(&root).unwrap_or(root)
    }

    fn configured_root(explicit: Option<&Path>) -> PathBuf {
        if let Some(path) = explicit {
            return path.to_path_buf();
        }
        if let Some(dir) = std::env::var_os("COMFYPAK_CACHE_DIR").filter(|v| !v.is_empty()) {
            return PathBuf::from(dir);
        }
        if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(dir).join("comfypak");
        }
        match std::env::var_os("HOME") {
            Some(home) => PathBuf::from(home).join(".cache").join("comfypak"),
            None => std::env::temp_dir().join("comfypak-cache"),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
        move |source| CacheError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Writes `bytes` to `path` atomically: temp file in the cache's `tmp/`, fsync, rename,
    /// fsync of the folder.
    pub fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
        self.write_atomic_parts(path, &[bytes])
    }

    /// [`Cache::write_atomic`] of the concatenation of `parts`, without copying them into one
    /// buffer first.
    fn write_atomic_parts(&self, path: &Path, parts: &[&[u8]]) -> Result<(), CacheError> {
        let tmp_dir = self.root.join("tmp");
        std::fs::create_dir_all(&tmp_dir).map_err(Self::io(&tmp_dir))?;
        let tmp = self.unique_temp_path("write", "tmp");
        let result = (|| {
            let mut file = std::fs::File::create(&tmp)?;
            for part in parts {
                std::io::Write::write_all(&mut file, part)?;
            }
            file.sync_all()?;
            drop(file);
            crate::fsutil::persist(&tmp, path)
        })();
        if let Err(source) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(CacheError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
        Ok(())
    }

    /// The lock file guarding the cache entry of `kind` (`wheels`, `unpacked`) for `sha256`.
    pub fn entry_lock_path(&self, kind: &str, sha256: &Sha256Hex) -> PathBuf {
        self.root
            .join("locks")
            .join(kind)
            .join(format!("{sha256}.lock"))
    }

    /// A name in `<cache>/tmp` unique to this process: `<key>.<pid>.<n>.<suffix>`.
    pub fn unique_temp_path(&self, key: &str, suffix: &str) -> PathBuf {
        self.root.join("tmp").join(format!(
            "{key}.{}.{}.{suffix}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ))
    }

    /// Removes `<cache>/tmp/<key>.*` left by killed processes. Call only while holding the
    /// entry's lock: then no live process can be writing them.
    pub fn remove_stale_temps(&self, key: &str) {
        let Ok(entries) = std::fs::read_dir(self.root.join("tmp")) else {
            return;
        };
        let prefix = format!("{key}.");
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = crate::fsutil::remove_any(&entry.path());
            }
        }
    }

    fn page_path(&self, url: &str) -> PathBuf {
        let key = hex::encode(Sha256::digest(url.as_bytes()));
        self.root
            .join("pages")
            .join(INDEX_FORMAT)
            .join(format!("{key}.page"))
    }

    /// The cached page for `url`, if there is a whole, readable one.
    pub fn read_page(&self, url: &str) -> Option<CachedPage> {
        let mut bytes = std::fs::read(self.page_path(url)).ok()?;
        let newline = bytes.iter().position(|b| *b == b'\n')?;
        let mut page: CachedPage = serde_json::from_slice(&bytes[..newline]).ok()?;
        if page.url != url {
            return None;
        }
        bytes.drain(..=newline);
        page.body = bytes;
        Some(page)
    }

    /// Stores a page: one JSON header line, then the body.
    pub fn write_page(&self, page: &CachedPage) -> Result<(), CacheError> {
        let mut header = serde_json::to_vec(page).unwrap_or_default();
        header.push(b'\n');
        self.write_atomic_parts(&self.page_path(&page.url), &[&header, &page.body])
    }

    /// Where the METADATA of a wheel with this sha256 is kept (forever: a hash names one file).
    pub fn metadata_path(&self, key: &MetadataKey) -> PathBuf {
        let key = key.as_file_stem();
        self.root
            .join("metadata")
            .join(INDEX_FORMAT)
            .join(format!("{key}.METADATA"))
    }

    pub fn read_metadata(&self, key: &MetadataKey) -> Option<Vec<u8>> {
        std::fs::read(self.metadata_path(key)).ok()
    }

    pub fn write_metadata(&self, key: &MetadataKey, bytes: &[u8]) -> Result<(), CacheError> {
        self.write_atomic(&self.metadata_path(key), bytes)
    }

    /// Where a whole wheel with this sha256 is kept.
    pub fn wheel_path(&self, sha256: &Sha256Hex, filename: &SafeFileName) -> PathBuf {
        self.root
            .join("wheels")
            .join(FORMAT)
            .join(&sha256[..2])
            .join(sha256.as_str())
            .join(filename.as_str())
    }
}

/// An exclusive advisory lock on one cache entry, held until dropped. The kernel releases
/// it when the process dies, so a killed process never blocks the next one.
#[derive(Debug)]
pub struct EntryLock {
    _file: std::fs::File,
}

impl EntryLock {
    /// Blocks until the lock at `path` is ours (creating the lock file when needed).
    pub fn acquire(path: &Path) -> std::io::Result<EntryLock> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)?;
        file.lock()?;
        Ok(EntryLock { _file: file })
    }
}

/// What wheel metadata is keyed by: the wheel's sha256 when the index gives it, else its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataKey {
    Sha256(Sha256Hex),
    Url(String),
}

impl MetadataKey {
    fn as_file_stem(&self) -> String {
        match self {
            MetadataKey::Sha256(sha) => sha.to_string(),
            MetadataKey::Url(url) => format!("url-{}", hex::encode(Sha256::digest(url.as_bytes()))),
        }
    }
}

/// Reads `Cache-Control` for `max-age` and `no-cache`/`no-store`.
pub fn parse_cache_control(value: &str) -> (Option<u64>, bool) {
    let mut max_age = None;
    let mut no_cache = false;
    for directive in value.split(',') {
        let directive = directive.trim().to_ascii_lowercase();
        if directive == "no-cache" || directive == "no-store" {
            no_cache = true;
        } else if let Some(v) = directive.strip_prefix("max-age=") {
            max_age = v.trim_matches('"').parse().ok();
        }
    }
    (max_age, no_cache)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relative_cache_dir_is_made_absolute_against_the_current_folder() {
        let root = Cache::default_root(Some(Path::new("cache-a")));
        assert!(root.is_absolute(), "{}", root.display());
        let here = std::env::current_dir().unwrap();
        assert_eq!(root, here.join("cache-a"));
        let given = Path::new("/srv/comfypak-cache");
        assert_eq!(Cache::default_root(Some(given)), given);
    }
    #[test]
    fn pages_round_trip_and_mismatched_urls_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let page = CachedPage {
            url: "http://127.0.0.1:1/simple/numpy/".into(),
            fetched_at: 100,
            etag: Some("\"abc\"".into()),
            last_modified: None,
            max_age: Some(600),
            no_cache: false,
            content_type: Some("text/html".into()),
            body: b"<html>\n<a href=x>x</a>\n</html>".to_vec(),
        };
        cache.write_page(&page).unwrap();
        assert_eq!(cache.read_page(&page.url), Some(page.clone()));
        assert_eq!(cache.read_page("http://127.0.0.1:1/simple/other/"), None);
        // No temp files are left behind.
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("tmp")).unwrap().collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn torn_entries_are_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let url = "http://127.0.0.1:1/simple/x/";
        let path = cache.page_path(url);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"{\"url\":\"http://127.0.0.1:1/sim").unwrap();
        assert_eq!(cache.read_page(url), None);
    }

    #[test]
    fn cache_control() {
        assert_eq!(
            parse_cache_control("max-age=600, public"),
            (Some(600), false)
        );
        assert_eq!(parse_cache_control("no-cache"), (None, true));
        assert_eq!(parse_cache_control("public"), (None, false));
    }

    #[test]
    fn metadata_keys() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let key = MetadataKey::Sha256(Sha256Hex::parse(&"ab".repeat(32)).unwrap());
        cache.write_metadata(&key, b"Name: x\n").unwrap();
        assert_eq!(cache.read_metadata(&key).unwrap(), b"Name: x\n");
        let url_key = MetadataKey::Url("http://127.0.0.1/x.whl".into());
        assert!(cache
            .metadata_path(&url_key)
            .to_string_lossy()
            .contains("url-"));
    }
}

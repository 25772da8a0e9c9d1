//! `comfypak cache info` and `comfypak cache prune`: what the cache folder holds, and removing
//! the least recently used of it down to a size or an age.
//!
//! Entries it may remove, each whole: downloaded wheels (`wheels/v1/<xx>/<sha>/`), unpacked
//! wheels (`unpacked/v2/<xx>/<sha>/`), built wheels of sources (`source-builds/v1/<key>/`),
//! bytecode (`bytecode/v1/<fingerprint>/<key>`), and the layer cache's stack layer and tar
//! entries (`layers/keys/`, `layers/tars/`); a layer blob (`layers/blobs/sha256/`) goes with
//! the last entry that names it, and a blob no entry names is removed too. An entry's age is
//! its mtime: the time it was written, or for layer entries also the time of their last hit
//! (a hit marks it). Index pages, METADATA, runtime roots, registry bases, git checkouts and
//! temp files are only counted.
//!
//! Safety: prune holds the cache's prune lock exclusively (`locks/prune.lock`), which every
//! comfypak process using the cache holds shared ([`use_lock`]), so it never removes what a
//! running build is about to read: while the cache is in use it stops with an error. A folder
//! entry is renamed into `tmp/` first and then deleted, a file entry is unlinked: a reader
//! sees an entry whole or not at all. A layer entry goes before its blobs. The newest stack
//! layer entry of each (platform, stack layer), the newest tar entry of each (platform, image
//! layer), and the blobs they name are kept unless `include_newest` says otherwise: the last
//! build's layers stay reusable. The work is bounded: one walk of each area, one sort.
//!
//! Owns: the accounting and the removal order. Must not: know an entry's format beyond what
//! its owner ([`crate::pack::layer_cache`], the folder names above) exposes, or touch anything
//! outside the cache folder.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::pack::layer_cache::LayerCache;

/// Why a prune or info could not run.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    #[error("cache {}: another comfypak process is using it", path.display())]
    InUse { path: PathBuf },
    #[error("cache {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("nothing to prune by: give --max-size SIZE, --older-than DURATION, or both")]
    NoLimit,
}

impl PruneError {
    /// What the user can do about it.
    pub fn help(&self) -> Option<String> {
        match self {
            PruneError::InUse { .. } => Some(
                "run `comfypak cache prune` again when the builds using this cache have finished"
                    .to_string(),
            ),
            PruneError::Io { .. } => {
                Some("check the folder's permissions, or pick the cache with --cache-dir".into())
            }
            PruneError::NoLimit => Some(
                "e.g. `comfypak cache prune --max-size 50GB` or `--older-than 720h`".to_string(),
            ),
        }
    }
}

/// The areas of the cache, in the order `info` lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Area {
    Wheels,
    Unpacked,
    SourceBuilds,
    Bytecode,
    /// Stack layer and tar entries of the layer cache, with their blobs.
    Layers,
    /// Everything else (index pages, METADATA, runtime roots, ...): counted, never pruned.
    Other,
}

impl Area {
    pub fn name(self) -> &'static str {
        match self {
            Area::Wheels => "wheels",
            Area::Unpacked => "unpacked wheels",
            Area::SourceBuilds => "built wheels",
            Area::Bytecode => "bytecode",
            Area::Layers => "layer cache",
            Area::Other => "other",
        }
    }
}

/// One area's size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AreaSize {
    /// Entries (for the layer cache: stack layer and tar entries).
    pub entries: usize,
    /// Bytes (for the layer cache: with its blobs).
    pub bytes: u64,
}

/// `comfypak cache info`.
#[derive(Debug, Clone)]
pub struct CacheInfo {
    pub root: PathBuf,
    pub areas: BTreeMap<Area, AreaSize>,
    /// Layer blobs and their bytes (part of [`Area::Layers`]).
    pub blobs: AreaSize,
    /// Tar entries (the rest of [`Area::Layers`]'s entries are stack layer entries).
    pub tar_entries: usize,
    /// Layer entries kept by default (the newest per platform and stack layer).
    pub newest_layer_entries: usize,
}

impl CacheInfo {
    pub fn total(&self) -> u64 {
        self.areas.values().map(|a| a.bytes).sum()
    }
}

/// What to prune.
#[derive(Debug, Clone, Default)]
pub struct PruneOptions {
    /// Remove least recently used entries until the cache is at most this big.
    pub max_size: Option<u64>,
    /// Remove entries not used for this long.
    pub older_than: Option<Duration>,
    /// The newest layer entry of each platform and stack layer may go too.
    pub include_newest: bool,
    /// Say what would go; remove nothing.
    pub dry_run: bool,
}

/// What a prune removed (or, dry, would remove), per area, and the cache's size after it.
#[derive(Debug, Clone, Default)]
pub struct PruneReport {
    pub removed: BTreeMap<Area, AreaSize>,
    pub blobs_removed: AreaSize,
    pub before: u64,
    pub after: u64,
    pub kept_newest: usize,
}

/// One entry that may be removed.
#[derive(Debug, Clone)]
struct Item {
    area: Area,
    path: PathBuf,
    bytes: u64,
    used: SystemTime,
    /// A newest layer entry: kept unless `include_newest`.
    newest: bool,
    /// Layer blobs it names.
    blobs: Vec<String>,
    is_dir: bool,
}

/// The shared hold every comfypak process takes on its cache (see the module doc): prune
/// waits for none of them, it refuses while one is held. None when the lock file cannot be
/// made (a read-only cache is never pruned either).
pub fn use_lock(cache_root: &Path) -> Option<std::fs::File> {
    let path = lock_path(cache_root);
    std::fs::create_dir_all(path.parent()?).ok()?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .ok()?;
    file.lock_shared().ok()?;
    Some(file)
}

fn lock_path(cache_root: &Path) -> PathBuf {
    cache_root.join("locks").join("prune.lock")
}

/// Sizes of every area of the cache at `root`.
pub fn info(root: &Path) -> Result<CacheInfo, PruneError> {
    let scan = Scan::of(root)?;
    let mut areas: BTreeMap<Area, AreaSize> = BTreeMap::new();
    for item in &scan.items {
        let a = areas.entry(item.area).or_default();
        a.entries += 1;
        a.bytes += item.bytes;
    }
    let blobs = AreaSize {
        entries: scan.blobs.len(),
        bytes: scan.blobs.values().sum(),
    };
    areas.entry(Area::Layers).or_default().bytes += blobs.bytes;
    areas.insert(
        Area::Other,
        AreaSize {
            entries: 0,
            bytes: scan.other,
        },
    );
    Ok(CacheInfo {
        root: root.to_path_buf(),
        areas,
        blobs,
        tar_entries: scan
            .items
            .iter()
            .filter(|i| {
                i.area == Area::Layers
                    && i.path.parent().and_then(Path::file_name) == Some("tars".as_ref())
            })
            .count(),
        newest_layer_entries: scan.items.iter().filter(|i| i.newest).count(),
    })
}

/// Prunes the cache at `root` per `options` (see the module doc).
pub fn prune(root: &Path, options: &PruneOptions) -> Result<PruneReport, PruneError> {
    if options.max_size.is_none() && options.older_than.is_none() {
        return Err(PruneError::NoLimit);
    }
    let _guard = exclusive(root)?;
    let scan = Scan::of(root)?;
    let before = scan.total();
    let now = SystemTime::now();
    // Blob reference counts over every entry.
    let mut refs: HashMap<&str, usize> = HashMap::new();
    for item in &scan.items {
        for b in &item.blobs {
            *refs.entry(b.as_str()).or_default() += 1;
        }
    }
    let mut candidates: Vec<&Item> = scan
        .items
        .iter()
        .filter(|i| options.include_newest || !i.newest)
        .collect();
    candidates.sort_by(|a, b| a.used.cmp(&b.used).then_with(|| a.path.cmp(&b.path)));
    let mut size = before;
    let mut chosen: Vec<&Item> = Vec::new();
    let mut freed_blobs: Vec<String> = Vec::new();
    let mut take = |item: &Item, size: &mut u64, refs: &mut HashMap<&str, usize>| {
        *size -= item.bytes;
        for b in &item.blobs {
            if let Some(n) = refs.get_mut(b.as_str()) {
                *n -= 1;
                if *n == 0 {
                    *size -= scan.blobs.get(b).copied().unwrap_or(0);
                    freed_blobs.push(b.clone());
                }
            }
        }
    };
    for item in candidates {
        let old = options
            .older_than
            .is_some_and(|age| now.duration_since(item.used).unwrap_or_default() >= age);
        let big = options.max_size.is_some_and(|max| size > max);
        if old || big {
            take(item, &mut size, &mut refs);
            chosen.push(item);
        }
    }
    // Blobs no entry names (a build's leftovers) go too.
    for (hex, bytes) in &scan.blobs {
        if !refs.contains_key(hex.as_str()) {
            size -= bytes;
            freed_blobs.push(hex.clone());
        }
    }
    let mut report = PruneReport {
        before,
        after: size,
        kept_newest: if options.include_newest {
            0
        } else {
            scan.items.iter().filter(|i| i.newest).count()
        },
        ..PruneReport::default()
    };
    for item in &chosen {
        let a = report.removed.entry(item.area).or_default();
        a.entries += 1;
        a.bytes += item.bytes;
    }
    report.blobs_removed = AreaSize {
        entries: freed_blobs.len(),
        bytes: freed_blobs
            .iter()
            .map(|b| scan.blobs.get(b).copied().unwrap_or(0))
            .sum(),
    };
    if options.dry_run {
        return Ok(report);
    }
    let layers = LayerCache::new(root);
    let trash = root.join("tmp");
    for (n, item) in chosen.iter().enumerate() {
        remove_item(item, &trash, n).map_err(|source| PruneError::Io {
            path: item.path.clone(),
            source,
        })?;
    }
    for hex in &freed_blobs {
        layers.remove_blob(hex).map_err(|source| PruneError::Io {
            path: layers.root().join("blobs/sha256").join(hex),
            source,
        })?;
    }
    Ok(report)
}

/// The exclusive hold on the prune lock, or [`PruneError::InUse`].
fn exclusive(root: &Path) -> Result<std::fs::File, PruneError> {
    let path = lock_path(root);
    let io = |source| PruneError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(path.parent().unwrap_or(root)).map_err(io)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(PruneError::InUse {
            path: root.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

/// Removes one entry: a folder renamed into `trash` first (readers see it whole or gone).
fn remove_item(item: &Item, trash: &Path, n: usize) -> io::Result<()> {
    if !item.is_dir {
        return match std::fs::remove_file(&item.path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        };
    }
    std::fs::create_dir_all(trash)?;
    let moved = trash.join(format!("prune.{}.{n}", std::process::id()));
    match std::fs::rename(&item.path, &moved) {
        Ok(()) => std::fs::remove_dir_all(&moved),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// One walk of the cache.
struct Scan {
    items: Vec<Item>,
    /// Layer blobs: hex → bytes.
    blobs: BTreeMap<String, u64>,
    /// Bytes of everything else.
    other: u64,
}

impl Scan {
    fn total(&self) -> u64 {
        self.items.iter().map(|i| i.bytes).sum::<u64>() + self.blobs.values().sum::<u64>()
    }

    fn of(root: &Path) -> Result<Scan, PruneError> {
        if !root.is_dir() {
            return Err(PruneError::Io {
                path: root.to_path_buf(),
                source: io::Error::new(io::ErrorKind::NotFound, "no such cache folder"),
            });
        }
        let mut items = Vec::new();
        // Folder entries two levels down (`<xx>/<sha>`) or one (`<key>`).
        for (area, dir, depth) in [
            (Area::Wheels, "wheels/v1", 2),
            (Area::Unpacked, "unpacked/v2", 2),
            (Area::SourceBuilds, "source-builds/v1", 1),
        ] {
            for path in children_at(&root.join(dir), depth) {
                let Ok(meta) = std::fs::symlink_metadata(&path) else {
                    continue;
                };
                items.push(Item {
                    area,
                    bytes: tree_bytes(&path),
                    used: meta.modified().unwrap_or(std::time::UNIX_EPOCH),
                    path,
                    newest: false,
                    blobs: Vec::new(),
                    is_dir: meta.is_dir(),
                });
            }
        }
        for path in children_at(&root.join("bytecode/v1"), 2) {
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            items.push(Item {
                area: Area::Bytecode,
                bytes: meta.len(),
                used: meta.modified().unwrap_or(std::time::UNIX_EPOCH),
                path,
                newest: false,
                blobs: Vec::new(),
                is_dir: meta.is_dir(),
            });
        }
        let layers = LayerCache::new(root);
        let entries = layers.entries();
        // The newest stack layer entry of each (platform, layer).
        let mut newest: HashMap<&(String, String), usize> = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            if let Some(group) = &e.group {
                let slot = newest.entry(group).or_insert(i);
                if (e.used, &e.path) > (entries[*slot].used, &entries[*slot].path) {
                    *slot = i;
                }
            }
        }
        let newest: std::collections::HashSet<usize> = newest.into_values().collect();
        for (i, e) in entries.iter().enumerate() {
            items.push(Item {
                area: Area::Layers,
                path: e.path.clone(),
                bytes: e.bytes,
                used: e.used,
                newest: newest.contains(&i),
                blobs: e.blobs.clone(),
                is_dir: false,
            });
        }
        let blobs: BTreeMap<String, u64> = layers.blobs().into_iter().collect();
        let counted = items.iter().map(|i| i.bytes).sum::<u64>() + blobs.values().sum::<u64>();
        let other = tree_bytes(root).saturating_sub(counted);
        Ok(Scan {
            items,
            blobs,
            other,
        })
    }
}

/// The entries `depth` levels below `dir` (names starting with `.` left out: temp names).
fn children_at(dir: &Path, depth: usize) -> Vec<PathBuf> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in read.flatten() {
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if depth <= 1 {
            out.push(entry.path());
        } else if entry.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(children_at(&entry.path(), depth - 1));
        }
    }
    out.sort();
    out
}

/// The bytes of the files below `path` (each file's length; links not followed).
fn tree_bytes(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    let Ok(read) = std::fs::read_dir(path) else {
        return 0;
    };
    read.flatten().map(|e| tree_bytes(&e.path())).sum()
}

//! Validating a wheel and unpacking it, once, into the cache's unpacked store.
//!
//! The store keeps each wheel's members as plain files under
//! `unpacked/v2/<sha[..2]>/<sha>/tree/`, with `manifest.json` beside the tree (the dist-info
//! name, Root-Is-Purelib, every file's size, sha256 and executable bit, entry points). A
//! wheel enters the store only when every member is safe (no `..`, absolute paths, symlinks
//! or other special files, no duplicates), matches its RECORD (sha256/384/512 and size,
//! nothing missing on either side) and holds exactly the size the zip declares; when no
//! member unpacks past [`MAX_RATIO`] times its compressed size and the whole stays under
//! [`MAX_UNPACKED_TOTAL`] (zip bombs); and when METADATA's name and version are the file
//! name's. It is unpacked into a temp dir and swapped into place under a per-entry lock, so
//! the store never holds a partial or unverified tree.
//!
//! Store files are read-only, and `stamps.json` records each one's size and mtime: layers
//! hard-link them, and an entry whose files changed since (an installed file edited in
//! place) is unpacked again instead of being trusted.
//!
//! Must not: decide install locations (`layout`) or write into a layer.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::link::DirFd;
use super::record::{b64, parse_record, RecordHasher};
use crate::cache::{Cache, EntryLock};
use crate::digest::Sha256Hex;
use crate::wheel::remote_zip::{read_central_directory, TailRead};

/// Bump when the manifest or tree layout changes.
const STORE_FORMAT: u32 = 2;

/// The most a wheel may unpack to, all members together (the largest real wheels, CUDA
/// libraries, unpack to a few GiB).
pub const MAX_UNPACKED_TOTAL: u64 = 32 << 30;
/// The highest uncompressed/compressed ratio a member larger than [`RATIO_MIN_SIZE`] may
/// have. Large members of real wheels stay far below (shared libraries compress 3-10×);
/// deflate bombs reach about 1000.
pub const MAX_RATIO: u64 = 200;
/// Members smaller than this are not ratio-checked: small members of real wheels compress
/// far better than large ones (opencv-contrib-python 5.1.0.95 has a 6.3 MB member stored in
/// 17 kB, ratio 360), and what a small member can write is bounded anyway (its declared size
/// is enforced while unpacking, and [`MAX_UNPACKED_TOTAL`] bounds the wheel).
pub const RATIO_MIN_SIZE: u64 = 64 << 20;

/// Why a wheel was refused or could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum WheelError {
    #[error("{wheel}: refusing member `{member}`: {reason}")]
    Unsafe {
        wheel: String,
        member: String,
        reason: String,
    },
    #[error(
        "{wheel}: member `{member}` appears twice in the archive; refusing an ambiguous wheel"
    )]
    Duplicate { wheel: String, member: String },
    #[error("{wheel}: member `{member}` is not listed (with a hash) in {dist_info}/RECORD; refusing an unverifiable file")]
    NotInRecord {
        wheel: String,
        member: String,
        dist_info: String,
    },
    #[error("{wheel}: RECORD lists `{member}`, which is not in the archive")]
    MissingFromArchive { wheel: String, member: String },
    #[error("{wheel}: member `{member}` does not match RECORD: expected {algorithm}={expected}, found {algorithm}={actual}")]
    HashMismatch {
        wheel: String,
        member: String,
        algorithm: String,
        expected: String,
        actual: String,
    },
    #[error("{wheel}: member `{member}` is {actual} bytes, RECORD says {expected}")]
    SizeMismatch {
        wheel: String,
        member: String,
        expected: u64,
        actual: u64,
    },
    #[error("{wheel}: {dist_info}/RECORD line {line}: {message}")]
    BadRecord {
        wheel: String,
        dist_info: String,
        line: usize,
        message: String,
    },
    #[error("{wheel}: {message}")]
    BadWheel { wheel: String, message: String },
    #[error("{wheel}: METADATA says {field} `{metadata}`, the file name says `{filename}`; pip and uv refuse such a wheel too")]
    MetadataMismatch {
        wheel: String,
        field: &'static str,
        metadata: String,
        filename: String,
    },
    #[error("{wheel}: member `{member}` {reason}; refusing a possible zip bomb")]
    TooLarge {
        wheel: String,
        member: String,
        reason: String,
    },
    #[error("{wheel}: cannot read the zip archive: {message}")]
    Zip { wheel: String, message: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl WheelError {
    /// What the user can do about it.
    pub fn help(&self) -> Option<String> {
        match self {
            WheelError::Unsafe { .. } => {
                Some("this wheel is malformed or malicious; nothing was installed".to_string())
            }
            WheelError::MetadataMismatch { .. } => {
                Some("the wheel is mislabelled; use a correctly built wheel".to_string())
            }
            WheelError::TooLarge { .. } => {
                Some("a real wheel does not do this; nothing was unpacked".to_string())
            }
            WheelError::HashMismatch { wheel, member, .. }
            | WheelError::SizeMismatch { wheel, member, .. } => Some(format!(
                "nothing was installed. If the wheel is known to ship a wrong RECORD row for this \
                 file (and the file itself is right), accept exactly that in stack.toml, with the \
                 reason, and resolve again: `[[install.record-mismatch]]` `wheel = \"{wheel}\"` \
                 `file = \"{member}\"` `reason = \"…\"`"
            )),
            _ => None,
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> WheelError + '_ {
    move |source| WheelError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One file of an unpacked wheel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Path inside the wheel (`/`-separated, normalized).
    pub path: String,
    pub size: u64,
    /// Urlsafe base64 sha256 (RECORD encoding); empty in a light manifest.
    pub sha256: String,
    pub executable: bool,
}

/// What the store knows about one wheel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WheelManifest {
    pub format: u32,
    pub filename: String,
    /// Hex sha256 of the wheel file.
    pub sha256: String,
    /// `Name` from METADATA, as written.
    pub name: String,
    pub version: String,
    /// `name-version.dist-info`.
    pub dist_info: String,
    pub root_is_purelib: bool,
    /// Every member but the directory entries and `RECORD` (and its signatures), by path.
    pub files: Vec<ManifestFile>,
    /// `entry_points.txt`, if any.
    pub entry_points: Option<String>,
    /// Members whose bytes did not match their RECORD row and were taken as they are because
    /// the caller accepted exactly that ([`ensure_unpacked`]'s `accepted`); `files` has their
    /// true hash and size. A later caller that does not accept them gets no store hit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub record_mismatch: Vec<String>,
}

/// A wheel in the unpacked store.
#[derive(Debug, Clone)]
pub struct UnpackedWheel {
    pub manifest: WheelManifest,
    /// The folder holding the wheel's members.
    pub tree: PathBuf,
}

/// The store folder of the wheel with this sha256.
pub fn unpacked_dir(cache: &Cache, sha256: &Sha256Hex) -> PathBuf {
    cache
        .root()
        .join("unpacked")
        .join(format!("v{STORE_FORMAT}"))
        .join(&sha256[..2])
        .join(sha256.as_str())
}

/// Size and modification time of one store file, as it was right after unpacking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    size: u64,
    mtime_sec: i64,
    mtime_nsec: i64,
}

impl Stamp {
    /// The stamp of an open file (no path lookup).
    fn of_file(file: &std::fs::File) -> std::io::Result<Stamp> {
        use std::os::unix::fs::MetadataExt;
        let meta = file.metadata()?;
        Ok(Stamp {
            size: meta.len(),
            mtime_sec: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        })
    }
}

/// Store files are read-only (0444, 0555 for executables): layers hard-link them, so an
/// in-place edit of an installed file would otherwise edit the store. Set on the open file.
fn set_store_mode_of(file: &std::fs::File, executable: bool) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = if executable { 0o555 } else { 0o444 };
    file.set_permissions(std::fs::Permissions::from_mode(mode))
}

/// Records every file's [`Stamp`] (in manifest order) in `stamps.json` beside the tree of
/// an entry being built in its temp folder (see [`write_entry_file`]).
fn write_stamps(
    entry: &Path,
    manifest: &WheelManifest,
    stamps: &[Stamp],
) -> Result<(), WheelError> {
    let json = serde_json::to_vec(&stamps).map_err(|e| WheelError::BadWheel {
        wheel: manifest.filename.clone(),
        message: e.to_string(),
    })?;
    write_entry_file(&entry.join("stamps.json"), &json)
}

/// Writes a file of a store entry that is still in its temp folder: plainly, with neither a
/// temp name nor an fsync. The folder is renamed into the store as a whole once complete, so
/// no reader sees a partial entry; and the tree's own files are not synced either, so an
/// fsync of this one bought no durability (it cost two fsyncs per file, four per wheel, on
/// the critical path of a cold install; the entry's rename is not synced either, see
/// [`crate::fsutil::replace_dir_unsynced`]). After a crash, an entry whose files came back empty
/// or truncated fails to parse or fails its stamps, and is unpacked again.
fn write_entry_file(path: &Path, bytes: &[u8]) -> Result<(), WheelError> {
    std::fs::write(path, bytes).map_err(io_err(path))
}

/// Whether every store file still has the size and mtime recorded when it was unpacked:
/// a file edited in place (through a hard link in some layer) is caught without hashing.
/// Each file is looked up by its member path from the open tree, one `fstatat` per file and
/// no folder opened: opening each folder first cost an `openat` and a `close` per folder of
/// the store (7,800 of each for the default deps layer), and the kernel's lookup of a short
/// relative path is cheaper than that.
fn stamps_match(entry: &Path, manifest: &WheelManifest) -> bool {
    let Some(stamps) = std::fs::read(entry.join("stamps.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Vec<Stamp>>(&b).ok())
    else {
        return false;
    };
    if stamps.len() != manifest.files.len() {
        return false;
    }
    let Ok(tree) = DirFd::open(&entry.join("tree")) else {
        return false;
    };
    manifest.files.iter().zip(&stamps).all(|(file, stamp)| {
        matches!(tree.stat(std::ffi::OsStr::new(&file.path)),
            Ok((size, sec, nsec))
                if size == stamp.size && sec == stamp.mtime_sec && nsec == stamp.mtime_nsec)
    })
}

fn read_store_entry(dir: &Path, sha256: &str) -> Option<UnpackedWheel> {
    let bytes = std::fs::read(dir.join("manifest.json")).ok()?;
    let manifest: WheelManifest = serde_json::from_slice(&bytes).ok()?;
    if manifest.format != STORE_FORMAT || !manifest.sha256.eq_ignore_ascii_case(sha256) {
        return None;
    }
    if !stamps_match(dir, &manifest) {
        // Changed since it was unpacked: not trusted; the caller unpacks it again.
        return None;
    }
    Some(UnpackedWheel {
        manifest,
        tree: dir.join("tree"),
    })
}

/// The unpacked form of the wheel at `wheel_path` (sha256 `sha256`), unpacking and verifying
/// it first when the store does not have it yet.
///
/// `accepted` names members whose RECORD row is known to be wrong (the lock's
/// `record-mismatch` for this exact wheel): their bytes are taken as they are and the
/// manifest says so. Every other member is verified as always, and a store entry made with a
/// member accepted is no hit for a caller that does not accept it.
pub fn ensure_unpacked(
    cache: &Cache,
    wheel_path: &Path,
    filename: &str,
    sha256: &Sha256Hex,
    accepted: &[&str],
) -> Result<UnpackedWheel, WheelError> {
    let dir = unpacked_dir(cache, sha256);
    let allowed = |hit: &UnpackedWheel| {
        hit.manifest
            .record_mismatch
            .iter()
            .all(|m| accepted.contains(&m.as_str()))
    };
    if let Some(hit) = read_store_entry(&dir, sha256).filter(allowed) {
        return Ok(hit);
    }
    let lock_path = cache.entry_lock_path("unpacked", sha256);
    let _lock = EntryLock::acquire(&lock_path).map_err(io_err(&lock_path))?;
    if let Some(hit) = read_store_entry(&dir, sha256).filter(allowed) {
        return Ok(hit);
    }
    let key = format!("unpack-{sha256}");
    cache.remove_stale_temps(&key);
    let tmp = cache.unique_temp_path(&key, "dir");
    let tree = tmp.join("tree");
    std::fs::create_dir_all(&tree).map_err(io_err(&tree))?;
    let result = (|| {
        let (manifest, stamps) =
            unpack_verified_stamped(wheel_path, filename, sha256, &tree, accepted)?;
        let json = serde_json::to_vec(&manifest).map_err(|e| WheelError::BadWheel {
            wheel: filename.to_string(),
            message: e.to_string(),
        })?;
        write_entry_file(&tmp.join("manifest.json"), &json)?;
        write_stamps(&tmp, &manifest, &stamps)?;
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        // A torn or outdated entry (we hold the lock) is moved aside, then replaced.
        crate::fsutil::replace_dir_unsynced(&tmp, &dir).map_err(io_err(&dir))?;
        Ok(manifest)
    })();
    match result {
        Ok(manifest) => Ok(UnpackedWheel {
            manifest,
            tree: dir.join("tree"),
        }),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

/// Checks a member name and returns it normalized (`.` and empty components dropped).
pub fn safe_member_path(wheel: &str, name: &str) -> Result<String, WheelError> {
    let unsafe_member = |reason: &str| WheelError::Unsafe {
        wheel: wheel.to_string(),
        member: name.to_string(),
        reason: reason.to_string(),
    };
    if name.contains('\0') {
        return Err(unsafe_member("the name contains a NUL byte"));
    }
    if name.contains('\\') {
        return Err(unsafe_member(
            "the name contains a backslash (a Windows path separator)",
        ));
    }
    if name.starts_with('/') {
        return Err(unsafe_member("absolute path"));
    }
    let first = name.split('/').next().unwrap_or("");
    if first.len() >= 2 && first.as_bytes()[1] == b':' {
        return Err(unsafe_member("absolute path with a drive letter"));
    }
    let mut parts = Vec::new();
    for component in name.split('/') {
        match component {
            "" | "." => {}
            ".." => return Err(unsafe_member("the path has a `..` component (zip slip)")),
            other => parts.push(other),
        }
    }
    if parts.is_empty() {
        return Err(unsafe_member("empty path"));
    }
    Ok(parts.join("/"))
}

const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFLNK: u32 = 0o120_000;

/// Every member name in the central directory, duplicates included (the zip crate keeps
/// only the last of two equal names, so they are counted here).
fn central_names(path: &Path, wheel: &str) -> Result<Vec<String>, WheelError> {
    let mut file = std::fs::File::open(path).map_err(io_err(path))?;
    let total = file.metadata().map_err(io_err(path))?.len();
    let mut start = total.saturating_sub(64 * 1024);
    loop {
        file.seek(SeekFrom::Start(start)).map_err(io_err(path))?;
        let mut tail = Vec::with_capacity((total - start) as usize);
        file.read_to_end(&mut tail).map_err(io_err(path))?;
        match read_central_directory(&tail, start, total) {
            Ok(TailRead::Directory(directory)) => {
                return Ok(directory.entries.into_iter().map(|e| e.name).collect())
            }
            Ok(TailRead::NeedFrom { start: need }) if need < start => start = need,
            Ok(TailRead::NeedFrom { .. }) => {
                return Err(WheelError::Zip {
                    wheel: wheel.to_string(),
                    message: "the central directory points outside the file".to_string(),
                })
            }
            Err(e) => {
                return Err(WheelError::Zip {
                    wheel: wheel.to_string(),
                    message: e.to_string(),
                })
            }
        }
    }
}

/// A RECORD row's `(algorithm, digest)` and size, by path.
type RecordEntry = (Option<(String, String)>, Option<u64>);

/// A member as listed, before extraction.
struct Member {
    index: usize,
    path: String,
    size: u64,
    executable: bool,
}

/// Refuses a member that would unpack far larger than its compressed bytes, and a wheel
/// whose members together would unpack past [`MAX_UNPACKED_TOTAL`] (by declared sizes;
/// extraction then holds each member to its declared size).
fn check_sizes<R: Read + Seek>(
    archive: &mut zip::ZipArchive<R>,
    members: &[Member],
    wheel: &str,
) -> Result<(), WheelError> {
    let mut total = 0u64;
    for member in members {
        let entry = archive
            .by_index_raw(member.index)
            .map_err(|e| WheelError::Zip {
                wheel: wheel.to_string(),
                message: e.to_string(),
            })?;
        let (size, compressed) = (entry.size(), entry.compressed_size().max(1));
        if size >= RATIO_MIN_SIZE && size / compressed > MAX_RATIO {
            return Err(WheelError::TooLarge {
                wheel: wheel.to_string(),
                member: member.path.clone(),
                reason: format!(
                    "would unpack {size} bytes from {compressed} (ratio {}, the limit is {MAX_RATIO})",
                    size / compressed
                ),
            });
        }
        total = total.saturating_add(size);
        if total > MAX_UNPACKED_TOTAL {
            return Err(WheelError::TooLarge {
                wheel: wheel.to_string(),
                member: member.path.clone(),
                reason: format!("brings the unpacked total past {MAX_UNPACKED_TOTAL} bytes"),
            });
        }
    }
    Ok(())
}

/// Checks that METADATA's name and version are the file name's (names normalized, versions
/// compared as PEP 440 versions), as pip and uv do.
fn check_name_version(filename: &str, name: &str, version: &str) -> Result<(), WheelError> {
    let Ok(parsed) = filename.parse::<crate::filename::WheelFilename>() else {
        return Err(WheelError::BadWheel {
            wheel: filename.to_string(),
            message: "the file name is not a wheel name".to_string(),
        });
    };
    let mismatch = |field, metadata: &str, filename_value: String| WheelError::MetadataMismatch {
        wheel: filename.to_string(),
        field,
        metadata: crate::digest::shown(metadata, 200),
        filename: filename_value,
    };
    let meta_name = pep508_rs::PackageName::new(name.trim().to_string())
        .map_err(|_| mismatch("Name", name, parsed.name.to_string()))?;
    if meta_name != parsed.name {
        return Err(mismatch("Name", name, parsed.name.to_string()));
    }
    let meta_version = version
        .trim()
        .parse::<pep440_rs::Version>()
        .map_err(|_| mismatch("Version", version, parsed.version.to_string()))?;
    if meta_version != parsed.version {
        return Err(mismatch("Version", version, parsed.version.to_string()));
    }
    Ok(())
}

/// Lists and checks the members: safe names, regular files only, no duplicates, one
/// `.dist-info` folder. Returns the file members and the dist-info folder name.
fn list_members<R: Read + Seek>(
    archive: &mut zip::ZipArchive<R>,
    names: &[String],
    wheel: &str,
) -> Result<(Vec<Member>, String), WheelError> {
    let mut seen = HashSet::new();
    for name in names {
        let is_dir = name.ends_with('/');
        let normalized = safe_member_path(wheel, name)?;
        if !is_dir && !seen.insert(normalized) {
            return Err(WheelError::Duplicate {
                wheel: wheel.to_string(),
                member: name.clone(),
            });
        }
    }
    let mut members = Vec::new();
    let mut dist_infos = BTreeMap::new();
    for index in 0..archive.len() {
        let entry = archive.by_index_raw(index).map_err(|e| WheelError::Zip {
            wheel: wheel.to_string(),
            message: e.to_string(),
        })?;
        let name = entry.name().to_string();
        let path = safe_member_path(wheel, &name)?;
        let mode = entry.unix_mode().unwrap_or(0);
        let kind = mode & S_IFMT;
        if kind == S_IFLNK || entry.is_symlink() {
            return Err(WheelError::Unsafe {
                wheel: wheel.to_string(),
                member: name,
                reason: "symbolic links are not allowed in wheels".to_string(),
            });
        }
        if entry.is_dir() || kind == S_IFDIR {
            continue;
        }
        if kind != 0 && kind != S_IFREG {
            return Err(WheelError::Unsafe {
                wheel: wheel.to_string(),
                member: name,
                reason: format!("not a regular file (mode {mode:o})"),
            });
        }
        if let Some((top, _)) = path.split_once('/') {
            if top.ends_with(".dist-info") {
                dist_infos.insert(top.to_string(), ());
            }
        }
        members.push(Member {
            index,
            path,
            size: entry.size(),
            executable: kind == S_IFREG && mode & 0o111 != 0,
        });
    }
    let dist_info = match dist_infos.len() {
        1 => dist_infos.into_keys().next().unwrap_or_default(),
        0 => {
            return Err(WheelError::BadWheel {
                wheel: wheel.to_string(),
                message: "no top-level `*.dist-info` folder".to_string(),
            })
        }
        _ => {
            return Err(WheelError::BadWheel {
                wheel: wheel.to_string(),
                message: format!(
                    "several `*.dist-info` folders: {}",
                    dist_infos.into_keys().collect::<Vec<_>>().join(", ")
                ),
            })
        }
    };
    Ok((members, dist_info))
}

fn read_member<R: Read + Seek>(
    archive: &mut zip::ZipArchive<R>,
    members: &[Member],
    path: &str,
    wheel: &str,
) -> Result<Option<Vec<u8>>, WheelError> {
    let Some(member) = members.iter().find(|m| m.path == path) else {
        return Ok(None);
    };
    let mut entry = archive
        .by_index(member.index)
        .map_err(|e| WheelError::Zip {
            wheel: wheel.to_string(),
            message: e.to_string(),
        })?;
    let mut out = Vec::with_capacity(member.size.min(1 << 24) as usize);
    (&mut entry)
        .take(member.size)
        .read_to_end(&mut out)
        .map_err(|e| WheelError::Zip {
            wheel: wheel.to_string(),
            message: format!("{path}: {e}"),
        })?;
    Ok(Some(out))
}

/// `Name` and `Version` from METADATA.
fn name_version(metadata: &[u8]) -> (String, String) {
    let headers = crate::wheel::core_metadata::parse_headers(metadata);
    let get = |field: &str| {
        headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(field))
            .map(|h| h.value.clone())
            .unwrap_or_default()
    };
    (get("Name"), get("Version"))
}

/// Reads WHEEL: checks `Wheel-Version` 1.x and returns `Root-Is-Purelib`.
fn parse_wheel_file(text: &[u8], wheel: &str, dist_info: &str) -> Result<bool, WheelError> {
    let headers = crate::wheel::core_metadata::parse_headers(text);
    let get = |field: &str| {
        headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(field))
            .map(|h| h.value.trim().to_string())
    };
    let version = get("Wheel-Version").ok_or_else(|| WheelError::BadWheel {
        wheel: wheel.to_string(),
        message: format!("{dist_info}/WHEEL has no Wheel-Version"),
    })?;
    if version.split('.').next() != Some("1") {
        return Err(WheelError::BadWheel {
            wheel: wheel.to_string(),
            message: format!("Wheel-Version {version} is not supported (this installer reads 1.x)"),
        });
    }
    Ok(get("Root-Is-Purelib").is_some_and(|v| v.eq_ignore_ascii_case("true")))
}

fn open_archive(
    wheel_path: &Path,
    wheel: &str,
) -> Result<zip::ZipArchive<BufReader<std::fs::File>>, WheelError> {
    let file = std::fs::File::open(wheel_path).map_err(io_err(wheel_path))?;
    zip::ZipArchive::new(BufReader::new(file)).map_err(|e| WheelError::Zip {
        wheel: wheel.to_string(),
        message: e.to_string(),
    })
}

fn is_record_file(path: &str, dist_info: &str) -> bool {
    path.strip_prefix(dist_info)
        .and_then(|rest| rest.strip_prefix('/'))
        .is_some_and(|rest| matches!(rest, "RECORD" | "RECORD.jws" | "RECORD.p7s"))
}

/// A writer that hashes what passes through it.
struct HashingWriter<W: Write> {
    inner: W,
    sha256: Sha256,
    other: Option<RecordHasher>,
    written: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha256.update(&buf[..n]);
        if let Some(other) = &mut self.other {
            other.update(&buf[..n]);
        }
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Validates the wheel and writes its members under `tree`; returns its manifest.
///
/// The steps, each a function below: [`open_checked`] (member names, kinds, sizes and the
/// zip-bomb limits, from the central directory), [`read_record`] (RECORD's rows by path),
/// [`read_dist_info`] + [`DistInfo::verified`] (WHEEL, METADATA against the file name,
/// entry points), [`extract_member`] for every member (inflated, hashed and checked in one
/// pass, straight into its store file), and [`check_record_covered`] (nothing RECORD lists
/// is missing from the archive).
pub fn unpack_verified(
    wheel_path: &Path,
    filename: &str,
    sha256: &str,
    tree: &Path,
) -> Result<WheelManifest, WheelError> {
    unpack_verified_stamped(wheel_path, filename, sha256, tree, &[]).map(|(manifest, _)| manifest)
}

/// [`unpack_verified`], also returning each file's [`Stamp`] (in manifest order), taken from
/// the open file rather than by path.
fn unpack_verified_stamped(
    wheel_path: &Path,
    filename: &str,
    sha256: &str,
    tree: &Path,
    accepted: &[&str],
) -> Result<(WheelManifest, Vec<Stamp>), WheelError> {
    let mut opened = open_checked(wheel_path, filename)?;
    let record = read_record(&mut opened, filename)?;
    let dist = read_dist_info(&mut opened, filename)?.verified(filename, &opened.dist_info)?;
    let mut files = Vec::with_capacity(opened.members.len());
    let mut record_mismatch = Vec::new();
    let mut dirs = CreatedDirs::new(tree);
    for member in &opened.members {
        if is_record_file(&member.path, &opened.dist_info) {
            continue;
        }
        let Some((Some(hash), size)) = record.get(&member.path) else {
            return Err(WheelError::NotInRecord {
                wheel: filename.to_string(),
                member: member.path.clone(),
                dist_info: opened.dist_info.clone(),
            });
        };
        let expected = Expected {
            algorithm: &hash.0,
            digest: &hash.1,
            size: *size,
            accept_mismatch: accepted.contains(&member.path.as_str()),
        };
        let (file, stamp, mismatched) = extract_member(
            &mut opened.archive,
            member,
            &expected,
            &mut dirs,
            filename,
            &opened.dist_info,
        )?;
        if mismatched {
            record_mismatch.push(member.path.clone());
        }
        files.push((file, stamp));
    }
    check_record_covered(&record, &opened.members, &opened.dist_info, filename)?;
    files.sort_by(|a, b| a.0.path.cmp(&b.0.path));
    let (files, stamps) = files.into_iter().unzip();
    let manifest = WheelManifest {
        format: STORE_FORMAT,
        filename: filename.to_string(),
        sha256: sha256.to_ascii_lowercase(),
        name: dist.name,
        version: dist.version,
        dist_info: opened.dist_info,
        root_is_purelib: dist.root_is_purelib,
        files,
        entry_points: dist.entry_points,
        record_mismatch,
    };
    Ok((manifest, stamps))
}

/// A wheel archive whose member list passed the checks of [`open_checked`].
struct OpenedWheel {
    archive: zip::ZipArchive<BufReader<std::fs::File>>,
    /// The file members, in archive order.
    members: Vec<Member>,
    /// `name-version.dist-info`.
    dist_info: String,
}

impl OpenedWheel {
    /// The bytes of the member at `path`, if there is one.
    fn read(&mut self, path: &str, wheel: &str) -> Result<Option<Vec<u8>>, WheelError> {
        read_member(&mut self.archive, &self.members, path, wheel)
    }
}

/// Step 1: opens the archive and checks its member list: safe names, regular files only, no
/// duplicates, one `.dist-info` folder, and the size limits ([`check_sizes`]).
fn open_checked(wheel_path: &Path, filename: &str) -> Result<OpenedWheel, WheelError> {
    let names = central_names(wheel_path, filename)?;
    let mut archive = open_archive(wheel_path, filename)?;
    let (members, dist_info) = list_members(&mut archive, &names, filename)?;
    check_sizes(&mut archive, &members, filename)?;
    Ok(OpenedWheel {
        archive,
        members,
        dist_info,
    })
}

/// Step 2: RECORD's rows, by normalized path.
fn read_record(
    opened: &mut OpenedWheel,
    filename: &str,
) -> Result<BTreeMap<String, RecordEntry>, WheelError> {
    let dist_info = opened.dist_info.clone();
    let record_path = format!("{dist_info}/RECORD");
    let bad_record = |line, message: String| WheelError::BadRecord {
        wheel: filename.to_string(),
        dist_info: dist_info.clone(),
        line,
        message,
    };
    let bytes = opened
        .read(&record_path, filename)?
        .ok_or_else(|| WheelError::BadWheel {
            wheel: filename.to_string(),
            message: format!("no {record_path}"),
        })?;
    let text = String::from_utf8(bytes).map_err(|_| bad_record(0, "not UTF-8".to_string()))?;
    let rows = parse_record(&text).map_err(|(line, message)| bad_record(line, message))?;
    let mut record = BTreeMap::new();
    for row in rows {
        let path = safe_member_path(filename, &row.path)?;
        record.insert(path, (row.hash, row.size));
    }
    Ok(record)
}

/// The dist-info files an installer reads, as found in the archive.
struct DistInfoFiles {
    wheel: Option<Vec<u8>>,
    metadata: Option<Vec<u8>>,
    entry_points: Option<String>,
}

/// What the dist-info files say.
struct DistInfo {
    name: String,
    version: String,
    root_is_purelib: bool,
    entry_points: Option<String>,
}

/// Step 3: reads WHEEL, METADATA and entry_points.txt (the one place both the verified
/// unpack and the light manifest read them).
fn read_dist_info(opened: &mut OpenedWheel, filename: &str) -> Result<DistInfoFiles, WheelError> {
    let dist_info = opened.dist_info.clone();
    Ok(DistInfoFiles {
        wheel: opened.read(&format!("{dist_info}/WHEEL"), filename)?,
        metadata: opened.read(&format!("{dist_info}/METADATA"), filename)?,
        entry_points: opened
            .read(&format!("{dist_info}/entry_points.txt"), filename)?
            .map(|b| String::from_utf8_lossy(&b).into_owned()),
    })
}

impl DistInfoFiles {
    /// For installing: WHEEL and METADATA must be there, WHEEL must be version 1.x, and
    /// METADATA's name and version must be the file name's.
    fn verified(self, filename: &str, dist_info: &str) -> Result<DistInfo, WheelError> {
        let missing = |file: &str| WheelError::BadWheel {
            wheel: filename.to_string(),
            message: format!("no {dist_info}/{file}"),
        };
        let wheel_text = self.wheel.ok_or_else(|| missing("WHEEL"))?;
        let root_is_purelib = parse_wheel_file(&wheel_text, filename, dist_info)?;
        let metadata = self.metadata.ok_or_else(|| missing("METADATA"))?;
        let (name, version) = name_version(&metadata);
        check_name_version(filename, &name, &version)?;
        Ok(DistInfo {
            name,
            version,
            root_is_purelib,
            entry_points: self.entry_points,
        })
    }

    /// For listing paths only: what is there, with pip's defaults for what is not (no WHEEL
    /// or an unreadable one: purelib).
    fn lenient(self, filename: &str, dist_info: &str) -> DistInfo {
        let (name, version) = name_version(&self.metadata.unwrap_or_default());
        DistInfo {
            name,
            version,
            root_is_purelib: parse_wheel_file(&self.wheel.unwrap_or_default(), filename, dist_info)
                .unwrap_or(true),
            entry_points: self.entry_points,
        }
    }
}

/// What RECORD says of one member.
struct Expected<'a> {
    algorithm: &'a str,
    digest: &'a str,
    size: Option<u64>,
    /// The caller accepts this member's RECORD row as wrong: a mismatch is no error.
    accept_mismatch: bool,
}

/// The folders created under a tree so far, so that each is created once.
struct CreatedDirs<'a> {
    tree: &'a Path,
    done: HashSet<PathBuf>,
}

impl<'a> CreatedDirs<'a> {
    fn new(tree: &'a Path) -> Self {
        CreatedDirs {
            tree,
            done: HashSet::new(),
        }
    }

    /// `tree/path`, with its parent folders created.
    fn file_path(&mut self, path: &str) -> Result<PathBuf, WheelError> {
        let dest = self.tree.join(path);
        if let Some(parent) = dest.parent() {
            if !self.done.contains(parent) {
                std::fs::create_dir_all(parent).map_err(io_err(parent))?;
                self.done.insert(parent.to_path_buf());
            }
        }
        Ok(dest)
    }
}

/// Step 4, per member: inflates it into its store file while hashing it, holding it to the
/// size the zip declares; then checks the digest and size against RECORD and makes the file
/// read-only. Returns its manifest entry and its [`Stamp`].
fn extract_member<R: Read + Seek>(
    archive: &mut zip::ZipArchive<R>,
    member: &Member,
    expected: &Expected<'_>,
    dirs: &mut CreatedDirs<'_>,
    filename: &str,
    dist_info: &str,
) -> Result<(ManifestFile, Stamp, bool), WheelError> {
    let other = if expected.algorithm == "sha256" {
        None
    } else {
        Some(
            RecordHasher::new(expected.algorithm).ok_or_else(|| WheelError::BadRecord {
                wheel: filename.to_string(),
                dist_info: dist_info.to_string(),
                line: 0,
                message: format!(
                    "`{}` uses hash algorithm `{}`; only sha256, sha384 and sha512 are accepted",
                    member.path, expected.algorithm
                ),
            })?,
        )
    };
    let dest = dirs.file_path(&member.path)?;
    let out = std::fs::File::create(&dest).map_err(io_err(&dest))?;
    let capacity = member.size.clamp(1, 256 * 1024) as usize;
    let mut writer = HashingWriter {
        inner: std::io::BufWriter::with_capacity(capacity, out),
        sha256: Sha256::new(),
        other,
        written: 0,
    };
    copy_member(archive, member, &mut writer, filename)?;
    if writer.written != member.size {
        return Err(WheelError::TooLarge {
            wheel: filename.to_string(),
            member: member.path.clone(),
            reason: if writer.written > member.size {
                format!("holds more than the {} bytes the zip declares", member.size)
            } else {
                format!(
                    "holds {} bytes, but the zip declares {}",
                    writer.written, member.size
                )
            },
        });
    }
    let HashingWriter {
        inner,
        sha256,
        other,
        written,
    } = writer;
    let file = inner
        .into_inner()
        .map_err(|e| io_err(&dest)(e.into_error()))?;
    let sha = b64(&sha256.finalize());
    let actual = match other {
        Some(other) => other.finish(),
        None => sha.clone(),
    };
    let mut mismatched = false;
    if actual != expected.digest {
        if !expected.accept_mismatch {
            return Err(WheelError::HashMismatch {
                wheel: filename.to_string(),
                member: member.path.clone(),
                algorithm: expected.algorithm.to_string(),
                expected: expected.digest.to_string(),
                actual,
            });
        }
        mismatched = true;
    }
    if let Some(size) = expected.size {
        if size != written {
            if !expected.accept_mismatch {
                return Err(WheelError::SizeMismatch {
                    wheel: filename.to_string(),
                    member: member.path.clone(),
                    expected: size,
                    actual: written,
                });
            }
            mismatched = true;
        }
    }
    set_store_mode_of(&file, member.executable).map_err(io_err(&dest))?;
    let stamp = Stamp::of_file(&file).map_err(io_err(&dest))?;
    Ok((
        ManifestFile {
            path: member.path.clone(),
            size: written,
            sha256: sha,
            executable: member.executable,
        },
        stamp,
        mismatched,
    ))
}

/// Writes a member's bytes to `writer`, hashed by it on the way, stopping soon after the size
/// the zip declares (the caller refuses a member that runs on, or ends short). A deflated
/// member (nearly all of them) is inflated with zlib-rs, faster than the zip crate's inflater,
/// and its CRC-32 checked as the zip crate checks it; other methods go through the zip crate.
fn copy_member<R: Read + Seek, W: Write>(
    archive: &mut zip::ZipArchive<R>,
    member: &Member,
    writer: &mut W,
    filename: &str,
) -> Result<(), WheelError> {
    let zip_err = |message: String| WheelError::Zip {
        wheel: filename.to_string(),
        message: format!("{}: {message}", member.path),
    };
    let limit = member.size.saturating_add(1);
    let mut raw = archive
        .by_index_raw(member.index)
        .map_err(|e| zip_err(e.to_string()))?;
    if raw.compression() != zip::CompressionMethod::Deflated {
        drop(raw);
        let mut entry = archive
            .by_index(member.index)
            .map_err(|e| zip_err(e.to_string()))?;
        // Never more than the zip declares: a member whose data runs on is refused.
        std::io::copy(&mut (&mut entry).take(limit), writer).map_err(|e| zip_err(e.to_string()))?;
        return Ok(());
    }
    let expected_crc = raw.crc32();
    let mut inflate = zlib_rs::Inflate::new(false, 15);
    let mut input = vec![0u8; (raw.compressed_size().clamp(1, 64 * 1024)) as usize];
    let mut output = vec![0u8; limit.clamp(1, 256 * 1024) as usize];
    let (mut start, mut filled, mut eof) = (0usize, 0usize, false);
    let (mut total, mut crc) = (0u64, 0u32);
    loop {
        if start == filled && !eof {
            filled = raw.read(&mut input).map_err(|e| zip_err(e.to_string()))?;
            start = 0;
            eof = filled == 0;
        }
        let flush = if eof {
            zlib_rs::InflateFlush::Finish
        } else {
            zlib_rs::InflateFlush::NoFlush
        };
        let (in_before, out_before) = (inflate.total_in(), inflate.total_out());
        let status = inflate
            .decompress(&input[start..filled], &mut output, flush)
            .map_err(|e| zip_err(format!("invalid deflate data ({e:?})")))?;
        let consumed = (inflate.total_in() - in_before) as usize;
        let produced = (inflate.total_out() - out_before) as usize;
        start += consumed;
        crc = zlib_rs::crc32::crc32(crc, &output[..produced]);
        writer
            .write_all(&output[..produced])
            .map_err(|e| zip_err(e.to_string()))?;
        total += produced as u64;
        // No progress with input left (or at its end): a truncated or broken stream, which
        // the caller reports by its short size.
        let stuck = consumed == 0 && produced == 0 && (eof || start < filled);
        if total >= limit || status == zlib_rs::Status::StreamEnd || stuck {
            break;
        }
    }
    if total == member.size && crc != expected_crc {
        return Err(zip_err(format!(
            "CRC-32 {crc:08x} does not match the {expected_crc:08x} the zip records"
        )));
    }
    Ok(())
}

/// Step 5: every path RECORD lists (but RECORD itself and its signatures) is in the archive.
fn check_record_covered(
    record: &BTreeMap<String, RecordEntry>,
    members: &[Member],
    dist_info: &str,
    filename: &str,
) -> Result<(), WheelError> {
    let in_archive: HashSet<&str> = members.iter().map(|m| m.path.as_str()).collect();
    for path in record.keys() {
        if !in_archive.contains(path.as_str()) && !is_record_file(path, dist_info) {
            return Err(WheelError::MissingFromArchive {
                wheel: filename.to_string(),
                member: path.clone(),
            });
        }
    }
    Ok(())
}

/// A manifest read from the archive alone, without unpacking or verifying: enough to know
/// which paths the wheel would install (for conflict checks against other layers).
pub fn read_manifest_light(
    wheel_path: &Path,
    filename: &str,
    sha256: &str,
) -> Result<WheelManifest, WheelError> {
    let names = central_names(wheel_path, filename)?;
    let mut archive = open_archive(wheel_path, filename)?;
    let (members, dist_info) = list_members(&mut archive, &names, filename)?;
    let mut opened = OpenedWheel {
        archive,
        members,
        dist_info,
    };
    let dist = read_dist_info(&mut opened, filename)?.lenient(filename, &opened.dist_info);
    let mut files: Vec<ManifestFile> = opened
        .members
        .iter()
        .filter(|m| !is_record_file(&m.path, &opened.dist_info))
        .map(|m| ManifestFile {
            path: m.path.clone(),
            size: m.size,
            sha256: String::new(),
            executable: m.executable,
        })
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(WheelManifest {
        format: STORE_FORMAT,
        filename: filename.to_string(),
        sha256: sha256.to_ascii_lowercase(),
        name: dist.name,
        version: dist.version,
        dist_info: opened.dist_info,
        root_is_purelib: dist.root_is_purelib,
        files,
        entry_points: dist.entry_points,
        record_mismatch: Vec::new(),
    })
}

/// Mode 0644, or 0755 for executables (independent of the umask).
pub fn set_mode(path: &Path, executable: bool) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = if executable { 0o755 } else { 0o644 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_copied_by_their_method_and_a_wrong_crc_is_refused() {
        use std::io::Cursor;
        use zip::write::SimpleFileOptions;
        use zip::CompressionMethod;
        let body: Vec<u8> = (0..300_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, method) in [
            ("d.bin", CompressionMethod::Deflated),
            ("s.bin", CompressionMethod::Stored),
        ] {
            let options = SimpleFileOptions::default().compression_method(method);
            writer.start_file(name, options).unwrap();
            writer.write_all(&body).unwrap();
        }
        let mut bytes = writer.finish().unwrap().into_inner();
        let member = |index: usize| Member {
            index,
            path: format!("m{index}"),
            size: body.len() as u64,
            executable: false,
        };
        let mut archive = zip::ZipArchive::new(Cursor::new(bytes.clone())).unwrap();
        for index in 0..2 {
            let mut out = Vec::new();
            copy_member(&mut archive, &member(index), &mut out, "w.whl").unwrap();
            assert!(out == body, "member {index} differs");
        }
        // The deflated member's CRC-32 in the central directory, changed: refused.
        let central = bytes.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
        bytes[central + 16] ^= 0xff;
        let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
        let err = copy_member(&mut archive, &member(0), &mut Vec::new(), "w.whl").unwrap_err();
        assert!(err.to_string().contains("CRC-32"), "{err}");
    }

    #[test]
    fn member_paths() {
        assert_eq!(safe_member_path("w", "a/./b//c.py").unwrap(), "a/b/c.py");
        for bad in ["../x", "a/../../x", "/etc/passwd", "C:/x", "a\\b", "", "./"] {
            assert!(safe_member_path("w", bad).is_err(), "{bad:?} accepted");
        }
    }
}

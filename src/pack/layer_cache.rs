//! The layer cache: `comfypak build` reuses the compressed blob of an image layer whose
//! inputs did not change, without installing, compiling, tarring or compressing it again.
//!
//! Two tiers, both in the comfypak cache folder under `layers/` (content-addressed, shared by
//! every build on the machine that uses the same cache):
//! - **Stack layer entries** (`layers/keys/<key>.json`): the key is computed *before* the
//!   install, from everything that decides the layer's bytes ([`KeyInputs`] and
//!   [`stack_layer_key`]): the format version [`FORMAT`], this comfypak's version and
//!   executable (size and mtime: a rebuilt binary misses), the platform, interpreter and venv,
//!   the base's identity (the manifest digest of a layout's platform image, or the
//!   interpreter files of a root folder), bytecode on/off, `--allow-overwrite`, whether the
//!   layer gets the venv skeleton, the compression and level, `SOURCE_DATE_EPOCH`, the split
//!   threshold and the distributions it cuts out, and per wheel in install order: name,
//!   version, sha256 (the built wheel's for a source package), `REQUESTED` and
//!   `direct_url.json`. The entry lists the image layers the stack layer became (one, or one
//!   per large distribution plus the rest) with digest, size, diff_id and media type. A hit
//!   needs every listed blob present and verified: a tampered or missing blob is a miss, and
//!   the layer is built again and the entry replaced.
//! - **Tar entries** (`layers/tars/<diff_id>-<compression>.json`): the uncompressed tar's
//!   digest plus the compression decide the compressed bytes, so a directory layer or a split
//!   part whose tar did not change (the nvidia-* parts of a torch bump) is tarred to a hash
//!   only and its earlier blob reused, not compressed again.
//!
//! Blobs live in `layers/blobs/sha256/<hex>`, hard links to the blobs of the image layout that
//! produced them (a copy across file systems), and are hard-linked back into the next layout.
//! Entries and blobs are written to temporary names and renamed into place, and only after
//! the whole build succeeded: a failed build records nothing. A hit sets the entry's mtime
//! (last used); `comfypak cache prune` ([`crate::prune`]) removes entries and the blobs no
//! entry names any more.
//!
//! **Verification and its trade-off.** A blob is verified by its size and sha256, read back.
//! To spare a no-change build that read (hundreds of MB), each blob has a stamp
//! (`layers/stamps/<hex>`: size, mtime in ns, inode, device, and when it was checked), written
//! when pack wrote and hashed it (hard-linked, not copied) or when a lookup hashed it and
//! found it right. A lookup trusts a blob whose metadata is still its stamp's, as git trusts
//! an index entry, and hashes it otherwise. A stamp taken less than [`RACY_NANOS`] after the
//! blob's mtime is racy (an edit in the same clock tick could keep the mtime) and not
//! trusted. ctime is left out: hard-linking the blob into each new layout changes it. What a
//! stamp cannot see: an edit in place that keeps the size and puts the mtime back, or bits
//! rotting on disk. Against those, `build --verify-layer-cache` hashes every reused blob, and
//! `comfypak push` hashes every blob it uploads and refuses one that does not match its
//! digest before committing it, so a wrong blob is never pushed.
//!
//! Why not an annotation on the layer descriptor in `OUT/image`: that would change the
//! manifest bytes (and so every image digest) and would tie reuse to one output folder.
//!
//! Bumping [`FORMAT`] is required when install, bytecode or pack bytes change without a
//! comfypak version or executable change (the golden digest test catches byte changes; a
//! rebuilt binary already misses).
//!
//! Owns: keys, entries, blob verification and the reuse plan pack follows. Must not: install,
//! compile or decide what a layer contains (the key's inputs come from the caller).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::layer::{build_layer_from_entries, Compression, HashCount, LayerBlob};
use super::oci::{digest_hex, BlobStore};
use super::tar::{collect_entries, Entry, TarWriter, TreeSource};
use super::PackError;
use crate::target::Platform;

/// The version of the key and entry format; see the module doc for when to bump it.
pub const FORMAT: u32 = 2;

/// The layer cache in `<cache>/layers`.
#[derive(Debug, Clone)]
pub struct LayerCache {
    root: PathBuf,
    /// Hash every blob a lookup reads, stamps or not (`--verify-layer-cache`).
    verify_all: bool,
}

/// One image layer a stack layer became, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedPart {
    /// The distribution alone in this image layer (normalized name) and its version.
    pub distribution: Option<(String, String)>,
    pub digest: String,
    pub size: u64,
    pub diff_id: String,
    pub media_type: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct KeyEntry {
    format: u32,
    key: String,
    /// The platform and stack layer it was built for (what `comfypak cache prune` keeps the
    /// newest entry of).
    platform: String,
    layer: String,
    parts: Vec<CachedPart>,
}

/// A tar entry: the blob of one compressed tar, and the image layer it was last recorded for.
#[derive(Debug, Serialize, Deserialize)]
struct TarEntry {
    format: u32,
    platform: String,
    layer: String,
    part: CachedPart,
}

/// A recorded entry as `comfypak cache` sees it: a stack layer entry (`keys/`) or a tar
/// entry (`tars/`), with the blobs it names and when it was last used (written or hit: its
/// mtime).
#[derive(Debug, Clone)]
pub struct EntryFile {
    pub path: PathBuf,
    pub bytes: u64,
    pub used: std::time::SystemTime,
    /// What `comfypak cache prune` keeps the newest entry of: `(platform, stack layer)` of a
    /// stack layer entry, `(tar platform, image layer)` of a tar entry; None for an entry this
    /// comfypak cannot read (another format: never a hit, free to remove).
    pub group: Option<(String, String)>,
    /// The blobs it names (hex digests).
    pub blobs: Vec<String>,
}

/// What every key of one platform's stack layers is computed from (see the module doc).
#[derive(Debug, Clone)]
pub struct KeyInputs {
    pub platform: Platform,
    /// `3.14`, `3.14t`.
    pub python: String,
    pub venv: String,
    /// [`base_identity`], or `none`.
    pub base: String,
    pub compile: bool,
    pub allow_overwrite: bool,
    pub compression: Compression,
    pub source_date_epoch: u64,
    pub split_threshold: Option<u64>,
}

/// One wheel of a stack layer, as the key sees it.
#[derive(Debug, Clone)]
pub struct KeyWheel<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub sha256: &'a str,
    pub requested: bool,
    pub direct_url: Option<&'a str>,
}

/// The key of one stack layer: `layer` with `wheels` (in install order), the venv skeleton
/// when `skeleton`, cut per `large` distributions.
pub fn stack_layer_key(
    inputs: &KeyInputs,
    layer: &str,
    skeleton: bool,
    large: &[String],
    wheels: &[KeyWheel<'_>],
) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "format {FORMAT}");
    let _ = writeln!(text, "comfypak {}", env!("CARGO_PKG_VERSION"));
    let _ = writeln!(text, "exe {}", executable_identity());
    let _ = writeln!(text, "platform {}", inputs.platform);
    let _ = writeln!(text, "python {}", inputs.python);
    let _ = writeln!(text, "venv {}", inputs.venv);
    let _ = writeln!(text, "base {}", inputs.base);
    let _ = writeln!(text, "compile {}", inputs.compile);
    let _ = writeln!(text, "allow-overwrite {}", inputs.allow_overwrite);
    let _ = writeln!(text, "compression {}", compression_tag(inputs.compression));
    let _ = writeln!(text, "epoch {}", inputs.source_date_epoch);
    let _ = writeln!(text, "split {:?}", inputs.split_threshold);
    let _ = writeln!(text, "large {}", large.join(","));
    let _ = writeln!(text, "layer {layer}");
    let _ = writeln!(text, "skeleton {skeleton}");
    for w in wheels {
        let _ = writeln!(
            text,
            "wheel {} {} {} {} {}",
            w.name,
            w.version,
            w.sha256,
            w.requested,
            w.direct_url.unwrap_or("-")
        );
    }
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// `gzip-6`, `zstd-3`: the compression as keys and file names write it.
pub fn compression_tag(compression: Compression) -> String {
    match compression {
        Compression::Gzip { level } => format!("gzip-{level}"),
        Compression::Zstd { level } => format!("zstd-{level}"),
    }
}

/// The running executable's size and modification time: a rebuilt comfypak misses.
fn executable_identity() -> String {
    static IDENTITY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    IDENTITY
        .get_or_init(|| {
            std::env::current_exe()
                .and_then(std::fs::metadata)
                .map(|m| format!("{} {}", m.len(), mtime_nanos(&m)))
                .unwrap_or_else(|_| format!("unknown {}", std::process::id()))
        })
        .clone()
}

fn mtime_nanos(meta: &std::fs::Metadata) -> u128 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos())
}

/// The identity of a base for the key: the manifest digest of an OCI layout's image for
/// `architecture`, or for a root folder its path and the size and mtime of every
/// `usr/bin/python3*` and `usr/lib/python3*` entry (the interpreter that compiles and answers
/// the venv skeleton).
pub fn base_identity(base: &Path, architecture: &str) -> Result<String, PackError> {
    if base.join("oci-layout").is_file() {
        let layout = super::oci::Layout::open(base)?;
        let image = layout.image_for(architecture)?;
        return Ok(format!("layout {}", image.manifest_descriptor.digest));
    }
    let mut text = format!("root {}", base.display());
    for dir in ["usr/bin", "usr/lib", "usr/local/bin", "usr/local/lib"] {
        let Ok(read) = std::fs::read_dir(base.join(dir)) else {
            continue;
        };
        let mut names: Vec<(String, String)> = read
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                if !name.starts_with("python3") && !name.starts_with("libpython3") {
                    return None;
                }
                let meta = std::fs::symlink_metadata(e.path()).ok()?;
                Some((name, format!("{} {}", meta.len(), mtime_nanos(&meta))))
            })
            .collect();
        names.sort();
        for (name, stat) in names {
            let _ = write!(text, " {dir}/{name}:{stat}");
        }
    }
    Ok(text)
}

impl LayerCache {
    /// The layer cache of the comfypak cache folder `cache_root`.
    pub fn new(cache_root: &Path) -> LayerCache {
        LayerCache {
            root: cache_root.join("layers"),
            verify_all: false,
        }
    }

    /// Hash every blob a lookup reads, whatever its stamp says.
    pub fn verifying_all(mut self, yes: bool) -> LayerCache {
        self.verify_all = yes;
        self
    }

    /// The folder of the layer cache (`<cache>/layers`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a recorded blob lives.
    pub fn blob_path(&self, digest: &str) -> Option<PathBuf> {
        digest_hex(digest).map(|hex| self.root.join("blobs").join("sha256").join(hex))
    }

    fn key_path(&self, key: &str) -> PathBuf {
        self.root.join("keys").join(format!("{key}.json"))
    }

    fn tar_path(&self, diff_id: &str, compression: Compression) -> Option<PathBuf> {
        digest_hex(diff_id).map(|hex| {
            self.root
                .join("tars")
                .join(format!("{hex}-{}.json", compression_tag(compression)))
        })
    }

    /// The image layers recorded for `key`, when every blob is there and reads back to its
    /// digest and size; None otherwise (a miss). A hit marks the entry used (its mtime).
    pub fn lookup(&self, key: &str) -> Option<Vec<CachedPart>> {
        let path = self.key_path(key);
        let bytes = std::fs::read(&path).ok()?;
        let entry: KeyEntry = serde_json::from_slice(&bytes).ok()?;
        if entry.format != FORMAT || entry.key != key || entry.parts.is_empty() {
            return None;
        }
        let hit = entry
            .parts
            .par_iter()
            .all(|p| self.verify(&p.digest, p.size));
        hit.then(|| {
            mark_used(&path);
            entry.parts
        })
    }

    /// Every stack layer entry and tar entry on disk (see [`EntryFile`]); unreadable ones
    /// included, with no group and no blobs.
    pub fn entries(&self) -> Vec<EntryFile> {
        let mut out = Vec::new();
        for (dir, stack) in [("keys", true), ("tars", false)] {
            let Ok(read) = std::fs::read_dir(self.root.join(dir)) else {
                continue;
            };
            for entry in read.flatten() {
                let path = entry.path();
                let Ok(meta) = entry.metadata() else { continue };
                if !meta.is_file() || entry.file_name().to_string_lossy().starts_with('.') {
                    continue;
                }
                let bytes = std::fs::read(&path).unwrap_or_default();
                let (group, blobs) = if stack {
                    match serde_json::from_slice::<KeyEntry>(&bytes) {
                        Ok(e) if e.format == FORMAT => (
                            Some((e.platform, e.layer)),
                            e.parts
                                .iter()
                                .filter_map(|p| digest_hex(&p.digest))
                                .map(str::to_string)
                                .collect(),
                        ),
                        _ => (None, Vec::new()),
                    }
                } else {
                    match serde_json::from_slice::<TarEntry>(&bytes) {
                        Ok(e) if e.format == FORMAT => (
                            Some((format!("tar {}", e.platform), e.layer)),
                            digest_hex(&e.part.digest)
                                .map(str::to_string)
                                .into_iter()
                                .collect(),
                        ),
                        _ => (None, Vec::new()),
                    }
                };
                out.push(EntryFile {
                    path,
                    bytes: meta.len(),
                    used: meta.modified().unwrap_or(std::time::UNIX_EPOCH),
                    group,
                    blobs,
                });
            }
        }
        out
    }

    /// Every blob file: (hex, bytes).
    pub fn blobs(&self) -> Vec<(String, u64)> {
        let Ok(read) = std::fs::read_dir(self.root.join("blobs").join("sha256")) else {
            return Vec::new();
        };
        read.flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                let meta = e.metadata().ok()?;
                (meta.is_file() && name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()))
                    .then_some((name, meta.len()))
            })
            .collect()
    }

    /// Removes the blob `hex` and its stamp (the entries naming it must be gone first).
    pub fn remove_blob(&self, hex: &str) -> io::Result<()> {
        let path = self.root.join("blobs").join("sha256").join(hex);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let _ = std::fs::remove_file(self.stamp_path(hex));
        Ok(())
    }

    /// The blob recorded for a tar with `diff_id` compressed with `compression`, verified.
    pub fn lookup_tar(&self, diff_id: &str, compression: Compression) -> Option<CachedPart> {
        let path = self.tar_path(diff_id, compression)?;
        let entry: TarEntry = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
        if entry.format != FORMAT {
            return None;
        }
        let part = entry.part;
        let hit = part.diff_id == diff_id
            && part.media_type == compression.media_type()
            && self.verify(&part.digest, part.size);
        hit.then(|| {
            mark_used(&path);
            part
        })
    }

    /// Whether the recorded blob `digest` is there with `size` bytes that hash to it. The hash
    /// is skipped when the blob's stamp (see [`Stamp`]) says it was verified since its last
    /// change; a blob read back and found right gets a new stamp.
    fn verify(&self, digest: &str, size: u64) -> bool {
        let (Some(path), Some(hex)) = (self.blob_path(digest), digest_hex(digest)) else {
            return false;
        };
        let meta = match std::fs::metadata(&path) {
            Ok(meta) if meta.len() == size && meta.is_file() => meta,
            _ => return false,
        };
        if !self.verify_all && self.read_stamp(hex).is_some_and(|s| s.trusts(&meta)) {
            return true;
        }
        let checked_at = now_nanos();
        crate::test_hook::count(crate::test_hook::Count::BlobsHashed);
        let right = matches!(sha256_file(&path), Ok((h, n)) if n == size && h == hex);
        if right {
            self.write_stamp(hex, &meta, checked_at);
        }
        right
    }

    fn stamp_path(&self, hex: &str) -> PathBuf {
        self.root.join("stamps").join(hex)
    }

    fn read_stamp(&self, hex: &str) -> Option<Stamp> {
        Stamp::parse(&std::fs::read_to_string(self.stamp_path(hex)).ok()?)
    }

    /// Records that the blob `hex`, as `meta` describes it, held the right bytes at
    /// `checked_at` (a failure only costs a hash next time).
    fn write_stamp(&self, hex: &str, meta: &std::fs::Metadata, checked_at: u128) {
        let path = self.stamp_path(hex);
        let _ = std::fs::create_dir_all(self.root.join("stamps"));
        let _ = crate::fsutil::write_atomic(&path, Stamp::of(meta, checked_at).text().as_bytes());
    }

    /// Records `parts` for `key`; `blob` says where each part's blob is now (the layout just
    /// written). Blobs first, then the entry, each by rename.
    pub fn record(
        &self,
        key: &str,
        platform: &str,
        layer: &str,
        parts: &[CachedPart],
        blob: &dyn Fn(&str) -> Option<PathBuf>,
    ) -> io::Result<()> {
        for part in parts {
            let source = blob(&part.digest)
                .ok_or_else(|| io::Error::other(format!("no blob {} to record", part.digest)))?;
            self.store_blob(&source, &part.digest)?;
        }
        let entry = KeyEntry {
            format: FORMAT,
            key: key.to_string(),
            platform: platform.to_string(),
            layer: layer.to_string(),
            parts: parts.to_vec(),
        };
        let bytes = serde_json::to_vec_pretty(&entry).map_err(io::Error::other)?;
        let path = self.key_path(key);
        std::fs::create_dir_all(self.root.join("keys"))?;
        crate::fsutil::write_atomic(&path, &bytes)
    }

    /// Records that the tar `part.diff_id` compressed as `compression` is `part`'s blob,
    /// found at `source`; it is the image layer `layer` (`deps`, `deps/torch`, a directory
    /// layer's name) of `platform`.
    pub fn record_tar(
        &self,
        part: &CachedPart,
        compression: Compression,
        source: &Path,
        platform: &str,
        layer: &str,
    ) -> io::Result<()> {
        let Some(path) = self.tar_path(&part.diff_id, compression) else {
            return Ok(());
        };
        if let Ok(bytes) = std::fs::read(&path) {
            if serde_json::from_slice::<TarEntry>(&bytes)
                .ok()
                .is_some_and(|e| e.format == FORMAT && e.part == *part)
                && self.same_file(source, &part.digest)
            {
                mark_used(&path);
                return Ok(());
            }
        }
        self.store_blob(source, &part.digest)?;
        let entry = TarEntry {
            format: FORMAT,
            platform: platform.to_string(),
            layer: layer.to_string(),
            part: part.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&entry).map_err(io::Error::other)?;
        std::fs::create_dir_all(self.root.join("tars"))?;
        crate::fsutil::write_atomic(&path, &bytes)
    }

    /// Stamps a blob pack has just written and hashed while writing (a stamp taken within
    /// [`RACY_NANOS`] of its write is not trusted: the next lookup hashes it once).
    fn stamp_written(&self, dest: &Path, hex: &str) {
        if let Ok(meta) = std::fs::metadata(dest) {
            self.write_stamp(hex, &meta, now_nanos());
        }
    }

    /// Whether the recorded blob `digest` is the very file `source` (one inode).
    fn same_file(&self, source: &Path, digest: &str) -> bool {
        use std::os::unix::fs::MetadataExt;
        let Some(cached) = self.blob_path(digest) else {
            return false;
        };
        match (std::fs::metadata(source), std::fs::metadata(cached)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }

    /// Puts `source` (the blob `digest`, just written) into the cache: a hard link, else a
    /// copy, under a temporary name renamed over whatever was there (a tampered blob
    /// included). Nothing to do when the cache already holds that very file.
    fn store_blob(&self, source: &Path, digest: &str) -> io::Result<()> {
        let (Some(dest), Some(hex)) = (self.blob_path(digest), digest_hex(digest)) else {
            return Err(io::Error::other(format!("not a sha256 digest: {digest}")));
        };
        if self.same_file(source, digest) {
            if !self.stamp_path(hex).exists() {
                self.stamp_written(&dest, hex);
            }
            return Ok(());
        }
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = crate::fsutil::temp_sibling(&dest);
        // The very file pack hashed as it wrote it is stamped; a copy is hashed on its first
        // lookup.
        let linked = std::fs::hard_link(source, &tmp).is_ok();
        if !linked {
            std::fs::copy(source, &tmp)?;
            std::fs::File::open(&tmp)?.sync_all()?;
        }
        match crate::fsutil::persist(&tmp, &dest) {
            Ok(()) => {
                if linked {
                    self.stamp_written(&dest, hex);
                } else {
                    let _ = std::fs::remove_file(self.stamp_path(hex));
                }
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }
}

/// What `pack` reuses and may look up: the cache, and per platform and stack layer the
/// image layers found for it before the install (those layers were not installed).
#[derive(Debug, Clone)]
pub struct PackCache {
    pub cache: LayerCache,
    /// `(platform, stack layer)` → its image layers, in image order.
    pub reused: BTreeMap<(Platform, String), Vec<CachedPart>>,
}

impl PackCache {
    /// The image layers to reuse for `layer` on `platform`, if any.
    pub fn reused(&self, platform: &Platform, layer: &str) -> Option<&[CachedPart]> {
        self.reused
            .get(&(*platform, layer.to_string()))
            .map(Vec::as_slice)
    }
}

/// How pack gets one image layer's blob.
#[derive(Debug, Clone)]
pub(super) enum JobPlan {
    /// A stack layer part found before the install: link its blob.
    Reuse(CachedPart),
    /// Tar it to a hash, and reuse the blob recorded for that tar when there is one.
    ViaTar,
}

/// Builds (or reuses) one image layer per `plan`; without a plan, builds it.
pub(super) fn build_job(
    cache: Option<&PackCache>,
    plan: Option<&JobPlan>,
    entries: Option<&Vec<Entry>>,
    sources: &[TreeSource],
    store: &BlobStore,
    compression: Compression,
    mtime: u64,
) -> Result<LayerBlob, PackError> {
    let collect = || -> Result<std::borrow::Cow<'_, [Entry]>, PackError> {
        match entries {
            Some(e) => Ok(std::borrow::Cow::Borrowed(e.as_slice())),
            None => Ok(std::borrow::Cow::Owned(collect_entries(sources)?)),
        }
    };
    match (cache, plan) {
        (Some(cache), Some(JobPlan::Reuse(part))) => import(&cache.cache, store, part, 0, 0),
        (Some(cache), Some(JobPlan::ViaTar)) => {
            let entries = collect()?;
            let (diff_id, tar_size) = tar_digest(&entries, mtime)?;
            match cache.cache.lookup_tar(&diff_id, compression) {
                Some(part) => import(&cache.cache, store, &part, tar_size, entries.len()),
                None => build_layer_from_entries(&entries, store, compression, mtime),
            }
        }
        _ => build_layer_from_entries(&collect()?, store, compression, mtime),
    }
}

/// The sha256 (hex) and size of a file, read in 1 MiB pieces.
fn sha256_file(path: &Path) -> io::Result<(String, u64)> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        size += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
}

/// A file change within this long of a stamp may leave its modification time as it was
/// (coarse file-system clocks): such a stamp is racy and not trusted, as git does with a
/// file modified in the same second as its index.
pub const RACY_NANOS: u128 = 1_000_000_000;

/// What a blob looked like when its bytes were last hashed and found right: its size,
/// modification time, inode and device, and when that was. A lookup trusts a blob whose
/// metadata is still the stamp's (git's index does the same for a work tree) unless the
/// stamp is racy: a change in the same clock tick as the check could keep the mtime.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    size: u64,
    mtime: u128,
    inode: u64,
    device: u64,
    checked_at: u128,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata, checked_at: u128) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            size: meta.len(),
            mtime: mtime_nanos(meta),
            inode: meta.ino(),
            device: meta.dev(),
            checked_at,
        }
    }

    fn text(&self) -> String {
        format!(
            "{} {} {} {} {}\n",
            self.size, self.mtime, self.inode, self.device, self.checked_at
        )
    }

    fn parse(text: &str) -> Option<Stamp> {
        let mut it = text.split_whitespace();
        let stamp = Stamp {
            size: it.next()?.parse().ok()?,
            mtime: it.next()?.parse().ok()?,
            inode: it.next()?.parse().ok()?,
            device: it.next()?.parse().ok()?,
            checked_at: it.next()?.parse().ok()?,
        };
        it.next().is_none().then_some(stamp)
    }

    /// Whether `meta` is the stamped file unchanged, with the check safely after its mtime.
    fn trusts(&self, meta: &std::fs::Metadata) -> bool {
        let now = Stamp::of(meta, self.checked_at);
        now == *self && self.mtime != 0 && self.mtime + RACY_NANOS <= self.checked_at
    }
}

/// Sets `path`'s mtime to now: the entry was used (what `comfypak cache prune` ages by).
fn mark_used(path: &Path) {
    if let Ok(file) = std::fs::File::options().write(true).open(path) {
        let _ = file.set_modified(std::time::SystemTime::now());
    }
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Links a recorded blob into `store` (already verified by the lookup).
fn import(
    cache: &LayerCache,
    store: &BlobStore,
    part: &CachedPart,
    tar_size: u64,
    entries: usize,
) -> Result<LayerBlob, PackError> {
    let path = cache
        .blob_path(&part.digest)
        .ok_or_else(|| PackError::Request {
            message: format!("the layer cache names a bad digest {}", part.digest),
        })?;
    store.import(&path, &part.digest)?;
    Ok(LayerBlob {
        digest: part.digest.clone(),
        size: part.size,
        diff_id: part.diff_id.clone(),
        tar_size,
        media_type: part.media_type.clone(),
        entries,
    })
}

/// The diff_id (`sha256:HEX`) and size of the tar of `entries`, written to a hash only.
fn tar_digest(entries: &[Entry], mtime: u64) -> Result<(String, u64), PackError> {
    let mut tar = TarWriter::new(HashCount::new(io::sink()), mtime);
    tar.write_entries(entries)?;
    let hashed = tar.finish().map_err(|source| PackError::Io {
        path: PathBuf::from("<tar digest>"),
        source,
    })?;
    let (_, hex, size) = hashed.finish();
    Ok((format!("sha256:{hex}"), size))
}

/// Job plans keyed by pack's own job type.
pub(super) type JobPlans<J> = HashMap<J, JobPlan>;

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> KeyInputs {
        KeyInputs {
            platform: "manylinux_2_39_x86_64".parse().unwrap(),
            python: "3.14".to_string(),
            venv: "/opt/venv".to_string(),
            base: "none".to_string(),
            compile: true,
            allow_overwrite: false,
            compression: Compression::Gzip { level: 6 },
            source_date_epoch: 0,
            split_threshold: Some(32 << 20),
        }
    }

    fn wheel(sha: &str) -> KeyWheel<'_> {
        KeyWheel {
            name: "a",
            version: "1",
            sha256: sha,
            requested: true,
            direct_url: None,
        }
    }

    #[test]
    fn every_input_changes_the_key() {
        let base = stack_layer_key(&inputs(), "deps", false, &[], &[wheel("aa")]);
        assert_eq!(
            base,
            stack_layer_key(&inputs(), "deps", false, &[], &[wheel("aa")])
        );
        let mut variants = Vec::new();
        let mut i = inputs();
        i.compile = false;
        variants.push(stack_layer_key(&i, "deps", false, &[], &[wheel("aa")]));
        let mut i = inputs();
        i.compression = Compression::Gzip { level: 9 };
        variants.push(stack_layer_key(&i, "deps", false, &[], &[wheel("aa")]));
        let mut i = inputs();
        i.base = "layout sha256:1".to_string();
        variants.push(stack_layer_key(&i, "deps", false, &[], &[wheel("aa")]));
        let mut i = inputs();
        i.source_date_epoch = 1;
        variants.push(stack_layer_key(&i, "deps", false, &[], &[wheel("aa")]));
        let mut i = inputs();
        i.split_threshold = None;
        variants.push(stack_layer_key(&i, "deps", false, &[], &[wheel("aa")]));
        let mut i = inputs();
        i.venv = "/opt/other".to_string();
        variants.push(stack_layer_key(&i, "deps", false, &[], &[wheel("aa")]));
        variants.push(stack_layer_key(
            &inputs(),
            "deps",
            true,
            &[],
            &[wheel("aa")],
        ));
        variants.push(stack_layer_key(
            &inputs(),
            "perf",
            false,
            &[],
            &[wheel("aa")],
        ));
        variants.push(stack_layer_key(
            &inputs(),
            "deps",
            false,
            &["a".to_string()],
            &[wheel("aa")],
        ));
        variants.push(stack_layer_key(
            &inputs(),
            "deps",
            false,
            &[],
            &[wheel("ab")],
        ));
        let mut w = wheel("aa");
        w.requested = false;
        variants.push(stack_layer_key(&inputs(), "deps", false, &[], &[w]));
        for (n, v) in variants.iter().enumerate() {
            assert_ne!(*v, base, "variant {n} gave the same key");
        }
    }

    /// A cache in `dir` and one freshly written blob outside it, with the part describing it.
    fn one_blob(dir: &Path) -> (LayerCache, PathBuf, CachedPart) {
        let cache = LayerCache::new(dir);
        let blob = dir.join("blob");
        std::fs::write(&blob, b"layer bytes").unwrap();
        let (hex, size) = sha256_file(&blob).unwrap();
        let part = CachedPart {
            distribution: None,
            digest: format!("sha256:{hex}"),
            size,
            diff_id: format!("sha256:{}", "0".repeat(64)),
            media_type: Compression::default().media_type().to_string(),
        };
        (cache, blob, part)
    }

    #[test]
    fn a_tampered_or_missing_blob_is_a_miss_and_recording_heals_it() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, blob, part) = one_blob(dir.path());
        let at = |_: &str| Some(blob.clone());
        cache
            .record("k", "p", "l", std::slice::from_ref(&part), &at)
            .unwrap();
        assert_eq!(cache.lookup("k"), Some(vec![part.clone()]));
        assert_eq!(cache.lookup("other"), None);
        // Same size, other bytes: the hash catches it.
        let cached = cache.blob_path(&part.digest).unwrap();
        std::fs::remove_file(&cached).unwrap();
        std::fs::write(&cached, b"LAYER BYTES").unwrap();
        assert_eq!(cache.lookup("k"), None);
        std::fs::remove_file(&cached).unwrap();
        assert_eq!(cache.lookup("k"), None);
        cache
            .record("k", "p", "l", std::slice::from_ref(&part), &at)
            .unwrap();
        assert_eq!(cache.lookup("k"), Some(vec![part.clone()]));
        // The tar tier verifies the same way.
        cache
            .record_tar(&part, Compression::default(), &blob, "p", "l")
            .unwrap();
        assert_eq!(
            cache.lookup_tar(&part.diff_id, Compression::default()),
            Some(part.clone())
        );
        assert_eq!(
            cache.lookup_tar(&part.diff_id, Compression::Zstd { level: 3 }),
            None
        );
        std::fs::write(&blob, b"LAYER BYTES").unwrap();
        assert_eq!(
            cache.lookup_tar(&part.diff_id, Compression::default()),
            None
        );
    }

    /// Sets `path`'s modification time `ago` seconds back (an old blob, its stamp not racy).
    fn age(path: &Path, ago: u64) {
        let when = std::time::SystemTime::now() - std::time::Duration::from_secs(ago);
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(when)
            .unwrap();
    }

    /// Rewrites `path` in place (same inode, same size) and puts its mtime back.
    fn edit_in_place_keeping_mtime(path: &Path, bytes: &[u8]) {
        let before = std::fs::metadata(path).unwrap().modified().unwrap();
        std::fs::write(path, bytes).unwrap();
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(before)
            .unwrap();
    }

    /// A blob stamped when it was hashed is trusted while its size, mtime, inode and device
    /// stay the stamp's; any of them changing, a racy stamp, or `verifying_all` hashes it
    /// again. The one edit a stamp cannot see (same size, same inode, mtime put back, after
    /// the stamp stopped being racy) is the documented trade-off: `verifying_all` sees it.
    #[test]
    fn stamps_spare_the_hash_of_an_unchanged_blob_and_only_that() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, blob, part) = one_blob(dir.path());
        let hex = digest_hex(&part.digest).unwrap().to_string();
        let at = |_: &str| Some(blob.clone());
        let cached = cache.blob_path(&part.digest).unwrap();

        // Racy: written just now, stamped just now. An in-place edit with the mtime put
        // back is still caught, because a racy stamp is not trusted.
        cache
            .record("k", "p", "l", std::slice::from_ref(&part), &at)
            .unwrap();
        let stamp = cache.read_stamp(&hex).unwrap();
        assert!(!stamp.trusts(&std::fs::metadata(&cached).unwrap()));
        edit_in_place_keeping_mtime(&cached, b"LAYER BYTES");
        assert_eq!(cache.lookup("k"), None);

        // An old blob: its first lookup hashes it and stamps it; from then on the stamp is
        // trusted (proved by the edit below going unseen).
        std::fs::write(&cached, b"layer bytes").unwrap();
        age(&cached, 3600);
        assert!(!cache
            .read_stamp(&hex)
            .unwrap()
            .trusts(&std::fs::metadata(&cached).unwrap()));
        assert_eq!(cache.lookup("k"), Some(vec![part.clone()]));
        assert!(cache
            .read_stamp(&hex)
            .unwrap()
            .trusts(&std::fs::metadata(&cached).unwrap()));
        edit_in_place_keeping_mtime(&cached, b"LAYER BYTES");
        assert_eq!(cache.lookup("k"), Some(vec![part.clone()]), "the trade-off");
        let strict = cache.clone().verifying_all(true);
        assert_eq!(strict.lookup("k"), None, "--verify-layer-cache hashes");

        // Any metadata change is a hash: the mtime, the inode (a new file), the size.
        std::fs::write(&cached, b"layer bytes").unwrap();
        age(&cached, 3600);
        assert_eq!(cache.lookup("k"), Some(vec![part.clone()]));
        edit_in_place_keeping_mtime(&cached, b"LAYER BYTES");
        age(&cached, 1800);
        assert_eq!(cache.lookup("k"), None, "another mtime");
        std::fs::remove_file(&cached).unwrap();
        std::fs::write(&cached, b"layer bytes").unwrap();
        age(&cached, 3600);
        assert_eq!(cache.lookup("k"), Some(vec![part.clone()]));
        let moved = dir.path().join("moved");
        std::fs::copy(&cached, &moved).unwrap();
        std::fs::write(&moved, b"LAYER BYTES").unwrap();
        let mtime = std::fs::metadata(&cached).unwrap().modified().unwrap();
        std::fs::File::options()
            .write(true)
            .open(&moved)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        std::fs::rename(&moved, &cached).unwrap();
        assert_eq!(cache.lookup("k"), None, "another inode");
        std::fs::write(&cached, b"layer bytes and more").unwrap();
        assert_eq!(cache.lookup("k"), None, "another size");
        // A damaged stamp is a hash, never an error.
        std::fs::write(&cached, b"layer bytes").unwrap();
        std::fs::write(cache.stamp_path(&hex), b"garbage").unwrap();
        assert_eq!(cache.lookup("k"), Some(vec![part.clone()]));
    }
}

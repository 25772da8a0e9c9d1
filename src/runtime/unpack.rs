//! Unpacks a base image's layers into one root folder, cached by the layers' digests.
//!
//! Owns the layer tar semantics comfypak honours (whiteouts `.wh.NAME` and opaque
//! `.wh..wh..opq`, hard links, symlinks), the confinement of every write to the root (no `..`
//! component, symlinks followed only inside the root, symlinks whose target leaves the root
//! rejected), blob verification while streaming (compressed digest and size, uncompressed
//! diff_id) and the atomic publication of a root: everything goes into a temporary folder that
//! is renamed into place only when every layer unpacked and verified, so the cache never holds
//! a half-unpacked root under a final name. It must not run anything from the root.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use super::RuntimeError;
use crate::pack::oci::media;

/// Bump when the unpacked form changes; roots of older formats are then not reused.
const FORMAT: &str = "root-v1";

/// Symlink hops followed while resolving one path (the kernel's limit).
const MAX_HOPS: usize = 40;

/// One layer blob to unpack.
#[derive(Debug, Clone)]
pub struct LayerBlob {
    /// The blob file.
    pub path: PathBuf,
    /// Its media type (tar, tar+gzip, tar+zstd; OCI or Docker names).
    pub media_type: String,
    /// `sha256:HEX` of the blob as stored.
    pub digest: String,
    /// Its size in bytes, from the manifest.
    pub size: u64,
    /// `sha256:HEX` of the uncompressed tar (the config's `rootfs.diff_ids`), when known.
    pub diff_id: Option<String>,
}

/// The cache key of a root made of these layers, in order.
pub fn root_key(layers: &[LayerBlob]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(FORMAT.as_bytes());
    for layer in layers {
        hasher.update(b"\n");
        hasher.update(layer.digest.as_bytes());
    }
    hex::encode(hasher.finalize())
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The root of these layers under `roots_dir`: reused when present (only complete roots are
/// ever renamed there), else unpacked into a temporary folder and renamed into place.
pub fn unpack_cached(roots_dir: &Path, layers: &[LayerBlob]) -> Result<PathBuf, RuntimeError> {
    let final_dir = roots_dir.join(root_key(layers));
    if final_dir.is_dir() {
        return Ok(final_dir);
    }
    fs::create_dir_all(roots_dir).map_err(io_at(roots_dir))?;
    remove_stale_temps(roots_dir);
    let tmp = roots_dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = unpack_layers(&tmp, layers).and_then(|()| {
        match fs::rename(&tmp, &final_dir) {
            Ok(()) => Ok(()),
            // Another process published the same root first: theirs is as good.
            Err(_) if final_dir.is_dir() => Ok(()),
            Err(e) => Err(RuntimeError::Io {
                path: final_dir.clone(),
                source: e,
            }),
        }
    });
    if tmp.exists() {
        let _ = remove_tree(&tmp);
    }
    result.map(|()| final_dir)
}

/// Temporary roots of processes that no longer run.
fn remove_stale_temps(roots_dir: &Path) {
    let Ok(entries) = fs::read_dir(roots_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(".tmp-")) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = remove_tree(&entry.path());
        }
    }
}

/// Removes a tree whose folders may lack the owner's write bit.
fn remove_tree(path: &Path) -> io::Result<()> {
    if let Ok(meta) = fs::symlink_metadata(path) {
        if meta.is_dir() {
            let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
            for entry in fs::read_dir(path)? {
                remove_tree(&entry?.path())?;
            }
            return fs::remove_dir(path);
        }
        return fs::remove_file(path);
    }
    Ok(())
}

/// Unpacks `layers` in order into `root` (created), then makes the mount points the sandbox
/// needs (`proc`, `dev`, `sys`, `tmp`) where the image has none.
pub fn unpack_layers(root: &Path, layers: &[LayerBlob]) -> Result<(), RuntimeError> {
    fs::create_dir_all(root).map_err(io_at(root))?;
    for layer in layers {
        unpack_layer(root, layer)?;
    }
    for dir in ["proc", "dev", "sys", "tmp"] {
        let path = root.join(dir);
        if fs::symlink_metadata(&path).is_err() {
            fs::create_dir(&path).map_err(io_at(&path))?;
        }
    }
    Ok(())
}

/// A reader that hashes and counts what passes through it.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

fn digest_of(hasher: &Sha256) -> String {
    format!("sha256:{}", hex::encode(hasher.clone().finalize()))
}

fn unpack_layer(root: &Path, layer: &LayerBlob) -> Result<(), RuntimeError> {
    let bad = |message: String| RuntimeError::BadLayer {
        blob: layer.path.clone(),
        digest: layer.digest.clone(),
        message,
    };
    let file = File::open(&layer.path).map_err(io_at(&layer.path))?;
    let mut blob = Hashing {
        inner: io::BufReader::new(file),
        hasher: Sha256::new(),
        count: 0,
    };
    {
        let decoder: Box<dyn Read + '_> = match layer.media_type.as_str() {
            media::LAYER_TAR | media::DOCKER_LAYER_TAR => Box::new(&mut blob),
            media::LAYER_GZIP | media::DOCKER_LAYER_GZIP => {
                Box::new(flate2::read::MultiGzDecoder::new(&mut blob))
            }
            media::LAYER_ZSTD => Box::new(
                zstd::stream::read::Decoder::new(&mut blob)
                    .map_err(|e| bad(format!("zstd: {e}")))?,
            ),
            other => {
                return Err(bad(format!(
                    "media type {other} is not a layer comfypak can unpack"
                )))
            }
        };
        let mut tar_stream = Hashing {
            inner: decoder,
            hasher: Sha256::new(),
            count: 0,
        };
        {
            let mut archive = tar::Archive::new(&mut tar_stream);
            let mut written: HashSet<Vec<OsString>> = HashSet::new();
            let entries = archive
                .entries()
                .map_err(|e| bad(format!("reading the tar: {e}")))?;
            for entry in entries {
                let entry = entry.map_err(|e| bad(format!("reading the tar: {e}")))?;
                apply_entry(root, entry, &mut written).map_err(|e| match e {
                    EntryError::Bad(message) => bad(message),
                    EntryError::Io(path, source) => RuntimeError::Io { path, source },
                })?;
            }
        }
        // The rest of the stream (tar padding after the end blocks) counts for the digests.
        io::copy(&mut tar_stream, &mut io::sink())
            .map_err(|e| bad(format!("reading the layer: {e}")))?;
        if let Some(diff_id) = &layer.diff_id {
            let actual = digest_of(&tar_stream.hasher);
            if &actual != diff_id {
                return Err(bad(format!(
                    "the uncompressed tar hashes to {actual}, but the config's diff_id is {diff_id}"
                )));
            }
        }
    }
    io::copy(&mut blob, &mut io::sink()).map_err(|e| bad(format!("reading the blob: {e}")))?;
    let actual = digest_of(&blob.hasher);
    if blob.count != layer.size || actual != layer.digest {
        return Err(bad(format!(
            "the blob is {} bytes hashing to {actual}; the manifest says {} bytes, {}: it is \
             truncated or was changed",
            blob.count, layer.size, layer.digest
        )));
    }
    Ok(())
}

enum EntryError {
    Bad(String),
    Io(PathBuf, io::Error),
}

fn io_entry(path: &Path) -> impl FnOnce(io::Error) -> EntryError + '_ {
    move |e| EntryError::Io(path.to_path_buf(), e)
}

/// The normal components of a path inside a layer; `None` when it has a `..`.
fn layer_components(path: &Path) -> Option<Vec<OsString>> {
    let mut out = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(c) => out.push(c.to_os_string()),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Resolves `components` inside `root` the way a chroot would: symlinks are followed (absolute
/// targets from the root), `..` stops at the root. With `follow_last` false the last component
/// is not followed. Returns the resolved components below the root.
pub(crate) fn resolve_in_root(
    root: &Path,
    components: &[OsString],
    follow_last: bool,
) -> io::Result<Vec<OsString>> {
    let mut pending: std::collections::VecDeque<(OsString, bool)> = components
        .iter()
        .enumerate()
        .map(|(i, c)| (c.clone(), i + 1 == components.len()))
        .collect();
    let mut resolved: Vec<OsString> = Vec::new();
    let mut hops = 0;
    while let Some((component, last)) = pending.pop_front() {
        if component == OsStr::new(".") || component.is_empty() {
            continue;
        }
        if component == OsStr::new("..") {
            resolved.pop();
            continue;
        }
        let mut here = root.to_path_buf();
        here.extend(&resolved);
        here.push(&component);
        if !last || follow_last {
            if let Ok(meta) = fs::symlink_metadata(&here) {
                if meta.file_type().is_symlink() {
                    hops += 1;
                    if hops > MAX_HOPS {
                        return Err(io::Error::other(format!(
                            "more than {MAX_HOPS} symlinks while resolving {}",
                            here.display()
                        )));
                    }
                    let target = fs::read_link(&here)?;
                    if target.is_absolute() {
                        resolved.clear();
                    }
                    let parts: Vec<OsString> = target
                        .components()
                        .filter_map(|c| match c {
                            Component::Normal(c) => Some(c.to_os_string()),
                            Component::ParentDir => Some(OsString::from("..")),
                            _ => None,
                        })
                        .collect();
                    let n = parts.len();
                    for (i, part) in parts.into_iter().enumerate().rev() {
                        pending.push_front((part, last && i + 1 == n));
                    }
                    continue;
                }
            }
        }
        resolved.push(component);
    }
    Ok(resolved)
}

fn host_path(root: &Path, components: &[OsString]) -> PathBuf {
    let mut p = root.to_path_buf();
    p.extend(components);
    p
}

/// Where a symlink at `parent/…` pointing at `target` lands, lexically; `None` when it climbs
/// above the root.
fn symlink_escapes(parent: &[OsString], target: &Path) -> bool {
    let mut at: Vec<OsString> = if target.is_absolute() {
        Vec::new()
    } else {
        parent.to_vec()
    };
    for component in target.components() {
        match component {
            Component::Normal(c) => at.push(c.to_os_string()),
            Component::ParentDir if at.pop().is_none() => return true,
            _ => {}
        }
    }
    false
}

fn apply_entry<R: Read>(
    root: &Path,
    mut entry: tar::Entry<'_, R>,
    written: &mut HashSet<Vec<OsString>>,
) -> Result<(), EntryError> {
    let raw = entry
        .path()
        .map_err(|e| EntryError::Bad(format!("an entry's path: {e}")))?
        .into_owned();
    let shown = raw.display().to_string();
    let components = layer_components(&raw).ok_or_else(|| {
        EntryError::Bad(format!(
            "entry `{shown}` has a `..` component: a layer may only write inside the root"
        ))
    })?;
    let Some((name, parent)) = components.split_last() else {
        return Ok(()); // the root itself
    };
    let parent = resolve_in_root(root, parent, true)
        .map_err(|e| EntryError::Bad(format!("entry `{shown}`: {e}")))?;
    let parent_path = host_path(root, &parent);
    let name_str = name.to_string_lossy();

    // Whiteouts remove what lower layers put there.
    if name_str == ".wh..wh..opq" {
        if let Ok(children) = fs::read_dir(&parent_path) {
            for child in children.flatten() {
                let mut key = parent.clone();
                key.push(child.file_name());
                if !written.contains(&key) {
                    remove_tree(&child.path()).map_err(io_entry(&child.path()))?;
                }
            }
        }
        return Ok(());
    }
    if let Some(hidden) = name_str.strip_prefix(".wh.") {
        let target = parent_path.join(hidden);
        if fs::symlink_metadata(&target).is_ok() {
            remove_tree(&target).map_err(io_entry(&target))?;
        }
        return Ok(());
    }

    ensure_dir(root, &parent)?;
    let mut key = parent.clone();
    key.push(name.clone());
    let path = host_path(root, &key);
    let kind = entry.header().entry_type();
    let mode = entry.header().mode().unwrap_or(0o644) & 0o777;
    let existing = fs::symlink_metadata(&path).ok();
    if kind.is_dir() {
        match existing {
            Some(meta) if meta.is_dir() => {}
            Some(_) => {
                remove_tree(&path).map_err(io_entry(&path))?;
                fs::create_dir(&path).map_err(io_entry(&path))?;
            }
            None => fs::create_dir(&path).map_err(io_entry(&path))?,
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(mode | 0o700))
            .map_err(io_entry(&path))?;
        written.insert(key);
        return Ok(());
    }
    if existing.is_some() {
        remove_tree(&path).map_err(io_entry(&path))?;
    }
    if kind.is_file() || kind == tar::EntryType::Continuous {
        let mut out = File::create(&path).map_err(io_entry(&path))?;
        io::copy(&mut entry, &mut out).map_err(io_entry(&path))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode | 0o400))
            .map_err(io_entry(&path))?;
    } else if kind.is_symlink() {
        let target = entry
            .link_name()
            .map_err(|e| EntryError::Bad(format!("symlink `{shown}`: {e}")))?
            .ok_or_else(|| EntryError::Bad(format!("symlink `{shown}` has no target")))?
            .into_owned();
        if symlink_escapes(&parent, &target) {
            return Err(EntryError::Bad(format!(
                "symlink `{shown}` -> `{}` points outside the root",
                target.display()
            )));
        }
        symlink(&target, &path).map_err(io_entry(&path))?;
    } else if kind.is_hard_link() {
        let target = entry
            .link_name()
            .map_err(|e| EntryError::Bad(format!("hard link `{shown}`: {e}")))?
            .ok_or_else(|| EntryError::Bad(format!("hard link `{shown}` has no target")))?
            .into_owned();
        let target_components = layer_components(&target).ok_or_else(|| {
            EntryError::Bad(format!(
                "hard link `{shown}` -> `{}` has a `..` component",
                target.display()
            ))
        })?;
        let resolved = resolve_in_root(root, &target_components, false)
            .map_err(|e| EntryError::Bad(format!("hard link `{shown}`: {e}")))?;
        let source = host_path(root, &resolved);
        match fs::symlink_metadata(&source) {
            Ok(meta) if meta.is_file() => {}
            _ => {
                return Err(EntryError::Bad(format!(
                    "hard link `{shown}` -> `{}`: no such file earlier in the layers",
                    target.display()
                )))
            }
        }
        fs::hard_link(&source, &path).map_err(io_entry(&path))?;
    } else {
        // Devices, FIFOs and sockets: the sandbox brings its own /dev; nothing else needs them.
        return Ok(());
    }
    written.insert(key);
    Ok(())
}

/// Creates the (already resolved) folder `components` under `root` where missing.
fn ensure_dir(root: &Path, components: &[OsString]) -> Result<(), EntryError> {
    let mut path = root.to_path_buf();
    for component in components {
        path.push(component);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(EntryError::Bad(format!(
                    "`{}` is needed as a folder but a lower layer made it a file",
                    path.strip_prefix(root).unwrap_or(&path).display()
                )))
            }
            Err(_) => fs::create_dir(&path).map_err(io_entry(&path))?,
        }
    }
    Ok(())
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> RuntimeError + '_ {
    move |source| RuntimeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comps(s: &str) -> Vec<OsString> {
        layer_components(Path::new(s)).unwrap_or_default()
    }

    #[test]
    fn escaping_symlinks() {
        assert!(!symlink_escapes(&comps("usr/bin"), Path::new("python3.14")));
        assert!(!symlink_escapes(&comps("usr/bin"), Path::new("../lib/x")));
        assert!(!symlink_escapes(
            &comps("usr/bin"),
            Path::new("/usr/bin/python3.14")
        ));
        assert!(symlink_escapes(
            &comps("usr/bin"),
            Path::new("../../../etc")
        ));
        assert!(symlink_escapes(&comps("a"), Path::new("/../etc")));
        assert!(layer_components(Path::new("a/../../etc")).is_none());
        assert_eq!(comps("/./usr//bin/"), comps("usr/bin"));
    }

    #[test]
    fn resolution_stays_in_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("usr/lib")).unwrap();
        symlink("usr/lib", root.join("lib")).unwrap();
        symlink("/../../../../tmp", root.join("usr/up")).unwrap();
        assert_eq!(
            resolve_in_root(root, &comps("lib/x"), true).unwrap(),
            comps("usr/lib/x")
        );
        // `..` and absolute targets stop at the root.
        assert_eq!(
            resolve_in_root(root, &comps("usr/up/y"), true).unwrap(),
            comps("tmp/y")
        );
        assert_eq!(
            resolve_in_root(root, &comps("lib"), false).unwrap(),
            comps("lib")
        );
        symlink("loop", root.join("loop")).unwrap();
        assert!(resolve_in_root(root, &comps("loop/a"), true).is_err());
    }
}

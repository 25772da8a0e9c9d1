//! Crash-safe file system updates: the one way comfypak writes a file or replaces a folder,
//! and the recovery of what an interrupted replacement left behind.
//!
//! Owns: [`write_atomic`] / [`write_atomic_with`] (temp file beside the target, fsync,
//! rename, fsync of the folder), [`persist`] (the same for a temp file a caller filled),
//! [`replace_dir`] (a finished staging folder takes the place of an output folder by
//! renames only: the old folder is moved aside first and deleted last, never deleted in
//! place; [`replace_dir_unsynced`] without the fsync, for cache entries that can be made
//! again) and [`recover_dir`] (finds the `.staging.*` / `.old.*` folders a killed run left
//! and restores or removes them). A process killed at any point leaves the old content or
//! the new one, plus leftovers that the next run cleans.
//!
//! Must not: know what the files mean (caches, locks, layouts), take locks, or talk to the
//! network.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// `<pid>.<n>.<nanos>`: unique among the processes and threads of this machine.
pub fn unique_suffix() -> String {
    format!(
        "{}.{}.{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    )
}

/// The folder holding `path` (`.` for a bare file name).
fn parent_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

fn name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".to_string())
}

/// A hidden temp path beside `path`: `.<name>.tmp.<unique>`.
pub fn temp_sibling(path: &Path) -> PathBuf {
    parent_of(path).join(format!(".{}.tmp.{}", name_of(path), unique_suffix()))
}

/// Flushes a folder's entries (the names created or renamed in it) to disk.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to `path` atomically: readers see the old file or the whole new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |file| file.write_all(bytes))
}

/// Like [`write_atomic`], with the content written by `fill` into the temp file.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    std::fs::create_dir_all(parent_of(path))?;
    let tmp = temp_sibling(path);
    let result = (|| {
        let mut file = File::create(&tmp)?;
        fill(&mut file)?;
        file.sync_all()?;
        drop(file);
        persist(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Moves a finished temp file (or folder) `tmp` to `dest` by rename and flushes the
/// folder. The caller has written and synced `tmp`; `tmp` must be on `dest`'s file system.
pub fn persist(tmp: &Path, dest: &Path) -> io::Result<()> {
    let parent = parent_of(dest);
    std::fs::create_dir_all(parent)?;
    std::fs::rename(tmp, dest)?;
    sync_dir(parent)
}

/// `.staging.<name>.<unique>` beside `dest`: where a new version of `dest` is built.
pub fn staging_sibling(dest: &Path) -> PathBuf {
    parent_of(dest).join(format!(".staging.{}.{}", name_of(dest), unique_suffix()))
}

/// Puts the finished folder (or file) `staging` in the place of `dest` by renames only:
/// `dest` is first renamed to `.old.<name>.<unique>`, then `staging` to `dest`, then the old
/// one is deleted. Killed between the renames, [`recover_dir`] puts the old one back.
pub fn replace_dir(staging: &Path, dest: &Path) -> io::Result<()> {
    replace_dir_with(staging, dest, true)
}

/// [`replace_dir`] without the fsync of the parent folder afterwards, for a cache entry
/// derived from bytes kept elsewhere (the unpacked store, from the cached wheel): if a crash
/// loses the rename, the entry is missing and is made again. Killed between the renames,
/// [`recover_dir`] still puts the old one back.
pub fn replace_dir_unsynced(staging: &Path, dest: &Path) -> io::Result<()> {
    replace_dir_with(staging, dest, false)
}

fn replace_dir_with(staging: &Path, dest: &Path, sync: bool) -> io::Result<()> {
    let parent = parent_of(dest);
    let old = parent.join(format!(".old.{}.{}", name_of(dest), unique_suffix()));
    let had_old = match std::fs::symlink_metadata(dest) {
        Ok(_) => {
            std::fs::rename(dest, &old)?;
            true
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(e),
    };
    crate::test_hook::point(&format!("replace-dir:{}", name_of(dest)));
    if let Err(e) = std::fs::rename(staging, dest) {
        if had_old {
            let _ = std::fs::rename(&old, dest);
        }
        return Err(e);
    }
    if sync {
        sync_dir(parent)?;
    }
    if had_old {
        remove_any(&old)?;
    }
    Ok(())
}

/// Removes a file or a folder tree.
pub fn remove_any(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// What [`recover_dir`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// `.old.*` folders renamed back to the output they were moved away from.
    pub restored: Vec<PathBuf>,
    /// Leftovers deleted (`.staging.*`, `.tmp.*`, `.old.*` whose output exists).
    pub removed: Vec<PathBuf>,
}

/// Whether process `pid` is alive on this machine (another live run owns its leftovers).
fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 sends nothing; it only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The pid in a `<pid>.<n>.<nanos>` suffix.
fn owner_pid(suffix: &str) -> Option<u32> {
    suffix.split('.').next()?.parse().ok()
}

/// Finds what an interrupted [`replace_dir`], [`write_atomic`] or staging build of `dest`
/// left beside it and repairs it: when `dest` is missing and an `.old.<name>.*` is there,
/// the newest one is renamed back to `dest`; every other `.old.<name>.*`,
/// `.staging.<name>.*` and `.<name>.tmp.*` whose process is gone is deleted. Leftovers of
/// a live process (a parallel run) are not touched.
pub fn recover_dir(dest: &Path) -> io::Result<Recovery> {
    let parent = parent_of(dest);
    let name = name_of(dest);
    let mut recovery = Recovery::default();
    let entries = match std::fs::read_dir(parent) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(recovery),
        Err(e) => return Err(e),
    };
    let old_prefix = format!(".old.{name}.");
    let staging_prefix = format!(".staging.{name}.");
    let tmp_prefix = format!(".{name}.tmp.");
    let mut olds: Vec<(u128, PathBuf)> = Vec::new();
    let mut stale = Vec::new();
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let (suffix, is_old) = if let Some(s) = file_name.strip_prefix(&old_prefix) {
            (s, true)
        } else if let Some(s) = file_name
            .strip_prefix(&staging_prefix)
            .or_else(|| file_name.strip_prefix(&tmp_prefix))
        {
            (s, false)
        } else {
            continue;
        };
        if owner_pid(suffix).is_some_and(process_alive) {
            continue;
        }
        if is_old {
            let order = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            olds.push((order, entry.path()));
        } else {
            stale.push(entry.path());
        }
    }
    if std::fs::symlink_metadata(dest).is_err() {
        olds.sort();
        if let Some((_, newest)) = olds.pop() {
            std::fs::rename(&newest, dest)?;
            recovery.restored.push(newest);
        }
    }
    stale.extend(olds.into_iter().map(|(_, p)| p));
    for path in stale {
        remove_any(&path)?;
        recovery.removed.push(path);
    }
    if !recovery.restored.is_empty() || !recovery.removed.is_empty() {
        sync_dir(parent)?;
    }
    Ok(recovery)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/file.txt");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["file.txt"]);
    }

    #[test]
    fn replace_dir_swaps_by_rename() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("image");
        std::fs::create_dir_all(out.join("a")).unwrap();
        std::fs::write(out.join("a/old"), b"old").unwrap();
        let staging = staging_sibling(&out);
        std::fs::create_dir_all(&staging).unwrap();
        std::fs::write(staging.join("new"), b"new").unwrap();
        replace_dir(&staging, &out).unwrap();
        assert_eq!(std::fs::read(out.join("new")).unwrap(), b"new");
        assert!(!out.join("a").exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn recovery_restores_the_old_output_and_removes_dead_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("image");
        // A dead process (pid 0 is never a user process we could own) left these.
        let old = dir.path().join(".old.image.999999999.0.0");
        std::fs::create_dir_all(&old).unwrap();
        std::fs::write(old.join("oci-layout"), b"{}").unwrap();
        let staging = dir.path().join(".staging.image.999999999.1.0");
        std::fs::create_dir_all(staging.join("x")).unwrap();
        let tmp = dir.path().join(".image.tmp.999999999.2.0");
        std::fs::write(&tmp, b"torn").unwrap();
        // Ours (alive): kept.
        let live = staging_sibling(&out);
        std::fs::create_dir_all(&live).unwrap();
        let other = dir.path().join(".staging.other.999999999.0.0");
        std::fs::create_dir_all(&other).unwrap();

        let recovery = recover_dir(&out).unwrap();
        assert_eq!(recovery.restored, std::slice::from_ref(&old));
        assert_eq!(recovery.removed.len(), 2);
        assert_eq!(std::fs::read(out.join("oci-layout")).unwrap(), b"{}");
        assert!(!staging.exists() && !tmp.exists() && !old.exists());
        assert!(
            live.exists(),
            "a live process's staging folder is not touched"
        );
        assert!(other.exists(), "another output's leftovers are not touched");

        // With the output present, an old copy is deleted, not restored.
        let old2 = dir.path().join(".old.image.999999999.3.0");
        std::fs::create_dir_all(&old2).unwrap();
        let recovery = recover_dir(&out).unwrap();
        assert!(recovery.restored.is_empty());
        assert_eq!(recovery.removed, std::slice::from_ref(&old2));
        assert!(!old2.exists());
    }
}

//! Placing a store file into a layer: hard link (the default), reflink (copy-on-write clone)
//! or plain copy, falling back to a copy when the faster way is not possible (another
//! filesystem, no reflink support, link count limits); and [`DirFd`], the directory handle
//! the layer builder and the store check work through (names looked up from an open
//! directory instead of from `/`).
//!
//! Must not: decide which files go where.

use std::path::Path;

/// How store files are placed into a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LinkMode {
    /// Hard links: no bytes copied; needs the cache and the output on one filesystem.
    #[default]
    Hardlink,
    /// Copy-on-write clones (btrfs, XFS); falls back to copying.
    Reflink,
    /// Plain copies.
    Copy,
}

/// How a file was actually placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    Linked,
    Reflinked,
    Copied,
}

/// Places `src` at `dst` (which must not exist) using `mode`, falling back to a copy.
pub fn place(src: &Path, dst: &Path, mode: LinkMode) -> std::io::Result<Placed> {
    match mode {
        LinkMode::Hardlink => match std::fs::hard_link(src, dst) {
            Ok(()) => Ok(Placed::Linked),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(e),
            Err(_) => copy(src, dst),
        },
        LinkMode::Reflink => match reflink(src, dst) {
            Ok(()) => Ok(Placed::Reflinked),
            Err(_) => {
                let _ = std::fs::remove_file(dst);
                copy(src, dst)
            }
        },
        LinkMode::Copy => copy(src, dst),
    }
}

/// A copy that keeps the permission bits (std::fs::copy does).
fn copy(src: &Path, dst: &Path) -> std::io::Result<Placed> {
    std::fs::copy(src, dst)?;
    Ok(Placed::Copied)
}

#[cfg(target_os = "linux")]
fn reflink(src: &Path, dst: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::PermissionsExt;
    let input = std::fs::File::open(src)?;
    let mode = input.metadata()?.permissions().mode();
    let output = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dst)?;
    // SAFETY: both descriptors are open for the duration of the call; FICLONE takes the
    // source descriptor as its argument and touches no memory of ours.
    let rc = unsafe { libc::ioctl(output.as_raw_fd(), libc::FICLONE, input.as_raw_fd()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(mode & 0o7777))
}

#[cfg(not(target_os = "linux"))]
fn reflink(_src: &Path, _dst: &Path) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "reflinks are only implemented on Linux",
    ))
}

/// A directory opened with `O_PATH` for the `*at` calls: a name below it is looked up from
/// it, one component, instead of walking the whole path from `/` again for every file (a
/// layer links tens of thousands of files from a deep store path into a deep layer path).
#[derive(Debug)]
pub struct DirFd(std::os::fd::OwnedFd);

/// Calls `f` with `name` as a NUL-terminated C string: from a buffer on the stack when it is
/// short (every name in a layer is), so the one or two names of each of the tens of thousands
/// of `*at` calls of an install need no heap allocation (as std does for its path calls).
fn with_c_name<T>(
    name: &std::ffi::OsStr,
    f: impl FnOnce(*const libc::c_char) -> std::io::Result<T>,
) -> std::io::Result<T> {
    use std::os::unix::ffi::OsStrExt;
    const STACK: usize = 384;
    let bytes = name.as_bytes();
    let nul = || std::io::Error::new(std::io::ErrorKind::InvalidInput, "a NUL byte in a path");
    if bytes.len() >= STACK {
        let owned = std::ffi::CString::new(bytes).map_err(|_| nul())?;
        return f(owned.as_ptr());
    }
    let mut buffer = [0u8; STACK];
    buffer[..bytes.len()].copy_from_slice(bytes);
    // `buffer[bytes.len()]` is the terminating NUL; a NUL inside the name is refused.
    let c_str = std::ffi::CStr::from_bytes_with_nul(&buffer[..=bytes.len()]).map_err(|_| nul())?;
    f(c_str.as_ptr())
}

fn check(rc: libc::c_int) -> std::io::Result<libc::c_int> {
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

impl DirFd {
    const FLAGS: libc::c_int = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;

    /// Opens the directory at `path`.
    pub fn open(path: &Path) -> std::io::Result<DirFd> {
        let fd = with_c_name(path.as_os_str(), |path| {
            // SAFETY: `path` is a NUL-terminated string that outlives the call.
            check(unsafe { libc::open(path, Self::FLAGS) })
        })?;
        // SAFETY: `fd` was just opened and is owned by nothing else.
        Ok(DirFd(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }))
    }

    /// Opens the directory `relative` (one or more components, no symlink at the end) below
    /// this one.
    pub fn open_at(&self, relative: &std::ffi::OsStr) -> std::io::Result<DirFd> {
        use std::os::fd::AsRawFd;
        let fd = with_c_name(relative, |name| {
            // SAFETY: a valid directory descriptor and a NUL-terminated name, both alive.
            check(unsafe { libc::openat(self.0.as_raw_fd(), name, Self::FLAGS | libc::O_NOFOLLOW) })
        })?;
        // SAFETY: `fd` was just opened and is owned by nothing else.
        Ok(DirFd(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }))
    }

    /// Creates the directory `name` (mode 0777 less the umask, as `create_dir` does).
    pub fn mkdir(&self, name: &std::ffi::OsStr) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        with_c_name(name, |name| {
            // SAFETY: as in `open_at`.
            check(unsafe { libc::mkdirat(self.0.as_raw_fd(), name, 0o777) })
        })
        .map(|_| ())
    }

    /// Hard-links `source_name` (below `source`) as `name` in this directory.
    pub fn link_from(
        &self,
        source: &DirFd,
        source_name: &std::ffi::OsStr,
        name: &std::ffi::OsStr,
    ) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        with_c_name(source_name, |from| {
            with_c_name(name, |to| {
                // SAFETY: valid descriptors and NUL-terminated names, all alive for the call.
                check(unsafe {
                    libc::linkat(source.0.as_raw_fd(), from, self.0.as_raw_fd(), to, 0)
                })
            })
        })
        .map(|_| ())
    }

    /// Creates (or truncates) the file `name` and writes `bytes` to it, then sets its mode
    /// (0644, or 0755 when `executable`, whatever the umask).
    pub fn write_file(
        &self,
        name: &std::ffi::OsStr,
        bytes: &[u8],
        executable: bool,
    ) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::PermissionsExt;
        let fd = with_c_name(name, |name| {
            // SAFETY: as in `open_at`.
            check(unsafe {
                libc::openat(
                    self.0.as_raw_fd(),
                    name,
                    libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
                    0o666 as libc::c_uint,
                )
            })
        })?;
        // SAFETY: `fd` was just opened and is owned by nothing else.
        let mut file: std::fs::File = unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) };
        file.write_all(bytes)?;
        let mode = if executable { 0o755 } else { 0o644 };
        file.set_permissions(std::fs::Permissions::from_mode(mode))
    }

    /// `lstat` of `name` below this directory: size and modification time.
    pub fn stat(&self, name: &std::ffi::OsStr) -> std::io::Result<(u64, i64, i64)> {
        use std::os::fd::AsRawFd;
        let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
        with_c_name(name, |name| {
            // SAFETY: a valid descriptor, a NUL-terminated name, and room for one `stat`.
            check(unsafe {
                libc::fstatat(
                    self.0.as_raw_fd(),
                    name,
                    stat.as_mut_ptr(),
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            })
        })?;
        // SAFETY: fstatat succeeded, so it filled the struct.
        let stat = unsafe { stat.assume_init() };
        Ok((stat.st_size as u64, stat.st_mtime, stat.st_mtime_nsec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mode_places_identical_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::write(&src, b"hello").unwrap();
        for (i, mode) in [LinkMode::Hardlink, LinkMode::Reflink, LinkMode::Copy]
            .into_iter()
            .enumerate()
        {
            let dst = dir.path().join(format!("dst{i}"));
            place(&src, &dst, mode).unwrap();
            assert_eq!(std::fs::read(&dst).unwrap(), b"hello");
        }
        assert!(place(
            &dir.path().join("missing"),
            &dir.path().join("x"),
            LinkMode::Hardlink
        )
        .is_err());
    }

    #[test]
    fn dir_fd_creates_links_writes_and_stats_below_an_open_folder() {
        use std::ffi::OsStr;
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("store/pkg")).unwrap();
        std::fs::write(dir.path().join("store/pkg/a.py"), b"A = 1\n").unwrap();
        let root = DirFd::open(dir.path()).unwrap();
        root.mkdir(OsStr::new("layer")).unwrap();
        assert_eq!(
            root.mkdir(OsStr::new("layer")).unwrap_err().kind(),
            std::io::ErrorKind::AlreadyExists
        );
        let layer = root.open_at(OsStr::new("layer")).unwrap();
        let store = root.open_at(OsStr::new("store/pkg")).unwrap();
        layer
            .link_from(&store, OsStr::new("a.py"), OsStr::new("a.py"))
            .unwrap();
        let linked = std::fs::metadata(dir.path().join("layer/a.py")).unwrap();
        let source = std::fs::metadata(dir.path().join("store/pkg/a.py")).unwrap();
        assert_eq!((linked.ino(), linked.nlink()), (source.ino(), 2));
        layer
            .write_file(OsStr::new("tool"), b"#!/bin/sh\n", true)
            .unwrap();
        let tool = std::fs::metadata(dir.path().join("layer/tool")).unwrap();
        assert_eq!(tool.permissions().mode() & 0o777, 0o755);
        let (size, sec, nsec) = store.stat(OsStr::new("a.py")).unwrap();
        assert_eq!(
            (size, sec, nsec),
            (source.len(), source.mtime(), source.mtime_nsec())
        );
        assert!(store.stat(OsStr::new("missing.py")).is_err());
        // A symlink where a folder is expected is not followed.
        std::os::unix::fs::symlink(dir.path().join("store"), dir.path().join("link")).unwrap();
        assert!(root.open_at(OsStr::new("link")).is_err());
        // A NUL inside a name is refused; a path longer than the stack buffer still works.
        assert_eq!(
            root.mkdir(OsStr::new("a\0b")).unwrap_err().kind(),
            std::io::ErrorKind::InvalidInput
        );
        let mut deep = dir.path().to_path_buf();
        while deep.as_os_str().len() < 500 {
            deep.push("a-rather-long-folder-name");
        }
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join("f.py"), b"F = 1\n").unwrap();
        let (size, _, _) = DirFd::open(&deep)
            .unwrap()
            .stat(OsStr::new("f.py"))
            .unwrap();
        assert_eq!(size, 6);
    }
}

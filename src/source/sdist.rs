//! Source archives and trees on the host: the sha256 of an sdist (checked against what the
//! requirement or the index says), its safe unpacking (`.tar.gz`, `.tgz`, `.tar`, `.zip`:
//! relative member paths only, no `..`, links that stay inside, nothing but files, folders
//! and links, a bound on the bytes written) with the single top folder stripped, the content
//! hash of a local folder, and the PEP 643 reading of `PKG-INFO`.
//!
//! Must not run anything, nor write outside the folder it is given.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use super::SourceError;
use crate::index::core_metadata::{parse_headers, CoreMetadata};

/// Bytes an sdist may unpack to, in all (a bomb guard; the largest real sdists are far below).
pub const MAX_UNPACKED: u64 = 8 << 30;

/// The sha256 (hex) of a file.
pub fn sha256_file(path: &Path) -> Result<String, SourceError> {
    let mut file = fs::File::open(path).map_err(SourceError::io(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(SourceError::io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Folders a folder hash leaves out: version control and build output.
const SKIPPED_DIRS: [&str; 6] = [".git", ".hg", ".svn", "__pycache__", ".tox", ".nox"];

/// A content hash of the folder `dir`: every file's relative path, executable bit and bytes,
/// and every link's target, in sorted order (version-control folders and `__pycache__` left
/// out). Two folders with the same files hash the same wherever they are.
pub fn hash_tree(dir: &Path) -> Result<String, SourceError> {
    let mut hasher = Sha256::new();
    let mut stack = vec![PathBuf::new()];
    let mut files: BTreeSet<PathBuf> = BTreeSet::new();
    while let Some(rel) = stack.pop() {
        let here = dir.join(&rel);
        for entry in fs::read_dir(&here).map_err(SourceError::io(&here))? {
            let entry = entry.map_err(SourceError::io(&here))?;
            let name = entry.file_name();
            let kind = entry.file_type().map_err(SourceError::io(&entry.path()))?;
            let child = rel.join(&name);
            if kind.is_dir() {
                if !SKIPPED_DIRS.iter().any(|s| name == *s) {
                    stack.push(child);
                }
            } else {
                files.insert(child);
            }
        }
    }
    for rel in files {
        let path = dir.join(&rel);
        let meta = fs::symlink_metadata(&path).map_err(SourceError::io(&path))?;
        hasher.update(rel.to_string_lossy().as_bytes());
        hasher.update([0]);
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&path).map_err(SourceError::io(&path))?;
            hasher.update(b"L");
            hasher.update(target.to_string_lossy().as_bytes());
        } else if meta.is_file() {
            use std::os::unix::fs::PermissionsExt;
            hasher.update(if meta.permissions().mode() & 0o111 != 0 {
                b"X"
            } else {
                b"F"
            });
            hasher.update(meta.len().to_le_bytes());
            let mut file = fs::File::open(&path).map_err(SourceError::io(&path))?;
            io::copy(&mut file, &mut hasher).map_err(SourceError::io(&path))?;
        }
        hasher.update([0]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// A member path made safe: relative, no `..`, no empty result.
fn safe_relative(name: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in Path::new(name).components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// Whether a link at `link` (relative to the tree) pointing at `target` stays in the tree.
fn link_stays_inside(link: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: i64 = link.components().count() as i64 - 1;
    for component in target.components() {
        match component {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            _ => return false,
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

fn bad(archive: &Path, message: String) -> SourceError {
    SourceError::BadSdist {
        path: archive.to_path_buf(),
        message,
    }
}

/// Unpacks the sdist `archive` into `into` (created) and returns its top folder: the one
/// folder every member lies in, as the sdist format has it, or `into` itself for an archive
/// without one.
pub fn unpack(archive: &Path, into: &Path) -> Result<PathBuf, SourceError> {
    fs::create_dir_all(into).map_err(SourceError::io(into))?;
    let name = archive
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if name.ends_with(".zip") {
        unpack_zip(archive, into)?;
    } else if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        let file = fs::File::open(archive).map_err(SourceError::io(archive))?;
        unpack_tar(archive, flate2::read::GzDecoder::new(file), into)?;
    } else if name.ends_with(".tar") {
        let file = fs::File::open(archive).map_err(SourceError::io(archive))?;
        unpack_tar(archive, file, into)?;
    } else {
        return Err(bad(
            archive,
            "not a .tar.gz, .tgz, .tar or .zip source archive".to_string(),
        ));
    }
    let entries: Vec<_> = fs::read_dir(into)
        .map_err(SourceError::io(into))?
        .flatten()
        .collect();
    match entries.as_slice() {
        [one] if one.file_type().is_ok_and(|t| t.is_dir()) => Ok(one.path()),
        _ => Ok(into.to_path_buf()),
    }
}

fn unpack_tar(archive: &Path, reader: impl Read, into: &Path) -> Result<(), SourceError> {
    let mut tar = tar::Archive::new(reader);
    let mut written: u64 = 0;
    let entries = tar
        .entries()
        .map_err(|e| bad(archive, format!("not a tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(archive, format!("a damaged member: {e}")))?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
            continue;
        }
        let Some(rel) = safe_relative(&raw) else {
            return Err(bad(
                archive,
                format!("the member `{raw}` would be written outside the source folder"),
            ));
        };
        let dest = into.join(&rel);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(SourceError::io(parent))?;
        }
        if kind.is_dir() {
            fs::create_dir_all(&dest).map_err(SourceError::io(&dest))?;
        } else if kind.is_file() || kind == tar::EntryType::Continuous {
            written = written.saturating_add(entry.header().size().unwrap_or(0));
            if written > MAX_UNPACKED {
                return Err(bad(
                    archive,
                    format!("it unpacks to more than {MAX_UNPACKED} bytes"),
                ));
            }
            let executable = entry.header().mode().unwrap_or(0o644) & 0o111 != 0;
            let mut out = fs::File::create(&dest).map_err(SourceError::io(&dest))?;
            io::copy(&mut entry, &mut out)
                .map_err(|e| bad(archive, format!("reading `{raw}`: {e}")))?;
            use std::os::unix::fs::PermissionsExt;
            let mode = if executable { 0o755 } else { 0o644 };
            fs::set_permissions(&dest, fs::Permissions::from_mode(mode))
                .map_err(SourceError::io(&dest))?;
        } else if kind.is_symlink() {
            let target = entry
                .link_name()
                .ok()
                .flatten()
                .map(|t| t.into_owned())
                .unwrap_or_default();
            if !link_stays_inside(&rel, &target) {
                return Err(bad(
                    archive,
                    format!(
                        "the link `{raw}` points outside the source folder (`{}`)",
                        target.display()
                    ),
                ));
            }
            std::os::unix::fs::symlink(&target, &dest).map_err(SourceError::io(&dest))?;
        } else if kind.is_hard_link() {
            let target = entry
                .link_name()
                .ok()
                .flatten()
                .and_then(|t| safe_relative(&t.to_string_lossy()))
                .ok_or_else(|| {
                    bad(
                        archive,
                        format!("the hard link `{raw}` points outside the source folder"),
                    )
                })?;
            fs::copy(into.join(&target), &dest).map_err(SourceError::io(&dest))?;
        }
        // Devices, FIFOs and the like are left out: no build needs them.
    }
    Ok(())
}

fn unpack_zip(archive: &Path, into: &Path) -> Result<(), SourceError> {
    let file = fs::File::open(archive).map_err(SourceError::io(archive))?;
    let mut zip =
        zip::ZipArchive::new(file).map_err(|e| bad(archive, format!("not a zip archive: {e}")))?;
    let mut written: u64 = 0;
    for i in 0..zip.len() {
        let mut member = zip
            .by_index(i)
            .map_err(|e| bad(archive, format!("a damaged member: {e}")))?;
        let raw = member.name().to_string();
        let Some(rel) = safe_relative(&raw) else {
            return Err(bad(
                archive,
                format!("the member `{raw}` would be written outside the source folder"),
            ));
        };
        let dest = into.join(&rel);
        if member.is_dir() {
            fs::create_dir_all(&dest).map_err(SourceError::io(&dest))?;
            continue;
        }
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(SourceError::io(parent))?;
        }
        written = written.saturating_add(member.size());
        if written > MAX_UNPACKED {
            return Err(bad(
                archive,
                format!("it unpacks to more than {MAX_UNPACKED} bytes"),
            ));
        }
        let executable = member.unix_mode().unwrap_or(0o644) & 0o111 != 0;
        let mut out = fs::File::create(&dest).map_err(SourceError::io(&dest))?;
        io::copy(&mut member.by_ref().take(MAX_UNPACKED), &mut out)
            .map_err(|e| bad(archive, format!("reading `{raw}`: {e}")))?;
        use std::os::unix::fs::PermissionsExt;
        let mode = if executable { 0o755 } else { 0o644 };
        fs::set_permissions(&dest, fs::Permissions::from_mode(mode))
            .map_err(SourceError::io(&dest))?;
    }
    Ok(())
}

/// Copies the folder `from` into `to` (created), files, links and folders, leaving out
/// version-control folders and `__pycache__`.
pub fn copy_tree(from: &Path, to: &Path) -> Result<(), SourceError> {
    fs::create_dir_all(to).map_err(SourceError::io(to))?;
    for entry in fs::read_dir(from).map_err(SourceError::io(from))? {
        let entry = entry.map_err(SourceError::io(from))?;
        let name = entry.file_name();
        let src = entry.path();
        let dest = to.join(&name);
        let kind = entry.file_type().map_err(SourceError::io(&src))?;
        if kind.is_dir() {
            if SKIPPED_DIRS.iter().any(|s| name == *s) {
                continue;
            }
            copy_tree(&src, &dest)?;
        } else if kind.is_symlink() {
            let target = fs::read_link(&src).map_err(SourceError::io(&src))?;
            std::os::unix::fs::symlink(target, &dest).map_err(SourceError::io(&dest))?;
        } else if kind.is_file() {
            fs::copy(&src, &dest).map_err(SourceError::io(&dest))?;
        }
    }
    Ok(())
}

/// The metadata of `PKG-INFO` when PEP 643 lets a resolver trust it without a build:
/// `Metadata-Version` 2.2 or later and `Requires-Dist` (and `Requires-Python`) not listed
/// as `Dynamic`. None otherwise (older metadata, dynamic dependencies, no or bad file).
pub fn static_metadata(pkg_info: &[u8]) -> Option<CoreMetadata> {
    let headers = parse_headers(pkg_info);
    let version = headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("Metadata-Version"))?
        .value
        .clone();
    let (major, minor) = version.split_once('.')?;
    let (major, minor): (u32, u32) = (major.trim().parse().ok()?, minor.trim().parse().ok()?);
    if (major, minor) < (2, 2) {
        return None;
    }
    let dynamic = headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("Dynamic")
            && (h.value.eq_ignore_ascii_case("Requires-Dist")
                || h.value.eq_ignore_ascii_case("Requires-Python"))
    });
    if dynamic {
        return None;
    }
    CoreMetadata::parse(pkg_info).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_paths_and_links() {
        assert_eq!(safe_relative("a/b.py"), Some(PathBuf::from("a/b.py")));
        assert_eq!(safe_relative("./a/./b"), Some(PathBuf::from("a/b")));
        assert_eq!(safe_relative("../x"), None);
        assert_eq!(safe_relative("a/../../x"), None);
        assert_eq!(safe_relative("/etc/passwd"), None);
        assert_eq!(safe_relative("."), None);
        assert!(link_stays_inside(Path::new("p/a/l"), Path::new("../b")));
        assert!(!link_stays_inside(Path::new("p/l"), Path::new("../../x")));
        assert!(!link_stays_inside(Path::new("l"), Path::new("/etc")));
    }

    #[test]
    fn pep643_static_metadata() {
        let good = b"Metadata-Version: 2.2\nName: demo\nVersion: 1.0\nRequires-Dist: six>=1\nDynamic: Description\n\nbody\n";
        let meta = static_metadata(good).unwrap();
        assert_eq!(meta.name, "demo");
        assert_eq!(meta.requires_dist.len(), 1);
        let old = b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n";
        assert!(static_metadata(old).is_none());
        let dynamic = b"Metadata-Version: 2.4\nName: demo\nVersion: 1.0\nDynamic: requires-dist\n";
        assert!(static_metadata(dynamic).is_none());
        assert!(static_metadata(b"garbage").is_none());
    }
}

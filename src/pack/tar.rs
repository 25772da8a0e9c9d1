//! Deterministic tar: the walk of a layer's source trees and the ustar writer.
//!
//! Owns the byte format of every layer: entries sorted by path (each directory's children
//! by name bytes, parents first), every parent directory present, one fixed mtime, uid/gid 0
//! (except an entry given an [`Owner`]: the empty folders image.toml declares as volumes)
//! with empty user and group names, modes normalised (directories and executables 0755,
//! other files 0644, symlinks 0777), hard links inside one layer written as tar hard links,
//! no xattrs, no atime/ctime and no PAX timestamps (a PAX record carries only a path or link
//! target too long for ustar). It must not compress, hash or know about images: it writes
//! to any [`Write`].

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// One source tree of a layer: the files under `dir` appear under `image_path` in the image.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TreeSource {
    /// The folder on the build host.
    pub dir: PathBuf,
    /// Where its contents go in the image: `/` for an installed layer prefix (a rootfs-shaped
    /// tree), `/opt/comfyui/app` for an application checkout.
    pub image_path: String,
    /// Names (at any depth) left out of the layer, e.g. `.git`.
    pub exclude: Vec<String>,
}

/// What kind of entry a path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Directory,
    /// A regular file, written with its bytes.
    File {
        size: u64,
        executable: bool,
    },
    /// A second (third, ...) name of a file already in the layer.
    HardLink {
        target: Vec<u8>,
    },
    Symlink {
        target: Vec<u8>,
    },
}

/// The numeric owner of a tar entry. Every entry of a tree is [`Owner::ROOT`]; only a
/// folder made for a volume of the image's user has another.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

impl Owner {
    pub const ROOT: Owner = Owner { uid: 0, gid: 0 };
}

/// One tar entry: an in-image path (relative, no leading `/`, directories without a trailing
/// slash) and where its bytes come from.
#[derive(Debug, Clone)]
pub struct Entry {
    pub path: Vec<u8>,
    pub kind: EntryKind,
    /// The file on the host (for [`EntryKind::File`]).
    pub source: Option<PathBuf>,
    /// uid and gid in the header.
    pub owner: Owner,
}

/// Why a tree could not be turned into tar entries.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is a {kind}; a layer holds only directories, regular files, symlinks and hard links", path.display())]
    Special { path: PathBuf, kind: &'static str },
    #[error("in-image path `{path}` is not absolute or contains `..`")]
    ImagePath { path: String },
    #[error("`{path}` appears twice in one layer (from {} and {})", first.display(), second.display())]
    Duplicate {
        path: String,
        first: PathBuf,
        second: PathBuf,
    },
}

impl TreeError {
    /// What the user can do about it.
    pub fn help(&self) -> Option<String> {
        match self {
            TreeError::Special { .. } => Some("remove it from the layer folder".to_string()),
            TreeError::ImagePath { .. } => Some("write it like /opt/comfyui/app".to_string()),
            TreeError::Duplicate { .. } => {
                Some("map the layer's folders to in-image paths that do not overlap".to_string())
            }
            _ => None,
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> TreeError + '_ {
    move |source| TreeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Lists the entries of a layer made of `sources`, in tar order: parents first, each
/// directory's children sorted by name bytes. Hard links are detected by (device, inode)
/// within the layer: the first name in that order carries the bytes, later ones link to it.
pub fn collect_entries(sources: &[TreeSource]) -> Result<Vec<Entry>, TreeError> {
    // A tree keyed by path components keeps order and merges parents of several sources.
    let mut root = Node::default();
    for source in sources {
        let components = image_components(&source.image_path)?;
        let mut node = &mut root;
        for component in components {
            node = node
                .children
                .entry(component)
                .or_insert_with(Node::directory);
        }
        if node.source.is_none() {
            node.source = Some(source.dir.clone());
        }
        walk_dir(&source.dir, node, &source.exclude)?;
    }
    let mut entries = Vec::new();
    let mut links: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    flatten(&root, &mut Vec::new(), &mut entries, &mut links);
    Ok(entries)
}

#[derive(Debug, Default)]
struct Node {
    /// `None` for the root and directories; `Some` for non-directories.
    leaf: Option<Leaf>,
    source: Option<PathBuf>,
    children: std::collections::BTreeMap<Vec<u8>, Node>,
}

#[derive(Debug)]
enum Leaf {
    File {
        size: u64,
        executable: bool,
        /// (device, inode) when the file has more than one name.
        link_key: Option<(u64, u64)>,
    },
    Symlink(Vec<u8>),
}

impl Node {
    fn directory() -> Node {
        Node::default()
    }
}

fn image_components(image_path: &str) -> Result<Vec<Vec<u8>>, TreeError> {
    if !image_path.starts_with('/') {
        return Err(TreeError::ImagePath {
            path: image_path.to_string(),
        });
    }
    let mut out = Vec::new();
    for part in image_path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(TreeError::ImagePath {
                    path: image_path.to_string(),
                })
            }
            other => out.push(other.as_bytes().to_vec()),
        }
    }
    Ok(out)
}

fn walk_dir(dir: &Path, node: &mut Node, exclude: &[String]) -> Result<(), TreeError> {
    let read = std::fs::read_dir(dir).map_err(io_err(dir))?;
    for item in read {
        let item = item.map_err(io_err(dir))?;
        let name: OsString = item.file_name();
        if exclude.iter().any(|e| e.as_bytes() == name.as_bytes()) {
            continue;
        }
        let path = item.path();
        let meta = std::fs::symlink_metadata(&path).map_err(io_err(&path))?;
        let file_type = meta.file_type();
        let key = name.into_vec();
        if file_type.is_dir() {
            if let Some(existing) = node.children.get(&key).filter(|c| c.leaf.is_some()) {
                return Err(TreeError::Duplicate {
                    path: path.display().to_string(),
                    first: existing.source.clone().unwrap_or_default(),
                    second: path.clone(),
                });
            }
            let child = node.children.entry(key).or_insert_with(Node::directory);
            child.source.get_or_insert_with(|| path.clone());
            walk_dir(&path, child, exclude)?;
            continue;
        }
        let leaf = if file_type.is_file() {
            Leaf::File {
                size: meta.len(),
                executable: meta.permissions().mode() & 0o111 != 0,
                link_key: (meta.nlink() > 1).then(|| (meta.dev(), meta.ino())),
            }
        } else if file_type.is_symlink() {
            let target = std::fs::read_link(&path).map_err(io_err(&path))?;
            Leaf::Symlink(target.into_os_string().into_vec())
        } else {
            use std::os::unix::fs::FileTypeExt;
            let kind = if file_type.is_fifo() {
                "named pipe"
            } else if file_type.is_socket() {
                "socket"
            } else if file_type.is_block_device() {
                "block device"
            } else {
                "character device"
            };
            return Err(TreeError::Special { path, kind });
        };
        if let Some(existing) = node.children.get(&key) {
            return Err(TreeError::Duplicate {
                path: path.display().to_string(),
                first: existing.source.clone().unwrap_or_default(),
                second: path.clone(),
            });
        }
        node.children.insert(
            key,
            Node {
                leaf: Some(leaf),
                source: Some(path),
                children: Default::default(),
            },
        );
    }
    Ok(())
}

fn flatten(
    node: &Node,
    prefix: &mut Vec<u8>,
    out: &mut Vec<Entry>,
    links: &mut HashMap<(u64, u64), Vec<u8>>,
) {
    for (name, child) in &node.children {
        let saved = prefix.len();
        if !prefix.is_empty() {
            prefix.push(b'/');
        }
        prefix.extend_from_slice(name);
        match &child.leaf {
            None => {
                out.push(Entry {
                    path: prefix.clone(),
                    kind: EntryKind::Directory,
                    source: None,
                    owner: Owner::ROOT,
                });
                flatten(child, prefix, out, links);
            }
            Some(Leaf::Symlink(target)) => out.push(Entry {
                path: prefix.clone(),
                kind: EntryKind::Symlink {
                    target: target.clone(),
                },
                source: None,
                owner: Owner::ROOT,
            }),
            Some(Leaf::File {
                size,
                executable,
                link_key,
            }) => {
                let first = link_key.and_then(|key| match links.get(&key) {
                    Some(first) => Some(first.clone()),
                    None => {
                        links.insert(key, prefix.clone());
                        None
                    }
                });
                out.push(match first {
                    Some(target) => Entry {
                        path: prefix.clone(),
                        kind: EntryKind::HardLink { target },
                        source: None,
                        owner: Owner::ROOT,
                    },
                    None => Entry {
                        path: prefix.clone(),
                        kind: EntryKind::File {
                            size: *size,
                            executable: *executable,
                        },
                        source: child.source.clone(),
                        owner: Owner::ROOT,
                    },
                });
            }
        }
        prefix.truncate(saved);
    }
}

const BLOCK: usize = 512;

/// Writes ustar entries with fixed metadata.
pub struct TarWriter<W: Write> {
    out: W,
    mtime: u64,
    /// The owner the next header carries (the entry being written).
    owner: Owner,
    /// Bytes of file content copied (not counting headers).
    pub content_bytes: u64,
}

impl<W: Write> TarWriter<W> {
    /// `mtime`: the one timestamp every entry carries (`SOURCE_DATE_EPOCH`, or 0).
    pub fn new(out: W, mtime: u64) -> Self {
        TarWriter {
            out,
            mtime,
            owner: Owner::ROOT,
            content_bytes: 0,
        }
    }

    /// Writes every entry of a collected layer, reading file bytes from the host. A file
    /// whose size changed since it was listed is an error (the layer would be torn).
    pub fn write_entries(&mut self, entries: &[Entry]) -> Result<(), TreeError> {
        for entry in entries {
            self.write_entry(entry)?;
        }
        Ok(())
    }

    fn write_entry(&mut self, entry: &Entry) -> Result<(), TreeError> {
        let write_err = |source| TreeError::Io {
            path: PathBuf::from(std::ffi::OsStr::from_bytes(&entry.path)),
            source,
        };
        self.owner = entry.owner;
        let written = self.write_kind(entry, write_err);
        self.owner = Owner::ROOT;
        written
    }

    fn write_kind(
        &mut self,
        entry: &Entry,
        write_err: impl Fn(io::Error) -> TreeError,
    ) -> Result<(), TreeError> {
        match &entry.kind {
            EntryKind::Directory => {
                let mut path = entry.path.clone();
                path.push(b'/');
                self.header(&path, b'5', 0o755, 0, b"")
                    .map_err(&write_err)?;
            }
            EntryKind::Symlink { target } => {
                self.header(&entry.path, b'2', 0o777, 0, target)
                    .map_err(&write_err)?;
            }
            EntryKind::HardLink { target } => {
                self.header(&entry.path, b'1', 0o644, 0, target)
                    .map_err(&write_err)?;
            }
            EntryKind::File { size, executable } => {
                let mode = if *executable { 0o755 } else { 0o644 };
                let source = entry.source.as_deref().unwrap_or(Path::new(""));
                let mut file = File::open(source).map_err(io_err(source))?;
                self.header(&entry.path, b'0', mode, *size, b"")
                    .map_err(&write_err)?;
                let copied = io::copy(&mut (&mut file).take(*size), &mut self.out)
                    .map_err(io_err(source))?;
                if copied != *size {
                    return Err(TreeError::Io {
                        path: source.to_path_buf(),
                        source: io::Error::other(format!(
                            "the file changed while packing ({size} bytes listed, {copied} read); \
                             do not modify layer folders during `comfypak pack`"
                        )),
                    });
                }
                self.content_bytes += copied;
                self.pad(*size).map_err(&write_err)?;
            }
        }
        Ok(())
    }

    /// Writes a regular file entry from memory (used for docker-archive metadata).
    pub fn append_bytes(&mut self, path: &[u8], data: &[u8]) -> io::Result<()> {
        self.header(path, b'0', 0o644, data.len() as u64, b"")?;
        self.out.write_all(data)?;
        self.pad(data.len() as u64)
    }

    /// Writes a regular file entry whose `size` bytes come from `reader`.
    pub fn append_reader(
        &mut self,
        path: &[u8],
        size: u64,
        reader: &mut dyn io::Read,
    ) -> io::Result<()> {
        self.header(path, b'0', 0o644, size, b"")?;
        let copied = io::copy(&mut Read::take(reader, size), &mut self.out)?;
        if copied != size {
            return Err(io::Error::other(format!(
                "expected {size} bytes for {}, got {copied}",
                String::from_utf8_lossy(path)
            )));
        }
        self.pad(size)
    }

    /// Writes a directory entry (used for docker-archive layer folders).
    pub fn append_dir(&mut self, path: &[u8]) -> io::Result<()> {
        let mut path = path.to_vec();
        path.push(b'/');
        self.header(&path, b'5', 0o755, 0, b"")
    }

    /// Writes the two zero blocks that end an archive and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; BLOCK * 2])?;
        Ok(self.out)
    }

    fn pad(&mut self, size: u64) -> io::Result<()> {
        let rem = (size % BLOCK as u64) as usize;
        if rem != 0 {
            self.out.write_all(&[0u8; BLOCK][..BLOCK - rem])?;
        }
        Ok(())
    }

    fn header(
        &mut self,
        path: &[u8],
        typeflag: u8,
        mode: u32,
        size: u64,
        link: &[u8],
    ) -> io::Result<()> {
        let split = split_ustar_name(path);
        let mut pax = Vec::new();
        if split.is_none() {
            pax_record(&mut pax, "path", path);
        }
        if link.len() > 100 {
            pax_record(&mut pax, "linkpath", link);
        }
        if !pax.is_empty() {
            let block = self.raw_header(b"", b"././@PaxHeader", b'x', 0o644, pax.len() as u64, b"");
            self.out.write_all(&block)?;
            self.out.write_all(&pax)?;
            self.pad(pax.len() as u64)?;
        }
        let (prefix, name) = split.unwrap_or((b"", &path[..path.len().min(100)]));
        let link = &link[..link.len().min(100)];
        let block = self.raw_header(prefix, name, typeflag, mode, size, link);
        self.out.write_all(&block)
    }

    fn raw_header(
        &self,
        prefix: &[u8],
        name: &[u8],
        typeflag: u8,
        mode: u32,
        size: u64,
        link: &[u8],
    ) -> [u8; BLOCK] {
        let mut h = [0u8; BLOCK];
        h[..name.len()].copy_from_slice(name);
        octal(&mut h[100..108], u64::from(mode));
        numeric(&mut h[108..116], u64::from(self.owner.uid));
        numeric(&mut h[116..124], u64::from(self.owner.gid));
        numeric(&mut h[124..136], size);
        numeric(&mut h[136..148], self.mtime);
        h[156] = typeflag;
        h[157..157 + link.len()].copy_from_slice(link);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        // uname and gname stay empty; devmajor/devminor are zero-filled octal.
        octal(&mut h[329..337], 0);
        octal(&mut h[337..345], 0);
        h[345..345 + prefix.len()].copy_from_slice(prefix);
        h[148..156].copy_from_slice(b"        ");
        let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
        let text = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(text.as_bytes());
        h
    }
}

/// Splits a path into ustar's `prefix` (≤155) and `name` (≤100) at a `/`, or `None` when
/// it does not fit and needs a PAX `path` record.
fn split_ustar_name(path: &[u8]) -> Option<(&[u8], &[u8])> {
    if path.len() <= 100 {
        return Some((b"", path));
    }
    if path.len() > 256 {
        return None;
    }
    // The name part may end with '/' (directories), so search before the last byte.
    let search_end = path.len() - 1;
    for (i, &b) in path[..search_end].iter().enumerate().rev() {
        if b == b'/' {
            let (prefix, name) = (&path[..i], &path[i + 1..]);
            if name.len() > 100 {
                return None;
            }
            if prefix.len() <= 155 && !name.is_empty() {
                return Some((prefix, name));
            }
        }
    }
    None
}

/// Appends `"LEN key=value\n"`, LEN counting the whole record including itself.
fn pax_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    loop {
        let total = body + len.to_string().len();
        if total == len {
            break;
        }
        len = total;
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(&text.as_bytes()[text.len() - digits..]);
    field[digits] = 0;
}

/// Octal when it fits, else GNU base-256 (high bit set, big-endian binary).
fn numeric(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    if value < 1u64 << (3 * digits as u32) {
        octal(field, value);
    } else {
        // The low bytes of the value at the end, the marker bit on the first byte (in an
        // 8-byte uid/gid field the value's first byte is zero: a u32 fits below it).
        field.fill(0);
        let bytes = value.to_be_bytes();
        let n = field.len().min(bytes.len());
        let len = field.len();
        field[len - n..].copy_from_slice(&bytes[bytes.len() - n..]);
        field[0] |= 0x80;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_lengths_count_themselves() {
        for n in [1usize, 5, 90, 95, 96, 97, 200, 995, 996, 1000] {
            let mut out = Vec::new();
            let value = vec![b'a'; n];
            pax_record(&mut out, "path", &value);
            let text = String::from_utf8(out.clone()).unwrap();
            let len: usize = text.split(' ').next().unwrap().parse().unwrap();
            assert_eq!(len, out.len(), "value length {n}");
        }
    }

    #[test]
    fn ustar_split() {
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(90));
        let (prefix, name) = split_ustar_name(long.as_bytes()).unwrap();
        assert_eq!(prefix.len(), 120);
        assert_eq!(name.len(), 90);
        assert!(split_ustar_name("x".repeat(150).as_bytes()).is_none());
        assert!(split_ustar_name(format!("a/{}", "n".repeat(101)).as_bytes()).is_none());
    }

    #[test]
    fn large_sizes_use_base256() {
        let mut field = [0u8; 12];
        numeric(&mut field, 9 << 30);
        assert_eq!(field[0], 0x80);
        numeric(&mut field, 1234);
        assert_eq!(&field, b"00000002322\0");
    }

    #[test]
    fn an_owned_entry_carries_its_owner_and_the_next_is_root_again() {
        let entry = |path: &[u8], owner| Entry {
            path: path.to_vec(),
            kind: EntryKind::Directory,
            source: None,
            owner,
        };
        let mut writer = TarWriter::new(Vec::new(), 0);
        writer
            .write_entries(&[
                entry(
                    b"data",
                    Owner {
                        uid: 1000,
                        gid: 1000,
                    },
                ),
                entry(
                    b"big",
                    Owner {
                        uid: 3_000_000,
                        gid: 7,
                    },
                ),
                entry(b"root", Owner::ROOT),
            ])
            .unwrap();
        let tar = writer.finish().unwrap();
        let header = |i: usize| &tar[i * BLOCK..(i + 1) * BLOCK];
        assert_eq!(&header(0)[..5], b"data/");
        assert_eq!(&header(0)[108..116], b"0001750\0");
        assert_eq!(&header(0)[116..124], b"0001750\0");
        // Over 7 octal digits: base-256, as GNU tar and the Go and Rust tar readers take it.
        assert_eq!(header(1)[108], 0x80);
        assert_eq!(&header(1)[112..116], &3_000_000u32.to_be_bytes());
        assert_eq!(&header(1)[116..124], b"0000007\0");
        assert_eq!(&header(2)[108..116], b"0000000\0");
        assert_eq!(&header(2)[116..124], b"0000000\0");
    }
}

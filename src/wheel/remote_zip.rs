//! Read one member (a wheel's `*.dist-info/METADATA`) out of a zip archive from bytes of its
//! tail, so that the HTTP layer can fetch METADATA with one or two Range requests instead of
//! downloading the whole wheel.
//!
//! The flow, driven by the caller:
//! 1. fetch the last [`DEFAULT_TAIL_LEN`] bytes (`Range: bytes=-N`), learn the total length;
//! 2. [`read_central_directory`]: either the entries, or [`TailRead::NeedFrom`] (fetch more);
//! 3. [`find_metadata_entry`], then [`member_bytes_in_tail`] or fetch [`member_span`];
//! 4. [`extract_member`]: stored or deflated data, sizes and CRC-32 checked.
//!
//! Pure: this module does no I/O and must not know about HTTP, caches or wheel installation.
//! A caller holding the whole file passes it with `tail_start = 0`.

use std::io::Read;

/// How many bytes to request first from the end of a remote wheel.
pub const DEFAULT_TAIL_LEN: u64 = 64 * 1024;

const EOCD_SIG: u32 = 0x0605_4b50;
const EOCD_LEN: usize = 22;
const MAX_COMMENT_LEN: usize = 0xFFFF;
/// The end record plus the longest possible archive comment.
pub const MAX_EOCD_SEARCH: u64 = (EOCD_LEN + MAX_COMMENT_LEN) as u64;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const ZIP64_LOCATOR_LEN: usize = 20;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
const ZIP64_EOCD_LEN: usize = 56;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const CENTRAL_LEN: usize = 46;
const LOCAL_SIG: u32 = 0x0403_4b50;
/// Fixed part of a local file header.
pub const LOCAL_HEADER_LEN: u64 = 30;
const ZIP64_EXTRA_ID: u16 = 0x0001;
const FLAG_ENCRYPTED: u16 = 0x0001;
const FLAG_UTF8: u16 = 0x0800;

/// One entry of the central directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CentralEntry {
    /// Member path inside the archive (UTF-8; CP437 names are converted).
    pub name: String,
    /// Compression method (0 stored, 8 deflated; others are refused on extraction).
    pub method: u16,
    /// General-purpose flags (bit 0 encrypted, bit 3 data descriptor, bit 11 UTF-8).
    pub flags: u16,
    pub compressed_size: u64,
    pub uncompressed_size: u64,
    pub crc32: u32,
    /// Absolute offset of the member's local file header.
    pub local_header_offset: u64,
}

/// A parsed central directory and where it lies in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CentralDirectory {
    pub entries: Vec<CentralEntry>,
    /// Absolute offset of the first central directory header; members lie before it.
    pub start: u64,
    /// Absolute offset just past the last central directory header.
    pub end: u64,
}

/// The outcome of looking for the central directory in a tail of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TailRead {
    /// Central directory found; here are its entries.
    Directory(CentralDirectory),
    /// The tail did not reach back far enough: fetch bytes `[start, total)` and call again.
    /// Fetching from earlier is fine (METADATA usually sits just before the central
    /// directory, so a few KiB more often saves the member request).
    NeedFrom { start: u64 },
}

/// Why a zip archive (or a member of it) could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ZipError {
    #[error(
        "the tail bytes [{tail_start}, {tail_end}) do not end at the file's length {total_len}; \
         pass the bytes from a suffix range request together with the length from Content-Range"
    )]
    TailMismatch {
        tail_start: u64,
        tail_end: u64,
        total_len: u64,
    },
    #[error("not a zip archive ({total_len} bytes): {reason}")]
    NotAZip { total_len: u64, reason: String },
    #[error(
        "the zip archive spans several disks ({detail}); multi-disk archives are not supported"
    )]
    MultiDisk { detail: String },
    #[error("corrupt zip archive: {reason}")]
    Corrupt { reason: String },
    #[error(
        "zip member {name:?} is compressed with {method_name} (method {method}); only stored \
         (0) and deflated (8) members are supported"
    )]
    UnsupportedMethod {
        name: String,
        method: u16,
        method_name: &'static str,
    },
    #[error("zip member {name:?} is encrypted; encrypted wheels are not supported")]
    Encrypted { name: String },
    #[error(
        "zip member {name:?} needs {needed} bytes from its local header, but only {have} were \
         given; fetch the range from member_span"
    )]
    TooShort {
        name: String,
        needed: u64,
        have: u64,
    },
    #[error("zip member {name:?} fails its CRC-32 check: expected {expected:08x}, got {actual:08x}; the file is corrupt or was modified")]
    CrcMismatch {
        name: String,
        expected: u32,
        actual: u32,
    },
    #[error("zip member {name:?} has {actual} uncompressed bytes, but the central directory says {expected}")]
    SizeMismatch {
        name: String,
        expected: u64,
        actual: u64,
    },
    #[error("zip member {name:?} has invalid deflate data: {message}")]
    Deflate { name: String, message: String },
    #[error("the wheel has no top-level `*.dist-info` directory")]
    NoDistInfo,
    #[error("the wheel has several top-level `*.dist-info` directories ({}); cannot tell which holds the metadata", dirs.join(", "))]
    AmbiguousDistInfo { dirs: Vec<String> },
    #[error("the wheel's `{dir}` directory has no METADATA file")]
    MissingMetadata { dir: String },
}

fn corrupt(reason: impl Into<String>) -> ZipError {
    ZipError::Corrupt {
        reason: reason.into(),
    }
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut buf = [0u8; 8];
    buf.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(buf)
}

/// Find the end-of-central-directory record in `tail`: the last signature whose comment
/// length ends exactly at the end of the data, else the last one whose comment fits.
fn find_eocd(tail: &[u8]) -> Option<usize> {
    if tail.len() < EOCD_LEN {
        return None;
    }
    let last = tail.len() - EOCD_LEN;
    let first = last.saturating_sub(MAX_COMMENT_LEN);
    let mut loose = None;
    for pos in (first..=last).rev() {
        if u32_at(tail, pos) != EOCD_SIG {
            continue;
        }
        let comment_end = pos + EOCD_LEN + usize::from(u16_at(tail, pos + 20));
        if comment_end == tail.len() {
            return Some(pos);
        }
        if comment_end < tail.len() && loose.is_none() {
            loose = Some(pos);
        }
    }
    loose
}

/// Locate and parse the central directory from the last bytes of a zip file.
///
/// `tail` holds the file's bytes `[tail_start, total_len)`. Returns
/// [`TailRead::NeedFrom`] when the end record, the zip64 records or the central directory
/// begin before `tail_start`.
pub fn read_central_directory(
    tail: &[u8],
    tail_start: u64,
    total_len: u64,
) -> Result<TailRead, ZipError> {
    let tail_end = tail_start.saturating_add(tail.len() as u64);
    if tail_end != total_len {
        return Err(ZipError::TailMismatch {
            tail_start,
            tail_end,
            total_len,
        });
    }
    let Some(eocd_pos) = find_eocd(tail) else {
        let searchable = total_len.min(MAX_EOCD_SEARCH);
        if (tail.len() as u64) < searchable {
            return Ok(TailRead::NeedFrom {
                start: total_len - searchable,
            });
        }
        let reason = if total_len < EOCD_LEN as u64 {
            format!("shorter than the {EOCD_LEN}-byte end-of-central-directory record")
        } else {
            "no end-of-central-directory record in its last 64 KiB (not a zip, or the file is \
             truncated)"
                .to_string()
        };
        return Err(ZipError::NotAZip { total_len, reason });
    };
    let eocd_abs = tail_start + eocd_pos as u64;
    let eocd = &tail[eocd_pos..eocd_pos + EOCD_LEN];
    let disk = u16_at(eocd, 4);
    let cd_disk = u16_at(eocd, 6);
    let entries_on_disk = u16_at(eocd, 8);
    let mut entry_count = u64::from(u16_at(eocd, 10));
    let mut cd_size = u64::from(u32_at(eocd, 12));
    let mut cd_offset = u64::from(u32_at(eocd, 16));
    let saturated = disk == 0xFFFF
        || cd_disk == 0xFFFF
        || entries_on_disk == 0xFFFF
        || entry_count == 0xFFFF
        || cd_size == 0xFFFF_FFFF
        || cd_offset == 0xFFFF_FFFF;
    if !saturated && (disk != 0 || cd_disk != 0 || u64::from(entries_on_disk) != entry_count) {
        return Err(ZipError::MultiDisk {
            detail: format!(
                "end record on disk {disk}, central directory on disk {cd_disk}, \
                 {entries_on_disk} of {entry_count} entries on this disk"
            ),
        });
    }

    // Zip64: the locator sits immediately before the end record.
    let mut cd_end_limit = eocd_abs;
    let locator_abs = eocd_abs.checked_sub(ZIP64_LOCATOR_LEN as u64);
    let locator_pos = eocd_pos.checked_sub(ZIP64_LOCATOR_LEN);
    match (locator_abs, locator_pos) {
        (Some(abs), None) => {
            // The locator (if any) is before the tail: we cannot tell without it.
            return Ok(TailRead::NeedFrom { start: abs });
        }
        (Some(_), Some(pos)) if u32_at(tail, pos) == ZIP64_LOCATOR_SIG => {
            let zip64_disk = u32_at(tail, pos + 4);
            let zip64_eocd_abs = u64_at(tail, pos + 8);
            let total_disks = u32_at(tail, pos + 16);
            if zip64_disk != 0 || total_disks > 1 {
                return Err(ZipError::MultiDisk {
                    detail: format!(
                        "zip64 end record on disk {zip64_disk}, {total_disks} disks in total"
                    ),
                });
            }
            let locator_abs = eocd_abs - ZIP64_LOCATOR_LEN as u64;
            if zip64_eocd_abs.saturating_add(ZIP64_EOCD_LEN as u64) > locator_abs {
                return Err(corrupt(format!(
                    "the zip64 end record offset {zip64_eocd_abs} overlaps its locator at \
                     {locator_abs}"
                )));
            }
            if zip64_eocd_abs < tail_start {
                return Ok(TailRead::NeedFrom {
                    start: zip64_eocd_abs,
                });
            }
            let rec = &tail[(zip64_eocd_abs - tail_start) as usize..];
            if u32_at(rec, 0) != ZIP64_EOCD_SIG {
                return Err(corrupt(format!(
                    "no zip64 end-of-central-directory record at offset {zip64_eocd_abs}"
                )));
            }
            let disk = u32_at(rec, 16);
            let cd_disk = u32_at(rec, 20);
            let entries_on_disk = u64_at(rec, 24);
            entry_count = u64_at(rec, 32);
            cd_size = u64_at(rec, 40);
            cd_offset = u64_at(rec, 48);
            if disk != 0 || cd_disk != 0 || entries_on_disk != entry_count {
                return Err(ZipError::MultiDisk {
                    detail: format!(
                        "zip64 end record on disk {disk}, central directory on disk {cd_disk}, \
                         {entries_on_disk} of {entry_count} entries on this disk"
                    ),
                });
            }
            cd_end_limit = zip64_eocd_abs;
        }
        _ => {}
    }

    let cd_end = cd_offset
        .checked_add(cd_size)
        .filter(|&end| end <= cd_end_limit)
        .ok_or_else(|| {
            corrupt(format!(
                "the central directory (offset {cd_offset}, {cd_size} bytes) runs past its end \
                 record at offset {cd_end_limit}; the file is truncated or not a zip"
            ))
        })?;
    if entry_count.saturating_mul(CENTRAL_LEN as u64) > cd_size {
        return Err(corrupt(format!(
            "{entry_count} entries cannot fit in a {cd_size}-byte central directory"
        )));
    }
    if cd_offset < tail_start {
        return Ok(TailRead::NeedFrom { start: cd_offset });
    }
    let cd = &tail[(cd_offset - tail_start) as usize..(cd_end - tail_start) as usize];
    let entries = parse_central_entries(cd, entry_count, cd_offset)?;
    Ok(TailRead::Directory(CentralDirectory {
        entries,
        start: cd_offset,
        end: cd_end,
    }))
}

fn parse_central_entries(
    cd: &[u8],
    entry_count: u64,
    cd_offset: u64,
) -> Result<Vec<CentralEntry>, ZipError> {
    let mut entries = Vec::with_capacity(entry_count as usize);
    let mut at = 0usize;
    for index in 0..entry_count {
        let cut = || {
            corrupt(format!(
                "central directory entry {index} (at offset {}) is cut off",
                cd_offset + at as u64
            ))
        };
        let header = cd.get(at..at + CENTRAL_LEN).ok_or_else(cut)?;
        if u32_at(header, 0) != CENTRAL_SIG {
            return Err(corrupt(format!(
                "no central directory header at offset {} (entry {index})",
                cd_offset + at as u64
            )));
        }
        let flags = u16_at(header, 8);
        let method = u16_at(header, 10);
        let crc32 = u32_at(header, 16);
        let mut compressed_size = u64::from(u32_at(header, 20));
        let mut uncompressed_size = u64::from(u32_at(header, 24));
        let name_len = usize::from(u16_at(header, 28));
        let extra_len = usize::from(u16_at(header, 30));
        let comment_len = usize::from(u16_at(header, 32));
        let start_disk = u16_at(header, 34);
        let mut local_header_offset = u64::from(u32_at(header, 42));
        let name_start = at + CENTRAL_LEN;
        let extra_start = name_start + name_len;
        let next = extra_start + extra_len + comment_len;
        if next > cd.len() {
            return Err(cut());
        }
        let name_bytes = &cd[name_start..extra_start];
        let extra = &cd[extra_start..extra_start + extra_len];
        let name = decode_name(name_bytes, flags);

        // Zip64 extra: only the fields saturated in the fixed header are present, in order.
        let need_usize = uncompressed_size == 0xFFFF_FFFF;
        let need_csize = compressed_size == 0xFFFF_FFFF;
        let need_offset = local_header_offset == 0xFFFF_FFFF;
        if need_usize || need_csize || need_offset {
            let zip64 = find_extra(extra, ZIP64_EXTRA_ID).ok_or_else(|| {
                corrupt(format!(
                    "entry {name:?} has 32-bit size/offset placeholders but no zip64 extra field"
                ))
            })?;
            let mut fields = zip64.chunks_exact(8).map(|c| u64_at(c, 0));
            let mut take = |what: &str| {
                fields.next().ok_or_else(|| {
                    corrupt(format!(
                        "entry {name:?}: zip64 extra field lacks the {what}"
                    ))
                })
            };
            if need_usize {
                uncompressed_size = take("uncompressed size")?;
            }
            if need_csize {
                compressed_size = take("compressed size")?;
            }
            if need_offset {
                local_header_offset = take("local header offset")?;
            }
        }
        if start_disk != 0 && start_disk != 0xFFFF {
            return Err(ZipError::MultiDisk {
                detail: format!("entry {name:?} starts on disk {start_disk}"),
            });
        }
        if local_header_offset.saturating_add(LOCAL_HEADER_LEN) > cd_offset {
            return Err(corrupt(format!(
                "entry {name:?} has its local header at offset {local_header_offset}, past the \
                 central directory at {cd_offset}"
            )));
        }
        entries.push(CentralEntry {
            name,
            method,
            flags,
            compressed_size,
            uncompressed_size,
            crc32,
            local_header_offset,
        });
        at = next;
    }
    Ok(entries)
}

/// The data of the first extra-field block with id `id`.
fn find_extra(extra: &[u8], id: u16) -> Option<&[u8]> {
    let mut at = 0;
    while at + 4 <= extra.len() {
        let block_id = u16_at(extra, at);
        let len = usize::from(u16_at(extra, at + 2));
        let data = extra.get(at + 4..at + 4 + len)?;
        if block_id == id {
            return Some(data);
        }
        at += 4 + len;
    }
    None
}

/// Names flagged UTF-8, or that are valid UTF-8 anyway, are UTF-8; the rest are CP437.
fn decode_name(bytes: &[u8], flags: u16) -> String {
    if flags & FLAG_UTF8 != 0 {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => bytes
            .iter()
            .map(|&b| {
                if b < 0x80 {
                    char::from(b)
                } else {
                    CP437_HIGH[usize::from(b - 0x80)]
                }
            })
            .collect(),
    }
}

const CP437_HIGH: [char; 128] = [
    'Ç', 'ü', 'é', 'â', 'ä', 'à', 'å', 'ç', 'ê', 'ë', 'è', 'ï', 'î', 'ì', 'Ä', 'Å', 'É', 'æ', 'Æ',
    'ô', 'ö', 'ò', 'û', 'ù', 'ÿ', 'Ö', 'Ü', '¢', '£', '¥', '₧', 'ƒ', 'á', 'í', 'ó', 'ú', 'ñ', 'Ñ',
    'ª', 'º', '¿', '⌐', '¬', '½', '¼', '¡', '«', '»', '░', '▒', '▓', '│', '┤', '╡', '╢', '╖', '╕',
    '╣', '║', '╗', '╝', '╜', '╛', '┐', '└', '┴', '┬', '├', '─', '┼', '╞', '╟', '╚', '╔', '╩', '╦',
    '╠', '═', '╬', '╧', '╨', '╤', '╥', '╙', '╘', '╒', '╓', '╫', '╪', '┘', '┌', '█', '▄', '▌', '▐',
    '▀', 'α', 'ß', 'Γ', 'π', 'Σ', 'σ', 'µ', 'τ', 'Φ', 'Θ', 'Ω', 'δ', '∞', 'φ', 'ε', '∩', '≡', '±',
    '≥', '≤', '⌠', '⌡', '÷', '≈', '°', '∙', '·', '√', 'ⁿ', '²', '■', '\u{a0}',
];

/// The `<dir>.dist-info/METADATA` entry of a wheel. There must be exactly one top-level
/// `*.dist-info` directory.
pub fn find_metadata_entry(entries: &[CentralEntry]) -> Result<&CentralEntry, ZipError> {
    let mut dirs: Vec<&str> = Vec::new();
    for entry in entries {
        if let Some((top, _)) = entry.name.split_once('/') {
            if top.ends_with(".dist-info") && !dirs.contains(&top) {
                dirs.push(top);
            }
        }
    }
    let dir = match dirs.as_slice() {
        [] => return Err(ZipError::NoDistInfo),
        [dir] => *dir,
        _ => {
            return Err(ZipError::AmbiguousDistInfo {
                dirs: dirs.iter().map(|d| d.to_string()).collect(),
            })
        }
    };
    let wanted = format!("{dir}/METADATA");
    entries
        .iter()
        .find(|e| e.name == wanted)
        .ok_or_else(|| ZipError::MissingMetadata {
            dir: dir.to_string(),
        })
}

/// A byte range `[start, end)` that certainly covers the member's local header and data: the
/// local extra field's length is only known from the local header itself, so up to 64 KiB of
/// slack is added, capped at the start of the central directory (`cd_start`).
pub fn member_span(entry: &CentralEntry, cd_start: u64) -> (u64, u64) {
    let start = entry.local_header_offset;
    let end = start
        .saturating_add(LOCAL_HEADER_LEN)
        .saturating_add(entry.name.len() as u64)
        .saturating_add(MAX_COMMENT_LEN as u64)
        .saturating_add(entry.compressed_size)
        .min(cd_start.max(start));
    (start, end)
}

/// The bytes of `tail` (the file from `tail_start` to its end) from the member's local header
/// on, when the tail already reaches back to it. Pass the result to [`extract_member`].
pub fn member_bytes_in_tail<'a>(
    entry: &CentralEntry,
    tail: &'a [u8],
    tail_start: u64,
) -> Option<&'a [u8]> {
    let offset = entry.local_header_offset.checked_sub(tail_start)?;
    tail.get(usize::try_from(offset).ok()?..)
}

fn method_name(method: u16) -> &'static str {
    match method {
        1 => "shrink",
        2..=5 => "reduce",
        6 => "implode",
        9 => "deflate64",
        10 => "PKWARE implode",
        12 => "bzip2",
        14 => "LZMA",
        18 => "IBM TERSE",
        19 => "IBM LZ77",
        93 => "zstd",
        94 => "MP3",
        95 => "xz",
        96 => "JPEG",
        97 => "WavPack",
        98 => "PPMd",
        99 => "AES encryption",
        _ => "an unknown method",
    }
}

/// Decompress one member from bytes that begin at its local file header (more bytes after the
/// member are fine). Stored and deflated members are supported; sizes and CRC-32 are checked
/// against the central directory entry (so data descriptors need no special handling).
pub fn extract_member(
    entry: &CentralEntry,
    bytes_from_local_header: &[u8],
) -> Result<Vec<u8>, ZipError> {
    let bytes = bytes_from_local_header;
    let name = &entry.name;
    let have = bytes.len() as u64;
    if have < LOCAL_HEADER_LEN {
        return Err(ZipError::TooShort {
            name: name.clone(),
            needed: LOCAL_HEADER_LEN + entry.name.len() as u64 + entry.compressed_size,
            have,
        });
    }
    if u32_at(bytes, 0) != LOCAL_SIG {
        return Err(corrupt(format!(
            "no local file header for {name:?} at offset {}",
            entry.local_header_offset
        )));
    }
    if (entry.flags | u16_at(bytes, 6)) & FLAG_ENCRYPTED != 0 {
        return Err(ZipError::Encrypted { name: name.clone() });
    }
    let data_start = LOCAL_HEADER_LEN + u64::from(u16_at(bytes, 26)) + u64::from(u16_at(bytes, 28));
    let needed = data_start.saturating_add(entry.compressed_size);
    if have < needed {
        return Err(ZipError::TooShort {
            name: name.clone(),
            needed,
            have,
        });
    }
    let data = &bytes[data_start as usize..needed as usize];
    let out = match entry.method {
        0 => {
            if entry.compressed_size != entry.uncompressed_size {
                return Err(ZipError::SizeMismatch {
                    name: name.clone(),
                    expected: entry.uncompressed_size,
                    actual: entry.compressed_size,
                });
            }
            data.to_vec()
        }
        8 => {
            // Read at most one byte more than promised, so a lying size cannot blow up memory.
            let capacity = entry.uncompressed_size.min(64 << 20) as usize;
            let mut out = Vec::with_capacity(capacity);
            flate2::read::DeflateDecoder::new(data)
                .take(entry.uncompressed_size.saturating_add(1))
                .read_to_end(&mut out)
                .map_err(|e| ZipError::Deflate {
                    name: name.clone(),
                    message: e.to_string(),
                })?;
            out
        }
        method => {
            return Err(ZipError::UnsupportedMethod {
                name: name.clone(),
                method,
                method_name: method_name(method),
            })
        }
    };
    if out.len() as u64 != entry.uncompressed_size {
        return Err(ZipError::SizeMismatch {
            name: name.clone(),
            expected: entry.uncompressed_size,
            actual: out.len() as u64,
        });
    }
    let mut crc = flate2::Crc::new();
    crc.update(&out);
    if crc.sum() != entry.crc32 {
        return Err(ZipError::CrcMismatch {
            name: name.clone(),
            expected: entry.crc32,
            actual: crc.sum(),
        });
    }
    Ok(out)
}

/// The central directory of a zip held entirely in memory.
pub fn read_whole_file_directory(bytes: &[u8]) -> Result<CentralDirectory, ZipError> {
    match read_central_directory(bytes, 0, bytes.len() as u64)? {
        TailRead::Directory(directory) => Ok(directory),
        // Unreachable with tail_start = 0, but never trust that blindly.
        TailRead::NeedFrom { start } => Err(corrupt(format!(
            "the archive points before its own start (offset {start})"
        ))),
    }
}

/// Extract the first member whose name satisfies `predicate` from a zip held in memory;
/// `Ok(None)` when no member matches.
pub fn read_member_from_whole_file(
    bytes: &[u8],
    mut predicate: impl FnMut(&str) -> bool,
) -> Result<Option<(CentralEntry, Vec<u8>)>, ZipError> {
    let directory = read_whole_file_directory(bytes)?;
    let Some(entry) = directory.entries.into_iter().find(|e| predicate(&e.name)) else {
        return Ok(None);
    };
    let from = member_bytes_in_tail(&entry, bytes, 0).ok_or_else(|| {
        corrupt(format!(
            "entry {:?} points past the end of the file",
            entry.name
        ))
    })?;
    let data = extract_member(&entry, from)?;
    Ok(Some((entry, data)))
}

/// The `*.dist-info/METADATA` member of a wheel held in memory: its name and bytes.
pub fn read_metadata_from_whole_file(bytes: &[u8]) -> Result<(String, Vec<u8>), ZipError> {
    let directory = read_whole_file_directory(bytes)?;
    let entry = find_metadata_entry(&directory.entries)?;
    let from = member_bytes_in_tail(entry, bytes, 0).ok_or_else(|| {
        corrupt(format!(
            "entry {:?} points past the end of the file",
            entry.name
        ))
    })?;
    let data = extract_member(entry, from)?;
    Ok((entry.name.clone(), data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str) -> CentralEntry {
        CentralEntry {
            name: name.to_string(),
            method: 0,
            flags: 0,
            compressed_size: 0,
            uncompressed_size: 0,
            crc32: 0,
            local_header_offset: 0,
        }
    }

    #[test]
    fn metadata_entry_needs_exactly_one_dist_info() {
        let ok = [
            entry("demo/__init__.py"),
            entry("demo-1.0.dist-info/RECORD"),
            entry("demo-1.0.dist-info/METADATA"),
            entry("demo/sub.dist-info/METADATA"),
        ];
        assert_eq!(
            find_metadata_entry(&ok).unwrap().name,
            "demo-1.0.dist-info/METADATA"
        );
        let two = [
            entry("a-1.dist-info/METADATA"),
            entry("b-1.dist-info/METADATA"),
        ];
        assert!(matches!(
            find_metadata_entry(&two),
            Err(ZipError::AmbiguousDistInfo { dirs }) if dirs.len() == 2
        ));
        assert!(matches!(
            find_metadata_entry(&[entry("x.py")]),
            Err(ZipError::NoDistInfo)
        ));
        assert!(matches!(
            find_metadata_entry(&[entry("a-1.dist-info/RECORD")]),
            Err(ZipError::MissingMetadata { .. })
        ));
    }

    #[test]
    fn cp437_names_decode() {
        assert_eq!(decode_name(b"caf\x82.txt", 0), "café.txt");
        assert_eq!(decode_name("café".as_bytes(), FLAG_UTF8), "café");
    }

    #[test]
    fn span_is_capped_at_central_directory() {
        let mut e = entry("a-1.dist-info/METADATA");
        e.local_header_offset = 1000;
        e.compressed_size = 500;
        assert_eq!(member_span(&e, 5000), (1000, 5000));
        assert_eq!(
            member_span(&e, 1 << 40),
            (1000, 1000 + 30 + 22 + 65535 + 500)
        );
    }

    #[test]
    fn short_inputs_are_not_zips() {
        assert!(matches!(
            read_central_directory(b"PK", 0, 2),
            Err(ZipError::NotAZip { .. })
        ));
        assert!(matches!(
            read_central_directory(b"abc", 0, 10),
            Err(ZipError::TailMismatch { .. })
        ));
    }
}

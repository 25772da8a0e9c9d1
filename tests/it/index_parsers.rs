//! Tests for the pure index parsers: simple HTML / JSON / find-links pages, core METADATA,
//! and reading a wheel's METADATA from the tail of a zip (as HTTP Range requests would).
//!
//! Zips are written by Python's own `zipfile` module (the reference implementation wheels
//! are made with), plus one handcrafted zip64 archive cross-checked by `zipfile`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use comfypak::index::core_metadata::{parse_headers, CoreMetadata, MetadataError};
use comfypak::index::page::{
    normalize_name, parse_find_links_html, parse_project_list_html, parse_project_list_json,
    parse_simple_html, parse_simple_json, parse_simple_json_filtered, parse_simple_page,
    CoreMetadataRef, PageError, Yanked, SIMPLE_ACCEPT, SIMPLE_JSON_CONTENT_TYPE,
};
use comfypak::index::remote_zip::{
    extract_member, find_metadata_entry, member_bytes_in_tail, member_span, read_central_directory,
    read_member_from_whole_file, read_metadata_from_whole_file, read_whole_file_directory,
    CentralDirectory, TailRead, ZipError, DEFAULT_TAIL_LEN,
};
use serde_json::json;
use url::Url;

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

const WRITE_ZIP_PY: &str = r#"
import sys, json, zipfile, random
spec = json.load(sys.stdin)
out = sys.argv[1]
methods = {"stored": zipfile.ZIP_STORED, "deflated": zipfile.ZIP_DEFLATED,
           "bzip2": zipfile.ZIP_BZIP2, "lzma": zipfile.ZIP_LZMA}
target = sys.stdout.buffer if out == "-" else open(out, "wb")
with zipfile.ZipFile(target, "w") as zf:
    for m in spec["members"]:
        if "many" in m:
            for i in range(m["many"]):
                zf.writestr(zipfile.ZipInfo(m["prefix"] + str(i), date_time=(2020, 1, 1, 0, 0, 0)), b"")
            continue
        if "text" in m:
            data = m["text"].encode("utf-8")
        else:
            data = random.Random(m.get("seed", 0)).randbytes(m["random"])
        zi = zipfile.ZipInfo(m["name"], date_time=(2020, 1, 1, 0, 0, 0))
        zi.compress_type = methods[m.get("method", "deflated")]
        if m.get("force_zip64"):
            with zf.open(zi, "w", force_zip64=True) as f:
                f.write(data)
        else:
            zf.writestr(zi, data)
    if "comment" in spec:
        zf.comment = spec["comment"].encode("utf-8")
if out != "-":
    target.close()
"#;

/// Write a zip with Python's `zipfile` from a JSON spec and return its bytes. With
/// `to_pipe`, the archive is written to an unseekable pipe, which makes `zipfile` use data
/// descriptors (flag bit 3, sizes only after the data), as streaming wheel builders do.
fn python_zip(spec: serde_json::Value, to_pipe: bool) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.zip");
    let out_arg = if to_pipe {
        "-".to_string()
    } else {
        path.display().to_string()
    };
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(WRITE_ZIP_PY)
        .arg(&out_arg)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 must be installed to build test zips");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(spec.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "python zip writer failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    if to_pipe {
        output.stdout
    } else {
        std::fs::read(&path).unwrap()
    }
}

/// Ask Python's `zipfile` to read `member` from the archive at `path` (cross-check).
fn python_read_member(path: &Path, member: &str) -> Vec<u8> {
    let output = Command::new("python3")
        .arg("-c")
        .arg(
            "import sys, zipfile\nzf = zipfile.ZipFile(sys.argv[1])\nassert zf.testzip() is None\n\
             sys.stdout.buffer.write(zf.read(sys.argv[2]))",
        )
        .arg(path)
        .arg(member)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "python could not read {member}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

const DEMO_METADATA: &str = "Metadata-Version: 2.4\nName: demo\nVersion: 1.0\n\
                             Requires-Python: >=3.10\nRequires-Dist: numpy>=2\n";

fn wheel_spec(metadata_method: &str, payload_bytes: usize) -> serde_json::Value {
    json!({"members": [
        {"name": "demo/__init__.py", "text": "print('hi')\n"},
        {"name": "demo/blob.bin", "random": payload_bytes, "method": "stored", "seed": 7},
        {"name": "demo-1.0.dist-info/METADATA", "text": DEMO_METADATA, "method": metadata_method},
        {"name": "demo-1.0.dist-info/WHEEL", "text": "Wheel-Version: 1.0\nTag: py3-none-any\n"},
        {"name": "demo-1.0.dist-info/RECORD", "text": ""},
    ]})
}

/// What the HTTP layer does: one suffix request of `first_tail` bytes, then a request from
/// each `NeedFrom` until the directory is found. Returns the directory, the number of
/// requests made, and the start of the last tail fetched.
fn remote_directory(file: &[u8], first_tail: u64) -> (CentralDirectory, usize, u64) {
    let total = file.len() as u64;
    let mut start = total.saturating_sub(first_tail);
    for round in 1..=5 {
        match read_central_directory(&file[start as usize..], start, total).unwrap() {
            TailRead::Directory(directory) => return (directory, round, start),
            TailRead::NeedFrom { start: from } => {
                assert!(
                    from < start,
                    "NeedFrom must move backwards ({from} >= {start})"
                );
                start = from;
            }
        }
    }
    panic!("central directory not found after 5 range requests");
}

/// Fetch METADATA of a "remote" wheel like the HTTP layer would; returns (bytes, requests).
fn remote_metadata(file: &[u8], first_tail: u64) -> (Vec<u8>, usize) {
    let (directory, mut requests, tail_start) = remote_directory(file, first_tail);
    let entry = find_metadata_entry(&directory.entries).unwrap();
    let tail = &file[tail_start as usize..];
    let data = match member_bytes_in_tail(entry, tail, tail_start) {
        Some(bytes) => extract_member(entry, bytes).unwrap(),
        None => {
            let (start, end) = member_span(entry, directory.start);
            assert!(end <= directory.start && start < end);
            requests += 1;
            extract_member(entry, &file[start as usize..end as usize]).unwrap()
        }
    };
    (data, requests)
}

// ---------------------------------------------------------------------------------------------
// remote_zip
// ---------------------------------------------------------------------------------------------

#[test]
fn zip_stored_metadata_from_whole_file_and_tail() {
    let wheel = python_zip(wheel_spec("stored", 1000), false);
    let (name, data) = read_metadata_from_whole_file(&wheel).unwrap();
    assert_eq!(name, "demo-1.0.dist-info/METADATA");
    assert_eq!(data, DEMO_METADATA.as_bytes());
    let directory = read_whole_file_directory(&wheel).unwrap();
    let entry = find_metadata_entry(&directory.entries).unwrap();
    assert_eq!(entry.method, 0);
    // Small file: one suffix request returns everything.
    let (remote, requests) = remote_metadata(&wheel, DEFAULT_TAIL_LEN);
    assert_eq!(remote, DEMO_METADATA.as_bytes());
    assert_eq!(requests, 1);
}

#[test]
fn zip_deflated_metadata_behind_a_large_payload_needs_a_span_request() {
    // 300 KB of incompressible data before dist-info: the 64 KiB tail holds the central
    // directory and (since dist-info comes last) the METADATA member too.
    let wheel = python_zip(wheel_spec("deflated", 300_000), false);
    let directory = read_whole_file_directory(&wheel).unwrap();
    let entry = find_metadata_entry(&directory.entries).unwrap();
    assert_eq!(entry.method, 8);
    assert!(entry.compressed_size < entry.uncompressed_size + 16);
    let (data, requests) = remote_metadata(&wheel, DEFAULT_TAIL_LEN);
    assert_eq!(data, DEMO_METADATA.as_bytes());
    assert_eq!(requests, 1);

    // A tail that only covers the central directory forces the member_span request.
    let tail_len = wheel.len() as u64 - directory.start;
    let (data, requests) = remote_metadata(&wheel, tail_len);
    assert_eq!(data, DEMO_METADATA.as_bytes());
    assert_eq!(requests, 2);
}

#[test]
fn zip_metadata_first_then_payload_uses_capped_span() {
    // METADATA early in the archive, a big blob after it: the span is capped and starts at
    // the local header, and the bytes after the member do not disturb extraction.
    let spec = json!({"members": [
        {"name": "demo-1.0.dist-info/METADATA", "text": DEMO_METADATA},
        {"name": "demo/blob.bin", "random": 200_000, "method": "stored"},
    ]});
    let wheel = python_zip(spec, false);
    let (directory, _, tail_start) = remote_directory(&wheel, DEFAULT_TAIL_LEN);
    assert!(tail_start > 0);
    let entry = find_metadata_entry(&directory.entries).unwrap();
    assert!(member_bytes_in_tail(entry, &wheel[tail_start as usize..], tail_start).is_none());
    let (start, end) = member_span(entry, directory.start);
    assert_eq!(start, 0);
    assert!(
        end < directory.start,
        "span must not run to the directory here"
    );
    assert!(end - start >= 30 + entry.name.len() as u64 + entry.compressed_size);
    let data = extract_member(entry, &wheel[start as usize..end as usize]).unwrap();
    assert_eq!(data, DEMO_METADATA.as_bytes());
}

#[test]
fn zip_tail_too_short_for_central_directory_asks_for_more() {
    // 3000 entries with long names: the central directory is far larger than a 4 KiB tail.
    let spec = json!({"members": [
        {"many": 3000, "prefix": "demo/a_rather_long_module_path/with_some_depth/file_number_"},
        {"name": "demo-1.0.dist-info/METADATA", "text": DEMO_METADATA},
    ]});
    let wheel = python_zip(spec, false);
    let total = wheel.len() as u64;
    let tail_start = total - 4096;
    let need = read_central_directory(&wheel[tail_start as usize..], tail_start, total).unwrap();
    let whole = read_whole_file_directory(&wheel).unwrap();
    assert_eq!(need, TailRead::NeedFrom { start: whole.start });
    let (directory, requests, _) = remote_directory(&wheel, 4096);
    assert_eq!(requests, 2);
    assert_eq!(directory, whole);
    assert_eq!(directory.entries.len(), 3001);
    let (data, _) = remote_metadata(&wheel, 4096);
    assert_eq!(data, DEMO_METADATA.as_bytes());
}

#[test]
fn zip_with_long_comment_finds_end_record_after_more_bytes() {
    let mut spec = wheel_spec("deflated", 10);
    spec["comment"] = json!("c".repeat(60_000));
    let wheel = python_zip(spec, false);
    let total = wheel.len() as u64;
    // A 1 KiB tail sees only the comment: ask for the full end-record search window.
    let start = total - 1024;
    match read_central_directory(&wheel[start as usize..], start, total).unwrap() {
        TailRead::NeedFrom { start } => assert_eq!(start, total.saturating_sub(22 + 65535)),
        other => panic!("expected NeedFrom, got {other:?}"),
    }
    let (data, requests) = remote_metadata(&wheel, 1024);
    assert_eq!(data, DEMO_METADATA.as_bytes());
    assert!(requests >= 2);
}

#[test]
fn zip_data_descriptors_from_streaming_writer() {
    let wheel = python_zip(wheel_spec("deflated", 5000), true);
    let directory = read_whole_file_directory(&wheel).unwrap();
    let entry = find_metadata_entry(&directory.entries).unwrap();
    assert_ne!(entry.flags & 0x0008, 0, "expected the data-descriptor flag");
    // The local header's sizes are zero; extraction must rely on the central directory.
    let local = &wheel[entry.local_header_offset as usize..];
    assert_eq!(u32::from_le_bytes(local[18..22].try_into().unwrap()), 0);
    let (data, _) = remote_metadata(&wheel, DEFAULT_TAIL_LEN);
    assert_eq!(data, DEMO_METADATA.as_bytes());
}

#[test]
fn zip_local_zip64_extra_from_force_zip64() {
    let spec = json!({"members": [
        {"name": "demo-1.0.dist-info/METADATA", "text": DEMO_METADATA, "force_zip64": true},
    ]});
    let wheel = python_zip(spec, false);
    let (_, data) = read_metadata_from_whole_file(&wheel).unwrap();
    assert_eq!(data, DEMO_METADATA.as_bytes());
}

#[test]
fn zip64_end_record_with_more_than_65535_entries() {
    let spec = json!({"members": [
        {"many": 70_000, "prefix": "demo/f"},
        {"name": "demo-1.0.dist-info/METADATA", "text": DEMO_METADATA},
    ]});
    let wheel = python_zip(spec, false);
    // The classic end record is saturated; the zip64 one holds the real count.
    let eocd = &wheel[wheel.len() - 22..];
    assert_eq!(u16::from_le_bytes([eocd[10], eocd[11]]), 0xFFFF);
    let directory = read_whole_file_directory(&wheel).unwrap();
    assert_eq!(directory.entries.len(), 70_001);
    let (data, requests) = remote_metadata(&wheel, DEFAULT_TAIL_LEN);
    assert_eq!(data, DEMO_METADATA.as_bytes());
    assert_eq!(
        requests, 3,
        "tail, the whole central directory, then the member"
    );
    // A caller that reaches a little further back than NeedFrom asks gets the member too.
    let (directory, _, _) = remote_directory(&wheel, DEFAULT_TAIL_LEN);
    let from = directory.start - 4096;
    match read_central_directory(&wheel[from as usize..], from, wheel.len() as u64).unwrap() {
        TailRead::Directory(again) => {
            assert_eq!(again, directory);
            let entry = find_metadata_entry(&again.entries).unwrap();
            let bytes = member_bytes_in_tail(entry, &wheel[from as usize..], from).unwrap();
            assert_eq!(
                extract_member(entry, bytes).unwrap(),
                DEMO_METADATA.as_bytes()
            );
        }
        other => panic!("expected the directory, got {other:?}"),
    }
}

/// A minimal zip64 writer: every central entry uses 0xFFFFFFFF placeholders for sizes and
/// offset with a zip64 extra field, and the archive ends with zip64 end record + locator.
fn handcrafted_zip64(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in members {
        let mut crc = flate2::Crc::new();
        crc.update(data);
        let offset = out.len() as u64;
        // Local header with a zip64 extra (sizes).
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&45u16.to_le_bytes());
        out.extend_from_slice(&0x0800u16.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // stored
        out.extend_from_slice(&[0, 0, 0x21, 0x50]); // time, date
        out.extend_from_slice(&crc.sum().to_le_bytes());
        out.extend_from_slice(&u32::MAX.to_le_bytes());
        out.extend_from_slice(&u32::MAX.to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&20u16.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&16u16.to_le_bytes());
        out.extend_from_slice(&(data.len() as u64).to_le_bytes());
        out.extend_from_slice(&(data.len() as u64).to_le_bytes());
        out.extend_from_slice(data);
        // Central header: all three fields in the zip64 extra.
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&45u16.to_le_bytes());
        central.extend_from_slice(&45u16.to_le_bytes());
        central.extend_from_slice(&0x0800u16.to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes());
        central.extend_from_slice(&[0, 0, 0x21, 0x50]);
        central.extend_from_slice(&crc.sum().to_le_bytes());
        central.extend_from_slice(&u32::MAX.to_le_bytes());
        central.extend_from_slice(&u32::MAX.to_le_bytes());
        central.extend_from_slice(&(name.len() as u16).to_le_bytes());
        central.extend_from_slice(&28u16.to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes()); // comment
        central.extend_from_slice(&0u16.to_le_bytes()); // disk
        central.extend_from_slice(&0u16.to_le_bytes()); // internal attrs
        central.extend_from_slice(&0u32.to_le_bytes()); // external attrs
        central.extend_from_slice(&u32::MAX.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
        central.extend_from_slice(&1u16.to_le_bytes());
        central.extend_from_slice(&24u16.to_le_bytes());
        central.extend_from_slice(&(data.len() as u64).to_le_bytes());
        central.extend_from_slice(&(data.len() as u64).to_le_bytes());
        central.extend_from_slice(&offset.to_le_bytes());
    }
    let cd_offset = out.len() as u64;
    out.extend_from_slice(&central);
    let zip64_eocd_offset = out.len() as u64;
    let count = members.len() as u64;
    out.extend_from_slice(&0x0606_4b50u32.to_le_bytes());
    out.extend_from_slice(&44u64.to_le_bytes());
    out.extend_from_slice(&45u16.to_le_bytes());
    out.extend_from_slice(&45u16.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&(central.len() as u64).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0x0706_4b50u32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&zip64_eocd_offset.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0xFF; 16]);
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

#[test]
fn zip64_central_extra_fields_handcrafted_and_cross_checked() {
    let members: [(&str, &[u8]); 2] = [
        ("démo/ñ.py", b"x = 1\n"),
        ("demo-1.0.dist-info/METADATA", DEMO_METADATA.as_bytes()),
    ];
    let zip = handcrafted_zip64(&members);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zip64.whl");
    std::fs::write(&path, &zip).unwrap();
    assert_eq!(
        python_read_member(&path, "demo-1.0.dist-info/METADATA"),
        DEMO_METADATA.as_bytes(),
        "the handcrafted archive must be valid for Python's zipfile"
    );

    let directory = read_whole_file_directory(&zip).unwrap();
    assert_eq!(directory.entries.len(), 2);
    assert_eq!(directory.entries[0].name, "démo/ñ.py");
    assert_eq!(directory.entries[0].uncompressed_size, 6);
    assert_eq!(directory.entries[1].local_header_offset, 30 + 11 + 20 + 6);
    let (_, data) = read_metadata_from_whole_file(&zip).unwrap();
    assert_eq!(data, DEMO_METADATA.as_bytes());
    // A tail that starts inside the zip64 end record: ask from the record's start.
    let total = zip.len() as u64;
    let start = total - 22 - 20 - 10;
    match read_central_directory(&zip[start as usize..], start, total).unwrap() {
        TailRead::NeedFrom { start } => assert_eq!(start, total - 22 - 20 - 56),
        other => panic!("expected NeedFrom, got {other:?}"),
    }
    // A tail that starts inside the locator: ask for the locator.
    let start = total - 22 - 5;
    match read_central_directory(&zip[start as usize..], start, total).unwrap() {
        TailRead::NeedFrom { start } => assert_eq!(start, total - 22 - 20),
        other => panic!("expected NeedFrom, got {other:?}"),
    }
    let (remote, _) = remote_metadata(&zip, 30);
    assert_eq!(remote, DEMO_METADATA.as_bytes());
}

#[test]
fn zip_utf8_names_and_predicate_reader() {
    let spec = json!({"members": [
        {"name": "démo/ünïcode.py", "text": "# é\n"},
        {"name": "demo-1.0.dist-info/WHEEL", "text": "Wheel-Version: 1.0\n"},
        {"name": "demo-1.0.dist-info/METADATA", "text": DEMO_METADATA},
    ]});
    let wheel = python_zip(spec, false);
    let directory = read_whole_file_directory(&wheel).unwrap();
    assert_eq!(directory.entries[0].name, "démo/ünïcode.py");
    let (entry, data) = read_member_from_whole_file(&wheel, |n| n.ends_with(".dist-info/WHEEL"))
        .unwrap()
        .unwrap();
    assert_eq!(entry.name, "demo-1.0.dist-info/WHEEL");
    assert_eq!(data, b"Wheel-Version: 1.0\n");
    assert!(read_member_from_whole_file(&wheel, |n| n == "missing")
        .unwrap()
        .is_none());
}

#[test]
fn zip_truncated_file_is_refused() {
    let wheel = python_zip(wheel_spec("deflated", 2000), false);
    // Cut inside the central directory: no end record is left.
    let cut = &wheel[..wheel.len() - 60];
    let err = read_whole_file_directory(cut).unwrap_err();
    assert!(matches!(err, ZipError::NotAZip { .. }), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");
    // A file that lost its first half but kept its end: the directory points before it.
    let half = wheel.len() / 2;
    let tail_only = &wheel[half..];
    let err = read_whole_file_directory(tail_only).unwrap_err();
    assert!(matches!(err, ZipError::Corrupt { .. }), "{err}");
    // A tail that does not end at the file's length is a caller bug, named as such.
    let err = read_central_directory(&wheel[10..20], 10, wheel.len() as u64).unwrap_err();
    assert!(matches!(err, ZipError::TailMismatch { .. }), "{err}");
}

#[test]
fn zip_member_bytes_too_short_say_how_many_are_needed() {
    let wheel = python_zip(wheel_spec("stored", 10), false);
    let directory = read_whole_file_directory(&wheel).unwrap();
    let entry = find_metadata_entry(&directory.entries).unwrap();
    let from = &wheel[entry.local_header_offset as usize..];
    let needed = 30 + entry.name.len() as u64 + entry.compressed_size;
    let err = extract_member(entry, &from[..needed as usize - 1]).unwrap_err();
    match &err {
        ZipError::TooShort {
            needed: n, have, ..
        } => {
            assert_eq!(*n, needed);
            assert_eq!(*have, needed - 1);
        }
        other => panic!("expected TooShort, got {other}"),
    }
    assert!(err.to_string().contains(&needed.to_string()));
    assert_eq!(
        extract_member(entry, &from[..needed as usize]).unwrap(),
        DEMO_METADATA.as_bytes()
    );
    // Bytes that do not start at a local header.
    assert!(matches!(
        extract_member(entry, &from[1..]),
        Err(ZipError::Corrupt { .. })
    ));
}

#[test]
fn not_a_zip_is_refused() {
    let html = b"<html><body>404 Not Found</body></html>".repeat(100);
    let err = read_whole_file_directory(&html).unwrap_err();
    assert!(matches!(err, ZipError::NotAZip { .. }), "{err}");
    assert!(matches!(
        read_whole_file_directory(b""),
        Err(ZipError::NotAZip { .. })
    ));
}

#[test]
fn zip_crc_mismatch_is_detected() {
    let mut wheel = python_zip(wheel_spec("stored", 10), false);
    let directory = read_whole_file_directory(&wheel).unwrap();
    let entry = find_metadata_entry(&directory.entries).unwrap().clone();
    let data_at = entry.local_header_offset as usize + 30 + entry.name.len();
    assert_eq!(&wheel[data_at..data_at + 9], b"Metadata-");
    wheel[data_at] = b'm';
    let err = read_metadata_from_whole_file(&wheel).unwrap_err();
    assert!(matches!(err, ZipError::CrcMismatch { .. }), "{err}");
    assert!(err.to_string().contains("METADATA"));
}

#[test]
fn zip_unsupported_compression_is_named() {
    let wheel = python_zip(wheel_spec("bzip2", 10), false);
    let err = read_metadata_from_whole_file(&wheel).unwrap_err();
    assert!(
        matches!(err, ZipError::UnsupportedMethod { method: 12, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("bzip2"), "{err}");
    let wheel = python_zip(wheel_spec("lzma", 10), false);
    let err = read_metadata_from_whole_file(&wheel).unwrap_err();
    assert!(err.to_string().contains("LZMA"), "{err}");
}

#[test]
fn zip_multi_disk_is_refused() {
    let mut wheel = python_zip(wheel_spec("stored", 10), false);
    let eocd = wheel.len() - 22;
    wheel[eocd + 4] = 1; // number of this disk
    let err = read_whole_file_directory(&wheel).unwrap_err();
    assert!(matches!(err, ZipError::MultiDisk { .. }), "{err}");
}

// ---------------------------------------------------------------------------------------------
// core_metadata
// ---------------------------------------------------------------------------------------------

fn reference_dists() -> Vec<(String, String)> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/torch-cu130-env.json");
    let path = if path.exists() {
        path
    } else {
        Path::new("/work/shared/reference/torch-cu130-env.json").to_path_buf()
    };
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    value["dists"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["dir"].as_str().unwrap().to_string(),
                d["METADATA"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn metadata_of_the_whole_torch_cu130_closure_parses() {
    let dists = reference_dists();
    assert!(dists.len() >= 30);
    for (dir, text) in &dists {
        let meta = CoreMetadata::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{dir}: {e}"));
        let stem = dir.strip_suffix(".dist-info").unwrap();
        let (dir_name, dir_version) = stem.split_once('-').unwrap();
        assert_eq!(
            normalize_name(&meta.name),
            normalize_name(dir_name),
            "{dir}"
        );
        assert_eq!(meta.version.to_string(), dir_version, "{dir}");
        let lines = |prefix: &str| text.lines().filter(|l| l.starts_with(prefix)).count();
        assert_eq!(meta.requires_dist.len(), lines("Requires-Dist:"), "{dir}");
        assert_eq!(meta.provides_extra.len(), lines("Provides-Extra:"), "{dir}");
        assert!(!meta.metadata_version.is_empty());
    }
}

fn torch_metadata() -> String {
    reference_dists()
        .into_iter()
        .find(|(dir, _)| dir == "torch-2.11.0.dist-info")
        .expect("torch is in the reference closure")
        .1
}

#[test]
fn torch_metadata_requirements_markers_and_extras() {
    // The wheel's file name carries +cu130; its METADATA is what the index serves for it.
    let text = torch_metadata().replace("Version: 2.11.0\n", "Version: 2.11.0+cu130\n");
    let meta = CoreMetadata::parse(text.as_bytes()).unwrap();
    assert_eq!(meta.name, "torch");
    assert_eq!(meta.version.to_string(), "2.11.0+cu130");
    assert_eq!(meta.version.local().len(), 1);
    assert_eq!(meta.metadata_version, "2.4");
    assert_eq!(meta.requires_python.as_ref().unwrap().to_string(), ">=3.10");
    assert_eq!(meta.provides_extra, vec!["optree", "opt-einsum", "pyyaml"]);

    let by_name = |name: &str| {
        meta.requires_dist
            .iter()
            .find(|r| r.name.as_ref() == name)
            .unwrap_or_else(|| panic!("no requirement on {name}"))
    };
    let toolkit = by_name("cuda-toolkit");
    let extras: Vec<String> = toolkit.extras.iter().map(|e| e.to_string()).collect();
    assert!(extras.contains(&"cublas".to_string()) && extras.contains(&"nvjitlink".to_string()));
    assert_eq!(
        toolkit.marker.try_to_string().unwrap(),
        "platform_system == 'Linux'"
    );
    let triton = by_name("triton");
    assert!(triton.version_or_url.is_some());
    assert!(triton.to_string().starts_with("triton==3.6.0"));
    let optree = by_name("optree");
    assert_eq!(optree.marker.try_to_string().unwrap(), "extra == 'optree'");
    assert!(by_name("filelock").marker.is_true());
    assert_eq!(meta.requires_dist.len(), 17);
}

#[test]
fn metadata_folded_headers_crlf_and_body() {
    let text = "Metadata-Version: 2.1\r\n\
                name: Folded\r\n\
                VERSION: 3.0.post1\r\n\
                Summary: a summary\r\n\
                \x20 that continues\r\n\
                Requires-Dist: requests[socks]>=2.31;\r\n\
                \x20 python_version >= \"3.8\"\r\n\
                Provides-Extra: Dev_Tools\r\n\
                Provides-Extra: dev.tools\r\n\
                \r\n\
                Requires-Dist: in-the-body-not-a-header\r\n";
    let meta = CoreMetadata::parse(text.as_bytes()).unwrap();
    assert_eq!(meta.name, "Folded");
    assert_eq!(meta.version.to_string(), "3.0.post1");
    assert_eq!(meta.requires_dist.len(), 1);
    let requests = &meta.requires_dist[0];
    assert_eq!(requests.name.as_ref(), "requests");
    assert_eq!(
        requests.marker.try_to_string().unwrap(),
        "python_full_version >= '3.8'"
    );
    assert_eq!(meta.provides_extra, vec!["dev-tools"]);
    let headers = parse_headers(text.as_bytes());
    let summary = headers.iter().find(|h| h.name == "Summary").unwrap();
    assert_eq!(summary.value, "a summary that continues");
}

#[test]
fn metadata_with_non_utf8_bytes_is_read_lossily() {
    let mut bytes =
        b"Metadata-Version: 1.2\nName: legacy\nAuthor: Fran\xe7ois\nVersion: 0.9\n".to_vec();
    bytes.extend_from_slice(b"\nDescription with \xff\xfe bytes\n");
    let meta = CoreMetadata::parse(&bytes).unwrap();
    assert_eq!(meta.name, "legacy");
    assert_eq!(meta.version.to_string(), "0.9");
    assert!(meta.requires_python.is_none());
}

#[test]
fn metadata_missing_name_or_version_is_named() {
    let err = CoreMetadata::parse(b"Metadata-Version: 2.1\nVersion: 1.0\n").unwrap_err();
    assert!(matches!(err, MetadataError::MissingField { field: "Name" }));
    assert!(err.to_string().contains("`Name`"), "{err}");
    let err = CoreMetadata::parse(b"Metadata-Version: 2.1\nName: x\n").unwrap_err();
    assert!(matches!(
        err,
        MetadataError::MissingField { field: "Version" }
    ));
    // A header after the blank line is description, not a header.
    let err = CoreMetadata::parse(b"Name: x\n\nVersion: 1.0\n").unwrap_err();
    assert!(matches!(
        err,
        MetadataError::MissingField { field: "Version" }
    ));
}

#[test]
fn metadata_invalid_fields_name_the_line() {
    let err = CoreMetadata::parse(
        b"Name: x\nVersion: 1.0\nRequires-Dist: good>=1\nRequires-Dist: bad name ==;;\n",
    )
    .unwrap_err();
    assert!(matches!(
        err,
        MetadataError::InvalidRequiresDist { line: 4, .. }
    ));
    let message = err.to_string();
    assert!(message.contains("bad name ==;;"), "{message}");
    assert!(message.contains("line 4"), "{message}");

    let err = CoreMetadata::parse(b"Name: x\nVersion: not.a.version!\n").unwrap_err();
    assert!(matches!(err, MetadataError::InvalidVersion { .. }), "{err}");
    let err = CoreMetadata::parse(b"Name: x\nVersion: 1\nRequires-Python: >>3\n").unwrap_err();
    assert!(
        matches!(err, MetadataError::InvalidRequiresPython { line: 3, .. }),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// page: simple HTML
// ---------------------------------------------------------------------------------------------

fn url(s: &str) -> Url {
    Url::parse(s).unwrap()
}

const SHA_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const SHA_B_UPPER: &str = "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";
const SHA_C: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[test]
fn simple_html_resolves_relative_and_absolute_links_with_attributes() {
    let page_url = url("https://index.example/simple/demo/");
    let body = format!(
        r#"<!DOCTYPE html>
<html>
  <head><meta name="pypi:repository-version" content="1.1"><title>Links for demo</title></head>
  <body>
    <h1>Links for demo</h1>
    <!-- <a href="commented-out-1.0.tar.gz">no</a> -->
    <a href="../../packages/ab/cd/demo-1.0-py3-none-any.whl#sha256={SHA_A}" data-requires-python="&gt;=3.9">demo-1.0-py3-none-any.whl</a><br/>
    <A HREF='https://files.example/demo-1.1.tar.gz#SHA256={SHA_B_UPPER}' DATA-YANKED="broken build &amp; more">demo-1.1.tar.gz</A><br>
    <a href=/whl/cu130/torch-2.11.0%2Bcu130-cp314-cp314-manylinux_2_28_x86_64.whl#sha256={SHA_C} data-dist-info-metadata="sha256={SHA_A}" data-core-metadata="sha256={SHA_C}">torch</a>
    <a href="demo-1.2-py3-none-any.whl" data-yanked="" data-core-metadata="true" data-requires-python="&lt;4,&gt;=3.10">demo-1.2</a>
    <a href="demo-1.3-py3-none-any.whl" data-yanked data-dist-info-metadata="true">demo-1.3</a>
    <a href="demo-1.4-py3-none-any.whl#md5=0123456789abcdef0123456789abcdef" data-core-metadata="false">demo-1.4</a>
    <a name="no-href">anchor without href</a>
  </body>
</html>"#
    );
    let page = parse_simple_html(&page_url, &body).unwrap();
    assert_eq!(page.api_version.as_deref(), Some("1.1"));
    let files = &page.files;
    assert_eq!(files.len(), 6, "{files:#?}");

    let f = &files[0];
    assert_eq!(f.filename, "demo-1.0-py3-none-any.whl");
    assert_eq!(
        f.url.as_str(),
        "https://index.example/packages/ab/cd/demo-1.0-py3-none-any.whl"
    );
    assert_eq!(f.hashes.sha256.as_deref(), Some(SHA_A));
    assert_eq!(f.requires_python.as_deref(), Some(">=3.9"));
    assert_eq!(f.yanked, Yanked::No);
    assert_eq!(f.core_metadata, CoreMetadataRef::Absent);
    assert_eq!(f.size, None);

    let f = &files[1];
    assert_eq!(f.url.as_str(), "https://files.example/demo-1.1.tar.gz");
    assert_eq!(
        f.hashes.sha256.as_deref(),
        Some(SHA_B_UPPER.to_lowercase().as_str())
    );
    assert_eq!(
        f.yanked,
        Yanked::Yes {
            reason: Some("broken build & more".to_string())
        }
    );

    let f = &files[2];
    assert_eq!(
        f.filename,
        "torch-2.11.0+cu130-cp314-cp314-manylinux_2_28_x86_64.whl"
    );
    assert_eq!(
        f.url.as_str(),
        "https://index.example/whl/cu130/torch-2.11.0%2Bcu130-cp314-cp314-manylinux_2_28_x86_64.whl"
    );
    // data-core-metadata wins over the legacy data-dist-info-metadata.
    assert_eq!(
        f.core_metadata,
        CoreMetadataRef::Present {
            sha256: Some(SHA_C.to_string())
        }
    );
    assert_eq!(
        f.metadata_url().as_str(),
        "https://index.example/whl/cu130/torch-2.11.0%2Bcu130-cp314-cp314-manylinux_2_28_x86_64.whl.metadata"
    );

    let f = &files[3];
    assert_eq!(
        f.url.as_str(),
        "https://index.example/simple/demo/demo-1.2-py3-none-any.whl"
    );
    assert_eq!(f.yanked, Yanked::Yes { reason: None });
    assert_eq!(f.core_metadata, CoreMetadataRef::Present { sha256: None });
    assert_eq!(f.requires_python.as_deref(), Some("<4,>=3.10"));
    assert!(f.hashes.is_empty());

    let f = &files[4];
    assert_eq!(f.yanked, Yanked::Yes { reason: None });
    assert_eq!(f.core_metadata, CoreMetadataRef::Present { sha256: None });

    let f = &files[5];
    assert_eq!(f.hashes.sha256, None);
    assert_eq!(
        f.hashes.other.get("md5").map(String::as_str),
        Some("0123456789abcdef0123456789abcdef")
    );
    assert_eq!(f.core_metadata, CoreMetadataRef::Absent);
}

#[test]
fn simple_html_base_href_applies_to_all_links() {
    let page_url = url("https://index.example/simple/demo/");
    let body = r#"<html><head><base href="../../mirror/files/"></head><body>
        <a href="demo-1.0.tar.gz">demo-1.0.tar.gz</a>
        <a href="/rooted/demo-2.0.tar.gz">x</a>
        <a href="https://other.example/demo-3.0.tar.gz">y</a>
        </body></html>"#;
    let files = parse_simple_html(&page_url, body).unwrap().files;
    let urls: Vec<&str> = files.iter().map(|f| f.url.as_str()).collect();
    assert_eq!(
        urls,
        vec![
            "https://index.example/mirror/files/demo-1.0.tar.gz",
            "https://index.example/rooted/demo-2.0.tar.gz",
            "https://other.example/demo-3.0.tar.gz",
        ]
    );
}

#[test]
fn simple_html_file_urls_resolve() {
    let page_url = url("file:///srv/simple/demo/index.html");
    let body = r#"<html><body><a href="../../files/demo-1.0-py3-none-any.whl">d</a></body></html>"#;
    let files = parse_simple_html(&page_url, body).unwrap().files;
    assert_eq!(
        files[0].url.as_str(),
        "file:///srv/files/demo-1.0-py3-none-any.whl"
    );
}

#[test]
fn simple_html_empty_project_is_valid() {
    let page_url = url("https://index.example/simple/empty/");
    let page = parse_simple_html(
        &page_url,
        "<!DOCTYPE html><html><head><title>Links for empty</title></head><body><h1>Links for empty</h1></body></html>",
    )
    .unwrap();
    assert!(page.files.is_empty());
    assert_eq!(page.api_version, None);
}

#[test]
fn simple_html_garbage_is_an_error_naming_the_page() {
    let page_url = url("https://index.example/simple/demo/");
    for (body, needle) in [
        ("", "empty"),
        ("   \n", "empty"),
        ("PK\u{3}\u{4}\0\0\0binary", "NUL"),
        (r#"{"meta": {"api-version": "1.0"}, "files": []}"#, "JSON"),
        ("just some text, no markup at all", "no HTML tags"),
    ] {
        let err = parse_simple_html(&page_url, body).unwrap_err();
        assert!(matches!(err, PageError::NotHtml { .. }), "{body:?}: {err}");
        let message = err.to_string();
        assert!(
            message.contains("https://index.example/simple/demo/"),
            "{message}"
        );
        assert!(message.contains(needle), "{message}");
    }
}

#[test]
fn simple_html_bad_link_url_and_bad_hashes_are_errors() {
    let page_url = url("https://index.example/simple/demo/");
    let err = parse_simple_html(
        &page_url,
        r#"<html><a href="http://[::1/demo-1.0.tar.gz">x</a></html>"#,
    )
    .unwrap_err();
    assert!(matches!(err, PageError::BadLinkUrl { .. }), "{err}");
    assert!(err.to_string().contains("http://[::1/demo-1.0.tar.gz"));

    for fragment in ["sha256=xyz", "sha256=abcd", "justtext", "sha256="] {
        let body = format!(r#"<html><a href="demo-1.0.tar.gz#{fragment}">x</a></html>"#);
        let err = parse_simple_html(&page_url, &body).unwrap_err();
        assert!(
            matches!(err, PageError::BadHash { .. }),
            "{fragment}: {err}"
        );
        assert!(err.to_string().contains(&page_url.to_string()));
    }
    // A malformed core-metadata hash is an error too.
    let body = r#"<html><a href="demo-1.0.tar.gz" data-core-metadata="sha256=zz">x</a></html>"#;
    assert!(matches!(
        parse_simple_html(&page_url, body),
        Err(PageError::BadHash { .. })
    ));
    // A percent-encoded slash in the filename would escape a cache directory.
    let body = r#"<html><a href="..%2F..%2Fetc%2Fdemo-1.0.tar.gz">x</a></html>"#;
    assert!(matches!(
        parse_simple_html(&page_url, body),
        Err(PageError::BadFilename { .. })
    ));
}

#[test]
fn simple_html_api_version_2_is_refused() {
    let page_url = url("https://index.example/simple/demo/");
    let body = r#"<html><head><meta name="pypi:repository-version" content="2.0"></head></html>"#;
    let err = parse_simple_html(&page_url, body).unwrap_err();
    assert!(
        matches!(err, PageError::UnsupportedApiVersion { .. }),
        "{err}"
    );
}

#[test]
fn simple_html_skips_non_file_links() {
    let page_url = url("https://index.example/simple/demo/");
    let body = r##"<html><a href="../">parent</a><a href="mailto:x@index.example">m</a>
        <a href="#top">top</a><a href="demo-1.0.tar.gz">ok</a></html>"##;
    let files = parse_simple_html(&page_url, body).unwrap().files;
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].filename, "demo-1.0.tar.gz");
}

// ---------------------------------------------------------------------------------------------
// page: JSON
// ---------------------------------------------------------------------------------------------

#[test]
fn simple_json_pep691_and_pep700_fields() {
    let page_url = url("https://index.example/simple/demo/");
    let body = json!({
        "meta": {"api-version": "1.1"},
        "name": "demo",
        "versions": ["1.0", "1.1"],
        "files": [
            {
                "filename": "demo-1.0-py3-none-any.whl",
                "url": "../../packages/demo-1.0-py3-none-any.whl",
                "hashes": {"sha256": SHA_B_UPPER, "blake2b": "ab".repeat(64)},
                "requires-python": ">=3.9",
                "core-metadata": {"sha256": SHA_C},
                "size": 12345,
                "upload-time": "2025-01-02T03:04:05.678901Z",
                "yanked": false
            },
            {
                "filename": "demo-1.1.tar.gz",
                "url": "https://files.example/demo-1.1.tar.gz",
                "hashes": {},
                "requires-python": null,
                "dist-info-metadata": true,
                "yanked": "security issue"
            },
            {
                "filename": "demo-1.2.tar.gz",
                "url": "https://files.example/demo-1.2.tar.gz",
                "hashes": {"sha256": SHA_A},
                "core-metadata": false,
                "dist-info-metadata": true,
                "yanked": true
            }
        ]
    });
    let page = parse_simple_json(&page_url, body.to_string().as_bytes()).unwrap();
    assert_eq!(page.api_version.as_deref(), Some("1.1"));
    let f = &page.files[0];
    assert_eq!(f.filename, "demo-1.0-py3-none-any.whl");
    assert_eq!(
        f.url.as_str(),
        "https://index.example/packages/demo-1.0-py3-none-any.whl"
    );
    assert_eq!(
        f.hashes.sha256.as_deref(),
        Some(SHA_B_UPPER.to_lowercase().as_str())
    );
    assert_eq!(f.hashes.other.get("blake2b").unwrap(), &"ab".repeat(64));
    assert_eq!(f.requires_python.as_deref(), Some(">=3.9"));
    assert_eq!(
        f.core_metadata,
        CoreMetadataRef::Present {
            sha256: Some(SHA_C.to_string())
        }
    );
    assert_eq!(f.size, Some(12345));
    assert_eq!(
        f.upload_time.as_deref(),
        Some("2025-01-02T03:04:05.678901Z")
    );
    assert_eq!(f.yanked, Yanked::No);

    let f = &page.files[1];
    assert_eq!(f.requires_python, None);
    assert_eq!(f.core_metadata, CoreMetadataRef::Present { sha256: None });
    assert_eq!(
        f.yanked,
        Yanked::Yes {
            reason: Some("security issue".to_string())
        }
    );
    assert_eq!(f.size, None);

    let f = &page.files[2];
    // `core-metadata` (PEP 714) wins over the legacy key.
    assert_eq!(f.core_metadata, CoreMetadataRef::Absent);
    assert_eq!(f.yanked, Yanked::Yes { reason: None });
}

#[test]
fn simple_json_invalid_json_reports_line_and_column() {
    let page_url = url("https://index.example/simple/demo/");
    let body = b"{\n  \"meta\": {\"api-version\": \"1.0\"},\n  \"files\": [,]\n}";
    let err = parse_simple_json(&page_url, body).unwrap_err();
    match &err {
        PageError::InvalidJson { line, column, .. } => {
            assert_eq!(*line, 3);
            assert!(*column > 0);
        }
        other => panic!("expected InvalidJson, got {other}"),
    }
    assert!(err.to_string().contains("line 3"));
    assert!(err
        .to_string()
        .contains("https://index.example/simple/demo/"));
    // Valid JSON of the wrong shape (a project list, no `files`) is reported too.
    let err = parse_simple_json(&page_url, br#"{"projects": []}"#).unwrap_err();
    assert!(err.to_string().contains("files"), "{err}");
}

#[test]
fn simple_json_filtered_decodes_only_the_files_kept() {
    let page_url = url("https://index.example/simple/demo/");
    // The second file's `hashes` is malformed: only a parse that keeps it may fail on it,
    // and the error points at it in the body.
    let body = b"{\"meta\": {\"api-version\": \"1.1\"}, \"files\": [\n\
        {\"filename\": \"demo-1.0-cp314-cp314-manylinux_2_28_x86_64.whl\", \"url\": \"../../packages/a.whl\", \"hashes\": {\"sha256\": \"0000000000000000000000000000000000000000000000000000000000000000\"}, \"size\": 10},\n\
        {\"filename\": \"demo-1.0-cp314-cp314-win_amd64.whl\", \"url\": 7, \"hashes\": 5},\n\
        {\"filename\": \"demo-1.0.tar.gz\", \"url\": \"demo-1.0.tar.gz\", \"requires-python\": \">=3.9\"}\n\
    ]}";
    let keep = |name: &str| name.ends_with("x86_64.whl");
    let page = parse_simple_json_filtered(&page_url, body, &keep).unwrap();
    assert_eq!(page.api_version.as_deref(), Some("1.1"));
    assert_eq!(page.files.len(), 1);
    assert_eq!(
        page.files[0].url.as_str(),
        "https://index.example/packages/a.whl"
    );
    assert_eq!(page.files[0].size, Some(10));
    assert_eq!(
        page.other_names,
        ["demo-1.0-cp314-cp314-win_amd64.whl", "demo-1.0.tar.gz"]
    );
    let err = parse_simple_json(&page_url, body).unwrap_err();
    match &err {
        PageError::InvalidJson { line, column, .. } => {
            assert_eq!(*line, 3, "{err}");
            let text = std::str::from_utf8(body).unwrap();
            let third = text.lines().nth(2).unwrap();
            // The first malformed field of that file, `"url": 7`.
            assert_eq!(&third[column - 1..*column], "7", "{err}");
        }
        other => panic!("expected InvalidJson, got {other}"),
    }
    // A file name that is a path is refused whether or not the file is kept.
    let body = br#"{"files": [{"filename": "../evil.whl", "url": "x.whl"}]}"#;
    assert!(matches!(
        parse_simple_json_filtered(&page_url, body, &|_| false),
        Err(PageError::BadFilename { .. })
    ));
}

#[test]
fn simple_json_api_version_2_is_refused_and_1x_accepted() {
    let page_url = url("https://index.example/simple/demo/");
    let body = json!({"meta": {"api-version": "2.0"}, "files": "a different shape"});
    let err = parse_simple_json(&page_url, body.to_string().as_bytes()).unwrap_err();
    assert!(
        matches!(err, PageError::UnsupportedApiVersion { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("2.0"));
    let body = json!({"meta": {"api-version": "1.99"}, "files": []});
    assert!(parse_simple_json(&page_url, body.to_string().as_bytes()).is_ok());
}

#[test]
fn simple_json_bad_hash_is_an_error() {
    let page_url = url("https://index.example/simple/demo/");
    let body = json!({"meta": {"api-version": "1.0"}, "files": [
        {"filename": "demo-1.0.tar.gz", "url": "demo-1.0.tar.gz", "hashes": {"sha256": "nothex"}}
    ]});
    let err = parse_simple_json(&page_url, body.to_string().as_bytes()).unwrap_err();
    assert!(matches!(err, PageError::BadHash { .. }), "{err}");
}

#[test]
fn content_type_dispatch() {
    let page_url = url("https://index.example/simple/demo/");
    let json_body = json!({"meta": {"api-version": "1.0"}, "files": [
        {"filename": "demo-1.0.tar.gz", "url": "demo-1.0.tar.gz", "hashes": {}}
    ]})
    .to_string();
    let page = parse_simple_page(
        &page_url,
        Some("application/vnd.pypi.simple.v1+json; charset=utf-8"),
        json_body.as_bytes(),
    )
    .unwrap();
    assert_eq!(page.files.len(), 1);
    let html = br#"<html><a href="demo-1.0.tar.gz">d</a></html>"#;
    for ct in [
        Some("text/html; charset=utf-8"),
        Some("application/vnd.pypi.simple.v1+html"),
        None,
    ] {
        assert_eq!(
            parse_simple_page(&page_url, ct, html).unwrap().files.len(),
            1
        );
    }
    assert!(matches!(
        parse_simple_page(&page_url, Some("application/octet-stream"), html),
        Err(PageError::UnsupportedContentType { .. })
    ));
    assert!(SIMPLE_ACCEPT.starts_with(SIMPLE_JSON_CONTENT_TYPE));
    assert!(SIMPLE_ACCEPT.contains("application/vnd.pypi.simple.v1+html;q="));
    assert!(SIMPLE_ACCEPT.contains("text/html;q="));
}

// ---------------------------------------------------------------------------------------------
// page: find-links and project lists
// ---------------------------------------------------------------------------------------------

#[test]
fn find_links_release_page_keeps_only_dists() {
    let page_url = url("https://releases.example/owner/flash-attention/releases/tag/v2.8.3");
    let body = format!(
        r##"<!doctype html><html><head><base href="/owner/flash-attention/"></head><body>
        <nav><a href="/">Home</a> <a href="https://releases.example/login?return_to=%2F">Sign in</a></nav>
        <a href="#readme">Readme</a>
        <div class="release">
          <a href="releases/download/v2.8.3/flash_attn-2.8.3+cu12torch2.8cxx11abiTRUE-cp313-cp313-linux_x86_64.whl" rel="nofollow">
            <span>flash_attn-2.8.3+cu12torch2.8cxx11abiTRUE-cp313-cp313-linux_x86_64.whl</span></a>
          <a href="releases/download/v2.8.3/flash_attn-2.8.3+cu12torch2.8cxx11abiTRUE-cp313-cp313-linux_x86_64.whl">dup</a>
          <a href='releases/download/v2.8.3/flash_attn-2.8.3.tar.gz#sha256={SHA_A}'>sdist</a>
          <a href=archive/refs/tags/v2.8.3.zip>Source code (zip)</a>
          <a href=archive/refs/tags/v2.8.3.TGZ>Source code (tgz)</a>
          <a href="releases/download/v2.8.3/checksums.txt">checksums</a>
          <a href="releases/download/v2.8.3/notes.html">notes</a>
          <a href="releases/download/v2.8.3/other-1.0.tar.bz2">bz2</a>
        </div></body></html>"##
    );
    let files = parse_find_links_html(&page_url, &body).unwrap();
    let names: Vec<&str> = files.iter().map(|f| f.filename.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "flash_attn-2.8.3+cu12torch2.8cxx11abiTRUE-cp313-cp313-linux_x86_64.whl",
            "flash_attn-2.8.3.tar.gz",
            "v2.8.3.zip",
            "v2.8.3.TGZ",
            "other-1.0.tar.bz2",
        ]
    );
    assert_eq!(
        files[0].url.as_str(),
        "https://releases.example/owner/flash-attention/releases/download/v2.8.3/flash_attn-2.8.3+cu12torch2.8cxx11abiTRUE-cp313-cp313-linux_x86_64.whl"
    );
    assert_eq!(files[1].hashes.sha256.as_deref(), Some(SHA_A));
    assert!(files[1].url.fragment().is_none());
}

#[test]
fn find_links_directory_listing() {
    let page_url = url("http://127.0.0.1:8080/wheels/");
    let body = r#"<html><head><title>Index of /wheels/</title></head><body>
<h1>Index of /wheels/</h1><hr><pre><a href="../">../</a>
<a href="sageattention-2.2.0%2Bcu130torch2.11-cp314-cp314-linux_x86_64.whl">sageattention-2.2.0+cu130torch2.11-cp314-cp314-linux_x86_64.whl</a>   01-Jan-2026 00:00  1234567
<a href="README.txt">README.txt</a>
</pre><hr></body></html>"#;
    let files = parse_find_links_html(&page_url, body).unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(
        files[0].filename,
        "sageattention-2.2.0+cu130torch2.11-cp314-cp314-linux_x86_64.whl"
    );
    assert!(parse_find_links_html(&page_url, "\0\0\0").is_err());
}

#[test]
fn project_lists_html_and_json() {
    let page_url = url("https://index.example/simple/");
    let body = r#"<!DOCTYPE html><html><body>
        <a href="/simple/Torch_Vision/">Torch_Vision</a>
        <a href="/simple/nvidia-cuda-runtime/">nvidia.cuda_runtime</a>
        <a href="/simple/text-less/"></a>
        <a href="/simple/torch-vision/">torch-vision</a>
        </body></html>"#;
    let names = parse_project_list_html(&page_url, body).unwrap();
    assert_eq!(
        names,
        vec!["torch-vision", "nvidia-cuda-runtime", "text-less"]
    );
    let body = json!({"meta": {"api-version": "1.0"}, "projects": [
        {"name": "Foo.Bar"}, {"name": "foo_bar"}, {"name": "baz"}
    ]});
    let names = parse_project_list_json(&page_url, body.to_string().as_bytes()).unwrap();
    assert_eq!(names, vec!["foo-bar", "baz"]);
    let body = json!({"meta": {"api-version": "2.0"}, "projects": []});
    assert!(parse_project_list_json(&page_url, body.to_string().as_bytes()).is_err());
}

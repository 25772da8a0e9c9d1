//! A published wheel whose RECORD is wrong about one of its own files (decord 0.6.0's
//! `top_level.txt`, on the real index): refused by default, as every file of a wheel is
//! verified; installed when the stack's `[[install.record-mismatch]]` names exactly that wheel
//! and file with a reason. The acceptance goes through the lock (install reads only the lock),
//! is reported, the installed RECORD gets the file's true hash and size, and a store entry made
//! with it is no hit for an install whose lock does not accept it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine;
use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;

use crate::common::write_index_definitions;

const WHEEL: &str = "demo_decord-0.6.0-py3-none-manylinux2010_x86_64.whl";
const TOP_LEVEL: &str = "demo_decord-0.6.0.dist-info/top_level.txt";

fn b64_sha(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(bytes))
}

/// decord's shape: RECORD gives `top_level.txt` another hash and 17 bytes; the file holds
/// `demo_decord\n`. Every other row is right.
fn bad_record_wheel(dir: &Path) -> PathBuf {
    let dist = "demo_decord-0.6.0.dist-info";
    let members: Vec<(String, Vec<u8>)> = vec![
        ("demo_decord/__init__.py".into(), b"VALUE = 6\n".to_vec()),
        (
            format!("{dist}/METADATA"),
            b"Metadata-Version: 2.1\nName: demo-decord\nVersion: 0.6.0\n".to_vec(),
        ),
        (
            format!("{dist}/WHEEL"),
            b"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: py3-none-manylinux2010_x86_64\n"
                .to_vec(),
        ),
        (TOP_LEVEL.into(), b"demo_decord\n".to_vec()),
    ];
    let mut record = String::new();
    for (name, bytes) in &members {
        if name == TOP_LEVEL {
            record.push_str(&format!(
                "{name},sha256={},17\n",
                b64_sha(b"something_else_17")
            ));
        } else {
            record.push_str(&format!(
                "{name},sha256={},{}\n",
                b64_sha(bytes),
                bytes.len()
            ));
        }
    }
    record.push_str(&format!("{dist}/RECORD,,\n"));
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes) in members.iter().chain(std::iter::once(&(
        format!("{dist}/RECORD"),
        record.into_bytes(),
    ))) {
        zip.start_file(
            name.as_str(),
            SimpleFileOptions::default().unix_permissions(0o644),
        )
        .unwrap();
        zip.write_all(bytes).unwrap();
    }
    let bytes = zip.finish().unwrap().into_inner();
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(WHEEL);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn write_stack(work: &Path, install: &str) {
    let pak = work.join("pak");
    std::fs::create_dir_all(&pak).unwrap();
    std::fs::write(pak.join("deps.txt"), "demo-decord\n").unwrap();
    std::fs::write(
        pak.join("stack.toml"),
        format!(
            "[stack]\nname = \"record\"\nindex-dir = \"../indexes\"\n\n[target]\n\
             python = \"3.14\"\nplatforms = [\"manylinux_2_39_x86_64\"]\nvenv = \"/opt/venv\"\n\
             torch-backend = \"cpu\"\n\n[indexes]\ndefault = [\"pypi\"]\n\n[[layer]]\n\
             name = \"deps\"\npaks = [\"deps.txt\"]\n\n{install}"
        ),
    )
    .unwrap();
}

fn comfypak(work: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_comfypak"))
        .args(args)
        .current_dir(work)
        .env("COMFYPAK_CACHE_DIR", work.join("cache"))
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap()
}

fn find(dir: &Path, name: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.ends_with(name) {
            return Some(path);
        }
        if path.is_dir() {
            if let Some(found) = find(&path, name) {
                return Some(found);
            }
        }
    }
    None
}

const ENTRY: &str = "[[install.record-mismatch]]\n\
    wheel = \"demo_decord-0.6.0-py3-none-manylinux2010_x86_64.whl\"\n\
    file = \"demo_decord-0.6.0.dist-info/top_level.txt\"\n\
    reason = \"its RECORD row for top_level.txt gives another hash and 17 bytes\"\n";

#[test]
fn a_wrong_record_row_is_refused_unless_the_stack_accepts_that_exact_wheel_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let wheels = work.join("wheels");
    bad_record_wheel(&wheels);
    let url = url::Url::from_directory_path(&wheels).unwrap();
    write_index_definitions(work, &[("pypi", url.as_str(), "dir")]);

    // (a) By default: refused, nothing installed, and the help says how to accept it.
    write_stack(work, "");
    let out = comfypak(work, &["build", "--stack", "pak", "--out", "out"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{WHEEL}: member `{TOP_LEVEL}` does not match RECORD"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("[[install.record-mismatch]]"), "{stderr}");
    assert!(find(&work.join("out"), "demo_decord").is_none());

    // (b) Accepted for that wheel and file: the lock carries it, the install reports it, and
    // the installed RECORD gives the file's true hash and size.
    write_stack(work, ENTRY);
    let out = comfypak(work, &["build", "--stack", "pak", "--out", "out"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "installed despite a wrong RECORD row, as the lock's record-mismatch accepts (RECORD \
             now gives its true hash and size): {WHEEL}: {TOP_LEVEL} (its RECORD row for \
             top_level.txt gives another hash and 17 bytes)"
        )),
        "{stderr}"
    );
    let lock_text = std::fs::read_to_string(work.join("pylock.toml")).unwrap();
    let lock = comfypak::lock::Lock::read(&work.join("pylock.toml")).unwrap();
    let entry = lock
        .packages
        .iter()
        .find(|p| p.name.as_ref() == "demo-decord")
        .unwrap();
    assert_eq!(
        entry.tool.comfypak.record_mismatch,
        [comfypak::lock::AcceptedRecordMismatch {
            wheel: WHEEL.to_string(),
            file: TOP_LEVEL.to_string(),
            reason: "its RECORD row for top_level.txt gives another hash and 17 bytes".to_string(),
        }],
        "{lock_text}"
    );
    let record = find(&work.join("out"), "demo_decord-0.6.0.dist-info")
        .map(|d| d.join("RECORD"))
        .unwrap();
    let record = std::fs::read_to_string(record).unwrap();
    assert!(
        record.contains(&format!(
            "{TOP_LEVEL},sha256={},12",
            b64_sha(b"demo_decord\n")
        )),
        "{record}"
    );
    assert!(!record.contains(",17"), "{record}");

    // (c) The lock without the acceptance: the unpacked store holds the wheel, but that entry
    // was made accepting the row, so this install verifies again and refuses.
    let mut stripped = lock.clone();
    for package in &mut stripped.packages {
        package.tool.comfypak.record_mismatch.clear();
    }
    stripped.write(&work.join("stripped.toml")).unwrap();
    let out = comfypak(
        work,
        &[
            "install",
            "--all",
            "--lock",
            "stripped.toml",
            "--out",
            "out2",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("does not match RECORD"), "{stderr}");

    // (d) An entry must name one wheel file, a path inside it, and a reason.
    for (bad, says) in [
        (
            ENTRY.replace(WHEEL, "demo-decord"),
            "`demo-decord` is not a wheel file name",
        ),
        (
            ENTRY.replace(TOP_LEVEL, "../top_level.txt"),
            "`../top_level.txt` is not a path inside the wheel",
        ),
        (
            ENTRY.replace(
                "its RECORD row for top_level.txt gives another hash and 17 bytes",
                " ",
            ),
            "gives no reason",
        ),
    ] {
        write_stack(work, &bad);
        let out = comfypak(work, &["stack", "--stack", "pak"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains("`install.record-mismatch`"), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
    }
}

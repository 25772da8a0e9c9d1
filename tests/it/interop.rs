//! Interop: another installer reads comfypak's lock. Inside the target runtime (the Debian root's
//! CPython 3.14, in the sandbox, no network), uv (the binary of its PyPI wheel, copied into
//! the work folder) makes a venv and runs `uv pip install -r pylock.toml` on the lock
//! `comfypak build` wrote for the fixture stack; the wheels are `file://` URLs of the fixture
//! index, which a read-only layer puts at /srv/index inside the sandbox (the lock given to uv points there). The installed
//! distributions and files must equal comfypak's layers (stacked), apart from what differs by
//! design, which the test names: bytecode (`__pycache__`, comfypak compiles it, uv does not by
//! default), `INSTALLER`, uv's own `uv_cache.json` in each dist-info (a timestamp), the `RECORD`
//! rows of those, and the console-script launchers (each installer's template, and the venv's
//! path: uv's venv lives in the work folder, comfypak's at the image path), which must still
//! call the same entry point.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use comfypak::runtime::{Base, Runtime, WORK_DIR};
use comfypak::target::Arch;

use super::check::{comfypak, fixture_stack, text};
use super::runtime::{debian_root, options, target};

/// uv from its PyPI wheel (COMFYPAK_UV, installed by .ci/setup.d/20-uv.sh).
fn uv() -> Option<PathBuf> {
    match std::env::var_os("COMFYPAK_UV") {
        Some(p) if Path::new(&p).is_file() => Some(PathBuf::from(p)),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("COMFYPAK_UV is not set: .ci/setup.d/20-uv.sh installs uv")
        }
        _ => {
            eprintln!("note: COMFYPAK_UV is not set; skipping the uv interop test");
            None
        }
    }
}

/// Every file under `site` (relative path → bytes), `__pycache__` left out.
fn files(site: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
    let mut stack = vec![site.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(site).unwrap().display().to_string();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                if path.file_name().is_some_and(|n| n == "__pycache__") {
                    continue;
                }
                stack.push(path);
            } else {
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
}

/// RECORD without the rows that differ by design (bytecode, INSTALLER, uv's own
/// `uv_cache.json`), console-script launchers by path only (each installer has its own
/// launcher template and venv path), sorted.
fn record_rows(bytes: &[u8]) -> Vec<String> {
    let mut rows: Vec<String> = String::from_utf8_lossy(bytes)
        .lines()
        .filter(|l| {
            !l.contains("__pycache__/")
                && !l.contains(".dist-info/INSTALLER,")
                && !l.contains(".dist-info/uv_cache.json,")
        })
        .map(|l| match l.strip_prefix("../../../bin/") {
            Some(rest) => format!("../../../bin/{}", rest.split(',').next().unwrap_or(rest)),
            None => l.to_string(),
        })
        .collect();
    rows.sort();
    rows
}

#[test]
fn uv_installs_comfypaks_lock_in_the_target_runtime_as_comfypak_does() {
    let Some(root) = debian_root() else { return };
    let Some(uv) = uv() else { return };
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let cache = dir.path().join("cache");
    let pak = fixture_stack(dir.path(), "demo_bad = \"the test's upstream fault\"\n");
    let out = comfypak(
        &[
            "build",
            "--stack",
            pak.to_str().unwrap(),
            "--out",
            "out",
            "--lock",
            "pylock.toml",
            "--base",
            root.to_str().unwrap(),
        ],
        dir.path(),
        &cache,
    );
    assert!(out.status.success(), "{}", text(&out));
    let lock = std::fs::read_to_string(dir.path().join("pylock.toml")).unwrap();
    let index = dir.path().join("index");
    assert!(
        lock.contains(&format!("file://{}", index.display())),
        "the lock's wheels come from the file:// index"
    );

    // The index at a fixed path inside the sandbox (/srv/index), as a read-only layer of hard
    // links, and the lock's file:// URLs pointed there: the checkout (and so the index) may
    // live under /tmp, which the sandbox replaces with its own.
    const INSIDE: &str = "/srv/index";
    let mirror = dir.path().join("mirror");
    let inside = mirror.join(INSIDE.trim_start_matches('/'));
    std::fs::create_dir_all(inside.parent().unwrap()).unwrap();
    let status = Command::new("cp")
        .arg("-al")
        .arg(&index)
        .arg(&inside)
        .status()
        .unwrap();
    assert!(status.success());
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::copy(&uv, work.join("uv")).unwrap();
    let moved = lock.replace(
        &format!("file://{}/", index.display()),
        &format!("file://{INSIDE}/"),
    );
    assert_ne!(moved, lock, "the lock names the index's files");
    std::fs::write(work.join("pylock.toml"), &moved).unwrap();

    let runtime = Runtime::for_platform(
        &Base::Root(root.clone()),
        &target((3, 14), Arch::X86_64),
        "/opt/venv",
        &options(&cache, Duration::from_secs(300)),
    )
    .unwrap();
    let script = format!(
        "set -e; export UV_CACHE_DIR={WORK_DIR}/uv-cache UV_NO_CONFIG=1 UV_PYTHON_DOWNLOADS=never; \
         {WORK_DIR}/uv venv --quiet --python /usr/bin/python3.14 {WORK_DIR}/venv; \
         {WORK_DIR}/uv pip install --offline --python {WORK_DIR}/venv/bin/python \
         -r {WORK_DIR}/pylock.toml"
    );
    let run = runtime
        .run(
            &["/bin/sh".into(), "-c".into(), script],
            &[mirror],
            Some(&work),
            b"",
        )
        .unwrap();
    assert_eq!(
        run.code,
        0,
        "uv pip install -r pylock.toml:\n{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        run.stderr_tail()
    );

    let mut theirs = BTreeMap::new();
    files(&work.join("venv/lib/python3.14/site-packages"), &mut theirs);
    let mut ours = BTreeMap::new();
    for layer in ["stable", "deps"] {
        files(
            &dir.path()
                .join("out/layers")
                .join(layer)
                .join("opt/venv/lib/python3.14/site-packages"),
            &mut ours,
        );
    }
    // uv's venv has its own files beside the distributions, and uv records its cache
    // bookkeeping (a timestamp) in each dist-info.
    theirs.retain(|path, _| !path.starts_with("_virtualenv") && !path.ends_with("/uv_cache.json"));
    let dists = |m: &BTreeMap<String, Vec<u8>>| -> Vec<String> {
        let mut d: Vec<String> = m
            .keys()
            .filter_map(|k| k.split_once(".dist-info/").map(|(d, _)| d.to_string()))
            .collect();
        d.dedup();
        d
    };
    assert_eq!(
        dists(&ours),
        dists(&theirs),
        "the same distributions at the same versions"
    );
    assert_eq!(
        dists(&ours),
        [
            "demo_app-2.0",
            "demo_bad-0.1",
            "demo_base-1.0",
            "demo_many-1.0"
        ]
    );
    let mut differences = Vec::new();
    for path in ours.keys().chain(theirs.keys()) {
        let (a, b) = (ours.get(path), theirs.get(path));
        let same = match (a, b) {
            (Some(a), Some(b)) if path.ends_with(".dist-info/INSTALLER") => {
                a == b"comfypak\n" && b == b"uv"
            }
            (Some(a), Some(b)) if path.ends_with(".dist-info/RECORD") => {
                record_rows(a) == record_rows(b)
            }
            (Some(a), Some(b)) => a == b,
            _ => false,
        };
        if !same
            && !differences
                .iter()
                .any(|d: &String| d.starts_with(path.as_str()))
        {
            let detail = match (a, b) {
                (Some(a), Some(b)) if path.ends_with(".dist-info/RECORD") => {
                    let (a, b) = (record_rows(a), record_rows(b));
                    format!(
                        " (rows only comfypak's: {:?}; only uv's: {:?})",
                        a.iter().filter(|r| !b.contains(r)).collect::<Vec<_>>(),
                        b.iter().filter(|r| !a.contains(r)).collect::<Vec<_>>()
                    )
                }
                (Some(_), None) => " (only comfypak's)".to_string(),
                (None, Some(b)) => format!(" (only uv's: {:?})", String::from_utf8_lossy(b)),
                _ => " (bytes differ)".to_string(),
            };
            differences.push(format!("{path}{detail}"));
        }
    }
    assert!(
        differences.is_empty(),
        "files that differ between comfypak's layers and uv's install: {differences:?}"
    );

    // Console scripts: the same entry point, each with its own venv's python.
    let ours_script =
        std::fs::read_to_string(dir.path().join("out/layers/stable/opt/venv/bin/demo-base"))
            .unwrap();
    let theirs_script = std::fs::read_to_string(work.join("venv/bin/demo-base")).unwrap();
    assert!(
        ours_script.starts_with("#!/opt/venv/bin/python"),
        "{ours_script}"
    );
    assert!(
        theirs_script.starts_with(&format!("#!{WORK_DIR}/venv/bin/python")),
        "{theirs_script}"
    );
    fn body(s: &str) -> Vec<&str> {
        s.lines()
            .skip(1)
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect()
    }
    assert!(
        body(&ours_script)
            .iter()
            .any(|l| l.contains("from demo_base import main")),
        "{ours_script}"
    );
    assert!(
        body(&theirs_script)
            .iter()
            .any(|l| l.contains("from demo_base import main")),
        "{theirs_script}"
    );
}

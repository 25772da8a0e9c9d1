//! The pip oracle: for real-shaped wheels built here (purelib, platlib with
//! Root-Is-Purelib false, `.data/scripts` with `#!python`, headers, data, `.data/purelib` and
//! `.data/platlib`, console and gui entry points, a namespace package split over two
//! wheels), the tree comfypak installs must equal the tree
//! `pip install --target T --no-deps --no-compile` installs from the same wheels: the same
//! files with the same bytes and executable bits, apart from the differences listed in
//! [`ALLOWED_DIFFERENCES`], each of which is still checked as far as it can be.
//!
//! pip comes from `.ci/run` (`COMFYPAK_ORACLE_PYTHON`, a venv with pip); with `CI=true`
//! a missing interpreter fails the test, elsewhere it skips with a note.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use comfypak::cache::Cache;
use comfypak::fetch::progress::ProgressMode;
use comfypak::fetch::{fetch_wheels, select_wheels, targets_for, FetchOptions, WheelSource};
use comfypak::http::{HttpClient, HttpSettings};
use comfypak::install::layout::EnvPaths;
use comfypak::install::record::parse_record;
use comfypak::install::{install_layer, InstallOptions, InstallWheel};
use comfypak::lock::{
    ComfypakLock, Lock, LockTool, LockedLayer, LockedPackage, LockedTarget, LockedWheel,
    PackageComfypak, PackageTool, WheelHashes,
};
use comfypak_testkit::WheelSpec;

/// Every way comfypak's tree may differ from pip's, and how each is still checked.
const ALLOWED_DIFFERENCES: &[&str] = &[
    "INSTALLER: `comfypak\\n` instead of `pip\\n` (checked exactly on both sides)",
    "RECORD: row order, the `../` prefix of paths outside site-packages (pip records them \
     from its temporary home before --target moves them), and the hashes of the files \
     below (checked: the same set of installed files, and equal hash and size for every \
     other file)",
    "launcher scripts (console/gui entry points): the shebang line (checked: the rest of \
     the body is byte-identical, and both are executable)",
    "`#!python` scripts: the rewritten shebang names the image's interpreter \
     (`#!/opt/venv/bin/python`) instead of the interpreter that ran pip (checked: the rest \
     of the file is byte-identical)",
    "headers: `include/site/python3.14/<name>` instead of pip's \
     `include/site/python<oracle version>/<name>` (the target's version, not pip's)",
];

const VENV: &str = "/opt/venv";

fn oracle_python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("COMFYPAK_ORACLE_PYTHON") {
        return Some(PathBuf::from(p));
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("COMFYPAK_ORACLE_PYTHON is not set: .ci/run provides it (a Python venv with pip)");
    }
    eprintln!("note: COMFYPAK_ORACLE_PYTHON is not set; skipping the pip oracle (run .ci/run)");
    None
}

fn specs() -> Vec<WheelSpec> {
    vec![
        WheelSpec::new("demo-pure", "1.0")
            .file("demo_pure/core.py", "def main():\n    return 0\n\nclass App:\n    @staticmethod\n    def run():\n        return 0\n")
            .file("demo_pure/data/table.json", "{\"a\": 1}\n")
            .file("demo_pure-1.0.data/purelib/demo_pure_extra.py", "EXTRA = True\n")
            .executable(
                "demo_pure-1.0.data/scripts/demo-script",
                "#!python\n# a script\nimport demo_pure\nprint(demo_pure)\n",
            )
            .executable(
                "demo_pure-1.0.data/scripts/demo-args",
                "#!pythonw -u\nprint('args')\n",
            )
            .executable("demo_pure-1.0.data/scripts/demo.sh", "#!/bin/sh\necho demo\n")
            .file("demo_pure-1.0.data/scripts/not-exec.py", "print('plain')\n")
            .file("demo_pure-1.0.data/headers/demo.h", "#define DEMO 1\n")
            .file("demo_pure-1.0.data/data/share/demo/readme.txt", "shared data\n")
            .file("demo_pure-1.0.data/data/etc/demo.conf", "key = value\n")
            .entry_points(
                "[console_scripts]\ndemo = demo_pure.core:main\ndemo-extra = demo_pure.core:main [cli]\n\n[gui_scripts]\ndemo-gui = demo_pure.core:App.run\n",
            ),
        WheelSpec::new("demo-plat", "2.0")
            .root_is_purelib(false)
            .file("demo_plat/_native.py", "NATIVE = 1\n")
            .executable("demo_plat/tool.bin", "\x7fELF fake binary\n")
            .file("demo_plat-2.0.data/platlib/demo_plat_ext.py", "EXT = 2\n"),
        WheelSpec::new("ns-one", "1.0")
            .no_stub_module()
            .file("nsroot/one/__init__.py", "ONE = 1\n"),
        WheelSpec::new("ns-two", "1.0")
            .no_stub_module()
            .file("nsroot/two/__init__.py", "TWO = 2\n"),
    ]
}

/// Every file under `root`, relative, with its bytes and executable bit.
fn tree(root: &Path) -> BTreeMap<String, (Vec<u8>, bool)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path);
                continue;
            }
            assert!(meta.is_file(), "{} is not a regular file", path.display());
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.insert(
                rel,
                (
                    std::fs::read(&path).unwrap(),
                    meta.permissions().mode() & 0o111 != 0,
                ),
            );
        }
    }
    out
}

/// Maps an install-root-relative path of either tree to one common name: site-packages
/// contents at the top, headers under `include/site/pythonX.Y`.
fn common_path(path: &str, site: &str, include: &str) -> String {
    if let Some(inside) = path.strip_prefix(site).and_then(|p| p.strip_prefix('/')) {
        return inside.to_string();
    }
    if let Some(inside) = path.strip_prefix(include).and_then(|p| p.strip_prefix('/')) {
        return format!("include/site/pythonX.Y/{inside}");
    }
    path.to_string()
}

/// RECORD rows as `common path → (hash, size)`; `lib` is the folder RECORD paths are
/// relative to, as a path relative to the install root.
fn record_rows(
    text: &str,
    lib: &str,
    site: &str,
    include: &str,
) -> BTreeMap<String, (Option<String>, Option<u64>)> {
    let mut out = BTreeMap::new();
    for row in parse_record(text).unwrap() {
        // Resolve `lib/../..` textually.
        let mut parts: Vec<&str> = lib.split('/').filter(|p| !p.is_empty()).collect();
        for piece in row.path.split('/') {
            if piece == ".." {
                parts.pop();
            } else {
                parts.push(piece);
            }
        }
        let joined = parts.join("/");
        out.insert(
            common_path(&joined, site, include),
            (row.hash.map(|(_, d)| d), row.size),
        );
    }
    out
}

fn strip_first_line(bytes: &[u8]) -> &[u8] {
    match bytes.iter().position(|b| *b == b'\n') {
        Some(p) => &bytes[p + 1..],
        None => &[],
    }
}

#[test]
fn installed_tree_equals_pip_install_target() {
    let Some(python) = oracle_python() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let wheel_dir = work.path().join("wheels");
    std::fs::create_dir_all(&wheel_dir).unwrap();
    let specs = specs();
    let built: Vec<_> = specs.iter().map(WheelSpec::build).collect();
    for b in &built {
        std::fs::write(wheel_dir.join(&b.filename), &b.bytes).unwrap();
    }

    // pip's tree.
    let pip_target = work.path().join("pip-target");
    let mut pip = Command::new(&python);
    pip.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-index",
        "--no-deps",
        "--no-compile",
        "--no-cache-dir",
        "--find-links",
    ])
    .arg(&wheel_dir)
    .arg("--target")
    .arg(&pip_target);
    for spec in &specs {
        pip.arg(&spec.name);
    }
    let pip_out = pip.output().unwrap();
    assert!(
        pip_out.status.success(),
        "pip failed: {}",
        String::from_utf8_lossy(&pip_out.stderr)
    );
    let version_out = Command::new(&python)
        .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        .output()
        .unwrap();
    let oracle_version = String::from_utf8_lossy(&version_out.stdout)
        .trim()
        .to_string();

    // comfypak's tree, from a lock written and read back.
    let lock = Lock {
        lock_version: "1.0".into(),
        environments: vec![],
        requires_python: None,
        extras: vec![],
        dependency_groups: vec![],
        default_groups: vec![],
        created_by: "comfypak-tests".into(),
        packages: specs
            .iter()
            .zip(&built)
            .map(|(spec, b)| LockedPackage {
                name: spec.name.parse().unwrap(),
                version: spec.version.parse().unwrap(),
                marker: None,
                requires_python: None,
                index: None,
                dependencies: vec![],
                wheels: vec![LockedWheel {
                    name: b.filename.parse().unwrap(),
                    url: None,
                    path: Some(format!("wheels/{}", b.filename)),
                    upload_time: None,
                    size: Some(b.size()),
                    hashes: WheelHashes::sha256(b.sha256.parse().unwrap()),
                }],
                sdist: None,
                directory: None,
                vcs: None,
                tool: PackageTool {
                    comfypak: PackageComfypak {
                        layer: "deps".into(),
                        index_name: "fixture".into(),
                        requested: true,
                        ..PackageComfypak::default()
                    },
                },
            })
            .collect(),
        tool: LockTool {
            comfypak: ComfypakLock {
                stack: "oracle".into(),
                target: LockedTarget {
                    python: "3.14".parse().unwrap(),
                    free_threaded: false,
                    platforms: vec!["manylinux_2_39_x86_64".parse().unwrap()],
                    venv: VENV.parse().unwrap(),
                    gpus: Vec::new(),
                    min_driver: None,
                },
                torch_backend: comfypak::cuda::Backend::Cpu,
                layers: vec![LockedLayer {
                    name: "deps".into(),
                    rank: 1,
                    paks: vec![],
                    inputs_hash: String::new(),
                }],
                indexes: BTreeMap::new(),
                bases: Vec::new(),
            },
        },
    };
    let lock_path = work.path().join("pylock.toml");
    lock.write(&lock_path).unwrap();
    let lock = Lock::read(&lock_path).unwrap();
    let target = targets_for(&lock, None).unwrap().remove(0);
    let selected = select_wheels(&lock, Some(&["deps".to_string()]), &target).unwrap();
    let sources: Vec<WheelSource> = selected
        .iter()
        .map(|s| WheelSource::from_selected(s, work.path()).unwrap())
        .collect();
    let cache = Cache::new(work.path().join("cache"));
    let http = HttpClient::new(HttpSettings {
        backoff: Duration::from_millis(10),
        netrc: None,
        ..HttpSettings::default()
    })
    .unwrap();
    let cached = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(fetch_wheels(
            &http,
            &cache,
            &sources,
            &FetchOptions {
                concurrency: 4,
                offline: false,
                progress: ProgressMode::Quiet,
            },
        ))
        .unwrap();
    let wheels: Vec<InstallWheel> = selected
        .iter()
        .zip(&cached)
        .map(|(s, c)| comfypak::build::install_wheel(s, c))
        .collect();
    let out = work.path().join("build");
    let env = EnvPaths {
        venv: VENV.parse().unwrap(),
        python: "3.14".parse().unwrap(),
    };
    install_layer(
        &cache,
        &out,
        &env,
        "deps",
        &wheels,
        &[],
        &InstallOptions::default(),
    )
    .unwrap();
    let ours_root = out.join("layers/deps/opt/venv");

    let pip_tree: BTreeMap<String, (Vec<u8>, bool)> = tree(&pip_target)
        .into_iter()
        .map(|(p, v)| {
            (
                common_path(&p, "", &format!("include/site/python{oracle_version}")),
                v,
            )
        })
        .collect();
    let our_site = "lib/python3.14/site-packages";
    let our_include = "include/site/python3.14";
    let our_tree: BTreeMap<String, (Vec<u8>, bool)> = tree(&ours_root)
        .into_iter()
        .map(|(p, v)| (common_path(&p, our_site, our_include), v))
        .collect();

    // The same set of files.
    let pip_paths: BTreeSet<&String> = pip_tree.keys().collect();
    let our_paths: BTreeSet<&String> = our_tree.keys().collect();
    assert_eq!(
        our_paths,
        pip_paths,
        "\nonly comfypak: {:?}\nonly pip: {:?}",
        our_paths.difference(&pip_paths).collect::<Vec<_>>(),
        pip_paths.difference(&our_paths).collect::<Vec<_>>()
    );
    // The tree really has every kind of file the test is about.
    for expected in [
        "demo_pure/core.py",
        "demo_pure_extra.py",
        "demo_plat/_native.py",
        "demo_plat_ext.py",
        "nsroot/one/__init__.py",
        "nsroot/two/__init__.py",
        "bin/demo",
        "bin/demo-extra",
        "bin/demo-gui",
        "bin/demo-script",
        "bin/demo-args",
        "bin/demo.sh",
        "bin/not-exec.py",
        "include/site/pythonX.Y/demo-pure/demo.h",
        "share/demo/readme.txt",
        "etc/demo.conf",
        "demo_pure-1.0.dist-info/REQUESTED",
    ] {
        assert!(our_tree.contains_key(expected), "{expected} missing");
    }
    assert!(!our_tree.contains_key("nsroot/__init__.py"));

    let launchers = ["bin/demo", "bin/demo-extra", "bin/demo-gui"];
    let rewritten = ["bin/demo-script", "bin/demo-args"];
    let mut compared = 0;
    for (path, (ours, our_exec)) in &our_tree {
        let (theirs, their_exec) = &pip_tree[path];
        assert_eq!(our_exec, their_exec, "executable bit of {path}");
        if path.ends_with(".dist-info/INSTALLER") {
            assert_eq!(ours, b"comfypak\n");
            assert_eq!(theirs, b"pip\n");
        } else if path.ends_with(".dist-info/RECORD") {
            let dist_info = path.trim_end_matches("/RECORD");
            let our_rows = record_rows(
                std::str::from_utf8(ours).unwrap(),
                our_site,
                our_site,
                our_include,
            );
            // pip wrote RECORD relative to `<home>/lib/python` before moving things.
            let their_rows = record_rows(
                std::str::from_utf8(theirs).unwrap(),
                "lib/python",
                "lib/python",
                &format!("include/site/python{oracle_version}"),
            );
            let our_keys: BTreeSet<&String> = our_rows.keys().collect();
            let their_keys: BTreeSet<&String> = their_rows.keys().collect();
            assert_eq!(our_keys, their_keys, "RECORD paths of {dist_info}");
            for (row_path, row) in &our_rows {
                let varies = launchers.contains(&row_path.as_str())
                    || rewritten.contains(&row_path.as_str())
                    || row_path.ends_with("/INSTALLER")
                    || row_path.ends_with("/RECORD");
                if !varies {
                    assert_eq!(row, &their_rows[row_path], "RECORD row {row_path}");
                }
            }
        } else if launchers.contains(&path.as_str()) {
            assert!(ours.starts_with(b"#!/opt/venv/bin/python\n"), "{path}");
            assert!(*our_exec);
            assert_eq!(
                strip_first_line(ours),
                strip_first_line(theirs),
                "launcher {path}"
            );
        } else if rewritten.contains(&path.as_str()) {
            assert!(ours.starts_with(b"#!/opt/venv/bin/python\n"), "{path}");
            assert_eq!(
                strip_first_line(ours),
                strip_first_line(theirs),
                "script {path}"
            );
        } else {
            assert_eq!(
                String::from_utf8_lossy(ours),
                String::from_utf8_lossy(theirs),
                "bytes of {path}"
            );
            compared += 1;
        }
    }
    assert!(
        compared >= 20,
        "only {compared} files compared byte for byte"
    );
    eprintln!(
        "pip oracle: {} files, {compared} byte-identical; allowed differences:\n  - {}",
        our_tree.len(),
        ALLOWED_DIFFERENCES.join("\n  - ")
    );
}

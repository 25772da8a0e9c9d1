//! `install` with real wheels and real files: scheme layout, `#!python` rewriting, launchers,
//! INSTALLER / REQUESTED / direct_url.json, RECORD rewritten and verifiable, hard links from
//! the unpacked store, conflicts in one layer and across layers, malicious wheels refused
//! with the layer folder untouched, the CLI working offline from the cache, bytecode
//! compilation, and (with COMFYPAK_LIVE=1) real small wheels from the public index.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use comfypak::cache::Cache;
use comfypak::fetch::progress::ProgressMode;
use comfypak::fetch::{fetch_wheels, select_wheels, targets_for, FetchOptions, WheelSource};
use comfypak::http::{HttpClient, HttpSettings};
use comfypak::install::layout::EnvPaths;
use comfypak::install::link::LinkMode;
use comfypak::install::record::parse_record;
use comfypak::install::wheel::unpacked_dir;
use comfypak::install::{install_layer, InstallError, InstallOptions, InstallWheel};
use comfypak::lock::{
    ComfypakLock, Lock, LockTool, LockedLayer, LockedPackage, LockedTarget, LockedWheel,
    PackageComfypak, PackageTool, WheelHashes,
};
use comfypak::target::PythonVersion;
use comfypak_testkit::{Fault, FixtureIndex, Gate, ServerOptions, TestServer, WheelSpec};
use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;

const VENV: &str = "/opt/venv";
const SITE: &str = "opt/venv/lib/python3.14/site-packages";

/// A wheel file for a lock: where it is and what it hashes to.
#[derive(Clone)]
struct WheelFile {
    filename: String,
    sha256: String,
    size: u64,
    /// `url` (http) or `path` (relative to the lock) in the lock.
    url: Option<String>,
    path: Option<String>,
}

struct Pkg {
    name: String,
    layer: String,
    requested: bool,
    index_name: String,
    wheel: WheelFile,
}

fn pkg(name: &str, layer: &str, wheel: WheelFile) -> Pkg {
    Pkg {
        name: name.to_string(),
        layer: layer.to_string(),
        requested: false,
        index_name: "fixture".to_string(),
        wheel,
    }
}

fn write_lock(dir: &Path, python: &str, packages: &[Pkg]) -> (PathBuf, Lock) {
    let lock = Lock {
        lock_version: "1.0".into(),
        environments: vec![],
        requires_python: None,
        extras: vec![],
        dependency_groups: vec![],
        default_groups: vec![],
        created_by: "comfypak-tests".into(),
        packages: packages
            .iter()
            .map(|p| LockedPackage {
                name: p.name.parse().unwrap(),
                version: "1.0".parse().unwrap(),
                marker: None,
                requires_python: None,
                index: None,
                dependencies: vec![],
                wheels: vec![LockedWheel {
                    name: p.wheel.filename.parse().unwrap(),
                    url: p.wheel.url.clone(),
                    path: p.wheel.path.clone(),
                    upload_time: None,
                    size: Some(p.wheel.size),
                    hashes: WheelHashes::sha256(p.wheel.sha256.parse().unwrap()),
                }],
                sdist: None,
                directory: None,
                vcs: None,
                tool: PackageTool {
                    comfypak: PackageComfypak {
                        layer: p.layer.clone(),
                        index_name: p.index_name.clone(),
                        requested: p.requested,
                        ..PackageComfypak::default()
                    },
                },
            })
            .collect(),
        tool: LockTool {
            comfypak: ComfypakLock {
                stack: "test".into(),
                target: LockedTarget {
                    python: python.parse().unwrap(),
                    free_threaded: false,
                    platforms: vec!["manylinux_2_39_x86_64".parse().unwrap()],
                    venv: VENV.parse().unwrap(),
                    gpus: Vec::new(),
                    min_driver: None,
                },
                torch_backend: comfypak::cuda::Backend::Cpu,
                layers: ["stable", "deps"]
                    .iter()
                    .enumerate()
                    .map(|(i, n)| LockedLayer {
                        name: n.to_string(),
                        rank: i + 1,
                        paks: vec![],
                        inputs_hash: String::new(),
                    })
                    .collect(),
                indexes: BTreeMap::new(),
                bases: Vec::new(),
            },
        },
    };
    let path = dir.join("pylock.toml");
    lock.write(&path).unwrap();
    (path.clone(), Lock::read(&path).unwrap())
}

/// Writes `bytes` as a wheel file beside the lock and describes it by `path`.
fn local_wheel(dir: &Path, filename: &str, bytes: &[u8]) -> WheelFile {
    std::fs::write(dir.join(filename), bytes).unwrap();
    WheelFile {
        filename: filename.to_string(),
        sha256: hex::encode(Sha256::digest(bytes)),
        size: bytes.len() as u64,
        url: None,
        path: Some(filename.to_string()),
    }
}

fn spec_wheel(dir: &Path, spec: &WheelSpec) -> WheelFile {
    let built = spec.build();
    local_wheel(dir, &built.filename, &built.bytes)
}

fn env(python: &str) -> EnvPaths {
    EnvPaths {
        venv: VENV.to_string(),
        python: python.parse::<PythonVersion>().unwrap(),
    }
}

fn http() -> HttpClient {
    HttpClient::new(HttpSettings {
        backoff: Duration::from_millis(10),
        netrc: None,
        ..HttpSettings::default()
    })
    .unwrap()
}

/// Selects and fetches `layer`'s wheels for the lock's first platform.
fn prepare(lock_path: &Path, lock: &Lock, cache: &Cache, layer: &str) -> Vec<InstallWheel> {
    let target = targets_for(lock, None).unwrap().remove(0);
    let selected = select_wheels(lock, Some(&[layer.to_string()]), &target).unwrap();
    let sources: Vec<WheelSource> = selected
        .iter()
        .map(|s| WheelSource::from_selected(s, lock_path.parent().unwrap()).unwrap())
        .collect();
    let cached = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(fetch_wheels(
            &http(),
            cache,
            &sources,
            &FetchOptions {
                concurrency: 4,
                offline: false,
                progress: ProgressMode::Quiet,
            },
        ))
        .unwrap();
    selected
        .iter()
        .zip(&cached)
        .map(|(s, c)| comfypak::build::install_wheel(s, c))
        .collect()
}

fn b64_sha(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(bytes))
}

/// Checks an installed RECORD: every row but RECORD's own has the right hash and size, and
/// every file in the dist-info folder is listed.
fn verify_record(site: &Path, dist_info: &str) -> Vec<String> {
    let text = std::fs::read_to_string(site.join(dist_info).join("RECORD")).unwrap();
    let rows = parse_record(&text).unwrap();
    let mut paths = Vec::new();
    for row in &rows {
        paths.push(row.path.clone());
        if row.path == format!("{dist_info}/RECORD") {
            assert!(row.hash.is_none());
            continue;
        }
        let bytes = std::fs::read(site.join(&row.path))
            .unwrap_or_else(|e| panic!("RECORD row {}: {e}", row.path));
        let (algorithm, digest) = row.hash.clone().unwrap();
        assert_eq!(algorithm, "sha256");
        assert_eq!(digest, b64_sha(&bytes), "{}", row.path);
        assert_eq!(row.size, Some(bytes.len() as u64), "{}", row.path);
    }
    let mut stack = vec![site.join(dist_info)];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path
                .strip_prefix(site)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            assert!(paths.contains(&rel), "{rel} not in RECORD");
        }
    }
    paths
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o111 != 0
}

fn tool_spec() -> WheelSpec {
    WheelSpec::new("tool-pkg", "1.0")
        .file("tool_pkg/cli.py", "def main():\n    return 0\n")
        .executable(
            "tool_pkg-1.0.data/scripts/run-me",
            "#!python\nimport tool_pkg\nprint('run')\n",
        )
        .executable(
            "tool_pkg-1.0.data/scripts/plain.sh",
            "#!/bin/sh\necho plain\n",
        )
        .file("tool_pkg-1.0.data/headers/tool.h", "#define TOOL 1\n")
        .file(
            "tool_pkg-1.0.data/data/share/tool/readme.txt",
            "data file\n",
        )
        .entry_points("[console_scripts]\ntool = tool_pkg.cli:main\n")
}

#[test]
fn install_lays_out_schemes_scripts_launchers_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let tool = spec_wheel(dir.path(), &tool_spec());
    let direct = spec_wheel(dir.path(), &WheelSpec::new("direct-pkg", "1.0"));
    let mut tool_pkg = pkg("tool-pkg", "deps", tool);
    tool_pkg.requested = true;
    let mut direct_pkg = pkg("direct-pkg", "deps", direct.clone());
    direct_pkg.index_name = "direct".into();
    let direct_url = "http://127.0.0.1:9/wheels/direct_pkg-1.0-py3-none-any.whl";
    direct_pkg.wheel.url = Some(direct_url.into());
    // Direct URL requirement served from a local copy: the lock keeps the URL; point the
    // fetch at the file with the same bytes by pre-filling the cache.
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(cache_dir.path());
    let entry = cache.wheel_path(
        &direct.sha256.parse().unwrap(),
        &direct.filename.parse().unwrap(),
    );
    std::fs::create_dir_all(entry.parent().unwrap()).unwrap();
    std::fs::copy(dir.path().join(&direct.filename), &entry).unwrap();
    let (lock_path, lock) = write_lock(dir.path(), "3.14", &[tool_pkg, direct_pkg]);
    let wheels = prepare(&lock_path, &lock, &cache, "deps");
    let out = dir.path().join("build");
    let report = install_layer(
        &cache,
        &out,
        &env("3.14"),
        "deps",
        &wheels,
        &[],
        &InstallOptions::default(),
    )
    .unwrap();
    assert_eq!(report.packages, 2);
    let layer = out.join("layers/deps");
    assert_eq!(report.dir, layer);
    let venv = layer.join("opt/venv");
    let site = layer.join(SITE);
    assert_eq!(
        std::fs::read_to_string(site.join("tool_pkg/cli.py")).unwrap(),
        "def main():\n    return 0\n"
    );
    // #!python rewritten to the in-image interpreter, executable bit kept.
    let run_me = venv.join("bin/run-me");
    assert_eq!(
        std::fs::read_to_string(&run_me).unwrap(),
        "#!/opt/venv/bin/python\nimport tool_pkg\nprint('run')\n"
    );
    assert!(is_executable(&run_me));
    assert_eq!(
        std::fs::read_to_string(venv.join("bin/plain.sh")).unwrap(),
        "#!/bin/sh\necho plain\n"
    );
    assert!(is_executable(&venv.join("bin/plain.sh")));
    assert_eq!(
        std::fs::read_to_string(venv.join("include/site/python3.14/tool-pkg/tool.h")).unwrap(),
        "#define TOOL 1\n"
    );
    assert!(venv.join("share/tool/readme.txt").is_file());
    assert!(!site.join("tool_pkg-1.0.data").exists());
    // Console launcher.
    let launcher = std::fs::read_to_string(venv.join("bin/tool")).unwrap();
    assert!(
        launcher.starts_with("#!/opt/venv/bin/python\n"),
        "{launcher}"
    );
    assert!(launcher.contains("from tool_pkg.cli import main"));
    assert!(is_executable(&venv.join("bin/tool")));
    // Metadata files.
    let tool_info = "tool_pkg-1.0.dist-info";
    assert_eq!(
        std::fs::read_to_string(site.join(tool_info).join("INSTALLER")).unwrap(),
        "comfypak\n"
    );
    assert!(site.join(tool_info).join("REQUESTED").is_file());
    assert!(!site.join(tool_info).join("direct_url.json").exists());
    let direct_info = "direct_pkg-1.0.dist-info";
    assert!(!site.join(direct_info).join("REQUESTED").exists());
    let direct_json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(site.join(direct_info).join("direct_url.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(direct_json["url"], direct_url);
    assert_eq!(
        direct_json["archive_info"]["hashes"]["sha256"],
        direct.sha256
    );
    // RECORDs list every installed file with its real hash, scripts relative to site.
    let rows = verify_record(&site, tool_info);
    for expected in [
        "../../../bin/run-me",
        "../../../bin/tool",
        "../../../bin/plain.sh",
        "../../../include/site/python3.14/tool-pkg/tool.h",
        "../../../share/tool/readme.txt",
        "tool_pkg/cli.py",
    ] {
        assert!(
            rows.contains(&expected.to_string()),
            "{expected} not in {rows:?}"
        );
    }
    verify_record(&site, direct_info);
    // No staging leftovers.
    let names: Vec<String> = std::fs::read_dir(out.join("layers"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["deps"]);
}

#[test]
fn files_are_hard_linked_from_the_unpacked_store_and_copy_mode_copies() {
    let dir = tempfile::tempdir().unwrap();
    let tool = spec_wheel(dir.path(), &tool_spec());
    let (lock_path, lock) =
        write_lock(dir.path(), "3.14", &[pkg("tool-pkg", "deps", tool.clone())]);
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(cache_dir.path());
    let wheels = prepare(&lock_path, &lock, &cache, "deps");
    let out = dir.path().join("build");
    let report = install_layer(
        &cache,
        &out,
        &env("3.14"),
        "deps",
        &wheels,
        &[],
        &InstallOptions::default(),
    )
    .unwrap();
    assert!(report.linked > 0 && report.copied == 0, "{report:?}");
    let stored = unpacked_dir(&cache, &tool.sha256.parse().unwrap()).join("tree/tool_pkg/cli.py");
    let installed = out.join("layers/deps").join(SITE).join("tool_pkg/cli.py");
    assert_eq!(
        std::fs::metadata(&stored).unwrap().ino(),
        std::fs::metadata(&installed).unwrap().ino()
    );
    // Reinstalling replaces the layer; copy mode gives independent files.
    let copy = InstallOptions {
        link_mode: LinkMode::Copy,
        ..InstallOptions::default()
    };
    let report = install_layer(&cache, &out, &env("3.14"), "deps", &wheels, &[], &copy).unwrap();
    assert_eq!(report.linked, 0);
    assert!(report.copied > 0);
    assert_ne!(
        std::fs::metadata(&stored).unwrap().ino(),
        std::fs::metadata(&installed).unwrap().ino()
    );
    assert_eq!(
        std::fs::read(&stored).unwrap(),
        std::fs::read(&installed).unwrap()
    );
}

/// Marks a layer folder so a test can see it was not touched.
fn mark_layer(out: &Path, layer: &str) -> PathBuf {
    let marker = out.join("layers").join(layer).join("previous-build.txt");
    std::fs::create_dir_all(marker.parent().unwrap()).unwrap();
    std::fs::write(&marker, "old layer").unwrap();
    marker
}

fn assert_layer_untouched(out: &Path, layer: &str, marker: &Path) {
    assert_eq!(std::fs::read_to_string(marker).unwrap(), "old layer");
    let layer_dir = out.join("layers").join(layer);
    let entries: Vec<String> = std::fs::read_dir(&layer_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries, vec!["previous-build.txt"], "layer folder changed");
    let siblings: Vec<String> = std::fs::read_dir(out.join("layers"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        siblings,
        vec![layer.to_string()],
        "staging folder left behind"
    );
}

#[test]
fn two_packages_writing_one_path_are_a_conflict_unless_overwrite_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let a = spec_wheel(
        dir.path(),
        &WheelSpec::new("pkg-a", "1.0").file("shared/util.py", "A = 1\n"),
    );
    let b = spec_wheel(
        dir.path(),
        &WheelSpec::new("pkg-b", "1.0").file("shared/util.py", "B = 2\n"),
    );
    let (lock_path, lock) = write_lock(
        dir.path(),
        "3.14",
        &[pkg("pkg-a", "deps", a), pkg("pkg-b", "deps", b)],
    );
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(cache_dir.path());
    let wheels = prepare(&lock_path, &lock, &cache, "deps");
    let out = dir.path().join("build");
    let marker = mark_layer(&out, "deps");
    let err = install_layer(
        &cache,
        &out,
        &env("3.14"),
        "deps",
        &wheels,
        &[],
        &InstallOptions::default(),
    )
    .unwrap_err();
    let InstallError::Conflicts { conflicts } = &err else {
        panic!("expected a conflict, got {err}");
    };
    assert_eq!(conflicts.len(), 1);
    let text = comfypak::diagnostic::with_help(&err);
    assert!(
        text.contains("lib/python3.14/site-packages/shared/util.py")
            && text.contains("pkg-a (layer deps)")
            && text.contains("pkg-b (layer deps)")
            && text.contains("--allow-overwrite"),
        "{text}"
    );
    assert_layer_untouched(&out, "deps", &marker);

    let allow = InstallOptions {
        allow_overwrite: true,
        ..InstallOptions::default()
    };
    let report = install_layer(&cache, &out, &env("3.14"), "deps", &wheels, &[], &allow).unwrap();
    assert_eq!(report.overwritten.len(), 1);
    assert_eq!(
        std::fs::read_to_string(out.join("layers/deps").join(SITE).join("shared/util.py")).unwrap(),
        "B = 2\n"
    );
    assert!(!marker.exists(), "the old layer is replaced as a whole");
}

#[test]
fn a_path_also_written_by_another_layer_is_reported_with_both_layers() {
    let dir = tempfile::tempdir().unwrap();
    let stable = spec_wheel(
        dir.path(),
        &WheelSpec::new("base-lib", "1.0").file("common/conf.py", "X = 1\n"),
    );
    let deps = spec_wheel(
        dir.path(),
        &WheelSpec::new("app-lib", "1.0").file("common/conf.py", "X = 2\n"),
    );
    let (lock_path, _) = write_lock(
        dir.path(),
        "3.14",
        &[
            pkg("base-lib", "stable", stable),
            pkg("app-lib", "deps", deps),
        ],
    );
    let cache_dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("build");
    let comfypak = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_comfypak"))
            .args(args)
            .arg("--lock")
            .arg(&lock_path)
            .arg("--cache-dir")
            .arg(cache_dir.path())
            .output()
            .unwrap()
    };
    let fetched = comfypak(&["--quiet", "fetch", "--all"]);
    assert!(
        fetched.status.success(),
        "{}",
        String::from_utf8_lossy(&fetched.stderr)
    );
    let marker = mark_layer(&out, "deps");
    let failed = comfypak(&["install", "--layer", "deps", "--out", out.to_str().unwrap()]);
    assert_eq!(failed.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        stderr.contains("common/conf.py")
            && stderr.contains("base-lib (layer stable)")
            && stderr.contains("app-lib (layer deps)"),
        "{stderr}"
    );
    assert_layer_untouched(&out, "deps", &marker);

    let ok = comfypak(&[
        "install",
        "--layer",
        "deps",
        "--allow-overwrite",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stderr).contains("overwritten: "));
    assert_eq!(
        std::fs::read_to_string(out.join("layers/deps").join(SITE).join("common/conf.py")).unwrap(),
        "X = 2\n"
    );
}

/// A zip with the given members (name, bytes, unix mode), a dist-info with METADATA and
/// WHEEL, and a RECORD computed from the members unless `record` is given.
fn raw_wheel(
    members: &[(&str, &[u8], u32)],
    symlinks: &[(&str, &str)],
    record: Option<&str>,
    duplicate: Option<(&str, &[u8])>,
) -> Vec<u8> {
    let dist = "bad_pkg-1.0.dist-info";
    let mut all: Vec<(String, Vec<u8>, u32)> = members
        .iter()
        .map(|(n, b, m)| (n.to_string(), b.to_vec(), *m))
        .collect();
    all.push((
        format!("{dist}/METADATA"),
        b"Metadata-Version: 2.4\nName: bad-pkg\nVersion: 1.0\n".to_vec(),
        0o644,
    ));
    all.push((
        format!("{dist}/WHEEL"),
        b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n".to_vec(),
        0o644,
    ));
    let record_text = match record {
        Some(text) => text.to_string(),
        None => {
            let mut text: String = all
                .iter()
                .map(|(n, b, _)| format!("{n},sha256={},{}\n", b64_sha(b), b.len()))
                .collect();
            text.push_str(&format!("{dist}/RECORD,,\n"));
            text
        }
    };
    all.push((format!("{dist}/RECORD"), record_text.into_bytes(), 0o644));
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes, mode) in &all {
        let options = SimpleFileOptions::default().unix_permissions(*mode);
        zip.start_file(name.as_str(), options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    for (name, target) in symlinks {
        zip.add_symlink(*name, *target, SimpleFileOptions::default())
            .unwrap();
    }
    let mut bytes = zip.finish().unwrap().into_inner();
    if let Some((name, content)) = duplicate {
        // Rename a member in place (same length) so the archive holds the name twice.
        let needle = name.replace("dup", "one");
        let _ = content;
        let mut i = 0;
        while let Some(pos) = find(&bytes[i..], needle.as_bytes()) {
            bytes[i + pos..i + pos + needle.len()].copy_from_slice(name.as_bytes());
            i += pos + needle.len();
        }
    }
    bytes
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn malicious_wheels_are_refused_and_the_layer_folder_is_untouched() {
    let good = b"print('ok')\n";
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "zip slip",
            raw_wheel(&[("../../evil.py", b"pwned", 0o644)], &[], None, None),
            "`..` component",
        ),
        (
            "absolute path",
            raw_wheel(&[("/tmp/evil.py", b"pwned", 0o644)], &[], None, None),
            "absolute path",
        ),
        (
            "symlink",
            raw_wheel(
                &[("bad_pkg/__init__.py", good, 0o644)],
                &[("bad_pkg/link", "/etc/passwd")],
                None,
                None,
            ),
            "symbolic links",
        ),
        (
            "RECORD hash mismatch",
            raw_wheel(
                &[("bad_pkg/__init__.py", good, 0o644)],
                &[],
                Some(&format!(
                    "bad_pkg/__init__.py,sha256={},{}\nbad_pkg-1.0.dist-info/METADATA,,\nbad_pkg-1.0.dist-info/WHEEL,,\nbad_pkg-1.0.dist-info/RECORD,,\n",
                    b64_sha(b"something else"),
                    good.len()
                )),
                None,
            ),
            "does not match RECORD",
        ),
        (
            "file missing from RECORD",
            raw_wheel(
                &[("bad_pkg/__init__.py", good, 0o644), ("bad_pkg/sneaky.py", b"x", 0o644)],
                &[],
                Some(&format!(
                    "bad_pkg/__init__.py,sha256={},{}\nbad_pkg-1.0.dist-info/RECORD,,\n",
                    b64_sha(good),
                    good.len()
                )),
                None,
            ),
            "not listed (with a hash)",
        ),
        (
            "duplicate member",
            raw_wheel(
                &[("bad_pkg/one.py", good, 0o644), ("bad_pkg/dup.py", b"x = 2\n", 0o644)],
                &[],
                None,
                Some(("bad_pkg/dup.py", b"")),
            ),
            "appears twice",
        ),
    ];
    for (label, bytes, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let wheel = local_wheel(dir.path(), "bad_pkg-1.0-py3-none-any.whl", &bytes);
        let (lock_path, lock) =
            write_lock(dir.path(), "3.14", &[pkg("bad-pkg", "deps", wheel.clone())]);
        let cache_dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(cache_dir.path());
        let wheels = prepare(&lock_path, &lock, &cache, "deps");
        let out = dir.path().join("build");
        let marker = mark_layer(&out, "deps");
        let err = install_layer(
            &cache,
            &out,
            &env("3.14"),
            "deps",
            &wheels,
            &[],
            &InstallOptions::default(),
        )
        .err()
        .unwrap_or_else(|| panic!("{label}: the wheel was installed"));
        let text = err.to_string();
        assert!(text.contains(expected), "{label}: {text}");
        assert!(
            text.contains("bad_pkg-1.0-py3-none-any.whl"),
            "{label}: {text}"
        );
        assert_layer_untouched(&out, "deps", &marker);
        // Nothing escaped, and the store holds no entry for the wheel.
        assert!(!dir.path().join("evil.py").exists() && !Path::new("/tmp/evil.py").exists());
        assert!(
            !unpacked_dir(&cache, &wheel.sha256.parse().unwrap()).exists(),
            "{label}"
        );
        let tmp: Vec<_> = std::fs::read_dir(cache_dir.path().join("tmp"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(tmp.is_empty(), "{label}: {tmp:?}");
    }
}

#[test]
fn install_cli_works_offline_from_the_cache() {
    let specs = vec![tool_spec(), WheelSpec::new("base-lib", "1.0")];
    let mut builder = FixtureIndex::builder();
    for s in &specs {
        builder = builder.wheel(s.clone());
    }
    let server = TestServer::serve_index(&builder.build(), ServerOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let remote = |spec: &WheelSpec| {
        let built = spec.build();
        WheelFile {
            url: Some(server.file_url(&built.filename)),
            path: None,
            filename: built.filename.clone(),
            sha256: built.sha256.clone(),
            size: built.size(),
        }
    };
    let (lock_path, _) = write_lock(
        dir.path(),
        "3.14",
        &[
            pkg("tool-pkg", "deps", remote(&specs[0])),
            pkg("base-lib", "stable", remote(&specs[1])),
        ],
    );
    let cache_dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("build");
    let comfypak = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_comfypak"))
            .args(args)
            .arg("--lock")
            .arg(&lock_path)
            .arg("--out")
            .arg(&out)
            .env("COMFYPAK_CACHE_DIR", cache_dir.path())
            .output()
            .unwrap()
    };
    // Offline with an empty cache: a clear error, nothing written.
    let cold = comfypak(&["install", "--all", "--offline"]);
    assert_eq!(cold.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&cold.stderr).contains("--offline"));
    assert!(!out.exists());
    // Online once (install fetches what it lacks), then offline with the server gone.
    let first = comfypak(&["install", "--layer", "deps", "--layer", "stable"]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    drop(server);
    std::fs::remove_dir_all(&out).unwrap();
    let offline = comfypak(&["install", "--all", "--offline"]);
    let stdout = String::from_utf8_lossy(&offline.stdout);
    assert!(
        offline.status.success(),
        "{}",
        String::from_utf8_lossy(&offline.stderr)
    );
    assert!(
        stdout.contains("installed layer stable") && stdout.contains("installed layer deps"),
        "{stdout}"
    );
    assert!(out
        .join("layers/deps")
        .join(SITE)
        .join("tool_pkg/cli.py")
        .is_file());
    assert!(out
        .join("layers/stable")
        .join(SITE)
        .join("base_lib/__init__.py")
        .is_file());
    assert!(!out
        .join("layers/stable")
        .join(SITE)
        .join("tool_pkg")
        .exists());
    assert!(is_executable(&out.join("layers/deps/opt/venv/bin/tool")));
}

#[test]
fn a_downloaded_wheel_is_unpacked_while_the_others_still_download() {
    let specs = vec![tool_spec(), WheelSpec::new("late-lib", "1.0")];
    let mut builder = FixtureIndex::builder();
    for s in &specs {
        builder = builder.wheel(s.clone());
    }
    let server = TestServer::serve_index(&builder.build(), ServerOptions::default());
    let (early, late) = (specs[0].build(), specs[1].build());
    // `late-lib` is held by the server (retries too) until `tool-pkg` is in the unpacked
    // store: an install that unpacked only after every download would not get past it.
    let gate = Gate::new();
    server.inject(Fault::Hold {
        path_suffix: late.filename.clone(),
        gate: gate.clone(),
        times: 1000,
    });
    let dir = tempfile::tempdir().unwrap();
    let remote = |built: &comfypak_testkit::BuiltWheel| WheelFile {
        url: Some(server.file_url(&built.filename)),
        path: None,
        filename: built.filename.clone(),
        sha256: built.sha256.clone(),
        size: built.size(),
    };
    let (lock_path, _) = write_lock(
        dir.path(),
        "3.14",
        &[
            pkg("tool-pkg", "deps", remote(&early)),
            pkg("late-lib", "deps", remote(&late)),
        ],
    );
    let cache_dir = dir.path().join("cache");
    let entry =
        unpacked_dir(&Cache::new(&cache_dir), &early.sha256.parse().unwrap()).join("manifest.json");
    let opener = {
        let gate = gate.clone();
        std::thread::spawn(move || {
            // A bound against a hang, not a timing assertion.
            let deadline = std::time::Instant::now() + Duration::from_secs(120);
            let mut unpacked = entry.is_file();
            while !unpacked && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
                unpacked = entry.is_file();
            }
            gate.open();
            unpacked
        })
    };
    let session = comfypak::build::Session::new(comfypak::build::NetworkOptions {
        cache_dir: Some(cache_dir.clone()),
        ..Default::default()
    })
    .unwrap();
    let out = dir.path().join("build");
    let reports = comfypak::build::install(
        &session,
        &comfypak::build::InstallRequest {
            lock: lock_path,
            layers: vec!["deps".to_string()],
            out: out.clone(),
            ..Default::default()
        },
        &comfypak::build::Silent,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        opener.join().unwrap(),
        "tool-pkg was not unpacked while late-lib was still downloading"
    );
    assert_eq!(reports[0].packages, 2);
    let site = out.join("layers/deps").join(SITE);
    assert!(site.join("tool_pkg/cli.py").is_file());
    assert!(site.join("late_lib/__init__.py").is_file());
}

#[test]
#[ignore = "live: set COMFYPAK_LIVE=1 and run with --ignored"]
fn live_fetch_and_install_of_real_small_wheels() {
    crate::live::require_live();
    use comfypak::index::client::{CachePolicy, IndexClient};
    use comfypak::index::definition::IndexDefs;
    let defs = IndexDefs::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("indexes")).unwrap();
    let pypi = defs.get("pypi").unwrap().clone();
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(cache_dir.path());
    let client = IndexClient::new(http(), cache.clone(), CachePolicy::default());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut packages = Vec::new();
    for name in ["six", "idna", "packaging"] {
        let files = rt
            .block_on(client.project_files(&pypi, &name.parse().unwrap()))
            .unwrap()
            .unwrap();
        let file = files
            .iter()
            .rev()
            .find(|f| {
                f.filename.ends_with("-py3-none-any.whl")
                    || f.filename.ends_with("py2.py3-none-any.whl")
            })
            .filter(|f| f.hashes.sha256.is_some())
            .unwrap_or_else(|| panic!("no pure wheel of {name}"));
        let mut p = pkg(
            name,
            "deps",
            WheelFile {
                filename: file.filename.clone(),
                sha256: file.hashes.sha256.clone().unwrap(),
                size: file.size.unwrap_or(0),
                url: Some(file.url.to_string()),
                path: None,
            },
        );
        p.requested = true;
        packages.push(p);
    }
    // Sizes are only known from JSON pages; a 0 would fail verification, so drop unknown ones.
    let (lock_path, mut lock) = write_lock(dir.path(), "3.14", &packages);
    for p in &mut lock.packages {
        for w in &mut p.wheels {
            if w.size == Some(0) {
                w.size = None;
            }
        }
    }
    lock.write(&lock_path).unwrap();
    let wheels = prepare(&lock_path, &lock, &cache, "deps");
    let out = dir.path().join("build");
    let report = install_layer(
        &cache,
        &out,
        &env("3.14"),
        "deps",
        &wheels,
        &[],
        &InstallOptions::default(),
    )
    .unwrap();
    assert_eq!(report.packages, 3);
    let site = out.join("layers/deps").join(SITE);
    assert!(site.join("six.py").is_file());
    assert!(site.join("idna/__init__.py").is_file());
    assert!(site.join("packaging/version.py").is_file());
    for entry in std::fs::read_dir(&site).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".dist-info") {
            verify_record(&site, &name);
        }
    }
}

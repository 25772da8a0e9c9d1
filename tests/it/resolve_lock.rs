//! Resolutions → one PEP 751 lock: layer assignment, one entry per version with platform
//! markers, `[tool.comfypak]` data, deterministic bytes, inputs hashes per layer, and uv (a
//! real PEP 751 reader) installing the locked set. The `comfypak resolve` command end to end
//! on fixture indexes: summary, minimal churn, `--locked`, `--frozen`, multi-platform.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use comfypak::index::page::DistFile;
use comfypak::lock::{Lock, LockSummary};
use comfypak::pak::Location;
use comfypak::resolve::layers::{assign_checked, assign_layers, check_layers, LayerError};
use comfypak::resolve::to_lock::{build_lock, preferences_for, UpgradeRequest};
use comfypak::resolve::{Resolution, ResolvedPackage};
use comfypak::stack::Stack;
use comfypak::target::Target;
use comfypak_testkit::{FixtureIndex, ServerOptions, TestServer, WheelSpec};
use pep440_rs::Version;

use crate::common::{client, name, rt, write_index_definitions};

const X86: &str = "3.14:manylinux_2_39_x86_64";
const ARM: &str = "3.14:manylinux_2_39_aarch64";
const TAG_X86: &str = "cp314-cp314-manylinux_2_28_x86_64";
const TAG_ARM: &str = "cp314-cp314-manylinux_2_28_aarch64";

fn target(text: &str) -> Target {
    Target::from_str(text).unwrap()
}

/// A stack folder `dir/pak` with `indexes/fixture.toml` pointing at `index_url`.
/// `layers`: (layer name, [(pak file, contents)]).
fn write_stack(
    dir: &Path,
    index_url: &str,
    layers: &[(&str, &[(&str, &str)])],
    platforms: &[&str],
) -> PathBuf {
    let indexes = dir.join("indexes");
    std::fs::create_dir_all(&indexes).unwrap();
    std::fs::write(
        indexes.join("fixture.toml"),
        format!("name = \"fixture\"\nurl = \"{index_url}\"\nkind = \"simple\"\n"),
    )
    .unwrap();
    let pak = dir.join("pak");
    std::fs::create_dir_all(&pak).unwrap();
    let mut manifest = format!(
        "[stack]\nname = \"demo\"\nindex-dir = \"../indexes\"\n\n[target]\npython = \"3.14\"\n\
         platforms = [{}]\nvenv = \"/opt/venv\"\ntorch-backend = \"cu130\"\n\n\
         [indexes]\ndefault = [\"fixture\"]\n",
        platforms
            .iter()
            .map(|p| format!("\"{p}\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (layer, files) in layers {
        manifest.push_str(&format!(
            "\n[[layer]]\nname = \"{layer}\"\npaks = [{}]\n",
            files
                .iter()
                .map(|(f, _)| format!("\"{f}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        for (file, contents) in *files {
            std::fs::write(pak.join(file), contents).unwrap();
        }
    }
    std::fs::write(pak.join("stack.toml"), manifest).unwrap();
    pak
}

/// A DistFile as an index would list it (no network): for hand-built resolutions.
fn dist(filename: &str, sha_char: char, size: u64) -> DistFile {
    DistFile {
        filename: filename.to_string(),
        url: url::Url::parse(&format!("http://127.0.0.1:9/files/{filename}")).unwrap(),
        hashes: comfypak::index::page::Hashes {
            sha256: Some(sha_char.to_string().repeat(64)),
            other: BTreeMap::new(),
        },
        requires_python: None,
        yanked: Default::default(),
        core_metadata: Default::default(),
        size: Some(size),
        upload_time: Some("2026-01-02T03:04:05.123456Z".to_string()),
    }
}

fn package(n: &str, version: &str, wheel: DistFile, deps: &[&str]) -> ResolvedPackage {
    ResolvedPackage {
        name: name(n),
        version: Version::from_str(version).unwrap(),
        index: "fixture".to_string(),
        index_url: "http://127.0.0.1:9/simple/".to_string(),
        wheel,
        requires_python: None,
        dependencies: deps.iter().map(|d| name(d)).collect(),
        extras: BTreeSet::new(),
        requested_by: Vec::new(),
        build: None,
    }
}

fn pure(n: &str, version: &str, deps: &[&str]) -> ResolvedPackage {
    let file = format!("{}-{version}-py3-none-any.whl", n.replace('-', "_"));
    package(n, version, dist(&file, 'a', 1000), deps)
}

fn resolution(
    target_text: &str,
    packages: Vec<ResolvedPackage>,
    roots: &[(&str, &[&str])],
) -> Resolution {
    Resolution {
        target: target(target_text),
        backend: comfypak::cuda::Backend::Cu130,
        packages: packages.into_iter().map(|p| (p.name.clone(), p)).collect(),
        roots: roots
            .iter()
            .map(|(layer, names)| (layer.to_string(), names.iter().map(|n| name(n)).collect()))
            .collect(),
    }
}

/// stable: pak1 (a); deps: pak2 (d); volatile: pak9 (f). Index URL is a placeholder.
fn three_layer_stack(dir: &Path, platforms: &[&str]) -> Stack {
    let pak = write_stack(
        dir,
        "http://127.0.0.1:9/simple/",
        &[
            ("stable", &[("pak1.txt", "a\n")]),
            ("deps", &[("pak2.txt", "# deps\nd\n")]),
            ("volatile", &[("pak9.txt", "f\n")]),
        ],
        platforms,
    );
    Stack::load(&pak).unwrap()
}

fn graph() -> Vec<ResolvedPackage> {
    vec![
        pure("a", "1.0", &["b"]),
        pure("b", "1.0", &["c"]),
        pure("c", "1.0", &[]),
        pure("d", "1.0", &["b", "e"]),
        pure("e", "1.0", &[]),
        pure("f", "1.0", &["e", "g"]),
        pure("g", "1.0", &["c"]),
    ]
}

const ROOTS: &[(&str, &[&str])] = &[("stable", &["a"]), ("deps", &["d"]), ("volatile", &["f"])];

#[test]
fn lock_layers_go_to_the_most_stable_layer_that_needs_them() {
    let dir = tempfile::tempdir().unwrap();
    let stack = three_layer_stack(dir.path(), &["manylinux_2_39_x86_64"]);
    // Roots in a scrambled order: the stack's order decides.
    let roots: &[(&str, &[&str])] = &[("volatile", &["f"]), ("deps", &["d"]), ("stable", &["a"])];
    let r = resolution(X86, graph(), roots);
    let layers = assign_checked(&r, &stack).unwrap();
    let got: Vec<(String, String)> = layers
        .iter()
        .map(|(n, l)| (n.to_string(), l.clone()))
        .collect();
    let expect = [
        ("a", "stable"),
        ("b", "stable"),
        ("c", "stable"),
        ("d", "deps"),
        ("e", "deps"),
        ("f", "volatile"),
        ("g", "volatile"),
    ];
    assert_eq!(
        got,
        expect
            .iter()
            .map(|(n, l)| (n.to_string(), l.to_string()))
            .collect::<Vec<_>>()
    );
}

#[test]
fn lock_layer_check_reports_unreached_and_unknown_layers() {
    let dir = tempfile::tempdir().unwrap();
    let stack = three_layer_stack(dir.path(), &["manylinux_2_39_x86_64"]);
    let mut packages = graph();
    packages.push(pure("orphan", "1.0", &[]));
    let r = resolution(X86, packages, ROOTS);
    let layers = assign_layers(&r, &stack);
    let err = check_layers(&r, &layers, &stack).unwrap_err();
    assert_eq!(
        err,
        LayerError::Unassigned {
            target: X86.to_string(),
            names: vec!["orphan".to_string()]
        }
    );
    assert!(err.to_string().contains("orphan"), "{err}");

    let r = resolution(X86, graph(), &[("stable", &["a"]), ("nightly", &["f"])]);
    let err = assign_checked(&r, &stack).unwrap_err();
    assert!(
        matches!(&err, LayerError::UnknownLayer { layer, .. } if layer == "nightly"),
        "{err}"
    );
    assert!(err.to_string().contains("stable, deps, volatile"), "{err}");
}

#[test]
fn lock_merges_platforms_into_one_entry_or_marked_entries() {
    let dir = tempfile::tempdir().unwrap();
    let stack = three_layer_stack(
        dir.path(),
        &["manylinux_2_39_x86_64", "manylinux_2_39_aarch64"],
    );
    // a: same version, a platform wheel each → one entry with both wheels.
    // c: same pure wheel on both → one entry, one wheel.
    // e: 1.0 on x86_64, 2.0 on aarch64 → two marked entries.
    // only-arm: needed by d on aarch64 only → one marked entry.
    let a_x86 = package(
        "a",
        "1.0",
        dist(&format!("a-1.0-{TAG_X86}.whl"), '1', 100),
        &["b"],
    );
    let a_arm = package(
        "a",
        "1.0",
        dist(&format!("a-1.0-{TAG_ARM}.whl"), '2', 200),
        &["b"],
    );
    let mut x86 = graph();
    x86[0] = a_x86;
    let mut arm = graph();
    arm[0] = a_arm;
    arm[3] = pure("d", "1.0", &["b", "e", "only-arm"]);
    arm[4] = pure("e", "2.0", &[]);
    arm.push(pure("only-arm", "0.5", &[]));
    let rx = resolution(X86, x86, ROOTS);
    let ra = resolution(ARM, arm, ROOTS);
    let layers = vec![
        assign_checked(&rx, &stack).unwrap(),
        assign_checked(&ra, &stack).unwrap(),
    ];
    let lock = build_lock(&stack, &[rx, ra], &layers).unwrap();

    assert_eq!(lock.lock_version, "1.0");
    assert_eq!(lock.created_by, "comfypak");
    assert_eq!(lock.requires_python.as_deref(), Some("==3.14.*"));
    assert_eq!(
        lock.environments,
        vec![
            "sys_platform == 'linux' and platform_machine == 'x86_64'".to_string(),
            "sys_platform == 'linux' and platform_machine == 'aarch64'".to_string(),
        ]
    );
    let entries = |n: &str| -> Vec<&comfypak::lock::LockedPackage> {
        lock.packages
            .iter()
            .filter(|p| p.name.as_ref() == n)
            .collect()
    };
    let a = entries("a");
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].marker, None);
    assert!(a[0].tool.comfypak.platforms.is_empty());
    let mut wheel_names: Vec<&str> = a[0].wheels.iter().map(|w| w.name.as_str()).collect();
    wheel_names.sort();
    assert_eq!(
        wheel_names,
        vec![
            format!("a-1.0-{TAG_ARM}.whl").as_str(),
            format!("a-1.0-{TAG_X86}.whl").as_str()
        ]
    );
    assert_eq!(a[0].tool.comfypak.layer, "stable");
    assert_eq!(entries("c")[0].wheels.len(), 1);

    let e = entries("e");
    assert_eq!(e.len(), 2);
    let by_version: BTreeMap<String, &comfypak::lock::LockedPackage> =
        e.iter().map(|p| (p.version.to_string(), *p)).collect();
    assert_eq!(
        by_version["1.0"].marker.as_deref(),
        Some("platform_machine == 'x86_64'")
    );
    assert_eq!(
        by_version["1.0"].tool.comfypak.platforms,
        vec!["manylinux_2_39_x86_64".parse().unwrap()]
    );
    assert_eq!(
        by_version["2.0"].marker.as_deref(),
        Some("platform_machine == 'aarch64'")
    );
    let only = entries("only-arm");
    assert_eq!(only.len(), 1);
    assert_eq!(
        only[0].marker.as_deref(),
        Some("platform_machine == 'aarch64'")
    );
    assert_eq!(only[0].tool.comfypak.layer, "deps");
    // d's entry names e with the version only where it is ambiguous... d is one entry for
    // both platforms, whose e differs: no version then.
    let d = entries("d");
    assert_eq!(d.len(), 1);
    let d_deps: Vec<(&str, Option<String>)> = d[0]
        .dependencies
        .iter()
        .map(|dep| {
            (
                dep.name.as_ref(),
                dep.version.as_ref().map(ToString::to_string),
            )
        })
        .collect();
    assert_eq!(d_deps, vec![("b", None), ("e", None), ("only-arm", None)]);

    // The summary counts per platform only the wheel that platform installs.
    let summary = LockSummary::of(&lock).unwrap();
    let stable = &summary.layers[0];
    assert_eq!(stable.name, "stable");
    assert_eq!(stable.packages, 3);
    assert_eq!(stable.bytes["manylinux_2_39_x86_64"], 100 + 1000 + 1000);
    assert_eq!(stable.bytes["manylinux_2_39_aarch64"], 200 + 1000 + 1000);
    let deps = &summary.layers[1];
    assert_eq!(deps.packages, 3);
    assert_eq!(deps.bytes["manylinux_2_39_x86_64"], 2000);
    assert_eq!(deps.bytes["manylinux_2_39_aarch64"], 3000);
    assert_eq!(
        summary.total_bytes,
        summary.layers.iter().map(|l| l.total_bytes).sum::<u64>()
    );

    // Preferences per platform come back from the lock.
    let prefs_x86 = preferences_for(&lock, &target(X86), &UpgradeRequest::default());
    let prefs_arm = preferences_for(&lock, &target(ARM), &UpgradeRequest::default());
    assert_eq!(prefs_x86[&name("e")].to_string(), "1.0");
    assert_eq!(prefs_arm[&name("e")].to_string(), "2.0");
    assert!(!prefs_x86.contains_key(&name("only-arm")));
    assert!(prefs_arm.contains_key(&name("only-arm")));
    let upgrade_e = UpgradeRequest {
        all: false,
        packages: BTreeSet::from([name("e")]),
    };
    assert!(!preferences_for(&lock, &target(ARM), &upgrade_e).contains_key(&name("e")));
    let all = UpgradeRequest {
        all: true,
        packages: BTreeSet::new(),
    };
    assert!(preferences_for(&lock, &target(ARM), &all).is_empty());
}

#[test]
fn lock_tool_data_required_by_and_deterministic_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let stack = three_layer_stack(dir.path(), &["manylinux_2_39_x86_64"]);
    let pak = dir.path().join("pak");
    let at = |file: &str, line: usize| Location {
        file: pak.join(file),
        line,
        column: 1,
    };
    let mut packages = graph();
    packages[0].requested_by = vec![at("pak1.txt", 1)];
    packages[3].requested_by = vec![at("pak2.txt", 2)];
    // `e` is named by the volatile pak too, but lives in deps: the volatile line must not
    // show on the deps entry (it would change a more stable layer's bytes).
    packages[4].requested_by = vec![at("pak9.txt", 7)];
    packages[5].requested_by = vec![at("pak9.txt", 1)];
    let r = resolution(X86, packages, ROOTS);
    let layers = vec![assign_checked(&r, &stack).unwrap()];
    let lock = build_lock(&stack, std::slice::from_ref(&r), &layers).unwrap();
    let get = |n: &str| lock.packages.iter().find(|p| p.name.as_ref() == n).unwrap();
    assert_eq!(get("a").tool.comfypak.required_by, vec!["pak1.txt:1"]);
    assert!(get("a").tool.comfypak.requested);
    assert_eq!(get("d").tool.comfypak.required_by, vec!["pak2.txt:2"]);
    assert!(get("e").tool.comfypak.required_by.is_empty());
    assert!(!get("e").tool.comfypak.requested);
    assert!(!get("b").tool.comfypak.requested);
    assert_eq!(get("a").tool.comfypak.index_name, "fixture");
    assert_eq!(
        get("a").index.as_deref(),
        Some("http://127.0.0.1:9/simple/")
    );
    let wheel = &get("a").wheels[0];
    assert_eq!(wheel.size, Some(1000));
    assert_eq!(
        wheel.sha256().map(|s| s.as_str()),
        Some("a".repeat(64).as_str())
    );
    assert_eq!(
        wheel.upload_time.as_ref().map(|t| t.to_string()).as_deref(),
        Some("2026-01-02T03:04:05.123456Z")
    );

    let c = &lock.tool.comfypak;
    assert_eq!(c.stack, "demo");
    assert_eq!(c.torch_backend.to_string(), "cu130");
    assert_eq!(c.target.python.to_string(), "3.14");
    assert_eq!(
        c.target.platforms,
        vec!["manylinux_2_39_x86_64".parse().unwrap()]
    );
    assert_eq!(
        c.layers
            .iter()
            .map(|l| (l.name.as_str(), l.rank, l.paks.clone()))
            .collect::<Vec<_>>(),
        vec![
            ("stable", 1, vec!["pak1.txt".to_string()]),
            ("deps", 2, vec!["pak2.txt".to_string()]),
            ("volatile", 3, vec!["pak9.txt".to_string()]),
        ]
    );
    assert!(c.layers.iter().all(
        |l| l.inputs_hash.starts_with("sha256:") && l.inputs_hash.len() == "sha256:".len() + 64
    ));
    assert_eq!(c.indexes["fixture"], "http://127.0.0.1:9/simple/");

    // Same inputs → same bytes; the file reads back as the same lock.
    let again = build_lock(&stack, std::slice::from_ref(&r), &layers).unwrap();
    assert_eq!(lock.to_toml_string(), again.to_toml_string());
    let path = dir.path().join("pylock.toml");
    lock.write(&path).unwrap();
    let first = std::fs::read(&path).unwrap();
    again.write(&path).unwrap();
    assert_eq!(first, std::fs::read(&path).unwrap());
    let back = Lock::read(&path).unwrap();
    assert_eq!(back.to_toml_string().as_bytes(), first.as_slice());
    let text = String::from_utf8(first).unwrap();
    assert!(text.starts_with("lock-version = \"1.0\"\n"), "{text}");
    assert!(
        text.contains("upload-time = 2026-01-02T03:04:05.123456Z"),
        "{text}"
    );
    assert!(text.contains("[packages.tool.comfypak]"), "{text}");
}

#[test]
fn lock_inputs_hash_changes_only_for_the_edited_layer() {
    let dir = tempfile::tempdir().unwrap();
    let stack = three_layer_stack(dir.path(), &["manylinux_2_39_x86_64"]);
    let r = resolution(X86, graph(), ROOTS);
    let layers = vec![assign_checked(&r, &stack).unwrap()];
    let before = build_lock(&stack, std::slice::from_ref(&r), &layers).unwrap();

    // A comment and a blank line change nothing; a new requirement changes its layer only.
    std::fs::write(dir.path().join("pak/pak2.txt"), "# deps, edited\n\nd\n").unwrap();
    let stack2 = Stack::load(&dir.path().join("pak")).unwrap();
    let same = build_lock(&stack2, std::slice::from_ref(&r), &layers).unwrap();
    assert_eq!(before.tool.comfypak.layers, same.tool.comfypak.layers);

    std::fs::write(dir.path().join("pak/pak9.txt"), "f\ng>=1\n").unwrap();
    let stack3 = Stack::load(&dir.path().join("pak")).unwrap();
    let after = build_lock(&stack3, std::slice::from_ref(&r), &layers).unwrap();
    let changed: Vec<&str> = before
        .tool
        .comfypak
        .layers
        .iter()
        .zip(&after.tool.comfypak.layers)
        .filter(|(a, b)| a.inputs_hash != b.inputs_hash)
        .map(|(a, _)| a.name.as_str())
        .collect();
    assert_eq!(changed, vec!["volatile"]);
}

#[test]
fn lock_marker_cannot_split_platforms_of_one_architecture() {
    let dir = tempfile::tempdir().unwrap();
    let stack = three_layer_stack(
        dir.path(),
        &["manylinux_2_39_x86_64", "musllinux_1_2_x86_64"],
    );
    let mut musl = graph();
    musl[2] = pure("c", "2.0", &[]);
    let r1 = resolution(X86, graph(), ROOTS);
    let r2 = resolution("3.14:musllinux_1_2_x86_64", musl, ROOTS);
    let layers = vec![
        assign_checked(&r1, &stack).unwrap(),
        assign_checked(&r2, &stack).unwrap(),
    ];
    let err = build_lock(&stack, &[r1, r2], &layers).unwrap_err();
    let text = comfypak::diagnostic::with_help(&err);
    assert!(text.starts_with("c: "), "{text}");
    assert!(text.contains("musllinux_1_2_x86_64"), "{text}");
    assert!(text.contains("--platform"), "{text}");
}

// ---------------------------------------------------------------------------------------
// uv, a real PEP 751 reader, installs the locked set.

fn uv() -> Option<PathBuf> {
    match std::env::var_os("COMFYPAK_UV") {
        Some(path) => Some(PathBuf::from(path)),
        None if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("COMFYPAK_UV is not set: .ci/setup.d/20-uv.sh installs uv and exports it")
        }
        None => {
            eprintln!("note: COMFYPAK_UV is not set; skipping the uv check (CI runs it)");
            None
        }
    }
}

/// The files the fixture server lists for each project (real HTTP through the index client).
fn listed(stack: &Stack, cache: &Path, names: &[&str]) -> BTreeMap<String, DistFile> {
    let client = client(cache);
    let mut out = BTreeMap::new();
    rt().block_on(async {
        for n in names {
            let found = client.candidates(&stack.indexes, &name(n)).await.unwrap();
            for file in found.files {
                out.insert(file.filename.clone(), file);
            }
        }
    });
    out
}

fn oracle_index(nodot: &str) -> FixtureIndex {
    FixtureIndex::builder()
        .wheel(WheelSpec::new("app-core", "1.2.0").requires("helper>=1"))
        .wheel(WheelSpec::new("helper", "1.5.0"))
        .wheel(
            WheelSpec::new("native", "3.0.0")
                .tag(format!("cp{nodot}-cp{nodot}-manylinux_2_28_x86_64")),
        )
        .wheel(
            WheelSpec::new("native", "3.0.0")
                .tag(format!("cp{nodot}-cp{nodot}-manylinux_2_28_aarch64")),
        )
        .wheel(WheelSpec::new("armonly", "0.1.0"))
        .upload_time("helper", "1.5.0", "2026-03-23T17:30:52.000000Z")
        .build()
}

/// `X.Y` of the interpreter uv finds for `request` (`3.14`), or of its default one.
fn uv_python(uv: &Path, request: Option<&str>) -> Option<String> {
    let mut command = Command::new(uv);
    command.args(["python", "find", "--no-config", "--offline"]);
    if let Some(request) = request {
        command.arg(request);
    }
    let output = command.output().ok()?;
    if !output.status.success() {
        return None;
    }
    let python = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let version = Command::new(&python)
        .args([
            "-c",
            "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')",
        ])
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&version.stdout).trim().to_string())
}

/// uv refuses to install a lock whose `requires-python` the interpreter does not meet, even
/// with `--target --python-version` (uv 0.9: "The requested interpreter resolved to Python
/// 3.11.7, which is incompatible with the `pylock.toml`'s Python requirement: `==3.14.*`").
/// So the same code writes the lock for the Python uv finds on this machine, and for 3.14
/// as well whenever a CPython 3.14 is installed.
#[test]
fn lock_uv_installs_the_locked_set() {
    let Some(uv) = uv() else { return };
    let host = uv_python(&uv, None).expect("uv finds no Python interpreter on this machine");
    uv_installs_lock_for(&uv, &host);
    match uv_python(&uv, Some("3.14")) {
        Some(v) if v == "3.14" => uv_installs_lock_for(&uv, "3.14"),
        _ => eprintln!("note: no CPython 3.14 here; uv checked the lock written for {host}"),
    }
}

fn uv_installs_lock_for(uv: &Path, python: &str) {
    let nodot = python.replace('.', "");
    let tag_x86 = format!("cp{nodot}-cp{nodot}-manylinux_2_28_x86_64");
    let tag_arm = format!("cp{nodot}-cp{nodot}-manylinux_2_28_aarch64");
    let index = oracle_index(&nodot);
    let server = TestServer::serve_index(&index, ServerOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let pak = write_stack(
        dir.path(),
        &server.simple_url(),
        &[
            ("stable", &[("pak1.txt", "native\n")]),
            ("volatile", &[("pak9.txt", "app-core\n")]),
        ],
        &["manylinux_2_39_x86_64", "manylinux_2_39_aarch64"],
    );
    let stack = Stack::load(&pak).unwrap();
    let files = listed(
        &stack,
        &dir.path().join("cache"),
        &["app-core", "helper", "native", "armonly"],
    );
    let real = |n: &str, v: &str, file: &str, deps: &[&str]| {
        let mut p = package(n, v, files[file].clone(), deps);
        p.index_url = server.simple_url();
        p
    };
    let common = |native_file: &str| {
        vec![
            real(
                "app-core",
                "1.2.0",
                "app_core-1.2.0-py3-none-any.whl",
                &["helper"],
            ),
            real("helper", "1.5.0", "helper-1.5.0-py3-none-any.whl", &[]),
            real("native", "3.0.0", native_file, &[]),
        ]
    };
    let roots: &[(&str, &[&str])] = &[("stable", &["native"]), ("volatile", &["app-core"])];
    let rx = resolution(
        &format!("{python}:manylinux_2_39_x86_64"),
        common(&format!("native-3.0.0-{tag_x86}.whl")),
        roots,
    );
    let mut arm_packages = common(&format!("native-3.0.0-{tag_arm}.whl"));
    arm_packages[0].dependencies.insert(name("armonly"));
    arm_packages.push(real(
        "armonly",
        "0.1.0",
        "armonly-0.1.0-py3-none-any.whl",
        &[],
    ));
    let ra = resolution(
        &format!("{python}:manylinux_2_39_aarch64"),
        arm_packages,
        roots,
    );
    let layers = vec![
        assign_checked(&rx, &stack).unwrap(),
        assign_checked(&ra, &stack).unwrap(),
    ];
    let lock = build_lock(&stack, &[rx, ra], &layers).unwrap();
    assert_eq!(lock.requires_python, Some(format!("=={python}.*")));
    let lock_path = dir.path().join("pylock.toml");
    lock.write(&lock_path).unwrap();

    let installed = uv_install(uv, python, &lock_path, &dir.path().join("x86"), "x86_64");
    assert_eq!(
        installed,
        BTreeSet::from([
            "app_core-1.2.0".to_string(),
            "helper-1.5.0".to_string(),
            "native-3.0.0".to_string(),
        ])
    );
    let wheel_file =
        std::fs::read_to_string(dir.path().join("x86/native-3.0.0.dist-info/WHEEL")).unwrap();
    assert!(
        wheel_file.contains(&format!("Tag: {tag_x86}")),
        "{wheel_file}"
    );
    let installed = uv_install(uv, python, &lock_path, &dir.path().join("arm"), "aarch64");
    assert_eq!(
        installed,
        BTreeSet::from([
            "app_core-1.2.0".to_string(),
            "armonly-0.1.0".to_string(),
            "helper-1.5.0".to_string(),
            "native-3.0.0".to_string(),
        ])
    );
    // uv picked each platform's own native wheel.
    let wheel_file =
        std::fs::read_to_string(dir.path().join("arm/native-3.0.0.dist-info/WHEEL")).unwrap();
    assert!(
        wheel_file.contains(&format!("Tag: {tag_arm}")),
        "{wheel_file}"
    );
}

/// `uv pip install --target DIR -r LOCK` for CPython `python` on manylinux_2_39 `arch`;
/// returns the `NAME-VERSION` of every `.dist-info` it created.
pub fn uv_install(
    uv: &Path,
    python: &str,
    lock: &Path,
    target_dir: &Path,
    arch: &str,
) -> BTreeSet<String> {
    let output = Command::new(uv)
        .args([
            "pip",
            "install",
            "--no-config",
            "--quiet",
            "--python",
            python,
        ])
        .arg("--target")
        .arg(target_dir)
        .args([
            "--python-version",
            python,
            "--python-platform",
            &format!("{arch}-manylinux_2_39"),
            "-r",
        ])
        .arg(lock)
        .env("UV_CACHE_DIR", target_dir.with_extension("uv-cache"))
        .env_remove("UV_INDEX_URL")
        .env_remove("UV_EXTRA_INDEX_URL")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "uv pip install -r {} failed:\n{}\n{}\n--- lock ---\n{}",
        lock.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        std::fs::read_to_string(lock).unwrap_or_default()
    );
    std::fs::read_dir(target_dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_suffix(".dist-info").map(str::to_string)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// `comfypak resolve` end to end on fixture indexes (the cu130 fixture + a small one).

/// The small "pypi" fixture; `v2` adds urllib3 2.1.0.
fn small_pypi(v2: bool) -> FixtureIndex {
    let mut builder = FixtureIndex::builder()
        .wheel(
            WheelSpec::new("requests", "2.32.0")
                .requires("urllib3<3,>=1.26")
                .requires("idna>=2.5")
                .requires("certifi"),
        )
        .wheel(WheelSpec::new("urllib3", "2.0.0"))
        .wheel(WheelSpec::new("idna", "3.7"))
        .wheel(WheelSpec::new("certifi", "2024.1.1"))
        .wheel(WheelSpec::new("PyYAML", "6.0.2").tag("cp314-cp314-manylinux_2_28_x86_64"))
        .wheel(WheelSpec::new("PyYAML", "6.0.2").tag("cp314-cp314-manylinux_2_28_aarch64"))
        .wheel(WheelSpec::new("armshim", "1.0"))
        .wheel(
            WheelSpec::new("comfyui-frontend-package", "1.45.0")
                .requires("requests")
                .requires("frontend-assets==1.0"),
        )
        .wheel(WheelSpec::new("frontend-assets", "1.0").pad_bytes(4096))
        .wheel(
            WheelSpec::new("newpkg", "0.1")
                .requires("idna")
                .requires("newdep"),
        )
        .wheel(WheelSpec::new("newdep", "1.0"))
        .upload_time("requests", "2.32.0", "2024-05-20T19:13:11.000000Z")
        .upload_time("urllib3", "2.0.0", "2023-04-26T16:04:41.123456Z");
    if v2 {
        builder = builder
            .wheel(WheelSpec::new("urllib3", "2.1.0"))
            .upload_time("urllib3", "2.1.0", "2023-11-13T12:00:00.000000Z");
    }
    builder.build()
}

struct Flow {
    dir: tempfile::TempDir,
    pypi_dir: PathBuf,
    _pypi: TestServer,
    _torch: TestServer,
    pak: PathBuf,
    lock: PathBuf,
}

impl Flow {
    fn new() -> Flow {
        let dir = tempfile::tempdir().unwrap();
        let pypi_dir = dir.path().join("pypi-site");
        small_pypi(false).write_simple_tree(&pypi_dir).unwrap();
        let pypi = TestServer::serve_dir(&pypi_dir, ServerOptions::default());
        let torch = TestServer::serve_index(
            &FixtureIndex::pytorch_cu130().unwrap(),
            ServerOptions::default(),
        );
        write_index_definitions(
            dir.path(),
            &[
                ("pypi", &pypi.simple_url(), "simple"),
                ("pytorch-cu130", &torch.simple_url(), "simple"),
            ],
        );
        let pak = dir.path().join("pak");
        std::fs::create_dir_all(&pak).unwrap();
        std::fs::write(
            pak.join("stack.toml"),
            r#"[stack]
name = "flow"
index-dir = "../indexes"

[target]
python = "3.14"
platforms = ["manylinux_2_39_x86_64", "manylinux_2_39_aarch64"]
venv = "/opt/comfyui/venv"
torch-backend = "cu130"

[indexes]
default = ["pypi", "pytorch-cu130"]

[indexes.pins]
pytorch-cu130 = ["torch", "torchvision", "torchaudio", "triton"]

[[layer]]
name = "stable"
paks = ["pak1.txt"]

[[layer]]
name = "deps"
paks = ["pak4.txt"]

[[layer]]
name = "volatile"
paks = ["pak9.txt"]
"#,
        )
        .unwrap();
        std::fs::write(pak.join("pak1.txt"), "torch==2.11.0\n").unwrap();
        std::fs::write(
            pak.join("pak4.txt"),
            "requests>=2\npyyaml\narmshim; platform_machine == 'aarch64'\n",
        )
        .unwrap();
        std::fs::write(pak.join("pak9.txt"), "comfyui-frontend-package\n").unwrap();
        let lock = dir.path().join("pylock.toml");
        Flow {
            pypi_dir,
            _pypi: pypi,
            _torch: torch,
            pak,
            lock,
            dir,
        }
    }

    fn run(&self, extra: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_comfypak"))
            .arg("resolve")
            .arg("--stack")
            .arg(&self.pak)
            .arg("-o")
            .arg(&self.lock)
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(extra)
            .env_remove("COMFYPAK_CACHE_DIR")
            .output()
            .unwrap()
    }

    fn ok(&self, extra: &[&str]) -> String {
        let out = self.run(extra);
        assert_eq!(
            out.status.code(),
            Some(0),
            "comfypak resolve {extra:?}:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn lock_text(&self) -> String {
        std::fs::read_to_string(&self.lock).unwrap()
    }

    fn lock(&self) -> Lock {
        Lock::read(&self.lock).unwrap()
    }
}

/// Each entry of the lock as TOML, keyed by layer, name and version.
fn entry_texts(lock: &Lock) -> BTreeMap<(String, String, String), String> {
    lock.packages
        .iter()
        .map(|p| {
            (
                (
                    p.tool.comfypak.layer.clone(),
                    p.name.to_string(),
                    p.version.to_string(),
                ),
                toml::to_string(p).unwrap(),
            )
        })
        .collect()
}

#[test]
fn resolve_cli_writes_a_deterministic_multi_platform_lock() {
    let flow = Flow::new();
    let out = flow.ok(&[]);
    let first = flow.lock_text();
    let lock = flow.lock();

    // The torch family from the cu130 fixture, in the stable layer, one entry, both wheels.
    let torch: Vec<_> = lock
        .packages
        .iter()
        .filter(|p| p.name.as_ref() == "torch")
        .collect();
    assert_eq!(torch.len(), 1, "{first}");
    assert_eq!(torch[0].version.to_string(), "2.11.0+cu130");
    assert_eq!(torch[0].tool.comfypak.index_name, "pytorch-cu130");
    assert_eq!(torch[0].tool.comfypak.layer, "stable");
    assert_eq!(torch[0].tool.comfypak.required_by, vec!["pak1.txt:1"]);
    assert!(torch[0].tool.comfypak.requested);
    assert_eq!(torch[0].marker, None);
    let mut arches: Vec<&str> = torch[0]
        .wheels
        .iter()
        .map(|w| {
            if w.name.ends_with("_x86_64.whl") {
                "x86_64"
            } else {
                "aarch64"
            }
        })
        .collect();
    arches.sort();
    assert_eq!(arches, vec!["aarch64", "x86_64"], "{first}");
    assert!(torch[0]
        .wheels
        .iter()
        .all(|w| w.name.contains("-cp314-cp314-") && w.sha256().is_some() && w.size.is_some()));
    // Its closure is stable too; the deps layer holds only what the deps pak adds.
    let layer_of = |n: &str| -> Vec<String> {
        lock.packages
            .iter()
            .filter(|p| p.name.as_ref() == n)
            .map(|p| p.tool.comfypak.layer.clone())
            .collect()
    };
    assert_eq!(layer_of("nvidia-cublas"), vec!["stable"]);
    assert_eq!(layer_of("requests"), vec!["deps"]);
    assert_eq!(layer_of("urllib3"), vec!["deps"]);
    assert_eq!(layer_of("comfyui-frontend-package"), vec!["volatile"]);
    assert_eq!(layer_of("frontend-assets"), vec!["volatile"]);
    // A package only aarch64 needs carries a marker.
    let armshim: Vec<_> = lock
        .packages
        .iter()
        .filter(|p| p.name.as_ref() == "armshim")
        .collect();
    assert_eq!(armshim.len(), 1);
    assert_eq!(
        armshim[0].marker.as_deref(),
        Some("platform_machine == 'aarch64'")
    );
    assert_eq!(
        armshim[0].tool.comfypak.platforms,
        vec!["manylinux_2_39_aarch64".parse().unwrap()]
    );
    let urllib3 = lock
        .packages
        .iter()
        .find(|p| p.name.as_ref() == "urllib3")
        .unwrap();
    assert_eq!(
        urllib3.wheels[0]
            .upload_time
            .as_ref()
            .map(|t| t.to_string()),
        Some("2023-04-26T16:04:41.123456Z".to_string())
    );
    assert_eq!(
        lock.environments,
        vec![
            "sys_platform == 'linux' and platform_machine == 'x86_64'",
            "sys_platform == 'linux' and platform_machine == 'aarch64'"
        ]
    );

    // The human summary: per layer, most stable first, bytes per platform, and a total.
    let summary = LockSummary::of(&lock).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    let row = |name: &str| lines.iter().position(|l| l.starts_with(name)).unwrap();
    assert!(
        row("stable") < row("deps") && row("deps") < row("volatile"),
        "{out}"
    );
    assert!(row("volatile") < row("total"), "{out}");
    assert!(out.contains("manylinux_2_39_x86_64"), "{out}");
    assert!(out.contains("manylinux_2_39_aarch64"), "{out}");
    let deps_row = lines[row("deps")];
    assert!(
        deps_row.contains(&format!(" {} ", summary.layers[1].packages)),
        "{out}"
    );
    assert_eq!(summary.layers[1].packages, 6); // requests urllib3 idna certifi pyyaml armshim
    assert!(summary.layers[0].bytes["manylinux_2_39_x86_64"] > 0);
    assert_ne!(
        summary.layers[1].bytes["manylinux_2_39_x86_64"],
        summary.layers[1].bytes["manylinux_2_39_aarch64"],
        "armshim is aarch64 only"
    );

    // Same inputs → the same bytes: with the lock in place, and from scratch.
    let again = flow.ok(&[]);
    assert!(again.contains("unchanged"), "{again}");
    assert_eq!(flow.lock_text(), first);
    std::fs::remove_file(&flow.lock).unwrap();
    flow.ok(&["--quiet"]);
    assert_eq!(flow.lock_text(), first);

    // --json: the same summary as a document.
    let json: serde_json::Value = serde_json::from_str(&flow.ok(&["--json"])).unwrap();
    assert_eq!(json["status"], "unchanged");
    let layers = json["summary"]["layers"].as_array().unwrap();
    assert_eq!(
        layers
            .iter()
            .map(|l| l["name"].as_str().unwrap())
            .collect::<Vec<_>>(),
        vec!["stable", "deps", "volatile"]
    );
    assert_eq!(layers[1]["packages"], 6);
    assert_eq!(
        json["summary"]["total_bytes"].as_u64().unwrap(),
        summary.total_bytes
    );
}

#[test]
fn resolve_cli_volatile_addition_leaves_other_layers_untouched() {
    let flow = Flow::new();
    flow.ok(&[]);
    let before = flow.lock();
    std::fs::write(
        flow.pak.join("pak9.txt"),
        "comfyui-frontend-package\nnewpkg\n",
    )
    .unwrap();
    flow.ok(&[]);
    let after = flow.lock();

    let stable_and_deps = |lock: &Lock| -> BTreeMap<_, _> {
        entry_texts(lock)
            .into_iter()
            .filter(|((layer, _, _), _)| layer != "volatile")
            .collect()
    };
    assert_eq!(stable_and_deps(&before), stable_and_deps(&after));
    let names = |lock: &Lock| -> BTreeSet<String> {
        lock.layer_packages("volatile")
            .map(|p| p.name.to_string())
            .collect()
    };
    assert_eq!(
        names(&after)
            .difference(&names(&before))
            .collect::<Vec<_>>(),
        vec!["newdep", "newpkg"]
    );
    let hashes = |lock: &Lock| -> Vec<String> {
        lock.tool
            .comfypak
            .layers
            .iter()
            .map(|l| l.inputs_hash.clone())
            .collect()
    };
    let (b, a) = (hashes(&before), hashes(&after));
    assert_eq!(a[0], b[0]);
    assert_eq!(a[1], b[1]);
    assert_ne!(a[2], b[2]);
}

#[test]
fn resolve_cli_locked_and_frozen() {
    let flow = Flow::new();
    // --locked without a lock is an error (2), not "stale".
    let out = flow.run(&["--locked"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));

    flow.ok(&[]);
    let written = flow.lock_text();
    let out = flow.ok(&["--locked"]);
    assert!(out.contains("is up to date"), "{out}");

    // An edit to the deps pak makes the lock stale: exit 1, says what, writes nothing.
    std::fs::write(
        flow.pak.join("pak4.txt"),
        "requests>=2\npyyaml\narmshim; platform_machine == 'aarch64'\nnewdep\n",
    )
    .unwrap();
    let out = flow.run(&["--locked"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is stale"), "{stderr}");
    assert!(
        stderr.contains("layer `deps`: its inputs changed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("layer `deps`: newdep 1.0: added"),
        "{stderr}"
    );
    assert!(!stderr.contains("layer `stable`"), "{stderr}");
    assert_eq!(flow.lock_text(), written);
    let json: serde_json::Value =
        serde_json::from_slice(&flow.run(&["--locked", "--json"]).stdout).unwrap();
    assert_eq!(json["status"], "stale");
    assert!(!json["stale"].as_array().unwrap().is_empty());

    // --frozen uses the lock as is: no index is asked (point them nowhere to prove it).
    let out = flow.ok(&[
        "--frozen",
        "--index",
        "pypi=http://127.0.0.1:9/simple/",
        "--offline",
    ]);
    assert!(out.contains("frozen"), "{out}");
    assert!(out.contains("total"), "{out}");
    assert_eq!(flow.lock_text(), written);

    // --frozen against a stack whose layers differ: exit 2, names both.
    let manifest = flow.pak.join("stack.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace("name = \"volatile\"", "name = \"app\""),
    )
    .unwrap();
    let out = flow.run(&["--frozen"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("(stable, deps, volatile) are not the stack's (stable, deps, app)"),
        "{stderr}"
    );
}

#[test]
fn resolve_cli_keeps_locked_versions_until_asked_to_upgrade() {
    let flow = Flow::new();
    flow.ok(&[]);
    let before = flow.lock();
    let version_of = |lock: &Lock, n: &str| {
        lock.packages
            .iter()
            .find(|p| p.name.as_ref() == n)
            .map(|p| p.version.to_string())
            .unwrap()
    };
    assert_eq!(version_of(&before, "urllib3"), "2.0.0");

    // The index gains urllib3 2.1.0: a plain resolve keeps 2.0.0 and the lock's bytes.
    small_pypi(true).write_simple_tree(&flow.pypi_dir).unwrap();
    let text = flow.lock_text();
    flow.ok(&["--refresh"]);
    assert_eq!(flow.lock_text(), text);
    flow.ok(&["--refresh", "--locked"]);

    // --upgrade-package moves only that package.
    flow.ok(&["--refresh", "--upgrade-package", "urllib3"]);
    let after = flow.lock();
    assert_eq!(version_of(&after, "urllib3"), "2.1.0");
    let changed: Vec<String> = entry_texts(&before)
        .into_iter()
        .filter(|(key, text)| entry_texts(&after).get(key) != Some(text))
        .map(|((_, n, _), _)| n)
        .collect();
    assert_eq!(changed, vec!["urllib3"]);

    // --upgrade moves everything to the newest (here the same), and a fresh resolve too.
    std::fs::remove_file(&flow.lock).unwrap();
    flow.ok(&["--refresh"]);
    assert_eq!(version_of(&flow.lock(), "urllib3"), "2.1.0");
}

#[test]
fn resolve_cli_errors_exit_2_with_the_reason() {
    let flow = Flow::new();
    std::fs::write(flow.pak.join("pak9.txt"), "no-such-package-anywhere\n").unwrap();
    let out = flow.run(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.starts_with("error:"), "{stderr}");
    assert!(stderr.contains("no-such-package-anywhere"), "{stderr}");
    assert!(!flow.lock.exists());

    let out = flow.run(&["--platform", "manylinux_2_39_riscv64"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--platform"));
}

/// The whole path: `comfypak resolve` on the fixture servers, then uv installs the lock it
/// wrote, per platform, and gets exactly the entries that apply there. (For the Python uv
/// finds here, and for 3.14 when one is installed: see `lock_uv_installs_the_locked_set`.)
#[test]
fn resolve_cli_lock_installs_with_uv() {
    let Some(uv) = uv() else { return };
    let host = uv_python(&uv, None).expect("uv finds no Python interpreter on this machine");
    let mut pythons = vec![host];
    if uv_python(&uv, Some("3.14")).as_deref() == Some("3.14") && pythons[0] != "3.14" {
        pythons.push("3.14".to_string());
    }
    for python in pythons {
        let flow = Flow::new();
        // Pure wheels only: the fixture's native wheels are built for cp314.
        std::fs::write(flow.pak.join("pak1.txt"), "requests>=2\n").unwrap();
        std::fs::write(
            flow.pak.join("pak4.txt"),
            "armshim; platform_machine == 'aarch64'\nidna\n",
        )
        .unwrap();
        flow.ok(&["--python", &python]);
        let lock = flow.lock();
        assert_eq!(lock.requires_python, Some(format!("=={python}.*")));
        for (arch, platform) in [
            ("x86_64", "manylinux_2_39_x86_64"),
            ("aarch64", "manylinux_2_39_aarch64"),
        ] {
            let target = target(&format!("{python}:{platform}"));
            let expected: BTreeSet<String> = lock
                .packages
                .iter()
                .filter(|p| comfypak::lock::applies_to(p, &target).unwrap())
                .map(|p| format!("{}-{}", p.name.as_ref().replace('-', "_"), p.version))
                .collect();
            assert!(
                expected.contains("armshim-1.0") == (arch == "aarch64"),
                "{expected:?}"
            );
            let installed = uv_install(
                &uv,
                &python,
                &flow.lock,
                &flow.dir.path().join(format!("site-{arch}")),
                arch,
            );
            assert_eq!(installed, expected, "{python} {arch}");
        }
    }
}

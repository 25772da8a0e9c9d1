//! `comfypak diff`: layer impact of lock changes, in text, markdown and JSON, with CI exit
//! codes, reading locks from files and from git revisions.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use comfypak::diff::{diff, ChangeKind};
use comfypak::lock::{
    ComfypakLock, Lock, LockTool, LockedLayer, LockedPackage, LockedTarget, LockedWheel,
    PackageComfypak, PackageTool, WheelHashes,
};

fn package(name: &str, version: &str, layer: &str, sha: &str, size: u64) -> LockedPackage {
    LockedPackage {
        name: name.parse().unwrap(),
        version: version.parse().unwrap(),
        marker: None,
        requires_python: None,
        index: Some("http://127.0.0.1:1/simple/".to_string()),
        dependencies: Vec::new(),
        wheels: vec![LockedWheel {
            name: format!("{}-{version}-py3-none-any.whl", name.replace('-', "_"))
                .parse()
                .unwrap(),
            url: Some(format!("http://127.0.0.1:1/files/{name}-{version}.whl")),
            path: None,
            upload_time: None,
            size: Some(size),
            hashes: WheelHashes::sha256(sha.repeat(64 / sha.len()).parse().unwrap()),
        }],
        sdist: None,
        directory: None,
        vcs: None,
        tool: PackageTool {
            comfypak: PackageComfypak {
                layer: layer.to_string(),
                index_name: "pypi".to_string(),
                ..PackageComfypak::default()
            },
        },
    }
}

fn lock(packages: Vec<LockedPackage>) -> Lock {
    let layers = ["stable", "deps", "perf", "volatile"]
        .iter()
        .enumerate()
        .map(|(i, name)| LockedLayer {
            name: name.to_string(),
            rank: i + 1,
            paks: vec![format!("pak{}.txt", i + 1)],
            inputs_hash: format!("sha256:{i}"),
        })
        .collect();
    Lock {
        lock_version: "1.0".to_string(),
        environments: Vec::new(),
        requires_python: Some("==3.14.*".to_string()),
        extras: Vec::new(),
        dependency_groups: Vec::new(),
        default_groups: Vec::new(),
        created_by: "comfypak".to_string(),
        packages,
        tool: LockTool {
            comfypak: ComfypakLock {
                stack: "t".to_string(),
                target: LockedTarget {
                    python: "3.14".parse().unwrap(),
                    free_threaded: false,
                    platforms: vec!["manylinux_2_39_x86_64".parse().unwrap()],
                    venv: "/opt/venv".parse().unwrap(),
                    gpus: Vec::new(),
                    min_driver: None,
                },
                torch_backend: comfypak::cuda::Backend::Cu130,
                layers,
                indexes: BTreeMap::new(),
                bases: Vec::new(),
            },
        },
    }
}

fn base() -> Lock {
    lock(vec![
        package("torch", "2.11.0+cu130", "stable", "a", 1_000_000_000),
        package("numpy", "2.5.2", "stable", "b", 20_000_000),
        package("pillow", "12.3.0", "deps", "c", 5_000_000),
        package(
            "comfyui-frontend-package",
            "1.45.15",
            "volatile",
            "d",
            30_000_000,
        ),
    ])
}

#[test]
fn identical_locks_have_no_changes() {
    let d = diff(&base(), &base());
    assert!(!d.has_changes());
    assert!(d.layers.iter().all(|l| !l.changed && l.download_bytes == 0));
    assert!(
        d.summary().starts_with("stable unchanged (1.0 GB reused)"),
        "{}",
        d.summary()
    );
}

#[test]
fn a_volatile_bump_touches_only_volatile() {
    let mut new = base();
    new.packages[3] = package(
        "comfyui-frontend-package",
        "1.46.0",
        "volatile",
        "e",
        31_000_000,
    );
    let d = diff(&base(), &new);
    let changed: Vec<&str> = d
        .layers
        .iter()
        .filter(|l| l.changed)
        .map(|l| l.name.as_str())
        .collect();
    assert_eq!(changed, ["volatile"]);
    let volatile = d.layers.iter().find(|l| l.name == "volatile").unwrap();
    assert_eq!(volatile.changes[0].kind, ChangeKind::Upgraded);
    assert_eq!(volatile.download_bytes, 31_000_000);
    assert_eq!(d.changes_at_or_below("perf"), Some(false));
    assert_eq!(d.changes_at_or_below("volatile"), Some(true));
}

#[test]
fn downgrades_rebuilds_moves_and_removals_are_named() {
    let mut new = base();
    new.packages[0] = package("torch", "2.10.0+cu130", "stable", "f", 1_000_000_000);
    // numpy moves from stable to deps; pillow is rebuilt at the same version.
    new.packages[1].tool.comfypak.layer = "deps".to_string();
    new.packages[2] = package("pillow", "12.3.0", "deps", "9", 5_000_000);
    new.packages.pop();
    let d = diff(&base(), &new);
    let kinds = |layer: &str| -> Vec<(String, ChangeKind)> {
        d.layers
            .iter()
            .find(|l| l.name == layer)
            .unwrap()
            .changes
            .iter()
            .map(|c| (c.name.clone(), c.kind))
            .collect()
    };
    assert_eq!(
        kinds("stable"),
        [
            ("numpy".to_string(), ChangeKind::MovedOut),
            ("torch".to_string(), ChangeKind::Downgraded)
        ]
    );
    assert_eq!(
        kinds("deps"),
        [
            ("numpy".to_string(), ChangeKind::MovedIn),
            ("pillow".to_string(), ChangeKind::Rebuilt)
        ]
    );
    assert_eq!(
        kinds("volatile"),
        [("comfyui-frontend-package".to_string(), ChangeKind::Removed)]
    );
    // A moved wheel with the same hash needs no download.
    let deps = d.layers.iter().find(|l| l.name == "deps").unwrap();
    assert_eq!(deps.download_bytes, 5_000_000);
    let text = d.to_text(false);
    assert!(text.contains("numpy 2.5.2 moved out (to deps)"), "{text}");
    assert!(
        text.contains("torch 2.11.0+cu130 -> 2.10.0+cu130 downgraded"),
        "{text}"
    );
    let md = d.to_markdown();
    assert!(md.contains("| 1 `stable` | **rebuilds** |"), "{md}");
    assert!(
        md.contains("| `deps` | rebuilt | `pillow` | 12.3.0 | 12.3.0 |"),
        "{md}"
    );
    let json = d.to_json();
    assert_eq!(json["changed"], true);
    assert_eq!(json["layers"][0]["changes"][1]["kind"], "downgraded");
}

#[test]
fn an_index_change_alone_keeps_the_layer() {
    let mut new = base();
    new.packages[2].tool.comfypak.index_name = "mirror".to_string();
    let d = diff(&base(), &new);
    let deps = d.layers.iter().find(|l| l.name == "deps").unwrap();
    assert!(!deps.changed);
    assert_eq!(deps.changes[0].kind, ChangeKind::IndexChanged);
    assert!(d.has_changes());
}

fn comfypak(args: &[&str], cwd: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_comfypak"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

fn git(args: &[&str], cwd: &Path) {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@t.invalid"])
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn cli_exit_codes_formats_and_git_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    git(&["init", "-q", "-b", "main"], d);
    base().write(&d.join("pylock.toml")).unwrap();
    git(&["add", "pylock.toml"], d);
    git(&["commit", "-q", "-m", "base"], d);
    let mut new = base();
    new.packages[3] = package(
        "comfyui-frontend-package",
        "1.46.0",
        "volatile",
        "e",
        31_000_000,
    );
    new.write(&d.join("pylock.toml")).unwrap();

    let out = comfypak(&["diff", "git:HEAD:pylock.toml", "pylock.toml"], d);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("volatile changed (+0 -0 ~1"), "{text}");
    assert!(!text.contains("\x1b["), "no colour when not a terminal");

    let out = comfypak(
        &[
            "diff",
            "git:HEAD:pylock.toml",
            "pylock.toml",
            "--fail-on-layer",
            "stable",
        ],
        d,
    );
    assert_eq!(out.status.code(), Some(0));
    let out = comfypak(
        &[
            "diff",
            "git:HEAD:pylock.toml",
            "pylock.toml",
            "--fail-on-layer",
            "volatile",
        ],
        d,
    );
    assert_eq!(out.status.code(), Some(1));
    let out = comfypak(&["diff", "git:HEAD:pylock.toml", "git:HEAD:pylock.toml"], d);
    assert_eq!(out.status.code(), Some(0));

    let out = comfypak(
        &[
            "diff",
            "git:HEAD:pylock.toml",
            "pylock.toml",
            "--format",
            "json",
        ],
        d,
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["changed"], true);
    assert_eq!(v["layers"][3]["name"], "volatile");
    assert_eq!(v["layers"][3]["download_bytes"], 31_000_000);

    let out = comfypak(
        &[
            "diff",
            "git:HEAD:pylock.toml",
            "pylock.toml",
            "--format",
            "markdown",
        ],
        d,
    );
    let md = String::from_utf8(out.stdout).unwrap();
    assert!(md.contains("| 4 `volatile` | **rebuilds** |"), "{md}");
}

#[test]
fn bad_inputs_exit_2_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    base().write(&d.join("good.toml")).unwrap();
    std::fs::write(d.join("notalock.toml"), "name = \"x\"\n").unwrap();
    std::fs::write(
        d.join("v2.toml"),
        base()
            .to_toml_string()
            .replace("lock-version = \"1.0\"", "lock-version = \"2.0\""),
    )
    .unwrap();
    git(&["init", "-q"], d);
    let cases: &[(&[&str], &str)] = &[
        (&["diff", "notalock.toml", "good.toml"], "lock-version"),
        (
            &["diff", "v2.toml", "good.toml"],
            "lock-version 2.0 is not supported",
        ),
        (&["diff", "missing.toml", "good.toml"], "missing.toml"),
        (
            &["diff", "git:nope:pylock.toml", "good.toml"],
            "cannot read pylock.toml at git revision nope",
        ),
        (&["diff", "git:nocolon", "good.toml"], "git:REV:PATH"),
        (
            &["diff", "good.toml", "good.toml", "--fail-on-layer", "gpu"],
            "no such layer",
        ),
    ];
    for (args, expect) in cases {
        let out = comfypak(args, d);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.starts_with("error: "), "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: {err}");
    }
}

//! The lock reader and writer: clear errors for a missing file, a file that is not a lock,
//! a newer lock-version, a PEP 751 lock comfypak did not write, undeclared layers and a lock
//! whose layers are not the stack's; the writer's bytes read back to the same lock.

use std::collections::BTreeMap;
use std::path::Path;

use comfypak::lock::{
    ComfypakLock, Lock, LockError, LockTool, LockedLayer, LockedPackage, LockedTarget, LockedWheel,
    PackageComfypak, PackageTool, WheelHashes, LOCK_VERSION,
};

fn package(name: &str, version: &str, layer: &str) -> LockedPackage {
    LockedPackage {
        name: name.parse().unwrap(),
        version: version.parse().unwrap(),
        marker: None,
        requires_python: None,
        index: Some("http://127.0.0.1:1/simple/".to_string()),
        dependencies: Vec::new(),
        wheels: vec![LockedWheel {
            name: format!("{name}-{version}-py3-none-any.whl")
                .parse()
                .unwrap(),
            url: Some(format!("http://127.0.0.1:1/files/{name}-{version}.whl")),
            path: None,
            upload_time: Some("2026-03-23T17:30:52.000000Z".parse().unwrap()),
            size: Some(1234),
            hashes: WheelHashes::sha256("ab".repeat(32).parse().unwrap()),
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
    Lock {
        lock_version: LOCK_VERSION.to_string(),
        environments: vec!["sys_platform == 'linux' and platform_machine == 'x86_64'".to_string()],
        requires_python: Some("==3.14.*".to_string()),
        extras: Vec::new(),
        dependency_groups: Vec::new(),
        default_groups: Vec::new(),
        created_by: "comfypak".to_string(),
        packages,
        tool: LockTool {
            comfypak: ComfypakLock {
                stack: "demo".to_string(),
                target: LockedTarget {
                    python: "3.14".parse().unwrap(),
                    free_threaded: false,
                    platforms: vec!["manylinux_2_39_x86_64".parse().unwrap()],
                    venv: "/opt/venv".parse().unwrap(),
                    gpus: Vec::new(),
                    min_driver: None,
                },
                torch_backend: comfypak::cuda::Backend::Cu130,
                layers: ["stable", "deps"]
                    .iter()
                    .enumerate()
                    .map(|(i, name)| LockedLayer {
                        name: name.to_string(),
                        rank: i + 1,
                        paks: vec![format!("pak{}.txt", i + 1)],
                        inputs_hash: format!("sha256:{}", "0".repeat(64)),
                    })
                    .collect(),
                indexes: BTreeMap::new(),
                bases: Vec::new(),
            },
        },
    }
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn lock_round_trips_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pylock.toml");
    // Written in scrambled order: the writer sorts.
    let original = lock(vec![
        package("zeta", "1.0", "deps"),
        package("alpha", "2.0", "stable"),
    ]);
    original.write(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let back = Lock::read(&path).unwrap();
    assert_eq!(back.packages[0].name.as_ref(), "alpha");
    assert_eq!(back.to_toml_string().as_bytes(), bytes.as_slice());
    back.write(&path).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    // No temporary file is left beside it.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["pylock.toml"]);
}

#[test]
fn lock_missing_file_says_how_to_create_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pylock.toml");
    let err = Lock::read(&path).unwrap_err();
    assert!(matches!(err, LockError::Missing { .. }), "{err:?}");
    let text = comfypak::diagnostic::with_help(&err);
    assert!(text.contains("does not exist"), "{text}");
    assert!(text.contains("comfypak resolve"), "{text}");
}

#[test]
fn lock_not_a_lock_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    // A stack manifest given by mistake: TOML, but no lock-version.
    let path = write(
        dir.path(),
        "stack.toml",
        "[stack]\nname = \"x\"\n[target]\npython = \"3.14\"\n",
    );
    let err = Lock::read(&path).unwrap_err();
    assert!(matches!(err, LockError::NotALock { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("is not a pylock.toml"), "{text}");
    assert!(text.contains("no `lock-version`"), "{text}");
    assert!(text.contains("stack, target"), "{text}");

    let path = write(
        dir.path(),
        "broken.toml",
        "lock-version = \"1.0\"\n[[packages]\n",
    );
    let text = Lock::read(&path).unwrap_err().to_string();
    assert!(text.contains("not valid TOML"), "{text}");
    assert!(text.contains("line 2"), "{text}");

    let path = write(dir.path(), "empty.toml", "");
    let text = Lock::read(&path).unwrap_err().to_string();
    assert!(text.contains("it is empty"), "{text}");

    let path = write(dir.path(), "number.toml", "lock-version = 1.0\n");
    let text = Lock::read(&path).unwrap_err().to_string();
    assert!(text.contains("not a string"), "{text}");

    let path = dir.path().join("binary.toml");
    std::fs::write(&path, [0x6c, 0x6f, 0xff, 0xfe, 0x00]).unwrap();
    let text = Lock::read(&path).unwrap_err().to_string();
    assert!(text.contains("not UTF-8"), "{text}");
}

#[test]
fn lock_version_two_is_refused_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    let text = lock(Vec::new())
        .to_toml_string()
        .replace("lock-version = \"1.0\"", "lock-version = \"2.0\"");
    let path = write(dir.path(), "pylock.toml", &text);
    let err = Lock::read(&path).unwrap_err();
    assert!(
        matches!(&err, LockError::Version { found, .. } if found == "2.0"),
        "{err:?}"
    );
    assert!(
        comfypak::diagnostic::with_help(&err).contains("upgrade comfypak"),
        "{err}"
    );
    // A newer minor version of format 1 is read.
    let text = lock(Vec::new())
        .to_toml_string()
        .replace("lock-version = \"1.0\"", "lock-version = \"1.1\"");
    let path = write(dir.path(), "minor.toml", &text);
    assert_eq!(Lock::read(&path).unwrap().lock_version, "1.1");
}

#[test]
fn lock_without_comfypak_table_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "pylock.toml",
        "lock-version = \"1.0\"\ncreated-by = \"uv\"\n\n[[packages]]\nname = \"a\"\nversion = \"1\"\n",
    );
    let err = Lock::read(&path).unwrap_err();
    assert!(matches!(err, LockError::NotComfypak { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("created-by = \"uv\""), "{text}");
    assert!(text.contains("[tool.comfypak]"), "{text}");
}

#[test]
fn lock_unknown_layer_names_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let text = lock(vec![package("a", "1.0", "nightly")]).to_toml_string();
    let path = write(dir.path(), "pylock.toml", &text);
    let err = Lock::read(&path).unwrap_err();
    assert!(
        matches!(&err, LockError::UnknownLayer { layer, package, .. } if layer == "nightly" && package == "a"),
        "{err:?}"
    );
    assert!(err.to_string().contains("declared: stable, deps"), "{err}");
    // The writer refuses to produce such a file in the first place.
    let err = lock(vec![package("a", "1.0", "nightly")])
        .write(&dir.path().join("out.toml"))
        .unwrap_err();
    assert!(matches!(err, LockError::UnknownLayer { .. }), "{err:?}");
    assert!(!dir.path().join("out.toml").exists());
}

#[test]
fn lock_layers_are_checked_against_the_stack() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pylock.toml");
    let l = lock(vec![package("a", "1.0", "stable")]);
    l.check_stack_layers(&path, &["stable", "deps"]).unwrap();
    let err = l
        .check_stack_layers(&path, &["stable", "deps", "volatile"])
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, LockError::LayerMismatch { .. }), "{err:?}");
    assert!(
        text.contains("layers (stable, deps) are not the stack's (stable, deps, volatile)"),
        "{text}"
    );
    let err = l
        .check_stack_layers(&path, &["deps", "stable"])
        .unwrap_err();
    assert!(matches!(err, LockError::LayerMismatch { .. }), "{err:?}");
}

#[test]
fn lock_shape_errors_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let text = lock(vec![package("a", "1.0", "stable")])
        .to_toml_string()
        .replace("size = 1234", "size = \"big\"");
    let path = write(dir.path(), "pylock.toml", &text);
    let err = Lock::read(&path).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, LockError::Syntax { .. }), "{err:?}");
    assert!(text.contains("size"), "{text}");
}

#[test]
fn lock_values_that_do_not_parse_are_errors_naming_the_file_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let mut with_marker = package("a", "1.0", "stable");
    with_marker.marker = Some("platform_machine == 'x86_64'".to_string());
    let good = lock(vec![with_marker]).to_toml_string();
    let path = dir.path().join("pylock.toml");
    std::fs::write(&path, &good).unwrap();
    Lock::read(&path).unwrap();
    // (what is written, what replaces it, words the error must name)
    let cases = [
        (
            "python = \"3.14\"",
            "python = \"3\"",
            &["python", "\"3\""][..],
        ),
        (
            "platforms = [\"manylinux_2_39_x86_64\"]",
            "platforms = [\"linux_x86_64\"]",
            &["platforms", "linux_x86_64"],
        ),
        (
            "venv = \"/opt/venv\"",
            "venv = \"opt/venv\"",
            &["venv", "opt/venv"],
        ),
        (
            "torch-backend = \"cu130\"",
            "torch-backend = \"cu999\"",
            &["torch-backend", "cu999"],
        ),
        (
            "\nversion = \"1.0\"",
            "\nversion = \"one\"",
            &["version", "\"one\""],
        ),
        ("name = \"a\"", "name = \"-a-\"", &["name", "\"-a-\""]),
        (
            "marker = \"platform_machine == 'x86_64'\"",
            "marker = \"platform_machine ==\"",
            &["marker", "a 1.0"],
        ),
    ];
    for (from, to, words) in cases {
        assert!(good.contains(from), "{from} not in\n{good}");
        std::fs::write(&path, good.replacen(from, to, 1)).unwrap();
        let err = Lock::read(&path).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, LockError::Syntax { .. } | LockError::Field { .. }),
            "{err:?}"
        );
        assert!(text.contains(&path.display().to_string()), "{text}");
        for word in words {
            assert!(text.contains(word), "{word} not in: {text}");
        }
        assert!(err.help().unwrap().contains("comfypak resolve"), "{text}");
    }
}

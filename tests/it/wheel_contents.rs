//! What a wheel may contain and what the store trusts: METADATA's name and version must be
//! the file name's; members hold exactly the size the zip declares; zip bombs (a huge
//! uncompressed/compressed ratio) are refused before anything is written; store files are
//! read-only, and a store entry whose files were edited in place (through a hard link in a
//! layer) is unpacked again rather than copied into the next layer.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use comfypak::cache::Cache;
use comfypak::install::layout::EnvPaths;
use comfypak::install::link::LinkMode;
use comfypak::install::wheel::{unpack_verified, unpacked_dir, WheelError};
use comfypak::install::{install_layer, InstallError, InstallOptions, InstallWheel};
use comfypak::target::PythonVersion;
use comfypak_testkit::{BuiltWheel, WheelSpec};

const SITE: &str = "opt/venv/lib/python3.14/site-packages";

fn write(dir: &Path, wheel: &BuiltWheel) -> PathBuf {
    let path = dir.join(&wheel.filename);
    std::fs::write(&path, &wheel.bytes).unwrap();
    path
}

fn unpack(dir: &Path, wheel: &BuiltWheel) -> Result<(), WheelError> {
    let path = write(dir, wheel);
    let tree = dir.join(format!("tree-{}", wheel.sha256));
    std::fs::create_dir_all(&tree).unwrap();
    unpack_verified(&path, &wheel.filename, &wheel.sha256, &tree).map(|_| ())
}

#[test]
fn metadata_name_and_version_must_match_the_file_name() {
    let dir = tempfile::tempdir().unwrap();
    let good = WheelSpec::new("Alpha.Pkg", "1.0").build();
    unpack(dir.path(), &good).unwrap();
    // Normalized names and PEP 440-equal versions match.
    let equal = WheelSpec::new("alpha-pkg", "1.0.0")
        .filename_override("Alpha_Pkg-1.0-py3-none-any.whl")
        .build();
    unpack(dir.path(), &equal).unwrap();
    for (spec, field) in [
        (
            WheelSpec::new("alpha", "1.0").filename_override("beta-1.0-py3-none-any.whl"),
            "Name",
        ),
        (
            WheelSpec::new("alpha", "1.0").filename_override("alpha-2.0-py3-none-any.whl"),
            "Version",
        ),
    ] {
        let wheel = spec.build();
        let err = unpack(dir.path(), &wheel).unwrap_err();
        assert!(
            matches!(&err, WheelError::MetadataMismatch { field: f, .. } if *f == field),
            "{err}"
        );
        assert!(err.to_string().contains("pip and uv refuse"), "{err}");
    }
}

#[test]
fn a_zip_bomb_member_is_refused_before_it_is_written() {
    let dir = tempfile::tempdir().unwrap();
    // 80 MiB of zeros deflate to about 80 KiB: a ratio near 1000.
    let bomb = WheelSpec::new("bomb", "1.0")
        .file("bomb/zeros.bin", vec![0u8; 80 << 20])
        .build();
    assert!(bomb.bytes.len() < 1 << 20);
    let err = unpack(dir.path(), &bomb).unwrap_err();
    assert!(matches!(err, WheelError::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("zip bomb"), "{err}");
    let tree = dir.path().join(format!("tree-{}", bomb.sha256));
    assert!(!tree.join("bomb/zeros.bin").exists(), "nothing written");
    // Compressible but ordinary content stays accepted.
    // Pseudo-random letters: compressible (about 2:1) like real text, far from a bomb.
    let mut x: u32 = 0x9e37_79b9;
    let text: Vec<u8> = (0..(6u32 << 20))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            b"etaoinshrdlucmfw"[(x & 15) as usize]
        })
        .collect();
    let ok = WheelSpec::new("texty", "1.0")
        .file("texty/data.txt", text)
        .build();
    unpack(dir.path(), &ok).unwrap();
    // A small member that compresses very well, as real wheels have (opencv-contrib-python
    // 5.1.0.95: 6.3 MB in 17 kB), stays accepted: only large members are ratio-checked.
    let padded = WheelSpec::new("padded", "1.0")
        .file("padded/zeros.bin", vec![0u8; 8 << 20])
        .build();
    unpack(dir.path(), &padded).unwrap();
}

/// The offset of `needle` in `haystack`, from `from`.
fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

#[test]
fn a_member_longer_than_the_zip_declares_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let member = "liar/data.txt";
    let content = b"0123456789".repeat(100);
    let mut wheel = WheelSpec::new("liar", "1.0")
        .file(member, content.clone())
        .build();
    // Declare 10 bytes instead of 1000 in the local header (offset 22) and the central
    // directory entry (offset 24): the deflate stream still holds 1000.
    let local = find(&wheel.bytes, member.as_bytes(), 0).unwrap() - 30;
    assert_eq!(&wheel.bytes[local..local + 4], b"PK\x03\x04");
    let central = find(&wheel.bytes, member.as_bytes(), local + 31).unwrap() - 46;
    assert_eq!(&wheel.bytes[central..central + 4], b"PK\x01\x02");
    wheel.bytes[local + 22..local + 26].copy_from_slice(&10u32.to_le_bytes());
    wheel.bytes[central + 24..central + 28].copy_from_slice(&10u32.to_le_bytes());
    let err = unpack(dir.path(), &wheel).unwrap_err();
    assert!(
        err.to_string()
            .contains("more than the 10 bytes the zip declares"),
        "{err}"
    );
}

fn env() -> EnvPaths {
    EnvPaths {
        venv: "/opt/venv".to_string(),
        python: "3.14".parse::<PythonVersion>().unwrap(),
    }
}

/// `built`, written into `dir`, as the one requested wheel of layer `deps`.
fn deps_wheel(dir: &Path, package: &str, built: &BuiltWheel) -> InstallWheel {
    InstallWheel {
        package: package.to_string(),
        layer: "deps".to_string(),
        requested: true,
        direct_url: None,
        filename: built.filename.parse().unwrap(),
        sha256: built.sha256.parse().unwrap(),
        path: write(dir, built),
        accepted_record: Vec::new(),
    }
}

/// Installs `wheel` alone as layer `deps` into `out`.
fn install_deps(
    cache: &Cache,
    out: &Path,
    wheel: &InstallWheel,
    link_mode: LinkMode,
) -> Result<comfypak::install::InstallReport, InstallError> {
    install_layer(
        cache,
        out,
        &env(),
        "deps",
        std::slice::from_ref(wheel),
        &[],
        &InstallOptions {
            link_mode,
            ..InstallOptions::default()
        },
    )
}

#[test]
fn store_files_are_read_only_and_an_edited_store_entry_is_unpacked_again() {
    let dir = tempfile::tempdir().unwrap();
    let built = WheelSpec::new("tool-pkg", "1.0")
        .file("tool_pkg/core.py", b"VALUE = 1\n".to_vec())
        .build();
    let cache = Cache::new(dir.path().join("cache"));
    let wheel = deps_wheel(dir.path(), "tool-pkg", &built);
    let out = dir.path().join("build");
    let install = |mode: LinkMode| install_deps(&cache, &out, &wheel, mode);
    install(LinkMode::Hardlink).unwrap();
    let store = unpacked_dir(&cache, &wheel.sha256).join("tree/tool_pkg/core.py");
    let mode = std::fs::metadata(&store).unwrap().permissions().mode();
    assert_eq!(mode & 0o222, 0, "store file is writable: {mode:o}");

    // Someone edits the installed file in place (root ignores the mode; others chmod first):
    // through the hard link, that is the store's file.
    let installed = out.join("layers/deps").join(SITE).join("tool_pkg/core.py");
    std::fs::set_permissions(&installed, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&installed, b"VALUE = 666  # poisoned\n").unwrap();
    assert_eq!(std::fs::read(&store).unwrap(), b"VALUE = 666  # poisoned\n");

    // The next install, even by copy, gets the wheel's bytes: the entry is unpacked again.
    install(LinkMode::Copy).unwrap();
    assert_eq!(std::fs::read(&installed).unwrap(), b"VALUE = 1\n");
    assert_eq!(std::fs::read(&store).unwrap(), b"VALUE = 1\n");
}

/// The stamp check looks each store file up by its member path from the entry's tree: a file
/// deep in a subfolder that was truncated, rewritten with the same size (another mtime) or
/// removed, or a subfolder that is gone, is caught like a top-level one, and the next
/// hard-link install gets the wheel's bytes again.
#[test]
fn damage_deep_in_a_store_tree_is_found_and_unpacked_again() {
    let dir = tempfile::tempdir().unwrap();
    let built = WheelSpec::new("deep-pkg", "1.0")
        .file("deep_pkg/a/b/leaf.py", b"LEAF = 1\n".to_vec())
        .file("deep_pkg/a/b/other.py", b"OTHER = 2\n".to_vec())
        .build();
    let cache = Cache::new(dir.path().join("cache"));
    let wheel = deps_wheel(dir.path(), "deep-pkg", &built);
    let out = dir.path().join("build");
    let install = || install_deps(&cache, &out, &wheel, LinkMode::default()).unwrap();
    let linked = install().linked;
    let tree = unpacked_dir(&cache, &wheel.sha256).join("tree");
    let leaf = tree.join("deep_pkg/a/b/leaf.py");
    let installed = out
        .join("layers/deps")
        .join(SITE)
        .join("deep_pkg/a/b/leaf.py");
    let writable = |path: &Path| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    };
    let damages: [(&str, &dyn Fn()); 4] = [
        ("truncated", &|| {
            writable(&leaf);
            std::fs::write(&leaf, b"LEAF").unwrap();
        }),
        ("same size, other mtime", &|| {
            writable(&leaf);
            let file = std::fs::OpenOptions::new().write(true).open(&leaf).unwrap();
            std::io::Write::write_all(&mut &file, b"EVIL = 1\n").unwrap();
            let then = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1 << 30);
            file.set_modified(then).unwrap();
        }),
        ("removed", &|| std::fs::remove_file(&leaf).unwrap()),
        ("folder removed", &|| {
            for name in ["leaf.py", "other.py"] {
                std::fs::remove_file(tree.join("deep_pkg/a/b").join(name)).unwrap();
            }
            std::fs::remove_dir(tree.join("deep_pkg/a/b")).unwrap();
        }),
    ];
    for (what, damage) in damages {
        damage();
        assert_eq!(install().linked, linked, "{what}");
        assert_eq!(std::fs::read(&installed).unwrap(), b"LEAF = 1\n", "{what}");
        assert_eq!(std::fs::read(&leaf).unwrap(), b"LEAF = 1\n", "{what}");
    }
}

//! The target runtime: layers unpacked into the cache (whiteouts, confinement, verification,
//! atomicity), the namespace sandbox (read-only root, work folder, no network, PID 1, timeout),
//! interpreter discovery and the fit checks, all against a real Debian root with CPython 3.14
//! (made by scripts/python-root.sh; .ci/setup.d/50-python-root.sh exports its path).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use comfypak::pack::oci::media;
use comfypak::runtime::{Base, Runtime, RuntimeError, RuntimeOptions, WORK_DIR};
use comfypak::target::{Arch, Libc, Platform, PythonVersion, Target};
use sha2::{Digest, Sha256};

const VENV: &str = "/opt/venv";

/// The Debian testing root with python3.14, or `None` (outside CI) when it was not made.
pub fn debian_root() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("COMFYPAK_TEST_PYTHON_ROOT") {
        let p = PathBuf::from(p);
        assert!(
            p.join("usr/bin/python3.14").exists(),
            "COMFYPAK_TEST_PYTHON_ROOT={} has no usr/bin/python3.14",
            p.display()
        );
        return Some(p);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "COMFYPAK_TEST_PYTHON_ROOT is not set: .ci/setup.d/50-python-root.sh makes the root"
        );
    }
    eprintln!(
        "note: COMFYPAK_TEST_PYTHON_ROOT is not set; skipping (run scripts/python-root.sh DIR \
         and point it at the root it prints)"
    );
    None
}

/// The Debian testing root for arm64 (scripts/python-root.sh --arch arm64), where aarch64
/// programs run here (`COMFYPAK_TEST_AARCH64=1`, qemu-user through binfmt_misc): CI must have
/// made it then; elsewhere `None`.
pub fn debian_root_aarch64() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("COMFYPAK_TEST_PYTHON_ROOT_AARCH64") {
        let p = PathBuf::from(p);
        assert!(
            p.join("usr/bin/python3.14").exists(),
            "COMFYPAK_TEST_PYTHON_ROOT_AARCH64={} has no usr/bin/python3.14",
            p.display()
        );
        return Some(p);
    }
    if std::env::var("CI").as_deref() == Ok("true")
        && std::env::var("COMFYPAK_TEST_AARCH64").as_deref() == Ok("1")
    {
        panic!(
            "aarch64 programs run here but COMFYPAK_TEST_PYTHON_ROOT_AARCH64 is not set: \
             .ci/setup.d/50-python-root.sh makes the arm64 root"
        );
    }
    eprintln!(
        "note: COMFYPAK_TEST_PYTHON_ROOT_AARCH64 is not set; skipping the aarch64 half (run \
         scripts/python-root.sh --arch arm64 DIR where qemu-aarch64 is registered)"
    );
    None
}

pub fn target(python: (u8, u8), arch: Arch) -> Target {
    Target::new(
        PythonVersion {
            major: python.0,
            minor: python.1,
        },
        false,
        Platform {
            libc: Libc::Manylinux {
                major: 2,
                minor: 39,
            },
            arch,
        },
    )
}

pub fn options(cache: &Path, timeout: Duration) -> RuntimeOptions {
    RuntimeOptions {
        cache_dir: cache.to_path_buf(),
        timeout,
    }
}

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A tar of (path, kind) entries: `File(content)`, `Dir`, `Symlink(target)`, `Hardlink(target)`.
pub enum E<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
}

pub fn tar_of(entries: &[E<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        let (path, data): (&str, &[u8]) = match entry {
            E::File(p, d) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                (p, d)
            }
            E::Dir(p) => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                (p, b"")
            }
            E::Symlink(p, t) | E::Hardlink(p, t) => {
                header.set_entry_type(if matches!(entry, E::Symlink(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                });
                header.set_mode(0o777);
                // Raw names: the builder's checks would refuse the hostile ones the tests need.
                let name = t.as_bytes();
                header.as_old_mut().linkname[..name.len()].copy_from_slice(name);
                (p, b"")
            }
        };
        let name = path.as_bytes();
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        header.set_size(data.len() as u64);
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    builder.into_inner().unwrap()
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// An OCI layout at `dir` with one image per (arch, layers); layers are uncompressed tars
/// (gzipped when `gz`). Returns the blob paths of each image's layers.
pub fn write_layout(dir: &Path, images: &[(Arch, Vec<Vec<u8>>)], gz: bool) -> Vec<Vec<PathBuf>> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let put = |bytes: &[u8]| -> (String, PathBuf) {
        let digest = sha(bytes);
        let path = blobs.join(&digest[7..]);
        std::fs::write(&path, bytes).unwrap();
        (digest, path)
    };
    let mut descriptors = Vec::new();
    let mut paths = Vec::new();
    for (arch, layers) in images {
        let mut layer_descs = Vec::new();
        let mut diff_ids = Vec::new();
        let mut image_paths = Vec::new();
        for tar in layers {
            diff_ids.push(sha(tar));
            let stored = if gz { gzip(tar) } else { tar.clone() };
            let (digest, path) = put(&stored);
            image_paths.push(path);
            layer_descs.push(serde_json::json!({
                "mediaType": if gz { media::LAYER_GZIP } else { media::LAYER_TAR },
                "digest": digest, "size": stored.len(),
            }));
        }
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": arch.oci_name(), "os": "linux",
            "config": {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap();
        let (config_digest, _) = put(&config);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": media::MANIFEST,
            "config": {"mediaType": media::CONFIG, "digest": config_digest, "size": config.len()},
            "layers": layer_descs,
        }))
        .unwrap();
        let (manifest_digest, _) = put(&manifest);
        descriptors.push(serde_json::json!({
            "mediaType": media::MANIFEST, "digest": manifest_digest, "size": manifest.len(),
            "platform": {"architecture": arch.oci_name(), "os": "linux"},
        }));
        paths.push(image_paths);
    }
    let index = serde_json::json!({"schemaVersion": 2, "manifests": descriptors});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    paths
}

fn roots_in(cache: &Path) -> Vec<String> {
    match std::fs::read_dir(cache.join("runtime/roots")) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn layout_error(layers: Vec<Vec<u8>>) -> (String, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("base");
    write_layout(&layout, &[(Arch::X86_64, layers)], true);
    let cache = dir.path().join("cache");
    let err = Runtime::for_platform(
        &Base::Layout(layout),
        &target((3, 14), Arch::X86_64),
        VENV,
        &options(&cache, Duration::from_secs(30)),
    )
    .unwrap_err();
    (err.to_string(), roots_in(&cache))
}

#[test]
fn whiteouts_hard_links_and_symlinks_inside_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let lower = tar_of(&[
        E::Dir("usr/"),
        E::Dir("usr/lib/"),
        E::Symlink("lib", "usr/lib"),
        E::File("a/b", b"b"),
        E::File("a/c", b"c"),
        E::File("d/e", b"e"),
        E::File("d/sub/g", b"g"),
        E::File("etc/hostname", b"base\n"),
    ]);
    let upper = tar_of(&[
        E::File("a/.wh.b", b""),
        E::Dir("d/"),
        E::File("d/.wh..wh..opq", b""),
        E::File("d/f", b"f"),
        // Through the merged-usr link, and through an absolute link: both stay in the root.
        E::File("lib/x.so", b"x"),
        E::Symlink("abs", "/usr/lib"),
        E::File("abs/y.so", b"y"),
        E::Hardlink("etc/hostname2", "etc/hostname"),
    ]);
    let layers = vec![
        comfypak::runtime::unpack::LayerBlob {
            path: dir.path().join("l1"),
            media_type: media::LAYER_TAR.to_string(),
            digest: sha(&lower),
            size: lower.len() as u64,
            diff_id: Some(sha(&lower)),
        },
        comfypak::runtime::unpack::LayerBlob {
            path: dir.path().join("l2"),
            media_type: media::LAYER_TAR.to_string(),
            digest: sha(&upper),
            size: upper.len() as u64,
            diff_id: None,
        },
    ];
    std::fs::write(dir.path().join("l1"), &lower).unwrap();
    std::fs::write(dir.path().join("l2"), &upper).unwrap();
    let roots = dir.path().join("roots");
    let root = comfypak::runtime::unpack::unpack_cached(&roots, &layers).unwrap();
    let list = |p: &str| {
        let mut names: Vec<String> = std::fs::read_dir(root.join(p))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(list("a"), ["c"]);
    assert_eq!(list("d"), ["f"]);
    assert_eq!(list("usr/lib"), ["x.so", "y.so"]);
    assert_eq!(
        std::fs::read_link(root.join("lib")).unwrap(),
        Path::new("usr/lib")
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/hostname2")).unwrap(),
        "base\n"
    );
    // The mount points the sandbox needs exist; nothing else is in the roots folder.
    for d in ["proc", "dev", "tmp"] {
        assert!(root.join(d).is_dir(), "{d}");
    }
    let entries: Vec<_> = std::fs::read_dir(&roots).unwrap().flatten().collect();
    assert_eq!(entries.len(), 1, "only the finished root: {entries:?}");
    // A second call reuses it.
    assert_eq!(
        comfypak::runtime::unpack::unpack_cached(&roots, &layers).unwrap(),
        root
    );
}

#[test]
fn hostile_layers_are_refused_and_nothing_is_cached() {
    let (err, roots) = layout_error(vec![tar_of(&[E::File("a/../../evil", b"x")])]);
    assert!(err.contains("`..` component"), "{err}");
    assert!(roots.is_empty(), "{roots:?}");

    let (err, roots) = layout_error(vec![tar_of(&[
        E::Dir("usr/"),
        E::Symlink("usr/up", "../../../../etc"),
    ])]);
    assert!(err.contains("points outside the root"), "{err}");
    assert!(roots.is_empty(), "{roots:?}");

    let (err, _) = layout_error(vec![tar_of(&[E::Symlink("up", "/../../etc")])]);
    assert!(err.contains("points outside the root"), "{err}");

    let (err, _) = layout_error(vec![tar_of(&[E::Hardlink("h", "../etc/passwd")])]);
    assert!(err.contains("`..` component"), "{err}");
}

#[test]
fn tampered_and_truncated_blobs_are_refused() {
    for damage in ["tamper", "truncate"] {
        let dir = tempfile::tempdir().unwrap();
        let layout = dir.path().join("base");
        let tar = tar_of(&[E::File("etc/hostname", b"x\n"), E::File("usr/bin/x", b"y")]);
        let paths = write_layout(&layout, &[(Arch::X86_64, vec![tar])], true);
        let blob = &paths[0][0];
        let mut bytes = std::fs::read(blob).unwrap();
        if damage == "tamper" {
            let n = bytes.len();
            bytes[n - 9] ^= 0xff; // the gzip trailer's CRC: the tar still reads
        } else {
            bytes.truncate(bytes.len() - 10);
        }
        std::fs::write(blob, &bytes).unwrap();
        let cache = dir.path().join("cache");
        let err = Runtime::for_platform(
            &Base::Layout(layout),
            &target((3, 14), Arch::X86_64),
            VENV,
            &options(&cache, Duration::from_secs(30)),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("layer sha256:"), "{damage}: {err}");
        assert!(
            roots_in(&cache).is_empty(),
            "{damage}: {:?}",
            roots_in(&cache)
        );
    }
}

#[test]
fn base_without_python_or_platform() {
    let (err, _) = layout_error(vec![tar_of(&[E::File("etc/hostname", b"x\n")])]);
    assert!(err.contains("no Python in the base"), "{err}");
    assert!(err.contains("python3.14, python3"), "{err}");

    // A layout with only an arm64 image, asked for x86_64.
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("base");
    write_layout(
        &layout,
        &[(Arch::Aarch64, vec![tar_of(&[E::File("etc/x", b"")])])],
        false,
    );
    let err = Runtime::for_platform(
        &Base::Layout(layout),
        &target((3, 14), Arch::X86_64),
        VENV,
        &options(&dir.path().join("cache"), Duration::from_secs(30)),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("no linux/amd64 image") && err.contains("linux/arm64"),
        "{err}"
    );
}

/// A copy of the Debian root made of hard links, to change a few files in.
pub(crate) fn root_copy(root: &Path, into: &Path) -> PathBuf {
    let copy = into.join("root");
    let status = std::process::Command::new("cp")
        .arg("-al")
        .arg(root)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    copy
}

#[test]
fn real_interpreter_from_a_root_folder() {
    let Some(root) = debian_root() else { return };
    let cache = tempfile::tempdir().unwrap();
    let runtime = Runtime::for_platform(
        &Base::Root(root.clone()),
        &target((3, 14), Arch::X86_64),
        VENV,
        &options(cache.path(), Duration::from_secs(120)),
    )
    .unwrap();
    let i = &runtime.interpreter;
    assert_eq!(i.path, "/usr/bin/python3.14");
    assert!(i.version.starts_with("3.14."), "{i:?}");
    assert_eq!(i.machine, "x86_64");
    assert_eq!(i.cache_tag.as_deref(), Some("cpython-314"));
    assert_eq!(
        i.paths.get("purelib").map(String::as_str),
        Some("/opt/venv/lib/python3.14/site-packages")
    );
    let tags = i.supported_tags().unwrap();
    assert!(
        tags.iter()
            .any(|t| t == "cp314-cp314-manylinux_2_39_x86_64"),
        "{tags:?}"
    );

    // Inside: PID 1, the root read-only, the work folder writable, no network.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let work = tempfile::tempdir().unwrap();
    let script = format!(
        r#"
import os, socket
print("pid", os.getpid())
try:
    open("/usr/evil", "w")
    print("root writable")
except OSError as e:
    print("root", e.errno)
open("{WORK_DIR}/hello", "w").write("from the sandbox")
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=5)
    print("network reachable")
except OSError as e:
    print("network", type(e).__name__)
print("uid", os.getuid())
"#
    );
    let out = runtime
        .run(
            &["/usr/bin/python3.14".into(), "-c".into(), script],
            &[],
            Some(work.path()),
            b"",
        )
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.code, 0, "{stdout}\n{}", out.stderr_tail());
    assert!(stdout.contains("pid 1\n"), "{stdout}");
    assert!(stdout.contains("root 30\n"), "EROFS expected: {stdout}");
    assert!(
        stdout.contains("network ConnectionRefusedError") || stdout.contains("network OSError"),
        "{stdout}"
    );
    assert!(stdout.contains("uid 0\n"), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(work.path().join("hello")).unwrap(),
        "from the sandbox"
    );
    assert!(!root.join("usr/evil").exists());
    drop(listener);

    // Layers stack over the root as a read-only overlay.
    let layer = tempfile::tempdir().unwrap();
    let site = layer.path().join("opt/venv/lib/python3.14/site-packages");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("layered.py"), "VALUE = 42\n").unwrap();
    let out = runtime
        .run(
            &[
                "/usr/bin/python3.14".into(),
                "-c".into(),
                "import sys; sys.path.insert(0, '/opt/venv/lib/python3.14/site-packages'); \
                 import layered; print(layered.VALUE)"
                    .into(),
            ],
            &[layer.path().to_path_buf()],
            None,
            b"",
        )
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "42",
        "{}",
        out.stderr_tail()
    );
}

#[test]
fn real_interpreter_from_a_multi_arch_layout() {
    let Some(root) = debian_root() else { return };
    let dir = tempfile::tempdir().unwrap();
    // The root as one uncompressed layer, and a gzipped layer with a file on top.
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    builder.append_dir_all(".", &root).unwrap();
    let base_tar = builder.into_inner().unwrap();
    let top = tar_of(&[E::File("etc/comfypak-test", b"top layer\n")]);
    let layout = dir.path().join("base");
    write_layout(
        &layout,
        &[
            (Arch::X86_64, vec![base_tar.clone(), top.clone()]),
            (Arch::Aarch64, vec![tar_of(&[E::File("etc/arm", b"")])]),
        ],
        false,
    );
    let cache = dir.path().join("cache");
    let runtime = Runtime::for_platform(
        &Base::Layout(layout.clone()),
        &target((3, 14), Arch::X86_64),
        VENV,
        &options(&cache, Duration::from_secs(120)),
    )
    .unwrap();
    assert!(runtime.interpreter.version.starts_with("3.14."));
    assert!(runtime
        .image_digest
        .as_deref()
        .is_some_and(|d| d.starts_with("sha256:")));
    assert_eq!(
        std::fs::read_to_string(runtime.root.join("etc/comfypak-test")).unwrap(),
        "top layer\n"
    );
    assert_eq!(roots_in(&cache).len(), 1);

    // The wrong version: the target wants 3.13.
    let err = Runtime::for_platform(
        &Base::Layout(layout),
        &target((3, 13), Arch::X86_64),
        VENV,
        &options(&cache, Duration::from_secs(120)),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("/usr/bin/python3.14") && err.contains("CPython 3.13"),
        "{err}"
    );
}

#[test]
fn wrong_version_hanging_interpreter_and_wrong_arch() {
    let Some(root) = debian_root() else { return };
    let dir = tempfile::tempdir().unwrap();
    let copy = root_copy(&root, dir.path());
    let cache = dir.path().join("cache");

    // python3.13 that is really 3.14: the probe tells, and both are named.
    std::os::unix::fs::symlink("python3.14", copy.join("usr/bin/python3.13")).unwrap();
    let err = Runtime::for_platform(
        &Base::Root(copy.clone()),
        &target((3, 13), Arch::X86_64),
        VENV,
        &options(&cache, Duration::from_secs(120)),
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, RuntimeError::Mismatch { .. }), "{text}");
    assert!(text.contains("/usr/bin/python3.13 3.14."), "{text}");
    assert!(
        text.contains("its version is 3.14.") && text.contains("the target's 3.13"),
        "{text}"
    );

    // The x86_64 root asked for as aarch64.
    let err = Runtime::for_platform(
        &Base::Root(copy.clone()),
        &target((3, 14), Arch::Aarch64),
        VENV,
        &options(&cache, Duration::from_secs(120)),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("the base is for x86_64, the platform is aarch64"),
        "{err}"
    );

    // An interpreter that never answers is killed at the timeout, with what it started.
    let python = copy.join("usr/bin/python3.14");
    std::fs::remove_file(&python).unwrap();
    std::fs::write(&python, "#!/bin/sh\nsleep 987654 &\nexec sleep 987653\n").unwrap();
    std::fs::set_permissions(&python, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let err = Runtime::for_platform(
        &Base::Root(copy),
        &target((3, 14), Arch::X86_64),
        VENV,
        &options(&cache, Duration::from_secs(2)),
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, RuntimeError::Timeout { .. }), "{text}");
    assert!(text.contains("longer than 2s"), "{text}");
    let left: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains("98765"))
        .collect();
    assert!(left.is_empty(), "processes left running: {left:?}");
}

#[test]
fn venv_skeleton_as_uv_writes_it() {
    let Some(root) = debian_root() else { return };
    let cache = tempfile::tempdir().unwrap();
    let runtime = Runtime::for_platform(
        &Base::Root(root),
        &target((3, 14), Arch::X86_64),
        VENV,
        &options(cache.path(), Duration::from_secs(120)),
    )
    .unwrap();
    let layer = tempfile::tempdir().unwrap();
    let venv =
        comfypak::runtime::venv::write_skeleton(layer.path(), VENV, &runtime.interpreter).unwrap();
    let cfg = std::fs::read_to_string(venv.join("pyvenv.cfg")).unwrap();
    let keys: BTreeMap<&str, &str> = cfg.lines().filter_map(|l| l.split_once(" = ")).collect();
    assert_eq!(keys["home"], "/usr/bin");
    assert_eq!(keys["include-system-site-packages"], "false");
    assert_eq!(keys["version_info"], runtime.interpreter.version);
    assert_eq!(
        std::fs::read_link(venv.join("bin/python")).unwrap(),
        Path::new("/usr/bin/python3.14")
    );
    for link in ["bin/python3", "bin/python3.14"] {
        assert_eq!(
            std::fs::read_link(venv.join(link)).unwrap(),
            Path::new("python")
        );
    }
    // The real interpreter, started through the skeleton, is in the venv.
    let out = runtime
        .run(
            &[
                format!("{VENV}/bin/python3"),
                "-c".into(),
                "import sys, sysconfig; print(sys.prefix, sys.base_prefix, \
                 sysconfig.get_paths()['purelib'])"
                    .into(),
            ],
            &[layer.path().to_path_buf()],
            None,
            b"",
        )
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "/opt/venv /usr /opt/venv/lib/python3.14/site-packages",
        "{}",
        out.stderr_tail()
    );
}

#[test]
fn real_aarch64_interpreter_under_qemu() {
    let Some(root) = debian_root_aarch64() else {
        return;
    };
    let cache = tempfile::tempdir().unwrap();
    let runtime = Runtime::for_platform(
        &Base::Root(root.clone()),
        &target((3, 14), Arch::Aarch64),
        VENV,
        &options(cache.path(), Duration::from_secs(300)),
    )
    .unwrap();
    let i = &runtime.interpreter;
    assert_eq!(i.path, "/usr/bin/python3.14");
    assert!(i.version.starts_with("3.14."), "{i:?}");
    assert_eq!(i.machine, "aarch64");
    let tags = i.supported_tags().unwrap();
    assert!(
        tags.iter()
            .any(|t| t == "cp314-cp314-manylinux_2_39_aarch64"),
        "{tags:?}"
    );
    let out = runtime
        .run(
            &[
                "/usr/bin/python3.14".into(),
                "-c".into(),
                "import os, platform, ssl, sqlite3, ctypes; print(os.getpid(), platform.machine())"
                    .into(),
            ],
            &[],
            None,
            b"",
        )
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1 aarch64",
        "{}",
        out.stderr_tail()
    );
    // The arm64 root is not an x86_64 base.
    let err = Runtime::for_platform(
        &Base::Root(root),
        &target((3, 14), Arch::X86_64),
        VENV,
        &options(cache.path(), Duration::from_secs(300)),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("an aarch64 executable"), "{err}");
}

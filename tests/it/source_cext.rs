//! A C extension built from source by `comfypak build` in a build base (scripts/python-root.sh
//! --build: gcc, the Python headers), per architecture: x86_64 natively, aarch64 under
//! qemu-user. The test writes the sdist itself (a module in C and a PEP 517 backend in the
//! source tree that runs the base's `cc`), builds it through the command line with
//! `--build-base ARCH=ROOT`, checks the wheel (its tag, the ELF machine of the `.so`), then
//! imports it with the target interpreter in the sandbox, on the plain Python root as the
//! image's base: `comfypak check`, and a call into the module that prints what it answers.
//!
//! The build bases (gcc, cmake; ~0.6 GB each) come from .ci/setup.d/50-python-root.sh as
//! `COMFYPAK_TEST_BUILD_ROOT` and, where aarch64 programs run (`COMFYPAK_TEST_AARCH64=1`),
//! `COMFYPAK_TEST_BUILD_ROOT_AARCH64`; CI must have them, elsewhere each half prints a note and
//! returns without them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use comfypak::runtime::{Base, Runtime};
use comfypak::target::Arch;
use comfypak_testkit::{FixtureIndex, WheelSpec};

use super::check::{comfypak, text};
use super::common::write_index_definitions;
use super::runtime::{debian_root, debian_root_aarch64, options, target};

/// The backend, in the source tree (`backend-path = ["."]`, no build requirements): compiles
/// `cext/_speed.c` with the base's `cc` (the name make and CMake use) against the target
/// interpreter's headers, and packs a wheel tagged for that interpreter and platform.
const C_BACKEND: &str = r#"
import base64, hashlib, os, platform, subprocess, sys, sysconfig, time, zipfile

NAME, VERSION = "cext", "1.0"

def get_requires_for_build_wheel(config_settings=None):
    return []

def _metadata():
    return "Metadata-Version: 2.4\nName: %s\nVersion: %s\n" % (NAME, VERSION)

def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    d = "%s-%s.dist-info" % (NAME, VERSION)
    os.makedirs(os.path.join(metadata_directory, d))
    with open(os.path.join(metadata_directory, d, "METADATA"), "w") as f:
        f.write(_metadata())
    return d

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    impl = "cp%d%d" % sys.version_info[:2]
    plat = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    tag = "%s-%s-%s" % (impl, impl, plat)
    ext = "cext/_speed" + sysconfig.get_config_var("EXT_SUFFIX")
    os.makedirs("build", exist_ok=True)
    cmd = ["cc", "-shared", "-fPIC", "-O2", "-I", sysconfig.get_paths()["include"],
           "cext/_speed.c", "-o", os.path.join("build", "_speed.so")]
    print("c_backend: on %s: %s" % (platform.machine(), " ".join(cmd)), flush=True)
    subprocess.run(["cc", "--version"], check=True)
    subprocess.run(cmd, check=True)
    date = time.gmtime(max(int(os.environ["SOURCE_DATE_EPOCH"]), 315532800))[:6]
    with open("cext/__init__.py", "rb") as f:
        init = f.read()
    with open(os.path.join("build", "_speed.so"), "rb") as f:
        so = f.read()
    dist_info = "%s-%s.dist-info" % (NAME, VERSION)
    wheel_meta = "Wheel-Version: 1.0\nGenerator: c_backend\nRoot-Is-Purelib: false\nTag: %s\n" % tag
    contents = [("cext/__init__.py", init, 0o644), (ext, so, 0o755),
                (dist_info + "/METADATA", _metadata().encode(), 0o644),
                (dist_info + "/WHEEL", wheel_meta.encode(), 0o644)]
    record = []
    for path, data, _ in contents:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append("%s,sha256=%s,%d" % (path, digest, len(data)))
    record.append(dist_info + "/RECORD,,")
    contents.append((dist_info + "/RECORD", ("\n".join(record) + "\n").encode(), 0o644))
    wheel = "%s-%s-%s.whl" % (NAME, VERSION, tag)
    with zipfile.ZipFile(os.path.join(wheel_directory, wheel), "w") as z:
        for path, data, mode in contents:
            info = zipfile.ZipInfo(path, date)
            info.external_attr = mode << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    print("c_backend: built", wheel, flush=True)
    return wheel
"#;

/// The module: `add(a, b)`, and `built_for()`, the architecture the compiler targeted.
const SPEED_C: &str = r#"#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *add(PyObject *self, PyObject *args) {
    long a, b;
    if (!PyArg_ParseTuple(args, "ll", &a, &b))
        return NULL;
    return PyLong_FromLong(a + b);
}

static PyObject *built_for(PyObject *self, PyObject *unused) {
#if defined(__aarch64__)
    return PyUnicode_FromString("aarch64");
#elif defined(__x86_64__)
    return PyUnicode_FromString("x86_64");
#else
    return PyUnicode_FromString("other");
#endif
}

static PyMethodDef methods[] = {
    {"add", add, METH_VARARGS, "a + b, in C"},
    {"built_for", built_for, METH_NOARGS, "the architecture the compiler targeted"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_speed", NULL, -1, methods};

PyMODINIT_FUNC PyInit__speed(void) { return PyModule_Create(&module); }
"#;

/// Importing the package calls into C, so `comfypak check`'s import fails if the extension
/// does not load or answers wrong.
const INIT_PY: &str = "from ._speed import add, built_for\n\
                       assert add(2, 3) == 5, add(2, 3)\n";

/// The sdist `cext-1.0.tar.gz` in `dir`.
fn write_cext_sdist(dir: &Path) -> PathBuf {
    let files = [
        (
            "pyproject.toml",
            "[build-system]\nrequires = []\nbuild-backend = \"c_backend\"\n\
             backend-path = [\".\"]\n\n[project]\nname = \"cext\"\nversion = \"1.0\"\n",
        ),
        (
            "PKG-INFO",
            "Metadata-Version: 2.2\nName: cext\nVersion: 1.0\n",
        ),
        ("c_backend.py", C_BACKEND),
        ("cext/__init__.py", INIT_PY),
        ("cext/_speed.c", SPEED_C),
    ];
    let path = dir.join("cext-1.0.tar.gz");
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (rel, text) in files {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_size(text.len() as u64);
        header.set_mtime(0);
        header.set_cksum();
        tar.append_data(&mut header, format!("cext-1.0/{rel}"), text.as_bytes())
            .unwrap();
    }
    let bytes = tar.into_inner().unwrap().finish().unwrap();
    std::fs::File::create(&path)
        .unwrap()
        .write_all(&bytes)
        .unwrap();
    path
}

/// The build base of `arch` named by `var`, or `None` with a note.
fn build_root(var: &str) -> Option<PathBuf> {
    let Some(p) = std::env::var_os(var) else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{var} is not set: .ci/setup.d/50-python-root.sh makes the build base");
        }
        eprintln!(
            "note: {var} is not set; skipping (run scripts/python-root.sh --build [--arch arm64] \
             DIR and point it at the root it prints)"
        );
        return None;
    };
    let p = PathBuf::from(p);
    assert!(
        p.join("usr/bin/python3.14").exists() && p.join("usr/include/python3.14/Python.h").exists(),
        "{var}={} has no usr/bin/python3.14 and Python.h: not a build base",
        p.display()
    );
    Some(p)
}

/// Builds the C extension for `arch` through `comfypak build` on `image_root` with
/// `build_root` as the build base, checks the wheel, imports it with `comfypak check`, and
/// returns what the module answers when called in the sandbox.
fn build_and_import(arch: Arch, image_root: &Path, build_root: &Path) -> String {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    // A stack with one layer: the sdist. The index is only asked for nothing (no
    // dependencies), but a stack names one.
    let index = FixtureIndex::builder()
        .wheel(WheelSpec::new("six", "1.17.0"))
        .build();
    index.write_simple_tree(dir.path().join("index")).unwrap();
    let url = url::Url::from_directory_path(dir.path().join("index/simple")).unwrap();
    write_index_definitions(dir.path(), &[("pypi", url.as_str(), "simple")]);
    let pak = dir.path().join("pak");
    std::fs::create_dir_all(&pak).unwrap();
    write_cext_sdist(&pak);
    std::fs::write(pak.join("deps.txt"), "cext @ ./cext-1.0.tar.gz\n").unwrap();
    std::fs::write(
        pak.join("stack.toml"),
        format!(
            "[stack]\nname = \"cext\"\nindex-dir = \"../indexes\"\n\n[target]\npython = \"3.14\"\n\
             platforms = [\"manylinux_2_39_{arch}\"]\nvenv = \"/opt/venv\"\n\
             torch-backend = \"cpu\"\n\n[indexes]\ndefault = [\"pypi\"]\n\n\
             [build]\ntimeout = \"30m\"\n\n\
             [[layer]]\nname = \"deps\"\npaks = [\"deps.txt\"]\n"
        ),
    )
    .unwrap();
    let pak_arg = pak.to_str().unwrap();
    let base = format!("{arch}={}", image_root.display());
    let build_base = format!("{arch}={}", build_root.display());
    let started = std::time::Instant::now();
    let out = comfypak(
        &[
            "build",
            "--stack",
            pak_arg,
            "--out",
            "out",
            "--lock",
            "pylock.toml",
            "--base",
            &base,
            "--build-base",
            &build_base,
        ],
        dir.path(),
        &cache,
    );
    let seconds = started.elapsed().as_secs_f64();
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    println!("--- comfypak build ({arch}, {seconds:.1}s):\n{stderr}");

    // The wheel: tagged for the target's interpreter and linux_ARCH, with an ELF .so for ARCH.
    let lock = comfypak::lock::Lock::read(&dir.path().join("pylock.toml")).unwrap();
    let cext = lock
        .packages
        .iter()
        .find(|p| p.name.as_ref() == "cext")
        .unwrap();
    let wheel_name = cext.tool.comfypak.built[0].name.to_string();
    assert_eq!(wheel_name, format!("cext-1.0-cp314-cp314-linux_{arch}.whl"));
    let wheel = find_file(&cache.join("source-builds"), &wheel_name)
        .unwrap_or_else(|| panic!("{wheel_name} is not in the build cache"));
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&wheel).unwrap()).unwrap();
    let so_name = format!("cext/_speed.cpython-314-{arch}-linux-gnu.so");
    let mut so = Vec::new();
    std::io::Read::read_to_end(&mut zip.by_name(&so_name).unwrap(), &mut so).unwrap();
    assert_eq!(&so[..4], b"\x7fELF", "{so_name}");
    // e_machine: 62 x86_64, 183 aarch64.
    let machine = u16::from_le_bytes([so[18], so[19]]);
    let want = match arch {
        Arch::X86_64 => 62,
        Arch::Aarch64 => 183,
    };
    assert_eq!(machine, want, "{so_name}'s ELF machine");
    // The build's log, kept beside the wheel in the build cache.
    let log = std::fs::read_to_string(wheel.with_file_name("build.log")).unwrap();
    assert!(
        log.contains(&format!("c_backend: on {arch}: cc -shared")),
        "the backend ran on the target's interpreter: {log}"
    );

    // `comfypak check` on the image's base imports it (the import calls into C).
    let out = comfypak(
        &[
            "check", "--stack", pak_arg, "--out", "out", "--base", &base, "--json",
        ],
        dir.path(),
        &cache,
    );
    assert!(out.status.success(), "{}", text(&out));
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let imported: Vec<&str> = reports[0]["imports"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["ok"] == true)
        .map(|i| i["module"].as_str().unwrap())
        .collect();
    assert_eq!(imported, ["cext"], "{reports}");

    // And a call into it, by the venv's python in the sandbox over the installed layer.
    let runtime = Runtime::for_platform(
        &Base::Root(image_root.to_path_buf()),
        &target((3, 14), arch),
        "/opt/venv",
        &options(&cache, Duration::from_secs(600)),
    )
    .unwrap();
    let layer = dir.path().join("out/layers/deps");
    let argv: Vec<String> = [
        "/opt/venv/bin/python",
        "-c",
        "import cext, platform, sys; print(platform.machine(), sys.version.split()[0], \
         cext.built_for(), cext.add(40, 2), cext._speed.__file__)",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let ran = runtime.run(&argv, &[layer], None, b"").unwrap();
    let stdout = String::from_utf8_lossy(&ran.stdout).trim().to_string();
    assert_eq!(ran.code, 0, "{stdout}\n{}", ran.stderr_tail());
    println!("{arch}: {stdout}");
    assert!(
        stdout.starts_with(&format!("{arch} 3.14.")),
        "the target's interpreter ran it: {stdout}"
    );
    assert!(
        stdout.contains(&format!(
            " {arch} 42 /opt/venv/lib/python3.14/site-packages/cext/_speed.cpython-314-{arch}-linux-gnu.so"
        )),
        "{stdout}"
    );
    stdout
}

fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = find_file(&path, name) {
                return Some(found);
            }
        } else if path.file_name().is_some_and(|n| n == name) {
            return Some(path);
        }
    }
    None
}

#[test]
fn source_c_extension_x86_64_builds_in_the_build_base_and_imports() {
    let Some(root) = debian_root() else { return };
    let Some(build) = build_root("COMFYPAK_TEST_BUILD_ROOT") else {
        return;
    };
    build_and_import(Arch::X86_64, &root, &build);
}

#[test]
fn source_c_extension_aarch64_builds_under_qemu_in_the_build_base_and_imports() {
    if std::env::var("COMFYPAK_TEST_AARCH64").as_deref() != Ok("1") {
        eprintln!(
            "note: COMFYPAK_TEST_AARCH64 is not 1: aarch64 programs may not run here; skipping"
        );
        return;
    }
    let Some(root) = debian_root_aarch64() else {
        return;
    };
    let Some(build) = build_root("COMFYPAK_TEST_BUILD_ROOT_AARCH64") else {
        return;
    };
    build_and_import(Arch::Aarch64, &root, &build);
}

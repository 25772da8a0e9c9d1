//! The fixture-scale runtime job, as a user runs it: `comfypak build --base ROOT` of a small
//! two-layer stack (wheels built here, a file:// index) on the Debian root with CPython 3.14
//! (tests/it/runtime.rs says where it comes from), so the lowest layer gets the venv skeleton
//! and every layer unchecked-hash bytecode listed in RECORD; two builds give the same bytes;
//! then `comfypak check` imports and runs what was installed, with an allow-list, in text and
//! JSON, and fails on what the list does not allow.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use comfypak_testkit::{FixtureIndex, WheelSpec};

use super::common::write_index_definitions;
use super::runtime::debian_root;

pub(crate) fn comfypak(args: &[&str], cwd: &Path, cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_comfypak"))
        .args(args)
        .current_dir(cwd)
        .env("COMFYPAK_CACHE_DIR", cache)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap()
}

pub(crate) fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The stack: `stable` holds demo-base (a console script that answers --help), `deps` holds
/// demo-app (depends on demo-base, has a file with a syntax error) and demo-bad (fails at
/// import; its script exits 1).
pub(crate) fn fixture_stack(dir: &Path, allow: &str) -> PathBuf {
    fixture_stack_for(dir, allow, &["manylinux_2_39_x86_64"])
}

/// [`fixture_stack`] for these platforms (its wheels are pure Python: any platform).
pub(crate) fn fixture_stack_for(dir: &Path, allow: &str, platforms: &[&str]) -> PathBuf {
    fixture_stack_with(dir, allow, platforms, Vec::new())
}

/// [`fixture_stack_for`] with more distributions in `deps`.
fn fixture_stack_with(
    dir: &Path,
    allow: &str,
    platforms: &[&str],
    extra: Vec<WheelSpec>,
) -> PathBuf {
    let extra_names: String = extra.iter().map(|w| format!("{}\n", w.name)).collect();
    // Enough modules that the compile runs in parallel worker processes.
    let mut many = WheelSpec::new("demo-many", "1.0").no_stub_module();
    for i in 0..80 {
        many = many.file(format!("demo_many/m{i:02}.py"), format!("N = {i}\n"));
    }
    let mut index = FixtureIndex::builder().wheel(many);
    for wheel in extra {
        index = index.wheel(wheel);
    }
    let index = index
        .wheel(
            WheelSpec::new("demo-base", "1.0")
                .no_stub_module()
                .file(
                    "demo_base/__init__.py",
                    "def main():\n    print('demo-base ok')\n    return 0\n",
                )
                .file("demo_base/util.py", "VALUE = 1\n")
                .entry_points("[console_scripts]\ndemo-base = demo_base:main\n"),
        )
        .wheel(
            WheelSpec::new("demo-app", "2.0")
                .requires("demo-base>=1")
                .no_stub_module()
                .file("demo_app/__init__.py", "from demo_base.util import VALUE\n")
                .file("demo_app/template_src.py", "def broken(:\n"),
        )
        .wheel(
            WheelSpec::new("demo-bad", "0.1")
                .no_stub_module()
                .file("demo_bad/__init__.py", "import not_installed_anywhere\n")
                .file(
                    "demo_bad_cli.py",
                    "import sys\ndef main():\n    sys.exit(1)\n",
                )
                .entry_points("[console_scripts]\ndemo-bad = demo_bad_cli:main\n"),
        )
        .build();
    index.write_simple_tree(dir.join("index")).unwrap();
    let url = url::Url::from_directory_path(dir.join("index/simple")).unwrap();
    write_index_definitions(
        dir,
        &[
            ("pypi", url.as_str(), "simple"),
            ("pytorch-cu130", url.as_str(), "simple"),
        ],
    );
    let pak = dir.join("pak");
    std::fs::create_dir_all(&pak).unwrap();
    std::fs::write(pak.join("base.txt"), "demo-base\n").unwrap();
    std::fs::write(
        pak.join("deps.txt"),
        format!("demo-app\ndemo-bad\ndemo-many\n{extra_names}"),
    )
    .unwrap();
    std::fs::write(
        pak.join("stack.toml"),
        format!(
            "[stack]\nname = \"demo\"\nindex-dir = \"../indexes\"\n\n[target]\npython = \"3.14\"\n\
             platforms = [{}]\nvenv = \"/opt/venv\"\n\
             torch-backend = \"cpu\"\n\n[indexes]\ndefault = [\"pypi\"]\n\n\
             [[layer]]\nname = \"stable\"\npaks = [\"base.txt\"]\n\n\
             [[layer]]\nname = \"deps\"\npaks = [\"deps.txt\"]\n\n[check.allow]\n{allow}",
            platforms
                .iter()
                .map(|p| format!("\"{p}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
    .unwrap();
    pak
}

fn build(dir: &Path, pak: &Path, out: &str, root: &Path, cache: &Path) -> Output {
    comfypak(
        &[
            "build",
            "--stack",
            pak.to_str().unwrap(),
            "--out",
            out,
            "--lock",
            "pylock.toml",
            "--base",
            root.to_str().unwrap(),
        ],
        dir,
        cache,
    )
}

/// `comfypak check --stack PAK --out OUT` with a `--base` per entry of `bases`, then `flags`.
fn run_check(
    dir: &Path,
    cache: &Path,
    pak: &Path,
    out: &str,
    bases: &[&str],
    flags: &[&str],
) -> Output {
    let mut args = vec!["check", "--stack", pak.to_str().unwrap(), "--out", out];
    for base in bases {
        args.extend_from_slice(&["--base", base]);
    }
    args.extend_from_slice(flags);
    comfypak(&args, dir, cache)
}

/// Every file below `dir` (relative path, bytes or link target).
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(dir).unwrap().display().to_string();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path);
            } else if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                out.push((rel, target.display().to_string().into_bytes()));
            } else {
                out.push((rel, std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn build_on_a_python_base_then_check() {
    let Some(root) = debian_root() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let pak = fixture_stack(
        dir.path(),
        "demo_bad = \"imports a module no distribution ships (the test's upstream fault)\"\n\
         unused_entry = \"nothing fails like this any more\"\n",
    );

    let first = build(dir.path(), &pak, "out1", &root, &cache);
    assert!(first.status.success(), "{}", text(&first));
    let log = String::from_utf8_lossy(&first.stderr);
    assert!(
        log.contains("venv skeleton for /usr/bin/python3.14 3.14."),
        "{log}"
    );
    assert!(
        log.contains("1 .py did not compile: demo_app/template_src.py"),
        "{log}"
    );

    // The skeleton in the lowest layer only.
    let stable = dir.path().join("out1/layers/stable/opt/venv");
    let deps = dir.path().join("out1/layers/deps/opt/venv");
    assert!(stable.join("pyvenv.cfg").is_file());
    assert_eq!(
        std::fs::read_link(stable.join("bin/python")).unwrap(),
        Path::new("/usr/bin/python3.14")
    );
    assert!(!deps.join("pyvenv.cfg").exists());

    // Bytecode: unchecked-hash pycs (PEP 552 flags = 0b01) named as in the image, in RECORD.
    let site = deps.join("lib/python3.14/site-packages");
    let pyc = std::fs::read(site.join("demo_app/__pycache__/__init__.cpython-314.pyc")).unwrap();
    assert_eq!(
        u32::from_le_bytes(pyc[4..8].try_into().unwrap()),
        0b01,
        "unchecked-hash flags"
    );
    assert!(
        pyc.windows(b"/opt/venv/lib/python3.14/site-packages/demo_app/__init__.py".len())
            .any(|w| w == b"/opt/venv/lib/python3.14/site-packages/demo_app/__init__.py"),
        "the code names its file as it is in the image"
    );
    assert!(!site
        .join("demo_app/__pycache__/template_src.cpython-314.pyc")
        .exists());
    let record = std::fs::read_to_string(site.join("demo_app-2.0.dist-info/RECORD")).unwrap();
    let row = record
        .lines()
        .find(|l| l.starts_with("demo_app/__pycache__/__init__.cpython-314.pyc,sha256="))
        .unwrap_or_else(|| panic!("no pyc row in RECORD:\n{record}"));
    assert!(row.ends_with(&format!(",{}", pyc.len())), "{row}");
    let bad_record = std::fs::read_to_string(site.join("demo_bad-0.1.dist-info/RECORD")).unwrap();
    assert!(
        bad_record.contains("__pycache__/demo_bad_cli.cpython-314.pyc,sha256="),
        "{bad_record}"
    );

    assert!(!log.contains("from the bytecode cache"), "{log}");

    // A second build with another cache compiles everything again, to the same bytes: the
    // layers (and so the image) are identical.
    let second = build(dir.path(), &pak, "out2", &root, &dir.path().join("cache2"));
    assert!(second.status.success(), "{}", text(&second));
    assert!(
        !String::from_utf8_lossy(&second.stderr).contains("from the bytecode cache"),
        "{}",
        text(&second)
    );
    let same_layers = |other: &str| {
        for layer in ["stable", "deps"] {
            let a = tree(&dir.path().join("out1/layers").join(layer));
            let b = tree(&dir.path().join(other).join("layers").join(layer));
            assert_eq!(a.len(), b.len(), "{layer}");
            for (x, y) in a.iter().zip(&b) {
                assert!(x == y, "{layer}: {} differs between out1 and {other}", x.0);
            }
        }
    };
    same_layers("out2");
    // A rebuild on the first cache takes every compiled file from the bytecode cache, and the
    // syntax error from there too, with the same bytes.
    let third = build(dir.path(), &pak, "out3", &root, &cache);
    assert!(third.status.success(), "{}", text(&third));
    let log = String::from_utf8_lossy(&third.stderr);
    assert!(
        log.contains("layer deps (x86_64): 83 .pyc in")
            && log.contains("(83 from the bytecode cache)")
            && log.contains("1 .py did not compile: demo_app/template_src.py: invalid syntax"),
        "{log}"
    );
    same_layers("out3");
    // A damaged cache entry is not trusted: it is compiled again, to the same bytes.
    let entries = cache.join("bytecode/v1");
    let mut damaged = 0;
    for fingerprint in std::fs::read_dir(&entries).unwrap() {
        for entry in std::fs::read_dir(fingerprint.unwrap().path()).unwrap() {
            let path = entry.unwrap().path();
            let mut bytes = std::fs::read(&path).unwrap();
            let last = bytes.len() - 1;
            bytes[last] ^= 0xff;
            std::fs::write(&path, bytes).unwrap();
            damaged += 1;
        }
    }
    assert_eq!(
        damaged, 86,
        "one entry per compiled file of both layers, and the one that did not compile"
    );
    let fourth = build(dir.path(), &pak, "out4", &root, &cache);
    assert!(fourth.status.success(), "{}", text(&fourth));
    assert!(
        !String::from_utf8_lossy(&fourth.stderr).contains("from the bytecode cache"),
        "{}",
        text(&fourth)
    );
    same_layers("out4");

    // The check: demo_bad is allowed, the demo-bad script exiting 1 is not.
    let check = |pak: &Path, flags: &[&str]| {
        run_check(
            dir.path(),
            &cache,
            pak,
            "out1",
            &[root.to_str().unwrap()],
            flags,
        )
    };
    let out = check(&pak, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stdout.contains("demo-base 1.0: 1 modules from RECORD, 1 console scripts"),
        "{stdout}"
    );
    assert!(
        stdout.contains("demo_bad: import failed: ModuleNotFoundError"),
        "{stdout}"
    );
    assert!(
        stdout.contains("allowed because: imports a module no distribution ships"),
        "{stdout}"
    );
    assert!(
        stdout.contains("FAILED:\n  demo-bad: console script: --help: exit 1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("nothing needed on x86_64 (remove them if no platform does): unused_entry"),
        "{stdout}"
    );
    assert!(stdout.contains("check: FAILED"), "{stdout}");

    let out = check(&pak, &["--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let report = &reports[0];
    assert_eq!(report["platform"], "x86_64");
    let imported: Vec<&str> = report["imports"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["ok"] == true)
        .map(|i| i["module"].as_str().unwrap())
        .collect();
    assert_eq!(
        imported,
        ["demo_app", "demo_bad_cli", "demo_base", "demo_many"]
    );
    assert_eq!(report["failures"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(report["imports_only"], false);

    // --imports-only: the same imports, no console script run (so the failing one does not
    // count), and an allow entry for a script is not called stale.
    let out = check(&pak, &["--imports-only"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout.contains("modules 5 (4 imported in "), "{stdout}");
    assert!(
        stdout.contains("console scripts 2 (not run: --imports-only), unexpected failures 0"),
        "{stdout}"
    );
    assert!(stdout.contains("check: OK"), "{stdout}");

    // With the script allowed too, the check passes.
    let pak = fixture_stack(
        dir.path(),
        "demo_bad = \"imports a module no distribution ships\"\n\
         demo-bad = \"exits 1 whatever it is asked\"\n",
    );
    let out = check(&pak, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("check: OK"));
    let imports_only = check(&pak, &["--imports-only", "--json"]);
    assert!(imports_only.status.success(), "{}", text(&imports_only));
    let reports: serde_json::Value = serde_json::from_slice(&imports_only.stdout).unwrap();
    assert_eq!(reports[0]["imports_only"], true, "{reports}");
    assert_eq!(reports[0]["scripts"].as_array().unwrap().len(), 0);
    assert_eq!(
        reports[0]["stale_allow"].as_array().unwrap().len(),
        0,
        "demo-bad names a script that did not run: {reports}"
    );
}

/// Both architectures, as CI runs them where qemu-aarch64 is registered: one build with a base
/// per architecture (the aarch64 root's python3.14 runs under qemu-user for the skeleton and
/// the bytecode), then `comfypak check` of each platform in its own sandbox. Pure-Python
/// layers compiled by the two interpreters are byte-identical.
#[test]
fn build_and_check_on_both_architectures() {
    let Some(root) = debian_root() else { return };
    let Some(arm_root) = super::runtime::debian_root_aarch64() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let pak = fixture_stack_for(
        dir.path(),
        "demo_bad = \"imports a module no distribution ships\"\n\
         demo-bad = \"exits 1 whatever it is asked\"\n",
        &["manylinux_2_39_x86_64", "manylinux_2_39_aarch64"],
    );
    let x86 = format!("x86_64={}", root.display());
    let arm = format!("aarch64={}", arm_root.display());
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
            &x86,
            "--base",
            &arm,
        ],
        dir.path(),
        &cache,
    );
    assert!(out.status.success(), "{}", text(&out));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("layer stable (aarch64): venv skeleton for /usr/bin/python3.14 3.14."),
        "{log}"
    );
    for arch in ["x86_64", "aarch64"] {
        let layers = dir.path().join("out").join(arch).join("layers");
        let pyc = layers.join(
            "deps/opt/venv/lib/python3.14/site-packages/demo_app/__pycache__/__init__.cpython-314.pyc",
        );
        assert!(pyc.is_file(), "{arch}: no {}", pyc.display());
        assert!(
            layers.join("stable/opt/venv/pyvenv.cfg").is_file(),
            "{arch}"
        );
    }
    // The same CPython on both sides: aarch64 takes x86_64's compiled files from the cache.
    assert!(
        log.contains("layer deps (aarch64): 83 .pyc in")
            && log.contains("(83 from the bytecode cache)"),
        "{log}"
    );
    let same = |a: &Path, b: &Path, what: &str| {
        let (a, b) = (tree(a), tree(b));
        assert_eq!(
            a.iter().map(|x| &x.0).collect::<Vec<_>>(),
            b.iter().map(|x| &x.0).collect::<Vec<_>>(),
            "{what}"
        );
        for (x, y) in a.iter().zip(&b) {
            assert!(x == y, "deps: {} differs: {what}", x.0);
        }
    };
    same(
        &dir.path().join("out/x86_64/layers/deps"),
        &dir.path().join("out/aarch64/layers/deps"),
        "x86_64 against aarch64",
    );
    // That is sound because the aarch64 interpreter, under qemu with an empty cache, compiles
    // the same bytes.
    let fresh = comfypak(
        &[
            "install",
            "--lock",
            "pylock.toml",
            "--all",
            "--platform",
            "aarch64",
            "--out",
            "arm-alone",
            "--compile",
            "--base",
            arm_root.to_str().unwrap(),
        ],
        dir.path(),
        &dir.path().join("cache-arm-alone"),
    );
    assert!(fresh.status.success(), "{}", text(&fresh));
    // The times, for the record (`--nocapture`): from the cache against under qemu.
    for line in log.lines().filter(|l| l.contains(".pyc in")) {
        eprintln!("build: {line}");
    }
    eprintln!(
        "install --compile, aarch64, empty cache: {}",
        String::from_utf8_lossy(&fresh.stdout)
            .lines()
            .chain(String::from_utf8_lossy(&fresh.stderr).lines())
            .filter(|l| l.contains("installed"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    same(
        &dir.path().join("arm-alone/layers/deps"),
        &dir.path().join("out/aarch64/layers/deps"),
        "aarch64 compiled under qemu against aarch64 from the cache",
    );

    let out = run_check(dir.path(), &cache, &pak, "out", &[&x86, &arm], &["--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let platforms: Vec<&str> = reports
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["platform"].as_str().unwrap())
        .collect();
    assert_eq!(platforms, ["x86_64", "aarch64"]);
    // Under qemu check.py's per-module and per-script limits are stretched (an emulated
    // console script importing torch needs minutes); natively they are not.
    let scales: Vec<f64> = reports
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["timeout_scale"].as_f64().unwrap())
        .collect();
    assert_eq!(
        scales,
        [1.0, f64::from(comfypak::runtime::check::QEMU_TIMEOUT_SCALE)]
    );
    for report in reports.as_array().unwrap() {
        let imported: Vec<&str> = report["imports"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["ok"] == true)
            .map(|i| i["module"].as_str().unwrap())
            .collect();
        assert_eq!(
            imported,
            ["demo_app", "demo_bad_cli", "demo_base", "demo_many"],
            "{report}"
        );
    }
}

/// `install --compile --base ROOT` compiles with the same runtime path as `build`: the layers it
/// installs from the build's lock hold the same bytecode and RECORDs, byte for byte (`build`
/// adds only the venv skeleton to the lowest layer).
#[test]
fn install_compile_uses_the_target_runtime_like_build() {
    let Some(root) = debian_root() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let pak = fixture_stack(dir.path(), "");
    let built = build(dir.path(), &pak, "out", &root, &cache);
    assert!(built.status.success(), "{}", text(&built));
    let out = comfypak(
        &[
            "install",
            "--lock",
            "pylock.toml",
            "--all",
            "--out",
            "inst",
            "--compile",
            "--base",
            root.to_str().unwrap(),
        ],
        dir.path(),
        &cache,
    );
    assert!(out.status.success(), "{}", text(&out));
    for layer in ["stable", "deps"] {
        let skeleton = [
            "opt/venv/pyvenv.cfg",
            "opt/venv/bin/python",
            "opt/venv/bin/python3",
            "opt/venv/lib64",
        ];
        let a: Vec<_> = tree(&dir.path().join("out/layers").join(layer))
            .into_iter()
            .filter(|(p, _)| {
                !skeleton.contains(&p.as_str()) && !p.starts_with("opt/venv/bin/python3.")
            })
            .collect();
        let b = tree(&dir.path().join("inst/layers").join(layer));
        assert!(a.iter().any(|(p, _)| p.ends_with(".pyc")), "{layer}");
        assert_eq!(
            a.iter().map(|x| &x.0).collect::<Vec<_>>(),
            b.iter().map(|x| &x.0).collect::<Vec<_>>(),
            "{layer}"
        );
        for (x, y) in a.iter().zip(&b) {
            assert!(
                x == y,
                "{layer}: {} differs between build and install --compile",
                x.0
            );
        }
    }
    // --compile without a base is refused before anything is installed.
    let out = comfypak(
        &[
            "install",
            "--lock",
            "pylock.toml",
            "--all",
            "--out",
            "inst2",
            "--compile",
        ],
        dir.path(),
        &cache,
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--base"),
        "{}",
        text(&out)
    );
    assert!(!dir.path().join("inst2").exists());
}

/// The compile's time limit comes from `--compile-timeout` (or COMFYPAK_COMPILE_TIMEOUT), else
/// the stack's `[compile] timeout`, else 30 min; it is bounded (at most 24h), and a layer that
/// takes longer is a clear error naming the layer and how to give it more time. The slow layer
/// is a module of 150,000 functions (several seconds of compile on any machine).
#[test]
fn the_compile_timeout_is_configurable_and_bounded() {
    let Some(root) = debian_root() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let mut source = String::new();
    for i in 0..150_000 {
        source.push_str(&format!(
            "def f{i}(a, b=({i}, 's')):\n    return [a + b[0] * {i} for _ in range(3)]\n"
        ));
    }
    let index = FixtureIndex::builder()
        .wheel(
            WheelSpec::new("demo-slow", "1.0")
                .no_stub_module()
                .file("demo_slow/__init__.py", source),
        )
        .build();
    index.write_simple_tree(dir.path().join("index")).unwrap();
    let url = url::Url::from_directory_path(dir.path().join("index/simple")).unwrap();
    write_index_definitions(
        dir.path(),
        &[
            ("pypi", url.as_str(), "simple"),
            ("pytorch-cu130", url.as_str(), "simple"),
        ],
    );
    let pak = dir.path().join("pak");
    std::fs::create_dir_all(&pak).unwrap();
    std::fs::write(pak.join("deps.txt"), "demo-slow\n").unwrap();
    let write_stack = |compile: &str| {
        std::fs::write(
            pak.join("stack.toml"),
            format!(
                "[stack]\nname = \"slow\"\nindex-dir = \"../indexes\"\n\n[target]\n\
                 python = \"3.14\"\nplatforms = [\"manylinux_2_39_x86_64\"]\n\
                 venv = \"/opt/venv\"\ntorch-backend = \"cpu\"\n\n[indexes]\n\
                 default = [\"pypi\"]\n\n[[layer]]\nname = \"deps\"\npaks = [\"deps.txt\"]\n\
                 {compile}"
            ),
        )
        .unwrap();
    };
    let build = |extra: &[&str], env: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_comfypak"));
        cmd.args(["build", "--stack", "pak", "--out", "out", "--base"])
            .arg(&root)
            .args(extra)
            .current_dir(dir.path())
            .env("COMFYPAK_CACHE_DIR", &cache)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .env_remove("COMFYPAK_COMPILE_TIMEOUT");
        if let Some(value) = env {
            cmd.env("COMFYPAK_COMPILE_TIMEOUT", value);
        }
        cmd.output().unwrap()
    };
    let timed_out = |out: &Output, seconds: &str| {
        let t = text(out);
        assert_eq!(out.status.code(), Some(2), "{t}");
        assert!(
            t.contains("compiling the bytecode of ")
                && t.contains("out/layers/deps")
                && t.contains(&format!("ran longer than {seconds} and was stopped")),
            "{t}"
        );
        assert!(
            t.contains("--compile-timeout 2h (or COMFYPAK_COMPILE_TIMEOUT, or `[compile] timeout"),
            "{t}"
        );
    };

    // The flag.
    write_stack("");
    timed_out(&build(&["--compile-timeout", "1"], None), "1s");
    // The stack's setting, and the flag (here from the environment) over it.
    write_stack("\n[compile]\ntimeout = \"1s\"\n");
    timed_out(&build(&[], None), "1s");
    timed_out(&build(&[], Some("2")), "2s");

    // Bounds: more than 24h, zero, or not a duration is refused before anything runs.
    write_stack("\n[compile]\ntimeout = \"25h\"\n");
    let out = build(&[], None);
    let t = text(&out);
    assert_ne!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("stack.toml") && t.contains("compile.timeout") && t.contains("24h"),
        "{t}"
    );
    write_stack("");
    for bad in ["25h", "0", "soon"] {
        let out = build(&["--compile-timeout", bad], None);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(2), "{t}");
        assert!(t.contains("--compile-timeout"), "{t}");
    }
}

/// check.py gives a console script the per-module limit (a script starts by importing its
/// package, and a torch import alone takes over 90 s on a loaded machine), asks --version when
/// --help exits non-zero, and does not ask a script that timed out on --help a second time.
/// Runs check.py's `run_script` with the host's Python and the limit lowered to 1 s.
#[test]
fn a_console_script_gets_the_module_limit_and_one_timeout() {
    let python = match std::env::var_os("COMFYPAK_ORACLE_PYTHON") {
        Some(p) => PathBuf::from(p),
        None if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("COMFYPAK_ORACLE_PYTHON is not set: .ci/run provides it")
        }
        None => {
            eprintln!("note: COMFYPAK_ORACLE_PYTHON is not set; skipped");
            return;
        }
    };
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let check = dir.path().join("check.py");
    std::fs::write(&check, comfypak::runtime::check::CHECK_PY).unwrap();
    let bin = dir.path().join("venv/bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = dir.path().join("calls.log");
    let script = |name: &str, body: &str| {
        let path = bin.join(name);
        let text = format!(
            "#!/bin/sh\necho \"{name} $1\" >> '{}'\n{body}\n",
            log.display()
        );
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    script("hangs", "exec sleep 30");
    script("version-only", "[ \"$1\" = --version ] || exit 2");
    let probe = r#"
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("check", sys.argv[1])
check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check)
limits = [check.MODULE_TIMEOUT_S, check.SCRIPT_TIMEOUT_S]
check.SCRIPT_TIMEOUT_S = 1
print(json.dumps({"limits": limits, "results": [check.run_script(sys.argv[2], s) for s in ("hangs", "version-only")]}))
"#;
    let out = Command::new(&python)
        .args(["-c", probe])
        .arg(&check)
        .arg(dir.path().join("venv"))
        .env_remove("COMFYPAK_CHECK_TIMEOUT_SCALE")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["limits"], serde_json::json!([300.0, 300.0]), "{got}");
    let hangs = &got["results"][0];
    assert_eq!(hangs["ok"], false, "{got}");
    assert_eq!(
        hangs["tried"],
        serde_json::json!(["--help: timed out after 1s"]),
        "{got}"
    );
    assert_eq!(got["results"][1]["ok"], true, "{got}");
    assert_eq!(got["results"][1]["flag"], "--version", "{got}");
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        calls,
        "hangs --help\nversion-only --help\nversion-only --version\n"
    );
}

/// A check that runs past `--timeout` says how far it got: the phase, how many modules of how
/// many, what was running, and what had failed by then; the timeout's help follows.
#[test]
fn a_check_past_its_time_limit_says_how_far_it_got() {
    let Some(root) = debian_root() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    // demo_slow sorts after demo_bad (which fails at import): it is reached and never ends.
    let slow = WheelSpec::new("demo-slow", "1.0")
        .no_stub_module()
        .file("demo_slow/__init__.py", "import time\ntime.sleep(600)\n");
    let pak = fixture_stack_with(dir.path(), "", &["manylinux_2_39_x86_64"], vec![slow]);
    let out = build(dir.path(), &pak, "out", &root, &cache);
    assert!(out.status.success(), "{}", text(&out));
    let out = run_check(
        dir.path(),
        &cache,
        &pak,
        "out",
        &[root.to_str().unwrap()],
        &["--timeout", "20"],
    );
    let t = text(&out);
    // An error (2), not a check that ran and found failures (1).
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(
        t.contains("the check stopped before it ended, at importing modules: 5 of 6 done, demo_slow running; failed so far: demo_bad (ModuleNotFoundError: No module named 'not_installed_anywhere')"),
        "{t}"
    );
    assert!(t.contains("ran longer than 20s and was killed"), "{t}");
    assert!(
        t.contains("give the step more time (comfypak check: --timeout)"),
        "{t}"
    );
    // The check's scratch folder is gone.
    let left: Vec<_> = std::fs::read_dir(cache.join("runtime/check"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

/// The pids of processes whose command line holds `marker`.
fn processes_with(marker: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline
                .contains(marker)
                .then(|| format!("{}: {cmdline}", e.file_name().to_string_lossy()))
        })
        .collect()
}

#[test]
fn a_check_stopped_by_a_signal_leaves_no_sandbox_running() {
    use std::os::unix::fs::PermissionsExt;
    let Some(root) = debian_root() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let pak = fixture_stack(dir.path(), "");
    std::fs::create_dir_all(dir.path().join("out/layers/stable")).unwrap();
    // A base whose python never answers, and starts a child that would outlive it.
    let copy = super::runtime::root_copy(&root, dir.path());
    let python = copy.join("usr/bin/python3.14");
    std::fs::remove_file(&python).unwrap();
    // Sleeps this run alone starts: a run that leaked them must not fail the next one.
    let marker = format!("sleep 8{:07}", std::process::id());
    std::fs::write(&python, format!("#!/bin/sh\n{marker}1 &\nexec {marker}2\n")).unwrap();
    std::fs::set_permissions(&python, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_comfypak"))
        .args(["check", "--stack"])
        .arg(&pak)
        .args(["--out", "out", "--base"])
        .arg(&copy)
        .current_dir(dir.path())
        .env("COMFYPAK_CACHE_DIR", &cache)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while processes_with(&marker).len() < 2 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "the probe never started: {:?}",
            child.try_wait()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // As a CI runner or `timeout` stops it: SIGTERM to comfypak alone, not its process group.
    // SAFETY: a plain kill(2) of our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    assert!(!status.success(), "{status:?}");
    let stopped = std::time::Instant::now();
    let mut left = processes_with(&marker);
    while !left.is_empty() && stopped.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(50));
        left = processes_with(&marker);
    }
    assert!(left.is_empty(), "processes left running: {left:?}");
}

//! Live checks against the real public Python index (issues 4 and 6). Every test is ignored
//! unless run with `--ignored` and `COMFYPAK_LIVE=1`: they need the network, uv, and minutes.
//!
//! The input is the default stack's `deps` layer pak files plus the `stable` layer's torch
//! pins (pak1), with the stack's index pins, for CPython 3.14 on manylinux_2_39 x86_64. The
//! stack's `pytorch-cu130` index is pointed at the public index (read from
//! `indexes/pypi.toml` at run time): there, torch 2.11.0's Linux wheels are the cu130 builds.
//!
//! - `live_resolve_deps_matches_uv_pip_compile`: comfypak's resolution has the same names and
//!   versions as `uv pip compile --only-binary :all:` of the same pak files for the same
//!   target, apart from [`ALLOWED_RESOLVE_DIFFERENCES`] (empty today).
//! - `live_fetch_and_install_deps_layer`: `comfypak fetch` and `comfypak install` of the
//!   lock's deps layer; the installed site-packages equals what `uv pip install --target`
//!   installs from the same wheel files, apart from the listed differences.
//!
//! uv: `COMFYPAK_UV`, else `pip install uv` into a venv under the target folder. The install
//! oracle also needs a CPython >= 3.12 for uv to run with (uv checks each wheel's
//! Requires-Python against it even with `--python-version 3.14`; librosa 1.0 needs >= 3.12):
//! `COMFYPAK_LIVE_PYTHON`, else `python3.14`/`python3.13`/`python3.12` on PATH; without one
//! the oracle comparison is skipped with a note (comfypak's own install is still checked).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

use comfypak::lock::Lock;

/// Differences between comfypak's and uv's resolution that are understood, as
/// `(normalized name, why)`. A name listed here may differ in version or be present on one
/// side only. Empty: on the live index of 2026-11 both resolve the same 283 packages.
const ALLOWED_RESOLVE_DIFFERENCES: &[(&str, &str)] = &[];

/// Wheels on the public index whose RECORD does not match their own files. comfypak refuses
/// them (the binary distribution format says installers must verify RECORD); pip and uv
/// install them without checking. The install test leaves them out and says so.
/// - decord 0.6.0 (manylinux2010_x86_64): RECORD gives `decord-0.6.0.dist-info/top_level.txt`
///   17 bytes with another hash; the file holds `decord\n` (7 bytes).
const KNOWN_BAD_RECORD: &[&str] = &["decord"];

const PLATFORM: &str = "manylinux_2_39_x86_64";

/// Live tests are `#[ignore]`d; run with `--ignored` they also need `COMFYPAK_LIVE=1`, so a
/// plain `--ignored` run fails loudly instead of passing without having checked anything.
pub fn require_live() {
    assert_eq!(
        std::env::var("COMFYPAK_LIVE").as_deref(),
        Ok("1"),
        "live test: set COMFYPAK_LIVE=1 (it reads the public index, needs uv and minutes)"
    );
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn work_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("live");
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn comfypak() -> Command {
    Command::new(env!("CARGO_BIN_EXE_comfypak"))
}

fn run(mut command: Command, what: &str) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The public index URL, from indexes/pypi.toml.
fn pypi_url() -> String {
    let text = fs::read_to_string(repo().join("indexes/pypi.toml")).unwrap();
    let table: toml::Table = text.parse().unwrap();
    table["url"].as_str().unwrap().to_string()
}

fn normalize(name: &str) -> String {
    let mut out = String::new();
    let mut dash = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            dash = true;
        } else {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// The input: a stack folder with the default stack's stable and deps layers (their pak
/// files copied), its indexes and pins, for x86_64 only; returns (folder, pak files in order).
fn write_stack(dir: &Path) -> Vec<PathBuf> {
    let manifest: toml::Table = fs::read_to_string(repo().join("pak/stack.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let mut out = toml::Table::new();
    let mut stack = manifest["stack"].as_table().unwrap().clone();
    stack.insert(
        "index-dir".into(),
        toml::Value::String(repo().join("indexes").display().to_string()),
    );
    out.insert("stack".into(), toml::Value::Table(stack));
    let mut target = manifest["target"].as_table().unwrap().clone();
    target.insert(
        "platforms".into(),
        toml::Value::Array(vec![toml::Value::String(PLATFORM.into())]),
    );
    out.insert("target".into(), toml::Value::Table(target));
    let mut indexes = manifest["indexes"].as_table().unwrap().clone();
    // The perf layer is not part of this input; neither is its find-links source.
    if let Some(pins) = indexes.get_mut("pins").and_then(|p| p.as_table_mut()) {
        pins.remove("perf-wheels");
    }
    out.insert("indexes".into(), toml::Value::Table(indexes));
    let mut layers = Vec::new();
    let mut paks = Vec::new();
    fs::create_dir_all(dir).unwrap();
    for layer in manifest["layer"].as_array().unwrap() {
        let name = layer["name"].as_str().unwrap();
        if name != "stable" && name != "deps" {
            continue;
        }
        for pak in layer["paks"].as_array().unwrap() {
            let pak = pak.as_str().unwrap();
            fs::copy(repo().join("pak").join(pak), dir.join(pak)).unwrap();
            paks.push(dir.join(pak));
        }
        layers.push(toml::Value::Table(layer.as_table().unwrap().clone()));
    }
    assert_eq!(
        layers.len(),
        2,
        "pak/stack.toml has no stable and deps layers"
    );
    out.insert("layer".into(), toml::Value::Array(layers));
    fs::write(dir.join("stack.toml"), toml::to_string(&out).unwrap()).unwrap();
    paks
}

struct LiveLock {
    stack: PathBuf,
    paks: Vec<PathBuf>,
    lock: PathBuf,
    cache: PathBuf,
}

/// Resolves the live input once per test process (both tests use the lock).
fn live_lock() -> &'static LiveLock {
    static LOCK: OnceLock<LiveLock> = OnceLock::new();
    static GUARD: Mutex<()> = Mutex::new(());
    let _guard = GUARD.lock().unwrap_or_else(|p| p.into_inner());
    LOCK.get_or_init(|| {
        let work = work_dir();
        let stack = work.join("stack");
        let _ = fs::remove_dir_all(&stack);
        let paks = write_stack(&stack);
        let lock = work.join("pylock.toml");
        let _ = fs::remove_file(&lock);
        let cache = work.join("cache");
        let mut command = comfypak();
        command
            .args(["--quiet", "resolve", "--stack"])
            .arg(&stack)
            .arg("-o")
            .arg(&lock)
            .args(["--python", "3.14", "--platform", PLATFORM, "--cache-dir"])
            .arg(&cache)
            .arg("--index")
            .arg(format!("pytorch-cu130={}", pypi_url()));
        run(command, "comfypak resolve (live)");
        LiveLock {
            stack,
            paks,
            lock,
            cache,
        }
    })
}

/// uv: COMFYPAK_UV, else installed from the public index into a venv of its own.
fn uv() -> PathBuf {
    if let Some(uv) = std::env::var_os("COMFYPAK_UV") {
        return PathBuf::from(uv);
    }
    let venv = work_dir().join("uv-venv");
    let uv = venv.join("bin/uv");
    if !uv.exists() {
        let mut command = Command::new("python3");
        command.args(["-m", "venv"]).arg(&venv);
        run(command, "python3 -m venv");
        let mut command = Command::new(venv.join("bin/python"));
        command.args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "uv>=0.9,<0.10",
        ]);
        run(command, "pip install uv");
    }
    uv
}

/// name -> version of a comfypak lock.
fn lock_versions(lock: &Lock) -> BTreeMap<String, String> {
    lock.packages
        .iter()
        .map(|p| (normalize(p.name.as_ref()), p.version.to_string()))
        .collect()
}

/// name -> version of `uv pip compile` output (`name[extras]==version` lines).
fn uv_versions(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, rest)) = line.split_once("==") else {
            continue;
        };
        let name = name.split('[').next().unwrap().trim();
        let version = rest.split([' ', ';']).next().unwrap().trim();
        out.insert(normalize(name), version.to_string());
    }
    out
}

#[test]
#[ignore = "live: set COMFYPAK_LIVE=1 and run with --ignored"]
fn live_resolve_deps_matches_uv_pip_compile() {
    require_live();
    let live = live_lock();
    let lock = Lock::read(&live.lock).unwrap();
    let ours = lock_versions(&lock);
    assert!(
        ours.get("torch").is_some_and(|v| v.starts_with("2.11.0")),
        "torch is not 2.11.0: {:?}",
        ours.get("torch")
    );
    assert!(
        ours.contains_key("cuda-toolkit") || ours.keys().any(|n| n.starts_with("nvidia-")),
        "the cu130 torch closure (cuda-toolkit / nvidia-*) is missing"
    );
    for layer in ["stable", "deps"] {
        assert!(
            lock.packages.iter().any(|p| p.tool.comfypak.layer == layer),
            "no package in layer {layer}"
        );
    }

    let out = work_dir().join("uv-compile.txt");
    // `uv pip compile -o FILE` keeps the versions an existing FILE pins (as pip-compile
    // does): start from none, as comfypak's lock was made.
    let _ = fs::remove_file(&out);
    let mut command = Command::new(uv());
    command
        .env("UV_CACHE_DIR", work_dir().join("uv-cache"))
        .args([
            "pip",
            "compile",
            "--no-config",
            "--no-python-downloads",
            "--quiet",
            "--no-header",
            "--python-version",
            "3.14",
            "--python-platform",
            "x86_64-manylinux_2_39",
            "--only-binary",
            ":all:",
            "--index-url",
        ])
        .arg(pypi_url())
        .arg("-o")
        .arg(&out)
        .args(&live.paks);
    run(command, "uv pip compile (live)");
    let theirs = uv_versions(&fs::read_to_string(&out).unwrap());

    let allowed: BTreeMap<&str, &str> = ALLOWED_RESOLVE_DIFFERENCES.iter().copied().collect();
    let mut unexplained = Vec::new();
    for name in ours.keys().chain(theirs.keys()).collect::<BTreeSet<_>>() {
        let (a, b) = (ours.get(name), theirs.get(name));
        if a != b && !allowed.contains_key(name.as_str()) {
            unexplained.push(format!("{name}: comfypak {a:?}, uv {b:?}"));
        }
    }
    eprintln!(
        "live resolve: comfypak {} packages, uv {} packages, {} unexplained differences",
        ours.len(),
        theirs.len(),
        unexplained.len()
    );
    assert!(
        unexplained.is_empty(),
        "comfypak and uv resolve differently (explain each in ALLOWED_RESOLVE_DIFFERENCES or fix):\n  {}",
        unexplained.join("\n  ")
    );
}

/// A Python >= 3.12 for uv to install with (see the module comment), or None.
fn oracle_python() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("COMFYPAK_LIVE_PYTHON") {
        candidates.push(p.into());
    }
    candidates.extend(["python3.14", "python3.13", "python3.12"].map(PathBuf::from));
    candidates.into_iter().find(|python| {
        Command::new(python)
            .args([
                "-c",
                "import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)",
            ])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Every file under `root`, relative, with its bytes' path.
fn files_under(root: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                stack.push(entry.path());
            } else {
                out.insert(entry.path().strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    out
}

#[test]
#[ignore = "live: set COMFYPAK_LIVE=1 and run with --ignored"]
fn live_fetch_and_install_deps_layer() {
    require_live();
    let live = live_lock();
    let work = work_dir();

    let mut command = comfypak();
    command
        .args(["--quiet", "fetch", "--lock"])
        .arg(&live.lock)
        .args(["--layer", "deps", "--platform", "x86_64", "--cache-dir"])
        .arg(&live.cache);
    run(command, "comfypak fetch --layer deps (live)");

    let lock = Lock::read(&live.lock).unwrap();
    let in_deps = |p: &comfypak::lock::LockedPackage| p.tool.comfypak.layer == "deps";
    let deps_count = lock.packages.iter().filter(|p| in_deps(p)).count();
    assert!(
        deps_count > 200,
        "deps layer has only {deps_count} packages"
    );

    // The whole layer first: it installs, or fails only on the known bad RECORDs.
    // --allow-overwrite: the pak files ask for opencv-python, -headless, -contrib-python and
    // -contrib-python-headless, which all ship cv2/; pip and uv overwrite silently.
    let out = work.join("build");
    let _ = fs::remove_dir_all(&out);
    let install = |lock_path: &Path| {
        let mut command = comfypak();
        command
            .args(["install", "--offline", "--allow-overwrite", "--lock"])
            .arg(lock_path)
            .args(["--layer", "deps", "--platform", "x86_64", "--cache-dir"])
            .arg(&live.cache)
            .arg("--out")
            .arg(&out);
        command.output().unwrap()
    };
    let first = install(&live.lock);
    let mut left_out = Vec::new();
    let output = if first.status.success() {
        first
    } else {
        let stderr = String::from_utf8_lossy(&first.stderr).to_string();
        let bad = KNOWN_BAD_RECORD
            .iter()
            .find(|name| stderr.contains(&format!("error: {name}-")));
        assert!(
            bad.is_some() && stderr.contains("does not match RECORD"),
            "install of the deps layer failed, and not on a known bad RECORD:\n{stderr}"
        );
        eprintln!(
            "note: known bad wheel refused, as it should be: {}",
            stderr.trim()
        );
        let mut filtered = lock.clone();
        filtered
            .packages
            .retain(|p| !KNOWN_BAD_RECORD.contains(&normalize(p.name.as_ref()).as_str()));
        left_out = KNOWN_BAD_RECORD.iter().map(|s| s.to_string()).collect();
        let filtered_path = work.join("pylock-without-bad-record.toml");
        filtered.write(&filtered_path).unwrap();
        let second = install(&filtered_path);
        assert!(
            second.status.success(),
            "install without {left_out:?} failed:\n{}",
            String::from_utf8_lossy(&second.stderr)
        );
        second
    };
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    eprintln!("{}", stderr.lines().last().unwrap_or_default());

    let venv = lock
        .tool
        .comfypak
        .target
        .venv
        .trim_start_matches('/')
        .to_string();
    let site = out
        .join("layers/deps")
        .join(&venv)
        .join("lib/python3.14/site-packages");
    let installed = files_under(&site);
    let dist_infos: BTreeSet<String> = installed
        .iter()
        .filter_map(|p| p.components().next())
        .map(|c| c.as_os_str().to_string_lossy().to_string())
        .filter(|c| c.ends_with(".dist-info"))
        .collect();
    assert_eq!(
        dist_infos.len(),
        deps_count - left_out.len(),
        "one .dist-info per installed package"
    );
    for dist_info in &dist_infos {
        let installer = fs::read_to_string(site.join(dist_info).join("INSTALLER")).unwrap();
        assert_eq!(installer.trim(), "comfypak", "{dist_info}/INSTALLER");
        assert!(
            site.join(dist_info).join("RECORD").is_file(),
            "{dist_info}/RECORD"
        );
    }
    for module in [
        "diffusers/__init__.py",
        "transformers/__init__.py",
        "cv2/__init__.py",
        "torchsde/__init__.py",
    ] {
        assert!(site.join(module).is_file(), "{module} is not installed");
    }

    // The oracle: uv pip install --target of the very same wheel files.
    let Some(python) = oracle_python() else {
        eprintln!("note: no CPython >= 3.12 found (set COMFYPAK_LIVE_PYTHON); uv oracle skipped");
        return;
    };
    let mut wheels: Vec<PathBuf> = files_under(&live.cache.join("wheels"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "whl"))
        .map(|p| live.cache.join("wheels").join(p))
        .collect();
    let deps_wheels: BTreeSet<String> = lock
        .packages
        .iter()
        .filter(|p| in_deps(p) && !left_out.contains(&normalize(p.name.as_ref())))
        .flat_map(|p| p.wheels.iter().map(|w| w.name.to_string()))
        .collect();
    wheels.retain(|w| deps_wheels.contains(&w.file_name().unwrap().to_string_lossy().to_string()));
    assert_eq!(
        wheels.len(),
        deps_count - left_out.len(),
        "one wheel per package in the cache"
    );
    let target = work.join("uv-target");
    let _ = fs::remove_dir_all(&target);
    let mut command = Command::new(uv());
    command
        .env("UV_CACHE_DIR", work.join("uv-cache"))
        .args([
            "pip",
            "install",
            "--quiet",
            "--offline",
            "--no-deps",
            "--no-compile",
            "--python",
        ])
        .arg(&python)
        .args([
            "--python-version",
            "3.14",
            "--python-platform",
            "x86_64-manylinux_2_39",
            "--target",
        ])
        .arg(&target)
        .args(&wheels);
    run(command, "uv pip install --target (oracle)");
    let theirs = files_under(&target);

    // Paths two packages write (comfypak's `overwritten:` warnings): which one wins differs
    // between installers (comfypak: the later package in the lock; uv: its own order).
    let overwritten: BTreeSet<PathBuf> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("warning: overwritten: "))
        .filter_map(|l| l.split(": ").next())
        .filter_map(|p| p.strip_prefix("lib/python3.14/site-packages/"))
        .map(PathBuf::from)
        .collect();
    let mut problems = Vec::new();
    for path in &installed {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let in_dist_info = path
            .parent()
            .is_some_and(|p| p.to_string_lossy().ends_with(".dist-info"));
        if !theirs.contains(path) {
            // comfypak writes REQUESTED only for packages the pak files name; uv for all.
            problems.push(format!("only comfypak installs {}", path.display()));
            continue;
        }
        // Allowed: INSTALLER (comfypak vs uv) and RECORD (same entries, other order and
        // INSTALLER/REQUESTED lines) differ by the spec; overwritten paths may differ.
        if in_dist_info && (name == "INSTALLER" || name == "RECORD") || overwritten.contains(path) {
            continue;
        }
        if fs::read(site.join(path)).unwrap() != fs::read(target.join(path)).unwrap() {
            problems.push(format!("{} differs", path.display()));
        }
    }
    for path in theirs.difference(&installed) {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let first = path
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .to_string();
        // Allowed, uv only: its `.lock` file, `bin/` (uv --target puts scripts there;
        // comfypak puts them in the venv's bin/, outside site-packages), and in each
        // .dist-info REQUESTED, direct_url.json (installed from a file path) and
        // uv_cache.json.
        let allowed = name == ".lock"
            || first == "bin"
            || matches!(
                name.as_str(),
                "REQUESTED" | "direct_url.json" | "uv_cache.json"
            );
        // `.data/data` files: uv --target puts them at the target's root, comfypak at the
        // venv's root (their scheme path); same bytes required.
        let venv_root = site.ancestors().nth(3).unwrap();
        let data_file_matches = venv_root.join(path).is_file()
            && fs::read(venv_root.join(path)).unwrap() == fs::read(target.join(path)).unwrap();
        if !allowed && !data_file_matches {
            problems.push(format!("only uv installs {}", path.display()));
        }
    }
    eprintln!(
        "live install: comfypak {} files in site-packages, uv {} files; {} overwritten paths allowed; {} problems",
        installed.len(),
        theirs.len(),
        overwritten.len(),
        problems.len()
    );
    assert!(
        problems.is_empty(),
        "comfypak's deps layer differs from uv's install of the same wheels:\n  {}",
        problems
            .iter()
            .take(50)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n  ")
    );
    let _ = &live.stack;
}

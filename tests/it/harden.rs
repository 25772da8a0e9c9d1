//! Hostile input and crashes: lock values that would build paths outside the cache are
//! refused where the lock is read; a `pack` or `install` killed (SIGKILL) at the moment it
//! swaps its output leaves a state the next run repairs; two `build`s sharing one cache at
//! once both succeed and leave the cache consistent.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use comfypak::lock::{Lock, LockError};
use comfypak_testkit::FixtureIndex;
use sha2::{Digest, Sha256};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const GOOD_SHA: &str = "abababababababababababababababababababababababababababababababab";

/// A minimal comfypak lock with one wheel whose `name` and `sha256` are given verbatim.
fn lock_text(wheel_name: &str, sha256: &str) -> String {
    let wheel_name = toml::Value::String(wheel_name.to_string());
    let sha256 = toml::Value::String(sha256.to_string());
    format!(
        r#"lock-version = "1.0"
created-by = "comfypak"

[[packages]]
name = "demo"
version = "1.0"

[[packages.wheels]]
name = {wheel_name}
url = "http://127.0.0.1:1/files/demo-1.0-py3-none-any.whl"
size = 10

[packages.wheels.hashes]
sha256 = {sha256}

[packages.tool.comfypak]
layer = "deps"
index-name = "pypi"

[tool.comfypak]
stack = "demo"
torch-backend = "cpu"

[tool.comfypak.target]
python = "3.14"
platforms = ["manylinux_2_39_x86_64"]
venv = "/opt/venv"

[[tool.comfypak.layers]]
name = "deps"
rank = 1
paks = ["pak.txt"]
inputs-hash = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
"#
    )
}

fn read_lock(text: &str) -> Result<Lock, LockError> {
    Lock::from_toml_str(text, Path::new("/stack/pylock.toml"))
}

#[test]
fn a_good_lock_still_reads() {
    let lock = read_lock(&lock_text("demo-1.0-py3-none-any.whl", GOOD_SHA)).unwrap();
    assert_eq!(
        lock.packages[0].wheels[0].sha256().unwrap().as_str(),
        GOOD_SHA
    );
}

#[test]
fn lock_hashes_that_are_not_64_lowercase_hex_digits_are_refused_when_read() {
    let traversal = format!("../../victim/{}", "a".repeat(51));
    assert_eq!(traversal.len(), 64, "the length check alone would pass it");
    let cases = [
        traversal,
        "AB".repeat(32),
        "é".repeat(32),       // 64 bytes, not ASCII: sliced inside a character before
        "a".repeat(62) + "é", // 64 bytes
        "a".repeat(63),
        "a".repeat(64) + "\n",
        String::new(),
    ];
    for sha in cases {
        let err = read_lock(&lock_text("demo-1.0-py3-none-any.whl", &sha))
            .expect_err(&format!("{sha:?} accepted"))
            .to_string();
        assert!(err.contains("/stack/pylock.toml"), "{err}");
        assert!(err.contains("not a sha256 digest"), "{sha:?}: {err}");
    }
}

#[test]
fn lock_wheel_names_that_are_not_one_safe_file_name_are_refused_when_read() {
    for name in [
        "../../../etc/demo-1.0-py3-none-any.whl",
        "sub/demo-1.0-py3-none-any.whl",
        ".demo-1.0-py3-none-any.whl",
        "demo-1.0-py3-none-any.whl\u{0}",
        "démo-1.0-py3-none-any.whl",
        "demo.tar.gz",
        "..",
        "",
    ] {
        let err = read_lock(&lock_text(name, GOOD_SHA))
            .expect_err(&format!("{name:?} accepted"))
            .to_string();
        assert!(err.contains("/stack/pylock.toml"), "{err}");
        assert!(err.contains("is refused"), "{name:?}: {err}");
    }
}

/// The fixture stack of `build.rs` (shipped pak/ and indexes/) and its `--index` overrides.
struct Fixture {
    work: PathBuf,
    args: Vec<String>,
}

fn fixture(work: &Path, indexes: &Path) -> Fixture {
    let specs = [
        ("pypi", "pypi-snapshot.json", "simple/"),
        ("pytorch-cu130", "pytorch-cu130.json", "simple/"),
        ("perf-wheels", "perf-wheels.json", "files/"),
    ];
    let mut args = vec!["build".to_string(), "--stack".to_string()];
    for sub in ["pak", "indexes"] {
        super::common::copy_tree(&repo().join(sub), &work.join(sub));
    }
    args.push(work.join("pak").display().to_string());
    args.extend(super::build::no_nodes());
    for (name, spec, sub) in specs {
        let root = indexes.join(name);
        if !root.exists() {
            let index = FixtureIndex::load(repo().join("fixtures/indexes").join(spec)).unwrap();
            index.write_simple_tree(&root).unwrap();
        }
        args.push("--index".to_string());
        args.push(format!(
            "{name}={}",
            url::Url::from_directory_path(root.join(sub)).unwrap()
        ));
    }
    Fixture {
        work: work.to_path_buf(),
        args,
    }
}

fn command(args: &[String], cwd: &Path, cache: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_comfypak"));
    cmd.args(args)
        .current_dir(cwd)
        .env("COMFYPAK_CACHE_DIR", cache)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env_remove("COMFYPAK_TEST_PAUSE_AT");
    cmd
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until `file` exists (the child reached its pause point) or the child exits.
fn wait_for_pause(child: &mut Child, file: &Path) {
    // A bound for a broken build, not a timing assumption: the wait ends on the event.
    let deadline = Instant::now() + Duration::from_secs(600);
    while !file.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the child exited ({status}) before reaching its pause point");
        }
        assert!(
            Instant::now() < deadline,
            "the pause point was never reached"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `args` until it pauses at `point`, then kills it with SIGKILL.
fn kill_at(args: &[String], cwd: &Path, cache: &Path, point: &str) {
    let pause_file = cwd.join(format!("paused-{}", point.replace(':', "-")));
    let _ = std::fs::remove_file(&pause_file);
    let mut child = command(args, cwd, cache)
        .env("COMFYPAK_TEST_PAUSE_AT", point)
        .env("COMFYPAK_TEST_PAUSE_FILE", &pause_file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_pause(&mut child, &pause_file);
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success());
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".old.") || n.starts_with(".staging.") || n.contains(".tmp."))
        .collect()
}

fn sha_of(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

#[test]
fn a_pack_or_install_killed_while_swapping_its_output_is_repaired_by_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    let fx = fixture(&work, &dir.path().join("indexes"));
    let cache = dir.path().join("cache");
    ok(&command(&fx.args, &fx.work, &cache).output().unwrap());
    let build = work.join("build");
    let image = build.join("image");
    let index_before = sha_of(&image.join("index.json"));

    // Re-pack over the existing image, killed between moving the old image aside and
    // putting the new one in place: the worst moment.
    let pack: Vec<String> = [
        "pack",
        "--stack",
        "pak",
        "--no-layer",
        "nodes",
        "--lock",
        "pylock.toml",
        "--out",
        "build",
        "--output",
        "build/image",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    kill_at(&pack, &work, &cache, "replace-dir:image");
    assert!(
        !image.exists(),
        "killed after the old image was moved aside"
    );
    assert_eq!(leftovers(&build).len(), 2, "{:?}", leftovers(&build));

    // The next run restores and finishes; nothing is left over.
    ok(&command(&pack, &work, &cache).output().unwrap());
    assert_eq!(sha_of(&image.join("index.json")), index_before);
    assert!(leftovers(&build).is_empty(), "{:?}", leftovers(&build));

    // The same for a layer: install killed while swapping layers/deps.
    let arch_out = build.join("x86_64");
    let layers = arch_out.join("layers");
    let deps_marker = std::fs::read_dir(layers.join("deps")).unwrap().count();
    let install: Vec<String> = [
        "install",
        "--lock",
        "pylock.toml",
        "--all",
        "--out",
        "build/x86_64",
        "--platform",
        "x86_64",
        "--offline",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    kill_at(&install, &work, &cache, "replace-dir:deps");
    assert!(!layers.join("deps").exists());
    assert!(!leftovers(&layers).is_empty());
    // A pack run now would see the old layer back: the install's recovery restores it.
    ok(&command(&install, &work, &cache).output().unwrap());
    assert_eq!(
        std::fs::read_dir(layers.join("deps")).unwrap().count(),
        deps_marker
    );
    assert!(leftovers(&layers).is_empty(), "{:?}", leftovers(&layers));
    ok(&command(&pack, &work, &cache).output().unwrap());
    assert_eq!(sha_of(&image.join("index.json")), index_before);
}

/// Every wheel in the cache hashes to its folder's name, every unpacked entry has a
/// manifest naming its sha256, and no temp file or lock-holder's partial is left.
fn assert_cache_consistent(cache: &Path) {
    let wheels = cache.join("wheels/v1");
    let mut count = 0;
    for prefix in std::fs::read_dir(&wheels).unwrap().flatten() {
        for entry in std::fs::read_dir(prefix.path()).unwrap().flatten() {
            let sha = entry.file_name().to_string_lossy().into_owned();
            for file in std::fs::read_dir(entry.path()).unwrap().flatten() {
                assert_eq!(sha_of(&file.path()), sha, "{}", file.path().display());
                count += 1;
            }
        }
    }
    assert!(count > 0);
    let unpacked = cache.join("unpacked/v2");
    for prefix in std::fs::read_dir(&unpacked).unwrap().flatten() {
        for entry in std::fs::read_dir(prefix.path()).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(!name.starts_with('.'), "leftover {name}");
            let manifest: serde_json::Value =
                serde_json::from_slice(&std::fs::read(entry.path().join("manifest.json")).unwrap())
                    .unwrap();
            assert_eq!(manifest["sha256"], name.as_str());
        }
    }
    let tmp: Vec<_> = std::fs::read_dir(cache.join("tmp"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(tmp.is_empty(), "{tmp:?}");
}

#[test]
fn two_builds_of_different_stacks_share_one_cache_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let indexes = dir.path().join("indexes");
    let a = fixture(&dir.path().join("a"), &indexes);
    let b = fixture(&dir.path().join("b"), &indexes);
    // Stack b differs from a in its volatile layer.
    let volatile = b.work.join("pak/pak9.txt");
    let text = std::fs::read_to_string(&volatile).unwrap();
    let bumped = text.replace(
        "comfyui-frontend-package==1.45.15",
        "comfyui-frontend-package==1.58.1",
    );
    assert_ne!(text, bumped);
    std::fs::write(&volatile, bumped).unwrap();
    let cache = dir.path().join("cache");

    let spawn = |fx: &Fixture| {
        command(&fx.args, &fx.work, &cache)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (spawn(&a), spawn(&b));
    let (first, second) = (
        first.wait_with_output().unwrap(),
        second.wait_with_output().unwrap(),
    );
    ok(&first);
    ok(&second);
    let lock_a = Lock::read(&a.work.join("pylock.toml")).unwrap();
    let lock_b = Lock::read(&b.work.join("pylock.toml")).unwrap();
    let frontend = |lock: &Lock| {
        lock.packages
            .iter()
            .find(|p| p.name.as_ref() == "comfyui-frontend-package")
            .map(|p| p.version.to_string())
    };
    assert_eq!(frontend(&lock_a).as_deref(), Some("1.45.15"));
    assert_eq!(frontend(&lock_b).as_deref(), Some("1.58.1"));
    assert_cache_consistent(&cache);

    // Each stack rebuilt alone from the shared cache gives the same image.
    let index_a = sha_of(&a.work.join("build/image/index.json"));
    ok(&command(&a.args, &a.work, &cache).output().unwrap());
    assert_eq!(sha_of(&a.work.join("build/image/index.json")), index_a);
}

/// A copy of the shipped stack with `extra` appended to its volatile pak file.
fn stack_with(dir: &Path, extra: &[u8]) -> PathBuf {
    let work = dir.join("work");
    for sub in ["pak", "indexes"] {
        crate::common::copy_tree(&repo().join(sub), &work.join(sub));
    }
    let pak9 = work.join("pak/pak9.txt");
    let mut bytes = std::fs::read(&pak9).unwrap();
    if !bytes.ends_with(b"\n") {
        bytes.push(b'\n');
    }
    bytes.extend_from_slice(extra);
    std::fs::write(&pak9, bytes).unwrap();
    work
}

fn stack_cmd(work: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_comfypak"))
        .args(["stack", "--stack", "pak"])
        .current_dir(work)
        .output()
        .unwrap()
}

/// Line number of the line appended by [`stack_with`].
fn appended_line(work: &Path, bytes_before: &[u8]) -> usize {
    let _ = work;
    bytes_before.iter().filter(|b| **b == b'\n').count() + 1
}

#[test]
fn a_huge_pak_line_is_quoted_in_a_small_window() {
    let dir = tempfile::tempdir().unwrap();
    // 20 MB of version digits, then a bad character: the error points at it.
    let mut line = b"numpy==1.".to_vec();
    line.extend(std::iter::repeat_n(b'1', 20 << 20));
    line.extend_from_slice(b"!!\n");
    let work = stack_with(dir.path(), &line);
    let out = stack_cmd(&work);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.len() < 4096, "{} bytes of stderr", stderr.len());
    assert!(stderr.contains("pak9.txt:"), "{stderr}");
    assert!(stderr.contains('…'), "{stderr}");
}

#[test]
fn a_pak_file_that_is_not_utf8_is_refused_at_the_first_bad_byte() {
    let dir = tempfile::tempdir().unwrap();
    let before = std::fs::read(repo().join("pak/pak9.txt")).unwrap();
    let mut before_nl = before.clone();
    if !before_nl.ends_with(b"\n") {
        before_nl.push(b'\n');
    }
    let work = stack_with(dir.path(), b"caf\xe9-tools==1.0\n");
    let line = appended_line(&work, &before_nl);
    let out = stack_cmd(&work);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("pak9.txt:{line}:4: byte 0xe9 is not UTF-8")),
        "{stderr}"
    );
    let err = comfypak::pak::parse_file(&work.join("pak/pak9.txt"), &|_| None).unwrap_err();
    assert_eq!(err.kind(), Some(&comfypak::pak::PakErrorKind::NotUtf8));
    let location = err.location().unwrap();
    assert_eq!((location.line, location.column), (line, 4));
}

#[test]
fn index_options_in_a_stacks_pak_files_are_refused_saying_where_indexes_are_configured() {
    for (option, text) in [
        ("--index-url", "--index-url https://mirror.example/simple\n"),
        (
            "--extra-index-url",
            "--extra-index-url=https://mirror.example/simple\n",
        ),
        ("--find-links", "-f https://mirror.example/links/\n"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let before = std::fs::read(repo().join("pak/pak9.txt")).unwrap();
        let mut before_nl = before.clone();
        if !before_nl.ends_with(b"\n") {
            before_nl.push(b'\n');
        }
        let work = stack_with(dir.path(), text.as_bytes());
        let line = appended_line(&work, &before_nl);
        let out = stack_cmd(&work);
        assert!(!out.status.success(), "{option} accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&format!("pak9.txt:{line}:")), "{stderr}");
        assert!(
            stderr.contains(&format!("`{option}` is not honoured")),
            "{stderr}"
        );
        assert!(stderr.contains("[indexes]"), "{stderr}");
    }
}

#[test]
fn a_frozen_build_refuses_a_wheel_url_outside_the_declared_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    let fx = fixture(&work, &dir.path().join("indexes"));
    let cache = dir.path().join("cache");
    let mut resolve = fx.args.clone();
    resolve[0] = "resolve".to_string();
    ok(&command(&resolve, &work, &cache).output().unwrap());
    let lock_path = work.join("pylock.toml");
    let text = std::fs::read_to_string(&lock_path).unwrap();
    let lock = Lock::read(&lock_path).unwrap();
    let package = lock
        .packages
        .iter()
        .find(|p| p.name.as_ref() == "comfyui-frontend-package")
        .unwrap();
    let url = package.wheels[0].url.clone().unwrap();
    // The same bytes (the hash still matches), from a folder no index serves.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let moved = elsewhere.join(package.wheels[0].name.as_str());
    std::fs::copy(
        url::Url::parse(&url).unwrap().to_file_path().unwrap(),
        &moved,
    )
    .unwrap();
    let moved_url = url::Url::from_file_path(&moved).unwrap().to_string();
    std::fs::write(&lock_path, text.replace(&url, &moved_url)).unwrap();

    let mut build = fx.args.clone();
    build.push("--frozen".to_string());
    let out = command(&build, &work, &cache).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not served by index `pypi`"), "{stderr}");
    assert!(stderr.contains("direct requirement"), "{stderr}");
    assert!(!work.join("build").exists(), "refused before fetching");

    // Marked as a direct URL requirement, the same URL is accepted by the check.
    let mut edited = Lock::read(&lock_path).unwrap();
    let mut defs_fixture =
        comfypak::index::definition::IndexDefs::load_dir(&work.join("indexes")).unwrap();
    for pair in fx.args.windows(2).filter(|w| w[0] == "--index") {
        let (name, url) = pair[1].split_once('=').unwrap();
        defs_fixture.override_url(name, url, "--index").unwrap();
    }
    let err = comfypak::build::check_wheel_origins(&edited, &defs_fixture).unwrap_err();
    assert!(err.to_string().contains(&moved_url), "{err}");
    for p in &mut edited.packages {
        if p.name.as_ref() == "comfyui-frontend-package" {
            p.tool.comfypak.index_name = "direct".to_string();
        }
    }
    comfypak::build::check_wheel_origins(&edited, &defs_fixture).unwrap();
}

/// `cmd` with its file size limit (RLIMIT_FSIZE) at `bytes` and SIGXFSZ ignored: a write
/// past the limit fails with EFBIG, as a full disk fails a write with ENOSPC.
fn with_file_size_limit(cmd: &mut Command, bytes: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only makes two
    // async-signal-safe calls (signal, setrlimit) on values it owns.
    unsafe {
        cmd.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
fn running_out_of_space_keeps_the_old_lock_and_image_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    let fx = fixture(&work, &dir.path().join("indexes"));
    let cache = dir.path().join("cache");
    ok(&command(&fx.args, &fx.work, &cache).output().unwrap());
    let build = work.join("build");
    let index_before = sha_of(&build.join("image/index.json"));
    let lock_before = sha_of(&work.join("pylock.toml"));

    // A re-pack that cannot write its layers.
    let pack: Vec<String> = [
        "pack",
        "--stack",
        "pak",
        "--no-layer",
        "nodes",
        "--lock",
        "pylock.toml",
        "--out",
        "build",
        "--output",
        "build/image",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut cmd = command(&pack, &work, &cache);
    with_file_size_limit(&mut cmd, 4096);
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "the pack fit in 4 KiB files");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("File too large"), "{stderr}");
    assert_eq!(sha_of(&build.join("image/index.json")), index_before);
    assert!(leftovers(&build).is_empty(), "{:?}", leftovers(&build));

    // A re-resolve into a new lock (the volatile layer changed) that cannot be written.
    let volatile = work.join("pak/pak9.txt");
    let text = std::fs::read_to_string(&volatile).unwrap();
    std::fs::write(
        &volatile,
        text.replace(
            "comfyui-frontend-package==1.45.15",
            "comfyui-frontend-package==1.58.1",
        ),
    )
    .unwrap();
    let mut resolve = fx.args.clone();
    resolve[0] = "resolve".to_string();
    resolve.push("--output".to_string());
    resolve.push("pylock.toml".to_string());
    let fresh_cache = dir.path().join("cache-fresh");
    let mut cmd = command(&resolve, &work, &fresh_cache);
    with_file_size_limit(&mut cmd, 4096);
    let out = cmd.output().unwrap();
    assert!(!out.status.success());
    assert_eq!(sha_of(&work.join("pylock.toml")), lock_before);
    assert!(leftovers(&work).is_empty(), "{:?}", leftovers(&work));
    let tmp: Vec<_> = std::fs::read_dir(fresh_cache.join("tmp"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(tmp.is_empty(), "{tmp:?}");
}

#[test]
fn a_requirement_name_ending_in_a_separator_is_an_error_not_a_panic() {
    // Found by the pak fuzzer: pep508_rs panics on these names when text follows them.
    for line in [
        "demo- ==1.0",
        "demo_ >=1",
        "demo.\u{0}",
        "x-\t; python_version > '3'",
    ] {
        let err = comfypak::pak::parse_str(Path::new("pak.txt"), &format!("{line}\n"), &|_| None)
            .expect_err(line);
        assert_eq!(
            err.kind(),
            Some(&comfypak::pak::PakErrorKind::InvalidName),
            "{line:?}: {err}"
        );
    }
    // The same names in an index's METADATA (untrusted): an error, not a crash.
    let metadata = b"Metadata-Version: 2.1\nName: x\nVersion: 1\nRequires-Dist: extra- ==1\n";
    let err = comfypak::index::core_metadata::CoreMetadata::parse(metadata).unwrap_err();
    assert!(
        err.to_string().contains("must end with a letter or digit"),
        "{err}"
    );
}

#[test]
fn a_requirement_with_non_ascii_text_is_an_error_not_a_panic() {
    // Found by the METADATA fuzzer in CI: pep508_rs slices inside a character that follows a
    // marker's quoted value and panics. PEP 508 requirements are ASCII; both readers refuse
    // the text before pep508_rs sees it.
    let requirement = "numpy>=1.26; python_version >= \"3.10\"\u{fffd}";
    let err =
        comfypak::pak::parse_str(Path::new("pak.txt"), &format!("{requirement}\n"), &|_| None)
            .expect_err(requirement);
    assert_eq!(
        err.kind(),
        Some(&comfypak::pak::PakErrorKind::InvalidMarker),
        "{err}"
    );
    assert!(err.to_string().contains("non-ASCII"), "{err}");
    let metadata =
        format!("Metadata-Version: 2.1\nName: x\nVersion: 1\nRequires-Dist: {requirement}\n");
    let err = comfypak::index::core_metadata::CoreMetadata::parse(metadata.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("non-ASCII"), "{err}");
}

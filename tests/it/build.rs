//! The main job end to end, offline: `comfypak build` of the shipped default stack against the
//! fixture indexes written to disk (file:// URLs), twice for identical digests, then with a
//! volatile bump that `--locked` refuses, `--frozen` ignores and a plain build rebuilds in the
//! volatile layer only; `comfypak mirror` of the lock and
//! a resolution from that mirror alone; and the error when an index cannot be reached.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use comfypak::lock::Lock;
use comfypak_testkit::FixtureIndex;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Writes the three fixture indexes under `dir` and returns the `--index` overrides.
fn fixture_indexes(dir: &Path) -> Vec<String> {
    let specs = [
        ("pypi", "pypi-snapshot.json", "simple/"),
        ("pytorch-cu130", "pytorch-cu130.json", "simple/"),
        ("perf-wheels", "perf-wheels.json", "files/"),
    ];
    let mut args = Vec::new();
    for (name, spec, sub) in specs {
        let index = FixtureIndex::load(repo().join("fixtures/indexes").join(spec)).unwrap();
        let root = dir.join(name);
        index.write_simple_tree(&root).unwrap();
        args.push("--index".to_string());
        args.push(format!(
            "{name}={}",
            url::Url::from_directory_path(root.join(sub)).unwrap()
        ));
    }
    args
}

/// `--no-layer nodes`: the shipped stack's `nodes` layer is built from sdists and git
/// sources, which the fixture indexes do not have (as scripts/build-offline.sh does).
pub(super) fn no_nodes() -> Vec<String> {
    vec!["--no-layer".into(), "nodes".into()]
}

/// A copy of the shipped stack (pak/ and indexes/) that a test may edit.
fn stack_copy(dir: &Path) -> PathBuf {
    for sub in ["pak", "indexes"] {
        super::common::copy_tree(&repo().join(sub), &dir.join(sub));
    }
    dir.join("pak")
}

fn comfypak(args: &[String], cwd: &Path, cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_comfypak"))
        .args(args)
        .current_dir(cwd)
        .env("COMFYPAK_CACHE_DIR", cache)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap()
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

/// `layer -> digest` lines of a build summary, per platform, in order.
fn layer_digests(summary: &str) -> Vec<(String, String, String)> {
    summary
        .lines()
        .filter(|l| l.starts_with("  "))
        .map(|l| {
            let parts: Vec<&str> = l.split_whitespace().collect();
            (
                parts[0].to_string(),
                parts[1].to_string(),
                parts.last().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn build_twice_is_identical_and_a_volatile_bump_rebuilds_only_volatile() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let mut args: Vec<String> = vec!["build".into(), "--stack".into()];
    let stack = stack_copy(work);
    args.push(stack.display().to_string());
    args.extend(no_nodes());
    args.extend(fixture_indexes(&work.join("indexes-fixture")));
    let cache = work.join("cache");

    let first = ok(&comfypak(&args, work, &cache));
    let lock = Lock::read(&work.join("pylock.toml")).unwrap();
    assert_eq!(lock.layer_names(), ["stable", "deps", "perf", "volatile"]);
    let torch = lock
        .packages
        .iter()
        .find(|p| p.name.as_ref() == "torch")
        .unwrap();
    assert_eq!(torch.version.to_string(), "2.11.0+cu130");
    assert_eq!(torch.tool.comfypak.layer, "stable");
    assert_eq!(torch.tool.comfypak.index_name, "pytorch-cu130");
    let first_layers = layer_digests(&first);
    // Per platform: four stack layers, image.toml's volumes and runtime-config.
    assert_eq!(first_layers.len(), 12, "{first}");
    assert!(first_layers.iter().all(|l| l.2 == "new"), "{first}");
    assert!(first.contains("time: resolve"), "{first}");

    // `--locked`: the lock is up to date, so the build goes on with it.
    let mut locked = args.clone();
    locked.push("--locked".into());
    let second = ok(&comfypak(&locked, work, &cache));
    let second_layers = layer_digests(&second);
    for (a, b) in first_layers.iter().zip(&second_layers) {
        assert_eq!((&a.0, &a.1), (&b.0, &b.1), "digests differ between builds");
        assert_eq!(b.2, "reused");
    }
    assert!(second.contains("sends 0 B in 0 blobs"), "{second}");

    let volatile = stack.join("pak9.txt");
    let text = std::fs::read_to_string(&volatile).unwrap();
    std::fs::write(
        &volatile,
        text.replace(
            "comfyui-frontend-package==1.45.15",
            "comfyui-frontend-package==1.58.1",
        ),
    )
    .unwrap();
    // `--locked` now fails and writes nothing: the lock is stale.
    let locked_lock = std::fs::read(work.join("pylock.toml")).unwrap();
    let stale = comfypak(&locked, work, &cache);
    assert_eq!(stale.status.code(), Some(2));
    let err = String::from_utf8_lossy(&stale.stderr);
    assert!(err.contains("is stale"), "{err}");
    assert!(err.contains("comfyui-frontend-package"), "{err}");
    assert_eq!(
        std::fs::read(work.join("pylock.toml")).unwrap(),
        locked_lock
    );
    // `--frozen` builds what is locked: every layer is reused.
    let mut frozen = args.clone();
    frozen.push("--frozen".into());
    let as_locked = ok(&comfypak(&frozen, work, &cache));
    for ((_, before, _), (name, after, state)) in first_layers.iter().zip(layer_digests(&as_locked))
    {
        assert_eq!(*before, after, "{name} must not change under --frozen");
        assert_eq!(state, "reused", "{name}");
    }
    let third = ok(&comfypak(&args, work, &cache));
    for ((name, before, _), (_, after, state)) in first_layers.iter().zip(layer_digests(&third)) {
        if name == "volatile" {
            assert_ne!(*before, after, "volatile must change");
            assert_eq!(state, "new");
        } else {
            assert_eq!(*before, after, "{name} must not change");
            assert_eq!(state, "reused", "{name}");
        }
    }
}

#[test]
fn mirror_then_resolve_from_the_mirror_alone() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let stack = stack_copy(work);
    let cache = work.join("cache");
    let mut resolve: Vec<String> = vec![
        "resolve".into(),
        "--stack".into(),
        stack.display().to_string(),
    ];
    resolve.extend(no_nodes());
    resolve.extend(fixture_indexes(&work.join("indexes-fixture")));
    ok(&comfypak(&resolve, work, &cache));
    let mirror_dir = work.join("mirror");
    let out = ok(&comfypak(
        &[
            "mirror".into(),
            "--out".into(),
            mirror_dir.display().to_string(),
        ],
        work,
        &cache,
    ));
    assert!(out.contains("mirrored"), "{out}");
    let original = Lock::read(&work.join("pylock.toml")).unwrap();

    // Resolve again with exactly the overrides the mirror printed, into a fresh cache: every
    // index the lock used (the perf-wheels find-links index too) points at the mirror.
    let hint = out
        .lines()
        .find_map(|line| line.strip_prefix("use it with: "))
        .unwrap_or_else(|| panic!("no `use it with:` line in {out}"));
    let overrides: Vec<String> = hint.split_whitespace().map(str::to_string).collect();
    for index in ["pypi", "pytorch-cu130", "perf-wheels"] {
        assert!(
            overrides
                .iter()
                .any(|o| o.starts_with(&format!("{index}="))),
            "{index} missing from {hint}"
        );
    }
    let mut again = vec![
        "resolve".to_string(),
        "--stack".into(),
        stack.display().to_string(),
        "-o".into(),
        "mirrored.toml".into(),
    ];
    again.extend(no_nodes());
    again.extend(overrides);
    ok(&comfypak(&again, work, &work.join("cache2")));
    let mirrored = Lock::read(&work.join("mirrored.toml")).unwrap();
    let pins = |lock: &Lock| -> Vec<(String, String, String)> {
        lock.packages
            .iter()
            .map(|p| {
                (
                    p.name.to_string(),
                    p.version.to_string(),
                    p.tool.comfypak.layer.clone(),
                )
            })
            .collect()
    };
    assert_eq!(pins(&original), pins(&mirrored));
    let hashes = |lock: &Lock| -> Vec<String> {
        let mut h: Vec<String> = lock
            .packages
            .iter()
            .flat_map(|p| {
                p.wheels
                    .iter()
                    .map(|w| w.sha256().map(|s| s.to_string()).unwrap_or_default())
            })
            .collect();
        h.sort();
        h
    };
    assert_eq!(hashes(&original), hashes(&mirrored));
}

#[test]
fn an_unreachable_index_names_the_override() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let stack = stack_copy(work);
    let mut args: Vec<String> = vec![
        "build".into(),
        "--stack".into(),
        stack.display().to_string(),
    ];
    args.extend(no_nodes());
    args.extend(fixture_indexes(&work.join("indexes-fixture")));
    // Nothing listens on port 9 (discard) of loopback here: connections are refused.
    let pos = args
        .iter()
        .position(|a| a.starts_with("pytorch-cu130="))
        .unwrap();
    args[pos] = "pytorch-cu130=http://127.0.0.1:9/whl/cu130/".to_string();
    let out = comfypak(&args, work, &work.join("cache"));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot be reached"), "{err}");
    assert!(err.contains("--index pytorch-cu130=URL"), "{err}");
}

/// Every stage of a `build` (resolve's pages and METADATA, fetch's downloads) goes through one
/// HTTP client: the process reports how many it built (`COMFYPAK_TEST_COUNTS_FILE`), and the
/// server saw both the page and the wheel requests.
#[test]
fn a_whole_build_uses_one_http_client() {
    use comfypak_testkit::{ServerOptions, TestServer, WheelSpec};
    let index = FixtureIndex::builder()
        .wheel(WheelSpec::new("requests", "2.32.0").requires("urllib3<3,>=1.26"))
        .wheel(WheelSpec::new("urllib3", "2.0.0"))
        .build();
    let server = TestServer::serve_index(&index, ServerOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    super::common::write_index_definitions(work, &[("pypi", &server.simple_url(), "simple")]);
    let stack = work.join("pak");
    std::fs::create_dir_all(&stack).unwrap();
    std::fs::write(
        stack.join("stack.toml"),
        "[stack]\nname = \"one-client\"\nindex-dir = \"../indexes\"\n\n[target]\n\
         python = \"3.14\"\nplatforms = [\"manylinux_2_39_x86_64\"]\nvenv = \"/opt/venv\"\n\
         torch-backend = \"cpu\"\n\n[indexes]\ndefault = [\"pypi\"]\n\n[[layer]]\n\
         name = \"deps\"\npaks = [\"pak4.txt\"]\n",
    )
    .unwrap();
    std::fs::write(stack.join("pak4.txt"), "requests\n").unwrap();
    let counts = work.join("counts.txt");
    let out = Command::new(env!("CARGO_BIN_EXE_comfypak"))
        .args(["build", "--stack"])
        .arg(&stack)
        .current_dir(work)
        .env("COMFYPAK_CACHE_DIR", work.join("cache"))
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env("COMFYPAK_TEST_COUNTS_FILE", &counts)
        .output()
        .unwrap();
    ok(&out);
    assert!(server.requests_for("/simple/requests/") >= 1);
    assert!(server.requests_for("urllib3-2.0.0-py3-none-any.whl") >= 1);
    assert_eq!(
        std::fs::read_to_string(&counts).unwrap().lines().next(),
        Some("http-clients 1"),
        "resolve, fetch and the rest must share the session's client"
    );
}

#[test]
fn the_shipped_stack_without_a_base_names_the_nodes_layer_and_no_layer() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let stack = stack_copy(work);
    let mut args: Vec<String> = vec![
        "resolve".into(),
        "--stack".into(),
        stack.display().to_string(),
    ];
    args.extend(fixture_indexes(&work.join("indexes-fixture")));
    let cache = work.join("cache");
    let out = comfypak(&args, work, &cache);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    // The first source line, named by the repository until its build names it, before any
    // clone is tried.
    let clip = "git+https://github.com/openai/CLIP.git";
    let line = std::fs::read_to_string(stack.join("pak7.txt"))
        .unwrap()
        .lines()
        .position(|l| l == clip)
        .unwrap()
        + 1;
    assert!(
        stderr.contains(&format!(
            "pak7.txt:{line}:1: `{clip}`: building clip from source for"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("needs a base to run the target's Python"),
        "{stderr}"
    );
    assert!(stderr.contains("--no-layer nodes"), "{stderr}");
    assert!(!work.join("pylock.toml").exists());
    assert!(
        !cache.join("git").exists(),
        "nothing is cloned without a base"
    );

    // With the layer left out, the lock has the four other layers, and `pack` must be told
    // the same (its layers are checked against the lock's).
    args.extend(no_nodes());
    ok(&comfypak(&args, work, &cache));
    let lock = Lock::read(&work.join("pylock.toml")).unwrap();
    assert_eq!(lock.layer_names(), ["stable", "deps", "perf", "volatile"]);
    let out = comfypak(
        &["pack".into(), "--stack".into(), stack.display().to_string()],
        work,
        &cache,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the layers of") && stderr.contains("no longer match the lock"),
        "{stderr}"
    );
}

//! `fetch` against real HTTP on 127.0.0.1 (the testkit server) with real wheels: locks are
//! built by hand from a fixture index, written with `Lock::write` and read back (the
//! contract with the resolver). Covers verified downloads into the content-addressed cache,
//! wheel choice per platform and marker, resumption after a mid-body reset, 503 retries,
//! hash mismatches that leave the cache clean, offline use, two fetchers sharing a cache,
//! and `kill -9` of a real `comfypak fetch` halfway through followed by a clean rerun.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use comfypak::cache::Cache;
use comfypak::fetch::progress::ProgressMode;
use comfypak::fetch::{
    fetch_wheels, fetch_wheels_then, select_wheels, targets_for, CachedWheel, FetchError,
    FetchOptions, FetchOutcome, WheelSource,
};
use comfypak::http::{HttpClient, HttpSettings};
use comfypak::lock::{
    ComfypakLock, Lock, LockTool, LockedLayer, LockedPackage, LockedTarget, LockedWheel,
    PackageComfypak, PackageTool, WheelHashes,
};
use comfypak_testkit::{
    BuiltWheel, Fault, FixtureIndex, Gate, ServerOptions, TestServer, WheelSpec,
};
use sha2::{Digest, Sha256};

const X86: &str = "manylinux_2_39_x86_64";
const ARM: &str = "manylinux_2_39_aarch64";

/// One package of a hand-made lock.
struct Pkg<'a> {
    name: &'a str,
    version: &'a str,
    layer: &'a str,
    marker: Option<&'a str>,
    wheels: Vec<&'a BuiltWheel>,
}

fn pkg<'a>(
    name: &'a str,
    version: &'a str,
    layer: &'a str,
    wheels: Vec<&'a BuiltWheel>,
) -> Pkg<'a> {
    Pkg {
        name,
        version,
        layer,
        marker: None,
        wheels,
    }
}

/// A lock for `packages` served by `server`, written to `dir/pylock.toml` and read back.
fn write_lock(dir: &Path, server: &TestServer, packages: &[Pkg]) -> (PathBuf, Lock) {
    let lock = Lock {
        lock_version: "1.0".into(),
        environments: vec![],
        requires_python: Some(">=3.14".into()),
        extras: vec![],
        dependency_groups: vec![],
        default_groups: vec![],
        created_by: "comfypak-tests".into(),
        packages: packages
            .iter()
            .map(|p| LockedPackage {
                name: p.name.parse().unwrap(),
                version: p.version.parse().unwrap(),
                marker: p.marker.map(str::to_string),
                requires_python: None,
                index: Some(server.simple_url()),
                dependencies: vec![],
                wheels: p
                    .wheels
                    .iter()
                    .map(|w| LockedWheel {
                        name: w.filename.parse().unwrap(),
                        url: Some(server.file_url(&w.filename)),
                        path: None,
                        upload_time: None,
                        size: Some(w.size()),
                        hashes: WheelHashes::sha256(w.sha256.parse().unwrap()),
                    })
                    .collect(),
                sdist: None,
                directory: None,
                vcs: None,
                tool: PackageTool {
                    comfypak: PackageComfypak {
                        layer: p.layer.into(),
                        index_name: "fixture".into(),
                        requested: true,
                        ..PackageComfypak::default()
                    },
                },
            })
            .collect(),
        tool: LockTool {
            comfypak: ComfypakLock {
                stack: "test".into(),
                target: LockedTarget {
                    python: "3.14".parse().unwrap(),
                    free_threaded: false,
                    platforms: vec![X86.parse().unwrap(), ARM.parse().unwrap()],
                    venv: "/opt/venv".parse().unwrap(),
                    gpus: Vec::new(),
                    min_driver: None,
                },
                torch_backend: comfypak::cuda::Backend::Cpu,
                layers: ["stable", "deps"]
                    .iter()
                    .enumerate()
                    .map(|(i, n)| LockedLayer {
                        name: n.to_string(),
                        rank: i + 1,
                        paks: vec![],
                        inputs_hash: String::new(),
                    })
                    .collect(),
                indexes: BTreeMap::new(),
                bases: Vec::new(),
            },
        },
    };
    let path = dir.join("pylock.toml");
    lock.write(&path).unwrap();
    let back = Lock::read(&path).unwrap();
    assert_eq!(back, Lock::read(&path).unwrap());
    (path, back)
}

fn http() -> HttpClient {
    HttpClient::new(HttpSettings {
        backoff: Duration::from_millis(10),
        read_timeout: Duration::from_secs(10),
        netrc: None,
        ..HttpSettings::default()
    })
    .unwrap()
}

fn options() -> FetchOptions {
    FetchOptions {
        concurrency: 4,
        offline: false,
        progress: ProgressMode::Quiet,
    }
}

fn sources(lock: &Lock, lock_path: &Path, layers: Option<&[String]>) -> Vec<WheelSource> {
    let mut out = Vec::new();
    for target in targets_for(lock, Some("all")).unwrap() {
        for selected in select_wheels(lock, layers, &target).unwrap() {
            out.push(WheelSource::from_selected(&selected, lock_path.parent().unwrap()).unwrap());
        }
    }
    out
}

fn run<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

fn sha_of(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// Every file under `dir` (recursively), relative.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

fn wheel(spec: WheelSpec) -> BuiltWheel {
    spec.build()
}

fn index_of(specs: Vec<WheelSpec>) -> FixtureIndex {
    let mut builder = FixtureIndex::builder();
    for spec in specs {
        builder = builder.wheel(spec);
    }
    builder.build()
}

#[test]
fn fetch_downloads_each_platforms_best_wheel_verified_into_the_cache() {
    let specs = vec![
        WheelSpec::new("pure-lib", "1.0"),
        WheelSpec::new("native", "2.0").tag("cp314-cp314-manylinux_2_28_x86_64"),
        WheelSpec::new("native", "2.0").tag("cp314-cp314-manylinux_2_17_x86_64"),
        WheelSpec::new("native", "2.0").tag("cp314-cp314-manylinux_2_28_aarch64"),
        WheelSpec::new("x86-only", "1.0"),
    ];
    let built: Vec<BuiltWheel> = specs.iter().cloned().map(wheel).collect();
    let index = index_of(specs);
    let server = TestServer::serve_index(&index, ServerOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let mut x86_only = pkg("x86-only", "1.0", "deps", vec![&built[4]]);
    x86_only.marker = Some("platform_machine == 'x86_64'");
    let (lock_path, lock) = write_lock(
        dir.path(),
        &server,
        &[
            pkg("pure-lib", "1.0", "stable", vec![&built[0]]),
            pkg(
                "native",
                "2.0",
                "deps",
                vec![&built[1], &built[2], &built[3]],
            ),
            x86_only,
        ],
    );

    // Selection: the best-priority wheel per platform; the marker drops x86-only on arm.
    let targets = targets_for(&lock, Some("all")).unwrap();
    let x86: Vec<String> = select_wheels(&lock, None, &targets[0])
        .unwrap()
        .into_iter()
        .map(|s| s.wheel.name.to_string())
        .collect();
    assert_eq!(
        x86,
        vec![
            built[1].filename.clone(),
            built[0].filename.clone(),
            built[4].filename.clone()
        ]
    );
    let arm: Vec<String> = select_wheels(&lock, Some(&["deps".to_string()]), &targets[1])
        .unwrap()
        .into_iter()
        .map(|s| s.wheel.name.to_string())
        .collect();
    assert_eq!(arm, vec![built[3].filename.clone()]);
    assert!(targets_for(&lock, Some("riscv64")).is_err());
    let err = select_wheels(&lock, Some(&["nope".to_string()]), &targets[0]).unwrap_err();
    assert!(err.to_string().contains("no layer `nope`"), "{err}");

    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(cache_dir.path());
    let srcs = sources(&lock, &lock_path, None);
    let fetched = run(fetch_wheels(&http(), &cache, &srcs, &options())).unwrap();
    assert_eq!(fetched.len(), srcs.len());
    // pure-lib appears for both platforms but is downloaded once.
    assert_eq!(server.requests_for(&built[0].filename), 1);
    assert_eq!(server.requests_for(&built[2].filename), 0);
    for cached in &fetched {
        assert_eq!(
            cached.path,
            cache.wheel_path(&cached.sha256, &cached.filename)
        );
        assert_eq!(sha_of(&cached.path), cached.sha256);
        assert!(matches!(
            cached.outcome,
            FetchOutcome::Downloaded { resumed: 0 }
        ));
    }
    // Nothing but the entries and their lock files is left.
    assert!(files_under(&cache_dir.path().join("tmp")).is_empty());

    // A second run is served from the cache without a single request.
    server.clear_log();
    let again = run(fetch_wheels(&http(), &cache, &srcs, &options())).unwrap();
    assert!(again.iter().all(|c| c.outcome == FetchOutcome::Cached));
    assert!(server.log().is_empty());
}

#[test]
fn fetch_resumes_a_reset_download_with_a_range_request() {
    let spec = WheelSpec::new("big", "1.0").pad_bytes(3 << 20);
    let built = spec.clone().build();
    let server = TestServer::serve_index(&index_of(vec![spec]), ServerOptions::default());
    let half = built.size() / 2;
    server.inject(Fault::ResetAfter {
        path_suffix: built.filename.clone(),
        bytes: half,
        times: 1,
    });
    let dir = tempfile::tempdir().unwrap();
    let (lock_path, lock) = write_lock(
        dir.path(),
        &server,
        &[pkg("big", "1.0", "deps", vec![&built])],
    );
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(cache_dir.path());
    let srcs = sources(&lock, &lock_path, None);
    let fetched = run(fetch_wheels(&http(), &cache, &srcs[..1], &options())).unwrap();
    assert_eq!(fetched[0].outcome, FetchOutcome::Downloaded { resumed: 1 });
    assert_eq!(sha_of(&fetched[0].path), built.sha256);
    let log = server.log();
    assert_eq!(log.len(), 2, "{log:#?}");
    assert_eq!(log[0].body_bytes, half);
    assert_eq!(
        log[1].range.as_deref(),
        Some(format!("bytes={half}-").as_str())
    );
    assert_eq!(log[1].status, 206);
    // Resumed, not restarted: the file crossed the wire once.
    assert_eq!(server.bytes_sent_for(&built.filename), built.size());
}

#[test]
fn a_server_that_drops_every_download_half_way_and_ignores_range_is_given_up_on() {
    // Once looped forever: each retry restarted from byte 0, got half the file, and counted
    // as progress. Only new bytes count as progress now, so the failures-in-a-row cap ends it.
    let spec = WheelSpec::new("halfway", "1.0").pad_bytes(1 << 20);
    let built = spec.clone().build();
    let server = TestServer::serve_index(
        &index_of(vec![spec]),
        ServerOptions {
            range: false,
            ..ServerOptions::default()
        },
    );
    server.inject(Fault::ResetAfter {
        path_suffix: built.filename.clone(),
        bytes: built.size() / 2,
        times: 10_000,
    });
    let dir = tempfile::tempdir().unwrap();
    let (lock_path, lock) = write_lock(
        dir.path(),
        &server,
        &[pkg("halfway", "1.0", "deps", vec![&built])],
    );
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(cache_dir.path());
    let srcs = sources(&lock, &lock_path, None);
    let client = http();
    let retries = client.settings().retries as usize;
    let err = run(fetch_wheels(&client, &cache, &srcs[..1], &options())).unwrap_err();
    // The first attempt brought new bytes and failed; then `retries` restarts from zero
    // failed in a row without getting further: `retries + 1` failures in a row, the cap.
    assert_eq!(
        server.requests_for(&built.filename),
        retries + 1,
        "{:#?}",
        server.log()
    );
    let log = server.log();
    assert!(log[1..]
        .iter()
        .all(|r| r.range.is_some() && r.status == 200));
    match &err {
        FetchError::Interrupted {
            attempts,
            received,
            url,
            ..
        } => {
            assert_eq!(attempts.count as usize, retries + 1);
            assert_eq!(*received, built.size() / 2);
            assert!(url.ends_with(".whl"));
        }
        other => panic!("not an interrupted download: {other}"),
    }
    let text = err.to_string();
    assert!(text.contains(&built.filename), "{text}");
    assert!(
        text.contains(&format!("gave up after {} attempts", retries + 1)),
        "{text}"
    );
    // Nothing half-written was left in the cache.
    assert!(!cache
        .wheel_path(
            &built.sha256.parse().unwrap(),
            &built.filename.parse().unwrap()
        )
        .exists());
}

#[test]
fn fetch_retries_503_answers() {
    let spec = WheelSpec::new("flaky", "1.0");
    let built = spec.clone().build();
    let server = TestServer::serve_index(&index_of(vec![spec]), ServerOptions::default());
    server.inject(Fault::Status {
        path_suffix: built.filename.clone(),
        status: 503,
        times: 2,
    });
    let dir = tempfile::tempdir().unwrap();
    let (lock_path, lock) = write_lock(
        dir.path(),
        &server,
        &[pkg("flaky", "1.0", "deps", vec![&built])],
    );
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(cache_dir.path());
    let srcs = sources(&lock, &lock_path, None);
    let fetched = run(fetch_wheels(&http(), &cache, &srcs[..1], &options())).unwrap();
    assert_eq!(sha_of(&fetched[0].path), built.sha256);
    let statuses: Vec<u16> = server.log().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![503, 503, 200]);
}

#[test]
fn each_wheel_is_handed_over_as_soon_as_it_is_cached_while_others_still_download() {
    let specs = vec![
        WheelSpec::new("first", "1.0"),
        WheelSpec::new("second", "1.0"),
    ];
    let first = specs[0].clone().build();
    let second = specs[1].clone().build();
    let server = TestServer::serve_index(&index_of(specs), ServerOptions::default());
    // The server holds every answer for `second` (retries too) until `first` is handed over:
    // a fetch that reported wheels only at its end would never finish.
    let gate = Gate::new();
    server.inject(Fault::Hold {
        path_suffix: second.filename.clone(),
        gate: gate.clone(),
        times: 1000,
    });
    let dir = tempfile::tempdir().unwrap();
    let (lock_path, lock) = write_lock(
        dir.path(),
        &server,
        &[
            pkg("first", "1.0", "deps", vec![&first]),
            pkg("second", "1.0", "deps", vec![&second]),
        ],
    );
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(cache_dir.path());
    let srcs = sources(&lock, &lock_path, None);
    let handed = std::sync::Mutex::new(Vec::new());
    let ready = |wheel: &CachedWheel| {
        // Whole and verified by the time it is handed over.
        assert_eq!(sha_of(&wheel.path), wheel.sha256.as_str());
        handed
            .lock()
            .unwrap()
            .push((wheel.filename.to_string(), gate.is_open()));
        gate.open();
    };
    let fetched = run(fetch_wheels_then(
        &http(),
        &cache,
        &srcs,
        &options(),
        &ready,
    ))
    .unwrap();
    assert_eq!(fetched.len(), srcs.len());
    assert_eq!(
        handed.into_inner().unwrap(),
        [
            (first.filename.clone(), false),
            (second.filename.clone(), true)
        ],
        "`first` handed over while `second` was still held"
    );
    // A second fetch hands the cache hits over at once.
    let again = std::sync::Mutex::new(Vec::new());
    run(fetch_wheels_then(
        &http(),
        &cache,
        &srcs,
        &options(),
        &|w| again.lock().unwrap().push(w.outcome),
    ))
    .unwrap();
    assert_eq!(again.into_inner().unwrap(), [FetchOutcome::Cached; 2]);
}

#[test]
fn downloads_start_with_the_largest_wheel_whatever_the_lock_order() {
    // Lock (name) order: alpha, beta, gamma; sizes: beta > gamma > alpha.
    let specs = vec![
        WheelSpec::new("alpha", "1.0"),
        WheelSpec::new("beta", "1.0").pad_bytes(300_000),
        WheelSpec::new("gamma", "1.0").pad_bytes(100_000),
    ];
    let built: Vec<BuiltWheel> = specs.iter().map(|s| s.clone().build()).collect();
    assert!(built[1].size() > built[2].size() && built[2].size() > built[0].size());
    let server = TestServer::serve_index(&index_of(specs), ServerOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let (lock_path, lock) = write_lock(
        dir.path(),
        &server,
        &[
            pkg("alpha", "1.0", "deps", vec![&built[0]]),
            pkg("beta", "1.0", "deps", vec![&built[1]]),
            pkg("gamma", "1.0", "deps", vec![&built[2]]),
        ],
    );
    let cache_dir = tempfile::tempdir().unwrap();
    let srcs = sources(&lock, &lock_path, None);
    let one_at_a_time = FetchOptions {
        concurrency: 1,
        ..options()
    };
    let fetched = run(fetch_wheels(
        &http(),
        &Cache::new(cache_dir.path()),
        &srcs,
        &one_at_a_time,
    ))
    .unwrap();
    // The result keeps the lock's order; the requests went largest first.
    let names: Vec<&str> = fetched.iter().map(|w| w.filename.as_str()).collect();
    let in_lock: Vec<&str> = srcs.iter().map(|w| w.filename.as_str()).collect();
    assert_eq!(names, in_lock);
    assert_eq!(
        names[..3],
        [&built[0].filename, &built[1].filename, &built[2].filename]
    );
    let requested: Vec<String> = server
        .log()
        .iter()
        .map(|r| r.path.rsplit('/').next().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        requested,
        [
            built[1].filename.clone(),
            built[2].filename.clone(),
            built[0].filename.clone()
        ],
        "{:#?}",
        server.log()
    );
}

#[test]
fn fetch_refuses_a_wrong_hash_and_leaves_the_cache_clean() {
    let spec = WheelSpec::new("evil-mirror", "1.0").pad_bytes(200_000);
    let built = spec.clone().build();
    let server = TestServer::serve_index(&index_of(vec![spec]), ServerOptions::default());
    server.inject(Fault::CorruptBody {
        path_suffix: built.filename.clone(),
        times: 100,
    });
    let dir = tempfile::tempdir().unwrap();
    let (lock_path, lock) = write_lock(
        dir.path(),
        &server,
        &[pkg("evil-mirror", "1.0", "deps", vec![&built])],
    );
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(cache_dir.path());
    let srcs = sources(&lock, &lock_path, None);
    let err = run(fetch_wheels(&http(), &cache, &srcs[..1], &options())).unwrap_err();
    let FetchError::HashMismatch {
        filename,
        expected,
        actual,
        ..
    } = &err
    else {
        panic!("expected a hash mismatch, got {err}");
    };
    assert_eq!(filename, &built.filename);
    assert_eq!(expected, &built.sha256);
    assert_ne!(actual, &built.sha256);
    let text = err.to_string();
    assert!(
        text.contains(&built.filename)
            && text.contains(&built.sha256)
            && text.contains(actual.as_str()),
        "{text}"
    );
    // Nothing in the cache: no entry, no temp file.
    let left: Vec<PathBuf> = files_under(cache_dir.path())
        .into_iter()
        .filter(|p| !p.starts_with("locks"))
        .collect();
    assert!(left.is_empty(), "left in the cache: {left:?}");
}

#[test]
fn fetch_offline_uses_only_the_cache() {
    let spec = WheelSpec::new("offline-pkg", "1.0");
    let built = spec.clone().build();
    let server = TestServer::serve_index(&index_of(vec![spec]), ServerOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let (lock_path, lock) = write_lock(
        dir.path(),
        &server,
        &[pkg("offline-pkg", "1.0", "deps", vec![&built])],
    );
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(cache_dir.path());
    let srcs = sources(&lock, &lock_path, None);
    let offline = FetchOptions {
        offline: true,
        ..options()
    };
    let err = run(fetch_wheels(&http(), &cache, &srcs, &offline)).unwrap_err();
    assert!(matches!(err, FetchError::NotCached { .. }), "{err}");
    assert!(err.to_string().contains(&built.filename));
    assert!(server.log().is_empty());
    run(fetch_wheels(&http(), &cache, &srcs, &options())).unwrap();
    server.clear_log();
    let hits = run(fetch_wheels(&http(), &cache, &srcs, &offline)).unwrap();
    assert_eq!(hits[0].outcome, FetchOutcome::Cached);
    assert!(server.log().is_empty());
}

#[test]
fn two_fetchers_sharing_a_cache_download_each_wheel_once() {
    let specs: Vec<WheelSpec> = (0..6)
        .map(|i| WheelSpec::new(format!("shared-{i}"), "1.0").pad_bytes(300_000))
        .collect();
    let built: Vec<BuiltWheel> = specs.iter().map(WheelSpec::build).collect();
    let server = TestServer::serve_index(&index_of(specs), ServerOptions::default());
    for b in &built {
        server.inject(Fault::Delay {
            path_suffix: b.filename.clone(),
            millis: 100,
            times: 1,
        });
    }
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..6).map(|i| format!("shared-{i}")).collect();
    let pkgs: Vec<Pkg> = built
        .iter()
        .zip(&names)
        .map(|(b, n)| pkg(n, "1.0", "deps", vec![b]))
        .collect();
    let (lock_path, lock) = write_lock(dir.path(), &server, &pkgs);
    let cache_dir = tempfile::tempdir().unwrap();
    let srcs = sources(&lock, &lock_path, None);
    let (a, b) = run(async {
        let cache_a = Cache::new(cache_dir.path());
        let cache_b = Cache::new(cache_dir.path());
        let http_a = http();
        let http_b = http();
        let opts = options();
        tokio::join!(
            fetch_wheels(&http_a, &cache_a, &srcs, &opts),
            fetch_wheels(&http_b, &cache_b, &srcs, &opts)
        )
    });
    let (a, b) = (a.unwrap(), b.unwrap());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.path, y.path);
        assert_eq!(sha_of(&x.path), x.sha256);
    }
    for w in &built {
        assert_eq!(
            server.requests_for(&w.filename),
            1,
            "{} fetched twice",
            w.filename
        );
    }
    assert!(files_under(&cache_dir.path().join("tmp")).is_empty());
}

#[test]
fn kill_9_halfway_through_a_fetch_then_a_rerun_completes_without_torn_entries() {
    let spec = WheelSpec::new("huge", "1.0").pad_bytes(4 << 20);
    let built = spec.clone().build();
    let small_spec = WheelSpec::new("small", "1.0");
    let small = small_spec.clone().build();
    let server =
        TestServer::serve_index(&index_of(vec![spec, small_spec]), ServerOptions::default());
    let half = built.size() / 2;
    server.inject(Fault::ResetAfter {
        path_suffix: built.filename.clone(),
        bytes: half,
        times: 1,
    });
    let dir = tempfile::tempdir().unwrap();
    let (lock_path, _lock) = write_lock(
        dir.path(),
        &server,
        &[
            pkg("huge", "1.0", "deps", vec![&built]),
            pkg("small", "1.0", "deps", vec![&small]),
        ],
    );
    let cache_dir = tempfile::tempdir().unwrap();
    let comfypak = env!("CARGO_BIN_EXE_comfypak");
    let spawn = || {
        Command::new(comfypak)
            .args(["fetch", "--all", "--platform", "x86_64", "--lock"])
            .arg(&lock_path)
            .env("COMFYPAK_CACHE_DIR", cache_dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut child = spawn();
    // Wait for the first half to arrive, then stall the resume request.
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.requests_for(&built.filename) == 0 {
        assert!(
            Instant::now() < deadline,
            "the fetch never asked for the wheel"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    server.inject(Fault::Delay {
        path_suffix: built.filename.clone(),
        millis: 20_000,
        times: 1,
    });
    let tmp_dir = cache_dir.path().join("tmp");
    while !files_under(&tmp_dir)
        .iter()
        .any(|p| p.to_string_lossy().ends_with(".part"))
    {
        assert!(Instant::now() < deadline, "no partial download appeared");
        std::thread::sleep(Duration::from_millis(2));
    }
    // Once the client has sent the (stalled) resume request, kill -9 it.
    server.wait_until("the resume request", Duration::from_secs(60), |e| {
        e.received_for(&built.filename) >= 2
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let cache = Cache::new(cache_dir.path());
    let entry = cache.wheel_path(
        &built.sha256.parse().unwrap(),
        &built.filename.parse().unwrap(),
    );
    assert!(!entry.exists(), "a killed download must not leave an entry");

    // The rerun completes, cleans the dead process's partial file, and every entry is whole.
    let rerun = spawn().wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&rerun.stderr);
    assert!(rerun.status.success(), "rerun failed: {stderr}");
    assert!(
        stderr.contains(&format!("fetched {}", built.filename)),
        "{stderr}"
    );
    assert_eq!(sha_of(&entry), built.sha256);
    assert_eq!(
        sha_of(&cache.wheel_path(
            &small.sha256.parse().unwrap(),
            &small.filename.parse().unwrap()
        )),
        small.sha256
    );
    assert!(
        files_under(&tmp_dir).is_empty(),
        "{:?}",
        files_under(&tmp_dir)
    );
    let stdout = String::from_utf8_lossy(&rerun.stdout);
    assert!(stdout.contains("2 wheels"), "{stdout}");
}

#[test]
fn fetch_cli_reports_a_hash_mismatch_with_exit_code_2() {
    let spec = WheelSpec::new("tampered", "1.0");
    let built = spec.clone().build();
    let server = TestServer::serve_index(&index_of(vec![spec]), ServerOptions::default());
    server.inject(Fault::CorruptBody {
        path_suffix: built.filename.clone(),
        times: 100,
    });
    let dir = tempfile::tempdir().unwrap();
    let (lock_path, _) = write_lock(
        dir.path(),
        &server,
        &[pkg("tampered", "1.0", "deps", vec![&built])],
    );
    let cache_dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_comfypak"))
        .args(["--quiet", "fetch", "--layer", "deps", "--lock"])
        .arg(&lock_path)
        .env("COMFYPAK_CACHE_DIR", cache_dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("sha256 mismatch") && stderr.contains(&built.sha256),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

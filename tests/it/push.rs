//! `comfypak push` against a real registry: Debian's `docker-registry` started by the test on
//! 127.0.0.1 with a temporary config and storage. First push uploads everything and `skopeo
//! inspect` sees the manifest; a second push uploads nothing; after a volatile change exactly
//! one layer blob plus the config (and the manifest) go up; chunked uploads, cross-repository
//! mounts and multi-arch indexes work; basic auth (htpasswd) and bearer tokens (`auth: token`,
//! with a token service of the test's issuing RS256 JWTs) for push and pull. With `CI=true` a
//! missing tool fails the test.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::pack_support::*;
use comfypak::http::{HttpClient, HttpSettings};
use comfypak::pack::push::{
    push_with, BlobOutcome, Credentials, ImageReference, PushError, PushOptions, PushReport,
};

/// A push on a client of the test's own (the library pushes only on a client it is given:
/// the pipeline's shared one).
async fn push(
    layout: &Path,
    reference: &ImageReference,
    options: PushOptions,
) -> Result<PushReport, PushError> {
    let http = HttpClient::new(HttpSettings::default()).unwrap();
    push_with(&http, layout, reference, options).await
}

/// A registry process on 127.0.0.1, stopped when dropped (also serves the base-pull tests).
pub(crate) struct Registry {
    child: Child,
    pub(crate) port: u16,
    _storage: tempfile::TempDir,
}

impl Registry {
    /// The registry's storage root (blobs under `data/docker/registry/v2/blobs/`).
    pub(crate) fn storage(&self) -> &Path {
        self._storage.path()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

pub(crate) fn start_registry() -> Option<Registry> {
    start_registry_with_auth(None)
}

/// With `Some((user, password))` the registry asks for HTTP basic auth (htpasswd, bcrypt).
fn start_registry_with_auth(auth: Option<(&str, &str)>) -> Option<Registry> {
    let Some((user, password)) = auth else {
        return start_registry_with_config(|_| None);
    };
    let htpasswd = tool("htpasswd")?;
    let line = run_ok(Command::new(htpasswd).args(["-Bbn", user, password]));
    start_registry_with_config(|storage| {
        let file = storage.join("htpasswd");
        fs::write(&file, line.trim()).unwrap();
        Some(format!(
            "auth:\n  htpasswd:\n    realm: comfypak-test\n    path: {}\n",
            file.display()
        ))
    })
}

/// A registry whose config gets the `auth:` section `auth` writes (given the storage folder);
/// with one, it answers `/v2/` with 401.
fn start_registry_with_config(auth: impl FnOnce(&Path) -> Option<String>) -> Option<Registry> {
    let bin = tool("docker-registry")?;
    let storage = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = storage.path().join("config.yml");
    let mut yaml = format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
         delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
        storage.path().join("data").display()
    );
    let auth = auth(storage.path());
    if let Some(section) = &auth {
        yaml.push_str(section);
    }
    fs::write(&config, yaml).unwrap();
    let child = Command::new(bin)
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start docker-registry");
    let registry = Registry {
        child,
        port,
        _storage: storage,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let ready = if auth.is_some() { 401 } else { 200 };
    while http_status(port, "/v2/") != Some(ready) {
        assert!(
            Instant::now() < deadline,
            "docker-registry did not answer on 127.0.0.1:{port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(registry)
}

fn push_now(layout: &Path, reference: &str, options: PushOptions) -> PushReport {
    let reference: ImageReference = reference.parse().unwrap();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(push(layout, &reference, options))
        .unwrap()
}

fn insecure() -> PushOptions {
    PushOptions {
        insecure: true,
        ..PushOptions::default()
    }
}

fn skopeo_digest(port: u16, repo: &str) -> Option<String> {
    let skopeo = tool("skopeo")?;
    let inspect = run_ok(
        Command::new(skopeo)
            .args(["inspect", "--tls-verify=false"])
            .arg(format!("docker://127.0.0.1:{port}/{repo}")),
    );
    let json: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    Some(json["Digest"].as_str().unwrap().to_string())
}

struct Built {
    _dir: tempfile::TempDir,
    stack: PathBuf,
    layers: PathBuf,
    root: PathBuf,
}

fn built(platforms: &[&str]) -> Built {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let stack = write_stack(&root.join("pak"), platforms);
    let layers = root.join("build/layers");
    write_layers(&layers, "1", false);
    Built {
        _dir: dir,
        stack,
        layers,
        root,
    }
}

#[test]
fn push_uploads_only_what_the_registry_lacks() {
    let Some(registry) = start_registry() else {
        return;
    };
    let b = built(&["manylinux_2_39_x86_64"]);
    let v1 = b.root.join("v1");
    let image = PackSetup::new(&b.stack, b.layers.clone(), v1.clone()).run();
    let reference = format!("127.0.0.1:{}/team/comfyui:latest", registry.port);

    let first = push_now(&v1, &reference, insecure());
    assert_eq!(first.uploaded().len(), 5, "4 layers + config: {first:?}");
    assert_eq!(first.manifests_put, ["latest"]);
    assert_eq!(first.digest, image.platforms[0].manifest.digest);
    if let Some(digest) = skopeo_digest(registry.port, "team/comfyui:latest") {
        assert_eq!(digest, image.platforms[0].manifest.digest);
    }

    let second = push_now(&v1, &reference, insecure());
    assert!(second.uploaded().is_empty(), "{second:?}");
    assert_eq!(second.bytes_sent(), 0);
    assert!(second.manifests_put.is_empty());
    assert_eq!(second.manifests_present, ["latest"]);

    fs::write(
        b.layers
            .join("volatile")
            .join(SITE)
            .join("volatile_pkg/version.py"),
        "VERSION = '2'\n",
    )
    .unwrap();
    let v2 = b.root.join("v2");
    let changed = PackSetup::new(&b.stack, b.layers.clone(), v2.clone()).run();
    let third = push_now(&v2, &reference, insecure());
    let uploaded: Vec<&str> = third.uploaded().iter().map(|b| b.digest.as_str()).collect();
    let volatile = changed.platforms[0]
        .layers
        .iter()
        .find(|l| l.name == "volatile")
        .unwrap();
    let mut expected = vec![
        volatile.descriptor.digest.as_str(),
        changed.platforms[0].config.digest.as_str(),
    ];
    expected.sort();
    assert_eq!(
        uploaded, expected,
        "exactly the volatile layer and the config"
    );
    assert_eq!(third.manifests_put, ["latest"], "and the manifest");
    if let Some(digest) = skopeo_digest(registry.port, "team/comfyui:latest") {
        assert_eq!(digest, changed.platforms[0].manifest.digest);
    }
}

/// A layer blob whose bytes no longer hash to its digest (same size, edited in place) is
/// refused before its upload is committed, with the file named, single-PUT and chunked; the
/// registry never gets the tag.
#[test]
fn push_hashes_what_it_uploads_and_refuses_a_damaged_blob() {
    let Some(registry) = start_registry() else {
        return;
    };
    let b = built(&["manylinux_2_39_x86_64"]);
    let v1 = b.root.join("v1");
    let image = PackSetup::new(&b.stack, b.layers.clone(), v1.clone()).run();
    let layer = &image.platforms[0].layers[0].descriptor;
    let path = v1
        .join("blobs/sha256")
        .join(layer.digest.trim_start_matches("sha256:"));
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::remove_file(&path).unwrap();
    fs::write(&path, &bytes).unwrap();
    for (repo, chunk_size) in [("whole", u64::MAX), ("chunked", 7)] {
        let reference: ImageReference = format!("127.0.0.1:{}/team/{repo}:latest", registry.port)
            .parse()
            .unwrap();
        let options = PushOptions {
            chunk_size,
            ..insecure()
        };
        let err = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(push(&v1, &reference, options))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(path.to_str().unwrap()) && err.contains(&layer.digest),
            "{repo}: {err}"
        );
        assert_eq!(
            http_status(registry.port, &format!("/v2/team/{repo}/manifests/latest")),
            Some(404),
            "{repo}"
        );
        assert_eq!(
            http_status(
                registry.port,
                &format!("/v2/team/{repo}/blobs/{}", layer.digest)
            ),
            Some(404),
            "{repo}"
        );
    }
}

#[test]
fn push_chunked_mounted_and_multiarch() {
    let Some(registry) = start_registry() else {
        return;
    };
    let b = built(&["manylinux_2_39_x86_64", "manylinux_2_39_aarch64"]);
    let out = b.root.join("multi");
    let mut setup = PackSetup::new(&b.stack, b.layers.clone(), out.clone());
    setup.layer_dirs.push(("aarch64", b.layers.clone()));
    let image = setup.run();
    let port = registry.port;

    // Chunked: every blob above 1 KiB goes up in 1 KiB PATCHes.
    let chunked = push_now(
        &out,
        &format!("127.0.0.1:{port}/chunked:v1"),
        PushOptions {
            chunk_size: 1024,
            ..insecure()
        },
    );
    assert!(chunked
        .blobs
        .iter()
        .any(|b| matches!(b.outcome, BlobOutcome::Chunked(n) if n > 1)));
    let index = image.index.clone().unwrap();
    assert_eq!(chunked.digest, index.digest);
    // Two platform manifests by digest, then the index under the tag.
    assert_eq!(chunked.manifests_put.len(), 3);
    assert_eq!(chunked.manifests_put.last().unwrap(), "v1");
    if let Some(digest) = skopeo_digest(port, "chunked:v1") {
        // skopeo resolves the index to this host's platform; the raw digest is the index's.
        assert!(digest.starts_with("sha256:"));
        let raw = run_ok(
            Command::new(tool("skopeo").unwrap())
                .args(["inspect", "--raw", "--tls-verify=false"])
                .arg(format!("docker://127.0.0.1:{port}/chunked:v1")),
        );
        assert_eq!(
            fs::read(out.join("blobs/sha256").join(&index.digest[7..])).unwrap(),
            raw.as_bytes(),
            "the registry serves our index bytes"
        );
    }

    // Another repository mounts every blob from the first one: nothing is uploaded.
    let mounted = push_now(
        &out,
        &format!("127.0.0.1:{port}/mounted:v1"),
        PushOptions {
            mount_from: vec!["chunked".to_string()],
            ..insecure()
        },
    );
    assert!(mounted.uploaded().is_empty(), "{mounted:?}");
    assert!(mounted
        .blobs
        .iter()
        .all(|b| b.outcome == BlobOutcome::Mounted));
}

#[test]
fn push_refuses_plain_http_beyond_loopback_and_explains_tls_errors() {
    let b = built(&["manylinux_2_39_x86_64"]);
    let out = b.root.join("img");
    PackSetup::new(&b.stack, b.layers.clone(), out.clone()).run();
    let reference: ImageReference = "registry.example:5000/comfyui:latest".parse().unwrap();
    let err = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(push(&out, &reference, insecure()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("only for a registry on this machine"), "{err}");

    // A plain-HTTP registry on loopback without --insecure: the error says what to add.
    let Some(registry) = start_registry() else {
        return;
    };
    let reference: ImageReference = format!("127.0.0.1:{}/comfyui:latest", registry.port)
        .parse()
        .unwrap();
    let err = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(push(&out, &reference, PushOptions::default()))
        .unwrap_err();
    // What to add is the error's help, printed after it.
    let help = err.help().unwrap_or_default();
    assert!(help.contains("--insecure"), "{err}: {help}");
}

#[test]
fn push_cli_reads_credentials_without_printing_them() {
    let Some(registry) = start_registry() else {
        return;
    };
    let b = built(&["manylinux_2_39_x86_64"]);
    let out = b.root.join("img");
    PackSetup::new(&b.stack, b.layers.clone(), out.clone()).run();
    // A docker config with credentials for this registry (it needs none; they must not leak).
    let docker = b.root.join("docker");
    fs::create_dir_all(&docker).unwrap();
    fs::write(
        docker.join("config.json"),
        format!(
            r#"{{"auths": {{"127.0.0.1:{}": {{"auth": "dXNlcjpzM2NyZXQtcGFzcw=="}}}}}}"#,
            registry.port
        ),
    )
    .unwrap();
    let creds = comfypak::pack::push::docker_config_credentials(
        &docker.join("config.json"),
        &format!("127.0.0.1:{}", registry.port),
    )
    .unwrap()
    .unwrap();
    assert!(!format!("{creds:?}").contains("s3cret"));
    let output = Command::new(env!("CARGO_BIN_EXE_comfypak"))
        .env("DOCKER_CONFIG", &docker)
        .args(["push", "--insecure"])
        .arg(&out)
        .arg(format!("127.0.0.1:{}/cli/comfyui:v1", registry.port))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("5 blobs uploaded"), "{stdout}");
    assert!(!stdout.contains("s3cret") && !stderr.contains("s3cret"));
    assert!(
        !stdout.contains("dXNlcjpzM2NyZXQtcGFzcw") && !stderr.contains("dXNlcjpzM2NyZXQtcGFzcw")
    );
}

#[test]
fn push_basic_auth_against_an_htpasswd_registry() {
    let Some(registry) = start_registry_with_auth(Some(("builder", "s3cret-pass"))) else {
        return;
    };
    let b = built(&["manylinux_2_39_x86_64"]);
    let out = b.root.join("img");
    PackSetup::new(&b.stack, b.layers.clone(), out.clone()).run();
    let reference: ImageReference = format!("127.0.0.1:{}/auth/comfyui:v1", registry.port)
        .parse()
        .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();

    let err = runtime
        .block_on(push(&out, &reference, insecure()))
        .unwrap_err();
    assert!(err.to_string().contains("authentication failed"), "{err}");
    assert!(
        err.help()
            .unwrap_or_default()
            .contains("COMFYPAK_REGISTRY_USERNAME"),
        "{err}"
    );

    let wrong = PushOptions {
        credentials: Some(Credentials::Basic {
            username: "builder".into(),
            password: "wrong-pass".into(),
        }),
        ..insecure()
    };
    let err = runtime
        .block_on(push(&out, &reference, wrong))
        .unwrap_err()
        .to_string();
    assert!(err.contains("authentication failed"), "{err}");
    assert!(!err.contains("wrong-pass"), "{err}");

    let right = PushOptions {
        credentials: Some(Credentials::Basic {
            username: "builder".into(),
            password: "s3cret-pass".into(),
        }),
        ..insecure()
    };
    let report = runtime.block_on(push(&out, &reference, right)).unwrap();
    assert_eq!(report.uploaded().len(), 5);
    assert_eq!(report.manifests_put, ["v1"]);

    // The CLI takes them from the environment.
    let output = Command::new(env!("CARGO_BIN_EXE_comfypak"))
        .env("COMFYPAK_REGISTRY_USERNAME", "builder")
        .env("COMFYPAK_REGISTRY_PASSWORD", "s3cret-pass")
        .env("DOCKER_CONFIG", b.root.join("no-docker-config"))
        .args(["push", "--insecure"])
        .arg(&out)
        .arg(format!("127.0.0.1:{}/auth/comfyui:v1", registry.port))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("0 blobs uploaded"), "{stdout}");
    assert!(!stdout.contains("s3cret"));
}

/// A client that retries at once (1 ms backoff), without netrc.
fn fast_http(retries: u32) -> comfypak::http::HttpClient {
    comfypak::http::HttpClient::new(comfypak::http::HttpSettings {
        retries,
        backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        netrc: None,
        ..comfypak::http::HttpSettings::default()
    })
    .unwrap()
}

fn push_through(
    http: &comfypak::http::HttpClient,
    layout: &Path,
    reference: &str,
    options: PushOptions,
) -> Result<PushReport, comfypak::pack::push::PushError> {
    let reference: ImageReference = reference.parse().unwrap();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(comfypak::pack::push::push_with(
            http, layout, &reference, options,
        ))
}

#[test]
fn a_blob_upload_cut_off_midway_is_started_again_in_a_new_session() {
    use comfypak_testkit::{ProxyFault, TestProxy};
    let Some(registry) = start_registry() else {
        return;
    };
    let proxy = TestProxy::start(([127, 0, 0, 1], registry.port).into()).unwrap();
    // The first two blob PUTs break off after 100 bytes of body, as a dropped connection
    // would; a manifest PUT fails once with a 500.
    proxy.inject(ProxyFault::AbortRequestBody {
        method: "PUT".into(),
        path_contains: "/blobs/uploads/".into(),
        after_bytes: 100,
        times: 2,
    });
    proxy.inject(ProxyFault::Status {
        method: "PUT".into(),
        path_contains: "/manifests/".into(),
        status: 500,
        times: 1,
    });
    let b = built(&["manylinux_2_39_x86_64"]);
    let v1 = b.root.join("v1");
    let image = PackSetup::new(&b.stack, b.layers.clone(), v1.clone()).run();
    let reference = format!("127.0.0.1:{}/team/comfyui:latest", proxy.addr().port());
    let report = push_through(&fast_http(3), &v1, &reference, insecure()).unwrap();
    assert_eq!(report.uploaded().len(), 5, "{report:?}");
    assert_eq!(report.digest, image.platforms[0].manifest.digest);

    let log = proxy.log();
    let cut: Vec<_> = log.iter().filter(|r| r.status.is_none()).collect();
    assert_eq!(cut.len(), 2, "{log:#?}");
    assert!(cut.iter().all(|r| r.body_bytes == 100));
    // Each cut upload was started again in a new session: 5 blobs + 2 restarts.
    let sessions = log
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/blobs/uploads/"))
        .count();
    assert_eq!(sessions, 7, "{log:#?}");
    let blob_puts_ok = log
        .iter()
        .filter(|r| r.method == "PUT" && r.path.contains("/blobs/uploads/"))
        .filter(|r| r.status == Some(201))
        .count();
    assert_eq!(blob_puts_ok, 5);
    let manifest_puts: Vec<Option<u16>> = log
        .iter()
        .filter(|r| r.method == "PUT" && r.path.contains("/manifests/"))
        .map(|r| r.status)
        .collect();
    assert_eq!(manifest_puts, [Some(500), Some(201)]);
    // The registry itself, not the proxy, has the image.
    if let Some(digest) = skopeo_digest(registry.port, "team/comfyui:latest") {
        assert_eq!(digest, image.platforms[0].manifest.digest);
    }
}

#[test]
fn a_registry_that_keeps_failing_uploads_is_given_up_on_per_blob() {
    use comfypak_testkit::{ProxyFault, TestProxy};
    let Some(registry) = start_registry() else {
        return;
    };
    let proxy = TestProxy::start(([127, 0, 0, 1], registry.port).into()).unwrap();
    proxy.inject(ProxyFault::Status {
        method: "PUT".into(),
        path_contains: "/blobs/uploads/".into(),
        status: 503,
        times: 10_000,
    });
    let b = built(&["manylinux_2_39_x86_64"]);
    let v1 = b.root.join("v1");
    PackSetup::new(&b.stack, b.layers.clone(), v1.clone()).run();
    let reference = format!("127.0.0.1:{}/team/comfyui:latest", proxy.addr().port());
    let options = PushOptions {
        concurrency: 1,
        ..insecure()
    };
    let err = push_through(&fast_http(2), &v1, &reference, options).unwrap_err();
    let puts = proxy
        .log()
        .iter()
        .filter(|r| r.method == "PUT" && r.path.contains("/blobs/uploads/"))
        .count();
    // Three attempts (one and two retries) for each of the five blobs, never more.
    assert_eq!(puts, 15);
    let text = err.to_string();
    assert!(text.contains("kept failing"), "{text}");
    assert!(text.contains("gave up after 3 attempts"), "{text}");
    assert!(
        text.contains(&format!("127.0.0.1:{}", proxy.addr().port())),
        "{text}"
    );
}

#[test]
fn the_registry_session_pulls_back_what_was_pushed() {
    use comfypak::pack::oci::{media, Layout, Manifest};
    use comfypak::registry::{Registry, RegistryOptions, Scope};
    let Some(registry) = start_registry() else {
        return;
    };
    let b = built(&["manylinux_2_39_x86_64"]);
    let v1 = b.root.join("v1");
    PackSetup::new(&b.stack, b.layers.clone(), v1.clone()).run();
    let reference = format!("127.0.0.1:{}/team/comfyui:pull", registry.port);
    let http = fast_http(3);
    let report = push_through(&http, &v1, &reference, insecure()).unwrap();

    let reference: ImageReference = reference.parse().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let session = rt
        .block_on(Registry::connect(
            &http,
            &reference,
            RegistryOptions {
                insecure: true,
                credentials: None,
                scope: Scope::Pull,
            },
        ))
        .unwrap();
    let accept = [media::INDEX, media::MANIFEST];
    let top = rt
        .block_on(session.get_manifest(&reference.tag, &accept))
        .unwrap();
    assert_eq!(top.digest, report.digest);
    let manifest: Manifest = serde_json::from_slice(&top.bytes).unwrap();
    let layout = Layout::open(&v1).unwrap();
    let out = tempfile::tempdir().unwrap();
    for d in manifest
        .layers
        .iter()
        .chain(std::iter::once(&manifest.config))
    {
        let dest = out.path().join(d.digest.replace(':', "-"));
        let size = rt
            .block_on(session.download_blob(&d.digest, &dest))
            .unwrap();
        assert_eq!(size, d.size);
        assert_eq!(
            fs::read(&dest).unwrap(),
            layout.read_blob(&d.digest).unwrap()
        );
    }
    let config = rt
        .block_on(session.get_blob(&manifest.config.digest))
        .unwrap();
    assert_eq!(config, layout.read_blob(&manifest.config.digest).unwrap());
    // A digest that is not there is an error naming the URL, not a file.
    let missing = format!("sha256:{}", "0".repeat(64));
    let dest = out.path().join("missing");
    assert!(rt.block_on(session.download_blob(&missing, &dest)).is_err());
    assert!(!dest.exists());
}

/// A token service for a registry with `auth: token`, on 127.0.0.1: it checks HTTP basic
/// credentials and answers with an RS256 JWT granting the scopes asked for, signed (by
/// `openssl dgst`) with a key whose self-signed certificate is the registry's
/// `rootcertbundle` and travels in the token's `x5c` header. Stops when dropped.
struct TokenService {
    port: u16,
    /// Every request: the scopes asked for, and whether the credentials were right.
    log: std::sync::Arc<std::sync::Mutex<Vec<TokenRequest>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The certificate bundle for the registry's config.
    cert: PathBuf,
    _dir: tempfile::TempDir,
}

/// The scopes a token request asked for, and whether its credentials were right.
type TokenRequest = (Vec<String>, bool);

const TOKEN_SERVICE: &str = "comfypak-test-registry";
const TOKEN_ISSUER: &str = "comfypak-test-issuer";

impl TokenService {
    fn start(user: &'static str, password: &'static str) -> Option<TokenService> {
        use base64::Engine;
        let openssl = tool("openssl")?;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.pem");
        let cert = dir.path().join("cert.pem");
        run_ok(
            Command::new(&openssl)
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                ])
                .args(["-subj", "/CN=comfypak-test-token-signer", "-keyout"])
                .arg(&key)
                .arg("-out")
                .arg(&cert),
        );
        let pem = fs::read_to_string(&cert).unwrap();
        let der_b64: String = pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<Vec<_>>()
            .concat();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (thread_log, thread_stop) = (log.clone(), stop.clone());
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let thread = std::thread::spawn(move || {
            let b64url =
                |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
            for stream in listener.incoming() {
                if thread_stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let Ok(mut stream) = stream else { continue };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let target = head.split_whitespace().nth(1).unwrap_or("").to_string();
                let url = url::Url::parse(&format!("http://127.0.0.1{target}")).unwrap();
                let scopes: Vec<String> = url
                    .query_pairs()
                    .filter(|(k, _)| k == "scope")
                    .map(|(_, v)| v.to_string())
                    .collect();
                let authorized = head.lines().any(|l| {
                    l.split_once(':').is_some_and(|(k, v)| {
                        k.eq_ignore_ascii_case("authorization") && v.trim() == expected
                    })
                });
                thread_log
                    .lock()
                    .unwrap()
                    .push((scopes.clone(), authorized));
                let (status, body) = if !authorized {
                    (
                        "401 Unauthorized",
                        r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#
                            .to_string(),
                    )
                } else {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_secs();
                    let access: Vec<serde_json::Value> = scopes
                        .iter()
                        .filter_map(|s| {
                            let (kind, rest) = s.split_once(':')?;
                            let (name, actions) = rest.rsplit_once(':')?;
                            Some(serde_json::json!({
                                "type": kind, "name": name,
                                "actions": actions.split(',').collect::<Vec<_>>(),
                            }))
                        })
                        .collect();
                    let header =
                        serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [der_b64]});
                    let claims = serde_json::json!({
                        "iss": TOKEN_ISSUER, "sub": user, "aud": TOKEN_SERVICE,
                        "exp": now + 600, "nbf": now - 10, "iat": now - 10,
                        "jti": format!("{now}-{}", thread_log.lock().unwrap().len()),
                        "access": access,
                    });
                    let input = format!(
                        "{}.{}",
                        b64url(header.to_string().as_bytes()),
                        b64url(claims.to_string().as_bytes())
                    );
                    let mut sign = Command::new(&openssl)
                        .args(["dgst", "-sha256", "-binary", "-sign"])
                        .arg(&key)
                        .stdin(Stdio::piped())
                        .stdout(Stdio::piped())
                        .spawn()
                        .unwrap();
                    sign.stdin
                        .take()
                        .unwrap()
                        .write_all(input.as_bytes())
                        .unwrap();
                    let signed = sign.wait_with_output().unwrap();
                    assert!(signed.status.success());
                    let token = format!("{input}.{}", b64url(&signed.stdout));
                    (
                        "200 OK",
                        serde_json::json!({"token": token, "access_token": token, "expires_in": 600})
                            .to_string(),
                    )
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Some(TokenService {
            port,
            log,
            stop,
            thread: Some(thread),
            cert,
            _dir: dir,
        })
    }

    fn requests(&self) -> Vec<TokenRequest> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for TokenService {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Bearer-token auth against a real registry (`auth: token`, its realm the test's token
/// service): push and pull go through tokens the service issues for the user's credentials;
/// no credentials and wrong ones are each a clear error that never shows the password.
#[test]
fn push_and_pull_with_bearer_tokens_from_a_token_service() {
    use comfypak::registry::pull::{pull_base, BaseReference, PullOptions};
    let Some(tokens) = TokenService::start("builder", "t0ken-pass") else {
        return;
    };
    let realm = format!("http://127.0.0.1:{}/token", tokens.port);
    let Some(registry) = start_registry_with_config(|_| {
        Some(format!(
            "auth:\n  token:\n    realm: {realm}\n    service: {TOKEN_SERVICE}\n    \
             issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
            tokens.cert.display()
        ))
    }) else {
        return;
    };
    let b = built(&["manylinux_2_39_x86_64"]);
    let out = b.root.join("img");
    let image = PackSetup::new(&b.stack, b.layers.clone(), out.clone()).run();
    let reference: ImageReference = format!("127.0.0.1:{}/token/comfyui:v1", registry.port)
        .parse()
        .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let basic = |password: &str| {
        Some(Credentials::Basic {
            username: "builder".into(),
            password: password.into(),
        })
    };

    // No credentials: the token service wants some.
    let err = runtime
        .block_on(push(&out, &reference, insecure()))
        .unwrap_err();
    let text = comfypak::diagnostic::with_help(&err);
    assert!(
        text.contains(&format!(
            "the token service at {realm} wants a user name and password (HTTP 401), and none \
             were given"
        )),
        "{text}"
    );
    assert!(text.contains("COMFYPAK_REGISTRY_USERNAME"), "{text}");

    // Wrong password: refused, named by user, the password never shown.
    let wrong = PushOptions {
        credentials: basic("wrong-pass"),
        ..insecure()
    };
    let err = runtime.block_on(push(&out, &reference, wrong)).unwrap_err();
    let text = comfypak::diagnostic::with_help(&err);
    assert!(
        text.contains(&format!(
            "the token service at {realm} refused the user name and password given for \
             `builder` (HTTP 401)"
        )),
        "{text}"
    );
    assert!(!text.contains("wrong-pass"), "{text}");

    // Right: the push goes through on tokens, scoped to pull and push of the repository.
    let right = PushOptions {
        credentials: basic("t0ken-pass"),
        ..insecure()
    };
    let report = runtime.block_on(push(&out, &reference, right)).unwrap();
    assert_eq!(report.uploaded().len(), 5, "{report:?}");
    assert_eq!(report.digest, image.platforms[0].manifest.digest);
    let asked = tokens.requests();
    assert!(
        asked.iter().any(|(scopes, ok)| *ok
            && scopes
                .iter()
                .any(|s| s == "repository:token/comfyui:pull,push")),
        "{asked:?}"
    );

    // Pull it back as a base, on tokens with the pull scope.
    let base: BaseReference = format!("docker://127.0.0.1:{}/token/comfyui:v1", registry.port)
        .parse()
        .unwrap();
    let cache = b.root.join("cache");
    let http = HttpClient::new(HttpSettings::default()).unwrap();
    let pull = |credentials| {
        runtime.block_on(pull_base(
            &http,
            &base,
            &[comfypak::target::Arch::X86_64],
            &cache,
            &PullOptions {
                insecure: true,
                credentials,
            },
        ))
    };
    let err = pull(basic("wrong-pass")).unwrap_err();
    let text = comfypak::diagnostic::with_help(&err);
    assert!(
        text.contains("refused the user name and password"),
        "{text}"
    );
    assert!(!text.contains("wrong-pass"), "{text}");
    let pulled = pull(basic("t0ken-pass")).unwrap();
    assert_eq!(pulled.digest, image.platforms[0].manifest.digest);
    let layout = comfypak::pack::oci::Layout::open(&pulled.layout).unwrap();
    let images = layout.images().unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(
        images[0]
            .manifest
            .layers
            .iter()
            .map(|l| l.digest.clone())
            .collect::<Vec<_>>(),
        image.platforms[0]
            .layers
            .iter()
            .map(|l| l.descriptor.digest.clone())
            .collect::<Vec<_>>()
    );
    let asked = tokens.requests();
    assert!(
        asked
            .iter()
            .any(|(scopes, ok)| *ok && scopes.iter().any(|s| s == "repository:token/comfyui:pull")),
        "{asked:?}"
    );
}

//! Base images from a registry: a real registry (Debian's `docker-registry` on 127.0.0.1,
//! started as in tests/it/push.rs) serves bases copied there by skopeo; comfypak pulls them
//! by tag and by digest into the cache (one image per platform), and the target runtime runs
//! the pulled base's CPython 3.14. A tampered or truncated blob is an error and nothing of it
//! is cached; blobs are pulled several at once; a missing platform is an error naming what the
//! base has; `comfypak build`
//! records the tag's digest in the lock and `--locked` builds on that digest.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use comfypak::http::{HttpClient, HttpSettings};
use comfypak::pack::oci::media;
use comfypak::registry::pull::{pull_base, BaseReference, PullError, PullOptions, PulledBase};
use comfypak::runtime::{Base, Runtime};
use comfypak::target::Arch;
use sha2::{Digest, Sha256};

use super::pack_support::{run_ok, tool};
use super::push::{start_registry, Registry};
use super::runtime::{debian_root, options, tar_of, target, E};

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// An OCI layout at `dir` holding one image per (arch, uncompressed layers), under a nested
/// image index when there are several (as skopeo copies multi-arch images). Returns the digest
/// of the top manifest or index, and the layer digests of each image.
pub(crate) fn base_layout(
    dir: &Path,
    images: &[(Arch, Vec<Vec<u8>>)],
) -> (String, Vec<Vec<String>>) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let put = |bytes: &[u8]| -> String {
        let digest = sha(bytes);
        std::fs::write(blobs.join(&digest[7..]), bytes).unwrap();
        digest
    };
    let mut manifests = Vec::new();
    let mut layer_digests = Vec::new();
    for (arch, layers) in images {
        let diff_ids: Vec<String> = layers.iter().map(|l| sha(l)).collect();
        let descs: Vec<serde_json::Value> = layers
            .iter()
            .map(|l| {
                serde_json::json!({"mediaType": media::LAYER_TAR, "digest": put(l), "size": l.len()})
            })
            .collect();
        layer_digests.push(diff_ids.clone());
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": arch.oci_name(), "os": "linux",
            "config": {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": media::MANIFEST,
            "config": {"mediaType": media::CONFIG, "digest": put(&config), "size": config.len()},
            "layers": descs,
        }))
        .unwrap();
        manifests.push(serde_json::json!({
            "mediaType": media::MANIFEST, "digest": put(&manifest), "size": manifest.len(),
            "platform": {"architecture": arch.oci_name(), "os": "linux"},
        }));
    }
    let top = if manifests.len() == 1 {
        manifests.remove(0)
    } else {
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": media::INDEX, "manifests": manifests,
        }))
        .unwrap();
        serde_json::json!({"mediaType": media::INDEX, "digest": put(&index), "size": index.len()})
    };
    let digest = top["digest"].as_str().unwrap().to_string();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [top]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    (digest, layer_digests)
}

/// Copies the layout to the registry as `repo:tag` with skopeo, digests kept.
pub(crate) fn serve(registry: &Registry, layout: &Path, repo_tag: &str) {
    let skopeo = tool("skopeo").expect("skopeo (.ci/setup.d/40-image-tools.sh installs it)");
    run_ok(
        Command::new(skopeo)
            .args([
                "copy",
                "--all",
                "--preserve-digests",
                "--dest-tls-verify=false",
            ])
            .arg(format!("oci:{}", layout.display()))
            .arg(format!("docker://127.0.0.1:{}/{repo_tag}", registry.port)),
    );
}

fn http() -> HttpClient {
    HttpClient::new(HttpSettings {
        retries: 2,
        backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        netrc: None,
        ..HttpSettings::default()
    })
    .unwrap()
}

fn pull(reference: &str, archs: &[Arch], cache: &Path) -> Result<PulledBase, PullError> {
    let reference: BaseReference = reference.parse().unwrap();
    tokio::runtime::Runtime::new().unwrap().block_on(pull_base(
        &http(),
        &reference,
        archs,
        cache,
        &PullOptions {
            insecure: true,
            ..PullOptions::default()
        },
    ))
}

/// Files under `dir` (relative paths), for "nothing was cached".
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// The blob's data file in the registry's filesystem storage.
fn stored_blob(registry: &Registry, digest: &str) -> PathBuf {
    let hex = &digest[7..];
    registry
        .storage()
        .join("data/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data")
}

fn small_layer(name: &str) -> Vec<u8> {
    let body = format!("{name}\n").repeat(200);
    tar_of(&[
        E::Dir("etc"),
        E::File(&format!("etc/{name}"), body.as_bytes()),
    ])
}

#[test]
fn a_base_pulled_by_tag_and_by_digest_runs_its_python() {
    let Some(root) = debian_root() else { return };
    let Some(registry) = start_registry() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    builder.append_dir_all(".", &root).unwrap();
    let root_tar = builder.into_inner().unwrap();
    let (index_digest, _) = base_layout(
        &dir.path().join("layout"),
        &[
            (Arch::X86_64, vec![root_tar, small_layer("top")]),
            (Arch::Aarch64, vec![small_layer("arm")]),
        ],
    );
    serve(&registry, &dir.path().join("layout"), "lib/python:3.14");
    let cache = dir.path().join("cache");
    let by_tag = format!("docker://127.0.0.1:{}/lib/python:3.14", registry.port);

    let pulled = pull(&by_tag, &[Arch::X86_64], &cache).unwrap();
    assert_eq!(pulled.digest, index_digest, "the tag resolves to the index");
    assert!(!pulled.cached);
    let runtime = Runtime::for_platform(
        &Base::Layout(pulled.layout.clone()),
        &target((3, 14), Arch::X86_64),
        "/opt/venv",
        &options(&cache, Duration::from_secs(120)),
    )
    .unwrap();
    assert!(
        runtime.interpreter.version.starts_with("3.14."),
        "{:?}",
        runtime.interpreter
    );
    assert!(runtime.root.join("etc/top").is_file());
    // Only the amd64 image was taken: its blobs, not the arm64 layer.
    let images = comfypak::pack::oci::Layout::open(&pulled.layout)
        .unwrap()
        .images()
        .unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].architecture, "amd64");

    // By digest: the cached layout, without asking the registry again.
    let by_digest = format!(
        "docker://127.0.0.1:{}/lib/python@{index_digest}",
        registry.port
    );
    let again = pull(&by_digest, &[Arch::X86_64], &cache).unwrap();
    assert!(again.cached);
    assert_eq!(again.layout, pulled.layout);
    // By digest into an empty cache: the same layout bytes.
    let fresh = dir.path().join("cache2");
    let other = pull(&by_digest, &[Arch::X86_64], &fresh).unwrap();
    assert!(!other.cached);
    assert_eq!(other.digest, index_digest);
    assert_eq!(files_under(&other.layout), files_under(&pulled.layout));
    assert_eq!(
        std::fs::read(other.layout.join("index.json")).unwrap(),
        std::fs::read(pulled.layout.join("index.json")).unwrap()
    );
    // Both platforms: one image each.
    let both = pull(&by_tag, &[Arch::X86_64, Arch::Aarch64], &fresh).unwrap();
    let images = comfypak::pack::oci::Layout::open(&both.layout)
        .unwrap()
        .images()
        .unwrap();
    assert_eq!(images.len(), 2);
}

#[test]
fn a_missing_platform_names_what_the_base_has() {
    let Some(registry) = start_registry() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    base_layout(
        &dir.path().join("single"),
        &[(Arch::X86_64, vec![small_layer("one")])],
    );
    serve(&registry, &dir.path().join("single"), "lib/single:1");
    let cache = dir.path().join("cache");
    let err = pull(
        &format!("docker://127.0.0.1:{}/lib/single:1", registry.port),
        &[Arch::X86_64, Arch::Aarch64],
        &cache,
    )
    .unwrap_err();
    let text = comfypak::diagnostic::with_help(&err);
    assert!(
        text.contains("no linux/arm64 image") && text.contains("only linux/amd64"),
        "{text}"
    );
    assert!(text.contains("--base ARCH="), "{text}");

    base_layout(
        &dir.path().join("multi"),
        &[
            (Arch::X86_64, vec![small_layer("a")]),
            (Arch::X86_64, vec![small_layer("b")]),
        ],
    );
    // An index whose platforms are amd64 twice (say, two variants): arm64 is missing.
    serve(&registry, &dir.path().join("multi"), "lib/multi:1");
    let err = pull(
        &format!("docker://127.0.0.1:{}/lib/multi:1", registry.port),
        &[Arch::Aarch64],
        &cache,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("no linux/arm64 image (it has: linux/amd64, linux/amd64)"),
        "{err}"
    );
    assert!(files_under(&cache.join("registry/bases")).is_empty());
}

#[test]
fn tampered_and_truncated_blobs_are_refused_and_nothing_is_cached() {
    let Some(registry) = start_registry() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let layer = small_layer("payload");
    let (_, digests) = base_layout(
        &dir.path().join("layout"),
        &[(Arch::X86_64, vec![layer.clone()])],
    );
    serve(&registry, &dir.path().join("layout"), "lib/bad:1");
    let blob = stored_blob(&registry, &digests[0][0]);
    assert!(blob.is_file(), "{}", blob.display());
    let reference = format!("docker://127.0.0.1:{}/lib/bad:1", registry.port);

    // Tampered: same size, one byte changed.
    let mut changed = layer.clone();
    let at = changed.len() / 3;
    changed[at] ^= 0x55;
    std::fs::write(&blob, &changed).unwrap();
    let cache = dir.path().join("cache");
    let err = pull(&reference, &[Arch::X86_64], &cache).unwrap_err();
    let text = comfypak::diagnostic::with_help(&err);
    assert!(text.contains(&format!("not {}", digests[0][0])), "{text}");
    assert!(text.contains("nothing of them was kept"), "{text}");
    let kept: Vec<String> = files_under(&cache.join("registry"));
    assert!(
        kept.iter().all(|f| !f.contains(&digests[0][0][7..])),
        "{kept:?}"
    );
    assert!(files_under(&cache.join("registry/bases")).is_empty());

    // Truncated: the registry serves half of it.
    std::fs::write(&blob, &layer[..layer.len() / 2]).unwrap();
    let err = pull(&reference, &[Arch::X86_64], &cache)
        .unwrap_err()
        .to_string();
    assert!(err.contains(&digests[0][0]), "{err}");
    let kept: Vec<String> = files_under(&cache.join("registry"));
    assert!(
        kept.iter().all(|f| !f.contains(&digests[0][0][7..])),
        "{kept:?}"
    );
    assert!(files_under(&cache.join("registry/bases")).is_empty());

    // Repaired: the pull goes through.
    std::fs::write(&blob, &layer).unwrap();
    let pulled = pull(&reference, &[Arch::X86_64], &cache).unwrap();
    assert!(pulled.layout.join("index.json").is_file());
}

#[test]
fn references_that_are_not_bases() {
    for (text, want) in [
        ("docker://python:3.14", "registry host"),
        ("docker://127.0.0.1:5000/python@sha256:abc", "not a digest"),
        ("docker://127.0.0.1:5000/Python:3.14", "lowercase"),
    ] {
        let err = text.parse::<BaseReference>().unwrap_err();
        let shown = comfypak::diagnostic::with_help(&err);
        assert!(
            shown.contains(want) && shown.contains("docker://HOST/REPOSITORY"),
            "{text}: {shown}"
        );
    }
}

#[test]
fn build_records_the_base_digest_and_locked_builds_on_it() {
    use super::check::{comfypak, fixture_stack, text};
    let Some(root) = debian_root() else { return };
    let Some(registry) = start_registry() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let pak = fixture_stack(dir.path(), "demo_bad = \"the test's upstream fault\"\n");
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    builder.append_dir_all(".", &root).unwrap();
    let root_tar = builder.into_inner().unwrap();
    let (first_digest, _) = base_layout(
        &dir.path().join("v1"),
        &[(Arch::X86_64, vec![root_tar.clone()])],
    );
    serve(&registry, &dir.path().join("v1"), "lib/python:3.14");
    let reference = format!("docker://127.0.0.1:{}/lib/python:3.14", registry.port);
    let build = |out: &str, extra: &[&str]| {
        let mut args = vec![
            "build",
            "--stack",
            pak.to_str().unwrap(),
            "--out",
            out,
            "--lock",
            "pylock.toml",
            "--base",
            &reference,
            "--insecure-base",
            "--no-compile",
        ];
        args.extend_from_slice(extra);
        comfypak(&args, dir.path(), &cache)
    };
    let first = build("out1", &[]);
    assert!(first.status.success(), "{}", text(&first));
    let lock = std::fs::read_to_string(dir.path().join("pylock.toml")).unwrap();
    let pinned = format!(
        "[[tool.comfypak.bases]]\nreference = \"{reference}\"\ndigest = \"{first_digest}\"\n"
    );
    assert!(lock.contains(&pinned), "{lock}");
    assert!(
        String::from_utf8_lossy(&first.stderr)
            .contains(&format!("base {reference}: {first_digest} (pulled)")),
        "{}",
        text(&first)
    );
    // The base's layer is the image's first layer.
    let image = |out: &str| {
        let layout =
            comfypak::pack::oci::Layout::open(&dir.path().join(out).join("image")).unwrap();
        layout.images().unwrap().remove(0).manifest.layers[0]
            .digest
            .clone()
    };
    assert_eq!(image("out1"), sha(&root_tar));

    // The tag moves to another image; --locked still builds on the locked digest.
    let (second_digest, _) = base_layout(
        &dir.path().join("v2"),
        &[(Arch::X86_64, vec![small_layer("v2"), root_tar.clone()])],
    );
    assert_ne!(first_digest, second_digest);
    serve(&registry, &dir.path().join("v2"), "lib/python:3.14");
    let locked = build("out2", &["--locked"]);
    assert!(locked.status.success(), "{}", text(&locked));
    assert!(
        String::from_utf8_lossy(&locked.stderr)
            .contains(&format!("base {reference}: {first_digest} (cached)")),
        "{}",
        text(&locked)
    );
    assert_eq!(image("out2"), sha(&root_tar));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("pylock.toml")).unwrap(),
        lock
    );
    // A plain build resolves the tag again and records the new digest.
    let moved = build("out3", &[]);
    assert!(moved.status.success(), "{}", text(&moved));
    let lock3 = std::fs::read_to_string(dir.path().join("pylock.toml")).unwrap();
    assert!(lock3.contains(&second_digest), "{lock3}");
    assert_eq!(image("out3"), sha(&small_layer("v2")));

    // A lock without a pin for the base: --frozen refuses to guess.
    let unpinned = lock3.replace(
        &format!(
            "[[tool.comfypak.bases]]\nreference = \"{reference}\"\ndigest = \"{second_digest}\"\n"
        ),
        "",
    );
    assert_ne!(unpinned, lock3);
    std::fs::write(dir.path().join("pylock.toml"), unpinned).unwrap();
    let frozen = build("out4", &["--frozen"]);
    assert!(!frozen.status.success(), "{}", text(&frozen));
    let err = String::from_utf8_lossy(&frozen.stderr);
    assert!(
        err.contains("pins no digest for the base") && err.contains("--frozen"),
        "{err}"
    );
}

#[test]
fn stack_base_takes_a_path_or_a_registry_image() {
    let dir = tempfile::tempdir().unwrap();
    let pak = super::check::fixture_stack(dir.path(), "");
    let manifest = std::fs::read_to_string(pak.join("stack.toml")).unwrap();
    let write = |base: &str| {
        std::fs::write(
            pak.join("stack.toml"),
            format!("{manifest}\n[base]\n{base}\n"),
        )
        .unwrap();
        comfypak::stack::Stack::load(&pak)
    };
    let stack = write("image = \"docker://127.0.0.1:5000/lib/python:3.14\"").unwrap();
    assert_eq!(
        stack.base,
        Some(PathBuf::from("docker://127.0.0.1:5000/lib/python:3.14"))
    );
    let stack = write("path = \"base\"").unwrap();
    assert_eq!(stack.base, Some(pak.join("base")));
    for bad in [
        "path = \"base\"\nimage = \"docker://127.0.0.1:5000/x:1\"",
        "image = \"127.0.0.1:5000/x:1\"",
        "path = \"docker://127.0.0.1:5000/x:1\"",
    ] {
        let err = comfypak::diagnostic::with_help(&write(bad).unwrap_err());
        assert!(
            err.contains("`image`") && err.contains("docker://"),
            "{bad}: {err}"
        );
    }
}

/// The blobs a base lacks are pulled several at once (bounded), still each verified while it
/// streams and cached by digest: a proxy in front of the real registry holds blob GETs until
/// four are in flight together (a sequential pull never gets there: the proxy logs it), then
/// lets them through; the layout has every blob with the right bytes, and a second pull of
/// the same blobs into that cache asks for none. A blob that breaks off while others stream
/// leaves no partial file behind. A layer both platforms share is pulled once and kept whole.
#[test]
fn blobs_are_pulled_concurrently_and_verified() {
    use comfypak_testkit::{ProxyFault, TestProxy};
    let Some(registry) = start_registry() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let layers: Vec<Vec<u8>> = (0..5).map(|i| small_layer(&format!("part{i}"))).collect();
    let (_, digests) = base_layout(
        &dir.path().join("layout"),
        &[
            (Arch::X86_64, layers[..3].to_vec()),
            (Arch::Aarch64, layers[2..].to_vec()),
        ],
    );
    serve(&registry, &dir.path().join("layout"), "lib/many:1");
    let proxy = TestProxy::start(([127, 0, 0, 1], registry.port).into()).unwrap();
    proxy.inject(ProxyFault::Gather {
        method: "GET".into(),
        path_contains: "/blobs/".into(),
        count: comfypak::registry::pull::BLOB_PULLS,
    });
    let reference = format!("docker://127.0.0.1:{}/lib/many:1", proxy.addr().port());
    let cache = dir.path().join("cache");
    let pulled = pull(&reference, &[Arch::X86_64, Arch::Aarch64], &cache).unwrap();
    let blob_gets: Vec<_> = proxy
        .log()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.contains("/blobs/"))
        .collect();
    // 2 configs and 5 distinct layers (the shared one once).
    assert_eq!(blob_gets.len(), 7, "{blob_gets:?}");
    let gathered: Vec<_> = blob_gets.iter().filter(|r| r.fault.is_some()).collect();
    assert_eq!(gathered.len(), 4, "{blob_gets:?}");
    assert!(
        gathered
            .iter()
            .all(|r| !r.fault.as_deref().unwrap().contains("not met")),
        "the pull did not have four blobs in flight at once: {blob_gets:?}"
    );
    let images = comfypak::pack::oci::Layout::open(&pulled.layout)
        .unwrap()
        .images()
        .unwrap();
    assert_eq!(images.len(), 2);
    for (i, image) in images.iter().enumerate() {
        let got: Vec<String> = image
            .manifest
            .layers
            .iter()
            .map(|l| {
                let bytes =
                    std::fs::read(pulled.layout.join("blobs/sha256").join(&l.digest[7..])).unwrap();
                assert_eq!(sha(&bytes), l.digest);
                sha(&bytes)
            })
            .collect();
        // Uncompressed layers: the digest is the diff_id.
        assert_eq!(got, digests[i]);
    }
    assert!(
        files_under(&cache.join("registry"))
            .iter()
            .all(|f| !f.contains(".part")),
        "{:?}",
        files_under(&cache.join("registry"))
    );

    // One blob cut short by the registry (half its bytes) among the others: an error naming
    // it; the others may be cached (verified), the short one is not, nor any partial file.
    let cache = dir.path().join("cache-short");
    let blob = stored_blob(&registry, &digests[1][1]);
    std::fs::write(&blob, &layers[3][..layers[3].len() / 2]).unwrap();
    let direct = format!("docker://127.0.0.1:{}/lib/many:1", registry.port);
    let err = pull(&direct, &[Arch::X86_64, Arch::Aarch64], &cache)
        .unwrap_err()
        .to_string();
    assert!(err.contains(&digests[1][1]), "{err}");
    let kept = files_under(&cache.join("registry"));
    assert!(
        kept.iter()
            .all(|f| !f.contains(&digests[1][1][7..]) && !f.contains(".part")),
        "{kept:?}"
    );
    assert!(files_under(&cache.join("registry/bases")).is_empty());
}

/// `--base ARCH=LAYOUT`, one base per platform, puts that platform's image on the layout's
/// image, as `--base LAYOUT` for every platform does (it used to leave the image without base
/// layers: only a base for every platform was packed).
#[test]
fn build_on_a_base_for_one_architecture_keeps_its_layers() {
    use super::check::{comfypak, fixture_stack, text};
    let Some(root) = debian_root() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let pak = fixture_stack(dir.path(), "demo_bad = \"the test's upstream fault\"\n");
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    builder.append_dir_all(".", &root).unwrap();
    let root_tar = builder.into_inner().unwrap();
    let (manifest_digest, _) = base_layout(
        &dir.path().join("base"),
        &[(Arch::X86_64, vec![root_tar.clone()])],
    );
    let base = format!("x86_64={}", dir.path().join("base").display());
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
            &base,
            "--no-compile",
        ],
        dir.path(),
        &cache,
    );
    assert!(out.status.success(), "{}", text(&out));
    let layout = comfypak::pack::oci::Layout::open(&dir.path().join("out/image")).unwrap();
    let image = layout.images().unwrap().remove(0);
    assert_eq!(image.manifest.layers[0].digest, sha(&root_tar));
    assert_eq!(
        image.manifest.annotations["org.opencontainers.image.base.digest"],
        manifest_digest
    );
}

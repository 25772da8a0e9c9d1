//! The layer cache of `comfypak build` (src/pack/layer_cache.rs), end to end on the shipped
//! stack against the fixture indexes: what the process did is counted through
//! `COMFYPAK_TEST_COUNTS_FILE` (stack layers installed, layer tars compressed), not timed.
//! A second build installs and compresses nothing and gives the same digests; a volatile bump
//! rebuilds the volatile layer only; another compression misses; a tampered or missing
//! cached blob is rebuilt, never trusted; an unchanged blob stamped after its last hash is not
//! hashed again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Build {
    /// `(architecture, layer[/distribution])` → layer digest.
    layers: BTreeMap<(String, String), String>,
    /// The digest of the layout's top manifest or index.
    top: String,
    counts: BTreeMap<String, usize>,
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn blob(image: &Path, digest: &str) -> serde_json::Value {
    read_json(
        &image
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:")),
    )
}

fn build(work: &Path, indexes: &[String], extra: &[&str]) -> Build {
    let counts = work.join("counts.txt");
    let _ = std::fs::remove_file(&counts);
    let out = Command::new(env!("CARGO_BIN_EXE_comfypak"))
        .args(["build", "--stack"])
        .arg(work.join("pak"))
        .args(super::build::no_nodes())
        .arg("--lock")
        .arg(work.join("pylock.toml"))
        .arg("--out")
        .arg(work.join("out"))
        .args(indexes)
        .args(extra)
        .current_dir(work)
        .env("COMFYPAK_CACHE_DIR", work.join("cache"))
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env("COMFYPAK_TEST_COUNTS_FILE", &counts)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let image = work.join("out/image");
    let top = read_json(&image.join("index.json"))["manifests"][0].clone();
    let top_digest = top["digest"].as_str().unwrap().to_string();
    let top_blob = blob(&image, &top_digest);
    let manifests: Vec<serde_json::Value> = match top_blob["manifests"].as_array() {
        Some(list) => list.clone(),
        None => vec![top.clone()],
    };
    let mut layers = BTreeMap::new();
    for m in manifests {
        let arch = m["platform"]["architecture"]
            .as_str()
            .unwrap_or("single")
            .to_string();
        let manifest = blob(&image, m["digest"].as_str().unwrap());
        for l in manifest["layers"].as_array().unwrap() {
            let a = &l["annotations"];
            let mut name = a["io.comfypak.layer"].as_str().unwrap_or("?").to_string();
            if let Some(d) = a["io.comfypak.distribution"].as_str() {
                name = format!("{name}/{d}");
            }
            layers.insert(
                (arch.clone(), name),
                l["digest"].as_str().unwrap().to_string(),
            );
        }
    }
    let counts = std::fs::read_to_string(&counts)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect();
    Build {
        layers,
        top: top_digest,
        counts,
    }
}

impl Build {
    fn count(&self, what: &str) -> usize {
        *self
            .counts
            .get(what)
            .unwrap_or_else(|| panic!("no `{what}` in the counts: {:?}", self.counts))
    }

    /// The layers whose digest differs from `other`'s.
    fn changed_from(&self, other: &Build) -> Vec<(String, String)> {
        self.layers
            .iter()
            .filter(|(k, v)| other.layers.get(*k) != Some(*v))
            .map(|(k, _)| k.clone())
            .collect()
    }
}

/// Sets every cached blob's mtime an hour back, as if written long before this build.
fn age_cached_blobs(work: &Path) {
    let when = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for entry in std::fs::read_dir(work.join("cache/layers/blobs/sha256")).unwrap() {
        std::fs::File::options()
            .write(true)
            .open(entry.unwrap().path())
            .unwrap()
            .set_modified(when)
            .unwrap();
    }
}

/// The volatile-only bump both tests make: pak9's frontend pin moves to a newer fixture version.
fn bump_frontend(work: &Path) {
    let pak9 = work.join("pak/pak9.txt");
    let text = std::fs::read_to_string(&pak9).unwrap();
    let bumped = text.replace(
        "comfyui-frontend-package==1.45.15",
        "comfyui-frontend-package==1.58.1",
    );
    assert_ne!(
        bumped, text,
        "pak9.txt no longer pins the frontend at 1.45.15"
    );
    std::fs::write(&pak9, bumped).unwrap();
}

fn cached_blob(work: &Path, digest: &str) -> PathBuf {
    work.join("cache/layers/blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

#[test]
fn a_build_reuses_unchanged_layers_without_installing_or_compressing_them() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    for sub in ["pak", "indexes"] {
        super::common::copy_tree(&repo().join(sub), &work.join(sub));
    }
    let indexes = super::golden::write_indexes(&work.join("fixture-indexes"));

    let first = build(work, &indexes, &[]);
    let stack_layers = first
        .layers
        .keys()
        .filter(|(_, l)| ["stable", "deps", "perf", "volatile"].contains(&l.as_str()))
        .count();
    assert_eq!(stack_layers, 8, "{:?}", first.layers);
    assert_eq!(first.count("layers-installed"), 8);
    assert!(first.count("layers-compressed") >= 8);

    // (a) No change: nothing installed or compressed, the same bytes. A blob stamped in the
    // same second as written (racy) is hashed by the first reuse; whether any was depends on
    // the machine's load (a loaded machine stamps them a second later), so it is not asserted.
    // Aged (as by the time a next build comes), every one is hashed once more, stamped, and
    // then trusted.
    let second = build(work, &indexes, &[]);
    assert_eq!(second.count("layers-installed"), 0);
    assert_eq!(second.count("layers-compressed"), 0);
    assert_eq!(second.layers, first.layers);
    assert_eq!(second.top, first.top);
    age_cached_blobs(work);
    let aged = build(work, &indexes, &[]);
    assert!(aged.count("blobs-hashed") > 0);
    let trusted = build(work, &indexes, &[]);
    assert_eq!(trusted.count("blobs-hashed"), 0);
    assert_eq!(trusted.count("layers-installed"), 0);
    assert_eq!(trusted.top, first.top);
    let verified = build(work, &indexes, &["--verify-layer-cache"]);
    // Every reused blob, a blob both platforms share included (once per platform).
    assert!(verified.count("blobs-hashed") >= aged.count("blobs-hashed"));
    assert_eq!(verified.top, first.top);

    // (b) A volatile-only bump: the volatile layer of each platform, nothing else.
    bump_frontend(work);
    let bumped = build(work, &indexes, &[]);
    assert_eq!(bumped.count("layers-installed"), 2);
    assert_eq!(bumped.count("layers-compressed"), 2);
    assert_eq!(
        bumped.changed_from(&second),
        [
            ("amd64".to_string(), "volatile".to_string()),
            ("arm64".to_string(), "volatile".to_string())
        ]
    );
    // The same inputs without the cache give the same bytes.
    let uncached = build(work, &indexes, &["--no-layer-cache"]);
    assert_eq!(uncached.count("layers-installed"), 8);
    assert_eq!(uncached.layers, bumped.layers);
    assert_eq!(uncached.top, bumped.top);

    // (c) A key input changed (the compression): every stack layer misses.
    let zstd = build(work, &indexes, &["--compression", "zstd"]);
    assert_eq!(zstd.count("layers-installed"), 8);
    assert!(zstd.count("layers-compressed") >= 8);
    assert_eq!(zstd.changed_from(&bumped).len(), zstd.layers.len());

    // Back to gzip: the blobs are reused, but the trees in OUT are zstd's build's: they are
    // installed again (OUT keeps every layer's tree), and nothing is compressed.
    let back = build(work, &indexes, &[]);
    assert_eq!(back.count("layers-installed"), 8);
    assert_eq!(back.count("layers-compressed"), 0);
    assert_eq!(back.top, bumped.top);

    // (d) A tampered blob (same size, other bytes) and a missing one are found out and
    // built again, to the same digests.
    let volatile = &bumped.layers[&("amd64".to_string(), "volatile".to_string())];
    let path = cached_blob(work, volatile);
    let len = std::fs::metadata(&path).unwrap().len() as usize;
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, vec![b'x'; len]).unwrap();
    let deps = &bumped.layers[&("arm64".to_string(), "deps".to_string())];
    std::fs::remove_file(cached_blob(work, deps)).unwrap();
    // Layers of both platforms may share a blob (pure-Python wheels give the same tar).
    let hit = bumped
        .layers
        .values()
        .filter(|d| *d == volatile || *d == deps)
        .count();
    assert!(hit >= 2);
    let healed = build(work, &indexes, &[]);
    assert_eq!(healed.count("layers-installed"), hit);
    assert_eq!(healed.count("layers-compressed"), hit);
    assert_eq!(healed.layers, bumped.layers);
    assert_eq!(healed.top, bumped.top);
    let again = build(work, &indexes, &[]);
    assert_eq!(again.count("layers-installed"), 0);
    assert_eq!(again.count("layers-compressed"), 0);
    assert_eq!(again.top, bumped.top);

    // (e) A standalone `install` into the build's OUT replaces a tree `build` had marked: the
    // next build installs that layer again (its blob still reused), not trusting the tree.
    let out = Command::new(env!("CARGO_BIN_EXE_comfypak"))
        .args([
            "install",
            "--quiet",
            "--layer",
            "volatile",
            "--platform",
            "x86_64",
            "--lock",
        ])
        .arg(work.join("pylock.toml"))
        .arg("--out")
        .arg(work.join("out/x86_64"))
        .current_dir(work)
        .env("COMFYPAK_CACHE_DIR", work.join("cache"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after_install = build(work, &indexes, &[]);
    assert_eq!(after_install.count("layers-installed"), 1);
    assert_eq!(after_install.count("layers-compressed"), 0);
    assert_eq!(after_install.top, bumped.top);
}

/// With a base, the key covers the bytecode switch and the base's interpreter: a
/// `--no-compile` build misses, and the compiled build after it reuses the compiled blobs
/// (its trees, the no-compile build's, are installed and compiled again; nothing compressed).
#[test]
fn with_a_base_the_bytecode_switch_is_part_of_the_key() {
    let Some(root) = super::runtime::debian_root() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    for sub in ["pak", "indexes"] {
        super::common::copy_tree(&repo().join(sub), &work.join(sub));
    }
    // One platform: the base is an x86_64 root.
    let manifest = work.join("pak/stack.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let one = text.replace(
        "platforms = [\"manylinux_2_39_x86_64\", \"manylinux_2_39_aarch64\"]",
        "platforms = [\"manylinux_2_39_x86_64\"]",
    );
    assert_ne!(one, text, "the shipped stack's platforms line moved");
    std::fs::write(&manifest, one).unwrap();
    let indexes = super::golden::write_indexes(&work.join("fixture-indexes"));
    let base = root.display().to_string();
    let with_base = ["--base", base.as_str()];

    let compiled = build(work, &indexes, &with_base);
    assert_eq!(compiled.count("layers-installed"), 4);
    assert_eq!(compiled.count("layers-compiled"), 4);
    let again = build(work, &indexes, &with_base);
    assert_eq!(again.count("layers-installed"), 0);
    assert_eq!(again.count("layers-compiled"), 0);
    assert_eq!(again.count("layers-compressed"), 0);
    assert_eq!(again.top, compiled.top);

    let mut plain_args = with_base.to_vec();
    plain_args.push("--no-compile");
    let plain = build(work, &indexes, &plain_args);
    assert_eq!(plain.count("layers-installed"), 4);
    assert_eq!(plain.count("layers-compiled"), 0);
    assert_ne!(plain.top, compiled.top);

    let back = build(work, &indexes, &with_base);
    assert_eq!(back.count("layers-installed"), 4);
    assert_eq!(back.count("layers-compiled"), 4);
    assert_eq!(back.count("layers-compressed"), 0);
    assert_eq!(back.layers, compiled.layers);
    assert_eq!(back.top, compiled.top);
}

/// Runs `comfypak cache ARGS` on the test's cache; (exit code, stdout + stderr).
fn cache_cmd(work: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_comfypak"))
        .arg("cache")
        .args(args)
        .env("COMFYPAK_CACHE_DIR", work.join("cache"))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Every file below `dir` (relative), sorted.
fn files_below(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(read) = std::fs::read_dir(dir) else {
            return;
        };
        for e in read.flatten() {
            let path = e.path();
            if e.file_type().unwrap().is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// `comfypak cache prune`: a dry run removes nothing; `--max-size 0` removes the wheels, the
/// unpacked wheels and the layer entries a newer entry of the same platform and layer
/// replaced (with the blobs only they named), and keeps the newest entries and their blobs,
/// so the next build still reuses every layer; `--include-newest` empties the layer cache and
/// the next build makes the same bytes again. A cache in use by another process is refused.
#[test]
fn cache_prune_keeps_the_newest_layer_entries_unless_told() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    for sub in ["pak", "indexes"] {
        super::common::copy_tree(&repo().join(sub), &work.join(sub));
    }
    let indexes = super::golden::write_indexes(&work.join("fixture-indexes"));
    let first = build(work, &indexes, &[]);
    bump_frontend(work);
    let bumped = build(work, &indexes, &[]);
    let old_volatile = &first.layers[&("amd64".to_string(), "volatile".to_string())];
    assert!(cached_blob(work, old_volatile).exists());

    let (code, info) = cache_cmd(work, &["info"]);
    assert_eq!(code, 0, "{info}");
    assert!(
        info.contains("wheels") && info.contains("layer cache"),
        "{info}"
    );
    assert!(
        info.contains("10 stack layer entries"),
        "8 + 2 replaced volatile: {info}"
    );

    let (code, text) = cache_cmd(work, &["prune"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("--max-size"), "{text}");

    let cache = work.join("cache");
    let before = files_below(&cache);
    let (code, text) = cache_cmd(work, &["prune", "--max-size", "0", "--dry-run"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.starts_with("would remove"), "{text}");
    assert_eq!(files_below(&cache), before, "a dry run removes nothing");
    let (code, text) = cache_cmd(work, &["prune", "--older-than", "1h"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.starts_with("removed nothing"), "{text}");

    // Another process using the cache (a build's session holds this lock shared).
    let lock = std::fs::File::open(cache.join("locks/prune.lock")).unwrap();
    lock.lock_shared().unwrap();
    let (code, text) = cache_cmd(work, &["prune", "--max-size", "0"]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("another comfypak process is using it"),
        "{text}"
    );
    drop(lock);

    let (code, text) = cache_cmd(work, &["prune", "--max-size", "0"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("newest layer cache entries)"), "{text}");
    let after = files_below(&cache);
    assert!(
        !after.iter().any(|f| f.starts_with("wheels/v1/")),
        "{after:?}"
    );
    assert!(
        !after.iter().any(|f| f.starts_with("unpacked/v2/")),
        "{after:?}"
    );
    assert_eq!(
        after
            .iter()
            .filter(|f| f.starts_with("layers/keys/"))
            .count(),
        8
    );
    assert!(!cached_blob(work, old_volatile).exists());
    let again = build(work, &indexes, &[]);
    assert_eq!(again.count("layers-installed"), 0);
    assert_eq!(again.count("layers-compressed"), 0);
    assert_eq!(again.top, bumped.top);

    let (code, text) = cache_cmd(work, &["prune", "--max-size", "0", "--include-newest"]);
    assert_eq!(code, 0, "{text}");
    let emptied = files_below(&cache.join("layers"));
    assert!(
        !emptied
            .iter()
            .any(|f| f.starts_with("keys/") || f.starts_with("blobs/")),
        "{emptied:?}"
    );
    let rebuilt = build(work, &indexes, &[]);
    assert!(rebuilt.count("layers-compressed") >= 8);
    assert_eq!(rebuilt.top, bumped.top);
}

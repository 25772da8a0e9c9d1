//! A layer per large distribution, end to end on the offline build of the shipped stack (the
//! fixture indexes as `file://` indexes, as tests/it/golden.rs builds it): with a threshold
//! low enough to cut the tiny fixture wheels, every package at or above it is alone in its
//! layer, in name order before its stack layer's rest; nothing is lost or doubled against
//! the unsplit layer; the digests do not depend on the thread count; a torch bump changes
//! exactly the layers of the packages whose wheels changed; and too many layers are refused.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::golden::write_indexes;
use comfypak::lock::Lock;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn comfypak(work: &Path, args: &[&str], threads: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_comfypak"))
        .args(args)
        .current_dir(work)
        .env("COMFYPAK_CACHE_DIR", work.join("cache"))
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env("RAYON_NUM_THREADS", threads)
        .output()
        .unwrap()
}

fn ok(output: Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what}: exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The shipped stack copied to `dir` (index definitions from the repository), with the
/// stable layer's pins replaced by `pins`.
fn stack_copy(dir: &Path, pins: &str) -> PathBuf {
    crate::common::copy_tree(&repo().join("pak"), dir);
    let manifest = dir.join("stack.toml");
    let text = std::fs::read_to_string(&manifest).unwrap().replace(
        "index-dir = \"../indexes\"",
        &format!(
            "index-dir = {:?}",
            repo().join("indexes").display().to_string()
        ),
    );
    std::fs::write(&manifest, text).unwrap();
    std::fs::write(dir.join("pak1.txt"), pins).unwrap();
    dir.to_path_buf()
}

/// `(architecture, image layer name, digest, (stack layer, distribution))` of a pack's JSON.
type Layers = Vec<(String, String, String)>;

fn layers_of(json: &str) -> Layers {
    let value: serde_json::Value = serde_json::from_str(json).unwrap();
    let mut out = Vec::new();
    for p in value["platforms"].as_array().unwrap() {
        for l in p["layers"].as_array().unwrap() {
            out.push((
                p["architecture"].as_str().unwrap().to_string(),
                l["name"].as_str().unwrap().to_string(),
                l["digest"].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

/// The non-directory paths of a gzip layer blob.
fn files_of(image: &Path, digest: &str) -> BTreeSet<String> {
    let hex = digest.strip_prefix("sha256:").unwrap();
    let file = std::fs::File::open(image.join("blobs/sha256").join(hex)).unwrap();
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut tar)
        .unwrap();
    let mut archive = tar::Archive::new(tar.as_slice());
    let mut out = BTreeSet::new();
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        if entry.header().entry_type() != tar::EntryType::Directory {
            out.insert(entry.path().unwrap().display().to_string());
        }
    }
    out
}

/// Packages of `layer` whose largest wheel is at least `threshold`, sorted.
fn large(lock: &Lock, layer: &str, threshold: u64) -> Vec<String> {
    let mut names: Vec<String> = lock
        .layer_packages(layer)
        .filter(|p| p.wheels.iter().filter_map(|w| w.size).max() >= Some(threshold))
        .map(|p| p.name.to_string())
        .collect();
    names.sort();
    names.dedup();
    names
}

fn pack(
    work: &Path,
    stack: &Path,
    lock: &Path,
    out: &str,
    threshold: &str,
    threads: &str,
) -> Layers {
    layers_of(&pack_json(work, stack, lock, out, threshold, threads, &[]))
}

/// `comfypak pack --json` with `extra` arguments; its output.
fn pack_json(
    work: &Path,
    stack: &Path,
    lock: &Path,
    out: &str,
    threshold: &str,
    threads: &str,
    extra: &[&str],
) -> String {
    let stack = stack.display().to_string();
    let lock = lock.display().to_string();
    let mut args = vec![
        "pack",
        "--stack",
        &stack,
        "--no-layer",
        "nodes",
        "--lock",
        &lock,
        "--out",
        "build",
        "--output",
        out,
        "--split-threshold",
        threshold,
        "--json",
    ];
    args.extend_from_slice(extra);
    ok(
        comfypak(work, &args, threads),
        &format!("pack --split-threshold {threshold} {extra:?}"),
    )
}

/// `(architecture, name, diff_id, media type)` of every layer of a pack's JSON and layout.
fn tars_of(json: &str, image: &Path) -> Vec<(String, String, String, String)> {
    let value: serde_json::Value = serde_json::from_str(json).unwrap();
    let mut out = Vec::new();
    for p in value["platforms"].as_array().unwrap() {
        let manifest: serde_json::Value = serde_json::from_slice(
            &std::fs::read(
                image.join("blobs/sha256").join(
                    p["manifest"]
                        .as_str()
                        .unwrap()
                        .strip_prefix("sha256:")
                        .unwrap(),
                ),
            )
            .unwrap(),
        )
        .unwrap();
        for (l, m) in p["layers"]
            .as_array()
            .unwrap()
            .iter()
            .zip(manifest["layers"].as_array().unwrap())
        {
            out.push((
                p["architecture"].as_str().unwrap().to_string(),
                l["name"].as_str().unwrap().to_string(),
                l["diff_id"].as_str().unwrap().to_string(),
                m["mediaType"].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

#[test]
fn large_distributions_get_their_own_layers_and_a_torch_bump_moves_only_theirs() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let indexes = write_indexes(&work.join("indexes"));
    let pins = std::fs::read_to_string(repo().join("pak/pak1.txt")).unwrap();
    let stack = stack_copy(&work.join("stack"), &pins);
    let stack_arg = stack.display().to_string();
    let mut args: Vec<&str> = vec![
        "build",
        "--stack",
        &stack_arg,
        "--no-layer",
        "nodes",
        "--lock",
        "pylock.toml",
        "--out",
        "build",
    ];
    args.extend(indexes.iter().map(String::as_str));
    let summary = ok(comfypak(work, &args, "2"), "build");
    // The default threshold leaves the tiny fixture wheels together: one layer per stack layer.
    assert!(!summary.contains("stable/"), "{summary}");
    let lock_path = work.join("pylock.toml");
    let lock = Lock::read(&lock_path).unwrap();

    // A torch bump (2.11 → 2.10 with its torchvision and torchaudio), built with the default
    // threshold; its layers are packed split further down.
    let bumped = stack_copy(
        &work.join("stack-bumped"),
        "torch==2.10.0\ntorchvision==0.25.0\ntorchaudio==2.10.0\n",
    );
    let bumped_arg = bumped.display().to_string();
    let mut args: Vec<&str> = vec![
        "build",
        "--stack",
        &bumped_arg,
        "--no-layer",
        "nodes",
        "--lock",
        "bumped.toml",
        "--out",
        "build-bumped",
    ];
    args.extend(indexes.iter().map(String::as_str));
    ok(comfypak(work, &args, "2"), "build after the bump");
    let new_lock = Lock::read(&work.join("bumped.toml")).unwrap();

    // A threshold at torch's wheel size (the smaller of the two locks') cuts torch and every
    // larger wheel out, in both images.
    let torch_of = |lock: &Lock| {
        lock.packages
            .iter()
            .filter(|p| p.name.as_ref() == "torch")
            .flat_map(|p| p.wheels.iter().filter_map(|w| w.size))
            .max()
            .unwrap()
    };
    let torch_size = torch_of(&lock).min(torch_of(&new_lock));
    let threshold = torch_size.to_string();
    let whole = pack(work, &stack, &lock_path, "whole", "off", "2");
    let split = pack(work, &stack, &lock_path, "split", &threshold, "2");
    let again = pack(work, &stack, &lock_path, "split1", &threshold, "1");
    assert_eq!(
        split, again,
        "the split's digests depend on the thread count"
    );
    assert!(whole.iter().all(|(_, name, _)| !name.contains('/')));

    let stack_layers = ["stable", "deps", "perf", "volatile"];
    for arch in ["amd64", "arm64"] {
        let names: Vec<&str> = split
            .iter()
            .filter(|(a, _, _)| a == arch)
            .map(|(_, n, _)| n.as_str())
            .collect();
        // Expected order: per stack layer, its large distributions by name, then the rest.
        let mut expected: Vec<String> = Vec::new();
        for layer in stack_layers {
            let site = work
                .join("build")
                .join(if arch == "amd64" { "x86_64" } else { "aarch64" })
                .join("layers")
                .join(layer)
                .join(crate::pack_support::SITE);
            let installed: Vec<String> = std::fs::read_dir(&site)
                .map(|d| {
                    d.map(|e| e.unwrap().file_name().to_string_lossy().to_lowercase())
                        .collect()
                })
                .unwrap_or_default();
            for name in large(&lock, layer, torch_size) {
                // A package a marker leaves out on this platform has no layer there.
                let prefix = format!("{}-", name.replace('-', "_"));
                if installed
                    .iter()
                    .any(|n| n.starts_with(&prefix) && n.ends_with(".dist-info"))
                {
                    expected.push(format!("{layer}/{name}"));
                }
            }
            expected.push(layer.to_string());
        }
        // image.toml's layers: its volumes, then its directories.
        expected.push("volumes".to_string());
        expected.push("runtime-config".to_string());
        assert_eq!(names, expected, "{arch}: layers or their order");
        assert!(names.contains(&"stable/torch"), "{names:?}");
        assert!(names.len() > 6 && names.len() <= 127);

        // Each stack layer's parts hold exactly the unsplit layer's files, each file once,
        // and a distribution's part holds only that distribution's dist-info.
        for layer in stack_layers {
            let (_, _, whole_digest) = whole
                .iter()
                .find(|(a, n, _)| a == arch && n == layer)
                .unwrap();
            let want = files_of(&work.join("whole"), whole_digest);
            let mut union: BTreeSet<String> = BTreeSet::new();
            for (_, name, digest) in split.iter().filter(|(a, n, _)| {
                a == arch && (n == layer || n.starts_with(&format!("{layer}/")))
            }) {
                let files = files_of(&work.join("split"), digest);
                let dist_infos: BTreeSet<String> = files
                    .iter()
                    .filter_map(|f| {
                        f.split('/')
                            .find(|c| c.ends_with(".dist-info"))
                            .map(String::from)
                    })
                    .collect();
                if let Some(distribution) = name.strip_prefix(&format!("{layer}/")) {
                    let prefix = format!("{}-", distribution.replace('-', "_"));
                    assert!(
                        dist_infos.len() == 1
                            && dist_infos
                                .iter()
                                .all(|d| d.to_lowercase().starts_with(&prefix)),
                        "{arch} {name}: dist-infos {dist_infos:?}"
                    );
                }
                for f in files {
                    assert!(union.insert(f.clone()), "{arch}: {f} is in two layers");
                }
            }
            assert_eq!(union, want, "{arch} {layer}: the split lost or added files");
        }
    }

    // zstd, split: the same tars (diff_ids) as gzip's, the zstd media type, and bytes that do
    // not depend on the thread count.
    let gzip_json = pack_json(work, &stack, &lock_path, "split-gz", &threshold, "2", &[]);
    let zstd = ["--compression", "zstd"];
    let z1 = pack_json(work, &stack, &lock_path, "zstd1", &threshold, "1", &zstd);
    let z2 = pack_json(work, &stack, &lock_path, "zstd2", &threshold, "2", &zstd);
    assert_eq!(
        layers_of(&z1),
        layers_of(&z2),
        "zstd digests depend on the thread count"
    );
    let gzip_tars = tars_of(&gzip_json, &work.join("split-gz"));
    let zstd_tars = tars_of(&z1, &work.join("zstd1"));
    assert_eq!(gzip_tars.len(), zstd_tars.len());
    for (g, z) in gzip_tars.iter().zip(&zstd_tars) {
        assert_eq!(
            (&g.0, &g.1, &g.2),
            (&z.0, &z.1, &z.2),
            "zstd and gzip tars differ"
        );
        assert_eq!(g.3, "application/vnd.oci.image.layer.v1.tar+gzip");
        assert_eq!(z.3, "application/vnd.oci.image.layer.v1.tar+zstd");
    }
    assert_ne!(layers_of(&z1), layers_of(&gzip_json));

    // The layers that change are exactly those of the packages whose wheels changed, and the
    // rest layers of stack layers where a package below the threshold changed.
    let bump_json = ok(
        comfypak(
            work,
            &[
                "pack",
                "--stack",
                &bumped_arg,
                "--no-layer",
                "nodes",
                "--lock",
                "bumped.toml",
                "--out",
                "build-bumped",
                "--output",
                "bumped-image",
                "--split-threshold",
                &threshold,
                "--json",
            ],
            "2",
        ),
        "pack after the bump",
    );
    let after = layers_of(&bump_json);
    let wheels = |lock: &Lock| -> BTreeMap<(String, String), BTreeSet<String>> {
        let mut map: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        for p in &lock.packages {
            map.entry((p.tool.comfypak.layer.clone(), p.name.to_string()))
                .or_default()
                .extend(p.wheels.iter().map(|w| w.name.to_string()));
        }
        map
    };
    let (old_wheels, new_wheels) = (wheels(&lock), wheels(&new_lock));
    let changed_packages: BTreeSet<&(String, String)> = old_wheels
        .keys()
        .chain(new_wheels.keys())
        .filter(|k| old_wheels.get(*k) != new_wheels.get(*k))
        .collect();
    assert!(
        changed_packages.contains(&("stable".to_string(), "torch".to_string())),
        "{changed_packages:?}"
    );
    let mut moved_any: BTreeSet<String> = BTreeSet::new();
    for arch in ["amd64", "arm64"] {
        let before: BTreeMap<&str, &str> = split
            .iter()
            .filter(|(a, _, _)| a == arch)
            .map(|(_, n, d)| (n.as_str(), d.as_str()))
            .collect();
        let now: BTreeMap<&str, &str> = after
            .iter()
            .filter(|(a, _, _)| a == arch)
            .map(|(_, n, d)| (n.as_str(), d.as_str()))
            .collect();
        let moved: BTreeSet<&str> = before
            .keys()
            .chain(now.keys())
            .filter(|n| before.get(*n) != now.get(*n))
            .copied()
            .collect();
        let expected: BTreeSet<String> = changed_packages
            .iter()
            .map(|(layer, name)| {
                let own = format!("{layer}/{name}");
                if before.contains_key(own.as_str()) || now.contains_key(own.as_str()) {
                    own
                } else {
                    layer.clone()
                }
            })
            .collect();
        let moved: BTreeSet<String> = moved.into_iter().map(String::from).collect();
        assert_eq!(moved, expected, "{arch}: the layers a torch bump changes");
        assert!(moved.contains("stable/torch"), "{arch}: {moved:?}");
        assert!(moved.iter().all(|n| !n.starts_with("stable/nvidia-cublas")));
        moved_any.extend(moved);
    }

    // `comfypak diff` predicts the same image layers from the two locks alone.
    let output = comfypak(
        work,
        &[
            "diff",
            "pylock.toml",
            "bumped.toml",
            "--format",
            "json",
            "--split-threshold",
            &threshold,
        ],
        "2",
    );
    assert_eq!(output.status.code(), Some(1), "diff exits 1 on changes");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let predicted: BTreeSet<String> = json["image_layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["changed"] == true)
        .map(|l| l["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        predicted, moved_any,
        "diff's image layers against pack's digests"
    );
    let names: Vec<&str> = json["image_layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    let packed: Vec<&str> = after
        .iter()
        .filter(|(a, n, _)| a == "amd64" && n != "volumes" && n != "runtime-config")
        .map(|(_, n, _)| n.as_str())
        .collect();
    let split_amd64: Vec<&str> = split
        .iter()
        .filter(|(a, n, _)| a == "amd64" && n != "volumes" && n != "runtime-config")
        .map(|(_, n, _)| n.as_str())
        .collect();
    assert_eq!(names, packed, "diff names the image layers in pack's order");
    assert_eq!(names, split_amd64, "the bump keeps the same image layers");
    let text = comfypak(
        work,
        &[
            "diff",
            "pylock.toml",
            "bumped.toml",
            "--split-threshold",
            &threshold,
        ],
        "2",
    );
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("image layers:") && text.contains("stable/torch"),
        "{text}"
    );

    // Beyond 127 layers: refused, saying what to change.
    let output = comfypak(
        work,
        &[
            "pack",
            "--stack",
            &stack_arg,
            "--no-layer",
            "nodes",
            "--lock",
            "pylock.toml",
            "--out",
            "build",
            "--output",
            "too-many",
            "--split-threshold",
            "1",
        ],
        "2",
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("more than the 127") && stderr.contains("--split-threshold"),
        "{stderr}"
    );
    assert!(!work.join("too-many").exists());
}

#[test]
fn the_stack_sets_the_threshold_and_a_bad_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let pins = std::fs::read_to_string(repo().join("pak/pak1.txt")).unwrap();
    let stack = stack_copy(&dir.path().join("stack"), &pins);
    let manifest = stack.join("stack.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    assert_eq!(
        comfypak::stack::Stack::load(&stack)
            .unwrap()
            .split_threshold,
        None
    );
    for (value, want) in [
        ("\"100MB\"", Some(Some(100_000_000))),
        ("\"off\"", Some(None)),
    ] {
        std::fs::write(
            &manifest,
            format!("{text}\n[pack]\nsplit-threshold = {value}\n"),
        )
        .unwrap();
        assert_eq!(
            comfypak::stack::Stack::load(&stack)
                .unwrap()
                .split_threshold,
            want
        );
    }
    std::fs::write(
        &manifest,
        format!("{text}\n[pack]\nsplit-threshold = \"12 parsecs\"\n"),
    )
    .unwrap();
    let error = comfypak::stack::Stack::load(&stack).unwrap_err();
    let shown = format!("{error} {}", error.help().unwrap_or_default());
    assert!(
        shown.contains("pack.split-threshold")
            && shown.contains("parsecs")
            && shown.contains("32MiB"),
        "{shown}"
    );
}

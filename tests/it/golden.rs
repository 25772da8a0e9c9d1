//! Golden digests: the offline build of the shipped stack (what `scripts/build-offline.sh`
//! does, `SOURCE_DATE_EPOCH=1700000000`, `--no-layer nodes`, the fixture indexes written to
//! disk by the testkit's writer and used as `file://` indexes) must give exactly the image
//! index digest and layer digests committed below, whatever the thread count and the umask of
//! the build.
//!
//! Any change to the bytes of an image fails here. When a change of bytes is intended, copy
//! the values the failure prints into `GOLDEN_INDEX` / `GOLDEN_LAYERS` in the same commit,
//! and say in that commit message why the bytes changed.

use std::path::{Path, PathBuf};
use std::process::Command;

use comfypak_testkit::FixtureIndex;

/// The image index digest of the offline build (`image index sha256:...` in its summary).
const GOLDEN_INDEX: &str =
    "sha256:be31b293390df7f9e2682bc6ad1dbc6456e6f10be2e962c2cf511aba7815fb30";

/// Every layer of every platform manifest, in manifest order: (architecture, layer name from
/// the `io.comfypak.layer` annotation, digest).
const GOLDEN_LAYERS: &[(&str, &str, &str)] = &[
    (
        "amd64",
        "stable",
        "sha256:1b357c0c1c9d015e4973986b1f877050b1570b3344a90f50ac8ce4faeb0613d3",
    ),
    (
        "amd64",
        "deps",
        "sha256:09187b8aa82f76cfc3cafce5b1c1c0cc1feb5a2f60a63a5a11b7eaba8a382755",
    ),
    (
        "amd64",
        "perf",
        "sha256:54a5e5c820b72b4a6579fce6f0859c8d83592fff3139014cb00f95c95f07bbf6",
    ),
    (
        "amd64",
        "volatile",
        "sha256:1578bdd91b1e37e80e477f5fdc52c51ecc08cbeea0e5c0ea3964f1bce173b775",
    ),
    (
        "amd64",
        "volumes",
        "sha256:56c5b00392f884b6e34ab22fe5cd713f70ace6ef2a4f53c36e3fdd1ac77abfe3",
    ),
    (
        "amd64",
        "runtime-config",
        "sha256:9456ffe57feee151ec33270f8a97822557c4884d6d7d020face064ea27ba64f0",
    ),
    (
        "arm64",
        "stable",
        "sha256:21d142876528b6b63eae917b416ca915c946ca1538ef4d73b86a47e19a9a2212",
    ),
    (
        "arm64",
        "deps",
        "sha256:fc6a62af1a2e4d01289553d088ef9ebc670031b7fa7f615d7b38f13a45fa3b98",
    ),
    (
        "arm64",
        "perf",
        "sha256:39efe8c4ddaef2515771a5231b27cad4fa1e63fd64b56a38ee294f0993319086",
    ),
    (
        "arm64",
        "volatile",
        "sha256:1578bdd91b1e37e80e477f5fdc52c51ecc08cbeea0e5c0ea3964f1bce173b775",
    ),
    (
        "arm64",
        "volumes",
        "sha256:56c5b00392f884b6e34ab22fe5cd713f70ace6ef2a4f53c36e3fdd1ac77abfe3",
    ),
    (
        "arm64",
        "runtime-config",
        "sha256:9456ffe57feee151ec33270f8a97822557c4884d6d7d020face064ea27ba64f0",
    ),
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What one build produced: the image index digest and every layer, as in `GOLDEN_LAYERS`.
#[derive(Debug, PartialEq)]
struct Digests {
    index: String,
    layers: Vec<(String, String, String)>,
}

impl Digests {
    /// The Rust text to paste over `GOLDEN_INDEX` and `GOLDEN_LAYERS`.
    fn as_source(&self) -> String {
        let mut text = format!("const GOLDEN_INDEX: &str =\n    {:?};\n\n", self.index);
        text.push_str("const GOLDEN_LAYERS: &[(&str, &str, &str)] = &[\n");
        for (arch, name, digest) in &self.layers {
            text.push_str(&format!("    ({arch:?}, {name:?}, {digest:?}),\n"));
        }
        text.push_str("];\n");
        text
    }
}

fn golden() -> Digests {
    Digests {
        index: GOLDEN_INDEX.to_string(),
        layers: GOLDEN_LAYERS
            .iter()
            .map(|(a, n, d)| (a.to_string(), n.to_string(), d.to_string()))
            .collect(),
    }
}

fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn blob(image: &Path, digest: &str) -> serde_json::Value {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    read_json(&image.join("blobs/sha256").join(hex))
}

fn text(value: &serde_json::Value) -> String {
    value.as_str().expect("a string").to_string()
}

/// Reads the digests of an OCI layout written by `comfypak build`.
fn digests_of(image: &Path) -> Digests {
    let top = read_json(&image.join("index.json"));
    let index = text(&top["manifests"][0]["digest"]);
    let mut layers = Vec::new();
    for manifest in blob(image, &index)["manifests"]
        .as_array()
        .expect("manifests")
    {
        let arch = text(&manifest["platform"]["architecture"]);
        let manifest = blob(image, &text(&manifest["digest"]));
        for layer in manifest["layers"].as_array().expect("layers") {
            layers.push((
                arch.clone(),
                text(&layer["annotations"]["io.comfypak.layer"]),
                text(&layer["digest"]),
            ));
        }
    }
    Digests { index, layers }
}

/// Writes the three fixture indexes as `scripts/build-offline.sh` does
/// (`comfypak-fixtures write SPEC OUT`) and returns the `--index` arguments.
pub(super) fn write_indexes(dir: &Path) -> Vec<String> {
    let specs = [
        ("pypi-snapshot.json", "pypi", "simple/"),
        ("pytorch-cu130.json", "pytorch-cu130", "simple/"),
        ("perf-wheels.json", "perf-wheels", "files/"),
    ];
    let mut args = Vec::new();
    for (spec, name, sub) in specs {
        let index = FixtureIndex::load(repo().join("fixtures/indexes").join(spec)).unwrap();
        let out = dir.join(name);
        index.write_simple_tree(&out).unwrap();
        index.write_find_links_page(&out).unwrap();
        args.push("--index".to_string());
        args.push(format!("{name}=file://{}/{sub}", out.display()));
    }
    args
}

/// One offline build in a fresh cache, run under `umask` with `threads` rayon threads.
fn build(work: &Path, indexes: &[String], threads: &str, umask: &str) -> Digests {
    std::fs::create_dir_all(work).unwrap();
    let out = work.join("build");
    // `sh` sets the umask, then execs the binary: the umask is the process's own, as a user's.
    let output = Command::new("sh")
        .arg("-c")
        .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_comfypak"))
        .args(["build", "--stack", "pak", "--no-layer", "nodes", "--lock"])
        .arg(work.join("pylock.toml"))
        .arg("--out")
        .arg(&out)
        .args(indexes)
        .current_dir(repo())
        .env("COMFYPAK_CACHE_DIR", work.join("cache"))
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env("RAYON_NUM_THREADS", threads)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "build with RAYON_NUM_THREADS={threads}, umask {umask}: exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = String::from_utf8_lossy(&output.stdout);
    let found = digests_of(&out.join("image"));
    assert!(
        summary.contains(&format!("image index {}", found.index)),
        "the summary does not name the image index of the layout ({}):\n{summary}",
        found.index
    );
    found
}

#[test]
fn offline_build_gives_the_golden_digests_for_any_thread_count_and_umask() {
    let dir = tempfile::tempdir().unwrap();
    let indexes = write_indexes(&dir.path().join("indexes"));
    // The golden values come from a default build (all cores, umask 022); each variant changes
    // both the thread count and the umask, so either one changing the bytes fails here.
    let variants = [("1", "022"), ("16", "077")];
    let results: Vec<((&str, &str), Digests)> = std::thread::scope(|scope| {
        let handles: Vec<_> = variants
            .iter()
            .map(|&(threads, umask)| {
                let work = dir.path().join(format!("t{threads}-u{umask}"));
                let indexes = &indexes;
                scope.spawn(move || ((threads, umask), build(&work, indexes, threads, umask)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let want = golden();
    for ((threads, umask), found) in &results {
        assert!(
            *found == want,
            "the offline build (RAYON_NUM_THREADS={threads}, umask {umask}) no longer gives the \
             golden digests.\n\
             If the bytes of the image were meant to change, replace GOLDEN_INDEX and \
             GOLDEN_LAYERS in tests/it/golden.rs with the values below, in the same commit, and \
             say in the commit message why the bytes changed. If not, this is a reproducibility \
             bug: find what made the bytes differ.\n\
             expected:\n{}\nfound:\n{}",
            want.as_source(),
            found.as_source()
        );
    }
}

//! Real image tools read what `comfypak pack` writes: `skopeo inspect` / `skopeo copy`,
//! `umoci unpack` (the rootfs equals the union of the layer folders), and
//! `oci-image-tool validate`. CI installs them (.ci/setup.d/40-image-tools.sh); with
//! `CI=true` a missing tool fails the test, elsewhere the test prints a note and skips.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::pack_support::*;
use comfypak::pack::OutputFormat;

/// What a tree holds, path → (kind, bytes or link target, executable).
fn tree_snapshot(root: &Path) -> BTreeMap<String, (char, Vec<u8>, bool)> {
    let mut out = BTreeMap::new();
    for path in walk(root) {
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let meta = fs::symlink_metadata(&path).unwrap();
        let entry = if meta.file_type().is_symlink() {
            (
                'l',
                fs::read_link(&path)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
                    .into_bytes(),
                false,
            )
        } else if meta.is_dir() {
            ('d', Vec::new(), false)
        } else {
            (
                'f',
                fs::read(&path).unwrap(),
                meta.permissions().mode() & 0o111 != 0,
            )
        };
        out.insert(rel, entry);
    }
    out
}

fn packed(dir: &Path) -> std::path::PathBuf {
    let stack = write_stack(&dir.join("pak"), &["manylinux_2_39_x86_64"]);
    write_layers(&dir.join("build/layers"), "1", false);
    let out = dir.join("img");
    PackSetup::new(&stack, dir.join("build/layers"), out.clone()).run();
    out
}

#[test]
fn pack_tools_skopeo_inspects_and_copies_the_layout() {
    let Some(skopeo) = tool("skopeo") else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = packed(dir.path());
    let inspect = run_ok(
        Command::new(&skopeo)
            .arg("inspect")
            .arg(format!("oci:{}:latest", out.display())),
    );
    let json: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(json["Architecture"], "amd64");
    assert_eq!(json["Os"], "linux");
    assert_eq!(json["Layers"].as_array().unwrap().len(), 4);
    assert_eq!(json["Created"], "2023-11-14T22:13:20Z");

    let archive = dir.path().join("copy.tar");
    run_ok(
        Command::new(&skopeo)
            .arg("copy")
            .arg(format!("oci:{}:latest", out.display()))
            .arg(format!(
                "docker-archive:{}:comfyui:latest",
                archive.display()
            )),
    );
    assert!(fs::metadata(&archive).unwrap().len() > 0);
    // The layout skopeo writes back from that archive has the same diff_ids.
    let back = dir.path().join("back");
    run_ok(
        Command::new(&skopeo)
            .arg("copy")
            .arg(format!("docker-archive:{}", archive.display()))
            .arg(format!("oci:{}:latest", back.display())),
    );
    let config = |layout: &Path| -> serde_json::Value {
        serde_json::from_str(&run_ok(
            Command::new(&skopeo)
                .args(["inspect", "--config"])
                .arg(format!("oci:{}:latest", layout.display())),
        ))
        .unwrap()
    };
    assert_eq!(config(&out)["rootfs"], config(&back)["rootfs"]);
}

#[test]
fn pack_tools_skopeo_reads_our_docker_archive_and_multiarch_index() {
    let Some(skopeo) = tool("skopeo") else { return };
    let dir = tempfile::tempdir().unwrap();
    let stack = write_stack(
        &dir.path().join("pak"),
        &["manylinux_2_39_x86_64", "manylinux_2_39_aarch64"],
    );
    write_layers(&dir.path().join("build/layers"), "1", false);
    let archive = dir.path().join("image.tar");
    let mut setup = PackSetup::new(&stack, dir.path().join("build/layers"), archive.clone());
    setup.format = OutputFormat::DockerArchive;
    let image = setup.run();
    let inspect: serde_json::Value = serde_json::from_str(&run_ok(
        Command::new(&skopeo)
            .arg("inspect")
            .arg(format!("docker-archive:{}", archive.display())),
    ))
    .unwrap();
    assert_eq!(inspect["Architecture"], "amd64");
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 4);
    // skopeo re-imports it into an OCI layout with the same config (same diff_ids).
    let reimport = dir.path().join("reimport");
    run_ok(
        Command::new(&skopeo)
            .arg("copy")
            .arg(format!("docker-archive:{}", archive.display()))
            .arg(format!("oci:{}:latest", reimport.display())),
    );
    let config: serde_json::Value = serde_json::from_str(&run_ok(
        Command::new(&skopeo)
            .args(["inspect", "--config"])
            .arg(format!("oci:{}:latest", reimport.display())),
    ))
    .unwrap();
    let diff_ids: Vec<String> = image.platforms[0]
        .layers
        .iter()
        .map(|l| l.diff_id.clone())
        .collect();
    assert_eq!(config["rootfs"]["diff_ids"], serde_json::json!(diff_ids));

    // Multi-arch: skopeo picks each platform out of the index.
    let out = dir.path().join("multi");
    let mut multi = PackSetup::new(&stack, dir.path().join("build/layers"), out.clone());
    multi
        .layer_dirs
        .push(("aarch64", dir.path().join("build/layers")));
    multi.run();
    for arch in ["amd64", "arm64"] {
        let inspect: serde_json::Value = serde_json::from_str(&run_ok(
            Command::new(&skopeo)
                .args(["--override-arch", arch, "--override-os", "linux", "inspect"])
                .arg(format!("oci:{}:latest", out.display())),
        ))
        .unwrap();
        assert_eq!(inspect["Architecture"], arch);
    }
    let raw: serde_json::Value = serde_json::from_str(&run_ok(
        Command::new(&skopeo)
            .args(["inspect", "--raw"])
            .arg(format!("oci:{}:latest", out.display())),
    ))
    .unwrap();
    assert_eq!(raw["mediaType"], "application/vnd.oci.image.index.v1+json");
    assert_eq!(raw["manifests"].as_array().unwrap().len(), 2);
}

#[test]
fn pack_tools_umoci_unpacks_the_union_of_the_layer_folders() {
    let Some(umoci) = tool("umoci") else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = packed(dir.path());
    let bundle = dir.path().join("bundle");
    run_ok(
        Command::new(&umoci)
            .args(["unpack", "--rootless", "--image"])
            .arg(format!("{}:latest", out.display()))
            .arg(&bundle),
    );
    let rootfs = tree_snapshot(&bundle.join("rootfs"));
    let mut union = BTreeMap::new();
    for layer in LAYERS {
        union.extend(tree_snapshot(&dir.path().join("build/layers").join(layer)));
    }
    assert_eq!(
        rootfs.keys().collect::<Vec<_>>(),
        union.keys().collect::<Vec<_>>()
    );
    for (path, expected) in &union {
        assert_eq!(&rootfs[path], expected, "{path}");
    }
    // Hard links stay hard links after unpacking.
    use std::os::unix::fs::MetadataExt;
    let pkg = bundle.join("rootfs").join(SITE).join("deps_pkg");
    assert_eq!(
        fs::metadata(pkg.join("data_link.bin")).unwrap().ino(),
        fs::metadata(pkg.join("sub/deeper/data.bin")).unwrap().ino()
    );
}

#[test]
fn pack_tools_oci_image_tool_validates_the_layout() {
    let Some(validator) = tool("oci-image-tool") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = packed(dir.path());
    let report = run_ok(
        Command::new(&validator)
            .args(["validate", "--type", "image", "--ref", "name=latest"])
            .arg(&out),
    );
    assert!(report.contains("succeeded"), "{report}");
    // Each JSON blob against its schema too.
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap();
    let blob = |digest: &str| out.join("blobs/sha256").join(&digest[7..]);
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(blob(manifest_digest)).unwrap()).unwrap();
    for (kind, path) in [
        ("imageIndex", out.join("index.json")),
        ("manifest", blob(manifest_digest)),
        (
            "config",
            blob(manifest["config"]["digest"].as_str().unwrap()),
        ),
    ] {
        let report = run_ok(
            Command::new(&validator)
                .args(["validate", "--type", kind])
                .arg(&path),
        );
        assert!(report.contains("succeeded"), "{kind}: {report}");
    }
}

//! `comfypak pack`: byte-reproducible layers (other folders, times, umask), only the changed
//! layer's digest moves, the tar rules as GNU tar reads them, gzip/zstd, base images,
//! multi-arch indexes, directory layers from image.toml, the reuse report, docker archives.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::pack_support::*;
use comfypak::pack::oci::{Index, Manifest};
use comfypak::pack::{Compression, OutputFormat, Reuse};

fn read_json<T: serde::de::DeserializeOwned>(layout: &Path, digest: &str) -> T {
    let hex = digest.strip_prefix("sha256:").unwrap();
    serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(hex)).unwrap()).unwrap()
}

fn blob(layout: &Path, digest: &str) -> std::path::PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap())
}

#[test]
fn pack_is_reproducible_across_folders_times_and_umask() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let stack_a = write_stack(&a.path().join("pak"), &["manylinux_2_39_x86_64"]);
    let stack_b = write_stack(
        &b.path().join("somewhere/else/pak"),
        &["manylinux_2_39_x86_64"],
    );
    write_layers(&a.path().join("build/layers"), "1", false);
    set_mtimes(&a.path().join("build"), 1_000_000);
    // The second tree: created under a strict umask, modes as that umask leaves them, other times.
    let old = unsafe { libc::umask(0o077) };
    write_layers(&b.path().join("out/layers"), "1", true);
    unsafe { libc::umask(old) };
    set_mtimes(&b.path().join("out"), 1_900_000_000);

    let first = PackSetup::new(
        &stack_a,
        a.path().join("build/layers"),
        a.path().join("img"),
    )
    .run();
    // The second pack runs in another second of the clock, so a timestamp taken from the
    // clock instead of SOURCE_DATE_EPOCH would show.
    wait_for_the_next_second();
    let second = PackSetup::new(
        &stack_b,
        b.path().join("out/layers"),
        b.path().join("x/image"),
    )
    .run();

    assert_eq!(layer_digests(&first, 0), layer_digests(&second, 0));
    assert_eq!(first.platforms[0].manifest, second.platforms[0].manifest);
    assert_eq!(
        layout_fingerprint(&a.path().join("img")),
        layout_fingerprint(&b.path().join("x/image"))
    );
    // Every blob, byte for byte.
    for name in layout_fingerprint(&a.path().join("img")).0 {
        assert_eq!(
            fs::read(a.path().join("img/blobs/sha256").join(&name)).unwrap(),
            fs::read(b.path().join("x/image/blobs/sha256").join(&name)).unwrap(),
            "blob {name}"
        );
    }
    // And packing again into the same place gives the same bytes again.
    let again = PackSetup::new(
        &stack_a,
        a.path().join("build/layers"),
        a.path().join("img"),
    )
    .run();
    assert_eq!(layer_digests(&first, 0), layer_digests(&again, 0));
    // No stray temporary files.
    assert!(fs::read_dir(a.path().join("img/blobs/sha256"))
        .unwrap()
        .all(|e| !e.unwrap().file_name().to_string_lossy().starts_with('.')));
}

#[test]
fn a_volatile_change_moves_only_the_volatile_layer() {
    let dir = tempfile::tempdir().unwrap();
    let stack = write_stack(&dir.path().join("pak"), &["manylinux_2_39_x86_64"]);
    let layers = dir.path().join("build/layers");
    write_layers(&layers, "1", false);
    let before = PackSetup::new(&stack, layers.clone(), dir.path().join("v1")).run();
    assert!(before.platforms[0]
        .layers
        .iter()
        .all(|l| l.reuse == Reuse::Unknown));

    fs::write(
        layers
            .join("volatile")
            .join(SITE)
            .join("volatile_pkg/version.py"),
        "VERSION = '2'\n",
    )
    .unwrap();
    let mut setup = PackSetup::new(&stack, layers.clone(), dir.path().join("v2"));
    setup.previous = Some(dir.path().join("v1"));
    let after = setup.run();

    let (old, new) = (layer_digests(&before, 0), layer_digests(&after, 0));
    for layer in LAYERS {
        if layer == "volatile" {
            assert_ne!(old[layer], new[layer]);
        } else {
            assert_eq!(old[layer], new[layer], "layer {layer} must not change");
        }
    }
    for l in &after.platforms[0].layers {
        let expected = if l.name == "volatile" {
            Reuse::Changed
        } else {
            Reuse::Identical
        };
        assert_eq!(l.reuse, expected, "{}", l.name);
    }
    // A push after v1 sends the volatile layer, the config and the manifest.
    assert_eq!(after.push_blobs, 3);
    let volatile = after.platforms[0]
        .layers
        .iter()
        .find(|l| l.name == "volatile")
        .unwrap();
    assert_eq!(
        after.push_bytes,
        volatile.descriptor.size
            + after.platforms[0].config.size
            + after.platforms[0].manifest.size
    );
}

#[test]
fn layer_tars_follow_the_rules_as_gnu_tar_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let stack = write_stack(&dir.path().join("pak"), &["manylinux_2_39_x86_64"]);
    let layers = dir.path().join("build/layers");
    write_layers(&layers, "1", true);
    let out = dir.path().join("img");
    let image = PackSetup::new(&stack, layers.clone(), out.clone()).run();
    let deps = &image.platforms[0].layers[1];
    assert_eq!(deps.name, "deps");
    let blob_path = blob(&out, &deps.descriptor.digest);

    // Fixed gzip header: no FNAME flag, mtime 0.
    let bytes = fs::read(&blob_path).unwrap();
    assert_eq!(&bytes[..3], &[0x1f, 0x8b, 8]);
    assert_eq!(bytes[3], 0, "no gzip flags (no name, no comment)");
    assert_eq!(&bytes[4..8], &[0, 0, 0, 0], "gzip mtime 0");

    let listing = run_ok(
        Command::new("tar")
            .args(["--numeric-owner", "--full-time", "-tvzf"])
            .arg(&blob_path)
            .env("TZ", "UTC"),
    );
    let lines: Vec<&str> = listing.lines().collect();
    let names: Vec<&str> = lines
        .iter()
        .map(|l| l.split_whitespace().nth(5).unwrap())
        .collect();
    // Parents first, every parent present.
    assert_eq!(&names[..3], &["opt/", "opt/comfyui/", "opt/comfyui/venv/"]);
    for name in &names {
        let trimmed = name.trim_end_matches('/');
        if let Some((parent, _)) = trimmed.rsplit_once('/') {
            assert!(
                names.contains(&format!("{parent}/").as_str()),
                "{name}: parent {parent}/ missing"
            );
        }
    }
    let line_of = |suffix: &str| {
        *lines
            .iter()
            .find(|l| l.split_whitespace().nth(5).unwrap().ends_with(suffix))
            .unwrap_or_else(|| panic!("no entry ending in {suffix}:\n{listing}"))
    };
    for line in &lines {
        assert!(line.contains(" 0/0 "), "owner not 0/0: {line}");
        assert!(
            line.contains("2023-11-14 22:13:20"),
            "mtime not SOURCE_DATE_EPOCH: {line}"
        );
    }
    assert!(line_of("deps_pkg/__init__.py").starts_with("-rw-r--r--"));
    assert!(line_of("deps_pkg/_native.so").starts_with("-rwxr-xr-x"));
    assert!(line_of("bin/deps-tool").starts_with("-rwxr-xr-x"));
    assert!(line_of("deps_pkg/empty_dir/").starts_with("drwxr-xr-x"));
    let symlink = line_of("deps_pkg/data_symlink");
    assert!(
        symlink.starts_with("lrwxrwxrwx") && symlink.ends_with("-> sub/deeper/data.bin"),
        "{symlink}"
    );
    // The hard link is a tar hard link to the name that comes first in order.
    let link = line_of("deps_pkg/sub/deeper/data.bin");
    assert!(
        link.starts_with("hrw-r--r--")
            && link.ends_with(&format!("link to {SITE}/deps_pkg/data_link.bin")),
        "{link}"
    );
    // Long names survive (ustar prefix or PAX path), and are complete.
    let long = format!("{}/{}/{}", "d".repeat(90), "e".repeat(90), "g".repeat(99));
    assert!(names.iter().any(|n| n.ends_with(&long)), "{listing}");
    // No PAX timestamps or xattrs: the only PAX records are paths.
    let tar_bytes = run_ok(Command::new("sh").arg("-c").arg(format!(
        "gzip -dc {} | strings | grep -E '(mtime|atime|ctime|SCHILY|LIBARCHIVE)=' || true",
        blob_path.display()
    )));
    assert_eq!(tar_bytes.trim(), "");

    // GNU tar extracts the same files.
    let x = dir.path().join("extract");
    fs::create_dir_all(&x).unwrap();
    run_ok(
        Command::new("tar")
            .arg("-xzf")
            .arg(&blob_path)
            .arg("-C")
            .arg(&x),
    );
    let a = fs::read(
        layers
            .join("deps")
            .join(SITE)
            .join(format!("deps_pkg/{long}")),
    )
    .unwrap();
    let b = fs::read(x.join(SITE).join(format!("deps_pkg/{long}"))).unwrap();
    assert_eq!(a, b);

    // diff_id is the sha256 of the uncompressed tar.
    let sum = run_ok(
        Command::new("sh")
            .arg("-c")
            .arg(format!("gzip -dc {} | sha256sum", blob_path.display())),
    );
    assert_eq!(
        format!("sha256:{}", sum.split_whitespace().next().unwrap()),
        deps.diff_id
    );
}

#[test]
fn zstd_layers_decompress_to_the_same_tar() {
    let dir = tempfile::tempdir().unwrap();
    let stack = write_stack(&dir.path().join("pak"), &["manylinux_2_39_x86_64"]);
    let layers = dir.path().join("build/layers");
    write_layers(&layers, "1", false);
    let gz = PackSetup::new(&stack, layers.clone(), dir.path().join("gz")).run();
    let mut setup = PackSetup::new(&stack, layers.clone(), dir.path().join("zst"));
    setup.compression = Compression::Zstd { level: 3 };
    let zst = setup.run();
    let zst_again = setup.run();
    for (g, z) in gz.platforms[0].layers.iter().zip(&zst.platforms[0].layers) {
        assert_eq!(g.diff_id, z.diff_id, "same tar whatever the compression");
        assert_ne!(g.descriptor.digest, z.descriptor.digest);
        assert_eq!(
            z.descriptor.media_type,
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
    }
    assert_eq!(layer_digests(&zst, 0), layer_digests(&zst_again, 0));
    let z = &zst.platforms[0].layers[0];
    let sum = run_ok(Command::new("sh").arg("-c").arg(format!(
        "zstd -dc {} | sha256sum",
        blob(&dir.path().join("zst"), &z.descriptor.digest).display()
    )));
    assert_eq!(
        format!("sha256:{}", sum.split_whitespace().next().unwrap()),
        z.diff_id
    );
}

#[test]
fn config_manifest_and_history_describe_the_stack() {
    let dir = tempfile::tempdir().unwrap();
    let stack = write_stack(&dir.path().join("pak"), &["manylinux_2_39_x86_64"]);
    let app = dir.path().join("ComfyUI");
    fs::create_dir_all(app.join(".git")).unwrap();
    fs::write(app.join(".git/HEAD"), "ref: x\n").unwrap();
    fs::write(app.join("main.py"), "print('comfy')\n").unwrap();
    fs::write(
        stack.join("image.toml"),
        r#"
[image]
entrypoint = ["/opt/comfyui/venv/bin/python", "main.py"]
cmd = ["--listen", "0.0.0.0"]
workdir = "/opt/comfyui/app"
env = { COMFYUI_PORT = "8188" }
user = "1000:1001"
volumes = ["/models", "/data/", "/srv/comfy/output"]

[[directory]]
name = "app"
source = "../ComfyUI"
path = "/opt/comfyui/app"
exclude = [".git"]
"#,
    )
    .unwrap();
    let layers = dir.path().join("build/layers");
    write_layers(&layers, "1", false);
    let out = dir.path().join("img");
    let image = PackSetup::new(&stack, layers, out.clone()).run();
    let p = &image.platforms[0];
    let names: Vec<&str> = p.layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(
        names,
        ["stable", "deps", "perf", "volatile", "volumes", "app"]
    );

    let index: Index = serde_json::from_slice(&fs::read(out.join("index.json")).unwrap()).unwrap();
    assert_eq!(index.manifests.len(), 1);
    assert_eq!(index.manifests[0].digest, p.manifest.digest);
    assert_eq!(
        index.manifests[0].annotations["org.opencontainers.image.ref.name"],
        "latest"
    );
    assert_eq!(
        fs::read_to_string(out.join("oci-layout")).unwrap(),
        r#"{"imageLayoutVersion":"1.0.0"}"#
    );
    let manifest: Manifest = read_json(&out, &p.manifest.digest);
    assert_eq!(
        manifest.annotations["org.opencontainers.image.created"],
        "2023-11-14T22:13:20Z"
    );
    assert_eq!(
        manifest.layers[4].annotations["io.comfypak.layer"],
        "volumes"
    );
    assert_eq!(manifest.layers[5].annotations["io.comfypak.layer"], "app");
    let config: serde_json::Value = read_json(&out, &p.config.digest);
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["os"], "linux");
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
    let env: Vec<&str> = config["config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(env.contains(
        &"PATH=/opt/comfyui/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    ));
    assert!(env.contains(&"VIRTUAL_ENV=/opt/comfyui/venv"));
    assert!(env.contains(&"COMFYUI_PORT=8188"));
    assert_eq!(config["config"]["WorkingDir"], "/opt/comfyui/app");
    assert_eq!(config["config"]["Cmd"][0], "--listen");
    assert_eq!(config["config"]["User"], "1000:1001");
    assert_eq!(
        config["config"]["Volumes"],
        serde_json::json!({"/data": {}, "/models": {}, "/srv/comfy/output": {}})
    );
    let diff_ids: Vec<&str> = config["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        diff_ids,
        p.layers
            .iter()
            .map(|l| l.diff_id.as_str())
            .collect::<Vec<_>>()
    );
    let history = config["history"].as_array().unwrap();
    assert_eq!(history.len(), 6);
    assert_eq!(
        history[1]["created_by"],
        "comfypak pack: layer deps (pak2.txt)"
    );
    assert_eq!(
        history[4]["created_by"],
        "comfypak pack: volumes /data /models /srv/comfy/output"
    );
    assert!(history[5]["created_by"]
        .as_str()
        .unwrap()
        .contains("directory layer app -> /opt/comfyui/app"));

    // The volumes layer: each folder empty and owned by the image's user, its parents by root,
    // as GNU tar reads them.
    let listing = run_ok(
        Command::new("tar")
            .args(["-tvzf"])
            .arg(blob(&out, &p.layers[4].descriptor.digest))
            .arg("--numeric-owner"),
    );
    let owners: Vec<(&str, &str)> = listing
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields[1], fields[fields.len() - 1])
        })
        .collect();
    assert_eq!(
        owners,
        [
            ("1000/1001", "data/"),
            ("1000/1001", "models/"),
            ("0/0", "srv/"),
            ("0/0", "srv/comfy/"),
            ("1000/1001", "srv/comfy/output/"),
        ],
        "{listing}"
    );

    // The app layer holds the checkout under its in-image path, without .git.
    let listing = run_ok(
        Command::new("tar")
            .arg("-tzf")
            .arg(blob(&out, &p.layers[5].descriptor.digest)),
    );
    assert_eq!(
        listing.lines().collect::<Vec<_>>(),
        [
            "opt/",
            "opt/comfyui/",
            "opt/comfyui/app/",
            "opt/comfyui/app/main.py"
        ]
    );
}

/// A two-platform stack in `root/pak` and the layers `build` (or `install --platform ARCH
/// --out OUT/ARCH`) leaves for it in `root/build/<arch>/layers`, the aarch64 perf layer with
/// its own native file; returns the stack folder.
fn two_platform_build(root: &Path) -> PathBuf {
    let stack = write_stack(
        &root.join("pak"),
        &["manylinux_2_39_x86_64", "manylinux_2_39_aarch64"],
    );
    write_layers(&root.join("build/x86_64/layers"), "1", false);
    write_layers(&root.join("build/aarch64/layers"), "1", false);
    fs::write(
        root.join("build/aarch64/layers/perf")
            .join(SITE)
            .join("perf_pkg/_native.so"),
        "aarch64 build",
    )
    .unwrap();
    stack
}

#[test]
fn several_platforms_make_an_image_index() {
    let dir = tempfile::tempdir().unwrap();
    let stack = two_platform_build(dir.path());
    let out = dir.path().join("img");
    let mut setup = PackSetup::new(&stack, dir.path().join("build/x86_64/layers"), out.clone());
    setup
        .layer_dirs
        .push(("aarch64", dir.path().join("build/aarch64/layers")));
    let image = setup.run();
    assert_eq!(image.platforms.len(), 2);
    let index_descriptor = image.index.clone().expect("an image index");
    let top: Index = serde_json::from_slice(&fs::read(out.join("index.json")).unwrap()).unwrap();
    assert_eq!(top.manifests.len(), 1);
    assert_eq!(top.manifests[0].digest, index_descriptor.digest);
    assert_eq!(
        top.manifests[0].media_type,
        "application/vnd.oci.image.index.v1+json"
    );
    let index: Index = read_json(&out, &index_descriptor.digest);
    let archs: Vec<&str> = index
        .manifests
        .iter()
        .map(|m| m.platform.as_ref().unwrap().architecture.as_str())
        .collect();
    assert_eq!(archs, ["amd64", "arm64"]);
    let arm_config: serde_json::Value = read_json(&out, &image.platforms[1].config.digest);
    assert_eq!(arm_config["architecture"], "arm64");
    let (x86, arm) = (layer_digests(&image, 0), layer_digests(&image, 1));
    assert_eq!(
        x86["deps"], arm["deps"],
        "identical trees give identical layers"
    );
    assert_ne!(x86["perf"], arm["perf"]);
}

#[test]
fn a_base_layout_stays_at_the_bottom_unrecompressed() {
    let dir = tempfile::tempdir().unwrap();
    // A "base image": packed by comfypak itself from a stack with one layer.
    let base_stack = dir.path().join("base-pak");
    fs::create_dir_all(&base_stack).unwrap();
    fs::write(base_stack.join("pak1.txt"), "").unwrap();
    fs::write(
        base_stack.join("stack.toml"),
        format!(
            "[stack]\nname = \"base\"\nindex-dir = \"{}\"\n[target]\npython = \"3.14\"\n\
             platforms = [\"manylinux_2_39_x86_64\"]\nvenv = \"/usr/local\"\n[indexes]\n\
             default = [\"pypi\"]\n[[layer]]\nname = \"os\"\npaks = [\"pak1.txt\"]\n",
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("indexes")
                .display()
        ),
    )
    .unwrap();
    fs::write(
        base_stack.join("image.toml"),
        "[image]\ncmd = [\"bash\"]\nenv = { LANG = \"C.UTF-8\" }\n",
    )
    .unwrap();
    let os = dir.path().join("base-layers/os/usr/bin");
    fs::create_dir_all(&os).unwrap();
    fs::write(os.join("python3.14"), "#!fake\n").unwrap();
    let base_out = dir.path().join("base");
    let base = PackSetup::new(
        &base_stack,
        dir.path().join("base-layers"),
        base_out.clone(),
    )
    .run();
    let base_layer = base.platforms[0].layers[0].clone();

    let stack = write_stack(&dir.path().join("pak"), &["manylinux_2_39_x86_64"]);
    write_layers(&dir.path().join("build/layers"), "1", false);
    let out = dir.path().join("img");
    let mut setup = PackSetup::new(&stack, dir.path().join("build/layers"), out.clone());
    setup.base = Some(base_out.clone());
    let image = setup.run();
    let p = &image.platforms[0];
    assert_eq!(p.layers.len(), 5);
    assert!(p.layers[0].from_base);
    assert_eq!(p.layers[0].descriptor.digest, base_layer.descriptor.digest);
    assert_eq!(
        fs::read(blob(&out, &base_layer.descriptor.digest)).unwrap(),
        fs::read(blob(&base_out, &base_layer.descriptor.digest)).unwrap(),
        "the base blob is referenced as is"
    );
    let config: serde_json::Value = read_json(&out, &p.config.digest);
    assert_eq!(config["rootfs"]["diff_ids"][0], base_layer.diff_id.as_str());
    assert_eq!(config["history"].as_array().unwrap().len(), 5);
    let env = config["config"]["Env"].to_string();
    assert!(env.contains("LANG=C.UTF-8"), "{env}");
    assert!(
        env.contains("PATH=/opt/comfyui/venv/bin:/usr/local/sbin:"),
        "{env}"
    );
    assert_eq!(config["config"]["Cmd"][0], "bash");
    let manifest: Manifest = read_json(&out, &p.manifest.digest);
    assert_eq!(
        manifest.annotations["org.opencontainers.image.base.digest"],
        base.platforms[0].manifest.digest
    );
    // Comfypak's layers are the same with or without the base.
    let alone = PackSetup::new(
        &stack,
        dir.path().join("build/layers"),
        dir.path().join("alone"),
    )
    .run();
    for (with, without) in p.layers[1..].iter().zip(&alone.platforms[0].layers) {
        assert_eq!(with.descriptor.digest, without.descriptor.digest);
    }
    // A base without the asked-for platform is refused by name.
    let mut arm = PackSetup::new(
        &stack,
        dir.path().join("build/layers"),
        dir.path().join("arm"),
    );
    let arm_stack = write_stack(&dir.path().join("arm-pak"), &["manylinux_2_39_aarch64"]);
    arm.stack_dir = &arm_stack;
    arm.layer_dirs = vec![("aarch64", dir.path().join("build/layers"))];
    arm.base = Some(base_out);
    let err = arm.try_run().unwrap_err().to_string();
    assert!(err.contains("no linux/arm64 image"), "{err}");
}

#[test]
fn docker_archive_holds_manifest_config_and_plain_layers() {
    let dir = tempfile::tempdir().unwrap();
    let stack = write_stack(&dir.path().join("pak"), &["manylinux_2_39_x86_64"]);
    write_layers(&dir.path().join("build/layers"), "1", false);
    let out = dir.path().join("image.tar");
    let mut setup = PackSetup::new(&stack, dir.path().join("build/layers"), out.clone());
    setup.format = OutputFormat::DockerArchive;
    let image = setup.run();
    let first = fs::read(&out).unwrap();
    setup.run();
    assert_eq!(
        first,
        fs::read(&out).unwrap(),
        "docker archive is reproducible"
    );
    let listing = run_ok(Command::new("tar").arg("-tf").arg(&out));
    assert!(listing.lines().any(|l| l == "manifest.json"), "{listing}");
    let x = dir.path().join("x");
    fs::create_dir_all(&x).unwrap();
    run_ok(Command::new("tar").arg("-xf").arg(&out).arg("-C").arg(&x));
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(x.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest[0]["RepoTags"][0], "comfyui:latest");
    let layers = manifest[0]["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 4);
    for (path, layer) in layers.iter().zip(&image.platforms[0].layers) {
        let sum = run_ok(Command::new("sha256sum").arg(x.join(path.as_str().unwrap())));
        assert_eq!(
            format!("sha256:{}", sum.split_whitespace().next().unwrap()),
            layer.diff_id
        );
    }
    // No staging folders left beside the archive.
    let left: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn missing_layer_folders_and_bad_settings_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let stack = write_stack(&dir.path().join("pak"), &["manylinux_2_39_x86_64"]);
    fs::create_dir_all(dir.path().join("build/layers/stable")).unwrap();
    let err = PackSetup::new(
        &stack,
        dir.path().join("build/layers"),
        dir.path().join("img"),
    )
    .try_run()
    .unwrap_err();
    let err = comfypak::diagnostic::with_help(&err);
    assert!(err.contains("layer `deps`"), "{err}");
    assert!(err.contains("comfypak install --layer deps"), "{err}");

    write_layers(&dir.path().join("build/layers"), "1", false);
    for (settings, expected) in [
        ("[image]\nenv = { PATH = \"/x\" }\n", "image.env.PATH"),
        (
            "[[directory]]\nname = \"deps\"\nsource = \".\"\npath = \"/x\"\n",
            "has the name of another layer",
        ),
        (
            "[image]\nuser = \"comfy\"\nvolumes = [\"/data\"]\n",
            "\"comfy\" is not numeric",
        ),
        ("[image]\nvolumes = [\"data\"]\n", "not an absolute folder path"),
        ("[image]\nvolumes = [\"/data/../etc\"]\n", "not an absolute folder path"),
        ("[image]\nvolumes = [\"/\"]\n", "not an absolute folder path"),
        (
            "[image]\nvolumes = [\"/data\", \"/data/\"]\n",
            "names \"/data\" twice",
        ),
        (
            "[image]\nvolumes = [\"/data\"]\n[[directory]]\nname = \"volumes\"\nsource = \".\"\npath = \"/x\"\n",
            "has the name of another layer",
        ),
    ] {
        fs::write(stack.join("image.toml"), settings).unwrap();
        let err = PackSetup::new(
            &stack,
            dir.path().join("build/layers"),
            dir.path().join("img"),
        )
        .try_run()
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("image.toml") && err.contains(expected),
            "{settings}: {err}"
        );
    }
    assert!(!dir.path().join("img").exists());
}

#[test]
fn the_cli_packs_and_reports_reuse() {
    let dir = tempfile::tempdir().unwrap();
    let stack = write_stack(&dir.path().join("pak"), &["manylinux_2_39_x86_64"]);
    write_layers(&dir.path().join("build/layers"), "1", false);
    // `pack` reads the lock the layers were installed from (pylock.toml by default).
    write_lock(&stack, &dir.path().join("pylock.toml"));
    let bin = env!("CARGO_BIN_EXE_comfypak");
    let run = |extra: &[&str]| {
        run_ok(
            Command::new(bin)
                .current_dir(dir.path())
                .env("SOURCE_DATE_EPOCH", "1700000000")
                .args(["pack", "--stack"])
                .arg(&stack)
                .args(["--out", "build", "--json"])
                .args(extra),
        )
    };
    let first: serde_json::Value = serde_json::from_str(&run(&[])).unwrap();
    assert_eq!(first["platforms"][0]["layers"].as_array().unwrap().len(), 4);
    assert!(dir.path().join("build/image/index.json").exists());
    fs::rename(dir.path().join("build/image"), dir.path().join("prev")).unwrap();
    let second: serde_json::Value = serde_json::from_str(&run(&["--previous", "prev"])).unwrap();
    assert_eq!(second["push_blobs"], 0);
    for layer in second["platforms"][0]["layers"].as_array().unwrap() {
        assert_eq!(layer["reuse"], "identical");
    }
    let text = run_ok(
        Command::new(bin)
            .current_dir(dir.path())
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args(["pack", "--stack"])
            .arg(&stack)
            .args(["--previous", "prev", "--output", "third"]),
    );
    assert!(text.contains("volatile"), "{text}");
    assert!(text.contains("identical"), "{text}");
    assert!(text.contains("a push after prev sends"), "{text}");
    // A bad SOURCE_DATE_EPOCH is an error that says what to set.
    let output = Command::new(bin)
        .current_dir(dir.path())
        .env("SOURCE_DATE_EPOCH", "yesterday")
        .args(["pack", "--stack"])
        .arg(&stack)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("SOURCE_DATE_EPOCH"));
}

#[test]
fn pack_takes_the_venv_and_the_image_name_from_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let stack = write_stack(&dir.path().join("pak"), &["manylinux_2_39_x86_64"]);
    write_layers(&dir.path().join("build/layers"), "1", false);
    write_lock(&stack, &dir.path().join("pylock.toml"));
    // After install, the stack's venv and name change (its layers do not): the image still
    // points PATH and VIRTUAL_ENV where the installed files are, and keeps the lock's name.
    let manifest = stack.join("stack.toml");
    let text = fs::read_to_string(&manifest).unwrap();
    assert!(text.contains("venv = \"/opt/comfyui/venv\"") && text.contains("name = \"comfyui\""));
    fs::write(
        &manifest,
        text.replace("venv = \"/opt/comfyui/venv\"", "venv = \"/srv/other\"")
            .replace("name = \"comfyui\"", "name = \"renamed\""),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_comfypak");
    run_ok(
        Command::new(bin)
            .current_dir(dir.path())
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args([
                "pack",
                "--format",
                "docker-archive",
                "--output",
                "image.tar",
                "--stack",
            ])
            .arg(&stack),
    );
    let x = dir.path().join("x");
    fs::create_dir_all(&x).unwrap();
    run_ok(
        Command::new("tar")
            .arg("-xf")
            .arg(dir.path().join("image.tar"))
            .arg("-C")
            .arg(&x),
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(x.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest[0]["RepoTags"][0], "comfyui:latest");
    let config: serde_json::Value =
        serde_json::from_slice(&fs::read(x.join(manifest[0]["Config"].as_str().unwrap())).unwrap())
            .unwrap();
    let env = config["config"]["Env"].to_string();
    assert!(env.contains("VIRTUAL_ENV=/opt/comfyui/venv"), "{env}");
    assert!(env.contains("PATH=/opt/comfyui/venv/bin:"), "{env}");
    assert!(!env.contains("/srv/other"), "{env}");
}

/// Returns once the wall clock's whole second has changed (at most a second from now).
fn wait_for_the_next_second() {
    let second = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    };
    let start = second();
    while second() == start {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn pack_of_one_platform_after_a_two_platform_build_reads_that_platforms_folder() {
    let dir = tempfile::tempdir().unwrap();
    let stack = two_platform_build(dir.path());
    write_lock(&stack, &dir.path().join("pylock.toml"));
    let bin = env!("CARGO_BIN_EXE_comfypak");
    let pack = |platform: &str, output: &str| -> serde_json::Value {
        let text = run_ok(
            Command::new(bin)
                .current_dir(dir.path())
                .env("SOURCE_DATE_EPOCH", "1700000000")
                .args(["pack", "--json", "--stack"])
                .arg(&stack)
                .args(["--platform", platform, "--output", output]),
        );
        serde_json::from_str(&text).unwrap()
    };
    let perf = |image: &serde_json::Value, index: usize| -> String {
        image["platforms"][index]["layers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == "perf")
            .unwrap()["digest"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let both = pack("all", "both");
    let arm = pack("aarch64", "arm");
    let x86 = pack("x86_64", "x86");
    assert_eq!(arm["platforms"].as_array().unwrap().len(), 1);
    assert_eq!(arm["platforms"][0]["architecture"], "arm64");
    assert_eq!(x86["platforms"][0]["architecture"], "amd64");
    // Each single-platform pack took its own folder: the same layers as in the two-platform image.
    assert_eq!(perf(&arm, 0), perf(&both, 1));
    assert_eq!(perf(&x86, 0), perf(&both, 0));
    assert_ne!(perf(&arm, 0), perf(&x86, 0));
    // Nothing was ever at OUT/layers.
    assert!(!dir.path().join("build/layers").exists());
}

/// One base per platform: `--base x86_64=A --base aarch64=B` (two one-platform layouts, as
/// `build` passes the base each platform was prepared with) puts each platform's image on its
/// own base; an architecture without a base gets none.
#[test]
fn a_base_per_architecture_goes_under_that_platform_only() {
    use crate::base_pull::base_layout;
    use crate::runtime::{tar_of, E};
    use comfypak::target::Arch;
    let dir = tempfile::tempdir().unwrap();
    let stack = two_platform_build(dir.path());
    let layout = |name: &str, arch: Arch, marker: &[u8]| {
        let path = dir.path().join(name);
        let (top, layers) = base_layout(
            &path,
            &[(
                arch,
                vec![tar_of(&[E::Dir("etc"), E::File("etc/os", marker)])],
            )],
        );
        (path, top, layers[0][0].clone())
    };
    let (x86_base, x86_manifest, x86_diff_id) = layout("base-x86", Arch::X86_64, b"x86");
    let (arm_base, arm_manifest, arm_diff_id) = layout("base-arm", Arch::Aarch64, b"arm");
    let pack = |bases: Vec<(Arch, PathBuf)>, out: &str| {
        let mut setup = PackSetup::new(
            &stack,
            dir.path().join("build/x86_64/layers"),
            dir.path().join(out),
        );
        setup
            .layer_dirs
            .push(("aarch64", dir.path().join("build/aarch64/layers")));
        setup.base_by_arch = bases;
        setup.run()
    };
    let image = pack(
        vec![
            (Arch::X86_64, x86_base.clone()),
            (Arch::Aarch64, arm_base.clone()),
        ],
        "img",
    );
    let out = dir.path().join("img");
    for (p, manifest_digest, diff_id) in [
        (&image.platforms[0], &x86_manifest, &x86_diff_id),
        (&image.platforms[1], &arm_manifest, &arm_diff_id),
    ] {
        assert!(p.layers[0].from_base, "{}", p.architecture);
        assert!(!p.layers[1].from_base);
        let config: serde_json::Value = read_json(&out, &p.config.digest);
        assert_eq!(config["rootfs"]["diff_ids"][0], diff_id.as_str());
        let manifest: Manifest = read_json(&out, &p.manifest.digest);
        assert_eq!(
            &manifest.annotations["org.opencontainers.image.base.digest"], manifest_digest,
            "{}",
            p.architecture
        );
    }
    // Only x86_64 given a base: aarch64's image starts with comfypak's own layers.
    let image = pack(vec![(Arch::X86_64, x86_base)], "x86-only");
    assert!(image.platforms[0].layers[0].from_base);
    assert!(image.platforms[1].layers.iter().all(|l| !l.from_base));
    // A base for an architecture that is not in it is refused by name.
    let mut setup = PackSetup::new(
        &stack,
        dir.path().join("build/x86_64/layers"),
        dir.path().join("wrong"),
    );
    setup.base_by_arch = vec![(Arch::X86_64, arm_base)];
    let err = setup.try_run().unwrap_err().to_string();
    assert!(err.contains("no linux/amd64 image"), "{err}");
}

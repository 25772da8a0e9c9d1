//! The built image in a real container runtime (podman, set up by .ci/setup.d/60-podman.sh,
//! which exports COMFYPAK_TEST_PODMAN=1 where containers run): the fixture stack built for
//! both architectures on a two-platform base (the Debian roots with CPython 3.14), each
//! platform packed as a docker archive, `podman load`ed, and `podman run --rm --network none`
//! runs `comfypak check`'s own check.py with the image's python: every distribution's modules
//! import and its console scripts answer, on x86_64 and, under qemu-user, on
//! `--platform linux/arm64`. The image carries the shipped `pak/image.toml` (its entrypoint's
//! python, the non-root user 1000, workdir, env and the runtime-config layer), and the check
//! runs as that user, the way the image runs, with only the check folder writable to it.

use std::path::Path;
use std::process::Command;

use comfypak::target::Arch;

use super::base_pull::base_layout;
use super::check::{comfypak, fixture_stack_for, text};
use super::common::copy_tree;
use super::pack_support::run_ok;
use super::runtime::{debian_root, debian_root_aarch64};

/// Whether podman runs containers here; in CI a machine without it says why (60-podman.sh).
fn podman() -> bool {
    if std::env::var("COMFYPAK_TEST_PODMAN").as_deref() == Ok("1") {
        return true;
    }
    eprintln!(
        "note: COMFYPAK_TEST_PODMAN is not 1; skipping the podman test (.ci/setup.d/60-podman.sh \
         sets it where podman runs containers)"
    );
    false
}

fn root_tar(root: &Path) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    builder.append_dir_all(".", root).unwrap();
    builder.into_inner().unwrap()
}

/// Removes the named volumes the test made when it ends, passed or not.
struct Volumes(Vec<String>);

impl Drop for Volumes {
    fn drop(&mut self) {
        for volume in &self.0 {
            let _ = Command::new("podman")
                .args(["volume", "rm", "--force", volume])
                .output();
        }
    }
}

/// Removes the loaded images when the test ends, passed or not.
struct Loaded(Vec<String>);

impl Drop for Loaded {
    fn drop(&mut self) {
        for image in &self.0 {
            let _ = Command::new("podman")
                .args(["rmi", "--force", image])
                .output();
        }
    }
}

/// What the image's python prints about who runs it and its HOME: uid, gid, HOME, the owner
/// of /data, and whether it could write a file there.
const PROBE: &str = "import os, platform, sys; st = os.stat('/data'); \
    open('/data/probe', 'w').write('x'); \
    print(os.getuid(), os.getgid(), os.environ['HOME'], st.st_uid, st.st_gid, \
    os.path.isfile('/opt/comfyui/config/extra_model_paths.yaml'), end=' ')";

#[test]
fn the_built_image_runs_in_podman_on_both_architectures() {
    let Some(root) = debian_root() else { return };
    if !podman() {
        return;
    }
    let arm_root = debian_root_aarch64();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let mut images = vec![(Arch::X86_64, vec![root_tar(&root)])];
    let mut platforms = vec!["manylinux_2_39_x86_64"];
    if let Some(arm) = &arm_root {
        images.push((Arch::Aarch64, vec![root_tar(arm)]));
        platforms.push("manylinux_2_39_aarch64");
    }
    let base = dir.path().join("base");
    base_layout(&base, &images);
    drop(images);
    let pak = fixture_stack_for(
        dir.path(),
        "demo_bad = \"imports a module no distribution ships\"\n\
         demo-bad = \"exits 1 whatever it is asked\"\n",
        &platforms,
    );
    // The shipped image settings and runtime-config layer, on the shipped venv path.
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("pak");
    std::fs::copy(shipped.join("image.toml"), pak.join("image.toml")).unwrap();
    copy_tree(&shipped.join("runtime-config"), &pak.join("runtime-config"));
    let manifest = pak.join("stack.toml");
    let stack = std::fs::read_to_string(&manifest).unwrap();
    assert!(stack.contains("venv = \"/opt/venv\""), "{stack}");
    std::fs::write(
        &manifest,
        stack.replace("venv = \"/opt/venv\"", "venv = \"/opt/comfyui/venv\""),
    )
    .unwrap();
    let settings: toml::Table =
        toml::from_str(&std::fs::read_to_string(shipped.join("image.toml")).unwrap()).unwrap();
    let entrypoint: Vec<&str> = settings["image"]["entrypoint"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let python = entrypoint[0];
    assert_eq!(python, "/opt/comfyui/venv/bin/python");
    let user = settings["image"]["user"].as_str().unwrap();
    assert_eq!(
        user, "1000:1000",
        "the shipped image runs as a non-root user"
    );
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
            base.to_str().unwrap(),
        ],
        dir.path(),
        &cache,
    );
    assert!(out.status.success(), "{}", text(&out));

    // The check folder: the only place the image's user (1000, not the owner) may write.
    let checks = dir.path().join("checks");
    std::fs::create_dir_all(&checks).unwrap();
    std::fs::write(checks.join("check.py"), comfypak::runtime::check::CHECK_PY).unwrap();
    std::fs::set_permissions(&checks, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let mut loaded = Loaded(Vec::new());
    let mut volumes = Volumes(Vec::new());
    let tag = format!("t{}", std::process::id());
    for arch in [Arch::X86_64, Arch::Aarch64] {
        if arch == Arch::Aarch64 && arm_root.is_none() {
            continue;
        }
        let archive = dir.path().join(format!("{arch}.tar"));
        let layers = if arm_root.is_some() {
            dir.path().join("out").join(arch.as_str()).join("layers")
        } else {
            dir.path().join("out/layers")
        };
        let name = format!("localhost/comfypak-test-{arch}");
        let out = comfypak(
            &[
                "pack",
                "--stack",
                pak.to_str().unwrap(),
                "--out",
                "out",
                "--lock",
                "pylock.toml",
                "--platform",
                arch.as_str(),
                "--layers",
                &format!("{arch}={}", layers.display()),
                "--base",
                base.to_str().unwrap(),
                "--format",
                "docker-archive",
                "--name",
                &name,
                "--tag",
                &tag,
                "--output",
                archive.to_str().unwrap(),
            ],
            dir.path(),
            &cache,
        );
        assert!(out.status.success(), "{}", text(&out));
        let load = run_ok(
            Command::new("podman")
                .args(["load", "--quiet", "-i"])
                .arg(&archive),
        );
        let image = format!("{name}:{tag}");
        assert!(load.contains(&image), "{load}");
        loaded.0.push(image.clone());
        // The image config is the shipped one.
        let inspect: serde_json::Value = serde_json::from_str(&run_ok(
            Command::new("podman")
                .args(["image", "inspect"])
                .arg(&image),
        ))
        .unwrap();
        let config = &inspect[0]["Config"];
        assert_eq!(config["User"], user, "{config}");
        assert_eq!(config["WorkingDir"], "/opt/comfyui/app", "{config}");
        assert_eq!(
            config["Entrypoint"],
            serde_json::json!(entrypoint),
            "{config}"
        );
        let result = format!("{arch}.json");
        // As the image runs (its user, workdir, env), with the entrypoint's python running the
        // check instead of ComfyUI's main.py.
        let run = Command::new("podman")
            .args(["run", "--rm", "--network", "none", "--platform"])
            .arg(format!("linux/{}", arch.oci_name()))
            .arg("-v")
            .arg(format!("{}:/check", checks.display()))
            .args(["--entrypoint", python])
            .arg(&image)
            .arg("/check/check.py")
            .arg(format!("/check/{result}"))
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{arch}: podman run: {}\n{}",
            String::from_utf8_lossy(&run.stderr),
            String::from_utf8_lossy(&run.stdout)
        );
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(checks.join(&result)).unwrap()).unwrap();
        assert!(
            report["python"].as_str().unwrap_or("").starts_with("3.14."),
            "{report}"
        );
        let mut imported: Vec<&str> = report["imports"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["ok"] == true)
            .map(|i| i["module"].as_str().unwrap())
            .collect();
        imported.sort_unstable();
        assert_eq!(
            imported,
            ["demo_app", "demo_bad_cli", "demo_base", "demo_many"],
            "{arch}: {report}"
        );
        let scripts: Vec<(&str, bool)> = report["scripts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["script"].as_str().unwrap(), s["ok"] == true))
            .collect();
        assert_eq!(
            scripts,
            [("demo-bad", false), ("demo-base", true)],
            "{arch}: {report}"
        );
        // The image's own machine (aarch64 under qemu-user), its user, workdir and home, and the
        // runtime configuration ComfyUI's command line names.
        let machine = run_ok(
            Command::new("podman")
                .args(["run", "--rm", "--network", "none", "--platform"])
                .arg(format!("linux/{}", arch.oci_name()))
                .args(["--entrypoint", python])
                .arg(&image)
                .args([
                    "-c",
                    &format!("{PROBE}; print(platform.machine(), sys.prefix, os.getcwd())"),
                ]),
        );
        assert_eq!(
            machine.trim(),
            format!("1000 1000 /data 1000 1000 True {arch} /opt/comfyui/venv /opt/comfyui/app")
        );
        // A new named volume at /data (the image declares it) starts out owned by the image's
        // user, as the image's folder is: ComfyUI can write its inputs and outputs there.
        let volume = format!("comfypak-test-data-{arch}-{}", std::process::id());
        run_ok(Command::new("podman").args(["volume", "create", &volume]));
        volumes.0.push(volume.clone());
        let mounted = run_ok(
            Command::new("podman")
                .args(["run", "--rm", "--network", "none", "--platform"])
                .arg(format!("linux/{}", arch.oci_name()))
                .args(["-v", &format!("{volume}:/data")])
                .args(["--entrypoint", python])
                .arg(&image)
                .args(["-c", PROBE]),
        );
        assert_eq!(mounted.trim(), "1000 1000 /data 1000 1000 True");
    }
}

//! The built image in a real container runtime (podman, set up by .ci/setup.d/60-podman.sh,
//! which exports COMFYPAK_TEST_PODMAN=1 where containers run): the fixture stack built for
//! both architectures on a two-platform base (the Debian roots with CPython 3.14), each
//! platform packed as a docker archive, `podman load`ed, and `podman run --rm --network none`
//! runs `comfypak check`'s own check.py with the image's python: every distribution's modules
//! import and its console scripts answer, on x86_64 and, under qemu-user, on
//! `--platform linux/arm64`.

use std::path::Path;
use std::process::Command;

use comfypak::target::Arch;

use super::base_pull::base_layout;
use super::check::{comfypak, fixture_stack_for, text};
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

    let checks = dir.path().join("checks");
    std::fs::create_dir_all(&checks).unwrap();
    std::fs::write(checks.join("check.py"), comfypak::runtime::check::CHECK_PY).unwrap();
    let mut loaded = Loaded(Vec::new());
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
        let result = format!("{arch}.json");
        let run = Command::new("podman")
            .args(["run", "--rm", "--network", "none", "--platform"])
            .arg(format!("linux/{}", arch.oci_name()))
            .arg("-v")
            .arg(format!("{}:/check", checks.display()))
            .arg(&image)
            .args(["/opt/venv/bin/python", "/check/check.py"])
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
        // The image's own machine: aarch64 under qemu-user.
        let machine = run_ok(
            Command::new("podman")
                .args(["run", "--rm", "--network", "none", "--platform"])
                .arg(format!("linux/{}", arch.oci_name()))
                .arg(&image)
                .args([
                    "/opt/venv/bin/python",
                    "-c",
                    "import platform, sys; print(platform.machine(), sys.prefix)",
                ]),
        );
        assert_eq!(machine.trim(), format!("{arch} /opt/venv"));
    }
}

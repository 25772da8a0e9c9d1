//! The stack manifest: the shipped `pak/` stack loads as documented, and every kind of
//! bad manifest is refused with a message that names the file and says what to do.

use std::path::{Path, PathBuf};
use std::process::Command;

use comfypak::stack::{Stack, StackError};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn shipped_stack_has_five_layers_in_stability_order() {
    let stack = Stack::load(&repo().join("pak")).expect("shipped stack loads");
    let names: Vec<&str> = stack.layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["stable", "deps", "nodes", "perf", "volatile"]);
    let ranks: Vec<usize> = stack.layers.iter().map(|l| l.rank).collect();
    assert_eq!(ranks, [1, 2, 3, 4, 5]);
    // The whole real stack is in layers: nothing is excluded.
    assert!(stack.excluded.is_empty());
    assert_eq!(stack.target.python.to_string(), "3.14");
    assert!(!stack.target.free_threaded);
    let platforms: Vec<String> = stack
        .target
        .platforms
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert_eq!(
        platforms,
        ["manylinux_2_39_x86_64", "manylinux_2_39_aarch64"]
    );
    assert_eq!(stack.target.venv, "/opt/comfyui/venv");
    assert_eq!(
        stack.target.site_packages(),
        "/opt/comfyui/venv/lib/python3.14/site-packages"
    );
    assert_eq!(stack.target.torch_backend, "cu130");
    assert_eq!(stack.target.targets().len(), 2);
}

#[test]
fn shipped_stack_puts_each_family_in_its_layer() {
    let stack = Stack::load(&repo().join("pak")).unwrap();
    let names_in = |layer: &str| -> Vec<String> {
        stack
            .layer(layer)
            .unwrap()
            .requirements()
            .filter_map(|l| l.requirement.name().map(|n| n.to_string()))
            .collect()
    };
    let stable = names_in("stable");
    assert_eq!(stable, ["torch", "torchvision", "torchaudio"]);
    let deps = names_in("deps");
    for name in [
        "numpy",
        "transformers",
        "aiohttp",
        "accelerate",
        "ultralytics",
        "spandrel",
    ] {
        assert!(
            deps.iter().any(|n| n == name),
            "deps lacks {name}: {deps:?}"
        );
    }
    // The front-end packages move daily: never in deps.
    assert!(!deps.iter().any(|n| n.starts_with("comfyui-")), "{deps:?}");
    assert_eq!(
        names_in("volatile"),
        [
            "comfyui-frontend-package",
            "comfyui-workflow-templates",
            "comfyui-embedded-docs"
        ]
    );
    let perf = names_in("perf");
    for name in ["flash-attn", "sageattention", "triton"] {
        assert!(perf.iter().any(|n| n == name), "perf lacks {name}");
    }
    // Only the nodes layer has lines that name a source (the git repositories).
    for layer in stack.layers.iter().filter(|l| l.name != "nodes") {
        for line in layer.requirements() {
            assert!(
                line.requirement.needs_build().is_none(),
                "{} in layer {} needs a build",
                line.text,
                layer.name
            );
        }
    }
}

#[test]
fn shipped_stack_pins_the_torch_family_and_puts_source_builds_in_nodes() {
    let stack = Stack::load(&repo().join("pak")).unwrap();
    let pinned = |n: &str| {
        stack
            .indexes
            .pinned_index(&pep508_rs::PackageName::new(n.to_string()).unwrap())
            .map(str::to_string)
    };
    for name in ["torch", "torchvision", "torchaudio", "triton"] {
        assert_eq!(pinned(name).as_deref(), Some("pytorch-cu130"), "{name}");
    }
    assert_eq!(pinned("flash_attn").as_deref(), Some("perf-wheels"));
    assert_eq!(pinned("numpy"), None);
    assert_eq!(stack.indexes.default, ["pypi"]);
    for name in [
        "pypi",
        "pytorch-cu130",
        "pytorch-cu128",
        "pytorch-cu126",
        "pytorch-cpu",
        "perf-wheels",
    ] {
        assert!(
            stack.indexes.definitions.get(name).is_some(),
            "index {name}"
        );
    }

    // The packages with no usable wheel, and the git sources, are in the `nodes` layer.
    let nodes = stack.layer("nodes").expect("a nodes layer");
    let files: Vec<String> = nodes
        .paks
        .iter()
        .map(|p| p.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, ["pak7.txt", "pak8.txt"]);
    let sdist_only: Vec<String> = nodes.paks[1]
        .requirements
        .iter()
        .filter_map(|l| l.requirement.name().map(|n| n.to_string()))
        .collect();
    assert_eq!(
        sdist_only,
        [
            "fairscale",
            "func-timeout",
            "fvcore",
            "groundingdino-py",
            "openai-whisper",
            "decord"
        ]
    );
    // decord has a wheel for x86_64 only, and no sdist: its line says so.
    let decord = nodes.paks[1]
        .requirements
        .iter()
        .find(|l| l.text.starts_with("decord"))
        .unwrap();
    assert_eq!(decord.text, "decord; platform_machine == \"x86_64\"");
    for target in stack.target.targets() {
        let markers = target.markers();
        let comfypak::pak::PakRequirement::Named(pep508_rs::Requirement { marker, .. }) =
            &decord.requirement
        else {
            panic!("decord's line names a project")
        };
        assert_eq!(
            marker.evaluate(&markers, &[]),
            target.platform.arch.as_str() == "x86_64",
            "{target}"
        );
    }
    // Its one Linux wheel's wrong RECORD row is accepted for that wheel and file only.
    let accepted: Vec<(&str, &str)> = stack
        .record_mismatch
        .iter()
        .map(|m| (m.wheel.as_str(), m.file.as_str()))
        .collect();
    assert_eq!(
        accepted,
        [(
            "decord-0.6.0-py3-none-manylinux2010_x86_64.whl",
            "decord-0.6.0.dist-info/top_level.txt"
        )]
    );
    let needs_build: Vec<&str> = nodes.paks[0]
        .requirements
        .iter()
        .filter(|l| l.requirement.needs_build().is_some())
        .map(|l| l.text.as_str())
        .collect();
    assert_eq!(needs_build.len(), 6, "{needs_build:?}");
    assert!(needs_build.iter().all(|t| t.starts_with("git+https://")));
}

#[test]
fn no_layer_leaves_a_layer_out_as_though_it_were_excluded() {
    let mut stack = Stack::load(&repo().join("pak")).unwrap();
    stack.leave_out(&["nodes".to_string()]).unwrap();
    let names: Vec<&str> = stack.layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["stable", "deps", "perf", "volatile"]);
    let ranks: Vec<usize> = stack.layers.iter().map(|l| l.rank).collect();
    assert_eq!(ranks, [1, 2, 3, 4]);
    let excluded: Vec<(String, &str)> = stack
        .excluded
        .iter()
        .map(|e| {
            (
                e.pak
                    .path
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                e.reason.as_str(),
            )
        })
        .collect();
    assert_eq!(
        excluded,
        [
            (
                "pak7.txt".to_string(),
                "layer `nodes` left out by --no-layer nodes"
            ),
            (
                "pak8.txt".to_string(),
                "layer `nodes` left out by --no-layer nodes"
            ),
        ]
    );

    // An unknown layer names the layers there are.
    let err = Stack::load_without(&repo().join("pak"), &["node".to_string()]).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "--no-layer node: {} has no layer `node`",
            repo().join("pak/stack.toml").display()
        )
    );
    assert_eq!(
        err.help().as_deref(),
        Some("name one of the stack's layers: stable, deps, nodes, perf, volatile")
    );
    let every: Vec<String> = ["stable", "deps", "nodes", "perf", "volatile"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let err = Stack::load_without(&repo().join("pak"), &every).unwrap_err();
    assert_eq!(
        err.to_string(),
        "--no-layer volatile: that would leave no layer to build"
    );

    // The command line: `comfypak stack --no-layer nodes` lists the pak files as excluded.
    let out = Command::new(env!("CARGO_BIN_EXE_comfypak"))
        .args(["stack", "--no-layer", "nodes", "--stack"])
        .arg(repo().join("pak"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("excluded (not in any layer):"), "{text}");
    assert!(text.contains("left out by --no-layer nodes"), "{text}");
}

/// A scratch stack: `files` are (name, contents) written into a fresh folder that also has an
/// `indexes/` folder with two definitions.
fn scratch(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let idx = dir.path().join("indexes");
    std::fs::create_dir(&idx).unwrap();
    std::fs::write(
        idx.join("main.toml"),
        "name = \"main\"\nurl = \"http://127.0.0.1:9/simple\"\nkind = \"simple\"\n",
    )
    .unwrap();
    std::fs::write(
        idx.join("torch.toml"),
        "name = \"torch\"\nurl = \"http://127.0.0.1:9/torch/\"\nkind = \"simple\"\n",
    )
    .unwrap();
    let pak = dir.path().join("pak");
    std::fs::create_dir(&pak).unwrap();
    for (name, contents) in files {
        std::fs::write(pak.join(name), contents).unwrap();
    }
    dir
}

const GOOD: &str = r#"
[stack]
name = "t"
[target]
python = "3.14"
platforms = ["manylinux_2_39_x86_64"]
venv = "/opt/venv"
[indexes]
default = ["main"]
[indexes.pins]
torch = ["torch", "nvidia-*"]
[[layer]]
name = "stable"
paks = ["pak1.txt"]
[[layer]]
name = "app"
paks = ["pak2.txt"]
"#;

fn load_err(manifest: &str, extra: &[(&str, &str)]) -> (StackError, String) {
    let mut files = vec![
        ("stack.toml", manifest),
        ("pak1.txt", "torch==2.11.0\n"),
        ("pak2.txt", "numpy\n"),
    ];
    files.extend_from_slice(extra);
    let dir = scratch(&files);
    let err = Stack::load(&dir.path().join("pak")).expect_err("must fail");
    let text = comfypak::diagnostic::with_help(&err);
    (err, text)
}

#[test]
fn scratch_stack_loads_and_globs_pin() {
    let dir = scratch(&[
        ("stack.toml", GOOD),
        ("pak1.txt", "torch==2.11.0\n"),
        ("pak2.txt", "numpy\n"),
    ]);
    let stack = Stack::load(&dir.path().join("pak")).unwrap();
    let name = |n: &str| pep508_rs::PackageName::new(n.to_string()).unwrap();
    assert_eq!(
        stack.indexes.pinned_index(&name("nvidia-cublas")),
        Some("torch")
    );
    assert_eq!(stack.indexes.pinned_index(&name("numpy")), None);
    assert_eq!(stack.target.torch_backend, "cu130", "default backend");
}

#[test]
fn missing_manifest_says_how_to_point_at_one() {
    let dir = tempfile::tempdir().unwrap();
    let err = comfypak::diagnostic::with_help(&Stack::load(dir.path()).unwrap_err());
    assert!(err.contains("stack.toml"), "{err}");
    assert!(err.contains("--stack"), "{err}");
}

#[test]
fn toml_syntax_error_names_file_and_line() {
    let (err, text) = load_err("[stack]\nname = \"t\"\n[target\n", &[]);
    assert!(matches!(err, StackError::Syntax { .. }));
    assert!(text.contains("stack.toml"), "{text}");
    assert!(text.contains("line 3"), "{text}");
}

#[test]
fn unknown_key_is_refused() {
    let (_, text) = load_err(&GOOD.replace("venv =", "venvv = \"/x\"\nvenv ="), &[]);
    assert!(text.contains("venvv"), "{text}");
}

#[test]
fn bad_manifest_values_are_explained() {
    let cases: &[(&str, &str, &str)] = &[
        ("python = \"3.14\"", "python = \"three\"", "MAJOR.MINOR"),
        (
            "manylinux_2_39_x86_64\"]",
            "win_amd64\"]",
            "target.platforms",
        ),
        ("venv = \"/opt/venv\"", "venv = \"opt/venv\"", "absolute"),
        (
            "venv = \"/opt/venv\"",
            "venv = \"/opt/venv\"\ntorch-backend = \"cu999\"",
            "cu130, cu128",
        ),
        ("name = \"app\"", "name = \"stable\"", "declared twice"),
        ("name = \"app\"", "name = \"App\"", "lowercase"),
        (
            "paks = [\"pak2.txt\"]",
            "paks = [\"pak1.txt\"]",
            "exactly one layer",
        ),
        ("paks = [\"pak2.txt\"]", "paks = []", "lists no pak files"),
        (
            "default = [\"main\"]",
            "default = [\"nope\"]",
            "unknown index `nope`",
        ),
        ("default = [\"main\"]", "default = []", "no default index"),
        (
            "torch = [\"torch\"",
            "nope = [\"torch\"",
            "unknown index `nope`",
        ),
        (
            "torch = [\"torch\", \"nvidia-*\"]",
            "torch = [\"torch\"]\nmain = [\"torch\"]",
            "pinned to both",
        ),
        (
            "torch = [\"torch\", \"nvidia-*\"]",
            "torch = [\"not a name!\"]",
            "indexes.pins",
        ),
    ];
    for (from, to, expect) in cases {
        assert!(GOOD.contains(from), "case {from} does not apply");
        let (_, text) = load_err(&GOOD.replacen(from, to, 1), &[]);
        assert!(text.contains(expect), "case {to}: {text}");
        assert!(text.contains("stack.toml"), "case {to}: {text}");
    }
}

#[test]
fn pak_errors_surface_with_their_location() {
    let dir = scratch(&[
        ("stack.toml", GOOD),
        ("pak1.txt", "torch==2.11.0\n"),
        ("pak2.txt", "numpy\n-e ./local\n"),
    ]);
    let err = Stack::load(&dir.path().join("pak")).unwrap_err();
    assert!(matches!(err, StackError::Pak(_)));
    let text = err.to_string();
    assert!(text.contains("pak2.txt:2:"), "{text}");
}

#[test]
fn missing_pak_file_is_named() {
    let dir = scratch(&[("stack.toml", GOOD), ("pak1.txt", "torch\n")]);
    let text = Stack::load(&dir.path().join("pak"))
        .unwrap_err()
        .to_string();
    assert!(text.contains("pak2.txt"), "{text}");
}

fn comfypak(args: &[&str], cwd: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_comfypak"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run comfypak")
}

#[test]
fn cli_stack_json_lists_five_layers_and_the_target() {
    let out = comfypak(&["stack", "--json"], &repo());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let layers = v["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 5);
    assert_eq!(layers[0]["name"], "stable");
    assert_eq!(layers[2]["name"], "nodes");
    assert_eq!(layers[4]["name"], "volatile");
    assert_eq!(v["target"]["python"], "3.14");
    assert_eq!(v["target"]["platforms"][1], "manylinux_2_39_aarch64");
    assert_eq!(v["target"]["targets"][0]["abi"], "cp314");
    let first = &layers[0]["paks"][0]["requirements"][0];
    assert_eq!(first["name"], "torch");
    assert!(first["line"].as_u64().unwrap() > 0);
    assert_eq!(v["excluded"].as_array().map(Vec::len), Some(0));
    let out = comfypak(&["stack", "--json", "--no-layer", "nodes"], &repo());
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["layers"].as_array().unwrap().len(), 4);
    assert_eq!(v["excluded"][0]["file"], "pak7.txt");
}

#[test]
fn cli_stack_text_and_errors() {
    let out = comfypak(&["stack"], &repo());
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("1 stable"), "{text}");
    assert!(text.contains("3 nodes"), "{text}");
    assert!(text.contains("5 volatile"), "{text}");
    assert!(text.contains("needs a build"), "{text}");

    let dir = tempfile::tempdir().unwrap();
    let out = comfypak(&["stack", "--stack", "nowhere"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains("nowhere"), "{err}");
}

#[test]
fn cli_tags_prints_packaging_order() {
    let out = comfypak(
        &[
            "tags",
            "--python",
            "3.14",
            "--platform",
            "manylinux_2_39_x86_64",
        ],
        &repo(),
    );
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "cp314-cp314-linux_x86_64");
    assert_eq!(lines[1], "cp314-cp314-manylinux_2_39_x86_64");
    assert_eq!(*lines.last().unwrap(), "py30-none-any");
    assert!(lines.contains(&"cp32-abi3-manylinux2014_x86_64"));

    let out = comfypak(&["tags", "--platform", "win_amd64"], &repo());
    assert_eq!(out.status.code(), Some(2));
}

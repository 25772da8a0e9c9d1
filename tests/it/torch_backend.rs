//! The torch backend routes the whole torch family, over real HTTP on 127.0.0.1: a new
//! user's stack with no index pins, `torch-backend = "cpu"` and a pak line `timm` (which
//! pulls torch and torchvision) gets torch `+cpu` from the CPU index and no CUDA wheel at
//! all; `cu128` gets the `+cu128` builds and the CUDA 12 runtime wheels from the cu128
//! index; an explicit pin of a family package to another index wins, with a warning that
//! names it; a CUDA runtime wheel required under `cpu` is refused with the reason.
//!
//! The fixtures follow the real pages: the public index carries one CUDA 13 build of torch
//! (`torch-2.15.0-cp314-cp314-manylinux_2_28_x86_64.whl`, Requires-Dist on cuda-toolkit,
//! nvidia-cudnn-cu13, nvidia-nccl-cu13 and triton, as torch 2.11.0+cu130's METADATA in
//! `reference/` reads), the CPU index `torch-2.15.0+cpu-...` with no CUDA requirement, the
//! cu128 index `torch-2.15.0+cu128-...` with the `-cu12` runtime wheels.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;

use comfypak::lock::Lock;
use comfypak::resolve::to_lock::{resolve_stack, UpgradeRequest};
use comfypak::resolve::{NoProgress, ResolveProgress};
use comfypak::stack::Stack;
use comfypak::target::Target;
use comfypak_testkit::{FixtureIndex, FixtureIndexBuilder, ServerOptions, TestServer, WheelSpec};

use crate::common::{client, rt, write_index_definitions};

const X86: &str = "3.14:manylinux_2_39_x86_64";
const ARM: &str = "3.14:manylinux_2_39_aarch64";
const ARCHES: [&str; 2] = ["manylinux_2_28_x86_64", "manylinux_2_28_aarch64"];

/// torch's own pure-Python requirements (torch 2.11.0+cu130's METADATA, reference/).
const TORCH_BASE: [&str; 7] = [
    "filelock",
    "typing-extensions>=4.10.0",
    "setuptools<82",
    "sympy>=1.13.3",
    "networkx>=2.5.1",
    "jinja2",
    "fsspec>=0.8.5",
];

/// One wheel per architecture, as the release pages publish them.
fn per_arch(mut builder: FixtureIndexBuilder, spec: impl Fn() -> WheelSpec) -> FixtureIndexBuilder {
    for arch in ARCHES {
        builder = builder.wheel(spec().tag(format!("cp314-cp314-{arch}")));
    }
    builder
}

fn torch(version: &str, extra: &[&str]) -> WheelSpec {
    WheelSpec::new("torch", version)
        .requires_dist(TORCH_BASE)
        .requires_dist(extra.iter().copied())
}

/// The public index stand-in: timm and what it needs, torch's CUDA 13 build and its CUDA
/// runtime wheels.
fn public_index() -> FixtureIndex {
    let mut b = FixtureIndex::builder()
        .package(
            "timm",
            "1.0.22",
            &[
                "torch",
                "torchvision",
                "pyyaml",
                "huggingface-hub",
                "safetensors",
            ],
        )
        .package("pyyaml", "6.0.3", &[])
        .package(
            "huggingface-hub",
            "0.36.0",
            &["filelock", "fsspec>=2023.5.0"],
        )
        .package("safetensors", "0.6.2", &[])
        .package("filelock", "3.20.0", &[])
        .package("typing-extensions", "4.15.0", &[])
        .package("setuptools", "80.9.0", &[])
        .package("sympy", "1.14.0", &["mpmath<1.4,>=1.1.0"])
        .package("mpmath", "1.3.0", &[])
        .package("networkx", "3.5", &[])
        .package("jinja2", "3.1.6", &["MarkupSafe>=2.0"])
        .package("markupsafe", "3.0.3", &[])
        .package("fsspec", "2025.9.0", &[])
        .package("numpy", "2.3.4", &[])
        .package("pillow", "12.0.0", &[])
        .package("cuda-pathfinder", "1.8.1", &[])
        .package("cuda-bindings", "13.3.1", &["cuda-pathfinder>=1.4.2"])
        .wheel(
            WheelSpec::new("cuda-toolkit", "13.0.2")
                .provides_extra("cublas")
                .requires("nvidia-cublas==13.*; extra == \"cublas\""),
        );
    for (name, version) in [
        ("nvidia-cublas", "13.1.0.3"),
        ("nvidia-cudnn-cu13", "9.19.0.56"),
        ("nvidia-nccl-cu13", "2.28.9"),
        ("triton", "3.7.0"),
    ] {
        b = per_arch(b, || WheelSpec::new(name, version));
    }
    b = per_arch(b, || {
        torch(
            "2.15.0",
            &[
                "cuda-toolkit[cublas]==13.0.2; platform_system == \"Linux\"",
                "cuda-bindings<14,>=13.0.3; platform_system == \"Linux\"",
                "nvidia-cudnn-cu13==9.19.0.56; platform_system == \"Linux\"",
                "nvidia-nccl-cu13==2.28.9; platform_system == \"Linux\"",
                "triton==3.7.0; platform_system == \"Linux\"",
            ],
        )
    });
    b = per_arch(b, || {
        WheelSpec::new("torchvision", "0.30.0").requires_dist([
            "numpy",
            "torch==2.15.0",
            "pillow!=8.3.*,>=5.3.0",
        ])
    });
    b.build()
}

/// The CPU index: `+cpu` builds, no CUDA requirement.
fn cpu_index() -> FixtureIndex {
    let mut b = FixtureIndex::builder();
    b = per_arch(b, || torch("2.15.0+cpu", &[]));
    b = per_arch(b, || {
        WheelSpec::new("torchvision", "0.30.0+cpu").requires_dist([
            "numpy",
            "torch==2.15.0",
            "pillow!=8.3.*,>=5.3.0",
        ])
    });
    b.build()
}

/// The cu128 index: `+cu128` builds and the `-cu12` runtime wheels they pin.
fn cu128_index() -> FixtureIndex {
    let mut b = FixtureIndex::builder();
    for (name, version, requires) in [
        ("nvidia-cublas-cu12", "12.8.4.1", vec![]),
        ("nvidia-cudnn-cu12", "9.10.2.21", vec!["nvidia-cublas-cu12"]),
        ("triton", "3.7.0", vec![]),
    ] {
        b = per_arch(b, || {
            WheelSpec::new(name, version).requires_dist(requires.clone())
        });
    }
    b = per_arch(b, || {
        torch(
            "2.15.0+cu128",
            &[
                "nvidia-cublas-cu12==12.8.4.1; platform_system == \"Linux\"",
                "nvidia-cudnn-cu12==9.10.2.21; platform_system == \"Linux\"",
                "triton==3.7.0; platform_system == \"Linux\"",
            ],
        )
    });
    b = per_arch(b, || {
        WheelSpec::new("torchvision", "0.30.0+cu128").requires_dist([
            "numpy",
            "torch==2.15.0",
            "pillow!=8.3.*,>=5.3.0",
        ])
    });
    b.build()
}

struct Servers {
    public: TestServer,
    cpu: TestServer,
    cu128: TestServer,
}

impl Servers {
    fn start() -> Servers {
        let serve = |index: &FixtureIndex| TestServer::serve_index(index, ServerOptions::default());
        Servers {
            public: serve(&public_index()),
            cpu: serve(&cpu_index()),
            cu128: serve(&cu128_index()),
        }
    }
}

/// A stack as a new user writes it: no pins (unless `pins`), the public index as default,
/// the shipped index definitions (the backend indexes among them).
fn write_stack(dir: &Path, servers: &Servers, backend: &str, pak: &str, pins: &str) -> PathBuf {
    let public = servers.public.simple_url();
    let cpu = servers.cpu.simple_url();
    let cu128 = servers.cu128.simple_url();
    write_index_definitions(
        dir,
        &[
            ("pypi", public.as_str(), "simple"),
            ("pytorch-cpu", cpu.as_str(), "simple"),
            ("pytorch-cu128", cu128.as_str(), "simple"),
            // Never reached by these stacks.
            (
                "pytorch-cu130",
                "http://127.0.0.1:9/cu130/simple/",
                "simple",
            ),
            (
                "pytorch-cu126",
                "http://127.0.0.1:9/cu126/simple/",
                "simple",
            ),
        ],
    );
    let stack = dir.join("pak");
    std::fs::create_dir_all(&stack).unwrap();
    std::fs::write(stack.join("pak2.txt"), pak).unwrap();
    std::fs::write(
        stack.join("stack.toml"),
        format!(
            "[stack]\nname = \"newuser\"\nindex-dir = \"../indexes\"\n\n[target]\n\
             python = \"3.14\"\nplatforms = [\"manylinux_2_39_x86_64\", \"manylinux_2_39_aarch64\"]\n\
             venv = \"/opt/venv\"\ntorch-backend = \"{backend}\"\n\n[indexes]\n\
             default = [\"pypi\"]\n{pins}\n\n[[layer]]\nname = \"deps\"\npaks = [\"pak2.txt\"]\n"
        ),
    )
    .unwrap();
    stack
}

#[derive(Default)]
struct Warnings(Mutex<Vec<String>>);

impl ResolveProgress for Warnings {
    fn warning(&self, message: &str) {
        self.0.lock().unwrap().push(message.to_string());
    }
}

fn lock(stack_dir: &Path, progress: &dyn ResolveProgress) -> Result<Lock, String> {
    let stack = Stack::load(stack_dir).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let targets = [
        Target::from_str(X86).unwrap(),
        Target::from_str(ARM).unwrap(),
    ];
    rt().block_on(resolve_stack(
        &stack,
        &targets,
        &client(cache.path()),
        false,
        &UpgradeRequest::default(),
        None,
        progress,
    ))
    .map_err(|e| e.to_string())
}

fn versions_of<'a>(lock: &'a Lock, name: &str) -> Vec<&'a str> {
    lock.packages
        .iter()
        .filter(|p| p.name == name)
        .map(|p| p.version.as_str())
        .collect()
}

fn cuda_wheels(lock: &Lock) -> Vec<String> {
    lock.packages
        .iter()
        .filter(|p| {
            p.name.starts_with("nvidia-") || p.name.starts_with("cuda-") || p.name == "triton"
        })
        .map(|p| format!("{} {}", p.name, p.version))
        .collect()
}

#[test]
fn torch_backend_cpu_timm_gets_torch_cpu_from_the_cpu_index_and_no_cuda_wheel() {
    let servers = Servers::start();
    let dir = tempfile::tempdir().unwrap();
    let stack = write_stack(dir.path(), &servers, "cpu", "timm\n", "");
    let lock = lock(&stack, &NoProgress).unwrap();
    assert_eq!(lock.tool.comfypak.torch_backend, "cpu");
    assert_eq!(versions_of(&lock, "torch"), ["2.15.0+cpu"]);
    assert_eq!(versions_of(&lock, "torchvision"), ["0.30.0+cpu"]);
    assert_eq!(versions_of(&lock, "timm"), ["1.0.22"]);
    assert_eq!(cuda_wheels(&lock), Vec::<String>::new());
    let cpu_url = servers.cpu.simple_url();
    for family in ["torch", "torchvision"] {
        let entry = lock.packages.iter().find(|p| p.name == family).unwrap();
        assert_eq!(entry.index.as_deref(), Some(cpu_url.as_str()), "{family}");
        for wheel in &entry.wheels {
            assert!(
                wheel.name.contains("+cpu-cp314-cp314-manylinux_2_28_"),
                "{}",
                wheel.name
            );
        }
    }
    // The public index was asked for timm's own requirements, never for torch.
    assert_eq!(servers.public.requests_for("/torch/"), 0);
}

#[test]
fn torch_backend_cu128_timm_gets_the_cu128_builds_and_their_cuda_12_wheels() {
    let servers = Servers::start();
    let dir = tempfile::tempdir().unwrap();
    let stack = write_stack(dir.path(), &servers, "cu128", "timm\n", "");
    let lock = lock(&stack, &NoProgress).unwrap();
    assert_eq!(versions_of(&lock, "torch"), ["2.15.0+cu128"]);
    assert_eq!(versions_of(&lock, "torchvision"), ["0.30.0+cu128"]);
    let mut cuda = cuda_wheels(&lock);
    cuda.sort();
    assert_eq!(
        cuda,
        [
            "nvidia-cublas-cu12 12.8.4.1",
            "nvidia-cudnn-cu12 9.10.2.21",
            "triton 3.7.0"
        ]
    );
    let cu128_url = servers.cu128.simple_url();
    for name in ["torch", "torchvision", "triton", "nvidia-cudnn-cu12"] {
        let entry = lock.packages.iter().find(|p| p.name == name).unwrap();
        assert_eq!(entry.index.as_deref(), Some(cu128_url.as_str()), "{name}");
    }
    assert_eq!(servers.public.requests_for("/torch/"), 0);
    assert_eq!(servers.public.requests_for("/triton/"), 0);
}

#[test]
fn torch_backend_explicit_pin_to_another_index_wins_with_a_warning_naming_it() {
    let servers = Servers::start();
    let dir = tempfile::tempdir().unwrap();
    let stack = write_stack(
        dir.path(),
        &servers,
        "cpu",
        "timm\n",
        "\n[indexes.pins]\npypi = [\"torchvision\"]\n",
    );
    let warnings = Warnings::default();
    let lock = lock(&stack, &warnings).unwrap();
    assert_eq!(versions_of(&lock, "torch"), ["2.15.0+cpu"]);
    assert_eq!(
        versions_of(&lock, "torchvision"),
        ["0.30.0"],
        "the pin wins"
    );
    let seen = warnings.0.lock().unwrap().clone();
    assert!(!seen.is_empty());
    for warning in &seen {
        assert!(
            warning.contains("takes `torchvision` from index `pypi`, not from `pytorch-cpu`"),
            "{warning}"
        );
        assert!(warning.contains("backend cpu"), "{warning}");
    }
}

#[test]
fn torch_backend_cpu_refuses_a_cuda_runtime_wheel_with_the_reason() {
    let servers = Servers::start();
    let dir = tempfile::tempdir().unwrap();
    let stack = write_stack(dir.path(), &servers, "cpu", "timm\nnvidia-cudnn-cu13\n", "");
    let err = lock(&stack, &NoProgress).unwrap_err();
    assert!(
        err.contains("backend cpu has no CUDA: nvidia-cudnn-cu13 is a CUDA runtime wheel"),
        "{err}"
    );
    assert_eq!(servers.public.requests_for("/nvidia-cudnn-cu13/"), 0);
}

#[test]
fn torch_backend_family_without_the_backend_index_definition_says_what_to_add() {
    let servers = Servers::start();
    let dir = tempfile::tempdir().unwrap();
    let stack = write_stack(dir.path(), &servers, "cpu", "timm\n", "");
    std::fs::remove_file(dir.path().join("indexes/pytorch-cpu.toml")).unwrap();
    let err = lock(&stack, &NoProgress).unwrap_err();
    assert!(
        err.contains("no index definition `pytorch-cpu` exists in"),
        "{err}"
    );
    assert!(err.contains("--index pytorch-cpu=URL"), "{err}");
    assert_eq!(servers.public.requests_for("/torch/"), 0);
}

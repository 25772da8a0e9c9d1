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

use comfypak::cuda::Backend;
use comfypak::lock::Lock;
use comfypak::resolve::backend::select_backend;
use comfypak::resolve::to_lock::{resolve_stack, StackRequest};
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

/// The cu126 index: `+cu126` builds and the `-cu12` runtime wheel they pin.
fn cu126_index() -> FixtureIndex {
    let mut b = FixtureIndex::builder();
    b = per_arch(b, || WheelSpec::new("nvidia-cublas-cu12", "12.6.4.1"));
    b = per_arch(b, || {
        torch(
            "2.15.0+cu126",
            &["nvidia-cublas-cu12==12.6.4.1; platform_system == \"Linux\""],
        )
    });
    b = per_arch(b, || {
        WheelSpec::new("torchvision", "0.30.0+cu126").requires_dist([
            "numpy",
            "torch==2.15.0",
            "pillow!=8.3.*,>=5.3.0",
        ])
    });
    b.build()
}

/// A find-links page of SageAttention 2.2.0 builds for cp314 x86_64: the plain file and the
/// one whose build tag says `hopper` (a name pip and uv refuse: the build tag must start
/// with a digit), or only the hopper one.
fn sage_index(with_plain: bool) -> FixtureIndex {
    let mut b = FixtureIndex::builder().wheel(
        WheelSpec::new("sageattention", "2.2.0")
            .build_tag("hopper")
            .tag("cp314-cp314-linux_x86_64"),
    );
    if with_plain {
        b = b.wheel(WheelSpec::new("sageattention", "2.2.0").tag("cp314-cp314-linux_x86_64"));
    }
    b.build()
}

struct Servers {
    public: TestServer,
    cpu: TestServer,
    cu128: TestServer,
    cu126: TestServer,
    perf: TestServer,
}

impl Servers {
    fn start() -> Servers {
        Servers::with_perf(sage_index(true))
    }

    fn with_perf(perf: FixtureIndex) -> Servers {
        let serve = |index: &FixtureIndex| TestServer::serve_index(index, ServerOptions::default());
        Servers {
            public: serve(&public_index()),
            cpu: serve(&cpu_index()),
            cu128: serve(&cu128_index()),
            cu126: serve(&cu126_index()),
            perf: serve(&perf),
        }
    }
}

/// A stack as a new user writes it: no pins (unless `pins`), the public index as default,
/// the shipped index definitions (the backend indexes among them).
fn write_stack(dir: &Path, servers: &Servers, backend: &str, pak: &str, pins: &str) -> PathBuf {
    write_stack_for(dir, servers, backend, "", pak, pins)
}

/// [`write_stack`] with more `[target]` lines (`gpus = [...]`).
fn write_stack_for(
    dir: &Path,
    servers: &Servers,
    backend: &str,
    target: &str,
    pak: &str,
    pins: &str,
) -> PathBuf {
    let public = servers.public.simple_url();
    let cpu = servers.cpu.simple_url();
    let cu128 = servers.cu128.simple_url();
    let cu126 = servers.cu126.simple_url();
    let perf = servers.perf.find_links_url();
    write_index_definitions(
        dir,
        &[
            ("pypi", public.as_str(), "simple"),
            ("pytorch-cpu", cpu.as_str(), "simple"),
            ("pytorch-cu128", cu128.as_str(), "simple"),
            ("pytorch-cu126", cu126.as_str(), "simple"),
            ("perf-wheels", perf.as_str(), "find-links"),
            // Never reached by these stacks.
            (
                "pytorch-cu130",
                "http://127.0.0.1:9/cu130/simple/",
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
             venv = \"/opt/venv\"\ntorch-backend = \"{backend}\"\n{target}\n\n[indexes]\n\
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
    lock_for(stack_dir, &[X86, ARM], progress)
}

fn lock_for(
    stack_dir: &Path,
    targets: &[&str],
    progress: &dyn ResolveProgress,
) -> Result<Lock, String> {
    let stack = Stack::load(stack_dir).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let targets: Vec<Target> = targets
        .iter()
        .map(|t| Target::from_str(t).unwrap())
        .collect();
    // The backend is chosen once, as `build` does, and passed in.
    let backend =
        comfypak::resolve::backend::select_backend(&stack.target.torch_backend, &stack.target)
            .map_err(|e| e.to_string())?
            .backend;
    rt().block_on(resolve_stack(
        &stack,
        &client(cache.path()),
        &StackRequest::new(&targets, backend),
        progress,
    ))
    .map_err(|e| e.to_string())
}

fn versions_of(lock: &Lock, name: &str) -> Vec<String> {
    lock.packages
        .iter()
        .filter(|p| p.name.as_ref() == name)
        .map(|p| p.version.to_string())
        .collect()
}

fn cuda_wheels(lock: &Lock) -> Vec<String> {
    lock.packages
        .iter()
        .filter(|p| {
            p.name.as_ref().starts_with("nvidia-")
                || p.name.as_ref().starts_with("cuda-")
                || p.name.as_ref() == "triton"
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
    assert_eq!(lock.tool.comfypak.torch_backend.to_string(), "cpu");
    assert_eq!(versions_of(&lock, "torch"), ["2.15.0+cpu"]);
    assert_eq!(versions_of(&lock, "torchvision"), ["0.30.0+cpu"]);
    assert_eq!(versions_of(&lock, "timm"), ["1.0.22"]);
    assert_eq!(cuda_wheels(&lock), Vec::<String>::new());
    let cpu_url = servers.cpu.simple_url();
    for family in ["torch", "torchvision"] {
        let entry = lock
            .packages
            .iter()
            .find(|p| p.name.as_ref() == family)
            .unwrap();
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
        let entry = lock
            .packages
            .iter()
            .find(|p| p.name.as_ref() == name)
            .unwrap();
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

/// The backend a stack's setting selects for its target, or the error text.
fn selected(stack_dir: &Path) -> Result<(Backend, String), String> {
    let stack = Stack::load(stack_dir).unwrap();
    select_backend(&stack.target.torch_backend, &stack.target)
        .map(|s| (s.backend, s.why))
        .map_err(|e| comfypak::diagnostic::with_help(&e))
}

#[test]
fn torch_gpus_sm_61_refuses_cu130_and_auto_picks_cu126_naming_sm_61() {
    let servers = Servers::start();
    let dir = tempfile::tempdir().unwrap();
    let gpus = "gpus = [\"sm_61\"]";
    let stack = write_stack_for(dir.path(), &servers, "auto", gpus, "timm\n", "");
    let (backend, why) = selected(&stack).unwrap();
    assert_eq!(backend, Backend::Cu126, "{why}");
    assert!(why.contains("target.gpus sm_61"), "{why}");
    assert!(
        why.contains("cu126 covers sm_61 by its sm_60 kernels"),
        "{why}"
    );
    assert!(
        why.contains("cu130 torch builds for x86_64 carry kernels for sm_75, sm_80"),
        "{why}"
    );
    assert!(
        why.contains("none of which runs on sm_61 (Pascal)"),
        "{why}"
    );

    let locked = lock(&stack, &NoProgress).unwrap();
    assert_eq!(locked.tool.comfypak.torch_backend.to_string(), "cu126");
    assert_eq!(locked.tool.comfypak.target.gpus, ["sm_61".parse().unwrap()]);
    assert_eq!(versions_of(&locked, "torch"), ["2.15.0+cu126"]);
    assert_eq!(versions_of(&locked, "nvidia-cublas-cu12"), ["12.6.4.1"]);

    // Set explicitly, cu130 is refused with the architecture named and what to do.
    let stack = write_stack_for(dir.path(), &servers, "cu130", gpus, "timm\n", "");
    let err = selected(&stack).unwrap_err();
    assert!(err.contains("torch backend cu130 does not cover"), "{err}");
    assert!(err.contains("sm_61 (Pascal)"), "{err}");
    assert!(
        err.contains("set target.torch-backend (or --torch-backend) to cu126"),
        "{err}"
    );
    let err = lock(&stack, &NoProgress).unwrap_err();
    assert!(err.contains("sm_61 (Pascal)"), "{err}");
}

#[test]
fn torch_gpus_sm_120_refuses_cu126_and_auto_picks_cu130() {
    let servers = Servers::start();
    let dir = tempfile::tempdir().unwrap();
    let gpus = "gpus = [\"sm_120\"]";
    let stack = write_stack_for(dir.path(), &servers, "cu126", gpus, "timm\n", "");
    let err = selected(&stack).unwrap_err();
    assert!(err.contains("torch backend cu126 does not cover"), "{err}");
    assert!(
        err.contains("cu126 torch builds for x86_64 carry kernels for sm_50, sm_60, sm_70, sm_75, sm_80, sm_86, sm_90"),
        "{err}"
    );
    assert!(
        err.contains("none of which runs on sm_120 (Blackwell)"),
        "{err}"
    );
    assert!(err.contains("to cu130 or cu128"), "{err}");
    let err = lock(&stack, &NoProgress).unwrap_err();
    assert!(err.contains("sm_120 (Blackwell)"), "{err}");

    let stack = write_stack_for(dir.path(), &servers, "auto", gpus, "timm\n", "");
    assert_eq!(selected(&stack).unwrap().0, Backend::Cu130);
    // A family name and a driver floor: Blackwell with driver 570 leaves cu130 (>= 580) out.
    let target = "gpus = [\"blackwell\"]\nmin-driver = \"570.86\"";
    let stack = write_stack_for(dir.path(), &servers, "auto", target, "timm\n", "");
    let (backend, why) = selected(&stack).unwrap();
    assert_eq!(backend, Backend::Cu128, "{why}");
    assert!(
        why.contains("cu130 needs NVIDIA driver >= 580 and target.min-driver is 570.86"),
        "{why}"
    );
    // Nothing covers Maxwell and Blackwell together with a 570 driver... cu126 does not
    // build for Blackwell, cu128 and cu130 not for Maxwell.
    let target = "gpus = [\"sm_50\", \"sm_120\"]";
    let stack = write_stack_for(dir.path(), &servers, "auto", target, "timm\n", "");
    let err = selected(&stack).unwrap_err();
    assert!(
        err.contains("no backend covers the stack's target"),
        "{err}"
    );
    assert!(
        err.contains("sm_50 (Maxwell)") && err.contains("sm_120 (Blackwell)"),
        "{err}"
    );
}

#[test]
fn torch_gpus_auto_without_gpus_says_it_read_this_host() {
    let servers = Servers::start();
    let dir = tempfile::tempdir().unwrap();
    let stack = write_stack(dir.path(), &servers, "auto", "timm\n", "");
    let (_, why) = selected(&stack).unwrap();
    assert!(
        why.contains("the stack declares no target.gpus, so this build host was read"),
        "{why}"
    );
}

const SAGE_PIN: &str = "\n[indexes.pins]\nperf-wheels = [\"sageattention\"]\n";

fn sage_wheel(lock: &Lock) -> String {
    let entry = lock
        .packages
        .iter()
        .find(|p| p.name.as_ref() == "sageattention")
        .unwrap();
    entry.wheels[0].name.to_string()
}

#[test]
fn torch_gpus_hopper_build_tag_orders_after_the_plain_file() {
    // Fails on the old main: `hopper` ordered as build 0, above the file without a build tag.
    let servers = Servers::start();
    let dir = tempfile::tempdir().unwrap();
    let stack = write_stack(dir.path(), &servers, "cpu", "sageattention\n", SAGE_PIN);
    let lock = lock_for(&stack, &[X86], &NoProgress).unwrap();
    assert_eq!(
        sage_wheel(&lock),
        "sageattention-2.2.0-cp314-cp314-linux_x86_64.whl"
    );
}

#[test]
fn torch_gpus_sageattention_hopper_build_is_refused_for_sm_89() {
    let servers = Servers::with_perf(sage_index(false));
    let dir = tempfile::tempdir().unwrap();
    let sm89 = "gpus = [\"sm_89\"]";
    let stack = write_stack_for(
        dir.path(),
        &servers,
        "auto",
        sm89,
        "sageattention\n",
        SAGE_PIN,
    );
    let err = lock_for(&stack, &[X86], &NoProgress).unwrap_err();
    assert!(
        err.contains("sageattention-2.2.0-hopper-cp314-cp314-linux_x86_64.whl is built only for sm_90 (its build tag `hopper` names sm_90)"),
        "{err}"
    );
    assert!(
        err.contains("no kernel for target.gpus sm_89 (Ada Lovelace)"),
        "{err}"
    );

    // For Hopper it is the build to take.
    let sm90 = "gpus = [\"sm_90\"]";
    let stack = write_stack_for(
        dir.path(),
        &servers,
        "auto",
        sm90,
        "sageattention\n",
        SAGE_PIN,
    );
    let lock = lock_for(&stack, &[X86], &NoProgress).unwrap();
    assert_eq!(
        sage_wheel(&lock),
        "sageattention-2.2.0-hopper-cp314-cp314-linux_x86_64.whl"
    );
}

#[test]
fn torch_gpus_an_unknown_architecture_is_a_stack_error_naming_the_key() {
    let servers = Servers::start();
    let dir = tempfile::tempdir().unwrap();
    let stack = write_stack_for(
        dir.path(),
        &servers,
        "auto",
        "gpus = [\"h100\"]",
        "timm\n",
        "",
    );
    let err = Stack::load(&stack).unwrap_err().to_string();
    assert!(err.contains("`target.gpus`"), "{err}");
    assert!(err.contains("unknown GPU architecture \"h100\""), "{err}");
    assert!(err.contains("hopper"), "{err}");
}

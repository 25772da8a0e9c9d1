//! ABI coupling as a constraint of the resolution, and the torch backend as a setting, over
//! real HTTP on 127.0.0.1: the real `pytorch-cu130` and `perf-wheels` fixture indexes, a
//! small `pytorch-cu128` index and a small public-index stand-in built here. The default
//! stack's flash-attn / sageattention builds for torch 2.11 / CUDA 13 / cp314 on both
//! architectures with their build-reason; `--torch-backend cu128` moving the torch family to
//! the cu128 index and picking the cu12 builds, or explaining that none exists; a torch with
//! no flash-attn build explained build by build; backtracking to the torch a build exists
//! for; a declared coupling of an unlabelled wheel enforced; the `-hopper-` file name warning
//! on stderr; the pin mapping of backends; `auto`; and the `[couplings]` table of a stack.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::str::FromStr;

use comfypak::cuda::{assess, read_host, Backend, CudaVersion, HostSources, TorchSeries};
use comfypak::lock::{Lock, LockedPackage};
use comfypak::resolve::backend::{indexes_for_backend, is_backend_index, select_backend};
use comfypak::resolve::to_lock::{resolve_stack, StackRequest};
use comfypak::resolve::{
    resolve_target, NoProgress, Resolution, ResolveError, ResolveOptions, ResolveProgress,
};
use comfypak::stack::Stack;
use comfypak::target::Target;
use comfypak_testkit::{FixtureIndex, ServerOptions, TestServer, WheelSpec};

use crate::common::{client, name, rt, write_index_definitions};

const X86: &str = "3.14:manylinux_2_39_x86_64";
const ARM: &str = "3.14:manylinux_2_39_aarch64";

fn serve(index: &FixtureIndex) -> TestServer {
    TestServer::serve_index(index, ServerOptions::default())
}

/// What the PyTorch index's torch wheels need from the public index, and einops for
/// flash-attn: a small stand-in for the public index.
fn pypi_index() -> FixtureIndex {
    FixtureIndex::builder()
        .package("einops", "0.8.1", &[])
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
        .build()
}

/// A small PyTorch `cu128` index: torch 2.11.0+cu128 and its family, both architectures.
fn pytorch_cu128_index() -> FixtureIndex {
    let tags = |wheel: WheelSpec| {
        wheel.tags([
            "cp314-cp314-manylinux_2_28_x86_64",
            "cp314-cp314-manylinux_2_28_aarch64",
        ])
    };
    FixtureIndex::builder()
        .wheel(tags(WheelSpec::new("torch", "2.11.0+cu128").requires_dist(
            [
                "filelock",
                "typing-extensions>=4.10.0",
                "triton==3.6.0; platform_system == \"Linux\"",
            ],
        )))
        .wheel(tags(
            WheelSpec::new("torchvision", "0.26.0+cu128").requires_dist([
                "numpy",
                "torch==2.11.0",
                "pillow!=8.3.*,>=5.3.0",
            ]),
        ))
        .wheel(tags(
            WheelSpec::new("torchaudio", "2.11.0+cu128").requires_dist(["torch==2.11.0"]),
        ))
        .wheel(tags(WheelSpec::new("triton", "3.6.0")))
        .build()
}

/// The fixture servers of one test.
struct Servers {
    pypi: TestServer,
    cu130: TestServer,
    cu128: TestServer,
    perf: TestServer,
}

impl Servers {
    fn start() -> Servers {
        Servers {
            pypi: serve(&pypi_index()),
            cu130: serve(&FixtureIndex::pytorch_cu130().unwrap()),
            cu128: serve(&pytorch_cu128_index()),
            perf: serve(&FixtureIndex::perf_wheels().unwrap()),
        }
    }

    /// (name, URL, kind) of every index, as `indexes/*.toml` files declare them.
    fn definitions(&self) -> Vec<(&'static str, String, &'static str)> {
        vec![
            ("pypi", self.pypi.simple_url(), "simple"),
            ("pytorch-cu130", self.cu130.simple_url(), "simple"),
            ("pytorch-cu128", self.cu128.simple_url(), "simple"),
            ("perf-wheels", self.perf.find_links_url(), "find-links"),
            // Never reached: no test resolves torch on cpu.
            (
                "pytorch-cpu",
                "http://127.0.0.1:9/cpu/simple/".to_string(),
                "simple",
            ),
        ]
    }
}

/// The default stack's shape: the torch family pinned to `pytorch-cu130` (as the shipped
/// stack.toml writes it), flash-attn and sageattention to `perf-wheels`.
const DEFAULT_PINS: &str = "[indexes.pins]\n\
    pytorch-cu130 = [\"torch\", \"torchvision\", \"torchaudio\", \"triton\", \"cuda-*\", \"nvidia-*\"]\n\
    perf-wheels = [\"flash-attn\", \"sageattention\", \"sageattn3\"]\n";

/// A stack folder under `dir`: `indexes/` with `definitions`, `pak/stack.toml` with a
/// `stable` layer (`stable`) and a `perf` layer (`perf`), the pins and `extra` TOML.
fn write_stack(
    dir: &Path,
    definitions: &[(&str, String, &str)],
    backend: &str,
    stable: &str,
    perf: &str,
    extra: &str,
) -> PathBuf {
    let definitions: Vec<(&str, &str, &str)> = definitions
        .iter()
        .map(|(index, url, kind)| (*index, url.as_str(), *kind))
        .collect();
    write_index_definitions(dir, &definitions);
    let pak = dir.join("pak");
    std::fs::create_dir_all(&pak).unwrap();
    std::fs::write(pak.join("pak1.txt"), stable).unwrap();
    std::fs::write(pak.join("pak6.txt"), perf).unwrap();
    let manifest = format!(
        "[stack]\nname = \"abi\"\nindex-dir = \"../indexes\"\n\n[target]\npython = \"3.14\"\n\
         platforms = [\"manylinux_2_39_x86_64\", \"manylinux_2_39_aarch64\"]\n\
         venv = \"/opt/venv\"\ntorch-backend = \"{backend}\"\n\n[indexes]\ndefault = [\"pypi\"]\n\n\
         {DEFAULT_PINS}\n[[layer]]\nname = \"stable\"\npaks = [\"pak1.txt\"]\n\n\
         [[layer]]\nname = \"perf\"\npaks = [\"pak6.txt\"]\n\n{extra}\n"
    );
    std::fs::write(pak.join("stack.toml"), manifest).unwrap();
    pak
}

const STABLE: &str = "torch==2.11.0\ntorchvision==0.26.0\ntorchaudio==2.11.0\n";
const PERF: &str = "flash-attn\nsageattention\ntriton\n";

fn lock_stack(pak: &Path) -> Result<Lock, String> {
    let stack = Stack::load(pak).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let client = client(cache.path());
    let targets = [
        Target::from_str(X86).unwrap(),
        Target::from_str(ARM).unwrap(),
    ];
    // The backend is chosen once, as `build` does, and passed in.
    let backend =
        comfypak::resolve::backend::select_backend(&stack.target.torch_backend, &stack.target)
            .map_err(|e| comfypak::diagnostic::with_help(&e))?
            .backend;
    rt().block_on(resolve_stack(
        &stack,
        &client,
        &StackRequest::new(&targets, backend),
        &NoProgress,
    ))
    .map_err(|e| {
        let message = comfypak::diagnostic::with_help(&e);
        println!("{message}\n---");
        message
    })
}

fn resolve_one(pak: &Path, target: &str) -> Result<Resolution, String> {
    let stack = Stack::load(pak).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let client = client(cache.path());
    let target = Target::from_str(target).unwrap();
    // The backend is chosen once, as `build` does, and passed in.
    let backend =
        comfypak::resolve::backend::select_backend(&stack.target.torch_backend, &stack.target)
            .map_err(|e| comfypak::diagnostic::with_help(&e))?
            .backend;
    rt().block_on(resolve_target(
        &stack,
        &target,
        &client,
        &ResolveOptions::new(backend),
        &NoProgress,
    ))
    .map_err(|e: ResolveError| {
        let message = comfypak::diagnostic::with_help(&e);
        println!("{message}\n---");
        message
    })
}

fn entry<'a>(lock: &'a Lock, package: &str) -> &'a LockedPackage {
    let mut found = lock.packages.iter().filter(|p| p.name.as_ref() == package);
    let first = found
        .next()
        .unwrap_or_else(|| panic!("{package} is not in the lock"));
    assert!(found.next().is_none(), "{package} has several entries");
    first
}

fn wheel_names(package: &LockedPackage) -> Vec<&str> {
    package.wheels.iter().map(|w| w.name.as_str()).collect()
}

fn comfypak(args: &[&str], cwd: &Path, cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_comfypak"))
        .args(args)
        .current_dir(cwd)
        .env("COMFYPAK_CACHE_DIR", cache)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn resolve_abi_default_stack_picks_the_torch_2_11_cuda_13_builds_on_both_arches() {
    let servers = Servers::start();
    let dir = tempfile::tempdir().unwrap();
    let pak = write_stack(
        dir.path(),
        &servers.definitions(),
        "cu130",
        STABLE,
        PERF,
        "",
    );
    let lock = lock_stack(&pak).unwrap();
    assert_eq!(lock.tool.comfypak.torch_backend.to_string(), "cu130");
    assert_eq!(entry(&lock, "torch").version.to_string(), "2.11.0+cu130");

    let flash = entry(&lock, "flash-attn");
    assert_eq!(flash.version.to_string(), "2.8.3+cu13torch2.11cxx11abitrue");
    assert_eq!(flash.marker, None, "one build for both architectures");
    let mut wheels = wheel_names(flash);
    wheels.sort();
    assert_eq!(
        wheels,
        [
            "flash_attn-2.8.3+cu13torch2.11cxx11abiTRUE-cp314-cp314-linux_aarch64.whl",
            "flash_attn-2.8.3+cu13torch2.11cxx11abiTRUE-cp314-cp314-linux_x86_64.whl",
        ]
    );
    assert_eq!(
        flash.tool.comfypak.build_reason.as_deref(),
        Some(
            "built for CUDA 13, torch 2.11, C++11 ABI (local label +cu13torch2.11cxx11abiTRUE); \
             resolved torch 2.11.0+cu130 on backend cu130"
        )
    );
    assert_eq!(flash.tool.comfypak.layer, "perf");

    let sage = entry(&lock, "sageattention");
    assert_eq!(sage.version.to_string(), "2.2.0+cu130torch2.11");
    let mut wheels = wheel_names(sage);
    wheels.sort();
    assert_eq!(
        wheels,
        [
            "sageattention-2.2.0+cu130torch2.11-cp314-cp314-linux_aarch64.whl",
            "sageattention-2.2.0+cu130torch2.11-cp314-cp314-linux_x86_64.whl",
        ],
        "the labelled cp314 builds, never the unlabelled -hopper- file"
    );
    assert_eq!(
        sage.tool.comfypak.build_reason.as_deref(),
        Some(
            "built for CUDA 13.0, torch 2.11 (local label +cu130torch2.11); resolved torch \
             2.11.0+cu130 on backend cu130"
        )
    );
    // sageattention's METADATA names no dependency; its build needs torch all the same.
    assert!(sage.dependencies.iter().any(|d| d.name.as_ref() == "torch"));
    // torch's own +cu130 label is a CUDA coupling too, checked against the backend.
    assert_eq!(
        entry(&lock, "torch").tool.comfypak.build_reason.as_deref(),
        Some("built for CUDA 13.0 (local label +cu130); backend cu130 ships CUDA 13.0")
    );
    // Unlabelled packages carry no build reason.
    assert_eq!(entry(&lock, "einops").tool.comfypak.build_reason, None);
    // Nothing outside the pinned family came from the PyTorch index.
    assert_eq!(servers.cu130.requests_for("/simple/einops/"), 0);
    assert_eq!(servers.cu130.requests_for("/simple/numpy/"), 0);
}

#[test]
fn resolve_abi_backend_cu128_moves_the_torch_family_and_picks_the_cu12_builds() {
    let servers = Servers::start();
    let dir = tempfile::tempdir().unwrap();
    // The stack says cu130 and pins to pytorch-cu130; the flag wins.
    let pak = write_stack(
        dir.path(),
        &servers.definitions(),
        "cu130",
        STABLE,
        "flash-attn\ntriton\n",
        "",
    );
    let cache = dir.path().join("cache");
    let out = comfypak(
        &[
            "resolve",
            "--stack",
            pak.to_str().unwrap(),
            "--torch-backend",
            "cu128",
            "-o",
            "cu128.toml",
        ],
        dir.path(),
        &cache,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lock = Lock::read(&dir.path().join("cu128.toml")).unwrap();
    assert_eq!(lock.tool.comfypak.torch_backend.to_string(), "cu128");
    let torch = entry(&lock, "torch");
    assert_eq!(torch.version.to_string(), "2.11.0+cu128");
    assert_eq!(
        torch.index.as_deref(),
        Some(servers.cu128.simple_url().as_str())
    );
    assert_eq!(torch.tool.comfypak.index_name, "pytorch-cu128");
    assert_eq!(
        entry(&lock, "torchvision").version.to_string(),
        "0.26.0+cu128"
    );
    assert_eq!(
        entry(&lock, "triton").tool.comfypak.index_name,
        "pytorch-cu128"
    );
    let flash = entry(&lock, "flash-attn");
    assert_eq!(flash.version.to_string(), "2.8.3+cu12torch2.11cxx11abitrue");
    assert_eq!(
        flash.tool.comfypak.build_reason.as_deref(),
        Some(
            "built for CUDA 12, torch 2.11, C++11 ABI (local label +cu12torch2.11cxx11abiTRUE); \
             resolved torch 2.11.0+cu128 on backend cu128"
        )
    );
    // The cu130 index was never asked for anything.
    assert!(servers.cu130.log().is_empty(), "{:?}", servers.cu130.log());
    assert_eq!(servers.cu128.requests_for("/simple/einops/"), 0);
}

#[test]
fn resolve_abi_backend_cu128_without_a_sageattention_build_explains_every_build() {
    let servers = Servers::start();
    let dir = tempfile::tempdir().unwrap();
    let pak = write_stack(
        dir.path(),
        &servers.definitions(),
        "cu128",
        STABLE,
        PERF,
        "",
    );
    let message = resolve_one(&pak, X86).unwrap_err();
    let derivation = message.find("PubGrub's derivation").unwrap();
    let summary = message
        .find(
            "sageattention 2.2.0: builds for torch 2.9, 2.10, 2.11 with CUDA 12.8, 13.0; \
             resolved torch is 2.11.0+cu128 (backend cu128, CUDA 12.8)",
        )
        .unwrap_or_else(|| panic!("no build summary in:\n{message}"));
    assert!(
        summary < derivation,
        "the builds come before PubGrub's text"
    );
    assert!(message.starts_with(
        "cannot resolve the stack for 3.14:manylinux_2_39_x86_64: no build of sageattention \
         fits torch 2.11.0+cu128"
    ));
    // Each build, and which part fails.
    assert!(message.contains(
        "sageattention-2.2.0+cu128torch2.9-cp314-cp314-linux_x86_64.whl: built for torch 2.9, \
         resolved torch is 2.11.0+cu128\n"
    ));
    assert!(message.contains(
        "sageattention-2.2.0+cu130torch2.11-cp314-cp314-linux_x86_64.whl: built for CUDA 13.0, \
         backend cu128 ships CUDA 12.8\n"
    ));
    assert!(message.contains(
        "sageattention-2.2.0-hopper-cp314-cp314-linux_x86_64.whl: no torch/CUDA local label"
    ));
    // And what to do.
    assert!(
        message.contains("a build fits torch 2.11 on backend cu130"),
        "{message}"
    );
}

#[test]
fn resolve_abi_torch_without_a_flash_attn_build_fails_with_the_builds_explained() {
    let servers = Servers::start();
    let dir = tempfile::tempdir().unwrap();
    let pak = write_stack(
        dir.path(),
        &servers.definitions(),
        "cu130",
        "torch==2.12.0rc1\n",
        "flash-attn\n",
        "",
    );
    let message = lock_stack(&pak).unwrap_err();
    let summary = message
        .find(
            "flash-attn 2.8.3: builds for torch 2.8, 2.9, 2.10, 2.11 with CUDA 12, 13; resolved \
             torch is 2.12.0rc1+cu130 (backend cu130, CUDA 13.0)",
        )
        .unwrap_or_else(|| panic!("no build summary in:\n{message}"));
    assert!(summary < message.find("PubGrub's derivation").unwrap());
    assert!(message.contains(
        "flash_attn-2.8.3+cu13torch2.11cxx11abiTRUE-cp314-cp314-linux_x86_64.whl: built for \
         torch 2.11, resolved torch is 2.12.0rc1+cu130\n"
    ));
    assert!(message.contains(
        "flash_attn-2.8.3+cu12torch2.11cxx11abiFALSE-cp314-cp314-linux_x86_64.whl: built for \
         torch 2.11, resolved torch is 2.12.0rc1+cu130; built for CUDA 12, backend cu130 ships \
         CUDA 13.0; built with the pre-C++11 ABI (cxx11abiFALSE)"
    ));
    assert!(message.contains(
        "pin torch to a series flash-attn is built for on backend cu130: torch==2.8.*, \
         torch==2.9.*, torch==2.10.*, torch==2.11.*"
    ));
    // The solver's own account names the coupling it enforced.
    assert!(message
        .contains("needs torch==2.11.* built with the C++11 ABI (ABI coupling: built for CUDA 13"));
}

/// The explanation of "no build fits" is the resolver's own classification: a build that
/// fits torch 2.11 and the target but that the resolver refuses (here: the pak line's
/// `--hash` names none of its files) is explained as refused, and why, never as fitting.
#[test]
fn resolve_abi_the_explanation_matches_what_the_resolver_refused() {
    let servers = Servers::start();
    let dir = tempfile::tempdir().unwrap();
    let zeros = "0".repeat(64);
    let pak = write_stack(
        dir.path(),
        &servers.definitions(),
        "cu130",
        "torch==2.11.0\n",
        &format!("flash-attn --hash=sha256:{zeros}\n"),
        "",
    );
    let message = resolve_one(&pak, X86).unwrap_err();
    assert!(
        message.starts_with(
            "cannot resolve the stack for 3.14:manylinux_2_39_x86_64: no build of flash-attn \
             fits torch 2.11.0+cu130"
        ),
        "{message}"
    );
    // The build the torch and target would take is named with the resolver's reason.
    assert!(
        message.contains(
            "flash_attn-2.8.3+cu13torch2.11cxx11abiTRUE-cp314-cp314-linux_x86_64.whl: none of \
             its wheels has a sha256 listed by the pak line's --hash"
        ),
        "{message}"
    );
    // The same stack without the hash resolves to exactly that build.
    let dir = tempfile::tempdir().unwrap();
    let pak = write_stack(
        dir.path(),
        &servers.definitions(),
        "cu130",
        "torch==2.11.0\n",
        "flash-attn\n",
        "",
    );
    let r = resolve_one(&pak, X86).unwrap();
    assert_eq!(
        r.packages[&name("flash-attn")].version.to_string(),
        "2.8.3+cu13torch2.11cxx11abitrue"
    );
}

#[test]
fn resolve_abi_the_build_follows_the_torch_the_solver_settles_on() {
    let servers = Servers::start();
    // torch 2.10 pinned: the 2.10 build, although 2.9 and 2.11 builds sort higher.
    let dir = tempfile::tempdir().unwrap();
    let pak = write_stack(
        dir.path(),
        &servers.definitions(),
        "cu130",
        "torch==2.10.0\n",
        "flash-attn\nsageattention\n",
        "",
    );
    let r = resolve_one(&pak, ARM).unwrap();
    assert_eq!(
        r.packages[&name("flash-attn")].version.to_string(),
        "2.8.3+cu13torch2.10cxx11abitrue"
    );
    assert_eq!(
        r.packages[&name("sageattention")].version.to_string(),
        "2.2.0+cu130torch2.10"
    );
    let build = r.packages[&name("flash-attn")].build.clone().unwrap();
    assert_eq!(
        build.coupling.torch,
        Some(TorchSeries::from_str("2.10").unwrap())
    );
    assert_eq!(build.coupling.cuda, Some(CudaVersion::major_only(13)));
    assert_eq!(build.coupling.cxx11abi, Some(true));

    // torch left open (2.10 and 2.11 exist) and a flash-attn that only has torch 2.10
    // builds: the solver backtracks from torch 2.11 to 2.10.
    let only_2_10 = FixtureIndex::builder()
        .wheel(
            WheelSpec::new("flash_attn", "2.8.3+cu13torch2.10cxx11abiTRUE")
                .tags(["cp314-cp314-linux_x86_64"])
                .requires_dist(["torch", "einops"]),
        )
        .wheel(
            WheelSpec::new("flash_attn", "2.8.3+cu13torch2.10cxx11abiFALSE")
                .tags(["cp314-cp314-linux_x86_64"])
                .requires_dist(["torch", "einops"]),
        )
        .build();
    let perf = serve(&only_2_10);
    let mut definitions = servers.definitions();
    definitions.retain(|(n, _, _)| *n != "perf-wheels");
    definitions.push(("perf-wheels", perf.simple_url(), "simple"));
    let dir = tempfile::tempdir().unwrap();
    let pak = write_stack(
        dir.path(),
        &definitions,
        "cu130",
        "torch>=2.10\n",
        "flash-attn\n",
        "",
    );
    let r = resolve_one(&pak, X86).unwrap();
    assert_eq!(
        r.packages[&name("torch")].version.to_string(),
        "2.10.0+cu130"
    );
    assert_eq!(
        r.packages[&name("flash-attn")].version.to_string(),
        "2.8.3+cu13torch2.10cxx11abitrue",
        "the cxx11abiFALSE build never fits torch 2.10"
    );
}

#[test]
fn resolve_abi_declared_coupling_of_an_unlabelled_wheel_is_enforced() {
    let servers = Servers::start();
    let declared =
        "[couplings]\n# sageattn3 publishes no label; its release says CUDA 13.0, torch 2.11.\n\
                    sageattn3 = { release = \"sageattn-py313-cu130-pt211\" }\n";
    let stack = |stable: &str, backend: &str, extra: &str| {
        let dir = tempfile::tempdir().unwrap();
        let pak = write_stack(
            dir.path(),
            &servers.definitions(),
            backend,
            stable,
            "sageattn3\n",
            extra,
        );
        (dir, pak)
    };

    // torch 2.11: fits, and the lock says it was declared.
    let (_dir, pak) = stack("torch==2.11.0\n", "cu130", declared);
    let lock = lock_stack(&pak).unwrap();
    let sage3 = entry(&lock, "sageattn3");
    assert_eq!(sage3.version.to_string(), "1.0.0");
    assert_eq!(
        sage3.tool.comfypak.build_reason.as_deref(),
        Some(
            "built for CUDA 13.0, torch 2.11 (declared in stack.toml [couplings]); resolved \
             torch 2.11.0+cu130 on backend cu130"
        )
    );

    // torch 2.10: the declaration rules it out, and the error says so.
    let (_dir, pak) = stack("torch==2.10.0\n", "cu130", declared);
    let message = resolve_one(&pak, X86).unwrap_err();
    assert!(
        message.contains(
            "sageattn3 1.0.0: builds for torch 2.11 with CUDA 13.0; resolved torch is 2.10.0+cu130"
        ),
        "{message}"
    );
    assert!(message.contains(
        "sageattn3-1.0.0-cp314-cp314-linux_x86_64.whl: built for torch 2.11, resolved torch is \
         2.10.0+cu130 (as declared in [couplings])"
    ));

    // Without the declaration nothing is known about it, so nothing is checked.
    let (_dir, pak) = stack("torch==2.10.0\n", "cu130", "");
    let r = resolve_one(&pak, X86).unwrap();
    assert_eq!(r.packages[&name("sageattn3")].version.to_string(), "1.0.0");
    assert_eq!(r.packages[&name("sageattn3")].build, None);

    // A CUDA 13 declaration never fits the cpu backend: ruled out before solving.
    let (_dir, pak) = stack("", "cpu", declared);
    let message = resolve_one(&pak, X86).unwrap_err();
    assert!(
        message.contains(
            "sageattn3 1.0.0: built for CUDA 13.0, torch 2.11 (declared in stack.toml \
             [couplings]): built for CUDA 13.0, backend cpu has no CUDA"
        ),
        "{message}"
    );
}

#[test]
fn resolve_abi_cli_default_stack_warns_about_the_hopper_file_name() {
    let servers = Servers::start();
    let dir = tempfile::tempdir().unwrap();
    let pak = write_stack(
        dir.path(),
        &servers.definitions(),
        "cu130",
        STABLE,
        PERF,
        "",
    );
    let cache = dir.path().join("cache");
    let out = comfypak(
        &["resolve", "--stack", pak.to_str().unwrap()],
        dir.path(),
        &cache,
    );
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("warning: "))
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "once, although two platforms saw it: {stderr}"
    );
    assert!(warnings[0].contains("sageattention-2.2.0-hopper-cp314-cp314-linux_x86_64.whl"));
    assert!(warnings[0].contains("the build tag must start with a digit"));
    let lock = Lock::read(&dir.path().join("pylock.toml")).unwrap();
    assert_eq!(
        entry(&lock, "flash-attn").version.to_string(),
        "2.8.3+cu13torch2.11cxx11abitrue"
    );
}

#[test]
fn resolve_abi_backend_pins_map_in_one_place() {
    let dir = tempfile::tempdir().unwrap();
    let definitions = [
        ("pypi", "http://index.example/simple/".to_string(), "simple"),
        (
            "pytorch-cu130",
            "http://index.example/cu130/".to_string(),
            "simple",
        ),
        (
            "pytorch-cu128",
            "http://index.example/cu128/".to_string(),
            "simple",
        ),
        (
            "perf-wheels",
            "http://index.example/perf/".to_string(),
            "find-links",
        ),
    ];
    let pak = write_stack(dir.path(), &definitions, "cu130", "", "", "");
    let stack = Stack::load(&pak).unwrap();
    let pinned = |settings: &comfypak::stack::IndexSettings, n: &str| {
        settings.pinned_index(&name(n)).map(str::to_string)
    };

    let same = indexes_for_backend(&stack.indexes, Backend::Cu130).unwrap();
    assert_eq!(pinned(&same, "torch").as_deref(), Some("pytorch-cu130"));
    // The stack's own pins first, unchanged; then the family, routed to the backend's index.
    assert_eq!(
        same.pins[..stack.indexes.pins.len()],
        stack.indexes.pins[..]
    );
    let routed = same.pins.last().unwrap();
    assert_eq!(routed.index, "pytorch-cu130");
    assert!(routed.packages.contains(&"xformers".to_string()));
    assert_eq!(pinned(&same, "xformers").as_deref(), Some("pytorch-cu130"));

    let cu128 = indexes_for_backend(&stack.indexes, Backend::Cu128).unwrap();
    for family in [
        "torch",
        "torchvision",
        "torchaudio",
        "triton",
        "nvidia-cublas",
        "cuda-toolkit",
    ] {
        assert_eq!(
            pinned(&cu128, family).as_deref(),
            Some("pytorch-cu128"),
            "{family}"
        );
    }
    assert_eq!(pinned(&cu128, "flash-attn").as_deref(), Some("perf-wheels"));
    assert_eq!(pinned(&cu128, "numpy"), None, "unpinned stays unpinned");
    assert!(cu128.pins.iter().all(|p| p.index != "pytorch-cu130"));
    assert_eq!(cu128.default, stack.indexes.default);

    // No pytorch-cpu definition: said, with what to do.
    let err = comfypak::diagnostic::with_help(
        &indexes_for_backend(&stack.indexes, Backend::Cpu).unwrap_err(),
    );
    assert!(err.contains("no index definition `pytorch-cpu`"), "{err}");
    assert!(err.contains("--index pytorch-cpu=URL"), "{err}");

    assert!(is_backend_index("pytorch-cu126"));
    assert!(!is_backend_index("perf-wheels"));

    assert_eq!(
        select_backend("cu128", &stack.target).unwrap().backend,
        Backend::Cu128
    );
    assert_eq!(
        select_backend("cpu", &stack.target).unwrap().backend,
        Backend::Cpu
    );
    let host = assess(&read_host(&HostSources::new("/")));
    assert_eq!(
        select_backend("auto", &stack.target).unwrap().backend,
        host.auto
    );
    let err = select_backend("cu999", &stack.target)
        .unwrap_err()
        .to_string();
    assert!(err.contains("cu130, cu128, cu126, cpu, auto"), "{err}");
}

#[test]
fn resolve_abi_cli_auto_backend_is_what_doctor_picks_here() {
    let pypi = serve(&pypi_index());
    let dir = tempfile::tempdir().unwrap();
    let definitions = [("pypi", pypi.simple_url(), "simple")];
    let indexes = dir.path().join("indexes");
    std::fs::create_dir_all(&indexes).unwrap();
    // Every backend index, so that `auto` may land on any of them.
    let mut all = definitions.to_vec();
    for backend in Backend::ALL {
        all.push((
            backend.index_name(),
            "http://index.example/simple/".to_string(),
            "simple",
        ));
    }
    all.push((
        "perf-wheels",
        "http://index.example/perf/".to_string(),
        "find-links",
    ));
    let pak = write_stack(dir.path(), &all, "cu130", "", "einops\n", "");
    let cache = dir.path().join("cache");
    let out = comfypak(
        &[
            "resolve",
            "--stack",
            pak.to_str().unwrap(),
            "--torch-backend",
            "auto",
        ],
        dir.path(),
        &cache,
    );
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let host = assess(&read_host(&HostSources::new("/")));
    assert!(
        stderr.contains(&format!(
            "torch backend auto: the stack declares no target.gpus, so this build host was read: {}",
            host.auto_reason
        )),
        "{stderr}"
    );
    let lock = Lock::read(&dir.path().join("pylock.toml")).unwrap();
    assert_eq!(
        lock.tool.comfypak.torch_backend.to_string(),
        host.auto.name()
    );

    // An unknown backend is refused before anything is fetched.
    let out = comfypak(
        &[
            "resolve",
            "--stack",
            pak.to_str().unwrap(),
            "--torch-backend",
            "rocm",
        ],
        dir.path(),
        &cache,
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("--torch-backend"), "{stderr}");
    assert!(
        stderr.contains("unknown torch backend \"rocm\""),
        "{stderr}"
    );
}

#[test]
fn resolve_abi_stack_couplings_table_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let definitions = [
        ("pypi", "http://index.example/simple/".to_string(), "simple"),
        (
            "pytorch-cu130",
            "http://index.example/cu130/".to_string(),
            "simple",
        ),
        (
            "perf-wheels",
            "http://index.example/perf/".to_string(),
            "find-links",
        ),
    ];
    let pak = write_stack(
        dir.path(),
        &definitions,
        "cu130",
        "",
        "",
        "[couplings]\nsageattn3 = { release = \"sageattn-py313-cu130-pt211\" }\n\
         Spas_Sage_Attn = { cuda = \"12.8\", torch = \"2.9\", cxx11abi = true }\n",
    );
    let stack = Stack::load(&pak).unwrap();
    assert_eq!(stack.couplings.len(), 2);
    let sage3 = stack.couplings[&name("sageattn3")];
    assert_eq!(sage3.cuda, Some(CudaVersion::new(13, 0)));
    assert_eq!(sage3.torch, Some(TorchSeries::from_str("2.11").unwrap()));
    let spas = stack.couplings[&name("spas-sage-attn")];
    assert_eq!(spas.cuda, Some(CudaVersion::new(12, 8)));
    assert_eq!(spas.cxx11abi, Some(true));

    // Absent table: no couplings.
    let pak = write_stack(dir.path(), &definitions, "cu130", "", "", "");
    assert!(Stack::load(&pak).unwrap().couplings.is_empty());

    // A bad entry names the table, the key and what to write.
    let pak = write_stack(
        dir.path(),
        &definitions,
        "cu130",
        "",
        "",
        "[couplings]\nsageattn3 = { torch = 2.10 }\n",
    );
    let err = Stack::load(&pak).unwrap_err().to_string();
    assert!(err.contains("stack.toml"), "{err}");
    assert!(err.contains("[couplings] sageattn3: torch"), "{err}");
    assert!(err.contains("quoted string"), "{err}");
}

/// Progress that keeps the warnings.
#[derive(Default)]
struct Warnings(std::sync::Mutex<Vec<String>>);

impl ResolveProgress for Warnings {
    fn warning(&self, message: &str) {
        self.0.lock().unwrap().push(message.to_string());
    }
}

#[test]
fn resolve_abi_warnings_reach_the_progress_of_library_callers() {
    let servers = Servers::start();
    let dir = tempfile::tempdir().unwrap();
    let pak = write_stack(
        dir.path(),
        &servers.definitions(),
        "cu130",
        STABLE,
        "sageattention\n",
        "",
    );
    let stack = Stack::load(&pak).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let client = client(cache.path());
    let warnings = Warnings::default();
    let backend =
        comfypak::resolve::backend::select_backend(&stack.target.torch_backend, &stack.target)
            .unwrap()
            .backend;
    let run = |target: &str| {
        rt().block_on(resolve_target(
            &stack,
            &Target::from_str(target).unwrap(),
            &client,
            &ResolveOptions::new(backend),
            &warnings,
        ))
        .unwrap()
    };
    run(ARM);
    assert!(
        warnings.0.lock().unwrap().is_empty(),
        "the hopper file is x86_64 only: not a candidate on aarch64"
    );
    run(X86);
    let seen = warnings.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].starts_with(
        "sageattention (index `perf-wheels`): sageattention-2.2.0-hopper-cp314-cp314-linux_x86_64.whl"
    ));
}

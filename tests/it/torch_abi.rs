//! ABI-coupled builds picked right, against build matrices as the release pages name them:
//! flash-attn 2.8.3 for CUDA 12 (torch 2.6 to 2.11) and CUDA 13 (torch 2.9 to 2.11, where
//! CUDA 13 starts) × C++ ABI TRUE/FALSE × cp313/cp314 × x86_64/aarch64
//! (`flash_attn-2.8.3+cu12torch2.6cxx11abiTRUE-cp313-cp313-linux_x86_64.whl`), beside CPU
//! builds (`+pt211cpu`, `+torch2.11.cpu`), an unlabelled newer release and one whose label
//! cannot be read (`+cuda128torch2.10`); torch from small PyTorch indexes whose wheels carry
//! the real tags (torch 2.6.0+cu126 is manylinux_2_28, hence the C++11 ABI). Each test
//! here failed on the main before this change: a CPU build locked on a CUDA backend, the
//! pre-C++11 build for torch 2.6.0+cu126, the unlabelled 2.8.4 locked silently, the second
//! coupled package left out of the explanation, a CUDA mismatch without the backend that
//! has the build.

use std::path::PathBuf;
use std::str::FromStr;

use comfypak::lock::Lock;
use comfypak::resolve::to_lock::{resolve_stack, StackRequest};
use comfypak::resolve::NoProgress;
use comfypak::stack::Stack;
use comfypak::target::Target;
use comfypak_testkit::{FixtureIndex, FixtureIndexBuilder, ServerOptions, TestServer, WheelSpec};

use crate::common::{client, rt, write_index_definitions};

const ARCHES: [&str; 2] = ["x86_64", "aarch64"];
const PYTHONS: [&str; 2] = ["cp313", "cp314"];

fn serve(index: &FixtureIndex) -> TestServer {
    TestServer::serve_index(index, ServerOptions::default())
}

/// flash-attn 2.8.3's matrix, plus `extra` file names (version, filename) of flash-attn.
fn flash_attn_page(extra: &[(&str, &str)], sage: &[&str]) -> FixtureIndex {
    let mut b = FixtureIndex::builder();
    let mut labels: Vec<String> = Vec::new();
    for minor in 6..=11 {
        for abi in ["TRUE", "FALSE"] {
            labels.push(format!("cu12torch2.{minor}cxx11abi{abi}"));
            if minor >= 9 {
                labels.push(format!("cu13torch2.{minor}cxx11abi{abi}"));
            }
        }
    }
    for label in &labels {
        for py in PYTHONS {
            for arch in ARCHES {
                b = b.wheel(
                    WheelSpec::new("flash-attn", format!("2.8.3+{label}"))
                        .requires_dist(["torch", "einops"])
                        .tag(format!("{py}-{py}-linux_{arch}")),
                );
            }
        }
    }
    for (version, filename) in extra {
        b = b.wheel(
            WheelSpec::new("flash-attn", *version)
                .requires_dist(["torch", "einops"])
                .filename_override(*filename)
                .tag("cp314-cp314-linux_x86_64"),
        );
    }
    for label in sage {
        b = b.wheel(
            WheelSpec::new("sageattention", format!("2.2.0+{label}"))
                .tag("cp314-cp314-linux_x86_64"),
        );
    }
    b.build()
}

/// A PyTorch index with torch `version` for `python`, on both architectures with the tags
/// its wheels carry (`platform`, e.g. `manylinux_2_28`).
fn torch_index(version: &str, python: &str, platform: &str) -> FixtureIndex {
    let mut b: FixtureIndexBuilder = FixtureIndex::builder();
    for arch in ARCHES {
        b = b.wheel(
            WheelSpec::new("torch", version)
                .requires_dist(["filelock", "typing-extensions>=4.10.0"])
                .tag(format!("{python}-{python}-{platform}_{arch}")),
        );
    }
    b.build()
}

fn public_index() -> FixtureIndex {
    FixtureIndex::builder()
        .package("einops", "0.8.1", &[])
        .package("filelock", "3.20.0", &[])
        .package("typing-extensions", "4.15.0", &[])
        .build()
}

struct Fixture {
    _public: TestServer,
    _torch: TestServer,
    _perf: TestServer,
    dir: tempfile::TempDir,
    stack: PathBuf,
}

/// A stack on `backend` for `python` with the torch index `torch` as the backend's index and
/// `perf` as `perf-wheels`, pak lines `pak`.
fn fixture(
    backend: &str,
    python: &str,
    torch: FixtureIndex,
    perf: FixtureIndex,
    pak: &str,
) -> Fixture {
    let public = serve(&public_index());
    let torch = serve(&torch);
    let perf = serve(&perf);
    let dir = tempfile::tempdir().unwrap();
    let backend_index = format!("pytorch-{backend}");
    let (public_url, torch_url, perf_url) = (
        public.simple_url(),
        torch.simple_url(),
        perf.find_links_url(),
    );
    write_index_definitions(
        dir.path(),
        &[
            ("pypi", public_url.as_str(), "simple"),
            (backend_index.as_str(), torch_url.as_str(), "simple"),
            ("perf-wheels", perf_url.as_str(), "find-links"),
        ],
    );
    let stack = dir.path().join("pak");
    std::fs::create_dir_all(&stack).unwrap();
    std::fs::write(stack.join("pak6.txt"), pak).unwrap();
    std::fs::write(
        stack.join("stack.toml"),
        format!(
            "[stack]\nname = \"abi\"\nindex-dir = \"../indexes\"\n\n[target]\n\
             python = \"{python}\"\nplatforms = [\"manylinux_2_39_x86_64\", \"manylinux_2_39_aarch64\"]\n\
             venv = \"/opt/venv\"\ntorch-backend = \"{backend}\"\n\n[indexes]\n\
             default = [\"pypi\"]\n\n[indexes.pins]\n\
             perf-wheels = [\"flash-attn\", \"sageattention\"]\n\n\
             [[layer]]\nname = \"perf\"\npaks = [\"pak6.txt\"]\n"
        ),
    )
    .unwrap();
    Fixture {
        _public: public,
        _torch: torch,
        _perf: perf,
        dir,
        stack,
    }
}

fn lock_of(fixture: &Fixture, targets: &[&str]) -> Result<Lock, String> {
    let stack = Stack::load(&fixture.stack).unwrap();
    let cache = fixture.dir.path().join("cache");
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
        &client(&cache),
        &StackRequest::new(&targets, backend),
        &NoProgress,
    ))
    .map_err(|e| e.to_string())
}

fn wheels_of(lock: &Lock, name: &str) -> Vec<String> {
    let mut names: Vec<String> = lock
        .packages
        .iter()
        .filter(|p| p.name.as_ref() == name)
        .flat_map(|p| p.wheels.iter().map(|w| w.name.to_string()))
        .collect();
    names.sort();
    names
}

const CPU_BUILDS: [(&str, &str); 2] = [
    (
        "2.8.3+pt211cpu",
        "flash_attn-2.8.3+pt211cpu-cp314-cp314-linux_x86_64.whl",
    ),
    (
        "2.8.3+torch2.11.cpu",
        "flash_attn-2.8.3+torch2.11.cpu-cp314-cp314-linux_x86_64.whl",
    ),
];

#[test]
fn torch_abi_cpu_build_of_a_perf_wheel_is_never_locked_on_a_cuda_backend() {
    let f = fixture(
        "cu130",
        "3.14",
        torch_index("2.11.0+cu130", "cp314", "manylinux_2_28"),
        flash_attn_page(&CPU_BUILDS, &[]),
        "torch==2.11.0\nflash-attn\n",
    );
    let lock = lock_of(&f, &["3.14:manylinux_2_39_x86_64"]).unwrap();
    assert_eq!(
        wheels_of(&lock, "flash-attn"),
        ["flash_attn-2.8.3+cu13torch2.11cxx11abiTRUE-cp314-cp314-linux_x86_64.whl"]
    );

    // Only the CPU builds: refused on cu130, with the reason.
    let f = fixture(
        "cu130",
        "3.14",
        torch_index("2.11.0+cu130", "cp314", "manylinux_2_28"),
        flash_attn_page(&CPU_BUILDS, &[]),
        "torch==2.11.0\nflash-attn==2.8.3+pt211cpu\n",
    );
    let err = lock_of(&f, &["3.14:manylinux_2_39_x86_64"]).unwrap_err();
    assert!(
        err.contains("a CPU build (no CUDA kernels), backend cu130 is a CUDA backend"),
        "{err}"
    );

    // On cpu, a CPU build is the one that fits.
    let f = fixture(
        "cpu",
        "3.14",
        torch_index("2.11.0+cpu", "cp314", "manylinux_2_28"),
        flash_attn_page(&CPU_BUILDS, &[]),
        "torch==2.11.0\nflash-attn\n",
    );
    let lock = lock_of(&f, &["3.14:manylinux_2_39_x86_64"]).unwrap();
    let chosen = wheels_of(&lock, "flash-attn");
    assert_eq!(chosen.len(), 1);
    assert!(chosen[0].contains("cpu-cp314"), "{chosen:?}");
}

#[test]
fn torch_abi_cxx11_abi_comes_from_the_torch_build_not_its_version() {
    // torch 2.6.0+cu126 is a manylinux_2_28 build: the C++11 ABI, on both architectures.
    let f = fixture(
        "cu126",
        "3.13",
        torch_index("2.6.0+cu126", "cp313", "manylinux_2_28"),
        flash_attn_page(&[], &[]),
        "torch==2.6.0\nflash-attn\n",
    );
    let lock = lock_of(
        &f,
        &["3.13:manylinux_2_39_x86_64", "3.13:manylinux_2_39_aarch64"],
    )
    .unwrap();
    assert_eq!(
        wheels_of(&lock, "flash-attn"),
        [
            "flash_attn-2.8.3+cu12torch2.6cxx11abiTRUE-cp313-cp313-linux_aarch64.whl",
            "flash_attn-2.8.3+cu12torch2.6cxx11abiTRUE-cp313-cp313-linux_x86_64.whl",
        ]
    );
    let entry = lock
        .packages
        .iter()
        .find(|p| p.name.as_ref() == "flash-attn")
        .unwrap();
    let reason = entry.tool.comfypak.build_reason.clone().unwrap_or_default();
    assert!(reason.contains("C++11 ABI"), "{reason}");

    // A manylinux2014 x86_64 build of the same version is a pre-C++11 one.
    let f = fixture(
        "cu126",
        "3.13",
        torch_index("2.6.0+cu126", "cp313", "manylinux2014"),
        flash_attn_page(&[], &[]),
        "torch==2.6.0\nflash-attn\n",
    );
    let lock = lock_of(&f, &["3.13:manylinux_2_39_x86_64"]).unwrap();
    assert_eq!(
        wheels_of(&lock, "flash-attn"),
        ["flash_attn-2.8.3+cu12torch2.6cxx11abiFALSE-cp313-cp313-linux_x86_64.whl"]
    );
}

#[test]
fn torch_abi_unlabelled_or_unreadable_builds_of_a_labelled_project_are_refused() {
    let odd = [
        ("2.8.4", "flash_attn-2.8.4-cp314-cp314-linux_x86_64.whl"),
        (
            "2.8.5+cuda128torch2.10",
            "flash_attn-2.8.5+cuda128torch2.10-cp314-cp314-linux_x86_64.whl",
        ),
    ];
    let f = fixture(
        "cu130",
        "3.14",
        torch_index("2.11.0+cu130", "cp314", "manylinux_2_28"),
        flash_attn_page(&odd, &[]),
        "torch==2.11.0\nflash-attn\n",
    );
    let lock = lock_of(&f, &["3.14:manylinux_2_39_x86_64"]).unwrap();
    assert_eq!(
        wheels_of(&lock, "flash-attn"),
        ["flash_attn-2.8.3+cu13torch2.11cxx11abiTRUE-cp314-cp314-linux_x86_64.whl"]
    );

    // Asked for by version, each is refused naming the file and why.
    for (wanted, needle) in [
        (
            "flash-attn==2.8.4",
            "flash_attn-2.8.4-cp314-cp314-linux_x86_64.whl has no torch/CUDA local label",
        ),
        (
            "flash-attn==2.8.5",
            "has the local label +cuda128torch2.10, which does not state its CUDA and torch",
        ),
    ] {
        let f = fixture(
            "cu130",
            "3.14",
            torch_index("2.11.0+cu130", "cp314", "manylinux_2_28"),
            flash_attn_page(&odd, &[]),
            &format!("torch==2.11.0\n{wanted}\n"),
        );
        let err = lock_of(&f, &["3.14:manylinux_2_39_x86_64"]).unwrap_err();
        assert!(err.contains(needle), "{err}");
        assert!(
            err.contains("while the project publishes labelled builds (e.g. 2.8.3+cu1"),
            "{err}"
        );
    }
}

#[test]
fn torch_abi_two_coupled_packages_without_a_build_are_both_explained() {
    // torch 2.12 has no flash-attn build and no sageattention build.
    let f = fixture(
        "cu130",
        "3.14",
        torch_index("2.12.0+cu130", "cp314", "manylinux_2_28"),
        flash_attn_page(&[], &["cu130torch2.10", "cu130torch2.11"]),
        "torch==2.12.0\nflash-attn\nsageattention\n",
    );
    let err = lock_of(&f, &["3.14:manylinux_2_39_x86_64"]).unwrap_err();
    assert!(
        err.contains("no build of flash-attn, sageattention fits torch 2.12.0+cu130"),
        "{err}"
    );
    assert!(err.contains("flash-attn 2.8.3: builds for torch"), "{err}");
    assert!(
        err.contains("sageattention 2.2.0: builds for torch 2.10, 2.11"),
        "{err}"
    );
    assert!(
        err.contains(
            "sageattention-2.2.0+cu130torch2.11-cp314-cp314-linux_x86_64.whl: built for torch 2.11"
        ),
        "{err}"
    );
}

#[test]
fn torch_abi_cuda_mismatch_before_solving_names_the_backend_with_the_build() {
    let f = fixture(
        "cu130",
        "3.14",
        torch_index("2.11.0+cu130", "cp314", "manylinux_2_28"),
        flash_attn_page(&[], &[]),
        "torch==2.11.0\nflash-attn==2.8.3+cu12torch2.11cxx11abiTRUE\n",
    );
    let err = lock_of(&f, &["3.14:manylinux_2_39_x86_64"]).unwrap_err();
    assert!(
        err.contains("built for CUDA 12, backend cu130 ships CUDA 13.0"),
        "{err}"
    );
    assert!(
        err.contains(
            "this build is for backend cu128 or cu126: set target.torch-backend or pass --torch-backend"
        ),
        "{err}"
    );
}

//! CUDA awareness: backends, ABI-coupled local labels and declared couplings, on the real
//! spellings of published wheels and the `perf-wheels.json` fixture index. (Which build of a
//! coupled package fits, and the explanation when none does, are the resolver's:
//! `resolve::candidates` unit tests and tests/it/resolve_abi.rs.)

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;

use comfypak::cuda::{
    check, parse_couplings, torch_uses_cxx11_abi, AbiLabel, Backend, BackendChoice,
    ComputeCapability, Coupling, CudaVersion, DriverVersion, MismatchPart, TorchSeries, Verdict,
};
use comfypak::filename::{FilenameWarning, WheelFilename};
use pep440_rs::Version;

fn v(text: &str) -> Version {
    Version::from_str(text).unwrap()
}

fn series(text: &str) -> TorchSeries {
    TorchSeries::from_str(text).unwrap()
}

/// The fixture's files by project, then public version.
fn perf_wheels() -> BTreeMap<String, BTreeMap<String, Vec<WheelFilename>>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/indexes/perf-wheels.json");
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut out: BTreeMap<String, BTreeMap<String, Vec<WheelFilename>>> = BTreeMap::new();
    for (project, files) in spec["projects"].as_object().unwrap() {
        for file in files.as_array().unwrap() {
            let name = file["filename"].as_str().unwrap();
            let wheel = WheelFilename::from_str(name).unwrap();
            let public = wheel.version.clone().without_local().to_string();
            out.entry(project.clone())
                .or_default()
                .entry(public)
                .or_default()
                .push(wheel);
        }
    }
    out
}

// ---------------------------------------------------------------- backends

#[test]
fn cuda_backends_table() {
    assert_eq!(
        Backend::ALL,
        [Backend::Cu130, Backend::Cu128, Backend::Cu126, Backend::Cpu]
    );
    assert_eq!(Backend::Cu130.index_name(), "pytorch-cu130");
    assert_eq!(Backend::Cpu.index_name(), "pytorch-cpu");
    assert_eq!(Backend::Cu128.local_label(), "cu128");
    assert_eq!(Backend::Cu130.cuda(), Some(CudaVersion::new(13, 0)));
    assert_eq!(Backend::Cu126.cuda(), Some(CudaVersion::new(12, 6)));
    assert_eq!(Backend::Cpu.cuda(), None);
    let family: Vec<&str> = Backend::Cu130.family().iter().map(|m| m.pattern).collect();
    for member in [
        "torch",
        "torchvision",
        "torchaudio",
        "triton",
        "xformers",
        "cuda-toolkit",
    ] {
        assert!(family.contains(&member), "{member}: {family:?}");
    }
    assert!(Backend::Cu130.family().iter().all(|m| !m.reason.is_empty()));
    let req = Backend::Cu130.driver_requirement().unwrap();
    assert_eq!(req.minor_compat_floor.to_string(), "580");
    assert_eq!(req.full.to_string(), "580.65.06");
    let req = Backend::Cu128.driver_requirement().unwrap();
    assert_eq!(req.minor_compat_floor.to_string(), "525.60.13");
    assert_eq!(req.full.to_string(), "570.26");
    let req = Backend::Cu126.driver_requirement().unwrap();
    assert_eq!(req.full.to_string(), "560.28.03");
    assert!(Backend::Cpu.driver_requirement().is_none());
    assert_eq!(
        Backend::Cu130.min_compute_capability(),
        Some(ComputeCapability::new(7, 5))
    );
    assert_eq!(
        Backend::Cu126.min_compute_capability(),
        Some(ComputeCapability::new(5, 0))
    );
}

#[test]
fn cuda_backend_choice_parses_auto_and_names() {
    assert_eq!(
        BackendChoice::from_str("auto").unwrap(),
        BackendChoice::Auto
    );
    assert_eq!(
        BackendChoice::from_str("cu128").unwrap(),
        BackendChoice::Fixed(Backend::Cu128)
    );
    let err = Backend::from_str("cu121").unwrap_err().to_string();
    assert!(err.contains("cu121") && err.contains("cu130"), "{err}");
    // The stack module's list of accepted names is the same set.
    for name in comfypak::stack::TORCH_BACKENDS {
        assert!(BackendChoice::from_str(name).is_ok(), "{name}");
    }
}

#[test]
fn cuda_driver_verdicts_at_the_documented_boundaries() {
    let d = |s: &str| DriverVersion::parse(s).unwrap();
    let verdict = |b: Backend, s: &str| b.driver_verdict(Some(&d(s))).0;
    assert_eq!(verdict(Backend::Cu130, "580.65.06"), Verdict::Ok);
    assert_eq!(verdict(Backend::Cu130, "580.159.04"), Verdict::Ok);
    assert_eq!(verdict(Backend::Cu130, "580.00"), Verdict::Caveat);
    assert_eq!(verdict(Backend::Cu130, "575.64.05"), Verdict::No);
    assert_eq!(verdict(Backend::Cu128, "570.26"), Verdict::Ok);
    assert_eq!(verdict(Backend::Cu128, "570.25.99"), Verdict::Caveat);
    assert_eq!(verdict(Backend::Cu128, "525.60.13"), Verdict::Caveat);
    assert_eq!(verdict(Backend::Cu128, "525.60.12"), Verdict::No);
    assert_eq!(verdict(Backend::Cu126, "560.28.03"), Verdict::Ok);
    assert_eq!(verdict(Backend::Cu126, "535.129.03"), Verdict::Caveat);
    assert_eq!(verdict(Backend::Cu126, "470.256.02"), Verdict::No);
    assert_eq!(verdict(Backend::Cpu, "1.0"), Verdict::Ok);
    let (no, why) = Backend::Cu130.driver_verdict(Some(&d("570.133.20")));
    assert_eq!(no, Verdict::No);
    assert!(
        why.contains("570.133.20") && why.contains(">= 580"),
        "{why}"
    );
    assert_eq!(Backend::Cu130.driver_verdict(None).0, Verdict::No);
    assert_eq!(Backend::Cpu.driver_verdict(None).0, Verdict::Ok);
}

#[test]
fn cuda_driver_api_verdicts() {
    let api = |value| CudaVersion::from_driver_api(value).unwrap();
    assert_eq!(api(13000), CudaVersion::new(13, 0));
    assert_eq!(api(12080), CudaVersion::new(12, 8));
    assert!(CudaVersion::from_driver_api(0).is_none());
    assert_eq!(Backend::Cu130.cuda_api_verdict(api(13000)).0, Verdict::Ok);
    assert_eq!(Backend::Cu128.cuda_api_verdict(api(13000)).0, Verdict::Ok);
    assert_eq!(
        Backend::Cu128.cuda_api_verdict(api(12020)).0,
        Verdict::Caveat
    );
    assert_eq!(Backend::Cu130.cuda_api_verdict(api(12080)).0, Verdict::No);
}

#[test]
fn cuda_gpu_verdicts() {
    let cc = |s: &str| Some(ComputeCapability::from_str(s).unwrap());
    assert_eq!(Backend::Cu130.gpu_verdict(cc("9.0")).0, Verdict::Ok);
    assert_eq!(Backend::Cu130.gpu_verdict(cc("7.5")).0, Verdict::Ok);
    let (no, why) = Backend::Cu130.gpu_verdict(cc("6.1"));
    assert_eq!(no, Verdict::No);
    assert!(why.contains("7.5") && why.contains("Pascal"), "{why}");
    assert_eq!(Backend::Cu130.gpu_verdict(cc("7.0")).0, Verdict::No);
    assert_eq!(Backend::Cu126.gpu_verdict(cc("6.1")).0, Verdict::Ok);
    assert_eq!(Backend::Cu126.gpu_verdict(cc("5.0")).0, Verdict::Ok);
    assert_eq!(Backend::Cu126.gpu_verdict(cc("3.7")).0, Verdict::No);
    // Blackwell is newer than CUDA 12.6 knows.
    assert_eq!(Backend::Cu126.gpu_verdict(cc("12.0")).0, Verdict::Caveat);
    assert_eq!(Backend::Cu128.gpu_verdict(cc("12.0")).0, Verdict::Ok);
    assert_eq!(Backend::Cu130.gpu_verdict(None).0, Verdict::Caveat);
    assert!(ComputeCapability::from_str("[N/A]").is_err());
}

// ---------------------------------------------------------------- labels

#[test]
fn cuda_labels_every_real_spelling() {
    let l = AbiLabel::parse("cu12torch2.8cxx11abiTRUE");
    assert_eq!(l.cuda, Some(CudaVersion::major_only(12)));
    assert_eq!(l.torch, Some(series("2.8")));
    assert_eq!(l.cxx11abi, Some(true));
    assert!(l.git.is_none() && l.extra.is_empty() && !l.cpu);

    let l = AbiLabel::parse("cu130torch2.11");
    assert_eq!(l.cuda, Some(CudaVersion::new(13, 0)));
    assert_eq!(l.torch, Some(series("2.11")));
    assert_eq!(l.cxx11abi, None);

    let l = AbiLabel::parse("cu13.0torch2.11");
    assert_eq!(l.cuda, Some(CudaVersion::new(13, 0)));
    assert_eq!(l.torch, Some(series("2.11")));
    assert!(l.extra.is_empty(), "{:?}", l.extra);

    let l = AbiLabel::parse("cu130torch2.11gite2743ab");
    assert_eq!(l.cuda, Some(CudaVersion::new(13, 0)));
    assert_eq!(l.torch, Some(series("2.11")));
    assert_eq!(l.git.as_deref(), Some("e2743ab"));
    assert!(l.extra.is_empty(), "{:?}", l.extra);

    let l = AbiLabel::parse("cu130.basic");
    assert_eq!(l.cuda, Some(CudaVersion::new(13, 0)));
    assert_eq!(l.torch, None);
    assert_eq!(l.extra, vec!["basic"]);

    let l = AbiLabel::parse("cu126");
    assert_eq!(l.cuda, Some(CudaVersion::new(12, 6)));
    assert!(l.torch.is_none() && l.extra.is_empty());

    let l = AbiLabel::parse("cpu");
    // A CPU build is a coupling of its own: it fits the `cpu` backend only.
    assert!(l.cpu && l.cuda.is_none() && l.coupling().cpu && !l.coupling().is_empty());

    let l = AbiLabel::parse("torch2.8.0");
    assert_eq!(l.torch, Some(series("2.8.0")));
    assert!(l.cuda.is_none());

    let l = AbiLabel::parse("+cu12torch2.8cxx11abiFALSE");
    assert_eq!(l.cxx11abi, Some(false));
    assert_eq!(l.to_string(), "cu12torch2.8cxx11abiFALSE");

    let l = AbiLabel::parse("cu12.8torch2.9");
    assert_eq!(l.cuda, Some(CudaVersion::new(12, 8)));
    assert_eq!(l.torch, Some(series("2.9")));

    // Unknown parts are kept, never dropped.
    let l = AbiLabel::parse("cu130torch2.11.post1.avx2");
    assert_eq!(l.torch, Some(series("2.11")));
    assert_eq!(l.extra, vec!["post1", "avx2"]);
}

#[test]
fn cuda_labels_from_published_filenames() {
    // Names as published (shared/reference/comfyui-docker/README.md).
    let cases = [
        (
            "flash_attn-2.8.3+cu12torch2.8cxx11abiTRUE-cp313-cp313-linux_x86_64.whl",
            "CUDA 12, torch 2.8, C++11 ABI",
        ),
        (
            "nunchaku-1.2.1+cu13.0torch2.11-cp313-cp313-linux_x86_64.whl",
            "CUDA 13.0, torch 2.11",
        ),
        (
            "flash_attn-2.8.3+cu130torch2.11-cp313-cp313-linux_x86_64.whl",
            "CUDA 13.0, torch 2.11",
        ),
        (
            "flash_attn_3-3.0.0+cu130torch2.11gite2743ab-cp39-abi3-linux_x86_64.whl",
            "CUDA 13.0, torch 2.11",
        ),
        (
            "llama_cpp_python-0.3.33+cu130.basic-cp313-cp313-linux_x86_64.whl",
            "CUDA 13.0",
        ),
    ];
    for (name, coupling) in cases {
        let wheel = WheelFilename::from_str(name).unwrap();
        let label = AbiLabel::from_version(&wheel.version).unwrap();
        assert_eq!(label.coupling().to_string(), coupling, "{name}");
    }
    for unlabelled in [
        "sageattention-2.2.0-hopper-cp313-cp313-linux_x86_64.whl",
        "sageattn3-1.0.0-cp313-cp313-linux_x86_64.whl",
        "spas_sage_attn-0.1.0-cp313-cp313-linux_x86_64.whl",
    ] {
        let wheel = WheelFilename::from_str(unlabelled).unwrap();
        assert!(
            AbiLabel::from_version(&wheel.version).is_none(),
            "{unlabelled}"
        );
    }
    let hopper =
        WheelFilename::from_str("sageattention-2.2.0-hopper-cp313-cp313-linux_x86_64.whl").unwrap();
    assert!(matches!(
        hopper.warnings.as_slice(),
        [FilenameWarning::BuildTagNotNumeric { .. }]
    ));
}

#[test]
fn cuda_labels_of_every_fixture_file_parse_completely() {
    for (project, versions) in perf_wheels() {
        for wheels in versions.values() {
            for wheel in wheels {
                let Some(label) = AbiLabel::from_version(&wheel.version) else {
                    continue;
                };
                assert!(label.cuda.is_some(), "{project}: {label:?}");
                assert!(label.torch.is_some(), "{project}: {label:?}");
                assert!(label.extra.is_empty(), "{project}: {label:?}");
            }
        }
    }
}

// ---------------------------------------------------------------- check

#[test]
fn cuda_check_explains_each_failing_part() {
    let torch = v("2.11.0+cu130");
    let coupling = AbiLabel::parse("cu12torch2.8cxx11abiFALSE").coupling();
    let mismatch = check(&coupling, &torch, Backend::Cu130, true).unwrap_err();
    assert_eq!(mismatch.parts.len(), 3);
    assert!(matches!(mismatch.parts[0], MismatchPart::Torch { .. }));
    assert!(matches!(mismatch.parts[1], MismatchPart::Cuda { .. }));
    assert!(matches!(mismatch.parts[2], MismatchPart::Cxx11Abi { .. }));
    let text = mismatch.to_string();
    assert!(
        text.contains("built for torch 2.8, resolved torch is 2.11.0+cu130"),
        "{text}"
    );
    assert!(
        text.contains("built for CUDA 12, backend cu130 ships CUDA 13.0"),
        "{text}"
    );
    assert!(text.contains("cxx11abiFALSE"), "{text}");

    let fits = AbiLabel::parse("cu13torch2.11cxx11abiTRUE").coupling();
    assert!(check(&fits, &torch, Backend::Cu130, true).is_ok());
    // A label that gives the CUDA minor must match it.
    let minor = AbiLabel::parse("cu128torch2.11").coupling();
    assert!(check(&minor, &v("2.11.0+cu128"), Backend::Cu128, true).is_ok());
    assert!(check(&minor, &v("2.11.0+cu126"), Backend::Cu126, true).is_err());
    // A patch in the label must match; without it any patch of the series fits.
    let patch = AbiLabel::parse("torch2.8.0").coupling();
    assert!(check(&patch, &v("2.8.0"), Backend::Cpu, true).is_ok());
    assert!(check(&patch, &v("2.8.1"), Backend::Cpu, true).is_err());
    assert!(check(
        &AbiLabel::parse("torch2.8").coupling(),
        &v("2.8.1"),
        Backend::Cpu,
        true
    )
    .is_ok());
    // CUDA builds never fit the cpu backend.
    let err = check(&fits, &v("2.11.0+cpu"), Backend::Cpu, true).unwrap_err();
    assert!(err.to_string().contains("backend cpu has no CUDA"), "{err}");
}

#[test]
fn cuda_cxx11_abi_rule_by_torch_version() {
    assert!(torch_uses_cxx11_abi(&v("2.11.0+cu130")));
    assert!(torch_uses_cxx11_abi(&v("2.7.0+cu128")));
    assert!(!torch_uses_cxx11_abi(&v("2.6.0+cu126")));
    assert!(!torch_uses_cxx11_abi(&v("1.13.1")));
}

// ---------------------------------------------------------------- declared couplings

#[test]
fn cuda_couplings_table_parses() {
    let table: toml::Table = toml::from_str(
        r#"
        sageattn3 = { cuda = "13.0", torch = "2.11" }
        spas-sage-attn = { release = "sageattn-py313-cu130-pt211" }
        old_ext = { cuda = "12", torch = "2.6", cxx11abi = false }
        "#,
    )
    .unwrap();
    let couplings = parse_couplings(&table).unwrap();
    let get = |name: &str| couplings[&pep508_rs::PackageName::from_str(name).unwrap()];
    assert_eq!(get("sageattn3").cuda, Some(CudaVersion::new(13, 0)));
    assert_eq!(get("sageattn3").torch, Some(series("2.11")));
    assert_eq!(get("spas_sage_attn").cuda, Some(CudaVersion::new(13, 0)));
    assert_eq!(get("spas_sage_attn").torch, Some(series("2.11")));
    assert_eq!(get("old-ext").cxx11abi, Some(false));
    assert_eq!(get("old-ext").cuda, Some(CudaVersion::major_only(12)));

    let declared = Coupling::from_declared("x", Some("130"), Some("2.11"), None).unwrap();
    assert_eq!(declared.cuda, Some(CudaVersion::new(13, 0)));

    let bad = |text: &str| {
        let table: toml::Table = toml::from_str(text).unwrap();
        parse_couplings(&table).unwrap_err().to_string()
    };
    let err = bad("x = { torch = 2.10 }");
    assert!(err.contains("quoted string") && err.contains("x"), "{err}");
    let err = bad(r#"x = { cuda = "thirteen" }"#);
    assert!(err.contains("cuda") && err.contains("thirteen"), "{err}");
    let err = bad(r#"x = { cdua = "13.0" }"#);
    assert!(err.contains("unknown key") && err.contains("cdua"), "{err}");
    let err = bad(r#"x = "13.0""#);
    assert!(err.contains("expected a table"), "{err}");
    let err = bad("x = {}");
    assert!(err.contains("declares no coupling"), "{err}");
}

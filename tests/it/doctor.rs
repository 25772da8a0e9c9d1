//! `comfypak doctor`: every fake host in fixtures/hosts (library and binary, text and JSON),
//! driver-file and nvidia-smi parsing edge cases, the live path without NVML / libcuda (a
//! real `nvidia-smi` stand-in script), and `--lock` against the host.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use comfypak::cuda::doctor::{
    assess, parse_nvidia_smi_csv, parse_proc_driver_version, parse_sys_module_version, read_host,
    render_text, DoctorReport, HostSources,
};
use comfypak::cuda::{Backend, ComputeCapability, DriverVersion, Verdict};

fn hosts_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/hosts")
}

fn report(host: &str) -> DoctorReport {
    let sources = HostSources::new(hosts_dir().join(host));
    assert!(!sources.live, "a fixture root must never be read live");
    assert!(
        hosts_dir().join(host).join("HOST.md").is_file(),
        "{host}: HOST.md"
    );
    assess(&read_host(&sources))
}

fn verdicts(report: &DoctorReport) -> Vec<(Backend, Verdict)> {
    report
        .backends
        .iter()
        .map(|b| (b.backend, b.verdict))
        .collect()
}

use Backend::{Cpu, Cu126, Cu128, Cu130};
use Verdict::{Caveat, No, Ok as Yes};

fn doctor(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_comfypak"))
        .arg("doctor")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn root_arg(host: &str) -> String {
    hosts_dir().join(host).display().to_string()
}

// ---------------------------------------------------------------- fake hosts (library)

#[test]
fn doctor_h100_real_readings() {
    let r = report("h100");
    let driver = r.host.driver.as_ref().unwrap();
    assert_eq!(driver.value.to_string(), "580.159.04");
    assert!(driver.source.ends_with("proc/driver/nvidia/version"));
    assert_eq!(r.host.gpus.len(), 1);
    assert_eq!(r.host.gpus[0].name, "NVIDIA H100 80GB HBM3");
    assert_eq!(
        r.host.gpus[0].compute_capability,
        Some(ComputeCapability::new(9, 0))
    );
    assert_eq!(r.host.gpus[0].architecture, Some("Hopper"));
    assert_eq!(
        verdicts(&r),
        vec![(Cu130, Yes), (Cu128, Yes), (Cu126, Yes), (Cpu, Yes)]
    );
    assert_eq!(r.auto, Cu130);
    assert_eq!(r.host.driver_max_cuda.unwrap().to_string(), "13.0");
    // The reference's sys/module file says the same.
    let sys = std::fs::read_to_string(hosts_dir().join("h100/sys/module/nvidia/version")).unwrap();
    assert_eq!(parse_sys_module_version(&sys, "x").unwrap(), driver.value);
}

#[test]
fn doctor_no_driver_is_cpu_only() {
    let r = report("no-driver");
    assert!(r.host.driver.is_none());
    assert!(r.host.gpus.is_empty());
    assert_eq!(
        verdicts(&r),
        vec![(Cu130, No), (Cu128, No), (Cu126, No), (Cpu, Yes)]
    );
    assert_eq!(r.auto, Cpu);
    assert!(
        r.auto_reason.contains("no NVIDIA driver"),
        "{}",
        r.auto_reason
    );
}

#[test]
fn doctor_old_driver_535() {
    let r = report("old-driver");
    assert_eq!(
        r.host.driver.as_ref().unwrap().value.to_string(),
        "535.129.03"
    );
    assert_eq!(
        verdicts(&r),
        vec![(Cu130, No), (Cu128, Caveat), (Cu126, Caveat), (Cpu, Yes)]
    );
    assert_eq!(r.auto, Cu128);
    let cu130 = r.backend(Cu130).unwrap();
    assert!(
        cu130.driver_reason.contains("too old"),
        "{}",
        cu130.driver_reason
    );
    let cu126 = r.backend(Cu126).unwrap();
    assert!(
        cu126.driver_reason.contains("minor version compatibility"),
        "{}",
        cu126.driver_reason
    );
}

#[test]
fn doctor_pascal_refused_by_cuda13() {
    let r = report("pascal");
    // Only sys/module/nvidia/version exists there.
    let driver = r.host.driver.as_ref().unwrap();
    assert!(driver.source.ends_with("sys/module/nvidia/version"));
    assert_eq!(driver.value.to_string(), "580.95.05");
    assert_eq!(
        verdicts(&r),
        vec![(Cu130, No), (Cu128, Yes), (Cu126, Yes), (Cpu, Yes)]
    );
    let cu130 = r.backend(Cu130).unwrap();
    assert_eq!(
        cu130.driver_verdict, Yes,
        "the driver is fine, the GPU is not"
    );
    assert_eq!(cu130.gpus[0].verdict, No);
    assert!(
        cu130.gpus[0].reason.contains("6.1"),
        "{}",
        cu130.gpus[0].reason
    );
    assert_eq!(r.auto, Cu128);
}

#[test]
fn doctor_a2_on_570() {
    let r = report("a2");
    assert_eq!(
        verdicts(&r),
        vec![(Cu130, No), (Cu128, Yes), (Cu126, Yes), (Cpu, Yes)]
    );
    assert_eq!(r.auto, Cu128);
}

#[test]
fn doctor_ampere_580_two_gpus() {
    let r = report("ampere-580");
    assert_eq!(r.host.gpus.len(), 2);
    assert_eq!(r.host.gpus[1].index, 1);
    assert_eq!(
        verdicts(&r),
        vec![(Cu130, Yes), (Cu128, Yes), (Cu126, Yes), (Cpu, Yes)]
    );
    assert_eq!(r.auto, Cu130);
}

#[test]
fn doctor_blackwell_on_570() {
    let r = report("blackwell-570");
    assert_eq!(
        verdicts(&r),
        vec![(Cu130, No), (Cu128, Yes), (Cu126, Caveat), (Cpu, Yes)]
    );
    assert_eq!(r.auto, Cu128);
    let cu126 = r.backend(Cu126).unwrap();
    assert!(
        cu126.gpus[0].reason.contains("PTX"),
        "{}",
        cu126.gpus[0].reason
    );
}

#[test]
fn doctor_mixed_volta_and_ampere() {
    let r = report("mixed-volta");
    assert_eq!(r.host.gpus[0].name, "Tesla V100-SXM2-32GB");
    assert_eq!(
        verdicts(&r),
        vec![(Cu130, Caveat), (Cu128, Yes), (Cu126, Yes), (Cpu, Yes)]
    );
    let cu130 = r.backend(Cu130).unwrap();
    assert!(
        cu130
            .notes
            .iter()
            .any(|n| n.contains("CUDA_VISIBLE_DEVICES=1")),
        "{:?}",
        cu130.notes
    );
    assert_eq!(r.auto, Cu128);
}

#[test]
fn doctor_driver_without_gpu_list() {
    let r = report("driver-only");
    assert!(r.host.gpus.is_empty());
    assert_eq!(
        verdicts(&r),
        vec![
            (Cu130, Caveat),
            (Cu128, Caveat),
            (Cu126, Caveat),
            (Cpu, Yes)
        ]
    );
    assert_eq!(r.auto, Cu130);
}

#[test]
fn doctor_every_fixture_host_is_tested() {
    let mut hosts: Vec<String> = std::fs::read_dir(hosts_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    hosts.sort();
    assert_eq!(
        hosts,
        [
            "a2",
            "ampere-580",
            "blackwell-570",
            "driver-only",
            "h100",
            "mixed-volta",
            "no-driver",
            "old-driver",
            "pascal"
        ]
    );
}

// ---------------------------------------------------------------- binary, text and JSON

#[test]
fn doctor_cli_text_on_every_host() {
    let expected_auto = [
        ("h100", "cu130"),
        ("no-driver", "cpu"),
        ("old-driver", "cu128"),
        ("pascal", "cu128"),
        ("a2", "cu128"),
        ("ampere-580", "cu130"),
        ("blackwell-570", "cu128"),
        ("mixed-volta", "cu128"),
        ("driver-only", "cu130"),
    ];
    for (host, auto) in expected_auto {
        let (code, stdout, stderr) = doctor(&["--root", &root_arg(host)]);
        assert_eq!(code, 0, "{host}: {stderr}");
        assert!(
            stdout.contains(&format!("auto picks: {auto}:")),
            "{host}:\n{stdout}"
        );
        assert!(stdout.contains("backend  CUDA"), "{host}:\n{stdout}");
        for backend in ["cu130", "cu128", "cu126", "cpu"] {
            assert!(
                stdout.lines().any(|l| l.starts_with(backend)),
                "{host}: no row for {backend}\n{stdout}"
            );
        }
    }
    let (_, h100, _) = doctor(&["--root", &root_arg("h100")]);
    assert!(h100.contains("NVIDIA driver: 580.159.04"), "{h100}");
    assert!(
        h100.contains("GPU 0  NVIDIA H100 80GB HBM3  compute 9.0 (Hopper)"),
        "{h100}"
    );
    let (_, pascal, _) = doctor(&["--root", &root_arg("pascal")]);
    assert!(
        pascal.contains("CUDA 13 dropped GPUs below compute capability 7.5"),
        "{pascal}"
    );
    let (_, none, _) = doctor(&["--root", &root_arg("no-driver")]);
    assert!(none.contains("NVIDIA driver: none found"), "{none}");
}

#[test]
fn doctor_cli_json_on_every_host() {
    for (host, auto, cu130) in [
        ("h100", "cu130", "ok"),
        ("no-driver", "cpu", "no"),
        ("old-driver", "cu128", "no"),
        ("pascal", "cu128", "no"),
        ("a2", "cu128", "no"),
        ("ampere-580", "cu130", "ok"),
        ("blackwell-570", "cu128", "no"),
        ("mixed-volta", "cu128", "caveat"),
        ("driver-only", "cu130", "caveat"),
    ] {
        let (code, stdout, stderr) = doctor(&["--root", &root_arg(host), "--json"]);
        assert_eq!(code, 0, "{host}: {stderr}");
        let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(json["auto"], auto, "{host}");
        assert_eq!(json["backends"][0]["backend"], "cu130", "{host}");
        assert_eq!(json["backends"][0]["verdict"], cu130, "{host}");
        assert_eq!(json["backends"][3]["backend"], "cpu", "{host}");
        assert_eq!(json["backends"][3]["verdict"], "ok", "{host}");
        assert_eq!(json["host"]["live"], false, "{host}");
        assert!(json.get("lock").is_none(), "{host}");
    }
    let (_, stdout, _) = doctor(&["--root", &root_arg("h100"), "--json"]);
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["host"]["driver"]["value"], "580.159.04");
    assert_eq!(json["host"]["gpus"][0]["compute_capability"], "9.0");
    assert_eq!(
        json["backends"][0]["driver_requirement"]["full"],
        "580.65.06"
    );
    assert_eq!(json["backends"][0]["index"], "pytorch-cu130");
}

#[test]
fn doctor_cli_bad_root_is_an_error() {
    let (code, _, stderr) = doctor(&["--root", "/nonexistent/comfypak-host"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("--root") && stderr.contains("not a folder"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------- --lock

fn write_lock(dir: &Path, backend: &str, torch: &str) -> PathBuf {
    let path = dir.join(format!("pylock-{backend}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"lock-version = "1.0"
created-by = "comfypak"

[[packages]]
name = "torch"
version = "{torch}"

[packages.tool.comfypak]
layer = "stable"
index-name = "pytorch-{backend}"

[tool.comfypak]
stack = "demo"
torch-backend = "{backend}"

[tool.comfypak.target]
python = "3.14"
platforms = ["manylinux_2_39_x86_64"]
venv = "/opt/venv"

[[tool.comfypak.layers]]
name = "stable"
rank = 1
paks = ["pak/stable.txt"]
inputs-hash = "sha256:00"
"#
        ),
    )
    .unwrap();
    path
}

#[test]
fn doctor_lock_backend_against_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let cu130 = write_lock(dir.path(), "cu130", "2.11.0+cu130");
    let lock = cu130.display().to_string();

    let (code, stdout, stderr) = doctor(&["--root", &root_arg("h100"), "--lock", &lock]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("torch backend cu130, torch 2.11.0+cu130: runs on this host"),
        "{stdout}"
    );

    let (code, stdout, _) = doctor(&["--root", &root_arg("old-driver"), "--lock", &lock]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("does NOT run on this host"), "{stdout}");
    assert!(stdout.contains("--torch-backend cu128"), "{stdout}");

    let (code, stdout, _) = doctor(&["--root", &root_arg("pascal"), "--lock", &lock, "--json"]);
    assert_eq!(code, 1);
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["lock"]["torch_backend"], "cu130");
    assert_eq!(json["lock"]["verdict"], "no");
    let reasons = json["lock"]["reasons"].to_string();
    assert!(reasons.contains("GTX 1080 Ti"), "{reasons}");

    // A torch label that disagrees with the backend is reported.
    let odd = write_lock(dir.path(), "cu128", "2.11.0+cu130");
    let (code, stdout, _) = doctor(&[
        "--root",
        &root_arg("h100"),
        "--lock",
        &odd.display().to_string(),
    ]);
    assert_eq!(code, 0);
    assert!(stdout.contains("the lock is inconsistent"), "{stdout}");

    // A missing lock is an error naming the file.
    let (code, _, stderr) = doctor(&[
        "--root",
        &root_arg("h100"),
        "--lock",
        "/nonexistent/pylock.toml",
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("/nonexistent/pylock.toml"), "{stderr}");
}

// ---------------------------------------------------------------- parsing edge cases

#[test]
fn doctor_parses_proc_driver_version_variants() {
    let p = |text: &str| parse_proc_driver_version(text, "/proc/driver/nvidia/version");
    let open = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build  (nixbld@)  \nGCC version:  gcc version 15.3.0 (GCC) \n";
    assert_eq!(p(open).unwrap().to_string(), "580.159.04");
    let proprietary = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.129.03  Thu Oct 19 18:56:32 UTC 2023\nGCC version:  gcc version 12.2.0\n";
    assert_eq!(p(proprietary).unwrap().to_string(), "535.129.03");
    let arm = "NVRM version: NVIDIA UNIX Open Kernel Module for aarch64  580.65.06  Release Build  (dvs-builder@U16-I3-B04-4-1)  Tue Jul 29 2025\n";
    assert_eq!(p(arm).unwrap().to_string(), "580.65.06");
    let two_part = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  570.26  Release Build\n";
    assert_eq!(p(two_part).unwrap().to_string(), "570.26");
    // GCC line first is fine.
    let reordered = "GCC version:  gcc version 13.2.0\nNVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22 2024\n";
    assert_eq!(p(reordered).unwrap().to_string(), "550.54.14");

    let err = p("").unwrap_err().to_string();
    assert!(
        err.contains("/proc/driver/nvidia/version") && err.contains("NVRM version"),
        "{err}"
    );
    let err = p("NVRM version: NVIDIA UNIX x86_64 Kernel Module  Release Build\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("no driver version number"), "{err}");
}

#[test]
fn doctor_parses_sys_module_version_variants() {
    let p = |text: &str| parse_sys_module_version(text, "/sys/module/nvidia/version");
    assert_eq!(p("580.159.04\n").unwrap().to_string(), "580.159.04");
    assert_eq!(p("  570.133.20  ").unwrap().to_string(), "570.133.20");
    assert!(p("").unwrap_err().to_string().contains("empty"));
    let err = p("580.x\n").unwrap_err().to_string();
    assert!(
        err.contains("/sys/module/nvidia/version") && err.contains("580.x"),
        "{err}"
    );
}

#[test]
fn doctor_a_garbled_proc_file_falls_back_to_sys() {
    let root = tempfile::tempdir().unwrap();
    let proc_dir = root.path().join("proc/driver/nvidia");
    let sys_dir = root.path().join("sys/module/nvidia");
    std::fs::create_dir_all(&proc_dir).unwrap();
    std::fs::create_dir_all(&sys_dir).unwrap();
    std::fs::write(proc_dir.join("version"), "garbage\n").unwrap();
    std::fs::write(sys_dir.join("version"), "580.65.06\n").unwrap();
    let host = read_host(&HostSources::new(root.path()));
    let driver = host.driver.as_ref().unwrap();
    assert_eq!(driver.value.to_string(), "580.65.06");
    assert!(driver.source.ends_with("sys/module/nvidia/version"));
    assert!(
        host.notes
            .iter()
            .any(|n| n.contains("proc/driver/nvidia/version") && n.contains("NVRM")),
        "{:?}",
        host.notes
    );
}

#[test]
fn doctor_driver_from_nvidia_smi_when_no_driver_file() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(
        root.path().join("nvidia-smi.csv"),
        "name, compute_cap, driver_version\nNVIDIA L4, 8.9, 570.172.08\n",
    )
    .unwrap();
    let host = read_host(&HostSources::new(root.path()));
    let driver = host.driver.as_ref().unwrap();
    assert_eq!(driver.value.to_string(), "570.172.08");
    assert!(driver.source.ends_with("nvidia-smi.csv"));
    assert_eq!(host.gpus[0].architecture, Some("Ada Lovelace"));
    assert_eq!(assess(&host).auto, Cu128);
}

#[test]
fn doctor_parses_nvidia_smi_csv_variants() {
    let real = std::fs::read_to_string(hosts_dir().join("h100/nvidia-smi.csv")).unwrap();
    let gpus = parse_nvidia_smi_csv(&real).unwrap();
    assert_eq!(gpus.len(), 1);
    assert_eq!(gpus[0].name, "NVIDIA H100 80GB HBM3");
    assert_eq!(
        gpus[0].compute_capability,
        Some(ComputeCapability::new(9, 0))
    );
    assert_eq!(
        gpus[0].driver_version,
        Some(DriverVersion::parse("580.159.04").unwrap())
    );

    // Columns in another order, [N/A], and a name with a comma.
    let text = "driver_version, name, compute_cap\n580.65.06, NVIDIA A100, 8.0\n580.65.06, Odd, GPU, [N/A]\n";
    let gpus = parse_nvidia_smi_csv(text).unwrap();
    assert_eq!(gpus[0].name, "NVIDIA A100");
    assert_eq!(gpus[1].name, "Odd, GPU");
    assert_eq!(gpus[1].compute_capability, None);

    // An old nvidia-smi without compute_cap.
    let gpus = parse_nvidia_smi_csv("name, driver_version\nTesla K80, 470.256.02\n").unwrap();
    assert_eq!(gpus[0].compute_capability, None);

    // No devices: a header only.
    assert!(parse_nvidia_smi_csv("name, compute_cap, driver_version\n")
        .unwrap()
        .is_empty());
    assert!(parse_nvidia_smi_csv("").unwrap_err().contains("nothing"));
    let err = parse_nvidia_smi_csv("No devices were found\n").unwrap_err();
    assert!(err.contains("no `name` column"), "{err}");
    let err = parse_nvidia_smi_csv("name, compute_cap, driver_version\nA100\n").unwrap_err();
    assert!(err.contains("1 fields"), "{err}");
}

#[test]
fn doctor_compute_capability_unknown_is_a_caveat() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("sys/module/nvidia")).unwrap();
    std::fs::write(root.path().join("sys/module/nvidia/version"), "580.65.06\n").unwrap();
    std::fs::write(
        root.path().join("nvidia-smi.csv"),
        "name, compute_cap, driver_version\nMystery GPU, [N/A], 580.65.06\n",
    )
    .unwrap();
    let r = assess(&read_host(&HostSources::new(root.path())));
    assert_eq!(r.backend(Cu130).unwrap().verdict, Caveat);
    assert!(render_text(&r).contains("compute capability unknown"));
}

// ---------------------------------------------------------------- live path without NVML

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn live_without_libraries(nvidia_smi: PathBuf) -> HostSources {
    let mut sources = HostSources::host();
    assert!(sources.live);
    sources.nvml_library = "libcomfypak-test-no-such-nvml.so.1".to_string();
    sources.cuda_library = "libcomfypak-test-no-such-cuda.so.1".to_string();
    sources.nvidia_smi = nvidia_smi;
    sources
}

#[test]
fn doctor_live_without_nvml_uses_nvidia_smi() {
    let dir = tempfile::tempdir().unwrap();
    let args_file = dir.path().join("args");
    let smi = script(
        dir.path(),
        "nvidia-smi",
        &format!(
            "echo \"$@\" > {}\nprintf 'name, compute_cap, driver_version\\nNVIDIA H100 80GB HBM3, 9.0, 580.159.04\\n'",
            args_file.display()
        ),
    );
    let host = read_host(&live_without_libraries(smi.clone()));
    assert!(host.live);
    assert_eq!(host.gpu_source.as_deref(), Some(smi.to_str().unwrap()));
    assert_eq!(host.gpus.len(), 1);
    assert_eq!(
        host.gpus[0].compute_capability,
        Some(ComputeCapability::new(9, 0))
    );
    assert_eq!(
        std::fs::read_to_string(&args_file).unwrap().trim(),
        "--query-gpu=name,compute_cap,driver_version --format=csv"
    );
    let nvml_note = host.notes.iter().find(|n| n.starts_with("NVML:")).unwrap();
    assert!(
        nvml_note.contains("libcomfypak-test-no-such-nvml.so.1"),
        "{nvml_note}"
    );
    assert!(nvml_note.contains("could not be loaded"), "{nvml_note}");
    assert!(
        host.notes.iter().any(|n| n.starts_with("libcuda:")),
        "{:?}",
        host.notes
    );
    assert!(host.driver_cuda_api.is_none());
    // Without a driver file on this host, the driver comes from nvidia-smi.
    if !Path::new("/proc/driver/nvidia/version").exists()
        && !Path::new("/sys/module/nvidia/version").exists()
    {
        let driver = host.driver.as_ref().unwrap();
        assert_eq!(driver.value.to_string(), "580.159.04");
        assert_eq!(assess(&host).auto, Cu130);
    }
}

#[test]
fn doctor_live_nvidia_smi_failures_are_notes() {
    let dir = tempfile::tempdir().unwrap();
    let failing = script(
        dir.path(),
        "nvidia-smi",
        "echo 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.' >&2; exit 9",
    );
    let host = read_host(&live_without_libraries(failing));
    assert!(host.gpus.is_empty());
    assert!(
        host.notes
            .iter()
            .any(|n| n.contains("could not communicate with the NVIDIA driver")),
        "{:?}",
        host.notes
    );

    let missing = read_host(&live_without_libraries(
        dir.path().join("no-such-nvidia-smi"),
    ));
    assert!(
        missing.notes.iter().any(|n| n.contains("not found")),
        "{:?}",
        missing.notes
    );

    // Drivers before 510 reject the compute_cap field: doctor asks again without it.
    let old = script(
        dir.path(),
        "old-nvidia-smi",
        "case \"$1\" in *compute_cap*) echo 'Field \"compute_cap\" is not a valid field to query.' >&2; exit 2;; esac\nprintf 'name, driver_version\\nTesla K80, 470.256.02\\n'",
    );
    let host = read_host(&live_without_libraries(old));
    assert_eq!(host.gpus.len(), 1);
    assert_eq!(host.gpus[0].name, "Tesla K80");
    assert_eq!(host.gpus[0].compute_capability, None);
}

#[test]
fn doctor_cli_on_this_host_never_fails() {
    // Whatever this machine has (usually no NVIDIA driver in CI), doctor answers with exit 0.
    let (code, stdout, stderr) = doctor(&[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("auto picks:"), "{stdout}");
    let (code, stdout, _) = doctor(&["--json"]);
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["host"]["live"], true);
    if !Path::new("/proc/driver/nvidia/version").exists() {
        assert!(json["host"]["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().contains("/proc/driver/nvidia/version")));
    }
}

/// A lock for x86_64 with torch on `backend`, the target's `gpus` and more packages
/// (`extra`: `[[packages]]` tables with their wheels).
fn write_arch_lock(dir: &Path, file: &str, backend: &str, gpus: &str, extra: &str) -> String {
    let path = dir.join(file);
    std::fs::write(
        &path,
        format!(
            r#"lock-version = "1.0"
created-by = "comfypak"

[[packages]]
name = "torch"
version = "2.11.0+{backend}"
wheels = [{{ name = "torch-2.11.0+{backend}-cp314-cp314-manylinux_2_28_x86_64.whl", url = "http://127.0.0.1:9/torch.whl", hashes = {{ sha256 = "0000000000000000000000000000000000000000000000000000000000000000" }} }}]

[packages.tool.comfypak]
layer = "stable"
index-name = "pytorch-{backend}"
{extra}
[tool.comfypak]
stack = "demo"
torch-backend = "{backend}"

[tool.comfypak.target]
python = "3.14"
platforms = ["manylinux_2_39_x86_64"]
venv = "/opt/venv"
gpus = [{gpus}]

[[tool.comfypak.layers]]
name = "stable"
rank = 1
paks = ["pak/stable.txt"]
inputs-hash = "sha256:00"

[[tool.comfypak.layers]]
name = "perf"
rank = 2
paks = ["pak/perf.txt"]
inputs-hash = "sha256:00"
"#
        ),
    )
    .unwrap();
    path.display().to_string()
}

const SAGEATTN3: &str = r#"
[[packages]]
name = "sageattn3"
version = "1.0.0"
wheels = [{ name = "sageattn3-1.0.0-cp314-cp314-linux_x86_64.whl", url = "http://127.0.0.1:9/s.whl", hashes = { sha256 = "0000000000000000000000000000000000000000000000000000000000000000" } }]

[packages.tool.comfypak]
layer = "perf"
index-name = "perf-wheels"
"#;

#[test]
fn doctor_lock_gpus_against_torch_and_perf_wheel_architectures() {
    let dir = tempfile::tempdir().unwrap();
    let h100 = root_arg("h100");

    // Fits: cu130 covers sm_90, and sm_90 is what the lock was made for.
    let fits = write_arch_lock(dir.path(), "fits.toml", "cu130", "\"sm_90\"", "");
    let (code, stdout, stderr) = doctor(&["--root", &h100, "--lock", &fits]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("runs on this host"), "{stdout}");
    assert!(
        stdout.contains("GPU 0 NVIDIA H100 80GB HBM3 (sm_90 (Hopper)): torch (cu130) runs it with its sm_90 kernels"),
        "{stdout}"
    );

    // A Blackwell-only perf wheel on Hopper: no kernel image, exit 1.
    let misfit = write_arch_lock(dir.path(), "misfit.toml", "cu130", "\"sm_120\"", SAGEATTN3);
    let (code, stdout, _) = doctor(&["--root", &h100, "--lock", &misfit]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("does NOT run on this host"), "{stdout}");
    assert!(
        stdout.contains("sageattn3 (sageattn3-1.0.0-cp314-cp314-linux_x86_64.whl) is built only for sm_100, sm_120"),
        "{stdout}"
    );
    assert!(
        stdout.contains("no kernel image is available for execution on the device"),
        "{stdout}"
    );
    assert!(
        stdout.contains("is not among the lock's target.gpus (sm_120)"),
        "{stdout}"
    );

    // cu126 torch on an RTX 5090 (sm_120): its builds stop at sm_90 with no PTX, so this is
    // "no kernel image", not a caveat.
    let cu126 = write_arch_lock(dir.path(), "cu126.toml", "cu126", "", "");
    let (code, stdout, _) = doctor(&["--root", &root_arg("blackwell-570"), "--lock", &cu126]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("the locked torch 2.11.0+cu126 (cu126) carries kernels for sm_50, sm_60, sm_70, sm_75, sm_80, sm_86, sm_90"),
        "{stdout}"
    );
}

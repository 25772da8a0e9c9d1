//! `doctor`: reads the runtime host (NVIDIA driver, GPUs) and says which torch backends run
//! there, which one `auto` picks, and whether a lock fits: its backend against the driver,
//! every GPU against the architectures of its torch build and of its perf wheels.
//!
//! Owns: [`HostSources`] (where to read: a root folder, library names, the `nvidia-smi`
//! command), [`read_host`] → [`HostReading`], [`assess`] → [`DoctorReport`] (with a
//! [`LockCheck`] slot that `build::check_lock` fills: reading locks is not cuda's),
//! [`render_text`], and the parsers of the driver files and `nvidia-smi` CSV.
//!
//! Sources, in order:
//! - driver: `<root>/proc/driver/nvidia/version`, else `<root>/sys/module/nvidia/version`,
//!   else (live host only) NVML's `nvmlSystemGetDriverVersion`, else the `driver_version`
//!   column of `nvidia-smi`. libcuda's `cuDriverGetVersion` (live host only) gives the CUDA
//!   version the driver supports, which decides when no driver number was found.
//! - GPUs: NVML through dlopen (live host only), else `nvidia-smi --query-gpu=name,
//!   compute_cap,driver_version --format=csv` (with a fake root: `<root>/nvidia-smi.csv`).
//!
//! "Live" means the root is `/`: a fake root (tests, fixtures in `fixtures/hosts/`) never
//! loads the real host's libraries or runs its `nvidia-smi`. No driver and no GPU is a normal
//! reading (only `cpu` runs), never an error.
//!
//! Must not: resolve, read indexes, or change the host.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::backend::{
    Backend, ComputeCapability, CudaVersion, DriverRequirement, DriverVersion, Verdict,
};
use super::dl;

/// The driver file the kernel module writes.
pub const PROC_DRIVER_VERSION: &str = "proc/driver/nvidia/version";
/// The module parameter file with the bare version.
pub const SYS_MODULE_VERSION: &str = "sys/module/nvidia/version";
/// In a fake root: what `nvidia-smi --query-gpu=... --format=csv` printed.
pub const NVIDIA_SMI_FIXTURE: &str = "nvidia-smi.csv";
/// The `nvidia-smi` query doctor runs.
pub const NVIDIA_SMI_ARGS: [&str; 2] = [
    "--query-gpu=name,compute_cap,driver_version",
    "--format=csv",
];
/// How long `nvidia-smi` may take (it can hang on a broken driver).
pub const NVIDIA_SMI_TIMEOUT: Duration = Duration::from_secs(20);

/// Where doctor reads the host from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSources {
    /// The host's root folder; `/` for the real host.
    pub root: PathBuf,
    /// Whether the real host's libraries and commands may be used (root is `/`).
    pub live: bool,
    /// NVML's library name.
    pub nvml_library: String,
    /// libcuda's library name.
    pub cuda_library: String,
    /// The `nvidia-smi` command.
    pub nvidia_smi: PathBuf,
}

impl HostSources {
    /// Reads from `root`; live (NVML, libcuda, `nvidia-smi`) only when it is `/`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let live = std::fs::canonicalize(&root)
            .map(|p| p == Path::new("/"))
            .unwrap_or(false);
        Self {
            root,
            live,
            nvml_library: dl::NVML_LIBRARY.to_string(),
            cuda_library: dl::CUDA_LIBRARY.to_string(),
            nvidia_smi: PathBuf::from("nvidia-smi"),
        }
    }

    /// The real host.
    pub fn host() -> Self {
        Self::new("/")
    }
}

/// Where a value was read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sourced<T> {
    /// The value.
    pub value: T,
    /// A path, or `NVML`, `libcuda`, `nvidia-smi`.
    pub source: String,
}

/// One GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gpu {
    /// Index as the source lists it.
    pub index: usize,
    /// e.g. `NVIDIA H100 80GB HBM3`.
    pub name: String,
    /// e.g. 9.0; None when the source could not tell.
    pub compute_capability: Option<ComputeCapability>,
    /// The architecture's name, from the compute capability.
    pub architecture: Option<&'static str>,
}

/// What was read off the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostReading {
    /// The root read.
    pub root: String,
    /// Whether the real host's libraries and commands were used.
    pub live: bool,
    /// The NVIDIA driver version.
    pub driver: Option<Sourced<DriverVersion>>,
    /// The newest CUDA the driver fully supports, from its version (NVIDIA's table).
    pub driver_max_cuda: Option<CudaVersion>,
    /// libcuda's `cuDriverGetVersion`, as a CUDA version.
    pub driver_cuda_api: Option<Sourced<CudaVersion>>,
    /// The GPUs.
    pub gpus: Vec<Gpu>,
    /// Where the GPU list came from (None when no source answered).
    pub gpu_source: Option<String>,
    /// What was tried and did not answer, and why.
    pub notes: Vec<String>,
}

/// Why a driver file could not be read as a version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct DriverFileError {
    /// The file.
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

/// Reads the version from `/proc/driver/nvidia/version` text, e.g.
/// `NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build ...`
/// or `NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.129.03  Thu Oct 19 ...`.
pub fn parse_proc_driver_version(text: &str, path: &str) -> Result<DriverVersion, DriverFileError> {
    let error = |reason: String| DriverFileError {
        path: path.to_string(),
        reason,
    };
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("NVRM version:"))
        .ok_or_else(|| {
            error(
                "no line starting with \"NVRM version:\"; expected the NVIDIA kernel module's \
                 version file"
                    .to_string(),
            )
        })?;
    let after = line.trim_start().trim_start_matches("NVRM version:");
    after
        .split_whitespace()
        .find(|word| {
            word.contains('.')
                && word.bytes().all(|b| b.is_ascii_digit() || b == b'.')
                && DriverVersion::parse(word).is_ok()
        })
        .and_then(|word| DriverVersion::parse(word).ok())
        .ok_or_else(|| error(format!("no driver version number in {:?}", line.trim())))
}

/// Reads `/sys/module/nvidia/version` text: the bare version, e.g. `580.159.04`.
pub fn parse_sys_module_version(text: &str, path: &str) -> Result<DriverVersion, DriverFileError> {
    let first = text.lines().next().unwrap_or("").trim();
    if first.is_empty() {
        return Err(DriverFileError {
            path: path.to_string(),
            reason: "the file is empty".to_string(),
        });
    }
    DriverVersion::parse(first).map_err(|e| DriverFileError {
        path: path.to_string(),
        reason: e.to_string(),
    })
}

/// One row of `nvidia-smi --query-gpu=... --format=csv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmiGpu {
    /// Name column.
    pub name: String,
    /// `compute_cap` column, when present and valid.
    pub compute_capability: Option<ComputeCapability>,
    /// `driver_version` column, when present and valid.
    pub driver_version: Option<DriverVersion>,
}

/// Reads `nvidia-smi --format=csv` output with a header line; columns are found by header
/// name (`name`, `compute_cap`, `driver_version`), others are ignored. `[N/A]` values read as
/// unknown.
pub fn parse_nvidia_smi_csv(text: &str) -> Result<Vec<SmiGpu>, String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = lines
        .next()
        .ok_or_else(|| "nvidia-smi printed nothing".to_string())?;
    let columns: Vec<String> = header
        .split(',')
        .map(|c| {
            c.split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_lowercase()
        })
        .collect();
    let column = |name: &str| columns.iter().position(|c| c == name);
    let name_at = column("name").ok_or_else(|| {
        format!("the header {header:?} has no `name` column; expected --format=csv output with a header")
    })?;
    let cap_at = column("compute_cap");
    let driver_at = column("driver_version");
    let mut gpus = Vec::new();
    for line in lines {
        let mut fields: Vec<String> = line.split(',').map(|f| f.trim().to_string()).collect();
        // A name with commas: fold the surplus fields back into the name.
        if fields.len() > columns.len() && name_at + 1 < fields.len() {
            let surplus = fields.len() - columns.len();
            let merged = fields[name_at..=name_at + surplus].join(", ");
            fields.splice(name_at..=name_at + surplus, [merged]);
        }
        if fields.len() < columns.len() {
            return Err(format!(
                "line {line:?} has {} fields, the header has {}",
                fields.len(),
                columns.len()
            ));
        }
        let get = |at: Option<usize>| at.and_then(|i| fields.get(i)).map(String::as_str);
        gpus.push(SmiGpu {
            name: fields[name_at].clone(),
            compute_capability: get(cap_at).and_then(|v| v.parse().ok()),
            driver_version: get(driver_at).and_then(|v| DriverVersion::parse(v).ok()),
        });
    }
    Ok(gpus)
}

/// Reads the host. Never fails: what could not be read is a note.
pub fn read_host(sources: &HostSources) -> HostReading {
    let mut notes = Vec::new();
    let root = &sources.root;
    let mut driver: Option<Sourced<DriverVersion>> = None;

    for (relative, parse) in [
        (
            PROC_DRIVER_VERSION,
            parse_proc_driver_version as fn(&str, &str) -> Result<DriverVersion, DriverFileError>,
        ),
        (SYS_MODULE_VERSION, parse_sys_module_version),
    ] {
        if driver.is_some() {
            break;
        }
        let path = root.join(relative);
        let shown = path.display().to_string();
        match std::fs::read_to_string(&path) {
            Ok(text) => match parse(&text, &shown) {
                Ok(version) => {
                    driver = Some(Sourced {
                        value: version,
                        source: shown,
                    })
                }
                Err(e) => notes.push(e.to_string()),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                notes.push(format!("{shown}: not present"))
            }
            Err(e) => notes.push(format!("{shown}: {e}")),
        }
    }

    let mut gpus = Vec::new();
    let mut gpu_source = None;
    let mut nvml_driver = None;
    if sources.live {
        match dl::read_nvml(&sources.nvml_library) {
            Ok(reading) => {
                gpu_source = Some("NVML".to_string());
                gpus = reading
                    .gpus
                    .iter()
                    .enumerate()
                    .map(|(index, g)| {
                        let capability = g
                            .compute_capability
                            .map(|(major, minor)| ComputeCapability::new(major, minor));
                        gpu(index, g.name.clone(), capability)
                    })
                    .collect();
                notes.extend(reading.problems.iter().map(|p| format!("NVML: {p}")));
                nvml_driver = reading
                    .driver_version
                    .as_deref()
                    .and_then(|v| DriverVersion::parse(v).ok());
            }
            Err(e) => notes.push(format!("NVML: {e}")),
        }
    }
    if driver.is_none() {
        if let Some(version) = nvml_driver {
            driver = Some(Sourced {
                value: version,
                source: "NVML".to_string(),
            });
        }
    }

    if gpu_source.is_none() || driver.is_none() {
        match run_nvidia_smi(sources) {
            Ok(Some((rows, source))) => {
                if gpu_source.is_none() {
                    gpus = rows
                        .iter()
                        .enumerate()
                        .map(|(index, row)| gpu(index, row.name.clone(), row.compute_capability))
                        .collect();
                    gpu_source = Some(source.clone());
                }
                if driver.is_none() {
                    if let Some(version) = rows.iter().find_map(|r| r.driver_version.clone()) {
                        driver = Some(Sourced {
                            value: version,
                            source,
                        });
                    }
                }
            }
            Ok(None) => {}
            Err(note) => notes.push(note),
        }
    }

    let mut driver_cuda_api = None;
    if sources.live {
        match dl::cuda_driver_version(&sources.cuda_library) {
            Ok(value) => match CudaVersion::from_driver_api(value) {
                Some(cuda) => {
                    driver_cuda_api = Some(Sourced {
                        value: cuda,
                        source: format!("{} cuDriverGetVersion = {value}", sources.cuda_library),
                    })
                }
                None => notes.push(format!(
                    "{}: cuDriverGetVersion returned {value}, not a CUDA version",
                    sources.cuda_library
                )),
            },
            Err(e) => notes.push(format!("libcuda: {e}")),
        }
    }

    let driver_max_cuda = driver.as_ref().and_then(|d| d.value.max_cuda());
    HostReading {
        root: root.display().to_string(),
        live: sources.live,
        driver,
        driver_max_cuda,
        driver_cuda_api,
        gpus,
        gpu_source,
        notes,
    }
}

fn gpu(index: usize, name: String, compute_capability: Option<ComputeCapability>) -> Gpu {
    Gpu {
        index,
        name,
        compute_capability,
        architecture: compute_capability.map(|c| c.architecture()),
    }
}

/// Runs `nvidia-smi` (live) or reads `<root>/nvidia-smi.csv` (fake root). `Ok(None)` when
/// neither exists; `Err` is a note.
fn run_nvidia_smi(sources: &HostSources) -> Result<Option<(Vec<SmiGpu>, String)>, String> {
    if !sources.live {
        let path = sources.root.join(NVIDIA_SMI_FIXTURE);
        let shown = path.display().to_string();
        return match std::fs::read_to_string(&path) {
            Ok(text) => parse_nvidia_smi_csv(&text)
                .map(|rows| Some((rows, shown.clone())))
                .map_err(|e| format!("{shown}: {e}")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{shown}: {e}")),
        };
    }
    let command = sources.nvidia_smi.display().to_string();
    let output = match run_with_timeout(&sources.nvidia_smi, &NVIDIA_SMI_ARGS) {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("{command}: not found on PATH"))
        }
        Err(e) => return Err(format!("{command}: {e}")),
    };
    if !output.0 {
        // Drivers older than 510 do not know the compute_cap field: ask without it.
        if output.2.contains("compute_cap") {
            if let Ok((true, stdout, _)) = run_with_timeout(
                &sources.nvidia_smi,
                &["--query-gpu=name,driver_version", "--format=csv"],
            ) {
                return parse_nvidia_smi_csv(&stdout)
                    .map(|rows| Some((rows, command.clone())))
                    .map_err(|e| format!("{command}: {e}"));
            }
        }
        return Err(format!(
            "{command} {} failed: {}",
            NVIDIA_SMI_ARGS.join(" "),
            first_line(&output.2, &output.1)
        ));
    }
    parse_nvidia_smi_csv(&output.1)
        .map(|rows| Some((rows, command.clone())))
        .map_err(|e| format!("{command}: {e}"))
}

fn first_line(stderr: &str, stdout: &str) -> String {
    let text = if stderr.trim().is_empty() {
        stdout
    } else {
        stderr
    };
    text.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no output")
        .trim()
        .to_string()
}

/// Runs a command with [`NVIDIA_SMI_TIMEOUT`]: (success, stdout, stderr).
fn run_with_timeout(program: &Path, args: &[&str]) -> std::io::Result<(bool, String, String)> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdout_pipe = child.stdout.take();
    let mut stderr_pipe = child.stderr.take();
    let out_reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(pipe) = stdout_pipe.as_mut() {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    });
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(pipe) = stderr_pipe.as_mut() {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() > NVIDIA_SMI_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "did not finish within {} s (a hung driver?)",
                    NVIDIA_SMI_TIMEOUT.as_secs()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    Ok((status.success(), stdout, stderr))
}

/// A backend's verdict on one GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GpuVerdict {
    /// The GPU's index.
    pub index: usize,
    /// Its name.
    pub name: String,
    /// The verdict.
    pub verdict: Verdict,
    /// Why.
    pub reason: String,
}

/// One backend's verdict on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackendReport {
    /// The backend.
    pub backend: Backend,
    /// Its index definition's name.
    pub index: &'static str,
    /// The CUDA it ships.
    pub cuda: Option<CudaVersion>,
    /// The driver it needs.
    pub driver_requirement: Option<DriverRequirement>,
    /// The lowest compute capability it builds for.
    pub min_compute_capability: Option<ComputeCapability>,
    /// The newest compute capability its CUDA knows.
    pub max_known_compute_capability: Option<ComputeCapability>,
    /// Overall.
    pub verdict: Verdict,
    /// The driver's verdict and why.
    pub driver_verdict: Verdict,
    /// Why (driver).
    pub driver_reason: String,
    /// Per GPU.
    pub gpus: Vec<GpuVerdict>,
    /// Further reasons (e.g. no GPU listed, some GPUs refused).
    pub notes: Vec<String>,
}

/// The lock's torch backend against the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockCheck {
    /// The lock file.
    pub lock: String,
    /// `[tool.comfypak] torch-backend` as written.
    pub torch_backend: String,
    /// The locked torch version, when the lock has torch.
    pub torch: Option<String>,
    /// Whether it runs here.
    pub verdict: Verdict,
    /// Why, and what to do.
    pub reasons: Vec<String>,
}

/// The whole answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DoctorReport {
    /// What was read.
    pub host: HostReading,
    /// One entry per backend, newest first.
    pub backends: Vec<BackendReport>,
    /// What `auto` picks.
    pub auto: Backend,
    /// Why.
    pub auto_reason: String,
    /// With `--lock`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock: Option<LockCheck>,
}

impl DoctorReport {
    /// The report of one backend.
    pub fn backend(&self, backend: Backend) -> Option<&BackendReport> {
        self.backends.iter().find(|b| b.backend == backend)
    }
}

/// Judges every backend on the host and picks `auto`: the newest CUDA backend whose verdict
/// is ok; else the newest that runs with a caveat; else `cpu`.
pub fn assess(host: &HostReading) -> DoctorReport {
    let backends: Vec<BackendReport> = Backend::ALL
        .into_iter()
        .map(|backend| assess_backend(host, backend))
        .collect();
    let cuda_backends = || backends.iter().filter(|b| b.backend != Backend::Cpu);
    let (auto, auto_reason) = if let Some(b) = cuda_backends().find(|b| b.verdict == Verdict::Ok) {
        (
            b.backend,
            format!(
                "{}: the newest backend that runs here without caveats",
                b.backend
            ),
        )
    } else if let Some(b) = cuda_backends().find(|b| b.verdict == Verdict::Caveat) {
        (
            b.backend,
            format!(
                "{}: the newest backend that runs here, with caveats (no CUDA backend runs \
                 without one)",
                b.backend
            ),
        )
    } else {
        let why = if host.driver.is_none() && host.driver_cuda_api.is_none() {
            "no NVIDIA driver found"
        } else {
            "no CUDA backend runs on this driver and these GPUs"
        };
        (Backend::Cpu, format!("cpu: {why}"))
    };
    DoctorReport {
        host: host.clone(),
        backends,
        auto,
        auto_reason,
        lock: None,
    }
}

fn assess_backend(host: &HostReading, backend: Backend) -> BackendReport {
    let (driver_verdict, driver_reason) = match (&host.driver, &host.driver_cuda_api) {
        (Some(driver), _) => {
            let (v, reason) = backend.driver_verdict(Some(&driver.value));
            (v, format!("{reason} [{}]", driver.source))
        }
        (None, Some(api)) => {
            let (v, reason) = backend.cuda_api_verdict(api.value);
            (v, format!("{reason} [{}]", api.source))
        }
        (None, None) => backend.driver_verdict(None),
    };
    let mut notes = Vec::new();
    let gpus: Vec<GpuVerdict> = if backend == Backend::Cpu {
        Vec::new()
    } else {
        host.gpus
            .iter()
            .map(|g| {
                let (verdict, reason) = backend.gpu_verdict(g.compute_capability);
                GpuVerdict {
                    index: g.index,
                    name: g.name.clone(),
                    verdict,
                    reason,
                }
            })
            .collect()
    };
    let gpu_verdict = if backend == Backend::Cpu {
        Verdict::Ok
    } else if gpus.is_empty() {
        if driver_verdict.runs() {
            notes.push(
                "no GPU listed (NVML and nvidia-smi gave none): GPU architecture not checked"
                    .to_string(),
            );
            Verdict::Caveat
        } else {
            Verdict::Ok
        }
    } else {
        let refused: Vec<usize> = gpus
            .iter()
            .filter(|g| g.verdict == Verdict::No)
            .map(|g| g.index)
            .collect();
        if refused.len() == gpus.len() {
            Verdict::No
        } else if !refused.is_empty() {
            let usable: Vec<String> = gpus
                .iter()
                .filter(|g| g.verdict.runs())
                .map(|g| g.index.to_string())
                .collect();
            notes.push(format!(
                "runs on GPU {} only (set CUDA_VISIBLE_DEVICES={})",
                usable.join(", "),
                usable.join(",")
            ));
            Verdict::Caveat
        } else {
            gpus.iter().map(|g| g.verdict).max().unwrap_or(Verdict::Ok)
        }
    };
    BackendReport {
        backend,
        index: backend.index_name(),
        cuda: backend.cuda(),
        driver_requirement: backend.driver_requirement(),
        min_compute_capability: backend.min_compute_capability(),
        max_known_compute_capability: backend.max_known_compute_capability(),
        verdict: driver_verdict.max(gpu_verdict),
        driver_verdict,
        driver_reason,
        gpus,
        notes,
    }
}

/// The report as text for a person.
pub fn render_text(report: &DoctorReport) -> String {
    let host = &report.host;
    let mut out = String::new();
    out.push_str(&format!(
        "host: {}{}\n",
        host.root,
        if host.live { "" } else { " (fake root)" }
    ));
    match &host.driver {
        Some(driver) => {
            let max = driver
                .value
                .max_cuda()
                .map(|c| format!("; full support up to CUDA {c}"))
                .unwrap_or_default();
            out.push_str(&format!(
                "NVIDIA driver: {} (from {}{max})\n",
                driver.value, driver.source
            ));
        }
        None => out.push_str("NVIDIA driver: none found\n"),
    }
    if let Some(api) = &host.driver_cuda_api {
        out.push_str(&format!(
            "CUDA driver API: CUDA {} ({})\n",
            api.value, api.source
        ));
    }
    match &host.gpu_source {
        Some(source) if !host.gpus.is_empty() => {
            out.push_str(&format!("GPUs (from {source}):\n"));
            for g in &host.gpus {
                let cap = match (g.compute_capability, g.architecture) {
                    (Some(c), Some(arch)) => format!("compute {c} ({arch})"),
                    _ => "compute capability unknown".to_string(),
                };
                out.push_str(&format!("  GPU {}  {}  {cap}\n", g.index, g.name));
            }
        }
        Some(source) => out.push_str(&format!("GPUs: none (from {source})\n")),
        None => out.push_str("GPUs: none found\n"),
    }
    out.push('\n');

    let rows: Vec<[String; 5]> = report
        .backends
        .iter()
        .map(|b| {
            let driver = b
                .driver_requirement
                .as_ref()
                .map(|r| format!(">= {} / >= {}", r.minor_compat_floor, r.full))
                .unwrap_or_else(|| "-".to_string());
            let arch = match (b.min_compute_capability, b.max_known_compute_capability) {
                (Some(min), Some(max)) => format!("{min} .. {max}"),
                _ => "-".to_string(),
            };
            [
                b.backend.to_string(),
                b.cuda.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
                driver,
                arch,
                b.verdict.to_string(),
            ]
        })
        .collect();
    let header = [
        "backend".to_string(),
        "CUDA".to_string(),
        "driver (minor-compat / full)".to_string(),
        "compute cap".to_string(),
        "verdict".to_string(),
    ];
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: &[String; 5]| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<w$}  "));
            }
        }
        text.trim_end().to_string()
    };
    out.push_str(&line(&header));
    out.push('\n');
    for row in &rows {
        out.push_str(&line(row));
        out.push('\n');
    }
    out.push('\n');

    for b in report.backends.iter().filter(|b| b.backend != Backend::Cpu) {
        out.push_str(&format!("{}: {}\n", b.backend, b.verdict));
        out.push_str(&format!(
            "  driver: {}: {}\n",
            b.driver_verdict, b.driver_reason
        ));
        for g in &b.gpus {
            out.push_str(&format!(
                "  GPU {} {}: {}: {}\n",
                g.index, g.name, g.verdict, g.reason
            ));
        }
        for note in &b.notes {
            out.push_str(&format!("  note: {note}\n"));
        }
    }
    out.push_str("cpu: ok\n\n");
    out.push_str(&format!("auto picks: {}\n", report.auto_reason));

    if let Some(lock) = &report.lock {
        let torch = lock
            .torch
            .as_ref()
            .map(|t| format!(", torch {t}"))
            .unwrap_or_default();
        out.push_str(&format!(
            "\nlock {}: torch backend {}{torch}: {}\n",
            lock.lock,
            lock.torch_backend,
            match lock.verdict {
                Verdict::Ok => "runs on this host",
                Verdict::Caveat => "runs on this host with caveats",
                Verdict::No => "does NOT run on this host",
            }
        ));
        for reason in &lock.reasons {
            out.push_str(&format!("  {reason}\n"));
        }
    }
    if !host.notes.is_empty() {
        out.push_str("\nsources that did not answer:\n");
        for note in &host.notes {
            out.push_str(&format!("  - {note}\n"));
        }
    }
    out
}

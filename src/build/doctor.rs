//! `doctor --lock`: a lock's torch backend, its torch build and its GPU-claiming wheels
//! against a host reading ([`crate::cuda::doctor`]).
//!
//! Owns [`check_lock`]. Must not: read the host (cuda does) or print (cli does).

use std::path::Path;
use std::str::FromStr;

use crate::cuda::arch::{self, torch_archs, wheel_arch_claim, ArchList, Coverage, GpuArch};
use crate::cuda::doctor::{DoctorReport, LockCheck};
use crate::cuda::{Backend, Verdict};
use crate::filename::WheelFilename;
use crate::lock::Lock;

/// Checks a lock's `[tool.comfypak] torch-backend` (and its torch's local label) against
/// the host.
pub fn check_lock(report: &DoctorReport, lock: &Lock, lock_path: &Path) -> LockCheck {
    let backend = lock.tool.comfypak.torch_backend;
    let torch = lock
        .packages
        .iter()
        .find(|p| p.name.as_ref() == "torch")
        .map(|p| p.version.to_string());
    let mut reasons = Vec::new();
    let verdict = {
        let entry = report.backend(backend);
        let verdict = entry.map(|e| e.verdict).unwrap_or(Verdict::No);
        if let Some(entry) = entry {
            reasons.push(format!(
                "{backend}: {} here; {}",
                match verdict {
                    Verdict::Ok => "runs",
                    Verdict::Caveat => "runs with caveats",
                    Verdict::No => "does not run",
                },
                entry.driver_reason
            ));
            for g in entry.gpus.iter().filter(|g| g.verdict != Verdict::Ok) {
                reasons.push(format!("GPU {} {}: {}", g.index, g.name, g.reason));
            }
            reasons.extend(entry.notes.iter().cloned());
        }
        if let Some(version) = &torch {
            let label = version.split_once('+').map(|(_, l)| l);
            if let Some(label) = label {
                if !label.eq_ignore_ascii_case(backend.local_label()) {
                    reasons.push(format!(
                        "the locked torch {version} carries label +{label}, not \
                             +{backend}: the lock is inconsistent; re-resolve"
                    ));
                }
            }
        }
        let (arch_verdict, arch_reasons) =
            check_lock_archs(report, lock, backend, torch.as_deref());
        reasons.extend(arch_reasons);
        if !verdict.runs() {
            reasons.push(format!(
                "re-resolve for this host with --torch-backend {} (what auto picks here), \
                     or run the image on a host where {backend} runs",
                report.auto
            ));
        }
        verdict.max(arch_verdict)
    };
    LockCheck {
        lock: lock_path.display().to_string(),
        torch_backend: backend.to_string(),
        torch,
        verdict,
        reasons,
    }
}

/// The CPU architecture of the lock's platform that this host runs (`x86_64`): the build
/// host's own, when the lock has it, else the lock's first.
fn lock_cpu_arch(lock: &Lock) -> String {
    let platforms = &lock.tool.comfypak.target.platforms;
    let here = std::env::consts::ARCH;
    if platforms.iter().any(|p| p.arch.to_string() == here) {
        return here.to_string();
    }
    platforms
        .first()
        .map(|p| p.arch.to_string())
        .unwrap_or_else(|| here.to_string())
}

/// Every GPU of the host against the architectures of the locked torch build (the
/// backend's table) and of each locked wheel that claims architectures (`-hopper-`,
/// `sageattn3`), and against the lock's `target.gpus`. A GPU that nothing reaches is
/// [`Verdict::No`]: the image would fail with "no kernel image is available for execution on
/// the device".
fn check_lock_archs(
    report: &DoctorReport,
    lock: &Lock,
    backend: Backend,
    torch: Option<&str>,
) -> (Verdict, Vec<String>) {
    let mut verdict = Verdict::Ok;
    let mut reasons = Vec::new();
    let cpu_arch = lock_cpu_arch(lock);
    let torch_list = torch_archs(backend, &cpu_arch);
    let declared = &lock.tool.comfypak.target.gpus;
    // The locked wheels for this CPU architecture that claim GPU architectures.
    let claims: Vec<(String, ArchList, String)> = lock
        .packages
        .iter()
        .flat_map(|p| p.wheels.iter().map(move |w| (p, w)))
        .filter(|(_, w)| w.name.contains(&cpu_arch) || w.name.ends_with("-any.whl"))
        .filter_map(|(p, w)| {
            let parsed = WheelFilename::from_str(&w.name).ok()?;
            let (list, why) = wheel_arch_claim(&parsed)?;
            Some((format!("{} ({})", p.name, w.name), list, why))
        })
        .collect();
    for gpu in &report.host.gpus {
        let Some(cc) = gpu.compute_capability else {
            continue;
        };
        let arch = GpuArch(cc);
        let who = format!("GPU {} {} ({})", gpu.index, gpu.name, arch::named(arch));
        if let Some(list) = &torch_list {
            match list.covers(arch) {
                Coverage::No => {
                    verdict = Verdict::No;
                    reasons.push(format!(
                        "{who}: the locked torch {} ({backend}) carries kernels for {} ({}), none of \
                         which runs here: it would fail with \"no kernel image is available for \
                         execution on the device\"",
                        torch.unwrap_or("build"),
                        list.describe(),
                        list.source
                    ));
                }
                Coverage::Ptx(ptx) => {
                    verdict = verdict.max(Verdict::Caveat);
                    reasons.push(format!(
                        "{who}: torch ({backend}) has no kernel built for it and runs by JIT from \
                         its {ptx} PTX (slow first start)"
                    ));
                }
                Coverage::Cubin(by) => reasons.push(format!(
                    "{who}: torch ({backend}) runs it with its {by} kernels"
                )),
            }
        }
        for (what, list, why) in &claims {
            if list.covers(arch) == Coverage::No {
                verdict = Verdict::No;
                reasons.push(format!(
                    "{who}: {what} is built only for {} ({why}): it would fail with \"no kernel \
                     image is available for execution on the device\"",
                    list.describe()
                ));
            }
        }
        if !declared.is_empty() && !declared.contains(&arch) {
            verdict = verdict.max(Verdict::Caveat);
            reasons.push(format!(
                "{who} is not among the lock's target.gpus ({}): its ABI-coupled wheels were \
                 checked for those only",
                arch::list(declared)
            ));
        }
    }
    (verdict, reasons)
}

//! The torch backend of a resolution: which backend a setting (`cu130`, `cu128`, `cu126`,
//! `cpu`, `auto`) means on this host, and where the torch family comes from under it.
//!
//! Owns: [`select_backend`] (a set backend must cover the stack's `target.gpus` and
//! `target.min-driver`; `auto` is the newest backend that covers them, or, when the stack
//! declares none, what `cuda::doctor` picks on this host) with [`backend_fit`], and [`indexes_for_backend`], the one
//! place where the torch family ([`crate::cuda::TORCH_FAMILY`]) is routed to the selected
//! backend's index (`pytorch-cu128`, ...), wherever a family package is required from, and
//! where the stack's pins to a PyTorch index (`pytorch-cu130`, written for the default
//! backend) follow the backend. An explicit stack pin of a family package to another index
//! wins, with a warning ([`family_pin_warnings`]). [`family_refusal`] says why a family
//! package cannot be looked up at all (a CUDA runtime wheel under `cpu`; no definition of
//! the backend's index). Packages outside the family that are not pinned never come from a
//! PyTorch index, under any backend.
//!
//! Must not: resolve, fetch, or decide which build of a coupled package fits (the candidates
//! and the provider do, with `crate::cuda`).

use std::str::FromStr;

use pep508_rs::PackageName;

use crate::cuda::arch;
use crate::cuda::{
    assess, family_member, read_host, torch_archs, Backend, BackendChoice, BackendParseError,
    Coverage, HostSources, MemberKind, TORCH_FAMILY,
};
use crate::stack::{IndexPin, IndexSettings, StackTarget};

/// The backend a resolution uses, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSelection {
    pub backend: Backend,
    /// "set in stack.toml", "--torch-backend", or doctor's reason for `auto`.
    pub why: String,
}

/// Why a backend setting cannot be used for this stack.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendSelectError {
    /// Not a backend name.
    #[error(transparent)]
    Parse(#[from] BackendParseError),
    /// A backend set explicitly that does not cover `target.gpus` / `target.min-driver`.
    #[error("torch backend {backend} does not cover the stack's target: {}", .reasons.join("; "))]
    Uncovered {
        backend: Backend,
        reasons: Vec<String>,
        help: String,
    },
    /// `auto` with declared GPUs, and no backend covers them.
    #[error("torch backend auto: no backend covers the stack's target ({target}): {}", .reasons.join("; "))]
    NoneCovers {
        target: String,
        reasons: Vec<String>,
    },
}

impl BackendSelectError {
    /// What the user can do about it.
    pub fn help(&self) -> Option<String> {
        match self {
            BackendSelectError::Parse(_) => None,
            BackendSelectError::Uncovered { help, .. } => Some(help.clone()),
            BackendSelectError::NoneCovers { .. } => Some(
                "drop the architectures no backend builds for from target.gpus, or lower \
                 target.min-driver's demands"
                    .to_string(),
            ),
        }
    }
}

/// `target.gpus` and `target.min-driver` in words: "gpus sm_61, min-driver 535".
fn describe_target(target: &StackTarget) -> String {
    let mut parts = Vec::new();
    if !target.gpus.is_empty() {
        parts.push(format!("target.gpus {}", arch::list(&target.gpus)));
    }
    if let Some(driver) = &target.min_driver {
        parts.push(format!("target.min-driver {driver}"));
    }
    parts.join(", ")
}

/// Whether `backend`'s torch builds cover every GPU of `target.gpus` on every platform of
/// the stack, and run with `target.min-driver`: Ok with how (one line), or every reason
/// it does not. `cpu` covers everything (it needs no GPU).
pub fn backend_fit(backend: Backend, target: &StackTarget) -> Result<String, Vec<String>> {
    let mut reasons = Vec::new();
    let mut how = Vec::new();
    if let (Some(min), Some(need)) = (&target.min_driver, backend.driver_requirement()) {
        if min < &need.minor_compat_floor {
            reasons.push(format!(
                "{backend} needs NVIDIA driver >= {} and target.min-driver is {min}",
                need.minor_compat_floor
            ));
        }
    }
    let mut arches: Vec<String> = target
        .platforms
        .iter()
        .map(|p| p.arch.to_string())
        .collect();
    arches.dedup();
    for cpu_arch in &arches {
        let Some(list) = torch_archs(backend, cpu_arch) else {
            continue;
        };
        for gpu in &target.gpus {
            match list.covers(*gpu) {
                Coverage::Cubin(by) if by == *gpu => how.push(format!("{gpu}")),
                Coverage::Cubin(by) => how.push(format!("{gpu} by its {by} kernels")),
                Coverage::Ptx(by) => how.push(format!("{gpu} by JIT from its {by} PTX")),
                Coverage::No => reasons.push(format!(
                    "{backend} torch builds for {cpu_arch} carry kernels for {} ({}), none \
                     of which runs on {}",
                    list.describe(),
                    list.source,
                    arch::named(*gpu)
                )),
            }
        }
    }
    if !reasons.is_empty() {
        return Err(reasons);
    }
    how.sort();
    how.dedup();
    Ok(if how.is_empty() {
        format!("{backend} fits {}", describe_target(target))
    } else {
        format!("{backend} covers {}", how.join(", "))
    })
}

/// Reads a backend setting for `target`. A set backend must cover `target.gpus` and
/// `target.min-driver` when the stack declares them. `auto` with declared GPUs is the newest
/// CUDA backend that covers them all (the build host does not matter: the image runs
/// elsewhere); `auto` without reads this host (driver and GPUs) through `cuda::doctor` and
/// says so (`cpu` when there is no GPU).
pub fn select_backend(
    setting: &str,
    target: &StackTarget,
) -> Result<BackendSelection, BackendSelectError> {
    let declared = !target.gpus.is_empty() || target.min_driver.is_some();
    match BackendChoice::from_str(setting)? {
        BackendChoice::Fixed(backend) if !declared => Ok(BackendSelection {
            backend,
            why: format!("torch backend {backend} as set"),
        }),
        BackendChoice::Fixed(backend) => match backend_fit(backend, target) {
            Ok(how) => Ok(BackendSelection {
                backend,
                why: format!("torch backend {backend} as set; {how}"),
            }),
            Err(reasons) => {
                let fits: Vec<&str> = Backend::ALL
                    .iter()
                    .filter(|b| **b != Backend::Cpu && backend_fit(**b, target).is_ok())
                    .map(|b| b.name())
                    .collect();
                let help = if fits.is_empty() {
                    "no CUDA backend covers them all: drop the architectures no backend builds \
                     for from target.gpus"
                        .to_string()
                } else {
                    format!(
                        "set target.torch-backend (or --torch-backend) to {} (`auto` picks {}), \
                         or drop the uncovered architectures from target.gpus",
                        fits.join(" or "),
                        fits[0]
                    )
                };
                Err(BackendSelectError::Uncovered {
                    backend,
                    reasons,
                    help,
                })
            }
        },
        BackendChoice::Auto if declared => {
            let mut left_out = Vec::new();
            for backend in Backend::ALL.into_iter().filter(|b| *b != Backend::Cpu) {
                match backend_fit(backend, target) {
                    Ok(how) => {
                        let mut why = format!(
                            "torch backend auto for {}: {backend}, the newest backend that \
                             covers them ({how})",
                            describe_target(target)
                        );
                        if !left_out.is_empty() {
                            why.push_str(&format!("; left out: {}", left_out.join("; ")));
                        }
                        return Ok(BackendSelection { backend, why });
                    }
                    Err(reasons) => left_out.extend(reasons),
                }
            }
            Err(BackendSelectError::NoneCovers {
                target: describe_target(target),
                reasons: left_out,
            })
        }
        BackendChoice::Auto => {
            let report = assess(&read_host(&HostSources::new("/")));
            Ok(BackendSelection {
                backend: report.auto,
                why: format!(
                    "torch backend auto: the stack declares no target.gpus, so this build host \
                     was read: {} (declare target.gpus when the image runs elsewhere)",
                    report.auto_reason
                ),
            })
        }
    }
}

/// Why the pins cannot follow the backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("backend {backend}: the stack pins {packages} to `{from}`, so under backend {backend} they come from `{to}`, but no index definition `{to}` exists in {dir}")]
pub struct BackendIndexError {
    pub backend: Backend,
    pub from: String,
    pub to: String,
    pub packages: String,
    pub dir: String,
}

impl BackendIndexError {
    /// What the user can do about it.
    pub fn help(&self) -> Option<String> {
        Some(format!(
            "add {dir}/{to}.toml (name, url, kind), or pass --index {to}=URL, or pick another \
             --torch-backend",
            dir = self.dir,
            to = self.to
        ))
    }
}

/// Whether `index` is one of the PyTorch backend indexes (`pytorch-cu130`, ..., `pytorch-cpu`).
pub fn is_backend_index(index: &str) -> bool {
    Backend::ALL.iter().any(|b| b.index_name() == index)
}

/// The index settings under `backend`: every pin to a PyTorch backend index (the stack names
/// `pytorch-cu130`) is redirected to `pytorch-<backend>`, and every torch family package the
/// stack does not pin elsewhere is pinned to `pytorch-<backend>` too (a last pin, so an
/// explicit pin to another index wins). Pins of several PyTorch indexes merge into the one
/// pin of the backend's index.
pub fn indexes_for_backend(
    settings: &IndexSettings,
    backend: Backend,
) -> Result<IndexSettings, BackendIndexError> {
    let target = backend.index_name();
    let mut mapped = settings.clone();
    let mut pins: Vec<IndexPin> = Vec::with_capacity(settings.pins.len());
    for pin in &settings.pins {
        if !is_backend_index(&pin.index) || pin.index == target {
            match pins.iter_mut().find(|p| p.index == pin.index) {
                Some(existing) => existing.packages.extend(pin.packages.iter().cloned()),
                None => pins.push(pin.clone()),
            }
            continue;
        }
        if settings.definitions.get(target).is_none() {
            return Err(BackendIndexError {
                backend,
                from: pin.index.clone(),
                to: target.to_string(),
                packages: pin.packages.join(", "),
                dir: settings.index_dir.display().to_string(),
            });
        }
        match pins.iter_mut().find(|p| p.index == target) {
            Some(existing) => existing.packages.extend(pin.packages.iter().cloned()),
            None => pins.push(IndexPin {
                index: target.to_string(),
                packages: pin.packages.clone(),
            }),
        }
    }
    // The family follows the backend wherever it is required from: a last pin, so that the
    // stack's own pins (checked first) win.
    pins.push(IndexPin {
        index: target.to_string(),
        packages: TORCH_FAMILY.iter().map(|m| m.pattern.to_string()).collect(),
    });
    mapped.pins = pins;
    Ok(mapped)
}

/// Whether two pin patterns (`name` or `prefix*`) can name the same package.
fn patterns_overlap(a: &str, b: &str) -> bool {
    match (a.strip_suffix('*'), b.strip_suffix('*')) {
        (Some(a), Some(b)) => a.starts_with(b) || b.starts_with(a),
        (Some(prefix), None) => b.starts_with(prefix),
        (None, Some(prefix)) => a.starts_with(prefix),
        (None, None) => a == b,
    }
}

/// One warning per explicit stack pin that takes a torch family package from an index other
/// than the backend's: the pin wins, and the warning names the package, the index and what
/// the backend would have used.
pub fn family_pin_warnings(settings: &IndexSettings, backend: Backend) -> Vec<String> {
    let target = backend.index_name();
    let mut warnings = Vec::new();
    for pin in &settings.pins {
        if is_backend_index(&pin.index) {
            continue;
        }
        for pattern in &pin.packages {
            let Some(member) = TORCH_FAMILY
                .iter()
                .find(|m| patterns_overlap(m.pattern, pattern))
            else {
                continue;
            };
            warnings.push(format!(
                "stack.toml [indexes.pins] takes `{pattern}` from index `{}`, not from `{target}` \
                 where backend {backend} takes the torch family ({} is in it: {}); the explicit \
                 pin wins, so its build may not be the {backend} one",
                pin.index, member.pattern, member.reason
            ));
        }
    }
    warnings
}

/// Why the torch family package `name` cannot be looked up under `backend` with these
/// (already routed) settings: a CUDA runtime wheel under `cpu`, or a family package routed
/// to a backend index that has no definition. None when it can (or is not in the family).
pub fn family_refusal(
    settings: &IndexSettings,
    backend: Backend,
    name: &PackageName,
) -> Option<String> {
    let member = family_member(name.as_ref())?;
    let index = settings.pinned_index(name)?;
    if !is_backend_index(index) {
        return None;
    }
    if backend == Backend::Cpu && member.kind == MemberKind::CudaRuntime {
        return Some(format!(
            "backend cpu has no CUDA: {name} is a CUDA runtime wheel ({}); a CPU image \
             installs none (require it only for a CUDA backend, or pick one with \
             --torch-backend)",
            member.reason
        ));
    }
    if settings.definitions.get(index).is_none() {
        return Some(format!(
            "{name} is in the torch family ({}), which comes from `{index}` under backend \
             {backend}, but no index definition `{index}` exists in {}; add {}/{index}.toml \
             (name, url, kind) or pass --index {index}=URL",
            member.reason,
            settings.index_dir.display(),
            settings.index_dir.display()
        ));
    }
    None
}

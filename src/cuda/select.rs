//! Explaining why no build of an ABI-coupled package fits the resolved torch, the backend and
//! the target: the summary, every build with the part that fails for it, and what to do.
//!
//! Owns: [`AbiContext`] (resolved torch + backend + torch's C++ ABI), [`explain_no_build`],
//! [`RejectedBuild`] and the [`NoBuild`] error. Which build fits is not decided here: the
//! resolver classifies every build (`resolve::candidates`, the same classification it
//! solves with) and hands the result over; this module only words it and derives the
//! advice (other backends or torch series a build would fit).
//!
//! Must not: fetch pages, read metadata, choose versions or builds (the resolver does).

use std::collections::BTreeSet;

use pep440_rs::Version;
use serde::Serialize;

use super::abi_label::{check, torch_uses_cxx11_abi, AbiLabel, Coupling, TorchSeries};
use super::backend::{Backend, CudaVersion};
use crate::filename::{FilenameWarning, WheelFilename};

/// What a coupled build must fit: the resolved torch and the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbiContext {
    /// The resolved torch version, e.g. `2.11.0+cu130`.
    pub torch: Version,
    /// The torch backend.
    pub backend: Backend,
    /// Whether that torch uses the C++11 ABI.
    pub torch_cxx11abi: bool,
}

impl AbiContext {
    /// A context whose C++ ABI follows [`torch_uses_cxx11_abi`].
    pub fn new(torch: Version, backend: Backend) -> Self {
        let torch_cxx11abi = torch_uses_cxx11_abi(&torch);
        Self {
            torch,
            backend,
            torch_cxx11abi,
        }
    }
}

/// Where a build's coupling came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CouplingSource {
    /// The file's local version label.
    Label,
    /// The stack's `[couplings]` table.
    Declared,
    /// Neither: nothing is known.
    Unknown,
}

/// One build (one file) of a coupled package, as the resolver classified it: empty
/// `reasons` means it fits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RejectedBuild {
    /// The file's name.
    pub filename: String,
    /// What the build is tied to.
    pub coupling: Coupling,
    /// Where that came from.
    pub source: CouplingSource,
    /// Whether its tags fit the target.
    pub fits_target: bool,
    /// Each failing part.
    pub reasons: Vec<String>,
    /// Spec violations of the file's name, accepted on purpose.
    pub warnings: Vec<FilenameWarning>,
}

/// No file of a coupled package's version fits the resolved torch, backend and target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{}", self.render())]
pub struct NoBuild {
    /// `flash-attn`.
    pub package: String,
    /// The public version, `2.8.3`.
    pub version: String,
    /// The resolved torch.
    pub torch: String,
    /// The backend.
    pub backend: Backend,
    /// One-line summary, e.g. "builds for torch 2.8, 2.9; resolved torch is 2.11.0+cu130".
    pub summary: String,
    /// Every file and why it does not fit.
    pub rejected: Vec<RejectedBuild>,
    /// What to do.
    pub help: Vec<String>,
}

impl NoBuild {
    fn render(&self) -> String {
        let mut out = format!("{} {}: {}", self.package, self.version, self.summary);
        let (fit, misfit): (Vec<&RejectedBuild>, Vec<&RejectedBuild>) =
            self.rejected.iter().partition(|r| r.fits_target);
        for build in &fit {
            out.push_str(&format!(
                "\n  - {}: {}",
                build.filename,
                build.reasons.join("; ")
            ));
            for warning in &build.warnings {
                out.push_str(&format!("\n    warning: {warning}"));
            }
        }
        if !misfit.is_empty() {
            let shown: Vec<&str> = misfit.iter().take(3).map(|r| r.filename.as_str()).collect();
            let more = misfit.len().saturating_sub(shown.len());
            out.push_str(&format!(
                "\n  - {} other file{} do{} not fit the target's tags ({}{})",
                misfit.len(),
                if misfit.len() == 1 { "" } else { "s" },
                if misfit.len() == 1 { "es" } else { "" },
                shown.join(", "),
                if more > 0 {
                    format!(", and {more} more")
                } else {
                    String::new()
                }
            ));
        }
        out
    }

    /// What the user can do about it (one piece of advice per line).
    pub fn help(&self) -> Option<String> {
        (!self.help.is_empty()).then(|| self.help.join("\n"))
    }
}

/// How a file is named in messages: as published, with `cxx11abiTRUE` in its original case
/// (PEP 440 lowercases the label when the name is parsed).
pub fn display_filename(wheel: &WheelFilename) -> String {
    if let Some(name) = wheel.warnings.iter().map(warning_filename).next() {
        return name.to_string();
    }
    let mut version = wheel.version.clone().without_local().to_string();
    if let Some(label) = AbiLabel::from_version(&wheel.version) {
        version.push('+');
        version.push_str(&label.display_spelling());
    }
    let build = wheel
        .build
        .as_ref()
        .map(|b| {
            if b.number == 0 && !b.suffix.is_empty() && !b.suffix.starts_with('0') {
                format!("-{}", b.suffix)
            } else {
                format!("-{}{}", b.number, b.suffix)
            }
        })
        .unwrap_or_default();
    format!(
        "{}-{version}{build}-{}-{}-{}.whl",
        wheel.name.as_ref().replace('-', "_"),
        wheel.python.join("."),
        wheel.abi.join("."),
        wheel.platform.join(".")
    )
}

fn warning_filename(warning: &FilenameWarning) -> &str {
    match warning {
        FilenameWarning::BuildTagNotNumeric { filename, .. }
        | FilenameWarning::NameNotEscaped { filename, .. } => filename,
    }
}

/// The explanation when no build in `builds` (the resolver's classification of every file of
/// `package` `version`, [`RejectedBuild`]) fits: None when one does. `declared`: the stack
/// declares a coupling for the package.
pub fn explain_no_build(
    package: &str,
    version: &str,
    rejected: Vec<RejectedBuild>,
    context: &AbiContext,
    declared: bool,
) -> Option<NoBuild> {
    if rejected
        .iter()
        .any(|b| b.fits_target && b.reasons.is_empty())
    {
        return None;
    }
    let fitting: Vec<&RejectedBuild> = rejected.iter().filter(|b| b.fits_target).collect();
    let torch_series: BTreeSet<TorchSeries> =
        fitting.iter().filter_map(|c| c.coupling.torch).collect();
    let cuda_versions: BTreeSet<CudaVersion> =
        fitting.iter().filter_map(|c| c.coupling.cuda).collect();
    let join = |items: Vec<String>| items.join(", ");

    let summary = if rejected.is_empty() {
        "no files to choose from".to_string()
    } else if fitting.is_empty() {
        format!(
            "no file fits the target's tags; {}",
            context_summary(context)
        )
    } else {
        let mut parts = Vec::new();
        if !torch_series.is_empty() {
            parts.push(format!(
                "torch {}",
                join(torch_series.iter().map(ToString::to_string).collect())
            ));
        }
        if !cuda_versions.is_empty() {
            parts.push(format!(
                "CUDA {}",
                join(cuda_versions.iter().map(ToString::to_string).collect())
            ));
        }
        if parts.is_empty() {
            format!("no build fits; {}", context_summary(context))
        } else {
            format!(
                "builds for {}; {}",
                parts.join(" with "),
                context_summary(context)
            )
        }
    };
    let help = advice(package, &fitting, context, declared);
    Some(NoBuild {
        package: package.to_string(),
        version: version.to_string(),
        torch: context.torch.to_string(),
        backend: context.backend,
        summary,
        rejected,
        help,
    })
}

fn context_summary(context: &AbiContext) -> String {
    let cuda = match context.backend.cuda() {
        Some(cuda) => format!("CUDA {cuda}"),
        None => "no CUDA".to_string(),
    };
    format!(
        "resolved torch is {} (backend {}, {cuda})",
        context.torch, context.backend
    )
}

fn advice(
    package: &str,
    fitting: &[&RejectedBuild],
    context: &AbiContext,
    declared: bool,
) -> Vec<String> {
    let mut help = Vec::new();
    if fitting.is_empty() {
        help.push(format!(
            "no file of this {package} version is built for the target's interpreter and \
             platform: pick a version that publishes one, or build the wheel yourself"
        ));
        return help;
    }
    // Backends under which some build fits the resolved torch.
    let backends: Vec<Backend> = Backend::ALL
        .into_iter()
        .filter(|b| *b != context.backend)
        .filter(|b| {
            fitting.iter().any(|c| {
                c.source != CouplingSource::Unknown
                    && check(&c.coupling, &context.torch, *b, context.torch_cxx11abi).is_ok()
            })
        })
        .collect();
    if !backends.is_empty() {
        help.push(format!(
            "a build fits torch {} on backend {}: set `torch-backend` in stack.toml or pass \
             --torch-backend",
            TorchSeries::of(&context.torch),
            backends
                .iter()
                .map(|b| b.name())
                .collect::<Vec<_>>()
                .join(" or ")
        ));
    }
    // Torch series that some build fits on this backend.
    let series: BTreeSet<TorchSeries> = fitting
        .iter()
        .filter(|c| c.source != CouplingSource::Unknown)
        .filter_map(|c| {
            let torch = c.coupling.torch?;
            let version = Version::new([torch.major, torch.minor, torch.patch.unwrap_or(0)]);
            let abi = torch_uses_cxx11_abi(&version);
            let mut without_torch = c.coupling;
            without_torch.torch = None;
            check(&without_torch, &context.torch, context.backend, abi)
                .is_ok()
                .then_some(torch)
        })
        .collect();
    if !series.is_empty() {
        help.push(format!(
            "pin torch to a series {package} is built for on backend {}: {}; or pick a \
             {package} version with a build for torch {}",
            context.backend,
            series
                .iter()
                .map(|s| format!("torch=={s}.*"))
                .collect::<Vec<_>>()
                .join(", "),
            TorchSeries::of(&context.torch)
        ));
    } else {
        help.push(format!(
            "pick a {package} version with a build for torch {} on backend {}, or build the \
             wheel against this torch",
            TorchSeries::of(&context.torch),
            context.backend
        ));
    }
    if !declared && fitting.iter().any(|c| c.source == CouplingSource::Unknown) {
        help.push(format!(
            "if an unlabelled file is known to fit, declare it in stack.toml: [couplings] \
             {package} = {{ cuda = \"13.0\", torch = \"{}\" }}",
            TorchSeries::of(&context.torch)
        ));
    }
    help
}

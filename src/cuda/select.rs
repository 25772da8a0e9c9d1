//! Picking the build of an ABI-coupled package that fits the resolved torch, the backend and
//! the target, and explaining every build it rejects.
//!
//! Owns: [`AbiContext`] (resolved torch + backend + torch's C++ ABI), [`select_build`],
//! [`SelectedBuild`], [`RejectedBuild`] and the [`NoBuild`] error whose message lists the
//! builds that exist, which part fails for each, and what to do.
//!
//! The resolver makes couplings constraints of the solve itself (each local label is its own
//! version there, with requirements on torch); when a coupled package has no build that fits,
//! it calls [`select_build`] with the files of the package's newest public version (local
//! labels may differ: `2.8.3+cu12torch2.8cxx11abiTRUE`, `2.8.3+cu13torch2.11cxx11abiTRUE`,
//! ...) and the torch the rest of the stack resolves to, and shows the [`NoBuild`] message.
//!
//! Must not: fetch pages, read metadata, or choose versions (the resolver does).

use std::collections::BTreeSet;

use pep440_rs::Version;
use serde::Serialize;

use super::abi_label::{check, torch_uses_cxx11_abi, AbiLabel, Coupling, TorchSeries};
use super::backend::{Backend, CudaVersion};
use crate::filename::{FilenameWarning, WheelFilename};
use crate::target::CompatibleTags;

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

    fn describe(&self) -> String {
        let cuda = match self.backend.cuda() {
            Some(cuda) => format!("CUDA {cuda}"),
            None => "no CUDA".to_string(),
        };
        let abi = if self.torch_cxx11abi {
            "C++11 ABI"
        } else {
            "pre-C++11 ABI"
        };
        format!(
            "torch {} on backend {} ({cuda}, {abi})",
            self.torch, self.backend
        )
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

/// The build [`select_build`] chose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SelectedBuild {
    /// Index into the `files` passed in.
    pub index: usize,
    /// The file's name.
    pub filename: String,
    /// What the build is tied to.
    pub coupling: Coupling,
    /// Where that came from.
    pub source: CouplingSource,
    /// Why this build, in one line, for the lock and the user.
    pub reason: String,
    /// Spec violations of the file's name, accepted on purpose.
    pub warnings: Vec<FilenameWarning>,
}

/// A build that does not fit, and every reason.
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

/// A file under consideration.
struct Candidate {
    index: usize,
    coupling: Coupling,
    source: CouplingSource,
    priority: Option<usize>,
    reasons: Vec<String>,
}

/// Picks the file of one version of a coupled package that fits `context` and the target's
/// `tags`, or explains why none does (boxed: the explanation carries every file).
///
/// A file's coupling comes from its local label; a file without one uses `declared` (the
/// stack's `[couplings]` entry) when given. When some files carry a coupling, a file with
/// none is rejected (what it was built against is unknown). When no file carries one and
/// nothing is declared, the package is not ABI-checked and the best-tagged file wins.
///
/// Among fitting files: the best tag priority first (pip's order), then the most specific
/// coupling (a label that also states the CUDA minor or the C++ ABI), then the higher build
/// tag, then the first listed.
pub fn select_build(
    files: &[WheelFilename],
    context: &AbiContext,
    tags: &CompatibleTags,
    declared: Option<&Coupling>,
) -> Result<SelectedBuild, Box<NoBuild>> {
    let candidates: Vec<Candidate> = files
        .iter()
        .enumerate()
        .map(|(index, wheel)| {
            let label = AbiLabel::from_version(&wheel.version).map(|l| l.coupling());
            let (coupling, source) = match (label, declared) {
                (Some(c), _) if !c.is_empty() => (c, CouplingSource::Label),
                (_, Some(d)) if !d.is_empty() => (*d, CouplingSource::Declared),
                _ => (Coupling::default(), CouplingSource::Unknown),
            };
            Candidate {
                index,
                coupling,
                source,
                priority: wheel.best_priority(tags),
                reasons: Vec::new(),
            }
        })
        .collect();
    let any_coupled = candidates
        .iter()
        .any(|c| c.source != CouplingSource::Unknown);

    let mut candidates = candidates;
    for candidate in &mut candidates {
        let wheel = &files[candidate.index];
        if candidate.priority.is_none() {
            candidate.reasons.push(format!(
                "its tags ({}) do not fit the target",
                wheel
                    .tags()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        match candidate.source {
            CouplingSource::Unknown if any_coupled => candidate.reasons.push(
                "no torch/CUDA local label and no [couplings] entry: what it was built \
                 against is unknown"
                    .to_string(),
            ),
            _ => {
                if let Err(mismatch) = check(
                    &candidate.coupling,
                    &context.torch,
                    context.backend,
                    context.torch_cxx11abi,
                ) {
                    let from = if candidate.source == CouplingSource::Declared {
                        " (as declared in [couplings])"
                    } else {
                        ""
                    };
                    candidate
                        .reasons
                        .extend(mismatch.parts.iter().map(|part| format!("{part}{from}")));
                }
            }
        }
    }

    let best = candidates
        .iter()
        .filter(|c| c.reasons.is_empty())
        .min_by(|a, b| {
            a.priority
                .cmp(&b.priority)
                .then_with(|| b.coupling.specificity().cmp(&a.coupling.specificity()))
                .then_with(|| files[b.index].build.cmp(&files[a.index].build))
                .then_with(|| a.index.cmp(&b.index))
        });

    if let Some(best) = best {
        let wheel = &files[best.index];
        let filename = display_filename(wheel);
        let tag = wheel
            .tags()
            .filter_map(|t| tags.priority(&t).map(|p| (p, t)))
            .min_by_key(|(p, _)| *p)
            .map(|(_, t)| t.to_string())
            .unwrap_or_default();
        let mut reason = match best.source {
            CouplingSource::Label => format!(
                "{filename}: built for {} (local label); fits {} and the target tag {tag}",
                best.coupling,
                context.describe()
            ),
            CouplingSource::Declared => format!(
                "{filename}: declared in [couplings] as built for {}; fits {} and the target \
                 tag {tag}",
                best.coupling,
                context.describe()
            ),
            CouplingSource::Unknown => format!(
                "{filename}: no build of this version carries a torch/CUDA label and the stack \
                 declares no coupling, so it is not ABI-checked; best tag for the target: {tag}"
            ),
        };
        let others = candidates.len() - 1;
        let also_fit = candidates.iter().filter(|c| c.reasons.is_empty()).count() - 1;
        if also_fit > 0 {
            reason.push_str(&format!(
                " (preferred over {also_fit} other fitting file{} by tag priority, label \
                 detail and build tag)",
                if also_fit == 1 { "" } else { "s" }
            ));
        } else if others > 0 {
            reason.push_str(&format!(" (the only fitting file of {})", candidates.len()));
        }
        for warning in &wheel.warnings {
            reason.push_str(&format!("; warning: {warning}"));
        }
        return Ok(SelectedBuild {
            index: best.index,
            filename,
            coupling: best.coupling,
            source: best.source,
            reason,
            warnings: wheel.warnings.clone(),
        });
    }

    let package = files
        .first()
        .map(|w| w.name.to_string())
        .unwrap_or_else(|| "(no files)".to_string());
    let version = files
        .first()
        .map(|w| w.version.clone().without_local().to_string())
        .unwrap_or_default();
    let rejected: Vec<RejectedBuild> = candidates
        .iter()
        .map(|c| RejectedBuild {
            filename: display_filename(&files[c.index]),
            coupling: c.coupling,
            source: c.source,
            fits_target: c.priority.is_some(),
            reasons: c.reasons.clone(),
            warnings: files[c.index].warnings.clone(),
        })
        .collect();

    let fitting: Vec<&Candidate> = candidates.iter().filter(|c| c.priority.is_some()).collect();
    let torch_series: BTreeSet<TorchSeries> =
        fitting.iter().filter_map(|c| c.coupling.torch).collect();
    let cuda_versions: BTreeSet<CudaVersion> =
        fitting.iter().filter_map(|c| c.coupling.cuda).collect();
    let join = |items: Vec<String>| items.join(", ");

    let summary = if files.is_empty() {
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

    let help = advice(&package, &fitting, context, declared.is_some());
    Err(Box::new(NoBuild {
        package,
        version,
        torch: context.torch.to_string(),
        backend: context.backend,
        summary,
        rejected,
        help,
    }))
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
    fitting: &[&Candidate],
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

//! The versions of one project the resolver may pick for one target, and why the others
//! cannot be used.
//!
//! Owns: grouping an index's files by version; choosing, per version, the best wheel for the
//! target (tag priority, then build tag; non-yanked before yanked); each version's ABI
//! coupling (from its local label, e.g. `+cu13torch2.11cxx11abiTRUE`, else from the stack's
//! `[couplings]`); the reasons a version is unusable (no wheel for the target's tags, only
//! sdists, Requires-Python, `--hash` mismatch, a build for another CUDA than the backend's,
//! a C++ ABI no torch of its series has, an unlabelled build beside labelled ones); the
//! filename warnings of the files that fit the target (names that break the spec, accepted
//! on purpose); and the preference order of versions (newest public version first; among
//! equal public versions the backend's local label, e.g. `+cu130`, first).
//! Must not: fetch anything, or apply the range / pre-release / yanked policy of a
//! resolution (the provider does that).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::str::FromStr;

use pep440_rs::{Version, VersionSpecifiers};
use pep508_rs::PackageName;

use crate::cuda::arch;
use crate::cuda::{
    check, check_cuda, display_filename, torch_build_cxx11_abi, wheel_arch_claim, AbiLabel,
    Backend, Coupling, CouplingSource, Coverage, GpuArch, RejectedBuild,
};
use crate::filename::{
    name_matches, wheel_name_version, DistFilename, FilenameWarning, WheelFilename,
};
use crate::index::page::DistFile;
use crate::target::CompatibleTags;

use super::formats::{is_sdist_name, Allowed, FormatControl};

/// What every project of one resolution is judged against.
#[derive(Debug, Clone)]
pub(crate) struct CandidateContext {
    pub tags: CompatibleTags,
    /// The target interpreter, `X.Y.0`.
    pub python: Version,
    /// The torch backend: its local label (`cu130`) is preferred among equal public
    /// versions, and builds for another CUDA are unusable.
    pub backend: Backend,
    /// The stack's `[couplings]`: what unlabelled builds of these packages are tied to.
    pub couplings: BTreeMap<PackageName, Coupling>,
    /// Per project, the sha256 digests its pak lines allow (`--hash`); absent = any.
    pub hashes: BTreeMap<PackageName, BTreeSet<String>>,
    /// `target.gpus`: a file that claims architectures (`-hopper-`, `+...sm90`) must cover
    /// every one of them.
    pub gpus: Vec<GpuArch>,
    /// `--no-binary` / `--only-binary`, from the stack, the pak files and the command line.
    pub formats: FormatControl,
    /// Whether index sdists can be built (a hook reads their metadata); without it a version
    /// with no fitting wheel is unusable, as before.
    pub sdists: bool,
}

/// Why a version cannot be installed on the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unusable {
    /// Every fitting wheel needs another Python (the index's `Requires-Python`).
    RequiresPython { specifier: String },
    /// No wheel has a tag the target accepts (its files, named in [`VersionFiles`], say
    /// which tags its wheels do have and which sdists it has, never built).
    NoFittingWheel,
    /// The pak line's `--hash` options name none of its fitting wheels.
    NotInHashes,
    /// An ABI-coupled build that cannot fit the backend (another CUDA, a CUDA build on
    /// `cpu`) or any torch (a C++ ABI its torch series does not use). `built`: what it is
    /// built for, and where that came from; `reasons`: each failing part.
    AbiMismatch { built: String, reasons: Vec<String> },
    /// No torch/CUDA label it can read (none, or one such as `+cuda128torch2.10`) and no
    /// `[couplings]` entry, while the project publishes labelled builds (`example`): what it
    /// was built against is unknown, so it is refused.
    UnknownBuild {
        /// The unreadable label, when it has one.
        label: Option<String>,
        /// A labelled build of the project, e.g. `2.8.3+cu13torch2.11cxx11abiTRUE`.
        example: String,
    },
    /// It has sdists but none may be built here: `why` says what stops it (no base to build
    /// in, or `--only-binary`).
    SdistNotBuilt { why: String },
    /// `--no-binary` covers the project and this version has no sdist to build.
    NoSdist,
    /// Every fitting file claims GPU architectures (a `-hopper-` build tag, `sm90` in its
    /// label) that leave out one of `target.gpus`; `reason` names the file and the
    /// architecture.
    GpuArch { reason: String },
}

impl Unusable {
    /// Plain words, e.g. "only an sdist (foo-1.0.tar.gz)", for the version `files`.
    pub fn describe(&self, files: &VersionFiles) -> String {
        match self {
            Unusable::RequiresPython { specifier } => {
                format!("its wheels need Python {specifier}")
            }
            Unusable::NoFittingWheel => {
                let (wheel_tags, sdists) = files.tags_and_sdists();
                let mut parts = Vec::new();
                if !wheel_tags.is_empty() {
                    parts.push(format!("wheels only for {}", summarize_tags(&wheel_tags)));
                }
                if !sdists.is_empty() {
                    parts.push(format!(
                        "{} {}",
                        if sdists.len() == 1 {
                            "an sdist"
                        } else {
                            "sdists"
                        },
                        sdists.join(", ")
                    ));
                }
                if parts.is_empty() {
                    "no installable files".to_string()
                } else {
                    parts.join("; ")
                }
            }
            Unusable::SdistNotBuilt { why } => {
                let (wheel_tags, sdists) = files.tags_and_sdists();
                let sdists = format!(
                    "{} {}, not built: {why}",
                    if sdists.len() == 1 {
                        "an sdist"
                    } else {
                        "sdists"
                    },
                    sdists.join(", ")
                );
                if wheel_tags.is_empty() {
                    sdists
                } else {
                    format!("wheels only for {}; {sdists}", summarize_tags(&wheel_tags))
                }
            }
            Unusable::NoSdist => {
                "no-binary covers the project and this version has no sdist to build".to_string()
            }
            Unusable::NotInHashes => {
                "none of its wheels has a sha256 listed by the pak line's --hash".to_string()
            }
            Unusable::AbiMismatch { built, reasons } => {
                format!("{built}: {}", reasons.join("; "))
            }
            Unusable::GpuArch { reason } => reason.clone(),
            Unusable::UnknownBuild { label, example } => {
                let file = files
                    .files
                    .first()
                    .map(|f| format!("{} ", f.filename))
                    .unwrap_or_default();
                let what = match label {
                    Some(label) => format!(
                        "{file}has the local label +{label}, which does not state its CUDA and \
                         torch in a spelling comfypak reads (cu130, torch2.11, cxx11abiTRUE),"
                    ),
                    None => format!("{file}has no torch/CUDA local label"),
                };
                format!(
                    "{what} and no [couplings] entry, while the project publishes labelled \
                     builds (e.g. {example}): what it was built against is unknown, so it is \
                     refused (declare it in stack.toml [couplings] if you know)"
                )
            }
        }
    }
}

/// At most 6 tags, then a count.
fn summarize_tags(tags: &[String]) -> String {
    const SHOWN: usize = 6;
    if tags.len() <= SHOWN {
        tags.join(", ")
    } else {
        format!(
            "{} and {} more",
            tags[..SHOWN].join(", "),
            tags.len() - SHOWN
        )
    }
}

/// The wheel chosen for a version (or, where no wheel may be used, the sdist to build).
#[derive(Debug, Clone)]
pub(crate) struct ChosenWheel {
    pub file: DistFile,
    pub yanked: bool,
}

impl ChosenWheel {
    /// Whether it is an sdist to build rather than a wheel.
    pub fn is_sdist(&self) -> bool {
        is_sdist_name(&self.file.filename)
    }
}

/// What a version's build is tied to, and where that came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VersionCoupling {
    pub coupling: Coupling,
    pub source: CouplingSource,
    /// The local label as published (`cu13torch2.11cxx11abiTRUE`), when it has one.
    pub label: Option<String>,
}

impl VersionCoupling {
    /// "built for CUDA 13, torch 2.11, C++11 ABI (local label +cu13torch2.11cxx11abiTRUE)".
    pub fn describe(&self) -> String {
        let from = match (&self.source, &self.label) {
            (CouplingSource::Label, Some(label)) => format!("local label +{label}"),
            (CouplingSource::Declared, _) => "declared in stack.toml [couplings]".to_string(),
            _ => "unknown".to_string(),
        };
        format!("built for {} ({from})", self.coupling)
    }

    /// Whether the build is a torch extension (its coupling names a torch series or a C++
    /// ABI), so it adds requirements on torch.
    pub fn ties_torch(&self) -> bool {
        self.coupling.torch.is_some() || self.coupling.cxx11abi.is_some()
    }
}

/// One version of a project.
#[derive(Debug, Clone)]
pub(crate) struct VersionFiles {
    pub version: Version,
    pub wheel: Result<ChosenWheel, Unusable>,
    /// The files of the version that may fit the target, in index order.
    pub files: Vec<DistFile>,
    /// The names of its other files (wheels for other targets, sdists), in index order.
    pub other_names: Vec<String>,
    /// The build's ABI coupling (label, else `[couplings]`); None when it has none.
    pub coupling: Option<VersionCoupling>,
}

impl VersionFiles {
    /// The names of all its files: those that may fit, then the others.
    pub fn filenames(&self) -> impl Iterator<Item = &str> {
        self.files
            .iter()
            .map(|f| f.filename.as_str())
            .chain(self.other_names.iter().map(String::as_str))
    }

    /// Whether this version, as a torch build, uses the C++11 ABI: read from its chosen
    /// wheel's tags (`cuda::torch_build_cxx11_abi`), not from its version number.
    pub fn torch_cxx11_abi(&self) -> bool {
        let filename = self
            .wheel
            .as_ref()
            .map(|w| w.file.filename.as_str())
            .unwrap_or_default();
        torch_build_cxx11_abi(&self.version, filename)
    }

    /// The tags its wheels have (sorted, once each) and its sdists' names.
    fn tags_and_sdists(&self) -> (Vec<String>, Vec<String>) {
        let mut tags = BTreeSet::new();
        let mut sdists = Vec::new();
        for name in self.filenames() {
            match DistFilename::parse(name, None) {
                Ok(DistFilename::Wheel(wheel)) => tags.extend(wheel.tags().map(|t| t.to_string())),
                Ok(DistFilename::Sdist(_)) => sdists.push(name.to_string()),
                Err(_) => {}
            }
        }
        (tags.into_iter().collect(), sdists)
    }
}

/// The versions of one project, best first.
#[derive(Debug, Clone)]
pub(crate) struct ProjectCandidates {
    pub name: PackageName,
    /// The index name ("pypi", "pytorch-cu130", "direct").
    pub index: String,
    /// The index URL (redacted), or the direct URL.
    pub index_url: String,
    /// Preference order (see the module doc).
    pub versions: Vec<VersionFiles>,
    /// Why there are no versions at all (the project is on no index), when that is so.
    pub missing: Option<String>,
    /// Spec violations in the names of files that fit the target (accepted on purpose; the
    /// user is told).
    pub warnings: Vec<FilenameWarning>,
}

impl ProjectCandidates {
    /// A project that no index has.
    pub fn missing(name: &PackageName, why: String) -> Self {
        ProjectCandidates {
            name: name.clone(),
            index: String::new(),
            index_url: String::new(),
            versions: Vec::new(),
            missing: Some(why),
            warnings: Vec::new(),
        }
    }

    /// Groups `files` (those that may fit the target) and `other_names` (the names of the
    /// rest) by version and judges each version.
    pub fn from_files(
        name: &PackageName,
        index: &str,
        index_url: &str,
        files: Vec<DistFile>,
        other_names: Vec<String>,
        ctx: &CandidateContext,
    ) -> Self {
        #[derive(Default)]
        struct Grouped {
            files: Vec<(DistFile, DistFilename)>,
            other_names: Vec<String>,
        }
        let mut by_version: BTreeMap<Version, Grouped> = BTreeMap::new();
        let mut warnings: Vec<FilenameWarning> = Vec::new();
        for file in files {
            // Files whose name does not parse (or names another project) are not candidates,
            // as in pip.
            if let Ok(parsed) = DistFilename::parse(&file.filename, Some(name)) {
                if let DistFilename::Wheel(wheel) = &parsed {
                    if wheel.best_priority(&ctx.tags).is_some() {
                        for warning in &wheel.warnings {
                            if !warnings.contains(warning) {
                                warnings.push(warning.clone());
                            }
                        }
                    }
                }
                by_version
                    .entry(parsed.version().clone())
                    .or_default()
                    .files
                    .push((file, parsed));
            }
        }
        // The other names only place their version: most of a large page is wheels for
        // other platforms, whose tags matter only when a version has no fitting wheel.
        let mut versions_read: HashMap<String, Option<Version>> = HashMap::new();
        for other in other_names {
            let version = match wheel_name_version(&other) {
                Some((written, version_text)) => {
                    if !name_matches(written, name) {
                        continue;
                    }
                    match versions_read.get(version_text) {
                        Some(version) => version.clone(),
                        None => {
                            let version = Version::from_str(version_text).ok();
                            versions_read.insert(version_text.to_string(), version.clone());
                            version
                        }
                    }
                }
                None => DistFilename::parse(&other, Some(name))
                    .ok()
                    .map(|parsed| parsed.version().clone()),
            };
            if let Some(version) = version {
                by_version
                    .entry(version)
                    .or_default()
                    .other_names
                    .push(other);
            }
        }
        let allowed_hashes = ctx.hashes.get(name);
        let formats = ctx.formats.allowed(name);
        let mut versions: Vec<VersionFiles> = by_version
            .into_iter()
            .map(|(version, grouped)| {
                judge_version(
                    version,
                    grouped.files,
                    grouped.other_names,
                    ctx,
                    allowed_hashes,
                    formats,
                )
            })
            .collect();
        judge_couplings(&mut versions, ctx.couplings.get(name), ctx.backend);
        let label = Some(ctx.backend.local_label());
        versions.sort_by(|a, b| preference_order(&a.version, &b.version, label));
        ProjectCandidates {
            name: name.clone(),
            index: index.to_string(),
            index_url: index_url.to_string(),
            versions,
            missing: None,
            warnings,
        }
    }

    /// The files of `version` (exact, local label included).
    pub fn get(&self, version: &Version) -> Option<&VersionFiles> {
        self.versions.iter().find(|v| &v.version == version)
    }
}

/// `Less` when `a` is preferred: higher public version first; among equal public versions
/// the backend's local label first, then the higher version.
pub(crate) fn preference_order(a: &Version, b: &Version, label: Option<&str>) -> Ordering {
    let public = |v: &Version| v.clone().without_local();
    public(b)
        .cmp(&public(a))
        .then_with(|| {
            let matches = |v: &Version| label.is_some_and(|l| local_label(v) == Some(l.into()));
            matches(b).cmp(&matches(a))
        })
        .then_with(|| b.cmp(a))
}

/// The local label of a version (`cu130` of `2.11.0+cu130`).
pub(crate) fn local_label(version: &Version) -> Option<String> {
    if !version.is_local() {
        return None;
    }
    version
        .to_string()
        .split_once('+')
        .map(|(_, local)| local.to_string())
}

fn judge_version(
    version: Version,
    files: Vec<(DistFile, DistFilename)>,
    other_names: Vec<String>,
    ctx: &CandidateContext,
    allowed_hashes: Option<&BTreeSet<String>>,
    formats: Allowed,
) -> VersionFiles {
    let mut best: Option<(DistFile, crate::filename::WheelFilename)> = None;
    let mut best_yanked: Option<(DistFile, crate::filename::WheelFilename)> = None;
    let mut python_blocked: Option<String> = None;
    let mut hash_blocked = false;
    let mut arch_blocked: Option<String> = None;
    for (file, parsed) in &files {
        let DistFilename::Wheel(wheel) = parsed else {
            continue;
        };
        if !formats.binary {
            continue;
        }
        if wheel.best_priority(&ctx.tags).is_none() {
            continue;
        }
        if let Some(reason) = arch_refusal(wheel, &file.filename, &ctx.gpus) {
            arch_blocked.get_or_insert(reason);
            continue;
        }
        if let Some(text) = &file.requires_python {
            // An unparsable Requires-Python is ignored, as pip does.
            if let Ok(specifiers) = VersionSpecifiers::from_str(text) {
                if !specifiers.contains(&ctx.python) {
                    python_blocked = Some(text.clone());
                    continue;
                }
            }
        }
        if let Some(allowed) = allowed_hashes {
            let fits = file
                .hashes
                .sha256
                .as_ref()
                .is_some_and(|sha| allowed.contains(&sha.to_ascii_lowercase()));
            if !fits {
                hash_blocked = true;
                continue;
            }
        }
        let slot = if file.yanked.is_yanked() {
            &mut best_yanked
        } else {
            &mut best
        };
        let better = match slot {
            None => true,
            Some((_, current)) => wheel.preference(current, &ctx.tags) == Ordering::Less,
        };
        if better {
            *slot = Some((file.clone(), wheel.clone()));
        }
    }
    let wheel = match (best, best_yanked) {
        (Some((file, _)), _) => Ok(ChosenWheel {
            file,
            yanked: false,
        }),
        (None, Some((file, _))) => Ok(ChosenWheel { file, yanked: true }),
        (None, None) => {
            let has_sdist = files.iter().any(|(f, _)| is_sdist_name(&f.filename))
                || other_names.iter().any(|n| is_sdist_name(n));
            let buildable = formats.source && ctx.sdists;
            let sdist = if buildable {
                choose_sdist(&files, ctx, allowed_hashes)
            } else {
                None
            };
            match sdist {
                Some(Ok(chosen)) => Ok(chosen),
                sdist => Err(if let Some(specifier) = python_blocked {
                    Unusable::RequiresPython { specifier }
                } else if hash_blocked {
                    Unusable::NotInHashes
                } else if let Some(reason) = arch_blocked {
                    Unusable::GpuArch { reason }
                } else if let Some(Err(why)) = sdist {
                    why
                } else if has_sdist && !buildable {
                    Unusable::SdistNotBuilt {
                        why: if formats.source {
                            "sdists are built only in the target runtime of a base: set \
                             [base] in stack.toml or pass --base"
                                .to_string()
                        } else {
                            "only-binary covers the project".to_string()
                        },
                    }
                } else if !formats.binary && !has_sdist {
                    Unusable::NoSdist
                } else {
                    Unusable::NoFittingWheel
                }),
            }
        }
    };
    VersionFiles {
        version,
        wheel,
        files: files.into_iter().map(|(file, _)| file).collect(),
        other_names,
        coupling: None,
    }
}

/// The sdist to build for a version without a usable wheel: non-yanked first, `.tar.gz`
/// before other archives, then index order; None when it has none; the reason when every
/// sdist is ruled out (Requires-Python, `--hash`).
fn choose_sdist(
    files: &[(DistFile, DistFilename)],
    ctx: &CandidateContext,
    allowed_hashes: Option<&BTreeSet<String>>,
) -> Option<Result<ChosenWheel, Unusable>> {
    let mut blocked = None;
    let mut best: Option<&DistFile> = None;
    let rank = |f: &DistFile| {
        (
            f.yanked.is_yanked(),
            !f.filename.to_ascii_lowercase().ends_with(".tar.gz"),
        )
    };
    for (file, parsed) in files {
        if !matches!(parsed, DistFilename::Sdist(_)) || !is_sdist_name(&file.filename) {
            continue;
        }
        if let Some(text) = &file.requires_python {
            if let Ok(specifiers) = VersionSpecifiers::from_str(text) {
                if !specifiers.contains(&ctx.python) {
                    blocked = Some(Unusable::RequiresPython {
                        specifier: text.clone(),
                    });
                    continue;
                }
            }
        }
        if let Some(allowed) = allowed_hashes {
            let fits = file
                .hashes
                .sha256
                .as_ref()
                .is_some_and(|sha| allowed.contains(&sha.to_ascii_lowercase()));
            if !fits {
                blocked.get_or_insert(Unusable::NotInHashes);
                continue;
            }
        }
        if best.is_none_or(|b| rank(file) < rank(b)) {
            best = Some(file);
        }
    }
    match (best, blocked) {
        (Some(file), _) => Some(Ok(ChosenWheel {
            file: file.clone(),
            yanked: file.yanked.is_yanked(),
        })),
        (None, Some(why)) => Some(Err(why)),
        (None, None) => None,
    }
}

/// Why a file that claims GPU architectures cannot run on one of `gpus`; None when it
/// claims none or covers them all.
pub(crate) fn arch_refusal(
    wheel: &WheelFilename,
    filename: &str,
    gpus: &[GpuArch],
) -> Option<String> {
    let (claim, why) = wheel_arch_claim(wheel)?;
    let left_out: Vec<String> = gpus
        .iter()
        .filter(|gpu| claim.covers(**gpu) == Coverage::No)
        .map(|gpu| arch::named(*gpu))
        .collect();
    (!left_out.is_empty()).then(|| {
        format!(
            "{filename} is built only for {} ({why}), so it has no kernel for target.gpus {}",
            claim.describe(),
            left_out.join(", ")
        )
    })
}

/// The coupling of a version: its local label's, else the stack's declaration.
pub(crate) fn coupling_of(
    version: &Version,
    declared: Option<&Coupling>,
) -> Option<VersionCoupling> {
    let label = AbiLabel::from_version(version);
    if let Some(label) = &label {
        let coupling = label.coupling();
        if coupling.cuda.is_some() || coupling.torch.is_some() || coupling.cpu {
            return Some(VersionCoupling {
                coupling,
                source: CouplingSource::Label,
                label: Some(label.display_spelling()),
            });
        }
    }
    declared
        .filter(|d| !d.is_empty())
        .map(|coupling| VersionCoupling {
            coupling: *coupling,
            source: CouplingSource::Declared,
            label: None,
        })
}

/// Why a build coupled as `coupling` cannot be used on `backend`, each failing part in plain
/// words; empty when it fits. This is the one classification of builds: before solving
/// (`torch` None) it checks what the backend decides (the CUDA part, and the pre-C++11 ABI
/// that no torch of a series from 2.7 on has); with the resolved torch and its build's C++
/// ABI it checks the whole coupling. The provider (which builds fit the torch chosen so
/// far), the lock (why the chosen build fits) and the "no build fits" explanation all ask
/// it.
pub(crate) fn coupling_misfits(
    coupling: &VersionCoupling,
    backend: Backend,
    torch: Option<(&Version, bool)>,
) -> Vec<String> {
    let from = if coupling.source == CouplingSource::Declared && torch.is_some() {
        " (as declared in [couplings])"
    } else {
        ""
    };
    let mut reasons: Vec<String> = match torch {
        Some((torch, torch_cxx11abi)) => check(&coupling.coupling, torch, backend, torch_cxx11abi),
        None => check_cuda(&coupling.coupling, backend),
    }
    .err()
    .map(|mismatch| {
        mismatch
            .parts
            .iter()
            .map(|part| format!("{part}{from}"))
            .collect()
    })
    .unwrap_or_default();
    // From torch 2.7 on every Linux torch build uses the C++11 ABI (module docs of
    // `cuda::abi_label`); for older series both exist and the solver matches the build.
    if torch.is_none() {
        if let (Some(series), Some(false)) = (coupling.coupling.torch, coupling.coupling.cxx11abi) {
            if (series.major, series.minor) >= (2, 7) {
                reasons.push(format!(
                    "built with the pre-C++11 ABI, but every Linux build of torch {series} uses \
                     the C++11 ABI (from torch 2.7 on), so no torch of its series fits"
                ));
            }
        }
    }
    reasons
}

/// Why version `files` cannot be installed with `torch` (its build's C++ ABI `torch_abi`) on
/// `backend`: what ruled it out before solving, or its coupling's misfit with that torch
/// ([`coupling_misfits`]); empty when the resolver could pick it with that torch.
pub(crate) fn version_misfits(
    files: &VersionFiles,
    backend: Backend,
    torch: &Version,
    torch_abi: bool,
) -> Vec<String> {
    match (&files.wheel, &files.coupling) {
        (Ok(_), None) => Vec::new(),
        (Ok(_) | Err(Unusable::AbiMismatch { .. }), Some(coupling)) => {
            let reasons = coupling_misfits(coupling, backend, Some((torch, torch_abi)));
            match (&files.wheel, reasons.is_empty()) {
                (Err(Unusable::AbiMismatch { reasons, .. }), true) => reasons.clone(),
                _ => reasons,
            }
        }
        (Err(Unusable::UnknownBuild { .. }), _) => vec![
            "no torch/CUDA local label and no [couplings] entry: what it was built against is \
             unknown"
                .to_string(),
        ],
        (Err(why), _) => vec![why.describe(files)],
    }
}

/// Every build of `public` (a public version: one [`VersionFiles`] per local label) as the
/// resolver classified it for `torch` on `backend`, for the "no build fits" explanation:
/// per version, its chosen wheel (or the file the target could have used) with the reasons
/// of [`version_misfits`]; its files for other targets as not fitting the target's tags.
pub(crate) fn classify_builds(
    page: &ProjectCandidates,
    public: &Version,
    backend: Backend,
    torch: &Version,
    torch_abi: bool,
    tags: &CompatibleTags,
) -> Vec<RejectedBuild> {
    let mut builds = Vec::new();
    for files in page
        .versions
        .iter()
        .filter(|v| &v.version.clone().without_local() == public)
    {
        let (coupling, source) = match &files.coupling {
            Some(c) => (c.coupling, c.source),
            None => (Coupling::default(), CouplingSource::Unknown),
        };
        let parsed: Vec<(&str, WheelFilename)> = files
            .filenames()
            .filter_map(|name| Some((name, WheelFilename::from_str(name).ok()?)))
            .collect();
        let best_fitting = || {
            parsed
                .iter()
                .filter_map(|(_, w)| w.best_priority(tags).map(|p| (p, w)))
                .min_by_key(|(p, _)| *p)
                .map(|(_, w)| w)
        };
        // The file that stands for the version: the resolver's wheel, else the best-tagged
        // file the target could have used.
        let shown: Option<&WheelFilename> = match &files.wheel {
            Ok(chosen) => parsed
                .iter()
                .find(|(name, _)| *name == chosen.file.filename)
                .map(|(_, w)| w)
                .or_else(best_fitting),
            Err(Unusable::NoFittingWheel) => None,
            Err(_) => best_fitting(),
        };
        if let Some(wheel) = shown {
            builds.push(RejectedBuild {
                filename: display_filename(wheel),
                coupling,
                source,
                fits_target: true,
                reasons: version_misfits(files, backend, torch, torch_abi),
                warnings: wheel.warnings.clone(),
            });
        }
        for (_, wheel) in parsed
            .iter()
            .filter(|(_, w)| w.best_priority(tags).is_none())
        {
            builds.push(RejectedBuild {
                filename: display_filename(wheel),
                coupling,
                source,
                fits_target: false,
                reasons: vec![format!(
                    "its tags ({}) do not fit the target",
                    wheel
                        .tags()
                        .map(|t| t.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )],
                warnings: wheel.warnings.clone(),
            });
        }
    }
    builds
}

/// Sets each version's coupling and rules out, before solving, the builds no resolution on
/// `backend` can use: another CUDA major (or minor, where the label gives one, naming the
/// backends the build is for), a CUDA build on `cpu`, a CPU build on a CUDA backend, the
/// pre-C++11 ABI for a torch series from 2.7 on (all of whose Linux builds use the C++11
/// ABI), and, in a project that publishes labelled torch-extension builds, every build
/// whose label is missing or unreadable and that `[couplings]` does not declare. What
/// depends on the resolved torch (series, the ABI of its build) becomes requirements on
/// torch in the provider, so the solver picks the build that matches the torch it resolves.
fn judge_couplings(versions: &mut [VersionFiles], declared: Option<&Coupling>, backend: Backend) {
    for files in versions.iter_mut() {
        files.coupling = coupling_of(&files.version, declared);
    }
    // A project that publishes torch-extension builds labelled with what they are built
    // for: its other builds are unchecked, whatever their version.
    let labelled_example: Option<String> = versions
        .iter()
        .filter(|v| {
            v.coupling
                .as_ref()
                .is_some_and(|c| c.source == CouplingSource::Label && c.ties_torch())
        })
        .map(|v| v.version.clone())
        .max()
        .map(|v| match AbiLabel::from_version(&v) {
            Some(label) => format!("{}+{}", v.clone().without_local(), label),
            None => v.to_string(),
        });
    // Which backends some build of each CUDA version fits, for the hint below.
    let fitting_backends = |coupling: &Coupling| -> Vec<&'static str> {
        Backend::ALL
            .into_iter()
            .filter(|b| *b != backend && check_cuda(coupling, *b).is_ok())
            .map(|b| b.name())
            .collect()
    };
    for files in versions.iter_mut() {
        if files.wheel.is_err() {
            continue;
        }
        let Some(coupling) = &files.coupling else {
            if let Some(example) = &labelled_example {
                files.wheel = Err(Unusable::UnknownBuild {
                    label: AbiLabel::from_version(&files.version).map(|l| l.to_string()),
                    example: example.clone(),
                });
            }
            continue;
        };
        // Only the CUDA part is known before solving; torch is checked by the solver.
        let mut reasons = coupling_misfits(coupling, backend, None);
        if check_cuda(&coupling.coupling, backend).is_err() {
            let others = fitting_backends(&coupling.coupling);
            if !others.is_empty() {
                // After the CUDA parts, before the ABI rule.
                let at = reasons
                    .iter()
                    .position(|r| r.starts_with("built with the pre-C++11 ABI, but"))
                    .unwrap_or(reasons.len());
                reasons.insert(
                    at,
                    format!(
                        "this build is for backend {}: set target.torch-backend or pass \
                         --torch-backend to use it",
                        others.join(" or ")
                    ),
                );
            }
        }
        if !reasons.is_empty() {
            files.wheel = Err(Unusable::AbiMismatch {
                built: coupling.describe(),
                reasons,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        Version::from_str(text).unwrap()
    }

    #[test]
    fn unusable_builds_are_described_in_single_spaced_sentences() {
        let unknown = Unusable::UnknownBuild {
            label: None,
            example: "2.8.3+cu13torch2.11cxx11abiTRUE".to_string(),
        };
        let files = VersionFiles {
            version: v("2.8.3"),
            wheel: Err(unknown.clone()),
            files: Vec::new(),
            other_names: Vec::new(),
            coupling: None,
        };
        let text = unknown.describe(&files);
        assert!(
            text.contains("while the project publishes labelled builds (e.g. 2.8.3+cu13torch2.11cxx11abiTRUE): what it was built against is unknown, so it is refused (declare it in stack.toml [couplings]"),
            "{text}"
        );
        assert!(!text.contains("  "), "{text}");
    }

    #[test]
    fn backend_label_wins_among_equal_public_versions() {
        let mut versions = [
            v("2.11.0+cpu"),
            v("2.10.0+cu130"),
            v("2.11.0"),
            v("2.11.0+cu130"),
            v("2.11.0+cu126"),
        ];
        versions.sort_by(|a, b| preference_order(a, b, Some("cu130")));
        let shown: Vec<String> = versions.iter().map(|v| v.to_string()).collect();
        assert_eq!(
            shown,
            [
                "2.11.0+cu130",
                "2.11.0+cu126",
                "2.11.0+cpu",
                "2.11.0",
                "2.10.0+cu130"
            ]
        );
        assert_eq!(local_label(&v("2.11.0+cu130")).as_deref(), Some("cu130"));
        assert_eq!(local_label(&v("2.11.0")), None);
    }

    // ------------------------------------------------ builds of coupled packages, explained

    use crate::cuda::{explain_no_build, AbiContext, NoBuild};
    use crate::index::page::{CoreMetadataRef, Hashes, Yanked};
    use crate::target::Target;

    fn tags(target: &str) -> CompatibleTags {
        Target::from_str(target).unwrap().tags()
    }

    /// The files of `project` in the `perf-wheels.json` fixture (real published names),
    /// with `public` versions only when given.
    fn fixture_files(project: &str, public: Option<&str>) -> Vec<String> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/indexes/perf-wheels.json");
        let spec: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        spec["projects"][project]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["filename"].as_str().unwrap().to_string())
            .filter(|name| public.is_none_or(|p| name.contains(&format!("-{p}"))))
            .collect()
    }

    fn dist(filename: &str) -> DistFile {
        DistFile {
            filename: filename.to_string(),
            url: url::Url::parse(&format!("https://files.invalid/{filename}")).unwrap(),
            hashes: Hashes::default(),
            requires_python: None,
            yanked: Yanked::No,
            core_metadata: CoreMetadataRef::Absent,
            size: None,
            upload_time: None,
        }
    }

    /// The page the resolver would build for these files.
    fn page(
        project: &str,
        names: &[String],
        target: &str,
        backend: Backend,
        declared: Option<Coupling>,
    ) -> ProjectCandidates {
        let name = PackageName::from_str(project).unwrap();
        let ctx = CandidateContext {
            tags: tags(target),
            python: v("3.14.0"),
            backend,
            couplings: declared
                .map(|c| BTreeMap::from([(name.clone(), c)]))
                .unwrap_or_default(),
            hashes: BTreeMap::new(),
            gpus: Vec::new(),
            formats: Default::default(),
            sdists: false,
        };
        let files = names.iter().map(|n| dist(n)).collect();
        ProjectCandidates::from_files(&name, "perf-wheels", "https://x/", files, Vec::new(), &ctx)
    }

    /// The explanation for `public` of `page` with `torch` on `backend`, as `explain_builds`
    /// makes it; None when a build fits.
    fn explained(
        page: &ProjectCandidates,
        public: &str,
        torch: &str,
        backend: Backend,
        target: &str,
        declared: bool,
    ) -> Option<NoBuild> {
        let context = AbiContext::new(v(torch), backend);
        let builds = classify_builds(
            page,
            &v(public),
            backend,
            &context.torch,
            context.torch_cxx11abi,
            &tags(target),
        );
        explain_no_build(page.name.as_ref(), public, builds, &context, declared)
    }

    const X86: &str = "3.14:manylinux_2_39_x86_64";

    #[test]
    fn no_build_cu128_nunchaku_lists_each_build_and_what_to_do() {
        let names = fixture_files("nunchaku", Some("1.2.1"));
        let page = page("nunchaku", &names, X86, Backend::Cu128, None);
        let err = explained(&page, "1.2.1", "2.11.0+cu128", Backend::Cu128, X86, false).unwrap();
        let text = crate::diagnostic::with_help(&err);
        assert!(
            text.starts_with("nunchaku 1.2.1: builds for torch 2.9, 2.10, 2.11"),
            "{text}"
        );
        assert!(text.contains("resolved torch is 2.11.0+cu128"), "{text}");
        assert!(
            text.contains(
                "nunchaku-1.2.1+cu12.8torch2.9-cp314-cp314-linux_x86_64.whl: built for torch 2.9"
            ),
            "{text}"
        );
        assert!(
            text.contains("built for CUDA 13.0, backend cu128 ships CUDA 12.8"),
            "{text}"
        );
        // What to do: the cu130 backend has a build for torch 2.11; on cu128 pin torch 2.9.
        assert!(text.contains("on backend cu130"), "{text}");
        assert!(text.contains("torch==2.9.*"), "{text}");
        assert!(!text.contains("torch==2.10.*"), "{text}");
        // The 9 files for other interpreters/architectures are summarised, not listed.
        assert!(
            text.contains("9 other files do not fit the target's tags"),
            "{text}"
        );
        assert_eq!(err.rejected.len(), 9 + 3);
        assert_eq!(err.rejected.iter().filter(|r| r.fits_target).count(), 3);
    }

    #[test]
    fn no_build_for_a_torch_series_names_every_build_and_the_series_to_pin() {
        let names = fixture_files("flash_attn", Some("2.8.3"));
        let page = page("flash-attn", &names, X86, Backend::Cu130, None);
        let err = explained(&page, "2.8.3", "2.12.0+cu130", Backend::Cu130, X86, false).unwrap();
        let text = err.to_string();
        assert!(
            text.starts_with(
                "flash-attn 2.8.3: builds for torch 2.8, 2.9, 2.10, 2.11 with CUDA 12, 13; \
                 resolved torch is 2.12.0+cu130"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "flash_attn-2.8.3+cu13torch2.11cxx11abiTRUE-cp314-cp314-linux_x86_64.whl: \
                 built for torch 2.11, resolved torch is 2.12.0+cu130"
            ),
            "{text}"
        );
        // What to do is the error's help, not part of its message.
        assert!(!text.contains("help"), "{text}");
        let help = err.help().unwrap();
        assert!(help.contains("torch==2.8.*, torch==2.9.*"), "{help}");
        assert_eq!(err.package, "flash-attn");
        let json = serde_json::to_value(&err).unwrap();
        assert_eq!(json["backend"], "cu130");
        assert_eq!(json["rejected"].as_array().unwrap().len(), names.len());
        // With torch 2.11 a build fits: nothing to explain.
        assert!(explained(&page, "2.8.3", "2.11.0+cu130", Backend::Cu130, X86, false).is_none());
    }

    #[test]
    fn no_build_of_the_other_cxx11_abi_and_of_a_declared_coupling() {
        let names = ["ext-1.0+cu12torch2.8cxx11abiFALSE-cp314-cp314-linux_x86_64.whl".to_string()];
        let ext = page("ext", &names, X86, Backend::Cu126, None);
        let err = explained(&ext, "1.0", "2.8.0+cu126", Backend::Cu126, X86, false).unwrap();
        assert!(
            err.to_string().contains(
                "built with the pre-C++11 ABI (cxx11abiFALSE), torch 2.8.0+cu126 uses the C++11 ABI"
            ),
            "{err}"
        );

        let names = fixture_files("sageattn3", Some("1.0.0"));
        let declared = Coupling::from_release_name("sageattn-py313-cu130-pt211");
        let sage3 = page("sageattn3", &names, X86, Backend::Cu130, Some(declared));
        assert!(explained(&sage3, "1.0.0", "2.11.0+cu130", Backend::Cu130, X86, true).is_none());
        let err = explained(&sage3, "1.0.0", "2.10.0+cu130", Backend::Cu130, X86, true).unwrap();
        let text = crate::diagnostic::with_help(&err);
        assert!(
            text.contains(
                "built for torch 2.11, resolved torch is 2.10.0+cu130 (as declared in [couplings])"
            ),
            "{text}"
        );
    }

    #[test]
    fn no_build_when_no_file_fits_the_target() {
        let names: Vec<String> = fixture_files("flash_attn", Some("2.8.3"))
            .into_iter()
            .filter(|n| n.contains("-cp313-"))
            .collect();
        let page = page("flash-attn", &names, X86, Backend::Cu130, None);
        let err = explained(&page, "2.8.3", "2.11.0+cu130", Backend::Cu130, X86, false).unwrap();
        let text = crate::diagnostic::with_help(&err);
        assert!(text.contains("no file fits the target's tags"), "{text}");
        assert!(text.contains("interpreter and platform"), "{text}");
    }

    /// The explanation and the resolver agree on every build of every fixture project, for
    /// every backend and a range of torch versions: a build the explanation calls fitting is
    /// one the solver may pick (usable before solving, and fitting the torch in the
    /// provider), and the other way round.
    #[test]
    fn the_explanation_classifies_builds_as_the_resolver_does() {
        let mut compared = 0;
        for project in [
            "flash_attn",
            "sageattention",
            "flash_attn_3",
            "nunchaku",
            "sageattn3",
        ] {
            let names = fixture_files(project, None);
            for target in [X86, "3.14:manylinux_2_39_aarch64"] {
                for backend in Backend::ALL {
                    let candidates = page(project, &names, target, backend, None);
                    for torch in ["2.8.0", "2.9.1", "2.10.0", "2.11.0", "2.12.0"] {
                        let torch = v(&format!("{torch}+{}", backend.local_label()));
                        let abi = crate::cuda::torch_uses_cxx11_abi(&torch);
                        for files in &candidates.versions {
                            let resolver = files.wheel.is_ok()
                                && super::super::provider::fits_torch(files, &torch, abi);
                            let explanation =
                                version_misfits(files, backend, &torch, abi).is_empty();
                            assert_eq!(
                                resolver, explanation,
                                "{project} {} for {target} on {backend} with torch {torch}",
                                files.version
                            );
                            compared += 1;
                        }
                    }
                }
            }
        }
        assert!(compared > 500, "{compared}");
    }
}

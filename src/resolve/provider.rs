//! The PubGrub dependency provider: packages, versions, dependencies and priorities.
//!
//! Owns the package model (the stack's root, projects, and extras as virtual packages
//! `name[extra]` held at their base's exact version, as uv does), the version choice
//! (preference from the lock, then the newest usable version; pre-releases only when
//! allowed, named, or the only choice; yanked only when pinned with `==`/`===`; extras follow
//! their base's choice), dependencies from METADATA (markers evaluated for the target with the
//! active extra, Requires-Python, constraints intersected into every edge; plus, for a build
//! whose ABI coupling names a torch series or C++ ABI, synthetic requirements on torch:
//! `torch==X.Y.*` and `torch>=2.7` for `cxx11abiTRUE` / `torch<2.7` for `cxx11abiFALSE`, so
//! the solver picks the build that matches the torch it resolves and backtracks when none
//! does; among a coupled project's versions, builds that fit the torch chosen so far are
//! tried first), priorities
//! (exact pins and URLs, then extras, then the most conflicted, then the stack's direct
//! requirements, then discovery order), and the record of who needs what, for explanations.
//! When the solver walks back through a project's versions, it starts the METADATA reads of
//! the next candidates ahead of time, in growing batches.
//! Runs on a blocking thread and waits on the fetcher's futures.
//! Must not: fetch pages or metadata itself (the fetcher does), or format conflicts.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use pep440_rs::{Version, VersionSpecifiers};
use pep508_rs::{ExtraName, MarkerEnvironment, PackageName, Requirement, VersionOrUrl};
use pubgrub::{
    Dependencies, DependencyConstraints, DependencyProvider, PackageResolutionStatistics, Ranges,
};
use tokio::runtime::Handle;

use super::candidates::{self, ProjectCandidates, VersionCoupling, VersionFiles};
use super::fetcher::Fetcher;
use super::profile::NodeKey;
use super::ranges::{names_prerelease, specifiers_to_ranges};
use super::ResolveError;
use crate::cuda::{torch_uses_cxx11_abi, Backend, Coupling};
use crate::pak::Location;

/// A PubGrub package.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Pkg {
    /// Every pak line of every layer.
    Root,
    Name(PackageName),
    /// `name[extra]`: depends on `name` at the same version and on the extra's requirements.
    Extra(PackageName, ExtraName),
}

impl Pkg {
    pub fn base(&self) -> Option<&PackageName> {
        match self {
            Pkg::Root => None,
            Pkg::Name(name) | Pkg::Extra(name, _) => Some(name),
        }
    }
}

impl fmt::Display for Pkg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pkg::Root => f.write_str("the stack"),
            Pkg::Name(name) => write!(f, "{name}"),
            Pkg::Extra(name, extra) => write!(f, "{name}[{extra}]"),
        }
    }
}

/// A pak line (requirement or constraint) that asks for a project.
#[derive(Debug, Clone)]
pub(crate) struct RootSource {
    pub location: Location,
    /// The line as written.
    pub text: String,
}

/// Everything fixed before solving starts.
#[derive(Clone)]
pub(crate) struct SolveInputs {
    /// The root's dependencies, constraints applied, in pak order.
    pub root_deps: Vec<(Pkg, Ranges<Version>)>,
    pub root_sources: BTreeMap<PackageName, Vec<RootSource>>,
    pub constraints: BTreeMap<PackageName, (Ranges<Version>, Vec<RootSource>)>,
    /// `==`/`===` pins from pak lines and constraints (they allow yanked files).
    pub exact_pins: BTreeMap<PackageName, Vec<VersionSpecifiers>>,
    /// Projects whose pak lines or constraints name a pre-release.
    pub explicit_prerelease: BTreeSet<PackageName>,
    /// Projects given as `name @ URL`.
    pub direct: BTreeSet<PackageName>,
    /// Preferred versions (without the packages being upgraded).
    pub preferences: BTreeMap<PackageName, Version>,
    pub prerelease: bool,
    pub env: MarkerEnvironment,
    /// The target interpreter, `X.Y.0`.
    pub python: Version,
    /// `torch`: what ABI couplings require.
    pub torch: PackageName,
    /// Projects left out of this solve entirely (from the root and from every dependency):
    /// used to find the torch the rest of the stack resolves to when a coupled project has
    /// no fitting build.
    pub skip: BTreeSet<PackageName>,
}

/// The requirement on torch that a build's coupling makes: `torch==2.11.*` for a torch
/// series; for a C++ ABI, the torch builds of `torch_page` that use it (read from each
/// build's wheel, [`VersionFiles::torch_cxx11_abi`]); with the text shown in explanations.
/// None when the coupling names neither.
pub(crate) fn torch_requirement(
    coupling: &VersionCoupling,
    torch_page: Option<&ProjectCandidates>,
) -> Option<(Ranges<Version>, String)> {
    let mut range = Ranges::full();
    let mut text = String::new();
    if let Some(series) = coupling.coupling.torch {
        text = match series.patch {
            Some(patch) => format!("=={}.{}.{patch}", series.major, series.minor),
            None => format!("=={}.{}.*", series.major, series.minor),
        };
        let specifiers = text.parse::<VersionSpecifiers>().ok()?;
        range = specifiers_to_ranges(&specifiers);
    }
    if let Some(abi) = coupling.coupling.cxx11abi {
        let builds = match torch_page {
            Some(page) => page
                .versions
                .iter()
                .filter(|v| v.wheel.is_ok() && v.torch_cxx11_abi() == abi)
                .fold(Ranges::empty(), |r, v| {
                    r.union(&Ranges::singleton(v.version.clone()))
                }),
            // No torch page to read the builds from: by version (2.7 and newer).
            None => {
                let cut = Version::new([2, 7]);
                if abi {
                    Ranges::higher_than(cut)
                } else {
                    Ranges::strictly_lower_than(cut)
                }
            }
        };
        range = range.intersection(&builds);
        text.push_str(if abi {
            " built with the C++11 ABI"
        } else {
            " built with the pre-C++11 ABI"
        });
    }
    if text.is_empty() {
        return None;
    }
    Some((
        range,
        format!("torch{text} (ABI coupling: {})", coupling.describe()),
    ))
}

/// Whether a coupled build fits a torch version (series and C++ ABI; CUDA was checked
/// against the backend before solving, [`candidates::coupling_misfits`] with no torch).
/// Builds without a torch coupling fit any torch.
pub(crate) fn fits_torch(files: &VersionFiles, torch: &Version, torch_cxx11abi: bool) -> bool {
    let Some(coupling) = files.coupling.as_ref().filter(|c| c.ties_torch()) else {
        return true;
    };
    let torch_parts = VersionCoupling {
        coupling: Coupling {
            cuda: None,
            ..coupling.coupling
        },
        ..coupling.clone()
    };
    // The backend does not matter without a CUDA part.
    candidates::coupling_misfits(&torch_parts, Backend::Cpu, Some((torch, torch_cxx11abi)))
        .is_empty()
}

/// What the solver learned while running (read after it stops, for explanations).
#[derive(Debug, Default)]
pub(crate) struct SolveRecord {
    /// Per package and version: each dependency and the requirement text that made it.
    pub edges: HashMap<Pkg, BTreeMap<Version, Vec<(Pkg, String)>>>,
    explicit_prerelease: BTreeSet<PackageName>,
    order: HashMap<Pkg, usize>,
    chosen: HashMap<PackageName, Version>,
    /// The distinct versions chosen so far per project, and how far into its candidates
    /// (an index into its page's versions) METADATA reads have been started ahead.
    tried: HashMap<PackageName, BTreeSet<Version>>,
    read_ahead: HashMap<PackageName, usize>,
}

/// From this many distinct versions of a project tried on, the solver is walking back
/// through its versions: the METADATA of the next ones it would try is read ahead.
const READ_AHEAD_AFTER: usize = 3;
/// The most versions read ahead at once.
const READ_AHEAD_MAX: usize = 32;

pub(crate) struct Provider {
    pub fetcher: Arc<Fetcher>,
    pub inputs: Arc<SolveInputs>,
    handle: Handle,
    record: Mutex<SolveRecord>,
}

/// The version the root package has.
pub(crate) fn root_version() -> Version {
    Version::new([0u64])
}

/// `numpy[extra]>=2.1`: a requirement without its marker, for messages.
pub(crate) fn requirement_text(requirement: &Requirement) -> String {
    let mut text = requirement.name.to_string();
    if !requirement.extras.is_empty() {
        let extras: Vec<String> = requirement.extras.iter().map(|e| e.to_string()).collect();
        text.push_str(&format!("[{}]", extras.join(",")));
    }
    match &requirement.version_or_url {
        Some(VersionOrUrl::VersionSpecifier(specifiers)) => text.push_str(&specifiers.to_string()),
        Some(VersionOrUrl::Url(url)) => text.push_str(&format!(" @ {url}")),
        None => {}
    }
    text
}

impl Provider {
    pub fn new(fetcher: Arc<Fetcher>, inputs: Arc<SolveInputs>, handle: Handle) -> Self {
        let record = SolveRecord {
            explicit_prerelease: inputs.explicit_prerelease.clone(),
            ..SolveRecord::default()
        };
        Provider {
            fetcher,
            inputs,
            handle,
            record: Mutex::new(record),
        }
    }

    fn record(&self) -> MutexGuard<'_, SolveRecord> {
        self.record
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The record, once the solver has stopped.
    pub fn into_record(self) -> SolveRecord {
        self.record
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn page(
        &self,
        name: &PackageName,
    ) -> Result<Arc<super::candidates::ProjectCandidates>, ResolveError> {
        let since = Instant::now();
        let page = self.handle.block_on(self.fetcher.page(name));
        self.fetcher.waited(NodeKey::Page(name.clone()), since);
        page.map_err(|source| ResolveError::Index {
            name: name.to_string(),
            source,
        })
    }

    fn yanked_allowed(&self, name: &PackageName, version: &Version) -> bool {
        self.inputs
            .exact_pins
            .get(name)
            .is_some_and(|pins| pins.iter().any(|pin| pin.contains(version)))
    }

    /// Whether pre-releases of `name` may be chosen outright (`--pre`, or a requirement names
    /// one); otherwise one is chosen only when nothing else fits, as pip does.
    fn allows_prerelease(&self, name: &PackageName) -> bool {
        self.inputs.prerelease || self.record().explicit_prerelease.contains(name)
    }

    /// Whether the version `files` of `name` may be chosen within `range`: in it, with a
    /// wheel for the target, not yanked unless pinned with `==`.
    fn usable(&self, name: &PackageName, range: &Ranges<Version>, files: &VersionFiles) -> bool {
        range.contains(&files.version)
            && match &files.wheel {
                Ok(wheel) => !wheel.yanked || self.yanked_allowed(name, &files.version),
                Err(_) => false,
            }
    }

    /// The version to try for `name` within `range`; `first` is tried before anything
    /// else (an extra follows its base's choice).
    fn pick(
        &self,
        name: &PackageName,
        range: &Ranges<Version>,
        first: Option<Version>,
    ) -> Result<Option<Version>, ResolveError> {
        let page = self.page(name)?;
        let allow_prerelease = self.allows_prerelease(name);
        let usable = |version: &Version| {
            page.get(version)
                .is_some_and(|files| self.usable(name, range, files))
        };
        if let Some(first) = first.filter(|v| usable(v)) {
            return Ok(Some(first));
        }
        if let Some(preferred) = self.inputs.preferences.get(name) {
            if usable(preferred) && (allow_prerelease || !preferred.any_prerelease()) {
                return Ok(Some(preferred.clone()));
            }
        }
        // Coupled builds that fit the torch chosen so far first (a hint; the synthetic torch
        // requirements keep the choice correct either way).
        let chosen_torch = self.record().chosen.get(&self.inputs.torch).cloned();
        let chosen_torch = chosen_torch.map(|torch| {
            let abi = self
                .fetcher
                .ready_page(&self.inputs.torch)
                .and_then(|p| p.get(&torch).map(VersionFiles::torch_cxx11_abi))
                .unwrap_or_else(|| torch_uses_cxx11_abi(&torch));
            (torch, abi)
        });
        let fits = |files: &&VersionFiles| {
            chosen_torch
                .as_ref()
                .is_none_or(|(torch, abi)| fits_torch(files, torch, *abi))
        };
        let ordered = page
            .versions
            .iter()
            .filter(fits)
            .chain(page.versions.iter().filter(|f| !fits(f)));
        let mut prerelease = None;
        for files in ordered {
            if !self.usable(name, range, files) {
                continue;
            }
            if files.version.any_prerelease() && !allow_prerelease {
                // pip's rule: a pre-release only when nothing else satisfies.
                prerelease.get_or_insert_with(|| files.version.clone());
                continue;
            }
            return Ok(Some(files.version.clone()));
        }
        Ok(prerelease)
    }

    /// The solver is walking back through the versions of `name` (it has tried `tried` of
    /// them, `chosen` now): start reading the METADATA of the next candidates in `range`
    /// (preference order, usable wheels, the pre-release rule), and that of the likely
    /// versions of what they need, in batches that grow with the walk, so the solver waits
    /// on a few round trips instead of one per version. uv reads ahead the same way; the
    /// waste is bounded by one batch.
    fn read_ahead(
        &self,
        name: &PackageName,
        range: &Ranges<Version>,
        chosen: &Version,
        tried: usize,
    ) {
        let Some(page) = self.fetcher.ready_page(name) else {
            return;
        };
        let Some(position) = page.versions.iter().position(|v| &v.version == chosen) else {
            return;
        };
        let window = (2 * tried).min(READ_AHEAD_MAX);
        let allow_prerelease = self.allows_prerelease(name);
        let versions: Vec<Version> = {
            let mut record = self.record();
            let done = record.read_ahead.entry(name.clone()).or_default();
            if *done > position + window / 2 {
                // Far enough ahead still.
                return;
            }
            let start = (*done).max(position + 1);
            let mut versions = Vec::new();
            let mut end = start;
            for files in page.versions.iter().skip(start) {
                if versions.len() == window {
                    break;
                }
                end += 1;
                if self.usable(name, range, files)
                    && (allow_prerelease || !files.version.any_prerelease())
                {
                    versions.push(files.version.clone());
                }
            }
            *done = end;
            versions
        };
        // Discovering each version reads its METADATA and then that of what it needs, so the
        // exact pins older versions often carry (`x==0.6.4`) are read ahead too.
        for version in versions {
            self.fetcher
                .discover(name, Some(Ranges::singleton(version)), Vec::new());
        }
    }

    fn dependencies_of(
        &self,
        package: &Pkg,
        version: &Version,
    ) -> Result<Dependencies<Pkg, Ranges<Version>, String>, ResolveError> {
        let (name, extra) = match package {
            Pkg::Root => {
                let deps: DependencyConstraints<Pkg, Ranges<Version>> =
                    self.inputs.root_deps.iter().cloned().collect();
                return Ok(Dependencies::Available(deps));
            }
            Pkg::Name(name) => (name, None),
            Pkg::Extra(name, extra) => (name, Some(extra)),
        };
        let page = self.page(name)?;
        let since = Instant::now();
        let metadata = self.handle.block_on(self.fetcher.metadata(name, version));
        self.fetcher
            .waited(NodeKey::Metadata(name.clone(), version.clone()), since);
        let metadata = metadata.map_err(|source| ResolveError::Metadata {
            name: name.to_string(),
            version: version.to_string(),
            url: page
                .get(version)
                .and_then(|files| files.wheel.as_ref().ok())
                .map(|wheel| crate::http::redact(&wheel.file.url))
                .unwrap_or_default(),
            source,
        })?;
        if let Some(requires_python) = &metadata.requires_python {
            if !requires_python.contains(&self.inputs.python) {
                return Ok(Dependencies::Unavailable(format!(
                    "needs Python {requires_python} (Requires-Python in its METADATA), and the target is Python {}",
                    self.inputs.python
                )));
            }
        }
        let active: Vec<ExtraName> = extra.cloned().into_iter().collect();
        let mut deps: Vec<(Pkg, Ranges<Version>)> = Vec::new();
        let mut texts: Vec<(Pkg, String)> = Vec::new();
        let add =
            |deps: &mut Vec<(Pkg, Ranges<Version>)>, pkg: Pkg, range: Ranges<Version>| match deps
                .iter_mut()
                .find(|(p, _)| p == &pkg)
            {
                Some((_, existing)) => *existing = existing.intersection(&range),
                None => deps.push((pkg, range)),
            };
        if extra.is_some() {
            add(
                &mut deps,
                Pkg::Name(name.clone()),
                Ranges::singleton(version.clone()),
            );
        }
        for requirement in &metadata.requires_dist {
            if !requirement.marker.evaluate(&self.inputs.env, &active)
                || self.inputs.skip.contains(&requirement.name)
            {
                continue;
            }
            if extra.is_some() && requirement.marker.evaluate(&self.inputs.env, &[]) {
                // A base requirement: the base package already has it.
                continue;
            }
            if &requirement.name == name {
                // `pkg[all]` needing `pkg[a]`: the other extras at this same version.
                for other in &requirement.extras {
                    add(
                        &mut deps,
                        Pkg::Extra(name.clone(), other.clone()),
                        Ranges::singleton(version.clone()),
                    );
                }
                continue;
            }
            let mut range = match &requirement.version_or_url {
                None => Ranges::full(),
                Some(VersionOrUrl::VersionSpecifier(specifiers)) => {
                    if names_prerelease(specifiers) {
                        self.record()
                            .explicit_prerelease
                            .insert(requirement.name.clone());
                    }
                    specifiers_to_ranges(specifiers)
                }
                Some(VersionOrUrl::Url(url)) => {
                    if self.inputs.direct.contains(&requirement.name) {
                        Ranges::full()
                    } else {
                        return Ok(Dependencies::Unavailable(format!(
                            "depends on `{} @ {url}`, a direct URL; comfypak takes direct URLs only from pak files (add `{} @ URL` to a pak file)",
                            requirement.name, requirement.name
                        )));
                    }
                }
            };
            if let Some((constraint, _)) = self.inputs.constraints.get(&requirement.name) {
                range = range.intersection(constraint);
            }
            let text = requirement_text(requirement);
            add(
                &mut deps,
                Pkg::Name(requirement.name.clone()),
                range.clone(),
            );
            texts.push((Pkg::Name(requirement.name.clone()), text.clone()));
            for child_extra in &requirement.extras {
                let child = Pkg::Extra(requirement.name.clone(), child_extra.clone());
                add(&mut deps, child.clone(), range.clone());
                texts.push((child, text.clone()));
            }
            self.fetcher.discover_after(
                &requirement.name,
                Some(range),
                requirement.extras.clone(),
                &NodeKey::Metadata(name.clone(), version.clone()),
            );
        }
        if extra.is_none() && name != &self.inputs.torch {
            let coupling = page.get(version).and_then(|files| files.coupling.as_ref());
            let torch_page = match coupling {
                Some(c) if c.coupling.cxx11abi.is_some() => Some(self.page(&self.inputs.torch)?),
                _ => None,
            };
            let coupled = coupling.and_then(|c| torch_requirement(c, torch_page.as_deref()));
            if let Some((mut range, text)) = coupled {
                let torch = self.inputs.torch.clone();
                if let Some((constraint, _)) = self.inputs.constraints.get(&torch) {
                    range = range.intersection(constraint);
                }
                add(&mut deps, Pkg::Name(torch.clone()), range.clone());
                // First, so explanations quote the coupling rather than a bare `torch`.
                texts.insert(0, (Pkg::Name(torch.clone()), text));
                self.fetcher.discover_after(
                    &torch,
                    Some(range),
                    Vec::new(),
                    &NodeKey::Metadata(name.clone(), version.clone()),
                );
            }
        }
        if extra.is_some() {
            texts.push((Pkg::Name(name.clone()), format!("{name}=={version}")));
        }
        self.record()
            .edges
            .entry(package.clone())
            .or_default()
            .insert(version.clone(), texts);
        Ok(Dependencies::Available(deps.into_iter().collect()))
    }
}

/// Higher is decided first.
pub(crate) type Priority = (u8, u32, u8, Reverse<usize>);

impl DependencyProvider for Provider {
    type P = Pkg;
    type V = Version;
    type VS = Ranges<Version>;
    type Priority = Priority;
    type M = String;
    type Err = ResolveError;

    fn prioritize(
        &self,
        package: &Pkg,
        range: &Ranges<Version>,
        statistics: &PackageResolutionStatistics,
    ) -> Priority {
        let mut record = self.record();
        let next = record.order.len();
        let order = *record.order.entry(package.clone()).or_insert(next);
        let tier = match package {
            Pkg::Root => 3,
            Pkg::Name(name) if self.inputs.direct.contains(name) => 2,
            Pkg::Name(_) if range.as_singleton().is_some() => 2,
            // An extra before its base: the base then follows it at one version.
            Pkg::Extra(..) => 1,
            Pkg::Name(_) => 0,
        };
        let direct = match package.base() {
            Some(name) => u8::from(self.inputs.root_sources.contains_key(name)),
            None => 0,
        };
        (tier, statistics.conflict_count(), direct, Reverse(order))
    }

    fn choose_version(
        &self,
        package: &Pkg,
        range: &Ranges<Version>,
    ) -> Result<Option<Version>, ResolveError> {
        match package {
            Pkg::Root => Ok(Some(root_version()).filter(|v| range.contains(v))),
            Pkg::Name(name) => {
                let chosen = self.pick(name, range, None)?;
                if let Some(version) = &chosen {
                    let tried = {
                        let mut record = self.record();
                        record.chosen.insert(name.clone(), version.clone());
                        let tried = record.tried.entry(name.clone()).or_default();
                        tried.insert(version.clone());
                        tried.len()
                    };
                    // Start reading its METADATA now; get_dependencies will wait on it.
                    drop(self.fetcher.metadata(name, version));
                    if tried >= READ_AHEAD_AFTER {
                        self.read_ahead(name, range, version, tried);
                    }
                }
                Ok(chosen)
            }
            Pkg::Extra(name, _) => {
                let base = self.record().chosen.get(name).cloned();
                self.pick(name, range, base)
            }
        }
    }

    fn get_dependencies(
        &self,
        package: &Pkg,
        version: &Version,
    ) -> Result<Dependencies<Pkg, Ranges<Version>, String>, ResolveError> {
        self.dependencies_of(package, version)
    }
}

//! Resolution: one PubGrub resolution over every layer's pak requirements together (the
//! image is one environment), for one target platform.
//!
//! Owns the public resolver API ([`resolve_target`], [`Resolution`], [`ResolvedPackage`],
//! [`ResolveOptions`], [`ResolveError`]) and the gathering of the inputs: pak lines with
//! their markers evaluated for the target, extras, `--hash` filters, constraints (they
//! restrict versions, never add packages), direct wheel URLs (`name @ https://.../x.whl`,
//! one candidate each) and the refusal of anything that must be built (sdists, VCS URLs,
//! unnamed URLs). The pieces: `backend` (the torch backend and the index its torch family
//! comes from), `ranges` (PEP 440 specifiers as version sets, local versions included),
//! `candidates` (the usable wheel of each version, and its ABI coupling), `fetcher`
//! (concurrent pages and METADATA with prefetch), `provider` (the PubGrub provider, with ABI
//! couplings as requirements on torch), `explain` (conflicts in plain language; a coupled
//! package without a fitting build is explained first, every build as `candidates` classifies
//! it, worded by `cuda::explain_no_build`). `layers` assigns packages to layers and `to_lock` builds the lock.
//! `profile` records where the time went (requests, chains, the solver's waits) and hands it
//! to [`ResolveProgress::profile`].
//!
//! `layers` assigns packages to layers and `to_lock` turns the resolutions into the lock's
//! contents (as uv keeps its lock in the resolver); writing the file is `crate::lock`'s.
//! Must not: write files, download wheels, or build anything.

pub mod backend;
mod candidates;
mod explain;
mod fetcher;
pub mod formats;
pub mod layers;
pub mod profile;
mod provider;
mod ranges;
pub mod to_lock;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use pep440_rs::Version;
use pep508_rs::{ExtraName, PackageName, VersionOrUrl};
use pubgrub::{PubGrubError, Ranges};
use url::Url;

use self::backend::{family_pin_warnings, indexes_for_backend};
use self::candidates::{CandidateContext, ProjectCandidates};
use self::fetcher::{DirectWheel, Event, Fetcher, FetcherSettings};
use self::provider::{Pkg, Provider, RootSource, SolveInputs};
use self::ranges::{is_exact_pin, names_prerelease, specifiers_to_ranges};
use crate::cuda::{
    explain_no_build, torch_uses_cxx11_abi, AbiContext, Backend, Coupling, CouplingSource,
};
use crate::filename::WheelFilename;
use crate::http::redact;
use crate::index::client::{IndexClient, IndexError};
use crate::index::page::{CoreMetadataRef, DistFile, Hashes, Yanked};
use crate::pak::{Location, PakLine, PakRequirement};
use crate::stack::Stack;
use crate::target::Target;

/// Which packages move to their newest version on purpose.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Upgrade {
    /// Keep every preferred (locked) version that still fits.
    #[default]
    None,
    /// Ignore every preference.
    All,
    /// Ignore the preferences of these packages.
    Packages(BTreeSet<PackageName>),
}

impl Upgrade {
    /// Whether `name` is being upgraded (its preference is ignored).
    pub fn covers(&self, name: &PackageName) -> bool {
        match self {
            Upgrade::None => false,
            Upgrade::All => true,
            Upgrade::Packages(names) => names.contains(name),
        }
    }
}

/// How to resolve.
#[derive(Debug, Clone)]
pub struct ResolveOptions {
    /// `--pre`, or a pak file's `--pre` (a pak file's `--pre` is also honoured by itself).
    pub prerelease: bool,
    pub upgrade: Upgrade,
    /// Versions to keep when they still satisfy the inputs (from an existing lock); ignored for
    /// packages being upgraded. Minimal churn relies on this.
    pub preferences: BTreeMap<PackageName, Version>,
    /// The torch backend, chosen by the caller once for every target
    /// (`backend::select_backend`; `auto` reads the host there, never here).
    pub torch_backend: Backend,
    /// `--no-binary` / `--only-binary` from the command line (applied after the stack's
    /// `[build]` values and the pak files' options).
    pub formats: Vec<formats::FormatOption>,
    /// Index sdists as candidates where no wheel of a version may be used; None: wheels only.
    pub sdists: Option<formats::SdistCandidates>,
}

impl ResolveOptions {
    /// Resolving for `torch_backend`, with nothing else set.
    pub fn new(torch_backend: Backend) -> Self {
        ResolveOptions {
            prerelease: false,
            upgrade: Upgrade::None,
            preferences: BTreeMap::new(),
            torch_backend,
            formats: Vec::new(),
            sdists: None,
        }
    }
}

/// A pak line of a layer (a requirement, or a constraint).
#[derive(Debug, Clone, PartialEq)]
pub struct RootRequirement {
    pub layer: String,
    pub line: PakLine,
}

/// Every requirement line of every layer, in stack order, and, separately, every constraint
/// line (`-c` files). Excluded pak files are left out.
pub fn root_requirements(stack: &Stack) -> (Vec<RootRequirement>, Vec<RootRequirement>) {
    let mut requirements = Vec::new();
    let mut constraints = Vec::new();
    for layer in &stack.layers {
        for pak in &layer.paks {
            for line in &pak.requirements {
                requirements.push(RootRequirement {
                    layer: layer.name.clone(),
                    line: line.clone(),
                });
            }
            for line in &pak.constraints {
                constraints.push(RootRequirement {
                    layer: layer.name.clone(),
                    line: line.clone(),
                });
            }
        }
    }
    (requirements, constraints)
}

/// The outcome for one target.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution {
    pub target: Target,
    /// The torch backend the torch family was resolved for.
    pub backend: Backend,
    pub packages: BTreeMap<PackageName, ResolvedPackage>,
    /// Direct requirements per layer (layer name → package names), in stack order; for layer assignment.
    pub roots: Vec<(String, Vec<PackageName>)>,
}

/// One resolved project.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedPackage {
    pub name: PackageName,
    pub version: Version,
    /// Index name ("pypi", "pytorch-cu130", "direct").
    pub index: String,
    /// The index's URL (redacted), or the direct URL.
    pub index_url: String,
    /// The best wheel for the target (tag priority, then build tag).
    pub wheel: DistFile,
    pub requires_python: Option<String>,
    /// After marker evaluation and extras, base names.
    pub dependencies: BTreeSet<PackageName>,
    /// Extras activated on it.
    pub extras: BTreeSet<String>,
    /// Pak lines naming it directly.
    pub requested_by: Vec<Location>,
    /// For an ABI-coupled build (a local label with CUDA or torch, or a `[couplings]` entry):
    /// what it is built for and why it fits.
    pub build: Option<CoupledBuild>,
}

/// Why an ABI-coupled build was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoupledBuild {
    pub coupling: Coupling,
    pub source: CouplingSource,
    /// The local label as published (`cu13torch2.11cxx11abiTRUE`), when it has one.
    pub label: Option<String>,
    /// One line for the lock, e.g. "built for CUDA 13, torch 2.11, C++11 ABI (local label
    /// +cu13torch2.11cxx11abiTRUE); resolved torch 2.11.0+cu130 on backend cu130".
    pub reason: String,
}

/// Progress of a resolution (the CLI draws a bar from it).
pub trait ResolveProgress: Send + Sync {
    /// A project's page was requested for the first time.
    fn discovered(&self, _name: &PackageName) {}
    /// A wheel's METADATA was read.
    fn metadata_fetched(&self, _name: &PackageName) {}
    /// Something the user must be told although the resolution goes on, e.g. a wheel whose
    /// name breaks the spec and is accepted anyway. The same message may come once per
    /// target.
    fn warning(&self, _message: &str) {}
    /// Where the resolution for `target` spent its time (`resolve --profile`); called once
    /// per target, when its solver is done.
    fn profile(&self, _target: &Target, _profile: &profile::ResolveProfile) {}
}

/// Progress that shows nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl ResolveProgress for NoProgress {}

/// Why a resolution failed.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{location}: `{text}`: {reason}")]
    NeedsBuild {
        location: Location,
        text: String,
        reason: String,
    },
    #[error("{location}: `{text}`: {message}")]
    DirectUrl {
        location: Location,
        text: String,
        message: String,
        help: String,
    },
    #[error("looking up `{name}`: {source}")]
    Index {
        name: String,
        #[source]
        source: Arc<IndexError>,
    },
    #[error("reading the METADATA of {name} {version} ({url}): {source}")]
    Metadata {
        name: String,
        version: String,
        url: String,
        #[source]
        source: Arc<IndexError>,
    },
    /// The requirements conflict; `message` explains it (first lines plain language, then
    /// PubGrub's derivation); `help` says what to change, one piece of advice each.
    #[error("{message}")]
    NoSolution {
        target: String,
        message: String,
        help: Vec<String>,
    },
    /// The pins cannot follow the backend: its PyTorch index is not defined.
    #[error(transparent)]
    BackendIndex(#[from] backend::BackendIndexError),
    /// A page or METADATA was read but could not be kept in the cache.
    #[error("writing the index cache: {0}")]
    Cache(#[source] Arc<IndexError>),
    #[error("the resolver stopped unexpectedly: {0}")]
    Internal(String),
}

impl ResolveError {
    /// What the user can do about it.
    pub fn help(&self) -> Option<String> {
        match self {
            ResolveError::NeedsBuild { .. } => Some("require the project by name from an index (its wheels, or its sdist built with a base), point at a wheel with `name @ https://.../name-version-tags.whl`, or at a source comfypak builds before resolving (`name @ URL-of-an-sdist#sha256=HEX`, `name @ git+URL@REF`, `name @ file:///folder`) with a base (`[base]` in stack.toml or --base)".to_string()),
            ResolveError::DirectUrl { help, .. } => Some(help.clone()),
            ResolveError::NoSolution { help, .. } if !help.is_empty() => Some(help.join("\n")),
            ResolveError::BackendIndex(e) => e.help(),
            ResolveError::Internal(..) => Some("this is a bug in comfypak; please report it with the stack".to_string()),
            _ => None,
        }
    }
}

/// Resolves every layer of `stack` together for `target`.
pub async fn resolve_target(
    stack: &Stack,
    target: &Target,
    client: &IndexClient,
    options: &ResolveOptions,
    progress: &dyn ResolveProgress,
) -> Result<Resolution, ResolveError> {
    let outcome = resolve_counted(stack, target, client, options, progress).await?;
    Ok(outcome.0)
}

/// [`resolve_target`], also returning how many METADATA reads were started (cache hits
/// included): for benchmarks and tests.
pub async fn resolve_counted(
    stack: &Stack,
    target: &Target,
    client: &IndexClient,
    options: &ResolveOptions,
    progress: &dyn ResolveProgress,
) -> Result<(Resolution, usize), ResolveError> {
    let env = target.markers();
    let python = Version::new([
        u64::from(target.python.major),
        u64::from(target.python.minor),
        0,
    ]);
    let prerelease = options.prerelease
        || stack
            .layers
            .iter()
            .flat_map(|l| &l.paks)
            .any(|p| p.options.pre);
    let gathered = gather(stack, &env, options, prerelease, &python)?;
    let backend = options.torch_backend;
    let indexes = indexes_for_backend(&stack.indexes, backend)?;
    for warning in family_pin_warnings(&indexes, backend) {
        progress.warning(&warning);
    }
    let tags = target.tags();
    let mut format_control = formats::FormatControl::default();
    format_control.apply(&stack.build.formats);
    for pak in stack.layers.iter().flat_map(|l| &l.paks) {
        for selector in &pak.options.no_binary {
            format_control.no_binary(&selector.value);
        }
        for selector in &pak.options.only_binary {
            format_control.only_binary(&selector.value);
        }
    }
    format_control.apply(&options.formats);
    // Pages and METADATA go on to the solver while the disk keeps them; flushed below.
    let client = &client.write_behind();

    let handle = tokio::runtime::Handle::current();
    let (events_tx, mut events_rx) = tokio::sync::mpsc::unbounded_channel();
    let fetcher = Arc::new(Fetcher::new(
        FetcherSettings {
            client: client.clone(),
            indexes,
            candidates: CandidateContext {
                tags: tags.clone(),
                python: python.clone(),
                backend,
                couplings: stack.couplings.clone(),
                hashes: gathered.hashes,
                gpus: stack.target.gpus.clone(),
                formats: format_control,
                sdists: options.sdists.is_some(),
            },
            sdists: options.sdists.clone(),
            target: target.clone(),
            direct: gathered.direct,
            env: env.clone(),
            preferences: gathered.inputs.preferences.clone(),
            bounds: bounds(&gathered.inputs),
            prerelease,
        },
        handle.clone(),
        events_tx,
    ));
    let inputs = Arc::new(gathered.inputs);
    for (package, range) in &inputs.root_deps {
        if let Pkg::Name(name) = package {
            let extras: Vec<ExtraName> = inputs
                .root_deps
                .iter()
                .filter_map(|(p, _)| match p {
                    Pkg::Extra(n, e) if n == name => Some(e.clone()),
                    _ => None,
                })
                .collect();
            fetcher.discover(name, Some(range.clone()), extras);
        }
    }

    let provider = Provider::new(Arc::clone(&fetcher), Arc::clone(&inputs), handle.clone());
    let solver = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let result = pubgrub::resolve(&provider, Pkg::Root, provider::root_version());
        (result, provider, started.elapsed())
    });
    tokio::pin!(solver);
    let joined = loop {
        tokio::select! {
            joined = &mut solver => break joined,
            Some(event) = events_rx.recv() => report(progress, event),
        }
    };
    fetcher.stop();
    while let Ok(event) = events_rx.try_recv() {
        report(progress, event);
    }
    let (result, provider, solver_time) =
        joined.map_err(|e| ResolveError::Internal(e.to_string()))?;
    progress.profile(target, &fetcher.profile(solver_time));
    let reads = fetcher.metadata_reads();
    let outcome = match result {
        Ok(solution) => {
            let solution: Vec<(Pkg, Version)> = solution.into_iter().collect();
            let resolution = assemble(
                target,
                backend,
                &fetcher,
                &inputs,
                &env,
                &gathered.layer_roots,
                solution,
            )
            .await?;
            Ok((resolution, reads))
        }
        Err(PubGrubError::NoSolution(tree)) => Err(explain_failure(
            &tree,
            provider.into_record(),
            &fetcher,
            &inputs,
            &FailureContext {
                stack,
                target,
                backend,
                tags: &tags,
                prerelease,
                handle: &handle,
            },
        )
        .await),
        Err(PubGrubError::ErrorChoosingVersion { source, .. })
        | Err(PubGrubError::ErrorRetrievingDependencies { source, .. })
        | Err(PubGrubError::ErrorInShouldCancel(source)) => Err(source),
    };
    let flushed = client.flush().await;
    let outcome = outcome?;
    flushed.map_err(|e| ResolveError::Cache(Arc::new(e)))?;
    Ok(outcome)
}

/// What [`explain_failure`] needs besides the solver's tree and record.
struct FailureContext<'a> {
    stack: &'a Stack,
    target: &'a Target,
    backend: Backend,
    tags: &'a crate::target::CompatibleTags,
    prerelease: bool,
    handle: &'a tokio::runtime::Handle,
}

/// The error of a resolution with no solution: the conflict in plain words (`explain`), and,
/// when ABI-coupled packages take part, first the account of their builds
/// ([`explain_builds`]); with what to do.
async fn explain_failure(
    tree: &explain::Tree,
    record: provider::SolveRecord,
    fetcher: &Arc<Fetcher>,
    inputs: &Arc<SolveInputs>,
    context: &FailureContext<'_>,
) -> ResolveError {
    let FailureContext {
        stack,
        target,
        backend,
        tags,
        prerelease,
        handle,
    } = *context;
    let mut collapsed = tree.clone();
    collapsed.collapse_no_versions();
    let base_dir = stack.manifest.parent().unwrap_or(Path::new(""));
    let pages = |name: &PackageName| fetcher.ready_page(name);
    let (mut message, mut help) = explain::explain(
        tree,
        &collapsed,
        &explain::ExplainContext {
            target,
            base_dir,
            inputs,
            record: &record,
            pages: &pages,
            prerelease,
        },
    );
    let coupled = explain::coupled_packages(tree, &inputs.torch, &pages);
    if !coupled.is_empty() {
        let builds = explain_builds(
            fetcher,
            inputs,
            handle,
            &coupled,
            backend,
            tags,
            &stack.couplings,
        )
        .await;
        if let Some((torch, coupled, builds, build_help)) = builds {
            help.splice(0..0, build_help);
            let names: Vec<String> = coupled.iter().map(ToString::to_string).collect();
            message = format!(
                "cannot resolve the stack for {target}: no build of {} fits torch {torch} (what the rest of the stack resolves to) on backend {backend}\n{}\n\n{message}",
                names.join(", "),
                builds.join("\n")
            );
        }
    }
    ResolveError::NoSolution {
        target: target.to_string(),
        message,
        help,
    }
}

/// The ranges the pak files' requirements and constraints put on each package: whatever
/// else asks for it, a chosen version lies in them.
fn bounds(inputs: &SolveInputs) -> BTreeMap<PackageName, Ranges<Version>> {
    let mut bounds: BTreeMap<PackageName, Ranges<Version>> = BTreeMap::new();
    for (package, range) in &inputs.root_deps {
        if let Pkg::Name(name) = package {
            let entry = bounds.entry(name.clone()).or_insert_with(Ranges::full);
            *entry = entry.intersection(range);
        }
    }
    for (name, (range, _)) in &inputs.constraints {
        let entry = bounds.entry(name.clone()).or_insert_with(Ranges::full);
        *entry = entry.intersection(range);
    }
    bounds
}

fn report(progress: &dyn ResolveProgress, event: Event) {
    match event {
        Event::Discovered(name) => progress.discovered(&name),
        Event::MetadataFetched(name) => progress.metadata_fetched(&name),
        Event::Warning(message) => progress.warning(&message),
    }
}

/// When a resolution fails and ABI-coupled packages take part in the conflict: resolves the
/// stack again without them to learn the torch everything else settles on, and if that
/// works, returns it with the account of each coupled package's newest eligible version:
/// every build as the resolver classifies it for that torch (`candidates::classify_builds`),
/// which part fails for each, and what to do (`cuda::explain_no_build`). None when the
/// stack fails without them too (then the coupling is not the cause).
async fn explain_builds(
    fetcher: &Arc<Fetcher>,
    inputs: &Arc<SolveInputs>,
    handle: &tokio::runtime::Handle,
    coupled: &BTreeSet<PackageName>,
    backend: Backend,
    tags: &crate::target::CompatibleTags,
    couplings: &BTreeMap<PackageName, Coupling>,
) -> Option<(Version, BTreeSet<PackageName>, Vec<String>, Vec<String>)> {
    // The solver stops at the first conflict: when several coupled packages have no build,
    // solving without the first one fails on the next. Each round leaves out the coupled
    // packages found so far, until the rest resolves (bounded: each round adds one).
    const ROUNDS: usize = 8;
    let mut coupled = coupled.clone();
    let mut torch = None;
    for _ in 0..ROUNDS {
        let mut without = SolveInputs::clone(inputs);
        without.skip = coupled.clone();
        without
            .root_deps
            .retain(|(package, _)| package.base().is_none_or(|name| !coupled.contains(name)));
        let provider = Provider::new(Arc::clone(fetcher), Arc::new(without), handle.clone());
        let outcome = tokio::task::spawn_blocking(move || {
            pubgrub::resolve(&provider, Pkg::Root, provider::root_version()).map_err(Box::new)
        })
        .await
        .ok()?;
        match outcome {
            Ok(solved) => {
                torch = solved.get(&Pkg::Name(inputs.torch.clone())).cloned();
                break;
            }
            Err(error) => {
                let PubGrubError::NoSolution(tree) = *error else {
                    return None;
                };
                let pages = |name: &PackageName| fetcher.ready_page(name);
                let more = explain::coupled_packages(&tree, &inputs.torch, &pages);
                let before = coupled.len();
                coupled.extend(more);
                if coupled.len() == before {
                    // Fails without every coupled package too: the coupling is not the cause.
                    return None;
                }
            }
        }
    }
    let torch = torch?;
    let mut context = AbiContext::new(torch.clone(), backend);
    if let Some(abi) = torch_build_abi(fetcher, &inputs.torch, &torch).await {
        context.torch_cxx11abi = abi;
    }
    let mut messages = Vec::new();
    let mut help: Vec<String> = Vec::new();
    for name in &coupled {
        let Ok(page) = fetcher.page(name).await else {
            continue;
        };
        let range = inputs
            .root_deps
            .iter()
            .find(|(package, _)| package == &Pkg::Name(name.clone()))
            .map(|(_, range)| range.clone());
        let Some(public) = newest_public(&page, range.as_ref()) else {
            continue;
        };
        // The resolver's own classification of each build, with the torch the rest settles on.
        let builds = candidates::classify_builds(
            &page,
            &public,
            backend,
            &context.torch,
            context.torch_cxx11abi,
            tags,
        );
        let explained = explain_no_build(
            name.as_ref(),
            &public.to_string(),
            builds,
            &context,
            couplings.contains_key(name),
        );
        if let Some(no_build) = explained {
            messages.push(no_build.to_string());
            for line in &no_build.help {
                if !help.contains(line) {
                    help.push(line.clone());
                }
            }
        }
    }
    (!messages.is_empty()).then_some((torch, coupled, messages, help))
}

/// Whether the torch build `version` (its chosen wheel on its page) uses the C++11 ABI;
/// None when its page or version cannot be read.
async fn torch_build_abi(
    fetcher: &Arc<Fetcher>,
    torch_name: &PackageName,
    version: &Version,
) -> Option<bool> {
    let page = fetcher.page(torch_name).await.ok()?;
    page.get(version)
        .map(candidates::VersionFiles::torch_cxx11_abi)
}

/// The newest public version of a project with a build in `range` (any range when None).
fn newest_public(page: &ProjectCandidates, range: Option<&Ranges<Version>>) -> Option<Version> {
    page.versions
        .iter()
        .filter(|v| range.is_none_or(|r| r.contains(&v.version)))
        .map(|v| v.version.clone().without_local())
        .max()
}

/// What the chosen build of `name` is tied to and why it fits; an internal error when it
/// does not (the solver's requirements on torch and the checks before solving prevent that).
fn coupled_build(
    name: &PackageName,
    files: &candidates::VersionFiles,
    torch: Option<&Version>,
    torch_abi: bool,
    backend: Backend,
) -> Result<Option<CoupledBuild>, ResolveError> {
    let Some(coupling) = &files.coupling else {
        return Ok(None);
    };
    if torch.is_none() && coupling.ties_torch() {
        return Err(ResolveError::Internal(format!(
            "{name} {} is built for {} but no torch was resolved",
            files.version, coupling.coupling
        )));
    }
    // The same classification the explanation of "no build fits" uses.
    let misfits =
        candidates::coupling_misfits(coupling, backend, torch.map(|torch| (torch, torch_abi)));
    if !misfits.is_empty() {
        return Err(ResolveError::Internal(format!(
            "{name} {} was chosen but does not fit: {}",
            files.version,
            misfits.join("; ")
        )));
    }
    let fits = match (torch, coupling.ties_torch()) {
        (Some(torch), true) => format!("resolved torch {torch} on backend {backend}"),
        _ => match backend.cuda() {
            Some(cuda) => format!("backend {backend} ships CUDA {cuda}"),
            None => format!("backend {backend}"),
        },
    };
    Ok(Some(CoupledBuild {
        coupling: coupling.coupling,
        source: coupling.source,
        label: coupling.label.clone(),
        reason: format!("{}; {fits}", coupling.describe()),
    }))
}

/// The inputs of a solve, from the stack's pak lines.
struct Gathered {
    inputs: SolveInputs,
    hashes: BTreeMap<PackageName, BTreeSet<String>>,
    direct: BTreeMap<PackageName, DirectWheel>,
    layer_roots: Vec<(String, Vec<PackageName>)>,
}

fn gather(
    stack: &Stack,
    env: &pep508_rs::MarkerEnvironment,
    options: &ResolveOptions,
    prerelease: bool,
    python: &Version,
) -> Result<Gathered, ResolveError> {
    let (requirements, constraint_lines) = root_requirements(stack);
    let mut constraints: BTreeMap<PackageName, (Ranges<Version>, Vec<RootSource>)> =
        BTreeMap::new();
    let mut exact_pins: BTreeMap<PackageName, Vec<pep440_rs::VersionSpecifiers>> = BTreeMap::new();
    let mut explicit_prerelease = BTreeSet::new();
    for root in &constraint_lines {
        let PakRequirement::Named(requirement) = &root.line.requirement else {
            return Err(url_constraint(&root.line));
        };
        if !requirement.marker.evaluate(env, &[]) {
            continue;
        }
        let range = match &requirement.version_or_url {
            None => Ranges::full(),
            Some(VersionOrUrl::VersionSpecifier(specifiers)) => range_of(
                &requirement.name,
                specifiers,
                &mut exact_pins,
                &mut explicit_prerelease,
            ),
            Some(VersionOrUrl::Url(_)) => return Err(url_constraint(&root.line)),
        };
        let entry = constraints
            .entry(requirement.name.clone())
            .or_insert_with(|| (Ranges::full(), Vec::new()));
        entry.0 = entry.0.intersection(&range);
        entry.1.push(source_of(root));
    }

    let mut order: Vec<PackageName> = Vec::new();
    let mut ranges: BTreeMap<PackageName, Ranges<Version>> = BTreeMap::new();
    let mut extras: BTreeMap<PackageName, BTreeSet<ExtraName>> = BTreeMap::new();
    let mut root_sources: BTreeMap<PackageName, Vec<RootSource>> = BTreeMap::new();
    let mut hashes: BTreeMap<PackageName, BTreeSet<String>> = BTreeMap::new();
    let mut direct: BTreeMap<PackageName, (DirectWheel, Location, String)> = BTreeMap::new();
    let mut layer_roots: Vec<(String, Vec<PackageName>)> = stack
        .layers
        .iter()
        .map(|l| (l.name.clone(), Vec::new()))
        .collect();
    for root in &requirements {
        let line = &root.line;
        let requirement = match &line.requirement {
            PakRequirement::Named(requirement) => requirement,
            PakRequirement::UnnamedUrl { .. } => {
                return Err(ResolveError::NeedsBuild {
                    location: line.location.clone(),
                    text: line.text.clone(),
                    reason: line.requirement.needs_build().unwrap_or_else(|| {
                        "a URL without a project name (write it as `name @ URL`)".to_string()
                    }),
                });
            }
        };
        if !requirement.marker.evaluate(env, &[]) {
            continue;
        }
        if let Some(reason) = line.requirement.needs_build() {
            return Err(ResolveError::NeedsBuild {
                location: line.location.clone(),
                text: line.text.clone(),
                reason,
            });
        }
        let name = requirement.name.clone();
        let range = match &requirement.version_or_url {
            None => Ranges::full(),
            Some(VersionOrUrl::VersionSpecifier(specifiers)) => {
                range_of(&name, specifiers, &mut exact_pins, &mut explicit_prerelease)
            }
            Some(VersionOrUrl::Url(url)) => {
                let wheel = direct_wheel(line, &name, url.given().unwrap_or(url.as_str()))?;
                let version = match WheelFilename::from_str(&wheel.file.filename) {
                    Ok(parsed) => parsed.version,
                    Err(e) => return Err(direct_error(line, e.to_string())),
                };
                if let Some((other, other_location, _)) = direct.get(&name) {
                    if other.file.url != wheel.file.url {
                        return Err(ResolveError::DirectUrl {
                            location: line.location.clone(),
                            text: line.text.clone(),
                            message: format!(
                                "{name} is also required from another URL at {other_location}"
                            ),
                            help: "give one URL per project across all pak files".to_string(),
                        });
                    }
                }
                direct.insert(
                    name.clone(),
                    (wheel, line.location.clone(), line.text.clone()),
                );
                Ranges::singleton(version)
            }
        };
        for hash in &line.hashes {
            if let Some(hex) = hash.strip_prefix("sha256:") {
                hashes
                    .entry(name.clone())
                    .or_default()
                    .insert(hex.to_ascii_lowercase());
            }
        }
        if !ranges.contains_key(&name) {
            order.push(name.clone());
        }
        let merged = ranges.entry(name.clone()).or_insert_with(Ranges::full);
        *merged = merged.intersection(&range);
        extras
            .entry(name.clone())
            .or_default()
            .extend(requirement.extras.iter().cloned());
        root_sources
            .entry(name.clone())
            .or_default()
            .push(source_of(root));
        if let Some((_, names)) = layer_roots.iter_mut().find(|(l, _)| l == &root.layer) {
            if !names.contains(&name) {
                names.push(name.clone());
            }
        }
    }

    let mut root_deps = Vec::new();
    for name in &order {
        let mut range = ranges.get(name).cloned().unwrap_or_else(Ranges::full);
        if let Some((constraint, _)) = constraints.get(name) {
            range = range.intersection(constraint);
        }
        root_deps.push((Pkg::Name(name.clone()), range.clone()));
        for extra in extras.get(name).into_iter().flatten() {
            root_deps.push((Pkg::Extra(name.clone(), extra.clone()), range.clone()));
        }
    }
    let preferences = options
        .preferences
        .iter()
        .filter(|(name, _)| !options.upgrade.covers(name))
        .map(|(name, version)| (name.clone(), version.clone()))
        .collect();
    Ok(Gathered {
        inputs: SolveInputs {
            root_deps,
            root_sources,
            constraints,
            exact_pins,
            explicit_prerelease,
            direct: direct.keys().cloned().collect(),
            preferences,
            prerelease,
            env: env.clone(),
            python: python.clone(),
            torch: PackageName::from_str("torch")
                .map_err(|e| ResolveError::Internal(format!("the name `torch`: {e}")))?,
            skip: BTreeSet::new(),
        },
        hashes,
        direct: direct
            .into_iter()
            .map(|(name, (wheel, _, _))| (name, wheel))
            .collect(),
        layer_roots,
    })
}

/// The versions `specifiers` allow for `name`, noting an exact pin (`==X`, kept for
/// explanations) and a pre-release named in it (which allows pre-releases of `name`).
fn range_of(
    name: &PackageName,
    specifiers: &pep440_rs::VersionSpecifiers,
    exact_pins: &mut BTreeMap<PackageName, Vec<pep440_rs::VersionSpecifiers>>,
    explicit_prerelease: &mut BTreeSet<PackageName>,
) -> Ranges<Version> {
    if is_exact_pin(specifiers) {
        exact_pins
            .entry(name.clone())
            .or_default()
            .push(specifiers.clone());
    }
    if names_prerelease(specifiers) {
        explicit_prerelease.insert(name.clone());
    }
    specifiers_to_ranges(specifiers)
}

fn source_of(root: &RootRequirement) -> RootSource {
    // The requirement as written, without its `--hash` options.
    let text = &root.line.text;
    let requirement = match text.find("--hash") {
        Some(at) => &text[..at],
        None => text,
    };
    RootSource {
        location: root.line.location.clone(),
        text: requirement.trim().to_string(),
    }
}

fn url_constraint(line: &PakLine) -> ResolveError {
    ResolveError::DirectUrl {
        location: line.location.clone(),
        text: line.text.clone(),
        message: "a constraint cannot be a URL".to_string(),
        help: "constraints only restrict versions: write `name @ URL` as a requirement in a pak file instead".to_string(),
    }
}

fn direct_error(line: &PakLine, message: String) -> ResolveError {
    ResolveError::DirectUrl {
        location: line.location.clone(),
        text: line.text.clone(),
        message,
        help: "point at a wheel file named `name-version(-build)?-python-abi-platform.whl`"
            .to_string(),
    }
}

/// The synthetic index file of a `name @ URL` wheel requirement; `#sha256=` becomes its hash.
fn direct_wheel(
    line: &PakLine,
    name: &PackageName,
    text: &str,
) -> Result<DirectWheel, ResolveError> {
    let mut url =
        Url::parse(text).map_err(|e| direct_error(line, format!("not a valid URL: {e}")))?;
    let mut sha256 = None;
    if let Some(fragment) = url.fragment() {
        for part in fragment.split('&') {
            if let Some(hex) = part.strip_prefix("sha256=") {
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(direct_error(
                        line,
                        format!("`#sha256={hex}` is not 64 hex digits"),
                    ));
                }
                sha256 = Some(hex.to_ascii_lowercase());
            }
        }
    }
    url.set_fragment(None);
    let segment = url
        .path_segments()
        .and_then(|mut segments| segments.next_back())
        .unwrap_or_default()
        .to_string();
    let filename = crate::http::percent_decode(&segment);
    let parsed =
        WheelFilename::from_str(&filename).map_err(|e| direct_error(line, e.to_string()))?;
    if &parsed.name != name {
        return Err(direct_error(
            line,
            format!(
                "the wheel `{filename}` is of project `{}`, not `{name}`",
                parsed.name
            ),
        ));
    }
    Ok(DirectWheel {
        file: DistFile {
            filename,
            url,
            hashes: Hashes {
                sha256,
                ..Hashes::default()
            },
            requires_python: None,
            yanked: Yanked::No,
            core_metadata: CoreMetadataRef::Absent,
            size: None,
            upload_time: None,
        },
    })
}

async fn assemble(
    target: &Target,
    backend: Backend,
    fetcher: &Arc<Fetcher>,
    inputs: &SolveInputs,
    env: &pep508_rs::MarkerEnvironment,
    layer_roots: &[(String, Vec<PackageName>)],
    solution: Vec<(Pkg, Version)>,
) -> Result<Resolution, ResolveError> {
    let mut extras: BTreeMap<PackageName, BTreeSet<ExtraName>> = BTreeMap::new();
    for (package, _) in &solution {
        if let Pkg::Extra(name, extra) = package {
            extras
                .entry(name.clone())
                .or_default()
                .insert(extra.clone());
        }
    }
    let torch = solution
        .iter()
        .find_map(|(package, version)| match package {
            Pkg::Name(name) if name == &inputs.torch => Some(version.clone()),
            _ => None,
        });
    // The C++ ABI of the torch build resolved, from its wheel (not its version number).
    let torch_abi = match &torch {
        Some(torch) => torch_build_abi(fetcher, &inputs.torch, torch)
            .await
            .unwrap_or_else(|| torch_uses_cxx11_abi(torch)),
        None => true,
    };
    let mut packages = BTreeMap::new();
    for (package, version) in &solution {
        let Pkg::Name(name) = package else {
            continue;
        };
        let page = fetcher
            .page(name)
            .await
            .map_err(|source| ResolveError::Index {
                name: name.to_string(),
                source,
            })?;
        let files = page.get(version).ok_or_else(|| {
            ResolveError::Internal(format!(
                "{name} {version} was chosen but is not on its page"
            ))
        })?;
        let build = coupled_build(name, files, torch.as_ref(), torch_abi, backend)?;
        let wheel = files.wheel.clone().map_err(|why| {
            ResolveError::Internal(format!(
                "{name} {version} was chosen but {}",
                why.describe(files)
            ))
        })?;
        let metadata =
            fetcher
                .metadata(name, version)
                .await
                .map_err(|source| ResolveError::Metadata {
                    name: name.to_string(),
                    version: version.to_string(),
                    url: redact(&wheel.file.url),
                    source,
                })?;
        let active: Vec<ExtraName> = extras
            .get(name)
            .map(|e| e.iter().cloned().collect())
            .unwrap_or_default();
        let mut dependencies: BTreeSet<PackageName> = metadata
            .requires_dist
            .iter()
            .filter(|r| &r.name != name && r.marker.evaluate(env, &active))
            .map(|r| r.name.clone())
            .collect();
        // A torch extension needs torch at run time, whether its METADATA says so or not.
        if files.coupling.as_ref().is_some_and(|c| c.ties_torch()) && name != &inputs.torch {
            dependencies.insert(inputs.torch.clone());
        }
        packages.insert(
            name.clone(),
            ResolvedPackage {
                name: name.clone(),
                version: version.clone(),
                index: page.index.clone(),
                index_url: page.index_url.clone(),
                requires_python: metadata
                    .requires_python
                    .as_ref()
                    .map(|r| r.to_string())
                    .or_else(|| wheel.file.requires_python.clone()),
                wheel: wheel.file,
                dependencies,
                extras: active.iter().map(|e| e.to_string()).collect(),
                requested_by: inputs
                    .root_sources
                    .get(name)
                    .into_iter()
                    .flatten()
                    .map(|s| s.location.clone())
                    .collect(),
                build,
            },
        );
    }
    Ok(Resolution {
        target: target.clone(),
        backend,
        packages,
        roots: layer_roots.to_vec(),
    })
}

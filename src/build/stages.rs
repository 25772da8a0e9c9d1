//! One typed request and one function per stage: resolve, fetch, install, pack, push,
//! mirror. Each networked stage runs on the caller's [`Session`]; `pack` needs none.
//!
//! Must not: print (only [`Progress`] callbacks), or run another stage's command.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{layers_dir, BuildError, Progress, Session};
use crate::fetch::{
    cached, fetch_wheels_then, select_wheels, targets_for, CachedWheel, FetchOptions, FetchOutcome,
    SelectedWheel, WheelSource,
};
use crate::install::layout::EnvPaths;
use crate::install::link::LinkMode;
use crate::install::{install_layer, layer_files, InstallOptions, InstallReport, InstallWheel};
use crate::lock::{Lock, LockError, LockSummary};
use crate::mirror::{write_mirror, MirrorReport, MirrorWheel};
use crate::pack::push::{credentials_for, ImageReference, PushOptions, PushReport};
use crate::pack::{
    source_date_epoch_from_env, Compression, ImageSettings, OutputFormat, PackRequest, PackedImage,
    PlatformLayers,
};
use crate::resolve::backend::select_backend;
use crate::resolve::to_lock::{resolve_stack, SourceSettings, StackRequest, UpgradeRequest};
use crate::stack::Stack;
use crate::target::{Arch, Platform, PythonVersion, Target};

/// What a command does with the lock, as in cargo and uv.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LockMode {
    /// Resolve, and write the lock when it changed.
    #[default]
    Write,
    /// `--locked`: resolve, and fail when the lock is not what the inputs resolve to now.
    /// Writes nothing.
    Locked,
    /// `--frozen`: use the lock as it is (only checked against the stack's layers).
    Frozen,
}

/// Which of the lock's platforms a stage works on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PlatformChoice {
    /// Every platform.
    #[default]
    All,
    /// The first platform.
    First,
    /// An architecture (`x86_64`, `aarch64`, `amd64`, `arm64`) or a full platform tag.
    Named(String),
}

impl PlatformChoice {
    /// `all` means every platform; anything else names one.
    pub fn parse(text: &str) -> PlatformChoice {
        if text == "all" {
            PlatformChoice::All
        } else {
            PlatformChoice::Named(text.to_string())
        }
    }

    fn as_asked(&self) -> Option<&str> {
        match self {
            PlatformChoice::All => Some("all"),
            PlatformChoice::First => None,
            PlatformChoice::Named(text) => Some(text),
        }
    }
}

/// `resolve`: the stack → one lock for every target platform.
#[derive(Debug, Clone, Default)]
pub struct ResolveRequest {
    /// The stack folder (or its stack.toml).
    pub stack: PathBuf,
    /// `--no-layer`: layers of the stack left out ([`Stack::leave_out`]).
    pub no_layers: Vec<String>,
    /// The lock to write (its versions are kept where they still fit), check or read.
    pub lock: PathBuf,
    /// Overrides the stack's interpreter version.
    pub python: Option<PythonVersion>,
    /// Overrides the stack's platforms (duplicates are dropped).
    pub platforms: Vec<Platform>,
    /// Allow pre-releases for every package.
    pub prerelease: bool,
    pub upgrade: UpgradeRequest,
    pub mode: LockMode,
    /// Overrides the stack's `target.torch-backend` (`auto` reads this host).
    pub torch_backend: Option<String>,
    /// The image's bases (`--base`); empty: the stack's `[base]`. Sources build in them
    /// when neither `build_bases` nor the stack's `[build] base` is given.
    pub bases: crate::runtime::Bases,
    /// `--build-base`: the bases whose Python builds the stack's sources (sdists, folders,
    /// git, index sdists), ahead of the stack's `[build] base`.
    pub build_bases: crate::runtime::Bases,
    /// Pull a registry build base over plain HTTP (allowed only for a registry on this
    /// machine).
    pub insecure_base: bool,
    /// `--no-binary` / `--only-binary` (after the stack's and the pak files').
    pub formats: Vec<crate::pak::FormatOption>,
}

/// What `resolve` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveStatus {
    /// The lock was written (new or changed).
    Written,
    /// The lock already held what the stack resolves to; nothing written.
    Unchanged,
    /// `--locked`: the lock is up to date.
    UpToDate,
    /// `--locked`: the lock is stale; one line per finding.
    Stale(Vec<String>),
    /// `--frozen`: the lock was read, not re-resolved.
    Frozen,
}

impl ResolveStatus {
    /// The word scripts see in `--json`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ResolveStatus::Written => "written",
            ResolveStatus::Unchanged => "unchanged",
            ResolveStatus::UpToDate => "up-to-date",
            ResolveStatus::Stale(_) => "stale",
            ResolveStatus::Frozen => "frozen",
        }
    }
}

/// The outcome of `resolve`.
#[derive(Debug, Clone)]
pub struct ResolveReport {
    /// The lock file.
    pub path: PathBuf,
    pub status: ResolveStatus,
    /// The lock as written, checked (the fresh resolution) or read.
    pub lock: Lock,
    pub summary: LockSummary,
}

/// Resolves the stack (or checks or reads the lock, per [`LockMode`]).
pub fn resolve(
    session: &Session,
    request: &ResolveRequest,
    progress: &dyn Progress,
) -> Result<ResolveReport, BuildError> {
    let mut stack = Stack::load_without(&request.stack, &request.no_layers)?;
    session
        .network()
        .apply_overrides(&mut stack.indexes.definitions)?;
    for warning in stack.indexes.definitions.plain_http_warnings() {
        progress.note(&format!("warning: {warning}"));
    }

    if request.mode == LockMode::Frozen {
        let lock = Lock::read(&request.lock)?;
        let stack_layers: Vec<&str> = stack.layers.iter().map(|l| l.name.as_str()).collect();
        lock.check_stack_layers(&request.lock, &stack_layers)?;
        let summary = LockSummary::of(&lock)?;
        return Ok(ResolveReport {
            path: request.lock.clone(),
            status: ResolveStatus::Frozen,
            lock,
            summary,
        });
    }

    // The backend is chosen here, once; `auto` reads this host.
    let (setting, origin) = match &request.torch_backend {
        Some(flag) => (flag.clone(), "--torch-backend".to_string()),
        None => (
            stack.target.torch_backend.clone(),
            format!("{}: target.torch-backend", stack.manifest.display()),
        ),
    };
    let selection =
        select_backend(&setting, &stack.target).map_err(|source| BuildError::Backend {
            origin: origin.clone(),
            source,
        })?;
    if setting.trim().eq_ignore_ascii_case("auto") {
        progress.note(&format!("{} ({origin})", selection.why));
    }
    let backend = selection.backend;

    let targets = resolve_targets(request, &stack)?;
    let existing = match Lock::read(&request.lock) {
        Ok(lock) => Some(lock),
        Err(LockError::Missing { .. }) if request.mode == LockMode::Write => None,
        Err(LockError::Missing { path }) => return Err(BuildError::NothingToCheck { path }),
        Err(e) => return Err(e.into()),
    };

    // Source requirements (URLs, folders, git) become wheels first; index sdists are the
    // resolver's. They build in the build base: `--build-base`, else `[build] base`, else
    // the image's base (`--base`, else `[base]`).
    let bases = super::sources::BuildBases::new(
        build_bases(request, &stack),
        request.insecure_base,
        existing
            .as_ref()
            .map(|l| l.tool.comfypak.bases.clone())
            .unwrap_or_default(),
    );
    let prebuilt = super::sources::prebuild(session, &stack, backend, &targets, &bases, progress)?;
    let client = session.index_client();
    progress.resolve_started(targets.len());
    // Index sdists are candidates where a base can build them.
    let resolving = prebuilt.as_ref().map_or(&stack, |p| &p.stack);
    let outcome = super::sources::with_sdist_metadata(
        session,
        resolving,
        backend,
        &targets,
        &bases,
        progress,
        |sdists| {
            session
                .block_on(resolve_stack(
                    resolving,
                    &client,
                    &StackRequest {
                        targets: &targets,
                        backend,
                        prerelease: request.prerelease,
                        upgrade: request.upgrade.clone(),
                        existing: existing.as_ref(),
                        sources: SourceSettings {
                            formats: request.formats.clone(),
                            sdists,
                        },
                    },
                    progress,
                ))
                .map_err(Box::new)
        },
    );
    progress.resolve_finished();
    let mut lock = outcome.map_err(|e| BuildError::from(*e))?;
    // The digests registry bases resolved to are not the resolver's: they stay as locked
    // (`build` updates them when it pulls).
    if let Some(existing) = &existing {
        lock.tool.comfypak.bases = existing.tool.comfypak.bases.clone();
    }
    if let Some(prebuilt) = &prebuilt {
        super::sources::record_sources(&mut lock, &stack, prebuilt, &request.lock);
    }
    super::sources::build_index_sdists(
        session, &mut lock, &stack, backend, &targets, &bases, progress,
    )?;
    if let Some(prebuilt) = &prebuilt {
        super::sources::rebuild_against_image(
            session, &mut lock, &stack, backend, &bases, prebuilt, progress,
        )?;
    }
    record_mismatches(&mut lock, &stack, progress);
    let summary = LockSummary::of(&lock)?;

    if request.mode == LockMode::Locked {
        let Some(existing) = existing else {
            return Err(BuildError::NothingToCheck {
                path: request.lock.clone(),
            });
        };
        let stale = crate::diff::staleness(&existing, &lock);
        let status = if stale.is_empty() {
            ResolveStatus::UpToDate
        } else {
            ResolveStatus::Stale(stale)
        };
        return Ok(ResolveReport {
            path: request.lock.clone(),
            status,
            lock,
            summary,
        });
    }

    let unchanged = existing
        .as_ref()
        .is_some_and(|old| old.to_toml_string() == lock.to_toml_string());
    if !unchanged {
        lock.write(&request.lock)?;
    }
    Ok(ResolveReport {
        path: request.lock.clone(),
        status: if unchanged {
            ResolveStatus::Unchanged
        } else {
            ResolveStatus::Written
        },
        lock,
        summary,
    })
}

/// The targets to resolve for: the stack's, or the request's interpreter and platforms.
fn resolve_targets(request: &ResolveRequest, stack: &Stack) -> Result<Vec<Target>, BuildError> {
    let python = request.python.unwrap_or(stack.target.python);
    let mut platforms: Vec<Platform> = Vec::new();
    let asked = if request.platforms.is_empty() {
        &stack.target.platforms
    } else {
        &request.platforms
    };
    for platform in asked {
        if !platforms.contains(platform) {
            platforms.push(*platform);
        }
    }
    platforms
        .into_iter()
        .map(|platform| {
            Target::try_new(python, stack.target.free_threaded, platform).map_err(|e| {
                BuildError::Request {
                    message: e.to_string(),
                }
            })
        })
        .collect()
}

/// `fetch`: the locked wheels of some layers and platforms → the cache, verified.
#[derive(Debug, Clone, Default)]
pub struct FetchRequest {
    pub lock: PathBuf,
    /// Only these layers; empty: every layer.
    pub layers: Vec<String>,
    pub platform: PlatformChoice,
}

/// What `fetch` made ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchReport {
    pub wheels: usize,
    pub bytes: u64,
    /// The platform tags fetched for.
    pub platforms: Vec<String>,
}

/// Fetches the wheels `request` selects into the session's cache.
pub fn fetch(
    session: &Session,
    request: &FetchRequest,
    progress: &dyn Progress,
) -> Result<FetchReport, BuildError> {
    let lock = Lock::read(&request.lock)?;
    fetch_lock(session, &lock, &request.lock, request, false, progress)
}

/// [`fetch`] of a lock already read; with `unpack`, each downloaded wheel is also unpacked
/// into the store while the others download (for a build that installs them next).
pub(super) fn fetch_lock(
    session: &Session,
    lock: &Lock,
    lock_path: &Path,
    request: &FetchRequest,
    unpack: bool,
    progress: &dyn Progress,
) -> Result<FetchReport, BuildError> {
    let targets = targets_for(lock, request.platform.as_asked())?;
    let layers = (!request.layers.is_empty()).then_some(request.layers.as_slice());
    let mut selected = Vec::new();
    for target in &targets {
        selected.extend(select_wheels(lock, layers, target)?);
    }
    let fetch = if unpack {
        fetch_selected_unpacking
    } else {
        fetch_selected
    };
    let cached = fetch(
        session,
        lock_path,
        &selected,
        session.network().offline,
        progress,
    )?;
    Ok(FetchReport {
        wheels: cached.len(),
        bytes: cached.iter().map(|c| c.size).sum(),
        platforms: targets.iter().map(|t| t.platform.to_string()).collect(),
    })
}

/// The folder relative `path`s of a lock are taken from.
fn lock_dir(lock_path: &Path) -> &Path {
    lock_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Fetches `selected` (deduplicated by sha256) and returns the cache entries in order.
pub(super) fn fetch_selected(
    session: &Session,
    lock_path: &Path,
    selected: &[SelectedWheel],
    offline: bool,
    progress: &dyn Progress,
) -> Result<Vec<CachedWheel>, BuildError> {
    fetch_selected_then(session, lock_path, selected, offline, progress, &|_| {})
}

/// [`fetch_selected`] for an install that follows: each wheel downloaded is unpacked into
/// the store (`install::wheel::ensure_unpacked`, every check included) as soon as it is
/// verified in the cache, on the rayon pool, while the others still download. Wheels the
/// cache already had are left to the install. An unpack error is not reported here: the
/// install unpacks that wheel again and reports it.
pub(super) fn fetch_selected_unpacking(
    session: &Session,
    lock_path: &Path,
    selected: &[SelectedWheel],
    offline: bool,
    progress: &dyn Progress,
) -> Result<Vec<CachedWheel>, BuildError> {
    use rayon::iter::{ParallelBridge, ParallelIterator};
    let cache = session.cache();
    let (queue, downloaded) = std::sync::mpsc::channel::<CachedWheel>();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            downloaded.into_iter().par_bridge().for_each(|wheel| {
                let _ = crate::install::wheel::ensure_unpacked(
                    cache,
                    &wheel.path,
                    &wheel.filename,
                    &wheel.sha256,
                    &[],
                );
            });
        });
        let ready = move |wheel: &CachedWheel| {
            if wheel.outcome != FetchOutcome::Cached {
                // The receiver lives until this sender is dropped.
                let _ = queue.send(wheel.clone());
            }
        };
        let fetched = fetch_selected_then(session, lock_path, selected, offline, progress, &ready);
        // Closes the queue: the unpacker finishes what it has, and the scope waits for it.
        drop(ready);
        fetched
    })
}

fn fetch_selected_then(
    session: &Session,
    lock_path: &Path,
    selected: &[SelectedWheel],
    offline: bool,
    progress: &dyn Progress,
    ready: &(dyn Fn(&CachedWheel) + Sync),
) -> Result<Vec<CachedWheel>, BuildError> {
    let dir = lock_dir(lock_path);
    let sources = selected
        .iter()
        .map(|s| WheelSource::from_selected(s, dir))
        .collect::<Result<Vec<_>, _>>()
        .map_err(BuildError::WheelSource)?;
    let options = FetchOptions {
        concurrency: session.network().concurrency.clamp(1, 16),
        offline,
        progress: progress.fetch_mode(),
    };
    session
        .block_on(fetch_wheels_then(
            session.http(),
            session.cache(),
            &sources,
            &options,
            ready,
        ))
        .map_err(|source| BuildError::Fetch {
            lock: lock_path.to_path_buf(),
            source,
        })
}

/// `install`: layers of one platform → `OUT/layers/<layer>`, from the cache (fetching only
/// what it lacks, unless offline).
#[derive(Debug, Clone, Default)]
pub struct InstallRequest {
    pub lock: PathBuf,
    /// The layers to install; empty: every layer of the lock.
    pub layers: Vec<String>,
    pub out: PathBuf,
    /// An architecture or platform tag; None: the lock's first platform.
    pub platform: Option<String>,
    pub link_mode: LinkMode,
    pub allow_overwrite: bool,
    /// Compile bytecode with the Python of this base (an OCI layout or root folder; registry
    /// bases are pulled by the caller), in the target runtime, as `build` does.
    pub compile_base: Option<PathBuf>,
    /// How long one layer's compile may take; None:
    /// [`crate::runtime::compile::DEFAULT_COMPILE_TIMEOUT`].
    pub compile_timeout: Option<std::time::Duration>,
    /// Use only the cache.
    pub offline: bool,
}

/// Which wheels an install fetches and installs, and which it only checks conflicts with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerPlan {
    /// The layers to install, most stable first.
    pub chosen: Vec<String>,
    /// Their wheels, in lock order.
    pub install: Vec<SelectedWheel>,
    /// The other layers' wheels: conflicts with them are checked when the cache has them.
    pub others: Vec<SelectedWheel>,
}

/// Plans the install of `layers` (empty: all) of `lock` for `target`: the lock's layer
/// order, plus any layer only packages name, at the end.
pub fn plan_layers(
    lock: &Lock,
    target: &Target,
    layers: &[String],
) -> Result<LayerPlan, BuildError> {
    let everything = select_wheels(lock, None, target)?;
    let mut order: Vec<String> = lock.layer_names().iter().map(|s| s.to_string()).collect();
    for wheel in &everything {
        if !order.contains(&wheel.layer) {
            order.push(wheel.layer.clone());
        }
    }
    let chosen: Vec<String> = if layers.is_empty() {
        order
    } else {
        crate::fetch::select::check_layers(lock, layers)?;
        order.into_iter().filter(|l| layers.contains(l)).collect()
    };
    let (install, others) = everything
        .into_iter()
        .partition(|w| chosen.contains(&w.layer));
    Ok(LayerPlan {
        chosen,
        install,
        others,
    })
}

/// What `install` needs of a selected wheel (from the lock) and its cache entry.
pub fn install_wheel(selected: &SelectedWheel, cached: &CachedWheel) -> InstallWheel {
    InstallWheel {
        package: selected.package.clone(),
        layer: selected.layer.clone(),
        requested: selected.requested,
        direct_url: selected.direct_url.clone(),
        filename: cached.filename.clone(),
        sha256: cached.sha256.clone(),
        path: cached.path.clone(),
        accepted_record: selected.accepted_record.clone(),
    }
}

/// Installs the request's layers for one platform; one report per layer, in order.
pub fn install(
    session: &Session,
    request: &InstallRequest,
    progress: &dyn Progress,
) -> Result<Vec<InstallReport>, BuildError> {
    let lock = Lock::read(&request.lock)?;
    install_lock(session, &lock, request, progress)
}

/// [`install`] of a lock already read.
pub(super) fn install_lock(
    session: &Session,
    lock: &Lock,
    request: &InstallRequest,
    progress: &dyn Progress,
) -> Result<Vec<InstallReport>, BuildError> {
    if request.platform.as_deref() == Some("all") {
        return Err(BuildError::Request {
            message: "install builds one platform at a time: pass --platform x86_64 or --platform aarch64".to_string(),
        });
    }
    let targets = targets_for(lock, request.platform.as_deref())?;
    let Some(target) = targets.first() else {
        return Err(BuildError::Request {
            message: "the lock names no platform".to_string(),
        });
    };
    let env = EnvPaths {
        venv: lock.tool.comfypak.target.venv.to_string(),
        python: target.python,
    };
    let plan = plan_layers(lock, target, &request.layers)?;
    let fetched = fetch_selected_unpacking(
        session,
        &request.lock,
        &plan.install,
        request.offline,
        progress,
    )?;
    let cache = session.cache();

    let mut by_layer: BTreeMap<String, Vec<InstallWheel>> = BTreeMap::new();
    for (selected, cached_wheel) in plan.install.iter().zip(&fetched) {
        by_layer
            .entry(selected.layer.clone())
            .or_default()
            .push(install_wheel(selected, cached_wheel));
    }
    // Other layers: whatever of them the cache holds.
    let dir = lock_dir(&request.lock);
    let mut skipped: BTreeMap<String, usize> = BTreeMap::new();
    for selected in &plan.others {
        let source = WheelSource::from_selected(selected, dir).map_err(BuildError::WheelSource)?;
        match cached(cache, &source) {
            Some(hit) => by_layer
                .entry(selected.layer.clone())
                .or_default()
                .push(install_wheel(selected, &hit)),
            None => *skipped.entry(selected.layer.clone()).or_default() += 1,
        }
    }
    // What each layer installs, for the cross-layer conflict check; a layer installed alone
    // is checked against the others only, so its own list is not needed.
    let mut others = Vec::new();
    for (layer, wheels) in &by_layer {
        if plan.chosen.len() == 1 && plan.chosen[0] == *layer {
            continue;
        }
        others.push(layer_files(cache, layer, wheels, &env)?);
    }
    for (layer, count) in &skipped {
        progress.note(&format!(
            "note: {count} wheel{} of layer {layer} not in the cache: conflicts with them are not checked (run `comfypak fetch --all` first to check them)",
            if *count == 1 { "" } else { "s" }
        ));
    }

    let options = InstallOptions {
        link_mode: request.link_mode,
        allow_overwrite: request.allow_overwrite,
    };
    // A tree installed here is no longer the one `build` marked for its layer-cache key: the
    // marker goes first, so a later build installs that layer again rather than trusting it.
    super::layer_cache::forget_trees(&request.out, &plan.chosen);
    let mut reports = Vec::new();
    for layer in &plan.chosen {
        let started = Instant::now();
        let wheels = by_layer.get(layer).cloned().unwrap_or_default();
        let report = install_layer(cache, &request.out, &env, layer, &wheels, &others, &options)?;
        crate::test_hook::count(crate::test_hook::Count::LayersInstalled);
        progress.layer_installed(&target.platform, &report, started.elapsed().as_secs_f64());
        reports.push(report);
    }
    if let Some(base) = &request.compile_base {
        // The one bytecode path: the base's own interpreter in the target runtime.
        use crate::runtime::compile::{compile_layer, DEFAULT_COMPILE_TIMEOUT};
        use crate::runtime::{Base, Runtime, RuntimeOptions};
        let runtime = Runtime::for_platform(
            &Base::from_path(base)?,
            target,
            &env.venv,
            &RuntimeOptions {
                cache_dir: session.cache().root().to_path_buf(),
                timeout: DEFAULT_COMPILE_TIMEOUT,
            },
        )?
        .with_timeout(request.compile_timeout.unwrap_or(DEFAULT_COMPILE_TIMEOUT));
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        for (layer, report) in plan.chosen.iter().zip(&mut reports) {
            let compiled =
                compile_layer(&runtime, &request.out.join("layers").join(layer), workers)?;
            report.compiled = compiled.compiled;
        }
    }
    Ok(reports)
}

/// `pack`: installed layer folders → an OCI image layout or a docker archive.
#[derive(Debug, Clone)]
pub struct PackJob {
    /// The stack folder: only for `image.toml` (its layers are checked against the lock's).
    pub stack: PathBuf,
    /// `--no-layer`: layers of the stack the lock was resolved without.
    pub no_layers: Vec<String>,
    /// The lock the layers were installed from: the layer order, venv, platforms and image
    /// name come from it.
    pub lock: PathBuf,
    /// The folder `install` wrote to (`OUT/layers`, or `OUT/<arch>/layers`).
    pub out: PathBuf,
    /// Explicit layer folders per architecture, instead of the `OUT` convention.
    pub layers: Vec<(Arch, PathBuf)>,
    pub platform: PlatformChoice,
    /// Where to write; None: `OUT/image`, or `OUT/image.tar` for a docker archive.
    pub output: Option<PathBuf>,
    pub format: OutputFormat,
    pub compression: Compression,
    pub base: Option<PathBuf>,
    /// An OCI layout for one architecture's platform, ahead of `base`.
    pub base_by_arch: Vec<(Arch, PathBuf)>,
    /// An earlier image layout to compare layers with.
    pub previous: Option<PathBuf>,
    pub tag: String,
    /// The image name in a docker archive; None: the lock's stack name, lowercase.
    pub name: Option<String>,
    /// Overrides the stack's `[pack] split-threshold` (`Some(None)`: no split); `None`: the
    /// stack's, or [`crate::pack::split::DEFAULT_SPLIT_THRESHOLD`].
    pub split_threshold: Option<Option<u64>>,
    /// The layer cache and what `build` found in it before installing
    /// ([`crate::pack::layer_cache`]); None: build every layer.
    pub layer_cache: Option<crate::pack::layer_cache::PackCache>,
}

/// An architecture (`x86_64`, `arm64`, ...) or a platform tag's architecture.
pub fn parse_arch(text: &str) -> Result<Arch, BuildError> {
    if let Ok(arch) = text.parse::<Arch>() {
        return Ok(arch);
    }
    text.parse::<Platform>()
        .map(|p| p.arch)
        .map_err(|e| BuildError::Request {
            message: format!("`{text}` is not an architecture or platform tag: {e}"),
        })
}

/// The bases sources are built in: `--build-base`, else the stack's `[build] base`, else the
/// image's (`--base`, else `[base]`).
fn build_bases(request: &ResolveRequest, stack: &Stack) -> crate::runtime::Bases {
    if !request.build_bases.is_empty() {
        return request.build_bases.clone();
    }
    if stack.build.base.is_some() || !stack.build.base_by_arch.is_empty() {
        return crate::runtime::Bases {
            all: stack.build.base.clone(),
            by_arch: stack.build.base_by_arch.clone(),
        };
    }
    let mut bases = request.bases.clone();
    if bases.is_empty() {
        bases.all = stack.base.clone();
    }
    bases
}

/// Copies the stack's `[[install.record-mismatch]]` entries onto the locked packages whose
/// wheels they name (the lock is what `install` reads). An entry for a locked package that
/// names none of its wheels (another version was locked) is said: it no longer does anything.
fn record_mismatches(lock: &mut Lock, stack: &Stack, progress: &dyn Progress) {
    let mut used = vec![false; stack.record_mismatch.len()];
    for package in &mut lock.packages {
        let names: Vec<&str> = package
            .wheels
            .iter()
            .chain(&package.tool.comfypak.built)
            .map(|w| w.name.as_str())
            .collect();
        let accepted: Vec<_> = stack
            .record_mismatch
            .iter()
            .enumerate()
            .filter(|(_, e)| names.contains(&e.wheel.as_str()))
            .map(|(i, e)| {
                used[i] = true;
                crate::lock::AcceptedRecordMismatch {
                    wheel: e.wheel.clone(),
                    file: e.file.clone(),
                    reason: e.reason.clone(),
                }
            })
            .collect();
        package.tool.comfypak.record_mismatch = accepted;
    }
    for (entry, used) in stack.record_mismatch.iter().zip(used) {
        let project = entry
            .wheel
            .parse::<crate::filename::WheelFilename>()
            .ok()
            .map(|w| w.name);
        let locked = lock
            .packages
            .iter()
            .any(|p| Some(&p.name) == project.as_ref());
        if !used && locked {
            progress.note(&format!(
                "note: {}: [[install.record-mismatch]] names {}, which the lock does not have",
                stack.manifest.display(),
                entry.wheel
            ));
        }
    }
}

/// Packs the installed layers (no network).
pub fn pack(job: &PackJob) -> Result<PackedImage, BuildError> {
    let stack = Stack::load_without(&job.stack, &job.no_layers)?;
    let lock = Lock::read(&job.lock)?;
    // The layers were installed from the lock; a stack whose layers changed since would
    // give image.toml's layers and the lock's different neighbours.
    let stack_layers: Vec<&str> = stack.layers.iter().map(|l| l.name.as_str()).collect();
    lock.check_stack_layers(&job.lock, &stack_layers)
        .map_err(|source| BuildError::StackNotLock {
            stack: stack.manifest.clone(),
            source: Box::new(source),
        })?;
    let settings = ImageSettings::for_stack(&stack)?;
    let locked = &lock.tool.comfypak.target.platforms;
    let platforms: Vec<Platform> = match &job.platform {
        PlatformChoice::All => locked.clone(),
        PlatformChoice::First => locked.iter().take(1).copied().collect(),
        PlatformChoice::Named(text) => {
            let arch = parse_arch(text)?;
            let found: Vec<Platform> = locked.iter().filter(|p| p.arch == arch).copied().collect();
            if found.is_empty() {
                return Err(BuildError::Request {
                    message: format!(
                        "--platform {text}: the lock {} covers {}",
                        job.lock.display(),
                        locked
                            .iter()
                            .map(|p| p.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            }
            found
        }
    };
    let layer_dirs: Vec<PlatformLayers> = platforms
        .iter()
        .map(|platform| PlatformLayers {
            platform: *platform,
            dir: job
                .layers
                .iter()
                .find(|(arch, _)| *arch == platform.arch)
                .map(|(_, dir)| dir.clone())
                // Where install wrote them: that depends on how many platforms the lock
                // has, not on how many of them this pack takes (`--platform aarch64` after a
                // two-platform build reads OUT/aarch64/layers).
                .unwrap_or_else(|| layers_dir(&job.out, platform, locked.len())),
        })
        .collect();
    let output = job.output.clone().unwrap_or_else(|| match job.format {
        OutputFormat::OciLayout => job.out.join("image"),
        OutputFormat::DockerArchive => job.out.join("image.tar"),
    });
    let stack_dir = stack.manifest.parent().unwrap_or(Path::new("."));
    let request = PackRequest {
        lock: &lock,
        stack_dir,
        settings,
        platforms: layer_dirs,
        output,
        format: job.format,
        compression: job.compression,
        source_date_epoch: source_date_epoch_from_env()?,
        base: job.base.clone(),
        base_by_arch: job.base_by_arch.clone(),
        previous: job.previous.clone(),
        tag: job.tag.clone(),
        name: job
            .name
            .clone()
            .unwrap_or_else(|| lock.tool.comfypak.stack.to_ascii_lowercase()),
        split_threshold: job
            .split_threshold
            .or(stack.split_threshold)
            .unwrap_or(Some(crate::pack::split::DEFAULT_SPLIT_THRESHOLD)),
        layer_cache: job.layer_cache.as_ref(),
    };
    Ok(crate::pack::pack(&request)?)
}

/// `push`: an OCI image layout → a registry, sending only the blobs it lacks.
#[derive(Debug, Clone)]
pub struct PushRequest {
    pub image: PathBuf,
    /// `REGISTRY/REPOSITORY:TAG`.
    pub reference: ImageReference,
    /// Credentials are read from the environment or `~/.docker/config.json` when these
    /// options carry none.
    pub options: PushOptions,
}

/// Pushes the image on the session's runtime.
pub fn push(session: &Session, request: &PushRequest) -> Result<PushReport, BuildError> {
    let mut options = request.options.clone();
    if options.credentials.is_none() {
        options.credentials = credentials_for(&request.reference.registry)
            .map_err(crate::pack::push::PushError::from)?;
    }
    Ok(session.block_on(crate::pack::push::push_with(
        session.http(),
        &request.image,
        &request.reference,
        options,
    ))?)
}

/// `mirror`: every locked wheel plus a PEP 503 tree in one folder.
#[derive(Debug, Clone)]
pub struct MirrorRequest {
    pub lock: PathBuf,
    /// The mirror folder (`files/` and `simple/` are written inside).
    pub out: PathBuf,
}

/// Fetches every wheel of every platform and writes the mirror; also returns the lock's
/// torch backend (its PyTorch index is one the mirror stands in for).
pub fn mirror(
    session: &Session,
    request: &MirrorRequest,
    progress: &dyn Progress,
) -> Result<(MirrorReport, Vec<String>), BuildError> {
    let lock = Lock::read(&request.lock)?;
    let mut selected = Vec::new();
    for target in targets_for(&lock, Some("all"))? {
        selected.extend(select_wheels(&lock, None, &target)?);
    }
    let cached = fetch_selected(
        session,
        &request.lock,
        &selected,
        session.network().offline,
        progress,
    )?;
    let requires: BTreeMap<(String, String), Option<&String>> = lock
        .packages
        .iter()
        .map(|p| {
            (
                (p.name.to_string(), p.version.to_string()),
                p.requires_python.as_ref(),
            )
        })
        .collect();
    let wheels: Vec<MirrorWheel> = selected
        .iter()
        .zip(cached)
        .map(|(s, c)| MirrorWheel {
            project: s.package.clone(),
            requires_python: requires
                .get(&(s.package.clone(), s.version.clone()))
                .and_then(|r| r.cloned()),
            wheel: c,
        })
        .collect();
    let report = write_mirror(&request.out, &wheels)?;
    // The indexes the locked wheels came from: each is pointed at the mirror to use it.
    let indexes: BTreeSet<String> = lock
        .packages
        .iter()
        .map(|p| p.tool.comfypak.index_name.clone())
        .filter(|name| name != crate::lock::DIRECT_INDEX)
        .collect();
    Ok((report, indexes.into_iter().collect()))
}

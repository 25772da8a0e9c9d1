//! The pipeline as a library: one typed request per stage ([`ResolveRequest`],
//! [`FetchRequest`], [`InstallRequest`], [`PackJob`], [`PushRequest`], [`MirrorRequest`]) and
//! [`run`], the whole build (resolve or reuse the lock, fetch, install every layer of every
//! platform, pack).
//!
//! Owns: the [`Session`] every networked stage shares (one tokio runtime, one
//! [`HttpClient`] with its DNS cache, the cache folder, the page policy); the order of the
//! stages; the pipeline's conventions (`OUT/layers` for one platform, `OUT/<arch>/layers`
//! for several; the previous image kept as `OUT/image.previous` while a build packs);
//! which layers an install checks for conflicts ([`plan_layers`]).
//! Must not: parse arguments or print (the cli does, through [`Progress`]); decide versions
//! (`resolve`), read wheels (`install`) or write blobs (`pack`).

mod doctor;
mod layer_cache;
pub mod origins;
mod sources;
mod stages;

pub use doctor::check_lock;
pub use origins::{check_wheel_origins, OriginError};

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::cache::Cache;
use crate::fetch::progress::ProgressMode;
use crate::http::{HttpClient, HttpError, HttpSettings};
use crate::index::client::{CachePolicy, IndexClient};
use crate::index::definition::{parse_override, IndexDefError, IndexDefs};
use crate::install::link::LinkMode;
use crate::install::InstallReport;
use crate::pack::{Compression, OutputFormat, PackedImage};
use crate::resolve::ResolveProgress;
use crate::target::{Arch, Platform};

pub use sources::{prebuild, record_sources, BuiltSource, Prebuilt, SourceOrigin, StackBuildEnvs};
pub use stages::{
    fetch, install, install_wheel, mirror, pack, parse_arch, plan_layers, push, resolve,
    FetchReport, FetchRequest, InstallRequest, LayerPlan, LockMode, MirrorRequest, PackJob,
    PlatformChoice, PushRequest, ResolveReport, ResolveRequest, ResolveStatus,
};

/// Requests in flight at once, unless the caller says otherwise.
pub const DEFAULT_CONCURRENCY: usize = 64;
/// Seconds a page from a server without cache validators is reused, unless told otherwise.
pub const DEFAULT_PAGE_FRESHNESS_SECS: u64 = 600;

/// How the networked stages reach indexes and the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkOptions {
    /// `NAME=URL` overrides of index definitions, in order.
    pub index_overrides: Vec<String>,
    /// The cache folder; None: `COMFYPAK_CACHE_DIR`, else the user cache folder.
    pub cache_dir: Option<PathBuf>,
    /// Use only the cache.
    pub offline: bool,
    /// Revalidate every cached page.
    pub refresh: bool,
    /// How long a page without validators is reused.
    pub page_freshness: Duration,
    /// Requests in flight at once (at least 1).
    pub concurrency: usize,
}

impl Default for NetworkOptions {
    fn default() -> Self {
        NetworkOptions {
            index_overrides: Vec::new(),
            cache_dir: None,
            offline: false,
            refresh: false,
            page_freshness: Duration::from_secs(DEFAULT_PAGE_FRESHNESS_SECS),
            concurrency: DEFAULT_CONCURRENCY,
        }
    }
}

impl NetworkOptions {
    /// Applies the `NAME=URL` overrides to `defs`.
    pub fn apply_overrides(&self, defs: &mut IndexDefs) -> Result<(), IndexDefError> {
        for text in &self.index_overrides {
            let (name, url) = parse_override(text, "--index")?;
            defs.override_url(&name, &url, "--index")?;
        }
        Ok(())
    }
}

/// What every stage of one process shares: one runtime, one HTTP client (so one connection
/// pool and one DNS cache), one cache folder.
pub struct Session {
    runtime: tokio::runtime::Runtime,
    http: HttpClient,
    cache: Cache,
    network: NetworkOptions,
    /// The shared hold on the cache that keeps `comfypak cache prune` off it while this
    /// session runs ([`crate::prune::use_lock`]).
    _cache_use: Option<std::fs::File>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("http", &self.http)
            .field("cache", &self.cache.root())
            .field("network", &self.network)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Starts the runtime and builds the client.
    pub fn new(network: NetworkOptions) -> Result<Session, BuildError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(BuildError::AsyncRuntime)?;
        let http = HttpClient::new(HttpSettings {
            concurrency: network.concurrency.max(1),
            ..HttpSettings::default()
        })?;
        let cache = Cache::new(Cache::default_root(network.cache_dir.as_deref()));
        let _cache_use = crate::prune::use_lock(cache.root());
        Ok(Session {
            runtime,
            http,
            cache,
            network,
            _cache_use,
        })
    }

    pub fn network(&self) -> &NetworkOptions {
        &self.network
    }

    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// An index client on the shared HTTP client.
    pub fn index_client(&self) -> IndexClient {
        IndexClient::new(
            self.http.clone(),
            self.cache.clone(),
            CachePolicy {
                offline: self.network.offline,
                refresh: self.network.refresh,
                freshness: self.network.page_freshness,
            },
        )
    }

    /// Runs a future to completion on the shared runtime.
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }
}

/// What a caller is told while the pipeline runs. Every method has a silent default.
pub trait Progress: ResolveProgress {
    /// A resolution for `platforms` target platforms starts.
    fn resolve_started(&self, _platforms: usize) {}
    /// The resolution ended (successfully or not).
    fn resolve_finished(&self) {}
    /// A stage of `build` starts.
    fn stage(&self, _message: &str) {}
    /// Something the user should know that is not an error (`note: ...`).
    fn note(&self, _message: &str) {}
    /// How downloads show progress.
    fn fetch_mode(&self) -> ProgressMode {
        ProgressMode::Quiet
    }
    /// A resolve stage finished (its summary may be printed).
    fn resolved(&self, _report: &ResolveReport) {}
    /// A fetch stage finished.
    fn fetched(&self, _report: &FetchReport) {}
    /// One layer was installed for `platform` in `seconds`.
    fn layer_installed(&self, _platform: &Platform, _report: &InstallReport, _seconds: f64) {}
}

/// Progress that shows nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl ResolveProgress for Silent {}
impl Progress for Silent {}

/// The whole build.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// The stack folder (holding stack.toml).
    pub stack: PathBuf,
    /// `--no-layer`: layers of the stack left out of this build ([`crate::stack::Stack::leave_out`]).
    pub no_layers: Vec<String>,
    /// `--build-base`: where sources are built, ahead of `[build] base` and the image's base.
    pub build_bases: crate::runtime::Bases,
    /// Where layers and the image go.
    pub out: PathBuf,
    /// The lock to write, check or read.
    pub lock: PathBuf,
    /// Resolve and write, fail when stale (`--locked`), or use as is (`--frozen`).
    pub mode: LockMode,
    /// Overrides the stack's `target.torch-backend`.
    pub torch_backend: Option<String>,
    /// The bases to build on and run the target's Python from (OCI image layouts or root
    /// folders, one for every platform or one per architecture); empty: the stack's `[base]`.
    /// With a base, the lowest layer gets the venv skeleton and, when `compile`, every layer
    /// its bytecode.
    pub bases: crate::runtime::Bases,
    /// Pull registry bases (`docker://…`) over plain HTTP (a registry on this machine only).
    pub insecure_base: bool,
    /// Compile bytecode into the layers (with a base).
    pub compile: bool,
    /// How long one layer's compile may take; None: the stack's `[compile] timeout`, else
    /// [`crate::runtime::compile::DEFAULT_COMPILE_TIMEOUT`].
    pub compile_timeout: Option<std::time::Duration>,
    /// Keep the upper file on a path written by two packages.
    pub allow_overwrite: bool,
    pub compression: Compression,
    /// Overrides the stack's `[pack] split-threshold` (`Some(None)`: no split).
    pub split_threshold: Option<Option<u64>>,
    /// Reuse and record image layers in the layer cache ([`crate::pack::layer_cache`]).
    pub layer_cache: bool,
    /// Hash every blob the layer cache reuses, even one whose stamp (size, mtime, inode,
    /// device) says it is unchanged since it was last hashed.
    pub verify_layer_cache: bool,
    pub network: NetworkOptions,
    /// `--no-binary` / `--only-binary` (after the stack's and the pak files').
    pub formats: Vec<crate::pak::FormatOption>,
}

/// One stage's name and seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct StageTime {
    pub name: &'static str,
    pub seconds: f64,
}

/// What a build made.
#[derive(Debug, Clone)]
pub struct BuildReport {
    /// The stack's name.
    pub stack: String,
    /// The image layout written (`OUT/image`).
    pub image_dir: PathBuf,
    pub image: PackedImage,
    /// Whether an earlier image was there to compare with.
    pub had_previous: bool,
    pub stages: Vec<StageTime>,
    pub seconds: f64,
}

/// Why a stage or the build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot start the async runtime: {0}")]
    AsyncRuntime(#[source] std::io::Error),
    #[error(transparent)]
    TargetRuntime(#[from] crate::runtime::RuntimeError),
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error(transparent)]
    Stack(#[from] crate::stack::StackError),
    #[error(transparent)]
    IndexDef(#[from] IndexDefError),
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    #[error(transparent)]
    Summary(#[from] crate::lock::SummaryError),
    #[error("{origin}: {source}")]
    Backend {
        origin: String,
        #[source]
        source: crate::resolve::backend::BackendSelectError,
    },
    #[error(transparent)]
    Resolve(Box<crate::resolve::to_lock::StackResolveError>),
    #[error("--locked: {} does not exist, so there is nothing to check", path.display())]
    NothingToCheck { path: PathBuf },
    #[error("{} is stale: it does not match what the stack resolves to now\n{}", path.display(), lines.iter().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n"))]
    Stale { path: PathBuf, lines: Vec<String> },
    #[error(transparent)]
    Select(#[from] crate::fetch::SelectError),
    #[error(transparent)]
    Origin(#[from] OriginError),
    #[error("fetching the wheels of {}: {source}", lock.display())]
    Fetch {
        lock: PathBuf,
        #[source]
        source: crate::fetch::FetchError,
    },
    #[error(transparent)]
    WheelSource(crate::fetch::FetchError),
    #[error(transparent)]
    Install(#[from] crate::install::InstallError),
    #[error(transparent)]
    Source(Box<crate::source::SourceError>),
    #[error(transparent)]
    Pack(#[from] crate::pack::PackError),
    /// `pack` with a stack whose layers are no longer the lock's.
    #[error("cannot pack: the layers of {} no longer match the lock the layers were installed from", stack.display())]
    StackNotLock {
        stack: PathBuf,
        #[source]
        source: Box<crate::lock::LockError>,
    },
    #[error(transparent)]
    Push(#[from] crate::pack::push::PushError),
    #[error(transparent)]
    Pull(#[from] crate::registry::pull::PullError),
    #[error(
        "{}: the lock pins no digest for the base {reference}, and {mode} builds only what the lock pins",
        lock.display()
    )]
    BaseNotPinned {
        lock: PathBuf,
        reference: String,
        mode: &'static str,
    },
    #[error(transparent)]
    Mirror(#[from] crate::mirror::MirrorError),
    #[error("{message}")]
    Request { message: String },
    /// A source requirement (sdist, folder, git) of a layer, with no base to build it in;
    /// `what` is `FILE:LINE:COL: `TEXT`: building NAME from source for TARGET`.
    #[error("{what} needs a base to run the target's Python, and none is given")]
    SourceNeedsBase {
        what: String,
        layer: String,
        arch: String,
    },
    #[error("moving the previous image to {}: {source}", path.display())]
    Rotate {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `check` found no installed layer of the stack where `install` writes them.
    #[error("no installed layers in {}", dir.display())]
    NoInstalledLayers { dir: PathBuf },
    /// `check --platform` named a platform the stack does not build for.
    #[error("the stack has no platform `{asked}` (it has {available})")]
    NoSuchPlatform { asked: String, available: String },
    /// A platform to check has no base to run in.
    #[error("no base to check {arch} in")]
    NoBase { arch: String },
    /// A stage of `build` failed; the source says how.
    #[error("{stage}")]
    Stage {
        stage: &'static str,
        #[source]
        source: Box<BuildError>,
    },
}

impl From<crate::source::SourceError> for BuildError {
    fn from(err: crate::source::SourceError) -> Self {
        BuildError::Source(Box::new(err))
    }
}

impl From<crate::resolve::to_lock::StackResolveError> for BuildError {
    fn from(err: crate::resolve::to_lock::StackResolveError) -> Self {
        BuildError::Resolve(Box::new(err))
    }
}

impl BuildError {
    /// Whether a source build itself failed ([`crate::source::SourceError::is_build_failure`]),
    /// here or in a stage: the command line exits 1 for it, 2 for every other error.
    pub fn is_build_failure(&self) -> bool {
        match self {
            BuildError::Source(e) => e.is_build_failure(),
            BuildError::Stage { source, .. } => source.is_build_failure(),
            _ => false,
        }
    }

    /// What the user can do (see `crate::diagnostic`): the wrapped error's help, or this
    /// error's own.
    pub fn help(&self) -> Option<String> {
        use crate::diagnostic::help_of;
        match self {
            BuildError::TargetRuntime(e) => help_of(e),
            BuildError::Http(e) => help_of(e),
            BuildError::Stack(e) => help_of(e),
            BuildError::IndexDef(e) => help_of(e),
            BuildError::Lock(e) => help_of(e),
            BuildError::Summary(e) => help_of(e),
            BuildError::Resolve(e) => help_of(e.as_ref()),
            BuildError::Select(e) => help_of(e),
            BuildError::Origin(e) => e.help(),
            BuildError::Fetch { source, .. } => help_of(source),
            BuildError::WheelSource(e) => help_of(e),
            BuildError::Install(e) => help_of(e),
            BuildError::Source(e) => e.help(),
            BuildError::Pack(e) => help_of(e),
            BuildError::Push(e) => help_of(e),
            BuildError::Pull(e) => help_of(e),
            BuildError::BaseNotPinned { .. } => Some(
                "build once without --locked/--frozen to resolve the tag and record its digest in \
                 the lock, or give the base by digest (docker://HOST/REPO@sha256:…)"
                    .to_string(),
            ),
            BuildError::NothingToCheck { .. } => {
                Some("run `comfypak resolve` once to create it".to_string())
            }
            BuildError::Stale { .. } => Some(
                "run `comfypak resolve` (without --locked) to update it, or use --frozen to build the lock as it is"
                    .to_string(),
            ),
            BuildError::StackNotLock { .. } => Some(
                "install the layers again from a lock made from this stack (`comfypak build`, or `comfypak resolve` then `comfypak install --all`), or pack with the stack the lock was made from"
                    .to_string(),
            ),
            BuildError::NoInstalledLayers { .. } => Some(
                "run `comfypak build` (or `comfypak install --all`) first, with the same --out"
                    .to_string(),
            ),
            BuildError::NoSuchPlatform { .. } => {
                Some("pass --platform with one of those, or `all`".to_string())
            }
            BuildError::NoBase { arch } => Some(format!(
                "pass --base PATH (an OCI image layout or a root folder; {arch}=PATH for this \
                 architecture alone) or set [base] path in stack.toml"
            )),
            BuildError::Stage { source, .. } => source.help(),
            BuildError::SourceNeedsBase { layer, arch, .. } => Some(format!(
                "pass --base with a base whose Python can build it (a C/C++ toolchain for native \
                 code; {arch}=BASE for this architecture alone) or set [base] in stack.toml; or \
                 leave its layer out of this build with --no-layer {layer}"
            )),
            _ => None,
        }
    }

    fn in_stage(self, stage: &'static str) -> BuildError {
        BuildError::Stage {
            stage,
            source: Box::new(self),
        }
    }
}

/// Where `install` writes a platform's layers and `pack` reads them: `OUT/layers` when the
/// image has one platform, `OUT/<arch>/layers` when it has several.
pub fn layers_dir(out: &Path, platform: &Platform, platform_count: usize) -> PathBuf {
    platform_out(out, platform, platform_count).join("layers")
}

/// The installed layer folders of `stack` for one platform (`layers_dir`), in the stack's
/// order (most stable first), leaving out layers not installed; an error when there is none.
pub fn installed_layers(
    stack: &crate::stack::Stack,
    out: &Path,
    platform: &Platform,
    platform_count: usize,
) -> Result<Vec<PathBuf>, BuildError> {
    let dir = layers_dir(out, platform, platform_count);
    let dirs: Vec<PathBuf> = stack
        .layers
        .iter()
        .map(|l| dir.join(&l.name))
        .filter(|d| d.is_dir())
        .collect();
    if dirs.is_empty() {
        return Err(BuildError::NoInstalledLayers { dir });
    }
    Ok(dirs)
}

/// The `--out` of one platform's install: `OUT`, or `OUT/<arch>` when there are several.
pub fn platform_out(out: &Path, platform: &Platform, platform_count: usize) -> PathBuf {
    if platform_count == 1 {
        out.to_path_buf()
    } else {
        out.join(platform.arch.as_str())
    }
}

/// The main job: resolve (or check, or reuse the lock), fetch every wheel, install every
/// layer of every platform, pack the image into `OUT/image`, all in one [`Session`].
pub fn run(request: &BuildRequest, progress: &dyn Progress) -> Result<BuildReport, BuildError> {
    let started = Instant::now();
    let session = Session::new(request.network.clone())?;
    let stack = crate::stack::Stack::load_without(&request.stack, &request.no_layers)?;
    let mut stages = Vec::new();

    // 1. Resolve: the lock is the contract for every later stage.
    let t = Instant::now();
    match request.mode {
        LockMode::Frozen => progress.stage(&format!(
            "using {} as it is (--frozen)",
            request.lock.display()
        )),
        LockMode::Locked => progress.stage(&format!(
            "checking that {} is up to date (--locked)",
            request.lock.display()
        )),
        LockMode::Write => progress.stage(&format!(
            "resolving {} into {}",
            request.stack.display(),
            request.lock.display()
        )),
    }
    let resolved = stages::resolve(
        &session,
        &ResolveRequest {
            stack: request.stack.clone(),
            lock: request.lock.clone(),
            mode: request.mode,
            torch_backend: request.torch_backend.clone(),
            bases: request.bases.clone(),
            formats: request.formats.clone(),
            no_layers: request.no_layers.clone(),
            build_bases: request.build_bases.clone(),
            insecure_base: request.insecure_base,
            ..ResolveRequest::default()
        },
        progress,
    )
    .map_err(|e| e.in_stage("resolving"))?;
    if let ResolveStatus::Stale(lines) = &resolved.status {
        return Err(BuildError::Stale {
            path: request.lock.clone(),
            lines: lines.clone(),
        });
    }
    if request.mode != LockMode::Frozen {
        progress.resolved(&resolved);
    }
    stages.push(StageTime {
        name: "resolve",
        seconds: t.elapsed().as_secs_f64(),
    });
    let lock = resolved.lock;
    if request.mode != LockMode::Write {
        // Not written from the indexes in this run: every wheel URL must point at a declared
        // index (or the lock must mark the package a direct URL requirement).
        let mut defs = stack.indexes.definitions.clone();
        request.network.apply_overrides(&mut defs)?;
        check_wheel_origins(&lock, &defs)?;
    }

    // 2. Fetch every wheel of every platform at once.
    let t = Instant::now();
    progress.stage("fetching wheels");
    let fetched = stages::fetch_lock(
        &session,
        &lock,
        &request.lock,
        &FetchRequest {
            lock: request.lock.clone(),
            layers: Vec::new(),
            platform: PlatformChoice::All,
        },
        true,
        progress,
    )
    .map_err(|e| e.in_stage("fetching"))?;
    progress.fetched(&fetched);
    stages.push(StageTime {
        name: "fetch",
        seconds: t.elapsed().as_secs_f64(),
    });

    // 3. Install each platform's layers, from the cache only; with a base, add the venv
    //    skeleton and bytecode from the base's own Python.
    let t = Instant::now();
    let mut bases = request.bases.clone();
    if bases.is_empty() {
        bases.all = stack.base.clone();
    }
    let targets = crate::fetch::targets_for(&lock, Some("all"))?;
    let mut lock = lock;
    let archs: Vec<Arch> = targets.iter().map(|t| t.platform.arch).collect();
    let pins = match request.mode {
        LockMode::Write => BasePins::Resolve,
        LockMode::Locked => BasePins::Required("--locked"),
        LockMode::Frozen => BasePins::Required("--frozen"),
    };
    let (pulled, recorded) = pull_bases(
        &session,
        &mut bases,
        &archs,
        request.insecure_base,
        &lock.tool.comfypak.bases,
        pins,
        &request.lock,
    )?;
    if pins == BasePins::Resolve && recorded != lock.tool.comfypak.bases {
        lock.tool.comfypak.bases = recorded;
        lock.write(&request.lock)?;
    }
    for (reference, pulled) in pulled {
        progress.stage(&format!(
            "base {reference}: {}{}",
            pulled.digest,
            if pulled.cached {
                " (cached)"
            } else {
                " (pulled)"
            }
        ));
    }
    // The layer cache: keys before the install; layers found are neither installed nor packed.
    let layer_cache = request.layer_cache.then(|| {
        crate::pack::layer_cache::LayerCache::new(session.cache().root())
            .verifying_all(request.verify_layer_cache)
    });
    let split_threshold = request
        .split_threshold
        .or(stack.split_threshold)
        .unwrap_or(Some(crate::pack::split::DEFAULT_SPLIT_THRESHOLD));
    let epoch = crate::pack::source_date_epoch_from_env()?;
    let mut cache_plans = Vec::new();
    for target in &targets {
        let out = platform_out(&request.out, &target.platform, targets.len());
        let all: Vec<String> = lock.layer_names().iter().map(|l| l.to_string()).collect();
        let layers = match &layer_cache {
            Some(cache) => {
                let plan = layer_cache::plan_platform(
                    cache,
                    &lock,
                    target,
                    bases.for_arch(target.platform.arch),
                    request,
                    split_threshold,
                    epoch,
                    &out,
                )
                .map_err(|e| e.in_stage("looking up the layer cache"))?;
                for layer in plan.reused.keys() {
                    progress.stage(&format!(
                        "layer {layer} ({}): reused from the layer cache{}",
                        target.platform.arch,
                        if plan.trees_kept.contains(layer) {
                            ""
                        } else {
                            " (its tree in OUT installed again)"
                        }
                    ));
                }
                let install = plan.to_install();
                layer_cache::forget_trees(&out, &install);
                cache_plans.push(plan);
                install
            }
            None => {
                let _ = std::fs::remove_dir_all(out.join(".layer-keys"));
                all
            }
        };
        if layers.is_empty() {
            continue;
        }
        progress.stage(&format!(
            "installing {} for {} into {}",
            if layer_cache.is_some() && cache_plans.last().is_some_and(|p| !p.trees_kept.is_empty())
            {
                format!("layers {}", layers.join(", "))
            } else {
                "every layer".to_string()
            },
            target.platform.arch,
            out.display()
        ));
        stages::install_lock(
            &session,
            &lock,
            &InstallRequest {
                lock: request.lock.clone(),
                layers: layers.clone(),
                out: out.clone(),
                platform: Some(target.platform.to_string()),
                link_mode: LinkMode::Hardlink,
                allow_overwrite: request.allow_overwrite,
                compile_base: None,
                compile_timeout: None,
                offline: true,
            },
            progress,
        )
        .map_err(|e| e.in_stage("installing"))?;
        if let Some(base) = bases.for_arch(target.platform.arch) {
            prepare_platform(
                &session,
                &lock,
                base,
                target,
                &out,
                request.compile.then(|| {
                    request
                        .compile_timeout
                        .or(stack.compile_timeout)
                        .unwrap_or(crate::runtime::compile::DEFAULT_COMPILE_TIMEOUT)
                }),
                &layers,
                progress,
            )
            .map_err(|e| e.in_stage("preparing the layers with the base's Python"))?;
        } else if !bases.is_empty() {
            let arch = target.platform.arch;
            return Err(BuildError::Request {
                message: format!(
                    "no base for {arch}: give one with --base {arch}=PATH, or one --base PATH for every platform"
                ),
            });
        }
    }
    if bases.is_empty() {
        progress.stage(
            "no --base and no [base] in the stack: the layers get no venv skeleton and no bytecode",
        );
    }
    for plan in &cache_plans {
        layer_cache::mark_trees(plan, &plan.to_install()).map_err(|source| {
            BuildError::Request {
                message: format!(
                    "marking the installed layers in {}: {source}",
                    plan.out.display()
                ),
            }
        })?;
    }
    stages.push(StageTime {
        name: "install",
        seconds: t.elapsed().as_secs_f64(),
    });

    // 4. Pack, reporting reuse against the previous build's image.
    let t = Instant::now();
    let image_dir = request.out.join("image");
    let previous_dir = request.out.join("image.previous");
    let _ = std::fs::remove_dir_all(&previous_dir);
    let previous = if image_dir.join("index.json").exists() {
        std::fs::rename(&image_dir, &previous_dir).map_err(|source| BuildError::Rotate {
            path: previous_dir.clone(),
            source,
        })?;
        Some(previous_dir.clone())
    } else {
        None
    };
    progress.stage(&format!("packing {}", image_dir.display()));
    let image = stages::pack(&PackJob {
        stack: request.stack.clone(),
        no_layers: request.no_layers.clone(),
        lock: request.lock.clone(),
        out: request.out.clone(),
        layers: Vec::new(),
        platform: PlatformChoice::All,
        output: Some(image_dir.clone()),
        format: OutputFormat::OciLayout,
        compression: request.compression,
        // Each platform's image goes on the base its layers were prepared with (its own, else
        // the one for every platform). A root folder is run, not packed: only an image layout
        // (a registry base is pulled into one) gives the image base layers.
        base: None,
        base_by_arch: targets
            .iter()
            .filter_map(|t| {
                let arch = t.platform.arch;
                bases
                    .for_arch(arch)
                    .filter(|b| b.join("oci-layout").is_file())
                    .map(|b| (arch, b.to_path_buf()))
            })
            .collect(),
        previous: previous.clone(),
        tag: "latest".to_string(),
        name: None,
        split_threshold: request.split_threshold,
        layer_cache: layer_cache
            .clone()
            .map(|cache| crate::pack::layer_cache::PackCache {
                cache,
                reused: cache_plans
                    .iter()
                    .flat_map(|p| {
                        p.reused
                            .iter()
                            .map(|(layer, parts)| ((p.platform, layer.clone()), parts.clone()))
                    })
                    .collect(),
            }),
    })
    .map_err(|e| e.in_stage("packing"))?;
    if let Some(cache) = &layer_cache {
        layer_cache::record(
            cache,
            &cache_plans,
            &image,
            &image_dir,
            request.compression,
            progress,
        );
    }
    if let Some(dir) = &previous {
        let _ = std::fs::remove_dir_all(dir);
    }
    stages.push(StageTime {
        name: "pack",
        seconds: t.elapsed().as_secs_f64(),
    });

    Ok(BuildReport {
        stack: stack.name,
        image_dir,
        image,
        had_previous: previous.is_some(),
        stages,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// How the tags of registry bases become digests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BasePins {
    /// Resolve each tag now and record the digests in the lock (written when they changed).
    Resolve,
    /// Pull by the digests the lock records; a tag without one is an error (the flag named).
    Required(&'static str),
    /// Pull by the lock's digest where it records one, else resolve the tag; write nothing.
    Prefer,
}

/// Replaces every registry base (`docker://…`) among `bases` by the OCI layout it is pulled
/// into (one image per architecture that uses it), per `pins`. A reference with `@sha256:`
/// is pulled by that digest whatever `pins` says. Returns what was pulled, as written, and
/// the digests to record (`locked` are the lock's, `lock_path` names it in errors).
#[allow(clippy::type_complexity)]
pub fn pull_bases(
    session: &Session,
    bases: &mut crate::runtime::Bases,
    archs: &[Arch],
    insecure: bool,
    locked: &[crate::lock::LockedBase],
    pins: BasePins,
    lock_path: &Path,
) -> Result<
    (
        Vec<(String, crate::registry::pull::PulledBase)>,
        Vec<crate::lock::LockedBase>,
    ),
    BuildError,
> {
    use crate::lock::LockedBase;
    use crate::registry::pull::{pull_base, BaseReference, PullOptions};

    // Which base serves which architectures.
    let mut uses: Vec<(PathBuf, Vec<Arch>)> = Vec::new();
    for &arch in archs {
        let Some(base) = bases.for_arch(arch) else {
            continue;
        };
        match uses.iter_mut().find(|(b, _)| b == base) {
            Some((_, list)) => list.push(arch),
            None => uses.push((base.to_path_buf(), vec![arch])),
        }
    }
    let mut recorded: Vec<LockedBase> = Vec::new();
    let mut pulled = Vec::new();
    for (base, base_archs) in uses {
        let text = base.to_string_lossy().to_string();
        if !BaseReference::is_reference(&text) {
            continue;
        }
        let reference: BaseReference = text.parse()?;
        let written = reference.to_string();
        let locked = locked
            .iter()
            .find(|b| b.reference == written)
            .map(|b| b.digest.clone());
        let wanted = match (&reference.digest, pins, locked) {
            (Some(_), _, _) | (None, BasePins::Resolve, _) | (None, BasePins::Prefer, None) => {
                reference.clone()
            }
            (None, _, Some(digest)) => reference.pinned(&digest),
            (None, BasePins::Required(mode), None) => {
                return Err(BuildError::BaseNotPinned {
                    lock: lock_path.to_path_buf(),
                    reference: written,
                    mode,
                })
            }
        };
        let result = session.block_on(pull_base(
            session.http(),
            &wanted,
            &base_archs,
            session.cache().root(),
            &PullOptions {
                insecure,
                ..PullOptions::default()
            },
        ))?;
        recorded.push(LockedBase {
            reference: written.clone(),
            digest: result.digest.clone(),
        });
        if bases.all.as_deref() == Some(base.as_path()) {
            bases.all = Some(result.layout.clone());
        }
        for path in bases.by_arch.values_mut() {
            if *path == base {
                *path = result.layout.clone();
            }
        }
        pulled.push((written, result));
    }
    recorded.sort_by(|a, b| a.reference.cmp(&b.reference));
    Ok((pulled, recorded))
}

/// The venv skeleton (into the lock's lowest layer, when among `layers`) and bytecode for
/// `layers` of one platform's installed layers, from the base's Python.
#[allow(clippy::too_many_arguments)]
fn prepare_platform(
    session: &Session,
    lock: &crate::lock::Lock,
    base: &Path,
    target: &crate::target::Target,
    out: &Path,
    compile: Option<std::time::Duration>,
    layers: &[String],
    progress: &dyn Progress,
) -> Result<(), BuildError> {
    use crate::runtime::compile::{compile_layer, DEFAULT_COMPILE_TIMEOUT};
    use crate::runtime::{venv, Base, Runtime, RuntimeOptions};

    let options = RuntimeOptions {
        cache_dir: session.cache().root().to_path_buf(),
        timeout: DEFAULT_COMPILE_TIMEOUT,
    };
    // The probe gets the default limit; the compile of each layer the one asked for.
    let runtime = Runtime::for_platform(
        &Base::from_path(base)?,
        target,
        &lock.tool.comfypak.target.venv,
        &options,
    )?
    .with_timeout(compile.unwrap_or(DEFAULT_COMPILE_TIMEOUT));
    let lowest = lock.layer_names().first().map(|l| l.to_string());
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    for name in layers {
        let dir = out.join("layers").join(name);
        if !dir.is_dir() {
            continue;
        }
        let mut what = Vec::new();
        if lowest.as_ref() == Some(name) {
            venv::write_skeleton(&dir, &runtime.venv, &runtime.interpreter)?;
            what.push(format!(
                "venv skeleton for {} {}",
                runtime.interpreter.path, runtime.interpreter.version
            ));
        }
        if compile.is_some() {
            let c = compile_layer(&runtime, &dir, workers)?;
            crate::test_hook::count(crate::test_hook::Count::LayersCompiled);
            what.push(format!(
                "{} .pyc in {:.1}s{}{}",
                c.compiled,
                c.seconds,
                if c.reused > 0 {
                    format!(" ({} from the bytecode cache)", c.reused)
                } else {
                    String::new()
                },
                if c.failed.is_empty() {
                    String::new()
                } else {
                    format!(
                        " ({} .py did not compile: {})",
                        c.failed.len(),
                        c.failed.join("; ")
                    )
                }
            ));
        }
        if !what.is_empty() {
            progress.stage(&format!(
                "layer {name} ({}): {}",
                target.platform.arch,
                what.join(", ")
            ));
        }
    }
    Ok(())
}

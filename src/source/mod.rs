//! Sources to wheels: a PEP 517 build frontend that runs in the target runtime's sandbox.
//!
//! Owns turning one source (an sdist file or a local folder) into a wheel for the target:
//! the source hash (an sdist's sha256, checked against the expected one; a folder's content
//! hash), unpacking ([`sdist`]), the `[build-system]` table and pip's defaults
//! ([`pyproject`]), the isolated build environment's venv skeleton, the hook runs
//! (`get_requires_for_build_wheel`, `prepare_metadata_for_build_wheel`, `build_wheel`) through
//! a small Python shim ([`frontend`]) with no network, `SOURCE_DATE_EPOCH`, a fixed HOME and
//! TMPDIR, a time limit and a jobs count, the checks of what was built (a wheel for the
//! target, whose METADATA agrees with the sdist's), the build log, and the built-wheel cache,
//! content-addressed by (source hash, target, base, build environment pins, backend, config
//! settings) and written whole or not at all. PEP 643 metadata is read from `PKG-INFO`
//! without a build ([`metadata`]). Git sources are fetched and checked out by [`git`].
//!
//! Must not resolve, download or install: the build environment comes from the caller
//! through [`BuildEnvironments`] (the pipeline resolves it with comfypak's resolver and
//! installs it with comfypak's installer). Must not run anything outside the sandbox.

pub mod frontend;
pub mod git;
pub mod pyproject;
pub mod sdist;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::index::core_metadata::CoreMetadata;
use crate::runtime::{Runtime, RuntimeError};
use crate::target::Target;

pub use pyproject::BuildSystem;

/// Where the build environment's venv is inside the sandbox.
pub const BUILD_VENV: &str = "/opt/comfypak-build-env";

/// Lines of the build log an error shows.
pub const LOG_TAIL_LINES: usize = 30;

/// The version of the frontend's rules; part of every cache key.
const FRONTEND_VERSION: &str = "comfypak-pep517-1";

/// Why a source could not be built (or its metadata read).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{package}: the sdist {} has sha256 {actual}, but {expected} was required", path.display())]
    HashMismatch {
        package: String,
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{}: not a usable source archive: {message}", path.display())]
    BadSdist { path: PathBuf, message: String },
    #[error("{}: {message}", path.display())]
    BadPyproject { path: PathBuf, message: String },
    #[error("{} has neither pyproject.toml nor setup.py: it is not a Python project", path.display())]
    NotAProject { path: PathBuf },
    #[error("{package}: the build environment ({requirements}): {message}")]
    BuildEnv {
        package: String,
        requirements: String,
        message: String,
        help: Option<String>,
    },
    #[error(
        "building {} failed: backend {}, hook {}: {}\n\
         --- last {} lines of the build log ---\n{}\n--- the whole log: {} ---",
        .0.package,
        .0.backend,
        .0.hook,
        .0.message,
        LOG_TAIL_LINES,
        .0.tail,
        .0.log.display()
    )]
    BuildFailed(Box<BuildFailure>),
    #[error(
        "building {package} tried to reach the network ({wanted}); builds run without network \
         (backend {backend}, log: {})",
        log.display()
    )]
    Network {
        package: String,
        backend: String,
        wanted: String,
        log: PathBuf,
    },
    #[error(
        "building {package} ran longer than {seconds:.0}s and was killed with everything it \
         started (backend {backend}, hook {hook}, log: {})",
        log.display()
    )]
    Timeout {
        package: String,
        backend: String,
        hook: String,
        seconds: f64,
        log: PathBuf,
    },
    #[error("{package}: the build made {what}")]
    BadOutput { package: String, what: String },
    #[error(transparent)]
    Git(#[from] git::GitError),
    #[error("{package}: running the build in the target runtime: {source}")]
    Runtime {
        package: String,
        #[source]
        source: Box<RuntimeError>,
    },
}

/// A build hook that failed: what ran, what it said, and its log.
#[derive(Debug)]
pub struct BuildFailure {
    pub package: String,
    pub backend: String,
    pub hook: String,
    /// The hook's exception (`Type: message`), or how the runner ended.
    pub message: String,
    /// The last [`LOG_TAIL_LINES`] lines of the log.
    pub tail: String,
    /// The whole log, kept under `source-builds/logs/`.
    pub log: PathBuf,
}

impl SourceError {
    /// A closure that wraps an I/O error with `path`.
    pub fn io(path: &Path) -> impl Fn(std::io::Error) -> SourceError + '_ {
        move |source| SourceError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Whether the build itself failed (a hook that raised or whose runner died, the time
    /// limit, a reach for the network, a wheel that contradicts its source), as opposed to a
    /// source that could not be had or set up: the command line exits 1 for these.
    pub fn is_build_failure(&self) -> bool {
        matches!(
            self,
            SourceError::BuildFailed(_)
                | SourceError::Timeout { .. }
                | SourceError::Network { .. }
                | SourceError::BadOutput { .. }
        )
    }

    /// What the user can do about it.
    pub fn help(&self) -> Option<String> {
        match self {
            SourceError::HashMismatch { .. } => Some(
                "the archive is not the one the requirement pins: check the URL, or update \
                 the `#sha256=` / `--hash` value if the new archive is trusted"
                    .to_string(),
            ),
            SourceError::BuildFailed { .. } => Some(
                "read the log; a missing compiler or header means the build base lacks it \
                 (the stack's [build] base); a missing Python module means the project's \
                 [build-system] requires is incomplete"
                    .to_string(),
            ),
            SourceError::Network { .. } => Some(
                "builds are hermetic: add what the build downloads to its [build-system] \
                 requires, or vendor it into the source"
                    .to_string(),
            ),
            SourceError::Timeout { .. } => Some(
                "raise the build time limit if the build is just slow (qemu is): `[build] \
                 timeout = \"2h\"` in stack.toml (default 30m, at most 24h); or fix the build \
                 that hangs"
                    .to_string(),
            ),
            SourceError::Runtime { source, .. } => source.help(),
            SourceError::BuildEnv { help, .. } => help.clone(),
            SourceError::Git(e) => e.help(),
            _ => None,
        }
    }
}

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    /// An sdist archive on this machine (downloaded by the caller).
    Sdist(PathBuf),
    /// A source folder on this machine (a local path).
    Directory(PathBuf),
    /// A git checkout (`root`, of `commit`, from the repository cache `db`), built in
    /// `subdirectory` with a self-contained `.git` at the root (see [`git::add_metadata`]).
    GitCheckout {
        root: PathBuf,
        subdirectory: Option<String>,
        db: PathBuf,
        commit: String,
        /// The repository's URL, as the build's `origin` remote.
        origin: String,
    },
}

/// A source and how errors name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub kind: SourceKind,
    /// The package as messages name it (the requirement's name, or the file's).
    pub package: String,
    /// The sha256 (hex) an sdist must have.
    pub expected_sha256: Option<String>,
}

/// How to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// comfypak's cache folder; builds go under `source-builds/`.
    pub cache_dir: PathBuf,
    /// The limit of each hook run.
    pub timeout: Duration,
    /// Parallel jobs the backend may use (`MAKEFLAGS`, `CMAKE_BUILD_PARALLEL_LEVEL`,
    /// `MAX_JOBS`).
    pub jobs: usize,
    /// PEP 517 config settings.
    pub config_settings: BTreeMap<String, String>,
    /// `SOURCE_DATE_EPOCH` of the build.
    pub source_date_epoch: u64,
    /// Requirements added to `[build-system] requires` (e.g. `torch==2.11.0+cu130`, the
    /// version the image resolves, as uv's match-runtime gives it).
    pub extra_requires: Vec<String>,
}

impl BuildOptions {
    /// Defaults: 30 minutes per hook, the host's cores, no settings, the epoch of 1980-01-01
    /// (the earliest time a zip can hold).
    pub fn new(cache_dir: &Path) -> BuildOptions {
        BuildOptions {
            cache_dir: cache_dir.to_path_buf(),
            timeout: Duration::from_secs(1800),
            jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
            config_settings: BTreeMap::new(),
            source_date_epoch: 315_532_800,
            extra_requires: Vec::new(),
        }
    }
}

/// Why a build environment could not be resolved or installed: the pipeline's error as
/// text, and its help apart (a message never carries its help).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvError {
    pub message: String,
    pub help: Option<String>,
}

/// The build environment's resolver and installer, supplied by the pipeline.
pub trait BuildEnvironments {
    /// A resolution of some requirements.
    type Resolved;
    /// Resolves `requirements` (PEP 508) for the target; returns the resolution and its pins,
    /// one line per package (`name==version sha256`), sorted: they key the build cache.
    fn resolve(&self, requirements: &[String]) -> Result<(Self::Resolved, Vec<String>), EnvError>;
    /// Installs `resolved` into `layer_dir` (which it creates; it does not exist before), the
    /// venv at `venv` (a path inside the sandbox) below it, as an image layer is laid out.
    fn install(
        &self,
        resolved: &Self::Resolved,
        venv: &str,
        layer_dir: &Path,
    ) -> Result<(), EnvError>;
}

/// A wheel built from a source (or found in the cache).
#[derive(Debug, Clone, PartialEq)]
pub struct BuiltWheel {
    /// The wheel in the cache.
    pub path: PathBuf,
    pub filename: String,
    /// Hex sha256 of the wheel.
    pub sha256: String,
    pub size: u64,
    /// The source's sha256 (sdist), content hash (folder), or for git the hash of the
    /// checkout's files with its commit and tags ([`git::build_state`]).
    pub source_sha256: String,
    /// The cache key.
    pub key: String,
    /// Whether it came from the cache (no build ran).
    pub cached: bool,
    /// Seconds the whole call took.
    pub seconds: f64,
    /// The build's log (kept with the wheel).
    pub log: PathBuf,
}

/// The record kept beside a cached wheel.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct CacheRecord {
    wheel: String,
    sha256: String,
    size: u64,
    source_sha256: String,
    backend: String,
    environment: Vec<String>,
    build_seconds: f64,
}

/// The cache key of a build.
fn cache_key(
    source_sha256: &str,
    target: &Target,
    runtime: &Runtime,
    system: &BuildSystem,
    pins: &[String],
    options: &BuildOptions,
) -> String {
    let base = match &runtime.image_digest {
        Some(digest) => digest.clone(),
        None => format!(
            "root:{}:{}",
            runtime.root.display(),
            runtime.interpreter.version
        ),
    };
    let doc = serde_json::json!({
        "frontend": FRONTEND_VERSION,
        "shim": hex::encode(Sha256::digest(frontend::SHIM.as_bytes())),
        "source": source_sha256,
        "target": target.to_string(),
        "base": base,
        "backend": system.backend,
        "backend_path": system.backend_path,
        "environment": pins,
        "config_settings": options.config_settings,
        "source_date_epoch": options.source_date_epoch,
    });
    hex::encode(Sha256::digest(doc.to_string().as_bytes()))
}

fn builds_dir(cache_dir: &Path) -> PathBuf {
    cache_dir.join("source-builds")
}

/// The cached wheel of `key`, when its record and bytes are whole.
fn cache_lookup(cache_dir: &Path, key: &str) -> Option<(CacheRecord, PathBuf)> {
    let dir = builds_dir(cache_dir).join("v1").join(key);
    let record: CacheRecord =
        serde_json::from_slice(&std::fs::read(dir.join("build.json")).ok()?).ok()?;
    let wheel = dir.join(&record.wheel);
    if record.wheel.contains('/') || std::fs::metadata(&wheel).ok()?.len() != record.size {
        return None;
    }
    let actual = sdist::sha256_file(&wheel).ok()?;
    (actual == record.sha256).then_some((record, dir))
}

/// The folder a build works in, removed when dropped.
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A source unpacked (or copied) into a fresh work folder, with its hash and build system.
struct Prepared {
    work: WorkDir,
    source_sha256: String,
    system: BuildSystem,
    /// The sdist's `PKG-INFO`, when it has one.
    pkg_info: Option<Vec<u8>>,
}

fn prepare(source: &Source, cache_dir: &Path) -> Result<Prepared, SourceError> {
    let source_sha256 = match &source.kind {
        SourceKind::Sdist(path) => {
            let actual = sdist::sha256_file(path)?;
            if let Some(expected) = &source.expected_sha256 {
                if !expected.eq_ignore_ascii_case(&actual) {
                    return Err(SourceError::HashMismatch {
                        package: source.package.clone(),
                        path: path.clone(),
                        expected: expected.to_ascii_lowercase(),
                        actual,
                    });
                }
            }
            actual
        }
        SourceKind::Directory(dir) => sdist::hash_tree(dir)?,
        SourceKind::GitCheckout {
            root,
            subdirectory,
            db,
            commit,
            origin,
        } => {
            // The files, and what the build's `.git` tells a backend (commit, tags).
            let files = sdist::hash_tree(&match subdirectory {
                Some(sub) => root.join(sub),
                None => root.clone(),
            })?;
            let state = git::build_state(db, commit, origin)?;
            hex::encode(Sha256::digest(format!("{files}\n{state}").as_bytes()))
        }
    };
    let tmp = builds_dir(cache_dir).join("tmp");
    std::fs::create_dir_all(&tmp).map_err(SourceError::io(&tmp))?;
    let work = WorkDir(tmp.join(format!("build-{}", crate::fsutil::unique_suffix())));
    std::fs::create_dir(&work.0).map_err(SourceError::io(&work.0))?;
    let src = work.0.join("src");
    match &source.kind {
        SourceKind::Sdist(path) => {
            let unpacked = work.0.join("unpacked");
            let top = sdist::unpack(path, &unpacked)?;
            std::fs::rename(&top, &src).map_err(SourceError::io(&top))?;
        }
        SourceKind::Directory(dir) => sdist::copy_tree(dir, &src)?,
        SourceKind::GitCheckout {
            root,
            subdirectory,
            db,
            commit,
            origin,
        } => {
            let repo = work.0.join("repo");
            sdist::copy_tree(root, &repo)?;
            // The checkout's completion marker is the cache's, not the project's.
            let _ = std::fs::remove_file(repo.join(".comfypak-complete"));
            git::add_metadata(&repo, db, commit, origin)?;
            match subdirectory {
                None => std::fs::rename(&repo, &src).map_err(SourceError::io(&repo))?,
                // The build runs in the subfolder; `.git` stays at the repository's root,
                // where setuptools-scm's `root = ".."` looks for it.
                Some(sub) => std::os::unix::fs::symlink(Path::new("repo").join(sub), &src)
                    .map_err(SourceError::io(&src))?,
            }
        }
    }
    let pkg_info = match &source.kind {
        SourceKind::Sdist(_) => std::fs::read(src.join("PKG-INFO")).ok(),
        SourceKind::Directory(_) | SourceKind::GitCheckout { .. } => None,
    };
    let system = BuildSystem::read(&src)?;
    Ok(Prepared {
        work,
        source_sha256,
        system,
        pkg_info,
    })
}

/// Builds `source` into a wheel for `target` with `runtime`'s interpreter, or takes it from
/// the cache when the same inputs were built before.
pub fn build_wheel<E: BuildEnvironments>(
    source: &Source,
    target: &Target,
    runtime: &Runtime,
    envs: &E,
    options: &BuildOptions,
) -> Result<BuiltWheel, SourceError> {
    let started = Instant::now();
    let prepared = prepare(source, &options.cache_dir)?;
    let env_error = |requirements: &[String], e: EnvError| SourceError::BuildEnv {
        package: source.package.clone(),
        requirements: requirements.join(", "),
        message: e.message,
        help: e.help,
    };
    let mut requires = prepared.system.requires.clone();
    requires.extend(options.extra_requires.iter().cloned());
    let (resolved, pins) = if requires.is_empty() {
        (None, Vec::new())
    } else {
        let (resolved, pins) = envs
            .resolve(&requires)
            .map_err(|m| env_error(&requires, m))?;
        (Some(resolved), pins)
    };
    let key = cache_key(
        &prepared.source_sha256,
        target,
        runtime,
        &prepared.system,
        &pins,
        options,
    );
    if let Some((record, dir)) = cache_lookup(&options.cache_dir, &key) {
        return Ok(BuiltWheel {
            path: dir.join(&record.wheel),
            filename: record.wheel,
            sha256: record.sha256,
            size: record.size,
            source_sha256: prepared.source_sha256,
            key,
            cached: true,
            seconds: started.elapsed().as_secs_f64(),
            log: dir.join("build.log"),
        });
    }
    let mut frontend = frontend::Frontend::new(
        &prepared.work.0,
        &source.package,
        &prepared.system,
        runtime,
        options,
    )?;
    let build = (|| {
        frontend.install_env(envs, resolved.as_ref(), "env")?;
        let extra = frontend.get_requires()?;
        let mut environment = pins.clone();
        if !extra.is_empty() {
            let mut all = requires.clone();
            all.extend(extra);
            let (resolved, more_pins) = envs.resolve(&all).map_err(|m| env_error(&all, m))?;
            // The same environment (the extra requirements were in it) is not installed twice.
            if more_pins != pins {
                frontend.install_env(envs, Some(&resolved), "env-full")?;
            }
            environment = more_pins;
        }
        let wheel = frontend.build_wheel()?;
        Ok::<_, SourceError>((wheel, environment))
    })();
    let (wheel_path, environment) = build?;
    let filename = check_wheel(
        &source.package,
        &wheel_path,
        target,
        prepared.pkg_info.as_deref(),
    )?;
    let sha256 = sdist::sha256_file(&wheel_path)?;
    let size = std::fs::metadata(&wheel_path)
        .map_err(SourceError::io(&wheel_path))?
        .len();
    let record = CacheRecord {
        wheel: filename.clone(),
        sha256: sha256.clone(),
        size,
        source_sha256: prepared.source_sha256.clone(),
        backend: prepared.system.backend.clone(),
        environment,
        build_seconds: started.elapsed().as_secs_f64(),
    };
    let dir = store(
        &options.cache_dir,
        &key,
        &wheel_path,
        &record,
        &frontend.log_path(),
    )?;
    Ok(BuiltWheel {
        path: dir.join(&filename),
        filename,
        sha256,
        size,
        source_sha256: prepared.source_sha256,
        key,
        cached: false,
        seconds: started.elapsed().as_secs_f64(),
        log: dir.join("build.log"),
    })
}

/// Writes a finished build into the cache: a staging folder filled and renamed into place,
/// so a reader sees the whole entry or none. Another process that stored the same key first
/// wins (the same inputs made it).
fn store(
    cache_dir: &Path,
    key: &str,
    wheel: &Path,
    record: &CacheRecord,
    log: &Path,
) -> Result<PathBuf, SourceError> {
    let v1 = builds_dir(cache_dir).join("v1");
    std::fs::create_dir_all(&v1).map_err(SourceError::io(&v1))?;
    let dest = v1.join(key);
    let staging = crate::fsutil::staging_sibling(&dest);
    let result = (|| {
        std::fs::create_dir(&staging).map_err(SourceError::io(&staging))?;
        let target = staging.join(&record.wheel);
        std::fs::copy(wheel, &target).map_err(SourceError::io(&target))?;
        let _ = std::fs::copy(log, staging.join("build.log"));
        let json = serde_json::to_vec_pretty(record).map_err(|e| SourceError::Io {
            path: staging.join("build.json"),
            source: std::io::Error::other(e),
        })?;
        crate::fsutil::write_atomic(&staging.join("build.json"), &json)
            .map_err(SourceError::io(&staging))?;
        match std::fs::rename(&staging, &dest) {
            Ok(()) => Ok(()),
            Err(_) if cache_lookup(cache_dir, key).is_some() => Ok(()),
            Err(e) => Err(SourceError::io(&dest)(e)),
        }
    })();
    let _ = std::fs::remove_dir_all(&staging);
    result.map(|()| dest)
}

/// Checks the built wheel: a valid wheel name that fits the target, with the sdist's name and
/// version (when it has a `PKG-INFO`) and a METADATA that says the same. Returns its name.
fn check_wheel(
    package: &str,
    wheel: &Path,
    target: &Target,
    pkg_info: Option<&[u8]>,
) -> Result<String, SourceError> {
    let bad = |what: String| SourceError::BadOutput {
        package: package.to_string(),
        what,
    };
    let filename = wheel
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parsed: crate::filename::WheelFilename = filename
        .parse()
        .map_err(|e| bad(format!("`{filename}`, which is not a wheel name: {e}")))?;
    if !crate::filename::wheel_may_fit(&filename, &target.tags()) {
        return Err(bad(format!(
            "`{filename}`, whose tags do not fit the target {target}"
        )));
    }
    let metadata = wheel_metadata(wheel, &parsed).map_err(bad)?;
    let meta = CoreMetadata::parse(&metadata)
        .map_err(|e| bad(format!("`{filename}` with unreadable METADATA: {e}")))?;
    let meta_name = crate::index::page::normalize_name(&meta.name);
    if meta_name != parsed.name.as_ref() || meta.version != parsed.version {
        return Err(bad(format!(
            "`{filename}`, whose METADATA says {} {}",
            meta.name, meta.version
        )));
    }
    if let Some(pkg_info) = pkg_info {
        if let Ok(sdist_meta) = CoreMetadata::parse(pkg_info) {
            let sdist_name = crate::index::page::normalize_name(&sdist_meta.name);
            if sdist_name != meta_name || sdist_meta.version != meta.version {
                return Err(bad(format!(
                    "`{filename}` ({} {}), which contradicts the sdist's PKG-INFO ({} {})",
                    meta.name, meta.version, sdist_meta.name, sdist_meta.version
                )));
            }
        }
    }
    Ok(filename)
}

/// The METADATA of a wheel (`<name>-<version>.dist-info/METADATA`, matched loosely).
pub fn wheel_metadata(
    wheel: &Path,
    parsed: &crate::filename::WheelFilename,
) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = std::fs::File::open(wheel).map_err(|e| format!("{}: {e}", wheel.display()))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| format!("a broken wheel: {e}"))?;
    let wanted = crate::index::page::normalize_name(parsed.name.as_ref());
    let name = zip
        .file_names()
        .find(|n| {
            n.strip_suffix(".dist-info/METADATA")
                .filter(|d| !d.contains('/'))
                .and_then(|d| d.rsplit_once('-'))
                .is_some_and(|(n, _)| crate::index::page::normalize_name(n) == wanted)
        })
        .map(str::to_string)
        .ok_or_else(|| "a wheel without its .dist-info/METADATA".to_string())?;
    let mut out = Vec::new();
    zip.by_name(&name)
        .map_err(|e| e.to_string())?
        .take(16 << 20)
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// How [`metadata`] got its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataOrigin {
    /// PEP 643 `PKG-INFO`: no Python ran.
    PkgInfo,
    /// `prepare_metadata_for_build_wheel` ran.
    PrepareHook,
    /// The backend has no prepare hook: a wheel was built (and cached).
    BuiltWheel,
    /// An earlier answer for the same source, from the cache.
    Cache,
}

/// The core metadata of `source` for resolution: `PKG-INFO` when PEP 643 lets it be trusted,
/// else `prepare_metadata_for_build_wheel` in the runtime (or a whole build when the backend
/// lacks that hook). Cached by source hash and config settings.
pub fn metadata<E: BuildEnvironments>(
    source: &Source,
    target: &Target,
    runtime: &Runtime,
    envs: &E,
    options: &BuildOptions,
) -> Result<(CoreMetadata, MetadataOrigin), SourceError> {
    let prepared = prepare(source, &options.cache_dir)?;
    if let Some(meta) = prepared
        .pkg_info
        .as_deref()
        .and_then(sdist::static_metadata)
    {
        return Ok((meta, MetadataOrigin::PkgInfo));
    }
    let key = hex::encode(Sha256::digest(
        serde_json::json!({
            "frontend": FRONTEND_VERSION,
            "source": prepared.source_sha256,
            "config_settings": options.config_settings,
        })
        .to_string()
        .as_bytes(),
    ));
    let cached = builds_dir(&options.cache_dir)
        .join("metadata")
        .join(format!("{key}.METADATA"));
    if let Some(meta) = std::fs::read(&cached)
        .ok()
        .and_then(|b| CoreMetadata::parse(&b).ok())
    {
        return Ok((meta, MetadataOrigin::Cache));
    }
    let mut requires = prepared.system.requires.clone();
    requires.extend(options.extra_requires.iter().cloned());
    let resolved = if requires.is_empty() {
        None
    } else {
        Some(
            envs.resolve(&requires)
                .map_err(|e| SourceError::BuildEnv {
                    package: source.package.clone(),
                    requirements: requires.join(", "),
                    message: e.message,
                    help: e.help,
                })?
                .0,
        )
    };
    let mut frontend = frontend::Frontend::new(
        &prepared.work.0,
        &source.package,
        &prepared.system,
        runtime,
        options,
    )?;
    let prepared_meta = (|| {
        frontend.install_env(envs, resolved.as_ref(), "env")?;
        let extra = frontend.get_requires()?;
        if !extra.is_empty() {
            let mut all = requires.clone();
            all.extend(extra);
            let (resolved, _) = envs.resolve(&all).map_err(|e| SourceError::BuildEnv {
                package: source.package.clone(),
                requirements: all.join(", "),
                message: e.message,
                help: e.help,
            })?;
            frontend.install_env(envs, Some(&resolved), "env-full")?;
        }
        frontend.prepare_metadata()
    })();
    let bytes = prepared_meta?;
    drop(frontend);
    let (bytes, origin) = match bytes {
        Some(bytes) => (bytes, MetadataOrigin::PrepareHook),
        None => {
            let built = build_wheel(source, target, runtime, envs, options)?;
            let parsed: crate::filename::WheelFilename =
                built.filename.parse().map_err(|e| SourceError::BadOutput {
                    package: source.package.clone(),
                    what: format!("`{}`: {e}", built.filename),
                })?;
            let bytes =
                wheel_metadata(&built.path, &parsed).map_err(|what| SourceError::BadOutput {
                    package: source.package.clone(),
                    what,
                })?;
            (bytes, MetadataOrigin::BuiltWheel)
        }
    };
    let meta = CoreMetadata::parse(&bytes).map_err(|e| SourceError::BadOutput {
        package: source.package.clone(),
        what: format!("unreadable metadata: {e}"),
    })?;
    crate::fsutil::write_atomic(&cached, &bytes).map_err(SourceError::io(&cached))?;
    Ok((meta, origin))
}

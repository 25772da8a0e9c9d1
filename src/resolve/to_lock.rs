//! From per-platform resolutions to ONE PEP 751 lock, and the stack-wide resolve around it.
//!
//! Owns: resolving every target platform of a stack concurrently (with the existing lock's
//! versions as preferences, for minimal churn), merging the per-platform resolutions into
//! `[[packages]]` entries (one entry when a package has the same version everywhere, else one
//! entry per version with a `platform_machine` marker), the `[tool.comfypak]` data (target,
//! layers with their pak files and inputs hash, package layer, index name, requested,
//! required-by, the build-reason of ABI-coupled builds, the torch backend actually used),
//! and deterministic output (only ordered maps; the writer sorts).
//! Must not choose versions (the resolver core does), talk to an index directly, or write files
//! (`crate::lock` writes).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use pep440_rs::Version;
use pep508_rs::PackageName;
use sha2::{Digest, Sha256};

use super::layers::{assign_checked, LayerError};
use super::{resolve_target, ResolveError, ResolveOptions, ResolveProgress, ResolvedPackage};
use super::{Resolution, Upgrade};
use crate::cuda::Backend;
use crate::digest::Sha256Hex;
use crate::filename::SafeFileName;
use crate::index::client::IndexClient;
use crate::index::page::DistFile;
use crate::lock::{
    ComfypakLock, Lock, LockTool, LockedDependency, LockedLayer, LockedPackage, LockedSdist,
    LockedTarget, LockedWheel, PackageComfypak, PackageTool, PreparedTarget, LOCK_VERSION,
};
use crate::lock::{VenvPath, WheelHashes};
use crate::pak::{PakRequirement, Sourced};
use crate::stack::Stack;
use crate::target::{Arch, Platform, Target};

/// `created-by` of every lock comfypak writes.
pub const CREATED_BY: &str = "comfypak";

pub use crate::lock::DIRECT_INDEX;

/// Why the resolutions could not be turned into a lock.
#[derive(Debug, thiserror::Error)]
pub enum ToLockError {
    #[error("no resolutions to lock: the stack has no target platform")]
    NoTargets,
    #[error("{} resolutions but {} layer assignments; they must come in pairs, one per platform", .resolutions, .layers)]
    Mismatch { resolutions: usize, layers: usize },
    #[error("the resolutions are for different interpreters ({first} and {other}); one lock covers one interpreter on several platforms")]
    MixedPython { first: String, other: String },
    #[error("the resolutions are for different torch backends ({first} and {other}); one lock has one backend")]
    MixedBackend { first: String, other: String },
    #[error("{name}: {detail}; PEP 508 markers cannot tell platforms of the same architecture apart ({platforms})")]
    AmbiguousMarker {
        name: String,
        detail: String,
        platforms: String,
    },
    #[error("{name} {version} ({target}): wheel {filename} from {url} has no sha256 on its index; comfypak locks only files it can verify")]
    NoHash {
        name: String,
        version: String,
        target: String,
        filename: String,
        url: String,
    },
    #[error(
        "{name} {version}: wheel {filename}: upload-time {value:?} is not an RFC 3339 date-time"
    )]
    BadUploadTime {
        name: String,
        version: String,
        filename: String,
        value: String,
    },
    #[error("target.venv: {message}")]
    BadVenv { message: String },
    #[error("{name} {version}: the index lists an unusable wheel: {message}")]
    UnsafeFile {
        name: String,
        version: String,
        message: String,
    },
}

impl ToLockError {
    /// What the user can do about it.
    pub fn help(&self) -> Option<String> {
        match self {
            ToLockError::NoTargets => Some("list platforms in [target] platforms of stack.toml, or pass --platform".to_string()),
            ToLockError::AmbiguousMarker { .. } => Some("lock those platforms separately (--platform, -o another file)".to_string()),
            ToLockError::NoHash { .. } => Some("use an index that publishes sha256 digests (PEP 503 `#sha256=` fragments or PEP 691 hashes)".to_string()),
            _ => None,
        }
    }
}

/// Why a stack could not be resolved into a lock.
#[derive(Debug, thiserror::Error)]
pub enum StackResolveError {
    #[error("resolving for {target}: {source}")]
    Resolve {
        target: String,
        #[source]
        source: ResolveError,
    },
    #[error(transparent)]
    Layers(#[from] LayerError),
    #[error(transparent)]
    Lock(#[from] ToLockError),
}

impl StackResolveError {
    /// What the user can do about it.
    pub fn help(&self) -> Option<String> {
        match self {
            StackResolveError::Layers(e) => e.help(),
            StackResolveError::Lock(e) => e.help(),
            _ => None,
        }
    }
}

/// What to move on purpose when an existing lock is the starting point.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpgradeRequest {
    /// `--upgrade`: ignore every locked version.
    pub all: bool,
    /// `--upgrade-package NAME`: ignore these locked versions.
    pub packages: BTreeSet<PackageName>,
}

impl UpgradeRequest {
    fn to_upgrade(&self) -> Upgrade {
        if self.all {
            Upgrade::All
        } else if self.packages.is_empty() {
            Upgrade::None
        } else {
            Upgrade::Packages(self.packages.clone())
        }
    }
}

/// The versions an existing lock holds for `target`: what the resolver should keep when it
/// still can (minimal churn). Entries whose marker or platform list excludes the target are
/// left out; so are entries named in `upgrade`.
pub fn preferences_for(
    lock: &Lock,
    target: &Target,
    upgrade: &UpgradeRequest,
) -> BTreeMap<PackageName, Version> {
    let mut preferences = BTreeMap::new();
    if upgrade.all {
        return preferences;
    }
    let prepared = PreparedTarget::new(target);
    for package in &lock.packages {
        if !prepared.applies_to(package).unwrap_or(false) {
            continue;
        }
        if upgrade.packages.contains(&package.name) {
            continue;
        }
        preferences.insert(package.name.clone(), package.version.clone());
    }
    preferences
}

/// What to resolve a stack for, and how.
#[derive(Debug, Clone)]
pub struct StackRequest<'a> {
    /// Every target, resolved at once (the futures run concurrently).
    pub targets: &'a [Target],
    /// The torch backend, chosen once by the caller (`backend::select_backend`, where `auto`
    /// reads the host); every target resolves for it and the lock records it.
    pub backend: Backend,
    pub prerelease: bool,
    pub upgrade: UpgradeRequest,
    /// The lock being replaced: its versions are preferences (minimal churn).
    pub existing: Option<&'a Lock>,
    /// `--no-binary` / `--only-binary`, and index sdists.
    pub sources: SourceSettings,
}

impl<'a> StackRequest<'a> {
    /// `targets` on `backend`, with no preferences, upgrades, pre-releases or sdists.
    pub fn new(targets: &'a [Target], backend: Backend) -> Self {
        StackRequest {
            targets,
            backend,
            prerelease: false,
            upgrade: UpgradeRequest::default(),
            existing: None,
            sources: SourceSettings::default(),
        }
    }
}

/// What a stack resolution may take besides wheels: the command line's `--no-binary` /
/// `--only-binary`, and index sdists (with the hook that reads their metadata).
#[derive(Debug, Clone, Default)]
pub struct SourceSettings {
    pub formats: Vec<super::formats::FormatOption>,
    pub sdists: Option<super::formats::SdistCandidates>,
}

/// Resolves `stack` for every target of `request` at once, assigns layers and builds the
/// lock.
pub async fn resolve_stack(
    stack: &Stack,
    client: &IndexClient,
    request: &StackRequest<'_>,
    progress: &dyn ResolveProgress,
) -> Result<Lock, StackResolveError> {
    let StackRequest {
        targets,
        backend,
        prerelease,
        upgrade,
        existing,
        sources,
    } = request;
    let options: Vec<ResolveOptions> = targets
        .iter()
        .map(|target| ResolveOptions {
            prerelease: *prerelease,
            upgrade: upgrade.to_upgrade(),
            preferences: existing
                .map(|lock| preferences_for(lock, target, upgrade))
                .unwrap_or_default(),
            torch_backend: *backend,
            formats: sources.formats.clone(),
            sdists: sources.sdists.clone(),
        })
        .collect();
    let futures = targets
        .iter()
        .zip(&options)
        .map(|(target, options)| resolve_target(stack, target, client, options, progress));
    let outcomes = futures::future::join_all(futures).await;
    let mut resolutions = Vec::with_capacity(outcomes.len());
    for (target, outcome) in targets.iter().zip(outcomes) {
        resolutions.push(outcome.map_err(|source| StackResolveError::Resolve {
            target: target.to_string(),
            source,
        })?);
    }
    let layers = resolutions
        .iter()
        .map(|resolution| assign_checked(resolution, stack))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(build_lock(stack, &resolutions, &layers)?)
}

/// One marker per target platform: `sys_platform == 'linux' and platform_machine == 'x86_64'`.
pub fn environment_marker(target: &Target) -> String {
    format!(
        "sys_platform == 'linux' and platform_machine == '{}'",
        target.platform.arch
    )
}

/// The `requires-python` of a lock for `target`'s interpreter: `==3.14.*`.
pub fn requires_python(target: &Target) -> String {
    format!("=={}.*", target.python)
}

/// Builds the lock from one resolution per target platform and, for each, its layer
/// assignment (from [`super::layers::assign_layers`], same order).
pub fn build_lock(
    stack: &Stack,
    resolutions: &[Resolution],
    layers: &[BTreeMap<PackageName, String>],
) -> Result<Lock, ToLockError> {
    let first = check_resolutions(resolutions, layers)?;
    let targets: Vec<&Target> = resolutions.iter().map(|r| &r.target).collect();
    let base = stack_dir(stack);
    let by_name = group_entries(resolutions);
    let inputs = LockInputs {
        resolutions,
        layers,
        targets: &targets,
        rank: stack
            .layers
            .iter()
            .map(|l| (l.name.as_str(), l.rank))
            .collect(),
        file_layer: file_layers(stack),
        base: &base,
        by_name: &by_name,
    };

    let mut packages = Vec::new();
    let mut indexes = BTreeMap::new();
    for (name, groups) in &by_name {
        let everywhere = groups.len() == 1
            && groups
                .values()
                .next()
                .is_some_and(|positions| positions.len() == resolutions.len());
        for (key, positions) in groups {
            let Some(package) = locked_package(&inputs, name, key, positions, everywhere)? else {
                continue;
            };
            if package.tool.comfypak.index_name != DIRECT_INDEX {
                let (_, index, index_url) = key;
                indexes.insert(index.clone(), index_url.clone());
            }
            packages.push(package);
        }
    }

    let platforms: Vec<Platform> = targets.iter().map(|t| t.platform).collect();
    let mut environments: Vec<String> = Vec::new();
    for target in &targets {
        let marker = environment_marker(target);
        if !environments.contains(&marker) {
            environments.push(marker);
        }
    }
    let target_line = target_line(first, &platforms);
    let locked_layers = stack
        .layers
        .iter()
        .map(|layer| LockedLayer {
            name: layer.name.clone(),
            rank: layer.rank,
            paks: layer
                .paks
                .iter()
                .map(|p| relative(&base, &p.path))
                .collect(),
            inputs_hash: layer_inputs_hash(layer, &target_line),
        })
        .collect();

    Ok(Lock {
        lock_version: LOCK_VERSION.to_string(),
        environments,
        requires_python: Some(requires_python(&first.target)),
        extras: Vec::new(),
        dependency_groups: Vec::new(),
        default_groups: Vec::new(),
        created_by: CREATED_BY.to_string(),
        packages,
        tool: LockTool {
            comfypak: ComfypakLock {
                stack: stack.name.clone(),
                target: LockedTarget {
                    python: first.target.python,
                    free_threaded: first.target.free_threaded,
                    platforms,
                    venv: VenvPath::from_str(&stack.target.venv).map_err(|e| {
                        ToLockError::BadVenv {
                            message: e.to_string(),
                        }
                    })?,
                    gpus: stack.target.gpus.clone(),
                    min_driver: stack.target.min_driver.clone(),
                },
                torch_backend: first.backend,
                layers: locked_layers,
                indexes,
                bases: Vec::new(),
            },
        },
    })
}

/// What every entry of the lock is made from: the resolutions (one per target) with their
/// layer assignments, the stack's layer ranks and pak files, and the entries grouped by name.
struct LockInputs<'a> {
    resolutions: &'a [Resolution],
    layers: &'a [BTreeMap<PackageName, String>],
    targets: &'a [&'a Target],
    rank: BTreeMap<&'a str, usize>,
    /// Which pak file (with its includes) belongs to which layer, for required-by.
    file_layer: BTreeMap<&'a Path, &'a str>,
    base: &'a Path,
    by_name: &'a ByName<'a>,
}

/// The resolutions agree on what one lock must share (at least one, one layer assignment
/// each, one interpreter, one backend); the first of them.
fn check_resolutions<'r>(
    resolutions: &'r [Resolution],
    layers: &[BTreeMap<PackageName, String>],
) -> Result<&'r Resolution, ToLockError> {
    let Some(first) = resolutions.first() else {
        return Err(ToLockError::NoTargets);
    };
    if resolutions.len() != layers.len() {
        return Err(ToLockError::Mismatch {
            resolutions: resolutions.len(),
            layers: layers.len(),
        });
    }
    for other in &resolutions[1..] {
        if other.target.python != first.target.python
            || other.target.free_threaded != first.target.free_threaded
        {
            return Err(ToLockError::MixedPython {
                first: first.target.to_string(),
                other: other.target.to_string(),
            });
        }
        if other.backend != first.backend {
            return Err(ToLockError::MixedBackend {
                first: first.backend.to_string(),
                other: other.backend.to_string(),
            });
        }
    }
    Ok(first)
}

/// Which pak file (with its includes) belongs to which layer.
fn file_layers(stack: &Stack) -> BTreeMap<&Path, &str> {
    let mut file_layer: BTreeMap<&Path, &str> = BTreeMap::new();
    for layer in &stack.layers {
        for pak in &layer.paks {
            file_layer.insert(pak.path.as_path(), layer.name.as_str());
            for file in &pak.files {
                file_layer
                    .entry(file.as_path())
                    .or_insert(layer.name.as_str());
            }
        }
    }
    file_layer
}

/// name → (version, index, index URL) → positions of the resolutions that chose it.
fn group_entries(resolutions: &[Resolution]) -> ByName<'_> {
    let mut by_name: ByName<'_> = BTreeMap::new();
    for (i, resolution) in resolutions.iter().enumerate() {
        for (name, package) in &resolution.packages {
            by_name
                .entry(name)
                .or_default()
                .entry((
                    package.version.clone(),
                    package.index.clone(),
                    package.index_url.clone(),
                ))
                .or_default()
                .push(i);
        }
    }
    by_name
}

/// The lock entry of `name` at `key` (version, index, index URL), chosen by the resolutions
/// at `positions`; `everywhere`: the only entry of the name, on every target (no marker).
fn locked_package(
    inputs: &LockInputs<'_>,
    name: &PackageName,
    key: &GroupKey,
    positions: &[usize],
    everywhere: bool,
) -> Result<Option<LockedPackage>, ToLockError> {
    let (version, index, index_url) = key;
    let members: Vec<(&Resolution, &ResolvedPackage, &str)> = positions
        .iter()
        .filter_map(|&i| {
            let resolution = &inputs.resolutions[i];
            let package = resolution.packages.get(name)?;
            let layer = inputs.layers[i].get(name)?;
            Some((resolution, package, layer.as_str()))
        })
        .collect();
    let Some(&(_, sample, _)) = members.first() else {
        return Ok(None);
    };
    let (marker, platforms) = if everywhere {
        (None, Vec::new())
    } else {
        let mine: Vec<&Target> = members.iter().map(|(r, _, _)| &r.target).collect();
        (
            Some(platform_marker(name, &mine, inputs.targets)?),
            mine.iter().map(|t| t.platform).collect(),
        )
    };
    // The most stable layer any platform put it in.
    let layer = members
        .iter()
        .map(|(_, _, layer)| *layer)
        .min_by_key(|layer| inputs.rank.get(layer).copied().unwrap_or(usize::MAX))
        .unwrap_or_default()
        .to_string();

    let mut wheels: BTreeMap<SafeFileName, LockedWheel> = BTreeMap::new();
    // An index sdist (no wheel could be used): `[packages.sdist]`; the pipeline builds
    // it and records the built wheels.
    let mut sdist: Option<LockedSdist> = None;
    for (resolution, package, _) in &members {
        if super::formats::is_sdist_name(&package.wheel.filename) {
            if sdist.is_none() {
                sdist = Some(locked_sdist(package, &resolution.target)?);
            }
            continue;
        }
        let wheel = locked_wheel(package, &package.wheel, &resolution.target)?;
        wheels.entry(wheel.name.clone()).or_insert(wheel);
    }

    let mut required_by = BTreeSet::new();
    for (_, package, _) in &members {
        for location in &package.requested_by {
            if inputs.file_layer.get(location.file.as_path()) == Some(&layer.as_str()) {
                required_by.insert((
                    relative(inputs.base, &location.file),
                    location.line,
                    location.column,
                ));
            }
        }
    }
    let named_by_root = members.iter().any(|(resolution, package, _)| {
        resolution
            .roots
            .iter()
            .any(|(l, names)| *l == layer && names.contains(&package.name))
    });

    let dependencies = dependencies_of(&members, inputs.by_name);
    Ok(Some(LockedPackage {
        name: name.clone(),
        version: version.clone(),
        marker,
        requires_python: sample.requires_python.clone(),
        index: (index != DIRECT_INDEX).then(|| index_url.clone()),
        dependencies,
        wheels: wheels.into_values().collect(),
        sdist,
        directory: None,
        vcs: None,
        tool: PackageTool {
            comfypak: PackageComfypak {
                layer,
                index_name: index.clone(),
                requested: !required_by.is_empty() || named_by_root,
                required_by: required_by
                    .into_iter()
                    .map(|(file, line, _)| format!("{file}:{line}"))
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect(),
                build_reason: members
                    .iter()
                    .find_map(|(_, package, _)| package.build.as_ref())
                    .map(|build| build.reason.clone()),
                platforms,
                built: Vec::new(),
                source_hash: None,
                record_mismatch: Vec::new(),
            },
        },
    }))
}

/// An entry's identity besides its name: version, index name, index URL.
type GroupKey = (Version, String, String);

/// Package name → entry identity → positions of the resolutions that chose it.
type ByName<'a> = BTreeMap<&'a PackageName, BTreeMap<GroupKey, Vec<usize>>>;

/// The marker that selects exactly `mine` among `all` targets, by architecture.
fn platform_marker(
    name: &PackageName,
    mine: &[&Target],
    all: &[&Target],
) -> Result<String, ToLockError> {
    let arches: BTreeSet<Arch> = mine.iter().map(|t| t.platform.arch).collect();
    let clash: Vec<String> = all
        .iter()
        .filter(|t| !mine.contains(t) && arches.contains(&t.platform.arch))
        .map(|t| t.platform.to_string())
        .collect();
    if !clash.is_empty() {
        return Err(ToLockError::AmbiguousMarker {
            name: name.to_string(),
            detail: format!(
                "the entry for {} would also apply to {}",
                mine.iter()
                    .map(|t| t.platform.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                clash.join(", ")
            ),
            platforms: all
                .iter()
                .map(|t| t.platform.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(arches
        .iter()
        .map(|arch| format!("platform_machine == '{arch}'"))
        .collect::<Vec<_>>()
        .join(" or "))
}

/// The dependency references of one entry: the name, plus the version when the dependency
/// has several entries and this entry's platforms agree on one of them.
fn dependencies_of(
    members: &[(&Resolution, &ResolvedPackage, &str)],
    by_name: &ByName<'_>,
) -> Vec<LockedDependency> {
    let names: BTreeSet<&PackageName> = members
        .iter()
        .flat_map(|(_, package, _)| package.dependencies.iter())
        .collect();
    names
        .into_iter()
        .map(|dep| {
            let ambiguous = by_name.get(dep).is_some_and(|groups| groups.len() > 1);
            let version = if ambiguous {
                let versions: BTreeSet<Version> = members
                    .iter()
                    .filter_map(|(resolution, _, _)| resolution.packages.get(dep))
                    .map(|p| p.version.clone())
                    .collect();
                if versions.len() == 1 {
                    versions.into_iter().next()
                } else {
                    None
                }
            } else {
                None
            };
            LockedDependency {
                name: dep.clone(),
                version,
            }
        })
        .collect()
}

fn locked_wheel(
    package: &ResolvedPackage,
    file: &DistFile,
    target: &Target,
) -> Result<LockedWheel, ToLockError> {
    let Some(sha256) = file.hashes.sha256.clone() else {
        return Err(ToLockError::NoHash {
            name: package.name.to_string(),
            version: package.version.to_string(),
            target: target.to_string(),
            filename: file.filename.clone(),
            url: crate::http::redact(&file.url),
        });
    };
    let upload_time =
        match &file.upload_time {
            None => None,
            Some(text) => Some(toml::value::Datetime::from_str(text).map_err(|_| {
                ToLockError::BadUploadTime {
                    name: package.name.to_string(),
                    version: package.version.to_string(),
                    filename: file.filename.clone(),
                    value: text.clone(),
                }
            })?),
        };
    let unsafe_file = |message: String| ToLockError::UnsafeFile {
        name: package.name.to_string(),
        version: package.version.to_string(),
        message,
    };
    let name = SafeFileName::parse(&file.filename).map_err(|e| unsafe_file(e.to_string()))?;
    let sha256 = Sha256Hex::parse_any_case(&sha256).map_err(|e| unsafe_file(e.to_string()))?;
    Ok(LockedWheel {
        name,
        url: Some(file.url.to_string()),
        path: None,
        upload_time,
        size: file.size,
        hashes: WheelHashes::sha256(sha256),
    })
}

/// `[packages.sdist]` of an index sdist the resolution chose (its sha256 is required, as a
/// wheel's is).
fn locked_sdist(package: &ResolvedPackage, target: &Target) -> Result<LockedSdist, ToLockError> {
    let file = &package.wheel;
    let no_hash = || ToLockError::NoHash {
        name: package.name.to_string(),
        version: package.version.to_string(),
        target: target.to_string(),
        filename: file.filename.clone(),
        url: crate::http::redact(&file.url),
    };
    let sha256 = file.hashes.sha256.as_deref().ok_or_else(no_hash)?;
    let sha256 = Sha256Hex::parse_any_case(sha256).map_err(|e| ToLockError::UnsafeFile {
        name: package.name.to_string(),
        version: package.version.to_string(),
        message: e.to_string(),
    })?;
    Ok(LockedSdist {
        name: Some(file.filename.clone()),
        url: Some(file.url.to_string()),
        path: None,
        size: file.size,
        hashes: WheelHashes::sha256(sha256),
    })
}

/// The folder holding stack.toml.
fn stack_dir(stack: &Stack) -> PathBuf {
    stack
        .manifest
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// `path` relative to the stack folder, with `/` separators; unchanged when outside it.
fn relative(base: &Path, path: &Path) -> String {
    let shown = path.strip_prefix(base).unwrap_or(path);
    shown
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// The target part of every layer's inputs: interpreter, platforms, torch backend.
fn target_line(first: &Resolution, platforms: &[Platform]) -> String {
    format_target_line(
        first.target.python,
        first.target.free_threaded,
        platforms,
        first.backend,
    )
}

fn format_target_line(
    python: impl std::fmt::Display,
    free_threaded: bool,
    platforms: &[Platform],
    backend: impl std::fmt::Display,
) -> String {
    format!(
        "target python={python} free-threaded={free_threaded} platforms={} torch-backend={backend}",
        platforms
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    )
}

/// The target line of the layers' input hashes ([`layer_inputs_hash`]) of `lock`, as
/// [`build_lock`] wrote it.
pub fn lock_target_line(lock: &Lock) -> String {
    let target = &lock.tool.comfypak.target;
    format_target_line(
        target.python,
        target.free_threaded,
        &target.platforms,
        lock.tool.comfypak.torch_backend,
    )
}

/// `sha256:HEX` over a layer's requirement lines (as parsed, in pak order, with their
/// `--hash` options), its constraint lines, its `--pre` option and the target. Line numbers,
/// comments and the other layers do not enter it, so editing one pak file changes only its
/// layer's hash.
pub fn layer_inputs_hash(layer: &crate::stack::Layer, target_line: &str) -> String {
    let mut hasher = Sha256::new();
    let mut line = |text: &str| {
        hasher.update(text.as_bytes());
        hasher.update(b"\n");
    };
    line("comfypak layer inputs v1");
    line(target_line);
    for pak in &layer.paks {
        for requirement in &pak.requirements {
            line(&format!(
                "requirement {}{}",
                hashed_requirement_text(requirement),
                requirement
                    .hashes
                    .iter()
                    .map(|h| format!(" --hash={h}"))
                    .collect::<String>()
            ));
        }
        for constraint in &pak.constraints {
            line(&format!(
                "constraint {}",
                requirement_text(&constraint.requirement)
            ));
        }
        if pak.options.pre {
            line("option --pre");
        }
        let urls = |label: &str, values: &[Sourced<String>]| -> Vec<String> {
            values
                .iter()
                .map(|v| format!("option {label} {}", v.value))
                .collect()
        };
        for text in pak
            .options
            .index_url
            .iter()
            .map(|v| format!("option --index-url {}", v.value))
            .chain(urls("--extra-index-url", &pak.options.extra_index_urls))
            .chain(urls("--find-links", &pak.options.find_links))
        {
            line(&text);
        }
    }
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

/// The requirement as the inputs hash sees it: a path written relative to its pak file
/// (`./x`, `name @ ../x`) as written, so the hash does not depend on where the stack is;
/// anything else as parsed.
fn hashed_requirement_text(line: &crate::pak::PakLine) -> String {
    let url = match &line.requirement {
        PakRequirement::Named(r) => match &r.version_or_url {
            Some(pep508_rs::VersionOrUrl::Url(url)) => Some(url.as_str().to_string()),
            _ => None,
        },
        PakRequirement::UnnamedUrl { url, .. } => Some(url.clone()),
    };
    let from_path = url.is_some_and(|u| u.starts_with("file:")) && !line.text.contains("file:");
    if from_path {
        let written = match line.text.find("--hash") {
            Some(at) => &line.text[..at],
            None => &line.text,
        };
        return format!("path {}", written.trim());
    }
    requirement_text(&line.requirement)
}

fn requirement_text(requirement: &PakRequirement) -> String {
    match requirement {
        PakRequirement::Named(r) => r.to_string(),
        PakRequirement::UnnamedUrl { url, name } => match name {
            Some(name) => format!("{name} @ {url}"),
            None => url.clone(),
        },
    }
}

//! The build environments of source builds, made by the pipeline's own stages.
//!
//! Owns [`StackBuildEnvs`], the pipeline's answer to `source::BuildEnvironments`: a source's
//! build requirements are resolved for the target by comfypak's resolver (as a one-layer
//! stack with the image stack's indexes and pins, so a pinned package comes from its index
//! here too), fetched into the cache and installed by comfypak's installer into a layer
//! folder that the sandbox stacks over the base (or, for `[build] no-isolation`, the image's
//! own packages). Also the pipeline's source stages: direct source requirements built
//! before the resolution ([`prebuild`]), the resolver's hook for index sdists' metadata
//! ([`with_sdist_metadata`]), the index sdists the resolution chose built after it with
//! match-runtime pins ([`build_index_sdists`]), the direct sources that no-isolation or
//! match-runtime names built again after it, against the image ([`rebuild_against_image`]),
//! and their lock records. Must not build anything itself (`source` does) nor write outside
//! the folders it is given.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{mpsc, Arc, Mutex};

use pep508_rs::{PackageName, VersionOrUrl};
use sha2::{Digest, Sha256};
use url::Url;

use super::stages::fetch_selected;
use super::{BuildError, Progress, Session, Silent};
use crate::cuda::Backend;
use crate::digest::Sha256Hex;
use crate::fetch::select_wheels;
use crate::filename::{SafeFileName, SdistFilename};
use crate::index::core_metadata::CoreMetadata;
use crate::index::page::DistFile;
use crate::install::layout::EnvPaths;
use crate::install::{install_layer, InstallOptions, InstallWheel};
use crate::lock::{Lock, LockedDirectory, LockedSdist, LockedVcs, WheelHashes};
use crate::pak::{PakLine, PakRequirement};
use crate::resolve::formats::{SdistCandidates, SdistMetadata, SdistMetadataError};
use crate::resolve::to_lock::{resolve_stack, StackRequest};
use crate::runtime::{Base, Bases, Runtime, RuntimeOptions};
use crate::source::git::GitUrl;
use crate::source::{
    build_wheel, BuildEnvironments, BuildOptions, BuiltWheel, EnvError, MetadataOrigin, Source,
    SourceError, SourceKind,
};
use crate::stack::{Layer, Stack};
use crate::target::Target;

/// Build environments resolved from the indexes of `stack` for `target`, or, for a build
/// without isolation, the image's own environment.
pub struct StackBuildEnvs<'a> {
    pub session: &'a Session,
    pub stack: &'a Stack,
    /// The torch backend chosen for the stack (`build::resolve` chooses it, once).
    pub backend: Backend,
    pub target: Target,
    /// `[build] no-isolation`: every build environment is the image's packages for the
    /// target (this lock's entries that have a wheel), whatever the build requires.
    pub image: Option<Lock>,
}

/// The layer every build environment installs as.
const LAYER: &str = "build-env";

fn with_help(message: String, help: Option<String>) -> EnvError {
    EnvError { message, help }
}

fn plain(message: String) -> EnvError {
    EnvError {
        message,
        help: None,
    }
}

impl BuildEnvironments for StackBuildEnvs<'_> {
    type Resolved = Lock;

    fn resolve(&self, requirements: &[String]) -> Result<(Lock, Vec<String>), EnvError> {
        if let Some(image) = &self.image {
            let mut lock = image.clone();
            lock.packages
                .retain(|p| !p.wheels.is_empty() || !p.tool.comfypak.built.is_empty());
            let selected =
                select_wheels(&lock, None, &self.target).map_err(|e| plain(e.to_string()))?;
            let mut pins: Vec<String> = selected
                .iter()
                .map(|w| format!("{}=={} {}", w.package, w.version, w.sha256()))
                .collect();
            pins.sort();
            return Ok((lock, pins));
        }
        let mut text = requirements.join("\n");
        text.push('\n');
        let origin = self
            .stack
            .manifest
            .parent()
            .unwrap_or(Path::new("."))
            .join("[build-system].requires");
        let pak = crate::pak::parse_str(&origin, &text, &|_| None)
            .map_err(|e| with_help(e.to_string(), e.help().map(str::to_string)))?;
        let mut stack = self.stack.clone();
        stack.layers = vec![Layer {
            name: LAYER.to_string(),
            rank: 1,
            paks: vec![pak],
        }];
        stack.excluded.clear();
        let client = self.session.index_client();
        let lock = self
            .session
            .block_on(resolve_stack(
                &stack,
                &client,
                &StackRequest::new(std::slice::from_ref(&self.target), self.backend),
                &Silent,
            ))
            .map_err(|e| with_help(e.to_string(), e.help()))?;
        let selected =
            select_wheels(&lock, None, &self.target).map_err(|e| plain(e.to_string()))?;
        let mut pins: Vec<String> = selected
            .iter()
            .map(|w| format!("{}=={} {}", w.package, w.version, w.sha256()))
            .collect();
        pins.sort();
        Ok((lock, pins))
    }

    fn install(&self, lock: &Lock, venv: &str, layer_dir: &Path) -> Result<(), EnvError> {
        let selected = select_wheels(lock, None, &self.target).map_err(|e| plain(e.to_string()))?;
        let fetched = fetch_selected(
            self.session,
            &self.stack.manifest,
            &selected,
            self.session.network().offline,
            &Silent,
        )
        .map_err(|e| with_help(e.to_string(), e.help()))?;
        let wheels: Vec<InstallWheel> = selected
            .iter()
            .zip(&fetched)
            .map(|(s, c)| super::stages::install_wheel(s, c))
            .collect();
        let out = layer_dir.with_extension("install");
        let env = EnvPaths {
            venv: venv.to_string(),
            python: self.target.python,
        };
        let report = install_layer(
            self.session.cache(),
            &out,
            &env,
            LAYER,
            &wheels,
            &[],
            &InstallOptions::default(),
        )
        .map_err(|e| with_help(e.to_string(), e.help()))?;
        std::fs::rename(&report.dir, layer_dir)
            .map_err(|e| plain(format!("{}: {e}", layer_dir.display())))?;
        let _ = std::fs::remove_dir_all(&out);
        Ok(())
    }
}

/// Where a source requirement's source is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceOrigin {
    /// An sdist at an `http(s)` URL (its sha256 is required).
    Url(Url),
    /// An sdist on this machine (`file:///…/x-1.0.tar.gz`).
    File(PathBuf),
    /// A source folder on this machine (`file:///…/folder`).
    Directory(PathBuf),
    /// A git repository at a branch, tag or commit (`git+https://…@REF`).
    Git(GitUrl),
}

/// A stack requirement that was built from source before the resolution.
#[derive(Debug, Clone)]
pub struct BuiltSource {
    pub name: PackageName,
    pub origin: SourceOrigin,
    /// The sdist's sha256, or the folder's content hash.
    pub source_sha256: String,
    /// The sdist's size.
    pub size: Option<u64>,
    /// The commit a git source resolved to.
    pub commit: Option<String>,
    /// The wheel built for each target whose markers select the line.
    pub wheels: Vec<(Target, BuiltWheel)>,
    /// What was built (a `[build] no-isolation` or `[build.match-runtime]` source is built
    /// again from it after the resolution, against the image).
    pub source: Source,
}

/// What [`prebuild`] did: the stack whose source lines now name their built wheels (for the
/// resolver, which takes wheels and index sdists), and the builds (for the lock).
#[derive(Debug, Clone)]
pub struct Prebuilt {
    pub stack: Stack,
    pub sources: Vec<BuiltSource>,
}

/// How a pak requirement names a source (the requirement as a named one, where it is, the
/// sha256 it must have, and whether the name is only a stand-in until the build says it), or
/// None for anything else (index requirements, wheel URLs, other VCS: the resolver deals with
/// those).
type FoundSource = (pep508_rs::Requirement, SourceOrigin, Option<String>, bool);

fn source_of(line: &PakLine) -> Result<Option<FoundSource>, BuildError> {
    let mut unnamed = false;
    let requirement: pep508_rs::Requirement = match &line.requirement {
        PakRequirement::Named(requirement) => requirement.clone(),
        PakRequirement::UnnamedUrl { url, name } if url.starts_with("git+") => {
            // `git+https://host/x/CLIP.git` with no `#egg=`: as pip does, the project's name is
            // the one its build gives; until then the repository's name stands in for it.
            let name = match name {
                Some(name) => name.to_string(),
                None => {
                    unnamed = true;
                    let git = GitUrl::parse(url).map_err(|e| source_error(line, e.to_string()))?;
                    repository_name(&git.repository).ok_or_else(|| {
                        source_error(
                            line,
                            "the URL names no repository to take a project name from: write \
                             it as `name @ git+URL`"
                                .to_string(),
                        )
                    })?
                }
            };
            match pep508_rs::Requirement::from_str(&format!("{name} @ {url}")) {
                Ok(requirement) => requirement,
                Err(e) => return Err(source_error(line, e.to_string())),
            }
        }
        _ => return Ok(None),
    };
    let Some(VersionOrUrl::Url(url)) = &requirement.version_or_url else {
        return Ok(None);
    };
    let given = url.given().unwrap_or(url.as_str()).to_string();
    if given.starts_with("git+") {
        let git = GitUrl::parse(&given).map_err(|e| source_error(line, e.to_string()))?;
        return Ok(Some((requirement, SourceOrigin::Git(git), None, unnamed)));
    }
    let Some(found) = file_source_of(line, &requirement, &given) else {
        return Ok(None);
    };
    Ok(Some(found))
}

/// A stand-in project name from a repository URL's last segment (`…/CLIP.git` → `CLIP`).
fn repository_name(repository: &str) -> Option<String> {
    let last = repository.trim_end_matches('/').rsplit('/').next()?;
    let name = last.strip_suffix(".git").unwrap_or(last);
    PackageName::new(name.to_string())
        .ok()
        .map(|n| n.to_string())
}

/// [`source_of`] for an archive or folder URL.
fn file_source_of(
    line: &PakLine,
    requirement: &pep508_rs::Requirement,
    given: &str,
) -> Option<FoundSource> {
    let parsed = Url::parse(given).ok()?;
    let file = parsed
        .path_segments()
        .and_then(|mut s| s.next_back())
        .map(crate::http::percent_decode)
        .unwrap_or_default();
    if file.ends_with(".whl") {
        return None;
    }
    let is_sdist = SdistFilename::parse(&file, Some(&requirement.name)).is_ok();
    let mut sha256 = parsed.fragment().and_then(|f| {
        f.split('&')
            .find_map(|p| p.strip_prefix("sha256="))
            .map(str::to_ascii_lowercase)
    });
    if sha256.is_none() {
        sha256 = line
            .hashes
            .iter()
            .find_map(|h| h.strip_prefix("sha256:"))
            .map(str::to_string);
    }
    let mut bare = parsed.clone();
    bare.set_fragment(None);
    let origin = match parsed.scheme() {
        "http" | "https" if is_sdist => SourceOrigin::Url(bare),
        "file" => {
            let path = parsed.to_file_path().ok()?;
            if is_sdist {
                SourceOrigin::File(path)
            } else {
                SourceOrigin::Directory(path)
            }
        }
        _ => return None,
    };
    Some((requirement.clone(), origin, sha256, false))
}

fn source_error(line: &PakLine, message: String) -> BuildError {
    BuildError::Request {
        message: format!("{}: `{}`: {message}", line.location, line.text),
    }
}

/// The sdist of `url` in the cache (`sources/v1/<sha256>/<file>`), downloaded and checked
/// against `sha256` when it is not there yet.
fn fetch_sdist(
    session: &Session,
    line: &PakLine,
    url: &Url,
    sha256: &str,
) -> Result<PathBuf, BuildError> {
    fetch_sdist_for(
        session,
        &format!("{}: `{}`", line.location, line.text),
        url,
        sha256,
    )
}

/// [`fetch_sdist`] where errors start with `context` (a pak line, or the package and index).
fn fetch_sdist_for(
    session: &Session,
    context: &str,
    url: &Url,
    sha256: &str,
) -> Result<PathBuf, BuildError> {
    let bad = |message: String| BuildError::Request {
        message: format!("{context}: {message}"),
    };
    let file = url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .map(crate::http::percent_decode)
        .filter(|f| !f.is_empty() && !f.starts_with('.') && !f.contains(['/', '\\']))
        .ok_or_else(|| bad("the URL names no file".to_string()))?;
    let digest = Sha256Hex::parse(sha256).map_err(|e| bad(format!("`#sha256={sha256}`: {e}")))?;
    let dest = session
        .cache()
        .root()
        .join("sources/v1")
        .join(digest.as_str())
        .join(&file);
    if dest.is_file() && crate::source::sdist::sha256_file(&dest).ok().as_deref() == Some(sha256) {
        return Ok(dest);
    }
    let response = session.block_on(session.http().get(url, Default::default()))?;
    let actual = hex::encode(Sha256::digest(&response.body));
    if actual != sha256 {
        return Err(SourceError::HashMismatch {
            package: context.to_string(),
            path: PathBuf::from(crate::http::redact(url)),
            expected: sha256.to_string(),
            actual,
        }
        .into());
    }
    crate::fsutil::write_atomic(&dest, &response.body).map_err(|source| {
        BuildError::from(SourceError::Io {
            path: dest.clone(),
            source,
        })
    })?;
    Ok(dest)
}

/// Builds every source requirement of `stack` (sdist URLs, local sdists and folders) into a
/// wheel for each target, in the runtime of the target's base, puts the wheels into the
/// wheel cache and returns the stack with those lines rewritten to name the built wheels.
/// None when the stack has no source requirement (then no base is needed).
pub fn prebuild(
    session: &Session,
    stack: &Stack,
    backend: Backend,
    targets: &[Target],
    bases: &BuildBases,
    progress: &dyn Progress,
) -> Result<Option<Prebuilt>, BuildError> {
    let mut found = Vec::new();
    for (li, layer) in stack.layers.iter().enumerate() {
        for (pi, pak) in layer.paks.iter().enumerate() {
            for (ri, line) in pak.requirements.iter().enumerate() {
                if let Some(source) = source_of(line)? {
                    found.push(((li, pi, ri), line.clone(), source));
                }
            }
        }
    }
    if found.is_empty() {
        return Ok(None);
    }
    // Every build needs a base: say so before cloning or downloading anything.
    for ((li, _, _), line, (requirement, _, _, _)) in &found {
        for target in targets {
            if requirement.marker.evaluate(&target.markers(), &[])
                && !bases.has(target.platform.arch)
            {
                return Err(BuildError::SourceNeedsBase {
                    what: format!(
                        "{}: `{}`: building {} from source for {target}",
                        line.location, line.text, requirement.name
                    ),
                    layer: stack.layers[*li].name.clone(),
                    arch: target.platform.arch.as_str().to_string(),
                });
            }
        }
    }
    let cache_dir = session.cache().root().to_path_buf();
    let mut rewritten = stack.clone();
    let mut sources = Vec::new();
    // Last first: a line that becomes two (one per platform) does not move the ones before it.
    for ((li, pi, ri), line, (mut requirement, origin, sha256, unnamed)) in found.into_iter().rev()
    {
        let mut name = requirement.name.clone();
        let mut commit = None;
        let (kind, size) = match &origin {
            SourceOrigin::Git(git) => {
                let offline = session.network().offline;
                let (db, resolved) = crate::source::git::resolve(&cache_dir, git, offline)
                    .map_err(|e| source_error(&line, e.to_string()))?;
                let tree = crate::source::git::checkout(&cache_dir, git, &db, &resolved)
                    .map_err(|e| source_error(&line, e.to_string()))?;
                progress.note(&format!(
                    "{name}: {} at {} is commit {resolved}",
                    git.repository,
                    git.reference.as_deref().unwrap_or("HEAD")
                ));
                commit = Some(resolved.clone());
                (
                    SourceKind::GitCheckout {
                        root: tree,
                        subdirectory: git.subdirectory.clone(),
                        db,
                        commit: resolved,
                        origin: git.repository.clone(),
                    },
                    None,
                )
            }
            SourceOrigin::Url(url) => {
                let Some(sha256) = &sha256 else {
                    return Err(source_error(
                        &line,
                        "an sdist URL needs its sha256: add `#sha256=HEX` to the URL (or \
                         `--hash=sha256:HEX`)"
                            .to_string(),
                    ));
                };
                let path = fetch_sdist(session, &line, url, sha256)?;
                let size = std::fs::metadata(&path).ok().map(|m| m.len());
                (SourceKind::Sdist(path), size)
            }
            SourceOrigin::File(path) => {
                let size = std::fs::metadata(path).ok().map(|m| m.len());
                (SourceKind::Sdist(path.clone()), size)
            }
            SourceOrigin::Directory(path) => {
                if !path.is_dir() {
                    return Err(source_error(
                        &line,
                        format!("{} is not a folder", path.display()),
                    ));
                }
                (SourceKind::Directory(path.clone()), None)
            }
        };
        let source = Source {
            kind,
            package: name.to_string(),
            expected_sha256: sha256.clone(),
        };
        let mut wheels = Vec::new();
        for target in targets {
            if !requirement.marker.evaluate(&target.markers(), &[]) {
                continue;
            }
            // Every target here has a base (checked above, before anything was fetched).
            let runtime =
                bases.runtime(session, stack, target, &cache_dir, name.as_ref(), progress)?;
            let envs = StackBuildEnvs {
                session,
                stack,
                backend,
                target: target.clone(),
                image: None,
            };
            progress.stage(&format!("building {name} from source for {target}"));
            // A source built against the image is built here in isolation, with its
            // match-runtime requirements not pinned yet: this wheel only gives the resolution
            // its metadata, and [`rebuild_against_image`] replaces it after the resolution.
            let mut options = build_options(stack, &name, &cache_dir);
            if let Some(names) = stack.build.match_runtime.get(&name) {
                options
                    .extra_requires
                    .extend(names.iter().map(ToString::to_string));
            }
            let built = build_wheel(&source, target, &runtime, &envs, &options)?;
            progress.note(&format!(
                "{name}: {} {} in {:.1}s",
                built.filename,
                if built.cached {
                    "from the build cache"
                } else {
                    "built"
                },
                built.seconds
            ));
            wheels.push((target.clone(), built));
        }
        if unnamed {
            // The line gave no name: the built wheel's is the project's.
            if let Some((_, built)) = wheels.first() {
                let parsed: crate::filename::WheelFilename =
                    built.filename.parse().map_err(|e| {
                        source_error(&line, format!("the built wheel `{}`: {e}", built.filename))
                    })?;
                if parsed.name != name {
                    progress.note(&format!(
                        "{}: `{}` builds the project {}",
                        line.location, line.text, parsed.name
                    ));
                }
                name = parsed.name.clone();
                requirement.name = parsed.name;
            }
        }
        let mut lines = Vec::new();
        let distinct: BTreeSet<&str> = wheels.iter().map(|(_, w)| w.sha256.as_str()).collect();
        for (target, built) in &wheels {
            if distinct.len() > 1 || lines.is_empty() {
                let extra_marker = (distinct.len() > 1)
                    .then(|| format!("platform_machine == '{}'", target.platform.arch.as_str()));
                lines.push(wheel_line(
                    session,
                    &line,
                    &requirement,
                    built,
                    extra_marker,
                )?);
            }
        }
        let pak = &mut rewritten.layers[li].paks[pi];
        // Replace the line (in place, so the other lines keep their order).
        pak.requirements.splice(ri..=ri, lines);
        sources.push(BuiltSource {
            name,
            origin,
            source_sha256: wheels
                .first()
                .map(|(_, w)| w.source_sha256.clone())
                .unwrap_or_default(),
            size,
            commit,
            wheels,
            source,
        });
    }
    sources.reverse();
    Ok(Some(Prebuilt {
        stack: rewritten,
        sources,
    }))
}

/// The pak line `name[extras] @ file:///<wheel in the cache>#sha256=… ; marker` that stands
/// for `line` in the resolution.
fn wheel_line(
    session: &Session,
    line: &PakLine,
    requirement: &pep508_rs::Requirement,
    built: &BuiltWheel,
    extra_marker: Option<String>,
) -> Result<PakLine, BuildError> {
    let bad = |message: String| source_error(line, message);
    let cached = cache_built(session, built, &bad)?;
    let url = Url::from_file_path(&cached)
        .map_err(|()| bad(format!("{} is not an absolute path", cached.display())))?;
    let extras = if requirement.extras.is_empty() {
        String::new()
    } else {
        format!(
            "[{}]",
            requirement
                .extras
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        )
    };
    let mut markers: Vec<String> = Vec::new();
    if let Some(marker) = requirement.marker.try_to_string() {
        markers.push(format!("({marker})"));
    }
    markers.extend(extra_marker);
    let mut text = format!(
        "{} {extras}@ {url}#sha256={}",
        requirement.name, built.sha256
    );
    if !markers.is_empty() {
        text.push_str(&format!(" ; {}", markers.join(" and ")));
    }
    text.push('\n');
    let parsed = crate::pak::parse_str(&line.location.file, &text, &|_| None)
        .map_err(|e| bad(format!("the built wheel's line `{}`: {e}", text.trim())))?;
    let mut new = parsed
        .requirements
        .into_iter()
        .next()
        .ok_or_else(|| bad("the built wheel's line parsed to nothing".to_string()))?;
    new.location = line.location.clone();
    new.text = line.text.clone();
    new.hashes.clear();
    Ok(new)
}

/// Records the sources in `lock`: each built package gets `[packages.sdist]` or
/// `[packages.directory]`, its built wheels move from `wheels` (where the resolver put the
/// cache's `file://` URL) to `[packages.tool.comfypak] built`, without a location.
pub fn record_sources(lock: &mut Lock, stack: &Stack, prebuilt: &Prebuilt, lock_path: &Path) {
    let lock_dir = lock_path.parent().unwrap_or(Path::new("."));
    for package in &mut lock.packages {
        let Some(source) = prebuilt.sources.iter().find(|s| s.name == package.name) else {
            continue;
        };
        let mut built = std::mem::take(&mut package.wheels);
        for wheel in &mut built {
            wheel.url = None;
            wheel.path = None;
            if let Some((_, made)) = source
                .wheels
                .iter()
                .find(|(_, w)| Some(w.sha256.as_str()) == wheel.sha256().map(|s| s.as_str()))
            {
                wheel.size = Some(made.size);
            }
        }
        package.tool.comfypak.built = built;
        package.index = None;
        match &source.origin {
            SourceOrigin::Url(url) => {
                package.sdist = Some(sdist_entry(Some(url.to_string()), None, source));
            }
            SourceOrigin::File(path) => {
                let shown = relative_to(lock_dir, path);
                package.sdist = Some(sdist_entry(None, Some(shown), source));
            }
            SourceOrigin::Git(git) => {
                package.vcs = Some(LockedVcs {
                    kind: "git".to_string(),
                    url: git.repository.clone(),
                    requested_revision: git.reference.clone(),
                    commit_id: source.commit.clone().unwrap_or_default(),
                    subdirectory: git.subdirectory.clone(),
                });
            }
            SourceOrigin::Directory(path) => {
                package.directory = Some(LockedDirectory {
                    path: relative_to(lock_dir, path),
                });
                package.tool.comfypak.source_hash =
                    Some(format!("sha256:{}", source.source_sha256));
            }
        }
    }
    // The layers' input hashes are over the pak lines as written, not as rewritten.
    let target_line = crate::resolve::to_lock::lock_target_line(lock);
    for layer in &mut lock.tool.comfypak.layers {
        if let Some(original) = stack.layer(&layer.name) {
            layer.inputs_hash = crate::resolve::to_lock::layer_inputs_hash(original, &target_line);
        }
    }
}

/// `path` relative to the folder `from` (with `..` where it lies outside it), as PEP 751
/// records local paths; `path` itself when the two share no root.
fn relative_to(from: &Path, path: &Path) -> String {
    let from = std::path::absolute(from).unwrap_or_else(|_| from.to_path_buf());
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = path.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    if common == 0 {
        return path.display().to_string();
    }
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for part in &to[common..] {
        out.push(part);
    }
    if out.as_os_str().is_empty() {
        ".".to_string()
    } else {
        out.display().to_string()
    }
}

fn sdist_entry(url: Option<String>, path: Option<String>, source: &BuiltSource) -> LockedSdist {
    let name = match &source.origin {
        SourceOrigin::Url(url) => url
            .path_segments()
            .and_then(|mut s| s.next_back())
            .map(crate::http::percent_decode),
        SourceOrigin::File(path) => path.file_name().map(|n| n.to_string_lossy().into_owned()),
        SourceOrigin::Directory(_) | SourceOrigin::Git(_) => None,
    };
    LockedSdist {
        name,
        url,
        path,
        size: source.size,
        hashes: WheelHashes {
            sha256: Sha256Hex::parse(&source.source_sha256).ok(),
            other: BTreeMap::new(),
        },
    }
}

/// The build options of project `name`: the defaults, with the stack's
/// `[build.config-settings.NAME]`.
pub fn build_options(stack: &Stack, name: &PackageName, cache_dir: &Path) -> BuildOptions {
    let mut options = BuildOptions::new(cache_dir);
    if let Some(timeout) = stack.build.timeout {
        options.timeout = timeout;
    }
    if let Some(settings) = stack.build.config_settings.get(name) {
        options.config_settings = settings.clone();
    }
    options
}

/// The bases source builds run in (`--build-base`, `[build] base`, else the image's), with
/// what pulling a registry one needs: such a base is pulled when a build first needs it, for
/// that architecture only (a resolution that builds nothing contacts no registry), by the
/// digest the lock pins for it when it pins one.
///
/// It also holds the target runtimes made from them, one per (base, target), shared by every
/// stage of one resolution (direct sources, index sdists' metadata, their builds, the rebuild
/// against the image): each base is pulled or unpacked, and its interpreter probed, once.
#[derive(Debug, Clone, Default)]
pub struct BuildBases {
    pub bases: Bases,
    /// Plain HTTP for a registry on this machine (`--insecure-base`).
    pub insecure: bool,
    /// The lock's `[[tool.comfypak.bases]]`: a tag pinned there is pulled by that digest.
    pub locked: Vec<crate::lock::LockedBase>,
    runtimes: RuntimeCache,
}

/// The runtimes made so far, by `base|target`.
#[derive(Clone, Default)]
struct RuntimeCache(Arc<Mutex<BTreeMap<String, Arc<Runtime>>>>);

impl std::fmt::Debug for RuntimeCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<String> = match self.0.lock() {
            Ok(map) => map.keys().cloned().collect(),
            Err(_) => Vec::new(),
        };
        f.debug_tuple("RuntimeCache").field(&keys).finish()
    }
}

impl BuildBases {
    pub fn new(bases: Bases, insecure: bool, locked: Vec<crate::lock::LockedBase>) -> Self {
        BuildBases {
            bases,
            insecure,
            locked,
            runtimes: RuntimeCache::default(),
        }
    }

    /// Whether `arch` has a base (named; a registry one is not pulled here).
    pub fn has(&self, arch: crate::target::Arch) -> bool {
        self.bases.for_arch(arch).is_some()
    }

    /// The base of `arch` as named (a path, or a `docker://` reference), for keys and messages.
    fn named(&self, arch: crate::target::Arch) -> Option<&Path> {
        self.bases.for_arch(arch)
    }

    /// The base of `arch` on disk: the path as given, or a registry image pulled into the
    /// cache (its layout). None when `arch` has no base.
    fn on_disk(
        &self,
        session: &Session,
        arch: crate::target::Arch,
        progress: &dyn Progress,
    ) -> Result<Option<PathBuf>, BuildError> {
        use crate::registry::pull::{pull_base, BaseReference, PullOptions};
        let Some(base) = self.bases.for_arch(arch) else {
            return Ok(None);
        };
        let text = base.to_string_lossy();
        if !BaseReference::is_reference(&text) {
            return Ok(Some(base.to_path_buf()));
        }
        let reference: BaseReference = text.parse()?;
        let written = reference.to_string();
        let wanted = match (
            &reference.digest,
            self.locked.iter().find(|b| b.reference == written),
        ) {
            (None, Some(pin)) => reference.pinned(&pin.digest),
            _ => reference.clone(),
        };
        let pulled = session.block_on(pull_base(
            session.http(),
            &wanted,
            &[arch],
            session.cache().root(),
            &PullOptions {
                insecure: self.insecure,
                ..PullOptions::default()
            },
        ))?;
        progress.note(&format!(
            "build base {written} for {arch}: {} ({})",
            pulled.digest,
            if pulled.cached { "cached" } else { "pulled" }
        ));
        Ok(Some(pulled.layout))
    }
}

impl BuildBases {
    /// The target runtime of `target` in its build base, made when first needed (the base
    /// pulled or unpacked, its interpreter probed) and then shared.
    fn runtime(
        &self,
        session: &Session,
        stack: &Stack,
        target: &Target,
        cache_dir: &Path,
        what: &str,
        progress: &dyn Progress,
    ) -> Result<Arc<Runtime>, BuildError> {
        let base = self
            .named(target.platform.arch)
            .ok_or_else(|| BuildError::Request {
                message: format!(
                    "building {what} from source for {target} needs a base to run the target's \
                     Python: set `[base]` in stack.toml or pass --base"
                ),
            })?;
        let key = format!("{}|{target}", base.display());
        // Held while a runtime is made: two stages asking at once make it once.
        let mut made = self.runtimes.0.lock().map_err(|_| BuildError::Request {
            message: "a build stage panicked while making a target runtime".to_string(),
        })?;
        if let Some(runtime) = made.get(&key) {
            return Ok(Arc::clone(runtime));
        }
        let on_disk = self
            .on_disk(session, target.platform.arch, progress)?
            .unwrap_or_else(|| base.to_path_buf());
        let runtime = Arc::new(Runtime::for_platform(
            &Base::from_path(&on_disk)?,
            target,
            &stack.target.venv,
            &RuntimeOptions {
                cache_dir: cache_dir.to_path_buf(),
                timeout: crate::runtime::DEFAULT_TIMEOUT,
            },
        )?);
        made.insert(key, Arc::clone(&runtime));
        Ok(runtime)
    }
}

/// A message to the thread that answers index sdists' metadata for the resolver.
enum SdistMessage {
    Metadata {
        target: Target,
        name: PackageName,
        version: pep440_rs::Version,
        file: Box<DistFile>,
        reply: mpsc::Sender<Result<CoreMetadata, SdistMetadataError>>,
    },
    Stop,
}

/// The resolver's [`SdistMetadata`] hook: hands each question to the thread running
/// [`serve_sdist_metadata`] (which holds the session) and waits for the answer.
pub struct SdistHook {
    tx: Mutex<mpsc::Sender<SdistMessage>>,
}

impl std::fmt::Debug for SdistHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SdistHook")
    }
}

impl SdistMetadata for SdistHook {
    fn metadata(
        &self,
        target: &Target,
        name: &PackageName,
        version: &pep440_rs::Version,
        file: &DistFile,
    ) -> Result<CoreMetadata, SdistMetadataError> {
        let stopped = || SdistMetadataError {
            message: format!(
                "{name} {version}: the source-build worker stopped before reading {}",
                file.filename
            ),
            help: None,
            build_failed: false,
        };
        let (reply, answer) = mpsc::channel();
        self.tx
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .send(SdistMessage::Metadata {
                target: target.clone(),
                name: name.clone(),
                version: version.clone(),
                file: Box::new(file.clone()),
                reply,
            })
            .map_err(|_| stopped())?;
        answer.recv().map_err(|_| stopped())?
    }
}

/// Runs `resolve` (a resolution) with index sdists as candidates where every target has a
/// base to build them in: their metadata is answered on a second thread that holds the
/// session (PEP 643 `PKG-INFO`, else the prepare hook in the target runtime). Without a
/// base, `resolve` gets no hook and sdists stay out, as before.
pub fn with_sdist_metadata<T>(
    session: &Session,
    stack: &Stack,
    backend: Backend,
    targets: &[Target],
    bases: &BuildBases,
    progress: &dyn Progress,
    resolve: impl FnOnce(Option<SdistCandidates>) -> T,
) -> T {
    let buildable = !targets.is_empty() && targets.iter().all(|t| bases.has(t.platform.arch));
    if !buildable {
        return resolve(None);
    }
    let (tx, rx) = mpsc::channel();
    let stop = tx.clone();
    let hook = SdistCandidates {
        hook: Arc::new(SdistHook { tx: Mutex::new(tx) }),
    };
    std::thread::scope(|scope| {
        scope.spawn(|| serve_sdist_metadata(session, stack, backend, bases, rx, progress));
        let outcome = resolve(Some(hook));
        // The resolver's tasks may outlive it and keep the hook: stop the worker by message.
        let _ = stop.send(SdistMessage::Stop);
        outcome
    })
}

/// Answers the resolver's questions about index sdists until told to stop.
fn serve_sdist_metadata(
    session: &Session,
    stack: &Stack,
    backend: Backend,
    bases: &BuildBases,
    rx: mpsc::Receiver<SdistMessage>,
    progress: &dyn Progress,
) {
    while let Ok(SdistMessage::Metadata {
        target,
        name,
        version,
        file,
        reply,
    }) = rx.recv()
    {
        let answer = index_sdist_metadata(
            session, stack, backend, bases, &target, &name, &version, &file, progress,
        )
        .map_err(|e| SdistMetadataError {
            message: e.to_string(),
            help: e.help(),
            build_failed: e.is_build_failure(),
        });
        let _ = reply.send(answer);
    }
}

/// The sha256 an index gives for an sdist, or why it cannot be built.
fn index_sha256(context: &str, sha256: Option<&str>) -> Result<String, BuildError> {
    sha256
        .map(str::to_ascii_lowercase)
        .ok_or_else(|| BuildError::Request {
            message: format!(
                "{context}: the index gives no sha256 for it, and comfypak builds only sources \
                 it can verify (use an index that publishes digests)"
            ),
        })
}

#[allow(clippy::too_many_arguments)]
fn index_sdist_metadata(
    session: &Session,
    stack: &Stack,
    backend: Backend,
    bases: &BuildBases,
    target: &Target,
    name: &PackageName,
    version: &pep440_rs::Version,
    file: &DistFile,
    progress: &dyn Progress,
) -> Result<CoreMetadata, BuildError> {
    let context = format!("{name} {version} (sdist {})", file.filename);
    let sha256 = index_sha256(&context, file.hashes.sha256.as_deref())?;
    let path = fetch_sdist_for(session, &context, &file.url, &sha256)?;
    let source = Source {
        kind: SourceKind::Sdist(path),
        package: name.to_string(),
        expected_sha256: Some(sha256),
    };
    let cache_dir = session.cache().root().to_path_buf();
    let runtime = bases.runtime(session, stack, target, &cache_dir, name.as_ref(), progress)?;
    let envs = StackBuildEnvs {
        session,
        stack,
        backend,
        target: target.clone(),
        image: None,
    };
    // Before the resolution, match-runtime requirements are not pinned yet (the build after
    // it pins them), and a no-isolation build's metadata is prepared in isolation.
    let mut options = build_options(stack, name, &cache_dir);
    if let Some(names) = stack.build.match_runtime.get(name) {
        options
            .extra_requires
            .extend(names.iter().map(ToString::to_string));
    }
    let (meta, origin) = crate::source::metadata(&source, target, &runtime, &envs, &options)?;
    let meta_name = crate::index::page::normalize_name(&meta.name);
    if meta_name != name.as_ref() || &meta.version != version {
        return Err(SourceError::BadOutput {
            package: name.to_string(),
            what: format!(
                "metadata for {} {} out of the sdist {}, which the index lists as {name} {version}",
                meta.name, meta.version, file.filename
            ),
        }
        .into());
    }
    progress.note(&format!(
        "{name} {version}: metadata of the sdist {} {}",
        file.filename,
        match origin {
            MetadataOrigin::PkgInfo => "read from its PKG-INFO (PEP 643)",
            MetadataOrigin::PrepareHook => "from prepare_metadata_for_build_wheel",
            MetadataOrigin::BuiltWheel => "from a build (the backend has no prepare hook)",
            MetadataOrigin::Cache => "from the cache",
        }
    ));
    Ok(meta)
}

/// `name==VERSION` of the version of `name` the image installs for `target` (uv's
/// match-runtime), or None when it installs none.
fn match_runtime_pin(image: &Lock, target: &Target, name: &PackageName) -> Option<String> {
    let prepared = crate::lock::PreparedTarget::new(target);
    image
        .packages
        .iter()
        .find(|p| &p.name == name && prepared.applies_to(p).unwrap_or(false))
        .map(|p| format!("{name}=={}", p.version))
}

/// The build options of `name` for a build after the resolution: the defaults and config
/// settings, and its `[build.match-runtime]` requirements pinned to what the image installs
/// for `target` (an error, worded by `bad`, when the image installs one of them not at all).
fn options_against_image(
    stack: &Stack,
    image: &Lock,
    target: &Target,
    name: &PackageName,
    cache_dir: &Path,
    bad: &dyn Fn(String) -> BuildError,
) -> Result<BuildOptions, BuildError> {
    let mut options = build_options(stack, name, cache_dir);
    for runtime_dep in stack.build.match_runtime.get(name).into_iter().flatten() {
        options
            .extra_requires
            .push(
                match_runtime_pin(image, target, runtime_dep).ok_or_else(|| {
                    bad(format!(
                        "[build.match-runtime] asks for the image's {runtime_dep}, which \
                     the image does not install for {target}: add it to a pak file"
                    ))
                })?,
            );
    }
    Ok(options)
}

/// The lock's record of a wheel comfypak built (`[packages.tool.comfypak] built`: no location).
fn locked_built_wheel(
    made: &BuiltWheel,
    bad: &dyn Fn(String) -> BuildError,
) -> Result<crate::lock::LockedWheel, BuildError> {
    Ok(crate::lock::LockedWheel {
        name: SafeFileName::parse(&made.filename).map_err(|e| bad(e.to_string()))?,
        url: None,
        path: None,
        upload_time: None,
        size: Some(made.size),
        hashes: WheelHashes::sha256(
            Sha256Hex::parse(&made.sha256).map_err(|e| bad(e.to_string()))?,
        ),
    })
}

/// Copies a built wheel into the wheel cache (where install finds locked wheels by sha256)
/// unless it is there already, and returns its path there; `bad` words a name or hash that
/// does not parse.
fn cache_built(
    session: &Session,
    built: &BuiltWheel,
    bad: &dyn Fn(String) -> BuildError,
) -> Result<PathBuf, BuildError> {
    let sha = Sha256Hex::parse(&built.sha256).map_err(|e| bad(e.to_string()))?;
    let filename = SafeFileName::parse(&built.filename).map_err(|e| bad(e.to_string()))?;
    let cached = session.cache().wheel_path(&sha, &filename);
    if !cached.is_file() {
        let bytes = std::fs::read(&built.path).map_err(|source| SourceError::Io {
            path: built.path.clone(),
            source,
        })?;
        crate::fsutil::write_atomic(&cached, &bytes).map_err(|source| SourceError::Io {
            path: cached.clone(),
            source,
        })?;
    }
    Ok(cached)
}

/// Builds the index sdists the resolution chose (lock entries with `[packages.sdist]` from an
/// index and no built wheel yet) for every target no published wheel of them fits, records
/// the built wheels under `[packages.tool.comfypak] built` and puts them into the wheel
/// cache. Returns how many wheels it built or took from the build cache.
pub fn build_index_sdists(
    session: &Session,
    lock: &mut Lock,
    stack: &Stack,
    backend: Backend,
    targets: &[Target],
    bases: &BuildBases,
    progress: &dyn Progress,
) -> Result<usize, BuildError> {
    let cache_dir = session.cache().root().to_path_buf();
    let mut count = 0;
    let image = lock.clone();
    for package in &mut lock.packages {
        let from_index = package.index.is_some()
            && package.vcs.is_none()
            && package.directory.is_none()
            && package.tool.comfypak.built.is_empty();
        let Some(sdist) = package.sdist.clone().filter(|_| from_index) else {
            continue;
        };
        let Some(url) = sdist.url.as_deref() else {
            continue;
        };
        let name = package.name.clone();
        let version = package.version.clone();
        let context = format!(
            "{name} {version} (sdist {})",
            sdist.name.as_deref().unwrap_or(url)
        );
        let bad = |message: String| BuildError::Request {
            message: format!("{context}: {message}"),
        };
        let url = Url::parse(url).map_err(|e| bad(format!("the locked URL: {e}")))?;
        let sha256 = index_sha256(&context, sdist.hashes.sha256.as_ref().map(|s| s.as_str()))?;
        let mut source = None;
        let mut built: Vec<crate::lock::LockedWheel> = Vec::new();
        for target in targets {
            let prepared = crate::lock::PreparedTarget::new(target);
            if !prepared.applies_to(package).unwrap_or(false)
                || prepared.wheel_for(package).is_some()
            {
                continue;
            }
            let source = match &source {
                Some(source) => source,
                None => {
                    let path = fetch_sdist_for(session, &context, &url, &sha256)?;
                    source.insert(Source {
                        kind: SourceKind::Sdist(path),
                        package: name.to_string(),
                        expected_sha256: Some(sha256.clone()),
                    })
                }
            };
            let runtime =
                bases.runtime(session, stack, target, &cache_dir, name.as_ref(), progress)?;
            let options = options_against_image(stack, &image, target, &name, &cache_dir, &bad)?;
            let envs = StackBuildEnvs {
                session,
                stack,
                backend,
                target: target.clone(),
                image: stack
                    .build
                    .no_isolation
                    .contains(&name)
                    .then(|| image.clone()),
            };
            progress.stage(&format!(
                "building {name} {version} from its sdist for {target}"
            ));
            let made = build_wheel(source, target, &runtime, &envs, &options)?;
            let parsed: crate::filename::WheelFilename = made
                .filename
                .parse()
                .map_err(|e| bad(format!("the built wheel `{}`: {e}", made.filename)))?;
            if parsed.version != version {
                return Err(SourceError::BadOutput {
                    package: name.to_string(),
                    what: format!(
                        "`{}`, but the resolver chose {name} {version} from the sdist's metadata",
                        made.filename
                    ),
                }
                .into());
            }
            progress.note(&format!(
                "{name}: {} {} in {:.1}s",
                made.filename,
                if made.cached {
                    "from the build cache"
                } else {
                    "built"
                },
                made.seconds
            ));
            cache_built(session, &made, &bad)?;
            count += 1;
            if !built
                .iter()
                .any(|w| w.sha256().map(|s| s.as_str()) == Some(made.sha256.as_str()))
            {
                built.push(locked_built_wheel(&made, &bad)?);
            }
        }
        package.tool.comfypak.built = built;
    }
    Ok(count)
}

/// The resolver-relevant metadata of a built wheel, for comparing two builds of one source.
fn resolved_metadata(
    wheel: &BuiltWheel,
    bad: &dyn Fn(String) -> BuildError,
) -> Result<CoreMetadata, BuildError> {
    let parsed: crate::filename::WheelFilename = wheel
        .filename
        .parse()
        .map_err(|e| bad(format!("the built wheel `{}`: {e}", wheel.filename)))?;
    let bytes = crate::source::wheel_metadata(&wheel.path, &parsed)
        .map_err(|e| bad(format!("the built wheel `{}`: {e}", wheel.filename)))?;
    CoreMetadata::parse(&bytes).map_err(|e| {
        bad(format!(
            "the built wheel `{}`'s METADATA: {e}",
            wheel.filename
        ))
    })
}

/// Builds the direct sources that `[build] no-isolation` or `[build.match-runtime]` names
/// again, now that the resolution has chosen the image's packages: against those packages
/// (no isolation) or with the match-runtime requirements pinned to the versions the image
/// installs (uv's match-runtime). [`prebuild`] built them in isolation, for their metadata
/// only; the wheel built here replaces that one in `[packages.tool.comfypak] built` and goes
/// into the wheel cache. Its name, version and dependencies must be the ones the resolution
/// used, or it is an error (nothing of it is locked). Returns how many wheels it built or took
/// from the build cache.
#[allow(clippy::too_many_arguments)]
pub fn rebuild_against_image(
    session: &Session,
    lock: &mut Lock,
    stack: &Stack,
    backend: Backend,
    bases: &BuildBases,
    prebuilt: &Prebuilt,
    progress: &dyn Progress,
) -> Result<usize, BuildError> {
    let cache_dir = session.cache().root().to_path_buf();
    let mut count = 0;
    let image = lock.clone();
    for source in &prebuilt.sources {
        let name = &source.name;
        let no_isolation = stack.build.no_isolation.contains(name);
        if !no_isolation && !stack.build.match_runtime.contains_key(name) {
            continue;
        }
        let context = format!("{name} (from {})", source_label(&source.origin));
        let bad = |message: String| BuildError::Request {
            message: format!("{context}: {message}"),
        };
        // The image without the package itself: its own first build is not part of it.
        let mut others = image.clone();
        others.packages.retain(|p| &p.name != name);
        // The first build's sha256 → the one made here, per target.
        let mut replaced: BTreeMap<String, crate::lock::LockedWheel> = BTreeMap::new();
        for (target, first) in &source.wheels {
            let runtime =
                bases.runtime(session, stack, target, &cache_dir, name.as_ref(), progress)?;
            let options = options_against_image(stack, &image, target, name, &cache_dir, &bad)?;
            let envs = StackBuildEnvs {
                session,
                stack,
                backend,
                target: target.clone(),
                image: no_isolation.then(|| others.clone()),
            };
            progress.stage(&format!(
                "building {name} again for {target}, against the image ({})",
                if no_isolation {
                    "no isolation"
                } else {
                    "match-runtime"
                }
            ));
            let made = build_wheel(&source.source, target, &runtime, &envs, &options)?;
            let (before, after) = (
                resolved_metadata(first, &bad)?,
                resolved_metadata(&made, &bad)?,
            );
            let key = |m: &CoreMetadata| {
                (
                    crate::index::page::normalize_name(&m.name),
                    m.version.clone(),
                    m.requires_python.clone(),
                    m.requires_dist.clone(),
                    m.provides_extra.clone(),
                )
            };
            if key(&before) != key(&after) {
                return Err(SourceError::BadOutput {
                    package: name.to_string(),
                    what: format!(
                        "`{}`, built against the image, whose metadata ({} {}, requires {}) is \
                         not what its build in isolation gave the resolution ({} {}, requires \
                         {}): make the project's dependencies independent of what is installed \
                         at build time",
                        made.filename,
                        after.name,
                        after.version,
                        requirements_text(&after),
                        before.name,
                        before.version,
                        requirements_text(&before),
                    ),
                }
                .into());
            }
            progress.note(&format!(
                "{name}: {} {} against the image in {:.1}s",
                made.filename,
                if made.cached {
                    "from the build cache"
                } else {
                    "built"
                },
                made.seconds
            ));
            cache_built(session, &made, &bad)?;
            count += 1;
            let wheel = locked_built_wheel(&made, &bad)?;
            if let Some(other) = replaced.get(&first.sha256) {
                if other.sha256() != wheel.sha256() {
                    return Err(bad(format!(
                        "one wheel of its build in isolation served several platforms, but \
                         built against the image they differ ({} and {}): give the line a \
                         platform_machine marker per architecture",
                        other.name, wheel.name
                    )));
                }
            }
            replaced.insert(first.sha256.clone(), wheel);
        }
        for package in lock.packages.iter_mut().filter(|p| &p.name == name) {
            for wheel in &mut package.tool.comfypak.built {
                let Some(sha) = wheel.sha256().map(|s| s.as_str().to_string()) else {
                    continue;
                };
                if let Some(new) = replaced.get(&sha) {
                    *wheel = new.clone();
                }
            }
        }
    }
    Ok(count)
}

/// `a, b>=1` (or `nothing`), for messages.
fn requirements_text(meta: &CoreMetadata) -> String {
    if meta.requires_dist.is_empty() {
        return "nothing".to_string();
    }
    meta.requires_dist
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where a direct source comes from, for messages.
fn source_label(origin: &SourceOrigin) -> String {
    match origin {
        SourceOrigin::Url(url) => crate::http::redact(url),
        SourceOrigin::File(path) | SourceOrigin::Directory(path) => path.display().to_string(),
        SourceOrigin::Git(git) => git.repository.clone(),
    }
}

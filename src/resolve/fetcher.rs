//! The async side of the resolver: project pages and wheel metadata, fetched once each,
//! concurrently, and prefetched ahead of the solver.
//!
//! Owns: the shared maps of in-flight and finished fetches (one future per project page,
//! one per (project, version) METADATA), and the prefetch walk: as soon as a project is
//! discovered its page is requested; when the page arrives the likely version (the
//! preferred one, else the newest usable one in the range that discovered it) gets its
//! METADATA requested; when that arrives its dependencies are discovered in turn. So the
//! solver, which runs on a blocking thread and waits on these futures, waits on the depth of
//! the dependency graph, not on the number of packages. The HTTP client bounds concurrency.
//! A page is read in full only for the files whose names may fit the target
//! (`filename::wheel_may_fit`); the rest are kept by name, for explanations. A likely version
//! lies within the pak files' bounds (requirements and constraints), so no prefetch is spent
//! on a version the solver can never choose. Every fetch is logged with its requests and the
//! fetch that caused it (`profile::TraceLog`), and so is every wait of the solver on one.
//! Must not: choose versions for the resolution (the provider does), or call the caller's
//! progress object directly (it is not `'static`): progress goes out as [`Event`]s.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt, Shared};
use pep440_rs::Version;
use pep508_rs::{ExtraName, MarkerEnvironment, PackageName, VersionOrUrl};
use pubgrub::Ranges;
use tokio::runtime::Handle;
use tokio::sync::mpsc::UnboundedSender;

use super::backend::family_refusal;
use super::candidates::{CandidateContext, ProjectCandidates};
use super::formats::is_sdist_name;
use super::profile::{NodeKey, ResolveProfile, TraceLog};
use super::ranges::specifiers_to_ranges;
use crate::filename::wheel_may_fit;
use crate::http::redact;
use crate::index::client::{IndexClient, IndexError};
use crate::index::core_metadata::CoreMetadata;
use crate::index::page::DistFile;
use crate::index::trace::FetchTrace;
use crate::stack::IndexSettings;

pub(crate) type PageResult = Result<Arc<ProjectCandidates>, Arc<IndexError>>;
pub(crate) type MetadataResult = Result<Arc<CoreMetadata>, Arc<IndexError>>;
pub(crate) type SharedPage = Shared<BoxFuture<'static, PageResult>>;
pub(crate) type SharedMetadata = Shared<BoxFuture<'static, MetadataResult>>;

/// Progress, sent to the task that owns the caller's progress object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    Discovered(PackageName),
    MetadataFetched(PackageName),
    /// Something the user must be told (a file name that breaks the spec, accepted).
    Warning(String),
}

/// A `name @ URL` wheel from a pak line: the only candidate of its project.
#[derive(Debug, Clone)]
pub(crate) struct DirectWheel {
    pub file: DistFile,
}

/// What the fetcher needs to know about the resolution it serves.
pub(crate) struct FetcherSettings {
    pub client: IndexClient,
    pub indexes: IndexSettings,
    pub candidates: CandidateContext,
    pub direct: BTreeMap<PackageName, DirectWheel>,
    pub env: MarkerEnvironment,
    /// Preferred versions (already without the packages being upgraded).
    pub preferences: BTreeMap<PackageName, Version>,
    /// Ranges every version chosen must lie in, whoever asks: the pak files' requirements
    /// and constraints. A prefetch outside them would be wasted.
    pub bounds: BTreeMap<PackageName, Ranges<Version>>,
    pub prerelease: bool,
    /// Index sdists as candidates: the hook reading their metadata.
    pub sdists: Option<super::formats::SdistCandidates>,
    /// The target (the sdist hook builds for it).
    pub target: crate::target::Target,
}

pub(crate) struct Fetcher {
    settings: FetcherSettings,
    handle: Handle,
    pages: Mutex<HashMap<PackageName, SharedPage>>,
    metadata: Mutex<HashMap<(PackageName, Version), SharedMetadata>>,
    prefetched: Mutex<HashSet<(PackageName, Version, Vec<ExtraName>)>>,
    events: UnboundedSender<Event>,
    stopped: AtomicBool,
    metadata_reads: AtomicUsize,
    /// Every page and METADATA fetch, with its requests and cause, for the profile.
    log: Mutex<TraceLog>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain maps behind; keep going.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn task_failed(what: &str, error: tokio::task::JoinError) -> Arc<IndexError> {
    Arc::new(IndexError::Config(format!(
        "the task fetching {what} failed: {error}"
    )))
}

impl Fetcher {
    pub fn new(settings: FetcherSettings, handle: Handle, events: UnboundedSender<Event>) -> Self {
        Fetcher {
            settings,
            handle,
            pages: Mutex::default(),
            metadata: Mutex::default(),
            prefetched: Mutex::default(),
            events,
            stopped: AtomicBool::new(false),
            metadata_reads: AtomicUsize::new(0),
            log: Mutex::new(TraceLog::new(Instant::now())),
        }
    }

    /// The solver waited on `key` from `since` until now (for the profile).
    pub fn waited(&self, key: NodeKey, since: Instant) {
        let mut log = lock(&self.log);
        if let Some(id) = log.id(&key) {
            log.waited(id, since);
        }
    }

    /// Where the time went so far; `solver` is how long the solver ran.
    pub fn profile(&self, solver: Duration) -> ResolveProfile {
        lock(&self.log).profile(solver)
    }

    /// How many METADATA reads were started (cache hits included).
    pub fn metadata_reads(&self) -> usize {
        self.metadata_reads.load(Ordering::Relaxed)
    }

    /// Stops the prefetch walk (the resolution is over).
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    /// The candidates of `name`, fetched once; the fetch starts now if it has not yet.
    pub fn page(self: &Arc<Self>, name: &PackageName) -> SharedPage {
        self.page_from(name, None)
    }

    /// [`Fetcher::page`], where the fetch of node `parent` (the METADATA that named `name`)
    /// caused it.
    fn page_from(self: &Arc<Self>, name: &PackageName, parent: Option<usize>) -> SharedPage {
        let mut pages = lock(&self.pages);
        if let Some(page) = pages.get(name) {
            return page.clone();
        }
        let id = lock(&self.log).node(NodeKey::Page(name.clone()), parent);
        let this = Arc::clone(self);
        let owned = name.clone();
        let task = self.handle.spawn(async move {
            let mut trace = FetchTrace::default();
            let page = this.load_page(&owned, &mut trace).await;
            lock(&this.log).finish(id, trace);
            page
        });
        let what = format!("the index page of {name}");
        let shared = async move { task.await.unwrap_or_else(|e| Err(task_failed(&what, e))) }
            .boxed()
            .shared();
        pages.insert(name.clone(), shared.clone());
        let _ = self.events.send(Event::Discovered(name.clone()));
        shared
    }

    /// The candidates of `name` if their page has already arrived.
    pub fn ready_page(&self, name: &PackageName) -> Option<Arc<ProjectCandidates>> {
        let pages = lock(&self.pages);
        match pages.get(name)?.peek()? {
            Ok(page) => Some(Arc::clone(page)),
            Err(_) => None,
        }
    }

    async fn load_page(&self, name: &PackageName, trace: &mut FetchTrace) -> PageResult {
        let ctx = &self.settings.candidates;
        if let Some(direct) = self.settings.direct.get(name) {
            let url = redact(&direct.file.url);
            return Ok(Arc::new(ProjectCandidates::from_files(
                name,
                "direct",
                &url,
                vec![direct.file.clone()],
                Vec::new(),
                ctx,
            )));
        }
        // A torch family package that the backend cannot take (a CUDA wheel on `cpu`, or a
        // backend index without a definition): no versions, and the reason.
        if let Some(why) = family_refusal(&self.settings.indexes, ctx.backend, name) {
            return Ok(Arc::new(ProjectCandidates::missing(name, why)));
        }
        // Only wheels that may fit the target are read in full; the rest by name.
        let keep = |filename: &str| {
            wheel_may_fit(filename, &ctx.tags) || (ctx.sdists && is_sdist_name(filename))
        };
        match self
            .settings
            .client
            .candidates_traced(&self.settings.indexes, name, &keep, trace)
            .await
        {
            Ok(found) => {
                let url = self
                    .settings
                    .indexes
                    .definitions
                    .get(&found.index)
                    .map(|def| redact(&def.url))
                    .unwrap_or_default();
                let page = ProjectCandidates::from_files(
                    name,
                    &found.index,
                    &url,
                    found.files,
                    found.other_names,
                    ctx,
                );
                for warning in &page.warnings {
                    let _ = self.events.send(Event::Warning(format!(
                        "{name} (index `{}`): {warning}",
                        found.index
                    )));
                }
                Ok(Arc::new(page))
            }
            // Not on any index: no versions (the solver may still find a way around it, and
            // otherwise explains it).
            Err(e @ (IndexError::NotFound { .. } | IndexError::PinnedMissing { .. })) => {
                let first_line = e.to_string().lines().next().unwrap_or_default().to_string();
                Ok(Arc::new(ProjectCandidates::missing(name, first_line)))
            }
            Err(e) => Err(Arc::new(e)),
        }
    }

    /// The METADATA of `name` `version` (its best wheel for the target), read once.
    pub fn metadata(self: &Arc<Self>, name: &PackageName, version: &Version) -> SharedMetadata {
        let page = self.page(name);
        let key = (name.clone(), version.clone());
        let mut metadata = lock(&self.metadata);
        if let Some(found) = metadata.get(&key) {
            return found.clone();
        }
        let this = Arc::clone(self);
        let (owned_name, owned_version) = key.clone();
        let id = {
            let mut log = lock(&self.log);
            let page_id = log.id(&NodeKey::Page(name.clone()));
            log.node(NodeKey::Metadata(name.clone(), version.clone()), page_id)
        };
        let task = self.handle.spawn(async move {
            let page = page.await?;
            let chosen = page
                .get(&owned_version)
                .and_then(|v| v.wheel.as_ref().ok())
                .cloned()
                .ok_or_else(|| {
                    Arc::new(IndexError::Config(format!(
                        "{owned_name} {owned_version} has no wheel for the target"
                    )))
                })?;
            let file = chosen.file.clone();
            this.metadata_reads.fetch_add(1, Ordering::Relaxed);
            if chosen.is_sdist() {
                let read = this.sdist_metadata(&owned_name, &owned_version, file).await;
                lock(&this.log).finish(id, FetchTrace::default());
                let read = read?;
                let _ = this.events.send(Event::MetadataFetched(owned_name));
                return Ok(read);
            }
            let mut trace = FetchTrace::default();
            let read = this
                .settings
                .client
                .metadata_traced(&file, &mut trace)
                .await;
            lock(&this.log).finish(id, trace);
            let read = read.map_err(Arc::new)?;
            let _ = this.events.send(Event::MetadataFetched(owned_name));
            Ok(Arc::new(read))
        });
        let what = format!("the metadata of {name} {version}");
        let shared = async move { task.await.unwrap_or_else(|e| Err(task_failed(&what, e))) }
            .boxed()
            .shared();
        metadata.insert(key, shared.clone());
        shared
    }

    /// The metadata of an index sdist, from the pipeline's hook on a blocking thread (it may
    /// run a build hook in the target runtime).
    async fn sdist_metadata(
        &self,
        name: &PackageName,
        version: &Version,
        file: DistFile,
    ) -> MetadataResult {
        let Some(sdists) = self.settings.sdists.clone() else {
            return Err(Arc::new(IndexError::Config(format!(
                "{name} {version}: the sdist {} was chosen without a way to build it",
                file.filename
            ))));
        };
        let target = self.settings.target.clone();
        let (name, version) = (name.clone(), version.clone());
        let answer = tokio::task::spawn_blocking(move || {
            sdists.hook.metadata(&target, &name, &version, &file)
        })
        .await
        .map_err(|e| task_failed("an sdist's metadata", e))?;
        answer.map(Arc::new).map_err(|e| {
            Arc::new(IndexError::SourceMetadata {
                message: e.message,
                help: e.help,
                build_failed: e.build_failed,
            })
        })
    }

    /// Starts the page of `name` and, in the background, the METADATA of its likely version
    /// within `hint`, then recursively the same for its dependencies (with `extras` active).
    pub fn discover(
        self: &Arc<Self>,
        name: &PackageName,
        hint: Option<Ranges<Version>>,
        extras: Vec<ExtraName>,
    ) {
        self.discover_from(name, hint, extras, None);
    }

    /// [`Fetcher::discover`], where the fetch `cause` (the METADATA that named `name`) is
    /// what the profile says caused it.
    pub fn discover_after(
        self: &Arc<Self>,
        name: &PackageName,
        hint: Option<Ranges<Version>>,
        extras: Vec<ExtraName>,
        cause: &NodeKey,
    ) {
        let parent = lock(&self.log).id(cause);
        self.discover_from(name, hint, extras, parent);
    }

    /// [`Fetcher::discover`], where the METADATA read of node `parent` named `name`.
    fn discover_from(
        self: &Arc<Self>,
        name: &PackageName,
        hint: Option<Ranges<Version>>,
        extras: Vec<ExtraName>,
        parent: Option<usize>,
    ) {
        let page = self.page_from(name, parent);
        if self.stopped.load(Ordering::Relaxed) {
            return;
        }
        let this = Arc::clone(self);
        let name = name.clone();
        self.handle.spawn(async move {
            let Ok(page) = page.await else { return };
            if this.stopped.load(Ordering::Relaxed) {
                return;
            }
            let Some(version) = this.likely_version(&page, hint.as_ref()) else {
                return;
            };
            // An sdist's metadata may need a build: only when the solver asks for it.
            if page
                .get(&version)
                .and_then(|v| v.wheel.as_ref().ok())
                .is_some_and(|w| w.is_sdist())
            {
                return;
            }
            let fresh =
                lock(&this.prefetched).insert((name.clone(), version.clone(), extras.clone()));
            if !fresh {
                return;
            }
            let Ok(metadata) = this.metadata(&name, &version).await else {
                return;
            };
            let id = lock(&this.log).id(&NodeKey::Metadata(name.clone(), version.clone()));
            for requirement in &metadata.requires_dist {
                if requirement.name == name
                    || !requirement.marker.evaluate(&this.settings.env, &extras)
                {
                    continue;
                }
                let hint = match &requirement.version_or_url {
                    Some(VersionOrUrl::VersionSpecifier(specifiers)) => {
                        Some(specifiers_to_ranges(specifiers))
                    }
                    _ => None,
                };
                this.discover_from(&requirement.name, hint, requirement.extras.clone(), id);
            }
        });
    }

    /// The version the solver will most likely pick: the preferred one when it fits, else
    /// the newest usable non-yanked one (stable unless pre-releases are on, or nothing
    /// else fits), within `hint` and the pak files' bounds.
    fn likely_version(
        &self,
        page: &ProjectCandidates,
        hint: Option<&Ranges<Version>>,
    ) -> Option<Version> {
        let bound = self.settings.bounds.get(&page.name);
        let in_hint =
            |v: &Version| hint.is_none_or(|h| h.contains(v)) && bound.is_none_or(|b| b.contains(v));
        if let Some(preferred) = self.settings.preferences.get(&page.name) {
            if let Some(files) = page.get(preferred) {
                if in_hint(preferred) && files.wheel.is_ok() {
                    return Some(preferred.clone());
                }
            }
        }
        let mut prerelease = None;
        for files in &page.versions {
            let Ok(wheel) = &files.wheel else { continue };
            if wheel.yanked || !in_hint(&files.version) {
                continue;
            }
            if files.version.any_prerelease() && !self.settings.prerelease {
                prerelease.get_or_insert_with(|| files.version.clone());
                continue;
            }
            return Some(files.version.clone());
        }
        prerelease
    }
}

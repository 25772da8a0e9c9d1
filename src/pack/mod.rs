//! Packing: installed layer prefixes → byte-reproducible image layers → an OCI image layout
//! (one manifest and config per platform, an image index when there are several) or a
//! docker archive; optionally on top of a base image layout; with a reuse report against a
//! previous image. Pushing to a registry is [`push`].
//!
//! Input: the lock the layers were installed from, which decides the layer order, the venv
//! (`PATH`, `VIRTUAL_ENV`) and each layer's history line (pak files, package count); for each
//! platform, a folder holding one rootfs-shaped tree per locked layer
//! (`build/layers/<layer>/opt/comfyui/venv/...`, as `comfypak install` writes it); and the
//! directory layers and image settings of `image.toml` ([`settings`]), the only thing read
//! from the stack.
//!
//! This module must not resolve, fetch or install, nor read `stack.toml`'s layers or target:
//! it reads trees and writes blobs.

pub mod docker_archive;
pub mod gzip;
pub mod image;
pub mod layer;
pub mod layer_cache;
pub mod oci;
pub mod push;
pub mod settings;
pub mod split;
pub mod tar;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::lock::Lock;
use crate::target::{Arch, Platform};

pub use layer::{Compression, LayerBlob};
pub use settings::{DirectoryLayer, ImageSettings};

use image::{build_config, ConfigInputs, LayerHistory};
use oci::{media, BlobStore, Descriptor, Index, Layout, LayoutImage, Manifest, OciPlatform};
use tar::TreeSource;

/// Why packing failed.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tree(#[from] tar::TreeError),
    #[error("{}: {message}", path.display())]
    BadLayout { path: PathBuf, message: String },
    #[error("cannot serialise {what}: {message}")]
    Json { what: String, message: String },
    #[error("{}: {message}", path.display())]
    Settings { path: PathBuf, message: String },
    #[error("layer `{layer}` for {platform}: {} is missing", path.display())]
    MissingLayer {
        layer: String,
        platform: String,
        path: PathBuf,
    },
    #[error("{}: {message}", path.display())]
    Output { path: PathBuf, message: String },
    #[error("{message}")]
    Request { message: String },
    #[error("the {platform} image would have {total} layers ({base} from the base; {detail}), more than the {} an image may have", split::MAX_LAYERS)]
    TooManyLayers {
        platform: String,
        total: usize,
        base: usize,
        detail: String,
        /// The split threshold in force (`off`, `32 MiB`).
        threshold: String,
    },
    #[error("SOURCE_DATE_EPOCH={value:?} is not a whole number of seconds since 1970")]
    BadEpoch { value: String },
    #[error("a docker archive holds one platform, and {count} were asked for")]
    ArchiveOnePlatform { count: usize },
    #[error("{}: exists and is not an OCI image layout; comfypak replaces only its own output", path.display())]
    NotOurOutput { path: PathBuf },
    #[error("{}: no linux/{architecture} image in it (it has: {has})", path.display())]
    NoPlatformImage {
        path: PathBuf,
        architecture: String,
        has: String,
    },
}

impl PackError {
    /// What the user can do about it.
    pub fn help(&self) -> Option<String> {
        match self {
            PackError::Tree(e) => e.help(),
            PackError::TooManyLayers { threshold, .. } => Some(format!(
                "raise the split threshold (now {threshold}) with --split-threshold or \
                 `[pack] split-threshold` in stack.toml, or `off` to keep one layer per stack layer"
            )),
            PackError::BadEpoch { .. } => Some(
                "set it to e.g. the last commit's time: `git log -1 --format=%ct`".to_string(),
            ),
            PackError::ArchiveOnePlatform { .. } => {
                Some("pass --platform with one of them".to_string())
            }
            PackError::NotOurOutput { .. } => {
                Some("choose another --output, or remove it".to_string())
            }
            PackError::NoPlatformImage { .. } => Some(
                "copy the base with every platform, e.g. `skopeo copy --all docker://IMAGE oci:DIR`"
                    .to_string(),
            ),
            PackError::MissingLayer { layer, .. } => Some(format!("run `comfypak install --layer {layer}` first, or point --layers at the folder that holds the layer folders")),
            _ => None,
        }
    }
}

/// What to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// An OCI image layout folder.
    OciLayout,
    /// A `docker load` / `podman load` tar file (one platform).
    DockerArchive,
}

/// The folder holding one platform's installed layer trees (`<dir>/<layer>/...`).
#[derive(Debug, Clone)]
pub struct PlatformLayers {
    pub platform: Platform,
    pub dir: PathBuf,
}

/// Everything `pack` needs.
#[derive(Debug, Clone)]
pub struct PackRequest<'a> {
    /// The lock the layers were installed from: layer order, venv, history.
    pub lock: &'a Lock,
    /// The stack folder (where `image.toml` is): directory layers' sources are recorded
    /// relative to it.
    pub stack_dir: &'a Path,
    /// From `image.toml` ([`ImageSettings::for_stack`]).
    pub settings: ImageSettings,
    /// One entry per platform to pack, in image-index order.
    pub platforms: Vec<PlatformLayers>,
    pub output: PathBuf,
    pub format: OutputFormat,
    pub compression: Compression,
    /// Every timestamp in the image (tar mtimes, config `created`, annotations).
    pub source_date_epoch: u64,
    /// An OCI layout whose image (of each platform's architecture) goes at the bottom.
    pub base: Option<PathBuf>,
    /// An OCI layout for one architecture, ahead of `base` (one base per platform: e.g. two
    /// one-platform layouts instead of one multi-arch layout).
    pub base_by_arch: Vec<(Arch, PathBuf)>,
    /// An OCI layout to compare layers with.
    pub previous: Option<PathBuf>,
    /// The tag (`org.opencontainers.image.ref.name`), e.g. `latest`.
    pub tag: String,
    /// The image name in a docker archive (`comfyui`), tagged with `tag`.
    pub name: String,
    /// Packages of the lock whose largest wheel has at least this many bytes get an image
    /// layer of their own inside their stack layer's rank ([`split`]); `None`: one image
    /// layer per stack layer.
    pub split_threshold: Option<u64>,
    /// The layer cache ([`layer_cache`]): stack layers to reuse without reading their trees,
    /// and blobs to reuse for tars that did not change. None: build every layer.
    pub layer_cache: Option<&'a layer_cache::PackCache>,
}

/// How a layer compares with the previous image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// No previous image given.
    Unknown,
    /// Same digest as the layer of the same name (or position, for base layers).
    Identical,
    /// The previous image has the layer with another digest.
    Changed,
    /// The previous image has no layer of that name.
    New,
}

impl Reuse {
    pub fn as_str(&self) -> &'static str {
        match self {
            Reuse::Unknown => "-",
            Reuse::Identical => "identical",
            Reuse::Changed => "changed",
            Reuse::New => "new",
        }
    }
}

/// One layer of a packed image.
#[derive(Debug, Clone)]
pub struct PackedLayer {
    /// The stack or directory layer's name, `LAYER/DISTRIBUTION` for a distribution's own
    /// layer ([`split`]), or `base-N` for the base's layers.
    pub name: String,
    pub from_base: bool,
    /// The distribution alone in this layer and its version ([`split`]).
    pub distribution: Option<(String, String)>,
    pub descriptor: Descriptor,
    pub diff_id: String,
    pub reuse: Reuse,
}

/// One platform's image.
#[derive(Debug, Clone)]
pub struct PackedPlatform {
    /// OCI architecture (`amd64`).
    pub architecture: String,
    pub manifest: Descriptor,
    pub config: Descriptor,
    pub layers: Vec<PackedLayer>,
}

/// What `pack` wrote.
#[derive(Debug, Clone)]
pub struct PackedImage {
    pub output: PathBuf,
    pub format: OutputFormat,
    /// The multi-platform image index, when there are several platforms.
    pub index: Option<Descriptor>,
    pub platforms: Vec<PackedPlatform>,
    /// Bytes of blobs (layers, configs, manifests, index) not in the previous image: what a
    /// push after the previous one would send. Every blob's bytes without `--previous`.
    pub push_bytes: u64,
    /// Blobs counted in `push_bytes`.
    pub push_blobs: usize,
}

/// `SOURCE_DATE_EPOCH` from the environment, or 0; an unparsable value is an error.
pub fn source_date_epoch_from_env() -> Result<u64, PackError> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Err(_) => Ok(0),
        Ok(text) if text.trim().is_empty() => Ok(0),
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|_| PackError::BadEpoch { value: text }),
    }
}

/// A layer to build: where its trees come from, and which part of them when the stack
/// layer is split per distribution.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct LayerJob {
    sources: Vec<TreeSource>,
    /// `None`: every entry of the sources. `Some(None)`: the rest of a split stack layer;
    /// `Some(Some(name))`: that distribution's own layer.
    part: Option<Option<String>>,
    /// The empty folders of `[image] volumes` and their owner: a layer with no source tree
    /// (its entries are made by [`volume_entries`]).
    volumes: Option<(Vec<String>, tar::Owner)>,
}

/// One image layer to build for one platform.
#[derive(Debug, Clone)]
struct NamedJob {
    /// The stack or directory layer.
    layer: String,
    /// The distribution alone in this image layer, with its version.
    distribution: Option<(String, String)>,
    job: LayerJob,
}

impl NamedJob {
    /// `stable`, or `stable/torch` for a distribution's layer.
    fn name(&self) -> String {
        split::part_name(
            &self.layer,
            self.distribution.as_ref().map(|(d, _)| d.as_str()),
        )
    }
}

/// One platform's layers to build, in image order.
type NamedJobs = Vec<NamedJob>;

/// The entries of split layers, collected once while splitting.
type SplitEntries = HashMap<LayerJob, Vec<tar::Entry>>;

/// Packs the image described by `request`.
pub fn pack(request: &PackRequest<'_>) -> Result<PackedImage, PackError> {
    if request.platforms.is_empty() {
        return Err(PackError::Request {
            message: "no platform to pack".to_string(),
        });
    }
    if request.format == OutputFormat::DockerArchive && request.platforms.len() > 1 {
        return Err(PackError::ArchiveOnePlatform {
            count: request.platforms.len(),
        });
    }
    let previous_layout = match &request.previous {
        Some(dir) => Some(Layout::open(dir)?),
        None => None,
    };
    let previous = match &previous_layout {
        Some(layout) => Some(layout.images()?),
        None => None,
    };
    let base = BaseLayouts::open(request)?;

    let staging = staging_dir(&request.output, request.format)?;
    let previous_top: Vec<String> = previous_layout
        .iter()
        .flat_map(|l| l.index.manifests.iter().map(|d| d.digest.clone()))
        .collect();
    let result = pack_into(
        request,
        &staging,
        &base,
        previous
            .as_deref()
            .map(|images| (images, previous_top.as_slice())),
    );
    match result {
        Ok(mut image) => {
            match request.format {
                OutputFormat::OciLayout => replace_dir(&staging, &request.output)?,
                OutputFormat::DockerArchive => {
                    let partial = crate::fsutil::temp_sibling(&request.output);
                    let written = docker_archive::write(
                        &staging,
                        &image.platforms[0],
                        &format!("{}:{}", request.name, request.tag),
                        &partial,
                    );
                    let _ = std::fs::remove_dir_all(&staging);
                    if let Err(e) = written {
                        let _ = std::fs::remove_file(&partial);
                        return Err(e);
                    }
                    std::fs::File::open(&partial)
                        .and_then(|f| f.sync_all())
                        .and_then(|()| crate::fsutil::persist(&partial, &request.output))
                        .map_err(|source| PackError::Io {
                            path: request.output.clone(),
                            source,
                        })?;
                }
            }
            image.output = request.output.clone();
            Ok(image)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            Err(e)
        }
    }
}

fn staging_dir(output: &Path, format: OutputFormat) -> Result<PathBuf, PackError> {
    if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| PackError::Io {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    // An interrupted earlier run may have left the output moved aside, or staging folders.
    crate::fsutil::recover_dir(output).map_err(|source| PackError::Io {
        path: output.to_path_buf(),
        source,
    })?;
    if format == OutputFormat::OciLayout && output.exists() && !output.join("oci-layout").exists() {
        let empty = output
            .read_dir()
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !empty {
            return Err(PackError::NotOurOutput {
                path: output.to_path_buf(),
            });
        }
    }
    Ok(crate::fsutil::staging_sibling(output))
}

/// Puts the finished layout in place by renames only ([`crate::fsutil::replace_dir`]): a
/// run killed at any point leaves the old image or the new one (plus leftovers the next run
/// cleans up), never a half-deleted one.
fn replace_dir(staging: &Path, output: &Path) -> Result<(), PackError> {
    crate::fsutil::replace_dir(staging, output).map_err(|source| PackError::Io {
        path: output.to_path_buf(),
        source,
    })
}

/// The stack layers' folders for one platform, checked to exist, each cut per large
/// distribution when the request asks for it ([`split`]); then the directory layers.
/// Collected entries of split layers go into `entries`.
fn layer_jobs(
    request: &PackRequest<'_>,
    platform: &PlatformLayers,
    entries: &mut SplitEntries,
    plans: &mut layer_cache::JobPlans<LayerJob>,
) -> Result<NamedJobs, PackError> {
    let mut jobs = Vec::new();
    let cache = request.layer_cache;
    for layer in &request.lock.tool.comfypak.layers {
        let dir = platform.dir.join(&layer.name);
        if let Some(parts) = cache.and_then(|c| c.reused(&platform.platform, &layer.name)) {
            // Found in the layer cache before the install: its tree is not read.
            for part in parts {
                let job = LayerJob {
                    sources: vec![TreeSource {
                        dir: dir.clone(),
                        image_path: "/".to_string(),
                        exclude: Vec::new(),
                    }],
                    part: (parts.len() > 1).then(|| part.distribution.clone().map(|(d, _)| d)),
                    volumes: None,
                };
                plans.insert(job.clone(), layer_cache::JobPlan::Reuse(part.clone()));
                jobs.push(NamedJob {
                    layer: layer.name.clone(),
                    distribution: part.distribution.clone(),
                    job,
                });
            }
            continue;
        }
        if !dir.is_dir() {
            return Err(PackError::MissingLayer {
                layer: layer.name.clone(),
                platform: platform.platform.to_string(),
                path: dir,
            });
        }
        let sources = vec![TreeSource {
            dir: dir.clone(),
            image_path: "/".to_string(),
            exclude: Vec::new(),
        }];
        let large = match request.split_threshold {
            Some(threshold) => split::large_distributions(request.lock, &layer.name, threshold),
            None => Vec::new(),
        };
        let parts = if large.is_empty() {
            Vec::new()
        } else {
            let all = tar::collect_entries(&sources)?;
            split::split_entries(&dir, &site_packages(request.lock), all, &large)?
        };
        if parts.len() < 2 {
            // Nothing to cut out on this platform: the whole layer, as without a split.
            jobs.push(NamedJob {
                layer: layer.name.clone(),
                distribution: None,
                job: LayerJob {
                    sources,
                    part: None,
                    volumes: None,
                },
            });
            continue;
        }
        for part in parts {
            let job = LayerJob {
                sources: sources.clone(),
                part: Some(part.distribution.clone()),
                volumes: None,
            };
            if cache.is_some() {
                plans.insert(job.clone(), layer_cache::JobPlan::ViaTar);
            }
            entries.insert(job.clone(), part.entries);
            jobs.push(NamedJob {
                layer: layer.name.clone(),
                distribution: part.distribution.zip(part.version),
                job,
            });
        }
    }
    let settings = &request.settings;
    if !settings.volumes.is_empty() {
        let job = LayerJob {
            sources: Vec::new(),
            part: None,
            volumes: Some((settings.volumes.clone(), settings.volume_owner)),
        };
        if cache.is_some() {
            plans.insert(job.clone(), layer_cache::JobPlan::ViaTar);
        }
        entries.insert(
            job.clone(),
            volume_entries(&settings.volumes, settings.volume_owner),
        );
        jobs.push(NamedJob {
            layer: settings::VOLUMES_LAYER.to_string(),
            distribution: None,
            job,
        });
    }
    for d in &request.settings.directories {
        let job = LayerJob {
            sources: vec![TreeSource {
                dir: d.source.clone(),
                image_path: d.path.clone(),
                exclude: d.exclude.clone(),
            }],
            part: None,
            volumes: None,
        };
        if cache.is_some() {
            plans.insert(job.clone(), layer_cache::JobPlan::ViaTar);
        }
        jobs.push(NamedJob {
            layer: d.name.clone(),
            distribution: None,
            job,
        });
    }
    Ok(jobs)
}

/// The tar entries of the volumes layer: each folder of `volumes` owned by `owner`, and its
/// parents (owned by root, unless one is a volume too), in tar order.
fn volume_entries(volumes: &[String], owner: tar::Owner) -> Vec<tar::Entry> {
    // Component lists sort as the tar order wants: parents first, siblings by name bytes.
    let mut folders: std::collections::BTreeMap<Vec<&[u8]>, tar::Owner> = Default::default();
    for volume in volumes {
        let parts: Vec<&[u8]> = volume
            .split('/')
            .filter(|p| !p.is_empty())
            .map(str::as_bytes)
            .collect();
        for depth in 1..parts.len() {
            folders
                .entry(parts[..depth].to_vec())
                .or_insert(tar::Owner::ROOT);
        }
        folders.insert(parts, owner);
    }
    folders
        .into_iter()
        .map(|(parts, owner)| tar::Entry {
            path: parts.join(&b'/'),
            kind: tar::EntryKind::Directory,
            source: None,
            owner,
        })
        .collect()
}

/// The in-image site-packages path of the lock's target
/// (`/opt/comfyui/venv/lib/python3.14/site-packages`).
fn site_packages(lock: &Lock) -> String {
    let target = &lock.tool.comfypak.target;
    format!(
        "{}/lib/python{}.{}{}/site-packages",
        target.venv.as_str().trim_end_matches('/'),
        target.python.major,
        target.python.minor,
        if target.free_threaded { "t" } else { "" }
    )
}

/// The history line of an image layer: its pak files (from the lock when given) and package
/// count; for a distribution's own layer, that distribution.
fn layer_history(request: &PackRequest<'_>, job: &NamedJob) -> LayerHistory {
    let name = job.layer.as_str();
    if let Some((distribution, version)) = &job.distribution {
        return LayerHistory {
            created_by: format!(
                "comfypak pack: layer {name}, distribution {distribution} {version}"
            ),
            comment: "one distribution in its own layer".to_string(),
        };
    }
    if let Some((volumes, owner)) = &job.job.volumes {
        return LayerHistory {
            created_by: format!("comfypak pack: volumes {}", volumes.join(" ")),
            comment: format!(
                "empty folders owned by {}:{} (image.toml [image] volumes)",
                owner.uid, owner.gid
            ),
        };
    }
    let stack_dir = request.stack_dir;
    if let Some(d) = request.settings.directories.iter().find(|d| d.name == name) {
        return LayerHistory {
            created_by: format!("comfypak pack: directory layer {name} -> {}", d.path),
            // The source relative to the stack folder: a host path would make the image's
            // bytes depend on where it was built.
            comment: format!(
                "from {}",
                d.source
                    .strip_prefix(stack_dir)
                    .unwrap_or(Path::new(d.name.as_str()))
                    .display()
            ),
        };
    }
    let paks: Vec<String> = request
        .lock
        .tool
        .comfypak
        .layers
        .iter()
        .find(|l| l.name == name)
        .map(|l| l.paks.clone())
        .unwrap_or_default();
    let count = request.lock.layer_packages(name).count();
    let comment = if job.job.part.is_some() {
        format!("{count} packages from the lock, the rest of those not in their own layers")
    } else {
        format!("{count} packages from the lock")
    };
    LayerHistory {
        created_by: format!("comfypak pack: layer {name} ({})", paks.join(", ")),
        comment,
    }
}

/// The base layouts of a pack: one for every platform and/or one per architecture.
struct BaseLayouts {
    all: Option<Layout>,
    by_arch: Vec<(Arch, Layout)>,
}

impl BaseLayouts {
    fn open(request: &PackRequest<'_>) -> Result<BaseLayouts, PackError> {
        Ok(BaseLayouts {
            all: request.base.as_deref().map(Layout::open).transpose()?,
            by_arch: request
                .base_by_arch
                .iter()
                .map(|(arch, dir)| Ok((*arch, Layout::open(dir)?)))
                .collect::<Result<_, PackError>>()?,
        })
    }

    /// The layout whose image goes under `arch`'s platform, if any.
    fn for_arch(&self, arch: Arch) -> Option<&Layout> {
        self.by_arch
            .iter()
            .find(|(a, _)| *a == arch)
            .map(|(_, layout)| layout)
            .or(self.all.as_ref())
    }
}

fn pack_into(
    request: &PackRequest<'_>,
    staging: &Path,
    base: &BaseLayouts,
    previous: Option<(&[LayoutImage], &[String])>,
) -> Result<PackedImage, PackError> {
    let store = BlobStore::create(staging)?;
    let writer = Writer {
        request,
        store: &store,
        created: oci::rfc3339(request.source_date_epoch),
        base,
        previous: previous.map(|(images, _)| images),
    };
    let (per_platform, blobs) = build_unique_layers(request, &store, base)?;
    let mut platforms = Vec::new();
    for (platform, jobs) in request.platforms.iter().zip(&per_platform) {
        platforms.push(writer.write_platform(platform, jobs, &blobs)?);
    }
    let index = writer.write_index(&platforms)?;
    let (push_bytes, push_blobs) = push_cost(&platforms, index.as_ref(), previous);
    Ok(PackedImage {
        output: staging.to_path_buf(),
        format: request.format,
        index,
        platforms,
        push_bytes,
        push_blobs,
    })
}

/// Each platform's layer jobs, in stack order, and every distinct layer of every platform
/// built once, in parallel (a layer that is the same for several platforms is one blob).
fn build_unique_layers(
    request: &PackRequest<'_>,
    store: &BlobStore,
    base: &BaseLayouts,
) -> Result<(Vec<NamedJobs>, HashMap<LayerJob, LayerBlob>), PackError> {
    let mut per_platform: Vec<NamedJobs> = Vec::new();
    let mut unique: Vec<LayerJob> = Vec::new();
    let mut entries = SplitEntries::new();
    let mut plans = layer_cache::JobPlans::new();
    for platform in &request.platforms {
        let jobs = layer_jobs(request, platform, &mut entries, &mut plans)?;
        let base_layers = match base.for_arch(platform.platform.arch) {
            Some(layout) => layout
                .image_for(platform.platform.arch.oci_name())?
                .manifest
                .layers
                .len(),
            None => 0,
        };
        let mut per_layer: Vec<(String, usize)> = Vec::new();
        for job in &jobs {
            match per_layer.last_mut() {
                Some((name, count)) if *name == job.layer => *count += 1,
                _ => per_layer.push((job.layer.clone(), 1)),
            }
        }
        split::check_layer_count(
            &platform.platform.to_string(),
            base_layers,
            &per_layer,
            request.split_threshold,
        )?;
        for job in &jobs {
            if !unique.contains(&job.job) {
                unique.push(job.job.clone());
            }
        }
        per_platform.push(jobs);
    }
    let built: Vec<LayerBlob> = unique
        .par_iter()
        .map(|job| {
            layer_cache::build_job(
                request.layer_cache,
                plans.get(job),
                entries.get(job),
                &job.sources,
                store,
                request.compression,
                request.source_date_epoch,
            )
        })
        .collect::<Result<_, _>>()?;
    Ok((per_platform, unique.into_iter().zip(built).collect()))
}

/// What every platform's config and manifest, and the index, are written with.
struct Writer<'r, 'a> {
    request: &'r PackRequest<'a>,
    store: &'r BlobStore,
    /// `created` of configs and annotations (from `source_date_epoch`).
    created: String,
    base: &'r BaseLayouts,
    previous: Option<&'r [LayoutImage]>,
}

impl Writer<'_, '_> {
    /// One platform: its base layers, its stack and directory layers, config and manifest.
    fn write_platform(
        &self,
        platform: &PlatformLayers,
        jobs: &[NamedJob],
        blobs: &HashMap<LayerJob, LayerBlob>,
    ) -> Result<PackedPlatform, PackError> {
        let architecture = platform.platform.arch.oci_name();
        let base = self.base.for_arch(platform.platform.arch);
        let base_image = match base {
            Some(layout) => Some(layout.image_for(architecture)?),
            None => None,
        };
        let previous_image = self
            .previous
            .and_then(|images| images.iter().find(|i| i.architecture == architecture));

        let mut layers = match (base, &base_image) {
            (Some(layout), Some(image)) => {
                self.base_layers(layout, image, architecture, previous_image)?
            }
            _ => Vec::new(),
        };
        let (stacked, diff_ids, history) = self.stack_layers(jobs, blobs, previous_image);
        layers.extend(stacked);

        let config = build_config(&ConfigInputs {
            base: base_image.as_ref().map(|i| &i.config),
            settings: &self.request.settings,
            venv: &self.request.lock.tool.comfypak.target.venv,
            architecture,
            created: &self.created,
            diff_ids,
            history,
        });
        let config_descriptor = self.store.write_json(media::CONFIG, &config)?;
        let mut annotations = BTreeMap::from([(oci::CREATED.to_string(), self.created.clone())]);
        if let Some(image) = &base_image {
            annotations.insert(
                "org.opencontainers.image.base.digest".to_string(),
                image.manifest_descriptor.digest.clone(),
            );
        }
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(media::MANIFEST.to_string()),
            config: config_descriptor.clone(),
            layers: layers.iter().map(|l| l.descriptor.clone()).collect(),
            annotations,
        };
        let mut manifest_descriptor = self.store.write_json(media::MANIFEST, &manifest)?;
        manifest_descriptor.platform = Some(OciPlatform {
            architecture: architecture.to_string(),
            os: "linux".to_string(),
            variant: None,
        });
        Ok(PackedPlatform {
            architecture: architecture.to_string(),
            manifest: manifest_descriptor,
            config: config_descriptor,
            layers,
        })
    }

    /// The base image's layers for one platform, imported into the store as they are; reuse
    /// compares by position with the previous image.
    fn base_layers(
        &self,
        layout: &Layout,
        image: &LayoutImage,
        architecture: &str,
        previous_image: Option<&LayoutImage>,
    ) -> Result<Vec<PackedLayer>, PackError> {
        let diff_ids: Vec<String> = image
            .config
            .pointer("/rootfs/diff_ids")
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|d| d.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        if diff_ids.len() != image.manifest.layers.len() {
            return Err(PackError::BadLayout {
                path: layout.dir.clone(),
                message: format!(
                    "the {architecture} base config lists {} diff_ids for {} layers",
                    diff_ids.len(),
                    image.manifest.layers.len()
                ),
            });
        }
        let mut layers = Vec::new();
        for (i, (descriptor, diff_id)) in image.manifest.layers.iter().zip(diff_ids).enumerate() {
            let media_type =
                oci::oci_layer_media_type(&descriptor.media_type).ok_or_else(|| {
                    PackError::BadLayout {
                        path: layout.dir.clone(),
                        message: format!(
                            "base layer {} has media type {}, which comfypak cannot reference",
                            descriptor.digest, descriptor.media_type
                        ),
                    }
                })?;
            self.store
                .import(&layout.blob_path(&descriptor.digest)?, &descriptor.digest)?;
            let reuse = match previous_image {
                None => Reuse::Unknown,
                Some(prev) => match prev.manifest.layers.get(i) {
                    Some(p) if p.digest == descriptor.digest => Reuse::Identical,
                    Some(_) => Reuse::Changed,
                    None => Reuse::New,
                },
            };
            layers.push(PackedLayer {
                name: format!("base-{}", i + 1),
                from_base: true,
                distribution: None,
                descriptor: Descriptor {
                    media_type: media_type.to_string(),
                    digest: descriptor.digest.clone(),
                    size: descriptor.size,
                    platform: None,
                    annotations: BTreeMap::new(),
                },
                diff_id,
                reuse,
            });
        }
        Ok(layers)
    }

    /// The stack and directory layers of one platform (already built), with their diff_ids
    /// and history lines for the config; reuse compares by layer name with the previous image.
    fn stack_layers(
        &self,
        jobs: &[NamedJob],
        blobs: &HashMap<LayerJob, LayerBlob>,
        previous_image: Option<&LayoutImage>,
    ) -> (Vec<PackedLayer>, Vec<String>, Vec<LayerHistory>) {
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        let mut history = Vec::new();
        for named in jobs {
            let blob = &blobs[&named.job];
            let distribution = named.distribution.as_ref().map(|(d, _)| d);
            let mut annotations =
                BTreeMap::from([(oci::LAYER_NAME.to_string(), named.layer.clone())]);
            if let Some(d) = distribution {
                annotations.insert(split::DISTRIBUTION.to_string(), d.clone());
            }
            let reuse = match previous_image {
                None => Reuse::Unknown,
                Some(prev) => match prev.manifest.layers.iter().find(|l| {
                    l.annotations.get(oci::LAYER_NAME) == Some(&named.layer)
                        && l.annotations.get(split::DISTRIBUTION) == distribution
                }) {
                    Some(p) if p.digest == blob.digest => Reuse::Identical,
                    Some(_) => Reuse::Changed,
                    None => Reuse::New,
                },
            };
            layers.push(PackedLayer {
                name: named.name(),
                from_base: false,
                distribution: named.distribution.clone(),
                descriptor: Descriptor {
                    media_type: blob.media_type.clone(),
                    digest: blob.digest.clone(),
                    size: blob.size,
                    platform: None,
                    annotations,
                },
                diff_id: blob.diff_id.clone(),
                reuse,
            });
            diff_ids.push(blob.diff_id.clone());
            history.push(layer_history(self.request, named));
        }
        (layers, diff_ids, history)
    }

    /// `index.json` naming the tag: with several platforms it points at an image index blob
    /// (returned), with one at that platform's manifest.
    fn write_index(&self, platforms: &[PackedPlatform]) -> Result<Option<Descriptor>, PackError> {
        let ref_name = BTreeMap::from([(oci::REF_NAME.to_string(), self.request.tag.clone())]);
        let top_index = |top: Descriptor| Index {
            schema_version: 2,
            media_type: Some(media::INDEX.to_string()),
            manifests: vec![top],
            annotations: BTreeMap::new(),
        };
        match platforms {
            [only] => {
                let mut top = only.manifest.clone();
                top.annotations = ref_name;
                self.store.write_index(&top_index(top))?;
                Ok(None)
            }
            _ => {
                let image_index = Index {
                    schema_version: 2,
                    media_type: Some(media::INDEX.to_string()),
                    manifests: platforms.iter().map(|p| p.manifest.clone()).collect(),
                    annotations: BTreeMap::from([(oci::CREATED.to_string(), self.created.clone())]),
                };
                let mut descriptor = self.store.write_json(media::INDEX, &image_index)?;
                let top = Descriptor {
                    annotations: ref_name,
                    ..descriptor.clone()
                };
                self.store.write_index(&top_index(top))?;
                descriptor.annotations.clear();
                Ok(Some(descriptor))
            }
        }
    }
}

/// What a push would send: the bytes and count of every distinct blob (layers, configs,
/// manifests, index) the previous image (its images and top-level descriptors) lacks; every
/// blob without a previous image.
fn push_cost(
    platforms: &[PackedPlatform],
    index: Option<&Descriptor>,
    previous: Option<(&[LayoutImage], &[String])>,
) -> (u64, usize) {
    let previous_blobs: Option<BTreeSet<&str>> = previous.map(|(images, top)| {
        let mut set: BTreeSet<&str> = top.iter().map(String::as_str).collect();
        for image in images {
            set.insert(&image.manifest_descriptor.digest);
            set.insert(&image.manifest.config.digest);
            set.extend(image.manifest.layers.iter().map(|l| l.digest.as_str()));
        }
        set
    });
    let mut blobs: BTreeMap<&str, u64> = BTreeMap::new();
    for p in platforms {
        blobs.insert(&p.manifest.digest, p.manifest.size);
        blobs.insert(&p.config.digest, p.config.size);
        for l in &p.layers {
            blobs.insert(&l.descriptor.digest, l.descriptor.size);
        }
    }
    if let Some(i) = index {
        blobs.insert(&i.digest, i.size);
    }
    let missing: Vec<u64> = blobs
        .iter()
        .filter(|(digest, _)| {
            previous_blobs
                .as_ref()
                .is_none_or(|set| !set.contains(*digest))
        })
        .map(|(_, size)| *size)
        .collect();
    (missing.iter().sum(), missing.len())
}

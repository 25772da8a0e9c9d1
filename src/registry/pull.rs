//! Pulling a base image from a registry (`docker://HOST/REPO:TAG` or `@sha256:DIGEST`) into an
//! OCI image layout in the cache, so the rest of comfypak (the target runtime, pack) reads it
//! like any other layout base.
//!
//! Owns: base references, tag → digest resolution, picking one image per platform of the stack
//! from a multi-arch index (a missing platform is an error naming what the base has), the
//! content-addressed blob cache (`registry/blobs/sha256/HEX`, each blob verified while it
//! streams and renamed into place only when its digest matches; the blobs an image lacks are
//! pulled [`BLOB_PULLS`] at a time) and the pulled layouts
//! (`registry/bases/HEX-PLATFORMS/`, written under a temporary name and renamed only when
//! complete, so the cache never holds a half-pulled base under a final name).
//! Must not: unpack or run anything (that is `runtime`), or change an image (that is `pack`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};

use super::{credentials_for, ImageReference, Registry, RegistryError, RegistryOptions, Scope};
use crate::http::HttpClient;
use crate::pack::oci::{digest_hex, media, Descriptor, Index, Manifest, OciPlatform};
use crate::target::Arch;

/// The scheme that marks a base as a registry reference.
pub const SCHEME: &str = "docker://";

/// Bump when the pulled layout's form changes.
const FORMAT: &str = "base-v1";

/// A base image in a registry: `docker://HOST/REPO[:TAG][@sha256:HEX]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseReference {
    /// The registry, repository and tag (`latest` when none is given).
    pub image: ImageReference,
    /// The manifest (or index) digest, when the reference pins one.
    pub digest: Option<String>,
    /// Whether a tag was written (a digest-only reference has none).
    tagged: bool,
}

impl BaseReference {
    /// Whether `text` names a registry base (starts with `docker://`).
    pub fn is_reference(text: &str) -> bool {
        text.starts_with(SCHEME)
    }

    /// The same image pinned to `digest`.
    pub fn pinned(&self, digest: &str) -> BaseReference {
        BaseReference {
            digest: Some(digest.to_string()),
            ..self.clone()
        }
    }

    /// What the registry is asked for: the digest when pinned, else the tag.
    fn manifest_reference(&self) -> &str {
        self.digest.as_deref().unwrap_or(&self.image.tag)
    }
}

impl fmt::Display for BaseReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SCHEME}{}/{}",
            self.image.registry, self.image.repository
        )?;
        if self.tagged {
            write!(f, ":{}", self.image.tag)?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl FromStr for BaseReference {
    type Err = PullError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |message: String| PullError::Reference {
            text: text.to_string(),
            message,
        };
        let rest = text
            .strip_prefix(SCHEME)
            .ok_or_else(|| bad(format!("a registry base starts with {SCHEME}")))?;
        let (name, digest) = match rest.split_once('@') {
            Some((name, digest)) => {
                if digest_hex(digest).is_none() {
                    return Err(bad(format!(
                        "`{digest}` is not a digest: write sha256: and 64 lowercase hex digits"
                    )));
                }
                (name, Some(digest.to_string()))
            }
            None => (rest, None),
        };
        let last = name.rsplit('/').next().unwrap_or(name);
        let tagged = last.contains(':');
        let image: ImageReference = name.parse().map_err(|e| match e {
            RegistryError::Reference { message, .. } => bad(message),
            other => bad(other.to_string()),
        })?;
        Ok(BaseReference {
            image,
            digest,
            tagged,
        })
    }
}

/// Why a base could not be pulled.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("base `{text}`: {message}")]
    Reference { text: String, message: String },
    #[error("base {reference}: {source}")]
    Registry {
        reference: String,
        #[source]
        source: RegistryError,
    },
    #[error("base {reference} has no linux/{wanted} image (it has: {has})")]
    MissingPlatform {
        reference: String,
        wanted: String,
        has: String,
    },
    #[error("base {reference}: manifest {digest}: {message}")]
    BadManifest {
        reference: String,
        digest: String,
        message: String,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl PullError {
    /// What the user can do about it.
    pub fn help(&self) -> Option<String> {
        match self {
            PullError::Reference { .. } => Some(
                "write docker://HOST/REPOSITORY:TAG or docker://HOST/REPOSITORY@sha256:DIGEST, \
                 e.g. docker://127.0.0.1:5000/python:3.14"
                    .to_string(),
            ),
            // A base is pulled with --insecure-base (push's flag is --insecure).
            PullError::Registry {
                source:
                    RegistryError::Http {
                        loopback_tls: true, ..
                    },
                ..
            } => Some("a registry on this machine without TLS needs --insecure-base".into()),
            PullError::Registry {
                source: RegistryError::InsecureNotLoopback { .. },
                ..
            } => Some("drop --insecure-base and use the registry's HTTPS endpoint".into()),
            PullError::Registry { source, .. } => source.help().or_else(|| {
                matches!(source, RegistryError::Status { status: 200, .. }).then(|| {
                    "the registry sent bytes that do not match their digest; nothing of them \
                     was kept: pull again, or check the registry's storage"
                        .to_string()
                })
            }),
            PullError::MissingPlatform { .. } => Some(
                "use a base with an image for every platform of the stack (a multi-arch \
                 index), or give one per architecture with --base ARCH=REFERENCE"
                    .to_string(),
            ),
            _ => None,
        }
    }
}

/// How to reach the registry.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// Plain HTTP (a registry on this machine only).
    pub insecure: bool,
    /// The credentials to use; `None`: those [`credentials_for`] finds (the environment, then
    /// `~/.docker/config.json`), else anonymous.
    pub credentials: Option<super::Credentials>,
}

/// A base pulled into the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledBase {
    /// The OCI image layout holding one image per platform asked for.
    pub layout: PathBuf,
    /// The digest the reference resolved to (the index's, or the single manifest's): record it
    /// to pull the same base again.
    pub digest: String,
    /// Whether it came from the cache without asking the registry.
    pub cached: bool,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// How many blobs are pulled at once (at most; the client's concurrency may be lower): a base's
/// layers are a few large blobs, and a few streams fill a link where one does not.
pub const BLOB_PULLS: usize = 4;

/// The media types asked for a manifest.
const ACCEPT: [&str; 4] = [
    media::INDEX,
    media::MANIFEST,
    media::DOCKER_LIST,
    media::DOCKER_MANIFEST,
];

fn layout_dir(cache_dir: &Path, digest: &str, archs: &[Arch]) -> PathBuf {
    let hex = digest_hex(digest).unwrap_or("invalid");
    let mut names: Vec<&str> = archs.iter().map(|a| a.oci_name()).collect();
    names.sort_unstable();
    names.dedup();
    cache_dir
        .join("registry/bases")
        .join(format!("{FORMAT}-{hex}-{}", names.join("-")))
}

/// Pulls `reference` for `archs` (one image each) into the cache under `cache_dir` and returns
/// its layout. A pinned reference whose layout is cached needs no registry at all.
pub async fn pull_base(
    http: &HttpClient,
    reference: &BaseReference,
    archs: &[Arch],
    cache_dir: &Path,
    options: &PullOptions,
) -> Result<PulledBase, PullError> {
    let shown = reference.to_string();
    if let Some(digest) = &reference.digest {
        let dir = layout_dir(cache_dir, digest, archs);
        if dir.join("index.json").is_file() {
            return Ok(PulledBase {
                layout: dir,
                digest: digest.clone(),
                cached: true,
            });
        }
    }
    let registry_err = |source: RegistryError| PullError::Registry {
        reference: shown.clone(),
        source,
    };
    let credentials = match &options.credentials {
        Some(given) => Some(given.clone()),
        None => credentials_for(&reference.image.registry).map_err(registry_err)?,
    };
    let registry = Registry::connect(
        http,
        &reference.image,
        RegistryOptions {
            insecure: options.insecure,
            credentials,
            scope: Scope::Pull,
        },
    )
    .await
    .map_err(registry_err)?;
    let top = registry
        .get_manifest(reference.manifest_reference(), &ACCEPT)
        .await
        .map_err(registry_err)?;
    let final_dir = layout_dir(cache_dir, &top.digest, archs);
    if final_dir.join("index.json").is_file() {
        return Ok(PulledBase {
            layout: final_dir,
            digest: top.digest,
            cached: true,
        });
    }
    let bad = |digest: &str, message: String| PullError::BadManifest {
        reference: shown.clone(),
        digest: digest.to_string(),
        message,
    };
    let json: serde_json::Value = serde_json::from_slice(&top.bytes)
        .map_err(|e| bad(&top.digest, format!("not JSON: {e}")))?;

    // The image manifests to take, one per platform, with their descriptors.
    let mut picked: Vec<(Descriptor, Vec<u8>)> = Vec::new();
    if json.get("manifests").is_some() {
        let index: Index = serde_json::from_value(json)
            .map_err(|e| bad(&top.digest, format!("not an image index: {e}")))?;
        let platforms: Vec<String> = index
            .manifests
            .iter()
            .filter_map(|d| d.platform.as_ref())
            .filter(|p| p.os != "unknown")
            .map(platform_name)
            .collect();
        for arch in archs {
            let found = index.manifests.iter().find(|d| {
                d.platform
                    .as_ref()
                    .is_some_and(|p| p.os == "linux" && p.architecture == arch.oci_name())
                    && matches!(
                        d.media_type.as_str(),
                        media::MANIFEST | media::DOCKER_MANIFEST
                    )
            });
            let Some(descriptor) = found else {
                return Err(PullError::MissingPlatform {
                    reference: shown.clone(),
                    wanted: arch.oci_name().to_string(),
                    has: if platforms.is_empty() {
                        "no platforms".to_string()
                    } else {
                        platforms.join(", ")
                    },
                });
            };
            let child = registry
                .get_manifest(&descriptor.digest, &ACCEPT)
                .await
                .map_err(registry_err)?;
            if child.bytes.len() as u64 != descriptor.size {
                return Err(bad(
                    &descriptor.digest,
                    format!(
                        "{} bytes, the index says {}",
                        child.bytes.len(),
                        descriptor.size
                    ),
                ));
            }
            let mut descriptor = descriptor.clone();
            descriptor.annotations.clear();
            picked.push((descriptor, child.bytes));
        }
    } else {
        let manifest: Manifest = serde_json::from_slice(&top.bytes)
            .map_err(|e| bad(&top.digest, format!("not an image manifest: {e}")))?;
        let config = registry
            .get_blob(&manifest.config.digest)
            .await
            .map_err(registry_err)?;
        let config: serde_json::Value = serde_json::from_slice(&config)
            .map_err(|e| bad(&top.digest, format!("its config is not JSON: {e}")))?;
        let field = |key: &str| {
            config
                .get(key)
                .and_then(|v| v.as_str())
                .unwrap_or("unknown")
                .to_string()
        };
        let platform = OciPlatform {
            architecture: field("architecture"),
            os: field("os"),
            variant: config
                .get("variant")
                .and_then(|v| v.as_str())
                .map(str::to_string),
        };
        for arch in archs {
            if platform.os != "linux" || platform.architecture != arch.oci_name() {
                return Err(PullError::MissingPlatform {
                    reference: shown.clone(),
                    wanted: arch.oci_name().to_string(),
                    has: format!("only {}", platform_name(&platform)),
                });
            }
        }
        let media_type = manifest
            .media_type
            .clone()
            .unwrap_or_else(|| media::MANIFEST.to_string());
        picked.push((
            Descriptor {
                media_type,
                digest: top.digest.clone(),
                size: top.bytes.len() as u64,
                platform: Some(platform),
                annotations: Default::default(),
            },
            top.bytes.clone(),
        ));
    }

    // Every blob of the picked images into the blob cache, then a layout of links to them.
    let blobs = cache_dir.join("registry/blobs/sha256");
    std::fs::create_dir_all(&blobs).map_err(io_at(&blobs))?;
    let bases = cache_dir.join("registry/bases");
    std::fs::create_dir_all(&bases).map_err(io_at(&bases))?;
    let tmp = bases.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = async {
        let tmp_blobs = tmp.join("blobs/sha256");
        std::fs::create_dir_all(&tmp_blobs).map_err(io_at(&tmp_blobs))?;
        // Every blob of every picked image, once (platforms share configs and layers at times),
        // with the manifest that names it.
        let mut wanted: Vec<(&str, &Descriptor)> = Vec::new();
        let mut parsed = Vec::new();
        for (descriptor, bytes) in &picked {
            let manifest: Manifest = serde_json::from_slice(bytes)
                .map_err(|e| bad(&descriptor.digest, format!("not an image manifest: {e}")))?;
            parsed.push((descriptor, bytes, manifest));
        }
        for (descriptor, _, manifest) in &parsed {
            for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
                if digest_hex(&blob.digest).is_none() {
                    return Err(bad(
                        &descriptor.digest,
                        format!("`{}` is not a sha256 digest", blob.digest),
                    ));
                }
                if !wanted.iter().any(|(_, b)| b.digest == blob.digest) {
                    wanted.push((descriptor.digest.as_str(), blob));
                }
            }
        }
        // The ones the cache lacks, several at a time; the first failure stops the rest (their
        // partial files are removed as they stop).
        let limit = http.settings().concurrency.clamp(1, BLOB_PULLS);
        let registry = &registry;
        let blobs = &blobs;
        futures::stream::iter(wanted.iter().map(|(manifest, blob)| {
            let cached = blobs.join(digest_hex(&blob.digest).unwrap_or_default());
            async move {
                if !cached_blob_ok(&cached, blob.size) {
                    download(http, registry, &blob.digest, &cached)
                        .await
                        .map_err(registry_err)?;
                }
                let size = std::fs::metadata(&cached).map_err(io_at(&cached))?.len();
                if size != blob.size {
                    let _ = std::fs::remove_file(&cached);
                    return Err(bad(
                        manifest,
                        format!(
                            "blob {} is {size} bytes, the manifest says {}",
                            blob.digest, blob.size
                        ),
                    ));
                }
                Ok(())
            }
        }))
        .buffer_unordered(limit)
        .try_collect::<Vec<()>>()
        .await?;
        let mut manifests = Vec::new();
        for (descriptor, bytes, manifest) in &parsed {
            write_blob(&tmp_blobs, &descriptor.digest, bytes)?;
            for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
                let hex = digest_hex(&blob.digest).unwrap_or_default();
                link_or_copy(&blobs.join(hex), &tmp_blobs.join(hex))?;
            }
            manifests.push((*descriptor).clone());
        }
        let index = Index {
            schema_version: 2,
            media_type: Some(media::INDEX.to_string()),
            manifests,
            annotations: Default::default(),
        };
        let index_bytes = serde_json::to_vec(&index).map_err(|e| PullError::Io {
            path: tmp.join("index.json"),
            source: std::io::Error::other(e),
        })?;
        write_file(
            &tmp.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )?;
        write_file(&tmp.join("index.json"), &index_bytes)?;
        match std::fs::rename(&tmp, &final_dir) {
            Ok(()) => Ok(()),
            // Another process published the same base first: theirs is as good.
            Err(_) if final_dir.join("index.json").is_file() => Ok(()),
            Err(source) => Err(PullError::Io {
                path: final_dir.clone(),
                source,
            }),
        }
    }
    .await;
    if tmp.exists() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result.map(|()| PulledBase {
        layout: final_dir,
        digest: top.digest,
        cached: false,
    })
}

/// A blob in the cache is trusted when it has the right size: it was renamed there only after
/// its digest matched (and the runtime verifies layers again while unpacking).
fn cached_blob_ok(path: &Path, size: u64) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == size)
}

/// Downloads a blob into `dest`, verified while streaming; a transfer that broke off is
/// tried again under the client's retry count (a digest mismatch is not).
async fn download(
    http: &HttpClient,
    registry: &Registry,
    digest: &str,
    dest: &Path,
) -> Result<u64, RegistryError> {
    let attempts = http.settings().retries + 1;
    let mut n = 0;
    loop {
        n += 1;
        match registry.download_blob(digest, dest).await {
            Err(e) if n < attempts && e.is_transient() => {
                tokio::time::sleep(crate::http::backoff_delay(http.settings(), n)).await;
            }
            other => return other,
        }
    }
}

fn platform_name(p: &OciPlatform) -> String {
    match &p.variant {
        Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
        None => format!("{}/{}", p.os, p.architecture),
    }
}

fn write_blob(dir: &Path, digest: &str, bytes: &[u8]) -> Result<(), PullError> {
    let actual = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
    let hex = digest_hex(digest)
        .filter(|_| actual == digest)
        .ok_or_else(|| PullError::Io {
            path: dir.to_path_buf(),
            source: std::io::Error::other(format!("blob bytes hash to {actual}, not {digest}")),
        })?;
    write_file(&dir.join(hex), bytes)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), PullError> {
    std::fs::write(path, bytes).map_err(io_at(path))
}

/// Puts the cached blob into the layout. A blob two platforms share is there already (a link
/// to the same file): copying onto it would truncate the cached blob itself.
fn link_or_copy(from: &Path, to: &Path) -> Result<(), PullError> {
    if to.exists() || std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to).map(|_| ()).map_err(io_at(to))
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> PullError + '_ {
    move |source| PullError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        let r: BaseReference = "docker://127.0.0.1:5000/lib/python:3.14".parse().unwrap();
        assert_eq!(r.image.registry, "127.0.0.1:5000");
        assert_eq!(r.image.repository, "lib/python");
        assert_eq!(r.manifest_reference(), "3.14");
        assert_eq!(r.to_string(), "docker://127.0.0.1:5000/lib/python:3.14");
        let digest = format!("sha256:{}", "a".repeat(64));
        let r: BaseReference = format!("docker://localhost:5000/python@{digest}")
            .parse()
            .unwrap();
        assert_eq!(r.manifest_reference(), digest);
        assert_eq!(
            r.to_string(),
            format!("docker://localhost:5000/python@{digest}")
        );
        let pinned = "docker://localhost:5000/python:3.14"
            .parse::<BaseReference>()
            .unwrap()
            .pinned(&digest);
        assert_eq!(
            pinned.to_string(),
            format!("docker://localhost:5000/python:3.14@{digest}")
        );
        assert!("docker://localhost:5000/python@sha256:abc"
            .parse::<BaseReference>()
            .is_err());
        assert!("docker://python:3.14".parse::<BaseReference>().is_err());
        assert!("/srv/base".parse::<BaseReference>().is_err());
        assert!(BaseReference::is_reference("docker://x.example/y"));
    }
}

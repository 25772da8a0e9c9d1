//! OCI image layout on disk: media types, descriptors, manifests, indexes, the blob store,
//! and reading an existing layout (a base image, a previous image).
//!
//! Owns the JSON shapes (serialised deterministically: fixed field order, sorted maps) and
//! the `oci-layout` / `index.json` / `blobs/sha256/` files. It must not build layers or
//! decide image contents.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::PackError;

/// Media types comfypak writes or reads.
pub mod media {
    pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
}

/// The annotation that names a tag in `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The annotation holding the image's creation time.
pub const CREATED: &str = "org.opencontainers.image.created";
/// The annotation comfypak puts on each of its layer descriptors: the layer's name.
pub const LAYER_NAME: &str = "io.comfypak.layer";

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<OciPlatform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The platform of a manifest in an index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciPlatform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An image manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image index (also the shape of `index.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// `sha256:HEX` → `HEX`, checked.
pub fn digest_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then_some(hex)
}

/// The `blobs/sha256/` folder of a layout being written.
#[derive(Debug, Clone)]
pub struct BlobStore {
    layout: PathBuf,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl BlobStore {
    /// Creates `layout/blobs/sha256/`.
    pub fn create(layout: &Path) -> Result<BlobStore, PackError> {
        let dir = layout.join("blobs").join("sha256");
        std::fs::create_dir_all(&dir).map_err(|source| PackError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(BlobStore {
            layout: layout.to_path_buf(),
        })
    }

    pub fn layout(&self) -> &Path {
        &self.layout
    }

    /// Where the blob `sha256:HEX` lives.
    pub fn path(&self, digest: &str) -> Result<PathBuf, PackError> {
        blob_path(&self.layout, digest)
    }

    /// A new, uniquely named temporary file beside the blobs.
    pub fn temp_file(&self) -> Result<(PathBuf, File), PackError> {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = self
            .layout
            .join("blobs")
            .join("sha256")
            .join(format!(".tmp-{}-{n}", std::process::id()));
        let file = File::create(&path).map_err(|source| PackError::Io {
            path: path.clone(),
            source,
        })?;
        Ok((path, file))
    }

    /// Syncs a finished temporary file and renames it to its digest's name
    /// ([`crate::fsutil::persist`]).
    pub fn commit(&self, tmp: &Path, hex: &str) -> Result<(), PackError> {
        let dest = self.layout.join("blobs").join("sha256").join(hex);
        File::open(tmp)
            .and_then(|f| f.sync_all())
            .and_then(|()| crate::fsutil::persist(tmp, &dest))
            .map_err(|source| PackError::Io { path: dest, source })
    }

    /// Writes `bytes` as a blob and returns its descriptor.
    pub fn write_bytes(&self, media_type: &str, bytes: &[u8]) -> Result<Descriptor, PackError> {
        let hex = hex::encode(Sha256::digest(bytes));
        let dest = self.layout.join("blobs").join("sha256").join(&hex);
        crate::fsutil::write_atomic(&dest, bytes)
            .map_err(|source| PackError::Io { path: dest, source })?;
        Ok(Descriptor {
            media_type: media_type.to_string(),
            digest: format!("sha256:{hex}"),
            size: bytes.len() as u64,
            platform: None,
            annotations: BTreeMap::new(),
        })
    }

    /// Serialises `value` as compact JSON and writes it as a blob.
    pub fn write_json<T: Serialize>(
        &self,
        media_type: &str,
        value: &T,
    ) -> Result<Descriptor, PackError> {
        let bytes = serde_json::to_vec(value).map_err(|e| PackError::Json {
            what: media_type.to_string(),
            message: e.to_string(),
        })?;
        self.write_bytes(media_type, &bytes)
    }

    /// Puts a blob of another layout into this one: a hard link when possible, else a copy.
    /// The bytes are not recompressed or rewritten.
    pub fn import(&self, source: &Path, digest: &str) -> Result<(), PackError> {
        let dest = self.path(digest)?;
        if dest.exists() {
            return Ok(());
        }
        if std::fs::hard_link(source, &dest).is_ok() {
            return Ok(());
        }
        let (tmp, _) = self.temp_file()?;
        std::fs::copy(source, &tmp).map_err(|e| PackError::Io {
            path: source.to_path_buf(),
            source: e,
        })?;
        let hex = digest_hex(digest).unwrap_or_default().to_string();
        self.commit(&tmp, &hex)
    }

    /// Writes `oci-layout` and `index.json`.
    pub fn write_index(&self, index: &Index) -> Result<(), PackError> {
        let layout_file = self.layout.join("oci-layout");
        crate::fsutil::write_atomic(&layout_file, br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(
            |source| PackError::Io {
                path: layout_file,
                source,
            },
        )?;
        let bytes = serde_json::to_vec(index).map_err(|e| PackError::Json {
            what: "index.json".to_string(),
            message: e.to_string(),
        })?;
        let path = self.layout.join("index.json");
        crate::fsutil::write_atomic(&path, &bytes).map_err(|source| PackError::Io { path, source })
    }
}

fn blob_path(layout: &Path, digest: &str) -> Result<PathBuf, PackError> {
    let hex = digest_hex(digest).ok_or_else(|| PackError::BadLayout {
        path: layout.to_path_buf(),
        message: format!("`{digest}` is not a sha256 digest"),
    })?;
    Ok(layout.join("blobs").join("sha256").join(hex))
}

/// An image found in a layout for one platform.
#[derive(Debug, Clone)]
pub struct LayoutImage {
    pub manifest_descriptor: Descriptor,
    pub manifest: Manifest,
    /// The config, as JSON (unknown fields kept).
    pub config: serde_json::Value,
    pub architecture: String,
    pub os: String,
}

/// An existing OCI image layout, opened for reading.
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
    pub index: Index,
}

impl Layout {
    /// Opens `dir` (must hold `oci-layout` and `index.json`).
    pub fn open(dir: &Path) -> Result<Layout, PackError> {
        let bad = |message: String| PackError::BadLayout {
            path: dir.to_path_buf(),
            message,
        };
        if !dir.join("oci-layout").is_file() {
            return Err(bad(
                "no `oci-layout` file: not an OCI image layout (make one with \
                 `skopeo copy docker://IMAGE oci:DIR`)"
                    .to_string(),
            ));
        }
        let path = dir.join("index.json");
        let bytes = std::fs::read(&path).map_err(|source| PackError::Io {
            path: path.clone(),
            source,
        })?;
        let index: Index =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("index.json: {e}")))?;
        Ok(Layout {
            dir: dir.to_path_buf(),
            index,
        })
    }

    /// Where a blob of this layout lives.
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, PackError> {
        blob_path(&self.dir, digest)
    }

    /// Reads a blob and checks its digest.
    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>, PackError> {
        let path = self.blob_path(digest)?;
        let bytes = std::fs::read(&path).map_err(|source| PackError::Io {
            path: path.clone(),
            source,
        })?;
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        if actual != digest {
            return Err(PackError::BadLayout {
                path,
                message: format!("blob content hashes to {actual}, not {digest}"),
            });
        }
        Ok(bytes)
    }

    fn read_json<T: serde::de::DeserializeOwned>(&self, digest: &str) -> Result<T, PackError> {
        let bytes = self.read_blob(digest)?;
        serde_json::from_slice(&bytes).map_err(|e| PackError::BadLayout {
            path: self.dir.clone(),
            message: format!("blob {digest}: {e}"),
        })
    }

    /// Every image manifest reachable from `index.json` (through nested indexes), with its
    /// platform (from the index entry, else from the config).
    pub fn images(&self) -> Result<Vec<LayoutImage>, PackError> {
        let mut out = Vec::new();
        self.collect(&self.index.manifests.clone(), 0, &mut out)?;
        Ok(out)
    }

    fn collect(
        &self,
        descriptors: &[Descriptor],
        depth: usize,
        out: &mut Vec<LayoutImage>,
    ) -> Result<(), PackError> {
        if depth > 4 {
            return Err(PackError::BadLayout {
                path: self.dir.clone(),
                message: "image indexes nested more than 4 deep".to_string(),
            });
        }
        for descriptor in descriptors {
            match descriptor.media_type.as_str() {
                media::INDEX | media::DOCKER_LIST => {
                    let index: Index = self.read_json(&descriptor.digest)?;
                    self.collect(&index.manifests, depth + 1, out)?;
                }
                media::MANIFEST | media::DOCKER_MANIFEST => {
                    let manifest: Manifest = self.read_json(&descriptor.digest)?;
                    let config: serde_json::Value = self.read_json(&manifest.config.digest)?;
                    let field = |key: &str| {
                        config
                            .get(key)
                            .and_then(|v| v.as_str())
                            .unwrap_or_default()
                            .to_string()
                    };
                    let (architecture, os) = match &descriptor.platform {
                        Some(p) => (p.architecture.clone(), p.os.clone()),
                        None => (field("architecture"), field("os")),
                    };
                    if out
                        .iter()
                        .any(|i: &LayoutImage| i.manifest_descriptor.digest == descriptor.digest)
                    {
                        continue;
                    }
                    out.push(LayoutImage {
                        manifest_descriptor: descriptor.clone(),
                        manifest,
                        config,
                        architecture,
                        os,
                    });
                }
                // Attestations and other artifacts are not images.
                _ => {}
            }
        }
        Ok(())
    }

    /// The image for `architecture` (OCI name, `amd64`) on linux.
    pub fn image_for(&self, architecture: &str) -> Result<LayoutImage, PackError> {
        let images = self.images()?;
        let found: Vec<&LayoutImage> = images
            .iter()
            .filter(|i| i.architecture == architecture && i.os == "linux")
            .collect();
        match found.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(PackError::NoPlatformImage {
                path: self.dir.clone(),
                architecture: architecture.to_string(),
                has: if images.is_empty() {
                    "none".to_string()
                } else {
                    images
                        .iter()
                        .map(|i| format!("{}/{}", i.os, i.architecture))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            }),
            _ => Err(PackError::BadLayout {
                path: self.dir.clone(),
                message: format!(
                    "several linux/{architecture} images in it; keep one tag in the layout"
                ),
            }),
        }
    }
}

/// RFC 3339 UTC time for seconds since the epoch (`1970-01-01T00:00:00Z`).
pub fn rfc3339(epoch: u64) -> String {
    let days = (epoch / 86_400) as i64;
    let secs = epoch % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Maps Docker media types of layers to their OCI equivalents (same bytes).
pub fn oci_layer_media_type(media_type: &str) -> Option<&'static str> {
    match media_type {
        media::LAYER_GZIP | media::DOCKER_LAYER_GZIP => Some(media::LAYER_GZIP),
        media::LAYER_TAR | media::DOCKER_LAYER_TAR => Some(media::LAYER_TAR),
        media::LAYER_ZSTD => Some(media::LAYER_ZSTD),
        _ => None,
    }
}

/// Opens a blob file for reading.
pub fn open_blob(path: &Path) -> io::Result<File> {
    File::open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn digests() {
        let hex = "a".repeat(64);
        assert_eq!(digest_hex(&format!("sha256:{hex}")), Some(hex.as_str()));
        assert_eq!(digest_hex("sha256:../../etc"), None);
        assert_eq!(digest_hex(&format!("sha512:{hex}")), None);
    }
}

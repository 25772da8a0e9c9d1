//! `comfypak push`: an OCI image layout to a registry over the OCI distribution API.
//!
//! HEAD each blob and skip those present; cross-repository mount when asked and the registry
//! allows; upload the rest (one PUT for small blobs, PATCH chunks then PUT for large ones);
//! then PUT the platform manifests (by digest) and the tagged manifest or index. The
//! transport, auth and plain-HTTP rule are [`crate::registry`]'s, on the shared
//! [`HttpClient`] and its retry policy; an upload that breaks off midway is started again
//! in a new upload session, within the same policy's caps.
//!
//! Owns the push protocol. It must not build or change images: it reads a finished layout.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use reqwest::Method;
use sha2::{Digest, Sha256};
use url::Url;

use super::oci::{media, Descriptor, Index, Layout, Manifest, REF_NAME};
use super::PackError;
use crate::http::{Attempts, HttpClient};
pub use crate::registry::{
    credentials_for, docker_config_credentials, Credentials, ImageReference,
};
use crate::registry::{Registry, RegistryError, RegistryOptions, Scope};

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Layout(#[from] PackError),
    #[error("{}: {message}", path.display())]
    Image {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("uploading blob {digest} ({size} bytes) to {registry} kept failing{attempts}")]
    Upload {
        digest: String,
        size: u64,
        registry: String,
        attempts: Box<Attempts>,
        #[source]
        source: Box<RegistryError>,
    },
}

impl PushError {
    /// What the user can do about it.
    pub fn help(&self) -> Option<String> {
        match self {
            PushError::Registry(e) => e.help(),
            PushError::Upload { source, .. } => source.help(),
            PushError::Layout(e) => e.help(),
            _ => None,
        }
    }
}

/// How to push.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Allow plain HTTP (loopback registries only).
    pub insecure: bool,
    /// Blobs larger than this are uploaded in chunks of this size.
    pub chunk_size: u64,
    /// Repositories on the same registry to mount blobs from.
    pub mount_from: Vec<String>,
    pub credentials: Option<Credentials>,
    /// Blob uploads in flight at once.
    pub concurrency: usize,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            insecure: false,
            chunk_size: 64 << 20,
            mount_from: Vec::new(),
            credentials: None,
            concurrency: 4,
        }
    }
}

/// What happened to one blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOutcome {
    /// Already in the repository.
    Present,
    /// Mounted from another repository.
    Mounted,
    /// Uploaded in one request.
    Uploaded,
    /// Uploaded in this many chunks.
    Chunked(usize),
}

/// One blob of the push.
#[derive(Debug, Clone)]
pub struct PushedBlob {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
    pub outcome: BlobOutcome,
}

impl PushedBlob {
    pub fn sent(&self) -> bool {
        matches!(
            self.outcome,
            BlobOutcome::Uploaded | BlobOutcome::Chunked(_)
        )
    }
}

/// What a push did.
#[derive(Debug, Clone, Default)]
pub struct PushReport {
    pub blobs: Vec<PushedBlob>,
    /// Manifests (and the index) written, by reference (digest or tag).
    pub manifests_put: Vec<String>,
    /// Manifests already present with the same digest.
    pub manifests_present: Vec<String>,
    /// The digest the tag now points at.
    pub digest: String,
}

impl PushReport {
    /// Bytes of blob content sent.
    pub fn bytes_sent(&self) -> u64 {
        self.blobs.iter().filter(|b| b.sent()).map(|b| b.size).sum()
    }

    /// Blobs uploaded (not present, not mounted).
    pub fn uploaded(&self) -> Vec<&PushedBlob> {
        self.blobs.iter().filter(|b| b.sent()).collect()
    }
}

/// What the layout holds under the tag to push.
struct PushPlan {
    /// Platform manifests: (descriptor, manifest bytes, parsed).
    manifests: Vec<(Descriptor, Vec<u8>, Manifest)>,
    /// The index, when multi-platform: (descriptor, bytes).
    index: Option<(Descriptor, Vec<u8>)>,
}

fn plan(layout: &Layout, tag: &str) -> Result<PushPlan, PushError> {
    let top = match layout.index.manifests.as_slice() {
        [one] => one.clone(),
        many => many
            .iter()
            .find(|d| d.annotations.get(REF_NAME).map(String::as_str) == Some(tag))
            .cloned()
            .ok_or_else(|| PushError::Image {
                path: layout.dir.clone(),
                message: format!(
                    "index.json lists {} images and none is tagged `{tag}`; push the tag it has",
                    many.len()
                ),
            })?,
    };
    let parse_err = |e: serde_json::Error| PushError::Image {
        path: layout.dir.clone(),
        message: e.to_string(),
    };
    let read_manifest = |d: &Descriptor| -> Result<(Descriptor, Vec<u8>, Manifest), PushError> {
        let bytes = layout.read_blob(&d.digest)?;
        let manifest: Manifest = serde_json::from_slice(&bytes).map_err(parse_err)?;
        Ok((d.clone(), bytes, manifest))
    };
    match top.media_type.as_str() {
        media::MANIFEST | media::DOCKER_MANIFEST => Ok(PushPlan {
            manifests: vec![read_manifest(&top)?],
            index: None,
        }),
        media::INDEX | media::DOCKER_LIST => {
            let bytes = layout.read_blob(&top.digest)?;
            let index: Index = serde_json::from_slice(&bytes).map_err(parse_err)?;
            let manifests = index
                .manifests
                .iter()
                .map(read_manifest)
                .collect::<Result<_, _>>()?;
            Ok(PushPlan {
                manifests,
                index: Some((top, bytes)),
            })
        }
        other => Err(PushError::Image {
            path: layout.dir.clone(),
            message: format!("the tagged descriptor has media type {other}, not an image"),
        }),
    }
}

/// One blob upload, in a fresh upload session (or the one a refused mount opened).
async fn upload_blob(
    registry: &Registry,
    layout: &Layout,
    d: &Descriptor,
    chunk_size: u64,
    session: Option<Url>,
) -> Result<BlobOutcome, PushError> {
    let mut location = match session {
        Some(url) => url,
        None => {
            let url = registry.repo_url("blobs/uploads/")?;
            let response = registry
                .send(Method::POST, &url, HeaderMap::new(), None, &[202])
                .await?;
            registry.location(&response)?
        }
    };
    let path = layout.blob_path(&d.digest)?;
    let mut file = std::fs::File::open(&path).map_err(|source| PackError::Io {
        path: path.clone(),
        source,
    })?;
    let octets = || {
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        h
    };
    // What is uploaded is hashed as it is read: a blob whose bytes no longer match its
    // digest (a damaged or edited layout, or a layer cache blob trusted by its stamp) is
    // never committed, whatever the registry checks.
    let mut hasher = Sha256::new();
    let mut read_chunk = |file: &mut std::fs::File, len: u64| -> Result<Vec<u8>, PushError> {
        let mut buf = Vec::with_capacity(len as usize);
        file.take(len)
            .read_to_end(&mut buf)
            .map_err(|source| PackError::Io {
                path: path.clone(),
                source,
            })?;
        hasher.update(&buf);
        Ok(buf)
    };
    let chunk = chunk_size.max(1);
    let mut chunks = 0;
    let final_body = if d.size <= chunk {
        Some(read_chunk(&mut file, d.size)?)
    } else {
        let mut offset = 0u64;
        while offset < d.size {
            let len = chunk.min(d.size - offset);
            let bytes = read_chunk(&mut file, len)?;
            let mut headers = octets();
            let range = format!("{offset}-{}", offset + len - 1);
            headers.insert(
                reqwest::header::CONTENT_RANGE,
                HeaderValue::from_str(&range).unwrap_or(HeaderValue::from_static("0-0")),
            );
            let response = registry
                .send_once(Method::PATCH, &location, headers, Some(bytes), &[202])
                .await?;
            location = registry.location(&response)?;
            offset += len;
            chunks += 1;
        }
        None
    };
    let read = format!("sha256:{}", hex::encode(hasher.finalize()));
    if read != d.digest {
        let _ = registry
            .send(
                Method::DELETE,
                &location,
                HeaderMap::new(),
                None,
                &[202, 204, 404],
            )
            .await;
        return Err(PushError::Image {
            path,
            message: format!(
                "this blob's bytes hash to {read}, not to its digest {}: the image layout is damaged; build it again (`comfypak build` also replaces a damaged layer cache blob)",
                d.digest
            ),
        });
    }
    location.query_pairs_mut().append_pair("digest", &d.digest);
    registry
        .send_once(Method::PUT, &location, octets(), final_body, &[201])
        .await?;
    Ok(if chunks > 0 {
        BlobOutcome::Chunked(chunks)
    } else {
        BlobOutcome::Uploaded
    })
}

/// One blob: present, mounted, or uploaded; an upload that breaks off (connection lost,
/// 5xx) is started again in a new session under the client's retry policy.
async fn push_blob(
    http: &HttpClient,
    registry: &Registry,
    layout: &Layout,
    d: &Descriptor,
    options: &PushOptions,
) -> Result<PushedBlob, PushError> {
    let done = |outcome| PushedBlob {
        digest: d.digest.clone(),
        size: d.size,
        media_type: d.media_type.clone(),
        outcome,
    };
    if registry.blob_exists(&d.digest).await? {
        return Ok(done(BlobOutcome::Present));
    }
    // A refused mount (202) opens an upload session: keep the last one, cancel the others.
    let mut session: Option<Url> = None;
    for from in &options.mount_from {
        if let Some(open) = session.take() {
            let _ = registry
                .send(
                    Method::DELETE,
                    &open,
                    HeaderMap::new(),
                    None,
                    &[202, 204, 404],
                )
                .await;
        }
        let mut url = registry.repo_url("blobs/uploads/")?;
        url.query_pairs_mut()
            .append_pair("mount", &d.digest)
            .append_pair("from", from);
        let response = registry
            .send(Method::POST, &url, HeaderMap::new(), None, &[201, 202])
            .await?;
        if response.status == 201 {
            return Ok(done(BlobOutcome::Mounted));
        }
        session = Some(registry.location(&response)?);
    }
    let mut retry = http.retry_state();
    loop {
        retry.attempt();
        match upload_blob(registry, layout, d, options.chunk_size, session.take()).await {
            Ok(outcome) => return Ok(done(outcome)),
            Err(PushError::Registry(e)) if e.is_transient() => match retry.failed(true, None) {
                Ok(delay) => tokio::time::sleep(delay).await,
                Err(attempts) => {
                    return Err(PushError::Upload {
                        digest: d.digest.clone(),
                        size: d.size,
                        registry: registry.reference().registry.clone(),
                        attempts: Box::new(attempts),
                        source: Box::new(e),
                    })
                }
            },
            Err(e) => return Err(e),
        }
    }
}

/// PUTs a manifest under `reference` unless the registry already has those bytes there.
async fn put_manifest(
    registry: &Registry,
    reference: &str,
    media_type: &str,
    digest: &str,
    bytes: &[u8],
    report: &mut PushReport,
) -> Result<(), PushError> {
    let url = registry.repo_url(&format!("manifests/{reference}"))?;
    let mut accept = HeaderMap::new();
    accept.insert(
        reqwest::header::ACCEPT,
        HeaderValue::from_str(media_type).unwrap_or(HeaderValue::from_static("*/*")),
    );
    let response = registry
        .send(Method::HEAD, &url, accept, None, &[200, 404])
        .await?;
    let present =
        response.status == 200 && response.header("docker-content-digest") == Some(digest);
    if present {
        report.manifests_present.push(reference.to_string());
        return Ok(());
    }
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_str(media_type).unwrap_or(HeaderValue::from_static(media::MANIFEST)),
    );
    registry
        .send(Method::PUT, &url, headers, Some(bytes.to_vec()), &[201])
        .await?;
    report.manifests_put.push(reference.to_string());
    Ok(())
}

/// Pushes the image in the OCI layout `layout_dir` to `reference` over `http`.
pub async fn push_with(
    http: &HttpClient,
    layout_dir: &Path,
    reference: &ImageReference,
    options: PushOptions,
) -> Result<PushReport, PushError> {
    let layout = Layout::open(layout_dir)?;
    let plan = plan(&layout, &reference.tag)?;
    let registry = Arc::new(
        Registry::connect(
            http,
            reference,
            RegistryOptions {
                insecure: options.insecure,
                credentials: options.credentials.clone(),
                scope: Scope::Push {
                    mount_from: options.mount_from.clone(),
                },
            },
        )
        .await?,
    );

    // Every distinct blob (layers first, then configs), each once.
    let mut blobs: Vec<Descriptor> = Vec::new();
    for (_, _, manifest) in &plan.manifests {
        for d in manifest
            .layers
            .iter()
            .chain(std::iter::once(&manifest.config))
        {
            if !blobs.iter().any(|b| b.digest == d.digest) {
                blobs.push(d.clone());
            }
        }
    }
    use futures::StreamExt;
    let layout = Arc::new(layout);
    let results: Vec<Result<PushedBlob, PushError>> = futures::stream::iter(blobs)
        .map(|d| {
            let registry = registry.clone();
            let layout = layout.clone();
            let options = &options;
            async move { push_blob(http, &registry, &layout, &d, options).await }
        })
        .buffer_unordered(options.concurrency.max(1))
        .collect()
        .await;
    let mut report = PushReport::default();
    for result in results {
        report.blobs.push(result?);
    }
    report.blobs.sort_by(|a, b| a.digest.cmp(&b.digest));

    match &plan.index {
        None => {
            let (d, bytes, _) = &plan.manifests[0];
            put_manifest(
                &registry,
                &reference.tag,
                &d.media_type,
                &d.digest,
                bytes,
                &mut report,
            )
            .await?;
            report.digest = d.digest.clone();
        }
        Some((index, index_bytes)) => {
            for (d, bytes, _) in &plan.manifests {
                put_manifest(
                    &registry,
                    &d.digest,
                    &d.media_type,
                    &d.digest,
                    bytes,
                    &mut report,
                )
                .await?;
            }
            put_manifest(
                &registry,
                &reference.tag,
                &index.media_type,
                &index.digest,
                index_bytes,
                &mut report,
            )
            .await?;
            report.digest = index.digest.clone();
        }
    }
    Ok(report)
}

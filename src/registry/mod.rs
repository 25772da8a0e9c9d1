//! An OCI distribution (registry) client on the shared [`HttpClient`]: image references,
//! credentials and token auth, and a [`Registry`] session that sends requests with auth
//! and the one retry policy. `pack::push` uploads with it; [`pull`] pulls base images
//! (`docker://…`) with the same session ([`Registry::get_manifest`], [`Registry::get_blob`],
//! [`Registry::download_blob`]) into OCI layouts in the cache.
//!
//! Owns the registry protocol's transport side: `/v2/` ping, `WWW-Authenticate` challenges
//! (Basic, Bearer with a token service), re-authentication on 401, plain HTTP only for a
//! loopback registry. Credentials and tokens are never printed or put in errors.
//! Must not: build, change or interpret images (that is `pack`).

pub mod auth;
pub mod client;
pub mod pull;
pub mod reference;

pub use auth::{credentials_for, docker_config_credentials, Credentials};
pub use client::{FetchedManifest, Registry, RegistryOptions, Scope};
pub use reference::{is_loopback, ImageReference};

use std::path::PathBuf;

use crate::http::{HttpClient, HttpError};

/// Why a registry request failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("`{text}` is not an image reference: {message}")]
    Reference { text: String, message: String },
    #[error("plain HTTP is allowed only for a registry on this machine (127.0.0.1, ::1, localhost); {registry} is not")]
    InsecureNotLoopback { registry: String },
    #[error("registry {registry}: {source}")]
    Http {
        registry: String,
        /// A loopback registry reached over https: it may only speak plain HTTP.
        loopback_tls: bool,
        #[source]
        source: Box<HttpError>,
    },
    #[error("{method} {url}: HTTP {status}: {body}")]
    Status {
        method: String,
        url: String,
        status: u16,
        body: String,
    },
    #[error("{registry}: authentication failed: {message}")]
    Auth { registry: String, message: String },
    #[error("{}: {message}", path.display())]
    DockerConfig { path: PathBuf, message: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl RegistryError {
    /// What the user can do about it.
    pub fn help(&self) -> Option<String> {
        match self {
            RegistryError::Reference { .. } => {
                Some("write REGISTRY/REPOSITORY:TAG, e.g. 127.0.0.1:5000/comfyui:latest".into())
            }
            RegistryError::InsecureNotLoopback { .. } => {
                Some("drop --insecure and use the registry's HTTPS endpoint".into())
            }
            RegistryError::Http {
                loopback_tls: true, ..
            } => Some("a registry on this machine without TLS needs --insecure".into()),
            RegistryError::Http { source, .. } => source.help(),
            RegistryError::Auth { registry, .. } => Some(format!(
                "set COMFYPAK_REGISTRY_USERNAME and COMFYPAK_REGISTRY_PASSWORD (or \
                 COMFYPAK_REGISTRY_TOKEN), or log in with `docker login {registry}` so \
                 ~/.docker/config.json has credentials"
            )),
            _ => None,
        }
    }

    /// Worth another try: the registry could not be reached, broke off, or failed (5xx).
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Http { source, .. } => source.is_retryable(),
            RegistryError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

/// A session with the registry of `reference` on `http`, authenticated for `scope`:
/// the entry point for pushing and pulling.
pub async fn connect(
    http: &HttpClient,
    reference: &ImageReference,
    options: RegistryOptions,
) -> Result<Registry, RegistryError> {
    Registry::connect(http, reference, options).await
}

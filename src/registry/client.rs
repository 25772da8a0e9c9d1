//! A session with one repository of one registry: requests with auth over the shared
//! [`HttpClient`] (its retry policy included), re-authentication when a 401 comes back,
//! and the reads a pull needs (manifests, blobs). Must not: build or change images.

use std::path::Path;

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, LOCATION, WWW_AUTHENTICATE};
use reqwest::Method;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;
use url::Url;

use super::auth::{authorization, Credentials};
use super::reference::{is_loopback, ImageReference};
use super::RegistryError;
use crate::http::{redact, HttpClient, Response};

/// What the session's token is for: the scopes asked of a token service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Read the repository.
    Pull,
    /// Read and write the repository, and read these others (cross-repository mounts).
    Push { mount_from: Vec<String> },
}

/// How to connect.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Plain HTTP (allowed for a loopback registry only).
    pub insecure: bool,
    pub credentials: Option<Credentials>,
    pub scope: Scope,
}

/// A manifest (or index) as the registry serves it.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub media_type: String,
    /// `sha256:<hex>` of `bytes`.
    pub digest: String,
    pub bytes: Vec<u8>,
}

/// One repository's session; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Registry {
    http: HttpClient,
    base: Url,
    reference: ImageReference,
    options: RegistryOptions,
    auth: Mutex<Option<HeaderValue>>,
}

impl Registry {
    /// Opens a session: checks the plain-HTTP rule, then pings `/v2/` (learning the auth
    /// scheme before any upload or download starts).
    pub async fn connect(
        http: &HttpClient,
        reference: &ImageReference,
        options: RegistryOptions,
    ) -> Result<Registry, RegistryError> {
        if options.insecure && !is_loopback(&reference.registry) {
            return Err(RegistryError::InsecureNotLoopback {
                registry: reference.registry.clone(),
            });
        }
        let scheme = if options.insecure { "http" } else { "https" };
        let base = Url::parse(&format!("{scheme}://{}/", reference.registry)).map_err(|e| {
            RegistryError::Reference {
                text: reference.to_string(),
                message: e.to_string(),
            }
        })?;
        let registry = Registry {
            http: http.clone(),
            base,
            reference: reference.clone(),
            options,
            auth: Mutex::new(None),
        };
        let ping = registry.url("/v2/")?;
        registry
            .send(Method::GET, &ping, HeaderMap::new(), None, &[200])
            .await?;
        Ok(registry)
    }

    pub fn reference(&self) -> &ImageReference {
        &self.reference
    }

    pub fn options(&self) -> &RegistryOptions {
        &self.options
    }

    /// `path` on the registry.
    pub fn url(&self, path: &str) -> Result<Url, RegistryError> {
        self.base.join(path).map_err(|e| RegistryError::Reference {
            text: self.reference.to_string(),
            message: e.to_string(),
        })
    }

    /// `/v2/<repository>/<rest>`.
    pub fn repo_url(&self, rest: &str) -> Result<Url, RegistryError> {
        self.url(&format!("/v2/{}/{rest}", self.reference.repository))
    }

    /// A request with auth under the retry policy; a status outside `expected` is an error
    /// (401/403 an auth error) carrying the start of the body.
    pub async fn send(
        &self,
        method: Method,
        url: &Url,
        headers: HeaderMap,
        body: Option<Vec<u8>>,
        expected: &[u16],
    ) -> Result<Response, RegistryError> {
        let response = self
            .exchange(method.clone(), url, headers, body, true)
            .await?;
        self.check(response, &method, expected)
    }

    /// [`Registry::send`] with a single attempt, for upload-session steps: a session that
    /// broke mid-body cannot simply be sent again; the caller restarts the upload.
    pub async fn send_once(
        &self,
        method: Method,
        url: &Url,
        headers: HeaderMap,
        body: Option<Vec<u8>>,
        expected: &[u16],
    ) -> Result<Response, RegistryError> {
        let response = self
            .exchange(method.clone(), url, headers, body, false)
            .await?;
        self.check(response, &method, expected)
    }

    async fn exchange(
        &self,
        method: Method,
        url: &Url,
        headers: HeaderMap,
        body: Option<Vec<u8>>,
        retry: bool,
    ) -> Result<Response, RegistryError> {
        // A PUT or POST without a body still says `Content-Length: 0`.
        let body = match body {
            None if method == Method::PUT || method == Method::POST => Some(Vec::new()),
            other => other,
        };
        let mut reauthenticated = false;
        loop {
            let mut headers = headers.clone();
            if let Some(auth) = self.auth.lock().await.clone() {
                headers.insert(AUTHORIZATION, auth);
            }
            let sent = if retry {
                self.http
                    .request(method.clone(), url, headers, body.clone())
                    .await
            } else {
                self.http
                    .request_once(method.clone(), url, headers, body.clone())
                    .await
            };
            let response = sent.map_err(|source| self.http_error(source))?;
            if response.status == 401 && !reauthenticated {
                reauthenticated = true;
                let challenge = response
                    .header(WWW_AUTHENTICATE.as_str())
                    .map(str::to_string);
                let value = authorization(
                    &self.http,
                    &self.reference.registry,
                    challenge.as_deref(),
                    self.options.credentials.as_ref(),
                    &self.scopes(),
                )
                .await?;
                *self.auth.lock().await = Some(value);
                continue;
            }
            return Ok(response);
        }
    }

    fn scopes(&self) -> Vec<String> {
        let repo = &self.reference.repository;
        match &self.options.scope {
            Scope::Pull => vec![format!("repository:{repo}:pull")],
            Scope::Push { mount_from } => std::iter::once(format!("repository:{repo}:pull,push"))
                .chain(
                    mount_from
                        .iter()
                        .map(|from| format!("repository:{from}:pull")),
                )
                .collect(),
        }
    }

    fn http_error(&self, source: crate::http::HttpError) -> RegistryError {
        RegistryError::Http {
            registry: self.reference.registry.clone(),
            loopback_tls: self.base.scheme() == "https"
                && is_loopback(&self.reference.registry)
                && source.is_unreachable(),
            source: Box::new(source),
        }
    }

    fn check(
        &self,
        response: Response,
        method: &Method,
        expected: &[u16],
    ) -> Result<Response, RegistryError> {
        let status = response.status;
        if expected.contains(&status) {
            return Ok(response);
        }
        let url = redact(&response.url);
        let body: String = String::from_utf8_lossy(&response.body)
            .chars()
            .take(400)
            .collect();
        if status == 401 || status == 403 {
            return Err(RegistryError::Auth {
                registry: self.reference.registry.clone(),
                message: format!("{method} {url}: HTTP {status}: {body}"),
            });
        }
        Err(RegistryError::Status {
            method: method.to_string(),
            url,
            status,
            body,
        })
    }

    /// The absolute URL in an upload answer's `Location`.
    pub fn location(&self, response: &Response) -> Result<Url, RegistryError> {
        let bad = |body: String| RegistryError::Status {
            method: "POST".to_string(),
            url: redact(&response.url),
            status: response.status,
            body,
        };
        let location = response
            .header(LOCATION.as_str())
            .ok_or_else(|| bad("no Location header in the upload response".to_string()))?;
        response
            .url
            .join(location)
            .map_err(|e| bad(format!("bad Location {location:?}: {e}")))
    }

    /// Whether the repository has the blob.
    pub async fn blob_exists(&self, digest: &str) -> Result<bool, RegistryError> {
        let url = self.repo_url(&format!("blobs/{digest}"))?;
        let response = self
            .send(Method::HEAD, &url, HeaderMap::new(), None, &[200, 404])
            .await?;
        Ok(response.status == 200)
    }

    /// The manifest or index under `reference` (a tag or a digest), asking for `accept`
    /// media types. A digest reference is verified against the bytes.
    pub async fn get_manifest(
        &self,
        reference: &str,
        accept: &[&str],
    ) -> Result<FetchedManifest, RegistryError> {
        let url = self.repo_url(&format!("manifests/{reference}"))?;
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(&accept.join(", ")) {
            headers.insert(ACCEPT, value);
        }
        let response = self.send(Method::GET, &url, headers, None, &[200]).await?;
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&response.body)));
        if reference.starts_with("sha256:") && reference != digest {
            return Err(RegistryError::Status {
                method: "GET".to_string(),
                url: redact(&url),
                status: response.status,
                body: format!("the manifest's bytes hash to {digest}, not {reference}"),
            });
        }
        Ok(FetchedManifest {
            media_type: response
                .header("content-type")
                .unwrap_or_default()
                .to_string(),
            digest,
            bytes: response.body,
        })
    }

    /// Streams a blob into `dest` (through `dest` + `.part`, renamed once the sha256 matches
    /// `digest`), for layers too large to hold in memory. Returns its size. Connect errors
    /// and 5xx answers are retried by the client; a 401 re-authenticates once.
    pub async fn download_blob(&self, digest: &str, dest: &Path) -> Result<u64, RegistryError> {
        use futures::StreamExt;
        use tokio::io::AsyncWriteExt;
        let url = self.repo_url(&format!("blobs/{digest}"))?;
        let io = |source: std::io::Error| RegistryError::Io {
            path: dest.to_path_buf(),
            source,
        };
        // A HEAD under the session's auth learns (or refreshes) the token first: the
        // streaming GET below carries it as it is.
        self.send(Method::HEAD, &url, HeaderMap::new(), None, &[200])
            .await?;
        let mut headers = HeaderMap::new();
        if let Some(auth) = self.auth.lock().await.clone() {
            headers.insert(AUTHORIZATION, auth);
        }
        let response = self
            .http
            .get_stream(&url, headers)
            .await
            .map_err(|source| self.http_error(source))?;
        // A name of its own (several pulls of one blob may run at once, in this process or
        // another), removed when this stops before the rename, however it stops.
        let part =
            PartFile(dest.with_extension(format!("part.{}", crate::fsutil::unique_suffix())));
        let mut file = tokio::fs::File::create(&part.0).await.map_err(io)?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| {
                self.http_error(
                    crate::http::Failure::from_reqwest(&e).into_error(
                        &Method::GET,
                        &url,
                        crate::http::RetryState::new(self.http.settings())
                            .summary(crate::http::GiveUp::NotRetryable),
                    ),
                )
            })?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
            file.write_all(&chunk).await.map_err(io)?;
        }
        file.sync_all().await.map_err(io)?;
        drop(file);
        let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
        if actual != digest {
            return Err(RegistryError::Status {
                method: "GET".to_string(),
                url: redact(&url),
                status: 200,
                body: format!("the blob's bytes hash to {actual}, not {digest}"),
            });
        }
        std::fs::rename(&part.0, dest).map_err(io)?;
        Ok(size)
    }

    /// A blob's bytes, verified against its `sha256:` digest.
    pub async fn get_blob(&self, digest: &str) -> Result<Vec<u8>, RegistryError> {
        let url = self.repo_url(&format!("blobs/{digest}"))?;
        let response = self
            .send(Method::GET, &url, HeaderMap::new(), None, &[200])
            .await?;
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(&response.body)));
        if actual != digest {
            return Err(RegistryError::Status {
                method: "GET".to_string(),
                url: redact(&url),
                status: response.status,
                body: format!("the blob's bytes hash to {actual}, not {digest}"),
            });
        }
        Ok(response.body)
    }
}

/// A blob's temporary file: removed on drop (an error, a cancelled pull), a no-op once it was
/// renamed into place.
struct PartFile(std::path::PathBuf);

impl Drop for PartFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

//! The HTTP client every network stage shares.
//!
//! Owns TLS trust (the system certificate store plus `SSL_CERT_FILE` / `SSL_CERT_DIR`),
//! proxies (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`), HTTP/2 and connection reuse, bounded
//! concurrency, retries with backoff on 5xx / resets / timeouts (never on 4xx), byte ranges,
//! and credentials from the URL or `~/.netrc` (never printed). It must not know what an
//! index or a wheel is: callers give it URLs and get bytes.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_RANGE, RANGE};
use reqwest::StatusCode;
use tokio::sync::Semaphore;
use url::Url;

/// How the client behaves; every field has a sensible default.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Requests in flight at once, across the whole process.
    pub concurrency: usize,
    /// Extra attempts after the first one for a retryable failure.
    pub retries: u32,
    /// First backoff delay; doubles on each retry.
    pub backoff: Duration,
    pub connect_timeout: Duration,
    /// Longest pause between two reads of one response.
    pub read_timeout: Duration,
    /// The netrc file to read credentials from (`NETRC`, else `~/.netrc`).
    pub netrc: Option<PathBuf>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            concurrency: 64,
            retries: 3,
            backoff: Duration::from_millis(200),
            connect_timeout: Duration::from_secs(15),
            read_timeout: Duration::from_secs(60),
            netrc: std::env::var_os("NETRC")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".netrc"))),
        }
    }
}

/// Why a request failed, after retries.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
    #[error("GET {url}: the server answered {status}{hint}")]
    Status {
        url: String,
        status: u16,
        hint: &'static str,
    },
    #[error("GET {url}: {message} (gave up after {attempts} attempt{s})", s = if *attempts == 1 { "" } else { "s" })]
    Transport {
        url: String,
        message: String,
        attempts: u32,
    },
    #[error("GET {url}: bad Content-Range `{value}` in a 206 answer")]
    BadContentRange { url: String, value: String },
}

impl HttpError {
    /// The HTTP status, when the server answered with one.
    pub fn status(&self) -> Option<u16> {
        match self {
            HttpError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A complete response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// The URL after redirects.
    pub url: Url,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A range request's answer.
#[derive(Debug, Clone)]
pub enum RangeResponse {
    /// 206: `bytes` start at `start`; the whole file has `total` bytes.
    Partial {
        start: u64,
        total: u64,
        bytes: Vec<u8>,
    },
    /// 200: the server ignored the range and sent the whole file.
    Full(Vec<u8>),
}

/// Which bytes to ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// The last `n` bytes.
    Suffix(u64),
    /// Bytes `start..end` (end exclusive).
    Span(u64, u64),
}

impl ByteRange {
    fn header(self) -> String {
        match self {
            ByteRange::Suffix(n) => format!("bytes=-{n}"),
            ByteRange::Span(start, end) => format!("bytes={start}-{}", end.saturating_sub(1)),
        }
    }
}

/// The shared client: cheap to clone.
#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    permits: Arc<Semaphore>,
    settings: HttpSettings,
    netrc: Arc<Vec<NetrcEntry>>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    pub fn new(settings: HttpSettings) -> Result<Self, HttpError> {
        // reqwest with `rustls-tls-native-roots` trusts the system store and honours
        // SSL_CERT_FILE / SSL_CERT_DIR; proxies come from the environment by default.
        let client = reqwest::Client::builder()
            .user_agent(concat!("comfypak/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(settings.connect_timeout)
            .read_timeout(settings.read_timeout)
            .pool_max_idle_per_host(settings.concurrency.max(1))
            .gzip(true)
            .dns_resolver(Arc::new(SharedResolver::default()))
            .build()
            .map_err(|e| HttpError::Setup(error_chain(&e)))?;
        let netrc = settings
            .netrc
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map(|text| parse_netrc(&text))
            .unwrap_or_default();
        Ok(HttpClient {
            client,
            permits: Arc::new(Semaphore::new(settings.concurrency.max(1))),
            settings,
            netrc: Arc::new(netrc),
        })
    }

    pub fn settings(&self) -> &HttpSettings {
        &self.settings
    }

    /// GET with extra headers; 2xx and 304 are answers, other statuses are errors.
    pub async fn get(&self, url: &Url, headers: HeaderMap) -> Result<Response, HttpError> {
        self.send(url, headers).await
    }

    /// GET a page with an `Accept` header.
    pub async fn get_accept(&self, url: &Url, accept: &str) -> Result<Response, HttpError> {
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(accept) {
            headers.insert(ACCEPT, v);
        }
        self.send(url, headers).await
    }

    /// GET a byte range. A server that ignores ranges answers with the whole file.
    pub async fn get_range(&self, url: &Url, range: ByteRange) -> Result<RangeResponse, HttpError> {
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&range.header()) {
            headers.insert(RANGE, v);
        }
        // Ranges of compressed transfer encodings would not be byte ranges of the file.
        headers.insert(
            reqwest::header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        let response = self.send(url, headers).await?;
        if response.status == 206 {
            let value = response.header(CONTENT_RANGE.as_str()).unwrap_or("");
            let (start, total) =
                parse_content_range(value).ok_or_else(|| HttpError::BadContentRange {
                    url: redact(url),
                    value: value.to_string(),
                })?;
            Ok(RangeResponse::Partial {
                start,
                total,
                bytes: response.body,
            })
        } else {
            Ok(RangeResponse::Full(response.body))
        }
    }

    /// A streaming GET for large downloads: the caller reads the body and handles resumption.
    pub async fn get_stream(
        &self,
        url: &Url,
        headers: HeaderMap,
    ) -> Result<reqwest::Response, HttpError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let request = self.request(url, headers.clone());
            let sent = tokio::time::timeout(self.settings.read_timeout, request.send()).await;
            let sent = match sent {
                Ok(result) => result.map_err(|e| error_chain(&e)),
                Err(_) => Err(format!("no answer within {:?}", self.settings.read_timeout)),
            };
            match sent {
                Ok(resp) if resp.status().is_success() => return Ok(resp),
                Ok(resp) => {
                    let status = resp.status();
                    if is_retryable_status(status) && attempt <= self.settings.retries {
                        self.backoff(attempt).await;
                        continue;
                    }
                    return Err(status_error(url, status));
                }
                Err(message) => {
                    if attempt <= self.settings.retries {
                        self.backoff(attempt).await;
                        continue;
                    }
                    return Err(HttpError::Transport {
                        url: redact(url),
                        message,
                        attempts: attempt,
                    });
                }
            }
        }
    }

    fn request(&self, url: &Url, headers: HeaderMap) -> reqwest::RequestBuilder {
        let (clean, auth) = self.credentials(url);
        let mut builder = self.client.get(clean).headers(headers);
        if let Some((user, password)) = auth {
            builder = builder.basic_auth(user, password);
        }
        builder
    }

    /// Credentials from the URL's userinfo, else from netrc for the host. Returns the URL
    /// without userinfo.
    fn credentials(&self, url: &Url) -> (Url, Option<(String, Option<String>)>) {
        let mut clean = url.clone();
        if !url.username().is_empty() {
            let user = percent_decode(url.username());
            let password = url.password().map(percent_decode);
            let _ = clean.set_username("");
            let _ = clean.set_password(None);
            return (clean, Some((user, password)));
        }
        let host = url.host_str().unwrap_or("");
        let entry = self
            .netrc
            .iter()
            .find(|e| e.machine.as_deref() == Some(host))
            .or_else(|| self.netrc.iter().find(|e| e.machine.is_none()));
        let auth = entry.map(|e| (e.login.clone(), e.password.clone()));
        (clean, auth)
    }

    async fn send(&self, url: &Url, headers: HeaderMap) -> Result<Response, HttpError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = {
                let _permit = self.permits.acquire().await;
                self.send_once(url, headers.clone()).await
            };
            match outcome {
                Ok(response) => return Ok(response),
                Err(Failure::Status(status)) => {
                    if is_retryable_status(status) && attempt <= self.settings.retries {
                        self.backoff(attempt).await;
                        continue;
                    }
                    return Err(status_error(url, status));
                }
                Err(Failure::Transport(message)) => {
                    if attempt <= self.settings.retries {
                        self.backoff(attempt).await;
                        continue;
                    }
                    return Err(HttpError::Transport {
                        url: redact(url),
                        message,
                        attempts: attempt,
                    });
                }
            }
        }
    }

    async fn send_once(&self, url: &Url, headers: HeaderMap) -> Result<Response, Failure> {
        // `read_timeout` bounds each read of the body; waiting for the answer's headers is
        // bounded here, so a server that accepts and then stalls is retried too.
        let resp = tokio::time::timeout(
            self.settings.read_timeout,
            self.request(url, headers).send(),
        )
        .await
        .map_err(|_| {
            Failure::Transport(format!("no answer within {:?}", self.settings.read_timeout))
        })?
        .map_err(|e| Failure::Transport(error_chain(&e)))?;
        let status = resp.status();
        if !(status.is_success() || status == StatusCode::NOT_MODIFIED) {
            return Err(Failure::Status(status));
        }
        let final_url = resp.url().clone();
        let headers = resp.headers().clone();
        let expected = resp.content_length();
        let body = resp
            .bytes()
            .await
            .map_err(|e| Failure::Transport(error_chain(&e)))?;
        if let Some(expected) = expected {
            if body.len() as u64 != expected {
                return Err(Failure::Transport(format!(
                    "connection closed after {} of {expected} bytes",
                    body.len()
                )));
            }
        }
        Ok(Response {
            status: status.as_u16(),
            headers,
            body: body.to_vec(),
            url: final_url,
        })
    }

    async fn backoff(&self, attempt: u32) {
        let factor = 1u32 << attempt.saturating_sub(1).min(6);
        tokio::time::sleep(self.settings.backoff * factor).await;
    }
}

/// Host name lookups shared by every request of the process: concurrent requests to one
/// host wait on a single lookup, and the answer is kept. Without it, the first burst of
/// parallel connections sends one DNS query each, and resolvers that drop bursts answer
/// with multi-second timeouts.
#[derive(Default)]
struct SharedResolver {
    hosts: std::sync::Mutex<
        std::collections::HashMap<String, Arc<tokio::sync::OnceCell<Vec<std::net::SocketAddr>>>>,
    >,
}

impl reqwest::dns::Resolve for SharedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        let cell = match self.hosts.lock() {
            Ok(mut hosts) => hosts.entry(host.clone()).or_default().clone(),
            Err(_) => Arc::new(tokio::sync::OnceCell::new()),
        };
        Box::pin(async move {
            let addrs = cell
                .get_or_try_init(|| async {
                    let found: Vec<std::net::SocketAddr> =
                        tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
                    if found.is_empty() {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            format!("no address for {host}"),
                        ));
                    }
                    Ok(found)
                })
                .await?
                .clone();
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

enum Failure {
    Status(StatusCode),
    Transport(String),
}

fn is_retryable_status(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

fn status_error(url: &Url, status: StatusCode) -> HttpError {
    let hint = match status.as_u16() {
        401 | 403 => " (check the credentials in the index URL or ~/.netrc)",
        404 => "",
        407 => " (the proxy wants credentials: put them in HTTPS_PROXY)",
        s if s >= 500 => " (the server failed; retried with backoff)",
        _ => "",
    };
    HttpError::Status {
        url: redact(url),
        status: status.as_u16(),
        hint,
    }
}

/// The URL as it may be printed: without its userinfo.
pub fn redact(url: &Url) -> String {
    let mut clean = url.clone();
    if !url.username().is_empty() || url.password().is_some() {
        let _ = clean.set_username("");
        let _ = clean.set_password(None);
    }
    clean.to_string()
}

/// An error and its sources, one line: reqwest hides the useful part in the chain.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// Decode `%XX` escapes (invalid escapes are kept literally, invalid UTF-8 is replaced).
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hi = (bytes[i + 1] as char).to_digit(16);
            let lo = (bytes[i + 2] as char).to_digit(16);
            if let (Some(hi), Some(lo)) = (hi, lo) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `bytes START-END/TOTAL` → (START, TOTAL).
pub fn parse_content_range(value: &str) -> Option<(u64, u64)> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (span, total) = rest.split_once('/')?;
    let (start, _end) = span.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()?))
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct NetrcEntry {
    /// None for `default`.
    machine: Option<String>,
    login: String,
    password: Option<String>,
}

/// The netrc format: whitespace-separated tokens `machine NAME login USER password PASS`,
/// `default`, and `macdef` blocks (skipped).
fn parse_netrc(text: &str) -> Vec<NetrcEntry> {
    let mut entries = Vec::new();
    let mut tokens = text.split_whitespace().peekable();
    let mut current: Option<NetrcEntry> = None;
    while let Some(token) = tokens.next() {
        match token {
            "machine" | "default" => {
                if let Some(entry) = current.take() {
                    entries.push(entry);
                }
                let machine = if token == "machine" {
                    tokens.next().map(str::to_string)
                } else {
                    None
                };
                current = Some(NetrcEntry {
                    machine,
                    login: String::new(),
                    password: None,
                });
            }
            "login" => {
                if let (Some(entry), Some(v)) = (current.as_mut(), tokens.next()) {
                    entry.login = v.to_string();
                }
            }
            "password" => {
                if let (Some(entry), Some(v)) = (current.as_mut(), tokens.next()) {
                    entry.password = Some(v.to_string());
                }
            }
            "account" => {
                tokens.next();
            }
            "macdef" => {
                // A macro runs to the next blank line; whitespace tokenizing loses that, so
                // stop reading: credentials after a macro are rare and never guessed at.
                break;
            }
            _ => {}
        }
    }
    if let Some(entry) = current.take() {
        entries.push(entry);
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn content_range_parses() {
        assert_eq!(parse_content_range("bytes 100-199/1000"), Some((100, 1000)));
        assert_eq!(parse_content_range("bytes  0-0/1"), Some((0, 1)));
        assert_eq!(parse_content_range("bytes */1000"), None);
        assert_eq!(parse_content_range("items 1-2/3"), None);
    }

    #[test]
    fn ranges_render() {
        assert_eq!(ByteRange::Suffix(65536).header(), "bytes=-65536");
        assert_eq!(ByteRange::Span(10, 20).header(), "bytes=10-19");
    }

    #[test]
    fn netrc_entries() {
        let entries = parse_netrc(
            "machine index.example login alice password s3cret\n\
             default login anon password x\n",
        );
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].machine.as_deref(), Some("index.example"));
        assert_eq!(entries[0].login, "alice");
        assert_eq!(entries[0].password.as_deref(), Some("s3cret"));
        assert_eq!(entries[1].machine, None);
    }

    #[test]
    fn lookups_are_shared_and_kept() {
        use reqwest::dns::Resolve;
        let resolver = Arc::new(SharedResolver::default());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let name = |h: &str| reqwest::dns::Name::from_str(h).unwrap();
            let (a, b) = tokio::join!(
                resolver.resolve(name("localhost")),
                resolver.resolve(name("localhost"))
            );
            let a: Vec<_> = a.unwrap().collect();
            let b: Vec<_> = b.unwrap().collect();
            assert!(!a.is_empty());
            assert_eq!(a, b);
            assert!(resolver
                .resolve(name("no-such-host.invalid"))
                .await
                .is_err());
        });
        let hosts = resolver.hosts.lock().unwrap();
        assert!(hosts["localhost"].initialized());
        // A failed lookup is not kept: the next request asks again.
        assert!(!hosts["no-such-host.invalid"].initialized());
    }

    #[test]
    fn redaction_drops_userinfo() {
        let url = Url::parse("https://alice:s3cret@index.example/simple/").unwrap();
        let shown = redact(&url);
        assert!(!shown.contains("s3cret"));
        assert!(!shown.contains("alice"));
        assert_eq!(percent_decode("a%40b"), "a@b");
    }

    #[test]
    fn percent_decode_edge_cases() {
        assert_eq!(percent_decode("a%2Bb"), "a+b");
        assert_eq!(percent_decode("torch-2.11.0%2Bcu130"), "torch-2.11.0+cu130");
        assert_eq!(percent_decode("bad%zz%2"), "bad%zz%2");
        assert_eq!(percent_decode("end%41"), "endA");
    }
}

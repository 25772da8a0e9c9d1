//! The HTTP client every network stage shares: index reads, wheel downloads and registry
//! pushes.
//!
//! Owns TLS trust (the system certificate store plus `SSL_CERT_FILE` / `SSL_CERT_DIR`),
//! proxies (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`), HTTP/2 and connection reuse, bounded
//! concurrency, byte ranges, credentials from the URL or `~/.netrc` (never printed), the
//! redirect rule (https never becomes http), and the one retry policy ([`RetryState`]):
//! connect errors, resets, timeouts, 5xx and 429 (honouring `Retry-After`) are retried with
//! jittered exponential backoff, other 4xx never; every retry loop is capped in attempts and
//! in time, and its error says what it gave up on. Transport errors stay typed
//! ([`ConnectKind`]) so callers can say which server could not be reached.
//! It must not know what an index or a wheel is: callers give it URLs and get bytes.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_RANGE, RANGE, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use tokio::sync::Semaphore;
use url::Url;

/// How the client behaves; every field has a sensible default.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Requests in flight at once, across the whole process.
    pub concurrency: usize,
    /// Failed attempts in a row allowed after the first one, for a retryable failure.
    pub retries: u32,
    /// First backoff delay; doubles on each retry, with jitter, up to `max_backoff`.
    pub backoff: Duration,
    /// Longest single backoff delay.
    pub max_backoff: Duration,
    /// No new attempt starts once this much time has passed since the first attempt (for a
    /// download: since the last attempt that brought new bytes). A `Retry-After` longer than
    /// what is left ends the retries at once.
    pub retry_time: Duration,
    /// Attempts of one request in all, however much progress each made (resumed downloads).
    pub max_attempts: u32,
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
            max_backoff: Duration::from_secs(30),
            retry_time: Duration::from_secs(300),
            max_attempts: 50,
            connect_timeout: Duration::from_secs(15),
            read_timeout: Duration::from_secs(60),
            netrc: std::env::var_os("NETRC")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".netrc"))),
        }
    }
}

/// What went wrong before any HTTP answer came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectKind {
    /// The host name did not resolve.
    Dns,
    /// Nothing listens there (connection refused).
    Refused,
    /// The TLS handshake failed (certificate, protocol).
    Tls,
    /// No connection within the connect timeout.
    Timeout,
    /// Any other failure to open a connection (unreachable network, proxy).
    Other,
}

impl std::fmt::Display for ConnectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConnectKind::Dns => "the host name does not resolve",
            ConnectKind::Refused => "the connection was refused",
            ConnectKind::Tls => "the TLS handshake failed",
            ConnectKind::Timeout => "the connection timed out",
            ConnectKind::Other => "no connection could be made",
        })
    }
}

/// Why a request failed after a connection was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferKind {
    /// The connection was reset or closed before the answer was complete.
    Reset,
    /// The server stopped sending within the read timeout.
    Timeout,
    /// Anything else (a malformed answer, a body that cannot be decoded).
    Other,
}

/// Why a retry loop stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// The failure is not one that a retry can fix.
    NotRetryable,
    /// `retries + 1` failures in a row (how many).
    FailuresInRow(u32),
    /// `max_attempts` attempts in all.
    Attempts,
    /// The time budget (`retry_time`) ran out.
    Time(Duration),
    /// The server asked to come back later than the time budget allows.
    RetryAfter(Duration),
}

/// How many attempts a request took, for how long, and why it stopped: every error of a
/// retried request carries one, so the user sees what was given up on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempts {
    pub count: u32,
    pub elapsed: Duration,
    pub gave_up: GiveUp,
}

impl std::fmt::Display for Attempts {
    /// `; gave up after N attempts in T s: why`, or nothing for a single attempt that was
    /// not worth retrying: errors write `{attempts}` right after their message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = if self.count == 1 { "" } else { "s" };
        let secs = self.elapsed.as_secs_f64();
        let why = match self.gave_up {
            GiveUp::NotRetryable if self.count <= 1 => return Ok(()),
            GiveUp::NotRetryable => "the last failure is not one a retry can fix".to_string(),
            GiveUp::FailuresInRow(n) => format!("{n} failures in a row"),
            GiveUp::Attempts => "the most allowed".to_string(),
            GiveUp::Time(limit) => format!("retry time limit {} s", limit.as_secs()),
            GiveUp::RetryAfter(wait) => format!(
                "the server asked to retry after {} s, longer than the retry time left",
                wait.as_secs()
            ),
        };
        write!(
            f,
            "; gave up after {} attempt{s} in {secs:.1} s: {why}",
            self.count
        )
    }
}

/// Why a request failed, after retries.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
    #[error("{method} {url}: the server answered {status}{attempts}")]
    Status {
        method: Method,
        url: String,
        status: u16,
        attempts: Box<Attempts>,
    },
    #[error("{method} {url}: cannot connect to {host}: {kind} ({message}){attempts}")]
    Connect {
        method: Method,
        url: String,
        host: String,
        kind: ConnectKind,
        message: String,
        attempts: Box<Attempts>,
    },
    #[error("{method} {url}: {message}{attempts}")]
    Transfer {
        method: Method,
        url: String,
        kind: TransferKind,
        message: String,
        attempts: Box<Attempts>,
    },
    #[error("{from} redirects to {to}: refusing to follow an https URL to plain http")]
    InsecureRedirect { from: String, to: String },
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

    /// Another attempt might succeed: no connection (but for TLS), a broken transfer, or a
    /// 5xx / 429 answer.
    pub fn is_retryable(&self) -> bool {
        match self {
            HttpError::Connect { kind, .. } => *kind != ConnectKind::Tls,
            HttpError::Transfer { .. } => true,
            HttpError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    /// The server could not be reached at all (DNS, refused, TLS, connect timeout).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, HttpError::Connect { .. })
    }

    /// What the user can do about it.
    pub fn help(&self) -> Option<String> {
        match self {
            HttpError::Status { status, .. } => match status {
                401 | 403 => Some("check the credentials in the URL or in ~/.netrc".into()),
                407 => Some("the proxy wants credentials: put them in HTTPS_PROXY".into()),
                _ => None,
            },
            HttpError::Connect {
                kind: ConnectKind::Tls,
                ..
            } => Some(
                "a private certificate authority can be trusted with SSL_CERT_FILE or SSL_CERT_DIR"
                    .into(),
            ),
            HttpError::Connect { .. } => Some(
                "check the network; behind a proxy set HTTPS_PROXY (and NO_PROXY for local hosts)"
                    .into(),
            ),
            HttpError::InsecureRedirect { .. } => Some(
                "use the plain http URL in the index definition if that is really meant (it is then \
                 warned about), or fix the server's redirect"
                    .into(),
            ),
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

/// One failed attempt, as the retry policy sees it.
#[derive(Debug)]
pub enum Failure {
    /// A retryable status (5xx, 429), with the server's `Retry-After` if it sent one.
    Status {
        status: StatusCode,
        retry_after: Option<Duration>,
    },
    Connect {
        kind: ConnectKind,
        message: String,
    },
    Transfer {
        kind: TransferKind,
        message: String,
    },
    /// An https URL redirected to http: never retried.
    InsecureRedirect {
        from: String,
        to: String,
    },
}

impl Failure {
    fn retryable(&self) -> bool {
        match self {
            Failure::Connect { kind, .. } => *kind != ConnectKind::Tls,
            Failure::InsecureRedirect { .. } => false,
            Failure::Status { .. } | Failure::Transfer { .. } => true,
        }
    }

    /// From a reqwest error, by walking its sources: reqwest's own flags say little.
    pub fn from_reqwest(err: &reqwest::Error) -> Failure {
        let message = error_chain(err);
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
        let mut io_kind = None;
        let mut dns = false;
        let mut tls = false;
        let mut root = err.to_string();
        while let Some(cause) = source {
            root = cause.to_string();
            if let Some(redirect) = cause.downcast_ref::<InsecureRedirectError>() {
                return Failure::InsecureRedirect {
                    from: redirect.from.clone(),
                    to: redirect.to.clone(),
                };
            }
            if cause.downcast_ref::<DnsError>().is_some() {
                dns = true;
            }
            if cause.downcast_ref::<rustls::Error>().is_some() {
                tls = true;
            }
            if let Some(io) = cause.downcast_ref::<std::io::Error>() {
                io_kind.get_or_insert(io.kind());
                if io
                    .get_ref()
                    .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
                {
                    tls = true;
                }
            }
            source = cause.source();
        }
        if err.is_connect() || dns || tls {
            let kind = if dns {
                ConnectKind::Dns
            } else if tls {
                ConnectKind::Tls
            } else if err.is_timeout() || io_kind == Some(std::io::ErrorKind::TimedOut) {
                ConnectKind::Timeout
            } else if io_kind == Some(std::io::ErrorKind::ConnectionRefused) {
                ConnectKind::Refused
            } else {
                ConnectKind::Other
            };
            // The kind says what failed; the innermost cause says how (the outer layers
            // repeat the URL).
            return Failure::Connect {
                kind,
                message: root,
            };
        }
        let kind = if err.is_timeout() {
            TransferKind::Timeout
        } else if err.is_body() || err.is_request() || io_kind.is_some() {
            TransferKind::Reset
        } else {
            TransferKind::Other
        };
        Failure::Transfer { kind, message }
    }

    /// The error a request ends with when this was its last failure.
    pub fn into_error(self, method: &Method, url: &Url, attempts: Attempts) -> HttpError {
        let url_text = redact(url);
        let attempts = Box::new(attempts);
        match self {
            Failure::Status { status, .. } => HttpError::Status {
                method: method.clone(),
                url: url_text,
                status: status.as_u16(),
                attempts,
            },
            Failure::Connect { kind, message } => HttpError::Connect {
                method: method.clone(),
                url: url_text,
                host: host_port(url),
                kind,
                message,
                attempts,
            },
            Failure::Transfer { kind, message } => HttpError::Transfer {
                method: method.clone(),
                url: url_text,
                kind,
                message,
                attempts,
            },
            Failure::InsecureRedirect { from, to } => HttpError::InsecureRedirect { from, to },
        }
    }
}

/// `host[:port]` of a URL, as a user would name the server.
fn host_port(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_string(),
        (None, _) => url.to_string(),
    }
}

/// The one retry policy, as a state machine for one request: call [`RetryState::failed`]
/// after each failed attempt; it says how long to wait before the next one, or why to stop.
/// Index reads and registry requests go through [`HttpClient`]'s loop; a download, which
/// resumes mid-file, drives one itself and reports progress with [`RetryState::progressed`].
#[derive(Debug)]
pub struct RetryState {
    settings: HttpSettings,
    started: Instant,
    /// When the budget started: the first attempt, or the last one that made progress.
    budget_from: Instant,
    attempts: u32,
    failures_in_row: u32,
}

impl RetryState {
    pub fn new(settings: &HttpSettings) -> RetryState {
        let now = Instant::now();
        RetryState {
            settings: settings.clone(),
            started: now,
            budget_from: now,
            attempts: 0,
            failures_in_row: 0,
        }
    }

    /// An attempt starts.
    pub fn attempt(&mut self) {
        self.attempts += 1;
    }

    /// Attempts so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The last attempt brought something new (bytes never received before): the failures
    /// in a row and the time budget start again; the cap on all attempts does not.
    pub fn progressed(&mut self) {
        self.failures_in_row = 0;
        self.budget_from = Instant::now();
    }

    /// The summary for an error, with the reason for stopping.
    pub fn summary(&self, gave_up: GiveUp) -> Attempts {
        Attempts {
            count: self.attempts,
            elapsed: self.started.elapsed(),
            gave_up,
        }
    }

    /// The attempt failed: `Ok(delay)` before the next one, or `Err` with why to stop.
    pub fn failed(
        &mut self,
        retryable: bool,
        retry_after: Option<Duration>,
    ) -> Result<Duration, Attempts> {
        self.failures_in_row += 1;
        if !retryable {
            return Err(self.summary(GiveUp::NotRetryable));
        }
        if self.failures_in_row > self.settings.retries {
            return Err(self.summary(GiveUp::FailuresInRow(self.failures_in_row)));
        }
        if self.attempts >= self.settings.max_attempts.max(1) {
            return Err(self.summary(GiveUp::Attempts));
        }
        let used = self.budget_from.elapsed();
        let left = self.settings.retry_time.saturating_sub(used);
        if left.is_zero() {
            return Err(self.summary(GiveUp::Time(self.settings.retry_time)));
        }
        let delay = match retry_after {
            Some(wait) if wait > left => return Err(self.summary(GiveUp::RetryAfter(wait))),
            Some(wait) => wait,
            None => backoff_delay(&self.settings, self.failures_in_row).min(left),
        };
        Ok(delay)
    }
}

/// The delay before retry number `n` (1, 2, ...): `backoff * 2^(n-1)`, capped at
/// `max_backoff`, then jittered into its upper half so that clients failing together do
/// not come back together.
pub fn backoff_delay(settings: &HttpSettings, n: u32) -> Duration {
    let factor = 1u32 << n.saturating_sub(1).min(16);
    let full = settings
        .backoff
        .saturating_mul(factor)
        .min(settings.max_backoff);
    full / 2 + full.mul_f64(jitter() / 2.0)
}

/// A number in [0, 1) that differs between calls and between processes.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// `Retry-After`: delay seconds, or an HTTP date (a date in the past means now).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// The redirect rule: follow up to 10 redirects, never from https to http.
fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() >= 10 {
            return attempt.error("more than 10 redirects");
        }
        match check_redirect(attempt.previous().last(), attempt.url()) {
            Ok(()) => attempt.follow(),
            Err(e) => attempt.error(e),
        }
    })
}

/// An https URL must not redirect to plain http.
pub fn check_redirect(from: Option<&Url>, to: &Url) -> Result<(), InsecureRedirectError> {
    match from {
        Some(from) if from.scheme() == "https" && to.scheme() == "http" => {
            Err(InsecureRedirectError {
                from: redact(from),
                to: redact(to),
            })
        }
        _ => Ok(()),
    }
}

/// The redirect rule's refusal, as reqwest carries it in its error's sources.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{from} redirects to {to}: refusing to follow an https URL to plain http")]
pub struct InsecureRedirectError {
    pub from: String,
    pub to: String,
}

/// A failed host name lookup, as the shared resolver reports it.
#[derive(Debug, thiserror::Error)]
#[error("cannot resolve {host}: {source}")]
struct DnsError {
    host: String,
    #[source]
    source: std::io::Error,
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

/// What a single attempt did.
type AttemptResult<T> = Result<T, Failure>;

impl HttpClient {
    pub fn new(settings: HttpSettings) -> Result<Self, HttpError> {
        crate::test_hook::http_client_created();
        // reqwest with `rustls-tls-native-roots` trusts the system store and honours
        // SSL_CERT_FILE / SSL_CERT_DIR; proxies come from the environment by default.
        let client = reqwest::Client::builder()
            .user_agent(concat!("comfypak/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(settings.connect_timeout)
            .read_timeout(settings.read_timeout)
            .pool_max_idle_per_host(settings.concurrency.max(1))
            .gzip(true)
            .redirect(redirect_policy())
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

    /// A fresh retry state under this client's policy.
    pub fn retry_state(&self) -> RetryState {
        RetryState::new(&self.settings)
    }

    /// GET with extra headers; 2xx and 304 are answers, other statuses are errors.
    pub async fn get(&self, url: &Url, headers: HeaderMap) -> Result<Response, HttpError> {
        let response = self.request(Method::GET, url, headers, None).await?;
        if response.status < 300 || response.status == 304 {
            return Ok(response);
        }
        Err(HttpError::Status {
            method: Method::GET,
            url: redact(url),
            status: response.status,
            attempts: Box::new(Attempts {
                count: 1,
                elapsed: Duration::ZERO,
                gave_up: GiveUp::NotRetryable,
            }),
        })
    }

    /// GET a page with an `Accept` header.
    pub async fn get_accept(&self, url: &Url, accept: &str) -> Result<Response, HttpError> {
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(accept) {
            headers.insert(ACCEPT, v);
        }
        self.get(url, headers).await
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
        let response = self.get(url, headers).await?;
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

    /// Any method, with an optional body, under the retry policy. Every status but a
    /// retryable one (5xx, 429) is an answer for the caller to judge; a retryable one that
    /// persists is [`HttpError::Status`]. The body is read whole.
    pub async fn request(
        &self,
        method: Method,
        url: &Url,
        headers: HeaderMap,
        body: Option<Vec<u8>>,
    ) -> Result<Response, HttpError> {
        self.request_with(method, url, headers, body, true).await
    }

    /// [`HttpClient::request`] without retries, for a step that cannot simply be sent again
    /// (a registry upload session): the caller retries the whole operation with its own
    /// [`RetryState`], using [`HttpError::is_retryable`].
    pub async fn request_once(
        &self,
        method: Method,
        url: &Url,
        headers: HeaderMap,
        body: Option<Vec<u8>>,
    ) -> Result<Response, HttpError> {
        self.request_with(method, url, headers, body, false).await
    }

    async fn request_with(
        &self,
        method: Method,
        url: &Url,
        headers: HeaderMap,
        body: Option<Vec<u8>>,
        retry: bool,
    ) -> Result<Response, HttpError> {
        self.retrying(&method, url, true, retry, || async {
            let response = self
                .send_head(
                    &method,
                    url,
                    headers.clone(),
                    body.clone().map(reqwest::Body::from),
                )
                .await?;
            read_whole(response).await
        })
        .await
    }

    /// A streaming GET for large downloads: the caller reads the body and handles resumption
    /// (see [`RetryState`]). Statuses other than 2xx are errors.
    pub async fn get_stream(
        &self,
        url: &Url,
        headers: HeaderMap,
    ) -> Result<reqwest::Response, HttpError> {
        let response = self
            .retrying(&Method::GET, url, false, true, || async {
                self.send_head(&Method::GET, url, headers.clone(), None)
                    .await
            })
            .await?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(HttpError::Status {
            method: Method::GET,
            url: redact(url),
            status: response.status().as_u16(),
            attempts: Box::new(Attempts {
                count: 1,
                elapsed: Duration::ZERO,
                gave_up: GiveUp::NotRetryable,
            }),
        })
    }

    /// The one retry loop: runs `attempt` until it succeeds or the policy gives up.
    async fn retrying<T, F, Fut>(
        &self,
        method: &Method,
        url: &Url,
        with_permit: bool,
        retry: bool,
        attempt: F,
    ) -> Result<T, HttpError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = AttemptResult<T>>,
    {
        let mut state = self.retry_state();
        loop {
            state.attempt();
            let outcome = if with_permit {
                let _permit = self.permits.acquire().await;
                attempt().await
            } else {
                attempt().await
            };
            let failure = match outcome {
                Ok(value) => return Ok(value),
                Err(failure) => failure,
            };
            let retry_after = match &failure {
                Failure::Status { retry_after, .. } => *retry_after,
                _ => None,
            };
            match state.failed(retry && failure.retryable(), retry_after) {
                Ok(delay) => tokio::time::sleep(delay).await,
                Err(attempts) => return Err(failure.into_error(method, url, attempts)),
            }
        }
    }

    /// Sends one request and waits for the answer's head; a retryable status is a failure.
    async fn send_head(
        &self,
        method: &Method,
        url: &Url,
        headers: HeaderMap,
        body: Option<reqwest::Body>,
    ) -> AttemptResult<reqwest::Response> {
        let mut request = self.builder(method.clone(), url, headers);
        if let Some(body) = body {
            request = request.body(body);
        }
        // `read_timeout` bounds each read of the body; waiting for the answer's head is
        // bounded here, so a server that accepts and then stalls is retried too.
        let response = tokio::time::timeout(self.settings.read_timeout, request.send())
            .await
            .map_err(|_| Failure::Transfer {
                kind: TransferKind::Timeout,
                message: format!("no answer within {:?}", self.settings.read_timeout),
            })?
            .map_err(|e| Failure::from_reqwest(&e))?;
        let status = response.status();
        if is_retryable_status(status) {
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            return Err(Failure::Status {
                status,
                retry_after,
            });
        }
        Ok(response)
    }

    fn builder(&self, method: Method, url: &Url, headers: HeaderMap) -> reqwest::RequestBuilder {
        let (clean, auth) = self.credentials(url);
        // A caller that brings its own Authorization (a registry token) keeps it.
        let auth = auth.filter(|_| !headers.contains_key(reqwest::header::AUTHORIZATION));
        let mut builder = self.client.request(method, clean).headers(headers);
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
}

/// Reads a whole answer; a body cut short is a (retryable) transfer failure.
async fn read_whole(response: reqwest::Response) -> AttemptResult<Response> {
    let status = response.status();
    let final_url = response.url().clone();
    let headers = response.headers().clone();
    let expected = response.content_length();
    let body = response
        .bytes()
        .await
        .map_err(|e| Failure::from_reqwest(&e))?;
    if let Some(expected) = expected {
        if body.len() as u64 != expected {
            return Err(Failure::Transfer {
                kind: TransferKind::Reset,
                message: format!("connection closed after {} of {expected} bytes", body.len()),
            });
        }
    }
    Ok(Response {
        status: status.as_u16(),
        headers,
        // Without a copy when the body came in several chunks (collected into one buffer
        // already): pages of several MB are common.
        body: Vec::from(body),
        url: final_url,
    })
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
            let name = host.clone();
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
                .await
                .map_err(|source| DnsError { host: name, source })?
                .clone();
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

fn is_retryable_status(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
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

//! A small HTTP/1.1 server on 127.0.0.1 for tests: serves a [`FixtureIndex`] from memory or a
//! directory tree, with content negotiation (PEP 691), Range requests, ETag revalidation,
//! keep-alive, a request log with byte accounting, and injectable faults (status codes,
//! connections closed mid-body, delays, corrupted bodies, answers held until a test opens a
//! [`Gate`]).
//!
//! Owns: socket handling on its own thread and tokio runtime; stops on Drop.
//! Must not: run forever (every read has a timeout, the accept loop ends on Drop) or listen on
//! anything but loopback.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use crate::index::{FixtureIndex, SiteOptions};
use crate::wheel::sha256_hex;

/// PEP 691 JSON content type.
pub const JSON_CONTENT_TYPE: &str = "application/vnd.pypi.simple.v1+json";
/// Content type of HTML pages.
pub const HTML_CONTENT_TYPE: &str = "text/html";

const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_HEAD_BYTES: usize = 64 * 1024;
const MAX_REQUEST_BODY: usize = 1024 * 1024;

/// Which page format a directory URL (`/simple/torch/`) answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Always PEP 691 JSON (falls back to HTML only where no JSON page exists).
    Json,
    /// Always HTML.
    Html,
    /// JSON when `Accept` prefers `application/vnd.pypi.simple.v1+json`, else HTML.
    #[default]
    Negotiate,
}

/// Server behaviour switches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerOptions {
    pub format: Format,
    /// Serve (and, for in-memory indexes, advertise) PEP 658 `.metadata` files.
    pub serve_metadata_files: bool,
    /// Honour `Range` (206 / 416, `Accept-Ranges: bytes`); off: always 200 with the full body.
    pub range: bool,
    /// Send `ETag` and answer a matching `If-None-Match` with 304.
    pub etag: bool,
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            format: Format::Negotiate,
            serve_metadata_files: true,
            range: true,
            etag: true,
            port: 0,
        }
    }
}

/// A fault applied to requests whose decoded path ends with `path_suffix` ("" matches all),
/// for the next `times` matching requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status (and a short text body) instead of the resource.
    Status {
        path_suffix: String,
        status: u16,
        times: usize,
    },
    /// Send the headers and the first `bytes` body bytes, then close the connection.
    /// Counts only responses that carry a body.
    ResetAfter {
        path_suffix: String,
        bytes: u64,
        times: usize,
    },
    /// Wait this long before answering.
    Delay {
        path_suffix: String,
        millis: u64,
        times: usize,
    },
    /// Flip bytes of the body (same length, wrong hash). Counts only responses with a body.
    CorruptBody { path_suffix: String, times: usize },
    /// Answer with this status and these extra headers (`Retry-After` on a 429, `Location`
    /// on a redirect) and a short text body, instead of the resource.
    Answer {
        path_suffix: String,
        status: u16,
        headers: Vec<(String, String)>,
        times: usize,
    },
    /// Hold the answer until the test opens `gate` (so a test can make one download wait for
    /// something the client must do first; a gate never opened ends in the client's timeout).
    Hold {
        path_suffix: String,
        gate: Gate,
        times: usize,
    },
}

/// A one-way latch a [`Fault::Hold`] waits on; clones share it.
#[derive(Clone, Default)]
pub struct Gate(Arc<GateState>);

#[derive(Default)]
struct GateState {
    open: std::sync::atomic::AtomicBool,
    notify: tokio::sync::Notify,
}

impl Gate {
    pub fn new() -> Gate {
        Gate::default()
    }

    /// Lets every held answer go, now and later.
    pub fn open(&self) {
        self.0.open.store(true, std::sync::atomic::Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    pub fn is_open(&self) -> bool {
        self.0.open.load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn wait(&self) {
        loop {
            let notified = self.0.notify.notified();
            if self.is_open() {
                return;
            }
            notified.await;
        }
    }
}

impl PartialEq for Gate {
    fn eq(&self, other: &Gate) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Gate {}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gate(open: {})", self.is_open())
    }
}

impl Fault {
    fn suffix(&self) -> &str {
        match self {
            Fault::Status { path_suffix, .. }
            | Fault::ResetAfter { path_suffix, .. }
            | Fault::Delay { path_suffix, .. }
            | Fault::CorruptBody { path_suffix, .. }
            | Fault::Answer { path_suffix, .. }
            | Fault::Hold { path_suffix, .. } => path_suffix,
        }
    }

    fn times_mut(&mut self) -> &mut usize {
        match self {
            Fault::Status { times, .. }
            | Fault::ResetAfter { times, .. }
            | Fault::Delay { times, .. }
            | Fault::CorruptBody { times, .. }
            | Fault::Answer { times, .. }
            | Fault::Hold { times, .. } => times,
        }
    }
}

/// One request as the server saw and answered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// Connection number (1, 2, ...): equal numbers mean a reused keep-alive connection.
    pub connection: u64,
    pub method: String,
    /// Request target as sent (percent-encoded, with query).
    pub target: String,
    /// Decoded path without query, e.g. `/files/torch-2.11.0+cu130-...whl`.
    pub path: String,
    pub range: Option<String>,
    pub accept: Option<String>,
    pub if_none_match: Option<String>,
    pub status: u16,
    /// Body bytes written (or attempted) for this response.
    pub body_bytes: u64,
    /// The injected fault that shaped this response, if any.
    pub fault: Option<String>,
}

enum Site {
    Memory(BTreeMap<String, Resource>),
    Dir(PathBuf),
}

#[derive(Clone)]
struct Resource {
    body: Arc<Vec<u8>>,
    etag: String,
}

impl Resource {
    fn new(body: Arc<Vec<u8>>) -> Self {
        let etag = format!("\"{}\"", &sha256_hex(&body)[..32]);
        Resource { body, etag }
    }
}

impl Site {
    fn get(&self, rel: &str) -> Option<Resource> {
        match self {
            Site::Memory(map) => map.get(rel).cloned(),
            Site::Dir(root) => {
                let rel_path = Path::new(rel);
                if rel.contains('\\')
                    || !rel_path
                        .components()
                        .all(|c| matches!(c, Component::Normal(_)))
                {
                    return None;
                }
                let path = root.join(rel_path);
                if !path.is_file() {
                    return None;
                }
                std::fs::read(&path)
                    .ok()
                    .map(|bytes| Resource::new(Arc::new(bytes)))
            }
        }
    }
}

struct Shared {
    site: Site,
    options: ServerOptions,
    faults: Mutex<Vec<Fault>>,
    log: Mutex<Vec<RequestRecord>>,
    /// What tests wait on: requests received, in flight, answered.
    events: Mutex<Events>,
    changed: Condvar,
}

/// Counters that change as requests arrive and are answered; [`TestServer::wait_until`]
/// waits on them instead of on the clock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Events {
    /// Decoded paths of every request whose head was read, in arrival order (also those
    /// still delayed by a fault).
    pub received: Vec<String>,
    /// Requests answered (the same count as the log, but kept when the log is cleared).
    pub answered: usize,
    /// Requests received and not yet answered.
    pub in_flight: usize,
    /// The most requests that were in flight at once.
    pub max_in_flight: usize,
}

impl Events {
    /// Requests received whose decoded path ends with `path_suffix`.
    pub fn received_for(&self, path_suffix: &str) -> usize {
        self.received
            .iter()
            .filter(|p| p.ends_with(path_suffix))
            .count()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The running server. Dropping it stops the server thread.
pub struct TestServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Serves an index from memory (no disk needed).
    ///
    /// # Panics
    /// When no loopback socket can be bound (see [`TestServer::try_serve_index`]).
    pub fn serve_index(index: &FixtureIndex, options: ServerOptions) -> TestServer {
        match Self::try_serve_index(index, options) {
            Ok(s) => s,
            Err(e) => panic!("cannot start the fixture server on 127.0.0.1: {e}"),
        }
    }

    /// Serves an index from memory, reporting bind failures.
    pub fn try_serve_index(
        index: &FixtureIndex,
        options: ServerOptions,
    ) -> std::io::Result<TestServer> {
        let site = index
            .site_files(SiteOptions {
                metadata_files: options.serve_metadata_files,
            })
            .into_iter()
            .map(|(k, v)| (k, Resource::new(v)))
            .collect();
        Self::start(Site::Memory(site), options)
    }

    /// Serves a directory tree (e.g. one written by `FixtureIndex::write_simple_tree`).
    ///
    /// # Panics
    /// When no loopback socket can be bound (see [`TestServer::try_serve_dir`]).
    pub fn serve_dir(dir: &Path, options: ServerOptions) -> TestServer {
        match Self::try_serve_dir(dir, options) {
            Ok(s) => s,
            Err(e) => panic!("cannot start the fixture server on 127.0.0.1: {e}"),
        }
    }

    /// Serves a directory tree, reporting bind failures.
    pub fn try_serve_dir(dir: &Path, options: ServerOptions) -> std::io::Result<TestServer> {
        Self::start(Site::Dir(dir.to_path_buf()), options)
    }

    fn start(site: Site, options: ServerOptions) -> std::io::Result<TestServer> {
        let std_listener = std::net::TcpListener::bind(("127.0.0.1", options.port))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let listener = {
            let _guard = runtime.enter();
            TcpListener::from_std(std_listener)?
        };
        let shared = Arc::new(Shared {
            site,
            options,
            faults: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            events: Mutex::new(Events::default()),
            changed: Condvar::new(),
        });
        let (tx, mut rx) = oneshot::channel::<()>();
        let task_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("testkit-server-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    let mut next_connection = 0u64;
                    loop {
                        tokio::select! {
                            _ = &mut rx => break,
                            accepted = listener.accept() => match accepted {
                                Ok((stream, _)) => {
                                    next_connection += 1;
                                    let _ = stream.set_nodelay(true);
                                    tokio::spawn(handle_connection(
                                        Arc::clone(&task_shared),
                                        stream,
                                        next_connection,
                                    ));
                                }
                                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                            },
                        }
                    }
                });
                // Dropping the runtime here cancels every connection task.
                drop(runtime);
            })?;
        Ok(TestServer {
            addr,
            shared,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/simple/`
    pub fn simple_url(&self) -> String {
        format!("{}/simple/", self.url())
    }

    /// `http://127.0.0.1:PORT/find-links/` (one HTML page linking every wheel).
    pub fn find_links_url(&self) -> String {
        format!("{}/find-links/", self.url())
    }

    /// `http://127.0.0.1:PORT/files/<percent-encoded filename>`
    pub fn file_url(&self, filename: &str) -> String {
        format!(
            "{}/files/{}",
            self.url(),
            crate::index::percent_encode(filename)
        )
    }

    /// Every request answered so far, in order.
    pub fn log(&self) -> Vec<RequestRecord> {
        lock(&self.shared.log).clone()
    }

    /// Forgets the request log.
    pub fn clear_log(&self) {
        lock(&self.shared.log).clear();
    }

    /// Body bytes sent for requests whose decoded path ends with `path_suffix`.
    pub fn bytes_sent_for(&self, path_suffix: &str) -> u64 {
        lock(&self.shared.log)
            .iter()
            .filter(|r| r.path.ends_with(path_suffix))
            .map(|r| r.body_bytes)
            .sum()
    }

    /// Number of requests whose decoded path ends with `path_suffix`.
    pub fn requests_for(&self, path_suffix: &str) -> usize {
        lock(&self.shared.log)
            .iter()
            .filter(|r| r.path.ends_with(path_suffix))
            .count()
    }

    /// The request counters as they are now.
    pub fn events(&self) -> Events {
        lock(&self.shared.events).clone()
    }

    /// Waits until `done` holds for the counters, and returns them; panics with `what` after
    /// `limit` (a bound against a hung test, not a timing assertion).
    pub fn wait_until(
        &self,
        what: &str,
        limit: Duration,
        done: impl Fn(&Events) -> bool,
    ) -> Events {
        let deadline = std::time::Instant::now() + limit;
        let mut events = lock(&self.shared.events);
        while !done(&events) {
            let now = std::time::Instant::now();
            assert!(now < deadline, "gave up waiting for {what}: {events:?}");
            events = self
                .shared
                .changed
                .wait_timeout(events, deadline - now)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
        }
        events.clone()
    }

    /// Adds a fault; it applies to requests that arrive from now on.
    pub fn inject(&self, fault: Fault) {
        lock(&self.shared.faults).push(fault);
    }

    /// Faults not yet used up.
    pub fn pending_faults(&self) -> Vec<Fault> {
        lock(&self.shared.faults)
            .iter()
            .filter(|f| match f {
                Fault::Status { times, .. }
                | Fault::ResetAfter { times, .. }
                | Fault::Delay { times, .. }
                | Fault::CorruptBody { times, .. }
                | Fault::Answer { times, .. }
                | Fault::Hold { times, .. } => *times > 0,
            })
            .cloned()
            .collect()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Request {
    method: String,
    target: String,
    http10: bool,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn keep_alive(&self) -> bool {
        let conn = self.header("connection").map(|c| c.to_ascii_lowercase());
        match conn.as_deref() {
            Some(c) if c.split(',').any(|t| t.trim() == "close") => false,
            Some(c) if c.split(',').any(|t| t.trim() == "keep-alive") => true,
            _ => !self.http10,
        }
    }
}

/// Reads one request head; `None` on EOF, timeout, or an oversized head.
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head: Vec<u8> = buf.drain(..pos + 4).collect();
            return Some(head);
        }
        if buf.len() > MAX_HEAD_BYTES {
            return None;
        }
        let mut chunk = [0u8; 8192];
        let n = match tokio::time::timeout(IDLE_TIMEOUT, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return None,
        };
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn parse_head(head: &[u8]) -> Option<Request> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_string();
    let target = request_line.next()?.to_string();
    let version = request_line.next()?;
    if !version.starts_with("HTTP/1.") || method.is_empty() || target.is_empty() {
        return None;
    }
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let (k, v) = line.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    Some(Request {
        method,
        target,
        http10: version == "HTTP/1.0",
        headers,
    })
}

async fn handle_connection(shared: Arc<Shared>, mut stream: TcpStream, connection: u64) {
    let mut buf = Vec::new();
    loop {
        let Some(head) = read_head(&mut stream, &mut buf).await else {
            return;
        };
        let Some(request) = parse_head(&head) else {
            let _ = write_simple(&mut stream, 400, "malformed request\n").await;
            return;
        };
        // Discard a request body, if any (GET/HEAD normally have none).
        if request.header("transfer-encoding").is_some() {
            let _ = write_simple(
                &mut stream,
                501,
                "chunked request bodies are not supported\n",
            )
            .await;
            return;
        }
        let body_len: usize = request
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if body_len > MAX_REQUEST_BODY {
            let _ = write_simple(&mut stream, 413, "request body too large\n").await;
            return;
        }
        while buf.len() < body_len {
            let mut chunk = [0u8; 8192];
            match tokio::time::timeout(IDLE_TIMEOUT, stream.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => return,
            }
        }
        buf.drain(..body_len);

        let keep_alive = request.keep_alive();
        let closed = respond(&shared, &mut stream, &request, connection, keep_alive).await;
        if closed || !keep_alive {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

async fn write_simple(stream: &mut TcpStream, status: u16, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reason(status),
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.flush().await
}

struct Response {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Arc<Vec<u8>>,
    start: usize,
    end: usize,
}

impl Response {
    fn text(status: u16, text: String) -> Response {
        let body = Arc::new(text.into_bytes());
        let end = body.len();
        Response {
            status,
            headers: vec![("Content-Type", "text/plain".to_string())],
            body,
            start: 0,
            end,
        }
    }
}

/// Answers one request; returns true when the connection was closed by a fault.
async fn respond(
    shared: &Shared,
    stream: &mut TcpStream,
    request: &Request,
    connection: u64,
    keep_alive: bool,
) -> bool {
    let raw_path = request.target.split('?').next().unwrap_or("");
    let path = percent_decode(raw_path).unwrap_or_else(|| raw_path.to_string());
    {
        let mut events = lock(&shared.events);
        events.received.push(path.clone());
        events.in_flight += 1;
        events.max_in_flight = events.max_in_flight.max(events.in_flight);
        shared.changed.notify_all();
    }
    let closed = respond_to(shared, stream, request, connection, keep_alive, path).await;
    {
        let mut events = lock(&shared.events);
        events.in_flight -= 1;
        events.answered += 1;
        shared.changed.notify_all();
    }
    closed
}

/// [`respond`] once the request is counted.
async fn respond_to(
    shared: &Shared,
    stream: &mut TcpStream,
    request: &Request,
    connection: u64,
    keep_alive: bool,
    path: String,
) -> bool {
    let (hold, delay, status_fault) = {
        let mut faults = lock(&shared.faults);
        let hold = take_fault(&mut faults, &path, |f| match f {
            Fault::Hold { gate, .. } => Some(gate.clone()),
            _ => None,
        });
        let delay = take_fault(&mut faults, &path, |f| match f {
            Fault::Delay { millis, .. } => Some(*millis),
            _ => None,
        });
        let status = take_fault(&mut faults, &path, |f| match f {
            Fault::Status { status, .. } => Some((*status, Vec::new())),
            Fault::Answer {
                status, headers, ..
            } => Some((*status, headers.clone())),
            _ => None,
        });
        (hold, delay, status)
    };
    let mut fault_note: Vec<String> = Vec::new();
    if let Some(gate) = hold {
        fault_note.push("held".into());
        gate.wait().await;
    }
    if let Some(millis) = delay {
        fault_note.push(format!("delay {millis}ms"));
        tokio::time::sleep(Duration::from_millis(millis)).await;
    }

    let response = match &status_fault {
        Some((status, headers)) => {
            fault_note.push(format!("status {status}"));
            let mut r = Response::text(*status, format!("injected fault: status {status}\n"));
            r.headers
                .extend(headers.iter().map(|(k, v)| (header_name(k), v.clone())));
            r
        }
        None => route(shared, request, &path),
    };

    let is_head = request.method == "HEAD";
    let mut body_slice: &[u8] = &response.body[response.start..response.end];
    let carries_body = !is_head && !body_slice.is_empty();
    let (reset_after, corrupt) = if carries_body && status_fault.is_none() {
        let mut faults = lock(&shared.faults);
        let reset = take_fault(&mut faults, &path, |f| match f {
            Fault::ResetAfter { bytes, .. } => Some(*bytes),
            _ => None,
        });
        let corrupt = take_fault(&mut faults, &path, |f| match f {
            Fault::CorruptBody { .. } => Some(()),
            _ => None,
        });
        (reset, corrupt.is_some())
    } else {
        (None, false)
    };
    let corrupted: Vec<u8>;
    if corrupt {
        fault_note.push("corrupt body".into());
        let mut copy = body_slice.to_vec();
        let mid = copy.len() / 2;
        copy[mid] ^= 0xFF;
        let last = copy.len() - 1;
        copy[last] ^= 0x5A;
        corrupted = copy;
        body_slice = &corrupted;
    }
    let send_len = match reset_after {
        Some(bytes) => {
            fault_note.push(format!("reset after {bytes} bytes"));
            usize::try_from(bytes)
                .unwrap_or(usize::MAX)
                .min(body_slice.len())
        }
        None => body_slice.len(),
    };

    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        response.status,
        reason(response.status)
    );
    for (k, v) in &response.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if response.status != 304 {
        head.push_str(&format!("Content-Length: {}\r\n", body_slice.len()));
    }
    let closing = !keep_alive || reset_after.is_some();
    head.push_str(if closing {
        "Connection: close\r\n\r\n"
    } else {
        "Connection: keep-alive\r\n\r\n"
    });

    let sent = if is_head { 0 } else { send_len as u64 };
    lock(&shared.log).push(RequestRecord {
        connection,
        method: request.method.clone(),
        target: request.target.clone(),
        path,
        range: request.header("range").map(str::to_string),
        accept: request.header("accept").map(str::to_string),
        if_none_match: request.header("if-none-match").map(str::to_string),
        status: response.status,
        body_bytes: sent,
        fault: if fault_note.is_empty() {
            None
        } else {
            Some(fault_note.join(", "))
        },
    });

    if stream.write_all(head.as_bytes()).await.is_err() {
        return true;
    }
    if !is_head && stream.write_all(&body_slice[..send_len]).await.is_err() {
        return true;
    }
    if stream.flush().await.is_err() {
        return true;
    }
    reset_after.is_some()
}

/// A header name as the response writer keeps them (`&'static str`): the few that faults
/// send are spelled out, others are leaked once per fault application (tests only).
fn header_name(name: &str) -> &'static str {
    match name.to_ascii_lowercase().as_str() {
        "retry-after" => "Retry-After",
        "location" => "Location",
        "www-authenticate" => "WWW-Authenticate",
        _ => Box::leak(name.to_string().into_boxed_str()),
    }
}

/// Uses up one application of the first live fault matching `path` that `pick` accepts.
fn take_fault<T>(
    faults: &mut [Fault],
    path: &str,
    pick: impl Fn(&Fault) -> Option<T>,
) -> Option<T> {
    for fault in faults.iter_mut() {
        if !path.ends_with(fault.suffix()) {
            continue;
        }
        if let Some(value) = pick(fault) {
            let times = fault.times_mut();
            if *times > 0 {
                *times -= 1;
                return Some(value);
            }
        }
    }
    None
}

fn route(shared: &Shared, request: &Request, path: &str) -> Response {
    if request.method != "GET" && request.method != "HEAD" {
        let mut r = Response::text(405, format!("method {} not allowed\n", request.method));
        r.headers.push(("Allow", "GET, HEAD".into()));
        return r;
    }
    let Some(rel) = path.strip_prefix('/') else {
        return Response::text(400, format!("request target {path:?} is not a path\n"));
    };
    let options = &shared.options;
    let mut vary = false;
    let found = if rel.is_empty() || rel.ends_with('/') {
        vary = true;
        let json_first = match options.format {
            Format::Json => true,
            Format::Html => false,
            Format::Negotiate => prefers_json(request.header("accept")),
        };
        let order = if json_first {
            ["index.json", "index.html"]
        } else {
            ["index.html", "index.json"]
        };
        order
            .iter()
            .find_map(|name| shared.site.get(&format!("{rel}{name}")).map(|r| (r, *name)))
            .map(|(r, name)| (r, content_type(name)))
    } else if rel.ends_with(".metadata") && !options.serve_metadata_files {
        None
    } else {
        shared.site.get(rel).map(|r| (r, content_type(rel)))
    };

    let Some((resource, ctype)) = found else {
        let is_dir = !rel.is_empty()
            && !rel.ends_with('/')
            && (shared.site.get(&format!("{rel}/index.html")).is_some()
                || shared.site.get(&format!("{rel}/index.json")).is_some());
        if is_dir {
            let raw = request.target.split('?').next().unwrap_or("");
            let mut r = Response::text(301, format!("moved to {raw}/\n"));
            r.headers.push(("Location", format!("{raw}/")));
            return r;
        }
        return Response::text(404, format!("not found: {path}\n"));
    };

    let mut headers: Vec<(&'static str, String)> = vec![("Content-Type", ctype.to_string())];
    if vary {
        headers.push(("Vary", "Accept".into()));
    }
    if options.range {
        headers.push(("Accept-Ranges", "bytes".into()));
    }
    if options.etag {
        headers.push(("ETag", resource.etag.clone()));
        if let Some(inm) = request.header("if-none-match") {
            let matches = inm
                .split(',')
                .map(str::trim)
                .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == resource.etag);
            if matches {
                return Response {
                    status: 304,
                    headers,
                    body: Arc::new(Vec::new()),
                    start: 0,
                    end: 0,
                };
            }
        }
    }
    let len = resource.body.len();
    if options.range {
        if let Some(range) = request.header("range") {
            match parse_range(range, len as u64) {
                RangeResult::Ignore => {}
                RangeResult::Unsatisfiable => {
                    headers.push(("Content-Range", format!("bytes */{len}")));
                    return Response {
                        status: 416,
                        headers,
                        body: Arc::new(Vec::new()),
                        start: 0,
                        end: 0,
                    };
                }
                RangeResult::Satisfiable(start, end) => {
                    headers.push(("Content-Range", format!("bytes {start}-{end}/{len}")));
                    return Response {
                        status: 206,
                        headers,
                        body: resource.body,
                        start: start as usize,
                        end: end as usize + 1,
                    };
                }
            }
        }
    }
    Response {
        status: 200,
        headers,
        body: resource.body,
        start: 0,
        end: len,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum RangeResult {
    /// Not a single byte range we understand: answer 200 with the whole body.
    Ignore,
    Unsatisfiable,
    /// Inclusive first and last byte.
    Satisfiable(u64, u64),
}

fn parse_range(header: &str, len: u64) -> RangeResult {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return RangeResult::Ignore;
    };
    let spec = spec.trim();
    if spec.contains(',') {
        return RangeResult::Ignore;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return RangeResult::Ignore;
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        let Ok(suffix) = last.parse::<u64>() else {
            return RangeResult::Ignore;
        };
        if suffix == 0 || len == 0 {
            return RangeResult::Unsatisfiable;
        }
        return RangeResult::Satisfiable(len.saturating_sub(suffix), len - 1);
    }
    let Ok(start) = first.parse::<u64>() else {
        return RangeResult::Ignore;
    };
    let end = if last.is_empty() {
        None
    } else {
        match last.parse::<u64>() {
            Ok(e) if e >= start => Some(e),
            _ => return RangeResult::Ignore,
        }
    };
    if start >= len {
        return RangeResult::Unsatisfiable;
    }
    let end = end.map_or(len - 1, |e| e.min(len - 1));
    RangeResult::Satisfiable(start, end)
}

/// Whether an `Accept` header prefers PEP 691 JSON over HTML (quality values honoured;
/// specific types beat wildcards; ties go to JSON only when JSON is named explicitly).
fn prefers_json(accept: Option<&str>) -> bool {
    let Some(accept) = accept else {
        return false;
    };
    let mut json_specific: Option<f32> = None;
    let mut html_specific: Option<f32> = None;
    let mut wildcard: Option<f32> = None;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let mut q = 1.0f32;
        for p in parts {
            if let Some(v) = p.trim().strip_prefix("q=") {
                q = v.trim().parse().unwrap_or(0.0);
            }
        }
        let slot = match media.as_str() {
            JSON_CONTENT_TYPE => &mut json_specific,
            "text/html" | "application/vnd.pypi.simple.v1+html" => &mut html_specific,
            "*/*" | "application/*" | "text/*" => &mut wildcard,
            _ => continue,
        };
        *slot = Some(slot.map_or(q, |old: f32| old.max(q)));
    }
    let json = json_specific.unwrap_or(0.0);
    let html = html_specific.or(wildcard).unwrap_or(0.0);
    json_specific.is_some() && json > 0.0 && json >= html
}

fn content_type(name: &str) -> &'static str {
    if name.ends_with(".json") {
        JSON_CONTENT_TYPE
    } else if name.ends_with(".html") {
        HTML_CONTENT_TYPE
    } else {
        "application/octet-stream"
    }
}

/// Decodes `%XX` escapes; `None` when an escape is malformed or the result is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        301 => "Moved Permanently",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_forms() {
        assert_eq!(
            parse_range("bytes=0-9", 100),
            RangeResult::Satisfiable(0, 9)
        );
        assert_eq!(
            parse_range("bytes=90-", 100),
            RangeResult::Satisfiable(90, 99)
        );
        assert_eq!(
            parse_range("bytes=-10", 100),
            RangeResult::Satisfiable(90, 99)
        );
        assert_eq!(
            parse_range("bytes=-1000", 100),
            RangeResult::Satisfiable(0, 99)
        );
        assert_eq!(
            parse_range("bytes=50-1000", 100),
            RangeResult::Satisfiable(50, 99)
        );
        assert_eq!(parse_range("bytes=100-", 100), RangeResult::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), RangeResult::Unsatisfiable);
        assert_eq!(parse_range("bytes=9-1", 100), RangeResult::Ignore);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), RangeResult::Ignore);
        assert_eq!(parse_range("items=0-1", 100), RangeResult::Ignore);
    }

    #[test]
    fn accept_negotiation() {
        assert!(!prefers_json(None));
        assert!(!prefers_json(Some("*/*")));
        assert!(!prefers_json(Some("text/html")));
        assert!(prefers_json(Some(JSON_CONTENT_TYPE)));
        assert!(prefers_json(Some(
            "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01"
        )));
        assert!(!prefers_json(Some(
            "application/vnd.pypi.simple.v1+json;q=0.1, text/html"
        )));
        assert!(!prefers_json(Some(
            "application/vnd.pypi.simple.v1+json;q=0"
        )));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("/a%2Bb").as_deref(), Some("/a+b"));
        assert_eq!(percent_decode("/a%2"), None);
    }
}

//! A fault-injecting HTTP/1.1 forward proxy on 127.0.0.1 for tests that talk to a real
//! server (a registry): each request is passed to the upstream unchanged (same `Host`, so
//! the upstream's `Location` answers point back at the proxy), unless a [`ProxyFault`]
//! breaks it first: a request body cut off midway, or a status answered by the proxy; or a
//! [`ProxyFault::Gather`] holds requests until several are in flight at once (a client that
//! sends them one after another never gathers them, and the log says so).
//!
//! Owns: sockets on its own thread and tokio runtime; a request log; stops on Drop.
//! Must not: listen on anything but loopback, or keep a connection open to the client after
//! an answer (every answer closes it, so faults apply to whole requests).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_HEAD_BYTES: usize = 64 * 1024;
const MAX_BODY_BYTES: usize = 512 << 20;

/// A fault for the next `times` requests with this method whose path contains
/// `path_contains` ("" matches all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyFault {
    /// Read the head and the first `after_bytes` of the request body, then close the
    /// connection without forwarding or answering: an upload that broke off midway.
    AbortRequestBody {
        method: String,
        path_contains: String,
        after_bytes: u64,
        times: usize,
    },
    /// Answer with this status instead of forwarding.
    Status {
        method: String,
        path_contains: String,
        status: u16,
        times: usize,
    },
    /// Hold each of the next `count` matching requests until all `count` are held at once, then
    /// forward them. A request held for the idle timeout (30 s) without the others arriving is
    /// forwarded anyway, logged with the fault `gather: ... not met`.
    Gather {
        method: String,
        path_contains: String,
        count: usize,
    },
}

/// One request as the proxy saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyRecord {
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Request body bytes read from the client.
    pub body_bytes: u64,
    /// The status the client got; `None` when the connection was cut.
    pub status: Option<u16>,
    pub fault: Option<String>,
}

struct Shared {
    upstream: SocketAddr,
    faults: Mutex<Vec<ProxyFault>>,
    log: Mutex<Vec<ProxyRecord>>,
    /// Requests held by a [`ProxyFault::Gather`] so far, and the wake-up when all are there.
    gathered: Mutex<usize>,
    gather_done: tokio::sync::Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The running proxy. Dropping it stops the thread.
pub struct TestProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TestProxy {
    /// Starts a proxy on a free loopback port in front of `upstream`.
    pub fn start(upstream: SocketAddr) -> std::io::Result<TestProxy> {
        let std_listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
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
            upstream,
            faults: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            gathered: Mutex::new(0),
            gather_done: tokio::sync::Notify::new(),
        });
        let (tx, mut rx) = oneshot::channel::<()>();
        let task_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("testkit-proxy-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    loop {
                        tokio::select! {
                            _ = &mut rx => break,
                            accepted = listener.accept() => match accepted {
                                Ok((stream, _)) => {
                                    tokio::spawn(handle(Arc::clone(&task_shared), stream));
                                }
                                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                            },
                        }
                    }
                });
                drop(runtime);
            })?;
        Ok(TestProxy {
            addr,
            shared,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Adds a fault for requests that arrive from now on.
    pub fn inject(&self, fault: ProxyFault) {
        lock(&self.shared.faults).push(fault);
    }

    /// Every request so far, in order.
    pub fn log(&self) -> Vec<ProxyRecord> {
        lock(&self.shared.log).clone()
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

enum Action {
    Forward,
    Abort(u64),
    Status(u16),
    Gather(usize),
}

fn take_fault(shared: &Shared, method: &str, path: &str) -> (Action, Option<String>) {
    let mut faults = lock(&shared.faults);
    for fault in faults.iter_mut() {
        match fault {
            ProxyFault::AbortRequestBody {
                method: m,
                path_contains,
                after_bytes,
                times,
            } if *times > 0 && m == method && path.contains(path_contains.as_str()) => {
                *times -= 1;
                return (
                    Action::Abort(*after_bytes),
                    Some(format!("request body cut after {after_bytes} bytes")),
                );
            }
            ProxyFault::Status {
                method: m,
                path_contains,
                status,
                times,
            } if *times > 0 && m == method && path.contains(path_contains.as_str()) => {
                *times -= 1;
                return (Action::Status(*status), Some(format!("status {status}")));
            }
            ProxyFault::Gather {
                method: m,
                path_contains,
                count,
            } if *count > 0 && m == method && path.contains(path_contains.as_str()) => {
                let all = *count + *lock(&shared.gathered);
                *count -= 1;
                return (Action::Gather(all), None);
            }
            _ => {}
        }
    }
    (Action::Forward, None)
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 65536];
    match tokio::time::timeout(IDLE_TIMEOUT, stream.read(&mut chunk)).await {
        Ok(Ok(n)) if n > 0 => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
        _ => false,
    }
}

async fn handle(shared: Arc<Shared>, mut client: TcpStream) {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        if buf.len() > MAX_HEAD_BYTES || !read_more(&mut client, &mut buf).await {
            return;
        }
    };
    let head: Vec<u8> = buf.drain(..head_end).collect();
    let Ok(text) = std::str::from_utf8(&head) else {
        return;
    };
    let mut lines = text.split("\r\n");
    let mut request_line = lines.next().unwrap_or("").split(' ');
    let method = request_line.next().unwrap_or("").to_string();
    let target = request_line.next().unwrap_or("").to_string();
    let path = target.split('?').next().unwrap_or("").to_string();
    let mut content_length = 0usize;
    let mut forwarded_head = String::new();
    forwarded_head.push_str(text.split("\r\n").next().unwrap_or(""));
    forwarded_head.push_str("\r\n");
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        if k.trim().eq_ignore_ascii_case("content-length") {
            content_length = v.trim().parse().unwrap_or(0);
        }
        if k.trim().eq_ignore_ascii_case("connection") {
            continue;
        }
        forwarded_head.push_str(line);
        forwarded_head.push_str("\r\n");
    }
    forwarded_head.push_str("Connection: close\r\n\r\n");
    if content_length > MAX_BODY_BYTES {
        return;
    }
    let (action, mut fault) = take_fault(&shared, &method, &path);
    if let Action::Gather(all) = action {
        let notified = shared.gather_done.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let held = {
            let mut gathered = lock(&shared.gathered);
            *gathered += 1;
            *gathered
        };
        if held >= all {
            shared.gather_done.notify_waiters();
            fault = Some(format!("gather: {held} of {all} held at once"));
        } else if tokio::time::timeout(IDLE_TIMEOUT, notified).await.is_ok() {
            fault = Some(format!("gather: {all} held at once"));
        } else {
            fault = Some(format!("gather: not met, {held} of {all} held"));
        }
    }
    let record = |body_bytes: u64, status: Option<u16>| ProxyRecord {
        method: method.clone(),
        path: path.clone(),
        body_bytes,
        status,
        fault: fault.clone(),
    };
    if let Action::Abort(after) = action {
        let want = (after as usize).min(content_length);
        while buf.len() < want {
            if !read_more(&mut client, &mut buf).await {
                break;
            }
        }
        let got = buf.len().min(want);
        // The upstream sees the same broken request: the head and part of the body.
        if let Ok(mut upstream) = TcpStream::connect(shared.upstream).await {
            let _ = upstream.write_all(forwarded_head.as_bytes()).await;
            let _ = upstream.write_all(&buf[..got]).await;
            let _ = upstream.flush().await;
        }
        lock(&shared.log).push(record(got as u64, None));
        // Dropping the socket with unread data makes the kernel send a reset.
        drop(client);
        return;
    }
    while buf.len() < content_length {
        if !read_more(&mut client, &mut buf).await {
            lock(&shared.log).push(record(buf.len() as u64, None));
            return;
        }
    }
    let body = &buf[..content_length];
    if let Action::Status(status) = action {
        let answer = format!(
            "HTTP/1.1 {status} Injected\r\nContent-Type: text/plain\r\nContent-Length: 15\r\n\
             Connection: close\r\n\r\ninjected fault\n"
        );
        lock(&shared.log).push(record(body.len() as u64, Some(status)));
        let _ = client.write_all(answer.as_bytes()).await;
        let _ = client.shutdown().await;
        return;
    }
    let Ok(mut upstream) = TcpStream::connect(shared.upstream).await else {
        lock(&shared.log).push(record(body.len() as u64, None));
        return;
    };
    let sent = async {
        upstream.write_all(forwarded_head.as_bytes()).await?;
        upstream.write_all(body).await?;
        upstream.flush().await?;
        let mut answer = Vec::new();
        tokio::time::timeout(IDLE_TIMEOUT, upstream.read_to_end(&mut answer))
            .await
            .map_err(|_| std::io::Error::other("upstream timed out"))??;
        Ok::<Vec<u8>, std::io::Error>(answer)
    }
    .await;
    let Ok(answer) = sent else {
        lock(&shared.log).push(record(body.len() as u64, None));
        return;
    };
    let status = std::str::from_utf8(&answer[..answer.len().min(64)])
        .ok()
        .and_then(|t| t.split(' ').nth(1))
        .and_then(|s| s.parse().ok());
    lock(&shared.log).push(record(body.len() as u64, status));
    let _ = client.write_all(&answer).await;
    let _ = client.shutdown().await;
}

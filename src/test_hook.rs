//! Named pause points for crash tests: with `COMFYPAK_TEST_PAUSE_AT=<point>` and
//! `COMFYPAK_TEST_PAUSE_FILE=<path>` set, the process writes `<path>` when it reaches
//! `<point>` and then waits there forever, so a test can kill it (SIGKILL) at exactly that
//! step and check what the next run makes of the leftovers.
//!
//! And counts for tests that must see how the process worked: with
//! `COMFYPAK_TEST_COUNTS_FILE=<path>` set, the binary writes `http-clients N` there when it
//! exits (how many HTTP clients the whole command built: one, shared by every stage), then
//! `layers-installed N`, `layers-compiled N`, `layers-compressed N` and `blobs-hashed N` (the
//! layer cache's work: stack layers installed, stack layers given bytecode, layer tars
//! compressed, cached blobs read back and hashed).
//!
//! Owns only the pause and the counts. Must not: change behaviour when the variables are
//! unset (the default), or be used for anything but tests.

use std::sync::atomic::{AtomicUsize, Ordering};

static HTTP_CLIENTS: AtomicUsize = AtomicUsize::new(0);

/// An HTTP client was built ([`crate::http::HttpClient::new`]).
pub fn http_client_created() {
    HTTP_CLIENTS.fetch_add(1, Ordering::Relaxed);
}

/// What else a test may count (see the module doc).
#[derive(Debug, Clone, Copy)]
pub enum Count {
    LayersInstalled,
    LayersCompiled,
    LayersCompressed,
    BlobsHashed,
}

static COUNTS: [AtomicUsize; 4] = [
    AtomicUsize::new(0),
    AtomicUsize::new(0),
    AtomicUsize::new(0),
    AtomicUsize::new(0),
];
const COUNT_NAMES: [&str; 4] = [
    "layers-installed",
    "layers-compiled",
    "layers-compressed",
    "blobs-hashed",
];

/// One more of `what`.
pub fn count(what: Count) {
    COUNTS[what as usize].fetch_add(1, Ordering::Relaxed);
}

/// Writes the counts to `COMFYPAK_TEST_COUNTS_FILE` when it is set (see the module doc).
pub fn write_counts() {
    if let Some(file) = std::env::var_os("COMFYPAK_TEST_COUNTS_FILE") {
        let mut text = format!("http-clients {}\n", HTTP_CLIENTS.load(Ordering::Relaxed));
        for (name, n) in COUNT_NAMES.iter().zip(&COUNTS) {
            text.push_str(&format!("{name} {}\n", n.load(Ordering::Relaxed)));
        }
        let _ = std::fs::write(file, text);
    }
}

/// Pauses here when `COMFYPAK_TEST_PAUSE_AT` names `point` (see the module doc).
pub fn point(point: &str) {
    let Some(wanted) = std::env::var_os("COMFYPAK_TEST_PAUSE_AT") else {
        return;
    };
    if wanted != point {
        return;
    }
    if let Some(file) = std::env::var_os("COMFYPAK_TEST_PAUSE_FILE") {
        let _ = std::fs::write(file, point.as_bytes());
    }
    loop {
        std::thread::park();
    }
}

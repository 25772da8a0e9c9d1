//! Named pause points for crash tests: with `COMFYPAK_TEST_PAUSE_AT=<point>` and
//! `COMFYPAK_TEST_PAUSE_FILE=<path>` set, the process writes `<path>` when it reaches
//! `<point>` and then waits there forever, so a test can kill it (SIGKILL) at exactly that
//! step and check what the next run makes of the leftovers.
//!
//! Owns only the pause. Must not: change behaviour when the variables are unset (the
//! default), or be used for anything but tests.

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

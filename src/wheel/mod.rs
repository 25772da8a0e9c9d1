//! The wheel file format's pieces that several stages read: a zip member out of an
//! archive's tail ([`remote_zip`], for METADATA by HTTP range and for install), the core
//! metadata header format ([`core_metadata`]), and project-name normalization.
//!
//! Owns pure parsing of bytes already in memory. Must not: do I/O, talk HTTP, decide versions
//! or install anything (its callers are `index`, `install` and `source`).

pub mod core_metadata;
pub mod remote_zip;

/// PEP 503 name normalization: lowercase, every run of `-`, `_` and `.` becomes one `-`.
pub fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_separator_run = false;
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_separator_run {
                out.push('-');
            }
            in_separator_run = true;
        } else {
            out.extend(c.to_lowercase());
            in_separator_run = false;
        }
    }
    out
}

//! Package indexes: where candidate files come from and how their metadata is read.
//!
//! Owns index definitions, the simple-API client and METADATA reads over HTTP (the parsers
//! are `crate::wheel`'s, re-exported here). It must not
//! decide which version to use (that is `resolve`) nor download whole wheels for install
//! (that is `fetch`).

pub mod client;
pub mod definition;
pub mod page;
pub mod trace;

// The wheel-format readers live in `crate::wheel` (install reads them too); kept here under
// their old paths.
pub use crate::wheel::{core_metadata, remote_zip};

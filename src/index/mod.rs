//! Package indexes: where candidate files come from and how their metadata is read.
//!
//! Owns index definitions, the simple-API client and the metadata readers. It must not
//! decide which version to use (that is `resolve`) nor download whole wheels for install
//! (that is `fetch`).

pub mod client;
pub mod core_metadata;
pub mod definition;
pub mod page;
pub mod remote_zip;
pub mod trace;

//! Test support for comfypak: builds tiny REAL wheels ([`WheelSpec`]), loads and writes
//! faithful fixture indexes ([`FixtureIndex`], specs in `fixtures/indexes/`), and serves them
//! from an HTTP/1.1 server on 127.0.0.1 with injectable faults ([`TestServer`], [`Fault`]),
//! and puts a fault-injecting proxy in front of a real server ([`TestProxy`]).
//!
//! Must not: depend on comfypak itself, reach any host but 127.0.0.1, or need Python.

mod error;
pub mod index;
pub mod proxy;
pub mod server;
pub mod spec;
pub mod wheel;

pub use error::TestkitError;
pub use index::{
    fixtures_dir, FixtureIndex, FixtureIndexBuilder, FixtureProject, IndexFile, SiteOptions,
};
pub use proxy::{ProxyFault, ProxyRecord, TestProxy};
pub use server::{Events, Fault, Format, Gate, RequestRecord, ServerOptions, TestServer};
pub use spec::{normalize_name, FixtureFile, FixtureSpec};
pub use wheel::{BuiltWheel, MetadataCompression, WheelSpec};

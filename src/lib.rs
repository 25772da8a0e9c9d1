//! comfypak: resolve, lock, install and pack the Python half of a ComfyUI
//! container image, in layers that are byte-reproducible.
//!
//! Data flows one way: `pak` → `resolve` → `lock` → `fetch` → `install` → `pack`.
//! Every stage is reachable from this library so tests drive the pipeline without
//! spawning the binary; `main.rs` only parses arguments and calls [`cli::run`].

pub mod build;
pub mod cache;
pub mod cli;
pub mod cuda;
pub mod diagnostic;
pub mod diff;
pub mod digest;
pub mod fetch;
pub mod filename;
pub mod fsutil;
pub mod http;
pub mod index;
pub mod install;
pub mod lock;
pub mod mirror;
pub mod pack;
pub mod pak;
pub mod registry;
pub mod resolve;
pub mod runtime;
pub mod stack;
pub mod target;
pub mod test_hook;
pub mod units;

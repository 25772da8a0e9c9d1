//! The integration tests: one binary made of modules (as uv's `tests/it` and ripgrep's
//! `tests/tests.rs`), sharing `common` (clients, runtimes, index definitions) and
//! `pack_support` (stacks and layer trees for the pack, tool and push tests).

mod common;
mod pack_support;

mod base_pull;
mod boundaries;
mod build;
mod check;
mod cuda;
mod diff;
mod diff_real;
mod doctor;
mod errors;
mod fetch;
mod filename;
mod fixture_snapshot;
mod fuzz;
mod golden;
mod harden;
mod http;
mod index_client;
mod index_parsers;
mod install;
mod install_oracle;
mod interop;
mod layer_cache;
mod live;
mod lock;
mod pack;
mod pack_split;
mod pack_tools;
mod pak;
mod podman;
mod push;
mod record_mismatch;
mod resolve_abi;
mod resolve_core;
mod resolve_lock;
mod runtime;
mod source;
mod source_cext;
mod stack;
mod target;
mod torch_abi;
mod torch_backend;
mod wheel_contents;

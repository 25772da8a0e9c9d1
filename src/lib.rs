//! comfypak: resolve, lock, install and pack the Python half of a ComfyUI
//! container image, in layers that are byte-reproducible.
//!
//! Data flows one way: `pak` → `resolve` → `lock` → `fetch` → `install` → `pack`, run as one
//! pipeline by [`build::run`]. Every stage is reachable from this library so tests drive the
//! pipeline without spawning the binary; `main.rs` only calls [`cli::main`].

// Inputs: what the image is made of.
// pip requirement files (`pak*.txt`) with file:line provenance.
pub mod pak;
// The stack manifest: layers in stability order, target, index pins, base.
pub mod stack;
// Target interpreter and platform: wheel tags and PEP 508 markers.
pub mod target;
// Wheel and sdist file names.
pub mod filename;
// The wheel format's readers: a zip member from an archive's tail, core METADATA.
pub mod wheel;

// Resolve: the stack → one lock.
// Torch backends, GPU architectures, ABI-coupled local labels, the host's driver.
pub mod cuda;
// Index definitions, simple-API pages, METADATA reads.
pub mod index;
// PubGrub over every layer's requirements, layer assignment, the lock's contents.
pub mod resolve;
// `pylock.toml`: the contract between resolving and everything after it.
pub mod lock;
// What changed between two locks, and whether a lock is stale.
pub mod diff;

// From the lock to an image.
// Locked wheels downloaded into the cache, verified.
pub mod fetch;
// Air-gapped copies of the locked wheels.
pub mod mirror;
// Wheels installed into one prefix per layer.
pub mod install;
// The base image's own CPython, sandboxed: venv skeleton, bytecode, checks.
pub mod runtime;
// Sources (sdists, folders) built into wheels by a PEP 517 frontend in the target runtime.
pub mod source;
// Reproducible image layers, OCI layouts, docker archives, registry push.
pub mod pack;
// The whole pipeline and one typed request per stage, in one session.
pub mod build;
// What the cache folder holds, and pruning it (`comfypak cache`).
pub mod prune;

// Infrastructure every stage shares.
// The HTTP client: TLS, proxies, retries, ranges, the DNS cache.
pub mod http;
// An OCI distribution client on the shared HTTP client (push, pull reads).
pub mod registry;
// Errors' help texts, for the renderer.
pub mod diagnostic;
// The on-disk cache of pages, METADATA and wheels.
pub mod cache;
// Atomic writes and folder swaps.
pub mod fsutil;
// Validated sha256 digests.
pub mod digest;
// Byte sizes for people.
pub mod units;

// Named pause points for crash tests (inert unless their variables are set).
pub mod test_hook;

// The command line: arguments to requests, reports to text.
pub mod cli;

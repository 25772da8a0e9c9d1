//! The command line: clap definitions, output formatting and exit codes.
//!
//! Each command maps its arguments to a request of [`crate::build`] (or of one library
//! module), runs it, and prints the report (human text, or `--json` for scripts); progress
//! goes through `progress::CliProgress`. It must not hold pipeline logic or call another
//! command's `run`.
//! Exit codes: 0 success; 1 a check that found a difference, or a source build that failed
//! (its hook raised, ran past the time limit, reached for the network or made a wheel that
//! contradicts its source); 2 any other error.

mod build_cmd;
mod cache_cmd;
mod check_cmd;
mod diff_cmd;
mod doctor_cmd;
mod fetch_cmd;
mod index_cmd;
mod install_cmd;
mod mirror_cmd;
mod net;
mod pack_cmd;
mod progress;
mod push_cmd;
mod resolve_cmd;
mod stack_cmd;
mod tags_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// comfypak: the Python half of a ComfyUI container image, resolved once, locked,
/// installed per layer and packed into reproducible image layers.
#[derive(Debug, Parser)]
#[command(name = "comfypak", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Print only errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load a stack (stack.toml and its pak*.txt files) and show its layers, target and indexes.
    Stack(stack_cmd::StackArgs),
    /// Print the wheel tags a target interpreter accepts, best first.
    Tags(tags_cmd::TagsArgs),
    /// Ask an index what it offers.
    Index(index_cmd::IndexArgs),
    /// Compare two locks layer by layer: what changes, which image layers rebuild, how many bytes.
    Diff(diff_cmd::DiffArgs),
    /// The main job: resolve (--locked: check, --frozen: reuse the lock), fetch, install every
    /// layer, pack the image.
    Build(build_cmd::BuildArgs),
    /// In the base's sandbox, import every top-level module and run every console script of
    /// the installed layers, per platform; exit 1 on a failure the stack does not allow.
    Check(check_cmd::CheckArgs),
    /// Copy every locked wheel and a PEP 503 tree into a folder, for air-gapped builds.
    Mirror(mirror_cmd::MirrorArgs),
    /// Which torch backends run on this host (NVIDIA driver, GPUs), and what `auto` picks.
    Doctor(doctor_cmd::DoctorArgs),
    /// Download the locked wheels into the cache, verified (the pre-warm step of a build).
    Fetch(fetch_cmd::FetchArgs),
    /// Install a layer's locked wheels into OUT/layers/LAYER (never resolves).
    Install(install_cmd::InstallArgs),
    /// Pack the installed layers into a reproducible OCI image layout or docker archive.
    Pack(pack_cmd::PackArgs),
    /// Push an OCI image layout to a registry, sending only the blobs it lacks.
    Push(push_cmd::PushArgs),
    /// Resolve the stack for every target platform into one pylock.toml with layer data.
    Resolve(resolve_cmd::ResolveArgs),
    /// What the cache folder holds (`info`), and removing its least recently used entries
    /// (`prune --max-size`, `--older-than`).
    Cache(cache_cmd::CacheArgs),
}

/// Runs the command line and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    // Output piped into `head` should end the process quietly, as it does for other Unix
    // tools, instead of a panic on a broken pipe.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("{}", render_error(&err));
            ExitCode::from(error_code(&err))
        }
    }
}

/// The exit code of a command that failed: 1 when a source build failed (anywhere in the
/// chain: a build of `build`/`resolve`, or a prepare hook while resolving), else 2.
pub fn error_code(err: &anyhow::Error) -> u8 {
    use crate::build::BuildError;
    use crate::index::client::IndexError;
    use crate::source::SourceError;
    let failed = |cause: &(dyn std::error::Error + 'static)| -> bool {
        macro_rules! any_of {
            ($ty:ty, $test:expr) => {
                cause.downcast_ref::<$ty>().is_some_and($test)
                    || cause
                        .downcast_ref::<Box<$ty>>()
                        .is_some_and(|e| $test(e.as_ref()))
                    || cause
                        .downcast_ref::<std::sync::Arc<$ty>>()
                        .is_some_and(|e| $test(e.as_ref()))
            };
        }
        any_of!(BuildError, |e: &BuildError| e.is_build_failure())
            || any_of!(SourceError, |e: &SourceError| e.is_build_failure())
            || any_of!(IndexError, |e: &IndexError| e.is_build_failure())
    };
    if err.chain().any(failed) {
        1
    } else {
        2
    }
}

/// Runs one parsed command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Stack(args) => stack_cmd::run(args),
        Command::Tags(args) => tags_cmd::run(args),
        Command::Index(args) => index_cmd::run(args),
        Command::Diff(args) => diff_cmd::run(args),
        Command::Build(args) => build_cmd::run(args, cli.quiet),
        Command::Check(args) => check_cmd::run(args, cli.quiet),
        Command::Mirror(args) => mirror_cmd::run(args, cli.quiet),
        Command::Doctor(args) => doctor_cmd::run(args),
        Command::Fetch(args) => fetch_cmd::run(args, cli.quiet),
        Command::Install(args) => install_cmd::run(args, cli.quiet),
        Command::Pack(args) => pack_cmd::run(args, cli.quiet),
        Command::Push(args) => push_cmd::run(args, cli.quiet),
        Command::Resolve(args) => resolve_cmd::run(args, cli.quiet),
        Command::Cache(args) => cache_cmd::run(args, cli.quiet),
    }
}

/// The cargo-style rendering of an error: `error: <what went wrong>`, then `Caused by:` with
/// each cause indented (a cause's text is not repeated inside the message above it), then
/// every distinct `help: <what to do>` last, from each error's `help()`
/// ([`crate::diagnostic::help_of`]).
pub fn render_error(err: &anyhow::Error) -> String {
    let chain: Vec<&(dyn std::error::Error + 'static)> = err.chain().collect();
    let mut helps: Vec<String> = Vec::new();
    let mut texts: Vec<String> = Vec::new();
    for cause in &chain {
        if let Some(help) = crate::diagnostic::help_of(*cause) {
            helps.push(help);
        }
        texts.push(cause.to_string().trim_end().to_string());
    }
    // A message that ends with its cause's text (`…: {source}`) keeps only its own part;
    // a cause already shown word for word in the message above is not shown again.
    let mut shown: Vec<String> = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        let mut own = text.clone();
        if let Some(next) = texts.get(i + 1) {
            if !next.is_empty() && own.ends_with(next.as_str()) && own.len() > next.len() {
                own.truncate(own.len() - next.len());
                let trimmed = own.trim_end_matches([' ', ':', '\n', '(']).len();
                own.truncate(trimmed);
            }
        }
        if own.is_empty() || shown.iter().any(|s| s.contains(own.as_str())) {
            continue;
        }
        shown.push(own);
    }
    let mut out = String::new();
    let mut lines = shown.iter();
    if let Some(first) = lines.next() {
        out.push_str("error: ");
        out.push_str(first);
    }
    let causes: Vec<&String> = lines.collect();
    if !causes.is_empty() {
        out.push_str("\n\nCaused by:");
        for cause in causes {
            for line in cause.lines() {
                out.push('\n');
                if !line.trim().is_empty() {
                    out.push_str("  ");
                    out.push_str(line);
                }
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    let helps: Vec<String> = helps
        .into_iter()
        .filter(|h| seen.insert(h.clone()))
        .collect();
    if !helps.is_empty() {
        out.push('\n');
        for help in helps {
            out.push_str("\nhelp: ");
            out.push_str(&help.replace('\n', "\n      "));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer step failed: {source}")]
    struct Outer {
        #[source]
        source: Inner,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("inner problem\non two lines")]
    struct Inner {
        #[source]
        source: crate::pack::PackError,
    }

    #[test]
    fn causes_are_indented_once_and_help_comes_last() {
        let inner = Inner {
            source: crate::pack::PackError::ArchiveOnePlatform { count: 2 },
        };
        let err = anyhow::Error::new(Outer { source: inner }).context("building the image");
        assert_eq!(
            render_error(&err),
            "error: building the image\n\nCaused by:\n  outer step failed\n  inner problem\n  \
             on two lines\n  a docker archive holds one platform, and 2 were asked for\n\n\
             help: pass --platform with one of them"
        );
    }

    #[test]
    fn a_lone_error_has_no_caused_by() {
        let err = anyhow::anyhow!("plain");
        assert_eq!(render_error(&err), "error: plain");
    }
}

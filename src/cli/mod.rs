//! The command line: clap definitions, output formatting and exit codes.
//!
//! Thin by design: each command parses its arguments, calls one library module and prints
//! the result (human text, or `--json` for scripts). It must not hold pipeline logic.
//! Exit codes: 0 success, 1 a check that found a difference, 2 an error.

mod build_cmd;
mod check_cmd;
mod diff_cmd;
mod doctor_cmd;
mod fetch_cmd;
mod index_cmd;
mod install_cmd;
mod mirror_cmd;
mod net;
mod pack_cmd;
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
    /// The main job: resolve (or --locked), fetch, install every layer, pack the image.
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
            ExitCode::from(2)
        }
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
    }
}

/// `error: ...` followed by each cause on its own `caused by:` line, without repeating a
/// cause whose text the message already contains.
pub fn render_error(err: &anyhow::Error) -> String {
    let mut out = format!("error: {err}");
    let mut shown = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if shown.contains(&text) {
            continue;
        }
        out.push_str(&format!("\n  caused by: {text}"));
        shown = text;
    }
    out
}

//! `comfypak install --layer L`: install a layer's locked wheels into
//! `<out>/layers/<layer>/<venv>`, fetching only what the cache lacks. Never resolves; works
//! offline when the cache holds the wheels. Maps the flags to an [`InstallRequest`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;

use super::net::NetworkArgs;
use super::progress::CliProgress;
use crate::build::{self, InstallRequest};
use crate::install::link::LinkMode;

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The lock file to read.
    #[arg(long, default_value = "pylock.toml")]
    pub lock: PathBuf,
    /// The layer to install (repeatable).
    #[arg(
        long = "layer",
        value_name = "LAYER",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub layers: Vec<String>,
    /// Install every layer of the lock.
    #[arg(long)]
    pub all: bool,
    /// Output folder: layers go to OUT/layers/<layer>.
    #[arg(long, default_value = "build")]
    pub out: PathBuf,
    /// x86_64, aarch64 or a full platform tag (default: the lock's first platform).
    #[arg(long)]
    pub platform: Option<String>,
    /// How files get from the cache into the layer.
    #[arg(long, value_enum, default_value_t = LinkMode::Hardlink)]
    pub link_mode: LinkMode,
    /// On a path written by two packages, keep the upper layer's file instead of failing.
    #[arg(long)]
    pub allow_overwrite: bool,
    /// Compile bytecode with the target interpreter given by --python.
    #[arg(long, requires = "python")]
    pub compile: bool,
    /// The target interpreter (for --compile); must be the lock's Python version.
    #[arg(long)]
    pub python: Option<PathBuf>,
    #[command(flatten)]
    pub network: NetworkArgs,
}

pub fn run(args: InstallArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let request = InstallRequest {
        lock: args.lock.clone(),
        layers: if args.all {
            Vec::new()
        } else {
            args.layers.clone()
        },
        out: args.out.clone(),
        platform: args.platform.clone(),
        link_mode: args.link_mode,
        allow_overwrite: args.allow_overwrite,
        compile_with: if args.compile {
            args.python.clone()
        } else {
            None
        },
        offline: args.network.offline,
    };
    let session = args.network.session()?;
    let reports = build::install(&session, &request, &CliProgress::new(quiet))?;
    if !quiet && reports.len() > 1 {
        println!(
            "installed {} layers in {:.2}s",
            reports.len(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}

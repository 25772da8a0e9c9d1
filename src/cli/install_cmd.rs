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
    /// Compile bytecode with the base's own Python (in the target runtime, as `build` does).
    #[arg(long, requires = "base")]
    pub compile: bool,
    /// How long compiling one layer's bytecode may take, e.g. 5400, 90m, 2h (at most 24h;
    /// default 30m). Under qemu it is slow.
    #[arg(long, value_name = "DURATION", env = "COMFYPAK_COMPILE_TIMEOUT",
          value_parser = crate::runtime::compile::compile_timeout)]
    pub compile_timeout: Option<std::time::Duration>,
    /// The base whose Python compiles (--compile): an OCI image layout, a root folder or a
    /// registry image (`docker://HOST/REPO:TAG`, pulled by the digest the lock records, if any).
    #[arg(long, value_name = "BASE")]
    pub base: Option<String>,
    /// Pull a registry base over plain HTTP (allowed only for a registry on this machine).
    #[arg(long)]
    pub insecure_base: bool,
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
        compile_base: None,
        compile_timeout: args.compile_timeout,
        offline: args.network.offline,
    };
    let session = args.network.session()?;
    let mut request = request;
    if let (true, Some(base)) = (args.compile, &args.base) {
        let lock = crate::lock::Lock::read(&args.lock)?;
        let targets = crate::fetch::targets_for(&lock, args.platform.as_deref())?;
        let mut bases = crate::runtime::Bases {
            all: Some(PathBuf::from(base)),
            ..Default::default()
        };
        let archs: Vec<_> = targets.iter().take(1).map(|t| t.platform.arch).collect();
        build::pull_bases(
            &session,
            &mut bases,
            &archs,
            args.insecure_base,
            &lock.tool.comfypak.bases,
            build::BasePins::Prefer,
            &args.lock,
        )?;
        request.compile_base = bases.all;
    }
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

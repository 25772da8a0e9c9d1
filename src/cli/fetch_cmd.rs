//! `comfypak fetch`: download the locked wheels of some layers and platforms into the cache
//! (the pre-warm step of an image build). Maps the flags to a [`FetchRequest`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::net::NetworkArgs;
use super::progress::{fetch_line, CliProgress};
use crate::build::{self, FetchRequest, PlatformChoice};

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// The lock file to read.
    #[arg(long, default_value = "pylock.toml")]
    pub lock: PathBuf,
    /// Fetch only this layer's wheels (repeatable).
    #[arg(long = "layer", value_name = "LAYER", conflicts_with = "all")]
    pub layers: Vec<String>,
    /// Fetch every layer (the default when no --layer is given).
    #[arg(long)]
    pub all: bool,
    /// x86_64, aarch64, a full platform tag, or `all` of the lock's platforms.
    #[arg(long, default_value = "all")]
    pub platform: String,
    #[command(flatten)]
    pub network: NetworkArgs,
}

pub fn run(args: FetchArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let request = FetchRequest {
        lock: args.lock.clone(),
        layers: args.layers.clone(),
        platform: PlatformChoice::parse(&args.platform),
    };
    let session = args.network.session()?;
    let report = build::fetch(&session, &request, &CliProgress::new(quiet))?;
    if !quiet {
        println!("{}", fetch_line(&report));
    }
    Ok(ExitCode::SUCCESS)
}

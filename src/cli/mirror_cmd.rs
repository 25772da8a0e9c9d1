//! `comfypak mirror`: every locked wheel plus a PEP 503 tree in one folder, for air-gapped
//! builds with `--index NAME=file://DIR/simple`. Maps the flags to a [`MirrorRequest`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::net::NetworkArgs;
use super::progress::CliProgress;
use crate::build::{self, MirrorRequest};

#[derive(Debug, Args)]
pub struct MirrorArgs {
    /// The lock whose wheels to mirror (every layer, every platform).
    #[arg(long, default_value = "pylock.toml")]
    pub lock: PathBuf,
    /// The mirror folder (files/ and simple/ are written inside).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub network: NetworkArgs,
}

pub fn run(args: MirrorArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let request = MirrorRequest {
        lock: args.lock.clone(),
        out: args.out.clone(),
    };
    let session = args.network.session()?;
    let (report, indexes) = build::mirror(&session, &request, &CliProgress::new(quiet))?;
    if !quiet {
        let simple = std::fs::canonicalize(&args.out)
            .unwrap_or_else(|_| args.out.clone())
            .join("simple");
        let overrides: Vec<String> = indexes
            .iter()
            .map(|name| format!("--index {name}=file://{}/", simple.display()))
            .collect();
        println!(
            "mirrored {} files of {} projects ({}) into {}\nuse it with: {}",
            report.files,
            report.projects,
            crate::units::human_bytes(report.bytes),
            report.dir.display(),
            overrides.join(" ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

//! `comfypak doctor [--root DIR] [--lock pylock.toml] [--json]`: which torch backends run on
//! this host (driver, GPUs), which one `auto` picks, and whether a lock's backend fits.
//!
//! Thin: reads the host with `cuda::doctor`, prints text or JSON. Exit 0 for any host
//! reading (no GPU is a normal answer); 1 when `--lock` is given and its backend does not run
//! here; 2 when the lock cannot be read.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::build::check_lock;
use crate::cuda::doctor::{assess, read_host, render_text, HostSources};
use crate::lock::Lock;

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Read the host from this root folder instead of `/` (driver files under
    /// proc/ and sys/, `nvidia-smi.csv` for the GPU list); NVML, libcuda and nvidia-smi are
    /// used only when the root is `/`.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Check this lock's torch backend (`[tool.comfypak] torch-backend`) against the host.
    #[arg(long, value_name = "PYLOCK")]
    pub lock: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    if !args.root.is_dir() {
        anyhow::bail!(
            "--root {}: not a folder; give the root of the host to read (default /)",
            args.root.display()
        );
    }
    let host = read_host(&HostSources::new(&args.root));
    let mut report = assess(&host);
    if let Some(path) = &args.lock {
        let lock = Lock::read(path)
            .with_context(|| format!("doctor --lock {}: reading the lock", path.display()))?;
        report.lock = Some(check_lock(&report, &lock, path));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render_text(&report));
    }
    let failed = report.lock.as_ref().is_some_and(|l| !l.verdict.runs());
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

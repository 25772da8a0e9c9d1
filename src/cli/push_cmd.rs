//! `comfypak push IMAGE_DIR REGISTRY/REPO:TAG`: an OCI image layout to a registry, sending
//! only the blobs it lacks. Maps the arguments to a [`PushRequest`]. Credentials are
//! read from the environment or `~/.docker/config.json` and never printed.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::build::{self, NetworkOptions, PushRequest, Session};
use crate::pack::push::{BlobOutcome, ImageReference, PushOptions};
use crate::units::human_bytes;

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The OCI image layout `comfypak pack` wrote.
    pub image: PathBuf,
    /// Where to push: REGISTRY/REPOSITORY:TAG.
    pub reference: String,
    /// Use plain HTTP (allowed only for a registry on 127.0.0.1, ::1 or localhost).
    #[arg(long)]
    pub insecure: bool,
    /// Upload blobs larger than this many MiB in chunks of this size.
    #[arg(long, default_value_t = 64)]
    pub chunk_mib: u64,
    /// Try to mount blobs from this repository of the same registry first (repeatable).
    #[arg(long, value_name = "REPOSITORY")]
    pub mount_from: Vec<String>,
    /// Uploads in flight at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: PushArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let reference: ImageReference = args.reference.parse()?;
    let request = PushRequest {
        image: args.image.clone(),
        reference: reference.clone(),
        options: PushOptions {
            insecure: args.insecure,
            chunk_size: args.chunk_mib.max(1) << 20,
            mount_from: args.mount_from.clone(),
            credentials: None,
            concurrency: args.concurrency,
        },
    };
    let session = Session::new(NetworkOptions::default())?;
    let report = build::push(&session, &request)?;
    let count = |f: fn(&BlobOutcome) -> bool| report.blobs.iter().filter(|b| f(&b.outcome)).count();
    let uploaded = report.uploaded().len();
    let present = count(|o| *o == BlobOutcome::Present);
    let mounted = count(|o| *o == BlobOutcome::Mounted);
    if args.json {
        let json = serde_json::json!({
            "reference": reference.to_string(),
            "digest": report.digest,
            "bytes_sent": report.bytes_sent(),
            "blobs": report.blobs.iter().map(|b| serde_json::json!({
                "digest": b.digest,
                "size": b.size,
                "media_type": b.media_type,
                "outcome": match b.outcome {
                    BlobOutcome::Present => "present".to_string(),
                    BlobOutcome::Mounted => "mounted".to_string(),
                    BlobOutcome::Uploaded => "uploaded".to_string(),
                    BlobOutcome::Chunked(n) => format!("uploaded in {n} chunks"),
                },
            })).collect::<Vec<_>>(),
            "manifests_put": report.manifests_put,
            "manifests_present": report.manifests_present,
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else if !quiet {
        println!(
            "pushed {reference} ({}): {uploaded} blobs uploaded ({}), {present} already there, \
             {mounted} mounted; {} manifests written, {} unchanged",
            report.digest,
            human_bytes(report.bytes_sent()),
            report.manifests_put.len(),
            report.manifests_present.len(),
        );
    }
    Ok(ExitCode::SUCCESS)
}

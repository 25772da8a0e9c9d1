//! `comfypak build`: the main job. Maps the flags to a [`BuildRequest`], runs [`build::run`]
//! and prints one summary with digests, sizes, what was reused and the time each stage took.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::net::NetworkArgs;
use super::pack_cmd::{compression, short, split_threshold_arg, CompressionArg, SplitThreshold};
use super::progress::CliProgress;
use crate::build::{self, BuildReport, BuildRequest, LockMode};
use crate::pack::Reuse;
use crate::runtime::Bases;
use crate::units::human_bytes;

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The stack folder (holding stack.toml).
    #[arg(long, default_value = "pak")]
    pub stack: PathBuf,
    /// Where layers and the image go.
    #[arg(long, default_value = "build")]
    pub out: PathBuf,
    /// The lock to write (or, with --locked / --frozen, to read).
    #[arg(long, default_value = "pylock.toml")]
    pub lock: PathBuf,
    /// Resolve, but fail when the lock is not up to date instead of writing it (as in cargo
    /// and uv).
    #[arg(long, conflicts_with = "frozen")]
    pub locked: bool,
    /// Use the lock as it is: no resolution (fails when the lock does not fit the stack's
    /// layers).
    #[arg(long)]
    pub frozen: bool,
    /// Torch backend to resolve for: cu130, cu128, cu126, cpu or auto (default: the stack's).
    #[arg(long, value_name = "BACKEND", conflicts_with = "frozen")]
    pub torch_backend: Option<String>,
    /// The base to build on and run the target's Python from: an OCI image layout (e.g. a CUDA
    /// runtime image with Python 3.14), a registry image (`docker://HOST/REPO:TAG` or
    /// `@sha256:…`; the tag's digest is recorded in the lock) or a root folder (default: the
    /// stack's `[base]`). With a base, the lowest layer gets the venv skeleton and every layer
    /// its bytecode. `ARCH=BASE` gives one architecture its own base (repeatable). Each
    /// platform's image goes on its base's image when that is a layout or registry image (a
    /// root folder is run, not packed).
    #[arg(long, value_name = "[ARCH=]BASE")]
    pub base: Vec<String>,
    /// The base sources are built in, when it is not the image's: a root folder, OCI layout or
    /// registry image (`docker://…`, pulled when a build needs it) with the target's Python and
    /// a toolchain (default: the stack's `[build] base`, else the image's base); `ARCH=BASE`
    /// gives one architecture its own (repeatable).
    #[arg(long = "build-base", value_name = "[ARCH=]BASE")]
    pub build_base: Vec<String>,
    /// Pull a registry base over plain HTTP (allowed only for a registry on this machine).
    #[arg(long)]
    pub insecure_base: bool,
    /// Do not compile bytecode into the layers.
    #[arg(long)]
    pub no_compile: bool,
    /// How long compiling one layer's bytecode may take, e.g. 5400, 90m, 2h (at most 24h;
    /// default: the stack's `[compile] timeout`, else 30m). Under qemu it is slow.
    #[arg(long, value_name = "DURATION", env = "COMFYPAK_COMPILE_TIMEOUT",
          value_parser = crate::runtime::compile::compile_timeout)]
    pub compile_timeout: Option<std::time::Duration>,
    /// On a path written by two packages, keep the upper layer's (or later package's) file
    /// instead of failing, as an overlay or `pip install` would.
    #[arg(long)]
    pub allow_overwrite: bool,
    /// Layer compression.
    #[arg(long, value_enum, default_value_t = CompressionArg::Gzip)]
    pub compression: CompressionArg,
    /// Packages whose largest wheel has at least this size get an image layer of their own
    /// (e.g. 32MiB, 100MB; `off`: one image layer per stack layer). Default: the stack's
    /// `[pack] split-threshold`, else 32MiB.
    #[arg(long, value_name = "SIZE", value_parser = split_threshold_arg)]
    pub split_threshold: Option<SplitThreshold>,
    /// Build every layer, without reusing or recording layers in the layer cache (the
    /// cache folder's `layers/`; a layer is reused when its wheels, base, venv, bytecode,
    /// compression and split settings are the same as a build's before).
    #[arg(long)]
    pub no_layer_cache: bool,
    /// Leave the named layer out of this build (repeatable): resolve and build as though its
    /// pak files were under `[excluded]`, like uv's `--no-group` (e.g. `--no-layer nodes` where
    /// no base with a compiler is at hand for the layer's source builds).
    #[arg(long = "no-layer", value_name = "LAYER")]
    pub no_layer: Vec<String>,
    /// Read back and hash every blob the layer cache reuses. Without it, a blob whose size,
    /// modification time, inode and device are those recorded when it was last hashed is
    /// trusted (as git trusts an unchanged file's index entry); `comfypak push` hashes what
    /// it uploads either way.
    #[arg(long, conflicts_with = "no_layer_cache")]
    pub verify_layer_cache: bool,
    #[command(flatten)]
    pub formats: super::resolve_cmd::FormatArgs,
    #[command(flatten)]
    pub network: NetworkArgs,
}

pub fn run(args: BuildArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let request = BuildRequest {
        stack: args.stack.clone(),
        out: args.out.clone(),
        lock: args.lock.clone(),
        mode: if args.frozen {
            LockMode::Frozen
        } else if args.locked {
            LockMode::Locked
        } else {
            LockMode::Write
        },
        torch_backend: args.torch_backend.clone(),
        bases: Bases::parse(&args.base)?,
        insecure_base: args.insecure_base,
        compile: !args.no_compile,
        compile_timeout: args.compile_timeout,
        allow_overwrite: args.allow_overwrite,
        compression: compression(args.compression, None),
        split_threshold: args.split_threshold.map(|t| t.0),
        layer_cache: !args.no_layer_cache,
        verify_layer_cache: args.verify_layer_cache,
        network: args.network.options(),
        formats: args.formats.options()?,
        no_layers: args.no_layer.clone(),
        build_bases: Bases::parse(&args.build_base)?,
    };
    let progress = CliProgress::new(quiet).with_stage_reports();
    let report = build::run(&request, &progress)?;
    if !quiet {
        print!("{}", summary(&report));
    }
    Ok(ExitCode::SUCCESS)
}

/// The build's summary: per platform the manifest and each layer's digest, size and reuse.
fn summary(report: &BuildReport) -> String {
    let image = &report.image;
    let mut out = String::new();
    out.push_str(&format!(
        "\nbuilt {} ({})\n",
        report.stack,
        report.image_dir.display()
    ));
    for p in &image.platforms {
        out.push_str(&format!(
            "linux/{}  manifest {}\n",
            p.architecture,
            short(&p.manifest.digest)
        ));
        let width = p
            .layers
            .iter()
            .map(|l| l.name.len())
            .max()
            .unwrap_or(0)
            .max(10);
        for l in &p.layers {
            let state = match (report.had_previous, l.from_base) {
                (_, true) => "base",
                (false, false) => "new",
                (true, false) => match l.reuse {
                    Reuse::Identical => "reused",
                    _ => "new",
                },
            };
            out.push_str(&format!(
                "  {:<width$} {}  {:>12}  {}\n",
                l.name,
                short(&l.descriptor.digest),
                human_bytes(l.descriptor.size),
                state
            ));
        }
    }
    if let Some(index) = &image.index {
        out.push_str(&format!("image index {}\n", index.digest));
    }
    out.push_str(&format!(
        "a push {} sends {} in {} blobs\n",
        if report.had_previous {
            "after the previous build"
        } else {
            "to an empty repository"
        },
        human_bytes(image.push_bytes),
        image.push_blobs
    ));
    let times: Vec<String> = report
        .stages
        .iter()
        .map(|s| format!("{} {:.1}s", s.name, s.seconds))
        .collect();
    out.push_str(&format!(
        "time: {} (total {:.1}s)\n",
        times.join(", "),
        report.seconds
    ));
    out
}

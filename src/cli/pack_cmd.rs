//! `comfypak pack`: the installed layer folders → an OCI image layout or a docker archive,
//! with a per-layer reuse report. Maps the flags to a [`PackJob`].
//!
//! Where layer folders are read from, per platform: `--layers ARCH=DIR` when given; else, when
//! the lock has one platform, `OUT/layers`; when it has several, `OUT/<arch>/layers`, also when
//! `--platform` packs only one of them (install each platform with
//! `comfypak install --all --platform ARCH --out OUT/ARCH`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::build::{self, parse_arch, PackJob, PlatformChoice};
use crate::pack::{Compression, OutputFormat, PackedImage};
use crate::units::human_bytes;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// An OCI image layout folder.
    Oci,
    /// A tar for `docker load` / `podman load` (one platform).
    DockerArchive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompressionArg {
    Gzip,
    Zstd,
}

#[derive(Debug, Args)]
pub struct PackArgs {
    /// The stack folder (holding stack.toml and, optionally, image.toml).
    #[arg(long, default_value = "pak")]
    pub stack: PathBuf,
    /// The layers the lock was resolved without (`resolve --no-layer`), repeatable.
    #[arg(long = "no-layer", value_name = "LAYER")]
    pub no_layer: Vec<String>,
    /// The lock the layers were installed from: it decides the layer order, the venv, the
    /// platforms and the image name.
    #[arg(long, default_value = "pylock.toml")]
    pub lock: PathBuf,
    /// The folder `comfypak install` wrote to.
    #[arg(long, default_value = "build")]
    pub out: PathBuf,
    /// The folder holding one platform's layer folders: ARCH=DIR (repeatable).
    #[arg(long = "layers", value_name = "ARCH=DIR")]
    pub layers: Vec<String>,
    /// x86_64, aarch64, a platform tag, or `all` (default: every platform of the stack).
    #[arg(long, default_value = "all")]
    pub platform: String,
    /// Where to write (default: OUT/image, or OUT/image.tar for a docker archive).
    #[arg(long)]
    pub output: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = FormatArg::Oci)]
    pub format: FormatArg,
    #[arg(long, value_enum, default_value_t = CompressionArg::Gzip)]
    pub compression: CompressionArg,
    /// Compression level (gzip 0-9, default 6; zstd 1-19, default 3).
    #[arg(long)]
    pub level: Option<i32>,
    /// An OCI image layout to put at the bottom (e.g. from `skopeo copy docker://IMAGE oci:DIR`);
    /// `ARCH=LAYOUT` gives one architecture its own (repeatable).
    #[arg(long, value_name = "[ARCH=]LAYOUT")]
    pub base: Vec<String>,
    /// An earlier image layout: report which layers are identical and what a push would send.
    #[arg(long)]
    pub previous: Option<PathBuf>,
    /// The tag recorded in the layout (and in the docker archive).
    #[arg(long, default_value = "latest")]
    pub tag: String,
    /// The image name in a docker archive (default: the lock's stack name).
    #[arg(long)]
    pub name: Option<String>,
    /// Packages whose largest locked wheel has at least this size get an image layer of
    /// their own inside their stack layer's rank (e.g. 32MiB, 100MB; `off`: one image layer
    /// per stack layer). Default: the stack's `[pack] split-threshold`, else
    /// 32MiB.
    #[arg(long, value_name = "SIZE", value_parser = split_threshold_arg)]
    pub split_threshold: Option<SplitThreshold>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// A `--split-threshold` value: bytes, or `None` for `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitThreshold(pub Option<u64>);

/// Parses `--split-threshold`.
pub fn split_threshold_arg(text: &str) -> Result<SplitThreshold, String> {
    crate::units::parse_size_or_off(text).map(SplitThreshold)
}

pub fn run(args: PackArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let image = build::pack(&job(&args)?)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&image_json(&image))?);
    } else if !quiet {
        print!("{}", image_text(&image, args.previous.as_deref()));
    }
    Ok(ExitCode::SUCCESS)
}

/// The layer compression a flag and a level mean (gzip 0-9, default 6; zstd default 3).
pub fn compression(arg: CompressionArg, level: Option<i32>) -> Compression {
    match arg {
        CompressionArg::Gzip => Compression::Gzip {
            level: level.unwrap_or(6).clamp(0, 9) as u32,
        },
        CompressionArg::Zstd => Compression::Zstd {
            level: level.unwrap_or(3),
        },
    }
}

fn job(args: &PackArgs) -> anyhow::Result<PackJob> {
    let mut layers = Vec::new();
    for text in &args.layers {
        let (arch, dir) = text.split_once('=').with_context(|| {
            format!("--layers {text}: write ARCH=DIR, e.g. x86_64=build/layers")
        })?;
        layers.push((parse_arch(arch)?, PathBuf::from(dir)));
    }
    let bases = crate::runtime::Bases::parse(&args.base)?;
    Ok(PackJob {
        stack: args.stack.clone(),
        no_layers: args.no_layer.clone(),
        lock: args.lock.clone(),
        out: args.out.clone(),
        layers,
        platform: PlatformChoice::parse(&args.platform),
        output: args.output.clone(),
        format: match args.format {
            FormatArg::Oci => OutputFormat::OciLayout,
            FormatArg::DockerArchive => OutputFormat::DockerArchive,
        },
        compression: compression(args.compression, args.level),
        base: bases.all,
        base_by_arch: bases.by_arch.into_iter().collect(),
        previous: args.previous.clone(),
        tag: args.tag.clone(),
        name: args.name.clone(),
        split_threshold: args.split_threshold.map(|t| t.0),
        layer_cache: None,
    })
}

pub fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

pub fn image_text(image: &PackedImage, previous: Option<&Path>) -> String {
    let mut out = String::new();
    for p in &image.platforms {
        out.push_str(&format!(
            "linux/{}  manifest {}  config {}\n",
            p.architecture,
            short(&p.manifest.digest),
            short(&p.config.digest)
        ));
        let width = p
            .layers
            .iter()
            .map(|l| l.name.len())
            .max()
            .unwrap_or(0)
            .max(12);
        for l in &p.layers {
            out.push_str(&format!(
                "  {:<width$} {}  {:>10}  {}\n",
                l.name,
                short(&l.descriptor.digest),
                human_bytes(l.descriptor.size),
                if previous.is_some() {
                    l.reuse.as_str()
                } else {
                    ""
                }
            ));
        }
    }
    if let Some(index) = &image.index {
        out.push_str(&format!("image index {}\n", short(&index.digest)));
    }
    match previous {
        Some(prev) => out.push_str(&format!(
            "a push after {} sends {} in {} blobs\n",
            prev.display(),
            human_bytes(image.push_bytes),
            image.push_blobs
        )),
        None => out.push_str(&format!(
            "a push to an empty repository sends {} in {} blobs\n",
            human_bytes(image.push_bytes),
            image.push_blobs
        )),
    }
    out.push_str(&format!("wrote {}\n", image.output.display()));
    out
}

fn image_json(image: &PackedImage) -> serde_json::Value {
    serde_json::json!({
        "output": image.output.display().to_string(),
        "index": image.index.as_ref().map(|d| d.digest.clone()),
        "push_bytes": image.push_bytes,
        "push_blobs": image.push_blobs,
        "platforms": image.platforms.iter().map(|p| serde_json::json!({
            "architecture": p.architecture,
            "manifest": p.manifest.digest,
            "config": p.config.digest,
            "layers": p.layers.iter().map(|l| serde_json::json!({
                "name": l.name,
                "from_base": l.from_base,
                "digest": l.descriptor.digest,
                "size": l.descriptor.size,
                "diff_id": l.diff_id,
                "reuse": l.reuse.as_str(),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

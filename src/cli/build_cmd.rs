//! `comfypak build`: the main job. Resolve (or reuse the lock), fetch, install every layer for
//! every platform, pack the image; then one summary with digests, sizes, what was reused and
//! the time each stage took. Thin: it runs the same code as `resolve`, `fetch`, `install` and
//! `pack`, in that order, and never lets a later stage resolve.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Args;

use super::fetch_cmd::{self, FetchArgs};
use super::install_cmd::{self, InstallArgs};
use super::net::NetworkArgs;
use super::pack_cmd::{self, CompressionArg, FormatArg, PackArgs};
use super::resolve_cmd::{self, ResolveArgs};
use crate::cache::Cache;
use crate::install::link::LinkMode;
use crate::lock::Lock;
use crate::pack::Reuse;
use crate::runtime::compile::COMPILE_TIMEOUT;
use crate::runtime::prepare::{prepare_layers, LayerDir};
use crate::runtime::{Base, Bases, Runtime, RuntimeOptions};
use crate::stack::Stack;
use crate::units::human_bytes;

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The stack folder (holding stack.toml).
    #[arg(long, default_value = "pak")]
    pub stack: PathBuf,
    /// Where layers and the image go.
    #[arg(long, default_value = "build")]
    pub out: PathBuf,
    /// The lock to write (or, with --locked, to read).
    #[arg(long, default_value = "pylock.toml")]
    pub lock: PathBuf,
    /// Use the lock as it is: no resolution (fails when the lock does not fit the stack).
    #[arg(long)]
    pub locked: bool,
    /// Torch backend to resolve for: cu130, cu128, cu126, cpu or auto (default: the stack's).
    #[arg(long, value_name = "BACKEND", conflicts_with = "locked")]
    pub torch_backend: Option<String>,
    /// The base to build on and run the target's Python from: an OCI image layout (e.g. a CUDA
    /// runtime image with Python 3.14) or a root folder (default: the stack's `[base]`). With
    /// a base, the lowest layer gets the venv skeleton and every layer its bytecode.
    /// `ARCH=PATH` gives one architecture its own base (repeatable); only a layout given for
    /// every platform becomes the image's base layers.
    #[arg(long, value_name = "[ARCH=]PATH")]
    pub base: Vec<String>,
    /// Do not compile bytecode into the layers.
    #[arg(long)]
    pub no_compile: bool,
    /// On a path written by two packages, keep the upper layer's (or later package's) file
    /// instead of failing, as an overlay or `pip install` would.
    #[arg(long)]
    pub allow_overwrite: bool,
    /// Layer compression.
    #[arg(long, value_enum, default_value_t = CompressionArg::Gzip)]
    pub compression: CompressionArg,
    #[command(flatten)]
    pub network: NetworkArgs,
}

/// One stage's name and seconds.
struct Stage {
    name: &'static str,
    seconds: f64,
}

pub fn run(args: BuildArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let mut stages: Vec<Stage> = Vec::new();
    let stack = Stack::load(&args.stack)?;
    let say = |text: &str| {
        if !quiet {
            eprintln!("==> {text}");
        }
    };

    // 1. Resolve: the lock is the contract for every later stage.
    let t = Instant::now();
    // Every other resolve option keeps its command-line default.
    let resolve = ResolveArgs {
        stack: args.stack.clone(),
        output: args.lock.clone(),
        frozen: args.locked,
        torch_backend: args.torch_backend.clone(),
        network: args.network.clone(),
        ..ResolveArgs::default()
    };
    if args.locked {
        say(&format!(
            "using {} as it is (--locked)",
            args.lock.display()
        ));
        check_stage(resolve_cmd::run(resolve, true), "checking the lock")?;
    } else {
        say(&format!(
            "resolving {} into {}",
            args.stack.display(),
            args.lock.display()
        ));
        check_stage(resolve_cmd::run(resolve, quiet), "resolving")?;
    }
    stages.push(Stage {
        name: "resolve",
        seconds: t.elapsed().as_secs_f64(),
    });
    let lock = Lock::read(&args.lock)?;
    if args.locked {
        // Not read from the indexes in this run: every URL must point at a declared index.
        let mut defs = stack.indexes.definitions.clone();
        args.network.apply_overrides(&mut defs)?;
        crate::fetch::select::check_wheel_origins(&lock, &defs)?;
    }
    let platforms = &lock.tool.comfypak.target.platforms;
    let mut bases = Bases::parse(&args.base)?;
    if bases.is_empty() {
        bases.all = stack.base.clone();
    }

    // 2. Fetch every wheel of every platform at once.
    let t = Instant::now();
    say("fetching wheels");
    let fetch = FetchArgs {
        lock: args.lock.clone(),
        layers: Vec::new(),
        all: true,
        platform: "all".to_string(),
        network: args.network.clone(),
    };
    check_stage(fetch_cmd::run(fetch, quiet), "fetching")?;
    stages.push(Stage {
        name: "fetch",
        seconds: t.elapsed().as_secs_f64(),
    });

    // 3. Install each platform's layers; `pack` reads OUT/layers (one platform) or
    //    OUT/<arch>/layers (several).
    let t = Instant::now();
    for platform in platforms {
        let arch = arch_of(platform);
        let out = if platforms.len() == 1 {
            args.out.clone()
        } else {
            args.out.join(arch)
        };
        say(&format!(
            "installing every layer for {arch} into {}",
            out.display()
        ));
        let install = InstallArgs {
            lock: args.lock.clone(),
            layers: Vec::new(),
            all: true,
            out: out.clone(),
            platform: Some(platform.clone()),
            link_mode: LinkMode::Hardlink,
            allow_overwrite: args.allow_overwrite,
            compile: false,
            python: None,
            network: NetworkArgs {
                offline: true,
                ..args.network.clone()
            },
        };
        check_stage(install_cmd::run(install, quiet), "installing")?;
        let arch_enum = arch.parse().ok();
        if let Some(base) = arch_enum.and_then(|a| bases.for_arch(a)) {
            prepare_platform(&args, &stack, &lock, base, platform, &out, quiet)?;
        } else if !bases.is_empty() {
            anyhow::bail!(
                "no base for {arch}: give one with --base {arch}=PATH, or one --base PATH for every platform"
            );
        }
    }
    if bases.is_empty() {
        say(
            "no --base and no [base] in the stack: the layers get no venv skeleton and no bytecode",
        );
    }
    stages.push(Stage {
        name: "install",
        seconds: t.elapsed().as_secs_f64(),
    });

    // 4. Pack, reporting reuse against the previous build's image.
    let t = Instant::now();
    let image_dir = args.out.join("image");
    let previous_dir = args.out.join("image.previous");
    let _ = std::fs::remove_dir_all(&previous_dir);
    let previous = if image_dir.join("index.json").exists() {
        std::fs::rename(&image_dir, &previous_dir)
            .with_context(|| format!("moving the previous image to {}", previous_dir.display()))?;
        Some(previous_dir.clone())
    } else {
        None
    };
    say(&format!("packing {}", image_dir.display()));
    let pack = PackArgs {
        stack: args.stack.clone(),
        lock: Some(args.lock.clone()),
        out: args.out.clone(),
        layers: Vec::new(),
        platform: "all".to_string(),
        output: Some(image_dir.clone()),
        format: FormatArg::Oci,
        compression: args.compression,
        level: None,
        // A root folder is run, not packed: only an image layout gives the image base layers.
        base: bases.all.clone().filter(|b| b.join("oci-layout").is_file()),
        previous: previous.clone(),
        tag: "latest".to_string(),
        name: None,
        json: false,
    };
    let image = pack_cmd::pack_image(&pack).context("packing")?;
    if let Some(dir) = &previous {
        let _ = std::fs::remove_dir_all(dir);
    }
    stages.push(Stage {
        name: "pack",
        seconds: t.elapsed().as_secs_f64(),
    });

    // Summary.
    let mut out = String::new();
    out.push_str(&format!(
        "\nbuilt {} ({})\n",
        stack.name,
        image_dir.display()
    ));
    for p in &image.platforms {
        out.push_str(&format!(
            "linux/{}  manifest {}\n",
            p.architecture,
            pack_cmd::short(&p.manifest.digest)
        ));
        for l in &p.layers {
            let state = match (&previous, l.from_base) {
                (_, true) => "base".to_string(),
                (None, false) => "new".to_string(),
                (Some(_), false) => match l.reuse {
                    Reuse::Identical => "reused".to_string(),
                    _ => "new".to_string(),
                },
            };
            out.push_str(&format!(
                "  {:<10} {}  {:>12}  {}\n",
                l.name,
                pack_cmd::short(&l.descriptor.digest),
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
        if previous.is_some() {
            "after the previous build"
        } else {
            "to an empty repository"
        },
        human_bytes(image.push_bytes),
        image.push_blobs
    ));
    let times: Vec<String> = stages
        .iter()
        .map(|s| format!("{} {:.1}s", s.name, s.seconds))
        .collect();
    out.push_str(&format!(
        "time: {} (total {:.1}s)\n",
        times.join(", "),
        started.elapsed().as_secs_f64()
    ));
    if !quiet {
        print!("{out}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The venv skeleton and bytecode for one platform's installed layers, from the base's Python.
fn prepare_platform(
    args: &BuildArgs,
    stack: &Stack,
    lock: &Lock,
    base: &std::path::Path,
    platform: &str,
    out: &std::path::Path,
    quiet: bool,
) -> anyhow::Result<()> {
    let target = stack
        .target
        .targets()
        .into_iter()
        .find(|t| t.platform.to_string() == platform)
        .with_context(|| format!("the stack has no platform {platform} (the lock has)"))?;
    let options = RuntimeOptions {
        cache_dir: Cache::default_root(args.network.cache_dir.as_deref()),
        timeout: COMPILE_TIMEOUT,
    };
    let runtime = Runtime::for_platform(
        &Base::from_path(base)?,
        &target,
        &lock.tool.comfypak.target.venv,
        &options,
    )?;
    let layers: Vec<LayerDir> = lock
        .layer_names()
        .iter()
        .map(|name| LayerDir {
            name: name.to_string(),
            dir: out.join("layers").join(name),
        })
        .filter(|l| l.dir.is_dir())
        .collect();
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let prepared = prepare_layers(&runtime, &layers, !args.no_compile, workers)?;
    if !quiet {
        for layer in &prepared {
            let mut what = Vec::new();
            if layer.skeleton {
                what.push(format!(
                    "venv skeleton for {} {}",
                    runtime.interpreter.path, runtime.interpreter.version
                ));
            }
            if let Some(c) = &layer.compiled {
                what.push(format!(
                    "{} .pyc in {:.1}s{}",
                    c.compiled,
                    c.seconds,
                    if c.failed.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " ({} .py did not compile: {})",
                            c.failed.len(),
                            c.failed.join("; ")
                        )
                    }
                ));
            }
            if !what.is_empty() {
                eprintln!(
                    "==> layer {} ({}): {}",
                    layer.name,
                    target.platform.arch,
                    what.join(", ")
                );
            }
        }
    }
    Ok(())
}

fn arch_of(platform: &str) -> &str {
    if platform.ends_with("aarch64") {
        "aarch64"
    } else if platform.ends_with("x86_64") {
        "x86_64"
    } else {
        platform
    }
}

/// A stage's exit code other than success is an error for the build.
fn check_stage(result: anyhow::Result<ExitCode>, what: &str) -> anyhow::Result<()> {
    let code = result.with_context(|| what.to_string())?;
    if code != ExitCode::SUCCESS {
        anyhow::bail!("{what} did not succeed");
    }
    Ok(())
}

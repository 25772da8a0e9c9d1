//! `comfypak install --layer L`: install a layer's locked wheels into
//! `<out>/layers/<layer>/<venv>`, fetching only what the cache lacks. Never resolves; works
//! offline when the cache holds the wheels. Thin: the work lives in `fetch` and `install`.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Instant;

use clap::Args;

use super::fetch_cmd::{client_and_cache, fetch_selected};
use super::net::NetworkArgs;
use crate::fetch::{cached, select_wheels, targets_for, WheelSource};
use crate::install::layout::EnvPaths;
use crate::install::link::LinkMode;
use crate::install::{install_layer, layer_files, InstallOptions, InstallWheel, LayerFiles};
use crate::lock::Lock;
use crate::target::PythonVersion;

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
    let lock = Lock::read(&args.lock)?;
    if args.platform.as_deref() == Some("all") {
        anyhow::bail!(
            "install builds one platform at a time: pass --platform x86_64 or --platform aarch64"
        );
    }
    let targets = targets_for(&lock, args.platform.as_deref())?;
    let Some(target) = targets.first() else {
        anyhow::bail!("the lock names no platform");
    };
    let locked = &lock.tool.comfypak.target;
    let env = EnvPaths {
        venv: locked.venv.clone(),
        python: PythonVersion::from_str(&locked.python)?,
    };

    // Every layer's wheels, for cross-layer conflict checks; the chosen ones get fetched.
    let everything = select_wheels(&lock, None, target)?;
    let mut layer_order: Vec<String> = lock.layer_names().iter().map(|s| s.to_string()).collect();
    for wheel in &everything {
        if !layer_order.contains(&wheel.layer) {
            layer_order.push(wheel.layer.clone());
        }
    }
    let chosen: Vec<String> = if args.all {
        layer_order.clone()
    } else {
        crate::fetch::select::check_layers(&lock, &args.layers)?;
        layer_order
            .iter()
            .filter(|l| args.layers.contains(l))
            .cloned()
            .collect()
    };
    let to_fetch: Vec<_> = everything
        .iter()
        .filter(|w| chosen.contains(&w.layer))
        .cloned()
        .collect();
    let fetched = fetch_selected(&args.network, quiet, &args.lock, &to_fetch)?;
    let (_, cache) = client_and_cache(&args.network)?;

    let mut by_layer: BTreeMap<String, Vec<InstallWheel>> = BTreeMap::new();
    for (selected, cached_wheel) in to_fetch.iter().zip(&fetched) {
        by_layer
            .entry(selected.layer.clone())
            .or_default()
            .push(InstallWheel::new(selected, cached_wheel));
    }
    // Other layers: whatever of them the cache holds.
    let lock_dir = args
        .lock
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let mut skipped: HashMap<String, usize> = HashMap::new();
    for selected in everything.iter().filter(|w| !chosen.contains(&w.layer)) {
        let source = WheelSource::from_selected(selected, lock_dir)?;
        match cached(&cache, &source) {
            Some(hit) => by_layer
                .entry(selected.layer.clone())
                .or_default()
                .push(InstallWheel::new(selected, &hit)),
            None => *skipped.entry(selected.layer.clone()).or_default() += 1,
        }
    }
    // What each layer installs, for the cross-layer conflict check; a layer installed alone
    // is checked against the others only, so its own list is not needed.
    let mut others: Vec<LayerFiles> = Vec::new();
    for (layer, wheels) in &by_layer {
        if chosen.len() == 1 && chosen[0] == *layer {
            continue;
        }
        others.push(layer_files(&cache, layer, wheels, &env)?);
    }
    if !quiet {
        for (layer, count) in &skipped {
            eprintln!(
                "note: {count} wheel{} of layer {layer} not in the cache: conflicts with them are not checked (run `comfypak fetch --all` first to check them)",
                if *count == 1 { "" } else { "s" }
            );
        }
    }

    let options = InstallOptions {
        link_mode: args.link_mode,
        allow_overwrite: args.allow_overwrite,
        compile_with: if args.compile {
            args.python.clone()
        } else {
            None
        },
    };
    for layer in &chosen {
        let layer_started = Instant::now();
        let wheels = by_layer.get(layer).cloned().unwrap_or_default();
        let report = install_layer(&cache, &args.out, &env, layer, &wheels, &others, &options)?;
        if !quiet {
            for conflict in &report.overwritten {
                eprintln!("warning: overwritten: {conflict}");
            }
            let mut how = vec![format!("{} linked", report.linked)];
            if report.reflinked > 0 {
                how.push(format!("{} reflinked", report.reflinked));
            }
            if report.copied > 0 {
                how.push(format!("{} copied", report.copied));
            }
            how.push(format!("{} generated", report.generated));
            if report.compiled > 0 {
                how.push(format!("{} compiled", report.compiled));
            }
            println!(
                "installed layer {layer} for {}: {} package{}, {} files ({}) into {} in {:.2}s",
                target.platform,
                report.packages,
                if report.packages == 1 { "" } else { "s" },
                report.files,
                how.join(", "),
                report.dir.display(),
                layer_started.elapsed().as_secs_f64()
            );
        }
    }
    if !quiet && chosen.len() > 1 {
        println!(
            "installed {} layers in {:.2}s",
            chosen.len(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}

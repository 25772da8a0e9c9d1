//! `comfypak check`: the in-image check as a command. For each platform, the installed layers
//! stacked on the base, in the sandbox: every top-level module imported, every console script
//! run with `--help`/`--version` (not with `--imports-only`). Thin: the work is
//! `runtime::check`; this maps flags, finds the layer folders and prints (text or `--json`).
//! Exit 1 on an unexpected failure.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::build::{installed_layers, pull_bases, BasePins, BuildError, NetworkOptions, Session};
use crate::cache::Cache;
use crate::lock::Lock;
use crate::registry::pull::BaseReference;
use crate::runtime::check::{check, CheckProgress, CheckReport, CheckScope};
use crate::runtime::{Base, Bases, Runtime, RuntimeOptions};
use crate::stack::Stack;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The stack folder (holding stack.toml; its `[check] allow` lists allowed failures).
    #[arg(long, default_value = "pak")]
    pub stack: PathBuf,
    /// The build output: layers in OUT/layers (one platform) or OUT/<arch>/layers.
    #[arg(long, default_value = "build")]
    pub out: PathBuf,
    /// The base (OCI image layout, registry image `docker://HOST/REPO:TAG` or `@sha256:…`, or
    /// root folder; default: the stack's `[base]`); `ARCH=BASE` gives one architecture its
    /// own (repeatable). A registry tag is pulled by the digest the lock records, if any.
    #[arg(long, value_name = "[ARCH=]BASE")]
    pub base: Vec<String>,
    /// Pull a registry base over plain HTTP (allowed only for a registry on this machine).
    #[arg(long)]
    pub insecure_base: bool,
    /// The lock whose recorded base digests registry tags resolve to.
    #[arg(long, default_value = "pylock.toml")]
    pub lock: PathBuf,
    /// x86_64, aarch64 or all (the stack's platforms).
    #[arg(long, default_value = "all")]
    pub platform: String,
    /// Print the reports as JSON.
    #[arg(long)]
    pub json: bool,
    /// Import the modules only, without running the console scripts (each script is an
    /// interpreter start of its own: minutes each under qemu-user for those importing torch).
    #[arg(long)]
    pub imports_only: bool,
    /// Seconds the whole check of one platform may take.
    #[arg(long, default_value_t = 3600)]
    pub timeout: u64,
    /// Cache folder (unpacked bases; default: COMFYPAK_CACHE_DIR, else $XDG_CACHE_HOME/comfypak).
    #[arg(long, env = "COMFYPAK_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
}

pub fn run(args: CheckArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let stack = Stack::load(&args.stack)?;
    let mut bases = Bases::parse(&args.base)?;
    if bases.is_empty() {
        bases.all = stack.base.clone();
    }
    let targets = stack.target.targets();
    let chosen: Vec<_> = targets
        .iter()
        .filter(|t| {
            args.platform == "all"
                || t.platform.arch.as_str() == args.platform
                || t.platform.to_string() == args.platform
        })
        .collect();
    if chosen.is_empty() {
        return Err(BuildError::NoSuchPlatform {
            asked: args.platform.clone(),
            available: targets
                .iter()
                .map(|t| t.platform.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        }
        .into());
    }
    let cache_dir = Cache::default_root(args.cache_dir.as_deref());
    let registry_base = bases
        .all
        .iter()
        .chain(bases.by_arch.values())
        .any(|b| BaseReference::is_reference(&b.to_string_lossy()));
    if registry_base {
        let session = Session::new(NetworkOptions {
            cache_dir: Some(cache_dir.clone()),
            ..NetworkOptions::default()
        })?;
        let locked = if args.lock.is_file() {
            Lock::read(&args.lock)?.tool.comfypak.bases
        } else {
            Vec::new()
        };
        let archs: Vec<_> = chosen.iter().map(|t| t.platform.arch).collect();
        pull_bases(
            &session,
            &mut bases,
            &archs,
            args.insecure_base,
            &locked,
            BasePins::Prefer,
            &args.lock,
        )?;
    }
    let options = RuntimeOptions {
        cache_dir: cache_dir.clone(),
        timeout: Duration::from_secs(args.timeout),
    };
    let scope = if args.imports_only {
        CheckScope::ImportsOnly
    } else {
        CheckScope::ImportsAndScripts
    };
    let mut reports = Vec::new();
    for target in chosen {
        let arch = target.platform.arch.as_str();
        let layers = installed_layers(&stack, &args.out, &target.platform, targets.len())?;
        let base = bases
            .for_arch(target.platform.arch)
            .ok_or_else(|| BuildError::NoBase {
                arch: arch.to_string(),
            })?;
        let base = Base::from_path(base)?;
        let runtime = Runtime::for_platform(&base, target, &stack.target.venv, &options)?;
        let work = cache_dir
            .join("runtime/check")
            .join(format!("{}-{}", std::process::id(), arch));
        let bar = progress_bar(arch, quiet);
        let show = |progress: &CheckProgress| {
            if let Some(bar) = &bar {
                bar.set_message(progress.describe());
            }
        };
        let report = check(&runtime, &layers, &stack.check_allow, &work, scope, &show);
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        let _ = std::fs::remove_dir_all(&work);
        let report = report.with_context(|| format!("checking {arch}"))?;
        if !args.json && !quiet {
            print!("{}", render(&report));
        }
        reports.push(report);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    }
    Ok(if reports.iter().all(CheckReport::passed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A spinner with the check's progress, on a terminal only and not with `--quiet`.
fn progress_bar(arch: &str, quiet: bool) -> Option<ProgressBar> {
    if quiet || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} checking {prefix} {elapsed}: {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_prefix(arch.to_string());
    bar.set_message("starting the image's python");
    bar.enable_steady_tick(Duration::from_millis(120));
    Some(bar)
}

fn render(r: &CheckReport) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "check {} (base {}): python {} at {}, venv {}{}\n",
        r.platform,
        r.base,
        r.python,
        r.executable,
        r.venv,
        if r.timeout_scale > 1.0 {
            format!(
                " (under qemu: per-module and per-script time limits {}x)",
                r.timeout_scale
            )
        } else {
            String::new()
        }
    ));
    out.push_str("distributions:\n");
    for d in &r.distributions {
        out.push_str(&format!(
            "  {} {}: {} modules from {}, {} console scripts{}\n",
            d.name,
            d.version,
            d.modules.len(),
            d.source,
            d.scripts.len(),
            if d.unshipped.is_empty() {
                String::new()
            } else {
                format!(
                    "  (top_level.txt also lists, not shipped: {})",
                    d.unshipped.join(", ")
                )
            }
        ));
    }
    if !r.allowed.is_empty() {
        out.push_str("failed, allowed by [check] allow:\n");
        for a in &r.allowed {
            out.push_str(&format!(
                "  {}: {}\n      allowed because: {}\n",
                a.name, a.error, a.reason
            ));
        }
    }
    if !r.stale_allow.is_empty() {
        out.push_str(&format!(
            "allow-list entries nothing needed on {} (remove them if no platform does): {}\n",
            r.platform,
            r.stale_allow.join(", ")
        ));
    }
    if !r.failures.is_empty() {
        out.push_str("FAILED:\n");
        for f in &r.failures {
            out.push_str(&format!("  {f}\n"));
        }
    }
    let scripts = if r.imports_only {
        format!(
            "console scripts {} (not run: --imports-only)",
            r.distributions
                .iter()
                .map(|d| d.scripts.len())
                .sum::<usize>()
        )
    } else {
        format!(
            "console scripts {} ({} ok in {:.0}s)",
            r.scripts.len(),
            r.scripts_ok(),
            r.script_seconds
        )
    };
    out.push_str(&format!(
        "distributions {}, modules {} ({} imported in {:.0}s, {} allowed failures), {scripts}, unexpected failures {}\n",
        r.distributions.len(),
        r.imports.len(),
        r.imported(),
        r.import_seconds,
        r.allowed.len(),
        r.failures.len()
    ));
    out.push_str(if r.passed() {
        "check: OK\n"
    } else {
        "check: FAILED\n"
    });
    out
}

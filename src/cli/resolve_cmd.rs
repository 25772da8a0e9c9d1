//! `comfypak resolve`: the stack → one `pylock.toml` for every target platform.
//!
//! Parses the flags, loads the stack and the existing lock, calls
//! [`crate::resolve::to_lock::resolve_stack`], and writes, checks (`--locked`) or only
//! summarizes (`--frozen`) the lock. Picks the torch backend (`--torch-backend`, else the
//! stack's `target.torch-backend`; `auto` asks `cuda::doctor` about this host). Prints the
//! per-layer summary as text or `--json`, `warning:` lines on stderr for what the resolution
//! accepted but the user must know (wheel names that break the spec), and shows progress
//! on a terminal. Exit codes: 0 done, 1 `--locked` found the lock stale,
//! 2 an error.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use pep508_rs::PackageName;
use serde_json::json;

use super::net::NetworkArgs;
use crate::diff::human_bytes;
use crate::lock::{Lock, LockError, LockSummary};
use crate::resolve::backend::select_backend;
use crate::resolve::profile::ResolveProfile;
use crate::resolve::to_lock::{resolve_stack, staleness, UpgradeRequest};
use crate::resolve::ResolveProgress;
use crate::stack::Stack;
use crate::target::{Platform, PythonVersion, Target};

#[derive(Debug, Default, Args)]
pub struct ResolveArgs {
    /// The stack folder (holding stack.toml) or the manifest itself.
    #[arg(long, default_value = "pak")]
    pub stack: PathBuf,
    /// The lock to write (and whose versions are kept where they still fit).
    #[arg(short, long, default_value = "pylock.toml")]
    pub output: PathBuf,
    /// Target CPython version (default: the stack's).
    #[arg(long, value_name = "X.Y")]
    pub python: Option<String>,
    /// Target platform tag, repeatable (default: the stack's platforms).
    #[arg(long = "platform", value_name = "PLATFORM")]
    pub platforms: Vec<String>,
    /// Allow pre-releases for every package.
    #[arg(long)]
    pub pre: bool,
    /// Ignore every locked version: take the newest that fit.
    #[arg(long, conflicts_with = "upgrade_package")]
    pub upgrade: bool,
    /// Ignore the locked version of NAME (repeatable).
    #[arg(long = "upgrade-package", value_name = "NAME")]
    pub upgrade_package: Vec<String>,
    /// Resolve and check that the lock is up to date; exit 1 and say what is stale. Writes
    /// nothing.
    #[arg(long, conflicts_with_all = ["frozen", "upgrade", "upgrade_package"])]
    pub locked: bool,
    /// Use the lock as it is: no resolution, only check it against the stack's layers.
    #[arg(long, conflicts_with_all = ["upgrade", "upgrade_package", "pre"])]
    pub frozen: bool,
    /// The torch backend: cu130, cu128, cu126, cpu, or auto (what `comfypak doctor` picks on
    /// this host; cpu without a GPU). The torch family comes from the backend's PyTorch index
    /// and ABI-coupled wheels must match its CUDA. Default: the stack's target.torch-backend.
    #[arg(
        long = "torch-backend",
        value_name = "BACKEND",
        conflicts_with = "frozen"
    )]
    pub torch_backend: Option<String>,
    /// Print a JSON document instead of text.
    #[arg(long)]
    pub json: bool,
    /// Print to stderr where each target's resolution spent its time: requests and bytes per
    /// kind, the largest pages, METADATA reads of very large wheels, the solver's waits, and
    /// the longest chain of dependent fetches.
    #[arg(long)]
    pub profile: bool,
    #[command(flatten)]
    pub network: NetworkArgs,
}

pub fn run(args: ResolveArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let mut stack = Stack::load(&args.stack)?;
    args.network
        .apply_overrides(&mut stack.indexes.definitions)?;
    let stack_layers: Vec<&str> = stack.layers.iter().map(|l| l.name.as_str()).collect();

    if args.frozen {
        let lock = Lock::read(&args.output)?;
        lock.check_stack_layers(&args.output, &stack_layers)?;
        let summary = LockSummary::of(&lock)
            .with_context(|| format!("summarizing {}", args.output.display()))?;
        report(&args, quiet, "frozen", &summary, &[])?;
        return Ok(ExitCode::SUCCESS);
    }

    let (setting, origin) = match &args.torch_backend {
        Some(flag) => (flag.clone(), "--torch-backend".to_string()),
        None => (
            stack.target.torch_backend.clone(),
            format!("{}: target.torch-backend", stack.manifest.display()),
        ),
    };
    let selection = select_backend(&setting, &stack.target).with_context(|| origin.clone())?;
    if setting.trim().eq_ignore_ascii_case("auto") && !quiet {
        eprintln!("{} ({origin})", selection.why);
    }
    stack.target.torch_backend = selection.backend.name().to_string();

    let targets = targets(&args, &stack)?;
    let existing = match Lock::read(&args.output) {
        Ok(lock) => Some(lock),
        Err(LockError::Missing { .. }) if !args.locked => None,
        Err(LockError::Missing { path }) => bail!(
            "--locked: {} does not exist, so there is nothing to check\n  = help: run `comfypak resolve` once to create it",
            path.display()
        ),
        Err(e) => return Err(e.into()),
    };
    let mut upgrade = UpgradeRequest {
        all: args.upgrade,
        packages: BTreeSet::new(),
    };
    for name in &args.upgrade_package {
        let parsed = PackageName::new(name.clone())
            .with_context(|| format!("--upgrade-package {name}: not a valid package name"))?;
        upgrade.packages.insert(parsed);
    }

    let progress = Progress::new(!quiet && std::io::stderr().is_terminal(), targets.len());
    let client = args.network.client()?;
    let runtime = super::net::runtime()?;
    let outcome = runtime.block_on(resolve_stack(
        &stack,
        &targets,
        &client,
        args.pre,
        &upgrade,
        existing.as_ref(),
        &progress,
    ));
    progress.finish();
    for warning in progress.warnings() {
        eprintln!("warning: {warning}");
    }
    if args.profile {
        for (target, profile) in progress.profiles() {
            eprintln!("profile of the resolution for {target}:\n{profile}");
        }
    }
    let lock = outcome?;
    let summary = LockSummary::of(&lock).context("summarizing the new lock")?;

    if args.locked {
        let Some(existing) = existing else {
            bail!("--locked needs an existing lock");
        };
        let stale = staleness(&existing, &lock);
        if stale.is_empty() {
            report(&args, quiet, "up-to-date", &summary, &[])?;
            return Ok(ExitCode::SUCCESS);
        }
        report(&args, quiet, "stale", &summary, &stale)?;
        return Ok(ExitCode::from(1));
    }

    let unchanged = existing
        .as_ref()
        .is_some_and(|old| old.to_toml_string() == lock.to_toml_string());
    if !unchanged {
        lock.write(&args.output)?;
    }
    report(
        &args,
        quiet,
        if unchanged { "unchanged" } else { "written" },
        &summary,
        &[],
    )?;
    Ok(ExitCode::SUCCESS)
}

/// The targets to resolve for: the stack's, or `--python` / `--platform`.
fn targets(args: &ResolveArgs, stack: &Stack) -> anyhow::Result<Vec<Target>> {
    let python: PythonVersion = match &args.python {
        Some(text) => text.parse().with_context(|| format!("--python {text}"))?,
        None => stack.target.python,
    };
    let platforms: Vec<Platform> = if args.platforms.is_empty() {
        stack.target.platforms.clone()
    } else {
        let mut platforms = Vec::new();
        for text in &args.platforms {
            let platform: Platform = text.parse().with_context(|| format!("--platform {text}"))?;
            if !platforms.contains(&platform) {
                platforms.push(platform);
            }
        }
        platforms
    };
    platforms
        .into_iter()
        .map(|platform| {
            Target::try_new(python, stack.target.free_threaded, platform)
                .map_err(anyhow::Error::from)
        })
        .collect()
}

/// Prints the outcome: the summary table, or the JSON document.
fn report(
    args: &ResolveArgs,
    quiet: bool,
    status: &str,
    summary: &LockSummary,
    stale: &[String],
) -> anyhow::Result<()> {
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json_document(&args.output, status, summary, stale))?
        );
        return Ok(());
    }
    if status == "stale" {
        // Rendered as errors are (cargo-style), though the exit code is 1: a difference.
        eprintln!(
            "error: {} is stale: it does not match what the stack resolves to now\n",
            args.output.display()
        );
        for line in stale {
            eprintln!("  {line}");
        }
        eprintln!("\nhelp: run `comfypak resolve` (without --locked) to update it");
    }
    if quiet {
        return Ok(());
    }
    let headline = match status {
        "written" => format!("wrote {}", args.output.display()),
        "unchanged" => format!("{} is up to date (unchanged)", args.output.display()),
        "up-to-date" => format!("{} is up to date", args.output.display()),
        "frozen" => format!("{} (frozen, not re-resolved)", args.output.display()),
        _ => format!("{} would change", args.output.display()),
    };
    println!("{headline}");
    print!("{}", summary_text(summary));
    Ok(())
}

/// The per-layer table: packages and wheel bytes per platform, most stable layer first.
pub fn summary_text(summary: &LockSummary) -> String {
    let mut header = vec!["layer".to_string(), "packages".to_string()];
    header.extend(summary.platforms.iter().cloned());
    let mut rows = vec![header];
    for layer in &summary.layers {
        let mut row = vec![layer.name.clone(), layer.packages.to_string()];
        row.extend(
            summary
                .platforms
                .iter()
                .map(|p| human_bytes(layer.bytes.get(p).copied().unwrap_or(0))),
        );
        rows.push(row);
    }
    let mut total = vec!["total".to_string(), summary.packages.to_string()];
    total.extend(
        summary
            .platforms
            .iter()
            .map(|p| human_bytes(summary.bytes.get(p).copied().unwrap_or(0))),
    );
    rows.push(total);
    let columns = rows.first().map(Vec::len).unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = format!(
        "{} for Python {} on {}\n",
        summary.stack,
        summary.python,
        summary.platforms.join(", ")
    );
    for row in &rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c == 0 {
                line.push_str(&format!("{cell:<width$}", width = widths[c]));
            } else {
                line.push_str(&format!("  {cell:>width$}", width = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if summary.unknown_sizes > 0 {
        out.push_str(&format!(
            "({} wheels have no size on their index and count as 0 B)\n",
            summary.unknown_sizes
        ));
    }
    out
}

/// The `--json` document: stable keys, for scripts.
pub fn json_document(
    lock: &Path,
    status: &str,
    summary: &LockSummary,
    stale: &[String],
) -> serde_json::Value {
    json!({
        "lock": lock.display().to_string(),
        "status": status,
        "stale": stale,
        "summary": summary,
    })
}

/// Packages discovered / metadata fetched, on one progress line (hidden off a terminal).
struct Progress {
    bar: Option<ProgressBar>,
    discovered: AtomicU64,
    fetched: AtomicU64,
    /// Distinct warnings, first seen first (printed once the bar is gone).
    warnings: Mutex<Vec<String>>,
    /// Each target's profile, in the order the solvers finished.
    profiles: Mutex<Vec<(String, ResolveProfile)>>,
}

impl Progress {
    fn new(visible: bool, platforms: usize) -> Progress {
        let bar = visible.then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} resolving {prefix}: {pos}/{len} metadata fetched ({msg} discovered) {elapsed}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(if platforms == 1 {
                "1 platform".to_string()
            } else {
                format!("{platforms} platforms")
            });
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Progress {
            bar,
            discovered: AtomicU64::new(0),
            fetched: AtomicU64::new(0),
            warnings: Mutex::new(Vec::new()),
            profiles: Mutex::new(Vec::new()),
        }
    }

    fn profiles(&self) -> Vec<(String, ResolveProfile)> {
        self.profiles
            .lock()
            .map(|p| p.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    fn warnings(&self) -> Vec<String> {
        self.warnings
            .lock()
            .map(|w| w.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl ResolveProgress for Progress {
    fn discovered(&self, _name: &PackageName) {
        let n = self.discovered.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(bar) = &self.bar {
            bar.set_length(n);
            bar.set_message(n.to_string());
        }
    }

    fn metadata_fetched(&self, _name: &PackageName) {
        let n = self.fetched.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(bar) = &self.bar {
            bar.set_position(n);
        }
    }

    fn profile(&self, target: &Target, profile: &ResolveProfile) {
        self.profiles
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push((target.to_string(), profile.clone()));
    }

    fn warning(&self, message: &str) {
        let mut warnings = self
            .warnings
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !warnings.iter().any(|w| w == message) {
            warnings.push(message.to_string());
        }
    }
}

//! `comfypak resolve`: the stack → one `pylock.toml` for every target platform.
//!
//! Maps the flags to a [`ResolveRequest`] (`--locked`: fail when the lock is stale;
//! `--frozen`: use it as it is), runs [`build::resolve`] and prints the per-layer summary as
//! text or `--json`. Exit codes: 0 done, 1 `--locked` found the lock stale, 2 an error.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use pep508_rs::PackageName;
use serde_json::json;

use super::net::NetworkArgs;
use super::progress::CliProgress;
use crate::build::{self, LockMode, ResolveReport, ResolveRequest, ResolveStatus};
use crate::diff::human_bytes;
use crate::lock::LockSummary;
use crate::pak::{BinarySelector, FormatOption};
use crate::resolve::to_lock::UpgradeRequest;
use crate::target::{Platform, PythonVersion};

#[derive(Debug, Args)]
pub struct ResolveArgs {
    /// The stack folder (holding stack.toml) or the manifest itself.
    #[arg(long, default_value = "pak")]
    pub stack: PathBuf,
    /// Leave the named layer out (repeatable): as though its pak files were under
    /// `[excluded]`, like uv's `--no-group` (e.g. `--no-layer nodes` where no base with a
    /// compiler is at hand for the layer's source builds).
    #[arg(long = "no-layer", value_name = "LAYER")]
    pub no_layer: Vec<String>,
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
    /// The base whose Python builds the source requirements (sdists, folders, git) and the
    /// index sdists the resolution needs: an OCI image layout, a root folder or a registry image
    /// (`docker://…`, pulled when a build needs it; default: the stack's `[base]`); `ARCH=BASE`
    /// gives one architecture its own (repeatable).
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
    #[command(flatten)]
    pub formats: FormatArgs,
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

/// `--no-binary` / `--only-binary`, as pip takes them.
#[derive(Debug, Clone, Default, Args)]
pub struct FormatArgs {
    /// Build these projects from their sdists, never from wheels: `:all:`, `:none:` or
    /// comma-separated names, as pip's option (repeatable; after the stack's [build] and the
    /// pak files' options). Building needs a base (`[base]` or --base).
    #[arg(long = "no-binary", value_name = "NAMES")]
    pub no_binary: Vec<String>,
    /// Never build these projects from sdists: `:all:`, `:none:` or comma-separated names.
    #[arg(long = "only-binary", value_name = "NAMES")]
    pub only_binary: Vec<String>,
}

impl FormatArgs {
    /// The options in order: every --no-binary, then every --only-binary.
    pub fn options(&self) -> anyhow::Result<Vec<FormatOption>> {
        let mut out = Vec::new();
        for (flag, values) in [
            ("--no-binary", &self.no_binary),
            ("--only-binary", &self.only_binary),
        ] {
            for value in values {
                let selector = BinarySelector::parse_value(value).map_err(|item| {
                    anyhow::anyhow!(
                        "{flag} {value}: `{item}` is not a project name, `:all:` or `:none:`"
                    )
                })?;
                out.push(if flag == "--no-binary" {
                    FormatOption::NoBinary(selector)
                } else {
                    FormatOption::OnlyBinary(selector)
                });
            }
        }
        Ok(out)
    }
}

pub fn run(args: ResolveArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let python: Option<PythonVersion> = match &args.python {
        Some(text) => Some(text.parse().with_context(|| format!("--python {text}"))?),
        None => None,
    };
    let mut platforms: Vec<Platform> = Vec::new();
    for text in &args.platforms {
        platforms.push(text.parse().with_context(|| format!("--platform {text}"))?);
    }
    let mut upgrade = UpgradeRequest {
        all: args.upgrade,
        packages: BTreeSet::new(),
    };
    for name in &args.upgrade_package {
        let parsed = PackageName::new(name.clone())
            .with_context(|| format!("--upgrade-package {name}: not a valid package name"))?;
        upgrade.packages.insert(parsed);
    }
    let request = ResolveRequest {
        stack: args.stack.clone(),
        no_layers: args.no_layer.clone(),
        lock: args.output.clone(),
        python,
        platforms,
        prerelease: args.pre,
        upgrade,
        mode: if args.frozen {
            LockMode::Frozen
        } else if args.locked {
            LockMode::Locked
        } else {
            LockMode::Write
        },
        torch_backend: args.torch_backend.clone(),
        bases: crate::runtime::Bases::parse(&args.base)?,
        build_bases: crate::runtime::Bases::parse(&args.build_base)?,
        insecure_base: args.insecure_base,
        formats: args.formats.options()?,
    };
    let session = args.network.session()?;
    let report = build::resolve(
        &session,
        &request,
        &CliProgress::new(quiet).with_profiles(args.profile),
    )?;
    print_report(&args, quiet, &report)?;
    Ok(match report.status {
        ResolveStatus::Stale(_) => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    })
}

/// Prints the outcome: the summary table, or the JSON document.
fn print_report(args: &ResolveArgs, quiet: bool, report: &ResolveReport) -> anyhow::Result<()> {
    let stale: &[String] = match &report.status {
        ResolveStatus::Stale(lines) => lines,
        _ => &[],
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json_document(
                &report.path,
                report.status.as_str(),
                &report.summary,
                stale
            ))?
        );
        return Ok(());
    }
    if !stale.is_empty() {
        // Rendered as errors are (cargo-style), though the exit code is 1: a difference.
        eprintln!(
            "error: {} is stale: it does not match what the stack resolves to now\n",
            report.path.display()
        );
        for line in stale {
            eprintln!("  {line}");
        }
        eprintln!("\nhelp: run `comfypak resolve` (without --locked) to update it");
    }
    if quiet {
        return Ok(());
    }
    println!("{}", headline(report));
    print!("{}", summary_text(&report.summary));
    Ok(())
}

/// The first line of a resolve report: what happened to the lock.
pub fn headline(report: &ResolveReport) -> String {
    let path = report.path.display();
    match report.status {
        ResolveStatus::Written => format!("wrote {path}"),
        ResolveStatus::Unchanged => format!("{path} is up to date (unchanged)"),
        ResolveStatus::UpToDate => format!("{path} is up to date"),
        ResolveStatus::Frozen => format!("{path} (frozen, not re-resolved)"),
        ResolveStatus::Stale(_) => format!("{path} would change"),
    }
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

//! `comfypak index show`: what an index offers for one package, and which files fit the target.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;

use anyhow::Context;
use clap::{Args, Subcommand};
use pep440_rs::{Version, VersionSpecifiers};
use pep508_rs::PackageName;
use serde_json::json;

use super::net::NetworkArgs;
use crate::filename::{DistFilename, WheelFilename};
use crate::index::page::DistFile;
use crate::stack::Stack;
use crate::target::{Platform, PythonVersion, Target};

#[derive(Debug, Args)]
pub struct IndexArgs {
    #[command(subcommand)]
    pub command: IndexCommand,
}

#[derive(Debug, Subcommand)]
pub enum IndexCommand {
    /// Show the versions and files an index offers for a package, marking which files fit
    /// the target and why the others do not.
    Show(ShowArgs),
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The package name.
    pub package: String,
    /// The stack folder whose index definitions and pins to use.
    #[arg(long, default_value = "pak")]
    pub stack: PathBuf,
    /// Ask this index (a name from indexes/*.toml) instead of following the stack's pins
    /// and default order.
    #[arg(long = "from", value_name = "INDEX")]
    pub from: Option<String>,
    /// Target interpreter version (default: the stack's).
    #[arg(long)]
    pub python: Option<String>,
    /// Target the free-threaded build.
    #[arg(long)]
    pub free_threaded: bool,
    /// Target platform tag (default: the stack's first platform).
    #[arg(long)]
    pub platform: Option<String>,
    /// Print a JSON document instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub network: NetworkArgs,
}

pub fn run(args: IndexArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        IndexCommand::Show(show) => run_show(show),
    }
}

/// Whether one file fits the target, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fit {
    /// A wheel the target accepts; lower priority is better.
    Fits {
        priority: usize,
    },
    No(String),
}

/// Judges `file` for `target`.
pub fn judge(file: &DistFile, target: &Target, tags: &crate::target::CompatibleTags) -> Fit {
    if let Some(spec) = &file.requires_python {
        if let Ok(specifiers) = VersionSpecifiers::from_str(spec) {
            let full = Version::from_str(&format!(
                "{}.{}.0",
                target.python.major, target.python.minor
            ));
            if let Ok(full) = full {
                if !specifiers.contains(&full) {
                    return Fit::No(format!("requires-python {spec} excludes {}", target.python));
                }
            }
        }
    }
    if let Some(reason) = yank_reason(file) {
        return Fit::No(reason);
    }
    match DistFilename::parse(&file.filename, None) {
        Ok(DistFilename::Sdist(_)) => Fit::No("source distribution: needs a build".to_string()),
        Ok(DistFilename::Wheel(wheel)) => match wheel.best_priority(tags) {
            Some(priority) => Fit::Fits { priority },
            None => Fit::No(explain_tags(&wheel, target, tags)),
        },
        Err(e) => Fit::No(e.to_string()),
    }
}

fn yank_reason(file: &DistFile) -> Option<String> {
    match &file.yanked {
        crate::index::page::Yanked::No => None,
        crate::index::page::Yanked::Yes { reason } => Some(match reason {
            Some(r) if !r.is_empty() => format!("yanked: {r}"),
            _ => "yanked".to_string(),
        }),
    }
}

/// Which part of a wheel's tags the target refuses.
/// `tags` are the target's (computed once by the caller: they are hundreds long).
pub fn explain_tags(
    wheel: &WheelFilename,
    target: &Target,
    tags: &crate::target::CompatibleTags,
) -> String {
    let platform_ok = wheel
        .platform
        .iter()
        .any(|p| p == "any" || tags.iter().any(|t| t.platform == *p));
    if !platform_ok {
        return format!(
            "platform {} does not run on {}",
            wheel.platform.join("."),
            target.platform
        );
    }
    let interpreter_ok = tags.iter().any(|t| wheel.python.contains(&t.interpreter));
    if !interpreter_ok {
        return format!(
            "built for {} (target is {})",
            wheel.python.join("."),
            target.interpreter_tag()
        );
    }
    format!(
        "ABI {} does not load in {} (target ABI {})",
        wheel.abi.join("."),
        target.interpreter_tag(),
        target.abi_tag()
    )
}

fn run_show(args: ShowArgs) -> anyhow::Result<ExitCode> {
    let mut stack = Stack::load(&args.stack)?;
    args.network
        .options()
        .apply_overrides(&mut stack.indexes.definitions)?;
    for warning in stack.indexes.definitions.plain_http_warnings() {
        eprintln!("warning: {warning}");
    }
    let python: PythonVersion = match &args.python {
        Some(p) => p.parse().with_context(|| format!("--python {p}"))?,
        None => stack.target.python,
    };
    let platform: Platform = match &args.platform {
        Some(p) => p.parse().with_context(|| format!("--platform {p}"))?,
        None => stack.target.platforms[0],
    };
    let target = Target::new(
        python,
        args.free_threaded || (args.python.is_none() && stack.target.free_threaded),
        platform,
    );
    let name = PackageName::new(args.package.clone())
        .with_context(|| format!("`{}` is not a valid package name", args.package))?;
    let session = args.network.session()?;
    let client = session.index_client();
    let (index, files) = session.block_on(async {
        match &args.from {
            Some(index) => {
                let def = stack
                    .indexes
                    .definitions
                    .require(index, "--from")
                    .map_err(anyhow::Error::from)?;
                let files = client
                    .project_files(def, &name)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("index `{index}` does not have `{name}`"))?;
                Ok::<_, anyhow::Error>((index.clone(), files))
            }
            None => {
                let found = client.candidates(&stack.indexes, &name).await?;
                Ok((found.index, found.files))
            }
        }
    })?;

    let tags = target.tags();
    let mut rows: Vec<(Option<Version>, &DistFile, Fit)> = files
        .iter()
        .map(|f| {
            let version = DistFilename::parse(&f.filename, Some(&name))
                .ok()
                .map(|d| d.version().clone());
            (version, f, judge(f, &target, &tags))
        })
        .collect();
    rows.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.filename.cmp(&b.1.filename)));

    if args.json {
        let value = json!({
            "package": name.to_string(),
            "index": index,
            "target": target,
            "files": rows.iter().map(|(version, f, fit)| json!({
                "filename": f.filename,
                "version": version.as_ref().map(|v| v.to_string()),
                "url": crate::http::redact(&f.url),
                "sha256": f.hashes.sha256,
                "size": f.size,
                "requires_python": f.requires_python,
                "yanked": !matches!(f.yanked, crate::index::page::Yanked::No),
                "fits": matches!(fit, Fit::Fits { .. }),
                "priority": match fit { Fit::Fits { priority } => Some(*priority), Fit::No(_) => None },
                "why_not": match fit { Fit::No(why) => Some(why.clone()), Fit::Fits { .. } => None },
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = String::new();
    let fitting = rows
        .iter()
        .filter(|r| matches!(r.2, Fit::Fits { .. }))
        .count();
    let _ = writeln!(
        out,
        "{name} from index `{index}`: {} files, {fitting} fit {} ({})",
        rows.len(),
        target,
        target.abi_tag()
    );
    let mut last: Option<&Option<Version>> = None;
    for (version, file, fit) in &rows {
        if last != Some(version) {
            let _ = writeln!(
                out,
                "{}",
                version
                    .as_ref()
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "(unparsed)".to_string())
            );
            last = Some(version);
        }
        match fit {
            Fit::Fits { priority } => {
                let _ = writeln!(out, "  + {}  (tag priority {priority})", file.filename);
            }
            Fit::No(why) => {
                let _ = writeln!(out, "  - {}  ({why})", file.filename);
            }
        }
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

//! `comfypak cache info` and `comfypak cache prune`: maps the flags to [`crate::prune`] and
//! prints its reports.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::cache::Cache;
use crate::prune::{self, Area, AreaSize, PruneOptions};
use crate::units::human_bytes;

#[derive(Debug, Args)]
pub struct CacheArgs {
    /// Cache folder (default: COMFYPAK_CACHE_DIR, else $XDG_CACHE_HOME/comfypak).
    #[arg(long, env = "COMFYPAK_CACHE_DIR", global = true)]
    pub cache_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: CacheCommand,
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// How much each part of the cache holds: wheels, unpacked wheels, built wheels,
    /// bytecode, the layer cache (entries and blobs), the rest.
    Info,
    /// Remove the least recently used entries: wheels, unpacked and built wheels, bytecode,
    /// layer cache entries and the blobs only they named. The newest layer cache entry of each
    /// platform and stack layer stays unless --include-newest. Refused while another comfypak
    /// process uses the cache.
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove the least recently used entries until the cache is at most this big (e.g.
    /// 50GB, 500MiB; 0 removes everything it may).
    #[arg(long, value_name = "SIZE", value_parser = size_arg)]
    pub max_size: Option<u64>,
    /// Remove entries not used for this long (e.g. 720h, 90m).
    #[arg(long, value_name = "DURATION", value_parser = crate::units::parse_duration)]
    pub older_than: Option<std::time::Duration>,
    /// The newest layer cache entry of each platform and stack layer may be removed too.
    #[arg(long)]
    pub include_newest: bool,
    /// Say what would be removed; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
}

fn size_arg(text: &str) -> Result<u64, String> {
    if text.trim() == "0" {
        return Ok(0);
    }
    crate::units::parse_size_or_off(text)?
        .ok_or_else(|| format!("`{text}` is not a size: write e.g. 50GB or 500MiB"))
}

pub fn run(args: CacheArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let root = Cache::default_root(args.cache_dir.as_deref());
    match args.command {
        CacheCommand::Info => {
            let info = prune::info(&root)?;
            println!("cache {}", info.root.display());
            for (area, size) in &info.areas {
                let what = match area {
                    Area::Layers => format!(
                        "{} stack layer entries, {} tar entries, {} blobs",
                        size.entries - info.tar_entries,
                        info.tar_entries,
                        info.blobs.entries
                    ),
                    _ => entries(*area, size),
                };
                println!(
                    "  {:<16} {:>10}  {what}",
                    area.name(),
                    human_bytes(size.bytes)
                );
            }
            println!(
                "  {:<16} {:>10}  (prune keeps the {} newest layer cache entries unless --include-newest)",
                "total",
                human_bytes(info.total()),
                info.newest_layer_entries
            );
        }
        CacheCommand::Prune(p) => {
            let report = prune::prune(
                &root,
                &PruneOptions {
                    max_size: p.max_size,
                    older_than: p.older_than,
                    include_newest: p.include_newest,
                    dry_run: p.dry_run,
                },
            )?;
            if !quiet {
                let verb = if p.dry_run { "would remove" } else { "removed" };
                let mut parts: Vec<String> = report
                    .removed
                    .iter()
                    .map(|(area, size)| {
                        format!("{} ({})", entries(*area, size), human_bytes(size.bytes))
                    })
                    .collect();
                if report.blobs_removed.entries > 0 {
                    parts.push(format!(
                        "{} layer blobs ({})",
                        report.blobs_removed.entries,
                        human_bytes(report.blobs_removed.bytes)
                    ));
                }
                println!(
                    "{verb} {}; cache {} -> {}{}",
                    if parts.is_empty() {
                        "nothing".to_string()
                    } else {
                        parts.join(", ")
                    },
                    human_bytes(report.before),
                    human_bytes(report.after),
                    if report.kept_newest > 0 {
                        format!(
                            " (kept the {} newest layer cache entries)",
                            report.kept_newest
                        )
                    } else {
                        String::new()
                    }
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn entries(area: Area, size: &AreaSize) -> String {
    match area {
        Area::Other => {
            "index pages, METADATA, runtime roots, registry bases, git, temp".to_string()
        }
        Area::Layers => format!("{} layer entries", size.entries),
        other => format!("{} {}", size.entries, other.name()),
    }
}

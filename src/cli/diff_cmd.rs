//! `comfypak diff OLD NEW`: what changed between two locks, per layer, for people and for CI.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};

use super::pack_cmd::{split_threshold_arg, SplitThreshold};
use crate::diff::{diff, image_layers, ImageLayerDiff};
use crate::lock::Lock;
use crate::units::human_bytes;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiffFormat {
    Text,
    Markdown,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The old lock: a path, or `git:REV:PATH` to read it from a git revision
    /// (PATH from the repository root, or `./PATH` from the current directory).
    pub old: String,
    /// The new lock, in the same forms.
    pub new: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = DiffFormat::Text)]
    pub format: DiffFormat,
    /// Exit 1 only when this layer, or a more stable one, changes content.
    #[arg(long, value_name = "LAYER")]
    pub fail_on_layer: Option<String>,
    /// Colour the text output.
    #[arg(long, value_enum, default_value_t = Color::Auto)]
    pub color: Color,
    /// Report per image layer as `pack` cuts them: packages whose largest wheel has at least
    /// this size have image layers of their own (pass the stack's `[pack] split-threshold`
    /// when it sets one; `off`: one image layer per stack layer).
    #[arg(long, value_name = "SIZE", default_value = "32MiB", value_parser = split_threshold_arg)]
    pub split_threshold: SplitThreshold,
}

pub fn run(args: DiffArgs) -> anyhow::Result<ExitCode> {
    let old = read_lock(&args.old)?;
    let new = read_lock(&args.new)?;
    let result = diff(&old, &new);
    let images = image_layers(&old, &new, args.split_threshold.0);
    let split = images.iter().any(|l| l.name.contains('/'));
    let failing = match &args.fail_on_layer {
        Some(layer) => match result.changes_at_or_below(layer) {
            Some(changed) => changed,
            None => bail!(
                "--fail-on-layer {layer}: no such layer; the locks have {}",
                result
                    .layers
                    .iter()
                    .map(|l| l.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
        None => result.has_changes(),
    };
    match args.format {
        DiffFormat::Text => {
            let color = match args.color {
                Color::Always => true,
                Color::Never => false,
                Color::Auto => {
                    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
                }
            };
            print!("{}", result.to_text(color));
            if split {
                print!("{}", image_layers_text(&images));
            }
        }
        DiffFormat::Markdown => {
            print!("{}", result.to_markdown());
            if split {
                print!("{}", image_layers_markdown(&images));
            }
        }
        DiffFormat::Json => {
            let mut json = result.to_json();
            if let Some(object) = json.as_object_mut() {
                object.insert("image_layers".to_string(), serde_json::to_value(&images)?);
            }
            println!("{}", serde_json::to_string_pretty(&json)?)
        }
    }
    Ok(if failing {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The image layers (distributions in layers of their own, then each stack layer's rest):
/// which change, with their wheel bytes.
fn image_layers_text(layers: &[ImageLayerDiff]) -> String {
    let width = layers.iter().map(|l| l.name.len()).max().unwrap_or(0);
    let mut out = String::from("\nimage layers:\n");
    for l in layers {
        out.push_str(&format!(
            "  {:<width$}  {:<9}  {}\n",
            l.name,
            if l.changed { "changed" } else { "unchanged" },
            bytes_change(l)
        ));
    }
    let changed: u64 = layers
        .iter()
        .filter(|l| l.changed)
        .map(|l| l.new_bytes)
        .sum();
    out.push_str(&format!(
        "{} of {} image layers change ({} of wheels)\n",
        layers.iter().filter(|l| l.changed).count(),
        layers.len(),
        human_bytes(changed)
    ));
    out
}

fn image_layers_markdown(layers: &[ImageLayerDiff]) -> String {
    let mut out = String::from("\n| image layer | | wheels |\n| --- | --- | --- |\n");
    for l in layers {
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            l.name,
            if l.changed { "changed" } else { "unchanged" },
            bytes_change(l)
        ));
    }
    out
}

fn bytes_change(l: &ImageLayerDiff) -> String {
    if l.old_bytes == l.new_bytes {
        human_bytes(l.new_bytes)
    } else {
        format!(
            "{} -> {}",
            human_bytes(l.old_bytes),
            human_bytes(l.new_bytes)
        )
    }
}

/// Reads a lock from a path or from `git:REV:PATH`.
pub fn read_lock(spec: &str) -> anyhow::Result<Lock> {
    let Some(rest) = spec.strip_prefix("git:") else {
        return Ok(Lock::read(Path::new(spec))?);
    };
    let Some((rev, path)) = rest.split_once(':') else {
        bail!("`{spec}` is not git:REV:PATH (e.g. git:origin/main:pylock.toml)");
    };
    if rev.is_empty() || path.is_empty() {
        bail!("`{spec}` is not git:REV:PATH (e.g. git:origin/main:pylock.toml)");
    }
    let output = std::process::Command::new("git")
        .args(["show", &format!("{rev}:{path}")])
        .output()
        .context("cannot run git; is it installed?")?;
    if !output.status.success() {
        bail!(
            "cannot read {path} at git revision {rev}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let text =
        String::from_utf8(output.stdout).with_context(|| format!("{spec} is not UTF-8 text"))?;
    Ok(Lock::from_toml_str(&text, &PathBuf::from(spec))?)
}

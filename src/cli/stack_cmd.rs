//! `comfypak stack`: load a stack and show what it holds.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use serde_json::{json, Value};

use crate::pak::PakFile;
use crate::stack::Stack;

#[derive(Debug, Args)]
pub struct StackArgs {
    /// The stack folder (holding stack.toml) or the manifest itself.
    #[arg(long, default_value = "pak")]
    pub stack: PathBuf,
    /// Leave the named layer out (repeatable): as though its pak files were under
    /// `[excluded]`, like uv's `--no-group` (e.g. `--no-layer nodes` where no base with a
    /// compiler is at hand for the layer's source builds).
    #[arg(long = "no-layer", value_name = "LAYER")]
    pub no_layer: Vec<String>,
    /// Print a JSON document instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: StackArgs) -> anyhow::Result<ExitCode> {
    let stack = Stack::load_without(&args.stack, &args.no_layer)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&stack_json(&stack))?);
    } else {
        print!("{}", stack_text(&stack));
    }
    Ok(ExitCode::SUCCESS)
}

/// The `--json` document: stable keys, for scripts.
pub fn stack_json(stack: &Stack) -> Value {
    let base = stack.manifest.parent().unwrap_or(Path::new("."));
    let pak_json = |pak: &PakFile| {
        json!({
            "file": display_rel(base, &pak.path),
            "requirements": pak.requirements,
            "constraints": pak.constraints,
            "options": pak.options,
        })
    };
    json!({
        "name": stack.name,
        "manifest": stack.manifest.display().to_string(),
        "target": {
            "python": stack.target.python.to_string(),
            "free_threaded": stack.target.free_threaded,
            "platforms": stack.target.platforms.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            "venv": stack.target.venv,
            "site_packages": stack.target.site_packages(),
            "torch_backend": stack.target.torch_backend,
            "targets": stack.target.targets(),
        },
        "indexes": {
            "default": stack.indexes.default,
            "pins": stack.indexes.pins,
            "definitions": stack.indexes.definitions,
        },
        "layers": stack.layers.iter().map(|layer| json!({
            "name": layer.name,
            "rank": layer.rank,
            "paks": layer.paks.iter().map(pak_json).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "excluded": stack.excluded.iter().map(|e| {
            let mut v = pak_json(&e.pak);
            v["reason"] = json!(e.reason);
            v
        }).collect::<Vec<_>>(),
    })
}

/// The human summary.
pub fn stack_text(stack: &Stack) -> String {
    let base = stack.manifest.parent().unwrap_or(Path::new("."));
    let t = &stack.target;
    let mut out = String::new();
    let _ = writeln!(out, "stack {} ({})", stack.name, stack.manifest.display());
    let _ = writeln!(
        out,
        "target: CPython {}{} ({}), venv {}, torch backend {}",
        t.python,
        if t.free_threaded {
            " free-threaded"
        } else {
            ""
        },
        t.targets().first().map(|x| x.abi_tag()).unwrap_or_default(),
        t.venv,
        t.torch_backend
    );
    let platforms: Vec<String> = t.platforms.iter().map(|p| p.to_string()).collect();
    let _ = writeln!(out, "platforms: {}", platforms.join(", "));
    let _ = writeln!(out, "indexes:");
    for name in &stack.indexes.default {
        if let Some(def) = stack.indexes.definitions.get(name) {
            let _ = writeln!(out, "  default  {name} ({}, {})", def.kind, def.url);
        }
    }
    for pin in &stack.indexes.pins {
        if let Some(def) = stack.indexes.definitions.get(&pin.index) {
            let _ = writeln!(
                out,
                "  pinned   {} -> {} ({}, {})",
                pin.packages.join(", "),
                pin.index,
                def.kind,
                def.url
            );
        }
    }
    let _ = writeln!(out, "layers (most stable first):");
    for layer in &stack.layers {
        let count: usize = layer.paks.iter().map(|p| p.requirements.len()).sum();
        let files: Vec<String> = layer
            .paks
            .iter()
            .map(|p| display_rel(base, &p.path))
            .collect();
        let _ = writeln!(
            out,
            "  {} {:<9} {} requirement{} from {}",
            layer.rank,
            layer.name,
            count,
            if count == 1 { "" } else { "s" },
            files.join(", ")
        );
        for pak in &layer.paks {
            write_requirements(&mut out, base, pak);
        }
    }
    if !stack.excluded.is_empty() {
        let _ = writeln!(out, "excluded (not in any layer):");
        for e in &stack.excluded {
            let _ = writeln!(out, "  {}: {}", display_rel(base, &e.pak.path), e.reason);
            write_requirements(&mut out, base, &e.pak);
        }
    }
    out
}

fn write_requirements(out: &mut String, base: &Path, pak: &PakFile) {
    for line in &pak.requirements {
        let location = format!(
            "{}:{}",
            display_rel(base, &line.location.file),
            line.location.line
        );
        let _ = write!(out, "      {:<44} {location}", line.text);
        if let Some(why) = line.requirement.needs_build() {
            let _ = write!(out, "  (needs a build: {why})");
        }
        out.push('\n');
    }
}

fn display_rel(base: &Path, path: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .display()
        .to_string()
}

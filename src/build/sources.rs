//! The build environments of source builds, made by the pipeline's own stages.
//!
//! Owns [`StackBuildEnvs`], the pipeline's answer to `source::BuildEnvironments`: a source's
//! build requirements are resolved for the target by comfypak's resolver (as a one-layer
//! stack with the image stack's indexes and pins, so a pinned package comes from its index
//! here too), fetched into the cache and installed by comfypak's installer into a layer
//! folder that the sandbox stacks over the base. Must not build anything itself
//! (`source` does) nor write outside the folders it is given.

use std::path::Path;

use super::stages::fetch_selected;
use super::{Session, Silent};
use crate::fetch::select_wheels;
use crate::install::layout::EnvPaths;
use crate::install::{install_layer, InstallOptions, InstallWheel};
use crate::lock::Lock;
use crate::resolve::to_lock::{resolve_stack, UpgradeRequest};
use crate::source::BuildEnvironments;
use crate::stack::{Layer, Stack};
use crate::target::Target;

/// Build environments resolved from the indexes of `stack` for `target`.
pub struct StackBuildEnvs<'a> {
    pub session: &'a Session,
    pub stack: &'a Stack,
    pub target: Target,
}

/// The layer every build environment installs as.
const LAYER: &str = "build-env";

fn with_help(message: String, help: Option<String>) -> String {
    match help {
        Some(help) => format!("{message}\nhelp: {help}"),
        None => message,
    }
}

impl BuildEnvironments for StackBuildEnvs<'_> {
    type Resolved = Lock;

    fn resolve(&self, requirements: &[String]) -> Result<(Lock, Vec<String>), String> {
        let mut text = requirements.join("\n");
        text.push('\n');
        let origin = self
            .stack
            .manifest
            .parent()
            .unwrap_or(Path::new("."))
            .join("[build-system].requires");
        let pak = crate::pak::parse_str(&origin, &text, &|_| None)
            .map_err(|e| with_help(e.to_string(), e.help().map(str::to_string)))?;
        let mut stack = self.stack.clone();
        stack.layers = vec![Layer {
            name: LAYER.to_string(),
            rank: 1,
            paks: vec![pak],
        }];
        stack.excluded.clear();
        let client = self.session.index_client();
        let lock = self
            .session
            .block_on(resolve_stack(
                &stack,
                std::slice::from_ref(&self.target),
                &client,
                false,
                &UpgradeRequest::default(),
                None,
                &Silent,
            ))
            .map_err(|e| with_help(e.to_string(), e.help()))?;
        let selected = select_wheels(&lock, None, &self.target).map_err(|e| e.to_string())?;
        let mut pins: Vec<String> = selected
            .iter()
            .map(|w| format!("{}=={} {}", w.package, w.version, w.sha256()))
            .collect();
        pins.sort();
        Ok((lock, pins))
    }

    fn install(&self, lock: &Lock, venv: &str, layer_dir: &Path) -> Result<(), String> {
        let selected = select_wheels(lock, None, &self.target).map_err(|e| e.to_string())?;
        let fetched = fetch_selected(
            self.session,
            &self.stack.manifest,
            &selected,
            self.session.network().offline,
            &Silent,
        )
        .map_err(|e| with_help(e.to_string(), e.help()))?;
        let wheels: Vec<InstallWheel> = selected
            .iter()
            .zip(&fetched)
            .map(|(s, c)| super::stages::install_wheel(s, c))
            .collect();
        let out = layer_dir.with_extension("install");
        let env = EnvPaths {
            venv: venv.to_string(),
            python: self.target.python,
        };
        let report = install_layer(
            self.session.cache(),
            &out,
            &env,
            LAYER,
            &wheels,
            &[],
            &InstallOptions::default(),
        )
        .map_err(|e| with_help(e.to_string(), e.help()))?;
        std::fs::rename(&report.dir, layer_dir)
            .map_err(|e| format!("{}: {e}", layer_dir.display()))?;
        let _ = std::fs::remove_dir_all(&out);
        Ok(())
    }
}

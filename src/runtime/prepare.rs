//! What the target runtime adds to a platform's installed layers: the venv skeleton in the
//! lowest layer and bytecode in every layer.
//!
//! Owns the order of those two steps over a platform's layer folders; the steps themselves
//! are [`super::venv`] and [`super::compile`]. It must not install, pack or decide which
//! layers exist.

use std::path::PathBuf;

use super::compile::{compile_layer, CompileReport};
use super::{venv, Runtime, RuntimeError};

/// One installed layer of a platform: its name and folder (holding the venv at its image path).
#[derive(Debug, Clone)]
pub struct LayerDir {
    pub name: String,
    pub dir: PathBuf,
}

/// What was added to each layer.
#[derive(Debug, Clone)]
pub struct PreparedLayer {
    pub name: String,
    /// The layer holds the venv skeleton.
    pub skeleton: bool,
    /// Bytecode compiled, when asked.
    pub compiled: Option<CompileReport>,
}

/// Writes the skeleton into the first (most stable) layer and, when `compile`, compiles every
/// layer with the runtime's interpreter (`workers` processes each).
pub fn prepare_layers(
    runtime: &Runtime,
    layers: &[LayerDir],
    compile: bool,
    workers: usize,
) -> Result<Vec<PreparedLayer>, RuntimeError> {
    let mut out = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        if i == 0 {
            venv::write_skeleton(&layer.dir, &runtime.venv, &runtime.interpreter)?;
        }
        let compiled = if compile {
            Some(compile_layer(runtime, &layer.dir, workers)?)
        } else {
            None
        };
        out.push(PreparedLayer {
            name: layer.name.clone(),
            skeleton: i == 0,
            compiled,
        });
    }
    Ok(out)
}

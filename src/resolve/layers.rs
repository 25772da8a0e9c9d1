//! Layer assignment: which image layer installs each resolved package.
//!
//! Owns the rule of DESIGN.md ("Layers"): a package goes to the most stable layer whose pak
//! files need it, directly or through dependencies. The walk starts from each layer's roots
//! (the names its pak lines request on this target), most stable layer first, and follows the
//! resolved dependency graph; a package already claimed by a more stable layer is left where
//! it is. Also checks that every resolved package got exactly one layer of the stack.
//! Must not resolve, read an index or build the lock (that is `to_lock`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use pep508_rs::PackageName;

use super::Resolution;
use crate::stack::Stack;

/// Why a resolution's packages do not fall into the stack's layers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayerError {
    #[error("{target}: the resolution names layer `{layer}`, which stack `{stack}` does not have (it has: {available})")]
    UnknownLayer {
        target: String,
        stack: String,
        layer: String,
        available: String,
    },
    #[error("{target}: {} resolved but no layer's pak files need {}: {}", count(.names.len()), if .names.len() == 1 { "it" } else { "them" }, .names.join(", "))]
    Unassigned { target: String, names: Vec<String> },
    #[error("{target}: `{name}` is assigned to layer `{layer}` but is not part of the resolution")]
    NotResolved {
        target: String,
        name: String,
        layer: String,
    },
    #[error("{target}: `{name}` is assigned to layer `{layer}`, which stack `{stack}` does not have (it has: {available})")]
    AssignedToUnknownLayer {
        target: String,
        stack: String,
        name: String,
        layer: String,
        available: String,
    },
}

impl LayerError {
    /// What the user can do about it.
    pub fn help(&self) -> Option<String> {
        match self {
            LayerError::UnknownLayer { .. } => Some("this is a bug in the resolver's bookkeeping; please report it with the stack".to_string()),
            LayerError::Unassigned { .. } => Some("this is a bug in the resolver's bookkeeping (a package outside the dependency graph of every root); please report it with the stack".to_string()),
            _ => None,
        }
    }
}

fn count(n: usize) -> String {
    if n == 1 {
        "1 package".to_string()
    } else {
        format!("{n} packages")
    }
}

/// Each package of `resolution` → the name of the most stable layer of `stack` that needs
/// it. Packages no layer reaches are left out; [`check_layers`] reports them.
pub fn assign_layers(resolution: &Resolution, stack: &Stack) -> BTreeMap<PackageName, String> {
    let mut assigned: BTreeMap<PackageName, String> = BTreeMap::new();
    // The layer order is the stack's (most stable first), whatever order the roots come in.
    for layer in &stack.layers {
        let mut queue: VecDeque<&PackageName> = resolution
            .roots
            .iter()
            .filter(|(name, _)| *name == layer.name)
            .flat_map(|(_, roots)| roots.iter())
            .collect();
        while let Some(name) = queue.pop_front() {
            if assigned.contains_key(name) {
                // Claimed by this layer already, or by a more stable one together with
                // everything it depends on.
                continue;
            }
            let Some(package) = resolution.packages.get(name) else {
                continue;
            };
            assigned.insert(name.clone(), layer.name.clone());
            queue.extend(
                package
                    .dependencies
                    .iter()
                    .filter(|dep| !assigned.contains_key(*dep)),
            );
        }
    }
    assigned
}

/// Checks that every package of `resolution` has exactly one layer in `layers`, that every
/// layer named there (and in the resolution's roots) is one of the stack's, and that nothing
/// outside the resolution was assigned.
pub fn check_layers(
    resolution: &Resolution,
    layers: &BTreeMap<PackageName, String>,
    stack: &Stack,
) -> Result<(), LayerError> {
    let target = resolution.target.to_string();
    let available = || {
        stack
            .layers
            .iter()
            .map(|l| l.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (layer, _) in &resolution.roots {
        if stack.layer(layer).is_none() {
            return Err(LayerError::UnknownLayer {
                target,
                stack: stack.name.clone(),
                layer: layer.clone(),
                available: available(),
            });
        }
    }
    for (name, layer) in layers {
        if !resolution.packages.contains_key(name) {
            return Err(LayerError::NotResolved {
                target,
                name: name.to_string(),
                layer: layer.clone(),
            });
        }
        if stack.layer(layer).is_none() {
            return Err(LayerError::AssignedToUnknownLayer {
                target,
                stack: stack.name.clone(),
                name: name.to_string(),
                layer: layer.clone(),
                available: available(),
            });
        }
    }
    let unassigned: BTreeSet<String> = resolution
        .packages
        .keys()
        .filter(|name| !layers.contains_key(*name))
        .map(|name| name.to_string())
        .collect();
    if !unassigned.is_empty() {
        return Err(LayerError::Unassigned {
            target,
            names: unassigned.into_iter().collect(),
        });
    }
    Ok(())
}

/// [`assign_layers`] followed by [`check_layers`].
pub fn assign_checked(
    resolution: &Resolution,
    stack: &Stack,
) -> Result<BTreeMap<PackageName, String>, LayerError> {
    let layers = assign_layers(resolution, stack);
    check_layers(resolution, &layers, stack)?;
    Ok(layers)
}

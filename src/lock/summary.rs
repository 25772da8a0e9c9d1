//! Queries over a lock for one target platform, and the per-layer summary `resolve` prints.
//!
//! Owns: whether an entry applies to a platform (its `platforms` list and its marker), which
//! of its wheels that platform installs (best tag priority, like an installer), and per layer
//! the package count and wheel bytes for each platform. Pure: reads a [`Lock`], never the
//! network or the cache.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use pep508_rs::{MarkerEnvironment, MarkerTree};
use serde::Serialize;

use super::{Lock, LockedPackage, LockedWheel};
use crate::filename::WheelFilename;
use crate::target::{CompatibleTags, Target};

/// Why a lock could not be summarized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SummaryError {
    #[error("the lock's target is invalid: {message}")]
    BadTarget { message: String },
    #[error("package {package} {version}: marker `{marker}` does not parse: {message}")]
    BadMarker {
        package: String,
        version: String,
        marker: String,
        message: String,
    },
}

impl SummaryError {
    /// What the user can do about it.
    pub fn help(&self) -> Option<String> {
        match self {
            SummaryError::BadTarget { .. } => {
                Some("re-create the lock with `comfypak resolve`".to_string())
            }
            _ => None,
        }
    }
}

/// Whether `package` applies to `target`: its platform list (when given) names the target's
/// platform and its marker (when given) holds in the target's marker environment.
pub fn applies_to(package: &LockedPackage, target: &Target) -> Result<bool, SummaryError> {
    PreparedTarget::new(target).applies_to(package)
}

/// A target with its tag list and marker environment computed once, for questions about
/// many entries (computing them is far costlier than one answer).
pub struct PreparedTarget<'t> {
    pub target: &'t Target,
    tags: CompatibleTags,
    markers: MarkerEnvironment,
    platform: String,
}

impl<'t> PreparedTarget<'t> {
    pub fn new(target: &'t Target) -> Self {
        PreparedTarget {
            target,
            tags: target.tags(),
            markers: target.markers(),
            platform: target.platform.to_string(),
        }
    }

    /// The platform tag, e.g. `manylinux_2_39_x86_64`.
    pub fn platform(&self) -> &str {
        &self.platform
    }

    /// See [`applies_to`].
    pub fn applies_to(&self, package: &LockedPackage) -> Result<bool, SummaryError> {
        let platforms = &package.tool.comfypak.platforms;
        if !platforms.is_empty() && !platforms.contains(&self.target.platform) {
            return Ok(false);
        }
        let Some(marker) = package.marker.as_deref().filter(|m| !m.trim().is_empty()) else {
            return Ok(true);
        };
        let tree = MarkerTree::from_str(marker).map_err(|e| SummaryError::BadMarker {
            package: package.name.to_string(),
            version: package.version.to_string(),
            marker: marker.to_string(),
            message: e.to_string(),
        })?;
        Ok(tree.evaluate(&self.markers, &[]))
    }

    /// The wheel of `package` this target installs: the best tag priority, then the higher
    /// build tag; None when no wheel fits.
    pub fn wheel_for<'a>(&self, package: &'a LockedPackage) -> Option<&'a LockedWheel> {
        let tags = &self.tags;
        let mut best: Option<(&LockedWheel, WheelFilename)> = None;
        // A package built from source has its built wheels instead of published ones (or
        // beside them, for the platforms none of them fits).
        let fits = |w: &LockedWheel| {
            WheelFilename::from_str(&w.name).is_ok_and(|p| p.best_priority(tags).is_some())
        };
        let wheels = if package.wheels.iter().any(fits) {
            &package.wheels
        } else {
            &package.tool.comfypak.built
        };
        for wheel in wheels {
            let Ok(parsed) = WheelFilename::from_str(&wheel.name) else {
                continue;
            };
            if parsed.best_priority(tags).is_none() {
                continue;
            }
            let better = match &best {
                None => true,
                Some((_, current)) => parsed.preference(current, tags).is_lt(),
            };
            if better {
                best = Some((wheel, parsed));
            }
        }
        best.map(|(wheel, _)| wheel)
    }
}

/// Every target platform the lock covers, in lock order.
pub fn lock_targets(lock: &Lock) -> Result<Vec<Target>, SummaryError> {
    let locked = &lock.tool.comfypak.target;
    locked
        .platforms
        .iter()
        .map(|&platform| {
            Target::try_new(locked.python, locked.free_threaded, platform).map_err(|e| {
                SummaryError::BadTarget {
                    message: e.to_string(),
                }
            })
        })
        .collect()
}

/// One package of a layer in the summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PackageSummary {
    pub name: String,
    pub version: String,
    /// Platforms this entry serves; empty = all of them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
    /// Wheel bytes per platform that installs it.
    pub bytes: BTreeMap<String, u64>,
}

/// One layer of the summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerSummary {
    pub name: String,
    pub rank: usize,
    /// Distinct package names in the layer.
    pub packages: usize,
    /// Sum of the sizes of the wheels each platform installs, by platform.
    pub bytes: BTreeMap<String, u64>,
    /// Sum over platforms (what a multi-platform image set downloads for this layer).
    pub total_bytes: u64,
    pub inputs_hash: String,
    pub entries: Vec<PackageSummary>,
}

/// Per layer (most stable first): packages and wheel bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockSummary {
    pub stack: String,
    pub python: String,
    pub platforms: Vec<String>,
    pub layers: Vec<LayerSummary>,
    /// Distinct package names in the whole lock.
    pub packages: usize,
    pub bytes: BTreeMap<String, u64>,
    pub total_bytes: u64,
    /// Wheels with no size in the lock (counted as 0 bytes).
    pub unknown_sizes: usize,
}

impl LockSummary {
    /// Summarizes `lock`: for each platform, each applicable entry's installed wheel.
    pub fn of(lock: &Lock) -> Result<LockSummary, SummaryError> {
        let targets = lock_targets(lock)?;
        let prepared: Vec<PreparedTarget> = targets.iter().map(PreparedTarget::new).collect();
        let platforms: Vec<String> = prepared.iter().map(|p| p.platform.clone()).collect();
        let zero =
            || -> BTreeMap<String, u64> { platforms.iter().map(|p| (p.clone(), 0)).collect() };
        let mut layer_names: Vec<(String, usize, String)> = lock
            .tool
            .comfypak
            .layers
            .iter()
            .map(|l| (l.name.clone(), l.rank, l.inputs_hash.clone()))
            .collect();
        // A layer named by packages but not declared still shows (after the declared ones).
        for package in &lock.packages {
            let layer = &package.tool.comfypak.layer;
            if !layer_names.iter().any(|(n, _, _)| n == layer) {
                let rank = layer_names.len() + 1;
                layer_names.push((layer.clone(), rank, String::new()));
            }
        }
        let mut unknown_sizes = 0;
        let mut layers = Vec::new();
        for (name, rank, inputs_hash) in layer_names {
            let mut bytes = zero();
            let mut names = BTreeSet::new();
            let mut entries = Vec::new();
            for package in lock.layer_packages(&name) {
                names.insert(package.name.as_ref());
                let mut entry_bytes = BTreeMap::new();
                for prepared in &prepared {
                    if !prepared.applies_to(package)? {
                        continue;
                    }
                    let Some(wheel) = prepared.wheel_for(package) else {
                        continue;
                    };
                    let size = wheel.size.unwrap_or_else(|| {
                        unknown_sizes += 1;
                        0
                    });
                    *bytes.entry(prepared.platform.clone()).or_default() += size;
                    entry_bytes.insert(prepared.platform.clone(), size);
                }
                entries.push(PackageSummary {
                    name: package.name.to_string(),
                    version: package.version.to_string(),
                    platforms: package
                        .tool
                        .comfypak
                        .platforms
                        .iter()
                        .map(ToString::to_string)
                        .collect(),
                    bytes: entry_bytes,
                });
            }
            let packages = names.len();
            layers.push(LayerSummary {
                name,
                rank,
                packages,
                total_bytes: bytes.values().sum(),
                bytes,
                inputs_hash,
                entries,
            });
        }
        let mut bytes = zero();
        for layer in &layers {
            for (platform, size) in &layer.bytes {
                *bytes.entry(platform.clone()).or_default() += size;
            }
        }
        let packages = lock
            .packages
            .iter()
            .map(|p| p.name.as_ref())
            .collect::<BTreeSet<&str>>()
            .len();
        Ok(LockSummary {
            stack: lock.tool.comfypak.stack.clone(),
            python: lock.tool.comfypak.target.python.to_string(),
            platforms,
            packages,
            total_bytes: bytes.values().sum(),
            bytes,
            layers,
            unknown_sizes,
        })
    }
}

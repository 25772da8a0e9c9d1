//! Which wheel of each locked package a platform installs: the lock's target turned into
//! [`Target`]s, package markers evaluated against the target's marker environment, and the
//! best-fitting wheel chosen by the target's tag priority.
//!
//! Pure: reads a [`Lock`] and decides; must not download, touch the cache or resolve.

use std::str::FromStr;

use crate::digest::Sha256Hex;
use crate::lock::DIRECT_INDEX;
use crate::lock::{
    lock_targets as summary_lock_targets, Lock, LockedPackage, LockedWheel, PreparedTarget,
    SummaryError,
};
use crate::target::Target;

/// Why the lock could not be turned into a list of wheels.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error("the lock's target is invalid: {message}")]
    BadTarget { message: String },
    #[error("the lock has no platform matching `{asked}` (it has: {available})")]
    UnknownPlatform { asked: String, available: String },
    #[error("the lock has no layer `{name}` (it has: {available})")]
    UnknownLayer { name: String, available: String },
    #[error(transparent)]
    Lock(#[from] SummaryError),
    #[error("package {package} {version}: no locked wheel fits {platform} (locked: {available})")]
    NoWheel {
        package: String,
        version: String,
        platform: String,
        available: String,
    },
    #[error("package {package} {version}: wheel {filename} has no sha256 in the lock; comfypak only installs verified files")]
    NoHash {
        package: String,
        version: String,
        filename: String,
    },
    #[error(
        "package {package} {version}: wheel {filename} has neither `url` nor `path` in the lock"
    )]
    NoLocation {
        package: String,
        version: String,
        filename: String,
    },
}

impl SelectError {
    /// What the user can do about it.
    pub fn help(&self) -> Option<String> {
        match self {
            SelectError::Lock(e) => e.help(),
            SelectError::BadTarget { .. } => {
                Some("re-create the lock with `comfypak resolve`".to_string())
            }
            SelectError::UnknownPlatform { .. } => {
                Some("pass --platform with one of those, or `all`".to_string())
            }
            SelectError::NoWheel { .. } => {
                Some("re-resolve for this platform with `comfypak resolve`".to_string())
            }
            SelectError::NoHash { .. } => {
                Some("re-create the lock with `comfypak resolve`".to_string())
            }
            _ => None,
        }
    }
}

/// One wheel to fetch and install for one platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectedWheel {
    /// Normalized package name.
    pub package: String,
    pub version: String,
    /// The layer it installs into.
    pub layer: String,
    /// Named directly by a pak file (gets `REQUESTED`).
    pub requested: bool,
    /// The URL of a direct URL requirement (gets `direct_url.json`).
    pub direct_url: Option<String>,
    /// The platform tag it was chosen for.
    pub platform: String,
    pub wheel: LockedWheel,
    /// A wheel comfypak built from the package's source (`[packages.tool.comfypak] built`):
    /// it has no location; only the cache of the machine that built it holds it.
    pub built: bool,
    /// The index the lock says it came from (None for direct URLs and built wheels).
    pub index: Option<super::WheelIndex>,
    /// Members whose RECORD row the lock accepts as wrong for this wheel
    /// (`[packages.tool.comfypak] record-mismatch`), with the reason.
    pub accepted_record: Vec<(String, String)>,
    sha256: Sha256Hex,
}

impl SelectedWheel {
    /// The wheel's sha256 (checked to exist by [`select_wheels`]).
    pub fn sha256(&self) -> &Sha256Hex {
        &self.sha256
    }
}

/// Every platform target the lock covers, in lock order.
pub fn lock_targets(lock: &Lock) -> Result<Vec<Target>, SelectError> {
    if lock.tool.comfypak.target.platforms.is_empty() {
        return Err(SelectError::BadTarget {
            message: "`[tool.comfypak.target] platforms` is empty".to_string(),
        });
    }
    Ok(summary_lock_targets(lock)?)
}

/// The lock's targets that `asked` names: `all`, an architecture (`x86_64`, `aarch64`,
/// `amd64`, `arm64`) or a full platform tag. `None` means the lock's first platform.
pub fn targets_for(lock: &Lock, asked: Option<&str>) -> Result<Vec<Target>, SelectError> {
    let targets = lock_targets(lock)?;
    let Some(asked) = asked else {
        return Ok(targets.into_iter().take(1).collect());
    };
    if asked == "all" {
        return Ok(targets);
    }
    let arch = crate::target::Arch::from_str(asked).ok();
    let chosen: Vec<Target> = targets
        .iter()
        .filter(|t| Some(t.platform.arch) == arch || t.platform.to_string() == asked)
        .cloned()
        .collect();
    if chosen.is_empty() {
        return Err(SelectError::UnknownPlatform {
            asked: asked.to_string(),
            available: targets
                .iter()
                .map(|t| t.platform.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(chosen)
}

/// Checks that every name in `layers` is a layer of the lock.
pub fn check_layers(lock: &Lock, layers: &[String]) -> Result<(), SelectError> {
    let known = lock.layer_names();
    for name in layers {
        let in_packages = lock.packages.iter().any(|p| &p.tool.comfypak.layer == name);
        if !known.contains(&name.as_str()) && !in_packages {
            return Err(SelectError::UnknownLayer {
                name: name.clone(),
                available: known.join(", "),
            });
        }
    }
    Ok(())
}

/// The best wheel of `package` for a target: best tag priority, then the higher build tag.
fn best_wheel<'a>(
    package: &'a LockedPackage,
    prepared: &PreparedTarget,
) -> Result<&'a LockedWheel, SelectError> {
    prepared
        .wheel_for(package)
        .ok_or_else(|| SelectError::NoWheel {
            package: package.name.to_string(),
            version: package.version.to_string(),
            platform: prepared.platform().to_string(),
            available: if package.wheels.is_empty() {
                "no wheels".to_string()
            } else {
                package
                    .wheels
                    .iter()
                    .map(|w| w.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        })
}

/// The wheels of `layers` (all layers when `None`) for `target`, in lock order.
pub fn select_wheels(
    lock: &Lock,
    layers: Option<&[String]>,
    target: &Target,
) -> Result<Vec<SelectedWheel>, SelectError> {
    if let Some(layers) = layers {
        check_layers(lock, layers)?;
    }
    let prepared = PreparedTarget::new(target);
    let mut out = Vec::new();
    for package in &lock.packages {
        let layer = &package.tool.comfypak.layer;
        if let Some(layers) = layers {
            if !layers.contains(layer) {
                continue;
            }
        }
        if !prepared.applies_to(package)? {
            continue;
        }
        let wheel = best_wheel(package, &prepared)?;
        let built = package
            .tool
            .comfypak
            .built
            .iter()
            .any(|b| std::ptr::eq(b, wheel));
        let Some(sha256) = wheel.sha256().cloned() else {
            return Err(SelectError::NoHash {
                package: package.name.to_string(),
                version: package.version.to_string(),
                filename: wheel.name.to_string(),
            });
        };
        if !built && wheel.url.is_none() && wheel.path.is_none() {
            return Err(SelectError::NoLocation {
                package: package.name.to_string(),
                version: package.version.to_string(),
                filename: wheel.name.to_string(),
            });
        }
        let direct_url = match (&package.sdist, &package.directory) {
            // An index sdist is no direct URL (pip writes none for it either).
            (Some(sdist), _) if built && package.index.is_none() => sdist.url.clone(),
            // A folder recorded relative to the lock has no URL to give without the lock's
            // place; an absolute one is a `file://` URL.
            (_, Some(directory)) if built => directory
                .path
                .starts_with('/')
                .then(|| format!("file://{}", directory.path)),
            _ if built && package.vcs.is_some() => package
                .vcs
                .as_ref()
                .map(|vcs| format!("git+{}@{}", vcs.url, vcs.commit_id)),
            _ => (package.tool.comfypak.index_name == DIRECT_INDEX)
                .then(|| wheel.url.clone())
                .flatten(),
        };
        out.push(SelectedWheel {
            package: package.name.to_string(),
            version: package.version.to_string(),
            layer: layer.clone(),
            requested: package.tool.comfypak.requested,
            direct_url,
            platform: target.platform.to_string(),
            wheel: wheel.clone(),
            built,
            index: locked_index(package, built),
            accepted_record: package
                .tool
                .comfypak
                .record_mismatch
                .iter()
                .filter(|m| m.wheel == wheel.name.as_str())
                .map(|m| (m.file.clone(), m.reason.clone()))
                .collect(),
            sha256,
        });
    }
    Ok(out)
}

/// The index `package` was locked from, by name and URL; None for a direct URL requirement,
/// a built wheel, or a lock that records no index URL.
fn locked_index(package: &LockedPackage, built: bool) -> Option<super::WheelIndex> {
    let name = &package.tool.comfypak.index_name;
    if built || name.is_empty() || name == DIRECT_INDEX {
        return None;
    }
    Some(super::WheelIndex {
        name: name.clone(),
        url: package.index.clone()?,
    })
}

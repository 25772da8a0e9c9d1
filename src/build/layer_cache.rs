//! `build`'s side of the layer cache ([`crate::pack::layer_cache`]): before installing a
//! platform, the key of every stack layer from the lock, the selected wheels and the build's
//! settings; the layers found are not installed, compiled or packed again; after the whole
//! build succeeded, what was built is recorded.
//!
//! `OUT/layers/<layer>` keeps holding every layer's installed tree, as without the cache (a
//! later `comfypak pack` of `OUT` reads them). Each tree that `build` installed carries a
//! marker (`OUT/.layer-keys/<layer>`, beside `layers/`) naming the key it was built for. A
//! layer found in the cache whose tree is marked with its key is not touched at all; one whose
//! tree is absent or another key's (a fresh `OUT`, an older build's) is installed and compiled
//! again, but its blob is still reused (no tar, no compression).
//!
//! Owns: when to look up and record, the markers. Must not: compute keys' format or verify
//! blobs (the pack side does), or install or pack.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::stages::plan_layers;
use super::{BuildError, BuildRequest, Progress};
use crate::lock::Lock;
use crate::pack::layer_cache::{
    base_identity, stack_layer_key, CachedPart, KeyInputs, KeyWheel, LayerCache,
};
use crate::pack::{oci, split, Compression, PackedImage};
use crate::target::{Platform, Target};

/// One platform's stack layers: their keys, and which were found.
#[derive(Debug, Clone)]
pub(super) struct PlatformPlan {
    pub platform: Platform,
    /// Every stack layer and its key, most stable first.
    pub keys: Vec<(String, String)>,
    /// The layers found in the cache, with their image layers.
    pub reused: BTreeMap<String, Vec<CachedPart>>,
    /// The layers found whose installed tree is the one built for their key.
    pub trees_kept: BTreeSet<String>,
    /// Where the platform's layers are installed (`OUT` or `OUT/<arch>`).
    pub out: PathBuf,
}

impl PlatformPlan {
    /// The layers to pack (and record), most stable first.
    pub fn missed(&self) -> Vec<String> {
        self.keys
            .iter()
            .filter(|(layer, _)| !self.reused.contains_key(layer))
            .map(|(layer, _)| layer.clone())
            .collect()
    }

    /// The layers to install and compile, most stable first.
    pub fn to_install(&self) -> Vec<String> {
        self.keys
            .iter()
            .filter(|(layer, _)| !self.trees_kept.contains(layer))
            .map(|(layer, _)| layer.clone())
            .collect()
    }
}

fn marker(out: &Path, layer: &str) -> PathBuf {
    out.join(".layer-keys").join(layer)
}

/// Removes the markers of `layers` (their trees are about to be replaced).
pub(super) fn forget_trees(out: &Path, layers: &[String]) {
    for layer in layers {
        let _ = std::fs::remove_file(marker(out, layer));
    }
}

/// Marks the trees of `layers` as built for their keys in `plan`.
pub(super) fn mark_trees(plan: &PlatformPlan, layers: &[String]) -> std::io::Result<()> {
    for (layer, key) in plan.keys.iter().filter(|(l, _)| layers.contains(l)) {
        let path = marker(&plan.out, layer);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        crate::fsutil::write_atomic(&path, key.as_bytes())?;
    }
    Ok(())
}

/// Keys of every stack layer of `target` and the layers found in `cache`. `base` is the base
/// the platform's Python comes from (None: no skeleton, no bytecode).
#[allow(clippy::too_many_arguments)]
pub(super) fn plan_platform(
    cache: &LayerCache,
    lock: &Lock,
    target: &Target,
    base: Option<&Path>,
    request: &BuildRequest,
    split_threshold: Option<u64>,
    source_date_epoch: u64,
    out: &Path,
) -> Result<PlatformPlan, BuildError> {
    let plan = plan_layers(lock, target, &[])?;
    let base_id = match base {
        Some(base) => base_identity(base, target.platform.arch.oci_name())?,
        None => "none".to_string(),
    };
    let inputs = KeyInputs {
        platform: target.platform,
        python: format!(
            "{}{}",
            target.python,
            if target.free_threaded { "t" } else { "" }
        ),
        venv: lock.tool.comfypak.target.venv.to_string(),
        base: base_id,
        compile: request.compile && base.is_some(),
        allow_overwrite: request.allow_overwrite,
        compression: request.compression,
        source_date_epoch,
        split_threshold,
    };
    let mut keys = Vec::new();
    let mut reused = BTreeMap::new();
    let mut trees_kept = BTreeSet::new();
    for (i, layer) in plan.chosen.iter().enumerate() {
        let wheels: Vec<KeyWheel<'_>> = plan
            .install
            .iter()
            .filter(|w| w.layer == *layer)
            .map(|w| KeyWheel {
                name: &w.package,
                version: &w.version,
                sha256: w.sha256().as_str(),
                requested: w.requested,
                direct_url: w.direct_url.as_deref(),
            })
            .collect();
        let large = split_threshold
            .map(|t| split::large_distributions(lock, layer, t))
            .unwrap_or_default();
        let key = stack_layer_key(&inputs, layer, i == 0 && base.is_some(), &large, &wheels);
        keys.push((layer.clone(), key));
    }
    // Every found blob is read back and hashed: in parallel, it is most of a no-change build.
    let found: Vec<Option<Vec<CachedPart>>> =
        keys.par_iter().map(|(_, key)| cache.lookup(key)).collect();
    for ((layer, key), parts) in keys.iter().zip(found) {
        let Some(parts) = parts else {
            continue;
        };
        // The tree is left alone only when it is the one built for this key.
        let marked = std::fs::read_to_string(marker(out, layer)).ok();
        if marked.as_deref() == Some(key.as_str()) && out.join("layers").join(layer).is_dir() {
            trees_kept.insert(layer.clone());
        }
        reused.insert(layer.clone(), parts);
    }
    Ok(PlatformPlan {
        platform: target.platform,
        keys,
        reused,
        trees_kept,
        out: out.to_path_buf(),
    })
}

/// Records what the finished build made: every stack layer it built (under its key) and
/// every layer's tar (under its diff_id and `compression`). A failure is told, not fatal:
/// the image is complete either way.
pub(super) fn record(
    cache: &LayerCache,
    plans: &[PlatformPlan],
    image: &PackedImage,
    image_dir: &Path,
    compression: Compression,
    progress: &dyn Progress,
) {
    let blob = |digest: &str| {
        oci::digest_hex(digest).map(|hex| image_dir.join("blobs").join("sha256").join(hex))
    };
    let mut failures = Vec::new();
    for packed in &image.platforms {
        let Some(plan) = plans
            .iter()
            .find(|p| p.platform.arch.oci_name() == packed.architecture)
        else {
            continue;
        };
        let part = |l: &crate::pack::PackedLayer| CachedPart {
            distribution: l.distribution.clone(),
            digest: l.descriptor.digest.clone(),
            size: l.descriptor.size,
            diff_id: l.diff_id.clone(),
            media_type: l.descriptor.media_type.clone(),
        };
        for l in packed.layers.iter().filter(|l| !l.from_base) {
            if let Some(path) = blob(&l.descriptor.digest) {
                let platform = plan.platform.to_string();
                if let Err(e) = cache.record_tar(&part(l), compression, &path, &platform, &l.name) {
                    failures.push(format!("{}: {e}", l.name));
                }
            }
        }
        for layer in plan.missed() {
            let Some((_, key)) = plan.keys.iter().find(|(l, _)| *l == layer) else {
                continue;
            };
            let parts: Vec<CachedPart> = packed
                .layers
                .iter()
                .filter(|l| {
                    !l.from_base && l.descriptor.annotations.get(oci::LAYER_NAME) == Some(&layer)
                })
                .map(part)
                .collect();
            if parts.is_empty() {
                continue;
            }
            if let Err(e) = cache.record(key, &plan.platform.to_string(), &layer, &parts, &blob) {
                failures.push(format!("{layer}: {e}"));
            }
        }
    }
    if !failures.is_empty() {
        progress.note(&format!(
            "warning: the layer cache could not record {}; the next build builds those layers again",
            failures.join("; ")
        ));
    }
}

//! Lock diffs: what changed between two `pylock.toml` files, layer by layer, and what that
//! costs an image build.
//!
//! Owns comparing two [`Lock`]s (packages added, removed, upgraded, downgraded, rebuilt at the
//! same version, moved between layers, index and marker changes), deciding which layers'
//! contents change, the bytes involved, rendering the result as text, markdown or JSON, and
//! [`staleness`]: why a lock is not what its inputs resolve to now (`--locked`).
//! It must not resolve, fetch, or read anything but the two locks it is given.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use pep440_rs::Version;
use serde::Serialize;

use crate::lock::{ComfypakLock, Lock, LockedPackage};
pub use crate::units::human_bytes;

/// What happened to one package in one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    Added,
    Removed,
    Upgraded,
    Downgraded,
    /// Same version, but a wheel file or its hash changed.
    Rebuilt,
    /// Came into this layer from another one.
    MovedIn,
    /// Left this layer for another one.
    MovedOut,
    /// Same version and files, taken from another index.
    IndexChanged,
    /// Same version and files, another environment marker.
    MarkerChanged,
}

impl ChangeKind {
    fn symbol(self) -> &'static str {
        match self {
            ChangeKind::Added | ChangeKind::MovedIn => "+",
            ChangeKind::Removed | ChangeKind::MovedOut => "-",
            _ => "~",
        }
    }
}

/// One package's change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PackageChange {
    pub name: String,
    pub kind: ChangeKind,
    pub old_version: Option<String>,
    pub new_version: Option<String>,
    /// Extra words: the other layer of a move, the old and new index, marker or wheel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// One layer's part of the diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerDiff {
    pub name: String,
    pub rank: usize,
    /// Whether the layer's content (and so its digest) changes.
    pub changed: bool,
    /// Whether the hash of the layer's inputs (its pak lines and the target) changed.
    pub inputs_changed: bool,
    pub added: usize,
    pub removed: usize,
    pub modified: usize,
    /// Wheel bytes of the layer in the old and new lock (all platforms).
    pub old_bytes: u64,
    pub new_bytes: u64,
    /// Bytes of wheels in the new layer that the old lock did not have: what a rebuild downloads.
    pub download_bytes: u64,
    pub changes: Vec<PackageChange>,
}

/// The whole diff, most stable layer first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockDiff {
    pub layers: Vec<LayerDiff>,
    /// Changes to the target or the torch backend, which touch every layer.
    pub target_changes: Vec<String>,
}

/// Per package name and layer: the entries of one lock.
type Entries<'a> = BTreeMap<(String, String), Vec<&'a LockedPackage>>;

fn entries(lock: &Lock) -> Entries<'_> {
    let mut map: Entries<'_> = BTreeMap::new();
    for package in &lock.packages {
        map.entry((
            package.tool.comfypak.layer.clone(),
            package.name.to_string(),
        ))
        .or_default()
        .push(package);
    }
    map
}

fn wheel_set(packages: &[&LockedPackage]) -> BTreeSet<(String, String)> {
    packages
        .iter()
        .flat_map(|p| p.wheels.iter())
        .map(|w| {
            (
                w.name.to_string(),
                w.sha256().map(|s| s.to_string()).unwrap_or_default(),
            )
        })
        .collect()
}

fn bytes_of(packages: &[&LockedPackage]) -> u64 {
    packages
        .iter()
        .flat_map(|p| p.wheels.iter())
        .map(|w| w.size.unwrap_or(0))
        .sum()
}

fn versions(packages: &[&LockedPackage]) -> String {
    // By the written text, as before the lock was typed.
    let set: BTreeSet<String> = packages.iter().map(|p| p.version.to_string()).collect();
    set.into_iter().collect::<Vec<_>>().join(", ")
}

fn newest(packages: &[&LockedPackage]) -> Option<Version> {
    packages.iter().map(|p| p.version.clone()).max()
}

/// Compares two locks.
pub fn diff(old: &Lock, new: &Lock) -> LockDiff {
    let old_entries = entries(old);
    let new_entries = entries(new);
    let sides = Sides {
        old,
        new,
        old_layer_of: layer_of(&old_entries),
        new_layer_of: layer_of(&new_entries),
        old_wheels: wheel_hashes(old),
        old_entries,
        new_entries,
    };
    let layers = layer_order(old, new)
        .into_iter()
        .map(|(layer, rank)| layer_diff(&sides, layer, rank))
        .collect();
    LockDiff {
        layers,
        target_changes: target_changes(&old.tool.comfypak, &new.tool.comfypak),
    }
}

/// Both locks, their entries by (layer, name), where each package lives, and the old lock's
/// wheel hashes (what the cache may already hold).
struct Sides<'a> {
    old: &'a Lock,
    new: &'a Lock,
    old_entries: Entries<'a>,
    new_entries: Entries<'a>,
    old_layer_of: BTreeMap<String, String>,
    new_layer_of: BTreeMap<String, String>,
    old_wheels: BTreeSet<String>,
}

/// Where each package lives, for moves.
fn layer_of(entries: &Entries<'_>) -> BTreeMap<String, String> {
    entries
        .keys()
        .map(|(l, n)| (n.clone(), l.clone()))
        .collect()
}

fn wheel_hashes(lock: &Lock) -> BTreeSet<String> {
    lock.packages
        .iter()
        .flat_map(|p| p.wheels.iter())
        .filter_map(|w| w.sha256().map(|s| s.to_string()))
        .collect()
}

/// Layers in the new lock's order, then any only the old one has.
fn layer_order(old: &Lock, new: &Lock) -> Vec<(String, usize)> {
    let mut order: Vec<(String, usize)> = new
        .tool
        .comfypak
        .layers
        .iter()
        .map(|l| (l.name.clone(), l.rank))
        .collect();
    for l in &old.tool.comfypak.layers {
        if !order.iter().any(|(n, _)| *n == l.name) {
            order.push((l.name.clone(), l.rank));
        }
    }
    order
}

fn inputs_hash(lock: &Lock, layer: &str) -> Option<String> {
    lock.tool
        .comfypak
        .layers
        .iter()
        .find(|l| l.name == layer)
        .map(|l| l.inputs_hash.clone())
}

/// What changed in one layer: each package's change, the counts, and the bytes.
fn layer_diff(sides: &Sides<'_>, layer: String, rank: usize) -> LayerDiff {
    let mut changes = Vec::new();
    let names: BTreeSet<&String> = sides
        .old_entries
        .keys()
        .chain(sides.new_entries.keys())
        .filter(|(l, _)| *l == layer)
        .map(|(_, n)| n)
        .collect();
    let empty = Vec::new();
    let mut old_bytes = 0;
    let mut new_bytes = 0;
    let mut download_bytes = 0;
    for name in names {
        let key = (layer.clone(), name.clone());
        let before = sides.old_entries.get(&key).unwrap_or(&empty);
        let after = sides.new_entries.get(&key).unwrap_or(&empty);
        old_bytes += bytes_of(before);
        new_bytes += bytes_of(after);
        download_bytes += after
            .iter()
            .flat_map(|p| p.wheels.iter())
            .filter(|w| {
                w.sha256()
                    .is_none_or(|s| !sides.old_wheels.contains(s.as_str()))
            })
            .map(|w| w.size.unwrap_or(0))
            .sum::<u64>();
        changes.extend(classify(sides, &layer, name, before, after));
    }
    let added = changes
        .iter()
        .filter(|c| matches!(c.kind, ChangeKind::Added | ChangeKind::MovedIn))
        .count();
    let removed = changes
        .iter()
        .filter(|c| matches!(c.kind, ChangeKind::Removed | ChangeKind::MovedOut))
        .count();
    let modified = changes.len() - added - removed;
    // Index and marker changes alone install the same files: the layer's bytes stay.
    let changed = changes
        .iter()
        .any(|c| !matches!(c.kind, ChangeKind::IndexChanged | ChangeKind::MarkerChanged));
    LayerDiff {
        inputs_changed: inputs_hash(sides.old, &layer) != inputs_hash(sides.new, &layer),
        name: layer,
        rank,
        changed,
        added,
        removed,
        modified,
        old_bytes,
        new_bytes,
        download_bytes: if changed { download_bytes } else { 0 },
        changes,
    }
}

/// How package `name` of `layer` changed between its entries `before` and `after` (either
/// may be empty): added, removed, moved in or out, up- or downgraded, rebuilt, or its index
/// or markers changed.
fn classify(
    sides: &Sides<'_>,
    layer: &str,
    name: &String,
    before: &[&LockedPackage],
    after: &[&LockedPackage],
) -> Vec<PackageChange> {
    let change = |kind, detail: Option<String>| PackageChange {
        name: name.clone(),
        kind,
        old_version: (!before.is_empty()).then(|| versions(before)),
        new_version: (!after.is_empty()).then(|| versions(after)),
        detail,
    };
    let mut changes = Vec::new();
    match (before.is_empty(), after.is_empty()) {
        (true, false) => match sides.old_layer_of.get(name) {
            Some(from) if from != layer => {
                changes.push(change(ChangeKind::MovedIn, Some(format!("from {from}"))))
            }
            _ => changes.push(change(ChangeKind::Added, None)),
        },
        (false, true) => match sides.new_layer_of.get(name) {
            Some(to) if to != layer => {
                changes.push(change(ChangeKind::MovedOut, Some(format!("to {to}"))))
            }
            _ => changes.push(change(ChangeKind::Removed, None)),
        },
        (false, false) => {
            let (old_v, new_v) = (newest(before), newest(after));
            if versions(before) != versions(after) {
                let kind = if new_v < old_v {
                    ChangeKind::Downgraded
                } else {
                    ChangeKind::Upgraded
                };
                changes.push(change(kind, None));
            } else if wheel_set(before) != wheel_set(after) {
                changes.push(change(
                    ChangeKind::Rebuilt,
                    Some("wheel file or hash changed".to_string()),
                ));
            } else {
                let index = |ps: &[&LockedPackage]| {
                    ps.iter()
                        .map(|p| p.tool.comfypak.index_name.clone())
                        .collect::<BTreeSet<_>>()
                };
                let markers = |ps: &[&LockedPackage]| {
                    ps.iter().map(|p| p.marker.clone()).collect::<BTreeSet<_>>()
                };
                if index(before) != index(after) {
                    let show = |s: BTreeSet<String>| s.into_iter().collect::<Vec<_>>().join(",");
                    changes.push(change(
                        ChangeKind::IndexChanged,
                        Some(format!("{} -> {}", show(index(before)), show(index(after)))),
                    ));
                }
                if markers(before) != markers(after) {
                    changes.push(change(ChangeKind::MarkerChanged, None));
                }
            }
        }
        (true, true) => {}
    }
    changes
}

/// The target and backend lines of the diff.
fn target_changes(a: &ComfypakLock, b: &ComfypakLock) -> Vec<String> {
    let mut target_changes = Vec::new();
    if a.target != b.target {
        target_changes.push(format!(
            "target: python {}{} {:?} -> python {}{} {:?}",
            a.target.python,
            if a.target.free_threaded { "t" } else { "" },
            a.target.platforms,
            b.target.python,
            if b.target.free_threaded { "t" } else { "" },
            b.target.platforms
        ));
    }
    if a.torch_backend != b.torch_backend {
        target_changes.push(format!(
            "torch backend: {} -> {}",
            a.torch_backend, b.torch_backend
        ));
    }
    target_changes
}

impl LockDiff {
    /// Whether anything at all changed.
    pub fn has_changes(&self) -> bool {
        !self.target_changes.is_empty()
            || self
                .layers
                .iter()
                .any(|l| l.changed || !l.changes.is_empty())
    }

    /// Whether `layer` or any more stable layer changes content. `None` when no such layer.
    pub fn changes_at_or_below(&self, layer: &str) -> Option<bool> {
        let rank = self.layers.iter().find(|l| l.name == layer)?.rank;
        Some(
            self.layers
                .iter()
                .filter(|l| l.rank <= rank)
                .any(|l| l.changed),
        )
    }

    /// "stable unchanged (4.3 GB reused), deps changed (+2 -1 ~3, 310 MB), ..."
    pub fn summary(&self) -> String {
        self.layers
            .iter()
            .map(|l| {
                if l.changed {
                    format!(
                        "{} changed (+{} -{} ~{}, {} to download)",
                        l.name,
                        l.added,
                        l.removed,
                        l.modified,
                        human_bytes(l.download_bytes)
                    )
                } else {
                    format!("{} unchanged ({} reused)", l.name, human_bytes(l.new_bytes))
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Human text; `color` adds ANSI colours.
    pub fn to_text(&self, color: bool) -> String {
        let paint = |code: &str, text: &str| {
            if color {
                format!("\x1b[{code}m{text}\x1b[0m")
            } else {
                text.to_string()
            }
        };
        let mut out = String::new();
        for change in &self.target_changes {
            let _ = writeln!(out, "{}", paint("1;33", change));
        }
        for layer in &self.layers {
            let state = if layer.changed {
                paint("1;33", "changes")
            } else {
                paint("32", "unchanged")
            };
            let _ = writeln!(
                out,
                "{} {}: {} ({} -> {}, {} to download){}",
                layer.rank,
                paint("1", &layer.name),
                state,
                human_bytes(layer.old_bytes),
                human_bytes(layer.new_bytes),
                human_bytes(layer.download_bytes),
                if layer.inputs_changed {
                    ", inputs changed"
                } else {
                    ""
                }
            );
            for c in &layer.changes {
                let line = format!("  {} {}", c.kind.symbol(), describe(c));
                let code = match c.kind.symbol() {
                    "+" => "32",
                    "-" => "31",
                    _ => "33",
                };
                let _ = writeln!(out, "{}", paint(code, &line));
            }
        }
        let _ = writeln!(out, "{}", self.summary());
        out
    }

    /// A markdown table fit for a pull-request comment.
    pub fn to_markdown(&self) -> String {
        let mut out = String::from("### comfypak lock diff\n\n");
        for change in &self.target_changes {
            let _ = writeln!(out, "**{change}**\n");
        }
        out.push_str("| layer | image layer | packages | wheel bytes | to download |\n");
        out.push_str("| --- | --- | --- | --- | --- |\n");
        for l in &self.layers {
            let _ = writeln!(
                out,
                "| {} `{}` | {} | +{} -{} ~{} | {} → {} | {} |",
                l.rank,
                l.name,
                if l.changed { "**rebuilds**" } else { "reused" },
                l.added,
                l.removed,
                l.modified,
                human_bytes(l.old_bytes),
                human_bytes(l.new_bytes),
                human_bytes(l.download_bytes)
            );
        }
        let changed: Vec<&LayerDiff> = self
            .layers
            .iter()
            .filter(|l| !l.changes.is_empty())
            .collect();
        if !changed.is_empty() {
            out.push_str(
                "\n| layer | change | package | old | new |\n| --- | --- | --- | --- | --- |\n",
            );
            for l in changed {
                for c in &l.changes {
                    let _ = writeln!(
                        out,
                        "| `{}` | {} | `{}` | {} | {} |",
                        l.name,
                        kind_word(c.kind),
                        c.name,
                        c.old_version.as_deref().unwrap_or(""),
                        c.new_version.as_deref().unwrap_or("")
                    );
                }
            }
        }
        let _ = writeln!(out, "\n{}", self.summary());
        out
    }

    /// The JSON document (schema documented in README.md).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "changed": self.has_changes(),
            "summary": self.summary(),
            "target_changes": self.target_changes,
            "layers": self.layers,
        })
    }
}

fn kind_word(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Added => "added",
        ChangeKind::Removed => "removed",
        ChangeKind::Upgraded => "upgraded",
        ChangeKind::Downgraded => "downgraded",
        ChangeKind::Rebuilt => "rebuilt",
        ChangeKind::MovedIn => "moved in",
        ChangeKind::MovedOut => "moved out",
        ChangeKind::IndexChanged => "index changed",
        ChangeKind::MarkerChanged => "marker changed",
    }
}

fn describe(c: &PackageChange) -> String {
    let versions = match (&c.old_version, &c.new_version) {
        (Some(a), Some(b)) if a != b => format!("{a} -> {b}"),
        (Some(a), _) => a.clone(),
        (None, Some(b)) => b.clone(),
        (None, None) => String::new(),
    };
    let mut text = format!("{} {} {}", c.name, versions, kind_word(c.kind));
    if let Some(detail) = &c.detail {
        text.push_str(&format!(" ({detail})"));
    }
    text
}

/// One image layer's part of a diff, when packages whose largest wheel reaches a threshold
/// have image layers of their own (`comfypak pack --split-threshold`, the same rule): the
/// distribution's layer `LAYER/NAME`, or the rest of the stack layer `LAYER`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageLayerDiff {
    /// `stable/torch`, or `stable` for the rest.
    pub name: String,
    /// Whether its content (and so its digest) changes: its packages' wheel files differ.
    pub changed: bool,
    /// Wheel bytes of its packages in the old and new lock (all platforms).
    pub old_bytes: u64,
    pub new_bytes: u64,
}

/// The image layers of both locks under `threshold` (`None`: one per stack layer), in image
/// order: per stack layer, its large distributions by name, then the rest.
pub fn image_layers(old: &Lock, new: &Lock, threshold: Option<u64>) -> Vec<ImageLayerDiff> {
    // Image layer name -> its packages' (wheel name, sha256) and wheel bytes, per lock.
    type Contents = BTreeMap<String, (BTreeSet<(String, String)>, u64)>;
    let contents = |lock: &Lock| -> Contents {
        let mut map: Contents = BTreeMap::new();
        // A package is large when any of its entries' wheels reaches the threshold.
        let large: BTreeSet<(&str, String)> = lock
            .packages
            .iter()
            .filter(|p| {
                let largest = p.wheels.iter().filter_map(|w| w.size).max();
                threshold.is_some_and(|t| largest.is_some_and(|size| size >= t))
            })
            .map(|p| (p.tool.comfypak.layer.as_str(), p.name.to_string()))
            .collect();
        for p in &lock.packages {
            let layer = &p.tool.comfypak.layer;
            let own = large.contains(&(layer.as_str(), p.name.to_string()));
            let name = if own {
                format!("{layer}/{}", p.name)
            } else {
                layer.clone()
            };
            let entry = map.entry(name).or_default();
            entry.0.extend(p.wheels.iter().map(|w| {
                (
                    w.name.to_string(),
                    w.sha256().map(|s| s.to_string()).unwrap_or_default(),
                )
            }));
            entry.1 += p.wheels.iter().filter_map(|w| w.size).sum::<u64>();
        }
        map
    };
    let (before, after) = (contents(old), contents(new));
    let mut order: Vec<String> = new.layer_names().iter().map(|s| s.to_string()).collect();
    for name in old.layer_names() {
        if !order.iter().any(|n| n == name) {
            order.push(name.to_string());
        }
    }
    let empty = (BTreeSet::new(), 0);
    let mut out = Vec::new();
    for layer in order {
        let prefix = format!("{layer}/");
        let own: BTreeSet<&String> = before
            .keys()
            .chain(after.keys())
            .filter(|n| n.starts_with(&prefix))
            .collect();
        for name in own.into_iter().chain(std::iter::once(&layer)) {
            let (a, b) = (
                before.get(name).unwrap_or(&empty),
                after.get(name).unwrap_or(&empty),
            );
            out.push(ImageLayerDiff {
                name: name.clone(),
                changed: a.0 != b.0,
                old_bytes: a.1,
                new_bytes: b.1,
            });
        }
    }
    out
}

/// What makes `existing` stale against `fresh` (the lock the inputs resolve to now), one line
/// per finding, most stable layer first; empty when the two write the same bytes.
pub fn staleness(existing: &Lock, fresh: &Lock) -> Vec<String> {
    if existing.to_toml_string() == fresh.to_toml_string() {
        return Vec::new();
    }
    let mut lines = Vec::new();
    let result = diff(existing, fresh);
    for change in &result.target_changes {
        lines.push(format!("target: {change}"));
    }
    let old_layers: Vec<&str> = existing.layer_names();
    let new_layers: Vec<&str> = fresh.layer_names();
    if old_layers != new_layers {
        lines.push(format!(
            "layers: the lock has {}, the stack has {}",
            old_layers.join(", "),
            new_layers.join(", ")
        ));
    }
    for layer in &result.layers {
        if layer.inputs_changed {
            lines.push(format!(
                "layer `{}`: its inputs changed (pak lines, constraints or target: the inputs-hash differs)",
                layer.name
            ));
        }
        for change in &layer.changes {
            let versions = match (&change.old_version, &change.new_version) {
                (Some(old), Some(new)) if old != new => format!(" {old} -> {new}"),
                (Some(v), _) | (None, Some(v)) => format!(" {v}"),
                (None, None) => String::new(),
            };
            let detail = change
                .detail
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default();
            lines.push(format!(
                "layer `{}`: {}{versions}: {}{detail}",
                layer.name,
                change.name,
                kind_word(change.kind)
            ));
        }
    }
    // Sources that moved under the same requirement: a branch at another commit, an sdist
    // or folder with other bytes.
    for new in &fresh.packages {
        let Some(old) = existing.packages.iter().find(|p| p.name == new.name) else {
            continue;
        };
        if let (Some(a), Some(b)) = (&old.vcs, &new.vcs) {
            if a.url == b.url && a.commit_id != b.commit_id {
                lines.push(format!(
                    "{}: {} at {} moved from commit {} to {}",
                    new.name,
                    b.url,
                    b.requested_revision.as_deref().unwrap_or("HEAD"),
                    a.commit_id,
                    b.commit_id
                ));
            }
        }
        if let (Some(a), Some(b)) = (&old.sdist, &new.sdist) {
            if a.hashes.sha256 != b.hashes.sha256 && (a.url == b.url && a.path == b.path) {
                lines.push(format!(
                    "{}: its sdist {} has another sha256 now",
                    new.name,
                    b.url.as_deref().or(b.path.as_deref()).unwrap_or_default()
                ));
            }
        }
        if old.directory.is_some()
            && old.directory == new.directory
            && old.tool.comfypak.source_hash != new.tool.comfypak.source_hash
        {
            lines.push(format!(
                "{}: the folder {} changed",
                new.name,
                new.directory
                    .as_ref()
                    .map(|d| d.path.as_str())
                    .unwrap_or_default()
            ));
        }
    }
    if lines.is_empty() {
        lines.push(
            "the entries' details differ (dependencies, required-by, markers or index URLs)"
                .to_string(),
        );
    }
    lines
}

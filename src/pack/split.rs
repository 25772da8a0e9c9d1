//! A layer per large distribution: one stack layer's tar entries cut into several image
//! layers, so that a torch bump that keeps the nvidia-* pins rebuilds (and pushes) the torch
//! layer only, and a registry shares the nvidia-* layers between images of different stacks.
//!
//! The rule ([`large_distributions`]): a package of the lock whose largest locked wheel is at
//! least the threshold ([`DEFAULT_SPLIT_THRESHOLD`], `[pack] split-threshold` in stack.toml,
//! `--split-threshold`) gets an image layer of its own inside its stack layer's rank; the
//! rest of the stack layer (smaller distributions, the venv skeleton, files no RECORD names,
//! files that two RECORDs name) stays together in one image layer. The wheel size comes from
//! the lock, so the split is known before anything is installed (`comfypak diff` reports
//! per image layer from the two locks alone) and is the same on every platform. Order inside
//! a rank: the distribution layers by normalized name, then the rest. Which stack layer a
//! package belongs to never changes; this only cuts a rank's bytes into more blobs.
//!
//! Which file belongs to which distribution comes from the installed `RECORD` of each
//! distribution (the `.pyc` files included: the compile step lists them). Each part carries
//! the parent directories of its files (identical directory entries in several layers merge
//! in the overlay); a hard link whose first name went to another part is written as a file.
//!
//! Images hold at most [`MAX_LAYERS`] layers (Docker's overlay2 limit, which podman and
//! containerd share in practice); a split beyond it is refused with what to change.
//!
//! This module must not write blobs (that is [`super::layer`]) nor decide a package's stack
//! layer (that is the resolver's).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use super::tar::{Entry, EntryKind};
use super::PackError;
use crate::lock::Lock;

/// Packages whose largest wheel is at least this many bytes get their own image layer
/// unless the stack or a flag says otherwise: 32 MiB. On the torch 2.11 cu130 closure it cuts
/// out torch, triton and the large nvidia-* libraries (about 95 % of the installed bytes; the
/// README's "A layer per large distribution" has the measurement) and keeps numpy, sympy,
/// torchvision and the small packages in the rest; the offline fixture's wheels are all far
/// below it, so that build keeps one layer per stack layer.
pub const DEFAULT_SPLIT_THRESHOLD: u64 = 32 << 20;

/// The most layers an image may have (base layers included).
pub const MAX_LAYERS: usize = 127;

/// The annotation naming the distribution of a per-distribution layer (the stack layer is
/// in `io.comfypak.layer`).
pub const DISTRIBUTION: &str = "io.comfypak.distribution";

/// The packages of `layer` in `lock` that get an image layer of their own under
/// `threshold`: normalized names, sorted (the order of their layers).
pub fn large_distributions(lock: &Lock, layer: &str, threshold: u64) -> Vec<String> {
    let set: BTreeSet<String> = lock
        .layer_packages(layer)
        .filter(|p| {
            p.wheels
                .iter()
                .filter_map(|w| w.size)
                .max()
                .is_some_and(|size| size >= threshold)
        })
        .map(|p| normalize(p.name.as_ref()))
        .collect();
    set.into_iter().collect()
}

/// `Foo_Bar.baz` → `foo-bar-baz` (PEP 503).
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut separator = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            separator = true;
            continue;
        }
        if separator && !out.is_empty() {
            out.push('-');
        }
        separator = false;
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// One image layer cut from a stack layer.
#[derive(Debug, Clone)]
pub struct Part {
    /// The distribution (normalized name) alone in this part; `None` for the rest.
    pub distribution: Option<String>,
    /// Its version, from the `.dist-info` folder name.
    pub version: Option<String>,
    /// Tar entries, in tar order.
    pub entries: Vec<Entry>,
}

/// Cuts the entries of one stack layer (`layer_dir`, collected with
/// [`super::tar::collect_entries`]) into one part per distribution of `distributions`
/// installed there (sorted by name) followed by the rest. `site_packages` is the in-image
/// site-packages path (`/opt/comfyui/venv/lib/python3.14/site-packages`). A distribution of
/// the list that is not installed in this tree (a marker left it out on this platform) gets
/// no part.
pub fn split_entries(
    layer_dir: &Path,
    site_packages: &str,
    entries: Vec<Entry>,
    distributions: &[String],
) -> Result<Vec<Part>, PackError> {
    let site_rel = site_packages.trim_matches('/');
    let wanted: BTreeSet<&str> = distributions.iter().map(String::as_str).collect();
    // Which distribution (index into `found`) owns each path; paths two RECORDs name are
    // left to the rest.
    let mut found: Vec<(String, String)> = Vec::new();
    let mut owner: HashMap<Vec<u8>, Option<usize>> = HashMap::new();
    let site_dir = layer_dir.join(site_rel);
    let mut dist_infos: Vec<(String, String, String)> = Vec::new();
    if site_dir.is_dir() {
        let read = std::fs::read_dir(&site_dir).map_err(|source| PackError::Io {
            path: site_dir.clone(),
            source,
        })?;
        for item in read {
            let item = item.map_err(|source| PackError::Io {
                path: site_dir.clone(),
                source,
            })?;
            let file_name = item.file_name();
            let Some(dir_name) = file_name.to_str() else {
                continue;
            };
            let Some(stem) = dir_name.strip_suffix(".dist-info") else {
                continue;
            };
            let Some((name, version)) = stem.split_once('-') else {
                continue;
            };
            let name = normalize(name);
            if wanted.contains(name.as_str()) {
                dist_infos.push((name, version.to_string(), dir_name.to_string()));
            }
        }
    }
    dist_infos.sort();
    for (name, version, dir_name) in dist_infos {
        if found.iter().any(|(n, _)| *n == name) {
            return Err(PackError::BadLayout {
                path: site_dir.clone(),
                message: format!(
                    "two .dist-info folders for `{name}`; reinstall the layer with `comfypak install`"
                ),
            });
        }
        let index = found.len();
        found.push((name, version));
        let record = site_dir.join(&dir_name).join("RECORD");
        let text = std::fs::read(&record).map_err(|source| PackError::Io {
            path: record.clone(),
            source,
        })?;
        for path in record_paths(&text) {
            let Some(full) = join_relative(site_rel, &path) else {
                continue;
            };
            owner
                .entry(full)
                .and_modify(|o| {
                    if *o != Some(index) {
                        *o = None;
                    }
                })
                .or_insert(Some(index));
        }
    }
    let rest = found.len();
    // The part of every non-directory entry; the parts each directory is needed in.
    let part_of = |path: &[u8]| -> usize { owner.get(path).copied().flatten().unwrap_or(rest) };
    let mut needs: HashMap<&[u8], BTreeSet<usize>> = HashMap::new();
    for entry in &entries {
        if entry.kind == EntryKind::Directory {
            continue;
        }
        let part = part_of(&entry.path);
        let mut path: &[u8] = &entry.path;
        while let Some(slash) = path.iter().rposition(|&b| b == b'/') {
            path = &path[..slash];
            needs.entry(path).or_default().insert(part);
        }
    }
    let mut parts: Vec<Vec<Entry>> = vec![Vec::new(); rest + 1];
    // Hard links: (first name) → the first name in each part that holds the bytes.
    let mut first_in_part: HashMap<(Vec<u8>, usize), Vec<u8>> = HashMap::new();
    let mut files: HashMap<&[u8], &Entry> = HashMap::new();
    for entry in &entries {
        match &entry.kind {
            EntryKind::Directory => match needs.get(entry.path.as_slice()) {
                Some(set) => {
                    for &part in set {
                        parts[part].push(entry.clone());
                    }
                }
                None => parts[rest].push(entry.clone()),
            },
            EntryKind::File { .. } => {
                files.insert(&entry.path, entry);
                parts[part_of(&entry.path)].push(entry.clone());
            }
            EntryKind::HardLink { target } => {
                let part = part_of(&entry.path);
                if part_of(target) == part {
                    parts[part].push(entry.clone());
                    continue;
                }
                let key = (target.clone(), part);
                if let Some(first) = first_in_part.get(&key) {
                    parts[part].push(Entry {
                        path: entry.path.clone(),
                        kind: EntryKind::HardLink {
                            target: first.clone(),
                        },
                        source: None,
                        owner: entry.owner,
                    });
                    continue;
                }
                let Some(file) = files.get(target.as_slice()) else {
                    return Err(PackError::BadLayout {
                        path: layer_dir.to_path_buf(),
                        message: format!(
                            "hard link {} points at {}, which is not a file of the layer",
                            String::from_utf8_lossy(&entry.path),
                            String::from_utf8_lossy(target)
                        ),
                    });
                };
                first_in_part.insert(key, entry.path.clone());
                parts[part].push(Entry {
                    path: entry.path.clone(),
                    kind: file.kind.clone(),
                    source: file.source.clone(),
                    owner: entry.owner,
                });
            }
            EntryKind::Symlink { .. } => parts[part_of(&entry.path)].push(entry.clone()),
        }
    }
    let mut out = Vec::with_capacity(parts.len());
    for (i, entries) in parts.into_iter().enumerate() {
        let (distribution, version) = match found.get(i) {
            Some((name, version)) => (Some(name.clone()), Some(version.clone())),
            None => (None, None),
        };
        out.push(Part {
            distribution,
            version,
            entries,
        });
    }
    Ok(out)
}

/// The path column of RECORD text (CSV: the first field, maybe quoted with `""` escapes).
fn record_paths(text: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for line in text.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let field = if let Some(rest) = line.strip_prefix(b"\"") {
            let mut field = Vec::new();
            let mut i = 0;
            while i < rest.len() {
                match rest[i] {
                    b'"' if rest.get(i + 1) == Some(&b'"') => {
                        field.push(b'"');
                        i += 2;
                    }
                    b'"' => break,
                    b => {
                        field.push(b);
                        i += 1;
                    }
                }
            }
            field
        } else {
            let end = line.iter().position(|&b| b == b',').unwrap_or(line.len());
            line[..end].to_vec()
        };
        if !field.is_empty() {
            out.push(field);
        }
    }
    out
}

/// `base` (relative, `/`-separated) joined with a RECORD path (relative to it, may climb
/// with `..`, as scripts in `../../../bin` do); `None` when it climbs out of the tree.
fn join_relative(base: &str, path: &[u8]) -> Option<Vec<u8>> {
    let mut parts: Vec<&[u8]> = base
        .as_bytes()
        .split(|&b| b == b'/')
        .filter(|p| !p.is_empty())
        .collect();
    for component in path.split(|&b| b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => {
                parts.pop()?;
            }
            other => parts.push(other),
        }
    }
    Some(parts.join(&b'/'))
}

/// The names of a split, for messages and reports: `stable/torch`.
pub fn part_name(layer: &str, distribution: Option<&str>) -> String {
    match distribution {
        Some(d) => format!("{layer}/{d}"),
        None => layer.to_string(),
    }
}

/// Counts layers against [`MAX_LAYERS`]: `base` layers, then `per_layer` gives each stack
/// or directory layer's image layer count, in image order.
pub fn check_layer_count(
    platform: &str,
    base: usize,
    per_layer: &[(String, usize)],
    threshold: Option<u64>,
) -> Result<(), PackError> {
    let total = base + per_layer.iter().map(|(_, c)| c).sum::<usize>();
    if total <= MAX_LAYERS {
        return Ok(());
    }
    let detail: Vec<String> = per_layer.iter().map(|(n, c)| format!("{n} {c}")).collect();
    Err(PackError::TooManyLayers {
        platform: platform.to_string(),
        total,
        base,
        detail: detail.join(", "),
        threshold: threshold
            .map(crate::units::human_bytes)
            .unwrap_or_else(|| "off".to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_paths_read_quoted_fields() {
        let text =
            b"a/b.py,sha256=x,1\r\n\"c,d.py\",sha256=y,2\n\"e\"\"f\",,\n\n../../../bin/tool,,\n";
        assert_eq!(
            record_paths(text),
            vec![
                b"a/b.py".to_vec(),
                b"c,d.py".to_vec(),
                b"e\"f".to_vec(),
                b"../../../bin/tool".to_vec()
            ]
        );
    }

    #[test]
    fn relative_paths_climb_within_the_tree() {
        let site = "opt/venv/lib/python3.14/site-packages";
        assert_eq!(
            join_relative(site, b"../../../bin/tool").as_deref(),
            Some(&b"opt/venv/bin/tool"[..])
        );
        assert_eq!(join_relative("a", b"../../x"), None);
    }

    #[test]
    fn names_normalize() {
        assert_eq!(normalize("nvidia_cudnn_cu13"), "nvidia-cudnn-cu13");
        assert_eq!(normalize("Foo.._Bar"), "foo-bar");
    }
}

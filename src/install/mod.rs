//! Installing the locked wheels of one layer into that layer's prefix, the way the binary
//! distribution format spec (and pip) install a wheel, but fast and all-or-nothing.
//!
//! Flow for one layer: each wheel is unpacked once into the cache's unpacked store
//! ([`wheel`], verified against its RECORD); [`layout`] plans where every file goes and
//! which files the installer generates; paths written by two packages (in this layer, or in
//! this layer and another one) are conflicts; then the files are hard-linked (or reflinked,
//! or copied: [`link`]) into a staging folder, directory by directory, different
//! directories in parallel (`DirTree`), bytecode is compiled when asked,
//! RECORDs are written, and the staging folder is renamed to `<out>/layers/<layer>` only
//! when everything succeeded. A failure leaves the previous layer folder untouched.
//!
//! Must not: resolve, download (callers fetch first) or pack.

pub mod layout;
pub mod link;
pub mod record;
pub mod wheel;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::cache::Cache;
use crate::digest::Sha256Hex;
use crate::filename::SafeFileName;
use layout::{plan_wheel, EnvPaths, FileSource, LayoutError, PackageFacts, WheelPlan};
use link::{place, DirFd, LinkMode, Placed};
use wheel::{ensure_unpacked, read_manifest_light, unpacked_dir, WheelError};

/// Why a layer could not be installed. The layer folder is untouched in every case.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("layer name `{name}` cannot be a folder name")]
    BadLayerName { name: String },
    #[error("venv path `{venv}` in the lock must be absolute and have no `..` (e.g. /opt/venv)")]
    BadVenv { venv: String },
    #[error(transparent)]
    Wheel(#[from] WheelError),
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("{} path{} would be written by two packages:\n{}{}",
        conflicts.len(),
        if conflicts.len() == 1 { "" } else { "s" },
        conflicts.iter().take(20).map(|c| format!("  - {c}")).collect::<Vec<_>>().join("\n"),
        if conflicts.len() > 20 { format!("\n  ... and {} more", conflicts.len() - 20) } else { String::new() })]
    Conflicts { conflicts: Vec<Conflict> },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl InstallError {
    /// What the user can do about it.
    pub fn help(&self) -> Option<String> {
        match self {
            InstallError::Wheel(e) => e.help(),
            InstallError::Conflicts { .. } => Some("fix the stack so one package owns each file, or pass --allow-overwrite to keep the upper layer's file (the later package within one layer)".to_string()),
            _ => None,
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> InstallError + '_ {
    move |source| InstallError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One path claimed by two packages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// Relative to the environment root.
    pub path: String,
    pub first_package: String,
    pub first_layer: String,
    pub second_package: String,
    pub second_layer: String,
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} (layer {}) and {} (layer {})",
            self.path, self.first_package, self.first_layer, self.second_package, self.second_layer
        )
    }
}

/// Install settings.
#[derive(Debug, Clone, Default)]
pub struct InstallOptions {
    pub link_mode: LinkMode,
    /// Keep the upper layer's (or, within one layer, the later package's) file instead of
    /// failing on a conflict.
    pub allow_overwrite: bool,
}

/// A fetched wheel and what the lock says about its package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallWheel {
    pub package: String,
    pub layer: String,
    pub requested: bool,
    pub direct_url: Option<String>,
    pub filename: SafeFileName,
    /// The sha256 of the wheel file.
    pub sha256: Sha256Hex,
    /// The wheel in the cache.
    pub path: PathBuf,
    /// Members whose RECORD row is accepted as wrong (the lock's `record-mismatch`), with the
    /// reason: installed as they are, reported, and listed with their true hash in RECORD.
    pub accepted_record: Vec<(String, String)>,
}

impl InstallWheel {
    fn facts(&self) -> PackageFacts {
        PackageFacts {
            package: self.package.clone(),
            requested: self.requested,
            direct_url: self
                .direct_url
                .as_ref()
                .map(|url| (url.clone(), self.sha256.to_string())),
        }
    }
}

/// The files another layer installs (for cross-layer conflict checks).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerFiles {
    pub layer: String,
    /// Path relative to the environment root → package.
    pub owners: FxHashMap<String, String>,
}

/// The paths `wheels` would install, read from the unpacked store when there, else from
/// the wheel archives (without unpacking them).
pub fn layer_files(
    cache: &Cache,
    layer: &str,
    wheels: &[InstallWheel],
    env: &EnvPaths,
) -> Result<LayerFiles, InstallError> {
    let plans: Vec<WheelPlan> = wheels
        .par_iter()
        .map(|w| {
            let dir = unpacked_dir(cache, &w.sha256);
            let manifest = match std::fs::read(dir.join("manifest.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<wheel::WheelManifest>(&b).ok())
            {
                Some(m) => m,
                None => read_manifest_light(&w.path, &w.filename, &w.sha256)?,
            };
            Ok(plan_wheel(&manifest, None, env, &w.facts())?)
        })
        .collect::<Result<_, InstallError>>()?;
    let mut owners = FxHashMap::default();
    for plan in plans {
        for file in plan.files {
            owners.insert(file.dest, plan.package.clone());
        }
    }
    Ok(LayerFiles {
        layer: layer.to_string(),
        owners,
    })
}

/// What an install did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstallReport {
    pub layer: String,
    /// `<out>/layers/<layer>`.
    pub dir: PathBuf,
    pub packages: usize,
    /// Files placed, generated ones included (RECORDs excluded).
    pub files: usize,
    pub linked: usize,
    pub reflinked: usize,
    pub copied: usize,
    pub generated: usize,
    pub compiled: usize,
    pub bytes: u64,
    /// Conflicts resolved by `--allow-overwrite`.
    pub overwritten: Vec<Conflict>,
    /// Files installed although their wheel's RECORD row was wrong, because the lock accepts
    /// exactly that (`record-mismatch`): `WHEEL: FILE (REASON)`.
    pub record_mismatch: Vec<String>,
}

/// `<out>/layers/<layer>`, checking the name.
pub fn layer_dir(out: &Path, layer: &str) -> Result<PathBuf, InstallError> {
    if layer.is_empty()
        || layer == "."
        || layer == ".."
        || layer.starts_with('.')
        || layer.contains(['/', '\\', '\0'])
    {
        return Err(InstallError::BadLayerName {
            name: layer.to_string(),
        });
    }
    Ok(out.join("layers").join(layer))
}

/// Installs `wheels` as layer `layer` under `out`, checking conflicts against `others`.
pub fn install_layer(
    cache: &Cache,
    out: &Path,
    env: &EnvPaths,
    layer: &str,
    wheels: &[InstallWheel],
    others: &[LayerFiles],
    options: &InstallOptions,
) -> Result<InstallReport, InstallError> {
    let final_dir = layer_dir(out, layer)?;
    if !env.venv.starts_with('/') || env.venv.split('/').any(|c| c == "..") {
        return Err(InstallError::BadVenv {
            venv: env.venv.clone(),
        });
    }
    let planned: Vec<(WheelPlan, Vec<String>)> = wheels
        .par_iter()
        .map(|w| {
            let accepted: Vec<&str> = w.accepted_record.iter().map(|(f, _)| f.as_str()).collect();
            let unpacked = ensure_unpacked(cache, &w.path, &w.filename, &w.sha256, &accepted)?;
            let mismatched = unpacked
                .manifest
                .record_mismatch
                .iter()
                .map(|file| {
                    let reason = w
                        .accepted_record
                        .iter()
                        .find(|(f, _)| f == file)
                        .map_or("", |(_, r)| r.as_str());
                    format!("{}: {file} ({reason})", w.filename)
                })
                .collect();
            Ok((
                plan_wheel(&unpacked.manifest, Some(&unpacked.tree), env, &w.facts())?,
                mismatched,
            ))
        })
        .collect::<Result<_, InstallError>>()?;
    let (plans, mismatched): (Vec<WheelPlan>, Vec<Vec<String>>) = planned.into_iter().unzip();

    // Conflicts: within the layer (later package wins when allowed), and with other layers.
    // Keys are tens of thousands of short paths: a fast unkeyed hash (SipHash was a visible
    // part of a warm install's user time). Names crafted to collide could only slow down the
    // install of the wheels that carry them.
    let mut owner: FxHashMap<&str, (usize, usize)> = FxHashMap::default();
    owner.reserve(plans.iter().map(|p| p.files.len()).sum());
    let mut skipped: BTreeSet<(usize, usize)> = BTreeSet::new();
    let mut conflicts = Vec::new();
    for (pi, plan) in plans.iter().enumerate() {
        for (fi, file) in plan.files.iter().enumerate() {
            if let Some((pj, fj)) = owner.insert(file.dest.as_str(), (pi, fi)) {
                skipped.insert((pj, fj));
                conflicts.push(Conflict {
                    path: file.dest.clone(),
                    first_package: plans[pj].package.clone(),
                    first_layer: layer.to_string(),
                    second_package: plan.package.clone(),
                    second_layer: layer.to_string(),
                });
            }
            for other in others.iter().filter(|o| o.layer != layer) {
                if let Some(package) = other.owners.get(&file.dest) {
                    conflicts.push(Conflict {
                        path: file.dest.clone(),
                        first_package: package.clone(),
                        first_layer: other.layer.clone(),
                        second_package: plan.package.clone(),
                        second_layer: layer.to_string(),
                    });
                }
            }
        }
    }
    if !conflicts.is_empty() && !options.allow_overwrite {
        conflicts.sort_by(|a, b| a.path.cmp(&b.path));
        return Err(InstallError::Conflicts { conflicts });
    }

    let layers_dir = out.join("layers");
    std::fs::create_dir_all(&layers_dir).map_err(io_err(&layers_dir))?;
    // What a killed earlier install of this layer left: put the old layer back, or clean up.
    crate::fsutil::recover_dir(&final_dir).map_err(io_err(&final_dir))?;
    let staging = crate::fsutil::staging_sibling(&final_dir);
    let result = build_tree(&staging, env, &plans, &skipped, options);
    let mut report = match result {
        Ok(report) => report,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    // Swap the finished tree into place, by renames only.
    if let Err(e) = crate::fsutil::replace_dir(&staging, &final_dir) {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(io_err(&final_dir)(e));
    }
    report.layer = layer.to_string();
    report.dir = final_dir;
    report.packages = plans.len();
    conflicts.sort_by(|a, b| a.path.cmp(&b.path));
    report.overwritten = conflicts;
    report.record_mismatch = mismatched.into_iter().flatten().collect();
    Ok(report)
}

/// Places every planned file under `staging`, compiles, writes RECORDs.
fn build_tree(
    staging: &Path,
    env: &EnvPaths,
    plans: &[WheelPlan],
    skipped: &BTreeSet<(usize, usize)>,
    options: &InstallOptions,
) -> Result<InstallReport, InstallError> {
    let root = staging.join(env.venv_relative());
    // Each file with the plan (wheel) it comes from.
    let placements: Vec<(usize, &layout::PlannedFile)> = plans
        .iter()
        .enumerate()
        .flat_map(|(pi, plan)| {
            plan.files
                .iter()
                .enumerate()
                .filter(move |(fi, _)| !skipped.contains(&(pi, *fi)))
                .map(move |(_, f)| (pi, f))
        })
        .collect();
    std::fs::create_dir_all(&root).map_err(io_err(&root))?;
    let tree = DirTree::new(
        &placements,
        plans.iter().map(|plan| plan.dist_info_dest.as_str()),
    );
    // Each wheel's store tree, opened once: a file is linked from it by its member path, so
    // no store folder is opened (or walked to from `/`) per folder of the layer.
    let sources: Vec<SourceTree> = plans
        .iter()
        .map(|plan| match (&plan.tree, options.link_mode) {
            (Some(path), LinkMode::Hardlink) => SourceTree {
                prefix: path.as_os_str().len(),
                fd: DirFd::open(path).ok(),
            },
            _ => SourceTree::default(),
        })
        .collect();
    let counts = PlaceCounts::default();
    let root_fd = DirFd::open(&root).map_err(io_err(&root))?;
    let ctx = BuildContext {
        root: &root,
        sources: &sources,
        mode: options.link_mode,
        counts: &counts,
    };
    tree.build(&ctx, "", &root_fd)?;
    // Bytecode is the target runtime's (runtime::compile), added after the install.
    let extra: Vec<Vec<ExtraFile>> = vec![Vec::new(); plans.len()];
    plans.par_iter().zip(&extra).try_for_each(|(plan, extra)| {
        let path = root.join(plan.record_dest());
        std::fs::write(&path, plan.record(env, extra)).map_err(io_err(&path))?;
        wheel::set_mode(&path, false).map_err(io_err(&path))
    })?;
    Ok(InstallReport {
        files: placements.len(),
        linked: counts.linked.into_inner(),
        reflinked: counts.reflinked.into_inner(),
        copied: counts.copied.into_inner(),
        generated: counts.generated.into_inner(),
        bytes: counts.bytes.into_inner(),
        ..InstallReport::default()
    })
}

/// How the files of a tree were placed.
#[derive(Default)]
struct PlaceCounts {
    linked: AtomicUsize,
    reflinked: AtomicUsize,
    copied: AtomicUsize,
    generated: AtomicUsize,
    bytes: AtomicU64,
}

/// A wheel's unpacked store tree, open for linking from (`fd` is `None` when the files are
/// not hard-linked, or the tree could not be opened: then each file is placed by path).
#[derive(Default)]
struct SourceTree {
    /// The length of the tree's path: a store source path is the tree's path, `/`, and the
    /// member path.
    prefix: usize,
    fd: Option<DirFd>,
}

impl SourceTree {
    /// The open tree and `src`'s member path below it, when `src` is below this tree.
    fn member<'s>(&self, src: &'s Path) -> Option<(&DirFd, &'s std::ffi::OsStr)> {
        use std::os::unix::ffi::OsStrExt;
        let fd = self.fd.as_ref()?;
        let bytes = src.as_os_str().as_bytes();
        match bytes.get(self.prefix..)? {
            [b'/', member @ ..] if !member.is_empty() => {
                Some((fd, std::ffi::OsStr::from_bytes(member)))
            }
            _ => None,
        }
    }
}

/// What every folder of a layer build shares.
struct BuildContext<'a> {
    /// The environment root in the staging folder (for paths in errors and fallbacks).
    root: &'a Path,
    /// By plan index.
    sources: &'a [SourceTree],
    mode: LinkMode,
    counts: &'a PlaceCounts,
}

/// The directories and files of a layer, by parent directory (`/`-separated paths relative
/// to the environment root, as the plan has them; the root is "").
///
/// Building it is nearly all kernel work: a new inode per directory (files are links to
/// store files) and a directory entry per file, each under its parent directory's lock. So
/// one thread fills a directory (its subdirectories, then its files) and the subdirectories
/// are then filled in parallel: threads work in different directories instead of queueing
/// for the same lock.
///
/// Keyed by `&str` with a fast hash: hashing `Path`s (component by component, SipHash) was a
/// fifth of a warm install's user time on a 40,000-file layer, on the one thread that plans.
struct DirTree<'a> {
    children: FxHashMap<&'a str, (Vec<&'a str>, Vec<Placement<'a>>)>,
}

/// A file to place and the index of the plan (wheel) it comes from.
type Placement<'a> = (usize, &'a layout::PlannedFile);

/// The parent of a `/`-separated relative path ("" for a top-level name).
fn parent_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(parent, _)| parent)
}

/// The last component of a `/`-separated relative path.
fn base_name(path: &str) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(path.rsplit_once('/').map_or(path, |(_, name)| name))
}

impl<'a> DirTree<'a> {
    fn new(files: &[Placement<'a>], extra_dirs: impl Iterator<Item = &'a str>) -> Self {
        let mut children: FxHashMap<&'a str, (Vec<&'a str>, Vec<Placement<'a>>)> =
            FxHashMap::default();
        // Directories already listed under their parent.
        let mut listed: FxHashSet<&'a str> = FxHashSet::default();
        let mut add_dir = |children: &mut FxHashMap<&'a str, _>, dir: &'a str| {
            let mut dir = dir;
            while !dir.is_empty() {
                if !listed.insert(dir) {
                    break;
                }
                let parent = parent_of(dir);
                let entry: &mut (Vec<&'a str>, Vec<_>) = children.entry(parent).or_default();
                entry.0.push(dir);
                dir = parent;
            }
        };
        // Files come grouped by package and folder: look a folder up once per run of its files.
        let mut last: Option<(&'a str, Vec<Placement<'a>>)> = None;
        for file in files {
            let parent = parent_of(&file.1.dest);
            match &mut last {
                Some((dir, run)) if *dir == parent => run.push(*file),
                _ => {
                    if let Some((dir, run)) = last.take() {
                        children.entry(dir).or_default().1.extend(run);
                    }
                    add_dir(&mut children, parent);
                    last = Some((parent, vec![*file]));
                }
            }
        }
        if let Some((dir, run)) = last {
            children.entry(dir).or_default().1.extend(run);
        }
        for dir in extra_dirs {
            add_dir(&mut children, dir);
        }
        for (dirs, _) in children.values_mut() {
            dirs.sort_unstable();
        }
        DirTree { children }
    }

    /// Creates the subdirectories of `dir` (which exists, open as `fd`) and places its files,
    /// then does the same for each subdirectory, in parallel. Every name is created from an
    /// open directory (`*at` calls), so no call walks the long layer and store paths again.
    fn build(&self, ctx: &BuildContext, dir: &str, fd: &DirFd) -> Result<(), InstallError> {
        let Some((dirs, files)) = self.children.get(dir) else {
            return Ok(());
        };
        for sub in dirs {
            match fd.mkdir(base_name(sub)) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                    return Err(io_err(&ctx.root.join(sub))(e))
                }
                _ => {}
            }
        }
        for (pi, file) in files {
            place_file(ctx, fd, base_name(&file.dest), *pi, file)?;
        }
        dirs.par_iter()
            .try_for_each(|sub| match self.children.get(sub) {
                // A folder without subfolders (nearly two thirds of them, with three files for
                // the median one) is filled through this folder's descriptor, its files named
                // `sub/name`: one more name for the kernel to look up per file instead of an
                // `openat` and a `close` per folder.
                Some((subdirs, files)) if subdirs.is_empty() => {
                    let skip = if dir.is_empty() { 0 } else { dir.len() + 1 };
                    files.iter().try_for_each(|(pi, file)| {
                        let name = file.dest.get(skip..).unwrap_or(&file.dest);
                        place_file(ctx, fd, std::ffi::OsStr::new(name), *pi, file)
                    })
                }
                Some(_) => {
                    let sub_fd = fd
                        .open_at(base_name(sub))
                        .map_err(io_err(&ctx.root.join(sub)))?;
                    self.build(ctx, sub, &sub_fd)
                }
                None => Ok(()),
            })
    }
}

/// Places one file of plan `pi` as `name` (its base name, or `folder/name`) below the folder
/// open as `dir`: a hard link made from the wheel's open store tree by the member path, else
/// [`place`]'s way by path (copies, reflinks, and the fallback to a copy when a link is not
/// possible); or the generated bytes.
fn place_file(
    ctx: &BuildContext,
    dir: &DirFd,
    name: &std::ffi::OsStr,
    pi: usize,
    file: &layout::PlannedFile,
) -> Result<(), InstallError> {
    match &file.source {
        FileSource::Store(src) => {
            let linked = ctx
                .sources
                .get(pi)
                .and_then(|tree| tree.member(src))
                .is_some_and(|(tree, member)| dir.link_from(tree, member, name).is_ok());
            let placed = if linked {
                Placed::Linked
            } else {
                let dest = ctx.root.join(&file.dest);
                place(src, &dest, ctx.mode).map_err(io_err(&dest))?
            };
            match placed {
                Placed::Linked => ctx.counts.linked.fetch_add(1, Ordering::Relaxed),
                Placed::Reflinked => ctx.counts.reflinked.fetch_add(1, Ordering::Relaxed),
                Placed::Copied => ctx.counts.copied.fetch_add(1, Ordering::Relaxed),
            };
        }
        FileSource::Bytes(content) => {
            dir.write_file(name, content, file.executable)
                .map_err(io_err(&ctx.root.join(&file.dest)))?;
            ctx.counts.generated.fetch_add(1, Ordering::Relaxed);
        }
    }
    ctx.counts.bytes.fetch_add(file.size, Ordering::Relaxed);
    Ok(())
}

/// A file added after planning (bytecode): path from the environment root, sha256, size.
type ExtraFile = (String, String, u64);

#[cfg(test)]
mod tests {
    use super::*;

    fn generated(dest: &str) -> layout::PlannedFile {
        layout::PlannedFile {
            dest: dest.to_string(),
            source: FileSource::Bytes(dest.as_bytes().to_vec()),
            executable: false,
            size: dest.len() as u64,
            sha256: String::new(),
        }
    }

    #[test]
    fn dir_tree_lists_every_directory_once_under_its_parent_and_builds_it() {
        let files = [
            generated("lib/python3.14/site-packages/a/__init__.py"),
            generated("lib/python3.14/site-packages/a/sub/deep/x.py"),
            generated("lib/python3.14/site-packages/b.py"),
            generated("bin/tool"),
            generated("top.txt"),
        ];
        let refs: Vec<Placement> = files.iter().map(|f| (0, f)).collect();
        let tree = DirTree::new(
            &refs,
            ["lib/python3.14/site-packages/a-1.0.dist-info"].into_iter(),
        );
        let listed = |dir: &str| -> Vec<String> {
            tree.children[dir].0.iter().map(|p| p.to_string()).collect()
        };
        assert_eq!(listed(""), ["bin", "lib"]);
        assert_eq!(listed("lib"), ["lib/python3.14"]);
        assert_eq!(
            listed("lib/python3.14/site-packages"),
            [
                "lib/python3.14/site-packages/a",
                "lib/python3.14/site-packages/a-1.0.dist-info"
            ]
        );
        assert_eq!(
            listed("lib/python3.14/site-packages/a/sub"),
            ["lib/python3.14/site-packages/a/sub/deep"]
        );
        let dirs: usize = tree.children.values().map(|(d, _)| d.len()).sum();
        assert_eq!(dirs, 8, "each directory listed once");
        let placed: usize = tree.children.values().map(|(_, f)| f.len()).sum();
        assert_eq!(placed, files.len());

        let root = tempfile::tempdir().unwrap();
        let counts = PlaceCounts::default();
        let fd = DirFd::open(root.path()).unwrap();
        let ctx = BuildContext {
            root: root.path(),
            sources: &[],
            mode: LinkMode::Hardlink,
            counts: &counts,
        };
        tree.build(&ctx, "", &fd).unwrap();
        for file in &files {
            let path = root.path().join(&file.dest);
            assert_eq!(std::fs::read(&path).unwrap(), file.dest.as_bytes());
        }
        assert!(root
            .path()
            .join("lib/python3.14/site-packages/a-1.0.dist-info")
            .is_dir());
        assert_eq!(counts.generated.into_inner(), files.len());
    }
}

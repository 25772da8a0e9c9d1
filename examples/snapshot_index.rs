//! `snapshot_index`: takes a faithful offline snapshot of the public Python package index for
//! the projects the default stack needs, and writes it as a testkit fixture spec
//! (`fixtures/indexes/pypi-snapshot.json`).
//!
//! Owns the live work behind that fixture, done through comfypak's own library: the index URL
//! comes from `indexes/<name>.toml` (`IndexDefs`), project pages and METADATA from
//! `IndexClient` (METADATA by HTTP range when the index serves no PEP 658 files), installed
//! sizes from the wheels' zip central directories (`HttpClient` ranges + `remote_zip`).
//! It must not resolve anything: the (project, version) roots come from a file that uv made
//! (`fixtures/indexes/snapshot-roots.txt`, see `fixtures/indexes/README.md`). It needs the
//! network.
//!
//! ```sh
//! cargo run --example snapshot_index -- --out fixtures/indexes/pypi-snapshot.json \
//!     [--roots fixtures/indexes/snapshot-roots.txt]
//! ```
//!
//! For each root project it keeps every pinned version, the newest final release and the
//! final release just below the lowest pin, plus every version uv tried while backtracking
//! (the roots file's `[visited]` section), each with only the wheels that fit CPython 3.14
//! (`cp314` or `cp314t`) on manylinux_2_39 x86_64 or aarch64; plus one sdist per project
//! (in the separate `sdists` table: the testkit serves wheels only).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use comfypak::cache::Cache;
use comfypak::filename::{DistFilename, WheelFilename};
use comfypak::http::{ByteRange, HttpClient, HttpSettings, RangeResponse};
use comfypak::index::client::{CachePolicy, IndexClient};
use comfypak::index::core_metadata::parse_headers;
use comfypak::index::definition::{IndexDef, IndexDefs};
use comfypak::index::page::{normalize_name, DistFile, Yanked};
use comfypak::index::remote_zip::{self, CentralDirectory, TailRead};
use comfypak::target::{CompatibleTags, Platform, PythonVersion, Target};
use comfypak_testkit::FixtureFile;
use futures::stream::{self, StreamExt};
use pep440_rs::Version;
use pep508_rs::PackageName;
use serde::Serialize;
use url::Url;

/// How much of a wheel's tail the first central-directory request asks for.
const TAIL_BYTES: u64 = 64 * 1024;

#[derive(Parser, Debug)]
#[command(about = "Snapshot the public package index for the default stack into a fixture spec")]
struct Args {
    /// Where to write the fixture spec (JSON).
    #[arg(long)]
    out: PathBuf,
    /// `name==version` lines (comments with `#`); one line per pinned version.
    #[arg(long, default_value = "fixtures/indexes/snapshot-roots.txt")]
    roots: PathBuf,
    /// Folder of index definitions.
    #[arg(long, default_value = "indexes")]
    index_dir: PathBuf,
    /// Which index definition to snapshot.
    #[arg(long, default_value = "pypi")]
    index: String,
    /// Cache folder for pages and METADATA (default: comfypak's user cache).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
}

/// One root project: its normalized name, the versions uv pinned and the other versions uv
/// tried on the way.
struct Root {
    name: PackageName,
    pins: BTreeSet<Version>,
    visited: BTreeSet<Version>,
}

/// A wheel kept for the snapshot.
#[derive(Clone)]
struct KeptWheel {
    file: DistFile,
    wheel: WheelFilename,
    /// The version exactly as the file name spells it.
    version_text: String,
}

/// What was chosen for one project before METADATA and sizes are fetched.
struct ProjectPlan {
    name: String,
    versions: BTreeMap<Version, Vec<KeptWheel>>,
    sdist: Option<SdistEntry>,
    /// Pins without any fitting wheel (sdist-only or nothing for the target).
    wheelless_pins: Vec<Version>,
    /// Files skipped because the testkit cannot represent their names.
    unrepresentable: Vec<String>,
}

/// A source distribution, recorded beside the wheels.
#[derive(Debug, Clone, Serialize)]
struct SdistEntry {
    version: String,
    filename: String,
    requires_python: Option<String>,
    yanked: Option<String>,
    upload_time: Option<String>,
    size: Option<u64>,
}

/// The METADATA facts shared by every wheel of one version.
struct VersionMetadata {
    requires_dist: Vec<String>,
    requires_python: Option<String>,
    provides_extra: Vec<String>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let started = Instant::now();

    let defs = IndexDefs::load_dir(&args.index_dir)
        .with_context(|| format!("reading index definitions in {}", args.index_dir.display()))?;
    let def = defs
        .require(&args.index, "--index")
        .map_err(|e| anyhow!("{e}"))?
        .clone();
    let roots = read_roots(&args.roots)?;
    eprintln!(
        "snapshot of index `{}`: {} projects from {}",
        def.name,
        roots.len(),
        args.roots.display()
    );

    let http = HttpClient::new(HttpSettings {
        concurrency: args.concurrency.max(1),
        ..HttpSettings::default()
    })?;
    let cache = Cache::new(Cache::default_root(args.cache.as_deref()));
    let client = IndexClient::new(http.clone(), cache.clone(), CachePolicy::default());
    let targets = target_tags()?;

    // 1. Project pages.
    let pages: Vec<(Root, Result<Vec<DistFile>>)> = stream::iter(roots)
        .map(|root| {
            let client = client.clone();
            let def = def.clone();
            async move {
                let files = fetch_page(&client, &def, &root.name).await;
                (root, files)
            }
        })
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;
    let mut plans = Vec::new();
    for (root, files) in pages {
        let files = files?;
        plans.push(plan_project(&root, files, &targets));
    }
    plans.sort_by(|a, b| a.name.cmp(&b.name));
    eprintln!(
        "pages: {} projects in {:.1}s",
        plans.len(),
        started.elapsed().as_secs_f64()
    );

    // 2. METADATA: one wheel per version.
    let mut metadata_jobs = Vec::new();
    for plan in &plans {
        for (version, wheels) in &plan.versions {
            if let Some(first) = wheels.first() {
                metadata_jobs.push((plan.name.clone(), version.clone(), first.file.clone()));
            }
        }
    }
    let metadata_count = metadata_jobs.len();
    let metadata: BTreeMap<(String, Version), Result<VersionMetadata>> =
        stream::iter(metadata_jobs)
            .map(|(name, version, file)| {
                let client = client.clone();
                let cache = cache.clone();
                async move {
                    let result = version_metadata(&client, &cache, &file).await;
                    ((name, version), result)
                }
            })
            .buffer_unordered(args.concurrency.max(1))
            .collect()
            .await;
    eprintln!(
        "metadata: {metadata_count} versions in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    // 3. Installed sizes: every kept wheel's central directory.
    let mut size_jobs = Vec::new();
    for plan in &plans {
        for wheels in plan.versions.values() {
            for kept in wheels {
                size_jobs.push(kept.file.clone());
            }
        }
    }
    let size_count = size_jobs.len();
    let sizes: BTreeMap<String, Result<u64>> = stream::iter(size_jobs)
        .map(|file| {
            let http = http.clone();
            async move {
                let size = installed_size(&http, &file.url)
                    .await
                    .with_context(|| format!("central directory of {}", file.filename));
                (file.filename, size)
            }
        })
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;
    eprintln!(
        "sizes: {size_count} wheels in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    // 4. Assemble, deterministically.
    let mut projects: BTreeMap<String, Vec<FixtureFile>> = BTreeMap::new();
    let mut sdists: BTreeMap<String, SdistEntry> = BTreeMap::new();
    let mut notes: Vec<String> = Vec::new();
    for plan in &plans {
        let mut files = Vec::new();
        for (version, wheels) in &plan.versions {
            let meta = match metadata.get(&(plan.name.clone(), version.clone())) {
                Some(Ok(meta)) => meta,
                Some(Err(e)) => {
                    notes.push(format!("{} {version}: left out: {e:#}", plan.name));
                    continue;
                }
                None => continue,
            };
            for kept in wheels {
                let real_size = match sizes.get(&kept.file.filename) {
                    Some(Ok(size)) => Some(*size),
                    Some(Err(e)) => bail!("{e:#}"),
                    None => None,
                };
                files.push(fixture_file(kept, meta, real_size));
            }
        }
        files.sort_by(|a, b| {
            let va = Version::from_str(&a.version).ok();
            let vb = Version::from_str(&b.version).ok();
            va.cmp(&vb).then_with(|| a.filename.cmp(&b.filename))
        });
        if files.is_empty() {
            notes.push(format!(
                "{}: no wheel for the target in the chosen versions; only its sdist is recorded",
                plan.name
            ));
        } else {
            projects.insert(plan.name.clone(), files);
        }
        if let Some(sdist) = &plan.sdist {
            sdists.insert(plan.name.clone(), sdist.clone());
        }
        for pin in &plan.wheelless_pins {
            notes.push(format!("{} {pin}: pinned, but no wheel fits", plan.name));
        }
        for name in &plan.unrepresentable {
            notes.push(format!(
                "{}: skipped {name} (its file name does not spell the project as the testkit does)",
                plan.name
            ));
        }
    }

    let text = render(&projects, &sdists)?;
    std::fs::write(&args.out, &text).with_context(|| format!("writing {}", args.out.display()))?;
    let versions: usize = projects
        .values()
        .map(|files| {
            files
                .iter()
                .map(|f| f.version.as_str())
                .collect::<BTreeSet<_>>()
                .len()
        })
        .sum();
    let file_count: usize = projects.values().map(Vec::len).sum();
    for note in &notes {
        eprintln!("note: {note}");
    }
    eprintln!(
        "wrote {}: {} projects, {versions} versions, {file_count} wheels, {} sdists, {} bytes, in {:.1}s",
        args.out.display(),
        projects.len(),
        sdists.len(),
        text.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Reads `name==version` lines under `[pins]` (the default) and `[visited]` headers; a name
/// appears once per version.
fn read_roots(path: &Path) -> Result<Vec<Root>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the roots file {}", path.display()))?;
    let mut roots: BTreeMap<PackageName, (BTreeSet<Version>, BTreeSet<Version>)> = BTreeMap::new();
    let mut visited_section = false;
    for (index, line) in text.lines().enumerate() {
        let at = || format!("{}:{}", path.display(), index + 1);
        let line = line.split('#').next().unwrap_or("").trim();
        match line {
            "" => continue,
            "[pins]" => {
                visited_section = false;
                continue;
            }
            "[visited]" => {
                visited_section = true;
                continue;
            }
            _ => {}
        }
        let (name, version) = line.split_once("==").ok_or_else(|| {
            anyhow!(
                "{}: `{line}` is not `name==version`, `[pins]` or `[visited]`",
                at()
            )
        })?;
        let name = PackageName::from_str(name.trim())
            .map_err(|e| anyhow!("{}: bad project name `{name}`: {e}", at()))?;
        let version = Version::from_str(version.trim())
            .map_err(|e| anyhow!("{}: bad version `{version}`: {e}", at()))?;
        let entry = roots.entry(name).or_default();
        if visited_section {
            entry.1.insert(version);
        } else {
            entry.0.insert(version);
        }
    }
    Ok(roots
        .into_iter()
        .map(|(name, (pins, visited))| Root {
            name,
            pins,
            visited,
        })
        .collect())
}

/// The tag sets a kept wheel must fit one of: cp314 and cp314t on manylinux_2_39 x86_64 and
/// aarch64.
fn target_tags() -> Result<Vec<CompatibleTags>> {
    let python = PythonVersion::from_str("3.14")?;
    let mut out = Vec::new();
    for platform in ["manylinux_2_39_x86_64", "manylinux_2_39_aarch64"] {
        let platform = Platform::from_str(platform)?;
        for free_threaded in [false, true] {
            out.push(Target::try_new(python, free_threaded, platform)?.tags());
        }
    }
    Ok(out)
}

async fn fetch_page(
    client: &IndexClient,
    def: &IndexDef,
    name: &PackageName,
) -> Result<Vec<DistFile>> {
    client
        .project_files(def, name)
        .await
        .with_context(|| format!("project page of `{name}`"))?
        .ok_or_else(|| anyhow!("`{name}` is not on index `{}`", def.name))
}

/// `{escaped name}-{version}-` as the testkit expects a wheel file name to begin.
fn testkit_prefix(normalized: &str, version_text: &str) -> String {
    format!(
        "{}-{}-",
        normalized.replace('-', "_"),
        version_text.replace('-', "_")
    )
}

/// Chooses the versions and files of one project.
fn plan_project(root: &Root, files: Vec<DistFile>, targets: &[CompatibleTags]) -> ProjectPlan {
    let name = normalize_name(root.name.as_ref());
    let mut wheels: BTreeMap<Version, Vec<KeptWheel>> = BTreeMap::new();
    let mut sdists: BTreeMap<Version, Vec<DistFile>> = BTreeMap::new();
    let mut unrepresentable_by_version: BTreeMap<Version, Vec<String>> = BTreeMap::new();
    for file in files {
        match DistFilename::parse(&file.filename, Some(&root.name)) {
            Ok(DistFilename::Wheel(wheel)) => {
                if !targets.iter().any(|t| wheel.best_priority(t).is_some()) {
                    continue;
                }
                let version_text = file.filename.split('-').nth(1).unwrap_or("").to_string();
                let prefix = testkit_prefix(&name, &version_text);
                if !file.filename.to_ascii_lowercase().starts_with(&prefix) {
                    unrepresentable_by_version
                        .entry(wheel.version.clone())
                        .or_default()
                        .push(file.filename.clone());
                    continue;
                }
                wheels
                    .entry(wheel.version.clone())
                    .or_default()
                    .push(KeptWheel {
                        file,
                        wheel,
                        version_text,
                    });
            }
            Ok(DistFilename::Sdist(sdist)) => {
                sdists.entry(sdist.version.clone()).or_default().push(file);
            }
            Err(_) => {}
        }
    }
    for list in wheels.values_mut() {
        list.sort_by(|a, b| a.file.filename.cmp(&b.file.filename));
    }
    // A usable release: final (no pre/dev part) and not entirely yanked.
    let usable = |version: &Version, list: &[KeptWheel]| {
        !version.any_prerelease() && list.iter().any(|k| !k.file.yanked.is_yanked())
    };
    let mut chosen: BTreeSet<Version> = root
        .pins
        .iter()
        .filter(|v| wheels.contains_key(*v))
        .cloned()
        .collect();
    if let Some((newest, _)) = wheels.iter().rev().find(|(v, list)| usable(v, list)) {
        chosen.insert(newest.clone());
    }
    if let Some(lowest_pin) = root.pins.iter().next() {
        if let Some((older, _)) = wheels
            .range(..lowest_pin.clone())
            .rev()
            .find(|(v, list)| usable(v, list))
        {
            chosen.insert(older.clone());
        }
    }
    // Versions uv tried on its way to the pins: keep them, so a resolver walks the same
    // path (and hits the same conflicts) as on the real index.
    for version in &root.visited {
        if wheels.contains_key(version) {
            chosen.insert(version.clone());
        }
    }
    let wheelless_pins = root
        .pins
        .iter()
        .filter(|v| !wheels.contains_key(*v))
        .cloned()
        .collect();
    let versions: BTreeMap<Version, Vec<KeptWheel>> = wheels
        .into_iter()
        .filter(|(v, _)| chosen.contains(v))
        .collect();
    let unrepresentable = unrepresentable_by_version
        .into_iter()
        .filter(|(v, _)| chosen.contains(v) || root.pins.contains(v))
        .flat_map(|(_, names)| names)
        .collect();
    // One sdist: the highest pin's, else the one of the highest chosen version that has one.
    let sdist_version = root
        .pins
        .iter()
        .rev()
        .find(|v| sdists.contains_key(*v))
        .or_else(|| chosen.iter().rev().find(|v| sdists.contains_key(*v)))
        .cloned();
    let sdist = sdist_version.and_then(|version| {
        let mut list = sdists.remove(&version)?;
        list.sort_by(|a, b| a.filename.cmp(&b.filename));
        let file = list.into_iter().next()?;
        let version_text = version.to_string();
        Some(SdistEntry {
            version: version_text,
            filename: file.filename,
            requires_python: file.requires_python,
            yanked: yank_reason(&file.yanked),
            upload_time: file.upload_time,
            size: file.size,
        })
    });
    ProjectPlan {
        name,
        versions,
        sdist,
        wheelless_pins,
        unrepresentable,
    }
}

fn yank_reason(yanked: &Yanked) -> Option<String> {
    match yanked {
        Yanked::No => None,
        Yanked::Yes { reason } => Some(reason.clone().unwrap_or_default()),
    }
}

/// The METADATA of one wheel, through the index client (PEP 658 file or HTTP range), with
/// Requires-Dist / Provides-Extra / Requires-Python kept as the real text.
async fn version_metadata(
    client: &IndexClient,
    cache: &Cache,
    file: &DistFile,
) -> Result<VersionMetadata> {
    let parsed = client
        .metadata(file)
        .await
        .with_context(|| format!("METADATA of {}", file.filename))?;
    let key = comfypak::index::client::metadata_key(file);
    let Some(bytes) = cache.read_metadata(&key) else {
        // Not cached (should not happen): fall back to the parsed, normalized forms.
        return Ok(VersionMetadata {
            requires_dist: parsed
                .requires_dist
                .iter()
                .map(ToString::to_string)
                .collect(),
            requires_python: parsed.requires_python.map(|s| s.to_string()),
            provides_extra: parsed.provides_extra,
        });
    };
    let headers = parse_headers(&bytes);
    let values = |field: &str| -> Vec<String> {
        headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(field))
            .map(|h| h.value.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect()
    };
    Ok(VersionMetadata {
        requires_dist: values("Requires-Dist"),
        requires_python: values("Requires-Python").into_iter().next(),
        provides_extra: values("Provides-Extra"),
    })
}

/// The installed size of a wheel: the uncompressed sizes of its members, read off the zip's
/// central directory with range requests.
async fn installed_size(http: &HttpClient, url: &Url) -> Result<u64> {
    let (mut start, total, mut tail) =
        match http.get_range(url, ByteRange::Suffix(TAIL_BYTES)).await? {
            RangeResponse::Partial {
                start,
                total,
                bytes,
            } => (start, total, bytes),
            RangeResponse::Full(whole) => {
                return Ok(sum_sizes(&remote_zip::read_whole_file_directory(&whole)?));
            }
        };
    loop {
        match remote_zip::read_central_directory(&tail, start, total)? {
            TailRead::Directory(directory) => return Ok(sum_sizes(&directory)),
            TailRead::NeedFrom { start: needed } => {
                if needed >= start {
                    bail!("the zip reader asked for bytes it already has");
                }
                match http.get_range(url, ByteRange::Span(needed, start)).await? {
                    RangeResponse::Partial { bytes, .. } => {
                        let mut joined = bytes;
                        joined.extend_from_slice(&tail);
                        tail = joined;
                        start = needed;
                    }
                    RangeResponse::Full(whole) => {
                        return Ok(sum_sizes(&remote_zip::read_whole_file_directory(&whole)?));
                    }
                }
            }
        }
    }
}

fn sum_sizes(directory: &CentralDirectory) -> u64 {
    directory.entries.iter().map(|e| e.uncompressed_size).sum()
}

fn fixture_file(kept: &KeptWheel, meta: &VersionMetadata, real_size: Option<u64>) -> FixtureFile {
    let mut file = FixtureFile::new(kept.version_text.as_str(), kept.file.filename.as_str());
    file.requires_dist = meta.requires_dist.clone();
    file.requires_python = meta
        .requires_python
        .clone()
        .or_else(|| kept.file.requires_python.clone());
    file.provides_extra = meta.provides_extra.clone();
    file.yanked = yank_reason(&kept.file.yanked);
    file.upload_time = kept.file.upload_time.clone();
    file.real_size = real_size;
    file.build_tag = kept
        .wheel
        .build
        .as_ref()
        .map(|b| format!("{}{}", b.number, b.suffix));
    file
}

/// The spec as JSON: one line per file, keys in a fixed order, projects sorted.
fn render(
    projects: &BTreeMap<String, Vec<FixtureFile>>,
    sdists: &BTreeMap<String, SdistEntry>,
) -> Result<String> {
    let mut out = String::from("{\n");
    out.push_str(&format!(
        " \"_comment\": {},\n",
        serde_json::to_string(
            "Generated by examples/snapshot_index.rs from fixtures/indexes/snapshot-roots.txt \
             (real file names, METADATA, upload times, yanks; real_size = installed size); \
             `sdists` lists one real sdist per project (the testkit serves wheels only); \
             do not edit by hand."
        )?
    ));
    out.push_str(" \"projects\": {\n");
    for (i, (name, files)) in projects.iter().enumerate() {
        out.push_str(&format!("  {}: [\n", serde_json::to_string(name)?));
        for (j, file) in files.iter().enumerate() {
            let comma = if j + 1 < files.len() { "," } else { "" };
            out.push_str(&format!("   {}{comma}\n", serde_json::to_string(file)?));
        }
        let comma = if i + 1 < projects.len() { "," } else { "" };
        out.push_str(&format!("  ]{comma}\n"));
    }
    out.push_str(" },\n \"sdists\": {\n");
    for (i, (name, sdist)) in sdists.iter().enumerate() {
        let comma = if i + 1 < sdists.len() { "," } else { "" };
        out.push_str(&format!(
            "  {}: {}{comma}\n",
            serde_json::to_string(name)?,
            serde_json::to_string(sdist)?
        ));
    }
    out.push_str(" }\n}\n");
    Ok(out)
}

//! Fixture indexes: a [`FixtureSpec`] plus the tiny wheels built for it, rendered as the files
//! a real index serves. Owns the site layout shared by the disk writers and the test server:
//!
//! ```text
//! simple/index.html, simple/index.json            project list (PEP 503 / PEP 691)
//! simple/<normalized>/index.html, index.json      project pages with hashes, PEP 658/714
//!                                                 metadata, requires-python, yanked, size, upload-time
//! files/<wheel>, files/<wheel>.metadata           the wheels and their METADATA
//! find-links/index.html                           one flat release page linking every wheel
//! ```
//! Links are relative (`../../files/...`), with `+` percent-encoded as `%2B`.
//! Must not: open sockets (see `server.rs`).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::TestkitError;
use crate::spec::{normalize_name, FixtureFile, FixtureSpec};
use crate::wheel::{BuiltWheel, WheelSpec};

/// One file of a fixture index: its spec entry and the wheel built for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexFile {
    /// Project name as in METADATA (`Jinja2`).
    pub project: String,
    pub entry: FixtureFile,
    pub wheel: BuiltWheel,
}

impl IndexFile {
    /// Server path of the wheel, percent-encoded: `/files/torch-2.11.0%2Bcu130-...whl`.
    pub fn url_path(&self) -> String {
        format!("/files/{}", percent_encode(&self.entry.filename))
    }

    /// Server path of the PEP 658 metadata file.
    pub fn metadata_url_path(&self) -> String {
        format!("{}.metadata", self.url_path())
    }
}

/// A project: display name and files in spec order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixtureProject {
    pub name: String,
    pub files: Vec<IndexFile>,
}

/// A fixture index with built wheels, ready to be written to disk or served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixtureIndex {
    origin: String,
    projects: BTreeMap<String, FixtureProject>,
}

/// Which optional resources the rendered site has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SiteOptions {
    /// Write PEP 658 `.metadata` files and advertise them (`data-core-metadata`, `core-metadata`).
    pub metadata_files: bool,
}

impl Default for SiteOptions {
    fn default() -> Self {
        SiteOptions {
            metadata_files: true,
        }
    }
}

/// Directory of the checked-in fixture specs (`fixtures/indexes/` of the workspace).
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/indexes")
}

impl FixtureIndex {
    /// Reads a spec file and builds its wheels.
    pub fn load(path: impl AsRef<Path>) -> Result<FixtureIndex, TestkitError> {
        let path = path.as_ref();
        let text = fs::read_to_string(path).map_err(|source| TestkitError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let spec: FixtureSpec =
            serde_json::from_str(&text).map_err(|source| TestkitError::Json {
                path: path.to_path_buf(),
                source,
            })?;
        Self::from_spec_named(spec, &path.display().to_string())
    }

    /// The checked-in PyTorch cu130 fixture (`fixtures/indexes/pytorch-cu130.json`).
    pub fn pytorch_cu130() -> Result<FixtureIndex, TestkitError> {
        Self::load(fixtures_dir().join("pytorch-cu130.json"))
    }

    /// The checked-in ABI-coupled performance wheels (`fixtures/indexes/perf-wheels.json`).
    pub fn perf_wheels() -> Result<FixtureIndex, TestkitError> {
        Self::load(fixtures_dir().join("perf-wheels.json"))
    }

    /// Builds the wheels of an in-memory spec.
    pub fn from_spec(spec: FixtureSpec) -> Result<FixtureIndex, TestkitError> {
        Self::from_spec_named(spec, "<in-memory spec>")
    }

    fn from_spec_named(spec: FixtureSpec, origin: &str) -> Result<FixtureIndex, TestkitError> {
        let mut entries = Vec::new();
        for (project, files) in spec.projects {
            for file in files {
                entries.push(PendingFile {
                    project: project.clone(),
                    file,
                    wheel: None,
                });
            }
        }
        Self::assemble(entries, origin)
    }

    fn assemble(entries: Vec<PendingFile>, origin: &str) -> Result<FixtureIndex, TestkitError> {
        let mut projects: BTreeMap<String, FixtureProject> = BTreeMap::new();
        let mut seen_filenames = std::collections::BTreeSet::new();
        for pending in entries {
            let invalid = |message: String| TestkitError::InvalidSpec {
                origin: origin.to_string(),
                project: pending.project.clone(),
                filename: pending.file.filename.clone(),
                message,
            };
            let file = &pending.file;
            if !file.filename.ends_with(".whl") {
                return Err(invalid("only wheels (.whl) are supported".into()));
            }
            if file.filename.contains('/') || file.filename.contains('\\') {
                return Err(invalid(
                    "a file name must not contain path separators".into(),
                ));
            }
            if !seen_filenames.insert(file.filename.clone()) {
                return Err(invalid("file name appears twice in the index".into()));
            }
            let tags = file.effective_tags().ok_or_else(|| {
                invalid("no \"tags\" given and none can be read off the file name".into())
            })?;
            let expected_prefix = format!(
                "{}-{}-",
                WheelSpec::new(pending.project.as_str(), "").escaped_name(),
                file.version.replace('-', "_")
            );
            if !file
                .filename
                .to_ascii_lowercase()
                .starts_with(&expected_prefix.to_ascii_lowercase())
            {
                return Err(invalid(format!(
                    "file name does not start with {expected_prefix:?} (project name and version must match)"
                )));
            }
            let wheel = match &pending.wheel {
                Some(spec) => spec.try_build()?,
                None => {
                    let mut spec = WheelSpec::new(pending.project.as_str(), file.version.as_str())
                        .tags(tags)
                        .requires_dist(file.requires_dist.iter().cloned())
                        .filename_override(file.filename.as_str());
                    spec.requires_python = file.requires_python.clone();
                    spec.provides_extra = file.provides_extra.clone();
                    spec.build_tag = file.build_tag.clone();
                    spec.root_is_purelib = file.root_is_purelib;
                    spec.pad_bytes = file.pad_bytes.unwrap_or(0);
                    spec.try_build()?
                }
            };
            let key = normalize_name(&pending.project);
            let project = projects.entry(key).or_insert_with(|| FixtureProject {
                name: pending.project.clone(),
                files: Vec::new(),
            });
            project.files.push(IndexFile {
                project: pending.project.clone(),
                entry: pending.file.clone(),
                wheel,
            });
        }
        Ok(FixtureIndex {
            origin: origin.to_string(),
            projects,
        })
    }

    /// Starts an ad-hoc index built in code.
    pub fn builder() -> FixtureIndexBuilder {
        FixtureIndexBuilder::default()
    }

    /// Where this index came from (a spec path or `<in-memory spec>`).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Projects keyed by normalized name.
    pub fn projects(&self) -> &BTreeMap<String, FixtureProject> {
        &self.projects
    }

    /// A project by any spelling of its name.
    pub fn project(&self, name: &str) -> Option<&FixtureProject> {
        self.projects.get(&normalize_name(name))
    }

    /// Every file, projects in normalized-name order.
    pub fn files(&self) -> impl Iterator<Item = &IndexFile> {
        self.projects.values().flat_map(|p| p.files.iter())
    }

    /// A file by its exact file name.
    pub fn file(&self, filename: &str) -> Option<&IndexFile> {
        self.files().find(|f| f.entry.filename == filename)
    }

    /// The spec this index stands for (wheels not included).
    pub fn spec(&self) -> FixtureSpec {
        FixtureSpec {
            comment: None,
            projects: self
                .projects
                .values()
                .map(|p| {
                    (
                        p.name.clone(),
                        p.files.iter().map(|f| f.entry.clone()).collect(),
                    )
                })
                .collect(),
        }
    }

    /// Every resource of the rendered site: relative path → bytes.
    pub fn site_files(&self, options: SiteOptions) -> BTreeMap<String, Arc<Vec<u8>>> {
        let mut site = BTreeMap::new();
        let mut root_html = String::from(
            "<!DOCTYPE html>\n<html>\n  <head>\n    <meta name=\"pypi:repository-version\" content=\"1.1\">\n    <title>Simple index</title>\n  </head>\n  <body>\n",
        );
        let mut root_projects = Vec::new();
        for (key, project) in &self.projects {
            root_html.push_str(&format!(
                "    <a href=\"{key}/\">{}</a><br/>\n",
                html_escape(key)
            ));
            root_projects.push(serde_json::json!({ "name": project.name }));
            site.insert(
                format!("simple/{key}/index.html"),
                Arc::new(project_html(project, options).into_bytes()),
            );
            site.insert(
                format!("simple/{key}/index.json"),
                Arc::new(project_json(project, options).into_bytes()),
            );
            for f in &project.files {
                site.insert(
                    format!("files/{}", f.entry.filename),
                    Arc::new(f.wheel.bytes.clone()),
                );
                if options.metadata_files {
                    site.insert(
                        format!("files/{}.metadata", f.entry.filename),
                        Arc::new(f.wheel.metadata.clone()),
                    );
                }
            }
        }
        root_html.push_str("  </body>\n</html>\n");
        site.insert("simple/index.html".into(), Arc::new(root_html.into_bytes()));
        let root_json = serde_json::json!({
            "meta": { "api-version": "1.1" },
            "projects": root_projects,
        });
        site.insert(
            "simple/index.json".into(),
            Arc::new(pretty_json(&root_json).into_bytes()),
        );
        site.insert(
            "find-links/index.html".into(),
            Arc::new(self.find_links_html("../files/").into_bytes()),
        );
        site
    }

    /// Writes the PEP 503 / PEP 691 tree (`simple/`) and the wheels with their `.metadata`
    /// files (`files/`) under `dir`.
    pub fn write_simple_tree(&self, dir: impl AsRef<Path>) -> Result<(), TestkitError> {
        let dir = dir.as_ref();
        for (rel, bytes) in self.site_files(SiteOptions::default()) {
            if rel.starts_with("simple/") || rel.starts_with("files/") {
                write_file(&dir.join(&rel), &bytes)?;
            }
        }
        Ok(())
    }

    /// Writes every wheel directly into `dir` (a flat `--find-links DIR` folder).
    pub fn write_flat_dir(&self, dir: impl AsRef<Path>) -> Result<(), TestkitError> {
        let dir = dir.as_ref();
        for f in self.files() {
            write_file(&dir.join(&f.entry.filename), &f.wheel.bytes)?;
        }
        Ok(())
    }

    /// Writes one HTML release page linking all wheels: `dir/find-links/index.html`, with the
    /// wheels under `dir/files/`.
    pub fn write_find_links_page(&self, dir: impl AsRef<Path>) -> Result<(), TestkitError> {
        let dir = dir.as_ref();
        write_file(
            &dir.join("find-links/index.html"),
            self.find_links_html("../files/").as_bytes(),
        )?;
        for f in self.files() {
            write_file(&dir.join("files").join(&f.entry.filename), &f.wheel.bytes)?;
        }
        Ok(())
    }

    fn find_links_html(&self, prefix: &str) -> String {
        let mut html = String::from(
            "<!DOCTYPE html>\n<html>\n  <head>\n    <title>Release assets</title>\n  </head>\n  <body>\n    <h1>Release assets</h1>\n",
        );
        for f in self.files() {
            html.push_str(&format!(
                "    <a href=\"{prefix}{}#sha256={}\">{}</a><br/>\n",
                percent_encode(&f.entry.filename),
                f.wheel.sha256,
                html_escape(&f.entry.filename)
            ));
        }
        html.push_str("  </body>\n</html>\n");
        html
    }
}

fn project_html(project: &FixtureProject, options: SiteOptions) -> String {
    let name = html_escape(&project.name);
    let mut html = format!(
        "<!DOCTYPE html>\n<html>\n  <head>\n    <meta name=\"pypi:repository-version\" content=\"1.1\">\n    <title>Links for {name}</title>\n  </head>\n  <body>\n    <h1>Links for {name}</h1>\n"
    );
    for f in &project.files {
        let mut attrs = String::new();
        if let Some(rp) = &f.entry.requires_python {
            attrs.push_str(&format!(" data-requires-python=\"{}\"", html_escape(rp)));
        }
        if options.metadata_files {
            let h = f.wheel.metadata_sha256();
            attrs.push_str(&format!(
                " data-dist-info-metadata=\"sha256={h}\" data-core-metadata=\"sha256={h}\""
            ));
        }
        if let Some(reason) = &f.entry.yanked {
            attrs.push_str(&format!(" data-yanked=\"{}\"", html_escape(reason)));
        }
        html.push_str(&format!(
            "    <a href=\"../../files/{}#sha256={}\"{attrs}>{}</a><br/>\n",
            percent_encode(&f.entry.filename),
            f.wheel.sha256,
            html_escape(&f.entry.filename)
        ));
    }
    html.push_str("  </body>\n</html>\n");
    html
}

fn project_json(project: &FixtureProject, options: SiteOptions) -> String {
    let mut versions: Vec<&str> = Vec::new();
    let mut files = Vec::new();
    for f in &project.files {
        if !versions.contains(&f.entry.version.as_str()) {
            versions.push(&f.entry.version);
        }
        let metadata = if options.metadata_files {
            serde_json::json!({ "sha256": f.wheel.metadata_sha256() })
        } else {
            serde_json::Value::Bool(false)
        };
        let yanked = match &f.entry.yanked {
            None => serde_json::Value::Bool(false),
            Some(r) if r.is_empty() => serde_json::Value::Bool(true),
            Some(r) => serde_json::Value::String(r.clone()),
        };
        let mut file = serde_json::json!({
            "filename": f.entry.filename,
            "url": format!("../../files/{}", percent_encode(&f.entry.filename)),
            "hashes": { "sha256": f.wheel.sha256 },
            "requires-python": f.entry.requires_python,
            "core-metadata": metadata.clone(),
            "dist-info-metadata": metadata,
            "yanked": yanked,
            "size": f.wheel.size(),
        });
        if let (Some(time), Some(obj)) = (&f.entry.upload_time, file.as_object_mut()) {
            obj.insert(
                "upload-time".into(),
                serde_json::Value::String(time.clone()),
            );
        }
        files.push(file);
    }
    let page = serde_json::json!({
        "meta": { "api-version": "1.1" },
        "name": normalize_name(&project.name),
        "files": files,
        "versions": versions,
    });
    pretty_json(&page)
}

fn pretty_json(value: &serde_json::Value) -> String {
    let mut s = serde_json::to_string_pretty(value).unwrap_or_default();
    s.push('\n');
    s
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), TestkitError> {
    let io = |source| TestkitError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io)?;
    }
    fs::write(path, bytes).map_err(io)
}

/// Escapes text for HTML text and double-quoted attribute values.
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            _ => out.push(c),
        }
    }
    out
}

/// Percent-encodes everything but RFC 3986 unreserved characters (`+` becomes `%2B`).
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

struct PendingFile {
    project: String,
    file: FixtureFile,
    wheel: Option<WheelSpec>,
}

/// Builds small ad-hoc indexes in code:
///
/// ```
/// use comfypak_testkit::{FixtureIndex, WheelSpec};
/// let index = FixtureIndex::builder()
///     .package("a", "1.0", &["b>=2"])
///     .package("b", "2.0", &[])
///     .wheel(WheelSpec::new("b", "3.0").requires_python(">=3.15"))
///     .yank("b", "2.0", "broken")
///     .build();
/// assert_eq!(index.project("B").unwrap().files.len(), 2);
/// ```
#[derive(Default)]
pub struct FixtureIndexBuilder {
    entries: Vec<PendingFile>,
}

impl FixtureIndexBuilder {
    /// A pure `py3-none-any` wheel of `name` `version` with these `Requires-Dist` lines.
    pub fn package(self, name: &str, version: &str, requires_dist: &[&str]) -> Self {
        self.wheel(WheelSpec::new(name, version).requires_dist(requires_dist.iter().copied()))
    }

    /// Any wheel; its spec entry is derived from the wheel spec.
    pub fn wheel(mut self, spec: WheelSpec) -> Self {
        let mut file = FixtureFile::new(spec.version.as_str(), spec.wheel_filename());
        file.tags = Some(spec.effective_tags());
        file.requires_dist = spec.requires_dist.clone();
        file.requires_python = spec.requires_python.clone();
        file.provides_extra = spec.provides_extra.clone();
        file.build_tag = spec.build_tag.clone();
        file.root_is_purelib = spec.root_is_purelib;
        self.entries.push(PendingFile {
            project: spec.name.clone(),
            file,
            wheel: Some(spec),
        });
        self
    }

    /// A raw spec entry; the wheel is built from it like for a spec file.
    pub fn file(mut self, project: &str, file: FixtureFile) -> Self {
        self.entries.push(PendingFile {
            project: project.to_string(),
            file,
            wheel: None,
        });
        self
    }

    /// Marks every file of `name` `version` yanked with `reason`.
    pub fn yank(mut self, name: &str, version: &str, reason: &str) -> Self {
        for e in self.matching(name, version) {
            e.file.yanked = Some(reason.to_string());
        }
        self
    }

    /// Sets the upload time of every file of `name` `version`.
    pub fn upload_time(mut self, name: &str, version: &str, time: &str) -> Self {
        for e in self.matching(name, version) {
            e.file.upload_time = Some(time.to_string());
        }
        self
    }

    /// Sets the real (installed) size of every file of `name` `version`.
    pub fn real_size(mut self, name: &str, version: &str, size: u64) -> Self {
        for e in self.matching(name, version) {
            e.file.real_size = Some(size);
        }
        self
    }

    fn matching<'a>(
        &'a mut self,
        name: &str,
        version: &'a str,
    ) -> impl Iterator<Item = &'a mut PendingFile> + 'a {
        let key = normalize_name(name);
        self.entries
            .iter_mut()
            .filter(move |e| normalize_name(&e.project) == key && e.file.version == version)
    }

    /// Builds the index, reporting a bad entry as an error.
    pub fn try_build(self) -> Result<FixtureIndex, TestkitError> {
        FixtureIndex::assemble(self.entries, "<builder>")
    }

    /// Builds the index.
    ///
    /// # Panics
    /// When [`FixtureIndexBuilder::try_build`] fails: a broken ad-hoc index is a test bug.
    pub fn build(self) -> FixtureIndex {
        match self.try_build() {
            Ok(index) => index,
            Err(e) => panic!("{e}"),
        }
    }
}

//! Where each file of a wheel goes in the layer prefix (the binary distribution format's
//! schemes), and the files an installer generates: rewritten `#!python` scripts, console and
//! GUI launchers, `INSTALLER`, `REQUESTED`, `direct_url.json` and the installed `RECORD`.
//!
//! Scheme paths, relative to the environment root (`<venv>`), as pip lays out a venv:
//! purelib/platlib `lib/pythonX.Y/site-packages`, scripts `bin`, headers
//! `include/site/pythonX.Y/<Name>`, data `.`.
//!
//! Pure planning: reads script heads from the store, writes nothing.

use std::path::{Path, PathBuf};

use super::record::{render_record_rows, sha256_b64, RecordRowRef};
use super::wheel::WheelManifest;
use crate::target::PythonVersion;

/// Why a wheel cannot be laid out.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("{wheel}: `{member}` is in the .data folder under unknown scheme `{scheme}` (known: purelib, platlib, headers, scripts, data)")]
    UnknownScheme {
        wheel: String,
        member: String,
        scheme: String,
    },
    #[error("{wheel}: entry_points.txt line {line}: {message}")]
    BadEntryPoint {
        wheel: String,
        line: usize,
        message: String,
    },
    #[error("{wheel}: two of its files install to `{path}` (`{first}` and `{second}`)")]
    SelfConflict {
        wheel: String,
        path: String,
        first: String,
        second: String,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The environment a layer installs into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvPaths {
    /// The environment's absolute path inside the image (`/opt/venv`).
    pub venv: String,
    pub python: PythonVersion,
}

impl EnvPaths {
    /// `lib/python3.14/site-packages`.
    pub fn site_packages(&self) -> String {
        format!("lib/python{}/site-packages", self.python)
    }

    /// The interpreter scripts run with: `<venv>/bin/python`.
    pub fn python_path(&self) -> String {
        format!("{}/bin/python", self.venv.trim_end_matches('/'))
    }

    /// The shebang for scripts; a `/bin/sh` trampoline when the path cannot go on a `#!`
    /// line (spaces, or longer than the kernel reads), as pip/distlib do.
    pub fn shebang(&self) -> String {
        let python = self.python_path();
        if python.contains(' ') || python.len() + 2 > 127 {
            format!("#!/bin/sh\n'''exec' '{python}' \"$0\" \"$@\"\n' '''\n")
        } else {
            format!("#!{python}\n")
        }
    }

    /// The environment root relative to a layer root: `opt/venv`.
    pub fn venv_relative(&self) -> PathBuf {
        PathBuf::from(self.venv.trim_start_matches('/'))
    }

    /// A RECORD path for `dest` (relative to the environment root): relative to
    /// site-packages.
    pub fn record_path(&self, dest: &str) -> String {
        let site = self.site_packages();
        match dest.strip_prefix(&site).and_then(|r| r.strip_prefix('/')) {
            Some(inside) => inside.to_string(),
            None => format!("../../../{dest}"),
        }
    }
}

/// Where a planned file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileSource {
    /// A file of the unpacked store, linked or copied as is.
    Store(PathBuf),
    /// Bytes generated or rewritten by the installer.
    Bytes(Vec<u8>),
}

/// One file to place, relative to the environment root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedFile {
    /// `/`-separated, relative to the environment root.
    pub dest: String,
    pub source: FileSource,
    pub executable: bool,
    pub size: u64,
    /// Urlsafe base64 sha256 (empty in light plans).
    pub sha256: String,
}

/// Everything one wheel installs, RECORD aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WheelPlan {
    /// Normalized package name (from the lock).
    pub package: String,
    pub filename: String,
    /// `dist-info` folder, relative to the environment root.
    pub dist_info_dest: String,
    pub files: Vec<PlannedFile>,
    /// The unpacked store folder every [`FileSource::Store`] path of `files` is below (`None`
    /// in a light plan): the install links each file from it by its member path.
    pub tree: Option<PathBuf>,
}

impl WheelPlan {
    /// Where the installed RECORD goes.
    pub fn record_dest(&self) -> String {
        format!("{}/RECORD", self.dist_info_dest)
    }

    /// The installed RECORD for the files in the plan plus `extra` (path relative to the
    /// environment root, sha256, size), e.g. compiled bytecode.
    pub fn record(&self, env: &EnvPaths, extra: &[(String, String, u64)]) -> Vec<u8> {
        // Rows borrow the plan's paths and hashes: a RECORD has a row per file, and a
        // layer's tens of thousands of rows were each a few allocations.
        let site = env.site_packages();
        let record_dest = self.record_dest();
        fn shown<'a>(site: &str, dest: &'a str) -> std::borrow::Cow<'a, str> {
            match dest.strip_prefix(site).and_then(|r| r.strip_prefix('/')) {
                Some(inside) => std::borrow::Cow::Borrowed(inside),
                None => std::borrow::Cow::Owned(format!("../../../{dest}")),
            }
        }
        let mut rows: Vec<RecordRowRef<'_>> = self
            .files
            .iter()
            .map(|f| (shown(&site, &f.dest), Some(f.sha256.as_str()), Some(f.size)))
            .chain(
                extra
                    .iter()
                    .map(|(d, h, s)| (shown(&site, d), Some(h.as_str()), Some(*s))),
            )
            .chain([(shown(&site, &record_dest), None, None)])
            .collect();
        render_record_rows(&mut rows).into_bytes()
    }
}

/// What the installer is told about the package besides its wheel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackageFacts {
    pub package: String,
    pub requested: bool,
    /// For URL requirements: the URL and the wheel's hex sha256, for `direct_url.json`.
    pub direct_url: Option<(String, String)>,
}

/// A console or GUI script entry point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryPoint {
    pub name: String,
    pub module: String,
    /// `obj.attr` (may be dotted).
    pub attr: String,
    pub gui: bool,
}

/// Parses `[console_scripts]` and `[gui_scripts]` of entry_points.txt.
pub fn parse_entry_points(text: &str, wheel: &str) -> Result<Vec<EntryPoint>, LayoutError> {
    let mut out = Vec::new();
    let mut section = String::new();
    let bad = |line: usize, message: String| LayoutError::BadEntryPoint {
        wheel: wheel.to_string(),
        line,
        message,
    };
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().to_string();
            continue;
        }
        let gui = match section.as_str() {
            "console_scripts" => false,
            "gui_scripts" => true,
            _ => continue,
        };
        let Some((name, value)) = line.split_once('=') else {
            return Err(bad(line_no, format!("`{line}` is not NAME = MODULE:ATTR")));
        };
        let name = name.trim();
        if name.is_empty()
            || name == "."
            || name == ".."
            || name.contains(['/', '\\', '\0'])
            || name.starts_with('-')
        {
            return Err(bad(
                line_no,
                format!("script name `{name}` would be installed outside bin/"),
            ));
        }
        let value = value.split('[').next().unwrap_or("").trim();
        let Some((module, attr)) = value.split_once(':') else {
            return Err(bad(
                line_no,
                format!("`{value}` has no `:callable` suffix (MODULE:ATTR)"),
            ));
        };
        let (module, attr) = (module.trim(), attr.trim());
        let dotted_ok = |s: &str| {
            !s.is_empty()
                && s.split('.').all(|part| {
                    !part.is_empty()
                        && !part.starts_with(|c: char| c.is_ascii_digit())
                        && part.chars().all(|c| c.is_alphanumeric() || c == '_')
                })
        };
        if !dotted_ok(module) || !dotted_ok(attr) {
            return Err(bad(
                line_no,
                format!("`{value}` is not a dotted MODULE:ATTR reference"),
            ));
        }
        out.push(EntryPoint {
            name: name.to_string(),
            module: module.to_string(),
            attr: attr.to_string(),
            gui,
        });
    }
    Ok(out)
}

/// The launcher script for an entry point (pip's template, with the target's shebang).
pub fn launcher(env: &EnvPaths, entry: &EntryPoint) -> Vec<u8> {
    let import_name = entry.attr.split('.').next().unwrap_or(&entry.attr);
    format!(
        "{}import sys\nfrom {} import {}\nif __name__ == '__main__':\n    sys.argv[0] = sys.argv[0].removesuffix('.exe')\n    sys.exit({}())\n",
        env.shebang(),
        entry.module,
        import_name,
        entry.attr
    )
    .into_bytes()
}

/// Whether a `.data/scripts` file is a wrapper setuptools generated for an entry point
/// (pip skips those and writes its own launcher).
fn is_entry_point_wrapper(name: &str, entries: &[EntryPoint]) -> bool {
    let lower = name.to_ascii_lowercase();
    let stem = if lower.ends_with(".exe") || lower.ends_with(".pya") {
        &name[..name.len() - 4]
    } else if lower.ends_with("-script.py") {
        &name[..name.len() - 10]
    } else {
        name
    };
    entries.iter().any(|e| e.name == stem)
}

/// Reads the first bytes of a store file (to see whether it starts with `#!python`).
fn starts_with_python_shebang(path: &Path) -> Result<bool, LayoutError> {
    use std::io::Read;
    let mut head = [0u8; 8];
    let mut file = std::fs::File::open(path).map_err(|source| LayoutError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut filled = 0;
    while filled < head.len() {
        match file.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(source) => {
                return Err(LayoutError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    }
    Ok(&head[..filled] == b"#!python")
}

fn generated(dest: String, bytes: Vec<u8>, executable: bool) -> PlannedFile {
    PlannedFile {
        dest,
        size: bytes.len() as u64,
        sha256: sha256_b64(&bytes),
        source: FileSource::Bytes(bytes),
        executable,
    }
}

/// The parts, one after the other, in a string of exactly their length.
fn concat(parts: &[&str]) -> String {
    let mut out = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for part in parts {
        out.push_str(part);
    }
    out
}

/// `tree` joined with a member path (relative, normalized: `Path::join`'s result, without
/// its per-component parsing).
fn store_path(tree: &Path, member: &str) -> PathBuf {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let tree = tree.as_os_str().as_bytes();
    let mut out = Vec::with_capacity(tree.len() + 1 + member.len());
    out.extend_from_slice(tree);
    if !tree.ends_with(b"/") {
        out.push(b'/');
    }
    out.extend_from_slice(member.as_bytes());
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// Plans one wheel. `tree` is the unpacked store folder; `None` makes a light plan (paths
/// only, for conflict checks), which never reads file contents.
pub fn plan_wheel(
    manifest: &WheelManifest,
    tree: Option<&Path>,
    env: &EnvPaths,
    facts: &PackageFacts,
) -> Result<WheelPlan, LayoutError> {
    let wheel = manifest.filename.as_str();
    let site = env.site_packages();
    let dist_info = &manifest.dist_info;
    let entries = match &manifest.entry_points {
        Some(text) => parse_entry_points(text, wheel)?,
        None => Vec::new(),
    };
    let header_dir = format!("include/site/python{}/{}", env.python, manifest.name);
    let mut files = Vec::with_capacity(manifest.files.len() + 4 + entries.len());
    // The installer writes these itself.
    let generated_names = ["INSTALLER", "REQUESTED", "direct_url.json"];
    for file in &manifest.files {
        let (top, rest) = file.path.split_once('/').unwrap_or((&file.path, ""));
        if top == dist_info.as_str() && generated_names.contains(&rest) {
            continue;
        }
        // Paths are put together by hand, not with `format!` or `Path::join`: a layer plans
        // tens of thousands of files, and those were an eighth of a warm install's user
        // instructions.
        let source = tree.map(|t| store_path(t, &file.path)).unwrap_or_default();
        let plain = |dest: String, source: PathBuf| PlannedFile {
            dest,
            source: FileSource::Store(source),
            executable: file.executable,
            size: file.size,
            sha256: file.sha256.clone(),
        };
        if top.ends_with(".data") && !rest.is_empty() {
            let (scheme, inner) = rest.split_once('/').unwrap_or((rest, ""));
            if inner.is_empty() {
                return Err(LayoutError::UnknownScheme {
                    wheel: wheel.to_string(),
                    member: file.path.clone(),
                    scheme: scheme.to_string(),
                });
            }
            match scheme {
                "purelib" | "platlib" => files.push(plain(concat(&[&site, "/", inner]), source)),
                "headers" => files.push(plain(concat(&[&header_dir, "/", inner]), source)),
                "data" => files.push(plain(inner.to_string(), source)),
                "scripts" => {
                    let name = inner.rsplit('/').next().unwrap_or(inner);
                    if is_entry_point_wrapper(name, &entries) {
                        continue;
                    }
                    let dest = concat(&["bin/", inner]);
                    match tree {
                        Some(_) if starts_with_python_shebang(&source)? => {
                            let bytes = std::fs::read(&source).map_err(|e| LayoutError::Io {
                                path: source.clone(),
                                source: e,
                            })?;
                            let rest_start = bytes
                                .iter()
                                .position(|b| *b == b'\n')
                                .map_or(bytes.len(), |p| p + 1);
                            let mut out = env.shebang().into_bytes();
                            out.extend_from_slice(&bytes[rest_start..]);
                            files.push(generated(dest, out, file.executable));
                        }
                        _ => files.push(plain(dest, source)),
                    }
                }
                other => {
                    return Err(LayoutError::UnknownScheme {
                        wheel: wheel.to_string(),
                        member: file.path.clone(),
                        scheme: other.to_string(),
                    })
                }
            }
            continue;
        }
        files.push(plain(concat(&[&site, "/", &file.path]), source));
    }
    for entry in &entries {
        files.push(generated(
            format!("bin/{}", entry.name),
            launcher(env, entry),
            true,
        ));
    }
    let dist_info_dest = format!("{site}/{dist_info}");
    files.push(generated(
        format!("{dist_info_dest}/INSTALLER"),
        b"comfypak\n".to_vec(),
        false,
    ));
    if facts.requested {
        files.push(generated(
            format!("{dist_info_dest}/REQUESTED"),
            Vec::new(),
            false,
        ));
    }
    if let Some((url, sha256)) = &facts.direct_url {
        files.push(generated(
            format!("{dist_info_dest}/direct_url.json"),
            direct_url_json(url, sha256).into_bytes(),
            false,
        ));
    }
    // One wheel must not install two files to one place.
    let mut order: Vec<usize> = (0..files.len()).collect();
    order.sort_by(|a, b| files[*a].dest.cmp(&files[*b].dest));
    for pair in order.windows(2) {
        if files[pair[0]].dest == files[pair[1]].dest {
            return Err(LayoutError::SelfConflict {
                wheel: wheel.to_string(),
                path: files[pair[0]].dest.clone(),
                first: source_label(&files[pair[0]]),
                second: source_label(&files[pair[1]]),
            });
        }
    }
    Ok(WheelPlan {
        package: facts.package.clone(),
        filename: manifest.filename.clone(),
        dist_info_dest,
        files,
        tree: tree.map(Path::to_path_buf),
    })
}

fn source_label(file: &PlannedFile) -> String {
    match &file.source {
        FileSource::Store(p) => p.display().to_string(),
        FileSource::Bytes(_) => "generated".to_string(),
    }
}

/// PEP 610 `direct_url.json` for an archive URL, as pip writes it (sorted keys).
pub fn direct_url_json(url: &str, sha256: &str) -> String {
    serde_json::json!({
        "archive_info": {
            "hash": format!("sha256={sha256}"),
            "hashes": {"sha256": sha256},
        },
        "url": url,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::install::record::render_record;

    fn env() -> EnvPaths {
        EnvPaths {
            venv: "/opt/venv".into(),
            python: PythonVersion {
                major: 3,
                minor: 14,
            },
        }
    }

    #[test]
    fn record_paths_are_relative_to_site_packages() {
        let e = env();
        assert_eq!(
            e.record_path("lib/python3.14/site-packages/a/b.py"),
            "a/b.py"
        );
        assert_eq!(e.record_path("bin/tool"), "../../../bin/tool");
        assert_eq!(e.shebang(), "#!/opt/venv/bin/python\n");
    }

    #[test]
    fn installed_record_has_a_sorted_row_per_file_extra_file_and_itself() {
        let e = env();
        let file = |dest: &str, sha256: &str, size: u64| PlannedFile {
            dest: dest.to_string(),
            source: FileSource::Bytes(Vec::new()),
            executable: false,
            size,
            sha256: sha256.to_string(),
        };
        let plan = WheelPlan {
            package: "a".into(),
            filename: "a-1.0-py3-none-any.whl".into(),
            dist_info_dest: "lib/python3.14/site-packages/a-1.0.dist-info".into(),
            tree: None,
            files: vec![
                file("lib/python3.14/site-packages/a/z.py", "Z", 3),
                file("bin/tool", "T", 10),
                file("lib/python3.14/site-packages/a/odd,\"name\".py", "O", 0),
                file(
                    "lib/python3.14/site-packages/a-1.0.dist-info/INSTALLER",
                    "I",
                    9,
                ),
            ],
        };
        let extra = [(
            "lib/python3.14/site-packages/a/__pycache__/z.cpython-314.pyc".to_string(),
            "P".to_string(),
            120,
        )];
        let text = String::from_utf8(plan.record(&e, &extra)).unwrap();
        assert_eq!(
            text,
            "../../../bin/tool,sha256=T,10\n\
             a-1.0.dist-info/INSTALLER,sha256=I,9\n\
             a-1.0.dist-info/RECORD,,\n\
             a/__pycache__/z.cpython-314.pyc,sha256=P,120\n\
             \"a/odd,\"\"name\"\".py\",sha256=O,0\n\
             a/z.py,sha256=Z,3\n"
        );
        // The same bytes as rendering owned rows of `record_path`s.
        let mut owned: Vec<(String, Option<String>, Option<u64>)> = plan
            .files
            .iter()
            .map(|f| (e.record_path(&f.dest), Some(f.sha256.clone()), Some(f.size)))
            .chain(
                extra
                    .iter()
                    .map(|(d, h, s)| (e.record_path(d), Some(h.clone()), Some(*s))),
            )
            .chain([(e.record_path(&plan.record_dest()), None, None)])
            .collect();
        assert_eq!(render_record(&mut owned), text);
    }

    #[test]
    fn long_or_spaced_interpreters_get_a_trampoline() {
        let e = EnvPaths {
            venv: "/opt/my venv".into(),
            ..env()
        };
        assert!(e
            .shebang()
            .starts_with("#!/bin/sh\n'''exec' '/opt/my venv/bin/python'"));
    }

    #[test]
    fn entry_points_parse_and_refuse_escapes() {
        let eps = parse_entry_points(
            "[console_scripts]\ntool = pkg.cli:main [extra]\n[gui_scripts]\ngtool=pkg.gui:App.run\n[other]\nx = y:z\n",
            "w",
        )
        .unwrap();
        assert_eq!(eps.len(), 2);
        assert_eq!(eps[0].module, "pkg.cli");
        assert!(eps[1].gui);
        assert_eq!(eps[1].attr, "App.run");
        let launcher = String::from_utf8(launcher(&env(), &eps[1])).unwrap();
        assert!(launcher.contains("from pkg.gui import App\n"));
        assert!(launcher.contains("sys.exit(App.run())"));
        assert!(parse_entry_points("[console_scripts]\n../evil = a:b\n", "w").is_err());
        assert!(parse_entry_points("[console_scripts]\nx = a\n", "w").is_err());
    }

    #[test]
    fn direct_url_has_sorted_keys() {
        assert_eq!(
            direct_url_json("http://127.0.0.1/x.whl", "ab"),
            r#"{"archive_info":{"hash":"sha256=ab","hashes":{"sha256":"ab"}},"url":"http://127.0.0.1/x.whl"}"#
        );
    }
}

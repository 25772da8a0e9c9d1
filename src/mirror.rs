//! Mirrors: a folder holding every locked wheel and a PEP 503 tree over them, so a machine
//! with no network can resolve and build with `--index NAME=file://DIR/simple`.
//!
//! Owns the folder layout (`files/<wheel>`, `simple/index.html`, `simple/<name>/index.html`)
//! and writing it atomically per file. It takes wheels already verified in the cache (from
//! `fetch`) and must not download, resolve or choose versions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::fetch::CachedWheel;

/// One wheel to put in the mirror.
#[derive(Debug, Clone)]
pub struct MirrorWheel {
    /// Normalized project name.
    pub project: String,
    pub requires_python: Option<String>,
    pub wheel: CachedWheel,
}

/// What a mirror holds after writing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorReport {
    pub dir: PathBuf,
    pub projects: usize,
    pub files: usize,
    pub bytes: u64,
}

/// Why a mirror could not be written.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("cannot write the mirror at {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MirrorError + '_ {
    move |source| MirrorError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `wheels` and the simple tree into `dir` (created if needed; existing files with
/// the same name are replaced, others kept, so one mirror can serve several locks).
pub fn write_mirror(dir: &Path, wheels: &[MirrorWheel]) -> Result<MirrorReport, MirrorError> {
    let files_dir = dir.join("files");
    std::fs::create_dir_all(&files_dir).map_err(io(&files_dir))?;
    let mut projects: BTreeMap<&str, BTreeMap<&str, &MirrorWheel>> = BTreeMap::new();
    let mut bytes = 0;
    for w in wheels {
        let target = files_dir.join(&w.wheel.filename);
        if !target.exists() {
            let tmp = crate::fsutil::temp_sibling(&target);
            // A hard link shares the cache's verified bytes; copy when linking is not possible.
            if std::fs::hard_link(&w.wheel.path, &tmp).is_err() {
                std::fs::copy(&w.wheel.path, &tmp).map_err(io(&tmp))?;
                std::fs::File::open(&tmp)
                    .and_then(|f| f.sync_all())
                    .map_err(io(&tmp))?;
            }
            crate::fsutil::persist(&tmp, &target).map_err(io(&target))?;
        }
        bytes += w.wheel.size;
        projects
            .entry(w.project.as_str())
            .or_default()
            .insert(w.wheel.filename.as_str(), w);
    }
    let simple = dir.join("simple");
    let mut root = String::from(
        "<!DOCTYPE html>\n<html>\n  <head><meta name=\"pypi:repository-version\" content=\"1.0\"><title>comfypak mirror</title></head>\n  <body>\n",
    );
    for (project, files) in &projects {
        root.push_str(&format!("    <a href=\"{project}/\">{project}</a>\n"));
        let mut page = format!(
            "<!DOCTYPE html>\n<html>\n  <head><meta name=\"pypi:repository-version\" content=\"1.0\"><title>Links for {project}</title></head>\n  <body>\n"
        );
        for (filename, w) in files {
            let requires = w
                .requires_python
                .as_deref()
                .map(|r| {
                    format!(
                        " data-requires-python=\"{}\"",
                        html_escape::encode_double_quoted_attribute(r)
                    )
                })
                .unwrap_or_default();
            page.push_str(&format!(
                "    <a href=\"../../files/{}#sha256={}\"{requires}>{}</a>\n",
                percent_encode_filename(filename),
                w.wheel.sha256,
                html_escape::encode_text(filename)
            ));
        }
        page.push_str("  </body>\n</html>\n");
        write_file(&simple.join(project).join("index.html"), page.as_bytes())?;
    }
    root.push_str("  </body>\n</html>\n");
    write_file(&simple.join("index.html"), root.as_bytes())?;
    Ok(MirrorReport {
        dir: dir.to_path_buf(),
        projects: projects.len(),
        files: wheels.len(),
        bytes,
    })
}

/// `+` in local versions must be escaped in an href.
fn percent_encode_filename(name: &str) -> String {
    name.replace('%', "%25").replace('+', "%2B")
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), MirrorError> {
    crate::fsutil::write_atomic(path, bytes).map_err(io(path))
}

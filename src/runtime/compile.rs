//! Bytecode for an installed layer, compiled by the target interpreter in the sandbox.
//!
//! Owns the compile step after install: every `.py` under the layer's site-packages is
//! compiled by the base's CPython into `__pycache__` as unchecked-hash `.pyc` (PEP 552: no
//! mtime inside, so the bytes depend only on the source and the interpreter), with the path it
//! will have in the image as the code's file name; then each distribution's RECORD lists the
//! `.pyc` files of its `.py` files, as pip lists them.
//!
//! Also owns the bytecode cache (`CACHE/bytecode/v1/<fingerprint>/<key>`): a `.pyc` depends only
//! on the source bytes, the name the code gives its file, and the interpreter's compiler, so an
//! interpreter whose bytecode fingerprint (the probe in [`super::interpreter`]) is the same
//! takes the file from the cache instead of compiling it again: a rebuild, and the other
//! architecture's layers (the same CPython under qemu makes the same bytes, 30 to 40 times
//! slower), compile only what is new; a file the compiler refused (a syntax error) is
//! remembered too, so a layer fully in the cache starts no interpreter. Each entry carries the
//! sha256 of its bytes and is ignored when they do not match. It must not change the installed `.py` files nor anything
//! outside the layer's site-packages.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::{Runtime, RuntimeError, WORK_DIR};
use crate::install::record::{parse_record, render_record, sha256_b64};

/// Compiles the `.py` files named on stdin (NUL-separated, relative to `argv[1]`), naming them
/// as below `argv[2]`, in `argv[3]` worker processes; prints `compiled N failed M` and then one
/// failure per line.
const COMPILE: &str = r#"
import os, py_compile, sys
work, shown = sys.argv[1], sys.argv[2]
names = sys.stdin.buffer.read().split(b"\0")
files = [os.path.join(work, os.fsdecode(n)) for n in names if n]
failed = []
def one(path):
    rel = os.path.relpath(path, work)
    try:
        py_compile.compile(path, dfile=os.path.join(shown, rel), doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
        return None
    except py_compile.PyCompileError as e:
        return rel + ": " + str(e.exc_value).splitlines()[0]
workers = int(sys.argv[3])
if workers > 1 and len(files) > 64:
    # fork: the workers inherit `one` (a -c script cannot be imported by spawned workers).
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        results = list(pool.map(one, files, chunksize=64))
else:
    results = [one(f) for f in files]
failed = [r for r in results if r]
print("compiled", len(files) - len(failed), "failed", len(failed))
for f in failed:
    print(f)
"#;

/// What compiling a layer did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompileReport {
    /// `.pyc` files written.
    pub compiled: usize,
    /// `.py` files that did not compile (syntax errors; kept without bytecode, as pip does).
    pub failed: Vec<String>,
    /// Of `compiled`, how many came from the bytecode cache.
    pub reused: usize,
    /// RECORD rows added.
    pub recorded: usize,
    pub seconds: f64,
}

/// Compiles the layer at `layer_dir` (holding the venv at its image path) with `runtime`'s
/// interpreter and adds the `.pyc` files to the RECORDs. A layer without site-packages has
/// nothing to compile.
pub fn compile_layer(
    runtime: &Runtime,
    layer_dir: &Path,
    workers: usize,
) -> Result<CompileReport, RuntimeError> {
    let started = std::time::Instant::now();
    let purelib = runtime
        .interpreter
        .paths
        .get("purelib")
        .cloned()
        .ok_or_else(|| RuntimeError::Python {
            interpreter: runtime.interpreter.path.clone(),
            doing: "naming the venv's site-packages".to_string(),
            code: 0,
            stderr: "sysconfig has no purelib path".to_string(),
        })?;
    let site = layer_dir.join(purelib.trim_start_matches('/'));
    if !site.is_dir() {
        return Ok(CompileReport::default());
    }
    let tag = runtime
        .interpreter
        .cache_tag
        .clone()
        .unwrap_or_else(|| "cpython-314".to_string());
    let cache = runtime
        .interpreter
        .bytecode
        .as_deref()
        .filter(|f| f.len() == 64 && f.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|fingerprint| runtime.bytecode_cache.join(CACHE_FORMAT).join(fingerprint));
    let mut sources = Vec::new();
    py_files(&site, Path::new(""), &mut sources)?;
    // Each source: its cache key when it could be read, and whether the cache had it.
    let mut missing: Vec<(&Path, Option<String>)> = Vec::new();
    let mut known_failures: Vec<String> = Vec::new();
    let mut reused = 0;
    for rel in &sources {
        let key = cache.as_ref().and_then(|_| {
            let source = fs::read(site.join(rel)).ok()?;
            Some(cache_key(&purelib, rel, &source))
        });
        let pyc = site.join(pyc_rel(rel, &tag));
        let hit = match (&cache, &key) {
            (Some(dir), Some(key)) => read_entry(&dir.join(key)),
            _ => None,
        };
        // A file this compiler refused before (a syntax error) is refused again.
        let refused = match (&cache, &key, &hit) {
            (Some(dir), Some(key), None) => checked(&dir.join(format!("{key}.failed")), 1)
                .and_then(|m| String::from_utf8(m).ok())
                .filter(|m| m.starts_with(&format!("{}: ", rel.display()))),
            _ => None,
        };
        match (hit, refused) {
            (Some(bytes), _) => {
                write_pyc(&pyc, &bytes)?;
                reused += 1;
            }
            (None, Some(message)) => known_failures.push(message),
            (None, None) => missing.push((rel.as_path(), key)),
        }
    }
    let mut list = Vec::new();
    for (rel, _) in &missing {
        list.extend_from_slice(rel.as_os_str().as_encoded_bytes());
        list.push(0);
    }
    let (compiled, mut failed) = if missing.is_empty() {
        (0, Vec::new())
    } else {
        run_compile(runtime, &site, &purelib, workers, &list, layer_dir)?
    };
    if let Some(dir) = &cache {
        for (rel, key) in &missing {
            let Some(key) = key else { continue };
            // A cache that cannot be written only costs the next build a compile.
            if let Ok(bytes) = fs::read(site.join(pyc_rel(rel, &tag))) {
                let _ = write_entry(dir, key, &bytes);
            } else if let Some(message) = failed
                .iter()
                .find(|m| m.starts_with(&format!("{}: ", rel.display())))
            {
                let _ = write_entry(dir, &format!("{key}.failed"), message.as_bytes());
            }
        }
    }
    failed.extend(known_failures);
    failed.sort();
    let recorded = record_bytecode(&site, &tag)?;
    Ok(CompileReport {
        compiled: compiled + reused,
        failed,
        reused,
        recorded,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The layout of the bytecode cache; bump when an entry's form changes.
const CACHE_FORMAT: &str = "v1";

/// Runs the compile script over the files in `list`; returns how many compiled and the
/// failures.
fn run_compile(
    runtime: &Runtime,
    site: &Path,
    purelib: &str,
    workers: usize,
    list: &[u8],
    layer_dir: &Path,
) -> Result<(usize, Vec<String>), RuntimeError> {
    let output = runtime
        .run(
            &[
                runtime.interpreter.path.clone(),
                "-I".to_string(),
                "-c".to_string(),
                COMPILE.to_string(),
                WORK_DIR.to_string(),
                purelib.to_string(),
                workers.max(1).to_string(),
            ],
            &[],
            Some(site),
            list,
        )
        .map_err(|e| match e {
            RuntimeError::Timeout { seconds, .. } => RuntimeError::CompileTimeout {
                layer: layer_dir.to_path_buf(),
                seconds,
            },
            other => other,
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut lines = stdout.lines();
    let summary: Vec<&str> = lines.next().unwrap_or_default().split(' ').collect();
    let (compiled, failed_count) = match summary.as_slice() {
        ["compiled", n, "failed", m] if output.code == 0 => (
            n.parse::<usize>().unwrap_or(0),
            m.parse::<usize>().unwrap_or(0),
        ),
        _ => {
            return Err(RuntimeError::Python {
                interpreter: runtime.interpreter.path.clone(),
                doing: format!("compiling {}", site.display()),
                code: output.code,
                stderr: output.stderr_tail(),
            })
        }
    };
    let failed: Vec<String> = lines.take(failed_count).map(str::to_string).collect();
    Ok((compiled, failed))
}

/// Every `.py` file below `dir` (relative to the walk's start, in name order), not looking
/// into `__pycache__` folders nor following links to folders, as `os.walk` walks.
fn py_files(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<(), RuntimeError> {
    let here = dir.join(rel);
    let mut entries: Vec<_> = fs::read_dir(&here)
        .map_err(|source| RuntimeError::Io {
            path: here.clone(),
            source,
        })?
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if name != "__pycache__" {
                py_files(dir, &rel.join(&name), out)?;
            }
        } else if name.as_encoded_bytes().ends_with(b".py") {
            out.push(rel.join(&name));
        }
    }
    Ok(())
}

/// `dir/__pycache__/name.TAG.pyc` for `dir/name.py` (a relative path).
fn pyc_rel(py: &Path, tag: &str) -> PathBuf {
    let mut name: OsString = py.file_stem().unwrap_or_default().to_os_string();
    name.push(format!(".{tag}.pyc"));
    py.parent()
        .unwrap_or(Path::new(""))
        .join("__pycache__")
        .join(name)
}

/// The cache key of one source: its bytes and the file name its code will carry.
fn cache_key(purelib: &str, rel: &Path, source: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(purelib.as_bytes());
    hasher.update(b"/");
    hasher.update(rel.as_os_str().as_encoded_bytes());
    hasher.update(b"\0");
    hasher.update(source);
    hex::encode(hasher.finalize())
}

/// A cache entry's `.pyc` bytes, when its checksum (the first 32 bytes: the sha256 of the
/// rest) holds.
fn read_entry(path: &Path) -> Option<Vec<u8>> {
    // A .pyc has at least its 16-byte header.
    checked(path, 16)
}

/// An entry's content (at least `min` bytes) when its checksum holds.
fn checked(path: &Path, min: usize) -> Option<Vec<u8>> {
    let bytes = fs::read(path).ok()?;
    if bytes.len() < 32 + min {
        return None;
    }
    let (sum, content) = bytes.split_at(32);
    (Sha256::digest(content).as_slice() == sum).then(|| content.to_vec())
}

/// Stores a compiled file (or, under `KEY.failed`, why it did not compile) under `dir/key`
/// (temp name, then rename).
fn write_entry(dir: &Path, key: &str, pyc: &[u8]) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    let path = dir.join(key);
    let mut bytes = Sha256::digest(pyc).to_vec();
    bytes.extend_from_slice(pyc);
    write_renamed(&path, &bytes)
}

/// Writes a `.pyc` taken from the cache into the layer.
fn write_pyc(path: &Path, bytes: &[u8]) -> Result<(), RuntimeError> {
    let io = |source| RuntimeError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io)?;
    }
    write_renamed(path, bytes).map_err(io)
}

/// Writes under a temp name beside `path`, then renames (no fsync: a layer is rebuilt, and a
/// torn cache entry fails its checksum).
fn write_renamed(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = crate::fsutil::temp_sibling(path);
    let written = fs::write(&tmp, bytes).and_then(|()| fs::rename(&tmp, path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// `dir/__pycache__/name.TAG.pyc` for `dir/name.py`.
pub fn pyc_path(py: &str, tag: &str) -> Option<String> {
    let stem = py.strip_suffix(".py")?;
    Some(match stem.rsplit_once('/') {
        Some((dir, name)) => format!("{dir}/__pycache__/{name}.{tag}.pyc"),
        None => format!("__pycache__/{stem}.{tag}.pyc"),
    })
}

/// Adds a row for the `.pyc` of each `.py` row of every RECORD under `site`; returns how many.
pub fn record_bytecode(site: &Path, tag: &str) -> Result<usize, RuntimeError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RuntimeError::Io { path, source }
    };
    let mut added = 0;
    let mut entries: Vec<_> = fs::read_dir(site)
        .map_err(io(site))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "dist-info"))
        .collect();
    entries.sort();
    for dist_info in entries {
        let record = dist_info.join("RECORD");
        let Ok(text) = fs::read_to_string(&record) else {
            continue;
        };
        let rows = parse_record(&text).map_err(|(line, message)| RuntimeError::Io {
            path: record.clone(),
            source: std::io::Error::other(format!("line {line}: {message}")),
        })?;
        let listed: std::collections::HashSet<&str> =
            rows.iter().map(|r| r.path.as_str()).collect();
        let mut out: Vec<(String, Option<String>, Option<u64>)> = rows
            .iter()
            .map(|r| {
                (
                    r.path.clone(),
                    r.hash
                        .as_ref()
                        .filter(|(alg, _)| alg == "sha256")
                        .map(|(_, h)| h.clone()),
                    r.size,
                )
            })
            .collect();
        let mut new_rows = Vec::new();
        for row in &rows {
            if row.path.starts_with("../") || row.path.starts_with('/') {
                continue;
            }
            let Some(pyc) = pyc_path(&row.path, tag) else {
                continue;
            };
            if listed.contains(pyc.as_str()) {
                continue;
            }
            if let Ok(bytes) = fs::read(site.join(&pyc)) {
                new_rows.push((pyc, Some(sha256_b64(&bytes)), Some(bytes.len() as u64)));
            }
        }
        if new_rows.is_empty() {
            continue;
        }
        added += new_rows.len();
        out.extend(new_rows);
        let tmp = dist_info.join(".RECORD.tmp");
        fs::write(&tmp, render_record(&mut out)).map_err(io(&tmp))?;
        fs::rename(&tmp, &record).map_err(io(&record))?;
    }
    Ok(added)
}

/// How long compiling one layer may take unless the stack (`[compile] timeout`) or the command
/// (`--compile-timeout`, `COMFYPAK_COMPILE_TIMEOUT`) says otherwise: generous, since qemu is
/// slow.
pub const DEFAULT_COMPILE_TIMEOUT: Duration = Duration::from_secs(1800);

/// The most a compile timeout may be set to: a bound, so a typo never means "forever".
pub const MAX_COMPILE_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Parses a compile timeout (seconds, `90m`, `2h`, `1h30m`), at least 1 s and at most
/// [`MAX_COMPILE_TIMEOUT`].
pub fn compile_timeout(text: &str) -> Result<Duration, String> {
    let limit = crate::units::parse_duration(text)?;
    if limit > MAX_COMPILE_TIMEOUT {
        return Err(format!(
            "`{text}` is more than the {}h a compile may be given",
            MAX_COMPILE_TIMEOUT.as_secs() / 3600
        ));
    }
    Ok(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pyc_names() {
        assert_eq!(
            pyc_path("pkg/mod.py", "cpython-314").as_deref(),
            Some("pkg/__pycache__/mod.cpython-314.pyc")
        );
        assert_eq!(
            pyc_path("top.py", "cpython-314").as_deref(),
            Some("__pycache__/top.cpython-314.pyc")
        );
        assert_eq!(pyc_path("pkg/data.json", "cpython-314"), None);
    }
}

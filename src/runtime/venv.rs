//! The venv skeleton, written from the base interpreter's answers as `uv venv` writes one.
//!
//! Owns `pyvenv.cfg` (home and version of the real interpreter, no system site-packages), the
//! `bin/python`, `bin/python3`, `bin/python3.X` links, the empty `site-packages` and the `lib64`
//! link, under a layer folder (the image path below it). It must not install packages or run
//! anything.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use super::{Interpreter, RuntimeError};

/// The files of a venv skeleton at `venv` (an image path) for `interpreter`, relative to the
/// venv: `(path, content)` for files and `(path, target)` for links.
pub struct Skeleton {
    pub pyvenv_cfg: String,
    pub links: Vec<(String, String)>,
    pub dirs: Vec<String>,
}

/// What `uv venv` would write for this interpreter.
pub fn skeleton(interpreter: &Interpreter) -> Result<Skeleton, RuntimeError> {
    let executable = &interpreter.executable;
    let home = Path::new(executable)
        .parent()
        .and_then(Path::to_str)
        .filter(|h| h.starts_with('/'))
        .ok_or_else(|| RuntimeError::Python {
            interpreter: interpreter.path.clone(),
            doing: "naming its executable".to_string(),
            code: 0,
            stderr: format!("sys.executable is `{executable}`, not an absolute path"),
        })?;
    let version = interpreter
        .python_version()
        .ok_or_else(|| RuntimeError::Python {
            interpreter: interpreter.path.clone(),
            doing: "naming its version".to_string(),
            code: 0,
            stderr: format!("version `{}`", interpreter.version),
        })?;
    let pyvenv_cfg = format!(
        "home = {home}\nimplementation = CPython\nversion_info = {v}\nversion = {v}\n\
         include-system-site-packages = false\nexecutable = {executable}\n",
        v = interpreter.version
    );
    let short = format!("python{}.{}", version.major, version.minor);
    Ok(Skeleton {
        pyvenv_cfg,
        links: vec![
            ("bin/python".to_string(), executable.clone()),
            ("bin/python3".to_string(), "python".to_string()),
            (format!("bin/{short}"), "python".to_string()),
            ("lib64".to_string(), "lib".to_string()),
        ],
        dirs: vec!["bin".to_string(), format!("lib/{short}/site-packages")],
    })
}

/// Writes the skeleton of `venv` (an image path such as `/opt/comfyui/venv`) under
/// `layer_dir`; returns the venv folder on the host. Existing skeleton files are replaced.
pub fn write_skeleton(
    layer_dir: &Path,
    venv: &str,
    interpreter: &Interpreter,
) -> Result<PathBuf, RuntimeError> {
    let skeleton = skeleton(interpreter)?;
    let dir = layer_dir.join(venv.trim_start_matches('/'));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RuntimeError::Io { path, source }
    };
    for sub in &skeleton.dirs {
        let path = dir.join(sub);
        fs::create_dir_all(&path).map_err(io(&path))?;
    }
    let cfg = dir.join("pyvenv.cfg");
    let tmp = dir.join(".pyvenv.cfg.tmp");
    fs::write(&tmp, &skeleton.pyvenv_cfg).map_err(io(&tmp))?;
    fs::rename(&tmp, &cfg).map_err(io(&cfg))?;
    for (link, target) in &skeleton.links {
        let path = dir.join(link);
        if fs::symlink_metadata(&path).is_ok() {
            fs::remove_file(&path).map_err(io(&path))?;
        }
        symlink(target, &path).map_err(io(&path))?;
    }
    Ok(dir)
}

//! `image.toml` beside `stack.toml`: what the image runs and which plain folders become
//! extra layers on top of the installed ones.
//!
//! ```toml
//! [image]
//! entrypoint = ["/opt/comfyui/venv/bin/python", "main.py"]
//! cmd = ["--listen", "0.0.0.0"]
//! workdir = "/opt/comfyui/app"
//! user = "1000:1000"                        # optional
//! volumes = ["/data"]                       # optional: empty folders owned by `user`, one layer
//! env = { COMFYUI_PORT = "8188" }           # added after PATH and VIRTUAL_ENV
//! labels = { "org.opencontainers.image.source" = "https://git.example/comfyui" }
//!
//! [[directory]]                             # one layer per table, on top, in this order
//! name = "app"
//! source = "../ComfyUI"                     # relative to the folder of image.toml
//! path = "/opt/comfyui/app"                 # where its contents go in the image
//! exclude = [".git", "__pycache__"]         # names left out at any depth (optional)
//! ```
//!
//! Owns reading and validating that file. It must not touch layers or images; the stack
//! manifest itself (`stack.toml`) belongs to [`crate::stack`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::tar::Owner;
use super::PackError;
use crate::stack::Stack;

/// The file name, in the stack folder.
pub const IMAGE_SETTINGS: &str = "image.toml";

/// The name of the image layer that holds the folders of `[image] volumes`.
pub const VOLUMES_LAYER: &str = "volumes";

/// Image settings (all optional).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageSettings {
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    /// Sorted by name.
    pub env: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// Folders declared as volumes (the config's `Volumes`), sorted, without a trailing `/`.
    /// Each is an empty folder in the image owned by [`Self::volume_owner`], so that a volume
    /// mounted there starts out writable by the image's user (a runtime copies the folder's
    /// owner to a new named volume) and the image runs without one.
    pub volumes: Vec<String>,
    /// The owner of the volume folders: `user` (numeric), or root when no user is set.
    pub volume_owner: Owner,
    /// Extra layers from plain folders, on top of the stack's layers, in file order.
    pub directories: Vec<DirectoryLayer>,
}

/// A layer made of a folder on the build host (an application checkout, config files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryLayer {
    pub name: String,
    /// The folder on the build host (resolved against the settings file's folder).
    pub source: PathBuf,
    /// Absolute in-image path its contents go to.
    pub path: String,
    pub exclude: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    #[serde(default)]
    image: RawImage,
    #[serde(default)]
    directory: Vec<RawDirectory>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawImage {
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    workdir: Option<String>,
    user: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    volumes: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDirectory {
    name: String,
    source: String,
    path: String,
    #[serde(default)]
    exclude: Vec<String>,
}

impl ImageSettings {
    /// Reads `image.toml` from the stack's folder; no file means default settings.
    pub fn for_stack(stack: &Stack) -> Result<ImageSettings, PackError> {
        let dir = stack.manifest.parent().unwrap_or(Path::new("."));
        let path = dir.join(IMAGE_SETTINGS);
        if !path.exists() {
            return Ok(ImageSettings::default());
        }
        let layer_names: Vec<&str> = stack.layers.iter().map(|l| l.name.as_str()).collect();
        Self::read(&path, &layer_names)
    }

    /// Reads and validates a settings file; `layer_names` are the stack's layers (a
    /// directory layer may not reuse one of those names).
    pub fn read(path: &Path, layer_names: &[&str]) -> Result<ImageSettings, PackError> {
        let text = std::fs::read_to_string(path).map_err(|source| PackError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let invalid = |message: String| PackError::Settings {
            path: path.to_path_buf(),
            message,
        };
        let raw: RawSettings = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        if let Some(workdir) = &raw.image.workdir {
            if !workdir.starts_with('/') {
                return Err(invalid(format!(
                    "`image.workdir` = {workdir:?} is not absolute; write e.g. \"/opt/comfyui/app\""
                )));
            }
        }
        for key in raw.image.env.keys() {
            if key.is_empty() || key.contains('=') {
                return Err(invalid(format!(
                    "`image.env` key {key:?} is not a variable name (empty or contains `=`)"
                )));
            }
            if key == "PATH" || key == "VIRTUAL_ENV" {
                return Err(invalid(format!(
                    "`image.env.{key}` is set by comfypak from `target.venv` in stack.toml; \
                     remove it here"
                )));
            }
        }
        let volumes = volume_paths(&raw.image.volumes).map_err(&invalid)?;
        let volume_owner = match (&raw.image.user, volumes.is_empty()) {
            (_, true) | (None, _) => Owner::ROOT,
            (Some(user), false) => numeric_user(user).ok_or_else(|| {
                invalid(format!(
                    "`image.volumes` folders are owned by `image.user`, and {user:?} is not \
                     numeric: write it as \"UID:GID\" (comfypak does not read the base's \
                     /etc/passwd)"
                ))
            })?,
        };
        if !volumes.is_empty() && layer_names.contains(&VOLUMES_LAYER) {
            return Err(invalid(format!(
                "`image.volumes` makes a layer named `{VOLUMES_LAYER}`, and the stack has a \
                 layer of that name; rename that layer"
            )));
        }
        let mut directories: Vec<DirectoryLayer> = Vec::new();
        for d in raw.directory {
            let valid_name = d
                .name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase())
                && d.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !valid_name {
                return Err(invalid(format!(
                    "directory layer name {:?}: use lowercase letters, digits and `-`, starting \
                     with a letter",
                    d.name
                )));
            }
            if layer_names.contains(&d.name.as_str())
                || directories.iter().any(|other| other.name == d.name)
                || (!volumes.is_empty() && d.name == VOLUMES_LAYER)
            {
                return Err(invalid(format!(
                    "directory layer `{}` has the name of another layer; give it its own name",
                    d.name
                )));
            }
            if !d.path.starts_with('/') || d.path.split('/').any(|p| p == "..") {
                return Err(invalid(format!(
                    "directory layer `{}`: path {:?} must be absolute, without `..`",
                    d.name, d.path
                )));
            }
            let source = base.join(&d.source);
            if !source.is_dir() {
                return Err(invalid(format!(
                    "directory layer `{}`: source {} is not a folder (relative paths are read \
                     from the folder of image.toml)",
                    d.name,
                    source.display()
                )));
            }
            directories.push(DirectoryLayer {
                name: d.name,
                source,
                path: d.path,
                exclude: d.exclude,
            });
        }
        Ok(ImageSettings {
            entrypoint: raw.image.entrypoint,
            cmd: raw.image.cmd,
            workdir: raw.image.workdir,
            user: raw.image.user,
            env: raw.image.env,
            labels: raw.image.labels,
            volumes,
            volume_owner,
            directories,
        })
    }
}

/// `[image] volumes`, checked (absolute, no `.` or `..`, not `/`, no repeats) and sorted,
/// each without a trailing `/`.
fn volume_paths(raw: &[String]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for path in raw {
        let trimmed = path.trim_end_matches('/');
        let parts: Vec<&str> = trimmed.split('/').skip(1).collect();
        let valid = path.starts_with('/')
            && !parts.is_empty()
            && parts
                .iter()
                .all(|p| !p.is_empty() && *p != "." && *p != "..");
        if !valid {
            return Err(format!(
                "`image.volumes` entry {path:?} is not an absolute folder path without `.` or \
                 `..` (and not `/`); write e.g. \"/data\""
            ));
        }
        if out.iter().any(|p| p == trimmed) {
            return Err(format!(
                "`image.volumes` names {trimmed:?} twice; list each folder once"
            ));
        }
        out.push(trimmed.to_string());
    }
    out.sort();
    Ok(out)
}

/// `UID` or `UID:GID` (a user without a group runs with group 0, as container runtimes do
/// for a numeric user the base's /etc/passwd does not list).
fn numeric_user(user: &str) -> Option<Owner> {
    let (uid, gid) = match user.split_once(':') {
        Some((uid, gid)) => (uid, gid),
        None => (user, "0"),
    };
    Some(Owner {
        uid: uid.parse().ok()?,
        gid: gid.parse().ok()?,
    })
}

//! The `[build-system]` table of a source tree's `pyproject.toml` (PEP 517, PEP 518).
//!
//! Owns reading it and the defaults pip applies: no `pyproject.toml`, or one without
//! `[build-system]`, means setuptools' legacy backend (`setuptools>=40.8.0`, `setup.py`); a
//! table without `build-backend` means the legacy backend with the listed requirements.
//! `backend-path` entries must stay inside the tree. Must not run anything.

use std::path::Path;

use serde::Deserialize;

use super::SourceError;

/// The backend pip uses for a tree without `build-backend`.
pub const LEGACY_BACKEND: &str = "setuptools.build_meta:__legacy__";
/// The requirement pip uses for a tree without `[build-system]`.
pub const LEGACY_REQUIRES: &str = "setuptools>=40.8.0";

/// How a source tree is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildSystem {
    /// PEP 508 requirements of the build environment.
    pub requires: Vec<String>,
    /// `module:object` of the backend.
    pub backend: String,
    /// Folders of the tree put first on `sys.path` for an in-tree backend.
    pub backend_path: Vec<String>,
    /// Whether a default was applied (no `[build-system]` or no `build-backend`).
    pub legacy: bool,
}

#[derive(Deserialize)]
struct PyProject {
    #[serde(rename = "build-system")]
    build_system: Option<Table>,
}

#[derive(Deserialize)]
struct Table {
    requires: Option<Vec<String>>,
    #[serde(rename = "build-backend")]
    build_backend: Option<String>,
    #[serde(rename = "backend-path")]
    backend_path: Option<Vec<String>>,
}

impl BuildSystem {
    fn legacy() -> BuildSystem {
        BuildSystem {
            requires: vec![LEGACY_REQUIRES.to_string()],
            backend: LEGACY_BACKEND.to_string(),
            backend_path: Vec::new(),
            legacy: true,
        }
    }

    /// Reads `tree/pyproject.toml`; a tree without one (but with `setup.py`) gets the legacy
    /// default; a tree with neither is not a Python project.
    pub fn read(tree: &Path) -> Result<BuildSystem, SourceError> {
        let path = tree.join("pyproject.toml");
        let bad = |message: String| SourceError::BadPyproject {
            path: path.clone(),
            message,
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if tree.join("setup.py").is_file() {
                    return Ok(BuildSystem::legacy());
                }
                return Err(SourceError::NotAProject {
                    path: tree.to_path_buf(),
                });
            }
            Err(e) => return Err(SourceError::io(&path)(e)),
        };
        let parsed: PyProject = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let Some(table) = parsed.build_system else {
            return Ok(BuildSystem::legacy());
        };
        let Some(requires) = table.requires else {
            return Err(bad(
                "[build-system] has no `requires` (PEP 518 makes it mandatory)".to_string(),
            ));
        };
        for requirement in &requires {
            if let Err(e) = requirement.parse::<pep508_rs::Requirement>() {
                return Err(bad(format!(
                    "[build-system] requires `{requirement}`, which is not a PEP 508 requirement: {e}"
                )));
            }
        }
        let backend_path = table.backend_path.unwrap_or_default();
        for entry in &backend_path {
            let inside = !entry.starts_with('/')
                && Path::new(entry)
                    .components()
                    .all(|c| !matches!(c, std::path::Component::ParentDir));
            if !inside {
                return Err(bad(format!(
                    "[build-system] backend-path `{entry}` is outside the source tree"
                )));
            }
        }
        match table.build_backend {
            Some(backend) => {
                let valid = !backend.is_empty()
                    && backend.split([':', '.']).all(|part| {
                        !part.is_empty()
                            && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    })
                    && backend.matches(':').count() <= 1;
                if !valid {
                    return Err(bad(format!(
                        "[build-system] build-backend `{backend}` is not `module.path` or `module.path:object`"
                    )));
                }
                Ok(BuildSystem {
                    requires,
                    backend,
                    backend_path,
                    legacy: false,
                })
            }
            None => Ok(BuildSystem {
                requires,
                backend: LEGACY_BACKEND.to_string(),
                backend_path,
                legacy: true,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pyproject: Option<&str>, setup_py: bool) -> Result<BuildSystem, SourceError> {
        let dir = tempfile::tempdir().unwrap();
        if let Some(text) = pyproject {
            std::fs::write(dir.path().join("pyproject.toml"), text).unwrap();
        }
        if setup_py {
            std::fs::write(dir.path().join("setup.py"), "").unwrap();
        }
        BuildSystem::read(dir.path())
    }

    #[test]
    fn defaults_as_pip() {
        let legacy = read(None, true).unwrap();
        assert_eq!(legacy.requires, vec!["setuptools>=40.8.0"]);
        assert_eq!(legacy.backend, LEGACY_BACKEND);
        assert!(legacy.legacy);
        assert!(matches!(
            read(None, false),
            Err(SourceError::NotAProject { .. })
        ));
        let no_table = read(Some("[project]\nname = \"x\"\n"), true).unwrap();
        assert_eq!(no_table.backend, LEGACY_BACKEND);
        let no_backend = read(
            Some("[build-system]\nrequires = [\"setuptools\", \"wheel\"]\n"),
            true,
        )
        .unwrap();
        assert_eq!(no_backend.requires, vec!["setuptools", "wheel"]);
        assert_eq!(no_backend.backend, LEGACY_BACKEND);
    }

    #[test]
    fn declared_backend_and_bad_tables() {
        let flit = read(
            Some("[build-system]\nrequires = [\"flit_core >=3.2,<4\"]\nbuild-backend = \"flit_core.buildapi\"\n"),
            false,
        )
        .unwrap();
        assert_eq!(flit.backend, "flit_core.buildapi");
        assert!(!flit.legacy);
        let e = read(Some("[build-system]\nbuild-backend = \"x\"\n"), false).unwrap_err();
        assert!(e.to_string().contains("no `requires`"), "{e}");
        let e = read(
            Some("[build-system]\nrequires = []\nbuild-backend = \"b\"\nbackend-path = [\"../out\"]\n"),
            false,
        )
        .unwrap_err();
        assert!(e.to_string().contains("outside the source tree"), "{e}");
        let e = read(
            Some("[build-system]\nrequires = [\"not a req!!\"]\nbuild-backend = \"b\"\n"),
            false,
        )
        .unwrap_err();
        assert!(e.to_string().contains("PEP 508"), "{e}");
        let e = read(Some("[build-system\n"), false).unwrap_err();
        assert!(e.to_string().contains("pyproject.toml"), "{e}");
    }
}

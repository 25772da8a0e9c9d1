//! Reading and writing `pylock.toml`: version checks, deterministic bytes, atomic replace.
//!
//! The reader names what is wrong and what to do: a missing file, a file that is not a lock
//! (not TOML, or TOML without `lock-version`), a newer lock-version, a PEP 751 lock that
//! comfypak did not write (no `[tool.comfypak]`), packages in undeclared layers, and a lock
//! whose layers are not the stack's.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::{Lock, LOCK_VERSION};

/// Why a lock could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} does not exist", path.display())]
    Missing { path: PathBuf },
    /// A value that does not parse or a table of the wrong shape (the message names the
    /// line and key).
    #[error("{}{message}", path.display())]
    Syntax { path: PathBuf, message: String },
    /// A value that does not parse, found after the shape was read (the cause says why).
    #[error("{}: `{field}`: {message}", path.display())]
    Field {
        path: PathBuf,
        field: String,
        message: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{} is not a pylock.toml: {message}", path.display())]
    NotALock { path: PathBuf, message: String },
    #[error("{}: lock-version {found} is not supported (this comfypak reads {LOCK_VERSION})", path.display())]
    Version { path: PathBuf, found: String },
    #[error("{} is a PEP 751 lock (created-by = {created_by:?}) but has no [tool.comfypak] table: comfypak needs its layer data", path.display())]
    NotComfypak { path: PathBuf, created_by: String },
    #[error("{}: package {package} {version} is in layer `{layer}`, which [tool.comfypak] layers does not declare (declared: {declared})", path.display())]
    UnknownLayer {
        path: PathBuf,
        package: String,
        version: String,
        layer: String,
        declared: String,
    },
    #[error("{}: the lock's layers ({locked}) are not the stack's ({stack})", path.display())]
    LayerMismatch {
        path: PathBuf,
        locked: String,
        stack: String,
    },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl LockError {
    /// What the user can do about it.
    pub fn help(&self) -> Option<String> {
        match self {
            LockError::Read { .. } => Some("run `comfypak resolve` to create it".to_string()),
            LockError::Missing { .. } => Some("run `comfypak resolve` to create it, or pass the path of an existing lock".to_string()),
            LockError::NotALock { .. } => Some("pass the lock `comfypak resolve` wrote (pylock.toml by default)".to_string()),
            LockError::Version { .. } => Some("upgrade comfypak, or re-create the lock with `comfypak resolve`".to_string()),
            LockError::NotComfypak { .. } => Some("create the lock with `comfypak resolve`".to_string()),
            LockError::Syntax { .. } | LockError::Field { .. } => Some("the lock was edited by hand or is damaged; re-create it with `comfypak resolve`".to_string()),
            LockError::UnknownLayer { .. } => Some("the lock was edited by hand or is damaged; re-create it with `comfypak resolve`".to_string()),
            LockError::LayerMismatch { .. } => Some("the stack's layers changed since the lock was made; run `comfypak resolve` to re-create it".to_string()),
            _ => None,
        }
    }
}

impl Lock {
    /// Reads and validates a lock file.
    pub fn read(path: &Path) -> Result<Lock, LockError> {
        let bytes = std::fs::read(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                LockError::Missing {
                    path: path.to_path_buf(),
                }
            } else {
                LockError::Read {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
        let text = String::from_utf8(bytes).map_err(|e| LockError::NotALock {
            path: path.to_path_buf(),
            message: format!(
                "it is not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        })?;
        Lock::from_toml_str(&text, path)
    }

    /// Parses lock text; `path` is only used in messages.
    pub fn from_toml_str(text: &str, path: &Path) -> Result<Lock, LockError> {
        // Check the version before the shape, so a future format gets the right message.
        let value: toml::Table = toml::from_str(text).map_err(|e| LockError::NotALock {
            path: path.to_path_buf(),
            message: format!("it is not valid TOML: {}", e.to_string().trim_end()),
        })?;
        let version = match value.get("lock-version") {
            None => {
                let keys: Vec<&str> = value.keys().map(String::as_str).take(6).collect();
                return Err(LockError::NotALock {
                    path: path.to_path_buf(),
                    message: if keys.is_empty() {
                        "it is empty (a PEP 751 lock starts with `lock-version = \"1.0\"`)"
                            .to_string()
                    } else {
                        format!(
                            "it has no `lock-version` key (its top-level keys: {})",
                            keys.join(", ")
                        )
                    },
                });
            }
            Some(toml::Value::String(version)) => version,
            Some(other) => {
                return Err(LockError::NotALock {
                    path: path.to_path_buf(),
                    message: format!(
                        "`lock-version` is a {}, not a string like \"1.0\"",
                        other.type_str()
                    ),
                })
            }
        };
        if version.split('.').next() != Some("1") {
            return Err(LockError::Version {
                path: path.to_path_buf(),
                found: version.to_string(),
            });
        }
        let has_comfypak = value
            .get("tool")
            .and_then(|tool| tool.get("comfypak"))
            .is_some();
        if !has_comfypak {
            return Err(LockError::NotComfypak {
                path: path.to_path_buf(),
                created_by: value
                    .get("created-by")
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_string(),
            });
        }
        let lock: Lock = toml::from_str(text).map_err(|e| LockError::Syntax {
            path: path.to_path_buf(),
            message: at_line(text, &e),
        })?;
        lock.check_package_layers(path)?;
        lock.check_markers(path)?;
        Ok(lock)
    }

    /// Every package's layer is declared in `[tool.comfypak] layers`.
    fn check_package_layers(&self, path: &Path) -> Result<(), LockError> {
        let declared = self.layer_names();
        for package in &self.packages {
            let layer = &package.tool.comfypak.layer;
            if !declared.contains(&layer.as_str()) {
                return Err(LockError::UnknownLayer {
                    path: path.to_path_buf(),
                    package: package.name.to_string(),
                    version: package.version.to_string(),
                    layer: layer.clone(),
                    declared: if declared.is_empty() {
                        "none".to_string()
                    } else {
                        declared.join(", ")
                    },
                });
            }
        }
        Ok(())
    }

    /// Every package's marker parses as PEP 508 (so queries over the lock never meet a marker
    /// they cannot evaluate).
    fn check_markers(&self, path: &Path) -> Result<(), LockError> {
        for package in &self.packages {
            let Some(marker) = package.marker.as_deref() else {
                continue;
            };
            if let Err(e) = pep508_rs::MarkerTree::from_str(marker) {
                return Err(LockError::Field {
                    path: path.to_path_buf(),
                    field: format!("packages.marker of {} {}", package.name, package.version),
                    message: "not a PEP 508 marker".to_string(),
                    source: Box::new(e),
                });
            }
        }
        Ok(())
    }

    /// Checks that the lock's layers are exactly `stack_layers`, in that order.
    pub fn check_stack_layers(&self, path: &Path, stack_layers: &[&str]) -> Result<(), LockError> {
        let locked = self.layer_names();
        if locked != stack_layers {
            return Err(LockError::LayerMismatch {
                path: path.to_path_buf(),
                locked: locked.join(", "),
                stack: stack_layers.join(", "),
            });
        }
        Ok(())
    }

    /// The lock as TOML text: deterministic for equal locks.
    pub fn to_toml_string(&self) -> String {
        self.try_to_toml_string().unwrap_or_default()
    }

    fn sorted(&self) -> Lock {
        let mut sorted = self.clone();
        // By the written text (not PEP 440 order), so the bytes stay what they always were.
        sorted
            .packages
            .sort_by_cached_key(|p| (p.name.to_string(), p.version.to_string(), p.marker.clone()));
        for package in &mut sorted.packages {
            package.dependencies.sort();
            package.dependencies.dedup();
            package.wheels.sort_by(|a, b| a.name.cmp(&b.name));
        }
        sorted
    }

    fn try_to_toml_string(&self) -> Result<String, toml::ser::Error> {
        toml::to_string(&self.sorted())
    }

    /// Writes the lock atomically ([`crate::fsutil::write_atomic`]).
    pub fn write(&self, path: &Path) -> Result<(), LockError> {
        let text = self.try_to_toml_string().map_err(|e| LockError::Invalid {
            path: path.to_path_buf(),
            message: format!("the lock cannot be written as TOML: {e}"),
        })?;
        // Verify what we are about to write reads back as the same lock.
        let back = Lock::from_toml_str(&text, path)?;
        if back.to_toml_string() != text || back != self.sorted() {
            return Err(LockError::Invalid {
                path: path.to_path_buf(),
                message: "the lock does not read back as written".to_string(),
            });
        }
        crate::fsutil::write_atomic(path, text.as_bytes()).map_err(|source| LockError::Write {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(())
    }
}

/// A TOML read error as `:LINE:COLUMN: message` (to follow the path), then the line with a caret under the value,
/// as pak file errors are shown: the position and the message once each.
fn at_line(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim_end();
    let Some(span) = error.span() else {
        return format!(" {message}");
    };
    let start = span.start.min(text.len());
    let line_start = text[..start].rfind('\n').map_or(0, |at| at + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |at| start + at);
    let line_no = text[..start].matches('\n').count() + 1;
    let column = text[line_start..start].chars().count() + 1;
    let line = &text[line_start..line_end];
    let width = text[start..span.end.clamp(start, line_end)]
        .chars()
        .count()
        .max(1);
    let gutter = " ".repeat(line_no.to_string().len());
    format!(
        ":{line_no}:{column}: {message}\n{gutter} |\n{line_no} | {line}\n{gutter} | {}{}",
        " ".repeat(column - 1),
        "^".repeat(width)
    )
}

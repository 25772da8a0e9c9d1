//! Where a lock used as it is (`--frozen`, `--locked`) may fetch from: every wheel URL must
//! be served by the declared index its package was locked from (the stack's index
//! definitions, after `--index` overrides), unless the lock marks the package a direct URL
//! requirement. The URLs were not read from the indexes in this run, so they must at least
//! point where the stack's indexes are.
//!
//! Owns: [`check_wheel_origins`] and [`OriginError`]. Must not: download or read pages
//! (`fetch` downloads what the lock says and knows nothing of index definitions).

use url::Url;

use crate::index::definition::IndexDefs;
use crate::lock::{Lock, DIRECT_INDEX};

/// A wheel URL of the lock that the stack's indexes do not account for.
#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    #[error("package {package} {version}: wheel URL {url} is not served by index `{index}` ({index_url}), which the lock says it came from; a lock used as it is fetches only from the stack's declared indexes")]
    OutsideIndex {
        package: String,
        version: String,
        url: String,
        index: String,
        index_url: String,
    },
    #[error("package {package} {version} was locked from index `{index}`, which the stack does not declare (declared: {declared})")]
    UndeclaredIndex {
        package: String,
        version: String,
        index: String,
        declared: String,
    },
}

impl OriginError {
    /// What the user can do about it.
    pub fn help(&self) -> Option<String> {
        match self {
            OriginError::OutsideIndex { .. } => Some(
                "re-create the lock with `comfypak resolve`; a file from elsewhere must be a \
                 direct requirement (`name @ URL`) in a pak file; if the index links its files \
                 on another host, list that origin in the index definition's `files`"
                    .to_string(),
            ),
            OriginError::UndeclaredIndex { .. } => {
                Some("re-create the lock with `comfypak resolve`, or declare the index".to_string())
            }
        }
    }
}

/// Checks that every wheel URL of the lock is served by the declared index its package was
/// locked from (`IndexDef::serves`), unless the lock marks the package as a direct URL
/// requirement (see the module doc).
pub fn check_wheel_origins(lock: &Lock, defs: &IndexDefs) -> Result<(), OriginError> {
    for package in &lock.packages {
        let index = &package.tool.comfypak.index_name;
        if index == DIRECT_INDEX {
            continue;
        }
        let Some(def) = defs.get(index) else {
            return Err(OriginError::UndeclaredIndex {
                package: package.name.to_string(),
                version: package.version.to_string(),
                index: index.clone(),
                declared: defs.names().collect::<Vec<_>>().join(", "),
            });
        };
        for wheel in &package.wheels {
            let Some(url) = &wheel.url else {
                continue;
            };
            let inside = Url::parse(url).is_ok_and(|parsed| def.serves(&parsed));
            if !inside {
                return Err(OriginError::OutsideIndex {
                    package: package.name.to_string(),
                    version: package.version.to_string(),
                    url: crate::digest::shown(url, 300),
                    index: index.clone(),
                    index_url: crate::http::redact(&def.url),
                });
            }
        }
    }
    Ok(())
}

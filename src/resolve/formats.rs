//! Which kinds of distribution the resolver may take for a project (wheels, sdists), and the
//! hook that reads an index sdist's metadata.
//!
//! Owns [`FormatControl`], pip's `--no-binary` / `--only-binary` rules (`:all:`, `:none:`,
//! names; a later option overrides an earlier one for the names it covers, and a project
//! named by `--only-binary` loses its sources even under `--no-binary :all:`), and the
//! [`SdistMetadata`] trait through which the pipeline answers "what does this sdist
//! require" (PEP 643 `PKG-INFO`, else the prepare hook in the target runtime). Without a
//! hook, sdists are never candidates (there is nothing to build them with).
//! Must not build, download or run anything itself.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use pep440_rs::Version;
use pep508_rs::PackageName;

use crate::index::core_metadata::CoreMetadata;
use crate::index::page::DistFile;
use crate::pak::BinarySelector;
pub use crate::pak::FormatOption;
use crate::target::Target;

/// pip's format control: which projects may use wheels, which may use sdists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FormatControl {
    no_binary_all: bool,
    only_binary_all: bool,
    no_binary: BTreeSet<PackageName>,
    only_binary: BTreeSet<PackageName>,
}

/// What a project may be installed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowed {
    pub binary: bool,
    pub source: bool,
}

impl FormatControl {
    /// Applies one `--no-binary` value, as pip does.
    pub fn no_binary(&mut self, selector: &BinarySelector) {
        match selector {
            BinarySelector::All => {
                self.no_binary_all = true;
                self.no_binary.clear();
                self.only_binary_all = false;
                self.only_binary.clear();
            }
            BinarySelector::None => {
                self.no_binary_all = false;
                self.no_binary.clear();
            }
            BinarySelector::Packages(names) => {
                for name in names {
                    self.only_binary.remove(name);
                    self.no_binary.insert(name.clone());
                }
            }
        }
    }

    /// Applies one `--only-binary` value, as pip does.
    pub fn only_binary(&mut self, selector: &BinarySelector) {
        match selector {
            BinarySelector::All => {
                self.only_binary_all = true;
                self.only_binary.clear();
                self.no_binary_all = false;
                self.no_binary.clear();
            }
            BinarySelector::None => {
                self.only_binary_all = false;
                self.only_binary.clear();
            }
            BinarySelector::Packages(names) => {
                for name in names {
                    self.no_binary.remove(name);
                    self.only_binary.insert(name.clone());
                }
            }
        }
    }

    /// Applies `options` in order.
    pub fn apply(&mut self, options: &[FormatOption]) {
        for option in options {
            match option {
                FormatOption::NoBinary(selector) => self.no_binary(selector),
                FormatOption::OnlyBinary(selector) => self.only_binary(selector),
            }
        }
    }

    /// What `name` may be installed from (pip's `get_allowed_formats`: a name beats `:all:`).
    pub fn allowed(&self, name: &PackageName) -> Allowed {
        let both = Allowed {
            binary: true,
            source: true,
        };
        if self.only_binary.contains(name) {
            Allowed {
                source: false,
                ..both
            }
        } else if self.no_binary.contains(name) {
            Allowed {
                binary: false,
                ..both
            }
        } else if self.only_binary_all {
            Allowed {
                source: false,
                ..both
            }
        } else if self.no_binary_all {
            Allowed {
                binary: false,
                ..both
            }
        } else {
            both
        }
    }
}

/// Why an sdist's metadata could not be had: the message, and its help apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdistMetadataError {
    pub message: String,
    pub help: Option<String>,
    /// A build hook failed (see `SourceError::is_build_failure`), not the way to it.
    pub build_failed: bool,
}

impl fmt::Display for SdistMetadataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SdistMetadataError {}

/// The pipeline's answer to "what does this index sdist require": called on a blocking
/// thread, once per (project, version) and target; the answer's name and version must be
/// the file's.
pub trait SdistMetadata: Send + Sync + fmt::Debug {
    fn metadata(
        &self,
        target: &Target,
        name: &PackageName,
        version: &Version,
        file: &DistFile,
    ) -> Result<CoreMetadata, SdistMetadataError>;
}

/// Index sdists as candidates: the hook that reads their metadata.
#[derive(Debug, Clone)]
pub struct SdistCandidates {
    pub hook: Arc<dyn SdistMetadata>,
}

/// Whether `filename` is a source archive comfypak can unpack (`.tar.gz`, `.tgz`, `.tar`,
/// `.zip`).
pub fn is_sdist_name(filename: &str) -> bool {
    let lower = filename.to_ascii_lowercase();
    [".tar.gz", ".tgz", ".tar", ".zip"]
        .iter()
        .any(|ext| lower.ends_with(ext))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn names(list: &[&str]) -> BinarySelector {
        BinarySelector::Packages(
            list.iter()
                .map(|n| PackageName::from_str(n).unwrap())
                .collect(),
        )
    }

    #[test]
    fn pip_format_control_rules() {
        let dlib = PackageName::from_str("dlib").unwrap();
        let numpy = PackageName::from_str("numpy").unwrap();
        let mut f = FormatControl::default();
        assert_eq!(
            f.allowed(&dlib),
            Allowed {
                binary: true,
                source: true
            }
        );
        f.no_binary(&names(&["dlib"]));
        assert!(!f.allowed(&dlib).binary && f.allowed(&dlib).source);
        assert!(f.allowed(&numpy).binary);
        // `:all:` then a name: the name wins over `:all:`.
        f.only_binary(&BinarySelector::All);
        assert!(!f.allowed(&dlib).source && f.allowed(&dlib).binary);
        f.no_binary(&names(&["dlib"]));
        assert!(!f.allowed(&dlib).binary);
        assert!(!f.allowed(&numpy).source);
        // `:none:` clears its own side only.
        f.only_binary(&BinarySelector::None);
        assert!(f.allowed(&numpy).source);
        assert!(!f.allowed(&dlib).binary);
        f.no_binary(&BinarySelector::None);
        assert!(f.allowed(&dlib).binary);
        // A named only-binary beats no-binary :all:.
        f.no_binary(&BinarySelector::All);
        f.only_binary(&names(&["numpy"]));
        assert!(!f.allowed(&numpy).source && f.allowed(&numpy).binary);
        assert!(!f.allowed(&dlib).binary);
        assert!(is_sdist_name("dlib-20.0.0.tar.gz") && !is_sdist_name("x-1-py3-none-any.whl"));
    }
}

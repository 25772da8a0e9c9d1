//! The lockfile: PEP 751 `pylock.toml` with comfypak's layer data under `[tool.comfypak]`.
//!
//! Owns the lock's data types, reading, deterministic writing (same lock → same bytes),
//! atomic replacement of the file, and queries later stages need (a layer's packages, the
//! wheel of a package for a target). The lock is the contract between stages: `fetch`,
//! `install`, `pack` and `diff` read it and never resolve. Its values are typed (python,
//! platforms, venv, torch backend, names, versions; see `text.rs`): a value that does not parse
//! fails the read, naming the lock, line and key. This module must not talk to an index or
//! decide versions.

use std::collections::BTreeMap;

use pep440_rs::Version;
use pep508_rs::PackageName;
use serde::{Deserialize, Serialize};

use crate::cuda::{Backend, DriverVersion, GpuArch};
use crate::digest::{DigestError, Sha256Hex};
use crate::filename::SafeFileName;
use crate::target::{Platform, PythonVersion};

mod io;
mod summary;
mod text;

pub use text::{LockText, VenvPath, VenvPathError};

pub use io::LockError;
pub use summary::{
    applies_to, lock_targets, LayerSummary, LockSummary, PackageSummary, PreparedTarget,
    SummaryError,
};

/// The `index-name` of a package that a pak file names by URL (`name @ URL`).
pub const DIRECT_INDEX: &str = "direct";

/// The PEP 751 version this writer produces and the reader accepts (major 1).
pub const LOCK_VERSION: &str = "1.0";

/// A whole lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Lock {
    pub lock_version: String,
    /// The environments this lock is valid for, as PEP 508 markers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environments: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_python: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extras: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependency_groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub default_groups: Vec<String>,
    pub created_by: String,
    /// Sorted by name, then version, then marker.
    #[serde(default)]
    pub packages: Vec<LockedPackage>,
    /// Required: [`Lock::from_toml_str`] refuses a lock without `[tool.comfypak]`.
    pub tool: LockTool,
}

/// `[tool]` of the lock: comfypak's own table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockTool {
    /// Required: [`Lock::from_toml_str`] refuses a lock without it.
    pub comfypak: ComfypakLock,
}

/// `[tool.comfypak]`: what the lock was made for and how its packages fall into layers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ComfypakLock {
    /// The stack's name.
    pub stack: String,
    pub target: LockedTarget,
    /// The torch backend the torch family was resolved for (`cu130`, `cpu`, ...): chosen
    /// once, by `resolve`; later stages take it from here.
    #[serde(with = "text::one")]
    pub torch_backend: Backend,
    /// Most stable first.
    #[serde(default)]
    pub layers: Vec<LockedLayer>,
    /// Index name → URL used, for the record (URLs of packages are on each package).
    #[serde(default)]
    pub indexes: BTreeMap<String, String>,
    /// Registry bases and the digests their references resolved to, so the same lock builds
    /// on the same base (`--locked` / `--frozen` pull by this digest).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bases: Vec<LockedBase>,
}

/// `[[tool.comfypak.bases]]`: one registry base as written and the digest it resolved to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LockedBase {
    /// The reference as the stack or `--base` gives it (`docker://HOST/REPO:TAG`).
    pub reference: String,
    /// `sha256:HEX` of the manifest or index it resolved to.
    pub digest: String,
}

/// The target interpreter and platforms the lock covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LockedTarget {
    /// `3.14`.
    #[serde(with = "text::one")]
    pub python: PythonVersion,
    #[serde(default)]
    pub free_threaded: bool,
    /// Platform tags, e.g. `manylinux_2_39_x86_64`.
    #[serde(with = "text::many")]
    pub platforms: Vec<Platform>,
    /// The environment's path inside the image.
    pub venv: VenvPath,
    /// The GPU architectures the image must run on (`target.gpus`, `sm_90`), when declared:
    /// `doctor --lock` checks the host's GPUs against them.
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "text::many")]
    pub gpus: Vec<GpuArch>,
    /// The oldest NVIDIA driver the image must run with (`target.min-driver`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "text::optional"
    )]
    pub min_driver: Option<DriverVersion>,
}

/// One layer: its pak files and a hash of everything that decides its content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LockedLayer {
    pub name: String,
    /// 1 = most stable.
    pub rank: usize,
    /// Pak files, relative to the stack folder.
    pub paks: Vec<String>,
    /// `sha256:HEX` over the layer's requirement lines (as parsed), in order.
    pub inputs_hash: String,
}

/// One `[[packages]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LockedPackage {
    /// Normalized name.
    #[serde(with = "text::one")]
    pub name: PackageName,
    #[serde(with = "text::one")]
    pub version: Version,
    /// When the entry applies to some environments only (e.g. one platform).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marker: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_python: Option<String>,
    /// The index URL the package came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<LockedDependency>,
    /// A direct URL requirement's file (`name @ https://.../x.whl`) is still a wheel and is
    /// listed under `wheels`; `archive` is only for non-wheel archives, which comfypak refuses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wheels: Vec<LockedWheel>,
    /// PEP 751 `[packages.sdist]`: the source archive a package is built from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdist: Option<LockedSdist>,
    /// PEP 751 `[packages.directory]`: the local folder a package is built from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<LockedDirectory>,
    /// PEP 751 `[packages.vcs]`: the repository and commit a package is built from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcs: Option<LockedVcs>,
    #[serde(default)]
    pub tool: PackageTool,
}

/// `[packages.sdist]`: a source archive, by URL or local path, with its hashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LockedSdist {
    /// The archive's file name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    pub hashes: WheelHashes,
}

/// `[packages.vcs]`: a version-control checkout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LockedVcs {
    /// `git`.
    #[serde(rename = "type")]
    pub kind: String,
    pub url: String,
    /// The branch, tag or commit the requirement names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_revision: Option<String>,
    /// The commit it resolved to.
    pub commit_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subdirectory: Option<String>,
}

/// `[packages.directory]`: a local source folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LockedDirectory {
    pub path: String,
}

/// A dependency reference inside a package entry (PEP 751 allows any subset of keys that
/// identifies the package; comfypak writes name and, when ambiguous, version).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LockedDependency {
    #[serde(with = "text::one")]
    pub name: PackageName,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "text::optional"
    )]
    pub version: Option<Version>,
}

impl LockedDependency {
    /// The order the lock lists dependencies in: by the written text (not PEP 440 order),
    /// so the bytes stay what they always were.
    fn text_key(&self) -> (&str, Option<String>) {
        (
            self.name.as_ref(),
            self.version.as_ref().map(ToString::to_string),
        )
    }
}

impl PartialOrd for LockedDependency {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for LockedDependency {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.text_key().cmp(&other.text_key())
    }
}

/// One wheel file of a package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LockedWheel {
    /// The filename, checked to be a wheel name safe as one path component.
    pub name: SafeFileName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A local path instead of a URL (PEP 751 `path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_time: Option<toml::value::Datetime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Algorithm → lowercase hex; comfypak always writes `sha256`.
    pub hashes: WheelHashes,
}

impl LockedWheel {
    pub fn sha256(&self) -> Option<&Sha256Hex> {
        self.hashes.sha256.as_ref()
    }
}

/// A wheel's `hashes` table: `sha256` checked (64 lowercase hex digits) when the lock is
/// read; other algorithms kept as written, for the record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    try_from = "BTreeMap<String, String>",
    into = "BTreeMap<String, String>"
)]
pub struct WheelHashes {
    pub sha256: Option<Sha256Hex>,
    pub other: BTreeMap<String, String>,
}

impl WheelHashes {
    /// Only a sha256.
    pub fn sha256(sha256: Sha256Hex) -> Self {
        WheelHashes {
            sha256: Some(sha256),
            other: BTreeMap::new(),
        }
    }
}

impl TryFrom<BTreeMap<String, String>> for WheelHashes {
    type Error = DigestError;
    fn try_from(mut map: BTreeMap<String, String>) -> Result<Self, DigestError> {
        let sha256 = map
            .remove("sha256")
            .map(|v| Sha256Hex::parse(&v))
            .transpose()?;
        Ok(WheelHashes { sha256, other: map })
    }
}

impl From<WheelHashes> for BTreeMap<String, String> {
    fn from(hashes: WheelHashes) -> Self {
        let mut map = hashes.other;
        if let Some(sha) = hashes.sha256 {
            map.insert("sha256".to_string(), sha.into());
        }
        map
    }
}

/// `[packages.tool.comfypak]`: comfypak's data about one package.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageTool {
    #[serde(default)]
    pub comfypak: PackageComfypak,
}

/// Which layer a package is installed in, where it came from, and why this build.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PackageComfypak {
    /// The layer it is installed in (the most stable layer that needs it).
    pub layer: String,
    /// The index's name (`pypi`, `pytorch-cu130`, ...), or `direct` for a URL requirement.
    pub index_name: String,
    /// Named directly by a pak file (gets a `REQUESTED` file when installed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub requested: bool,
    /// Pak file lines that name it directly (`pak4.txt:12`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_by: Vec<String>,
    /// For ABI-coupled builds: why this build was chosen (torch, CUDA, C++ ABI it matches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_reason: Option<String>,
    /// Platforms (from the target) this entry serves, when not all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "text::many")]
    pub platforms: Vec<Platform>,
    /// For a package built from source (`sdist` or `directory`): the wheels comfypak built,
    /// one per distinct build (name, size, sha256; no location: they live in the cache of
    /// the machine that built them, and `install` reuses exactly these bytes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub built: Vec<LockedWheel>,
    /// For a folder source: the content hash of the folder that was built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_hash: Option<String>,
    /// RECORD rows of this package's wheels that the stack accepts as wrong
    /// (`[[install.record-mismatch]]`): `install` takes those files as they are, says so, and
    /// writes their true hash and size into the installed RECORD.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub record_mismatch: Vec<AcceptedRecordMismatch>,
}

/// `[[packages.tool.comfypak.record-mismatch]]`: one file of one wheel whose RECORD row is
/// known to be wrong, with the reason the stack gave.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AcceptedRecordMismatch {
    /// The wheel's file name.
    pub wheel: String,
    /// The member path inside the wheel.
    pub file: String,
    pub reason: String,
}

impl Lock {
    /// The packages installed in `layer`, in lock order.
    pub fn layer_packages<'a>(
        &'a self,
        layer: &'a str,
    ) -> impl Iterator<Item = &'a LockedPackage> + 'a {
        self.packages
            .iter()
            .filter(move |p| p.tool.comfypak.layer == layer)
    }

    /// The layer names, most stable first.
    pub fn layer_names(&self) -> Vec<&str> {
        self.tool
            .comfypak
            .layers
            .iter()
            .map(|l| l.name.as_str())
            .collect()
    }
}

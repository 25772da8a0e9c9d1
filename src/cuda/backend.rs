//! Torch backends (`cu130`, `cu128`, `cu126`, `cpu`, and `auto`) and the facts that decide
//! whether one can run on a host: the CUDA version it ships, the NVIDIA Linux driver it
//! needs, and the GPU compute capabilities its CUDA toolkit builds for.
//!
//! Owns: [`Backend`], [`BackendChoice`], [`CudaVersion`], [`DriverVersion`],
//! [`DriverRequirement`], [`ComputeCapability`], [`Verdict`], and the pure verdict functions
//! [`Backend::driver_verdict`], [`Backend::cuda_api_verdict`] and [`Backend::gpu_verdict`].
//!
//! Must not: read the host (that is `cuda::doctor`), talk to an index, or resolve.
//!
//! # Where the numbers come from
//!
//! NVIDIA's CUDA Toolkit release notes (tables "CUDA Toolkit and Corresponding Driver
//! Versions" and "Minimum Required Driver Version for CUDA Minor Version Compatibility"):
//!
//! | backend | CUDA | full-compatibility driver (toolkit GA) | minor-version-compatibility floor |
//! | --- | --- | --- | --- |
//! | `cu130` | 13.0 | >= 580.65.06 | >= 580 (CUDA 13.x) |
//! | `cu128` | 12.8 | >= 570.26 | >= 525.60.13 (CUDA 12.x) |
//! | `cu126` | 12.6 | >= 560.28.03 | >= 525.60.13 (CUDA 12.x) |
//!
//! Between the floor and the full version an application built with the newer minor runs
//! through *minor version compatibility*: it works, but features that need the newer
//! driver fail (e.g. JIT-compiling PTX newer than the driver understands), so the verdict
//! is [`Verdict::Caveat`]. Below the floor the backend does not run.
//!
//! GPU architectures: CUDA 13.0 removed Maxwell, Pascal and Volta (compute capability
//! below 7.5); CUDA 12.x builds for 5.0 and newer. A GPU newer than the newest capability
//! a toolkit knows (12.6 knows up to 9.0; 12.8 adds Blackwell 10.0 / 10.1 / 12.0; 13.0
//! knows up to 12.1) can only run kernels JIT-compiled from PTX, so that is a caveat too.
//! Torch's own wheels may ship kernels for fewer architectures than their toolkit supports
//! (`torch.cuda.get_arch_list()` tells); comfypak judges by the toolkit.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// A torch backend: which PyTorch index the torch family comes from and which CUDA it ships.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Backend {
    /// CUDA 13.0 (the stack's default).
    Cu130,
    /// CUDA 12.8.
    Cu128,
    /// CUDA 12.6.
    Cu126,
    /// No CUDA.
    Cpu,
}

/// Why a backend name could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown torch backend {value:?}: write one of cu130, cu128, cu126, cpu{auto}")]
pub struct BackendParseError {
    /// What was written.
    pub value: String,
    /// `", auto"` where `auto` is accepted, else empty.
    auto: &'static str,
}

impl Backend {
    /// Every backend, newest first (the order `auto` tries them in).
    pub const ALL: [Backend; 4] = [Backend::Cu130, Backend::Cu128, Backend::Cu126, Backend::Cpu];

    /// The backend's name and local version label: `cu130`, ..., `cpu`.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Cu130 => "cu130",
            Backend::Cu128 => "cu128",
            Backend::Cu126 => "cu126",
            Backend::Cpu => "cpu",
        }
    }

    /// The local version label torch carries for this backend (`2.11.0+cu130`).
    pub fn local_label(&self) -> &'static str {
        self.name()
    }

    /// The name of the index definition in `indexes/` (`pytorch-cu130`).
    pub fn index_name(&self) -> &'static str {
        match self {
            Backend::Cu130 => "pytorch-cu130",
            Backend::Cu128 => "pytorch-cu128",
            Backend::Cu126 => "pytorch-cu126",
            Backend::Cpu => "pytorch-cpu",
        }
    }

    /// The CUDA version the backend's wheels ship; None for `cpu`.
    pub fn cuda(&self) -> Option<CudaVersion> {
        match self {
            Backend::Cu130 => Some(CudaVersion::new(13, 0)),
            Backend::Cu128 => Some(CudaVersion::new(12, 8)),
            Backend::Cu126 => Some(CudaVersion::new(12, 6)),
            Backend::Cpu => None,
        }
    }

    /// The torch family this backend routes to its index (see [`super::family`]).
    pub fn family(&self) -> &'static [super::family::FamilyMember] {
        super::family::TORCH_FAMILY
    }

    /// The Linux driver the backend needs; None for `cpu`.
    pub fn driver_requirement(&self) -> Option<DriverRequirement> {
        let (minor_compat_floor, full) = match self {
            Backend::Cu130 => ("580", "580.65.06"),
            Backend::Cu128 => ("525.60.13", "570.26"),
            Backend::Cu126 => ("525.60.13", "560.28.03"),
            Backend::Cpu => return None,
        };
        Some(DriverRequirement {
            minor_compat_floor: DriverVersion::parse(minor_compat_floor).ok()?,
            full: DriverVersion::parse(full).ok()?,
        })
    }

    /// The lowest GPU compute capability the backend's CUDA toolkit builds for; None for
    /// `cpu`.
    pub fn min_compute_capability(&self) -> Option<ComputeCapability> {
        match self {
            Backend::Cu130 => Some(ComputeCapability::new(7, 5)),
            Backend::Cu128 | Backend::Cu126 => Some(ComputeCapability::new(5, 0)),
            Backend::Cpu => None,
        }
    }

    /// The newest GPU compute capability the backend's CUDA toolkit knows; newer GPUs run
    /// only PTX JIT-compiled by the driver. None for `cpu`.
    pub fn max_known_compute_capability(&self) -> Option<ComputeCapability> {
        match self {
            Backend::Cu130 => Some(ComputeCapability::new(12, 1)),
            Backend::Cu128 => Some(ComputeCapability::new(12, 0)),
            Backend::Cu126 => Some(ComputeCapability::new(9, 0)),
            Backend::Cpu => None,
        }
    }

    /// Whether a driver of this version runs the backend. `cpu` always runs.
    pub fn driver_verdict(&self, driver: Option<&DriverVersion>) -> (Verdict, String) {
        let (Some(requirement), Some(cuda)) = (self.driver_requirement(), self.cuda()) else {
            return (Verdict::Ok, "needs no NVIDIA driver".to_string());
        };
        let Some(driver) = driver else {
            return (
                Verdict::No,
                format!(
                    "no NVIDIA driver found; CUDA {cuda} needs driver >= {}",
                    requirement.full
                ),
            );
        };
        if driver >= &requirement.full {
            (
                Verdict::Ok,
                format!("driver {driver} >= {} (CUDA {cuda})", requirement.full),
            )
        } else if driver >= &requirement.minor_compat_floor {
            (
                Verdict::Caveat,
                format!(
                    "driver {driver} runs CUDA {cuda} only through minor version compatibility \
                     (>= {} for CUDA {}.x); features needing a newer driver, such as \
                     JIT-compiling newer PTX, fail; upgrade to >= {} for full support",
                    requirement.minor_compat_floor, cuda.major, requirement.full
                ),
            )
        } else {
            (
                Verdict::No,
                format!(
                    "driver {driver} is too old for CUDA {cuda}: CUDA {}.x needs >= {} \
                     (>= {} for full support); upgrade the driver or pick an older backend",
                    cuda.major, requirement.minor_compat_floor, requirement.full
                ),
            )
        }
    }

    /// Like [`Backend::driver_verdict`] when only the CUDA version the driver supports is
    /// known (libcuda's `cuDriverGetVersion`, e.g. 13000 = 13.0), not its version number.
    pub fn cuda_api_verdict(&self, driver_cuda: CudaVersion) -> (Verdict, String) {
        let Some(cuda) = self.cuda() else {
            return (Verdict::Ok, "needs no NVIDIA driver".to_string());
        };
        let driver_minor = driver_cuda.minor.unwrap_or(0);
        let wanted_minor = cuda.minor.unwrap_or(0);
        match driver_cuda.major.cmp(&cuda.major) {
            Ordering::Greater => (
                Verdict::Ok,
                format!("the driver supports CUDA {driver_cuda}, newer than {cuda}"),
            ),
            Ordering::Equal if driver_minor >= wanted_minor => (
                Verdict::Ok,
                format!("the driver supports CUDA {driver_cuda} (backend needs {cuda})"),
            ),
            Ordering::Equal => (
                Verdict::Caveat,
                format!(
                    "the driver supports CUDA {driver_cuda}; CUDA {cuda} runs only through \
                     minor version compatibility; upgrade the driver for full support"
                ),
            ),
            Ordering::Less => (
                Verdict::No,
                format!(
                    "the driver supports CUDA {driver_cuda} only; CUDA {cuda} needs a driver \
                     for CUDA {}.x",
                    cuda.major
                ),
            ),
        }
    }

    /// Whether the backend's CUDA builds for a GPU of this compute capability.
    pub fn gpu_verdict(&self, capability: Option<ComputeCapability>) -> (Verdict, String) {
        let (Some(min), Some(max), Some(cuda)) = (
            self.min_compute_capability(),
            self.max_known_compute_capability(),
            self.cuda(),
        ) else {
            return (Verdict::Ok, "runs on the CPU".to_string());
        };
        let Some(capability) = capability else {
            return (
                Verdict::Caveat,
                "compute capability unknown: the GPU architecture was not checked".to_string(),
            );
        };
        if capability < min {
            let dropped = if cuda.major >= 13 {
                format!(
                    "CUDA {} dropped GPUs below compute capability {min} (Maxwell, Pascal, \
                     Volta)",
                    cuda.major
                )
            } else {
                format!("CUDA {cuda} builds for compute capability {min} and newer")
            };
            (
                Verdict::No,
                format!("compute capability {capability}: {dropped}"),
            )
        } else if capability > max {
            (
                Verdict::Caveat,
                format!(
                    "compute capability {capability} is newer than CUDA {cuda} knows (up to \
                     {max}); kernels run only if PTX is shipped and JIT-compiled; prefer a \
                     newer backend"
                ),
            )
        } else {
            (
                Verdict::Ok,
                format!("compute capability {capability} is within {min}..{max}"),
            )
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = BackendParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Backend::ALL
            .into_iter()
            .find(|b| b.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| BackendParseError {
                value: s.to_string(),
                auto: "",
            })
    }
}

impl Serialize for Backend {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// A backend setting as written in a stack or on the command line: a backend, or `auto`
/// (the newest backend the host runs, from `doctor`'s reading).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendChoice {
    /// Decide from the host.
    Auto,
    /// This backend.
    Fixed(Backend),
}

impl FromStr for BackendChoice {
    type Err = BackendParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().eq_ignore_ascii_case("auto") {
            return Ok(BackendChoice::Auto);
        }
        Backend::from_str(s)
            .map(BackendChoice::Fixed)
            .map_err(|_| BackendParseError {
                value: s.to_string(),
                auto: ", auto",
            })
    }
}

impl fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendChoice::Auto => f.write_str("auto"),
            BackendChoice::Fixed(b) => b.fmt(f),
        }
    }
}

/// A CUDA version: major, and minor where known (`cu12` labels give only the major).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CudaVersion {
    /// e.g. 13.
    pub major: u32,
    /// e.g. 0; None when only the major is known.
    pub minor: Option<u32>,
}

impl CudaVersion {
    /// `major.minor`.
    pub fn new(major: u32, minor: u32) -> Self {
        Self {
            major,
            minor: Some(minor),
        }
    }

    /// Only the major is known.
    pub fn major_only(major: u32) -> Self {
        Self { major, minor: None }
    }

    /// From libcuda's `cuDriverGetVersion` value (1000 * major + 10 * minor: 13000 = 13.0).
    pub fn from_driver_api(value: i32) -> Option<Self> {
        let value = u32::try_from(value).ok().filter(|v| *v > 0)?;
        Some(Self::new(value / 1000, (value % 1000) / 10))
    }
}

impl fmt::Display for CudaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.minor {
            Some(minor) => write!(f, "{}.{minor}", self.major),
            None => write!(f, "{}", self.major),
        }
    }
}

/// Why a CUDA version could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid CUDA version {value:?}: write MAJOR or MAJOR.MINOR, e.g. 13.0, 12.8 or 12")]
pub struct CudaVersionError {
    /// What was written.
    pub value: String,
}

impl FromStr for CudaVersion {
    type Err = CudaVersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || CudaVersionError {
            value: s.to_string(),
        };
        let number = |t: &str| -> Result<u32, CudaVersionError> {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err());
            }
            t.parse().map_err(|_| err())
        };
        let text = s.trim();
        match text.split_once('.') {
            Some((major, minor)) => Ok(CudaVersion::new(number(major)?, number(minor)?)),
            None => Ok(CudaVersion::major_only(number(text)?)),
        }
    }
}

impl Serialize for CudaVersion {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// An NVIDIA driver version such as `580.159.04`: compared number by number, displayed as
/// written.
#[derive(Debug, Clone, Eq)]
pub struct DriverVersion {
    raw: String,
    parts: Vec<u32>,
}

/// Why a driver version could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid NVIDIA driver version {value:?}: expected numbers joined by '.', e.g. 580.159.04")]
pub struct DriverVersionError {
    /// What was read.
    pub value: String,
}

impl DriverVersion {
    /// Parses `580`, `570.26`, `580.159.04`.
    pub fn parse(text: &str) -> Result<Self, DriverVersionError> {
        let raw = text.trim();
        let err = || DriverVersionError {
            value: text.to_string(),
        };
        let mut parts = Vec::new();
        for part in raw.split('.') {
            if part.is_empty() || part.len() > 9 || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err());
            }
            parts.push(part.parse::<u32>().map_err(|_| err())?);
        }
        if parts.len() > 4 {
            return Err(err());
        }
        Ok(Self {
            raw: raw.to_string(),
            parts,
        })
    }

    /// The major branch, e.g. 580.
    pub fn major(&self) -> u32 {
        self.parts.first().copied().unwrap_or(0)
    }

    /// As written.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The newest CUDA version a driver of this version supports fully, from NVIDIA's
    /// toolkit/driver table (None for drivers older than CUDA 11.8's).
    pub fn max_cuda(&self) -> Option<CudaVersion> {
        const TABLE: &[(&str, u32, u32)] = &[
            ("580.65.06", 13, 0),
            ("575.51.03", 12, 9),
            ("570.26", 12, 8),
            ("565.57.01", 12, 7),
            ("560.28.03", 12, 6),
            ("555.42.02", 12, 5),
            ("550.54.14", 12, 4),
            ("545.23.06", 12, 3),
            ("535.54.03", 12, 2),
            ("530.30.02", 12, 1),
            ("525.60.13", 12, 0),
            ("520.61.05", 11, 8),
        ];
        TABLE.iter().find_map(|(driver, major, minor)| {
            let floor = DriverVersion::parse(driver).ok()?;
            (self >= &floor).then(|| CudaVersion::new(*major, *minor))
        })
    }
}

impl PartialEq for DriverVersion {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl PartialOrd for DriverVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for DriverVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        let len = self.parts.len().max(other.parts.len());
        (0..len)
            .map(|i| {
                let a = self.parts.get(i).copied().unwrap_or(0);
                let b = other.parts.get(i).copied().unwrap_or(0);
                a.cmp(&b)
            })
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    }
}

impl fmt::Display for DriverVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl FromStr for DriverVersion {
    type Err = DriverVersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for DriverVersion {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.raw)
    }
}

/// The Linux driver a CUDA backend needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DriverRequirement {
    /// The lowest driver that runs it at all, through CUDA minor version compatibility.
    pub minor_compat_floor: DriverVersion,
    /// The driver of the toolkit's GA release: everything works.
    pub full: DriverVersion,
}

/// A GPU's CUDA compute capability, e.g. 9.0 for H100, 6.1 for GTX 1080.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ComputeCapability {
    /// e.g. 9.
    pub major: u32,
    /// e.g. 0.
    pub minor: u32,
}

impl ComputeCapability {
    /// `major.minor`.
    pub fn new(major: u32, minor: u32) -> Self {
        Self { major, minor }
    }

    /// The architecture's marketing name, where known.
    pub fn architecture(&self) -> &'static str {
        match (self.major, self.minor) {
            (5, _) => "Maxwell",
            (6, _) => "Pascal",
            (7, 0) | (7, 2) => "Volta",
            (7, 5) => "Turing",
            (8, 9) => "Ada Lovelace",
            (8, _) => "Ampere",
            (9, _) => "Hopper",
            (10, _) | (11, _) | (12, _) => "Blackwell",
            _ => "unknown architecture",
        }
    }
}

/// Why a compute capability could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid compute capability {value:?}: expected MAJOR.MINOR, e.g. 9.0")]
pub struct ComputeCapabilityError {
    /// What was read.
    pub value: String,
}

impl FromStr for ComputeCapability {
    type Err = ComputeCapabilityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ComputeCapabilityError {
            value: s.to_string(),
        };
        let (major, minor) = s.trim().split_once('.').ok_or_else(err)?;
        let number = |t: &str| -> Result<u32, ComputeCapabilityError> {
            if t.is_empty() || t.len() > 3 || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err());
            }
            t.parse().map_err(|_| err())
        };
        Ok(Self::new(number(major)?, number(minor)?))
    }
}

impl fmt::Display for ComputeCapability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl Serialize for ComputeCapability {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Whether something runs: yes, yes with a caveat, or no. Ordered best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Runs.
    Ok,
    /// Runs, with a limitation the reason names.
    Caveat,
    /// Does not run.
    No,
}

impl Verdict {
    /// Runs at all (ok or caveat).
    pub fn runs(&self) -> bool {
        !matches!(self, Verdict::No)
    }

    /// `ok`, `caveat`, `no`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Caveat => "caveat",
            Verdict::No => "no",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn driver_versions_compare_numerically() {
        let v = |s| DriverVersion::parse(s).unwrap();
        assert!(v("580.159.04") > v("580.65.06"));
        assert!(v("580") < v("580.65.06"));
        assert!(v("570.26") == v("570.26.0"));
        assert!(v("535.129.03") < v("560.28.03"));
        assert_eq!(v("580.159.04").to_string(), "580.159.04");
        assert!(DriverVersion::parse("580.x").is_err());
        assert!(DriverVersion::parse("").is_err());
    }

    #[test]
    fn driver_cuda_table() {
        let v = |s| DriverVersion::parse(s).unwrap();
        assert_eq!(v("580.159.04").max_cuda(), Some(CudaVersion::new(13, 0)));
        assert_eq!(v("535.129.03").max_cuda(), Some(CudaVersion::new(12, 2)));
        assert_eq!(v("470.82").max_cuda(), None);
    }

    #[test]
    fn backend_names_round_trip() {
        for b in Backend::ALL {
            assert_eq!(b.name().parse::<Backend>().unwrap(), b);
            assert!(b.index_name().ends_with(b.name()));
        }
        assert_eq!(
            "auto".parse::<BackendChoice>().unwrap(),
            BackendChoice::Auto
        );
        assert!("auto".parse::<Backend>().is_err());
        let err = "cu999".parse::<BackendChoice>().unwrap_err().to_string();
        assert!(err.contains("cu999") && err.contains("auto"), "{err}");
    }
}

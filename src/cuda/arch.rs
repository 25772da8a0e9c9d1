//! GPU architectures: what a stack's `target.gpus` names, which architectures each backend's
//! torch builds carry kernels for, and which a performance wheel claims.
//!
//! Owns: [`GpuArch`] (`sm_90`, also read from family names such as `hopper`), [`parse_gpus`],
//! the one table of each backend's architectures ([`torch_archs`], with the source of each
//! row), the coverage rule ([`ArchList::covers`]) and the architecture claims a wheel states
//! ([`wheel_arch_claim`]: a build tag such as `hopper`, an `sm90` label part, or a project
//! that is built for one architecture family only).
//!
//! Must not: read the host (that is `cuda::doctor`), talk to an index, or resolve.
//!
//! # The coverage rule
//!
//! A cubin built for `sm_XY` runs on GPUs of the same major with a minor of at least `Y`
//! (`sm_80` runs on sm_86, sm_87 and sm_89; not on sm_90); PTX built for `compute_XY` is
//! JIT-compiled by the driver for any newer GPU (CUDA programming guide, "Binary
//! Compatibility" and "PTX Compatibility"). A GPU that neither reaches fails with "no kernel
//! image is available for execution on the device".

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

use super::backend::{Backend, ComputeCapability};
use crate::filename::WheelFilename;

/// A GPU architecture as the CUDA toolchain names it: `sm_90` (compute capability 9.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GpuArch(pub ComputeCapability);

impl GpuArch {
    /// `sm_XY`.
    pub const fn new(major: u32, minor: u32) -> Self {
        GpuArch(ComputeCapability { major, minor })
    }

    /// The compute capability.
    pub fn capability(&self) -> ComputeCapability {
        self.0
    }
}

impl fmt::Display for GpuArch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sm_{}{}", self.0.major, self.0.minor)
    }
}

impl Serialize for GpuArch {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Why a GPU architecture could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown GPU architecture {value:?}: write sm_XY (e.g. sm_80, sm_90, sm_120), a compute \
     capability (9.0), or a family: maxwell, pascal, volta, turing, ampere, ada, hopper, \
     blackwell"
)]
pub struct GpuArchError {
    /// What was written.
    pub value: String,
}

/// Architecture families and the architectures they stand for (NVIDIA's compute capability
/// table; `blackwell` is the data-centre sm_100 and the consumer sm_120).
const FAMILIES: &[(&str, &[GpuArch])] = &[
    ("maxwell", &[GpuArch::new(5, 0), GpuArch::new(5, 2)]),
    ("pascal", &[GpuArch::new(6, 0), GpuArch::new(6, 1)]),
    ("volta", &[GpuArch::new(7, 0)]),
    ("turing", &[GpuArch::new(7, 5)]),
    ("ampere", &[GpuArch::new(8, 0), GpuArch::new(8, 6)]),
    ("ada", &[GpuArch::new(8, 9)]),
    ("ada-lovelace", &[GpuArch::new(8, 9)]),
    ("hopper", &[GpuArch::new(9, 0)]),
    ("blackwell", &[GpuArch::new(10, 0), GpuArch::new(12, 0)]),
];

/// The architectures of a family name, if it is one.
pub fn family_archs(name: &str) -> Option<&'static [GpuArch]> {
    let name = name.trim().to_ascii_lowercase().replace('_', "-");
    FAMILIES
        .iter()
        .find(|(family, _)| *family == name)
        .map(|(_, archs)| *archs)
}

/// `sm_90`, `sm90`, `sm_90a`, `compute_90`, `9.0`: one architecture.
fn parse_one(text: &str) -> Option<GpuArch> {
    let t = text.trim().to_ascii_lowercase();
    if let Ok(cc) = ComputeCapability::from_str(&t) {
        return Some(GpuArch(cc));
    }
    let digits = t
        .strip_prefix("sm_")
        .or_else(|| t.strip_prefix("sm"))
        .or_else(|| t.strip_prefix("compute_"))?;
    // `sm_90a` / `sm_100f`: architecture-specific variants of the same architecture.
    let digits = digits.trim_end_matches(['a', 'f']);
    if !(2..=4).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (major, minor) = digits.split_at(digits.len() - 1);
    Some(GpuArch::new(major.parse().ok()?, minor.parse().ok()?))
}

impl FromStr for GpuArch {
    type Err = GpuArchError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_one(s).ok_or_else(|| GpuArchError {
            value: s.to_string(),
        })
    }
}

/// Reads a `target.gpus` list: architectures and family names, sorted, each once.
pub fn parse_gpus<S: AsRef<str>>(items: &[S]) -> Result<Vec<GpuArch>, GpuArchError> {
    let mut out = Vec::new();
    for item in items {
        let item = item.as_ref();
        match family_archs(item) {
            Some(archs) => out.extend_from_slice(archs),
            None => out.push(GpuArch::from_str(item)?),
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The architectures a build carries kernels for, and where that fact comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchList {
    /// Architectures with cubins.
    pub cubins: Vec<GpuArch>,
    /// The PTX it ships, if any (JIT-compiled for newer GPUs).
    pub ptx: Option<GpuArch>,
    /// Where the list comes from.
    pub source: &'static str,
}

/// How a GPU is reached by a build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coverage {
    /// A cubin runs on it.
    Cubin(GpuArch),
    /// Only PTX, JIT-compiled by the driver (works; slow first start).
    Ptx(GpuArch),
    /// Nothing: "no kernel image is available".
    No,
}

impl ArchList {
    /// How `gpu` is reached (see the module docs).
    pub fn covers(&self, gpu: GpuArch) -> Coverage {
        let g = gpu.capability();
        if let Some(cubin) = self
            .cubins
            .iter()
            .filter(|a| a.0.major == g.major && a.0.minor <= g.minor)
            .max()
        {
            return Coverage::Cubin(*cubin);
        }
        match self.ptx {
            Some(ptx) if ptx.0 <= g => Coverage::Ptx(ptx),
            _ => Coverage::No,
        }
    }

    /// `sm_75 … sm_120 (+PTX sm_120)`.
    pub fn describe(&self) -> String {
        let list: Vec<String> = self.cubins.iter().map(ToString::to_string).collect();
        let mut text = list.join(", ");
        if let Some(ptx) = self.ptx {
            text.push_str(&format!(" (+PTX {ptx})"));
        }
        text
    }
}

const SM50: GpuArch = GpuArch::new(5, 0);
const SM60: GpuArch = GpuArch::new(6, 0);
const SM70: GpuArch = GpuArch::new(7, 0);
const SM75: GpuArch = GpuArch::new(7, 5);
const SM80: GpuArch = GpuArch::new(8, 0);
const SM86: GpuArch = GpuArch::new(8, 6);
const SM90: GpuArch = GpuArch::new(9, 0);
const SM100: GpuArch = GpuArch::new(10, 0);
const SM110: GpuArch = GpuArch::new(11, 0);
const SM120: GpuArch = GpuArch::new(12, 0);

/// The one table of the architectures each backend's torch builds carry, per CPU
/// architecture (`x86_64`, `aarch64`); None for `cpu`. Torch's wheels do not state it in
/// their metadata (`torch.cuda.get_arch_list()` tells at run time), so it is kept here with
/// its sources:
///
/// | backend | x86_64 | aarch64 | source |
/// | --- | --- | --- | --- |
/// | cu126 | sm_50 … sm_90 | as x86_64 | PyTorch 2.7/2.8 release notes; "no kernel image" reports on RTX 50xx with cu126 |
/// | cu128 | sm_75 … sm_120 (+PTX) | sm_80, sm_90, sm_100, sm_120 (+PTX) | PyTorch 2.7 release notes (Blackwell); comfy-env 0.4.46 cuda_wheels (aarch64) |
/// | cu130 | sm_75 … sm_120 (+PTX; sm_121 runs the sm_120 cubins) | adds sm_110 | CUDA 13.0 release notes (Maxwell, Pascal, Volta dropped); PyTorch 2.9 notes; comfy-env 0.4.46 |
pub fn torch_archs(backend: Backend, cpu_arch: &str) -> Option<ArchList> {
    const CU126: &[GpuArch] = &[SM50, SM60, SM70, SM75, SM80, SM86, SM90];
    const CU128_X86: &[GpuArch] = &[SM75, SM80, SM86, SM90, SM100, SM120];
    const CU128_ARM: &[GpuArch] = &[SM80, SM90, SM100, SM120];
    const CU130_X86: &[GpuArch] = &[SM75, SM80, SM86, SM90, SM100, SM120];
    const CU130_ARM: &[GpuArch] = &[SM80, SM90, SM100, SM110, SM120];
    let arm = cpu_arch == "aarch64";
    match backend {
        Backend::Cpu => None,
        Backend::Cu126 => Some(ArchList {
            cubins: CU126.to_vec(),
            ptx: None,
            source: "PyTorch 2.7/2.8 release notes (cu126 builds: sm_50 to sm_90, no Blackwell)",
        }),
        Backend::Cu128 => Some(ArchList {
            cubins: if arm { CU128_ARM } else { CU128_X86 }.to_vec(),
            ptx: Some(SM120),
            source: if arm {
                "comfy-env 0.4.46 cuda_wheels: Linux aarch64 cu128 list 8.0;9.0+PTX;10.0;12.0+PTX"
            } else {
                "PyTorch 2.7 release notes (cu128 adds Blackwell sm_100, sm_120)"
            },
        }),
        Backend::Cu130 => Some(ArchList {
            cubins: if arm { CU130_ARM } else { CU130_X86 }.to_vec(),
            ptx: Some(SM120),
            source: if arm {
                "comfy-env 0.4.46 cuda_wheels: CUDA 13.0's aarch64 list adds 11.0 (Thor)"
            } else {
                "CUDA 13.0 release notes (starts at Turing sm_75); PyTorch 2.9 release notes"
            },
        }),
    }
}

/// Projects built for one architecture family only, whatever their file names say.
const PROJECT_ARCHS: &[(&str, &[GpuArch], &str)] = &[
    (
        "flash-attn-3",
        &[SM90],
        "FlashAttention-3 is built for Hopper (H100/H800) only (its README)",
    ),
    (
        "sageattn3",
        &[SM100, SM120],
        "SageAttention3 (FP4) is built for Blackwell only (its README)",
    ),
];

/// The architectures a wheel claims to run on, and why, when it states any: a build tag
/// naming a family (`sageattention-2.2.0-hopper-…` → sm_90), `smXY` parts of its local
/// label (`+cu128sm90`), or a project built for one family only. None: it claims nothing
/// (then only the backend's list applies).
pub fn wheel_arch_claim(wheel: &WheelFilename) -> Option<(ArchList, String)> {
    if let Some((_, archs, why)) = PROJECT_ARCHS
        .iter()
        .find(|(name, _, _)| *name == wheel.name.as_ref())
    {
        return Some((
            ArchList {
                cubins: archs.to_vec(),
                ptx: None,
                source: why,
            },
            (*why).to_string(),
        ));
    }
    if let Some(build) = &wheel.build {
        if let Some(archs) = family_archs(&build.suffix) {
            return Some((
                ArchList {
                    cubins: archs.to_vec(),
                    ptx: None,
                    source: "the build tag",
                },
                format!("its build tag `{}` names {}", build.suffix, list(archs)),
            ));
        }
    }
    let local = wheel.version.local();
    let mut archs: Vec<GpuArch> = Vec::new();
    for part in local.iter().map(ToString::to_string) {
        for piece in part.split(|c: char| !c.is_ascii_alphanumeric()) {
            if piece.starts_with("sm") {
                if let Some(arch) = parse_one(piece) {
                    archs.push(arch);
                }
            }
        }
    }
    if archs.is_empty() {
        return None;
    }
    archs.sort();
    archs.dedup();
    let text = format!("its local label names {}", list(&archs));
    Some((
        ArchList {
            cubins: archs,
            ptx: None,
            source: "the local label",
        },
        text,
    ))
}

/// `sm_80, sm_90`.
pub fn list(archs: &[GpuArch]) -> String {
    archs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `sm_61 (Pascal)`.
pub fn named(arch: GpuArch) -> String {
    format!("{arch} ({})", arch.capability().architecture())
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn spellings_and_families() {
        let a = |s: &str| GpuArch::from_str(s).unwrap();
        assert_eq!(a("sm_90"), GpuArch::new(9, 0));
        assert_eq!(a("sm120"), GpuArch::new(12, 0));
        assert_eq!(a("sm_90a"), GpuArch::new(9, 0));
        assert_eq!(a("8.9"), GpuArch::new(8, 9));
        assert_eq!(a("compute_75").to_string(), "sm_75");
        assert!(GpuArch::from_str("h100").is_err());
        let gpus = parse_gpus(&["hopper", "sm_80", "sm_90"]).unwrap();
        assert_eq!(list(&gpus), "sm_80, sm_90");
    }

    #[test]
    fn coverage_rule() {
        let cu126 = torch_archs(Backend::Cu126, "x86_64").unwrap();
        assert_eq!(cu126.covers(GpuArch::new(6, 1)), Coverage::Cubin(SM60));
        assert_eq!(cu126.covers(GpuArch::new(8, 9)), Coverage::Cubin(SM86));
        assert_eq!(cu126.covers(GpuArch::new(12, 0)), Coverage::No);
        let cu130 = torch_archs(Backend::Cu130, "x86_64").unwrap();
        assert_eq!(cu130.covers(GpuArch::new(6, 1)), Coverage::No);
        assert_eq!(cu130.covers(GpuArch::new(12, 1)), Coverage::Cubin(SM120));
        assert!(torch_archs(Backend::Cpu, "x86_64").is_none());
    }
}

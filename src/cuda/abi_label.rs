//! ABI-coupled local version labels and the check that a build fits the resolved torch.
//!
//! Performance wheels (flash-attn, sageattention, nunchaku, ...) are compiled against one
//! torch minor, one CUDA major (sometimes minor) and one C++ ABI, and say so in the PEP 440
//! local label, in several real spellings:
//!
//! | label | CUDA | torch | C++11 ABI | other |
//! | --- | --- | --- | --- | --- |
//! | `cu12torch2.8cxx11abiTRUE` | 12 | 2.8 | yes | |
//! | `cu130torch2.11` | 13.0 | 2.11 | | |
//! | `cu13.0torch2.11` | 13.0 | 2.11 | | |
//! | `cu130torch2.11gite2743ab` | 13.0 | 2.11 | | git `e2743ab` |
//! | `cu130.basic` | 13.0 | | | `basic` |
//! | `cu126` | 12.6 | | | |
//! | `cpu` | none (CPU build) | | | |
//! | `torch2.8.0` | | 2.8.0 | | |
//!
//! Owns: [`AbiLabel`] (parse any of those), [`Coupling`] (what a build is tied to, from its
//! label or declared by the stack's `[couplings]` table for unlabelled wheels), [`check`]
//! and [`Mismatch`], and the torch C++ ABI rule [`torch_uses_cxx11_abi`].
//!
//! Must not: pick among files (that is `cuda::select`), read indexes, or resolve.
//!
//! # The torch C++ ABI rule
//!
//! A C++ extension must be built with the same `_GLIBCXX_USE_CXX11_ABI` as the torch it
//! loads into, or the import fails with an undefined symbol. The ABI belongs to the torch
//! *build*, not to its version: PyTorch built with the C++11 ABI exactly the wheels it moved
//! to manylinux_2_28 (torch 2.6's CUDA 12.6 x86_64 builds and all its aarch64 builds, then
//! every Linux build from 2.7 on), and with the pre-C++11 ABI the manylinux1 / manylinux2014
//! x86_64 ones. [`torch_build_cxx11_abi`] reads it from the resolved torch wheel's platform
//! tags; [`torch_uses_cxx11_abi`] (by version: 2.7 and newer) is only the fallback for a
//! wheel whose tags do not tell (`linux_x86_64`).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use pep440_rs::Version;
use pep508_rs::PackageName;
use serde::{Serialize, Serializer};

use super::backend::{Backend, CudaVersion};

/// A torch release series named in a label: `2.11`, or `2.8.0` when the patch is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TorchSeries {
    /// e.g. 2.
    pub major: u64,
    /// e.g. 11.
    pub minor: u64,
    /// e.g. Some(0) for `torch2.8.0`.
    pub patch: Option<u64>,
}

impl TorchSeries {
    /// Whether a resolved torch version belongs to this series (local label ignored).
    pub fn matches(&self, torch: &Version) -> bool {
        let release = torch.release();
        let at = |i: usize| release.get(i).copied().unwrap_or(0);
        at(0) == self.major && at(1) == self.minor && self.patch.is_none_or(|patch| at(2) == patch)
    }

    /// The series of a resolved torch version (`2.11.0+cu130` → 2.11).
    pub fn of(torch: &Version) -> TorchSeries {
        let release = torch.release();
        TorchSeries {
            major: release.first().copied().unwrap_or(0),
            minor: release.get(1).copied().unwrap_or(0),
            patch: None,
        }
    }
}

impl fmt::Display for TorchSeries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)?;
        if let Some(patch) = self.patch {
            write!(f, ".{patch}")?;
        }
        Ok(())
    }
}

impl Serialize for TorchSeries {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Why a declared torch series could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid torch version {value:?}: write MAJOR.MINOR or MAJOR.MINOR.PATCH, e.g. 2.11")]
pub struct TorchSeriesError {
    /// What was written.
    pub value: String,
}

impl FromStr for TorchSeries {
    type Err = TorchSeriesError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || TorchSeriesError {
            value: s.to_string(),
        };
        let mut numbers = Vec::new();
        for part in s.trim().split('.') {
            if part.is_empty() || part.len() > 6 || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err());
            }
            numbers.push(part.parse::<u64>().map_err(|_| err())?);
        }
        match numbers.as_slice() {
            [major, minor] => Ok(TorchSeries {
                major: *major,
                minor: *minor,
                patch: None,
            }),
            [major, minor, patch] => Ok(TorchSeries {
                major: *major,
                minor: *minor,
                patch: Some(*patch),
            }),
            _ => Err(err()),
        }
    }
}

/// The parts of a local version label, e.g. `cu12torch2.8cxx11abiTRUE`.
///
/// Parsing never fails: text that is not a known part is kept in [`AbiLabel::extra`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct AbiLabel {
    /// The label as given (PEP 440 normalizes it to lowercase; case is ignored).
    pub raw: String,
    /// `cuXY` / `cuX.Y` / `cuX`.
    pub cuda: Option<CudaVersion>,
    /// The label is (or contains) `cpu`.
    pub cpu: bool,
    /// `torchX.Y[.Z]` (also `ptX.Y` and `ptXYY`).
    pub torch: Option<TorchSeries>,
    /// `cxx11abiTRUE` / `cxx11abiFALSE`.
    pub cxx11abi: Option<bool>,
    /// `git<hex>`: the source commit.
    pub git: Option<String>,
    /// Everything else, e.g. `basic` in `cu130.basic`, `post1`.
    pub extra: Vec<String>,
}

impl AbiLabel {
    /// Parses a local label (the part after `+`, with or without the `+`).
    pub fn parse(local: &str) -> AbiLabel {
        let raw = local.trim().trim_start_matches('+').to_string();
        let text = raw.to_ascii_lowercase();
        let mut label = AbiLabel {
            raw,
            cuda: None,
            cpu: false,
            torch: None,
            cxx11abi: None,
            git: None,
            extra: Vec::new(),
        };
        let bytes = text.as_bytes();
        let mut i = 0;
        // Unknown text accumulates here until the next separator or known part.
        let mut unknown = String::new();
        let flush = |unknown: &mut String, extra: &mut Vec<String>| {
            if !unknown.is_empty() {
                extra.push(std::mem::take(unknown));
            }
        };
        while i < bytes.len() {
            let rest = &text[i..];
            if matches!(bytes[i], b'.' | b'-' | b'_') {
                flush(&mut unknown, &mut label.extra);
                i += 1;
                continue;
            }
            // Known parts are recognised only at the start of a part, not inside unknown text.
            if unknown.is_empty() {
                if let Some((cuda, used)) = parse_cuda(rest) {
                    if label.cuda.is_none() {
                        label.cuda = Some(cuda);
                        i += used;
                        continue;
                    }
                }
                if let Some((torch, used)) = parse_torch(rest) {
                    if label.torch.is_none() {
                        label.torch = Some(torch);
                        i += used;
                        continue;
                    }
                }
                if let Some(after) = rest.strip_prefix("cxx11abi") {
                    let value = if after.starts_with("true") {
                        Some(true)
                    } else if after.starts_with("false") {
                        Some(false)
                    } else {
                        None
                    };
                    if let Some(value) = value {
                        label.cxx11abi = Some(value);
                        i += "cxx11abi".len() + if value { 4 } else { 5 };
                        continue;
                    }
                }
                if let Some(after) = rest.strip_prefix("git") {
                    let hex = after.bytes().take_while(u8::is_ascii_hexdigit).count();
                    let ends_part = after
                        .as_bytes()
                        .get(hex)
                        .is_none_or(|b| matches!(b, b'.' | b'-' | b'_'));
                    if hex >= 4 && ends_part {
                        label.git = Some(after[..hex].to_string());
                        i += 3 + hex;
                        continue;
                    }
                }
                if rest.starts_with("cpu")
                    && rest
                        .as_bytes()
                        .get(3)
                        .is_none_or(|b| matches!(b, b'.' | b'-' | b'_'))
                {
                    label.cpu = true;
                    i += 3;
                    continue;
                }
            }
            let ch = rest.chars().next().unwrap_or('.');
            unknown.push(ch);
            i += ch.len_utf8();
        }
        flush(&mut unknown, &mut label.extra);
        label
    }

    /// The label of a version, None when it has no local part.
    pub fn from_version(version: &Version) -> Option<AbiLabel> {
        let local = version.local();
        if local.is_empty() {
            return None;
        }
        let text = local
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(".");
        Some(AbiLabel::parse(&text))
    }

    /// What the label ties the build to.
    pub fn coupling(&self) -> Coupling {
        Coupling {
            cuda: self.cuda,
            torch: self.torch,
            cxx11abi: self.cxx11abi,
            cpu: self.cpu && self.cuda.is_none(),
        }
    }

    /// The label with its C++ ABI part in the published spelling (`cxx11abiTRUE`): PEP 440
    /// lowercases labels, the files say `TRUE`/`FALSE`.
    pub fn display_spelling(&self) -> String {
        self.raw
            .replace("cxx11abitrue", "cxx11abiTRUE")
            .replace("cxx11abifalse", "cxx11abiFALSE")
    }
}

impl fmt::Display for AbiLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display_spelling())
    }
}

/// `cu12`, `cu130` (13.0), `cu126` (12.6), `cu13.0`, `cu12.8`; returns bytes used.
fn parse_cuda(text: &str) -> Option<(CudaVersion, usize)> {
    let after = text.strip_prefix("cu")?;
    let digits = after.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 4 {
        return None;
    }
    let d = &after[..digits];
    let number = |s: &str| s.parse::<u32>().ok();
    let mut used = 2 + digits;
    let version = match digits {
        3 => CudaVersion::new(number(&d[..2])?, number(&d[2..])?),
        4 => CudaVersion::new(number(&d[..2])?, number(&d[2..])?),
        _ => {
            let major = number(d)?;
            // `cu13.0torch2.11`: a dot and digits right after a short major are its minor.
            let tail = &after[digits..];
            let minor_digits = tail
                .strip_prefix('.')
                .map(|t| t.bytes().take_while(u8::is_ascii_digit).count())
                .unwrap_or(0);
            if (1..=2).contains(&minor_digits) {
                used += 1 + minor_digits;
                CudaVersion::new(major, number(&tail[1..=minor_digits])?)
            } else {
                CudaVersion::major_only(major)
            }
        }
    };
    Some((version, used))
}

/// `torch2.11`, `torch2.8.0`, `pt2.11`, `pt211` (2.11); returns bytes used.
fn parse_torch(text: &str) -> Option<(TorchSeries, usize)> {
    let (prefix, after) = if let Some(after) = text.strip_prefix("torch") {
        ("torch", after)
    } else if let Some(after) = text.strip_prefix("pt") {
        ("pt", after)
    } else {
        return None;
    };
    let mut numbers: Vec<&str> = Vec::new();
    let mut pos = 0;
    loop {
        let digits = after[pos..].bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 6 {
            break;
        }
        numbers.push(&after[pos..pos + digits]);
        pos += digits;
        let next_is_number = after[pos..]
            .strip_prefix('.')
            .and_then(|t| t.bytes().next())
            .is_some_and(|b| b.is_ascii_digit());
        if numbers.len() < 3 && next_is_number {
            pos += 1;
        } else {
            break;
        }
    }
    let parse = |s: &str| s.parse::<u64>().ok();
    let series = match numbers.as_slice() {
        // `pt211`: one digit of major, the rest minor.
        [joined] if joined.len() >= 2 => TorchSeries {
            major: parse(&joined[..1])?,
            minor: parse(&joined[1..])?,
            patch: None,
        },
        [major, minor] => TorchSeries {
            major: parse(major)?,
            minor: parse(minor)?,
            patch: None,
        },
        [major, minor, patch] => TorchSeries {
            major: parse(major)?,
            minor: parse(minor)?,
            patch: Some(parse(patch)?),
        },
        _ => return None,
    };
    Some((series, prefix.len() + pos))
}

/// What a build is tied to: a CUDA version, a torch series, a C++ ABI. Each part is None
/// when not known (then it is not checked).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Coupling {
    /// The CUDA it was built with (major, and minor where given).
    pub cuda: Option<CudaVersion>,
    /// The torch series it was built against.
    pub torch: Option<TorchSeries>,
    /// Whether it was built with the C++11 ABI.
    pub cxx11abi: Option<bool>,
    /// A CPU build (`+pt211cpu`, `+torch2.11.cpu`): it fits only the `cpu` backend.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cpu: bool,
}

/// Why a declared coupling could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CouplingError {
    /// A `[couplings]` entry that is not a table.
    #[error(
        "[couplings] {package}: expected a table like {{ cuda = \"13.0\", torch = \"2.11\" }}, \
         found {found}"
    )]
    NotATable {
        /// The key.
        package: String,
        /// The TOML type found.
        found: String,
    },
    /// A key that is not `cuda`, `torch`, `cxx11abi` or `release`.
    #[error(
        "[couplings] {package}: unknown key {key:?}; the keys are cuda (\"13.0\" or \"12\"), \
         torch (\"2.11\"), cxx11abi (true/false) and release (a release name such as \
         \"sageattn-py313-cu130-pt211\")"
    )]
    UnknownKey {
        /// The package.
        package: String,
        /// The key.
        key: String,
    },
    /// A value of the wrong type or form.
    #[error("[couplings] {package}: {key}: {reason}")]
    InvalidValue {
        /// The package.
        package: String,
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The package name is not a valid name.
    #[error("[couplings] {package:?}: not a valid package name: {reason}")]
    InvalidName {
        /// The key as written.
        package: String,
        /// Why.
        reason: String,
    },
    /// An entry that says nothing.
    #[error(
        "[couplings] {package}: the entry declares no coupling; give at least one of cuda, \
         torch, cxx11abi or release"
    )]
    Empty {
        /// The package.
        package: String,
    },
}

impl Coupling {
    /// True when no part is known: the build is not checked at all.
    pub fn is_empty(&self) -> bool {
        self.cuda.is_none() && self.torch.is_none() && self.cxx11abi.is_none() && !self.cpu
    }

    /// How many parts are known, counting a CUDA minor and a torch patch as extra parts;
    /// used to prefer the most specific of several matching builds.
    pub fn specificity(&self) -> usize {
        let cuda = self
            .cuda
            .map_or(0, |c| if c.minor.is_some() { 2 } else { 1 });
        let torch = self
            .torch
            .map_or(0, |t| if t.patch.is_some() { 2 } else { 1 });
        cuda + torch + usize::from(self.cxx11abi.is_some())
    }

    /// A coupling the stack declares for a wheel without a label, e.g. `sageattn3` known
    /// from its release (`sageattn-py313-cu130-pt211`) to be CUDA 13.0 / torch 2.11.
    /// `package` only names the entry in errors.
    pub fn from_declared(
        package: &str,
        cuda: Option<&str>,
        torch: Option<&str>,
        cxx11abi: Option<bool>,
    ) -> Result<Coupling, CouplingError> {
        let invalid = |key: &str, reason: String| CouplingError::InvalidValue {
            package: package.to_string(),
            key: key.to_string(),
            reason,
        };
        let cuda = cuda
            .map(|text| {
                let text = text.trim().trim_start_matches("cu");
                if !text.contains('.') && text.len() == 3 {
                    // "130" as in the label spelling.
                    parse_cuda(&format!("cu{text}"))
                        .map(|(v, _)| v)
                        .ok_or_else(|| invalid("cuda", format!("{text:?} is not a CUDA version")))
                } else {
                    CudaVersion::from_str(text).map_err(|e| invalid("cuda", e.to_string()))
                }
            })
            .transpose()?;
        let torch = torch
            .map(|t| TorchSeries::from_str(t).map_err(|e| invalid("torch", e.to_string())))
            .transpose()?;
        let coupling = Coupling {
            cuda,
            torch,
            cxx11abi,
            cpu: false,
        };
        if coupling.is_empty() {
            return Err(CouplingError::Empty {
                package: package.to_string(),
            });
        }
        Ok(coupling)
    }

    /// The coupling a release name states, e.g. `sageattn-py313-cu130-pt211` → CUDA 13.0,
    /// torch 2.11 (dash-separated parts; `cuXYZ`, `ptXYY`/`torchX.Y`, `cxx11abiTRUE`).
    pub fn from_release_name(release: &str) -> Coupling {
        let mut coupling = Coupling::default();
        for part in release.split(['-', '_', '+']) {
            let label = AbiLabel::parse(part);
            coupling.cuda = coupling.cuda.or(label.cuda);
            coupling.torch = coupling.torch.or(label.torch);
            coupling.cxx11abi = coupling.cxx11abi.or(label.cxx11abi);
        }
        coupling
    }

    /// Reads one `[couplings]` value: `{ cuda = "13.0", torch = "2.11" }`, optionally with
    /// `cxx11abi = true` or `release = "sageattn-py313-cu130-pt211"` (explicit keys win over
    /// what the release name says).
    pub fn from_toml(package: &str, value: &toml::Value) -> Result<Coupling, CouplingError> {
        let Some(table) = value.as_table() else {
            return Err(CouplingError::NotATable {
                package: package.to_string(),
                found: value.type_str().to_string(),
            });
        };
        let string = |key: &str| -> Result<Option<String>, CouplingError> {
            match table.get(key) {
                None => Ok(None),
                Some(toml::Value::String(s)) => Ok(Some(s.clone())),
                // `torch = 2.11` written as a float loses "2.10" → 2.1: refuse it.
                Some(other) => Err(CouplingError::InvalidValue {
                    package: package.to_string(),
                    key: key.to_string(),
                    reason: format!(
                        "expected a quoted string (e.g. \"2.11\"; an unquoted 2.10 would read \
                         as 2.1), found {}",
                        other.type_str()
                    ),
                }),
            }
        };
        for key in table.keys() {
            if !matches!(key.as_str(), "cuda" | "torch" | "cxx11abi" | "release") {
                return Err(CouplingError::UnknownKey {
                    package: package.to_string(),
                    key: key.clone(),
                });
            }
        }
        let cxx11abi = match table.get("cxx11abi") {
            None => None,
            Some(toml::Value::Boolean(b)) => Some(*b),
            Some(other) => {
                return Err(CouplingError::InvalidValue {
                    package: package.to_string(),
                    key: "cxx11abi".to_string(),
                    reason: format!("expected true or false, found {}", other.type_str()),
                })
            }
        };
        let release = string("release")?
            .map(|r| Coupling::from_release_name(&r))
            .unwrap_or_default();
        let cuda = string("cuda")?;
        let torch = string("torch")?;
        let explicit = if cuda.is_some() || torch.is_some() || cxx11abi.is_some() {
            Coupling::from_declared(package, cuda.as_deref(), torch.as_deref(), cxx11abi)?
        } else {
            Coupling::default()
        };
        let merged = Coupling {
            cuda: explicit.cuda.or(release.cuda),
            torch: explicit.torch.or(release.torch),
            cxx11abi: explicit.cxx11abi.or(release.cxx11abi),
            cpu: false,
        };
        if merged.is_empty() {
            return Err(CouplingError::Empty {
                package: package.to_string(),
            });
        }
        Ok(merged)
    }
}

/// Reads a whole `[couplings]` table: package name → declared coupling.
pub fn parse_couplings(
    table: &toml::Table,
) -> Result<BTreeMap<PackageName, Coupling>, CouplingError> {
    let mut out = BTreeMap::new();
    for (key, value) in table {
        let name = PackageName::from_str(key).map_err(|e| CouplingError::InvalidName {
            package: key.clone(),
            reason: e.to_string(),
        })?;
        out.insert(name, Coupling::from_toml(key, value)?);
    }
    Ok(out)
}

impl fmt::Display for Coupling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(cuda) = self.cuda {
            parts.push(format!("CUDA {cuda}"));
        }
        if self.cpu {
            parts.push("CPU only".to_string());
        }
        if let Some(torch) = self.torch {
            parts.push(format!("torch {torch}"));
        }
        match self.cxx11abi {
            Some(true) => parts.push("C++11 ABI".to_string()),
            Some(false) => parts.push("pre-C++11 ABI".to_string()),
            None => {}
        }
        if parts.is_empty() {
            f.write_str("nothing in particular")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// The C++ ABI of one torch build, from its wheel's file name (see the module docs): the
/// C++11 ABI for aarch64 and for manylinux_2_28 or newer, the pre-C++11 ABI for older
/// manylinux x86_64 tags, else by version ([`torch_uses_cxx11_abi`]).
pub fn torch_build_cxx11_abi(torch: &Version, wheel_filename: &str) -> bool {
    let platforms: Vec<&str> = wheel_filename
        .strip_suffix(".whl")
        .and_then(|stem| stem.rsplit('-').next())
        .map(|p| p.split('.').collect())
        .unwrap_or_default();
    if platforms.iter().any(|p| p.ends_with("aarch64")) {
        return true;
    }
    let glibc_minor = |p: &str| -> Option<u32> {
        let rest = p.strip_prefix("manylinux_2_")?;
        rest.split('_').next()?.parse().ok()
    };
    if platforms
        .iter()
        .any(|p| glibc_minor(p).is_some_and(|minor| minor >= 28))
    {
        return true;
    }
    if platforms.iter().any(|p| {
        p.starts_with("manylinux1_")
            || p.starts_with("manylinux2010_")
            || p.starts_with("manylinux2014_")
            || glibc_minor(p).is_some()
    }) {
        return false;
    }
    torch_uses_cxx11_abi(torch)
}

/// Torch's C++ ABI by version: the C++11 ABI from torch 2.7 on; the fallback of
/// [`torch_build_cxx11_abi`] when a wheel's tags do not tell.
pub fn torch_uses_cxx11_abi(torch: &Version) -> bool {
    let release = torch.release();
    let major = release.first().copied().unwrap_or(0);
    let minor = release.get(1).copied().unwrap_or(0);
    (major, minor) >= (2, 7)
}

/// One part of a build that does not fit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "part", rename_all = "kebab-case")]
pub enum MismatchPart {
    /// Built for another torch series.
    Torch {
        /// What the build says.
        built: TorchSeries,
        /// The resolved torch.
        resolved: String,
    },
    /// Built for another CUDA major, or another minor where the label gives one.
    Cuda {
        /// What the build says.
        built: CudaVersion,
        /// The backend.
        backend: Backend,
        /// The backend's CUDA.
        backend_cuda: CudaVersion,
    },
    /// A CUDA build while the backend is `cpu`.
    CudaOnCpu {
        /// What the build says.
        built: CudaVersion,
    },
    /// A CPU build while the backend ships CUDA.
    CpuOnCuda {
        /// The backend.
        backend: Backend,
    },
    /// Built with the other C++ ABI.
    Cxx11Abi {
        /// What the build says.
        built: bool,
        /// What torch uses.
        torch: bool,
        /// The resolved torch.
        resolved: String,
    },
}

fn abi_name(cxx11: bool) -> &'static str {
    if cxx11 {
        "the C++11 ABI (cxx11abiTRUE)"
    } else {
        "the pre-C++11 ABI (cxx11abiFALSE)"
    }
}

impl fmt::Display for MismatchPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MismatchPart::Torch { built, resolved } => {
                write!(f, "built for torch {built}, resolved torch is {resolved}")
            }
            MismatchPart::Cuda {
                built,
                backend,
                backend_cuda,
            } => write!(
                f,
                "built for CUDA {built}, backend {backend} ships CUDA {backend_cuda}"
            ),
            MismatchPart::CudaOnCpu { built } => {
                write!(f, "built for CUDA {built}, backend cpu has no CUDA")
            }
            MismatchPart::CpuOnCuda { backend } => write!(
                f,
                "a CPU build (no CUDA kernels), backend {backend} is a CUDA backend"
            ),
            MismatchPart::Cxx11Abi {
                built,
                torch,
                resolved,
            } => write!(
                f,
                "built with {}, torch {resolved} uses {}",
                abi_name(*built),
                abi_name(*torch)
            ),
        }
    }
}

/// Why a build does not fit the resolved torch and backend: every failing part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{}", .parts.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct Mismatch {
    /// The failing parts, in the order torch, CUDA, C++ ABI.
    pub parts: Vec<MismatchPart>,
}

/// [`check`] of the CUDA part alone: whether a build with this coupling can run on
/// `backend`, whatever torch it meets (what is known before torch is resolved).
pub fn check_cuda(coupling: &Coupling, backend: Backend) -> Result<(), Mismatch> {
    let cuda_only = Coupling {
        cuda: coupling.cuda,
        cpu: coupling.cpu,
        ..Coupling::default()
    };
    check(&cuda_only, &Version::new([0u64]), backend, true)
}

/// Whether a build with this coupling fits `resolved_torch` on `backend`, where torch uses
/// the C++11 ABI or not (`torch_cxx11abi`, from the build: [`torch_build_cxx11_abi`]).
///
/// Rules: the torch series must match (major.minor, and the patch where the label gives
/// it); the CUDA major must equal the backend's, and the minor too where the label gives
/// one; a CUDA build never fits the `cpu` backend, and a CPU build never fits a CUDA one;
/// the C++ ABI must match where the label gives it (`torch_cxx11abi`: the resolved torch
/// build's, [`torch_build_cxx11_abi`]). Parts the coupling does not state are not checked.
pub fn check(
    coupling: &Coupling,
    resolved_torch: &Version,
    backend: Backend,
    torch_cxx11abi: bool,
) -> Result<(), Mismatch> {
    let mut parts = Vec::new();
    if let Some(built) = coupling.torch {
        if !built.matches(resolved_torch) {
            parts.push(MismatchPart::Torch {
                built,
                resolved: resolved_torch.to_string(),
            });
        }
    }
    if let Some(built) = coupling.cuda {
        match backend.cuda() {
            None => parts.push(MismatchPart::CudaOnCpu { built }),
            Some(backend_cuda) => {
                let major_differs = built.major != backend_cuda.major;
                let minor_differs = built.minor.is_some() && built.minor != backend_cuda.minor;
                if major_differs || minor_differs {
                    parts.push(MismatchPart::Cuda {
                        built,
                        backend,
                        backend_cuda,
                    });
                }
            }
        }
    }
    if coupling.cpu && backend.cuda().is_some() {
        parts.push(MismatchPart::CpuOnCuda { backend });
    }
    if let Some(built) = coupling.cxx11abi {
        if built != torch_cxx11abi {
            parts.push(MismatchPart::Cxx11Abi {
                built,
                torch: torch_cxx11abi,
                resolved: resolved_torch.to_string(),
            });
        }
    }
    if parts.is_empty() {
        Ok(())
    } else {
        Err(Mismatch { parts })
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn cuda_spellings() {
        assert_eq!(parse_cuda("cu12").unwrap().0, CudaVersion::major_only(12));
        assert_eq!(parse_cuda("cu130").unwrap().0, CudaVersion::new(13, 0));
        assert_eq!(
            parse_cuda("cu13.0torch").unwrap(),
            (CudaVersion::new(13, 0), 6)
        );
        assert_eq!(
            parse_cuda("cu12.basic").unwrap(),
            (CudaVersion::major_only(12), 4)
        );
        assert!(parse_cuda("cuda").is_none());
    }

    #[test]
    fn torch_spellings() {
        let t = |s: &str| parse_torch(s).unwrap().0.to_string();
        assert_eq!(t("torch2.8cxx11abitrue"), "2.8");
        assert_eq!(t("torch2.11gite2743ab"), "2.11");
        assert_eq!(t("torch2.8.0"), "2.8.0");
        assert_eq!(t("pt211"), "2.11");
        assert!(parse_torch("torch").is_none());
    }

    #[test]
    fn cxx11_abi_of_a_torch_build_comes_from_its_tags() {
        let v = |s: &str| Version::from_str(s).unwrap();
        let torch = v("2.6.0+cu126");
        assert!(torch_build_cxx11_abi(
            &torch,
            "torch-2.6.0+cu126-cp313-cp313-manylinux_2_28_x86_64.whl"
        ));
        assert!(!torch_build_cxx11_abi(
            &v("2.6.0+cu124"),
            "torch-2.6.0+cu124-cp313-cp313-manylinux1_x86_64.whl"
        ));
        assert!(torch_build_cxx11_abi(
            &v("2.5.1"),
            "torch-2.5.1-cp312-cp312-manylinux2014_aarch64.whl"
        ));
        assert!(!torch_build_cxx11_abi(
            &torch,
            "torch-2.6.0-cp313-cp313-linux_x86_64.whl"
        ));
    }

    #[test]
    fn cxx11_abi_rule() {
        let v = |s: &str| Version::from_str(s).unwrap();
        assert!(torch_uses_cxx11_abi(&v("2.11.0+cu130")));
        assert!(torch_uses_cxx11_abi(&v("2.7.0")));
        assert!(!torch_uses_cxx11_abi(&v("2.6.0+cu126")));
    }
}

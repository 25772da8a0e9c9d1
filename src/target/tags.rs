//! Wheel compatibility tags (PEP 425 triples) and the ordered list a target accepts.
//!
//! Owns: [`Tag`], [`CompatibleTags`], and the generation of the tag list exactly as
//! `packaging.tags.sys_tags()` (packaging 26.3) orders it for a CPython interpreter on Linux.
//! Must not: parse wheel filenames (that is `crate::filename`) or probe the build host.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Arch, Libc, Platform, PythonVersion, TargetError};

/// One wheel tag triple, e.g. `cp314-cp314-manylinux_2_39_x86_64`.
///
/// All three parts are stored lowercase, as `packaging.tags.Tag` stores them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag {
    /// Interpreter, e.g. `cp314`, `py3`.
    pub interpreter: String,
    /// ABI, e.g. `cp314`, `cp314t`, `abi3`, `none`.
    pub abi: String,
    /// Platform, e.g. `manylinux_2_28_x86_64`, `any`.
    pub platform: String,
}

impl Tag {
    /// A tag from its three parts, lowercased.
    pub fn new(interpreter: &str, abi: &str, platform: &str) -> Self {
        Self {
            interpreter: interpreter.to_ascii_lowercase(),
            abi: abi.to_ascii_lowercase(),
            platform: platform.to_ascii_lowercase(),
        }
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.interpreter, self.abi, self.platform)
    }
}

impl FromStr for Tag {
    type Err = TargetError;

    /// Parses one tag triple. A compressed tag set (`py2.py3-none-any`) is several tags:
    /// parse it as part of a wheel filename instead.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: &str| TargetError::InvalidTag {
            value: s.to_string(),
            reason: reason.to_string(),
        };
        let parts: Vec<&str> = s.split('-').collect();
        let [interpreter, abi, platform] = parts.as_slice() else {
            return Err(invalid(
                "a tag has exactly three dash-separated parts: interpreter-abi-platform, \
                 e.g. cp314-cp314-manylinux_2_39_x86_64",
            ));
        };
        for part in [interpreter, abi, platform] {
            if part.is_empty() {
                return Err(invalid("a tag part is empty"));
            }
            if part.contains('.') {
                return Err(invalid(
                    "this is a compressed tag set (parts joined with '.'), which stands for \
                     several tags; parse it through a wheel filename",
                ));
            }
            if !part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(invalid(
                    "tag parts may only contain ASCII letters, digits and '_'",
                ));
            }
        }
        if interpreter.as_bytes()[0].is_ascii_digit() {
            return Err(invalid(
                "the interpreter part must be an identifier (not start with a digit)",
            ));
        }
        Ok(Tag::new(interpreter, abi, platform))
    }
}

impl Serialize for Tag {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Tag {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The tags a target accepts, best first, with O(1) priority lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompatibleTags {
    ordered: Vec<Tag>,
    priority: HashMap<Tag, usize>,
    /// Each part that occurs in some tag, for [`CompatibleTags::may_fit`].
    interpreters: HashSet<String>,
    abis: HashSet<String>,
    platforms: HashSet<String>,
}

impl CompatibleTags {
    /// Builds the lookup from an ordered list; a repeated tag keeps its first (best) rank,
    /// as `packaging.tags.create_compatible_tags_selector` does.
    pub fn from_ordered(ordered: Vec<Tag>) -> Self {
        let mut priority = HashMap::with_capacity(ordered.len());
        let mut interpreters = HashSet::new();
        let mut abis = HashSet::new();
        let mut platforms = HashSet::new();
        for (rank, tag) in ordered.iter().enumerate() {
            priority.entry(tag.clone()).or_insert(rank);
            interpreters.insert(tag.interpreter.clone());
            abis.insert(tag.abi.clone());
            platforms.insert(tag.platform.clone());
        }
        Self {
            ordered,
            priority,
            interpreters,
            abis,
            platforms,
        }
    }

    /// A quick test on the three (possibly compressed, `py2.py3`) tag sets of a wheel
    /// filename: false when no tag they make can fit, because some set has no part any
    /// accepted tag has. True does not mean a tag fits (the parts may not combine); check
    /// with [`CompatibleTags::priority`]. Allocates only for parts with uppercase letters.
    pub fn may_fit(&self, interpreters: &str, abis: &str, platforms: &str) -> bool {
        fn any_in(set: &HashSet<String>, parts: &str) -> bool {
            parts.split('.').any(|part| {
                if part.bytes().any(|b| b.is_ascii_uppercase()) {
                    set.contains(&part.to_ascii_lowercase())
                } else {
                    set.contains(part)
                }
            })
        }
        any_in(&self.platforms, platforms)
            && any_in(&self.abis, abis)
            && any_in(&self.interpreters, interpreters)
    }

    /// The tags, best first.
    pub fn iter(&self) -> impl Iterator<Item = &Tag> {
        self.ordered.iter()
    }

    /// Number of tags (repeats included; `packaging` yields none for a CPython target).
    pub fn len(&self) -> usize {
        self.ordered.len()
    }

    /// True when the list is empty (never for a [`super::Target`]).
    pub fn is_empty(&self) -> bool {
        self.ordered.is_empty()
    }

    /// 0 = best. None = incompatible.
    pub fn priority(&self, tag: &Tag) -> Option<usize> {
        self.priority.get(tag).copied()
    }

    /// The tags as strings, best first (what the oracle vectors hold).
    pub fn to_strings(&self) -> Vec<String> {
        self.ordered.iter().map(Tag::to_string).collect()
    }
}

impl Serialize for CompatibleTags {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.ordered.iter())
    }
}

/// The legacy manylinux aliases `packaging._manylinux._LEGACY_MANYLINUX_MAP` interleaves.
fn legacy_manylinux(major: i32, minor: i32) -> Option<&'static str> {
    match (major, minor) {
        (2, 17) => Some("manylinux2014"),
        (2, 12) => Some("manylinux2010"),
        (2, 5) => Some("manylinux1"),
        _ => None,
    }
}

/// `packaging._manylinux._LAST_GLIBC_MINOR`: glibc has only ever had major version 2, and
/// packaging assumes minor 50 as the last of any earlier major.
const LAST_GLIBC_MINOR: i32 = 50;

/// The platform tags, best first: `packaging.tags._linux_platforms()` on a 64-bit CPython
/// running on a host with this libc and architecture.
pub(crate) fn linux_platforms(platform: &Platform) -> Vec<String> {
    let arch = platform.arch.to_string();
    let mut out = vec![format!("linux_{arch}")];
    match platform.libc {
        Libc::Manylinux { major, minor } => {
            // _manylinux.platform_tags(archs): oldest glibc is 2.17, or 2.5 on x86.
            let too_old = match platform.arch {
                Arch::X86_64 => (2, 4),
                Arch::Aarch64 => (2, 16),
            };
            let current = (i32::from(major), i32::from(minor));
            let mut glibc_max_list = vec![current];
            for glibc_major in (2..current.0).rev() {
                glibc_max_list.push((glibc_major, LAST_GLIBC_MINOR));
            }
            for (max_major, max_minor) in glibc_max_list {
                let min_minor = if max_major == too_old.0 {
                    too_old.1
                } else {
                    -1
                };
                let mut glibc_minor = max_minor;
                while glibc_minor > min_minor {
                    out.push(format!("manylinux_{max_major}_{glibc_minor}_{arch}"));
                    if let Some(legacy) = legacy_manylinux(max_major, glibc_minor) {
                        out.push(format!("{legacy}_{arch}"));
                    }
                    glibc_minor -= 1;
                }
            }
        }
        Libc::Musllinux { major, minor } => {
            // _musllinux.platform_tags(archs)
            for musl_minor in (0..=minor).rev() {
                out.push(format!("musllinux_{major}_{musl_minor}_{arch}"));
            }
        }
    }
    out
}

/// `packaging.tags.sys_tags()` for CPython `python` (GIL or free-threaded) with `platforms`:
/// `cpython_tags(python, abis=[abi], platforms)` then
/// `compatible_tags(python, interpreter="cpXY", platforms)`.
pub(crate) fn cpython_sys_tags(
    python: PythonVersion,
    free_threaded: bool,
    abi: &str,
    platforms: &[String],
) -> Vec<Tag> {
    let nodot = |major: u8, minor: u8| format!("{major}{minor}");
    let interpreter = format!("cp{}", nodot(python.major, python.minor));
    let mut tags = Vec::new();

    // cpython_tags
    for platform in platforms {
        tags.push(Tag::new(&interpreter, abi, platform));
    }
    let stable_abi_applies = (python.major, python.minor) >= (3, 2);
    let use_abi3 = stable_abi_applies && !free_threaded;
    let use_abi3t = stable_abi_applies && free_threaded;
    if use_abi3 {
        for platform in platforms {
            tags.push(Tag::new(&interpreter, "abi3", platform));
        }
    }
    if use_abi3t {
        for platform in platforms {
            tags.push(Tag::new(&interpreter, "abi3t", platform));
        }
    }
    for platform in platforms {
        tags.push(Tag::new(&interpreter, "none", platform));
    }
    if use_abi3 || use_abi3t {
        for minor in (2..python.minor).rev() {
            let older = format!("cp{}", nodot(python.major, minor));
            for platform in platforms {
                if use_abi3 {
                    tags.push(Tag::new(&older, "abi3", platform));
                }
                if use_abi3t {
                    tags.push(Tag::new(&older, "abi3t", platform));
                }
            }
        }
    }

    // compatible_tags: _py_interpreter_range is pyXY, pyX, then pyX(Y-1) .. pyX0.
    let mut py_range = vec![
        format!("py{}", nodot(python.major, python.minor)),
        format!("py{}", python.major),
    ];
    for minor in (0..python.minor).rev() {
        py_range.push(format!("py{}", nodot(python.major, minor)));
    }
    for py in &py_range {
        for platform in platforms {
            tags.push(Tag::new(py, "none", platform));
        }
    }
    tags.push(Tag::new(&interpreter, "none", "any"));
    for py in &py_range {
        tags.push(Tag::new(py, "none", "any"));
    }
    tags
}

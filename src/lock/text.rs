//! The lock's typed values as TOML strings: each is written with its `Display` and read with
//! its `FromStr`, and a value that does not parse fails the read with what was written and
//! what kind of value was expected (the reader adds the file, line and key).
//!
//! Owns: [`LockText`] (the serde adapters `one`, `many`, `optional` used by the lock's
//! fields) and [`VenvPath`]. Must not: decide what a lock means; it only converts values.

use std::fmt;
use std::str::FromStr;

use pep440_rs::Version;
use pep508_rs::PackageName;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::cuda::{Backend, DriverVersion, GpuArch};
use crate::target::{Platform, PythonVersion};

/// A value the lock stores as a string.
pub trait LockText: FromStr + fmt::Display {
    /// What the value is, for messages (`a Python version like 3.14`).
    const WHAT: &'static str;
}

impl LockText for PythonVersion {
    const WHAT: &'static str = "a Python version like 3.14";
}
impl LockText for Platform {
    const WHAT: &'static str = "a platform tag like manylinux_2_39_x86_64";
}
impl LockText for Backend {
    const WHAT: &'static str = "a torch backend (cu130, cu128, cu126, cpu)";
}
impl LockText for PackageName {
    const WHAT: &'static str = "a package name";
}
impl LockText for Version {
    const WHAT: &'static str = "a PEP 440 version";
}
impl LockText for GpuArch {
    const WHAT: &'static str = "a GPU architecture like sm_90";
}
impl LockText for DriverVersion {
    const WHAT: &'static str = "an NVIDIA driver version like 580.65.06";
}

fn parse<T: LockText, E: serde::de::Error>(text: &str) -> Result<T, E>
where
    T::Err: fmt::Display,
{
    // Most parse errors already quote the value and say what is expected; those are shown as
    // they are, the others after the value and the kind of value wanted.
    T::from_str(text).map_err(|e| {
        let cause = e.to_string();
        if !text.is_empty() && cause.contains(text) {
            E::custom(cause)
        } else {
            E::custom(format!("{text:?} is not {}: {cause}", T::WHAT))
        }
    })
}

/// One value.
pub mod one {
    use super::*;

    pub fn serialize<T: LockText, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(value)
    }

    pub fn deserialize<'de, T: LockText, D: Deserializer<'de>>(d: D) -> Result<T, D::Error>
    where
        T::Err: fmt::Display,
    {
        let text = String::deserialize(d)?;
        parse(&text)
    }
}

/// A list of values.
pub mod many {
    use super::*;

    pub fn serialize<T: LockText, S: Serializer>(values: &[T], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(values.iter().map(ToString::to_string))
    }

    pub fn deserialize<'de, T: LockText, D: Deserializer<'de>>(d: D) -> Result<Vec<T>, D::Error>
    where
        T::Err: fmt::Display,
    {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|text| parse(text))
            .collect()
    }
}

/// An optional value.
pub mod optional {
    use super::*;

    pub fn serialize<T: LockText, S: Serializer>(
        value: &Option<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(value) => s.collect_str(value),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, T: LockText, D: Deserializer<'de>>(d: D) -> Result<Option<T>, D::Error>
    where
        T::Err: fmt::Display,
    {
        Option::<String>::deserialize(d)?
            .map(|text| parse(&text))
            .transpose()
    }
}

/// The environment's path inside the image: absolute, without `..` components.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VenvPath(String);

/// Why a venv path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("venv path {value:?} must be absolute and have no `..` (e.g. /opt/venv)")]
pub struct VenvPathError {
    pub value: String,
}

impl VenvPath {
    /// The path as written (`/opt/comfyui/venv`).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for VenvPath {
    type Err = VenvPathError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = s.is_empty()
            || !s.starts_with('/')
            || s.contains('\0')
            || s.split('/').any(|part| part == "..");
        if bad {
            return Err(VenvPathError {
                value: s.to_string(),
            });
        }
        Ok(VenvPath(s.to_string()))
    }
}

impl fmt::Display for VenvPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for VenvPath {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl LockText for VenvPath {
    const WHAT: &'static str = "an absolute path";
}

impl Serialize for VenvPath {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for VenvPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        VenvPath::from_str(&text).map_err(D::Error::custom)
    }
}

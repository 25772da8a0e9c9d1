//! Finds the base's CPython inside its root and asks it what it is.
//!
//! Owns interpreter discovery (the image config's `PATH`, `python3.X` before `python3`), the
//! probe (version, ABI flags, SOABI, machine, glibc, `sysconfig` paths, bytecode magic and cache
//! tag, and a fingerprint of the bytecode its compiler makes, as the interpreter reports them) and the rule that refuses a base whose interpreter does
//! not fit the stack's target, naming both. It must not run anything but the probe.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde::Deserialize;

use super::unpack::resolve_in_root;
use super::RuntimeError;
use crate::target::{Arch, Libc, Platform, PythonVersion, Target};

/// The `PATH` used when the image config sets none (the OCI/Docker default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the probe prints, one JSON object. `bytecode` is the sha256 of the magic number and the
/// marshalled code of [`BYTECODE_PROBE`] as this interpreter compiles it: two interpreters that
/// agree on it share compiled files (see [`super::compile`]).
pub(crate) const PROBE: &str = r#"
import importlib.util, json, os, platform, sys, sysconfig
venv = sys.argv[1]
try:
    import hashlib, marshal
    bytecode = hashlib.sha256(importlib.util.MAGIC_NUMBER + marshal.dumps(compile(
        sys.stdin.read(), "/probe.py", "exec", dont_inherit=True, optimize=0))).hexdigest()
except Exception:
    bytecode = None
libc = os.confstr("CS_GNU_LIBC_VERSION") if hasattr(os, "confstr") else None
print(json.dumps({
    "version": ".".join(str(p) for p in sys.version_info[:3]),
    "release": sys.version_info.releaselevel,
    "implementation": sys.implementation.name,
    "abiflags": getattr(sys, "abiflags", ""),
    "soabi": sysconfig.get_config_var("SOABI"),
    "ext_suffix": sysconfig.get_config_var("EXT_SUFFIX"),
    "gil_disabled": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
    "machine": platform.machine(),
    "libc": libc,
    "executable": sys.executable,
    "cache_tag": sys.implementation.cache_tag,
    "magic": importlib.util.MAGIC_NUMBER.hex(),
    "paths": sysconfig.get_paths(scheme="venv", vars={"base": venv, "platbase": venv,
                                                      "installed_base": venv, "installed_platbase": venv}),
    "stdlib": sysconfig.get_paths()["stdlib"],
    "bytecode": bytecode,
}))
"#;

/// A module exercising what the compiler folds and how marshal writes it (constants of every
/// kind, frozensets, comprehensions, match, except*, f-strings, generics, async, closures): the
/// source of the bytecode fingerprint.
pub(crate) const BYTECODE_PROBE: &str = r#"
"""A module that exercises what the compiler folds and how marshal writes it."""
import sys
X = (1, 2.5, -0.0, 3j, 10**20, "\\xe9\\u2603", b"\\x00\\xff", None, ..., True)
S = frozenset({"a", "b", 1, 2.0, (3, 4)})
def f(a, /, b=2, *args, c, d=X, **kw) -> "int":
    """Doc."""
    if a in {"x", "y", "z"} and b not in (1, 2, 3):
        return [i * 2 for i in range(a) if i % 3] or {k: v for k, v in kw.items()}
    try:
        match a:
            case [1, *rest] if rest: return rest
            case {"k": v}: return v
            case str() | bytes(): return f"{a!r:>10}{b:.3f}"
    except* (TypeError, ValueError) as e:
        raise RuntimeError("x") from e
    finally:
        del a
    lambda q=1 << 40, *, r=-(2**63): (yield from q)
    return 1 + 2 * 3 - 4 // 5 % 6 ** 7, "abc" * 3, -1.5e300 * 10
class C[T](dict, metaclass=type):
    x: int = 1
    async def g(self):
        async with self as s:
            async for i in s:
                await i
    @property
    def h(self): return super().h, __class__
type Alias[K] = list[K]
"#;

/// The base's interpreter, as it described itself.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct Interpreter {
    /// Where it was found inside the root (e.g. `/usr/bin/python3.14`).
    #[serde(default)]
    pub path: String,
    /// `3.14.0`.
    pub version: String,
    /// `final`, `candidate`, ...
    pub release: String,
    /// `cpython`.
    pub implementation: String,
    /// `sys.abiflags` (`t` when free-threaded).
    pub abiflags: String,
    /// `cpython-314-x86_64-linux-gnu`.
    pub soabi: Option<String>,
    pub ext_suffix: Option<String>,
    pub gil_disabled: bool,
    /// `platform.machine()`: `x86_64`, `aarch64`.
    pub machine: String,
    /// `glibc 2.41`, when glibc.
    pub libc: Option<String>,
    /// `sys.executable`.
    pub executable: String,
    /// `cpython-314`: the `.pyc` name tag.
    pub cache_tag: Option<String>,
    /// `importlib.util.MAGIC_NUMBER`, hex.
    pub magic: String,
    /// `sysconfig` paths of a venv at the stack's venv path.
    pub paths: BTreeMap<String, String>,
    /// The standard library folder.
    pub stdlib: String,
    /// The fingerprint of the bytecode it compiles (see [`PROBE`]); `None` when it could not
    /// say (then nothing it compiles is shared).
    #[serde(default)]
    pub bytecode: Option<String>,
}

impl Interpreter {
    /// `major.minor` of its version.
    pub fn python_version(&self) -> Option<PythonVersion> {
        let mut parts = self.version.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(PythonVersion { major, minor })
    }

    /// glibc `(major, minor)`, when glibc.
    pub fn glibc(&self) -> Option<(u16, u16)> {
        let version = self.libc.as_deref()?.strip_prefix("glibc ")?;
        let mut parts = version.split('.');
        Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
    }

    /// The tags this interpreter supports, as comfypak orders them for its own version, ABI,
    /// architecture and glibc.
    pub fn supported_tags(&self) -> Option<Vec<String>> {
        let (major, minor) = self.glibc()?;
        let arch: Arch = self.machine.parse().ok()?;
        let target = Target::new(
            self.python_version()?,
            self.abiflags.contains('t'),
            Platform {
                libc: Libc::Manylinux { major, minor },
                arch,
            },
        );
        Some(target.tags().iter().map(|t| t.to_string()).collect())
    }

    /// Refuses an interpreter that cannot run what the stack resolves for `target`.
    pub fn check_fits(&self, target: &Target, base: &str) -> Result<(), RuntimeError> {
        let mismatch = |problem: String| RuntimeError::Mismatch {
            base: base.to_string(),
            interpreter: format!(
                "{} {} ({}{}, {}, {})",
                self.path,
                self.version,
                self.implementation,
                if self.abiflags.is_empty() {
                    String::new()
                } else {
                    format!(" abiflags `{}`", self.abiflags)
                },
                self.machine,
                self.libc.as_deref().unwrap_or("no glibc")
            ),
            target: format!(
                "CPython {}{} on {}",
                target.python,
                if target.free_threaded {
                    " free-threaded"
                } else {
                    ""
                },
                target.platform
            ),
            problem,
        };
        if self.implementation != "cpython" {
            return Err(mismatch(format!(
                "it is {}, not CPython",
                self.implementation
            )));
        }
        if self.python_version() != Some(target.python) {
            return Err(mismatch(format!(
                "its version is {}, the target's {}",
                self.version, target.python
            )));
        }
        let free_threaded = self.abiflags.contains('t') || self.gil_disabled;
        if free_threaded != target.free_threaded {
            return Err(mismatch(if free_threaded {
                "it is a free-threaded build and the target is not".to_string()
            } else {
                "the target is free-threaded and it is not".to_string()
            }));
        }
        if self.machine.parse::<Arch>().ok() != Some(target.platform.arch) {
            return Err(mismatch(format!(
                "it runs on {}, the target is {}",
                self.machine, target.platform.arch
            )));
        }
        match (target.platform.libc, self.glibc()) {
            (Libc::Manylinux { major, minor }, Some(have)) if have < (major, minor) => {
                return Err(mismatch(format!(
                    "its glibc {}.{} is older than the target's {major}.{minor}: wheels tagged \
                     for the target would not load",
                    have.0, have.1
                )))
            }
            (Libc::Manylinux { .. }, None) => {
                return Err(mismatch("it does not use glibc".to_string()))
            }
            _ => {}
        }
        Ok(())
    }
}

/// Finds the interpreter for `python` in `root` along `path` (a `PATH` value): `python3.X`
/// first, then `python3`; the path inside the root, as found on `PATH`.
pub fn find(root: &Path, path: &str, python: PythonVersion) -> Result<String, RuntimeError> {
    let names = [format!("python{python}"), "python3".to_string()];
    let dirs: Vec<&str> = path.split(':').filter(|d| d.starts_with('/')).collect();
    for name in &names {
        for dir in &dirs {
            let inside = format!("{}/{name}", dir.trim_end_matches('/'));
            let components: Vec<OsString> = Path::new(&inside)
                .components()
                .filter_map(|c| match c {
                    std::path::Component::Normal(c) => Some(c.to_os_string()),
                    _ => None,
                })
                .collect();
            let Ok(resolved) = resolve_in_root(root, &components, true) else {
                continue;
            };
            let mut host = root.to_path_buf();
            host.extend(&resolved);
            if let Ok(meta) = std::fs::metadata(&host) {
                if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                    return Ok(inside);
                }
            }
        }
    }
    // No interpreter of the target's version: name the ones there are.
    let mut others = Vec::new();
    for dir in &dirs {
        let host = root.join(dir.trim_start_matches('/'));
        let Ok(entries) = std::fs::read_dir(&host) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let versioned = name
                .strip_prefix("python3.")
                .is_some_and(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()));
            if versioned {
                others.push(format!("{}/{name}", dir.trim_end_matches('/')));
            }
        }
    }
    others.sort();
    others.dedup();
    if !others.is_empty() {
        return Err(RuntimeError::Mismatch {
            base: root.display().to_string(),
            interpreter: others.join(", "),
            target: format!("CPython {python}"),
            problem: format!("it has no python{python}"),
        });
    }
    Err(RuntimeError::NoPython {
        root: root.to_path_buf(),
        tried: names.join(", "),
        path: path.to_string(),
    })
}

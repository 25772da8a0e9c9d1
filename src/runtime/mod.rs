//! The target runtime: the base image's own CPython, unpacked and run in a sandbox.
//!
//! Owns the way from a base (an OCI image layout, single or multi-arch, or a root folder) to a
//! runnable interpreter for one platform of the stack: the platform's image is picked, its
//! layers unpacked into the cache by digest ([`unpack`]), its interpreter found and probed
//! ([`interpreter`]) and checked against the target, and commands run in the namespace sandbox
//! ([`sandbox`], qemu-user through binfmt_misc for the foreign architecture). The venv skeleton
//! ([`venv`]) is written from the interpreter's answers. It must not resolve, fetch or pack,
//! and it never registers binfmt handlers or reaches the network from the sandbox.

pub mod check;
pub mod compile;
pub mod interpreter;
pub mod prepare;
pub mod sandbox;
pub mod unpack;
pub mod venv;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::pack::oci::Layout;
use crate::pack::PackError;
use crate::target::{Arch, Target};

pub use interpreter::Interpreter;
pub use sandbox::{RunOutput, Sandbox, WORK_DIR};

/// How long one command in the sandbox may run unless the caller says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// Why the target runtime could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("base {base}: {source}")]
    Layout {
        base: String,
        #[source]
        source: PackError,
    },
    #[error("base {base}: {message}")]
    Base { base: String, message: String },
    #[error("layer {digest} ({}): {message}", blob.display())]
    BadLayer {
        blob: PathBuf,
        digest: String,
        message: String,
    },
    #[error(
        "no Python in the base root {}: looked for {tried} on PATH={path}",
        root.display()
    )]
    NoPython {
        root: PathBuf,
        tried: String,
        path: String,
    },
    #[error(
        "the base {base} does not fit the target: its interpreter is {interpreter}, the stack's \
         target is {target}: {problem}"
    )]
    Mismatch {
        base: String,
        interpreter: String,
        target: String,
        problem: String,
    },
    #[error("cannot run {arch} programs on this {host} host: {problem}")]
    NoBinfmt {
        arch: Arch,
        host: String,
        problem: String,
        qemu: String,
    },
    #[error("sandbox: {message}")]
    Sandbox { message: String },
    #[error(
        "`{command}` in the sandbox ran longer than {seconds:.0}s and was killed with everything it started"
    )]
    Timeout { command: String, seconds: f64 },
    #[error("the check stopped before it ended, at {progress}")]
    CheckStopped {
        progress: String,
        #[source]
        source: Box<RuntimeError>,
    },
    #[error("compiling the bytecode of {} ran longer than {seconds:.0}s and was stopped", layer.display())]
    CompileTimeout { layer: PathBuf, seconds: f64 },
    #[error("the base's interpreter {interpreter} failed (exit {code}) while {doing}:\n{stderr}")]
    Python {
        interpreter: String,
        doing: String,
        code: i32,
        stderr: String,
    },
}

impl RuntimeError {
    /// What the user can do about it.
    pub fn help(&self) -> Option<String> {
        match self {
            RuntimeError::BadLayer { .. } => Some(
                "nothing of it was kept in the cache; if a blob is damaged, copy the base again \
                 (e.g. `skopeo copy`)"
                    .to_string(),
            ),
            RuntimeError::NoPython { .. } => Some("use a base \
         image with CPython installed (e.g. Debian testing with python3.14: scripts/python-root.sh)".to_string()),
            RuntimeError::Mismatch { .. } => Some("use a base with the target's Python, or change \
         [target] in stack.toml".to_string()),
            RuntimeError::NoBinfmt { qemu, .. } => Some(format!("install qemu-user \
         and register it with binfmt_misc (flag F), e.g. `apt-get install qemu-user-static \
         binfmt-support`, or as root: `mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc` \
         and write the line of /usr/lib/binfmt.d/{qemu}.conf to \
         /proc/sys/fs/binfmt_misc/register; comfypak never registers it itself")),
            RuntimeError::Timeout { .. } => Some(
                "if the interpreter is just slow (qemu is), give the step more time (comfypak \
                 check: --timeout) or run that platform on a native machine"
                    .to_string(),
            ),
            RuntimeError::CompileTimeout { .. } => Some(
                "give it more time: --compile-timeout 2h (or COMFYPAK_COMPILE_TIMEOUT, or \
                 `[compile] timeout = \"2h\"` in stack.toml; at most 24h); under qemu, a \
                 native machine for that platform is faster; --no-compile skips bytecode"
                    .to_string(),
            ),
            _ => None,
        }
    }
}

/// Where a base comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// An OCI image layout folder (single image or an index of platforms).
    Layout(PathBuf),
    /// A root folder (e.g. made by debootstrap).
    Root(PathBuf),
}

impl Base {
    /// A folder holding `oci-layout` is a layout; any other folder a root.
    pub fn from_path(path: &Path) -> Result<Base, RuntimeError> {
        if path.join("oci-layout").is_file() {
            Ok(Base::Layout(path.to_path_buf()))
        } else if path.is_dir() {
            Ok(Base::Root(path.to_path_buf()))
        } else {
            Err(RuntimeError::Base {
                base: path.display().to_string(),
                message: "not a folder: give an OCI image layout or a root folder".to_string(),
            })
        }
    }

    /// How errors name it.
    pub fn describe(&self) -> String {
        match self {
            Base::Layout(p) => format!("oci:{}", p.display()),
            Base::Root(p) => p.display().to_string(),
        }
    }
}

/// The bases of a build: one for every platform, or one per architecture (`ARCH=PATH`, for
/// root folders and single-platform layouts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bases {
    /// A base for every platform (`--base PATH`).
    pub all: Option<PathBuf>,
    /// A base for one architecture (`--base aarch64=PATH`), ahead of `all`.
    pub by_arch: std::collections::BTreeMap<Arch, PathBuf>,
}

impl Bases {
    /// From `--base` values (`PATH` or `ARCH=PATH`); a value given twice is an error.
    pub fn parse(values: &[String]) -> Result<Bases, RuntimeError> {
        let mut bases = Bases::default();
        for value in values {
            let bad = |message: String| RuntimeError::Base {
                base: value.clone(),
                message,
            };
            match value.split_once('=') {
                Some((arch, path)) if arch.parse::<Arch>().is_ok() => {
                    let arch: Arch = arch.parse().map_err(|_| bad(String::new()))?;
                    if bases.by_arch.insert(arch, PathBuf::from(path)).is_some() {
                        return Err(bad(format!("a second base for {arch}")));
                    }
                }
                _ => {
                    if bases.all.replace(PathBuf::from(value)).is_some() {
                        return Err(bad(
                            "a second base for every platform: give one, or ARCH=PATH per \
                             architecture"
                                .to_string(),
                        ));
                    }
                }
            }
        }
        Ok(bases)
    }

    /// No base at all.
    pub fn is_empty(&self) -> bool {
        self.all.is_none() && self.by_arch.is_empty()
    }

    /// The base for `arch`, if any.
    pub fn for_arch(&self, arch: Arch) -> Option<&Path> {
        self.by_arch
            .get(&arch)
            .or(self.all.as_ref())
            .map(PathBuf::as_path)
    }
}

/// Settings of the runtime.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// comfypak's cache folder; unpacked roots go under `runtime/roots/`.
    pub cache_dir: PathBuf,
    /// The limit for each command run in the sandbox.
    pub timeout: Duration,
}

/// The base's interpreter for one platform, ready to run.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// The base, as errors name it.
    pub base: String,
    /// The manifest digest of the platform's image, for a layout base.
    pub image_digest: Option<String>,
    /// The unpacked (or given) root folder.
    pub root: PathBuf,
    /// The root's architecture.
    pub arch: Arch,
    /// `PATH` inside the root (from the image config).
    pub path_env: String,
    /// What the interpreter said about itself.
    pub interpreter: Interpreter,
    /// The stack's venv path inside the image.
    pub venv: String,
    scratch: PathBuf,
    /// Compiled files shared by interpreters with the same bytecode fingerprint.
    bytecode_cache: PathBuf,
    timeout: Duration,
}

/// The architecture of an ELF executable, from its header.
fn elf_arch(path: &Path) -> Option<Arch> {
    use std::io::Read;
    let mut header = [0u8; 20];
    std::fs::File::open(path)
        .ok()?
        .read_exact(&mut header)
        .ok()?;
    if &header[..4] != b"\x7fELF" {
        return None;
    }
    match u16::from_le_bytes([header[18], header[19]]) {
        0x3e => Some(Arch::X86_64),
        0xb7 => Some(Arch::Aarch64),
        _ => None,
    }
}

impl Runtime {
    /// Makes the runtime of `base` for `target`'s platform: picks the image, unpacks it (cached
    /// by layer digests), finds and probes the interpreter, and checks it fits `target`.
    pub fn for_platform(
        base: &Base,
        target: &Target,
        venv: &str,
        options: &RuntimeOptions,
    ) -> Result<Runtime, RuntimeError> {
        let described = base.describe();
        let arch = target.platform.arch;
        let (root, path_env, image_digest) = match base {
            Base::Root(dir) => (dir.clone(), interpreter::DEFAULT_PATH.to_string(), None),
            Base::Layout(dir) => {
                let layout_err = |source| RuntimeError::Layout {
                    base: described.clone(),
                    source,
                };
                let layout = Layout::open(dir).map_err(layout_err)?;
                let image = layout.image_for(arch.oci_name()).map_err(layout_err)?;
                let diff_ids: Vec<String> = image
                    .config
                    .pointer("/rootfs/diff_ids")
                    .and_then(|v| v.as_array())
                    .map(|a| {
                        a.iter()
                            .filter_map(|d| d.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                if diff_ids.len() != image.manifest.layers.len() {
                    return Err(RuntimeError::Base {
                        base: described,
                        message: format!(
                            "the config lists {} diff_ids for {} layers",
                            diff_ids.len(),
                            image.manifest.layers.len()
                        ),
                    });
                }
                let mut blobs = Vec::new();
                for (layer, diff_id) in image.manifest.layers.iter().zip(diff_ids) {
                    blobs.push(unpack::LayerBlob {
                        path: layout.blob_path(&layer.digest).map_err(layout_err)?,
                        media_type: layer.media_type.clone(),
                        digest: layer.digest.clone(),
                        size: layer.size,
                        diff_id: Some(diff_id),
                    });
                }
                let path_env = image
                    .config
                    .pointer("/config/Env")
                    .and_then(|v| v.as_array())
                    .and_then(|env| {
                        env.iter()
                            .filter_map(|e| e.as_str())
                            .find_map(|e| e.strip_prefix("PATH="))
                    })
                    .unwrap_or(interpreter::DEFAULT_PATH)
                    .to_string();
                let root = unpack::unpack_cached(&options.cache_dir.join("runtime/roots"), &blobs)?;
                (root, path_env, Some(image.manifest_descriptor.digest))
            }
        };
        let found = interpreter::find(&root, &path_env, target.python).map_err(|e| match e {
            RuntimeError::Mismatch {
                interpreter,
                target,
                problem,
                ..
            } => RuntimeError::Mismatch {
                base: described.clone(),
                interpreter,
                target,
                problem,
            },
            other => other,
        })?;
        let mut host_path = root.clone();
        host_path.extend(
            unpack::resolve_in_root(
                &root,
                &Path::new(&found)
                    .components()
                    .skip(1)
                    .map(|c| c.as_os_str().to_os_string())
                    .collect::<Vec<_>>(),
                true,
            )
            .map_err(|source| RuntimeError::Io {
                path: root.join(found.trim_start_matches('/')),
                source,
            })?,
        );
        if let Some(elf) = elf_arch(&host_path) {
            if elf != arch {
                return Err(RuntimeError::Mismatch {
                    base: described,
                    interpreter: format!("{found} (an {elf} executable)"),
                    target: format!("CPython {} on {}", target.python, target.platform),
                    problem: format!("the base is for {elf}, the platform is {arch}"),
                });
            }
        }
        let mut runtime = Runtime {
            base: described.clone(),
            image_digest,
            root,
            arch,
            path_env,
            interpreter: Interpreter {
                path: found.clone(),
                version: String::new(),
                release: String::new(),
                implementation: String::new(),
                abiflags: String::new(),
                soabi: None,
                ext_suffix: None,
                gil_disabled: false,
                machine: String::new(),
                libc: None,
                executable: found.clone(),
                cache_tag: None,
                magic: String::new(),
                paths: Default::default(),
                stdlib: String::new(),
                bytecode: None,
            },
            venv: venv.to_string(),
            scratch: options.cache_dir.join("runtime/scratch"),
            bytecode_cache: options.cache_dir.join("bytecode"),
            timeout: options.timeout,
        };
        let output = runtime.run(
            &[
                found.clone(),
                "-I".to_string(),
                "-c".to_string(),
                interpreter::PROBE.to_string(),
                venv.to_string(),
            ],
            &[],
            None,
            interpreter::BYTECODE_PROBE.as_bytes(),
        )?;
        if output.code != 0 {
            return Err(RuntimeError::Python {
                interpreter: found,
                doing: "describing itself".to_string(),
                code: output.code,
                stderr: output.stderr_tail(),
            });
        }
        let mut probed: Interpreter =
            serde_json::from_slice(&output.stdout).map_err(|e| RuntimeError::Python {
                interpreter: found.clone(),
                doing: format!("describing itself (its answer is not JSON: {e})"),
                code: output.code,
                stderr: String::from_utf8_lossy(&output.stdout)
                    .chars()
                    .take(400)
                    .collect(),
            })?;
        probed.path = found;
        probed.check_fits(target, &described)?;
        runtime.interpreter = probed;
        Ok(runtime)
    }

    /// The environment commands in the sandbox get.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("PATH".to_string(), self.path_env.clone()),
            ("HOME".to_string(), "/tmp".to_string()),
            ("TMPDIR".to_string(), "/tmp".to_string()),
            ("LANG".to_string(), "C.UTF-8".to_string()),
            ("PYTHONDONTWRITEBYTECODE".to_string(), "1".to_string()),
        ]
    }

    /// A sandbox over the root, with `layers` (top first) stacked on it and `work` mounted at
    /// [`WORK_DIR`].
    pub fn sandbox(&self, layers: &[PathBuf], work: Option<&Path>) -> Sandbox {
        let mut lowers = layers.to_vec();
        lowers.push(self.root.clone());
        Sandbox {
            lowers,
            work: work.map(Path::to_path_buf),
            arch: self.arch,
            timeout: self.timeout,
            scratch: self.scratch.clone(),
        }
    }

    /// Runs `argv` in the sandbox over the root (plus `layers`, top first), in `/`, with
    /// [`Runtime::env`] plus `extra_env`.
    pub fn run(
        &self,
        argv: &[String],
        layers: &[PathBuf],
        work: Option<&Path>,
        stdin: &[u8],
    ) -> Result<RunOutput, RuntimeError> {
        self.sandbox(layers, work)
            .run(argv, &self.env(), "/", stdin)
    }

    /// The same with another time limit.
    pub fn with_timeout(mut self, timeout: Duration) -> Runtime {
        self.timeout = timeout;
        self
    }
}

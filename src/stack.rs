//! The stack manifest: `stack.toml` beside the `pak*.txt` files.
//!
//! Owns the layers in stability order and the pak files of each, the target (Python version,
//! platforms, in-image venv path, torch backend, the GPU architectures and minimum driver
//! the image must run on), which indexes packages come from (default
//! order and pins), the declared ABI couplings of unlabelled performance wheels
//! (`[couplings]`, read by [`crate::cuda::parse_couplings`]), the pak files kept out of
//! the stack on purpose (and those a build leaves out with `--no-layer`), `[pack]
//! split-threshold` (read here, applied by [`crate::pack::split`]), `[compile] timeout`
//! (applied by [`crate::runtime::compile`]), `[build]` and `[[install.record-mismatch]]`. It
//! reads pak files through [`crate::pak`] and index definitions through
//! [`crate::index::definition`]; it must not resolve, fetch or install anything.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use pep508_rs::PackageName;
use serde::{Deserialize, Serialize};

use crate::cuda::{parse_couplings, parse_gpus, Coupling, DriverVersion, GpuArch};
use crate::index::definition::{IndexDefError, IndexDefs};
use crate::pak::{self, PakError, PakFile};
use crate::target::{Platform, PythonVersion, Target};

/// The file name of a stack manifest inside a stack directory.
pub const MANIFEST: &str = "stack.toml";

/// A loaded, validated stack.
#[derive(Debug, Clone)]
pub struct Stack {
    /// The `stack.toml` this was read from.
    pub manifest: PathBuf,
    pub name: String,
    pub target: StackTarget,
    /// Most stable first.
    pub layers: Vec<Layer>,
    pub indexes: IndexSettings,
    /// Pak files present but kept out of every layer, with the reason.
    pub excluded: Vec<ExcludedPak>,
    /// `[couplings]`: what unlabelled ABI-coupled wheels were built against (CUDA, torch,
    /// C++ ABI), by package; empty when the table is absent.
    pub couplings: BTreeMap<PackageName, Coupling>,
    /// `[check] allow`: top-level modules or console scripts `comfypak check` may see fail,
    /// each with the reason (an upstream fault, a module that needs a GPU at import).
    pub check_allow: BTreeMap<String, String>,
    /// `[base]`: the base image to build on and run the target's Python from: `path` (relative
    /// to the stack, an OCI layout or a root folder) or `image` (a registry reference,
    /// `docker://HOST/REPO:TAG` or `@sha256:…`, kept as written); `--base` overrides it.
    pub base: Option<PathBuf>,
    /// `[pack] split-threshold`: packages whose largest locked wheel has at least this many
    /// bytes get an image layer of their own (`Some(None)`: `off`); `None` when not set
    /// (pack's default applies).
    pub split_threshold: Option<Option<u64>>,
    /// `[compile] timeout`: how long compiling one layer's bytecode may take (qemu is slow);
    /// `None` when not set (the runtime's default applies).
    pub compile_timeout: Option<std::time::Duration>,
    /// `[build]`: which projects may use wheels or sdists, and how sources are built.
    pub build: BuildSettings,
    /// `[[install.record-mismatch]]`: published wheels whose RECORD is wrong about one of
    /// their own files, accepted for that exact wheel and file only, each with the reason.
    pub record_mismatch: Vec<RecordMismatch>,
}

/// `[[install.record-mismatch]]`: one file of one published wheel whose RECORD row is known
/// to be wrong, accepted with the reason (`resolve` puts it into the lock for `install`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RecordMismatch {
    /// The wheel's file name.
    pub wheel: String,
    /// The member path inside the wheel.
    pub file: String,
    pub reason: String,
}

/// `[build]` of stack.toml.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildSettings {
    /// `no-binary` then `only-binary` values (pip's rules; pak file options and command-line
    /// flags apply after these).
    pub formats: Vec<pak::FormatOption>,
    /// `[build.config-settings.NAME]`: PEP 517 config settings per project.
    pub config_settings: BTreeMap<PackageName, BTreeMap<String, String>>,
    /// `no-isolation`: index sdists built in the image's own environment (every package
    /// the lock installs for the target) instead of an isolated build environment.
    pub no_isolation: Vec<PackageName>,
    /// `[build.match-runtime] NAME = ["torch"]`: build requirements added to NAME's build,
    /// pinned to the version the image resolves (uv's match-runtime).
    pub match_runtime: BTreeMap<PackageName, Vec<PackageName>>,
    /// `[build] base`: the base whose Python builds sources, when it is not the image's (a
    /// build base adds a compiler, cmake and the Python headers to the image's base): one for
    /// every platform (`base = "PATH"`) and/or per architecture (`base = { aarch64 = "PATH" }`),
    /// relative to the stack. Empty: sources build in the image's base.
    pub base: Option<PathBuf>,
    pub base_by_arch: BTreeMap<crate::target::Arch, PathBuf>,
    /// `[build] timeout`: how long one source build may run (dlib under load takes more than
    /// the default 30 minutes; qemu more still); None: the frontend's default.
    pub timeout: Option<std::time::Duration>,
}

/// What the image runs: one interpreter, one or more platforms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StackTarget {
    pub python: PythonVersion,
    pub free_threaded: bool,
    pub platforms: Vec<Platform>,
    /// The environment's path inside the image, e.g. `/opt/comfyui/venv`.
    pub venv: String,
    /// The torch backend the stack is built for (`cu130`, `cu128`, `cu126`, `cpu`, `auto`).
    pub torch_backend: String,
    /// `target.gpus`: the GPU architectures the image must run on (families expanded,
    /// sorted); empty when not declared. The backend and every ABI-coupled wheel must
    /// cover them, and `auto` picks the newest backend that does.
    pub gpus: Vec<GpuArch>,
    /// `target.min-driver`: the oldest NVIDIA driver the image must run with.
    pub min_driver: Option<DriverVersion>,
}

impl StackTarget {
    /// One [`Target`] per platform, in manifest order.
    pub fn targets(&self) -> Vec<Target> {
        self.platforms
            .iter()
            .map(|platform| Target::new(self.python, self.free_threaded, *platform))
            .collect()
    }

    /// The in-image site-packages path every layer installs into.
    pub fn site_packages(&self) -> String {
        format!(
            "{}/lib/python{}.{}{}/site-packages",
            self.venv.trim_end_matches('/'),
            self.python.major,
            self.python.minor,
            if self.free_threaded { "t" } else { "" }
        )
    }
}

/// A named group of pak files with a stability rank.
#[derive(Debug, Clone)]
pub struct Layer {
    pub name: String,
    /// 1 = most stable (0 is the base image, which comfypak does not build).
    pub rank: usize,
    pub paks: Vec<PakFile>,
}

impl Layer {
    /// Every requirement line of the layer, in pak order.
    pub fn requirements(&self) -> impl Iterator<Item = &pak::PakLine> {
        self.paks.iter().flat_map(|p| p.requirements.iter())
    }
}

/// Where packages come from.
#[derive(Debug, Clone)]
pub struct IndexSettings {
    /// The folder the definitions were read from.
    pub index_dir: PathBuf,
    pub definitions: IndexDefs,
    /// Unpinned packages come from the first of these that has the name.
    pub default: Vec<String>,
    /// Packages that come from one index only.
    pub pins: Vec<IndexPin>,
}

/// A set of packages bound to one index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IndexPin {
    pub index: String,
    /// Normalized names; a trailing `*` matches any name with that prefix (`nvidia-*`).
    pub packages: Vec<String>,
}

impl IndexSettings {
    /// The index `name` is pinned to, if any.
    pub fn pinned_index(&self, name: &PackageName) -> Option<&str> {
        let name = name.as_ref();
        self.pins
            .iter()
            .find(|pin| pin.packages.iter().any(|p| pattern_matches(p, name)))
            .map(|pin| pin.index.as_str())
    }
}

fn pattern_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// A pak file that is present but deliberately not part of any layer.
#[derive(Debug, Clone)]
pub struct ExcludedPak {
    pub pak: PakFile,
    pub reason: String,
}

/// Why a stack could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Syntax { path: PathBuf, message: String },
    #[error("{}: `{key}`: {message}", path.display())]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
        help: String,
    },
    #[error(transparent)]
    Pak(#[from] PakError),
    #[error("{}: {source}", path.display())]
    Index {
        path: PathBuf,
        #[source]
        source: IndexDefError,
    },
    /// `--no-layer NAME` named a layer the stack does not have, or every layer.
    #[error("--no-layer {name}: {message}")]
    NoLayer {
        name: String,
        message: String,
        /// The stack's layers, most stable first.
        layers: Vec<String>,
    },
}

impl StackError {
    /// What the user can do about it.
    pub fn help(&self) -> Option<String> {
        match self {
            StackError::Pak(e) => e.help().map(str::to_string),
            StackError::Read { .. } => Some(
                "pass the folder that holds stack.toml with --stack, e.g. `--stack pak/`"
                    .to_string(),
            ),
            StackError::Invalid { help, .. } => Some(help.to_string()),
            StackError::NoLayer { layers, .. } => Some(format!(
                "name one of the stack's layers: {}",
                layers.join(", ")
            )),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawManifest {
    stack: RawStack,
    target: RawTarget,
    #[serde(default)]
    indexes: RawIndexes,
    #[serde(rename = "layer", default)]
    layers: Vec<RawLayer>,
    #[serde(default)]
    excluded: BTreeMap<String, String>,
    #[serde(default)]
    couplings: toml::Table,
    #[serde(default)]
    check: RawCheck,
    #[serde(default)]
    base: Option<RawBase>,
    #[serde(default)]
    pack: RawPack,
    #[serde(default)]
    compile: RawCompile,
    #[serde(default)]
    build: RawBuild,
    #[serde(default)]
    install: RawInstall,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawCompile {
    /// Seconds, or a duration such as "90m".
    #[serde(default)]
    timeout: Option<toml::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawInstall {
    #[serde(default)]
    record_mismatch: Vec<RawRecordMismatch>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecordMismatch {
    wheel: String,
    file: String,
    reason: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawBuild {
    #[serde(default)]
    no_binary: Vec<String>,
    #[serde(default)]
    only_binary: Vec<String>,
    #[serde(default)]
    config_settings: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default)]
    no_isolation: Vec<String>,
    #[serde(default)]
    match_runtime: BTreeMap<String, Vec<String>>,
    /// A path for every platform, or a table of architecture → path.
    #[serde(default)]
    base: Option<toml::Value>,
    /// Seconds, or a duration such as "2h".
    #[serde(default)]
    timeout: Option<toml::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawPack {
    #[serde(default)]
    split_threshold: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawCheck {
    #[serde(default)]
    allow: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawBase {
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    image: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawStack {
    name: String,
    #[serde(default = "default_index_dir")]
    index_dir: String,
}

fn default_index_dir() -> String {
    "../indexes".to_string()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawTarget {
    python: String,
    #[serde(default)]
    free_threaded: bool,
    platforms: Vec<String>,
    venv: String,
    #[serde(default = "default_backend")]
    torch_backend: String,
    #[serde(default)]
    gpus: Vec<String>,
    #[serde(default)]
    min_driver: Option<String>,
}

fn default_backend() -> String {
    "cu130".to_string()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawIndexes {
    #[serde(default)]
    default: Vec<String>,
    #[serde(default)]
    pins: BTreeMap<String, Vec<String>>,
    /// URL overrides by index name (mirrors, air-gapped copies).
    #[serde(default)]
    urls: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawLayer {
    name: String,
    paks: Vec<String>,
}

/// Torch backends a stack may name.
pub const TORCH_BACKENDS: &[&str] = &["cu130", "cu128", "cu126", "cpu", "auto"];

impl Stack {
    /// Loads `dir/stack.toml` (or `dir` itself when it names a file), its pak files, and the
    /// index definitions it refers to. `vars` expands `${VAR}` in pak files.
    pub fn load(dir: &Path) -> Result<Stack, StackError> {
        Self::load_with_vars(dir, &pak::env_vars)
    }

    /// [`Stack::load`] with an explicit `${VAR}` lookup.
    pub fn load_with_vars(
        dir: &Path,
        vars: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Stack, StackError> {
        let manifest = if dir.is_dir() {
            dir.join(MANIFEST)
        } else {
            dir.to_path_buf()
        };
        let text = std::fs::read_to_string(&manifest).map_err(|source| StackError::Read {
            path: manifest.clone(),
            source,
        })?;
        let raw: RawManifest = toml::from_str(&text).map_err(|e| StackError::Syntax {
            path: manifest.clone(),
            message: e.to_string(),
        })?;
        let base = manifest.parent().unwrap_or(Path::new(".")).to_path_buf();
        let invalid = |key: &str, message: String, help: &str| StackError::Invalid {
            path: manifest.clone(),
            key: key.to_string(),
            message,
            help: help.to_string(),
        };

        let target = Self::load_target(&raw.target, &invalid)?;
        let indexes = Self::load_indexes(&manifest, &base, &raw, &invalid)?;

        if raw.layers.is_empty() {
            return Err(invalid(
                "layer",
                "the stack has no layers".to_string(),
                "add `[[layer]]` tables with `name` and `paks`, most stable first",
            ));
        }
        let mut seen_layers = HashMap::new();
        let mut owner: HashMap<PathBuf, String> = HashMap::new();
        let mut layers = Vec::with_capacity(raw.layers.len());
        for (i, raw_layer) in raw.layers.iter().enumerate() {
            if !is_layer_name(&raw_layer.name) {
                return Err(invalid(
                    "layer.name",
                    format!("`{}` is not a valid layer name", raw_layer.name),
                    "use lowercase letters, digits and `-`, starting with a letter",
                ));
            }
            if seen_layers.insert(raw_layer.name.clone(), i).is_some() {
                return Err(invalid(
                    "layer.name",
                    format!("layer `{}` is declared twice", raw_layer.name),
                    "give each layer a unique name",
                ));
            }
            if raw_layer.paks.is_empty() {
                return Err(invalid(
                    "layer.paks",
                    format!("layer `{}` lists no pak files", raw_layer.name),
                    "list at least one pak*.txt file, or remove the layer",
                ));
            }
            let mut paks = Vec::new();
            for file in &raw_layer.paks {
                let path = base.join(file);
                if let Some(other) = owner.insert(path.clone(), raw_layer.name.clone()) {
                    return Err(invalid(
                        "layer.paks",
                        format!("`{file}` is listed in layer `{other}` and layer `{}`", raw_layer.name),
                        "a pak file belongs to exactly one layer; move the shared lines to the more stable layer's file",
                    ));
                }
                let file = pak::parse_file(&path, vars)?;
                pak::refuse_index_options(&file)?;
                paks.push(file);
            }
            layers.push(Layer {
                name: raw_layer.name.clone(),
                rank: i + 1,
                paks,
            });
        }

        let mut excluded = Vec::new();
        for (file, reason) in &raw.excluded {
            let path = base.join(file);
            if let Some(layer) = owner.get(&path) {
                return Err(invalid(
                    "excluded",
                    format!("`{file}` is excluded but also listed in layer `{layer}`"),
                    "remove it from one of the two",
                ));
            }
            excluded.push(ExcludedPak {
                pak: pak::parse_file(&path, vars)?,
                reason: reason.split_whitespace().collect::<Vec<_>>().join(" "),
            });
        }

        let couplings = parse_couplings(&raw.couplings).map_err(|e| {
            invalid(
                "couplings",
                e.to_string(),
                "declare each unlabelled ABI-coupled wheel as `name = { cuda = \"13.0\", torch = \"2.11\" }` (optionally cxx11abi = true, or release = \"sageattn-py313-cu130-pt211\")",
            )
        })?;

        for (name, reason) in &raw.check.allow {
            if reason.trim().is_empty() {
                return Err(invalid(
                    "check.allow",
                    format!("`{name}` has no reason"),
                    "write why it may fail: `NAME = \"reason\"`",
                ));
            }
        }
        let base_path = match &raw.base {
            None => None,
            Some(RawBase {
                path: Some(path),
                image: None,
            }) if !path.starts_with("docker://") => Some(base.join(path)),
            Some(RawBase {
                path: None,
                image: Some(image),
            }) if image.starts_with("docker://") => Some(PathBuf::from(image)),
            Some(_) => {
                return Err(invalid(
                    "base",
                    "give either `path` (an OCI image layout or a root folder) or `image` (a \
                     registry reference starting with docker://)"
                        .to_string(),
                    "e.g. `[base] image = \"docker://HOST/REPOSITORY:TAG\"` or `[base] path = \"base\"`",
                ))
            }
        };
        let split_threshold = match &raw.pack.split_threshold {
            None => None,
            Some(text) => Some(crate::units::parse_size_or_off(text).map_err(|message| {
                invalid(
                    "pack.split-threshold",
                    message,
                    "write a wheel size such as \"32MiB\" or \"100MB\", or \"off\" for one image layer per stack layer",
                )
            })?),
        };
        let compile_timeout = match &raw.compile.timeout {
            None => None,
            Some(value) => {
                let text = match value {
                    toml::Value::String(text) => text.clone(),
                    toml::Value::Integer(n) => n.to_string(),
                    other => other.to_string(),
                };
                Some(
                    crate::runtime::compile::compile_timeout(&text).map_err(|message| {
                        invalid(
                            "compile.timeout",
                            message,
                            "write seconds or a duration such as \"90m\" or \"2h\" (at most 24h)",
                        )
                    })?,
                )
            }
        };
        let mut build = Self::load_build(&raw.build, &invalid)?;
        Self::load_build_base(&raw.build, &base, &mut build, &invalid)?;
        let mut record_mismatch = Vec::new();
        for entry in &raw.install.record_mismatch {
            let wheel = entry.wheel.trim();
            let parsed: Result<crate::filename::WheelFilename, _> = wheel.parse();
            let file = entry.file.trim();
            let reason = entry
                .reason
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            let problem = if parsed.is_err() {
                Some(format!("`{wheel}` is not a wheel file name"))
            } else if file.is_empty() || file.starts_with('/') || file.split('/').any(|c| c == "..")
            {
                Some(format!("`{file}` is not a path inside the wheel"))
            } else if reason.is_empty() {
                Some(format!("the entry for {wheel} gives no reason"))
            } else {
                None
            };
            if let Some(message) = problem {
                return Err(invalid(
                    "install.record-mismatch",
                    message,
                    "name one exact wheel, the one file whose RECORD row is wrong, and why: \
                     `[[install.record-mismatch]]` with `wheel = \"name-1.0-py3-none-any.whl\"`, \
                     `file = \"name-1.0.dist-info/top_level.txt\"`, `reason = \"…\"`",
                ));
            }
            record_mismatch.push(RecordMismatch {
                wheel: wheel.to_string(),
                file: file.to_string(),
                reason,
            });
        }
        record_mismatch.sort();
        record_mismatch.dedup();
        Ok(Stack {
            manifest,
            name: raw.stack.name,
            target,
            layers,
            indexes,
            excluded,
            couplings,
            check_allow: raw.check.allow,
            base: base_path,
            split_threshold,
            compile_timeout,
            build,
            record_mismatch,
        })
    }

    fn load_build(
        raw: &RawBuild,
        invalid: &dyn Fn(&str, String, &str) -> StackError,
    ) -> Result<BuildSettings, StackError> {
        let mut formats = Vec::new();
        for (key, values, no_binary) in [
            ("build.no-binary", &raw.no_binary, true),
            ("build.only-binary", &raw.only_binary, false),
        ] {
            for value in values {
                let selector = pak::BinarySelector::parse_value(value).map_err(|item| {
                    invalid(
                        key,
                        format!("`{item}` is not a project name, `:all:` or `:none:`"),
                        "list project names, or \":all:\" / \":none:\" as pip's option takes them, e.g. `no-binary = [\"dlib\"]`",
                    )
                })?;
                formats.push(if no_binary {
                    pak::FormatOption::NoBinary(selector)
                } else {
                    pak::FormatOption::OnlyBinary(selector)
                });
            }
        }
        let name = |key: &str, text: &str| {
            text.parse::<PackageName>().map_err(|e| {
                invalid(
                    key,
                    format!("`{text}` is not a project name: {e}"),
                    "name the project as its requirement does, e.g. `dlib`",
                )
            })
        };
        let mut config_settings = BTreeMap::new();
        for (project, settings) in &raw.config_settings {
            config_settings.insert(name("build.config-settings", project)?, settings.clone());
        }
        let no_isolation = raw
            .no_isolation
            .iter()
            .map(|text| name("build.no-isolation", text))
            .collect::<Result<Vec<_>, _>>()?;
        let mut match_runtime = BTreeMap::new();
        for (project, requirements) in &raw.match_runtime {
            let names = requirements
                .iter()
                .map(|text| name("build.match-runtime", text))
                .collect::<Result<Vec<_>, _>>()?;
            match_runtime.insert(name("build.match-runtime", project)?, names);
        }
        Ok(BuildSettings {
            formats,
            config_settings,
            no_isolation,
            match_runtime,
            base: None,
            base_by_arch: BTreeMap::new(),
            timeout: match &raw.timeout {
                None => None,
                Some(value) => {
                    let text = match value {
                        toml::Value::String(text) => text.clone(),
                        other => other.to_string(),
                    };
                    Some(
                        crate::runtime::compile::compile_timeout(&text).map_err(|message| {
                            invalid(
                                "build.timeout",
                                message,
                                "write seconds or a duration such as \"90m\" or \"2h\" (at most 24h)",
                            )
                        })?,
                    )
                }
            },
        })
    }

    /// `[build] base`: a path or a registry image (`docker://…`, pulled when a build first
    /// needs it), or a table of architecture → either; paths are relative to the stack folder
    /// `dir`.
    fn load_build_base(
        raw: &RawBuild,
        dir: &Path,
        build: &mut BuildSettings,
        invalid: &dyn Fn(&str, String, &str) -> StackError,
    ) -> Result<(), StackError> {
        let help = "write a folder (a root with the target's Python, a compiler, cmake and the \
                    Python headers), an OCI image layout on disk or a registry image: \
                    `[build] base = \"build-root\"` or `\"docker://HOST/REPOSITORY:TAG\"`, or per \
                    architecture `[build] base = { x86_64 = \"root-amd64\", aarch64 = \"root-arm64\" }`";
        let path = |key: &str, value: &toml::Value| -> Result<PathBuf, StackError> {
            match value.as_str() {
                Some(text) if text.starts_with("docker://") => Ok(PathBuf::from(text)),
                Some(text) if !text.trim().is_empty() && !text.contains("://") => {
                    Ok(dir.join(text))
                }
                _ => Err(invalid(
                    key,
                    format!("`{value}` is neither a path on disk nor a docker:// image"),
                    help,
                )),
            }
        };
        match &raw.base {
            None => {}
            Some(toml::Value::Table(table)) => {
                for (arch, value) in table {
                    let parsed: crate::target::Arch = arch.parse().map_err(|_| {
                        invalid(
                            "build.base",
                            format!("`{arch}` is not an architecture"),
                            "use x86_64 or aarch64 as the keys",
                        )
                    })?;
                    build
                        .base_by_arch
                        .insert(parsed, path(&format!("build.base.{arch}"), value)?);
                }
            }
            Some(value) => build.base = Some(path("build.base", value)?),
        }
        Ok(())
    }

    fn load_target(
        raw: &RawTarget,
        invalid: &dyn Fn(&str, String, &str) -> StackError,
    ) -> Result<StackTarget, StackError> {
        let python: PythonVersion = raw.python.parse().map_err(|e| {
            invalid(
                "target.python",
                format!("{e}"),
                "write the interpreter version as MAJOR.MINOR, e.g. \"3.14\"",
            )
        })?;
        if raw.platforms.is_empty() {
            return Err(invalid(
                "target.platforms",
                "no platforms".to_string(),
                "list at least one, e.g. [\"manylinux_2_39_x86_64\"]",
            ));
        }
        let mut platforms: Vec<Platform> = Vec::new();
        for text in &raw.platforms {
            let platform: Platform = text.parse().map_err(|e| {
                invalid(
                    "target.platforms",
                    format!("{e}"),
                    "use a platform tag such as manylinux_2_39_x86_64 or manylinux_2_39_aarch64",
                )
            })?;
            if platforms.contains(&platform) {
                return Err(invalid(
                    "target.platforms",
                    format!("`{text}` is listed twice"),
                    "list each platform once",
                ));
            }
            platforms.push(platform);
        }
        if !raw.venv.starts_with('/') {
            return Err(invalid(
                "target.venv",
                format!("`{}` is not an absolute path", raw.venv),
                "give the in-image path of the environment, e.g. \"/opt/comfyui/venv\"",
            ));
        }
        if !TORCH_BACKENDS.contains(&raw.torch_backend.as_str()) {
            return Err(invalid(
                "target.torch-backend",
                format!("unknown torch backend `{}`", raw.torch_backend),
                &format!("use one of {}", TORCH_BACKENDS.join(", ")),
            ));
        }
        let gpus = parse_gpus(&raw.gpus).map_err(|e| {
            invalid(
                "target.gpus",
                e.to_string(),
                "list the GPU architectures the image must run on, e.g. [\"sm_80\", \"sm_90\", \"sm_120\"] or [\"ampere\", \"hopper\"]",
            )
        })?;
        let min_driver = raw
            .min_driver
            .as_deref()
            .map(DriverVersion::parse)
            .transpose()
            .map_err(|e| {
                invalid(
                    "target.min-driver",
                    e.to_string(),
                    "write the oldest NVIDIA driver the image must run with, e.g. \"570.86\"",
                )
            })?;
        Ok(StackTarget {
            python,
            free_threaded: raw.free_threaded,
            platforms,
            venv: raw.venv.trim_end_matches('/').to_string(),
            torch_backend: raw.torch_backend.clone(),
            gpus,
            min_driver,
        })
    }

    fn load_indexes(
        manifest: &Path,
        base: &Path,
        raw: &RawManifest,
        invalid: &dyn Fn(&str, String, &str) -> StackError,
    ) -> Result<IndexSettings, StackError> {
        let index_dir = base.join(&raw.stack.index_dir);
        let index_error = |source| StackError::Index {
            path: manifest.to_path_buf(),
            source,
        };
        let mut definitions = IndexDefs::load_dir(&index_dir).map_err(index_error)?;
        for (name, url) in &raw.indexes.urls {
            definitions
                .override_url(name, url, "[indexes.urls]")
                .map_err(index_error)?;
        }
        if raw.indexes.default.is_empty() {
            return Err(invalid(
                "indexes.default",
                "no default index".to_string(),
                "name the indexes unpinned packages come from, e.g. default = [\"pypi\"]",
            ));
        }
        for name in &raw.indexes.default {
            definitions
                .require(name, "[indexes] default")
                .map_err(index_error)?;
        }
        let mut pins = Vec::new();
        let mut pinned_by: HashMap<String, String> = HashMap::new();
        for (index, packages) in &raw.indexes.pins {
            definitions
                .require(index, "[indexes.pins]")
                .map_err(index_error)?;
            let mut normalized = Vec::new();
            for package in packages {
                let (stem, glob) = match package.strip_suffix('*') {
                    Some(stem) => (stem, true),
                    None => (package.as_str(), false),
                };
                let name = if glob {
                    stem.to_ascii_lowercase().replace(['_', '.'], "-")
                } else {
                    PackageName::new(stem.to_string())
                        .map_err(|e| {
                            invalid(
                                "indexes.pins",
                                format!("`{package}`: {e}"),
                                "pin package names (or a prefix ending in `*`)",
                            )
                        })?
                        .to_string()
                };
                let pattern = if glob { format!("{name}*") } else { name };
                if let Some(other) = pinned_by.insert(pattern.clone(), index.clone()) {
                    return Err(invalid(
                        "indexes.pins",
                        format!("`{pattern}` is pinned to both `{other}` and `{index}`"),
                        "a package comes from exactly one pinned index",
                    ));
                }
                normalized.push(pattern);
            }
            pins.push(IndexPin {
                index: index.clone(),
                packages: normalized,
            });
        }
        Ok(IndexSettings {
            index_dir,
            definitions,
            default: raw.indexes.default.clone(),
            pins,
        })
    }

    /// The layer called `name`.
    pub fn layer(&self, name: &str) -> Option<&Layer> {
        self.layers.iter().find(|l| l.name == name)
    }

    /// `--no-layer NAME…`: resolves and builds as though each named layer's pak files were
    /// under `[excluded]` (like uv's `--no-group`): the layers go, their pak files join
    /// [`Stack::excluded`] with the reason `left out by --no-layer NAME`, and the remaining
    /// layers keep their order (ranks renumbered). An unknown name, or leaving out every
    /// layer, is an error naming the stack's layers.
    pub fn leave_out(&mut self, names: &[String]) -> Result<(), StackError> {
        let all: Vec<String> = self.layers.iter().map(|l| l.name.clone()).collect();
        for name in names {
            let Some(at) = self.layers.iter().position(|l| &l.name == name) else {
                let message = if all.contains(name) {
                    "named twice".to_string()
                } else {
                    format!("{} has no layer `{name}`", self.manifest.display())
                };
                return Err(StackError::NoLayer {
                    name: name.clone(),
                    message,
                    layers: all,
                });
            };
            if self.layers.len() == 1 {
                return Err(StackError::NoLayer {
                    name: name.clone(),
                    message: "that would leave no layer to build".to_string(),
                    layers: all,
                });
            }
            let layer = self.layers.remove(at);
            for pak in layer.paks {
                self.excluded.push(ExcludedPak {
                    pak,
                    reason: format!("layer `{name}` left out by --no-layer {name}"),
                });
            }
        }
        for (i, layer) in self.layers.iter_mut().enumerate() {
            layer.rank = i + 1;
        }
        Ok(())
    }

    /// [`Stack::load`], then [`Stack::leave_out`] of `no_layers`.
    pub fn load_without(dir: &Path, no_layers: &[String]) -> Result<Self, StackError> {
        let mut stack = Self::load(dir)?;
        stack.leave_out(no_layers)?;
        Ok(stack)
    }

    /// Every pak file the stack read, layers first, then excluded ones.
    pub fn files(&self) -> Vec<&Path> {
        let mut files: Vec<&Path> = Vec::new();
        for pak in self
            .layers
            .iter()
            .flat_map(|l| l.paks.iter())
            .chain(self.excluded.iter().map(|e| &e.pak))
        {
            for f in &pak.files {
                if !files.contains(&f.as_path()) {
                    files.push(f);
                }
            }
        }
        files
    }
}

fn is_layer_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_patterns() {
        assert!(pattern_matches("torch", "torch"));
        assert!(!pattern_matches("torch", "torchvision"));
        assert!(pattern_matches("nvidia-*", "nvidia-cublas"));
        assert!(!pattern_matches("nvidia-*", "numpy"));
    }

    #[test]
    fn layer_names() {
        assert!(is_layer_name("deps"));
        assert!(is_layer_name("app-2"));
        assert!(!is_layer_name("Deps"));
        assert!(!is_layer_name("2app"));
        assert!(!is_layer_name(""));
    }
}

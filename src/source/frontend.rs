//! The PEP 517 hook runs of one build, in the target runtime's sandbox.
//!
//! Owns the work folder's layout (the tree at `src/`, the wheel at `out/`, the shim, the
//! request and result files, HOME and TMPDIR, the log), the build environment's layers (the
//! venv skeleton at [`super::BUILD_VENV`] plus what the caller installs), the environment
//! variables of a build (`SOURCE_DATE_EPOCH`, jobs, no index for pip), and the mapping of a
//! hook's outcome to an error (failure with the log's tail, network wanted, time limit). The
//! log of a failed build is kept under `source-builds/logs/`. Must not decide what to build
//! nor write into the cache of wheels.

use std::path::{Path, PathBuf};

use super::{
    BuildEnvironments, BuildFailure, BuildOptions, BuildSystem, SourceError, BUILD_VENV,
    LOG_TAIL_LINES,
};
use crate::runtime::{Runtime, RuntimeError, WORK_DIR};

/// The hook runner, run by the build environment's interpreter.
pub const SHIM: &str = include_str!("shim.py");

/// One build's hook runs.
pub struct Frontend<'a> {
    work: PathBuf,
    package: String,
    system: &'a BuildSystem,
    runtime: &'a Runtime,
    options: &'a BuildOptions,
    env_layer: Option<PathBuf>,
}

/// The last `lines` lines of a text file (lossy), for messages.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl<'a> Frontend<'a> {
    /// Lays out the work folder `work` (holding the tree at `src/`).
    pub fn new(
        work: &Path,
        package: &str,
        system: &'a BuildSystem,
        runtime: &'a Runtime,
        options: &'a BuildOptions,
    ) -> Result<Frontend<'a>, SourceError> {
        for sub in ["out", "meta", "home", "tmp"] {
            let dir = work.join(sub);
            std::fs::create_dir_all(&dir).map_err(SourceError::io(&dir))?;
        }
        let shim = work.join("shim.py");
        std::fs::write(&shim, SHIM).map_err(SourceError::io(&shim))?;
        Ok(Frontend {
            work: work.to_path_buf(),
            package: package.to_string(),
            system,
            runtime,
            options,
            env_layer: None,
        })
    }

    /// The log on the host (while the work folder lives).
    pub fn log_path(&self) -> PathBuf {
        self.work.join("build.log")
    }

    /// Makes the build environment's layer `name`: `resolved` installed by the caller (which
    /// creates the folder), then the venv skeleton over it.
    pub fn install_env<E: BuildEnvironments>(
        &mut self,
        envs: &E,
        resolved: Option<&E::Resolved>,
        name: &str,
    ) -> Result<(), SourceError> {
        let layer = self.work.join(name);
        if let Some(resolved) = resolved {
            envs.install(resolved, BUILD_VENV, &layer)
                .map_err(|e| SourceError::BuildEnv {
                    package: self.package.clone(),
                    requirements: self.system.requires.join(", "),
                    message: e.message,
                    help: e.help,
                })?;
        }
        crate::runtime::venv::write_skeleton(&layer, BUILD_VENV, &self.runtime.interpreter)
            .map_err(|source| SourceError::Runtime {
                package: self.package.clone(),
                source: Box::new(source),
            })?;
        self.env_layer = Some(layer);
        Ok(())
    }

    fn env(&self) -> Vec<(String, String)> {
        let jobs = self.options.jobs.max(1).to_string();
        let inside = |sub: &str| format!("{WORK_DIR}/{sub}");
        vec![
            (
                "PATH".to_string(),
                format!("{BUILD_VENV}/bin:{}", self.runtime.path_env),
            ),
            ("VIRTUAL_ENV".to_string(), BUILD_VENV.to_string()),
            ("HOME".to_string(), inside("home")),
            ("TMPDIR".to_string(), inside("tmp")),
            ("LANG".to_string(), "C.UTF-8".to_string()),
            ("LC_ALL".to_string(), "C.UTF-8".to_string()),
            ("PYTHONHASHSEED".to_string(), "0".to_string()),
            ("PYTHONDONTWRITEBYTECODE".to_string(), "1".to_string()),
            (
                "SOURCE_DATE_EPOCH".to_string(),
                self.options.source_date_epoch.to_string(),
            ),
            ("MAKEFLAGS".to_string(), format!("-j{jobs}")),
            ("CMAKE_BUILD_PARALLEL_LEVEL".to_string(), jobs.clone()),
            ("MAX_JOBS".to_string(), jobs.clone()),
            ("NPY_NUM_BUILD_JOBS".to_string(), jobs),
            ("PIP_NO_INDEX".to_string(), "1".to_string()),
            ("PIP_DISABLE_PIP_VERSION_CHECK".to_string(), "1".to_string()),
        ]
    }

    /// Where a failed build's log is kept: `source-builds/logs/<package>-<unique>.log`.
    fn keep_log(&self) -> PathBuf {
        let logs = super::builds_dir(&self.options.cache_dir).join("logs");
        let safe: String = self
            .package
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .take(64)
            .collect();
        let kept = logs.join(format!("{safe}-{}.log", crate::fsutil::unique_suffix()));
        if std::fs::create_dir_all(&logs).is_ok() && std::fs::copy(self.log_path(), &kept).is_ok() {
            kept
        } else {
            self.log_path()
        }
    }

    /// Runs `hook`; its return value.
    fn run_hook(&self, hook: &str) -> Result<serde_json::Value, SourceError> {
        let inside = |sub: &str| format!("{WORK_DIR}/{sub}");
        let out = if hook == "prepare_metadata_for_build_wheel" {
            inside("meta")
        } else {
            inside("out")
        };
        let result_host = self.work.join("result.json");
        let _ = std::fs::remove_file(&result_host);
        let network_host = self.work.join("network.jsonl");
        let request = serde_json::json!({
            "backend": self.system.backend,
            "backend_path": self.system.backend_path,
            "config_settings": self.options.config_settings,
            "out": out,
            "log": inside("build.log"),
            "result": inside("result.json"),
            "network": inside("network.jsonl"),
        });
        let request_host = self.work.join("request.json");
        std::fs::write(&request_host, request.to_string())
            .map_err(SourceError::io(&request_host))?;
        let mut layers = Vec::new();
        if let Some(layer) = &self.env_layer {
            layers.push(layer.clone());
        }
        let mut sandbox = self.runtime.sandbox(&layers, Some(&self.work));
        sandbox.timeout = self.options.timeout;
        let argv = vec![
            format!("{BUILD_VENV}/bin/python"),
            "-I".to_string(),
            inside("shim.py"),
            hook.to_string(),
            inside("request.json"),
        ];
        let output = match sandbox.run(&argv, &self.env(), &inside("src"), b"") {
            Ok(output) => output,
            Err(RuntimeError::Timeout { seconds, .. }) => {
                return Err(SourceError::Timeout {
                    package: self.package.clone(),
                    backend: self.system.backend.clone(),
                    hook: hook.to_string(),
                    seconds,
                    log: self.keep_log(),
                })
            }
            Err(source) => {
                return Err(SourceError::Runtime {
                    package: self.package.clone(),
                    source: Box::new(source),
                })
            }
        };
        let result: Option<serde_json::Value> = std::fs::read(&result_host)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        if let Some(value) = result.as_ref().and_then(|r| r.get("return")) {
            if output.code == 0 {
                return Ok(value.clone());
            }
        }
        if let Ok(wanted) = std::fs::read_to_string(&network_host) {
            let wanted: Vec<String> = wanted
                .lines()
                .filter_map(|l| serde_json::from_str::<String>(l).ok())
                .collect();
            let best = wanted.iter().find(|w| w.contains("://")).or(wanted.first());
            if let Some(best) = best {
                return Err(SourceError::Network {
                    package: self.package.clone(),
                    backend: self.system.backend.clone(),
                    wanted: best.clone(),
                    log: self.keep_log(),
                });
            }
        }
        let message = result
            .as_ref()
            .and_then(|r| r.get("message"))
            .and_then(|m| m.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| {
                format!(
                    "the hook runner exited with {} without a result{}",
                    output.code,
                    match output.stderr_tail() {
                        t if t.is_empty() => String::new(),
                        t => format!(": {t}"),
                    }
                )
            });
        Err(SourceError::BuildFailed(Box::new(BuildFailure {
            package: self.package.clone(),
            backend: self.system.backend.clone(),
            hook: hook.to_string(),
            message,
            tail: log_tail(&self.log_path(), LOG_TAIL_LINES),
            log: self.keep_log(),
        })))
    }

    fn bad_return(&self, hook: &str, value: &serde_json::Value) -> SourceError {
        SourceError::BadOutput {
            package: self.package.clone(),
            what: format!(
                "an unexpected answer to {hook} ({}) through backend {}",
                crate::digest::shown(&value.to_string(), 200),
                self.system.backend
            ),
        }
    }

    /// `get_requires_for_build_wheel`: extra requirements (none when the backend lacks it).
    pub fn get_requires(&self) -> Result<Vec<String>, SourceError> {
        let hook = "get_requires_for_build_wheel";
        let value = self.run_hook(hook)?;
        let list = value
            .as_array()
            .ok_or_else(|| self.bad_return(hook, &value))?;
        list.iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| self.bad_return(hook, &value))
            })
            .collect()
    }

    /// `prepare_metadata_for_build_wheel`: the METADATA bytes, or None when the backend lacks
    /// the hook.
    pub fn prepare_metadata(&self) -> Result<Option<Vec<u8>>, SourceError> {
        let hook = "prepare_metadata_for_build_wheel";
        let value = self.run_hook(hook)?;
        if value.is_null() {
            return Ok(None);
        }
        let name = value
            .as_str()
            .filter(|n| n.ends_with(".dist-info") && !n.contains('/') && !n.starts_with('.'))
            .ok_or_else(|| self.bad_return(hook, &value))?;
        let path = self.work.join("meta").join(name).join("METADATA");
        std::fs::read(&path)
            .map(Some)
            .map_err(|_| self.bad_return(hook, &value))
    }

    /// `build_wheel`: the wheel on the host.
    pub fn build_wheel(&self) -> Result<PathBuf, SourceError> {
        let hook = "build_wheel";
        let value = self.run_hook(hook)?;
        let name = value
            .as_str()
            .filter(|n| n.ends_with(".whl") && !n.contains('/') && !n.starts_with('.'))
            .ok_or_else(|| self.bad_return(hook, &value))?;
        let path = self.work.join("out").join(name);
        if !path.is_file() {
            return Err(SourceError::BadOutput {
                package: self.package.clone(),
                what: format!("no file `{name}`, although build_wheel named it"),
            });
        }
        Ok(path)
    }
}

//! The in-image check: what an installed environment imports and runs, in the sandbox.
//!
//! Owns running `check.py` with the venv's own python over the layers stacked on the base
//! (read-only, no network), reading its result, and judging it against the stack's allow-list
//! (`[check] allow`, one reason per entry): a module that fails to import or a console script
//! that is broken or exits non-zero for both `--help` and `--version` is a failure unless the
//! list names it; an entry that is no longer needed is reported. It must not print; `cli`
//! renders the report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Runtime, RuntimeError, WORK_DIR};

/// The script run inside the image.
pub const CHECK_PY: &str = include_str!("check.py");

/// How many times longer check.py's per-module and per-script limit (300 s) is when the
/// interpreter runs under qemu-user (`COMFYPAK_CHECK_TIMEOUT_SCALE`): emulated CPython starts
/// and imports 10-20 times slower, and a console script that imports torch needs minutes.
pub const QEMU_TIMEOUT_SCALE: u32 = 10;

/// A distribution found in site-packages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Distribution {
    pub name: String,
    pub version: String,
    pub modules: Vec<String>,
    /// Where the modules came from: `top_level.txt` or `RECORD`.
    pub source: String,
    /// Names `top_level.txt` lists that are not shipped.
    #[serde(default)]
    pub unshipped: Vec<String>,
    pub scripts: Vec<String>,
}

/// One import.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportResult {
    pub module: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub seconds: f64,
    /// Failed beside other modules, then tried alone in a fresh interpreter.
    #[serde(default)]
    pub retried: bool,
}

/// One console script.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScriptResult {
    pub script: String,
    pub ok: bool,
    /// The flag it exited 0 for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flag: Option<String>,
    /// Missing, not executable, or cannot be started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broken: Option<String>,
    /// What each flag did when neither exited 0.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tried: Vec<String>,
}

/// How far a running check has got: check.py's `progress.json`, rewritten whole at each step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckProgress {
    /// `collecting distributions`, `importing modules`, `retrying failed imports alone` or `running console
    /// scripts`.
    pub phase: String,
    /// Modules or scripts of this phase done.
    pub done: usize,
    pub total: usize,
    /// What runs now.
    #[serde(default)]
    pub current: Vec<String>,
    /// What failed so far, allowed or not.
    #[serde(default)]
    pub failed: Vec<ProgressFailure>,
}

/// A failure seen while the check runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressFailure {
    pub name: String,
    pub error: String,
}

/// Failures named in full in [`CheckProgress::describe`]; the rest are counted.
const FAILURES_NAMED: usize = 8;

impl CheckProgress {
    /// `importing modules: 120 of 298 done, pymatting running; failed so far: pydub (…)`.
    pub fn describe(&self) -> String {
        let mut text = if self.total == 0 {
            self.phase.clone()
        } else {
            format!("{}: {} of {} done", self.phase, self.done, self.total)
        };
        if !self.current.is_empty() {
            text.push_str(&format!(", {} running", self.current.join(", ")));
        }
        if !self.failed.is_empty() {
            let named: Vec<String> = self
                .failed
                .iter()
                .take(FAILURES_NAMED)
                .map(|f| format!("{} ({})", f.name, f.error))
                .collect();
            text.push_str(&format!("; failed so far: {}", named.join(", ")));
            if self.failed.len() > FAILURES_NAMED {
                text.push_str(&format!(" and {} more", self.failed.len() - FAILURES_NAMED));
            }
        }
        text
    }
}

/// How often the check's progress file is read while it runs.
const PROGRESS_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// What check.py wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Raw {
    python: String,
    executable: String,
    venv: String,
    site_packages: String,
    distributions: Vec<Distribution>,
    imports: Vec<ImportResult>,
    scripts: Vec<ScriptResult>,
    import_seconds: f64,
    script_seconds: f64,
    #[serde(default = "one")]
    timeout_scale: f64,
    #[serde(default)]
    imports_only: bool,
}

fn one() -> f64 {
    1.0
}

/// A failure the allow-list covers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AllowedFailure {
    pub name: String,
    pub error: String,
    pub reason: String,
}

/// The check of one platform.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckReport {
    pub platform: String,
    pub base: String,
    pub python: String,
    pub executable: String,
    pub venv: String,
    pub distributions: Vec<Distribution>,
    pub imports: Vec<ImportResult>,
    pub scripts: Vec<ScriptResult>,
    pub import_seconds: f64,
    pub script_seconds: f64,
    /// How many times check.py's per-module and per-script time limits were stretched:
    /// [`QEMU_TIMEOUT_SCALE`] under qemu-user, else 1.
    pub timeout_scale: f64,
    /// The console scripts were not run ([`CheckScope::ImportsOnly`]).
    pub imports_only: bool,
    /// Modules and scripts that failed and are not allowed: `name: what happened`.
    pub failures: Vec<String>,
    pub allowed: Vec<AllowedFailure>,
    /// Allow-list entries nothing needed.
    pub stale_allow: Vec<String>,
}

impl CheckReport {
    /// No unexpected failure.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    pub fn imported(&self) -> usize {
        self.imports.iter().filter(|i| i.ok).count()
    }

    pub fn scripts_ok(&self) -> usize {
        self.scripts.iter().filter(|s| s.ok).count()
    }
}

/// What the check runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckScope {
    /// Every top-level module imported and every console script run.
    ImportsAndScripts,
    /// The imports only: each console script is an interpreter start of its own, minutes each
    /// under qemu-user for those that import torch.
    ImportsOnly,
}

/// Runs the check over `layers` (most stable first, each a folder holding the venv at its
/// image path) stacked on `runtime`'s root, using `work` as the scratch folder. `progress` is
/// called from another thread each time the check moves on. A check stopped before it ends
/// (its time limit, a crash) is [`RuntimeError::CheckStopped`], saying how far it got.
pub fn check(
    runtime: &Runtime,
    layers: &[PathBuf],
    allow: &BTreeMap<String, String>,
    work: &Path,
    scope: CheckScope,
    progress: &(dyn Fn(&CheckProgress) + Sync),
) -> Result<CheckReport, RuntimeError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RuntimeError::Io { path, source }
    };
    std::fs::create_dir_all(work).map_err(io(work))?;
    let script = work.join("check.py");
    std::fs::write(&script, CHECK_PY).map_err(io(&script))?;
    let result = work.join("result.json");
    let _ = std::fs::remove_file(&result);
    let progress_file = work.join("progress.json");
    let _ = std::fs::remove_file(&progress_file);
    let read_progress = || -> Option<CheckProgress> {
        serde_json::from_slice(&std::fs::read(&progress_file).ok()?).ok()
    };
    let venv = runtime.venv.trim_end_matches('/');
    let top_first: Vec<PathBuf> = layers.iter().rev().cloned().collect();
    let mut env = runtime.env();
    for (key, value) in env.iter_mut() {
        if key == "PATH" {
            *value = format!("{venv}/bin:{value}");
        }
    }
    env.push(("VIRTUAL_ENV".to_string(), venv.to_string()));
    if Some(runtime.arch) != super::sandbox::host_arch() {
        env.push((
            "COMFYPAK_CHECK_TIMEOUT_SCALE".to_string(),
            QEMU_TIMEOUT_SCALE.to_string(),
        ));
    }
    let mut argv = vec![format!("{venv}/bin/python"), format!("{WORK_DIR}/check.py")];
    if scope == CheckScope::ImportsOnly {
        argv.push("--imports-only".to_string());
    }
    argv.push(format!("{WORK_DIR}/result.json"));
    let sandbox = runtime.sandbox(&top_first, Some(work));
    let output = std::thread::scope(|scope| {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        scope.spawn(move || {
            let mut last = None;
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(PROGRESS_POLL)
            {
                if let Some(now) = read_progress() {
                    if last.as_ref() != Some(&now) {
                        progress(&now);
                        last = Some(now);
                    }
                }
            }
        });
        let output = sandbox.run(&argv, &env, "/", b"");
        drop(stop);
        output
    });
    let stopped = |source: RuntimeError| match read_progress() {
        Some(progress) => RuntimeError::CheckStopped {
            progress: progress.describe(),
            source: Box::new(source),
        },
        None => source,
    };
    let output = match output {
        Ok(output) => output,
        Err(e @ RuntimeError::Timeout { .. }) => return Err(stopped(e)),
        Err(e) => return Err(e),
    };
    let raw: Raw = match std::fs::read(&result) {
        Ok(bytes) if output.code == 0 => {
            serde_json::from_slice(&bytes).map_err(|e| RuntimeError::Python {
                interpreter: format!("{venv}/bin/python"),
                doing: format!("checking the image (its result is not readable: {e})"),
                code: output.code,
                stderr: output.stderr_tail(),
            })?
        }
        _ => {
            return Err(stopped(RuntimeError::Python {
                interpreter: format!("{venv}/bin/python"),
                doing: "checking the image".to_string(),
                code: output.code,
                stderr: output.stderr_tail(),
            }))
        }
    };
    Ok(judge(raw, runtime, allow))
}

fn judge(raw: Raw, runtime: &Runtime, allow: &BTreeMap<String, String>) -> CheckReport {
    let mut failures = Vec::new();
    let mut allowed = Vec::new();
    let mut needed = std::collections::BTreeSet::new();
    let mut fail = |name: &str, error: String| match allow.get(name) {
        Some(reason) => {
            needed.insert(name.to_string());
            allowed.push(AllowedFailure {
                name: name.to_string(),
                error,
                reason: reason.clone(),
            });
        }
        None => failures.push(format!("{name}: {error}")),
    };
    for import in raw.imports.iter().filter(|i| !i.ok) {
        fail(
            &import.module,
            format!(
                "import failed: {}",
                import.error.as_deref().unwrap_or("(no message)")
            ),
        );
    }
    for script in raw.scripts.iter().filter(|s| !s.ok) {
        let error = match &script.broken {
            Some(broken) => format!("console script broken: {broken}"),
            None => format!("console script: {}", script.tried.join(" | ")),
        };
        fail(&script.script, error);
    }
    // An entry for a console script is not stale when the scripts did not run.
    let not_run: std::collections::BTreeSet<&str> = if raw.imports_only {
        raw.distributions
            .iter()
            .flat_map(|d| d.scripts.iter().map(String::as_str))
            .collect()
    } else {
        Default::default()
    };
    let stale_allow = allow
        .keys()
        .filter(|k| !needed.contains(*k) && !not_run.contains(k.as_str()))
        .cloned()
        .collect();
    CheckReport {
        platform: runtime.arch.to_string(),
        base: runtime.base.clone(),
        python: raw.python,
        executable: raw.executable,
        venv: raw.venv,
        distributions: raw.distributions,
        imports: raw.imports,
        scripts: raw.scripts,
        import_seconds: raw.import_seconds,
        script_seconds: raw.script_seconds,
        timeout_scale: raw.timeout_scale,
        imports_only: raw.imports_only,
        failures,
        allowed,
        stale_allow,
    }
}

//! What the commands show while the library works: `==> stage` lines, `note:` and
//! `warning:` lines on stderr, the resolver's progress bar (on a terminal only), the
//! download bars, and each installed layer's line.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use pep508_rs::PackageName;

use super::resolve_cmd::{headline, summary_text};
use crate::build::{FetchReport, Progress, ResolveReport};
use crate::fetch::progress::ProgressMode;
use crate::install::InstallReport;
use crate::resolve::ResolveProgress;
use crate::target::Platform;

/// Progress on the terminal; silent with `--quiet`.
pub struct CliProgress {
    quiet: bool,
    /// Print each stage's report as it finishes (`build`); a single command prints its own.
    stage_reports: bool,
    bar: Mutex<Option<ProgressBar>>,
    discovered: AtomicU64,
    fetched: AtomicU64,
    /// Distinct resolver warnings, first seen first (printed once the bar is gone).
    warnings: Mutex<Vec<String>>,
    /// Print each target's resolve profile once its solver is done (`resolve --profile`).
    profiles: bool,
}

impl CliProgress {
    pub fn new(quiet: bool) -> CliProgress {
        CliProgress {
            quiet,
            stage_reports: false,
            bar: Mutex::new(None),
            discovered: AtomicU64::new(0),
            fetched: AtomicU64::new(0),
            warnings: Mutex::new(Vec::new()),
            profiles: false,
        }
    }

    /// Also prints where each target's resolution spent its time (`resolve --profile`).
    pub fn with_profiles(mut self, on: bool) -> CliProgress {
        self.profiles = on;
        self
    }

    /// Also prints each stage's report (for `build`).
    pub fn with_stage_reports(mut self) -> CliProgress {
        self.stage_reports = true;
        self
    }

    fn bar(&self) -> Option<ProgressBar> {
        self.bar
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

impl ResolveProgress for CliProgress {
    fn discovered(&self, _name: &PackageName) {
        let n = self.discovered.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(bar) = self.bar() {
            bar.set_length(n);
            bar.set_message(n.to_string());
        }
    }

    fn metadata_fetched(&self, _name: &PackageName) {
        let n = self.fetched.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(bar) = self.bar() {
            bar.set_position(n);
        }
    }

    fn warning(&self, message: &str) {
        let mut warnings = self
            .warnings
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !warnings.iter().any(|w| w == message) {
            warnings.push(message.to_string());
        }
    }

    fn profile(
        &self,
        target: &crate::target::Target,
        profile: &crate::resolve::profile::ResolveProfile,
    ) {
        if self.profiles {
            eprintln!("profile of the resolution for {target}:\n{profile}");
        }
    }
}

impl Progress for CliProgress {
    fn resolve_started(&self, platforms: usize) {
        if self.quiet || !std::io::stderr().is_terminal() {
            return;
        }
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} resolving {prefix}: {pos}/{len} metadata fetched ({msg} discovered) {elapsed}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(if platforms == 1 {
            "1 platform".to_string()
        } else {
            format!("{platforms} platforms")
        });
        bar.enable_steady_tick(Duration::from_millis(120));
        *self.bar.lock().unwrap_or_else(|p| p.into_inner()) = Some(bar);
    }

    fn resolve_finished(&self) {
        if let Some(bar) = self
            .bar
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
        {
            bar.finish_and_clear();
        }
        let warnings = std::mem::take(
            &mut *self
                .warnings
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        for warning in warnings {
            eprintln!("warning: {warning}");
        }
    }

    fn stage(&self, message: &str) {
        if !self.quiet {
            eprintln!("==> {message}");
        }
    }

    fn note(&self, message: &str) {
        if !self.quiet {
            eprintln!("{message}");
        }
    }

    fn fetch_mode(&self) -> ProgressMode {
        ProgressMode::detect(self.quiet)
    }

    fn resolved(&self, report: &ResolveReport) {
        if self.quiet || !self.stage_reports {
            return;
        }
        println!("{}", headline(report));
        print!("{}", summary_text(&report.summary));
    }

    fn fetched(&self, report: &FetchReport) {
        if self.quiet || !self.stage_reports {
            return;
        }
        println!("{}", fetch_line(report));
    }

    fn layer_installed(&self, platform: &Platform, report: &InstallReport, seconds: f64) {
        if self.quiet {
            return;
        }
        for conflict in &report.overwritten {
            eprintln!("warning: overwritten: {conflict}");
        }
        for file in &report.record_mismatch {
            eprintln!(
                "warning: installed despite a wrong RECORD row, as the lock's record-mismatch \
                 accepts (RECORD now gives its true hash and size): {file}"
            );
        }
        let mut how = vec![format!("{} linked", report.linked)];
        if report.reflinked > 0 {
            how.push(format!("{} reflinked", report.reflinked));
        }
        if report.copied > 0 {
            how.push(format!("{} copied", report.copied));
        }
        how.push(format!("{} generated", report.generated));
        if report.compiled > 0 {
            how.push(format!("{} compiled", report.compiled));
        }
        println!(
            "installed layer {} for {platform}: {} package{}, {} files ({}) into {} in {seconds:.2}s",
            report.layer,
            report.packages,
            if report.packages == 1 { "" } else { "s" },
            report.files,
            how.join(", "),
            report.dir.display(),
        );
    }
}

/// `N wheels for PLATFORMS ready in SIZE`.
pub fn fetch_line(report: &FetchReport) -> String {
    format!(
        "{} wheel{} for {} ready in {}",
        report.wheels,
        if report.wheels == 1 { "" } else { "s" },
        report.platforms.join(", "),
        crate::units::human_bytes(report.bytes)
    )
}

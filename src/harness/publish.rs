//! What a comparison publishes besides its CSVs and PNG charts:
//! `comparison.json` (`json`), `report.html` (`html`) and the baseline
//! comparison (`baseline`), with their flags. One call from `compare`
//! after a run and one from `compare --replot`.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::baseline::{self, Written};
use super::json::{BaselineFile, Comparison};
use super::runner::Run;
use super::summary::ModelSummary;
use super::{export, html};
use crate::models::Label;

/// The noise threshold's default, in percent. criterion's 2 % suits
/// micro-benchmarks on a quiet machine; these are whole passes over a
/// network on a shared machine, where runs of one model spread by several
/// percent (the committed seed results: σ of 3–8 % of the mean for the
/// fast models), so smaller changes are not told apart from noise.
pub const DEFAULT_NOISE_PCT: f64 = 5.0;

#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Results")]
pub struct PublishArgs {
    /// Also write comparison.json to PATH (it is always written to the
    /// output directory).
    #[arg(long, value_name = "PATH", conflicts_with = "sweep")]
    pub export_json: Option<PathBuf>,
    /// Save this comparison's per-run times as baseline NAME, in
    /// <out>/baselines/NAME.json (a NAME with a '/' or ending in .json is
    /// a file path).
    #[arg(long, value_name = "NAME", conflicts_with = "sweep")]
    pub save_baseline: Option<String>,
    /// Compare with baseline NAME (saved with --save-baseline): each
    /// model's change in median with a 95 % bootstrap interval.
    #[arg(long, value_name = "NAME", conflicts_with = "sweep")]
    pub baseline: Option<String>,
    /// With --baseline: changes in median smaller than PCT percent are
    /// "no change".
    #[arg(long, value_name = "PCT", default_value_t = DEFAULT_NOISE_PCT, requires = "baseline")]
    pub noise_threshold: f64,
    /// With --baseline: exit non-zero when a model's median regressed by
    /// more than PCT percent with an interval that excludes zero.
    #[arg(long, value_name = "PCT", requires = "baseline")]
    pub fail_on_regression: Option<f64>,
    /// Where named baselines live (`<dir>/baselines/NAME.json`), when not
    /// in the output directory: set by the plan, never on the command line.
    #[arg(skip)]
    pub baselines_dir: Option<PathBuf>,
}

impl PublishArgs {
    /// Reads the `--baseline` before anything runs, so a missing one fails
    /// at once rather than after the comparison.
    pub fn load_baseline(&self, out: &Path) -> anyhow::Result<Option<(BaselineFile, PathBuf)>> {
        anyhow::ensure!(
            self.noise_threshold.is_finite()
                && self.noise_threshold >= 0.0
                && self
                    .fail_on_regression
                    .is_none_or(|p| p.is_finite() && p >= 0.0),
            "--noise-threshold and --fail-on-regression take a percentage, 0 or more"
        );
        // Checked now, not after the charts and reports are rewritten.
        let dir = self.baselines_dir.as_deref().unwrap_or(out);
        // The directories are made and tried now too: a path that cannot
        // be written would otherwise fail only after every run.
        let writable = |path: &Path, flag: &str| -> anyhow::Result<()> {
            let parent = path.parent().filter(|d| !d.as_os_str().is_empty());
            let parent = parent.unwrap_or(Path::new("."));
            std::fs::create_dir_all(parent)
                .with_context(|| format!("{flag}: creating {}", parent.display()))?;
            super::outdir::check_writable(parent, flag)
        };
        if let Some(name) = &self.save_baseline {
            let path = baseline::path_for(dir, name)?;
            baseline::may_overwrite(&path, Written::Baseline)?;
            writable(&path, "--save-baseline")?;
        }
        if let Some(p) = &self.export_json {
            baseline::may_overwrite(p, Written::Comparison)?;
            writable(p, "--export-json")?;
        }
        self.baseline
            .as_deref()
            .map(|n| baseline::load(self.baselines_dir.as_deref().unwrap_or(out), n))
            .transpose()
    }
}

/// What `publish` found that decides the exit status.
#[derive(Debug)]
pub struct Published {
    /// Labels that regressed beyond `--fail-on-regression`.
    pub regressed: Vec<String>,
    /// The headline verdict ("async ran … times faster than sync"), for
    /// `--replot` to print: `compare` prints its own verdict lines.
    pub verdict: Option<String>,
}

impl Published {
    /// Whether the comparison passes `--fail-on-regression` (printing why
    /// not).
    pub fn passes(&self, args: &PublishArgs) -> bool {
        for m in &self.regressed {
            crate::esayln!(
                "error: {m} regressed by more than {} % against baseline {} (--fail-on-regression)",
                args.fail_on_regression.unwrap_or_default(),
                args.baseline.as_deref().unwrap_or_default()
            );
        }
        self.regressed.is_empty()
    }
}

/// Writes `comparison.json` and `report.html` into `out` (and the JSON to
/// `--export-json`), sets the runs against `baseline`, saves
/// `--save-baseline`, and prints the verdict and the baseline comparison.
/// Without a `baseline`, an earlier `comparison.json`'s baseline section
/// is kept (what `--replot` redraws).
#[allow(clippy::too_many_arguments)]
pub fn publish(
    out: &Path,
    runs: &[Run],
    summaries: &[ModelSummary],
    reference: Option<Label>,
    title: &str,
    environment: Option<serde_json::Value>,
    args: &PublishArgs,
    baseline: Option<(BaselineFile, PathBuf)>,
) -> anyhow::Result<Published> {
    let json_path = out.join("comparison.json");
    let mut c = Comparison::build(runs, summaries, reference, title, environment);
    c.baseline = match &baseline {
        Some((file, path)) => Some(baseline::compare(
            file,
            path,
            runs,
            c.environment.as_ref(),
            args.noise_threshold,
        )),
        None => std::fs::read(&json_path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Comparison>(&b).ok())
            .and_then(|old| old.baseline),
    };
    export::write_json(&json_path, &c)?;
    if let Some(p) = &args.export_json {
        baseline::may_overwrite(p, Written::Comparison)?;
        // As --save-baseline does: the directory is made if need be.
        if let Some(parent) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("--export-json: creating {}", parent.display()))?;
        }
        export::write_json(p, &c).with_context(|| "--export-json")?;
    }
    let html_path = out.join("report.html");
    std::fs::write(&html_path, html::render(&c))
        .with_context(|| format!("writing {}", html_path.display()))?;

    let mut regressed = Vec::new();
    if let (Some(r), Some(_)) = (&c.baseline, &baseline) {
        crate::say!("{}", baseline::terminal(r));
        if let Some(pct) = args.fail_on_regression {
            regressed = baseline::regressions(r, pct)
                .into_iter()
                .map(|m| m.model.clone())
                .collect();
        }
    }
    if let Some(name) = &args.save_baseline {
        let dir = args.baselines_dir.as_deref().unwrap_or(out);
        let p = baseline::save(dir, name, runs, title, c.environment.as_ref())?;
        crate::sayln!("saved baseline {name} to {}", p.display());
    }
    crate::sayln!(
        "wrote {} and {}{}",
        json_path.display(),
        html_path.display(),
        args.export_json
            .as_ref()
            .map(|p| format!(" (and {})", p.display()))
            .unwrap_or_default()
    );
    Ok(Published {
        regressed,
        verdict: c.verdict.as_ref().map(|v| match &v.within_noise {
            Some(tie) => format!("{}\n{tie}", v.text),
            None => v.text.clone(),
        }),
    })
}

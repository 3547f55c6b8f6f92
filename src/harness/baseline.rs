//! Baselines, as in criterion: save a comparison's per-run times under a
//! name (`--save-baseline`), and later set a new comparison against them
//! (`--baseline`), model by model. The statistics are in `stats`
//! ([`stats::median_change`]); this module reads and writes the files and
//! words the result for the terminal.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::json::{
    BASELINE_SCHEMA_VERSION, BaselineChange, BaselineFile, BaselineReport, BaselineSamples,
    is_matrix, measured,
};
use super::runner::Run;
use super::stats::{self, ChangeVerdict, MedianChange};

/// Where a baseline lives: `<out>/baselines/NAME.json`, beside the
/// results it is comparable with (the same profile, by default); a NAME
/// that names a file (holds a `/` or ends in `.json`) is that file.
pub fn path_for(out: &Path, name: &str) -> anyhow::Result<PathBuf> {
    if name.contains('/') || name.ends_with(".json") {
        return Ok(PathBuf::from(name));
    }
    anyhow::ensure!(
        !name.is_empty()
            && !name.starts_with('.')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
        "baseline name {name:?}: use letters, digits, '.', '_' and '-' (or give a path to a .json file)"
    );
    Ok(out.join("baselines").join(format!("{name}.json")))
}

/// The name a baseline is shown under: the NAME, or a file's stem.
fn display_name(name: &str) -> String {
    Path::new(name)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| name.to_string())
}

/// Reads baseline `name` (see [`path_for`]).
pub fn load(out: &Path, name: &str) -> anyhow::Result<(BaselineFile, PathBuf)> {
    let path = path_for(out, name)?;
    if !path.exists() {
        anyhow::bail!(
            "reading baseline {name:?} ({}): no such baseline there; a comparison saves one with --save-baseline {name} (without --out, in {}/baselines/), or give the file's path",
            path.display(),
            super::outdir::RUNS_DIR
        );
    }
    let text = String::from_utf8(super::export::read_result_file(&path)?)
        .with_context(|| format!("baseline {} is not JSON (not UTF-8)", path.display()))?;
    let version: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("baseline {} is not JSON", path.display()))?;
    let found = version.get("schema_version").and_then(|v| v.as_u64());
    anyhow::ensure!(
        found == Some(u64::from(BASELINE_SCHEMA_VERSION)),
        "baseline {} has schema_version {}; this version reads {BASELINE_SCHEMA_VERSION} (save the baseline again)",
        path.display(),
        found.map_or_else(|| "none".to_string(), |v| v.to_string())
    );
    let file: BaselineFile = serde_json::from_value(version)
        .with_context(|| format!("baseline {} has an unexpected shape", path.display()))?;
    for m in &file.models {
        anyhow::ensure!(
            m.wall_secs.len() <= crate::cli::MAX_RUNS,
            "baseline {}: {} holds {} runs, more than a comparison makes ({})",
            path.display(),
            m.model,
            m.wall_secs.len(),
            crate::cli::MAX_RUNS
        );
        if let Some(bad) = m
            .wall_secs
            .iter()
            .find(|t| !(**t > 0.0 && **t <= super::export::MAX_RUN_SECS))
        {
            anyhow::bail!(
                "baseline {}: {} holds a time of {bad} s, which no run takes (a damaged or hand-edited file?)",
                path.display(),
                m.model
            );
        }
    }
    Ok((file, path))
}

/// The JSON files a comparison writes where a user points it, which must
/// not replace each other (nor anything else).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// `--save-baseline`.
    Baseline,
    /// `--export-json`.
    Comparison,
}

impl std::fmt::Display for Written {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Written::Baseline => "a baseline",
            Written::Comparison => "a comparison",
        })
    }
}

/// Refuses to write `what` over an existing file that is not one of its
/// kind: `--save-baseline DIR/runs.csv` replaced the comparison's own runs
/// with a baseline, and `--save-baseline DIR/comparison.json` its
/// comparison.
pub fn may_overwrite(path: &Path, what: Written) -> anyhow::Result<()> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    // A baseline is told from a comparison by its `saved_at`: neither may
    // replace the other.
    let baseline = what == Written::Baseline;
    let ours = meta.is_file()
        && std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .is_some_and(|v| {
                v.get("schema_version").is_some() && v.get("saved_at").is_some() == baseline
            });
    anyhow::ensure!(
        ours,
        "will not write {what} to {}: it exists and is not {what} bucketbench wrote (give another path)",
        path.display()
    );
    Ok(())
}

/// Saves the verified measured wall times of every label in `runs` as
/// baseline `name`; returns where.
pub fn save(
    out: &Path,
    name: &str,
    runs: &[Run],
    title: &str,
    environment: Option<&serde_json::Value>,
) -> anyhow::Result<PathBuf> {
    let path = path_for(out, name)?;
    may_overwrite(&path, Written::Baseline)?;
    let matrix = is_matrix(runs);
    let labels = super::unique(runs.iter().map(|r| r.label(matrix).to_string()));
    let models = labels
        .iter()
        .map(|l| BaselineSamples {
            model: l.clone(),
            wall_secs: measured(runs, l, matrix)
                .iter()
                .map(|r| r.wall_secs)
                .collect(),
        })
        .filter(|s| !s.wall_secs.is_empty())
        .collect();
    let file = BaselineFile {
        schema_version: BASELINE_SCHEMA_VERSION,
        name: display_name(name),
        saved_at: chrono::Utc::now().to_rfc3339(),
        // The revision the comparison recorded before it wrote anything (its
        // own files would make a fresh read say "-dirty").
        git_revision: environment
            .and_then(|e| e["git_revision"].as_str())
            .map_or_else(super::export::git_revision, str::to_string),
        title: title.to_string(),
        environment: environment.cloned(),
        models,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    super::export::write_json(&path, &file)?;
    Ok(path)
}

/// Sets `runs` against the baseline, label by label.
pub fn compare(
    baseline: &BaselineFile,
    path: &Path,
    runs: &[Run],
    environment: Option<&serde_json::Value>,
    noise_threshold_pct: f64,
) -> BaselineReport {
    let matrix = is_matrix(runs);
    let labels = super::unique(runs.iter().map(|r| r.label(matrix).to_string()));
    let mut models = Vec::new();
    let mut only_in_this_run = Vec::new();
    for l in &labels {
        let new: Vec<f64> = measured(runs, l, matrix)
            .iter()
            .map(|r| r.wall_secs)
            .collect();
        let old = baseline.models.iter().find(|m| &m.model == l);
        let Some(c) = old.and_then(|o| stats::median_change(&o.wall_secs, &new)) else {
            if !new.is_empty() {
                only_in_this_run.push(l.clone());
            }
            continue;
        };
        models.push(BaselineChange {
            model: l.clone(),
            baseline_runs: old.map_or(0, |o| o.wall_secs.len()),
            runs: new.len(),
            baseline_median_secs: c.baseline_median,
            median_secs: c.median,
            change_pct: c.change_pct,
            ci_low_pct: c.ci_pct.map(|ci| ci.0),
            ci_high_pct: c.ci_pct.map(|ci| ci.1),
            verdict: c.verdict(noise_threshold_pct),
        });
    }
    let only_in_baseline = baseline
        .models
        .iter()
        .filter(|m| !models.iter().any(|c| c.model == m.model))
        .filter(|m| !only_in_this_run.contains(&m.model))
        .map(|m| m.model.clone())
        .collect();
    let mut warnings = Vec::new();
    if let (Some(old), Some(new)) = (&baseline.environment, environment) {
        for key in ["bucket", "network", "settings"] {
            let mut paths = Vec::new();
            differing(old.get(key), new.get(key), key, &mut paths);
            if !paths.is_empty() {
                let more = paths.len().saturating_sub(SHOWN_PATHS);
                paths.truncate(SHOWN_PATHS);
                let more = if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                };
                let verb = if paths.len() > 1 || !more.is_empty() {
                    "differ"
                } else {
                    "differs"
                };
                warnings.push(format!(
                    "{}{more} {verb} from the baseline's: the times may not be comparable",
                    paths.join(", ")
                ));
            }
        }
    }
    if let Some(w) = too_wide(&models, noise_threshold_pct) {
        warnings.push(w);
    }
    BaselineReport {
        name: baseline.name.clone(),
        path: path.display().to_string(),
        saved_at: baseline.saved_at.clone(),
        git_revision: baseline.git_revision.clone(),
        noise_threshold_pct,
        confidence: stats::CONFIDENCE,
        resamples: stats::RESAMPLES,
        models,
        only_in_baseline,
        only_in_this_run,
        warnings,
    }
}

fn change_of(c: &BaselineChange) -> MedianChange {
    MedianChange {
        baseline_median: c.baseline_median_secs,
        median: c.median_secs,
        change_pct: c.change_pct,
        ci_pct: c.ci_low_pct.zip(c.ci_high_pct),
    }
}

/// When "no change" means only "too few runs to tell": the labels found
/// unchanged whose interval reaches further than the threshold either
/// way, so a change of the threshold's size would have read "no change"
/// too. Five runs a side on a long-tailed network leave intervals of tens
/// of per cent.
fn too_wide(models: &[BaselineChange], threshold_pct: f64) -> Option<String> {
    let wide: Vec<(&str, f64)> = models
        .iter()
        .filter(|c| c.verdict == ChangeVerdict::NoChange)
        .filter_map(|c| {
            let (lo, hi) = c.ci_low_pct.zip(c.ci_high_pct)?;
            let reach = (c.change_pct - lo).max(hi - c.change_pct);
            (reach > threshold_pct).then_some((c.model.as_str(), reach))
        })
        .collect();
    let widest = wide.iter().map(|w| w.1).fold(0.0, f64::max);
    (!wide.is_empty()).then(|| {
        format!(
            "the intervals of {} reach up to {widest:.0} % from their change, wider than the {threshold_pct} % threshold: \"no change\" there means a change of that size cannot be told from the noise; more runs a side (--runs) narrow them",
            wide.iter().map(|w| w.0).collect::<Vec<_>>().join(", ")
        )
    })
}

/// The labels whose median regressed by more than `pct` percent with an
/// interval excluding zero (`--fail-on-regression PCT`).
pub fn regressions(report: &BaselineReport, pct: f64) -> Vec<&BaselineChange> {
    report
        .models
        .iter()
        .filter(|c| change_of(c).regressed_beyond(pct))
        .collect()
}

/// "+3.1 % [+1.0 %, +5.2 %]".
pub fn change_text(c: &BaselineChange) -> String {
    match c.ci_low_pct.zip(c.ci_high_pct) {
        Some((lo, hi)) => format!("{:+.1} % [{lo:+.1} %, {hi:+.1} %]", c.change_pct),
        None => format!("{:+.1} % [no interval]", c.change_pct),
    }
}

/// The comparison as the terminal shows it.
pub fn terminal(r: &BaselineReport) -> String {
    let mut s = super::terminal::wrap(&format!(
        "Against baseline {} (saved {}, revision {}): change in median, {:.0} % bootstrap interval, noise threshold {} %",
        r.name,
        r.saved_at.get(..19).unwrap_or(&r.saved_at),
        r.git_revision,
        100.0 * r.confidence,
        r.noise_threshold_pct
    ));
    // First, before any verdict: a baseline measured with other settings
    // makes every line below doubtful.
    for w in &r.warnings {
        s.push_str(&super::terminal::wrap(&format!("  warning: {w}")));
    }
    let width = r.models.iter().map(|c| c.model.len()).max().unwrap_or(0);
    for c in &r.models {
        s.push_str(&format!(
            "  {:width$}  {:>8.3} s -> {:>8.3} s  {:32}  {}\n",
            c.model,
            c.baseline_median_secs,
            c.median_secs,
            change_text(c),
            match c.verdict {
                ChangeVerdict::Inconclusive => "inconclusive (fewer than 2 runs on a side)",
                v => v.as_str(),
            }
        ));
    }
    for m in &r.only_in_baseline {
        s.push_str(&format!("  {m}: in the baseline only, not compared\n"));
    }
    for m in &r.only_in_this_run {
        s.push_str(&format!("  {m}: not in the baseline, not compared\n"));
    }
    s
}

/// Differing settings named in a warning, at most.
const SHOWN_PATHS: usize = 4;

/// The dotted paths (`settings.client.list_timeout`) where two
/// environment values differ, leaves first: a user must know *what*
/// changed to judge whether the times still compare.
fn differing(
    old: Option<&serde_json::Value>,
    new: Option<&serde_json::Value>,
    path: &str,
    out: &mut Vec<String>,
) {
    use serde_json::Value;
    match (old, new) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                differing(a.get(k), b.get(k), &format!("{path}.{k}"), out);
            }
        }
        (a, b) if a != b => out.push(path.to_string()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn no_change_within_an_interval_wider_than_the_threshold_says_so() {
        let change = |model: &str, lo: f64, hi: f64, verdict| BaselineChange {
            model: model.into(),
            baseline_runs: 5,
            runs: 5,
            baseline_median_secs: 1.141,
            median_secs: 1.141,
            change_pct: 0.0,
            ci_low_pct: Some(lo),
            ci_high_pct: Some(hi),
            verdict,
        };
        let tight = [change("sync", -2.0, 3.0, ChangeVerdict::NoChange)];
        assert_eq!(too_wide(&tight, 5.0), None);
        let wide = [
            change("sync", -2.0, 3.0, ChangeVerdict::NoChange),
            change("async", -13.2, 54.6, ChangeVerdict::NoChange),
            change("threads", 20.0, 60.0, ChangeVerdict::Regressed),
        ];
        let w = too_wide(&wide, 5.0).unwrap();
        assert!(
            w.starts_with("the intervals of async reach up to 55 % from their change, wider than the 5 % threshold"),
            "{w}"
        );
    }

    #[test]
    fn a_changed_setting_is_named_by_its_path() {
        let old = serde_json::json!({"client": {"attempts": 5}, "runs": 5});
        let new = serde_json::json!({"client": {"attempts": 5, "list_timeout": 15.0}, "runs": 3});
        let mut paths = Vec::new();
        differing(Some(&old), Some(&new), "settings", &mut paths);
        assert_eq!(paths, ["settings.client.list_timeout", "settings.runs"]);
        let mut none = Vec::new();
        differing(Some(&old), Some(&old), "settings", &mut none);
        assert!(none.is_empty());
    }

    use super::*;

    #[test]
    fn names_are_files_under_baselines_unless_they_are_paths() {
        let out = Path::new("results/seed");
        assert_eq!(
            path_for(out, "main").unwrap(),
            Path::new("results/seed/baselines/main.json")
        );
        assert_eq!(
            path_for(out, "/tmp/x.json").unwrap(),
            Path::new("/tmp/x.json")
        );
        assert!(path_for(out, "..").is_err());
        assert!(path_for(out, "a b").is_err());
    }
}

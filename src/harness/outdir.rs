//! Where a comparison's results go when no `--out` is given: a directory
//! of its own under `results/runs/` (relative to the current directory,
//! gitignored), named after the profile and the UTC time it started, with
//! `results/runs/latest` a symlink to the newest. A user's run so never
//! overwrites the committed reference results in `results/<profile>/`,
//! which only an explicit `--out` writes.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// Where runs without `--out` go, relative to the current directory.
pub const RUNS_DIR: &str = "results/runs";

/// The name of the symlink to the newest run, inside [`RUNS_DIR`].
pub const LATEST: &str = "latest";

/// Whether `<runs>/latest` is the link to `dir`.
pub fn latest_is(runs: &Path, dir: &Path) -> bool {
    std::fs::read_link(runs.join(LATEST))
        .is_ok_and(|target| Some(target.as_os_str()) == dir.file_name())
}

/// Creates `<runs>/<name>-<UTC timestamp>/` (with a `-2`, `-3`, … suffix
/// when two start in the same second), points `<runs>/latest` at it, and
/// returns it. `runs` is [`RUNS_DIR`] but in tests.
pub fn fresh(runs: &Path, name: &str) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(runs).with_context(|| format!("creating {}", runs.display()))?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let base = format!("{name}-{stamp}");
    let mut n = 1;
    let dir = loop {
        let candidate = runs.join(if n == 1 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        // create_dir (not _all) fails on an existing one: no two runs share.
        match std::fs::create_dir(&candidate) {
            Ok(()) => break candidate,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 100 => n += 1,
            Err(e) => return Err(e).with_context(|| format!("creating {}", candidate.display())),
        }
    };
    // `latest` is a convenience: a real directory a user made under that
    // name (or a read-only link) must not cost them the run.
    if let Err(e) = point_latest(runs, &dir) {
        tracing::warn!("{e:#}; the results still go to {}", dir.display());
    }
    Ok(dir)
}

/// Fails, in one line, when nothing can be written into `dir` (a read-only
/// mount, a directory of someone else's): found before the first run, not
/// after it when its `runs.csv` cannot be kept.
pub fn check_writable(dir: &Path, flag: &str) -> anyhow::Result<()> {
    let probe = dir.join(format!(".bucketbench-probe-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&probe)
        .with_context(|| {
            format!(
                "cannot write into {} (give {flag} a place you can write)",
                dir.display()
            )
        })?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Points `<runs>/latest` at `dir` (a relative symlink, replaced
/// atomically by a rename).
fn point_latest(runs: &Path, dir: &Path) -> anyhow::Result<()> {
    let target = dir.file_name().context("a run directory has a name")?;
    let link = runs.join(LATEST);
    // Only a link this tool made is replaced: a file or directory of the
    // user's by that name is theirs.
    if link
        .symlink_metadata()
        .is_ok_and(|m| !m.file_type().is_symlink())
    {
        anyhow::bail!(
            "{} is not the link to the newest run but a file or directory of its own, left alone",
            link.display()
        );
    }
    let tmp = runs.join(format!(".{LATEST}.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)
        .and_then(|()| std::fs::rename(&tmp, runs.join(LATEST)))
        .with_context(|| {
            format!(
                "pointing {} at {}",
                runs.join(LATEST).display(),
                dir.display()
            )
        })
}

/// Removes `dir` if nothing was written into it, and points `<runs>/latest`
/// back at the newest run left (or removes it when none is). Best effort:
/// it only tidies up after a failure already being reported.
pub fn discard_if_empty(runs: &Path, dir: &Path) {
    if std::fs::remove_dir(dir).is_err() {
        return; // not empty, or already gone
    }
    let newest = std::fs::read_dir(runs).ok().and_then(|entries| {
        entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            // Each name ends in its UTC start time; the newest by that.
            .max_by(|a, b| stamp(a).cmp(stamp(b)).then(a.cmp(b)))
    });
    match newest {
        Some(name) => {
            let _ = point_latest(runs, &runs.join(name));
        }
        None => {
            let _ = std::fs::remove_file(runs.join(LATEST));
        }
    }
}

/// The part of a run directory's name from its UTC start time on
/// (`20261126T063000Z`, maybe `-2`): what orders runs of any name.
fn stamp(name: &str) -> &str {
    let b = name.as_bytes();
    (0..b.len())
        .find(|&i| {
            b[i] == b'-'
                && b.len() > i + 9
                && b[i + 1..i + 9].iter().all(u8::is_ascii_digit)
                && b[i + 9] == b'T'
        })
        .map_or(name, |i| &name[i + 1..])
}

/// The newest directory under `runs` whose name is `name-` and a
/// timestamp (for `--sweep --resume` without `--out`).
pub fn newest(runs: &Path, name: &str) -> Option<PathBuf> {
    let prefix = format!("{name}-");
    std::fs::read_dir(runs)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.strip_prefix(&prefix)
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        })
        // The timestamps sort as text.
        .max()
        .map(|n| runs.join(n))
}

/// Where named baselines live: beside the results with `--out`, else in
/// `results/runs/` (a per-run directory would lose them).
pub fn baselines_base(out: Option<&Path>) -> PathBuf {
    out.map_or_else(|| PathBuf::from(RUNS_DIR), Path::to_path_buf)
}

/// For a directory `compare` made under `results/runs/` (its parent holds
/// the `latest` link), that parent: where that comparison kept its named
/// baselines. `None` for a directory given with `--out`, or one holding
/// baselines of its own.
pub fn shared_baselines(dir: &Path) -> Option<PathBuf> {
    // A directory given with --out under results/runs/ kept its own.
    if dir.join("baselines").is_dir() {
        return None;
    }
    let parent = dir.parent()?;
    std::fs::symlink_metadata(parent.join(LATEST))
        .is_ok_and(|m| m.file_type().is_symlink())
        .then(|| parent.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run directory `compare` made keeps its named baselines with the
    /// other runs', so `--replot` there finds what the run saved.
    #[test]
    fn a_run_directory_shares_its_baselines_with_the_other_runs() {
        let tmp = tempfile::tempdir().unwrap();
        let runs = tmp.path().join("results/runs");
        let a = fresh(&runs, "tiny").unwrap();
        assert_eq!(shared_baselines(&a), Some(runs.clone()));
        // A directory given with --out keeps its own.
        let out = tmp.path().join("mine");
        std::fs::create_dir_all(&out).unwrap();
        assert_eq!(shared_baselines(&out), None);
        // So does one under results/runs/ that saved its own (--out there).
        let own = runs.join("mine");
        std::fs::create_dir_all(own.join("baselines")).unwrap();
        assert_eq!(shared_baselines(&own), None);
    }

    #[test]
    fn a_directory_nothing_can_be_written_into_is_found_before_any_run() {
        let tmp = tempfile::tempdir().unwrap();
        check_writable(tmp.path(), "--out").unwrap();
        assert_eq!(
            std::fs::read_dir(tmp.path()).unwrap().count(),
            0,
            "the probe is removed"
        );
        // Not even root may create a file in procfs.
        let err = format!(
            "{:#}",
            check_writable(Path::new("/proc/self"), "--out").unwrap_err()
        );
        assert!(
            err.starts_with("cannot write into /proc/self (give --out"),
            "{err}"
        );
    }

    #[test]
    fn a_real_directory_or_file_named_latest_does_not_cost_the_run_and_is_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let runs = tmp.path().join("runs");
        std::fs::create_dir_all(runs.join(LATEST).join("mine")).unwrap();
        let dir = fresh(&runs, "seed").unwrap();
        assert!(dir.is_dir());
        assert!(
            runs.join(LATEST).join("mine").is_dir(),
            "the user's directory is left alone"
        );
        assert!(!latest_is(&runs, &dir));
        let other = tmp.path().join("other");
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join(LATEST), "important").unwrap();
        let dir = fresh(&other, "seed").unwrap();
        assert_eq!(
            std::fs::read_to_string(other.join(LATEST)).unwrap(),
            "important"
        );
        assert!(!latest_is(&other, &dir));
    }

    #[test]
    fn fresh_directories_never_collide_and_latest_follows() {
        let tmp = tempfile::tempdir().unwrap();
        let runs = tmp.path().join("results/runs");
        let a = fresh(&runs, "tiny").unwrap();
        let b = fresh(&runs, "tiny").unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with(&runs) && b.is_dir());
        let latest = std::fs::read_link(runs.join(LATEST)).unwrap();
        assert_eq!(latest, Path::new(b.file_name().unwrap()));
        assert_eq!(newest(&runs, "tiny").unwrap(), b);
        assert_eq!(newest(&runs, "tiny-sweep-latency"), None);
    }

    #[test]
    fn an_empty_run_directory_is_discarded_and_latest_points_back() {
        let tmp = tempfile::tempdir().unwrap();
        let runs = tmp.path().join("results/runs");
        let kept = fresh(&runs, "tiny").unwrap();
        std::fs::write(kept.join("runs.csv"), "x").unwrap();
        let failed = fresh(&runs, "seed").unwrap();
        discard_if_empty(&runs, &failed);
        assert!(!failed.exists());
        let latest = std::fs::read_link(runs.join(LATEST)).unwrap();
        assert_eq!(latest, Path::new(kept.file_name().unwrap()));
        // A directory with results in it stays, whatever happened.
        discard_if_empty(&runs, &kept);
        assert!(kept.join("runs.csv").is_file());
        // The last one gone, so is the pointer.
        let only = tempfile::tempdir().unwrap();
        let dir = fresh(only.path(), "bucket").unwrap();
        discard_if_empty(only.path(), &dir);
        assert!(std::fs::symlink_metadata(only.path().join(LATEST)).is_err());
        assert_eq!(stamp("bucket-20261126T063000Z-2"), "20261126T063000Z-2");
        assert_eq!(
            stamp("seed-sweep-network-20261126T063000Z"),
            "20261126T063000Z"
        );
    }
}

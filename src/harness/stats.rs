//! Statistics over measured runs, kept apart from presentation (as in
//! hyperfine): medians, spread, outliers, speed relative to a reference, and
//! the change of a median against a saved baseline (as in criterion).

/// Summary statistics of one model's measured wall times.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Stats {
    pub runs: usize,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    /// Sample standard deviation (n − 1); 0 for a single run.
    pub stddev: f64,
    /// Median absolute deviation from the median (unscaled): the spread
    /// the speed ratio's error is taken from, robust to the outliers a
    /// shared machine produces.
    pub mad: f64,
    /// Indexes (into the input) of runs whose modified z-score exceeds 3.5
    /// (Iglewicz and Hoaglin): robust to the outliers it looks for.
    pub outliers: Vec<usize>,
}

pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

impl Stats {
    pub fn of(xs: &[f64]) -> Option<Self> {
        if xs.is_empty() {
            return None;
        }
        let n = xs.len();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let stddev = if n > 1 {
            (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        let med = median(xs);
        let deviations: Vec<f64> = xs.iter().map(|x| (x - med).abs()).collect();
        let mad = median(&deviations);
        let outliers = if mad > 0.0 {
            xs.iter()
                .enumerate()
                .filter(|(_, x)| 0.6745 * (*x - med).abs() / mad > 3.5)
                .map(|(i, _)| i)
                .collect()
        } else {
            Vec::new()
        };
        Some(Stats {
            runs: n,
            median: med,
            min: xs.iter().copied().fold(f64::INFINITY, f64::min),
            max: xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            mean,
            stddev,
            mad,
            outliers,
        })
    }
}

/// How many times faster `model` is than `reference`: the reference's
/// median over the model's, the one definition of the speed ratio, which the
/// terminal, `summary.md`, the charts, the HTML report and the verdict all
/// show (through [`Speedup::text`] and [`Speedup::sentence`]), and by which
/// models are ranked. Medians, as the tables and bars show them: a ratio of
/// means ranked a model whose median was faster as slower, on the strength
/// of one outlying run. The error is propagated, as hyperfine propagates
/// standard deviations, from each side's robust standard deviation (1.4826
/// × MAD). The ratio of means and its error are kept beside it in the CSV
/// and JSON exports.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Speedup {
    pub ratio: f64,
    pub error: f64,
    /// Both sides had two runs or more: there is a spread to show (which
    /// may be 0, when most runs took the same time).
    pub spread: bool,
    pub mean_ratio: f64,
    pub mean_error: f64,
}

/// The standard deviation a normal sample with this MAD would have.
const MAD_TO_SD: f64 = 1.4826;

/// The speed ratio of `model` against `reference`. There is no error when
/// either side has a single run: one run has no spread to propagate, and
/// half an error would look like a whole one.
pub fn speedup(reference: &Stats, model: &Stats) -> Speedup {
    let spread = reference.runs >= 2 && model.runs >= 2;
    let propagated = |ratio: f64, rel: &dyn Fn(&Stats) -> f64| {
        if spread {
            ratio * (rel(reference).powi(2) + rel(model).powi(2)).sqrt()
        } else {
            0.0
        }
    };
    let ratio = reference.median / model.median;
    let mean_ratio = reference.mean / model.mean;
    Speedup {
        ratio,
        error: propagated(ratio, &|s| {
            if s.median > 0.0 {
                MAD_TO_SD * s.mad / s.median
            } else {
                0.0
            }
        }),
        spread,
        mean_ratio,
        mean_error: propagated(mean_ratio, &|s| {
            if s.mean > 0.0 { s.stddev / s.mean } else { 0.0 }
        }),
    }
}

impl Speedup {
    /// Whether there is an error to show (every side had two runs or more).
    pub fn has_error(&self) -> bool {
        self.spread
    }

    /// Decimals a table shows the ratio with: one, or two near 1× (where
    /// "1.0 ± 0.0×" would hide a 3 % difference the verdict line names).
    pub fn decimals(&self) -> usize {
        let factor = if self.ratio > 0.0 {
            self.ratio.max(1.0 / self.ratio)
        } else {
            f64::INFINITY
        };
        if factor < 1.1 { 2 } else { 1 }
    }

    /// `13.1 ± 0.5`, or `13.1` with no spread to show.
    pub fn text(&self, decimals: usize) -> String {
        if self.has_error() {
            format!("{:.decimals$} ± {:.decimals$}", self.ratio, self.error)
        } else {
            format!("{:.decimals$}", self.ratio)
        }
    }

    /// hyperfine's wording: "`model` ran 13.1 ± 0.5 times faster than
    /// `reference`", or "… times slower than …" below 1 (the inverse
    /// ratio, its error scaled alike).
    pub fn sentence(&self, model: &str, reference: &str, decimals: usize) -> String {
        let (x, how) = self.faster_or_slower();
        format!(
            "{model} ran {} times {how} than {reference}",
            x.text(decimals)
        )
    }

    /// `2.6 ± 0.2× faster`, or for a slower model `4.3 ± 0.4× slower`
    /// rather than `0.2 ± 0.0× faster`.
    pub fn short(&self, decimals: usize) -> String {
        let (x, how) = self.faster_or_slower();
        format!("{}× {how}", x.text(decimals))
    }

    /// The ratio as a factor of at least 1, and which way it goes (the
    /// error carried through the inverse to first order).
    fn faster_or_slower(&self) -> (Speedup, &'static str) {
        if self.ratio >= 1.0 || self.ratio <= 0.0 {
            (*self, "faster")
        } else {
            let inverse = Speedup {
                ratio: 1.0 / self.ratio,
                error: self.error / (self.ratio * self.ratio),
                spread: self.spread,
                mean_ratio: 1.0 / self.mean_ratio,
                mean_error: self.mean_error / (self.mean_ratio * self.mean_ratio),
            };
            (inverse, "slower")
        }
    }
}

/// Bootstrap resamples behind a [`MedianChange`]'s confidence interval.
pub const RESAMPLES: usize = 10_000;
/// The bootstrap's fixed seed: the same samples always give the same
/// interval, so a verdict never flips between two looks at one result.
pub const BOOTSTRAP_SEED: u64 = 0x6275_636b_6574;
/// The confidence level of a [`MedianChange`]'s interval.
pub const CONFIDENCE: f64 = 0.95;

/// How a median moved from a baseline's samples to new ones.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MedianChange {
    pub baseline_median: f64,
    pub median: f64,
    /// Relative change of the median, in percent: negative is faster.
    pub change_pct: f64,
    /// The [`CONFIDENCE`] bootstrap interval of `change_pct`, in percent;
    /// `None` when a side has fewer than two samples (no spread to
    /// resample).
    pub ci_pct: Option<(f64, f64)>,
}

/// What a [`MedianChange`] amounts to against a noise threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeVerdict {
    /// Faster by more than the threshold, and the interval excludes zero.
    Improved,
    /// Slower by more than the threshold, and the interval excludes zero.
    Regressed,
    /// Within the threshold, or an interval that includes zero.
    NoChange,
    /// Fewer than two runs on a side: no interval, no verdict.
    Inconclusive,
}

impl ChangeVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeVerdict::Improved => "improved",
            ChangeVerdict::Regressed => "regressed",
            ChangeVerdict::NoChange => "no change",
            ChangeVerdict::Inconclusive => "inconclusive",
        }
    }
}

/// The change of the median from `baseline` to `new`, with a bootstrap
/// confidence interval: both samples resampled with replacement
/// [`RESAMPLES`] times (fixed seed), the relative change of the two
/// resampled medians taken each time, and the central [`CONFIDENCE`] of
/// those changes kept (percentile interval). Medians, not means, because a
/// shared machine's slow spells are outliers that should not move the
/// answer. `None` when either side is empty.
pub fn median_change(baseline: &[f64], new: &[f64]) -> Option<MedianChange> {
    use rand::{RngExt as _, SeedableRng as _};
    if baseline.is_empty() || new.is_empty() {
        return None;
    }
    let (base_med, new_med) = (median(baseline), median(new));
    let rel = |b: f64, n: f64| 100.0 * (n - b) / b;
    let ci_pct = (baseline.len() >= 2 && new.len() >= 2).then(|| {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(BOOTSTRAP_SEED);
        let mut resample = |xs: &[f64], buf: &mut Vec<f64>| {
            buf.clear();
            buf.extend((0..xs.len()).map(|_| xs[rng.random_range(0..xs.len())]));
            median(buf)
        };
        let (mut bb, mut nb) = (Vec::new(), Vec::new());
        let mut changes: Vec<f64> = (0..RESAMPLES)
            .map(|_| {
                let b = resample(baseline, &mut bb);
                let n = resample(new, &mut nb);
                rel(b, n)
            })
            .collect();
        changes.sort_by(f64::total_cmp);
        let tail = (1.0 - CONFIDENCE) / 2.0;
        let at = |q: f64| changes[((q * RESAMPLES as f64) as usize).min(RESAMPLES - 1)];
        (at(tail), at(1.0 - tail))
    });
    Some(MedianChange {
        baseline_median: base_med,
        median: new_med,
        change_pct: rel(base_med, new_med),
        ci_pct,
    })
}

impl MedianChange {
    /// Improved or regressed when the median moved by more than
    /// `noise_pct` percent and the interval lies wholly on that side of
    /// zero; otherwise no change.
    pub fn verdict(&self, noise_pct: f64) -> ChangeVerdict {
        match self.ci_pct {
            None => ChangeVerdict::Inconclusive,
            Some((lo, _)) if lo > 0.0 && self.change_pct > noise_pct => ChangeVerdict::Regressed,
            Some((_, hi)) if hi < 0.0 && self.change_pct < -noise_pct => ChangeVerdict::Improved,
            Some(_) => ChangeVerdict::NoChange,
        }
    }

    /// Whether the median regressed by more than `pct` percent with an
    /// interval that excludes zero (`--fail-on-regression`).
    pub fn regressed_beyond(&self, pct: f64) -> bool {
        self.change_pct > pct && self.ci_pct.is_some_and(|(lo, _)| lo > 0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_statistics() {
        let s = Stats::of(&[3.0, 1.0, 2.0, 4.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.mean), (2.5, 1.0, 4.0, 2.5));
        assert!((s.stddev - 1.290_994).abs() < 1e-5);
        assert!(s.outliers.is_empty());
        assert!(Stats::of(&[]).is_none());
        assert_eq!(Stats::of(&[5.0]).unwrap().stddev, 0.0);
    }

    #[test]
    fn flags_outliers() {
        let s = Stats::of(&[1.0, 1.1, 0.9, 1.05, 0.95, 9.0]).unwrap();
        assert_eq!(s.outliers, vec![5]);
    }

    #[test]
    fn speedup_with_uncertainty() {
        let slow = Stats::of(&[10.0, 10.0]).unwrap();
        let fast = Stats::of(&[1.0, 3.0]).unwrap();
        let s = speedup(&slow, &fast);
        assert_eq!(s.ratio, 5.0);
        assert_eq!(s.mean_ratio, 5.0);
        // MAD 1 around a median of 2: a robust σ of 1.4826, 74 % of it.
        assert!((s.error - 5.0 * 1.4826 / 2.0).abs() < 1e-9);
        assert!((s.mean_error - 5.0 * (2f64.sqrt() / 2.0)).abs() < 1e-9);
        assert_eq!(
            s.sentence("async", "sync", 1),
            "async ran 5.0 ± 3.7 times faster than sync"
        );
        let back = speedup(&fast, &slow);
        assert_eq!(
            back.sentence("sync", "async", 1),
            "sync ran 5.0 ± 3.7 times slower than async"
        );
        // The chart's label reads the same way, never "0.2× faster".
        assert_eq!(s.short(1), "5.0 ± 3.7× faster");
        assert_eq!(back.short(1), "5.0 ± 3.7× slower");
    }

    /// One slow run moves the mean, not the median: the model whose median
    /// (its bar) is faster is not called slower (a new user's `local` run
    /// had "threads ran 1.00 ± 0.14 times slower than sync" beside a
    /// shorter bar).
    #[test]
    fn one_outlying_run_does_not_turn_a_faster_median_into_slower() {
        let sync = Stats::of(&[0.300, 0.301, 0.299, 0.302, 0.300]).unwrap();
        let threads = Stats::of(&[0.400, 0.280, 0.279, 0.281, 0.280]).unwrap();
        assert!(
            threads.mean > sync.mean,
            "the mean alone would rank threads slower"
        );
        let x = speedup(&sync, &threads);
        assert!(x.ratio > 1.07 && x.ratio < 1.08, "{x:?}");
        assert_eq!(
            x.sentence("threads", "sync", 2),
            "threads ran 1.07 ± 0.01 times faster than sync"
        );
        // Most runs alike: a spread of 0 is still a spread, shown.
        let same = Stats::of(&[1.0, 1.0, 1.0, 2.0]).unwrap();
        assert_eq!(speedup(&same, &same).text(1), "1.0 ± 0.0");
    }

    #[test]
    fn a_single_run_has_no_error() {
        let one = Stats::of(&[10.0]).unwrap();
        let many = Stats::of(&[1.0, 3.0]).unwrap();
        for x in [speedup(&one, &many), speedup(&many, &one)] {
            assert_eq!(x.error, 0.0);
            assert!(!x.text(1).contains('±'), "{}", x.text(1));
        }
        assert_eq!(speedup(&one, &Stats::of(&[2.0]).unwrap()).text(1), "5.0");
    }

    /// Run-to-run noise of a shared machine: a few percent either way.
    const BASE: [f64; 8] = [1.00, 1.03, 0.98, 1.01, 0.97, 1.02, 0.99, 1.04];

    #[test]
    fn a_known_shift_is_detected_with_an_interval_around_it() {
        let slower: Vec<f64> = BASE.iter().map(|x| x * 1.20).collect();
        let c = median_change(&BASE, &slower).unwrap();
        assert!((c.change_pct - 20.0).abs() < 1e-9, "{c:?}");
        let (lo, hi) = c.ci_pct.unwrap();
        assert!(lo > 10.0 && lo < 20.0 && hi > 20.0 && hi < 30.0, "{c:?}");
        assert_eq!(c.verdict(5.0), ChangeVerdict::Regressed);
        assert!(c.regressed_beyond(10.0));
        assert!(!c.regressed_beyond(25.0));

        let faster: Vec<f64> = BASE.iter().map(|x| x * 0.8).collect();
        let c = median_change(&BASE, &faster).unwrap();
        assert_eq!(c.verdict(5.0), ChangeVerdict::Improved);
        assert!(!c.regressed_beyond(0.0));
    }

    #[test]
    fn identical_samples_give_no_change() {
        let c = median_change(&BASE, &BASE).unwrap();
        assert_eq!(c.change_pct, 0.0);
        let (lo, hi) = c.ci_pct.unwrap();
        assert!(lo < 0.0 && hi > 0.0, "{c:?}");
        assert_eq!(c.verdict(5.0), ChangeVerdict::NoChange);
        assert!(!c.regressed_beyond(0.0));
        let flat = median_change(&[2.0, 2.0, 2.0], &[2.0, 2.0]).unwrap();
        assert_eq!(flat.verdict(0.0), ChangeVerdict::NoChange);
    }

    #[test]
    fn a_shift_inside_the_noise_or_the_spread_is_no_change() {
        // 3 % slower, on samples tight enough that the interval excludes
        // zero: real, but under a 5 % threshold.
        let tight: Vec<f64> = BASE.iter().map(|x| 1.0 + (x - 1.0) / 10.0).collect();
        let slightly: Vec<f64> = tight.iter().map(|x| x * 1.03).collect();
        let c = median_change(&tight, &slightly).unwrap();
        assert!(c.ci_pct.unwrap().0 > 0.0, "{c:?}");
        assert_eq!(c.verdict(5.0), ChangeVerdict::NoChange);
        assert_eq!(c.verdict(2.0), ChangeVerdict::Regressed);
        // 10 % slower in the median, but samples that overlap it widely.
        let wide = [0.6, 1.4, 1.1, 0.7, 1.5, 1.1];
        let c = median_change(&BASE, &wide).unwrap();
        assert!(c.change_pct > 5.0 && c.ci_pct.unwrap().0 < 0.0, "{c:?}");
        assert_eq!(c.verdict(5.0), ChangeVerdict::NoChange);
    }

    #[test]
    fn the_interval_is_reproducible_and_needs_two_runs_a_side() {
        let other: Vec<f64> = BASE.iter().map(|x| x * 1.1).collect();
        assert_eq!(median_change(&BASE, &other), median_change(&BASE, &other));
        let one = median_change(&[1.0], &BASE).unwrap();
        assert_eq!(one.ci_pct, None);
        assert_eq!(one.verdict(5.0), ChangeVerdict::Inconclusive);
        assert!(median_change(&[], &BASE).is_none());
    }
}

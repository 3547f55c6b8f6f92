//! Statistics over measured runs, kept apart from presentation (as in
//! hyperfine): medians, spread, outliers and speed relative to a reference.

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
            outliers,
        })
    }
}

/// How many times faster `model` is than `reference` (mean over mean), with
/// its uncertainty propagated from both standard deviations, as hyperfine
/// reports relative speed. Also the ratio of medians, which the charts use.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Speedup {
    pub ratio: f64,
    pub error: f64,
    pub median_ratio: f64,
}

pub fn speedup(reference: &Stats, model: &Stats) -> Speedup {
    let ratio = reference.mean / model.mean;
    let rel = |s: &Stats| if s.mean > 0.0 { s.stddev / s.mean } else { 0.0 };
    let error = ratio * (rel(reference).powi(2) + rel(model).powi(2)).sqrt();
    Speedup {
        ratio,
        error,
        median_ratio: reference.median / model.median,
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
        assert_eq!(s.median_ratio, 5.0);
        assert!((s.error - 5.0 * (2f64.sqrt() / 2.0)).abs() < 1e-9);
    }
}

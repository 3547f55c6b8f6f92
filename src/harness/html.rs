//! `report.html`: one self-contained page per comparison, rendered from
//! the [`Comparison`] that `comparison.json` holds: the verdict, tables,
//! inline SVG charts (hand-written: no fonts to embed, text stays text),
//! the baseline comparison, every run and the environment. No scripts, no
//! external CSS, fonts or images; responsive down to a phone's width, with
//! wide tables scrolling sideways inside their box.

use std::fmt::Write as _;

use super::baseline::change_text;
use super::json::{BaselineReport, Comparison, ModelStats};
use super::stats::{ChangeVerdict, Speedup};
use crate::models::Model;

/// Escapes text for HTML and SVG (content and attribute values).
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Seconds with about three significant digits.
fn secs(s: f64) -> String {
    if !s.is_finite() {
        "–".into()
    } else if s >= 100.0 {
        format!("{s:.0} s")
    } else if s >= 10.0 {
        format!("{s:.1} s")
    } else if s >= 1.0 {
        format!("{s:.2} s")
    } else {
        format!("{s:.3} s")
    }
}

/// The charts' colour for a label (`model+write` takes the model's), the
/// same as the PNG charts'.
fn color(label: &str) -> String {
    let (c, _) = super::charts::series_styles(&[label.to_string()])[0];
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

const CSS: &str = r#"
:root{color-scheme:light}
*{box-sizing:border-box}
body{margin:0;background:#f5f6f8;color:#1d2330;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1200px;margin:0 auto;padding:16px}
header h1{font-size:1.45rem;margin:.2em 0}
header p{margin:.2em 0;color:#4a5262}
section{background:#fff;border:1px solid #dfe3ea;border-radius:8px;padding:12px 16px;margin:14px 0}
h2{font-size:1.12rem;margin:.1em 0 .6em}
.verdict{font-size:1.3rem;font-weight:650;margin:12px 0;padding:12px 16px;background:#e9f6ea;border-left:5px solid #2ca02c;border-radius:6px}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch;max-width:100%}
table{border-collapse:collapse;font-size:.88rem;font-variant-numeric:tabular-nums}
th,td{padding:5px 9px;border-bottom:1px solid #eceef2;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}
thead th{background:#f0f2f6;font-weight:600}
td.text{text-align:left;white-space:normal;min-width:16em}
tr.ceiling td{color:#5a6270;font-style:italic}
.swatch{display:inline-block;width:.8em;height:.8em;border-radius:2px;margin-right:.4em;vertical-align:-.05em}
.chart svg{display:block;width:100%;max-width:620px;height:auto}
.pair{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,360px),1fr));gap:0 14px}
.note{color:#5a6270;font-size:.85rem;margin:.5em 0 0}
.improved{color:#1b7a1b;font-weight:600}.regressed{color:#c0262d;font-weight:600}
.warn{color:#8a5a00}
footer{color:#6a7282;font-size:.8rem;margin:20px 0}
@media (max-width:600px){main{padding:8px}section{padding:10px}.verdict{font-size:1.08rem}header h1{font-size:1.2rem}}
"#;

/// The whole page.
pub fn render(c: &Comparison) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>bucketbench compare — {}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n<header><h1>bucketbench compare</h1><p>{}</p></header>\n",
        esc(&c.title),
        esc(&c.title)
    );
    match &c.verdict {
        Some(v) => {
            // A tie is the headline: one name in large type would say more
            // than the runs do.
            let headline = match &v.tied_with {
                Some(other) => format!("{} and {other} tie for fastest: {}", v.fastest, v.text),
                None => v.text.clone(),
            };
            let _ = writeln!(
                h,
                "<p class=\"verdict\" id=\"verdict\">{}</p>",
                esc(&headline)
            );
            if let Some(tie) = &v.within_noise {
                let _ = writeln!(h, "<p class=\"note\" id=\"tie\">{}.</p>", esc(tie));
            }
        }
        None => {
            let contenders = c.models.iter().filter(|m| !m.is_ceiling).count();
            let _ = writeln!(
                h,
                "<p class=\"verdict\" id=\"verdict\">{}</p>",
                if contenders == 0 {
                    "No model has a verified run: nothing to compare (see the runs below)."
                } else {
                    "One model: nothing to compare it with."
                }
            );
        }
    }
    if !c.why.is_empty() {
        let items: String = c
            .why
            .iter()
            .map(|l| format!("<li>{}</li>", esc(l)))
            .collect();
        let _ = writeln!(h, "<ul class=\"note\" id=\"why\">{items}</ul>");
    }
    if let Some(b) = &c.baseline {
        let _ = writeln!(h, "<p>{}</p>", baseline_summary_line(b));
    }
    h.push_str(&build_line(c.environment.as_ref()));
    // The two charts side by side where there is room.
    h.push_str("<div class=\"pair\">\n");
    section(
        &mut h,
        "times",
        "Wall time per model",
        &time_chart(c),
        &format!(
            "Bars: median; whiskers: min–max; dots: each measured run.{}",
            if c.models.iter().any(|m| m.is_ceiling) {
                format!(
                    " Ceilings ({}, {}) are pale: limits, not contenders.",
                    Model::FetchOnly,
                    Model::LoadOnly
                )
            } else {
                String::new()
            }
        ),
    );
    if let Some(small) = zoomed(c) {
        section(
            &mut h,
            "times-zoomed",
            "Wall time of the faster models",
            &time_chart_of(c, &small, "times-zoomed"),
            "The same, on an axis of their own: beside the slowest they would be slivers.",
        );
    }
    if c.models
        .iter()
        .any(|m| m.model != c.reference && m.speedup.is_some())
    {
        section(
            &mut h,
            "speedup",
            &format!("How many times faster than {}", esc(&c.reference)),
            &speedup_chart(c),
            "Reference median over each model's median, ± the error propagated from both robust standard deviations (1.4826 × the median absolute deviation; no ± from a single run). The same ratio as the terminal, summary.md and the charts, and what models are ranked by; comparison.json and summary.csv also keep the ratio of means, as hyperfine reports it.",
        );
    }
    h.push_str("</div>\n");
    let causes: String = c
        .models
        .iter()
        .flat_map(|m| m.outlier_causes.iter().map(move |cause| (&m.model, cause)))
        .map(|(model, cause)| {
            format!(
                "<p class=\"note\">Outliers of {}: {}.</p>",
                esc(model),
                esc(cause)
            )
        })
        .collect();
    section(
        &mut h,
        "summary",
        "Summary",
        &format!("{}{causes}", summary_table(c)),
        "Statistics over the verified measured runs (warm-ups and runs that failed verification excluded). Outliers: modified z-score above 3.5.",
    );
    if let Some(t) = ceiling_table(c) {
        section(
            &mut h,
            "ceiling",
            "Ceilings and efficiency",
            &t,
            &format!(
                "Efficiency: the model's limit over its median; the limit is the largest of its network bound (the analytic time for the listing and the GETs at this model's requests in flight), its CPU floor (all the CPU the pass spent, client, database and bucket, spread over the cores) and its arrival floor (when its first object's body came in, plus the CPU spent after it over the cores: nothing is parsed or written before it), and binds says which. All hold on any machine; × ceiling compares with the measured ceiling (the larger of {} and {}). At its limit: how many times faster than {}'s median the model would be at its limit, the most it could show here.",
                Model::FetchOnly,
                Model::LoadOnly,
                esc(&c.reference)
            ),
        );
    }
    section(
        &mut h,
        "cpu",
        "Where the CPU went",
        &cpu_table(c),
        "Medians over the verified measured runs. Client: the worker processes. DB: the PostgreSQL server (postmaster and every process under it) while the workers ran, before verification. Bucket: the simulated bucket's threads. n/m: not measured (a server not on this machine, a real bucket). CPU floor: their sum over the cores, the least wall time the pass could take on this machine.",
    );
    if let Some(t) = first_byte_table(c) {
        section(
            &mut h,
            "first-byte",
            "First-byte delays the bucket applied",
            &t,
            "Per request, the first-byte latency the simulated bucket drew and waited before answering (ms); per new connection, the set-up round trips (TCP and TLS handshakes) it charged to the first response, apart. Each figure is the median over the verified measured runs of that run's own percentile (first_byte.csv has every run; first_byte.png, drawn when some delay was above 0, draws these lines).",
        );
    }
    if let Some(b) = &c.baseline {
        let body = format!("{}{}", baseline_chart(b), baseline_table(b));
        section(
            &mut h,
            "baseline",
            &format!("Against baseline {}", esc(&b.name)),
            &body,
            &format!(
                "Change in median from the baseline (saved {} at revision {}), with its {:.0} % bootstrap interval ({} resamples, fixed seed). Shaded: the ±{} % noise threshold; a change counts only beyond it with an interval that excludes zero.{}",
                esc(b.saved_at.get(..19).unwrap_or(&b.saved_at)),
                esc(&b.git_revision),
                100.0 * b.confidence,
                b.resamples,
                b.noise_threshold_pct,
                b.warnings
                    .iter()
                    .map(|w| format!(" <span class=\"warn\">Warning: {}.</span>", esc(w)))
                    .collect::<String>()
            ),
        );
    }
    section(
        &mut h,
        "runs",
        "Every run",
        &runs_table(c),
        "Warm-up runs (marked warm-up) are not in the statistics.",
    );
    if let Some(env) = &c.environment {
        section(
            &mut h,
            "environment",
            "Environment",
            &env_table(env),
            "The machine and settings this was measured with (environment.json).",
        );
    }
    let _ = write!(
        h,
        "<footer>Written by {} (comparison.json schema version {}). The same data is in comparison.json, runs.csv and summary.csv beside this file.</footer>\n</main>\n</body>\n</html>\n",
        esc(&c.generator),
        c.schema_version
    );
    h
}

fn section(h: &mut String, id: &str, title: &str, body: &str, note: &str) {
    let _ = write!(
        h,
        "<section id=\"{id}\">\n<h2>{title}</h2>\n{body}\n<p class=\"note\">{note}</p>\n</section>\n"
    );
}

fn baseline_summary_line(b: &BaselineReport) -> String {
    let count = |v: ChangeVerdict| b.models.iter().filter(|m| m.verdict == v).count();
    format!(
        "Against baseline <a href=\"#baseline\">{}</a>: <span class=\"improved\">{} improved</span>, <span class=\"regressed\">{} regressed</span>, {} no change{}.",
        esc(&b.name),
        count(ChangeVerdict::Improved),
        count(ChangeVerdict::Regressed),
        count(ChangeVerdict::NoChange),
        match count(ChangeVerdict::Inconclusive) {
            0 => String::new(),
            n => format!(", {n} inconclusive"),
        }
    )
}

/// One row of a horizontal bar chart.
struct Bar {
    label: String,
    color: String,
    /// Paler: a ceiling, or a change within the noise.
    pale: bool,
    value: f64,
    whisker: Option<(f64, f64)>,
    dots: Vec<f64>,
    text: String,
}

/// Ticks at 1-2-5 steps covering `lo..=hi`, about five of them.
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = (hi - lo).max(1e-12);
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= 6.0)
        .unwrap_or(10.0 * mag);
    let mut t = (lo / step).floor() * step;
    let mut out = Vec::new();
    // Up to the first tick at or past `hi`, so the axis ends on a tick.
    loop {
        out.push(if t.abs() < step * 1e-9 { 0.0 } else { t });
        if t >= hi - step * 1e-9 {
            return out;
        }
        t += step;
    }
}

fn tick_text(v: f64, unit: &str) -> String {
    let s = if v.fract() == 0.0 || v.abs() >= 10.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    format!("{s}{unit}")
}

/// A horizontal bar chart as inline SVG: one row per bar, a value axis
/// from `0` (or below, for negative values), an optional shaded `band`.
fn bar_chart(name: &str, bars: &[Bar], unit: &str, axis: &str, band: Option<(f64, f64)>) -> String {
    // Each row's label and value text stack in the left column, so the
    // chart needs no column on the right and stays legible scaled down to
    // a phone's width.
    const PLOT: f64 = 290.0;
    const RIGHT: f64 = 16.0;
    const ROW: f64 = 44.0;
    const TOP: f64 = 10.0;
    let longest = bars
        .iter()
        .map(|b| b.label.chars().count().max(b.text.chars().count()))
        .max()
        .unwrap_or(0);
    let left = (8.4 * longest as f64 + 14.0).max(120.0);
    let w = left + PLOT + RIGHT;
    let plot_w = PLOT;
    let height = TOP + ROW * bars.len() as f64 + 44.0;
    let mut lo = 0f64;
    let mut hi = 0f64;
    for b in bars {
        for v in [b.value]
            .into_iter()
            .chain(b.whisker.into_iter().flat_map(|(a, z)| [a, z]))
            .chain(b.dots.iter().copied())
            .chain(band.into_iter().flat_map(|(a, z)| [a, z]))
            .filter(|v| v.is_finite())
        {
            lo = lo.min(v);
            hi = hi.max(v);
        }
    }
    if hi - lo < 1e-12 {
        hi = lo + 1.0;
    }
    let ts = ticks(lo, hi);
    let (lo, hi) = (
        ts.first().copied().unwrap_or(lo).min(lo),
        ts.last().copied().unwrap_or(hi).max(hi),
    );
    let x = |v: f64| left + plot_w * (v - lo) / (hi - lo);
    let mut s = format!(
        "<div class=\"chart\"><svg xmlns=\"http://www.w3.org/2000/svg\" id=\"chart-{name}\" viewBox=\"0 0 {w:.0} {height}\" role=\"img\" aria-label=\"{}\" font-family=\"system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif\" font-size=\"13\">\n",
        esc(axis)
    );
    let bottom = TOP + ROW * bars.len() as f64;
    if let Some((a, z)) = band {
        let _ = writeln!(
            s,
            "<rect x=\"{:.1}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#eef0f4\"/>",
            x(a),
            x(z) - x(a),
            bottom - TOP
        );
    }
    for t in &ts {
        let _ = writeln!(
            s,
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{TOP}\" y2=\"{bottom:.1}\" stroke=\"{1}\" stroke-width=\"1\"/><text x=\"{0:.1}\" y=\"{2:.1}\" text-anchor=\"middle\" fill=\"#4a5262\">{3}</text>",
            x(*t),
            if *t == 0.0 { "#8a92a0" } else { "#e3e6ec" },
            bottom + 16.0,
            esc(&tick_text(*t, unit))
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#4a5262\">{}</text>",
        left + plot_w / 2.0,
        bottom + 36.0,
        esc(axis)
    );
    for (i, b) in bars.iter().enumerate() {
        let y = TOP + ROW * i as f64;
        let mid = y + ROW / 2.0;
        let (x0, x1) = (
            x(0f64.max(lo)).min(x(b.value)),
            x(0f64.max(lo)).max(x(b.value)),
        );
        let _ = writeln!(
            s,
            "<text x=\"{0:.1}\" y=\"{1:.1}\" text-anchor=\"end\" fill=\"#1d2330\" font-size=\"15\">{2}</text><text x=\"{0:.1}\" y=\"{3:.1}\" text-anchor=\"end\" fill=\"#4a5262\">{4}</text>",
            left - 10.0,
            mid - 3.0,
            esc(&b.label),
            mid + 13.0,
            esc(&b.text)
        );
        let _ = writeln!(
            s,
            "<rect x=\"{x0:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" rx=\"2\" fill=\"{}\" fill-opacity=\"{}\"><title>{}: {}</title></rect>",
            y + 10.0,
            (x1 - x0).max(1.0),
            ROW - 20.0,
            b.color,
            if b.pale { 0.35 } else { 0.85 },
            esc(&b.label),
            esc(&b.text)
        );
        if let Some((a, z)) = b.whisker.filter(|(a, z)| a.is_finite() && z.is_finite()) {
            let _ = writeln!(
                s,
                "<path d=\"M{0:.1} {2:.1}H{1:.1}M{0:.1} {3:.1}V{4:.1}M{1:.1} {3:.1}V{4:.1}\" stroke=\"#1d2330\" stroke-width=\"1.4\" fill=\"none\"/>",
                x(a),
                x(z),
                mid,
                mid - 6.0,
                mid + 6.0
            );
        }
        for d in &b.dots {
            let _ = writeln!(
                s,
                "<circle cx=\"{:.1}\" cy=\"{mid:.1}\" r=\"2.6\" fill=\"#fff\" stroke=\"#1d2330\" stroke-width=\"1\"/>",
                x(*d)
            );
        }
    }
    s.push_str("</svg></div>");
    s
}

fn measured_times<'a>(c: &'a Comparison, m: &'a ModelStats) -> impl Iterator<Item = f64> + 'a {
    let matrix = crate::harness::unique(c.runs.iter().map(|r| r.write.as_str())).len() > 1;
    c.runs
        .iter()
        .filter(move |r| {
            r.run > 0
                && r.verified
                && if matrix {
                    format!("{}+{}", r.model, r.write) == m.model
                } else {
                    r.model == m.model
                }
        })
        .map(|r| r.wall_secs)
}

/// The models whose median is an eighth of the slowest's or less, when
/// some are not: beside a bar that long they are slivers, so they get a
/// chart of their own (as `median_time.png` zooms on them).
fn zoomed(c: &Comparison) -> Option<Vec<&ModelStats>> {
    let tallest = c.models.iter().map(|m| m.median_secs).fold(0.0, f64::max);
    let small: Vec<&ModelStats> = c
        .models
        .iter()
        .filter(|m| m.median_secs <= tallest / 8.0)
        .collect();
    // As median_time.png: only when a model proper is a sliver; a ceiling
    // alone (load-only, the writes) is no reason to zoom.
    (small.iter().any(|m| !m.is_ceiling) && small.len() < c.models.len()).then_some(small)
}

fn time_chart(c: &Comparison) -> String {
    time_chart_of(c, &c.models.iter().collect::<Vec<_>>(), "times")
}

fn time_chart_of(c: &Comparison, models: &[&ModelStats], name: &str) -> String {
    let bars: Vec<Bar> = models
        .iter()
        .map(|m| Bar {
            label: m.model.clone(),
            color: color(&m.model),
            pale: m.is_ceiling,
            value: m.median_secs,
            whisker: Some((m.min_secs, m.max_secs)),
            dots: measured_times(c, m).collect(),
            text: format!("{} median", secs(m.median_secs)),
        })
        .collect();
    bar_chart(name, &bars, " s", "wall time, seconds", None)
}

fn speedup_chart(c: &Comparison) -> String {
    let bars: Vec<Bar> = c
        .models
        .iter()
        .filter(|m| !m.is_ceiling)
        .filter_map(|m| {
            let x = m.speedup?;
            Some(Bar {
                label: m.model.clone(),
                color: color(&m.model),
                pale: m.is_ceiling,
                value: x.ratio_of_medians,
                whisker: Some((
                    x.ratio_of_medians - x.ratio_of_medians_error,
                    x.ratio_of_medians + x.ratio_of_medians_error,
                )),
                dots: Vec::new(),
                text: format!("{}×", Speedup::from(x).text(2)),
            })
        })
        .collect();
    bar_chart(
        "speedup",
        &bars,
        "×",
        &format!("times faster than {}", c.reference),
        None,
    )
}

fn baseline_chart(b: &BaselineReport) -> String {
    let bars: Vec<Bar> = b
        .models
        .iter()
        .map(|m| Bar {
            label: m.model.clone(),
            color: match m.verdict {
                ChangeVerdict::Improved => "#2ca02c".into(),
                ChangeVerdict::Regressed => "#d62728".into(),
                _ => "#7f8796".into(),
            },
            pale: !matches!(
                m.verdict,
                ChangeVerdict::Improved | ChangeVerdict::Regressed
            ),
            value: m.change_pct,
            whisker: m.ci_low_pct.zip(m.ci_high_pct),
            dots: Vec::new(),
            text: format!("{:+.1} % {}", m.change_pct, m.verdict.as_str()),
        })
        .collect();
    bar_chart(
        "baseline",
        &bars,
        " %",
        "change in median, percent (negative is faster)",
        Some((-b.noise_threshold_pct, b.noise_threshold_pct)),
    )
}

fn table(head: &[&str], rows: impl IntoIterator<Item = String>) -> String {
    let mut s = String::from("<div class=\"scroll\"><table>\n<thead><tr>");
    for h in head {
        let _ = write!(s, "<th>{h}</th>");
    }
    s.push_str("</tr></thead>\n<tbody>\n");
    for r in rows {
        s.push_str(&r);
        s.push('\n');
    }
    s.push_str("</tbody></table></div>");
    s
}

fn swatch(label: &str) -> String {
    format!(
        "<span class=\"swatch\" style=\"background:{}\"></span>{}",
        color(label),
        esc(label)
    )
}

fn summary_table(c: &Comparison) -> String {
    let rows = c.models.iter().map(|m| {
        // Ceilings are limits, not contenders: no ratio.
        let ratio = match m.speedup {
            Some(x) if !m.is_ceiling => format!("{}×", Speedup::from(x).text(2)),
            _ => "–".into(),
        };
        format!(
            "<tr{}><td>{}</td><td>{}{}</td><td>{}</td><td>{} ± {}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.0}</td><td>{}</td><td>{:.0} MB</td></tr>",
            if m.is_ceiling { " class=\"ceiling\"" } else { "" },
            swatch(&m.model),
            m.runs,
            crate::harness::summary::runs_note(m.outlier_runs.len(), m.failed_runs),
            secs(m.median_secs),
            secs(m.mean_secs),
            secs(m.stddev_secs),
            secs(m.min_secs),
            secs(m.max_secs),
            ratio,
            m.rows_per_sec,
            secs(m.median_cpu_secs),
            m.max_peak_rss_mb
        )
    });
    table(
        &[
            "model",
            "runs",
            "median",
            "mean ± σ",
            "min",
            "max",
            &format!("vs {}", esc(&c.reference)),
            "rows/s",
            "CPU",
            "peak RSS",
        ],
        rows,
    )
}

fn cpu_table(c: &Comparison) -> String {
    let measured = |v: Option<f64>| v.map(secs).unwrap_or_else(|| "n/m".into());
    let per_row = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "–".into());
    let rows = c.models.iter().map(|m| {
        format!(
            "<tr{}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if m.is_ceiling { " class=\"ceiling\"" } else { "" },
            swatch(&m.model),
            secs(m.median_secs),
            secs(m.median_cpu_secs),
            measured(m.median_db_cpu_secs),
            measured(m.median_bucket_cpu_secs),
            measured(m.cpu_floor_secs),
            per_row(m.client_us_per_row),
            per_row(m.db_us_per_row),
        )
    });
    table(
        &[
            "model",
            "median",
            "client CPU",
            "DB CPU",
            "bucket CPU",
            "CPU floor",
            "client µs/row",
            "DB µs/row",
        ],
        rows,
    )
}

/// Each model's first-byte percentiles and set-up round trips; `None`
/// when no model has them (a real bucket).
fn first_byte_table(c: &Comparison) -> Option<String> {
    if c.models.iter().all(|m| m.median_first_byte.is_none()) {
        return None;
    }
    let ms = |v: f64| format!("{v:.1}");
    let rows = c.models.iter().filter_map(|m| {
        let f = m.median_first_byte?;
        let (setups, each) = match m.median_setup {
            Some(s) if s.count > 0 => (s.count.to_string(), ms(s.p50_ms)),
            Some(_) => ("0".into(), "–".into()),
            None => ("–".into(), "–".into()),
        };
        let p = f.resolved().map(crate::harness::firstbyte::cell);
        Some(format!(
            "<tr{}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if m.is_ceiling { " class=\"ceiling\"" } else { "" },
            swatch(&m.model),
            f.count,
            ms(f.mean_ms),
            p[0],
            p[1],
            p[2],
            p[3],
            p[4],
            setups,
            each,
        ))
    });
    Some(table(
        &[
            "model",
            "requests",
            "mean ms",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms",
            "set-ups",
            "set-up ms",
        ],
        rows,
    ))
}

fn ceiling_table(c: &Comparison) -> Option<String> {
    let ceiling = c.ceiling;
    if ceiling.is_none() && c.models.iter().all(|m| m.limit_secs.is_none()) {
        return None;
    }
    let mut s = String::new();
    if let Some(cl) = ceiling {
        let _ = write!(
            s,
            "<p>Ceiling: <b>{}</b> ({} {}: the network and parsing alone; {} {}: the writes alone).</p>",
            secs(cl.secs),
            Model::FetchOnly,
            secs(cl.fetch_only_secs),
            Model::LoadOnly,
            secs(cl.load_only_secs)
        );
    }
    // The reference's median over each model's limit (see
    // `ModelSummary::at_limit_vs`): the most the model could show here.
    let reference = c
        .models
        .iter()
        .find(|m| m.model == c.reference)
        .map(|r| r.median_secs);
    let rows = c.models.iter().map(|m| {
        format!(
            "<tr{}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if m.is_ceiling {
                " class=\"ceiling\""
            } else {
                ""
            },
            swatch(&m.model),
            secs(m.median_secs),
            m.bound_secs.map(secs).unwrap_or_else(|| "–".into()),
            m.x_bound
                .map(|x| format!("{x:.2}×"))
                .unwrap_or_else(|| "–".into()),
            m.cpu_floor_secs.map(secs).unwrap_or_else(|| "–".into()),
            m.arrival_floor_secs.map(secs).unwrap_or_else(|| "–".into()),
            m.binds.as_deref().map(esc).unwrap_or_else(|| "–".into()),
            ceiling
                .filter(|_| !m.is_ceiling)
                .map(|cl| format!("{:.2}×", m.median_secs / cl.secs))
                .unwrap_or_else(|| "–".into()),
            m.limit_efficiency
                .filter(|_| !m.is_ceiling)
                .map(|e| super::summary::percent(e, "¹"))
                .unwrap_or_else(|| "–".into()),
            reference
                .zip(m.limit_secs)
                .filter(|_| !m.is_ceiling)
                .map(|(r, l)| super::summary::times(r / l))
                .unwrap_or_else(|| "–".into()),
        )
    });
    s.push_str(&table(
        &[
            "model",
            "median",
            "network bound",
            "× bound",
            "CPU floor",
            "arrival floor",
            "binds",
            "× ceiling",
            "efficiency",
            "at its limit",
        ],
        rows,
    ));
    if c.models
        .iter()
        .any(|m| !m.is_ceiling && m.limit_efficiency.is_some_and(super::summary::beyond))
    {
        let _ = write!(
            s,
            "<p class=\"note\">¹ {}</p>",
            esc(super::summary::BEYOND_LIMIT)
        );
    }
    Some(s)
}

fn baseline_table(b: &BaselineReport) -> String {
    let rows = b.models.iter().map(|m| {
        let class = match m.verdict {
            ChangeVerdict::Improved => "improved",
            ChangeVerdict::Regressed => "regressed",
            _ => "",
        };
        format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{class}\">{}</td></tr>",
            swatch(&m.model),
            m.baseline_runs,
            secs(m.baseline_median_secs),
            m.runs,
            secs(m.median_secs),
            esc(&change_text(m)),
            m.verdict.as_str()
        )
    });
    let mut s = table(
        &[
            "model",
            "baseline runs",
            "baseline median",
            "runs",
            "median",
            "change [95 % interval]",
            "verdict",
        ],
        rows,
    );
    for (what, list) in [
        ("in the baseline only", &b.only_in_baseline),
        ("not in the baseline", &b.only_in_this_run),
    ] {
        if !list.is_empty() {
            let _ = write!(
                s,
                "<p class=\"note\">Not compared ({what}): {}.</p>",
                esc(&list.join(", "))
            );
        }
    }
    s
}

fn runs_table(c: &Comparison) -> String {
    let rows = c.runs.iter().map(|r| {
        format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.4}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.3}</td><td>{:.1}</td><td>{}</td><td class=\"text\">{}</td></tr>",
            swatch(&r.model),
            esc(&r.write),
            if r.run == 0 { "warm-up".to_string() } else { r.run.to_string() },
            r.wall_secs,
            r.files,
            r.rows,
            r.rejected,
            r.requests,
            r.retries,
            r.bytes as f64 / 1e6,
            r.cpu_secs,
            r.peak_rss_mb,
            if r.verified { "✓" } else { "✗ failed" },
            esc(&r.problems)
        )
    });
    table(
        &[
            "model",
            "write",
            "run",
            "wall s",
            "files",
            "rows",
            "rejected",
            "requests",
            "retries",
            "MB",
            "CPU s",
            "peak RSS MB",
            "verified",
            "problems",
        ],
        rows,
    )
}

/// `a.b.c` → value, depth first, for nested settings.
fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        serde_json::Value::Array(a) if a.iter().all(|x| !x.is_object() && !x.is_array()) => out
            .push((
                prefix.to_string(),
                a.iter()
                    .map(|x| {
                        x.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| x.to_string())
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            )),
        serde_json::Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// The measuring binary's build (`environment.json`'s `build`), in
/// warning colours when it was unoptimised; nothing for results written
/// before it was recorded.
fn build_line(env: Option<&serde_json::Value>) -> String {
    let busy = env
        .and_then(super::export::busy_warning_of)
        .map(|w| format!("<p class=\"warn\" id=\"busy\">{}</p>\n", esc(&w)))
        .unwrap_or_default();
    busy + &measured_with(env)
}

fn measured_with(env: Option<&serde_json::Value>) -> String {
    let Some(build) = env
        .and_then(|e| e.get("build"))
        .and_then(|b| serde_json::from_value::<super::binary::Build>(b.clone()).ok())
    else {
        return String::new();
    };
    match build.warning() {
        Some(w) => format!("<p class=\"warn\" id=\"build\">{}</p>\n", esc(&w)),
        None => format!(
            "<p id=\"build\">Measured with a {} build.</p>\n",
            esc(&build.describe())
        ),
    }
}

fn env_table(env: &serde_json::Value) -> String {
    let mut kv = Vec::new();
    flatten("", env, &mut kv);
    table(
        &["setting", "value"],
        kv.into_iter().map(|(k, v)| {
            format!(
                "<tr><td>{}</td><td class=\"text\">{}</td></tr>",
                esc(&k),
                esc(&v)
            )
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::runner::Run;
    use crate::models::Label;

    #[test]
    fn escapes_markup_and_picks_round_ticks() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(ticks(0.0, 6.8), vec![0.0, 2.0, 4.0, 6.0, 8.0]);
        assert_eq!(
            ticks(-12.0, 30.0),
            vec![-20.0, -10.0, 0.0, 10.0, 20.0, 30.0]
        );
    }

    fn run(model: Model, run: usize, wall_secs: f64) -> Run {
        Run::example(model, run, wall_secs)
    }

    #[test]
    fn the_summary_table_counts_outliers_in_words() {
        // One far-off run of sync among seven, two of async.
        let sync = [1.0, 1.01, 1.02, 1.0, 1.01, 1.02, 9.0];
        let fast = [0.5, 0.51, 0.5, 0.52, 0.5, 7.0, 8.0];
        let runs: Vec<Run> = sync
            .iter()
            .enumerate()
            .map(|(i, t)| run(Model::Sync, i + 1, *t))
            .chain(
                fast.iter()
                    .enumerate()
                    .map(|(i, t)| run(Model::Async, i + 1, *t)),
            )
            .collect();
        let labels = [
            Label::new(Model::Sync, crate::db::WriteStrategy::Copy, false),
            Label::new(Model::Async, crate::db::WriteStrategy::Copy, false),
        ];
        let summaries = crate::harness::summary::summarize(&runs, &labels, false, Some(labels[0]));
        assert_eq!(summaries[0].stats.outliers.len(), 1);
        assert_eq!(summaries[1].stats.outliers.len(), 2);
        let c = Comparison::build(&runs, &summaries, Some(labels[0]), "t", None);
        let table = summary_table(&c);
        assert!(table.contains("7 (1 outlier)"), "{table}");
        assert!(table.contains("7 (2 outliers)"), "{table}");
    }
}

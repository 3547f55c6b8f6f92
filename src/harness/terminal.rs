//! What `compare` prints when it is done, modelled on hyperfine and
//! criterion: an aligned table of the models, the ceilings in a table of
//! their own, then verdict lines (how much faster than the reference, which
//! model is closest to its floor, and what limits it). Plain text for a
//! terminal; `summary.md` keeps the Markdown tables.

use super::bound::Binds;
use super::stats::Speedup;
use super::summary::{self, ModelSummary};
use super::sweep::{self, Point};
use super::unique;
use crate::models::{Label, Model};
use crate::report::plural;

/// The widest a line may be.
pub const WIDTH: usize = 100;

/// The footnote markers: the models table's share of the ceiling, and the
/// CPU table's efficiency (two notes, two marks).
const ABOVE: &str = "¹";
const BEYOND: &str = "²";

/// The whole report: tables, notes and verdict lines.
pub fn render(summaries: &[ModelSummary], reference: Option<Label>) -> String {
    let mut out = models_table(summaries, reference);
    let ceilings = ceilings_table(summaries);
    if !ceilings.is_empty() {
        out.push('\n');
        out.push_str(&ceilings);
    }
    let verdicts = verdict_lines(summaries, reference);
    if !verdicts.is_empty() {
        out.push('\n');
        for v in verdicts {
            out.push_str(&wrap(&v));
        }
    }
    out
}

/// `text` broken between words into lines of at most [`WIDTH`] columns,
/// the continuation lines indented.
pub fn wrap(text: &str) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let len = line.chars().count();
        if len > 0 && len + 1 + word.chars().count() > WIDTH {
            out.push_str(&line);
            out.push('\n');
            line = format!("  {word}");
        } else {
            if len > 0 {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    out.push_str(&line);
    out.push('\n');
    out
}

/// A column: its header, whether it is right-aligned, and its cells.
struct Column {
    header: String,
    right: bool,
    cells: Vec<String>,
}

impl Column {
    fn new(header: impl Into<String>, right: bool) -> Self {
        Column {
            header: header.into(),
            right,
            cells: Vec::new(),
        }
    }

    fn width(&self) -> usize {
        self.cells
            .iter()
            .map(|c| c.chars().count())
            .chain([self.header.chars().count()])
            .max()
            .unwrap_or(0)
    }
}

/// Lays the columns out two spaces apart, headers first; drops the
/// columns named in `droppable` (in that order) while a line would be
/// wider than [`WIDTH`].
fn layout(mut columns: Vec<Column>, droppable: &[&str]) -> String {
    let total = |cs: &[Column]| cs.iter().map(Column::width).sum::<usize>() + 2 * (cs.len() - 1);
    for name in droppable {
        if total(&columns) <= WIDTH {
            break;
        }
        columns.retain(|c| c.header != *name);
    }
    let widths: Vec<usize> = columns.iter().map(Column::width).collect();
    let rows = columns.first().map_or(0, |c| c.cells.len());
    let line = |cell: &dyn Fn(&Column) -> &str| {
        let mut s = String::new();
        for (i, (c, w)) in columns.iter().zip(&widths).enumerate() {
            let text = cell(c);
            let pad = w - text.chars().count();
            if i > 0 {
                s.push_str("  ");
            }
            if c.right {
                s.push_str(&" ".repeat(pad));
                s.push_str(text);
            } else {
                s.push_str(text);
                // No trailing blanks after the last column.
                if i + 1 < columns.len() {
                    s.push_str(&" ".repeat(pad));
                }
            }
        }
        s.truncate(s.trim_end().len());
        s.push('\n');
        s
    };
    let mut s = line(&|c| &c.header);
    for r in 0..rows {
        s.push_str(&line(&|c| &c.cells[r]));
    }
    s
}

fn secs(x: f64) -> String {
    format!("{x:.2} s")
}

/// `mean ± σ`, or the mean alone from a single run.
fn mean_sd(s: &ModelSummary) -> String {
    if s.stats.runs < 2 {
        secs(s.stats.mean)
    } else {
        format!("{:.2} ± {:.2} s", s.stats.mean, s.stats.stddev)
    }
}

/// `mean ± σ`, or `mean` when no row has the two runs a spread needs.
fn mean_header(rows: &[&ModelSummary]) -> &'static str {
    if rows.iter().any(|s| s.stats.runs >= 2) {
        "mean ± σ"
    } else {
        "mean"
    }
}

/// Rows per second with thousands separated by a thin space.
fn rate(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut s = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            s.push(' ');
        }
        s.push(c);
    }
    s
}

/// Each model's efficiency against the ceiling (ceiling ÷ median), when
/// both ceilings ran.
fn efficiency(s: &ModelSummary, ceiling: Option<f64>) -> Option<f64> {
    ceiling.map(|c| c / s.stats.median)
}

/// The models proper, one row each.
fn models_table(summaries: &[ModelSummary], reference: Option<Label>) -> String {
    let models: Vec<&ModelSummary> = summary::models_only(summaries).collect();
    if models.is_empty() {
        return String::new();
    }
    let reference_name = reference.map(|r| r.to_string()).unwrap_or_default();
    let bounds = models.iter().any(|m| m.bound_secs.is_some());
    let ceiling = summary::ceiling(summaries).map(|c| c.0);
    let mut cols = vec![
        Column::new("model", false),
        Column::new("runs", true),
        Column::new("median", true),
        Column::new(mean_header(&models), true),
        Column::new("rows/s", true),
        Column::new(format!("vs {reference_name}"), true),
        Column::new("CPU", true),
        Column::new("RSS", true),
    ];
    if bounds {
        cols.push(Column::new("× bound", true));
    }
    if ceiling.is_some() {
        cols.push(Column::new("of ceiling", true));
    }
    let mut above = false;
    let mut outliers = Vec::new();
    for m in &models {
        let st = &m.stats;
        let mut row = vec![
            m.label.to_string(),
            st.runs.to_string(),
            secs(st.median),
            mean_sd(m),
            rate(m.rows_per_sec),
            match &m.speedup {
                Some(x) => format!("{}×", x.text(x.decimals())),
                None if Some(m.label) == reference => "1.0×".into(),
                None => "–".into(),
            },
            secs(m.median_cpu_secs),
            format!("{:.0} MB", m.max_peak_rss_mb),
        ];
        if bounds {
            row.push(
                m.bound_secs
                    .map(|b| format!("{:.2}×", st.median / b))
                    .unwrap_or_else(|| "–".into()),
            );
        }
        if let Some(e) = efficiency(m, ceiling) {
            above |= summary::beyond(e);
            row.push(summary::percent(e, ABOVE));
        }
        for (c, cell) in cols.iter_mut().zip(row) {
            c.cells.push(cell);
        }
        if !st.outliers.is_empty() {
            let n = st.outliers.len();
            outliers.push(format!(
                "{}: {} of its {} {} (modified z-score above 3.5){}",
                m.label,
                n,
                st.runs,
                if n == 1 {
                    "runs is an outlier"
                } else {
                    "runs are outliers"
                },
                summary::outlier_causes(m)
                    .iter()
                    .map(|c| format!("; {c}"))
                    .collect::<String>()
            ));
        }
        if m.failed_runs > 0 {
            outliers.push(format!(
                "{}: {} verification and {} left out",
                m.label,
                plural(m.failed_runs as u64, "run failed", "runs failed"),
                if m.failed_runs == 1 { "is" } else { "are" }
            ));
        }
    }
    let mut s = layout(cols, &["CPU", "RSS"]);
    for o in outliers {
        s.push_str(&wrap(&o));
    }
    if above {
        s.push_str(&wrap(&format!(
            "{ABOVE} above 100 %: faster than its ceiling, which a model cannot be: the ceiling's runs were noisy; read it as at the ceiling"
        )));
    }
    if bounds {
        s.push_str(&wrap(&format!(
            "× bound: the median over the network bound: {}",
            super::bound::EXPLAINED
        )));
    }
    s
}

/// What a ceiling measures.
fn meaning(model: Model) -> &'static str {
    match model {
        Model::FetchOnly => "the network and parsing alone",
        Model::LoadOnly => "the writes alone",
        _ => "",
    }
}

/// Where each label's CPU went (medians over its verified runs): the
/// worker's, the database server's and the simulated bucket's, their floor
/// over the cores, the arrival floor, and the limit that binds (the
/// largest of the network bound and the two floors) with the efficiency
/// against it. `n/m`: not
/// measured (a server elsewhere, a real bucket).
pub fn cpu_table(summaries: &[ModelSummary]) -> String {
    if summaries.is_empty() {
        return String::new();
    }
    let opt_secs = |v: Option<f64>| v.map_or_else(|| "n/m".to_string(), secs);
    let us = |v: Option<f64>| v.map_or_else(|| "–".to_string(), |v| format!("{v:.1}"));
    let mut cols = vec![
        Column::new("CPU", false),
        Column::new("client", true),
        Column::new("DB", true),
        Column::new("bucket", true),
        Column::new("CPU floor", true),
        Column::new("arrival floor", true),
        Column::new("client µs/row", true),
        Column::new("DB µs/row", true),
        Column::new("binds", false),
        Column::new("efficiency", true),
    ];
    let mut above = false;
    for m in summaries {
        let limit = m.limit().filter(|_| !m.label.model.is_ceiling());
        let eff = limit.map(|l| l.efficiency(m.stats.median));
        above |= eff.is_some_and(summary::beyond);
        let row = [
            m.label.to_string(),
            secs(m.median_cpu_secs),
            opt_secs(m.cpu.db_secs),
            opt_secs(m.cpu.bucket_secs),
            opt_secs(m.cpu.floor_secs),
            m.cpu
                .arrival_floor_secs
                .map_or_else(|| "–".to_string(), secs),
            us(m.cpu.client_us_per_row),
            us(m.cpu.db_us_per_row),
            limit.map_or_else(|| "–".to_string(), |l| l.binds.to_string()),
            eff.map_or_else(|| "–".to_string(), |e| summary::percent(e, BEYOND)),
        ];
        for (col, cell) in cols.iter_mut().zip(row) {
            col.cells.push(cell);
        }
    }
    let mut out = format!("\n{}", layout(cols, &["bucket", "client µs/row"]));
    out.push_str(&wrap(&format!(
        "CPU floor: client + DB + bucket CPU over {cores}, the least time the pass could take on this machine; arrival floor: when the first object's body came in, plus the CPU spent after it over {cores} (nothing is parsed or written before it); binds: the largest of those and the network bound; efficiency: that limit over the median.",
        cores = plural(super::cpu::cores() as u64, "core", "cores")
    )));
    if above {
        out.push_str(&wrap(&format!("{BEYOND} {}", summary::BEYOND_LIMIT)));
    }
    out
}

/// The ceilings (`fetch-only`, `load-only`), apart from the models and
/// with no speed ratio: they are limits, not contenders.
fn ceilings_table(summaries: &[ModelSummary]) -> String {
    let ceilings: Vec<&ModelSummary> = summaries
        .iter()
        .filter(|s| s.label.model.is_ceiling())
        .collect();
    if ceilings.is_empty() {
        return String::new();
    }
    let slowest = summary::ceiling(summaries).map(|c| c.0);
    let mut cols = vec![
        Column::new("ceiling", false),
        Column::new("runs", true),
        Column::new("median", true),
        Column::new(mean_header(&ceilings), true),
        Column::new("what it measures", false),
    ];
    for c in &ceilings {
        let note = if slowest == Some(c.stats.median) {
            format!("{} (the ceiling)", meaning(c.label.model))
        } else {
            meaning(c.label.model).to_string()
        };
        let row = [
            c.label.to_string(),
            c.stats.runs.to_string(),
            secs(c.stats.median),
            mean_sd(c),
            note,
        ];
        for (col, cell) in cols.iter_mut().zip(row) {
            col.cells.push(cell);
        }
    }
    layout(cols, &[])
}

/// The verdict lines: each model against the reference (fastest first,
/// hyperfine's wording), a tie when there is one, then [`why`].
pub fn verdict_lines(summaries: &[ModelSummary], reference: Option<Label>) -> Vec<String> {
    let mut lines = Vec::new();
    let models: Vec<&ModelSummary> = summary::models_only(summaries).collect();
    if let Some(reference) = reference {
        // The headline `comparison.json` and the report give: when the
        // reference itself was fastest, it is measured against the
        // runner-up, which the lines below (each model against the
        // reference) would not say.
        let mut said = None;
        if let Some(v) = super::json::verdict(summaries, Some(reference))
            .filter(|v| v.fastest == reference.to_string())
        {
            lines.push(v.text);
            said = Some(v.than);
        }
        // The runner-up's own line would say the headline again, reversed.
        let mut ratios: Vec<(&ModelSummary, Speedup)> = models
            .iter()
            .filter(|m| Some(m.label.to_string()) != said)
            .filter_map(|m| Some((*m, m.speedup?)))
            .collect();
        ratios.sort_by(|a, b| b.1.ratio.total_cmp(&a.1.ratio));
        for (m, x) in &ratios {
            // Two decimals, as hyperfine and `comparison.json`'s verdict.
            lines.push(x.sentence(&m.label.to_string(), &reference.to_string(), 2));
        }
        if let Some(line) = super::json::within_noise(&models) {
            lines.push(line);
        }
    }
    lines.extend(why(summaries, reference));
    lines
}

/// Why the models ran as fast as they did: what their limits allow against
/// the reference, what limits the fastest, and which model sits closest to
/// its own floor. Printed after the ratios, and kept in `comparison.json`,
/// `summary.md` and the report, so the "why" travels with the "how much".
pub fn why(summaries: &[ModelSummary], reference: Option<Label>) -> Vec<String> {
    let mut lines = Vec::new();
    let models: Vec<&ModelSummary> = summary::models_only(summaries).collect();
    if let Some(line) = reference.and_then(|r| at_limits(&models, r)) {
        lines.push(line);
    }
    // What limits the fastest model (the one the lines above rank first),
    // judged by the same limit as the efficiency table's `binds`.
    let fastest = models
        .iter()
        .min_by(|a, b| a.stats.median.total_cmp(&b.stats.median))
        .copied();
    if let Some(line) = fastest.and_then(|m| what_limits(m, summaries)) {
        lines.push(line);
    }
    // Another model nearer its own limit is worth naming (sync, sitting at
    // its slow bound): it shows what the network alone costs.
    let closest = models
        .iter()
        .filter_map(|m| {
            let l = m.limit()?;
            Some((*m, m.stats.median / l.secs, l))
        })
        .min_by(|a, b| a.1.total_cmp(&b.1));
    if let Some((m, x, l)) = closest.filter(|c| Some(c.0.label) != fastest.map(|f| f.label)) {
        lines.push(format!(
            "closest to its floor: {} at {x:.2}× its {} ({:.2} s){}",
            m.label,
            floor_name(l.binds),
            l.secs,
            below_one(x, l.binds)
        ));
    }
    lines
}

fn floor_name(binds: Binds) -> &'static str {
    match binds {
        Binds::Network => "network bound",
        Binds::Cpu => "CPU floor",
        Binds::Arrival => "arrival floor",
    }
}

/// Why a time can read below its limit, for a ratio that shows under 1×
/// (0.996 shows as "1.00×" and needs nothing).
fn below_one(x: f64, binds: Binds) -> &'static str {
    if (x * 100.0).round() >= 100.0 {
        return "";
    }
    match binds {
        Binds::Network => {
            "; below 1×: the bound is modelled from the configured first-byte distribution, and this run's draws were kinder"
        }
        Binds::Cpu | Binds::Arrival => "; below 1×: the CPU floor is counted in 10 ms ticks",
    }
}

/// What limits `m`, by its own limit (the larger of its network bound and
/// its CPU floor, as the efficiency table's `binds`): near it, that limit;
/// far above it, the ceilings say whether the network or the database
/// holds it back, or its own overhead.
fn what_limits(m: &ModelSummary, summaries: &[ModelSummary]) -> Option<String> {
    let name = m.label;
    let limit = m.limit();
    if let Some(l) = limit {
        let x = m.stats.median / l.secs;
        if x < NEAR_BOUND {
            let below = below_one(x, l.binds);
            return Some(match l.binds {
                Binds::Network => format!(
                    "what limits {name}: the network: it takes {x:.2}× its network bound ({:.2} s), the time its requests in flight need on this network{below}",
                    l.secs
                ),
                Binds::Cpu => format!(
                    "what limits {name}: CPU: it takes {x:.2}× its CPU floor (the pass spends {:.2} s of CPU, worker, database and bucket, per core); only less CPU per row or more cores make it faster{below}",
                    l.secs
                ),
                Binds::Arrival => format!(
                    "what limits {name}: CPU once the first bodies are in: it takes {x:.2}× its arrival floor ({:.2} s: the first object's body came in, then the CPU spent after it, worker, database and bucket, per core); only less CPU per row or more cores make it faster{below}",
                    l.secs
                ),
            });
        }
    }
    let far = limit.map_or(String::new(), |l| {
        format!(
            "it takes {:.2}× its {} ({:.2} s) and ",
            m.stats.median / l.secs,
            floor_name(l.binds),
            l.secs
        )
    });
    if let Some((ceiling, fetch, load)) = summary::ceiling(summaries) {
        let (kind, which) = if load >= fetch {
            ("the database", Model::LoadOnly)
        } else {
            ("the network", Model::FetchOnly)
        };
        let e = ceiling / m.stats.median;
        let pct = summary::percent(e, ABOVE);
        // Far faster than its own ceiling, the ceilings' runs met what the
        // model's did not (retries, a noisy machine): they say nothing.
        if e > 1.25 {
            return Some(format!(
                "what limits {name}: the ceilings cannot say: {far}ran at {pct} of the ceiling's speed, so their runs met what its runs did not (retries, a busy machine)"
            ));
        }
        return Some(if e >= 0.9 {
            format!(
                "what limits {name}: {kind}: {far}reaches {pct} of the ceiling, {which} at {ceiling:.2} s ({})",
                meaning(which)
            )
        } else {
            format!(
                "what limits {name}: its own overhead: {far}reaches {pct} of the ceiling, {which} at {ceiling:.2} s ({}); the rest is the model's own",
                meaning(which)
            )
        });
    }
    let l = limit?;
    Some(format!(
        "what limits {name}: not its {} alone ({:.2}× it); the ceilings (--ceilings) tell the network from the database",
        floor_name(l.binds),
        m.stats.median / l.secs
    ))
}

/// "their limits allow: async 14.9×, … faster than sync": the reference's
/// median over each model's limit, the most each model could show against
/// it on this network and machine, so that a ratio asked of a model can be read against what its
/// bounds allow. `None` when no model has a limit.
fn at_limits(models: &[&ModelSummary], reference: Label) -> Option<String> {
    let r = models.iter().find(|m| m.label == reference)?;
    let mut at: Vec<(&ModelSummary, f64)> = models
        .iter()
        .filter(|m| m.label != reference)
        .filter_map(|m| Some((*m, m.at_limit_vs(r)?)))
        .collect();
    if at.is_empty() {
        return None;
    }
    at.sort_by(|a, b| b.1.total_cmp(&a.1));
    let list: Vec<String> = at
        .iter()
        .map(|(m, x)| {
            // Two decimals near 1×, where one would read "1.0× slower".
            let d = if x.max(1.0 / x) < 1.1 { 2 } else { 1 };
            if *x >= 1.0 {
                format!("{} {x:.d$}× faster", m.label)
            } else {
                format!("{} {:.d$}× slower", m.label, 1.0 / x)
            }
        })
        .collect();
    // A limit is modelled from the mean first byte (or measured CPU): runs
    // that drew kinder delays can beat it, as a median can its bound.
    let beaten: Vec<String> = at
        .iter()
        .filter(|(m, x)| m.speedup.is_some_and(|s| s.ratio > *x * 1.005))
        .map(|(m, _)| m.label.to_string())
        .collect();
    let caveat = if beaten.is_empty() {
        String::new()
    } else {
        format!(
            "; {} already ran faster than that: the limits are estimates (the network's from its mean first byte, which these runs beat), so read them as approximate",
            beaten.join(" and ")
        )
    };
    Some(format!(
        "their limits allow: {} than {reference}{caveat}",
        list.join(", ")
    ))
}

/// Within this factor of its limit, a model is held by that limit.
const NEAR_BOUND: f64 = 1.25;

/// A sweep's table: each model's median (and the ceiling's) at each
/// value of the swept parameter, aligned as [`render`]'s.
pub fn sweep(points: &[Point], param: &str) -> String {
    let mut names: Vec<String> = sweep::models(points)
        .iter()
        .map(ToString::to_string)
        .collect();
    let ceilings = sweep::ceilings(points);
    if !ceilings.is_empty() {
        names.push("ceiling".into());
    }
    let values = unique(points.iter().map(|p| p.value));
    let mut cols = vec![Column::new(param, true)];
    cols.extend(names.iter().map(|n| Column::new(n.clone(), true)));
    for v in values {
        // A preset's name (`internet`) rather than the number it is
        // charted at.
        let name = points
            .iter()
            .find(|p| p.value == v && !p.value_name.is_empty())
            .map_or_else(|| v.to_string(), |p| p.value_name.clone());
        cols[0].cells.push(name);
        for (col, name) in cols[1..].iter_mut().zip(&names) {
            let median = if name == "ceiling" {
                ceilings.iter().find(|c| c.0 == v).map(|c| c.1)
            } else {
                points
                    .iter()
                    .find(|p| p.value == v && p.model.to_string() == *name)
                    .map(|p| p.median_s)
            };
            col.cells
                .push(median.map(secs).unwrap_or_else(|| "–".into()));
        }
    }
    layout(cols, &[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::stats::{Stats, speedup};

    fn summary(model: Model, times: &[f64], bound: Option<f64>) -> ModelSummary {
        ModelSummary {
            label: Label { model, write: None },
            stats: Stats::of(times).unwrap(),
            rows_per_sec: 123_456.0,
            speedup: None,
            failed_runs: 0,
            median_cpu_secs: 1.5,
            max_peak_rss_mb: 42.0,
            bound_secs: bound,
            net: None,
            cpu: crate::harness::cpu::CpuSummary::default(),
            outliers_from_draws: Vec::new(),
            outliers_from_machine: Vec::new(),
        }
    }

    /// The four models and the two ceilings, sync the reference.
    fn sample(runs: usize) -> (Vec<ModelSummary>, Option<Label>) {
        let t = |x: f64| {
            vec![x; runs]
                .iter()
                .enumerate()
                .map(|(i, v)| v * (1.0 + 0.02 * i as f64))
                .collect::<Vec<_>>()
        };
        let mut s = vec![
            summary(Model::Sync, &t(13.0), Some(6.0)),
            summary(Model::AsyncFetch, &t(2.0), Some(0.5)),
            summary(Model::Async, &t(1.0), Some(0.5)),
            summary(Model::Threads, &t(1.4), Some(0.6)),
            summary(Model::FetchOnly, &t(0.6), Some(0.5)),
            summary(Model::LoadOnly, &t(0.95), None),
        ];
        let base = s[0].stats.clone();
        for m in s.iter_mut().skip(1) {
            m.speedup = Some(speedup(&base, &m.stats));
        }
        let reference = Some(s[0].label);
        (s, reference)
    }

    #[test]
    fn when_the_reference_is_fastest_the_headline_is_the_reports_verdict() {
        let t = [1.0, 1.02, 1.04];
        let mut s = vec![
            summary(Model::Sync, &t, None),
            summary(Model::Async, &t.map(|x| x * 1.5), None),
            summary(Model::Threads, &t.map(|x| x * 2.0), None),
        ];
        for i in 1..3 {
            s[i].speedup = Some(speedup(&s[0].stats, &s[i].stats));
        }
        let reference = Some(s[0].label);
        let out = render(&s, reference);
        let headline = crate::harness::json::verdict(&s, reference).unwrap().text;
        assert!(headline.starts_with("sync ran 1.50"), "{headline}");
        assert!(out.contains(&headline), "{headline:?} missing from\n{out}");
        // The runner-up is not said again the other way round; the rest are.
        assert!(!out.contains("async ran 1.50"), "{out}");
        assert!(
            out.contains("threads ran 2.00 ± 0.08 times slower than sync"),
            "{out}"
        );
    }

    #[test]
    fn the_table_is_aligned_and_fits_the_terminal() {
        let (s, reference) = sample(5);
        let out = render(&s, reference);
        assert!(!out.contains('|'), "no Markdown pipes:\n{out}");
        assert!(!out.contains(".rs"), "no source paths:\n{out}");
        for line in out.lines() {
            assert!(line.chars().count() <= WIDTH, "too wide: {line:?}");
        }
        // Every row of the models table puts its columns where the header does.
        let table: Vec<&str> = out.lines().take(5).collect();
        let median_end = table[0].find("median").unwrap() + "median".len();
        for row in &table[1..] {
            assert_eq!(row.as_bytes()[median_end - 1], b's', "{row:?} in\n{out}");
            assert_eq!(row.as_bytes()[median_end], b' ', "{row:?} in\n{out}");
        }
        assert!(table[0].starts_with("model "), "{out}");
        assert!(table[3].starts_with("async "), "{out}");
    }

    #[test]
    fn a_model_at_its_network_bound_is_network_bound() {
        let (mut s, reference) = sample(5);
        s[0].bound_secs = Some(12.5);
        let out = render(&s, reference);
        // Named as the model nearest its floor, though not the fastest...
        assert!(out.contains("closest to its floor: sync at 1.08×"), "{out}");
        // ...and held by the network, as the efficiency table says.
        let line = what_limits(&s[0], &s).unwrap();
        assert!(
            line.starts_with(
                "what limits sync: the network: it takes 1.08× its network bound (12.50 s)"
            ),
            "{line}"
        );
    }

    #[test]
    fn ceilings_stand_apart_with_no_speed_ratio() {
        let (s, reference) = sample(5);
        let out = render(&s, reference);
        let (models, rest) = out.split_once("\nceiling ").expect(&out);
        assert!(
            !models.contains("fetch-only") && !models.contains("load-only"),
            "{out}"
        );
        let ceilings: Vec<&str> = rest.lines().take(3).collect();
        assert!(ceilings[1].starts_with("fetch-only") && ceilings[2].starts_with("load-only"));
        for l in &ceilings {
            assert!(!l.contains('×'), "a ceiling has no ratio: {l:?}");
        }
        assert!(ceilings[2].contains("the ceiling"), "{out}");
    }

    /// A new user's `small` run: "their limits allow: async-fetch 4.9×"
    /// right under "async-fetch ran 5.38 times faster". A limit is an
    /// estimate; when a model beats it, the line says so.
    #[test]
    fn a_limit_the_run_beats_is_said_to_be_approximate() {
        let (mut s, reference) = sample(5);
        // async's median (1.04 s) under its network bound.
        s[2].bound_secs = Some(1.2);
        let line = at_limits(&s.iter().collect::<Vec<_>>(), reference.unwrap()).unwrap();
        assert!(
            line.ends_with("; async already ran faster than that: the limits are estimates (the network's from its mean first byte, which these runs beat), so read them as approximate"),
            "{line}"
        );
        s[2].bound_secs = Some(0.5);
        let line = at_limits(&s.iter().collect::<Vec<_>>(), reference.unwrap()).unwrap();
        assert!(!line.contains("already ran faster"), "{line}");
    }

    #[test]
    fn verdict_lines_say_how_much_faster_and_what_limits() {
        let (s, reference) = sample(5);
        let out = render(&s, reference);
        let x = s[2].speedup.unwrap();
        let line = format!(
            "async ran {:.2} ± {:.2} times faster than sync",
            x.ratio, x.error
        );
        assert!(out.contains(&line), "{line:?} in\n{out}");
        // Fastest first.
        let first = out.lines().find(|l| l.contains(" ran ")).unwrap();
        assert!(first.starts_with("async ran"), "{out}");
        // The fastest is far above its limit: the ceilings say the database
        // holds it back. Being also the nearest its floor, it is not named
        // twice.
        assert!(
            out.contains("what limits async: the database: it takes 2.08× its network bound (0.50 s) and reaches 95 % of the"),
            "{out}"
        );
        assert!(!out.contains("closest to its floor"), "{out}");
        // Twice as fast as the runner-up: a clear order, no tie to report.
        assert!(!out.contains("within each other's noise"), "{out}");
        let mut close = s.clone();
        close[1] = summary(Model::AsyncFetch, &[1.06, 1.0, 1.1, 1.02, 1.08], Some(0.5));
        let tie = verdict_lines(&close, reference).join("\n");
        assert!(
            tie.contains("async and async-fetch are within each other's noise: async ran 1.02 ± 0.06 times faster than async-fetch"),
            "{tie}"
        );
        // sync's median (13.52 s) over each model's limit (0.5 and 0.6 s):
        // the most each could show.
        let at = out
            .lines()
            .find(|l| l.starts_with("their limits allow: "))
            .unwrap_or_else(|| panic!("no at-limit line in\n{out}"));
        assert!(at.ends_with("threads 22.5× faster than sync"), "{at}");
        assert!(at.contains("async 27.0× faster, "), "{at}");
        // Against a faster reference, a model slower even at its limit
        // says so, not "0.1× faster".
        let fast = s[2].label;
        let against_async = verdict_lines(&s, Some(fast)).join("\n");
        assert!(
            against_async.contains("sync 5.8× slower"),
            "{against_async}"
        );
        let md = summary::efficiency(&s, reference);
        assert!(md.contains(" at its limit |"), "{md}");
        let async_row = md.lines().find(|l| l.starts_with("| async |")).unwrap();
        assert!(async_row.contains("| 27.0× |"), "{async_row}");
    }

    #[test]
    fn a_single_run_shows_no_plus_minus() {
        let (s, reference) = sample(1);
        let out = render(&s, reference);
        assert!(!out.contains('±'), "{out}");
        assert!(
            out.contains("async ran 13.00 times faster than sync"),
            "{out}"
        );
    }

    #[test]
    fn an_efficiency_above_the_ceiling_is_explained() {
        let (mut s, reference) = sample(5);
        // load-only slower than async: the ceiling's runs were noisy.
        s[5] = summary(Model::LoadOnly, &[1.2, 1.3, 1.25], None);
        let out = render(&s, reference);
        let async_row = out.lines().find(|l| l.starts_with("async ")).unwrap();
        assert!(async_row.ends_with('¹'), "{out}");
        assert!(out.contains("¹ above 100 %"), "{out}");
    }

    /// A median under its network bound: the CPU table marks it with its
    /// own note (not the ceiling's), and so do summary.md and the verdict.
    #[test]
    fn an_efficiency_above_the_limit_is_explained_everywhere_it_shows() {
        let (mut s, reference) = sample(5);
        s[2] = summary(Model::Async, &[1.0, 1.0, 1.0], Some(1.05));
        let cpu = cpu_table(&s);
        let async_row = cpu.lines().find(|l| l.starts_with("async ")).unwrap();
        assert!(async_row.ends_with("105 %²"), "{cpu}");
        assert!(
            cpu.contains("² above 100 %: the median beat its limit"),
            "{cpu}"
        );
        let md = summary::efficiency(&s, reference);
        assert!(md.contains("| 105 %¹ |"), "{md}");
        assert!(
            md.contains("¹ above 100 %: the median beat its limit"),
            "{md}"
        );
        let out = render(&s, reference);
        assert!(
            out.contains(
                "what limits async: the network: it takes 0.95× its network bound (1.05 s)"
            ),
            "{out}"
        );
        assert!(out.contains("; below 1×: the bound is modelled"), "{out}");
    }

    #[test]
    fn outliers_and_failed_runs_are_counted_in_words() {
        let (mut s, reference) = sample(5);
        s[0].stats.outliers = vec![2];
        s[2].stats.outliers = vec![0, 4];
        s[1].failed_runs = 1;
        s[3].failed_runs = 2;
        let out = render(&s, reference);
        for line in [
            "sync: 1 of its 5 runs is an outlier",
            "async: 2 of its 5 runs are outliers",
            "async-fetch: 1 run failed verification and is left out",
            "threads: 2 runs failed verification and are left out",
        ] {
            assert!(out.contains(line), "{line:?} missing from\n{out}");
        }
    }
}

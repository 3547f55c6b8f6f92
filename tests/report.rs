//! `report.html` rendered in a real headless browser (Debian's `chromium`):
//! redrawn with `compare --replot` from the committed seed results, set
//! against a baseline, then checked in the DOM the browser built and in
//! screenshots at a desktop's and a phone's width.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Csv, compare};

const INSTALL: &str = "apt-get update && apt-get install -y chromium";

/// The browser, or a failure that says how to install it (never a skip).
fn chromium() -> PathBuf {
    for name in ["chromium", "chromium-browser"] {
        if let Some(p) = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        }) {
            return p;
        }
    }
    panic!(
        "chromium is needed to render report.html in a real browser; install it with `{INSTALL}`"
    );
}

/// Runs headless chromium on `url` with `extra` flags, at most two
/// minutes; returns its stdout.
fn browse(url: &str, width: u32, extra: &[String]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--window-size={width},2000"))
        .args(extra)
        .arg(url)
        .stdout(out.reopen().unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish rendering {url} in two minutes");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "chromium failed on {url}: {status}");
    std::fs::read_to_string(out.path()).unwrap()
}

/// Screenshot of `file` at `width` CSS pixels; returns its width and
/// height, and the distinct colours and share of dark pixels in its
/// leftmost `columns`.
fn screenshot(file: &Path, width: u32, png_path: &Path, columns: u32) -> (u32, u32, usize, f64) {
    browse(
        &format!("file://{}", file.display()),
        width,
        &[format!("--screenshot={}", png_path.display())],
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(png_path).unwrap(),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let bpp = info.color_type.samples();
    assert!(bpp >= 3, "unexpected PNG colour type {:?}", info.color_type);
    let pixels: Vec<&[u8]> = buf[..info.buffer_size()]
        .chunks(bpp)
        .enumerate()
        .filter(|(i, _)| (*i as u32 % info.width) < columns)
        .map(|(_, p)| p)
        .collect();
    let distinct: std::collections::HashSet<&[u8]> = pixels.iter().map(|p| &p[..3]).collect();
    let dark = pixels
        .iter()
        .filter(|p| (p[0] as u32 + p[1] as u32 + p[2] as u32) < 3 * 128)
        .count();
    (
        info.width,
        info.height,
        distinct.len(),
        dark as f64 / pixels.len() as f64,
    )
}

/// A copy of the committed seed comparison's CSVs and environment, and a
/// hand-made baseline whose times are 20 % longer (so the report has a
/// baseline section with improvements in it).
fn seed_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("results/seed");
    for f in ["runs.csv", "summary.csv", "summary.md", "environment.json"] {
        std::fs::copy(seed.join(f), dir.path().join(f)).unwrap();
    }
    let mut models: Vec<(String, Vec<f64>)> = Vec::new();
    for rec in Csv::read(&seed.join("runs.csv")).rows {
        if rec["run"] == "warmup" {
            continue;
        }
        let t: f64 = rec["wall_seconds"].parse().unwrap();
        match models.iter_mut().find(|(m, _)| m == &rec["model"]) {
            Some((_, v)) => v.push(t * 1.2),
            None => models.push((rec["model"].clone(), vec![t * 1.2])),
        }
    }
    let baseline = serde_json::json!({
        "schema_version": 1,
        "name": "slower",
        "saved_at": "2026-11-01T00:00:00Z",
        "git_revision": "hand-made",
        "title": "seed, every time 20 % longer",
        "environment": null,
        "models": models.iter().map(|(m, v)| serde_json::json!({"model": m, "wall_secs": v})).collect::<Vec<_>>(),
    });
    let path = dir.path().join("slower.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&baseline).unwrap()).unwrap();
    (dir, path)
}

#[test]
fn the_html_report_renders_in_a_browser_at_desktop_and_phone_widths() {
    chromium();
    let (dir, baseline) = seed_copy();
    // The verdict the reference run wrote; the replot must reach the same
    // one from its runs.csv, and the report must show it.
    let original: serde_json::Value = serde_json::from_slice(
        &std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("results/seed/comparison.json"))
            .unwrap(),
    )
    .unwrap();
    let verdict = original["verdict"]["text"].as_str().unwrap().to_string();
    // Whichever model the run ranked first (by median, as the bars show):
    // on the internet preset `async` and `async-fetch` are within each
    // other's noise, and either may lead a run.
    assert!(verdict.contains(" times faster than sync"), "{verdict}");
    let replot = compare()
        .arg("--replot")
        .arg(dir.path())
        .arg("--baseline")
        .arg(&baseline)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&replot.stdout);
    assert!(
        replot.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&replot.stderr)
    );
    assert!(stdout.contains(&verdict), "{stdout}");
    let report = dir.path().join("report.html");
    let html = std::fs::read_to_string(&report).unwrap();
    // Self-contained: nothing fetched from anywhere.
    for external in ["http://", "https://", "<link", "<script", "@import", "url("] {
        let allowed = "http://www.w3.org/2000/svg";
        assert!(
            !html.replace(allowed, "").contains(external),
            "report.html refers to something outside itself: {external}"
        );
    }

    // The DOM the browser built holds the tables and the charts.
    let dom = browse(
        &format!("file://{}", report.display()),
        1200,
        &["--dump-dom".into()],
    );
    assert!(
        dom.contains(&verdict),
        "the verdict is missing from the DOM"
    );
    for id in [
        "why",
        "chart-times",
        "chart-times-zoomed",
        "chart-speedup",
        "chart-baseline",
        "summary",
        "ceiling",
        "baseline",
        "runs",
        "environment",
    ] {
        assert!(dom.contains(&format!("id=\"{id}\"")), "the DOM lacks #{id}");
    }
    assert_eq!(
        dom.matches("<svg").count(),
        4,
        "four inline SVG charts: times, the faster models zoomed, speed ratios, the baseline"
    );
    assert!(dom.matches("<table").count() >= 5, "the tables");
    assert!(
        dom.matches("<tr>").count() + dom.matches("<tr class").count() >= 30 + 6,
        "one row per run (30 measured and 6 warm-ups in the seed results)"
    );
    assert!(dom.contains("improved"), "the baseline verdicts");
    assert!(dom.contains("AMD EPYC"), "the environment");

    // Screenshots: a page with charts and text, not a blank one.
    let shots = tempfile::tempdir().unwrap();
    let png = shots.path().join("desktop.png");
    let (w, h, colours, dark) = screenshot(&report, 1200, &png, 1200);
    assert_eq!((w, h), (1200, 2000), "screenshot size");
    assert!(
        colours >= 200,
        "the desktop screenshot has {colours} colours: it looks blank"
    );
    assert!(
        dark > 0.003,
        "the desktop screenshot has {:.2} % dark pixels: no text?",
        100.0 * dark
    );

    // A phone's width. Headless chromium lays a page out no narrower than
    // 500 px whatever --window-size says, so the report goes into a 375 px
    // wide frame (srcdoc: same origin, so the wrapper can measure it). The
    // page itself must not scroll sideways there (wide tables scroll
    // inside their own boxes), and the frame's pixels must not be blank.
    let srcdoc = html.replace('&', "&amp;").replace('"', "&quot;");
    let phone = dir.path().join("phone.html");
    std::fs::write(
        &phone,
        format!(
            "<!DOCTYPE html><html><body style=\"margin:0;background:#fff\"><iframe width=\"375\" height=\"2000\" style=\"border:0;display:block\" onload=\"document.body.setAttribute('data-scroll-width', this.contentDocument.documentElement.scrollWidth)\" srcdoc=\"{srcdoc}\"></iframe></body></html>"
        ),
    )
    .unwrap();
    let dom = browse(
        &format!("file://{}", phone.display()),
        500,
        &["--dump-dom".into()],
    );
    let width: u32 = dom
        .split("data-scroll-width=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .and_then(|s| s.parse().ok())
        .expect("the wrapper measured the frame");
    assert!(
        width <= 375,
        "at 375 px the page is {width} px wide: something does not fit a phone"
    );
    let png = shots.path().join("phone.png");
    let (_, _, colours, dark) = screenshot(&phone, 500, &png, 375);
    assert!(
        colours >= 100,
        "the phone-width rendering has {colours} colours: it looks blank"
    );
    assert!(
        dark > 0.003,
        "the phone-width rendering has {:.2} % dark pixels: no text?",
        100.0 * dark
    );
}

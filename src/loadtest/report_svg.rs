//! The drawn report: a hand-written SVG (no plotting crate: two line charts
//! are a few polylines and axes) with the latency distribution by percentile
//! and the throughput over time, and an HTML page that wraps it with the
//! text summary and the per-level table.

use std::fmt::Write as _;

use super::stats::Report;

const W: f64 = 900.0;
const H: f64 = 700.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 860.0;

/// Escapes text for SVG/HTML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The smallest 1, 2 or 5 × 10^k at or above `v` (1 for v ≤ 0).
fn nice_max(v: f64) -> f64 {
    if v.is_nan() || v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * p >= v * (1.0 - 1e-12) {
            return m * p;
        }
    }
    10.0 * p
}

/// The time axis of a run of `elapsed` seconds: it ends at the run's end
/// (at least 1 s), with ticks every 1, 2 or 5 × 10^k seconds, at most six.
fn time_axis(elapsed: f64) -> (f64, Vec<f64>) {
    let span = if elapsed.is_finite() { elapsed.max(1.0) } else { 1.0 };
    let mut step = 10f64.powf((span / 6.0).log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if span / (m * step) <= 6.0 {
            step *= m;
            break;
        }
    }
    let ticks = (0..).map(|k| k as f64 * step).take_while(|v| *v <= span * (1.0 + 1e-9)).collect();
    (span, ticks)
}

fn fmt_num(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// Position of a percentile on the "nines" axis: 0 at 0 %, 1 at 90 %, 2 at
/// 99 %, ... 5 at 99.999 % (and 100 % is drawn there too).
fn nines(p: f64) -> f64 {
    let q = (1.0 - p / 100.0).max(1e-5);
    -q.log10()
}

struct Panel {
    top: f64,
    bottom: f64,
    xmax: f64,
    ymax: f64,
}

impl Panel {
    fn x(&self, v: f64) -> f64 {
        LEFT + (RIGHT - LEFT) * (v / self.xmax).clamp(0.0, 1.0)
    }
    fn y(&self, v: f64) -> f64 {
        self.bottom - (self.bottom - self.top) * (v / self.ymax).clamp(0.0, 1.0)
    }
    /// Frame, horizontal grid with 5 labelled steps, titles.
    fn axes(&self, out: &mut String, title: &str, ylabel: &str, xlabel: &str) {
        let _ = writeln!(out, r#"<text x="{LEFT}" y="{}" class="title">{}</text>"#, self.top - 12.0, esc(title));
        for k in 0..=5 {
            let v = self.ymax * k as f64 / 5.0;
            let y = self.y(v);
            let _ = writeln!(out, r#"<line x1="{LEFT}" y1="{y:.1}" x2="{RIGHT}" y2="{y:.1}" class="grid"/>"#);
            let _ = writeln!(out, r#"<text x="{}" y="{:.1}" class="ytick">{}</text>"#, LEFT - 6.0, y + 4.0, fmt_num(v));
        }
        let _ = writeln!(
            out,
            r#"<rect x="{LEFT}" y="{}" width="{}" height="{}" class="frame"/>"#,
            self.top,
            RIGHT - LEFT,
            self.bottom - self.top
        );
        let mid = (self.top + self.bottom) / 2.0;
        let _ = writeln!(
            out,
            r#"<text x="20" y="{mid:.1}" transform="rotate(-90 20 {mid:.1})" class="axis">{}</text>"#,
            esc(ylabel)
        );
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" class="axis">{}</text>"#,
            (LEFT + RIGHT) / 2.0,
            self.bottom + 36.0,
            esc(xlabel)
        );
    }
    fn xtick(&self, out: &mut String, v: f64, label: &str) {
        let x = self.x(v);
        let _ = writeln!(out, r#"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}" class="grid"/>"#, self.top, self.bottom);
        let _ = writeln!(out, r#"<text x="{x:.1}" y="{}" class="xtick">{}</text>"#, self.bottom + 16.0, esc(label));
    }
}

fn polyline(out: &mut String, pts: &[(f64, f64)], class: &str) {
    if pts.is_empty() {
        return;
    }
    let p: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    let _ = writeln!(out, r#"<polyline points="{}" class="{class}"/>"#, p.join(" "));
}

/// The SVG document.
pub fn svg(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    out.push_str(
        "<style>.title{font-size:14px;font-weight:bold}.grid{stroke:#ddd;stroke-width:1}.frame{fill:none;stroke:#444}\
         .ytick{text-anchor:end;fill:#333}.xtick{text-anchor:middle;fill:#333}.axis{text-anchor:middle;fill:#333}\
         .lat{fill:none;stroke:#1f5fbf;stroke-width:2}.rps{fill:none;stroke:#1f5fbf;stroke-width:2}\
         .err{fill:none;stroke:#c0392b;stroke-width:1.5}.note{fill:#555}</style>\n",
    );
    let _ = writeln!(out, r##"<rect width="{W}" height="{H}" fill="#fff"/>"##);
    let c = &r.config;
    let how = match c.rate {
        Some(rate) => format!("open loop {rate} req/s"),
        None => format!("{} viewers × {}", c.concurrency, c.per_viewer),
    };
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="20" class="note">tessera loadtest · {} · {} · {} requests in {:.1} s · {:.0} req/s · {} errors</text>"#,
        esc(&c.mode),
        esc(&how),
        r.requests,
        r.elapsed_s,
        r.requests_per_s,
        r.errors
    );
    // Latency by percentile.
    let lat = Panel { top: 60.0, bottom: 300.0, xmax: 5.0, ymax: nice_max(r.latency_ms.max) };
    lat.axes(&mut out, "Latency by percentile (answered requests)", "latency (ms)", "percentile");
    for (v, l) in [(0.0, "0%"), (1.0, "90%"), (2.0, "99%"), (3.0, "99.9%"), (4.0, "99.99%"), (5.0, "99.999%")] {
        lat.xtick(&mut out, v, l);
    }
    let pts: Vec<(f64, f64)> =
        r.distribution.iter().map(|q| (lat.x(nines(q.percentile)), lat.y(q.latency_ms))).collect();
    polyline(&mut out, &pts, "lat");
    // Throughput over time.
    let rates: Vec<(f64, f64, f64)> = r
        .series
        .iter()
        .filter(|s| s.span_s > 0.05)
        .map(|s| (s.t_s as f64 + s.span_s / 2.0, s.requests as f64 / s.span_s, s.errors as f64 / s.span_s))
        .collect();
    let ymax = nice_max(rates.iter().map(|x| x.1).fold(0.0, f64::max));
    let (xmax, ticks) = time_axis(r.elapsed_s);
    let thr = Panel { top: 380.0, bottom: 620.0, xmax, ymax };
    thr.axes(
        &mut out,
        "Throughput over time (blue: requests/s, red: errors/s)",
        "requests per second",
        "seconds after warm-up",
    );
    for v in ticks {
        thr.xtick(&mut out, v, &fmt_num(v));
    }
    let pts: Vec<(f64, f64)> = rates.iter().map(|(t, q, _)| (thr.x(*t), thr.y(*q))).collect();
    polyline(&mut out, &pts, "rps");
    if rates.iter().any(|x| x.2 > 0.0) {
        let pts: Vec<(f64, f64)> = rates.iter().map(|(t, _, e)| (thr.x(*t), thr.y(*e))).collect();
        polyline(&mut out, &pts, "err");
    }
    let l = &r.latency_ms;
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="680" class="note">p50 {:.2} ms · p90 {:.2} ms · p99 {:.2} ms · p99.9 {:.2} ms · max {:.2} ms</text>"#,
        l.p50, l.p90, l.p99, l.p999, l.max
    );
    out.push_str("</svg>\n");
    out
}

/// An HTML page: the summary, the per-level table and the SVG.
pub fn html(r: &Report) -> String {
    let mut out = String::new();
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>tessera loadtest</title>\n");
    out.push_str("<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 10px;text-align:right}table{border-collapse:collapse}tr:nth-child(even){background:#f4f4f4}</style>\n</head><body>\n");
    out.push_str("<h1>tessera loadtest</h1>\n<pre>");
    out.push_str(&esc(&r.text()));
    out.push_str("</pre>\n<h2>Per level</h2>\n<table><tr><th>scale factor</th><th>requests</th><th>errors</th><th>bytes</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th></tr>\n");
    for v in &r.levels {
        let l = &v.latency_ms;
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td></tr>",
            v.scale_factor, v.requests, v.errors, v.bytes, l.p50, l.p90, l.p99, l.p999, l.max
        );
    }
    out.push_str("</table>\n<h2>Charts</h2>\n");
    out.push_str(&svg(r));
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_steps() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(7.0), 10.0);
        assert_eq!(nice_max(130.0), 200.0);
        assert_eq!(nice_max(0.3), 0.5);
        assert_eq!(nice_max(50.0), 50.0);
        assert!((nines(99.0) - 2.0).abs() < 1e-9);
        assert!((nines(100.0) - 5.0).abs() < 1e-9);
        assert_eq!(esc("a<b&\"c\""), "a&lt;b&amp;&quot;c&quot;");
    }

    #[test]
    fn the_time_axis_ends_with_the_run() {
        // A 10 s run measures a little over 10 s: the axis is not 20 s long.
        assert_eq!(time_axis(10.02), (10.02, vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]));
        assert_eq!(time_axis(30.0).1, vec![0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0]);
        assert_eq!(time_axis(0.2), (1.0, vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]));
        let (span, ticks) = time_axis(95.0);
        assert_eq!((span, ticks.len(), ticks[1]), (95.0, 5, 20.0));
    }
}

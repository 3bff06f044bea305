//! A small self-drawn SVG: throughput per second (top) and p99 latency per second (bottom).

use std::fmt::Write;

use crate::stats::Second;

const W: f64 = 900.0;
const PANEL_H: f64 = 220.0;
const ML: f64 = 80.0;
const MR: f64 = 20.0;
const MT: f64 = 40.0;
const GAP: f64 = 60.0;

fn nice_max(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * mag >= v {
            return m * mag;
        }
    }
    10.0 * mag
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn panel(
    out: &mut String,
    top: f64,
    title: &str,
    unit: &str,
    color: &str,
    pts: &[(f64, f64)],
    tmax: f64,
) {
    let ymax = nice_max(pts.iter().map(|p| p.1).fold(0.0, f64::max));
    let pw = W - ML - MR;
    let _ = writeln!(
        out,
        r#"<text x="{ML}" y="{}" font-size="14" font-weight="bold">{}</text>"#,
        top - 10.0,
        esc(title)
    );
    let _ = writeln!(
        out,
        r##"<rect x="{ML}" y="{top}" width="{pw}" height="{PANEL_H}" fill="none" stroke="#888"/>"##
    );
    for i in 0..=4 {
        let v = ymax * i as f64 / 4.0;
        let y = top + PANEL_H - PANEL_H * i as f64 / 4.0;
        let _ = writeln!(
            out,
            r##"<line x1="{ML}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/>"##,
            ML + pw
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{} {unit}</text>"#,
            ML - 5.0,
            y + 4.0,
            fmt_num(v)
        );
    }
    for i in 0..=5 {
        let t = tmax * i as f64 / 5.0;
        let x = ML + pw * i as f64 / 5.0;
        let _ = writeln!(
            out,
            r#"<text x="{x:.1}" y="{:.1}" font-size="11" text-anchor="middle">{t:.0} s</text>"#,
            top + PANEL_H + 15.0
        );
    }
    if pts.is_empty() {
        return;
    }
    let mut poly = String::new();
    for (t, v) in pts {
        let x = ML + pw * (t / tmax);
        let y = top + PANEL_H - PANEL_H * (v / ymax);
        let _ = write!(poly, "{x:.1},{y:.1} ");
    }
    let _ = writeln!(
        out,
        r#"<polyline points="{poly}" fill="none" stroke="{color}" stroke-width="2"/>"#
    );
}

fn fmt_num(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 100.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Render the per-second timeline as an SVG document.
pub fn svg(title: &str, unit: &str, timeline: &[Second]) -> String {
    let tmax = timeline.last().map(|s| s.t as f64).unwrap_or(1.0).max(1.0);
    let h = MT + 2.0 * PANEL_H + GAP + 40.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" font-family="sans-serif">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{ML}" y="18" font-size="15">{}</text>"#,
        esc(title)
    );
    let thr: Vec<(f64, f64)> = timeline.iter().map(|s| (s.t as f64, s.ok as f64)).collect();
    let p99: Vec<(f64, f64)> = timeline
        .iter()
        .map(|s| (s.t as f64, s.p99_us as f64 / 1000.0))
        .collect();
    panel(
        &mut out,
        MT + 20.0,
        &format!("throughput ({unit})"),
        "",
        "#1f77b4",
        &thr,
        tmax,
    );
    panel(
        &mut out,
        MT + 20.0 + PANEL_H + GAP,
        "p99 latency (ms)",
        "ms",
        "#d62728",
        &p99,
        tmax,
    );
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders() {
        let tl: Vec<Second> = (1..=5)
            .map(|t| Second {
                t,
                ok: t * 100,
                failed: 0,
                msgs: t * 100,
                bytes: 0,
                p50_us: 100,
                p99_us: 2000,
            })
            .collect();
        let s = svg("loadgen <smtp>", "msg/s", &tl);
        assert!(s.starts_with("<svg") && s.ends_with("</svg>\n"));
        assert_eq!(s.matches("<polyline").count(), 2);
        assert!(s.contains("&lt;smtp&gt;"));
        assert_eq!(nice_max(730.0), 1000.0);
        assert_eq!(nice_max(180.0), 200.0);
        assert!(svg("empty", "x", &[]).contains("</svg>"));
    }
}

//! Small, dependency-free SVG line charts. The dry-run report and the live dashboard share
//! this style: the same palette, the same CSS classes ([`CHART_CSS`]).

use std::fmt::Write;

/// Series colours, in order; colour-blind-safe (Okabe-Ito).
pub const PALETTE: [&str; 8] = [
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000",
];

/// CSS for charts, shared by `report.html` and the dashboard.
pub const CHART_CSS: &str = r#"
.chart { font: 12px system-ui, sans-serif; background: #fff; }
.chart .title { font-weight: 600; font-size: 13px; }
.chart .axis line, .chart .axis path { stroke: #444; }
.chart .grid line { stroke: #e5e5e5; }
.chart .tick text { fill: #444; }
.chart .series { fill: none; stroke-width: 1.8; }
.chart .ref { stroke: #c00; stroke-dasharray: 6 4; stroke-width: 1.4; }
.chart .ref-label { fill: #c00; }
.chart .legend text { fill: #222; }
"#;

#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Draw as steps (a value holds until the next point), for replica counts.
    pub step: bool,
    pub dashed: bool,
}

#[derive(Debug, Clone, Default)]
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Horizontal reference lines, such as an SLA target.
    pub reference: Vec<(f64, String)>,
    /// Use a log scale on y (for latencies spanning orders of magnitude).
    pub log_y: bool,
}

const W: f64 = 860.0;
const H: f64 = 280.0;
const ML: f64 = 64.0;
const MR: f64 = 170.0;
const MT: f64 = 28.0;
const MB: f64 = 40.0;

/// Characters of a legend line that fit the right margin at the legend's type size.
const LEGEND_CHARS: usize = 19;
/// The height of a legend name's second and later lines.
const LEGEND_LINE: f64 = 13.0;

/// A legend name in lines of at most `LEGEND_CHARS`, broken after a `;`, `,`, `:`, `=` or
/// space where one falls within a line (the settings of a planner variant), else within a
/// word; spaces at a break are dropped.
fn legend_lines(name: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut rest: Vec<char> = name.chars().collect();
    while rest.len() > LEGEND_CHARS {
        let cut = rest[..LEGEND_CHARS]
            .iter()
            .rposition(|c| matches!(c, ';' | ',' | ':' | '=' | ' '))
            .map_or(LEGEND_CHARS, |p| p + 1);
        let line: String = rest[..cut].iter().collect();
        lines.push(line.trim_end().to_string());
        rest = rest[cut..]
            .iter()
            .copied()
            .skip_while(|c| *c == ' ')
            .collect();
    }
    if !rest.is_empty() || lines.is_empty() {
        lines.push(rest.into_iter().collect());
    }
    lines
}

/// Round tick positions covering `[lo, hi]`.
pub fn nice_ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) {
        return vec![lo];
    }
    let raw = (hi - lo) / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + step * 1e-9 {
        out.push(if t.abs() < step * 1e-9 { 0.0 } else { t });
        t += step;
    }
    out
}

fn fmt_tick(v: f64) -> String {
    if v.abs() >= 1000.0 || v.fract().abs() < 1e-9 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl LineChart {
    pub fn render(&self) -> String {
        let pts = self
            .series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|p| p.0.is_finite() && p.1.is_finite());
        let (mut x0, mut x1, mut y0, mut y1) = (
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
        );
        for &(x, y) in pts {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
        for (y, _) in &self.reference {
            y0 = y0.min(*y);
            y1 = y1.max(*y);
        }
        if !x0.is_finite() {
            (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
        }
        if x1 <= x0 {
            x1 = x0 + 1.0;
        }
        let log = self.log_y && y0 > 0.0;
        let (ty, ylo, yhi) = if log {
            let lo = y0.log10().floor();
            let hi = y1.log10().ceil().max(lo + 1.0);
            (
                (lo as i32..=hi as i32)
                    .map(|e| 10f64.powi(e))
                    .collect::<Vec<_>>(),
                lo,
                hi,
            )
        } else {
            let lo = y0.min(0.0);
            let hi = if y1 > lo { y1 * 1.08 } else { lo + 1.0 };
            let t = nice_ticks(lo, hi, 5);
            let hi = t.last().copied().unwrap_or(hi).max(hi);
            (t, lo, hi)
        };
        let pw = W - ML - MR;
        let ph = H - MT - MB;
        let sx = |x: f64| ML + (x - x0) / (x1 - x0) * pw;
        let sy = |y: f64| {
            let v = if log { y.max(1e-12).log10() } else { y };
            MT + ph - (v - ylo) / (yhi - ylo) * ph
        };
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{}">"#,
            esc(&self.title)
        );
        let _ = write!(
            s,
            r#"<text class="title" x="{ML}" y="16">{}</text>"#,
            esc(&self.title)
        );
        s.push_str(r#"<g class="grid">"#);
        for &t in &ty {
            let y = sy(t);
            let _ = write!(
                s,
                r#"<line x1="{ML}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}"/>"#,
                ML + pw
            );
        }
        s.push_str("</g><g class=\"axis\">");
        let _ = write!(
            s,
            r#"<line x1="{ML}" x2="{ML}" y1="{MT}" y2="{:.1}"/><line x1="{ML}" x2="{:.1}" y1="{:.1}" y2="{:.1}"/>"#,
            MT + ph,
            ML + pw,
            MT + ph,
            MT + ph
        );
        s.push_str("</g><g class=\"tick\">");
        for &t in &ty {
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                ML - 6.0,
                sy(t) + 4.0,
                fmt_tick(t)
            );
        }
        for t in nice_ticks(x0, x1, 8) {
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                sx(t),
                MT + ph + 16.0,
                fmt_tick(t)
            );
        }
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            ML + pw / 2.0,
            H - 4.0,
            esc(&self.x_label)
        );
        let _ = write!(
            s,
            r#"<text transform="translate(14,{:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
            MT + ph / 2.0,
            esc(&self.y_label)
        );
        s.push_str("</g>");
        for (y, label) in &self.reference {
            let yy = sy(*y);
            let _ = write!(
                s,
                r#"<line class="ref" x1="{ML}" x2="{:.1}" y1="{yy:.1}" y2="{yy:.1}"/><text class="ref-label" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                ML + pw,
                ML + pw - 4.0,
                yy - 4.0,
                esc(label)
            );
        }
        for (i, ser) in self.series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let mut d = String::new();
            let mut pen_up = true;
            for &(x, y) in &ser.points {
                if !(x.is_finite() && y.is_finite()) || (log && y <= 0.0) {
                    pen_up = true;
                    continue;
                }
                if pen_up {
                    let _ = write!(d, "M{:.1},{:.1}", sx(x), sy(y));
                    pen_up = false;
                } else if ser.step {
                    let _ = write!(d, "H{:.1}V{:.1}", sx(x), sy(y));
                } else {
                    let _ = write!(d, "L{:.1},{:.1}", sx(x), sy(y));
                }
            }
            let dash = if ser.dashed {
                r#" stroke-dasharray="5 3""#
            } else {
                ""
            };
            let _ = write!(
                s,
                r#"<path class="series" data-series="{}" data-points="{}" stroke="{color}"{dash} d="{d}"/>"#,
                esc(&ser.name),
                ser.points.len()
            );
        }
        s.push_str(r#"<g class="legend">"#);
        let mut y = MT + 10.0;
        for (i, ser) in self.series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let x = W - MR + 12.0;
            let dash = if ser.dashed {
                r#" stroke-dasharray="5 3""#
            } else {
                ""
            };
            // A long name (a planner variant's settings) wraps within the margin, each line
            // under the one before, rather than running off the chart.
            let lines = legend_lines(&ser.name);
            let _ = write!(
                s,
                r#"<line x1="{x}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="{color}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">"#,
                x + 18.0,
                x + 24.0,
                y + 4.0,
            );
            for (k, line) in lines.iter().enumerate() {
                let dy = if k == 0 { 0.0 } else { LEGEND_LINE };
                let _ = write!(
                    s,
                    r#"<tspan x="{:.1}" dy="{dy}">{}</tspan>"#,
                    x + 24.0,
                    esc(line)
                );
            }
            s.push_str("</text>");
            y += 16.0 + LEGEND_LINE * (lines.len() - 1) as f64;
        }
        s.push_str("</g></svg>");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_legend_names_wrap_at_their_settings_and_short_ones_stay_whole() {
        assert_eq!(legend_lines("planner"), ["planner"]);
        assert_eq!(legend_lines("static:best=4,4"), ["static:best=4,4"]);
        let lines =
            legend_lines("planner:headroom_quantile=0.97; stabilizer.scale_down_window_s=300");
        assert_eq!(
            lines,
            [
                "planner:",
                "headroom_quantile=",
                "0.97;",
                "stabilizer.scale_do",
                "wn_window_s=300"
            ]
        );
        assert!(
            lines.iter().all(|l| l.chars().count() <= LEGEND_CHARS),
            "{lines:?}"
        );
        assert_eq!(
            lines.concat().replace(' ', ""),
            "planner:headroom_quantile=0.97;stabilizer.scale_down_window_s=300"
        );
        // A word longer than a line is broken within it.
        let long = "x".repeat(45);
        let lines = legend_lines(&long);
        assert_eq!(lines.len(), 3);
        assert_eq!(lines.concat(), long);
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(
            nice_ticks(0.0, 10.0, 5),
            vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
        );
        assert_eq!(
            nice_ticks(0.0, 1800.0, 8),
            vec![0.0, 250.0, 500.0, 750.0, 1000.0, 1250.0, 1500.0, 1750.0]
        );
    }

    #[test]
    fn renders_every_series_and_reference() {
        let c = LineChart {
            title: "TTFT <p99>".into(),
            series: vec![
                Series {
                    name: "a".into(),
                    points: vec![(0.0, 1.0), (1.0, 2.0)],
                    step: false,
                    dashed: false,
                },
                Series {
                    name: "b".into(),
                    points: vec![(0.0, 3.0), (1.0, 2.0), (2.0, f64::NAN), (3.0, 1.0)],
                    step: true,
                    dashed: true,
                },
            ],
            reference: vec![(2.5, "SLA".into())],
            ..Default::default()
        };
        let svg = c.render();
        assert!(svg.contains("TTFT &lt;p99&gt;"));
        assert_eq!(svg.matches(r#"class="series""#).count(), 2);
        assert!(svg.contains(r#"class="ref""#));
        let b = svg
            .split("data-series=\"b\"")
            .nth(1)
            .unwrap()
            .split("/>")
            .next()
            .unwrap();
        assert_eq!(b.matches('M').count(), 2, "a gap at the missing value: {b}");
        assert!(b.contains('H'), "steps: {b}");
    }
}

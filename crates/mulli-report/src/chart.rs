//! Line charts as inline SVG: axes with round-number ticks, one polyline per series, a
//! legend. Small on purpose — a plotting crate would pull in fonts and rasterizers for what is
//! a few hundred bytes of SVG text.

use std::fmt::Write;

use crate::html::escape;

pub struct Series {
    pub name: String,
    /// CSS colour.
    pub color: String,
    pub points: Vec<(f64, f64)>,
}

const W: f64 = 560.0;
const H: f64 = 260.0;
const LEFT: f64 = 58.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 40.0;

/// Round tick values covering [lo, hi]: steps of 1, 2 or 5 × 10^k, about `n` of them.
pub fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo || n == 0 {
        return vec![lo];
    }
    let raw = (hi - lo) / n as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    // Integer multiples of the step (no accumulated rounding), cleaned to the step's digits.
    let digits = (-step.log10().floor()).max(0.0) as i32 + 1;
    let scale = 10f64.powi(digits);
    let first = (lo / step - 1e-9).ceil() as i64;
    (first..)
        .map(|k| ((k as f64 * step) * scale).round() / scale)
        .take_while(|t| *t <= hi + step * 1e-9)
        .take(50)
        .collect()
}

fn label(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1e4 || v.abs() < 1e-2 {
        format!("{v:.0e}")
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

/// An SVG line chart. With `log_y`, values ≤ 0 are dropped and the axis is log10.
pub fn line_chart(title: &str, x_label: &str, series: &[Series], log_y: bool) -> String {
    let ty = |y: f64| if log_y { y.log10() } else { y };
    let pts: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|(x, y)| x.is_finite() && y.is_finite() && (!log_y || *y > 0.0))
        .map(|(x, y)| (x, ty(y)))
        .collect();
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{t}"><title>{t}</title>"#,
        t = escape(title)
    );
    if pts.is_empty() {
        let _ = write!(
            svg,
            r##"<text x="{}" y="{}" text-anchor="middle" fill="#888">no data</text></svg>"##,
            W / 2.0,
            H / 2.0
        );
        return svg;
    }
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in &pts {
        x0 = x0.min(*x);
        x1 = x1.max(*x);
        y0 = y0.min(*y);
        y1 = y1.max(*y);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        let pad = if y0 == 0.0 { 1.0 } else { y0.abs() * 0.1 };
        y0 -= pad;
        y1 += pad;
    }
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let sx = |x: f64| LEFT + (x - x0) / (x1 - x0) * pw;
    let sy = |y: f64| TOP + (1.0 - (y - y0) / (y1 - y0)) * ph;
    let _ = write!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#bbb"/>"##
    );
    let y_ticks: Vec<(f64, String)> = if log_y {
        // Powers of ten; with less than a decade shown, also 2× and 5× them.
        let (lo, hi) = (y0.floor() as i32, y1.ceil() as i32);
        let inside = |v: f64| v >= y0 - 1e-9 && v <= y1 + 1e-9;
        let mut t: Vec<(f64, String)> = (lo..=hi)
            .map(|e| (f64::from(e), label(10f64.powi(e))))
            .filter(|(v, _)| inside(*v))
            .collect();
        if t.len() < 3 {
            t = (lo..=hi)
                .flat_map(|e| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(e)))
                .map(|v| (v.log10(), label(v)))
                .filter(|(v, _)| inside(*v))
                .collect();
        }
        t
    } else {
        ticks(y0, y1, 5)
            .into_iter()
            .map(|v| (v, label(v)))
            .collect()
    };
    for (v, text) in y_ticks {
        let y = sy(v);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end" font-size="11" fill="#555">{}</text>"##,
            LEFT + pw,
            LEFT - 6.0,
            y + 4.0,
            escape(&text)
        );
    }
    for v in ticks(x0, x1, 6) {
        let x = sx(v);
        let _ = write!(
            svg,
            r##"<text x="{x:.1}" y="{:.1}" text-anchor="middle" font-size="11" fill="#555">{}</text>"##,
            TOP + ph + 15.0,
            escape(&label(v))
        );
    }
    let _ = write!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="12" fill="#333">{}</text>"##,
        LEFT + pw / 2.0,
        H - 6.0,
        escape(x_label)
    );
    for (i, s) in series.iter().enumerate() {
        let mut d = String::new();
        for (x, y) in &s.points {
            if !(x.is_finite() && y.is_finite()) || (log_y && *y <= 0.0) {
                continue;
            }
            let _ = write!(d, "{:.1},{:.1} ", sx(*x), sy(ty(*y)));
        }
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{c}" stroke-width="1.6" points="{}"/>"#,
            d.trim_end(),
            c = escape(&s.color)
        );
        let ly = TOP + 14.0 + 16.0 * i as f64;
        let _ = write!(
            svg,
            r##"<line x1="{:.1}" x2="{:.1}" y1="{ly:.1}" y2="{ly:.1}" stroke="{c}" stroke-width="3"/><text x="{:.1}" y="{:.1}" font-size="12" fill="#333">{}</text>"##,
            LEFT + pw - 130.0,
            LEFT + pw - 112.0,
            LEFT + pw - 106.0,
            ly + 4.0,
            escape(&s.name),
            c = escape(&s.color)
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(0.0, 1.0, 5), vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        assert_eq!(ticks(0.013, 0.048, 4), vec![0.02, 0.03, 0.04]);
        let t = ticks(3.0, 1487.0, 6);
        assert_eq!(t, vec![500.0, 1000.0]);
        assert_eq!(ticks(1.0, 1.0, 5), vec![1.0]);
        assert_eq!(ticks(f64::NAN, 1.0, 5).len(), 1);
    }

    #[test]
    fn charts_are_svg_and_survive_odd_data() {
        let s = |points: Vec<(f64, f64)>| Series {
            name: "loss <train>".into(),
            color: "#c33".into(),
            points,
        };
        let svg = line_chart("t", "step", &[s(vec![(0.0, 1.0), (10.0, 0.1)])], true);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("polyline") && svg.contains("loss &lt;train&gt;"));
        // Less than a decade on a log axis still gets labelled ticks.
        let svg = line_chart("t", "step", &[s(vec![(0.0, 0.9), (10.0, 0.3)])], true);
        assert!(svg.contains(">0.5<") && !svg.contains(">0.2<"), "{svg}");
        for points in [vec![], vec![(1.0, 1.0)], vec![(0.0, f64::NAN), (1.0, -1.0)]] {
            let svg = line_chart("t", "step", &[s(points)], true);
            assert!(svg.ends_with("</svg>") && !svg.contains("NaN"), "{svg}");
        }
    }
}

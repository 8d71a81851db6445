//! Line charts as hand-written SVG.
//!
//! Why not `plotters`: it is not among the project's allowed dependencies, and the charts here
//! are one shape (a few series over three scales, log axes); ~200 lines of our own give
//! byte-stable output (a re-run on the same figures changes nothing in git), text that stays
//! text (no font rasterising, no font files on the build host) and "not measured" drawn as a
//! note rather than as a missing line.

use std::fmt::Write as _;

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 440.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 230.0;
const TOP: f64 = 48.0;
const BOTTOM: f64 = 96.0;

#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub color: &'static str,
    pub dashed: bool,
    /// (services, value); only measured points.
    pub points: Vec<(f64, f64)>,
}

#[derive(Debug, Clone)]
pub struct Chart {
    pub title: String,
    pub y_label: String,
    /// Logarithmic y axis (times and memory span decades); linear otherwise.
    pub log_y: bool,
    /// A horizontal reference line (value, label), e.g. the floor at ratio 1.
    pub reference: Option<(f64, String)>,
    /// The x positions (services) to label.
    pub x_ticks: Vec<f64>,
    pub series: Vec<Series>,
    /// Lines printed under the plot: what is not measured, and the machine.
    pub notes: Vec<String>,
}

impl Chart {
    pub fn render(&self) -> String {
        let (px0, px1) = (LEFT, WIDTH - RIGHT);
        let (py0, py1) = (HEIGHT - BOTTOM, TOP);
        let xs: Vec<f64> = self.x_ticks.iter().map(|x| x.log10()).collect();
        let (xmin, xmax) = bounds(&xs, 0.0);
        let (xmin, xmax) = (xmin - 0.25, xmax + 0.25);
        let mut ys: Vec<f64> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .filter(|y| y.is_finite() && (!self.log_y || *y > 0.0))
            .collect();
        if let Some((r, _)) = self.reference {
            ys.push(r);
        }
        let (ymin, ymax, ticks) = if self.log_y {
            let logs: Vec<f64> = ys.iter().map(|y| y.log10()).collect();
            let (lo, hi) = bounds(&logs, 1.0);
            let (lo, hi) = (lo.floor(), hi.ceil().max(lo.floor() + 1.0));
            let ticks = (lo as i32..=hi as i32)
                .map(|e| (f64::from(e), decade(e)))
                .collect::<Vec<_>>();
            (lo, hi, ticks)
        } else {
            let (_, hi) = bounds(&ys, 1.0);
            let hi = nice(hi * 1.15);
            let step = hi / 5.0;
            let ticks = (0..=5)
                .map(|i| {
                    let v = step * f64::from(i);
                    (v, trim(v))
                })
                .collect();
            (0.0, hi, ticks)
        };
        let fy = |y: f64| {
            let y = if self.log_y { y.log10() } else { y };
            py0 + (y - ymin) / (ymax - ymin) * (py1 - py0)
        };
        let fx = |x: f64| px0 + (x.log10() - xmin) / (xmax - xmin) * (px1 - px0);

        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="24" font-size="14" font-weight="bold">{}</text>"#,
            LEFT,
            xml(&self.title)
        );
        // Grid and y ticks.
        for (v, label) in &ticks {
            let y = if self.log_y {
                py0 + (v - ymin) / (ymax - ymin) * (py1 - py0)
            } else {
                fy(*v)
            };
            let _ = writeln!(
                s,
                r##"<line x1="{px0:.1}" y1="{y:.1}" x2="{px1:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                px0 - 6.0,
                y + 4.0,
                xml(label)
            );
        }
        for x in &self.x_ticks {
            let gx = fx(*x);
            let _ = writeln!(
                s,
                r##"<line x1="{gx:.1}" y1="{py0:.1}" x2="{gx:.1}" y2="{py1:.1}" stroke="#eee"/><text x="{gx:.1}" y="{:.1}" text-anchor="middle">{} services</text>"##,
                py0 + 18.0,
                crate::figures::thousands(*x as usize)
            );
        }
        let _ = writeln!(
            s,
            r##"<rect x="{px0:.1}" y="{py1:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="#444"/>"##,
            px1 - px0,
            py0 - py1
        );
        let _ = writeln!(
            s,
            r#"<text transform="translate(16,{:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
            (py0 + py1) / 2.0,
            xml(&self.y_label)
        );
        if let Some((r, label)) = &self.reference {
            let y = fy(*r);
            let _ = writeln!(
                s,
                r##"<line x1="{px0:.1}" y1="{y:.1}" x2="{px1:.1}" y2="{y:.1}" stroke="#000" stroke-dasharray="2,3"/><text x="{:.1}" y="{:.1}" font-size="11">{}</text>"##,
                px0 + 4.0,
                y - 4.0,
                xml(label)
            );
        }
        // Series and legend.
        for (i, series) in self.series.iter().enumerate() {
            let dash = if series.dashed {
                r#" stroke-dasharray="6,4""#
            } else {
                ""
            };
            let points: Vec<(f64, f64)> = series
                .points
                .iter()
                .filter(|(_, y)| y.is_finite() && (!self.log_y || *y > 0.0))
                .map(|&(x, y)| (fx(x), fy(y)))
                .collect();
            if points.len() > 1 {
                let path: Vec<String> = points
                    .iter()
                    .map(|(x, y)| format!("{x:.1},{y:.1}"))
                    .collect();
                let _ = writeln!(
                    s,
                    r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{dash}/>"#,
                    path.join(" "),
                    series.color
                );
            }
            for (x, y) in &points {
                let fill = if series.dashed { "white" } else { series.color };
                let _ = writeln!(
                    s,
                    r#"<circle cx="{x:.1}" cy="{y:.1}" r="3.5" fill="{fill}" stroke="{}"/>"#,
                    series.color
                );
            }
            let ly = TOP + 12.0 + 20.0 * i as f64;
            let lx = px1 + 14.0;
            let _ = writeln!(
                s,
                r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{}</text>"#,
                lx + 26.0,
                series.color,
                lx + 32.0,
                ly + 4.0,
                xml(&series.name)
            );
        }
        for (i, note) in self.notes.iter().enumerate() {
            let _ = writeln!(
                s,
                r##"<text x="{LEFT}" y="{:.1}" font-size="11" fill="#444">{}</text>"##,
                py0 + 40.0 + 15.0 * i as f64,
                xml(note)
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

/// (min, max) of `v`, or (0, `empty_max`) when empty.
fn bounds(v: &[f64], empty_max: f64) -> (f64, f64) {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if lo.is_finite() && hi.is_finite() {
        (lo, hi)
    } else {
        (0.0, empty_max)
    }
}

/// The smallest of 1, 2, 2.5, 5 x 10^k that is >= `v`.
fn nice(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let e = v.log10().floor();
    let base = 10f64.powf(e);
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * base)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * base)
}

fn decade(e: i32) -> String {
    match e {
        i32::MIN..=-1 => format!("{}", 10f64.powi(e)),
        0..=5 => format!("{}", 10u64.pow(e.unsigned_abs())),
        _ => format!("1e{e}"),
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(log_y: bool, points: Vec<(f64, f64)>) -> Chart {
        Chart {
            title: "t <&>".into(),
            y_label: "ms".into(),
            log_y,
            reference: None,
            x_ticks: vec![1000.0, 10_000.0, 100_000.0],
            series: vec![Series {
                name: "nftables".into(),
                color: "#1f77b4",
                dashed: false,
                points,
            }],
            notes: vec!["ipvs: not measured".into()],
        }
    }

    #[test]
    fn points_land_inside_the_plot_and_decades_are_labelled() {
        let svg = chart(
            true,
            vec![(1000.0, 3.0), (10_000.0, 30.0), (100_000.0, 300.0)],
        )
        .render();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("t &lt;&amp;&gt;"));
        for label in [">1<", ">10<", ">100<", ">1000<", ">10k services<"] {
            assert!(svg.contains(label), "{label} missing:\n{svg}");
        }
        let circles: Vec<(f64, f64)> = svg
            .lines()
            .filter(|l| l.starts_with("<circle"))
            .map(|l| {
                let attr = |name: &str| -> f64 {
                    let start = l.find(&format!("{name}=\"")).expect("attr") + name.len() + 2;
                    l[start..]
                        .split('"')
                        .next()
                        .expect("value")
                        .parse()
                        .expect("number")
                };
                (attr("cx"), attr("cy"))
            })
            .collect();
        assert_eq!(circles.len(), 3);
        // Equal ratios on log axes: equal steps, rising to the right (SVG y grows down).
        let dy1 = circles[0].1 - circles[1].1;
        let dy2 = circles[1].1 - circles[2].1;
        assert!(dy1 > 0.0 && (dy1 - dy2).abs() < 0.2, "{circles:?}");
        for (x, y) in circles {
            assert!((LEFT..=WIDTH - RIGHT).contains(&x) && (TOP..=HEIGHT - BOTTOM).contains(&y));
        }
        assert!(svg.contains("ipvs: not measured"));
    }

    #[test]
    fn a_series_without_points_still_renders_its_legend() {
        let svg = chart(false, Vec::new()).render();
        assert!(svg.contains(">nftables<"));
        assert!(!svg.contains("<polyline"));
    }
}

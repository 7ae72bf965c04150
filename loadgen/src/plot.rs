//! Latency-percentile plots as SVG: latency (log scale) against percentile
//! (on the usual 1 / (1 - p) scale, so p99.99 gets as much room as p50),
//! one curve per run and latency kind, for comparing runs side by side.

use std::fmt::Write;

use crate::report::{Latency, Report};

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 540.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 220.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
/// The x axis ends at 99.999%.
const NINES_MAX: f64 = 5.0;
const COLORS: &[&str] = &[
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// One curve to draw.
pub struct Series<'a> {
    pub name: String,
    pub latency: &'a Latency,
}

/// The curves of some reports: produce acknowledgement and end to end.
pub fn series_of(reports: &[Report]) -> Vec<Series<'_>> {
    let mut series = Vec::new();
    for report in reports {
        for (kind, latency) in [
            ("produce", &report.results.produce_latency),
            ("e2e", &report.results.e2e_latency),
        ] {
            if let Some(latency) = latency {
                series.push(Series {
                    name: format!("{} {kind}", report.label),
                    latency,
                });
            }
        }
    }
    series
}

fn nines(percentile: f64) -> f64 {
    let tail = (1.0 - percentile / 100.0).max(10f64.powf(-NINES_MAX));
    (-tail.log10()).clamp(0.0, NINES_MAX)
}

pub fn render(title: &str, series: &[Series<'_>]) -> String {
    let values = series
        .iter()
        .flat_map(|s| s.latency.spectrum.iter().map(|point| point.1.max(1)));
    let (low, high) = values.fold((u64::MAX, 1u64), |(low, high), v| (low.min(v), high.max(v)));
    let low = if low == u64::MAX { 1 } else { low };
    let decade_low = (low as f64).log10().floor();
    let decade_high = ((high as f64).log10().ceil()).max(decade_low + 1.0);
    let plot_width = WIDTH - LEFT - RIGHT;
    let plot_height = HEIGHT - TOP - BOTTOM;
    let x = |percentile: f64| LEFT + nines(percentile) / NINES_MAX * plot_width;
    let y = |us: u64| {
        let position = ((us.max(1) as f64).log10() - decade_low) / (decade_high - decade_low);
        TOP + plot_height * (1.0 - position)
    };
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="28" font-size="16" text-anchor="middle">{}</text>"#,
        LEFT + plot_width / 2.0,
        escape(title)
    );
    for (nine, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]
        .iter()
        .enumerate()
    {
        let px = LEFT + nine as f64 / NINES_MAX * plot_width;
        let _ = writeln!(
            svg,
            r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{:.1}" stroke="#ddd"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            TOP + plot_height,
            TOP + plot_height + 18.0
        );
    }
    let mut decade = decade_low;
    while decade <= decade_high {
        let us = 10f64.powf(decade) as u64;
        let py = y(us);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_width,
            LEFT - 6.0,
            py + 4.0,
            crate::stats::format_us(us)
        );
        decade += 1.0;
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">percentile</text>"#,
        LEFT + plot_width / 2.0,
        HEIGHT - 16.0
    );
    let _ = writeln!(
        svg,
        r#"<text x="18" y="{}" text-anchor="middle" transform="rotate(-90 18 {})">latency</text>"#,
        TOP + plot_height / 2.0,
        TOP + plot_height / 2.0
    );
    for (index, s) in series.iter().enumerate() {
        let color = COLORS[index % COLORS.len()];
        let points: Vec<String> = s
            .latency
            .spectrum
            .iter()
            .map(|&(percentile, us)| format!("{:.1},{:.1}", x(percentile), y(us)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
        let legend_y = TOP + 10.0 + index as f64 * 34.0;
        let legend_x = LEFT + plot_width + 14.0;
        let _ = writeln!(
            svg,
            r##"<line x1="{legend_x}" y1="{legend_y}" x2="{}" y2="{legend_y}" stroke="{color}" stroke-width="3"/><text x="{}" y="{}">{}</text><text x="{}" y="{}" font-size="10" fill="#555">p99 {} max {}</text>"##,
            legend_x + 20.0,
            legend_x + 26.0,
            legend_y + 4.0,
            escape(&s.name),
            legend_x + 26.0,
            legend_y + 17.0,
            crate::stats::format_us(s.latency.p99_us),
            crate::stats::format_us(s.latency.max_us)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nines_scale() {
        assert_eq!(nines(0.0), 0.0);
        assert!((nines(90.0) - 1.0).abs() < 1e-9);
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
        assert_eq!(nines(100.0), NINES_MAX);
    }

    #[test]
    fn renders_every_series() {
        let latency = Latency {
            count: 3,
            p99_us: 900,
            max_us: 2_000,
            spectrum: vec![(0.0, 100), (50.0, 500), (99.0, 900), (100.0, 2_000)],
            ..Latency::default()
        };
        let series = vec![
            Series {
                name: "sluice <produce>".into(),
                latency: &latency,
            },
            Series {
                name: "tansu produce".into(),
                latency: &latency,
            },
        ];
        let svg = render("t", &series);
        assert!(svg.starts_with("<svg"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("sluice &lt;produce&gt;"));
        assert!(svg.contains("99.99%"));
    }
}

//! The run as a picture: RSS, open descriptors and connections over time,
//! three panels sharing the time axis (plotters, SVG backend, line series).

use std::path::Path;

use plotters::prelude::*;

use crate::sample::Sample;

/// One panel: a title, a unit, and its series (label, value of a sample).
type Panel<'a> = (
    &'a str,
    &'a str,
    Vec<(&'a str, Box<dyn Fn(&Sample) -> Option<f64> + 'a>)>,
);

pub fn draw(path: &Path, title: &str, samples: &[Sample], load_end: f64) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("plot {}: {e}", path.display());
    let panels: Vec<Panel<'_>> = vec![
        (
            "Memory of the whole process (servers and clients)",
            "MiB",
            vec![
                (
                    "RSS",
                    Box::new(|s: &Sample| s.rss.map(|b| b as f64 / (1 << 20) as f64)),
                ),
                (
                    "live heap (Rust allocations)",
                    Box::new(|s: &Sample| Some(s.get("heap_kib") as f64 / 1024.0)),
                ),
            ],
        ),
        (
            "Open descriptors",
            "descriptors",
            vec![("fds", Box::new(|s: &Sample| s.fds.map(|n| n as f64)))],
        ),
        (
            "Connections (both servers)",
            "connections",
            vec![(
                "open",
                Box::new(|s: &Sample| Some(s.get("connections") as f64)),
            )],
        ),
    ];
    let x_max = samples.last().map_or(1.0, |s| s.elapsed).max(1.0);
    let root = SVGBackend::new(path, (900, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = root
        .titled(title, ("sans-serif", 20))
        .map_err(|e| err(&e))?;
    // One colour a panel; a panel's second line in orange.
    let colours = [
        RGBColor(0xd6, 0x27, 0x28),
        RGBColor(0x1f, 0x77, 0xb4),
        RGBColor(0x2c, 0xa0, 0x2c),
    ];
    let second = RGBColor(0xff, 0x7f, 0x0e);
    for (area, (i, (name, unit, series))) in root
        .split_evenly((3, 1))
        .iter()
        .zip(panels.into_iter().enumerate())
    {
        let points: Vec<Vec<(f64, f64)>> = series
            .iter()
            .map(|(_, f)| {
                samples
                    .iter()
                    .filter_map(|s| Some((s.elapsed, f(s)?)))
                    .collect()
            })
            .collect();
        let y_max = points.iter().flatten().map(|p| p.1).fold(1.0, f64::max) * 1.15;
        let mut chart = ChartBuilder::on(area)
            .caption(name, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc(unit)
            .light_line_style(WHITE)
            .draw()
            .map_err(|e| err(&e))?;
        // Where the load stopped and the clients closed.
        chart
            .draw_series(LineSeries::new(
                [(load_end, 0.0), (load_end, y_max)],
                BLACK.mix(0.3),
            ))
            .map_err(|e| err(&e))?;
        let many = series.len() > 1;
        for (j, ((label, _), pts)) in series.iter().zip(points).enumerate() {
            let c = if j == 0 {
                colours[i % colours.len()]
            } else {
                second
            };
            chart
                .draw_series(LineSeries::new(pts, c.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(*label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                });
        }
        if many {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(|e| err(&e))?;
        }
    }
    root.present().map_err(|e| err(&e))
}

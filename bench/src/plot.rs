//! SVG plots (plotters): goodput versus loss (medians with min–max bars)
//! with the (1 − p) × rate limit, and latency CDFs.

use crate::repeat::Summary;
use anyhow::{anyhow, Result};
use plotters::prelude::*;
use std::path::Path;

const COLOURS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(174, 199, 232),
    RGBColor(214, 39, 40),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(152, 223, 138),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
];

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plot: {e:?}")
}

/// Goodput (Mbit/s) against loss (%), one line per system through the
/// medians of its cells, each with a bar from the smallest to the largest
/// run (cells where every run failed are left out of the line and marked
/// with a cross at 0), and the (1 − p) × rate line.
pub fn goodput(file: &Path, cells: &[Summary], rtt_ms: f64, rate_mbit: f64) -> Result<()> {
    let root = SVGBackend::new(file, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let max_loss = cells.iter().map(|c| c.loss_pct).fold(1.0, f64::max);
    let g = |c: &Summary| c.get("goodput_mbit").filter(|s| s.max.is_finite());
    let max_g = cells
        .iter()
        .filter_map(|c| g(c).map(|s| s.max))
        .fold(rate_mbit, f64::max)
        * 1.05;
    let runs = cells.iter().map(|c| c.runs).max().unwrap_or(1);
    let caption = if runs > 1 {
        format!(
            "goodput vs loss, {rtt_ms} ms RTT, {rate_mbit} Mbit/s (median, min-max of {runs} runs)"
        )
    } else {
        format!("goodput vs loss, {rtt_ms} ms RTT, {rate_mbit} Mbit/s")
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(-0.01 * max_loss..max_loss * 1.02, 0.0..max_g)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("loss per direction (%)")
        .y_desc("goodput (Mbit/s)")
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(
            [
                (0.0, rate_mbit),
                (max_loss, rate_mbit * (1.0 - max_loss / 100.0)),
            ],
            BLACK.stroke_width(1),
        ))
        .map_err(err)?
        .label("(1 - p) x rate")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], BLACK));
    let mut names: Vec<&str> = Vec::new();
    for c in cells {
        if !names.contains(&c.system.as_str()) {
            names.push(&c.system);
        }
    }
    let n = names.len().max(1) as f64;
    for (i, name) in names.iter().enumerate() {
        let c = COLOURS[i % COLOURS.len()];
        // Spread the systems a little along x so their bars do not overlap.
        let dx = (i as f64 - (n - 1.0) / 2.0) * max_loss * 0.004;
        let mine: Vec<&Summary> = cells.iter().filter(|s| s.system == *name).collect();
        let pts: Vec<(f64, f64, f64, f64)> = mine
            .iter()
            .filter_map(|s| g(s).map(|sp| (s.loss_pct + dx, sp.min, sp.median, sp.max)))
            .collect();
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|&(x, _, m, _)| (x, m)),
                c.stroke_width(2),
            ))
            .map_err(err)?
            .label(*name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], c.stroke_width(2)));
        chart
            .draw_series(
                pts.iter()
                    .map(|&(x, _, m, _)| Circle::new((x, m), 3, c.filled())),
            )
            .map_err(err)?;
        chart
            .draw_series(
                pts.iter()
                    .map(|&(x, lo, m, hi)| ErrorBar::new_vertical(x, lo, m, hi, c.filled(), 6)),
            )
            .map_err(err)?;
        chart
            .draw_series(
                mine.iter()
                    .filter(|s| g(s).is_none())
                    .map(|s| Cross::new((s.loss_pct + dx, 0.0), 5, c.stroke_width(2))),
            )
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// CDF of times (ms) per named series; x on a log scale.
pub fn cdf(file: &Path, title: &str, x_desc: &str, series: &[(String, Vec<f64>)]) -> Result<()> {
    let root = SVGBackend::new(file, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let all = series.iter().flat_map(|(_, v)| v.iter().copied());
    let max_x = all.clone().fold(1.0, f64::max) * 1.2;
    let min_x = all.fold(f64::INFINITY, f64::min).max(0.01) * 0.8;
    let min_x = if min_x.is_finite() { min_x } else { 0.1 };
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d((min_x..max_x).log_scale(), 0.0..1.0)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc("fraction")
        .draw()
        .map_err(err)?;
    for (i, (name, vals)) in series.iter().enumerate() {
        let c = COLOURS[i % COLOURS.len()];
        let mut v = vals.clone();
        v.sort_by(f64::total_cmp);
        let n = v.len().max(1) as f64;
        let pts: Vec<(f64, f64)> = v
            .iter()
            .enumerate()
            .map(|(k, &x)| (x.max(min_x), (k + 1) as f64 / n))
            .collect();
        chart
            .draw_series(LineSeries::new(pts, c.stroke_width(2)))
            .map_err(err)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

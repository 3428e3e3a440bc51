//! The soak's plot: memory, descriptors, loss, p99 latency and participants in
//! conferences over time, one panel each, with the faults marked.

use crate::verdict::{Fault, Sample};
use benches::plot::{register_font, FONT};
use benches::BenchError;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

fn err(e: impl std::fmt::Display) -> BenchError {
    BenchError::Plot(e.to_string())
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// One line of a panel: its name and (minutes, value) points.
struct Line {
    name: String,
    points: Vec<(f64, f64)>,
}

pub fn draw(
    samples: &[Sample],
    faults: &[Fault],
    title: &str,
    path: &Path,
    font: Option<&Path>,
) -> Result<(), BenchError> {
    register_font(font)?;
    if samples.is_empty() {
        return Err(BenchError::Plot("no samples to plot".into()));
    }
    let root = BitMapBackend::new(path, (1100, 1500)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let root = root.titled(title, (FONT, 22)).map_err(err)?;
    let panels = root.split_evenly((5, 1));
    let names: Vec<String> = samples[0].procs.iter().map(|p| p.name.clone()).collect();
    let t = |s: &Sample| s.end_s / 60.0;
    let per_proc = |f: &dyn Fn(&crate::verdict::ProcSample) -> Option<f64>| -> Vec<Line> {
        names
            .iter()
            .map(|n| Line {
                name: n.clone(),
                points: samples
                    .iter()
                    .filter_map(|s| {
                        let p = s.procs.iter().find(|p| &p.name == n)?;
                        Some((t(s), f(p)?))
                    })
                    .collect(),
            })
            .collect()
    };
    let series = |name: &str, f: &dyn Fn(&Sample) -> f64| -> Vec<Line> {
        vec![Line {
            name: name.into(),
            points: samples.iter().map(|s| (t(s), f(s))).collect(),
        }]
    };
    panel(
        &panels[0],
        "resident memory (MiB)",
        &per_proc(&|p| p.rss_kib.map(|k| k as f64 / 1024.0)),
        faults,
    )?;
    panel(
        &panels[1],
        "open file descriptors",
        &per_proc(&|p| p.fds.map(|f| f as f64)),
        faults,
    )?;
    panel(
        &panels[2],
        "loss per 10 s step (%)",
        &series("loss", &|s| s.loss_pct),
        faults,
    )?;
    panel(
        &panels[3],
        "one-way latency p99 (ms)",
        &series("p99", &|s| s.latency_p99_ms),
        faults,
    )?;
    panel(
        &panels[4],
        "participants in a conference (end of each step)",
        &series("participants", &|s| f64::from(s.in_conference)),
        faults,
    )?;
    root.present().map_err(err)?;
    Ok(())
}

fn panel(area: &Area<'_>, what: &str, lines: &[Line], faults: &[Fault]) -> Result<(), BenchError> {
    let pts = lines.iter().flat_map(|l| l.points.iter());
    let x_max = pts.clone().map(|p| p.0).fold(0.0, f64::max).max(0.1);
    let y_max = pts.map(|p| p.1).fold(0.0, f64::max).max(1e-3) * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(what, (FONT, 16))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("minutes")
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 13))
        .draw()
        .map_err(err)?;
    for f in faults {
        let x = f.at_s / 60.0;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(x, 0.0), (x, y_max)],
                RED.mix(0.6).stroke_width(1),
            )))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(Text::new(
                f.kind.label().to_owned(),
                (x, y_max * 0.97),
                (FONT, 11).into_font().color(&RED),
            )))
            .map_err(err)?;
    }
    for (i, l) in lines.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(l.points.clone(), color.stroke_width(2)))
            .map_err(err)?
            .label(l.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
    }
    if lines.len() > 1 {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font((FONT, 11))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
    }
    Ok(())
}

//! The sweep plot: latency percentiles (left, log scale) and server CPU (right) against
//! offered load (packets out per second, log scale), as a PNG.
//!
//! Text needs a TrueType font. plotters' `ab_glyph` backend reads one we register, so no
//! fontconfig is needed: `--font`, else DejaVu Sans from Debian's `fonts-dejavu-core`.

use crate::report::{RunResult, StepResult};
use crate::BenchError;
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Fonts tried when `--font` is not given.
pub const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
];

pub const FONT: &str = "sans-serif";

fn err(e: impl std::fmt::Display) -> BenchError {
    BenchError::Plot(e.to_string())
}

/// Registers the font once per process.
pub fn register_font(font: Option<&Path>) -> Result<(), BenchError> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    let r = DONE.get_or_init(|| {
        let path: PathBuf = match font {
            Some(p) => p.to_owned(),
            None => FONT_CANDIDATES
                .iter()
                .map(PathBuf::from)
                .find(|p| p.exists())
                .ok_or_else(|| {
                    "no TrueType font found: install fonts-dejavu-core or pass --font".to_owned()
                })?,
        };
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        // plotters keeps the font for the life of the process.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font(FONT, FontStyle::Normal, bytes)
            .map_err(|_| format!("{}: not a usable TrueType font", path.display()))
    });
    r.clone().map_err(BenchError::Plot)
}

/// Draws `run`'s steps into `path`.
pub fn plot(run: &RunResult, path: &Path, font: Option<&Path>) -> Result<(), BenchError> {
    register_font(font)?;
    let steps = &run.steps;
    if steps.is_empty() {
        return Err(BenchError::Plot("no steps to plot".into()));
    }
    let x = |s: &StepResult| s.offered_pps_out.max(1.0);
    let x_min = steps.iter().map(x).fold(f64::MAX, f64::min) / 1.5;
    let x_max = steps.iter().map(x).fold(0.0, f64::max) * 1.5;
    let lat = |v: f64| v.max(0.001);
    let y_min = steps
        .iter()
        .map(|s| lat(s.latency_p50_ms))
        .fold(f64::MAX, f64::min)
        / 2.0;
    let y_max = steps
        .iter()
        .map(|s| lat(s.latency_p999_ms))
        .fold(0.0, f64::max)
        * 2.0;
    let cpu = |s: &StepResult| s.server_cpu_cores.unwrap_or(0.0);
    let cpu_max = (steps.iter().map(cpu).fold(0.0, f64::max) * 1.25).max(1.0);

    let root = BitMapBackend::new(path, (1100, 650)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let title = format!(
        "{}: {} conf x {} part, {} senders, audio {} B{}",
        run.label,
        run.layout.conferences,
        run.layout.participants,
        run.layout.senders,
        run.config.audio_size,
        if run.config.has_video() {
            format!(", video {} B", run.config.video_size)
        } else {
            String::new()
        }
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 22))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .right_y_label_area_size(70)
        .build_cartesian_2d((x_min..x_max).log_scale(), (y_min..y_max).log_scale())
        .map_err(err)?
        .set_secondary_coord((x_min..x_max).log_scale(), 0.0..cpu_max);
    chart
        .configure_mesh()
        .x_desc("offered load (packets out / s)")
        .y_desc("one-way latency (ms)")
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .x_label_formatter(&|v| format!("{:.0}k", v / 1000.0))
        .draw()
        .map_err(err)?;
    chart
        .configure_secondary_axes()
        .y_desc("server CPU (cores)")
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .draw()
        .map_err(err)?;
    type Pick = fn(&StepResult) -> f64;
    let series: [(&str, RGBColor, Pick); 3] = [
        ("p50", BLUE, |s| s.latency_p50_ms),
        ("p99", RGBColor(230, 120, 0), |s| s.latency_p99_ms),
        ("p99.9", RED, |s| s.latency_p999_ms),
    ];
    for (name, color, f) in series {
        let pts: Vec<(f64, f64)> = steps.iter().map(|s| (x(s), lat(f(s)))).collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))
            .map_err(err)?;
    }
    if steps.iter().any(|s| s.server_cpu_cores.is_some()) {
        let pts: Vec<(f64, f64)> = steps.iter().map(|s| (x(s), cpu(s))).collect();
        chart
            .draw_secondary_series(LineSeries::new(pts.clone(), BLACK.stroke_width(2)))
            .map_err(err)?
            .label("server CPU (right)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
        chart
            .draw_secondary_series(pts.into_iter().map(|p| TriangleMarker::new(p, 4, BLACK)))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

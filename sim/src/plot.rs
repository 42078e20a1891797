//! Plots with plotters, as SVG and PNG: price, pressure and utilisation
//! over time, and the job latency distribution, one line per strategy.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;

/// Where the PNG text font is looked for (package `fonts-dejavu-core`).
pub const FONT_PATHS: [&str; 2] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

/// One line: a label and its points.
pub type Line = (String, Vec<(f64, f64)>);

/// A chart to draw.
pub struct Chart<'a> {
    pub file_stem: &'a str,
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub lines: &'a [Line],
}

/// Registers the font once; the error says what is missing.
fn font() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let path = FONT_PATHS
            .iter()
            .find(|p| Path::new(p).exists())
            .ok_or_else(|| {
                format!(
                    "no font for plot text (looked for {}); install fonts-dejavu-core",
                    FONT_PATHS.join(", ")
                )
            })?;
        let bytes = std::fs::read(path).map_err(|e| format!("reading {path}: {e}"))?;
        // plotters keeps fonts for the life of the program.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| format!("{path} is not a usable font"))
    })
    .clone()
}

const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, c: &Chart<'_>) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let points = c.lines.iter().flat_map(|(_, p)| p.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, 0.0f64, f64::MIN);
    for &(x, y) in points {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        (x0, x1) = (0.0, 1.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    y1 += (y1 - y0) * 0.05;
    let mut chart = ChartBuilder::on(&root)
        .caption(c.title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc(c.x_label)
        .y_desc(c.y_label)
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(e)?;
    for (k, (label, pts)) in c.lines.iter().enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), colour.stroke_width(2)))
            .map_err(e)?
            .label(label.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(e)?;
    root.present().map_err(e)?;
    Ok(())
}

/// Draws `chart` as `<dir>/<stem>.svg` and `.png`; returns the files
/// written. Without a font nothing is drawn and the error says why.
pub fn write(dir: &Path, chart: &Chart<'_>) -> Result<Vec<PathBuf>, String> {
    font()?;
    let svg = dir.join(format!("{}.svg", chart.file_stem));
    draw(SVGBackend::new(&svg, (900, 500)).into_drawing_area(), chart)?;
    let png = dir.join(format!("{}.png", chart.file_stem));
    draw(
        BitMapBackend::new(&png, (900, 500)).into_drawing_area(),
        chart,
    )?;
    Ok(vec![svg, png])
}

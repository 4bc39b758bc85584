//! The trend chart: a small PNG of failing nodes, unreachable nodes and
//! anomaly groups over a scope's last sweeps, drawn with plotters' bitmap
//! backend in DejaVu Sans (shipped in `assets/fonts`, compiled in, so the
//! picture never depends on the machine's fonts) and encoded with `png`.
//! The email carries it inline (Content-ID [`CONTENT_ID`]); the report on
//! disk has it as `trend.png` next to `report.html`.

use std::sync::Once;

use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use jiff::tz::TimeZone;

use crate::error::ReportError;
use crate::store::TrendPoint;

/// Width and height in pixels (fits the 640 px report).
pub const SIZE: (u32, u32) = (600, 220);
/// The Content-ID of the chart in the email (`<img src="cid:...">`).
pub const CONTENT_ID: &str = "trend.png@patrol";
/// The file name of the chart next to `report.html`.
pub const FILE_NAME: &str = "trend.png";

const FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");
const FAMILY: &str = "patrol-sans";

const FAILING: RGBColor = RGBColor(0xb9, 0x1c, 0x1c);
const UNREACHABLE: RGBColor = RGBColor(0x57, 0x53, 0x4e);
const GROUPS: RGBColor = RGBColor(0xa1, 0x62, 0x07);

fn register() -> Result<(), ReportError> {
    static ONCE: Once = Once::new();
    let mut ok = true;
    ONCE.call_once(|| ok = register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    if ok {
        Ok(())
    } else {
        Err(ReportError::Chart("the shipped font does not load".into()))
    }
}

/// `MM-DD` of a unix time in milliseconds, in `zone`.
fn month_day(unix_ms: u64, zone: &TimeZone) -> String {
    crate::text::date(unix_ms, zone)
        .get(5..)
        .unwrap_or_default()
        .to_string()
}

/// The chart of `points` (oldest first) as PNG bytes; None with fewer than
/// two points (one sweep is not a trend).
pub fn trend_png(points: &[TrendPoint], zone: &TimeZone) -> Result<Option<Vec<u8>>, ReportError> {
    if points.len() < 2 {
        return Ok(None);
    }
    register()?;
    let (w, h) = SIZE;
    let mut rgb = vec![0u8; (w * h * 3) as usize];
    draw(points, zone, &mut rgb).map_err(ReportError::Chart)?;
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        // A line chart on white: the slowest compression halves the bytes
        // of an email that goes out once a night.
        enc.set_compression(png::Compression::Best);
        enc.set_adaptive_filter(png::AdaptiveFilterType::Adaptive);
        let mut writer = enc
            .write_header()
            .map_err(|e| ReportError::Chart(e.to_string()))?;
        writer
            .write_image_data(&rgb)
            .map_err(|e| ReportError::Chart(e.to_string()))?;
    }
    Ok(Some(out))
}

fn draw(points: &[TrendPoint], zone: &TimeZone, rgb: &mut [u8]) -> Result<(), String> {
    let e = |x: &dyn std::fmt::Display| x.to_string();
    let root = BitMapBackend::with_buffer(rgb, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let n = points.len();
    let top = points
        .iter()
        .map(|p| p.failing.max(p.unreachable).max(p.groups))
        .max()
        .unwrap_or(0)
        .max(4) as f64
        * 1.15;
    let caption = format!(
        "Last {n} sweeps: {} to {}",
        crate::text::date(points[0].started_ms, zone),
        crate::text::date(points[n - 1].started_ms, zone)
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, (FAMILY, 14).into_font().color(&BLACK))
        .margin(8)
        // The last date label is centred on the right edge: room for its
        // right half, so it is not clipped.
        .margin_right(24)
        .x_label_area_size(22)
        .y_label_area_size(40)
        .build_cartesian_2d(0f64..(n - 1) as f64, 0f64..top)
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .light_line_style(RGBColor(0xee, 0xee, 0xee))
        .bold_line_style(RGBColor(0xd6, 0xd3, 0xd1))
        .x_labels(n.min(8))
        .y_labels(5)
        .x_label_formatter(&|x| {
            let i = x.round().clamp(0.0, (n - 1) as f64) as usize;
            month_day(points[i].started_ms, zone)
        })
        .y_label_formatter(&|y| format!("{}", y.round() as i64))
        .label_style((FAMILY, 11).into_font().color(&UNREACHABLE))
        .axis_style(UNREACHABLE)
        .draw()
        .map_err(|x| e(&x))?;
    type Series = (&'static str, RGBColor, fn(&TrendPoint) -> u64);
    let series: [Series; 3] = [
        ("failing nodes", FAILING, |p| p.failing),
        ("unreachable nodes", UNREACHABLE, |p| p.unreachable),
        ("anomaly groups", GROUPS, |p| p.groups),
    ];
    for (label, colour, value) in series {
        let line: Vec<(f64, f64)> = points
            .iter()
            .enumerate()
            .map(|(i, p)| (i as f64, value(p) as f64))
            .collect();
        chart
            .draw_series(LineSeries::new(line.clone(), colour.stroke_width(2)))
            .map_err(|x| e(&x))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2))
            });
        chart
            .draw_series(
                line.into_iter()
                    .map(|xy| Circle::new(xy, 2, colour.filled())),
            )
            .map_err(|x| e(&x))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FAMILY, 11).into_font().color(&BLACK))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(0xd6, 0xd3, 0xd1))
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

//! The report's charts, each a standalone SVG document: the confusion
//! matrix as a heatmap, the training curves, precision-recall curves and the
//! reliability diagram.

use super::svg::{Anchor, PALETTE, PlotArea, Svg, blues};
use crate::metrics::calibration::ReliabilityBin;

/// Rows true, columns predicted; each cell shows its count and its share of
/// the row, and is shaded by that share (so a minority class's row is as
/// readable as the majority's).
pub fn confusion_matrix(labels: &[String], matrix: &[Vec<usize>], title: &str) -> String {
    let k = labels.len().max(1);
    let cell = (520.0 / k as f64).clamp(22.0, 110.0);
    let name_width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(4).min(24) as f64 * 7.5 + 16.0;
    let (left, top) = (name_width + 40.0, 70.0);
    let width = left + cell * k as f64 + 30.0;
    let height = top + cell * k as f64 + name_width.max(40.0) + 40.0;
    let mut svg = Svg::new(width, height);
    svg.text(width / 2.0, 24.0, 15.0, Anchor::Middle, "#111", title);
    svg.text(left + cell * k as f64 / 2.0, 48.0, 12.0, Anchor::Middle, "#444", "count (share of the true class's row)");
    let show_share = cell >= 60.0;
    for (t, row) in matrix.iter().enumerate() {
        let total: usize = row.iter().sum();
        for (p, &count) in row.iter().enumerate() {
            let share = if total == 0 { 0.0 } else { count as f64 / total as f64 };
            let (x, y) = (left + p as f64 * cell, top + t as f64 * cell);
            svg.rect(x, y, cell, cell, &blues(share), Some("#ffffff"));
            let ink = if share > 0.55 { "#ffffff" } else { "#111111" };
            let size = (cell / 4.5).clamp(8.0, 16.0);
            if show_share {
                svg.text(x + cell / 2.0, y + cell / 2.0, size, Anchor::Middle, ink, &count.to_string());
                svg.text(x + cell / 2.0, y + cell / 2.0 + size + 2.0, size * 0.8, Anchor::Middle, ink, &format!("({share:.2})"));
            } else {
                svg.text(x + cell / 2.0, y + cell / 2.0 + size / 3.0, size, Anchor::Middle, ink, &count.to_string());
            }
        }
    }
    let short = |l: &str| if l.chars().count() > 24 { format!("{}…", l.chars().take(23).collect::<String>()) } else { l.to_string() };
    for (i, l) in labels.iter().enumerate() {
        svg.text(left - 8.0, top + (i as f64 + 0.5) * cell + 4.0, 12.0, Anchor::End, "#222", &short(l));
        let x = left + (i as f64 + 0.5) * cell;
        let y = top + k as f64 * cell + 14.0;
        svg.text(x, y, 12.0, Anchor::Middle, "#222", &short(l));
    }
    svg.text(left + cell * k as f64 / 2.0, top + k as f64 * cell + 36.0, 12.0, Anchor::Middle, "#222", "predicted label");
    svg.vertical_text(16.0, top + cell * k as f64 / 2.0, 12.0, "true label");
    svg.finish()
}

/// One series of a line chart.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Draw markers at the points (for sparse series such as evaluations).
    pub markers: bool,
}

/// Two panels side by side: training and evaluation loss against the step,
/// and the evaluation metric against the step.
pub fn training_curves(loss: &[Series], metric: &[Series], metric_name: &str) -> String {
    let (panel_w, panel_h) = (380.0, 260.0);
    let mut svg = Svg::new(2.0 * panel_w + 160.0, panel_h + 120.0);
    svg.text(panel_w + 80.0, 24.0, 15.0, Anchor::Middle, "#111", "Training curves");
    line_panel(&mut svg, 70.0, 50.0, panel_w, panel_h, loss, "loss", None);
    line_panel(&mut svg, 70.0 + panel_w + 80.0, 50.0, panel_w, panel_h, metric, metric_name, Some((0.0, 1.0)));
    svg.finish()
}

/// Two panels side by side: each part's gradient norm against the step,
/// and each part's update-to-weight ratio (`--diagnostics on`).
pub fn diagnostics_curves(grad_norms: &[Series], update_ratios: &[Series]) -> String {
    let (panel_w, panel_h) = (380.0, 300.0);
    let mut svg = Svg::new(2.0 * panel_w + 190.0, panel_h + 120.0);
    svg.text(panel_w + 95.0, 24.0, 15.0, Anchor::Middle, "#111", "Gradient norm and update size per layer");
    line_panel(&mut svg, 70.0, 50.0, panel_w, panel_h, grad_norms, "gradient norm (before clipping)", None);
    // The ratios' tick labels are wider (0.0015): more room on the left.
    line_panel(&mut svg, 70.0 + panel_w + 110.0, 50.0, panel_w, panel_h, update_ratios, "‖Δw‖ / ‖w‖ per step", None);
    svg.finish()
}

fn line_panel(svg: &mut Svg, left: f64, top: f64, w: f64, h: f64, series: &[Series], y_title: &str, unit_range: Option<(f64, f64)>) {
    let all: Vec<(f64, f64)> =
        series.iter().flat_map(|s| s.points.iter().copied()).filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
    let x_max = all.iter().map(|p| p.0).fold(1.0f64, f64::max);
    let (mut y_min, mut y_max) = all.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.1), b.max(p.1)));
    if !y_min.is_finite() {
        (y_min, y_max) = (0.0, 1.0);
    }
    // Metrics in [0, 1] keep that scale unless they crowd its top.
    let y_range = match unit_range {
        Some((a, b)) if y_min >= a && y_max <= b => ((y_min - 0.05).max(a).min(y_min), b),
        _ => (y_min.min(0.0), y_max * 1.05 + 1e-9),
    };
    let area = PlotArea { left, top, width: w, height: h, x_range: (0.0, x_max), y_range };
    area.axes(svg, "optimizer step", y_title);
    for (i, s) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let pts: Vec<(f64, f64)> =
            s.points.iter().filter(|(x, y)| x.is_finite() && y.is_finite()).map(|&(x, y)| (area.x(x), area.y(y))).collect();
        svg.polyline(&pts, color, 2.0, false);
        if s.markers || pts.len() == 1 {
            for &(x, y) in &pts {
                svg.circle(x, y, 3.5, color);
            }
        }
        let ly = top + 16.0 + 16.0 * i as f64;
        svg.line(left + w - 150.0, ly - 4.0, left + w - 130.0, ly - 4.0, color, 2.5, false);
        svg.text(left + w - 124.0, ly, 11.0, Anchor::Start, "#222", &s.name);
    }
}

/// One precision-recall curve: points (recall, precision) and its average precision.
pub struct PrCurve {
    pub name: String,
    pub recall: Vec<f64>,
    pub precision: Vec<f64>,
    pub average_precision: f64,
    /// Marks (recall, precision) of the operating point (the threshold in use).
    pub operating_point: Option<(f64, f64)>,
    pub bold: bool,
}

/// Precision against recall, as step functions (the curve average precision sums).
pub fn pr_curves(curves: &[PrCurve], title: &str) -> String {
    let legend_rows = curves.len().min(12) as f64;
    let (w, h) = (460.0, 360.0);
    let mut svg = Svg::new(w + 260.0, h + 110.0 + (legend_rows - 12.0).max(0.0) * 16.0);
    svg.text((w + 260.0) / 2.0, 24.0, 15.0, Anchor::Middle, "#111", title);
    let area = PlotArea { left: 70.0, top: 46.0, width: w, height: h, x_range: (0.0, 1.0), y_range: (0.0, 1.02) };
    area.axes(&mut svg, "recall", "precision");
    for (i, c) in curves.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        // Points come in decreasing recall; a step holds each precision over its recall interval.
        let mut pts = Vec::new();
        for k in 0..c.recall.len() {
            if k > 0 {
                pts.push((area.x(c.recall[k]), area.y(c.precision[k - 1])));
            }
            pts.push((area.x(c.recall[k]), area.y(c.precision[k])));
        }
        svg.polyline(&pts, color, if c.bold { 2.6 } else { 1.4 }, false);
        if let Some((r, p)) = c.operating_point {
            svg.circle(area.x(r), area.y(p), 5.0, color);
        }
        if i < 12 {
            let ly = 62.0 + 18.0 * i as f64;
            let lx = area.left + w + 20.0;
            svg.line(lx, ly - 4.0, lx + 20.0, ly - 4.0, color, 2.5, false);
            let name: String = c.name.chars().take(22).collect();
            svg.text(lx + 26.0, ly, 11.0, Anchor::Start, "#222", &format!("{name} (AP {:.3})", c.average_precision));
        }
    }
    if curves.iter().any(|c| c.operating_point.is_some()) {
        svg.text(area.left + w + 20.0, 62.0 + 18.0 * legend_rows + 10.0, 11.0, Anchor::Start, "#444", "● the threshold in use");
    }
    svg.finish()
}

/// Accuracy (or positive rate) per confidence bin against the diagonal of
/// perfect calibration: bars before calibration, and markers after it when
/// a temperature was fitted; below, how many samples each bin holds.
pub fn reliability_diagram(before: &[ReliabilityBin], after: Option<&[ReliabilityBin]>, ece: (f64, Option<f64>), x_title: &str) -> String {
    let (w, h, hist_h) = (440.0, 340.0, 70.0);
    let mut svg = Svg::new(w + 280.0, h + hist_h + 130.0);
    let title = match ece.1 {
        Some(a) => format!("Reliability: ECE {:.4} before, {a:.4} after temperature scaling", ece.0),
        None => format!("Reliability: ECE {:.4} (15 bins)", ece.0),
    };
    svg.text((w + 280.0) / 2.0, 24.0, 15.0, Anchor::Middle, "#111", &title);
    let area = PlotArea { left: 70.0, top: 46.0, width: w, height: h, x_range: (0.0, 1.0), y_range: (0.0, 1.0) };
    area.axes(&mut svg, "", "fraction correct");
    svg.line(area.x(0.0), area.y(0.0), area.x(1.0), area.y(1.0), "#999", 1.2, true);
    for b in before.iter().filter(|b| b.count > 0) {
        let (x0, x1) = (area.x(b.lower) + 1.0, area.x(b.upper) - 1.0);
        svg.rect(x0, area.y(b.accuracy), x1 - x0, area.y(0.0) - area.y(b.accuracy), "#1f77b4", None);
        // The gap to the bin's mean confidence (the part ECE sums), and that confidence as a tick.
        let (ya, yc) = (area.y(b.accuracy), area.y(b.confidence));
        svg.translucent_rect(x0, ya.min(yc), x1 - x0, (ya - yc).abs(), "#d62728", 0.45);
        svg.line(x0, yc, x1, yc, "#111", 1.5, false);
    }
    if let Some(after) = after {
        let pts: Vec<(f64, f64)> = after.iter().filter(|b| b.count > 0).map(|b| (area.x(b.confidence), area.y(b.accuracy))).collect();
        svg.polyline(&pts, "#ff7f0e", 2.0, false);
        for &(x, y) in &pts {
            svg.circle(x, y, 4.0, "#ff7f0e");
        }
    }
    // Legend.
    let lx = area.left + w + 20.0;
    svg.rect(lx, 60.0, 14.0, 12.0, "#1f77b4", None);
    svg.text(lx + 20.0, 70.0, 11.0, Anchor::Start, "#222", "accuracy per bin");
    svg.translucent_rect(lx, 80.0, 14.0, 12.0, "#d62728", 0.45);
    svg.line(lx, 86.0, lx + 14.0, 86.0, "#111", 1.5, false);
    svg.text(lx + 20.0, 90.0, 11.0, Anchor::Start, "#222", "gap to mean confidence (line)");
    svg.line(lx, 106.0, lx + 14.0, 106.0, "#999", 1.2, true);
    svg.text(lx + 20.0, 110.0, 11.0, Anchor::Start, "#222", "perfect calibration");
    if after.is_some() {
        svg.circle(lx + 7.0, 126.0, 4.0, "#ff7f0e");
        svg.text(lx + 20.0, 130.0, 11.0, Anchor::Start, "#222", "after temperature scaling");
    }
    // Counts per bin, on a log scale so a near-empty bin still shows.
    let top = area.top + h + 30.0;
    let max = before.iter().map(|b| b.count).max().unwrap_or(1).max(1) as f64;
    let hist = PlotArea { left: area.left, top, width: w, height: hist_h, x_range: (0.0, 1.0), y_range: (0.0, 1.0) };
    svg.rect(hist.left, hist.top, w, hist_h, "#ffffff", Some("#888"));
    for b in before.iter().filter(|b| b.count > 0) {
        let v = (1.0 + b.count as f64).ln() / (1.0 + max).ln();
        let (x0, x1) = (hist.x(b.lower) + 1.0, hist.x(b.upper) - 1.0);
        svg.rect(x0, hist.y(v), x1 - x0, hist.y(0.0) - hist.y(v), "#9ecae1", None);
        svg.text((x0 + x1) / 2.0, hist.y(v) - 2.0, 9.0, Anchor::Middle, "#333", &b.count.to_string());
    }
    for k in 0..=5 {
        let v = k as f64 / 5.0;
        svg.text(hist.x(v), top + hist_h + 16.0, 11.0, Anchor::Middle, "#333", &format!("{v:.1}"));
    }
    svg.text(area.left + w / 2.0, top + hist_h + 36.0, 12.0, Anchor::Middle, "#222", x_title);
    svg.text(lx, top + hist_h / 2.0, 11.0, Anchor::Start, "#444", "samples per bin (log scale)");
    svg.finish()
}

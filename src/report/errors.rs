//! The report's "most confident errors" (`berth eval --report DIR --explain
//! K`): per true class, the K wrong predictions the model was surest of,
//! each with its words highlighted by their attribution to the predicted
//! label. An SVG per class and one `errors.html`; every highlighted word
//! carries its value (`data-v` and a tooltip), as the inspect pictures do.

use std::fmt::Write as _;
use std::path::Path;

use super::svg::{Anchor, Svg, escape};
use crate::error::{Error, Result};
use crate::io::write_atomic;

/// One wrong prediction, explained.
#[derive(Clone, Debug)]
pub struct ExplainedError {
    /// The row of the evaluation file (0-based, header not counted).
    pub row: usize,
    pub true_label: String,
    pub predicted: String,
    /// The predicted label's probability.
    pub confidence: f64,
    /// Each word and its attribution to the predicted label's logit.
    pub words: Vec<(String, f64)>,
    pub completeness_gap: Option<f64>,
}

/// Indices of the errors to show: per true class, the rows whose predicted
/// class differs, most confident first (ties by row), at most `k`.
pub fn most_confident_errors(predicted: &[usize], gold: &[usize], confidence: &[f64], classes: usize, k: usize) -> Vec<Vec<usize>> {
    let mut per_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (row, (&p, &g)) in predicted.iter().zip(gold).enumerate() {
        if p != g && g < classes {
            per_class[g].push(row);
        }
    }
    for rows in &mut per_class {
        rows.sort_by(|&a, &b| confidence[b].total_cmp(&confidence[a]).then(a.cmp(&b)));
        rows.truncate(k);
    }
    per_class
}

/// Red for a word that pushed toward the predicted label, blue for one
/// that pushed away, as strong as its share of the largest magnitude.
fn shade(value: f64, largest: f64) -> String {
    let t = (value.abs() / largest.max(1e-12)).clamp(0.0, 1.0);
    let fade = |full: f64| (255.0 - t * (255.0 - full)).round() as u8;
    if value >= 0.0 {
        format!("#{:02x}{:02x}{:02x}", 255, fade(80.0), fade(80.0))
    } else {
        format!("#{:02x}{:02x}{:02x}", fade(70.0), fade(130.0), 255)
    }
}

/// The largest |attribution| of one error's words.
fn largest(e: &ExplainedError) -> f64 {
    e.words.iter().map(|(_, v)| v.abs()).fold(0.0, f64::max)
}

const SVG_WIDTH: f64 = 900.0;
const WORD_LINE: f64 = 22.0;
const CHAR_WIDTH: f64 = 7.2;

/// Where each word's box goes, wrapping at the picture's width, starting
/// on the line at `y`: -> (x, y, width) per word, and the y below the last line.
fn place_words(words: &[(String, f64)], mut y: f64) -> (Vec<(f64, f64, f64)>, f64) {
    let mut x = 20.0;
    let mut boxes = Vec::with_capacity(words.len());
    for (word, _) in words {
        let w = word.chars().count() as f64 * CHAR_WIDTH + 8.0;
        if x + w > SVG_WIDTH - 20.0 && x > 20.0 {
            x = 20.0;
            y += WORD_LINE;
        }
        boxes.push((x, y, w));
        x += w + 3.0;
    }
    (boxes, y + WORD_LINE + 10.0)
}

/// One class's errors: a line per error (its figures, then its words as
/// shaded boxes, wrapped), each word's box carrying `data-v`, `data-row`
/// and `data-word`.
pub fn errors_svg(class: &str, errors: &[ExplainedError]) -> String {
    let top = 56.0;
    let height = errors.iter().fold(top, |y, e| place_words(&e.words, y + 20.0).1) + 10.0;
    let mut svg = Svg::new(SVG_WIDTH, height);
    svg.text(SVG_WIDTH / 2.0, 24.0, 15.0, Anchor::Middle, "#111", &format!("true label `{class}`: the most confident errors"));
    svg.text(
        SVG_WIDTH / 2.0,
        42.0,
        11.0,
        Anchor::Middle,
        "#555",
        "red: pushed toward the predicted label; blue: away from it (integrated gradients); hover a word for its value",
    );
    let mut y = top;
    for e in errors {
        let gap = e.completeness_gap.map(|g| format!(", completeness gap {:.2}%", 100.0 * g)).unwrap_or_default();
        let line = format!("row {}: predicted `{}` with probability {:.3}{gap}", e.row, e.predicted, e.confidence);
        svg.text(20.0, y + 12.0, 11.0, Anchor::Start, "#222", &line);
        let (boxes, below) = place_words(&e.words, y + 20.0);
        let scale = largest(e);
        for ((word, value), (x, wy, w)) in e.words.iter().zip(boxes) {
            let data = [("row", e.row.to_string()), ("word", word.clone()), ("v", format!("{value}"))];
            svg.valued_rect(x, wy, w, WORD_LINE - 4.0, &shade(*value, scale), &data, &format!("{word}: {value:+.5}"));
            svg.text(x + 4.0, wy + 13.0, 12.0, Anchor::Start, "#111", word);
        }
        y = below;
    }
    svg.finish()
}

/// errors.html: every class's errors with their words highlighted, and the
/// class's SVG beside them (`charts[i]`, a path relative to the report).
pub fn errors_html(title: &str, classes: &[(String, Vec<ExplainedError>, Option<String>)]) -> String {
    let mut html = String::new();
    let _ = writeln!(
        html,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{0}: most confident errors</title>\n<style>\
         body{{font-family:sans-serif;margin:2em;max-width:60em}} .w{{padding:1px 3px;margin:1px;border-radius:3px;display:inline-block}} \
         .case{{margin:1em 0}} .meta{{color:#555;font-size:90%}}</style></head><body>\n<h1>{0}: the most confident errors</h1>\n\
         <p>Each word is shaded by its integrated gradient toward the predicted label's logit: red pushed toward it, blue away \
         from it. Hover a word for its value.</p>",
        escape(title)
    );
    for (class, errors, chart) in classes {
        let _ = writeln!(html, "<h2>true label <code>{}</code></h2>", escape(class));
        if errors.is_empty() {
            let _ = writeln!(html, "<p>No errors.</p>");
            continue;
        }
        for e in errors {
            let scale = largest(e);
            let gap = e.completeness_gap.map(|g| format!(", completeness gap {:.2}%", 100.0 * g)).unwrap_or_default();
            let _ = write!(
                html,
                "<div class=\"case\"><div class=\"meta\">row {}: predicted <code>{}</code> with probability {:.3}{gap}</div>",
                e.row,
                escape(&e.predicted),
                e.confidence
            );
            for (word, value) in &e.words {
                let _ = write!(
                    html,
                    "<span class=\"w\" style=\"background:{}\" data-v=\"{value}\" title=\"{value:+.5}\">{}</span>",
                    shade(*value, scale),
                    escape(word)
                );
            }
            let _ = writeln!(html, "</div>");
        }
        if let Some(chart) = chart {
            let _ = writeln!(html, "<p><img src=\"{}\" alt=\"errors of {}\"></p>", escape(chart), escape(class));
        }
    }
    html.push_str("</body></html>\n");
    html
}

/// The report.md section: per class, a table of its errors with the three
/// words that pushed most toward the wrong label.
pub fn errors_markdown(classes: &[(String, Vec<ExplainedError>, Option<String>)], k: usize) -> String {
    let mut md = format!(
        "\n## Most confident errors\n\nPer true label, the {k} wrong predictions the model was surest of, with the words that \
         pushed most toward the label it chose (integrated gradients of its logit). [errors.html](errors.html) shows every \
         word highlighted.\n"
    );
    for (class, errors, chart) in classes {
        let _ = writeln!(md, "\n### true label `{class}`\n");
        if errors.is_empty() {
            let _ = writeln!(md, "No errors.");
            continue;
        }
        let _ = writeln!(md, "| row | predicted | probability | words for it | completeness gap |\n| ---: | --- | ---: | --- | ---: |");
        for e in errors {
            let mut top: Vec<&(String, f64)> = e.words.iter().filter(|(_, v)| *v > 0.0).collect();
            top.sort_by(|a, b| b.1.total_cmp(&a.1));
            let words: Vec<String> = top.iter().take(3).map(|(w, v)| format!("{} ({v:+.3})", w.replace('|', "\\|"))).collect();
            let gap = e.completeness_gap.map_or("-".to_string(), |g| format!("{:.2}%", 100.0 * g));
            let _ = writeln!(md, "| {} | `{}` | {:.3} | {} | {gap} |", e.row, e.predicted, e.confidence, words.join(", "));
        }
        if let Some(chart) = chart {
            let _ = writeln!(md, "\n![errors of `{class}`]({chart})");
        }
    }
    md
}

/// Writes plots/errors_<i>.svg (one per true label with errors) and
/// errors.html into `dir`, and appends the section to its report.md.
/// `classes`: each true label with its explained errors. -> the files written.
pub fn write_errors(dir: &Path, title: &str, classes: Vec<(String, Vec<ExplainedError>)>, k: usize) -> Result<Vec<String>> {
    let plots = dir.join("plots");
    std::fs::create_dir_all(&plots).map_err(|e| Error::io(&plots, e))?;
    let mut files = Vec::new();
    let mut with_charts = Vec::with_capacity(classes.len());
    for (i, (class, errors)) in classes.into_iter().enumerate() {
        let chart = if errors.is_empty() {
            None
        } else {
            let name = format!("plots/errors_{i}.svg");
            write_atomic(&dir.join(&name), errors_svg(&class, &errors).as_bytes())?;
            files.push(name.clone());
            Some(name)
        };
        with_charts.push((class, errors, chart));
    }
    write_atomic(&dir.join("errors.html"), errors_html(title, &with_charts).as_bytes())?;
    files.push("errors.html".into());
    let report = dir.join("report.md");
    let mut md = std::fs::read_to_string(&report).map_err(|e| Error::io(&report, e))?;
    md.push_str(&errors_markdown(&with_charts, k));
    write_atomic(&report, md.as_bytes())?;
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_grouped_by_true_class_and_sorted_by_confidence() {
        let predicted = [1, 0, 1, 1, 2, 0, 1];
        let gold = [0, 0, 0, 2, 2, 1, 0];
        let confidence = [0.6, 0.9, 0.8, 0.7, 0.99, 0.55, 0.8];
        let picked = most_confident_errors(&predicted, &gold, &confidence, 3, 2);
        // Class 0's errors are rows 0, 2, 6: 2 and 6 tie at 0.8 (row order), 0 is cut.
        assert_eq!(picked, vec![vec![2, 6], vec![5], vec![3]]);
    }

    #[test]
    fn every_highlighted_word_carries_its_value() {
        let e = ExplainedError {
            row: 4,
            true_label: "neg".into(),
            predicted: "pos".into(),
            confidence: 0.97,
            words: vec![("not".into(), -0.25), ("bad".into(), 0.5), ("<at>".into(), 0.0)],
            completeness_gap: Some(0.001),
        };
        let svg = errors_svg("neg", std::slice::from_ref(&e));
        assert!(svg.contains(r#"data-row="4" data-word="bad" data-v="0.5""#), "{svg}");
        assert!(svg.contains(r#"data-word="not" data-v="-0.25""#));
        assert!(svg.contains("&lt;at&gt;"), "words are escaped");
        let html = errors_html("m", &[("neg".into(), vec![e.clone()], Some("plots/errors_0.svg".into()))]);
        assert!(html.contains(r#"data-v="0.5" title="+0.50000">bad</span>"#), "{html}");
        let md = errors_markdown(&[("neg".into(), vec![e], None)], 3);
        assert!(md.contains("| 4 | `pos` | 0.970 | bad (+0.500) | 0.10% |"), "{md}");
        // Toward the prediction is red, away is blue, nothing is white.
        assert_eq!(shade(0.5, 0.5), "#ff5050");
        assert_eq!(shade(-0.5, 0.5), "#4682ff");
        assert_eq!(shade(0.0, 0.5), "#ffffff");
    }
}

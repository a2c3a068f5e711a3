//! What the classification, multi-label and entity reports share: scores from
//! counts with `zero_division=0`, averages over classes, the JSON object of a
//! [`Scores`], and the scikit-learn / seqeval text table.

use std::fmt::Write as _;

use serde_json::{Map, Value, json};

use super::Scores;

/// Column headers of the text report (the keys of the per-class JSON objects).
const SCORE_KEYS: [&str; 4] = ["precision", "recall", "f1-score", "support"];

/// Decimals of `to_text` (scikit-learn's and seqeval's default is 2).
pub(crate) const TEXT_DIGITS: usize = 4;

/// n / d, or 0 when d is 0 (scikit-learn's `zero_division=0`).
pub(crate) fn divide(n: usize, d: usize) -> f64 {
    if d == 0 { 0.0 } else { n as f64 / d as f64 }
}

/// scikit-learn's scores from counts: tp, predicted (tp + fp), true (tp + fn),
/// with F1 = 2·tp / (true + predicted).
pub(crate) fn scores(tp: usize, predicted: usize, truth: usize) -> Scores {
    Scores { precision: divide(tp, predicted), recall: divide(tp, truth), f1: divide(2 * tp, truth + predicted), support: truth }
}

/// Mean of `rows`' scores, weighted by `weights` when given and not all zero
/// (else the plain mean, scikit-learn's fallback; no rows average to 0).
/// `support` is stored as is.
pub(crate) fn average(rows: &[Scores], weights: Option<&[usize]>, support: usize) -> Scores {
    let mean = |get: fn(&Scores) -> f64| -> f64 {
        if rows.is_empty() {
            return 0.0;
        }
        match weights {
            Some(w) if w.iter().any(|&x| x > 0) => {
                // numpy.average: sum(a * w) / sum(w)
                let num: f64 = rows.iter().zip(w).map(|(s, &x)| get(s) * x as f64).sum();
                let den: f64 = w.iter().map(|&x| x as f64).sum();
                num / den
            }
            _ => rows.iter().map(get).sum::<f64>() / rows.len() as f64,
        }
    };
    Scores { precision: mean(|s| s.precision), recall: mean(|s| s.recall), f1: mean(|s| s.f1), support }
}

/// One row of a report's `to_json`: `precision`, `recall`, `f1-score`,
/// `support`, in that order.
pub(crate) fn scores_json(s: &Scores) -> Value {
    json!({ "precision": s.precision, "recall": s.recall, "f1-score": s.f1, "support": s.support })
}

/// The start of a report's `to_json`: one [`scores_json`] object per class
/// name, in order (a later duplicate name replaces the earlier entry's value).
pub(crate) fn per_class_json(names: &[String], per_class: &[Scores]) -> Map<String, Value> {
    names.iter().zip(per_class).map(|(name, s)| (name.clone(), scores_json(s))).collect()
}

/// Width of the name column of the text table: the longest name (in chars,
/// as Python's str.format counts), `weighted avg`, or `digits`.
pub(crate) fn name_width(names: &[String], digits: usize) -> usize {
    names.iter().map(|l| l.chars().count()).max().unwrap_or(0).max("weighted avg".len()).max(digits)
}

/// The text table of scikit-learn's and seqeval's `classification_report`,
/// character for character, with `digits` decimals: the header, a row per
/// class, a blank line, then the `accuracy` row (value and support) if
/// given, and the `averages` rows.
pub(crate) fn text_table(
    names: &[String],
    per_class: &[Scores],
    accuracy: Option<(f64, usize)>,
    averages: &[(&str, &Scores)],
    digits: usize,
) -> String {
    let d = digits;
    let width = name_width(names, d);
    let mut out = String::new();

    // write! into a String cannot fail.
    let _ = write!(out, "{:>width$} ", "");
    for h in SCORE_KEYS {
        let _ = write!(out, " {h:>9}");
    }
    out.push_str("\n\n");
    let row = |out: &mut String, name: &str, s: &Scores| {
        let _ = writeln!(out, "{name:>width$}  {:>9.d$} {:>9.d$} {:>9.d$} {:>9}", s.precision, s.recall, s.f1, s.support);
    };
    for (name, s) in names.iter().zip(per_class) {
        row(&mut out, name, s);
    }
    out.push('\n');
    if let Some((value, support)) = accuracy {
        let _ = writeln!(out, "{:>width$}  {:>9} {:>9} {:>9.d$} {:>9}", "accuracy", "", "", value, support);
    }
    for (name, s) in averages {
        row(&mut out, name, s);
    }
    out
}

//! `--class-weights`: per-class loss weights from the training counts
//! (inverse, sqrt-inverse or effective-number frequency) or from a file.
//! Single-label tasks weight each example's cross-entropy (or focal) term by
//! its class; multi-label tasks weight each label's positive term (PyTorch's
//! `pos_weight`). Computed weights are scaled so that their mean is 1, which
//! keeps the loss, and so the learning rate that suits it, on the scale of
//! the unweighted loss.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The effective-number beta when `effective` names none (Cui et al., 2019).
pub const DEFAULT_BETA: f64 = 0.9999;

/// What `--class-weights` asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum ClassWeightSpec {
    /// w_c ∝ 1 / n_c.
    Inverse,
    /// w_c ∝ 1 / √n_c.
    SqrtInverse,
    /// w_c ∝ (1 − β) / (1 − β^n_c), the inverse of the effective number of samples.
    Effective { beta: f64 },
    /// One weight per class, read as they are (not normalised).
    File(PathBuf),
}

impl ClassWeightSpec {
    pub fn parse(spec: &str) -> Result<ClassWeightSpec> {
        let bad = |m: String| Error::InvalidArgument(format!("--class-weights `{spec}`: {m}"));
        match spec {
            "inverse" => Ok(ClassWeightSpec::Inverse),
            "sqrt-inverse" | "sqrt_inverse" => Ok(ClassWeightSpec::SqrtInverse),
            "effective" => Ok(ClassWeightSpec::Effective { beta: DEFAULT_BETA }),
            _ => {
                if let Some(beta) = spec.strip_prefix("effective:") {
                    let beta: f64 = beta.parse().map_err(|_| bad(format!("beta `{beta}` is not a number")))?;
                    if !(beta > 0.0 && beta < 1.0) {
                        return Err(bad(format!("beta must be in (0, 1), got {beta}")));
                    }
                    return Ok(ClassWeightSpec::Effective { beta });
                }
                if spec.is_empty() {
                    return Err(bad("use inverse, sqrt-inverse, effective[:beta] or a file".into()));
                }
                Ok(ClassWeightSpec::File(PathBuf::from(spec)))
            }
        }
    }

    /// The value as a user writes it (`effective` for the default beta).
    pub fn text(&self) -> String {
        match self {
            ClassWeightSpec::Inverse => "inverse".into(),
            ClassWeightSpec::SqrtInverse => "sqrt-inverse".into(),
            ClassWeightSpec::Effective { beta } if *beta == DEFAULT_BETA => "effective".into(),
            ClassWeightSpec::Effective { beta } => format!("effective:{beta}"),
            ClassWeightSpec::File(path) => path.display().to_string(),
        }
    }

    /// The weights for classes named `labels` with training counts `counts`
    /// (for multi-label: the number of positives of each label, out of `rows`).
    pub fn weights(&self, labels: &[String], counts: &[usize], rows: usize, multi_label: bool) -> Result<Vec<f64>> {
        let raw: Vec<f64> = match self {
            ClassWeightSpec::File(path) => return read_weights_file(path, labels),
            _ if multi_label => return pos_weights(self, labels, counts, rows),
            _ => {
                check_counts(labels, counts, "class")?;
                counts.iter().map(|&n| self.raw(n)).collect()
            }
        };
        Ok(mean_one(&raw))
    }

    /// The unnormalised weight of a class seen n times (n ≥ 1).
    fn raw(&self, n: usize) -> f64 {
        let n = n as f64;
        match self {
            ClassWeightSpec::Inverse => 1.0 / n,
            ClassWeightSpec::SqrtInverse => 1.0 / n.sqrt(),
            ClassWeightSpec::Effective { beta } => (1.0 - beta) / (1.0 - beta.powf(n)),
            ClassWeightSpec::File(_) => 1.0,
        }
    }
}

/// Scales `raw` so that its mean is 1.
pub fn mean_one(raw: &[f64]) -> Vec<f64> {
    let mean = raw.iter().sum::<f64>() / raw.len().max(1) as f64;
    raw.iter().map(|w| w / mean).collect()
}

fn check_counts(labels: &[String], counts: &[usize], what: &str) -> Result<()> {
    if let Some(c) = counts.iter().position(|&n| n == 0) {
        return Err(Error::InvalidArgument(format!(
            "--class-weights: {what} `{}` has no training examples, so its frequency weight is infinite; \
             give the weights in a file, or drop the label",
            labels[c]
        )));
    }
    Ok(())
}

/// Multi-label: a `pos_weight` per label. The positive term of a label seen
/// in n_c of N rows is weighted by the same rule applied to the ratio of its
/// negatives to its positives, so a label with as many negatives as
/// positives keeps 1 (then the weights are scaled to mean 1, as above):
/// inverse gives (N − n)/n (PyTorch's recipe), sqrt-inverse √((N − n)/n),
/// effective the ratio of the negatives' effective number to the positives'.
fn pos_weights(spec: &ClassWeightSpec, labels: &[String], positives: &[usize], rows: usize) -> Result<Vec<f64>> {
    check_counts(labels, positives, "label")?;
    let raw: Vec<f64> = positives
        .iter()
        .map(|&n| {
            let neg = rows.saturating_sub(n).max(1);
            match spec {
                ClassWeightSpec::Inverse => neg as f64 / n as f64,
                ClassWeightSpec::SqrtInverse => (neg as f64 / n as f64).sqrt(),
                _ => spec.raw(n) / spec.raw(neg),
            }
        })
        .collect();
    Ok(mean_one(&raw))
}

/// A weights file: one line per class, in label order; each line is a weight,
/// or a label name and its weight separated by a tab, a comma or spaces (then
/// the names must be the run's labels, in any order). Blank lines and lines
/// starting with `#` are skipped. Every weight must be finite and ≥ 0, and
/// at least one must be positive.
pub fn read_weights_file(path: &Path, labels: &[String]) -> Result<Vec<f64>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut weights: Vec<Option<f64>> = vec![None; labels.len()];
    let mut rows = 0usize;
    let mut by_position = true;
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = match line.rsplit_once(['\t', ',', ' ']) {
            Some((name, value)) => (Some(name.trim()), value.trim()),
            None => (None, line),
        };
        let weight: f64 = value.parse().map_err(|_| Error::input(path, line_no, Some("weight"), format!("`{value}` is not a number")))?;
        if !weight.is_finite() || weight < 0.0 {
            return Err(Error::input(
                path,
                line_no,
                Some("weight"),
                format!("a class weight must be finite and not negative, found {weight}"),
            ));
        }
        let slot = match name {
            Some(name) => {
                by_position = false;
                labels.iter().position(|l| l == name).ok_or_else(|| {
                    Error::input(path, line_no, Some("label"), format!("unknown label `{name}`; the labels are {}", labels.join(", ")))
                })?
            }
            None => rows,
        };
        if slot >= labels.len() {
            return Err(Error::input(
                path,
                line_no,
                None,
                format!("more weights than classes: the model has {} ({})", labels.len(), labels.join(", ")),
            ));
        }
        if weights[slot].replace(weight).is_some() {
            return Err(Error::input(path, line_no, Some("label"), format!("a second weight for `{}`", labels[slot])));
        }
        rows += 1;
    }
    if rows != labels.len() {
        let how = if by_position { "one weight per line, in label order" } else { "one `label weight` line per label" };
        return Err(Error::input(
            path,
            0,
            None,
            format!("{rows} weights for {} classes ({}): give {how}", labels.len(), labels.join(", ")),
        ));
    }
    let weights: Vec<f64> = weights.into_iter().map(|w| w.unwrap_or(0.0)).collect();
    if weights.iter().all(|&w| w == 0.0) {
        return Err(Error::input(path, 0, Some("weight"), "every class weight is 0: nothing would be learned"));
    }
    Ok(weights)
}

/// `ham 0.58  spam 3.71`: the weights beside their labels, two decimals.
pub fn describe(labels: &[String], weights: &[f64]) -> String {
    labels.iter().zip(weights).map(|(l, w)| format!("{l} {w:.2}")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("c{i}")).collect()
    }

    #[test]
    fn spec_parses_every_form() {
        assert_eq!(ClassWeightSpec::parse("inverse").unwrap(), ClassWeightSpec::Inverse);
        assert_eq!(ClassWeightSpec::parse("sqrt-inverse").unwrap(), ClassWeightSpec::SqrtInverse);
        assert_eq!(ClassWeightSpec::parse("effective").unwrap(), ClassWeightSpec::Effective { beta: 0.9999 });
        assert_eq!(ClassWeightSpec::parse("effective:0.99").unwrap(), ClassWeightSpec::Effective { beta: 0.99 });
        assert_eq!(ClassWeightSpec::parse("w.txt").unwrap(), ClassWeightSpec::File("w.txt".into()));
        for bad in ["effective:1", "effective:x", "effective:-0.5", ""] {
            assert!(ClassWeightSpec::parse(bad).unwrap_err().to_string().contains("--class-weights"), "{bad}");
        }
    }

    #[test]
    fn single_label_weights_have_mean_one_and_follow_their_rule() {
        let counts = [9000, 800, 200];
        for spec in [ClassWeightSpec::Inverse, ClassWeightSpec::SqrtInverse, ClassWeightSpec::Effective { beta: 0.9999 }] {
            let w = spec.weights(&names(3), &counts, 10_000, false).unwrap();
            assert!((w.iter().sum::<f64>() / 3.0 - 1.0).abs() < 1e-12, "{spec:?}: {w:?}");
            assert!(w[0] < w[1] && w[1] < w[2], "{spec:?}: rarer classes weigh more: {w:?}");
        }
        let inv = ClassWeightSpec::Inverse.weights(&names(3), &counts, 10_000, false).unwrap();
        assert!((inv[2] / inv[0] - 45.0).abs() < 1e-9);
        let eff = ClassWeightSpec::Effective { beta: 0.9999 }.weights(&names(3), &counts, 10_000, false).unwrap();
        // (1 − β^n)/(1 − β) is the effective number: 9000 samples count as 5934.
        let e = |n: f64| (1.0 - 0.9999f64.powf(n)) / 1e-4;
        assert!((eff[1] / eff[0] - e(9000.0) / e(800.0)).abs() < 1e-9);
        // β → 0 treats every class as one sample: equal weights.
        let flat = ClassWeightSpec::Effective { beta: 1e-9 }.weights(&names(3), &counts, 10_000, false).unwrap();
        assert!(flat.iter().all(|w| (w - 1.0).abs() < 1e-6), "{flat:?}");
    }

    #[test]
    fn a_class_with_no_examples_is_an_error_not_an_infinite_weight() {
        let e = ClassWeightSpec::Inverse.weights(&names(3), &[5, 0, 2], 7, false).unwrap_err().to_string();
        assert!(e.contains("`c1`") && e.contains("no training examples"), "{e}");
    }

    #[test]
    fn multi_label_pos_weights_compare_negatives_to_positives() {
        // 100 rows: label 0 in 50, label 1 in 10, label 2 in 2.
        let w = ClassWeightSpec::Inverse.weights(&names(3), &[50, 10, 2], 100, true).unwrap();
        let raw = [1.0, 9.0, 49.0];
        let mean = raw.iter().sum::<f64>() / 3.0;
        for (got, r) in w.iter().zip(raw) {
            assert!((got - r / mean).abs() < 1e-12, "{w:?}");
        }
        let s = ClassWeightSpec::SqrtInverse.weights(&names(3), &[50, 10, 2], 100, true).unwrap();
        assert!((s[2] / s[1] - (49.0f64 / 9.0).sqrt()).abs() < 1e-12);
        let e = ClassWeightSpec::Effective { beta: 0.9999 }.weights(&names(3), &[50, 10, 2], 100, true).unwrap();
        assert!(e[0] < e[1] && e[1] < e[2]);
    }

    #[test]
    fn describe_rounds_to_two_decimals_beside_each_label() {
        assert_eq!(describe(&["ham".into(), "spam".into()], &[0.5749, 1.4251]), "ham 0.57, spam 1.43");
    }
}

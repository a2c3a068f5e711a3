//! Which loss a training run minimises: cross-entropy (BCE for multi-label)
//! or focal loss, either one with class weights.

use crate::error::{Error, Result};

/// The loss function, before class weights.
#[derive(Clone, Debug, PartialEq)]
pub enum LossKind {
    /// Cross-entropy for single-label and token tasks, BCE-with-logits for
    /// multi-label, MSE for regression.
    Standard,
    /// Softmax focal loss (single-label, token) or sigmoid focal loss
    /// (multi-label). `alpha`: per class for softmax focal (C values, which
    /// multiply the class weights), one value for sigmoid focal (the
    /// positives' weight, 1 − alpha for the negatives).
    Focal { gamma: f64, alpha: Option<Vec<f64>> },
}

/// `--loss`: the task's standard loss or focal loss.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LossName {
    #[default]
    Standard,
    Focal,
}

impl LossName {
    /// The standard loss answers to several names (`ce`, `standard`,
    /// `cross-entropy`, `bce`); it is written back as `ce`.
    pub fn parse(text: &str) -> Result<LossName> {
        match text {
            "standard" | "ce" | "cross-entropy" | "bce" => Ok(LossName::Standard),
            "focal" => Ok(LossName::Focal),
            other => Err(Error::InvalidArgument(format!("unknown --loss `{other}`: use ce (the task's standard loss) or focal"))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            LossName::Standard => "ce",
            LossName::Focal => "focal",
        }
    }
}

/// `--focal-alpha a,b,c`: finite values ≥ 0 (their count is checked against
/// the labels by [`LossSpec::checked`]).
pub fn parse_focal_alpha(text: &str) -> Result<Vec<f64>> {
    text.split(',')
        .map(|v| {
            let x: f64 =
                v.trim().parse().map_err(|_| Error::InvalidArgument(format!("--focal-alpha `{text}`: `{}` is not a number", v.trim())))?;
            if !(x.is_finite() && x >= 0.0) {
                return Err(Error::InvalidArgument(format!("--focal-alpha `{text}`: each value must be finite and ≥ 0, got {x}")));
            }
            Ok(x)
        })
        .collect()
}

impl LossKind {
    /// The loss `name` with its `--focal-gamma` (default 2) and `--focal-alpha`;
    /// the focal settings without `--loss focal` are an error, not ignored.
    pub fn from_parts(name: LossName, gamma: Option<f64>, alpha: Option<&[f64]>) -> Result<LossKind> {
        match name {
            LossName::Standard => {
                if gamma.is_some() || alpha.is_some() {
                    return Err(Error::InvalidArgument("--focal-gamma and --focal-alpha need --loss focal".into()));
                }
                Ok(LossKind::Standard)
            }
            LossName::Focal => {
                let gamma = gamma.unwrap_or(2.0);
                if !(gamma.is_finite() && gamma >= 0.0) {
                    return Err(Error::InvalidArgument(format!(
                        "--focal-gamma must be a finite number ≥ 0 (0 is cross-entropy), got {gamma}"
                    )));
                }
                Ok(LossKind::Focal { gamma, alpha: alpha.map(<[f64]>::to_vec) })
            }
        }
    }
}

/// The loss of a run: its kind and optional class weights (C); for
/// multi-label the weights are each label's `pos_weight`.
#[derive(Clone, Debug, PartialEq)]
pub struct LossSpec {
    pub kind: LossKind,
    pub class_weights: Option<Vec<f64>>,
}

impl Default for LossSpec {
    fn default() -> Self {
        LossSpec { kind: LossKind::Standard, class_weights: None }
    }
}

impl LossSpec {
    /// Plain cross-entropy (or the task's standard loss), optionally weighted.
    pub fn standard(class_weights: Option<&[f64]>) -> LossSpec {
        LossSpec { kind: LossKind::Standard, class_weights: class_weights.map(<[f64]>::to_vec) }
    }

    /// Checks the alpha values against the label count: C values (or one,
    /// for two classes: the positive class's, 1 − it for the other) for
    /// softmax focal; one value in [0, 1] for sigmoid focal. Returns the
    /// spec with a single binary alpha expanded to two.
    pub fn checked(mut self, classes: usize, multi_label: bool) -> Result<LossSpec> {
        if let Some(w) = &self.class_weights
            && w.len() != classes
        {
            return Err(Error::InvalidArgument(format!("{} class weights for {classes} classes", w.len())));
        }
        if let LossKind::Focal { alpha: Some(a), .. } = &mut self.kind {
            if multi_label {
                if a.len() != 1 || a[0] > 1.0 {
                    return Err(Error::InvalidArgument(format!(
                        "--focal-alpha for multi-label is one value in [0, 1] (the positives' weight), got {a:?}"
                    )));
                }
            } else if a.len() == 1 && classes == 2 {
                if a[0] > 1.0 {
                    return Err(Error::InvalidArgument(format!(
                        "--focal-alpha: one value is the positive class's share, in [0, 1]; got {}",
                        a[0]
                    )));
                }
                *a = vec![1.0 - a[0], a[0]];
            } else if a.len() != classes {
                return Err(Error::InvalidArgument(format!("--focal-alpha has {} values for {classes} classes", a.len())));
            }
            if a.iter().all(|&v| v == 0.0) {
                return Err(Error::InvalidArgument("--focal-alpha: every value is 0, so nothing would be learned".into()));
            }
        }
        Ok(self)
    }

    /// Softmax losses: the per-class weights of each row's term (class
    /// weights times focal alpha), when either is set.
    pub fn row_weights(&self) -> Option<Vec<f64>> {
        let alpha = match &self.kind {
            LossKind::Focal { alpha, .. } => alpha.as_deref(),
            LossKind::Standard => None,
        };
        match (&self.class_weights, alpha) {
            (None, None) => None,
            (Some(w), None) => Some(w.clone()),
            (None, Some(a)) => Some(a.to_vec()),
            (Some(w), Some(a)) => Some(w.iter().zip(a).map(|(w, a)| w * a).collect()),
        }
    }

    pub fn describe(&self) -> String {
        match &self.kind {
            LossKind::Standard => "cross-entropy".into(),
            LossKind::Focal { gamma, alpha: None } => format!("focal (gamma {gamma})"),
            LossKind::Focal { gamma, alpha: Some(a) } => {
                format!("focal (gamma {gamma}, alpha {})", a.iter().map(|v| format!("{v:.2}")).collect::<Vec<_>>().join(","))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--loss`, `--focal-gamma` and `--focal-alpha` as text, the way the
    /// options resolve them (`LossName`, `parse_focal_alpha`, then `from_parts`).
    fn parse_kind(loss: &str, gamma: Option<f64>, alpha: Option<&str>) -> Result<LossKind> {
        let alpha = alpha.map(parse_focal_alpha).transpose()?;
        LossKind::from_parts(LossName::parse(loss)?, gamma, alpha.as_deref())
    }

    #[test]
    fn focal_options_are_checked() {
        assert_eq!(parse_kind("ce", None, None).unwrap(), LossKind::Standard);
        assert_eq!(parse_kind("focal", None, None).unwrap(), LossKind::Focal { gamma: 2.0, alpha: None });
        let e = parse_kind("focal", Some(-0.5), None).unwrap_err().to_string();
        assert!(e.contains("--focal-gamma") && e.contains("-0.5"), "{e}");
        assert!(parse_kind("focal", Some(f64::NAN), None).is_err());
        assert!(parse_kind("ce", Some(1.0), None).unwrap_err().to_string().contains("--loss focal"));
        assert!(parse_kind("focal", Some(1.0), Some("0.2,x")).unwrap_err().to_string().contains("`x`"));
        assert!(parse_kind("hinge", None, None).is_err());
    }

    #[test]
    fn alpha_is_checked_against_the_classes_and_a_binary_share_expands() {
        let focal = |a: &[f64]| LossSpec { kind: LossKind::Focal { gamma: 1.0, alpha: Some(a.to_vec()) }, class_weights: None };
        let spec = focal(&[0.75]).checked(2, false).unwrap();
        assert_eq!(spec.kind, LossKind::Focal { gamma: 1.0, alpha: Some(vec![0.25, 0.75]) });
        assert!(focal(&[0.2, 0.3]).checked(3, false).unwrap_err().to_string().contains("2 values for 3 classes"));
        assert!(focal(&[0.2, 0.3]).checked(2, true).is_err());
        assert!(focal(&[0.25]).checked(5, true).is_ok());
        let both = LossSpec { class_weights: Some(vec![2.0, 0.5]), ..focal(&[0.5, 3.0]) };
        assert_eq!(both.row_weights(), Some(vec![1.0, 1.5]));
    }
}

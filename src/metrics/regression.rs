//! Regression metrics: Pearson and Spearman correlation (as
//! `scipy.stats.pearsonr` / `spearmanr`) and mean squared error (as
//! `sklearn.metrics.mean_squared_error`).
//!
//! None of them returns NaN: where scipy would warn and return NaN (a
//! constant input, whose correlation is undefined) or propagate one (a NaN
//! or infinite value), these return [`Error::InvalidArgument`] saying why.

use crate::{Error, Result};

/// Length and finiteness checks shared by every metric; `min` is the least
/// number of points that makes sense.
fn check(name: &str, x: &[f64], y: &[f64], min: usize) -> Result<()> {
    if x.len() != y.len() {
        return Err(Error::InvalidArgument(format!("{name}: x has {} values but y has {}", x.len(), y.len())));
    }
    if x.len() < min {
        return Err(Error::InvalidArgument(format!("{name}: needs at least {min} points, got {}", x.len())));
    }
    for (which, v) in [("x", x), ("y", y)] {
        if let Some(i) = v.iter().position(|a| !a.is_finite()) {
            return Err(Error::InvalidArgument(format!("{name}: {which}[{i}] = {} is not finite", v[i])));
        }
    }
    Ok(())
}

/// An error when every value of `v` is the same: the correlation is then
/// undefined (0/0).
fn check_not_constant(name: &str, which: &str, v: &[f64]) -> Result<()> {
    if v.iter().all(|&a| a == v[0]) {
        return Err(Error::InvalidArgument(format!(
            "{name}: {which} is constant (all {} values are {}): zero variance, the correlation is undefined",
            v.len(),
            v[0]
        )));
    }
    Ok(())
}

/// Pearson's r of x and y from centred sums, clamped to [-1, 1] as scipy does.
/// The inputs are checked (same length, at least 2 points, finite, neither constant).
fn correlation(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (&a, &b) in x.iter().zip(y) {
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    (sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0)
}

/// Pearson's correlation coefficient of `x` and `y`.
///
/// Errors: different lengths, fewer than 2 points, a non-finite value, or a
/// constant `x` or `y` (zero variance).
pub fn pearson(x: &[f64], y: &[f64]) -> Result<f64> {
    check("pearson", x, y, 2)?;
    check_not_constant("pearson", "x", x)?;
    check_not_constant("pearson", "y", y)?;
    Ok(correlation(x, y))
}

/// Spearman's rank correlation: Pearson's r of the ranks, tied values taking
/// the average of the ranks they span (`scipy.stats.rankdata(method="average")`,
/// as `spearmanr` does).
///
/// Errors: as [`pearson`] (a constant input has constant ranks).
pub fn spearman(x: &[f64], y: &[f64]) -> Result<f64> {
    check("spearman", x, y, 2)?;
    check_not_constant("spearman", "x", x)?;
    check_not_constant("spearman", "y", y)?;
    Ok(correlation(&average_ranks(x), &average_ranks(y)))
}

/// 1-based ranks of finite values, ties sharing their average rank.
fn average_ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut ranks = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        // order[i..j] hold equal values (== so that -0.0 ties with 0.0)
        let mut j = i + 1;
        while j < order.len() && v[order[j]] == v[order[i]] {
            j += 1;
        }
        // ranks i+1 ..= j, averaged
        let rank = (i + 1 + j) as f64 / 2.0;
        for &k in &order[i..j] {
            ranks[k] = rank;
        }
        i = j;
    }
    ranks
}

/// Mean squared error: the mean of (x − y)².
///
/// Errors: different lengths, no points, or a non-finite value.
pub fn mse(x: &[f64], y: &[f64]) -> Result<f64> {
    check("mse", x, y, 1)?;
    Ok(x.iter().zip(y).map(|(a, b)| (a - b) * (a - b)).sum::<f64>() / x.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(r: Result<f64>) -> String {
        match r {
            Err(e @ Error::InvalidArgument(_)) => e.to_string(),
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn errors_say_why() {
        assert!(message(pearson(&[1.0, 2.0], &[1.0])).contains("x has 2 values but y has 1"));
        assert!(message(spearman(&[1.0], &[1.0])).contains("at least 2 points"));
        assert!(message(pearson(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0])).contains("x is constant"));
        assert!(message(spearman(&[1.0, 2.0, 3.0], &[0.1, 0.1, 0.1])).contains("y is constant"));
        assert!(message(pearson(&[1.0, f64::NAN], &[1.0, 2.0])).contains("x[1] = NaN is not finite"));
        assert!(message(mse(&[], &[])).contains("at least 1 point"));
        assert!(message(mse(&[1.0], &[f64::INFINITY])).contains("y[0] = inf"));
    }

    #[test]
    fn small_cases() {
        let near = |got: f64, want: f64| assert!((got - want).abs() < 1e-15, "{got} vs {want}");
        near(pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]).unwrap(), 1.0);
        near(pearson(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]).unwrap(), -1.0);
        assert_eq!(average_ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
        near(spearman(&[1.0, 2.0, 3.0], &[1.0, 10.0, 100.0]).unwrap(), 1.0);
        assert!(pearson(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0 + 1e-300]).unwrap() <= 1.0);
        assert_eq!(mse(&[1.0, 2.0], &[2.0, 4.0]).unwrap(), 2.5);
        assert_eq!(mse(&[7.0], &[7.0]).unwrap(), 0.0);
    }
}

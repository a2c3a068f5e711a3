//! Rotary position embeddings (RoPE), in transformers' rotate-half layout:
//! within each head of size D, the pair (i, i + D/2) is turned by the angle
//! position · inv_freq[i]. The backward is the inverse rotation, so one
//! kernel serves both directions.

use super::for_each_row_mut;
use crate::tensor::Float;

/// The angles' cosines and sines, (positions, D/2) each, computed in f64 and
/// rounded once to `T`: a row per position up to the largest one used.
fn tables<T: Float>(positions: &[usize], inv_freq: &[f64]) -> (Vec<T>, Vec<T>) {
    let count = positions.iter().max().map_or(0, |&p| p + 1);
    let half = inv_freq.len();
    let (mut cos, mut sin) = (Vec::with_capacity(count * half), Vec::with_capacity(count * half));
    for p in 0..count {
        for &f in inv_freq {
            let angle = p as f64 * f;
            cos.push(T::from_f64(angle.cos()));
            sin.push(T::from_f64(angle.sin()));
        }
    }
    (cos, sin)
}

/// x (R, H·D), positions (R), inv_freq (D/2) -> (R, H·D): per head,
/// y_i = x_i·cos − x_{i+D/2}·sin and y_{i+D/2} = x_{i+D/2}·cos + x_i·sin;
/// `inverse` turns by the opposite angle (dx from dy).
pub fn rotary<T: Float>(x: &[T], positions: &[usize], heads: usize, inv_freq: &[f64], inverse: bool) -> Vec<T> {
    let half = inv_freq.len();
    let cols = heads * 2 * half;
    let (cos, sin) = tables::<T>(positions, inv_freq);
    let mut y = crate::tensor::pool::take::<T>(x.len());
    for_each_row_mut(&mut y, cols, |r, out| {
        let p = positions[r];
        let (c, s) = (&cos[p * half..(p + 1) * half], &sin[p * half..(p + 1) * half]);
        let row = &x[r * cols..(r + 1) * cols];
        for (head_out, head_in) in out.chunks_mut(2 * half).zip(row.chunks(2 * half)) {
            let (x1, x2) = head_in.split_at(half);
            let (y1, y2) = head_out.split_at_mut(half);
            for i in 0..half {
                let s = if inverse { -s[i] } else { s[i] };
                y1[i] = x1[i] * c[i] - x2[i] * s;
                y2[i] = x2[i] * c[i] + x1[i] * s;
            }
        }
    });
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inverse_rotation_undoes_the_rotation_and_keeps_the_norm() {
        let x: Vec<f64> = (0..2 * 2 * 8).map(|i| ((i * 7919) % 13) as f64 / 5.0 - 1.0).collect();
        let positions = [3, 70];
        let inv_freq: Vec<f64> = (0..4).map(|i| 10_000f64.powf(-(2.0 * i as f64) / 8.0)).collect();
        let y = rotary(&x, &positions, 2, &inv_freq, false);
        assert!(y.iter().zip(&x).any(|(a, b)| (a - b).abs() > 1e-3), "a rotation by non-zero angles moves the vector");
        let norm = |v: &[f64]| v.iter().map(|a| a * a).sum::<f64>();
        assert!((norm(&y) - norm(&x)).abs() < 1e-12 * norm(&x));
        let back = rotary(&y, &positions, 2, &inv_freq, true);
        for (a, b) in back.iter().zip(&x) {
            assert!((a - b).abs() < 1e-14, "{a} vs {b}");
        }
    }

    #[test]
    fn position_zero_is_the_identity() {
        let x: Vec<f32> = (0..8).map(|i| i as f32 - 3.5).collect();
        assert_eq!(rotary(&x, &[0], 1, &[1.0, 0.1, 0.01, 0.001], false), x);
    }
}

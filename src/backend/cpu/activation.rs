//! Element-wise activations: exact-erf GELU (BERT's `hidden_act: "gelu"`),
//! tanh (the pooler) and ReLU (DistilBERT's head).

use rayon::prelude::*;

use crate::tensor::Float;

const CHUNK: usize = 8192;

fn map<T: Float>(x: &[T], f: impl Fn(T) -> T + Sync) -> Vec<T> {
    let mut y = crate::tensor::pool::take::<T>(x.len());
    y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(y, x)| {
        for (o, &v) in y.iter_mut().zip(x) {
            *o = f(v);
        }
    });
    y
}

fn map2<T: Float>(x: &[T], dy: &[T], f: impl Fn(T, T) -> T + Sync) -> Vec<T> {
    let mut dx = crate::tensor::pool::take::<T>(x.len());
    dx.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK).zip(dy.par_chunks(CHUNK))).for_each(|(dx, (x, dy))| {
        // Indexed over equal lengths (checked once), which vectorises where
        // a zip of zips did not.
        let n = dx.len().min(x.len()).min(dy.len());
        let (dx, x, dy) = (&mut dx[..n], &x[..n], &dy[..n]);
        for i in 0..n {
            dx[i] = f(x[i], dy[i]);
        }
    });
    dx
}

/// Φ(x) = (1 + erf(x/√2))/2, computed as erfc(−x/√2)/2: for x < 0 the
/// sum 1 + erf cancels and loses most of f32's digits, erfc does not.
#[inline(always)]
fn normal_cdf<T: Float>(v: T) -> T {
    T::from_f64(0.5) * (-(v * T::from_f64(std::f64::consts::FRAC_1_SQRT_2))).erfc()
}

/// y = x · Φ(x), the exact GELU.
pub fn gelu_fwd<T: Float>(x: &[T]) -> Vec<T> {
    let mut y = crate::tensor::pool::take::<T>(x.len());
    y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(y, x)| gelu_chunk(x, y));
    y
}

/// One chunk of GELU. Where the CPU has AVX-512 the same loop is compiled
/// for 16 lanes instead of the build's 8: the same IEEE operations in the
/// same order, so the same bits, in half the instructions.
pub(super) fn gelu_chunk<T: Float>(x: &[T], y: &mut [T]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512f") {
        // SAFETY: the feature was detected.
        return unsafe { gelu_chunk_avx512(x, y) };
    }
    gelu_chunk_plain(x, y)
}

#[inline(always)]
fn gelu_chunk_plain<T: Float>(x: &[T], y: &mut [T]) {
    for (o, &v) in y.iter_mut().zip(x) {
        *o = v * normal_cdf(v);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gelu_chunk_avx512<T: Float>(x: &[T], y: &mut [T]) {
    gelu_chunk_plain(x, y)
}

/// dx = dy · (Φ(x) + x·φ(x)), the derivative of the same exact form, in
/// one pass (chunks in parallel).
pub fn gelu_bwd<T: Float>(x: &[T], dy: &[T]) -> Vec<T> {
    let mut dx = crate::tensor::pool::take::<T>(x.len());
    dx.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK).zip(dy.par_chunks(CHUNK))).for_each(|(dx, (x, dy))| gelu_bwd_chunk(x, dy, dx));
    dx
}

/// One chunk of GELU's backward; on AVX-512 the same loop on 16 lanes
/// (the same operations, so the same bits).
fn gelu_bwd_chunk<T: Float>(x: &[T], dy: &[T], dx: &mut [T]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512f") {
        // SAFETY: the feature was detected.
        return unsafe { gelu_bwd_chunk_avx512(x, dy, dx) };
    }
    gelu_bwd_chunk_plain(x, dy, dx)
}

#[inline(always)]
fn gelu_bwd_chunk_plain<T: Float>(x: &[T], dy: &[T], dx: &mut [T]) {
    // Indexed over equal lengths (checked once), which vectorises where a
    // zip of zips did not.
    let n = dx.len().min(x.len()).min(dy.len());
    let (dx, x, dy) = (&mut dx[..n], &x[..n], &dy[..n]);
    for i in 0..n {
        dx[i] = dy[i] * gelu_derivative(x[i]);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gelu_bwd_chunk_avx512<T: Float>(x: &[T], dy: &[T], dx: &mut [T]) {
    gelu_bwd_chunk_plain(x, dy, dx)
}

/// GELU's derivative Φ(x) + x·φ(x), for one value.
#[inline(always)]
fn gelu_derivative<T: Float>(v: T) -> T {
    let inv_sqrt_2pi = T::from_f64(1.0 / (2.0 * std::f64::consts::PI).sqrt());
    normal_cdf(v) + v * inv_sqrt_2pi * (-(T::from_f64(0.5) * v * v)).exp()
}

/// x (R, 2I) -> GELU(x[:, :I]) · x[:, I:] (R, I): ModernBERT's gated
/// feed-forward, the first half the input, the second the gate.
pub fn geglu_fwd<T: Float>(x: &[T], inner: usize) -> Vec<T> {
    let rows = x.len() / (2 * inner).max(1);
    let mut y = crate::tensor::pool::take::<T>(rows * inner);
    let rows_per_task = (CHUNK / (2 * inner).max(1)).max(1);
    y.par_chunks_mut(rows_per_task * inner).zip(x.par_chunks(rows_per_task * 2 * inner)).for_each(|(y, x)| {
        for (out, row) in y.chunks_mut(inner).zip(x.chunks(2 * inner)) {
            let (input, gate) = row.split_at(inner);
            for ((o, &v), &g) in out.iter_mut().zip(input).zip(gate) {
                *o = v * normal_cdf(v) * g;
            }
        }
    });
    y
}

/// x (R, 2I), dy (R, I) -> dx (R, 2I): d input = dy · gate · GELU'(input),
/// d gate = dy · GELU(input).
pub fn geglu_bwd<T: Float>(x: &[T], dy: &[T], inner: usize) -> Vec<T> {
    let mut dx = crate::tensor::pool::take::<T>(x.len());
    let rows_per_task = (CHUNK / (2 * inner).max(1)).max(1);
    dx.par_chunks_mut(rows_per_task * 2 * inner)
        .zip(x.par_chunks(rows_per_task * 2 * inner).zip(dy.par_chunks(rows_per_task * inner)))
        .for_each(|(dx, (x, dy))| {
            for ((drow, row), g) in dx.chunks_mut(2 * inner).zip(x.chunks(2 * inner)).zip(dy.chunks(inner)) {
                let (input, gate) = row.split_at(inner);
                let (dinput, dgate) = drow.split_at_mut(inner);
                for j in 0..inner {
                    let v = input[j];
                    dinput[j] = g[j] * gate[j] * gelu_derivative(v);
                    dgate[j] = g[j] * v * normal_cdf(v);
                }
            }
        });
    dx
}

pub fn tanh_fwd<T: Float>(x: &[T]) -> Vec<T> {
    map(x, |v| v.tanh())
}

/// dx = dy · (1 − y²), from the saved output y.
pub fn tanh_bwd<T: Float>(y: &[T], dy: &[T]) -> Vec<T> {
    map2(y, dy, |t, g| g * (T::ONE - t * t))
}

/// y = max(x, 0).
pub fn relu_fwd<T: Float>(x: &[T]) -> Vec<T> {
    map(x, |v| if v > T::ZERO { v } else { T::ZERO })
}

/// dx = dy where the saved output y > 0, else 0 (the subgradient 0 at 0, as PyTorch).
pub fn relu_bwd<T: Float>(y: &[T], dy: &[T]) -> Vec<T> {
    map2(y, dy, |t, g| if t > T::ZERO { g } else { T::ZERO })
}

pub fn scale<T: Float>(x: &[T], s: T) -> Vec<T> {
    map(x, |v| v * s)
}

pub fn add<T: Float>(a: &[T], b: &[T]) -> Vec<T> {
    map2(a, b, |x, y| x + y)
}

/// a += b, in place.
pub fn add_assign<T: Float>(a: &mut [T], b: &[T]) {
    a.par_chunks_mut(CHUNK).zip(b.par_chunks(CHUNK)).for_each(|(a, b)| {
        for (x, &y) in a.iter_mut().zip(b) {
            *x += y;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gelu_on_wide_vectors_gives_the_plain_loops_bits() {
        // Every region of erfc's polynomial, tails, zeros and a ragged length.
        let x: Vec<f32> = (0..20_011).map(|i| (i as f32 - 10_000.0) * 1.37e-3).chain([0.0, -0.0, 9.5, -9.5]).collect();
        let fast = gelu_fwd(&x);
        let mut plain = vec![0f32; x.len()];
        gelu_chunk_plain(&x, &mut plain);
        assert!(fast.iter().zip(&plain).all(|(a, b)| a.to_bits() == b.to_bits()));
    }

    #[test]
    fn gelu_backward_in_one_pass_gives_the_plain_loops_bits_and_the_f64_derivative() {
        let x: Vec<f32> = (0..20_011).map(|i| (i as f32 - 10_000.0) * 1.37e-3).chain([0.0, -0.0, 9.5, -9.5]).collect();
        let dy: Vec<f32> = (0..x.len()).map(|i| ((i * 37) % 101) as f32 * 0.02 - 1.0).collect();
        let fast = gelu_bwd(&x, &dy);
        let mut plain = vec![0f32; x.len()];
        gelu_bwd_chunk_plain(&x, &dy, &mut plain);
        assert!(fast.iter().zip(&plain).all(|(a, b)| a.to_bits() == b.to_bits()));
        // Against the same derivative in f64 (libm's erfc): f32 rounding only.
        let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        let dy64: Vec<f64> = dy.iter().map(|&v| v as f64).collect();
        let want = gelu_bwd(&x64, &dy64);
        for (i, (&got, &want)) in fast.iter().zip(&want).enumerate() {
            assert!((got as f64 - want).abs() <= 1e-6 * (1.0 + want.abs()), "x = {}: {got} against {want}", x[i]);
        }
    }
}

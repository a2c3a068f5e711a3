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
    map(x, |v| v * normal_cdf(v))
}

/// dx = dy · (Φ(x) + x·φ(x)), the derivative of the same exact form.
/// Two passes, Φ first: as one loop with two exponentials the compiler
/// left it scalar, ten times slower than the forward.
pub fn gelu_bwd<T: Float>(x: &[T], dy: &[T]) -> Vec<T> {
    let half = T::from_f64(0.5);
    let inv_sqrt_2pi = T::from_f64(1.0 / (2.0 * std::f64::consts::PI).sqrt());
    let cdf = map(x, normal_cdf);
    let mut dx = map2(x, dy, |v, g| g * v * inv_sqrt_2pi * (-(half * v * v)).exp());
    dx.par_chunks_mut(CHUNK).zip(cdf.par_chunks(CHUNK).zip(dy.par_chunks(CHUNK))).for_each(|(dx, (c, g))| {
        for ((o, &c), &g) in dx.iter_mut().zip(c).zip(g) {
            *o += g * c;
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

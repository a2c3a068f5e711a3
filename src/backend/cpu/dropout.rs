//! Dropout with the counter-based RNG: the mask of element i is a pure
//! function of (seed, stream, i), so backward recomputes it instead of
//! storing it, and the device kernel draws the same mask.

use rayon::prelude::*;

use crate::backend::DropoutKey;
use crate::rng;
use crate::tensor::Float;

/// x (n) -> y (n): element i is dropped when its 24-bit draw is below p·2^24
/// (an integer compare), and kept scaled by 1/(1−p) otherwise; each hash
/// covers two elements (rng::bits32). The same call is its own backward on dy.
pub fn dropout_apply<T: Float>(x: &[T], p: f64, key: DropoutKey) -> Vec<T> {
    const CHUNK: usize = 1 << 14; // even, so a chunk starts on a hash pair
    let draw = MaskDraw::new(p, key);
    let keep_scale = draw.keep_scale::<T>();
    let mut y = crate::tensor::pool::take::<T>(x.len());
    y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).enumerate().for_each(|(c, (y, x))| {
        let base = (c * CHUNK) as u64;
        for (i, (o, &v)) in y.iter_mut().zip(x).enumerate() {
            *o = if draw.keeps(base + i as u64) { v * keep_scale } else { T::ZERO };
        }
    });
    y
}

/// One dropout site's mask as integers: element i is kept when its 24-bit
/// draw is at least `threshold`, and then scaled by `keep_scale`.
#[derive(Clone, Copy, Debug)]
pub struct MaskDraw {
    stream_key: u64,
    threshold: u32,
    keep_scale: f64,
}

impl MaskDraw {
    pub fn new(p: f64, key: DropoutKey) -> MaskDraw {
        MaskDraw {
            stream_key: rng::stream_key(key.seed, key.stream),
            threshold: (p * (1u32 << 24) as f64).round() as u32,
            keep_scale: 1.0 / (1.0 - p),
        }
    }

    /// Whether element `index` is kept.
    #[inline(always)]
    pub fn keeps(&self, index: u64) -> bool {
        rng::bits24(self.stream_key, index) >= self.threshold
    }

    /// What a kept element is multiplied by: 1 / (1 − p).
    pub fn keep_scale<T: Float>(&self) -> T {
        T::from_f64(self.keep_scale)
    }
}

/// x (N, cols) whose row r is row rows[r] of a padded (R, cols) layout ->
/// y (N, cols): element (r, c) takes the mask of padded element rows[r]·cols + c,
/// which [`dropout_apply`] on the padded layout draws there. Its own backward.
pub fn dropout_rows_apply<T: Float>(x: &[T], cols: usize, p: f64, key: DropoutKey, rows: &[usize]) -> Vec<T> {
    let draw = MaskDraw::new(p, key);
    let keep_scale = draw.keep_scale::<T>();
    let mut y = crate::tensor::pool::take::<T>(x.len());
    y.par_chunks_mut(cols.max(1)).zip(x.par_chunks(cols.max(1))).zip(rows.par_iter()).for_each(|((y, x), &row)| {
        let base = (row * cols) as u64;
        for (c, (o, &v)) in y.iter_mut().zip(x).enumerate() {
            *o = if draw.keeps(base + c as u64) { v * keep_scale } else { T::ZERO };
        }
    });
    y
}

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
    let keep_scale = T::from_f64(1.0 / (1.0 - p));
    let threshold = (p * (1u32 << 24) as f64).round() as u32;
    let stream_key = rng::stream_key(key.seed, key.stream);
    let mut y = crate::tensor::pool::take::<T>(x.len());
    y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).enumerate().for_each(|(c, (y, x))| {
        let base = (c * CHUNK) as u64;
        for (i, (o, &v)) in y.iter_mut().zip(x).enumerate() {
            let keep = rng::bits24(stream_key, base + i as u64) >= threshold;
            *o = if keep { v * keep_scale } else { T::ZERO };
        }
    });
    y
}

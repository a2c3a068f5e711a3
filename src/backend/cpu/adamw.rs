//! The optimizer's CPU kernels: the sum of squares behind the global
//! gradient norm, and the AdamW update (src/optim/adamw.rs has the formula).

use rayon::prelude::*;

use crate::backend::AdamWScalars;
use crate::tensor::Float;

/// Elements per parallel block of the reductions and updates below.
const CHUNK: usize = 1 << 14;

/// g (n) -> Σ g², accumulated in f64 whatever the float type: blocks summed
/// in parallel (four f64 lanes each, so they vectorise), the block sums
/// added in order, so the result does not depend on the thread count.
pub fn sum_of_squares<T: Float>(g: &[T]) -> f64 {
    let blocks: Vec<f64> = g.par_chunks(CHUNK).map(block_sum_of_squares).collect();
    blocks.iter().sum()
}

fn block_sum_of_squares<T: Float>(g: &[T]) -> f64 {
    let mut lanes = [0.0f64; 4];
    let whole = g.len() / 4 * 4;
    for quad in g[..whole].chunks_exact(4) {
        for (lane, &v) in lanes.iter_mut().zip(quad) {
            let v = v.to_f64();
            *lane += v * v;
        }
    }
    let tail: f64 = g[whole..].iter().map(|&v| v.to_f64() * v.to_f64()).sum();
    lanes.iter().sum::<f64>() + tail
}

/// g (n) *= factor in place, in parallel blocks (the clip of the gradient norm).
pub fn scale_in_place<T: Float>(g: &mut [T], factor: T) {
    g.par_chunks_mut(CHUNK).for_each(|block| {
        for v in block {
            *v *= factor;
        }
    });
}

/// One update's constants in the kernel's float type, computed in f64 first
/// (the device's launcher does the same in f32), so the two agree.
pub struct AdamWHyper<T> {
    decay_factor: T,
    beta1: T,
    beta2: T,
    one_minus_beta1: T,
    one_minus_beta2: T,
    step_size: T,
    inv_sqrt_bias2: T,
    eps: T,
}

impl<T: Float> AdamWHyper<T> {
    pub fn new(s: &AdamWScalars) -> Self {
        let bias1 = 1.0 - s.beta1.powi(s.step as i32);
        let bias2 = 1.0 - s.beta2.powi(s.step as i32);
        AdamWHyper {
            decay_factor: T::from_f64(1.0 - s.lr * s.weight_decay),
            beta1: T::from_f64(s.beta1),
            beta2: T::from_f64(s.beta2),
            one_minus_beta1: T::from_f64(1.0 - s.beta1),
            one_minus_beta2: T::from_f64(1.0 - s.beta2),
            step_size: T::from_f64(s.lr / bias1),
            inv_sqrt_bias2: T::from_f64(1.0 / bias2.sqrt()),
            eps: T::from_f64(s.eps),
        }
    }
}

/// p, g, m, v (n): p, m and v updated in place, in parallel chunks, with
/// each gradient element multiplied by `grad_scale` first (1 leaves it exact).
pub fn adamw_update<T: Float>(p: &mut [T], g: &[T], m: &mut [T], v: &mut [T], h: &AdamWHyper<T>, grad_scale: T) {
    update_chunks::<T, false>(p, g, m, v, h, grad_scale);
}

/// As [`adamw_update`] (the same bits), also -> (Σ (p_new − p_old)², Σ p_old²)
/// in f64: the update-to-weight ratio of the training diagnostics, from
/// values the update holds in registers anyway.
pub fn adamw_update_measured<T: Float>(p: &mut [T], g: &[T], m: &mut [T], v: &mut [T], h: &AdamWHyper<T>, grad_scale: T) -> (f64, f64) {
    let sums = update_chunks::<T, true>(p, g, m, v, h, grad_scale);
    sums.iter().fold((0.0, 0.0), |(d, w), &(dc, wc)| (d + dc, w + wc))
}

/// The update over parallel chunks; with MEASURE, each chunk's (Σ Δ², Σ p_old²).
fn update_chunks<T: Float, const MEASURE: bool>(
    p: &mut [T],
    g: &[T],
    m: &mut [T],
    v: &mut [T],
    h: &AdamWHyper<T>,
    grad_scale: T,
) -> Vec<(f64, f64)> {
    // Eight independent sums per quantity, so the measured loop still vectorises.
    const LANES: usize = 8;
    let step = |p: &mut T, g: T, m: &mut T, v: &mut T| {
        let gi = g * grad_scale;
        *p *= h.decay_factor;
        *m = h.beta1 * *m + h.one_minus_beta1 * gi;
        *v = h.beta2 * *v + h.one_minus_beta2 * gi * gi;
        let denom = v.sqrt() * h.inv_sqrt_bias2 + h.eps;
        *p -= h.step_size * *m / denom;
    };
    p.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
        .map(|((p, g), (m, v))| {
            if !MEASURE {
                for i in 0..p.len() {
                    step(&mut p[i], g[i], &mut m[i], &mut v[i]);
                }
                return (0.0, 0.0);
            }
            let (mut moved, mut weight) = ([0.0f64; LANES], [0.0f64; LANES]);
            let mut measure = |lane: usize, p: &mut T, g: T, m: &mut T, v: &mut T| {
                let old = *p;
                step(p, g, m, v);
                let delta = p.to_f64() - old.to_f64();
                moved[lane] += delta * delta;
                weight[lane] += old.to_f64() * old.to_f64();
            };
            let whole = p.len() / LANES * LANES;
            let (p_body, p_tail) = p.split_at_mut(whole);
            let (m_body, m_tail) = m.split_at_mut(whole);
            let (v_body, v_tail) = v.split_at_mut(whole);
            for (((p8, g8), m8), v8) in p_body
                .chunks_exact_mut(LANES)
                .zip(g[..whole].chunks_exact(LANES))
                .zip(m_body.chunks_exact_mut(LANES))
                .zip(v_body.chunks_exact_mut(LANES))
            {
                for lane in 0..LANES {
                    measure(lane, &mut p8[lane], g8[lane], &mut m8[lane], &mut v8[lane]);
                }
            }
            for (i, p) in p_tail.iter_mut().enumerate() {
                measure(i, p, g[whole + i], &mut m_tail[i], &mut v_tail[i]);
            }
            (moved.iter().sum(), weight.iter().sum())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_measured_update_gives_the_same_bits_and_its_sums() {
        let n = 3 * CHUNK + 17;
        let start: Vec<f32> = (0..n).map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 700.0).collect();
        let g: Vec<f32> = (0..n).map(|i| ((i * 104729 % 997) as f32 - 498.0) / 300.0).collect();
        let scalars = crate::backend::AdamWScalars { lr: 1e-3, weight_decay: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, step: 3 };
        let h = AdamWHyper::<f32>::new(&scalars);
        let (mut p1, mut m1, mut v1) = (start.clone(), vec![0.1f32; n], vec![0.2f32; n]);
        let (mut p2, mut m2, mut v2) = (p1.clone(), m1.clone(), v1.clone());
        adamw_update(&mut p1, &g, &mut m1, &mut v1, &h, 0.5);
        let (moved, weight) = adamw_update_measured(&mut p2, &g, &mut m2, &mut v2, &h, 0.5);
        assert!(p1 == p2 && m1 == m2 && v1 == v2, "measuring changes no bit");
        let want_moved: f64 = p1.iter().zip(&start).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum();
        let want_weight: f64 = start.iter().map(|&w| (w as f64).powi(2)).sum();
        assert!((moved - want_moved).abs() <= 1e-12 * want_moved && (weight - want_weight).abs() <= 1e-12 * want_weight);
        assert!(moved > 0.0);
    }

    #[test]
    fn the_parallel_sum_of_squares_equals_a_serial_one() {
        let g: Vec<f32> = (0..2 * CHUNK + 5).map(|i| (i % 13) as f32 - 6.0).collect();
        let serial: f64 = g.iter().map(|&v| (v as f64).powi(2)).sum();
        assert_eq!(sum_of_squares(&g), serial, "small integers sum exactly in any order");
        let mut scaled = g.clone();
        scale_in_place(&mut scaled, 0.5f32);
        assert!(scaled.iter().zip(&g).all(|(s, v)| *s == v * 0.5));
    }
}

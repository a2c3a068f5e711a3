//! A fused f32 forward of packed attention for CPUs with AVX-512, one head
//! of one sequence per call: queries in blocks of 16, each block's scores
//! (16, len) made in 4 × 64 register tiles, exponentiated in place, dropped
//! out where training asks for it, multiplied by v in register tiles and
//! normalised on the way out. Nothing (len, len) is ever allocated and no
//! GEMM library is called, so a short sequence at B = 1 does not pay for
//! packing and threading inside every small product.
//!
//! It computes the function of the generic path in
//! [`super::packed_attention`] (which serves f64, other CPUs and head sizes,
//! and windows narrower than a sequence); its sums run in another order,
//! so the two agree to rounding, not bit for bit. `BERTH_CPU_ATTENTION=reference`
//! turns it off, for comparisons.

use std::sync::OnceLock;

use super::dropout::MaskDraw;
use crate::backend::PackedDropout;

/// Queries per block: the rows of the scores buffer.
const QUERY_BLOCK: usize = 16;

/// Which forward the CPU's packed attention runs in f32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionPath {
    /// The fused kernel below.
    Avx512,
    /// The generic path (products through the GEMM library).
    Reference,
}

impl AttentionPath {
    pub fn name(self) -> &'static str {
        match self {
            AttentionPath::Avx512 => "avx512",
            AttentionPath::Reference => "reference",
        }
    }

    /// Whether this CPU can run the path.
    pub fn available(self) -> bool {
        match self {
            AttentionPath::Reference => true,
            #[cfg(target_arch = "x86_64")]
            AttentionPath::Avx512 => std::is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            AttentionPath::Avx512 => false,
        }
    }

    /// Whether the path serves heads of `head_dim` (the fused kernel keeps
    /// a row of a head in 1, 2, 4 or 8 registers of 16 lanes).
    pub fn serves(self, head_dim: usize) -> bool {
        match self {
            AttentionPath::Avx512 => matches!(head_dim, 16 | 32 | 64 | 128),
            AttentionPath::Reference => true,
        }
    }
}

/// The fastest path this CPU has, unless `BERTH_CPU_ATTENTION=reference`.
pub fn best_path() -> AttentionPath {
    static PATH: OnceLock<AttentionPath> = OnceLock::new();
    *PATH.get_or_init(|| {
        if std::env::var("BERTH_CPU_ATTENTION").is_ok_and(|v| v == "reference") {
            return AttentionPath::Reference;
        }
        if AttentionPath::Avx512.available() { AttentionPath::Avx512 } else { AttentionPath::Reference }
    })
}

/// One head of one sequence, as the fused kernel reads it: `len` rows of
/// q, k and v, each `cols` wide, the head at columns h·d..(h + 1)·d.
#[derive(Clone, Copy)]
pub struct HeadInput<'a> {
    pub q: &'a [f32],
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub len: usize,
    pub cols: usize,
    pub head: usize,
    pub head_dim: usize,
    pub scale: f32,
}

/// Dropout of one head's probabilities: the site and where this head sits
/// in the padded layout (sequence s, head h, of `heads`).
#[derive(Clone, Copy)]
pub struct HeadDropout<'a> {
    pub dropout: &'a PackedDropout,
    pub sequence: usize,
    pub head: usize,
    pub heads: usize,
}

/// softmax(q·kᵀ·scale) (dropped out) · v for one head: -> context (len, d).
/// `path` must be available and serve the head size (the caller checks).
pub fn head_context(path: AttentionPath, input: HeadInput, dropout: Option<HeadDropout>) -> Vec<f32> {
    assert!(path.available() && path.serves(input.head_dim) && path == AttentionPath::Avx512);
    let row_end = input.len.saturating_sub(1) * input.cols + (input.head + 1) * input.head_dim;
    assert!(input.len > 0 && [input.q, input.k, input.v].iter().all(|x| x.len() >= row_end));
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX-512F was detected (path.available()); the slices hold every row read (asserted above).
    unsafe {
        match input.head_dim / 16 {
            1 => avx512::head_context::<1, 8>(input, dropout),
            2 => avx512::head_context::<2, 8>(input, dropout),
            4 => avx512::head_context::<4, 4>(input, dropout),
            _ => avx512::head_context::<8, 2>(input, dropout),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("the AVX-512 path is never available off x86-64")
}

/// Multiplies one row of exponentiated scores (query `query`, keys 0..len)
/// by its dropout factors, 1/(1 − p) or 0, drawn at its place in the padded
/// (B·H, T, T) layout, as the generic path's mask draws them.
fn drop_row(row: &mut [f32], query: usize, drop: HeadDropout) {
    let draw = MaskDraw::new(drop.dropout.dropout.p, drop.dropout.dropout.key);
    let (t, keep_scale) = (drop.dropout.padded_len, draw.keep_scale::<f32>());
    let base = (((drop.sequence * drop.heads + drop.head) * t + query) * t) as u64;
    for (j, x) in row.iter_mut().enumerate() {
        *x = if draw.keeps(base + j as u64) { *x * keep_scale } else { 0.0 };
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{HeadDropout, HeadInput, QUERY_BLOCK, drop_row};

    /// The head's context, d = 16·NV, P·V in tiles of R query rows.
    ///
    /// # Safety
    /// The CPU has AVX-512F; the input slices hold every row read.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn head_context<const NV: usize, const R: usize>(x: HeadInput, dropout: Option<HeadDropout>) -> Vec<f32> {
        let (len, cols, d) = (x.len, x.cols, 16 * NV);
        let column = x.head * d;
        let keys = len.next_multiple_of(16);
        let queries = len.next_multiple_of(QUERY_BLOCK);
        // q scaled (queries, d), k transposed (d, keys) and v (len, d), contiguous;
        // the padding rows and columns are 0, so every tile is whole.
        let mut q = vec![0f32; queries * d];
        let mut kt = vec![0f32; d * keys];
        let mut v = Vec::with_capacity(len * d);
        for i in 0..len {
            let at = i * cols + column;
            for (o, &value) in q[i * d..(i + 1) * d].iter_mut().zip(&x.q[at..at + d]) {
                *o = value * x.scale;
            }
            for (c, &value) in x.k[at..at + d].iter().enumerate() {
                kt[c * keys + i] = value;
            }
            v.extend_from_slice(&x.v[at..at + d]);
        }
        let mut scores = vec![0f32; QUERY_BLOCK * keys];
        let mut out = vec![0f32; queries * d];
        let mut inv_sums = [0f32; QUERY_BLOCK];
        for q0 in (0..len).step_by(QUERY_BLOCK) {
            for r0 in (0..QUERY_BLOCK).step_by(4) {
                // SAFETY (whole loop): rows q0 + r0 .. + 4 of q lie below `queries`;
                // each tile's keys j0 .. j0 + 16·NK lie below `keys`, and its
                // four score rows below QUERY_BLOCK.
                unsafe {
                    let rows = q.as_ptr().add((q0 + r0) * d);
                    let s = scores.as_mut_ptr().add(r0 * keys);
                    let mut j0 = 0;
                    while j0 + 64 <= keys {
                        score_tile::<4>(rows, d, kt.as_ptr().add(j0), keys, s.add(j0));
                        j0 += 64;
                    }
                    match (keys - j0) / 16 {
                        1 => score_tile::<1>(rows, d, kt.as_ptr().add(j0), keys, s.add(j0)),
                        2 => score_tile::<2>(rows, d, kt.as_ptr().add(j0), keys, s.add(j0)),
                        3 => score_tile::<3>(rows, d, kt.as_ptr().add(j0), keys, s.add(j0)),
                        _ => {}
                    }
                }
            }
            let real = (len - q0).min(QUERY_BLOCK);
            for (r, inv_sum) in inv_sums.iter_mut().enumerate().take(real) {
                let row = &mut scores[r * keys..r * keys + len];
                // SAFETY: AVX-512F is enabled in this function.
                *inv_sum = 1.0 / unsafe { exp_in_place(row) };
                if let Some(drop) = dropout {
                    drop_row(row, q0 + r, drop);
                }
            }
            for r0 in (0..QUERY_BLOCK).step_by(R) {
                // SAFETY: score rows r0 .. r0 + R lie below QUERY_BLOCK (R divides
                // it), keys 0..len of each are written, v holds len rows, and
                // out rows q0 + r0 .. + R lie below `queries`.
                unsafe {
                    context_tile::<NV, R>(
                        scores.as_ptr().add(r0 * keys),
                        keys,
                        v.as_ptr(),
                        len,
                        &inv_sums[r0..r0 + R],
                        out.as_mut_ptr().add((q0 + r0) * d),
                    );
                }
            }
        }
        out.truncate(len * d);
        out
    }

    /// Scores of 4 query rows (q, d apart) against 16·NK keys: s[r][j] =
    /// Σ_c q[r][c] · kt[c][j], kt's rows `ld` apart, s's rows `ld` apart.
    #[target_feature(enable = "avx512f")]
    unsafe fn score_tile<const NK: usize>(q: *const f32, d: usize, kt: *const f32, ld: usize, s: *mut f32) {
        let mut acc = [[_mm512_setzero_ps(); NK]; 4];
        for c in 0..d {
            // SAFETY: the caller's bounds.
            unsafe {
                let mut k = [_mm512_setzero_ps(); NK];
                for (t, k) in k.iter_mut().enumerate() {
                    *k = _mm512_loadu_ps(kt.add(c * ld + 16 * t));
                }
                for (r, acc) in acc.iter_mut().enumerate() {
                    let b = _mm512_set1_ps(*q.add(r * d + c));
                    for t in 0..NK {
                        acc[t] = _mm512_fmadd_ps(b, k[t], acc[t]);
                    }
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (t, &lanes) in acc.iter().enumerate() {
                // SAFETY: the caller's bounds.
                unsafe { _mm512_storeu_ps(s.add(r * ld + 16 * t), lanes) };
            }
        }
    }

    /// out[r] = inv_sums[r] · Σ_j p[r][j] · v[j] for R rows (p's rows `ld`
    /// apart, v (len, 16·NV), out's rows 16·NV apart).
    #[target_feature(enable = "avx512f")]
    unsafe fn context_tile<const NV: usize, const R: usize>(
        p: *const f32,
        ld: usize,
        v: *const f32,
        len: usize,
        inv_sums: &[f32],
        out: *mut f32,
    ) {
        let d = 16 * NV;
        let mut acc = [[_mm512_setzero_ps(); NV]; R];
        for j in 0..len {
            // SAFETY: the caller's bounds.
            unsafe {
                let mut vj = [_mm512_setzero_ps(); NV];
                for (t, vj) in vj.iter_mut().enumerate() {
                    *vj = _mm512_loadu_ps(v.add(j * d + 16 * t));
                }
                for (r, acc) in acc.iter_mut().enumerate() {
                    let b = _mm512_set1_ps(*p.add(r * ld + j));
                    for t in 0..NV {
                        acc[t] = _mm512_fmadd_ps(b, vj[t], acc[t]);
                    }
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            let inv = _mm512_set1_ps(inv_sums[r]);
            for (t, &lanes) in acc.iter().enumerate() {
                // SAFETY: the caller's bounds.
                unsafe { _mm512_storeu_ps(out.add(r * d + 16 * t), _mm512_mul_ps(lanes, inv)) };
            }
        }
    }

    /// row -> exp(row − max(row)) in place; returns the sum.
    #[target_feature(enable = "avx512f")]
    unsafe fn exp_in_place(row: &mut [f32]) -> f32 {
        let n = row.len();
        let tail = |i: usize| -> __mmask16 { if n - i >= 16 { 0xffff } else { (1u16 << (n - i)) - 1 } };
        let mut max = _mm512_set1_ps(f32::MIN);
        for i in (0..n).step_by(16) {
            // SAFETY: the mask covers lanes i..min(i + 16, n) only.
            max = _mm512_max_ps(max, unsafe { _mm512_mask_loadu_ps(max, tail(i), row.as_ptr().add(i)) });
        }
        let max = _mm512_set1_ps(_mm512_reduce_max_ps(max));
        let mut sum = _mm512_setzero_ps();
        for i in (0..n).step_by(16) {
            let m = tail(i);
            // SAFETY: as above.
            unsafe {
                let e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, row.as_ptr().add(i)), max));
                _mm512_mask_storeu_ps(row.as_mut_ptr().add(i), m, e);
                sum = _mm512_add_ps(sum, _mm512_maskz_mov_ps(m, e));
            }
        }
        _mm512_reduce_add_ps(sum)
    }

    /// e^x on 16 lanes: the polynomial of `fast_f32::exp` (x = n·ln2 + r,
    /// a degree-7 Taylor polynomial of e^r, 2^n from the exponent bits).
    #[target_feature(enable = "avx512f")]
    fn exp16(x: __m512) -> __m512 {
        const ROUNDER: f32 = 12_582_912.0;
        let x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0)), _mm512_set1_ps(88.0));
        let biased = _mm512_fmadd_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E), _mm512_set1_ps(ROUNDER));
        let n = _mm512_sub_ps(biased, _mm512_set1_ps(ROUNDER));
        let n_int = _mm512_sub_epi32(_mm512_castps_si512(biased), _mm512_set1_epi32(ROUNDER.to_bits() as i32));
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_145_75), x);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428_606_8e-6), r);
        let mut p = _mm512_set1_ps(1.0 / 5040.0);
        for c in [1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
        }
        let scale = _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(n_int, _mm512_set1_epi32(127))));
        _mm512_mul_ps(p, scale)
    }
}

#[cfg(test)]
mod tests {
    use super::AttentionPath;
    use crate::backend::cpu::packed_attention::{packed_attention_fwd, packed_attention_fwd_on};
    use crate::backend::{AttentionDropout, DropoutKey, PackedAttentionMode, PackedDropout};

    /// Values in [−2, 2) from a fixed LCG: wide enough that softmax rows
    /// are far from uniform.
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
            })
            .collect()
    }

    /// The fused kernel against the generic path evaluated in f64, on ragged
    /// sequence lengths (1, lengths that are no multiple of a tile) and every
    /// head size it serves, with and without dropout, windows that reach
    /// every key included.
    #[test]
    fn fused_forward_equals_the_generic_path_in_f64() {
        if !AttentionPath::Avx512.available() {
            println!("SKIP: this CPU has no AVX-512F; the fused attention path is not tested here");
            return;
        }
        let lens = [1usize, 3, 17, 64, 130, 16];
        let n: usize = lens.iter().sum();
        let heads = 3;
        let padded_len = *lens.iter().max().unwrap();
        let dropout = PackedDropout { dropout: AttentionDropout { p: 0.25, key: DropoutKey { seed: 9, stream: 4 } }, padded_len };
        let modes = [
            PackedAttentionMode::default(),
            PackedAttentionMode { window: None, dropout: Some(dropout) },
            PackedAttentionMode { window: Some(padded_len), dropout: None },
        ];
        for d in [16, 32, 64, 128] {
            let cols = heads * d;
            let [q, k, v] = [1, 2, 3].map(|seed| values(n * cols, seed + d as u64));
            let scale = 1.0 / (d as f64).sqrt();
            for mode in modes {
                let fused = packed_attention_fwd_on(AttentionPath::Avx512, (&q, &k, &v), &lens, heads, scale, mode);
                let wide = |x: &[f32]| x.iter().map(|&x| x as f64).collect::<Vec<_>>();
                let exact = packed_attention_fwd(&wide(&q), &wide(&k), &wide(&v), &lens, heads, scale, mode);
                let reference = packed_attention_fwd_on(AttentionPath::Reference, (&q, &k, &v), &lens, heads, scale, mode);
                let worst = |got: &[f32]| got.iter().zip(&exact).map(|(&g, &e)| (g as f64 - e).abs()).fold(0.0, f64::max);
                let (fused_error, reference_error) = (worst(&fused), worst(&reference));
                // The f32 generic path's own error sets the scale: the fused one
                // may differ in rounding, not in kind.
                assert!(
                    fused_error < 2e-5 && fused_error < 4.0 * reference_error.max(1e-6),
                    "d {d}, {mode:?}: fused error {fused_error}, generic f32 error {reference_error}"
                );
                let mean_abs = exact.iter().map(|x| x.abs()).sum::<f64>() / exact.len() as f64;
                assert!(mean_abs > 0.05, "the context is not trivially small ({mean_abs})");
            }
        }
    }

    /// Attention on one fused q|k|v projection's output equals attention on
    /// the three apart: bit for bit in f32 (the same kernel, reading in
    /// place) and in f64 (the generic path, on the split columns).
    #[test]
    fn qkv_side_by_side_equals_the_three_apart() {
        use crate::backend::cpu::packed_attention::{packed_attention_fwd_f32, packed_attention_qkv_fwd, packed_attention_qkv_fwd_f32};
        let (lens, heads, d) = ([5usize, 1, 33], 4, 16);
        let (n, width) = (39, 4 * 16);
        let [q, k, v] = [1, 2, 3].map(|seed| values(n * width, seed));
        let qkv: Vec<f32> =
            (0..n).flat_map(|r| [&q, &k, &v].into_iter().flat_map(move |x| x[r * width..(r + 1) * width].to_vec())).collect();
        let apart = packed_attention_fwd_f32(&q, &k, &v, &lens, heads, 0.25, PackedAttentionMode::default());
        let joined = packed_attention_qkv_fwd_f32(&qkv, &lens, heads, 0.25);
        assert!(apart.iter().zip(&joined).all(|(a, b)| a.to_bits() == b.to_bits()), "f32: fused q|k|v changed the context");
        let wide = |x: &[f32]| x.iter().map(|&x| x as f64).collect::<Vec<_>>();
        let apart = packed_attention_fwd(&wide(&q), &wide(&k), &wide(&v), &lens, heads, 0.25, PackedAttentionMode::default());
        let joined = packed_attention_qkv_fwd(&wide(&qkv), &lens, heads, 0.25);
        assert_eq!(apart, joined, "f64: the split columns changed the context");
        assert_eq!(joined.len(), n * heads * d);
    }

    /// Dropout really drops: another key changes most of the context, and
    /// so does turning it off.
    #[test]
    fn fused_dropout_follows_its_key() {
        if !AttentionPath::Avx512.available() {
            println!("SKIP: this CPU has no AVX-512F; the fused attention path is not tested here");
            return;
        }
        let (lens, heads, d) = ([40usize, 7], 2, 32);
        let n = 47;
        let [q, k, v] = [1, 2, 3].map(|seed| values(n * heads * d, seed));
        let mode = |seed| PackedAttentionMode {
            window: None,
            dropout: Some(PackedDropout { dropout: AttentionDropout { p: 0.25, key: DropoutKey { seed, stream: 1 } }, padded_len: 40 }),
        };
        let run = |m| packed_attention_fwd_on(AttentionPath::Avx512, (&q, &k, &v), &lens, heads, 0.2, m);
        let (a, b, plain) = (run(mode(1)), run(mode(2)), run(PackedAttentionMode::default()));
        let differs = |x: &[f32], y: &[f32]| x.iter().zip(y).filter(|(x, y)| (*x - *y).abs() > 1e-4).count();
        assert!(differs(&a, &b) > a.len() / 2, "another dropout key barely changes the context");
        assert!(differs(&a, &plain) > a.len() / 2, "dropout barely changes the context");
    }
}

//! BF16 linear layers for CPU inference (`--precision bf16`): the weight
//! rounded to BF16 and packed once at load, each call's input rounded to
//! BF16, products summed in f32.
//!
//! The layout is `packed_linear.rs`'s panels of 64 outputs with inputs
//! taken in pairs: for each pair (k, k+1), the panel's 64 outputs × 2
//! weights side by side, (w[o, k], w[o, k+1]) in one 32-bit lane. That is
//! the operand of AVX512_BF16's `vdpbf16ps`, which adds both products of a
//! lane's pair to its f32 sum: one k-pair step loads four weight vectors
//! and broadcasts each row's (x[r, k], x[r, k+1]) against them, 6 rows × 4
//! vectors of accumulators, twice the inputs of the f32 kernel's step for
//! the same instruction count. Where the CPU has AVX-512F but not
//! AVX512_BF16, the same panels are widened to f32 in registers.
//!
//! Numerics. A product of two BF16 values is exact in f32 (8 + 8 significant
//! bits), so each path sums exact products in f32: for each pair, the odd
//! input's product first, then the even one's, each rounded to nearest
//! even, as Intel's definition of `vdpbf16ps` orders them. The widening and
//! portable paths do exactly that and give the same bits; the instruction
//! may differ from them in the last bits (another vendor's order, denormals
//! flushed), so the tests bound it against the exact sum instead.

use std::sync::OnceLock;

use rayon::prelude::*;

use super::epilogue::{Epilogue, SharedOut};
use super::packed_linear::{MICRO_ROWS, PANEL, PanelTasks};

// `Block::rows` dispatches up to six rows a call, the tasks' micro-kernel height.
const _: () = assert!(MICRO_ROWS == 6);
use crate::error::{Error, Result};

/// Inputs per block: 768 pairs × 64 outputs × 4 bytes = 192 KB of panel, in
/// L2, as the f32 kernel's block (the f32 kernel's 768 inputs take as much).
const K_BLOCK: usize = 1536;

/// f32 -> BF16, rounded to nearest even (a NaN stays a quiet NaN).
#[inline]
pub fn to_bf16(v: f32) -> u16 {
    let bits = v.to_bits();
    let rounded = (bits.wrapping_add(0x7FFF + ((bits >> 16) & 1)) >> 16) as u16;
    // A select, not a branch, so that the conversion loops vectorize.
    if v.is_nan() { ((bits >> 16) | 0x0040) as u16 } else { rounded }
}

/// BF16 -> the f32 it stands for (exact).
pub fn from_bf16(v: u16) -> f32 {
    f32::from_bits((v as u32) << 16)
}

/// The instruction path the BF16 kernel runs on this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bf16Path {
    /// AVX512_BF16's `vdpbf16ps` on 512-bit vectors.
    Avx512Bf16,
    /// AVX-512F: the BF16 pairs widened to f32 in registers, two fused
    /// multiply-adds per pair.
    Avx512Widen,
    /// Plain Rust loops (any CPU): the widening path's bits, much slower.
    Portable,
}

impl Bf16Path {
    pub fn name(self) -> &'static str {
        match self {
            Bf16Path::Avx512Bf16 => "avx512bf16",
            Bf16Path::Avx512Widen => "avx512-widen",
            Bf16Path::Portable => "portable",
        }
    }

    /// Whether this CPU can run the path.
    pub fn available(self) -> bool {
        match self {
            Bf16Path::Portable => true,
            Bf16Path::Avx512Widen => cpu_has("avx512f"),
            Bf16Path::Avx512Bf16 => cpu_has("avx512f") && cpu_has("avx512bf16"),
        }
    }

    /// Every path, fastest first.
    pub const ALL: [Bf16Path; 3] = [Bf16Path::Avx512Bf16, Bf16Path::Avx512Widen, Bf16Path::Portable];
}

#[cfg(target_arch = "x86_64")]
fn cpu_has(feature: &str) -> bool {
    match feature {
        "avx512f" => is_x86_feature_detected!("avx512f"),
        "avx512bf16" => is_x86_feature_detected!("avx512bf16"),
        _ => false,
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn cpu_has(_: &str) -> bool {
    false
}

/// The fastest path this CPU has (detected once). `BERTH_BF16_PATH=widen`
/// or `portable` picks a slower one (for comparing them).
pub fn best_path() -> Bf16Path {
    static PATH: OnceLock<Bf16Path> = OnceLock::new();
    *PATH.get_or_init(|| {
        let asked = match std::env::var("BERTH_BF16_PATH").as_deref() {
            Ok("widen") => Some(Bf16Path::Avx512Widen),
            Ok("portable") => Some(Bf16Path::Portable),
            _ => None,
        };
        match asked {
            Some(path) if path.available() => path,
            _ => Bf16Path::ALL.into_iter().find(|p| p.available()).unwrap_or(Bf16Path::Portable),
        }
    })
}

/// What the BF16 engine runs on, for a user to read: `bf16, <path>`.
pub fn describe() -> String {
    format!("bf16, {}", best_path().name())
}

/// A linear layer's weight (out, in), rounded to BF16 and packed in pairs.
#[derive(Clone, Debug)]
pub struct PackedBf16Linear {
    pub in_features: usize,
    pub out_features: usize,
    /// ceil(in / 2).
    pairs: usize,
    /// ceil(out / 64).
    panels: usize,
    /// (panels, pairs, 64, 2) BF16 bits: packed[((p·pairs + q)·64 + j)·2 + e]
    /// = w[p·64 + j, 2q + e]; padding (an odd input's partner, outputs past
    /// `out`) is 0.
    packed: Vec<u16>,
}

impl PackedBf16Linear {
    /// weight (out, in) f32 row-major, as Hugging Face stores it -> the packed BF16 layer.
    pub fn pack(name: &str, weight: &[f32], out_features: usize, in_features: usize) -> Result<PackedBf16Linear> {
        if weight.len() != out_features * in_features {
            return Err(Error::shape("pack bf16 linear", format!("{name}: {} values for ({out_features}, {in_features})", weight.len())));
        }
        if let Some(i) = weight.iter().position(|v| !v.is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "{name}: weight [{}, {}] is {}; --precision bf16 packs finite weights only",
                i / in_features.max(1),
                i % in_features.max(1),
                weight[i]
            )));
        }
        let (pairs, panels) = (in_features.div_ceil(2), out_features.div_ceil(PANEL));
        let mut packed = crate::tensor::pool::zeros::<u16>(panels * pairs * PANEL * 2);
        packed.par_chunks_mut((pairs * PANEL * 2).max(1)).enumerate().for_each(|(p, panel)| {
            for j in 0..PANEL.min(out_features - p * PANEL) {
                let row = &weight[(p * PANEL + j) * in_features..(p * PANEL + j + 1) * in_features];
                for (k, &v) in row.iter().enumerate() {
                    panel[((k / 2) * PANEL + j) * 2 + k % 2] = to_bf16(v);
                }
            }
        });
        Ok(PackedBf16Linear { in_features, out_features, pairs, panels, packed })
    }

    /// m (rows, cols) f32 row-major -> mᵀ packed as a layer's weight (out
    /// = cols, in = rows): w[o, k] = m[k, o]. The backward's operands (the
    /// weight for dx, the input for dW), packed each step; values are not
    /// checked (a NaN stays NaN, for the trainer's checks to find).
    pub fn pack_transposed(m: &[f32], rows: usize, cols: usize) -> Result<PackedBf16Linear> {
        if m.len() != rows * cols {
            return Err(Error::shape("pack bf16 linear", format!("{} values for ({rows}, {cols})", m.len())));
        }
        let (pairs, panels) = (rows.div_ceil(2), cols.div_ceil(PANEL));
        let mut packed = crate::tensor::pool::zeros::<u16>(panels * pairs * PANEL * 2);
        packed.par_chunks_mut((pairs * PANEL * 2).max(1)).enumerate().for_each(|(p, panel)| {
            let (c0, width) = (p * PANEL, PANEL.min(cols - p * PANEL));
            for k in 0..rows {
                let base = (k / 2) * PANEL * 2 + k % 2;
                for (j, &v) in m[k * cols + c0..k * cols + c0 + width].iter().enumerate() {
                    panel[base + 2 * j] = to_bf16(v);
                }
            }
        });
        Ok(PackedBf16Linear { in_features: rows, out_features: cols, pairs, panels, packed })
    }

    /// The weight w[o, k] as packed, back in f32 (tests).
    pub fn weight(&self, o: usize, k: usize) -> f32 {
        from_bf16(self.packed[(((o / PANEL) * self.pairs + k / 2) * PANEL + o % PANEL) * 2 + k % 2])
    }
}

/// Packed weights are made per step in training (the cache, and the
/// backward's operands per call): their buffers go back to the pool, so
/// that the next step's packing takes them instead of fresh pages.
impl Drop for PackedBf16Linear {
    fn drop(&mut self) {
        crate::tensor::pool::give(std::mem::take(&mut self.packed));
    }
}

/// x (N, in) f32 -> (N, ceil(in / 2)) pairs of BF16, the even input in the
/// low half, a missing odd partner 0.
fn pairs_of(x: &[f32], n: usize, k: usize) -> Vec<u32> {
    let pairs = k.div_ceil(2);
    // Every element is written below (the odd partner's 0 included).
    let mut out = crate::tensor::pool::take::<u32>(n * pairs);
    out.par_chunks_mut(pairs.max(1)).zip(x.par_chunks(k.max(1))).for_each(|(dst, row)| {
        // Whole pairs in a loop without branches (it vectorizes), then an odd last input.
        for (d, pair) in dst.iter_mut().zip(row.chunks_exact(2)) {
            *d = to_bf16(pair[0]) as u32 | ((to_bf16(pair[1]) as u32) << 16);
        }
        if k % 2 == 1 {
            dst[pairs - 1] = to_bf16(row[k - 1]) as u32;
        }
    });
    out
}

/// m (rows, cols) f32 -> mᵀ's rows in BF16 pairs, (cols, ceil(rows / 2)):
/// out[c, q] = (m[2q, c], m[2q + 1, c]), without an f32 transpose first
/// (the backward's dyᵀ for dW). Tasks of 16 columns, each reading two rows
/// at a time and writing 16 output rows.
fn pairs_of_transposed(m: &[f32], rows: usize, cols: usize) -> Vec<u32> {
    const COLUMNS: usize = 16;
    let pairs = rows.div_ceil(2);
    let mut out = crate::tensor::pool::take::<u32>(cols * pairs);
    out.par_chunks_mut((COLUMNS * pairs).max(1)).enumerate().for_each(|(block, dst)| {
        let c0 = block * COLUMNS;
        let width = COLUMNS.min(cols - c0);
        for q in 0..pairs {
            let even = &m[2 * q * cols + c0..2 * q * cols + c0 + width];
            let odd = (2 * q + 1 < rows).then(|| &m[(2 * q + 1) * cols + c0..(2 * q + 1) * cols + c0 + width]);
            for j in 0..width {
                let hi = odd.map_or(0, |odd| to_bf16(odd[j]) as u32);
                dst[j * pairs + q] = to_bf16(even[j]) as u32 | (hi << 16);
            }
        }
    });
    out
}

/// x (N, in) f32, the packed BF16 weight, bias (out) f32 -> y (N, out) f32 =
/// bf16(x)·bf16(W)ᵀ + b, then `epilogue`, on `path`.
pub fn linear_bf16_with(
    x: &[f32],
    n: usize,
    weight: &PackedBf16Linear,
    bias: Option<&[f32]>,
    epilogue: Epilogue<'_>,
    path: Bf16Path,
) -> Result<Vec<f32>> {
    let (k, out) = (weight.in_features, weight.out_features);
    if x.len() != n * k || bias.is_some_and(|b| b.len() != out) {
        return Err(Error::shape("linear_bf16", format!("x of {} values for ({n}, {k}), weight ({out}, {k})", x.len())));
    }
    epilogue.check("linear_bf16", n, out)?;
    if !path.available() {
        return Err(Error::InvalidArgument(format!("the BF16 linear path {} needs instructions this CPU lacks", path.name())));
    }
    let x_pairs = pairs_of(x, n, k);
    let y = linear_bf16_on_pairs(&x_pairs, n, weight, bias, epilogue, path);
    crate::tensor::pool::give(x_pairs);
    y
}

/// As [`linear_bf16_with`], x already in BF16 pairs (N, ceil(in / 2)).
fn linear_bf16_on_pairs(
    x_pairs: &[u32],
    n: usize,
    weight: &PackedBf16Linear,
    bias: Option<&[f32]>,
    epilogue: Epilogue<'_>,
    path: Bf16Path,
) -> Result<Vec<f32>> {
    let (k, out) = (weight.in_features, weight.out_features);
    let mut y = crate::tensor::pool::take::<f32>(n * out);
    let shared = SharedOut(y.as_mut_ptr());
    let tasks = PanelTasks { n, k, out, panels: weight.panels, k_block: K_BLOCK };
    tasks.run(shared, epilogue, |panel, r, rows, ks| {
        let block = Block { x: x_pairs, w: weight, bias, panel, out: shared };
        // SAFETY: `run` hands each (rows, panel) block to one task alone.
        unsafe { block.rows(r, rows, ks.start / 2..ks.end.div_ceil(2), path) };
    });
    Ok(y)
}

/// The gradients of y = bf16(x)·bf16(W)ᵀ + b for training in BF16 on the
/// CPU, each product on BF16 operands with f32 sums as the forward's:
/// dy (N, out), x (N, in), w (out, in) -> dx = dy·W (N, in), dW = dyᵀ·x
/// (out, in), db = Σ_rows dy (out, in f32), each only where wanted.
pub fn linear_bf16_backward(
    dy: &[f32],
    x: &[f32],
    w: &[f32],
    (n, out, k): (usize, usize, usize),
    wanted: [bool; 3],
    path: Bf16Path,
) -> Result<[Option<Vec<f32>>; 3]> {
    if dy.len() != n * out || x.len() != n * k || w.len() != out * k {
        return Err(Error::shape(
            "linear_bf16 backward",
            format!("dy of {} values for ({n}, {out}), x of {} for ({n}, {k}), weight of {} for ({out}, {k})", dy.len(), x.len(), w.len()),
        ));
    }
    // dx[r, i] = Σ_o dy[r, o]·w[o, i]: the rows dy against wᵀ as a weight (in, out).
    let dx = match wanted[0] {
        true => Some(linear_bf16_with(dy, n, &PackedBf16Linear::pack_transposed(w, out, k)?, None, Epilogue::Plain, path)?),
        false => None,
    };
    // dW[o, i] = Σ_r dy[r, o]·x[r, i]: the rows dyᵀ (out, N) against xᵀ as a weight (in, N).
    let dw = match wanted[1] {
        true => {
            let dy_t = pairs_of_transposed(dy, n, out);
            let dw = linear_bf16_on_pairs(&dy_t, out, &PackedBf16Linear::pack_transposed(x, n, k)?, None, Epilogue::Plain, path);
            crate::tensor::pool::give(dy_t);
            Some(dw?)
        }
        false => None,
    };
    let db = wanted[2].then(|| super::norm::sum_rows(dy, out));
    Ok([dx, dw, db])
}

/// What one task's micro-kernel calls share.
struct Block<'a> {
    /// (N, pairs) BF16 pairs of x.
    x: &'a [u32],
    w: &'a PackedBf16Linear,
    bias: Option<&'a [f32]>,
    panel: usize,
    out: SharedOut,
}

impl Block<'_> {
    /// The panel's first column and how many of its 64 columns are real.
    fn columns(&self) -> (usize, usize) {
        let c0 = self.panel * PANEL;
        (c0, (self.w.out_features - c0).min(PANEL))
    }

    /// Rows r0..r0+rows (≤ 6) of the panel's outputs, input pairs `qs`:
    /// from 0 at the first block, else from the partial sums in y; the bias
    /// after the last block.
    ///
    /// # Safety
    /// No other thread touches those rows of the panel's columns.
    unsafe fn rows(&self, r0: usize, rows: usize, qs: std::ops::Range<usize>, path: Bf16Path) {
        let pairs = self.w.pairs;
        let (first, last) = (qs.start == 0, qs.end == pairs);
        match path {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `available()` said the CPU has AVX512_BF16; the
            // caller's contract covers the writes.
            Bf16Path::Avx512Bf16 => unsafe {
                match rows {
                    6 => avx512::dot_block::<6>(self, r0, qs, first, last),
                    5 => avx512::dot_block::<5>(self, r0, qs, first, last),
                    4 => avx512::dot_block::<4>(self, r0, qs, first, last),
                    3 => avx512::dot_block::<3>(self, r0, qs, first, last),
                    2 => avx512::dot_block::<2>(self, r0, qs, first, last),
                    _ => avx512::dot_block::<1>(self, r0, qs, first, last),
                }
            },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `available()` said the CPU has AVX-512F. Four rows at
            // most per call: the widened weights take 8 registers.
            Bf16Path::Avx512Widen => unsafe {
                let mut r = r0;
                while r < r0 + rows {
                    match (r0 + rows - r).min(4) {
                        4 => avx512::widen_block::<4>(self, r, qs.clone(), first, last),
                        3 => avx512::widen_block::<3>(self, r, qs.clone(), first, last),
                        2 => avx512::widen_block::<2>(self, r, qs.clone(), first, last),
                        _ => avx512::widen_block::<1>(self, r, qs.clone(), first, last),
                    }
                    r += 4;
                }
            },
            _ => {
                let (c0, width) = self.columns();
                let out = self.w.out_features;
                let panel = &self.w.packed[self.panel * pairs * PANEL * 2..(self.panel + 1) * pairs * PANEL * 2];
                for r in r0..r0 + rows {
                    // SAFETY: the caller's contract.
                    let y = unsafe { std::slice::from_raw_parts_mut(self.out.0.add(r * out + c0), width) };
                    let x = &self.x[r * pairs..(r + 1) * pairs];
                    for (j, y) in y.iter_mut().enumerate() {
                        let mut acc = if first { 0.0 } else { *y };
                        for q in qs.clone() {
                            let (xe, xo) = (from_bf16(x[q] as u16), from_bf16((x[q] >> 16) as u16));
                            let (we, wo) = (from_bf16(panel[(q * PANEL + j) * 2]), from_bf16(panel[(q * PANEL + j) * 2 + 1]));
                            // Exact products: mul_add rounds once, as an add would.
                            acc = xo.mul_add(wo, acc);
                            acc = xe.mul_add(we, acc);
                        }
                        if last && let Some(b) = self.bias {
                            acc += b[c0 + j];
                        }
                        *y = acc;
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::super::packed_linear::avx512::{finish, masks, start};
    use super::{Block, PANEL};

    /// MR rows of x's pairs · the panel's pairs `qs` -> y's (MR, ≤ 64) block,
    /// with `vdpbf16ps`: 4 weight vectors per pair, each row's pair broadcast.
    ///
    /// # Safety
    /// The CPU has AVX-512F and AVX512_BF16; as [`Block::rows`] for the writes.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn dot_block<const MR: usize>(b: &Block, r0: usize, qs: std::ops::Range<usize>, first: bool, last: bool) {
        let (pairs, out) = (b.w.pairs, b.w.out_features);
        let (c0, width) = b.columns();
        assert!(qs.end <= pairs && (r0 + MR) * pairs <= b.x.len() && (b.panel + 1) * pairs * PANEL * 2 <= b.w.packed.len());
        let masks = masks(width);
        // SAFETY (whole function): rows r0..r0+MR of x hold `pairs` pairs,
        // the panel pairs·64·2 weights (asserted); y is touched under the
        // masks of real columns only, in the caller's rows.
        let y_at = |r: usize, v: usize| unsafe { b.out.0.add((r0 + r) * out + c0 + v * 16) };
        let mut acc = unsafe { start::<MR>(first, &masks, y_at) };
        let x = b.x.as_ptr();
        let panel = unsafe { b.w.packed.as_ptr().add(b.panel * pairs * PANEL * 2) };
        for q in qs {
            let wq = unsafe { panel.add(q * PANEL * 2) } as *const __m512i;
            let wv: [__m512bh; 4] = std::array::from_fn(|v| unsafe { std::mem::transmute(_mm512_loadu_si512(wq.add(v))) });
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let xv: __m512bh = unsafe { std::mem::transmute(_mm512_set1_epi32(*x.add((r0 + r) * pairs + q) as i32)) };
                for v in 0..4 {
                    acc_r[v] = _mm512_dpbf16_ps(acc_r[v], wv[v], xv);
                }
            }
        }
        unsafe { finish::<MR>(&acc, if last { b.bias } else { None }, c0, &masks, y_at) };
    }

    /// As [`dot_block`] on AVX-512F alone: each weight vector's pairs
    /// widened to an odd-input and an even-input f32 vector, two fused
    /// multiply-adds per pair (odd first), the portable path's bits.
    ///
    /// # Safety
    /// The CPU has AVX-512F; as [`Block::rows`] for the writes.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn widen_block<const MR: usize>(b: &Block, r0: usize, qs: std::ops::Range<usize>, first: bool, last: bool) {
        let (pairs, out) = (b.w.pairs, b.w.out_features);
        let (c0, width) = b.columns();
        assert!(qs.end <= pairs && (r0 + MR) * pairs <= b.x.len() && (b.panel + 1) * pairs * PANEL * 2 <= b.w.packed.len());
        let masks = masks(width);
        // SAFETY (whole function): as in `dot_block`.
        let y_at = |r: usize, v: usize| unsafe { b.out.0.add((r0 + r) * out + c0 + v * 16) };
        let mut acc = unsafe { start::<MR>(first, &masks, y_at) };
        let high = _mm512_set1_epi32(0xFFFF_0000u32 as i32);
        let x = b.x.as_ptr();
        let panel = unsafe { b.w.packed.as_ptr().add(b.panel * pairs * PANEL * 2) };
        for q in qs {
            let wq = unsafe { panel.add(q * PANEL * 2) } as *const __m512i;
            let mut odd = [_mm512_setzero_ps(); 4];
            let mut even = [_mm512_setzero_ps(); 4];
            for v in 0..4 {
                let w = unsafe { _mm512_loadu_si512(wq.add(v)) };
                odd[v] = _mm512_castsi512_ps(_mm512_and_si512(w, high));
                even[v] = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(w));
            }
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let pair = unsafe { *x.add((r0 + r) * pairs + q) };
                let (xo, xe) = (_mm512_set1_ps(f32::from_bits(pair & 0xFFFF_0000)), _mm512_set1_ps(f32::from_bits(pair << 16)));
                for v in 0..4 {
                    acc_r[v] = _mm512_fmadd_ps(xe, even[v], _mm512_fmadd_ps(xo, odd[v], acc_r[v]));
                }
            }
        }
        unsafe { finish::<MR>(&acc, if last { b.bias } else { None }, c0, &masks, y_at) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounding_is_to_nearest_even_and_exact_back() {
        assert_eq!(to_bf16(1.0), 0x3F80);
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to the even 1.
        assert_eq!(to_bf16(f32::from_bits(0x3F80_8000)), 0x3F80);
        // 1 + 3·2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: ties to 1 + 2^-6.
        assert_eq!(to_bf16(f32::from_bits(0x3F81_8000)), 0x3F82);
        assert_eq!(to_bf16(f32::from_bits(0x3F80_8001)), 0x3F81);
        assert_eq!(from_bf16(to_bf16(-2.5)), -2.5);
        assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
        assert_eq!(from_bf16(to_bf16(f32::INFINITY)), f32::INFINITY);
    }

    #[test]
    fn packing_rounds_every_weight_and_refuses_a_wrong_length_or_nan() {
        let (out, k) = (70, 13);
        let w: Vec<f32> = (0..out * k).map(|i| (crate::rng::normal(3, 11, i as u64) * 0.5) as f32).collect();
        let p = PackedBf16Linear::pack("w", &w, out, k).unwrap();
        for o in 0..out {
            for kk in 0..k {
                assert_eq!(p.weight(o, kk), from_bf16(to_bf16(w[o * k + kk])));
            }
        }
        let err = PackedBf16Linear::pack("layer.3.w", &w[1..], out, k).unwrap_err().to_string();
        assert!(err.contains("layer.3.w"), "{err}");
        let mut bad = w.clone();
        bad[2 * k + 5] = f32::NAN;
        let err = PackedBf16Linear::pack("layer.3.w", &bad, out, k).unwrap_err().to_string();
        assert!(err.contains("layer.3.w") && err.contains("[2, 5]") && err.contains("NaN"), "{err}");
    }
}

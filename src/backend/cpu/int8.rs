//! Dynamic INT8 linear layers for CPU inference (`--precision int8`).
//!
//! The scheme the CPU peers use for dynamic quantization, with per-token
//! activation scales instead of one scale per tensor:
//! - weights (out, in): symmetric INT8 per output channel, `w ≈ s_w[o]·q_w`,
//!   q_w in [−127, 127], made once at load ([`QuantizedLinear::quantize`]);
//! - activations (N, in): asymmetric UINT8 per row, `x ≈ s_x[n]·(u − z[n])`
//!   with u in [0, 255] and a zero point z[n] that maps 0 exactly, computed on
//!   the fly ([`QuantizedRows::quantize`]). Per row, and asymmetric: a row's
//!   256 levels span its own [min, max], so one-sided rows (after GELU) and
//!   rows with an outlier feature lose less than with one scale per tensor;
//! - y[n, o] = s_x[n]·s_w[o]·(Σ_k u[n,k]·q_w[o,k] − z[n]·Σ_k q_w[o,k]) + b[o],
//!   the sums in INT32.
//!
//! The dot-product instruction (`vpdpbusd`, AVX512-VNNI) multiplies unsigned
//! by signed bytes, which is this layout exactly; Σ_k q_w[o,k] is kept per
//! channel. No step saturates: |Σ| ≤ 255·127·K, which fits INT32 for
//! K < 66,000.
//!
//! Weights are packed once into panels of [`PANEL`] outputs: for each group
//! of 4 inputs, 64 outputs × 4 bytes, so one 64-byte load feeds 16 lanes.
//! Both kernels compute the same INT32 sums; the VNNI one scales them in
//! registers with exactly the f32 operations, in the same order, of the
//! portable one's scalar epilogue (`Block::epilogue`), so both paths give
//! the same bits.

use std::sync::OnceLock;

use rayon::prelude::*;

pub use super::epilogue::Epilogue;
use super::epilogue::SharedOut;
use crate::error::{Error, Result};

/// Outputs per packed panel: four 16-lane vectors.
const PANEL: usize = 64;
/// Inputs per dot-product group (`vpdpbusd` sums 4 byte products per lane).
const GROUP: usize = 4;
/// Rows per micro-kernel call: 6 rows × 4 vectors = 24 accumulators, which
/// leaves registers for the 4 weight vectors and the broadcast.
const MICRO_ROWS: usize = 6;
/// Below this many values, activations are quantized on the calling thread.
const SERIAL_QUANTIZE_VALUES: usize = 1 << 18;
/// Rows per parallel task: the task's activation rows stay in L1/L2 while
/// it walks one panel.
const TASK_ROWS: usize = 96;

/// The instruction path the INT8 kernels run on this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Int8Path {
    /// AVX512-VNNI `vpdpbusd` on 512-bit vectors.
    Avx512Vnni,
    /// Plain Rust integer loops (any CPU): correct, several times slower.
    Portable,
}

impl Int8Path {
    pub fn name(self) -> &'static str {
        match self {
            Int8Path::Avx512Vnni => "avx512-vnni",
            Int8Path::Portable => "portable",
        }
    }

    /// Whether this CPU can run the path.
    pub fn available(self) -> bool {
        match self {
            Int8Path::Portable => true,
            Int8Path::Avx512Vnni => vnni_available(),
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn vnni_available() -> bool {
    is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") && is_x86_feature_detected!("avx512vnni")
}

#[cfg(not(target_arch = "x86_64"))]
fn vnni_available() -> bool {
    false
}

/// The fastest path this CPU has, detected once. `BERTH_INT8_PATH=portable`
/// forces the fallback (for comparing the two on one machine).
pub fn best_path() -> Int8Path {
    static PATH: OnceLock<Int8Path> = OnceLock::new();
    *PATH.get_or_init(|| {
        if std::env::var("BERTH_INT8_PATH").is_ok_and(|v| v == "portable") {
            return Int8Path::Portable;
        }
        if Int8Path::Avx512Vnni.available() { Int8Path::Avx512Vnni } else { Int8Path::Portable }
    })
}

/// What the INT8 engine runs on, for a user to read: `int8, <path>`.
pub fn describe() -> String {
    format!("int8, {}", best_path().name())
}

/// A linear layer's weight (out, in), quantized per output channel and packed.
#[derive(Clone, Debug)]
pub struct QuantizedLinear {
    pub in_features: usize,
    pub out_features: usize,
    /// ceil(in / 4): the packed rows of 4 inputs.
    groups: usize,
    /// ceil(out / 64).
    panels: usize,
    /// (panels, groups, 64, 4) bytes; padding (inputs past `in`, outputs past `out`) is 0.
    packed: Vec<i8>,
    /// (panels · 64): s_w per output channel, 0 for padding outputs.
    scales: Vec<f32>,
    /// (panels · 64): Σ_k q_w[o, k], which each row's zero point multiplies.
    code_sums: Vec<i32>,
}

impl QuantizedLinear {
    /// weight (out, in) row-major, as Hugging Face stores it -> the packed
    /// INT8 layer. A NaN or infinite weight is an error naming `name`.
    pub fn quantize(name: &str, weight: &[f32], out_features: usize, in_features: usize) -> Result<QuantizedLinear> {
        if weight.len() != out_features * in_features {
            return Err(Error::shape("int8 quantize", format!("{name}: {} values for ({out_features}, {in_features})", weight.len())));
        }
        if in_features >= 66_000 {
            return Err(Error::InvalidArgument(format!("{name}: {in_features} inputs would overflow the INT32 sums of --precision int8")));
        }
        let groups = in_features.div_ceil(GROUP);
        let panels = out_features.div_ceil(PANEL);
        let mut packed = vec![0i8; panels * groups * PANEL * GROUP];
        let mut scales = vec![0f32; panels * PANEL];
        let mut code_sums = vec![0i32; panels * PANEL];
        for o in 0..out_features {
            let row = &weight[o * in_features..(o + 1) * in_features];
            if let Some(k) = row.iter().position(|v| !v.is_finite()) {
                return Err(Error::InvalidArgument(format!("{name}: weight [{o}, {k}] is {} and cannot be quantized", row[k])));
            }
            let max_abs = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            let scale = if max_abs > 0.0 { max_abs / 127.0 } else { 1.0 };
            let (panel, lane) = (o / PANEL, o % PANEL);
            let mut sum = 0i32;
            for (k, &v) in row.iter().enumerate() {
                let q = quantize_value(v, 1.0 / scale);
                sum += q as i32;
                let (g, b) = (k / GROUP, k % GROUP);
                packed[((panel * groups + g) * PANEL + lane) * GROUP + b] = q;
            }
            scales[o] = if max_abs > 0.0 { scale } else { 0.0 };
            code_sums[o] = sum;
        }
        Ok(QuantizedLinear { in_features, out_features, groups, panels, packed, scales, code_sums })
    }

    /// The quantized weight q_w[o, k] and its scale s_w[o] (tests, error reports).
    pub fn weight_code(&self, o: usize, k: usize) -> i8 {
        let (panel, lane, g, b) = (o / PANEL, o % PANEL, k / GROUP, k % GROUP);
        self.packed[((panel * self.groups + g) * PANEL + lane) * GROUP + b]
    }

    pub fn scale(&self, o: usize) -> f32 {
        self.scales[o]
    }
}

/// round(v · inv_scale) clamped to [−127, 127].
#[inline]
fn quantize_value(v: f32, inv_scale: f32) -> i8 {
    (v * inv_scale).round_ties_even().clamp(-127.0, 127.0) as i8
}

/// Activations (N, K) quantized per row to unsigned codes with a zero point,
/// rows padded to a multiple of 4 bytes (the padding meets zero weights).
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedRows {
    pub rows: usize,
    pub cols: usize,
    /// Bytes per row: `cols` rounded up to a multiple of 4.
    stride: usize,
    /// (rows, stride): u.
    codes: Vec<u8>,
    /// (rows): s_x per row (0 for a row of zeros).
    scales: Vec<f32>,
    /// (rows): z per row, in [0, 255].
    zero_points: Vec<i32>,
}

impl QuantizedRows {
    /// x (rows, cols) f32 -> codes and per-row scales and zero points, on
    /// `path` (every path gives the same codes). A NaN or infinite value is
    /// an error naming its row and column: it has no code.
    pub fn quantize(x: &[f32], rows: usize, cols: usize, path: Int8Path) -> Result<QuantizedRows> {
        let stride = cols.div_ceil(GROUP) * GROUP;
        let mut codes = vec![0u8; rows * stride];
        let mut scales = vec![0f32; rows];
        let mut zero_points = vec![0i32; rows];
        if cols > 0 {
            let one_row = |(r, (out, (scale, zero_point))): (usize, (&mut [u8], (&mut f32, &mut i32)))| match quantize_row(
                &x[r * cols..(r + 1) * cols],
                &mut out[..cols],
                path,
            ) {
                Some((s, z)) => {
                    (*scale, *zero_point) = (s, z);
                    true
                }
                None => false,
            };
            // A small matrix is quantized faster on this thread than the
            // pool can be woken for it (B = 1 at T = 128 is 50k values).
            let finite = if rows * cols < SERIAL_QUANTIZE_VALUES {
                codes.chunks_mut(stride).zip(scales.iter_mut().zip(zero_points.iter_mut())).enumerate().all(one_row)
            } else {
                codes
                    .par_chunks_mut(stride)
                    .zip(scales.par_iter_mut().zip(zero_points.par_iter_mut()))
                    .with_min_len(super::rows_per_task(cols))
                    .enumerate()
                    .all(one_row)
            };
            if !finite {
                return Err(not_finite(x, cols));
            }
        }
        Ok(QuantizedRows { rows, cols, stride, codes, scales, zero_points })
    }

    /// u[r, c] − z[r], what s_x[r] multiplies (tests).
    pub fn code(&self, r: usize, c: usize) -> i32 {
        self.codes[r * self.stride + c] as i32 - self.zero_points[r]
    }

    pub fn scale(&self, r: usize) -> f32 {
        self.scales[r]
    }
}

/// The error for the first value of x (rows of `cols` > 0) that is not finite.
fn not_finite(x: &[f32], cols: usize) -> Error {
    let i = x.iter().position(|v| !v.is_finite()).expect("a row was found not finite");
    Error::Numerical(format!("linear_int8: input value {} at row {}, column {} cannot be quantized", x[i], i / cols, i % cols))
}

/// A row's range [lo, hi] (always holding 0, so that 0 — padding, ReLU's
/// zeros — is exact) -> (s_x, 1/s_x, z). The same scalar arithmetic for
/// every path.
#[inline]
fn row_parameters(lo: f32, hi: f32) -> (f32, f32, f32) {
    let inv = 255.0 / (hi - lo);
    let z = (-lo * inv).round_ties_even().clamp(0.0, 255.0);
    ((hi - lo) / 255.0, inv, z)
}

/// u = clamp(round(v·inv + z), 0, 255): the multiply and the add rounded
/// separately (no FMA), as the vector path does too.
#[inline]
fn code_of(v: f32, inv: f32, z: f32) -> u8 {
    (v * inv + z).round_ties_even().clamp(0.0, 255.0) as u8
}

/// One row (cols) -> its codes in `out` (cols) and (s_x, z); None when a
/// value is not finite. A row of zeros has scale 0 and codes 0.
fn quantize_row(row: &[f32], out: &mut [u8], path: Int8Path) -> Option<(f32, i32)> {
    #[cfg(target_arch = "x86_64")]
    if path == Int8Path::Avx512Vnni {
        // SAFETY: the path is only chosen where AVX512F and BW are present.
        return unsafe { vnni::quantize_row(row, out) };
    }
    let _ = path;
    let mut finite = true;
    let (mut lo, mut hi) = (0f32, 0f32);
    for &v in row {
        finite &= v.is_finite();
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !finite {
        return None;
    }
    if hi == lo {
        out.fill(0);
        return Some((0.0, 0));
    }
    let (scale, inv, z) = row_parameters(lo, hi);
    for (c, &v) in out.iter_mut().zip(row) {
        *c = code_of(v, inv, z);
    }
    Some((scale, z as i32))
}

/// x (N, in) f32, the quantized weight, bias (out) -> y (N, out) f32, on `path`.
pub fn linear_int8_fwd(x: &[f32], n: usize, weight: &QuantizedLinear, bias: Option<&[f32]>, path: Int8Path) -> Result<Vec<f32>> {
    linear_int8_with(x, n, weight, bias, Epilogue::Plain, path)
}

/// As [`linear_int8_fwd`], with `epilogue` after the bias.
pub fn linear_int8_with(
    x: &[f32],
    n: usize,
    weight: &QuantizedLinear,
    bias: Option<&[f32]>,
    epilogue: Epilogue<'_>,
    path: Int8Path,
) -> Result<Vec<f32>> {
    let k = weight.in_features;
    let out = weight.out_features;
    if x.len() != n * k || bias.is_some_and(|b| b.len() != out) {
        return Err(Error::shape("linear_int8", format!("x of {} values for ({n}, {k}), weight ({out}, {k})", x.len())));
    }
    epilogue.check("linear_int8", n, out)?;
    if !path.available() {
        return Err(Error::InvalidArgument(format!("the INT8 path {} needs instructions this CPU lacks", path.name())));
    }
    let quantized = QuantizedRows::quantize(x, n, k, path)?;
    Ok(linear_int8_quantized_with(&quantized, weight, bias, epilogue, path))
}

/// As [`linear_int8_fwd`], from activations already quantized (the test of
/// the kernels against an exact integer reference uses it).
pub fn linear_int8_quantized(x: &QuantizedRows, weight: &QuantizedLinear, bias: Option<&[f32]>, path: Int8Path) -> Vec<f32> {
    linear_int8_quantized_with(x, weight, bias, Epilogue::Plain, path)
}

/// As [`linear_int8_quantized`], with `epilogue` after the bias.
pub fn linear_int8_quantized_with(
    x: &QuantizedRows,
    weight: &QuantizedLinear,
    bias: Option<&[f32]>,
    epilogue: Epilogue<'_>,
    path: Int8Path,
) -> Vec<f32> {
    let (n, out) = (x.rows, weight.out_features);
    assert_eq!(x.cols, weight.in_features, "checked by linear_int8_fwd");
    assert!(path.available(), "checked by linear_int8_fwd");
    assert!(bias.is_none_or(|b| b.len() == out), "checked by linear_int8_fwd");
    assert!(!matches!(epilogue, Epilogue::Residual(r) if r.len() != n * out), "checked by linear_int8_with");
    let mut y = crate::tensor::pool::take::<f32>(n * out);
    if n == 0 || out == 0 {
        return y;
    }
    // Rows split evenly over the tasks (in whole micro-kernel calls), so
    // that no short last task leaves a core idle; at least two row tasks
    // per panel when there are rows for them, so that a layer with few
    // panels still feeds every core.
    let row_tasks = n.div_ceil(TASK_ROWS).max(n.div_ceil(MICRO_ROWS).min(2));
    let task_rows = n.div_ceil(row_tasks).div_ceil(MICRO_ROWS) * MICRO_ROWS;
    let row_tasks = n.div_ceil(task_rows);
    let shared = SharedOut(y.as_mut_ptr());
    (0..row_tasks * weight.panels).into_par_iter().for_each(|task| {
        let (row_task, panel) = (task / weight.panels, task % weight.panels);
        let r0 = row_task * task_rows;
        let r1 = (r0 + task_rows).min(n);
        let block = Block { x, w: weight, bias, epilogue, panel, out: shared };
        let mut r = r0;
        while r < r1 {
            let rows = (r1 - r).min(MICRO_ROWS);
            // SAFETY: rows r..r+rows and the panel's columns belong to this
            // task alone, and lie inside y (n × out).
            unsafe { block.rows(r, rows, path) };
            r += rows;
        }
    });
    y
}

/// What one task's micro-kernel calls share: the operands, the panel and
/// the output.
struct Block<'a> {
    x: &'a QuantizedRows,
    w: &'a QuantizedLinear,
    bias: Option<&'a [f32]>,
    epilogue: Epilogue<'a>,
    panel: usize,
    out: SharedOut,
}

impl Block<'_> {
    /// Rows r0..r0+rows (≤ 6) of the panel's outputs into y.
    ///
    /// # Safety
    /// No other thread writes those rows of the panel's columns.
    unsafe fn rows(&self, r0: usize, rows: usize, path: Int8Path) {
        let (x, w) = (self.x, self.w);
        let weights = &w.packed[self.panel * w.groups * PANEL * GROUP..(self.panel + 1) * w.groups * PANEL * GROUP];
        let activations = &x.codes[r0 * x.stride..(r0 + rows) * x.stride];
        match path {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `available()` said the CPU has AVX512F, BW and VNNI;
            // the caller's contract covers the writes.
            Int8Path::Avx512Vnni => unsafe {
                match rows {
                    6 => vnni::block::<6>(self, r0, activations, weights),
                    5 => vnni::block::<5>(self, r0, activations, weights),
                    4 => vnni::block::<4>(self, r0, activations, weights),
                    3 => vnni::block::<3>(self, r0, activations, weights),
                    2 => vnni::block::<2>(self, r0, activations, weights),
                    _ => vnni::block::<1>(self, r0, activations, weights),
                }
            },
            _ => {
                let mut sums = [[0i32; PANEL]; MICRO_ROWS];
                portable_sums(activations, x.stride, rows, weights, w.groups, &mut sums);
                // SAFETY: the caller's contract.
                unsafe { self.epilogue(r0, rows, &sums) };
            }
        }
        let (c0, width) = self.columns();
        // SAFETY: the caller's contract; the residual's length was checked.
        unsafe { self.epilogue.apply(self.out, w.out_features, r0, rows, c0, width) };
    }

    /// The panel's first column and how many of its 64 columns are real.
    fn columns(&self) -> (usize, usize) {
        let c0 = self.panel * PANEL;
        (c0, (self.w.out_features - c0).min(PANEL))
    }

    /// y[r, o] = (sum − z[r]·Σq_w[o]) · (s_x[r]·s_w[o]) + b[o] for the
    /// panel's real columns: the scalar form of the vector epilogue, the
    /// same f32 operations in the same order.
    ///
    /// # Safety
    /// As [`Block::rows`].
    unsafe fn epilogue(&self, r0: usize, rows: usize, sums: &[[i32; PANEL]; MICRO_ROWS]) {
        let (x, w) = (self.x, self.w);
        let (c0, width) = self.columns();
        let scales = &w.scales[c0..c0 + width];
        let code_sums = &w.code_sums[c0..c0 + width];
        for (i, acc) in sums.iter().enumerate().take(rows) {
            let r = r0 + i;
            let (row_scale, zero_point) = (x.scales[r], x.zero_points[r]);
            // SAFETY: the caller's contract; c0 + width ≤ out_features.
            let y = unsafe { std::slice::from_raw_parts_mut(self.out.0.add(r * w.out_features + c0), width) };
            for j in 0..width {
                let v = (acc[j] - zero_point * code_sums[j]) as f32 * (row_scale * scales[j]);
                y[j] = match self.bias {
                    Some(b) => v + b[c0 + j],
                    None => v,
                };
            }
        }
    }
}

/// The portable kernel: the same sums in plain integer loops.
fn portable_sums(activations: &[u8], stride: usize, rows: usize, weights: &[i8], groups: usize, sums: &mut [[i32; PANEL]; MICRO_ROWS]) {
    for (r, acc) in sums.iter_mut().enumerate().take(rows) {
        acc.fill(0);
        let row = &activations[r * stride..(r + 1) * stride];
        for g in 0..groups {
            let a = &row[g * GROUP..(g + 1) * GROUP];
            let wg = &weights[g * PANEL * GROUP..(g + 1) * PANEL * GROUP];
            for (lane, acc_lane) in acc.iter_mut().enumerate() {
                let wl = &wg[lane * GROUP..(lane + 1) * GROUP];
                *acc_lane += (0..GROUP).map(|b| a[b] as i32 * wl[b] as i32).sum::<i32>();
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    use std::arch::x86_64::*;

    use super::{Block, GROUP, PANEL, code_of, row_parameters};

    /// MR rows of activation codes (stride bytes apart) · one packed panel
    /// (groups × 64 outputs × 4 bytes) -> y's (MR, ≤ 64) block, scaled in
    /// registers. Each step loads the group's four 16-output weight vectors
    /// once and broadcasts each row's 4 bytes against them.
    ///
    /// # Safety
    /// The CPU has AVX512F, BW and VNNI; as [`Block::rows`] for the writes.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn block<const MR: usize>(b: &Block, r0: usize, activations: &[u8], weights: &[i8]) {
        let (x, w) = (b.x, b.w);
        let (stride, groups) = (x.stride, w.groups);
        assert!(activations.len() >= MR * stride && weights.len() >= groups * PANEL * GROUP && stride >= groups * GROUP);
        let mut acc = [[_mm512_setzero_si512(); 4]; MR];
        let a = activations.as_ptr();
        let wp = weights.as_ptr();
        for g in 0..groups {
            // SAFETY (whole loop): g < groups, so the 256 weight bytes of
            // group g and each row's 4 bytes at g·4 lie inside the slices.
            let wg = unsafe { wp.add(g * PANEL * GROUP) };
            let wv = unsafe {
                [
                    _mm512_loadu_si512(wg as *const _),
                    _mm512_loadu_si512(wg.add(64) as *const _),
                    _mm512_loadu_si512(wg.add(128) as *const _),
                    _mm512_loadu_si512(wg.add(192) as *const _),
                ]
            };
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let four = unsafe { (a.add(r * stride + g * GROUP) as *const i32).read_unaligned() };
                let av = _mm512_set1_epi32(four);
                for v in 0..4 {
                    acc_r[v] = _mm512_dpbusd_epi32(acc_r[v], av, wv[v]);
                }
            }
        }
        // The epilogue, as Block::epilogue computes it, 16 columns at a time.
        let (c0, width) = b.columns();
        for (i, acc_r) in acc.iter().enumerate() {
            let r = r0 + i;
            let row_scale = _mm512_set1_ps(x.scales[r]);
            let zero_point = _mm512_set1_epi32(x.zero_points[r]);
            for (v, lanes) in acc_r.iter().enumerate() {
                let first = v * 16;
                if first >= width {
                    break;
                }
                let mask: __mmask16 = if width - first >= 16 { 0xffff } else { (1u16 << (width - first)) - 1 };
                // SAFETY: scales and code_sums hold panels·64 entries; the
                // bias and y are touched under the mask of real columns only.
                unsafe {
                    let col = c0 + first;
                    let sums = _mm512_loadu_si512(w.code_sums.as_ptr().add(col) as *const _);
                    let scales = _mm512_loadu_ps(w.scales.as_ptr().add(col));
                    let exact = _mm512_sub_epi32(*lanes, _mm512_mullo_epi32(zero_point, sums));
                    let mut y = _mm512_mul_ps(_mm512_cvtepi32_ps(exact), _mm512_mul_ps(row_scale, scales));
                    if let Some(bias) = b.bias {
                        y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(mask, bias.as_ptr().add(col)));
                    }
                    _mm512_mask_storeu_ps(b.out.0.add(r * w.out_features + col), mask, y);
                }
            }
        }
    }

    /// One row (cols) -> its codes and (s_x, z), as the scalar path computes
    /// them (min and max are exact; the codes use the same two roundings).
    ///
    /// # Safety
    /// The CPU has AVX512F and BW.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn quantize_row(row: &[f32], out: &mut [u8]) -> Option<(f32, i32)> {
        let n = row.len();
        assert!(out.len() >= n);
        let tail_mask = |i: usize| -> __mmask16 { if n - i >= 16 { 0xffff } else { (1u16 << (n - i)) - 1 } };
        let (mut lo, mut hi) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        // x·0 is 0 for a finite x and NaN otherwise; their sum flags a bad row.
        let mut poison = _mm512_setzero_ps();
        let mut i = 0;
        while i < n {
            // SAFETY: the mask covers lanes i..min(i + 16, n) only.
            let v = unsafe { _mm512_maskz_loadu_ps(tail_mask(i), row.as_ptr().add(i)) };
            lo = _mm512_min_ps(lo, v);
            hi = _mm512_max_ps(hi, v);
            poison = _mm512_add_ps(poison, _mm512_mul_ps(v, _mm512_setzero_ps()));
            i += 16;
        }
        if _mm512_reduce_add_ps(poison) != 0.0 {
            return None;
        }
        let (lo, hi) = (_mm512_reduce_min_ps(lo), _mm512_reduce_max_ps(hi));
        if hi == lo {
            out[..n].fill(0);
            return Some((0.0, 0));
        }
        let (scale, inv, z) = row_parameters(lo, hi);
        let (inv_v, z_v) = (_mm512_set1_ps(inv), _mm512_set1_ps(z));
        let (zero, top) = (_mm512_setzero_si512(), _mm512_set1_epi32(255));
        let mut i = 0;
        while i + 16 <= n {
            // SAFETY: i + 16 ≤ n for the load and the 16-byte store.
            unsafe {
                let v = _mm512_loadu_ps(row.as_ptr().add(i));
                // cvtps rounds to nearest even (the default MXCSR), as round_ties_even.
                let q = _mm512_cvtps_epi32(_mm512_add_ps(_mm512_mul_ps(v, inv_v), z_v));
                let q = _mm512_min_epi32(_mm512_max_epi32(q, zero), top);
                _mm_storeu_si128(out.as_mut_ptr().add(i) as *mut __m128i, _mm512_cvtepi32_epi8(q));
            }
            i += 16;
        }
        for (c, &v) in out[i..n].iter_mut().zip(&row[i..]) {
            *c = code_of(v, inv, z);
        }
        Some((scale, z as i32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        (0..n as u64).map(|i| (crate::rng::normal(seed, 7, i) * 0.5) as f32).collect()
    }

    #[test]
    fn weight_codes_round_trip_within_half_a_step() {
        let (out, k) = (70, 13);
        let w = values(out * k, 1);
        let q = QuantizedLinear::quantize("w", &w, out, k).unwrap();
        for o in 0..out {
            let row = &w[o * k..(o + 1) * k];
            let max_abs = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!((q.scale(o) - max_abs / 127.0).abs() <= 1e-9);
            for (kk, &v) in row.iter().enumerate() {
                let back = q.weight_code(o, kk) as f32 * q.scale(o);
                assert!((back - v).abs() <= 0.5001 * q.scale(o), "w[{o},{kk}]");
            }
            // The largest value maps to ±127 exactly.
            assert!((0..k).any(|kk| q.weight_code(o, kk).unsigned_abs() == 127));
        }
    }

    #[test]
    fn a_zero_row_and_a_nan_weight() {
        let mut w = vec![0f32; 2 * 5];
        w[5..].copy_from_slice(&[1.0, -2.0, 0.5, 0.0, 3.0]);
        let q = QuantizedLinear::quantize("layer.0.w", &w, 2, 5).unwrap();
        assert_eq!(q.scale(0), 0.0);
        for path in [Int8Path::Portable, best_path()] {
            let y = linear_int8_fwd(&[1.0, 2.0, 3.0, 4.0, 5.0], 1, &q, None, path).unwrap();
            assert_eq!(y[0], 0.0);
            // A row of zeros quantizes to scale 0 and gives the bias exactly.
            let y = linear_int8_fwd(&[0.0; 5], 1, &q, Some(&[0.25, -0.5]), path).unwrap();
            assert_eq!(y, vec![0.25, -0.5]);
            // A bad value is named by row and column, past the vector width too.
            let mut x = vec![0.5f32; 3 * 20];
            x[2 * 20 + 17] = f32::INFINITY;
            let wide = QuantizedLinear::quantize("wide", &[0.1; 20], 1, 20).unwrap();
            let err = linear_int8_fwd(&x, 3, &wide, None, path).unwrap_err().to_string();
            assert!(err.contains("row 2, column 17"), "{}: {err}", path.name());
            x[2 * 20 + 17] = f32::NAN;
            assert!(linear_int8_fwd(&x, 3, &wide, None, path).is_err());
        }
        w[7] = f32::NAN;
        let err = QuantizedLinear::quantize("layer.0.w", &w, 2, 5).unwrap_err().to_string();
        assert!(err.contains("layer.0.w") && err.contains("[1, 2]"), "{err}");
    }
}

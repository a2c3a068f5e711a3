//! f32 linear layers for CPU inference, with the weight packed once at load.
//!
//! The gemm crate packs the weight into its panel layout on every call; at
//! B = 1 (128 rows) that packing and its threading cost as much as the
//! product (MiniLM's (128, 384)·(384, 384) ran at a third of the FMA
//! ceiling). Here the weight (out, in) is packed once, at load, into panels
//! of `PANEL` outputs: for each input k, the panel's 64 weights w[o, k]
//! side by side, so one k step loads four 16-lane vectors and broadcasts
//! each row's x[r, k] against them (`MICRO_ROWS` rows × 4 vectors of
//! accumulators in registers). The inputs are walked in blocks of
//! `K_BLOCK`: a panel's block (192 KB) stays in L2 while a task's rows
//! pass over it.
//!
//! Each output is one chain of fused multiply-adds over k in order,
//! `y = fma(x[k], w[k], …)` from 0, then + bias, then the epilogue: the same
//! bits on every path (the AVX-512 kernel and the portable loops), at every
//! thread count and row split, whatever the K blocking (a partial sum is
//! stored and reloaded as the f32 it is).

use std::sync::OnceLock;

use rayon::prelude::*;

pub use super::epilogue::Epilogue;
use super::epilogue::SharedOut;
use crate::error::{Error, Result};

/// Outputs per packed panel: four 16-lane vectors.
pub(super) const PANEL: usize = 64;
/// Rows per micro-kernel call: 6 rows × 4 vectors = 24 accumulators, which
/// leaves registers for the 4 weight vectors and the broadcast.
pub(super) const MICRO_ROWS: usize = 6;
/// Inputs per block: 768 × 64 weights × 4 bytes = 192 KB of panel, in L2.
/// Blocks of 128 (32 KB, in L1) and 256 were no faster in a scratch timing
/// at MiniLM's and bert-base's shapes (2-core AMD EPYC; each block after
/// the first reloads the partial sums). Models with K ≤ 768 run one block.
const K_BLOCK: usize = 768;
/// Rows per parallel task at most.
const TASK_ROWS: usize = 96;

/// The instruction path the packed kernels run on this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackedPath {
    /// AVX-512F fused multiply-adds on 512-bit vectors.
    Avx512,
    /// Plain Rust loops with `mul_add` (any CPU): the same bits, much slower;
    /// for tests. Where AVX-512 is absent the inference cache keeps the
    /// transposed weights for the gemm crate instead of packing.
    Portable,
}

impl PackedPath {
    pub fn name(self) -> &'static str {
        match self {
            PackedPath::Avx512 => "avx512",
            PackedPath::Portable => "portable",
        }
    }

    /// Whether this CPU can run the path.
    pub fn available(self) -> bool {
        match self {
            PackedPath::Portable => true,
            PackedPath::Avx512 => avx512_available(),
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn avx512_available() -> bool {
    is_x86_feature_detected!("avx512f")
}

#[cfg(not(target_arch = "x86_64"))]
fn avx512_available() -> bool {
    false
}

/// The vector path where this CPU has it (detected once), else None: the
/// inference cache then keeps transposed weights for the gemm crate.
/// `BERTH_CPU_LINEAR=gemm` keeps them too (for comparing the two).
pub fn fast_path() -> Option<PackedPath> {
    static PATH: OnceLock<Option<PackedPath>> = OnceLock::new();
    *PATH.get_or_init(|| {
        if std::env::var("BERTH_CPU_LINEAR").is_ok_and(|v| v == "gemm") {
            return None;
        }
        PackedPath::Avx512.available().then_some(PackedPath::Avx512)
    })
}

/// A linear layer's f32 weight (out, in), packed into output panels.
#[derive(Clone, Debug)]
pub struct PackedLinear {
    pub in_features: usize,
    pub out_features: usize,
    /// ceil(out / 64).
    panels: usize,
    /// (panels, in, 64): packed[(p·in + k)·64 + j] = w[p·64 + j, k]; the
    /// padding outputs past `out` are 0.
    packed: Vec<f32>,
}

impl PackedLinear {
    /// weight (out, in) row-major, as Hugging Face stores it -> the packed layer.
    pub fn pack(name: &str, weight: &[f32], out_features: usize, in_features: usize) -> Result<PackedLinear> {
        if weight.len() != out_features * in_features {
            return Err(Error::shape("pack linear", format!("{name}: {} values for ({out_features}, {in_features})", weight.len())));
        }
        let panels = out_features.div_ceil(PANEL);
        let mut packed = vec![0f32; panels * in_features * PANEL];
        packed.par_chunks_mut((in_features * PANEL).max(1)).enumerate().for_each(|(p, panel)| {
            for j in 0..PANEL.min(out_features - p * PANEL) {
                let row = &weight[(p * PANEL + j) * in_features..(p * PANEL + j + 1) * in_features];
                for (k, &v) in row.iter().enumerate() {
                    panel[k * PANEL + j] = v;
                }
            }
        });
        Ok(PackedLinear { in_features, out_features, panels, packed })
    }

    /// The weight w[o, k] as packed (tests).
    pub fn weight(&self, o: usize, k: usize) -> f32 {
        self.packed[((o / PANEL) * self.in_features + k) * PANEL + o % PANEL]
    }
}

/// x (N, in), the packed weight, bias (out) -> y (N, out) = x·Wᵀ + b, then
/// `epilogue`, on `path`.
pub fn linear_packed_with(
    x: &[f32],
    n: usize,
    weight: &PackedLinear,
    bias: Option<&[f32]>,
    epilogue: Epilogue<'_>,
    path: PackedPath,
) -> Result<Vec<f32>> {
    let (k, out) = (weight.in_features, weight.out_features);
    if x.len() != n * k || bias.is_some_and(|b| b.len() != out) {
        return Err(Error::shape("linear_packed", format!("x of {} values for ({n}, {k}), weight ({out}, {k})", x.len())));
    }
    epilogue.check("linear_packed", n, out)?;
    if !path.available() {
        return Err(Error::InvalidArgument(format!("the packed linear path {} needs instructions this CPU lacks", path.name())));
    }
    let mut y = crate::tensor::pool::take::<f32>(n * out);
    let shared = SharedOut(y.as_mut_ptr());
    let tasks = PanelTasks { n, k, out, panels: weight.panels, k_block: K_BLOCK };
    tasks.run(shared, epilogue, |panel, r, rows, ks| {
        let block = Block { x, w: weight, bias, panel, out: shared };
        // SAFETY: `run` hands each (rows, panel) block to one task alone.
        unsafe { block.rows(r, rows, ks, path) };
    });
    Ok(y)
}

/// How the packed kernels (f32 here, BF16 in `bf16_linear.rs`) split y (N,
/// out) into parallel tasks: rows evenly over the tasks, in whole
/// micro-kernel calls, and at least two row tasks when there are rows for
/// them, so that a layer with few panels still feeds every core (as the
/// INT8 kernel splits them); each task one panel of 64 columns.
pub(super) struct PanelTasks {
    pub n: usize,
    pub k: usize,
    pub out: usize,
    pub panels: usize,
    /// Inputs per block (a multiple of 2 for BF16's pairs).
    pub k_block: usize,
}

impl PanelTasks {
    /// Runs `rows(panel, r0, rows ≤ MICRO_ROWS, inputs)` over every block of
    /// every task, the input blocks of one (rows, panel) block in order,
    /// then the epilogue on the task's block. `rows` may write only rows
    /// r0..r0+rows of the panel's columns of y.
    pub fn run(&self, y: SharedOut, epilogue: Epilogue<'_>, rows: impl Fn(usize, usize, usize, std::ops::Range<usize>) + Sync) {
        let (n, k) = (self.n, self.k);
        if n == 0 || self.out == 0 {
            return;
        }
        let row_tasks = n.div_ceil(TASK_ROWS).max(n.div_ceil(MICRO_ROWS).min(2));
        let task_rows = n.div_ceil(row_tasks).div_ceil(MICRO_ROWS) * MICRO_ROWS;
        let row_tasks = n.div_ceil(task_rows);
        let task = |task: usize| {
            let (row_task, panel) = (task / self.panels, task % self.panels);
            let r0 = row_task * task_rows;
            let r1 = (r0 + task_rows).min(n);
            let mut k0 = 0;
            while k0 < k.max(1) {
                let k1 = (k0 + self.k_block).min(k);
                let mut r = r0;
                while r < r1 {
                    let count = (r1 - r).min(MICRO_ROWS);
                    rows(panel, r, count, k0..k1);
                    r += count;
                }
                k0 = k1.max(k0 + 1);
            }
            let c0 = panel * PANEL;
            // SAFETY: the task's rows and the panel's columns lie inside y
            // and belong to it alone; the residual's length was checked.
            unsafe { epilogue.apply(y, self.out, r0, r1 - r0, c0, (self.out - c0).min(PANEL)) };
        };
        let tasks = row_tasks * self.panels;
        if tasks == 1 {
            task(0);
        } else {
            (0..tasks).into_par_iter().for_each(task);
        }
    }
}

/// What one task's micro-kernel calls share.
struct Block<'a> {
    x: &'a [f32],
    w: &'a PackedLinear,
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

    /// Rows r0..r0+rows (≤ 6) of the panel's outputs, inputs `ks`: starts
    /// from 0 at the first block, else from the partial sums in y; adds the
    /// bias after the last block.
    ///
    /// # Safety
    /// No other thread touches those rows of the panel's columns.
    unsafe fn rows(&self, r0: usize, rows: usize, ks: std::ops::Range<usize>, path: PackedPath) {
        let k = self.w.in_features;
        let (first, last) = (ks.start == 0, ks.end == k);
        match path {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `available()` said the CPU has AVX-512F; the caller's
            // contract covers the writes.
            PackedPath::Avx512 => unsafe {
                match rows {
                    6 => avx512::block::<6>(self, r0, ks, first, last),
                    5 => avx512::block::<5>(self, r0, ks, first, last),
                    4 => avx512::block::<4>(self, r0, ks, first, last),
                    3 => avx512::block::<3>(self, r0, ks, first, last),
                    2 => avx512::block::<2>(self, r0, ks, first, last),
                    _ => avx512::block::<1>(self, r0, ks, first, last),
                }
            },
            _ => {
                let (c0, width) = self.columns();
                let out = self.w.out_features;
                let panel = &self.w.packed[self.panel * k * PANEL..(self.panel + 1) * k * PANEL];
                for r in r0..r0 + rows {
                    // SAFETY: the caller's contract.
                    let y = unsafe { std::slice::from_raw_parts_mut(self.out.0.add(r * out + c0), width) };
                    let x = &self.x[r * k..(r + 1) * k];
                    for (j, y) in y.iter_mut().enumerate() {
                        let mut acc = if first { 0.0 } else { *y };
                        for kk in ks.clone() {
                            acc = x[kk].mul_add(panel[kk * PANEL + j], acc);
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
pub(super) mod avx512 {
    use std::arch::x86_64::*;

    use super::{Block, PANEL};

    /// The write masks of a panel's four 16-column vectors, `width` of its
    /// 64 columns real.
    // `#[inline]` on the shared helpers: the BF16 kernels call them from
    // another module (another codegen unit), where an uninlined call kept
    // the accumulators in memory and ran the BF16 kernel 3× slower.
    #[inline]
    pub(in crate::backend::cpu) fn masks(width: usize) -> [__mmask16; 4] {
        std::array::from_fn(|v| {
            let lanes = width.saturating_sub(v * 16).min(16);
            ((1u32 << lanes) - 1) as __mmask16
        })
    }

    /// MR rows × 4 vectors of accumulators: zeros at the first input block,
    /// else the partial sums stored in y.
    ///
    /// # Safety
    /// AVX-512F; `y_at(r, v)` points at 16 floats readable under the mask.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(in crate::backend::cpu) unsafe fn start<const MR: usize>(
        first: bool,
        masks: &[__mmask16; 4],
        y_at: impl Fn(usize, usize) -> *mut f32,
    ) -> [[__m512; 4]; MR] {
        let mut acc = [[_mm512_setzero_ps(); 4]; MR];
        if !first {
            for (r, acc_r) in acc.iter_mut().enumerate() {
                for (v, a) in acc_r.iter_mut().enumerate() {
                    *a = unsafe { _mm512_maskz_loadu_ps(masks[v], y_at(r, v)) };
                }
            }
        }
        acc
    }

    /// Stores the accumulators, + bias (after the last block) at columns
    /// c0.., under the masks.
    ///
    /// # Safety
    /// As [`start`], writable; the bias holds the panel's real columns.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(in crate::backend::cpu) unsafe fn finish<const MR: usize>(
        acc: &[[__m512; 4]; MR],
        bias: Option<&[f32]>,
        c0: usize,
        masks: &[__mmask16; 4],
        y_at: impl Fn(usize, usize) -> *mut f32,
    ) {
        for (r, acc_r) in acc.iter().enumerate() {
            for (v, &a) in acc_r.iter().enumerate() {
                if masks[v] == 0 {
                    break;
                }
                let a = match bias {
                    Some(bias) => _mm512_add_ps(a, unsafe { _mm512_maskz_loadu_ps(masks[v], bias.as_ptr().add(c0 + v * 16)) }),
                    None => a,
                };
                unsafe { _mm512_mask_storeu_ps(y_at(r, v), masks[v], a) };
            }
        }
    }

    /// MR rows of x · the panel's inputs `ks` -> y's (MR, ≤ 64) block:
    /// 4 weight vectors loaded per input, each row's x broadcast against them.
    ///
    /// # Safety
    /// The CPU has AVX-512F; as [`Block::rows`] for the writes.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn block<const MR: usize>(b: &Block, r0: usize, ks: std::ops::Range<usize>, first: bool, last: bool) {
        let (k, out) = (b.w.in_features, b.w.out_features);
        let (c0, width) = b.columns();
        assert!(ks.end <= k && (r0 + MR) * k <= b.x.len() && (b.panel + 1) * k * PANEL <= b.w.packed.len());
        let masks = masks(width);
        // SAFETY (whole function): rows r0..r0+MR of x hold k values each,
        // the panel k·64 weights (asserted); y is touched under the masks
        // of real columns only, in the caller's rows.
        let y_at = |r: usize, v: usize| unsafe { b.out.0.add((r0 + r) * out + c0 + v * 16) };
        let mut acc = unsafe { start::<MR>(first, &masks, y_at) };
        let x = b.x.as_ptr();
        let panel = unsafe { b.w.packed.as_ptr().add(b.panel * k * PANEL) };
        for kk in ks {
            let wk = unsafe { panel.add(kk * PANEL) };
            let wv =
                unsafe { [_mm512_loadu_ps(wk), _mm512_loadu_ps(wk.add(16)), _mm512_loadu_ps(wk.add(32)), _mm512_loadu_ps(wk.add(48))] };
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let xv = _mm512_set1_ps(unsafe { *x.add((r0 + r) * k + kk) });
                for v in 0..4 {
                    acc_r[v] = _mm512_fmadd_ps(xv, wv[v], acc_r[v]);
                }
            }
        }
        unsafe { finish::<MR>(&acc, if last { b.bias } else { None }, c0, &masks, y_at) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        (0..n as u64).map(|i| (crate::rng::normal(seed, 11, i) * 0.5) as f32).collect()
    }

    #[test]
    fn packing_keeps_every_weight_and_refuses_a_wrong_length() {
        let (out, k) = (70, 13);
        let w = values(out * k, 1);
        let p = PackedLinear::pack("w", &w, out, k).unwrap();
        for o in 0..out {
            for kk in 0..k {
                assert_eq!(p.weight(o, kk), w[o * k + kk]);
            }
        }
        let err = PackedLinear::pack("layer.3.w", &w[1..], out, k).unwrap_err().to_string();
        assert!(err.contains("layer.3.w"), "{err}");
    }
}

//! Fused attention parity (kernels/attention.cu): out and lse from the
//! forward, dq, dk and dv from the backward, against a straightforward f64
//! reference (scores, masked softmax with the all-masked rule, dropout from
//! rng::bits24, context; the backward by its explicit formulas). BF16 rows
//! are judged against the same reference run with a plain flash BF16
//! attention's roundings (`Rounding::PlainBf16`).
//!
//! Every head dim (each is its own launch branch) in f32 and bf16, on:
//! T = 1 with an all-masked batch row; T = 37 (less than one 64-row tile)
//! with a padded row and an all-masked row; T = 70 (ragged, two tiles) with a
//! padded row. Dropout p = 0.1 on the first two, and on T = 70 for half the
//! head dims. At head dims 32 and 64 (bf16 there is the tensor-core path,
//! attention_tc.cu) also T = 130 (three 64-key forward tiles, five 32-row
//! backward tiles, a padded row whose last two 64-key blocks are past its last
//! key), with dropout at 32 and without at 64, so the tensor-core kernels see
//! dropout on and off at both. Sliding windows (ModernBERT's local layers)
//! at every head dim: T = 150 with half-width 20 and a row of 40 real keys
//! (queries 40–59 are padding that still reads real keys, 60 on are uniform
//! over all 150 keys; the windows cut every 64-row block's key range), and
//! T = 90 with half-width 7, an all-masked row and dropout. Rows are named
//! after the kernels that ran, with `w<half-width>` in their shapes.
//! On a real GPU, also bert-base-sized cases (B 8, H 12, D 64, T 128 and
//! 512) with timings in the note.

use rayon::prelude::*;

use super::{CheckRow, FLOAT_TYPES, Tolerance, as_stored, compare, compare_with_plain, random};
use crate::backend::cuda::ops::attention::{
    AttentionDims, AttentionDropout, HEAD_DIMS, WindowFlags, attention_bwd, attention_fwd, kernel_name,
};
use crate::device::{Device, DeviceBuffer, Elem};
use crate::error::Result;

struct Case {
    batch: usize,
    seq_len: usize,
    heads: usize,
    head_dim: usize,
    /// Real keys per batch row (the rest of the row is padding); 0 = all masked.
    lens: Vec<usize>,
    dropout: Option<f32>,
    /// A sliding window's half-width.
    window: Option<usize>,
    /// Time the kernels after checking them (real GPU only); the note holds the result.
    timed: bool,
}

/// Reference outputs, all (B, T, H·D) except lse (B, H, T).
struct Reference {
    out: Vec<f64>,
    lse: Vec<f64>,
    dq: Vec<f64>,
    dk: Vec<f64>,
    dv: Vec<f64>,
}

/// (stream_key, threshold, keep_scale) as the launcher computes them.
fn dropout_params(d: Option<AttentionDropout>) -> (u64, u32, f64) {
    match d {
        None => (0, 0, 1.0),
        Some(d) => {
            let p = d.p as f64;
            (d.stream_key, (p * (1u32 << 24) as f64).round() as u32, (1.0 / (1.0 - p)) as f32 as f64)
        }
    }
}

/// Where a reference rounds what it stores: `exact` keeps f64 throughout;
/// `plain_bf16` rounds to BF16 where a plain fused (flash) BF16 attention
/// does: the dropped-out probabilities before they multiply V and dO, the
/// stored output O (from which the backward's D = rowsum(dO∘O) is taken),
/// dS before it multiplies K and Q, and the stored dq, dk and dv. Scores,
/// softmax, lse and dP stay in higher precision, as its f32 accumulators do.
#[derive(Clone, Copy)]
enum Rounding {
    Exact,
    PlainBf16,
}

impl Rounding {
    fn round(self, x: f64) -> f64 {
        match self {
            Rounding::Exact => x,
            Rounding::PlainBf16 => half::bf16::from_f64(x).to_f64(),
        }
    }
}

/// One head of one batch row, in f64 with `rounding`: returns (out, dq, dk,
/// dv) for that head as (T, D) row-major, and lse (T).
#[allow(clippy::too_many_arguments)]
fn reference_head(
    x: [&[f64]; 4], // q, k, v, dout (B, T, H·D)
    mask: &[u8],    // (B, T)
    dims: AttentionDims,
    b: usize,
    h: usize,
    scale: f64,
    dropout: Option<AttentionDropout>,
    window: Option<usize>,
    rounding: Rounding,
) -> [Vec<f64>; 5] {
    let AttentionDims { seq_len: t, heads, head_dim: d, .. } = dims;
    let (key, threshold, keep_scale) = dropout_params(dropout);
    let r = |x: f64| rounding.round(x);
    let row = |a: &[f64], i: usize| -> Vec<f64> {
        let at = (b * t + i) * heads * d + h * d;
        a[at..at + d].to_vec()
    };
    let [q, k, v, dout]: [Vec<Vec<f64>>; 4] = x.map(|a| (0..t).map(|i| row(a, i)).collect());
    let dot = |a: &[f64], c: &[f64]| a.iter().zip(c).map(|(x, y)| x * y).sum::<f64>();
    let mask = &mask[b * t..(b + 1) * t];
    let (mut out, mut lse) = (vec![0.0; t * d], vec![0.0; t]);
    let (mut dq, mut dk, mut dv) = (vec![0.0; t * d], vec![0.0; t * d], vec![0.0; t * d]);
    for i in 0..t {
        // Key j counts when it is real and (with a window) |i − j| <= w; a
        // row where none counts scores every key 0 (uniform), with dS = 0.
        let counts = |j: usize| mask[j] != 0 && window.is_none_or(|w| i.abs_diff(j) <= w);
        let uniform = !(0..t).any(counts);
        let s: Vec<f64> = (0..t)
            .map(|j| {
                if uniform {
                    0.0
                } else if counts(j) {
                    scale * dot(&q[i], &k[j])
                } else {
                    f64::NEG_INFINITY
                }
            })
            .collect();
        let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = s.iter().map(|&x| (x - m).exp()).sum();
        lse[i] = m + sum.ln();
        let p: Vec<f64> = s.iter().map(|&x| (x - m).exp() / sum).collect();
        let offset_row = ((b * heads + h) * t + i) * t;
        let z: Vec<f64> =
            (0..t).map(|j| if crate::rng::bits24(key, (offset_row + j) as u64) >= threshold { keep_scale } else { 0.0 }).collect();
        // The dropped-out probabilities, as the P·V and Pᵀ·dO products see them.
        let pz: Vec<f64> = (0..t).map(|j| r(p[j] * z[j])).collect();
        for j in 0..t {
            for c in 0..d {
                out[i * d + c] += pz[j] * v[j][c];
                dv[j * d + c] += pz[j] * dout[i][c];
            }
        }
        for c in 0..d {
            out[i * d + c] = r(out[i * d + c]);
        }
        // dP (gradient of the pre-dropout probabilities), then the softmax
        // backward with D = rowsum(dO∘O) = Σ_j p_j dP_j in exact arithmetic.
        let dp: Vec<f64> = (0..t).map(|j| z[j] * dot(&dout[i], &v[j])).collect();
        let rowdot = dot(&dout[i], &out[i * d..(i + 1) * d]);
        for j in 0..t {
            let ds = if uniform { 0.0 } else { r(p[j] * (dp[j] - rowdot)) };
            for c in 0..d {
                dq[i * d + c] += scale * ds * k[j][c];
                dk[j * d + c] += scale * ds * q[i][c];
            }
        }
    }
    for g in [&mut dq, &mut dk, &mut dv] {
        g.iter_mut().for_each(|x| *x = r(*x));
    }
    [out, lse, dq, dk, dv]
}

fn reference(
    x: [&[f64]; 4],
    mask: &[u8],
    dims: AttentionDims,
    scale: f64,
    dropout: Option<AttentionDropout>,
    window: Option<usize>,
    rounding: Rounding,
) -> Reference {
    let AttentionDims { batch, seq_len: t, heads, head_dim: d } = dims;
    let heads_out: Vec<[Vec<f64>; 5]> = (0..batch * heads)
        .into_par_iter()
        .map(|bh| reference_head(x, mask, dims, bh / heads, bh % heads, scale, dropout, window, rounding))
        .collect();
    let n = batch * t * heads * d;
    let mut r = Reference { out: vec![0.0; n], lse: vec![0.0; batch * heads * t], dq: vec![0.0; n], dk: vec![0.0; n], dv: vec![0.0; n] };
    for (bh, [out, lse, dq, dk, dv]) in heads_out.into_iter().enumerate() {
        let (b, h) = (bh / heads, bh % heads);
        r.lse[bh * t..(bh + 1) * t].copy_from_slice(&lse);
        for i in 0..t {
            let at = (b * t + i) * heads * d + h * d;
            for (dst, src) in [(&mut r.out, &out), (&mut r.dq, &dq), (&mut r.dk, &dk), (&mut r.dv, &dv)] {
                dst[at..at + d].copy_from_slice(&src[i * d..(i + 1) * d]);
            }
        }
    }
    r
}

fn run_case(device: &Device, case: &Case, elem: Elem, seed: u64) -> Result<Vec<CheckRow>> {
    let dims = AttentionDims { batch: case.batch, seq_len: case.seq_len, heads: case.heads, head_dim: case.head_dim };
    let (b, t) = (case.batch, case.seq_len);
    let n = b * t * case.heads * case.head_dim;
    let scale = (1.0 / (case.head_dim as f64).sqrt()) as f32;
    let dropout = case.dropout.map(|p| AttentionDropout { p, stream_key: crate::rng::stream_key(seed, 41) });
    let mask: Vec<u8> = (0..b * t).map(|i| u8::from(i % t < case.lens[i / t])).collect();
    let hosts: Vec<Vec<f32>> = (0..4).map(|s| random(seed + s, n, 1.0)).collect();
    let stored: Vec<Vec<f64>> = hosts.iter().map(|x| as_stored(x, elem)).collect();
    let inputs = [&stored[0][..], &stored[1], &stored[2], &stored[3]];
    let want = reference(inputs, &mask, dims, scale as f64, dropout, case.window, Rounding::Exact);
    // BF16 outputs are allowed twice a plain flash BF16 attention's error.
    let plain = (elem == Elem::BF16).then(|| reference(inputs, &mask, dims, scale as f64, dropout, case.window, Rounding::PlainBf16));

    let up = |x: &[f32]| DeviceBuffer::from_f32(device, x, elem);
    let (q, k, v, dout) = (up(&hosts[0])?, up(&hosts[1])?, up(&hosts[2])?, up(&hosts[3])?);
    let key_mask = DeviceBuffer::from_u8(device, &mask)?;
    let flags = case.window.map(|w| WindowFlags::new(device, &mask, t, w)).transpose()?;
    let window = flags.as_ref().map(WindowFlags::window);
    let out = DeviceBuffer::uninit(device, n, elem)?;
    let lse = DeviceBuffer::uninit(device, b * case.heads * t, Elem::F32)?;
    let grads = [DeviceBuffer::uninit(device, n, elem)?, DeviceBuffer::uninit(device, n, elem)?, DeviceBuffer::uninit(device, n, elem)?];
    for buf in [&out, &lse, &grads[0], &grads[1], &grads[2]] {
        buf.poison()?;
    }
    attention_fwd(&q, &k, &v, &key_mask, &out, &lse, dims, scale, dropout, window)?;
    attention_bwd(&q, &k, &v, &key_mask, &out, &lse, &dout, &grads[0], &grads[1], &grads[2], dims, scale, dropout, window)?;

    let lens: Vec<String> = case.lens.iter().map(|l| l.to_string()).collect();
    let p = case.dropout.map_or(String::new(), |p| format!(" p{p}"));
    let w = case.window.map_or(String::new(), |w| format!(" w{w}"));
    let shapes = format!("B{b} T{t} H{} D{} len[{}]{p}{w}", case.heads, case.head_dim, lens.join(","));
    let tol = Tolerance::for_elem(elem);
    let name = |pass: &str, what: &str| format!("{} {what}", kernel_name(case.head_dim, elem, pass));
    let check = |kernel: &str, got: &DeviceBuffer, want: &[f64], plain: Option<&[f64]>| -> Result<CheckRow> {
        let got = got.to_f32_vec()?;
        Ok(match plain {
            Some(plain) => compare_with_plain(kernel, &shapes, &got, want, plain),
            None => compare(kernel, &shapes, &got, want, tol),
        })
    };
    let plain_of = |pick: fn(&Reference) -> &Vec<f64>| plain.as_ref().map(|p| &pick(p)[..]);
    let mut rows = vec![
        check(&name("fwd", "out"), &out, &want.out, plain_of(|r| &r.out))?,
        // lse is stored in f32 by both; its BF16 row uses the default plain (want rounded once).
        check(&name("fwd", "lse"), &lse, &want.lse, None)?,
        check(&name("bwd_dq", "dq"), &grads[0], &want.dq, plain_of(|r| &r.dq))?,
        check(&name("bwd_dkdv", "dk"), &grads[1], &want.dk, plain_of(|r| &r.dk))?,
        check(&name("bwd_dkdv", "dv"), &grads[2], &want.dv, plain_of(|r| &r.dv))?,
    ];
    if case.timed && !device.is_simulated() && rows.iter().all(|r| r.pass) {
        // Timings on the real GPU, after the checked run (which warmed up).
        let iters = 10;
        let time = |f: &dyn Fn() -> Result<()>| -> Result<f64> {
            device.synchronize()?;
            let start = std::time::Instant::now();
            for _ in 0..iters {
                f()?;
            }
            device.synchronize()?;
            Ok(start.elapsed().as_secs_f64() * 1e3 / iters as f64)
        };
        let fwd_ms = time(&|| attention_fwd(&q, &k, &v, &key_mask, &out, &lse, dims, scale, dropout, window))?;
        let bwd_ms = time(&|| {
            attention_bwd(&q, &k, &v, &key_mask, &out, &lse, &dout, &grads[0], &grads[1], &grads[2], dims, scale, dropout, window)
        })?;
        // Useful FLOPs: 2 T² D per product; forward 2 products, backward 5 (scores recomputed twice).
        let gflop = (b * case.heads) as f64 * 2.0 * (t * t * case.head_dim) as f64 / 1e9;
        rows[0].note =
            format!("fwd {fwd_ms:.3} ms ({:.1} TFLOP/s), bwd {bwd_ms:.3} ms ({:.1} TFLOP/s)", 2.0 * gflop / fwd_ms, 5.0 * gflop / bwd_ms);
    }
    Ok(rows)
}

pub fn cases(device: &Device) -> Result<Vec<CheckRow>> {
    let mut rows = Vec::new();
    for &elem in &FLOAT_TYPES {
        for (n, &head_dim) in HEAD_DIMS.iter().enumerate() {
            let mut cases = vec![
                Case { batch: 2, seq_len: 1, heads: 2, head_dim, lens: vec![1, 0], dropout: Some(0.1), window: None, timed: false },
                Case { batch: 2, seq_len: 37, heads: 1, head_dim, lens: vec![30, 0], dropout: Some(0.1), window: None, timed: false },
                Case {
                    batch: 2,
                    seq_len: 70,
                    heads: 2,
                    head_dim,
                    lens: vec![61, 70],
                    dropout: (n % 2 == 1).then_some(0.1),
                    window: None,
                    timed: false,
                },
            ];
            if head_dim >= 32 {
                let dropout = (head_dim == 32).then_some(0.1);
                cases.push(Case { batch: 2, seq_len: 130, heads: 1, head_dim, lens: vec![50, 130], dropout, window: None, timed: false });
            }
            // Sliding windows that cut: padding queries reading real keys,
            // uniform padding queries, an all-masked row, key ranges that
            // start past 0 and end before T.
            let dropout = (n % 2 == 0).then_some(0.1);
            cases.push(Case { batch: 2, seq_len: 150, heads: 1, head_dim, lens: vec![150, 40], dropout, window: Some(20), timed: false });
            cases.push(Case {
                batch: 2,
                seq_len: 90,
                heads: 1,
                head_dim,
                lens: vec![0, 90],
                dropout: Some(0.1),
                window: Some(7),
                timed: false,
            });
            for (c, case) in cases.iter().enumerate() {
                rows.extend(run_case(device, case, elem, 100 + 10 * c as u64 + n as u64)?);
            }
        }
        if !device.is_simulated() {
            for t in [128, 512] {
                let lens = (0..8).map(|b| t - (b * t) / 10).collect();
                let case = Case { batch: 8, seq_len: t, heads: 12, head_dim: 64, lens, dropout: Some(0.1), window: None, timed: true };
                rows.extend(run_case(device, &case, elem, 7)?);
            }
        }
    }
    Ok(rows)
}

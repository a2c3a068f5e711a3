//! `berth bench` on a CUDA device: whole-model cases (inference, and a
//! training step with the optimizer) and a kernel timing table against
//! measured ceilings. Every timing synchronises the device before the clock
//! stops (DESIGN.md, Style).

use std::time::Instant;

use crate::autograd::Tape;
use crate::backend::cuda::ops::adamw::{AdamWStep, adamw_update, grad_norm};
use crate::backend::cuda::ops::attention::{AttentionDims, WindowFlags, attention_bwd, attention_fwd};
use crate::backend::cuda::ops::gemm::{self, Batched};
use crate::backend::cuda::ops::relative_attention::{RelativeDims, relative_attention_bwd, relative_attention_fwd};
use crate::backend::cuda::ops::{dropout, gelu, layernorm};
use crate::data::Batch;
use crate::device::Device;
use crate::device::{DeviceBuffer, Elem};
use crate::error::Result;
use crate::model::device_model::Precision;
use crate::model::{BertClassifier, BertConfig, ForwardMode, Labels};
use crate::optim::{AdamW, AdamWConfig};
use crate::train::device_training::DeviceTraining;

/// H100 SXM's dense BF16 tensor-core peak, the denominator of MFU (issue 4).
pub const PEAK_FLOPS: f64 = 989e12;

/// Model FLOPs per token for a training step: 6·N_matmul + 12·L·T·d.
pub fn train_flops_per_token(config: &BertConfig, seq_len: usize) -> f64 {
    let (l, d, i) = (config.num_hidden_layers as f64, config.hidden_size as f64, config.intermediate_size as f64);
    let n_matmul = l * (4.0 * d * d + 2.0 * d * i);
    6.0 * n_matmul + 12.0 * l * seq_len as f64 * d
}

/// Median milliseconds of `iters` runs of `f` after `warmup`, synchronised.
pub fn time_ms(device: &Device, warmup: usize, iters: usize, mut f: impl FnMut(usize) -> Result<()>) -> Result<(f64, f64)> {
    for i in 0..warmup {
        f(i)?;
    }
    device.synchronize()?;
    let mut times = Vec::with_capacity(iters);
    for i in 0..iters {
        let start = Instant::now();
        f(warmup + i)?;
        device.synchronize()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    Ok((times[times.len() / 2], times[0]))
}

/// One whole-model case on the device: `train` is forward + backward +
/// gradient norm + AdamW; otherwise a no-grad forward.
pub fn model_case(
    device: &Device,
    model: &BertClassifier,
    precision: Precision,
    batch: &Batch,
    labels: &Labels,
    train: bool,
    (warmup, iters): (usize, usize),
) -> Result<(f64, f64)> {
    let trainable = vec![true; model.params.len()];
    let mut optimizer = AdamW::new(AdamWConfig::default(), model.params.names(), model.params.tensors(), &trainable);
    let mut engine = DeviceTraining::upload(device, precision, &model.params, &optimizer)?;
    time_ms(device, warmup, iters, |i| {
        if train {
            let mut tape = Tape::new();
            let out = model.forward_on(&mut tape, engine.params(), batch, ForwardMode::train(i as u64))?;
            let loss = model.loss(&mut tape, out.logits, labels, None)?;
            let mut grads = tape.backward(loss)?;
            let grads: Vec<_> = out.params.iter().map(|v| grads.take(*v)).collect();
            engine.step(&mut optimizer, &grads, 1e-5, 1.0)?;
        } else {
            let mut tape = Tape::no_grad();
            let out = model.forward_on(&mut tape, engine.params(), batch, ForwardMode::eval())?;
            std::hint::black_box(tape.value(out.logits).numel());
        }
        Ok(())
    })
}

/// One row of the kernel timing table.
#[derive(Clone, Debug, serde::Serialize)]
pub struct KernelTiming {
    pub kernel: String,
    pub shape: String,
    pub median_us: f64,
    /// GB/s for memory-bound kernels, TFLOP/s for GEMMs and attention.
    pub achieved: f64,
    pub unit: &'static str,
    pub ceiling: f64,
}

fn filled(device: &Device, n: usize, elem: Elem, seed: u64) -> Result<DeviceBuffer> {
    let values: Vec<f32> = (0..n).map(|i| (crate::rng::normal(seed, 3, i as u64) * 0.5) as f32).collect();
    DeviceBuffer::from_f32(device, &values, elem)
}

/// Times every kernel at bert-base's training shapes (B=64, T=128: 8,192
/// tokens, hidden 768, FFN 3,072, 12 heads of 64), against two measured
/// ceilings: device-to-device copy bandwidth, and the best large GEMM.
pub fn kernel_timings(device: &Device) -> Result<Vec<KernelTiming>> {
    let (iters, warmup) = if device.is_simulated() { (1, 0) } else { (20, 3) };
    let (b, t, h, heads, ffn) = if device.is_simulated() { (2, 16, 64, 2, 128) } else { (64, 128, 768, 12, 3072) };
    let n = b * t;
    let mut rows = Vec::new();
    let us = |ms: f64| ms * 1e3;

    // Ceilings.
    let big = if device.is_simulated() { 1 << 16 } else { 1 << 28 };
    let src = DeviceBuffer::zeros(device, big, Elem::F32)?;
    let dst = DeviceBuffer::zeros(device, big, Elem::F32)?;
    let (copy_ms, _) = time_ms(device, warmup, iters, |_| dst.copy_from(&src))?;
    let bandwidth = 2.0 * (big * 4) as f64 / (copy_ms / 1e3) / 1e9;
    rows.push(KernelTiming {
        kernel: "ceiling: device copy".into(),
        shape: format!("{} MiB", big * 4 >> 20),
        median_us: us(copy_ms),
        achieved: bandwidth,
        unit: "GB/s",
        ceiling: bandwidth,
    });
    let g = if device.is_simulated() { 64 } else { 8192 };
    let mut gemm_ceiling = [0.0f64; 2];
    for (slot, elem) in [(0, Elem::F32), (1, Elem::BF16)] {
        let (x, w, y) = (filled(device, g * g, elem, 1)?, filled(device, g * g, elem, 2)?, DeviceBuffer::zeros(device, g * g, elem)?);
        let (ms, _) = time_ms(device, warmup.min(2), iters.min(10), |_| gemm::linear_fwd(&x, &w, None, &y, g))?;
        gemm_ceiling[slot] = 2.0 * (g as f64).powi(3) / (ms / 1e3) / 1e12;
        rows.push(KernelTiming {
            kernel: format!("ceiling: gemm {}", elem.suffix()),
            shape: format!("{g}³"),
            median_us: us(ms),
            achieved: gemm_ceiling[slot],
            unit: "TFLOP/s",
            ceiling: gemm_ceiling[slot],
        });
    }

    for elem in [Elem::F32, Elem::BF16] {
        let sfx = elem.suffix();
        let size = elem.size() as f64;
        let ceiling_flops = gemm_ceiling[if elem == Elem::F32 { 0 } else { 1 }];
        // GEMMs of one layer.
        for (name, k, o) in [("gemm qkv-sized", h, h), ("gemm ffn up", h, ffn), ("gemm ffn down", ffn, h)] {
            let (x, w, bias, y) = (
                filled(device, n * k, elem, 3)?,
                filled(device, o * k, elem, 4)?,
                filled(device, o, elem, 5)?,
                DeviceBuffer::zeros(device, n * o, elem)?,
            );
            let (ms, _) = time_ms(device, warmup, iters, |_| gemm::linear_fwd(&x, &w, Some(&bias), &y, n))?;
            let flops = 2.0 * (n * k * o) as f64;
            rows.push(KernelTiming {
                kernel: format!("{name} fwd+bias {sfx}"),
                shape: format!("({n}, {k}) · ({o}, {k})ᵀ"),
                median_us: us(ms),
                achieved: flops / (ms / 1e3) / 1e12,
                unit: "TFLOP/s",
                ceiling: ceiling_flops,
            });
            let (dw, db) = (DeviceBuffer::zeros(device, o * k, Elem::F32)?, DeviceBuffer::zeros(device, o, Elem::F32)?);
            let (ms, _) = time_ms(device, warmup, iters, |_| gemm::linear_bwd_weight(&y, &x, &dw, Some(&db), n, false))?;
            rows.push(KernelTiming {
                kernel: format!("{name} dW+bgrad {sfx}"),
                shape: format!("({o}, {n}) · ({n}, {k})"),
                median_us: us(ms),
                achieved: flops / (ms / 1e3) / 1e12,
                unit: "TFLOP/s",
                ceiling: ceiling_flops,
            });
        }
        // Element-wise and row-wise kernels, counted as bytes moved once.
        let x = filled(device, n * h, elem, 6)?;
        let (res, y, sum) =
            (filled(device, n * h, elem, 7)?, DeviceBuffer::zeros(device, n * h, elem)?, DeviceBuffer::zeros(device, n * h, elem)?);
        let (lw, lb) = (filled(device, h, elem, 8)?, filled(device, h, elem, 9)?);
        let (mean, rstd) = (DeviceBuffer::zeros(device, n, Elem::F32)?, DeviceBuffer::zeros(device, n, Elem::F32)?);
        let (ms, _) = time_ms(device, warmup, iters, |_| {
            layernorm::layer_norm_fwd(&x, Some(&res), &lw, &lb, &y, Some(&sum), &mean, &rstd, n, h, 1e-12)
        })?;
        let bytes = 4.0 * (n * h) as f64 * size;
        rows.push(KernelTiming {
            kernel: format!("layer_norm fwd +residual {sfx}"),
            shape: format!("({n}, {h})"),
            median_us: us(ms),
            achieved: bytes / (ms / 1e3) / 1e9,
            unit: "GB/s",
            ceiling: bandwidth,
        });
        let (dx, dw, db) = (
            DeviceBuffer::zeros(device, n * h, elem)?,
            DeviceBuffer::zeros(device, h, Elem::F32)?,
            DeviceBuffer::zeros(device, h, Elem::F32)?,
        );
        let (ms, _) = time_ms(device, warmup, iters, |_| layernorm::layer_norm_bwd(&sum, &lw, &mean, &rstd, &y, &dx, &dw, &db, n, h))?;
        rows.push(KernelTiming {
            kernel: format!("layer_norm bwd {sfx}"),
            shape: format!("({n}, {h})"),
            median_us: us(ms),
            achieved: 3.0 * (n * h) as f64 * size / (ms / 1e3) / 1e9,
            unit: "GB/s",
            ceiling: bandwidth,
        });
        let u = filled(device, n * ffn, elem, 10)?;
        let v = DeviceBuffer::zeros(device, n * ffn, elem)?;
        let (ms, _) = time_ms(device, warmup, iters, |_| gelu::gelu_fwd(&u, &v))?;
        rows.push(KernelTiming {
            kernel: format!("gelu fwd {sfx}"),
            shape: format!("({n}, {ffn})"),
            median_us: us(ms),
            achieved: 2.0 * (n * ffn) as f64 * size / (ms / 1e3) / 1e9,
            unit: "GB/s",
            ceiling: bandwidth,
        });
        let params = dropout::DropoutParams { p: 0.1, stream_key: crate::rng::stream_key(1, 2) };
        let (ms, _) = time_ms(device, warmup, iters, |_| dropout::dropout_fwd(&x, &y, params))?;
        rows.push(KernelTiming {
            kernel: format!("dropout fwd {sfx}"),
            shape: format!("({n}, {h})"),
            median_us: us(ms),
            achieved: 2.0 * (n * h) as f64 * size / (ms / 1e3) / 1e9,
            unit: "GB/s",
            ceiling: bandwidth,
        });
        // Attention.
        let dims = AttentionDims { batch: b, seq_len: t, heads, head_dim: h / heads };
        let (q, k, vv) = (filled(device, n * h, elem, 11)?, filled(device, n * h, elem, 12)?, filled(device, n * h, elem, 13)?);
        let mask = DeviceBuffer::from_u8(device, &vec![1u8; n])?;
        let (o, lse) = (DeviceBuffer::zeros(device, n * h, elem)?, DeviceBuffer::zeros(device, b * heads * t, Elem::F32)?);
        let scale = 1.0 / ((h / heads) as f32).sqrt();
        let (dq, dk, dv) = (
            DeviceBuffer::zeros(device, n * h, elem)?,
            DeviceBuffer::zeros(device, n * h, elem)?,
            DeviceBuffer::zeros(device, n * h, elem)?,
        );
        // Full attention, then ModernBERT's local layers: a sliding window of
        // half-width 64 (local_attention 128) on a GPU, T/8 on the simulator,
        // whose useful FLOPs count only the query-key pairs inside it.
        let half_width = if device.is_simulated() { (t / 8).max(1) } else { 64 };
        let flags = WindowFlags::new(device, &vec![1u8; n], t, half_width)?;
        let pairs_in_window: usize = (0..t).map(|i| (i + half_width).min(t - 1) + 1 - i.saturating_sub(half_width)).sum();
        let variants = [
            ("attention", None, t * t, String::new()),
            ("attention window", Some(flags.window()), pairs_in_window, format!(" w={half_width}")),
        ];
        for (name, window, pairs, suffix) in variants {
            let shape = format!("B={b} H={heads} T={t} D={}{suffix}", h / heads);
            let fwd_flops = 4.0 * (b * heads * pairs * (h / heads)) as f64;
            let (ms, _) = time_ms(device, warmup, iters, |_| attention_fwd(&q, &k, &vv, &mask, &o, &lse, dims, scale, None, window))?;
            rows.push(KernelTiming {
                kernel: format!("{name} fwd {sfx}"),
                shape: shape.clone(),
                median_us: us(ms),
                achieved: fwd_flops / (ms / 1e3) / 1e12,
                unit: "TFLOP/s",
                ceiling: ceiling_flops,
            });
            let (ms, _) = time_ms(device, warmup, iters, |_| {
                attention_bwd(&q, &k, &vv, &mask, &o, &lse, &res, &dq, &dk, &dv, dims, scale, None, window)
            })?;
            rows.push(KernelTiming {
                kernel: format!("{name} bwd {sfx}"),
                shape,
                median_us: us(ms),
                achieved: 2.5 * fwd_flops / (ms / 1e3) / 1e12,
                unit: "TFLOP/s",
                ceiling: ceiling_flops,
            });
        }
        // DeBERTa's composed relative attention (deberta-v3-base's 512 table rows on a GPU).
        let positions = if device.is_simulated() { 32 } else { 512 };
        let rel_dims = RelativeDims { batch: b, seq_len: t, heads, head_dim: h / heads, positions };
        let (pq, pk) = (filled(device, positions * h, elem, 14)?, filled(device, positions * h, elem, 15)?);
        let span = positions as i64 / 2;
        let distance_rows: Vec<u32> = (-(t as i64 - 1)..t as i64).map(|d| (d + span).clamp(0, 2 * span - 1) as u32).collect();
        let rows_buf = DeviceBuffer::from_u32(device, &distance_rows)?;
        let probs = DeviceBuffer::zeros(device, b * heads * t * t, Elem::F32)?;
        let dscores = DeviceBuffer::zeros(device, b * heads * t * t, Elem::F32)?;
        let (ms, _) = time_ms(device, warmup, iters, |_| {
            relative_attention_fwd((&q, &k, &vv), (&pq, &pk), &rows_buf, &mask, &o, &probs, rel_dims, scale, None)
        })?;
        let rel_flops = 8.0 * (b * heads * t * t * (h / heads)) as f64;
        rows.push(KernelTiming {
            kernel: format!("relative_attention fwd {sfx}"),
            shape: format!("B={b} H={heads} T={t} D={} R={positions}", h / heads),
            median_us: us(ms),
            achieved: rel_flops / (ms / 1e3) / 1e12,
            unit: "TFLOP/s",
            ceiling: ceiling_flops,
        });
        let (dpq, dpk) = (DeviceBuffer::zeros(device, positions * h, elem)?, DeviceBuffer::zeros(device, positions * h, elem)?);
        let (ms, _) = time_ms(device, warmup, iters, |_| {
            let grads = ((&dq, &dk, &dv), (&dpq, &dpk));
            relative_attention_bwd(
                (&q, &k, &vv),
                (&pq, &pk),
                &rows_buf,
                &mask,
                &probs,
                &res,
                &dscores,
                grads.0,
                grads.1,
                rel_dims,
                scale,
                None,
            )
        })?;
        rows.push(KernelTiming {
            kernel: format!("relative_attention bwd {sfx}"),
            shape: format!("B={b} H={heads} T={t} D={} R={positions}", h / heads),
            median_us: us(ms),
            achieved: 2.0 * rel_flops / (ms / 1e3) / 1e12,
            unit: "TFLOP/s",
            ceiling: ceiling_flops,
        });
        // Batched attention-shaped GEMM through cuBLASLt, for comparison with the fused kernel.
        let (s_buf, hd) = (DeviceBuffer::zeros(device, b * heads * t * t, elem)?, h / heads);
        let shape = Batched { batch: b * heads, m: t, n: t, k: hd, trans_a: false, trans_b: true, alpha: scale, beta: 0.0 };
        let (ms, _) = time_ms(device, warmup, iters, |_| gemm::batched_matmul(&q, &k, &s_buf, shape))?;
        rows.push(KernelTiming {
            kernel: format!("gemm batched q·kᵀ {sfx}"),
            shape: format!("({}) {t}×{hd} · {hd}×{t}", b * heads),
            median_us: us(ms),
            achieved: 2.0 * (b * heads * t * t * hd) as f64 / (ms / 1e3) / 1e12,
            unit: "TFLOP/s",
            ceiling: ceiling_flops,
        });
    }
    // The optimizer over bert-base's 110M parameters (sim: a small stand-in).
    let p = if device.is_simulated() { 10_000 } else { 110_000_000 };
    let (master, grad, m, v, copy) = (
        filled(device, p, Elem::F32, 14)?,
        filled(device, p, Elem::F32, 15)?,
        DeviceBuffer::zeros(device, p, Elem::F32)?,
        DeviceBuffer::zeros(device, p, Elem::F32)?,
        DeviceBuffer::zeros(device, p, Elem::BF16)?,
    );
    let (norm, scale) = (DeviceBuffer::zeros(device, 1, Elem::F32)?, DeviceBuffer::zeros(device, 1, Elem::F32)?);
    let (ms, _) = time_ms(device, warmup, iters, |_| grad_norm(&[&grad], 1.0, &norm, &scale))?;
    rows.push(KernelTiming {
        kernel: "grad_norm f32".into(),
        shape: format!("{p} params"),
        median_us: us(ms),
        achieved: 4.0 * p as f64 / (ms / 1e3) / 1e9,
        unit: "GB/s",
        ceiling: bandwidth,
    });
    let adamw = AdamWConfig::default();
    let hyper = AdamWStep::new(1e-5, 0.01, (adamw.beta1, adamw.beta2), adamw.eps, 1);
    let (ms, _) = time_ms(device, warmup, iters, |_| adamw_update(&master, &grad, &m, &v, Some(&copy), hyper, Some(&scale)))?;
    rows.push(KernelTiming {
        kernel: "adamw (bf16 copy)".into(),
        shape: format!("{p} params"),
        median_us: us(ms),
        achieved: 30.0 * p as f64 / (ms / 1e3) / 1e9,
        unit: "GB/s",
        ceiling: bandwidth,
    });
    Ok(rows)
}

pub fn format_timings(device: &Device, rows: &[KernelTiming]) -> String {
    let prefix = if device.is_simulated() { "sim" } else { "gpu" };
    let mut out = format!("{:<36} {:<30} {:>11} {:>14} {:>9}\n", "kernel", "shape", "median µs", "achieved", "of ceiling");
    for r in rows {
        out.push_str(&format!(
            "{prefix}/{:<32} {:<30} {:>11.1} {:>8.1} {:<7} {:>8.0}%\n",
            r.kernel,
            r.shape,
            r.median_us,
            r.achieved,
            r.unit,
            100.0 * r.achieved / r.ceiling.max(1e-12)
        ));
    }
    out
}

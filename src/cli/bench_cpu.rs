//! `berth bench --device cpu --case kernels`: the CPU's linear layers in
//! fp32, BF16 and INT8 at a model's shapes, against ceilings measured on
//! this machine by small loops of the instruction each path uses (fp32 FMA,
//! the BF16 and the INT8 dot products), with all threads.

use std::time::Instant;

use crate::backend::cpu::bf16_linear::{self, Bf16Path, PackedBf16Linear, linear_bf16_with};
use crate::backend::cpu::fused_attention::AttentionPath;
use crate::backend::cpu::int8::{QuantizedLinear, QuantizedRows, best_path, linear_int8_fwd};
use crate::backend::cpu::matmul::{Operand, linear_fwd, transpose};
use crate::backend::cpu::packed_attention::packed_attention_fwd_on;
use crate::backend::cpu::packed_linear;
use crate::backend::{Int8Path, PackedAttentionMode};
use crate::error::Result;
use crate::model::BertConfig;

/// One row of the table.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CpuKernelTiming {
    pub kernel: String,
    pub shape: String,
    pub median_ms: f64,
    /// GFLOP/s (fp32) or GOP/s (INT8: a multiply and an add per MAC); for
    /// the activations' quantization, G values per second.
    pub achieved: f64,
    pub ceiling: f64,
}

/// Median and minimum milliseconds of `iters` runs of `f` after `warmup`.
fn time_ms(warmup: usize, iters: usize, mut f: impl FnMut()) -> (f64, f64) {
    for _ in 0..warmup {
        f();
    }
    let mut times: Vec<f64> = (0..iters.max(1))
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(|a, b| a.total_cmp(b));
    (times[times.len() / 2], times[0])
}

/// Register-resident loops of one instruction on every thread -> ops/s:
/// the ceiling a kernel on that instruction can approach.
fn measured_ceilings() -> (f64, Option<f64>, Option<f64>) {
    let threads = rayon::current_num_threads();
    let rounds = 20_000_000u64;
    // Plain threads, one per core, all started before any finishes.
    let run = |per_thread: fn(u64) -> f64| {
        let start = Instant::now();
        let ops: f64 = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads).map(|_| scope.spawn(move || per_thread(rounds))).collect();
            handles.into_iter().map(|h| h.join().expect("a ceiling loop does not panic")).sum()
        });
        ops / start.elapsed().as_secs_f64()
    };
    let fma = run(peak::fp32_fma);
    let int8 = Int8Path::Avx512Vnni.available().then(|| run(peak::int8_dot));
    let bf16 = Bf16Path::Avx512Bf16.available().then(|| run(peak::bf16_dot));
    (fma, int8, bf16)
}

#[cfg(target_arch = "x86_64")]
mod peak {
    use std::arch::x86_64::*;

    /// 12 independent chains hide the instruction's latency.
    const CHAINS: usize = 12;

    /// `rounds` × 12 fused multiply-adds of 16 f32 lanes (scalar where the
    /// CPU lacks AVX-512) -> the FLOPs done.
    pub fn fp32_fma(rounds: u64) -> f64 {
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the feature was detected.
            unsafe { fma512(rounds) }
        } else {
            let mut acc = [1f32; CHAINS];
            for _ in 0..rounds / 16 {
                for a in acc.iter_mut() {
                    *a = a.mul_add(1.000_1, 1e-7);
                }
            }
            std::hint::black_box(acc);
            (rounds / 16 * CHAINS as u64 * 2) as f64
        }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn fma512(rounds: u64) -> f64 {
        let mut acc = [_mm512_set1_ps(1.0); CHAINS];
        let (a, b) = (_mm512_set1_ps(1.000_1), _mm512_set1_ps(1e-7));
        for _ in 0..rounds {
            for c in acc.iter_mut() {
                *c = _mm512_fmadd_ps(*c, a, b);
            }
        }
        std::hint::black_box(acc);
        (rounds * CHAINS as u64 * 16 * 2) as f64
    }

    /// `rounds` × 12 `vpdpbusd` (64 byte products each) -> the INT8 ops done.
    pub fn int8_dot(rounds: u64) -> f64 {
        // SAFETY: called only where Int8Path::Avx512Vnni is available.
        unsafe { dot512(rounds) }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn dot512(rounds: u64) -> f64 {
        let mut acc = [_mm512_setzero_si512(); CHAINS];
        let (a, b) = (_mm512_set1_epi32(0x0102_0304), _mm512_set1_epi32(0x0101_0101));
        for _ in 0..rounds {
            for c in acc.iter_mut() {
                *c = _mm512_dpbusd_epi32(*c, a, b);
            }
        }
        std::hint::black_box(acc);
        (rounds * CHAINS as u64 * 64 * 2) as f64
    }

    /// `rounds` × 12 `vdpbf16ps` (32 BF16 products each) -> the FLOPs done.
    pub fn bf16_dot(rounds: u64) -> f64 {
        // SAFETY: called only where Bf16Path::Avx512Bf16 is available.
        unsafe { bf16_512(rounds) }
    }

    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn bf16_512(rounds: u64) -> f64 {
        let mut acc = [_mm512_setzero_ps(); CHAINS];
        // BF16 pairs of small values, so the sums stay finite.
        let a: __m512bh = unsafe { std::mem::transmute(_mm512_set1_epi32(0x3380_3380)) };
        let b: __m512bh = unsafe { std::mem::transmute(_mm512_set1_epi32(0x3F80_3F80)) };
        for _ in 0..rounds {
            for c in acc.iter_mut() {
                *c = _mm512_dpbf16_ps(*c, a, b);
            }
        }
        std::hint::black_box(acc);
        (rounds * CHAINS as u64 * 32 * 2) as f64
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod peak {
    pub fn fp32_fma(rounds: u64) -> f64 {
        let mut acc = [1f32; 12];
        for _ in 0..rounds / 16 {
            for a in acc.iter_mut() {
                *a = a.mul_add(1.000_1, 1e-7);
            }
        }
        std::hint::black_box(acc);
        (rounds / 16 * 24) as f64
    }
    pub fn int8_dot(_: u64) -> f64 {
        0.0
    }
    pub fn bf16_dot(_: u64) -> f64 {
        0.0
    }
}

/// The encoder's linear shapes (name, in, out) for `config`.
fn linear_shapes(config: &BertConfig) -> Vec<(&'static str, usize, usize)> {
    let (h, i) = (config.hidden_size, config.intermediate_size);
    vec![("query/key/value/attention output", h, h), ("feed-forward in", h, i), ("feed-forward out", i, h)]
}

/// The table for `config` at B sequences of T tokens per call (B·T rows).
pub fn cpu_kernel_timings(
    config: &BertConfig,
    (batch, seq_len): (usize, usize),
    warmup: usize,
    iters: usize,
) -> Result<Vec<CpuKernelTiming>> {
    let rows = batch * seq_len;
    let (fma, int8, bf16) = measured_ceilings();
    let mut out = vec![CpuKernelTiming {
        kernel: "ceiling fp32 FMA".into(),
        shape: format!("{} threads", rayon::current_num_threads()),
        median_ms: 0.0,
        achieved: fma / 1e9,
        ceiling: fma / 1e9,
    }];
    if let Some(int8) = int8 {
        out.push(CpuKernelTiming {
            kernel: "ceiling INT8 vpdpbusd".into(),
            shape: format!("{} threads", rayon::current_num_threads()),
            median_ms: 0.0,
            achieved: int8 / 1e9,
            ceiling: int8 / 1e9,
        });
    }
    if let Some(bf16) = bf16 {
        out.push(CpuKernelTiming {
            kernel: "ceiling BF16 vdpbf16ps".into(),
            shape: format!("{} threads", rayon::current_num_threads()),
            median_ms: 0.0,
            achieved: bf16 / 1e9,
            ceiling: bf16 / 1e9,
        });
    }
    for (name, k, n_out) in linear_shapes(config) {
        let x: Vec<f32> = (0..rows * k).map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0).collect();
        let w: Vec<f32> = (0..n_out * k).map(|i| ((i * 104_729 % 1000) as f32 / 10_000.0) - 0.05).collect();
        let bias = vec![0.01f32; n_out];
        let ops = 2.0 * (rows * k * n_out) as f64;
        let shape = format!("({rows}, {k}) · ({k}, {n_out})");
        let w_t = transpose(&w, n_out, k);
        let (median, _) = time_ms(warmup, iters, || {
            std::hint::black_box(linear_fwd(&x, rows, k, Operand::new(&w_t, k, n_out, false), Some(&bias), n_out));
        });
        out.push(CpuKernelTiming {
            kernel: format!("linear fp32/gemm crate {name}"),
            shape: shape.clone(),
            median_ms: median,
            achieved: ops / median / 1e6,
            ceiling: fma / 1e9,
        });
        // The kernel inference runs where the CPU has AVX-512: the weight
        // packed once at load (not timed), as the inference cache holds it.
        if let Some(path) = packed_linear::fast_path() {
            let packed = packed_linear::PackedLinear::pack(name, &w, n_out, k)?;
            let (median, _) = time_ms(warmup, iters, || {
                let y = packed_linear::linear_packed_with(&x, rows, &packed, Some(&bias), packed_linear::Epilogue::Plain, path);
                std::hint::black_box(y.expect("checked shapes"));
            });
            out.push(CpuKernelTiming {
                kernel: format!("linear fp32/packed {} {name}", path.name()),
                shape: shape.clone(),
                median_ms: median,
                achieved: ops / median / 1e6,
                ceiling: fma / 1e9,
            });
        }
        // BF16 (`--precision bf16`): the weight rounded and packed at load
        // (not timed); each call rounds its input (timed).
        let bf16_packed = PackedBf16Linear::pack(name, &w, n_out, k)?;
        let bf16_path = bf16_linear::best_path();
        let (median, _) = time_ms(warmup, iters, || {
            let y = linear_bf16_with(&x, rows, &bf16_packed, Some(&bias), packed_linear::Epilogue::Plain, bf16_path);
            std::hint::black_box(y.expect("checked shapes"));
        });
        out.push(CpuKernelTiming {
            kernel: format!("linear bf16/{} {name}", bf16_path.name()),
            shape: shape.clone(),
            median_ms: median,
            achieved: ops / median / 1e6,
            ceiling: match bf16_path {
                Bf16Path::Avx512Bf16 => bf16.unwrap_or(f64::NAN) / 1e9,
                Bf16Path::Avx512Widen => fma / 1e9,
                Bf16Path::Portable => f64::NAN,
            },
        });
        let quantized = QuantizedLinear::quantize(name, &w, n_out, k)?;
        // The activations' quantization alone, which every INT8 call includes.
        let (median, _) = time_ms(warmup, iters, || {
            std::hint::black_box(QuantizedRows::quantize(&x, rows, k, best_path()).expect("finite"));
        });
        out.push(CpuKernelTiming {
            kernel: format!("quantize activations/{} {name}", best_path().name()),
            shape: format!("({rows}, {k})"),
            median_ms: median,
            achieved: (rows * k) as f64 / median / 1e6,
            ceiling: f64::NAN,
        });
        let mut paths = vec![best_path()];
        if best_path() != Int8Path::Portable {
            paths.push(Int8Path::Portable);
        }
        for path in paths {
            let (median, _) = time_ms(warmup, iters, || {
                std::hint::black_box(linear_int8_fwd(&x, rows, &quantized, Some(&bias), path).expect("checked shapes"));
            });
            let ceiling = if path == Int8Path::Portable { f64::NAN } else { int8.unwrap_or(f64::NAN) / 1e9 };
            out.push(CpuKernelTiming {
                kernel: format!("linear int8/{} {name}", path.name()),
                shape: shape.clone(),
                median_ms: median,
                achieved: ops / median / 1e6,
                ceiling,
            });
        }
    }
    out.extend(attention_timings(config, (batch, seq_len), warmup, iters, fma / 1e9));
    Ok(out)
}

/// The packed attention's f32 forward (B sequences of T tokens, every
/// head) on each path this CPU has: 4·T²·H FLOPs per sequence (q·kᵀ and p·v).
fn attention_timings(
    config: &BertConfig,
    (batch, seq_len): (usize, usize),
    warmup: usize,
    iters: usize,
    ceiling: f64,
) -> Vec<CpuKernelTiming> {
    let (heads, cols) = (config.num_attention_heads, config.hidden_size);
    let lens = vec![seq_len; batch];
    let n = batch * seq_len;
    let [q, k, v] =
        [7919usize, 104_729, 15_485_863].map(|p| (0..n * cols).map(|i| ((i * p % 1000) as f32 / 500.0) - 1.0).collect::<Vec<f32>>());
    let flops = 4.0 * (batch * seq_len * seq_len * cols) as f64;
    let scale = 1.0 / (config.head_dim() as f64).sqrt();
    [AttentionPath::Avx512, AttentionPath::Reference]
        .into_iter()
        .filter(|path| path.available() && path.serves(config.head_dim()))
        .map(|path| {
            let (median, _) = time_ms(warmup, iters, || {
                std::hint::black_box(packed_attention_fwd_on(path, (&q, &k, &v), &lens, heads, scale, PackedAttentionMode::default()));
            });
            CpuKernelTiming {
                kernel: format!("attention fp32/{} forward", path.name()),
                shape: format!("{batch} × {seq_len} tokens, {heads} heads of {}", config.head_dim()),
                median_ms: median,
                achieved: flops / median / 1e6,
                ceiling,
            }
        })
        .collect()
}

/// The table as text, one row per kernel.
pub fn format_cpu_timings(rows: &[CpuKernelTiming]) -> String {
    let mut text = format!("{:<58} {:<24} {:>10} {:>10} {:>10}\n", "kernel", "shape", "median ms", "G(FL)OP/s", "of ceiling");
    for r in rows {
        let share = if r.ceiling.is_finite() && r.median_ms > 0.0 { format!("{:.0}%", 100.0 * r.achieved / r.ceiling) } else { "-".into() };
        let median = if r.median_ms > 0.0 { format!("{:.3}", r.median_ms) } else { "-".into() };
        text.push_str(&format!("cpu/{:<54} {:<24} {:>10} {:>10.1} {:>10}\n", r.kernel, r.shape, median, r.achieved, share));
    }
    text
}

//! LayerNorm parity: every launch branch (c128: cols 1, 32, 77; c512: 200,
//! 384; c1024: 768; wide: 1500), f32 and bf16, one row and ragged row counts,
//! the residual add fused and not, the `sum` output given and not, y written
//! over x. The backward runs through the public launcher (one chunk of
//! dweight/dbias rows, or two for 37 rows), and with 2 small chunks, so that
//! a warp of the partial-sum kernel adds several rows, with dx written over dy.
//!
//! Tolerance: Tolerance::for_elem(T) for every output. The f32 outputs (mean,
//! rstd, dweight, dbias) of a bf16 launch are compared with the bf16 rule:
//! the reference is computed from the bf16-stored inputs.

use super::{CheckRow, FLOAT_TYPES, Tolerance, as_stored, compare, random};
use crate::backend::cpu::norm::{layer_norm_bwd, layer_norm_fwd};
use crate::backend::cuda::ops::layernorm::{self as ln, branch};
use crate::device::{Device, DeviceBuffer, Elem};
use crate::error::Result;

const EPS: f32 = 1e-12;

/// (rows, cols): the simulator's shapes, and more for the real device.
fn shapes(device: &Device) -> Vec<(usize, usize)> {
    let mut s = vec![(1, 32), (37, 32), (5, 1), (1, 77), (19, 77), (3, 200), (7, 384), (6, 768), (5, 1500)];
    if !device.is_simulated() {
        s.extend([(16_384, 32), (4096, 384), (8192, 768), (3001, 1024), (513, 4096)]);
    }
    s
}

/// Inputs of one case, as uploaded (f32) and as the device holds them (f64).
struct Inputs {
    x: Vec<f32>,
    residual: Vec<f32>,
    weight: Vec<f32>,
    bias: Vec<f32>,
    dy: Vec<f32>,
}

fn inputs(rows: usize, cols: usize, seed: u64) -> Inputs {
    let n = rows * cols;
    // Hidden states with a per-row offset, so the mean is not near zero.
    let x = random(seed, n, 1.5).iter().enumerate().map(|(i, v)| v + 0.25 * ((i / cols) % 5) as f32).collect();
    Inputs {
        x,
        residual: random(seed + 1, n, 1.0),
        weight: random(seed + 2, cols, 0.2).iter().map(|v| 1.0 + v).collect(),
        bias: random(seed + 3, cols, 0.1),
        dy: random(seed + 4, n, 1.0),
    }
}

/// s = x (+ residual) as the device forms it: added in f32, stored as T.
fn stored_sum(x: &[f32], residual: Option<&[f32]>, elem: Elem) -> (Vec<f32>, Vec<f64>) {
    let x32: Vec<f32> = as_stored(x, elem).iter().map(|&v| v as f32).collect();
    let s32: Vec<f32> = match residual {
        Some(r) => x32.iter().zip(as_stored(r, elem)).map(|(&a, b)| a + b as f32).collect(),
        None => x32,
    };
    let s64 = as_stored(&s32, elem);
    (s32, s64)
}

pub fn cases(device: &Device) -> Result<Vec<CheckRow>> {
    let mut rows_out = Vec::new();
    for &elem in &FLOAT_TYPES {
        let tol = Tolerance::for_elem(elem);
        for (case, &(rows, cols)) in shapes(device).iter().enumerate() {
            let seed = 100 + 10 * case as u64;
            let inp = inputs(rows, cols, seed);
            // Residual fused without the sum output, and the reverse; in place on two shapes.
            let in_place = matches!(cols, 77 | 1500) && rows > 1;
            for mode in [Mode::Residual, Mode::Sum, Mode::InPlace] {
                if mode != Mode::InPlace || in_place {
                    rows_out.extend(fwd_case(device, elem, tol, rows, cols, &inp, mode)?);
                }
            }
            rows_out.extend(bwd_case(device, elem, tol, rows, cols, &inp, None, false)?);
            if in_place {
                rows_out.extend(bwd_case(device, elem, tol, rows, cols, &inp, Some(2), true)?);
            }
        }
    }
    Ok(rows_out)
}

/// Which optional inputs and outputs a forward launch uses.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// residual fused, no sum output
    Residual,
    /// no residual, sum output
    Sum,
    /// residual and sum, y written over x
    InPlace,
}

fn fwd_case(device: &Device, elem: Elem, tol: Tolerance, rows: usize, cols: usize, inp: &Inputs, mode: Mode) -> Result<Vec<CheckRow>> {
    let n = rows * cols;
    let kernel = format!("layer_norm_{}_fwd_{}", branch(cols).0, elem.suffix());
    let suffix = match mode {
        Mode::Residual => " +residual",
        Mode::Sum => " +sum",
        Mode::InPlace => " +residual +sum, y = x",
    };
    let shapes = format!("({rows}, {cols}){suffix}");
    let (fused, with_sum) = (mode != Mode::Sum, mode != Mode::Residual);
    let x = DeviceBuffer::from_f32(device, &inp.x, elem)?;
    let residual = DeviceBuffer::from_f32(device, &inp.residual, elem)?;
    let weight = DeviceBuffer::from_f32(device, &inp.weight, elem)?;
    let bias = DeviceBuffer::from_f32(device, &inp.bias, elem)?;
    let y_own = DeviceBuffer::uninit(device, n, elem)?;
    let sum = DeviceBuffer::uninit(device, n, elem)?;
    let mean = DeviceBuffer::uninit(device, rows, Elem::F32)?;
    let rstd = DeviceBuffer::uninit(device, rows, Elem::F32)?;
    for b in [&y_own, &sum, &mean, &rstd] {
        b.poison()?;
    }
    let y = if mode == Mode::InPlace { &x } else { &y_own };
    let res = fused.then_some(&residual);
    let sum_out = with_sum.then_some(&sum);
    ln::layer_norm_fwd(&x, res, &weight, &bias, y, sum_out, &mean, &rstd, rows, cols, EPS)?;

    let (_, s64) = stored_sum(&inp.x, fused.then_some(&inp.residual[..]), elem);
    let (w64, b64) = (as_stored(&inp.weight, elem), as_stored(&inp.bias, elem));
    let (y_ref, mean_ref, rstd_ref) = layer_norm_fwd(&s64, &w64, &b64, cols, EPS as f64);
    let mut out = vec![compare(&format!("{kernel} y"), &shapes, &y.to_f32_vec()?, &y_ref, tol)];
    let mut stats = mean.to_f32_vec()?;
    stats.extend(rstd.to_f32_vec()?);
    let stats_ref: Vec<f64> = mean_ref.iter().chain(&rstd_ref).copied().collect();
    out.push(compare(&format!("{kernel} mean,rstd"), &shapes, &stats, &stats_ref, tol));
    if with_sum {
        out.push(compare(&format!("{kernel} sum"), &shapes, &sum.to_f32_vec()?, &s64, tol));
    }
    Ok(out)
}

fn bwd_case(
    device: &Device,
    elem: Elem,
    tol: Tolerance,
    rows: usize,
    cols: usize,
    inp: &Inputs,
    max_chunks: Option<usize>,
    in_place: bool,
) -> Result<Vec<CheckRow>> {
    let n = rows * cols;
    let kernel = format!("layer_norm_{}_bwd_{}", branch(cols).0, elem.suffix());
    let mut shapes = format!("({rows}, {cols})");
    if let Some(m) = max_chunks {
        shapes.push_str(&format!(" ≤{m} chunks"));
    }
    if in_place {
        shapes.push_str(", dx = dy");
    }
    let (s32, s64) = stored_sum(&inp.x, None, elem);
    let (w64, b64) = (as_stored(&inp.weight, elem), as_stored(&inp.bias, elem));
    // mean and rstd as the forward stores them (f32), used by both sides.
    let (_, mean_ref, rstd_ref) = layer_norm_fwd(&s64, &w64, &b64, cols, EPS as f64);
    let mean32: Vec<f32> = mean_ref.iter().map(|&v| v as f32).collect();
    let rstd32: Vec<f32> = rstd_ref.iter().map(|&v| v as f32).collect();
    let s = DeviceBuffer::from_f32(device, &s32, elem)?;
    let weight = DeviceBuffer::from_f32(device, &inp.weight, elem)?;
    let mean = DeviceBuffer::from_f32(device, &mean32, Elem::F32)?;
    let rstd = DeviceBuffer::from_f32(device, &rstd32, Elem::F32)?;
    let dy = DeviceBuffer::from_f32(device, &inp.dy, elem)?;
    let dx_own = DeviceBuffer::uninit(device, n, elem)?;
    let dx = if in_place { &dy } else { &dx_own };
    let dweight = DeviceBuffer::uninit(device, cols, Elem::F32)?;
    let dbias = DeviceBuffer::uninit(device, cols, Elem::F32)?;
    for b in [&dx_own, &dweight, &dbias] {
        b.poison()?;
    }
    match max_chunks {
        None => ln::layer_norm_bwd(&s, &weight, &mean, &rstd, &dy, dx, &dweight, &dbias, rows, cols)?,
        Some(m) => ln::layer_norm_bwd_chunks(&s, &weight, &mean, &rstd, &dy, dx, &dweight, &dbias, rows, cols, m, 1)?,
    }

    let mean64: Vec<f64> = mean32.iter().map(|&v| v as f64).collect();
    let rstd64: Vec<f64> = rstd32.iter().map(|&v| v as f64).collect();
    let (dx_ref, dw_ref, db_ref) = layer_norm_bwd(&s64, &w64, &mean64, &rstd64, &as_stored(&inp.dy, elem), cols);
    Ok(vec![
        compare(&format!("{kernel} dx"), &shapes, &dx.to_f32_vec()?, &dx_ref, tol),
        compare(&format!("{kernel} dweight"), &shapes, &dweight.to_f32_vec()?, &dw_ref, tol),
        compare(&format!("{kernel} dbias"), &shapes, &dbias.to_f32_vec()?, &db_ref, tol),
    ])
}

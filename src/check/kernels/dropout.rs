//! Dropout parity: the device must draw exactly the CPU's masks.
//!
//! The reference is the CPU autograd `dropout` itself (forward, and backward
//! through the tape), run in f64 on the stored inputs for the toleranced
//! rows, and in f32 for the `dropout_mask_*` rows, which are exact: the
//! dropped positions of the device's forward and backward must equal the
//! CPU's, and in f32 every output (forward, backward, dropout + residual)
//! must equal the CPU's bit for bit. Lengths: 1, odd (the last pair has only
//! its even element), ragged, and a grid capped small enough that the
//! simulator runs the grid-stride loop (a very large n on the real GPU).

use super::{CheckRow, FLOAT_TYPES, Tolerance, as_stored, compare, random};
use crate::autograd::Tape;
use crate::autograd::basic::{DropoutKey, add, dropout};
use crate::backend::cuda::ops::dropout::{DropoutParams, dropout_add_fwd, dropout_bwd, dropout_fwd, dropout_launch};
use crate::device::{Device, DeviceBuffer, Elem};
use crate::error::Result;
use crate::tensor::{Float, Tensor};

const SEED: u64 = 20_240_611;

pub fn cases(device: &Device) -> Result<Vec<CheckRow>> {
    let mut rows = Vec::new();
    let sizes: &[usize] = if device.is_simulated() { &[1, 2, 7, 1001, 100_001] } else { &[1, 2, 7, 1001, 100_001, 40_000_001] };
    for &elem in &FLOAT_TYPES {
        for &n in sizes {
            for p in [0.1, 0.5] {
                rows.extend(run_case(device, elem, n, p, None)?);
            }
        }
        // 8 blocks of 256 threads cover 4096 elements per pass: 100_001 strides 25 times.
        rows.extend(run_case(device, elem, 100_001, 0.1, Some(8))?);
    }
    Ok(rows)
}

/// What the CPU computes: dropout(x), its backward on dy, and dropout(x) + residual.
struct CpuDropout<T> {
    y: Vec<T>,
    dx: Vec<T>,
    y_add: Vec<T>,
}

fn cpu_dropout<T: Float>(x: Vec<T>, dy: Vec<T>, residual: Vec<T>, p: f64, key: DropoutKey) -> Result<CpuDropout<T>> {
    let n = x.len();
    let mut tape = Tape::new();
    let xv = tape.leaf(Tensor::from_vec(x, &[n])?, true);
    let rv = tape.leaf(Tensor::from_vec(residual, &[n])?, false);
    let yv = dropout(&mut tape, xv, p, Some(key))?;
    let sv = add(&mut tape, yv, rv)?;
    let y = tape.value(yv).data::<T>()?.to_vec();
    let y_add = tape.value(sv).data::<T>()?.to_vec();
    let grads = tape.backward_with(yv, Tensor::from_vec(dy, &[n])?)?;
    let dx = match grads.get(xv) {
        Some(g) => g.data::<T>()?.to_vec(),
        None => return Err(crate::error::Error::shape("dropout check", "the CPU tape gave x no gradient")),
    };
    Ok(CpuDropout { y, dx, y_add })
}

fn to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// Forward, backward, dropout + residual (and, at n = 1001, the residual
/// variant in place) against the CPU; then the exact mask row.
fn run_case(device: &Device, elem: Elem, n: usize, p: f64, max_blocks: Option<u32>) -> Result<Vec<CheckRow>> {
    let stream = n as u64 * 3 + (p * 10.0) as u64;
    let key = DropoutKey { seed: SEED, stream };
    let params = DropoutParams::new(p, SEED, stream);
    let grid = max_blocks.map_or(String::new(), |b| format!(", grid {b} blocks"));
    let shapes = format!("x ({n}), p {p}{grid}");
    let tol = Tolerance::for_elem(elem);
    let sfx = elem.suffix();

    let (x_host, dy_host, r_host) = (random(31 + n as u64, n, 2.0), random(32, n, 1.0), random(33, n, 1.0));
    let (x64, dy64, r64) = (as_stored(&x_host, elem), as_stored(&dy_host, elem), as_stored(&r_host, elem));
    let want = cpu_dropout(x64.clone(), dy64.clone(), r64.clone(), p, key)?;
    let cpu32 = cpu_dropout(to_f32(&x64), to_f32(&dy64), to_f32(&r64), p, key)?;

    let x = DeviceBuffer::from_f32(device, &x_host, elem)?;
    let dy = DeviceBuffer::from_f32(device, &dy_host, elem)?;
    let residual = DeviceBuffer::from_f32(device, &r_host, elem)?;
    let out = DeviceBuffer::uninit(device, n, elem)?;
    let cap = max_blocks.unwrap_or(u32::MAX);
    let mut rows = Vec::new();

    out.poison()?;
    match max_blocks {
        Some(_) => dropout_launch("dropout_fwd", &x, None, &out, params, cap)?,
        None => dropout_fwd(&x, &out, params)?,
    }
    let y = out.to_f32_vec()?;
    rows.push(compare(&format!("dropout_fwd_{sfx}"), &shapes, &y, &want.y, tol));

    out.poison()?;
    match max_blocks {
        Some(_) => dropout_launch("dropout_bwd", &dy, None, &out, params, cap)?,
        None => dropout_bwd(&dy, &out, params)?,
    }
    let dx = out.to_f32_vec()?;
    rows.push(compare(&format!("dropout_bwd_{sfx}"), &shapes, &dx, &want.dx, tol));

    out.poison()?;
    match max_blocks {
        Some(_) => dropout_launch("dropout_add_fwd", &x, Some(&residual), &out, params, cap)?,
        None => dropout_add_fwd(&x, &residual, &out, params)?,
    }
    let y_add = out.to_f32_vec()?;
    rows.push(compare(&format!("dropout_add_fwd_{sfx}"), &shapes, &y_add, &want.y_add, tol));

    if n == 1001 {
        // In place: y is the residual buffer (BERT's `hidden = dropout(x) + hidden`).
        let acc = DeviceBuffer::from_f32(device, &r_host, elem)?;
        dropout_add_fwd(&x, &acc, &acc, params)?;
        rows.push(compare(
            &format!("dropout_add_fwd_{sfx}"),
            &format!("{shapes}, in place (y = residual)"),
            &acc.to_f32_vec()?,
            &want.y_add,
            tol,
        ));
    }

    rows.push(mask_row(elem, &shapes, [&y, &dx, &y_add], [&cpu32.y, &cpu32.dx, &cpu32.y_add]));
    Ok(rows)
}

/// The exact row: dropped positions (zeros) of forward and backward equal the
/// CPU's; in f32 also every output bit. "of tol" is 0 on a pass.
fn mask_row(elem: Elem, shapes: &str, got: [&[f32]; 3], cpu: [&[f32]; 3]) -> CheckRow {
    let dropped = cpu[0].iter().filter(|&&v| v == 0.0).count();
    let mut position_mismatches = 0;
    for k in 0..2 {
        position_mismatches += got[k].iter().zip(cpu[k]).filter(|&(&g, &c)| (g == 0.0) != (c == 0.0)).count();
    }
    let bit_mismatches = if elem == Elem::F32 {
        (0..3).map(|k| got[k].iter().zip(cpu[k]).filter(|&(g, c)| g.to_bits() != c.to_bits()).count()).sum()
    } else {
        0
    };
    let max_abs_err = if elem == Elem::F32 {
        (0..3).flat_map(|k| got[k].iter().zip(cpu[k]).map(|(&g, &c)| (g as f64 - c as f64).abs())).fold(0.0, f64::max)
    } else {
        0.0
    };
    let pass = position_mismatches == 0 && bit_mismatches == 0;
    CheckRow {
        kernel: format!("dropout_mask_{} (exact)", elem.suffix()),
        shapes: format!("{shapes}, CPU drops {dropped}"),
        max_abs_err,
        worst_ratio: if pass { 0.0 } else { f64::INFINITY },
        rule: "bit-exact".into(),
        pass,
        note: format!("{position_mismatches} dropped positions differ from the CPU's, {bit_mismatches} f32 outputs differ in bits"),
    }
}

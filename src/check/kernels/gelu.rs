//! GELU parity: exact erf form, forward and backward, f32 and bf16, on a
//! length that is not a multiple of the block, and on a grid that has to
//! stride (more elements than one pass of the capped grid). GeGLU
//! (ModernBERT's gated activation) likewise, on rows of 2·I.

use super::{CheckRow, FLOAT_TYPES, Tolerance, as_stored, compare, random};
use crate::backend::cpu::activation::{geglu_bwd, geglu_fwd, gelu_bwd, gelu_fwd};
use crate::backend::cuda::ops::gelu;
use crate::device::{Device, DeviceBuffer};
use crate::error::Result;

pub fn cases(device: &Device) -> Result<Vec<CheckRow>> {
    let mut rows = Vec::new();
    let sizes: &[usize] = if device.is_simulated() { &[1, 1000, 70_001] } else { &[1, 1000, 70_001, 40_000_003] };
    for &elem in &FLOAT_TYPES {
        for &n in sizes {
            let shapes = format!("x ({n})");
            let tol = Tolerance::for_elem(elem);
            let x_host = random(11, n, 3.0);
            let dy_host = random(12, n, 1.0);
            let (x64, dy64) = (as_stored(&x_host, elem), as_stored(&dy_host, elem));
            let x = DeviceBuffer::from_f32(device, &x_host, elem)?;
            let dy = DeviceBuffer::from_f32(device, &dy_host, elem)?;
            let y = DeviceBuffer::uninit(device, n, elem)?;
            y.poison()?;
            gelu::gelu_fwd(&x, &y)?;
            rows.push(compare(&format!("gelu_fwd_{}", elem.suffix()), &shapes, &y.to_f32_vec()?, &gelu_fwd(&x64), tol));
            let dx = DeviceBuffer::uninit(device, n, elem)?;
            dx.poison()?;
            gelu::gelu_bwd(&x, &dy, &dx)?;
            rows.push(compare(&format!("gelu_bwd_{}", elem.suffix()), &shapes, &dx.to_f32_vec()?, &gelu_bwd(&x64, &dy64), tol));
        }
    }
    Ok(rows)
}

/// GeGLU's rows, a family of their own (`--only geglu`).
pub fn geglu_cases(device: &Device) -> Result<Vec<CheckRow>> {
    let mut rows = Vec::new();
    for &elem in &FLOAT_TYPES {
        // (rows, 2I): one row, a ragged count, and ModernBERT-base's I = 1152
        // over more rows than one pass of the capped grid.
        let shapes: &[(usize, usize)] =
            if device.is_simulated() { &[(1, 3), (37, 64), (130, 1152)] } else { &[(1, 3), (37, 64), (130, 1152), (16_384, 1152)] };
        for &(n_rows, inner) in shapes {
            let shape = format!("x ({n_rows}, 2·{inner})");
            let tol = Tolerance::for_elem(elem);
            let x_host = random(13, n_rows * 2 * inner, 3.0);
            let dy_host = random(14, n_rows * inner, 1.0);
            let (x64, dy64) = (as_stored(&x_host, elem), as_stored(&dy_host, elem));
            let x = DeviceBuffer::from_f32(device, &x_host, elem)?;
            let dy = DeviceBuffer::from_f32(device, &dy_host, elem)?;
            let y = DeviceBuffer::uninit(device, n_rows * inner, elem)?;
            y.poison()?;
            gelu::geglu_fwd(&x, &y, inner)?;
            rows.push(compare(&format!("geglu_fwd_{}", elem.suffix()), &shape, &y.to_f32_vec()?, &geglu_fwd(&x64, inner), tol));
            let dx = DeviceBuffer::uninit(device, n_rows * 2 * inner, elem)?;
            dx.poison()?;
            gelu::geglu_bwd(&x, &dy, &dx, inner)?;
            rows.push(compare(&format!("geglu_bwd_{}", elem.suffix()), &shape, &dx.to_f32_vec()?, &geglu_bwd(&x64, &dy64, inner), tol));
        }
    }
    Ok(rows)
}

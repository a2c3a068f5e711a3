//! GELU parity: exact erf form, forward and backward, f32 and bf16, on a
//! length that is not a multiple of the block, and on a grid that has to
//! stride (more elements than one pass of the capped grid).

use super::{CheckRow, FLOAT_TYPES, Tolerance, as_stored, compare, random};
use crate::backend::cpu::activation::{gelu_bwd, gelu_fwd};
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

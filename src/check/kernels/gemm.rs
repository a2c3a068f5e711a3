//! cuBLASLt descriptor parity: every row-major product the model needs,
//! checked against a plain triple loop in f64. On the simulated device the
//! descriptor is interpreted independently of how ops/gemm.rs built it, so
//! a swapped operand, transpose or leading dimension fails here.

use super::{CheckRow, FLOAT_TYPES, Tolerance, as_stored, compare, random};
use crate::backend::cuda::ops::gemm::{self, Batched};
use crate::device::{Device, DeviceBuffer, Elem};
use crate::error::Result;

/// Row-major c (m, n) = op(a) · op(b) for one batch, in f64.
#[allow(clippy::too_many_arguments)]
fn reference(a: &[f64], b: &[f64], m: usize, n: usize, k: usize, ta: bool, tb: bool, alpha: f64) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0;
            for p in 0..k {
                let av = if ta { a[p * m + i] } else { a[i * k + p] };
                let bv = if tb { b[j * k + p] } else { b[p * n + j] };
                acc += av * bv;
            }
            c[i * n + j] = alpha * acc;
        }
    }
    c
}

pub fn cases(device: &Device) -> Result<Vec<CheckRow>> {
    let mut rows = Vec::new();
    // (rows N, in, out): a ragged token count, MiniLM's and bert-base's widths.
    let linear_shapes: &[(usize, usize, usize)] = if device.is_simulated() {
        &[(7, 32, 48), (33, 64, 16)]
    } else {
        &[(7, 32, 48), (33, 64, 16), (8192, 768, 3072), (8192, 3072, 768)]
    };
    for &elem in &FLOAT_TYPES {
        let tol = Tolerance::for_elem(elem);
        for &(n, i, o) in linear_shapes {
            let shapes = format!("x ({n}, {i}) · w ({o}, {i})ᵀ");
            let (x_h, w_h, b_h, dy_h) = (random(21, n * i, 0.5), random(22, o * i, 0.5), random(23, o, 0.5), random(24, n * o, 0.5));
            let (x64, w64, b64, dy64) = (as_stored(&x_h, elem), as_stored(&w_h, elem), as_stored(&b_h, elem), as_stored(&dy_h, elem));
            let (x, w, b, dy) = (
                DeviceBuffer::from_f32(device, &x_h, elem)?,
                DeviceBuffer::from_f32(device, &w_h, elem)?,
                DeviceBuffer::from_f32(device, &b_h, elem)?,
                DeviceBuffer::from_f32(device, &dy_h, elem)?,
            );
            let sfx = elem.suffix();
            // Forward with the bias epilogue.
            let y = DeviceBuffer::uninit(device, n * o, elem)?;
            y.poison()?;
            gemm::linear_fwd(&x, &w, Some(&b), &y, n)?;
            let mut want = reference(&x64, &w64, n, o, i, false, true, 1.0);
            for (idx, v) in want.iter_mut().enumerate() {
                *v += b64[idx % o];
            }
            rows.push(compare(&format!("gemm linear_fwd+bias {sfx}"), &shapes, &y.to_f32_vec()?, &want, tol));
            // dx, written then accumulated.
            let dx = DeviceBuffer::uninit(device, n * i, elem)?;
            dx.poison()?;
            gemm::linear_bwd_input(&dy, &w, &dx, n, false)?;
            let want_dx = reference(&dy64, &w64, n, i, o, false, false, 1.0);
            rows.push(compare(&format!("gemm linear_bwd_input {sfx}"), &shapes, &dx.to_f32_vec()?, &want_dx, tol));
            if elem == Elem::F32 {
                gemm::linear_bwd_input(&dy, &w, &dx, n, true)?;
                let twice: Vec<f64> = want_dx.iter().map(|v| 2.0 * v).collect();
                rows.push(compare("gemm linear_bwd_input accumulate f32", &shapes, &dx.to_f32_vec()?, &twice, tol));
            }
            // dw with the bias-gradient epilogue.
            let dw = DeviceBuffer::uninit(device, o * i, elem)?;
            let db = DeviceBuffer::uninit(device, o, elem)?;
            dw.poison()?;
            db.poison()?;
            gemm::linear_bwd_weight(&dy, &x, &dw, Some(&db), n, false)?;
            let want_dw = reference(&dy64, &x64, o, i, n, true, false, 1.0);
            rows.push(compare(&format!("gemm linear_bwd_weight {sfx}"), &shapes, &dw.to_f32_vec()?, &want_dw, tol));
            let want_db: Vec<f64> = (0..o).map(|j| (0..n).map(|r| dy64[r * o + j]).sum()).collect();
            rows.push(compare(&format!("gemm bgradb (bias grad) {sfx}"), &shapes, &db.to_f32_vec()?, &want_db, tol));
            if elem == Elem::BF16 {
                // Mixed precision: bf16 operands, f32 parameter gradients.
                let (dw32, db32) = (DeviceBuffer::uninit(device, o * i, Elem::F32)?, DeviceBuffer::uninit(device, o, Elem::F32)?);
                dw32.poison()?;
                db32.poison()?;
                gemm::linear_bwd_weight(&dy, &x, &dw32, Some(&db32), n, false)?;
                let tol32 = Tolerance::for_elem(Elem::F32);
                rows.push(compare("gemm linear_bwd_weight bf16→f32", &shapes, &dw32.to_f32_vec()?, &want_dw, tol32));
                rows.push(compare("gemm bgradb bf16→f32", &shapes, &db32.to_f32_vec()?, &want_db, tol32));
            }
        }
        // Attention-shaped batched products in all four transpose cases.
        let (batch, m, nn, k) = if device.is_simulated() { (3, 5, 7, 32) } else { (64 * 12, 128, 128, 64) };
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            let shapes = format!("({batch}) {m}×{k}{} · {k}×{nn}{}", if ta { "ᵀ" } else { "" }, if tb { "ᵀ" } else { "" });
            let (a_h, b_h) = (random(31, batch * m * k, 0.5), random(32, batch * k * nn, 0.5));
            let (a64, b64) = (as_stored(&a_h, elem), as_stored(&b_h, elem));
            let (a, b) = (DeviceBuffer::from_f32(device, &a_h, elem)?, DeviceBuffer::from_f32(device, &b_h, elem)?);
            let c = DeviceBuffer::uninit(device, batch * m * nn, elem)?;
            c.poison()?;
            let alpha = 0.125f32;
            gemm::batched_matmul(&a, &b, &c, Batched { batch, m, n: nn, k, trans_a: ta, trans_b: tb, alpha, beta: 0.0 })?;
            let mut want = Vec::with_capacity(batch * m * nn);
            for bi in 0..batch {
                want.extend(reference(
                    &a64[bi * m * k..(bi + 1) * m * k],
                    &b64[bi * k * nn..(bi + 1) * k * nn],
                    m,
                    nn,
                    k,
                    ta,
                    tb,
                    alpha as f64,
                ));
            }
            rows.push(compare(&format!("gemm batched {}", elem.suffix()), &shapes, &c.to_f32_vec()?, &want, tol));
        }
    }
    Ok(rows)
}

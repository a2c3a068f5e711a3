//! Parity for kernels/elementwise.cu: add, add_assign (every accepted type
//! pair), scale, cast (including round-to-nearest-even ties), fill,
//! sum_rows (one-stage and two-stage, ragged), first_token (T = 1 too),
//! mean_pool (padded rows, a row without real tokens), tanh and relu, in
//! f32 and bf16, with in-place rows where the launcher allows it.
//!
//! References are the CPU's (activation.rs, norm.rs, the autograd tape's
//! first_token) run in f64 on the stored inputs. Outputs that are F32
//! (sum_rows, cast to f32) use the F32 tolerance whatever the input type.

use half::bf16;

use super::{CheckRow, FLOAT_TYPES, Tolerance, as_stored, compare, random};
use crate::autograd::Tape;
use crate::autograd::basic::{first_token, mean_pool};
use crate::backend::cpu::activation;
use crate::backend::cpu::norm;
use crate::backend::cuda::ops::elementwise as ew;
use crate::device::{Device, DeviceBuffer, Elem};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

pub fn cases(device: &Device) -> Result<Vec<CheckRow>> {
    let sim = device.is_simulated();
    let sizes: &[usize] = if sim { &[1, 1000, 70_001] } else { &[1, 1000, 70_001, 20_000_003] };
    let mut rows = Vec::new();
    for &elem in &FLOAT_TYPES {
        for &n in sizes {
            rows.extend(add_and_scale(device, elem, n)?);
            rows.extend(tanh(device, elem, n)?);
            rows.extend(relu(device, elem, n)?);
            rows.extend(fill(device, elem, n)?);
        }
    }
    for &n in sizes {
        rows.extend(add_assign(device, n)?);
        rows.extend(cast(device, n)?);
    }
    let sum_shapes: &[(usize, usize)] = if sim {
        &[(1, 1), (1, 77), (7, 33), (2, 300), (1000, 77), (4099, 5), (300, 768)]
    } else {
        &[(1, 1), (1, 77), (7, 33), (2, 300), (1000, 77), (4099, 5), (300, 768), (65_536, 768), (4096, 4096), (65_536, 3)]
    };
    let ft_shapes: &[(usize, usize, usize)] =
        if sim { &[(1, 1, 1), (3, 1, 77), (4, 13, 33), (3, 50, 200)] } else { &[(1, 1, 1), (3, 1, 77), (4, 13, 33), (64, 512, 768)] };
    for &elem in &FLOAT_TYPES {
        for &(r, c) in sum_shapes {
            rows.extend(sum_rows(device, elem, r, c)?);
        }
        for &dims in ft_shapes {
            rows.extend(first_token_case(device, elem, dims)?);
            rows.extend(mean_pool_case(device, elem, dims)?);
        }
    }
    Ok(rows)
}

fn poisoned(device: &Device, n: usize, elem: Elem) -> Result<DeviceBuffer> {
    let b = DeviceBuffer::uninit(device, n, elem)?;
    b.poison()?;
    Ok(b)
}

// add (out separate, and out = a in place) and scale (out separate, and in place)
fn add_and_scale(device: &Device, elem: Elem, n: usize) -> Result<Vec<CheckRow>> {
    let (tol, sfx, shapes) = (Tolerance::for_elem(elem), elem.suffix(), format!("x ({n})"));
    let (a_host, b_host) = (random(41, n, 1.5), random(42, n, 0.7));
    let (a64, b64) = (as_stored(&a_host, elem), as_stored(&b_host, elem));
    let a = DeviceBuffer::from_f32(device, &a_host, elem)?;
    let b = DeviceBuffer::from_f32(device, &b_host, elem)?;
    let mut rows = Vec::new();

    let out = poisoned(device, n, elem)?;
    ew::add(&a, &b, &out)?;
    let want_add = activation::add(&a64, &b64);
    rows.push(compare(&format!("add_{sfx}"), &shapes, &out.to_f32_vec()?, &want_add, tol));
    let acc = DeviceBuffer::from_f32(device, &a_host, elem)?;
    ew::add(&acc, &b, &acc)?;
    rows.push(compare(&format!("add_{sfx}"), &format!("{shapes}, in place (out = a)"), &acc.to_f32_vec()?, &want_add, tol));

    let s = -0.37f32;
    let want_scale = activation::scale(&a64, s as f64);
    out.poison()?;
    ew::scale(&a, &out, s)?;
    rows.push(compare(&format!("scale_{sfx}"), &format!("{shapes}, s {s}"), &out.to_f32_vec()?, &want_scale, tol));
    let x = DeviceBuffer::from_f32(device, &a_host, elem)?;
    ew::scale(&x, &x, s)?;
    rows.push(compare(&format!("scale_{sfx}"), &format!("{shapes}, s {s}, in place"), &x.to_f32_vec()?, &want_scale, tol));
    Ok(rows)
}

// tanh forward, and backward from a saved output y (|y| < 1)
fn tanh(device: &Device, elem: Elem, n: usize) -> Result<Vec<CheckRow>> {
    let (tol, sfx, shapes) = (Tolerance::for_elem(elem), elem.suffix(), format!("x ({n})"));
    let x_host = random(51, n, 1.5);
    let y_host: Vec<f32> = random(52, n, 1.0).iter().map(|v| v.tanh()).collect();
    let dy_host = random(53, n, 1.0);
    let (x64, y64, dy64) = (as_stored(&x_host, elem), as_stored(&y_host, elem), as_stored(&dy_host, elem));
    let x = DeviceBuffer::from_f32(device, &x_host, elem)?;
    let y = DeviceBuffer::from_f32(device, &y_host, elem)?;
    let dy = DeviceBuffer::from_f32(device, &dy_host, elem)?;
    let out = poisoned(device, n, elem)?;
    ew::tanh_fwd(&x, &out)?;
    let mut rows = vec![compare(&format!("tanh_fwd_{sfx}"), &shapes, &out.to_f32_vec()?, &activation::tanh_fwd(&x64), tol)];
    out.poison()?;
    ew::tanh_bwd(&y, &dy, &out)?;
    rows.push(compare(&format!("tanh_bwd_{sfx}"), &shapes, &out.to_f32_vec()?, &activation::tanh_bwd(&y64, &dy64), tol));
    Ok(rows)
}

// ReLU forward (exact zeros included), and backward from a saved output with zeros
fn relu(device: &Device, elem: Elem, n: usize) -> Result<Vec<CheckRow>> {
    let (tol, sfx, shapes) = (Tolerance::for_elem(elem), elem.suffix(), format!("x ({n})"));
    let mut x_host = random(54, n, 1.5);
    x_host.iter_mut().step_by(7).for_each(|v| *v = 0.0);
    let y_host: Vec<f32> = random(55, n, 1.0).iter().map(|v| v.max(0.0)).collect();
    let dy_host = random(56, n, 1.0);
    let (x64, y64, dy64) = (as_stored(&x_host, elem), as_stored(&y_host, elem), as_stored(&dy_host, elem));
    let x = DeviceBuffer::from_f32(device, &x_host, elem)?;
    let y = DeviceBuffer::from_f32(device, &y_host, elem)?;
    let dy = DeviceBuffer::from_f32(device, &dy_host, elem)?;
    let out = poisoned(device, n, elem)?;
    ew::relu_fwd(&x, &out)?;
    let mut rows = vec![compare(&format!("relu_fwd_{sfx}"), &shapes, &out.to_f32_vec()?, &activation::relu_fwd(&x64), tol)];
    out.poison()?;
    ew::relu_bwd(&y, &dy, &out)?;
    rows.push(compare(&format!("relu_bwd_{sfx}"), &shapes, &out.to_f32_vec()?, &activation::relu_bwd(&y64, &dy64), tol));
    Ok(rows)
}

fn fill(device: &Device, elem: Elem, n: usize) -> Result<Vec<CheckRow>> {
    let value = 0.3f32;
    let x = poisoned(device, n, elem)?;
    ew::fill(&x, value)?;
    let want = vec![as_stored(&[value], elem)[0]; n];
    Ok(vec![compare(
        &format!("fill_{}", elem.suffix()),
        &format!("x ({n}), value {value}"),
        &x.to_f32_vec()?,
        &want,
        Tolerance::for_elem(elem),
    )])
}

// acc += g for F32 += F32, F32 += BF16, BF16 += BF16
fn add_assign(device: &Device, n: usize) -> Result<Vec<CheckRow>> {
    let (acc_host, g_host) = (random(61, n, 1.0), random(62, n, 0.3));
    let mut rows = Vec::new();
    for (acc_elem, g_elem) in [(Elem::F32, Elem::F32), (Elem::F32, Elem::BF16), (Elem::BF16, Elem::BF16)] {
        let acc = DeviceBuffer::from_f32(device, &acc_host, acc_elem)?;
        let g = DeviceBuffer::from_f32(device, &g_host, g_elem)?;
        ew::add_assign(&acc, &g)?;
        let want = activation::add(&as_stored(&acc_host, acc_elem), &as_stored(&g_host, g_elem));
        let kernel = ew::add_assign_kernel(acc_elem, g_elem).unwrap_or("add_assign (no kernel)");
        rows.push(compare(kernel, &format!("acc ({n})"), &acc.to_f32_vec()?, &want, Tolerance::for_elem(acc_elem)));
    }
    // BF16 += F32 is refused (it would silently drop the gradient's precision).
    let acc = DeviceBuffer::from_f32(device, &acc_host, Elem::BF16)?;
    let g = DeviceBuffer::from_f32(device, &g_host, Elem::F32)?;
    if ew::add_assign(&acc, &g).is_ok() {
        rows.push(CheckRow::failed("add_assign bf16 += f32", &format!("acc ({n})"), "accepted; must be refused".into()));
    }
    Ok(rows)
}

// F32 -> BF16 (with exact ties, which must round to even), BF16 -> F32, and same-type copies
fn cast(device: &Device, n: usize) -> Result<Vec<CheckRow>> {
    let mut src_host = random(71, n, 3.0);
    // Halfway between two bf16 values: 1 + 2^-8 -> 1, 1 + 3·2^-8 -> 1 + 2^-6, and negative twins.
    let ties = [1.0 + 1.0 / 256.0, 1.0 + 3.0 / 256.0, -(1.0 + 1.0 / 256.0), -(3.0 + 3.0 / 128.0), 1.0 + 1.0 / 256.0 + 1.0 / 65536.0];
    for (v, t) in src_host.iter_mut().zip(ties) {
        *v = t;
    }
    let exact = Tolerance::for_elem(Elem::F32);
    let shapes = format!("x ({n})");
    let mut rows = Vec::new();
    // Every accepted (src, dst) pair; the result is exactly the dst rounding of the stored source.
    for (src_elem, dst_elem) in [(Elem::F32, Elem::BF16), (Elem::BF16, Elem::F32), (Elem::F32, Elem::F32), (Elem::BF16, Elem::BF16)] {
        let src = DeviceBuffer::from_f32(device, &src_host, src_elem)?;
        let dst = poisoned(device, n, dst_elem)?;
        ew::cast(&src, &dst)?;
        let stored: Vec<f32> = as_stored(&src_host, src_elem).iter().map(|&v| v as f32).collect();
        let want: Vec<f64> = match dst_elem {
            Elem::BF16 => stored.iter().map(|&v| bf16::from_f32(v).to_f64()).collect(),
            _ => stored.iter().map(|&v| v as f64).collect(),
        };
        let kernel = ew::cast_kernel(src_elem, dst_elem).map_or_else(|| format!("copy_{}", src_elem.suffix()), str::to_string);
        rows.push(compare(&kernel, &shapes, &dst.to_f32_vec()?, &want, exact));
    }
    // Same buffer for both: a no-op.
    let same = DeviceBuffer::from_f32(device, &src_host, Elem::BF16)?;
    ew::cast(&same, &same)?;
    rows.push(compare("copy_bf16", &format!("{shapes}, in place"), &same.to_f32_vec()?, &as_stored(&src_host, Elem::BF16), exact));
    Ok(rows)
}

// x (rows, cols) T -> out (cols) F32; the largest shape is also run twice and must repeat bit for bit
fn sum_rows(device: &Device, elem: Elem, rows: usize, cols: usize) -> Result<Vec<CheckRow>> {
    let shapes = format!("x ({rows}, {cols}) -> ({cols})");
    // Gradient-sized values: dy entries of a mean-reduced loss are small.
    let x_host = random(81 + rows as u64, rows * cols, 0.05);
    let x64 = as_stored(&x_host, elem);
    let x = DeviceBuffer::from_f32(device, &x_host, elem)?;
    let out = poisoned(device, cols, Elem::F32)?;
    ew::sum_rows(&x, &out, rows, cols)?;
    let got = out.to_f32_vec()?;
    let mut result =
        vec![compare(&format!("sum_rows_{}", elem.suffix()), &shapes, &got, &norm::sum_rows(&x64, cols), Tolerance::for_elem(Elem::F32))];
    if rows * cols >= 100_000 {
        out.poison()?;
        ew::sum_rows(&x, &out, rows, cols)?;
        let differ = out.to_f32_vec()?.iter().zip(&got).filter(|&(a, b)| a.to_bits() != b.to_bits()).count();
        result.push(CheckRow {
            kernel: format!("sum_rows_{} (repeat, exact)", elem.suffix()),
            shapes,
            max_abs_err: 0.0,
            worst_ratio: if differ == 0 { 0.0 } else { f64::INFINITY },
            rule: "bit-exact".into(),
            pass: differ == 0,
            note: format!("{differ} sums differ between two identical runs"),
        });
    }
    Ok(result)
}

// x (B, T, C) with a mask whose row r has T − r real tokens (none when r ≥ T)
// -> y (B, C), and dy (B, C) -> dx (B, T, C), against the CPU tape's mean_pool
fn mean_pool_case(device: &Device, elem: Elem, (b, t, c): (usize, usize, usize)) -> Result<Vec<CheckRow>> {
    let (tol, sfx, shapes) = (Tolerance::for_elem(elem), elem.suffix(), format!("x ({b}, {t}, {c}), row r has T − r tokens"));
    let (x_host, dy_host) = (random(93, b * t * c, 1.0), random(94, b * c, 1.0));
    let mask: Vec<u8> = (0..b * t).map(|i| u8::from(i % t + i / t < t)).collect();
    let mut tape = Tape::new();
    let xv = tape.leaf(Tensor::from_vec(as_stored(&x_host, elem), &[b, t, c])?, true);
    let yv = mean_pool(&mut tape, xv, mask.clone().into())?;
    let want_y = tape.value(yv).data::<f64>()?.to_vec();
    let grads = tape.backward_with(yv, Tensor::from_vec(as_stored(&dy_host, elem), &[b, c])?)?;
    let want_dx = grads.get(xv).ok_or_else(|| Error::shape("mean_pool check", "the CPU tape gave x no gradient"))?.data::<f64>()?.to_vec();

    let weights = DeviceBuffer::from_f32(device, &ew::mean_pool_weights(&mask, t), Elem::F32)?;
    let x = DeviceBuffer::from_f32(device, &x_host, elem)?;
    let dy = DeviceBuffer::from_f32(device, &dy_host, elem)?;
    let y = poisoned(device, b * c, elem)?;
    ew::mean_pool_fwd(&x, &weights, &y, b, t, c)?;
    let dx = poisoned(device, b * t * c, elem)?;
    ew::mean_pool_bwd(&dy, &weights, &dx, b, t, c)?;
    Ok(vec![
        compare(&format!("mean_pool_fwd_{sfx}"), &shapes, &y.to_f32_vec()?, &want_y, tol),
        compare(&format!("mean_pool_bwd_{sfx}"), &shapes, &dx.to_f32_vec()?, &want_dx, tol),
    ])
}

// x (B, T, C) -> y (B, C), and dy (B, C) -> dx (B, T, C), against the CPU tape's first_token
fn first_token_case(device: &Device, elem: Elem, (b, t, c): (usize, usize, usize)) -> Result<Vec<CheckRow>> {
    let (tol, sfx, shapes) = (Tolerance::for_elem(elem), elem.suffix(), format!("x ({b}, {t}, {c})"));
    let (x_host, dy_host) = (random(91, b * t * c, 1.0), random(92, b * c, 1.0));
    let mut tape = Tape::new();
    let xv = tape.leaf(Tensor::from_vec(as_stored(&x_host, elem), &[b, t, c])?, true);
    let yv = first_token(&mut tape, xv)?;
    let want_y = tape.value(yv).data::<f64>()?.to_vec();
    let grads = tape.backward_with(yv, Tensor::from_vec(as_stored(&dy_host, elem), &[b, c])?)?;
    let want_dx =
        grads.get(xv).ok_or_else(|| Error::shape("first_token check", "the CPU tape gave x no gradient"))?.data::<f64>()?.to_vec();

    let x = DeviceBuffer::from_f32(device, &x_host, elem)?;
    let dy = DeviceBuffer::from_f32(device, &dy_host, elem)?;
    let y = poisoned(device, b * c, elem)?;
    ew::first_token_fwd(&x, &y, b, t, c)?;
    let dx = poisoned(device, b * t * c, elem)?;
    ew::first_token_bwd(&dy, &dx, b, t, c)?;
    Ok(vec![
        compare(&format!("first_token_fwd_{sfx}"), &shapes, &y.to_f32_vec()?, &want_y, tol),
        compare(&format!("first_token_bwd_{sfx}"), &shapes, &dx.to_f32_vec()?, &want_dx, tol),
    ])
}

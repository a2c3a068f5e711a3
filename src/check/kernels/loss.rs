//! Loss parity (kernels/loss.cu): cross-entropy and softmax focal loss with
//! ignored rows (some, and all), class weights / alpha, gamma 0, 0.5, 1, 2;
//! BCE with logits with and without pos_weight on soft and hard targets;
//! sigmoid focal loss; MSE. F32 and BF16 logits, C = 2, 3, 9, 77, one row and
//! ragged row counts, dloss_scale ≠ 1, with and without the gradient. The
//! loss is F32 whatever the logits, so it is held to the F32 tolerance; the
//! gradient to the logits' dtype. References: src/backend/cpu/loss.rs in f64
//! on the stored (bf16-rounded) logits.

use super::{CheckRow, FLOAT_TYPES, Tolerance, as_stored, compare, random};
use crate::backend::cpu::loss::{IGNORE_INDEX, bce_with_logits_weighted, cross_entropy, focal_cross_entropy, mse, sigmoid_focal};
use crate::backend::cuda::ops::loss;
use crate::device::{Device, DeviceBuffer, Elem};
use crate::error::Result;

/// Which rows of a softmax case are ignored (target −100).
#[derive(Clone, Copy, PartialEq)]
enum Ignore {
    None,
    Some,
    All,
}

/// One softmax-loss case: gamma None is cross-entropy, Some(γ) focal loss.
#[derive(Clone, Copy)]
struct SoftmaxCase {
    rows: usize,
    classes: usize,
    gamma: Option<f32>,
    weighted: bool,
    ignore: Ignore,
    /// Standard deviation of the logits.
    spread: f64,
    scale: f32,
    grad: bool,
}

fn uniform(seed: u64, n: usize) -> Vec<f32> {
    (0..n as u64).map(|i| crate::rng::uniform(seed, 91, i)).collect()
}

/// Labels in 0..classes; rows 2, 6, 10, ... ignored for Ignore::Some.
fn labels(seed: u64, rows: usize, classes: usize, ignore: Ignore) -> Vec<i64> {
    let u = uniform(seed, rows);
    (0..rows)
        .map(|i| match ignore {
            Ignore::All => IGNORE_INDEX,
            Ignore::Some if i % 4 == 2 => IGNORE_INDEX,
            _ => ((u[i] * classes as f32) as usize).min(classes - 1) as i64,
        })
        .collect()
}

/// Logits of the given spread, with row 0 made nearly certain of its label
/// (p ≈ 1 − 1e-10 · C at spread 3), where the focal gradient's (1 − p)^(γ − 1)
/// would blow up.
fn logits_for(seed: u64, rows: usize, classes: usize, targets: &[i64], spread: f64) -> Vec<f32> {
    let mut x = random(seed, rows * classes, spread);
    if rows > 1 && targets[0] != IGNORE_INDEX {
        x[targets[0] as usize] = 24.0;
    }
    x
}

fn scaled(v: Vec<f64>, s: f32) -> Vec<f64> {
    v.into_iter().map(|d| d * s as f64).collect()
}

fn softmax_case(device: &Device, elem: Elem, c: SoftmaxCase, out: &mut Vec<CheckRow>) -> Result<()> {
    let SoftmaxCase { rows, classes, gamma, weighted, ignore, spread, scale, grad } = c;
    let targets = labels(100 + rows as u64, rows, classes, ignore);
    let x_h = logits_for(200 + classes as u64, rows, classes, &targets, spread);
    let w_h: Vec<f32> = uniform(300, classes).iter().map(|u| 0.25 + 1.5 * u).collect();
    let x64 = as_stored(&x_h, elem);
    let w64: Vec<f64> = w_h.iter().map(|&v| v as f64).collect();
    let w_ref = weighted.then_some(w64.as_slice());
    let (want_loss, want_d) = match gamma {
        None => cross_entropy(&x64, &targets, classes, w_ref),
        Some(g) => focal_cross_entropy(&x64, &targets, classes, g as f64, w_ref),
    };

    let x = DeviceBuffer::from_f32(device, &x_h, elem)?;
    let t32: Vec<i32> = targets.iter().map(|&t| t as i32).collect();
    let t = DeviceBuffer::from_i32(device, &t32)?;
    let w = DeviceBuffer::from_f32(device, &w_h, Elem::F32)?;
    let w_dev = weighted.then_some(&w);
    let l = DeviceBuffer::uninit(device, 1, Elem::F32)?;
    let d = DeviceBuffer::uninit(device, rows * classes, elem)?;
    l.poison()?;
    d.poison()?;
    let d_dev = grad.then_some(&d);
    let name = match gamma {
        None => {
            loss::cross_entropy(&x, &t, w_dev, &l, d_dev, rows, classes, scale)?;
            format!("cross_entropy_fwd_{}", elem.suffix())
        }
        Some(g) => {
            loss::focal_cross_entropy(&x, &t, g, w_dev, &l, d_dev, rows, classes, scale)?;
            format!("focal_cross_entropy_fwd_{}", elem.suffix())
        }
    };
    let ign = match ignore {
        Ignore::None => "",
        Ignore::Some => " ign",
        Ignore::All => " all-ign",
    };
    let shapes = format!(
        "({rows}, {classes}){}{}{}{ign} ×{scale}",
        if spread > 3.0 { " ±big" } else { "" },
        gamma.map_or(String::new(), |g| format!(" γ{g}")),
        if weighted { if gamma.is_some() { " α" } else { " w" } } else { "" },
    );
    out.push(compare(&format!("{name} loss"), &shapes, &l.to_f32_vec()?, &[want_loss], Tolerance::for_elem(Elem::F32)));
    if grad {
        out.push(compare(&format!("{name} dx"), &shapes, &d.to_f32_vec()?, &scaled(want_d, scale), Tolerance::for_elem(elem)));
    }
    Ok(())
}

fn softmax_cases(device: &Device, elem: Elem, out: &mut Vec<CheckRow>) -> Result<()> {
    let base = SoftmaxCase { rows: 1, classes: 2, gamma: None, weighted: false, ignore: Ignore::None, spread: 3.0, scale: 1.0, grad: true };
    let mut shapes: Vec<(usize, usize)> = vec![(1, 2), (1, 77), (13, 3), (37, 9), (19, 77)];
    if !device.is_simulated() {
        shapes.extend([(65_536, 9), (4_099, 77), (300, 4_096)]);
    }
    for (i, &(rows, classes)) in shapes.iter().enumerate() {
        let c = SoftmaxCase { rows, classes, ..base };
        softmax_case(device, elem, SoftmaxCase { ignore: Ignore::Some, scale: 0.25, ..c }, out)?;
        softmax_case(device, elem, SoftmaxCase { weighted: true, ignore: Ignore::Some, ..c }, out)?;
        // Gammas in turn across shapes, each with and without alpha.
        let gamma = [0.0, 0.5, 1.0, 2.0, 0.5, 2.0, 1.0, 0.5][i % 8];
        softmax_case(device, elem, SoftmaxCase { gamma: Some(gamma), ignore: Ignore::Some, scale: 0.5, ..c }, out)?;
        softmax_case(device, elem, SoftmaxCase { gamma: Some(gamma), weighted: true, ..c }, out)?;
    }
    // Every gamma on one ragged shape, also with logits of standard deviation 40
    // (log p down to about −200, and p = 1 exactly in f32), the loss alone,
    // and batches with every row ignored.
    for gamma in [0.0, 0.5, 1.0, 2.0] {
        let c = SoftmaxCase { rows: 21, classes: 9, gamma: Some(gamma), weighted: true, ignore: Ignore::Some, ..base };
        softmax_case(device, elem, c, out)?;
        softmax_case(device, elem, SoftmaxCase { spread: 40.0, ..c }, out)?;
    }
    softmax_case(device, elem, SoftmaxCase { rows: 21, classes: 9, spread: 40.0, ..base }, out)?;
    softmax_case(device, elem, SoftmaxCase { rows: 21, classes: 9, weighted: true, grad: false, ..base }, out)?;
    softmax_case(device, elem, SoftmaxCase { rows: 21, classes: 9, gamma: Some(2.0), grad: false, ..base }, out)?;
    softmax_case(device, elem, SoftmaxCase { rows: 9, classes: 3, weighted: true, ignore: Ignore::All, ..base }, out)?;
    softmax_case(device, elem, SoftmaxCase { rows: 9, classes: 3, gamma: Some(0.5), ignore: Ignore::All, ..base }, out)?;
    Ok(())
}

/// A label outside 0..C that is not −100: the loss is NaN, that row's
/// gradient 0, the other rows as if it were ignored.
fn bad_label_case(device: &Device, out: &mut Vec<CheckRow>) -> Result<()> {
    let (rows, classes) = (5, 3);
    let mut targets = labels(7, rows, classes, Ignore::None);
    let x_h = random(8, rows * classes, 2.0);
    targets[3] = IGNORE_INDEX;
    let (_, want_d) = cross_entropy(&as_stored(&x_h, Elem::F32), &targets, classes, None);
    let mut t32: Vec<i32> = targets.iter().map(|&t| t as i32).collect();
    t32[3] = classes as i32;
    let x = DeviceBuffer::from_f32(device, &x_h, Elem::F32)?;
    let t = DeviceBuffer::from_i32(device, &t32)?;
    let (l, d) = (DeviceBuffer::uninit(device, 1, Elem::F32)?, DeviceBuffer::uninit(device, rows * classes, Elem::F32)?);
    l.poison()?;
    d.poison()?;
    loss::cross_entropy(&x, &t, None, &l, Some(&d), rows, classes, 1.0)?;
    let (name, shapes) = ("cross_entropy_fwd_f32", "(5, 3) label 3 of 3 classes");
    let got = l.to_f32_vec()?[0];
    let mut row = compare(&format!("{name} loss"), shapes, &[0.0], &[0.0], Tolerance::for_elem(Elem::F32));
    if !got.is_nan() {
        row = CheckRow::failed(&format!("{name} loss"), shapes, format!("loss {got}, expected NaN for a bad label"));
    }
    out.push(row);
    out.push(compare(&format!("{name} dx"), shapes, &d.to_f32_vec()?, &want_d, Tolerance::for_elem(Elem::F32)));
    Ok(())
}

/// Which elementwise loss a case runs.
#[derive(Clone, Copy)]
enum Elementwise {
    Bce { pos_weight: bool },
    Focal { gamma: f32, alpha: Option<f32>, pos_weight: bool },
}

/// One elementwise case: logits of standard deviation `spread`, soft
/// (uniform) or hard (0/1) targets.
#[derive(Clone, Copy)]
struct ElementwiseCase {
    kind: Elementwise,
    rows: usize,
    classes: usize,
    soft: bool,
    spread: f64,
    scale: f32,
    grad: bool,
}

fn elementwise_case(device: &Device, elem: Elem, c: ElementwiseCase, out: &mut Vec<CheckRow>) -> Result<()> {
    let ElementwiseCase { kind, rows, classes, soft, spread, scale, grad } = c;
    let n = rows * classes;
    let x_h = random(400 + classes as u64, n, spread);
    let y_h: Vec<f32> = uniform(500 + rows as u64, n).into_iter().map(|u| if soft { u } else { u.round() }).collect();
    let pw_h: Vec<f32> = uniform(600, classes).iter().map(|u| 0.2 + 3.0 * u).collect();
    let (x64, y64) = (as_stored(&x_h, elem), as_stored(&y_h, Elem::F32));
    let pw64: Vec<f64> = pw_h.iter().map(|&v| v as f64).collect();
    let x = DeviceBuffer::from_f32(device, &x_h, elem)?;
    let y = DeviceBuffer::from_f32(device, &y_h, Elem::F32)?;
    let pw = DeviceBuffer::from_f32(device, &pw_h, Elem::F32)?;
    let l = DeviceBuffer::uninit(device, 1, Elem::F32)?;
    let d = DeviceBuffer::uninit(device, n, elem)?;
    l.poison()?;
    d.poison()?;
    let d_dev = grad.then_some(&d);
    let inputs = format!("({rows}, {classes}) {}{}", if soft { "soft" } else { "hard" }, if spread > 3.0 { " ±big" } else { "" });
    let (name, shapes, (want_loss, want_d)) = match kind {
        Elementwise::Bce { pos_weight } => {
            loss::bce_with_logits(&x, &y, pos_weight.then_some(&pw), &l, d_dev, rows, classes, scale)?;
            let shapes = format!("{inputs}{} ×{scale}", if pos_weight { " pw" } else { "" });
            let want = bce_with_logits_weighted(&x64, &y64, classes, pos_weight.then_some(pw64.as_slice()));
            (format!("bce_with_logits_fwd_{}", elem.suffix()), shapes, want)
        }
        Elementwise::Focal { gamma, alpha, pos_weight } => {
            loss::sigmoid_focal(&x, &y, pos_weight.then_some(&pw), gamma, alpha, &l, d_dev, rows, classes, scale)?;
            let a = alpha.map_or(String::new(), |a| format!(" α{a}"));
            let shapes = format!("{inputs} γ{gamma}{a}{} ×{scale}", if pos_weight { " pw" } else { "" });
            let pw_ref = pos_weight.then_some(pw64.as_slice());
            let want = sigmoid_focal(&x64, &y64, classes, gamma as f64, alpha.map(|a| a as f64), pw_ref);
            (format!("sigmoid_focal_fwd_{}", elem.suffix()), shapes, want)
        }
    };
    out.push(compare(&format!("{name} loss"), &shapes, &l.to_f32_vec()?, &[want_loss], Tolerance::for_elem(Elem::F32)));
    if grad {
        out.push(compare(&format!("{name} dx"), &shapes, &d.to_f32_vec()?, &scaled(want_d, scale), Tolerance::for_elem(elem)));
    }
    Ok(())
}

fn elementwise_cases(device: &Device, elem: Elem, out: &mut Vec<CheckRow>) -> Result<()> {
    let base = ElementwiseCase {
        kind: Elementwise::Bce { pos_weight: false },
        rows: 1,
        classes: 2,
        soft: true,
        spread: 3.0,
        scale: 1.0,
        grad: true,
    };
    // (rows, classes); the launcher sizes the grid for 8 elements a thread, so
    // past 256 elements the kernels' grid-stride loops run more than once.
    let mut shapes: Vec<(usize, usize)> = vec![(1, 2), (1, 3), (13, 9), (37, 77), (301, 113)];
    if !device.is_simulated() {
        shapes.extend([(65_536, 9), (4_099, 77), (300, 4_096)]);
    }
    for (i, &(rows, classes)) in shapes.iter().enumerate() {
        let (soft, c) = (i % 2 == 0, ElementwiseCase { rows, classes, ..base });
        let gamma = [0.5, 1.0, 2.0, 0.5, 2.0, 1.0, 0.5, 2.0][i % 8];
        elementwise_case(device, elem, ElementwiseCase { soft, ..c }, out)?;
        elementwise_case(
            device,
            elem,
            ElementwiseCase { kind: Elementwise::Bce { pos_weight: true }, soft: !soft, scale: 0.25, ..c },
            out,
        )?;
        elementwise_case(
            device,
            elem,
            ElementwiseCase { kind: Elementwise::Focal { gamma, alpha: None, pos_weight: false }, soft, scale: 0.5, ..c },
            out,
        )?;
        let focal_alpha = Elementwise::Focal { gamma, alpha: Some(0.25), pos_weight: false };
        elementwise_case(device, elem, ElementwiseCase { kind: focal_alpha, soft: !soft, ..c }, out)?;
        let focal_weighted = Elementwise::Focal { gamma, alpha: None, pos_weight: true };
        elementwise_case(device, elem, ElementwiseCase { kind: focal_weighted, soft, scale: 0.25, ..c }, out)?;
    }
    // Every gamma on soft and hard targets; then saturated logits (|x| up to
    // ~150: σ(−x) underflows, so 1 − p_t is exactly 0 in f32); then the loss alone.
    let c = ElementwiseCase { rows: 11, classes: 7, ..base };
    for gamma in [0.0, 0.5, 1.0, 2.0] {
        for soft in [false, true] {
            elementwise_case(
                device,
                elem,
                ElementwiseCase { kind: Elementwise::Focal { gamma, alpha: Some(0.25), pos_weight: false }, soft, ..c },
                out,
            )?;
        }
    }
    let big = ElementwiseCase { rows: 37, classes: 77, spread: 40.0, ..base };
    for kind in [Elementwise::Bce { pos_weight: false }, Elementwise::Bce { pos_weight: true }] {
        elementwise_case(device, elem, ElementwiseCase { kind, soft: false, ..big }, out)?;
    }
    for gamma in [0.5, 2.0] {
        for soft in [false, true] {
            elementwise_case(
                device,
                elem,
                ElementwiseCase { kind: Elementwise::Focal { gamma, alpha: Some(0.25), pos_weight: false }, soft, ..big },
                out,
            )?;
            elementwise_case(
                device,
                elem,
                ElementwiseCase { kind: Elementwise::Focal { gamma, alpha: Some(0.25), pos_weight: true }, soft, ..big },
                out,
            )?;
        }
    }
    elementwise_case(device, elem, ElementwiseCase { kind: Elementwise::Bce { pos_weight: true }, grad: false, ..c }, out)?;
    elementwise_case(
        device,
        elem,
        ElementwiseCase { kind: Elementwise::Focal { gamma: 2.0, alpha: None, pos_weight: false }, grad: false, ..c },
        out,
    )?;
    Ok(())
}

fn mse_cases(device: &Device, elem: Elem, out: &mut Vec<CheckRow>) -> Result<()> {
    let mut sizes = vec![(1, 1.0, true), (1_000, 0.25, true), (20_001, 1.0, true), (77, 1.0, false)];
    if !device.is_simulated() {
        sizes.push((4_000_037, 0.5, true)); // past the 1024-block cap
    }
    for (n, scale, grad) in sizes {
        let p_h = random(700, n, 2.0);
        let t_h = random(701, n, 2.0);
        let (want_loss, want_d) = mse(&as_stored(&p_h, elem), &as_stored(&t_h, Elem::F32));
        let p = DeviceBuffer::from_f32(device, &p_h, elem)?;
        let t = DeviceBuffer::from_f32(device, &t_h, Elem::F32)?;
        let (l, d) = (DeviceBuffer::uninit(device, 1, Elem::F32)?, DeviceBuffer::uninit(device, n, elem)?);
        l.poison()?;
        d.poison()?;
        loss::mse(&p, &t, &l, grad.then_some(&d), n, scale)?;
        let (name, shapes) = (format!("mse_fwd_{}", elem.suffix()), format!("({n}) ×{scale}"));
        out.push(compare(&format!("{name} loss"), &shapes, &l.to_f32_vec()?, &[want_loss], Tolerance::for_elem(Elem::F32)));
        if grad {
            out.push(compare(&format!("{name} dx"), &shapes, &d.to_f32_vec()?, &scaled(want_d, scale), Tolerance::for_elem(elem)));
        }
    }
    Ok(())
}

/// The same launch twice gives the same bits (no float atomics anywhere).
fn determinism_case(device: &Device, out: &mut Vec<CheckRow>) -> Result<()> {
    let (rows, classes) = if device.is_simulated() { (37, 77) } else { (65_536, 77) };
    let targets = labels(9, rows, classes, Ignore::Some);
    let x_h = random(10, rows * classes, 3.0);
    let x = DeviceBuffer::from_f32(device, &x_h, Elem::BF16)?;
    let t = DeviceBuffer::from_i32(device, &targets.iter().map(|&t| t as i32).collect::<Vec<_>>())?;
    let mut runs = Vec::new();
    for _ in 0..2 {
        let (l, d) = (DeviceBuffer::uninit(device, 1, Elem::F32)?, DeviceBuffer::uninit(device, rows * classes, Elem::BF16)?);
        l.poison()?;
        d.poison()?;
        loss::focal_cross_entropy(&x, &t, 2.0, None, &l, Some(&d), rows, classes, 1.0)?;
        let mut bits: Vec<u32> = l.to_f32_vec()?.iter().map(|v| v.to_bits()).collect();
        bits.extend(d.to_f32_vec()?.iter().map(|v| v.to_bits()));
        runs.push(bits);
    }
    let (kernel, shapes) = ("focal_cross_entropy_fwd_bf16 twice", format!("({rows}, {classes}) γ2 ign: same bits"));
    let differing = runs[0].iter().zip(&runs[1]).filter(|(a, b)| a != b).count();
    out.push(if differing == 0 {
        compare(kernel, &shapes, &[0.0], &[0.0], Tolerance::for_elem(Elem::F32))
    } else {
        CheckRow::failed(kernel, &shapes, format!("{differing} values differ between two runs"))
    });
    Ok(())
}

pub fn cases(device: &Device) -> Result<Vec<CheckRow>> {
    let mut rows = Vec::new();
    for &elem in &FLOAT_TYPES {
        softmax_cases(device, elem, &mut rows)?;
        elementwise_cases(device, elem, &mut rows)?;
        mse_cases(device, elem, &mut rows)?;
    }
    bad_label_case(device, &mut rows)?;
    determinism_case(device, &mut rows)?;
    Ok(rows)
}

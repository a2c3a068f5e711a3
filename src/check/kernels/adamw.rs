//! Optimizer parity: the device AdamW update and gradient norm against the
//! CPU's own `optim::adamw::AdamW` and `optim::clip::clip_grad_norm`, run on
//! the same f32 data, step for step.
//!
//! - adamw_update: three updates in a row (t = 1, 2, 3) with fresh gradients
//!   each time; master, m, v and the working copy are compared after every
//!   step (one row each, the steps concatenated). n = 1, ragged n, with and
//!   without weight decay, no copy / f32 copy / bf16 copy, no grad_scale / a
//!   fixed one / the clip factor from grad_norm (clipping and not).
//! - grad_norm: several buffers of ragged lengths (one of length 1, one
//!   empty), max_norm below the norm, above it (scale exactly 1) and 0, no
//!   buffers at all, and a non-finite gradient (norm non-finite, scale NaN,
//!   and adamw_update then leaves everything as it was).

use super::{CheckRow, Tolerance, as_stored, compare, random};
use crate::backend::cuda::ops::adamw::{AdamWStep, adamw_update, grad_norm};
use crate::device::{Device, DeviceBuffer, Elem};
use crate::error::Result;
use crate::optim::adamw::{AdamW, AdamWConfig, no_decay};
use crate::optim::clip::clip_grad_norm;
use crate::tensor::Tensor;

/// Large enough that every term moves the master well past the f32
/// tolerance: a step changes p by about LR, weight decay by LR·WD·|p|.
const LR: f64 = 1e-2;
const WEIGHT_DECAY: f64 = 0.1;
const STEPS: u64 = 3;

/// What multiplies the gradients.
#[derive(Clone, Copy, Debug)]
enum GradScale {
    None,
    /// A fixed device scalar.
    Fixed(f32),
    /// grad_norm's clip factor for this max_norm.
    Clip(f32),
}

/// One parameter on the device.
struct DeviceParam {
    master: DeviceBuffer,
    m: DeviceBuffer,
    v: DeviceBuffer,
    copy: Option<DeviceBuffer>,
}

/// Device output and CPU reference, accumulated over parameters and steps.
#[derive(Default)]
struct Series {
    got: Vec<f32>,
    want: Vec<f64>,
}

impl Series {
    fn push(&mut self, got: Vec<f32>, want: Vec<f64>) {
        self.got.extend(got);
        self.want.extend(want);
    }
}

pub fn cases(device: &Device) -> Result<Vec<CheckRow>> {
    let mut rows = Vec::new();
    let ragged: &[usize] = if device.is_simulated() { &[1000, 5003] } else { &[1000, 5003, 3_000_017] };
    // Working copy kinds, n = 1 and ragged n, weight decay on.
    for copy in [None, Some(Elem::F32), Some(Elem::BF16)] {
        for &n in [1].iter().chain(ragged) {
            rows.extend(update_case(device, &[n], true, copy, GradScale::None)?);
        }
    }
    // Weight decay off; a fixed gradient scale.
    rows.extend(update_case(device, &[1000], false, Some(Elem::BF16), GradScale::None)?);
    rows.extend(update_case(device, &[1, 1000], true, Some(Elem::F32), GradScale::Fixed(0.37))?);
    // A whole step: grad_norm over every parameter, then adamw_update with its
    // scale; max_norm below the norm (clips) and above it (scale 1).
    let params: &[usize] = &[1, 1000, 257, 3];
    rows.extend(update_case(device, params, true, Some(Elem::BF16), GradScale::Clip(10.0))?);
    rows.extend(update_case(device, params, false, None, GradScale::Clip(1000.0))?);

    let buffers: Vec<usize> = if device.is_simulated() { vec![1, 1000, 0, 5003, 257] } else { vec![1, 1000, 0, 5003, 257, 4_000_037] };
    for max_norm in [5.0, 1e4, 0.0] {
        rows.extend(norm_case(device, &buffers, max_norm)?);
    }
    rows.extend(norm_case(device, &[], 1.0)?);
    rows.extend(non_finite_case(device)?);
    Ok(rows)
}

/// Runs STEPS updates of parameters of `sizes` on the CPU (AdamW, and
/// clip_grad_norm for GradScale::Clip) and on the device, and compares.
fn update_case(device: &Device, sizes: &[usize], decay: bool, copy: Option<Elem>, scale: GradScale) -> Result<Vec<CheckRow>> {
    let config = AdamWConfig { weight_decay: WEIGHT_DECAY, ..AdamWConfig::default() };
    let names: Vec<String> = (0..sizes.len()).map(|i| format!("p{i}.{}", if decay { "weight" } else { "bias" })).collect();
    let initial: Vec<Vec<f32>> = sizes.iter().enumerate().map(|(i, &n)| random(100 + i as u64, n, 1.0)).collect();
    let mut cpu_params = initial.iter().map(|p| Tensor::from_vec(p.clone(), &[p.len()])).collect::<Result<Vec<_>>>()?;
    let mut opt = AdamW::new(config, &names, &cpu_params, &vec![true; sizes.len()]);
    let mut gpu = Vec::new();
    for (p, &n) in initial.iter().zip(sizes) {
        gpu.push(DeviceParam {
            master: DeviceBuffer::from_f32(device, p, Elem::F32)?,
            m: DeviceBuffer::zeros(device, n, Elem::F32)?,
            v: DeviceBuffer::zeros(device, n, Elem::F32)?,
            copy: copy.map(|e| DeviceBuffer::uninit(device, n, e)).transpose()?,
        });
    }
    let fixed = match scale {
        GradScale::Fixed(s) => Some(DeviceBuffer::from_f32(device, &[s], Elem::F32)?),
        _ => None,
    };
    let (norm, clip) = (DeviceBuffer::uninit(device, 1, Elem::F32)?, DeviceBuffer::uninit(device, 1, Elem::F32)?);
    let (mut master, mut m, mut v, mut copies, mut norms) =
        (Series::default(), Series::default(), Series::default(), Series::default(), Series::default());
    for t in 1..=STEPS {
        let host_grads: Vec<Vec<f32>> = sizes.iter().enumerate().map(|(i, &n)| random(200 + 10 * t + i as u64, n, 1.0)).collect();
        let grads = host_grads.iter().map(|g| DeviceBuffer::from_f32(device, g, Elem::F32)).collect::<Result<Vec<_>>>()?;
        let mut cpu_grads = host_grads
            .iter()
            .map(|g| {
                let g = match scale {
                    GradScale::Fixed(s) => g.iter().map(|&x| x * s).collect(),
                    _ => g.clone(),
                };
                Tensor::from_vec(g.clone(), &[g.len()]).map(Some)
            })
            .collect::<Result<Vec<_>>>()?;
        let grad_scale = match scale {
            GradScale::None => None,
            GradScale::Fixed(_) => fixed.as_ref(),
            GradScale::Clip(max_norm) => {
                norm.poison()?;
                clip.poison()?;
                grad_norm(&grads.iter().collect::<Vec<_>>(), max_norm, &norm, &clip)?;
                let want = clip_grad_norm(&mut cpu_grads, max_norm as f64)?;
                norms.push(norm.to_f32_vec()?, vec![want]);
                Some(&clip)
            }
        };
        opt.update(&mut cpu_params, &cpu_grads, LR)?;
        for (i, p) in gpu.iter().enumerate() {
            let wd = if no_decay(&names[i]) { 0.0 } else { config.weight_decay };
            if let Some(c) = &p.copy {
                c.poison()?;
            }
            adamw_update(
                &p.master,
                &grads[i],
                &p.m,
                &p.v,
                p.copy.as_ref(),
                AdamWStep::new(LR, wd, (config.beta1, config.beta2), config.eps, t),
                grad_scale,
            )?;
            let state = opt.moments[i].as_ref().expect("every parameter is trainable");
            master.push(p.master.to_f32_vec()?, cpu_params[i].to_f64_vec());
            m.push(p.m.to_f32_vec()?, state.m.to_f64_vec());
            v.push(p.v.to_f32_vec()?, state.v.to_f64_vec());
            if let Some(c) = &p.copy {
                copies.push(c.to_f32_vec()?, as_stored(&cpu_params[i].to_f32_vec(), c.elem()));
            }
        }
    }
    let kernel = if copy == Some(Elem::BF16) { "adamw_update_bf16" } else { "adamw_update_f32" };
    let shapes = format!(
        "({}) t=1..{STEPS}{}{}{}",
        sizes.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(","),
        if decay { " wd" } else { "" },
        copy.map_or(String::new(), |e| format!(" copy {}", e.suffix())),
        match scale {
            GradScale::None => String::new(),
            GradScale::Fixed(s) => format!(" scale {s}"),
            GradScale::Clip(c) => format!(" clip {c}"),
        }
    );
    let f32_tol = Tolerance::for_elem(Elem::F32);
    let mut rows = vec![
        compare(&format!("{kernel} master"), &shapes, &master.got, &master.want, f32_tol),
        compare(&format!("{kernel} m"), &shapes, &m.got, &m.want, f32_tol),
        compare(&format!("{kernel} v"), &shapes, &v.got, &v.want, f32_tol),
    ];
    if let Some(e) = copy {
        rows.push(compare(&format!("{kernel} copy"), &shapes, &copies.got, &copies.want, Tolerance::for_elem(e)));
    }
    if !norms.got.is_empty() {
        rows.push(compare("grad_norm norm", &shapes, &norms.got, &norms.want, f32_tol));
    }
    Ok(rows)
}

/// grad_norm over buffers of `sizes` against clip_grad_norm, and the scale
/// against clip's formula in f64. A scale that should be 1 must be exactly 1.
fn norm_case(device: &Device, sizes: &[usize], max_norm: f32) -> Result<Vec<CheckRow>> {
    let host: Vec<Vec<f32>> = sizes.iter().enumerate().map(|(i, &n)| random(300 + i as u64, n, 0.5)).collect();
    let grads = host.iter().map(|g| DeviceBuffer::from_f32(device, g, Elem::F32)).collect::<Result<Vec<_>>>()?;
    let mut cpu = host.iter().map(|g| Tensor::from_vec(g.clone(), &[g.len()]).map(Some)).collect::<Result<Vec<_>>>()?;
    let (norm, scale) = (DeviceBuffer::uninit(device, 1, Elem::F32)?, DeviceBuffer::uninit(device, 1, Elem::F32)?);
    norm.poison()?;
    scale.poison()?;
    grad_norm(&grads.iter().collect::<Vec<_>>(), max_norm, &norm, &scale)?;
    let want_norm = clip_grad_norm(&mut cpu, max_norm as f64)?;
    let limit = max_norm as f64;
    let want_scale = if limit > 0.0 && want_norm > limit { limit / (want_norm + 1e-6) } else { 1.0 };
    let shapes = format!("({}) max_norm {max_norm}", sizes.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(","));
    let tol = Tolerance::for_elem(Elem::F32);
    let got_scale = scale.to_f32_vec()?;
    let mut scale_row = compare("grad_norm scale", &shapes, &got_scale, &[want_scale], tol);
    if want_scale == 1.0 && got_scale[0] != 1.0 {
        scale_row.pass = false;
        scale_row.note = format!("scale {} where it must be exactly 1", got_scale[0]);
    }
    Ok(vec![compare("grad_norm norm", &shapes, &norm.to_f32_vec()?, &[want_norm], tol), scale_row])
}

/// An infinite gradient: the norm is not finite, the scale is NaN, and an
/// update with that scale leaves master, m, v and the copy as they were.
fn non_finite_case(device: &Device) -> Result<Vec<CheckRow>> {
    let n = 1000;
    let mut bad = random(400, n, 0.5);
    bad[417] = f32::INFINITY;
    let grads = [DeviceBuffer::from_f32(device, &random(401, 33, 0.5), Elem::F32)?, DeviceBuffer::from_f32(device, &bad, Elem::F32)?];
    let (norm, scale) = (DeviceBuffer::uninit(device, 1, Elem::F32)?, DeviceBuffer::uninit(device, 1, Elem::F32)?);
    norm.poison()?;
    scale.poison()?;
    grad_norm(&[&grads[0], &grads[1]], 1.0, &norm, &scale)?;
    let (got_norm, got_scale) = (norm.to_f32_vec()?[0], scale.to_f32_vec()?[0]);
    let shapes = format!("(33,{n}) one inf");
    let norm_row = CheckRow {
        kernel: "grad_norm non-finite".into(),
        shapes: shapes.clone(),
        max_abs_err: 0.0,
        worst_ratio: 0.0,
        rule: "non-finite refused".into(),
        pass: !got_norm.is_finite() && got_scale.is_nan(),
        note: format!("norm {got_norm}, scale {got_scale} (want a non-finite norm and a NaN scale)"),
    };
    // The update must be refused: everything keeps its value.
    let (p0, m0, v0, c0) =
        (random(402, n, 1.0), random(403, n, 0.1), random(404, n, 0.01).iter().map(|x| x * x).collect::<Vec<f32>>(), random(405, n, 1.0));
    let master = DeviceBuffer::from_f32(device, &p0, Elem::F32)?;
    let m = DeviceBuffer::from_f32(device, &m0, Elem::F32)?;
    let v = DeviceBuffer::from_f32(device, &v0, Elem::F32)?;
    let copy = DeviceBuffer::from_f32(device, &c0, Elem::BF16)?;
    let adamw = AdamWConfig::default();
    let step = AdamWStep::new(LR, WEIGHT_DECAY, (adamw.beta1, adamw.beta2), adamw.eps, 1);
    adamw_update(&master, &grads[1], &m, &v, Some(&copy), step, Some(&scale))?;
    let tol = Tolerance::for_elem(Elem::F32);
    let skip = format!("({n}) scale NaN: unchanged");
    Ok(vec![
        norm_row,
        compare("adamw_update_bf16 master", &skip, &master.to_f32_vec()?, &as_stored(&p0, Elem::F32), tol),
        compare("adamw_update_bf16 m", &skip, &m.to_f32_vec()?, &as_stored(&m0, Elem::F32), tol),
        compare("adamw_update_bf16 v", &skip, &v.to_f32_vec()?, &as_stored(&v0, Elem::F32), tol),
        compare("adamw_update_bf16 copy", &skip, &copy.to_f32_vec()?, &as_stored(&c0, Elem::BF16), Tolerance::for_elem(Elem::BF16)),
    ])
}

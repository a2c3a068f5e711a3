//! Loss launchers (kernels/loss.cu): cross-entropy and softmax focal loss
//! (targets I32, −100 ignored), BCE with logits (optional pos_weight), sigmoid
//! focal loss and MSE. Each writes the loss (1) F32 and, when asked, the
//! gradient with respect to the logits in the logits' dtype, times
//! `dloss_scale`. Deterministic: partial sums go to a scratch buffer and one
//! block adds them in a fixed order, so the same inputs give the same bits.

use super::{expect, expect_float};
use crate::device::{DevPtr, DeviceBuffer, Elem, KernelArgs, LaunchShape};
use crate::error::{Error, Result};

/// Threads of the per-row softmax kernels: 8 warps, one row each.
const ROW_THREADS: u32 = 256;
/// Threads of the elementwise loss kernels.
const THREADS: u32 = 256;
/// Elements per thread the elementwise grid is sized for: the kernels
/// grid-stride, so every case past one block's 256 elements takes the loop.
const ELEMS_PER_THREAD: usize = 8;
/// Cap on the elementwise grid, and so on the partial sums the final
/// reduction adds.
const MAX_BLOCKS: usize = 1024;
/// Threads of the single-block reductions (normaliser and final sum).
const REDUCE_THREADS: u32 = 1024;

fn opt_ptr(b: Option<&DeviceBuffer>) -> DevPtr {
    b.map_or(0, DeviceBuffer::ptr)
}

/// Checks the logits (rows·classes floats), the loss (1 F32) and the optional
/// gradient (same dtype and length as the logits).
fn check_common(op: &'static str, logits: &DeviceBuffer, loss: &DeviceBuffer, dlogits: Option<&DeviceBuffer>, n: usize) -> Result<()> {
    expect_float(op, "logits", logits, n)?;
    expect(op, "loss", loss, 1, Elem::F32)?;
    if let Some(d) = dlogits {
        expect(op, "dlogits", d, n, logits.elem())?;
    }
    Ok(())
}

fn check_gamma(op: &'static str, gamma: f32) -> Result<()> {
    if !(gamma.is_finite() && gamma >= 0.0) {
        return Err(Error::InvalidArgument(format!("{op}: gamma must be finite and ≥ 0, got {gamma}")));
    }
    Ok(())
}

fn elements(op: &'static str, rows: usize, classes: usize) -> Result<usize> {
    if classes == 0 {
        return Err(Error::shape(op, format!("{rows} rows of 0 classes")));
    }
    rows.checked_mul(classes).ok_or_else(|| Error::shape(op, format!("{rows} × {classes} overflows")))
}

/// cross_entropy_fwd_denom -> per-row kernel -> loss_sum_fwd, shared by cross-entropy and focal loss.
#[allow(clippy::too_many_arguments)]
fn softmax_loss(
    op: &'static str,
    logits: &DeviceBuffer,
    targets: &DeviceBuffer,
    weights: Option<&DeviceBuffer>,
    gamma: Option<f32>,
    loss: &DeviceBuffer,
    dlogits: Option<&DeviceBuffer>,
    rows: usize,
    classes: usize,
    dloss_scale: f32,
) -> Result<()> {
    let n = elements(op, rows, classes)?;
    check_common(op, logits, loss, dlogits, n)?;
    expect(op, "targets", targets, rows, Elem::I32)?;
    if let Some(w) = weights {
        expect(op, "class weights", w, classes, Elem::F32)?;
    }
    let device = logits.device();
    // scratch[0] = normaliser, scratch[1..] = per-row losses
    let scratch = DeviceBuffer::uninit(device, rows + 1, Elem::F32)?;
    KernelArgs::new().buf(targets).ptr(opt_ptr(weights)).len(rows)?.len(classes)?.buf(&scratch).launch(
        device,
        "cross_entropy_fwd_denom_f32",
        LaunchShape::linear(1, REDUCE_THREADS),
    )?;
    let warps = (ROW_THREADS / 32) as usize;
    let blocks = u32::try_from(rows.div_ceil(warps)).map_err(|_| Error::shape(op, format!("{rows} rows is too many")))?;
    let mut args = KernelArgs::new().buf(logits).buf(targets).ptr(opt_ptr(weights)).buf(&scratch);
    let kernel = match gamma {
        Some(g) => {
            args = args.f32(g);
            format!("focal_cross_entropy_fwd_{}", logits.elem().suffix())
        }
        None => format!("cross_entropy_fwd_{}", logits.elem().suffix()),
    };
    args.f32(dloss_scale).ptr(scratch.ptr_at(1)).ptr(opt_ptr(dlogits)).len(rows)?.len(classes)?.launch(
        device,
        &kernel,
        LaunchShape::linear(blocks, ROW_THREADS),
    )?;
    KernelArgs::new().ptr(scratch.ptr_at(1)).len(rows)?.buf(&scratch).f32(0.0).buf(loss).launch(
        device,
        "loss_sum_fwd_f32",
        LaunchShape::linear(1, REDUCE_THREADS),
    )
}

/// logits (N, C) T; targets (N) I32 (−100 ignored); class_weights (C) F32
/// optional -> loss (1) F32 = Σ w[y_i]·(−log softmax(x_i)[y_i]) / Σ w[y_i]
/// over counted rows (0 when none); dlogits (N, C) T optional, written, =
/// d(loss)/d(logits)·dloss_scale.
#[allow(clippy::too_many_arguments)]
pub fn cross_entropy(
    logits: &DeviceBuffer,
    targets: &DeviceBuffer,
    class_weights: Option<&DeviceBuffer>,
    loss: &DeviceBuffer,
    dlogits: Option<&DeviceBuffer>,
    rows: usize,
    classes: usize,
    dloss_scale: f32,
) -> Result<()> {
    softmax_loss("cross_entropy", logits, targets, class_weights, None, loss, dlogits, rows, classes, dloss_scale)
}

/// As `cross_entropy`, with each row's term times (1 − p_i)^gamma and alpha
/// (C) F32 as the class weights: Σ α[y_i]·(1 − p_i)^γ·(−log p_i) / Σ α[y_i].
#[allow(clippy::too_many_arguments)]
pub fn focal_cross_entropy(
    logits: &DeviceBuffer,
    targets: &DeviceBuffer,
    gamma: f32,
    alpha: Option<&DeviceBuffer>,
    loss: &DeviceBuffer,
    dlogits: Option<&DeviceBuffer>,
    rows: usize,
    classes: usize,
    dloss_scale: f32,
) -> Result<()> {
    check_gamma("focal_cross_entropy", gamma)?;
    softmax_loss("focal_cross_entropy", logits, targets, alpha, Some(gamma), loss, dlogits, rows, classes, dloss_scale)
}

/// Scratch for the partial sums of an elementwise loss over n elements, and its grid.
fn partials(logits: &DeviceBuffer, n: usize) -> Result<(DeviceBuffer, u32)> {
    let blocks = n.div_ceil(THREADS as usize * ELEMS_PER_THREAD).clamp(1, MAX_BLOCKS);
    Ok((DeviceBuffer::uninit(logits.device(), blocks, Elem::F32)?, blocks as u32))
}

/// Σ partials / n into loss.
fn finish(partial: &DeviceBuffer, n: usize, loss: &DeviceBuffer) -> Result<()> {
    KernelArgs::new().buf(partial).len(partial.len())?.ptr(0).f32(n as f32).buf(loss).launch(
        loss.device(),
        "loss_sum_fwd_f32",
        LaunchShape::linear(1, REDUCE_THREADS),
    )
}

/// logits (N, C) T; targets (N, C) F32 in [0, 1]; pos_weight (C) F32 optional
/// (PyTorch's: the positive term y·log σ(x) times pos_weight[c]) -> loss (1)
/// F32, the mean over N·C; dlogits (N, C) T optional, written, times dloss_scale.
#[allow(clippy::too_many_arguments)]
pub fn bce_with_logits(
    logits: &DeviceBuffer,
    targets: &DeviceBuffer,
    pos_weight: Option<&DeviceBuffer>,
    loss: &DeviceBuffer,
    dlogits: Option<&DeviceBuffer>,
    rows: usize,
    classes: usize,
    dloss_scale: f32,
) -> Result<()> {
    let op = "bce_with_logits";
    let n = elements(op, rows, classes)?;
    check_common(op, logits, loss, dlogits, n)?;
    expect(op, "targets", targets, n, Elem::F32)?;
    if let Some(w) = pos_weight {
        expect(op, "pos_weight", w, classes, Elem::F32)?;
    }
    let (partial, blocks) = partials(logits, n)?;
    let kernel = format!("bce_with_logits_fwd_{}", logits.elem().suffix());
    KernelArgs::new()
        .buf(logits)
        .buf(targets)
        .ptr(opt_ptr(pos_weight))
        .f32(dloss_scale)
        .buf(&partial)
        .ptr(opt_ptr(dlogits))
        .len(n)?
        .len(classes)?
        .launch(logits.device(), &kernel, LaunchShape::linear(blocks, THREADS))?;
    finish(&partial, n, loss)
}

/// logits (N, C) T; targets (N, C) F32 in [0, 1]; pos_weight (C) F32
/// optional -> loss (1) F32, the mean over N·C of α_t·(1 − p_t)^γ·B, where B
/// is the BCE term of `bce_with_logits` (with pos_weight when given) and
/// α_t = 1 without alpha; dlogits (N, C) T optional, written, times dloss_scale.
#[allow(clippy::too_many_arguments)]
pub fn sigmoid_focal(
    logits: &DeviceBuffer,
    targets: &DeviceBuffer,
    pos_weight: Option<&DeviceBuffer>,
    gamma: f32,
    alpha: Option<f32>,
    loss: &DeviceBuffer,
    dlogits: Option<&DeviceBuffer>,
    rows: usize,
    classes: usize,
    dloss_scale: f32,
) -> Result<()> {
    let op = "sigmoid_focal";
    let n = elements(op, rows, classes)?;
    check_common(op, logits, loss, dlogits, n)?;
    expect(op, "targets", targets, n, Elem::F32)?;
    check_gamma(op, gamma)?;
    if let Some(w) = pos_weight {
        expect(op, "pos_weight", w, classes, Elem::F32)?;
    }
    if alpha.is_some_and(|a| !a.is_finite()) {
        return Err(Error::InvalidArgument(format!("{op}: alpha must be finite, got {alpha:?}")));
    }
    let (partial, blocks) = partials(logits, n)?;
    let kernel = format!("sigmoid_focal_fwd_{}", logits.elem().suffix());
    KernelArgs::new()
        .buf(logits)
        .buf(targets)
        .ptr(opt_ptr(pos_weight))
        .f32(gamma)
        .f32(alpha.unwrap_or(0.0))
        .i32(alpha.is_some() as i32)
        .f32(dloss_scale)
        .buf(&partial)
        .ptr(opt_ptr(dlogits))
        .len(n)?
        .len(classes)?
        .launch(logits.device(), &kernel, LaunchShape::linear(blocks, THREADS))?;
    finish(&partial, n, loss)
}

/// pred (N) T; targets (N) F32 -> loss (1) F32 = mean (p − t)²; dpred (N) T
/// optional, written, = 2(p − t)/N·dloss_scale.
pub fn mse(
    pred: &DeviceBuffer,
    targets: &DeviceBuffer,
    loss: &DeviceBuffer,
    dpred: Option<&DeviceBuffer>,
    rows: usize,
    dloss_scale: f32,
) -> Result<()> {
    let op = "mse";
    check_common(op, pred, loss, dpred, rows)?;
    expect(op, "targets", targets, rows, Elem::F32)?;
    let (partial, blocks) = partials(pred, rows)?;
    let kernel = format!("mse_fwd_{}", pred.elem().suffix());
    KernelArgs::new().buf(pred).buf(targets).f32(dloss_scale).buf(&partial).ptr(opt_ptr(dpred)).len(rows)?.launch(
        pred.device(),
        &kernel,
        LaunchShape::linear(blocks, THREADS),
    )?;
    finish(&partial, rows, loss)
}

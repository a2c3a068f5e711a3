//! Row-major matrix products as cuBLASLt descriptors.
//!
//! cuBLASLt is column-major. A row-major (R, C) matrix is the same memory as
//! a column-major (C × R) matrix with leading dimension C, so a row-major
//! product Y = X·Wᵀ becomes the column-major Yᵀ = W'·Xᵀ, with the operands
//! swapped. Each function below spells out its mapping; the simulated device
//! interprets the resulting descriptor independently, so a wrong mapping
//! fails the parity table.

use crate::device::{DeviceBuffer, Elem, Epilogue, Gemm};
use crate::error::{Error, Result};

fn same_float_type(op: &'static str, bufs: &[&DeviceBuffer]) -> Result<Elem> {
    let elem = bufs[0].elem();
    if !matches!(elem, Elem::F32 | Elem::BF16) || bufs.iter().any(|b| b.elem() != elem) {
        return Err(Error::shape(op, format!("operands must share one float type: {bufs:?}")));
    }
    Ok(elem)
}

fn check_len(op: &'static str, what: &str, b: &DeviceBuffer, len: usize) -> Result<()> {
    if b.len() != len {
        return Err(Error::shape(op, format!("{what} has {} elements, expected {len}", b.len())));
    }
    Ok(())
}

fn plain(m: usize, n: usize, k: usize, elem: Elem) -> Gemm {
    Gemm {
        trans_a: false,
        trans_b: false,
        m: m as u64,
        n: n as u64,
        k: k as u64,
        a: 0,
        lda: 0,
        stride_a: 0,
        b: 0,
        ldb: 0,
        stride_b: 0,
        d: 0,
        ldd: 0,
        stride_d: 0,
        ab_type: elem,
        d_type: elem,
        batch: 1,
        alpha: 1.0,
        beta: 0.0,
        epilogue: Epilogue::Default,
        bias: 0,
    }
}

// y (N, out) = x (N, in) · wᵀ + bias; w (out, in) in HF layout, bias (out).
// Column-major: yᵀ (out × N) = op_T(w as in × out) · (x as in × N), bias per row.
pub fn linear_fwd(x: &DeviceBuffer, w: &DeviceBuffer, bias: Option<&DeviceBuffer>, y: &DeviceBuffer, rows: usize) -> Result<()> {
    let op = "linear_fwd (cuBLASLt)";
    let elem = same_float_type(op, &[x, w, y])?;
    let in_f = x.len() / rows.max(1);
    let out_f = y.len() / rows.max(1);
    check_len(op, "x", x, rows * in_f)?;
    check_len(op, "w", w, out_f * in_f)?;
    check_len(op, "y", y, rows * out_f)?;
    let mut g = plain(out_f, rows, in_f, elem);
    g.trans_a = true;
    (g.a, g.lda) = (w.ptr(), in_f as u64);
    (g.b, g.ldb) = (x.ptr(), in_f as u64);
    (g.d, g.ldd) = (y.ptr(), out_f as u64);
    if let Some(b) = bias {
        same_float_type(op, &[x, b])?;
        check_len(op, "bias", b, out_f)?;
        g.epilogue = Epilogue::Bias;
        g.bias = b.ptr();
    }
    // SAFETY: every operand's length was checked against the descriptor.
    unsafe { x.device().gemm(&g) }
}

// dx (N, in) (+)= dy (N, out) · w (out, in).
// Column-major: dxᵀ (in × N) = (w as in × out) · (dy as out × N).
pub fn linear_bwd_input(dy: &DeviceBuffer, w: &DeviceBuffer, dx: &DeviceBuffer, rows: usize, accumulate: bool) -> Result<()> {
    let op = "linear_bwd_input (cuBLASLt)";
    let elem = same_float_type(op, &[dy, w, dx])?;
    let out_f = dy.len() / rows.max(1);
    let in_f = dx.len() / rows.max(1);
    check_len(op, "w", w, out_f * in_f)?;
    let mut g = plain(in_f, rows, out_f, elem);
    (g.a, g.lda) = (w.ptr(), in_f as u64);
    (g.b, g.ldb) = (dy.ptr(), out_f as u64);
    (g.d, g.ldd) = (dx.ptr(), in_f as u64);
    g.beta = if accumulate { 1.0 } else { 0.0 };
    // SAFETY: lengths checked above.
    unsafe { dy.device().gemm(&g) }
}

// dw (out, in) (+)= dyᵀ (out, N) · x (N, in); dbias (out) = Σ_rows dy, written
// (never accumulated: cuBLASLt's BGRADB epilogue overwrites it). dw and
// dbias may be F32 when dy and x are BF16: parameter gradients stay F32
// under mixed precision.
// Column-major: dwᵀ (in × out) = (x as in × N) · op_T(dy as out × N); BGRADB
// reduces op(B) = dy (N × out) over k = N.
pub fn linear_bwd_weight(
    dy: &DeviceBuffer,
    x: &DeviceBuffer,
    dw: &DeviceBuffer,
    dbias: Option<&DeviceBuffer>,
    rows: usize,
    accumulate: bool,
) -> Result<()> {
    let op = "linear_bwd_weight (cuBLASLt)";
    let elem = same_float_type(op, &[dy, x])?;
    if dw.elem() != elem && dw.elem() != Elem::F32 {
        return Err(Error::shape(op, format!("dw {dw:?} must be F32 or match dy {dy:?}")));
    }
    let out_f = dy.len() / rows.max(1);
    let in_f = x.len() / rows.max(1);
    check_len(op, "dw", dw, out_f * in_f)?;
    let mut g = plain(in_f, out_f, rows, elem);
    g.trans_b = true;
    (g.a, g.lda) = (x.ptr(), in_f as u64);
    (g.b, g.ldb) = (dy.ptr(), out_f as u64);
    (g.d, g.ldd) = (dw.ptr(), in_f as u64);
    g.beta = if accumulate { 1.0 } else { 0.0 };
    g.d_type = dw.elem();
    if let Some(db) = dbias {
        same_float_type(op, &[dw, db])?;
        check_len(op, "dbias", db, out_f)?;
        g.epilogue = Epilogue::BGradB;
        g.bias = db.ptr();
    }
    // SAFETY: lengths checked above.
    unsafe { dy.device().gemm(&g) }
}

/// Shape of a row-major batched product c (batch, m, n) = op(a) · op(b).
#[derive(Clone, Copy, Debug)]
pub struct Batched {
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// a is stored (k, m) instead of (m, k).
    pub trans_a: bool,
    /// b is stored (n, k) instead of (k, n).
    pub trans_b: bool,
    pub alpha: f32,
    pub beta: f32,
}

// c (batch, m, n) = alpha · op(a) (batch, m, k) · op(b) (batch, k, n) + beta · c, row-major.
// Column-major: cᵀ (n × m) = op(b)ᵀ · op(a)ᵀ, so b is cuBLASLt's A and a its B.
pub fn batched_matmul(a: &DeviceBuffer, b: &DeviceBuffer, c: &DeviceBuffer, s: Batched) -> Result<()> {
    let op = "batched_matmul (cuBLASLt)";
    let elem = same_float_type(op, &[a, b, c])?;
    check_len(op, "a", a, s.batch * s.m * s.k)?;
    check_len(op, "b", b, s.batch * s.k * s.n)?;
    check_len(op, "c", c, s.batch * s.m * s.n)?;
    let mut g = plain(s.n, s.m, s.k, elem);
    g.batch = s.batch as u32;
    g.trans_a = s.trans_b;
    g.a = b.ptr();
    g.lda = if s.trans_b { s.k } else { s.n } as u64;
    g.stride_a = (s.k * s.n) as u64;
    g.trans_b = s.trans_a;
    g.b = a.ptr();
    g.ldb = if s.trans_a { s.m } else { s.k } as u64;
    g.stride_b = (s.m * s.k) as u64;
    (g.d, g.ldd, g.stride_d) = (c.ptr(), s.n as u64, (s.m * s.n) as u64);
    (g.alpha, g.beta) = (s.alpha, s.beta);
    // SAFETY: lengths checked above.
    unsafe { a.device().gemm(&g) }
}

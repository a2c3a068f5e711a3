//! Central-difference gradient checks in f64 (DESIGN.md, "Tolerances"), as
//! library code so that `berth check` can run them. tests/gradcheck.rs holds
//! the longer versions with their extra assertions; this module is the
//! summary a user sees: one row per op case and one per tiny whole model.
//!
//! The objective of a check is Σ w·out with fixed random weights w, so every
//! output element matters. The tape gets w as the upstream gradient
//! (`backward_with(out, w)`), and the same Σ w·out is differenced
//! numerically, entry by entry, with a step of 1e-6·max(1, |x|).
//!
//! The whole-model case reaches up into `model` (an arrow against DESIGN.md's
//! layering, tolerated because this module is a test harness, not an op).

use crate::autograd::attention::{
    attention, masked_softmax, merge_heads, packed_attention, packed_attention_in, packed_relative_attention, packed_windowed_attention,
    relative_attention, split_heads, windowed_attention,
};
use crate::autograd::basic::{DropoutKey, add, dropout, dropout_rows, first_token, geglu, gelu, mean_pool, relu, reshape, scale, tanh};
use crate::autograd::embedding::{embedding, embeddings_ln};
use crate::autograd::linear::{batched_matmul_op, linear};
use crate::autograd::loss::{
    IGNORE_INDEX, bce_with_logits, bce_with_logits_weighted, cross_entropy, focal_cross_entropy, mse, sigmoid_focal,
};
use crate::autograd::norm::layer_norm;
use crate::autograd::rotary::rotary;
use crate::autograd::rows::{gather_rows, scatter_rows};
use crate::autograd::{Tape, Var};
use crate::backend::{AttentionDropout, PackedAttentionMode, PackedDropout};
use crate::data::Batch;
use crate::error::{Error, Result};
use crate::model::params::random_parameters;
use crate::model::{BertClassifier, BertConfig, ForwardMode, HeadKind, Labels, ProblemType};
use crate::rng::{self, SeqRng};
use crate::tensor::{DType, Tensor};

/// DESIGN.md: tape gradients within 1e-6 relative of central differences.
pub const TOLERANCE: f64 = 1e-6;
/// The central-difference step, relative to max(1, |x|).
pub const REL_STEP: f64 = 1e-6;

/// One line of the gradient-check table.
#[derive(Clone, Debug)]
pub struct GradcheckRow {
    pub op: String,
    pub shapes: String,
    /// ‖tape − numeric‖ / max(‖numeric‖, floor), worst over the leaves.
    pub rel_err: f64,
    pub tolerance: f64,
    pub pass: bool,
    pub note: String,
}

impl GradcheckRow {
    fn failed(op: &str, shapes: &str, note: String) -> GradcheckRow {
        GradcheckRow { op: op.into(), shapes: shapes.into(), rel_err: f64::INFINITY, tolerance: TOLERANCE, pass: false, note }
    }
}

/// Which entries of each leaf are perturbed.
#[derive(Clone, Copy, Debug)]
pub enum Entries {
    All,
    /// Up to `per_leaf` entries: a third with the largest tape gradient (so
    /// rarely touched rows such as embeddings count), the rest at random.
    Sample {
        per_leaf: usize,
    },
}

/// One leaf compared with central differences.
#[derive(Clone, Debug)]
pub struct LeafCheck {
    pub rel_err: f64,
    /// ‖numeric‖ over the checked entries.
    pub numeric_norm: f64,
    /// The smallest ‖numeric‖ central differences can resolve (see [`noise_floor`]).
    pub floor: f64,
}

impl LeafCheck {
    /// Whether the gradient is large enough for a relative comparison.
    pub fn resolved(&self) -> bool {
        self.numeric_norm > self.floor
    }
}

/// The noise floor of central differences, below which ‖numeric‖ means nothing.
///
/// Besides its O(h²) truncation error, (F(x+h) − F(x−h)) / 2h carries the
/// rounding error of the two evaluations of F, about ε·|F|/h per entry. A
/// gradient that is exactly zero (the key bias of attention: a bias added to
/// every key cannot change a softmax over keys) then compares tape noise
/// (~1e-17) with difference noise (~1e-10), and ‖a−b‖/‖b‖ ≈ 1 says nothing.
/// So ‖b‖ is floored at what central differences resolve to TOLERANCE with a
/// margin of 10 over that noise, over k entries: 10·ε·max(|F|, 1)/h·√k / TOL.
/// Below it the check is absolute at TOL·floor, still far tighter than any
/// backward bug.
pub fn noise_floor(objective: f64, entries: usize) -> f64 {
    const MARGIN: f64 = 10.0;
    MARGIN * f64::EPSILON * objective.abs().max(1.0) / REL_STEP * (entries as f64).sqrt() / TOLERANCE
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

fn dot(a: &Tensor, b: &Tensor) -> f64 {
    a.to_f64_vec().iter().zip(b.to_f64_vec()).map(|(x, y)| x * y).sum()
}

/// Standard normal draws, fixed by `seed` (non-zero with probability one).
pub fn random_tensor(seed: u64, shape: &[usize]) -> Tensor {
    let values: Vec<f64> = (0..shape.iter().product::<usize>() as u64).map(|i| rng::normal(seed, 0x6763_6865_636b, i)).collect();
    Tensor::from_vec(values, shape).expect("the values match the shape")
}

/// The entries of one leaf to perturb (see [`Entries::Sample`]).
fn pick_entries(draw: &mut SeqRng, analytic: &[f64], entries: Entries) -> Vec<usize> {
    let n = analytic.len();
    let per_leaf = match entries {
        Entries::Sample { per_leaf } if per_leaf < n => per_leaf,
        _ => return (0..n).collect(),
    };
    let mut by_size: Vec<usize> = (0..n).collect();
    by_size.sort_by(|&a, &b| analytic[b].abs().total_cmp(&analytic[a].abs()));
    let mut picked = by_size[..per_leaf / 3].to_vec();
    while picked.len() < per_leaf {
        let j = draw.below(n as u64) as usize;
        if !picked.contains(&j) {
            picked.push(j);
        }
    }
    picked
}

/// Compares the tape's gradient of every leaf with central differences of
/// Σ w·out, w drawn from `seed`. `build` puts `values` on the tape as leaves,
/// records the computation, and returns its output and the leaf of each
/// value, in order. It runs once on a recording tape, then twice per checked
/// entry on no_grad tapes.
pub fn check_leaves<F>(values: &[Tensor], seed: u64, entries: Entries, build: F) -> Result<Vec<LeafCheck>>
where
    F: Fn(&mut Tape, &[Tensor]) -> Result<(Var, Vec<Var>)>,
{
    let mut tape = Tape::new();
    let (out, leaves) = build(&mut tape, values)?;
    if leaves.len() != values.len() {
        return Err(Error::InvalidArgument(format!("gradcheck: {} leaves for {} values", leaves.len(), values.len())));
    }
    let w = random_tensor(seed ^ 0x5eed, tape.value(out).shape());
    let base = dot(tape.value(out), &w);
    let grads = tape.backward_with(out, w.clone())?;
    let objective = |xs: &[Tensor]| -> Result<f64> {
        let mut tape = Tape::no_grad();
        let (out, _) = build(&mut tape, xs)?;
        Ok(dot(tape.value(out), &w))
    };

    let mut draw = SeqRng::new(seed);
    let mut xs = values.to_vec();
    let mut checks = Vec::with_capacity(values.len());
    for (i, leaf) in leaves.iter().enumerate() {
        let missing = || Error::InvalidArgument(format!("gradcheck: leaf {i} got no gradient"));
        let analytic_all = grads.get(*leaf).ok_or_else(missing)?.to_f64_vec();
        if analytic_all.len() != values[i].numel() {
            return Err(Error::InvalidArgument(format!("gradcheck: gradient of leaf {i} has the wrong size")));
        }
        let picked = pick_entries(&mut draw, &analytic_all, entries);
        let (mut analytic, mut numeric) = (Vec::with_capacity(picked.len()), Vec::with_capacity(picked.len()));
        for &j in &picked {
            let x = values[i].data::<f64>()?[j];
            let h = REL_STEP * x.abs().max(1.0);
            xs[i].data_mut::<f64>()?[j] = x + h;
            let plus = objective(&xs)?;
            xs[i].data_mut::<f64>()?[j] = x - h;
            let minus = objective(&xs)?;
            xs[i].data_mut::<f64>()?[j] = x;
            analytic.push(analytic_all[j]);
            numeric.push((plus - minus) / (2.0 * h));
        }
        let diff: Vec<f64> = analytic.iter().zip(&numeric).map(|(a, b)| a - b).collect();
        let (numeric_norm, floor) = (norm(&numeric), noise_floor(base, picked.len()));
        checks.push(LeafCheck { rel_err: norm(&diff) / numeric_norm.max(floor), numeric_norm, floor });
    }
    Ok(checks)
}

/// One row from the leaves' checks: the worst error decides. A check whose
/// gradients are all zero would prove nothing, so it fails.
fn summarize(op: &str, shapes: &str, names: &[String], checks: Result<Vec<LeafCheck>>) -> GradcheckRow {
    let checks = match checks {
        Ok(c) => c,
        Err(e) => return GradcheckRow::failed(op, shapes, e.to_string()),
    };
    let (worst, rel_err) = checks.iter().enumerate().fold((0, 0.0), |acc, (i, c)| if c.rel_err > acc.1 { (i, c.rel_err) } else { acc });
    let total: f64 = checks.iter().map(|c| c.numeric_norm).sum();
    let mut row = GradcheckRow {
        op: op.into(),
        shapes: shapes.into(),
        rel_err,
        tolerance: TOLERANCE,
        pass: rel_err <= TOLERANCE,
        note: String::new(),
    };
    if !row.pass {
        row.note = format!("worst at {}: {rel_err:.3e}", names[worst]);
    } else if total <= 1e-3 {
        row.pass = false;
        row.note = "every gradient is zero, so the check is vacuous".into();
    }
    row
}

/// "2x3, 4" for inputs of shapes (2, 3) and (4).
fn shapes_of(inputs: &[Tensor]) -> String {
    let dims = |t: &Tensor| t.shape().iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x");
    inputs.iter().map(dims).collect::<Vec<_>>().join(", ")
}

/// Checks every entry of every input of `f`, which records an op (or a few)
/// on the tape from the inputs' leaves.
pub fn check_op(op: &str, seed: u64, inputs: &[Tensor], f: impl Fn(&mut Tape, &[Var]) -> Result<Var>) -> GradcheckRow {
    let build = |tape: &mut Tape, xs: &[Tensor]| {
        let vars: Vec<Var> = xs.iter().map(|t| tape.leaf(t.clone(), true)).collect();
        Ok((f(tape, &vars)?, vars))
    };
    let names: Vec<String> = (0..inputs.len()).map(|i| format!("input {i}")).collect();
    summarize(op, &shapes_of(inputs), &names, check_leaves(inputs, seed, Entries::All, build))
}

// ---------- the op cases ----------

fn elementwise() -> Result<Vec<GradcheckRow>> {
    // GELU and tanh near zero and far into their tails, besides random values.
    let mut x = random_tensor(6, &[12]).to_f64_vec();
    x.extend([1e-8, -1e-3, 0.3, -0.3, 4.0, -4.0, 8.0, -30.0]);
    let x = Tensor::from_vec(x, &[20])?;
    Ok(vec![
        check_op("add", 10, &[random_tensor(1, &[3, 4]), random_tensor(2, &[3, 4])], |t, v| add(t, v[0], v[1])),
        check_op("add(x, x)", 11, &[random_tensor(3, &[5])], |t, v| add(t, v[0], v[0])),
        check_op("scale", 12, &[random_tensor(4, &[2, 3, 4])], |t, v| scale(t, v[0], -0.37)),
        check_op("gelu", 14, std::slice::from_ref(&x), |t, v| gelu(t, v[0])),
        check_op("tanh", 15, std::slice::from_ref(&x), |t, v| tanh(t, v[0])),
        // Away from 0, where ReLU has no derivative for differences to find.
        check_op(
            "relu",
            16,
            &[Tensor::from_vec(x.to_f64_vec().iter().map(|v| if v.abs() < 1e-2 { v + 0.5 } else { *v }).collect(), &[20])?],
            |t, v| relu(t, v[0]),
        ),
    ])
}

/// Views and permutations, each followed by tanh so a scrambled backward shows.
fn views() -> Result<Vec<GradcheckRow>> {
    Ok(vec![
        check_op("reshape", 13, &[random_tensor(5, &[2, 3, 4])], |t, v| {
            let y = reshape(t, v[0], &[6, 4])?;
            tanh(t, y)
        }),
        check_op("first_token", 16, &[random_tensor(8, &[3, 4, 5])], |t, v| first_token(t, v[0])),
        // Mean pooling over real tokens: a full row, a padded one, one without any.
        check_op("mean_pool", 17, &[random_tensor(17, &[3, 4, 5])], |t, v| {
            let mask: std::sync::Arc<[u8]> = std::sync::Arc::from(vec![1, 1, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0]);
            let y = mean_pool(t, v[0], mask)?;
            tanh(t, y)
        }),
        check_op("packed_attention", 49, &[random_tensor(49, &[7, 6]), random_tensor(50, &[7, 6]), random_tensor(51, &[7, 6])], |t, v| {
            packed_attention(t, v[0], v[1], v[2], std::sync::Arc::from(vec![4, 0, 3]), 2, 0.7)
        }),
        check_op("gather_rows", 47, &[random_tensor(47, &[2, 4, 3])], |t, v| {
            let y = gather_rows(t, v[0], std::sync::Arc::from(vec![0, 1, 2, 4, 5]))?;
            tanh(t, y)
        }),
        check_op("scatter_rows", 48, &[random_tensor(48, &[5, 3])], |t, v| {
            let y = scatter_rows(t, v[0], std::sync::Arc::from(vec![0, 1, 2, 4, 5]), &[2, 4, 3])?;
            tanh(t, y)
        }),
        check_op("split_heads", 27, &[random_tensor(45, &[2, 3, 6])], |t, v| {
            let y = split_heads(t, v[0], 3)?;
            tanh(t, y)
        }),
        check_op("merge_heads", 28, &[random_tensor(46, &[2, 3, 4, 2])], |t, v| {
            let y = merge_heads(t, v[0])?;
            tanh(t, y)
        }),
    ])
}

fn dropout_case() -> Result<Vec<GradcheckRow>> {
    let key = DropoutKey { seed: 1234, stream: 7 };
    let mut row = check_op("dropout", 17, &[random_tensor(9, &[4, 25])], |t, v| dropout(t, v[0], 0.3, Some(key)));
    row.shapes.push_str(" p=0.3");
    // Packed rows 0, 1, 5, 6, 7 of a padded layout of 8 rows.
    let rows: std::sync::Arc<[usize]> = std::sync::Arc::from(vec![0, 1, 5, 6, 7]);
    let mut packed =
        check_op("dropout rows", 72, &[random_tensor(72, &[5, 25])], |t, v| dropout_rows(t, v[0], 0.3, Some(key), Some(&rows)));
    packed.shapes.push_str(" p=0.3, rows 0,1,5,6,7");
    Ok(vec![row, packed])
}

fn embedding_case() -> Result<Vec<GradcheckRow>> {
    let ids = [3u32, 1, 3, 0, 3, 1]; // repeated ids accumulate; row 2 is never read
    let mut row = check_op("embedding", 18, &[random_tensor(10, &[5, 4])], |t, v| embedding(t, v[0], &ids, &[2, 3], "ids"));
    row.shapes.push_str(" ids 2x3");
    Ok(vec![row])
}

fn linear_cases() -> Result<Vec<GradcheckRow>> {
    let (x, w, b) = (random_tensor(11, &[2, 3, 5]), random_tensor(12, &[4, 5]), random_tensor(13, &[4]));
    Ok(vec![
        check_op("linear+bias", 19, &[x.clone(), w.clone(), b], |t, v| linear(t, v[0], v[1], Some(v[2]))),
        check_op("linear", 20, &[x, w], |t, v| linear(t, v[0], v[1], None)),
    ])
}

/// a' (2, 3, M=4, K=5) · b' (2, 3, K=5, N=3), with each operand stored transposed or not.
fn batched_matmul_cases() -> Result<Vec<GradcheckRow>> {
    let (m, k, n) = (4, 5, 3);
    let mut rows = Vec::new();
    for (i, (ta, tb)) in [(false, false), (false, true), (true, false), (true, true)].into_iter().enumerate() {
        let a_shape = if ta { [2, 3, k, m] } else { [2, 3, m, k] };
        let b_shape = if tb { [2, 3, n, k] } else { [2, 3, k, n] };
        let inputs = [random_tensor(20 + i as u64, &a_shape), random_tensor(30 + i as u64, &b_shape)];
        let mut row = check_op("batched_matmul", 21 + i as u64, &inputs, |t, v| batched_matmul_op(t, v[0], v[1], ta, tb));
        row.shapes.push_str(&format!(" ta={} tb={}", u8::from(ta), u8::from(tb)));
        rows.push(row);
    }
    Ok(rows)
}

fn layer_norm_case() -> Result<Vec<GradcheckRow>> {
    let w = random_tensor(43, &[6]).to_f64_vec().iter().map(|v| 1.0 + 0.5 * v).collect();
    let inputs = [random_tensor(42, &[2, 3, 6]), Tensor::from_vec(w, &[6])?, random_tensor(44, &[6])];
    Ok(vec![check_op("layer_norm", 26, &inputs, |t, v| layer_norm(t, v[0], v[1], v[2], 1e-12))])
}

/// scores (B=3, H=2, Tq=3, Tk=4): batch 1 pads two keys, batch 2 masks every key.
fn masked_softmax_case() -> Result<Vec<GradcheckRow>> {
    let mask = [1u8, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0];
    let mut row = check_op("masked_softmax", 29, &[random_tensor(47, &[3, 2, 3, 4])], |t, v| masked_softmax(t, v[0], &mask));
    row.shapes.push_str(" padded, all-masked");
    Ok(vec![row])
}

/// The ops the encoder runs on every backend: attention (B=2, T=4, two
/// heads of 3; batch 1 pads three keys), with and without dropout, and the
/// embeddings with their LayerNorm (repeated ids).
fn fused_cases() -> Result<Vec<GradcheckRow>> {
    let mask = [1u8, 1, 1, 1, 1, 0, 0, 0];
    let qkv = [random_tensor(52, &[2, 4, 6]), random_tensor(53, &[2, 4, 6]), random_tensor(54, &[2, 4, 6])];
    let key = DropoutKey { seed: 5, stream: 2 };
    let mut with_dropout =
        check_op("attention dropout", 40, &qkv, |t, v| attention(t, (v[0], v[1], v[2]), &mask, 2, 0.6, Some((0.3, key))));
    with_dropout.shapes.push_str(" padded");
    let mut plain = check_op("attention", 39, &qkv, |t, v| attention(t, (v[0], v[1], v[2]), &mask, 2, 0.6, None));
    plain.shapes.push_str(" padded");
    let (ids, type_ids) = ([3u32, 1, 3, 0, 3, 1], [1u32, 0, 0, 1, 1, 0]);
    let ln_weight = random_tensor(55, &[4]).to_f64_vec().iter().map(|v| 1.0 + 0.5 * v).collect();
    let tables = [
        random_tensor(56, &[5, 4]),
        random_tensor(57, &[2, 4]),
        random_tensor(58, &[3, 4]),
        Tensor::from_vec(ln_weight, &[4])?,
        random_tensor(59, &[4]),
    ];
    let embeddings =
        check_op("embeddings_ln", 41, &tables, |t, v| embeddings_ln(t, v[0], v[1], v[2], (v[3], v[4]), &ids, &type_ids, (2, 3), 1e-12));
    Ok(vec![plain, with_dropout, embeddings])
}

/// ModernBERT's ops: rotary on (B=2, T=3, two heads of 4) at ragged
/// positions; GeGLU into both tails; attention with a window of half-width 1
/// (B=2, T=5, two heads of 3; batch 1 pads two keys, so its padding queries
/// see no real key in their window), padded with and without dropout, and
/// packed over sequences of 5, 0 and 3.
fn modern_cases() -> Result<Vec<GradcheckRow>> {
    let positions: std::sync::Arc<[usize]> = std::sync::Arc::from(vec![0, 1, 2, 0, 4, 9]);
    let inv_freq: std::sync::Arc<[f64]> = std::sync::Arc::from(vec![1.0, 0.3]);
    let mut rotary_row = check_op("rotary", 62, &[random_tensor(62, &[2, 3, 8])], |t, v| {
        let y = rotary(t, v[0], positions.clone(), 2, inv_freq.clone())?;
        tanh(t, y)
    });
    rotary_row.shapes.push_str(" H=2 D=4");
    let mut x = random_tensor(63, &[16]).to_f64_vec();
    x.extend([1e-8, -1e-3, 4.0, -4.0, 0.5, -30.0, 2.0, 3.0]);
    let geglu_row = check_op("geglu", 63, &[Tensor::from_vec(x, &[3, 8])?], |t, v| geglu(t, v[0]));

    let mask = [1u8, 1, 1, 1, 1, 1, 1, 1, 0, 0];
    let qkv = [random_tensor(64, &[2, 5, 6]), random_tensor(65, &[2, 5, 6]), random_tensor(66, &[2, 5, 6])];
    let key = DropoutKey { seed: 6, stream: 3 };
    let mut windowed =
        check_op("attention window", 64, &qkv, |t, v| windowed_attention(t, (v[0], v[1], v[2]), &mask, 2, 0.6, Some(1), None));
    windowed.shapes.push_str(" padded w=1");
    let mut windowed_dropout = check_op("attention window dropout", 65, &qkv, |t, v| {
        windowed_attention(t, (v[0], v[1], v[2]), &mask, 2, 0.6, Some(1), Some((0.3, key)))
    });
    windowed_dropout.shapes.push_str(" padded w=1");
    let packed_inputs = [random_tensor(67, &[8, 6]), random_tensor(68, &[8, 6]), random_tensor(69, &[8, 6])];
    let mut packed = check_op("packed_attention window", 66, &packed_inputs, |t, v| {
        packed_windowed_attention(t, (v[0], v[1], v[2]), std::sync::Arc::from(vec![5, 0, 3]), 2, 0.7, Some(1))
    });
    packed.shapes.push_str(" w=1");
    let packed_dropout = PackedDropout { dropout: AttentionDropout { p: 0.3, key }, padded_len: 5 };
    let mut packed_dropped = check_op("packed_attention dropout", 73, &packed_inputs, |t, v| {
        let mode = PackedAttentionMode { window: None, dropout: Some(packed_dropout) };
        packed_attention_in(t, (v[0], v[1], v[2]), std::sync::Arc::from(vec![5, 0, 3]), 2, 0.7, mode)
    });
    packed_dropped.shapes.push_str(" p=0.3, T=5");

    // DeBERTa: q, k, v and both position tables; 4 buckets over distances up
    // to 4, so distances 3 and 4 share a row (the log buckets cut).
    let settings = BertConfig::synthetic_deberta(50, 6, 1, 2, 8, 4, 0.0).deberta.expect("a DeBERTa config");
    let rows = settings.distance_rows(5);
    let r = settings.relative_rows();
    let inputs = [qkv[0].clone(), qkv[1].clone(), qkv[2].clone(), random_tensor(70, &[r, 6]), random_tensor(71, &[r, 6])];
    let rows_ref = &rows;
    let relative = |p: Option<(f64, DropoutKey)>| {
        move |t: &mut Tape, v: &[Var]| relative_attention(t, (v[0], v[1], v[2]), (v[3], v[4]), &mask, rows_ref, 2, 0.45, p)
    };
    let mut relative_row = check_op("relative_attention", 67, &inputs, relative(None));
    relative_row.shapes.push_str(&format!(" R={r}, rows {rows:?}"));
    let mut relative_dropout = check_op("relative_attention dropout", 68, &inputs, relative(Some((0.3, key))));
    relative_dropout.shapes.push_str(&format!(" R={r}"));
    let packed_inputs =
        [packed_inputs[0].clone(), packed_inputs[1].clone(), packed_inputs[2].clone(), inputs[3].clone(), inputs[4].clone()];
    let rows_arc: std::sync::Arc<[u32]> = rows.clone().into();
    let mut packed_relative = check_op("packed_relative_attention", 69, &packed_inputs, |t, v| {
        packed_relative_attention(t, (v[0], v[1], v[2]), (v[3], v[4]), std::sync::Arc::from(vec![5, 0, 3]), rows_arc.clone(), 2, 0.45, None)
    });
    packed_relative.shapes.push_str(&format!(" R={r}"));
    let mut packed_relative_dropped = check_op("packed_relative_attention dropout", 74, &packed_inputs, |t, v| {
        let lens = std::sync::Arc::from(vec![5, 0, 3]);
        packed_relative_attention(t, (v[0], v[1], v[2]), (v[3], v[4]), lens, rows_arc.clone(), 2, 0.45, Some(packed_dropout))
    });
    packed_relative_dropped.shapes.push_str(&format!(" R={r}, p=0.3, T=5"));
    Ok(vec![
        rotary_row,
        geglu_row,
        windowed,
        windowed_dropout,
        packed,
        packed_dropped,
        relative_row,
        relative_dropout,
        packed_relative,
        packed_relative_dropped,
    ])
}

fn loss_cases() -> Result<Vec<GradcheckRow>> {
    let logits = random_tensor(49, &[5, 4]);
    let targets = [2i64, IGNORE_INDEX, 0, 3, IGNORE_INDEX];
    let weights = [0.5, 2.0, 1.0, 3.0];
    let mut bce_logits = random_tensor(50, &[9]).to_f64_vec();
    bce_logits.extend([25.0, -25.0, 0.0]);
    let bce_targets = [1.0, 0.0, 0.0, 1.0, 0.3, 1.0, 0.0, 0.7, 1.0, 0.0, 1.0, 0.5];
    let mse_targets = [0.5, -1.0, 2.0, 0.0];
    Ok(vec![
        check_op("cross_entropy", 30, std::slice::from_ref(&logits), |t, v| cross_entropy(t, v[0], &targets, None)),
        check_op("cross_entropy weighted", 31, std::slice::from_ref(&logits), |t, v| cross_entropy(t, v[0], &targets, Some(&weights))),
        check_op("focal_cross_entropy γ2", 34, std::slice::from_ref(&logits), |t, v| focal_cross_entropy(t, v[0], &targets, 2.0, None)),
        check_op("focal_cross_entropy γ0.5 alpha", 35, &[logits], |t, v| focal_cross_entropy(t, v[0], &targets, 0.5, Some(&weights))),
        check_op("bce_with_logits", 32, &[Tensor::from_vec(bce_logits.clone(), &[3, 4])?], |t, v| bce_with_logits(t, v[0], &bce_targets)),
        check_op("bce_with_logits pos_weight", 36, &[Tensor::from_vec(bce_logits.clone(), &[3, 4])?], |t, v| {
            bce_with_logits_weighted(t, v[0], &bce_targets, &weights)
        }),
        check_op("sigmoid_focal γ2 α0.25", 37, &[Tensor::from_vec(bce_logits.clone(), &[3, 4])?], |t, v| {
            sigmoid_focal(t, v[0], &bce_targets, 2.0, Some(0.25), None)
        }),
        check_op("sigmoid_focal γ1 pos_weight", 38, &[Tensor::from_vec(bce_logits, &[3, 4])?], |t, v| {
            sigmoid_focal(t, v[0], &bce_targets, 1.0, None, Some(&weights))
        }),
        check_op("mse", 33, &[random_tensor(51, &[4, 1])], |t, v| mse(t, v[0], &mse_targets)),
    ])
}

// ---------- a whole tiny BERT ----------

const SEQ: usize = 5;
const LENGTHS: [usize; 4] = [5, 3, 1, 4];
/// Parameter entries checked per tensor of the whole model.
const PER_TENSOR: usize = 12;

/// A right-padded batch with ragged lengths, a one-token sequence, and a
/// second segment (token type 1) in the longest row.
fn tiny_batch() -> Batch {
    let mut draw = SeqRng::new(99);
    let mut batch = Batch { batch_size: LENGTHS.len(), seq_len: SEQ, ..Batch::default() };
    for &len in &LENGTHS {
        for t in 0..SEQ {
            let id = if t == 0 {
                2
            } else if t < len {
                3 + draw.below(47) as u32
            } else {
                0
            };
            batch.input_ids.push(id);
            batch.token_type_ids.push(u32::from(len == SEQ && t >= 3));
            batch.attention_mask.push(u8::from(t < len));
        }
    }
    batch
}

/// A 2-layer BERT of width 8 in f64, with weights large enough (std 0.4) that
/// attention is far from uniform and GELU far from linear, and with random
/// LayerNorm weights and biases (random_parameters gives 1 and 0).
fn tiny_model(head: HeadKind, problem_type: Option<ProblemType>, num_labels: usize) -> Result<BertClassifier> {
    let mut config = BertConfig::synthetic(50, 8, 2, 2, 16);
    config.max_position_embeddings = 8;
    tiny_model_of(config, head, problem_type, num_labels)
}

/// The tiny model as ModernBERT: pre-norm, rotary, GeGLU, no biases but the
/// classifier's, layer 1 windowed to half-width 1, mean pooling, and dropout
/// 0.1 in each of its five places.
fn tiny_modernbert(head: HeadKind, problem_type: Option<ProblemType>, num_labels: usize) -> Result<BertClassifier> {
    let config = BertConfig::synthetic_modernbert(50, 8, 2, 2, 16, 2, 0.1);
    tiny_model_of(config, head, problem_type, num_labels)
}

/// The tiny model as DeBERTa-v3: relative attention with 4 buckets (at
/// T = 5 distances 3 and 4 share one), normed relative embeddings, the
/// ContextPooler head, and dropout 0.1 in each of its places.
fn tiny_deberta(head: HeadKind, problem_type: Option<ProblemType>, num_labels: usize) -> Result<BertClassifier> {
    let config = BertConfig::synthetic_deberta(50, 8, 2, 2, 16, 4, 0.1);
    tiny_model_of(config, head, problem_type, num_labels)
}

fn tiny_model_of(mut config: BertConfig, head: HeadKind, problem_type: Option<ProblemType>, num_labels: usize) -> Result<BertClassifier> {
    config.initializer_range = 0.4;
    let mut params = random_parameters(&config, head, num_labels, 5, DType::F64);
    let names = params.names().to_vec();
    for (i, (name, t)) in names.iter().zip(params.tensors_mut()).enumerate() {
        let noise = random_tensor(1000 + i as u64, &[t.numel()]).to_f64_vec();
        let values = t.data_mut::<f64>()?;
        if name.ends_with("LayerNorm.weight") {
            values.iter_mut().zip(&noise).for_each(|(v, n)| *v = 1.0 + 0.4 * n);
        } else if name.ends_with(".bias") {
            values.iter_mut().zip(&noise).for_each(|(v, n)| *v = 0.3 * n);
        }
    }
    let labels = (0..num_labels).map(|i| format!("L{i}")).collect();
    BertClassifier::new(config, head, problem_type, labels, params)
}

/// The loss gradient of every parameter of a tiny BERT with dropout on,
/// PER_TENSOR entries of each. Only the attention key biases may fall below
/// the noise floor: their gradient is zero by construction.
fn bert_row(op: &str, model: &BertClassifier, labels: &Labels) -> GradcheckRow {
    let batch = tiny_batch();
    let mode = ForwardMode::train(77);
    let build = |tape: &mut Tape, xs: &[Tensor]| {
        let mut m = model.clone();
        m.params.tensors_mut().clone_from_slice(xs);
        let out = m.forward(tape, &batch, mode)?;
        Ok((m.loss(tape, out.logits, labels, None)?, out.params))
    };
    let names = model.params.names();
    let tensors = model.params.tensors();
    let shapes = format!("B={} T={SEQ} H=8 L=2, {} tensors", LENGTHS.len(), tensors.len());
    let checks = check_leaves(tensors, 2024, Entries::Sample { per_leaf: PER_TENSOR }, build);
    let unresolved: Vec<&String> = match &checks {
        Ok(c) => names.iter().zip(c).filter(|(_, c)| !c.resolved()).map(|(n, _)| n).collect(),
        Err(_) => Vec::new(),
    };
    let mut row = summarize(op, &shapes, names, checks);
    if let Some(bad) = unresolved.iter().find(|n| !n.ends_with("attention.self.key.bias")) {
        row.pass = false;
        row.note = format!("{bad}: gradient too small to check");
    } else if row.pass {
        row.note = format!("dropout on; ≤{PER_TENSOR} entries per tensor; {} key biases zero by construction", unresolved.len());
    }
    row
}

fn bert_cases() -> Result<Vec<GradcheckRow>> {
    let seq = HeadKind::SequenceClassification;
    let single = tiny_model(seq, Some(ProblemType::SingleLabel), 3)?;
    let multi = tiny_model(seq, Some(ProblemType::MultiLabel), 2)?;
    let regression = tiny_model(seq, Some(ProblemType::Regression), 1)?;
    let token = tiny_model(HeadKind::TokenClassification, None, 3)?;
    let multi_targets = vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0];
    // Padding and every third real position are not scored.
    let mut tags = Vec::new();
    for &len in &LENGTHS {
        tags.extend((0..SEQ).map(|t| if t >= len || t % 3 == 2 { IGNORE_INDEX } else { ((t * 7 + len) % 3) as i64 }));
    }
    Ok(vec![
        bert_row("bert single-label", &single, &Labels::SingleLabel(vec![0, 2, 1, 2])),
        bert_row("bert multi-label", &multi, &Labels::MultiLabel(multi_targets)),
        bert_row("bert regression", &regression, &Labels::Regression(vec![0.7, -1.2, 2.5, 0.1])),
        bert_row("bert token", &token, &Labels::Token(tags.clone())),
        bert_row(
            "modernbert single-label",
            &tiny_modernbert(seq, Some(ProblemType::SingleLabel), 3)?,
            &Labels::SingleLabel(vec![0, 2, 1, 2]),
        ),
        bert_row("modernbert token", &tiny_modernbert(HeadKind::TokenClassification, None, 3)?, &Labels::Token(tags.clone())),
        bert_row("deberta single-label", &tiny_deberta(seq, Some(ProblemType::SingleLabel), 3)?, &Labels::SingleLabel(vec![0, 2, 1, 2])),
        bert_row("deberta token", &tiny_deberta(HeadKind::TokenClassification, None, 3)?, &Labels::Token(tags)),
    ])
}

// ---------- running them ----------

type Case = fn() -> Result<Vec<GradcheckRow>>;

/// Every case, by family name.
fn all_cases() -> Vec<(&'static str, Case)> {
    vec![
        ("elementwise", elementwise),
        ("views", views),
        ("dropout", dropout_case),
        ("embedding", embedding_case),
        ("linear", linear_cases),
        ("batched_matmul", batched_matmul_cases),
        ("layer_norm", layer_norm_case),
        ("masked_softmax", masked_softmax_case),
        ("fused", fused_cases),
        ("modern", modern_cases),
        ("loss", loss_cases),
        ("bert", bert_cases),
    ]
}

/// The cases whose family `select` accepts, in order.
pub fn run_gradchecks(select: impl Fn(&str) -> bool) -> Vec<GradcheckRow> {
    let mut rows = Vec::new();
    for (family, case) in all_cases() {
        if !select(family) {
            continue;
        }
        match case() {
            Ok(r) => rows.extend(r),
            Err(e) => rows.push(GradcheckRow::failed(family, "-", e.to_string())),
        }
    }
    rows
}

/// Every gradient check: each op on small random f64 inputs, then a tiny
/// BERT under each head and problem type.
pub fn run_all_gradchecks() -> Vec<GradcheckRow> {
    run_gradchecks(|_| true)
}

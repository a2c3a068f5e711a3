//! Central-difference gradient checks in f64 (DESIGN.md, "Tolerances").
//!
//! Every op on the tape is checked on its own, then a whole tiny BERT under
//! every head, with dropout off and on. The objective of an op check is
//! Σ w·out with fixed random weights w, so every output element matters; it
//! is fed to the tape as the upstream gradient (`backward_with(out, w)`).

use std::sync::Arc;

use berth::autograd::attention::{
    masked_softmax, merge_heads, packed_attention, packed_windowed_attention, split_heads, windowed_attention,
};
use berth::autograd::basic::{DropoutKey, add, dropout, first_token, gelu, mean_pool, reshape, scale, tanh};
use berth::autograd::embedding::embedding;
use berth::autograd::linear::{batched_matmul_op, linear, matmul_op};
use berth::autograd::loss::{
    IGNORE_INDEX, bce_with_logits, bce_with_logits_weighted, cross_entropy, focal_cross_entropy, mse, sigmoid_focal,
};
use berth::autograd::norm::layer_norm;
use berth::autograd::rows::{gather_rows, scatter_rows};
use berth::autograd::{Tape, Var};
use berth::data::Batch;
use berth::model::params::random_parameters;
use berth::model::{BertClassifier, BertConfig, Family, ForwardMode, HeadKind, Labels, ProblemType};
use berth::rng::{self, SeqRng};
use berth::tensor::{DType, Tensor};

/// DESIGN.md: tape gradients within 1e-6 relative of central differences.
const TOL: f64 = 1e-6;
/// The central-difference step, relative to the magnitude of the entry.
const REL_STEP: f64 = 1e-6;
/// The step for a whole-model gradient too small to resolve at REL_STEP.
const WIDE_REL_STEP: f64 = 1e-4;

// ---------- helpers ----------

fn randn(seed: u64, n: usize) -> Vec<f64> {
    (0..n as u64).map(|i| rng::normal(seed, 0x6772_6164, i)).collect()
}

fn t64(values: Vec<f64>, shape: &[usize]) -> Tensor {
    Tensor::from_vec(values, shape).unwrap()
}

/// A tensor of standard normal draws (non-zero with probability one).
fn randt(seed: u64, shape: &[usize]) -> Tensor {
    t64(randn(seed, shape.iter().product()), shape)
}

fn dot(a: &Tensor, b: &Tensor) -> f64 {
    a.to_f64_vec().iter().zip(b.to_f64_vec()).map(|(x, y)| x * y).sum()
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

fn step(x: f64) -> f64 {
    REL_STEP * x.abs().max(1.0)
}

/// The noise floor of central differences, and why relative errors are floored.
///
/// (F(x+h) − F(x−h)) / 2h carries, besides its O(h²) truncation error, the
/// rounding error of the two evaluations of F: about ε·|F| each (ε = 2⁻⁵²),
/// so about ε·|F|/h ≈ 2e-10·|F| per entry at h = 1e-6 (measured: 1e-10 to
/// 3e-10 on the tiny BERT below). A gradient that is mathematically zero,
/// such as the key bias of attention (a bias added to every key cannot
/// change a softmax over keys), then compares the tape's ~1e-17 with central
/// differences' ~1e-10: noise on both sides, for which ‖a−b‖/‖b‖ ≈ 1 means
/// nothing. So ‖b‖ is floored at the norm central differences can resolve to
/// TOL with a margin of 10 over that noise: 10·ε·S/h·√k / TOL over k entries,
/// with S = max(|F|, 1). That is ≈ 2e-3·S·√k (≈ 5e-3 for 6 entries of the
/// tiny BERT, whose smallest real gradient sampled is ≈ 9e-3; check_model
/// asserts that only the key biases fall below it). Above the floor the check
/// is relative; below it, absolute at TOL·floor ≈ 2e-9·S·√k, still far
/// tighter than any backward bug.
fn floor_for(objective: f64, h: f64, k: usize) -> f64 {
    const MARGIN: f64 = 10.0;
    MARGIN * f64::EPSILON * objective.abs().max(1.0) / h * (k as f64).sqrt() / TOL
}

/// ‖a − b‖ / max(‖b‖, floor).
fn rel_error_floored(got: &[f64], want: &[f64], floor: f64) -> f64 {
    assert_eq!(got.len(), want.len());
    let diff: Vec<f64> = got.iter().zip(want).map(|(a, b)| a - b).collect();
    norm(&diff) / norm(want).max(floor)
}

/// Checks every input of `f` (all differentiable) against central
/// differences of Σ w·f(inputs), element by element. Returns the worst error.
pub(crate) fn check_op(name: &str, seed: u64, inputs: &[Tensor], f: impl Fn(&mut Tape, &[Var]) -> berth::Result<Var>) -> f64 {
    let mut tape = Tape::new();
    let vars: Vec<Var> = inputs.iter().map(|t| tape.leaf(t.clone(), true)).collect();
    let out = f(&mut tape, &vars).unwrap();
    let w = randt(seed ^ 0x5eed, tape.value(out).shape());
    let base = dot(tape.value(out), &w);
    let grads = tape.backward_with(out, w.clone()).unwrap();

    let objective = |xs: &[Tensor]| -> f64 {
        let mut tape = Tape::no_grad();
        let vars: Vec<Var> = xs.iter().map(|t| tape.leaf(t.clone(), false)).collect();
        let out = f(&mut tape, &vars).unwrap();
        dot(tape.value(out), &w)
    };

    let mut worst: f64 = 0.0;
    let mut total_norm = 0.0;
    for (i, input) in inputs.iter().enumerate() {
        let analytic = grads.get(vars[i]).unwrap_or_else(|| panic!("{name}: input {i} got no gradient")).to_f64_vec();
        assert_eq!(analytic.len(), input.numel(), "{name}: gradient {i} has the wrong size");
        let mut numeric = vec![0.0; input.numel()];
        let mut xs = inputs.to_vec();
        let mut max_h: f64 = 0.0;
        for (j, slot) in numeric.iter_mut().enumerate() {
            let x = input.data::<f64>().unwrap()[j];
            let h = step(x);
            max_h = max_h.max(h);
            xs[i].data_mut::<f64>().unwrap()[j] = x + h;
            let plus = objective(&xs);
            xs[i].data_mut::<f64>().unwrap()[j] = x - h;
            let minus = objective(&xs);
            xs[i].data_mut::<f64>().unwrap()[j] = x;
            *slot = (plus - minus) / (2.0 * h);
        }
        let floor = floor_for(base, REL_STEP, numeric.len());
        let e = rel_error_floored(&analytic, &numeric, floor);
        eprintln!("{name}: input {i} {:?}: ‖grad‖ {:.3e}, relative error {e:.2e}", input.shape(), norm(&numeric));
        assert!(e <= TOL, "{name}: input {i}: relative error {e:.3e} > {TOL:e}\n tape    {analytic:?}\n numeric {numeric:?}");
        worst = worst.max(e);
        total_norm += norm(&numeric);
    }
    // A check against an all-zero gradient would prove nothing.
    assert!(total_norm > 1e-3, "{name}: the gradients are all zero, so the check is vacuous");
    worst
}

// ---------- one test per op ----------

#[test]
fn op_add() {
    let (a, b) = (randt(1, &[3, 4]), randt(2, &[3, 4]));
    check_op("add", 10, &[a, b], |t, v| add(t, v[0], v[1]));
}

#[test]
fn op_add_same_input_twice_accumulates() {
    // x + x: both gradient contributions land on one leaf.
    check_op("add(x, x)", 11, &[randt(3, &[5])], |t, v| add(t, v[0], v[0]));
}

#[test]
fn op_scale() {
    check_op("scale", 12, &[randt(4, &[2, 3, 4])], |t, v| scale(t, v[0], -0.37));
}

#[test]
fn op_reshape() {
    // Reshape then a non-linear op, so a scrambled backward reshape would show.
    check_op("reshape", 13, &[randt(5, &[2, 3, 4])], |t, v| {
        let y = reshape(t, v[0], &[6, 4])?;
        tanh(t, y)
    });
}

#[test]
fn op_gelu_near_zero_and_at_large_magnitude() {
    let mut x = randn(6, 12);
    x.extend([1e-8, -1e-8, 1e-3, -1e-3, 0.3, -0.3, 4.0, -4.0, 8.0, -8.0, 30.0, -30.0]);
    let n = x.len();
    check_op("gelu", 14, &[t64(x, &[n])], |t, v| gelu(t, v[0]));
}

#[test]
fn op_tanh() {
    let mut x = randn(7, 12);
    x.extend([1e-6, -2.5, 6.0]);
    let n = x.len();
    check_op("tanh", 15, &[t64(x, &[n])], |t, v| tanh(t, v[0]));
}

#[test]
fn op_first_token() {
    check_op("first_token", 16, &[randt(8, &[3, 4, 5])], |t, v| first_token(t, v[0]));
}

/// Mean pooling: a full row, a padded row (its padding gets zero gradient)
/// and a row without real tokens (pools to 0, no gradient).
#[test]
fn op_mean_pool() {
    check_op("mean_pool", 17, &[randt(17, &[3, 4, 5])], |t, v| {
        let mask: std::sync::Arc<[u8]> = std::sync::Arc::from(vec![1, 1, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0]);
        let y = mean_pool(t, v[0], mask)?;
        tanh(t, y)
    });
}

#[test]
fn op_dropout_is_linear_given_the_mask() {
    let key = DropoutKey { seed: 1234, stream: 7 };
    let p = 0.3;
    let x = randt(9, &[4, 25]);
    check_op("dropout", 17, std::slice::from_ref(&x), |t, v| dropout(t, v[0], p, Some(key)));

    // The mask itself: every element is either dropped or scaled by 1/(1−p),
    // a fair share is dropped, and the same key gives the same mask.
    let run = |key: DropoutKey| {
        let mut tape = Tape::no_grad();
        let v = tape.leaf(x.clone(), false);
        let y = dropout(&mut tape, v, p, Some(key)).unwrap();
        tape.value(y).to_f64_vec()
    };
    let y = run(key);
    let xs = x.to_f64_vec();
    let dropped = y.iter().filter(|v| **v == 0.0).count();
    for (a, b) in xs.iter().zip(&y) {
        assert!(*b == 0.0 || (b - a / (1.0 - p)).abs() <= 1e-15 * a.abs(), "{b} is neither 0 nor {a}/(1−p)");
    }
    assert!((15..=45).contains(&dropped), "dropped {dropped} of 100 at p = {p}");
    assert_eq!(y, run(key));
    assert_ne!(y, run(DropoutKey { seed: 1234, stream: 8 }), "another stream must give another mask");
}

#[test]
fn op_embedding_with_repeated_ids() {
    let ids = [3u32, 1, 3, 0, 3, 1];
    check_op("embedding", 18, &[randt(10, &[5, 4])], |t, v| embedding(t, v[0], &ids, &[2, 3], "ids"));
}

#[test]
fn op_linear_with_and_without_bias() {
    let (x, w, b) = (randt(11, &[2, 3, 5]), randt(12, &[4, 5]), randt(13, &[4]));
    check_op("linear+bias", 19, &[x.clone(), w.clone(), b], |t, v| linear(t, v[0], v[1], Some(v[2])));
    check_op("linear", 20, &[x, w], |t, v| linear(t, v[0], v[1], None));
}

#[test]
fn op_batched_matmul_all_transposes_and_2d_matmul() {
    // Logical shapes: a' (2, 3, M=4, K=5) · b' (2, 3, K=5, N=3).
    let (m, k, n) = (4, 5, 3);
    for (i, (ta, tb)) in [(false, false), (false, true), (true, false), (true, true)].into_iter().enumerate() {
        let a_shape = if ta { [2, 3, k, m] } else { [2, 3, m, k] };
        let b_shape = if tb { [2, 3, n, k] } else { [2, 3, k, n] };
        let (a, b) = (randt(20 + i as u64, &a_shape), randt(30 + i as u64, &b_shape));
        check_op(&format!("batched_matmul(ta={ta}, tb={tb})"), 21 + i as u64, &[a, b], |t, v| batched_matmul_op(t, v[0], v[1], ta, tb));
    }
    check_op("matmul", 25, &[randt(40, &[m, k]), randt(41, &[k, n])], |t, v| matmul_op(t, v[0], v[1]));
}

#[test]
fn op_layer_norm() {
    let x = randt(42, &[2, 3, 6]);
    let w = t64(randn(43, 6).iter().map(|v| 1.0 + 0.5 * v).collect(), &[6]);
    let b = randt(44, &[6]);
    check_op("layer_norm", 26, &[x, w, b], |t, v| layer_norm(t, v[0], v[1], v[2], 1e-12));
}

#[test]
fn op_packed_attention_with_an_empty_sequence() {
    // Three sequences of 4, 0 and 3 rows, two heads of 3.
    let inputs = [randt(60, &[7, 6]), randt(61, &[7, 6]), randt(62, &[7, 6])];
    check_op("packed_attention", 60, &inputs, |t, v| packed_attention(t, v[0], v[1], v[2], Arc::from(vec![4, 0, 3]), 2, 0.7));
}

#[test]
fn packed_attention_equals_the_padded_path_at_real_positions() {
    // Sequences of 4, 2 and 3 tokens, padded to 4; two heads of 3.
    let (lens, t_len, heads) = ([4usize, 2, 3], 4, 2);
    let mask: Vec<u8> = lens.iter().flat_map(|&l| (0..t_len).map(move |i| u8::from(i < l))).collect();
    let real: Arc<[usize]> = mask.iter().enumerate().filter(|&(_, &m)| m != 0).map(|(i, _)| i).collect();
    let mut tape = Tape::no_grad();
    let qkv: Vec<Var> = (0..3).map(|i| tape.leaf(randt(70 + i, &[3, t_len, 6]), false)).collect();
    // Padded: split heads, scaled scores, masked softmax, context, merge.
    let heads_of = |tape: &mut Tape, x: Var| split_heads(tape, x, heads).unwrap();
    let (q, k, v) = (heads_of(&mut tape, qkv[0]), heads_of(&mut tape, qkv[1]), heads_of(&mut tape, qkv[2]));
    let scores = batched_matmul_op(&mut tape, q, k, false, true).unwrap();
    let scores = scale(&mut tape, scores, 0.6).unwrap();
    let probs = masked_softmax(&mut tape, scores, &mask).unwrap();
    let context = batched_matmul_op(&mut tape, probs, v, false, false).unwrap();
    let padded = merge_heads(&mut tape, context).unwrap();
    let want = gather_rows(&mut tape, padded, real.clone()).unwrap();
    // Packed.
    let packed: Vec<Var> = qkv.iter().map(|&x| gather_rows(&mut tape, x, real.clone()).unwrap()).collect();
    let got = packed_attention(&mut tape, packed[0], packed[1], packed[2], Arc::from(lens.to_vec()), heads, 0.6).unwrap();
    let (got, want) = (tape.value(got).to_f64_vec(), tape.value(want).to_f64_vec());
    assert_eq!(got.len(), 9 * 6);
    let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(worst < 1e-13, "packed and padded attention differ by {worst}");
}

#[test]
fn windowed_packed_attention_equals_the_padded_path_at_real_positions() {
    // Sequences of 5, 2 and 4 tokens, padded to 5; two heads of 3; windows
    // of half-width 1 and 0, and none.
    let (lens, t_len, heads) = ([5usize, 2, 4], 5, 2);
    let mask: Vec<u8> = lens.iter().flat_map(|&l| (0..t_len).map(move |i| u8::from(i < l))).collect();
    let real: Arc<[usize]> = mask.iter().enumerate().filter(|&(_, &m)| m != 0).map(|(i, _)| i).collect();
    let mut tape = Tape::no_grad();
    let qkv: Vec<Var> = (0..3).map(|i| tape.leaf(randt(80 + i, &[3, t_len, 6]), false)).collect();
    let packed: Vec<Var> = qkv.iter().map(|&x| gather_rows(&mut tape, x, real.clone()).unwrap()).collect();
    let mut outputs = Vec::new();
    for window in [Some(1), Some(0), None] {
        let padded = windowed_attention(&mut tape, (qkv[0], qkv[1], qkv[2]), &mask, heads, 0.6, window, None).unwrap();
        let want = gather_rows(&mut tape, padded, real.clone()).unwrap();
        let got =
            packed_windowed_attention(&mut tape, (packed[0], packed[1], packed[2]), Arc::from(lens.to_vec()), heads, 0.6, window).unwrap();
        let (got, want) = (tape.value(got).to_f64_vec(), tape.value(want).to_f64_vec());
        let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-13, "window {window:?}: packed and padded attention differ by {worst}");
        outputs.push(got);
    }
    // A window of 0 reads only the query's own value: the output is v itself.
    let v = tape.value(packed[2]).to_f64_vec();
    let worst = outputs[1].iter().zip(&v).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(worst < 1e-13, "window 0 must return v, off by {worst}");
    // The window must change the answer where a sequence is longer than it.
    let moved = outputs[0].iter().zip(&outputs[2]).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(moved > 1e-3, "a window of 1 moved the output by only {moved}");
}

#[test]
fn banded_packed_attention_over_long_sequences_equals_the_padded_path() {
    // Sequences of 200, 7 and 131 tokens, padded to 200: windows of 20 and 3
    // take the banded forward (blocks of 64 queries, used when 64 + 2w is
    // under the length) on the long two, a window of 70 the full one.
    let (lens, t_len, heads) = ([200usize, 7, 131], 200, 2);
    let mask: Vec<u8> = lens.iter().flat_map(|&l| (0..t_len).map(move |i| u8::from(i < l))).collect();
    let real: Arc<[usize]> = mask.iter().enumerate().filter(|&(_, &m)| m != 0).map(|(i, _)| i).collect();
    let mut tape = Tape::no_grad();
    let qkv: Vec<Var> = (0..3).map(|i| tape.leaf(randt(90 + i, &[3, t_len, 6]), false)).collect();
    let packed: Vec<Var> = qkv.iter().map(|&x| gather_rows(&mut tape, x, real.clone()).unwrap()).collect();
    for window in [20, 3, 70] {
        let padded = windowed_attention(&mut tape, (qkv[0], qkv[1], qkv[2]), &mask, heads, 0.9, Some(window), None).unwrap();
        let want = gather_rows(&mut tape, padded, real.clone()).unwrap();
        let got =
            packed_windowed_attention(&mut tape, (packed[0], packed[1], packed[2]), Arc::from(lens.to_vec()), heads, 0.9, Some(window))
                .unwrap();
        let (got, want) = (tape.value(got).to_f64_vec(), tape.value(want).to_f64_vec());
        let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-13, "window {window}: banded packed and padded attention differ by {worst}");
    }
}

#[test]
fn op_gather_and_scatter_rows() {
    let rows: Arc<[usize]> = Arc::from(vec![0, 1, 2, 4, 5]);
    let r = rows.clone();
    check_op("gather_rows", 63, &[randt(63, &[2, 4, 3])], move |t, v| {
        let y = gather_rows(t, v[0], r.clone())?;
        tanh(t, y)
    });
    check_op("scatter_rows", 64, &[randt(64, &[5, 3])], move |t, v| {
        let y = scatter_rows(t, v[0], rows.clone(), &[2, 4, 3])?;
        tanh(t, y)
    });
}

#[test]
fn op_split_heads() {
    // Split, then a non-linear op so a wrong permutation in backward shows.
    check_op("split_heads", 27, &[randt(45, &[2, 3, 6])], |t, v| {
        let y = split_heads(t, v[0], 3)?;
        tanh(t, y)
    });
}

#[test]
fn op_merge_heads() {
    check_op("merge_heads", 28, &[randt(46, &[2, 3, 4, 2])], |t, v| {
        let y = merge_heads(t, v[0])?;
        tanh(t, y)
    });
}

#[test]
fn op_masked_softmax_with_padding_and_a_fully_masked_row() {
    // scores (B=3, H=2, Tq=3, Tk=4); batch 1 pads two keys, batch 2 masks every key.
    let mask = [1u8, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0];
    let scores = randt(47, &[3, 2, 3, 4]);
    check_op("masked_softmax", 29, std::slice::from_ref(&scores), |t, v| masked_softmax(t, v[0], &mask));

    // Padded keys get probability exactly 0 and no gradient; a fully masked
    // row is uniform and constant, so its gradient is exactly 0 as well.
    let mut tape = Tape::new();
    let s = tape.leaf(scores, true);
    let p = masked_softmax(&mut tape, s, &mask).unwrap();
    let probs = tape.value(p).to_f64_vec();
    let w = randt(48, &[3, 2, 3, 4]);
    let grads = tape.backward_with(p, w).unwrap();
    let ds = grads.get(s).unwrap().to_f64_vec();
    for row in 0..18 {
        let b = row / 6;
        for j in 0..4 {
            let i = row * 4 + j;
            match b {
                1 if j >= 2 => assert!(probs[i] == 0.0 && ds[i] == 0.0, "padded key {j} of row {row}"),
                2 => assert!(probs[i] == 0.25 && ds[i] == 0.0, "fully masked row {row}: p {} ds {}", probs[i], ds[i]),
                _ => assert!(probs[i] > 0.0),
            }
        }
    }
}

#[test]
fn op_cross_entropy_with_ignored_rows_and_class_weights() {
    let logits = randt(49, &[5, 4]);
    let targets = [2i64, IGNORE_INDEX, 0, 3, IGNORE_INDEX];
    check_op("cross_entropy", 30, std::slice::from_ref(&logits), |t, v| cross_entropy(t, v[0], &targets, None));
    let weights = [0.5, 2.0, 1.0, 3.0];
    check_op("cross_entropy weighted", 31, std::slice::from_ref(&logits), |t, v| cross_entropy(t, v[0], &targets, Some(&weights)));

    // Ignored rows take no gradient; the weighted mean divides by Σ w[y].
    let mut tape = Tape::new();
    let x = tape.leaf(logits.clone(), true);
    let loss = cross_entropy(&mut tape, x, &targets, Some(&weights)).unwrap();
    let value = tape.value(loss).to_f64_vec()[0];
    let g = tape.backward(loss).unwrap().get(x).unwrap().to_f64_vec();
    assert!(g[4..8].iter().chain(&g[16..20]).all(|v| *v == 0.0), "ignored rows got gradient");
    let lv = logits.to_f64_vec();
    let nll = |r: usize, y: usize| {
        let row = &lv[r * 4..r * 4 + 4];
        row.iter().map(|v| v.exp()).sum::<f64>().ln() - row[y]
    };
    let want = (1.0 * nll(0, 2) + 0.5 * nll(2, 0) + 3.0 * nll(3, 3)) / (1.0 + 0.5 + 3.0);
    assert!((value - want).abs() <= 1e-14 * want.abs(), "weighted loss {value} vs {want}");
}

/// Softmax focal loss through the tape: every gamma, with and without alpha,
/// ignored rows, and one nearly certain row (p ≈ 1, where (1 − p)^(γ−1) of
/// the textbook gradient would blow up for γ < 1).
#[test]
fn r7_op_focal_cross_entropy() {
    let mut x = randn(60, 20);
    x[4..8].copy_from_slice(&[0.0, 0.0, 24.0, 0.0]);
    let logits = t64(x, &[5, 4]);
    let targets = [2i64, 2, 0, IGNORE_INDEX, 3];
    let alpha = [0.25, 2.0, 1.0, 0.75];
    for (k, gamma) in [0.0, 0.5, 1.0, 2.0, 3.5].into_iter().enumerate() {
        check_op("focal_cross_entropy", 70 + k as u64, std::slice::from_ref(&logits), |t, v| {
            focal_cross_entropy(t, v[0], &targets, gamma, None)
        });
        check_op("focal_cross_entropy alpha", 80 + k as u64, std::slice::from_ref(&logits), |t, v| {
            focal_cross_entropy(t, v[0], &targets, gamma, Some(&alpha))
        });
    }
}

/// Sigmoid focal loss through the tape: hard and soft targets, alpha, and a
/// per-label pos_weight (the multi-label class weights), and BCE with pos_weight.
#[test]
fn r7_op_sigmoid_focal_and_weighted_bce() {
    let mut x = randn(61, 12);
    x[0] = 28.0; // 1 − p_t ≈ 7e-13 with y = 1
    let logits = t64(x, &[3, 4]);
    let targets = [1.0, 0.0, 1.0, 0.0, 0.3, 1.0, 0.0, 0.7, 1.0, 0.0, 0.0, 0.5];
    let pos_weight = [0.5, 3.0, 1.0, 8.0];
    for (k, gamma) in [0.0, 0.5, 1.0, 2.0].into_iter().enumerate() {
        for (j, (alpha, pw)) in
            [(None, None), (Some(0.25), None), (None, Some(&pos_weight[..])), (Some(0.75), Some(&pos_weight[..]))].into_iter().enumerate()
        {
            check_op("sigmoid_focal", 90 + 4 * k as u64 + j as u64, std::slice::from_ref(&logits), |t, v| {
                sigmoid_focal(t, v[0], &targets, gamma, alpha, pw)
            });
        }
    }
    check_op("bce_with_logits_weighted", 99, &[logits], |t, v| bce_with_logits_weighted(t, v[0], &targets, &pos_weight));
}

#[test]
fn op_bce_with_logits() {
    let mut x = randn(50, 9);
    x.extend([25.0, -25.0, 0.0]);
    let targets = [1.0, 0.0, 0.0, 1.0, 0.3, 1.0, 0.0, 0.7, 1.0, 0.0, 1.0, 0.5];
    check_op("bce_with_logits", 32, &[t64(x, &[3, 4])], |t, v| bce_with_logits(t, v[0], &targets));
}

#[test]
fn op_mse() {
    let targets = [0.5, -1.0, 2.0, 0.0];
    check_op("mse", 33, &[randt(51, &[4, 1])], |t, v| mse(t, v[0], &targets));
}

// ---------- whole tiny BERT under every head ----------

const SEQ: usize = 5;
const LENGTHS: [usize; 4] = [5, 3, 1, 4];

fn tiny_config() -> BertConfig {
    let mut config = BertConfig::synthetic(50, 8, 2, 2, 16);
    config.max_position_embeddings = 8;
    // Weights large enough that attention is far from uniform and GELU far
    // from linear; with BERT's 0.02 the model is almost linear.
    config.initializer_range = 0.4;
    config
}

/// A right-padded batch with ragged lengths, including a one-token sequence,
/// and a second segment (token type 1) in the longest row.
fn tiny_batch() -> Batch {
    let mut draw = SeqRng::new(99);
    let mut batch = Batch { batch_size: LENGTHS.len(), seq_len: SEQ, ..Batch::default() };
    for &len in &LENGTHS {
        for t in 0..SEQ {
            let real = t < len;
            batch.input_ids.push(if t == 0 {
                2
            } else if real {
                3 + draw.below(47) as u32
            } else {
                0
            });
            batch.token_type_ids.push(u32::from(len == SEQ && t >= 3));
            batch.attention_mask.push(u8::from(real));
        }
    }
    batch
}

/// A tiny model in f64 whose LayerNorm weights and every bias are random and
/// non-trivial (random_parameters gives LayerNorm 1/0 and biases 0).
fn tiny_model(head: HeadKind, problem_type: Option<ProblemType>, num_labels: usize) -> BertClassifier {
    tiny_model_of(tiny_config(), head, problem_type, num_labels)
}

/// The tiny model as RoBERTa: position rows from pad_token_id + 1 = 2, one
/// token type, and the dense + tanh + out_proj head with its input dropout.
fn tiny_roberta(head: HeadKind, problem_type: Option<ProblemType>, num_labels: usize) -> BertClassifier {
    let mut config = tiny_config();
    config.family = Family::Roberta;
    config.pad_token_id = Some(1);
    config.type_vocab_size = 1;
    assert!(config.max_sequence_length() >= SEQ);
    tiny_model_of(config, head, problem_type, num_labels)
}

/// The tiny model as ELECTRA: 4-wide embeddings widened to 8 by
/// `embeddings_project`, and the dense + GELU + out_proj head.
fn tiny_electra(head: HeadKind, problem_type: Option<ProblemType>, num_labels: usize) -> BertClassifier {
    let mut config = tiny_config();
    config.family = Family::Electra;
    config.embedding_size = Some(4);
    assert!(config.projects_embeddings());
    tiny_model_of(config, head, problem_type, num_labels)
}

/// The tiny model as DistilBERT: no token-type table, no dropout after the
/// attention output, and the pre_classifier + ReLU head.
fn tiny_distilbert(head: HeadKind, problem_type: Option<ProblemType>, num_labels: usize) -> BertClassifier {
    let mut config = tiny_config();
    config.family = Family::DistilBert;
    tiny_model_of(config, head, problem_type, num_labels)
}

/// The tiny model as ModernBERT: pre-norm layers without biases, rotary
/// q and k, GeGLU, layer 1 windowed to half-width 1 (so at T = 5 the window
/// cuts), a final norm, the dense + GELU + norm head, and dropout 0.1 in
/// all five of its places.
fn tiny_modernbert(head: HeadKind, problem_type: Option<ProblemType>, num_labels: usize) -> BertClassifier {
    let mut config = BertConfig::synthetic_modernbert(50, 8, 2, 2, 16, 2, 0.1);
    config.initializer_range = 0.4;
    let modern = config.modern.as_ref().expect("a ModernBERT config");
    assert_eq!((modern.global_layers.as_slice(), modern.window), ([true, false].as_slice(), 1));
    tiny_model_of(config, head, problem_type, num_labels)
}

/// The tiny model as DeBERTa-v3: relative attention with 4 buckets (at
/// T = 5 distances 3 and 4 share a row), normed relative embeddings, the
/// ContextPooler head, and dropout 0.1 everywhere DeBERTa has it
/// (embeddings, relative embeddings, probabilities, outputs, pooler, classifier).
fn tiny_deberta(head: HeadKind, problem_type: Option<ProblemType>, num_labels: usize) -> BertClassifier {
    let mut config = BertConfig::synthetic_deberta(50, 8, 2, 2, 16, 4, 0.1);
    config.initializer_range = 0.4;
    let settings = config.deberta.as_ref().expect("a DeBERTa config");
    assert_eq!(settings.distance_rows(5), [1, 1, 2, 3, 4, 5, 6, 7, 7], "distances ±3 and ±4 share a bucket");
    tiny_model_of(config, head, problem_type, num_labels)
}

fn tiny_model_of(config: BertConfig, head: HeadKind, problem_type: Option<ProblemType>, num_labels: usize) -> BertClassifier {
    let mut params = random_parameters(&config, head, num_labels, 5, DType::F64);
    let names: Vec<String> = params.names().to_vec();
    for (i, (name, t)) in names.iter().zip(params.tensors_mut()).enumerate() {
        let noise = randn(1000 + i as u64, t.numel());
        let values = t.data_mut::<f64>().unwrap();
        if name.ends_with("LayerNorm.weight") {
            values.iter_mut().zip(&noise).for_each(|(v, n)| *v = 1.0 + 0.4 * n);
        } else if name.ends_with(".bias") {
            values.iter_mut().zip(&noise).for_each(|(v, n)| *v = 0.3 * n);
        }
    }
    let labels = (0..num_labels).map(|i| format!("L{i}")).collect();
    BertClassifier::new(config, head, problem_type, labels, params).unwrap()
}

fn loss_of(model: &BertClassifier, tape: &mut Tape, batch: &Batch, labels: &Labels, mode: ForwardMode) -> (Var, Vec<Var>) {
    let out = model.forward(tape, batch, mode).unwrap();
    let loss = model.loss(tape, out.logits, labels, None).unwrap();
    (loss, out.params)
}

/// Up to `per_tensor` entries of a tensor: random ones, and the entries with
/// the largest tape gradient (so rarely touched rows such as embeddings are
/// covered where they matter).
fn pick_entries(draw: &mut SeqRng, analytic: &[f64], per_tensor: usize) -> Vec<usize> {
    let n = analytic.len();
    if n <= per_tensor {
        return (0..n).collect();
    }
    let mut by_size: Vec<usize> = (0..n).collect();
    by_size.sort_by(|&a, &b| analytic[b].abs().total_cmp(&analytic[a].abs()));
    let mut picked: Vec<usize> = by_size[..per_tensor / 3].to_vec();
    while picked.len() < per_tensor {
        let j = draw.below(n as u64) as usize;
        if !picked.contains(&j) {
            picked.push(j);
        }
    }
    picked
}

/// Checks the loss gradient of every parameter (a few entries each) against
/// central differences, in eval mode and with dropout on.
fn check_model(name: &str, model: &BertClassifier, labels: &Labels) {
    let batch = tiny_batch();
    for mode in [ForwardMode::eval(), ForwardMode::train(77)] {
        let mut tape = Tape::new();
        let (loss, params) = loss_of(model, &mut tape, &batch, labels, mode);
        let base = tape.value(loss).to_f64_vec()[0];
        let grads = tape.backward(loss).unwrap();

        let objective = |m: &BertClassifier| {
            let mut tape = Tape::no_grad();
            let (loss, _) = loss_of(m, &mut tape, &batch, labels, mode);
            tape.value(loss).to_f64_vec()[0]
        };
        let mut perturbed = model.clone();
        let mut draw = SeqRng::new(2024);
        let mut worst = (0.0, String::new());
        let mut failures = Vec::new();
        let mut unresolved = Vec::new();
        for (i, pname) in model.params.names().iter().enumerate() {
            let analytic_all = grads.get(params[i]).unwrap_or_else(|| panic!("{name}: {pname} got no gradient")).to_f64_vec();
            let entries = pick_entries(&mut draw, &analytic_all, 6);
            let analytic: Vec<f64> = entries.iter().map(|&j| analytic_all[j]).collect();
            let mut central = |rel_step: f64| -> Vec<f64> {
                let mut numeric = Vec::new();
                for &j in &entries {
                    let x = model.params.tensors()[i].data::<f64>().unwrap()[j];
                    let h = rel_step * x.abs().max(1.0);
                    perturbed.params.tensors_mut()[i].data_mut::<f64>().unwrap()[j] = x + h;
                    let plus = objective(&perturbed);
                    perturbed.params.tensors_mut()[i].data_mut::<f64>().unwrap()[j] = x - h;
                    let minus = objective(&perturbed);
                    perturbed.params.tensors_mut()[i].data_mut::<f64>().unwrap()[j] = x;
                    numeric.push((plus - minus) / (2.0 * h));
                }
                numeric
            };
            let mut numeric = central(REL_STEP);
            let mut floor = floor_for(base, REL_STEP, entries.len());
            if norm(&numeric) <= floor {
                // Below the noise floor at h = 1e-6: a step 100 times wider
                // lowers the rounding noise 100 times, and its O(h²)
                // truncation error (~1e-8 relative) is still under TOL.
                numeric = central(WIDE_REL_STEP);
                floor = floor_for(base, WIDE_REL_STEP, entries.len());
            }
            let e = rel_error_floored(&analytic, &numeric, floor);
            if norm(&numeric) <= floor {
                unresolved.push(pname.clone());
            }
            eprintln!("{name} {mode:?} {pname}: ‖grad‖ {:.3e}, error {e:.2e}", norm(&numeric));
            if e > worst.0 {
                worst = (e, pname.clone());
            }
            if !(e <= TOL) {
                failures.push(format!("{pname}: {e:.3e} (tape {analytic:?}, numeric {numeric:?})"));
            }
        }
        eprintln!("{name} {mode:?}: loss {base:.6}, worst relative error {:.2e} at {}", worst.0, worst.1);
        assert!(failures.is_empty(), "{name} {mode:?}: gradients off by more than {TOL:e}:\n{}", failures.join("\n"));
        // Every gradient must be large enough for a relative check, except
        // the key biases, which are zero by construction (see floor_for).
        let key_biases = unresolved.iter().filter(|n| n.ends_with("attention.self.key.bias")).count();
        assert!(key_biases == unresolved.len(), "{name} {mode:?}: gradients too small to check: {unresolved:?}");
    }
}

/// Four labels for each of the tiny batch's four rows.
const MULTI_LABEL_TARGETS: [f64; 16] = [1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0];
const REGRESSION_TARGETS: [f64; 4] = [0.7, -1.2, 2.5, 0.1];

#[test]
fn bert_single_label_gradients() {
    let model = tiny_model(HeadKind::SequenceClassification, Some(ProblemType::SingleLabel), 3);
    check_model("single-label", &model, &Labels::SingleLabel(vec![0, 2, 1, 2]));
}

#[test]
fn bert_multi_label_gradients() {
    let model = tiny_model(HeadKind::SequenceClassification, Some(ProblemType::MultiLabel), 4);
    check_model("multi-label", &model, &Labels::MultiLabel(MULTI_LABEL_TARGETS.to_vec()));
}

#[test]
fn bert_regression_gradients() {
    let model = tiny_model(HeadKind::SequenceClassification, Some(ProblemType::Regression), 1);
    check_model("regression", &model, &Labels::Regression(REGRESSION_TARGETS.to_vec()));
}

/// Five tags per (B, T) position; padding and every third real position are not scored.
fn token_tags() -> Vec<i64> {
    let mut tags = Vec::new();
    for &len in &LENGTHS {
        for t in 0..SEQ {
            tags.push(if t >= len || t % 3 == 2 { IGNORE_INDEX } else { ((t * 7 + len) % 5) as i64 });
        }
    }
    tags
}

#[test]
fn bert_token_classification_gradients() {
    let model = tiny_model(HeadKind::TokenClassification, None, 5);
    check_model("token", &model, &Labels::Token(token_tags()));
}

#[test]
fn roberta_single_label_gradients() {
    let model = tiny_roberta(HeadKind::SequenceClassification, Some(ProblemType::SingleLabel), 3);
    check_model("roberta single-label", &model, &Labels::SingleLabel(vec![0, 2, 1, 2]));
}

#[test]
fn roberta_multi_label_gradients() {
    let model = tiny_roberta(HeadKind::SequenceClassification, Some(ProblemType::MultiLabel), 4);
    check_model("roberta multi-label", &model, &Labels::MultiLabel(MULTI_LABEL_TARGETS.to_vec()));
}

#[test]
fn roberta_regression_gradients() {
    let model = tiny_roberta(HeadKind::SequenceClassification, Some(ProblemType::Regression), 1);
    check_model("roberta regression", &model, &Labels::Regression(REGRESSION_TARGETS.to_vec()));
}

#[test]
fn roberta_token_classification_gradients() {
    let model = tiny_roberta(HeadKind::TokenClassification, None, 5);
    check_model("roberta token", &model, &Labels::Token(token_tags()));
}

#[test]
fn electra_single_label_gradients() {
    let model = tiny_electra(HeadKind::SequenceClassification, Some(ProblemType::SingleLabel), 3);
    check_model("electra single-label", &model, &Labels::SingleLabel(vec![0, 2, 1, 2]));
}

#[test]
fn electra_multi_label_gradients() {
    let model = tiny_electra(HeadKind::SequenceClassification, Some(ProblemType::MultiLabel), 4);
    check_model("electra multi-label", &model, &Labels::MultiLabel(MULTI_LABEL_TARGETS.to_vec()));
}

#[test]
fn electra_regression_gradients() {
    let model = tiny_electra(HeadKind::SequenceClassification, Some(ProblemType::Regression), 1);
    check_model("electra regression", &model, &Labels::Regression(REGRESSION_TARGETS.to_vec()));
}

#[test]
fn electra_token_classification_gradients() {
    let model = tiny_electra(HeadKind::TokenClassification, None, 5);
    check_model("electra token", &model, &Labels::Token(token_tags()));
}

#[test]
fn distilbert_single_label_gradients() {
    let model = tiny_distilbert(HeadKind::SequenceClassification, Some(ProblemType::SingleLabel), 3);
    assert!(model.params.get("bert.embeddings.token_type_embeddings.weight").is_none(), "DistilBERT has no token types");
    check_model("distilbert single-label", &model, &Labels::SingleLabel(vec![0, 2, 1, 2]));
}

#[test]
fn distilbert_multi_label_gradients() {
    let model = tiny_distilbert(HeadKind::SequenceClassification, Some(ProblemType::MultiLabel), 4);
    check_model("distilbert multi-label", &model, &Labels::MultiLabel(MULTI_LABEL_TARGETS.to_vec()));
}

#[test]
fn distilbert_regression_gradients() {
    let model = tiny_distilbert(HeadKind::SequenceClassification, Some(ProblemType::Regression), 1);
    check_model("distilbert regression", &model, &Labels::Regression(REGRESSION_TARGETS.to_vec()));
}

#[test]
fn distilbert_token_classification_gradients() {
    let model = tiny_distilbert(HeadKind::TokenClassification, None, 5);
    check_model("distilbert token", &model, &Labels::Token(token_tags()));
}

#[test]
fn modernbert_single_label_gradients() {
    let model = tiny_modernbert(HeadKind::SequenceClassification, Some(ProblemType::SingleLabel), 3);
    assert!(model.params.names().iter().all(|n| !n.ends_with(".bias") || n.starts_with("classifier")), "only the classifier has a bias");
    check_model("modernbert single-label", &model, &Labels::SingleLabel(vec![0, 2, 1, 2]));
}

#[test]
fn modernbert_cls_pooling_gradients() {
    let mut model = tiny_modernbert(HeadKind::SequenceClassification, Some(ProblemType::SingleLabel), 3);
    model.config.modern.as_mut().unwrap().pooling = berth::model::config::Pooling::Cls;
    check_model("modernbert cls pooling", &model, &Labels::SingleLabel(vec![0, 2, 1, 2]));
}

#[test]
fn modernbert_multi_label_gradients() {
    let model = tiny_modernbert(HeadKind::SequenceClassification, Some(ProblemType::MultiLabel), 4);
    check_model("modernbert multi-label", &model, &Labels::MultiLabel(MULTI_LABEL_TARGETS.to_vec()));
}

#[test]
fn modernbert_regression_gradients() {
    let model = tiny_modernbert(HeadKind::SequenceClassification, Some(ProblemType::Regression), 1);
    check_model("modernbert regression", &model, &Labels::Regression(REGRESSION_TARGETS.to_vec()));
}

#[test]
fn modernbert_token_classification_gradients() {
    let model = tiny_modernbert(HeadKind::TokenClassification, None, 5);
    check_model("modernbert token", &model, &Labels::Token(token_tags()));
}

#[test]
fn deberta_single_label_gradients() {
    let model = tiny_deberta(HeadKind::SequenceClassification, Some(ProblemType::SingleLabel), 3);
    check_model("deberta single-label", &model, &Labels::SingleLabel(vec![0, 2, 1, 2]));
}

#[test]
fn deberta_multi_label_gradients() {
    let model = tiny_deberta(HeadKind::SequenceClassification, Some(ProblemType::MultiLabel), 4);
    check_model("deberta multi-label", &model, &Labels::MultiLabel(MULTI_LABEL_TARGETS.to_vec()));
}

#[test]
fn deberta_regression_gradients() {
    let model = tiny_deberta(HeadKind::SequenceClassification, Some(ProblemType::Regression), 1);
    check_model("deberta regression", &model, &Labels::Regression(REGRESSION_TARGETS.to_vec()));
}

#[test]
fn deberta_token_classification_gradients() {
    let model = tiny_deberta(HeadKind::TokenClassification, None, 5);
    check_model("deberta token", &model, &Labels::Token(token_tags()));
}

// ---------- dropout determinism ----------

fn eval_loss(model: &BertClassifier, mode: ForwardMode) -> f64 {
    let labels = Labels::SingleLabel(vec![0, 2, 1, 2]);
    let mut tape = Tape::no_grad();
    let (loss, _) = loss_of(model, &mut tape, &tiny_batch(), &labels, mode);
    tape.value(loss).to_f64_vec()[0]
}

#[test]
fn dropout_is_deterministic_per_seed_and_eval_equals_p0() {
    let model = tiny_model(HeadKind::SequenceClassification, Some(ProblemType::SingleLabel), 3);
    assert!(model.config.hidden_dropout_prob > 0.0 && model.config.attention_probs_dropout_prob > 0.0);
    let a = eval_loss(&model, ForwardMode::train(1));
    let b = eval_loss(&model, ForwardMode::train(1));
    let c = eval_loss(&model, ForwardMode::train(2));
    let eval = eval_loss(&model, ForwardMode::eval());
    assert_eq!(a.to_bits(), b.to_bits(), "the same seed must give the same loss");
    assert_ne!(a, c, "another seed must give another loss");
    assert_ne!(a, eval, "dropout must change the loss");

    let mut p0 = model.clone();
    p0.config.hidden_dropout_prob = 0.0;
    p0.config.attention_probs_dropout_prob = 0.0;
    p0.config.classifier_dropout = None;
    let train_p0 = eval_loss(&p0, ForwardMode::train(1));
    assert_eq!(eval.to_bits(), train_p0.to_bits(), "eval mode must equal training with p = 0");
    assert_eq!(eval.to_bits(), eval_loss(&p0, ForwardMode::eval()).to_bits());
}

// ---------- the library's checks (what `berth check` runs) ----------

#[test]
fn library_gradchecks_all_pass() {
    let started = std::time::Instant::now();
    let rows = berth::check::gradcheck::run_all_gradchecks();
    eprintln!("run_all_gradchecks: {} rows in {:.2} s", rows.len(), started.elapsed().as_secs_f64());
    for r in &rows {
        eprintln!("{:<24} {:<36} {:.3e} {}", r.op, r.shapes, r.rel_err, r.note);
    }
    let failed: Vec<String> =
        rows.iter().filter(|r| !r.pass).map(|r| format!("{} [{}]: {:.3e} {}", r.op, r.shapes, r.rel_err, r.note)).collect();
    assert!(failed.is_empty(), "gradient checks failed:\n{}", failed.join("\n"));
    assert!(rows.iter().all(|r| r.tolerance == TOL && r.rel_err <= TOL));
    let expected = [
        "add",
        "scale",
        "gelu",
        "tanh",
        "reshape",
        "first_token",
        "mean_pool",
        "split_heads",
        "merge_heads",
        "dropout",
        "embedding",
        "linear+bias",
        "linear",
        "batched_matmul",
        "layer_norm",
        "masked_softmax",
        "attention",
        "attention dropout",
        "embeddings_ln",
        "rotary",
        "geglu",
        "attention window",
        "attention window dropout",
        "packed_attention window",
        "cross_entropy",
        "cross_entropy weighted",
        "bce_with_logits",
        "mse",
        "bert single-label",
        "bert multi-label",
        "bert regression",
        "bert token",
        "modernbert single-label",
        "modernbert token",
        "relative_attention",
        "relative_attention dropout",
        "packed_relative_attention",
        "deberta single-label",
        "deberta token",
    ];
    for op in expected {
        assert!(rows.iter().any(|r| r.op == op), "no gradient check for {op}");
    }
    assert_eq!(rows.iter().filter(|r| r.op == "batched_matmul").count(), 4, "all four transpose cases of batched_matmul");
}

/// y = x², whose backward returns `factor`·2x·dy: right at factor 1, wrong at 2.
struct Square {
    factor: f64,
}

impl berth::autograd::Backward for Square {
    fn name(&self) -> &'static str {
        "square"
    }
    fn backward(&self, dout: &Tensor, ctx: &berth::autograd::BackwardContext) -> berth::Result<Vec<Option<Tensor>>> {
        let x = ctx.inputs[0].to_f64_vec();
        let dx = x.iter().zip(dout.to_f64_vec()).map(|(x, d)| self.factor * 2.0 * x * d).collect();
        Ok(vec![Some(Tensor::from_vec(dx, ctx.inputs[0].shape())?)])
    }
}

fn square_row(factor: f64) -> berth::check::gradcheck::GradcheckRow {
    berth::check::gradcheck::check_op("square", 61, &[randt(60, &[2, 3])], |t, v| {
        let y: Vec<f64> = t.value(v[0]).to_f64_vec().iter().map(|x| x * x).collect();
        let y = Tensor::from_vec(y, t.value(v[0]).shape())?;
        Ok(t.push(y, &[v[0]], Square { factor }))
    })
}

#[test]
fn library_gradcheck_catches_a_wrong_backward() {
    let right = square_row(1.0);
    assert!(right.pass, "the correct backward must pass: {right:?}");
    let wrong = square_row(2.0);
    assert!(!wrong.pass, "a backward off by a factor of 2 must fail: {wrong:?}");
    // ‖2g − g‖ / ‖g‖ = 1, up to the central differences' own error.
    assert!((wrong.rel_err - 1.0).abs() < 1e-6, "relative error {} for a gradient twice too large", wrong.rel_err);
    assert!(wrong.note.contains("input 0"), "the note names the leaf: {}", wrong.note);
}

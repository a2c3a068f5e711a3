//! Token attributions: integrated gradients and gradient × input over the
//! word embeddings, with the completeness check integrated gradients owes
//! its axiom.
//!
//! The path runs over the word-embedding vectors that enter the embeddings
//! (transformers' `inputs_embeds`), so position and token-type rows, the
//! embedding LayerNorm and everything after are part of the function being
//! explained. The baseline keeps the special tokens ([CLS], [SEP], <s>, …)
//! as they are and replaces every other word piece by [PAD]'s embedding
//! (`pad`) or by zeros (`zero`): special tokens get no attribution, and
//! the sum over the word pieces is compared with Δ = F(input) − F(baseline).
//!
//! One step batch is one forward and one backward of several interpolated
//! copies of the input, through [`BertClassifier::forward_with_word_rows`]:
//! the seed gradient of each copy's target logit is its quadrature weight,
//! so the backward sums the weighted gradients itself.

use serde::Serialize;

use super::heads::BertClassifier;
use super::params::HeadKind;
use crate::autograd::Tape;
use crate::data::Batch;
use crate::data::tokenize::Encoded;
use crate::error::{Error, Result};
use crate::numerics::argmax;
use crate::tensor::{DType, Tensor};

/// Which attribution to compute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ExplainMethod {
    /// Integrated gradients from the baseline to the input.
    Ig,
    /// The gradient at the input times the input, summed over the embedding.
    GradXInput,
}

impl ExplainMethod {
    pub fn name(self) -> &'static str {
        match self {
            ExplainMethod::Ig => "ig",
            ExplainMethod::GradXInput => "grad-x-input",
        }
    }
}

/// The input integrated gradients starts from (special tokens always stay).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Baseline {
    /// [PAD]'s embedding in place of every word piece.
    Pad,
    /// Zero vectors in place of every word piece.
    Zero,
}

impl Baseline {
    pub fn name(self) -> &'static str {
        match self {
            Baseline::Pad => "pad",
            Baseline::Zero => "zero",
        }
    }
}

/// How the path integral is approximated. Gauss–Legendre is captum's
/// default; the Riemann rules are captum's too. `trapezoid` is the textbook
/// rule (weights 1/(n−1), the two ends halved), which is not captum's
/// `riemann_trapezoid` (weights 1/n, ends halved: they sum to (n−1)/n).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum IntegrationRule {
    GaussLegendre,
    RiemannLeft,
    RiemannMiddle,
    RiemannRight,
    Trapezoid,
}

impl IntegrationRule {
    pub fn name(self) -> &'static str {
        match self {
            IntegrationRule::GaussLegendre => "gauss-legendre",
            IntegrationRule::RiemannLeft => "riemann-left",
            IntegrationRule::RiemannMiddle => "riemann-middle",
            IntegrationRule::RiemannRight => "riemann-right",
            IntegrationRule::Trapezoid => "trapezoid",
        }
    }

    /// steps -> (alphas in [0, 1], weights summing to 1), ascending alphas.
    pub fn nodes(self, steps: usize) -> Result<(Vec<f64>, Vec<f64>)> {
        let least = if self == IntegrationRule::Trapezoid { 2 } else { 1 };
        if steps < least {
            return Err(Error::InvalidArgument(format!(
                "--steps {steps}: the {} rule needs at least {least} step{}",
                self.name(),
                if least > 1 { "s" } else { "" }
            )));
        }
        let n = steps as f64;
        let even = vec![1.0 / n; steps];
        Ok(match self {
            IntegrationRule::GaussLegendre => {
                let (x, w) = gauss_legendre(steps);
                (x.iter().map(|x| 0.5 * (1.0 + x)).collect(), w.iter().map(|w| 0.5 * w).collect())
            }
            IntegrationRule::RiemannLeft => ((0..steps).map(|i| i as f64 / n).collect(), even),
            IntegrationRule::RiemannMiddle => ((0..steps).map(|i| (2 * i + 1) as f64 / (2.0 * n)).collect(), even),
            IntegrationRule::RiemannRight => ((0..steps).map(|i| (i + 1) as f64 / n).collect(), even),
            IntegrationRule::Trapezoid => {
                let h = 1.0 / (n - 1.0);
                let mut w = vec![h; steps];
                w[0] /= 2.0;
                w[steps - 1] /= 2.0;
                ((0..steps).map(|i| i as f64 * h).collect(), w)
            }
        })
    }
}

/// The n-point Gauss–Legendre rule on [−1, 1]: nodes ascending, weights.
/// Newton's method on the Legendre polynomial from the usual cosine guesses.
fn gauss_legendre(n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut nodes = Vec::with_capacity(n);
    let mut weights = Vec::with_capacity(n);
    for i in 0..n {
        let mut x = (std::f64::consts::PI * (i as f64 + 0.75) / (n as f64 + 0.5)).cos();
        let mut derivative = 0.0;
        for _ in 0..100 {
            // P_n(x) and P_{n-1}(x) by the three-term recurrence.
            let (mut p, mut p_prev) = (1.0, 0.0);
            for k in 1..=n {
                let k = k as f64;
                let next = ((2.0 * k - 1.0) * x * p - (k - 1.0) * p_prev) / k;
                p_prev = p;
                p = next;
            }
            derivative = n as f64 * (x * p - p_prev) / (x * x - 1.0);
            let step = p / derivative;
            x -= step;
            if step.abs() < 1e-16 {
                break;
            }
        }
        nodes.push(x);
        weights.push(2.0 / ((1.0 - x * x) * derivative * derivative));
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| nodes[a].total_cmp(&nodes[b]));
    (order.iter().map(|&i| nodes[i]).collect(), order.iter().map(|&i| weights[i]).collect())
}

/// What to explain and how.
#[derive(Clone, Copy, Debug)]
pub struct ExplainOptions {
    pub method: ExplainMethod,
    /// Integration steps (integrated gradients only).
    pub steps: usize,
    pub baseline: Baseline,
    pub rule: IntegrationRule,
    /// The output explained: a label index, or None for the predicted one
    /// (the largest logit; regression's only output).
    pub target: Option<usize>,
    /// Interpolated copies of the input per forward and backward pass.
    pub step_batch: usize,
}

impl Default for ExplainOptions {
    fn default() -> Self {
        ExplainOptions {
            method: ExplainMethod::Ig,
            steps: 32,
            baseline: Baseline::Pad,
            rule: IntegrationRule::GaussLegendre,
            target: None,
            step_batch: 16,
        }
    }
}

/// One input's attributions, per word piece of its encoding.
#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    pub method: ExplainMethod,
    /// The output explained (a label index; for an entity, its first
    /// word's tag).
    #[serde(rename = "target_index")]
    pub target: usize,
    /// Token heads: the word pieces whose logits of their tags are summed
    /// into F (an entity's words' first pieces).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pieces: Option<Vec<usize>>,
    /// F(input): the target's logit (regression: the output; an entity: the
    /// sum over its pieces).
    pub logit: f64,
    /// One value per word piece, special tokens included (zero for them
    /// under integrated gradients).
    pub attributions: Vec<f64>,
    /// Σ attributions.
    pub sum: f64,
    /// Integrated gradients only: F(baseline), Δ = F(input) − F(baseline)
    /// and the completeness gap |sum − Δ| / max(|Δ|, 1e-3).
    pub baseline_logit: Option<f64>,
    pub delta: Option<f64>,
    pub completeness_gap: Option<f64>,
    /// Integration steps (1 for gradient × input).
    pub steps: usize,
    /// Forward-and-backward passes run, and the interpolated sequences they
    /// held (plain forward passes for F(input) and F(baseline) not counted).
    pub passes: usize,
    pub sequences: usize,
}

/// The row `id` of an (V, E) table as f64.
fn table_row(table: &Tensor, id: usize) -> Result<Vec<f64>> {
    let width = table.shape()[1];
    let range = id * width..(id + 1) * width;
    Ok(match table.dtype() {
        DType::F64 => table.data::<f64>()?[range].to_vec(),
        DType::F32 => table.data::<f32>()?[range].iter().map(|&v| v as f64).collect(),
        DType::BF16 => table.to_dtype(DType::F32).data::<f32>()?[range].iter().map(|&v| v as f64).collect(),
    })
}

/// Runs `points` (α, weight) of the path base + α·(x − base), `t` tokens
/// each, as one batch of S copies -> (F of each copy (S): the sum of the
/// `outputs` logits, and when `backward`, Σ weight·∇F per token (T·E)).
/// `outputs` are (row, class) pairs of one copy's logits: row 0 of a
/// sequence head, a word-piece position of a token head.
fn run_points(
    model: &BertClassifier,
    encoded: &Encoded,
    (x, base): (&[f64], &[f64]),
    points: &[(f64, f64)],
    outputs: &[(usize, usize)],
    backward: bool,
) -> Result<(Vec<f64>, Option<Vec<f64>>)> {
    let (all, gradient) = run_points_logits(model, encoded, (x, base), points, outputs, backward)?;
    let per_copy = all.len() / points.len().max(1);
    let classes = model.num_labels();
    let f = all.chunks(per_copy.max(1)).map(|copy| outputs.iter().map(|&(row, class)| copy[row * classes + class]).sum()).collect();
    Ok((f, gradient))
}

/// As [`run_points`], returning every logit of the copies ((S, rows, C) flat)
/// instead of F.
fn run_points_logits(
    model: &BertClassifier,
    encoded: &Encoded,
    (x, base): (&[f64], &[f64]),
    points: &[(f64, f64)],
    outputs: &[(usize, usize)],
    backward: bool,
) -> Result<(Vec<f64>, Option<Vec<f64>>)> {
    let t = encoded.ids.len();
    let width = x.len() / t;
    let s = points.len();
    let mut rows = Vec::with_capacity(s * t * width);
    for &(alpha, _) in points {
        rows.extend(x.iter().zip(base).map(|(x, b)| b + alpha * (x - b)));
    }
    let like = &model.params.tensors()[model.encoder_params().word_table()];
    let rows = Tensor::from_f64_like(rows, &[s * t, width], like)?;
    let batch = Batch {
        batch_size: s,
        seq_len: t,
        input_ids: (0..(s * t) as u32).collect(),
        token_type_ids: encoded.type_ids.repeat(s),
        attention_mask: vec![1; s * t],
    };
    let mut tape = if backward { Tape::new() } else { Tape::no_grad() };
    let (out, rows_var) = model.forward_with_word_rows(&mut tape, rows, &batch)?;
    let logits = tape.value(out.logits).to_f64_vec();
    if !backward {
        return Ok((logits, None));
    }
    // One copy's logits: (1, C) for a sequence head, (T, C) for a token head.
    let per_copy = logits.len() / s;
    let classes = model.num_labels();
    let mut seed = vec![0.0; logits.len()];
    for (i, &(_, weight)) in points.iter().enumerate() {
        for &(row, class) in outputs {
            seed[i * per_copy + row * classes + class] += weight;
        }
    }
    let seed = Tensor::from_f64_like(seed, tape.value(out.logits).shape(), tape.value(out.logits))?;
    let grads = tape.backward_with(out.logits, seed)?;
    let g = grads.get(rows_var).ok_or_else(|| Error::InvalidArgument("no gradient reached the word embeddings".into()))?.to_f64_vec();
    let mut summed = vec![0.0; t * width];
    for copy in g.chunks(t * width) {
        for (acc, v) in summed.iter_mut().zip(copy) {
            *acc += v;
        }
    }
    Ok((logits, Some(summed)))
}

/// encoded (T word pieces) -> their word-embedding rows (T·E) as f64.
fn input_rows(model: &BertClassifier, encoded: &Encoded) -> Result<Vec<f64>> {
    let table = &model.params.tensors()[model.encoder_params().word_table()];
    let mut x = Vec::with_capacity(encoded.ids.len() * table.shape()[1]);
    for &id in &encoded.ids {
        x.extend(table_row(table, id as usize)?);
    }
    Ok(x)
}

/// encoded (T word pieces) -> the model's logits at the input, by the
/// forward the explanations differentiate ((C) for a sequence head).
pub fn input_logits(model: &BertClassifier, encoded: &Encoded) -> Result<Vec<f64>> {
    if encoded.ids.is_empty() {
        return Err(Error::shape("explain", "an input of no word pieces"));
    }
    let x = input_rows(model, encoded)?;
    Ok(run_points_logits(model, encoded, (&x, &x), &[(1.0, 0.0)], &[], false)?.0)
}

/// Checks what every explanation needs: an encoding, its special-token
/// flags, a step batch.
fn check_input(encoded: &Encoded, special: &[bool], options: &ExplainOptions) -> Result<()> {
    let t = encoded.ids.len();
    if t == 0 || special.len() != t {
        return Err(Error::shape("explain", format!("{t} word pieces with {} special-token flags", special.len())));
    }
    if options.step_batch == 0 {
        return Err(Error::InvalidArgument("the step batch must hold at least one sequence".into()));
    }
    Ok(())
}

/// encoded (T word pieces) -> attributions of a sequence head's target
/// output to each word piece. `special` marks the pieces the baseline keeps
/// (the tokenizer's special tokens); `pad_id` is [PAD]'s id.
pub fn explain(model: &BertClassifier, encoded: &Encoded, special: &[bool], pad_id: u32, options: &ExplainOptions) -> Result<Explanation> {
    if model.head == HeadKind::TokenClassification {
        return Err(Error::InvalidArgument(
            "a token-classification model is explained per predicted entity (predict --words --explain), not per input".into(),
        ));
    }
    check_input(encoded, special, options)?;
    let classes = model.num_labels();
    if let Some(target) = options.target
        && target >= classes
    {
        return Err(Error::InvalidArgument(format!("target label index {target}: the model has {classes} outputs")));
    }
    explain_outputs(model, encoded, special, pad_id, options, |input_logits| {
        vec![(0, options.target.unwrap_or_else(|| argmax(input_logits)))]
    })
}

/// encoded (T word pieces) -> attributions to each word piece of a token
/// head's F = Σ logit[piece][class] over `outputs` (piece, class): for an
/// entity, its words' first pieces with their predicted tags. Integrated
/// gradients' completeness holds for the sum as for one logit.
pub fn explain_pieces(
    model: &BertClassifier,
    encoded: &Encoded,
    special: &[bool],
    pad_id: u32,
    options: &ExplainOptions,
    outputs: &[(usize, usize)],
) -> Result<Explanation> {
    if model.head != HeadKind::TokenClassification {
        return Err(Error::InvalidArgument("per-piece explanations need a token-classification model".into()));
    }
    check_input(encoded, special, options)?;
    let (t, classes) = (encoded.ids.len(), model.num_labels());
    if outputs.is_empty() {
        return Err(Error::InvalidArgument("an explanation of word pieces needs at least one (piece, tag) to explain".into()));
    }
    if let Some(&(piece, class)) = outputs.iter().find(|&&(piece, class)| piece >= t || class >= classes) {
        return Err(Error::shape("explain", format!("piece {piece}, tag {class} in {t} pieces and {classes} tags")));
    }
    let mut explanation = explain_outputs(model, encoded, special, pad_id, options, |_| outputs.to_vec())?;
    explanation.pieces = Some(outputs.iter().map(|&(piece, _)| piece).collect());
    Ok(explanation)
}

/// The shared arithmetic: `choose` names the (row, class) outputs whose sum
/// F is explained, from one copy's logits at the input.
fn explain_outputs(
    model: &BertClassifier,
    encoded: &Encoded,
    special: &[bool],
    pad_id: u32,
    options: &ExplainOptions,
    choose: impl FnOnce(&[f64]) -> Vec<(usize, usize)>,
) -> Result<Explanation> {
    let t = encoded.ids.len();
    let table = &model.params.tensors()[model.encoder_params().word_table()];
    let x = input_rows(model, encoded)?;
    let width = table.shape()[1];
    let (alphas, weights, base) = match options.method {
        ExplainMethod::Ig => {
            let (alphas, weights) = options.rule.nodes(options.steps)?;
            let pad = match options.baseline {
                Baseline::Pad => table_row(table, pad_id as usize)?,
                Baseline::Zero => vec![0.0; width],
            };
            let mut base = Vec::with_capacity(x.len());
            for (i, &keep) in special.iter().enumerate() {
                base.extend_from_slice(if keep { &x[i * width..(i + 1) * width] } else { &pad });
            }
            (alphas, weights, base)
        }
        // The gradient at the input, times the input: one point, from zero.
        ExplainMethod::GradXInput => (vec![1.0], vec![1.0], vec![0.0; x.len()]),
    };
    // The logits at the input, which name the predicted target.
    let (input_logits, _) = run_points_logits(model, encoded, (&x, &base), &[(1.0, 0.0)], &[], false)?;
    let outputs = choose(&input_logits);
    let classes = model.num_labels();
    let logit: f64 = outputs.iter().map(|&(row, class)| input_logits[row * classes + class]).sum();
    let points: Vec<(f64, f64)> = alphas.iter().copied().zip(weights.iter().copied()).collect();
    let mut gradient = vec![0.0; t * width];
    let mut passes = 0;
    for chunk in points.chunks(options.step_batch) {
        let (_, g) = run_points(model, encoded, (&x, &base), chunk, &outputs, true)?;
        for (acc, v) in gradient.iter_mut().zip(g.expect("a backward pass returns gradients")) {
            *acc += v;
        }
        passes += 1;
    }
    let attributions: Vec<f64> = (0..t)
        .map(|i| {
            let range = i * width..(i + 1) * width;
            x[range.clone()].iter().zip(&base[range.clone()]).zip(&gradient[range]).map(|((x, b), g)| (x - b) * g).sum()
        })
        .collect();
    let sum = attributions.iter().sum::<f64>();
    let (baseline_logit, delta, completeness_gap) = match options.method {
        ExplainMethod::Ig => {
            let f_base = run_points(model, encoded, (&x, &base), &[(0.0, 0.0)], &outputs, false)?.0[0];
            let delta = logit - f_base;
            (Some(f_base), Some(delta), Some((sum - delta).abs() / delta.abs().max(1e-3)))
        }
        ExplainMethod::GradXInput => (None, None, None),
    };
    Ok(Explanation {
        method: options.method,
        target: outputs[0].1,
        pieces: None,
        logit,
        attributions,
        sum,
        baseline_logit,
        delta,
        completeness_gap,
        steps: points.len(),
        passes,
        sequences: points.len(),
    })
}

/// Sums per-piece attributions into words: consecutive pieces of the same
/// word (same text of a pair, same word index) form one; special tokens
/// are left out. -> (first piece, last piece + 1, attribution) per word.
pub fn word_spans(encoded: &Encoded, attributions: &[f64]) -> Vec<(usize, usize, f64)> {
    let mut spans: Vec<(usize, usize, f64)> = Vec::new();
    let mut current: Option<(u32, u32)> = None;
    for (i, word) in encoded.word_ids.iter().enumerate() {
        let Some(word) = *word else {
            current = None;
            continue;
        };
        let key = (encoded.type_ids[i], word);
        match spans.last_mut() {
            Some(last) if current == Some(key) && last.1 == i => {
                last.1 = i + 1;
                last.2 += attributions[i];
            }
            _ => spans.push((i, i + 1, attributions[i])),
        }
        current = Some(key);
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauss_legendre_integrates_polynomials_of_degree_2n_minus_1_exactly() {
        for n in [1, 2, 5, 16, 64] {
            let (alphas, weights) = IntegrationRule::GaussLegendre.nodes(n).unwrap();
            assert!((weights.iter().sum::<f64>() - 1.0).abs() < 1e-13, "n {n}");
            assert!(alphas.windows(2).all(|w| w[0] < w[1]) && alphas[0] > 0.0 && alphas[n - 1] < 1.0);
            // ∫₀¹ x^k dx = 1/(k+1) for k up to 2n−1.
            for k in 0..2 * n {
                let approx: f64 = alphas.iter().zip(&weights).map(|(a, w)| w * a.powi(k as i32)).sum();
                assert!((approx - 1.0 / (k as f64 + 1.0)).abs() < 1e-12, "n {n}, k {k}: {approx}");
            }
        }
        // The 2-point rule's nodes: (1 ± 1/√3) / 2.
        let (a, _) = IntegrationRule::GaussLegendre.nodes(2).unwrap();
        assert!((a[0] - (1.0 - 1.0 / 3f64.sqrt()) / 2.0).abs() < 1e-15);
    }

    #[test]
    fn riemann_and_trapezoid_rules_place_their_points_as_documented() {
        let (a, w) = IntegrationRule::RiemannMiddle.nodes(4).unwrap();
        assert_eq!(a, vec![0.125, 0.375, 0.625, 0.875]);
        assert_eq!(w, vec![0.25; 4]);
        let (a, w) = IntegrationRule::Trapezoid.nodes(3).unwrap();
        assert_eq!((a, w), (vec![0.0, 0.5, 1.0], vec![0.25, 0.5, 0.25]));
        assert_eq!(IntegrationRule::RiemannRight.nodes(2).unwrap().0, vec![0.5, 1.0]);
        assert_eq!(IntegrationRule::RiemannLeft.nodes(2).unwrap().0, vec![0.0, 0.5]);
        let err = IntegrationRule::Trapezoid.nodes(1).unwrap_err().to_string();
        assert!(err.contains("--steps 1") && err.contains("at least 2"), "{err}");
        let err = IntegrationRule::GaussLegendre.nodes(0).unwrap_err().to_string();
        assert!(err.contains("--steps 0"), "{err}");
    }

    #[test]
    fn word_spans_join_the_pieces_of_a_word_and_skip_special_tokens() {
        let encoded = Encoded {
            ids: vec![101, 1, 2, 3, 102, 4, 102],
            type_ids: vec![0, 0, 0, 0, 0, 1, 1],
            word_ids: vec![None, Some(0), Some(0), Some(1), None, Some(0), None],
        };
        let spans = word_spans(&encoded, &[9.0, 1.0, 2.0, 4.0, 9.0, 8.0, 9.0]);
        assert_eq!(spans, vec![(1, 3, 3.0), (3, 4, 4.0), (5, 6, 8.0)]);
    }
}

//! Looking inside a model: one input's hidden states, the attention
//! probabilities of every layer and head, the pooled output and the logits,
//! as transformers' `output_hidden_states=True, output_attentions=True`
//! gives them. `berth inspect` writes them out (docs/formats.md).
//!
//! The encoder's attention is one fused op that never keeps its
//! probabilities, so they are recomputed here from each layer's input: the
//! layer's own query and key projections on the tape (ModernBERT's after
//! its pre-norm, turned by rotary embeddings), then softmax(q·kᵀ·s) per head
//! in f64, within the window on ModernBERT's local layers and with DeBERTa's
//! content-to-position and position-to-content terms added. The hidden
//! states are the encoder's own.

use super::deberta::DebertaSettings;
use super::heads::BertClassifier;
use super::params::HeadKind;
use std::sync::Arc;

use super::bert::zero_leaf;
use crate::autograd::Tape;
use crate::autograd::linear::linear;
use crate::autograd::norm::layer_norm;
use crate::autograd::rotary::rotary;
use crate::data::Batch;
use crate::error::{Error, Result};
use crate::model::ForwardMode;
use crate::numerics::softmax;
use crate::tensor::Tensor;

/// What one input looks like inside the model, every tensor in the model's dtype.
pub struct Inspection {
    /// The embedding output, then each layer's output, each (T, H).
    pub hidden: Vec<Tensor>,
    /// Per layer, the attention probabilities (heads, T, T): row i is query
    /// position i's distribution over key positions.
    pub attention: Vec<Tensor>,
    /// (H) the pooler's output, for sequence heads.
    pub pooled: Option<Tensor>,
    /// (C) for sequence heads, (T, C) for token heads.
    pub logits: Tensor,
}

/// batch (1, T), unpadded -> the hidden states, attention probabilities,
/// pooled output and logits of its one input (eval mode, no dropout).
pub fn inspect(model: &BertClassifier, batch: &Batch) -> Result<Inspection> {
    if batch.batch_size != 1 || batch.attention_mask.contains(&0) {
        return Err(Error::shape("inspect", format!("one unpadded input, got a batch of {} with padding", batch.batch_size)));
    }
    let t = batch.seq_len;
    let mut tape = Tape::no_grad();
    let out = model.forward(&mut tape, batch, ForwardMode::eval())?;
    let config = &model.config;
    let (heads, d) = (config.num_attention_heads, config.head_dim());
    let mut scale = 1.0 / (d as f64).sqrt();
    // DeBERTa: the relative embeddings as every layer reads them (normed),
    // the table row of each distance i − j, and its one scale 1/sqrt(3·D).
    let mut relative = None;
    if let (Some(settings), Some((table, norm))) = (&config.deberta, model.encoder_params().relative()) {
        let table = out.params[table];
        let rel = match norm {
            Some(norm) => {
                let bias = norm.bias.map(|b| out.params[b]).expect("DeBERTa's relative LayerNorm has a bias");
                layer_norm(&mut tape, table, out.params[norm.weight], bias, config.layer_norm_eps)?
            }
            None => table,
        };
        relative = Some((rel, settings.distance_rows(t)));
        scale = DebertaSettings::attention_scale(d);
    }
    let mut attention = Vec::with_capacity(config.num_hidden_layers);
    for layer in 0..config.num_hidden_layers {
        // The layer's input is the previous hidden state.
        let mut x = out.hidden_states[layer];
        let encoder = model.encoder_params();
        if let (Some(_), Some(norm)) = (&config.modern, encoder.attention_norm(layer)) {
            // ModernBERT's pre-norm (bias-free: a zero bias).
            let bias = match norm.bias {
                Some(b) => out.params[b],
                None => zero_leaf(&mut tape, x, &[config.hidden_size])?,
            };
            x = layer_norm(&mut tape, x, out.params[norm.weight], bias, config.layer_norm_eps)?;
        }
        let (query, key) = encoder.query_key(layer);
        let mut q = linear(&mut tape, x, out.params[query.weight], query.bias.map(|b| out.params[b]))?;
        let mut k = linear(&mut tape, x, out.params[key.weight], key.bias.map(|b| out.params[b]))?;
        let mut window = None;
        if let Some(modern) = &config.modern {
            // Turned by their positions, as the layer does; a local layer reads a window.
            let positions: Arc<[usize]> = (0..t).collect();
            let inv_freq: Arc<[f64]> = modern.inv_freq(layer, d).into();
            q = rotary(&mut tape, q, positions.clone(), heads, inv_freq.clone())?;
            k = rotary(&mut tape, k, positions, heads, inv_freq)?;
            window = modern.window_of(layer);
        }
        // DeBERTa's position tables, through this layer's own projections.
        let tables = match &relative {
            Some((rel, rows)) => {
                let pq = linear(&mut tape, *rel, out.params[query.weight], query.bias.map(|b| out.params[b]))?;
                let pk = linear(&mut tape, *rel, out.params[key.weight], key.bias.map(|b| out.params[b]))?;
                Some((tape.value(pq).to_f64_vec(), tape.value(pk).to_f64_vec(), rows))
            }
            None => None,
        };
        let (q, k) = (tape.value(q).to_f64_vec(), tape.value(k).to_f64_vec());
        let width = heads * d;
        let mut probs = Vec::with_capacity(heads * t * t);
        for h in 0..heads {
            for i in 0..t {
                let qi = &q[i * width + h * d..i * width + (h + 1) * d];
                let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
                // Keys outside the window score -inf: probability exactly 0.
                let scores: Vec<f64> = (0..t)
                    .map(|j| {
                        let kj = &k[j * width + h * d..j * width + (h + 1) * d];
                        match (window, &tables) {
                            (Some(w), _) if i.abs_diff(j) > w => f64::NEG_INFINITY,
                            // q_i·k_j + q_i·pk[r] + k_j·pq[r], r the row of distance i − j.
                            (_, Some((pq, pk, rows))) => {
                                let r = rows[i + t - 1 - j] as usize;
                                let at = r * width + h * d..r * width + (h + 1) * d;
                                (dot(qi, kj) + dot(qi, &pk[at.clone()]) + dot(kj, &pq[at])) * scale
                            }
                            _ => dot(qi, kj) * scale,
                        }
                    })
                    .collect();
                probs.extend(softmax(&scores));
            }
        }
        let like = tape.value(x);
        attention.push(Tensor::from_f64_like(probs, &[heads, t, t], like)?);
    }
    let drop_batch = |v: &Tensor| -> Result<Tensor> { v.reshape(&v.shape()[1..]) };
    let hidden = out.hidden_states.iter().map(|&v| drop_batch(tape.value(v))).collect::<Result<Vec<_>>>()?;
    let pooled = out.pooled.map(|v| drop_batch(tape.value(v))).transpose()?;
    let logits = drop_batch(tape.value(out.logits))?;
    debug_assert!(model.head == HeadKind::TokenClassification || logits.dims() == 1);
    Ok(Inspection { hidden, attention, pooled, logits })
}

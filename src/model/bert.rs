//! The BERT encoder: embeddings, then `num_hidden_layers` post-LN
//! transformer layers, written once on the tape so forward and backward
//! share one description of the model. RoBERTa, XLM-R, ELECTRA and
//! DistilBERT run the same encoder; their `Family` changes the position
//! rows, the token types, the embeddings' width and the attention-output
//! dropout.

use std::sync::Arc;

use super::config::BertConfig;
use super::params::{ParamStore, WeightCache};
use crate::autograd::attention::{attention, packed_attention};
use crate::autograd::basic::{DropoutKey, add, dropout, gelu};
use crate::autograd::embedding::embeddings_ln;
use crate::autograd::linear::{linear_int8, linear_with};
use crate::autograd::norm::layer_norm;
use crate::autograd::rows::{gather_rows, scatter_rows};
use crate::autograd::{Tape, Var};
use crate::backend;
use crate::data::Batch;
use crate::error::{Error, Result};

/// How a forward pass runs: with dropout (training) or without (evaluation).
#[derive(Clone, Copy, Debug, Default)]
pub struct ForwardMode {
    /// Some(seed) turns dropout on; each dropout site draws from its own stream.
    pub dropout_seed: Option<u64>,
    /// On the CPU, compute the batch's real tokens only, none of its
    /// padding (see [`ForwardMode::skipping_padding`]).
    pub skip_padding: bool,
}

impl ForwardMode {
    pub fn eval() -> Self {
        ForwardMode { dropout_seed: None, skip_padding: false }
    }

    pub fn train(seed: u64) -> Self {
        ForwardMode { dropout_seed: Some(seed), skip_padding: false }
    }

    /// The same mode, but on the CPU the encoder computes the batch's real
    /// tokens only: they are packed (N, H), and each sequence attends to its
    /// own tokens (with dropout on, attention falls back to the padded
    /// layout). Real tokens' values, and so logits, are the same up to
    /// rounding order; hidden states at padding positions are zero instead
    /// of what Hugging Face computes there, so the reference checks run
    /// without it. Prediction and evaluation use it: padding costs nothing.
    pub fn skipping_padding(self) -> Self {
        ForwardMode { skip_padding: true, ..self }
    }

    /// The dropout key of site `stream`, or None at evaluation.
    pub fn key(&self, stream: u64) -> Option<DropoutKey> {
        self.dropout_seed.map(|seed| DropoutKey { seed, stream })
    }
}

/// Dropout stream ids: one per site, stable across devices and runs.
pub mod streams {
    pub const EMBEDDINGS: u64 = 0;
    pub fn attention_probs(layer: usize) -> u64 {
        1 + 3 * layer as u64
    }
    pub fn attention_output(layer: usize) -> u64 {
        2 + 3 * layer as u64
    }
    pub fn ffn_output(layer: usize) -> u64 {
        3 + 3 * layer as u64
    }
    pub const CLASSIFIER: u64 = 1 << 20;
    /// RoBERTa's dropout before the head's dense layer.
    pub const CLASSIFIER_INPUT: u64 = (1 << 20) + 1;
}

/// Indices into the ParamStore of one encoder layer's parameters.
#[derive(Clone, Debug)]
struct LayerParams {
    query: (usize, usize),
    key: (usize, usize),
    value: (usize, usize),
    attention_output: (usize, usize),
    attention_norm: (usize, usize),
    intermediate: (usize, usize),
    output: (usize, usize),
    output_norm: (usize, usize),
}

/// The encoder's parameter positions, resolved once at load.
#[derive(Clone, Debug)]
pub struct EncoderParams {
    word: usize,
    position: usize,
    /// None: the family has no token types (DistilBERT).
    token_type: Option<usize>,
    embedding_norm: (usize, usize),
    /// ELECTRA's `embeddings_project` (embedding width -> hidden size).
    projection: Option<(usize, usize)>,
    layers: Vec<LayerParams>,
}

fn pair(store: &ParamStore, prefix: &str, weight: &str, bias: &str) -> Result<(usize, usize)> {
    Ok((store.position(&format!("{prefix}.{weight}"))?, store.position(&format!("{prefix}.{bias}"))?))
}

impl EncoderParams {
    /// The ParamStore position of the word-embedding table (V, E).
    pub fn word_table(&self) -> usize {
        self.word
    }

    /// The (weight, bias) positions of layer `layer`'s query and key projections.
    pub fn query_key(&self, layer: usize) -> ((usize, usize), (usize, usize)) {
        (self.layers[layer].query, self.layers[layer].key)
    }

    pub fn resolve(store: &ParamStore, config: &BertConfig) -> Result<EncoderParams> {
        let e = "bert.embeddings";
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for l in 0..config.num_hidden_layers {
            let p = format!("bert.encoder.layer.{l}");
            let wb = |name: &str| pair(store, &format!("{p}.{name}"), "weight", "bias");
            layers.push(LayerParams {
                query: wb("attention.self.query")?,
                key: wb("attention.self.key")?,
                value: wb("attention.self.value")?,
                attention_output: wb("attention.output.dense")?,
                attention_norm: wb("attention.output.LayerNorm")?,
                intermediate: wb("intermediate.dense")?,
                output: wb("output.dense")?,
                output_norm: wb("output.LayerNorm")?,
            });
        }
        Ok(EncoderParams {
            word: store.position(&format!("{e}.word_embeddings.weight"))?,
            position: store.position(&format!("{e}.position_embeddings.weight"))?,
            token_type: match config.family.has_token_type_table() {
                true => Some(store.position(&format!("{e}.token_type_embeddings.weight"))?),
                false => None,
            },
            embedding_norm: pair(store, &format!("{e}.LayerNorm"), "weight", "bias")?,
            projection: match config.projects_embeddings() {
                true => Some(pair(store, "bert.embeddings_project", "weight", "bias")?),
                false => None,
            },
            layers,
        })
    }
}

/// Runs the encoder. `params` are the tape variables of the ParamStore, in
/// store order. Returns the hidden states: the embedding output first, then
/// the output of each layer, each (B, T, H).
pub fn encoder_forward(
    tape: &mut Tape,
    config: &BertConfig,
    ids: &EncoderParams,
    params: &[Var],
    batch: &Batch,
    mode: ForwardMode,
    cache: Option<(&ParamStore, &WeightCache)>,
) -> Result<Vec<Var>> {
    // A linear layer from (weight, bias) positions, using the cache's INT8
    // or transposed weight when one is current.
    let lin = |tape: &mut Tape, x: Var, (w, b): (usize, usize)| {
        if let Some(quantized) = cache.and_then(|(store, c)| c.quantized(w, &store.tensors()[w])) {
            return linear_int8(tape, x, quantized, Some(params[b]));
        }
        let weight_t = cache.and_then(|(store, c)| c.get(w, &store.tensors()[w]));
        linear_with(tape, x, params[w], Some(params[b]), weight_t)
    };
    batch.validate()?;
    let (b, t) = (batch.batch_size, batch.seq_len);
    if t > config.max_sequence_length() {
        return Err(Error::InvalidArgument(format!(
            "sequence length {t} exceeds the {} positions of the model (max_position_embeddings {}, from row {})",
            config.max_sequence_length(),
            config.max_position_embeddings,
            config.position_offset()
        )));
    }
    let eps = config.layer_norm_eps;
    let heads = config.num_attention_heads;
    let hidden_p = config.hidden_dropout_prob;

    // Embeddings: LayerNorm(word + token type + position), then dropout.
    let (w, bias) = ids.embedding_norm;
    let (word, pos, ln) = (params[ids.word], params[ids.position], (params[w], params[bias]));
    // A family without token types adds a constant zero row instead (no gradient).
    let types = match ids.token_type {
        Some(p) => params[p],
        None => {
            let table = tape.value(word);
            let zeros = backend::of(table).zeros_like(table, &[1, table.shape()[1]])?;
            tape.leaf(zeros, false)
        }
    };
    // RoBERTa's real tokens read position rows offset, offset + 1, ... (its
    // padding reads row pad_token_id, but padding never reaches a real
    // token), so the encoder sees the table from row `offset` on; the rows
    // before it get no gradient, as in transformers.
    let offset = config.position_offset();
    let pos = if offset > 0 { gather_rows(tape, pos, (offset..offset + t).collect())? } else { pos };
    let no_types;
    let type_ids = if config.family.uses_token_types() {
        &batch.token_type_ids
    } else {
        no_types = vec![0; batch.token_type_ids.len()];
        &no_types
    };
    let x = embeddings_ln(tape, word, types, pos, ln, &batch.input_ids, type_ids, (b, t), eps)?;
    let x = dropout(tape, x, hidden_p, mode.key(streams::EMBEDDINGS))?;
    // ELECTRA: (B, T, E) -> (B, T, H).
    let x = match ids.projection {
        Some(p) => lin(tape, x, p)?,
        None => x,
    };

    // With `skip_padding`, where the backend packs rows (the CPU), `x` holds
    // the real tokens only, packed (N, H); `real_rows` are their positions in
    // the padded (B·T) layout. Hidden states are returned padded, as the
    // heads expect.
    let hidden = config.hidden_size;
    let packs_rows = backend::of(tape.value(x)).packs_rows();
    let real_rows: Option<Arc<[usize]>> = (mode.skip_padding && packs_rows)
        .then(|| batch.attention_mask.iter().enumerate().filter(|&(_, &m)| m != 0).map(|(i, _)| i).collect());
    // Real tokens per sequence (packed, each sequence's rows are consecutive);
    // only the packed path needs them.
    let sequence_lengths: Option<Arc<[usize]>> =
        real_rows.as_ref().map(|_| batch.attention_mask.chunks(t.max(1)).map(|row| row.iter().filter(|&&m| m != 0).count()).collect());
    let padded = |tape: &mut Tape, v: Var| match &real_rows {
        Some(rows) => scatter_rows(tape, v, rows.clone(), &[b, t, hidden]),
        None => Ok(v),
    };
    let packed = |tape: &mut Tape, v: Var| match &real_rows {
        Some(rows) => gather_rows(tape, v, rows.clone()),
        None => Ok(v),
    };
    let mut x = packed(tape, x)?;
    let mut hidden_states = vec![padded(tape, x)?];
    tape.release_since(0, &[hidden_states[0], x]);
    let scale_factor = 1.0 / (config.head_dim() as f64).sqrt();
    for (l, lp) in ids.layers.iter().enumerate() {
        let layer_start = tape.len();
        // Self-attention: (B, T, H) -> per-head (B, heads, T, d).
        let q = lin(tape, x, lp.query)?;
        let k = lin(tape, x, lp.key)?;
        let v = lin(tape, x, lp.value)?;
        let probs_dropout = mode.key(streams::attention_probs(l)).map(|key| (config.attention_probs_dropout_prob, key));
        let context = match sequence_lengths.as_ref() {
            Some(lens) if probs_dropout.is_none() => packed_attention(tape, q, k, v, lens.clone(), heads, scale_factor)?,
            _ => {
                let (q, k, v) = (padded(tape, q)?, padded(tape, k)?, padded(tape, v)?);
                let context = attention(tape, (q, k, v), &batch.attention_mask, heads, scale_factor, probs_dropout)?;
                packed(tape, context)?
            }
        };
        let attn = lin(tape, context, lp.attention_output)?;
        let attn = match config.family.drops_attention_output() {
            true => dropout(tape, attn, hidden_p, mode.key(streams::attention_output(l)))?,
            false => attn,
        };
        let attn = add(tape, attn, x)?;
        let x1 = layer_norm(tape, attn, params[lp.attention_norm.0], params[lp.attention_norm.1], eps)?;

        // Feed-forward: H -> intermediate (GELU) -> H, residual, LayerNorm.
        let inner = lin(tape, x1, lp.intermediate)?;
        let inner = gelu(tape, inner)?;
        let out = lin(tape, inner, lp.output)?;
        let out = dropout(tape, out, hidden_p, mode.key(streams::ffn_output(l)))?;
        let out = add(tape, out, x1)?;
        x = layer_norm(tape, out, params[lp.output_norm.0], params[lp.output_norm.1], eps)?;
        let state = padded(tape, x)?;
        hidden_states.push(state);
        let keep: Vec<Var> = hidden_states.iter().copied().chain([x]).collect();
        tape.release_since(layer_start, &keep);
    }
    Ok(hidden_states)
}

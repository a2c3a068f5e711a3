//! The BERT encoder: embeddings, then `num_hidden_layers` transformer
//! layers, written once on the tape so forward and backward share one
//! description of the model. RoBERTa, XLM-R, ELECTRA and DistilBERT run the
//! same encoder; their `Family` changes the position rows, the token types,
//! the embeddings' width and the attention-output dropout. ModernBERT runs
//! it too, through its variation points: embeddings without position or
//! type tables, pre-norm layers ([`pre_norm_layer`]) with linears and norms
//! that have no bias, rotary q and k, a sliding window on local layers, the
//! GeGLU feed-forward, and a final norm.

use std::sync::Arc;

use super::config::{BertConfig, Family, ModernBertSettings};
use super::deberta::DebertaSettings;
use super::params::{FusedWeight, ParamStore, WeightCache};
use crate::autograd::attention::{
    packed_attention_in, packed_attention_qkv, packed_relative_attention, relative_attention, windowed_attention,
};
use crate::autograd::basic::{DropoutKey, add, dropout, dropout_draws, dropout_rows, geglu, gelu, reshape};
use crate::autograd::embedding::embeddings_ln;
use crate::autograd::linear::{linear_from_packed, linear_packed, linear_packed_gelu, linear_packed_residual, linear_with};
use crate::autograd::norm::layer_norm;
use crate::autograd::rotary::rotary;
use crate::autograd::rows::{gather_rows, scatter_rows};
use crate::autograd::{Tape, Var};
use crate::backend::{self, AttentionDropout, PackedAttentionMode, PackedDropout};
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
    /// Return the final hidden state only (see [`ForwardMode::last_state_only`]).
    pub last_state_only: bool,
}

impl ForwardMode {
    pub fn eval() -> Self {
        ForwardMode { dropout_seed: None, skip_padding: false, last_state_only: false }
    }

    pub fn train(seed: u64) -> Self {
        ForwardMode { dropout_seed: Some(seed), skip_padding: false, last_state_only: false }
    }

    /// The same mode, but the output's `hidden_states` holds the final
    /// layer's state alone, what the heads read: with packed rows each
    /// layer's state would otherwise be scattered back to the padded
    /// layout and kept, for nobody (prediction, evaluation, training).
    pub fn last_state_only(self) -> Self {
        ForwardMode { last_state_only: true, ..self }
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
    /// DeBERTa's dropout of the relative embeddings in each layer.
    pub fn relative_embeddings(layer: usize) -> u64 {
        (1 << 21) + layer as u64
    }
    pub const CLASSIFIER: u64 = 1 << 20;
    /// RoBERTa's dropout before the head's dense layer.
    pub const CLASSIFIER_INPUT: u64 = (1 << 20) + 1;
}

/// The store positions of a linear layer or a norm: its weight, and its
/// bias where the family has one (ModernBERT has none).
#[derive(Clone, Copy, Debug)]
pub struct Affine {
    pub weight: usize,
    pub bias: Option<usize>,
}

/// Indices into the ParamStore of one encoder layer's parameters. A
/// post-norm layer (BERT) normalises after each residual add
/// (`attention_norm`, `output_norm`); a pre-norm layer (ModernBERT) before
/// each block (`attention_norm`, absent on its first layer, and
/// `output_norm`, the norm before the feed-forward).
#[derive(Clone, Debug)]
struct LayerParams {
    query: Affine,
    key: Affine,
    value: Affine,
    attention_output: Affine,
    attention_norm: Option<Affine>,
    intermediate: Affine,
    output: Affine,
    output_norm: Affine,
}

/// The encoder's parameter positions, resolved once at load.
#[derive(Clone, Debug)]
pub struct EncoderParams {
    word: usize,
    /// None: the family has no position table (ModernBERT).
    position: Option<usize>,
    /// None: the family has no token types (DistilBERT, ModernBERT).
    token_type: Option<usize>,
    embedding_norm: Affine,
    /// ELECTRA's `embeddings_project` (embedding width -> hidden size).
    projection: Option<Affine>,
    layers: Vec<LayerParams>,
    /// ModernBERT's norm after the last layer.
    final_norm: Option<Affine>,
    /// DeBERTa's relative embeddings (2·span, H) and their LayerNorm.
    relative: Option<(usize, Option<Affine>)>,
}

/// `prefix.weight` and `prefix.bias`.
fn pair(store: &ParamStore, prefix: &str) -> Result<Affine> {
    Ok(Affine { weight: store.position(&format!("{prefix}.weight"))?, bias: Some(store.position(&format!("{prefix}.bias"))?) })
}

/// `prefix.weight` alone.
fn weight_only(store: &ParamStore, prefix: &str) -> Result<Affine> {
    Ok(Affine { weight: store.position(&format!("{prefix}.weight"))?, bias: None })
}

impl EncoderParams {
    /// The ParamStore position of the word-embedding table (V, E).
    pub fn word_table(&self) -> usize {
        self.word
    }

    /// The positions of layer `layer`'s query and key projections.
    pub fn query_key(&self, layer: usize) -> (Affine, Affine) {
        (self.layers[layer].query, self.layers[layer].key)
    }

    /// DeBERTa's relative-embedding table and its LayerNorm (None without `norm_rel_ebd` layer_norm).
    pub fn relative(&self) -> Option<(usize, Option<Affine>)> {
        self.relative
    }

    /// The position of layer `layer`'s attention norm: after the attention
    /// in post-norm layers, before it in pre-norm ones (ModernBERT's; None
    /// on its layer 0).
    pub fn attention_norm(&self, layer: usize) -> Option<Affine> {
        self.layers[layer].attention_norm
    }

    pub fn resolve(store: &ParamStore, config: &BertConfig) -> Result<EncoderParams> {
        if config.family == Family::ModernBert {
            return Self::resolve_modernbert(store, config);
        }
        let deberta = config.family == Family::Deberta;
        let e = "bert.embeddings";
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for l in 0..config.num_hidden_layers {
            let p = format!("bert.encoder.layer.{l}");
            let wb = |name: &str| pair(store, &format!("{p}.{name}"));
            layers.push(LayerParams {
                query: wb("attention.self.query")?,
                key: wb("attention.self.key")?,
                value: wb("attention.self.value")?,
                attention_output: wb("attention.output.dense")?,
                attention_norm: Some(wb("attention.output.LayerNorm")?),
                intermediate: wb("intermediate.dense")?,
                output: wb("output.dense")?,
                output_norm: wb("output.LayerNorm")?,
            });
        }
        Ok(EncoderParams {
            word: store.position(&format!("{e}.word_embeddings.weight"))?,
            position: match config.family.has_position_table() {
                true => Some(store.position(&format!("{e}.position_embeddings.weight"))?),
                false => None,
            },
            token_type: match config.family.has_token_type_table() {
                true => Some(store.position(&format!("{e}.token_type_embeddings.weight"))?),
                false => None,
            },
            embedding_norm: pair(store, &format!("{e}.LayerNorm"))?,
            projection: match config.projects_embeddings() {
                true => Some(pair(store, "bert.embeddings_project")?),
                false => None,
            },
            layers,
            final_norm: None,
            relative: match deberta {
                true => Some((
                    store.position("bert.encoder.rel_embeddings.weight")?,
                    match config.deberta.as_ref().is_some_and(|d| d.normed_relative_embeddings) {
                        true => Some(pair(store, "bert.encoder.LayerNorm")?),
                        false => None,
                    },
                )),
                false => None,
            },
        })
    }

    /// ModernBERT's names (`params::expected_parameters`): weights only.
    fn resolve_modernbert(store: &ParamStore, config: &BertConfig) -> Result<EncoderParams> {
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for l in 0..config.num_hidden_layers {
            let p = format!("bert.encoder.layer.{l}");
            let w = |name: &str| weight_only(store, &format!("{p}.{name}"));
            layers.push(LayerParams {
                query: w("attention.self.query")?,
                key: w("attention.self.key")?,
                value: w("attention.self.value")?,
                attention_output: w("attention.output.dense")?,
                attention_norm: if l == 0 { None } else { Some(w("attention.LayerNorm")?) },
                intermediate: w("intermediate.dense")?,
                output: w("output.dense")?,
                output_norm: w("intermediate.LayerNorm")?,
            });
        }
        Ok(EncoderParams {
            word: store.position("bert.embeddings.word_embeddings.weight")?,
            position: None,
            token_type: None,
            embedding_norm: weight_only(store, "bert.embeddings.LayerNorm")?,
            projection: None,
            layers,
            final_norm: Some(weight_only(store, "bert.final_norm.LayerNorm")?),
            relative: None,
        })
    }
}

/// A constant zero tensor of `shape` where `like` lives, as a leaf without
/// gradient: the bias of a norm that has none, or the token-type row of a
/// family without token types.
pub(super) fn zero_leaf(tape: &mut Tape, like: Var, shape: &[usize]) -> Result<Var> {
    let t = tape.value(like);
    let zeros = backend::of(t).zeros_like(t, shape)?;
    Ok(tape.leaf(zeros, false))
}

/// What every layer of one forward pass shares: the parameters, the cached
/// weights, the batch's layout and the dropout mode.
struct LayerContext<'a> {
    config: &'a BertConfig,
    params: &'a [Var],
    cache: Option<(&'a ParamStore, &'a WeightCache)>,
    batch: &'a Batch,
    mode: ForwardMode,
    /// With `skip_padding` on a backend that packs rows: the real tokens'
    /// rows in the padded (B·T) layout, and each sequence's length.
    real_rows: Option<Arc<[usize]>>,
    sequence_lengths: Option<Arc<[usize]>>,
    /// The zero bias of norms without one (ModernBERT).
    zero_bias: Option<Var>,
    /// DeBERTa: the (normed) relative embeddings this batch reads (U, H),
    /// and the row of them each distance of the padded layout reads (2T − 1).
    relative: Option<(Var, Arc<[u32]>)>,
}

impl LayerContext<'_> {
    /// A linear layer, using the cache's packed or transposed weight when one is current.
    fn linear(&self, tape: &mut Tape, x: Var, layer: Affine) -> Result<Var> {
        let (w, bias) = (layer.weight, layer.bias.map(|b| self.params[b]));
        match self.cached_packed(w) {
            // A tape with gradients and an f32 or BF16 packed weight: the
            // packed forward, a backward of the weight's precision.
            Some(packed @ (backend::PackedWeight::F32(_) | backend::PackedWeight::Bf16(_))) if tape.grad_enabled() => {
                linear_from_packed(tape, x, self.params[w], bias, packed)
            }
            Some(packed) => linear_packed(tape, x, packed, bias),
            None => {
                let weight_t = self.cache.and_then(|(store, c)| c.get(w, &store.tensors()[w]));
                linear_with(tape, x, self.params[w], bias, weight_t)
            }
        }
    }

    /// The cache's packed copy (INT8, BF16 or f32) of weight `w`, if it has one.
    fn cached_packed(&self, w: usize) -> Option<&backend::PackedWeight> {
        self.cache.and_then(|(store, c)| c.packed(w, &store.tensors()[w]))
    }

    /// The packed copy of weight `w` for the forward-only packed ops, if it
    /// has one: INT8 always (its op refuses a backward), f32 and BF16 only on
    /// a tape without gradients (with them `linear` runs a trainable op on
    /// the packed forward, `linear_from_packed`, and GELU and the residual
    /// stay ops of their own, whose backward they need).
    fn packed_weight(&self, tape: &Tape, w: usize) -> Option<&backend::PackedWeight> {
        self.cached_packed(w).filter(|packed| matches!(packed, backend::PackedWeight::Int8(_)) || !tape.grad_enabled())
    }

    /// GELU(linear(x)): with a packed weight one op, GELU in the kernel's epilogue.
    fn linear_gelu(&self, tape: &mut Tape, x: Var, layer: Affine) -> Result<Var> {
        let (w, bias) = (layer.weight, layer.bias.map(|b| self.params[b]));
        if let Some(packed) = self.packed_weight(tape, w) {
            return linear_packed_gelu(tape, x, packed, bias);
        }
        let inner = self.linear(tape, x, layer)?;
        gelu(tape, inner)
    }

    /// dropout(linear(x)) + residual, the residual connection after an
    /// output projection: with a packed weight (inference, so the dropout
    /// draws nothing) one op, the residual added in the kernel's epilogue.
    fn linear_dropout_residual(&self, tape: &mut Tape, x: Var, layer: Affine, dropout: (f64, u64), residual: Var) -> Result<Var> {
        let (p, stream) = dropout;
        let (w, bias) = (layer.weight, layer.bias.map(|b| self.params[b]));
        if !dropout_draws(p, self.mode.key(stream))
            && let Some(packed) = self.packed_weight(tape, w)
        {
            return linear_packed_residual(tape, x, packed, bias, residual);
        }
        let y = self.linear(tape, x, layer)?;
        let y = self.dropout(tape, y, p, stream)?;
        add(tape, y, residual)
    }

    fn norm(&self, tape: &mut Tape, x: Var, norm: Affine) -> Result<Var> {
        let bias = match norm.bias {
            Some(b) => self.params[b],
            None => self.zero_bias.expect("a family with bias-free norms makes its zero bias"),
        };
        layer_norm(tape, x, self.params[norm.weight], bias, self.config.layer_norm_eps)
    }

    /// Dropout at site `stream` of rows in this layout: packed rows draw
    /// the masks of their places in the padded layout, so packing a
    /// training batch changes no mask.
    fn dropout(&self, tape: &mut Tape, x: Var, p: f64, stream: u64) -> Result<Var> {
        dropout_rows(tape, x, p, self.mode.key(stream), self.real_rows.as_ref())
    }

    /// (N, H) rows as the heads expect them: (B, T, H), padding rows zero.
    fn padded(&self, tape: &mut Tape, v: Var) -> Result<Var> {
        match &self.real_rows {
            Some(rows) => {
                let width = tape.value(v).shape()[1];
                scatter_rows(tape, v, rows.clone(), &[self.batch.batch_size, self.batch.seq_len, width])
            }
            None => Ok(v),
        }
    }

    /// (B, T, H) -> the real tokens' rows (N, H) when packing; else unchanged.
    fn packed(&self, tape: &mut Tape, v: Var) -> Result<Var> {
        match &self.real_rows {
            Some(rows) => gather_rows(tape, v, rows.clone()),
            None => Ok(v),
        }
    }

    /// Self-attention's context, q, k, v (rows of x's layout) -> (same
    /// layout, H): packed where the rows are packed (probability dropout
    /// keyed by the padded layout), else over the padded batch.
    /// The attention probabilities' dropout of `layer` in this pass, if any.
    fn probs_dropout(&self, layer: usize) -> Option<(f64, DropoutKey)> {
        // No dropout at p = 0 (ModernBERT's default): it would still draw a mask.
        let p = self.config.attention_probs_dropout_prob;
        self.mode.key(streams::attention_probs(layer)).filter(|_| p > 0.0).map(|key| (p, key))
    }

    /// Inference on the CPU: q, k and v from one fused projection
    /// and the attention reading them in place, where the cache holds the
    /// layer's fused weight, the tape keeps no gradients, rows are packed,
    /// no dropout runs and attention is plain (not DeBERTa's). None elsewhere.
    fn fused_qkv_attention(&self, tape: &mut Tape, x: Var, lp: &LayerParams, layer: usize) -> Result<Option<Var>> {
        let (Some((store, cache)), Some(lens)) = (self.cache, self.sequence_lengths.as_ref()) else {
            return Ok(None);
        };
        if tape.grad_enabled() || self.relative.is_some() || self.probs_dropout(layer).is_some() {
            return Ok(None);
        }
        let parts = [lp.query, lp.key, lp.value];
        let positions = parts.iter().map(|a| a.weight).chain(parts.iter().filter_map(|a| a.bias));
        let current: Vec<_> = positions.map(|i| &store.tensors()[i]).collect();
        let Some(fused) = cache.fused_qkv(lp.query.weight, &current) else {
            return Ok(None);
        };
        let bias = fused.bias.as_ref().map(|b| tape.leaf(b.clone(), false));
        let qkv = match &fused.weight {
            FusedWeight::Packed(weight) => linear_packed(tape, x, weight, bias)?,
            FusedWeight::F32 { weight, transposed } => {
                let weight = tape.leaf(weight.clone(), false);
                linear_with(tape, x, weight, bias, Some(transposed))?
            }
        };
        let scale = 1.0 / (self.config.head_dim() as f64).sqrt();
        packed_attention_qkv(tape, qkv, lens.clone(), self.config.num_attention_heads, scale).map(Some)
    }

    fn attention(&self, tape: &mut Tape, (q, k, v): (Var, Var, Var), layer: usize, window: Option<usize>) -> Result<Var> {
        let (heads, config) = (self.config.num_attention_heads, self.config);
        let scale = 1.0 / (config.head_dim() as f64).sqrt();
        let probs_dropout = self.probs_dropout(layer);
        match self.sequence_lengths.as_ref() {
            Some(lens) => {
                let dropout =
                    probs_dropout.map(|(p, key)| PackedDropout { dropout: AttentionDropout { p, key }, padded_len: self.batch.seq_len });
                packed_attention_in(tape, (q, k, v), lens.clone(), heads, scale, PackedAttentionMode { window, dropout })
            }
            None => {
                let (q, k, v) = (self.padded(tape, q)?, self.padded(tape, k)?, self.padded(tape, v)?);
                let context = windowed_attention(tape, (q, k, v), &self.batch.attention_mask, heads, scale, window, probs_dropout)?;
                self.packed(tape, context)
            }
        }
    }

    /// DeBERTa's disentangled attention: the layer's own query and key
    /// projections turn the (dropped-out) relative embeddings into its
    /// position tables; then attention over the packed sequences (dropout
    /// keyed by the padded layout), or over the padded batch.
    fn relative_attention(&self, tape: &mut Tape, qkv: (Var, Var, Var), lp: &LayerParams, layer: usize) -> Result<Var> {
        let (rel, rows) = self.relative.clone().expect("DeBERTa layers have relative embeddings");
        let config = self.config;
        let rel = dropout(tape, rel, config.hidden_dropout_prob, self.mode.key(streams::relative_embeddings(layer)))?;
        let pq = self.linear(tape, rel, lp.query)?;
        let pk = self.linear(tape, rel, lp.key)?;
        let probs_dropout = self
            .mode
            .key(streams::attention_probs(layer))
            .filter(|_| config.attention_probs_dropout_prob > 0.0)
            .map(|key| (config.attention_probs_dropout_prob, key));
        let scale = DebertaSettings::attention_scale(config.head_dim());
        if let Some(lens) = self.sequence_lengths.as_ref() {
            let dropout =
                probs_dropout.map(|(p, key)| PackedDropout { dropout: AttentionDropout { p, key }, padded_len: self.batch.seq_len });
            return packed_relative_attention(tape, qkv, (pq, pk), lens.clone(), rows, config.num_attention_heads, scale, dropout);
        }
        let (q, k, v) = (self.padded(tape, qkv.0)?, self.padded(tape, qkv.1)?, self.padded(tape, qkv.2)?);
        let mask = &self.batch.attention_mask;
        let context = relative_attention(tape, (q, k, v), (pq, pk), mask, &rows, config.num_attention_heads, scale, probs_dropout)?;
        self.packed(tape, context)
    }

    /// Each row's position in its sequence: the column of the padded
    /// layout (berth pads on the right, so real tokens count from 0).
    fn positions(&self) -> Arc<[usize]> {
        let t = self.batch.seq_len.max(1);
        match &self.real_rows {
            Some(rows) => rows.iter().map(|r| r % t).collect(),
            None => (0..self.batch.batch_size * self.batch.seq_len).map(|r| r % t).collect(),
        }
    }
}

/// Whether a batch's distances read every row of the relative table.
fn used_all(first: usize, last: usize, settings: &DebertaSettings) -> bool {
    last + 1 - first == settings.relative_rows()
}

/// The real tokens' rows in the padded (B·T) layout.
fn real_rows_of(batch: &Batch) -> Arc<[usize]> {
    batch.attention_mask.iter().enumerate().filter(|&(_, &m)| m != 0).map(|(i, _)| i).collect()
}

/// BERT's post-norm layer: x -> LayerNorm(x + attention(x)) -> LayerNorm(· + FFN(·)).
fn post_norm_layer(tape: &mut Tape, cx: &LayerContext, lp: &LayerParams, l: usize, x: Var) -> Result<Var> {
    let config = cx.config;
    let hidden_p = config.hidden_dropout_prob;
    let context = match cx.fused_qkv_attention(tape, x, lp, l)? {
        Some(context) => context,
        None => {
            let q = cx.linear(tape, x, lp.query)?;
            let k = cx.linear(tape, x, lp.key)?;
            let v = cx.linear(tape, x, lp.value)?;
            match cx.relative {
                Some(_) => cx.relative_attention(tape, (q, k, v), lp, l)?,
                None => cx.attention(tape, (q, k, v), l, None)?,
            }
        }
    };
    // A family that does not drop out the attention output draws nothing there (p = 0).
    let attention_p = if config.family.drops_attention_output() { hidden_p } else { 0.0 };
    let attn = cx.linear_dropout_residual(tape, context, lp.attention_output, (attention_p, streams::attention_output(l)), x)?;
    let x1 = cx.norm(tape, attn, lp.attention_norm.expect("post-norm layers have an attention norm"))?;

    // Feed-forward: H -> intermediate (GELU) -> H, residual, LayerNorm.
    let inner = cx.linear_gelu(tape, x1, lp.intermediate)?;
    let out = cx.linear_dropout_residual(tape, inner, lp.output, (hidden_p, streams::ffn_output(l)), x1)?;
    cx.norm(tape, out, lp.output_norm)
}

/// ModernBERT's pre-norm layer: x -> x + attention(norm(x)) -> · + GeGLU-FFN(norm(·)).
/// Attention rotates q and k by their positions and, on a local layer,
/// reads a window; the attention dropout falls on the probabilities and on
/// the output projection, the feed-forward's before its output projection.
fn pre_norm_layer(
    tape: &mut Tape,
    cx: &LayerContext,
    lp: &LayerParams,
    l: usize,
    x: Var,
    modern: &ModernBertSettings,
    positions: &Arc<[usize]>,
) -> Result<Var> {
    let config = cx.config;
    let heads = config.num_attention_heads;
    let h = match lp.attention_norm {
        Some(norm) => cx.norm(tape, x, norm)?,
        None => x,
    };
    let inv_freq: Arc<[f64]> = modern.inv_freq(l, config.head_dim()).into();
    let q = cx.linear(tape, h, lp.query)?;
    let q = rotary(tape, q, positions.clone(), heads, inv_freq.clone())?;
    let k = cx.linear(tape, h, lp.key)?;
    let k = rotary(tape, k, positions.clone(), heads, inv_freq)?;
    let v = cx.linear(tape, h, lp.value)?;
    let context = cx.attention(tape, (q, k, v), l, modern.window_of(l))?;
    let attn = cx.linear(tape, context, lp.attention_output)?;
    let attn = cx.dropout(tape, attn, config.attention_probs_dropout_prob, streams::attention_output(l))?;
    let x = add(tape, x, attn)?;

    // Feed-forward: norm, H -> 2I (input, gate), GELU(input)·gate, -> H.
    let h = cx.norm(tape, x, lp.output_norm)?;
    let inner = cx.linear(tape, h, lp.intermediate)?;
    let inner = geglu(tape, inner)?;
    let inner = cx.dropout(tape, inner, config.hidden_dropout_prob, streams::ffn_output(l))?;
    let out = cx.linear(tape, inner, lp.output)?;
    add(tape, x, out)
}

/// Runs the encoder. `params` are the tape variables of the ParamStore, in
/// store order. Returns the hidden states: the embedding output first, then
/// the output of each layer, each (B, T, H); with a final norm
/// (ModernBERT), the last is the normed output of the last layer.
pub fn encoder_forward(
    tape: &mut Tape,
    config: &BertConfig,
    ids: &EncoderParams,
    params: &[Var],
    batch: &Batch,
    mode: ForwardMode,
    cache: Option<(&ParamStore, &WeightCache)>,
) -> Result<Vec<Var>> {
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
    let word = params[ids.word];
    let packs_rows = backend::of(tape.value(word)).packs_rows();
    let eps = config.layer_norm_eps;
    let hidden_p = config.hidden_dropout_prob;
    let mut cx =
        LayerContext { config, params, cache, batch, mode, real_rows: None, sequence_lengths: None, zero_bias: None, relative: None };
    if ids.embedding_norm.bias.is_none() {
        cx.zero_bias = Some(zero_leaf(tape, word, &[config.hidden_size])?);
    }

    let x = match ids.position {
        // BERT's embeddings: LayerNorm(word + token type + position), then dropout.
        Some(position) => {
            let ln_bias = params[ids.embedding_norm.bias.expect("tables with positions have a LayerNorm bias")];
            let ln = (params[ids.embedding_norm.weight], ln_bias);
            // A family without token types adds a constant zero row instead (no gradient).
            let types = match ids.token_type {
                Some(p) => params[p],
                None => {
                    let width = tape.value(word).shape()[1];
                    zero_leaf(tape, word, &[1, width])?
                }
            };
            // RoBERTa's real tokens read position rows offset, offset + 1, ... (its
            // padding reads row pad_token_id, but padding never reaches a real
            // token), so the encoder sees the table from row `offset` on; the rows
            // before it get no gradient, as in transformers.
            let offset = config.position_offset();
            let pos = params[position];
            let pos = if offset > 0 { gather_rows(tape, pos, (offset..offset + t).collect())? } else { pos };
            let no_types;
            let type_ids = if config.family.uses_token_types() {
                &batch.token_type_ids
            } else {
                no_types = vec![0; batch.token_type_ids.len()];
                &no_types
            };
            let x = embeddings_ln(tape, word, types, pos, ln, &batch.input_ids, type_ids, (b, t), eps)?;
            dropout(tape, x, hidden_p, mode.key(streams::EMBEDDINGS))?
        }
        // DeBERTa's: LayerNorm(word) through the fused op every backend has
        // (with constant zero type and position rows: x + 0 + 0 is x), then
        // the padding rows zeroed (transformers multiplies by the mask), then dropout.
        None if config.deberta.is_some() => {
            let width = tape.value(word).shape()[1];
            let (types, positions) = (zero_leaf(tape, word, &[1, width])?, zero_leaf(tape, word, &[t, width])?);
            let ln_bias = params[ids.embedding_norm.bias.expect("DeBERTa's embedding LayerNorm has a bias")];
            let ln = (params[ids.embedding_norm.weight], ln_bias);
            let no_types = vec![0; batch.token_type_ids.len()];
            let x = embeddings_ln(tape, word, types, positions, ln, &batch.input_ids, &no_types, (b, t), eps)?;
            let real: Arc<[usize]> = real_rows_of(batch);
            let rows = gather_rows(tape, x, real.clone())?;
            let x = scatter_rows(tape, rows, real, &[b, t, config.hidden_size])?;
            dropout(tape, x, hidden_p, mode.key(streams::EMBEDDINGS))?
        }
        // ModernBERT's: LayerNorm(word) (bias-free: a zero bias) through the
        // same fused op, then its embedding dropout.
        None => {
            let width = tape.value(word).shape()[1];
            let (types, positions) = (zero_leaf(tape, word, &[1, width])?, zero_leaf(tape, word, &[t, width])?);
            let ln_bias = match ids.embedding_norm.bias {
                Some(bias) => params[bias],
                None => cx.zero_bias.expect("a bias-free norm has the zero bias"),
            };
            let ln = (params[ids.embedding_norm.weight], ln_bias);
            let no_types = vec![0; batch.token_type_ids.len()];
            let x = embeddings_ln(tape, word, types, positions, ln, &batch.input_ids, &no_types, (b, t), eps)?;
            let p = config.modern.as_ref().map_or(hidden_p, |m| m.embedding_dropout);
            dropout(tape, x, p, mode.key(streams::EMBEDDINGS))?
        }
    };
    // ELECTRA: (B, T, E) -> (B, T, H).
    let x = match ids.projection {
        Some(p) => cx.linear(tape, x, p)?,
        None => x,
    };

    // With `skip_padding`, where the backend packs rows (the CPU), `x` holds
    // the real tokens only, packed (N, H); `real_rows` are their positions in
    // the padded (B·T) layout. Hidden states are returned padded, as the
    // heads expect.
    cx.real_rows = (mode.skip_padding && packs_rows).then(|| real_rows_of(batch));
    // Real tokens per sequence (packed, each sequence's rows are consecutive);
    // only the packed path needs them.
    cx.sequence_lengths =
        cx.real_rows.as_ref().map(|_| batch.attention_mask.chunks(t.max(1)).map(|row| row.iter().filter(|&&m| m != 0).count()).collect());
    let mut x = cx.packed(tape, x)?;
    let last = ids.layers.len().checked_sub(1);
    let mut hidden_states = Vec::new();
    let mut keep_always: Vec<Var> = cx.zero_bias.into_iter().collect();
    if !mode.last_state_only || last.is_none() {
        hidden_states.push(cx.padded(tape, x)?);
        keep_always.push(hidden_states[0]);
    }
    tape.release_since(0, &[&keep_always[..], &[x]].concat());
    let positions = config.modern.as_ref().map(|_| cx.positions());
    // DeBERTa's relative embeddings, normed once for every layer (as
    // transformers does). Only the rows this batch's distances read are
    // kept (a contiguous run: 255 of deberta-v3-base's 512 at T = 128), so
    // each layer projects those alone; the others get zero gradient.
    if let (Some(settings), Some((table, norm))) = (&config.deberta, ids.relative) {
        let mut rows = settings.distance_rows(t);
        let (first, last) = (rows[0] as usize, rows[rows.len() - 1] as usize);
        let rel = match norm {
            // The rows looked up and normed by the fused embeddings op (zero
            // type and position rows), whose table gradient is F32 on every
            // backend, as a parameter's must be under BF16.
            Some(norm) => {
                let width = tape.value(params[table]).shape()[1];
                let used = last + 1 - first;
                let (types, positions) = (zero_leaf(tape, word, &[1, width])?, zero_leaf(tape, word, &[used, width])?);
                let ln = (params[norm.weight], params[norm.bias.expect("DeBERTa's relative LayerNorm has a bias")]);
                let ids: Vec<u32> = (first as u32..=last as u32).collect();
                let rel = embeddings_ln(tape, params[table], types, positions, ln, &ids, &vec![0; used], (1, used), eps)?;
                reshape(tape, rel, &[used, width])?
            }
            None if !packs_rows => {
                return Err(Error::InvalidArgument(
                    "a DeBERTa model with norm_rel_ebd `none` runs on the CPU only for now (drop --device)".into(),
                ));
            }
            None if used_all(first, last, settings) => params[table],
            None => gather_rows(tape, params[table], (first..=last).collect())?,
        };
        rows.iter_mut().for_each(|r| *r -= first as u32);
        keep_always.push(rel);
        cx.relative = Some((rel, rows.into()));
    }
    for (l, lp) in ids.layers.iter().enumerate() {
        let layer_start = tape.len();
        x = match (&config.modern, &positions) {
            (Some(modern), Some(positions)) => pre_norm_layer(tape, &cx, lp, l, x, modern, positions)?,
            _ => post_norm_layer(tape, &cx, lp, l, x)?,
        };
        if Some(l) == last
            && let Some(norm) = ids.final_norm
        {
            x = cx.norm(tape, x, norm)?;
        }
        if !mode.last_state_only || Some(l) == last {
            let state = cx.padded(tape, x)?;
            hidden_states.push(state);
            keep_always.push(state);
        }
        tape.release_since(layer_start, &[&keep_always[..], &[x]].concat());
    }
    Ok(hidden_states)
}

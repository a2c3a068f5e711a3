//! `BertForSequenceClassification` and `BertForTokenClassification`: the
//! encoder plus a head, and the loss each problem type uses.

use super::bert::{Affine, EncoderParams, ForwardMode, encoder_forward, streams, zero_leaf};
use super::config::{BertConfig, Pooling, ProblemType, SequenceHead};
use super::loss::{LossKind, LossSpec};
use super::params::{HeadKind, ParamStore, WeightCache};
use crate::autograd::basic::{dropout, first_token, gelu, mean_pool, relu, tanh};
use crate::autograd::linear::linear;
use crate::autograd::loss::{bce_with_logits, bce_with_logits_weighted, cross_entropy, focal_cross_entropy, mse, sigmoid_focal};
use crate::autograd::norm::layer_norm;
use crate::autograd::{Tape, Var};
use crate::data::Batch;
use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor};

/// Targets for one batch, in the form each problem type needs.
#[derive(Clone, Debug)]
pub enum Labels {
    /// (B) class ids.
    SingleLabel(Vec<i64>),
    /// (B, C) 0/1 (or soft) targets, row-major.
    MultiLabel(Vec<f64>),
    /// (B) real-valued targets.
    Regression(Vec<f64>),
    /// (B, T) class ids, −100 where a position is not scored.
    Token(Vec<i64>),
}

/// What a forward pass returns, as tape variables.
pub struct ForwardOutput {
    /// (B, C) for sequence heads, (B, T, C) for token heads.
    pub logits: Var,
    /// The embedding output, then each layer's output, each (B, T, H); the
    /// final layer's alone under [`ForwardMode::last_state_only`].
    pub hidden_states: Vec<Var>,
    /// (B, H) tanh pooler output, for sequence heads.
    pub pooled: Option<Var>,
    /// The tape variables of every parameter, in ParamStore order.
    pub params: Vec<Var>,
}

/// Where [`BertClassifier::infer_logits`] finds the weights.
#[derive(Clone, Copy)]
pub enum InferenceWeights<'a> {
    /// The CPU: the store, with its transposed linear weights.
    Cpu(&'a WeightCache),
    /// A device's copies of the store's tensors, in store order.
    Device(&'a [Tensor]),
}

#[derive(Clone, Debug)]
pub struct BertClassifier {
    pub config: BertConfig,
    pub head: HeadKind,
    /// None for token classification, which always uses cross-entropy.
    pub problem_type: Option<ProblemType>,
    pub labels: Vec<String>,
    pub params: ParamStore,
    /// Which parameters receive gradients (all, unless `--freeze` says otherwise).
    pub trainable: Vec<bool>,
    encoder: EncoderParams,
    /// The head's first dense layer (BERT's pooler, RoBERTa's
    /// `classifier.dense`, ModernBERT's `head.dense`, which has no bias).
    pooler: Option<Affine>,
    /// ModernBERT's `head.norm`, after the dense layer's GELU.
    head_norm: Option<usize>,
    classifier: (usize, usize),
}

impl BertClassifier {
    /// Assembles a model from parameters already checked against the config.
    pub fn new(
        config: BertConfig,
        head: HeadKind,
        problem_type: Option<ProblemType>,
        labels: Vec<String>,
        params: ParamStore,
    ) -> Result<BertClassifier> {
        let encoder = EncoderParams::resolve(&params, &config)?;
        let modern = config.family.sequence_head() == SequenceHead::PooledDenseNorm;
        let pooler = match (head.has_pooler() || config.family.token_head_has_transform(), modern) {
            (false, _) => None,
            (true, false) => Some(Affine {
                weight: params.position("bert.pooler.dense.weight")?,
                bias: Some(params.position("bert.pooler.dense.bias")?),
            }),
            (true, true) => Some(Affine { weight: params.position("bert.pooler.dense.weight")?, bias: None }),
        };
        let head_norm = if modern { Some(params.position("bert.pooler.LayerNorm.weight")?) } else { None };
        let classifier = (params.position("classifier.weight")?, params.position("classifier.bias")?);
        let rows = params.tensors()[classifier.0].shape()[0];
        if rows != labels.len() {
            return Err(Error::InvalidArgument(format!("classifier has {rows} outputs but {} labels are named", labels.len())));
        }
        let problem_type = match head {
            HeadKind::TokenClassification => None,
            HeadKind::SequenceClassification => {
                Some(problem_type.unwrap_or(if labels.len() == 1 { ProblemType::Regression } else { ProblemType::SingleLabel }))
            }
        };
        let trainable = vec![true; params.len()];
        Ok(BertClassifier { config, head, problem_type, labels, params, trainable, encoder, pooler, head_norm, classifier })
    }

    /// Where the encoder's parameters sit in the store.
    pub fn encoder_params(&self) -> &EncoderParams {
        &self.encoder
    }

    /// A forward pass whose word-embedding table is `rows` (N, E), a leaf
    /// that records its gradient, in place of the model's: `batch`'s ids
    /// index `rows`, so each position can be given any input vector (the
    /// interpolated inputs of integrated gradients). The parameters record
    /// no gradient. Returns the output and the `rows` variable.
    pub fn forward_with_word_rows(&self, tape: &mut Tape, rows: Tensor, batch: &Batch) -> Result<(ForwardOutput, Var)> {
        let word = self.encoder.word_table();
        let width = self.params.tensors()[word].shape()[1];
        if rows.dims() != 2 || rows.shape()[1] != width || batch.input_ids.iter().any(|&id| id as usize >= rows.shape()[0]) {
            return Err(Error::shape(
                "forward_with_word_rows",
                format!("rows {:?} (width {width}) for ids up to {:?}", rows.shape(), batch.input_ids.iter().max()),
            ));
        }
        let mut params = self.register_params(tape, false);
        let rows = tape.leaf(rows, true);
        params[word] = rows;
        Ok((self.forward_params(tape, params, batch, ForwardMode::eval(), None)?, rows))
    }

    pub fn num_labels(&self) -> usize {
        self.labels.len()
    }

    pub fn dtype(&self) -> DType {
        self.params.tensors()[0].dtype()
    }

    /// The same model with every parameter converted (f64 for gradient checks).
    pub fn to_dtype(&self, dtype: DType) -> BertClassifier {
        BertClassifier { params: self.params.to_dtype(dtype), ..self.clone() }
    }

    /// Puts every parameter on the tape as a leaf; when `trainable`, the
    /// unfrozen ones record gradients.
    pub fn register_params(&self, tape: &mut Tape, trainable: bool) -> Vec<Var> {
        self.leaves(tape, self.params.tensors(), trainable)
    }

    fn leaves(&self, tape: &mut Tape, tensors: &[Tensor], trainable: bool) -> Vec<Var> {
        tensors.iter().zip(&self.trainable).map(|(t, &train)| tape.leaf(t.clone(), trainable && train)).collect()
    }

    /// Parameters that are trained, counted in scalars.
    pub fn trained_parameter_count(&self) -> usize {
        self.params.tensors().iter().zip(&self.trainable).filter(|(_, t)| **t).map(|(p, _)| p.numel()).sum()
    }

    /// batch (B, T) -> logits. Parameters are registered as trainable leaves
    /// when the tape records gradients.
    pub fn forward(&self, tape: &mut Tape, batch: &Batch, mode: ForwardMode) -> Result<ForwardOutput> {
        self.forward_cached(tape, batch, mode, None)
    }

    /// The CPU's per-step copies of the linear weights, for
    /// [`Self::forward_cached`] in fp32 training: packed for the CPU's
    /// kernel where it has one ([`WeightCache::build_packed`]; the backward
    /// is the ordinary op's), else transposed for the gemm crate.
    pub fn weight_cache(&self) -> Result<WeightCache> {
        self.weight_cache_for(crate::tensor::Precision::Fp32)
    }

    /// As [`Self::weight_cache`] for training in `precision`: under BF16 the
    /// encoder layers' weights rounded to BF16 and packed, their forward
    /// and backward products on BF16 operands (`linear_from_packed`),
    /// against the f32 master weights the optimizer updates.
    pub fn weight_cache_for(&self, precision: crate::tensor::Precision) -> Result<WeightCache> {
        WeightCache::build_packed(&self.params, precision)
    }

    /// The CPU's load-time weights for inference in `precision`, the f32
    /// ones packed for the CPU's kernel where it has one
    /// ([`WeightCache::build_packed`]), with each layer's q, k and v joined
    /// into one projection where the layers read them together
    /// ([`WeightCache::fuse_qkv`]). Only for tapes without gradients.
    pub fn inference_cache(&self, precision: crate::tensor::Precision) -> Result<WeightCache> {
        let cache = WeightCache::build_packed(&self.params, precision)?;
        match self.config.modern.is_none() && self.config.deberta.is_none() {
            true => cache.fuse_qkv(&self.params),
            false => Ok(cache),
        }
    }

    /// As [`Self::forward`], using transposed weights from `cache` where they
    /// are still current (faster on the CPU; results are identical up to rounding order).
    pub fn forward_cached(&self, tape: &mut Tape, batch: &Batch, mode: ForwardMode, cache: Option<&WeightCache>) -> Result<ForwardOutput> {
        let trainable = tape.grad_enabled();
        let params = self.register_params(tape, trainable);
        self.forward_params(tape, params, batch, mode, cache)
    }

    /// The one batched no-grad forward that prediction, evaluation and
    /// serving share: the logits of `batch` (B, T) as (B, C) or, for token
    /// heads, (B, T, C), flat. On the CPU the padding is skipped (each row
    /// attends to its own tokens); a device runs the padded batch.
    pub fn infer_logits(&self, weights: InferenceWeights<'_>, batch: &Batch) -> Result<Vec<f64>> {
        let mut tape = Tape::no_grad();
        let out = match weights {
            InferenceWeights::Cpu(cache) => {
                self.forward_cached(&mut tape, batch, ForwardMode::eval().skipping_padding().last_state_only(), Some(cache))?
            }
            InferenceWeights::Device(tensors) => self.forward_on(&mut tape, tensors, batch, ForwardMode::eval())?,
        };
        Ok(tape.value(out.logits).to_f64_vec())
    }

    /// As [`Self::forward`], with the parameters taken from `tensors` (in
    /// store order) instead of the store: the device copies when training or
    /// predicting on a CUDA device.
    pub fn forward_on(&self, tape: &mut Tape, tensors: &[Tensor], batch: &Batch, mode: ForwardMode) -> Result<ForwardOutput> {
        if tensors.len() != self.params.len() {
            return Err(Error::shape("forward_on", format!("{} tensors for {} parameters", tensors.len(), self.params.len())));
        }
        let trainable = tape.grad_enabled();
        let params = self.leaves(tape, tensors, trainable);
        self.forward_params(tape, params, batch, mode, None)
    }

    fn forward_params(
        &self,
        tape: &mut Tape,
        params: Vec<Var>,
        batch: &Batch,
        mode: ForwardMode,
        cache: Option<&WeightCache>,
    ) -> Result<ForwardOutput> {
        let cache = cache.map(|c| (&self.params, c));
        let hidden_states = encoder_forward(tape, &self.config, &self.encoder, &params, batch, mode, cache)?;
        if self.config.family.sequence_head() == SequenceHead::PooledDenseNorm {
            return self.modernbert_head(tape, params, hidden_states, batch, mode);
        }
        let last = *hidden_states.last().expect("embedding output is always present");
        let classifier_p = self.config.classifier_dropout_for(self.head == HeadKind::SequenceClassification);
        let (cw, cb) = (params[self.classifier.0], params[self.classifier.1]);
        let (logits, pooled) = match self.head {
            HeadKind::SequenceClassification => {
                let pooler = self.pooler.expect("sequence heads have a pooler");
                let (pw, pb) = (pooler.weight, pooler.bias.expect("BERT-style poolers have a bias"));
                let mut cls = first_token(tape, last)?; // (B, H)
                let head = self.config.family.sequence_head();
                match head {
                    // RoBERTa's and ELECTRA's heads drop out their input too; BERT's pooler does not.
                    SequenceHead::DenseThenProjection { .. } => {
                        cls = dropout(tape, cls, classifier_p, mode.key(streams::CLASSIFIER_INPUT))?;
                    }
                    // DeBERTa's ContextPooler, with its own probability.
                    SequenceHead::ContextPooler => {
                        let p = self.config.deberta.as_ref().map_or(0.0, |d| d.pooler_dropout);
                        cls = dropout(tape, cls, p, mode.key(streams::CLASSIFIER_INPUT))?;
                    }
                    _ => {}
                }
                let pooled = linear(tape, cls, params[pw], Some(params[pb]))?;
                let pooled = match head {
                    SequenceHead::DenseThenProjection { gelu: true } | SequenceHead::ContextPooler => gelu(tape, pooled)?,
                    SequenceHead::PreClassifier => relu(tape, pooled)?,
                    _ => tanh(tape, pooled)?,
                };
                let x = dropout(tape, pooled, classifier_p, mode.key(streams::CLASSIFIER))?;
                (linear(tape, x, cw, Some(cb))?, Some(pooled))
            }
            HeadKind::TokenClassification => {
                let x = dropout(tape, last, classifier_p, mode.key(streams::CLASSIFIER))?;
                (linear(tape, x, cw, Some(cb))?, None)
            }
        };
        Ok(ForwardOutput { logits, hidden_states, pooled, params })
    }

    /// ModernBERT's head over the final-norm output `hidden_states.last()`
    /// (B, T, H): a sequence head pools it (the mean over real tokens, or
    /// the first token) to (B, H); a token head keeps every position. Then
    /// dense (no bias) -> GELU -> LayerNorm (no bias) -> dropout -> classifier.
    fn modernbert_head(
        &self,
        tape: &mut Tape,
        params: Vec<Var>,
        hidden_states: Vec<Var>,
        batch: &Batch,
        mode: ForwardMode,
    ) -> Result<ForwardOutput> {
        let last = *hidden_states.last().expect("embedding output is always present");
        let x = match self.head {
            HeadKind::TokenClassification => last,
            HeadKind::SequenceClassification => match self.config.modern.as_ref().map(|m| m.pooling) {
                Some(Pooling::Cls) => first_token(tape, last)?,
                _ => mean_pool(tape, last, batch.attention_mask.clone().into())?,
            },
        };
        let dense = self.pooler.expect("ModernBERT heads have a dense layer");
        let h = linear(tape, x, params[dense.weight], dense.bias.map(|b| params[b]))?;
        let h = gelu(tape, h)?;
        let norm = self.head_norm.expect("ModernBERT heads have a norm");
        let zero = zero_leaf(tape, h, &[self.config.hidden_size])?;
        let h = layer_norm(tape, h, params[norm], zero, self.config.layer_norm_eps)?;
        let p = self.config.classifier_dropout_for(self.head == HeadKind::SequenceClassification);
        let dropped = dropout(tape, h, p, mode.key(streams::CLASSIFIER))?;
        let (cw, cb) = (params[self.classifier.0], params[self.classifier.1]);
        let logits = linear(tape, dropped, cw, Some(cb))?;
        let pooled = (self.head == HeadKind::SequenceClassification).then_some(h);
        Ok(ForwardOutput { logits, hidden_states, pooled, params })
    }

    /// The loss HF computes for this head and problem type (mean reduction),
    /// with optional class weights.
    pub fn loss(&self, tape: &mut Tape, logits: Var, labels: &Labels, class_weights: Option<&[f64]>) -> Result<Var> {
        self.loss_with(tape, logits, labels, &LossSpec::standard(class_weights))
    }

    /// The loss `spec` names for this head: cross-entropy or softmax focal
    /// for single-label and token heads, BCE or sigmoid focal for
    /// multi-label (class weights as `pos_weight`), MSE for regression.
    pub fn loss_with(&self, tape: &mut Tape, logits: Var, labels: &Labels, spec: &LossSpec) -> Result<Var> {
        let expected =
            |what: &str| Error::InvalidArgument(format!("this model needs {what} labels, got {labels:?}").chars().take(200).collect());
        let softmax = |tape: &mut Tape, y: &[i64]| match &spec.kind {
            LossKind::Standard => cross_entropy(tape, logits, y, spec.class_weights.as_deref()),
            LossKind::Focal { gamma, .. } => focal_cross_entropy(tape, logits, y, *gamma, spec.row_weights().as_deref()),
        };
        match (self.head, self.problem_type, labels) {
            (HeadKind::TokenClassification, _, Labels::Token(y)) => softmax(tape, y),
            (HeadKind::TokenClassification, _, _) => Err(expected("per-token")),
            (_, Some(ProblemType::SingleLabel), Labels::SingleLabel(y)) => softmax(tape, y),
            (_, Some(ProblemType::MultiLabel), Labels::MultiLabel(y)) => match (&spec.kind, &spec.class_weights) {
                (LossKind::Standard, None) => bce_with_logits(tape, logits, y),
                (LossKind::Standard, Some(pw)) => bce_with_logits_weighted(tape, logits, y, pw),
                (LossKind::Focal { gamma, alpha }, pw) => {
                    sigmoid_focal(tape, logits, y, *gamma, alpha.as_ref().and_then(|a| a.first().copied()), pw.as_deref())
                }
            },
            (_, Some(ProblemType::Regression), Labels::Regression(y)) => {
                if *spec != LossSpec::default() {
                    return Err(Error::InvalidArgument("regression uses MSE: focal loss and class weights do not apply".into()));
                }
                mse(tape, logits, y)
            }
            (_, Some(p), _) => Err(expected(p.hf_name())),
            (_, None, _) => Err(expected("sequence")),
        }
    }
}

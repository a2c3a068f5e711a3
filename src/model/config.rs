//! The Hugging Face `config.json` of a BERT-family model, read and written,
//! and the family (`model_type`) that says where the model differs from BERT.
//!
//! Unknown fields are kept in `raw` and written back unchanged, so a
//! checkpoint that goes through berth keeps everything transformers put there.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::{Value, json};

use super::deberta::DebertaSettings;
use crate::error::{Error, Result};

/// What the loss and the prediction head treat the labels as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemType {
    SingleLabel,
    MultiLabel,
    Regression,
}

impl ProblemType {
    pub fn hf_name(self) -> &'static str {
        match self {
            ProblemType::SingleLabel => "single_label_classification",
            ProblemType::MultiLabel => "multi_label_classification",
            ProblemType::Regression => "regression",
        }
    }

    pub fn parse(name: &str) -> Option<ProblemType> {
        match name {
            "single_label_classification" => Some(ProblemType::SingleLabel),
            "multi_label_classification" => Some(ProblemType::MultiLabel),
            "regression" => Some(ProblemType::Regression),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f64,
    #[serde(default = "default_dropout")]
    pub attention_probs_dropout_prob: f64,
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_init_range")]
    pub initializer_range: f64,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_position_type")]
    pub position_embedding_type: String,
    #[serde(default)]
    pub classifier_dropout: Option<f64>,
    #[serde(default)]
    pub id2label: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub problem_type: Option<String>,
    #[serde(default)]
    pub architectures: Option<Vec<String>>,
    #[serde(default)]
    pub num_labels: Option<usize>,
    /// The padding token's id: RoBERTa's position ids count from it.
    #[serde(default)]
    pub pad_token_id: Option<usize>,
    /// ELECTRA: the width of the embeddings when it is not `hidden_size`.
    #[serde(default)]
    pub embedding_size: Option<usize>,
    /// DistilBERT: the dropout before a sequence head's `classifier`.
    #[serde(default)]
    pub seq_classif_dropout: Option<f64>,
    /// From `model_type` (absent: BERT).
    #[serde(skip)]
    pub family: Family,
    /// ModernBERT's own architecture settings (None for every other family).
    #[serde(skip)]
    pub modern: Option<ModernBertSettings>,
    /// DeBERTa's relative-position settings (None for every other family).
    #[serde(skip)]
    pub deberta: Option<DebertaSettings>,
    /// The whole file as read, so that fields berth does not use survive a save.
    #[serde(skip)]
    pub raw: Value,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_dropout() -> f64 {
    0.1
}
fn default_max_positions() -> usize {
    512
}
fn default_type_vocab() -> usize {
    2
}
fn default_init_range() -> f64 {
    0.02
}
fn default_eps() -> f64 {
    1e-12
}
fn default_position_type() -> String {
    "absolute".into()
}

/// `model_type` values berth runs (a config without the field is taken as BERT).
pub const SUPPORTED_MODEL_TYPES: [&str; 7] = ["bert", "roberta", "xlm-roberta", "electra", "distilbert", "modernbert", "deberta-v2"];

/// The encoder families berth runs. They share one encoder; a family fixes
/// the variation points: the position scheme, whether token types are used,
/// the sequence head, and the tensor and class names of its checkpoints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Family {
    #[default]
    Bert,
    /// RoBERTa: positions counted from `pad_token_id + 1`, one token type,
    /// and a head of dense + tanh + out_proj on `<s>` (no pooler).
    Roberta,
    /// XLM-R: RoBERTa's architecture with its own class names.
    XlmRoberta,
    /// ELECTRA's discriminator: BERT's encoder with embeddings of their own
    /// width (`embedding_size`, widened by `embeddings_project`), and a head
    /// of dense + GELU + out_proj on `[CLS]` (no pooler).
    Electra,
    /// DistilBERT: no token types, its own config keys (`dim`, `n_layers`,
    /// ...) and tensor names (`q_lin`, `sa_layer_norm`, `ffn.lin1`, ...), no
    /// dropout after the attention's output projection, and a head of
    /// `pre_classifier` + ReLU + `classifier`.
    DistilBert,
    /// ModernBERT: pre-norm layers without biases, rotary positions (no
    /// position table), GeGLU feed-forward, global and sliding-window local
    /// layers, a final norm, and a head of dense + GELU + norm over the
    /// mean or the first token (at every token for token heads); its
    /// settings are [`ModernBertSettings`].
    ModernBert,
    /// DeBERTa-v2/v3 (`deberta-v2`): BERT's post-norm layers with
    /// disentangled attention (content and relative-position terms, log
    /// buckets), no absolute positions and no token types, padding rows of
    /// the embeddings zeroed, and ContextPooler's head (dense + GELU on the
    /// first token); its settings are [`DebertaSettings`].
    Deberta,
}

/// How ModernBERT pools the sequence for its sequence head (`classifier_pooling`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// The mean of the final-norm output over the real tokens.
    Mean,
    /// The first token.
    Cls,
}

/// The settings of a ModernBERT config that BERT's keys do not hold, read
/// from either spelling: transformers 5's `layer_types` and
/// `rope_parameters`, or the published checkpoints'
/// `global_attn_every_n_layers`, `global_rope_theta` and `local_rope_theta`.
#[derive(Clone, Debug, PartialEq)]
pub struct ModernBertSettings {
    /// Per layer: true for global (full) attention, false for sliding-window.
    pub global_layers: Vec<bool>,
    pub global_rope_theta: f64,
    pub local_rope_theta: f64,
    /// The half-width of a local layer's window: query i reads keys
    /// |i − j| ≤ `local_attention / 2`.
    pub window: usize,
    pub pooling: Pooling,
    pub embedding_dropout: f64,
}

impl ModernBertSettings {
    fn from_raw(raw: &Value, layers: usize, path: &Path) -> Result<ModernBertSettings> {
        let bad = |message: String| Err(Error::Config { path: path.into(), message });
        let number = |key: &str| raw.get(key).and_then(Value::as_f64);
        for flag in ["attention_bias", "mlp_bias", "norm_bias", "classifier_bias"] {
            if raw.get(flag).and_then(Value::as_bool) == Some(true) {
                return bad(format!("{flag} true is not supported; berth implements ModernBERT without biases, as it is published"));
            }
        }
        if let Some(act) = raw.get("classifier_activation").and_then(Value::as_str)
            && act != "gelu"
        {
            return bad(format!("classifier_activation `{act}` is not supported; berth implements the exact erf GELU (`gelu`) only"));
        }
        let global_layers = match raw.get("layer_types") {
            Some(Value::Array(types)) => {
                let mut kinds = Vec::with_capacity(types.len());
                for (i, t) in types.iter().enumerate() {
                    kinds.push(match t.as_str() {
                        Some("full_attention") => true,
                        Some("sliding_attention") => false,
                        _ => return bad(format!("layer_types[{i}] is {t}; berth knows full_attention and sliding_attention")),
                    });
                }
                kinds
            }
            Some(other) => return bad(format!("layer_types is {other}, not a list")),
            None => {
                let every = raw.get("global_attn_every_n_layers").and_then(Value::as_u64).unwrap_or(3) as usize;
                if every == 0 {
                    return bad("global_attn_every_n_layers must be positive".into());
                }
                (0..layers).map(|l| l % every == 0).collect()
            }
        };
        if global_layers.len() != layers {
            return bad(format!("layer_types has {} entries for {layers} layers (num_hidden_layers)", global_layers.len()));
        }
        let theta = |kind: &str, flat: &str, default: f64| -> Result<f64> {
            let Some(params) = raw.get("rope_parameters").filter(|v| !v.is_null()) else {
                return Ok(number(flat).unwrap_or(default));
            };
            let entry = params.get(kind).unwrap_or(params);
            if let Some(rope_type) = entry.get("rope_type").and_then(Value::as_str)
                && rope_type != "default"
            {
                return Err(Error::Config {
                    path: path.into(),
                    message: format!(
                        "rope_parameters.{kind}.rope_type `{rope_type}` is not supported; berth implements `default` RoPE only"
                    ),
                });
            }
            entry
                .get("rope_theta")
                .and_then(Value::as_f64)
                .ok_or_else(|| Error::Config { path: path.into(), message: format!("rope_parameters.{kind} has no rope_theta") })
        };
        let global_rope_theta = theta("full_attention", "global_rope_theta", 160_000.0)?;
        let local_rope_theta = theta("sliding_attention", "local_rope_theta", 10_000.0)?;
        if !(global_rope_theta > 0.0 && local_rope_theta > 0.0) {
            return bad(format!("rope theta must be positive (global {global_rope_theta}, local {local_rope_theta})"));
        }
        let local_attention = raw.get("local_attention").and_then(Value::as_u64).unwrap_or(128) as usize;
        let pooling = match raw.get("classifier_pooling").and_then(Value::as_str).unwrap_or("cls") {
            "mean" => Pooling::Mean,
            "cls" => Pooling::Cls,
            other => return bad(format!("classifier_pooling `{other}` is not supported; berth implements `mean` and `cls`")),
        };
        let embedding_dropout = number("embedding_dropout").unwrap_or(0.0);
        Ok(ModernBertSettings {
            global_layers,
            global_rope_theta,
            local_rope_theta,
            window: local_attention / 2,
            pooling,
            embedding_dropout,
        })
    }

    /// Layer `layer`'s rotary inverse frequencies (D/2): `1 / theta^(2i/D)`
    /// in f64. Stock transformers builds this table in float32; the f64
    /// fixtures keep it in float64 and match this to 1e-15, while the f32
    /// table misses them by 1.5e-9.
    pub fn inv_freq(&self, layer: usize, head_dim: usize) -> Vec<f64> {
        let theta = if self.global_layers[layer] { self.global_rope_theta } else { self.local_rope_theta };
        (0..head_dim / 2).map(|i| 1.0 / theta.powf((2 * i) as f64 / head_dim as f64)).collect()
    }

    /// Layer `layer`'s window half-width, None on a global layer.
    pub fn window_of(&self, layer: usize) -> Option<usize> {
        (!self.global_layers[layer]).then_some(self.window)
    }
}

/// ModernBERT's config keys and the BERT keys berth reads them as.
const MODERNBERT_KEYS: [(&str, &str); 4] = [
    ("hidden_activation", "hidden_act"),
    ("norm_eps", "layer_norm_eps"),
    ("mlp_dropout", "hidden_dropout_prob"),
    ("attention_dropout", "attention_probs_dropout_prob"),
];

/// DistilBERT's config keys and the BERT keys berth reads them as.
const DISTILBERT_KEYS: [(&str, &str); 6] = [
    ("dim", "hidden_size"),
    ("n_layers", "num_hidden_layers"),
    ("n_heads", "num_attention_heads"),
    ("hidden_dim", "intermediate_size"),
    ("activation", "hidden_act"),
    ("attention_dropout", "attention_probs_dropout_prob"),
];

/// How a sequence head turns the first token into logits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SequenceHead {
    /// BERT: the pooler (dense + tanh), dropout, `classifier`.
    Pooler,
    /// DistilBERT: `pre_classifier` + ReLU, dropout, `classifier`.
    PreClassifier,
    /// RoBERTa and ELECTRA: dropout, dense, an activation, dropout,
    /// `out_proj`, stored as `classifier.dense` and `classifier.out_proj`.
    DenseThenProjection { gelu: bool },
    /// ModernBERT: the pooled vector (mean or first token), dense (no
    /// bias), GELU, LayerNorm (no bias), dropout, `classifier`; stored as
    /// `head.dense`, `head.norm` (berth: `bert.pooler.dense`,
    /// `bert.pooler.LayerNorm`). Its token head runs the same at every token.
    PooledDenseNorm,
    /// DeBERTa's ContextPooler: dropout (`pooler_dropout`), dense, GELU,
    /// dropout, `classifier`; stored as `pooler.dense` (berth:
    /// `bert.pooler.dense`), trained afresh by every fine-tuning.
    ContextPooler,
}

impl Family {
    pub fn from_model_type(model_type: &str) -> Option<Family> {
        match model_type {
            "bert" => Some(Family::Bert),
            "roberta" => Some(Family::Roberta),
            "xlm-roberta" => Some(Family::XlmRoberta),
            "electra" => Some(Family::Electra),
            "distilbert" => Some(Family::DistilBert),
            "modernbert" => Some(Family::ModernBert),
            "deberta-v2" => Some(Family::Deberta),
            _ => None,
        }
    }

    pub fn model_type(self) -> &'static str {
        match self {
            Family::Bert => "bert",
            Family::Roberta => "roberta",
            Family::XlmRoberta => "xlm-roberta",
            Family::Electra => "electra",
            Family::DistilBert => "distilbert",
            Family::ModernBert => "modernbert",
            Family::Deberta => "deberta-v2",
        }
    }

    /// The prefix of the encoder's tensors in this family's checkpoints.
    pub fn tensor_prefix(self) -> &'static str {
        match self {
            Family::Bert => "bert",
            Family::Roberta | Family::XlmRoberta => "roberta",
            Family::Electra => "electra",
            Family::DistilBert => "distilbert",
            Family::ModernBert => "model",
            Family::Deberta => "deberta",
        }
    }

    /// The stem of the transformers class names (`RobertaForSequenceClassification`).
    pub fn class_stem(self) -> &'static str {
        match self {
            Family::Bert => "Bert",
            Family::Roberta => "Roberta",
            Family::XlmRoberta => "XLMRoberta",
            Family::Electra => "Electra",
            Family::DistilBert => "DistilBert",
            Family::ModernBert => "ModernBert",
            Family::Deberta => "DebertaV2",
        }
    }

    /// Whether the `bert.pooler` slot holds a pretrained part of the encoder
    /// (BERT's pooler), rather than the first layer of a head that every
    /// fine-tuning starts afresh (RoBERTa's and ELECTRA's `classifier.dense`,
    /// DistilBERT's `pre_classifier`). The first is shared by a multi-task
    /// model's heads and frozen with `--freeze encoder`; the second is neither.
    pub fn pooler_is_pretrained(self) -> bool {
        self.sequence_head() == SequenceHead::Pooler
    }

    /// The family's sequence head.
    pub fn sequence_head(self) -> SequenceHead {
        match self {
            Family::Bert => SequenceHead::Pooler,
            Family::Roberta | Family::XlmRoberta => SequenceHead::DenseThenProjection { gelu: false },
            Family::Electra => SequenceHead::DenseThenProjection { gelu: true },
            Family::DistilBert => SequenceHead::PreClassifier,
            Family::ModernBert => SequenceHead::PooledDenseNorm,
            Family::Deberta => SequenceHead::ContextPooler,
        }
    }

    /// Whether the sequence head is stored as `classifier.dense` and
    /// `classifier.out_proj` (berth keeps it as the pooler and `classifier`).
    pub fn has_roberta_head(self) -> bool {
        matches!(self.sequence_head(), SequenceHead::DenseThenProjection { .. })
    }

    /// Whether the model has a token-type table at all (DistilBERT has none).
    pub fn has_token_type_table(self) -> bool {
        !matches!(self, Family::DistilBert | Family::ModernBert | Family::Deberta)
    }

    /// Whether the model has a learned position table (ModernBERT rotates q
    /// and k instead).
    pub fn has_position_table(self) -> bool {
        !matches!(self, Family::ModernBert | Family::Deberta)
    }

    /// Whether token heads run the sequence head's dense + GELU + norm at
    /// every token before `classifier` (ModernBERT), so they own the
    /// `bert.pooler` slot too.
    pub fn token_head_has_transform(self) -> bool {
        self == Family::ModernBert
    }

    /// Whether a layer drops out its attention output before the residual
    /// (BERT's `BertSelfOutput`); DistilBERT adds it undropped.
    pub fn drops_attention_output(self) -> bool {
        self != Family::DistilBert
    }

    /// Whether the model reads token type ids: RoBERTa has one type, and its
    /// tokenizers return none (every id is 0, whatever a pair template says).
    pub fn uses_token_types(self) -> bool {
        matches!(self, Family::Bert | Family::Electra)
    }
}

impl BertConfig {
    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<BertConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json_str(&text, path)
    }

    pub fn from_json_str(text: &str, path: &Path) -> Result<BertConfig> {
        let raw: Value = serde_json::from_str(text).map_err(|e| Error::Config { path: path.into(), message: e.to_string() })?;
        let mut config: BertConfig = serde_json::from_value(Self::bert_keyed(&raw, path)?)
            .map_err(|e| Error::Config { path: path.into(), message: e.to_string() })?;
        config.raw = raw;
        config.validate(path)?;
        config.family = match config.raw.get("model_type").and_then(Value::as_str) {
            Some(name) => Family::from_model_type(name).expect("validate checked the model_type"),
            None => Family::Bert,
        };
        if config.family == Family::ModernBert {
            config.modern = Some(ModernBertSettings::from_raw(&config.raw, config.num_hidden_layers, path)?);
            if !config.head_dim().is_multiple_of(2) {
                return Err(Error::Config {
                    path: path.into(),
                    message: format!("head size {} is odd; rotary embeddings turn pairs of features", config.head_dim()),
                });
            }
        }
        if config.family == Family::Deberta {
            let settings = DebertaSettings::from_raw(&config.raw, config.hidden_size, config.max_position_embeddings, path)?;
            config.deberta = Some(settings);
        }
        Ok(config)
    }

    /// The config with BERT's keys: DistilBERT's own (`dim`, `n_layers`, ...)
    /// read as BERT's, its fixed LayerNorm eps and its one dropout. Other
    /// families already use BERT's keys.
    fn bert_keyed(raw: &Value, path: &Path) -> Result<Value> {
        if raw.get("model_type").and_then(Value::as_str) == Some("modernbert") {
            let mut keyed = raw.clone();
            let obj = keyed.as_object_mut().ok_or_else(|| Error::Config { path: path.into(), message: "not a JSON object".into() })?;
            for (theirs, ours) in MODERNBERT_KEYS {
                if let Some(v) = raw.get(theirs) {
                    obj.insert(ours.into(), v.clone());
                }
            }
            // transformers' defaults where the published configs rely on them.
            for (key, default) in [("hidden_act", json!("gelu")), ("layer_norm_eps", json!(1e-5))] {
                obj.entry(key).or_insert(default);
            }
            for key in ["hidden_dropout_prob", "attention_probs_dropout_prob"] {
                obj.entry(key).or_insert(json!(0.0));
            }
            obj.insert("type_vocab_size".into(), json!(1));
            return Ok(keyed);
        }
        if raw.get("model_type").and_then(Value::as_str) == Some("deberta-v2") {
            let mut keyed = raw.clone();
            let obj = keyed.as_object_mut().ok_or_else(|| Error::Config { path: path.into(), message: "not a JSON object".into() })?;
            // transformers' DebertaV2Config default; the table of one (unused)
            // type satisfies BERT's check, DebertaSettings refuses real types.
            obj.entry("layer_norm_eps").or_insert(json!(1e-7));
            obj.insert("type_vocab_size".into(), json!(1));
            return Ok(keyed);
        }
        if raw.get("model_type").and_then(Value::as_str) != Some("distilbert") {
            return Ok(raw.clone());
        }
        let bad = |message: String| Err(Error::Config { path: path.into(), message });
        if raw.get("sinusoidal_pos_embds").and_then(Value::as_bool) == Some(true) {
            return bad("sinusoidal_pos_embds true is not supported; berth implements DistilBERT's learned position embeddings".into());
        }
        let mut keyed = raw.clone();
        let obj = keyed.as_object_mut().ok_or_else(|| Error::Config { path: path.into(), message: "not a JSON object".into() })?;
        for (theirs, ours) in DISTILBERT_KEYS {
            if let Some(v) = raw.get(theirs) {
                obj.insert(ours.into(), v.clone());
            }
        }
        if let Some(v) = raw.get("dropout") {
            obj.insert("hidden_dropout_prob".into(), v.clone());
        }
        // Every DistilBERT LayerNorm uses 1e-12 (the embeddings' is hard-coded).
        obj.insert("layer_norm_eps".into(), json!(1e-12));
        obj.insert("type_vocab_size".into(), json!(1));
        Ok(keyed)
    }

    /// The dropout before the classifier of `head`.
    pub fn classifier_dropout_for(&self, sequence_head: bool) -> f64 {
        match (self.family, sequence_head) {
            (Family::DistilBert, true) => self.seq_classif_dropout.unwrap_or(0.2),
            (Family::DistilBert, false) => self.hidden_dropout_prob,
            (Family::ModernBert, _) => self.classifier_dropout.unwrap_or(0.0),
            (Family::Deberta, true) => self.deberta.as_ref().and_then(|d| d.cls_dropout).unwrap_or(self.hidden_dropout_prob),
            (Family::Deberta, false) => self.hidden_dropout_prob,
            _ => self.classifier_dropout.unwrap_or(self.hidden_dropout_prob),
        }
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let bad = |message: String| Err(Error::Config { path: path.into(), message });
        // Another family's config would load as BERT and be silently rewritten to `bert` on save.
        if let Some(model_type) = self.raw.get("model_type") {
            let name = model_type.as_str().unwrap_or_default();
            if !SUPPORTED_MODEL_TYPES.contains(&name) {
                return bad(format!(
                    "model_type {model_type} is not supported; berth loads {} (the other encoder families are planned)",
                    SUPPORTED_MODEL_TYPES.join(", ")
                ));
            }
            let family = Family::from_model_type(name).unwrap_or_default();
            let offset = self.position_offset_of(family);
            if family != Family::Bert && self.max_position_embeddings <= offset {
                return bad(format!(
                    "max_position_embeddings {} leaves no position for a token: {name} positions start at pad_token_id + 1 = {offset}",
                    self.max_position_embeddings
                ));
            }
        }
        if self.hidden_act != "gelu" {
            return bad(format!("hidden_act `{}` is not supported; berth implements BERT's exact erf GELU (`gelu`) only", self.hidden_act));
        }
        if self.position_embedding_type != "absolute" {
            return bad(format!(
                "position_embedding_type `{}` is not supported; berth implements `absolute` only",
                self.position_embedding_type
            ));
        }
        if self.num_attention_heads == 0 || self.hidden_size % self.num_attention_heads != 0 {
            return bad(format!("hidden_size {} is not divisible by num_attention_heads {}", self.hidden_size, self.num_attention_heads));
        }
        if self.vocab_size == 0 || self.hidden_size == 0 || self.max_position_embeddings == 0 || self.type_vocab_size == 0 {
            return bad("vocab_size, hidden_size, max_position_embeddings and type_vocab_size must be positive".into());
        }
        if let Some(p) = &self.problem_type {
            if ProblemType::parse(p).is_none() {
                return bad(format!("unknown problem_type `{p}`"));
            }
        }
        if let Some(map) = &self.id2label {
            for i in 0..map.len() {
                if !map.contains_key(&i.to_string()) {
                    return bad(format!("id2label has {} entries but no id {i}", map.len()));
                }
            }
        }
        Ok(())
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// The first row of the position table a sequence uses: 0 for BERT;
    /// `pad_token_id + 1` for RoBERTa, whose position ids count from there
    /// (and give padding `pad_token_id`, a row no real token reads).
    pub fn position_offset(&self) -> usize {
        self.position_offset_of(self.family)
    }

    fn position_offset_of(&self, family: Family) -> usize {
        match family {
            Family::Bert | Family::Electra | Family::DistilBert | Family::ModernBert | Family::Deberta => 0,
            Family::Roberta | Family::XlmRoberta => self.pad_token_id.unwrap_or(1) + 1,
        }
    }

    /// The width of the embedding tables and their LayerNorm: ELECTRA's
    /// `embedding_size`, else `hidden_size`.
    pub fn embedding_width(&self) -> usize {
        self.embedding_size.unwrap_or(self.hidden_size)
    }

    /// Whether `embeddings_project` widens the embeddings to `hidden_size`
    /// (transformers creates it only when the widths differ).
    pub fn projects_embeddings(&self) -> bool {
        self.embedding_width() != self.hidden_size
    }

    /// The longest sequence the position table holds, special tokens
    /// included: 512 for bert-base, 514 − 2 = 512 for roberta-base.
    pub fn max_sequence_length(&self) -> usize {
        self.max_position_embeddings - self.position_offset()
    }

    /// Label names in id order, from id2label; `LABEL_i` names when absent (HF's default of 2).
    pub fn labels(&self) -> Vec<String> {
        match &self.id2label {
            Some(map) if !map.is_empty() => (0..map.len()).map(|i| map[&i.to_string()].clone()).collect(),
            _ => (0..self.num_labels.unwrap_or(2)).map(|i| format!("LABEL_{i}")).collect(),
        }
    }

    pub fn problem_type(&self) -> Option<ProblemType> {
        self.problem_type.as_deref().and_then(ProblemType::parse)
    }

    pub fn architecture(&self) -> Option<&str> {
        self.architectures.as_ref().and_then(|a| a.first()).map(String::as_str)
    }

    /// The JSON to save: the original fields with the head's fields replaced.
    pub fn to_json(&self, architecture: &str, labels: &[String], problem_type: Option<ProblemType>) -> Value {
        let mut out = if self.raw.is_object() { self.raw.clone() } else { json!({}) };
        let id2label: serde_json::Map<String, Value> = labels.iter().enumerate().map(|(i, l)| (i.to_string(), json!(l))).collect();
        let label2id: serde_json::Map<String, Value> = labels.iter().enumerate().map(|(i, l)| (l.clone(), json!(i))).collect();
        let obj = out.as_object_mut().expect("object");
        obj.insert("architectures".into(), json!([architecture]));
        obj.insert("id2label".into(), Value::Object(id2label));
        obj.insert("label2id".into(), Value::Object(label2id));
        obj.insert("problem_type".into(), problem_type.map_or(Value::Null, |p| json!(p.hf_name())));
        obj.remove("num_labels");
        obj.insert("model_type".into(), json!(self.family.model_type()));
        if matches!(self.family, Family::DistilBert | Family::ModernBert | Family::Deberta) {
            // Its own keys, as read: berth changes none of them.
            return out;
        }
        for (key, value) in [
            ("vocab_size", json!(self.vocab_size)),
            ("hidden_size", json!(self.hidden_size)),
            ("num_hidden_layers", json!(self.num_hidden_layers)),
            ("num_attention_heads", json!(self.num_attention_heads)),
            ("intermediate_size", json!(self.intermediate_size)),
            ("hidden_act", json!(self.hidden_act)),
            ("hidden_dropout_prob", json!(self.hidden_dropout_prob)),
            ("attention_probs_dropout_prob", json!(self.attention_probs_dropout_prob)),
            ("max_position_embeddings", json!(self.max_position_embeddings)),
            ("type_vocab_size", json!(self.type_vocab_size)),
            ("initializer_range", json!(self.initializer_range)),
            ("layer_norm_eps", json!(self.layer_norm_eps)),
        ] {
            obj.insert(key.into(), value);
        }
        out
    }

    /// A bert-base-sized configuration (for benchmarks with random weights).
    pub fn bert_base() -> BertConfig {
        Self::synthetic(30522, 768, 12, 12, 3072)
    }

    /// A configuration built in code, with BERT's defaults elsewhere.
    pub fn synthetic(vocab: usize, hidden: usize, layers: usize, heads: usize, intermediate: usize) -> BertConfig {
        let text = json!({
            "vocab_size": vocab, "hidden_size": hidden, "num_hidden_layers": layers,
            "num_attention_heads": heads, "intermediate_size": intermediate,
            "max_position_embeddings": 512, "model_type": "bert"
        });
        BertConfig::from_json_str(&text.to_string(), Path::new("<built-in config>")).expect("valid built-in config")
    }

    /// A ModernBERT config of these sizes (for gradient checks and tests):
    /// layers alternate global and sliding-window attention (every second
    /// layer global, from layer 0), windows of half-width
    /// `local_attention / 2`, mean pooling, and `dropout` in every dropout
    /// slot ModernBERT has.
    pub fn synthetic_modernbert(
        vocab: usize,
        hidden: usize,
        layers: usize,
        heads: usize,
        intermediate: usize,
        local_attention: usize,
        dropout: f64,
    ) -> BertConfig {
        let text = json!({
            "vocab_size": vocab, "hidden_size": hidden, "num_hidden_layers": layers,
            "num_attention_heads": heads, "intermediate_size": intermediate,
            "max_position_embeddings": 512, "model_type": "modernbert", "pad_token_id": 0,
            "global_attn_every_n_layers": 2, "local_attention": local_attention,
            "global_rope_theta": 160000.0, "local_rope_theta": 10000.0, "classifier_pooling": "mean",
            "embedding_dropout": dropout, "mlp_dropout": dropout, "attention_dropout": dropout, "classifier_dropout": dropout
        });
        BertConfig::from_json_str(&text.to_string(), Path::new("<built-in config>")).expect("valid built-in config")
    }

    /// A DeBERTa-v3 config of these sizes (for gradient checks and tests):
    /// `buckets` position buckets over 64 relative positions (so distances
    /// beyond half the buckets are log-bucketed), the relative embeddings
    /// normed, and `dropout` in every dropout slot DeBERTa has.
    pub fn synthetic_deberta(
        vocab: usize,
        hidden: usize,
        layers: usize,
        heads: usize,
        intermediate: usize,
        buckets: usize,
        dropout: f64,
    ) -> BertConfig {
        let text = json!({
            "vocab_size": vocab, "hidden_size": hidden, "num_hidden_layers": layers,
            "num_attention_heads": heads, "intermediate_size": intermediate,
            "max_position_embeddings": 64, "model_type": "deberta-v2", "pad_token_id": 0,
            "relative_attention": true, "pos_att_type": ["p2c", "c2p"], "share_att_key": true,
            "position_biased_input": false, "type_vocab_size": 0, "position_buckets": buckets,
            "max_relative_positions": -1, "norm_rel_ebd": "layer_norm", "layer_norm_eps": 1e-7,
            "hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout,
            "pooler_dropout": dropout, "pooler_hidden_size": hidden, "pooler_hidden_act": "gelu"
        });
        BertConfig::from_json_str(&text.to_string(), Path::new("<built-in config>")).expect("valid built-in config")
    }
}

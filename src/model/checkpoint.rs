//! Hugging Face checkpoints in and out: `config.json` + `model.safetensors`
//! (or, in only, a `pytorch_model.bin`: [`super::torch_checkpoint`]).
//!
//! Inside berth every family's tensors carry HF BERT's names (`bert.…`,
//! `bert.pooler.dense`, `classifier`); loading maps a family's stored names
//! onto them ([`canonical_name_in`]) and saving maps them back
//! ([`hf_tensor_name`]). Loading accepts names with or without the family's
//! prefix, the legacy `LayerNorm.gamma`/`beta`, and F32, F16, BF16 or F64
//! storage; it ignores the `embeddings.position_ids` buffer. Problems are collected and reported
//! together, so one error lists every missing, unexpected or mis-shaped tensor.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use safetensors::{Dtype, SafeTensors};

use super::config::{BertConfig, Family, ProblemType};
use super::heads::BertClassifier;
use super::params::{HeadKind, ParamStore, expected_parameters, init_parameter};
use super::torch_checkpoint::read_torch_checkpoint;
use crate::error::{Error, Result};
use crate::io::write_atomic;
use crate::tensor::{DType, Storage, Tensor};

/// Choices that override what the checkpoint says.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Force a head; by default it follows `architectures` in config.json.
    pub head: Option<HeadKind>,
    /// New label names; a classifier of another size is re-initialised.
    pub labels: Option<Vec<String>>,
    pub problem_type: Option<ProblemType>,
    /// Seed for any head that has to be initialised.
    pub seed: u64,
    /// The dtype parameters are converted to (F32 for work, F64 for checks).
    pub dtype: DType,
    /// Prediction needs the head the checkpoint was trained with: a missing
    /// or unusable head is an error instead of a seeded random one.
    pub require_trained_head: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { head: None, labels: None, problem_type: None, seed: 42, dtype: DType::F32, require_trained_head: false }
    }
}

impl LoadOptions {
    /// What prediction, evaluation and serving load with: the config's head and labels, trained.
    pub fn for_prediction() -> LoadOptions {
        LoadOptions { require_trained_head: true, ..LoadOptions::default() }
    }
}

/// What loading did besides reading tensors, for the user to see.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    /// Parameters that were initialised because the checkpoint lacked them or had another shape.
    pub initialized: Vec<String>,
    pub notes: Vec<String>,
}

/// Maps a stored tensor name of a BERT checkpoint to berth's (HF `BertFor…`) name.
pub fn canonical_name(name: &str) -> String {
    canonical_name_in(Family::Bert, name)
}

/// Maps a stored tensor name of a `family` checkpoint to berth's name.
/// Pre-training heads come out under `cls.` (BERT's `cls.*`, RoBERTa's
/// `lm_head.*`), which loading skips. RoBERTa's sequence head
/// (`classifier.dense`, `classifier.out_proj`) is BERT's pooler and
/// classifier under other names.
pub fn canonical_name_in(family: Family, name: &str) -> String {
    let mut n = name.to_owned();
    if let Some(stem) = n.strip_suffix("LayerNorm.gamma") {
        n = format!("{stem}LayerNorm.weight");
    } else if let Some(stem) = n.strip_suffix("LayerNorm.beta") {
        n = format!("{stem}LayerNorm.bias");
    }
    if family == Family::DistilBert {
        return distilbert_to_bert(&n);
    }
    if family == Family::ModernBert {
        return modernbert_to_bert(&n);
    }
    if family == Family::Deberta {
        return deberta_to_bert(&n);
    }
    if family.has_roberta_head() {
        if let Some(rest) = n.strip_prefix(family.tensor_prefix()).and_then(|r| r.strip_prefix('.')) {
            return format!("bert.{rest}");
        }
        if let Some(rest) = n.strip_prefix("classifier.dense.") {
            return format!("bert.pooler.dense.{rest}");
        }
        if let Some(rest) = n.strip_prefix("classifier.out_proj.") {
            return format!("classifier.{rest}");
        }
        // Pre-training heads: RoBERTa's LM head, ELECTRA's discriminator and generator.
        if ["lm_head.", "discriminator_predictions.", "generator_predictions.", "generator_lm_head."].iter().any(|p| n.starts_with(p)) {
            return format!("cls.{n}");
        }
    }
    if n.starts_with("bert.") || n.starts_with("classifier.") || n.starts_with("cls.") { n } else { format!("bert.{n}") }
}

/// The name a transformers class of `family` gives berth's tensor `name`
/// (the inverse of [`canonical_name_in`]).
pub fn hf_tensor_name(family: Family, head: HeadKind, name: &str) -> String {
    if family == Family::DistilBert {
        return bert_to_distilbert(name);
    }
    if family == Family::ModernBert {
        return bert_to_modernbert(name);
    }
    if family == Family::Deberta {
        return bert_to_deberta(name);
    }
    if !family.has_roberta_head() {
        return name.to_owned();
    }
    if let Some(rest) = name.strip_prefix("bert.pooler.dense.") {
        return format!("classifier.dense.{rest}");
    }
    if let Some(rest) = name.strip_prefix("classifier.")
        && head == HeadKind::SequenceClassification
    {
        return format!("classifier.out_proj.{rest}");
    }
    match name.strip_prefix("bert.") {
        Some(rest) => format!("{}.{rest}", family.tensor_prefix()),
        None => name.to_owned(),
    }
}

/// A ModernBERT layer's tensor names and the names berth keeps them under.
/// Its fused `attn.Wqkv` (3H, H) is kept as BERT's three projections: it is
/// split at load and joined at save ([`split_fused_qkv`], [`join_fused_qkv`]).
const MODERNBERT_LAYER_NAMES: [(&str, &str); 7] = [
    ("attn_norm", "attention.LayerNorm"),
    ("attn.Wqkv", "attention.self.qkv"),
    ("attn.Wo", "attention.output.dense"),
    ("mlp_norm", "intermediate.LayerNorm"),
    ("mlp.Wi", "intermediate.dense"),
    ("mlp.Wo", "output.dense"),
    // Listed last: berth's name of the joined projection, for the inverse only.
    ("attn.Wqkv", "attention.self.query_key_value"),
];

/// ModernBERT's names outside its layers and berth's.
const MODERNBERT_NAMES: [(&str, &str); 5] = [
    ("model.embeddings.tok_embeddings.", "bert.embeddings.word_embeddings."),
    ("model.embeddings.norm.", "bert.embeddings.LayerNorm."),
    ("model.final_norm.", "bert.final_norm.LayerNorm."),
    ("head.dense.", "bert.pooler.dense."),
    ("head.norm.", "bert.pooler.LayerNorm."),
];

/// `model.layers.N.mlp.Wi.weight` -> `bert.encoder.layer.N.intermediate.dense.weight`;
/// the masked-LM decoder comes out under `cls.`.
fn modernbert_to_bert(name: &str) -> String {
    if name.starts_with("decoder.") {
        return format!("cls.{name}");
    }
    for (theirs, ours) in MODERNBERT_NAMES {
        if let Some(tail) = name.strip_prefix(theirs) {
            return format!("{ours}{tail}");
        }
    }
    if let Some(layer) = name.strip_prefix("model.layers.") {
        let (index, part) = layer.split_once('.').unwrap_or((layer, ""));
        for (theirs, ours) in &MODERNBERT_LAYER_NAMES[..6] {
            if let Some(tail) = part.strip_prefix(theirs).and_then(|t| t.strip_prefix('.')) {
                return format!("bert.encoder.layer.{index}.{ours}.{tail}");
            }
        }
        return format!("bert.encoder.layer.{index}.{part}");
    }
    if name.starts_with("classifier.") || name.starts_with("cls.") {
        return name.to_owned();
    }
    format!("bert.{}", name.strip_prefix("model.").unwrap_or(name))
}

/// The inverse of [`modernbert_to_bert`] (the three projections' joined
/// name is `attention.self.query_key_value`, see [`join_fused_qkv`]).
fn bert_to_modernbert(name: &str) -> String {
    for (theirs, ours) in MODERNBERT_NAMES {
        if let Some(tail) = name.strip_prefix(ours) {
            return format!("{theirs}{tail}");
        }
    }
    if let Some(layer) = name.strip_prefix("bert.encoder.layer.") {
        let (index, part) = layer.split_once('.').unwrap_or((layer, ""));
        for (theirs, ours) in MODERNBERT_LAYER_NAMES {
            if let Some(tail) = part.strip_prefix(ours).and_then(|t| t.strip_prefix('.')) {
                return format!("model.layers.{index}.{theirs}.{tail}");
            }
        }
        return format!("model.layers.{index}.{part}");
    }
    match name.strip_prefix("bert.") {
        Some(rest) => format!("model.{rest}"),
        None => name.to_owned(),
    }
}

/// DeBERTa's projection names and berth's (BERT's), inside a layer's `attention.self`.
const DEBERTA_PROJECTIONS: [(&str, &str); 3] = [("query_proj.", "query."), ("key_proj.", "key."), ("value_proj.", "value.")];

/// `deberta.encoder.layer.N.attention.self.query_proj.weight` ->
/// `bert.encoder.layer.N.attention.self.query.weight`, `pooler.dense.*` ->
/// `bert.pooler.dense.*`; the pre-training heads (`lm_predictions.*`,
/// `mask_predictions.*`) and the absolute position table a v3 model does
/// not use come out under `cls.`, which loading skips.
fn deberta_to_bert(name: &str) -> String {
    if let Some(rest) = name.strip_prefix("pooler.") {
        return format!("bert.pooler.{rest}");
    }
    if name.starts_with("classifier.") {
        return name.to_owned();
    }
    let Some(rest) = name.strip_prefix("deberta.") else { return format!("cls.{name}") };
    if rest.starts_with("embeddings.position_embeddings.") {
        return format!("cls.{name}");
    }
    for (theirs, ours) in DEBERTA_PROJECTIONS {
        if let Some((stem, tail)) = rest.split_once(&format!("attention.self.{theirs}")) {
            return format!("bert.{stem}attention.self.{ours}{tail}");
        }
    }
    format!("bert.{rest}")
}

/// The inverse of [`deberta_to_bert`].
fn bert_to_deberta(name: &str) -> String {
    if let Some(rest) = name.strip_prefix("bert.pooler.") {
        return format!("pooler.{rest}");
    }
    let Some(rest) = name.strip_prefix("bert.") else { return name.to_owned() };
    for (theirs, ours) in DEBERTA_PROJECTIONS {
        if let Some((stem, tail)) = rest.split_once(&format!("attention.self.{ours}")) {
            return format!("deberta.{stem}attention.self.{theirs}{tail}");
        }
    }
    format!("deberta.{rest}")
}

/// The three projections berth keeps a fused (3H, H) q/k/v weight as, in its order.
const QKV_PARTS: [&str; 3] = ["query", "key", "value"];

/// Replaces every `….attention.self.qkv.weight` (3H, H) of `tensors` with
/// its three (H, H) row blocks, `query`, `key` and `value` (ModernBERT's
/// `Wqkv` holds them in that order). A first dimension not divisible by 3
/// is left whole, for the shape check to report.
pub fn split_fused_qkv(tensors: &mut BTreeMap<String, Tensor>) -> Result<()> {
    let fused: Vec<String> = tensors.keys().filter(|k| k.ends_with(".attention.self.qkv.weight")).cloned().collect();
    for name in fused {
        let t = tensors.remove(&name).expect("listed above");
        tensors.extend(split_qkv_tensor(name, t)?);
    }
    Ok(())
}

/// As [`split_fused_qkv`] on a (name, tensor) list, keeping its order: each
/// fused weight becomes query, key, value where it stood.
pub fn split_fused_qkv_in_order(named: Vec<(String, Tensor)>) -> Result<Vec<(String, Tensor)>> {
    let mut out = Vec::with_capacity(named.len() + 2);
    for (name, t) in named {
        out.extend(split_qkv_tensor(name, t)?);
    }
    Ok(out)
}

/// One tensor: a fused `….attention.self.qkv.weight` (3H, H) as its three
/// (H, H) blocks; anything else (or a shape not divisible by 3) unchanged.
fn split_qkv_tensor(name: String, t: Tensor) -> Result<Vec<(String, Tensor)>> {
    let Some(stem) = name.strip_suffix("qkv.weight").filter(|_| name.ends_with(".attention.self.qkv.weight")) else {
        return Ok(vec![(name, t)]);
    };
    if t.dims() != 2 || !t.shape()[0].is_multiple_of(3) {
        return Ok(vec![(name, t)]);
    }
    let (rows, cols) = (t.shape()[0] / 3, t.shape()[1]);
    let values = t.to_f64_vec();
    let mut parts = Vec::with_capacity(3);
    for (i, part) in QKV_PARTS.iter().enumerate() {
        let block = values[i * rows * cols..(i + 1) * rows * cols].to_vec();
        parts.push((format!("{stem}{part}.weight"), Tensor::from_f64_like(block, &[rows, cols], &t)?));
    }
    Ok(parts)
}

/// The inverse of [`split_fused_qkv`] on a store's (name, tensor) list, in
/// order: each layer's query, key and value weights become one
/// `….attention.self.query_key_value.weight` (3H, H) where the query was.
pub fn join_fused_qkv(named: Vec<(String, Tensor)>) -> Result<Vec<(String, Tensor)>> {
    let parts: BTreeMap<String, Tensor> = named.iter().filter(|(n, _)| is_qkv_part(n)).cloned().collect();
    let mut out = Vec::with_capacity(named.len());
    for (name, tensor) in named {
        if !is_qkv_part(&name) {
            out.push((name, tensor));
            continue;
        }
        let Some(stem) = name.strip_suffix("query.weight") else { continue };
        let mut values = Vec::with_capacity(3 * tensor.numel());
        for part in QKV_PARTS {
            let t = parts
                .get(&format!("{stem}{part}.weight"))
                .ok_or_else(|| Error::InvalidArgument(format!("{stem}{part}.weight is missing: the fused q/k/v weight needs all three")))?;
            values.extend(t.to_host()?.to_f64_vec());
        }
        let shape = [3 * tensor.shape()[0], tensor.shape()[1]];
        out.push((format!("{stem}query_key_value.weight"), Tensor::from_f64_like(values, &shape, &tensor)?));
    }
    Ok(out)
}

fn is_qkv_part(name: &str) -> bool {
    name.starts_with("bert.encoder.layer.") && QKV_PARTS.iter().any(|p| name.ends_with(&format!(".attention.self.{p}.weight")))
}

/// A DistilBERT layer's tensor names and the BERT names berth keeps them under.
const DISTILBERT_LAYER_NAMES: [(&str, &str); 8] = [
    ("attention.q_lin", "attention.self.query"),
    ("attention.k_lin", "attention.self.key"),
    ("attention.v_lin", "attention.self.value"),
    ("attention.out_lin", "attention.output.dense"),
    ("sa_layer_norm", "attention.output.LayerNorm"),
    ("ffn.lin1", "intermediate.dense"),
    ("ffn.lin2", "output.dense"),
    ("output_layer_norm", "output.LayerNorm"),
];

/// `distilbert.transformer.layer.N.ffn.lin1.weight` ->
/// `bert.encoder.layer.N.intermediate.dense.weight`; `pre_classifier` is
/// the pooler; the masked-LM head (`vocab_*`) comes out under `cls.`.
fn distilbert_to_bert(name: &str) -> String {
    if name.starts_with("vocab_") {
        return format!("cls.{name}");
    }
    if let Some(rest) = name.strip_prefix("pre_classifier.") {
        return format!("bert.pooler.dense.{rest}");
    }
    if name.starts_with("classifier.") || name.starts_with("cls.") {
        return name.to_owned();
    }
    let rest = name.strip_prefix("distilbert.").unwrap_or(name);
    if let Some(layer) = rest.strip_prefix("transformer.layer.") {
        let (index, part) = layer.split_once('.').unwrap_or((layer, ""));
        for (theirs, ours) in DISTILBERT_LAYER_NAMES {
            if let Some(tail) = part.strip_prefix(theirs).and_then(|t| t.strip_prefix('.')) {
                return format!("bert.encoder.layer.{index}.{ours}.{tail}");
            }
        }
        return format!("bert.encoder.layer.{index}.{part}");
    }
    format!("bert.{rest}")
}

/// The inverse of [`distilbert_to_bert`].
fn bert_to_distilbert(name: &str) -> String {
    if let Some(rest) = name.strip_prefix("bert.pooler.dense.") {
        return format!("pre_classifier.{rest}");
    }
    if let Some(layer) = name.strip_prefix("bert.encoder.layer.") {
        let (index, part) = layer.split_once('.').unwrap_or((layer, ""));
        for (theirs, ours) in DISTILBERT_LAYER_NAMES {
            if let Some(tail) = part.strip_prefix(ours).and_then(|t| t.strip_prefix('.')) {
                return format!("distilbert.transformer.layer.{index}.{theirs}.{tail}");
            }
        }
    }
    match name.strip_prefix("bert.") {
        Some(rest) => format!("distilbert.{rest}"),
        None => name.to_owned(),
    }
}

fn decode(dtype: Dtype, bytes: &[u8], target: DType) -> Option<Storage> {
    let as_f64: Vec<f64> = match dtype {
        Dtype::F32 => {
            let values = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
            if target == DType::F32 {
                return Some(Storage::F32(values.collect()));
            }
            values.map(f64::from).collect()
        }
        Dtype::F16 => bytes.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f64()).collect(),
        Dtype::BF16 => {
            let values = bytes.chunks_exact(2).map(|c| bf16::from_le_bytes([c[0], c[1]]));
            if target == DType::BF16 {
                return Some(Storage::BF16(values.collect()));
            }
            values.map(|v| v.to_f64()).collect()
        }
        Dtype::F64 => bytes.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect(),
        _ => return None,
    };
    Some(match target {
        DType::F32 => Storage::F32(as_f64.iter().map(|&v| v as f32).collect()),
        DType::F64 => Storage::F64(as_f64),
        DType::BF16 => Storage::BF16(as_f64.iter().map(|&v| bf16::from_f64(v)).collect()),
    })
}

/// Reads every floating-point tensor of a safetensors file, under its stored name.
/// Integer tensors (such as `position_ids`) are skipped.
pub fn read_safetensors(path: &Path, dtype: DType) -> Result<Vec<(String, Tensor)>> {
    Ok(read_safetensors_split(path, dtype)?.0)
}

/// A weights file's floating-point tensors, and the names and dtypes of the others.
type SplitTensors = (Vec<(String, Tensor)>, Vec<(String, Dtype)>);

/// As [`read_safetensors`], also naming the skipped non-float tensors and
/// their stored dtypes, so a parameter stored as integers can be reported
/// as what it is rather than as missing.
fn read_safetensors_split(path: &Path, dtype: DType) -> Result<SplitTensors> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let file = SafeTensors::deserialize(&bytes).map_err(|e| Error::Checkpoint {
        path: path.into(),
        message: format!("not a readable safetensors file (truncated or corrupt?): {e}"),
    })?;
    let stored = file.tensors().into_iter().map(|(name, view)| (name, view.dtype(), view.shape().to_vec(), view.data()));
    let (mut out, skipped) = split_float_tensors(path, stored, dtype)?;
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((out, skipped))
}

/// Decodes the floating-point tensors into `dtype` and names the others.
fn split_float_tensors<'a>(
    path: &Path,
    stored: impl Iterator<Item = (String, Dtype, Vec<usize>, &'a [u8])>,
    dtype: DType,
) -> Result<SplitTensors> {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for (name, stored_dtype, shape, data) in stored {
        if matches!(
            stored_dtype,
            Dtype::I64 | Dtype::I32 | Dtype::U8 | Dtype::BOOL | Dtype::I8 | Dtype::I16 | Dtype::U32 | Dtype::U64 | Dtype::U16
        ) {
            skipped.push((name, stored_dtype));
            continue;
        }
        let storage = decode(stored_dtype, data, dtype).ok_or_else(|| Error::Checkpoint {
            path: path.into(),
            message: format!("tensor `{name}` has unsupported dtype {stored_dtype:?}"),
        })?;
        let tensor = Tensor::from_storage(storage, &shape)
            .map_err(|e| Error::Checkpoint { path: path.into(), message: format!("tensor `{name}`: {e}") })?;
        out.push((name, tensor));
    }
    Ok((out, skipped))
}

/// The weights file of a model folder: `model.safetensors`, or else the
/// `pytorch_model.bin` that many published checkpoints ship instead.
pub fn weights_file(dir: &Path) -> Result<PathBuf> {
    let safetensors = dir.join("model.safetensors");
    let torch = dir.join("pytorch_model.bin");
    if safetensors.is_file() {
        return Ok(safetensors);
    }
    if torch.is_file() {
        return Ok(torch);
    }
    let sharded = ["model.safetensors.index.json", "pytorch_model.bin.index.json"].into_iter().find(|f| dir.join(f).is_file());
    let message = match sharded {
        Some(index) => format!(
            "the weights are sharded ({index}); berth reads one file: merge the shards into model.safetensors with transformers (save_pretrained with a max_shard_size above the model's size)"
        ),
        None => "no model.safetensors or pytorch_model.bin: not a model folder".into(),
    };
    Err(Error::Checkpoint { path: dir.into(), message })
}

/// Reads a weights file of either format, as [`read_safetensors_split`].
fn read_weights_split(path: &Path, dtype: DType) -> Result<SplitTensors> {
    if path.extension().is_some_and(|e| e == "bin") {
        let stored = read_torch_checkpoint(path)?;
        // Already sorted by name.
        split_float_tensors(path, stored.iter().map(|(n, t)| (n.clone(), t.dtype, t.shape.clone(), t.bytes.as_slice())), dtype)
    } else {
        read_safetensors_split(path, dtype)
    }
}

/// How many values of `t` are NaN or infinite (0 for a tensor on a device).
pub fn count_non_finite(t: &Tensor) -> usize {
    match t.storage() {
        Storage::F32(v) => v.iter().filter(|x| !x.is_finite()).count(),
        Storage::F64(v) => v.iter().filter(|x| !x.is_finite()).count(),
        Storage::BF16(v) => v.iter().filter(|x| !x.is_finite()).count(),
        // Read from a file: never on a device.
        Storage::Device(_) => 0,
    }
}

/// Reads integer tensors (token ids, labels in fixtures) as i64.
pub fn read_safetensors_i64(path: &Path) -> Result<HashMap<String, (Vec<usize>, Vec<i64>)>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let file = SafeTensors::deserialize(&bytes).map_err(|e| Error::Checkpoint { path: path.into(), message: e.to_string() })?;
    let mut out = HashMap::new();
    for (name, view) in file.tensors() {
        if view.dtype() == Dtype::I64 {
            let values = view.data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
            out.insert(name, (view.shape().to_vec(), values));
        }
    }
    Ok(out)
}

fn head_from_config(config: &BertConfig) -> HeadKind {
    match config.architecture() {
        Some(a) if a.ends_with("ForTokenClassification") => HeadKind::TokenClassification,
        _ => HeadKind::SequenceClassification,
    }
}

/// Loads `dir/config.json` and `dir/model.safetensors` (or `dir/pytorch_model.bin`) into a classifier.
pub fn load_model(dir: &Path, options: &LoadOptions) -> Result<(BertClassifier, LoadReport)> {
    let config = BertConfig::from_file(&dir.join("config.json"))?;
    let weights_path = weights_file(dir)?;
    let (stored, non_float) = read_weights_split(&weights_path, options.dtype)?;
    let head = options.head.unwrap_or_else(|| head_from_config(&config));
    let labels = options.labels.clone().unwrap_or_else(|| config.labels());
    let problem_type = options.problem_type.or_else(|| config.problem_type());
    let mut report = LoadReport::default();

    let mut by_name: BTreeMap<String, Tensor> = BTreeMap::new();
    let mut ignored_pretraining = 0;
    let mut ignored_pooler = 0;
    let mut non_finite = Vec::new();
    let family = config.family;
    for (name, tensor) in stored {
        let canonical = canonical_name_in(family, &name);
        if canonical.starts_with("cls.") {
            ignored_pretraining += 1;
            continue;
        }
        // RoBERTa's classification heads have no pooler (transformers leaves it unused too).
        if family.has_roberta_head() && name.starts_with("roberta.pooler.") {
            ignored_pooler += 1;
            continue;
        }
        // A NaN weight would give NaN scores labelled with the first class; refuse it here.
        let bad = count_non_finite(&tensor);
        if bad > 0 {
            non_finite.push(format!("{name}: {bad} of {} values are NaN or infinite", tensor.numel()));
        }
        by_name.insert(canonical, tensor);
    }
    if !non_finite.is_empty() {
        return Err(Error::Checkpoint {
            path: weights_path,
            message: format!("non-finite weights, the model cannot be used:\n    {}", non_finite.join("\n    ")),
        });
    }
    if family == Family::ModernBert {
        split_fused_qkv(&mut by_name)?;
    }
    let stored_dtype: HashMap<String, Dtype> = non_float.into_iter().map(|(n, d)| (canonical_name_in(family, &n), d)).collect();
    if ignored_pretraining > 0 {
        report.notes.push(format!("ignored {ignored_pretraining} pre-training head tensors (cls.*, lm_head.*, *_predictions.*)"));
    }
    if ignored_pooler > 0 {
        report.notes.push(format!("ignored {ignored_pooler} roberta.pooler tensors: RoBERTa's classification heads have no pooler"));
    }

    let expected = expected_parameters(&config, head, labels.len());
    let is_head_part = |name: &str| name.starts_with("classifier.") || name.starts_with("bert.pooler.");
    let mut missing = Vec::new();
    let mut wrong_shape = Vec::new();
    let mut wrong_dtype = Vec::new();
    let mut head_problems = Vec::new();
    let mut store = ParamStore::default();
    for (name, shape) in &expected {
        if let Some(dtype) = stored_dtype.get(name) {
            wrong_dtype.push(format!("{name}: stored as {dtype:?}, parameters must be F32, F16, BF16 or F64"));
            continue;
        }
        match by_name.remove(name) {
            Some(t) if t.shape() == shape.as_slice() => store.push(name.clone(), t),
            Some(t) if options.require_trained_head && is_head_part(name) => {
                head_problems.push(format!("{name}: stored {:?}, the config's head needs {:?}", t.shape(), shape));
            }
            Some(t) if name.starts_with("classifier.") => {
                // HF's ignore_mismatched_sizes: a head for other labels is replaced.
                report.notes.push(format!("`{name}` has shape {:?}, the new head needs {:?}: re-initialised", t.shape(), shape));
                report.initialized.push(name.clone());
                store.push(name.clone(), init_parameter(name, shape, config.initializer_range, options.seed, options.dtype));
            }
            Some(t) => wrong_shape.push(format!("{name}: stored {:?}, expected {:?}", t.shape(), shape)),
            None if options.require_trained_head && is_head_part(name) => head_problems.push(format!("{name}: absent")),
            None if is_head_part(name) => {
                report.initialized.push(name.clone());
                store.push(name.clone(), init_parameter(name, shape, config.initializer_range, options.seed, options.dtype));
            }
            None => missing.push(name.clone()),
        }
    }
    // A pooler stored for a token head is unused, as in HF.
    if head == HeadKind::TokenClassification && !family.token_head_has_transform() {
        let pooler: Vec<String> = by_name.keys().filter(|k| k.starts_with("bert.pooler.")).cloned().collect();
        for k in pooler {
            by_name.remove(&k);
            report.notes.push(format!("`{k}` is not used by a token-classification head"));
        }
    }
    let unexpected: Vec<String> = by_name.keys().cloned().collect();
    if !missing.is_empty() || !wrong_shape.is_empty() || !wrong_dtype.is_empty() || !unexpected.is_empty() {
        let mut message = String::from("the tensors do not match the config");
        for (title, list) in
            [("missing", &missing), ("wrong shape", &wrong_shape), ("wrong dtype", &wrong_dtype), ("unexpected", &unexpected)]
        {
            if !list.is_empty() {
                message.push_str(&format!("\n  {title} ({}):", list.len()));
                for item in list.iter() {
                    message.push_str(&format!("\n    {item}"));
                }
            }
        }
        return Err(Error::Checkpoint { path: weights_path, message });
    }
    if !head_problems.is_empty() {
        let all_absent = head_problems.iter().all(|p| p.ends_with(": absent"));
        let what = if all_absent {
            "has no trained classification head (it looks like a bare encoder)"
        } else {
            "has a classification head that does not fit its config"
        };
        return Err(Error::Checkpoint {
            path: weights_path,
            message: format!(
                "{what}, so it cannot predict:\n    {}\nFine-tune it first: berth train --model {} --train FILE --output DIR",
                head_problems.join("\n    "),
                dir.display()
            ),
        });
    }
    if !report.initialized.is_empty() {
        report.notes.push(format!(
            "initialised {} (normal, std {}, seed {}): the checkpoint has no trained head for these labels",
            report.initialized.join(", "),
            config.initializer_range,
            options.seed
        ));
    }
    let model = BertClassifier::new(config, head, problem_type, labels, store)?;
    Ok((model, report))
}

/// Writes `config.json` and `model.safetensors` (in `dtype`) that transformers loads unchanged.
/// Each file is written to a temporary name and renamed, so a crash never leaves a torn file.
pub fn save_model(model: &BertClassifier, dir: &Path, dtype: DType) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let (family, head) = (model.config.family, model.head);
    let architecture = format!("{}{}", family.class_stem(), head.architecture_suffix());
    let config = model.config.to_json(&architecture, &model.labels, model.problem_type);
    let config_text = serde_json::to_string_pretty(&config).expect("JSON values serialise");
    write_atomic(&dir.join("config.json"), config_text.as_bytes())?;

    let mut named: Vec<(String, Tensor)> = model.params.iter().map(|(n, t)| (n.to_owned(), t.clone())).collect();
    if family == Family::ModernBert {
        named = join_fused_qkv(named)?;
    }
    let named: Vec<(String, Tensor)> = named.into_iter().map(|(n, t)| (hf_tensor_name(family, head, &n), t)).collect();
    write_safetensors(&dir.join("model.safetensors"), named.iter().map(|(n, t)| (n.as_str(), t)), dtype)
}

/// Writes named tensors, converted to `dtype`, as one safetensors file (atomically).
pub fn write_safetensors<'a>(path: &Path, tensors: impl Iterator<Item = (&'a str, &'a Tensor)>, dtype: DType) -> Result<()> {
    let converted: Vec<(String, Tensor)> =
        tensors.map(|(n, t)| (n.to_owned(), if t.dtype() == dtype { t.clone() } else { t.to_dtype(dtype) })).collect();
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> =
        converted.iter().map(|(n, t)| (n.clone(), t.to_le_bytes(), t.shape().to_vec())).collect();
    let st_dtype = match dtype {
        DType::F32 => Dtype::F32,
        DType::F64 => Dtype::F64,
        DType::BF16 => Dtype::BF16,
    };
    let views = bytes
        .iter()
        .map(|(n, b, s)| safetensors::tensor::TensorView::new(st_dtype, s.clone(), b).map(|v| (n.clone(), v)))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Checkpoint { path: path.into(), message: e.to_string() })?;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let data = safetensors::tensor::serialize(views, Some(metadata))
        .map_err(|e| Error::Checkpoint { path: path.into(), message: e.to_string() })?;
    write_atomic(path, &data)
}

/// The tokenizer files that travel with a checkpoint.
pub const TOKENIZER_FILES: [&str; 4] = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"];

/// Copies whichever tokenizer files exist from `from` into `to`.
pub fn copy_tokenizer_files(from: &Path, to: &Path) -> Result<()> {
    if from == to {
        return Ok(());
    }
    TokenizerFiles::read(from)?.write(to)
}

/// Whichever tokenizer files a model folder has, held in memory. A training
/// run reads them once and writes them into every checkpoint: the folder it
/// started from may be a checkpoint that the run itself prunes.
#[derive(Clone, Debug, Default)]
pub struct TokenizerFiles(Vec<(&'static str, Vec<u8>)>);

impl TokenizerFiles {
    pub fn read(dir: &Path) -> Result<TokenizerFiles> {
        let mut files = Vec::new();
        for name in TOKENIZER_FILES {
            let src = dir.join(name);
            if src.exists() {
                files.push((name, std::fs::read(&src).map_err(|e| Error::io(&src, e))?));
            }
        }
        Ok(TokenizerFiles(files))
    }

    pub fn write(&self, to: &Path) -> Result<()> {
        for (name, bytes) in &self.0 {
            write_atomic(&to.join(name), bytes)?;
        }
        Ok(())
    }
}

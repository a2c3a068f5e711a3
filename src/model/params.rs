//! Named parameters in Hugging Face naming, and the list a model expects.

use std::collections::HashMap;
use std::sync::Arc;

use super::config::{BertConfig, Family};
use crate::backend::{PackedBf16Linear, PackedLinear, PackedWeight, QuantizedLinear};
use crate::error::{Error, Result};
use crate::rng;
use crate::tensor::{DType, Precision, Tensor};

/// Which Hugging Face class the weights belong to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadKind {
    /// `BertForSequenceClassification`: tanh pooler over [CLS], dropout, linear.
    SequenceClassification,
    /// `BertForTokenClassification`: dropout and linear on every token; no pooler.
    TokenClassification,
}

impl HeadKind {
    /// The class name after the family's stem (`Roberta` + `ForTokenClassification`).
    pub fn architecture_suffix(self) -> &'static str {
        match self {
            HeadKind::SequenceClassification => "ForSequenceClassification",
            HeadKind::TokenClassification => "ForTokenClassification",
        }
    }

    pub fn has_pooler(self) -> bool {
        self == HeadKind::SequenceClassification
    }
}

/// Parameters in a fixed order, addressable by HF name.
#[derive(Clone, Debug, Default)]
pub struct ParamStore {
    names: Vec<String>,
    tensors: Vec<Tensor>,
    index: HashMap<String, usize>,
}

impl ParamStore {
    pub fn push(&mut self, name: String, tensor: Tensor) {
        self.index.insert(name.clone(), self.names.len());
        self.names.push(name);
        self.tensors.push(tensor);
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn tensors(&self) -> &[Tensor] {
        &self.tensors
    }

    pub fn tensors_mut(&mut self) -> &mut [Tensor] {
        &mut self.tensors
    }

    pub fn position(&self, name: &str) -> Result<usize> {
        self.index.get(name).copied().ok_or_else(|| Error::InvalidArgument(format!("no parameter named `{name}`")))
    }

    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.names.iter().map(String::as_str).zip(&self.tensors)
    }

    /// Total number of scalar parameters.
    pub fn count(&self) -> usize {
        self.tensors.iter().map(Tensor::numel).sum()
    }

    pub fn to_dtype(&self, dtype: DType) -> ParamStore {
        let mut out = ParamStore::default();
        for (name, t) in self.iter() {
            out.push(name.to_owned(), if t.dtype() == dtype { t.clone() } else { t.to_dtype(dtype) });
        }
        out
    }
}

/// The CPU's load-time copies of the linear weights: transposed to (in, out)
/// for a faster f32 forward pass through the gemm crate, or packed for the
/// inference kernels ([`PackedWeight`]): under `--precision int8` the
/// encoder layers' weights quantized ([`QuantizedLinear`]), and for
/// the CPU's forward on a CPU with AVX-512 the f32 ones in panels
/// ([`WeightCache::build_packed`]; [`PackedLinear`]).
/// A snapshot: each entry remembers the tensor it was made from and is used
/// only while the parameter still shares that storage, so an optimizer
/// update (which copies or replaces the storage) can never meet a stale copy.
#[derive(Clone, Debug, Default)]
pub struct WeightCache {
    entries: HashMap<usize, (Tensor, CachedWeight)>,
    /// For inference ([`WeightCache::fuse_qkv`]): each layer's q, k and v
    /// projections as one weight, keyed by the query weight's position.
    fused_qkv: HashMap<usize, FusedQkv>,
}

/// One layer's query, key and value projections as one (3H, H) weight, made
/// at load for inference: one GEMM (and under INT8 one quantization of the
/// activations) instead of three.
#[derive(Clone, Debug)]
pub struct FusedQkv {
    /// The tensors it was made from (three weights, then the biases there
    /// are), to check that they are still current.
    sources: Vec<Tensor>,
    pub weight: FusedWeight,
    /// The three biases end to end (3H), where the layers have biases.
    pub bias: Option<Tensor>,
}

/// The joined weight as the forward reads it.
#[derive(Clone, Debug)]
pub enum FusedWeight {
    /// Packed for the inference kernels: INT8 quantized per output channel,
    /// so its codes and scales are those of the three alone, and its outputs
    /// the same bits; or f32 in panels ([`WeightCache::build_packed`]).
    Packed(Arc<PackedWeight>),
    /// f32: the (3H, H) weight and its (H, 3H) transpose, which the CPU's
    /// GEMM reads (the three transposed copies are dropped for it).
    F32 { weight: Tensor, transposed: Tensor },
}

#[derive(Clone, Debug)]
enum CachedWeight {
    Transposed(Tensor),
    Packed(Arc<PackedWeight>),
}

/// Whether `name` is the 2-D weight of a linear layer (embeddings excluded).
fn is_linear_weight(name: &str, t: &Tensor) -> bool {
    t.dims() == 2 && name.ends_with(".weight") && !name.contains("embeddings")
}

/// The linear layers `--precision int8` quantizes: every layer of the
/// encoder (attention projections, attention output, feed-forward). The
/// embeddings, their projection, LayerNorm, attention's softmax, the
/// pooler and the classifier stay in f32, as the CPU peers keep them.
pub fn quantized_under_int8(name: &str) -> bool {
    name.starts_with("bert.encoder.layer.") && name.ends_with(".weight") && !name.contains("LayerNorm")
}

/// How the CPU's forward holds a linear weight below f32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lowered {
    Int8,
    Bf16,
}

/// Which linear weights a CPU forward in `precision` holds below f32, and
/// how: `--precision int8` quantizes the encoder layers
/// ([`quantized_under_int8`]), `--precision bf16` rounds the same layers to
/// BF16; the embeddings, pooler and classifier stay f32 in both.
fn lowered_for(precision: Precision) -> fn(&str) -> Option<Lowered> {
    match precision {
        Precision::Fp32 => |_| None,
        Precision::Int8 => |name| quantized_under_int8(name).then_some(Lowered::Int8),
        Precision::Bf16 => |name| quantized_under_int8(name).then_some(Lowered::Bf16),
    }
}

impl WeightCache {
    /// Transposes every 2-D weight of a linear layer (embeddings excluded).
    pub fn build(store: &ParamStore) -> Result<WeightCache> {
        WeightCache::build_for(store, Precision::Fp32)
    }

    /// The copies a CPU forward pass in `precision` reads through the gemm
    /// crate: under Int8 the encoder layers' weights quantized, under Bf16
    /// the same layers rounded to BF16 and packed (f32 models only), every
    /// other linear weight transposed.
    pub fn build_for(store: &ParamStore, precision: Precision) -> Result<WeightCache> {
        WeightCache::build_with(store, lowered_for(precision), false)
    }

    /// As [`WeightCache::build_for`], with the f32 weights packed into the
    /// CPU kernel's panels instead of transposed where the CPU packs them
    /// ([`crate::backend::cpu_packs_f32`]): the copies the CPU's forward
    /// reads, in inference and in training (whose backward reads the
    /// weights themselves). Elsewhere the same cache as `build_for`.
    pub fn build_packed(store: &ParamStore, precision: Precision) -> Result<WeightCache> {
        WeightCache::build_with(store, lowered_for(precision), crate::backend::cpu_packs_f32())
    }

    /// As [`WeightCache::build_for`], quantizing the linear weights whose
    /// name `quantize` accepts (the per-layer-type error test picks one kind
    /// of layer at a time) and transposing the others.
    pub fn build_quantizing(store: &ParamStore, quantize: impl Fn(&str) -> bool) -> Result<WeightCache> {
        WeightCache::build_with(store, |name| quantize(name).then_some(Lowered::Int8), false)
    }

    /// Each linear weight lowered to INT8 or BF16 where `lower` says so,
    /// else (f32) packed when `pack_f32`, else transposed.
    fn build_with(store: &ParamStore, lower: impl Fn(&str) -> Option<Lowered>, pack_f32: bool) -> Result<WeightCache> {
        let mut entries = HashMap::new();
        for (i, (name, t)) in store.iter().enumerate() {
            if !is_linear_weight(name, t) {
                continue;
            }
            let (out, k) = (t.shape()[0], t.shape()[1]);
            let lowered = lower(name);
            let cached = if let Some(lowered) = lowered {
                if t.dtype() != DType::F32 {
                    let flag = if lowered == Lowered::Int8 { "int8 quantizes" } else { "bf16 rounds" };
                    return Err(Error::InvalidArgument(format!("--precision {flag} f32 weights; {name} is {}", t.dtype().name())));
                }
                let weight = t.data::<f32>()?;
                CachedWeight::Packed(Arc::new(match lowered {
                    Lowered::Int8 => PackedWeight::Int8(QuantizedLinear::quantize(name, weight, out, k)?),
                    Lowered::Bf16 => PackedWeight::Bf16(PackedBf16Linear::pack(name, weight, out, k)?),
                }))
            } else if pack_f32 && t.dtype() == DType::F32 {
                CachedWeight::Packed(Arc::new(PackedWeight::F32(PackedLinear::pack(name, t.data::<f32>()?, out, k)?)))
            } else {
                CachedWeight::Transposed(crate::backend::of(t).transpose(t)?)
            };
            entries.insert(i, (t.clone(), cached));
        }
        Ok(WeightCache { entries, fused_qkv: HashMap::new() })
    }

    /// Joins each encoder layer's query, key and value weights (and biases)
    /// into one weight ([`FusedQkv`]): INT8 where the query weight is held
    /// INT8, packed f32 where it is held packed, f32 with its transpose
    /// where it is held transposed (the three copies dropped in both f32
    /// cases). For a cache that serves inference only, of a model whose
    /// layers project q, k and v from the same input (not DeBERTa's
    /// relative attention nor ModernBERT's pre-norm layers, which read the
    /// three apart). A layer whose three do not share a shape and dtype, or
    /// whose biases are neither all there nor all absent, is left as it is.
    pub fn fuse_qkv(mut self, store: &ParamStore) -> Result<WeightCache> {
        let position: HashMap<&str, usize> = store.iter().enumerate().map(|(i, (name, _))| (name, i)).collect();
        let tensors = store.tensors();
        for (name, &query) in &position {
            let Some(prefix) = name.strip_suffix("attention.self.query.weight").filter(|p| p.starts_with("bert.encoder.layer.")) else {
                continue;
            };
            let find = |part: &str, kind: &str| position.get(format!("{prefix}attention.self.{part}.{kind}").as_str()).copied();
            let (Some(key), Some(value)) = (find("key", "weight"), find("value", "weight")) else { continue };
            let weights = [query, key, value];
            let shape = tensors[query].shape();
            if shape.len() != 2 || weights.iter().any(|&w| tensors[w].shape() != shape || tensors[w].dtype() != DType::F32) {
                continue;
            }
            let biases: Vec<usize> = ["query", "key", "value"].iter().filter_map(|part| find(part, "bias")).collect();
            if !biases.is_empty() && biases.len() != 3 {
                continue;
            }
            let (out, k) = (shape[0], shape[1]);
            let join = |parts: &[usize]| -> Result<Vec<f32>> {
                let mut joined = Vec::new();
                for &p in parts {
                    joined.extend_from_slice(tensors[p].data::<f32>()?);
                }
                Ok(joined)
            };
            let weight = match self.current(query, &tensors[query]) {
                Some(CachedWeight::Packed(packed)) => {
                    let label = format!("{prefix}attention.self.query|key|value.weight");
                    let joined = join(&weights)?;
                    FusedWeight::Packed(Arc::new(match **packed {
                        PackedWeight::Int8(_) => PackedWeight::Int8(QuantizedLinear::quantize(&label, &joined, 3 * out, k)?),
                        PackedWeight::Bf16(_) => {
                            for w in weights {
                                self.entries.remove(&w);
                            }
                            PackedWeight::Bf16(PackedBf16Linear::pack(&label, &joined, 3 * out, k)?)
                        }
                        PackedWeight::F32(_) => {
                            for w in weights {
                                self.entries.remove(&w);
                            }
                            PackedWeight::F32(PackedLinear::pack(&label, &joined, 3 * out, k)?)
                        }
                    }))
                }
                Some(CachedWeight::Transposed(_)) => {
                    let weight = Tensor::from_vec(join(&weights)?, &[3 * out, k])?;
                    let transposed = crate::backend::of(&weight).transpose(&weight)?;
                    for w in weights {
                        self.entries.remove(&w);
                    }
                    FusedWeight::F32 { weight, transposed }
                }
                None => continue,
            };
            let bias = match biases.is_empty() {
                true => None,
                false => Some(Tensor::from_vec(join(&biases)?, &[3 * out])?),
            };
            let sources = weights.into_iter().chain(biases).map(|i| tensors[i].clone()).collect();
            self.fused_qkv.insert(query, FusedQkv { sources, weight, bias });
        }
        Ok(self)
    }

    /// How many layers project q, k and v in one weight.
    pub fn fused_qkv_count(&self) -> usize {
        self.fused_qkv.len()
    }

    /// The fused q|k|v weight of the layer whose query weight is at
    /// `query_weight`, if it has one and `current` (its three weights, then
    /// the biases there are, in the order they were fused) are still the
    /// tensors it was made from.
    pub fn fused_qkv(&self, query_weight: usize, current: &[&Tensor]) -> Option<&FusedQkv> {
        self.fused_qkv
            .get(&query_weight)
            .filter(|f| f.sources.len() == current.len() && f.sources.iter().zip(current).all(|(source, now)| source.shares_storage(now)))
    }

    fn current(&self, index: usize, current: &Tensor) -> Option<&CachedWeight> {
        self.entries.get(&index).filter(|(source, _)| source.shares_storage(current)).map(|(_, c)| c)
    }

    /// The transposed copy of parameter `index`, if it is still current.
    pub fn get(&self, index: usize, current: &Tensor) -> Option<&Tensor> {
        match self.current(index, current)? {
            CachedWeight::Transposed(t) => Some(t),
            CachedWeight::Packed(_) => None,
        }
    }

    /// The packed copy (INT8 or f32) of parameter `index`, if it has one and
    /// it is still current.
    pub fn packed(&self, index: usize, current: &Tensor) -> Option<&PackedWeight> {
        match self.current(index, current)? {
            CachedWeight::Packed(p) => Some(p),
            CachedWeight::Transposed(_) => None,
        }
    }

    /// How many weights are held quantized (0 unless built for Int8).
    pub fn quantized_count(&self) -> usize {
        self.entries.values().filter(|(_, c)| matches!(c, CachedWeight::Packed(p) if matches!(**p, PackedWeight::Int8(_)))).count()
    }

    /// How many weights (fused q|k|v ones included) are held packed in f32.
    pub fn packed_f32_count(&self) -> usize {
        self.packed_count(|p| matches!(p, PackedWeight::F32(_)))
    }

    /// How many weights (fused q|k|v ones included) are held in BF16.
    pub fn bf16_count(&self) -> usize {
        self.packed_count(|p| matches!(p, PackedWeight::Bf16(_)))
    }

    fn packed_count(&self, kind: impl Fn(&PackedWeight) -> bool) -> usize {
        let single = self.entries.values().filter(|(_, c)| matches!(c, CachedWeight::Packed(p) if kind(p))).count();
        single + self.fused_qkv.values().filter(|f| matches!(&f.weight, FusedWeight::Packed(p) if kind(p))).count()
    }
}

/// Every parameter a model of this config and head has, with its shape, in HF order.
pub fn expected_parameters(config: &BertConfig, head: HeadKind, num_labels: usize) -> Vec<(String, Vec<usize>)> {
    if config.family == Family::ModernBert {
        return modernbert_parameters(config, num_labels);
    }
    if config.family == Family::Deberta {
        return deberta_parameters(config, head, num_labels);
    }
    let h = config.hidden_size;
    let e = config.embedding_width();
    let mut out: Vec<(String, Vec<usize>)> = vec![
        ("bert.embeddings.word_embeddings.weight".into(), vec![config.vocab_size, e]),
        ("bert.embeddings.position_embeddings.weight".into(), vec![config.max_position_embeddings, e]),
        ("bert.embeddings.LayerNorm.weight".into(), vec![e]),
        ("bert.embeddings.LayerNorm.bias".into(), vec![e]),
    ];
    if config.family.has_token_type_table() {
        out.insert(2, ("bert.embeddings.token_type_embeddings.weight".into(), vec![config.type_vocab_size, e]));
    }
    if config.projects_embeddings() {
        out.push(("bert.embeddings_project.weight".into(), vec![h, e]));
        out.push(("bert.embeddings_project.bias".into(), vec![h]));
    }
    out.extend(post_norm_layer_parameters(config));
    out.extend(head_parameters(h, head, num_labels));
    out
}

/// ModernBERT's parameters under berth's names (see `checkpoint`'s
/// ModernBERT tables): no biases but the classifier's, no position or type
/// table, no `attn_norm` on layer 0, `Wqkv` as three projections, `Wi`
/// (2I, H) holding the GeGLU's input and gate, a final norm, and the head's
/// dense + norm for both head kinds.
fn modernbert_parameters(config: &BertConfig, num_labels: usize) -> Vec<(String, Vec<usize>)> {
    let (h, i) = (config.hidden_size, config.intermediate_size);
    let mut out: Vec<(String, Vec<usize>)> = vec![
        ("bert.embeddings.word_embeddings.weight".into(), vec![config.vocab_size, h]),
        ("bert.embeddings.LayerNorm.weight".into(), vec![h]),
    ];
    for l in 0..config.num_hidden_layers {
        let p = format!("bert.encoder.layer.{l}");
        if l > 0 {
            out.push((format!("{p}.attention.LayerNorm.weight"), vec![h]));
        }
        for (name, shape) in [
            ("attention.self.query.weight", vec![h, h]),
            ("attention.self.key.weight", vec![h, h]),
            ("attention.self.value.weight", vec![h, h]),
            ("attention.output.dense.weight", vec![h, h]),
            ("intermediate.LayerNorm.weight", vec![h]),
            ("intermediate.dense.weight", vec![2 * i, h]),
            ("output.dense.weight", vec![h, i]),
        ] {
            out.push((format!("{p}.{name}"), shape));
        }
    }
    out.push(("bert.final_norm.LayerNorm.weight".into(), vec![h]));
    out.push(("bert.pooler.dense.weight".into(), vec![h, h]));
    out.push(("bert.pooler.LayerNorm.weight".into(), vec![h]));
    out.push(("classifier.weight".into(), vec![num_labels, h]));
    out.push(("classifier.bias".into(), vec![num_labels]));
    out
}

/// The parameters of every post-norm (BERT-shaped) layer, BERT's names.
fn post_norm_layer_parameters(config: &BertConfig) -> Vec<(String, Vec<usize>)> {
    let (h, i) = (config.hidden_size, config.intermediate_size);
    let mut out = Vec::new();
    for l in 0..config.num_hidden_layers {
        let p = format!("bert.encoder.layer.{l}");
        for (name, shape) in [
            ("attention.self.query.weight", vec![h, h]),
            ("attention.self.query.bias", vec![h]),
            ("attention.self.key.weight", vec![h, h]),
            ("attention.self.key.bias", vec![h]),
            ("attention.self.value.weight", vec![h, h]),
            ("attention.self.value.bias", vec![h]),
            ("attention.output.dense.weight", vec![h, h]),
            ("attention.output.dense.bias", vec![h]),
            ("attention.output.LayerNorm.weight", vec![h]),
            ("attention.output.LayerNorm.bias", vec![h]),
            ("intermediate.dense.weight", vec![i, h]),
            ("intermediate.dense.bias", vec![i]),
            ("output.dense.weight", vec![h, i]),
            ("output.dense.bias", vec![h]),
            ("output.LayerNorm.weight", vec![h]),
            ("output.LayerNorm.bias", vec![h]),
        ] {
            out.push((format!("{p}.{name}"), shape));
        }
    }
    out
}

/// A BERT-shaped head's parameters: the pooler slot's dense layer (with a
/// bias) for sequence heads, and the classifier.
fn head_parameters(h: usize, head: HeadKind, num_labels: usize) -> Vec<(String, Vec<usize>)> {
    let mut out: Vec<(String, Vec<usize>)> = Vec::new();
    if head.has_pooler() {
        out.push(("bert.pooler.dense.weight".into(), vec![h, h]));
        out.push(("bert.pooler.dense.bias".into(), vec![h]));
    }
    out.push(("classifier.weight".into(), vec![num_labels, h]));
    out.push(("classifier.bias".into(), vec![num_labels]));
    out
}

/// DeBERTa's parameters under berth's names (see `checkpoint`'s DeBERTa
/// table): BERT's layers, no position or type table, the relative
/// embeddings (2·span, H) and their LayerNorm (`norm_rel_ebd`), and the
/// ContextPooler's dense layer for sequence heads.
fn deberta_parameters(config: &BertConfig, head: HeadKind, num_labels: usize) -> Vec<(String, Vec<usize>)> {
    let h = config.hidden_size;
    let settings = config.deberta.as_ref().expect("a DeBERTa config has DeBERTa settings");
    let mut out: Vec<(String, Vec<usize>)> = vec![
        ("bert.embeddings.word_embeddings.weight".into(), vec![config.vocab_size, h]),
        ("bert.embeddings.LayerNorm.weight".into(), vec![h]),
        ("bert.embeddings.LayerNorm.bias".into(), vec![h]),
        ("bert.encoder.rel_embeddings.weight".into(), vec![settings.relative_rows(), h]),
    ];
    if settings.normed_relative_embeddings {
        out.push(("bert.encoder.LayerNorm.weight".into(), vec![h]));
        out.push(("bert.encoder.LayerNorm.bias".into(), vec![h]));
    }
    out.extend(post_norm_layer_parameters(config));
    out.extend(head_parameters(h, head, num_labels));
    out
}

/// HF's `_init_weights` for one tensor: Linear and Embedding weights
/// ~ N(0, initializer_range), biases 0, LayerNorm weight 1. Seeded and
/// deterministic: the stream is derived from the name.
pub fn init_parameter(name: &str, shape: &[usize], std: f64, seed: u64, dtype: DType) -> Tensor {
    let n: usize = shape.iter().product();
    let stream = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    let values: Vec<f64> = if name.contains("LayerNorm.weight") {
        vec![1.0; n]
    } else if name.ends_with(".bias") {
        vec![0.0; n]
    } else {
        (0..n as u64).map(|i| rng::normal(seed, stream, i) * std).collect()
    };
    Tensor::from_vec(values, shape).expect("shape matches").to_dtype(dtype)
}

/// A model with every parameter freshly initialised (benchmarks, tests).
pub fn random_parameters(config: &BertConfig, head: HeadKind, num_labels: usize, seed: u64, dtype: DType) -> ParamStore {
    let mut store = ParamStore::default();
    for (name, shape) in expected_parameters(config, head, num_labels) {
        let t = init_parameter(&name, &shape, config.initializer_range, seed, dtype);
        store.push(name, t);
    }
    store
}

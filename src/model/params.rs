//! Named parameters in Hugging Face naming, and the list a model expects.

use std::collections::HashMap;

use super::config::BertConfig;
use crate::error::{Error, Result};
use crate::rng;
use crate::tensor::{DType, Tensor};

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

/// Linear weights transposed to (in, out) for a faster CPU forward pass.
/// A snapshot: each entry remembers the tensor it was made from and is used
/// only while the parameter still shares that storage, so an optimizer
/// update (which copies or replaces the storage) can never meet a stale copy.
#[derive(Clone, Debug, Default)]
pub struct WeightCache {
    entries: HashMap<usize, (Tensor, Tensor)>,
}

impl WeightCache {
    /// Transposes every 2-D weight of a linear layer (embeddings excluded).
    pub fn build(store: &ParamStore) -> Result<WeightCache> {
        let mut entries = HashMap::new();
        for (i, (name, t)) in store.iter().enumerate() {
            if t.dims() == 2 && name.ends_with(".weight") && !name.contains("embeddings") {
                let transposed = crate::backend::of(t).transpose(t)?;
                entries.insert(i, (t.clone(), transposed));
            }
        }
        Ok(WeightCache { entries })
    }

    /// The transposed copy of parameter `index`, if it is still current.
    pub fn get(&self, index: usize, current: &Tensor) -> Option<&Tensor> {
        self.entries.get(&index).filter(|(source, _)| source.shares_storage(current)).map(|(_, t)| t)
    }
}

/// Every parameter a model of this config and head has, with its shape, in HF order.
pub fn expected_parameters(config: &BertConfig, head: HeadKind, num_labels: usize) -> Vec<(String, Vec<usize>)> {
    let h = config.hidden_size;
    let i = config.intermediate_size;
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
    if head.has_pooler() {
        out.push(("bert.pooler.dense.weight".into(), vec![h, h]));
        out.push(("bert.pooler.dense.bias".into(), vec![h]));
    }
    out.push(("classifier.weight".into(), vec![num_labels, h]));
    out.push(("classifier.bias".into(), vec![num_labels]));
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

//! A multi-task model: one encoder and several named heads in one folder.
//!
//! The saved folder is one checkpoint: `model.safetensors` holds the shared
//! encoder under its family's Hugging Face names (`bert.*`, `roberta.*`,
//! `distilbert.transformer.*`, …, so `AutoModel` loads it) and each head's
//! own parameters as `heads.<name>.classifier.*` (and, for families whose
//! head begins with a dense layer, `heads.<name>.bert.pooler.*`: see
//! [`is_per_head`]); `heads.json`
//! holds each head's task, labels and settings; `config.json` is the encoder's.
//! A head becomes an ordinary [`BertClassifier`] whose parameters are the
//! shared tensors plus its own, so training, evaluation and prediction reuse
//! the single-task code. Training it is `train::multitask`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::io::write_atomic;
use crate::model::checkpoint::{
    TokenizerFiles, canonical_name_in, hf_tensor_name, join_fused_qkv, read_safetensors, split_fused_qkv_in_order, write_safetensors,
};
use crate::model::params::{HeadKind, ParamStore, expected_parameters};
use crate::model::task::Task;
use crate::model::{BertClassifier, BertConfig, Family};
use crate::tensor::{DType, Tensor};

pub const HEADS_FILE: &str = "heads.json";

/// What `heads.json` records of each head.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadInfo {
    pub name: String,
    pub task: Task,
    pub labels: Vec<String>,
    pub loss_weight: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alignment: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeadsJson {
    mixing: String,
    heads: Vec<HeadInfo>,
}

/// The shared encoder and every head's parameters, in one store.
pub struct MultiTaskModel {
    pub config: BertConfig,
    pub heads: Vec<HeadInfo>,
    pub mixing: String,
    /// `bert.*` then each head's own `heads.<name>.*`.
    pub store: ParamStore,
}

/// Whether each head has its own copy of a parameter: the classifier, and
/// the dense layer before it where the family's head has one (BERT's
/// pretrained pooler is the encoder's and shared).
pub fn is_per_head(family: Family, name: &str) -> bool {
    name.starts_with("classifier.") || (!family.pooler_is_pretrained() && name.starts_with("bert.pooler."))
}

pub fn head_param_name(head: &str, name: &str) -> String {
    format!("heads.{head}.{name}")
}

impl MultiTaskModel {
    /// Whether a folder holds a multi-task checkpoint.
    pub fn is_multitask(dir: &Path) -> bool {
        dir.join(HEADS_FILE).is_file()
    }

    /// The index of a head by name; an unknown name lists the heads.
    pub fn head_index(&self, name: &str) -> Result<usize> {
        self.heads.iter().position(|h| h.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.heads.iter().map(|h| h.name.as_str()).collect();
            Error::InvalidArgument(format!("no head `{name}`; this model has: {}", names.join(", ")))
        })
    }

    /// Head `h` as a single-task model over the shared tensors, and for each
    /// of its parameters the index of the same tensor in [`Self::store`].
    pub fn head_model(&self, h: usize) -> Result<(BertClassifier, Vec<usize>)> {
        let head = &self.heads[h];
        let kind = head.task.head();
        let mut store = ParamStore::default();
        let mut map = Vec::new();
        for (name, _) in expected_parameters(&self.config, kind, head.labels.len()) {
            let unified = if is_per_head(self.config.family, &name) { head_param_name(&head.name, &name) } else { name.clone() };
            let index = self.store.position(&unified)?;
            store.push(name, self.store.tensors()[index].clone());
            map.push(index);
        }
        let model = BertClassifier::new(self.config.clone(), kind, head.task.problem_type(), head.labels.clone(), store)?;
        Ok((model, map))
    }

    /// Loads a folder written by [`Self::save`].
    pub fn load(dir: &Path) -> Result<MultiTaskModel> {
        let path = dir.join(HEADS_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let heads: HeadsJson = serde_json::from_str(&text).map_err(|e| Error::Config { path: path.clone(), message: e.to_string() })?;
        let config = BertConfig::from_file(&dir.join("config.json"))?;
        let mut named: Vec<(String, Tensor)> = read_safetensors(&dir.join("model.safetensors"), DType::F32)?
            .into_iter()
            .map(|(name, t)| (if name.starts_with("heads.") { name } else { canonical_name_in(config.family, &name) }, t))
            .collect();
        if config.family == Family::ModernBert {
            named = split_fused_qkv_in_order(named)?;
        }
        let mut store = ParamStore::default();
        for (name, tensor) in named {
            store.push(name, tensor);
        }
        let model = MultiTaskModel { config, heads: heads.heads, mixing: heads.mixing, store };
        for h in 0..model.heads.len() {
            model.head_model(h).map_err(|e| Error::Checkpoint { path: dir.join("model.safetensors"), message: e.to_string() })?;
        }
        Ok(model)
    }

    /// Writes `config.json` (the encoder's), `model.safetensors`, `heads.json`
    /// and the tokenizer files.
    pub fn save(&self, dir: &Path, tokenizer: &TokenizerFiles) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let family = self.config.family;
        let config = self.config.to_json(&format!("{}Model", family.class_stem()), &["LABEL_0".to_string()], None);
        write_atomic(&dir.join("config.json"), serde_json::to_string_pretty(&config).expect("json").as_bytes())?;
        // The encoder under the family's own names (ModernBERT's q, k and v
        // fused again), so that AutoModel loads it.
        let mut named: Vec<(String, Tensor)> = self.store.iter().map(|(n, t)| (n.to_owned(), t.clone())).collect();
        if family == Family::ModernBert {
            named = join_fused_qkv(named)?;
        }
        let named: Vec<(String, Tensor)> = named
            .into_iter()
            .map(|(n, t)| (if n.starts_with("heads.") { n } else { hf_tensor_name(family, HeadKind::TokenClassification, &n) }, t))
            .collect();
        write_safetensors(&dir.join("model.safetensors"), named.iter().map(|(n, t)| (n.as_str(), t)), DType::F32)?;
        let heads = HeadsJson { mixing: self.mixing.clone(), heads: self.heads.clone() };
        write_atomic(&dir.join(HEADS_FILE), serde_json::to_string_pretty(&heads).expect("json").as_bytes())?;
        tokenizer.write(dir)
    }
}

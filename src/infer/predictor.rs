//! Batched prediction: tokenise once, sort by length so batches pad little,
//! run the model without a tape, and return results in input order.

use std::path::Path;

use serde::Serialize;

use crate::data::align::{sentence_windows, word_predictions};
use crate::data::{BerthTokenizer, Encoded, longest_first_batches, pad_batch};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::metrics::entity::{EntityScheme, extract_entities};
use crate::model::decision::Decision;
use crate::model::device_model::{DeviceModel, Precision};
use crate::model::multitask::MultiTaskModel;
use crate::model::params::WeightCache;
use crate::model::settings::{ChunkSettings, InferenceSettings};
use crate::model::{BertClassifier, HeadKind, InferenceWeights, LoadOptions, LoadReport, ProblemType, load_model};
use crate::numerics::argmax;

/// One prediction. Which fields are present depends on the head.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Prediction {
    /// (C) for sequence heads; per real token (T, C) rows for token heads.
    pub logits: serde_json::Value,
    /// Softmax (single-label) or per-label sigmoid (multi-label) probabilities.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probabilities: Option<Vec<f64>>,
    /// The predicted label name (single-label).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Every label at or above its threshold (multi-label).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
    /// The predicted value (regression).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// Word pieces and their predicted tags (token heads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Chunked long text: how many windows were read, and how many more
    /// `max_chunks` left unread (absent when none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub windows: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub windows_dropped: Option<usize>,
}

/// A token model's prediction for one sentence of words.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct WordPrediction {
    /// The sentence's words, as given.
    pub words: Vec<String>,
    /// One tag per word: the prediction of the word's first sub-token.
    pub tags: Vec<String>,
    pub entities: Vec<EntitySpan>,
}

/// An entity found in a sentence's tags (seqeval's default chunking).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct EntitySpan {
    /// The entity type: `PER` for the tags `B-PER`, `I-PER`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The first word of the entity (0-based).
    pub start: usize,
    /// One past its last word, as in a slice: `words[start..end]`.
    pub end: usize,
    /// Its words joined by spaces.
    pub text: String,
}

pub struct Predictor {
    pub model: BertClassifier,
    pub tokenizer: BerthTokenizer,
    /// Thresholds and the task, from `berth-inference.json` when the folder has one.
    pub settings: InferenceSettings,
    /// Sequence heads: chunk inputs longer than the window (from the settings, or [`Predictor::set_long_text`]).
    long_text: Option<ChunkSettings>,
    /// Where the forward passes run: the CPU with transposed linear weights
    /// built once at load, or a device holding the weights in the chosen precision.
    engine: Engine,
}

enum Engine {
    /// The load-time weight copies, and the precision they were built for.
    Cpu(WeightCache, Precision),
    Device(DeviceModel),
}

impl Predictor {
    /// Loads a model folder (config.json, model.safetensors, tokenizer files).
    pub fn load(dir: &Path, max_length: usize) -> Result<(Predictor, LoadReport)> {
        Predictor::load_on(dir, max_length, None, Precision::Fp32)
    }

    /// As [`Predictor::load`], running on `device` (None: the CPU) with the
    /// weights uploaded once in `precision`.
    pub fn load_on(dir: &Path, max_length: usize, device: Option<&Device>, precision: Precision) -> Result<(Predictor, LoadReport)> {
        if MultiTaskModel::is_multitask(dir) {
            return Err(Error::InvalidArgument(format!(
                "{} holds a multi-task model: choose a head (--head NAME, or Predictor::load_head)",
                dir.display()
            )));
        }
        let (model, report) = load_model(dir, &LoadOptions::for_prediction())?;
        let settings = InferenceSettings::read(dir, model.num_labels())?;
        Ok((Predictor::from_model(model, dir, settings, max_length, device, precision)?, report))
    }

    /// One head of a multi-task folder (`berth train --heads`), as a predictor.
    pub fn load_head(dir: &Path, head: &str, max_length: usize, device: Option<&Device>, precision: Precision) -> Result<Predictor> {
        let multi = MultiTaskModel::load(dir)?;
        let h = multi.head_index(head)?;
        let (model, _) = multi.head_model(h)?;
        let info = &multi.heads[h];
        let settings = InferenceSettings { task: Some(info.task), alignment: info.alignment.clone(), ..InferenceSettings::default() };
        Predictor::from_model(model, dir, settings, max_length, device, precision)
    }

    /// A predictor for a model already in memory; the tokenizer comes from `dir`.
    pub fn from_model(
        model: BertClassifier,
        dir: &Path,
        settings: InferenceSettings,
        max_length: usize,
        device: Option<&Device>,
        precision: Precision,
    ) -> Result<Predictor> {
        let max_length = max_length.min(model.config.max_sequence_length());
        let mut tokenizer = BerthTokenizer::from_dir(dir, max_length)?;
        tokenizer.check_vocab(model.config.vocab_size)?;
        if let Some(direction) = settings.truncation_direction {
            tokenizer.set_truncation_direction(direction)?;
        }
        let engine = match device {
            Some(d) => Engine::Device(DeviceModel::upload(d, precision, &model.params)?),
            None => Engine::Cpu(model.inference_cache(precision)?, precision),
        };
        let long_text = settings.long_text;
        let mut predictor = Predictor { model, tokenizer, settings, long_text: None, engine };
        predictor.set_long_text(long_text)?;
        Ok(predictor)
    }

    /// Chunks inputs longer than the window (`Some`), or truncates them (`None`).
    pub fn set_long_text(&mut self, long_text: Option<ChunkSettings>) -> Result<()> {
        if let Some(chunks) = long_text {
            if self.model.head == HeadKind::TokenClassification {
                return Err(Error::InvalidArgument(crate::data::chunks::CHUNKING_IS_FOR_SEQUENCE_TASKS.into()));
            }
            if chunks.max_chunks == Some(0) {
                return Err(Error::InvalidArgument("--max-chunks 0: a document needs at least one window".into()));
            }
            self.tokenizer.enable_windows(chunks.stride)?;
        }
        self.long_text = long_text;
        Ok(())
    }

    /// The long-text setting in force.
    pub fn long_text(&self) -> Option<ChunkSettings> {
        self.long_text
    }

    /// The device's description, or `cpu`.
    pub fn device_name(&self) -> String {
        match &self.engine {
            Engine::Cpu(_, Precision::Int8) => format!("cpu ({})", crate::backend::cpu::int8::describe()),
            Engine::Cpu(_, Precision::Bf16) => format!("cpu ({})", crate::backend::cpu::bf16_linear::describe()),
            Engine::Cpu(..) => "cpu".into(),
            Engine::Device(d) => format!("{} ({:?})", d.device().describe(), d.precision()),
        }
    }

    /// Whether the forward passes run on the CPU.
    pub fn on_cpu(&self) -> bool {
        matches!(self.engine, Engine::Cpu(..))
    }

    /// The precision the forward passes run in.
    pub fn precision(&self) -> Precision {
        match &self.engine {
            Engine::Cpu(_, precision) => *precision,
            Engine::Device(d) => d.precision(),
        }
    }

    /// Whether forward passes skip padding positions (the CPU path does:
    /// [`ForwardMode::skipping_padding`]).
    pub fn skips_padding(&self) -> bool {
        matches!(self.engine, Engine::Cpu(..))
    }

    /// Predicts every (text, optional pair) in input order, `batch_size` at a time.
    pub fn predict(&self, inputs: &[(String, Option<String>)], batch_size: usize) -> Result<Vec<Prediction>> {
        if batch_size == 0 {
            return Err(Error::InvalidArgument("batch size must be at least 1".into()));
        }
        if let Some(chunks) = self.long_text {
            return self.predict_chunked(inputs, batch_size, chunks);
        }
        let encoded = self.tokenizer.encode_many(inputs)?;
        let refs: Vec<&Encoded> = encoded.iter().collect();
        self.predict_encoded_many(&refs, batch_size)
    }

    /// Every input cut into windows; the windows of all inputs batched
    /// together (longest first) as ordinary sequences; each document's
    /// windows' logits combined by the aggregate, then decided as one row.
    fn predict_chunked(&self, inputs: &[(String, Option<String>)], batch_size: usize, chunks: ChunkSettings) -> Result<Vec<Prediction>> {
        let mut windows: Vec<Encoded> = Vec::new();
        let mut spans = Vec::with_capacity(inputs.len());
        for (text, pair) in inputs {
            let cut = self.tokenizer.encode_windows(text, pair.as_deref(), chunks.max_chunks)?;
            spans.push((windows.len(), cut.windows.len(), cut.dropped));
            windows.extend(cut.windows);
        }
        let c = self.model.num_labels();
        let lengths: Vec<usize> = windows.iter().map(|e| e.ids.len()).collect();
        let mut rows: Vec<Vec<f64>> = vec![Vec::new(); windows.len()];
        for batch in &longest_first_batches(&lengths, batch_size) {
            let group: Vec<&Encoded> = batch.iter().map(|&i| &windows[i]).collect();
            let (logits, _) = self.logits(&group)?;
            for (b, &i) in batch.iter().enumerate() {
                rows[i] = logits[b * c..(b + 1) * c].to_vec();
            }
        }
        let decision = Decision::from_settings(&self.settings);
        Ok(spans
            .into_iter()
            .map(|(start, n, dropped)| {
                let mut p = self.sequence_prediction(chunks.aggregate.combine(&rows[start..start + n]), &decision);
                p.windows = Some(n);
                p.windows_dropped = (dropped > 0).then_some(dropped);
                p
            })
            .collect())
    }

    /// As [`Predictor::predict`], for examples the caller has already
    /// tokenised (the server does, to size its batches by tokens).
    pub fn predict_encoded_many(&self, encoded: &[&Encoded], batch_size: usize) -> Result<Vec<Prediction>> {
        if batch_size == 0 {
            return Err(Error::InvalidArgument("batch size must be at least 1".into()));
        }
        let lengths: Vec<usize> = encoded.iter().map(|e| e.ids.len()).collect();
        let mut results: Vec<Option<Prediction>> = vec![None; encoded.len()];
        for chunk in &longest_first_batches(&lengths, batch_size) {
            let group: Vec<&Encoded> = chunk.iter().map(|&i| encoded[i]).collect();
            let predictions = self.predict_encoded(&group)?;
            for (&i, p) in chunk.iter().zip(predictions) {
                results[i] = Some(p);
            }
        }
        Ok(results.into_iter().map(|p| p.expect("every input predicted")).collect())
    }

    /// The logits of a batch, flat: (B, C) or (B, T, C) with T the longest row.
    fn logits(&self, group: &[&Encoded]) -> Result<(Vec<f64>, usize)> {
        let batch = pad_batch(group, self.tokenizer.pad_id());
        let weights = match &self.engine {
            Engine::Cpu(cache, _) => InferenceWeights::Cpu(cache),
            Engine::Device(d) => InferenceWeights::Device(&d.params),
        };
        Ok((self.model.infer_logits(weights, &batch)?, batch.seq_len))
    }

    /// Token models: word-level tags and entity spans for sentences given as
    /// words. A sentence longer than the model's length is read in overlapping
    /// windows, so no word is dropped.
    pub fn predict_words(&self, sentences: &[Vec<String>], batch_size: usize) -> Result<Vec<WordPrediction>> {
        if self.model.head != HeadKind::TokenClassification {
            return Err(Error::InvalidArgument("--words needs a token-classification model; this one classifies whole texts".into()));
        }
        if batch_size == 0 {
            return Err(Error::InvalidArgument("batch size must be at least 1".into()));
        }
        let mut rows = Vec::new();
        for (s, words) in sentences.iter().enumerate() {
            for window in sentence_windows(words, &self.tokenizer)? {
                let encoded = self.tokenizer.encode_words(&words[window.start..window.end])?;
                rows.push((s, window, encoded));
            }
        }
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(rows[i].2.ids.len()));
        let mut tags: Vec<Vec<String>> = sentences.iter().map(|w| vec!["O".to_string(); w.len()]).collect();
        let c = self.model.num_labels();
        for chunk in order.chunks(batch_size) {
            let group: Vec<&Encoded> = chunk.iter().map(|&i| &rows[i].2).collect();
            let (logits, t) = self.logits(&group)?;
            for (b, &i) in chunk.iter().enumerate() {
                let (s, window, encoded) = &rows[i];
                let predictions: Vec<usize> =
                    (0..encoded.ids.len()).map(|j| argmax(&logits[(b * t + j) * c..(b * t + j + 1) * c])).collect();
                let words = word_predictions(&encoded.word_ids, &predictions, window.end - window.start);
                for w in window.keep_start..window.keep_end {
                    if let Some(p) = words[w - window.start] {
                        tags[*s][w] = self.model.labels[p].clone();
                    }
                }
            }
        }
        Ok(sentences
            .iter()
            .zip(tags)
            .map(|(words, tags)| {
                let entities = extract_entities(&tags, EntityScheme::Default)
                    .into_iter()
                    .map(|e| EntitySpan { text: words[e.start..e.end].join(" "), kind: e.kind, start: e.start, end: e.end })
                    .collect();
                WordPrediction { words: words.clone(), tags, entities }
            })
            .collect())
    }

    fn predict_encoded(&self, group: &[&Encoded]) -> Result<Vec<Prediction>> {
        let (logits, seq_len) = self.logits(group)?;
        let c = self.model.num_labels();
        let labels = &self.model.labels;
        let decision = Decision::from_settings(&self.settings);
        let mut predictions = Vec::with_capacity(group.len());
        for (i, e) in group.iter().enumerate() {
            let p = match (self.model.head, self.model.problem_type) {
                (HeadKind::TokenClassification, _) => {
                    let t = seq_len;
                    let rows: Vec<Vec<f64>> = (0..e.ids.len()).map(|j| logits[(i * t + j) * c..(i * t + j + 1) * c].to_vec()).collect();
                    let tags = rows.iter().map(|r| labels[argmax(r)].clone()).collect();
                    let tokens = e.ids.iter().map(|&id| self.tokenizer.inner().id_to_token(id).unwrap_or_default()).collect();
                    Prediction { logits: serde_json::json!(rows), tokens: Some(tokens), tags: Some(tags), ..Prediction::default() }
                }
                _ => self.sequence_prediction(logits[i * c..(i + 1) * c].to_vec(), &decision),
            };
            predictions.push(p);
        }
        Ok(predictions)
    }

    /// (C) logits -> a sequence head's prediction, decided by the saved
    /// thresholds and temperature (a chunked document's combined row).
    pub fn decide(&self, row: Vec<f64>) -> Prediction {
        self.sequence_prediction(row, &Decision::from_settings(&self.settings))
    }

    /// (C) logits -> a sequence head's prediction under `decision`.
    fn sequence_prediction(&self, row: Vec<f64>, decision: &Decision) -> Prediction {
        let labels = &self.model.labels;
        let mut p = Prediction { logits: serde_json::json!(row), ..Prediction::default() };
        match self.model.problem_type {
            Some(ProblemType::Regression) => p.score = Some(row[0]),
            Some(ProblemType::MultiLabel) => {
                let (probs, positive) = decision.multi(&row);
                p.labels = Some(labels.iter().zip(positive).filter(|(_, on)| *on).map(|(l, _)| l.clone()).collect());
                p.probabilities = Some(probs);
            }
            _ => {
                // Calibrated probabilities; a binary threshold decides the label when one was tuned.
                let (probs, id) = decision.single(&row);
                p.label = Some(labels[id].clone());
                p.probabilities = Some(probs);
            }
        }
        p
    }
}

//! The library API: load a trained model once, then classify texts, text
//! pairs or sentences of words from as many threads as you like.
//!
//! [`Classifier`] wraps a [`Predictor`]: the config, the label names, the
//! tokenizer and the transposed weights (or the weights on a device) are all
//! built at load, so a call tokenises, runs the forward pass and reads the
//! logits, and nothing else.

use std::path::Path;

use crate::data::Encoded;
use crate::data::chunks::DEFAULT_CHUNK_STRIDE;
use crate::data::tokenize::{Truncation, Windows};
use crate::device::DeviceChoice;
use crate::error::{Error, Result};
use crate::infer::explain::{
    DocumentExplanation, EntityExplanation, TextExplanation, check_explainable, explain_document, explain_encoded, explain_entities,
    explain_text, explain_windows,
};
use crate::infer::predictor::{Prediction, Predictor, WordPrediction};
use crate::model::device_model::Precision;
use crate::model::explain::ExplainOptions;
use crate::model::settings::{Aggregate, ChunkSettings, max_length_for};
use crate::model::{HeadKind, ProblemType};

/// What a model predicts, read from its `config.json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// One label per text: softmax over the labels.
    SingleLabel,
    /// Any number of labels per text: a sigmoid per label and a threshold.
    MultiLabel,
    /// One real value per text.
    Regression,
    /// One tag per word (NER); use [`Classifier::predict_words`].
    TokenClassification,
}

/// How to load a [`Classifier`]; [`ClassifierOptions::default`] is what
/// [`Classifier::load`] uses.
#[derive(Clone, Debug)]
pub struct ClassifierOptions {
    /// Where the forward passes run (`Auto`: CUDA when a GPU is there, else the CPU).
    pub device: DeviceChoice,
    /// `Fp32`; `Bf16` on a CUDA device; `Int8` on the CPU (dynamic INT8, inference).
    pub precision: Precision,
    /// Tokens per example after truncation (longest-first for pairs); capped
    /// at the positions the model's table holds. None: the length the model
    /// was trained with (its `berth-inference.json`), else 128.
    pub max_length: Option<usize>,
    /// Examples per forward pass when a call holds many.
    pub batch_size: usize,
}

impl Default for ClassifierOptions {
    fn default() -> Self {
        ClassifierOptions { device: DeviceChoice::Auto, precision: Precision::Fp32, max_length: None, batch_size: 32 }
    }
}

/// One label and its score.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LabelScore {
    /// The label's name, from `id2label` in `config.json`.
    pub label: String,
    /// Its probability (softmax or sigmoid), or the predicted value for regression.
    pub score: f64,
}

/// The prediction for one text or text pair.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TextPrediction {
    /// The labels chosen: the most probable one (single-label), every label at
    /// or above its threshold (multi-label, possibly none), or the model's only
    /// label (regression).
    pub labels: Vec<String>,
    /// Every label with its score, highest first: softmax probabilities
    /// (single-label), sigmoid probabilities (multi-label), or the predicted
    /// value (regression, one entry).
    pub scores: Vec<LabelScore>,
    /// The raw logits, in the model's label order.
    pub logits: Vec<f64>,
}

impl TextPrediction {
    /// The highest-scoring label and its score.
    pub fn top(&self) -> &LabelScore {
        // Built with one score per label, and a model has at least one label.
        &self.scores[0]
    }
}

/// A trained classifier, loaded once and shared by every caller.
///
/// It is `Send + Sync`: wrap it in an `Arc` and call it from many threads.
/// Each call runs its own forward passes without a lock.
///
/// ```no_run
/// use berth::{Classifier, DeviceChoice};
///
/// let classifier = Classifier::load("runs/sst2", DeviceChoice::Cpu)?;
/// let predictions = classifier.predict(&["a charming and often affecting journey", "bleak and desperate"])?;
/// for p in &predictions {
///     println!("{} {:.3}", p.top().label, p.top().score);
/// }
/// # Ok::<(), berth::Error>(())
/// ```
pub struct Classifier {
    predictor: Predictor,
    batch_size: usize,
    kind: ModelKind,
}

// The promise of the type: one instance serves many threads.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Classifier>();
};

impl Classifier {
    /// Loads a model folder written by `berth train` (or any Hugging Face
    /// `BertForSequenceClassification` / `BertForTokenClassification` folder)
    /// with the default options on `device`.
    ///
    /// ```no_run
    /// let classifier = berth::Classifier::load("runs/sst2", berth::DeviceChoice::Auto)?;
    /// println!("labels: {:?}", classifier.labels());
    /// # Ok::<(), berth::Error>(())
    /// ```
    pub fn load(dir: impl AsRef<Path>, device: DeviceChoice) -> Result<Classifier> {
        Classifier::load_with(dir, &ClassifierOptions { device, ..ClassifierOptions::default() })
    }

    /// Loads a model folder with explicit options.
    ///
    /// ```no_run
    /// use berth::{Classifier, ClassifierOptions, DeviceChoice};
    ///
    /// let options = ClassifierOptions { device: DeviceChoice::Cpu, max_length: Some(64), ..ClassifierOptions::default() };
    /// let classifier = Classifier::load_with("runs/sst2", &options)?;
    /// assert_eq!(classifier.max_length(), 64);
    /// # Ok::<(), berth::Error>(())
    /// ```
    pub fn load_with(dir: impl AsRef<Path>, options: &ClassifierOptions) -> Result<Classifier> {
        if options.batch_size == 0 {
            return Err(Error::InvalidArgument("batch size must be at least 1".into()));
        }
        let (device, _) = crate::backend::open_device(options.device, options.precision)?;
        let (max_length, _) = max_length_for(dir.as_ref(), options.max_length);
        let (predictor, _report) = Predictor::load_on(dir.as_ref(), max_length, device.as_ref(), options.precision)?;
        let kind = match (predictor.model.head, predictor.model.problem_type) {
            (HeadKind::TokenClassification, _) => ModelKind::TokenClassification,
            (_, Some(ProblemType::MultiLabel)) => ModelKind::MultiLabel,
            (_, Some(ProblemType::Regression)) => ModelKind::Regression,
            _ => ModelKind::SingleLabel,
        };
        Ok(Classifier { predictor, batch_size: options.batch_size, kind })
    }

    /// What the model predicts.
    pub fn kind(&self) -> ModelKind {
        self.kind
    }

    /// The label names, in the order of the logits.
    pub fn labels(&self) -> &[String] {
        &self.predictor.model.labels
    }

    /// Tokens per example after truncation.
    pub fn max_length(&self) -> usize {
        self.predictor.tokenizer.max_length()
    }

    /// Where the forward passes run: `cpu`, or the device and its precision.
    pub fn device_name(&self) -> String {
        self.predictor.device_name()
    }

    /// Whether a forward pass leaves padding out of its token-wise work
    /// (on the CPU it does, so batching texts of mixed lengths costs little
    /// more than their real tokens; a CUDA device computes the padded batch).
    pub fn skips_padding(&self) -> bool {
        self.predictor.skips_padding()
    }

    /// Classifies texts; the results are in input order.
    ///
    /// ```no_run
    /// # let classifier = berth::Classifier::load("runs/sst2", berth::DeviceChoice::Cpu)?;
    /// let p = classifier.predict(&["what a lovely film"])?;
    /// println!("{:?} {:?} {:?}", p[0].labels, p[0].scores, p[0].logits);
    /// # Ok::<(), berth::Error>(())
    /// ```
    pub fn predict(&self, texts: &[&str]) -> Result<Vec<TextPrediction>> {
        if self.predictor.long_text().is_some() {
            let inputs: Vec<(String, Option<String>)> = texts.iter().map(|t| (t.to_string(), None)).collect();
            return self.predict_chunked(&inputs);
        }
        let encoded = texts.iter().map(|t| self.encode(t, None)).collect::<Result<Vec<_>>>()?;
        self.predict_encoded(&encoded.iter().collect::<Vec<_>>())
    }

    /// Classifies text pairs (premise and hypothesis, two questions, ...);
    /// each pair is truncated longest-first to the maximum length.
    ///
    /// ```no_run
    /// # let classifier = berth::Classifier::load("runs/rte", berth::DeviceChoice::Cpu)?;
    /// let p = classifier.predict_pairs(&[("A man is sleeping.", "Nobody is awake.")])?;
    /// println!("{}", p[0].top().label);
    /// # Ok::<(), berth::Error>(())
    /// ```
    pub fn predict_pairs(&self, pairs: &[(&str, &str)]) -> Result<Vec<TextPrediction>> {
        if self.predictor.long_text().is_some() {
            let inputs: Vec<(String, Option<String>)> = pairs.iter().map(|(a, b)| (a.to_string(), Some(b.to_string()))).collect();
            return self.predict_chunked(&inputs);
        }
        let encoded = pairs.iter().map(|(a, b)| self.encode(a, Some(b))).collect::<Result<Vec<_>>>()?;
        self.predict_encoded(&encoded.iter().collect::<Vec<_>>())
    }

    /// Token models (NER): one tag per word and the entity spans, for
    /// sentences given as words. A sentence longer than the maximum length
    /// is read in overlapping windows, so no word is dropped.
    ///
    /// ```no_run
    /// # let classifier = berth::Classifier::load("runs/conll", berth::DeviceChoice::Cpu)?;
    /// let words: Vec<String> = "EU rejects German call".split(' ').map(String::from).collect();
    /// let p = classifier.predict_words(&[words])?;
    /// for e in &p[0].entities {
    ///     println!("{} {}..{} {}", e.kind, e.start, e.end, e.text);
    /// }
    /// # Ok::<(), berth::Error>(())
    /// ```
    pub fn predict_words(&self, sentences: &[Vec<String>]) -> Result<Vec<WordPrediction>> {
        if let Some(empty) = sentences.iter().position(|s| s.is_empty()) {
            return Err(Error::InvalidArgument(format!("sentence {empty} has no words")));
        }
        self.predictor.predict_words(sentences, self.batch_size)
    }

    /// Token attributions for each text: integrated gradients (or gradient
    /// × input) of the label's logit with respect to the word embeddings,
    /// per word piece and per word, with the completeness check. They are
    /// computed on the CPU whatever the classifier's device, one forward and
    /// backward per `options.step_batch` interpolated copies; `options.target`
    /// (see [`Classifier::label_index`]) or else the predicted label is explained.
    ///
    /// ```no_run
    /// use berth::model::explain::ExplainOptions;
    /// # let classifier = berth::Classifier::load("runs/sst2", berth::DeviceChoice::Cpu)?;
    /// let e = classifier.explain(&["a charming and often affecting journey"], &ExplainOptions::default())?;
    /// for w in &e[0].words {
    ///     println!("{:>12} {:+.3}", w.word, w.attribution);
    /// }
    /// println!("completeness gap {:.2e}", e[0].numbers.completeness_gap.unwrap_or(0.0));
    /// # Ok::<(), berth::Error>(())
    /// ```
    pub fn explain(&self, texts: &[&str], options: &ExplainOptions) -> Result<Vec<TextExplanation>> {
        self.explain_inputs(texts.iter().map(|t| (*t, None)), options)
    }

    /// As [`Classifier::explain`], for text pairs (truncated longest-first as for prediction).
    pub fn explain_pairs(&self, pairs: &[(&str, &str)], options: &ExplainOptions) -> Result<Vec<TextExplanation>> {
        self.explain_inputs(pairs.iter().map(|(a, b)| (*a, Some(*b))), options)
    }

    fn explain_inputs<'a>(
        &self,
        inputs: impl Iterator<Item = (&'a str, Option<&'a str>)>,
        options: &ExplainOptions,
    ) -> Result<Vec<TextExplanation>> {
        check_explainable(&self.predictor, "Classifier::explain")?;
        inputs.map(|(text, pair)| explain_text(&self.predictor.model, &self.predictor.tokenizer, text, pair, options)).collect()
    }

    /// Token models: each sentence's predicted entities, each explained (F is
    /// the sum of the entity's words' predicted-tag logits, at each word's
    /// first piece). -> (the predictions, one explanation per entity of each).
    ///
    /// ```no_run
    /// use berth::model::explain::ExplainOptions;
    /// # let classifier = berth::Classifier::load("runs/conll", berth::DeviceChoice::Cpu)?;
    /// let words: Vec<String> = "EU rejects German call".split(' ').map(String::from).collect();
    /// let (_, explained) = classifier.explain_entities(&[words], &ExplainOptions::default())?;
    /// for e in &explained[0] {
    ///     let top = e.explanation.words.iter().max_by(|a, b| a.attribution.abs().total_cmp(&b.attribution.abs())).unwrap();
    ///     println!("{} \"{}\": most from \"{}\" ({:+.3})", e.kind, e.text, top.word, top.attribution);
    /// }
    /// # Ok::<(), berth::Error>(())
    /// ```
    pub fn explain_entities(
        &self,
        sentences: &[Vec<String>],
        options: &ExplainOptions,
    ) -> Result<(Vec<WordPrediction>, Vec<Vec<EntityExplanation>>)> {
        let predictions = self.predict_words(sentences)?;
        let explained = sentences
            .iter()
            .zip(&predictions)
            .map(|(words, p)| explain_entities(&self.predictor, "Classifier::explain_entities", words, p, options))
            .collect::<Result<Vec<_>>>()?;
        Ok((predictions, explained))
    }

    /// A long text (and pair) read in windows, as the model's saved
    /// long-text setting reads it (or [`ClassifierOptions`]'s), explained as
    /// its document logit is made: see [`DocumentExplanation`].
    pub fn explain_document(&self, text: &str, pair: Option<&str>, options: &ExplainOptions) -> Result<DocumentExplanation> {
        explain_document(&self.predictor, "Classifier::explain_document", text, pair, options)
    }

    /// As [`Classifier::explain_document`], for a document already cut into
    /// windows by [`Classifier::encode_windows`] whose logits `aggregate`
    /// combines (as `berth serve` reads a request with `"long_text": "chunk"`).
    pub fn explain_windows(&self, windows: &[Encoded], aggregate: Aggregate, options: &ExplainOptions) -> Result<DocumentExplanation> {
        explain_windows(&self.predictor, "Classifier::explain_windows", windows, aggregate, options)
    }

    /// As [`Classifier::explain_entities`], for one sentence whose prediction
    /// the caller already has (from [`Classifier::predict_words`]).
    pub fn explain_predicted_entities(
        &self,
        words: &[String],
        prediction: &WordPrediction,
        options: &ExplainOptions,
    ) -> Result<Vec<EntityExplanation>> {
        explain_entities(&self.predictor, "Classifier::explain_predicted_entities", words, prediction, options)
    }

    /// As [`Classifier::explain`], for an input tokenised by
    /// [`Classifier::encode_with`] (the model's saved long-text setting is
    /// the caller's to honour: an explanation reads this one encoding).
    pub fn explain_encoded(&self, encoded: &Encoded, options: &ExplainOptions) -> Result<TextExplanation> {
        self.check_sequence_model()?;
        explain_encoded(&self.predictor.model, &self.predictor.tokenizer, encoded, options)
    }

    /// The index of the label called `name`, in the order of the logits.
    pub fn label_index(&self, name: &str) -> Result<usize> {
        self.labels()
            .iter()
            .position(|l| l == name)
            .ok_or_else(|| Error::InvalidArgument(format!("no label `{name}`: the model's labels are {}", self.labels().join(", "))))
    }

    /// Tokenises a text or a text pair, truncated to the maximum length. With
    /// [`Classifier::predict_encoded`] it lets a caller size batches by their
    /// tokens before predicting, as `berth serve` does.
    pub fn encode(&self, text: &str, pair: Option<&str>) -> Result<Encoded> {
        self.predictor.tokenizer.encode(text, pair)
    }

    /// As [`Classifier::encode`], cutting an over-long input at the end
    /// `truncation` names, or not at all ([`Truncation::None`]: the caller
    /// checks the length against [`Classifier::max_length`] before predicting).
    pub fn encode_with(&self, text: &str, pair: Option<&str>, truncation: Truncation) -> Result<Encoded> {
        self.predictor.tokenizer.encode_with(text, pair, truncation)
    }

    /// Classifies examples tokenised by [`Classifier::encode`], in input order.
    pub fn predict_encoded(&self, encoded: &[&Encoded]) -> Result<Vec<TextPrediction>> {
        self.check_sequence_model()?;
        let predictions = self.predictor.predict_encoded_many(encoded, self.batch_size)?;
        Ok(predictions.into_iter().map(|p| self.text_prediction(p)).collect())
    }

    /// A model trained with `--long-text chunk`: every input read in windows, as training did.
    fn predict_chunked(&self, inputs: &[(String, Option<String>)]) -> Result<Vec<TextPrediction>> {
        self.check_sequence_model()?;
        Ok(self.predictor.predict(inputs, self.batch_size)?.into_iter().map(|p| self.text_prediction(p)).collect())
    }

    fn check_sequence_model(&self) -> Result<()> {
        if self.kind == ModelKind::TokenClassification {
            return Err(Error::InvalidArgument("this is a token-classification model: it tags words; call predict_words instead".into()));
        }
        Ok(())
    }

    /// Which end an over-long input loses: the model's saved `--truncation-direction`, else `Right`.
    pub fn truncation_direction(&self) -> Truncation {
        self.predictor.tokenizer.truncation_direction()
    }

    /// The long-text setting the model was saved with (`--long-text chunk`), if any.
    pub fn long_text(&self) -> Option<ChunkSettings> {
        self.predictor.long_text()
    }

    /// The windows an input is read in when it is chunked: the saved setting,
    /// or else a stride of 32 (narrowed to a quarter of a small window), no
    /// window limit and the mean, as `berth predict --long-text chunk` does.
    pub fn chunk_settings(&self) -> ChunkSettings {
        self.long_text().unwrap_or(ChunkSettings {
            stride: DEFAULT_CHUNK_STRIDE.min(self.predictor.tokenizer.window_room() / 4),
            max_chunks: None,
            aggregate: Aggregate::Mean,
        })
    }

    /// One input's windows under `chunks` (a text that fits is one window).
    pub fn encode_windows(&self, text: &str, pair: Option<&str>, chunks: ChunkSettings) -> Result<Windows> {
        self.predictor.tokenizer.encode_windows_with(text, pair, chunks.stride, chunks.max_chunks)
    }

    /// The prediction for a document whose windows' logits were combined
    /// by the caller: thresholds, temperature and labels as for one text.
    pub fn decide(&self, logits: Vec<f64>) -> TextPrediction {
        self.text_prediction(self.predictor.decide(logits))
    }

    /// Reads a sequence head's [`Prediction`] into the typed form.
    fn text_prediction(&self, p: Prediction) -> TextPrediction {
        // Non-finite logits serialise as null; read them back as NaN.
        let logits: Vec<f64> =
            p.logits.as_array().map(|row| row.iter().map(|v| v.as_f64().unwrap_or(f64::NAN)).collect()).unwrap_or_default();
        let names = self.labels();
        let (labels, mut scores) = match (p.score, p.probabilities) {
            (Some(value), _) => (names.to_vec(), vec![LabelScore { label: names[0].clone(), score: value }]),
            (None, probabilities) => {
                let probabilities = probabilities.unwrap_or_default();
                let scores = names.iter().zip(probabilities).map(|(l, s)| LabelScore { label: l.clone(), score: s }).collect();
                let labels = p.labels.or_else(|| p.label.map(|l| vec![l])).unwrap_or_default();
                (labels, scores)
            }
        };
        scores.sort_by(|a, b| b.score.total_cmp(&a.score));
        TextPrediction { labels, scores, logits }
    }
}

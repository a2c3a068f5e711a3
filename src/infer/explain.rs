//! Explanations of one input as a user reads them: each word piece and
//! each word with its attribution, the label explained, and the
//! completeness check (`berth predict --explain`). The arithmetic is
//! `model::explain`'s.

use serde::Serialize;

use crate::data::align::{Window, sentence_windows};
use crate::data::chunks::Aggregate;
use crate::data::tokenize::{BerthTokenizer, Encoded, Truncation};
use crate::error::{Error, Result};
use crate::infer::predictor::{Predictor, WordPrediction};
use crate::model::explain::{ExplainOptions, Explanation, explain, explain_pieces, input_logits, word_spans};
use crate::model::{BertClassifier, HeadKind};
use crate::numerics::argmax;

#[derive(Clone, Debug, Serialize)]
pub struct PieceAttribution {
    pub token: String,
    pub attribution: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct WordAttribution {
    /// The word's pieces joined, without their continuation markers.
    pub word: String,
    /// Token models: the word's index in the sentence as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    pub attribution: f64,
}

/// A word of a predicted entity whose tag's logit is part of F.
#[derive(Clone, Debug, Serialize)]
pub struct ExplainedWord {
    /// Its index in the sentence.
    pub word: usize,
    /// The tag predicted for it.
    pub tag: String,
}

/// One predicted entity's explanation: F is the sum, over the entity's
/// words, of the logit of each word's predicted tag at the word's first
/// piece (the piece whose prediction tags the word).
#[derive(Clone, Debug, Serialize)]
pub struct EntityExplanation {
    /// The entity's index in the prediction's `entities`.
    pub entity: usize,
    #[serde(rename = "type")]
    pub kind: String,
    pub text: String,
    pub explained: Vec<ExplainedWord>,
    /// The first word of the window that was read: 0, unless the sentence is
    /// longer than the model's length (then the overlapping window that
    /// holds the whole entity).
    pub window_start: usize,
    /// The window's pieces and words (each word with its index in the
    /// sentence); `target` is the first word's tag.
    #[serde(flatten)]
    pub explanation: TextExplanation,
}

/// One input's explanation, as predict writes it.
#[derive(Clone, Debug, Serialize)]
pub struct TextExplanation {
    /// The label explained.
    pub target: String,
    pub tokens: Vec<PieceAttribution>,
    pub words: Vec<WordAttribution>,
    #[serde(flatten)]
    pub numbers: Explanation,
    pub rule: Option<&'static str>,
    pub baseline: Option<&'static str>,
    pub seconds: f64,
}

/// A word piece without the tokenizer's continuation or space markers.
fn bare_piece(piece: &str) -> &str {
    piece.strip_prefix("##").or_else(|| piece.strip_prefix('Ġ')).or_else(|| piece.strip_prefix('▁')).unwrap_or(piece)
}

/// The label index `--target NAME` names, or None for the predicted one.
pub fn target_index(model: &BertClassifier, target: Option<&str>) -> Result<Option<usize>> {
    let Some(name) = target else { return Ok(None) };
    model
        .labels
        .iter()
        .position(|l| l == name)
        .map(Some)
        .ok_or_else(|| Error::InvalidArgument(format!("--target {name}: the model's labels are {}", model.labels.join(", "))))
}

/// Refuses a model one explanation per input cannot cover: a token model
/// (one output per word: [`explain_entities`] covers those), or one saved to
/// read long inputs in windows (an explanation reads one window). `what`
/// names the caller's switch in the message (`--explain`, `"explain"`,
/// `Classifier::explain`).
pub fn check_explainable(predictor: &Predictor, what: &str) -> Result<()> {
    check_sequence_gradients(predictor, what)?;
    if predictor.long_text().is_some() {
        return Err(Error::InvalidArgument(format!(
            "{what} reads one window per input, and this model chunks long inputs (berth-inference.json); \
             truncate instead (--long-text truncate, or \"long_text\": \"truncate\" on serve)"
        )));
    }
    Ok(())
}

/// Refuses a token model (explained per entity) and INT8 layers (no gradients).
fn check_sequence_gradients(predictor: &Predictor, what: &str) -> Result<()> {
    if predictor.model.head != HeadKind::SequenceClassification {
        return Err(Error::InvalidArgument(format!(
            "{what} explains sequence-level outputs; this is a token-classification model, whose explanations are per \
             predicted entity (predict --words --explain, Classifier::explain_entities)"
        )));
    }
    check_gradients(predictor, what)
}

/// Refuses a predictor whose layers have no gradients (INT8), and BF16 on
/// the CPU, whose rounded products would spoil integrated gradients'
/// completeness check.
fn check_gradients(predictor: &Predictor, what: &str) -> Result<()> {
    match predictor.precision() {
        crate::tensor::Precision::Int8 => Err(Error::InvalidArgument(format!(
            "{what} needs gradients, and --precision int8 has none (its layers are inference only): explain in fp32"
        ))),
        crate::tensor::Precision::Bf16 if predictor.on_cpu() => Err(Error::InvalidArgument(EXPLAIN_IN_FP32_ON_THE_CPU.into())),
        _ => Ok(()),
    }
}

/// Why the CPU explains in fp32 only.
pub const EXPLAIN_IN_FP32_ON_THE_CPU: &str =
    "explanations on the CPU run in fp32 (integrated gradients' completeness check needs exact products): drop --precision bf16";

/// text (and pair) -> its attributions, per piece and per word.
pub fn explain_text(
    model: &BertClassifier,
    tokenizer: &BerthTokenizer,
    text: &str,
    pair: Option<&str>,
    options: &ExplainOptions,
) -> Result<TextExplanation> {
    let encoded = tokenizer.encode_with(text, pair, tokenizer.truncation_direction())?;
    debug_assert!(tokenizer.truncation_direction() != Truncation::None);
    explain_encoded(model, tokenizer, &encoded, options)
}

/// An input already tokenised (T word pieces) -> its attributions, per piece and per word.
pub fn explain_encoded(
    model: &BertClassifier,
    tokenizer: &BerthTokenizer,
    encoded: &Encoded,
    options: &ExplainOptions,
) -> Result<TextExplanation> {
    let started = std::time::Instant::now();
    let special: Vec<bool> = encoded.word_ids.iter().map(Option::is_none).collect();
    let numbers = explain(model, encoded, &special, tokenizer.pad_id(), options)?;
    let pieces = piece_names(tokenizer, encoded);
    let word =
        |a: usize, b: usize| WordAttribution { word: pieces[a..b].iter().map(|p| bare_piece(p)).collect(), index: None, attribution: 0.0 };
    Ok(describe(model, &pieces, encoded, numbers, options, started, word))
}

/// An explanation's numbers -> pieces and words as a user reads them;
/// `word(first piece, last piece + 1)` names each word (its attribution is
/// filled in here).
fn describe(
    model: &BertClassifier,
    pieces: &[String],
    encoded: &Encoded,
    numbers: Explanation,
    options: &ExplainOptions,
    started: std::time::Instant,
    word: impl Fn(usize, usize) -> WordAttribution,
) -> TextExplanation {
    let tokens = pieces.iter().zip(&numbers.attributions).map(|(t, &a)| PieceAttribution { token: t.clone(), attribution: a }).collect();
    let words = word_spans(encoded, &numbers.attributions)
        .into_iter()
        .map(|(a, b, attribution)| WordAttribution { attribution, ..word(a, b) })
        .collect();
    let is_ig = numbers.completeness_gap.is_some();
    TextExplanation {
        target: model.labels[numbers.target].clone(),
        tokens,
        words,
        numbers,
        rule: is_ig.then(|| options.rule.name()),
        baseline: is_ig.then(|| options.baseline.name()),
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// A token model's prediction for one sentence -> an explanation of each
/// predicted entity (`prediction` as [`Predictor::predict_words`] gives it).
pub fn explain_entities(
    predictor: &Predictor,
    what: &str,
    words: &[String],
    prediction: &WordPrediction,
    options: &ExplainOptions,
) -> Result<Vec<EntityExplanation>> {
    let (model, tokenizer) = (&predictor.model, &predictor.tokenizer);
    if model.head != HeadKind::TokenClassification {
        return Err(Error::InvalidArgument("entity explanations need a token-classification model".into()));
    }
    check_gradients(predictor, what)?;
    if options.target.is_some() {
        return Err(Error::InvalidArgument(format!(
            "{what}: a target label is for sequence models; a token model's explanations cover each predicted entity with its own tags"
        )));
    }
    let windows = sentence_windows(words, tokenizer)?;
    let mut out = Vec::with_capacity(prediction.entities.len());
    for (index, entity) in prediction.entities.iter().enumerate() {
        let started = std::time::Instant::now();
        // The window that owns the entity's first word, if it holds the whole
        // entity; else any window that does (windows overlap).
        let holds = |w: &&Window| w.start <= entity.start && entity.end <= w.end;
        let window = windows
            .iter()
            .find(|w| holds(w) && (w.keep_start..w.keep_end).contains(&entity.start))
            .or_else(|| windows.iter().find(holds))
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "entity \"{}\" (words {}..{}) spans more than one window of the model's length; it cannot be explained in one pass",
                    entity.text, entity.start, entity.end
                ))
            })?;
        let encoded = tokenizer.encode_words(&words[window.start..window.end])?;
        let mut outputs = Vec::new();
        let mut explained = Vec::new();
        for w in entity.start..entity.end {
            let relative = (w - window.start) as u32;
            let piece = encoded.word_ids.iter().position(|&id| id == Some(relative));
            let tag = &prediction.tags[w];
            let class = model.labels.iter().position(|l| l == tag);
            if let (Some(piece), Some(class)) = (piece, class) {
                outputs.push((piece, class));
                explained.push(ExplainedWord { word: w, tag: tag.clone() });
            }
        }
        let special: Vec<bool> = encoded.word_ids.iter().map(Option::is_none).collect();
        let numbers = explain_pieces(model, &encoded, &special, tokenizer.pad_id(), options, &outputs)?;
        let pieces = piece_names(tokenizer, &encoded);
        // Words by their index in the sentence, spelt as given.
        let word = |a: usize, _: usize| {
            let w = window.start + encoded.word_ids[a].expect("a word span starts at a word's piece") as usize;
            WordAttribution { word: words[w].clone(), index: Some(w), attribution: 0.0 }
        };
        out.push(EntityExplanation {
            entity: index,
            kind: entity.kind.clone(),
            text: entity.text.clone(),
            explained,
            window_start: window.start,
            explanation: describe(model, &pieces, &encoded, numbers, options, started, word),
        });
    }
    Ok(out)
}

/// The encoding's word pieces as text.
fn piece_names(tokenizer: &BerthTokenizer, encoded: &Encoded) -> Vec<String> {
    encoded.ids.iter().map(|&id| tokenizer.inner().id_to_token(id).unwrap_or_else(|| format!("<{id}>"))).collect()
}

/// A long input read in windows, explained as its document-level logit is
/// made: under `mean` every window's explanation weighted 1/W (the mean of
/// the windows' integrated gradients is the mean's, and completeness holds
/// for it); under `max` the window whose logit is the document's at the
/// input; under `first` the first window. Words are keyed by (text of a
/// pair, word index in that text), so a word read by several windows adds
/// their weighted attributions.
#[derive(Clone, Debug, Serialize)]
pub struct DocumentExplanation {
    /// The label explained, and its index.
    pub target: String,
    pub target_index: usize,
    pub aggregate: &'static str,
    /// Windows read, those whose explanations make the document's, and each
    /// one's weight in the document's logit.
    pub windows: usize,
    pub explained_windows: Vec<usize>,
    pub weights: Vec<f64>,
    /// The document's words with their weighted attributions, in order.
    pub words: Vec<WordAttribution>,
    /// The document's logit of the target (the aggregate), Σ attributions,
    /// and for `ig` the baseline's logit (the same weights over the explained
    /// windows' baselines), Δ and the completeness gap.
    pub logit: f64,
    pub sum: f64,
    pub baseline_logit: Option<f64>,
    pub delta: Option<f64>,
    pub completeness_gap: Option<f64>,
    /// Each explained window's own explanation.
    pub per_window: Vec<TextExplanation>,
    pub seconds: f64,
}

/// A text (and pair) of a model that reads long inputs in windows -> its
/// document-level explanation (see [`DocumentExplanation`]).
pub fn explain_document(
    predictor: &Predictor,
    what: &str,
    text: &str,
    pair: Option<&str>,
    options: &ExplainOptions,
) -> Result<DocumentExplanation> {
    let started = std::time::Instant::now();
    check_sequence_gradients(predictor, what)?;
    let chunks = predictor
        .long_text()
        .ok_or_else(|| Error::InvalidArgument(format!("{what}: a document explanation needs a model that reads long inputs in windows")))?;
    let windows = predictor.tokenizer.encode_windows(text, pair, chunks.max_chunks)?.windows;
    let mut explanation = explain_windows(predictor, what, &windows, chunks.aggregate, options)?;
    explanation.seconds = started.elapsed().as_secs_f64();
    Ok(explanation)
}

/// How many window explanations a document of `windows` windows costs
/// under `aggregate`: every window for the mean, one otherwise.
pub fn windows_explained(aggregate: Aggregate, windows: usize) -> usize {
    match aggregate {
        Aggregate::Mean => windows,
        Aggregate::Max | Aggregate::First => windows.min(1),
    }
}

/// A document already cut into its windows (each a whole encoding, as
/// [`BerthTokenizer::encode_windows`] makes them) whose logits `aggregate`
/// combines -> its document-level explanation (see [`DocumentExplanation`]).
pub fn explain_windows(
    predictor: &Predictor,
    what: &str,
    windows: &[Encoded],
    aggregate: Aggregate,
    options: &ExplainOptions,
) -> Result<DocumentExplanation> {
    let started = std::time::Instant::now();
    check_sequence_gradients(predictor, what)?;
    let (model, tokenizer) = (&predictor.model, &predictor.tokenizer);
    if windows.is_empty() {
        return Err(Error::InvalidArgument(format!("{what}: the input gave no window")));
    }
    let rows = windows.iter().map(|w| input_logits(model, w)).collect::<Result<Vec<_>>>()?;
    let document = aggregate.combine(&rows);
    let classes = model.num_labels();
    let target = match options.target {
        Some(t) if t >= classes => {
            return Err(Error::InvalidArgument(format!("target label index {t}: the model has {classes} outputs")));
        }
        Some(t) => t,
        None => argmax(&document),
    };
    let n = windows.len();
    let (explained, weights): (Vec<usize>, Vec<f64>) = match aggregate {
        Aggregate::Mean => ((0..n).collect(), vec![1.0 / n as f64; n]),
        Aggregate::First => (vec![0], vec![1.0]),
        Aggregate::Max => {
            let best = (0..n).max_by(|&a, &b| rows[a][target].total_cmp(&rows[b][target])).unwrap_or(0);
            (vec![best], vec![1.0])
        }
    };
    let window_options = ExplainOptions { target: Some(target), ..*options };
    let per_window =
        explained.iter().map(|&w| explain_encoded(model, tokenizer, &windows[w], &window_options)).collect::<Result<Vec<_>>>()?;
    let mut words: std::collections::BTreeMap<(u32, u32), (String, f64)> = std::collections::BTreeMap::new();
    for ((e, &w), &weight) in per_window.iter().zip(&explained).zip(&weights) {
        let encoded = &windows[w];
        let pieces = piece_names(tokenizer, encoded);
        for (a, b, attribution) in word_spans(encoded, &e.numbers.attributions) {
            let key = (encoded.type_ids[a], encoded.word_ids[a].expect("a word span starts at a word's piece"));
            let text: String = pieces[a..b].iter().map(|p| bare_piece(p)).collect();
            let entry = words.entry(key).or_insert_with(|| (text.clone(), 0.0));
            // A word cut by a window's edge: keep its longest spelling.
            if text.len() > entry.0.len() {
                entry.0 = text;
            }
            entry.1 += weight * attribution;
        }
    }
    let weighted = |f: &dyn Fn(&TextExplanation) -> Option<f64>| -> Option<f64> {
        per_window.iter().zip(&weights).map(|(e, w)| f(e).map(|v| w * v)).sum()
    };
    let logit = weighted(&|e| Some(e.numbers.logit)).unwrap_or(f64::NAN);
    let sum = weighted(&|e| Some(e.numbers.sum)).unwrap_or(f64::NAN);
    let baseline_logit = weighted(&|e| e.numbers.baseline_logit);
    let delta = baseline_logit.map(|b| logit - b);
    Ok(DocumentExplanation {
        target: model.labels[target].clone(),
        target_index: target,
        aggregate: aggregate.name(),
        windows: n,
        explained_windows: explained,
        weights,
        words: words.into_values().map(|(word, attribution)| WordAttribution { word, index: None, attribution }).collect(),
        logit,
        sum,
        baseline_logit,
        delta,
        completeness_gap: delta.map(|d| (sum - d).abs() / d.abs().max(1e-3)),
        per_window,
        seconds: started.elapsed().as_secs_f64(),
    })
}

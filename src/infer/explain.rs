//! Explanations of one input as a user reads them: each word piece and
//! each word with its attribution, the label explained, and the
//! completeness check (`berth predict --explain`). The arithmetic is
//! `model::explain`'s.

use serde::Serialize;

use crate::data::tokenize::{BerthTokenizer, Encoded, Truncation};
use crate::error::{Error, Result};
use crate::infer::predictor::Predictor;
use crate::model::explain::{ExplainOptions, Explanation, explain, word_spans};
use crate::model::{BertClassifier, HeadKind};

#[derive(Clone, Debug, Serialize)]
pub struct PieceAttribution {
    pub token: String,
    pub attribution: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct WordAttribution {
    /// The word's pieces joined, without their continuation markers.
    pub word: String,
    pub attribution: f64,
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
/// (one output per word), or one saved to read long inputs in windows (an
/// explanation reads one window). `what` names the caller's switch in the
/// message (`--explain`, `"explain"`, `Classifier::explain`).
pub fn check_explainable(predictor: &Predictor, what: &str) -> Result<()> {
    if predictor.model.head != HeadKind::SequenceClassification {
        return Err(Error::InvalidArgument(format!("{what} explains sequence-level outputs; this is a token-classification model")));
    }
    if predictor.precision() == crate::tensor::Precision::Int8 {
        return Err(Error::InvalidArgument(format!(
            "{what} needs gradients, and --precision int8 has none (its layers are inference only): explain in fp32"
        )));
    }
    if predictor.long_text().is_some() {
        return Err(Error::InvalidArgument(format!(
            "{what} reads one window per input, and this model chunks long inputs (berth-inference.json); \
             truncate instead (--long-text truncate, or \"long_text\": \"truncate\" on serve)"
        )));
    }
    Ok(())
}

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
    let pieces: Vec<String> =
        encoded.ids.iter().map(|&id| tokenizer.inner().id_to_token(id).unwrap_or_else(|| format!("<{id}>"))).collect();
    let tokens = pieces.iter().zip(&numbers.attributions).map(|(t, &a)| PieceAttribution { token: t.clone(), attribution: a }).collect();
    let words = word_spans(encoded, &numbers.attributions)
        .into_iter()
        .map(|(a, b, attribution)| WordAttribution { word: pieces[a..b].iter().map(|p| bare_piece(p)).collect(), attribution })
        .collect();
    let is_ig = numbers.completeness_gap.is_some();
    Ok(TextExplanation {
        target: model.labels[numbers.target].clone(),
        tokens,
        words,
        numbers,
        rule: is_ig.then(|| options.rule.name()),
        baseline: is_ig.then(|| options.baseline.name()),
        seconds: started.elapsed().as_secs_f64(),
    })
}

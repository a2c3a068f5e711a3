//! The JSON of `POST /predict` (and `POST /`), following
//! text-embeddings-inference's (TEI's) classification API and accepting the
//! request of `huggingface_hub`'s `InferenceClient.text_classification`:
//! what a request may hold, how it is checked, and the shape of the answer.
//!
//! ```text
//! {"inputs": "a text"}                              → [{"label", "score"}, ...]
//! {"inputs": ["a text", "another"]}                 → [[{"label", "score"}, ...], ...]
//! {"inputs": [["a premise", "a hypothesis"]]}       → [[{"label", "score"}, ...]]
//! {"inputs": "...", "raw_scores": true}             → the logits instead of probabilities
//! {"inputs": "...", "truncate": false}              → 413 if the text is over the maximum length
//! {"inputs": "...", "truncation_direction": "Left"} → an over-long text loses its first tokens
//! {"inputs": "...", "long_text": "chunk"}           → berth's: an over-long text read in windows
//! {"inputs": "...", "parameters": {"top_k": 2, "function_to_apply": "sigmoid"}}
//!                                                   → [[{"label", "score"}, {"label", "score"}]]
//! {"inputs": "...", "explain": true}                → berth's: {"scores": [...], "explanation": {...}}
//! {"inputs": "...", "explain": {"method": "ig", "steps": 32, "baseline": "pad", "target": "positive"}}
//! ```
//!
//! Scores are sorted, highest first. A request with `parameters` (the
//! Hugging Face Inference API's shape) is answered in that API's shape, a
//! list per input even for one text, which is what the client reads. A
//! token model (NER) answers each text with `{"words", "tags", "entities"}`,
//! its words being the text split at whitespace. Unlike TEI, a list of two
//! strings is two texts; a pair is always written as a nested
//! `[text, text_pair]`. Unknown fields are refused rather than ignored, so a
//! misspelt one is not silently dropped; `null` stands for a field's default.
//!
//! `long_text` is berth's own field: `"chunk"` reads a text longer than the
//! window in overlapping windows and combines their logits (the model's saved
//! `--long-text` setting, or a stride of 32 and the mean); `"truncate"` cuts
//! it even when the model was trained chunked. Without the field the model's
//! saved setting decides. A chunked text is never over the length, so
//! `truncate` and `truncation_direction` then change nothing.
//!
//! `explain` is berth's too: each input's answer becomes an object with its
//! `scores` (as without it) and its `explanation` (token attributions, as
//! `berth predict --explain` writes them, docs/formats.md). `true` takes
//! integrated gradients with the server's default steps; an object may set
//! `method` (`"ig"`, `"grad-x-input"`), `steps`, `baseline` (`"pad"`,
//! `"zero"`), `rule` (an integration rule's name) and `target` (a label).
//! A chunked text's `explanation` is its document's (how the aggregate of
//! its windows is made), and a token model's answer gains `explanations`,
//! one per predicted entity, as `berth predict --words --explain` writes
//! them. The server bounds the steps, the explanations one request may ask
//! for (its texts, a chunked document's explained windows, a token model's
//! entities) and the explanations running at once (`--explain-*`), so
//! explanations cannot starve ordinary requests.

use serde_json::{Map, Value};

use crate::data::tokenize::Truncation;
use crate::infer::explain::EntityExplanation;
use crate::infer::{LabelScore, ModelKind, TextPrediction, WordPrediction};
use crate::model::explain::{Baseline, ExplainMethod, IntegrationRule};
use crate::numerics::{sigmoid, softmax};

/// The limits a request is checked against.
#[derive(Clone, Debug)]
pub struct RequestLimits {
    /// Most examples in one request.
    pub max_inputs: usize,
    /// Most characters in one text (each half of a pair counts alone).
    pub max_input_chars: usize,
}

/// One example of a request.
#[derive(Clone, Debug, PartialEq)]
pub enum Example {
    /// A text.
    Text(String),
    /// A text and its pair.
    Pair(String, String),
}

/// What turns a sequence model's logits into scores (the Inference API's
/// `function_to_apply`, as transformers' text-classification pipeline reads it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScoreFunction {
    /// Softmax over the labels.
    Softmax,
    /// A sigmoid per label.
    Sigmoid,
    /// The logits as they are.
    Identity,
}

/// A checked `/predict` request.
#[derive(Clone, Debug, PartialEq)]
pub struct PredictRequest {
    /// The examples, in order.
    pub examples: Vec<Example>,
    /// Whether `inputs` was a single example rather than a list.
    pub single: bool,
    /// Answer a list per input even for a single example (the request had
    /// `parameters`: the Inference API's shape, which its client expects).
    pub nested: bool,
    /// Answer logits instead of probabilities.
    pub raw_scores: bool,
    /// Where an input over the maximum length is cut, or `Truncation::None`
    /// (`"truncate": false`): such an input is refused. None: the model's
    /// own direction (its saved `--truncation-direction`, else `Right`).
    pub truncation: Option<Truncation>,
    /// Answer only the `top_k` highest-scoring labels.
    pub top_k: Option<usize>,
    /// Scores from the logits by this function instead of the model's own.
    pub function: Option<ScoreFunction>,
    /// `"long_text"`: Some(true) chunks, Some(false) truncates, None follows the model.
    pub chunk: Option<bool>,
    /// `"explain"`: token attributions to add to each answer.
    pub explain: Option<ExplainRequest>,
}

/// What `"explain"` asks for; None fields take the server's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct ExplainRequest {
    pub method: ExplainMethod,
    pub steps: Option<usize>,
    pub baseline: Baseline,
    pub rule: IntegrationRule,
    /// A label's name; None explains the predicted label.
    pub target: Option<String>,
}

impl Default for ExplainRequest {
    fn default() -> Self {
        ExplainRequest {
            method: ExplainMethod::Ig,
            steps: None,
            baseline: Baseline::Pad,
            rule: IntegrationRule::GaussLegendre,
            target: None,
        }
    }
}

impl PredictRequest {
    /// How the `i`th example is named in messages: `inputs` or `inputs[i]`.
    pub fn example_name(&self, i: usize) -> String {
        if self.single { "inputs".into() } else { format!("inputs[{i}]") }
    }
}

/// Why a request was refused: 400 (malformed) or 413 (over a limit), with a message.
#[derive(Debug, PartialEq)]
pub enum RequestError {
    /// 400: the body is not a valid request.
    Invalid(String),
    /// 413: the request is over a limit.
    TooLarge(String),
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn text(v: &Value, at: &str, limits: &RequestLimits) -> Result<String, RequestError> {
    let Value::String(s) = v else {
        return Err(RequestError::Invalid(format!("{at} must be a string, found {}", kind_of(v))));
    };
    if s.trim().is_empty() {
        return Err(RequestError::Invalid(format!("{at} is empty")));
    }
    let chars = s.chars().count();
    if chars > limits.max_input_chars {
        return Err(RequestError::TooLarge(format!("{at} has {chars} characters; the limit is {}", limits.max_input_chars)));
    }
    Ok(s.clone())
}

fn example(v: &Value, at: &str, limits: &RequestLimits) -> Result<Example, RequestError> {
    match v {
        Value::String(_) => Ok(Example::Text(text(v, at, limits)?)),
        Value::Array(pair) if pair.len() == 2 => {
            Ok(Example::Pair(text(&pair[0], &format!("{at}[0]"), limits)?, text(&pair[1], &format!("{at}[1]"), limits)?))
        }
        Value::Array(items) => {
            Err(RequestError::Invalid(format!("{at} must be a text or a [text, text_pair] pair, found a list of {}", items.len())))
        }
        other => Err(RequestError::Invalid(format!("{at} must be a text or a [text, text_pair] pair, found {}", kind_of(other)))),
    }
}

/// The fields a request may hold.
const FIELDS: &str = "`inputs`, `raw_scores`, `truncate`, `truncation_direction`, `long_text`, `explain` and `parameters`";
/// The fields `explain` may hold.
const EXPLAIN_FIELDS: &str = "`method`, `steps`, `baseline`, `rule` and `target`";
/// The fields `parameters` may hold.
const PARAMETERS: &str = "`top_k` and `function_to_apply`";

/// A field's value, `null` reading as absent.
fn field<'a>(fields: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    fields.get(name).filter(|v| !v.is_null())
}

fn boolean(fields: &Map<String, Value>, name: &str, default: bool) -> Result<bool, RequestError> {
    match field(fields, name) {
        None => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(RequestError::Invalid(format!("`{name}` must be true or false, found {}", kind_of(other)))),
    }
}

/// `truncation_direction`: TEI spells it `Left` / `Right`; lower case is accepted too.
fn direction(fields: &Map<String, Value>) -> Result<Option<Truncation>, RequestError> {
    match field(fields, "truncation_direction") {
        None => Ok(None),
        Some(Value::String(s)) if s == "Right" || s == "right" => Ok(Some(Truncation::Right)),
        Some(Value::String(s)) if s == "Left" || s == "left" => Ok(Some(Truncation::Left)),
        Some(Value::String(s)) => {
            Err(RequestError::Invalid(format!("`truncation_direction` must be \"Left\" or \"Right\" (or lower case), found \"{s}\"")))
        }
        Some(other) => {
            Err(RequestError::Invalid(format!("`truncation_direction` must be \"Left\" or \"Right\", found {}", kind_of(other))))
        }
    }
}

/// `holder.name`, a whole number of at least 1, or absent.
fn count_field(p: &Map<String, Value>, holder: &str, name: &str) -> Result<Option<usize>, RequestError> {
    match field(p, name) {
        None => Ok(None),
        Some(v) => match v.as_u64() {
            Some(k) if k >= 1 => Ok(Some(usize::try_from(k).unwrap_or(usize::MAX))),
            _ => Err(RequestError::Invalid(format!("`{holder}.{name}` must be a whole number of at least 1, found {v}"))),
        },
    }
}

/// The Inference API's `parameters`: (`top_k`, `function_to_apply`).
fn parameters(value: &Value) -> Result<(Option<usize>, Option<ScoreFunction>), RequestError> {
    let Value::Object(p) = value else {
        return Err(RequestError::Invalid(format!("`parameters` must be an object, found {}", kind_of(value))));
    };
    if let Some(unknown) = p.keys().find(|k| !matches!(k.as_str(), "top_k" | "function_to_apply")) {
        return Err(RequestError::Invalid(format!("unknown field `parameters.{unknown}` (`parameters` may hold {PARAMETERS})")));
    }
    let top_k = count_field(p, "parameters", "top_k")?;
    let function = match field(p, "function_to_apply") {
        None => None,
        Some(Value::String(s)) => Some(match s.as_str() {
            "softmax" => ScoreFunction::Softmax,
            "sigmoid" => ScoreFunction::Sigmoid,
            "none" => ScoreFunction::Identity,
            _ => {
                return Err(RequestError::Invalid(format!(
                    "`parameters.function_to_apply` must be \"softmax\", \"sigmoid\" or \"none\", found \"{s}\""
                )));
            }
        }),
        Some(other) => {
            return Err(RequestError::Invalid(format!("`parameters.function_to_apply` must be a string, found {}", kind_of(other))));
        }
    };
    Ok((top_k, function))
}

/// A string field that must name one of a clap value enum's values.
fn named_value<T: clap::ValueEnum>(p: &Map<String, Value>, name: &str, default: T) -> Result<T, RequestError> {
    let names =
        || T::value_variants().iter().filter_map(|v| v.to_possible_value()).map(|v| format!("\"{}\"", v.get_name())).collect::<Vec<_>>();
    match field(p, name) {
        None => Ok(default),
        Some(Value::String(s)) => T::from_str(s, false)
            .map_err(|_| RequestError::Invalid(format!("`explain.{name}` must be one of {}, found \"{s}\"", names().join(", ")))),
        Some(other) => {
            Err(RequestError::Invalid(format!("`explain.{name}` must be one of {}, found {}", names().join(", "), kind_of(other))))
        }
    }
}

/// `"explain"`: true, false, or an object of settings.
fn explain_request(value: &Value) -> Result<Option<ExplainRequest>, RequestError> {
    let p = match value {
        Value::Bool(false) => return Ok(None),
        Value::Bool(true) => return Ok(Some(ExplainRequest::default())),
        Value::Object(p) => p,
        other => return Err(RequestError::Invalid(format!("`explain` must be true, false or an object, found {}", kind_of(other)))),
    };
    if let Some(unknown) = p.keys().find(|k| !matches!(k.as_str(), "method" | "steps" | "baseline" | "rule" | "target")) {
        return Err(RequestError::Invalid(format!("unknown field `explain.{unknown}` (`explain` may hold {EXPLAIN_FIELDS})")));
    }
    let steps = count_field(p, "explain", "steps")?;
    let target = match field(p, "target") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => return Err(RequestError::Invalid(format!("`explain.target` must be a label's name, found {}", kind_of(other)))),
    };
    let defaults = ExplainRequest::default();
    Ok(Some(ExplainRequest {
        method: named_value(p, "method", defaults.method)?,
        steps,
        baseline: named_value(p, "baseline", defaults.baseline)?,
        rule: named_value(p, "rule", defaults.rule)?,
        target,
    }))
}

/// Parses and checks a `/predict` body.
pub fn parse_request(body: &[u8], limits: &RequestLimits) -> Result<PredictRequest, RequestError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| RequestError::Invalid(format!("malformed JSON: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(RequestError::Invalid(format!("the body must be a JSON object with `inputs`, found {}", kind_of(&value))));
    };
    if let Some(unknown) = fields.keys().find(|k| {
        !matches!(k.as_str(), "inputs" | "raw_scores" | "truncate" | "truncation_direction" | "long_text" | "explain" | "parameters")
    }) {
        return Err(RequestError::Invalid(format!("unknown field `{unknown}` (a request may hold {FIELDS})")));
    }
    let raw_scores = boolean(&fields, "raw_scores", false)?;
    // berth truncates unless told not to (TEI run with --auto-truncate), as `berth predict` does.
    let truncate = boolean(&fields, "truncate", true)?;
    let direction = direction(&fields)?;
    let chunk = match field(&fields, "long_text") {
        None => None,
        Some(Value::String(s)) if s == "chunk" => Some(true),
        Some(Value::String(s)) if s == "truncate" => Some(false),
        Some(Value::String(s)) => {
            return Err(RequestError::Invalid(format!("`long_text` must be \"chunk\" or \"truncate\", found \"{s}\"")));
        }
        Some(other) => {
            return Err(RequestError::Invalid(format!("`long_text` must be \"chunk\" or \"truncate\", found {}", kind_of(other))));
        }
    };
    let (top_k, function) = match field(&fields, "parameters") {
        None => (None, None),
        Some(p) => parameters(p)?,
    };
    let explain = match field(&fields, "explain") {
        None => None,
        Some(e) => explain_request(e)?,
    };
    if let (true, Some(f)) = (raw_scores, function)
        && f != ScoreFunction::Identity
    {
        let name = if f == ScoreFunction::Softmax { "softmax" } else { "sigmoid" };
        return Err(RequestError::Invalid(format!(
            "`raw_scores` asks for the logits but `parameters.function_to_apply` is \"{name}\"; send one of them"
        )));
    }
    let inputs = fields.get("inputs").ok_or_else(|| RequestError::Invalid("missing field `inputs`".into()))?;
    let (examples, single) = match inputs {
        Value::String(_) => (vec![example(inputs, "inputs", limits)?], true),
        Value::Array(items) if items.is_empty() => return Err(RequestError::Invalid("`inputs` is an empty list".into())),
        Value::Array(items) => {
            if items.len() > limits.max_inputs {
                return Err(RequestError::TooLarge(format!(
                    "`inputs` holds {} examples; the limit is {} per request",
                    items.len(),
                    limits.max_inputs
                )));
            }
            let examples = items.iter().enumerate().map(|(i, v)| example(v, &format!("inputs[{i}]"), limits)).collect::<Result<_, _>>()?;
            (examples, false)
        }
        other => {
            return Err(RequestError::Invalid(format!(
                "`inputs` must be a text, a list of texts, or a list of [text, text_pair] pairs; found {}",
                kind_of(other)
            )));
        }
    };
    Ok(PredictRequest {
        examples,
        single,
        nested: field(&fields, "parameters").is_some(),
        raw_scores,
        truncation: if truncate { direction } else { Some(Truncation::None) },
        top_k,
        function,
        chunk,
        explain,
    })
}

/// Refuses what a request asks of scores when the model answers words and
/// tags instead (a token model): it would otherwise be silently ignored.
pub fn check_for_kind(request: &PredictRequest, kind: ModelKind) -> Result<(), RequestError> {
    if kind != ModelKind::TokenClassification {
        return Ok(());
    }
    if request.explain.as_ref().is_some_and(|e| e.target.is_some()) {
        return Err(RequestError::Invalid(
            "`explain.target` names a label to explain, but this token-classification model explains each predicted entity by \
             its own tags; leave `target` out"
                .into(),
        ));
    }
    let asked = [
        (request.raw_scores, "`raw_scores`"),
        (request.top_k.is_some(), "`parameters.top_k`"),
        (request.function.is_some(), "`parameters.function_to_apply`"),
    ];
    match asked.iter().find(|(set, _)| *set) {
        Some((_, name)) => Err(RequestError::Invalid(format!(
            "{name} applies to label scores, but this token-classification model answers each text with words and tags"
        ))),
        None => Ok(()),
    }
}

/// Every label with its score, highest first: the model's own scores
/// (probabilities, or the value for regression), the logits with
/// `raw_scores`, or `function_to_apply` of the logits; the `top_k` first.
fn scores(p: &TextPrediction, labels: &[String], request: &PredictRequest) -> Vec<LabelScore> {
    let function = match (request.function, request.raw_scores) {
        (Some(f), _) => Some(f),
        (None, true) => Some(ScoreFunction::Identity),
        (None, false) => None,
    };
    let mut s = match function {
        None => p.scores.clone(),
        Some(f) => {
            let values = match f {
                ScoreFunction::Identity => p.logits.clone(),
                ScoreFunction::Softmax => softmax(&p.logits),
                ScoreFunction::Sigmoid => p.logits.iter().map(|&v| sigmoid(v)).collect(),
            };
            labels.iter().zip(values).map(|(l, v)| LabelScore { label: l.clone(), score: v }).collect()
        }
    };
    s.sort_by(|a, b| b.score.total_cmp(&a.score));
    if let Some(k) = request.top_k {
        s.truncate(k);
    }
    s
}

/// One value per input, unwrapped for a single input unless the request
/// asked for the Inference API's nested shape.
fn shape(mut rows: impl Iterator<Item = Value>, request: &PredictRequest) -> Value {
    if request.single && !request.nested { rows.next().unwrap_or(Value::Null) } else { Value::Array(rows.collect()) }
}

/// The answer to a sequence model's request.
pub fn text_answer(predictions: &[TextPrediction], labels: &[String], request: &PredictRequest) -> Value {
    let rows = predictions.iter().map(|p| serde_json::to_value(scores(p, labels, request)).expect("scores serialise"));
    shape(rows, request)
}

/// The answer to a request with `"explain"`: each input's scores and explanation.
pub fn explained_answer<E: serde::Serialize>(
    predictions: &[TextPrediction],
    explanations: &[E],
    labels: &[String],
    request: &PredictRequest,
) -> Value {
    let rows = predictions.iter().zip(explanations).map(|(p, e)| {
        serde_json::json!({
            "scores": scores(p, labels, request),
            "explanation": e,
        })
    });
    shape(rows, request)
}

/// The answer to a token model's request with `"explain"`: each sentence's
/// words, tags and entities, and `explanations`, one per entity in order.
pub fn explained_word_answer(predictions: &[WordPrediction], explanations: &[Vec<EntityExplanation>], request: &PredictRequest) -> Value {
    let rows = predictions.iter().zip(explanations).map(|(p, e)| {
        let mut row = serde_json::to_value(p).expect("word predictions serialise");
        row["explanations"] = serde_json::to_value(e).expect("explanations serialise");
        row
    });
    shape(rows, request)
}

/// The answer to a token model's request.
pub fn word_answer(predictions: &[WordPrediction], request: &PredictRequest) -> Value {
    let rows = predictions.iter().map(|p| serde_json::to_value(p).expect("word predictions serialise"));
    shape(rows, request)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: RequestLimits = RequestLimits { max_inputs: 3, max_input_chars: 20 };

    fn parse(body: &str) -> Result<PredictRequest, RequestError> {
        parse_request(body.as_bytes(), &LIMITS)
    }

    fn invalid(body: &str) -> String {
        match parse(body) {
            Err(RequestError::Invalid(m)) => m,
            other => panic!("expected 400 for {body}, got {other:?}"),
        }
    }

    #[test]
    fn the_three_forms_of_inputs() {
        let r = parse(r#"{"inputs": "good film"}"#).unwrap();
        assert_eq!((r.examples, r.single, r.raw_scores), (vec![Example::Text("good film".into())], true, false));
        let r = parse(r#"{"inputs": ["a", "b"], "raw_scores": true}"#).unwrap();
        assert_eq!((r.examples.len(), r.single, r.raw_scores), (2, false, true));
        let r = parse(r#"{"inputs": [["a", "b"], "c"]}"#).unwrap();
        assert_eq!(r.examples, vec![Example::Pair("a".into(), "b".into()), Example::Text("c".into())]);
    }

    #[test]
    fn malformed_and_wrong_typed_bodies_say_what_is_wrong() {
        assert!(invalid(r#"{"inputs": "#).starts_with("malformed JSON"));
        assert!(invalid("[1]").contains("must be a JSON object"));
        assert_eq!(invalid("{}"), "missing field `inputs`");
        assert_eq!(invalid(r#"{"inputs": ""}"#), "inputs is empty");
        assert_eq!(invalid(r#"{"inputs": []}"#), "`inputs` is an empty list");
        assert!(invalid(r#"{"inputs": 5}"#).contains("found a number"));
        assert_eq!(invalid(r#"{"inputs": ["ok", 7]}"#), "inputs[1] must be a text or a [text, text_pair] pair, found a number");
        assert_eq!(invalid(r#"{"inputs": [["a", 1]]}"#), "inputs[0][1] must be a string, found a number");
        assert!(invalid(r#"{"inputs": [["a", "b", "c"]]}"#).contains("found a list of 3"));
        assert!(invalid(r#"{"inputs": "a", "raw_scores": "yes"}"#).contains("`raw_scores` must be true or false"));
        assert!(invalid(r#"{"inputs": "a", "truncate": "yes"}"#).contains("`truncate` must be true or false"));
        assert!(invalid(r#"{"inputs": "a", "options": {}}"#).starts_with("unknown field `options` (a request may hold `inputs`"));
    }

    #[test]
    fn long_text_is_chunk_truncate_or_the_models_own() {
        assert_eq!(parse(r#"{"inputs": "a"}"#).unwrap().chunk, None);
        assert_eq!(parse(r#"{"inputs": "a", "long_text": null}"#).unwrap().chunk, None);
        assert_eq!(parse(r#"{"inputs": "a", "long_text": "chunk"}"#).unwrap().chunk, Some(true));
        assert_eq!(parse(r#"{"inputs": "a", "long_text": "truncate"}"#).unwrap().chunk, Some(false));
        assert_eq!(invalid(r#"{"inputs": "a", "long_text": "split"}"#), "`long_text` must be \"chunk\" or \"truncate\", found \"split\"");
        assert!(invalid(r#"{"inputs": "a", "long_text": true}"#).contains("found a boolean"));
    }

    #[test]
    fn explain_is_true_false_or_settings() {
        assert_eq!(parse(r#"{"inputs": "a"}"#).unwrap().explain, None);
        assert_eq!(parse(r#"{"inputs": "a", "explain": false}"#).unwrap().explain, None);
        assert_eq!(parse(r#"{"inputs": "a", "explain": true}"#).unwrap().explain, Some(ExplainRequest::default()));
        let e = parse(r#"{"inputs": "a", "explain": {"method": "grad-x-input", "steps": 8, "baseline": "zero", "rule": "riemann-middle", "target": "pos"}}"#)
            .unwrap()
            .explain
            .unwrap();
        assert_eq!(
            e,
            ExplainRequest {
                method: ExplainMethod::GradXInput,
                steps: Some(8),
                baseline: Baseline::Zero,
                rule: IntegrationRule::RiemannMiddle,
                target: Some("pos".into())
            }
        );
        assert_eq!(invalid(r#"{"inputs": "a", "explain": "yes"}"#), "`explain` must be true, false or an object, found a string");
        assert_eq!(
            invalid(r#"{"inputs": "a", "explain": {"method": "lime"}}"#),
            r#"`explain.method` must be one of "ig", "grad-x-input", found "lime""#
        );
        assert_eq!(invalid(r#"{"inputs": "a", "explain": {"steps": 0}}"#), "`explain.steps` must be a whole number of at least 1, found 0");
        assert!(invalid(r#"{"inputs": "a", "explain": {"baseline": 0}}"#).ends_with("found a number"));
        assert!(invalid(r#"{"inputs": "a", "explain": {"target": 1}}"#).contains("`explain.target` must be a label's name"));
        assert!(invalid(r#"{"inputs": "a", "explain": {"stps": 1}}"#).starts_with("unknown field `explain.stps`"));
        // A token model explains its entities, each by its own tags: no target.
        let token = ModelKind::TokenClassification;
        assert!(check_for_kind(&parse(r#"{"inputs": "a", "explain": true}"#).unwrap(), token).is_ok());
        assert!(matches!(
            check_for_kind(&parse(r#"{"inputs": "a", "explain": {"target": "B-PER"}}"#).unwrap(), token),
            Err(RequestError::Invalid(m)) if m.starts_with("`explain.target`")
        ));
    }

    #[test]
    fn tei_truncation_fields_in_either_spelling() {
        let truncation = |body: &str| parse(body).unwrap().truncation;
        assert_eq!(truncation(r#"{"inputs": "a"}"#), None, "the model's own direction");
        assert_eq!(truncation(r#"{"inputs": "a", "truncate": null, "truncation_direction": null}"#), None);
        for (spelling, side) in
            [("Left", Truncation::Left), ("left", Truncation::Left), ("Right", Truncation::Right), ("right", Truncation::Right)]
        {
            assert_eq!(truncation(&format!(r#"{{"inputs": "a", "truncation_direction": "{spelling}"}}"#)), Some(side));
        }
        assert_eq!(truncation(r#"{"inputs": "a", "truncate": true, "truncation_direction": "Left"}"#), Some(Truncation::Left));
        assert_eq!(truncation(r#"{"inputs": "a", "truncate": false, "truncation_direction": "Left"}"#), Some(Truncation::None));
        assert_eq!(
            invalid(r#"{"inputs": "a", "truncation_direction": "LEFT"}"#),
            r#"`truncation_direction` must be "Left" or "Right" (or lower case), found "LEFT""#
        );
        assert!(invalid(r#"{"inputs": "a", "truncation_direction": 1}"#).ends_with("found a number"));
    }

    #[test]
    fn the_clients_parameters_are_read_and_checked() {
        let r = parse(r#"{"inputs": "a", "parameters": {}}"#).unwrap();
        assert_eq!((r.single, r.nested, r.top_k, r.function), (true, true, None, None));
        let r = parse(r#"{"inputs": "a", "parameters": null}"#).unwrap();
        assert!(!r.nested, "null is no parameters");
        let r = parse(r#"{"inputs": "a", "parameters": {"top_k": 2, "function_to_apply": "sigmoid"}}"#).unwrap();
        assert_eq!((r.top_k, r.function), (Some(2), Some(ScoreFunction::Sigmoid)));
        let r = parse(r#"{"inputs": "a", "parameters": {"top_k": null, "function_to_apply": "none"}, "raw_scores": true}"#).unwrap();
        assert_eq!((r.top_k, r.function), (None, Some(ScoreFunction::Identity)));
        assert_eq!(
            parse(r#"{"inputs": "a", "parameters": {"function_to_apply": "softmax"}}"#).unwrap().function,
            Some(ScoreFunction::Softmax)
        );
        assert_eq!(
            invalid(r#"{"inputs": "a", "parameters": {"top_k": 0}}"#),
            "`parameters.top_k` must be a whole number of at least 1, found 0"
        );
        assert!(invalid(r#"{"inputs": "a", "parameters": {"top_k": 1.5}}"#).ends_with("found 1.5"));
        assert!(invalid(r#"{"inputs": "a", "parameters": {"top_k": -1}}"#).ends_with("found -1"));
        assert_eq!(
            invalid(r#"{"inputs": "a", "parameters": {"function_to_apply": "tanh"}}"#),
            r#"`parameters.function_to_apply` must be "softmax", "sigmoid" or "none", found "tanh""#
        );
        assert_eq!(
            invalid(r#"{"inputs": "a", "parameters": {"topk": 1}}"#),
            "unknown field `parameters.topk` (`parameters` may hold `top_k` and `function_to_apply`)"
        );
        assert_eq!(invalid(r#"{"inputs": "a", "parameters": [1]}"#), "`parameters` must be an object, found a list");
        assert!(
            invalid(r#"{"inputs": "a", "raw_scores": true, "parameters": {"function_to_apply": "softmax"}}"#).contains("send one of them")
        );
    }

    #[test]
    fn a_token_model_refuses_what_it_would_ignore() {
        let token = ModelKind::TokenClassification;
        assert_eq!(check_for_kind(&parse(r#"{"inputs": "a", "parameters": {}, "truncate": false}"#).unwrap(), token), Ok(()));
        let refused = |body: &str| match check_for_kind(&parse(body).unwrap(), token) {
            Err(RequestError::Invalid(m)) => m,
            other => panic!("{body}: {other:?}"),
        };
        assert!(refused(r#"{"inputs": "a", "raw_scores": true}"#).starts_with("`raw_scores` applies to label scores"));
        assert!(refused(r#"{"inputs": "a", "parameters": {"top_k": 1}}"#).starts_with("`parameters.top_k`"));
        assert!(refused(r#"{"inputs": "a", "parameters": {"function_to_apply": "none"}}"#).starts_with("`parameters.function_to_apply`"));
        assert_eq!(check_for_kind(&parse(r#"{"inputs": "a", "raw_scores": true}"#).unwrap(), ModelKind::SingleLabel), Ok(()));
    }

    #[test]
    fn limits_give_413() {
        assert!(matches!(parse(r#"{"inputs": ["a", "b", "c", "d"]}"#), Err(RequestError::TooLarge(m)) if m.contains("holds 4 examples")));
        assert!(
            matches!(parse(r#"{"inputs": "abcdefghijklmnopqrstuvwxyz"}"#), Err(RequestError::TooLarge(m)) if m.contains("26 characters"))
        );
    }

    #[test]
    fn answers_are_sorted_and_raw_scores_are_logits() {
        let labels = vec!["neg".to_string(), "pos".to_string()];
        let p = TextPrediction {
            labels: vec!["pos".into()],
            scores: vec![LabelScore { label: "pos".into(), score: 0.9 }, LabelScore { label: "neg".into(), score: 0.1 }],
            logits: vec![-1.0, 1.2],
        };
        let single = parse(r#"{"inputs": "x"}"#).unwrap();
        assert_eq!(
            text_answer(&[p.clone()], &labels, &single),
            serde_json::json!([{"label": "pos", "score": 0.9}, {"label": "neg", "score": 0.1}])
        );
        let raw = parse(r#"{"inputs": ["x"], "raw_scores": true}"#).unwrap();
        assert_eq!(
            text_answer(&[p.clone()], &labels, &raw),
            serde_json::json!([[{"label": "pos", "score": 1.2}, {"label": "neg", "score": -1.0}]])
        );
        // The client's shape: one list per input, cut to top_k, scored by function_to_apply.
        let client = parse(r#"{"inputs": "x", "parameters": {"top_k": 1}}"#).unwrap();
        assert_eq!(text_answer(&[p.clone()], &labels, &client), serde_json::json!([[{"label": "pos", "score": 0.9}]]));
        let sigmoid = parse(r#"{"inputs": "x", "parameters": {"function_to_apply": "sigmoid"}}"#).unwrap();
        let expected = [1.0 / (1.0 + (-1.2f64).exp()), 1.0 / (1.0 + 1.0f64.exp())];
        assert_eq!(
            text_answer(&[p.clone()], &labels, &sigmoid),
            serde_json::json!([[{"label": "pos", "score": expected[0]}, {"label": "neg", "score": expected[1]}]])
        );
        let softmax = parse(r#"{"inputs": "x", "parameters": {"function_to_apply": "softmax", "top_k": 5}}"#).unwrap();
        let e = (-2.2f64).exp();
        let answer = text_answer(&[p], &labels, &softmax);
        assert_eq!(answer[0].as_array().unwrap().len(), 2, "top_k above the label count gives every label");
        assert!((answer[0][0]["score"].as_f64().unwrap() - 1.0 / (1.0 + e)).abs() < 1e-15, "{answer}");
        assert!((answer[0][1]["score"].as_f64().unwrap() - e / (1.0 + e)).abs() < 1e-15, "{answer}");
    }
}

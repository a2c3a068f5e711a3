//! The JSON of `POST /predict`, following text-embeddings-inference's
//! classification API: what a request may hold, how it is checked, and the
//! shape of the answer.
//!
//! ```text
//! {"inputs": "a text"}                              → [{"label", "score"}, ...]
//! {"inputs": ["a text", "another"]}                 → [[{"label", "score"}, ...], ...]
//! {"inputs": [["a premise", "a hypothesis"]]}       → [[{"label", "score"}, ...]]
//! {"inputs": "...", "raw_scores": true}             → the logits instead of probabilities
//! ```
//!
//! Scores are sorted, highest first. A token model (NER) answers each text
//! with `{"words", "tags", "entities"}`, its words being the text split at
//! whitespace. Unlike text-embeddings-inference, a list of two strings is two
//! texts; a pair is always written as a nested `[text, text_pair]`.

use serde_json::Value;

use crate::infer::{LabelScore, TextPrediction, WordPrediction};

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

/// A checked `/predict` request.
#[derive(Clone, Debug, PartialEq)]
pub struct PredictRequest {
    /// The examples, in order.
    pub examples: Vec<Example>,
    /// Whether `inputs` was a single example (answer unwrapped) or a list.
    pub single: bool,
    /// Answer logits instead of probabilities.
    pub raw_scores: bool,
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

/// Parses and checks a `/predict` body.
pub fn parse_request(body: &[u8], limits: &RequestLimits) -> Result<PredictRequest, RequestError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| RequestError::Invalid(format!("malformed JSON: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(RequestError::Invalid(format!("the body must be a JSON object with `inputs`, found {}", kind_of(&value))));
    };
    if let Some(unknown) = fields.keys().find(|k| !matches!(k.as_str(), "inputs" | "raw_scores")) {
        return Err(RequestError::Invalid(format!("unknown field `{unknown}` (expected `inputs` and optionally `raw_scores`)")));
    }
    let raw_scores = match fields.get("raw_scores") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(RequestError::Invalid(format!("`raw_scores` must be true or false, found {}", kind_of(other)))),
    };
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
    Ok(PredictRequest { examples, single, raw_scores })
}

/// Every label with its probability (or logit, with `raw_scores`), highest first.
fn scores(p: &TextPrediction, labels: &[String], raw_scores: bool) -> Vec<LabelScore> {
    if !raw_scores {
        return p.scores.clone();
    }
    let mut s: Vec<LabelScore> = labels.iter().zip(&p.logits).map(|(l, &v)| LabelScore { label: l.clone(), score: v }).collect();
    s.sort_by(|a, b| b.score.total_cmp(&a.score));
    s
}

/// The answer to a sequence model's request.
pub fn text_answer(predictions: &[TextPrediction], labels: &[String], request: &PredictRequest) -> Value {
    let mut rows = predictions.iter().map(|p| serde_json::to_value(scores(p, labels, request.raw_scores)).expect("scores serialise"));
    if request.single { rows.next().unwrap_or(Value::Null) } else { Value::Array(rows.collect()) }
}

/// The answer to a token model's request.
pub fn word_answer(predictions: &[WordPrediction], request: &PredictRequest) -> Value {
    let mut rows = predictions.iter().map(|p| serde_json::to_value(p).expect("word predictions serialise"));
    if request.single { rows.next().unwrap_or(Value::Null) } else { Value::Array(rows.collect()) }
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
        assert!(invalid(r#"{"inputs": "a", "truncate": true}"#).contains("unknown field `truncate`"));
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
        let single = PredictRequest { examples: vec![Example::Text("x".into())], single: true, raw_scores: false };
        assert_eq!(
            text_answer(&[p.clone()], &labels, &single),
            serde_json::json!([{"label": "pos", "score": 0.9}, {"label": "neg", "score": 0.1}])
        );
        let raw = PredictRequest { single: false, raw_scores: true, ..single };
        assert_eq!(
            text_answer(&[p], &labels, &raw),
            serde_json::json!([[{"label": "pos", "score": 1.2}, {"label": "neg", "score": -1.0}]])
        );
    }
}

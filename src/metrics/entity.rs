//! Entity-level metrics for sequence labelling (NER), compatible with seqeval.
//!
//! Tags are strings like `B-PER`, `I-LOC`, `O`, one per word. Words are
//! grouped into entities (chunks), and an entity counts as right only when
//! a predicted entity has the same type, start and end as a true one.
//! [`entity_report`] computes what `seqeval.metrics.classification_report(
//! y_true, y_pred, output_dict=True, zero_division=0)` does, in one of two
//! modes ([`EntityScheme`]).
//!
//! # Default mode (seqeval's default, conlleval-like)
//!
//! A tag's *prefix* is its first character and its *type* the rest, after
//! the first `-` when the rest has one (`B-PER` → `B`, `PER`; `B-PER-X` →
//! `PER-X`; `S-LOC` → `S`, `LOC`); an empty type reads as `_`, so a bare `O`
//! or `B` has type `_`. Words are read left to right with the previous word's
//! prefix and type (before the first word: prefix `O`, an empty type), and an
//! `O` is read after the last word. The chunk in progress ends before the
//! current word when
//!
//! - the previous prefix is `E` or `S`; or
//! - the previous prefix is `B` or `I` and the current one is `B`, `S` or `O`; or
//! - the previous prefix is neither `O` nor `.` and the type changes;
//!
//! and a chunk starts at the current word when
//!
//! - its prefix is `B` or `S`; or
//! - its prefix is `I` or `E` and the previous one is `O`, `E` or `S`; or
//! - its prefix is neither `O` nor `.` and the type changes.
//!
//! So an entity may start with `I-` (`O I-PER I-PER` is one PER), a change
//! of type ends a chunk and starts another (`B-PER I-LOC` is a PER and a LOC),
//! `B-` always starts one, and IOBES tags (`E-`, `S-`) work too. An ending
//! chunk takes the type of its last word and starts where the last chunk
//! start was seen. Any other prefix follows the same rules (a `.` prefix,
//! like `O`, neither starts nor continues a type change), exactly as seqeval;
//! an empty tag, on which seqeval fails, reads as `O`.
//!
//! As in seqeval, [`entity_report`] reads the sentences of a corpus as one
//! sequence with an `O` after each, so an entity never runs on into the next
//! sentence. (One seqeval quirk follows from it and is kept: a chunk that
//! continues without a start, like `I-PER` after `.PER`, begins at the last
//! start seen, which may lie in an earlier sentence.)
//! [`extract_entities`] reads one sentence on its own.
//!
//! # Strict IOB2 (`mode="strict", scheme=IOB2`)
//!
//! Every tag must start with `B`, `I` or `O` (else [`entity_report`] fails,
//! as seqeval raises); the type is the rest with leading and trailing `-`
//! removed (`_` if empty). An entity is a `B-X` followed by every directly
//! following `I-X` (same type); an `I-` that does not continue such a run
//! belongs to no entity.
//!
//! # Scores
//!
//! Types are those of every true or predicted entity, sorted (so a type that
//! is only predicted is reported, with support 0). Per type: precision = tp /
//! predicted, recall = tp / true, F1 = 2·P·R / (P + R) (seqeval's form), each
//! 0 where its denominator is 0; support = true entities of the type. Micro
//! average pools the counts; macro is the plain mean over types; weighted is
//! the mean weighted by support, and all 0 when there is no true entity (as
//! seqeval). Every average's support is the number of true entities. With no
//! entity at all seqeval's macro average is NaN; berth's is 0.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::Scores;
use super::report::{TEXT_DIGITS, average, divide, per_class_json, scores_json, text_table};
use crate::{Error, Result};

/// How tags are grouped into entities; see the [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntityScheme {
    /// seqeval's default (conlleval-like) mode: accepts IO, IOB1, IOB2, IOE
    /// and IOBES tags, and lenient about ill-formed sequences.
    Default,
    /// seqeval's `mode="strict", scheme=IOB2`: an entity must start with `B-`.
    StrictIob2,
}

/// One entity of a sentence: its type and its words `start..end` (word
/// indices; `end` exclusive).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Entity {
    pub kind: String,
    pub start: usize,
    pub end: usize,
}

/// The entities of one sentence's `tags`, in order of their ends.
///
/// In [`EntityScheme::StrictIob2`] a tag that does not start with `B`, `I` or
/// `O` (which [`entity_report`] rejects) is read as `O` here.
pub fn extract_entities(tags: &[String], scheme: EntityScheme) -> Vec<Entity> {
    match scheme {
        EntityScheme::Default => default_chunks(tags.iter().map(String::as_str))
            .into_iter()
            .map(|(kind, start, end)| Entity { kind: kind.to_owned(), start, end })
            .collect(),
        EntityScheme::StrictIob2 => strict_iob2_entities(tags),
    }
}

/// Splits a tag the way seqeval's default mode does: (first char, type).
/// An empty tag reads as `O`.
fn default_parts(tag: &str) -> (char, &str) {
    let Some(prefix) = tag.chars().next() else { return ('O', "_") };
    let rest = &tag[prefix.len_utf8()..];
    let kind = rest.split_once('-').map_or(rest, |(_, after)| after);
    (prefix, if kind.is_empty() { "_" } else { kind })
}

/// seqeval's default-mode chunking over a stream of tags (with an `O` read
/// after the last): (type, start, end exclusive) in stream positions.
fn default_chunks<'a>(tags: impl Iterator<Item = &'a str>) -> Vec<(&'a str, usize, usize)> {
    let mut chunks = Vec::new();
    let (mut prev_prefix, mut prev_kind) = ('O', "");
    let mut begin = 0;
    for (i, (prefix, kind)) in tags.map(default_parts).chain(std::iter::once(('O', "_"))).enumerate() {
        let type_changes = prev_kind != kind;
        let ends = matches!(prev_prefix, 'E' | 'S')
            || (matches!(prev_prefix, 'B' | 'I') && matches!(prefix, 'B' | 'S' | 'O'))
            || (!matches!(prev_prefix, 'O' | '.') && type_changes);
        if ends {
            chunks.push((prev_kind, begin, i));
        }
        let starts = matches!(prefix, 'B' | 'S')
            || (matches!(prefix, 'I' | 'E') && matches!(prev_prefix, 'O' | 'E' | 'S'))
            || (!matches!(prefix, 'O' | '.') && type_changes);
        if starts {
            begin = i;
        }
        (prev_prefix, prev_kind) = (prefix, kind);
    }
    chunks
}

/// The prefix and type of a strict-IOB2 tag, or `None` if the prefix is not
/// `B`, `I` or `O`.
fn iob2_parts(tag: &str) -> Option<(char, &str)> {
    let prefix = tag.chars().next().filter(|c| matches!(c, 'B' | 'I' | 'O'))?;
    let kind = tag[1..].trim_matches('-');
    Some((prefix, if kind.is_empty() { "_" } else { kind }))
}

fn strict_iob2_entities(tags: &[String]) -> Vec<Entity> {
    let parts: Vec<(char, &str)> = tags.iter().map(|t| iob2_parts(t).unwrap_or(('O', "_"))).collect();
    let mut entities = Vec::new();
    let mut i = 0;
    while i < parts.len() {
        let (prefix, kind) = parts[i];
        if prefix != 'B' {
            i += 1;
            continue;
        }
        let mut end = i + 1;
        while end < parts.len() && parts[end] == ('I', kind) {
            end += 1;
        }
        entities.push(Entity { kind: kind.to_owned(), start: i, end });
        i = end;
    }
    entities
}

/// seqeval's report: per entity type (sorted), then the averages.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityReport {
    /// Every type of a true or predicted entity, sorted.
    pub types: Vec<String>,
    /// One entry per type, in `types` order.
    pub per_type: Vec<Scores>,
    /// Scores from tp, predicted and true entities pooled over types.
    pub micro_avg: Scores,
    /// Unweighted mean of the per-type scores.
    pub macro_avg: Scores,
    /// Mean of the per-type scores weighted by support.
    pub weighted_avg: Scores,
}

/// The entity-level report for sentences of tags `y_true` and `y_pred`.
///
/// Returns [`Error::InvalidArgument`] when the sentence counts differ, a
/// sentence's lengths differ (naming it), or, in
/// [`EntityScheme::StrictIob2`], a tag does not start with `B`, `I` or `O`.
pub fn entity_report(y_true: &[Vec<String>], y_pred: &[Vec<String>], scheme: EntityScheme) -> Result<EntityReport> {
    if y_true.len() != y_pred.len() {
        return Err(Error::InvalidArgument(format!(
            "entity_report: y_true has {} sentences but y_pred has {}",
            y_true.len(),
            y_pred.len()
        )));
    }
    if let Some(i) = (0..y_true.len()).find(|&i| y_true[i].len() != y_pred[i].len()) {
        return Err(Error::InvalidArgument(format!(
            "entity_report: sentence {i} has {} tags in y_true but {} in y_pred",
            y_true[i].len(),
            y_pred[i].len()
        )));
    }

    let truth = corpus_spans(y_true, "y_true", scheme)?;
    let pred = corpus_spans(y_pred, "y_pred", scheme)?;

    let types: BTreeSet<&String> = truth.keys().chain(pred.keys()).collect();
    let empty = BTreeSet::new();
    let counts: Vec<(usize, usize, usize)> = types
        .iter()
        .map(|t| {
            let (tr, pr) = (truth.get(*t).unwrap_or(&empty), pred.get(*t).unwrap_or(&empty));
            (tr.intersection(pr).count(), pr.len(), tr.len())
        })
        .collect();
    let per_type: Vec<Scores> = counts.iter().map(|&(tp, p, t)| scores(tp, p, t)).collect();
    let pooled = counts.iter().fold((0, 0, 0), |acc, c| (acc.0 + c.0, acc.1 + c.1, acc.2 + c.2));
    let total_true = pooled.2;

    let macro_avg = average(&per_type, None, total_true);
    // seqeval: all 0 when there is no true entity (not scikit-learn's
    // fallback to the plain mean).
    let supports: Vec<usize> = per_type.iter().map(|s| s.support).collect();
    let weighted_avg = if total_true == 0 {
        Scores { precision: 0.0, recall: 0.0, f1: 0.0, support: total_true }
    } else {
        average(&per_type, Some(&supports), total_true)
    };

    Ok(EntityReport {
        types: types.into_iter().cloned().collect(),
        micro_avg: scores(pooled.0, pooled.1, pooled.2),
        macro_avg,
        weighted_avg,
        per_type,
    })
}

/// Every entity of a corpus as (sentence, start, end) per type. In default
/// mode the corpus is one stream (sentence 0, stream positions) with an `O`
/// after each sentence, as seqeval reads it.
fn corpus_spans(corpus: &[Vec<String>], name: &str, scheme: EntityScheme) -> Result<BTreeMap<String, BTreeSet<(usize, usize, usize)>>> {
    let mut out: BTreeMap<String, BTreeSet<(usize, usize, usize)>> = BTreeMap::new();
    match scheme {
        EntityScheme::Default => {
            let stream = corpus.iter().flat_map(|s| s.iter().map(String::as_str).chain(std::iter::once("O")));
            for (kind, start, end) in default_chunks(stream) {
                out.entry(kind.to_owned()).or_default().insert((0, start, end));
            }
        }
        EntityScheme::StrictIob2 => {
            for (s, tags) in corpus.iter().enumerate() {
                if let Some(w) = tags.iter().position(|t| iob2_parts(t).is_none()) {
                    return Err(Error::InvalidArgument(format!(
                        "entity_report: {name} sentence {s}, word {w}: tag {:?} is not IOB2 (strict IOB2 tags start with B, I or O)",
                        tags[w]
                    )));
                }
                for e in strict_iob2_entities(tags) {
                    out.entry(e.kind).or_default().insert((s, e.start, e.end));
                }
            }
        }
    }
    Ok(out)
}

/// seqeval's scores from counts: F1 = 2·P·R / (P + R), 0 when both are 0
/// (not scikit-learn's 2·tp / (true + predicted), which may differ in the
/// last bit).
fn scores(tp: usize, predicted: usize, truth: usize) -> Scores {
    let (p, r) = (divide(tp, predicted), divide(tp, truth));
    let f1 = if p + r == 0.0 { 0.0 } else { 2.0 * p * r / (p + r) };
    Scores { precision: p, recall: r, f1, support: truth }
}

impl EntityReport {
    /// The shape of seqeval's `classification_report(output_dict=True)`: one
    /// object per type (`precision`, `recall`, `f1-score`, `support`), then
    /// `micro avg`, `macro avg`, `weighted avg`. Supports are integers.
    pub fn to_json(&self) -> Value {
        let mut map = per_class_json(&self.types, &self.per_type);
        map.insert("micro avg".into(), scores_json(&self.micro_avg));
        map.insert("macro avg".into(), scores_json(&self.macro_avg));
        map.insert("weighted avg".into(), scores_json(&self.weighted_avg));
        Value::Object(map)
    }

    /// [`to_text_digits`](Self::to_text_digits) with 4 digits.
    pub fn to_text(&self) -> String {
        self.to_text_digits(TEXT_DIGITS)
    }

    /// seqeval's text report, character for character, with `digits`
    /// decimals (its default is 2). With no entity at all (where seqeval
    /// fails) the table has just the average rows.
    pub fn to_text_digits(&self, digits: usize) -> String {
        let averages = [("micro avg", &self.micro_avg), ("macro avg", &self.macro_avg), ("weighted avg", &self.weighted_avg)];
        text_table(&self.types, &self.per_type, None, &averages, digits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    fn spans(s: &str, scheme: EntityScheme) -> Vec<(String, usize, usize)> {
        extract_entities(&tags(s), scheme).into_iter().map(|e| (e.kind, e.start, e.end)).collect()
    }

    fn e(kind: &str, start: usize, end: usize) -> (String, usize, usize) {
        (kind.to_owned(), start, end)
    }

    #[test]
    fn default_mode_is_lenient() {
        let d = EntityScheme::Default;
        assert_eq!(spans("O I-PER I-PER O B-LOC", d), vec![e("PER", 1, 3), e("LOC", 4, 5)]);
        assert_eq!(spans("B-PER I-LOC B-LOC B-LOC", d), vec![e("PER", 0, 1), e("LOC", 1, 2), e("LOC", 2, 3), e("LOC", 3, 4)]);
        assert_eq!(spans("S-PER B-ORG I-ORG E-ORG E-ORG", d), vec![e("PER", 0, 1), e("ORG", 1, 4), e("ORG", 4, 5)]);
        assert_eq!(spans("", d), vec![]);
    }

    #[test]
    fn strict_iob2_needs_a_b() {
        let s = EntityScheme::StrictIob2;
        assert_eq!(spans("O I-PER I-PER O B-LOC", s), vec![e("LOC", 4, 5)]);
        assert_eq!(spans("B-PER I-PER I-LOC B-LOC I-LOC", s), vec![e("PER", 0, 2), e("LOC", 3, 5)]);
        assert_eq!(spans("B-PER E-PER", s), vec![e("PER", 0, 1)]);
    }

    #[test]
    fn mismatches_are_errors_naming_the_sentence() {
        let t = vec![tags("O B-PER"), tags("B-LOC")];
        let p = vec![tags("O B-PER"), tags("B-LOC O")];
        let err = entity_report(&t, &p, EntityScheme::Default).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
        assert!(err.to_string().contains("sentence 1 has 1 tags in y_true but 2"), "{err}");
        let err = entity_report(&t, &p[..1], EntityScheme::Default).unwrap_err();
        assert!(err.to_string().contains("2 sentences") && err.to_string().contains("has 1"), "{err}");
        let p = vec![tags("O B-PER"), tags("S-LOC")];
        let err = entity_report(&t, &p, EntityScheme::StrictIob2).unwrap_err();
        assert!(err.to_string().contains("y_pred sentence 1, word 0: tag \"S-LOC\""), "{err}");
        assert!(entity_report(&t, &p, EntityScheme::Default).is_ok());
    }

    #[test]
    fn no_entities_gives_zeros_not_nan() {
        let t = vec![tags("O O"), vec![]];
        let r = entity_report(&t, &t, EntityScheme::Default).unwrap();
        assert!(r.types.is_empty());
        let zero = Scores { precision: 0.0, recall: 0.0, f1: 0.0, support: 0 };
        assert_eq!([r.micro_avg, r.macro_avg, r.weighted_avg], [zero; 3]);
        assert!(r.to_text().contains("weighted avg"));
        let r = entity_report(&[], &[], EntityScheme::StrictIob2).unwrap();
        assert!(r.per_type.is_empty());
    }
}

//! `--freeze`: parameters that keep their pre-trained values. A frozen
//! parameter enters the tape as a constant, so no gradient is computed for it
//! (nor for anything only it depends on), and the optimizer keeps no state for it.

use crate::error::{Error, Result};
use crate::model::Family;

/// One part of a `--freeze` value.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Embeddings,
    /// Encoder layers `first..=last`.
    Layers(usize, usize),
    /// Embeddings, every layer and the pooler: only the classifier trains.
    Encoder,
}

/// A parsed `--freeze` value: `embeddings`, `layers:0-3` (or `layers:5`),
/// `encoder`, or several of these joined by `,`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FreezeSpec {
    parts: Vec<Part>,
}

impl FreezeSpec {
    pub fn parse(spec: &str) -> Result<FreezeSpec> {
        let bad = |part: &str, why: &str| {
            Error::InvalidArgument(format!("--freeze `{part}`: {why} (use embeddings, layers:0-3, layers:5 or encoder, joined by `,`)"))
        };
        let mut parts = Vec::new();
        for part in spec.split(',').map(str::trim) {
            parts.push(match part {
                "embeddings" => Part::Embeddings,
                "encoder" => Part::Encoder,
                _ => {
                    let Some(range) = part.strip_prefix("layers:") else { return Err(bad(part, "unknown part")) };
                    let (first, last) = range.split_once('-').unwrap_or((range, range));
                    let (Ok(first), Ok(last)) = (first.trim().parse::<usize>(), last.trim().parse::<usize>()) else {
                        return Err(bad(part, "the layers must be 0-based numbers"));
                    };
                    if first > last {
                        return Err(bad(part, "the range is empty"));
                    }
                    Part::Layers(first, last)
                }
            });
        }
        Ok(FreezeSpec { parts })
    }

    /// The value as a user writes it: `embeddings,layers:0-3`.
    pub fn text(&self) -> String {
        let part = |p: &Part| match p {
            Part::Embeddings => "embeddings".to_string(),
            Part::Encoder => "encoder".to_string(),
            Part::Layers(first, last) if first == last => format!("layers:{first}"),
            Part::Layers(first, last) => format!("layers:{first}-{last}"),
        };
        self.parts.iter().map(part).collect::<Vec<_>>().join(",")
    }

    /// For each parameter name, whether it trains. A layer range beyond the
    /// model's layers is an error, so a typo never freezes nothing silently.
    /// `family` says whether `bert.pooler` is the encoder's (BERT) or the head's.
    pub fn trainable(&self, names: &[String], num_layers: usize, family: Family) -> Result<Vec<bool>> {
        for part in &self.parts {
            if let Part::Layers(_, last) = part
                && *last >= num_layers
            {
                return Err(Error::InvalidArgument(format!(
                    "--freeze layers:..{last}: the model has {num_layers} layers (0 to {})",
                    num_layers.saturating_sub(1)
                )));
            }
        }
        Ok(names.iter().map(|name| !self.parts.iter().any(|p| freezes(p, name, family))).collect())
    }
}

fn freezes(part: &Part, name: &str, family: Family) -> bool {
    match part {
        Part::Embeddings => name.starts_with("bert.embeddings."),
        Part::Encoder => name.starts_with("bert.") && (family.pooler_is_pretrained() || !name.starts_with("bert.pooler.")),
        Part::Layers(first, last) => name
            .strip_prefix("bert.encoder.layer.")
            .and_then(|rest| rest.split('.').next())
            .and_then(|i| i.parse::<usize>().ok())
            .is_some_and(|i| (*first..=*last).contains(&i)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        let mut n = vec!["bert.embeddings.word_embeddings.weight".to_string(), "bert.embeddings.LayerNorm.weight".into()];
        for i in 0..12 {
            n.push(format!("bert.encoder.layer.{i}.attention.self.query.weight"));
        }
        n.extend(["bert.pooler.dense.weight".into(), "classifier.weight".into(), "classifier.bias".into()]);
        n
    }

    #[test]
    fn parts_select_the_right_parameters() {
        let n = names();
        let t = FreezeSpec::parse("embeddings").unwrap().trainable(&n, 12, Family::Bert).unwrap();
        assert_eq!(t.iter().filter(|x| !**x).count(), 2);
        let t = FreezeSpec::parse("layers:0-3").unwrap().trainable(&n, 12, Family::Bert).unwrap();
        let frozen: Vec<&String> = n.iter().zip(&t).filter(|(_, t)| !**t).map(|(n, _)| n).collect();
        assert_eq!(frozen.len(), 4);
        assert!(frozen.iter().all(|n| ["0", "1", "2", "3"].iter().any(|i| n.contains(&format!("layer.{i}.")))));
        // layer.1 must not match layer.10 or layer.11.
        let t = FreezeSpec::parse("layers:1").unwrap().trainable(&n, 12, Family::Bert).unwrap();
        assert_eq!(t.iter().filter(|x| !**x).count(), 1);
        let t = FreezeSpec::parse("encoder").unwrap().trainable(&n, 12, Family::Bert).unwrap();
        let trained: Vec<&String> = n.iter().zip(&t).filter(|(_, t)| **t).map(|(n, _)| n).collect();
        assert_eq!(trained, ["classifier.weight", "classifier.bias"]);
        // RoBERTa's `bert.pooler` slot is its head's classifier.dense: it trains with the head.
        let t = FreezeSpec::parse("encoder").unwrap().trainable(&n, 12, Family::Roberta).unwrap();
        let trained: Vec<&String> = n.iter().zip(&t).filter(|(_, t)| **t).map(|(n, _)| n).collect();
        assert_eq!(trained, ["bert.pooler.dense.weight", "classifier.weight", "classifier.bias"]);
        let t = FreezeSpec::parse("embeddings, layers:10-11").unwrap().trainable(&n, 12, Family::Bert).unwrap();
        assert_eq!(t.iter().filter(|x| !**x).count(), 4);
    }

    #[test]
    fn bad_specs_are_clear_errors() {
        for bad in ["pooler", "layers:3-1", "layers:a-b", "layers:"] {
            let e = FreezeSpec::parse(bad).unwrap_err().to_string();
            assert!(e.contains("--freeze"), "{bad}: {e}");
        }
        let e = FreezeSpec::parse("layers:4-12").unwrap().trainable(&names(), 12, Family::Bert).unwrap_err().to_string();
        assert!(e.contains("12 layers"), "{e}");
    }
}

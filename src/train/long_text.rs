//! `--long-text`, `--chunk-stride`, `--max-chunks`, `--aggregate`: how a
//! sequence-level input longer than the model's window is read. Shared by
//! `train` (which saves the setting in `berth-inference.json`) and the
//! commands that predict, whose flags override what the model saved.

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::settings::{Aggregate, ChunkSettings, Truncation};

/// What a chunked training run takes its loss on (`--chunk-loss`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChunkLoss {
    /// Each window is an example carrying its document's label (the simple baseline).
    #[default]
    Window,
    /// The loss is taken on each document's aggregated logits, so that with
    /// `max` the model learns which window carries the label; a batch holds
    /// `--batch-size` documents with all their windows.
    Document,
}

impl ChunkLoss {
    pub fn parse(name: &str) -> Result<ChunkLoss> {
        match name {
            "window" => Ok(ChunkLoss::Window),
            "document" => Ok(ChunkLoss::Document),
            other => Err(Error::InvalidArgument(format!("--chunk-loss `{other}`: use window or document"))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ChunkLoss::Window => "window",
            ChunkLoss::Document => "document",
        }
    }
}

pub use crate::data::chunks::DEFAULT_CHUNK_STRIDE;

#[derive(Args, Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LongTextArgs {
    /// truncate (keep the first max-length tokens) or chunk (read the whole
    /// input in overlapping windows and combine their logits) (default: as
    /// the model was trained, else truncate).
    #[arg(long, value_name = "truncate|chunk")]
    pub long_text: Option<String>,
    /// With chunk: tokens shared by consecutive windows (default: as saved, else 32).
    #[arg(long, value_name = "N")]
    pub chunk_stride: Option<usize>,
    /// With chunk: at most N windows per input; the rest is not read, and the
    /// output says how many windows were dropped (default: no limit).
    #[arg(long, value_name = "N")]
    pub max_chunks: Option<usize>,
    /// With chunk: mean, max or first of the windows' logits (default: as saved, else mean).
    #[arg(long, value_name = "mean|max|first")]
    pub aggregate: Option<String>,
    /// With truncate: right keeps an over-long input's first tokens, left
    /// its last (TEI's name; default: as saved, else right).
    #[arg(long, value_name = "left|right")]
    pub truncation_direction: Option<String>,
}

impl LongTextArgs {
    /// Each value from self, else from `fallback` (flags over a file's values).
    pub fn or(&self, fallback: &LongTextArgs) -> LongTextArgs {
        LongTextArgs {
            long_text: self.long_text.clone().or_else(|| fallback.long_text.clone()),
            chunk_stride: self.chunk_stride.or(fallback.chunk_stride),
            max_chunks: self.max_chunks.or(fallback.max_chunks),
            aggregate: self.aggregate.clone().or_else(|| fallback.aggregate.clone()),
            truncation_direction: self.truncation_direction.clone().or_else(|| fallback.truncation_direction.clone()),
        }
    }

    /// Which end a truncated input is cut from, given what the model saved;
    /// with where it came from. Chunking cuts nothing, so the flag is refused with it.
    pub fn direction(&self, saved: Option<Truncation>, chunked: bool) -> Result<(Truncation, &'static str)> {
        let Some(text) = &self.truncation_direction else {
            return Ok(saved.map_or((Truncation::Right, "default"), |d| (d, "berth-inference.json")));
        };
        let direction = match text.as_str() {
            "right" | "Right" => Truncation::Right,
            "left" | "Left" => Truncation::Left,
            other => return Err(Error::InvalidArgument(format!("--truncation-direction `{other}`: use left or right"))),
        };
        if chunked {
            return Err(Error::InvalidArgument(format!(
                "--truncation-direction {text} applies to --long-text truncate: chunking reads the whole input"
            )));
        }
        Ok((direction, "flag"))
    }

    /// The setting in force, given what the model saved; with where it came from.
    pub fn resolve(&self, saved: Option<ChunkSettings>) -> Result<(Option<ChunkSettings>, &'static str)> {
        let chunk_flags: Vec<&str> = [
            self.chunk_stride.map(|_| "--chunk-stride"),
            self.max_chunks.map(|_| "--max-chunks"),
            self.aggregate.as_ref().map(|_| "--aggregate"),
        ]
        .into_iter()
        .flatten()
        .collect();
        let chunk = match self.long_text.as_deref() {
            Some("chunk") => true,
            Some("truncate") => {
                if let Some(flag) = chunk_flags.first() {
                    return Err(Error::InvalidArgument(format!("{flag} applies to --long-text chunk, not truncate")));
                }
                return Ok((None, "flag"));
            }
            Some(other) => return Err(Error::InvalidArgument(format!("--long-text `{other}`: use truncate or chunk"))),
            None if saved.is_some() => true,
            None => {
                if let Some(flag) = chunk_flags.first() {
                    return Err(Error::InvalidArgument(format!(
                        "{flag} needs --long-text chunk (the model was not trained with chunking)"
                    )));
                }
                return Ok((None, "default"));
            }
        };
        debug_assert!(chunk);
        let aggregate = match &self.aggregate {
            Some(name) => Aggregate::parse(name)?,
            None => saved.map_or(Aggregate::Mean, |s| s.aggregate),
        };
        let settings = ChunkSettings {
            stride: self.chunk_stride.or(saved.map(|s| s.stride)).unwrap_or(DEFAULT_CHUNK_STRIDE),
            max_chunks: self.max_chunks.or(saved.and_then(|s| s.max_chunks)),
            aggregate,
        };
        if settings.max_chunks == Some(0) {
            return Err(Error::InvalidArgument("--max-chunks 0: a document needs at least one window".into()));
        }
        let source = if self.long_text.is_some() || !chunk_flags.is_empty() { "flag" } else { "berth-inference.json" };
        Ok((Some(settings), source))
    }
}

/// `left` or `right`, as the flag spells it.
pub fn direction_name(direction: Truncation) -> &'static str {
    if direction == Truncation::Left { "left (keep the last tokens)" } else { "right (keep the first tokens)" }
}

/// The setting as the configuration printout shows it.
pub fn describe(setting: Option<ChunkSettings>) -> String {
    match setting {
        None => "truncate".into(),
        Some(c) => format!(
            "chunk (stride {}, {}, aggregate {})",
            c.stride,
            c.max_chunks.map_or("no window limit".to_string(), |m| format!("at most {m} windows")),
            c.aggregate.name()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(long_text: Option<&str>, stride: Option<usize>, aggregate: Option<&str>) -> LongTextArgs {
        LongTextArgs {
            long_text: long_text.map(str::to_owned),
            chunk_stride: stride,
            max_chunks: None,
            aggregate: aggregate.map(str::to_owned),
            truncation_direction: None,
        }
    }

    #[test]
    fn the_direction_comes_from_the_flag_else_the_saved_setting() {
        let plain = args(None, None, None);
        assert_eq!(plain.direction(None, false).unwrap(), (Truncation::Right, "default"));
        assert_eq!(plain.direction(Some(Truncation::Left), false).unwrap(), (Truncation::Left, "berth-inference.json"));
        let right = LongTextArgs { truncation_direction: Some("Right".into()), ..plain.clone() };
        assert_eq!(right.direction(Some(Truncation::Left), false).unwrap(), (Truncation::Right, "flag"));
        assert!(right.direction(None, true).unwrap_err().to_string().contains("applies to --long-text truncate"));
    }

    #[test]
    fn flags_override_the_saved_setting_field_by_field() {
        let saved = ChunkSettings { stride: 16, max_chunks: Some(4), aggregate: Aggregate::Max };
        let (got, source) = args(None, None, Some("first")).resolve(Some(saved)).unwrap();
        assert_eq!(got, Some(ChunkSettings { aggregate: Aggregate::First, ..saved }));
        assert_eq!(source, "flag");
        assert_eq!(args(None, None, None).resolve(Some(saved)).unwrap(), (Some(saved), "berth-inference.json"));
        assert_eq!(args(Some("truncate"), None, None).resolve(Some(saved)).unwrap().0, None);
        let fresh = args(Some("chunk"), None, None).resolve(None).unwrap().0.unwrap();
        assert_eq!((fresh.stride, fresh.aggregate, fresh.max_chunks), (DEFAULT_CHUNK_STRIDE, Aggregate::Mean, None));
    }

    #[test]
    fn chunk_flags_without_chunking_are_errors_naming_the_flag() {
        let e = args(None, Some(8), None).resolve(None).unwrap_err().to_string();
        assert!(e.contains("--chunk-stride needs --long-text chunk"), "{e}");
        let e = args(Some("truncate"), None, Some("max")).resolve(None).unwrap_err().to_string();
        assert!(e.contains("--aggregate applies to --long-text chunk"), "{e}");
        let e = args(Some("chunked"), None, None).resolve(None).unwrap_err().to_string();
        assert!(e.contains("--long-text `chunked`"), "{e}");
        let e = args(Some("chunk"), None, Some("median")).resolve(None).unwrap_err().to_string();
        assert!(e.contains("--aggregate `median`"), "{e}");
        let mut zero = args(Some("chunk"), None, None);
        zero.max_chunks = Some(0);
        assert!(zero.resolve(None).unwrap_err().to_string().contains("--max-chunks 0"));
    }
}

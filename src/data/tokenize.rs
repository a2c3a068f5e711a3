//! Tokenisation with the `tokenizers` crate: `tokenizer.json` when the model
//! has one, otherwise a BERT WordPiece tokenizer built from `vocab.txt`,
//! lower-casing as `tokenizer_config.json`'s `do_lower_case` says (default
//! true, as transformers' BertTokenizer).
//!
//! Any padding or truncation stored in `tokenizer.json` is switched off
//! (all-MiniLM-L6-v2's pads every input to 128): berth pads per batch and
//! truncates to its own `max_length`, longest-first for pairs.

use std::path::{Path, PathBuf};

use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{EncodeInput, PostProcessor, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use super::Batch;
use crate::error::{Error, Result};

/// One tokenised example.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    /// Token ids, with [CLS] first and [SEP] after each text.
    pub ids: Vec<u32>,
    /// 0 for the first text's tokens, 1 for the pair's.
    pub type_ids: Vec<u32>,
    /// For each token, the index of the word it came from (None for special tokens).
    pub word_ids: Vec<Option<u32>>,
}

/// Where an input over the maximum length is cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Truncation {
    /// Keep the first tokens (what [`BerthTokenizer::encode`] does unless told otherwise).
    Right,
    /// Keep the last tokens.
    Left,
    /// Keep every token: the encoding may be longer than the maximum length,
    /// so the caller must check it before a forward pass.
    None,
}

pub struct BerthTokenizer {
    inner: Tokenizer,
    /// The same tokenizer cutting from the left, and not cutting at all, for
    /// callers that choose per input (`berth serve`'s `truncation_direction`
    /// and `truncate`); built once at load, as a request cannot reconfigure
    /// a tokenizer that other threads share.
    left: Tokenizer,
    whole: Tokenizer,
    /// Set by [`BerthTokenizer::enable_windows`]: tokens shared by consecutive windows.
    window_stride: Option<usize>,
    /// Which end [`BerthTokenizer::encode`] and `encode_many` cut (`--truncation-direction`).
    direction: Truncation,
    source: PathBuf,
    max_length: usize,
    pad_id: u32,
}

/// One input's windows, and how many more `max_chunks` dropped.
pub struct Windows {
    pub windows: Vec<Encoded>,
    pub dropped: usize,
}

fn tok_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Tokenizer { path: path.into(), message: e.to_string() }
}

impl BerthTokenizer {
    /// Loads the tokenizer of a model folder.
    pub fn from_dir(dir: &Path, max_length: usize) -> Result<BerthTokenizer> {
        let json = dir.join("tokenizer.json");
        let vocab = dir.join("vocab.txt");
        if json.exists() {
            let inner = Tokenizer::from_file(&json).map_err(|e| tok_err(&json, e))?;
            Self::configure(inner, json, max_length)
        } else if vocab.exists() {
            let lowercase = vocab_lowercase(dir)?;
            Self::from_vocab(&vocab, max_length, lowercase)
        } else {
            Err(tok_err(dir, "neither tokenizer.json nor vocab.txt is present"))
        }
    }

    /// BERT's WordPiece pipeline from a vocabulary file.
    pub fn from_vocab(vocab: &Path, max_length: usize, lowercase: bool) -> Result<BerthTokenizer> {
        let path_str = vocab.to_str().ok_or_else(|| tok_err(vocab, "path is not UTF-8"))?;
        let model = WordPiece::from_file(path_str).unk_token("[UNK]".into()).build().map_err(|e| tok_err(vocab, e))?;
        let id = |token: &str| {
            tokenizers::Model::token_to_id(&model, token).ok_or_else(|| tok_err(vocab, format!("the vocabulary has no {token} token")))
        };
        let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
        let mut inner = Tokenizer::new(model);
        inner.with_normalizer(Some(BertNormalizer::new(true, true, None, lowercase))).map_err(|e| tok_err(vocab, e))?;
        inner.with_pre_tokenizer(Some(BertPreTokenizer));
        inner.with_post_processor(Some(BertProcessing::new(("[SEP]".into(), sep), ("[CLS]".into(), cls))));
        Self::configure(inner, vocab.into(), max_length)
    }

    fn configure(mut inner: Tokenizer, source: PathBuf, max_length: usize) -> Result<BerthTokenizer> {
        if max_length < 4 {
            return Err(Error::InvalidArgument(format!("max_length {max_length} is too small (at least 4)")));
        }
        inner.with_padding(None);
        let mut whole = inner.clone();
        whole.with_truncation(None).map_err(|e| tok_err(&source, e))?;
        let cut = |direction| TruncationParams { direction, max_length, strategy: TruncationStrategy::LongestFirst, stride: 0 };
        let mut left = inner.clone();
        left.with_truncation(Some(cut(TruncationDirection::Left))).map_err(|e| tok_err(&source, e))?;
        inner.with_truncation(Some(cut(TruncationDirection::Right))).map_err(|e| tok_err(&source, e))?;
        // WordPiece's `[PAD]`, or the byte-level BPE and Unigram `<pad>` (RoBERTa, XLM-R).
        let pad_id = ["[PAD]", "<pad>"].iter().find_map(|t| inner.token_to_id(t)).unwrap_or(0);
        Ok(BerthTokenizer { inner, left, whole, window_stride: None, direction: Truncation::Right, source, max_length, pad_id })
    }

    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Refuses a tokenizer whose ids reach past the model's `vocab_size`
    /// rows: it belongs to another model, and its first out-of-range id
    /// would otherwise fail deep inside a batch.
    pub fn check_vocab(&self, vocab_size: usize) -> Result<()> {
        let tokens = self.inner.get_vocab_size(true);
        if tokens > vocab_size {
            return Err(tok_err(
                &self.source,
                format!("the tokenizer has {tokens} tokens but the model's vocab_size is {vocab_size}: it belongs to another model"),
            ));
        }
        Ok(())
    }

    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    /// Tokenises a text, or a text pair, adding [CLS] and [SEP].
    pub fn encode(&self, text: &str, pair: Option<&str>) -> Result<Encoded> {
        self.encode_with(text, pair, self.direction)
    }

    /// Which end `encode` and `encode_many` cut an over-long input from:
    /// `Right` keeps the first tokens (the default), `Left` the last.
    pub fn set_truncation_direction(&mut self, direction: Truncation) -> Result<()> {
        if direction == Truncation::None {
            return Err(Error::InvalidArgument("a truncation direction is left or right".into()));
        }
        self.direction = direction;
        Ok(())
    }

    pub fn truncation_direction(&self) -> Truncation {
        self.direction
    }

    /// As [`BerthTokenizer::encode`], cutting an over-long input where
    /// `truncation` says (longest-first for pairs), or not at all.
    pub fn encode_with(&self, text: &str, pair: Option<&str>, truncation: Truncation) -> Result<Encoded> {
        let input: EncodeInput = match pair {
            Some(p) => (text, p).into(),
            None => text.into(),
        };
        let tokenizer = match truncation {
            Truncation::Right => &self.inner,
            Truncation::Left => &self.left,
            Truncation::None => &self.whole,
        };
        let e = tokenizer.encode(input, true).map_err(|e| tok_err(&self.source, e))?;
        Ok(Encoded { ids: e.get_ids().to_vec(), type_ids: e.get_type_ids().to_vec(), word_ids: e.get_word_ids().to_vec() })
    }

    /// Prepares [`BerthTokenizer::encode_windows`]: windows of at most
    /// `max_length` tokens, each with its own special tokens, consecutive
    /// windows sharing `stride` word pieces, as transformers' tokenizers cut
    /// with `return_overflowing_tokens=True, stride=stride` (pairs with
    /// `truncation="only_second"`).
    pub fn enable_windows(&mut self, stride: usize) -> Result<()> {
        let room = self.max_length.saturating_sub(self.special_tokens(false));
        if stride >= room {
            return Err(Error::InvalidArgument(format!(
                "--chunk-stride {stride} must be smaller than a window's {room} text tokens (max length {} less {} special tokens)",
                self.max_length,
                self.special_tokens(false)
            )));
        }
        self.window_stride = Some(stride);
        Ok(())
    }

    /// How many special tokens the post-processor adds to a text or a pair.
    fn special_tokens(&self, pair: bool) -> usize {
        self.inner.get_post_processor().map_or(0, |p| p.added_tokens(pair))
    }

    /// The windows of one input (see [`BerthTokenizer::enable_windows`]),
    /// at most `max_chunks` of them. An input that fits is one window, the
    /// same as [`BerthTokenizer::encode`] gives.
    ///
    /// The word pieces are cut here, and the special tokens added to each
    /// window afterwards, rather than by the tokenizer's own truncation: the
    /// `tokenizers` crate (0.23.2) shortens a long input before it makes the
    /// overflowing windows, and loses all but the last of them.
    pub fn encode_windows(&self, text: &str, pair: Option<&str>, max_chunks: Option<usize>) -> Result<Windows> {
        let stride = self.window_stride.ok_or_else(|| Error::InvalidArgument("encode_windows before enable_windows".into()))?;
        self.encode_windows_with(text, pair, stride, max_chunks)
    }

    /// Text tokens a single text's window holds: the length less the special tokens.
    pub fn window_room(&self) -> usize {
        self.max_length.saturating_sub(self.special_tokens(false))
    }

    /// As [`BerthTokenizer::encode_windows`], with a stride of the caller's
    /// (the server's per-request chunking); the stride is checked here.
    pub fn encode_windows_with(&self, text: &str, pair: Option<&str>, stride: usize, max_chunks: Option<usize>) -> Result<Windows> {
        if stride >= self.window_room() {
            return Err(Error::InvalidArgument(format!(
                "a chunk stride of {stride} must be smaller than a window's {} text tokens",
                self.window_room()
            )));
        }
        let err = |e| tok_err(&self.source, e);
        let first = self.whole.encode(text, false).map_err(err)?;
        let (mut windowed, fixed) = match pair {
            None => (first, None),
            Some(p) => (self.whole.encode(p, false).map_err(err)?, Some(first)),
        };
        let room = match &fixed {
            None => self.max_length - self.special_tokens(false),
            Some(first) => {
                // The first text is in every window: it must leave room for more of the second than the stride.
                let room = self.max_length.saturating_sub(self.special_tokens(true) + first.len());
                if room <= stride {
                    return Err(Error::InvalidArgument(format!(
                        "a pair's first text has {} tokens, which leaves no window of max length {} for its second text \
                         with a stride of {stride}: shorten the first text or raise --max-length",
                        first.len(),
                        self.max_length
                    )));
                }
                room
            }
        };
        windowed.truncate(room, stride, TruncationDirection::Right);
        let rest = windowed.take_overflowing();
        let mut windows = Vec::with_capacity(1 + rest.len());
        for piece in std::iter::once(windowed).chain(rest) {
            let e = match &fixed {
                None => self.whole.post_process(piece, None, true),
                Some(first) => self.whole.post_process(first.clone(), Some(piece), true),
            }
            .map_err(err)?;
            windows.push(Encoded { ids: e.get_ids().to_vec(), type_ids: e.get_type_ids().to_vec(), word_ids: e.get_word_ids().to_vec() });
        }
        let keep = max_chunks.unwrap_or(usize::MAX).min(windows.len());
        let dropped = windows.len() - keep;
        windows.truncate(keep);
        Ok(Windows { windows, dropped })
    }

    /// Tokenises many examples in parallel.
    pub fn encode_many(&self, texts: &[(String, Option<String>)]) -> Result<Vec<Encoded>> {
        let inputs: Vec<EncodeInput> = texts
            .iter()
            .map(|(t, p)| match p {
                Some(p) => (t.as_str(), p.as_str()).into(),
                None => t.as_str().into(),
            })
            .collect();
        let tokenizer = if self.direction == Truncation::Left { &self.left } else { &self.inner };
        let encodings = tokenizer.encode_batch(inputs, true).map_err(|e| tok_err(&self.source, e))?;
        Ok(encodings
            .into_iter()
            .map(|e| Encoded { ids: e.get_ids().to_vec(), type_ids: e.get_type_ids().to_vec(), word_ids: e.get_word_ids().to_vec() })
            .collect())
    }

    /// Tokenises pre-split words (token tasks); word_ids index `words`.
    pub fn encode_words(&self, words: &[String]) -> Result<Encoded> {
        let input: EncodeInput = tokenizers::InputSequence::from(words.to_vec()).into();
        let e = self.inner.encode(input, true).map_err(|e| tok_err(&self.source, e))?;
        Ok(Encoded { ids: e.get_ids().to_vec(), type_ids: e.get_type_ids().to_vec(), word_ids: e.get_word_ids().to_vec() })
    }
}

/// Whether a model folder without `tokenizer.json` lower-cases its text:
/// `do_lower_case` in `tokenizer_config.json`, else true (the default of
/// transformers' BertTokenizer). A cased model read as uncased would map
/// most capitalised words to other ids, silently.
fn vocab_lowercase(dir: &Path) -> Result<bool> {
    let path = dir.join("tokenizer_config.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(Error::io(path, e)),
    };
    let config: serde_json::Value = serde_json::from_str(&text).map_err(|e| tok_err(&path, e))?;
    match config.get("do_lower_case") {
        None | Some(serde_json::Value::Null) => Ok(true),
        Some(serde_json::Value::Bool(b)) => Ok(*b),
        Some(other) => Err(tok_err(&path, format!("do_lower_case must be true or false, found {other}"))),
    }
}

/// Row indices cut into batches of at most `batch_size`, longest rows first
/// (ties in index order), so each batch pads little; for no-grad passes,
/// whose results go back to input order.
pub fn longest_first_batches(lengths: &[usize], batch_size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    order.chunks(batch_size.max(1)).map(<[usize]>::to_vec).collect()
}

/// Pads encodings to the longest in the group (dynamic padding), on the right.
pub fn pad_batch(encodings: &[&Encoded], pad_id: u32) -> Batch {
    let b = encodings.len();
    let t = encodings.iter().map(|e| e.ids.len()).max().unwrap_or(0);
    let mut batch =
        Batch { batch_size: b, seq_len: t, input_ids: vec![pad_id; b * t], token_type_ids: vec![0; b * t], attention_mask: vec![0; b * t] };
    for (i, e) in encodings.iter().enumerate() {
        let n = e.ids.len();
        batch.input_ids[i * t..i * t + n].copy_from_slice(&e.ids);
        batch.token_type_ids[i * t..i * t + n].copy_from_slice(&e.type_ids);
        batch.attention_mask[i * t..i * t + n].fill(1);
    }
    batch
}

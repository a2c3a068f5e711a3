//! Token classification on word pieces: word labels spread onto sub-word
//! tokens for training, token predictions gathered back to words, and long
//! sentences planned as overlapping windows of whole words.
//!
//! Word ids come from [`crate::data::BerthTokenizer::encode_words`]: one per
//! token, `None` for [CLS], [SEP] and padding, and the pieces of a word are
//! consecutive. A token is the *first* piece of its word when the token before
//! it belongs to another word (or is special), as in Hugging Face's
//! `run_ner` example.

use std::fmt;
use std::str::FromStr;

use crate::data::tokenize::BerthTokenizer;
use crate::error::{Error, Result};

/// The label of tokens that the loss and the metrics skip (PyTorch's
/// `CrossEntropyLoss` default `ignore_index`).
pub const IGNORE_INDEX: i64 = -100;

/// Which sub-word tokens of a word carry its label in training.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alignment {
    /// Only the first piece of each word; the other pieces get [`IGNORE_INDEX`].
    First,
    /// Every piece; pieces after the first get the label's continuation
    /// (`B-X` becomes `I-X`, see [`continuation_ids`]).
    All,
}

impl Alignment {
    /// Parses `first` or `all`, in any case.
    pub fn parse(s: &str) -> Result<Alignment> {
        match s.trim().to_ascii_lowercase().as_str() {
            "first" => Ok(Alignment::First),
            "all" => Ok(Alignment::All),
            _ => Err(Error::InvalidArgument(format!(
                "unknown label alignment `{s}`; expected `first` (label the first word piece of each word) or `all` (label every piece)"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Alignment::First => "first",
            Alignment::All => "all",
        }
    }
}

impl fmt::Display for Alignment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Alignment {
    type Err = Error;
    fn from_str(s: &str) -> Result<Alignment> {
        Alignment::parse(s)
    }
}

/// For each label id, the id that a continuation piece (not the first piece
/// of its word) gets under [`Alignment::All`]: `B-X` maps to `I-X` when the
/// set holds `I-X`, and every other label (`I-X`, `O`, a `B-X` without `I-X`,
/// labels of other schemes) maps to itself.
pub fn continuation_ids(labels: &[String]) -> Vec<usize> {
    labels
        .iter()
        .enumerate()
        .map(|(id, label)| {
            label
                .strip_prefix("B-")
                .and_then(|entity| {
                    let inside = format!("I-{entity}");
                    labels.iter().position(|l| *l == inside)
                })
                .unwrap_or(id)
        })
        .collect()
}

/// The training label of each token.
///
/// Special tokens get [`IGNORE_INDEX`]. Under [`Alignment::First`] the first
/// piece of each word gets the word's label and the other pieces
/// [`IGNORE_INDEX`]; under [`Alignment::All`] the first piece gets the word's
/// label and the other pieces `continuation[label]`. A word id with no entry
/// in `word_labels` gets [`IGNORE_INDEX`], and a label with no entry in
/// `continuation` continues as itself.
pub fn align_labels(word_ids: &[Option<u32>], word_labels: &[usize], alignment: Alignment, continuation: &[usize]) -> Vec<i64> {
    let mut previous = None;
    word_ids
        .iter()
        .map(|&word| {
            let first = word != previous;
            previous = word;
            let Some(label) = word.and_then(|w| word_labels.get(w as usize).copied()) else { return IGNORE_INDEX };
            match (first, alignment) {
                (true, _) => label as i64,
                (false, Alignment::First) => IGNORE_INDEX,
                (false, Alignment::All) => continuation.get(label).copied().unwrap_or(label) as i64,
            }
        })
        .collect()
}

/// The prediction of each of `n_words` words: that of its first piece, or
/// `None` for a word with no token (truncated away, or one that the tokenizer
/// turns into nothing). Tokens beyond `token_predictions` and word ids of
/// `n_words` or more are ignored.
pub fn word_predictions(word_ids: &[Option<u32>], token_predictions: &[usize], n_words: usize) -> Vec<Option<usize>> {
    let mut words = vec![None; n_words];
    for (&word, &prediction) in word_ids.iter().zip(token_predictions) {
        if let Some(slot) = word.and_then(|w| words.get_mut(w as usize))
            && slot.is_none()
        {
            *slot = Some(prediction);
        }
    }
    words
}

/// The number of tokens of each of `n_words` words in an encoding. Only
/// meaningful for an encoding that was not truncated; see
/// [`word_piece_counts`] for a count that is safe for long sentences.
pub fn piece_counts(word_ids: &[Option<u32>], n_words: usize) -> Vec<usize> {
    let mut counts = vec![0; n_words];
    for w in word_ids.iter().flatten() {
        if let Some(count) = counts.get_mut(*w as usize) {
            *count += 1;
        }
    }
    counts
}

/// The number of word pieces of each word, each word tokenised on its own
/// without special tokens (the tokenizers of BERT-style models handle
/// pre-split words one by one, so the count is the one the word gets inside
/// its sentence). A word of more than `max_length` pieces is counted as
/// `max_length`, which still exceeds a window's capacity of `max_length - 2`,
/// so [`plan_windows`] still gives it a window of its own.
pub fn word_piece_counts(tokenizer: &BerthTokenizer, words: &[String]) -> Result<Vec<usize>> {
    let inputs: Vec<&str> = words.iter().map(String::as_str).collect();
    let encodings = tokenizer
        .inner()
        .encode_batch(inputs, false)
        .map_err(|e| Error::Tokenizer { path: "word pieces".into(), message: e.to_string() })?;
    Ok(encodings.iter().map(|e| e.get_ids().len()).collect())
}

/// A window of a sentence: the words `[start, end)` are encoded together, and
/// the predictions of `[keep_start, keep_end)` are the ones kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    pub start: usize,
    pub end: usize,
    pub keep_start: usize,
    pub keep_end: usize,
}

/// Splits a sentence into windows of whole words whose pieces fit in
/// `capacity` (`max_length - 2`, for [CLS] and [SEP]), so that no word of a
/// long sentence is silently truncated away.
///
/// - A sentence that fits (and any sentence of one word) is one window owning
///   every word; zero words give no window.
/// - Each window takes as many words as fit, from its start.
/// - **Stride**: the next window starts at the earliest word after the start
///   of the previous one such that the words from there to the previous
///   window's end hold at most `capacity / 2` pieces, and at most
///   `capacity - p` where `p` is the pieces of the first word not yet covered
///   (so that word fits in the new window). Consecutive windows thus overlap
///   by up to half a window of pieces, the stride is about half a window, and
///   every window reaches at least one word further than the one before.
/// - **Ownership**: the words two consecutive windows share are split at
///   their midpoint: the earlier window owns the first `overlap / 2` of them
///   (rounded down), the later window the rest, so each word is decided by
///   the window where it has the most context on both sides. The owned
///   ranges partition `0..n_words`; a window that would own nothing is
///   dropped.
/// - A word with more pieces than `capacity` gets a window of its own, shared
///   with no other; the tokenizer truncates its pieces, but its first piece
///   (the one that carries its label and its prediction) is kept.
pub fn plan_windows(pieces_per_word: &[usize], capacity: usize) -> Vec<Window> {
    let n = pieces_per_word.len();
    if n == 0 {
        return Vec::new();
    }
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let mut start = 0;
    loop {
        // As many whole words as fit, and at least one.
        let mut end = start;
        let mut used = 0;
        while end < n && used + pieces_per_word[end] <= capacity {
            used += pieces_per_word[end];
            end += 1;
        }
        if end == start {
            end = start + 1;
        }
        spans.push((start, end));
        if end == n {
            break;
        }
        let next = pieces_per_word[end];
        start = if next > capacity {
            // An overlong word shares its window with no other word.
            end
        } else {
            let budget = (capacity / 2).min(capacity - next);
            let mut s = end;
            let mut overlap = 0;
            while s - 1 > start && overlap + pieces_per_word[s - 1] <= budget {
                overlap += pieces_per_word[s - 1];
                s -= 1;
            }
            s
        };
    }

    // Boundaries between owned ranges: the midpoint of each overlap, never
    // before the previous boundary.
    let mut windows = Vec::with_capacity(spans.len());
    let mut keep_start = 0;
    for (k, &(start, end)) in spans.iter().enumerate() {
        let keep_end = match spans.get(k + 1) {
            Some(&(next_start, _)) => (next_start + (end - next_start) / 2).max(keep_start),
            None => n,
        };
        if keep_end > keep_start {
            windows.push(Window { start, end, keep_start, keep_end });
        }
        keep_start = keep_end;
    }
    windows
}

/// The windows of one sentence: one when it fits the tokenizer's length.
pub fn sentence_windows(words: &[String], tokenizer: &BerthTokenizer) -> Result<Vec<Window>> {
    let whole = tokenizer.encode_words(words)?;
    let last_word = whole.word_ids.iter().rev().flatten().next().copied();
    if words.is_empty() || last_word == Some(words.len() as u32 - 1) {
        return Ok(vec![Window { start: 0, end: words.len(), keep_start: 0, keep_end: words.len() }]);
    }
    // Truncated: count each word's pieces and plan overlapping windows.
    Ok(plan_windows(&word_piece_counts(tokenizer, words)?, tokenizer.max_length() - 2))
}

/// Gathers the word predictions of a sentence from its windows: `per_window[k]`
/// holds the predictions of the words of `windows[k]`, indexed from the
/// window's start (as [`word_predictions`] gives them for that window's
/// encoding). Each word takes the prediction of the window that owns it.
pub fn merge_windows(windows: &[Window], per_window: &[Vec<Option<usize>>], n_words: usize) -> Vec<Option<usize>> {
    let mut words = vec![None; n_words];
    for (window, predictions) in windows.iter().zip(per_window) {
        for w in window.keep_start..window.keep_end.min(n_words) {
            words[w] = predictions.get(w - window.start).copied().flatten();
        }
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn alignment_parse() {
        assert_eq!(Alignment::parse("first").unwrap(), Alignment::First);
        assert_eq!("ALL".parse::<Alignment>().unwrap(), Alignment::All);
        assert_eq!(Alignment::All.to_string(), "all");
        match Alignment::parse("every") {
            Err(Error::InvalidArgument(m)) => assert!(m.contains("`every`") && m.contains("first") && m.contains("all"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn continuation() {
        let labels = strings(&["O", "B-PER", "I-PER", "B-LOC", "B-MISC", "I-MISC", "I-LOC", "X"]);
        assert_eq!(continuation_ids(&labels), [0, 2, 2, 6, 5, 5, 6, 7]);
        // A B- label without its I- label continues as itself.
        assert_eq!(continuation_ids(&strings(&["B-ORG", "O"])), [0, 1]);
        assert!(continuation_ids(&[]).is_empty());
    }

    #[test]
    fn align_first_and_all() {
        // [CLS] w0 w1 w1 w1 w2 w3 w3 [SEP]
        let word_ids = [None, Some(0), Some(1), Some(1), Some(1), Some(2), Some(3), Some(3), None];
        let labels = strings(&["O", "B-PER", "I-PER"]);
        let continuation = continuation_ids(&labels);
        let word_labels = [0, 1, 2, 1];
        let i = IGNORE_INDEX;
        assert_eq!(align_labels(&word_ids, &word_labels, Alignment::First, &continuation), [i, 0, 1, i, i, 2, 1, i, i]);
        assert_eq!(align_labels(&word_ids, &word_labels, Alignment::All, &continuation), [i, 0, 1, 2, 2, 2, 1, 2, i]);
        // Padding (None) at the end, and a word id without a label.
        assert_eq!(align_labels(&[None, Some(0), Some(5), None, None], &[1], Alignment::All, &continuation), [i, 1, i, i, i]);
    }

    #[test]
    fn decode_words() {
        let word_ids = [None, Some(0), Some(1), Some(1), Some(3), None];
        let predictions = [9, 4, 5, 6, 7, 9];
        assert_eq!(word_predictions(&word_ids, &predictions, 4), [Some(4), Some(5), None, Some(7)]);
        assert_eq!(word_predictions(&word_ids, &predictions, 2), [Some(4), Some(5)]);
        assert_eq!(piece_counts(&word_ids, 4), [1, 2, 0, 1]);
    }

    #[test]
    fn windows_small_cases() {
        assert!(plan_windows(&[], 10).is_empty());
        assert_eq!(plan_windows(&[3, 3, 4], 10), [Window { start: 0, end: 3, keep_start: 0, keep_end: 3 }]);
        assert_eq!(plan_windows(&[30], 10), [Window { start: 0, end: 1, keep_start: 0, keep_end: 1 }]);
        // Ten one-piece words, capacity 4: windows of 4 overlapping by 2.
        let windows = plan_windows(&[1; 10], 4);
        let spans: Vec<_> = windows.iter().map(|w| (w.start, w.end, w.keep_start, w.keep_end)).collect();
        assert_eq!(spans, [(0, 4, 0, 3), (2, 6, 3, 5), (4, 8, 5, 7), (6, 10, 7, 10)]);
        // An overlong word in the middle stands alone.
        let windows = plan_windows(&[2, 2, 9, 2, 2], 5);
        let spans: Vec<_> = windows.iter().map(|w| (w.start, w.end, w.keep_start, w.keep_end)).collect();
        assert_eq!(spans, [(0, 2, 0, 2), (2, 3, 2, 3), (3, 5, 3, 5)]);
    }

    #[test]
    fn merge_takes_each_word_from_its_owner() {
        let windows = plan_windows(&[1; 10], 4);
        let per_window: Vec<Vec<Option<usize>>> =
            windows.iter().enumerate().map(|(k, w)| (w.start..w.end).map(|i| Some(100 * k + i)).collect()).collect();
        let merged = merge_windows(&windows, &per_window, 10);
        let owner = [0, 0, 0, 1, 1, 2, 2, 3, 3, 3];
        assert_eq!(merged, (0..10).map(|i| Some(100 * owner[i] + i)).collect::<Vec<_>>());
    }

    /// A small deterministic generator (xorshift64*), so the property test
    /// needs no crate and fails the same way every time.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
        }
    }

    #[test]
    fn windows_properties_on_random_sentences() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut split = 0;
        for case in 0..20_000 {
            let n = rng.below(60);
            let capacity = rng.below(40);
            let long_words = rng.below(4) == 0;
            let pieces: Vec<usize> =
                (0..n).map(|_| if long_words && rng.below(8) == 0 { rng.below(3 * capacity + 2) } else { rng.below(5) }).collect();
            let windows = plan_windows(&pieces, capacity);
            let context = format!("case {case}: capacity {capacity}, pieces {pieces:?}, windows {windows:?}");
            if n == 0 {
                assert!(windows.is_empty(), "{context}");
                continue;
            }
            let total: usize = pieces.iter().sum();
            if total <= capacity {
                assert_eq!(windows, [Window { start: 0, end: n, keep_start: 0, keep_end: n }], "{context}");
            } else {
                split += 1;
            }
            // Owned ranges partition 0..n, in order, each inside its window.
            assert_eq!(windows[0].keep_start, 0, "{context}");
            assert_eq!(windows.last().unwrap().keep_end, n, "{context}");
            for pair in windows.windows(2) {
                assert_eq!(pair[0].keep_end, pair[1].keep_start, "{context}");
                assert!(pair[0].start < pair[1].start, "starts must increase: {context}");
                assert!(pair[0].end < pair[1].end, "ends must increase: {context}");
            }
            for w in &windows {
                assert!(w.start <= w.keep_start && w.keep_start < w.keep_end && w.keep_end <= w.end && w.end <= n, "{context}");
                let used: usize = pieces[w.start..w.end].iter().sum();
                assert!(used <= capacity || w.end - w.start == 1, "window {w:?} holds {used} pieces: {context}");
                // An overlong word shares its window with no other.
                if pieces[w.start..w.end].iter().any(|&p| p > capacity) {
                    assert_eq!(w.end - w.start, 1, "{context}");
                }
            }
            // Every word is covered (implied by the partition) and a window
            // never stops before a word that would still fit.
            for w in &windows {
                let used: usize = pieces[w.start..w.end].iter().sum();
                if w.end < n && pieces[w.start] <= capacity {
                    assert!(used + pieces[w.end] > capacity, "window {w:?} could hold more: {context}");
                }
            }
        }
        assert!(split > 5_000, "too few sentences needed windows ({split})");
    }

    #[test]
    fn windows_overlap_about_half() {
        // Uniform words: each window after the first repeats half of the
        // previous one, and owns the second half of that overlap onwards.
        let windows = plan_windows(&[2; 100], 20);
        for pair in windows.windows(2) {
            let overlap: usize = pair[0].end - pair[1].start;
            assert_eq!(overlap, 5, "{pair:?}");
            assert_eq!(pair[1].keep_start, pair[1].start + 2, "{pair:?}");
        }
        assert_eq!(windows.len(), 19);
    }
}

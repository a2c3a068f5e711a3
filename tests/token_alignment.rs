//! Token classification with the real all-MiniLM-L6-v2 tokenizer: word labels
//! aligned onto word pieces (`first` and `all`), decoded back to words, and
//! sentences longer than max_length split into windows that lose no word.

use berth::data::BerthTokenizer;
use berth::data::align::{
    Alignment, IGNORE_INDEX, align_labels, continuation_ids, merge_windows, piece_counts, plan_windows, word_piece_counts, word_predictions,
};
use berth::data::conll::{ConllOptions, read_conll};

use crate::common::{minilm_dir, shared_dir, skip};

/// CoNLL-2003's tags, in the sorted order `tag_set` gives them.
const TAGS: [&str; 9] = ["B-LOC", "B-MISC", "B-ORG", "B-PER", "I-LOC", "I-MISC", "I-ORG", "I-PER", "O"];

fn tag_names() -> Vec<String> {
    TAGS.iter().map(|t| (*t).to_owned()).collect()
}

fn tag_id(tag: &str) -> usize {
    TAGS.iter().position(|t| *t == tag).unwrap()
}

/// Words that split into several pieces, with their tags.
fn sentence() -> (Vec<String>, Vec<usize>) {
    let tagged = [
        ("Jukka", "B-PER"),
        ("Hämäläinen", "I-PER"),
        ("of", "O"),
        ("Washington-based", "B-MISC"),
        ("CoNLL-2003", "B-MISC"),
        ("said", "O"),
        ("unbelievably", "O"),
        ("well", "O"),
        (".", "O"),
    ];
    (tagged.iter().map(|(w, _)| (*w).to_owned()).collect(), tagged.iter().map(|(_, t)| tag_id(t)).collect())
}

fn tokenizer(max_length: usize) -> Option<BerthTokenizer> {
    let dir = minilm_dir()?;
    Some(BerthTokenizer::from_dir(&dir, max_length).unwrap())
}

/// Treats each token's aligned label as the model's prediction; ignored
/// positions get a label that must never reach a word.
fn as_predictions(aligned: &[i64]) -> Vec<usize> {
    aligned.iter().map(|&l| if l == IGNORE_INDEX { 999 } else { l as usize }).collect()
}

#[test]
fn first_and_all_alignment_and_decoding() {
    let Some(tokenizer) = tokenizer(64) else { return };
    let (words, tags) = sentence();
    let encoded = tokenizer.encode_words(&words).unwrap();
    let pieces: Vec<String> = encoded.ids.iter().map(|&id| tokenizer.inner().id_to_token(id).unwrap()).collect();
    assert_eq!(
        pieces.join(" "),
        "[CLS] ju ##kka ham ##ala ##inen of washington - based con ##ll - 2003 said un ##bel ##ie ##va ##bly well . [SEP]"
    );
    let n = None;
    let s = Some;
    assert_eq!(
        encoded.word_ids,
        [
            n,
            s(0),
            s(0),
            s(1),
            s(1),
            s(1),
            s(2),
            s(3),
            s(3),
            s(3),
            s(4),
            s(4),
            s(4),
            s(4),
            s(5),
            s(6),
            s(6),
            s(6),
            s(6),
            s(6),
            s(7),
            s(8),
            n
        ]
    );

    let continuation = continuation_ids(&tag_names());
    let (b_per, i_per, b_misc, i_misc, o, x) = (3, 7, 1, 5, 8, IGNORE_INDEX);
    let first = align_labels(&encoded.word_ids, &tags, Alignment::First, &continuation);
    assert_eq!(first, [x, b_per, x, i_per, x, x, o, b_misc, x, x, b_misc, x, x, x, o, o, x, x, x, x, o, o, x]);
    let all = align_labels(&encoded.word_ids, &tags, Alignment::All, &continuation);
    assert_eq!(
        all,
        [x, b_per, i_per, i_per, i_per, i_per, o, b_misc, i_misc, i_misc, b_misc, i_misc, i_misc, i_misc, o, o, o, o, o, o, o, o, x]
    );

    for aligned in [&first, &all] {
        let decoded = word_predictions(&encoded.word_ids, &as_predictions(aligned), words.len());
        assert_eq!(decoded, tags.iter().map(|&t| Some(t)).collect::<Vec<_>>());
    }
}

/// Encodes each window, labels it, decodes it, and merges the owned ranges.
fn decode_through_windows(tokenizer: &BerthTokenizer, words: &[String], tags: &[usize], alignment: Alignment) -> Vec<Option<usize>> {
    let capacity = tokenizer.max_length() - 2;
    let pieces = word_piece_counts(tokenizer, words).unwrap();
    let windows = plan_windows(&pieces, capacity);
    let continuation = continuation_ids(&tag_names());
    let mut per_window = Vec::new();
    for w in &windows {
        let encoded = tokenizer.encode_words(&words[w.start..w.end]).unwrap();
        let wanted: usize = pieces[w.start..w.end].iter().sum();
        if wanted <= capacity {
            assert_eq!(encoded.ids.len(), wanted + 2, "window {w:?} must not be truncated");
        } else {
            assert_eq!(w.end - w.start, 1, "only a single overlong word may be truncated: {w:?}");
            assert_eq!(encoded.ids.len(), tokenizer.max_length());
        }
        let aligned = align_labels(&encoded.word_ids, &tags[w.start..w.end], alignment, &continuation);
        per_window.push(word_predictions(&encoded.word_ids, &as_predictions(&aligned), w.end - w.start));
    }
    merge_windows(&windows, &per_window, words.len())
}

#[test]
fn windows_over_a_long_sentence_lose_no_word() {
    let (words, tags) = sentence();
    let words: Vec<String> = words.iter().cycle().take(5 * words.len()).cloned().collect();
    let tags: Vec<usize> = tags.iter().cycle().take(words.len()).copied().collect();
    let expected: Vec<Option<usize>> = tags.iter().map(|&t| Some(t)).collect();
    // 5 and 8 leave room for fewer pieces than "unbelievably" (5) and
    // "CoNLL-2003" (4) have: those words get windows of their own.
    for max_length in [5, 8, 16, 24, 40] {
        let Some(tokenizer) = tokenizer(max_length) else { return };
        let pieces = word_piece_counts(&tokenizer, &words).unwrap();
        // Counting word by word agrees with a whole, untruncated encoding.
        let whole = self::tokenizer(512).unwrap().encode_words(&words).unwrap();
        assert_eq!(pieces, piece_counts(&whole.word_ids, words.len()));
        assert!(pieces.iter().sum::<usize>() > max_length);

        // Plain truncation loses words: the reason for windows.
        let truncated = tokenizer.encode_words(&words).unwrap();
        assert_eq!(truncated.ids.len(), max_length);
        assert!(word_predictions(&truncated.word_ids, &vec![0; max_length], words.len()).contains(&None));

        assert!(plan_windows(&pieces, max_length - 2).len() > 1);
        for alignment in [Alignment::First, Alignment::All] {
            assert_eq!(decode_through_windows(&tokenizer, &words, &tags, alignment), expected, "max_length {max_length}, {alignment}");
        }
    }
}

#[test]
fn windows_on_the_longest_conll_sentences() {
    let Some(shared) = shared_dir() else { return };
    let path = shared.join("data/conll2003/train.txt");
    if !path.is_file() {
        skip(&format!("{} is absent", path.display()));
        return;
    }
    let Some(tokenizer) = tokenizer(32) else { return };
    let mut sentences = read_conll(&path, &ConllOptions::default()).unwrap();
    sentences.sort_by_key(|s| std::cmp::Reverse(s.words.len()));
    let longest = word_piece_counts(&tokenizer, &sentences[0].words).unwrap();
    assert!(plan_windows(&longest, 30).len() > 3, "the longest sentence needs several windows");
    for sentence in &sentences[..25] {
        let tags: Vec<usize> = sentence.tags.iter().map(|t| tag_id(t)).collect();
        let expected: Vec<Option<usize>> = tags.iter().map(|&t| Some(t)).collect();
        let decoded = decode_through_windows(&tokenizer, &sentence.words, &tags, Alignment::First);
        assert_eq!(decoded, expected, "sentence at line {}", sentence.line);
    }
}

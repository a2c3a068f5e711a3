//! Readers for token classification (NER): CoNLL files of tagged words, and
//! plain files of pre-split sentences for prediction.
//!
//! **CoNLL** ([`read_conll`]): one word per line, its columns separated by
//! runs of white space, spaces or tabs (CoNLL-2003 has four: word, POS, chunk,
//! NER tag). A blank line, or one of only white space, ends a sentence; the last
//! sentence may end at the end of the file. `-DOCSTART-` lines (document
//! separators) are skipped and also end a sentence, so the blank line after
//! one never makes an empty sentence; runs of blank lines make nothing
//! either. CRLF line ends and a UTF-8 byte-order mark are accepted. Every
//! tag must be BIO (`O`, `B-TYPE` or `I-TYPE`); any other tag is an error
//! naming its line, not a new class. [`LabelSet`] turns tags into ids.
//!
//! **Word lines** ([`read_word_lines`]): one sentence per line, words split
//! on runs of white space.
//!
//! Every problem with the data is an [`Error::Input`] naming the file, the
//! 1-based line and, where one is at fault, the field (`word` or `tag`).

use std::path::Path;

use crate::data::readers::LabelSet;
use crate::error::{Error, Result};

/// One tagged sentence of a CoNLL file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sentence {
    pub words: Vec<String>,
    /// One tag per word.
    pub tags: Vec<String>,
    /// The 1-based line of the first word.
    pub line: usize,
    /// The 1-based line of each word.
    pub word_lines: Vec<usize>,
}

/// Which columns of a CoNLL file hold the word and the tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConllOptions {
    /// 0-based; `None` takes the last column of each line, which must then
    /// come after the word column.
    pub tag_column: Option<usize>,
    /// 0-based; 0 by default.
    pub word_column: usize,
}

impl Default for ConllOptions {
    fn default() -> ConllOptions {
        ConllOptions { tag_column: None, word_column: 0 }
    }
}

/// The document separator line of CoNLL-2003.
const DOCSTART: &str = "-DOCSTART-";
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The lines of a file as (1-based number, bytes), without their `\n` or
/// `\r\n` ends and without a leading byte-order mark. A final line end does
/// not start another line.
fn lines(bytes: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let empty = bytes.is_empty();
    bytes.split(|&b| b == b'\n').enumerate().filter(move |_| !empty).map(|(i, raw)| (i + 1, raw.strip_suffix(b"\r").unwrap_or(raw)))
}

/// Decodes one line; a UTF-8 error names the line and the byte where it occurs.
fn line_text<'a>(raw: &'a [u8], path: &Path, line: usize) -> Result<&'a str> {
    std::str::from_utf8(raw)
        .map_err(|e| Error::input(path, line, None, format!("not valid UTF-8 (invalid byte at byte {} of the line)", e.valid_up_to() + 1)))
}

/// The columns of a line: runs of white space (spaces, tabs, or any other
/// Unicode white space) separate them, so no column is ever blank.
fn columns(text: &str) -> Vec<&str> {
    text.split_whitespace().collect()
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Whether a tag is `O`, `B-TYPE` or `I-TYPE` with a non-empty type: entity
/// metrics and `B-`→`I-` alignment read tags this way, so any other tag
/// would silently become a class of its own.
pub fn is_bio_tag(tag: &str) -> bool {
    tag == "O" || tag.strip_prefix("B-").or_else(|| tag.strip_prefix("I-")).is_some_and(|kind| !kind.is_empty())
}

/// Reads every sentence of a CoNLL file. A line without the word or tag
/// column, or whose tag is not BIO, is an error naming its line and the
/// field; so is a file that holds no sentences.
pub fn read_conll(path: &Path, options: &ConllOptions) -> Result<Vec<Sentence>> {
    if options.tag_column == Some(options.word_column) {
        return Err(Error::InvalidArgument(format!("the tag column and the word column are both column {}", options.word_column)));
    }
    let bytes = read(path)?;
    let mut sentences = Vec::new();
    let mut current = Sentence { words: Vec::new(), tags: Vec::new(), line: 0, word_lines: Vec::new() };
    let mut finish = |current: &mut Sentence| {
        if !current.words.is_empty() {
            let next = Sentence { words: Vec::new(), tags: Vec::new(), line: 0, word_lines: Vec::new() };
            sentences.push(std::mem::replace(current, next));
        }
    };
    for (line, raw) in lines(&bytes) {
        let text = line_text(raw, path, line)?;
        let fields = columns(text);
        if fields.is_empty() || fields[0] == DOCSTART {
            finish(&mut current);
            continue;
        }
        let n = fields.len();
        let Some(word) = fields.get(options.word_column) else {
            return Err(Error::input(
                path,
                line,
                Some("word"),
                format!(
                    "the line has {n} column{}, but the word column (index {}) needs {}",
                    plural(n),
                    options.word_column,
                    options.word_column + 1
                ),
            ));
        };
        let tag = match options.tag_column {
            Some(index) => fields.get(index).ok_or_else(|| {
                Error::input(
                    path,
                    line,
                    Some("tag"),
                    format!("the line has {n} column{}, but the tag column (index {index}) needs {}", plural(n), index + 1),
                )
            })?,
            None if n > options.word_column + 1 => &fields[n - 1],
            None => {
                return Err(Error::input(
                    path,
                    line,
                    Some("tag"),
                    format!(
                        "the line has {n} column{}, but the tag (the last column) must follow the word column (index {}), so at least {} are needed",
                        plural(n),
                        options.word_column,
                        options.word_column + 2
                    ),
                ));
            }
        };
        if !is_bio_tag(tag) {
            let column = match options.tag_column {
                Some(index) => format!("column {index}, from --tag-column"),
                None => "the last column".to_owned(),
            };
            return Err(Error::input(
                path,
                line,
                Some("tag"),
                format!("`{tag}` ({column}) is not a BIO tag; every tag must be `O`, `B-TYPE` or `I-TYPE`"),
            ));
        }
        if current.words.is_empty() {
            current.line = line;
        }
        current.words.push((*word).to_owned());
        current.tags.push((*tag).to_owned());
        current.word_lines.push(line);
    }
    finish(&mut current);
    if sentences.is_empty() {
        return Err(Error::input(path, 0, None, "the file holds no sentences"));
    }
    Ok(sentences)
}

/// Reads a file of pre-split sentences for prediction: one sentence per line,
/// its words separated by runs of white space.
///
/// A blank line (or one of only white space) is an error naming its line,
/// not skipped: prediction writes one output line per input line, so a
/// skipped line would shift every later prediction against its input, and an
/// empty sentence has nothing to tag. The line end of the last line is
/// optional and makes no extra line. A file with no lines, or with only blank
/// ones, is an error that says it holds no sentences.
pub fn read_word_lines(path: &Path) -> Result<Vec<Vec<String>>> {
    let bytes = read(path)?;
    if lines(&bytes).all(|(_, raw)| raw.iter().all(u8::is_ascii_whitespace)) {
        return Err(Error::input(path, 0, None, "the file holds no sentences"));
    }
    let mut sentences = Vec::new();
    for (line, raw) in lines(&bytes) {
        let words = columns(line_text(raw, path, line)?);
        if words.is_empty() {
            return Err(Error::input(
                path,
                line,
                Some("word"),
                "the line is blank; every line must hold a sentence of at least one word, since predict writes one row per line",
            ));
        }
        sentences.push(words.into_iter().map(str::to_owned).collect());
    }
    if sentences.is_empty() {
        return Err(Error::input(path, 0, None, "the file holds no sentences"));
    }
    Ok(sentences)
}

/// The distinct tags of the sentences, sorted by string (as Hugging Face's
/// `run_ner` sorts its label list): for CoNLL-2003, `B-LOC`, `B-MISC`, …, `O`.
pub fn tag_set(sentences: &[Sentence]) -> LabelSet {
    let mut names: Vec<String> = sentences.iter().flat_map(|s| s.tags.iter().cloned()).collect();
    names.sort();
    names.dedup();
    LabelSet::from_names(names).expect("tags read by read_conll are distinct and non-empty")
}

/// The tag ids of each sentence; an unknown tag is an error naming the file
/// and the line of its word.
pub fn tag_ids(sentences: &[Sentence], labels: &LabelSet, path: &Path) -> Result<Vec<Vec<usize>>> {
    sentences.iter().map(|s| s.tags.iter().zip(&s.word_lines).map(|(tag, &line)| labels.id(tag, path, line)).collect()).collect()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A temporary folder, unique to the process and the test, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("berth-conll-{}-{n}-{name}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        fn file(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, contents).unwrap();
            path
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Unwraps an `Error::Input` into (path, line, field, message).
    fn input_error<T: std::fmt::Debug>(result: Result<T>) -> (PathBuf, usize, Option<String>, String) {
        match result {
            Err(Error::Input { path, line, field, message }) => (path, line, field, message),
            other => panic!("expected an input error, got {other:?}"),
        }
    }

    fn strings(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    const SAMPLE: &str = "-DOCSTART- -X- -X- O\n\
                          \n\
                          EU NNP B-NP B-ORG\n\
                          rejects VBZ B-VP O\n\
                          German JJ B-NP B-MISC\n\
                          \n\
                          Peter NNP B-NP B-PER\n\
                          Blackburn NNP I-NP I-PER\n";

    #[test]
    fn reads_sentences_with_lines() {
        let dir = Scratch::new("sample");
        let path = dir.file("a.txt", SAMPLE);
        let sentences = read_conll(&path, &ConllOptions::default()).unwrap();
        assert_eq!(
            sentences,
            vec![
                Sentence {
                    words: strings(&["EU", "rejects", "German"]),
                    tags: strings(&["B-ORG", "O", "B-MISC"]),
                    line: 3,
                    word_lines: vec![3, 4, 5]
                },
                Sentence { words: strings(&["Peter", "Blackburn"]), tags: strings(&["B-PER", "I-PER"]), line: 7, word_lines: vec![7, 8] },
            ]
        );
    }

    #[test]
    fn tag_and_word_columns() {
        let dir = Scratch::new("columns");
        let path = dir.file("a.txt", SAMPLE);
        let chunks = read_conll(&path, &ConllOptions { tag_column: Some(2), word_column: 0 }).unwrap();
        assert_eq!(chunks[0].tags, ["B-NP", "B-VP", "B-NP"]);
        let pos_as_words = read_conll(&path, &ConllOptions { tag_column: Some(3), word_column: 1 }).unwrap();
        assert_eq!(pos_as_words[1].words, ["NNP", "NNP"]);
        assert_eq!(pos_as_words[1].tags, ["B-PER", "I-PER"]);
        assert!(matches!(read_conll(&path, &ConllOptions { tag_column: Some(1), word_column: 1 }), Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn tabs_runs_of_whitespace_crlf_and_eof() {
        let dir = Scratch::new("whitespace");
        // Tabs and runs of spaces separate columns; a line of only whitespace
        // ends a sentence; CRLF ends are accepted; no blank line at the end.
        let path = dir.file("a.txt", "\u{feff}a\tB-X\r\nb   \t I-X  \r\n \t \r\n\r\n\r\nc O\r\nd\tB-Y");
        let sentences = read_conll(&path, &ConllOptions::default()).unwrap();
        assert_eq!(sentences.len(), 2);
        assert_eq!(sentences[0].words, ["a", "b"]);
        assert_eq!(sentences[0].tags, ["B-X", "I-X"]);
        assert_eq!(sentences[1].words, ["c", "d"]);
        assert_eq!(sentences[1].tags, ["O", "B-Y"]);
        assert_eq!(sentences[1].word_lines, [6, 7]);
    }

    #[test]
    fn docstart_without_blank_line_ends_a_sentence() {
        let dir = Scratch::new("docstart");
        let path = dir.file("a.txt", "-DOCSTART- O\na O\n-DOCSTART- O\n\n\nb O\n-DOCSTART- O\n");
        let sentences = read_conll(&path, &ConllOptions::default()).unwrap();
        assert_eq!(sentences.iter().map(|s| s.words.clone()).collect::<Vec<_>>(), [strings(&["a"]), strings(&["b"])]);
        assert_eq!(sentences[1].line, 6);
    }

    #[test]
    fn too_few_columns_for_the_tag_is_an_error() {
        let dir = Scratch::new("few-columns");
        let path = dir.file("bad.txt", "EU NNP B-NP B-ORG\nrejects VBZ B-VP\n");
        let (file, line, field, message) = input_error(read_conll(&path, &ConllOptions { tag_column: Some(3), word_column: 0 }));
        assert_eq!((file, line, field.as_deref()), (path.clone(), 2, Some("tag")));
        assert!(message.contains("3 columns") && message.contains("index 3"), "{message}");
        let rendered = read_conll(&path, &ConllOptions { tag_column: Some(3), word_column: 0 }).unwrap_err().to_string();
        assert!(rendered.contains("bad.txt:2") && rendered.contains("`tag`"), "{rendered}");

        // With the tag in the last column, a one-column line has no tag.
        let path = dir.file("single.txt", "EU B-ORG\n\nlonely\n");
        let (_, line, field, _) = input_error(read_conll(&path, &ConllOptions::default()));
        assert_eq!((line, field.as_deref()), (3, Some("tag")));

        // Unicode white space separates columns too, so a tag is never blank.
        let path = dir.file("nbsp.txt", "EU\u{a0}B-ORG\nrejects \u{a0}\n");
        let (_, line, field, _) = input_error(read_conll(&path, &ConllOptions::default()));
        assert_eq!((line, field.as_deref()), (2, Some("tag")));

        let path = dir.file("word.txt", "x y z\n");
        let (_, line, field, _) = input_error(read_conll(&path, &ConllOptions { tag_column: Some(0), word_column: 4 }));
        assert_eq!((line, field.as_deref()), (1, Some("word")));
    }

    #[test]
    fn tags_that_are_not_bio_are_errors() {
        for tag in ["O", "B-PER", "I-MISC", "B-a-b"] {
            assert!(is_bio_tag(tag), "{tag}");
        }
        for tag in ["o", "PER", "B-", "I-", "E-PER", "S-LOC", "B_PER", "NNP", "-X-"] {
            assert!(!is_bio_tag(tag), "{tag}");
        }
        let dir = Scratch::new("bio");
        let path = dir.file("bad.txt", "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP PER\n");
        let (file, line, field, message) = input_error(read_conll(&path, &ConllOptions::default()));
        assert_eq!((file, line, field.as_deref()), (path.clone(), 4, Some("tag")));
        assert_eq!(message, "`PER` (the last column) is not a BIO tag; every tag must be `O`, `B-TYPE` or `I-TYPE`");
        // POS tags chosen by --tag-column are refused the same way.
        let (_, line, _, message) = input_error(read_conll(&path, &ConllOptions { tag_column: Some(1), word_column: 0 }));
        assert_eq!(line, 1);
        assert!(message.starts_with("`NNP` (column 1, from --tag-column)"), "{message}");
    }

    #[test]
    fn invalid_utf8_names_the_line() {
        let dir = Scratch::new("utf8");
        let path = dir.file("bad.txt", b"EU B-ORG\n\nM\xfcller B-PER\n".as_slice());
        let (file, line, _, message) = input_error(read_conll(&path, &ConllOptions::default()));
        assert_eq!((file, line), (path.clone(), 3));
        assert!(message.contains("UTF-8") && message.contains("byte 2"), "{message}");
        let path = dir.file("bad-words.txt", b"EU rejects\nM\xfcller said\n".as_slice());
        let (file, line, _, _) = input_error(read_word_lines(&path));
        assert_eq!((file, line), (path.clone(), 2));
    }

    #[test]
    fn empty_files_are_errors() {
        let dir = Scratch::new("empty");
        for (name, contents) in [("empty.txt", ""), ("blank.txt", "\n\n  \n"), ("docs.txt", "-DOCSTART- -X- -X- O\n\n")] {
            let path = dir.file(name, contents);
            let (file, line, _, message) = input_error(read_conll(&path, &ConllOptions::default()));
            assert_eq!((file, line), (path.clone(), 0), "{name}");
            assert!(message.contains("no sentences"), "{message}");
        }
        let path = dir.file("nothing.txt", "");
        assert_eq!(input_error(read_word_lines(&path)).1, 0);
    }

    #[test]
    fn missing_file_is_an_io_error() {
        let dir = Scratch::new("missing");
        let path = dir.0.join("absent.txt");
        assert!(matches!(read_conll(&path, &ConllOptions::default()), Err(Error::Io { path: p, .. }) if p == path));
        assert!(matches!(read_word_lines(&path), Err(Error::Io { .. })));
    }

    #[test]
    fn word_lines() {
        let dir = Scratch::new("words");
        let path = dir.file("a.txt", "EU rejects  German\tcall\r\nPeter Blackburn\n");
        assert_eq!(read_word_lines(&path).unwrap(), [strings(&["EU", "rejects", "German", "call"]), strings(&["Peter", "Blackburn"])]);
        let path = dir.file("blank.txt", "a b\n \t\nc\n");
        let (file, line, field, _) = input_error(read_word_lines(&path));
        assert_eq!((file, line, field.as_deref()), (path.clone(), 2, Some("word")));
    }

    #[test]
    fn tag_set_and_ids() {
        let dir = Scratch::new("tags");
        let path = dir.file("a.txt", SAMPLE);
        let sentences = read_conll(&path, &ConllOptions::default()).unwrap();
        let set = tag_set(&sentences);
        assert_eq!(set.names(), ["B-MISC", "B-ORG", "B-PER", "I-PER", "O"]);
        assert_eq!(tag_ids(&sentences, &set, &path).unwrap(), [vec![1, 4, 0], vec![2, 3]]);
        let small = LabelSet::from_names(strings(&["O", "B-ORG", "B-MISC", "B-PER"])).unwrap();
        let (_, line, field, message) = input_error(tag_ids(&sentences, &small, &path));
        assert_eq!((line, field.as_deref()), (8, Some("label")));
        assert!(message.contains("I-PER"), "{message}");
    }

    #[test]
    fn shared_conll2003() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/conll2003");
        if !dir.is_dir() {
            eprintln!("skipping: {} is absent", dir.display());
            return;
        }
        // Counted independently with awk: blank-line-separated groups of
        // non-blank lines, and the number of 4-column lines.
        for (name, n_sentences, n_words) in [("train.txt", 14_041, 203_621), ("valid.txt", 3_250, 51_362), ("test.txt", 3_453, 46_435)] {
            let path = dir.join(name);
            let sentences = read_conll(&path, &ConllOptions::default()).unwrap();
            assert_eq!(sentences.len(), n_sentences, "{name}");
            assert_eq!(sentences.iter().map(|s| s.words.len()).sum::<usize>(), n_words, "{name}");
            let set = tag_set(&sentences);
            assert_eq!(set.names(), ["B-LOC", "B-MISC", "B-ORG", "B-PER", "I-LOC", "I-MISC", "I-ORG", "I-PER", "O"], "{name}");
        }
        let train = read_conll(&dir.join("train.txt"), &ConllOptions::default()).unwrap();
        assert_eq!(train[0].words, ["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."]);
        assert_eq!(train[0].tags, ["B-ORG", "O", "B-MISC", "O", "O", "O", "B-MISC", "O", "O"]);
        assert_eq!((train[1].line, train[2].line), (11, 14));
    }
}

//! Tests of the example readers and the label set, on small files written to
//! a temporary folder, and on ../shared/data where it exists.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

/// A temporary folder, unique to the process and the test, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("berth-readers-{}-{n}-{name}", std::process::id()));
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

fn name(s: &str) -> Column {
    Column::Name(s.into())
}

fn options(format: Format, text: Column, text_pair: Option<Column>, label: Option<Column>) -> ReaderOptions {
    ReaderOptions { text, text_pair, label, ..ReaderOptions::new(format) }
}

/// Unwraps an `Error::Input` into (line, field, message).
fn input_error<T: std::fmt::Debug>(result: Result<T>) -> (usize, Option<String>, String) {
    match result {
        Err(Error::Input { line, field, message, .. }) => (line, field, message),
        other => panic!("expected an input error, got {other:?}"),
    }
}

fn labels(examples: &[Example]) -> Vec<String> {
    examples.iter().map(|e| e.label.as_ref().unwrap().to_string()).collect()
}

// ------------------------------------------------------------ formats, columns

#[test]
fn format_parse_and_from_path() {
    assert_eq!(Format::parse("TSV").unwrap(), Format::Tsv);
    assert_eq!(Format::parse("csv").unwrap(), Format::Csv);
    assert_eq!(Format::parse("jsonl").unwrap(), Format::Jsonl);
    assert_eq!("json".parse::<Format>().unwrap(), Format::Jsonl);
    assert!(matches!(Format::parse("xlsx"), Err(Error::InvalidArgument(m)) if m.contains("xlsx")));
    assert_eq!(Format::from_path(Path::new("a/train.tsv")), Format::Tsv);
    assert_eq!(Format::from_path(Path::new("train.CSV")), Format::Csv);
    assert_eq!(Format::from_path(Path::new("train.jsonl")), Format::Jsonl);
    assert_eq!(Format::from_path(Path::new("train.json")), Format::Jsonl);
    assert_eq!(Format::from_path(Path::new("train.txt")), Format::Tsv);
    assert_eq!(Format::from_path(Path::new("train")), Format::Tsv);
}

#[test]
fn column_parse() {
    assert_eq!(Column::parse("0").unwrap(), Column::Index(0));
    assert_eq!(Column::parse("12").unwrap(), Column::Index(12));
    assert_eq!(Column::parse("sentence1").unwrap(), name("sentence1"));
    assert_eq!(Column::parse("-1").unwrap(), name("-1"));
    assert!(Column::parse("").is_err());
    assert!(Column::parse("99999999999999999999999999").is_err());
}

#[test]
fn defaults() {
    let tsv = ReaderOptions::default();
    assert_eq!(tsv.format, Format::Tsv);
    assert!(!tsv.quoting);
    assert_eq!(tsv.has_header, None);
    assert_eq!(tsv.text, name("text"));
    assert_eq!(tsv.text_pair, None);
    assert_eq!(tsv.label, Some(name("label")));
    assert!(ReaderOptions::new(Format::Csv).quoting);
    assert_eq!(ReaderOptions::for_path(Path::new("x.jsonl")).format, Format::Jsonl);
}

// ------------------------------------------------------------ TSV

#[test]
fn tsv_header_by_name() {
    let dir = Scratch::new("tsv-header");
    let path = dir.file("a.tsv", "label\ttext\npos\tgood film \nneg\tbad film\n");
    let examples = read_examples(&path, &ReaderOptions::default()).unwrap();
    assert_eq!(
        examples,
        vec![
            Example { text: "good film ".into(), text_pair: None, label: Some("pos".into()), line: 2 },
            Example { text: "bad film".into(), text_pair: None, label: Some("neg".into()), line: 3 },
        ]
    );
}

#[test]
fn tsv_no_header_by_index() {
    let dir = Scratch::new("tsv-index");
    let path = dir.file("a.tsv", "good film\t1\nbad film\t0");
    let opts = options(Format::Tsv, Column::Index(0), None, Some(Column::Index(1)));
    let examples = read_examples(&path, &opts).unwrap();
    assert_eq!(examples.len(), 2);
    assert_eq!(examples[1].text, "bad film");
    assert_eq!(labels(&examples), ["1", "0"]);
    assert_eq!(examples[1].line, 2);
}

#[test]
fn tsv_header_skipped_with_index_columns() {
    let dir = Scratch::new("tsv-header-index");
    let path = dir.file("a.tsv", "sentence\tlabel\ngood\t1\n");
    let opts = ReaderOptions { has_header: Some(true), ..options(Format::Tsv, Column::Index(0), None, Some(Column::Index(1))) };
    let examples = read_examples(&path, &opts).unwrap();
    assert_eq!(examples.len(), 1);
    assert_eq!(examples[0].text, "good");
    assert_eq!(examples[0].line, 2);
}

#[test]
fn tsv_mixed_columns_mean_no_header() {
    // With the header left to detection, one index column means "no header",
    // so a column given by name cannot be found.
    let dir = Scratch::new("tsv-mixed");
    let path = dir.file("a.tsv", "sentence\tlabel\ngood\t1\n");
    let opts = options(Format::Tsv, Column::Index(0), None, Some(name("label")));
    let (line, field, message) = input_error(read_examples(&path, &opts));
    assert_eq!((line, field.as_deref()), (0, Some("label")));
    assert!(message.contains("without a header"), "{message}");
}

#[test]
fn tsv_pair_and_rte_quotes_verbatim() {
    let dir = Scratch::new("tsv-rte");
    let contents = "index\tsentence1\tsentence2\tlabel\n\
                    0\tHe said \"no\" twice.\t\"Quoted\tnot_entailment\n\
                    1\t\"Unclosed quote at the start\tA \"\"doubled\"\" one.\tentailment\n";
    let path = dir.file("dev.tsv", contents);
    let opts = options(Format::Tsv, name("sentence1"), Some(name("sentence2")), Some(name("label")));
    let examples = read_examples(&path, &opts).unwrap();
    assert_eq!(examples.len(), 2);
    assert_eq!(examples[0].text, "He said \"no\" twice.");
    assert_eq!(examples[0].text_pair.as_deref(), Some("\"Quoted"));
    assert_eq!(examples[1].text, "\"Unclosed quote at the start");
    assert_eq!(examples[1].text_pair.as_deref(), Some("A \"\"doubled\"\" one."));
    assert_eq!(labels(&examples), ["not_entailment", "entailment"]);
    assert_eq!(examples[1].line, 3);
}

#[test]
fn tsv_stsb_extra_columns_ignored() {
    let dir = Scratch::new("tsv-stsb");
    let contents = "main-captions\tMSRvid\t2012test\t0001\t5.000\tA man plays.\tA man is playing.\n\
                    main-news\theadlines\t2015\t0002\t1.200\tStocks fell.\tIt rained.\textra\tmore extra\n";
    let path = dir.file("dev.tsv", contents);
    let opts = options(Format::Tsv, Column::Index(5), Some(Column::Index(6)), Some(Column::Index(4)));
    let examples = read_examples(&path, &opts).unwrap();
    assert_eq!(examples.len(), 2);
    assert_eq!(examples[1].text, "Stocks fell.");
    assert_eq!(examples[1].text_pair.as_deref(), Some("It rained."));
    assert_eq!(labels(&examples), ["5.000", "1.200"]);
}

#[test]
fn blank_lines_crlf_and_bom() {
    let dir = Scratch::new("tsv-blank");
    let path = dir.file("a.tsv", "\u{feff}text\tlabel\r\n\r\nhello\t a \r\n  \n\t\nbye\tb\r\n\r\n");
    let examples = read_examples(&path, &ReaderOptions::default()).unwrap();
    assert_eq!(examples.len(), 2);
    assert_eq!((examples[0].text.as_str(), examples[0].line), ("hello", 3));
    assert_eq!((examples[1].text.as_str(), examples[1].line), ("bye", 6));
    assert_eq!(labels(&examples), ["a", "b"]);
}

#[test]
fn line_numbers_with_cr_only_endings() {
    let dir = Scratch::new("tsv-cr");
    let path = dir.file("a.tsv", "text\tlabel\rone\ta\r\rtwo\tb\r");
    let examples = read_examples(&path, &ReaderOptions::default()).unwrap();
    let lines: Vec<usize> = examples.iter().map(|e| e.line).collect();
    assert_eq!(lines, [2, 4]);
}

#[test]
fn unlabelled_examples() {
    let dir = Scratch::new("tsv-unlabelled");
    let path = dir.file("a.tsv", "first\nsecond\n");
    let opts = options(Format::Tsv, Column::Index(0), None, None);
    let examples = read_examples(&path, &opts).unwrap();
    assert_eq!(examples.len(), 2);
    assert!(examples.iter().all(|e| e.label.is_none()));
}

// ------------------------------------------------------------ TSV/CSV errors

#[test]
fn error_missing_column_name_lists_header() {
    let dir = Scratch::new("err-name");
    let path = dir.file("a.tsv", "\nsentence\tlabel\ngood\t1\n");
    let (line, field, message) = input_error(read_examples(&path, &ReaderOptions::default()));
    assert_eq!((line, field.as_deref()), (2, Some("text")));
    assert!(message.contains("no column `text`") && message.contains("`sentence`, `label`"), "{message}");
}

#[test]
fn error_duplicate_header_name() {
    let dir = Scratch::new("err-dup-header");
    let path = dir.file("a.tsv", "text\ttext\tlabel\na\tb\t1\n");
    let (line, field, message) = input_error(read_examples(&path, &ReaderOptions::default()));
    assert_eq!((line, field.as_deref()), (1, Some("text")));
    assert!(message.contains("more than once"), "{message}");
}

#[test]
fn error_short_row() {
    let dir = Scratch::new("err-short");
    let path = dir.file("a.tsv", "a\t1\nb\t0\nc\n");
    let opts = options(Format::Tsv, Column::Index(0), None, Some(Column::Index(1)));
    let (line, field, message) = input_error(read_examples(&path, &opts));
    assert_eq!((line, field.as_deref()), (3, Some("label")));
    assert!(message.contains("has 1 field,") && message.contains("index 1"), "{message}");

    let path = dir.file("b.tsv", "text\tlabel\ngood\n");
    let (line, field, message) = input_error(read_examples(&path, &ReaderOptions::default()));
    assert_eq!((line, field.as_deref()), (2, Some("label")));
    assert!(message.contains("`label` (index 1)"), "{message}");
}

#[test]
fn error_empty_file_and_header_only() {
    let dir = Scratch::new("err-empty");
    for contents in ["", "\n\n  \n"] {
        let path = dir.file("empty.tsv", contents);
        let (line, _, message) = input_error(read_examples(&path, &ReaderOptions::default()));
        assert_eq!(line, 0);
        assert!(message.contains("no examples"), "{message}");
    }
    let path = dir.file("header.tsv", "text\tlabel\n");
    let (line, _, message) = input_error(read_examples(&path, &ReaderOptions::default()));
    assert_eq!(line, 0);
    assert!(message.contains("no data rows"), "{message}");
}

#[test]
fn error_invalid_utf8_names_line() {
    let dir = Scratch::new("err-utf8");
    let path = dir.file("a.tsv", b"text\tlabel\nfine\t1\nbad \xff byte\t0\n");
    let (line, field, message) = input_error(read_examples(&path, &ReaderOptions::default()));
    assert_eq!((line, field.as_deref()), (3, Some("text")));
    assert!(message.contains("UTF-8"), "{message}");
}

#[test]
fn error_empty_label() {
    let dir = Scratch::new("err-label");
    let path = dir.file("a.tsv", "text\tlabel\nfine\t1\nno label\t  \n");
    let (line, field, message) = input_error(read_examples(&path, &ReaderOptions::default()));
    assert_eq!((line, field.as_deref()), (3, Some("label")));
    assert!(message.contains("empty"), "{message}");
}

#[test]
fn error_missing_file_is_io() {
    let dir = Scratch::new("err-io");
    let result = read_examples(&dir.0.join("absent.tsv"), &ReaderOptions::default());
    assert!(matches!(result, Err(Error::Io { .. })), "{result:?}");
}

#[test]
fn error_display_names_file_line_field() {
    let dir = Scratch::new("err-display");
    let path = dir.file("a.tsv", "text\tlabel\nx\t\n");
    let message = read_examples(&path, &ReaderOptions::default()).unwrap_err().to_string();
    assert!(message.contains("a.tsv:2") && message.contains("(field `label`)"), "{message}");
}

// ------------------------------------------------------------ CSV

#[test]
fn csv_quoted_fields() {
    let dir = Scratch::new("csv");
    let contents = "text,label\n\"Hello, world\",greeting\n\"She said \"\"hi\"\"\",greeting\n\
                    \"two\nlines\",multi\nplain,other\n";
    let path = dir.file("a.csv", contents);
    let examples = read_examples(&path, &ReaderOptions::for_path(&path)).unwrap();
    let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
    assert_eq!(texts, ["Hello, world", "She said \"hi\"", "two\nlines", "plain"]);
    let lines: Vec<usize> = examples.iter().map(|e| e.line).collect();
    assert_eq!(lines, [2, 3, 4, 6]);
    assert_eq!(labels(&examples), ["greeting", "greeting", "multi", "other"]);
}

#[test]
fn csv_without_quoting() {
    let dir = Scratch::new("csv-noquote");
    let path = dir.file("a.csv", "text,label\n\"quoted\",x\n");
    let opts = ReaderOptions { quoting: false, ..ReaderOptions::new(Format::Csv) };
    let examples = read_examples(&path, &opts).unwrap();
    assert_eq!(examples[0].text, "\"quoted\"");
}

// ------------------------------------------------------------ JSON Lines

#[test]
fn jsonl_names_numbers_and_pairs() {
    let dir = Scratch::new("jsonl");
    let contents = "{\"premise\": \"A cat.\", \"hypothesis\": \"An animal.\", \"label\": 0, \"id\": 7}\n\
                    \n\
                    {\"premise\": \"Q \\\"x\\\"\", \"hypothesis\": \"y\", \"label\": \" 1 \"}\r\n\
                    {\"premise\": \"p\", \"hypothesis\": \"h\", \"label\": 2.5}";
    let path = dir.file("a.jsonl", contents);
    let opts = options(Format::Jsonl, name("premise"), Some(name("hypothesis")), Some(name("label")));
    let examples = read_examples(&path, &opts).unwrap();
    assert_eq!(examples.len(), 3);
    assert_eq!(examples[0].text_pair.as_deref(), Some("An animal."));
    assert_eq!(examples[1].text, "Q \"x\"");
    assert_eq!(examples[1].line, 3);
    assert_eq!(labels(&examples), ["0", "1", "2.5"]);
}

#[test]
fn jsonl_number_among_names_is_an_error() {
    let dir = Scratch::new("jsonl-mixed");
    let path = dir
        .file("a.jsonl", "{\"text\": \"a\", \"label\": \"pos\"}\n{\"text\": \"b\", \"label\": \"neg\"}\n{\"text\": \"c\", \"label\": 1}\n");
    let (line, field, message) = input_error(read_examples(&path, &ReaderOptions::new(Format::Jsonl)));
    assert_eq!((line, field.as_deref()), (3, Some("label")));
    assert!(message.contains("1 is a JSON number") && message.contains("line 1: \"pos\""), "{message}");
    // In lists too (multi-label): an id among names.
    let path = dir.file("b.jsonl", "{\"text\": \"a\", \"label\": [3]}\n{\"text\": \"b\", \"label\": [\"earn\", \"acq\"]}\n");
    let (line, _, _) = input_error(read_examples(&path, &ReaderOptions::new(Format::Jsonl)));
    assert_eq!(line, 1);
    // Every label numeric, as numbers or as numeric strings: fine.
    let path =
        dir.file("c.jsonl", "{\"text\": \"a\", \"label\": 1}\n{\"text\": \"b\", \"label\": \"0\"}\n{\"text\": \"c\", \"label\": [2, 0]}\n");
    let options = ReaderOptions { allow_empty_label: true, ..ReaderOptions::new(Format::Jsonl) };
    assert_eq!(labels(&read_examples(&path, &options).unwrap()), ["1", "0", "[2, 0]"]);
}

#[test]
fn jsonl_default_keys() {
    let dir = Scratch::new("jsonl-default");
    let path = dir.file("a.json", "{\"text\": \"hi\", \"label\": \"greeting\"}\n");
    let examples = read_examples(&path, &ReaderOptions::for_path(&path)).unwrap();
    assert_eq!(examples[0].text, "hi");
    assert_eq!(labels(&examples), ["greeting"]);
}

#[test]
fn jsonl_errors() {
    let dir = Scratch::new("jsonl-errors");
    let opts = ReaderOptions::new(Format::Jsonl);
    let good = "{\"text\": \"ok\", \"label\": \"a\"}\n";

    let path = dir.file("bad-json.jsonl", format!("{good}{{\"text\": \"ok\", \"label\": }}\n"));
    let (line, _, message) = input_error(read_examples(&path, &opts));
    assert_eq!(line, 2);
    assert!(message.starts_with("invalid JSON at column"), "{message}");

    let path = dir.file("missing.jsonl", format!("{good}{good}{{\"sentence\": \"x\", \"label\": \"a\"}}\n"));
    let (line, field, message) = input_error(read_examples(&path, &opts));
    assert_eq!((line, field.as_deref()), (3, Some("text")));
    assert!(message.contains("`text` is missing") && message.contains("`sentence`"), "{message}");

    let path = dir.file("number-text.jsonl", "{\"text\": 5, \"label\": \"a\"}\n");
    let (line, field, message) = input_error(read_examples(&path, &opts));
    assert_eq!((line, field.as_deref()), (1, Some("text")));
    assert!(message.contains("must be a string, found a number"), "{message}");

    let path = dir.file("null-label.jsonl", "{\"text\": \"x\", \"label\": null}\n");
    let (_, field, message) = input_error(read_examples(&path, &opts));
    assert_eq!(field.as_deref(), Some("label"));
    assert!(message.contains("string or a number, found null"), "{message}");

    let path = dir.file("empty-label.jsonl", "{\"text\": \"x\", \"label\": \"\"}\n");
    let (_, field, message) = input_error(read_examples(&path, &opts));
    assert_eq!(field.as_deref(), Some("label"));
    assert!(message.contains("empty"), "{message}");

    let path = dir.file("array.json", "[{\"text\": \"x\", \"label\": \"a\"},\n{\"text\": \"y\", \"label\": \"b\"}]\n");
    let (line, _, message) = input_error(read_examples(&path, &opts));
    assert_eq!(line, 1);
    assert!(message.contains("not a JSON array"), "{message}");

    let path = dir.file("scalar.jsonl", format!("{good}\"just a string\"\n"));
    let (line, _, message) = input_error(read_examples(&path, &opts));
    assert_eq!(line, 2);
    assert!(message.contains("expected a JSON object, found a string"), "{message}");

    let path = dir.file("utf8.jsonl", b"{\"text\": \"ok\", \"label\": \"a\"}\n{\"text\": \"\xc3\", \"label\": \"a\"}\n");
    let (line, _, message) = input_error(read_examples(&path, &opts));
    assert_eq!(line, 2);
    assert!(message.contains("UTF-8"), "{message}");

    let path = dir.file("empty.jsonl", "\n \n");
    let (line, _, message) = input_error(read_examples(&path, &opts));
    assert_eq!(line, 0);
    assert!(message.contains("no examples"), "{message}");
}

#[test]
fn jsonl_rejects_index_columns() {
    let dir = Scratch::new("jsonl-index");
    let path = dir.file("a.jsonl", "{\"text\": \"x\", \"label\": \"a\"}\n");
    let opts = ReaderOptions { label: Some(Column::Index(1)), ..ReaderOptions::new(Format::Jsonl) };
    let (line, field, message) = input_error(read_examples(&path, &opts));
    assert_eq!((line, field.as_deref()), (0, Some("label")));
    assert!(message.contains("index 1 is not valid"), "{message}");
}

// ------------------------------------------------------------ labels

fn example(label: &str, line: usize) -> Example {
    Example { text: "t".into(), text_pair: None, label: Some(label.into()), line }
}

#[test]
fn label_set_from_examples_sorts() {
    let numeric: Vec<Example> = ["10", "2", "1", "2", "-1"].iter().zip(1..).map(|(l, i)| example(l, i)).collect();
    assert_eq!(LabelSet::from_examples(&numeric).names(), ["-1", "1", "2", "10"]);

    let words: Vec<Example> = ["spam", "ham", "spam", "10"].iter().zip(1..).map(|(l, i)| example(l, i)).collect();
    let set = LabelSet::from_examples(&words);
    assert_eq!(set.names(), ["10", "ham", "spam"]);
    assert_eq!(set.len(), 3);
    assert_eq!(set.get("spam"), Some(2));
    assert_eq!(set.name(1), Some("ham"));
    assert_eq!(set.name(3), None);

    let unlabelled = [Example { text: "t".into(), text_pair: None, label: None, line: 1 }];
    assert!(LabelSet::from_examples(&unlabelled).is_empty());
}

#[test]
fn label_set_id_and_ids() {
    let set = LabelSet::from_names(vec!["neg".into(), "pos".into()]).unwrap();
    let path = Path::new("dev.tsv");
    assert_eq!(set.id("pos", path, 4).unwrap(), 1);
    let (line, field, message) = input_error(set.id("neutral", path, 9));
    assert_eq!((line, field.as_deref()), (9, Some("label")));
    assert!(message.contains("`neutral`") && message.contains("`neg`, `pos`"), "{message}");
    let error = set.id("neutral", path, 9).unwrap_err().to_string();
    assert!(error.starts_with("dev.tsv:9 (field `label`)"), "{error}");

    assert_eq!(set.ids(&[example("pos", 2), example("neg", 3)], path).unwrap(), [1, 0]);
    let (line, _, _) = input_error(set.ids(&[example("pos", 2), example("other", 3)], path));
    assert_eq!(line, 3);
    let unlabelled = Example { text: "t".into(), text_pair: None, label: None, line: 5 };
    let (line, _, message) = input_error(set.ids(&[unlabelled], path));
    assert_eq!(line, 5);
    assert!(message.contains("no label"), "{message}");
}

#[test]
fn label_set_from_names_rejects_duplicates() {
    assert!(matches!(LabelSet::from_names(vec!["a".into(), "b".into(), "a".into()]), Err(Error::InvalidArgument(_))));
    assert!(matches!(LabelSet::from_names(vec!["a".into(), " ".into()]), Err(Error::InvalidArgument(_))));
}

#[test]
fn label_set_from_file() {
    let dir = Scratch::new("labels");
    let path = dir.file("labels.txt", "zebra\r\n\napple\n  mango  \n");
    let set = LabelSet::from_file(&path).unwrap();
    assert_eq!(set.names(), ["zebra", "apple", "mango"]);
    assert_eq!(set.get("mango"), Some(2));

    let path = dir.file("dup.txt", "a\nb\n\na\n");
    let (line, field, message) = input_error(LabelSet::from_file(&path));
    assert_eq!((line, field.as_deref()), (4, Some("label")));
    assert!(message.contains("first on line 1"), "{message}");

    let path = dir.file("empty.txt", "\n\n");
    let (line, _, _) = input_error(LabelSet::from_file(&path));
    assert_eq!(line, 0);
}

// ------------------------------------------------------------ shared data

fn shared_data() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipping: {} is absent", dir.display());
        None
    }
}

#[test]
fn shared_sst2_dev() {
    let Some(data) = shared_data() else { return };
    let path = data.join("sst2/dev.tsv");
    let opts = ReaderOptions { text: name("sentence"), ..ReaderOptions::default() };
    let examples = read_examples(&path, &opts).unwrap();
    assert_eq!(examples.len(), 872);
    assert_eq!(examples[0].line, 2);
    assert!(examples[0].text.ends_with(' '), "SST-2 sentences keep their trailing space");
    let set = LabelSet::from_examples(&examples);
    assert_eq!(set.names(), ["0", "1"]);
    let ids = set.ids(&examples, &path).unwrap();
    assert_eq!(ids.iter().filter(|&&id| id == 1).count(), 444);
}

#[test]
fn shared_rte_dev() {
    let Some(data) = shared_data() else { return };
    let path = data.join("rte/dev.tsv");
    let opts = ReaderOptions { text: name("sentence1"), text_pair: Some(name("sentence2")), ..ReaderOptions::default() };
    let examples = read_examples(&path, &opts).unwrap();
    assert_eq!(examples.len(), 277);
    assert!(examples.iter().all(|e| e.text_pair.is_some()));
    assert!(examples.iter().any(|e| e.text.contains('"')), "RTE quotes are read as text");
    assert_eq!(LabelSet::from_examples(&examples).names(), ["entailment", "not_entailment"]);
}

#[test]
fn shared_sms_spam_dev() {
    let Some(data) = shared_data() else { return };
    let path = data.join("sms-spam/dev.tsv");
    let opts = ReaderOptions { text: name("SMS"), label: Some(name("Label")), ..ReaderOptions::default() };
    let examples = read_examples(&path, &opts).unwrap();
    assert_eq!(examples.len(), 836);
    let set = LabelSet::from_examples(&examples);
    assert_eq!(set.names(), ["ham", "spam"]);
    let spam = set.ids(&examples, &path).unwrap().iter().filter(|&&id| id == 1).count();
    assert_eq!(spam, 110);
}

#[test]
fn shared_stsb_dev_and_goemotions_labels() {
    let Some(data) = shared_data() else { return };
    let path = data.join("stsb/dev.tsv");
    let opts = options(Format::Tsv, Column::Index(5), Some(Column::Index(6)), Some(Column::Index(4)));
    let examples = read_examples(&path, &opts).unwrap();
    assert_eq!(examples.len(), 1500);
    assert!(examples.iter().all(|e| e.label.as_ref().and_then(|l| l.field()).unwrap().parse::<f64>().is_ok()));

    let labels = LabelSet::from_file(&data.join("goemotions/labels.txt")).unwrap();
    assert_eq!(labels.len(), 28);
    assert!(labels.get("neutral").is_some());
}

#[test]
fn demo_intents() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("demo");
    let train = read_examples(&demo.join("intents-train.tsv"), &ReaderOptions::default()).unwrap();
    let dev = read_examples(&demo.join("intents-dev.tsv"), &ReaderOptions::default()).unwrap();
    assert_eq!((train.len(), dev.len()), (1200, 200));
    let labels = LabelSet::from_examples(&train);
    assert_eq!(labels.len(), 10);
    assert_eq!(LabelSet::from_examples(&dev), labels);
    let train_texts: std::collections::HashSet<&str> = train.iter().map(|e| e.text.as_str()).collect();
    assert!(dev.iter().all(|e| !train_texts.contains(e.text.as_str())));
}

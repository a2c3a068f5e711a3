//! Issue 15, items 5 and 7 (and item 12's gaps in the data paths): predict
//! keeps one output row per input line or stops naming the line; data that
//! used to be misread silently (a header read as an example, a row wider than
//! its header, non-BIO tags, a number among label names) is an error naming
//! the file and line; metrics return errors instead of panicking; long
//! sentences in `predict --words` are windowed with every word tagged; the
//! `vocab.txt` fallback tokenizer gives tokenizer.json's ids.

use std::path::{Path, PathBuf};
use std::process::Output;

use berth::data::BerthTokenizer;
use serde_json::Value;

use crate::common::{fixture_dir, scratch_dir};
use crate::tasks::run;

/// The stdout of a run that must succeed.
fn succeed(out: Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what} failed ({}):\n{stderr}", out.status);
    String::from_utf8(out.stdout).unwrap()
}

/// The one `error:` line of a run that must fail with exit code 1 and no output.
fn fail(out: Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{what}: expected exit code 1; stderr:\n{stderr}");
    assert!(out.stdout.is_empty(), "{what}: wrote output: {}", String::from_utf8_lossy(&out.stdout));
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{what}: expected one error line; stderr:\n{stderr}");
    errors[0].to_owned()
}

fn write(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

/// `berth predict` on the CPU; `extra` adds flags.
fn predict(model: &Path, input: &Path, extra: &[&str]) -> Output {
    run(&[&["predict", "--device", "cpu"][..], extra].concat(), &[("--model", model), ("--input", input)])
}

// ---------------------------------------------------------------- item 5: predict, one row per line

#[test]
fn r15_predict_n_lines_give_n_rows_each_its_own_lines_prediction() {
    let Some(model) = fixture_dir("a-seqcls") else { return };
    let dir = scratch_dir("r15-predict-rows");
    // CRLF, leading white space, non-ASCII, no final line end.
    let lines = ["a charming and often affecting journey", "  padded on the left", "naïve café — 東京", "x", "the last line"];
    let input = write(&dir, "input.txt", format!("{}\r\n{}\n{}\n{}\n{}", lines[0], lines[1], lines[2], lines[3], lines[4]));
    let rows = json_lines(&succeed(predict(&model, &input, &["--batch-size", "2"]), "predict"));
    assert_eq!(rows.len(), lines.len(), "one row per input line");
    // Row i is line i's prediction: the same as predicting that line alone.
    for (i, line) in lines.iter().enumerate() {
        let alone = write(&dir, &format!("line{i}.txt"), format!("{line}\n"));
        let single = json_lines(&succeed(predict(&model, &alone, &[]), "predict one line"));
        assert_eq!(single.len(), 1);
        assert_eq!(rows[i]["label"], single[0]["label"], "row {i}");
        let (a, b) = (rows[i]["logits"].as_array().unwrap(), single[0]["logits"].as_array().unwrap());
        for (x, y) in a.iter().zip(b) {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!((x - y).abs() <= 1e-5 * y.abs().max(1.0), "row {i}: {x} vs {y}");
        }
    }
}

#[test]
fn r15_predict_blank_line_is_an_error_naming_it() {
    let Some(model) = fixture_dir("a-seqcls") else { return };
    let dir = scratch_dir("r15-predict-blank");
    let out = dir.join("out.jsonl");
    for (name, contents, line, what) in [
        ("empty.txt", "good\n\nbad\n", 2, "is blank"),
        ("spaces.txt", "good\nbad\n   \nfine\n", 3, "is blank"),
        ("tab.txt", "good\n\t\nbad\n", 2, "holds only white space and TABs"),
        ("trailing.txt", "good\nbad\n\n", 3, "is blank"),
    ] {
        let input = write(&dir, name, contents);
        let e = fail(run(&["predict", "--device", "cpu"], &[("--model", &model), ("--input", &input), ("--output", &out)]), name);
        assert_eq!(
            e,
            format!(
                "error: {}:{line}: the line {what}; every line must hold one example, since predict writes one row per line",
                input.display()
            )
        );
        assert!(!out.exists(), "{name}: no output file is written");
    }
}

#[test]
fn r15_predict_pair_with_a_blank_half_is_an_error() {
    let Some(model) = fixture_dir("a-pair") else { return };
    let dir = scratch_dir("r15-predict-pair");
    let input = write(&dir, "pairs.txt", "A man sleeps.\tNobody is awake.\nA dog runs.\t\n");
    let e = fail(predict(&model, &input, &[]), "text<TAB>");
    assert_eq!(
        e,
        format!(
            "error: {}:2 (field `text_pair`): the text after the TAB is blank; a line is a text, or a text, a TAB and its pair",
            input.display()
        )
    );
    let input = write(&dir, "first.txt", "  \tNobody is awake.\n");
    let e = fail(predict(&model, &input, &[]), "<TAB>text");
    assert_eq!(
        e,
        format!(
            "error: {}:1 (field `text`): the text before the TAB is blank; a line is a text, or a text, a TAB and its pair",
            input.display()
        )
    );
    // The good pair alone predicts, as a pair: one row.
    let input = write(&dir, "good.txt", "A man sleeps.\tNobody is awake.\n");
    assert_eq!(json_lines(&succeed(predict(&model, &input, &[]), "pair")).len(), 1);
}

#[test]
fn r15_predict_line_with_two_tabs_is_an_error_naming_it() {
    let Some(model) = fixture_dir("a-pair") else { return };
    let dir = scratch_dir("r15-predict-tabs");
    let input = write(&dir, "input.txt", "a\tb\na\tb\tc\n");
    let e = fail(predict(&model, &input, &[]), "a<TAB>b<TAB>c");
    assert_eq!(
        e,
        format!(
            "error: {}:2: the line has 2 TABs; a line is a text, or a text, one TAB and its pair (a TAB inside a text must be replaced)",
            input.display()
        )
    );
}

#[test]
fn r15_predict_words_blank_line_is_an_error_and_n_lines_give_n_rows() {
    let Some(model) = fixture_dir("a-tokcls") else { return };
    let dir = scratch_dir("r15-predict-words");
    let input = write(&dir, "words.txt", "EU rejects German call\n \t \nPeter Blackburn\n");
    let e = fail(predict(&model, &input, &["--words"]), "--words blank line");
    assert_eq!(
        e,
        format!(
            "error: {}:2 (field `word`): the line is blank; every line must hold a sentence of at least one word, since predict writes one row per line",
            input.display()
        )
    );
    let lines = ["EU rejects German call", "Peter\tBlackburn", "a", "Zürich   is far"];
    let input = write(&dir, "good.txt", lines.join("\n"));
    let rows = json_lines(&succeed(predict(&model, &input, &["--words"]), "--words"));
    assert_eq!(rows.len(), lines.len());
    for (row, line) in rows.iter().zip(lines) {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(row["words"], serde_json::json!(words), "{line}");
        assert_eq!(row["tags"].as_array().unwrap().len(), words.len(), "{line}");
    }
}

// ---------------------------------------------------------------- item 12: long sentences in predict --words

#[test]
fn r15_predict_words_windows_long_sentences_and_tags_every_word() {
    let Some(model) = fixture_dir("a-tokcls") else { return };
    let dir = scratch_dir("r15-words-windows");
    let vocabulary = ["Jukka", "Hämäläinen", "visited", "Washington-based", "Lagos", "unbelievably", ",", "and", "the", "EU"];
    let long: Vec<String> = (0..70).map(|i| vocabulary[(i * 7 + i / 3) % vocabulary.len()].to_owned()).collect();
    let short = ["Peter", "Blackburn", "said"];
    let input = write(&dir, "input.txt", format!("{}\n{}\n{}\n", short.join(" "), long.join(" "), short.join(" ")));
    let rows = json_lines(&succeed(predict(&model, &input, &["--words", "--max-length", "16"]), "--words, long sentence"));
    assert_eq!(rows.len(), 3, "one row per line");
    assert_eq!(rows[0], rows[2], "the rows after the long sentence stay aligned");
    assert_eq!(rows[1]["words"], serde_json::json!(long));
    let tags: Vec<String> = rows[1]["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_owned()).collect();
    assert_eq!(tags.len(), long.len(), "every word of the long sentence has a tag");

    // Each window is encoded on its own, so predicting a window's words as a
    // sentence of their own gives the tags of the words the window owns.
    let tokenizer = BerthTokenizer::from_dir(&model, 16).unwrap();
    let windows = berth::data::align::sentence_windows(&long, &tokenizer).unwrap();
    assert!(windows.len() >= 4, "70 words at 16 tokens make several windows, got {}", windows.len());
    let window_lines: Vec<String> = windows.iter().map(|w| long[w.start..w.end].join(" ")).collect();
    let window_input = write(&dir, "windows.txt", window_lines.join("\n") + "\n");
    let window_rows = json_lines(&succeed(predict(&model, &window_input, &["--words", "--max-length", "16"]), "--words, windows"));
    let mut owned = vec![0; long.len()];
    for (w, row) in windows.iter().zip(&window_rows) {
        let window_tags = row["tags"].as_array().unwrap();
        assert_eq!(window_tags.len(), w.end - w.start);
        for word in w.keep_start..w.keep_end {
            assert_eq!(window_tags[word - w.start].as_str().unwrap(), tags[word], "word {word} ({})", long[word]);
            owned[word] += 1;
        }
    }
    assert!(owned.iter().all(|&n| n == 1), "each word is tagged by exactly one window: {owned:?}");
    // The model is random: the tags are not all the same, so the comparison above has teeth.
    assert!(tags.iter().any(|t| t != &tags[0]), "{tags:?}");
}

// ---------------------------------------------------------------- item 12: the vocab.txt fallback tokenizer

/// A copy of a fixture model folder without tokenizer.json (the weights
/// linked, not copied), so the tokenizer is built from vocab.txt.
fn without_tokenizer_json(model: &Path, dir: &Path) -> PathBuf {
    let copy = dir.join("vocab-only");
    std::fs::create_dir_all(&copy).unwrap();
    for entry in std::fs::read_dir(model).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "tokenizer.json" || name.to_string_lossy().starts_with("reference") {
            continue;
        }
        std::fs::copy(entry.path(), copy.join(&name)).unwrap();
    }
    assert!(copy.join("vocab.txt").is_file() && !copy.join("tokenizer.json").exists());
    copy
}

const VARIED: [&str; 7] = [
    "naïve café owners in Zürich don't like 18th-century résumés — 東京 is far!",
    "Ünïcödé ÀÉÎÕÜ ñ ß ﬁ",
    "中文分词测试：北京欢迎你。日本語のテキスト",
    "Punctuation!?... (brackets) [square] {curly} \"quotes\" 'single' -- a/b\\c @#$%^&*",
    "unaffable Washington-based subword tokenization",
    "   leading and trailing spaces   ",
    "MiXeD CaSe and numbers 3.14159 1,000,000",
];

#[test]
fn r15_vocab_txt_fallback_gives_tokenizer_json_ids_and_predicts_the_same() {
    let (Some(seqcls), Some(tokcls)) = (fixture_dir("a-seqcls"), fixture_dir("a-tokcls")) else { return };
    let dir = scratch_dir("r15-vocab-fallback");
    let vocab_only = without_tokenizer_json(&seqcls, &dir.join("seqcls"));
    let (from_json, from_vocab) = (BerthTokenizer::from_dir(&seqcls, 64).unwrap(), BerthTokenizer::from_dir(&vocab_only, 64).unwrap());
    for text in VARIED {
        let (a, b) = (from_vocab.encode(text, None).unwrap(), from_json.encode(text, None).unwrap());
        assert_eq!(a, b, "{text}");
        assert!(a.ids.len() > 4, "{text}: {:?}", a.ids);
        let words: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
        assert_eq!(from_vocab.encode_words(&words).unwrap(), from_json.encode_words(&words).unwrap(), "{text} as words");
    }
    assert_eq!(from_vocab.encode(VARIED[0], Some(VARIED[2])).unwrap(), from_json.encode(VARIED[0], Some(VARIED[2])).unwrap());
    // Against transformers' own word pieces for the same vocabulary, where the fixture has them.
    if let Some(minilm) = fixture_dir("minilm-l6") {
        let reference: Value = serde_json::from_str(&std::fs::read_to_string(minilm.join("reference.json")).unwrap()).unwrap();
        for (text, tokens) in reference["texts"].as_array().unwrap().iter().zip(reference["tokens"].as_array().unwrap()) {
            let want: Vec<&str> = tokens.as_array().unwrap().iter().map(|t| t.as_str().unwrap()).filter(|t| *t != "[PAD]").collect();
            let ids = from_vocab.encode(text.as_str().unwrap(), None).unwrap().ids;
            let got: Vec<String> = ids.iter().map(|&id| from_vocab.inner().id_to_token(id).unwrap()).collect();
            assert_eq!(got, want, "{text}");
        }
    }

    // predict through the fallback writes the same bytes as through tokenizer.json.
    let input = write(&dir, "input.txt", VARIED.join("\n") + "\n");
    let want = succeed(predict(&seqcls, &input, &[]), "predict, tokenizer.json");
    assert_eq!(succeed(predict(&vocab_only, &input, &[]), "predict, vocab.txt"), want);
    assert_eq!(json_lines(&want).len(), VARIED.len());
    let tok_vocab_only = without_tokenizer_json(&tokcls, &dir.join("tokcls"));
    let want = succeed(predict(&tokcls, &input, &["--words"]), "predict --words, tokenizer.json");
    assert_eq!(succeed(predict(&tok_vocab_only, &input, &["--words"]), "predict --words, vocab.txt"), want);
}

#[test]
fn r15_vocab_txt_fallback_keeps_case_when_tokenizer_config_says_so() {
    let Some(seqcls) = fixture_dir("a-seqcls") else { return };
    let dir = scratch_dir("r15-vocab-cased");
    let cased = without_tokenizer_json(&seqcls, &dir);
    let config_path = cased.join("tokenizer_config.json");
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["do_lower_case"] = Value::Bool(false);
    std::fs::write(&config_path, config.to_string()).unwrap();
    let tokenizer = BerthTokenizer::from_dir(&cased, 32).unwrap();
    let tokens = |text: &str| -> Vec<String> {
        tokenizer.encode(text, None).unwrap().ids.iter().map(|&id| tokenizer.inner().id_to_token(id).unwrap()).collect()
    };
    // The uncased vocabulary has no `Paris`; a cased reading does not lower-case it into `paris`.
    assert_eq!(tokens("Paris is nice"), ["[CLS]", "[UNK]", "is", "nice", "[SEP]"]);
    config["do_lower_case"] = Value::Bool(true);
    std::fs::write(&config_path, config.to_string()).unwrap();
    let tokenizer = BerthTokenizer::from_dir(&cased, 32).unwrap();
    let ids = tokenizer.encode("Paris is nice", None).unwrap().ids;
    assert_eq!(tokenizer.inner().id_to_token(ids[1]).as_deref(), Some("paris"));
    // A value that is not a boolean is an error naming the file.
    std::fs::write(&config_path, r#"{"do_lower_case": "yes"}"#).unwrap();
    let e = BerthTokenizer::from_dir(&cased, 32).err().unwrap().to_string();
    assert_eq!(e, format!("{}: tokenizer: do_lower_case must be true or false, found \"yes\"", config_path.display()));
}

// ---------------------------------------------------------------- item 12: metrics return errors

#[test]
fn r15_classification_report_on_an_id_without_a_label_is_an_error() {
    let labels = ["a".to_owned(), "b".to_owned()];
    let e = berth::metrics::classification_report(&[0, 1], &[0, 3], &labels).unwrap_err();
    assert!(matches!(e, berth::Error::InvalidArgument(_)), "{e:?}");
    assert_eq!(e.to_string(), "invalid argument: classification_report: y_pred[1] = 3 is not a label id (there are 2 labels)");
    let e = berth::metrics::classification_report(&[0, 1, 0], &[0, 1], &labels).unwrap_err();
    assert_eq!(e.to_string(), "invalid argument: classification_report: y_true has 3 samples but y_pred has 2");
    assert_eq!(berth::metrics::classification_report(&[0, 1], &[0, 0], &labels).unwrap().accuracy, 0.5);
}

// ---------------------------------------------------------------- item 7: data that was silently misread

const TRAIN_FLAGS: [&str; 10] = ["--device", "cpu", "--batch-size", "4", "--max-length", "16", "--max-steps", "1", "--seed", "1"];

/// `berth train` on the a-seqcls fixture with `extra` flags.
fn train(model: &Path, train: &Path, out: &Path, extra: &[&str], eval: Option<&Path>) -> Output {
    let mut paths = vec![("--model", model), ("--train", train), ("--output", out)];
    if let Some(eval) = eval {
        paths.push(("--eval", eval));
    }
    run(&[&["train"][..], &TRAIN_FLAGS, extra].concat(), &paths)
}

/// Labels in the trained model's config.json, in id order.
fn trained_labels(out: &Path) -> Vec<String> {
    let config: Value = serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    let id2label = config["id2label"].as_object().unwrap();
    (0..id2label.len()).map(|i| id2label[&i.to_string()].as_str().unwrap().to_owned()).collect()
}

const ASK: &str = "Columns given by index read the first row as data unless --header says otherwise: \
                   pass --header true to skip it, or --header false to keep it";

#[test]
fn r15_header_read_by_index_is_refused_until_header_is_given() {
    let Some(model) = fixture_dir("a-seqcls") else { return };
    let dir = scratch_dir("r15-header-guess");
    let rows = "a lovely film\tpos\nan awful film\tneg\na great cast\tpos\na dull plot\tneg\n";
    let with_header = write(&dir, "train.tsv", format!("sentence\tlabel\n{rows}"));
    let by_index = ["--text-column", "0", "--label-column", "1"];
    let e = fail(train(&model, &with_header, &dir.join("out"), &by_index, None), "header read as data");
    assert_eq!(
        e,
        format!(
            "error: {}:1: the first row looks like a header, not an example (text \"sentence\", label \"label\"): \
             its label `label` occurs in no other row. {ASK}",
            with_header.display()
        )
    );
    assert!(!dir.join("out").exists());

    // Against a --labels file, the first row's label must be one of them.
    let labels = write(&dir, "labels.txt", "neg\npos\n");
    let labels_flag = labels.to_str().unwrap();
    let e = fail(train(&model, &with_header, &dir.join("out"), &[&by_index[..], &["--labels", labels_flag]].concat(), None), "--labels");
    assert_eq!(
        e,
        format!(
            "error: {}:1: the first row looks like a header, not an example (text \"sentence\", label \"label\"): \
             its label `label` is not one of the labels (`neg`, `pos`). {ASK}",
            with_header.display()
        )
    );

    // An eval file with a header, against the training labels.
    let headerless = write(&dir, "plain.tsv", rows);
    let e = fail(train(&model, &headerless, &dir.join("out"), &by_index, Some(&with_header)), "eval header");
    assert!(e.starts_with(&format!("error: {}:1: the first row looks like a header", with_header.display())), "{e}");

    // --header true skips the row: the classes are the data's.
    let out = dir.join("skipped");
    succeed(train(&model, &with_header, &out, &[&by_index[..], &["--header", "true"]].concat(), None), "--header true");
    assert_eq!(trained_labels(&out), ["neg", "pos"]);
    // --header false keeps it as an example, as asked.
    let out = dir.join("kept");
    succeed(train(&model, &with_header, &out, &[&by_index[..], &["--header", "false"]].concat(), None), "--header false");
    assert_eq!(trained_labels(&out), ["label", "neg", "pos"]);
    // A headerless file whose first label recurs reads as before.
    let out = dir.join("plain");
    succeed(train(&model, &headerless, &out, &by_index, None), "headerless");
    assert_eq!(trained_labels(&out), ["neg", "pos"]);
}

#[test]
fn r15_header_guess_spares_numeric_labels_and_checks_regression_and_multi_label() {
    let Some(model) = fixture_dir("a-seqcls") else { return };
    let dir = scratch_dir("r15-header-tasks");
    let by_index = ["--text-column", "0", "--label-column", "1"];
    // Numeric class ids: a first label seen nowhere else is still data.
    let numeric = write(&dir, "numeric.tsv", "a rare one\t2\nfine\t0\ngood\t1\nok\t0\n");
    let out = dir.join("numeric");
    succeed(train(&model, &numeric, &out, &by_index, None), "numeric labels");
    assert_eq!(trained_labels(&out), ["0", "1", "2"]);

    // Regression: a header's label is not a number.
    let sts = write(&dir, "sts.tsv", "sentence1\tscore\tsentence2\na cat\t4.5\ta kitten\na dog\t1.0\ta car\n");
    let regression = ["--task", "regression", "--text-column", "0", "--text-pair-column", "2", "--label-column", "1"];
    let e = fail(train(&model, &sts, &dir.join("out"), &regression, None), "regression header");
    assert_eq!(
        e,
        format!(
            "error: {}:1: the first row looks like a header, not an example (text \"sentence1\", text_pair \"sentence2\", \
             label \"score\"): its label `score` is not a number. {ASK}",
            sts.display()
        )
    );

    // Multi-label ids: each id of the first row is checked, not the joined field.
    let multi = ["--task", "multi-label", "--text-column", "0", "--label-column", "1"];
    let ids = write(&dir, "ids.tsv", "furious and glad\t0,1\tid1\nglad\t1\tid2\nfurious\t0\tid3\n");
    let out = dir.join("multi");
    succeed(train(&model, &ids, &out, &multi, None), "multi-label ids");
    assert_eq!(trained_labels(&out), ["0", "1"]);
    let headed = write(&dir, "headed.tsv", "text\tlabels\tid\nglad\tjoy\tid2\nfurious\tanger,joy\tid3\n");
    let e = fail(train(&model, &headed, &dir.join("out"), &multi, None), "multi-label header");
    assert_eq!(
        e,
        format!(
            "error: {}:1: the first row looks like a header, not an example (text \"text\", label \"labels\"): \
             its label `labels` occurs in no other row. {ASK}",
            headed.display()
        )
    );
}

#[test]
fn r15_tsv_row_with_more_fields_than_the_header_is_an_error() {
    let Some(model) = fixture_dir("a-seqcls") else { return };
    let dir = scratch_dir("r15-wide-row");
    // An unquoted TAB inside the text of line 3 would make `film` its label.
    let path = write(&dir, "train.tsv", "text\tlabel\na lovely film\tpos\nan awful\tfilm\tneg\na dull plot\tneg\n");
    let e = fail(train(&model, &path, &dir.join("out"), &[], None), "wide row");
    assert_eq!(
        e,
        format!(
            "error: {}:3: the row has 3 fields but the header has 2 (`text`, `label`); a TAB inside a text splits it and \
             shifts the fields after it: remove the TAB from the text, or quote the field and pass --quoting true",
            path.display()
        )
    );
    // CSV: the same for a comma outside quotes.
    let path = write(&dir, "train.csv", "text,label\n\"a lovely, warm film\",pos\nan awful, dull film,neg\n");
    let e = fail(train(&model, &path, &dir.join("out"), &[], None), "wide csv row");
    assert_eq!(
        e,
        format!(
            "error: {}:3: the row has 3 fields but the header has 2 (`text`, `label`); a comma inside a text splits it and \
             shifts the fields after it: quote the whole field",
            path.display()
        )
    );
    // Quoted, the TAB is part of the text and the row reads.
    let path = write(&dir, "quoted.tsv", "text\tlabel\na lovely film\tpos\n\"an awful\tfilm\"\tneg\n");
    let out = dir.join("quoted");
    succeed(train(&model, &path, &out, &["--quoting", "true"], None), "quoted TAB");
    assert_eq!(trained_labels(&out), ["neg", "pos"]);
}

#[test]
fn r15_conll_tag_that_is_not_bio_is_an_error_naming_the_line() {
    let Some(model) = fixture_dir("a-seqcls") else { return };
    let dir = scratch_dir("r15-conll-tags");
    let path = write(&dir, "train.txt", "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP PERSON\nBlackburn NNP I-NP I-PER\n");
    let token = ["--task", "token-classification", "--format", "conll"];
    let e = fail(train(&model, &path, &dir.join("out"), &token, None), "non-BIO tag");
    assert_eq!(
        e,
        format!(
            "error: {}:4 (field `tag`): `PERSON` (the last column) is not a BIO tag; every tag must be `O`, `B-TYPE` or `I-TYPE`",
            path.display()
        )
    );
    // A POS column chosen as the tag is refused the same way.
    let good = write(&dir, "good.txt", "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n");
    let e = fail(train(&model, &good, &dir.join("out"), &[&token[..], &["--tag-column", "1"]].concat(), None), "POS tags");
    assert_eq!(
        e,
        format!(
            "error: {}:1 (field `tag`): `NNP` (column 1, from --tag-column) is not a BIO tag; every tag must be `O`, `B-TYPE` or `I-TYPE`",
            good.display()
        )
    );
}

#[test]
fn r15_jsonl_number_label_among_names_is_an_error_naming_the_line() {
    let Some(model) = fixture_dir("a-seqcls") else { return };
    let dir = scratch_dir("r15-jsonl-labels");
    let path = write(
        &dir,
        "train.jsonl",
        "{\"text\": \"a lovely film\", \"label\": \"pos\"}\n{\"text\": \"an awful film\", \"label\": \"neg\"}\n{\"text\": \"a great cast\", \"label\": 1}\n",
    );
    let e = fail(train(&model, &path, &dir.join("out"), &[], None), "number among names");
    assert_eq!(
        e,
        format!(
            "error: {}:3 (field `label`): the label 1 is a JSON number, but other labels are names (line 1: \"pos\"); \
             write every label as a string, or every label as a number",
            path.display()
        )
    );
    // Every label numeric: fine, as numbers or numeric strings.
    let path = write(
        &dir,
        "numeric.jsonl",
        "{\"text\": \"a lovely film\", \"label\": 1}\n{\"text\": \"an awful film\", \"label\": \"0\"}\n{\"text\": \"a great cast\", \"label\": 1}\n",
    );
    let out = dir.join("numeric");
    succeed(train(&model, &path, &out, &[], None), "numeric labels");
    assert_eq!(trained_labels(&out), ["0", "1"]);
}

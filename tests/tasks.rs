//! The tasks beyond single-label classification, end to end on the tiny
//! a-seqcls fixture (its encoder, with a new head for each task): multi-label
//! with tuned thresholds, token classification from CoNLL files, regression on
//! sentence pairs, freezing, the input errors each task can meet, and (with
//! BERTH_PYTHON) that the exports load in transformers.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::common::{fixture_dir, scratch_dir};

fn berth() -> Command {
    Command::new(env!("CARGO_BIN_EXE_berth"))
}

/// Runs berth with `args`, then `flag path` pairs.
pub(crate) fn run(args: &[&str], paths: &[(&str, &Path)]) -> Output {
    let mut cmd = berth();
    cmd.args(args);
    for (flag, path) in paths {
        cmd.arg(flag).arg(path);
    }
    cmd.output().unwrap()
}

fn succeed(out: Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{what} failed:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{what} panicked:\n{stderr}");
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn fail(out: Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "{what} should fail");
    assert!(!stderr.contains("panicked"), "{what} panicked:\n{stderr}");
    stderr
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

const TRAIN_FLAGS: [&str; 12] =
    ["--device", "cpu", "--batch-size", "8", "--lr", "1e-3", "--max-length", "24", "--seed", "3", "--logging-steps", "1"];

// ---------------------------------------------------------------- multi-label

const EMOTIONS: [&str; 4] = ["anger", "joy", "fear", "neutral"];
const CUES: [&str; 4] = ["furious", "delighted", "terrified", "okay"];

/// GoEmotions-style rows: text, comma-separated label ids, an id column.
fn emotion_rows(n: usize, start: usize) -> String {
    (start..start + n)
        .map(|i| {
            let a = i % 4;
            let b = (i / 4) % 4;
            let (text, ids) = if i % 3 == 0 && a != b {
                (format!("I am {} and {} today {i}", CUES[a], CUES[b]), format!("{a},{b}"))
            } else {
                (format!("I am {} today {i}", CUES[a]), a.to_string())
            };
            format!("{text}\t{ids}\tid{i}\n")
        })
        .collect()
}

#[test]
fn t6_multi_label_trains_tunes_thresholds_and_predict_uses_them() {
    let Some(model) = fixture_dir("a-seqcls") else { return };
    let dir = scratch_dir("t6-multilabel");
    let (train, dev, labels, out) = (dir.join("train.tsv"), dir.join("dev.tsv"), dir.join("labels.txt"), dir.join("out"));
    std::fs::write(&train, emotion_rows(48, 0)).unwrap();
    std::fs::write(&dev, emotion_rows(24, 100)).unwrap();
    std::fs::write(&labels, EMOTIONS.join("\n")).unwrap();
    let stdout = succeed(
        run(
            &[
                &["train", "--task", "multi-label", "--header", "false", "--text-column", "0", "--label-column", "1"][..],
                &TRAIN_FLAGS,
                &["--max-steps", "12", "--tune-thresholds"],
            ]
            .concat(),
            &[("--model", &model), ("--train", &train), ("--eval", &dev), ("--labels", &labels), ("--output", &out)],
        ),
        "multi-label training",
    );
    assert!(stdout.contains("samples avg") && stdout.contains("hamming loss"), "the report is multi-label:\n{stdout}");
    let config = read_json(&out.join("config.json"));
    assert_eq!(config["problem_type"], "multi_label_classification");
    assert_eq!(config["id2label"]["2"], "fear");
    let settings = read_json(&out.join("berth-inference.json"));
    let thresholds: Vec<f64> = settings["thresholds"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(thresholds.len(), 4);
    assert!(thresholds.iter().all(|t| (0.0..=1.0).contains(t)), "{thresholds:?}");
    // The best model was chosen by tuned macro F1, and its folder keeps its thresholds.
    assert_eq!(read_json(&out.join("best/berth-inference.json"))["thresholds"].as_array().map(Vec::len), Some(4));
    let metrics = read_json(&out.join("metrics.json"));
    for key in ["micro avg", "macro avg", "weighted avg", "samples avg", "subset_accuracy", "hamming_loss", "thresholds"] {
        assert!(metrics.get(key).is_some(), "metrics.json lacks `{key}`: {metrics}");
    }

    // predict applies the saved thresholds, not 0.5.
    let input = dir.join("input.txt");
    std::fs::write(&input, "I am furious today\nI am delighted and terrified today\nokay\n").unwrap();
    let lines = succeed(run(&["predict", "--device", "cpu"], &[("--model", &out), ("--input", &input)]), "predict");
    for line in lines.lines() {
        let p: Value = serde_json::from_str(line).unwrap();
        let probs: Vec<f64> = p["probabilities"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let want: Vec<&str> = EMOTIONS.iter().zip(&probs).zip(&thresholds).filter(|((_, p), t)| *p >= *t).map(|((l, _), _)| *l).collect();
        let got: Vec<&str> = p["labels"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(got, want, "labels at or above their tuned thresholds: {line}");
    }
}

/// `--threshold-min-positives`: labels with fewer tuning positives than it
/// share one threshold, tuned on their pooled cells; bad values are errors.
#[test]
fn t6_labels_with_few_tuning_positives_share_a_pooled_threshold() {
    let Some(model) = fixture_dir("a-seqcls") else { return };
    let dir = scratch_dir("t6-pooled-thresholds");
    let (train, dev, labels) = (dir.join("train.tsv"), dir.join("dev.tsv"), dir.join("labels.txt"));
    std::fs::write(&train, emotion_rows(48, 0)).unwrap();
    // "fear" (2) only in rows 102 and 110 of the 16 dev rows: two positives.
    let dev_rows: String = emotion_rows(16, 100)
        .lines()
        .filter(|l| !l.contains("terrified") || l.contains("today 102") || l.contains("today 110"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&dev, &dev_rows).unwrap();
    let fear_positives = dev_rows.lines().filter(|l| l.split('\t').nth(1).unwrap().split(',').any(|id| id == "2")).count();
    assert!((1..3).contains(&fear_positives), "{fear_positives} fear rows in\n{dev_rows}");
    std::fs::write(&labels, EMOTIONS.join("\n")).unwrap();
    let train_with = |out: &Path, extra: &[&str]| {
        run(
            &[
                &["train", "--task", "multi-label", "--header", "false", "--text-column", "0", "--label-column", "1"][..],
                &TRAIN_FLAGS,
                &["--max-steps", "6"],
                extra,
            ]
            .concat(),
            &[("--model", &model), ("--train", &train), ("--eval", &dev), ("--labels", &labels), ("--output", out)],
        )
    };
    let thresholds = |out: &Path| -> Vec<f64> {
        read_json(&out.join("berth-inference.json"))["thresholds"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()
    };
    // Every label alone, then every label pooled (none has 100 positives).
    let (alone, pooled, default) = (dir.join("alone"), dir.join("pooled"), dir.join("default"));
    succeed(train_with(&alone, &["--tune-thresholds", "--threshold-min-positives", "1"]), "tuned alone");
    let out = train_with(&pooled, &["--tune-thresholds", "--threshold-min-positives", "100"]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    succeed(out, "tuned pooled");
    assert!(stderr.contains("4 labels with fewer than 100 positives share one pooled threshold"), "{stderr}");
    let all = thresholds(&pooled);
    assert!(all.iter().all(|&t| t == all[0]), "one shared cut: {all:?}");
    // The default, 5: fear (two positives) is pooled, and alone it had its own cut.
    let out = train_with(&default, &["--tune-thresholds"]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    succeed(out, "tuned with the default");
    assert!(stderr.contains("with fewer than 5 positives share one pooled threshold"), "{stderr}");
    assert_ne!(thresholds(&alone), thresholds(&default), "pooling changed a cut");

    let err = fail(train_with(&dir.join("zero"), &["--tune-thresholds", "--threshold-min-positives", "0"]), "min 0");
    assert!(err.contains("--threshold-min-positives must be at least 1"), "{err}");
    let err = fail(train_with(&dir.join("untuned"), &["--threshold-min-positives", "3"]), "without tuning");
    assert!(err.contains("--threshold-min-positives applies to --tune-thresholds"), "{err}");
}

/// `--head-bias-init prior` starts a new multi-label head at each label's
/// training log-odds (with a learning rate too small to move it in one step).
#[test]
fn t6_prior_head_bias_starts_at_the_label_log_odds() {
    let Some(model) = fixture_dir("a-seqcls") else { return };
    let dir = scratch_dir("t6-prior-bias");
    let (train, labels, out) = (dir.join("train.tsv"), dir.join("labels.txt"), dir.join("out"));
    let rows = emotion_rows(48, 0);
    std::fs::write(&train, &rows).unwrap();
    std::fs::write(&labels, EMOTIONS.join("\n")).unwrap();
    let mut positives = [0usize; 4];
    for line in rows.lines() {
        for id in line.split('\t').nth(1).unwrap().split(',') {
            positives[id.parse::<usize>().unwrap()] += 1;
        }
    }
    let flags =
        ["--device", "cpu", "--batch-size", "8", "--lr", "1e-9", "--max-length", "24", "--max-steps", "1", "--head-bias-init", "prior"];
    let stderr = String::from_utf8_lossy(
        &run(
            &[&["train", "--task", "multi-label", "--header", "false", "--text-column", "0", "--label-column", "1"][..], &flags].concat(),
            &[("--model", &model), ("--train", &train), ("--labels", &labels), ("--output", &out)],
        )
        .stderr,
    )
    .to_string();
    assert!(stderr.contains("head bias initialised from the training labels' prior"), "{stderr}");
    let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let view = st.tensor("classifier.bias").unwrap();
    assert_eq!(view.dtype(), safetensors::Dtype::F32);
    let bias: Vec<f32> = view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    for (label, (&got, &count)) in bias.iter().zip(&positives).enumerate() {
        let p = (count as f64 + 0.5) / 49.0;
        let want = (p / (1.0 - p)).ln();
        assert!((got as f64 - want).abs() < 1e-5, "label {label}: bias {got}, log-odds {want} ({count} of 48 rows)");
    }

    let bad = fail(
        run(
            &[&["train", "--head-bias-init", "mean"][..], &TRAIN_FLAGS, &["--max-steps", "1"]].concat(),
            &[("--model", &model), ("--train", &train), ("--output", &dir.join("bad"))],
        ),
        "an unknown --head-bias-init",
    );
    assert!(bad.contains("--head-bias-init") && bad.contains("zero or prior"), "{bad}");
}

/// The three multi-label layouts (id lists, JSON arrays of names, 0/1
/// columns) read into the same targets.
#[test]
fn t6_multi_label_layouts_agree() {
    let Some(model) = fixture_dir("a-seqcls") else { return };
    let dir = scratch_dir("t6-multilabel-layouts");
    let rows = [("calm day", vec![3usize]), ("angry and scared", vec![0, 2]), ("nothing at all", vec![])];
    let ids: String =
        rows.iter().map(|(t, l)| format!("{t}\t{}\n", l.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(","))).collect();
    let jsonl: String = rows
        .iter()
        .map(|(t, l)| serde_json::json!({"text": t, "label": l.iter().map(|&i| EMOTIONS[i]).collect::<Vec<_>>()}).to_string() + "\n")
        .collect();
    let columns: String = format!("text\t{}\n", EMOTIONS.join("\t"))
        + &rows
            .iter()
            .map(|(t, l)| format!("{t}\t{}\n", (0..4).map(|i| if l.contains(&i) { "1" } else { "0" }).collect::<Vec<_>>().join("\t")))
            .collect::<String>();
    let labels = dir.join("labels.txt");
    std::fs::write(&labels, EMOTIONS.join("\n")).unwrap();
    let files = [
        ("ids.tsv", ids, "0", "1", Some("false")),
        ("names.jsonl", jsonl, "text", "label", None),
        ("columns.tsv", columns, "text", "anger,joy,fear,neutral", None),
    ];
    let tokenizer = berth::data::BerthTokenizer::from_dir(&model, 16).unwrap();
    let set = berth::data::LabelSet::from_file(&labels).unwrap();
    let mut all = Vec::new();
    for (name, text, text_col, label_col, header) in &files {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let spec = berth::train::dataset::DataSpec {
            task: berth::model::task::Task::MultiLabel,
            columns: berth::train::dataset::ColumnChoice {
                format: None,
                text: text_col,
                text_pair: None,
                label: label_col,
                header: header.map(|h| h == "true"),
                quoting: None,
            },
            tag_column: None,
            label_separator: ",",
            alignment: berth::data::align::Alignment::First,
            long_text: None,
        };
        let raw = spec.read(&path).unwrap();
        let data = spec.encode(&path, &raw, &set, &tokenizer).unwrap();
        let berth::train::dataset::Targets::Multi(targets) = data.targets else { panic!("{name}: not multi-label targets") };
        all.push(targets);
    }
    let want: Vec<Vec<bool>> = rows.iter().map(|(_, l)| (0..4).map(|i| l.contains(&i)).collect()).collect();
    for (targets, (name, ..)) in all.iter().zip(&files) {
        assert_eq!(targets, &want, "{name}");
    }
}

// ---------------------------------------------------------------- token classification

const PEOPLE: [&str; 4] = ["Jukka", "Hämäläinen", "Maria", "Okonkwo"];
const PLACES: [&str; 3] = ["Washington-based", "Helsinki", "Lagos"];

pub(crate) fn conll_sentences(n: usize, start: usize) -> String {
    let mut text = String::from("-DOCSTART- -X- -X- O\n\n");
    for i in start..start + n {
        let person = PEOPLE[i % 4];
        let other = PEOPLE[(i + 1) % 4];
        let place = PLACES[i % 3];
        text.push_str(&format!(
            "{person} NNP B-NP B-PER\n{other} NNP I-NP I-PER\nvisited VBD B-VP O\n{place} NNP B-NP B-LOC\nunbelievably RB B-ADVP O\n. . O O\n\n"
        ));
    }
    text
}

#[test]
fn t6_token_classification_end_to_end() {
    let Some(model) = fixture_dir("a-seqcls") else { return };
    let dir = scratch_dir("t6-ner");
    let (train, dev, out) = (dir.join("train.txt"), dir.join("dev.txt"), dir.join("out"));
    std::fs::write(&train, conll_sentences(40, 0)).unwrap();
    std::fs::write(&dev, conll_sentences(12, 50)).unwrap();
    let stdout = succeed(
        run(
            &[
                &["train", "--task", "token-classification", "--format", "conll", "--alignment", "all"][..],
                &TRAIN_FLAGS,
                &["--max-steps", "120"],
            ]
            .concat(),
            &[("--model", &model), ("--train", &train), ("--eval", &dev), ("--output", &out)],
        ),
        "token training",
    );
    assert!(stdout.contains("micro avg"), "{stdout}");
    let config = read_json(&out.join("config.json"));
    assert_eq!(config["architectures"][0], "BertForTokenClassification");
    // seqeval's classification_report(output_dict=True) shape.
    let metrics = read_json(&out.join("metrics.json"));
    let keys: Vec<&String> = metrics.as_object().unwrap().keys().collect();
    for key in ["LOC", "PER", "micro avg", "macro avg", "weighted avg"] {
        assert!(metrics[key]["f1-score"].is_number(), "metrics.json[{key}] in {keys:?}");
    }
    assert_eq!(metrics["PER"]["support"], 12, "one PER entity per dev sentence");
    // The pattern is easy: after 120 steps the model finds most entities.
    assert!(metrics["micro avg"]["f1-score"].as_f64().unwrap() > 0.5, "entity F1 {}", metrics["micro avg"]);

    // predict --words: word-level tags and spans over the words.
    let input = dir.join("words.txt");
    std::fs::write(&input, "Maria Okonkwo visited Lagos unbelievably .\nJukka visited Helsinki\n").unwrap();
    let lines = succeed(run(&["predict", "--device", "cpu", "--words"], &[("--model", &out), ("--input", &input)]), "predict --words");
    let rows: Vec<Value> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 2);
    for row in &rows {
        let words = row["words"].as_array().unwrap();
        assert_eq!(row["tags"].as_array().unwrap().len(), words.len(), "one tag per word: {row}");
        for e in row["entities"].as_array().unwrap() {
            let (start, end) = (e["start"].as_u64().unwrap() as usize, e["end"].as_u64().unwrap() as usize);
            assert!(start < end && end <= words.len(), "{e}");
            let text: Vec<&str> = words[start..end].iter().map(|w| w.as_str().unwrap()).collect();
            assert_eq!(e["text"], text.join(" "));
        }
    }
    assert_eq!(rows[0]["words"][3], "Lagos");
    assert!(
        rows[0]["entities"].as_array().unwrap().iter().any(|e| e["type"] == "LOC" && e["text"] == "Lagos"),
        "Lagos is found as a place: {}",
        rows[0]
    );

    // eval on a CoNLL file writes the same report shape.
    let eval_out = dir.join("eval.json");
    succeed(run(&["eval", "--device", "cpu"], &[("--model", &out), ("--data", &dev), ("--output", &eval_out)]), "eval");
    assert_eq!(read_json(&eval_out)["micro avg"], metrics["micro avg"], "eval agrees with the end-of-training report");
}

// ---------------------------------------------------------------- regression

fn sts_rows(n: usize, start: usize) -> String {
    (start..start + n)
        .map(|i| {
            let score = (i % 6) as f64;
            let b = if score >= 3.0 { "a plane is taking off" } else { "a man is slicing onions" };
            format!("main\tsrc\t2012\t{i:04}\t{score:.3}\ta plane is taking off {i}\t{b}\n")
        })
        .collect()
}

#[test]
fn t6_regression_on_pairs_reports_pearson_and_spearman() {
    let Some(model) = fixture_dir("a-seqcls") else { return };
    let dir = scratch_dir("t6-sts");
    let (train, dev, out) = (dir.join("train.tsv"), dir.join("dev.tsv"), dir.join("out"));
    std::fs::write(&train, sts_rows(48, 0)).unwrap();
    std::fs::write(&dev, sts_rows(18, 100)).unwrap();
    let stdout = succeed(
        run(
            &[
                &[
                    "train",
                    "--task",
                    "regression",
                    "--header",
                    "false",
                    "--text-column",
                    "5",
                    "--text-pair-column",
                    "6",
                    "--label-column",
                    "4",
                ][..],
                &TRAIN_FLAGS,
                &["--max-steps", "10"],
            ]
            .concat(),
            &[("--model", &model), ("--train", &train), ("--eval", &dev), ("--output", &out)],
        ),
        "regression training",
    );
    assert!(stdout.contains("pearson") && stdout.contains("spearman"), "{stdout}");
    let config = read_json(&out.join("config.json"));
    assert_eq!(config["problem_type"], "regression");
    assert_eq!(config["id2label"].as_object().unwrap().len(), 1);
    let metrics = read_json(&out.join("metrics.json"));
    let pearson = metrics["pearson"].as_f64().unwrap();
    assert!((-1.0..=1.0).contains(&pearson) && metrics["spearman"].is_number() && metrics["mse"].as_f64().unwrap() >= 0.0, "{metrics}");
}

// ---------------------------------------------------------------- freezing

fn tensors(path: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors().into_iter().map(|(name, view)| (name, view.data().to_vec())).collect()
}

#[test]
fn t6_frozen_parameters_stay_bit_identical_and_have_no_optimizer_state() {
    let Some(model) = fixture_dir("a-seqcls") else { return };
    let dir = scratch_dir("t6-freeze");
    let (train, out) = (dir.join("train.tsv"), dir.join("out"));
    let rows: String = (0..24).map(|i| format!("{} movie {i}\t{}\n", if i % 2 == 0 { "great" } else { "awful" }, i % 2)).collect();
    std::fs::write(&train, format!("text\tlabel\n{rows}")).unwrap();
    // The fixture's own 3-label head is replaced (2 labels here); compare the encoder.
    let stderr = String::from_utf8_lossy(
        &run(
            &[&["train", "--freeze", "embeddings,layers:0"][..], &TRAIN_FLAGS, &["--max-steps", "4", "--save-every", "4"]].concat(),
            &[("--model", &model), ("--train", &train), ("--output", &out)],
        )
        .stderr,
    )
    .to_string();
    assert!(out.join("model.safetensors").is_file(), "training failed:\n{stderr}");
    assert!(stderr.contains("parameters trained"), "{stderr}");
    let before = tensors(&model.join("model.safetensors"));
    let after = tensors(&out.join("model.safetensors"));
    let optimizer = tensors(&out.join("checkpoint-4/optimizer.safetensors"));
    let (mut frozen, mut trained) = (0, 0);
    for (name, data) in &after {
        let is_frozen = name.starts_with("bert.embeddings.") || name.starts_with("bert.encoder.layer.0.");
        let has_state = optimizer.contains_key(&format!("m.{name}"));
        if is_frozen {
            frozen += 1;
            assert_eq!(before.get(name), Some(data), "frozen `{name}` changed");
            assert!(!has_state, "frozen `{name}` has optimizer state");
        } else if name.starts_with("bert.encoder.layer.1.") && name.ends_with(".weight") {
            trained += 1;
            assert!(has_state, "trained `{name}` has no optimizer state");
            assert_ne!(before.get(name), Some(data), "trained `{name}` did not change");
        }
    }
    assert!(frozen >= 8 && trained >= 4, "{frozen} frozen and {trained} trained tensors checked");

    let bad = fail(
        run(
            &[&["train", "--freeze", "layers:0-7"][..], &TRAIN_FLAGS, &["--max-steps", "1"]].concat(),
            &[("--model", &model), ("--train", &train), ("--output", &dir.join("bad"))],
        ),
        "freezing layers the model does not have",
    );
    assert!(bad.contains("--freeze") && bad.contains("2 layers"), "{bad}");
}

// ---------------------------------------------------------------- bad input

fn assert_names(stderr: &str, file: &Path, line: usize, words: &[&str]) {
    let name = file.file_name().unwrap().to_str().unwrap();
    assert!(stderr.contains(&format!("{name}:{line}")), "the error names {name}:{line}:\n{stderr}");
    for w in words {
        assert!(stderr.contains(w), "the error says `{w}`:\n{stderr}");
    }
}

#[test]
fn t6_bad_task_input_names_file_and_line() {
    let Some(model) = fixture_dir("a-seqcls") else { return };
    let dir = scratch_dir("t6-bad-input");
    let out = dir.join("out");
    let train_with = |extra: &[&str], train: &PathBuf, eval: Option<&PathBuf>| {
        let mut paths = vec![("--model", model.as_path()), ("--train", train.as_path()), ("--output", out.as_path())];
        if let Some(e) = eval {
            paths.push(("--eval", e.as_path()));
        }
        fail(run(&[&["train"][..], extra, &TRAIN_FLAGS, &["--max-steps", "1"]].concat(), &paths), "bad input")
    };

    // A tag outside the label set (the dev file has a type train never saw).
    let (train, dev) = (dir.join("train.txt"), dir.join("dev.txt"));
    std::fs::write(&train, conll_sentences(4, 0)).unwrap();
    std::fs::write(&dev, "Paris NNP B-NP B-LOC\nis VBZ B-VP O\nnice JJ B-ADJP B-ADJ\n").unwrap();
    let e = train_with(&["--task", "token-classification"], &train, Some(&dev));
    assert_names(&e, &dev, 3, &["B-ADJ", "tag"]);

    // A malformed CoNLL line: too few columns for the chosen tag column.
    let broken = dir.join("broken.txt");
    std::fs::write(&broken, "EU NNP B-NP B-ORG\nrejects VBZ\n").unwrap();
    let e = train_with(&["--task", "token-classification", "--tag-column", "3"], &broken, None);
    assert_names(&e, &broken, 2, &["tag"]);

    // A GoEmotions-style label id out of range.
    let (ge, labels) = (dir.join("ge.tsv"), dir.join("labels.txt"));
    std::fs::write(&labels, EMOTIONS.join("\n")).unwrap();
    std::fs::write(&ge, "fine\t3\tid1\nwhat\t1,4\tid2\n").unwrap();
    let labels_flag = labels.to_str().unwrap().to_string();
    let e = train_with(
        &["--task", "multi-label", "--header", "false", "--text-column", "0", "--label-column", "1", "--labels", &labels_flag],
        &ge,
        None,
    );
    assert_names(&e, &ge, 2, &["label id 4", "out of range"]);

    // A regression target that is not a number.
    let sts = dir.join("sts.tsv");
    std::fs::write(&sts, sts_rows(3, 0) + "main\tsrc\t2012\t0009\thigh\ta cat\ta dog\n").unwrap();
    let e = train_with(
        &["--task", "regression", "--header", "false", "--text-column", "5", "--text-pair-column", "6", "--label-column", "4"],
        &sts,
        None,
    );
    assert_names(&e, &sts, 4, &["`high`", "number"]);
    assert!(!out.exists(), "no output folder is written for bad input");
}

// ---------------------------------------------------------------- transformers

/// The token-classification and multi-label exports load in transformers
/// with berth's problem_type and label maps, and give berth's logits.
#[test]
fn t6_task_exports_load_in_transformers() {
    let Some(python) = crate::cli::python_with_transformers() else { return };
    let Some(model) = fixture_dir("a-seqcls") else { return };
    let dir = scratch_dir("t6-hf");
    let cases: [(&str, Vec<&str>, String, String, &str); 2] = [
        ("token", vec!["--task", "token-classification", "--format", "conll"], conll_sentences(8, 0), "train.txt".into(), ""),
        (
            "multilabel",
            vec!["--task", "multi-label", "--header", "false", "--text-column", "0", "--label-column", "1"],
            emotion_rows(16, 0),
            "train.tsv".into(),
            "multi_label_classification",
        ),
    ];
    for (name, flags, data, file, problem_type) in cases {
        let work = dir.join(name);
        std::fs::create_dir_all(&work).unwrap();
        let (train, out, input, expected) = (work.join(file), work.join("out"), work.join("input.txt"), work.join("berth.jsonl"));
        std::fs::write(&train, data).unwrap();
        succeed(
            run(
                &[&["train"][..], &flags, &TRAIN_FLAGS, &["--max-steps", "3"]].concat(),
                &[("--model", &model), ("--train", &train), ("--output", &out)],
            ),
            name,
        );
        std::fs::write(&input, "Maria visited Lagos\nI am furious and terrified\n").unwrap();
        succeed(run(&["predict", "--device", "cpu"], &[("--model", &out), ("--input", &input), ("--output", &expected)]), name);
        let labels: Vec<String> = {
            let config = read_json(&out.join("config.json"));
            let map = config["id2label"].as_object().unwrap();
            (0..map.len()).map(|i| map[&i.to_string()].as_str().unwrap().to_string()).collect()
        };
        let check = crate::cli::hf_roundtrip(&python, &out, &input, &expected)
            .arg("--expect-problem-type")
            .arg(if problem_type.is_empty() { "none" } else { problem_type })
            .arg("--expect-labels")
            .arg(labels.join("\u{1f}"))
            .output()
            .unwrap();
        assert!(check.status.success(), "{name}: {}{}", String::from_utf8_lossy(&check.stdout), String::from_utf8_lossy(&check.stderr));
    }
}

// ---------------------------------------------------------------- multi-task

/// Two heads on one encoder: sentiment (sequence classification) and NER
/// (CoNLL), one checkpoint, each head's loss falls, predict reports each head.
#[test]
fn t6_multi_task_trains_two_heads_on_one_encoder() {
    let Some(model) = fixture_dir("a-seqcls") else { return };
    let dir = scratch_dir("t6-multitask");
    let rows: String = (0..32)
        .map(|i| format!("{} film {i}\t{}\n", if i % 2 == 0 { "great lovely" } else { "awful dull" }, ["pos", "neg"][i % 2]))
        .collect();
    std::fs::write(dir.join("sentiment.tsv"), format!("text\tlabel\n{rows}")).unwrap();
    std::fs::write(dir.join("ner.txt"), conll_sentences(32, 0)).unwrap();
    std::fs::write(
        dir.join("heads.toml"),
        "mixing = \"alternate\"\n\n[[head]]\nname = \"sentiment\"\ntrain = \"sentiment.tsv\"\neval = \"sentiment.tsv\"\nloss-weight = 1.0\n\n\
         [[head]]\nname = \"ner\"\ntask = \"token-classification\"\ntrain = \"ner.txt\"\neval = \"ner.txt\"\nloss-weight = 0.5\n",
    )
    .unwrap();
    let out = dir.join("out");
    succeed(
        run(
            &[
                "train",
                "--device",
                "cpu",
                "--batch-size",
                "8",
                "--lr",
                "1e-2",
                "--max-length",
                "24",
                "--seed",
                "3",
                "--logging-steps",
                "1",
                "--epochs",
                "6",
            ],
            &[("--model", &model), ("--heads", &dir.join("heads.toml")), ("--output", &out)],
        ),
        "multi-task training",
    );
    let heads = read_json(&out.join("heads.json"));
    let names: Vec<&str> = heads["heads"].as_array().unwrap().iter().map(|h| h["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["sentiment", "ner"]);
    assert_eq!(heads["heads"][1]["task"], "token-classification");
    assert_eq!(heads["heads"][1]["loss_weight"], 0.5);
    let weights = tensors(&out.join("model.safetensors"));
    for name in ["heads.sentiment.classifier.weight", "heads.ner.classifier.weight", "bert.encoder.layer.0.attention.self.query.weight"] {
        assert!(weights.contains_key(name), "model.safetensors lacks {name}");
    }
    assert!(!weights.contains_key("classifier.weight"), "no unnamed head");
    let metrics = read_json(&out.join("metrics.json"));
    assert!(metrics["sentiment"]["accuracy"].is_number() && metrics["ner"]["micro avg"]["f1-score"].is_number(), "{metrics}");
    // Each head's training loss falls from its first logged value to its last.
    let log: Vec<Value> =
        std::fs::read_to_string(out.join("metrics.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for head in ["sentiment", "ner"] {
        let losses: Vec<f64> = log.iter().filter_map(|e| e[format!("loss_{head}")].as_f64()).collect();
        assert!(losses.len() > 5 && losses.last().unwrap() < &(0.7 * losses[0]), "{head} losses: {losses:?}");
    }

    let input = dir.join("input.txt");
    std::fs::write(&input, "great lovely film\nMaria visited Lagos\n").unwrap();
    let all = succeed(run(&["predict", "--device", "cpu"], &[("--model", &out), ("--input", &input)]), "predict every head");
    for line in all.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert!(v["sentiment"]["label"].is_string() && v["ner"]["tags"].is_array(), "{line}");
    }
    let one = succeed(run(&["predict", "--device", "cpu", "--head", "sentiment"], &[("--model", &out), ("--input", &input)]), "--head");
    let first: Value = serde_json::from_str(one.lines().next().unwrap()).unwrap();
    assert_eq!(first["label"], "pos", "{first}");
    let words = succeed(run(&["predict", "--device", "cpu", "--words"], &[("--model", &out), ("--input", &input)]), "--words");
    let v: Value = serde_json::from_str(words.lines().nth(1).unwrap()).unwrap();
    assert_eq!(v["ner"]["words"][2], "Lagos", "{v}");
    let e = fail(run(&["predict", "--device", "cpu", "--head", "topic"], &[("--model", &out), ("--input", &input)]), "unknown head");
    assert!(e.contains("no head `topic`") && e.contains("sentiment, ner"), "{e}");
}

/// Sentences longer than the model's length become overlapping windows:
/// every row fits, every word is owned by exactly one window, and the labels
/// of each window's first pieces are the words' gold tags.
#[test]
fn t6_long_sentences_are_windowed_not_truncated() {
    let Some(model) = fixture_dir("a-seqcls") else { return };
    let dir = scratch_dir("t6-windows");
    let path = dir.join("long.txt");
    let mut text = conll_sentences(3, 0);
    // One sentence of 60 words, far over --max-length 16.
    for i in 0..60 {
        text.push_str(&format!("{} X X {}\n", PEOPLE[i % 4], if i % 5 == 0 { "B-PER" } else { "O" }));
    }
    std::fs::write(&path, text).unwrap();
    let spec = berth::train::dataset::DataSpec {
        task: berth::model::task::Task::TokenClassification,
        columns: berth::train::dataset::ColumnChoice {
            format: None,
            text: "text",
            text_pair: None,
            label: "label",
            header: None,
            quoting: None,
        },
        tag_column: None,
        label_separator: ",",
        alignment: berth::data::align::Alignment::First,
        long_text: None,
    };
    let tokenizer = berth::data::BerthTokenizer::from_dir(&model, 16).unwrap();
    let raw = spec.read(&path).unwrap();
    let labels = spec.label_set(&raw, None, &path).unwrap();
    let data = spec.encode(&path, &raw, &labels, &tokenizer).unwrap();
    let rows = data.token_rows.as_ref().unwrap();
    let berth::train::dataset::Targets::Token(targets) = &data.targets else { panic!("token targets") };
    let mut owned: Vec<Vec<usize>> = rows.sentences.iter().map(|s| vec![0; s.words.len()]).collect();
    for (i, (s, w)) in rows.rows.iter().enumerate() {
        assert!(data.encodings[i].ids.len() <= 16, "row {i} is {} tokens", data.encodings[i].ids.len());
        let firsts: Vec<(u32, i64)> = data.encodings[i]
            .word_ids
            .iter()
            .zip(&targets[i])
            .enumerate()
            .filter(|(j, (wid, _))| wid.is_some() && (*j == 0 || data.encodings[i].word_ids[j - 1] != **wid))
            .map(|(_, (wid, &t))| (wid.unwrap(), t))
            .collect();
        assert_eq!(firsts.len(), w.end - w.start, "row {i}: every word of the window is there");
        for (wid, t) in firsts {
            let word = w.start + wid as usize;
            assert_eq!(labels.name(t as usize).unwrap(), rows.sentences[*s].tags[word], "row {i}, word {word}");
        }
        for word in w.keep_start..w.keep_end {
            owned[*s][word] += 1;
        }
    }
    assert!(rows.rows.iter().filter(|(s, _)| *s == 3).count() > 3, "the long sentence is split");
    assert!(owned.iter().flatten().all(|&n| n == 1), "each word is owned by exactly one window: {owned:?}");
}

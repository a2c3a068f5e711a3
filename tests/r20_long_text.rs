//! Issue 20: chunked classification of long inputs. The windows equal
//! transformers' (`return_overflowing_tokens=True, stride=8, max_length=24`,
//! pairs `only_second`), and the document logits equal the mean, max or
//! first of transformers' per-window logits, for single texts and pairs
//! (tests/data/long_text/reference.json, from tools/long-text-reference.py).

use std::path::Path;

use berth::infer::Predictor;
use berth::model::settings::{Aggregate, ChunkSettings};
use serde_json::Value;

use crate::common::{fixture_dir, rel_error, scratch_dir};
use crate::train::{berth, fail, succeed};

fn reference() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/long_text/reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn chunked(dir: &Path, max_length: usize, stride: usize, aggregate: Aggregate, max_chunks: Option<usize>) -> Predictor {
    let (mut predictor, _) = Predictor::load(dir, max_length).unwrap();
    predictor.set_long_text(Some(ChunkSettings { stride, max_chunks, aggregate })).unwrap();
    predictor
}

fn input_of(document: &Value) -> (String, Option<String>) {
    (document["text"].as_str().unwrap().to_owned(), document["pair"].as_str().map(str::to_owned))
}

#[test]
fn r20_windows_and_document_logits_match_transformers() {
    let reference = reference();
    let (max_length, stride) = (reference["max_length"].as_u64().unwrap() as usize, reference["stride"].as_u64().unwrap() as usize);
    for case in reference["cases"].as_array().unwrap() {
        let name = case["model"].as_str().unwrap();
        let Some(dir) = fixture_dir(name) else { return };
        let documents = case["documents"].as_array().unwrap();
        let inputs: Vec<(String, Option<String>)> = documents.iter().map(input_of).collect();
        for aggregate in [Aggregate::Mean, Aggregate::Max, Aggregate::First] {
            let predictor = chunked(&dir, max_length, stride, aggregate, None);
            // Batches of 3 mix windows of different documents.
            let predictions = predictor.predict(&inputs, 3).unwrap();
            for (d, (document, prediction)) in documents.iter().zip(&predictions).enumerate() {
                let want_windows: Vec<Vec<u32>> = serde_json::from_value(document["windows"].clone()).unwrap();
                let (text, pair) = &inputs[d];
                let got = predictor.tokenizer.encode_windows(text, pair.as_deref(), None).unwrap();
                let got_ids: Vec<Vec<u32>> = got.windows.iter().map(|w| w.ids.clone()).collect();
                assert_eq!(got_ids, want_windows, "{name} document {d}: windows");
                assert_eq!(prediction.windows, Some(want_windows.len()), "{name} document {d}");
                let window_logits: Vec<Vec<f64>> = serde_json::from_value(document["logits"].clone()).unwrap();
                let want = aggregate.combine(&window_logits);
                let got: Vec<f64> = serde_json::from_value(prediction.logits.clone()).unwrap();
                let e = rel_error(&got, &want);
                assert!(e < 1e-5, "{name} document {d} {aggregate:?}: {got:?} vs transformers {want:?} ({e:.2e})");
            }
        }
    }
}

#[test]
fn r20_max_chunks_bounds_the_windows_and_says_so() {
    let reference = reference();
    let case = &reference["cases"][0];
    let Some(dir) = fixture_dir(case["model"].as_str().unwrap()) else { return };
    let document = &case["documents"][0];
    let window_logits: Vec<Vec<f64>> = serde_json::from_value(document["logits"].clone()).unwrap();
    assert!(window_logits.len() >= 3);
    let predictor = chunked(&dir, 24, 8, Aggregate::Mean, Some(2));
    let p = &predictor.predict(&[input_of(document)], 8).unwrap()[0];
    assert_eq!((p.windows, p.windows_dropped), (Some(2), Some(window_logits.len() - 2)));
    let got: Vec<f64> = serde_json::from_value(p.logits.clone()).unwrap();
    assert!(rel_error(&got, &Aggregate::Mean.combine(&window_logits[..2])) < 1e-5);

    // The CLI prints the same count as a note.
    let work = scratch_dir("r20-max-chunks");
    let input = work.join("input.txt");
    std::fs::write(&input, format!("{}\nshort\n", document["text"].as_str().unwrap())).unwrap();
    let out = succeed(
        berth()
            .args(["predict", "--max-length", "24", "--long-text", "chunk", "--chunk-stride", "8", "--max-chunks", "2", "--model"])
            .arg(&dir)
            .arg("--input")
            .arg(&input),
        "predict --max-chunks",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("1 of 2 inputs had more than --max-chunks 2 windows"), "{stderr}");
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!((lines[0]["windows"].as_u64(), lines[1]["windows"].as_u64()), (Some(2), Some(1)));
    assert!(lines[1].get("windows_dropped").is_none());
}

#[test]
fn r20_bad_chunking_flags_are_clear_errors() {
    let Some(dir) = fixture_dir("a-seqcls") else { return };
    let Some(pair_dir) = fixture_dir("a-pair") else { return };
    let Some(token_dir) = fixture_dir("a-tokcls") else { return };
    let work = scratch_dir("r20-bad-flags");
    let input = work.join("input.txt");
    std::fs::write(&input, "a short text\n").unwrap();
    let predict = |model: &Path, flags: &[&str]| {
        let mut cmd = berth();
        cmd.args(["predict", "--max-length", "24", "--model"]).arg(model).arg("--input").arg(&input).args(flags);
        fail(&mut cmd, &flags.join(" "))
    };
    // 24 tokens less [CLS] and [SEP] leave 22 per window.
    let e = predict(&dir, &["--long-text", "chunk", "--chunk-stride", "22"]);
    assert!(e.contains("--chunk-stride 22 must be smaller than a window's 22 text tokens"), "{e}");
    let e = predict(&dir, &["--long-text", "chunk", "--max-chunks", "0"]);
    assert!(e.contains("--max-chunks 0"), "{e}");
    let e = predict(&dir, &["--aggregate", "max"]);
    assert!(e.contains("--aggregate needs --long-text chunk"), "{e}");
    let e = predict(&token_dir, &["--long-text", "chunk"]);
    assert!(e.contains("--long-text chunk is for sequence tasks"), "{e}");
    // A pair whose first text fills the window cannot be windowed.
    let long_first = "word ".repeat(30);
    std::fs::write(&input, format!("{long_first}\tsecond text\n")).unwrap();
    let e = predict(&pair_dir, &["--long-text", "chunk", "--chunk-stride", "4"]);
    assert!(e.contains("a pair's first text has 30 tokens, which leaves no window"), "{e}");
}

/// Multi-label documents of 30 to 39 filler words whose labels' keywords come
/// last, so that they lie beyond the first window of a 16-token model.
fn keyword_documents(n: usize, seed: usize) -> (String, usize) {
    const LABELS: [(&str, &str); 5] =
        [("gdpr", "privacy"), ("sox", "audit"), ("pci-dss", "payment"), ("hipaa", "patient"), ("basel-iii", "capital")];
    const FILLER: [&str; 12] = ["the", "report", "said", "that", "market", "was", "quiet", "today", "staff", "met", "office", "plans"];
    let (mut out, mut positives) = (String::new(), 0);
    for i in 0..n {
        let k = seed * 7919 + i * 104_729;
        let words: Vec<&str> = (0..30 + k % 10).map(|j| FILLER[(k / 3 + j * 5 + j * j) % FILLER.len()]).collect();
        let mut labels = vec![LABELS[i % 5]];
        if i % 3 == 0 && (i / 3 + 2) % 5 != i % 5 {
            labels.push(LABELS[(i / 3 + 2) % 5]);
        }
        positives += labels.len();
        let tail: Vec<&str> = labels.iter().map(|l| l.1).collect();
        let names: Vec<String> = labels.iter().map(|l| format!("\"{}\"", l.0)).collect();
        out.push_str(&format!("{{\"text\": \"{} {}\", \"labels\": [{}]}}\n", words.join(" "), tail.join(" "), names.join(", ")));
    }
    (out, positives)
}

/// `berth train` on `device` with a 16-token window.
fn train16_on(device: &str, model: &Path, train: &Path, output: &Path) -> std::process::Command {
    let mut c = berth();
    c.arg("train").arg("--model").arg(model).arg("--train").arg(train).arg("--output").arg(output);
    c.args(["--max-length", "16", "--device", device]);
    c
}

fn train16(model: &Path, train: &Path, output: &Path) -> std::process::Command {
    train16_on("cpu", model, train, output)
}

#[test]
fn r20_chunked_training_takes_a_document_loss_scores_documents_and_saves_the_setting() {
    let Some(model) = fixture_dir("a-multilabel") else { return };
    let work = scratch_dir("r20-train");
    let (train, _) = keyword_documents(40, 1);
    let (dev, dev_positives) = keyword_documents(12, 2);
    std::fs::write(work.join("train.jsonl"), train).unwrap();
    std::fs::write(work.join("dev.jsonl"), dev).unwrap();
    let output = work.join("out");
    let out = succeed(
        train16(&model, &work.join("train.jsonl"), &output)
            .arg("--eval")
            .arg(work.join("dev.jsonl"))
            .args(["--task", "multi-label", "--label-column", "labels", "--epochs", "2", "--batch-size", "4", "--lr", "1e-3"])
            .args(["--long-text", "chunk", "--chunk-stride", "4", "--aggregate", "max", "--chunk-loss", "document"]),
        "chunked training",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    // 16 tokens leave 14 per window, 10 new ones after the first: 31 to 41 word pieces make 3 or 4 windows.
    let windows_line =
        stderr.lines().find(|l| l.starts_with("long text (training): 40 documents in ")).unwrap_or_else(|| panic!("{stderr}"));
    let windows: usize = windows_line["long text (training): 40 documents in ".len()..].split(' ').next().unwrap().parse().unwrap();
    assert!((120..=160).contains(&windows), "{windows_line}");
    assert!(stderr.contains(&format!("data (multi-label): {windows} training rows")), "{stderr}");
    assert!(
        stderr.contains(
            "document loss: each batch is --batch-size 4 documents with all their windows; in epoch 1, 10 of 10 batches grew past 4 windows"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("plan: 20 optimizer steps (10 per epoch"), "a step is --batch-size documents: {stderr}");

    // The setting is saved with the model, and evaluation counted documents, not windows.
    let settings = crate::train::read_json(&output.join("berth-inference.json"));
    assert_eq!(settings["long_text"], serde_json::json!({"stride": 4, "aggregate": "max"}));
    let trained = crate::train::read_json(&output.join("metrics.json"));
    assert_eq!(trained["micro avg"]["support"].as_u64(), Some(dev_positives as u64), "{trained}");

    // berth eval reads the saved setting and scores the same documents the same way.
    let eval_json = work.join("eval.json");
    let out = succeed(
        berth().args(["eval", "--model"]).arg(&output).arg("--data").arg(work.join("dev.jsonl")).arg("--output").arg(&eval_json),
        "eval",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("long text: chunk (stride 4, no window limit, aggregate max) (berth-inference.json)"), "{stderr}");
    let evaluated = crate::train::read_json(&eval_json);
    for key in ["/micro avg/f1-score", "/macro avg/f1-score", "/eval_loss"] {
        let (a, b) = (evaluated.pointer(key).unwrap().as_f64().unwrap(), trained.pointer(key).unwrap().as_f64().unwrap());
        assert!((a - b).abs() < 1e-9, "{key}: eval {a}, training's final evaluation {b}");
    }
    // Truncated, the same model reads only each document's first window, which holds no keyword.
    let out = succeed(
        berth()
            .args(["eval", "--long-text", "truncate", "--model"])
            .arg(&output)
            .arg("--data")
            .arg(work.join("dev.jsonl"))
            .arg("--output")
            .arg(work.join("t.json")),
        "eval truncated",
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("long text: truncate (flag)"));
    let truncated = crate::train::read_json(&work.join("t.json"));
    assert_ne!(truncated["eval_loss"], evaluated["eval_loss"], "truncation must read other windows than chunking");

    // On the simulated device, the document loss's combine runs where the logits are, and training ends where the CPU's did.
    let on_sim = work.join("sim");
    succeed(
        train16_on("sim", &model, &work.join("train.jsonl"), &on_sim)
            .arg("--eval")
            .arg(work.join("dev.jsonl"))
            .args(["--task", "multi-label", "--label-column", "labels", "--epochs", "2", "--batch-size", "4", "--lr", "1e-3"])
            .args(["--long-text", "chunk", "--chunk-stride", "4", "--aggregate", "max", "--chunk-loss", "document"]),
        "chunked training on the simulated device",
    );
    let sim = crate::train::read_json(&on_sim.join("metrics.json"))["eval_loss"].as_f64().unwrap();
    let cpu = trained["eval_loss"].as_f64().unwrap();
    assert!((sim - cpu).abs() < 1e-3 * cpu, "eval loss after training: sim device {sim}, CPU {cpu}");
}

#[test]
fn r20_bad_chunked_training_options_are_clear_errors() {
    let Some(model) = fixture_dir("a-multilabel") else { return };
    let Some(pair_model) = fixture_dir("a-pair") else { return };
    let work = scratch_dir("r20-train-bad");
    let (train, _) = keyword_documents(8, 3);
    let data = work.join("train.jsonl");
    std::fs::write(&data, train).unwrap();
    let run = |model: &Path, data: &Path, flags: &[&str]| {
        let mut cmd = train16(model, data, &work.join("out"));
        cmd.args(["--epochs", "1"]).args(flags);
        fail(&mut cmd, &flags.join(" "))
    };
    let multi = ["--task", "multi-label", "--label-column", "labels"];
    let e = run(&model, &data, &[&multi[..], &["--chunk-loss", "document"]].concat());
    assert!(e.contains("--chunk-loss needs --long-text chunk"), "{e}");
    let e = run(&model, &data, &[&multi[..], &["--long-text", "chunk", "--chunk-loss", "sentence"]].concat());
    assert!(e.contains("--chunk-loss `sentence`: use window or document"), "{e}");
    let e = run(&model, &data, &[&multi[..], &["--long-text", "chunk", "--chunk-stride", "14"]].concat());
    assert!(e.contains("--chunk-stride 14 must be smaller than a window's 14 text tokens"), "{e}");
    let e = run(&model, &data, &["--task", "token-classification", "--long-text", "chunk"]);
    assert!(e.contains("--long-text chunk is for sequence tasks"), "{e}");
    // A pair whose first text fills the window: the file, line and field are named.
    let pairs = work.join("pairs.tsv");
    std::fs::write(&pairs, format!("text\tpair\tlabel\nshort\tsecond\tneutral\n{}\tsecond\tentailment\n", "word ".repeat(20))).unwrap();
    let e = run(&pair_model, &pairs, &["--text-pair-column", "pair", "--long-text", "chunk", "--chunk-stride", "4"]);
    assert!(e.contains("pairs.tsv:3 (field `text`)") && e.contains("a pair's first text has 20 tokens"), "{e}");
}

#[test]
fn r20_multi_label_weighted_sampler_draws_documents_by_their_rarest_label() {
    let Some(model) = fixture_dir("a-multilabel") else { return };
    let work = scratch_dir("r20-multi-sampler");
    // basel-iii made rare: 4 documents keep it, the others carrying it are dropped.
    let (all, _) = keyword_documents(50, 4);
    let mut kept_rare = 0;
    let lines: Vec<&str> = all
        .lines()
        .filter(|l| {
            let rare = l.contains("\"basel-iii\"");
            kept_rare += rare as usize;
            !rare || kept_rare <= 4
        })
        .collect();
    std::fs::write(work.join("train.jsonl"), lines.join("\n") + "\n").unwrap();
    let flags = ["--task", "multi-label", "--label-column", "labels", "--epochs", "1", "--batch-size", "8"];
    let chunked = ["--long-text", "chunk", "--chunk-stride", "4", "--chunk-loss", "document"];
    let out = succeed(
        train16(&model, &work.join("train.jsonl"), &work.join("out")).args(flags).args(chunked).args(["--sampler", "weighted"]),
        "multi-label weighted sampler",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr.lines().find(|l| l.starts_with("sampler: weighted:1")).unwrap_or_else(|| panic!("{stderr}"));
    // Under a document loss the sampler draws the documents, not their windows.
    assert!(line.contains(&format!("epoch of {} examples", lines.len())), "{line}");
    // Every label is some document's rarest, so there are 5 groups; R = 1 draws each a fifth of the time,
    // and only the basel-iii group holds basel-iii.
    assert!(line.contains("each example by its rarest label (5 groups)"), "{line}");
    let want = format!("basel-iii {:.1}% → 20.0%", 400.0 / lines.len() as f64);
    assert!(line.contains(&want), "{want}: {line}");

    let e = fail(
        train16(&model, &work.join("train.jsonl"), &work.join("out2")).args(flags).args(["--sampler", "undersample"]),
        "multi-label undersampling",
    );
    assert!(e.contains("multi-label data takes --sampler weighted[:R]"), "{e}");
    let e = fail(
        train16(&model, &work.join("train.jsonl"), &work.join("out3")).args(["--task", "regression", "--sampler", "weighted"]),
        "a regression sampler",
    );
    assert!(e.contains("needs --task classification or multi-label"), "{e}");
}

/// A copy of fixture `name` saved as a model trained with `--long-text chunk`.
fn saved_chunked(name: &str, stride: usize, aggregate: Aggregate) -> Option<std::path::PathBuf> {
    let source = fixture_dir(name)?;
    let dir = scratch_dir(&format!("r20-saved-{name}"));
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
    let settings = berth::model::settings::InferenceSettings {
        long_text: Some(ChunkSettings { stride, max_chunks: None, aggregate }),
        ..Default::default()
    };
    settings.write(&dir).unwrap();
    Some(dir)
}

/// The raw scores of a served answer, back in the model's label order.
fn served_logits(answer: &Value, labels: &[String]) -> Vec<f64> {
    let row = answer.as_array().unwrap();
    labels.iter().map(|l| row.iter().find(|s| s["label"] == l.as_str()).unwrap()["score"].as_f64().unwrap()).collect()
}

#[test]
fn r20_serve_and_classifier_read_long_texts_as_the_model_was_trained() {
    let reference = reference();
    let case = &reference["cases"][1];
    assert_eq!(case["model"], "a-multilabel");
    let Some(dir) = saved_chunked("a-multilabel", 8, Aggregate::Max) else { return };
    let documents = case["documents"].as_array().unwrap();
    let texts: Vec<&str> = documents.iter().map(|d| d["text"].as_str().unwrap()).collect();
    let window_logits: Vec<Vec<Vec<f64>>> = documents.iter().map(|d| serde_json::from_value(d["logits"].clone()).unwrap()).collect();

    // The library reads the saved setting.
    let options = berth::ClassifierOptions { device: berth::DeviceChoice::Cpu, max_length: Some(24), ..Default::default() };
    let classifier = berth::Classifier::load_with(&dir, &options).unwrap();
    assert_eq!(classifier.long_text().map(|c| (c.stride, c.aggregate)), Some((8, Aggregate::Max)));
    for (p, windows) in classifier.predict(&texts).unwrap().iter().zip(&window_logits) {
        let e = rel_error(&p.logits, &Aggregate::Max.combine(windows));
        assert!(e < 1e-5, "Classifier: {:?} ({e:.2e})", p.logits);
    }

    // So does the server; its batcher mixes the windows of several documents in a pass.
    let server = crate::serve::Server::start(&dir, &["--max-length", "24"]);
    let labels = classifier.labels().to_vec();
    let reply = server.post(&serde_json::json!({"inputs": texts, "raw_scores": true}));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let answers = reply.json();
    for (d, windows) in window_logits.iter().enumerate() {
        let got = served_logits(&answers[d], &labels);
        let e = rel_error(&got, &Aggregate::Max.combine(windows));
        assert!(e < 1e-5, "served document {d}: {got:?} ({e:.2e})");
    }
    // `"long_text": "truncate"` reads only the first window, as a model saved without the setting would.
    let reply = server.post(&serde_json::json!({"inputs": texts[0], "raw_scores": true, "long_text": "truncate"}));
    let got = served_logits(&reply.json(), &labels);
    assert!(rel_error(&got, &window_logits[0][0]) < 1e-5, "truncated: {got:?}");
    assert!(rel_error(&got, &Aggregate::Max.combine(&window_logits[0])) > 1e-3, "the windows must differ for the test to mean anything");
    let reply = server.post(&serde_json::json!({"inputs": texts[0], "long_text": "split"}));
    assert_eq!(reply.status, 400, "{}", reply.body);
    drop(server);

    // A model saved without the setting chunks when the request asks: the
    // default stride narrowed to a quarter of the 22-token window, the mean.
    let Some(plain) = fixture_dir("a-multilabel") else { return };
    let server = crate::serve::Server::start(&plain, &["--max-length", "24"]);
    let reply = server.post(&serde_json::json!({"inputs": texts[0], "raw_scores": true, "long_text": "chunk"}));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let predictor = chunked(&plain, 24, 5, Aggregate::Mean, None);
    let want: Vec<f64> = serde_json::from_value(predictor.predict(&[(texts[0].to_owned(), None)], 4).unwrap()[0].logits.clone()).unwrap();
    let got = served_logits(&reply.json(), &labels);
    assert!(rel_error(&got, &want) < 1e-5, "chunked on request: {got:?} against {want:?}");
}

#[test]
fn r20_truncation_direction_left_is_trained_saved_and_read_back_everywhere() {
    let Some(model) = fixture_dir("a-seqcls") else { return };
    let work = scratch_dir("r20-direction");
    let rows: String = ["negative", "neutral", "positive"]
        .iter()
        .enumerate()
        .flat_map(|(i, label)| {
            (0..4).map(move |k| format!("{{\"text\": \"{} tail {label} {k}\", \"label\": \"{label}\"}}\n", "filler ".repeat(10 + i)))
        })
        .collect();
    let train = work.join("train.jsonl");
    std::fs::write(&train, rows).unwrap();
    let output = work.join("out");
    succeed(
        train16(&model, &train, &output).args(["--max-steps", "2", "--batch-size", "4", "--truncation-direction", "left"]),
        "training with left truncation",
    );
    let settings = crate::train::read_json(&output.join("berth-inference.json"));
    assert_eq!(settings["truncation_direction"], "left", "{settings}");

    // The saved direction cuts from the left: [CLS], the last 14 word pieces, [SEP].
    let long = format!("{} the very end", "filler words ".repeat(12));
    let (predictor, _) = Predictor::load(&output, 16).unwrap();
    let whole = predictor.tokenizer.encode_with(&long, None, berth::data::tokenize::Truncation::None).unwrap().ids;
    let cut = predictor.tokenizer.encode(&long, None).unwrap().ids;
    let mut want = vec![whole[0]];
    want.extend_from_slice(&whole[whole.len() - 15..]);
    assert_eq!(cut, want, "left truncation keeps the last tokens");

    // predict and the library read it; the flag can turn it back.
    let input = work.join("input.txt");
    std::fs::write(&input, format!("{long}\n")).unwrap();
    let logits_of = |extra: &[&str]| {
        let out = succeed(berth().args(["predict", "--model"]).arg(&output).arg("--input").arg(&input).args(extra), "predict");
        let line: Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
        (serde_json::from_value::<Vec<f64>>(line["logits"].clone()).unwrap(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (left, stderr) = logits_of(&[]);
    assert!(stderr.contains("truncation direction: left (keep the last tokens) (berth-inference.json)"), "{stderr}");
    let (right, _) = logits_of(&["--truncation-direction", "right"]);
    assert!(rel_error(&left, &right) > 1e-6, "the two ends must give different logits: {left:?} {right:?}");
    let options = berth::ClassifierOptions { device: berth::DeviceChoice::Cpu, ..Default::default() };
    let classifier = berth::Classifier::load_with(&output, &options).unwrap();
    assert!(rel_error(&classifier.predict(&[long.as_str()]).unwrap()[0].logits, &left) < 1e-6);
    // serve too, unless the request names a direction.
    let server = crate::serve::Server::start(&output, &[]);
    let served = |body: Value| {
        let reply = server.post(&body);
        served_logits(&reply.json(), classifier.labels())
    };
    assert!(rel_error(&served(serde_json::json!({"inputs": long, "raw_scores": true})), &left) < 1e-5);
    let right_served = served(serde_json::json!({"inputs": long, "raw_scores": true, "truncation_direction": "Right"}));
    assert!(rel_error(&right_served, &right) < 1e-5);

    let e =
        fail(berth().args(["predict", "--truncation-direction", "up", "--model"]).arg(&output).arg("--input").arg(&input), "bad direction");
    assert!(e.contains("--truncation-direction `up`: use left or right"), "{e}");
    let e = fail(
        berth()
            .args(["predict", "--long-text", "chunk", "--chunk-stride", "4", "--truncation-direction", "left", "--model"])
            .arg(&output)
            .arg("--input")
            .arg(&input),
        "direction with chunk",
    );
    assert!(e.contains("--truncation-direction left applies to --long-text truncate"), "{e}");
}

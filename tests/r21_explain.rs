//! Issue 21: token attributions. Integrated gradients and gradient × input
//! equal captum's on the transformers model (tests/data/explain/captum.json,
//! from tools/ig-reference.py: float64, the same baseline, steps and rule),
//! completeness holds, and bad flags are errors.

use std::path::Path;

use berth::data::tokenize::BerthTokenizer;
use berth::infer::explain::explain_text;
use berth::model::explain::{Baseline, ExplainMethod, ExplainOptions, IntegrationRule, explain_pieces};
use berth::model::settings::Aggregate;
use berth::model::{LoadOptions, load_model};
use berth::tensor::DType;
use berth::{Classifier, ClassifierOptions, DeviceChoice};
use serde_json::{Value, json};

use crate::common::{fixture_dir, minilm_dir, rel_error, scratch_dir};
use crate::serve::{Server, headed_minilm, request, texts};
use crate::train::{berth, fail, succeed};

fn captum() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/explain/captum.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

#[test]
fn r21_attributions_equal_captum_in_f64() {
    let reference = captum();
    let (mut compared, mut token_cases) = (0, 0);
    for case in reference["cases"].as_array().unwrap() {
        let Some(dir) = fixture_dir(case["model"].as_str().unwrap()) else { return };
        let (model, _) = load_model(&dir, &LoadOptions { dtype: DType::F64, ..LoadOptions::for_prediction() }).unwrap();
        let tokenizer = BerthTokenizer::from_dir(&dir, model.config.max_sequence_length()).unwrap();
        // A token case: F sums the recorded (piece, tag) logits, as an entity's explanation does.
        let words: Option<Vec<String>> = case["words"].as_array().map(|w| w.iter().map(|w| w.as_str().unwrap().to_string()).collect());
        let outputs: Vec<(usize, usize)> = case["outputs"]
            .as_array()
            .map(|o| o.iter().map(|p| (p[0].as_u64().unwrap() as usize, p[1].as_u64().unwrap() as usize)).collect())
            .unwrap_or_default();
        let (text, pair) = (case["text"].as_str().unwrap_or_default(), case["pair"].as_str());
        for (key, want) in case["attributions"].as_object().unwrap() {
            let options = match key.split('/').collect::<Vec<_>>()[..] {
                ["grad-x-input"] => ExplainOptions { method: ExplainMethod::GradXInput, steps: 1, ..ExplainOptions::default() },
                ["ig", rule, steps] => ExplainOptions {
                    rule: if rule == "gauss-legendre" { IntegrationRule::GaussLegendre } else { IntegrationRule::RiemannMiddle },
                    steps: steps.parse().unwrap(),
                    step_batch: 5,
                    ..ExplainOptions::default()
                },
                _ => panic!("unknown reference key {key}"),
            };
            let ours = match &words {
                Some(words) => {
                    let encoded = tokenizer.encode_words(words).unwrap();
                    assert_eq!(
                        encoded.ids,
                        case["input_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect::<Vec<_>>()
                    );
                    let special: Vec<bool> = encoded.word_ids.iter().map(Option::is_none).collect();
                    let numbers = explain_pieces(&model, &encoded, &special, tokenizer.pad_id(), &options, &outputs).unwrap();
                    assert_eq!(numbers.pieces, Some(outputs.iter().map(|o| o.0).collect()));
                    token_cases += 1;
                    numbers
                }
                None => explain_text(&model, &tokenizer, text, pair, &options).unwrap().numbers,
            };
            assert_eq!(ours.target as u64, case["target"].as_u64().unwrap(), "{key}: target");
            let want = floats(want);
            let got = &ours.attributions;
            let err = rel_error(got, &want);
            assert!(err < 1e-6, "{} {key}: relative error {err:e}\n ours {got:?}\n captum {want:?}", case["model"]);
            if key.starts_with("ig/") {
                // Captum's convergence delta is sum − Δ; ours must agree with it.
                let rule = key.trim_start_matches("ig/");
                let captum_delta = case[format!("delta/{rule}")].as_f64().unwrap();
                let ours_delta = ours.sum - ours.delta.unwrap();
                assert!((ours_delta - captum_delta).abs() < 1e-9, "{key}: sum − Δ {ours_delta:e} vs captum {captum_delta:e}");
                assert_eq!(ours.passes, options.steps.div_ceil(5), "{key}: one pass per step batch");
            }
            compared += 1;
        }
    }
    assert!(compared >= 30, "{compared} attributions compared");
    assert!(token_cases >= 6, "{token_cases} token-model attributions compared");
}

#[test]
fn r21_completeness_gap_shrinks_with_more_steps_and_special_tokens_get_nothing() {
    let Some(dir) = fixture_dir("a-pair") else { return };
    let (model, _) = load_model(&dir, &LoadOptions { dtype: DType::F64, ..LoadOptions::for_prediction() }).unwrap();
    let tokenizer = BerthTokenizer::from_dir(&dir, 64).unwrap();
    let gap = |steps: usize, baseline: Baseline| {
        let options = ExplainOptions { steps, baseline, rule: IntegrationRule::RiemannRight, ..ExplainOptions::default() };
        let e = explain_text(&model, &tokenizer, "A man is playing guitar.", Some("A musician plays."), &options).unwrap();
        for (piece, attribution) in e.tokens.iter().map(|t| (t.token.as_str(), t.attribution)) {
            if piece == "[CLS]" || piece == "[SEP]" {
                assert_eq!(attribution, 0.0, "{piece} kept by the baseline");
            }
        }
        let words: f64 = e.words.iter().map(|w| w.attribution).sum();
        assert!((words - e.numbers.sum).abs() < 1e-12, "words add up to the pieces");
        e.numbers.completeness_gap.unwrap()
    };
    for baseline in [Baseline::Pad, Baseline::Zero] {
        let (coarse, fine) = (gap(2, baseline), gap(64, baseline));
        assert!(fine < coarse && fine < 0.01, "{baseline:?}: gap {coarse} at 2 steps, {fine} at 64");
    }
}

#[test]
fn r21_predict_explain_writes_attributions_and_refuses_bad_flags() {
    let Some(dir) = fixture_dir("a-seqcls") else { return };
    let scratch = scratch_dir("r21-explain-cli");
    let input = scratch.join("in.txt");
    std::fs::write(&input, "This movie was absolutely fantastic!\nWorst. Purchase. Ever.\n").unwrap();
    let predict = |extra: &[&str]| {
        let mut cmd = berth();
        cmd.arg("predict").arg("--model").arg(&dir).arg("--input").arg(&input).args(["--device", "cpu"]).args(extra);
        cmd
    };
    let out = succeed(&mut predict(&["--explain", "ig", "--steps", "16", "--target", "positive"]), "predict --explain");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("completeness gap over 2 inputs"), "{stderr}");
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let e = &v["explanation"];
        assert_eq!(e["target"], "positive");
        assert_eq!(e["rule"], "gauss-legendre");
        let sum: f64 = e["tokens"].as_array().unwrap().iter().map(|t| t["attribution"].as_f64().unwrap()).sum();
        assert!((sum - e["sum"].as_f64().unwrap()).abs() < 1e-9);
        assert!(e["completeness_gap"].as_f64().unwrap() < 0.01, "{e}");
        assert_eq!(e["passes"], 1);
    }
    let err = fail(&mut predict(&["--explain", "ig", "--steps", "0"]), "--steps 0");
    assert!(err.contains("--steps 0"), "{err}");
    let err = fail(&mut predict(&["--explain", "ig", "--target", "maybe"]), "unknown target");
    assert!(err.contains("--target maybe") && err.contains("negative"), "{err}");
    let err = fail(&mut predict(&["--explain", "ig", "--ig-rule", "trapezoid", "--steps", "1"]), "trapezoid of one step");
    assert!(err.contains("--steps 1") && err.contains("at least 2"), "{err}");
    // A bare encoder has no trained head to explain.
    if let Some(minilm) = minilm_dir() {
        let mut cmd = berth();
        cmd.arg("predict").arg("--model").arg(&minilm).arg("--input").arg(&input).args(["--explain", "ig", "--device", "cpu"]);
        let err = fail(&mut cmd, "explain a bare encoder");
        assert!(err.contains("no trained classification head"), "{err}");
    }
}

#[test]
fn r21_chunked_documents_are_explained_as_their_aggregate_is_made() {
    let Some(dir) = fixture_dir("a-seqcls") else { return };
    let scratch = scratch_dir("r21-explain-chunks");
    let input = scratch.join("docs.txt");
    let long: Vec<String> = (0..60).map(|i| ["great", "film", "awful", "plot", "and", "the", "actors"][i % 7].to_string()).collect();
    std::fs::write(&input, format!("{}\nA short one.\n", long.join(" "))).unwrap();
    let predict = |aggregate: &str, extra: &[&str]| {
        let mut cmd = berth();
        cmd.arg("predict").arg("--model").arg(&dir).arg("--input").arg(&input).args(["--device", "cpu", "--max-length", "24"]);
        cmd.args(["--long-text", "chunk", "--chunk-stride", "6", "--aggregate", aggregate]).args(extra);
        cmd
    };
    let lines = |out: std::process::Output| -> Vec<Value> {
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    for aggregate in ["mean", "max", "first"] {
        let plain = lines(succeed(&mut predict(aggregate, &[]), "chunked predict"));
        let out = succeed(&mut predict(aggregate, &["--explain", "ig", "--steps", "64"]), "chunked predict --explain");
        assert!(String::from_utf8_lossy(&out.stderr).contains("over 2 documents"));
        for (p, line) in plain.iter().zip(lines(out)) {
            let e = &line["explanation"];
            let windows = p["windows"].as_u64().unwrap();
            assert_eq!(e["windows"].as_u64().unwrap(), windows, "{e}");
            let explained: Vec<u64> = e["explained_windows"].as_array().unwrap().iter().map(|w| w.as_u64().unwrap()).collect();
            match aggregate {
                "mean" => assert_eq!(explained, (0..windows).collect::<Vec<_>>()),
                "first" => assert_eq!(explained, vec![0]),
                _ => assert_eq!(explained.len(), 1),
            }
            let weights: f64 = e["weights"].as_array().unwrap().iter().map(|w| w.as_f64().unwrap()).sum();
            assert!((weights - 1.0).abs() < 1e-12);
            // F is the document's logit, the aggregate prediction reports.
            let target = e["target_index"].as_u64().unwrap() as usize;
            let document = p["logits"][target].as_f64().unwrap();
            assert!((e["logit"].as_f64().unwrap() - document).abs() < 1e-4, "{aggregate}: {} vs {document}", e["logit"]);
            let words: f64 = e["words"].as_array().unwrap().iter().map(|w| w["attribution"].as_f64().unwrap()).sum();
            assert!((words - e["sum"].as_f64().unwrap()).abs() < 1e-6, "{e}");
            assert!(e["completeness_gap"].as_f64().unwrap() < 0.01, "{aggregate}: {e}");
            assert_eq!(e["per_window"].as_array().unwrap().len(), explained.len());
        }
        if aggregate == "max" {
            // The long document's explained window is the one whose logit is the document's.
            let e = &lines(succeed(&mut predict("max", &["--explain", "ig", "--steps", "8"]), "max"))[0]["explanation"];
            assert!(e["windows"].as_u64().unwrap() >= 3, "the long text needs several windows: {e}");
        }
    }
}

#[test]
fn r21_token_models_explain_each_predicted_entity() {
    let Some(dir) = fixture_dir("a-tokcls") else { return };
    let scratch = scratch_dir("r21-explain-tokens");
    let input = scratch.join("words.txt");
    // The last sentence is longer than the model's 64 positions, so it is read in windows.
    let long: Vec<&str> = "Peter Blackburn met EU officials in Zürich on Tuesday .".split(' ').cycle().take(90).collect();
    let sentences = ["EU rejects German call to boycott British lamb .", "Peter Blackburn", &long.join(" ")];
    std::fs::write(&input, sentences.join("\n") + "\n").unwrap();
    let predict = |extra: &[&str]| {
        let mut cmd = berth();
        cmd.arg("predict").arg("--model").arg(&dir).arg("--input").arg(&input).args(["--device", "cpu"]).args(extra);
        cmd
    };
    let out = succeed(&mut predict(&["--words", "--explain", "ig", "--steps", "64"]), "predict --words --explain");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("completeness gap over") && stderr.contains("entities"), "{stderr}");
    let lines: Vec<Value> = String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let (mut explained, mut windowed) = (0, 0);
    for line in &lines {
        let (entities, explanations) = (line["entities"].as_array().unwrap(), line["explanations"].as_array().unwrap());
        assert_eq!(entities.len(), explanations.len(), "one explanation per entity: {line}");
        let n_words = line["words"].as_array().unwrap().len();
        for (entity, e) in entities.iter().zip(explanations) {
            assert_eq!((&e["type"], &e["text"]), (&entity["type"], &entity["text"]));
            let (start, end) = (entity["start"].as_u64().unwrap(), entity["end"].as_u64().unwrap());
            let words: Vec<u64> = e["explained"].as_array().unwrap().iter().map(|w| w["word"].as_u64().unwrap()).collect();
            assert_eq!(words, (start..end).collect::<Vec<_>>(), "every word of the entity is explained: {e}");
            for w in e["explained"].as_array().unwrap() {
                assert_eq!(w["tag"], line["tags"][w["word"].as_u64().unwrap() as usize], "the predicted tag is explained");
            }
            assert_eq!(e["pieces"].as_array().unwrap().len(), words.len());
            // Word indices are the sentence's, and every word's pieces add up to the sum.
            let word_sum: f64 = e["words"].as_array().unwrap().iter().map(|w| w["attribution"].as_f64().unwrap()).sum();
            assert!((word_sum - e["sum"].as_f64().unwrap()).abs() < 1e-6, "{e}");
            for w in e["words"].as_array().unwrap() {
                let index = w["index"].as_u64().unwrap() as usize;
                assert!(index < n_words && w["word"] == line["words"][index], "{w}");
            }
            assert!(e["completeness_gap"].as_f64().unwrap() < 0.01, "{e}");
            windowed += usize::from(e["window_start"].as_u64().unwrap() > 0);
            explained += 1;
        }
    }
    assert!(explained >= 3 && windowed >= 1, "{explained} entities explained, {windowed} in a later window");
    // The library gives the same explanations.
    let classifier = Classifier::load(&dir, DeviceChoice::Cpu).unwrap();
    let words: Vec<Vec<String>> = sentences.iter().map(|s| s.split(' ').map(String::from).collect()).collect();
    let options = ExplainOptions { steps: 64, ..ExplainOptions::default() };
    let (_, library) = classifier.explain_entities(&words, &options).unwrap();
    for (line, ours) in lines.iter().zip(&library) {
        for (cli, lib) in line["explanations"].as_array().unwrap().iter().zip(ours) {
            let sum = lib.explanation.numbers.sum;
            assert!((cli["sum"].as_f64().unwrap() - sum).abs() < 1e-9 * sum.abs().max(1.0));
        }
    }
    let err = classifier.explain_entities(&words, &ExplainOptions { target: Some(1), ..options }).unwrap_err().to_string();
    assert!(err.contains("Classifier::explain_entities") && err.contains("target"), "{err}");
    let err = fail(&mut predict(&["--words", "--explain", "ig", "--target", "B-PER"]), "--target on a token model");
    assert!(err.contains("--target B-PER") && err.contains("entity"), "{err}");
    let err = fail(&mut predict(&["--explain", "ig"]), "a token model's lines without --words");
    assert!(err.contains("token-classification") && err.contains("--words"), "{err}");
}

#[test]
fn r21_classifier_explains_the_predicted_label_and_names_unknown_ones() {
    let Some(dir) = fixture_dir("a-seqcls") else { return };
    let classifier = Classifier::load(&dir, DeviceChoice::Cpu).unwrap();
    let texts = ["This movie was absolutely fantastic!", "Worst. Purchase. Ever."];
    let options = ExplainOptions { steps: 64, ..ExplainOptions::default() };
    let explanations = classifier.explain(&texts, &options).unwrap();
    let predictions = classifier.predict(&texts).unwrap();
    for ((e, p), text) in explanations.iter().zip(&predictions).zip(texts) {
        assert_eq!(e.target, p.top().label, "{text}: the predicted label is explained");
        let index = classifier.label_index(&e.target).unwrap();
        assert!(
            (e.numbers.logit - p.logits[index]).abs() < 1e-4,
            "{text}: F(input) {} vs the prediction's {}",
            e.numbers.logit,
            p.logits[index]
        );
        assert!(e.numbers.completeness_gap.unwrap() < 0.01, "{text}: {:?}", e.numbers);
    }
    // A chosen label, and a pair.
    let negative = ExplainOptions { target: Some(classifier.label_index("negative").unwrap()), ..options };
    let pair = classifier.explain_pairs(&[("A fine film.", "I liked it.")], &negative).unwrap();
    assert_eq!(pair[0].target, "negative");
    assert!(pair[0].tokens.iter().filter(|t| t.token == "[SEP]").count() == 2, "{:?}", pair[0].tokens);
    let err = classifier.label_index("maybe").unwrap_err().to_string();
    assert!(err.contains("no label `maybe`") && err.contains("negative"), "{err}");
    let err = classifier.explain(&texts, &ExplainOptions { steps: 0, ..options }).unwrap_err().to_string();
    assert!(err.contains("--steps 0"), "{err}");
}

/// `"explain"` on serve: each answer carries the library's explanation,
/// the limits are 400/413/503, and an ordinary request is answered while
/// an explanation computes (it never queues behind one).
#[test]
fn r21_serve_explains_within_its_limits_beside_ordinary_requests() {
    let Some(dir) = fixture_dir("a-seqcls") else { return };
    let classifier = Classifier::load(&dir, DeviceChoice::Cpu).unwrap();
    let server = Server::start(&dir, &["--explain-max-steps", "40", "--explain-max-inputs", "2"]);
    let text = "This movie was absolutely fantastic!";
    let reply = server.post(&json!({"inputs": [text, "Worst. Purchase. Ever."], "explain": {"steps": 24, "target": "negative"}}));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let answer = reply.json();
    let options = ExplainOptions { steps: 24, target: Some(classifier.label_index("negative").unwrap()), ..ExplainOptions::default() };
    let ours = classifier.explain(&[text], &options).unwrap().remove(0);
    let served = &answer[0]["explanation"];
    assert_eq!(served["target"], "negative");
    assert_eq!(served["steps"], 24);
    let served_attributions: Vec<f64> = served["tokens"].as_array().unwrap().iter().map(|t| t["attribution"].as_f64().unwrap()).collect();
    let library: Vec<f64> = ours.tokens.iter().map(|t| t.attribution).collect();
    assert!(rel_error(&served_attributions, &library) < 1e-12, "served {served_attributions:?}\nlibrary {library:?}");
    assert_eq!(answer[0]["scores"][0]["label"], classifier.predict(&[text]).unwrap()[0].top().label.as_str());
    assert_eq!(server.metric("berth_explanations_total"), 2.0);
    let info = server.get("/info").json();
    assert_eq!((info["explain_max_steps"].as_u64(), info["explain_max_inputs"].as_u64()), (Some(40), Some(2)));
    // The limits.
    let status = |body: Value| {
        let r = server.post(&body);
        (r.status, r.json()["error"].as_str().unwrap_or_default().to_string())
    };
    let (code, message) = status(json!({"inputs": text, "explain": {"steps": 41}}));
    assert!(code == 413 && message.contains("--explain-max-steps"), "{code} {message}");
    let (code, message) = status(json!({"inputs": [text, text, text], "explain": true}));
    assert!(code == 413 && message.contains("--explain-max-inputs"), "{code} {message}");
    let (code, message) = status(json!({"inputs": text, "explain": {"target": "maybe"}}));
    assert!(code == 400 && message.contains("`explain.target`") && message.contains("negative"), "{code} {message}");
    let (code, message) = status(json!({"inputs": text, "explain": {"rule": "trapezoid", "steps": 1}}));
    assert!(code == 400 && message.contains("at least 2"), "{code} {message}");
    // Gradient × input takes one step whatever the rule says.
    let r = server.post(&json!({"inputs": text, "explain": {"method": "grad-x-input", "rule": "trapezoid"}}));
    assert_eq!((r.status, r.json()["explanation"]["method"].as_str()), (200, Some("grad-x-input")), "{}", r.body);
    drop(server);
    // The server's own explanation flags.
    let mut cmd = berth();
    cmd.args(["serve", "--device", "cpu", "--port", "0", "--model"]).arg(&dir).args([
        "--explain-steps",
        "200",
        "--explain-max-steps",
        "100",
    ]);
    let err = fail(&mut cmd, "--explain-steps over --explain-max-steps");
    assert!(err.contains("--explain-steps 200 is over --explain-max-steps 100"), "{err}");
    let mut cmd = berth();
    cmd.args(["serve", "--device", "cpu", "--port", "0", "--model"]).arg(&dir).args(["--explain-threads", "0"]);
    let err = fail(&mut cmd, "--explain-threads 0");
    assert!(err.contains("--explain-threads must be at least 1"), "{err}");
    let off = Server::start(&dir, &["--explain-concurrency", "0"]);
    let r = off.post(&json!({"inputs": text, "explain": true}));
    assert!(r.status == 400 && r.body.contains("--explain-concurrency 0"), "{} {}", r.status, r.body);
    assert_eq!(off.post(&json!({"inputs": text})).status, 200, "ordinary requests still served");
}

#[test]
fn r21_serve_explains_chunked_documents_and_token_models_as_the_library_does() {
    let (Some(seqcls), Some(tokcls)) = (fixture_dir("a-seqcls"), fixture_dir("a-tokcls")) else { return };
    // A chunked request: the document's explanation is its windows' as the mean combines them.
    let options = ClassifierOptions { device: DeviceChoice::Cpu, max_length: Some(24), ..ClassifierOptions::default() };
    let classifier = Classifier::load_with(&seqcls, &options).unwrap();
    let words: Vec<&str> = ["great", "film", "awful", "plot", "and", "the", "actors"].iter().copied().cycle().take(30).collect();
    let document = words.join(" ");
    let windows = classifier.encode_windows(&document, None, classifier.chunk_settings()).unwrap().windows;
    assert!(windows.len() >= 2, "the document must need several windows");
    // Room for the document's windows and the short text's one; not for the document twice.
    let limit = (windows.len() + 1).to_string();
    let server = Server::start(&seqcls, &["--max-length", "24", "--explain-max-inputs", &limit]);
    let reply = server.post(&json!({"inputs": [document, "A short one."], "long_text": "chunk", "explain": {"steps": 16}}));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let answer = reply.json();
    let explain = ExplainOptions { steps: 16, ..ExplainOptions::default() };
    let ours = classifier.explain_windows(&windows, Aggregate::Mean, &explain).unwrap();
    let served = &answer[0]["explanation"];
    assert_eq!((served["aggregate"].as_str(), served["windows"].as_u64()), (Some("mean"), Some(windows.len() as u64)), "{served}");
    let served_words: Vec<f64> = served["words"].as_array().unwrap().iter().map(|w| w["attribution"].as_f64().unwrap()).collect();
    let library: Vec<f64> = ours.words.iter().map(|w| w.attribution).collect();
    assert_eq!(served_words.len(), 30, "every word of the document, once");
    assert!(rel_error(&served_words, &library) < 1e-12, "served {served_words:?}\nlibrary {library:?}");
    // F is the logit the chunked prediction reports for the target.
    let raw = server.post(&json!({"inputs": document, "long_text": "chunk", "raw_scores": true})).json();
    let target = served["target"].as_str().unwrap();
    let logit = raw.as_array().unwrap().iter().find(|s| s["label"] == target).unwrap()["score"].as_f64().unwrap();
    assert!((served["logit"].as_f64().unwrap() - logit).abs() < 1e-5, "{} vs {logit}", served["logit"]);
    assert!(served["completeness_gap"].as_f64().unwrap() < 0.05, "{served}");
    assert_eq!(answer[1]["explanation"]["windows"], 1);
    // Each explained window counts against --explain-max-inputs.
    let twice = server.post(&json!({"inputs": [document, document], "long_text": "chunk", "explain": true}));
    assert!(twice.status == 413 && twice.body.contains("windows") && twice.body.contains("--explain-max-inputs"), "{}", twice.body);
    drop(server);

    // A token model: one explanation per predicted entity, equal to the library's.
    let server = Server::start(&tokcls, &["--explain-max-inputs", "40"]);
    let classifier = Classifier::load(&tokcls, DeviceChoice::Cpu).unwrap();
    let sentence = "EU rejects German call to boycott British lamb . Peter Blackburn met EU officials in Zurich";
    let reply = server.post(&json!({"inputs": [sentence], "explain": {"steps": 16}}));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let served = &reply.json()[0];
    let split: Vec<String> = sentence.split_whitespace().map(String::from).collect();
    let (predictions, ours) = classifier.explain_entities(std::slice::from_ref(&split), &explain).unwrap();
    assert_eq!(served["tags"], json!(predictions[0].tags));
    let explanations = served["explanations"].as_array().unwrap();
    assert!(!ours[0].is_empty(), "the fixture predicts no entity in {sentence:?}: pick another sentence");
    assert_eq!(explanations.len(), ours[0].len(), "one explanation per entity");
    assert_eq!(explanations.len(), served["entities"].as_array().unwrap().len());
    for (e, mine) in explanations.iter().zip(&ours[0]) {
        assert_eq!(e["text"].as_str(), Some(mine.text.as_str()));
        let served: Vec<f64> = e["tokens"].as_array().unwrap().iter().map(|t| t["attribution"].as_f64().unwrap()).collect();
        let library: Vec<f64> = mine.explanation.tokens.iter().map(|t| t.attribution).collect();
        assert!(rel_error(&served, &library) < 1e-12, "{}: served {served:?}\nlibrary {library:?}", mine.text);
    }
    assert_eq!(server.metric("berth_explanations_total"), 1.0);
    let refused = server.post(&json!({"inputs": sentence, "explain": {"target": "B-PER"}}));
    assert!(refused.status == 400 && refused.body.contains("`explain.target`"), "{}", refused.body);
    drop(server);
    // Entities are counted once predicted: more than the limit is 413.
    let tight = Server::start(&tokcls, &["--explain-max-inputs", "1"]);
    let over = tight.post(&json!({"inputs": sentence, "explain": true}));
    assert!(ours[0].len() > 1, "the sentence needs several entities");
    assert!(over.status == 413 && over.body.contains("predicted entities"), "{}", over.body);
    assert_eq!(tight.post(&json!({"inputs": sentence})).status, 200, "ordinary requests still served");
}

#[test]
fn r21_serve_refuses_a_second_explanation_and_answers_ordinary_requests_meanwhile() {
    let Some(model) = headed_minilm() else { return };
    let server = Server::start(&model, &[]);
    // 128 word pieces at 32 steps: seconds of work, against milliseconds per ordinary request.
    let long_text = texts(40).join(" ");
    let slow = json!({"inputs": [long_text], "explain": {"steps": 32}});
    let address = server.address;
    let explaining = std::thread::spawn(move || {
        let started = std::time::Instant::now();
        let reply = request(address, "POST", "/predict", slow.to_string().as_bytes()).unwrap();
        (reply, started.elapsed())
    });
    // Once the slow request is in flight (and a moment later, past its
    // parsing), it holds the only slot: a second explanation is refused.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while server.metric("berth_requests_in_flight") < 1.0 {
        assert!(std::time::Instant::now() < deadline, "the explanation request never arrived");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let refused = server.post(&json!({"inputs": "short", "explain": true}));
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert!(refused.body.contains("--explain-concurrency"), "{}", refused.body);
    // Ordinary requests are answered while it computes.
    let ordinary_started = std::time::Instant::now();
    for t in texts(5) {
        assert_eq!(server.post(&json!({"inputs": t})).status, 200);
    }
    let ordinary = ordinary_started.elapsed();
    assert!(!explaining.is_finished(), "the explanation ended before the ordinary requests did ({ordinary:?}); make it longer");
    let (reply, took) = explaining.join().unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json().as_array().unwrap().len(), 1);
    eprintln!("explanation of 128 pieces at 32 steps: {took:?}; 5 ordinary requests meanwhile: {ordinary:?}");
}

/// `berth eval --report DIR --explain K`: per true label, the K most
/// confident errors, really errors and in order, each word's value in the
/// SVG equal to `Classifier::explain`'s toward the predicted label.
#[test]
fn r21_eval_report_explains_the_most_confident_errors_of_each_label() {
    let Some(model) = fixture_dir("a-seqcls") else { return };
    let work = scratch_dir("r21-eval-explain");
    let named = crate::train::sentences(&crate::train::SENTIMENT, 1000, 15)
        .replace("\tneg\n", "\tnegative\n")
        .replace("\tneu\n", "\tneutral\n")
        .replace("\tpos\n", "\tpositive\n");
    let dev = work.join("dev.tsv");
    std::fs::write(&dev, &named).unwrap();
    let report = work.join("report");
    let eval = |extra: &[&str]| {
        let mut cmd = berth();
        cmd.args(["eval", "--device", "cpu", "--model"]).arg(&model).arg("--data").arg(&dev).arg("--output").arg(work.join("m.json"));
        cmd.args(extra);
        cmd
    };
    let mut cmd = eval(&["--explain", "2", "--explain-steps", "16"]);
    succeed(cmd.arg("--report").arg(&report), "eval --explain");
    let m: Value = serde_json::from_str(&std::fs::read_to_string(work.join("m.json")).unwrap()).unwrap();
    let labels: Vec<String> = serde_json::from_value(m["labels"].clone()).unwrap();
    let matrix: Vec<Vec<usize>> = serde_json::from_value(m["confusion_matrix"].clone()).unwrap();
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    let section = md.split("## Most confident errors").nth(1).expect("the report has the errors section");
    let svgs: Vec<String> =
        (0..labels.len()).filter_map(|i| std::fs::read_to_string(report.join(format!("plots/errors_{i}.svg"))).ok()).collect();
    let texts: Vec<&str> = named.lines().skip(1).map(|l| l.split('\t').next().unwrap()).collect();
    let classifier = Classifier::load(&model, DeviceChoice::Cpu).unwrap();
    let mut checked = 0;
    for (class, label) in labels.iter().enumerate() {
        let errors: usize = matrix[class].iter().enumerate().filter(|(p, _)| *p != class).map(|(_, n)| n).sum();
        let part = section.split(&format!("### true label `{label}`")).nth(1).unwrap().split("### ").next().unwrap();
        let rows: Vec<Vec<&str>> = part
            .lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| row") && !l.starts_with("| ---"))
            .map(|l| l.split(" | ").collect())
            .collect();
        assert_eq!(rows.len(), errors.min(2), "{label}: {part}");
        let probabilities: Vec<f64> = rows.iter().map(|r| r[2].parse().unwrap()).collect();
        assert!(probabilities.windows(2).all(|w| w[0] >= w[1]), "{label}: most confident first: {probabilities:?}");
        for row in &rows {
            let index: usize = row[0].trim_start_matches("| ").parse().unwrap();
            let predicted = row[1].trim_matches('`');
            assert_ne!(predicted, label, "row {index} is an error");
            assert_eq!(named.lines().nth(index + 1).unwrap().split('\t').nth(1).unwrap(), label, "row {index}'s true label");
            // The picture's words carry the library's attributions toward the predicted label.
            let target = classifier.label_index(predicted).unwrap();
            let options = ExplainOptions { steps: 16, target: Some(target), ..ExplainOptions::default() };
            let ours = classifier.explain(&[texts[index]], &options).unwrap().remove(0);
            let svg = svgs.iter().find(|s| s.contains(&format!("data-row=\"{index}\""))).expect("the row is drawn");
            // Words in order, so a repeated word is matched with its own box.
            let mut cursor = 0;
            for w in &ours.words {
                let cell = format!(r#"data-row="{index}" data-word="{}" data-v=""#, w.word);
                let at = cursor + svg[cursor..].find(&cell).unwrap_or_else(|| panic!("no box for {} in row {index}", w.word)) + cell.len();
                cursor = at;
                let value: f64 = svg[at..].split('"').next().unwrap().parse().unwrap();
                assert!((value - w.attribution).abs() <= 1e-9 * w.attribution.abs().max(1e-6), "{}: {value} vs {}", w.word, w.attribution);
                checked += 1;
            }
        }
    }
    assert!(checked > 0, "no error was explained; the fixture should make some");
    let html = std::fs::read_to_string(report.join("errors.html")).unwrap();
    assert!(html.contains("data-v=") && html.contains("plots/errors_"), "errors.html highlights words and shows the charts");
    // Bad flags.
    let err = fail(&mut eval(&["--explain", "2"]), "--explain without --report");
    assert!(err.contains("--report"), "{err}");
    let mut cmd = eval(&["--explain", "0"]);
    let err = fail(cmd.arg("--report").arg(work.join("r0")), "--explain 0");
    assert!(err.contains("--explain 0"), "{err}");
    // A regression model has no errors to rank: refused before anything is written.
    if let Some(regression) = fixture_dir("a-regression") {
        let scores = work.join("scores.tsv");
        std::fs::write(&scores, "text\tlabel\nA man plays.\t2.5\nA dog runs.\t4.0\n").unwrap();
        let refused = work.join("refused");
        let mut cmd = berth();
        cmd.args(["eval", "--device", "cpu", "--model"]).arg(&regression).arg("--data").arg(&scores);
        cmd.arg("--output").arg(work.join("r.json")).arg("--report").arg(&refused).args(["--explain", "2"]);
        let err = fail(&mut cmd, "--explain on a regression model");
        assert!(err.contains("--explain 2") && err.contains("single-label") && err.contains("regression"), "{err}");
        assert!(!refused.exists() && !work.join("r.json").exists(), "nothing written");
    }
}

//! Issue 15, models: no prediction from a random head (a bare encoder, a
//! head of the wrong dtype or shape), non-finite weights refused at load,
//! `convert` keeps a bare encoder bare, and other families' configs are
//! refused until berth runs them.

use std::path::{Path, PathBuf};

use berth::{Classifier, DeviceChoice};
use safetensors::{Dtype, SafeTensors};

use crate::common::{fixture_dir, minilm_dir, scratch_dir};
use crate::train::{SENTIMENT, berth, copy_dir, fail, succeed, train_cmd, write_data};

/// One stored tensor: dtype, shape, little-endian bytes.
type Stored = (Dtype, Vec<usize>, Vec<u8>);

/// Copies model folder `from` to a scratch folder, passing every tensor of
/// its model.safetensors through `edit` (None drops the tensor).
fn edited_model(name: &str, from: &Path, edit: impl Fn(&str, Stored) -> Option<Stored>) -> PathBuf {
    let dir = scratch_dir(name).join("model");
    copy_dir(from, &dir);
    let bytes = std::fs::read(from.join("model.safetensors")).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mut kept: Vec<(String, Stored)> = Vec::new();
    for (tensor_name, view) in file.tensors() {
        if let Some(t) = edit(&tensor_name, (view.dtype(), view.shape().to_vec(), view.data().to_vec())) {
            kept.push((tensor_name, t));
        }
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> =
        kept.iter().map(|(n, (d, s, b))| (n.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap())).collect();
    std::fs::write(dir.join("model.safetensors"), safetensors::tensor::serialize(views, None).unwrap()).unwrap();
    dir
}

fn predict_fails(model: &Path, what: &str) -> String {
    let input = model.parent().unwrap().join("input.txt");
    std::fs::write(&input, "the film was great\n").unwrap();
    fail(berth().args(["predict", "--model"]).arg(model).arg("--input").arg(&input), what)
}

#[test]
fn r15_a_bare_encoder_does_not_predict() {
    let Some(minilm) = minilm_dir() else { return };
    let work = scratch_dir("r15-bare-encoder");
    let err = predict_fails(&minilm, "predict on a bare encoder");
    assert!(err.contains("has no trained classification head") && err.contains("berth train"), "{err}");
    assert!(err.contains("classifier.weight: absent"), "{err}");

    let dev = work.join("dev.tsv");
    std::fs::write(&dev, "text\tlabel\nthe film was great\tpos\n").unwrap();
    let err = fail(berth().args(["eval", "--model"]).arg(&minilm).arg("--data").arg(&dev), "eval on a bare encoder");
    assert!(err.contains("has no trained classification head"), "{err}");

    let err = fail(berth().args(["serve", "--port", "0", "--device", "cpu", "--model"]).arg(&minilm), "serve a bare encoder");
    assert!(err.contains("has no trained classification head"), "{err}");

    let err = Classifier::load(&minilm, DeviceChoice::Cpu).err().expect("Classifier::load of a bare encoder should fail").to_string();
    assert!(err.contains("has no trained classification head"), "{err}");

    // convert keeps it bare: the written file has no head, so it does not predict either.
    let converted = work.join("converted");
    let out = succeed(berth().args(["convert", "--dtype", "f32", "--model"]).arg(&minilm).arg("--output").arg(&converted), "convert");
    assert!(String::from_utf8_lossy(&out.stderr).contains("without a head"));
    let bytes = std::fs::read(converted.join("model.safetensors")).unwrap();
    let names = SafeTensors::deserialize(&bytes).unwrap().names().into_iter().map(str::to_string).collect::<Vec<_>>();
    assert!(!names.is_empty() && names.iter().all(|n| !n.starts_with("classifier.")), "{names:?}");
    let err = predict_fails(&converted, "predict on the converted bare encoder");
    assert!(err.contains("has no trained classification head"), "{err}");
}

#[test]
fn r15_a_head_of_the_wrong_shape_or_dtype_is_named_as_such() {
    let Some(fixture) = fixture_dir("a-seqcls") else { return };
    let transposed = edited_model("r15-head-transposed", &fixture, |name, (d, shape, b)| {
        Some(if name.ends_with("classifier.weight") { (d, vec![shape[1], shape[0]], b) } else { (d, shape, b) })
    });
    let err = predict_fails(&transposed, "predict with a transposed head");
    assert!(
        err.contains("does not fit its config") && err.contains("classifier.weight: stored [32, 3], the config's head needs [3, 32]"),
        "{err}"
    );

    let integers = edited_model("r15-head-integers", &fixture, |name, (d, shape, b)| {
        if name.ends_with("classifier.bias") {
            // Three F32 values stored as I32 instead: same bytes, wrong dtype.
            assert_eq!(d, Dtype::F32);
            Some((Dtype::I32, shape, b))
        } else {
            Some((d, shape, b))
        }
    });
    let err = predict_fails(&integers, "predict with an integer head");
    assert!(err.contains("wrong dtype") && err.contains("classifier.bias: stored as I32"), "{err}");
    assert!(!err.contains("absent"), "a head of the wrong dtype is not missing:\n{err}");
    // Training refuses it too, rather than replacing it silently.
    let data = write_data(&scratch_dir("r15-head-integers-data"), &SENTIMENT);
    let err = fail(&mut train_cmd(&integers, &data.train, &integers.with_file_name("out"), &["--max-steps", "1"]), "train on it");
    assert!(err.contains("classifier.bias: stored as I32"), "{err}");
}

#[test]
fn r15_non_finite_weights_are_refused_at_load() {
    let Some(fixture) = fixture_dir("a-seqcls") else { return };
    let target = "bert.encoder.layer.1.attention.self.query.weight";
    let poisoned = edited_model("r15-nan-weight", &fixture, |name, (d, shape, mut b)| {
        if name.ends_with("encoder.layer.1.attention.self.query.weight") {
            assert_eq!(d, Dtype::F32);
            b[8..12].copy_from_slice(&f32::NAN.to_le_bytes());
            b[12..16].copy_from_slice(&f32::INFINITY.to_le_bytes());
        }
        Some((d, shape, b))
    });
    let stored_name = {
        let bytes = std::fs::read(poisoned.join("model.safetensors")).unwrap();
        let file = SafeTensors::deserialize(&bytes).unwrap();
        file.names().into_iter().find(|n| n.ends_with(&target[5..])).unwrap().to_string()
    };
    let err = predict_fails(&poisoned, "predict with a NaN weight");
    assert!(err.contains("non-finite weights") && err.contains(&format!("{stored_name}: 2 of")), "{err}");
    let err = Classifier::load(&poisoned, DeviceChoice::Cpu).err().expect("load should fail").to_string();
    assert!(err.contains("non-finite weights"), "{err}");
    let data = write_data(&scratch_dir("r15-nan-weight-data"), &SENTIMENT);
    let err = fail(&mut train_cmd(&poisoned, &data.train, &poisoned.with_file_name("out"), &["--max-steps", "1"]), "train on it");
    assert!(err.contains("non-finite weights"), "{err}");
}

#[test]
fn r15_other_model_types_are_refused_with_the_supported_list() {
    let Some(fixture) = fixture_dir("a-seqcls") else { return };
    let dir = scratch_dir("r15-model-type").join("model");
    copy_dir(&fixture, &dir);
    let config_path = dir.join("config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    // RoBERTa, XLM-R, ELECTRA and DistilBERT load since issue 18, ModernBERT and DeBERTa since issue 19.
    config["model_type"] = "mpnet".into();
    std::fs::write(&config_path, config.to_string()).unwrap();
    let err = predict_fails(&dir, "predict with model_type mpnet");
    assert!(
        err.contains(
            "model_type \"mpnet\" is not supported; berth loads bert, roberta, xlm-roberta, electra, distilbert, modernbert, deberta-v2"
        ),
        "{err}"
    );
}

// ---------------------------------------------------------------- a trained folder remembers how it was fed

/// Pair data with columns named as in NLI files, not `text`/`label`.
fn write_pairs(dir: &Path) -> (PathBuf, PathBuf) {
    let mut text = String::from("id\tpremise\thypothesis\tgold\n");
    for i in 0..24 {
        let (a, b, gold) =
            if i % 2 == 0 { ("the film was great", "it was good", "yes") } else { ("the plot was dull", "it was good", "no") };
        text.push_str(&format!("{i}\t{a} {i}\t{b}\t{gold}\n"));
    }
    let (train, dev) = (dir.join("train.tsv"), dir.join("dev.tsv"));
    std::fs::write(&train, &text).unwrap();
    std::fs::write(&dev, &text).unwrap();
    (train, dev)
}

#[test]
fn r15_eval_reads_the_data_as_the_model_was_trained() {
    let Some(fixture) = fixture_dir("a-seqcls") else { return };
    let work = scratch_dir("r15-saved-data-spec");
    let (train, dev) = write_pairs(&work);
    let output = work.join("out");
    let mut cmd = berth();
    cmd.arg("train").arg("--model").arg(&fixture).arg("--train").arg(&train).arg("--output").arg(&output);
    cmd.args(["--text-column", "premise", "--text-pair-column", "hypothesis", "--label-column", "gold", "--max-length", "48"]);
    succeed(cmd.args(["--max-steps", "2", "--device", "cpu"]), "train on pairs");
    let settings: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(output.join("berth-inference.json")).unwrap()).unwrap();
    assert_eq!(settings["format_version"], 3);
    assert_eq!(settings["data"]["text_pair_column"], "hypothesis");
    assert_eq!(settings["data"]["max_length"], 48);

    // No column flags: the saved ones are used, and the printout says so.
    let out = succeed(berth().args(["eval", "--device", "cpu", "--model"]).arg(&output).arg("--data").arg(&dev), "eval with saved columns");
    let err = String::from_utf8_lossy(&out.stderr);
    for line in [
        "text column: premise (berth-inference.json)",
        "text pair column: hypothesis (berth-inference.json)",
        "label column: gold (berth-inference.json)",
        "max length: 48 (berth-inference.json)",
    ] {
        assert!(err.contains(line), "missing `{line}` in:\n{err}");
    }
    // A flag still wins.
    let mut cmd = berth();
    cmd.args(["eval", "--device", "cpu", "--max-length", "40", "--model"]).arg(&output).arg("--data").arg(&dev);
    let err = String::from_utf8_lossy(&succeed(&mut cmd, "eval with a flag").stderr).into_owned();
    assert!(err.contains("max length: 40 (flag)"), "{err}");
}

#[test]
fn r15_inference_settings_carry_a_format_version() {
    let Some(fixture) = fixture_dir("a-seqcls") else { return };
    let work = scratch_dir("r15-settings-version");
    let model = work.join("model");
    copy_dir(&fixture, &model);
    let input = work.join("input.txt");
    std::fs::write(&input, "the film was great\n").unwrap();
    let settings = model.join("berth-inference.json");

    // A folder from before the version field loads with the defaults.
    std::fs::write(&settings, r#"{"task": "classification"}"#).unwrap();
    succeed(berth().args(["predict", "--model"]).arg(&model).arg("--input").arg(&input), "predict with a version-1 file");

    // A newer version is a clear error, even with fields this binary does not know.
    std::fs::write(&settings, r#"{"format_version": 99, "task": "classification", "a_future_field": 1}"#).unwrap();
    let err = fail(berth().args(["predict", "--model"]).arg(&model).arg("--input").arg(&input), "predict with version 99");
    assert!(err.contains("format_version 99 was written by a newer berth; this one reads versions 1 to 3"), "{err}");
}

// ---------------------------------------------------------------- saved thresholds change decisions

/// `berth predict` of `lines` on `model`: one JSON value per line.
fn predictions(model: &Path, lines: &[&str]) -> Vec<serde_json::Value> {
    let input = model.with_file_name("thresholds-input.txt");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let out = succeed(berth().args(["predict", "--device", "cpu", "--model"]).arg(model).arg("--input").arg(&input), "predict");
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// A threshold on the far side of `p` from 0.5, a third of the way: the
/// decision at it is the opposite of the decision at 0.5.
fn flipping_threshold(p: f64) -> f64 {
    if p >= 0.5 { p + (1.0 - p) / 3.0 } else { p - p / 3.0 }
}

#[test]
fn r15_predict_applies_thresholds_that_differ_from_one_half() {
    let Some(fixture) = fixture_dir("a-multilabel") else { return };
    let work = scratch_dir("r15-thresholds");
    let model = work.join("multi");
    copy_dir(&fixture, &model);
    let lines = ["the film was great", "the plot was dull and long", "an ordinary story"];
    let plain = predictions(&model, &lines);
    // Each label's threshold is placed so that the first input's probability
    // lies between it and 0.5: every one of its decisions must flip.
    let probs0: Vec<f64> = plain[0]["probabilities"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let thresholds: Vec<f64> = probs0.iter().map(|&p| flipping_threshold(p)).collect();
    let labels: Vec<String> = {
        let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(model.join("config.json")).unwrap()).unwrap();
        (0..probs0.len()).map(|i| config["id2label"][i.to_string()].as_str().unwrap().to_string()).collect()
    };
    let settings = serde_json::json!({"format_version": 2, "task": "multi-label", "thresholds": thresholds});
    std::fs::write(model.join("berth-inference.json"), settings.to_string()).unwrap();
    let tuned = predictions(&model, &lines);
    for (before, after) in plain.iter().zip(&tuned) {
        let probs: Vec<f64> = after["probabilities"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let want: Vec<&str> =
            labels.iter().zip(&probs).zip(&thresholds).filter(|((_, p), t)| *p >= *t).map(|((l, _), _)| l.as_str()).collect();
        let got: Vec<&str> = after["labels"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(got, want, "labels at or above the saved thresholds: {after}");
        assert_eq!(before["probabilities"], after["probabilities"], "thresholds must not change the probabilities");
    }
    let at_half: Vec<&str> = plain[0]["labels"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    let at_tuned: Vec<&str> = tuned[0]["labels"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    for label in &labels {
        assert_ne!(at_half.contains(&label.as_str()), at_tuned.contains(&label.as_str()), "`{label}`: the saved threshold did not flip it");
    }

    // Binary: P(positive) between the threshold and 0.5 takes the threshold's side.
    let Some(headed) = crate::serve::headed_minilm() else { return };
    let binary = work.join("binary");
    copy_dir(&headed, &binary);
    let plain = predictions(&binary, &lines[..1]);
    let p = plain[0]["probabilities"][1].as_f64().unwrap();
    let threshold = flipping_threshold(p);
    let settings = serde_json::json!({"format_version": 2, "task": "classification", "threshold": threshold});
    std::fs::write(binary.join("berth-inference.json"), settings.to_string()).unwrap();
    let tuned = predictions(&binary, &lines[..1]);
    let want = if p >= threshold { "positive" } else { "negative" };
    assert_eq!(tuned[0]["label"], want, "P(positive) {p}, threshold {threshold}: {}", tuned[0]);
    assert_ne!(tuned[0]["label"], plain[0]["label"], "the threshold should have flipped the argmax decision");
}

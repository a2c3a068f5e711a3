//! Issue 21: token attributions. Integrated gradients and gradient × input
//! equal captum's on the transformers model (tests/data/explain/captum.json,
//! from tools/ig-reference.py: float64, the same baseline, steps and rule),
//! completeness holds, and bad flags are errors.

use std::path::Path;

use berth::data::tokenize::BerthTokenizer;
use berth::infer::explain::explain_text;
use berth::model::explain::{Baseline, ExplainMethod, ExplainOptions, IntegrationRule};
use berth::model::{LoadOptions, load_model};
use berth::tensor::DType;
use serde_json::Value;

use crate::common::{fixture_dir, minilm_dir, rel_error, scratch_dir};
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
    let mut compared = 0;
    for case in reference["cases"].as_array().unwrap() {
        let Some(dir) = fixture_dir(case["model"].as_str().unwrap()) else { return };
        let (model, _) = load_model(&dir, &LoadOptions { dtype: DType::F64, ..LoadOptions::for_prediction() }).unwrap();
        let tokenizer = BerthTokenizer::from_dir(&dir, model.config.max_sequence_length()).unwrap();
        let (text, pair) = (case["text"].as_str().unwrap(), case["pair"].as_str());
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
            let ours = explain_text(&model, &tokenizer, text, pair, &options).unwrap();
            assert_eq!(ours.numbers.target as u64, case["target"].as_u64().unwrap(), "{key}: target");
            let want = floats(want);
            let got = &ours.numbers.attributions;
            let err = rel_error(got, &want);
            assert!(err < 1e-6, "{} {key}: relative error {err:e}\n ours {got:?}\n captum {want:?}", case["model"]);
            if key.starts_with("ig/") {
                // Captum's convergence delta is sum − Δ; ours must agree with it.
                let rule = key.trim_start_matches("ig/");
                let captum_delta = case[format!("delta/{rule}")].as_f64().unwrap();
                let ours_delta = ours.numbers.sum - ours.numbers.delta.unwrap();
                assert!((ours_delta - captum_delta).abs() < 1e-9, "{key}: sum − Δ {ours_delta:e} vs captum {captum_delta:e}");
                assert_eq!(ours.numbers.passes, options.steps.div_ceil(5), "{key}: one pass per step batch");
            }
            compared += 1;
        }
    }
    assert!(compared >= 30, "{compared} attributions compared");
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
    let err = fail(&mut predict(&["--explain", "ig", "--long-text", "chunk"]), "explain with chunks");
    assert!(err.contains("--explain") && err.contains("--long-text"), "{err}");
    // A bare encoder has no trained head to explain.
    if let Some(minilm) = minilm_dir() {
        let mut cmd = berth();
        cmd.arg("predict").arg("--model").arg(&minilm).arg("--input").arg(&input).args(["--explain", "ig", "--device", "cpu"]);
        let err = fail(&mut cmd, "explain a bare encoder");
        assert!(err.contains("no trained classification head"), "{err}");
    }
}

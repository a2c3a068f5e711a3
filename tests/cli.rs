//! The `berth` binary end to end: predict reproduces the fixtures' logits,
//! and bad input files get clear errors that name the file and line.

use std::path::Path;
use std::process::Command;

use berth::model::checkpoint::read_safetensors;
use berth::tensor::DType;

use crate::common::{fixture_dir, rel_error, scratch_dir};

fn berth() -> Command {
    Command::new(env!("CARGO_BIN_EXE_berth"))
}

/// Writes the fixture's inputs as predict's input lines (TAB before a pair).
fn fixture_lines(dir: &Path) -> String {
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap()).unwrap();
    let inputs = &json["inputs"];
    let lines: Vec<String> = if let Some(texts) = inputs.get("texts") {
        texts.as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_owned()).collect()
    } else if let Some(pairs) = inputs.get("pairs") {
        pairs.as_array().unwrap().iter().map(|p| format!("{}\t{}", p[0].as_str().unwrap(), p[1].as_str().unwrap())).collect()
    } else {
        // Token classification: words joined by spaces pre-tokenise to the same words.
        inputs["words"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_array().unwrap().iter().map(|x| x.as_str().unwrap()).collect::<Vec<_>>().join(" "))
            .collect()
    };
    lines.join("\n") + "\n"
}

#[test]
fn r2_predict_reproduces_every_fixture() {
    for name in ["a-seqcls", "a-pair", "a-multilabel", "a-regression", "a-tokcls"] {
        let Some(dir) = fixture_dir(name) else { return };
        let work = scratch_dir(&format!("predict-{name}"));
        let input = work.join("input.txt");
        std::fs::write(&input, fixture_lines(&dir)).unwrap();
        let output = work.join("out.jsonl");
        let status =
            berth().args(["predict", "--model"]).arg(&dir).arg("--input").arg(&input).arg("--output").arg(&output).status().unwrap();
        assert!(status.success(), "{name}: predict failed");

        let reference = read_safetensors(&dir.join("reference.safetensors"), DType::F64).unwrap();
        let (logits_shape, want) =
            reference.iter().find(|(n, _)| n == "logits").map(|(_, t)| (t.shape().to_vec(), t.to_f64_vec())).unwrap();
        let mask: Vec<i64> =
            berth::model::checkpoint::read_safetensors_i64(&dir.join("reference.safetensors")).unwrap()["attention_mask"].1.clone();
        let lines: Vec<serde_json::Value> =
            std::fs::read_to_string(&output).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), logits_shape[0], "{name}: one output line per input");
        let mut got = Vec::new();
        let mut expected = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            if logits_shape.len() == 3 {
                // Token logits: compare every real token's row.
                let (t, c) = (logits_shape[1], logits_shape[2]);
                let rows = line["logits"].as_array().unwrap();
                let real = mask[i * t..(i + 1) * t].iter().filter(|&&m| m != 0).count();
                assert_eq!(rows.len(), real, "{name}: row {i} token count");
                for (j, row) in rows.iter().enumerate() {
                    got.extend(row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()));
                    expected.extend_from_slice(&want[(i * t + j) * c..(i * t + j + 1) * c]);
                }
                assert_eq!(line["tags"].as_array().unwrap().len(), real);
            } else {
                let c = logits_shape[1];
                got.extend(line["logits"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()));
                expected.extend_from_slice(&want[i * c..(i + 1) * c]);
            }
        }
        let e = rel_error(&got, &expected);
        assert!(e <= 1e-5, "{name}: predict logits differ from HF by {e:e}");
        // The head-specific fields are present.
        let first = &lines[0];
        match name {
            "a-multilabel" => assert!(first["labels"].is_array() && first["probabilities"].as_array().unwrap().len() == 5),
            "a-regression" => assert!(first["score"].is_f64()),
            "a-tokcls" => assert!(first["tags"].is_array()),
            _ => {
                let probs: f64 = first["probabilities"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).sum();
                assert!((probs - 1.0).abs() < 1e-9 && first["label"].is_string());
            }
        }
    }
}

fn predict_error(model: &Path, input_bytes: &[u8], name: &str) -> String {
    let work = scratch_dir(name);
    let input = work.join("input.txt");
    std::fs::write(&input, input_bytes).unwrap();
    let out = berth().args(["predict", "--model"]).arg(model).arg("--input").arg(&input).output().unwrap();
    assert!(!out.status.success(), "{name}: predict should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn r2_predict_refuses_an_empty_input_file() {
    let Some(dir) = fixture_dir("a-seqcls") else { return };
    let err = predict_error(&dir, b"", "empty-input");
    assert!(err.contains("input.txt") && err.contains("no examples"), "{err}");
    let err = predict_error(&dir, b"\n  \n", "blank-input");
    assert!(err.contains("no examples"), "{err}");
}

#[test]
fn r2_predict_names_the_line_that_is_not_utf8() {
    let Some(dir) = fixture_dir("a-seqcls") else { return };
    let err = predict_error(&dir, b"fine line\nanother\nbad \xff byte\n", "bad-utf8");
    assert!(err.contains("input.txt:3") && err.contains("not valid UTF-8"), "{err}");
}

#[test]
fn r2_predict_with_a_missing_model_folder_names_config_json() {
    let work = scratch_dir("no-model");
    let err = predict_error(&work.join("nowhere"), b"hello\n", "missing-model");
    assert!(err.contains("config.json"), "{err}");
}

#[test]
fn r2_convert_to_bf16_halves_the_file_and_still_predicts() {
    let Some(dir) = fixture_dir("a-seqcls") else { return };
    let work = scratch_dir("convert-bf16");
    let out = work.join("bf16");
    let status = berth().args(["convert", "--dtype", "bf16", "--model"]).arg(&dir).arg("--output").arg(&out).status().unwrap();
    assert!(status.success());
    let before = std::fs::metadata(dir.join("model.safetensors")).unwrap().len();
    let after = std::fs::metadata(out.join("model.safetensors")).unwrap().len();
    assert!((after as f64) < 0.55 * before as f64, "bf16 file {after} bytes vs f32 {before}");
    assert!(out.join("tokenizer.json").is_file() && out.join("vocab.txt").is_file());
    let input = work.join("in.txt");
    std::fs::write(&input, "a short test sentence\n").unwrap();
    let o = berth().args(["predict", "--model"]).arg(&out).arg("--input").arg(&input).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let line: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(line["logits"].as_array().unwrap().len(), 3);
}

/// Python with torch and transformers, or None (skip): see `common::python_with`.
pub fn python_with_transformers() -> Option<String> {
    crate::common::python_with(&["torch", "transformers"])
}

/// tools/hf_roundtrip.py on an export, the lines berth predicted and its logits.
pub fn hf_roundtrip(python: &str, export: &Path, input: &Path, expected: &Path) -> Command {
    let mut cmd = Command::new(python);
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/hf_roundtrip.py"));
    cmd.arg("--model").arg(export).arg("--input").arg(input).arg("--expected").arg(expected);
    cmd
}

#[test]
fn r3_export_loads_in_transformers_with_matching_logits() {
    let Some(python) = python_with_transformers() else { return };
    for name in ["a-seqcls", "a-pair", "a-tokcls"] {
        let Some(dir) = fixture_dir(name) else { return };
        let work = scratch_dir(&format!("roundtrip-{name}"));
        // Re-save through berth's writer, predict with berth, then let transformers load the export.
        let export = work.join("export");
        assert!(berth().args(["convert", "--dtype", "f32", "--model"]).arg(&dir).arg("--output").arg(&export).status().unwrap().success());
        let input = work.join("input.txt");
        std::fs::write(&input, fixture_lines(&dir)).unwrap();
        let expected = work.join("berth.jsonl");
        assert!(
            berth()
                .args(["predict", "--model"])
                .arg(&export)
                .arg("--input")
                .arg(&input)
                .arg("--output")
                .arg(&expected)
                .status()
                .unwrap()
                .success()
        );
        let out = hf_roundtrip(&python, &export, &input, &expected).output().unwrap();
        assert!(out.status.success(), "{name}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
}

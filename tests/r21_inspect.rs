//! Issue 21: `berth inspect`. Its dump holds attention probabilities and
//! hidden states equal to transformers' `output_attentions=True,
//! output_hidden_states=True` (tests/data/inspect/, made by
//! tools/inspect-reference.py: float64 for the fixtures, the real
//! all-MiniLM-L6-v2 in float32), its pictures carry the dumped numbers, and
//! bad flags are errors that name the flag and the model's range.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::SafeTensors;
use serde_json::Value;

use crate::common::{fixture_dir, minilm_dir, scratch_dir};
use crate::train::{berth, fail, succeed};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/inspect")
}

/// Every float or integer tensor of a safetensors file, as f64, with its shape.
fn read_tensors(path: &Path) -> HashMap<String, (Vec<usize>, Vec<f64>)> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mut out = HashMap::new();
    for (name, view) in file.tensors() {
        let data = view.data();
        let values: Vec<f64> = match view.dtype() {
            safetensors::Dtype::F64 => data.chunks(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect(),
            safetensors::Dtype::F32 => data.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
            safetensors::Dtype::I64 => data.chunks(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
            other => panic!("{name}: unexpected dtype {other:?}"),
        };
        out.insert(name, (view.shape().to_vec(), values));
    }
    out
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// Writes the manifest's inputs for `file` as an input file (TAB before a pair).
fn write_inputs(dir: &Path, inputs: &[Value]) -> PathBuf {
    let lines: Vec<String> = inputs
        .iter()
        .map(|i| match i["pair"].as_str() {
            Some(p) => format!("{}\t{p}", i["text"].as_str().unwrap()),
            None => i["text"].as_str().unwrap().to_owned(),
        })
        .collect();
    let path = dir.join("inputs.txt");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// Runs inspect --dump on the manifest entry's inputs and compares every
/// reference tensor (ids exactly, floats within `tolerance`, absolute: they
/// are probabilities and unit-scale hidden states).
fn compare_with_reference(model: &Path, file: &str, entry: &Value, dtype: &str, tolerance: f64) {
    let dir = scratch_dir(&format!("r21-inspect-{file}"));
    let inputs = write_inputs(&dir, entry["inputs"].as_array().unwrap());
    let dump = dir.join("dump.safetensors");
    let mut cmd = berth();
    cmd.args(["inspect", "--dtype", dtype]).arg("--model").arg(model).arg("--input").arg(&inputs).arg("--dump").arg(&dump);
    succeed(&mut cmd, &format!("inspect {file}"));
    let ours = read_tensors(&dump);
    let reference = read_tensors(&data_dir().join(file));
    let mut compared = 0;
    for (name, (shape, values)) in &reference {
        let (our_shape, our_values) = ours.get(name).unwrap_or_else(|| panic!("{file}: the dump has no `{name}`"));
        assert_eq!(our_shape, shape, "{file} {name}: shape");
        let diff = max_abs_diff(our_values, values);
        let allowed = if name.ends_with("input_ids") { 0.0 } else { tolerance };
        assert!(diff <= allowed, "{file} {name}: largest difference {diff:e} > {allowed:e}");
        compared += 1;
    }
    assert!(compared >= 3 * 4, "{file}: only {compared} tensors compared");
    // Each probability row sums to one over the keys.
    let (shape, attn) = &ours["0.attn.0"];
    let t = shape[2];
    for row in attn.chunks(t) {
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-6, "{file}: a row of attn.0 sums to {}", row.iter().sum::<f64>());
    }
}

fn manifest() -> Value {
    serde_json::from_str(&std::fs::read_to_string(data_dir().join("manifest.json")).unwrap()).unwrap()
}

#[test]
fn r21_inspect_dump_equals_transformers_attention_and_hidden_states_in_f64() {
    let manifest = manifest();
    let mut fixtures = 0;
    for (file, entry) in manifest.as_object().unwrap() {
        let Some(name) = entry["fixture"].as_str() else { continue };
        if name == "minilm-l6" {
            continue;
        }
        let Some(dir) = fixture_dir(name) else { return };
        compare_with_reference(&dir, file, entry, "f64", 1e-9);
        fixtures += 1;
    }
    assert!(fixtures >= 16, "{fixtures} fixtures compared");
}

#[test]
fn r21_inspect_dump_of_minilm_in_f32_equals_transformers_within_1e_5() {
    let Some(dir) = minilm_dir() else { return };
    let manifest = manifest();
    compare_with_reference(&dir, "minilm-l6.safetensors", &manifest["minilm-l6.safetensors"], "f32", 1e-5);
}

/// The `data-*` attributes of every element of `svg` that has a `data-v`.
fn valued_elements(svg: &str) -> Vec<HashMap<String, String>> {
    let mut out = Vec::new();
    for element in svg.split('<').filter(|e| e.contains("data-v=")) {
        let mut attrs = HashMap::new();
        for part in element.split(" data-").skip(1) {
            let (key, rest) = part.split_once("=\"").unwrap();
            attrs.insert(key.to_string(), rest.split('"').next().unwrap().to_string());
        }
        out.push(attrs);
    }
    out
}

#[test]
fn r21_inspect_pictures_carry_the_dumped_values() {
    let Some(model) = fixture_dir("a-pair") else { return };
    let dir = scratch_dir("r21-inspect-pictures");
    let (out, dump) = (dir.join("pictures"), dir.join("dump.safetensors"));
    let mut cmd = berth();
    cmd.arg("inspect").arg("--model").arg(&model).args(["--text", "A man is playing guitar.", "--pair", "A musician plays."]);
    cmd.args(["--layers", "1", "--heads", "3,1"]).arg("--dump").arg(&dump).arg("--out").arg(&out);
    let stdout = String::from_utf8(succeed(&mut cmd, "inspect with pictures").stdout).unwrap();
    let summary: Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    let tokens: Vec<&str> = summary["tokens"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert_eq!(tokens.first(), Some(&"[CLS]"));
    assert_eq!(tokens.iter().filter(|t| **t == "[SEP]").count(), 2, "{tokens:?}");
    let tensors = read_tensors(&dump);
    assert!(!tensors.contains_key("attn.0"), "--layers 1 keeps layer 1 only");
    let (shape, attn) = &tensors["attn.1"];
    let t = tokens.len();
    assert_eq!(shape, &vec![2, t, t], "two heads chosen");
    assert!(!out.join("0/attention-layer-0.svg").exists());

    // Every heatmap cell carries its probability: head order is as given (3, then 1).
    let svg = std::fs::read_to_string(out.join("0/attention-layer-1.svg")).unwrap();
    assert!(svg.contains("head 3") && svg.contains("head 1"));
    let cells = valued_elements(&svg);
    assert_eq!(cells.len(), 2 * t * t);
    for (n, cell) in cells.iter().enumerate().step_by(7) {
        let slot = n / (t * t);
        let (q, k): (usize, usize) = (cell["q"].parse().unwrap(), cell["k"].parse().unwrap());
        let v: f64 = cell["v"].parse().unwrap();
        let dumped = attn[slot * t * t + q * t + k];
        assert!((v - dumped).abs() <= 1e-7 * dumped.abs().max(1.0), "cell {n} (q {q}, k {k}): {v} vs {dumped}");
    }
    // Every dot of the norm chart is a dumped hidden state's norm.
    let chart = std::fs::read_to_string(out.join("0/hidden-norms.svg")).unwrap();
    let dots = valued_elements(&chart);
    let layers = tensors.keys().filter(|k| k.starts_with("hidden.")).count();
    assert_eq!(dots.len(), layers * t);
    for dot in dots.iter().step_by(3) {
        let (i, l): (usize, usize) = (dot["token"].parse().unwrap(), dot["layer"].parse().unwrap());
        let (shape, hidden) = &tensors[&format!("hidden.{l}")];
        let width = shape[1];
        let norm = hidden[i * width..(i + 1) * width].iter().map(|v| v * v).sum::<f64>().sqrt();
        let v: f64 = dot["v"].parse().unwrap();
        assert!((v - norm).abs() <= 1e-5 * norm, "token {i}, layer {l}: {v} vs {norm}");
    }
    // The page shows the tokens and embeds the pictures.
    let page = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(page.contains("0/attention-layer-1.svg") && page.contains("0/hidden-norms.svg") && page.contains("musician"));
    // The logits in the summary are the dumped ones.
    let logits = &tensors["logits"].1;
    let shown: Vec<f64> = summary["outputs"]["logits"].as_object().unwrap().values().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(shown.len(), logits.len());
}

#[test]
fn r21_inspect_of_a_bare_encoder_has_hidden_states_and_no_logits() {
    let Some(model) = minilm_dir() else { return };
    let dir = scratch_dir("r21-inspect-bare");
    let dump = dir.join("dump.safetensors");
    let mut cmd = berth();
    cmd.arg("inspect").arg("--model").arg(&model).args(["--text", "berth looks inside."]).arg("--dump").arg(&dump);
    let out = succeed(&mut cmd, "inspect a bare encoder");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no trained classification head"), "{stderr}");
    let tensors = read_tensors(&dump);
    assert!(!tensors.contains_key("logits"));
    assert!(tensors.contains_key("pooled") && tensors.contains_key("hidden.6") && tensors.contains_key("attn.5"));
    assert_eq!(tensors["attn.5"].0[0], 12);
}

#[test]
fn r21_inspect_refuses_layers_and_heads_beyond_the_model() {
    let Some(model) = fixture_dir("a-seqcls") else { return };
    let run = |extra: &[&str]| {
        let mut cmd = berth();
        cmd.arg("inspect").arg("--model").arg(&model).args(["--text", "fine"]).args(extra);
        fail(&mut cmd, &format!("inspect {extra:?}"))
    };
    let err = run(&["--layers", "2"]);
    assert!(err.contains("--layers 2") && err.contains("2 layers, 0 to 1"), "{err}");
    let err = run(&["--layers", "1-0"]);
    assert!(err.contains("--layers 1-0") && err.contains("backwards"), "{err}");
    let err = run(&["--heads", "0,4"]);
    assert!(err.contains("--heads 0,4") && err.contains("4 heads per layer, 0 to 3"), "{err}");
    let err = run(&["--heads", "first"]);
    assert!(err.contains("`first` is not a head index"), "{err}");
    let err = run(&["--heads", "1,1"]);
    assert!(err.contains("named twice"), "{err}");
    let mut cmd = berth();
    cmd.arg("inspect").arg("--model").arg(&model);
    let err = fail(&mut cmd, "inspect without input");
    assert!(err.contains("--text") && err.contains("--input"), "{err}");
}

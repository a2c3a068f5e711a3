//! Checkpoint loading errors and round trips (DESIGN.md §6).
//!
//! Each test copies the `a-seqcls` fixture (an HF `save_pretrained` folder)
//! into a scratch folder, damages or rewrites it, and checks what
//! `load_model` says. Without ../shared the tests skip with a message.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use berth::Error;
use berth::autograd::Tape;
use berth::data::Batch;
use berth::model::{BertClassifier, ForwardMode, HeadKind, LoadOptions, ProblemType, load_model, save_model};
use berth::tensor::DType;
use half::{bf16, f16};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde_json::{Value, json};

use crate::common::{fixture_dir, rel_error, scratch_dir};

// ---------- helpers ----------

/// A tensor as stored: name, dtype, shape, little-endian bytes.
struct Stored {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

/// Copies config.json and model.safetensors of a fixture into a fresh scratch folder.
fn copy_fixture(fixture: &str, name: &str) -> Option<(PathBuf, PathBuf)> {
    let src = fixture_dir(fixture)?;
    let dir = scratch_dir(name);
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(src.join(file), dir.join(file)).unwrap();
    }
    Some((src, dir))
}

fn read_stored(path: &Path) -> Vec<Stored> {
    let bytes = std::fs::read(path).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<Stored> = file
        .tensors()
        .into_iter()
        .map(|(name, v)| Stored { name, dtype: v.dtype(), shape: v.shape().to_vec(), bytes: v.data().to_vec() })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn write_stored(path: &Path, tensors: &[Stored]) {
    let views: Vec<(String, TensorView)> =
        tensors.iter().map(|t| (t.name.clone(), TensorView::new(t.dtype, t.shape.clone(), &t.bytes).unwrap())).collect();
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    std::fs::write(path, safetensors::tensor::serialize(views, Some(metadata)).unwrap()).unwrap();
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) {
    let path = dir.join("config.json");
    let mut config = read_json(&path);
    edit(config.as_object_mut().unwrap());
    std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
}

fn load(dir: &Path) -> (BertClassifier, berth::model::LoadReport) {
    load_model(dir, &LoadOptions::default()).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

fn load_err(dir: &Path) -> Error {
    match load_model(dir, &LoadOptions::default()) {
        Ok(_) => panic!("{}: loading must fail", dir.display()),
        Err(e) => e,
    }
}

/// A right-padded batch with ragged lengths (6, 3, 1) of ids from the
/// bert-base-uncased vocabulary the fixtures use.
fn sample_batch() -> Batch {
    let rows: [&[u32]; 3] = [&[101, 7592, 2088, 2003, 2307, 102], &[101, 2204, 102], &[101]];
    let t = 6;
    let mut batch = Batch { batch_size: rows.len(), seq_len: t, ..Batch::default() };
    for row in rows {
        for i in 0..t {
            batch.input_ids.push(row.get(i).copied().unwrap_or(0));
            batch.token_type_ids.push(0);
            batch.attention_mask.push(u8::from(i < row.len()));
        }
    }
    batch
}

fn logits(model: &BertClassifier) -> Vec<f64> {
    let mut tape = Tape::no_grad();
    let out = model.forward(&mut tape, &sample_batch(), ForwardMode::eval()).unwrap();
    tape.value(out.logits).to_f64_vec()
}

/// Asserts two models hold the same parameter names with bit-identical values.
fn assert_same_params(a: &BertClassifier, b: &BertClassifier, what: &str) {
    assert_eq!(a.params.names(), b.params.names(), "{what}: parameter names");
    for ((name, x), (_, y)) in a.params.iter().zip(b.params.iter()) {
        assert_eq!(x.dtype(), y.dtype(), "{what}: {name} dtype");
        assert_eq!(x.shape(), y.shape(), "{what}: {name} shape");
        assert!(x.to_le_bytes() == y.to_le_bytes(), "{what}: {name} differs");
    }
}

// ---------- bad input ----------

#[test]
fn missing_config_json_names_the_path() {
    let dir = scratch_dir("ckpt-missing-config");
    if let Some(src) = fixture_dir("a-seqcls") {
        std::fs::copy(src.join("model.safetensors"), dir.join("model.safetensors")).unwrap();
    }
    let err = load_err(&dir);
    let message = err.to_string();
    assert!(matches!(err, Error::Io { .. }), "expected an I/O error, got {err:?}");
    assert!(message.contains(&dir.join("config.json").display().to_string()), "the error must name the file: {message}");
}

#[test]
fn hidden_act_relu_is_refused_clearly() {
    let Some((_, dir)) = copy_fixture("a-seqcls", "ckpt-relu") else { return };
    edit_config(&dir, |c| {
        c.insert("hidden_act".into(), json!("relu"));
    });
    let err = load_err(&dir);
    let message = err.to_string();
    assert!(matches!(err, Error::Config { .. }), "expected a config error, got {err:?}");
    for part in ["config.json", "hidden_act", "`relu`", "not supported", "gelu"] {
        assert!(message.contains(part), "missing `{part}` in: {message}");
    }
}

#[test]
fn relative_key_position_embeddings_are_refused_clearly() {
    let Some((_, dir)) = copy_fixture("a-seqcls", "ckpt-relative-key") else { return };
    edit_config(&dir, |c| {
        c.insert("position_embedding_type".into(), json!("relative_key"));
    });
    let err = load_err(&dir);
    let message = err.to_string();
    assert!(matches!(err, Error::Config { .. }), "expected a config error, got {err:?}");
    for part in ["config.json", "position_embedding_type", "`relative_key`", "not supported", "absolute"] {
        assert!(message.contains(part), "missing `{part}` in: {message}");
    }
}

#[test]
fn truncated_safetensors_is_a_checkpoint_error() {
    let Some((_, dir)) = copy_fixture("a-seqcls", "ckpt-truncated") else { return };
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_err(&dir);
    let message = err.to_string();
    assert!(matches!(err, Error::Checkpoint { .. }), "expected a checkpoint error, got {err:?}");
    assert!(message.contains("model.safetensors"), "the error must name the file: {message}");
    assert!(message.contains("truncated") && message.contains("corrupt"), "the error must say truncated or corrupt: {message}");
}

#[test]
fn wrong_shape_and_unknown_tensor_are_reported_together() {
    let Some((_, dir)) = copy_fixture("a-seqcls", "ckpt-wrong-shape") else { return };
    let path = dir.join("model.safetensors");
    let mut tensors = read_stored(&path);
    let bad = "bert.encoder.layer.1.intermediate.dense.weight";
    let t = tensors.iter_mut().find(|t| t.name == bad).unwrap();
    assert_eq!(t.shape, [64, 32]);
    t.shape = vec![32, 64]; // same bytes, transposed shape
    let unknown = "bert.encoder.layer.0.attention.self.rotary.weight";
    tensors.push(Stored { name: unknown.into(), dtype: Dtype::F32, shape: vec![4], bytes: vec![0; 16] });
    write_stored(&path, &tensors);

    let err = load_err(&dir);
    let message = err.to_string();
    assert!(matches!(err, Error::Checkpoint { .. }), "expected a checkpoint error, got {err:?}");
    for part in ["model.safetensors", "wrong shape (1)", bad, "[32, 64]", "[64, 32]", "unexpected (1)", unknown] {
        assert!(message.contains(part), "missing `{part}` in: {message}");
    }
    assert!(!message.contains("missing"), "a mis-shaped tensor is not also missing: {message}");
}

// ---------- accepted variants ----------

#[test]
fn unprefixed_and_legacy_layer_norm_names_give_identical_logits() {
    let Some((src, dir)) = copy_fixture("a-seqcls", "ckpt-legacy-names") else { return };
    let path = dir.join("model.safetensors");
    let mut tensors = read_stored(&path);
    let mut renamed = 0;
    for t in &mut tensors {
        let mut name = t.name.strip_prefix("bert.").unwrap_or(&t.name).to_owned();
        if let Some(stem) = name.strip_suffix("LayerNorm.weight") {
            name = format!("{stem}LayerNorm.gamma");
            renamed += 1;
        } else if let Some(stem) = name.strip_suffix("LayerNorm.bias") {
            name = format!("{stem}LayerNorm.beta");
            renamed += 1;
        }
        t.name = name;
    }
    assert_eq!(renamed, 10, "5 LayerNorms with weight and bias");
    assert!(tensors.iter().any(|t| t.name == "embeddings.word_embeddings.weight"));
    // The position_ids buffer old checkpoints carry (I64) is ignored.
    let ids: Vec<u8> = (0..64i64).flat_map(|i| i.to_le_bytes()).collect();
    tensors.push(Stored { name: "embeddings.position_ids".into(), dtype: Dtype::I64, shape: vec![1, 64], bytes: ids });
    write_stored(&path, &tensors);

    let (original, _) = load(&src);
    let (legacy, report) = load(&dir);
    assert!(report.initialized.is_empty(), "nothing to initialise: {:?}", report.initialized);
    assert_same_params(&original, &legacy, "legacy names");
    let (a, b) = (logits(&original), logits(&legacy));
    assert!(a == b, "logits differ:\n{a:?}\n{b:?}");
}

/// Stores the fixture's F32 weights as F16 or BF16, loads them, and checks
/// that every value is exactly the rounded original and that the logits stay
/// within the dtype's tolerance.
fn check_half_precision(dtype: Dtype, scratch: &str) {
    let Some((src, dir)) = copy_fixture("a-seqcls", scratch) else { return };
    let path = dir.join("model.safetensors");
    let mut tensors = read_stored(&path);
    let round = |v: f32| -> f32 {
        match dtype {
            Dtype::F16 => f16::from_f32(v).to_f32(),
            Dtype::BF16 => bf16::from_f32(v).to_f32(),
            _ => unreachable!(),
        }
    };
    for t in &mut tensors {
        assert_eq!(t.dtype, Dtype::F32);
        let values: Vec<f32> = t.bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        t.bytes = match dtype {
            Dtype::F16 => values.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()).collect(),
            _ => values.iter().flat_map(|&v| bf16::from_f32(v).to_le_bytes()).collect(),
        };
        t.dtype = dtype;
    }
    write_stored(&path, &tensors);

    let (original, _) = load(&src);
    let (half, report) = load(&dir);
    assert!(report.initialized.is_empty());
    assert_eq!(half.dtype(), DType::F32, "loaded into the requested dtype");
    for ((name, a), (_, b)) in original.params.iter().zip(half.params.iter()) {
        let want: Vec<f32> = a.to_f32_vec().into_iter().map(round).collect();
        assert!(b.to_f32_vec() == want, "{dtype:?}: {name} is not the rounded original");
    }
    // One tolerance rule per dtype: a few units of its rounding error
    // (2⁻¹¹ for f16, 2⁻⁸ for bf16) through a 2-layer model.
    let unit = if dtype == Dtype::F16 { 2f64.powi(-11) } else { 2f64.powi(-8) };
    let e = rel_error(&logits(&half), &logits(&original));
    eprintln!("{dtype:?} checkpoint: logits relative error {e:.3e} (tolerance {:.3e})", 4.0 * unit);
    assert!(e > 0.0, "{dtype:?}: rounding must change the logits, or the stored dtype was not used");
    assert!(e <= 4.0 * unit, "{dtype:?}: logits relative error {e:.3e} > {:.3e}", 4.0 * unit);
}

#[test]
fn f16_checkpoint_loads() {
    check_half_precision(Dtype::F16, "ckpt-f16");
}

#[test]
fn bf16_checkpoint_loads() {
    check_half_precision(Dtype::BF16, "ckpt-bf16");
}

#[test]
fn bare_encoder_gets_a_seeded_head() {
    let Some((src, dir)) = copy_fixture("a-seqcls", "ckpt-bare-encoder") else { return };
    // What BertModel.save_pretrained writes: no `bert.` prefix, no pooler
    // here, no classifier, and no labels in config.json.
    let path = dir.join("model.safetensors");
    let tensors: Vec<Stored> = read_stored(&path)
        .into_iter()
        .filter(|t| !t.name.starts_with("classifier.") && !t.name.starts_with("bert.pooler."))
        .map(|t| Stored { name: t.name.strip_prefix("bert.").unwrap().to_owned(), ..t })
        .collect();
    write_stored(&path, &tensors);
    edit_config(&dir, |c| {
        c.insert("architectures".into(), json!(["BertModel"]));
        for key in ["id2label", "label2id", "problem_type"] {
            c.remove(key);
        }
    });

    let options = |seed| LoadOptions { seed, ..LoadOptions::default() };
    let (model, report) = load_model(&dir, &options(7)).unwrap();
    assert_eq!(model.head, HeadKind::SequenceClassification);
    assert_eq!(model.labels, ["LABEL_0", "LABEL_1"], "HF's default of two labels");
    for name in ["classifier.weight", "classifier.bias", "bert.pooler.dense.weight", "bert.pooler.dense.bias"] {
        assert!(report.initialized.iter().any(|n| n == name), "{name} must be listed as initialised: {:?}", report.initialized);
    }
    assert_eq!(report.initialized.len(), 4, "{:?}", report.initialized);
    let notes = report.notes.join("\n");
    assert!(notes.contains("initialised") && notes.contains("classifier.weight") && notes.contains("seed 7"), "notes: {notes}");
    assert!(model.params.get("classifier.weight").unwrap().to_f64_vec().iter().any(|v| *v != 0.0), "a random head, not zeros");

    // The encoder is the stored one.
    let (original, _) = load(&src);
    for (name, t) in model.params.iter().filter(|(n, _)| !n.starts_with("classifier.") && !n.starts_with("bert.pooler.")) {
        assert!(t.to_le_bytes() == original.params.get(name).unwrap().to_le_bytes(), "{name} differs from the checkpoint");
    }

    // The same seed gives the same head; another seed another one.
    let (again, _) = load_model(&dir, &options(7)).unwrap();
    assert_same_params(&model, &again, "same seed");
    let (other, _) = load_model(&dir, &options(8)).unwrap();
    let head = |m: &BertClassifier| m.params.get("classifier.weight").unwrap().to_le_bytes();
    assert!(head(&model) != head(&other), "another seed must give another head");
}

// ---------- save and load ----------

#[test]
fn save_then_load_round_trips_exactly() {
    for (fixture, architecture, problem_type) in [
        ("a-seqcls", "BertForSequenceClassification", Some("single_label_classification")),
        ("a-tokcls", "BertForTokenClassification", None),
    ] {
        let Some(src) = fixture_dir(fixture) else { return };
        let (model, _) = load(&src);
        let dir = scratch_dir(&format!("ckpt-round-trip-{fixture}"));
        save_model(&model, &dir, DType::F32).unwrap();
        let (back, report) = load(&dir);
        assert!(report.initialized.is_empty(), "{fixture}: {:?}", report.initialized);
        assert_same_params(&model, &back, fixture);
        assert_eq!(back.labels, model.labels, "{fixture}: labels");
        assert_eq!(back.problem_type, model.problem_type, "{fixture}: problem_type");
        assert_eq!(back.head, model.head, "{fixture}: head");
        assert!(logits(&model) == logits(&back), "{fixture}: logits");

        // config.json carries what transformers needs to rebuild the head.
        let config = read_json(&dir.join("config.json"));
        assert_eq!(config["architectures"], json!([architecture]), "{fixture}");
        let id2label: Vec<String> =
            (0..model.labels.len()).map(|i| config["id2label"][i.to_string()].as_str().unwrap().to_owned()).collect();
        assert_eq!(id2label, model.labels, "{fixture}: id2label");
        for (i, label) in model.labels.iter().enumerate() {
            assert_eq!(config["label2id"][label], json!(i), "{fixture}: label2id[{label}]");
        }
        assert_eq!(config["problem_type"], problem_type.map_or(Value::Null, |p| json!(p)), "{fixture}: problem_type");
        assert_eq!(config["hidden_act"], json!("gelu"));
        assert_eq!(config["num_attention_heads"], json!(4));

        // model.safetensors: HF names, F32, and the `format: pt` metadata transformers checks.
        let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
        let (_, metadata) = SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(metadata.metadata().as_ref().and_then(|m| m.get("format")).map(String::as_str), Some("pt"), "{fixture}");
        let stored = read_stored(&dir.join("model.safetensors"));
        assert!(stored.iter().all(|t| t.dtype == Dtype::F32));
        let mut names: Vec<&str> = stored.iter().map(|t| t.name.as_str()).collect();
        let mut want: Vec<&str> = model.params.names().iter().map(String::as_str).collect();
        names.sort();
        want.sort();
        assert_eq!(names, want, "{fixture}: stored names");
    }
}

#[test]
fn new_labels_reinitialise_a_mismatched_classifier() {
    let Some(src) = fixture_dir("a-seqcls") else { return };
    let (original, _) = load(&src);
    let labels: Vec<String> = ["B-PER", "I-PER", "B-ORG", "I-ORG", "O"].map(String::from).to_vec();
    let options = LoadOptions { labels: Some(labels.clone()), problem_type: Some(ProblemType::SingleLabel), ..LoadOptions::default() };
    let (model, report) = load_model(&src, &options).unwrap();
    assert_eq!(model.labels, labels);
    assert_eq!(model.params.get("classifier.weight").unwrap().shape(), [5, 32]);
    assert_eq!(model.params.get("classifier.bias").unwrap().shape(), [5]);
    assert_eq!(report.initialized, ["classifier.weight", "classifier.bias"]);
    let notes = report.notes.join("\n");
    for part in ["classifier.weight", "[3, 32]", "[5, 32]", "re-initialised"] {
        assert!(notes.contains(part), "missing `{part}` in the notes: {notes}");
    }
    // The encoder and pooler are kept; the logits have the new width.
    for (name, t) in original.params.iter().filter(|(n, _)| !n.starts_with("classifier.")) {
        assert!(t.to_le_bytes() == model.params.get(name).unwrap().to_le_bytes(), "{name} must be kept");
    }
    assert_eq!(logits(&model).len(), 3 * 5);

    // Renaming labels without changing their number keeps the trained head.
    let renamed: Vec<String> = ["neg", "mid", "pos"].map(String::from).to_vec();
    let (same, report) = load_model(&src, &LoadOptions { labels: Some(renamed.clone()), ..LoadOptions::default() }).unwrap();
    assert!(report.initialized.is_empty(), "{:?}", report.initialized);
    assert_eq!(same.labels, renamed);
    assert_same_params(&original, &same, "renamed labels");
}

//! Issue 19, DeBERTa-v3: configs of other DeBERTa shapes are refused by
//! name, it trains on the simulated device, `inspect` and unnormed relative
//! embeddings on the device are refused, a bare
//! pretrained encoder (no pooler, no classifier, an unused absolute position
//! table) loads with a fresh ContextPooler head, and token types are
//! ignored as transformers ignores them. Parity, gradients, export and
//! training are in r18_families.rs, gradcheck.rs and r16_multitask.rs.

use berth::autograd::Tape;
use berth::data::Batch;
use berth::model::checkpoint::{read_safetensors, write_safetensors};
use berth::model::{ForwardMode, LoadOptions, load_model};
use berth::tensor::{DType, Tensor};
use serde_json::Value;

use crate::common::{fixture_dir, scratch_dir};
use crate::r19_modernbert::{fixture_config, parse};

#[test]
fn r19_deberta_configs_berth_cannot_run_are_refused_by_name() {
    let Some(dir) = fixture_dir("families/deberta-v3-seqcls") else { return };
    let base = fixture_config(&dir);
    let settings = parse(&base).unwrap().deberta.expect("the fixture is a DeBERTa config");
    assert_eq!((settings.position_buckets, settings.max_relative_positions, settings.span), (16, 128, 16));
    assert!(settings.normed_relative_embeddings);
    type Edit = fn(&mut Value);
    let refused: [(&str, Edit, &str); 7] = [
        ("relative_attention", |c| c["relative_attention"] = false.into(), "relative_attention must be true"),
        ("pos_att_type", |c| c["pos_att_type"] = serde_json::json!(["c2p"]), "pos_att_type [\"c2p\"] is not supported"),
        ("share_att_key", |c| c["share_att_key"] = false.into(), "share_att_key must be true"),
        ("position_biased_input", |c| c["position_biased_input"] = true.into(), "position_biased_input true"),
        ("type_vocab_size", |c| c["type_vocab_size"] = 2.into(), "type_vocab_size 2 is not supported"),
        ("conv_kernel_size", |c| c["conv_kernel_size"] = 3.into(), "conv_kernel_size"),
        ("pooler_hidden_act", |c| c["pooler_hidden_act"] = "tanh".into(), "pooler_hidden_act `tanh` is not supported"),
    ];
    for (what, edit, want) in refused {
        let mut config = base.clone();
        edit(&mut config);
        let err = parse(&config).unwrap_err().to_string();
        assert!(err.contains("model/config.json") && err.contains(want), "{what}: {err}");
    }
}

#[test]
fn r19_deberta_trains_on_the_simulated_device() {
    let Some(dir) = fixture_dir("families/deberta-v3-seqcls") else { return };
    let work = scratch_dir("r19-deberta-device");
    let train = work.join("train.tsv");
    std::fs::write(&train, "text\tlabel\na fine film\tentailment\na dull film\tneutral\nit was a film\tcontradiction\n").unwrap();
    let output = work.join("out");
    let mut cmd = crate::train::berth();
    cmd.args(["train", "--device", "sim", "--max-steps", "2", "--batch-size", "2"]);
    cmd.arg("--model").arg(&dir).arg("--train").arg(&train).arg("--output").arg(&output);
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let (model, _) = load_model(&output, &LoadOptions::default()).unwrap();
    assert_eq!(model.config.family, berth::model::Family::Deberta);
}

#[test]
fn r19_unnormed_relative_embeddings_are_refused_on_the_device_by_name() {
    let mut config = berth::model::BertConfig::synthetic_deberta(50, 8, 1, 2, 16, 4, 0.0);
    config.deberta.as_mut().unwrap().normed_relative_embeddings = false;
    let params = berth::model::params::random_parameters(&config, berth::model::HeadKind::SequenceClassification, 2, 1, DType::F32);
    assert!(!params.names().iter().any(|n| n == "bert.encoder.LayerNorm.weight"), "no relative LayerNorm");
    let labels = vec!["a".to_string(), "b".to_string()];
    let model = berth::model::BertClassifier::new(config, berth::model::HeadKind::SequenceClassification, None, labels, params).unwrap();
    let batch = Batch { batch_size: 1, seq_len: 3, input_ids: vec![1, 5, 2], token_type_ids: vec![0; 3], attention_mask: vec![1; 3] };
    // The CPU runs it.
    let mut tape = Tape::no_grad();
    assert!(model.forward(&mut tape, &batch, ForwardMode::eval()).is_ok());
    let device = berth::device::open(berth::device::DeviceChoice::Sim).unwrap().expect("the simulated device");
    let tensors: Vec<Tensor> = model.params.tensors().iter().map(|t| t.to_device(&device, berth::device::Elem::F32).unwrap()).collect();
    let mut tape = Tape::no_grad();
    let err = model.forward_on(&mut tape, &tensors, &batch, ForwardMode::eval()).err().expect("refused on the device").to_string();
    assert!(err.contains("norm_rel_ebd `none` runs on the CPU only"), "{err}");
}

#[test]
fn r19_a_bare_deberta_encoder_loads_with_a_fresh_context_pooler() {
    let Some(dir) = fixture_dir("families/deberta-v3-seqcls") else { return };
    let work = scratch_dir("r19-deberta-bare");
    // What a pretrained v3 folder holds: the encoder, a masked-LM head and
    // (in some uploads) an absolute position table the model does not use.
    let mut tensors: Vec<(String, Tensor)> = read_safetensors(&dir.join("model.safetensors"), DType::F32)
        .unwrap()
        .into_iter()
        .filter(|(n, _)| n.starts_with("deberta."))
        .collect();
    tensors.push(("deberta.embeddings.position_embeddings.weight".into(), Tensor::zeros(&[128, 32], DType::F32)));
    tensors.push(("lm_predictions.lm_head.bias".into(), Tensor::zeros(&[1200], DType::F32)));
    write_safetensors(&work.join("model.safetensors"), tensors.iter().map(|(n, t)| (n.as_str(), t)), DType::F32).unwrap();
    let mut config = fixture_config(&dir);
    config["architectures"] = serde_json::json!(["DebertaV2ForMaskedLM"]);
    std::fs::write(work.join("config.json"), config.to_string()).unwrap();
    let (model, report) = load_model(&work, &LoadOptions::default()).unwrap();
    let mut initialized = report.initialized.clone();
    initialized.sort();
    assert_eq!(initialized, ["bert.pooler.dense.bias", "bert.pooler.dense.weight", "classifier.bias", "classifier.weight"]);
    assert!(report.notes.iter().any(|n| n.contains("ignored 2 pre-training head tensors")), "{:?}", report.notes);
    // The encoder is the fixture's: the hidden states equal the full model's.
    let (full, _) = load_model(&dir, &LoadOptions::default()).unwrap();
    let batch = Batch { batch_size: 1, seq_len: 4, input_ids: vec![1, 40, 41, 2], token_type_ids: vec![0; 4], attention_mask: vec![1; 4] };
    let hidden = |m: &berth::model::BertClassifier| {
        let mut tape = Tape::no_grad();
        let out = m.forward(&mut tape, &batch, ForwardMode::eval()).unwrap();
        tape.value(*out.hidden_states.last().unwrap()).to_f64_vec()
    };
    assert_eq!(hidden(&model), hidden(&full));
}

#[test]
fn r19_deberta_ignores_token_types_as_transformers_does() {
    let Some(dir) = fixture_dir("families/deberta-v3-pair") else { return };
    let (model, _) = load_model(&dir, &LoadOptions { dtype: DType::F64, ..LoadOptions::default() }).unwrap();
    let mut batch =
        Batch { batch_size: 1, seq_len: 6, input_ids: vec![1, 40, 41, 2, 42, 2], token_type_ids: vec![0; 6], attention_mask: vec![1; 6] };
    let logits = |b: &Batch| {
        let mut tape = Tape::no_grad();
        let out = model.forward(&mut tape, b, ForwardMode::eval()).unwrap();
        tape.value(out.logits).to_f64_vec()
    };
    let zeros = logits(&batch);
    batch.token_type_ids = vec![0, 0, 0, 0, 1, 1];
    assert_eq!(logits(&batch), zeros, "type_vocab_size 0: the pair's types change nothing");
}

//! Issue 19, ModernBERT: the configs berth cannot run are refused by name,
//! both config spellings read the same, the device is refused before any
//! work, an overlong `--max-length` is clamped, and a pretrained head.dense
//! starts every head of a multi-task model. Parity, gradients, export and
//! training are in r18_families.rs, gradcheck.rs and r16_multitask.rs.

use std::path::Path;

use berth::model::BertConfig;
use berth::model::config::Pooling;
use serde_json::Value;

use crate::common::{fixture_dir, scratch_dir};
use crate::train::berth;

pub(crate) fn fixture_config(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
}

pub(crate) fn parse(config: &Value) -> berth::Result<BertConfig> {
    BertConfig::from_json_str(&config.to_string(), Path::new("model/config.json"))
}

#[test]
fn r19_modernbert_configs_berth_cannot_run_are_refused_by_name() {
    let Some(dir) = fixture_dir("families/modernbert-seqcls") else { return };
    let base = fixture_config(&dir);
    type Edit = fn(&mut Value);
    let refused: [(&str, Edit, &str); 8] = [
        ("attention_bias", |c| c["attention_bias"] = true.into(), "attention_bias true is not supported"),
        ("mlp_bias", |c| c["mlp_bias"] = true.into(), "mlp_bias true is not supported"),
        ("norm_bias", |c| c["norm_bias"] = true.into(), "norm_bias true is not supported"),
        ("classifier_activation", |c| c["classifier_activation"] = "silu".into(), "classifier_activation `silu` is not supported"),
        (
            "rope_type",
            |c| c["rope_parameters"]["sliding_attention"]["rope_type"] = "yarn".into(),
            "rope_parameters.sliding_attention.rope_type `yarn` is not supported",
        ),
        (
            "layer_types",
            |c| c["layer_types"] = serde_json::json!(["full_attention", "sliding_attention", "full_attention"]),
            "layer_types has 3 entries for 2 layers",
        ),
        ("classifier_pooling", |c| c["classifier_pooling"] = "max".into(), "classifier_pooling `max` is not supported"),
        (
            "odd head size",
            |c| {
                c["hidden_size"] = 36.into();
                c["num_attention_heads"] = 4.into();
            },
            "head size 9 is odd",
        ),
    ];
    for (what, edit, want) in refused {
        let mut config = base.clone();
        edit(&mut config);
        let err = parse(&config).unwrap_err().to_string();
        assert!(err.contains("model/config.json") && err.contains(want), "{what}: {err}");
    }
    // The fixture itself parses: layer 0 global, layer 1 local with half-width 4.
    let config = parse(&base).unwrap();
    let modern = config.modern.clone().unwrap();
    assert_eq!((modern.global_layers.as_slice(), modern.window, modern.pooling), ([true, false].as_slice(), 4, Pooling::Mean));
    assert_eq!((modern.window_of(0), modern.window_of(1)), (None, Some(4)));
}

#[test]
fn r19_both_modernbert_config_spellings_read_the_same() {
    let Some(dir) = fixture_dir("families/modernbert-seqcls") else { return };
    let new_style = fixture_config(&dir);
    // The published checkpoints' keys instead of layer_types and rope_parameters.
    let mut old_style = new_style.clone();
    let map = old_style.as_object_mut().unwrap();
    map.remove("layer_types");
    map.remove("rope_parameters");
    map.insert("global_rope_theta".into(), 160000.0.into());
    map.insert("local_rope_theta".into(), 10000.0.into());
    let (a, b) = (parse(&new_style).unwrap(), parse(&old_style).unwrap());
    assert_eq!(a.modern, b.modern);
    let modern = a.modern.unwrap();
    assert_eq!((modern.global_rope_theta, modern.local_rope_theta), (160000.0, 10000.0));
    // Local layers turn by theta 10000: inv_freq[1] = 10000^(-2/8) = 0.1.
    assert!((modern.inv_freq(1, 8)[1] - 0.1).abs() < 1e-15 && (modern.inv_freq(0, 8)[1] - 160000f64.powf(-0.25)).abs() < 1e-15);
    // A global layer every third (the published default) gives 0 and 3 global of 4.
    let mut every_third = old_style.clone();
    every_third["num_hidden_layers"] = 4.into();
    every_third["global_attn_every_n_layers"] = 3.into();
    assert_eq!(parse(&every_third).unwrap().modern.unwrap().global_layers, [true, false, false, true]);
}

/// ModernBERT on the (simulated) device: training runs and saves a model,
/// and prediction on a text longer than the local window (half-width 4)
/// gives the CPU's probabilities, padded rows included (the batch holds a
/// short text too).
#[test]
fn r19_modernbert_trains_and_predicts_on_the_simulated_device_as_on_the_cpu() {
    let Some(dir) = fixture_dir("families/modernbert-seqcls") else { return };
    let work = scratch_dir("r19-device");
    let train = work.join("train.tsv");
    std::fs::write(&train, "text\tlabel\na fine film\tpositive\na dull film\tnegative\nit was a film\tneutral\n").unwrap();
    let output = work.join("out");
    let mut cmd = berth();
    cmd.args(["train", "--device", "sim", "--max-steps", "2", "--batch-size", "2"]);
    cmd.arg("--model").arg(&dir).arg("--train").arg(&train).arg("--output").arg(&output);
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (model, _) = berth::model::load_model(&output, &berth::model::LoadOptions::default()).unwrap();
    assert_eq!(model.config.family, berth::model::Family::ModernBert);

    let input = work.join("input.txt");
    std::fs::write(&input, "a fine film\nit was a long and rather dull film that went on and on with no end in sight at all\n").unwrap();
    let predict = |device: &str| -> Vec<Vec<f64>> {
        let path = work.join(format!("p-{device}.jsonl"));
        let mut cmd = berth();
        cmd.args(["predict", "--device", device, "--batch-size", "2"]).arg("--model").arg(&output).arg("--input").arg(&input);
        cmd.arg("--output").arg(&path);
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{device}: {}", String::from_utf8_lossy(&out.stderr));
        std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                v["probabilities"].as_array().unwrap().iter().map(|p| p.as_f64().unwrap()).collect()
            })
            .collect()
    };
    let (cpu, sim) = (predict("cpu"), predict("sim"));
    assert_eq!(cpu.len(), 2);
    for (c, s) in cpu.iter().zip(&sim) {
        assert_eq!(c.len(), 3);
        for (a, b) in c.iter().zip(s) {
            assert!((a - b).abs() <= 1e-5, "cpu {cpu:?} vs sim {sim:?}");
        }
    }
}

#[test]
fn r19_an_overlong_max_length_is_clamped_to_the_positions_modernbert_has() {
    let Some(dir) = fixture_dir("families/modernbert-seqcls") else { return };
    let work = scratch_dir("r19-clamp");
    let train = work.join("train.tsv");
    // One text of 200 words: far over the fixture's 128 positions.
    let long = vec!["film"; 200].join(" ");
    std::fs::write(&train, format!("text\tlabel\n{long}\tpositive\na dull film\tnegative\nit was a film\tneutral\n")).unwrap();
    let output = work.join("out");
    let mut cmd = berth();
    cmd.args(["train", "--device", "cpu", "--max-steps", "2", "--batch-size", "3", "--max-length", "1000"]);
    cmd.arg("--model").arg(&dir).arg("--train").arg(&train).arg("--output").arg(&output);
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("--max-length 1000 is above the model's max_position_embeddings; clamped to 128"), "{stderr}");
    assert!(output.join("model.safetensors").exists());
}

#[test]
fn r19_each_multitask_head_starts_from_modernberts_pretrained_head() {
    let Some(dir) = fixture_dir("families/modernbert-seqcls") else { return };
    let work = scratch_dir("r19-multitask-head");
    let heads = crate::r16_multitask::write_heads(&work);
    let output = work.join("out");
    // One step at a learning rate too small to move anything visibly.
    let mut cmd = berth();
    cmd.args(["train", "--device", "cpu", "--max-steps", "1", "--batch-size", "4", "--max-length", "24", "--lr", "1e-12"]);
    cmd.arg("--model").arg(&dir).arg("--heads").arg(&heads).arg("--output").arg(&output);
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let read = |p: &Path| -> std::collections::HashMap<String, Vec<f64>> {
        berth::model::checkpoint::read_safetensors(p, berth::tensor::DType::F64)
            .unwrap()
            .into_iter()
            .map(|(n, t)| (n, t.to_f64_vec()))
            .collect()
    };
    let (fixture, saved) = (read(&dir.join("model.safetensors")), read(&output.join("model.safetensors")));
    for head in ["sentiment", "ner"] {
        for (pretrained, own) in [("head.dense.weight", "bert.pooler.dense.weight"), ("head.norm.weight", "bert.pooler.LayerNorm.weight")] {
            let got = &saved[&format!("heads.{head}.{own}")];
            let worst = got.iter().zip(&fixture[pretrained]).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(worst < 1e-9, "heads.{head}.{own} is {worst} from the fixture's {pretrained}");
        }
    }
    // The classifiers are new, one seed per head.
    assert_ne!(saved["heads.sentiment.classifier.weight"][..4], saved["heads.ner.classifier.weight"][..4]);
}

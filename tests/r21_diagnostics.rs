//! Issue 21, training diagnostics: each log line's gradient norm per part
//! (embeddings, each layer, the head) adds up to the total the clipper saw,
//! updates are measured, clipped steps are counted, the device reports what
//! the CPU does, `--diagnostics off` trains the same weights, and the report
//! draws them.

use std::path::Path;

use serde_json::Value;

use crate::common::{fixture_dir, scratch_dir};
use crate::r16_multitask::{multitask_cmd, write_heads};
use crate::train::{SENTIMENT, berth, fail, succeed, train_cmd, write_data};

fn training_lines(output: &Path) -> Vec<Value> {
    std::fs::read_to_string(output.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["learning_rate"].is_number())
        .collect()
}

fn part_values(line: &Value, key: &str) -> Vec<(String, f64)> {
    line[key].as_object().unwrap_or_else(|| panic!("no {key} in {line}")).iter().map(|(k, v)| (k.clone(), v.as_f64().unwrap())).collect()
}

#[test]
fn r21_diagnostics_add_up_match_the_device_and_change_nothing_when_off() {
    let Some(model) = fixture_dir("a-seqcls") else { return };
    let work = scratch_dir("r21-diagnostics");
    let data = write_data(&work, &SENTIMENT);
    let run = |name: &str, extra: &[&str]| {
        let out = work.join(name);
        let mut cmd = berth();
        cmd.arg("train").arg("--model").arg(&model).arg("--train").arg(&data.train).arg("--output").arg(&out);
        cmd.arg("--eval").arg(&data.dev).args(["--batch-size", "8", "--max-length", "32"]);
        if !extra.contains(&"--device") {
            cmd.args(["--device", "cpu"]);
        }
        cmd.args(["--max-steps", "6", "--logging-steps", "1", "--lr", "1e-3", "--seed", "3"]).args(extra);
        if !extra.contains(&"--max-grad-norm") {
            cmd.args(["--max-grad-norm", "2.0"]);
        }
        succeed(&mut cmd, name);
        out
    };
    let on = run("on", &[]);
    let lines = training_lines(&on);
    assert_eq!(lines.len(), 6);
    for line in &lines {
        let norms = part_values(line, "grad_norm_by_layer");
        let names: Vec<&str> = norms.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["embeddings", "layer.0", "layer.1", "head"], "{line}");
        // The parts' norms make up the norm the clipper saw.
        let total = norms.iter().map(|(_, v)| v * v).sum::<f64>().sqrt();
        let logged = line["grad_norm"].as_f64().unwrap();
        assert!((total - logged).abs() <= 1e-4 * logged, "parts {total} vs grad_norm {logged}");
        for (part, ratio) in part_values(line, "update_ratio_by_layer") {
            assert!(ratio > 0.0 && ratio < 0.5, "{part}: update ratio {ratio}");
        }
        // Logged every step, so the window is this one step.
        let clipped = logged > 2.0;
        assert_eq!(line["clipped_fraction"].as_f64().unwrap(), if clipped { 1.0 } else { 0.0 }, "{line}");
    }
    let report = std::fs::read_to_string(on.join("report.md")).unwrap();
    assert!(
        report.contains("## Training diagnostics") && report.contains("of the 6 steps logged had their gradient norm clipped"),
        "{report}"
    );
    let svg = std::fs::read_to_string(on.join("plots/diagnostics.svg")).unwrap();
    assert!(svg.contains("layer.1") && svg.contains("embeddings"), "the chart names the parts");

    // Off: nothing logged beyond the total, and the same weights to the byte.
    let off = run("off", &["--diagnostics", "off"]);
    for line in training_lines(&off) {
        assert!(line.get("grad_norm_by_layer").is_none() && line.get("clipped_fraction").is_none(), "{line}");
    }
    assert_eq!(
        std::fs::read(on.join("model.safetensors")).unwrap(),
        std::fs::read(off.join("model.safetensors")).unwrap(),
        "diagnostics must not change training"
    );
    assert!(!std::fs::read_to_string(off.join("report.md")).unwrap().contains("## Training diagnostics"));

    // Every step clipped when the bound is tiny.
    let tight = run("tight", &["--max-grad-norm", "1e-6"]);
    assert!(training_lines(&tight).iter().all(|l| l["clipped_fraction"] == 1.0));

    // The simulated device reports the first step as the CPU does (same weights, same masks).
    let sim = run("sim", &["--device", "sim"]);
    let (cpu_first, sim_first) = (&lines[0], &training_lines(&sim)[0]);
    for key in ["grad_norm_by_layer", "update_ratio_by_layer"] {
        for ((part, a), (_, b)) in part_values(cpu_first, key).iter().zip(part_values(sim_first, key)) {
            assert!((a - b).abs() <= 1e-3 * a.abs().max(1e-6), "{key} {part}: cpu {a}, sim {b}");
        }
    }

    let err = fail(&mut train_cmd(&model, &data.train, &work.join("bad"), &["--diagnostics", "maybe"]), "--diagnostics maybe");
    assert!(err.contains("--diagnostics maybe") && err.contains("on or off"), "{err}");
}

#[test]
fn r21_multitask_diagnostics_give_each_head_its_part_and_its_weighted_loss() {
    let Some(model) = fixture_dir("a-seqcls") else { return };
    let work = scratch_dir("r21-diagnostics-multitask");
    let heads = write_heads(&work);
    let out = work.join("out");
    succeed(&mut multitask_cmd(&model, &heads, &out, &["--max-steps", "4", "--device", "cpu"]), "multi-task training");
    let lines = training_lines(&out);
    assert_eq!(lines.len(), 4);
    for line in &lines {
        let names: Vec<String> = part_values(line, "grad_norm_by_layer").into_iter().map(|(n, _)| n).collect();
        assert!(names.contains(&"head.sentiment".to_string()) && names.contains(&"head.ner".to_string()), "{names:?}");
        assert!(names.contains(&"layer.1".to_string()) && names.contains(&"embeddings".to_string()), "{names:?}");
        // The heads file gives ner a loss weight of 0.5, sentiment the default 1.
        for (head, weight) in [("ner", 0.5), ("sentiment", 1.0)] {
            if let Some(loss) = line[format!("loss_{head}")].as_f64() {
                let weighted = line[format!("weighted_loss_{head}")].as_f64().unwrap();
                assert!((weighted - weight * loss).abs() < 1e-12, "{head}: {weighted} vs {weight} × {loss}");
            }
        }
    }
}

#[test]
fn r21_train_and_bench_profile_write_profile_json_and_a_report_table() {
    let Some(model) = fixture_dir("a-seqcls") else { return };
    let work = scratch_dir("r21-profile");
    let data = write_data(&work, &SENTIMENT);
    let out = work.join("out");
    let mut cmd = train_cmd(&model, &data.train, &out, &["--eval", data.dev.to_str().unwrap(), "--batch-size", "8"]);
    succeed(cmd.args(["--max-steps", "5", "--logging-steps", "2", "--profile"]), "train --profile");
    let profile: Value = serde_json::from_str(&std::fs::read_to_string(out.join("profile.json")).unwrap()).unwrap();
    assert_eq!((profile["device"].as_str(), profile["steps"].as_u64()), (Some("cpu"), Some(5)));
    let ops = profile["ops"].as_array().unwrap();
    let row = |op: &str, direction: &str| {
        ops.iter().find(|r| r["op"] == op && r["direction"] == direction).unwrap_or_else(|| panic!("no {op} {direction} in {ops:?}"))
    };
    // One optimizer step per step; diagnostics on the logged steps 2, 4 and the last, 5.
    assert_eq!(row("clip and AdamW", "step")["calls"], 5);
    assert_eq!(row("diagnostics", "step")["calls"], 3);
    assert!(row("linear", "forward")["calls"].as_u64().unwrap() >= 5 && row("linear", "backward")["calls"].as_u64().unwrap() >= 5);
    let shares: f64 = ops.iter().map(|r| r["share"].as_f64().unwrap()).sum();
    let total: f64 = ops.iter().map(|r| r["total_ms"].as_f64().unwrap()).sum();
    assert!((shares - 1.0).abs() < 1e-9 && (total - profile["total_ms"].as_f64().unwrap()).abs() < 1e-6 * total);
    for r in ops {
        let (calls, total, mean) = (r["calls"].as_f64().unwrap(), r["total_ms"].as_f64().unwrap(), r["mean_ms"].as_f64().unwrap());
        assert!((mean * calls - total).abs() <= 1e-9 * total.max(1.0), "{r}");
    }
    let totals: Vec<f64> = ops.iter().map(|r| r["total_ms"].as_f64().unwrap()).collect();
    assert!(totals.windows(2).all(|w| w[0] >= w[1]), "largest first");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("## Profile") && report.contains("| clip and AdamW | step | 5 |"), "{report}");

    // Without --profile, no profile.
    let plain = work.join("plain");
    succeed(&mut train_cmd(&model, &data.train, &plain, &["--max-steps", "2", "--batch-size", "8"]), "train");
    assert!(!plain.join("profile.json").exists());
    // On a device, every kernel is timed too; the simulated device says its times are not a GPU's.
    let mut cmd = berth();
    cmd.arg("train").arg("--model").arg(&model).arg("--train").arg(&data.train).arg("--output").arg(work.join("sim"));
    cmd.args(["--eval", data.dev.to_str().unwrap(), "--batch-size", "8"]);
    succeed(cmd.args(["--device", "sim", "--max-steps", "2", "--profile"]), "train --profile on sim");
    let sim: Value = serde_json::from_str(&std::fs::read_to_string(work.join("sim/profile.json")).unwrap()).unwrap();
    assert_eq!(sim["simulated"], true);
    assert!(sim["device"].as_str().unwrap().contains("simulated") && sim["kernel_timing"].as_str().unwrap().contains("not a GPU's"));
    let kernels = sim["kernels"].as_array().unwrap();
    let kernel = |name: &str| kernels.iter().find(|k| k["kernel"] == name).unwrap_or_else(|| panic!("no {name} in {kernels:?}"));
    // Two layers: one attention forward per layer and step, and one more per evaluation.
    assert!(kernel("attention_d8_fwd_f32")["launches"].as_u64().unwrap() >= 4);
    assert!(kernel("attention_d8_bwd_dq_f32")["launches"] == 4, "{kernels:?}");
    assert!(kernel("gemm (cuBLASLt)")["tflops"].as_f64().unwrap() > 0.0);
    let kernel_total: f64 = kernels.iter().map(|k| k["total_ms"].as_f64().unwrap()).sum();
    assert!((kernel_total - sim["kernels_total_ms"].as_f64().unwrap()).abs() < 1e-6 * kernel_total);
    let report = std::fs::read_to_string(work.join("sim/report.md")).unwrap();
    assert!(report.contains("### Kernels") && report.contains("| kernel | launches | total ms"), "{report}");

    // bench --profile on a device counts each GEMM's flops: 2·m·n·k for every linear layer.
    let path = work.join("bench-sim-profile.json");
    let mut bench = berth();
    bench.args(["bench", "--model"]).arg(&model).args(["--device", "sim", "--case", "fwd", "--batch-size", "2", "--seq-len", "16"]);
    succeed(bench.args(["--iters", "2", "--warmup", "1", "--profile", "--profile-out"]).arg(&path), "bench --device sim --profile");
    let bench_sim: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let config: Value = serde_json::from_str(&std::fs::read_to_string(model.join("config.json")).unwrap()).unwrap();
    let dim = |k: &str| config[k].as_f64().unwrap();
    let (h, i, l, c) = (dim("hidden_size"), dim("intermediate_size"), dim("num_hidden_layers"), 2.0);
    let (b, tokens) = (2.0, 32.0);
    // Q, K, V, the attention output and the two feed-forward products per layer; the pooler and the classifier per sequence.
    let per_pass = 2.0 * tokens * (4.0 * h * h + 2.0 * h * i) * l + 2.0 * b * h * h + 2.0 * b * h * c;
    let gemm = bench_sim["kernels"].as_array().unwrap().iter().find(|k| k["kernel"] == "gemm (cuBLASLt)").unwrap();
    assert_eq!(gemm["flops"].as_f64().unwrap(), 3.0 * per_pass, "{gemm}");
    assert_eq!(gemm["launches"].as_u64().unwrap() as f64, 3.0 * (6.0 * l + 2.0), "{gemm}");
    // Every kernel carries the bytes its launches name, and its GB/s.
    for k in bench_sim["kernels"].as_array().unwrap() {
        assert!(k["bytes"].as_f64().unwrap() > 0.0 && k["gb_per_s"].as_f64().unwrap() > 0.0, "{k}");
    }

    // bench --profile writes the same format.
    let path = work.join("bench-profile.json");
    let mut bench = berth();
    bench.args(["bench", "--model"]).arg(&model).args(["--case", "train", "--batch-size", "2", "--seq-len", "16", "--iters", "2"]);
    succeed(bench.args(["--warmup", "1", "--profile", "--profile-out"]).arg(&path), "bench --profile");
    let bench_profile: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(bench_profile["steps"], 3);
    // Products carry their flops (twice the forward's in the backward) and every tape row its GB/s.
    let bench_ops = bench_profile["ops"].as_array().unwrap();
    let bench_row = |op: &str, direction: &str| bench_ops.iter().find(|r| r["op"] == op && r["direction"] == direction).unwrap();
    let (fwd, bwd) = (bench_row("linear", "forward"), bench_row("linear", "backward"));
    assert_eq!(fwd["flops"].as_f64().unwrap(), 3.0 * per_pass, "{fwd}");
    assert_eq!(bwd["flops"].as_f64().unwrap(), 6.0 * per_pass, "{bwd}");
    assert!(fwd["tflops"].as_f64().unwrap() > 0.0 && fwd["gb_per_s"].as_f64().unwrap() > 0.0, "{fwd}");
    // Training on the CPU packs its rows: attention is the packed op (two sequences of 16).
    let attention = bench_row("packed_attention", "forward");
    assert_eq!(attention["flops"].as_f64().unwrap(), 3.0 * 4.0 * tokens * h * 16.0 * l, "{attention}");
    let layer_norm = bench_ops.iter().find(|r| r["op"] == "layer_norm" && r["direction"] == "forward");
    assert!(layer_norm.is_none_or(|r| r["tflops"].is_null() && r["gb_per_s"].as_f64().unwrap() > 0.0), "{layer_norm:?}");
}

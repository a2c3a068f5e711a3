//! Issue 17: dynamic INT8 inference on the CPU (`--precision int8`).
//! The kernels against an exact integer reference on every instruction path
//! this CPU has, the quantization error within its bound, the error per
//! layer type on a real model, the CLI against fp32 and the portable path,
//! and the refusals.

use std::path::Path;
use std::process::{Command, Output};

use berth::autograd::Tape;
use berth::backend::Int8Path;
use berth::backend::cpu::int8::{Epilogue, QuantizedLinear, QuantizedRows, linear_int8_fwd, linear_int8_quantized, linear_int8_with};
use berth::backend::cpu::matmul::{Operand, linear_fwd};
use berth::data::{BerthTokenizer, Encoded, pad_batch};
use berth::model::params::{WeightCache, quantized_under_int8};
use berth::model::{ForwardMode, LoadOptions, load_model};

use crate::common::{fixture_dir, minilm_dir, rel_error, scratch_dir};

fn berth() -> Command {
    Command::new(env!("CARGO_BIN_EXE_berth"))
}

/// Deterministic values with a spread of magnitudes (some rows larger).
fn values(n: usize, seed: u64, scale: f64) -> Vec<f32> {
    (0..n as u64).map(|i| (berth::rng::normal(seed, 3, i) * scale * (1.0 + (i % 7) as f64 / 3.0)) as f32).collect()
}

/// The paths to test here, and a SKIP line for each one this CPU lacks.
fn paths_here() -> Vec<Int8Path> {
    let mut paths = vec![Int8Path::Portable];
    for path in [Int8Path::Avx512Vnni] {
        if path.available() {
            paths.push(path);
        } else {
            eprintln!("SKIP int8 path {}: this CPU lacks its instructions", path.name());
        }
    }
    paths
}

/// (N, K, out) shapes: T = 1, sizes that are not a multiple of 4 (inputs),
/// of 6 (micro-kernel rows), of 96 (task rows) or of 64 (panel outputs).
const SHAPES: [(usize, usize, usize); 6] = [(1, 1, 1), (1, 5, 3), (7, 13, 70), (13, 384, 130), (100, 97, 64), (203, 1536, 65)];

#[test]
fn r17_int8_kernels_equal_exact_integer_sums_on_every_path() {
    for (n, k, out) in SHAPES {
        let x = values(n * k, 1, 1.0);
        let w = values(out * k, 2, 0.05);
        let bias = values(out, 3, 0.1);
        let weight = QuantizedLinear::quantize("w", &w, out, k).unwrap();
        let rows = QuantizedRows::quantize(&x, n, k, Int8Path::Portable).unwrap();
        let mut results = Vec::new();
        for path in paths_here() {
            // Every path quantizes the activations to the same codes.
            assert_eq!(QuantizedRows::quantize(&x, n, k, path).unwrap(), rows, "{} codes at ({n}, {k})", path.name());
            let y = linear_int8_quantized(&rows, &weight, Some(&bias), path);
            // The exact sum in i64, then the epilogue's scaling in f64.
            for r in 0..n {
                for o in 0..out {
                    let sum: i64 = (0..k).map(|c| rows.code(r, c) as i64 * weight.weight_code(o, c) as i64).sum();
                    let want = sum as f64 * rows.scale(r) as f64 * weight.scale(o) as f64 + bias[o] as f64;
                    let got = y[r * out + o] as f64;
                    // f32 scaling and bias: a few ulps of the larger term.
                    let tolerance = 4.0 * f32::EPSILON as f64 * (want.abs() + bias[o].abs() as f64 + 1e-30);
                    assert!((got - want).abs() <= tolerance, "{} ({n}, {k}, {out}) [{r}, {o}]: {got} against {want}", path.name());
                }
            }
            results.push((path, y));
        }
        // Every path computes the same integers and the same epilogue: the same bits.
        for (path, y) in &results[1..] {
            assert!(
                y.iter().zip(&results[0].1).all(|(a, b)| a.to_bits() == b.to_bits()),
                "{} differs from the portable path at ({n}, {k}, {out})",
                path.name()
            );
        }
    }
}

/// GELU in the INT8 epilogue (the feed-forward's first layer) gives the
/// bits of the plain kernel followed by `gelu_fwd`, on every path and shape.
#[test]
fn r17_int8_gelu_epilogue_equals_linear_then_gelu_bit_for_bit() {
    for (n, k, out) in SHAPES {
        let x = values(n * k, 4, 1.0);
        let w = values(out * k, 5, 0.05);
        let bias = values(out, 6, 0.1);
        let weight = QuantizedLinear::quantize("w", &w, out, k).unwrap();
        for path in paths_here() {
            let fused = linear_int8_with(&x, n, &weight, Some(&bias), Epilogue::Gelu, path).unwrap();
            let plain = linear_int8_fwd(&x, n, &weight, Some(&bias), path).unwrap();
            let then = berth::backend::cpu::activation::gelu_fwd(&plain);
            let differing = fused.iter().zip(&then).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
            assert_eq!(differing, 0, "{} at ({n}, {k}, {out}): {differing} outputs differ", path.name());
            // GELU really ran: negative pre-activations were squashed towards 0.
            assert!(plain.iter().zip(&fused).any(|(p, f)| *p < -0.5 && f.abs() < p.abs() / 2.0) || n * out < 8);
        }
    }
}

/// The residual connection in the INT8 epilogue (each layer's two output
/// projections) gives the bits of the plain kernel followed by `add`, on
/// every path and shape; a residual of the wrong size is an error.
#[test]
fn r17_int8_residual_epilogue_equals_linear_then_add_bit_for_bit() {
    for (n, k, out) in SHAPES {
        let x = values(n * k, 4, 1.0);
        let w = values(out * k, 5, 0.05);
        let bias = values(out, 6, 0.1);
        let residual = values(n * out, 7, 3.0);
        let weight = QuantizedLinear::quantize("w", &w, out, k).unwrap();
        for path in paths_here() {
            let fused = linear_int8_with(&x, n, &weight, Some(&bias), Epilogue::Residual(&residual), path).unwrap();
            let plain = linear_int8_fwd(&x, n, &weight, Some(&bias), path).unwrap();
            let then = berth::backend::cpu::activation::add(&plain, &residual);
            let differing = fused.iter().zip(&then).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
            assert_eq!(differing, 0, "{} at ({n}, {k}, {out}): {differing} outputs differ", path.name());
            // The residual was really added: the outputs moved by it.
            assert!(fused.iter().zip(&plain).any(|(f, p)| (f - p).abs() > 0.5) || n * out < 8);
            let short = linear_int8_with(&x, n, &weight, Some(&bias), Epilogue::Residual(&residual[1..]), path).unwrap_err();
            assert!(short.to_string().contains("residual"), "{short}");
        }
    }
}

#[test]
fn r17_int8_linear_stays_within_the_quantization_bound() {
    // x = s_x(q_x + e_x), w = s_w(q_w + e_w), |e| ≤ 1/2, so
    // |x·w − s_x s_w q_x·q_w| ≤ s_x s_w Σ_k (|q_x|/2 + |q_w|/2 + 1/4).
    for (n, k, out) in SHAPES {
        let x = values(n * k, 4, 1.0);
        let w = values(out * k, 5, 0.05);
        let weight = QuantizedLinear::quantize("w", &w, out, k).unwrap();
        let rows = QuantizedRows::quantize(&x, n, k, Int8Path::Portable).unwrap();
        let exact = linear_fwd(&x, n, k, Operand::new(&w, out, k, true), None, out);
        let mut worst_share = 0f64;
        for path in paths_here() {
            let y = linear_int8_fwd(&x, n, &weight, None, path).unwrap();
            for r in 0..n {
                for o in 0..out {
                    let bound: f64 = (0..k)
                        .map(|c| 0.5 * (rows.code(r, c) as f64).abs() + 0.5 * (weight.weight_code(o, c) as f64).abs() + 0.25)
                        .sum::<f64>()
                        * rows.scale(r) as f64
                        * weight.scale(o) as f64;
                    // The f32 reference's own rounding, beside the quantization's.
                    let rounding: f64 = 1e-5 * (0..k).map(|c| (x[r * k + c] as f64 * w[o * k + c] as f64).abs()).sum::<f64>();
                    let error = (y[r * out + o] as f64 - exact[r * out + o] as f64).abs();
                    assert!(error <= bound + rounding, "{} ({n}, {k}, {out}) [{r}, {o}]: error {error} over bound {bound}", path.name());
                    if bound > 0.0 {
                        worst_share = worst_share.max(error / bound);
                    }
                }
            }
        }
        // The bound is not vacuous: the error reaches a visible part of it.
        if k >= 97 {
            assert!(worst_share > 0.01, "({n}, {k}, {out}): the largest error is only {worst_share} of the bound");
        }
    }
}

/// A few sentences of the kind a sentiment model reads.
const SENTENCES: [&str; 8] = [
    "a gripping, beautifully acted film that stays with you long after the credits",
    "the plot is thin and the jokes fall flat, though the lead tries hard",
    "it is neither as funny nor as moving as it wants to be",
    "an absolute delight from start to finish",
    "tedious",
    "the director's best work in years, with a score to match",
    "i wanted to like it more than i did",
    "a mess of a movie that somehow still charms",
];

/// all-MiniLM-L6-v2 (None, with a SKIP line, where it is absent) and the
/// sentences above as one padded batch.
pub(crate) fn minilm_and_sentences() -> Option<(berth::model::BertClassifier, berth::data::Batch)> {
    let dir = minilm_dir()?;
    let (model, _) = load_model(&dir, &LoadOptions::default()).unwrap();
    let tokenizer = BerthTokenizer::from_dir(&dir, 128).unwrap();
    let inputs: Vec<(String, Option<String>)> = SENTENCES.iter().map(|s| (s.to_string(), None)).collect();
    let encoded = tokenizer.encode_many(&inputs).unwrap();
    let refs: Vec<&Encoded> = encoded.iter().collect();
    Some((model, pad_batch(&refs, tokenizer.pad_id())))
}

/// Prediction, evaluation and training keep only the final hidden state
/// (`ForwardMode::last_state_only`): with packed rows that skips scattering
/// every layer's state back to the padded layout, and must change no value
/// the heads read, in a plain forward and under INT8 alike.
#[test]
fn r17_last_state_only_skips_the_layer_scatters_and_changes_no_bit() {
    let Some((model, batch)) = minilm_and_sentences() else { return };
    let layers = model.config.num_hidden_layers;
    for precision in [berth::Precision::Fp32, berth::Precision::Int8] {
        let cache = model.inference_cache(precision).unwrap();
        let run = |mode: ForwardMode| {
            let mut tape = Tape::no_grad();
            tape.enable_profile();
            let out = model.forward_cached(&mut tape, &batch, mode, Some(&cache)).unwrap();
            let scatters = tape.profile().unwrap().forward.get("scatter_rows").map_or(0, |t| t.calls);
            let values = [*out.hidden_states.last().unwrap(), out.logits].map(|v| tape.value(v).to_f64_vec());
            (values, out.hidden_states.len(), scatters)
        };
        let (all, all_states, all_scatters) = run(ForwardMode::eval().skipping_padding());
        let (last, last_states, last_scatters) = run(ForwardMode::eval().skipping_padding().last_state_only());
        assert_eq!((all_states, all_scatters), (layers + 1, layers + 1), "{precision:?}: every state, each scattered");
        assert_eq!((last_states, last_scatters), (1, 1), "{precision:?}: the final state alone");
        for (which, (a, l)) in ["last hidden state", "logits"].iter().zip(all.iter().zip(&last)) {
            assert!(a.iter().zip(l).all(|(x, y)| x.to_bits() == y.to_bits()), "{precision:?}: {which} changed");
        }
    }
}

/// A kind of layer: its name, which parameter names it covers, and its error bound.
type LayerKind = (&'static str, fn(&str) -> bool, f64);

#[test]
fn r17_int8_error_per_layer_type_on_minilm() {
    let Some((model, batch)) = minilm_and_sentences() else { return };
    let mode = ForwardMode::eval().skipping_padding();
    // The last hidden state at the real tokens, and the pooled output.
    let run = |cache: &WeightCache| {
        let mut tape = Tape::no_grad();
        let out = model.forward_cached(&mut tape, &batch, mode, Some(cache)).unwrap();
        let last = tape.value(*out.hidden_states.last().unwrap()).to_f64_vec();
        let h = model.config.hidden_size;
        let real: Vec<f64> = batch
            .attention_mask
            .iter()
            .enumerate()
            .filter(|&(_, &m)| m != 0)
            .flat_map(|(i, _)| last[i * h..(i + 1) * h].to_vec())
            .collect();
        (real, tape.value(out.pooled.unwrap()).to_f64_vec())
    };
    let fp32 = run(&WeightCache::build(&model.params).unwrap());
    // (layer type, its bound on ‖Δ‖/‖fp32‖ of the last hidden state and of
    // the pooled output). Measured on 2026-12-04: 0.030 / 0.031 (query, key,
    // value), 0.008 / 0.007 (attention output), 0.030 / 0.037 (feed-forward
    // in), 0.029 / 0.019 (feed-forward out), 0.052 / 0.053 (all). The layers
    // fed by a LayerNorm lose most: a few features of its output are far
    // larger than the rest, and a row's 256 levels must span them. The same
    // model fine-tuned on SST-2 keeps its dev accuracy in INT8 (docs/perf.md).
    let kinds: [LayerKind; 5] = [
        ("query, key, value", |n| n.contains("attention.self."), 0.045),
        ("attention output", |n| n.contains("attention.output.dense"), 0.015),
        ("feed-forward in", |n| n.contains("intermediate.dense"), 0.05),
        ("feed-forward out", |n| n.contains("output.dense") && !n.contains("attention"), 0.045),
        ("all (--precision int8)", quantized_under_int8, 0.07),
    ];
    let mut lines = vec!["| layers in INT8 | last hidden state ‖Δ‖/‖x‖ | pooled ‖Δ‖/‖x‖ | bound |".to_string()];
    for (name, pick, bound) in kinds {
        let cache = WeightCache::build_quantizing(&model.params, |n| quantized_under_int8(n) && pick(n)).unwrap();
        assert!(cache.quantized_count() > 0, "{name}: nothing was quantized");
        let (hidden, pooled) = run(&cache);
        let (e_hidden, e_pooled) = (rel_error(&hidden, &fp32.0), rel_error(&pooled, &fp32.1));
        lines.push(format!("| {name} | {e_hidden:.5} | {e_pooled:.5} | {bound} |"));
        assert!(e_hidden <= bound && e_pooled <= bound, "{name}: errors {e_hidden}, {e_pooled} over {bound}\n{}", lines.join("\n"));
        // Quantizing is not a no-op: the error is there, and small.
        assert!(e_hidden > 1e-5, "{name}: INT8 changed nothing ({e_hidden})");
    }
    eprintln!("{}", lines.join("\n"));
    assert_eq!(
        WeightCache::build_for(&model.params, berth::Precision::Int8).unwrap().quantized_count(),
        6 * model.config.num_hidden_layers
    );
}

/// For inference each layer projects q, k and v in one fused GEMM and its
/// attention reads them in place (`BertClassifier::inference_cache`). Under
/// INT8 quantization is per output channel, so that must change no bit
/// against the three projections apart (`WeightCache::build_for` alone);
/// in f32 it may change the GEMM's blocking, so only rounding. On a padded
/// batch of ragged lengths, and it must really run fused.
#[test]
fn r17_fused_qkv_projection_changes_no_bit_in_int8_and_only_rounding_in_fp32() {
    let Some((model, batch)) = minilm_and_sentences() else { return };
    assert!(batch.attention_mask.contains(&0), "the batch has padding, so the sequences are ragged");
    let run = |cache: &WeightCache| {
        let mut tape = Tape::no_grad();
        tape.enable_profile();
        let out = model.forward_cached(&mut tape, &batch, ForwardMode::eval().skipping_padding(), Some(cache)).unwrap();
        let profile = tape.profile().unwrap();
        let calls = |op: &str| profile.forward.get(op).map_or(0, |t| t.calls);
        let values = [*out.hidden_states.last().unwrap(), out.pooled.unwrap()].map(|v| tape.value(v).to_f64_vec());
        let residual_ops = (calls("linear_int8_residual") + calls("linear_packed_residual"), calls("add"));
        // Every linear op, whatever its weight: the plain, INT8 and packed f32 ones.
        let gemms = profile.forward.iter().filter(|(op, _)| op.starts_with("linear")).map(|(_, t)| t.calls).sum();
        (values, [gemms, calls("packed_attention_qkv"), calls("packed_attention")], residual_ops)
    };
    let layers = model.config.num_hidden_layers;
    for precision in [berth::Precision::Int8, berth::Precision::Fp32] {
        let fused_cache = model.inference_cache(precision).unwrap();
        assert_eq!(fused_cache.fused_qkv_count(), layers);
        let (fused, fused_calls, residual_ops) = run(&fused_cache);
        let (apart, apart_calls, _) = run(&WeightCache::build_for(&model.params, precision).unwrap());
        // Under INT8, and in f32 where the inference cache packs the
        // weights (AVX-512), both residual connections of every layer are
        // added in the output projections' epilogue (bit for bit: the kernel
        // tests); elsewhere they stay separate adds.
        let packed = precision == berth::Precision::Int8 || berth::backend::cpu::packed_linear::fast_path().is_some();
        let expected = if packed { (2 * layers, 0) } else { (0, 2 * layers) };
        assert_eq!(residual_ops, expected, "{precision:?}: (fused residual epilogues, adds)");
        assert_eq!(apart_calls[0] - fused_calls[0], 2 * layers, "{precision:?}: one q|k|v GEMM per layer instead of three");
        assert_eq!((fused_calls[1], fused_calls[2]), (layers, 0), "{precision:?}: the fused attention in every layer");
        assert_eq!((apart_calls[1], apart_calls[2]), (0, layers), "{precision:?}: apart, the plain packed attention");
        for (which, (f, a)) in ["last hidden state", "pooled output"].iter().zip(fused.iter().zip(&apart)) {
            if precision == berth::Precision::Int8 {
                let differing = f.iter().zip(a).filter(|(x, y)| x.to_bits() != y.to_bits()).count();
                assert_eq!(differing, 0, "{which}: {differing} of {} values differ between fused and separate projections", f.len());
            } else {
                let error = rel_error(f, a);
                assert!(error < 1e-5, "{which}: fused f32 projections moved ‖Δ‖/‖x‖ by {error}");
            }
        }
    }
    // A tape that keeps gradients never takes the forward-only fused path,
    // even with a fused cache: it projects apart (the f32 cache dropped the
    // three transposed copies, so from the weights themselves), same values.
    let fused_cache = model.inference_cache(berth::Precision::Fp32).unwrap();
    let mut tape = Tape::new();
    tape.enable_profile();
    let out = model.forward_cached(&mut tape, &batch, ForwardMode::eval().skipping_padding(), Some(&fused_cache)).unwrap();
    assert!(!tape.profile().unwrap().forward.contains_key("packed_attention_qkv"), "a tape with gradients ran the fused attention");
    let with_grads = tape.value(out.pooled.unwrap()).to_f64_vec();
    let (no_grads, _, _) = run(&fused_cache);
    assert!(rel_error(&with_grads, &no_grads[1]) < 1e-5);
    let qkv = tape.leaf(berth::tensor::Tensor::from_vec(vec![0f32; 2 * 3 * 384], &[2, 3 * 384]).unwrap(), false);
    let refused = berth::autograd::attention::packed_attention_qkv(&mut tape, qkv, vec![2].into(), 12, 0.125).unwrap_err();
    assert!(refused.to_string().contains("without gradients"), "{refused}");
}

pub(crate) fn predict(model: &Path, input: &Path, output: &Path, precision: &str, portable: bool) -> Output {
    let mut cmd = berth();
    cmd.args(["predict", "--model"]).arg(model).arg("--input").arg(input).arg("--output").arg(output).args(["--precision", precision]);
    if portable {
        cmd.env("BERTH_INT8_PATH", "portable");
    }
    cmd.output().unwrap()
}

pub(crate) fn logits_of(path: &Path) -> Vec<f64> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .flat_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let mut flat = Vec::new();
            flatten(&v["logits"], &mut flat);
            flat
        })
        .collect()
}

fn flatten(v: &serde_json::Value, out: &mut Vec<f64>) {
    match v {
        serde_json::Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
        other => out.push(other.as_f64().unwrap()),
    }
}

#[test]
fn r17_int8_predict_matches_fp32_and_the_portable_path() {
    let lines = "a charming film\nthe worst two hours of my year\nit was fine\nwonderful acting, dull script\n";
    for (name, input) in [("a-seqcls", lines.to_string()), ("a-pair", "a cat sat\tthe cat is sitting\nit rains\tthe sun shines\n".into())] {
        let Some(dir) = fixture_dir(name) else { return };
        let work = scratch_dir(&format!("int8-predict-{name}"));
        let input_path = work.join("input.txt");
        std::fs::write(&input_path, &input).unwrap();
        let (fp32, int8, portable) = (work.join("fp32.jsonl"), work.join("int8.jsonl"), work.join("portable.jsonl"));
        for (out, precision, forced) in [(&fp32, "fp32", false), (&int8, "int8", false), (&portable, "int8", true)] {
            let o = predict(&dir, &input_path, out, precision, forced);
            let stderr = String::from_utf8_lossy(&o.stderr);
            assert!(o.status.success(), "{name} {precision}: {stderr}");
            if precision == "int8" {
                let path = if forced { "portable" } else { berth::backend::cpu::int8::best_path().name() };
                assert!(stderr.contains(&format!("engine: cpu (int8, {path})")), "{name}: the engine line names the path\n{stderr}");
            }
        }
        // The fallback computes the same integers: the same file, byte for byte.
        assert_eq!(std::fs::read(&int8).unwrap(), std::fs::read(&portable).unwrap(), "{name}: the portable path differs");
        let (want, got) = (logits_of(&fp32), logits_of(&int8));
        let error = rel_error(&got, &want);
        assert!(error < 0.05 && error > 0.0, "{name}: INT8 logits' error against fp32 is {error}");
    }
}

#[test]
fn r17_int8_refusals_name_the_flag() {
    let Some(dir) = fixture_dir("a-seqcls") else { return };
    let work = scratch_dir("int8-refusals");
    let input = work.join("input.txt");
    std::fs::write(&input, "a line\n").unwrap();
    let out = work.join("out.jsonl");
    let expect_error = |args: &[&str], wanted: &str| {
        let o = berth().args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && stderr.contains(wanted), "{args:?}: expected `{wanted}`\n{stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    };
    let model = dir.to_str().unwrap();
    let (input, out) = (input.to_str().unwrap(), out.to_str().unwrap());
    expect_error(
        &["predict", "--model", model, "--input", input, "--output", out, "--precision", "int8", "--device", "sim"],
        "--precision int8 is CPU inference only",
    );
    expect_error(
        &["predict", "--model", model, "--input", input, "--output", out, "--precision", "int8", "--explain", "ig"],
        "--precision int8 has none",
    );
    let train_out = work.join("run");
    expect_error(
        &["train", "--model", model, "--train", input, "--output", train_out.to_str().unwrap(), "--precision", "int8"],
        "--precision int8 for training",
    );
    assert!(!train_out.exists(), "a refused run writes nothing");
    expect_error(
        &["bench", "--device", "cpu", "--config", "minilm", "--case", "train", "--precision", "int8"],
        "--case train --precision int8",
    );
    // The library: explanations need gradients.
    let options = berth::ClassifierOptions { precision: berth::Precision::Int8, device: berth::DeviceChoice::Cpu, ..Default::default() };
    let classifier = berth::Classifier::load_with(&dir, &options).unwrap();
    assert!(classifier.device_name().contains("int8"), "{}", classifier.device_name());
    let err = classifier.explain(&["a line"], &Default::default()).unwrap_err().to_string();
    assert!(err.contains("--precision int8 has none"), "{err}");
    let options = berth::ClassifierOptions { precision: berth::Precision::Int8, device: berth::DeviceChoice::Sim, ..Default::default() };
    let err = berth::Classifier::load_with(&dir, &options).err().unwrap().to_string();
    assert!(err.contains("CPU inference only"), "{err}");
}

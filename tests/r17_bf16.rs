//! Issue 17: `--precision bf16` on the CPU (`backend/cpu/bf16_linear.rs`).
//! Every path this CPU has against the exact sum of the BF16-rounded
//! products and against the f32 product, on ragged shapes; the widening and
//! portable paths give the same bits; the epilogues equal the ops they
//! replace; the encoder on the BF16 inference cache stays within a stated
//! bound of fp32 and really runs the BF16 ops; and what BF16 on the CPU
//! does not do (training, explanations) is refused naming the flag.

use std::process::Command;

use berth::autograd::Tape;
use berth::backend::cpu::activation::gelu_fwd;
use berth::backend::cpu::bf16_linear::{Bf16Path, PackedBf16Linear, best_path, from_bf16, linear_bf16_with, to_bf16};
use berth::backend::cpu::epilogue::Epilogue;
use berth::model::ForwardMode;
use berth::model::params::WeightCache;

use crate::common::{fixture_dir, rel_error, scratch_dir};
use crate::r17_int8::{logits_of, minilm_and_sentences, predict};

fn values(n: usize, seed: u64, scale: f64) -> Vec<f32> {
    (0..n as u64).map(|i| (berth::rng::normal(seed, 9, i) * scale) as f32).collect()
}

/// The paths to test here, and a SKIP line for each one this CPU lacks.
fn paths_here() -> Vec<Bf16Path> {
    let mut paths = Vec::new();
    for path in Bf16Path::ALL {
        match path.available() {
            true => paths.push(path),
            false => eprintln!("SKIP bf16 linear path {}: this CPU lacks its instructions", path.name()),
        }
    }
    paths
}

/// (N, K, out): T = 1, an odd K (a pair with no partner), rows not a
/// multiple of 6 or 96, outputs not a multiple of 16 or 64, inputs past one
/// block of 1536 (partial sums stored and reloaded).
const SHAPES: [(usize, usize, usize); 8] =
    [(1, 1, 1), (1, 5, 3), (7, 13, 70), (13, 384, 130), (100, 97, 64), (37, 1537, 65), (5, 3072, 17), (2, 2, 129)];

fn round(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&v| from_bf16(to_bf16(v)) as f64).collect()
}

#[test]
fn r17_bf16_linear_stays_within_rounding_of_the_exact_sum_on_every_path() {
    for (n, k, out) in SHAPES {
        let (x, w, bias) = (values(n * k, 1, 1.0), values(out * k, 2, 0.05), values(out, 3, 0.1));
        let (xr, wr) = (round(&x), round(&w));
        let packed = PackedBf16Linear::pack("w", &w, out, k).unwrap();
        let mut portable: Option<Vec<f32>> = None;
        for path in paths_here().into_iter().rev() {
            let y = linear_bf16_with(&x, n, &packed, Some(&bias), Epilogue::Plain, path).unwrap();
            assert_eq!(y.len(), n * out);
            let mut worst_vs_f32 = 0f64;
            for r in 0..n {
                for o in 0..out {
                    // The exact sum of the rounded operands' products: only
                    // f32 summation error is allowed against it.
                    let terms = (0..k).map(|i| xr[r * k + i] * wr[o * k + i]);
                    let (exact, size) = terms.fold((bias[o] as f64, bias[o].abs() as f64), |(s, m), t| (s + t, m + t.abs()));
                    let got = y[r * out + o] as f64;
                    let bound = (k as f64 + 2.0) * f32::EPSILON as f64 * size + 1e-30;
                    assert!((got - exact).abs() <= bound, "{} ({n},{k},{out}) y[{r},{o}] = {got}, exact {exact}", path.name());
                    // Against the f32 operands: within BF16's rounding of
                    // both (2^-8 relative each) of the terms' size.
                    let f32_exact: f64 = bias[o] as f64 + (0..k).map(|i| x[r * k + i] as f64 * w[o * k + i] as f64).sum::<f64>();
                    let off = (got - f32_exact).abs() / size.max(1e-30);
                    assert!(off <= 2.0 * 2f64.powi(-8) + 1e-6, "{} ({n},{k},{out}) y[{r},{o}]: {off} of the terms off f32", path.name());
                    worst_vs_f32 = worst_vs_f32.max(off);
                }
            }
            if k >= 97 {
                // BF16 really rounded: the result is not the f32 product.
                assert!(worst_vs_f32 > 1e-5, "{} ({n},{k},{out}): no BF16 rounding seen ({worst_vs_f32})", path.name());
            }
            match (&portable, path) {
                (None, _) => portable = Some(y),
                // The widening path sums the same exact products in the same
                // order as the portable loops: the same bits.
                (Some(reference), Bf16Path::Avx512Widen) => {
                    let differing = y.iter().zip(reference).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
                    assert_eq!(differing, 0, "widen ({n},{k},{out}): {differing} values differ from the portable path");
                }
                (Some(reference), _) => {
                    let differing = y.iter().zip(reference).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
                    eprintln!("{} ({n},{k},{out}): {differing} of {} values differ in bits from the portable path", path.name(), y.len());
                }
            }
        }
    }
}

#[test]
fn r17_bf16_linear_epilogues_equal_the_ops_they_replace_bit_for_bit() {
    for (n, k, out) in SHAPES {
        let (x, w, bias, residual) = (values(n * k, 4, 1.0), values(out * k, 5, 0.1), values(out, 6, 0.1), values(n * out, 7, 1.0));
        let packed = PackedBf16Linear::pack("w", &w, out, k).unwrap();
        for path in paths_here() {
            let plain = linear_bf16_with(&x, n, &packed, Some(&bias), Epilogue::Plain, path).unwrap();
            let gelu = linear_bf16_with(&x, n, &packed, Some(&bias), Epilogue::Gelu, path).unwrap();
            let added = linear_bf16_with(&x, n, &packed, Some(&bias), Epilogue::Residual(&residual), path).unwrap();
            let expected_added: Vec<f32> = plain.iter().zip(&residual).map(|(a, b)| a + b).collect();
            let bits = |a: &[f32], b: &[f32]| a.iter().zip(b).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
            assert_eq!(bits(&gelu, &gelu_fwd(&plain)), 0, "{} ({n},{k},{out}): GELU epilogue", path.name());
            assert_eq!(bits(&added, &expected_added), 0, "{} ({n},{k},{out}): residual epilogue", path.name());
        }
    }
    // Wrong shapes are errors naming the op or the weight, not panics.
    let packed = PackedBf16Linear::pack("w", &[0.5; 12], 3, 4).unwrap();
    let err = linear_bf16_with(&[1.0; 7], 2, &packed, None, Epilogue::Plain, Bf16Path::Portable).unwrap_err().to_string();
    assert!(err.contains("linear_bf16"), "{err}");
    let err = linear_bf16_with(&[1.0; 8], 2, &packed, None, Epilogue::Residual(&[0.0; 5]), Bf16Path::Portable).unwrap_err().to_string();
    assert!(err.contains("residual") && err.contains("(2, 3)"), "{err}");
    let err = PackedBf16Linear::pack("layer.2.w", &[0.5; 11], 3, 4).unwrap_err().to_string();
    assert!(err.contains("layer.2.w"), "{err}");
}

/// MiniLM on the BF16 inference cache: every encoder layer's weights in
/// BF16 (q|k|v fused), GELU and both residuals in the epilogues, the
/// pooler and classifier in f32; the last hidden state and the pooled
/// output within a stated bound of fp32, and not equal to it.
#[test]
fn r17_bf16_inference_cache_runs_the_bf16_ops_within_a_bound_of_fp32() {
    let Some((model, batch)) = minilm_and_sentences() else { return };
    let layers = model.config.num_hidden_layers;
    let run = |cache: &WeightCache| {
        let mut tape = Tape::no_grad();
        tape.enable_profile();
        let out = model.forward_cached(&mut tape, &batch, ForwardMode::eval().skipping_padding(), Some(cache)).unwrap();
        let profile = tape.profile().unwrap();
        let calls: std::collections::BTreeMap<String, usize> = profile.forward.iter().map(|(op, t)| (op.to_string(), t.calls)).collect();
        ([*out.hidden_states.last().unwrap(), out.pooled.unwrap()].map(|v| tape.value(v).to_f64_vec()), calls)
    };
    let (fp32, _) = run(&WeightCache::build(&model.params).unwrap());
    let cache = model.inference_cache(berth::Precision::Bf16).unwrap();
    assert_eq!(cache.bf16_count(), 4 * layers, "per layer q|k|v, attention output, feed-forward in and out");
    let (bf16, calls) = run(&cache);
    let count = |op: &str| calls.get(op).copied().unwrap_or(0);
    assert_eq!((count("linear_bf16"), count("linear_bf16_gelu"), count("linear_bf16_residual")), (layers, layers, 2 * layers), "{calls:?}");
    assert_eq!((count("gelu"), count("add")), (0, 0), "{calls:?}");
    // Measured on 2026-12-08 (AMD EPYC, avx512bf16): 0.0052 and 0.0035.
    for (which, (b, f)) in ["last hidden state", "pooled output"].iter().zip(bf16.iter().zip(&fp32)) {
        let error = rel_error(b, f);
        eprintln!("bf16 ({}) {which}: ‖Δ‖/‖fp32‖ = {error:.5}", best_path().name());
        assert!(error < 0.02 && error > 1e-5, "{which}: BF16's error against fp32 is {error}");
    }
}

#[test]
fn r17_bf16_predict_matches_fp32_and_the_widening_path_is_the_portable_ones_bits() {
    let lines = "a charming film\nthe worst two hours of my year\nit was fine\nwonderful acting, dull script\n";
    let Some(dir) = fixture_dir("a-seqcls") else { return };
    let work = scratch_dir("bf16-predict");
    let input = work.join("input.txt");
    std::fs::write(&input, lines).unwrap();
    let run = |name: &str, precision: &str, path: Option<&str>| {
        let out = work.join(format!("{name}.jsonl"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
        cmd.args(["predict", "--model"]).arg(&dir).arg("--input").arg(&input).arg("--output").arg(&out).args(["--precision", precision]);
        if let Some(path) = path {
            cmd.env("BERTH_BF16_PATH", path);
        }
        let o = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(o.status.success(), "{name}: {stderr}");
        (out, stderr)
    };
    let fp32 = predict(&dir, &input, &work.join("fp32.jsonl"), "fp32", false);
    assert!(fp32.status.success());
    let (bf16, stderr) = run("bf16", "bf16", None);
    assert!(stderr.contains(&format!("cpu (bf16, {})", best_path().name())), "the device line names the path\n{stderr}");
    let error = rel_error(&logits_of(&bf16), &logits_of(&work.join("fp32.jsonl")));
    assert!(error < 0.05 && error > 0.0, "BF16 logits' error against fp32 is {error}");
    let (portable, _) = run("portable", "bf16", Some("portable"));
    if Bf16Path::Avx512Widen.available() {
        let (widen, _) = run("widen", "bf16", Some("widen"));
        assert_eq!(std::fs::read(&widen).unwrap(), std::fs::read(&portable).unwrap(), "the widening path differs from the portable one");
    } else {
        eprintln!("SKIP bf16 widening path against portable: this CPU lacks AVX-512F");
    }
    let error = rel_error(&logits_of(&portable), &logits_of(&bf16));
    assert!(error < 1e-4, "the portable path's logits are {error} off the fastest path's");
}

/// The backward's products on BF16 operands: dx = dy·W and dW = dyᵀ·x
/// within the f32 summation bound of the exact sums of the rounded
/// operands, db the f32 column sums, on every path this CPU has (T = 1,
/// odd sizes, N past one input block for dW).
#[test]
fn r17_bf16_backward_products_stay_within_rounding_of_the_exact_sums() {
    use berth::backend::cpu::bf16_linear::linear_bf16_backward;
    for (n, k, out) in [(1, 3, 5), (7, 13, 70), (1600, 37, 65), (130, 384, 129)] {
        let (dy, x, w) = (values(n * out, 11, 1.0), values(n * k, 12, 1.0), values(out * k, 13, 0.05));
        let (dyr, xr, wr) = (round(&dy), round(&x), round(&w));
        for path in paths_here() {
            let [dx, dw, db] = linear_bf16_backward(&dy, &x, &w, (n, out, k), [true; 3], path).unwrap();
            let (dx, dw, db) = (dx.unwrap(), dw.unwrap(), db.unwrap());
            let check = |got: f32, terms: &mut dyn Iterator<Item = f64>, len: usize, what: &str| {
                let (exact, size) = terms.fold((0.0, 0.0), |(s, m): (f64, f64), t| (s + t, m + t.abs()));
                let bound = (len as f64 + 2.0) * f32::EPSILON as f64 * size + 1e-30;
                assert!((got as f64 - exact).abs() <= bound, "{} ({n},{k},{out}) {what} = {got}, exact {exact}", path.name());
            };
            for r in 0..n {
                for i in 0..k {
                    check(dx[r * k + i], &mut (0..out).map(|o| dyr[r * out + o] * wr[o * k + i]), out, &format!("dx[{r},{i}]"));
                }
            }
            for o in 0..out {
                for i in 0..k {
                    check(dw[o * k + i], &mut (0..n).map(|r| dyr[r * out + o] * xr[r * k + i]), n, &format!("dW[{o},{i}]"));
                }
                let sum: f64 = (0..n).map(|r| dy[r * out + o] as f64).sum();
                assert!((db[o] as f64 - sum).abs() <= 1e-5 * (1.0 + sum.abs()), "db[{o}]");
            }
            // Only what is wanted.
            let [dx, dw, db] = linear_bf16_backward(&dy, &x, &w, (n, out, k), [false, true, false], path).unwrap();
            assert!(dx.is_none() && dw.is_some() && db.is_none());
        }
    }
    let err = linear_bf16_backward(&[0.0; 5], &[0.0; 6], &[0.0; 6], (2, 3, 3), [true; 3], Bf16Path::Portable).unwrap_err().to_string();
    assert!(err.contains("linear_bf16 backward") && err.contains("dy of 5 values"), "{err}");
}

/// A dropout-on training step on MiniLM's BF16 per-step cache: every
/// encoder layer's linear op is `linear_bf16` (forward and backward on
/// BF16 operands), the pooler and classifier stay f32; the loss and every
/// gradient within a stated bound of the fp32 step's, and not equal to it.
#[test]
fn r17_bf16_training_step_stays_within_a_bound_of_fp32() {
    let Some((model, batch)) = minilm_and_sentences() else { return };
    let layers = model.config.num_hidden_layers;
    let labels = berth::model::Labels::SingleLabel((0..batch.batch_size as i64).map(|i| i % 2).collect());
    let step = |cache: &WeightCache| {
        let mut tape = Tape::new();
        tape.enable_profile();
        let out = model.forward_cached(&mut tape, &batch, ForwardMode::train(3).skipping_padding(), Some(cache)).unwrap();
        let loss = model.loss(&mut tape, out.logits, &labels, None).unwrap();
        let loss_value = tape.value(loss).to_f64_vec()[0];
        let calls: std::collections::BTreeMap<String, usize> =
            tape.profile().unwrap().forward.iter().map(|(op, t)| (op.to_string(), t.calls)).collect();
        let grads = tape.backward(loss).unwrap();
        let grads: Vec<(String, Vec<f64>)> = out
            .params
            .iter()
            .zip(model.params.names())
            .map(|(&p, name)| (name.to_string(), grads.get(p).map(|g| g.to_f64_vec()).unwrap_or_default()))
            .collect();
        (loss_value, grads, calls)
    };
    let bf16_cache = model.weight_cache_for(berth::Precision::Bf16).unwrap();
    assert_eq!(bf16_cache.bf16_count(), 6 * layers, "per layer q, k, v, attention output, feed-forward in and out");
    let (fp32_loss, fp32_grads, _) = step(&model.weight_cache().unwrap());
    let (bf16_loss, bf16_grads, calls) = step(&bf16_cache);
    assert_eq!(calls.get("linear_bf16").copied(), Some(6 * layers), "{calls:?}");
    assert!(calls.get("linear").copied().unwrap_or(0) + calls.get("linear_packed").copied().unwrap_or(0) <= 2, "{calls:?}");
    let loss_error = (bf16_loss - fp32_loss).abs() / fp32_loss.abs();
    assert!(loss_error < 0.01 && loss_error > 0.0, "loss {bf16_loss} against fp32 {fp32_loss}");
    // Measured on 2026-12-08 (AMD EPYC, avx512bf16): the largest ‖Δ‖/‖g‖
    // of a gradient was 0.013 (a query bias).
    let mut worst = (0.0, String::new());
    for ((name, b), (_, f)) in bf16_grads.iter().zip(&fp32_grads) {
        // The key bias's gradient is rounding noise on both paths (the softmax cancels it).
        if name.ends_with("attention.self.key.bias") || f.iter().all(|v| *v == 0.0) {
            continue;
        }
        let error = rel_error(b, f);
        if error > worst.0 {
            worst = (error, name.clone());
        }
    }
    eprintln!("bf16 training step ({}): loss {loss_error:.2e} off fp32; worst gradient {:.4} ({})", best_path().name(), worst.0, worst.1);
    assert!(worst.0 < 0.08 && worst.0 > 1e-4, "worst gradient error {} at {}", worst.0, worst.1);
}

/// `train --precision bf16` on the CPU runs (single-task and `--heads`),
/// says so, and saves f32 weights that load; explanations refuse BF16.
#[test]
fn r17_bf16_on_the_cpu_trains_but_refuses_explanations_naming_the_flag() {
    let Some(dir) = fixture_dir("a-seqcls") else { return };
    let work = scratch_dir("bf16-refusals");
    let input = work.join("input.txt");
    std::fs::write(&input, "a line\n").unwrap();
    let train = work.join("train.tsv");
    std::fs::write(&train, "text\tlabel\na good film\tpositive\na bad film\tnegative\nfine acting\tpositive\ndull\tnegative\n").unwrap();
    std::fs::write(work.join("heads.toml"), "[[head]]\nname = \"a\"\ntask = \"classification\"\ntrain = \"train.tsv\"\n").unwrap();
    for (name, source) in
        [("single", ["--train", train.to_str().unwrap()]), ("heads", ["--heads", work.join("heads.toml").to_str().unwrap()])]
    {
        let run = work.join(format!("run-{name}"));
        let o = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["train", "--model"])
            .arg(&dir)
            .args(source)
            .arg("--output")
            .arg(&run)
            .args(["--device", "cpu", "--precision", "bf16", "--epochs", "1", "--batch-size", "2"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{name}: {stderr}");
        assert!(stderr.contains(&format!("device: cpu (bf16, {}; master weights f32)", best_path().name())), "{name}: {stderr}");
        assert!(run.join("model.safetensors").exists() || run.join("a").exists(), "{name}: nothing saved in {}", run.display());
    }
    let o = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["predict", "--model"])
        .arg(&dir)
        .arg("--input")
        .arg(&input)
        .args(["--output", work.join("out.jsonl").to_str().unwrap(), "--precision", "bf16", "--explain", "ig"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && stderr.contains("drop --precision bf16") && !stderr.contains("panicked"), "{stderr}");
    let options = berth::ClassifierOptions { precision: berth::Precision::Bf16, device: berth::DeviceChoice::Cpu, ..Default::default() };
    let classifier = berth::Classifier::load_with(&dir, &options).unwrap();
    assert!(classifier.device_name().contains("bf16"), "{}", classifier.device_name());
    let err = classifier.explain(&["a line"], &Default::default()).unwrap_err().to_string();
    assert!(err.contains("drop --precision bf16"), "{err}");
}

//! Class imbalance and calibration (issue 7): the class-weight formulas, the
//! samplers' class distributions, focal loss against cross-entropy and on
//! the simulated device, threshold tuning and average precision against
//! scikit-learn, ECE on stored cases, temperature scaling, and `berth train`
//! end to end with every option, its report, and its bad-input errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use berth::autograd::Tape;
use berth::autograd::loss::{IGNORE_INDEX, bce_with_logits, bce_with_logits_weighted, cross_entropy, focal_cross_entropy, sigmoid_focal};
use berth::data::sampler::{Sampler, SamplerKind};
use berth::device::{DeviceBuffer, Elem};
use berth::device::{DeviceChoice, open};
use berth::metrics::best_f1_threshold;
use berth::metrics::calibration::{
    ECE_BINS, average_precision, ece_of_logits, fit_temperature, precision_recall_curve, reliability_bins, softmax_rows, top_label,
};
use berth::tensor::Tensor;
use berth::train::class_weights::ClassWeightSpec;
use serde_json::Value;

use crate::common::{fixture_dir, scratch_dir};

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn cases() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/imbalance/cases.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + b.abs())
}

// ---------------------------------------------------------------- class weights

/// The chapter's example: labels [0]*9000 + [1]*800 + [2]*200.
#[test]
fn r7_class_weight_formulas_on_the_chapter_example() {
    let labels = names(&["a", "b", "c"]);
    let counts = [9000, 800, 200];
    let round2 = |w: &[f64]| -> Vec<f64> { w.iter().map(|x| (x * 100.0).round() / 100.0).collect() };
    let sqrt = ClassWeightSpec::SqrtInverse.weights(&labels, &counts, 10_000, false).unwrap();
    // 1/√n scaled to mean 1. The chapter prints [0.58, 1.23, 2.46], which no
    // scaling of 1/√n gives: its first ratio, 1.23/0.58 = 2.12, should be
    // √(9000/800) = 3.35 (its second, 2.46/1.23 = 2 = √(800/200), agrees), and
    // its mean is 1.42, not the 1 the same chapter asks for. We follow the
    // formula and the normalisation, so the first two values differ.
    assert_eq!(round2(&sqrt), vec![0.27, 0.91, 1.82]);
    assert!(close(sqrt[2] / sqrt[1], 2.46 / 1.23, 1e-12), "the ratio the chapter's numbers do agree on");
    assert!(close(sqrt[1] / sqrt[0], (9000.0f64 / 800.0).sqrt(), 1e-12));
    assert!(close(sqrt.iter().sum::<f64>() / 3.0, 1.0, 1e-12));

    let inverse = ClassWeightSpec::Inverse.weights(&labels, &counts, 10_000, false).unwrap();
    assert_eq!(round2(&inverse), vec![0.05, 0.59, 2.36]);
    assert!(close(inverse[2] / inverse[0], 45.0, 1e-12));

    // effective[:beta] defaults to β = 0.9999: weights ∝ (1 − β)/(1 − β^n).
    let effective = ClassWeightSpec::parse("effective").unwrap().weights(&labels, &counts, 10_000, false).unwrap();
    let raw: Vec<f64> = counts.iter().map(|&n| (1.0 - 0.9999) / (1.0 - 0.9999f64.powi(n as i32))).collect();
    let mean = raw.iter().sum::<f64>() / 3.0;
    for (w, r) in effective.iter().zip(&raw) {
        assert!(close(*w, r / mean, 1e-12), "{effective:?}");
    }
    assert_eq!(round2(&effective), vec![0.08, 0.6, 2.32]);
    // A smaller beta counts fewer effective samples: the weights flatten.
    let flat = ClassWeightSpec::parse("effective:0.99").unwrap().weights(&labels, &counts, 10_000, false).unwrap();
    assert!(flat[2] / flat[0] < effective[2] / effective[0]);
}

#[test]
fn r7_multi_label_pos_weight_per_label() {
    // 1000 rows; label positives 500, 100, 10: inverse pos_weight ∝ negatives/positives.
    let labels = names(&["x", "y", "z"]);
    let w = ClassWeightSpec::Inverse.weights(&labels, &[500, 100, 10], 1000, true).unwrap();
    let raw = [1.0, 9.0, 99.0];
    let mean = raw.iter().sum::<f64>() / 3.0;
    for (got, r) in w.iter().zip(raw) {
        assert!(close(*got, r / mean, 1e-12), "{w:?}");
    }
}

// ---------------------------------------------------------------- samplers

fn imbalanced_classes() -> Vec<usize> {
    // 900 of class 0, 80 of class 1, 20 of class 2, interleaved.
    (0..1000)
        .map(|i| {
            if i % 50 == 7 {
                2
            } else if i % 25 == 3 || i % 25 == 11 {
                1
            } else {
                0
            }
        })
        .collect()
}

fn shares(indices: &[usize], classes: &[usize], k: usize) -> Vec<f64> {
    let mut counts = vec![0usize; k];
    indices.iter().for_each(|&i| counts[classes[i]] += 1);
    counts.iter().map(|&c| c as f64 / indices.len() as f64).collect()
}

#[test]
fn r7_weighted_sampler_draws_each_class_equally_often() {
    let classes = imbalanced_classes();
    let names3 = names(&["a", "b", "c"]);
    let counts = shares(&(0..classes.len()).collect::<Vec<_>>(), &classes, 3);
    assert!(close(counts[0], 0.9, 1e-12) && close(counts[1], 0.08, 1e-12) && close(counts[2], 0.02, 1e-12), "{counts:?}");
    let s = Sampler::new(&SamplerKind::parse("weighted").unwrap(), classes.len(), Some(&classes), &names3, None, 5).unwrap();
    assert_eq!(s.epoch_length(), 1000, "an epoch is as long as the data unless set");
    let drawn: Vec<usize> = (0..20).flat_map(|e| s.epoch(e)).collect();
    let got = shares(&drawn, &classes, 3);
    // 20,000 draws at 1/3 each: the standard error is 0.0033.
    for g in &got {
        assert!((g - 1.0 / 3.0).abs() < 0.015, "inverse-frequency draws balance the classes: {got:?}");
    }
    // Draws are with replacement: the rare class's 20 examples repeat.
    let rare: Vec<usize> = s.epoch(0).into_iter().filter(|&i| classes[i] == 2).collect();
    assert!(rare.len() > 250, "{}", rare.len());
    // Seeded: the same seed repeats an epoch exactly; another seed or epoch differs.
    assert_eq!(s.epoch(3), s.epoch(3));
    assert_ne!(s.epoch(3), s.epoch(4));
    let other = Sampler::new(&SamplerKind::parse("weighted").unwrap(), classes.len(), Some(&classes), &names3, None, 6).unwrap();
    assert_ne!(s.epoch(3), other.epoch(3));
}

#[test]
fn r7_weighted_sampler_to_a_target_ratio_and_a_set_epoch_length() {
    let classes = imbalanced_classes();
    let names3 = names(&["a", "b", "c"]);
    // weighted:3: no class below a third of the majority's draws: masses 900, 300, 300.
    let s = Sampler::new(&SamplerKind::parse("weighted:3").unwrap(), classes.len(), Some(&classes), &names3, Some(3000), 9).unwrap();
    assert_eq!(s.epoch_length(), 3000);
    let want = [0.6, 0.2, 0.2];
    for (e, w) in s.expected_shares().iter().zip(want) {
        assert!(close(*e, w, 1e-12));
    }
    let drawn: Vec<usize> = (0..8).flat_map(|e| s.epoch(e)).collect();
    assert_eq!(drawn.len(), 24_000);
    let got = shares(&drawn, &classes, 3);
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 0.015, "{got:?} against {want:?}");
    }
    assert!(s.describe(&names3).contains("epoch of 3000 examples"), "{}", s.describe(&names3));
}

#[test]
fn r7_undersampler_keeps_at_most_ratio_times_the_smallest_class() {
    let classes = imbalanced_classes();
    let names3 = names(&["a", "b", "c"]);
    let s = Sampler::new(&SamplerKind::parse("undersample:2").unwrap(), classes.len(), Some(&classes), &names3, None, 1).unwrap();
    // Caps at 2 × 20 = 40: 40 of a, 40 of b, all 20 of c.
    assert_eq!(s.epoch_length(), 100);
    for epoch in 0..3 {
        let e = s.epoch(epoch);
        let mut counts = [0usize; 3];
        e.iter().for_each(|&i| counts[classes[i]] += 1);
        assert_eq!(counts, [40, 40, 20], "epoch {epoch}");
        let mut unique = e.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 100, "no example twice within an epoch");
    }
    // A fresh subset of the majority each epoch.
    let majority = |e: u64| -> Vec<usize> {
        let mut v: Vec<usize> = s.epoch(e).into_iter().filter(|&i| classes[i] == 0).collect();
        v.sort();
        v
    };
    assert_ne!(majority(0), majority(1));
    assert_eq!(s.epoch(2), s.epoch(2));
}

#[test]
fn r7_an_undersampling_ratio_that_empties_the_classes_is_an_error() {
    let classes = imbalanced_classes();
    let names3 = names(&["ham", "spam", "scam"]);
    // 0.04 × 20 < 1: every class would keep nothing.
    let e = Sampler::new(&SamplerKind::parse("undersample:0.04").unwrap(), classes.len(), Some(&classes), &names3, None, 1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("undersample:0.04") && e.contains("empty") && e.contains("`scam`") && e.contains("20"), "{e}");
    // A class with no examples at all.
    let none: Vec<usize> = classes.iter().map(|&c| if c == 2 { 0 } else { c }).collect();
    let e = Sampler::new(&SamplerKind::parse("undersample").unwrap(), none.len(), Some(&none), &names3, None, 1).unwrap_err().to_string();
    assert!(e.contains("`scam` has no training examples"), "{e}");
}

// ---------------------------------------------------------------- focal loss

fn random(seed: u64, n: usize, scale: f64) -> Vec<f64> {
    (0..n as u64).map(|i| berth::rng::normal(seed, 77, i) * scale).collect()
}

/// (loss, dlogits) of a loss through the tape on the CPU.
fn through_tape(x: Tensor, f: impl Fn(&mut Tape, berth::autograd::Var) -> berth::Result<berth::autograd::Var>) -> (f64, Vec<f64>) {
    let mut tape = Tape::new();
    let v = tape.leaf(x, true);
    let loss = f(&mut tape, v).unwrap();
    let value = tape.value(loss).to_f64_vec()[0];
    let g = tape.backward(loss).unwrap().get(v).unwrap().to_f64_vec();
    (value, g)
}

#[test]
fn r7_focal_with_gamma_zero_is_cross_entropy_exactly() {
    let targets = [3i64, 0, IGNORE_INDEX, 1, 1, 2];
    let weights = [0.4, 1.7, 1.0, 2.5];
    let x = random(1, 24, 3.0);
    for dtype_f32 in [false, true] {
        let t = if dtype_f32 {
            Tensor::from_vec(x.iter().map(|&v| v as f32).collect::<Vec<f32>>(), &[6, 4]).unwrap()
        } else {
            Tensor::from_vec(x.clone(), &[6, 4]).unwrap()
        };
        for w in [None, Some(&weights[..])] {
            let ce = through_tape(t.clone(), |tape, v| cross_entropy(tape, v, &targets, w));
            let focal = through_tape(t.clone(), |tape, v| focal_cross_entropy(tape, v, &targets, 0.0, w));
            assert_eq!(focal, ce, "f32 {dtype_f32}, weights {}: bit for bit", w.is_some());
        }
        // And a gamma > 0 is not cross-entropy: it down-weights easy rows.
        let ce = through_tape(t.clone(), |tape, v| cross_entropy(tape, v, &targets, None));
        let focal = through_tape(t.clone(), |tape, v| focal_cross_entropy(tape, v, &targets, 2.0, None));
        assert!(focal.0 < ce.0, "{} vs {}", focal.0, ce.0);
    }
    // Sigmoid focal at gamma 0 without alpha is BCE, plain or with pos_weight.
    let y: Vec<f64> = random(2, 24, 1.0).iter().map(|v| if *v > 0.0 { 1.0 } else { 0.0 }).collect();
    let t = Tensor::from_vec(x, &[6, 4]).unwrap();
    let bce = through_tape(t.clone(), |tape, v| bce_with_logits(tape, v, &y));
    assert_eq!(through_tape(t.clone(), |tape, v| sigmoid_focal(tape, v, &y, 0.0, None, None)), bce);
    let bce_w = through_tape(t.clone(), |tape, v| bce_with_logits_weighted(tape, v, &y, &weights));
    assert_eq!(through_tape(t, |tape, v| sigmoid_focal(tape, v, &y, 0.0, None, Some(&weights))), bce_w);
}

#[test]
fn r7_focal_gamma_below_zero_is_refused_by_the_op() {
    let mut tape = Tape::new();
    let v = tape.leaf(Tensor::from_vec(vec![0.5f64, -0.5], &[1, 2]).unwrap(), true);
    let e = focal_cross_entropy(&mut tape, v, &[1], -1.0, None).unwrap_err().to_string();
    assert!(e.contains("gamma") && e.contains("-1"), "{e}");
    let e = sigmoid_focal(&mut tape, v, &[1.0, 0.0], f64::NAN, None, None).unwrap_err().to_string();
    assert!(e.contains("gamma"), "{e}");
}

/// The tape's focal losses on the simulated device (the CUDA kernels compiled
/// as C++) give the CPU's loss and gradient.
#[test]
fn r7_focal_losses_on_the_simulated_device_match_the_cpu() {
    let device = open(DeviceChoice::Sim).unwrap().expect("the simulated device");
    let (rows, classes) = (37, 5);
    let x = random(3, rows * classes, 2.5);
    let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let targets: Vec<i64> = (0..rows).map(|i| if i % 7 == 3 { IGNORE_INDEX } else { (i * 3 % classes) as i64 }).collect();
    let soft: Vec<f64> = random(4, rows * classes, 1.0).iter().map(|v| if *v > 0.3 { 1.0 } else { 0.0 }).collect();
    let alpha = [0.5, 1.5, 1.0, 3.0, 0.25];
    let on_device = || Tensor::from_device(DeviceBuffer::from_f32(&device, &x32, Elem::F32).unwrap(), &[rows, classes]).unwrap();
    let on_cpu = || Tensor::from_vec(x32.clone(), &[rows, classes]).unwrap();
    type LossFn<'a> = Box<dyn Fn(&mut Tape, berth::autograd::Var) -> berth::Result<berth::autograd::Var> + 'a>;
    let cases: Vec<(&str, LossFn)> = vec![
        ("softmax focal γ2", Box::new(|t, v| focal_cross_entropy(t, v, &targets, 2.0, None))),
        ("softmax focal γ0.5 alpha", Box::new(|t, v| focal_cross_entropy(t, v, &targets, 0.5, Some(&alpha)))),
        ("sigmoid focal γ2 α0.25", Box::new(|t, v| sigmoid_focal(t, v, &soft, 2.0, Some(0.25), None))),
        ("sigmoid focal γ1 pos_weight", Box::new(|t, v| sigmoid_focal(t, v, &soft, 1.0, None, Some(&alpha)))),
        ("bce pos_weight", Box::new(|t, v| bce_with_logits_weighted(t, v, &soft, &alpha))),
    ];
    for (name, f) in cases {
        let (cpu_loss, cpu_grad) = through_tape(on_cpu(), &f);
        let (dev_loss, dev_grad) = through_tape(on_device(), &f);
        assert!(close(dev_loss, cpu_loss, 1e-5), "{name}: loss {dev_loss} on the device, {cpu_loss} on the CPU");
        let e = crate::common::rel_error(&dev_grad, &cpu_grad);
        assert!(e <= 1e-5, "{name}: gradient relative error {e:e}");
    }
}

// ---------------------------------------------------------------- thresholds and calibration

#[test]
fn r7_binary_threshold_and_average_precision_match_scikit_learn() {
    let cases = cases();
    for case in cases["threshold"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let y: Vec<bool> = case["y_true"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap() == 1).collect();
        let scores = floats(&case["scores"]);
        let (p, r, t) = precision_recall_curve(&scores, &y);
        let (want_p, want_r, want_t) = (floats(&case["precision"]), floats(&case["recall"]), floats(&case["thresholds"]));
        assert_eq!(t.len(), want_t.len(), "{name}: thresholds");
        assert!(p.iter().zip(&want_p).all(|(a, b)| close(*a, *b, 1e-12)), "{name}: precision");
        assert!(r.iter().zip(&want_r).all(|(a, b)| close(*a, *b, 1e-12)), "{name}: recall");
        assert!(t.iter().zip(&want_t).all(|(a, b)| a == b), "{name}: thresholds");
        let (threshold, f1) = best_f1_threshold(&scores, &y).unwrap();
        assert_eq!(threshold, case["best_threshold"].as_f64().unwrap(), "{name}: best threshold");
        assert!(close(f1, case["best_f1"].as_f64().unwrap(), 1e-12), "{name}: best F1");
        let ap = average_precision(&scores, &y);
        assert!(close(ap, case["average_precision"].as_f64().unwrap(), 1e-12), "{name}: AP {ap}");
    }
}

#[test]
fn r7_ece_matches_the_stored_cases() {
    let cases = cases();
    for case in cases["ece"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let logits: Vec<Vec<f64>> = case["logits"].as_array().unwrap().iter().map(floats).collect();
        let labels: Vec<usize> = case["labels"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        let ece = ece_of_logits(&logits, &labels, 1.0);
        assert!(close(ece, case["ece"].as_f64().unwrap(), 1e-12), "{name}: ECE {ece}");
        let (conf, correct) = top_label(&softmax_rows(&logits, 1.0), &labels);
        let bins = reliability_bins(&conf, &correct, ECE_BINS);
        for (b, want) in bins.iter().zip(case["bins"].as_array().unwrap()) {
            assert_eq!(b.count as u64, want["count"].as_u64().unwrap(), "{name}");
            assert!(close(b.accuracy, want["accuracy"].as_f64().unwrap(), 1e-12), "{name}");
            assert!(close(b.confidence, want["confidence"].as_f64().unwrap(), 1e-12), "{name}");
        }
    }
}

#[test]
fn r7_temperature_scaling_lowers_ece_on_miscalibrated_cases() {
    let cases = cases();
    for case in cases["ece"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let logits: Vec<Vec<f64>> = case["logits"].as_array().unwrap().iter().map(floats).collect();
        let labels: Vec<usize> = case["labels"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        let t = fit_temperature(&logits, &labels);
        let (before, after) = (ece_of_logits(&logits, &labels, 1.0), ece_of_logits(&logits, &labels, t));
        assert!(after < 0.5 * before, "{name}: T {t}: ECE {before} -> {after}");
        // The logits were scaled by s from calibrated ones: T lands near s.
        if name.contains("over") {
            assert!(t > 1.5, "{name}: an overconfident model is cooled (T {t})");
        } else {
            assert!(t < 0.7, "{name}: an underconfident model is sharpened (T {t})");
        }
        // The argmax, so the accuracy, does not move.
        let (_, c1) = top_label(&softmax_rows(&logits, 1.0), &labels);
        let (_, c2) = top_label(&softmax_rows(&logits, t), &labels);
        assert_eq!(c1, c2);
    }
}

// ---------------------------------------------------------------- berth train end to end

fn berth() -> Command {
    Command::new(env!("CARGO_BIN_EXE_berth"))
}

const HAM: [&str; 6] = ["meeting", "lunch", "report", "family", "homework", "garden"];
const SPAM: [&str; 6] = ["prize", "lottery", "casino", "discount", "winner", "cash"];

/// `Label<TAB>SMS` rows, one spam in every `every`.
fn sms_rows(start: usize, n: usize, every: usize) -> String {
    let mut out = String::from("Label\tSMS\n");
    for i in start..start + n {
        let (label, words) = if i % every == 0 { ("spam", SPAM) } else { ("ham", HAM) };
        out.push_str(&format!("{label}\tabout the {} and {} today {i}\n", words[i % 6], words[(i / 6) % 6]));
    }
    out
}

fn train(model: &Path, dir: &Path, extra: &[&str]) -> Output {
    let (tr, dev) = (dir.join("train.tsv"), dir.join("dev.tsv"));
    if !tr.exists() {
        std::fs::write(&tr, sms_rows(0, 80, 8)).unwrap();
        std::fs::write(&dev, sms_rows(500, 40, 5)).unwrap();
    }
    berth()
        .arg("train")
        .arg("--model")
        .arg(model)
        .arg("--train")
        .arg(&tr)
        .arg("--eval")
        .arg(&dev)
        .args(["--text-column", "SMS", "--label-column", "Label", "--device", "cpu", "--max-length", "24", "--batch-size", "8"])
        .args(["--lr", "1e-3", "--seed", "3", "--logging-steps", "2"])
        .args(extra)
        .output()
        .unwrap()
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

#[test]
fn r7_train_with_weights_sampler_focal_threshold_and_calibration() {
    let Some(model) = fixture_dir("a-seqcls") else { return };
    let dir = scratch_dir("r7-train");
    let out = dir.join("out");
    let run = train(
        &model,
        &dir,
        &[
            "--output",
            out.to_str().unwrap(),
            "--epochs",
            "2",
            "--class-weights",
            "sqrt-inverse",
            "--sampler",
            "weighted",
            "--epoch-length",
            "48",
            "--loss",
            "focal",
            "--focal-gamma",
            "1",
            "--tune-threshold",
            "--calibrate",
        ],
    );
    let err = stderr_of(&run);
    assert!(run.status.success() && !err.contains("panicked"), "{err}");
    // 70 ham, 10 spam: 1/√n scaled to mean 1, printed with two decimals beside each label.
    let (h, s) = (1.0 / 70f64.sqrt(), 1.0 / 10f64.sqrt());
    let want = format!("class weights (sqrt-inverse): ham {:.2}, spam {:.2}", 2.0 * h / (h + s), 2.0 * s / (h + s));
    assert!(err.contains(&want), "expected `{want}` in:\n{err}");
    assert!(err.contains("loss: focal (gamma 1)"), "{err}");
    assert!(err.contains("sampler: weighted:1, epoch of 48 examples"), "{err}");
    assert!(err.contains("plan: 12 optimizer steps (6 per epoch"), "the set epoch length fixes the steps: {err}");
    assert!(err.contains("temperature") && err.contains("threshold"), "{err}");

    let settings = read_json(&out.join("berth-inference.json"));
    let threshold = settings["threshold"].as_f64().expect("a tuned threshold");
    let temperature = settings["temperature"].as_f64().expect("a fitted temperature");
    assert!((0.0..=1.0).contains(&threshold) && temperature > 0.0, "{settings}");
    let metrics = read_json(&out.join("metrics.json"));
    for key in ["ece", "ece_before_calibration", "temperature", "threshold", "average_precision", "argmax"] {
        assert!(metrics.get(key).is_some(), "metrics.json lacks `{key}`: {metrics}");
    }
    assert!(metrics["ece"].as_f64().unwrap() <= metrics["ece_before_calibration"].as_f64().unwrap() + 1e-12);

    // predict: probabilities are softmax(logits / T); the label is spam iff P(spam) ≥ threshold.
    let input = dir.join("input.txt");
    std::fs::write(&input, "about the prize and cash today\nabout the lunch and garden today\nabout the casino and report today\n")
        .unwrap();
    let pred = berth().args(["predict", "--device", "cpu", "--model"]).arg(&out).arg("--input").arg(&input).output().unwrap();
    assert!(pred.status.success(), "{}", stderr_of(&pred));
    for line in String::from_utf8_lossy(&pred.stdout).lines() {
        let p: Value = serde_json::from_str(line).unwrap();
        let logits = floats(&p["logits"]);
        let probs = floats(&p["probabilities"]);
        let want = softmax_rows(&[logits], temperature).remove(0);
        assert!(probs.iter().zip(&want).all(|(a, b)| close(*a, *b, 1e-9)), "{line}");
        let label = if probs[1] >= threshold { "spam" } else { "ham" };
        assert_eq!(p["label"], label, "{line}");
    }

    // eval applies the same decision as predict.
    let mut ev = berth();
    ev.args(["eval", "--device", "cpu", "--text-column", "SMS", "--label-column", "Label", "--max-length", "24", "--model"]);
    let ev = ev.arg(&out).arg("--data").arg(dir.join("dev.tsv")).arg("--output").arg(dir.join("eval.json")).output().unwrap();
    assert!(ev.status.success(), "{}", stderr_of(&ev));
    let e = read_json(&dir.join("eval.json"));
    assert_eq!(e["threshold"], metrics["threshold"]);
    assert_eq!(e["spam"]["f1-score"], metrics["spam"]["f1-score"]);

    // The report and its charts.
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    for part in [
        "| class |",
        "**spam** ⚠ minority",
        "macro avg",
        "micro avg",
        "weighted avg",
        "ECE",
        "Average precision",
        "plots/training_curves.svg",
    ] {
        assert!(report.contains(part), "report.md lacks `{part}`:\n{report}");
    }
    for chart in ["confusion_matrix", "training_curves", "pr_curve", "reliability"] {
        let svg = std::fs::read_to_string(out.join(format!("plots/{chart}.svg"))).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>") && svg.contains("<text"), "{chart}");
        assert!(report.contains(&format!("plots/{chart}.svg")), "report.md embeds {chart}");
    }
    let cm = metrics["confusion_matrix"].as_array().unwrap();
    let svg = std::fs::read_to_string(out.join("plots/confusion_matrix.svg")).unwrap();
    for count in cm.iter().flat_map(|row| row.as_array().unwrap()) {
        assert!(svg.contains(&format!(">{}</text>", count.as_u64().unwrap())), "the heatmap shows every count");
    }
}

#[test]
fn r7_bad_imbalance_options_fail_with_clear_errors() {
    let Some(model) = fixture_dir("a-seqcls") else { return };
    let dir = scratch_dir("r7-bad");
    let out = dir.join("out");
    let o = out.to_str().unwrap();
    let weights = |name: &str, text: &str| -> String {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        (vec!["--class-weights".into(), weights("three.txt", "1\n2\n3\n")], vec!["three.txt:3", "more weights than classes", "ham, spam"]),
        (vec!["--class-weights".into(), weights("one.txt", "# ham only\n1.5\n")], vec!["one.txt", "1 weights for 2 classes"]),
        (vec!["--class-weights".into(), weights("neg.txt", "ham 1\nspam -2\n")], vec!["neg.txt:2", "`weight`", "not negative", "-2"]),
        (vec!["--class-weights".into(), weights("nan.txt", "1\nNaN\n")], vec!["nan.txt:2", "`weight`", "finite", "NaN"]),
        (vec!["--class-weights".into(), weights("name.txt", "ham 1\nscam 2\n")], vec!["name.txt:2", "unknown label `scam`"]),
        (vec!["--loss".into(), "focal".into(), "--focal-gamma".into(), "-0.5".into()], vec!["--focal-gamma", "-0.5", "≥ 0"]),
        (vec!["--sampler".into(), "undersample:0.05".into()], vec!["undersample:0.05", "empty", "`spam`"]),
        (vec!["--focal-alpha".into(), "0.3".into()], vec!["--loss focal"]),
        (vec!["--loss".into(), "focal".into(), "--focal-alpha".into(), "0.2,0.3,0.5".into()], vec!["3 values for 2 classes"]),
        (vec!["--sampler".into(), "weighted:0.5".into()], vec!["--sampler", "at least 1"]),
    ];
    for (extra, wants) in cases {
        let mut args: Vec<&str> = vec!["--output", o, "--max-steps", "1"];
        args.extend(extra.iter().map(String::as_str));
        let run = train(&model, &dir, &args);
        let err = stderr_of(&run);
        assert!(!run.status.success(), "{extra:?} should fail");
        assert!(!err.contains("panicked"), "{extra:?} panicked:\n{err}");
        for w in wants {
            assert!(err.contains(w), "{extra:?}: the error should mention `{w}`:\n{err}");
        }
        assert!(!out.join("model.safetensors").exists(), "{extra:?}: nothing is saved");
    }
}

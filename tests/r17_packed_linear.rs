//! Issue 17: the f32 inference linear layer with its weight packed at load
//! (`backend/cpu/packed_linear.rs`). Every path this CPU has against an f64
//! reference and against each other (the same bits), on ragged shapes; the
//! fused GELU and residual epilogues against the ops they replace; and the
//! encoder on the packed inference cache against the gemm crate's.

use berth::autograd::Tape;
use berth::backend::cpu::activation::gelu_fwd;
use berth::backend::cpu::packed_linear::{Epilogue, PackedLinear, PackedPath, fast_path, linear_packed_with};
use berth::model::ForwardMode;
use berth::model::params::WeightCache;

use crate::common::rel_error;

fn values(n: usize, seed: u64, scale: f64) -> Vec<f32> {
    (0..n as u64).map(|i| (berth::rng::normal(seed, 5, i) * scale) as f32).collect()
}

/// The paths to test here, and a SKIP line for each one this CPU lacks.
fn paths_here() -> Vec<PackedPath> {
    let mut paths = vec![PackedPath::Portable];
    if PackedPath::Avx512.available() {
        paths.push(PackedPath::Avx512);
    } else {
        eprintln!("SKIP packed linear path avx512: this CPU lacks AVX-512F");
    }
    paths
}

/// (N, K, out): T = 1, rows not a multiple of 6 (micro-kernel rows) or of
/// 96 (task rows), outputs not a multiple of 16 or 64 (panel), inputs past
/// one block of 768 (so partial sums are stored and reloaded).
const SHAPES: [(usize, usize, usize); 7] =
    [(1, 1, 1), (1, 5, 3), (7, 13, 70), (13, 384, 130), (100, 97, 64), (203, 1536, 65), (5, 769, 17)];

#[test]
fn r17_packed_linear_equals_the_f64_product_and_gives_the_same_bits_on_every_path() {
    for (n, k, out) in SHAPES {
        let (x, w, bias) = (values(n * k, 1, 1.0), values(out * k, 2, 0.05), values(out, 3, 0.1));
        let packed = PackedLinear::pack("w", &w, out, k).unwrap();
        let mut first: Option<Vec<f32>> = None;
        for path in paths_here() {
            let y = linear_packed_with(&x, n, &packed, Some(&bias), Epilogue::Plain, path).unwrap();
            assert_eq!(y.len(), n * out);
            // f64 reference, with a bound from the sum of |terms| (f32 rounding of K products).
            for r in 0..n {
                for o in 0..out {
                    let terms = (0..k).map(|i| x[r * k + i] as f64 * w[o * k + i] as f64);
                    let (exact, size) = terms.fold((bias[o] as f64, bias[o].abs() as f64), |(s, m), t| (s + t, m + t.abs()));
                    let got = y[r * out + o] as f64;
                    let bound = (k as f64 + 2.0) * f32::EPSILON as f64 * size + 1e-30;
                    assert!((got - exact).abs() <= bound, "{} ({n},{k},{out}) y[{r},{o}] = {got}, f64 {exact}", path.name());
                }
            }
            match &first {
                None => first = Some(y),
                Some(reference) => {
                    let differing = y.iter().zip(reference).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
                    assert_eq!(differing, 0, "{} ({n},{k},{out}): {differing} values differ from the portable path", path.name());
                }
            }
        }
    }
}

#[test]
fn r17_packed_linear_epilogues_equal_the_ops_they_replace_bit_for_bit() {
    for (n, k, out) in SHAPES {
        let (x, w, bias, residual) = (values(n * k, 4, 1.0), values(out * k, 5, 0.1), values(out, 6, 0.1), values(n * out, 7, 1.0));
        let packed = PackedLinear::pack("w", &w, out, k).unwrap();
        for path in paths_here() {
            let plain = linear_packed_with(&x, n, &packed, Some(&bias), Epilogue::Plain, path).unwrap();
            let gelu = linear_packed_with(&x, n, &packed, Some(&bias), Epilogue::Gelu, path).unwrap();
            let added = linear_packed_with(&x, n, &packed, Some(&bias), Epilogue::Residual(&residual), path).unwrap();
            let expected_gelu = gelu_fwd(&plain);
            let expected_added: Vec<f32> = plain.iter().zip(&residual).map(|(a, b)| a + b).collect();
            let bits = |a: &[f32], b: &[f32]| a.iter().zip(b).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
            assert_eq!(bits(&gelu, &expected_gelu), 0, "{} ({n},{k},{out}): GELU epilogue", path.name());
            assert_eq!(bits(&added, &expected_added), 0, "{} ({n},{k},{out}): residual epilogue", path.name());
            // Without a bias: the product alone.
            let no_bias = linear_packed_with(&x, n, &packed, None, Epilogue::Plain, path).unwrap();
            let moved = no_bias
                .iter()
                .zip(&plain)
                .enumerate()
                .filter(|(i, (a, b))| ((*a + bias[i % out]) - **b).abs() > 1e-5 * (1.0 + b.abs()))
                .count();
            assert_eq!(moved, 0, "{} ({n},{k},{out}): the bias is added once", path.name());
        }
    }
    // Wrong shapes are errors naming the op, not panics.
    let packed = PackedLinear::pack("w", &[0.5; 12], 3, 4).unwrap();
    let err = linear_packed_with(&[1.0; 7], 2, &packed, None, Epilogue::Plain, PackedPath::Portable).unwrap_err().to_string();
    assert!(err.contains("linear_packed"), "{err}");
    let err = linear_packed_with(&[1.0; 8], 2, &packed, None, Epilogue::Residual(&[0.0; 5]), PackedPath::Portable).unwrap_err().to_string();
    assert!(err.contains("residual") && err.contains("(2, 3)"), "{err}");
    let err = linear_packed_with(&[1.0; 8], 2, &packed, Some(&[0.0; 2]), Epilogue::Plain, PackedPath::Portable).unwrap_err().to_string();
    assert!(err.contains("linear_packed"), "{err}");
    let err = PackedLinear::pack("layer.2.w", &[0.5; 11], 3, 4).unwrap_err().to_string();
    assert!(err.contains("layer.2.w"), "{err}");
}

/// The encoder on the inference cache (fused q|k|v, f32 weights packed where
/// the CPU has AVX-512) against the gemm crate's transposed weights: the
/// same values to rounding, the packed ops really running (GELU and both
/// residual connections in their epilogues), and a tape with gradients
/// handed the same cache running the ordinary ops.
#[test]
fn r17_packed_inference_cache_matches_the_gemm_path_and_stays_off_tapes_with_gradients() {
    let Some((model, batch)) = crate::r17_int8::minilm_and_sentences() else { return };
    let layers = model.config.num_hidden_layers;
    let cache = model.inference_cache(berth::Precision::Fp32).unwrap();
    let run = |tape: &mut Tape, cache: &WeightCache| {
        tape.enable_profile();
        let out = model.forward_cached(tape, &batch, ForwardMode::eval().skipping_padding(), Some(cache)).unwrap();
        let profile = tape.profile().unwrap();
        let calls: std::collections::BTreeMap<String, usize> = profile.forward.iter().map(|(op, t)| (op.to_string(), t.calls)).collect();
        ([*out.hidden_states.last().unwrap(), out.pooled.unwrap()].map(|v| tape.value(v).to_f64_vec()), calls)
    };
    let (gemm, gemm_calls) = run(&mut Tape::no_grad(), &WeightCache::build(&model.params).unwrap());
    let (packed, packed_calls) = run(&mut Tape::no_grad(), &cache);
    for (which, (p, g)) in ["last hidden state", "pooled output"].iter().zip(packed.iter().zip(&gemm)) {
        let error = rel_error(p, g);
        assert!(error < 1e-5, "{which}: the packed cache moved ‖Δ‖/‖x‖ by {error}");
    }
    let count = |calls: &std::collections::BTreeMap<String, usize>, op: &str| calls.get(op).copied().unwrap_or(0);
    match fast_path() {
        Some(_) => {
            // Per layer 3 weights and the fused q|k|v one, then the pooler's
            // and the classifier's (which the heads read through their own op).
            assert_eq!(cache.packed_f32_count(), 4 * layers + 2);
            assert_eq!(count(&packed_calls, "linear_packed"), layers, "the fused q|k|v projection: {packed_calls:?}");
            assert_eq!(count(&packed_calls, "linear_packed_gelu"), layers, "{packed_calls:?}");
            assert_eq!(count(&packed_calls, "linear_packed_residual"), 2 * layers, "{packed_calls:?}");
            assert_eq!((count(&packed_calls, "gelu"), count(&packed_calls, "add")), (0, 0), "{packed_calls:?}");
            assert_eq!(count(&gemm_calls, "add"), 2 * layers);
        }
        None => {
            eprintln!("SKIP packed f32 inference cache: no AVX-512F here (or BERTH_CPU_LINEAR=gemm); the gemm crate runs");
            assert_eq!(cache.packed_f32_count(), 0);
        }
    }
    let mut tape = Tape::new();
    let (with_grads, grad_calls) = run(&mut tape, &cache);
    assert!(!grad_calls.keys().any(|op| op.starts_with("linear_packed")), "a tape with gradients ran a packed op: {grad_calls:?}");
    assert!(rel_error(&with_grads[1], &packed[1]) < 1e-5);
}

/// Training's per-step cache packs the f32 weights too (where the CPU
/// packs them): the forward products come from the packed kernel, the
/// backward is the ordinary op's. A dropout-on training step gives the
/// loss and every parameter's gradient of the gemm crate's path (the
/// transposed cache) to rounding, through the same ops on the tape.
#[test]
fn r17_training_on_the_packed_cache_gives_the_gemm_paths_loss_and_gradients() {
    let Some((model, batch)) = crate::r17_int8::minilm_and_sentences() else { return };
    let labels = berth::model::Labels::SingleLabel((0..batch.batch_size as i64).map(|i| i % 2).collect());
    let step = |cache: &WeightCache| {
        let mut tape = Tape::new();
        tape.enable_profile();
        let out = model.forward_cached(&mut tape, &batch, ForwardMode::train(3).skipping_padding(), Some(cache)).unwrap();
        let loss = model.loss(&mut tape, out.logits, &labels, None).unwrap();
        let loss_value = tape.value(loss).to_f64_vec()[0];
        let ops: Vec<String> = tape.profile().unwrap().forward.keys().map(|op| op.to_string()).collect();
        let grads = tape.backward(loss).unwrap();
        let grads: Vec<Vec<f64>> = out.params.iter().map(|&p| grads.get(p).map(|g| g.to_f64_vec()).unwrap_or_default()).collect();
        (loss_value, grads, ops)
    };
    let packed_cache = model.weight_cache().unwrap();
    match fast_path() {
        // Per layer q, k, v, attention output, feed-forward in and out, then pooler and classifier.
        Some(_) => assert_eq!(packed_cache.packed_f32_count(), 6 * model.config.num_hidden_layers + 2),
        None => eprintln!("SKIP packed training cache: no AVX-512F here (or BERTH_CPU_LINEAR=gemm)"),
    }
    let (packed_loss, packed_grads, packed_ops) = step(&packed_cache);
    let (gemm_loss, gemm_grads, gemm_ops) = step(&WeightCache::build(&model.params).unwrap());
    assert_eq!(packed_ops, gemm_ops, "the same ops on the tape");
    assert!((packed_loss - gemm_loss).abs() <= 1e-6 * gemm_loss.abs(), "loss {packed_loss} against {gemm_loss}");
    let names: Vec<&str> = model.params.iter().map(|(name, _)| name).collect();
    assert_eq!(names.len(), packed_grads.len());
    let mut compared = 0;
    for ((name, p), g) in names.iter().zip(&packed_grads).zip(&gemm_grads) {
        assert_eq!(p.len(), g.len(), "{name}: a gradient on one path only");
        // The key bias adds the same q·b to every score of a query, which
        // the softmax cancels: its gradient is zero up to rounding on both
        // paths, so their relative difference says nothing.
        if name.ends_with("attention.self.key.bias") || g.iter().all(|v| *v == 0.0) {
            continue;
        }
        let error = rel_error(p, g);
        assert!(error < 1e-4, "{name}: gradient ‖Δ‖/‖g‖ = {error}");
        compared += 1;
    }
    assert!(compared > 6 * model.config.num_hidden_layers, "only {compared} gradients compared");
    // An INT8 weight has no gradient: the trainable packed op refuses it.
    let int8 = berth::backend::PackedWeight::Int8(berth::backend::QuantizedLinear::quantize("w", &[0.5; 6], 2, 3).unwrap());
    let mut tape = Tape::new();
    let x = tape.leaf(berth::tensor::Tensor::from_vec(vec![1f32; 3], &[1, 3]).unwrap(), true);
    let w = tape.leaf(berth::tensor::Tensor::from_vec(vec![0.5f32; 6], &[2, 3]).unwrap(), true);
    let err = berth::autograd::linear::linear_from_packed(&mut tape, x, w, None, &int8).unwrap_err().to_string();
    assert!(err.contains("INT8") && err.contains("no gradient"), "{err}");
}

//! Issue 16: the backend interface. Attention and the embeddings are one op
//! on every backend; on the CPU they are composed from the CPU's pieces and
//! must equal those pieces recorded one by one, bit for bit, forward and
//! backward. An op a backend does not offer is a typed error naming the op
//! and the backend.

use std::sync::Arc;

use berth::autograd::attention::{attention, masked_softmax, merge_heads, split_heads};
use berth::autograd::basic::{DropoutKey, add, dropout, geglu, scale};
use berth::autograd::embedding::{embedding, embeddings_ln};
use berth::autograd::linear::batched_matmul_op;
use berth::autograd::norm::layer_norm;
use berth::autograd::rotary::rotary;
use berth::autograd::rows::gather_rows;
use berth::autograd::{Tape, Var};
use berth::device::{DeviceChoice, open};
use berth::tensor::{Precision, Tensor};
use berth::{Error, backend};

use crate::gradcheck::check_op;

/// Deterministic values in (−1, 1), as f32 or f64.
fn values(seed: u64, n: usize) -> Vec<f64> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect()
}

fn tensor_f32(seed: u64, shape: &[usize]) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(values(seed, n).into_iter().map(|v| v as f32).collect::<Vec<f32>>(), shape).unwrap()
}

fn tensor_f64(seed: u64, shape: &[usize]) -> Tensor {
    Tensor::from_vec(values(seed, shape.iter().product()), shape).unwrap()
}

/// Bits of an f32 tensor, for exact comparison (NaN-safe, −0 ≠ +0).
fn bits(t: &Tensor) -> Vec<u32> {
    t.data::<f32>().unwrap().iter().map(|v| v.to_bits()).collect()
}

/// A padded batch's key mask: sequences of `lens` tokens padded to `t`.
fn mask_of(lens: &[usize], t: usize) -> Vec<u8> {
    lens.iter().flat_map(|&l| (0..t).map(move |i| u8::from(i < l))).collect()
}

/// The CPU's attention pieces, recorded one by one (the encoder's path
/// before issue 16).
fn attention_by_pieces(
    tape: &mut Tape,
    (q, k, v): (Var, Var, Var),
    mask: &[u8],
    heads: usize,
    s: f64,
    drop: Option<(f64, DropoutKey)>,
) -> Var {
    let (q, k, v) = (split_heads(tape, q, heads).unwrap(), split_heads(tape, k, heads).unwrap(), split_heads(tape, v, heads).unwrap());
    let scores = batched_matmul_op(tape, q, k, false, true).unwrap();
    let scores = scale(tape, scores, s).unwrap();
    let probs = masked_softmax(tape, scores, mask).unwrap();
    let probs = match drop {
        Some((p, key)) => dropout(tape, probs, p, Some(key)).unwrap(),
        None => probs,
    };
    let context = batched_matmul_op(tape, probs, v, false, false).unwrap();
    merge_heads(tape, context).unwrap()
}

/// Output and input gradients of `build` on fresh leaves, for an upstream gradient `seed`.
fn run_with_grads(inputs: &[Tensor], seed: &Tensor, build: impl Fn(&mut Tape, &[Var]) -> Var) -> (Tensor, Vec<Tensor>) {
    let mut tape = Tape::new();
    let vars: Vec<Var> = inputs.iter().map(|t| tape.leaf(t.clone(), true)).collect();
    let out = build(&mut tape, &vars);
    let value = tape.value(out).clone();
    let grads = tape.backward_with(out, seed.clone()).unwrap();
    (value, vars.iter().map(|v| grads.get(*v).expect("every input gets a gradient").clone()).collect())
}

#[test]
fn r16_fused_cpu_attention_equals_its_pieces_bit_for_bit() {
    // Three sequences of 5, 2 and 0 real tokens padded to 5; two heads of 4.
    let (b, t, heads, d) = (3, 5, 2, 4);
    let mask = mask_of(&[5, 2, 0], t);
    let inputs: Vec<Tensor> = (0..3).map(|i| tensor_f32(100 + i, &[b, t, heads * d])).collect();
    let upstream = tensor_f32(200, &[b, t, heads * d]);
    for drop in [None, Some((0.25, DropoutKey { seed: 9, stream: 4 }))] {
        let (fused, fused_grads) =
            run_with_grads(&inputs, &upstream, |tape, v| attention(tape, (v[0], v[1], v[2]), &mask, heads, 0.5, drop).unwrap());
        let (pieces, piece_grads) =
            run_with_grads(&inputs, &upstream, |tape, v| attention_by_pieces(tape, (v[0], v[1], v[2]), &mask, heads, 0.5, drop));
        assert_eq!(bits(&fused), bits(&pieces), "attention forward (dropout {drop:?})");
        for (i, (a, p)) in fused_grads.iter().zip(&piece_grads).enumerate() {
            assert_eq!(bits(a), bits(p), "gradient of input {i} (dropout {drop:?})");
        }
        assert!(fused_grads.iter().all(|g| g.to_f64_vec().iter().any(|v| *v != 0.0)), "a vacuous comparison");
    }
}

#[test]
fn r16_fused_cpu_embeddings_equal_their_pieces_bit_for_bit() {
    let (b, t, c) = (2, 3, 6);
    let ids = [4u32, 1, 4, 0, 2, 2];
    let type_ids = [0u32, 1, 1, 0, 0, 1];
    let positions: Vec<u32> = (0..b).flat_map(|_| 0..t as u32).collect();
    let inputs = [tensor_f32(1, &[5, c]), tensor_f32(2, &[2, c]), tensor_f32(3, &[4, c]), tensor_f32(4, &[c]), tensor_f32(5, &[c])];
    let upstream = tensor_f32(6, &[b, t, c]);
    let (fused, fused_grads) = run_with_grads(&inputs, &upstream, |tape, v| {
        embeddings_ln(tape, v[0], v[1], v[2], (v[3], v[4]), &ids, &type_ids, (b, t), 1e-12).unwrap()
    });
    let (pieces, piece_grads) = run_with_grads(&inputs, &upstream, |tape, v| {
        let words = embedding(tape, v[0], &ids, &[b, t], "input_ids").unwrap();
        let types = embedding(tape, v[1], &type_ids, &[b, t], "token_type_ids").unwrap();
        let places = embedding(tape, v[2], &positions, &[b, t], "position_ids").unwrap();
        let x = add(tape, words, types).unwrap();
        let x = add(tape, x, places).unwrap();
        layer_norm(tape, x, v[3], v[4], 1e-12).unwrap()
    });
    assert_eq!(bits(&fused), bits(&pieces), "embeddings forward");
    for (i, (a, p)) in fused_grads.iter().zip(&piece_grads).enumerate() {
        assert_eq!(bits(a), bits(p), "gradient of input {i}");
    }
}

#[test]
fn r16_op_attention_gradcheck_with_padding_and_dropout() {
    let mask = mask_of(&[4, 1], 4);
    let inputs = [tensor_f64(11, &[2, 4, 6]), tensor_f64(12, &[2, 4, 6]), tensor_f64(13, &[2, 4, 6])];
    check_op("attention", 14, &inputs, |t, v| attention(t, (v[0], v[1], v[2]), &mask, 2, 0.6, None));
    let drop = Some((0.3, DropoutKey { seed: 5, stream: 2 }));
    check_op("attention+dropout", 15, &inputs, |t, v| attention(t, (v[0], v[1], v[2]), &mask, 2, 0.6, drop));
}

#[test]
fn r16_op_embeddings_ln_gradcheck_with_repeated_ids() {
    let ids = [3u32, 1, 3, 0, 3, 1];
    let type_ids = [1u32, 0, 0, 1, 1, 0];
    let ln_weight = Tensor::from_vec(values(23, 4).iter().map(|v| 1.0 + 0.5 * v).collect::<Vec<f64>>(), &[4]).unwrap();
    let inputs = [tensor_f64(20, &[5, 4]), tensor_f64(21, &[2, 4]), tensor_f64(22, &[3, 4]), ln_weight, tensor_f64(24, &[4])];
    check_op("embeddings_ln", 25, &inputs, |t, v| embeddings_ln(t, v[0], v[1], v[2], (v[3], v[4]), &ids, &type_ids, (2, 3), 1e-12));
}

#[test]
fn r16_an_op_the_device_lacks_is_a_typed_error_naming_op_and_backend() {
    let device = open(DeviceChoice::Sim).expect("the simulated device opens").expect("a device");
    let x = tensor_f32(30, &[2, 3, 4]).to_device(&device, Precision::Fp32.elem().unwrap()).unwrap();
    let mut tape = Tape::no_grad();
    let v = tape.leaf(x.clone(), false);
    match split_heads(&mut tape, v, 2) {
        Err(Error::Unsupported { op, backend }) => {
            assert_eq!((op, backend), ("split_heads", "cuda"));
            let message = Error::Unsupported { op, backend }.to_string();
            assert!(message.contains("split_heads") && message.contains("cuda"), "{message}");
        }
        other => panic!("split_heads on a device tensor: expected Unsupported, got {:?}", other.map(|_| ())),
    }
    let heads = tape.leaf(tensor_f32(33, &[2, 2, 3, 4]).to_device(&device, Precision::Fp32.elem().unwrap()).unwrap(), false);
    assert!(matches!(merge_heads(&mut tape, heads), Err(Error::Unsupported { op: "merge_heads", .. })));
    // gather_rows runs on a device since issue 18 (RoBERTa's position rows); the packing that uses it does not.
    assert!(gather_rows(&mut tape, v, Arc::from(vec![0, 1])).is_ok());
    // The backend is chosen by where the storage lives, and says so.
    assert_eq!(backend::of(&x).name(), "cuda");
    assert!(!backend::of(&x).packs_rows());
    assert_eq!(backend::of(&tensor_f32(31, &[2])).name(), "cpu");
    // A CPU tensor handed to a device op is refused, not read as garbage.
    let cpu = tape.leaf(tensor_f32(32, &[2, 3, 4]), false);
    let err = add(&mut tape, v, cpu).map(|_| ()).unwrap_err();
    assert!(err.to_string().contains("add"), "{err}");
}

/// ModernBERT's rotary and GeGLU run on the simulated device through the
/// tape as on the CPU: values and input gradients to f32 rounding, with
/// packed positions that restart per sequence and reach past the table's
/// first rows.
#[test]
fn r19_rotary_and_geglu_on_the_device_match_the_cpu_through_the_tape() {
    let device = open(DeviceChoice::Sim).expect("the simulated device opens").expect("a device");
    let elem = Precision::Fp32.elem().unwrap();
    let positions: Arc<[usize]> = [5usize, 3].iter().flat_map(|&len| 0..len).chain([700]).collect();
    let inv_freq: Arc<[f64]> = (0..4).map(|i| 10_000f64.powf(-(2.0 * i as f64) / 8.0)).collect();
    type Op<'a> = &'a dyn Fn(&mut Tape, Var) -> berth::Result<Var>;
    let run = |on_device: bool, op: Op, x: &Tensor, w: &Tensor| {
        let place = |t: &Tensor| if on_device { t.to_device(&device, elem).unwrap() } else { t.clone() };
        let mut tape = Tape::new();
        let v = tape.leaf(place(x), true);
        let y = op(&mut tape, v).unwrap();
        let value = tape.value(y).to_host().unwrap().to_f64_vec();
        let grads = tape.backward_with(y, place(w)).unwrap();
        (value, grads.get(v).unwrap().to_host().unwrap().to_f64_vec())
    };
    let rotary_op = |t: &mut Tape, v: Var| rotary(t, v, positions.clone(), 3, inv_freq.clone());
    let geglu_op = |t: &mut Tape, v: Var| geglu(t, v);
    let cases: [(&str, Op, Tensor, Tensor); 2] = [
        ("rotary", &rotary_op, tensor_f32(40, &[9, 24]), tensor_f32(41, &[9, 24])),
        ("geglu", &geglu_op, tensor_f32(42, &[2, 5, 12]), tensor_f32(43, &[2, 5, 6])),
    ];
    for (name, op, x, w) in cases {
        let (cpu, device_run) = (run(false, op, &x, &w), run(true, op, &x, &w));
        for (what, a, b) in [("value", &cpu.0, &device_run.0), ("gradient", &cpu.1, &device_run.1)] {
            assert_eq!(a.len(), b.len(), "{name} {what}");
            let worst = a.iter().zip(b.iter()).map(|(p, q)| (p - q).abs() / (1.0 + p.abs())).fold(0.0, f64::max);
            assert!(worst < 1e-5, "{name} {what}: device and CPU differ by {worst}");
        }
        assert!(cpu.1.iter().any(|g| g.abs() > 1e-3), "{name}: a gradient to compare");
    }
}

/// AdamW and the gradient norm are backend methods: on the CPU the update
/// with the clip factor folded in equals clipping the gradients first and
/// updating after (the CPU loop's order), bit for bit; the simulated device
/// gives the same norm and parameters to f32 rounding, with clipping and
/// without; an F32 master updates its BF16 working copy.
#[test]
fn r16_adamw_and_the_gradient_norm_are_backend_methods_that_agree() {
    use berth::backend::AdamWScalars;
    let device = open(DeviceChoice::Sim).expect("the simulated device opens").expect("a device");
    let shapes: [&[usize]; 3] = [&[5, 7], &[7], &[300]];
    let grads: Vec<Tensor> = shapes.iter().enumerate().map(|(i, s)| tensor_f32(40 + i as u64, s)).collect();
    let params: Vec<Tensor> = shapes.iter().enumerate().map(|(i, s)| tensor_f32(50 + i as u64, s)).collect();
    let scalars = AdamWScalars { lr: 1e-2, weight_decay: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, step: 3 };
    let cpu = backend::of(&grads[0]);
    assert_eq!(cpu.name(), "cpu");
    let refs: Vec<&Tensor> = grads.iter().collect();
    let want_norm = grads.iter().flat_map(|g| g.to_f64_vec()).map(|v| v * v).sum::<f64>().sqrt();
    for max_norm in [1.0, 0.0, 1e9] {
        let clip = cpu.grad_clip(&refs, max_norm).unwrap();
        assert!((clip.norm - want_norm).abs() < 1e-9 * want_norm, "cpu norm {} vs {want_norm}", clip.norm);
        let factor = clip.factor.to_f64_vec()[0];
        assert_eq!(factor == 1.0, max_norm == 0.0 || max_norm > want_norm, "max_norm {max_norm}: factor {factor}");

        // The CPU: fused (factor inside the update) against clip-then-update.
        let (mut fused, mut plain) = (params.clone(), params.clone());
        let zeros = |t: &Tensor| Tensor::zeros(t.shape(), t.dtype());
        for i in 0..shapes.len() {
            let (mut m1, mut v1, mut m2, mut v2) = (zeros(&params[i]), zeros(&params[i]), zeros(&params[i]), zeros(&params[i]));
            cpu.adamw_update(&mut fused[i], &grads[i], &mut m1, &mut v1, None, &scalars, Some(&clip.factor)).unwrap();
            let clipped = cpu.scale(&grads[i], factor).unwrap();
            cpu.adamw_update(&mut plain[i], &clipped, &mut m2, &mut v2, None, &scalars, None).unwrap();
            assert_eq!(bits(&fused[i]), bits(&plain[i]), "max_norm {max_norm}, parameter {i}");
            assert_eq!(bits(&m1), bits(&m2));
        }

        // The device, with an F32 master and a BF16 working copy.
        let on = |t: &Tensor, elem| t.to_device(&device, elem).unwrap();
        let device_grads: Vec<Tensor> = grads.iter().map(|g| on(g, Precision::Fp32.elem().unwrap())).collect();
        let device_refs: Vec<&Tensor> = device_grads.iter().collect();
        let sim = backend::of(&device_grads[0]);
        assert_eq!(sim.name(), "cuda");
        let device_clip = sim.grad_clip(&device_refs, max_norm).unwrap();
        assert!((device_clip.norm - want_norm).abs() < 1e-5 * want_norm, "device norm {} vs {want_norm}", device_clip.norm);
        for i in 0..shapes.len() {
            let mut master = on(&params[i], Precision::Fp32.elem().unwrap());
            let copy = on(&params[i], Precision::Bf16.elem().unwrap());
            let (mut m, mut v) =
                (on(&zeros(&params[i]), Precision::Fp32.elem().unwrap()), on(&zeros(&params[i]), Precision::Fp32.elem().unwrap()));
            sim.adamw_update(&mut master, &device_grads[i], &mut m, &mut v, Some(&copy), &scalars, Some(&device_clip.factor)).unwrap();
            let (want, got) = (fused[i].to_f32_vec(), master.to_f32_vec());
            for (w, g) in want.iter().zip(&got) {
                assert!((w - g).abs() <= 1e-6 + 1e-5 * w.abs(), "max_norm {max_norm}, parameter {i}: cpu {w}, device {g}");
            }
            for (g, c) in got.iter().zip(copy.to_f32_vec()) {
                assert!((g - c).abs() <= 1e-2 * g.abs().max(1e-3), "the BF16 copy holds the master: {g} vs {c}");
            }
        }
    }
    // A CPU update has no working copy to write: refused by name.
    let mut p = params[0].clone();
    let (mut m, mut v) = (Tensor::zeros(p.shape(), p.dtype()), Tensor::zeros(p.shape(), p.dtype()));
    let err = cpu.adamw_update(&mut p, &grads[0], &mut m, &mut v, Some(&params[0]), &scalars, None).unwrap_err();
    assert!(matches!(err, Error::Unsupported { op, backend: "cpu" } if op.contains("adamw_update")), "{err}");
}

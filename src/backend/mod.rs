//! Backends: the kernels behind every op of the tape, behind one interface.
//!
//! [`Backend`] has one method per kernel, forward and backward, of every op
//! family. Two implementations exist: [`cpu::Cpu`], which defines the
//! semantics (generic over f32 and f64), and [`cuda::Cuda`], the launchers of
//! `kernels/*.cu` and the cuBLASLt GEMMs on any `DeviceApi` (the real GPU and
//! the simulated one). The tape dispatches once, with [`of`], on where a
//! tensor's storage lives; autograd and the model never ask.
//!
//! An op a backend does not offer is still a method of its implementation,
//! written out to return [`Error::Unsupported`] naming the op and the backend,
//! so what is missing where is visible in the code.
//!
//! Conventions on a device (DESIGN.md, Decision 4): activations and their
//! gradients are in the working type (F32, or BF16 under mixed precision);
//! parameter gradients are F32 whatever the working type; losses are F32
//! scalars. On the CPU everything is in the tensor's own dtype.

pub mod cpu;
pub mod cuda;
mod device_args;

use std::any::Any;

pub use device_args::DeviceArgs;

use crate::device::{Device, DeviceChoice, open};
use crate::error::{Error, Result};
use crate::tensor::{Precision, Tensor};

/// Identifies one dropout site in one step: the mask is a pure function of
/// (seed, stream, element index), so it is recomputed in backward, not stored,
/// and the CPU and the device draw the same mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropoutKey {
    pub seed: u64,
    pub stream: u64,
}

/// Dropout on attention probabilities: probability and site.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionDropout {
    pub p: f64,
    pub key: DropoutKey,
}

/// How attention over packed sequences runs besides its shapes: an
/// optional sliding window of half-width `window`, and optional dropout on
/// the probabilities.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PackedAttentionMode {
    pub window: Option<usize>,
    pub dropout: Option<PackedDropout>,
}

/// Dropout on packed attention probabilities, keyed as in the padded
/// (B·H, T, T) layout so that packing draws the padded path's mask (and the
/// device's): sequence s is batch row s, `padded_len` is T, and the mask of
/// (s, head h, query i, key j) is element ((s·H + h)·T + i)·T + j.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PackedDropout {
    pub dropout: AttentionDropout,
    pub padded_len: usize,
}

/// Layer norm's per-row statistics, saved by forward for backward: mean and
/// 1/σ, (rows). On a device they are F32; on the CPU the tensor's dtype.
#[derive(Clone, Debug)]
pub struct NormStats {
    pub mean: Tensor,
    pub rstd: Tensor,
}

/// What a backend's forward keeps for its own backward, opaque to the tape:
/// device buffers on a device, host arrays on the CPU.
pub struct Saved(Box<dyn Any + Send + Sync>);

impl Saved {
    pub fn new<V: Any + Send + Sync>(value: V) -> Saved {
        Saved(Box::new(value))
    }

    /// The saved value, or an error naming `op` when another backend made it
    /// (a tape that mixes devices).
    pub fn get<V: Any>(&self, op: &'static str) -> Result<&V> {
        self.0.downcast_ref::<V>().ok_or_else(|| Error::Device(format!("{op}: backward was given another backend's saved state")))
    }
}

/// The loss a loss kernel computes, with its host-side targets and weights.
/// Targets of −100 ([`IGNORE_INDEX`]) are skipped by the softmax losses.
#[derive(Clone, Copy, Debug)]
pub enum LossKind<'a> {
    /// Softmax cross-entropy; targets (N), optional class weights (C).
    CrossEntropy { targets: &'a [i64], class_weights: Option<&'a [f64]> },
    /// Softmax focal loss; targets (N), optional per-class alpha (C).
    Focal { targets: &'a [i64], gamma: f64, alpha: Option<&'a [f64]> },
    /// BCE with logits; targets (N, C) in [0, 1], optional pos_weight (C).
    BceWithLogits { targets: &'a [f64], pos_weight: Option<&'a [f64]> },
    /// Sigmoid focal loss; targets (N, C), scalar alpha, optional pos_weight (C).
    SigmoidFocal { targets: &'a [f64], gamma: f64, alpha: Option<f64>, pos_weight: Option<&'a [f64]> },
    /// Mean squared error; targets (N…).
    Mse { targets: &'a [f64] },
}

impl LossKind<'_> {
    /// The op's name on the tape and in profiles.
    pub fn name(&self) -> &'static str {
        match self {
            LossKind::CrossEntropy { .. } => "cross_entropy",
            LossKind::Focal { .. } => "focal_cross_entropy",
            LossKind::BceWithLogits { pos_weight: Some(_), .. } => "bce_with_logits_weighted",
            LossKind::BceWithLogits { pos_weight: None, .. } => "bce_with_logits",
            LossKind::SigmoidFocal { .. } => "sigmoid_focal",
            LossKind::Mse { .. } => "mse",
        }
    }
}

pub use cpu::bf16_linear::PackedBf16Linear;
pub use cpu::int8::{Int8Path, QuantizedLinear};
pub use cpu::loss::IGNORE_INDEX;
pub use cpu::packed_linear::PackedLinear;

/// Whether CPU inference packs its f32 weights for the packed kernel
/// (`cpu::packed_linear`: where the CPU has AVX-512F, unless
/// `BERTH_CPU_LINEAR=gemm`), or keeps them transposed for the gemm crate.
pub fn cpu_packs_f32() -> bool {
    cpu::packed_linear::fast_path().is_some()
}

/// A linear weight (out, in) packed once at load for the CPU's inference
/// kernels: INT8 under `--precision int8`, BF16 under `--precision bf16`,
/// else f32 in the panel layout.
#[derive(Clone, Debug)]
pub enum PackedWeight {
    Int8(QuantizedLinear),
    Bf16(PackedBf16Linear),
    F32(PackedLinear),
}

impl PackedWeight {
    /// (out, in).
    pub fn shape(&self) -> (usize, usize) {
        match self {
            PackedWeight::Int8(w) => (w.out_features, w.in_features),
            PackedWeight::Bf16(w) => (w.out_features, w.in_features),
            PackedWeight::F32(w) => (w.out_features, w.in_features),
        }
    }
}

/// What a packed linear layer does to its output after the bias, while
/// each block is in cache.
#[derive(Clone, Copy)]
pub enum LinearEpilogue<'a> {
    Plain,
    /// GELU (the feed-forward's first layer).
    Gelu,
    /// + residual, a tensor of the output's shape (the residual connection
    /// after an output projection).
    Residual(&'a Tensor),
}

/// Gradients of a linear layer's inputs; None where not asked for.
pub struct LinearGrads {
    pub input: Option<Tensor>,
    pub weight: Option<Tensor>,
    pub bias: Option<Tensor>,
}

/// The kernels of every op family, forward and backward. Shapes are in each
/// method's comment; the tape has checked them before the call, and each
/// implementation still refuses what it cannot run with a named error.
pub trait Backend: Send + Sync {
    /// "cpu" or "cuda", for errors.
    fn name(&self) -> &'static str;

    /// Whether the encoder may pack a batch's real tokens (gather_rows,
    /// scatter_rows, packed_attention) instead of computing its padding.
    fn packs_rows(&self) -> bool;

    // ---- element-wise ----

    /// a (…) + b (…) -> (…).
    fn add(&self, a: &Tensor, b: &Tensor) -> Result<Tensor>;
    /// acc (…) += grad (…), the tape's gradient accumulation.
    fn accumulate(&self, acc: &mut Tensor, grad: &Tensor) -> Result<()>;
    /// x (…) · s -> (…).
    fn scale(&self, x: &Tensor, s: f64) -> Result<Tensor>;
    /// x (…) -> x·Φ(x), the exact GELU.
    fn gelu_fwd(&self, x: &Tensor) -> Result<Tensor>;
    /// x (…), dy (…) -> dx (…).
    fn gelu_bwd(&self, x: &Tensor, dy: &Tensor) -> Result<Tensor>;
    /// x (…, 2I) -> GELU(x[…, :I]) · x[…, I:] (…, I): the gated
    /// feed-forward (ModernBERT's GeGLU), input half first, gate half second.
    fn geglu_fwd(&self, x: &Tensor) -> Result<Tensor>;
    /// x (…, 2I), dy (…, I) -> dx (…, 2I).
    fn geglu_bwd(&self, x: &Tensor, dy: &Tensor) -> Result<Tensor>;
    /// x (R, H·D), positions (R), inv_freq (D/2) -> (R, H·D): rotary
    /// position embedding in the rotate-half layout (the pair (i, i + D/2)
    /// of each head turned by positions[r]·inv_freq[i]); `inverse` turns
    /// back, which is the backward.
    fn rotary(&self, x: &Tensor, positions: &[usize], heads: usize, inv_freq: &[f64], inverse: bool) -> Result<Tensor>;
    /// x (…) -> tanh x.
    fn tanh_fwd(&self, x: &Tensor) -> Result<Tensor>;
    /// y = tanh x (…), dy (…) -> dx (…).
    fn tanh_bwd(&self, y: &Tensor, dy: &Tensor) -> Result<Tensor>;
    /// -> zeros of `shape`, where `like` lives and in its (working) type:
    /// a constant, such as the token-type row of a family without types.
    fn zeros_like(&self, like: &Tensor, shape: &[usize]) -> Result<Tensor>;
    /// x (…) -> max(x, 0).
    fn relu_fwd(&self, x: &Tensor) -> Result<Tensor>;
    /// y = relu x (…), dy (…) -> dx (…) = dy where y > 0, else 0.
    fn relu_bwd(&self, y: &Tensor, dy: &Tensor) -> Result<Tensor>;
    /// x (B, T, C) -> (B, C), the first token of each sequence.
    fn first_token_fwd(&self, x: &Tensor) -> Result<Tensor>;
    /// dy (B, C) -> dx `input_shape` (B, T, C), zero except the first token.
    fn first_token_bwd(&self, dy: &Tensor, input_shape: &[usize]) -> Result<Tensor>;
    /// x (B, T, C), key_mask (B·T, 1 = real) -> (B, C): the mean over each
    /// sequence's real tokens (0 for a sequence with none).
    fn mean_pool_fwd(&self, x: &Tensor, key_mask: &[u8]) -> Result<Tensor>;
    /// dy (B, C), key_mask (B·T), `input_shape` (B, T, C) -> dx (B, T, C):
    /// dy / count at real tokens, 0 at padding.
    fn mean_pool_bwd(&self, dy: &Tensor, key_mask: &[u8], input_shape: &[usize]) -> Result<Tensor>;
    /// x (…) -> x with each element zeroed with probability p and the rest
    /// scaled by 1/(1−p).
    fn dropout_fwd(&self, x: &Tensor, p: f64, key: DropoutKey) -> Result<Tensor>;
    /// dy (…) -> dx (…): the same mask and scale, applied to dy.
    fn dropout_bwd(&self, dy: &Tensor, p: f64, key: DropoutKey) -> Result<Tensor>;
    /// Dropout of packed rows keyed by the padded layout: x (N, C) whose row
    /// r is row `rows[r]` of the padded (B·T, C) -> y (N, C), element (r, c)
    /// drawing the mask of padded element rows[r]·C + c, so it equals the
    /// padded dropout's at every real row. Its own backward on dy.
    fn dropout_rows(&self, x: &Tensor, p: f64, key: DropoutKey, rows: &[usize]) -> Result<Tensor>;

    // ---- linear and matrix products ----

    /// x (N, in) as `out_shape`'s rows, weight (out, in), bias (out) ->
    /// `out_shape` (…, out). `weight_t` is an optional (in, out) copy of the
    /// weight that a backend may read instead.
    fn linear_fwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: Option<&Tensor>,
        weight_t: Option<&Tensor>,
        out_shape: &[usize],
    ) -> Result<Tensor>;
    /// dy (N, out), x (N, in), weight (out, in) -> dx (N, in), dweight (out,
    /// in), dbias (out), each only where `wanted` ([input, weight, bias]).
    fn linear_bwd(&self, dy: &Tensor, x: &Tensor, weight: &Tensor, has_bias: bool, wanted: [bool; 3]) -> Result<LinearGrads>;
    /// As [`Backend::linear_bwd`] with BF16 operands and f32 sums (CPU
    /// training in `--precision bf16`): dy (…, out), x (…, in) f32, weight
    /// (out, in) f32 master copy -> the same gradients' shapes.
    fn linear_bf16_bwd(&self, dy: &Tensor, x: &Tensor, weight: &Tensor, has_bias: bool, wanted: [bool; 3]) -> Result<LinearGrads>;
    /// a (…, M, K) (or (…, K, M) when `transpose_a`), b likewise -> (…, M, N).
    fn batched_matmul(&self, a: &Tensor, b: &Tensor, transpose_a: bool, transpose_b: bool) -> Result<Tensor>;
    /// The gradients of [`Backend::batched_matmul`]: dc (…, M, N) -> (da, db),
    /// each only where wanted.
    fn batched_matmul_bwd(
        &self,
        dc: &Tensor,
        a: &Tensor,
        b: &Tensor,
        transpose_a: bool,
        transpose_b: bool,
        wanted: [bool; 2],
    ) -> Result<(Option<Tensor>, Option<Tensor>)>;
    /// x (R, C) -> (C, R), a copy (the CPU's cached transposed weights).
    fn transpose(&self, x: &Tensor) -> Result<Tensor>;
    /// x (N, in) f32 as `out_shape`'s rows, a weight (out, in) packed at
    /// load (INT8 for `--precision int8`, dynamic quantization of x; or
    /// f32), bias (out) f32 -> `out_shape` (…, out) f32, then `epilogue` in
    /// the kernel's epilogue (the same bits as the op applied after).
    /// Inference only: there is no backward.
    fn linear_packed_fwd(
        &self,
        x: &Tensor,
        weight: &PackedWeight,
        bias: Option<&Tensor>,
        epilogue: LinearEpilogue<'_>,
        out_shape: &[usize],
    ) -> Result<Tensor>;

    // ---- layer norm ----

    /// x (…, C), weight (C), bias (C) -> y (…, C) and the row statistics.
    fn layer_norm_fwd(&self, x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<(Tensor, NormStats)>;
    /// x (…, C), weight (C), stats, dy (…, C) -> [dx (…, C), dweight (C), dbias (C)].
    fn layer_norm_bwd(&self, x: &Tensor, weight: &Tensor, stats: &NormStats, dy: &Tensor) -> Result<[Tensor; 3]>;

    // ---- embeddings ----

    /// table (V, C), ids (S, checked < V) -> (S…, C) as `out_shape`.
    fn embedding_fwd(&self, table: &Tensor, ids: &[u32], out_shape: &[usize]) -> Result<Tensor>;
    /// dy (S, C), ids (S) -> dtable `table_shape` (V, C), rows scatter-added.
    fn embedding_bwd(&self, dy: &Tensor, ids: &[u32], table_shape: &[usize]) -> Result<Tensor>;
    /// [word (V, C), token_type (TT, C), position (P, C)], LayerNorm (weight
    /// (C), bias (C)), ids and type ids (B·T, checked) -> LayerNorm(word[id] +
    /// token_type[type] + position[t]) (B, T, C), and what backward needs.
    fn embeddings_ln_fwd(
        &self,
        tables: [&Tensor; 3],
        ln: (&Tensor, &Tensor),
        ids: (&[u32], &[u32]),
        batch_seq: (usize, usize),
        eps: f64,
    ) -> Result<(Tensor, Saved)>;
    /// dy (B, T, C) -> [dword, dtoken_type, dposition] (the tables' shapes)
    /// and [dln_weight, dln_bias] (C).
    fn embeddings_ln_bwd(&self, saved: &Saved, tables: [&Tensor; 3], ln_weight: &Tensor, dy: &Tensor) -> Result<[Tensor; 5]>;

    // ---- attention ----

    /// q, k, v (B, T, H·D), key mask (B·T, 1 = attend), an optional
    /// sliding-window half-width w (query i reads keys |i − j| ≤ w) ->
    /// context (B, T, H·D): softmax(q·kᵀ·scale, masked) with optional
    /// dropout on the probabilities, times v, per head; and what backward needs.
    fn attention_fwd(
        &self,
        qkv: [&Tensor; 3],
        key_mask: &[u8],
        heads: usize,
        scale: f64,
        window: Option<usize>,
        dropout: Option<AttentionDropout>,
    ) -> Result<(Tensor, Saved)>;
    /// q, k, v, the forward's output (B, T, H·D), dout (B, T, H·D) -> [dq, dk, dv].
    fn attention_bwd(&self, qkv: [&Tensor; 3], output: &Tensor, saved: &Saved, dout: &Tensor) -> Result<[Tensor; 3]>;
    /// q, k, v (N, H·D) holding sequences of `lens` rows back to back, an
    /// optional window half-width -> context (N, H·D), each sequence
    /// attending to its own rows (within the window); no dropout.
    fn packed_attention_fwd(
        &self,
        qkv: [&Tensor; 3],
        lens: &[usize],
        heads: usize,
        scale: f64,
        mode: PackedAttentionMode,
    ) -> Result<Tensor>;
    /// Inference only: q, k and v side by side in one (N, 3·H·D) tensor (the
    /// output of one fused projection), sequences of `lens` rows back to
    /// back -> context (N, H·D); no window, no dropout, no backward.
    fn packed_attention_qkv_fwd(&self, qkv: &Tensor, lens: &[usize], heads: usize, scale: f64) -> Result<Tensor>;
    /// dout (N, H·D) -> [dq, dk, dv] (N, H·D).
    fn packed_attention_bwd(
        &self,
        qkv: [&Tensor; 3],
        dout: &Tensor,
        lens: &[usize],
        heads: usize,
        scale: f64,
        mode: PackedAttentionMode,
    ) -> Result<[Tensor; 3]>;
    /// DeBERTa's disentangled attention: q, k, v (B, T, H·D), the layer's
    /// projected relative embeddings pq, pk (R, H·D), key mask (B·T),
    /// `rows` (2T − 1: the table row read for each query − key distance,
    /// from −(T−1)) -> context (B, T, H·D) with scores
    /// (q·k + q·pk[row] + k·pq[row])·scale, a query × key mask (a padding
    /// query is uniform) and optional dropout on the probabilities.
    #[allow(clippy::too_many_arguments)]
    fn relative_attention_fwd(
        &self,
        qkv: [&Tensor; 3],
        tables: [&Tensor; 2],
        key_mask: &[u8],
        rows: &[u32],
        heads: usize,
        scale: f64,
        dropout: Option<AttentionDropout>,
    ) -> Result<(Tensor, Saved)>;
    /// q (B, T, H·D), pq (R, H·D), dout (B, T, H·D) -> [dq, dk, dv, dpq, dpk].
    fn relative_attention_bwd(&self, q: &Tensor, pq: &Tensor, saved: &Saved, dout: &Tensor) -> Result<[Tensor; 5]>;
    /// As [`Backend::relative_attention_fwd`] over packed sequences: q, k,
    /// v (N, H·D) holding sequences of `lens` rows back to back, `rows`
    /// (2·T − 1 for a T at least every length) -> context (N, H·D); no dropout.
    fn packed_relative_attention_fwd(
        &self,
        qkv: [&Tensor; 3],
        tables: [&Tensor; 2],
        lens: &[usize],
        rows: &[u32],
        heads: usize,
        scale: f64,
        dropout: Option<PackedDropout>,
    ) -> Result<Tensor>;
    /// dout (N, H·D) -> [dq, dk, dv] (N, H·D), [dpq, dpk] (R, H·D).
    #[allow(clippy::too_many_arguments)]
    fn packed_relative_attention_bwd(
        &self,
        qkv: [&Tensor; 3],
        tables: [&Tensor; 2],
        dout: &Tensor,
        lens: &[usize],
        rows: &[u32],
        heads: usize,
        scale: f64,
        dropout: Option<PackedDropout>,
    ) -> Result<[Tensor; 5]>;
    /// x (B, T, H·D) -> (B, H, T, D) when `split`; (B, H, T, D) -> (B, T, H·D) otherwise.
    fn permute_heads(&self, x: &Tensor, heads: usize, split: bool) -> Result<Tensor>;
    /// scores (B, H, Tq, Tk), key mask (B·Tk) -> probabilities over keys.
    fn masked_softmax_fwd(&self, scores: &Tensor, key_mask: &[u8]) -> Result<Tensor>;
    /// probs (B, H, Tq, Tk), dprobs (same), key mask -> dscores.
    fn masked_softmax_bwd(&self, probs: &Tensor, dprobs: &Tensor, key_mask: &[u8]) -> Result<Tensor>;

    // ---- rows: packing a batch's real tokens ----

    /// x (R, C) -> (rows.len(), C), rows distinct and below R.
    fn gather_rows(&self, x: &Tensor, rows: &[usize]) -> Result<Tensor>;
    /// x (N, C) -> `shape` (R, C) with row rows[i] = x[i], zeros elsewhere.
    fn scatter_rows(&self, x: &Tensor, rows: &[usize], shape: &[usize]) -> Result<Tensor>;

    // ---- losses ----

    /// logits (N, C) -> (loss [1], dlogits (N, C) for a unit upstream gradient).
    fn loss(&self, logits: &Tensor, kind: LossKind) -> Result<(Tensor, Tensor)>;

    // ---- the optimizer ----

    /// grads: any number of tensors of any shapes -> their global L2 norm
    /// and the clip factor every gradient is multiplied by: `max_norm /
    /// (norm + 1e-6)` when `max_norm` > 0 and the norm exceeds it, else 1;
    /// NaN when the norm is not finite. The factor (1) stays where the
    /// gradients are, so a device step needs no host round trip.
    fn grad_clip(&self, grads: &[&Tensor], max_norm: f64) -> Result<GradClip>;
    /// One AdamW update in place: param, grad, m, v (n) of one dtype; each
    /// gradient element is first multiplied by `clip` (1) when given (a
    /// non-finite clip leaves everything untouched); `copy` (n), when given,
    /// receives the updated parameter in its own dtype (the BF16 working
    /// copy of an F32 master).
    #[allow(clippy::too_many_arguments)]
    fn adamw_update(
        &self,
        param: &mut Tensor,
        grad: &Tensor,
        m: &mut Tensor,
        v: &mut Tensor,
        copy: Option<&Tensor>,
        scalars: &AdamWScalars,
        clip: Option<&Tensor>,
    ) -> Result<()>;
    /// As [`Backend::adamw_update`] without a working copy, also -> (Σ (p_new −
    /// p_old)², Σ p_old²) in f64, the training diagnostics' update size
    /// measured inside the update (the CPU; a device measures by download).
    fn adamw_update_measured(
        &self,
        param: &mut Tensor,
        grad: &Tensor,
        m: &mut Tensor,
        v: &mut Tensor,
        scalars: &AdamWScalars,
        clip: Option<&Tensor>,
    ) -> Result<(f64, f64)> {
        let _ = (param, grad, m, v, scalars, clip);
        unsupported("adamw_update_measured", self.name())
    }
}

/// One AdamW update's settings, as plain numbers (the optimizer sits above
/// the backend).
#[derive(Clone, Copy, Debug)]
pub struct AdamWScalars {
    pub lr: f64,
    /// This parameter's decoupled weight decay (0 for biases and LayerNorm weights).
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// t after incrementing: the first update is step 1.
    pub step: u64,
}

/// What [`Backend::grad_clip`] gives.
pub struct GradClip {
    /// The global L2 norm before clipping.
    pub norm: f64,
    /// Each gradient's Σ g² before clipping, in order, where the backend
    /// computes them on the host (the CPU); None on a device.
    pub squares: Option<Vec<f64>>,
    /// (1) F32 or the gradients' float type, on the gradients' backend.
    pub factor: Tensor,
}

/// The backend that runs ops on `t`: where its storage lives decides.
pub fn of(t: &Tensor) -> &'static dyn Backend {
    if t.is_on_device() { &cuda::Cuda } else { &cpu::Cpu }
}

/// The error of an op a backend does not offer.
pub fn unsupported<V>(op: &'static str, backend: &'static str) -> Result<V> {
    Err(Error::Unsupported { op, backend })
}

/// Opens the device `--device` names (None: the CPU) and parses
/// `--precision`; train, eval, predict, serve and bench share it.
pub fn select_device(device: &str, precision: &str) -> Result<(Option<Device>, Precision)> {
    let (choice, precision) = parse_device(device, precision)?;
    open_device(choice, precision)
}

/// Parses `--device` and `--precision`.
pub fn parse_device(device: &str, precision: &str) -> Result<(DeviceChoice, Precision)> {
    use clap::ValueEnum;
    let choice = DeviceChoice::from_str(device, true)
        .map_err(|_| Error::InvalidArgument(format!("unknown --device `{device}` (auto, cpu, cuda or sim)")))?;
    let precision = Precision::from_str(precision, true)
        .map_err(|_| Error::InvalidArgument(format!("unknown --precision `{precision}` (fp32, bf16 or int8)")))?;
    Ok((choice, precision))
}

/// Opens the device a parsed `--device` names (None: the CPU; there BF16
/// runs the CPU's kernels, `cpu::bf16_linear`).
pub fn open_device(choice: DeviceChoice, precision: Precision) -> Result<(Option<Device>, Precision)> {
    if precision == Precision::Int8 && matches!(choice, DeviceChoice::Cuda | DeviceChoice::Sim) {
        return Err(Error::InvalidArgument(crate::tensor::INT8_IS_CPU_INFERENCE.into()));
    }
    // Auto picks the CPU for INT8, even where a GPU is present.
    let device = if precision == Precision::Int8 { None } else { open(choice)? };
    Ok((device, precision))
}

//! A minimal autograd tape (DESIGN.md §3).
//!
//! The tape is a `Vec` of values; each value produced by an op has a node
//! holding the op's backward and its input ids. `backward` walks the nodes in
//! reverse and accumulates gradients. Every op lives in one file with its
//! forward and backward side by side; no op can be recorded without a
//! backward, because recording requires a [`Backward`] implementation.
//! Ops call the kernels of the backend where their tensors live
//! ([`crate::backend::of`]); no op asks which one that is.

pub mod attention;
pub mod basic;
pub mod embedding;
pub mod linear;
pub mod loss;
pub mod norm;
pub mod rotary;
pub mod row_scale;
pub mod rows;
pub mod windows;

use crate::backend;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// A handle to a value on the tape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Var(pub(crate) usize);

/// What an op's backward sees: its inputs and output as computed in forward.
pub struct BackwardContext<'a> {
    pub inputs: Vec<&'a Tensor>,
    pub output: &'a Tensor,
    /// Whether each input needs a gradient; ops may skip work for the others.
    pub needs_grad: Vec<bool>,
}

/// The backward half of an op. Returns one gradient per input (None where the
/// input needs none or is not differentiable, such as token ids).
pub trait Backward: Send + Sync {
    fn name(&self) -> &'static str;
    fn backward(&self, dout: &Tensor, ctx: &BackwardContext) -> Result<Vec<Option<Tensor>>>;
    /// Floating-point operations of the forward, from its inputs and output,
    /// for the profile's TFLOP/s (products only: 0 for element-wise ops).
    /// The backward is counted as twice the forward (two products per one).
    fn forward_flops(&self, inputs: &[&Tensor], output: &Tensor) -> f64 {
        let _ = (inputs, output);
        0.0
    }
}

/// Bytes of a tensor's elements.
fn bytes_of(t: &Tensor) -> f64 {
    (t.numel() * t.dtype().size_in_bytes()) as f64
}

struct Node {
    inputs: Vec<usize>,
    op: Box<dyn Backward>,
}

pub struct Tape {
    values: Vec<Tensor>,
    nodes: Vec<Option<Node>>,
    requires_grad: Vec<bool>,
    /// Whether each value is a leaf (input or parameter) rather than an op output.
    is_leaf: Vec<bool>,
    grad_enabled: bool,
    profile: Option<Profile>,
}

/// Wall time per op name, forward and backward (enabled by [`Tape::enable_profile`]).
/// Forward time of an op is the time since the previous record, which is
/// where its forward ran.
#[derive(Clone, Debug, Default)]
pub struct Profile {
    pub forward: std::collections::BTreeMap<&'static str, OpTotals>,
    pub backward: std::collections::BTreeMap<&'static str, OpTotals>,
    /// Work outside the tape that a training step also does (the optimizer
    /// step, the diagnostics), timed by the caller ([`Profile::add_step_work`]).
    pub step: std::collections::BTreeMap<&'static str, OpTotals>,
    last: Option<std::time::Instant>,
}

/// One op and direction's totals over its calls.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct OpTotals {
    pub seconds: f64,
    pub calls: usize,
    /// The bytes its tensors hold: forward, the inputs and the output;
    /// backward, the output's gradient, the inputs and their gradients (the
    /// least memory traffic the op can have).
    pub bytes: f64,
    /// Floating-point operations of its products ([`Backward::forward_flops`]).
    pub flops: f64,
}

impl OpTotals {
    fn add(&mut self, other: &OpTotals) {
        self.seconds += other.seconds;
        self.calls += other.calls;
        self.bytes += other.bytes;
        self.flops += other.flops;
    }
}

/// One row of a profile: an op and a direction, its calls and seconds.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ProfileRow {
    pub op: &'static str,
    /// `forward`, `backward` or `step`.
    pub direction: &'static str,
    pub calls: usize,
    pub total_ms: f64,
    pub mean_ms: f64,
    /// Of all the rows' time.
    pub share: f64,
    /// Tape ops: the bytes of their tensors over the time (GB/s), and for
    /// products their TFLOP/s; None for step work, and for a device's rows
    /// (their times are the host's, not the kernels').
    pub gb_per_s: Option<f64>,
    pub tflops: Option<f64>,
    /// The totals behind them ([`OpTotals`]).
    pub bytes: f64,
    pub flops: f64,
}

impl Profile {
    /// Adds another profile's totals into this one.
    pub fn merge(&mut self, other: &Profile) {
        for (mine, theirs) in [(&mut self.forward, &other.forward), (&mut self.backward, &other.backward), (&mut self.step, &other.step)] {
            for (k, totals) in theirs {
                mine.entry(k).or_default().add(totals);
            }
        }
    }

    /// Counts one call of `op` outside the tape that took `seconds`.
    pub fn add_step_work(&mut self, op: &'static str, seconds: f64) {
        self.step.entry(op).or_default().add(&OpTotals { seconds, calls: 1, ..OpTotals::default() });
    }

    /// Every op and direction, largest total first.
    pub fn rows(&self) -> Vec<ProfileRow> {
        let mut rows: Vec<ProfileRow> = Vec::new();
        for (direction, map) in [("forward", &self.forward), ("backward", &self.backward), ("step", &self.step)] {
            for (op, o) in map {
                let timed = direction != "step" && o.seconds > 0.0;
                rows.push(ProfileRow {
                    op,
                    direction,
                    calls: o.calls,
                    total_ms: o.seconds * 1e3,
                    mean_ms: o.seconds * 1e3 / o.calls.max(1) as f64,
                    share: 0.0,
                    gb_per_s: timed.then(|| o.bytes / o.seconds / 1e9),
                    tflops: (timed && o.flops > 0.0).then(|| o.flops / o.seconds / 1e12),
                    bytes: o.bytes,
                    flops: o.flops,
                });
            }
        }
        let total: f64 = rows.iter().map(|r| r.total_ms).sum();
        for r in &mut rows {
            r.share = r.total_ms / total.max(1e-12);
        }
        rows.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));
        rows
    }

    /// A table of the ops by total time, largest first.
    pub fn report(&self) -> String {
        let mut out = format!("{:<28} {:>10} {:>7} {:>6}\n", "op", "ms", "calls", "share");
        for r in self.rows() {
            let dir = match r.direction {
                "forward" => "fwd",
                "backward" => "bwd",
                other => other,
            };
            let name = format!("{} {dir}", r.op);
            out.push_str(&format!("{name:<28} {:>10.2} {:>7} {:>5.1}%\n", r.total_ms, r.calls, 100.0 * r.share));
        }
        out
    }

    /// profile.json: where it was measured and how, the steps it covers, and every row.
    pub fn to_json(&self, device: &str, steps: u64) -> serde_json::Value {
        let rows = self.rows();
        serde_json::json!({
            "device": device,
            "timing": "wall clock on the host, per op as the tape records it (an op's forward is the time since the previous record)",
            "steps": steps,
            "total_ms": rows.iter().map(|r| r.total_ms).sum::<f64>(),
            "ops": rows,
        })
    }
}

impl Default for Tape {
    fn default() -> Self {
        Tape::new()
    }
}

impl Tape {
    /// A tape that records ops for backward.
    pub fn new() -> Tape {
        Tape { values: Vec::new(), nodes: Vec::new(), requires_grad: Vec::new(), is_leaf: Vec::new(), grad_enabled: true, profile: None }
    }

    /// Inference mode: nothing is recorded for backward.
    pub fn no_grad() -> Tape {
        Tape { grad_enabled: false, ..Tape::new() }
    }

    /// Starts timing every op recorded from now on.
    pub fn enable_profile(&mut self) {
        self.profile = Some(Profile { last: Some(std::time::Instant::now()), ..Profile::default() });
    }

    pub fn profile(&self) -> Option<&Profile> {
        self.profile.as_ref()
    }

    pub fn grad_enabled(&self) -> bool {
        self.grad_enabled
    }

    /// Registers an input or parameter.
    pub fn leaf(&mut self, value: Tensor, requires_grad: bool) -> Var {
        if let Some(p) = &mut self.profile {
            p.last = Some(std::time::Instant::now());
        }
        self.values.push(value);
        self.is_leaf.push(true);
        self.nodes.push(None);
        self.requires_grad.push(requires_grad && self.grad_enabled);
        Var(self.values.len() - 1)
    }

    pub fn value(&self, v: Var) -> &Tensor {
        &self.values[v.0]
    }

    pub fn requires_grad(&self, v: Var) -> bool {
        self.requires_grad[v.0]
    }

    /// Records an op's output; the node is kept only when some input needs a gradient.
    pub fn push(&mut self, output: Tensor, inputs: &[Var], op: impl Backward + 'static) -> Var {
        if let Some(p) = &mut self.profile {
            let now = std::time::Instant::now();
            let values: Vec<&Tensor> = inputs.iter().map(|v| &self.values[v.0]).collect();
            let totals = OpTotals {
                seconds: p.last.map_or(0.0, |t| (now - t).as_secs_f64()),
                calls: 1,
                bytes: values.iter().map(|t| bytes_of(t)).sum::<f64>() + bytes_of(&output),
                flops: op.forward_flops(&values, &output),
            };
            p.forward.entry(op.name()).or_default().add(&totals);
            p.last = Some(now);
        }
        let needs = self.grad_enabled && inputs.iter().any(|v| self.requires_grad[v.0]);
        self.values.push(output);
        self.is_leaf.push(false);
        self.requires_grad.push(needs);
        self.nodes.push(if needs { Some(Node { inputs: inputs.iter().map(|v| v.0).collect(), op: Box::new(op) }) } else { None });
        Var(self.values.len() - 1)
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// On a no_grad tape, frees every value recorded at or after `start`
    /// except leaves and `keep`: inference drops a layer's intermediates as
    /// soon as the layer is done, so memory stays at one layer's worth and
    /// the allocator reuses the same blocks layer after layer. A freed value
    /// reads as an empty tensor. Does nothing on a tape that records
    /// gradients, since backward needs every value.
    pub fn release_since(&mut self, start: usize, keep: &[Var]) {
        if self.grad_enabled {
            return;
        }
        for i in start..self.values.len() {
            if !self.is_leaf[i] && !keep.iter().any(|v| v.0 == i) && self.values[i].numel() > 0 {
                self.values[i] = Tensor::zeros(&[0], self.values[i].dtype());
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Back-propagates from a scalar `loss`, seeding d(loss) = 1.
    pub fn backward(&mut self, loss: Var) -> Result<Gradients> {
        let seed = Tensor::full(self.values[loss.0].shape(), 1.0, self.values[loss.0].dtype());
        self.backward_with(loss, seed)
    }

    /// Back-propagates from `output` with the given upstream gradient.
    pub fn backward_with(&mut self, output: Var, seed: Tensor) -> Result<Gradients> {
        if !self.grad_enabled {
            return Err(Error::InvalidArgument("backward called on a no_grad tape".into()));
        }
        if seed.shape() != self.values[output.0].shape() {
            return Err(Error::shape("backward", format!("seed {:?} vs output {:?}", seed.shape(), self.values[output.0].shape())));
        }
        let mut grads: Vec<Option<Tensor>> = vec![None; self.values.len()];
        grads[output.0] = Some(seed);
        for index in (0..=output.0).rev() {
            let Some(node) = &self.nodes[index] else { continue };
            let Some(dout) = grads[index].take() else { continue };
            let ctx = BackwardContext {
                inputs: node.inputs.iter().map(|&i| &self.values[i]).collect(),
                output: &self.values[index],
                needs_grad: node.inputs.iter().map(|&i| self.requires_grad[i]).collect(),
            };
            let started = self.profile.as_ref().map(|_| std::time::Instant::now());
            let input_grads = node.op.backward(&dout, &ctx)?;
            if let (Some(p), Some(t)) = (self.profile.as_mut(), started) {
                let seconds = t.elapsed().as_secs_f64();
                let bytes = bytes_of(&dout)
                    + ctx.inputs.iter().map(|t| bytes_of(t)).sum::<f64>()
                    + input_grads.iter().flatten().map(bytes_of).sum::<f64>();
                let flops = 2.0 * node.op.forward_flops(&ctx.inputs, ctx.output);
                p.backward.entry(node.op.name()).or_default().add(&OpTotals { seconds, calls: 1, bytes, flops });
            }
            if input_grads.len() != node.inputs.len() {
                return Err(Error::shape(node.op.name(), "backward returned the wrong number of gradients"));
            }
            for (&input, grad) in node.inputs.iter().zip(input_grads) {
                let Some(grad) = grad else { continue };
                if !self.requires_grad[input] {
                    continue;
                }
                if grad.shape() != self.values[input].shape() {
                    return Err(Error::shape(
                        node.op.name(),
                        format!("gradient {:?} for an input of shape {:?}", grad.shape(), self.values[input].shape()),
                    ));
                }
                match &mut grads[input] {
                    slot @ None => *slot = Some(grad),
                    Some(acc) => accumulate(acc, &grad)?,
                }
            }
            // Keep leaf gradients only; intermediate ones are freed as we go.
            if self.nodes[index].is_some() {
                grads[index] = None;
            }
        }
        Ok(Gradients { grads })
    }
}

/// acc += grad, element-wise (same shape and dtype).
pub fn accumulate(acc: &mut Tensor, grad: &Tensor) -> Result<()> {
    backend::of(acc).accumulate(acc, grad)
}

/// Gradients of the leaves, after [`Tape::backward`].
pub struct Gradients {
    grads: Vec<Option<Tensor>>,
}

impl Gradients {
    pub fn get(&self, v: Var) -> Option<&Tensor> {
        self.grads.get(v.0).and_then(|g| g.as_ref())
    }

    pub fn take(&mut self, v: Var) -> Option<Tensor> {
        self.grads.get_mut(v.0).and_then(|g| g.take())
    }
}

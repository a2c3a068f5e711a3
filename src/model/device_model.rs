//! A model's parameters and optimizer state on a CUDA device (real or
//! simulated), for training and inference there.
//!
//! Mixed precision (DESIGN.md, Decision 4): under BF16 the kernels read BF16
//! working copies of the weights, while F32 master weights and the AdamW
//! moments stay F32; the fused AdamW kernel updates the master and writes the
//! new BF16 copy. Under F32 the working copy is the master. Gradients are
//! always F32. The host copies (the ParamStore and the CPU AdamW) are brought
//! up to date only when asked: before evaluation on the CPU, checkpoints and
//! the final save.

use clap::ValueEnum;

use crate::backend::cuda::ops::adamw::{AdamWStep, adamw_update, grad_norm};
use crate::device::{Device, DeviceBuffer, Elem};
use crate::device::{DeviceChoice, open};
use crate::error::{Error, Result};
use crate::model::params::ParamStore;
use crate::optim::AdamW;
use crate::optim::adamw::Moments;
use crate::tensor::Tensor;

/// Opens the device `--device` names (None: the CPU) and parses `--precision`;
/// train, eval, predict and bench share it.
pub fn select_device(device: &str, precision: &str) -> Result<(Option<Device>, Precision)> {
    let (choice, precision) = parse_device(device, precision)?;
    open_device(choice, precision)
}

/// Parses `--device` and `--precision`.
pub fn parse_device(device: &str, precision: &str) -> Result<(DeviceChoice, Precision)> {
    let choice = DeviceChoice::from_str(device, true)
        .map_err(|_| Error::InvalidArgument(format!("unknown --device `{device}` (auto, cpu, cuda or sim)")))?;
    let precision = Precision::from_str(precision, true)
        .map_err(|_| Error::InvalidArgument(format!("unknown --precision `{precision}` (fp32 or bf16)")))?;
    Ok((choice, precision))
}

/// Opens the device a parsed `--device` names (None: the CPU); BF16 needs one.
pub fn open_device(choice: DeviceChoice, precision: Precision) -> Result<(Option<Device>, Precision)> {
    let device = open(choice)?;
    if device.is_none() && precision == Precision::Bf16 {
        return Err(Error::InvalidArgument("--precision bf16 needs a CUDA device (--device cuda or sim); the CPU runs in fp32".into()));
    }
    Ok((device, precision))
}

/// The precision `--precision` asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    Fp32,
    /// BF16 activations and GEMM operands, F32 accumulation, F32 master weights.
    Bf16,
}

impl Precision {
    pub fn elem(self) -> Elem {
        match self {
            Precision::Fp32 => Elem::F32,
            Precision::Bf16 => Elem::BF16,
        }
    }
}

struct OptimizerSlot {
    /// The F32 master; None when the working copy is F32 and is the master.
    master: Option<DeviceBuffer>,
    m: DeviceBuffer,
    v: DeviceBuffer,
}

pub struct DeviceModel {
    device: Device,
    precision: Precision,
    /// Working copies in store order, as device tensors the tape can use.
    pub params: Vec<Tensor>,
    /// One per parameter; None for frozen parameters (no optimizer state).
    slots: Vec<Option<OptimizerSlot>>,
    norm: DeviceBuffer,
    clip_scale: DeviceBuffer,
}

impl DeviceModel {
    /// Uploads the parameters, and the optimizer's moments when one is given
    /// (a resumed run continues from them).
    pub fn upload(device: &Device, precision: Precision, store: &ParamStore, optimizer: Option<&AdamW>) -> Result<DeviceModel> {
        let elem = precision.elem();
        let mut params = Vec::with_capacity(store.len());
        let mut slots = Vec::with_capacity(store.len());
        for (i, t) in store.tensors().iter().enumerate() {
            params.push(t.to_device(device, elem)?);
            let moments = optimizer.and_then(|o| o.moments.get(i).cloned().flatten());
            slots.push(match moments {
                Some(Moments { m, v }) => Some(OptimizerSlot {
                    master: if elem == Elem::F32 { None } else { Some(DeviceBuffer::from_f32(device, &t.to_f32_vec(), Elem::F32)?) },
                    m: DeviceBuffer::from_f32(device, &m.to_f32_vec(), Elem::F32)?,
                    v: DeviceBuffer::from_f32(device, &v.to_f32_vec(), Elem::F32)?,
                }),
                None => None,
            });
        }
        Ok(DeviceModel {
            device: device.clone(),
            precision,
            params,
            slots,
            norm: DeviceBuffer::zeros(device, 1, Elem::F32)?,
            clip_scale: DeviceBuffer::zeros(device, 1, Elem::F32)?,
        })
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// One optimizer step: the global gradient norm, clipping folded into
    /// AdamW as a device-side scale, and the fused update of every trainable
    /// parameter. `optimizer` supplies the hyper-parameters and its step count
    /// is advanced, as `AdamW::update` does. Returns the norm before clipping;
    /// a non-finite norm is an error and nothing is updated.
    pub fn step(&mut self, optimizer: &mut AdamW, grads: &[Option<Tensor>], lr: f64, max_norm: f64) -> Result<f64> {
        if grads.len() != self.params.len() {
            return Err(Error::shape("DeviceModel::step", format!("{} gradients for {} parameters", grads.len(), self.params.len())));
        }
        let buffers: Vec<&DeviceBuffer> = grads
            .iter()
            .zip(&self.slots)
            .filter(|(_, s)| s.is_some())
            .filter_map(|(g, _)| g.as_ref().and_then(|g| g.device_buffer()))
            .collect();
        if buffers.iter().any(|b| b.elem() != Elem::F32) {
            return Err(Error::Device("parameter gradients must be F32 on the device".into()));
        }
        grad_norm(&buffers, max_norm as f32, &self.norm, &self.clip_scale)?;
        let norm = self.norm.to_f32_vec()?[0] as f64;
        if !norm.is_finite() {
            return Err(Error::Numerical(format!("the gradient norm is {norm}")));
        }
        optimizer.step += 1;
        let step = optimizer.step;
        for (i, slot) in self.slots.iter().enumerate() {
            let (Some(slot), Some(g)) = (slot, &grads[i]) else { continue };
            let grad = g.device_buffer().ok_or_else(|| Error::Device("a CPU gradient reached the device optimizer".into()))?;
            let decay = if optimizer.decays(i) { optimizer.config.weight_decay } else { 0.0 };
            let hyper = AdamWStep::new(lr, decay, (optimizer.config.beta1, optimizer.config.beta2), optimizer.config.eps, step);
            let working = self.params[i].device_buffer().ok_or_else(|| Error::Device("a parameter is not on the device".into()))?;
            match &slot.master {
                Some(master) => adamw_update(master, grad, &slot.m, &slot.v, Some(working), hyper, Some(&self.clip_scale))?,
                None => adamw_update(working, grad, &slot.m, &slot.v, None, hyper, Some(&self.clip_scale))?,
            }
        }
        Ok(norm)
    }

    /// Copies the F32 weights (masters where they exist) into `store`, and
    /// the moments into `optimizer`, so the host copies can be evaluated on
    /// the CPU or written to a checkpoint.
    pub fn download(&self, store: &mut ParamStore, optimizer: Option<&mut AdamW>) -> Result<()> {
        for (i, t) in store.tensors_mut().iter_mut().enumerate() {
            let values = match self.slots[i].as_ref().and_then(|s| s.master.as_ref()) {
                Some(master) => master.to_f32_vec()?,
                None => self.params[i].to_f32_vec(),
            };
            *t = Tensor::from_vec(values, t.shape())?.to_dtype(t.dtype());
        }
        if let Some(optimizer) = optimizer {
            for (i, slot) in self.slots.iter().enumerate() {
                let (Some(slot), Some(Some(moments))) = (slot, optimizer.moments.get_mut(i)) else { continue };
                moments.m = Tensor::from_vec(slot.m.to_f32_vec()?, moments.m.shape())?.to_dtype(moments.m.dtype());
                moments.v = Tensor::from_vec(slot.v.to_f32_vec()?, moments.v.shape())?.to_dtype(moments.v.dtype());
            }
        }
        Ok(())
    }
}

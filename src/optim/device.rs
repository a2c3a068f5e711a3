//! AdamW on a CUDA device (real or simulated): the optimizer state of the
//! trainable parameters, and one fused step for all of them.
//!
//! Mixed precision (DESIGN.md, Decision 4): under BF16 the kernels read BF16
//! working copies of the weights, while F32 master weights and the AdamW
//! moments stay F32 here; the fused AdamW kernel updates the master and
//! writes the new BF16 copy. Under F32 the working copy is the master.
//! Gradients are always F32. The host copies (the parameters and the CPU
//! AdamW's moments) are brought up to date only when asked.

use crate::backend;
use crate::device::{DeviceBuffer, Elem};
use crate::error::{Error, Result};
use crate::optim::AdamW;
use crate::optim::adamw::Moments;
use crate::tensor::Tensor;

/// One trainable parameter's state, as device tensors of its shape.
struct OptimizerSlot {
    /// The F32 master; None when the working copy is F32 and is the master.
    master: Option<Tensor>,
    m: Tensor,
    v: Tensor,
}

pub struct DeviceAdamW {
    /// One per parameter; None for frozen parameters (no optimizer state).
    slots: Vec<Option<OptimizerSlot>>,
}

/// The device buffer of a tensor that must be on the device.
fn on_device<'a>(t: &'a Tensor, what: &str) -> Result<&'a DeviceBuffer> {
    t.device_buffer().ok_or_else(|| Error::Device(format!("{what} is not on the device")))
}

impl DeviceAdamW {
    /// The state of every parameter `optimizer` trains: `working` are the
    /// device tensors the kernels read (F32 or BF16), `host` the F32 (or
    /// F64) host values, which become the masters under BF16; the moments
    /// come from `optimizer`, so a resumed run continues from them.
    pub fn upload(working: &[Tensor], host: &[Tensor], optimizer: &AdamW) -> Result<DeviceAdamW> {
        if working.len() != host.len() {
            return Err(Error::shape("DeviceAdamW::upload", format!("{} device parameters for {} host ones", working.len(), host.len())));
        }
        let Some(first) = working.first() else {
            return Err(Error::InvalidArgument("DeviceAdamW::upload: no parameters".into()));
        };
        let device = on_device(first, "a parameter")?.device().clone();
        let upload = |t: &Tensor| Tensor::from_device(DeviceBuffer::from_f32(&device, &t.to_f32_vec(), Elem::F32)?, t.shape());
        let mut slots = Vec::with_capacity(working.len());
        for (i, (w, h)) in working.iter().zip(host).enumerate() {
            let elem = on_device(w, "a parameter")?.elem();
            slots.push(match optimizer.moments.get(i).cloned().flatten() {
                Some(Moments { m, v }) => {
                    Some(OptimizerSlot { master: if elem == Elem::F32 { None } else { Some(upload(h)?) }, m: upload(&m)?, v: upload(&v)? })
                }
                None => None,
            });
        }
        Ok(DeviceAdamW { slots })
    }

    /// One optimizer step: the global gradient norm, clipping folded into
    /// AdamW as a device-side scale, and the fused update of every trainable
    /// parameter in `working`. `optimizer` supplies the hyper-parameters and
    /// its step count is advanced, as `AdamW::update` does. Returns the norm
    /// before clipping; a non-finite norm is an error and nothing is updated.
    pub fn step(&mut self, working: &[Tensor], optimizer: &mut AdamW, grads: &[Option<Tensor>], lr: f64, max_norm: f64) -> Result<f64> {
        if grads.len() != working.len() || working.len() != self.slots.len() {
            return Err(Error::shape(
                "DeviceAdamW::step",
                format!("{} gradients for {} parameters ({} optimizer slots)", grads.len(), working.len(), self.slots.len()),
            ));
        }
        let present: Vec<&Tensor> = grads.iter().zip(&self.slots).filter(|(_, s)| s.is_some()).filter_map(|(g, _)| g.as_ref()).collect();
        let Some(first) = present.first() else {
            // Nothing trains this step: the step still counts, as on the CPU.
            optimizer.step += 1;
            return Ok(0.0);
        };
        let device = backend::of(first);
        // The clip factor stays on the device and is folded into each update.
        let clip = device.grad_clip(&present, max_norm)?;
        if !clip.norm.is_finite() {
            return Err(Error::Numerical(format!("the gradient norm is {}", clip.norm)));
        }
        optimizer.step += 1;
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let (Some(slot), Some(g)) = (slot, &grads[i]) else { continue };
            if g.device_buffer().is_none() {
                return Err(Error::Device("a CPU gradient reached the device optimizer".into()));
            }
            let scalars = optimizer.scalars(i, lr);
            match &mut slot.master {
                // The master is updated and the new value written into the working copy.
                Some(master) => {
                    device.adamw_update(master, g, &mut slot.m, &mut slot.v, Some(&working[i]), &scalars, Some(&clip.factor))?
                }
                // An F32 working copy is its own master: the update writes it in place (it shares its buffer).
                None => device.adamw_update(&mut working[i].clone(), g, &mut slot.m, &mut slot.v, None, &scalars, Some(&clip.factor))?,
            }
        }
        Ok(clip.norm)
    }

    /// Copies the F32 weights (masters where they exist, else the working
    /// copies) into `host`, in each host tensor's dtype, and the moments into
    /// `optimizer`, so the host copies can be evaluated on the CPU or
    /// written to a checkpoint.
    pub fn download(&self, working: &[Tensor], host: &mut [Tensor], optimizer: Option<&mut AdamW>) -> Result<()> {
        for (i, t) in host.iter_mut().enumerate() {
            let values = match self.slots.get(i).and_then(|s| s.as_ref()).and_then(|s| s.master.as_ref()) {
                Some(master) => master.to_f32_vec(),
                None => working[i].to_f32_vec(),
            };
            *t = Tensor::from_vec(values, t.shape())?.to_dtype(t.dtype());
        }
        if let Some(optimizer) = optimizer {
            for (i, slot) in self.slots.iter().enumerate() {
                let (Some(slot), Some(Some(moments))) = (slot, optimizer.moments.get_mut(i)) else { continue };
                moments.m = Tensor::from_vec(slot.m.to_f32_vec(), moments.m.shape())?.to_dtype(moments.m.dtype());
                moments.v = Tensor::from_vec(slot.v.to_f32_vec(), moments.v.shape())?.to_dtype(moments.v.dtype());
            }
        }
        Ok(())
    }
}

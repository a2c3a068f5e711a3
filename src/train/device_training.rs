//! Training on a CUDA device (real or simulated): the model's working copies
//! (`model::device_model`) and AdamW's state and fused step
//! (`optim::device`), together, as the trainer and `berth bench` use them.

use crate::error::Result;
use crate::model::device_model::{DeviceModel, Precision};
use crate::model::params::ParamStore;
use crate::optim::AdamW;
use crate::optim::device::DeviceAdamW;
use crate::tensor::{DeviceHandle, Tensor};

pub struct DeviceTraining {
    model: DeviceModel,
    adamw: DeviceAdamW,
}

impl DeviceTraining {
    /// The device the run trains on.
    pub fn device(&self) -> &DeviceHandle {
        self.model.device()
    }

    /// Uploads the parameters and the optimizer's moments (a resumed run
    /// continues from them).
    pub fn upload(device: &DeviceHandle, precision: Precision, store: &ParamStore, optimizer: &AdamW) -> Result<DeviceTraining> {
        let model = DeviceModel::upload(device, precision, store)?;
        let adamw = DeviceAdamW::upload(&model.params, store.tensors(), optimizer)?;
        Ok(DeviceTraining { model, adamw })
    }

    /// The working copies, in store order, for the tape.
    pub fn params(&self) -> &[Tensor] {
        &self.model.params
    }

    pub fn precision(&self) -> Precision {
        self.model.precision()
    }

    /// One clipped AdamW step on the device; returns the norm before clipping.
    pub fn step(&mut self, optimizer: &mut AdamW, grads: &[Option<Tensor>], lr: f64, max_norm: f64) -> Result<f64> {
        self.adamw.step(&self.model.params, optimizer, grads, lr, max_norm)
    }

    /// Brings `store` and the optimizer's moments up to date from the device.
    pub fn download(&self, store: &mut ParamStore, optimizer: Option<&mut AdamW>) -> Result<()> {
        self.adamw.download(&self.model.params, store.tensors_mut(), optimizer)
    }
}

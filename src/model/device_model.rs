//! A model's parameters on a CUDA device (real or simulated), for training
//! and inference there: the working copies the kernels read, as device
//! tensors the tape can use. Under BF16 (DESIGN.md, Decision 4) they are BF16
//! copies of the F32 weights; the F32 masters and the AdamW moments of
//! training live in `optim::device`.

use crate::error::Result;
use crate::model::params::ParamStore;
pub use crate::tensor::Precision;
use crate::tensor::{DeviceHandle, Tensor};

pub struct DeviceModel {
    device: DeviceHandle,
    precision: Precision,
    /// Working copies in store order, as device tensors the tape can use.
    pub params: Vec<Tensor>,
}

impl DeviceModel {
    /// Uploads every parameter of `store` as `precision`'s working type.
    pub fn upload(device: &DeviceHandle, precision: Precision, store: &ParamStore) -> Result<DeviceModel> {
        let params = store.tensors().iter().map(|t| t.to_device(device, precision.elem()?)).collect::<Result<Vec<_>>>()?;
        Ok(DeviceModel { device: device.clone(), precision, params })
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    pub fn device(&self) -> &DeviceHandle {
        &self.device
    }
}

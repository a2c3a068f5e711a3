//! Tensors: contiguous, row-major, with a runtime dtype and device.
//!
//! Storage is reference counted, so cloning a tensor (for example to save it
//! for a backward pass, or to register a parameter on the tape) is cheap.
//! Mutation goes through [`Tensor::data_mut`], which copies only when shared.

mod float;
pub mod pool;

use std::sync::Arc;

use half::bf16;

pub use float::Float;

use crate::device::{Device as CudaDevice, DeviceBuffer, Elem};

/// A handle to a CUDA (or simulated) device, where [`Tensor::to_device`]
/// places tensors. The layers above the tensors (model, autograd) hold it
/// without reaching into the device layer's buffers and kernels.
pub type DeviceHandle = CudaDevice;
use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F64,
    BF16,
}

impl DType {
    /// The name errors print, as `Debug` spells it.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::F64 => "F64",
            DType::BF16 => "BF16",
        }
    }

    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F64 => 8,
            DType::BF16 => 2,
        }
    }

    pub fn parse(name: &str) -> Result<DType> {
        match name.to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(DType::F32),
            "f64" | "fp64" | "float64" => Ok(DType::F64),
            "bf16" | "bfloat16" => Ok(DType::BF16),
            other => Err(Error::InvalidArgument(format!("unknown dtype `{other}` (expected f32, f64 or bf16)"))),
        }
    }
}

/// The one message for INT8 where it has no path.
pub const INT8_IS_CPU_INFERENCE: &str = "--precision int8 is CPU inference only (predict, eval, serve, bench --case fwd): use --device cpu, and train in fp32 (or bf16 on a device)";

/// The precision `--precision` asks for: what a model computes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    Fp32,
    /// BF16 activations and GEMM operands, F32 accumulation, F32 master weights.
    Bf16,
    /// CPU inference only: the encoder's linear layers in dynamic INT8
    /// (INT8 weights per output channel, INT8 activations per token, INT32
    /// sums); everything else in f32.
    Int8,
}

impl Precision {
    /// The element type of a device's working copies; INT8 has no device path.
    pub fn elem(self) -> Result<Elem> {
        match self {
            Precision::Fp32 => Ok(Elem::F32),
            Precision::Bf16 => Ok(Elem::BF16),
            Precision::Int8 => Err(Error::InvalidArgument(INT8_IS_CPU_INFERENCE.into())),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Device {
    Cpu,
    Cuda(usize),
}

#[derive(Clone, Debug)]
pub enum Storage {
    F32(Vec<f32>),
    F64(Vec<f64>),
    BF16(Vec<bf16>),
    /// F32 or BF16 values in a CUDA (or simulated) device's memory. Shared,
    /// never copied: device tensors are not mutated through `data_mut`.
    Device(Arc<DeviceBuffer>),
}

impl Drop for Storage {
    /// Hands the buffer to the pool, so the next tensor of this size reuses it.
    fn drop(&mut self) {
        match self {
            Storage::F32(v) => pool::give(std::mem::take(v)),
            Storage::F64(v) => pool::give(std::mem::take(v)),
            Storage::BF16(v) => pool::give(std::mem::take(v)),
            Storage::Device(_) => {}
        }
    }
}

impl Storage {
    pub fn dtype(&self) -> DType {
        match self {
            Storage::F32(_) => DType::F32,
            Storage::F64(_) => DType::F64,
            Storage::BF16(_) => DType::BF16,
            Storage::Device(b) => match b.elem() {
                Elem::BF16 => DType::BF16,
                _ => DType::F32,
            },
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Storage::F32(v) => v.len(),
            Storage::F64(v) => v.len(),
            Storage::BF16(v) => v.len(),
            Storage::Device(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Clone, Debug)]
pub struct Tensor {
    shape: Vec<usize>,
    storage: Arc<Storage>,
    device: Device,
}

pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl Tensor {
    /// Builds a CPU tensor from a vector; the length must match the shape.
    pub fn from_vec<T: Float>(data: Vec<T>, shape: &[usize]) -> Result<Tensor> {
        if data.len() != numel(shape) {
            return Err(Error::shape("Tensor::from_vec", format!("{} values do not fill shape {:?}", data.len(), shape)));
        }
        Ok(Tensor { shape: shape.to_vec(), storage: Arc::new(T::into_storage(data)), device: Device::Cpu })
    }

    pub fn from_storage(storage: Storage, shape: &[usize]) -> Result<Tensor> {
        if storage.len() != numel(shape) {
            return Err(Error::shape("Tensor::from_storage", format!("{} values do not fill shape {:?}", storage.len(), shape)));
        }
        Ok(Tensor { shape: shape.to_vec(), storage: Arc::new(storage), device: Device::Cpu })
    }

    pub fn zeros(shape: &[usize], dtype: DType) -> Tensor {
        let n = numel(shape);
        let storage = match dtype {
            DType::F32 => Storage::F32(pool::zeros(n)),
            DType::F64 => Storage::F64(pool::zeros(n)),
            DType::BF16 => Storage::BF16(pool::zeros(n)),
        };
        Tensor { shape: shape.to_vec(), storage: Arc::new(storage), device: Device::Cpu }
    }

    pub fn full(shape: &[usize], value: f64, dtype: DType) -> Tensor {
        let n = numel(shape);
        let storage = match dtype {
            DType::F32 => Storage::F32(vec![value as f32; n]),
            DType::F64 => Storage::F64(vec![value; n]),
            DType::BF16 => Storage::BF16(vec![bf16::from_f64(value); n]),
        };
        Tensor { shape: shape.to_vec(), storage: Arc::new(storage), device: Device::Cpu }
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn dims(&self) -> usize {
        self.shape.len()
    }

    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }

    pub fn dtype(&self) -> DType {
        self.storage.dtype()
    }

    pub fn device(&self) -> Device {
        self.device
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The size of the last dimension, and the number of rows before it.
    pub fn rows_cols(&self) -> (usize, usize) {
        let cols = *self.shape.last().unwrap_or(&1);
        let rows = if cols == 0 { 0 } else { self.numel() / cols };
        (rows, cols)
    }

    /// Borrows the values as `T`; an error names `op` when the dtype differs.
    pub fn data<T: Float>(&self) -> Result<&[T]> {
        if self.is_on_device() {
            return Err(Error::Device("a CPU op was given a device tensor (download it with to_host first)".into()));
        }
        T::slice(&self.storage).ok_or(Error::DType { op: "Tensor::data", dtype: self.dtype().name() })
    }

    /// Mutable access; copies the storage first when another tensor shares it.
    pub fn data_mut<T: Float>(&mut self) -> Result<&mut [T]> {
        if self.is_on_device() {
            return Err(Error::Device("device tensors are not mutated from the host".into()));
        }
        let dtype = self.dtype();
        T::slice_mut(Arc::make_mut(&mut self.storage)).ok_or(Error::DType { op: "Tensor::data_mut", dtype: dtype.name() })
    }

    /// The same values under another shape with the same number of elements.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if numel(shape) != self.numel() {
            return Err(Error::shape("reshape", format!("{:?} cannot become {:?}", self.shape, shape)));
        }
        Ok(Tensor { shape: shape.to_vec(), storage: self.storage.clone(), device: self.device })
    }

    /// Converts to another dtype (a copy, even when the dtype is the same).
    pub fn to_dtype(&self, dtype: DType) -> Tensor {
        let values: Vec<f64> = self.to_f64_vec();
        let storage = match dtype {
            DType::F32 => Storage::F32(values.iter().map(|&v| v as f32).collect()),
            DType::F64 => Storage::F64(values),
            DType::BF16 => Storage::BF16(values.iter().map(|&v| bf16::from_f64(v)).collect()),
        };
        Tensor { shape: self.shape.clone(), storage: Arc::new(storage), device: Device::Cpu }
    }

    /// The values as f64. A device tensor is downloaded; should that fail
    /// (a lost device), the values read as NaN, which every caller's
    /// finiteness checks report.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match &*self.storage {
            Storage::F32(v) => v.iter().map(|&x| x as f64).collect(),
            Storage::F64(v) => v.clone(),
            Storage::BF16(v) => v.iter().map(|x| x.to_f64()).collect(),
            Storage::Device(_) => self.to_f32_vec().iter().map(|&x| x as f64).collect(),
        }
    }

    pub fn to_f32_vec(&self) -> Vec<f32> {
        match &*self.storage {
            Storage::F32(v) => v.clone(),
            Storage::F64(v) => v.iter().map(|&x| x as f32).collect(),
            Storage::BF16(v) => v.iter().map(|x| x.to_f32()).collect(),
            Storage::Device(b) => b.to_f32_vec().unwrap_or_else(|_| vec![f32::NAN; b.len()]),
        }
    }

    /// A device tensor over `buffer` (F32 or BF16, as many elements as the shape).
    pub fn from_device(buffer: DeviceBuffer, shape: &[usize]) -> Result<Tensor> {
        if buffer.len() != numel(shape) || !matches!(buffer.elem(), Elem::F32 | Elem::BF16) {
            return Err(Error::shape("Tensor::from_device", format!("{buffer:?} cannot hold shape {shape:?}")));
        }
        Ok(Tensor { shape: shape.to_vec(), storage: Arc::new(Storage::Device(Arc::new(buffer))), device: Device::Cuda(0) })
    }

    pub fn is_on_device(&self) -> bool {
        matches!(&*self.storage, Storage::Device(_))
    }

    /// The device buffer behind a device tensor.
    pub fn device_buffer(&self) -> Option<&DeviceBuffer> {
        match &*self.storage {
            Storage::Device(b) => Some(b),
            _ => None,
        }
    }

    /// Uploads a CPU tensor to `device` as `elem` (F32 or BF16); a device tensor is returned as is.
    pub fn to_device(&self, device: &DeviceHandle, elem: Elem) -> Result<Tensor> {
        if self.is_on_device() {
            return Ok(self.clone());
        }
        Tensor::from_device(DeviceBuffer::from_f32(device, &self.to_f32_vec(), elem)?, &self.shape)
    }

    /// `values` as a tensor of `shape` placed where `like` is and in its
    /// element type (a device tensor's values pass through f32, as uploads do).
    pub fn from_f64_like(values: Vec<f64>, shape: &[usize], like: &Tensor) -> Result<Tensor> {
        match like.device_buffer() {
            Some(buffer) => {
                let narrow: Vec<f32> = values.iter().map(|&v| v as f32).collect();
                Tensor::from_device(DeviceBuffer::from_f32(buffer.device(), &narrow, buffer.elem())?, shape)
            }
            None => Ok(Tensor::from_vec(values, shape)?.to_dtype(like.dtype())),
        }
    }

    /// Downloads a device tensor into an F32 CPU tensor; a CPU tensor is returned as is.
    pub fn to_host(&self) -> Result<Tensor> {
        match &*self.storage {
            Storage::Device(b) => Tensor::from_vec(b.to_f32_vec()?, &self.shape),
            _ => Ok(self.clone()),
        }
    }

    /// Whether two tensors share the same storage (used to avoid copies).
    pub fn shares_storage(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.storage, &other.storage)
    }

    /// Raw little-endian bytes of the values, for checkpoint writing.
    pub fn to_le_bytes(&self) -> Vec<u8> {
        match &*self.storage {
            Storage::Device(_) => self.to_dtype(self.dtype()).to_le_bytes(),
            Storage::F32(v) => bytemuck::cast_slice(v).to_vec(),
            Storage::F64(v) => bytemuck::cast_slice(v).to_vec(),
            Storage::BF16(v) => bytemuck::cast_slice(v).to_vec(),
        }
    }
}

/// Runs `$body` with `$T` bound to the Rust float type of `$dtype` (F32 or
/// F64). BF16 compute on the CPU is not offered: it returns a DType error
/// naming `$op`.
#[macro_export]
macro_rules! with_float {
    ($dtype:expr, $op:expr, |$T:ident| $body:expr) => {
        match $dtype {
            $crate::tensor::DType::F32 => {
                type $T = f32;
                $body
            }
            $crate::tensor::DType::F64 => {
                type $T = f64;
                $body
            }
            other => Err($crate::error::Error::DType { op: $op, dtype: other.name() }),
        }
    };
}

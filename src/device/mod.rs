//! The device interface the CUDA backend runs on (DESIGN.md, "The GPU when
//! there is no GPU"). Two implementations:
//!
//! - [`real::CudaDevice`]: a GPU through cudarc, kernels from the
//!   embedded PTX, GEMMs through cuBLASLt;
//! - [`sim::SimDevice`]: host memory, the same `kernels/*.cu` compiled
//!   as C++, and GEMMs interpreted from the same descriptor on the CPU.
//!
//! Everything above this trait (launchers, buffers, the check table) is
//! shared, so the simulated device tests launch shapes, argument order,
//! offsets and kernel logic on machines without a GPU.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::Arc;

use half::bf16;

pub mod kernels;
pub mod real;
pub mod sim;

use crate::error::{Error, Result};

/// A device address: a CUdeviceptr on the GPU, a host pointer on the simulator.
pub type DevPtr = u64;

/// Grid, block and dynamic shared memory of one launch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaunchShape {
    pub grid: (u32, u32, u32),
    pub block: (u32, u32, u32),
    pub shared_bytes: u32,
}

impl LaunchShape {
    /// A 1-D grid of `blocks` blocks of `threads` threads.
    pub fn linear(blocks: u32, threads: u32) -> LaunchShape {
        LaunchShape { grid: (blocks.max(1), 1, 1), block: (threads, 1, 1), shared_bytes: 0 }
    }

    pub fn with_shared(mut self, bytes: u32) -> LaunchShape {
        self.shared_bytes = bytes;
        self
    }
}

/// Element types a device buffer can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Elem {
    F32,
    BF16,
    I32,
    U32,
    U8,
}

impl Elem {
    pub fn size(self) -> usize {
        match self {
            Elem::F32 | Elem::I32 | Elem::U32 => 4,
            Elem::BF16 => 2,
            Elem::U8 => 1,
        }
    }

    /// The kernel-name suffix of a float type (`gelu_fwd_f32`, `gelu_fwd_bf16`).
    pub fn suffix(self) -> &'static str {
        match self {
            Elem::F32 => "f32",
            Elem::BF16 => "bf16",
            Elem::I32 => "i32",
            Elem::U32 => "u32",
            Elem::U8 => "u8",
        }
    }
}

/// What cuBLASLt does after the product (CUBLASLT_EPILOGUE_*).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Epilogue {
    /// D = alpha·op(A)·op(B) + beta·C.
    Default,
    /// As Default, plus bias[i] on every row i of D (bias has m entries).
    Bias,
    /// As Default, and bias[j] = Σ_p op(B)[p, j] (n entries): the bias
    /// gradient of a weight-gradient GEMM, reduced over k.
    BGradB,
}

/// One cuBLASLt matmul, described exactly as cuBLASLt takes it: column-major
/// matrices, transposes, leading dimensions and strided batches. D is
/// written in place over C (C = D, same layout), as every caller here wants.
///
/// `D (m × n) = alpha · op(A) (m × k) · op(B) (k × n) + beta · D`
#[derive(Clone, Copy, Debug)]
pub struct Gemm {
    pub trans_a: bool,
    pub trans_b: bool,
    pub m: u64,
    pub n: u64,
    pub k: u64,
    pub a: DevPtr,
    pub lda: u64,
    pub stride_a: u64,
    pub b: DevPtr,
    pub ldb: u64,
    pub stride_b: u64,
    pub d: DevPtr,
    pub ldd: u64,
    pub stride_d: u64,
    /// Element type of A and B (F32 or BF16).
    pub ab_type: Elem,
    /// Element type of D (F32 or BF16). Accumulation is always F32.
    pub d_type: Elem,
    pub batch: u32,
    pub alpha: f32,
    pub beta: f32,
    pub epilogue: Epilogue,
    /// The bias vector (read by Bias, written by BGradB), of type d_type; 0 when unused.
    pub bias: DevPtr,
}

impl Gemm {
    /// Stored rows and columns of A, B and D as laid out in memory (column-major).
    pub fn stored_dims(&self) -> [(u64, u64); 3] {
        let a = if self.trans_a { (self.k, self.m) } else { (self.m, self.k) };
        let b = if self.trans_b { (self.n, self.k) } else { (self.k, self.n) };
        [a, b, (self.m, self.n)]
    }

    /// Checks what cuBLASLt would refuse, with a message naming the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::Device(format!("gemm {}×{}×{} (batch {}): {what}", self.m, self.n, self.k, self.batch)));
        let [(ar, _), (br, _), (dr, _)] = self.stored_dims();
        for (name, ld, rows) in [("lda", self.lda, ar), ("ldb", self.ldb, br), ("ldd", self.ldd, dr)] {
            if ld < rows.max(1) {
                return bad(format!("{name} {ld} is smaller than the {rows} stored rows"));
            }
        }
        if !matches!(self.ab_type, Elem::F32 | Elem::BF16) || !matches!(self.d_type, Elem::F32 | Elem::BF16) {
            return bad(format!("types {:?}/{:?} (expected F32 or BF16)", self.ab_type, self.d_type));
        }
        if self.batch == 0 || self.m == 0 || self.n == 0 || self.k == 0 {
            return bad("empty dimension".into());
        }
        if self.epilogue != Epilogue::Default && self.bias == 0 {
            return bad(format!("{:?} needs a bias pointer", self.epilogue));
        }
        Ok(())
    }
}

/// A device: memory, copies, kernel launches and GEMMs. Launches and GEMMs
/// are queued in order on one stream; copies to the host wait for them.
pub trait DeviceApi: Send + Sync {
    /// A one-line description (card and compute capability, or "simulated").
    fn describe(&self) -> String;
    fn is_simulated(&self) -> bool;
    fn alloc(&self, bytes: usize) -> Result<DevPtr>;
    /// # Safety
    /// `ptr` came from this device's `alloc` and is not used afterwards.
    unsafe fn free(&self, ptr: DevPtr);
    /// # Safety
    /// `dst` points to at least `src.len()` bytes of this device's memory.
    unsafe fn copy_to_device(&self, dst: DevPtr, src: &[u8]) -> Result<()>;
    /// # Safety
    /// `src` points to at least `dst.len()` bytes of this device's memory.
    unsafe fn copy_to_host(&self, dst: &mut [u8], src: DevPtr) -> Result<()>;
    /// # Safety
    /// Both ranges are `bytes` long, inside this device's memory.
    unsafe fn copy_on_device(&self, dst: DevPtr, src: DevPtr, bytes: usize) -> Result<()>;
    /// # Safety
    /// `dst` points to at least `bytes` bytes of this device's memory.
    unsafe fn fill_bytes(&self, dst: DevPtr, value: u8, bytes: usize) -> Result<()>;
    /// Launches `kernel` (its `extern "C"` name) with a `cuLaunchKernel`-style
    /// argument array: one pointer to each argument's value.
    ///
    /// # Safety
    /// `args` matches the kernel's parameters in number, order and type, and
    /// every buffer they name is large enough for the launch. `buffer_bytes`
    /// is the size of those buffers ([`KernelArgs`] sums them), for the
    /// kernel profile's GB/s; it changes nothing else.
    unsafe fn launch(&self, kernel: &str, shape: LaunchShape, args: &mut [*mut c_void], buffer_bytes: f64) -> Result<()>;
    /// # Safety
    /// Every pointer in `gemm` addresses enough memory for its layout.
    unsafe fn gemm(&self, gemm: &Gemm) -> Result<()>;
    /// Waits for all queued work.
    fn synchronize(&self) -> Result<()>;
    /// Starts timing every launch and GEMM, until [`DeviceApi::take_kernel_profile`].
    fn start_kernel_profile(&self) -> Result<()>;
    /// Waits for the queued work, stops timing, and returns each kernel's
    /// launches and time since the start, largest total first.
    fn take_kernel_profile(&self) -> Result<Vec<KernelProfileRow>>;
}

/// The name GEMMs carry in a kernel profile.
pub const GEMM_PROFILE_NAME: &str = "gemm (cuBLASLt)";

/// One kernel's share of a profiled stretch of device work.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct KernelProfileRow {
    /// The kernel's entry point, or [`GEMM_PROFILE_NAME`] for every GEMM.
    pub kernel: String,
    pub launches: usize,
    pub total_ms: f64,
    /// GEMMs: 2·m·n·k·batch summed over the launches; 0 for other kernels,
    /// whose work the launch does not describe.
    pub flops: f64,
    /// The bytes the launches name, summed: a kernel's buffer arguments
    /// (each as often as it is passed; of a table it gathers from or
    /// scatters into, the rows it touches), a GEMM's A, B, D (twice when
    /// β ≠ 0: read and written) and bias. The least traffic when every
    /// element is read or written once; a kernel that reads and writes a
    /// buffer it names once moves more.
    pub bytes: f64,
}

impl Gemm {
    /// Floating-point operations of this product: a multiply and an add per term.
    pub fn flops(&self) -> f64 {
        2.0 * self.m as f64 * self.n as f64 * self.k as f64 * self.batch as f64
    }

    /// Bytes of its operands: A and B read, D written (and read when β ≠ 0),
    /// the bias read (Bias) or written (BGradB), over every batch.
    pub fn bytes(&self) -> f64 {
        let [(ar, ac), (br, bc), (dr, dc)] = self.stored_dims();
        let batch = self.batch as f64;
        let (ab, d) = (self.ab_type.size() as f64, self.d_type.size() as f64);
        let d_passes = if self.beta != 0.0 { 2.0 } else { 1.0 };
        let bias = match self.epilogue {
            Epilogue::Default => 0.0,
            Epilogue::Bias => self.m as f64,
            Epilogue::BGradB => self.n as f64,
        };
        batch * ((ar * ac + br * bc) as f64 * ab + d_passes * (dr * dc) as f64 * d) + bias * d
    }
}

/// profile.json's kernel part: `kernel_timing` says how the times were
/// taken, and each row of `kernels` gains its mean, its share of the kernels'
/// total, the GB/s of the bytes its launches name ([`KernelProfileRow::bytes`])
/// and, for GEMMs, the TFLOP/s it achieved.
pub fn kernel_profile_json(rows: &[KernelProfileRow], simulated: bool) -> serde_json::Value {
    let total: f64 = rows.iter().map(|r| r.total_ms).sum();
    let kernels: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            let tflops = (r.flops > 0.0 && r.total_ms > 0.0).then(|| r.flops / (r.total_ms / 1e3) / 1e12);
            let gb_per_s = (r.bytes > 0.0 && r.total_ms > 0.0).then(|| r.bytes / (r.total_ms / 1e3) / 1e9);
            serde_json::json!({
                "kernel": r.kernel, "launches": r.launches, "total_ms": r.total_ms,
                "mean_ms": r.total_ms / r.launches.max(1) as f64, "share": r.total_ms / total.max(1e-12),
                "flops": r.flops, "tflops": tflops, "bytes": r.bytes, "gb_per_s": gb_per_s,
            })
        })
        .collect();
    let timing = if simulated {
        "simulated: the host's wall clock around each kernel of the C++ build and each interpreted GEMM; counts and flops are \
         the device's, times are not a GPU's"
    } else {
        "CUDA events recorded on the stream around each launch and each GEMM"
    };
    serde_json::json!({"kernel_timing": timing, "simulated": simulated, "kernels_total_ms": total, "kernels": kernels})
}

/// Accumulates (kernel, seconds, flops, bytes) into per-kernel rows.
#[derive(Default)]
pub(crate) struct KernelTally(HashMap<String, KernelProfileRow>);

impl KernelTally {
    pub(crate) fn add(&mut self, kernel: &str, seconds: f64, flops: f64, bytes: f64) {
        let row = self
            .0
            .entry(kernel.to_string())
            .or_insert_with(|| KernelProfileRow { kernel: kernel.to_string(), ..KernelProfileRow::default() });
        row.launches += 1;
        row.total_ms += seconds * 1e3;
        row.flops += flops;
        row.bytes += bytes;
    }

    /// The rows, largest total first.
    pub(crate) fn rows(self) -> Vec<KernelProfileRow> {
        let mut rows: Vec<KernelProfileRow> = self.0.into_values().collect();
        rows.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms).then_with(|| a.kernel.cmp(&b.kernel)));
        rows
    }
}

/// A shared handle to a device.
pub type Device = Arc<dyn DeviceApi>;

/// An owned allocation on a device, freed on drop.
pub struct DeviceBuffer {
    device: Device,
    ptr: DevPtr,
    len: usize,
    elem: Elem,
}

impl std::fmt::Debug for DeviceBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceBuffer({:?} × {})", self.elem, self.len)
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        if self.ptr != 0 {
            // SAFETY: the pointer came from this device's alloc and is dropped once.
            unsafe { self.device.free(self.ptr) }
        }
    }
}

impl DeviceBuffer {
    /// Uninitialised memory for `len` elements (at least one byte is allocated).
    pub fn uninit(device: &Device, len: usize, elem: Elem) -> Result<DeviceBuffer> {
        let ptr = device.alloc((len * elem.size()).max(16))?;
        Ok(DeviceBuffer { device: device.clone(), ptr, len, elem })
    }

    pub fn zeros(device: &Device, len: usize, elem: Elem) -> Result<DeviceBuffer> {
        let b = DeviceBuffer::uninit(device, len, elem)?;
        // SAFETY: b owns len·size bytes.
        unsafe { device.fill_bytes(b.ptr, 0, b.bytes())? };
        Ok(b)
    }

    /// Uploads f32 values as `elem` (F32, or BF16 rounded to nearest even).
    pub fn from_f32(device: &Device, values: &[f32], elem: Elem) -> Result<DeviceBuffer> {
        match elem {
            Elem::F32 => DeviceBuffer::from_bytes(device, bytemuck::cast_slice(values), values.len(), elem),
            Elem::BF16 => {
                let v: Vec<bf16> = values.iter().map(|&x| bf16::from_f32(x)).collect();
                DeviceBuffer::from_bytes(device, bytemuck::cast_slice(&v), values.len(), elem)
            }
            other => Err(Error::Device(format!("from_f32 into a {other:?} buffer"))),
        }
    }

    pub fn from_i32(device: &Device, values: &[i32]) -> Result<DeviceBuffer> {
        DeviceBuffer::from_bytes(device, bytemuck::cast_slice(values), values.len(), Elem::I32)
    }

    pub fn from_u32(device: &Device, values: &[u32]) -> Result<DeviceBuffer> {
        DeviceBuffer::from_bytes(device, bytemuck::cast_slice(values), values.len(), Elem::U32)
    }

    pub fn from_u8(device: &Device, values: &[u8]) -> Result<DeviceBuffer> {
        DeviceBuffer::from_bytes(device, values, values.len(), Elem::U8)
    }

    fn from_bytes(device: &Device, bytes: &[u8], len: usize, elem: Elem) -> Result<DeviceBuffer> {
        let b = DeviceBuffer::uninit(device, len, elem)?;
        // SAFETY: b owns exactly bytes.len() bytes.
        unsafe { device.copy_to_device(b.ptr, bytes)? };
        Ok(b)
    }

    /// Fills the buffer with all-ones bytes: NaN in F32 and BF16, −1 in I32.
    /// Tests poison outputs before a kernel runs, so an element the kernel
    /// forgot to write shows up as NaN instead of a plausible stale value.
    pub fn poison(&self) -> Result<()> {
        // SAFETY: the buffer owns bytes() bytes.
        unsafe { self.device.fill_bytes(self.ptr, 0xff, self.bytes()) }
    }

    pub fn ptr(&self) -> DevPtr {
        self.ptr
    }

    /// The address of element `index` (for sub-views passed to kernels and GEMMs).
    pub fn ptr_at(&self, index: usize) -> DevPtr {
        self.ptr + (index * self.elem.size()) as u64
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn elem(&self) -> Elem {
        self.elem
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn bytes(&self) -> usize {
        self.len * self.elem.size()
    }

    fn read<T: bytemuck::Pod>(&self) -> Result<Vec<T>> {
        let mut values = vec![T::zeroed(); self.len];
        // SAFETY: the buffer owns exactly len·size_of::<T>() bytes (callers match T to elem).
        unsafe { self.device.copy_to_host(bytemuck::cast_slice_mut(&mut values), self.ptr)? };
        Ok(values)
    }

    /// Downloads float values as f32 (BF16 widened exactly).
    pub fn to_f32_vec(&self) -> Result<Vec<f32>> {
        match self.elem {
            Elem::F32 => self.read::<f32>(),
            Elem::BF16 => Ok(self.read::<bf16>()?.iter().map(|v| v.to_f32()).collect()),
            other => Err(Error::Device(format!("to_f32_vec on a {other:?} buffer"))),
        }
    }

    pub fn to_i32_vec(&self) -> Result<Vec<i32>> {
        match self.elem {
            Elem::I32 => self.read::<i32>(),
            other => Err(Error::Device(format!("to_i32_vec on a {other:?} buffer"))),
        }
    }

    /// Copies `other` into this buffer (same element type and length).
    pub fn copy_from(&self, other: &DeviceBuffer) -> Result<()> {
        if other.elem != self.elem || other.len != self.len {
            return Err(Error::Device(format!("copy of {other:?} into {self:?}")));
        }
        // SAFETY: both own bytes() bytes on the same device.
        unsafe { self.device.copy_on_device(self.ptr, other.ptr, self.bytes()) }
    }
}

/// Kernel arguments, packed the way `cuLaunchKernel` wants them: each value
/// in its own 8-byte slot, and an array of pointers to the slots.
#[derive(Default)]
pub struct KernelArgs {
    slots: Vec<u64>,
    /// The bytes of the buffers passed with [`KernelArgs::buf`], for the profile.
    buffer_bytes: usize,
}

impl KernelArgs {
    pub fn new() -> KernelArgs {
        KernelArgs { slots: Vec::with_capacity(16), buffer_bytes: 0 }
    }

    /// A buffer's device address (a `T*` parameter); its size counts in the
    /// launch's bytes ([`KernelProfileRow::bytes`]).
    pub fn buf(mut self, b: &DeviceBuffer) -> Self {
        self.slots.push(b.ptr());
        self.buffer_bytes += b.bytes();
        self
    }

    /// A buffer of which the launch reads or writes only `elements` (a
    /// table's gathered rows): those count in the launch's bytes, not the
    /// whole buffer.
    pub fn buf_touching(mut self, b: &DeviceBuffer, elements: usize) -> Self {
        self.slots.push(b.ptr());
        self.buffer_bytes += elements.min(b.len()) * b.elem().size();
        self
    }

    /// A raw device address, for sub-views or nullable pointers (0 is
    /// nullptr); it does not count in the launch's bytes.
    pub fn ptr(mut self, p: DevPtr) -> Self {
        self.slots.push(p);
        self
    }

    pub fn i32(mut self, v: i32) -> Self {
        self.slots.push(v as u32 as u64);
        self
    }

    pub fn u32(mut self, v: u32) -> Self {
        self.slots.push(v as u64);
        self
    }

    pub fn f32(mut self, v: f32) -> Self {
        self.slots.push(v.to_bits() as u64);
        self
    }

    pub fn u64(mut self, v: u64) -> Self {
        self.slots.push(v);
        self
    }

    /// An `int` size argument, refusing values that do not fit.
    pub fn len(self, v: usize) -> Result<Self> {
        let v = i32::try_from(v).map_err(|_| Error::Device(format!("size {v} does not fit a kernel's int parameter")))?;
        Ok(self.i32(v))
    }

    /// Launches `kernel` with these arguments. Little-endian slots make a
    /// 4-byte parameter read the low half of its slot, as the kernel expects.
    pub fn launch(mut self, device: &Device, kernel: &str, shape: LaunchShape) -> Result<()> {
        let mut pointers: Vec<*mut c_void> = self.slots.iter_mut().map(|s| s as *mut u64 as *mut c_void).collect();
        // SAFETY: the launchers in ops/ build each argument list against the
        // kernel's signature, and the check table runs every one of them on
        // the simulated device, which reads arguments through the same array.
        unsafe { device.launch(kernel, shape, &mut pointers, self.buffer_bytes as f64) }
    }
}

/// Blocks for a grid-stride elementwise kernel over `n` elements.
pub fn elementwise_blocks(n: usize, threads: u32) -> u32 {
    (n.div_ceil(threads as usize)).clamp(1, 65_535) as u32
}

/// The most blocks a grid-stride kernel gets on the simulated device, where
/// every block costs a round of OS-thread barriers: a few blocks cover any
/// size by striding, which also exercises the stride on every run.
pub const SIM_MAX_GRID_STRIDE_BLOCKS: u32 = 8;

/// As [`elementwise_blocks`], capped on the simulated device. Only for
/// kernels whose result does not depend on the grid (plain grid-stride loops).
pub fn grid_stride_blocks(device: &Device, n: usize, threads: u32) -> u32 {
    let blocks = elementwise_blocks(n, threads);
    if device.is_simulated() { blocks.min(SIM_MAX_GRID_STRIDE_BLOCKS) } else { blocks }
}

/// Which device `--device` asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceChoice {
    /// CUDA when a GPU is there, otherwise the CPU (and it says so).
    Auto,
    Cpu,
    Cuda,
    /// The simulated CUDA device: every kernel run on the CPU, for testing.
    Sim,
}

/// Opens the device a choice names; None means the CPU path. `Auto` without
/// a usable GPU prints why it falls back.
pub fn open(choice: DeviceChoice) -> Result<Option<Device>> {
    match choice {
        DeviceChoice::Cpu => Ok(None),
        DeviceChoice::Sim => sim::SimDevice::create().map(Some),
        DeviceChoice::Cuda => real::CudaDevice::create(0).map(Some).map_err(|e| Error::Device(format!("--device cuda: {e}"))),
        DeviceChoice::Auto => match real::CudaDevice::create(0) {
            Ok(d) => Ok(Some(d)),
            Err(e) => {
                eprintln!("device auto: using the CPU ({e})");
                Ok(None)
            }
        },
    }
}

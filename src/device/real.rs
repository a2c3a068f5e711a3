//! The real device: a GPU through cudarc. The thin layer the simulator
//! cannot test, so it only forwards: memory and copies to the driver,
//! launches to `cuLaunchKernel` with the caller's argument array, and GEMM
//! descriptors field by field to cuBLASLt.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use cudarc::cublaslt::{result as lt, sys as lt_sys};
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaStream, result as drv, sys as drv_sys};
use cudarc::nvrtc::Ptx;

use super::kernels::{KernelFile, file_of_kernel};
use super::{DevPtr, Device, DeviceApi, Elem, Epilogue, Gemm, LaunchShape};
use crate::error::{Error, Result};

/// cuBLASLt's workspace: 32 MiB is what NVIDIA recommends for Hopper.
const WORKSPACE_BYTES: usize = 32 << 20;

pub struct CudaDevice {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    description: String,
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    functions: Mutex<HashMap<String, CudaFunction>>,
    lt_handle: lt_sys::cublasLtHandle_t,
    workspace: DevPtr,
    /// While profiling: every launch's and GEMM's (name, start and end
    /// events, flops), read and destroyed by `take_kernel_profile`.
    timed: Mutex<Option<Vec<TimedLaunch>>>,
    /// Whether `timed` is collecting: read on every launch without the lock.
    profiling: AtomicBool,
}

/// One profiled launch: events recorded on the stream around it.
struct TimedLaunch {
    kernel: String,
    start: drv_sys::CUevent,
    end: drv_sys::CUevent,
    flops: f64,
    bytes: f64,
}

// SAFETY: the cuBLASLt handle is used only through &self methods that bind
// the context first; cuBLASLt handles may be shared across host threads
// when calls on them are not concurrent, which the stream order ensures.
unsafe impl Send for CudaDevice {}
unsafe impl Sync for CudaDevice {}

fn driver_err(what: &str) -> impl Fn(drv::DriverError) -> Error + '_ {
    move |e| Error::Device(format!("{what}: {e}"))
}

fn lt_err(what: &str) -> impl Fn(cudarc::cublaslt::result::CublasError) -> Error + '_ {
    move |e| Error::Device(format!("cuBLASLt {what}: {e:?}"))
}

impl CudaDevice {
    /// Opens GPU `ordinal`. Every library is checked before cudarc touches
    /// it, so a machine without a GPU gets an error, never a panic.
    pub fn create(ordinal: usize) -> Result<Device> {
        // SAFETY: these only try to dlopen the libraries.
        let (driver, cublaslt) = unsafe { (drv_sys::is_culib_present(), lt_sys::is_culib_present()) };
        if !driver {
            return Err(Error::Device("no CUDA driver (libcuda) on this machine; use --device cpu or --device sim".into()));
        }
        if !cublaslt {
            return Err(Error::Device("libcublasLt was not found; install the CUDA runtime libraries".into()));
        }
        let count = CudaContext::device_count().map_err(driver_err("counting devices"))?;
        if ordinal as i32 >= count {
            return Err(Error::Device(format!("CUDA device {ordinal} requested, but this machine has {count}")));
        }
        let ctx = CudaContext::new(ordinal).map_err(driver_err("creating a context"))?;
        let stream = ctx.default_stream();
        let name = ctx.name().unwrap_or_else(|_| "unknown GPU".into());
        let (major, minor) = ctx.compute_capability().map_err(driver_err("compute capability"))?;
        let lt_handle = lt::create_handle().map_err(lt_err("handle"))?;
        // SAFETY: the context is current (CudaContext::new binds it).
        let workspace = unsafe { drv::malloc_sync(WORKSPACE_BYTES) }.map_err(driver_err("cuBLASLt workspace"))?;
        Ok(Arc::new(CudaDevice {
            ctx,
            stream,
            description: format!("{name} (sm_{major}{minor}), device {ordinal}"),
            modules: Mutex::new(HashMap::new()),
            functions: Mutex::new(HashMap::new()),
            lt_handle,
            workspace,
            timed: Mutex::new(None),
            profiling: AtomicBool::new(false),
        }))
    }

    fn bind(&self) -> Result<()> {
        self.ctx.bind_to_thread().map_err(driver_err("binding the context"))
    }

    /// While profiling, records an event on the stream (before or after a
    /// launch); None when not profiling.
    fn profile_event(&self) -> Result<Option<drv_sys::CUevent>> {
        if !self.profiling.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let event = drv::event::create(drv_sys::CUevent_flags::CU_EVENT_DEFAULT).map_err(driver_err("creating a profile event"))?;
        // SAFETY: a live event, on this context's stream.
        unsafe { drv::event::record(event, self.stream.cu_stream()) }.map_err(driver_err("recording a profile event"))?;
        Ok(Some(event))
    }

    /// Closes a profiled launch that `start` opened.
    fn end_profiled(&self, start: Option<drv_sys::CUevent>, kernel: &str, flops: f64, bytes: f64) -> Result<()> {
        let Some(start) = start else { return Ok(()) };
        let end = self.profile_event()?.ok_or_else(|| Error::Device("profiling stopped during a launch".into()))?;
        if let Some(timed) = self.timed.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            timed.push(TimedLaunch { kernel: kernel.to_string(), start, end, flops, bytes });
        }
        Ok(())
    }

    /// The fatbin when it has code for this card, else the PTX, else NVRTC.
    fn load_file(&self, file: &'static KernelFile) -> Result<Arc<CudaModule>> {
        let mut modules = self.modules.lock().unwrap();
        if let Some(m) = modules.get(file.name) {
            return Ok(m.clone());
        }
        let mut errors = Vec::new();
        let mut module = None;
        if let Some(fatbin) = file.fatbin {
            match self.ctx.load_module(Ptx::from_binary(fatbin.to_vec())) {
                Ok(m) => module = Some(m),
                Err(e) => errors.push(format!("fatbin: {e}")),
            }
        }
        if module.is_none()
            && let Some(ptx) = file.ptx
        {
            match self.ctx.load_module(Ptx::from_src(ptx)) {
                Ok(m) => module = Some(m),
                Err(e) => errors.push(format!("PTX: {e}")),
            }
        }
        if module.is_none() {
            let source = file.source.replace("#include \"common.cuh\"", include_str!("../../kernels/common.cuh"));
            // compute_80: the tensor-core kernels need bf16 WMMA (sm_80 and newer).
            let opts = cudarc::nvrtc::CompileOptions { arch: Some("compute_80"), include_paths: cuda_include_dirs(), ..Default::default() };
            match cudarc::nvrtc::compile_ptx_with_opts(source, opts) {
                Ok(ptx) => match self.ctx.load_module(ptx) {
                    Ok(m) => module = Some(m),
                    Err(e) => errors.push(format!("NVRTC PTX: {e}")),
                },
                Err(e) => errors.push(format!("NVRTC: {e}")),
            }
        }
        let module = module.ok_or_else(|| Error::Device(format!("kernels/{}.cu would not load: {}", file.name, errors.join("; "))))?;
        modules.insert(file.name, module.clone());
        Ok(module)
    }

    fn function(&self, kernel: &str) -> Result<CudaFunction> {
        if let Some(f) = self.functions.lock().unwrap().get(kernel) {
            return Ok(f.clone());
        }
        let file = file_of_kernel(kernel).ok_or_else(|| Error::Device(format!("{kernel}: no such kernel in kernels/*.cu")))?;
        let module = self.load_file(file)?;
        let f = module.load_function(kernel).map_err(driver_err(kernel))?;
        self.functions.lock().unwrap().insert(kernel.to_string(), f.clone());
        Ok(f)
    }
}

impl Drop for CudaDevice {
    fn drop(&mut self) {
        let _ = self.ctx.bind_to_thread();
        // SAFETY: created in `create` and not used after this.
        unsafe {
            let _ = drv::free_sync(self.workspace);
            let _ = lt::destroy_handle(self.lt_handle);
        }
    }
}

fn data_type(elem: Elem) -> lt_sys::cudaDataType {
    match elem {
        Elem::BF16 => lt_sys::cudaDataType::CUDA_R_16BF,
        _ => lt_sys::cudaDataType::CUDA_R_32F,
    }
}

/// A matrix layout with its batch attributes; destroyed on drop.
struct Layout(lt_sys::cublasLtMatrixLayout_t);

impl Layout {
    fn new(elem: Elem, rows: u64, cols: u64, ld: u64, batch: u32, stride: u64) -> Result<Layout> {
        let layout = Layout(lt::create_matrix_layout(data_type(elem), rows, cols, ld as i64).map_err(lt_err("matrix layout"))?);
        if batch > 1 {
            let count = batch as i32;
            let stride = stride as i64;
            // SAFETY: attribute sizes match cuBLASLt's documented types (int32, int64).
            unsafe {
                lt::set_matrix_layout_attribute(
                    layout.0,
                    lt_sys::cublasLtMatrixLayoutAttribute_t::CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                    &count as *const i32 as *const c_void,
                    4,
                )
                .map_err(lt_err("batch count"))?;
                lt::set_matrix_layout_attribute(
                    layout.0,
                    lt_sys::cublasLtMatrixLayoutAttribute_t::CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                    &stride as *const i64 as *const c_void,
                    8,
                )
                .map_err(lt_err("batch stride"))?;
            }
        }
        Ok(layout)
    }
}

impl Drop for Layout {
    fn drop(&mut self) {
        // SAFETY: created above, destroyed once.
        unsafe {
            let _ = lt::destroy_matrix_layout(self.0);
        }
    }
}

struct MatmulDesc(lt_sys::cublasLtMatmulDesc_t);

impl MatmulDesc {
    fn set<T>(&self, attr: lt_sys::cublasLtMatmulDescAttributes_t, value: &T) -> Result<()> {
        // SAFETY: callers pass the attribute's documented type.
        unsafe { lt::set_matmul_desc_attribute(self.0, attr, value as *const T as *const c_void, size_of::<T>()) }
            .map_err(lt_err("matmul attribute"))
    }
}

impl Drop for MatmulDesc {
    fn drop(&mut self) {
        // SAFETY: created in gemm, destroyed once.
        unsafe {
            let _ = lt::destroy_matmul_desc(self.0);
        }
    }
}

struct Preference(lt_sys::cublasLtMatmulPreference_t);

impl Drop for Preference {
    fn drop(&mut self) {
        // SAFETY: created in gemm, destroyed once.
        unsafe {
            let _ = lt::destroy_matmul_pref(self.0);
        }
    }
}

impl DeviceApi for CudaDevice {
    fn describe(&self) -> String {
        self.description.clone()
    }

    fn is_simulated(&self) -> bool {
        false
    }

    fn alloc(&self, bytes: usize) -> Result<DevPtr> {
        self.bind()?;
        // SAFETY: the context is bound; the stream belongs to it.
        unsafe { drv::malloc_async(self.stream.cu_stream(), bytes.max(1)) }.map_err(driver_err("allocating device memory"))
    }

    unsafe fn free(&self, ptr: DevPtr) {
        if self.bind().is_ok() {
            // SAFETY: ptr came from alloc on this stream's context.
            unsafe {
                let _ = drv::free_async(ptr, self.stream.cu_stream());
            }
        }
    }

    unsafe fn copy_to_device(&self, dst: DevPtr, src: &[u8]) -> Result<()> {
        self.bind()?;
        // SAFETY: per the trait contract; the copy completes before we return
        // because `src` is borrowed only for this call.
        unsafe { drv::memcpy_htod_async(dst, src, self.stream.cu_stream()) }.map_err(driver_err("copy to device"))?;
        self.synchronize()
    }

    unsafe fn copy_to_host(&self, dst: &mut [u8], src: DevPtr) -> Result<()> {
        self.bind()?;
        // SAFETY: per the trait contract; synchronised before `dst` is read.
        unsafe { drv::memcpy_dtoh_async(dst, src, self.stream.cu_stream()) }.map_err(driver_err("copy to host"))?;
        self.synchronize()
    }

    unsafe fn copy_on_device(&self, dst: DevPtr, src: DevPtr, bytes: usize) -> Result<()> {
        self.bind()?;
        // SAFETY: per the trait contract.
        unsafe { drv::memcpy_dtod_async(dst, src, bytes, self.stream.cu_stream()) }.map_err(driver_err("device copy"))
    }

    unsafe fn fill_bytes(&self, dst: DevPtr, value: u8, bytes: usize) -> Result<()> {
        self.bind()?;
        // SAFETY: per the trait contract.
        unsafe { drv::memset_d8_async(dst, value, bytes, self.stream.cu_stream()) }.map_err(driver_err("memset"))
    }

    unsafe fn launch(&self, kernel: &str, shape: LaunchShape, args: &mut [*mut c_void], buffer_bytes: f64) -> Result<()> {
        self.bind()?;
        let f = self.function(kernel)?;
        if shape.shared_bytes > 48 * 1024 {
            // SAFETY: a valid function handle and a documented attribute.
            unsafe {
                drv_sys::cuFuncSetAttribute(
                    f.cu_function(),
                    drv_sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    shape.shared_bytes as i32,
                )
                .result()
                .map_err(driver_err(kernel))?;
            }
        }
        let start = self.profile_event()?;
        // SAFETY: per the trait contract, args match the kernel's parameters.
        unsafe { drv::launch_kernel(f.cu_function(), shape.grid, shape.block, shape.shared_bytes, self.stream.cu_stream(), args) }
            .map_err(|e| Error::Device(format!("{kernel} {shape:?}: {e}")))?;
        self.end_profiled(start, kernel, 0.0, buffer_bytes)
    }

    unsafe fn gemm(&self, g: &Gemm) -> Result<()> {
        g.validate()?;
        self.bind()?;
        let desc = MatmulDesc(
            lt::create_matmul_desc(lt_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F, lt_sys::cudaDataType::CUDA_R_32F)
                .map_err(lt_err("matmul descriptor"))?,
        );
        // cublasOperation_t as int32: 0 = N, 1 = T.
        let op = |t: bool| t as i32;
        use lt_sys::cublasLtMatmulDescAttributes_t as A;
        desc.set(A::CUBLASLT_MATMUL_DESC_TRANSA, &op(g.trans_a))?;
        desc.set(A::CUBLASLT_MATMUL_DESC_TRANSB, &op(g.trans_b))?;
        let epilogue = match g.epilogue {
            Epilogue::Default => lt_sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_DEFAULT,
            Epilogue::Bias => lt_sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_BIAS,
            Epilogue::BGradB => lt_sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_BGRADB,
        };
        desc.set(A::CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue)?;
        if g.epilogue != Epilogue::Default {
            desc.set(A::CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g.bias)?;
            desc.set(A::CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &data_type(g.d_type))?;
        }
        let [(ar, ac), (br, bc), (dr, dc)] = g.stored_dims();
        let a = Layout::new(g.ab_type, ar, ac, g.lda, g.batch, g.stride_a)?;
        let b = Layout::new(g.ab_type, br, bc, g.ldb, g.batch, g.stride_b)?;
        let d = Layout::new(g.d_type, dr, dc, g.ldd, g.batch, g.stride_d)?;
        let pref = Preference(lt::create_matmul_pref().map_err(lt_err("preference"))?);
        let workspace = WORKSPACE_BYTES as u64;
        // SAFETY: documented attribute type (uint64).
        unsafe {
            lt::set_matmul_pref_attribute(
                pref.0,
                lt_sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                &workspace as *const u64 as *const c_void,
                8,
            )
            .map_err(lt_err("workspace preference"))?;
        }
        let start = self.profile_event()?;
        // SAFETY: all descriptors are live; pointers are valid per the trait contract.
        unsafe {
            let heuristic = lt::get_matmul_algo_heuristic(self.lt_handle, desc.0, a.0, b.0, d.0, d.0, pref.0)
                .map_err(|e| Error::Device(format!("cuBLASLt has no algorithm for {g:?}: {e:?}")))?;
            lt::matmul(
                self.lt_handle,
                desc.0,
                &g.alpha as *const f32 as *const c_void,
                &g.beta as *const f32 as *const c_void,
                g.a as *const c_void,
                a.0,
                g.b as *const c_void,
                b.0,
                g.d as *const c_void,
                d.0,
                g.d as *mut c_void,
                d.0,
                &heuristic.algo,
                self.workspace as *mut c_void,
                WORKSPACE_BYTES,
                self.stream.cu_stream() as lt_sys::cudaStream_t,
            )
            .map_err(lt_err("matmul"))?;
        }
        self.end_profiled(start, super::GEMM_PROFILE_NAME, g.flops(), g.bytes())
    }

    fn synchronize(&self) -> Result<()> {
        self.stream.synchronize().map_err(driver_err("synchronize"))
    }

    fn start_kernel_profile(&self) -> Result<()> {
        *self.timed.lock().unwrap_or_else(|e| e.into_inner()) = Some(Vec::new());
        self.profiling.store(true, Ordering::Relaxed);
        Ok(())
    }

    fn take_kernel_profile(&self) -> Result<Vec<super::KernelProfileRow>> {
        self.bind()?;
        self.synchronize()?;
        self.profiling.store(false, Ordering::Relaxed);
        let timed = self.timed.lock().unwrap_or_else(|e| e.into_inner()).take();
        let timed = timed.ok_or_else(|| Error::Device("take_kernel_profile without start_kernel_profile".into()))?;
        let mut tally = super::KernelTally::default();
        let mut first_error = None;
        for t in timed {
            // SAFETY: both events were created and recorded on this stream, which has finished.
            match unsafe { drv::event::elapsed(t.start, t.end) } {
                Ok(ms) => tally.add(&t.kernel, ms as f64 / 1e3, t.flops, t.bytes),
                Err(e) => first_error = first_error.or(Some(e)),
            }
            // SAFETY: the events are not used again.
            unsafe {
                let _ = drv::event::destroy(t.start);
                let _ = drv::event::destroy(t.end);
            }
        }
        match first_error {
            Some(e) => Err(Error::Device(format!("reading profile events: {e}"))),
            None => Ok(tally.rows()),
        }
    }
}

/// Folders holding the CUDA headers (cuda_bf16.h) for NVRTC: CUDA_HOME,
/// CUDA_PATH, then the usual install location.
pub fn cuda_include_dirs() -> Vec<String> {
    let mut dirs = Vec::new();
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(home) = std::env::var_os(var) {
            dirs.push(std::path::PathBuf::from(home).join("include"));
        }
    }
    dirs.push("/usr/local/cuda/include".into());
    dirs.into_iter().filter(|d| d.join("cuda_bf16.h").is_file()).map(|d| d.display().to_string()).collect()
}

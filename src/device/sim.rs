//! The simulated device: host memory, the kernels compiled as C++ by build.rs
//! (kernels/sim/), and cuBLASLt descriptors interpreted on the CPU with
//! cuBLASLt's column-major semantics. A transpose or leading-dimension
//! mistake in a launcher therefore fails here exactly as it would on a GPU.

use std::alloc::Layout;
use std::collections::HashMap;
use std::ffi::{CString, c_void};
use std::sync::{Arc, Mutex};

use half::bf16;
use rayon::prelude::*;

use super::{DevPtr, Device, DeviceApi, Elem, Epilogue, GEMM_PROFILE_NAME, Gemm, KernelProfileRow, KernelTally, LaunchShape};
use crate::error::{Error, Result};

#[cfg(berth_sim)]
unsafe extern "C" {
    fn berth_sim_launch(
        name: *const std::ffi::c_char,
        gx: u32,
        gy: u32,
        gz: u32,
        bx: u32,
        by: u32,
        bz: u32,
        shared_bytes: u32,
        args: *mut *mut c_void,
    ) -> i32;
}

static SIM_LAUNCH_LOCK: Mutex<()> = Mutex::new(());

/// Allocations are aligned like cudaMalloc's.
const ALIGN: usize = 256;

pub struct SimDevice {
    allocations: Mutex<HashMap<DevPtr, Layout>>,
    /// While profiling: the host's time per kernel (the C++ build's), and
    /// the GEMMs' (the interpreter's). With BERTH_SIM_PROFILE set it starts
    /// at creation and whatever is left is printed on drop.
    profile: Mutex<Option<KernelTally>>,
}

impl Drop for SimDevice {
    fn drop(&mut self) {
        if let Some(tally) = self.profile.lock().unwrap_or_else(|e| e.into_inner()).take() {
            eprintln!("simulated device, time per kernel:");
            for row in tally.rows() {
                eprintln!("  {:<40} {:>9.1} ms {:>7} launches", row.kernel, row.total_ms, row.launches);
            }
        }
    }
}

impl SimDevice {
    /// The simulated device, or an error when build.rs could not build it
    /// (no CUDA headers at build time).
    pub fn create() -> Result<Device> {
        if !super::kernels::SIMULATOR_BUILT {
            return Err(Error::Device(
                "the simulated device was not built: build.rs found no CUDA headers (install the pinned toolchain into .cuda-venv)".into(),
            ));
        }
        let profile = Mutex::new(std::env::var_os("BERTH_SIM_PROFILE").map(|_| KernelTally::default()));
        Ok(Arc::new(SimDevice { allocations: Mutex::new(HashMap::new()), profile }))
    }

    fn check_range(&self, ptr: DevPtr, bytes: usize, what: &str) -> Result<()> {
        let allocations = self.allocations.lock().unwrap();
        let inside = allocations.iter().any(|(&base, layout)| ptr >= base && ptr + bytes as u64 <= base + layout.size() as u64);
        if inside || bytes == 0 {
            Ok(())
        } else {
            Err(Error::Device(format!("{what}: {bytes} bytes at {ptr:#x} are outside every allocation")))
        }
    }
}

impl DeviceApi for SimDevice {
    fn describe(&self) -> String {
        "simulated device (kernels compiled as C++, GEMMs interpreted on the CPU)".into()
    }

    fn is_simulated(&self) -> bool {
        true
    }

    fn alloc(&self, bytes: usize) -> Result<DevPtr> {
        let layout = Layout::from_size_align(bytes.max(1), ALIGN).map_err(|e| Error::Device(format!("alloc of {bytes} bytes: {e}")))?;
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc(layout) };
        if ptr.is_null() {
            return Err(Error::Device(format!("out of host memory allocating {bytes} bytes")));
        }
        self.allocations.lock().unwrap().insert(ptr as DevPtr, layout);
        Ok(ptr as DevPtr)
    }

    unsafe fn free(&self, ptr: DevPtr) {
        if let Some(layout) = self.allocations.lock().unwrap().remove(&ptr) {
            // SAFETY: allocated above with this layout.
            unsafe { std::alloc::dealloc(ptr as *mut u8, layout) }
        }
    }

    unsafe fn copy_to_device(&self, dst: DevPtr, src: &[u8]) -> Result<()> {
        self.check_range(dst, src.len(), "copy to device")?;
        // SAFETY: the range was checked against the allocation table.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst as *mut u8, src.len()) };
        Ok(())
    }

    unsafe fn copy_to_host(&self, dst: &mut [u8], src: DevPtr) -> Result<()> {
        self.check_range(src, dst.len(), "copy to host")?;
        // SAFETY: as above.
        unsafe { std::ptr::copy_nonoverlapping(src as *const u8, dst.as_mut_ptr(), dst.len()) };
        Ok(())
    }

    unsafe fn copy_on_device(&self, dst: DevPtr, src: DevPtr, bytes: usize) -> Result<()> {
        self.check_range(dst, bytes, "device copy destination")?;
        self.check_range(src, bytes, "device copy source")?;
        // SAFETY: as above; copy handles overlap.
        unsafe { std::ptr::copy(src as *const u8, dst as *mut u8, bytes) };
        Ok(())
    }

    unsafe fn fill_bytes(&self, dst: DevPtr, value: u8, bytes: usize) -> Result<()> {
        self.check_range(dst, bytes, "fill")?;
        // SAFETY: as above.
        unsafe { std::ptr::write_bytes(dst as *mut u8, value, bytes) };
        Ok(())
    }

    #[cfg(berth_sim)]
    unsafe fn launch(&self, kernel: &str, shape: LaunchShape, args: &mut [*mut c_void], buffer_bytes: f64) -> Result<()> {
        let name = CString::new(kernel).map_err(|_| Error::Device(format!("kernel name {kernel:?}")))?;
        // Kernels use `static` shared memory and one process-wide thread pool:
        // one launch at a time in the whole process, across SimDevice instances.
        let _one_at_a_time = SIM_LAUNCH_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let (g, b) = (shape.grid, shape.block);
        let started = std::time::Instant::now();
        // SAFETY: the caller guarantees the argument array matches the kernel.
        let status = unsafe { berth_sim_launch(name.as_ptr(), g.0, g.1, g.2, b.0, b.1, b.2, shape.shared_bytes, args.as_mut_ptr()) };
        if let Some(tally) = self.profile.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            tally.add(kernel, started.elapsed().as_secs_f64(), 0.0, buffer_bytes);
        }
        match status {
            0 => Ok(()),
            1 => Err(Error::Device(format!("{kernel}: launch shape {shape:?} is invalid on a CUDA device"))),
            _ => Err(Error::Device(format!("{kernel}: no such kernel in kernels/*.cu"))),
        }
    }

    #[cfg(not(berth_sim))]
    unsafe fn launch(&self, kernel: &str, _shape: LaunchShape, _args: &mut [*mut c_void], _buffer_bytes: f64) -> Result<()> {
        let _ = (CString::new(""), &SIM_LAUNCH_LOCK);
        Err(Error::Device(format!("{kernel}: the simulated device was not built")))
    }

    unsafe fn gemm(&self, g: &Gemm) -> Result<()> {
        g.validate()?;
        let [(ar, ac), (br, bc), (dr, dc)] = g.stored_dims();
        // Bytes from the start of an operand to the end of its last batch's last column.
        let extent = |rows: u64, cols: u64, ld: u64, stride: u64, elem: Elem| {
            ((g.batch as u64 - 1) * stride + (cols - 1) * ld + rows) as usize * elem.size()
        };
        self.check_range(g.a, extent(ar, ac, g.lda, g.stride_a, g.ab_type), "gemm A")?;
        self.check_range(g.b, extent(br, bc, g.ldb, g.stride_b, g.ab_type), "gemm B")?;
        self.check_range(g.d, extent(dr, dc, g.ldd, g.stride_d, g.d_type), "gemm D")?;
        match g.epilogue {
            Epilogue::Default => {}
            Epilogue::Bias => self.check_range(g.bias, g.m as usize * g.d_type.size(), "gemm bias")?,
            Epilogue::BGradB => self.check_range(g.bias, g.n as usize * g.d_type.size(), "gemm bias gradient")?,
        }
        let started = std::time::Instant::now();
        // SAFETY: every operand's extent was checked against the allocation table.
        unsafe { interpret_gemm(g) };
        if let Some(tally) = self.profile.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            tally.add(GEMM_PROFILE_NAME, started.elapsed().as_secs_f64(), g.flops(), g.bytes());
        }
        Ok(())
    }

    fn synchronize(&self) -> Result<()> {
        Ok(())
    }

    fn start_kernel_profile(&self) -> Result<()> {
        *self.profile.lock().unwrap_or_else(|e| e.into_inner()) = Some(KernelTally::default());
        Ok(())
    }

    fn take_kernel_profile(&self) -> Result<Vec<KernelProfileRow>> {
        let tally = self.profile.lock().unwrap_or_else(|e| e.into_inner()).take();
        tally.map(KernelTally::rows).ok_or_else(|| Error::Device("take_kernel_profile without start_kernel_profile".into()))
    }
}

/// Reads element `index` of a float matrix of type `elem` at `base`.
///
/// # Safety
/// The element lies inside an allocation.
unsafe fn read(base: DevPtr, index: u64, elem: Elem) -> f64 {
    // SAFETY: per the function contract.
    unsafe {
        match elem {
            Elem::BF16 => (*(base as *const bf16).add(index as usize)).to_f64(),
            _ => *(base as *const f32).add(index as usize) as f64,
        }
    }
}

/// # Safety
/// As for [`read`].
unsafe fn write(base: DevPtr, index: u64, elem: Elem, v: f64) {
    // SAFETY: per the function contract.
    unsafe {
        match elem {
            Elem::BF16 => *(base as *mut bf16).add(index as usize) = bf16::from_f64(v),
            _ => *(base as *mut f32).add(index as usize) = v as f32,
        }
    }
}

/// cuBLASLt's semantics on the CPU: column-major element (i, j) of a matrix
/// with leading dimension ld is at i + j·ld; op(X) swaps the roles of i and j
/// when X is transposed. Products accumulate in f64 and round once.
///
/// # Safety
/// The operands are valid for the descriptor's extents.
unsafe fn interpret_gemm(g: &Gemm) {
    let op_a = |batch: u64, i: u64, p: u64| {
        let idx = batch * g.stride_a + if g.trans_a { p + i * g.lda } else { i + p * g.lda };
        // SAFETY: inside the checked extent of A.
        unsafe { read(g.a, idx, g.ab_type) }
    };
    let op_b = |batch: u64, p: u64, j: u64| {
        let idx = batch * g.stride_b + if g.trans_b { j + p * g.ldb } else { p + j * g.ldb };
        // SAFETY: inside the checked extent of B.
        unsafe { read(g.b, idx, g.ab_type) }
    };
    for batch in 0..g.batch as u64 {
        // Columns of D are independent: compute them in parallel, then write.
        let columns: Vec<Vec<f64>> = (0..g.n)
            .into_par_iter()
            .map(|j| {
                (0..g.m)
                    .map(|i| {
                        let mut acc = 0.0f64;
                        for p in 0..g.k {
                            acc += op_a(batch, i, p) * op_b(batch, p, j);
                        }
                        let d_index = batch * g.stride_d + i + j * g.ldd;
                        // SAFETY: inside the checked extent of D.
                        let old = if g.beta != 0.0 { unsafe { read(g.d, d_index, g.d_type) } } else { 0.0 };
                        let mut v = g.alpha as f64 * acc + g.beta as f64 * old;
                        if g.epilogue == Epilogue::Bias {
                            // SAFETY: the bias has m entries.
                            v += unsafe { read(g.bias, i, g.d_type) };
                        }
                        v
                    })
                    .collect()
            })
            .collect();
        for (j, column) in columns.iter().enumerate() {
            for (i, &v) in column.iter().enumerate() {
                // SAFETY: inside the checked extent of D.
                unsafe { write(g.d, batch * g.stride_d + i as u64 + j as u64 * g.ldd, g.d_type, v) };
            }
        }
        if g.epilogue == Epilogue::BGradB {
            for j in 0..g.n {
                let sum: f64 = (0..g.k).map(|p| op_b(batch, p, j)).sum();
                // SAFETY: the bias has n entries.
                unsafe { write(g.bias, j, g.d_type, sum) };
            }
        }
    }
}

//! A probe of the real CUDA stack, used by `berth device-info` on a new
//! machine: are the libraries there, does a context come up, do our embedded
//! kernels load and compute what the CPU reference computes.
//!
//! Each step is reported separately and nothing here panics on a machine
//! without a GPU: library presence is checked before cudarc touches them.

use std::sync::Arc;
use std::time::Instant;

use cudarc::driver::{CudaContext, LaunchConfig, PushKernelArg};
use cudarc::nvrtc::Ptx;

use crate::backend::cpu::activation::gelu_fwd;
use crate::device::kernels::kernel_file;
use crate::device::real::cuda_include_dirs;

/// One line of the probe's report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProbeStep {
    pub step: String,
    pub ok: bool,
    pub detail: String,
}

fn step(report: &mut Vec<ProbeStep>, name: &str, result: Result<String, String>) -> bool {
    let ok = result.is_ok();
    let detail = result.unwrap_or_else(|e| e);
    report.push(ProbeStep { step: name.into(), ok, detail });
    ok
}

/// Whether the CUDA driver library can be loaded at all (false on machines without a GPU driver).
pub fn driver_present() -> bool {
    // SAFETY: only tries to dlopen the library; no CUDA call is made.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

pub fn run_probe() -> Vec<ProbeStep> {
    let mut report = Vec::new();
    // SAFETY: these only try to dlopen each library.
    let (driver, nvrtc, cublaslt) = unsafe {
        (cudarc::driver::sys::is_culib_present(), cudarc::nvrtc::sys::is_culib_present(), cudarc::cublaslt::sys::is_culib_present())
    };
    step(&mut report, "libcuda loads", if driver { Ok("yes".into()) } else { Err("libcuda was not found".into()) });
    step(&mut report, "libnvrtc loads", if nvrtc { Ok("yes".into()) } else { Err("libnvrtc was not found".into()) });
    step(&mut report, "libcublasLt loads", if cublaslt { Ok("yes".into()) } else { Err("libcublasLt was not found".into()) });
    if !driver {
        return report;
    }
    let ctx = match CudaContext::new(0) {
        Ok(ctx) => ctx,
        Err(e) => {
            step(&mut report, "context on device 0", Err(e.to_string()));
            return report;
        }
    };
    let name = ctx.name().unwrap_or_else(|e| format!("? ({e})"));
    let cc = ctx.compute_capability().map(|(a, b)| format!("sm_{a}{b}")).unwrap_or_default();
    let count = CudaContext::device_count().unwrap_or(-1);
    step(&mut report, "context on device 0", Ok(format!("{name}, {cc}, {count} device(s)")));

    let Some(gelu) = kernel_file("gelu") else {
        step(&mut report, "embedded kernels", Err("kernels/gelu.cu was not embedded".into()));
        return report;
    };
    if let Some(fatbin) = gelu.fatbin {
        let r = ctx.load_module(Ptx::from_binary(fatbin.to_vec())).map(|_| format!("{} bytes", fatbin.len())).map_err(|e| e.to_string());
        step(&mut report, "fatbin (sm_90/sm_80) loads", r);
    }
    let mut module = None;
    if let Some(ptx) = gelu.ptx {
        match ctx.load_module(Ptx::from_src(ptx)) {
            Ok(m) => {
                step(&mut report, "nvcc PTX loads", Ok(format!("{} bytes of PTX", ptx.len())));
                module = Some(m);
            }
            Err(e) => {
                step(&mut report, "nvcc PTX loads", Err(e.to_string()));
            }
        }
    } else {
        step(&mut report, "nvcc PTX loads", Err("built without nvcc: no PTX embedded".into()));
    }
    if nvrtc {
        let r = std::panic::catch_unwind(|| {
            let opts = cudarc::nvrtc::CompileOptions { arch: Some("sm_90"), include_paths: cuda_include_dirs(), ..Default::default() };
            cudarc::nvrtc::compile_ptx_with_opts(inline_common(gelu.source), opts)
        });
        match r {
            Ok(Ok(ptx)) => match ctx.load_module(ptx) {
                Ok(m) => {
                    step(&mut report, "NVRTC compiles and loads gelu.cu", Ok("yes".into()));
                    module.get_or_insert(m);
                }
                Err(e) => {
                    step(&mut report, "NVRTC compiles and loads gelu.cu", Err(e.to_string()));
                }
            },
            Ok(Err(e)) => {
                step(&mut report, "NVRTC compiles gelu.cu", Err(e.to_string()));
            }
            Err(_) => {
                step(&mut report, "NVRTC compiles gelu.cu", Err("NVRTC panicked".into()));
            }
        }
    }
    if cublaslt {
        let stream = ctx.default_stream();
        let r = std::panic::catch_unwind(move || {
            cudarc::cublaslt::CudaBlasLT::new(stream).map(|_| "handle created".to_string()).map_err(|e| e.to_string())
        });
        step(&mut report, "cuBLASLt handle", r.unwrap_or_else(|_| Err("cuBLASLt panicked".into())));
    }
    if let Some(module) = module {
        step(&mut report, "gelu_fwd_f32 matches the CPU", launch_gelu(&ctx, &module));
    }
    report
}

/// The NVRTC path has no include directory for kernels/, so common.cuh is spliced in.
fn inline_common(source: &str) -> String {
    let common = include_str!("../../kernels/common.cuh");
    source.replace("#include \"common.cuh\"", common)
}

fn launch_gelu(ctx: &Arc<CudaContext>, module: &Arc<cudarc::driver::CudaModule>) -> Result<String, String> {
    let e = |e: cudarc::driver::DriverError| e.to_string();
    let n: usize = 1 << 22;
    let x: Vec<f32> = (0..n).map(|i| crate::rng::normal(1, 2, i as u64) as f32 * 3.0).collect();
    let want = gelu_fwd(&x);
    let f = module.load_function("gelu_fwd_f32").map_err(e)?;
    let stream = ctx.default_stream();
    let x_dev = stream.clone_htod(&x).map_err(e)?;
    let mut y_dev = stream.clone_htod(&vec![f32::NAN; n]).map_err(e)?;
    let n_arg = n as i32;
    let cfg = LaunchConfig { grid_dim: (1024, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
    let mut run = || -> Result<(), String> {
        let mut b = stream.launch_builder(&f);
        b.arg(&x_dev).arg(&mut y_dev).arg(&n_arg);
        // SAFETY: gelu_fwd_f32(const float* x, float* y, int n) with n elements in both buffers.
        unsafe { b.launch(cfg) }.map(|_| ()).map_err(e)
    };
    run()?;
    stream.synchronize().map_err(e)?;
    let reps = 50;
    let start = Instant::now();
    for _ in 0..reps {
        run()?;
    }
    stream.synchronize().map_err(e)?;
    let seconds = start.elapsed().as_secs_f64() / reps as f64;
    let got = stream.clone_dtoh(&y_dev).map_err(e)?;
    let max_err = got.iter().zip(&want).map(|(a, b)| ((a - b).abs() / (1e-5 + 1e-5 * b.abs())) as f64).fold(0.0, f64::max);
    let gbps = (2 * n * 4) as f64 / seconds / 1e9;
    let detail =
        format!("{n} elements, worst error {max_err:.3} of the f32 tolerance (1e-5 + 1e-5·|ref|), {:.1} µs, {gbps:.0} GB/s", seconds * 1e6);
    if max_err <= 1.0 { Ok(detail) } else { Err(detail) }
}

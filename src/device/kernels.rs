//! Kernels embedded at build time: PTX and a fatbin when nvcc was found,
//! and always the source, so NVRTC can compile it at run time otherwise.

/// One `kernels/<name>.cu` file.
#[derive(Debug)]
pub struct KernelFile {
    pub name: &'static str,
    pub source: &'static str,
    /// PTX for sm_90, when build.rs had nvcc.
    pub ptx: Option<&'static str>,
    /// sm_90 + sm_80 machine code and compute_90 PTX, when build.rs had nvcc.
    pub fatbin: Option<&'static [u8]>,
    /// The `extern "C" __global__` kernels the file defines.
    pub kernels: &'static [&'static str],
}

include!(concat!(env!("OUT_DIR"), "/kernels.rs"));

/// Looks up an embedded kernel file by name (the file stem).
pub fn kernel_file(name: &str) -> Option<&'static KernelFile> {
    KERNEL_FILES.iter().find(|k| k.name == name)
}

/// The file that defines kernel `name`.
pub fn file_of_kernel(name: &str) -> Option<&'static KernelFile> {
    KERNEL_FILES.iter().find(|k| k.kernels.contains(&name))
}

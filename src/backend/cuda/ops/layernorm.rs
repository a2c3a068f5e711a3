//! Launchers for kernels/layernorm.cu (being written).

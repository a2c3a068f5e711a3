//! Launchers for kernels/embedding.cu (being written).

//! Launchers for kernels/loss.cu (being written).

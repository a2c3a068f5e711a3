//! Launchers for kernels/dropout.cu (being written).

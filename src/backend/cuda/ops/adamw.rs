//! Launchers for kernels/adamw.cu (being written).

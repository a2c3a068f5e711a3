//! The one error type of the crate. Every variant carries the context a user
//! needs to fix the problem: the file, the line or row, the tensor or op name.

use std::path::PathBuf;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: invalid config: {message}")]
    Config { path: PathBuf, message: String },

    #[error("{path}: invalid checkpoint: {message}")]
    Checkpoint { path: PathBuf, message: String },

    #[error("{path}: tokenizer: {message}")]
    Tokenizer { path: PathBuf, message: String },

    /// Bad user data: names the file, the 1-based line or row, and the field when there is one.
    /// Line 0 means the problem concerns the whole file (it is empty, say).
    #[error("{}{}: {message}", location(path, *line), field.as_ref().map(|f| format!(" (field `{f}`)")).unwrap_or_default())]
    Input { path: PathBuf, line: usize, field: Option<String>, message: String },

    #[error("{op}: shape mismatch: {message}")]
    Shape { op: &'static str, message: String },

    /// `dtype` is the tensor dtype's name (`F32`, `BF16`): the error type sits below the tensors.
    #[error("{op}: dtype {dtype} is not supported here")]
    DType { op: &'static str, dtype: &'static str },

    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    #[error("numerical failure: {0}")]
    Numerical(String),

    /// Writing a model or checkpoint failed; the message says what is kept.
    #[error("save failed: {0}")]
    Save(String),

    #[error("device: {0}")]
    Device(String),

    /// An op that a backend does not offer (`backend` is "cpu" or "cuda").
    #[error("{op} is not offered on the {backend} backend")]
    Unsupported { op: &'static str, backend: &'static str },
}

fn location(path: &std::path::Path, line: usize) -> String {
    if line == 0 { path.display().to_string() } else { format!("{}:{line}", path.display()) }
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    pub fn shape(op: &'static str, message: impl Into<String>) -> Self {
        Error::Shape { op, message: message.into() }
    }

    pub fn input(path: impl Into<PathBuf>, line: usize, field: Option<&str>, message: impl Into<String>) -> Self {
        Error::Input { path: path.into(), line, field: field.map(str::to_owned), message: message.into() }
    }
}

//! Data: tokenisation and batching.

pub mod tokenize;

pub use tokenize::{BerthTokenizer, Encoded, pad_batch};

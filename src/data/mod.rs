//! Data: readers of labelled examples, tokenisation and batching.

pub mod align;
pub mod conll;
pub mod readers;
pub mod sampler;
pub mod tokenize;

pub use readers::{Column, Example, Format, LabelSet, ReaderOptions, read_examples};
pub use tokenize::{BerthTokenizer, Encoded, pad_batch};

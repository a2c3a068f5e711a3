//! Data: readers of labelled examples, tokenisation and batching.

pub mod align;
pub mod batch;
pub mod chunks;
pub mod conll;
pub mod readers;
pub mod sampler;
pub mod tokenize;

pub use batch::Batch;
pub use readers::{Column, Example, Format, Label, LabelSet, ReaderOptions, read_examples};
pub use tokenize::{BerthTokenizer, Encoded, Windows, longest_first_batches, pad_batch};

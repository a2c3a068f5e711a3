//! Examples tokenised once per run, and the batches of each epoch.

use std::path::Path;

use crate::data::readers::{Column, Example, Format, LabelSet, ReaderOptions, read_examples};
use crate::data::{BerthTokenizer, Encoded, pad_batch};
use crate::error::{Error, Result};
use crate::model::Batch;
use crate::rng::{SeqRng, mix64};

use super::options::TrainConfig;

/// A labelled dataset, tokenised.
pub struct EncodedDataset {
    pub path: std::path::PathBuf,
    pub encodings: Vec<Encoded>,
    pub labels: Vec<usize>,
}

impl EncodedDataset {
    pub fn len(&self) -> usize {
        self.encodings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.encodings.is_empty()
    }

    /// The padded batch of examples `indices`, with their label ids.
    pub fn batch(&self, indices: &[usize], pad_id: u32) -> (Batch, Vec<i64>) {
        let group: Vec<&Encoded> = indices.iter().map(|&i| &self.encodings[i]).collect();
        (pad_batch(&group, pad_id), indices.iter().map(|&i| self.labels[i] as i64).collect())
    }

    /// Tokens that are not padding, summed over the dataset.
    pub fn real_tokens(&self) -> usize {
        self.encodings.iter().map(|e| e.ids.len()).sum()
    }
}

/// Reader options from the run's configuration, for one file.
pub fn reader_options(config: &TrainConfig, path: &Path) -> Result<ReaderOptions> {
    let columns = ColumnChoice {
        format: config.format.as_deref(),
        text: &config.text_column,
        text_pair: config.text_pair_column.as_deref(),
        label: &config.label_column,
        header: config.header,
        quoting: config.quoting,
    };
    columns.reader_options(path)
}

/// The reader choices `berth train` and `berth eval` share, as given on the command line.
pub struct ColumnChoice<'a> {
    pub format: Option<&'a str>,
    pub text: &'a str,
    pub text_pair: Option<&'a str>,
    pub label: &'a str,
    pub header: Option<bool>,
    pub quoting: Option<bool>,
}

impl ColumnChoice<'_> {
    /// Options for reading `path`: the format from the choice or the file extension.
    pub fn reader_options(&self, path: &Path) -> Result<ReaderOptions> {
        let format = match self.format {
            Some(f) => Format::parse(f)?,
            None => Format::from_path(path),
        };
        let mut options = ReaderOptions::new(format);
        options.text = Column::parse(self.text)?;
        options.text_pair = self.text_pair.map(Column::parse).transpose()?;
        options.label = Some(Column::parse(self.label)?);
        options.has_header = self.header;
        if let Some(q) = self.quoting {
            options.quoting = q;
        }
        Ok(options)
    }
}

/// Reads a labelled file; every label must be in `labels` (the error names file, line and field).
pub fn read_labelled(path: &Path, options: &ReaderOptions) -> Result<Vec<Example>> {
    let examples = read_examples(path, options)?;
    if let Some(e) = examples.iter().find(|e| e.label.is_none()) {
        return Err(Error::input(path, e.line, Some("label"), "the label is missing"));
    }
    Ok(examples)
}

/// Tokenises examples once and maps their labels to ids.
pub fn encode(path: &Path, examples: &[Example], labels: &LabelSet, tokenizer: &BerthTokenizer) -> Result<EncodedDataset> {
    let ids = labels.ids(examples, path)?;
    let texts: Vec<(String, Option<String>)> = examples.iter().map(|e| (e.text.clone(), e.text_pair.clone())).collect();
    let encodings = tokenizer.encode_many(&texts)?;
    Ok(EncodedDataset { path: path.into(), encodings, labels: ids })
}

/// The micro-batches of one epoch, as example indices: a seeded shuffle that
/// depends only on (seed, epoch), so a resumed run sees the same order.
/// With bucketing, the shuffled order is cut into pools of 50 batches, each
/// pool is sorted by length and cut into batches, and the batches are
/// shuffled again: similar lengths pad little, and the order stays random.
pub fn epoch_batches(lengths: &[usize], batch_size: usize, seed: u64, epoch: u64, bucketing: bool) -> Vec<Vec<usize>> {
    let mut rng = SeqRng::new(mix64(seed ^ mix64(epoch.wrapping_add(0x5bd1_e995))));
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    rng.shuffle(&mut order);
    if !bucketing {
        return order.chunks(batch_size).map(<[usize]>::to_vec).collect();
    }
    let mut batches: Vec<Vec<usize>> = Vec::new();
    for pool in order.chunks(batch_size * 50) {
        let mut pool = pool.to_vec();
        // Stable sort: ties keep the shuffled order.
        pool.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
        batches.extend(pool.chunks(batch_size).map(<[usize]>::to_vec));
    }
    rng.shuffle(&mut batches);
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_order_is_a_permutation_fixed_by_seed_and_epoch() {
        let lengths: Vec<usize> = (0..1000).map(|i| (i * 37) % 61 + 3).collect();
        for bucketing in [false, true] {
            let a = epoch_batches(&lengths, 32, 7, 0, bucketing);
            let b = epoch_batches(&lengths, 32, 7, 0, bucketing);
            let c = epoch_batches(&lengths, 32, 7, 1, bucketing);
            assert_eq!(a, b);
            assert_ne!(a, c);
            let mut all: Vec<usize> = a.concat();
            all.sort();
            assert_eq!(all, (0..1000).collect::<Vec<_>>());
        }
        // Bucketing pads less: compare the total padded size.
        let padded =
            |batches: &[Vec<usize>]| -> usize { batches.iter().map(|b| b.len() * b.iter().map(|&i| lengths[i]).max().unwrap()).sum() };
        assert!(padded(&epoch_batches(&lengths, 32, 7, 0, true)) < padded(&epoch_batches(&lengths, 32, 7, 0, false)));
    }
}

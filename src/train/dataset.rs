//! Examples tokenised once per run, and the batches of each epoch.

use std::path::Path;

use crate::data::Batch;
use crate::data::align::{Alignment, IGNORE_INDEX, Window, align_labels, continuation_ids, sentence_windows};
use crate::data::conll::{ConllOptions, Sentence, read_conll};
use crate::data::readers::{
    Column, Example, FirstRowTest, Format, Label, LabelSet, ReaderOptions, check_first_row, multi_hot, multi_label_set, read_examples,
    regression_target,
};
use crate::data::sampler::{Sampler, SamplerKind};
use crate::data::{BerthTokenizer, Encoded, pad_batch};
use crate::error::{Error, Result};
use crate::model::Labels;
use crate::model::settings::{Aggregate, ChunkSettings};
use crate::rng::{SeqRng, mix64};

use super::options::TrainConfig;
use crate::model::task::{REGRESSION_LABEL, Task};

/// The targets of every encoded row, in the form each task needs.
#[derive(Clone, Debug)]
pub enum Targets {
    /// Class ids.
    Single(Vec<usize>),
    /// One 0/1 row per example, as wide as the label set.
    Multi(Vec<Vec<bool>>),
    Regression(Vec<f64>),
    /// Per row, the label of each token (IGNORE_INDEX where the loss skips it).
    Token(Vec<Vec<i64>>),
}

impl Targets {
    /// Rows (examples, or token rows).
    pub fn len(&self) -> usize {
        match self {
            Targets::Single(y) => y.len(),
            Targets::Multi(y) => y.len(),
            Targets::Regression(y) => y.len(),
            Targets::Token(y) => y.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Class ids, for single-label data.
    pub fn class_ids(&self) -> Option<&[usize]> {
        match self {
            Targets::Single(y) => Some(y),
            _ => None,
        }
    }

    /// The loss's labels for rows `indices`; token rows are laid out (B, T).
    pub fn labels(&self, indices: &[usize], seq_len: usize) -> Labels {
        match self {
            Targets::Single(y) => Labels::SingleLabel(indices.iter().map(|&i| y[i] as i64).collect()),
            Targets::Multi(y) => {
                Labels::MultiLabel(indices.iter().flat_map(|&i| y[i].iter().map(|&b| if b { 1.0 } else { 0.0 })).collect())
            }
            Targets::Regression(y) => Labels::Regression(indices.iter().map(|&i| y[i]).collect()),
            Targets::Token(y) => {
                let mut flat = vec![IGNORE_INDEX; indices.len() * seq_len];
                for (row, &i) in indices.iter().enumerate() {
                    flat[row * seq_len..row * seq_len + y[i].len()].copy_from_slice(&y[i]);
                }
                Labels::Token(flat)
            }
        }
    }

    /// Appends `other`'s rows (a file of the same task).
    pub fn append(&mut self, other: Targets) {
        match (self, other) {
            (Targets::Single(a), Targets::Single(b)) => a.extend(b),
            (Targets::Multi(a), Targets::Multi(b)) => a.extend(b),
            (Targets::Regression(a), Targets::Regression(b)) => a.extend(b),
            (Targets::Token(a), Targets::Token(b)) => a.extend(b),
            _ => unreachable!("files of one task have targets of one kind"),
        }
    }

    /// The rows `keep`, in that order.
    pub fn select(&self, keep: &[usize]) -> Targets {
        fn pick<T: Clone>(values: &[T], keep: &[usize]) -> Vec<T> {
            keep.iter().map(|&i| values[i].clone()).collect()
        }
        match self {
            Targets::Single(y) => Targets::Single(pick(y, keep)),
            Targets::Multi(y) => Targets::Multi(pick(y, keep)),
            Targets::Regression(y) => Targets::Regression(pick(y, keep)),
            Targets::Token(y) => Targets::Token(pick(y, keep)),
        }
    }

    /// Each document's target repeated once per window: `spans` are
    /// (first row, windows) per document, in row order.
    fn repeated(&self, spans: &[(usize, usize)]) -> Targets {
        fn spread<T: Clone>(values: &[T], spans: &[(usize, usize)]) -> Vec<T> {
            values.iter().zip(spans).flat_map(|(v, &(_, n))| std::iter::repeat_n(v.clone(), n)).collect()
        }
        match self {
            Targets::Single(y) => Targets::Single(spread(y, spans)),
            Targets::Multi(y) => Targets::Multi(spread(y, spans)),
            Targets::Regression(y) => Targets::Regression(spread(y, spans)),
            Targets::Token(y) => Targets::Token(spread(y, spans)),
        }
    }
}

/// A chunked dataset's documents: each is one or more consecutive rows
/// (its windows), which carry copies of its target for a per-window loss.
/// Metrics are always taken on the documents.
#[derive(Clone, Debug)]
pub struct DocumentWindows {
    /// Per document: its first row and its number of windows (≥ 1).
    pub spans: Vec<(usize, usize)>,
    /// The documents' own targets.
    pub targets: Targets,
    /// How the windows' logits become the document's.
    pub aggregate: Aggregate,
    /// Documents that had more windows than `max_chunks`, and the windows left out.
    pub capped_documents: usize,
    pub dropped_windows: usize,
}

impl DocumentWindows {
    /// (D, C) document logits from the (W, C) rows of every window.
    pub fn combine(&self, rows: &[Vec<f64>]) -> Vec<Vec<f64>> {
        self.spans.iter().map(|&(start, n)| self.aggregate.combine(&rows[start..start + n])).collect()
    }

    /// The rows of documents `documents`, each document's windows together, in order.
    pub fn rows_of(&self, documents: &[usize]) -> Vec<usize> {
        documents.iter().flat_map(|&d| self.spans[d].0..self.spans[d].0 + self.spans[d].1).collect()
    }
}

/// Where each encoded row of a token dataset came from: sentences longer than
/// the model's length are cut into overlapping windows of whole words.
#[derive(Clone, Debug)]
pub struct TokenRows {
    /// The gold sentences, word by word.
    pub sentences: Vec<Sentence>,
    /// Per row: its sentence and window.
    pub rows: Vec<(usize, Window)>,
}

/// A labelled dataset, tokenised.
pub struct EncodedDataset {
    pub path: std::path::PathBuf,
    pub encodings: Vec<Encoded>,
    pub targets: Targets,
    /// Token tasks only.
    pub token_rows: Option<TokenRows>,
    /// `--long-text chunk` only: which rows are the windows of which document.
    pub documents: Option<DocumentWindows>,
}

impl EncodedDataset {
    pub fn len(&self) -> usize {
        self.encodings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.encodings.is_empty()
    }

    /// The padded batch of rows `indices`, with their targets.
    pub fn batch(&self, indices: &[usize], pad_id: u32) -> (Batch, Labels) {
        let group: Vec<&Encoded> = indices.iter().map(|&i| &self.encodings[i]).collect();
        let batch = pad_batch(&group, pad_id);
        let labels = self.targets.labels(indices, batch.seq_len);
        (batch, labels)
    }

    /// Class ids, for single-label data (per row).
    pub fn class_ids(&self) -> Option<&[usize]> {
        self.targets.class_ids()
    }

    /// The targets metrics are taken on: the documents' when chunked, else the rows'.
    pub fn gold_targets(&self) -> &Targets {
        self.documents.as_ref().map_or(&self.targets, |d| &d.targets)
    }

    /// Examples as the data file holds them: documents when chunked, else rows.
    pub fn documents_len(&self) -> usize {
        self.gold_targets().len()
    }

    /// Appends another file's examples of the same task after these
    /// (`--augment`): rows, targets, documents and sentences alike.
    pub fn append(&mut self, other: EncodedDataset) {
        let (rows, sentences) = (self.encodings.len(), self.token_rows.as_ref().map_or(0, |t| t.sentences.len()));
        self.encodings.extend(other.encodings);
        self.targets.append(other.targets);
        if let (Some(mine), Some(theirs)) = (&mut self.documents, other.documents) {
            mine.spans.extend(theirs.spans.iter().map(|&(start, n)| (start + rows, n)));
            mine.targets.append(theirs.targets);
            mine.capped_documents += theirs.capped_documents;
            mine.dropped_windows += theirs.dropped_windows;
        }
        if let (Some(mine), Some(theirs)) = (&mut self.token_rows, other.token_rows) {
            mine.sentences.extend(theirs.sentences);
            mine.rows.extend(theirs.rows.into_iter().map(|(s, w)| (s + sentences, w)));
        }
    }

    /// The examples `keep` (documents when chunked) of a sequence task's
    /// dataset, in that order, with all their windows.
    pub fn select_examples(&self, keep: &[usize]) -> EncodedDataset {
        assert!(self.token_rows.is_none(), "select_examples is for sequence tasks");
        let Some(documents) = &self.documents else {
            return EncodedDataset {
                path: self.path.clone(),
                encodings: keep.iter().map(|&i| self.encodings[i].clone()).collect(),
                targets: self.targets.select(keep),
                token_rows: None,
                documents: None,
            };
        };
        let rows = documents.rows_of(keep);
        let mut start = 0;
        let spans = keep
            .iter()
            .map(|&d| {
                start += documents.spans[d].1;
                (start - documents.spans[d].1, documents.spans[d].1)
            })
            .collect();
        EncodedDataset {
            path: self.path.clone(),
            encodings: rows.iter().map(|&r| self.encodings[r].clone()).collect(),
            targets: self.targets.select(&rows),
            token_rows: None,
            documents: Some(DocumentWindows { spans, targets: documents.targets.select(keep), ..documents.clone() }),
        }
    }

    /// Tokens that are not padding, summed over the dataset.
    pub fn real_tokens(&self) -> usize {
        self.encodings.iter().map(|e| e.ids.len()).sum()
    }
}

/// What a data file holds once read: labelled examples, or CoNLL sentences.
pub enum RawData {
    Examples(Vec<Example>),
    Sentences(Vec<Sentence>),
}

impl RawData {
    pub fn len(&self) -> usize {
        match self {
            RawData::Examples(e) => e.len(),
            RawData::Sentences(s) => s.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How to read and encode a task's files.
pub struct DataSpec<'a> {
    pub task: Task,
    pub columns: ColumnChoice<'a>,
    /// CoNLL: the tag column (None: the last).
    pub tag_column: Option<usize>,
    pub label_separator: &'a str,
    pub alignment: Alignment,
    /// Sequence tasks: read documents longer than the window in chunks (the
    /// tokenizer must have windows enabled with the same stride).
    pub long_text: Option<ChunkSettings>,
}

impl<'a> DataSpec<'a> {
    /// The spec of a training run's files.
    pub fn from_config(config: &'a TrainConfig) -> Result<DataSpec<'a>> {
        Ok(DataSpec {
            task: config.task,
            columns: ColumnChoice {
                format: config.format.as_deref(),
                text: &config.text_column,
                text_pair: config.text_pair_column.as_deref(),
                label: &config.label_column,
                header: config.header,
                quoting: config.quoting,
            },
            tag_column: config.tag_column,
            label_separator: &config.label_separator,
            alignment: config.alignment,
            long_text: config.long_text,
        })
    }

    /// Reads a labelled file.
    pub fn read(&self, path: &Path) -> Result<RawData> {
        if self.task == Task::TokenClassification {
            if let Some(f) = self.columns.format
                && f != "conll"
            {
                return Err(Error::InvalidArgument(format!("token classification reads CoNLL files: use --format conll, not `{f}`")));
            }
            let options = ConllOptions { tag_column: self.tag_column, ..ConllOptions::default() };
            return Ok(RawData::Sentences(read_conll(path, &options)?));
        }
        Ok(RawData::Examples(read_labelled(path, &self.reader_options(path)?)?))
    }

    /// How the examples of `path` are read (not for CoNLL files).
    fn reader_options(&self, path: &Path) -> Result<ReaderOptions> {
        let mut options = self.columns.reader_options(path)?;
        options.allow_empty_label = self.task == Task::MultiLabel;
        if self.task == Task::MultiLabel && self.columns.label.contains(',') {
            options.multi_hot = self.columns.label.split(',').map(|c| Column::parse(c.trim())).collect::<Result<_>>()?;
            options.label = None;
        }
        Ok(options)
    }

    /// Stops when `path` was read by column index without `--header` and its
    /// first row looks like the header: a header read as data is a class
    /// called `label`, or a regression target that is not a number.
    fn check_first_row(&self, path: &Path, examples: &[Example], labels: Option<&LabelSet>) -> Result<()> {
        let separator = self.label_separator;
        let multi = self.task == Task::MultiLabel;
        let items = |label: &Label| -> Vec<String> {
            if multi { label.items(separator).into_iter().map(str::to_owned).collect() } else { vec![label.to_string()] }
        };
        let test = match (self.task, labels) {
            (Task::Regression, _) => FirstRowTest::Number,
            (_, Some(labels)) => FirstRowTest::Known { labels, ids: multi },
            (_, None) => FirstRowTest::Repeated,
        };
        check_first_row(path, &self.reader_options(path)?, examples, &items, test)
    }

    /// The label set: the `--labels` file when given, else what the training
    /// data holds (sorted; for tags, `O` first as seqeval-era tools do not
    /// require, but it keeps the id of the most common tag stable).
    pub fn label_set(&self, train: &RawData, labels_file: Option<&Path>, train_path: &Path) -> Result<LabelSet> {
        if self.task == Task::Regression {
            return LabelSet::from_names(vec![REGRESSION_LABEL.into()]);
        }
        if let (None, RawData::Examples(examples)) = (labels_file, train) {
            // With a --labels file, encode checks the first row against it.
            self.check_first_row(train_path, examples, None)?;
        }
        let labels = match (labels_file, train) {
            (Some(path), _) => LabelSet::from_file(path)?,
            (None, RawData::Examples(examples)) if self.task == Task::MultiLabel => multi_label_set(examples, self.label_separator),
            (None, RawData::Examples(examples)) => LabelSet::from_examples(examples),
            (None, RawData::Sentences(sentences)) => {
                let mut tags: Vec<String> = sentences.iter().flat_map(|s| s.tags.iter().cloned()).collect();
                tags.sort();
                tags.dedup();
                if let Some(o) = tags.iter().position(|t| t == "O") {
                    let o = tags.remove(o);
                    tags.insert(0, o);
                }
                LabelSet::from_names(tags)?
            }
        };
        let needed = if self.task == Task::MultiLabel { 1 } else { 2 };
        if labels.len() < needed {
            return Err(Error::input(
                train_path,
                0,
                Some("label"),
                format!("a {} task needs at least {needed} labels; found {}", self.task.name(), labels.len()),
            ));
        }
        Ok(labels)
    }

    /// Tokenises the data once and turns its labels into targets; a label
    /// outside the set is an error naming the file and line.
    pub fn encode(&self, path: &Path, raw: &RawData, labels: &LabelSet, tokenizer: &BerthTokenizer) -> Result<EncodedDataset> {
        match raw {
            RawData::Examples(examples) => {
                let known = (self.task != Task::Regression).then_some(labels);
                self.check_first_row(path, examples, known)?;
                let targets = match self.task {
                    Task::Classification => Targets::Single(labels.ids(examples, path)?),
                    Task::MultiLabel => Targets::Multi(
                        examples
                            .iter()
                            .map(|e| multi_hot(e.label.as_ref(), self.label_separator, labels, path, e.line))
                            .collect::<Result<_>>()?,
                    ),
                    Task::Regression => Targets::Regression(
                        examples.iter().map(|e| regression_target(e.label.as_ref(), path, e.line)).collect::<Result<_>>()?,
                    ),
                    Task::TokenClassification => unreachable!("token tasks read sentences"),
                };
                if let Some(chunks) = self.long_text {
                    return encode_documents(path, examples, targets, tokenizer, chunks);
                }
                let texts: Vec<(String, Option<String>)> = examples.iter().map(|e| (e.text.clone(), e.text_pair.clone())).collect();
                let encodings = tokenizer.encode_many(&texts)?;
                Ok(EncodedDataset { path: path.into(), encodings, targets, token_rows: None, documents: None })
            }
            RawData::Sentences(sentences) => encode_sentences(path, sentences, labels, tokenizer, self.alignment),
        }
    }
}

/// Chunked documents: each example becomes its windows (consecutive rows,
/// each carrying the example's target); a pair whose first text leaves no
/// room for a window is an error naming the file and line.
fn encode_documents(
    path: &Path,
    examples: &[Example],
    targets: Targets,
    tokenizer: &BerthTokenizer,
    chunks: ChunkSettings,
) -> Result<EncodedDataset> {
    let mut encodings = Vec::with_capacity(examples.len());
    let mut spans = Vec::with_capacity(examples.len());
    let (mut capped_documents, mut dropped_windows) = (0, 0);
    for e in examples {
        let cut = tokenizer.encode_windows(&e.text, e.text_pair.as_deref(), chunks.max_chunks).map_err(|err| match err {
            Error::InvalidArgument(message) => Error::input(path, e.line, Some("text"), message),
            other => other,
        })?;
        spans.push((encodings.len(), cut.windows.len()));
        encodings.extend(cut.windows);
        if cut.dropped > 0 {
            capped_documents += 1;
            dropped_windows += cut.dropped;
        }
    }
    let rows = targets.repeated(&spans);
    let documents = DocumentWindows { spans, targets, aggregate: chunks.aggregate, capped_documents, dropped_windows };
    Ok(EncodedDataset { path: path.into(), encodings, targets: rows, token_rows: None, documents: Some(documents) })
}

/// Token data: each sentence is one row, or several overlapping windows when
/// its word pieces do not fit; every sub-token gets its label by `alignment`.
pub fn encode_sentences(
    path: &Path,
    sentences: &[Sentence],
    labels: &LabelSet,
    tokenizer: &BerthTokenizer,
    alignment: Alignment,
) -> Result<EncodedDataset> {
    let continuation = continuation_ids(labels.names());
    let mut encodings = Vec::with_capacity(sentences.len());
    let mut targets = Vec::with_capacity(sentences.len());
    let mut rows = Vec::with_capacity(sentences.len());
    for (s, sentence) in sentences.iter().enumerate() {
        let tag_ids: Vec<usize> = sentence
            .tags
            .iter()
            .zip(&sentence.word_lines)
            .map(|(tag, &line)| labels.id(tag, path, line).map_err(|e| retag(e, "tag")))
            .collect::<Result<_>>()?;
        for window in sentence_windows(&sentence.words, tokenizer)? {
            let encoded = tokenizer.encode_words(&sentence.words[window.start..window.end])?;
            targets.push(align_labels(&encoded.word_ids, &tag_ids[window.start..window.end], alignment, &continuation));
            encodings.push(encoded);
            rows.push((s, window));
        }
    }
    Ok(EncodedDataset {
        path: path.into(),
        encodings,
        targets: Targets::Token(targets),
        token_rows: Some(TokenRows { sentences: sentences.to_vec(), rows }),
        documents: None,
    })
}

/// The same input error, naming another field.
fn retag(error: Error, field: &str) -> Error {
    match error {
        Error::Input { path, line, message, .. } => {
            Error::Input { path, line, field: Some(field.into()), message: message.replace("label", field) }
        }
        other => other,
    }
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

/// The micro-batches of one epoch, as example indices: a seeded shuffle that
/// depends only on (seed, epoch), so a resumed run sees the same order.
/// With bucketing, the shuffled order is cut into pools of 50 batches, each
/// pool is sorted by length and cut into batches, and the batches are
/// shuffled again: similar lengths pad little, and the order stays random.
pub fn epoch_batches(lengths: &[usize], batch_size: usize, seed: u64, epoch: u64, bucketing: bool) -> Vec<Vec<usize>> {
    let mut rng = SeqRng::new(mix64(seed ^ mix64(epoch.wrapping_add(0x5bd1_e995))));
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    rng.shuffle(&mut order);
    group_batches(&order, lengths, batch_size, &mut rng, bucketing)
}

/// The micro-batches of one epoch as `sampler` draws it. The plain random
/// sampler over the whole set gives exactly [`epoch_batches`].
pub fn sampled_batches(sampler: &Sampler, lengths: &[usize], batch_size: usize, seed: u64, epoch: u64, bucketing: bool) -> Vec<Vec<usize>> {
    if *sampler.kind() == SamplerKind::Random && sampler.epoch_length() == lengths.len() {
        return epoch_batches(lengths, batch_size, seed, epoch, bucketing);
    }
    let order = sampler.epoch(epoch);
    let mut rng = SeqRng::new(mix64(seed ^ mix64(epoch.wrapping_add(0x27d4_eb2f))));
    group_batches(&order, lengths, batch_size, &mut rng, bucketing)
}

/// Cuts an epoch's order into batches, bucketed by length when asked.
fn group_batches(order: &[usize], lengths: &[usize], batch_size: usize, rng: &mut SeqRng, bucketing: bool) -> Vec<Vec<usize>> {
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

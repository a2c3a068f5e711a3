//! Readers for labelled examples of single-label classification, one text or a
//! text pair per example: TSV, CSV and JSON Lines.
//!
//! - **TSV and CSV** go through the `csv` crate. Without a header, rows may
//!   carry more fields than the selected columns need (STS-B has extra
//!   trailing columns); those are ignored. With a header, a row with more
//!   fields than the header is an error naming the row: a TAB (or comma)
//!   inside an unquoted text would otherwise shift the label. TSV does not treat `"` as a quoting character by default, because
//!   RTE sentences contain quotes that are part of the text; CSV does.
//! - **JSON Lines** holds one object per line; columns are keys, so only
//!   [`Column::Name`] is valid. A label may be a string or a number, but a
//!   number among labels that are names is an error naming its line.
//!
//! Texts are kept verbatim (SST-2's trailing space included); labels are
//! trimmed, and an empty label is an error. Blank lines are skipped. Every
//! error is an [`Error::Input`] that names the file, the 1-based line and the
//! role of the field (`text`, `text_pair` or `label`).
//!
//! Labels stay strings here; [`LabelSet`] maps them to class ids.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use crate::error::{Error, Result};

/// The layout of an input file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Tab-separated values.
    Tsv,
    /// Comma-separated values.
    Csv,
    /// JSON Lines: one JSON object per line.
    Jsonl,
}

impl Format {
    /// Parses `tsv`, `csv`, `jsonl` (or `json`, `ndjson`), in any case.
    pub fn parse(s: &str) -> Result<Format> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tsv" | "tab" => Ok(Format::Tsv),
            "csv" => Ok(Format::Csv),
            "jsonl" | "json" | "ndjson" => Ok(Format::Jsonl),
            _ => Err(Error::InvalidArgument(format!("unknown input format `{s}`; expected tsv, csv or jsonl"))),
        }
    }

    /// Guesses the format from the file extension: `.csv` is CSV, `.jsonl`,
    /// `.json` and `.ndjson` are JSON Lines, and anything else is TSV.
    pub fn from_path(path: &Path) -> Format {
        let extension = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        match extension.as_deref() {
            Some("csv") => Format::Csv,
            Some("jsonl" | "json" | "ndjson") => Format::Jsonl,
            _ => Format::Tsv,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Tsv => "tsv",
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = Error;
    fn from_str(s: &str) -> Result<Format> {
        Format::parse(s)
    }
}

/// Which field of a row holds a value: a header name (or JSON key), or a
/// 0-based field index.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Column {
    Name(String),
    Index(usize),
}

impl Column {
    /// All ASCII digits make an [`Column::Index`] (0-based); anything else is a
    /// [`Column::Name`]. An empty string is an error.
    pub fn parse(s: &str) -> Result<Column> {
        if s.is_empty() {
            return Err(Error::InvalidArgument("a column name or index must not be empty".into()));
        }
        if s.bytes().all(|b| b.is_ascii_digit()) {
            return s.parse().map(Column::Index).map_err(|_| Error::InvalidArgument(format!("column index `{s}` is too large")));
        }
        Ok(Column::Name(s.to_owned()))
    }
}

impl fmt::Display for Column {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Column::Name(name) => write!(f, "`{name}`"),
            Column::Index(index) => write!(f, "index {index}"),
        }
    }
}

impl FromStr for Column {
    type Err = Error;
    fn from_str(s: &str) -> Result<Column> {
        Column::parse(s)
    }
}

/// How to read a file of examples.
///
/// Defaults ([`ReaderOptions::new`]): the text in the column named `text`, the
/// label in the column named `label`, no text pair, the header detected
/// automatically (so, with these names, a header is expected), and quoting on
/// for CSV only. These names match the demo data and the usual JSON Lines
/// keys; for GLUE files set `text` to `sentence` (SST-2) or `sentence1` and
/// `text_pair` to `sentence2` (RTE).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReaderOptions {
    pub format: Format,
    /// `None` detects it: the first row is a header exactly when every selected
    /// column is given by name. Ignored for JSON Lines.
    pub has_header: Option<bool>,
    pub text: Column,
    pub text_pair: Option<Column>,
    /// `None` when the file is unlabelled (prediction).
    pub label: Option<Column>,
    /// Multi-label files with one 0/1 column per label: these columns replace
    /// `label`, and an example's label becomes the list of its 1 columns' names.
    pub multi_hot: Vec<Column>,
    /// Whether an empty label field is allowed (multi-label: no label applies).
    pub allow_empty_label: bool,
    /// Whether `"` quotes fields (TSV and CSV only).
    pub quoting: bool,
}

impl ReaderOptions {
    /// The defaults for a format; quoting is on for CSV and off otherwise.
    pub fn new(format: Format) -> ReaderOptions {
        ReaderOptions {
            format,
            has_header: None,
            text: Column::Name("text".into()),
            text_pair: None,
            label: Some(Column::Name("label".into())),
            multi_hot: Vec::new(),
            allow_empty_label: false,
            quoting: format == Format::Csv,
        }
    }

    /// The defaults for the format that the file extension suggests.
    pub fn for_path(path: &Path) -> ReaderOptions {
        ReaderOptions::new(Format::from_path(path))
    }

    /// The selected columns with the role each plays.
    fn columns(&self) -> Vec<(&'static str, &Column)> {
        let mut columns = vec![("text", &self.text)];
        if let Some(pair) = &self.text_pair {
            columns.push(("text_pair", pair));
        }
        if !self.multi_hot.is_empty() {
            columns.extend(self.multi_hot.iter().map(|c| ("label", c)));
        } else if let Some(label) = &self.label {
            columns.push(("label", label));
        }
        columns
    }
}

impl Default for ReaderOptions {
    fn default() -> ReaderOptions {
        ReaderOptions::new(Format::Tsv)
    }
}

/// One example as read from the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Example {
    pub text: String,
    pub text_pair: Option<String>,
    /// The label, trimmed; `None` when no label column was selected.
    pub label: Option<Label>,
    /// The 1-based line of the file where the example starts.
    pub line: usize,
}

impl ReaderOptions {
    /// Whether the first row is read as a header: `has_header` when given,
    /// else exactly when every selected column is given by name.
    pub fn first_row_is_header(&self) -> bool {
        self.has_header.unwrap_or_else(|| self.columns().iter().all(|(_, c)| matches!(c, Column::Name(_))))
    }

    /// Whether the first row of a TSV or CSV file is read as data only by
    /// guessing: no header was asked for or refused, and a column is given
    /// by index. [`check_first_row`] judges those files.
    pub fn header_guessed_absent(&self) -> bool {
        self.format != Format::Jsonl && self.has_header.is_none() && !self.first_row_is_header()
    }
}

/// Reads every example of a file. An empty file, or one with a header and no
/// data rows, is an error.
pub fn read_examples(path: &Path, options: &ReaderOptions) -> Result<Vec<Example>> {
    let examples = match options.format {
        Format::Tsv => read_delimited(path, options, b'\t')?,
        Format::Csv => read_delimited(path, options, b',')?,
        Format::Jsonl => jsonl::read_jsonl(path, options)?,
    };
    if examples.is_empty() {
        return Err(Error::input(path, 0, None, "the file holds no examples"));
    }
    Ok(examples)
}

// ---------------------------------------------------------------- TSV / CSV

/// A selected column resolved to a field index.
struct Slot {
    role: &'static str,
    index: usize,
    /// How messages name the column: "`sentence1` (index 1)" or "index 1".
    describe: String,
}

/// The resolved columns of a delimited file.
struct Selection {
    allow_empty_label: bool,
    text: Slot,
    text_pair: Option<Slot>,
    label: Option<Slot>,
    /// 0/1 label columns, each with the label name it stands for.
    multi_hot: Vec<(Slot, String)>,
}

impl Selection {
    /// Resolves the columns against a header row, or, without one, requires indices.
    fn resolve(options: &ReaderOptions, header: Option<&[String]>, path: &Path, header_line: usize) -> Result<Selection> {
        let slot = |role: &'static str, column: &Column| -> Result<Slot> {
            match (column, header) {
                (Column::Index(index), _) => Ok(Slot { role, index: *index, describe: format!("index {index}") }),
                (Column::Name(name), Some(names)) => {
                    let matches: Vec<usize> = names.iter().enumerate().filter(|(_, n)| n.trim() == name).map(|(i, _)| i).collect();
                    match matches.as_slice() {
                        [index] => Ok(Slot { role, index: *index, describe: format!("`{name}` (index {index})") }),
                        [] => Err(Error::input(
                            path,
                            header_line,
                            Some(role),
                            format!("the header has no column `{name}`; its columns are: {}", list_names(names)),
                        )),
                        _ => Err(Error::input(
                            path,
                            header_line,
                            Some(role),
                            format!("the header names column `{name}` more than once (indices {matches:?})"),
                        )),
                    }
                }
                (Column::Name(name), None) => Err(Error::input(
                    path,
                    0,
                    Some(role),
                    format!(
                        "column `{name}` is given by name, but the file is read without a header; \
                         give its 0-based index, or read the first row as a header"
                    ),
                )),
            }
        };
        let multi_hot = options
            .multi_hot
            .iter()
            .map(|c| {
                let s = slot("label", c)?;
                let name = match (c, header) {
                    (Column::Name(n), _) => n.clone(),
                    (Column::Index(i), Some(names)) => names.get(*i).map(|n| n.trim().to_owned()).unwrap_or_else(|| i.to_string()),
                    (Column::Index(i), None) => i.to_string(),
                };
                Ok((s, name))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Selection {
            allow_empty_label: options.allow_empty_label,
            text: slot("text", &options.text)?,
            text_pair: options.text_pair.as_ref().map(|c| slot("text_pair", c)).transpose()?,
            label: if multi_hot.is_empty() { options.label.as_ref().map(|c| slot("label", c)).transpose()? } else { None },
            multi_hot,
        })
    }

    fn extract(&self, record: &csv::ByteRecord, path: &Path, line: usize) -> Result<Example> {
        let text = field(record, &self.text, path, line)?;
        let text_pair = self.text_pair.as_ref().map(|s| field(record, s, path, line)).transpose()?;
        let label = match &self.label {
            Some(slot) if self.allow_empty_label => Some(Label::Field(field(record, slot, path, line)?.trim().to_owned())),
            Some(slot) => Some(Label::Field(clean_label(field(record, slot, path, line)?, path, line)?)),
            None if !self.multi_hot.is_empty() => {
                let mut positive = Vec::new();
                for (slot, name) in &self.multi_hot {
                    if zero_or_one(&field(record, slot, path, line)?, path, line, &slot.describe)? {
                        positive.push(name.clone());
                    }
                }
                Some(Label::List(positive))
            }
            None => None,
        };
        Ok(Example { text, text_pair, label, line })
    }
}

/// A 0/1 label cell (also `true`/`false`, `0.0`/`1.0`).
fn zero_or_one(raw: &str, path: &Path, line: usize, column: &str) -> Result<bool> {
    match raw.trim() {
        "1" | "1.0" | "true" | "True" => Ok(true),
        "0" | "0.0" | "false" | "False" => Ok(false),
        other => Err(Error::input(path, line, Some("label"), format!("column {column} must hold 0 or 1, found `{other}`"))),
    }
}

fn list_names(names: &[String]) -> String {
    names.iter().map(|n| format!("`{}`", n.trim())).collect::<Vec<_>>().join(", ")
}

/// The text of one selected field of a row.
fn field(record: &csv::ByteRecord, slot: &Slot, path: &Path, line: usize) -> Result<String> {
    let Some(bytes) = record.get(slot.index) else {
        let n = record.len();
        return Err(Error::input(
            path,
            line,
            Some(slot.role),
            format!(
                "the row has {n} field{}, but column {} needs at least {}",
                if n == 1 { "" } else { "s" },
                slot.describe,
                slot.index + 1
            ),
        ));
    };
    utf8(bytes, path, line, Some(slot.role))
}

fn utf8(bytes: &[u8], path: &Path, line: usize, role: Option<&str>) -> Result<String> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s.to_owned()),
        Err(e) => {
            Err(Error::input(path, line, role, format!("not valid UTF-8 (invalid byte at byte {} of the field)", e.valid_up_to() + 1)))
        }
    }
}

fn clean_label(raw: String, path: &Path, line: usize) -> Result<String> {
    let label = raw.trim();
    if label.is_empty() {
        return Err(Error::input(path, line, Some("label"), "the label is empty"));
    }
    Ok(label.to_owned())
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

fn read_delimited(path: &Path, options: &ReaderOptions, delimiter: u8) -> Result<Vec<Example>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .quoting(options.quoting)
        .flexible(true)
        .has_headers(false)
        .from_reader(bytes.as_slice());

    let expect_header = options.first_row_is_header();
    let mut selection = if expect_header { None } else { Some(Selection::resolve(options, None, path, 0)?) };

    let mut examples = Vec::new();
    let mut record = csv::ByteRecord::new();
    let mut lines = LineCounter { bytes: &bytes, offset: 0, line: 1 };
    let mut first = true;
    // The header's field names, once read: a longer row is an error.
    let mut header: Option<Vec<String>> = None;
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(csv_error(path, e)),
        }
        let line = lines.record_line(record.position().map_or(0, |p| p.byte() as usize));
        if first {
            first = false;
            strip_bom(&mut record);
        }
        if record.iter().all(|f| f.iter().all(u8::is_ascii_whitespace)) {
            continue;
        }
        match &selection {
            Some(selection) => {
                if let Some(names) = &header {
                    check_width(&record, names, options, delimiter, path, line)?;
                }
                examples.push(selection.extract(&record, path, line)?)
            }
            None => {
                let names = record.iter().map(|f| utf8(f, path, line, None)).collect::<Result<Vec<String>>>()?;
                selection = Some(Selection::resolve(options, Some(&names), path, line)?);
                header = Some(names);
            }
        }
    }
    if examples.is_empty() && selection.is_some() && expect_header {
        return Err(Error::input(path, 0, None, "the file has a header but no data rows"));
    }
    Ok(examples)
}

/// A data row may not have more fields than the header: the usual cause is
/// a delimiter inside an unquoted text, which moves every later field one
/// column on (the label becomes a word of the text, and a new class).
fn check_width(
    record: &csv::ByteRecord,
    header: &[String],
    options: &ReaderOptions,
    delimiter: u8,
    path: &Path,
    line: usize,
) -> Result<()> {
    let (n, width) = (record.len(), header.len());
    if n <= width {
        return Ok(());
    }
    let (delimiter, fix) = match (delimiter, options.quoting) {
        (b'\t', false) => ("TAB", "remove the TAB from the text, or quote the field and pass --quoting true"),
        (b'\t', true) => ("TAB", "remove the TAB from the text, or quote the whole field"),
        (_, false) => ("comma", "quote the field and pass --quoting true"),
        (_, true) => ("comma", "quote the whole field"),
    };
    Err(Error::input(
        path,
        line,
        None,
        format!(
            "the row has {n} fields but the header has {width} ({}); a {delimiter} inside a text splits it and shifts the fields after it: {fix}",
            list_names(header)
        ),
    ))
}

/// Turns the byte offsets of records into 1-based line numbers. The `csv`
/// crate's own line count lags behind skipped blank lines and CRLF endings, so
/// lines are counted here, moving forward only, as records come in order.
struct LineCounter<'a> {
    bytes: &'a [u8],
    offset: usize,
    line: usize,
}

impl LineCounter<'_> {
    /// The line of a record whose read began at `start`: line terminators
    /// before the first byte of the record belong to earlier lines.
    fn record_line(&mut self, start: usize) -> usize {
        let mut start = start.min(self.bytes.len());
        while start < self.bytes.len() && matches!(self.bytes[start], b'\r' | b'\n') {
            start += 1;
        }
        // A line ends at `\n`, or at a `\r` that no `\n` follows.
        while self.offset < start {
            let byte = self.bytes[self.offset];
            if byte == b'\n' || (byte == b'\r' && self.bytes.get(self.offset + 1) != Some(&b'\n')) {
                self.line += 1;
            }
            self.offset += 1;
        }
        self.line
    }
}

/// Removes a UTF-8 byte-order mark from the start of the first field.
fn strip_bom(record: &mut csv::ByteRecord) {
    if !record.get(0).is_some_and(|f| f.starts_with(BOM)) {
        return;
    }
    let position = record.position().cloned();
    let mut stripped = csv::ByteRecord::new();
    for (i, f) in record.iter().enumerate() {
        stripped.push_field(if i == 0 { &f[BOM.len()..] } else { f });
    }
    stripped.set_position(position);
    *record = stripped;
}

fn csv_error(path: &Path, error: csv::Error) -> Error {
    let line = error.position().map_or(0, |p| p.line() as usize);
    let message = error.to_string();
    match error.into_kind() {
        csv::ErrorKind::Io(e) => Error::io(path, e),
        _ => Error::input(path, line, None, message),
    }
}

mod first_row;
mod jsonl;
mod labels;
pub use first_row::{FirstRowTest, check_first_row};
pub use labels::{Label, LabelSet, multi_hot, multi_label_set, regression_target};

#[cfg(test)]
mod tests;

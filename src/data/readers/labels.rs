//! The label set of a single-label task: class names and their ids.

use std::collections::HashMap;
use std::path::Path;

use super::{BOM, Example, list_names, utf8};
use crate::error::{Error, Result};

/// The class names of a single-label task and their ids, in a fixed order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelSet {
    names: Vec<String>,
    index: HashMap<String, usize>,
}

impl LabelSet {
    /// Takes the names in the order given; a duplicate or empty name is an error.
    pub fn from_names(names: Vec<String>) -> Result<LabelSet> {
        let mut index = HashMap::with_capacity(names.len());
        for (id, name) in names.iter().enumerate() {
            if name.trim().is_empty() {
                return Err(Error::InvalidArgument(format!("label {id} has an empty name")));
            }
            if let Some(first) = index.insert(name.clone(), id) {
                return Err(Error::InvalidArgument(format!("label `{name}` appears twice (ids {first} and {id})")));
            }
        }
        Ok(LabelSet { names, index })
    }

    /// The distinct labels of the examples, sorted as scikit-learn's and
    /// Hugging Face's `unique` do: numerically when every label is an integer
    /// (so `2` comes before `10`), otherwise by string. Unlabelled examples are
    /// skipped.
    pub fn from_examples(examples: &[Example]) -> LabelSet {
        let mut names: Vec<String> = examples.iter().filter_map(|e| e.label.clone()).collect();
        names.sort();
        names.dedup();
        let numbers: Option<Vec<i64>> = names.iter().map(|n| n.parse::<i64>().ok()).collect();
        if let Some(numbers) = numbers {
            let mut pairs: Vec<(i64, String)> = numbers.into_iter().zip(names).collect();
            pairs.sort();
            names = pairs.into_iter().map(|(_, n)| n).collect();
        }
        let index = names.iter().enumerate().map(|(id, n)| (n.clone(), id)).collect();
        LabelSet { names, index }
    }

    /// Reads one label per line, in order; names are trimmed and blank lines
    /// skipped. A duplicate is an error naming its line; so is an empty file.
    pub fn from_file(path: &Path) -> Result<LabelSet> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let mut names = Vec::new();
        let mut index = HashMap::new();
        let mut first_line = HashMap::new();
        for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
            let line = i + 1;
            let raw = if i == 0 { raw.strip_prefix(BOM).unwrap_or(raw) } else { raw };
            let name = utf8(raw, path, line, Some("label"))?;
            let name = name.trim();
            if name.is_empty() {
                continue;
            }
            if let Some(first) = first_line.insert(name.to_owned(), line) {
                return Err(Error::input(path, line, Some("label"), format!("label `{name}` is listed twice (first on line {first})")));
            }
            index.insert(name.to_owned(), names.len());
            names.push(name.to_owned());
        }
        if names.is_empty() {
            return Err(Error::input(path, 0, None, "the file lists no labels"));
        }
        Ok(LabelSet { names, index })
    }

    /// The id of a label; an unknown label is an error naming the file and line
    /// it came from.
    pub fn id(&self, label: &str, path: &Path, line: usize) -> Result<usize> {
        self.get(label).ok_or_else(|| {
            const SHOWN: usize = 20;
            let mut known = list_names(&self.names[..self.names.len().min(SHOWN)]);
            if self.names.len() > SHOWN {
                known.push_str(&format!(" and {} more", self.names.len() - SHOWN));
            }
            Error::input(path, line, Some("label"), format!("unknown label `{label}`; the labels are: {known}"))
        })
    }

    /// The ids of the examples' labels, in order; an unlabelled example or an
    /// unknown label is an error.
    pub fn ids(&self, examples: &[Example], path: &Path) -> Result<Vec<usize>> {
        examples
            .iter()
            .map(|e| match &e.label {
                Some(label) => self.id(label, path, e.line),
                None => Err(Error::input(path, e.line, Some("label"), "the example has no label")),
            })
            .collect()
    }

    pub fn get(&self, label: &str) -> Option<usize> {
        self.index.get(label).copied()
    }

    pub fn name(&self, id: usize) -> Option<&str> {
        self.names.get(id).map(String::as_str)
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

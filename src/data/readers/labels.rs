//! Labels as files give them, the label set of a task (class names and
//! their ids), and the targets made from them (multi-hot rows, regression
//! values).

use std::collections::HashMap;
use std::path::Path;

use super::{BOM, Example, list_names, utf8};
use crate::error::{Error, Result};

/// A row's label as the file gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Label {
    /// One field, trimmed: a class name, a number, or (multi-label) several
    /// names that the label separator splits.
    Field(String),
    /// The names (or ids) of a row's positive labels, from 0/1 columns or a
    /// JSON array.
    List(Vec<String>),
}

impl Label {
    /// A multi-label row's items: a field split by `separator`, or the list.
    pub fn items<'a>(&'a self, separator: &str) -> Vec<&'a str> {
        let items: Vec<&str> = match self {
            Label::Field(raw) => raw.split(separator).collect(),
            Label::List(names) => names.iter().map(String::as_str).collect(),
        };
        items.into_iter().map(str::trim).filter(|s| !s.is_empty()).collect()
    }

    /// The field, for a task that takes one label (None for a list).
    pub fn field(&self) -> Option<&str> {
        match self {
            Label::Field(raw) => Some(raw),
            Label::List(_) => None,
        }
    }
}

impl From<&str> for Label {
    fn from(raw: &str) -> Label {
        Label::Field(raw.to_owned())
    }
}

impl std::fmt::Display for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Label::Field(raw) => f.write_str(raw),
            Label::List(names) => write!(f, "[{}]", names.join(", ")),
        }
    }
}

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
        let mut names: Vec<String> = examples.iter().filter_map(|e| e.label.as_ref()?.field().map(str::to_owned)).collect();
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
                Some(Label::Field(label)) => self.id(label, path, e.line),
                Some(list @ Label::List(_)) => Err(Error::input(
                    path,
                    e.line,
                    Some("label"),
                    format!("the label is a list ({list}); only a multi-label task takes several labels"),
                )),
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

/// The label set of a multi-label training file when no `--labels` file fixes
/// it: every distinct item, sorted as single-label sets are.
pub fn multi_label_set(examples: &[Example], separator: &str) -> LabelSet {
    let items: Vec<Example> = examples
        .iter()
        .flat_map(|e| {
            let items = e.label.as_ref().map(|l| l.items(separator)).unwrap_or_default();
            items.into_iter().map(|item| Example { label: Some(Label::Field(item.to_owned())), ..e.clone() }).collect::<Vec<_>>()
        })
        .collect();
    LabelSet::from_examples(&items)
}

/// The 0/1 target row of one multi-label example. An item is a label name, or,
/// when no name matches and it is an integer, a 0-based id into the label set
/// (GoEmotions' files hold ids that index `labels.txt`). An empty field means
/// no label is positive.
pub fn multi_hot(label: Option<&Label>, separator: &str, labels: &LabelSet, path: &Path, line: usize) -> Result<Vec<bool>> {
    let mut row = vec![false; labels.len()];
    for item in label.map(|l| l.items(separator)).unwrap_or_default() {
        let id = match labels.get(item) {
            Some(id) => id,
            None => match item.parse::<i64>() {
                Ok(id) if id >= 0 && (id as usize) < labels.len() => id as usize,
                Ok(id) => {
                    return Err(Error::input(
                        path,
                        line,
                        Some("label"),
                        format!("label id {id} is out of range: there are {} labels (ids 0 to {})", labels.len(), labels.len() - 1),
                    ));
                }
                Err(_) => return labels.id(item, path, line).map(|_| row),
            },
        };
        row[id] = true;
    }
    Ok(row)
}

/// A regression target: a finite number.
pub fn regression_target(label: Option<&Label>, path: &Path, line: usize) -> Result<f64> {
    let raw = label.map(|l| l.to_string()).unwrap_or_default();
    match label.and_then(Label::field).map(|f| f.trim().parse::<f64>()) {
        Some(Ok(v)) if v.is_finite() => Ok(v),
        _ => Err(Error::input(path, line, Some("label"), format!("a regression target must be a finite number, found `{raw}`"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> LabelSet {
        LabelSet::from_names(names.iter().map(|s| s.to_string()).collect()).unwrap()
    }

    #[test]
    fn multi_hot_reads_names_ids_and_joined_lists() {
        let labels = set(&["admiration", "anger", "joy"]);
        let p = Path::new("f.tsv");
        let field = |raw: &str| Some(Label::Field(raw.into()));
        assert_eq!(multi_hot(field("2,0").as_ref(), ",", &labels, p, 3).unwrap(), vec![true, false, true]);
        assert_eq!(multi_hot(field("anger").as_ref(), ",", &labels, p, 3).unwrap(), vec![false, true, false]);
        let list = Label::List(vec!["joy".into(), "anger".into()]);
        assert_eq!(multi_hot(Some(&list), ",", &labels, p, 3).unwrap(), vec![false, true, true]);
        assert_eq!(multi_hot(field("").as_ref(), ",", &labels, p, 3).unwrap(), vec![false; 3]);
        let e = multi_hot(field("1,3").as_ref(), ",", &labels, p, 7).unwrap_err().to_string();
        assert!(e.contains("f.tsv") && e.contains('7') && e.contains("out of range"), "{e}");
        let e = multi_hot(field("fear").as_ref(), ",", &labels, p, 9).unwrap_err().to_string();
        assert!(e.contains("unknown label `fear`") && e.contains('9'), "{e}");
    }

    #[test]
    fn regression_targets_must_be_finite_numbers() {
        let field = |raw: &str| Some(Label::Field(raw.into()));
        assert_eq!(regression_target(field(" 3.800").as_ref(), Path::new("s.tsv"), 2).unwrap(), 3.8);
        for bad in ["high", "NaN", "inf", ""] {
            let e = regression_target(field(bad).as_ref(), Path::new("s.tsv"), 4).unwrap_err().to_string();
            assert!(e.contains("s.tsv") && e.contains('4') && e.contains("number"), "{bad}: {e}");
        }
        let list = Label::List(vec!["1".into(), "2".into()]);
        let e = regression_target(Some(&list), Path::new("s.tsv"), 5).unwrap_err().to_string();
        assert!(e.contains("[1, 2]") && e.contains("number"), "{e}");
    }

    #[test]
    fn multi_label_sets_collect_every_item() {
        let ex = |l: Label| Example { text: "t".into(), text_pair: None, label: Some(l), line: 1 };
        let s = multi_label_set(&[ex("b,a".into()), ex("c".into()), ex(Label::List(vec!["a".into(), "d".into()]))], ",");
        assert_eq!(s.names(), ["a", "b", "c", "d"]);
    }

    #[test]
    fn a_list_where_one_label_is_expected_is_an_error_naming_the_line() {
        let labels = set(&["a", "b"]);
        let list = Example { text: "t".into(), text_pair: None, label: Some(Label::List(vec!["a".into(), "b".into()])), line: 4 };
        let e = labels.ids(&[list], Path::new("x.jsonl")).unwrap_err().to_string();
        assert!(e.contains("x.jsonl:4") && e.contains("multi-label"), "{e}");
    }
}

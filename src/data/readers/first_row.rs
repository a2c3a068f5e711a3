//! Telling a header row read as data from an example: a file whose columns
//! are given by index, read without `--header`, has its first row taken as
//! data, and a header there would become a class called `label`.

use std::path::Path;

use super::{Example, Label, LabelSet, ReaderOptions, list_names};
use crate::error::{Error, Result};

/// How [`check_first_row`] tells a header row read as data from an example.
pub enum FirstRowTest<'a> {
    /// The label set does not come from this file (a `--labels` file, or the
    /// training labels when this is another file): each label item of the
    /// first row must be known: a name of the set, or, with `ids`, a 0-based
    /// id into it (multi-label files may hold ids).
    Known { labels: &'a LabelSet, ids: bool },
    /// Only the file itself: each label item of the first row must occur in
    /// another row, unless every label of the file is a number.
    Repeated,
    /// Regression targets: the first row's label must be a number.
    Number,
}

/// Stops when a file read with columns by index and no `--header` starts
/// with what looks like its header row (a class called `label` would
/// appear). `items` splits a label field into its labels (one for
/// single-label tasks). The error shows the row and asks for `--header`.
pub fn check_first_row(
    path: &Path,
    options: &ReaderOptions,
    examples: &[Example],
    items: &dyn Fn(&Label) -> Vec<String>,
    test: FirstRowTest,
) -> Result<()> {
    let Some(first) = examples.first() else { return Ok(()) };
    let Some(label) = first.label.as_ref().filter(|_| options.header_guessed_absent()) else { return Ok(()) };
    let is_number = |s: &str| s.trim().parse::<f64>().is_ok();
    let reason = match test {
        FirstRowTest::Known { labels, ids } => {
            let known = |item: &str| labels.get(item).is_some() || (ids && item.parse::<usize>().is_ok_and(|id| id < labels.len()));
            items(label).into_iter().find(|item| !known(item)).map(|item| {
                const SHOWN: usize = 10;
                let mut listed = list_names(&labels.names()[..labels.len().min(SHOWN)]);
                if labels.len() > SHOWN {
                    listed.push_str(&format!(" and {} more", labels.len() - SHOWN));
                }
                format!("its label `{item}` is not one of the labels ({listed})")
            })
        }
        FirstRowTest::Repeated if examples.len() > 1 => {
            let others: std::collections::HashSet<String> =
                examples[1..].iter().flat_map(|e| e.label.as_ref().map(items).unwrap_or_default()).collect();
            let all_numbers = others.iter().all(|s| is_number(s)) && items(label).iter().all(|s| is_number(s));
            if all_numbers {
                None
            } else {
                items(label)
                    .into_iter()
                    .find(|item| !others.contains(item))
                    .map(|item| format!("its label `{item}` occurs in no other row"))
            }
        }
        FirstRowTest::Repeated => None,
        FirstRowTest::Number => (!label.field().is_some_and(is_number)).then(|| format!("its label `{label}` is not a number")),
    };
    let Some(reason) = reason else { return Ok(()) };
    let mut row = format!("text \"{}\"", shorten(&first.text));
    if let Some(pair) = &first.text_pair {
        row.push_str(&format!(", text_pair \"{}\"", shorten(pair)));
    }
    row.push_str(&format!(", label \"{label}\""));
    Err(Error::input(
        path,
        first.line,
        None,
        format!(
            "the first row looks like a header, not an example ({row}): {reason}. Columns given by index read the first \
             row as data unless --header says otherwise: pass --header true to skip it, or --header false to keep it"
        ),
    ))
}

/// At most 60 characters of a text, for a message.
fn shorten(text: &str) -> String {
    const MAX: usize = 60;
    if text.chars().count() <= MAX { text.to_owned() } else { text.chars().take(MAX).collect::<String>() + "…" }
}

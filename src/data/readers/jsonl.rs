//! JSON Lines: one object per line, columns are keys; a label may be a
//! string, a number (when every label is numeric) or a list (multi-label).

use std::path::Path;

use super::{BOM, Column, Example, Label, ReaderOptions, clean_label, utf8, zero_or_one};
use crate::error::{Error, Result};

pub(super) fn read_jsonl(path: &Path, options: &ReaderOptions) -> Result<Vec<Example>> {
    let mut keys = Vec::new();
    for (role, column) in options.columns() {
        match column {
            Column::Name(name) => keys.push((role, name.as_str())),
            Column::Index(index) => {
                return Err(Error::input(
                    path,
                    0,
                    Some(role),
                    format!("JSON Lines fields are chosen by key; column index {index} is not valid here"),
                ));
            }
        }
    }

    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let mut examples = Vec::new();
    let mut label_kinds = LabelKinds::default();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = i + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let raw = if i == 0 { raw.strip_prefix(BOM).unwrap_or(raw) } else { raw };
        let text = utf8(raw, path, line, None)?;
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            let message = e.to_string();
            let message = message.rsplit_once(" at line ").map_or(message.as_str(), |(m, _)| m);
            let hint =
                if i == 0 && text.starts_with('[') { "; expected one JSON object per line (JSON Lines), not a JSON array" } else { "" };
            Error::input(path, line, None, format!("invalid JSON at column {}: {message}{hint}", e.column()))
        })?;
        let serde_json::Value::Object(object) = value else {
            return Err(Error::input(path, line, None, format!("expected a JSON object, found {}", json_kind(&value))));
        };
        let mut example = Example { text: String::new(), text_pair: None, label: None, line };
        let mut positive: Vec<&str> = Vec::new();
        for &(role, key) in &keys {
            if role == "label" && !options.multi_hot.is_empty() {
                let value = json_field(&object, role, key, path, line)?;
                if zero_or_one(&value, path, line, &format!("`{key}`"))? {
                    positive.push(key);
                }
                continue;
            }
            if role == "label" {
                label_kinds.note(object.get(key), line);
            }
            if role == "label"
                && let Some(serde_json::Value::Array(items)) = object.get(key)
            {
                example.label = Some(json_label_list(items, key, path, line)?);
                continue;
            }
            let value = json_field(&object, role, key, path, line)?;
            match role {
                "text" => example.text = value,
                "text_pair" => example.text_pair = Some(value),
                _ if options.allow_empty_label => example.label = Some(Label::Field(value.trim().to_owned())),
                _ => example.label = Some(Label::Field(clean_label(value, path, line)?)),
            }
        }
        if !options.multi_hot.is_empty() {
            example.label = Some(Label::List(positive.into_iter().map(str::to_owned).collect()));
        }
        examples.push(example);
    }
    label_kinds.check(path)?;
    Ok(examples)
}

/// Where JSON Lines labels are numbers and where they are names. A number
/// among names is a mistake (`1` for `"positive"`, or an id that would be
/// read as the name `1`), so it is an error unless every label is numeric.
#[derive(Default)]
struct LabelKinds {
    /// The first (line, value) of a label written as a JSON number.
    number: Option<(usize, String)>,
    /// The first (line, value) of a label written as a string that is not a number.
    name: Option<(usize, String)>,
}

impl LabelKinds {
    fn note(&mut self, value: Option<&serde_json::Value>, line: usize) {
        use serde_json::Value;
        let items = match value {
            Some(Value::Array(items)) => items.as_slice(),
            Some(v) => std::slice::from_ref(v),
            None => &[],
        };
        for item in items {
            match item {
                Value::Number(n) if self.number.is_none() => self.number = Some((line, n.to_string())),
                Value::String(s) if self.name.is_none() && s.trim().parse::<f64>().is_err() => {
                    self.name = Some((line, s.trim().to_owned()))
                }
                _ => {}
            }
        }
    }

    fn check(&self, path: &Path) -> Result<()> {
        match (&self.number, &self.name) {
            (Some((line, number)), Some((name_line, name))) => Err(Error::input(
                path,
                *line,
                Some("label"),
                format!(
                    "the label {number} is a JSON number, but other labels are names (line {name_line}: \"{name}\"); \
                     write every label as a string, or every label as a number"
                ),
            )),
            _ => Ok(()),
        }
    }
}

/// A JSON array of label names (or ids).
fn json_label_list(items: &[serde_json::Value], key: &str, path: &Path, line: usize) -> Result<Label> {
    let mut names = Vec::with_capacity(items.len());
    for item in items {
        match item {
            serde_json::Value::String(s) => names.push(s.trim().to_owned()),
            serde_json::Value::Number(n) => names.push(n.to_string()),
            other => {
                return Err(Error::input(
                    path,
                    line,
                    Some("label"),
                    format!("key `{key}` holds a list whose items must be label names or ids, found {}", json_kind(other)),
                ));
            }
        }
    }
    Ok(Label::List(names))
}

fn json_field(
    object: &serde_json::Map<String, serde_json::Value>,
    role: &'static str,
    key: &str,
    path: &Path,
    line: usize,
) -> Result<String> {
    use serde_json::Value;
    match object.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) if role == "label" => Ok(n.to_string()),
        None => {
            let present: Vec<String> = object.keys().map(|k| format!("`{k}`")).collect();
            Err(Error::input(path, line, Some(role), format!("key `{key}` is missing; the object has: {}", present.join(", "))))
        }
        Some(other) => Err(Error::input(
            path,
            line,
            Some(role),
            format!("key `{key}` must be a string{}, found {}", if role == "label" { " or a number" } else { "" }, json_kind(other)),
        )),
    }
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

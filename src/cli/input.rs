//! Reading plain-text input files: one example per line, UTF-8, with a TAB
//! separating the optional text pair. Errors name the file and the line.

use std::path::Path;

use crate::error::{Error, Result};

/// Reads (text, pair) examples; blank lines are skipped; an empty file is an error.
pub fn read_lines(path: &Path) -> Result<Vec<(String, Option<String>)>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let mut examples = Vec::new();
    for (index, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line_number = index + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let line = std::str::from_utf8(raw).map_err(|e| {
            Error::input(path, line_number, None, format!("not valid UTF-8 (invalid byte at column {})", e.valid_up_to() + 1))
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let mut parts = line.splitn(2, '\t');
        let text = parts.next().unwrap_or_default().to_owned();
        let pair = parts.next().map(str::to_owned);
        examples.push((text, pair));
    }
    if examples.is_empty() {
        return Err(Error::input(path, 0, None, "the file holds no examples"));
    }
    Ok(examples)
}

//! Reading plain-text input files: one example per line, UTF-8, with a TAB
//! separating the optional text pair. Errors name the file and the line.
//!
//! `predict` writes one output row per input line, so no line may be
//! skipped: a skipped line would shift every later row against its input.
//! A line that holds no example (blank, only white space, only a TAB), a pair
//! with a blank half (`text<TAB>`), or more than one TAB stops the run with
//! an error naming the line. Only a file whose every line is blank is
//! reported as holding no examples. A final line end makes no extra line.

use std::path::Path;

use crate::error::{Error, Result};

/// Reads (text, pair) examples, exactly one per line.
pub fn read_lines(path: &Path) -> Result<Vec<(String, Option<String>)>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let body = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::input(path, 0, None, "the file holds no examples"));
    }
    let mut examples = Vec::new();
    for (index, raw) in body.split(|&b| b == b'\n').enumerate() {
        let line_number = index + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let line = std::str::from_utf8(raw).map_err(|e| {
            Error::input(path, line_number, None, format!("not valid UTF-8 (invalid byte at column {})", e.valid_up_to() + 1))
        })?;
        examples.push(parse_line(line).map_err(|(field, message)| Error::input(path, line_number, field, message))?);
    }
    Ok(examples)
}

/// One line as (text, pair), or the field at fault and what is wrong.
fn parse_line(line: &str) -> std::result::Result<(String, Option<String>), (Option<&'static str>, String)> {
    if line.trim().is_empty() {
        let what = if line.contains('\t') { "holds only white space and TABs" } else { "is blank" };
        return Err((None, format!("the line {what}; every line must hold one example, since predict writes one row per line")));
    }
    let fields: Vec<&str> = line.split('\t').collect();
    match fields[..] {
        [text] => Ok((text.to_owned(), None)),
        [text, pair] => {
            for (role, value) in [("text", text), ("text_pair", pair)] {
                if value.trim().is_empty() {
                    let side = if role == "text" { "before" } else { "after" };
                    return Err((Some(role), format!("the text {side} the TAB is blank; a line is a text, or a text, a TAB and its pair")));
                }
            }
            Ok((text.to_owned(), Some(pair.to_owned())))
        }
        _ => Err((
            None,
            format!(
                "the line has {} TABs; a line is a text, or a text, one TAB and its pair (a TAB inside a text must be replaced)",
                fields.len() - 1
            ),
        )),
    }
}

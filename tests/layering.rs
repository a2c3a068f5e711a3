//! The architecture's guard (issue 16): every `crate::` path in `src/`
//! (`use` lines, inline paths, `pub use` re-exports, macro paths) must point
//! down the layers, as docs/architecture.md draws them. The allowed arrows
//! are one table, `ALLOWED`; a path that names a layer not in its row fails
//! the test with the file, the line and the path.
//!
//! `NOT_YET` lists the arrows that still run the wrong way while the redesign
//! is under way, each with what removes it. An entry that is no longer needed
//! fails the test too, so the list only shrinks.

use std::path::{Path, PathBuf};

use crate::common::rust_files;

/// Layers a path or a file belongs to, longest module prefix first.
const LAYERS: &[(&str, &str)] = &[
    ("backend::cuda", "backend::cuda"),
    ("backend::cpu", "backend::cpu"),
    ("backend", "backend"),
    ("with_float", "tensor"),
    ("cli", "cli"),
    ("check", "check"),
    ("serve", "serve"),
    ("train", "train"),
    ("infer", "infer"),
    ("optim", "optim"),
    ("report", "report"),
    ("model", "model"),
    ("autograd", "autograd"),
    ("tensor", "tensor"),
    ("device", "device"),
    ("data", "data"),
    ("metrics", "metrics"),
    ("numerics", "numerics"),
    ("rng", "rng"),
    ("io", "io"),
    ("error", "error"),
    // The crate root (lib.rs re-exports, main.rs) may name anything.
    ("", "root"),
];

/// The leaves anything may use.
const LEAVES: &[&str] = &["data", "metrics", "numerics", "rng", "io", "error"];

/// What each layer may name besides itself and the leaves. Arrows point down:
/// cli → {check, serve} → {train, infer} → model → autograd → backend →
/// tensor → device. optim sits beside train and uses the backend; report sits
/// under train and uses only metrics. Neither autograd nor model names the
/// CUDA backend or the device: they see the backend's interface and tensors.
const ALLOWED: &[(&str, &[&str])] = &[
    ("root", &["*"]),
    ("cli", &["*"]),
    ("check", &["train", "infer", "optim", "model", "autograd", "backend", "backend::cpu", "backend::cuda", "tensor", "device"]),
    ("serve", &["infer", "model", "tensor", "device"]),
    ("train", &["optim", "report", "model", "autograd", "backend", "backend::cpu", "backend::cuda", "tensor", "device"]),
    ("infer", &["model", "autograd", "backend", "backend::cpu", "backend::cuda", "tensor", "device"]),
    ("optim", &["backend", "backend::cpu", "backend::cuda", "tensor", "device"]),
    ("report", &[]),
    ("model", &["autograd", "backend", "tensor"]),
    ("autograd", &["backend", "tensor"]),
    ("backend", &["backend::cpu", "backend::cuda", "tensor", "device"]),
    ("backend::cpu", &["backend", "tensor"]),
    ("backend::cuda", &["backend", "tensor", "device"]),
    ("tensor", &["device"]),
    ("device", &[]),
    // Leaves use only the smallest leaves.
    ("data", &["numerics", "rng", "io", "error"]),
    ("metrics", &["numerics", "rng", "io", "error"]),
    ("numerics", &[]),
    ("rng", &[]),
    ("io", &["error"]),
    ("error", &[]),
];

/// Arrows against the table that the redesign has not removed yet: (from, to, what removes it).
const NOT_YET: &[(&str, &str, &str)] = &[];

/// The layer of a module path such as `backend::cuda::ops::gemm`.
fn layer_of(module: &str) -> &'static str {
    LAYERS
        .iter()
        .find(|(prefix, _)| prefix.is_empty() || module == *prefix || module.starts_with(&format!("{prefix}::")))
        .map(|(_, layer)| *layer)
        .unwrap()
}

/// The module path of a file under `src/`: `train/trainer.rs` → `train::trainer`.
fn module_of(relative: &Path) -> String {
    let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if let Some(last) = parts.last_mut() {
        *last = last.trim_end_matches(".rs").to_string();
    }
    if parts.last().is_some_and(|p| p == "mod" || p == "lib" || p == "main") {
        parts.pop();
    }
    parts.join("::")
}

fn may_name(from: &str, to: &str) -> bool {
    if from == to || LEAVES.contains(&to) && !LEAVES.contains(&from) {
        return true;
    }
    let row = ALLOWED.iter().find(|(layer, _)| *layer == from).map(|(_, to)| *to).unwrap_or(&[]);
    row.contains(&"*") || row.contains(&to)
}

/// The code of a Rust file with comments, string and char literals blanked
/// (newlines kept, so line numbers hold).
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && !chars.get(i.wrapping_sub(1)).is_some_and(|p| p.is_alphanumeric() || *p == '_')
        {
            // Raw string r"…" or r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            let closing: String = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
            let body_start = j + 1;
            let rest: String = chars[body_start..].iter().collect();
            let end = rest.find(&closing).map(|e| body_start + rest[..e].chars().count() + closing.chars().count()).unwrap_or(chars.len());
            for &ch in &chars[i..end] {
                out.push(blank(ch));
            }
            i = end;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                let step = if chars[i] == '\\' { 2 } else { 1 };
                for _ in 0..step {
                    if i < chars.len() {
                        out.push(blank(chars[i]));
                        i += 1;
                    }
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' && (chars.get(i + 2) == Some(&'\'') || next == Some('\\')) {
            // A char literal ('a', '\n', '\u{1F}'); a lifetime has no closing quote.
            let end = (i + 1..chars.len()).skip(1).find(|&j| chars[j] == '\'').unwrap_or(chars.len() - 1);
            for _ in i..=end {
                out.push(' ');
            }
            i = end + 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Every module path named after `crate::` or `$crate::`, with its line:
/// `crate::a::{b, c::{d, e}}` gives `a::b`, `a::c::d` and `a::c::e`.
fn crate_paths(code: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let bytes = code.as_bytes();
    let mut start = 0;
    while let Some(at) = code[start..].find("crate::") {
        let at = start + at;
        start = at + 7;
        // `crate::` must not be the tail of a longer word (`mycrate::`).
        if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
            continue;
        }
        let line = code[..at].matches('\n').count() + 1;
        let mut paths = Vec::new();
        parse_tree(code, &mut (at + 7), String::new(), &mut paths);
        found.extend(paths.into_iter().filter(|p| !p.is_empty()).map(|p| (line, p)));
    }
    found
}

/// Parses a use tree at `*pos` (`a::b`, `a::{…}`, `{…}`), pushing full paths.
fn parse_tree(code: &str, pos: &mut usize, prefix: String, out: &mut Vec<String>) {
    let bytes = code.as_bytes();
    let skip_space = |pos: &mut usize| {
        while *pos < bytes.len() && bytes[*pos].is_ascii_whitespace() {
            *pos += 1;
        }
    };
    let mut path = prefix;
    loop {
        skip_space(pos);
        if *pos < bytes.len() && bytes[*pos] == b'{' {
            *pos += 1;
            loop {
                parse_tree(code, pos, path.clone(), out);
                skip_space(pos);
                match bytes.get(*pos) {
                    Some(b',') => *pos += 1,
                    Some(b'}') => {
                        *pos += 1;
                        return;
                    }
                    _ => return,
                }
                skip_space(pos);
                if bytes.get(*pos) == Some(&b'}') {
                    *pos += 1;
                    return;
                }
            }
        }
        let begin = *pos;
        while *pos < bytes.len() && (bytes[*pos].is_ascii_alphanumeric() || bytes[*pos] == b'_') {
            *pos += 1;
        }
        let ident = &code[begin..*pos];
        if ident.is_empty() {
            break;
        }
        // Types and functions end the module path; keep only module names.
        let is_module = ident.chars().next().is_some_and(|c| c.is_ascii_lowercase()) && ident != "self";
        if is_module {
            path = if path.is_empty() { ident.to_string() } else { format!("{path}::{ident}") };
        }
        if code[*pos..].starts_with("::") && is_module {
            *pos += 2;
        } else {
            break;
        }
    }
    out.push(path);
}

/// One arrow against the table: (file, line, path, from, to).
type Violation = (String, usize, String, &'static str, &'static str);

/// Checks one file's text; `relative` is its path under `src/`.
fn violations_in(relative: &Path, text: &str) -> Vec<Violation> {
    let from = layer_of(&module_of(relative));
    let mut paths = crate_paths(&code_only(text));
    paths.dedup();
    paths
        .into_iter()
        .filter_map(|(line, path)| {
            let to = layer_of(&path);
            (!may_name(from, to)).then(|| (relative.display().to_string(), line, path, from, to))
        })
        .collect()
}

#[test]
fn r16_layers_name_only_the_layers_below_them() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    assert!(files.len() > 50, "found only {} files under src/", files.len());
    let mut against = Vec::new();
    let mut used_exceptions = std::collections::BTreeSet::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        for v in violations_in(relative, &std::fs::read_to_string(file).unwrap()) {
            match NOT_YET.iter().position(|(from, to, _)| *from == v.3 && *to == v.4) {
                Some(i) => {
                    used_exceptions.insert(i);
                }
                None => against.push(v),
            }
        }
    }
    let listed: Vec<String> =
        against.iter().map(|(file, line, path, from, to)| format!("src/{file}:{line}: crate::{path} ({from} may not name {to})")).collect();
    assert!(listed.is_empty(), "{} paths run against the layers (tests/layering.rs ALLOWED):\n{}", listed.len(), listed.join("\n"));
    let stale: Vec<String> = NOT_YET
        .iter()
        .enumerate()
        .filter(|(i, _)| !used_exceptions.contains(i))
        .map(|(_, (from, to, _))| format!("{from} → {to}"))
        .collect();
    assert!(stale.is_empty(), "NOT_YET lists arrows the code no longer has; remove them: {}", stale.join(", "));
}

#[test]
fn r16_the_checker_finds_an_arrow_that_points_up() {
    // A model file that names the trainer, inline and in a grouped use.
    let text = "use crate::{tensor::Tensor, train::{task::Task, trainer}};\nfn f() { crate::infer::predictor::run(); }\n";
    let found = violations_in(Path::new("model/bert.rs"), text);
    let named: Vec<(usize, &str, &str)> = found.iter().map(|(_, line, path, _, to)| (*line, path.as_str(), *to)).collect();
    assert_eq!(named, vec![(1, "train::task", "train"), (1, "train::trainer", "train"), (2, "infer::predictor::run", "infer")]);
    // The same paths in comments and strings are not code.
    let quiet = "// crate::train::x\n/* crate::infer */ const S: &str = \"crate::train\"; const C: char = '\"';\n";
    assert!(violations_in(Path::new("model/bert.rs"), quiet).is_empty());
    // Down the layers is fine; autograd may not name the CUDA backend or the device.
    assert!(violations_in(Path::new("model/bert.rs"), "use crate::autograd::Tape; use crate::error::Result;").is_empty());
    let cuda = violations_in(Path::new("autograd/linear.rs"), "use crate::backend::cuda::ops::gemm;\nuse crate::device::Elem;");
    assert_eq!(cuda.iter().map(|v| v.4).collect::<Vec<_>>(), vec!["backend::cuda", "device"]);
    // A re-export counts like a use; a leaf may not name a layer.
    let leaf = violations_in(Path::new("metrics/calibration.rs"), "pub use crate::infer::predictor::softmax;");
    assert_eq!(leaf.len(), 1);
}

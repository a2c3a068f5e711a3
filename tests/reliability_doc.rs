//! docs/reliability.md names the test that guards each bad-input and fault
//! case; every name there must be a test that exists, so the list cannot
//! promise what the suite does not check.

use std::path::PathBuf;

use crate::common::rust_files;

/// The test names in the last column of the doc's table rows (`name`, several joined by `, `).
fn named_tests(doc: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in doc.lines().filter(|l| l.starts_with('|') && !l.starts_with("|--") && !l.starts_with("| ---")) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let Some(last) = cells.last() else { continue };
        for part in last.split('`').skip(1).step_by(2) {
            if part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                names.push(part.to_string());
            }
        }
    }
    names
}

#[test]
fn r15_every_test_named_in_reliability_md_exists() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/reliability.md")).unwrap();
    let names = named_tests(&doc);
    assert!(names.len() >= 20, "docs/reliability.md names only {} tests; its table lost its test column?", names.len());
    let mut files = Vec::new();
    rust_files(&root.join("tests"), &mut files);
    rust_files(&root.join("src"), &mut files);
    let sources: Vec<String> = files.iter().map(|f| std::fs::read_to_string(f).unwrap()).collect();
    let missing: Vec<&String> =
        names.iter().filter(|n| !sources.iter().any(|s| s.contains(&format!("fn {n}(")) && s.contains("#[test]"))).collect();
    assert!(missing.is_empty(), "docs/reliability.md names tests that do not exist: {missing:?}");
}

#[test]
fn r15_the_name_reader_reads_the_test_column() {
    let doc = "| case | behaviour | test |\n| --- | --- | --- |\n| a | b | `r1_x`, `r2_y` |\n| c | `not_this` here | `r3_z` |\n";
    assert_eq!(named_tests(doc), ["r1_x", "r2_y", "r3_z"]);
}

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// True when a missing prerequisite must fail the test instead of skipping
/// it: `CI=true` (or 1), or `BERTH_REQUIRE_ALL=1`, which `.ci/run` exports.
pub fn require_all() -> bool {
    let set = |var: &str, values: &[&str]| std::env::var(var).is_ok_and(|v| values.contains(&v.as_str()));
    set("CI", &["true", "1"]) || set("BERTH_REQUIRE_ALL", &["1", "true"])
}

/// Every skip goes through here: the running test cannot check what it
/// names because `missing` is absent. Under `require_all()` that panics,
/// naming what is missing. Otherwise the skip is recorded where a passing
/// test's output is not hidden: a line in `$BERTH_SKIP_LOG` (tools/test.sh
/// sets it and prints the count at the end), or, without it, straight on
/// stderr (libtest captures only the print macros). Callers return after it.
pub fn skip(missing: &str) {
    let log = std::env::var_os("BERTH_SKIP_LOG").map(PathBuf::from);
    skip_with(missing, require_all(), log.as_deref());
}

/// `skip` with its environment passed in, so tests can check both ways.
pub fn skip_with(missing: &str, require_all: bool, log: Option<&Path>) {
    let test = std::thread::current().name().unwrap_or("unnamed test").to_owned();
    if require_all {
        panic!("{test}: {missing} (CI=true or BERTH_REQUIRE_ALL=1: a missing prerequisite fails the test)");
    }
    // One write per line, so that lines from parallel tests never interleave.
    let line = format!("{test}\t{missing}\n");
    let logged = log.is_some_and(|path| {
        std::fs::OpenOptions::new().create(true).append(true).open(path).and_then(|mut f| f.write_all(line.as_bytes())).is_ok()
    });
    if !logged {
        let _ = std::io::stderr().write_all(format!("SKIP {line}").as_bytes());
    }
}

/// `../shared` beside the project, or None (tests then skip with a message).
/// BERTH_SHARED overrides it (the GPU machine gets the fixtures in gpu-bundle/).
pub fn shared_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("BERTH_SHARED") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"),
    };
    if dir.join("fixtures").is_dir() {
        Some(dir)
    } else {
        skip(&format!("{}/fixtures is absent", dir.display()));
        None
    }
}

pub fn fixture_dir(name: &str) -> Option<PathBuf> {
    shared_dir().map(|d| d.join("fixtures").join(name))
}

/// The fetched all-MiniLM-L6-v2 checkpoint, or None with a message.
pub fn minilm_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/all-MiniLM-L6-v2");
    if dir.join("model.safetensors").is_file() {
        Some(dir)
    } else {
        skip("models/all-MiniLM-L6-v2 is absent (run tools/fetch-model.sh)");
        None
    }
}

/// A Python that imports every one of `modules`, or None after `skip`.
/// `BERTH_PYTHON` if set, else the pinned environment tools/py-env.sh
/// installs (`.py-venv/`, which .ci/run sets up), else `python3`.
pub fn python_with(modules: &[&str]) -> Option<String> {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".py-venv/bin/python");
    let python = match std::env::var("BERTH_PYTHON") {
        Ok(p) => p,
        Err(_) if venv.is_file() => venv.display().to_string(),
        Err(_) => "python3".into(),
    };
    let import = format!("import {}", modules.join(", "));
    let ok = Command::new(&python).args(["-c", &import]).output().is_ok_and(|o| o.status.success());
    if ok {
        Some(python)
    } else {
        skip(&format!("{python} cannot `{import}` (run tools/py-env.sh, or set BERTH_PYTHON)"));
        None
    }
}

/// ‖a − b‖ / ‖b‖ (DESIGN.md's measure), with ‖b‖ floored to avoid 0/0.
pub fn rel_error(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let diff: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt();
    let norm: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    diff / norm.max(1e-300)
}

/// A fresh scratch folder for one test. The process id is part of the name,
/// so two test runs that share a target folder (worktrees, a second
/// terminal) never clobber each other's files.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every `.rs` file under `dir`, recursively.
pub fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

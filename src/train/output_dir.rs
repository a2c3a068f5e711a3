//! One output folder, one run: an exclusive OS lock on the folder for the
//! whole run, and the rules for what a run may find in it at the start.
//!
//! - The lock is `flock`-style on `.berth-lock` inside the folder, so a run
//!   killed with SIGKILL releases it with its process; no stale marker.
//! - A fresh run needs an empty folder. `--overwrite` removes what berth
//!   wrote there and refuses a folder that holds anything else.
//! - `--output` may never be, or contain, the `--model` folder.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::options::TrainConfig;
use super::state::{OPTIMIZER_FILE, STATE_FILE, model_files};
use crate::error::{Error, Result};
use crate::model::settings::SETTINGS_FILE;

/// The lock file's name; it holds the PID of the run that holds the lock.
pub const LOCK_FILE: &str = ".berth-lock";

/// Held for the whole run; dropping it releases the folder.
#[derive(Debug)]
pub struct OutputLock {
    _file: File,
    pub dir: PathBuf,
    /// Whether this run created the folder (so a run that fails before
    /// writing anything can leave no folder behind).
    created: bool,
}

impl OutputLock {
    /// After a failed run: a folder this run created that holds nothing but
    /// the lock file is removed, so bad input leaves no trace on disk.
    pub fn remove_if_unused(&self) {
        if self.created && entries(&self.dir).is_ok_and(|e| e.is_empty()) {
            let _ = std::fs::remove_file(self.dir.join(LOCK_FILE));
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

/// Locks `dir` (created if missing) for this process, or says which process holds it.
pub fn lock_output(dir: &Path) -> Result<OutputLock> {
    if dir.exists() && !dir.is_dir() {
        return Err(Error::InvalidArgument(format!("--output {} is a file, not a folder", dir.display())));
    }
    let created = !dir.exists();
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(|e| Error::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() { "another process".to_string() } else { format!("another berth run (PID {holder})") };
            return Err(Error::InvalidArgument(format!(
                "--output {} is in use by {who}; wait for it to finish or choose another --output",
                dir.display()
            )));
        }
        Err(TryLockError::Error(e)) => return Err(Error::io(&path, e)),
    }
    let pid = std::process::id().to_string();
    file.set_len(0)
        .and_then(|_| file.seek(SeekFrom::Start(0)))
        .and_then(|_| file.write_all(pid.as_bytes()))
        .map_err(|e| Error::io(&path, e))?;
    Ok(OutputLock { _file: file, dir: dir.to_path_buf(), created })
}

/// Whether berth writes an entry of this name into a run folder.
fn written_by_berth(name: &str, is_dir: bool) -> bool {
    let files = [
        STATE_FILE,
        OPTIMIZER_FILE,
        SETTINGS_FILE,
        "metrics.jsonl",
        "metrics.json",
        "report.md",
        "errors.html",
        super::step_loop::PROFILE_FILE,
        crate::model::multitask::HEADS_FILE,
        LOCK_FILE,
    ];
    if is_dir {
        let step_checkpoint = name.strip_prefix("checkpoint-").is_some_and(|s| s.parse::<u64>().is_ok());
        // `.tmp` and `.old` are the staging names of atomic folder replacement.
        let base = name.trim_end_matches(".tmp").trim_end_matches(".old");
        let base_checkpoint = base.strip_prefix("checkpoint-").is_some_and(|s| s.parse::<u64>().is_ok());
        step_checkpoint || base_checkpoint || ["best", "plots"].contains(&base)
    } else {
        // Atomic file writes stage as `.<name>.<pid>.tmp`.
        (name.starts_with('.') && name.ends_with(".tmp")) || files.contains(&name) || model_files().contains(&name)
    }
}

/// The entries of `dir` other than the lock file, sorted by name.
fn entries(dir: &Path) -> Result<Vec<(String, bool)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != LOCK_FILE {
            found.push((name, entry.path().is_dir()));
        }
    }
    found.sort();
    Ok(found)
}

/// An absolute, symlink-free form of `path`, for comparing folders; a path
/// that does not exist yet resolves through its nearest existing ancestor.
fn resolved(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() { path.to_path_buf() } else { std::env::current_dir().unwrap_or_default().join(path) };
    let mut tail = Vec::new();
    let mut head = absolute.as_path();
    loop {
        if let Ok(real) = head.canonicalize() {
            return tail.iter().rev().fold(real, |p, part| p.join(part));
        }
        match (head.parent(), head.file_name()) {
            (Some(parent), Some(name)) => {
                tail.push(name.to_os_string());
                head = parent;
            }
            _ => return absolute,
        }
    }
}

/// Checks the output folder against the run's flags and locks it. Call
/// before anything is read or written; keep the lock until the run ends.
pub fn prepare_output(config: &TrainConfig) -> Result<OutputLock> {
    let output = resolved(&config.output);
    let model = resolved(&config.model);
    if model.starts_with(&output) {
        return Err(Error::InvalidArgument(format!(
            "--output {} is, or holds, the --model folder {}: a run must not write over the model it starts from; choose another --output",
            config.output.display(),
            config.model.display()
        )));
    }
    if config.overwrite && config.resume_from.is_some() {
        return Err(Error::InvalidArgument(
            "--overwrite and --resume-from do not go together: --overwrite would delete the run being resumed".into(),
        ));
    }
    let lock = lock_output(&config.output)?;
    if config.resume_from.is_some() {
        return Ok(lock);
    }
    let found = entries(&config.output)?;
    if found.is_empty() {
        return Ok(lock);
    }
    let shown = |list: &[&(String, bool)]| {
        let mut names: Vec<String> = list.iter().take(6).map(|(n, d)| if *d { format!("{n}/") } else { n.clone() }).collect();
        if list.len() > 6 {
            names.push(format!("… {} more", list.len() - 6));
        }
        names.join(", ")
    };
    if !config.overwrite {
        return Err(Error::InvalidArgument(format!(
            "--output {} already holds files ({}): pass --overwrite to replace that run's files, or --resume-from {}/checkpoint-N to continue it",
            config.output.display(),
            shown(&found.iter().collect::<Vec<_>>()),
            config.output.display()
        )));
    }
    let foreign: Vec<&(String, bool)> = found.iter().filter(|(n, d)| !written_by_berth(n, *d)).collect();
    if !foreign.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "--overwrite: --output {} holds files berth did not write ({}); it removes only a run's own files, so move those or choose another --output",
            config.output.display(),
            shown(&foreign)
        )));
    }
    for (name, is_dir) in &found {
        let path = config.output.join(name);
        let removed = if *is_dir { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        removed.map_err(|e| Error::io(&path, e))?;
    }
    eprintln!("--overwrite: removed the previous run's {} entries from {}", found.len(), config.output.display());
    Ok(lock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn berth_names_are_recognised_and_others_are_not() {
        for (name, dir) in [
            ("model.safetensors", false),
            ("metrics.jsonl", false),
            (".model.safetensors.123.tmp", false),
            ("checkpoint-12", true),
            ("checkpoint-12.tmp", true),
            ("best.old", true),
            ("plots", true),
            ("heads.json", false),
        ] {
            assert!(written_by_berth(name, dir), "{name}");
        }
        for (name, dir) in [("notes.txt", false), ("checkpoint-x", true), ("data", true), ("best", false), ("train.tsv", false)] {
            assert!(!written_by_berth(name, dir), "{name}");
        }
    }

    #[test]
    fn a_path_that_does_not_exist_resolves_through_its_parent() {
        let here = std::env::current_dir().unwrap().canonicalize().unwrap();
        assert_eq!(resolved(Path::new("no-such-folder/below")), here.join("no-such-folder/below"));
        assert!(resolved(Path::new("no-such-folder/below")).starts_with(resolved(Path::new("."))));
    }
}

//! Flag groups that several commands share, and how a TOML table is split
//! among them. `DataColumnOptions` is flattened into `berth train`, `berth
//! eval` and each `[[head]]` of a multi-task heads file; `--device` and
//! `--precision` are `backend::DeviceArgs`.
//!
//! serde's `flatten` cannot be combined with `deny_unknown_fields`, so a
//! file's table is split by hand: `take_group` moves the keys a group takes
//! (its long flag names, which serde spells the same, kebab-case) into that
//! group, and whoever holds the group reads the rest, refusing unknown keys.

use clap::Args;
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// How the rows of a data file are read: the format, the columns, the header,
/// quoting, the CoNLL tag column and the multi-label separator. Unset values
/// take the caller's defaults (train: the ones below; eval: how the model was
/// trained first).
#[derive(Args, Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct DataColumnOptions {
    /// Data format: tsv, csv, jsonl or conll (default: from the file
    /// extension; conll for token tasks).
    #[arg(long)]
    pub format: Option<String>,
    /// Text column: a header name, or a 0-based index (default `text`).
    #[arg(long)]
    pub text_column: Option<String>,
    /// Second-text column for sentence pairs (name or 0-based index).
    #[arg(long)]
    pub text_pair_column: Option<String>,
    /// Label column: a header name, or a 0-based index (default `label`);
    /// multi-label 0/1 columns as `a,b,c`.
    #[arg(long)]
    pub label_column: Option<String>,
    /// Whether the first row is a header (default: yes when columns are given by name).
    #[arg(long)]
    pub header: Option<bool>,
    /// Whether `"` quotes fields (default: off for TSV, on for CSV).
    #[arg(long)]
    pub quoting: Option<bool>,
    /// CoNLL files: the 0-based column that holds the tag (default: the last column).
    #[arg(long, allow_negative_numbers = true)]
    pub tag_column: Option<usize>,
    /// Multi-label: what separates the labels in one field (default `,`).
    /// JSON arrays and 0/1 columns need no separator.
    #[arg(long)]
    pub label_separator: Option<String>,
}

impl DataColumnOptions {
    /// Each value from self, else from `fallback` (flags over a file's values).
    pub fn or(&self, fallback: &DataColumnOptions) -> DataColumnOptions {
        let pick = |a: &Option<String>, b: &Option<String>| a.clone().or_else(|| b.clone());
        DataColumnOptions {
            format: pick(&self.format, &fallback.format),
            text_column: pick(&self.text_column, &fallback.text_column),
            text_pair_column: pick(&self.text_pair_column, &fallback.text_pair_column),
            label_column: pick(&self.label_column, &fallback.label_column),
            header: self.header.or(fallback.header),
            quoting: self.quoting.or(fallback.quoting),
            tag_column: self.tag_column.or(fallback.tag_column),
            label_separator: pick(&self.label_separator, &fallback.label_separator),
        }
    }
}

/// The long flag names of a group (or of a whole command's options).
pub fn flag_keys<G: Args>() -> Vec<String> {
    G::augment_args(clap::Command::new("keys")).get_arguments().filter_map(|a| a.get_long().map(str::to_string)).collect()
}

/// Moves the keys group `G` takes out of `table` and reads them as a `G`.
pub fn take_group<G: Args + DeserializeOwned>(table: &mut toml::Table) -> Result<G, toml::de::Error> {
    let mut part = toml::Table::new();
    for key in flag_keys::<G>() {
        if let Some(value) = table.remove(&key) {
            part.insert(key, value);
        }
    }
    toml::Value::Table(part).try_into()
}

/// The first key of `table` outside `known`, with the 1-based line of `text`
/// that sets it, and the known key it most likely means (`batch_size` for
/// `batch-size`).
pub fn unknown_key(text: &str, table: &toml::Table, known: &[String]) -> Option<String> {
    let key = table.keys().find(|k| !known.contains(k))?;
    let line = text.lines().position(|l| {
        let l = l.trim_start();
        l.strip_prefix(key.as_str())
            .or_else(|| l.strip_prefix(&format!("\"{key}\"")))
            .is_some_and(|rest| rest.trim_start().starts_with('='))
    });
    let at = line.map_or(String::new(), |n| format!("line {}: ", n + 1));
    let dashed = key.replace('_', "-").to_lowercase();
    let hint = if known.contains(&dashed) { format!(" (did you mean `{dashed}`?)") } else { String::new() };
    Some(format!("{at}unknown field `{key}`{hint}; the keys are the flag names without the leading dashes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::DeviceArgs;
    use crate::device::DeviceChoice;

    #[test]
    fn a_table_is_split_among_the_groups_by_their_flag_names() {
        let text = "text-column = \"sentence\"\ntag-column = 2\ndevice = \"SIM\"\nbatch-size = 4\n";
        let mut table: toml::Table = toml::from_str(text).unwrap();
        let columns: DataColumnOptions = take_group(&mut table).unwrap();
        let device: DeviceArgs = take_group(&mut table).unwrap();
        assert_eq!(columns.text_column.as_deref(), Some("sentence"));
        assert_eq!(columns.tag_column, Some(2));
        assert_eq!(columns.format, None);
        assert_eq!(device.choice(), DeviceChoice::Sim, "case-insensitive, as the flag is");
        assert_eq!(table.keys().collect::<Vec<_>>(), ["batch-size"], "only the holder's own keys stay");

        let mut bad: toml::Table = toml::from_str("precision = \"fp8\"\n").unwrap();
        let err = take_group::<DeviceArgs>(&mut bad).unwrap_err().to_string();
        assert!(err.contains("unknown --precision `fp8` (fp32, bf16, int8)"), "{err}");
        let mut bad: toml::Table = toml::from_str("tag-column = \"last\"\n").unwrap();
        assert!(take_group::<DataColumnOptions>(&mut bad).is_err());
    }

    #[test]
    fn flags_win_over_the_file_value_by_value() {
        let flags = DataColumnOptions { text_column: Some("a".into()), header: Some(false), ..Default::default() };
        let file =
            DataColumnOptions { text_column: Some("b".into()), label_column: Some("y".into()), header: Some(true), ..Default::default() };
        let merged = flags.or(&file);
        assert_eq!((merged.text_column.as_deref(), merged.label_column.as_deref(), merged.header), (Some("a"), Some("y"), Some(false)));
    }

    #[test]
    fn an_unknown_key_names_its_line_and_the_flag_it_likely_means() {
        let known = vec!["batch-size".to_string(), "seed".to_string()];
        let text = "seed = 3\n\n  batch_size = 5\n";
        let table: toml::Table = toml::from_str(text).unwrap();
        let message = unknown_key(text, &table, &known).unwrap();
        assert!(message.starts_with("line 3: unknown field `batch_size` (did you mean `batch-size`?)"), "{message}");
        let fine: toml::Table = toml::from_str("seed = 3\n").unwrap();
        assert_eq!(unknown_key("seed = 3\n", &fine, &known), None);
    }

    #[test]
    fn r16_a_config_file_fills_the_shared_groups_and_flags_win_over_it() {
        use crate::train::TrainOptions;
        let dir = std::env::temp_dir().join(format!("berth-option-groups-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("run.toml");
        std::fs::write(&path, "text-column = \"sentence\"\nlabel-column = \"y\"\ndevice = \"sim\"\nbatch-size = 3\n").unwrap();
        let file = TrainOptions::from_toml_file(&path).unwrap();
        assert_eq!(
            (file.columns.text_column.as_deref(), file.device.choice(), file.batch_size),
            (Some("sentence"), DeviceChoice::Sim, Some(3))
        );
        let flags = TrainOptions {
            columns: DataColumnOptions { text_column: Some("review".into()), ..Default::default() },
            device: DeviceArgs { device: Some(DeviceChoice::Cpu), precision: None },
            ..Default::default()
        };
        let merged = flags.merged_over(&file);
        assert_eq!(merged.columns.text_column.as_deref(), Some("review"), "the flag wins");
        assert_eq!(merged.columns.label_column.as_deref(), Some("y"), "the file fills what the flags leave");
        assert_eq!(merged.device.choice(), DeviceChoice::Cpu);

        for (text, expect) in [
            ("seed = 1\nbatch_size = 5\n", "line 2: unknown field `batch_size` (did you mean `batch-size`?)"),
            ("resume-from = \"x\"\n", "line 1: unknown field `resume-from`"),
            ("device = \"tpu\"\n", "unknown --device `tpu` (auto, cpu, cuda, sim)"),
            ("tag-column = -1\n", "tag-column"),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = TrainOptions::from_toml_file(&path).unwrap_err().to_string();
            assert!(err.contains("run.toml") && err.contains(expect), "{text}: {err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! Kernels embedded at build time: PTX and a fatbin when nvcc was found,
//! and always the source, so NVRTC can compile it at run time otherwise.

/// One `kernels/<name>.cu` file.
#[derive(Debug)]
pub struct KernelFile {
    pub name: &'static str,
    pub source: &'static str,
    /// PTX for sm_90, when build.rs had nvcc.
    pub ptx: Option<&'static str>,
    /// sm_90 + sm_80 machine code and compute_90 PTX, when build.rs had nvcc.
    pub fatbin: Option<&'static [u8]>,
    /// The `extern "C" __global__` kernels the file defines.
    pub kernels: &'static [&'static str],
}

include!(concat!(env!("OUT_DIR"), "/kernels.rs"));

/// Looks up an embedded kernel file by name (the file stem).
pub fn kernel_file(name: &str) -> Option<&'static KernelFile> {
    KERNEL_FILES.iter().find(|k| k.name == name)
}

/// The file that defines kernel `name`.
pub fn file_of_kernel(name: &str) -> Option<&'static KernelFile> {
    KERNEL_FILES.iter().find(|k| k.kernels.contains(&name))
}

/// The naming rule of kernel entry points: `<op>[_<variant>]_<fwd|bwd>[_<part>]_<dtype>`
/// for a kernel of an op with a direction, `<name>_<dtype>` for a plain helper.
#[cfg(test)]
mod naming {
    use super::*;

    /// The ops whose kernels carry a direction.
    const DIRECTED_OPS: &[&str] = &[
        "attention",
        "attention_tc",
        "layer_norm",
        "embedding",
        "embedding_ln",
        "dropout",
        "dropout_add",
        "gelu",
        "geglu",
        "tanh",
        "relu",
        "first_token",
        "mean_pool",
        "cross_entropy",
        "focal_cross_entropy",
        "bce_with_logits",
        "sigmoid_focal",
        "mse",
        "loss_sum",
    ];
    const DTYPES: &[&str] = &["f32", "bf16", "f64", "u8", "u32"];

    /// A launch variant: a letter prefix and a bound (`d64`, `c512`) or `wide`.
    fn is_variant(token: &str) -> bool {
        let digits = token.trim_start_matches(|c: char| c.is_ascii_lowercase());
        token == "wide" || (digits.len() < token.len() && !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()))
    }

    /// Why `name` breaks the rule, or None.
    fn violation(name: &str) -> Option<String> {
        let Some((stem, dtype)) = name.rsplit_once('_').filter(|(_, d)| ["f32", "bf16"].contains(d)) else {
            return Some("does not end in _f32 or _bf16".into());
        };
        let tokens: Vec<&str> = stem.split('_').collect();
        if let Some(second) = tokens.iter().find(|t| DTYPES.contains(t)) {
            return Some(format!("names a second dtype ({second}) before {dtype}"));
        }
        let directions: Vec<usize> = (0..tokens.len()).filter(|&i| matches!(tokens[i], "fwd" | "bwd")).collect();
        let at = match directions[..] {
            [] => return None, // a plain helper
            [at] => at,
            _ => return Some("has two directions".into()),
        };
        let head = tokens[..at].join("_");
        let op_fits = |op: &&str| match head.strip_prefix(*op) {
            Some("") => true,
            Some(rest) => rest.strip_prefix('_').is_some_and(is_variant),
            None => false,
        };
        if !DIRECTED_OPS.iter().any(op_fits) {
            return Some(format!("`{head}` before the direction is not <op>[_<variant>]"));
        }
        if let Some(variant) = tokens[at + 1..].iter().find(|t| is_variant(t)) {
            return Some(format!("the variant {variant} comes after the direction"));
        }
        None
    }

    #[test]
    fn every_kernel_entry_point_follows_the_naming_rule() {
        let broken: Vec<String> = KERNEL_FILES
            .iter()
            .flat_map(|f| f.kernels.iter().filter_map(move |k| violation(k).map(|why| format!("kernels/{}.cu: {k} {why}", f.name))))
            .collect();
        assert!(broken.is_empty(), "{broken:#?}");
    }

    #[test]
    fn the_rule_refuses_the_names_it_replaced() {
        for old in [
            "layer_norm_dparams_bwd_f32",
            "embedding_rows_bwd_bf16",
            "ce_denom_fwd_f32",
            "attention_bwd_dq_d8_f32",
            "attention_tc_fwd_d64_bf16",
            "add_assign_f32_bf16",
            "cast_f32_bf16",
            "gelu_fwd",
        ] {
            assert!(violation(old).is_some(), "{old} passed");
        }
        for good in ["attention_tc_d64_bwd_dkdv_bf16", "layer_norm_bwd_dparams_sum_f32", "layer_norm_c128_fwd_bf16", "widen_bf16"] {
            assert_eq!(violation(good), None, "{good}");
        }
    }

    /// build.rs finds the kernels an entry macro defines, one per table line.
    #[test]
    fn entry_macro_tables_define_every_kernel() {
        let count = |file: &str| kernel_file(file).unwrap().kernels.len();
        // 4 head dims in f32 and 2 in bf16, three passes each
        assert_eq!(count("attention"), 18);
        assert_eq!(count("attention_tc"), 6);
        // 4 branches × 2 dtypes for the forward, the backward and the embedding
        // forward, the dparams partials in 2 dtypes, and their sum
        assert_eq!(count("layernorm"), 27);
        for k in ["attention_d64_bwd_dkdv_f32", "attention_tc_d32_fwd_bf16", "embedding_ln_wide_fwd_bf16"] {
            assert!(file_of_kernel(k).is_some(), "{k} not found");
        }
    }
}

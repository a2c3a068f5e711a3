//! `berth serve`: the HTTP server (src/serve) with its limits as flags.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::error::{Error, Result};
use crate::infer::ClassifierOptions;
use crate::model::settings::max_length_for;
use crate::serve::api::RequestLimits;
use crate::serve::batcher::BatchLimits;
use crate::serve::{ExplainLimits, ServeOptions, run as serve};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Model folder: config.json, model.safetensors and tokenizer files.
    #[arg(long)]
    pub model: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port; the address is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    #[command(flatten)]
    pub device: super::DeviceArgs,
    /// Tokens per example after truncation (longest-first for pairs; a
    /// request may ask to keep the last tokens, or not to truncate)
    /// (default: as the model was trained, else 128).
    #[arg(long)]
    pub max_length: Option<usize>,
    /// Most examples the batcher puts in one group, and in one forward pass.
    #[arg(long, default_value_t = 32)]
    pub max_batch_size: usize,
    /// Most tokens in one group (and padded tokens in one forward pass).
    #[arg(long, default_value_t = 4096)]
    pub max_batch_tokens: usize,
    /// Longest the batcher, once free, holds a group open for requests still
    /// being read (it never waits when none are on the way).
    #[arg(long, default_value_t = 2)]
    pub max_wait_ms: u64,
    /// Most requests waiting; beyond it requests get 503 with Retry-After.
    #[arg(long, default_value_t = 256)]
    pub max_queue: usize,
    /// Most examples in one request (413 beyond).
    #[arg(long, default_value_t = 32)]
    pub max_client_batch_size: usize,
    /// Most characters in one text (413 beyond).
    #[arg(long, default_value_t = 10_000)]
    pub max_input_chars: usize,
    /// Largest request body in bytes (413 beyond).
    #[arg(long, default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// Longest a request may take, queueing included (504 beyond); also how
    /// long a client may take to send its request head (the connection is
    /// closed) and body (408).
    #[arg(long, default_value_t = 30_000)]
    pub request_timeout_ms: u64,
    /// Requests with `"explain"` computing at once (0 turns explanations
    /// off); one more gets 503 with Retry-After.
    #[arg(long, default_value_t = 1)]
    pub explain_concurrency: usize,
    /// Most integration steps an explanation may ask for (413 beyond).
    #[arg(long, default_value_t = 128)]
    pub explain_max_steps: usize,
    /// Integration steps of an explanation that does not say.
    #[arg(long, default_value_t = 32)]
    pub explain_steps: usize,
    /// Most explanations one request with `"explain"` may ask for, each
    /// costing one: a text, a chunked document's explained window (every
    /// window under the mean), a token model's predicted entity (413 beyond).
    #[arg(long, default_value_t = 8)]
    pub explain_max_inputs: usize,
    /// CPU threads the explanations compute on, apart from the batcher's.
    #[arg(long, default_value_t = 1)]
    pub explain_threads: usize,
}

pub fn run(args: ServeArgs) -> Result<()> {
    let (max_length, source) = max_length_for(&args.model, args.max_length);
    eprintln!("max length: {max_length} ({source})");
    let positive = [
        ("--max-batch-size", args.max_batch_size),
        ("--max-batch-tokens", args.max_batch_tokens),
        ("--max-queue", args.max_queue),
        ("--max-client-batch-size", args.max_client_batch_size),
        ("--max-input-chars", args.max_input_chars),
        ("--max-body-bytes", args.max_body_bytes),
        ("--request-timeout-ms", args.request_timeout_ms as usize),
        ("--explain-max-steps", args.explain_max_steps),
        ("--explain-steps", args.explain_steps),
        ("--explain-max-inputs", args.explain_max_inputs),
        ("--explain-threads", args.explain_threads),
    ];
    if let Some((flag, _)) = positive.iter().find(|(_, v)| *v == 0) {
        return Err(Error::InvalidArgument(format!("{flag} must be at least 1")));
    }
    if args.explain_steps > args.explain_max_steps {
        return Err(Error::InvalidArgument(format!(
            "--explain-steps {} is over --explain-max-steps {}",
            args.explain_steps, args.explain_max_steps
        )));
    }
    serve(ServeOptions {
        model: args.model,
        host: args.host,
        port: args.port,
        classifier: ClassifierOptions {
            device: args.device.choice(),
            precision: args.device.precision(),
            max_length: Some(max_length),
            batch_size: args.max_batch_size,
        },
        batch: BatchLimits {
            max_batch_size: args.max_batch_size,
            max_batch_tokens: args.max_batch_tokens,
            max_wait: Duration::from_millis(args.max_wait_ms),
            max_queue: args.max_queue,
        },
        request: RequestLimits { max_inputs: args.max_client_batch_size, max_input_chars: args.max_input_chars },
        max_body_bytes: args.max_body_bytes,
        request_timeout: Duration::from_millis(args.request_timeout_ms),
        explain: ExplainLimits {
            concurrency: args.explain_concurrency,
            max_steps: args.explain_max_steps,
            default_steps: args.explain_steps,
            max_inputs: args.explain_max_inputs,
            threads: args.explain_threads,
        },
    })
}

//! Dynamic batching: request handlers put jobs on a bounded queue; one
//! batcher thread takes groups of jobs, runs the model on them in forward
//! passes of similar lengths, and sends each job its own results.
//!
//! The batcher never waits when nothing more is on the way: a lone request is
//! run at once, so batching adds no latency at low load. It waits (up to
//! `max_wait` from when it is free) only while other requests are being
//! read and tokenised, so that they can join the group. Groups and passes
//! are chosen by one cost model ([`PaddingCost`], `pass_cost`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::data::Encoded;
use crate::data::chunks::Aggregate;
use crate::infer::{Classifier, TextPrediction, WordPrediction};
use crate::serve::metrics::Metrics;

/// How the batcher groups work.
#[derive(Clone, Debug)]
pub struct BatchLimits {
    /// Most examples in one group, and in one forward pass.
    pub max_batch_size: usize,
    /// Most tokens in one group (real tokens) and in one forward pass (padded).
    pub max_batch_tokens: usize,
    /// Longest a group waits for requests still being read.
    pub max_wait: Duration,
    /// Most jobs waiting; a job beyond it is refused.
    pub max_queue: usize,
}

/// What one padding position costs a forward pass, against a real token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaddingCost {
    /// As much as a real token: every op computes the padded layout (CUDA).
    Full,
    /// Nothing: the CPU path packs the real tokens and attends within each
    /// sequence (`ForwardMode::skipping_padding`), so a pass of mixed
    /// lengths costs what its tokens cost.
    Skipped,
}

impl PaddingCost {
    /// The cost in tenths of a real token.
    fn tenths(self) -> usize {
        match self {
            PaddingCost::Full => 10,
            PaddingCost::Skipped => 0,
        }
    }
}

/// What a job asks for.
pub enum JobInput {
    /// Texts or text pairs, tokenised by the handler.
    Texts(Vec<Encoded>),
    /// Chunked texts: every document's windows, predicted as ordinary
    /// sequences; `spans` gives each document's (first window, windows),
    /// whose logits `aggregate` combines into the document's.
    Documents { windows: Vec<Encoded>, spans: Vec<(usize, usize)>, aggregate: Aggregate },
    /// Sentences of words, for a token model.
    Words(Vec<Vec<String>>),
}

/// What a job gets back.
pub enum JobOutput {
    /// One prediction per text, in the job's order.
    Texts(Vec<TextPrediction>),
    /// One prediction per sentence, in the job's order.
    Words(Vec<WordPrediction>),
}

/// One request's examples, and where its answer goes.
pub struct Job {
    /// The examples.
    pub input: JobInput,
    /// Tokens per example, for sizing groups.
    pub tokens: Vec<usize>,
    /// Where the results (or the reason there are none) go.
    pub reply: oneshot::Sender<Result<JobOutput, String>>,
}

impl Job {
    fn longest(&self) -> usize {
        self.tokens.iter().copied().max().unwrap_or(0)
    }
}

/// Why a job was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The queue holds `max_queue` jobs already.
    Full,
    /// The server is shutting down.
    Closed,
}

struct QueueState {
    jobs: VecDeque<(Job, Instant)>,
    inputs: usize,
    closed: bool,
}

/// The queue between the handlers and the batcher.
pub struct Queue {
    state: Mutex<QueueState>,
    ready: Condvar,
    /// Requests being read or tokenised: they may join the next group.
    arriving: AtomicUsize,
    limits: BatchLimits,
    /// What padding costs the model's device, for grouping and pass planning.
    padding: PaddingCost,
}

/// Counts a request as arriving until it is queued or refused.
pub struct Arriving<'a>(&'a Queue);

impl Drop for Arriving<'_> {
    fn drop(&mut self) {
        self.0.arriving.fetch_sub(1, Ordering::SeqCst);
        // The batcher may be waiting for this request; let it look again.
        self.0.ready.notify_one();
    }
}

impl Queue {
    /// An empty queue with these limits, grouping by what padding costs the
    /// model's device.
    pub fn new(limits: BatchLimits, padding: PaddingCost) -> Queue {
        Queue {
            state: Mutex::new(QueueState { jobs: VecDeque::new(), inputs: 0, closed: false }),
            ready: Condvar::new(),
            arriving: AtomicUsize::new(0),
            limits,
            padding,
        }
    }

    /// The limits it was made with.
    pub fn limits(&self) -> &BatchLimits {
        &self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks a request as on its way; hold the guard until it is queued.
    pub fn arriving(&self) -> Arriving<'_> {
        self.arriving.fetch_add(1, Ordering::SeqCst);
        Arriving(self)
    }

    /// Queues a job, or says why not (handing the job back is not needed:
    /// the caller answers the request itself).
    pub fn push(&self, job: Job) -> Result<(), Refused> {
        let mut s = self.lock();
        if s.closed {
            return Err(Refused::Closed);
        }
        if s.jobs.len() >= self.limits.max_queue {
            return Err(Refused::Full);
        }
        s.inputs += job.tokens.len();
        s.jobs.push_back((job, Instant::now()));
        drop(s);
        self.ready.notify_one();
        Ok(())
    }

    /// (jobs, examples) waiting now.
    pub fn depth(&self) -> (usize, usize) {
        let s = self.lock();
        (s.jobs.len(), s.inputs)
    }

    /// Refuses new jobs; the batcher finishes those queued, then stops.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    /// Blocks until a group is ready; None once closed and empty.
    fn next_group(&self) -> Option<Vec<Job>> {
        // The wait for arriving requests runs from when the batcher is free
        // or the oldest job came, whichever is later: jobs that queued during
        // a long forward pass have already waited, but the requests their
        // answered neighbours send next are only now arriving, and without
        // this wait a few early ones would run in a pass of their own.
        let free_since = Instant::now();
        let mut s = self.lock();
        loop {
            // Jobs whose callers gave up (timeout, closed connection) cost nothing.
            let before = s.jobs.len();
            s.jobs.retain(|(job, _)| !job.reply.is_closed());
            if s.jobs.len() != before {
                s.inputs = s.jobs.iter().map(|(j, _)| j.tokens.len()).sum();
            }
            let Some((_, oldest)) = s.jobs.front() else {
                if s.closed {
                    return None;
                }
                s = self.ready.wait(s).unwrap_or_else(|e| e.into_inner());
                continue;
            };
            let deadline = (*oldest).max(free_since) + self.limits.max_wait;
            let queued_tokens: usize = s.jobs.iter().map(|(j, _)| j.tokens.iter().sum::<usize>()).sum();
            let room = s.inputs < self.limits.max_batch_size && queued_tokens < self.limits.max_batch_tokens;
            let now = Instant::now();
            if room && !s.closed && self.arriving.load(Ordering::SeqCst) > 0 && now < deadline {
                s = self.ready.wait_timeout(s, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
                continue;
            }
            let group = take_group(&mut s.jobs, &self.limits, self.padding);
            s.inputs -= group.iter().map(|j| j.tokens.len()).sum::<usize>();
            return Some(group);
        }
    }
}

/// The fixed cost of one forward pass, in padded tokens' worth of work. On
/// the 2-core CPU a MiniLM pass costs about 5.5 ms plus 0.14 ms per padded
/// token (`berth bench --case fwd` at B=1 and B=4 against B=32, T=32), so
/// a pass costs about 40 tokens before it does any work. Grouping and pass
/// planning weigh padding against this.
const PASS_OVERHEAD_TOKENS: usize = 40;

/// What a forward pass of `rows` examples with `real` tokens, padded to
/// `longest`, costs, in tenths of a real token.
fn pass_cost(rows: usize, longest: usize, real: usize, padding: PaddingCost) -> usize {
    10 * (PASS_OVERHEAD_TOKENS + real) + padding.tenths() * (rows * longest).saturating_sub(real)
}

/// Takes the next group: the oldest job, so none waits forever behind jobs
/// of a more common length, and the run of queued jobs around it in length
/// order that costs least per real token ([`pass_cost`]), within
/// `max_batch_size` examples and `max_batch_tokens` padded tokens. A deep
/// queue so yields a full pass of near-equal lengths; a long outlier runs
/// alone rather than making many short examples pad to its length.
fn take_group(jobs: &mut VecDeque<(Job, Instant)>, limits: &BatchLimits, padding: PaddingCost) -> Vec<Job> {
    let Some((oldest, _)) = jobs.front() else { return Vec::new() };
    let words = matches!(oldest.input, JobInput::Words(_));
    // Jobs of the oldest's kind, shortest first (ties in queue order).
    let mut sorted: Vec<usize> = (0..jobs.len()).filter(|&i| matches!(jobs[i].0.input, JobInput::Words(_)) == words).collect();
    sorted.sort_by_key(|&i| (jobs[i].0.longest(), i));
    let anchor = sorted.iter().position(|&i| i == 0).expect("the oldest job is a candidate");
    let rows = |i: usize| jobs[sorted[i]].0.tokens.len();
    let real = |i: usize| jobs[sorted[i]].0.tokens.iter().sum::<usize>();
    let longest = |i: usize| jobs[sorted[i]].0.longest();

    // The window sorted[lo..hi] holding the anchor with the lowest cost per
    // real token; on a tie the larger one. The anchor alone always fits.
    let (mut best_lo, mut best_hi) = (anchor, anchor + 1);
    let cost = |n: usize, longest: usize, real: usize| pass_cost(n, longest, real, padding);
    let (mut best_cost, mut best_real) = (cost(rows(anchor), longest(anchor), real(anchor)), real(anchor).max(1));
    let mut left_rows = 0;
    let mut left_real = 0;
    for lo in (0..=anchor).rev() {
        if lo < anchor {
            left_rows += rows(lo);
            left_real += real(lo);
        }
        let (mut n, mut t) = (left_rows, left_real);
        for hi in anchor + 1..=sorted.len() {
            n += rows(hi - 1);
            t += real(hi - 1);
            // Sorted, so the last job is the longest; later windows only grow.
            if (n > limits.max_batch_size || n * longest(hi - 1) > limits.max_batch_tokens) && !(lo == anchor && hi == anchor + 1) {
                break;
            }
            let c = cost(n, longest(hi - 1), t);
            // c / t < best_cost / best_real, without division.
            let (this, best) = (c * best_real, best_cost * t.max(1));
            if this < best || (this == best && hi - lo > best_hi - best_lo) {
                (best_lo, best_hi, best_cost, best_real) = (lo, hi, c, t.max(1));
            }
        }
    }
    let mut chosen: Vec<usize> = sorted[best_lo..best_hi].to_vec();
    // Remove from the back so the indices stay valid; the oldest goes first.
    chosen.sort_unstable();
    let mut group: Vec<Job> = chosen.iter().rev().filter_map(|&i| jobs.remove(i).map(|(j, _)| j)).collect();
    group.reverse();
    group
}

/// Splits examples sorted by length, longest first, into forward passes of
/// at most `max_batch_size` examples and `max_batch_tokens` padded tokens
/// (an example longer than that still gets a pass of its own), at the least
/// total `pass_cost`: a dynamic programme over where to cut, since a pass
/// of sorted examples is always a contiguous run. Returns (start, end) ranges.
pub fn plan_passes(sorted_lengths: &[usize], limits: &BatchLimits, padding: PaddingCost) -> Vec<(usize, usize)> {
    let (max_rows, max_tokens) = (limits.max_batch_size, limits.max_batch_tokens);
    let n = sorted_lengths.len();
    // cheapest[i]: the least cost of examples i.. ; cut[i]: where its first pass ends.
    let mut cheapest = vec![0usize; n + 1];
    let mut cut = vec![n; n + 1];
    for i in (0..n).rev() {
        let longest = sorted_lengths[i].max(1);
        cheapest[i] = usize::MAX;
        let mut real = 0;
        for end in i + 1..=n {
            let rows = end - i;
            if end > i + 1 && (rows > max_rows || rows * longest > max_tokens) {
                break;
            }
            real += sorted_lengths[end - 1];
            let cost = pass_cost(rows, longest, real, padding) + cheapest[end];
            // `<=`: on a tie, the longer pass (fewer passes).
            if cost <= cheapest[i] {
                cheapest[i] = cost;
                cut[i] = end;
            }
        }
    }
    let mut passes = Vec::new();
    let mut start = 0;
    while start < n {
        passes.push((start, cut[start]));
        start = cut[start];
    }
    passes
}

/// The batcher's loop: runs until the queue is closed and empty.
pub fn run(queue: Arc<Queue>, classifier: Arc<Classifier>, metrics: Arc<Metrics>) {
    while let Some(group) = queue.next_group() {
        let limits = queue.limits();
        let words = matches!(group.first().map(|j| &j.input), Some(JobInput::Words(_)));
        if words {
            run_words(group, &classifier, &metrics);
        } else {
            run_texts(group, &classifier, &metrics, limits, queue.padding);
        }
    }
}

fn run_texts(group: Vec<Job>, classifier: &Classifier, metrics: &Metrics, limits: &BatchLimits, padding: PaddingCost) {
    // (job, example) for every example of the group, longest first.
    let mut order: Vec<(usize, usize)> = Vec::new();
    for (j, job) in group.iter().enumerate() {
        order.extend((0..job.tokens.len()).map(|e| (j, e)));
    }
    let example = |&(j, e): &(usize, usize)| match &group[j].input {
        JobInput::Texts(encoded) | JobInput::Documents { windows: encoded, .. } => &encoded[e],
        JobInput::Words(_) => unreachable!("a group holds one kind of job"),
    };
    order.sort_by_key(|k| std::cmp::Reverse(example(k).ids.len()));
    let lengths: Vec<usize> = order.iter().map(|k| example(k).ids.len()).collect();
    let mut results: Vec<Vec<Option<TextPrediction>>> = group.iter().map(|j| vec![None; j.tokens.len()]).collect();
    let mut failed: Vec<Option<String>> = vec![None; group.len()];
    for (start, end) in plan_passes(&lengths, limits, padding) {
        // A pass whose callers have all gone (timed out, hung up) is skipped,
        // so an abandoned request does not hold up the ones behind it.
        if order[start..end].iter().all(|&(j, _)| group[j].reply.is_closed()) {
            continue;
        }
        let pass: Vec<&Encoded> = order[start..end].iter().map(example).collect();
        metrics.batch_size.observe(pass.len() as f64);
        match classifier.predict_encoded(&pass) {
            Ok(predictions) => {
                for (&(j, e), p) in order[start..end].iter().zip(predictions) {
                    results[j][e] = Some(p);
                }
            }
            Err(err) => {
                for &(j, _) in &order[start..end] {
                    failed[j] = Some(err.to_string());
                }
            }
        }
    }
    for ((job, predictions), failure) in group.into_iter().zip(results).zip(failed) {
        if job.reply.is_closed() {
            continue;
        }
        // Open now, so open when each of its passes was checked: all ran.
        let mut predicted: Option<Vec<TextPrediction>> = predictions.into_iter().collect();
        if let (JobInput::Documents { spans, aggregate, .. }, Some(windows)) = (&job.input, &predicted) {
            let documents = spans
                .iter()
                .map(|&(start, n)| {
                    let logits: Vec<Vec<f64>> = windows[start..start + n].iter().map(|w| w.logits.clone()).collect();
                    classifier.decide(aggregate.combine(&logits))
                })
                .collect();
            predicted = Some(documents);
        }
        let answer = match (failure, predicted) {
            (Some(message), _) => Err(message),
            (None, Some(p)) => Ok(JobOutput::Texts(p)),
            (None, None) => Err("an example was not predicted".to_string()),
        };
        // The caller may have gone (timeout); then nobody needs the answer.
        let _ = job.reply.send(answer);
    }
}

fn run_words(group: Vec<Job>, classifier: &Classifier, metrics: &Metrics) {
    let mut sentences = Vec::new();
    let mut counts = Vec::new();
    let mut replies = Vec::new();
    for job in group {
        if let JobInput::Words(s) = job.input {
            counts.push(s.len());
            sentences.extend(s);
            replies.push(job.reply);
        }
    }
    metrics.batch_size.observe(sentences.len() as f64);
    match classifier.predict_words(&sentences) {
        Ok(predictions) => {
            let mut rest = predictions.into_iter();
            for (reply, n) in replies.into_iter().zip(counts) {
                let _ = reply.send(Ok(JobOutput::Words(rest.by_ref().take(n).collect())));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.to_string()));
            }
        }
    }
}

#[cfg(test)]
mod tests;

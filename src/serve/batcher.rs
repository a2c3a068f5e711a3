//! Dynamic batching: request handlers put jobs on a bounded queue; one
//! batcher thread takes groups of jobs, runs the model on them in forward
//! passes of similar lengths, and sends each job its own results.
//!
//! The batcher never waits when nothing more is on the way: a lone request is
//! run at once, so batching adds no latency at low load. It waits (up to
//! `max_wait`) only while other requests are being read and tokenised, so
//! that they can join the group.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::data::Encoded;
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

/// What a job asks for.
pub enum JobInput {
    /// Texts or text pairs, tokenised by the handler.
    Texts(Vec<Encoded>),
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
    /// An empty queue with these limits.
    pub fn new(limits: BatchLimits) -> Queue {
        Queue {
            state: Mutex::new(QueueState { jobs: VecDeque::new(), inputs: 0, closed: false }),
            ready: Condvar::new(),
            arriving: AtomicUsize::new(0),
            limits,
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
            let deadline = *oldest + self.limits.max_wait;
            let queued_tokens: usize = s.jobs.iter().map(|(j, _)| j.tokens.iter().sum::<usize>()).sum();
            let room = s.inputs < self.limits.max_batch_size && queued_tokens < self.limits.max_batch_tokens;
            let now = Instant::now();
            if room && !s.closed && self.arriving.load(Ordering::SeqCst) > 0 && now < deadline {
                s = self.ready.wait_timeout(s, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
                continue;
            }
            let group = take_group(&mut s.jobs, &self.limits);
            s.inputs -= group.iter().map(|j| j.tokens.len()).sum::<usize>();
            return Some(group);
        }
    }
}

/// Takes the oldest job, then the queued jobs nearest to it in length, while
/// the group stays within the limits. The oldest always goes, so no job
/// waits forever behind others of a more common length.
fn take_group(jobs: &mut VecDeque<(Job, Instant)>, limits: &BatchLimits) -> Vec<Job> {
    let Some((first, _)) = jobs.pop_front() else { return Vec::new() };
    let target = first.longest();
    let mut examples = first.tokens.len();
    let mut tokens: usize = first.tokens.iter().sum();
    let words = matches!(first.input, JobInput::Words(_));
    let mut candidates: Vec<usize> = (0..jobs.len()).filter(|&i| matches!(jobs[i].0.input, JobInput::Words(_)) == words).collect();
    candidates.sort_by_key(|&i| (jobs[i].0.longest().abs_diff(target), i));
    let mut chosen = Vec::new();
    for i in candidates {
        let job = &jobs[i].0;
        let (n, t) = (job.tokens.len(), job.tokens.iter().sum::<usize>());
        if examples + n > limits.max_batch_size || tokens + t > limits.max_batch_tokens {
            continue;
        }
        examples += n;
        tokens += t;
        chosen.push(i);
    }
    // Remove from the back so the indices stay valid.
    chosen.sort_unstable();
    let mut group = vec![first];
    for i in chosen.into_iter().rev() {
        group.extend(jobs.remove(i).map(|(j, _)| j));
    }
    group
}

/// Padding a pass may waste before it is cut. On the CPU a forward pass
/// costs about the same per token at B=1 as at B=32 (within a quarter), plus
/// a fixed part worth a few dozen tokens: cutting pays once the waste is
/// larger than that and a large share of the pass.
const WASTE_TOKENS: usize = 64;

/// Splits examples sorted by length, longest first, into forward passes:
/// each pass holds at most `max_rows` examples and `max_tokens` padded
/// tokens, and is cut early where its padding would exceed both
/// `WASTE_TOKENS` and a quarter of the pass. Returns (start, end) ranges.
pub fn plan_passes(sorted_lengths: &[usize], max_rows: usize, max_tokens: usize) -> Vec<(usize, usize)> {
    let mut passes = Vec::new();
    let mut start = 0;
    while start < sorted_lengths.len() {
        let longest = sorted_lengths[start].max(1);
        let mut real = longest;
        let mut end = start + 1;
        while end < sorted_lengths.len() {
            let rows = end - start + 1;
            let padded = rows * longest;
            let waste = padded - (real + sorted_lengths[end]);
            if rows > max_rows || padded > max_tokens || (waste > WASTE_TOKENS && waste * 4 > padded) {
                break;
            }
            real += sorted_lengths[end];
            end += 1;
        }
        passes.push((start, end));
        start = end;
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
            run_texts(group, &classifier, &metrics, limits);
        }
    }
}

fn run_texts(group: Vec<Job>, classifier: &Classifier, metrics: &Metrics, limits: &BatchLimits) {
    // (job, example) for every example of the group, longest first.
    let mut order: Vec<(usize, usize)> = Vec::new();
    for (j, job) in group.iter().enumerate() {
        order.extend((0..job.tokens.len()).map(|e| (j, e)));
    }
    let example = |&(j, e): &(usize, usize)| match &group[j].input {
        JobInput::Texts(encoded) => &encoded[e],
        JobInput::Words(_) => unreachable!("a group holds one kind of job"),
    };
    order.sort_by_key(|k| std::cmp::Reverse(example(k).ids.len()));
    let lengths: Vec<usize> = order.iter().map(|k| example(k).ids.len()).collect();
    let mut results: Vec<Vec<Option<TextPrediction>>> = group.iter().map(|j| vec![None; j.tokens.len()]).collect();
    let mut failed: Vec<Option<String>> = vec![None; group.len()];
    for (start, end) in plan_passes(&lengths, limits.max_batch_size, limits.max_batch_tokens) {
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
        let answer = match failure {
            Some(message) => Err(message),
            None => Ok(JobOutput::Texts(predictions.into_iter().map(|p| p.expect("every example predicted")).collect())),
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
mod tests {
    use super::*;

    #[test]
    fn passes_keep_similar_lengths_together() {
        // Eight of 60 tokens, then twenty of 10: the fourth 10 padded to 60
        // would take the waste over 64 tokens and a quarter of the pass.
        let mut lengths = vec![60; 8];
        lengths.extend([10; 20]);
        assert_eq!(plan_passes(&lengths, 32, 10_000), vec![(0, 11), (11, 28)]);
        // Long passes are not cut for a little padding: 64 tokens of 2000.
        let mut long = vec![100; 19];
        long.push(36);
        assert_eq!(plan_passes(&long, 32, 10_000), vec![(0, 20)]);
    }

    #[test]
    fn passes_respect_rows_and_tokens() {
        let lengths = [20; 10];
        assert_eq!(plan_passes(&lengths, 4, 10_000), vec![(0, 4), (4, 8), (8, 10)]);
        assert_eq!(plan_passes(&lengths, 32, 60), vec![(0, 3), (3, 6), (6, 9), (9, 10)]);
        // One example longer than the token limit still gets its own pass.
        assert_eq!(plan_passes(&[500, 5], 32, 100), vec![(0, 1), (1, 2)]);
        assert!(plan_passes(&[], 32, 100).is_empty());
    }

    #[test]
    fn small_waste_is_not_cut() {
        // 27 tokens of padding: more than a quarter of the pass, but a
        // second forward pass would cost more.
        assert_eq!(plan_passes(&[12, 3, 3, 3], 32, 10_000), vec![(0, 4)]);
    }

    fn job(tokens: Vec<usize>) -> (Job, oneshot::Receiver<Result<JobOutput, String>>) {
        let (reply, rx) = oneshot::channel();
        let input =
            JobInput::Texts(tokens.iter().map(|&n| Encoded { ids: vec![1; n], type_ids: vec![0; n], word_ids: vec![None; n] }).collect());
        (Job { input, tokens, reply }, rx)
    }

    fn limits(max_batch_size: usize, max_queue: usize) -> BatchLimits {
        BatchLimits { max_batch_size, max_batch_tokens: 10_000, max_wait: Duration::from_millis(50), max_queue }
    }

    #[test]
    fn groups_start_with_the_oldest_and_add_the_nearest_lengths() {
        let mut jobs = VecDeque::new();
        let mut receivers = Vec::new();
        for n in [30, 5, 29, 31, 6] {
            let (j, rx) = job(vec![n]);
            jobs.push_back((j, Instant::now()));
            receivers.push(rx);
        }
        let group = take_group(&mut jobs, &limits(3, 10));
        let mut lengths: Vec<usize> = group.iter().map(|j| j.longest()).collect();
        assert_eq!(lengths[0], 30, "the oldest first");
        lengths.sort_unstable();
        assert_eq!(lengths, vec![29, 30, 31]);
        let left: Vec<usize> = jobs.iter().map(|(j, _)| j.longest()).collect();
        assert_eq!(left, vec![5, 6]);
    }

    #[test]
    fn a_full_queue_refuses_and_a_closed_one_too() {
        let queue = Queue::new(limits(8, 2));
        let (a, _ra) = job(vec![3]);
        let (b, _rb) = job(vec![3]);
        let (c, _rc) = job(vec![3]);
        assert_eq!(queue.push(a), Ok(()));
        assert_eq!(queue.push(b), Ok(()));
        assert_eq!(queue.push(c), Err(Refused::Full));
        assert_eq!(queue.depth(), (2, 2));
        queue.close();
        let (d, _rd) = job(vec![3]);
        assert_eq!(queue.push(d), Err(Refused::Closed));
        // Closed, the queued jobs still come out, then None.
        assert_eq!(queue.next_group().map(|g| g.len()), Some(2));
        assert!(queue.next_group().is_none());
    }

    #[test]
    fn a_lone_job_is_not_held_for_max_wait() {
        let mut l = limits(8, 4);
        l.max_wait = Duration::from_secs(5);
        let queue = Queue::new(l);
        let (a, _ra) = job(vec![3]);
        queue.push(a).unwrap();
        let started = Instant::now();
        assert_eq!(queue.next_group().map(|g| g.len()), Some(1));
        assert!(started.elapsed() < Duration::from_secs(1), "nothing was arriving, so no wait");
    }

    #[test]
    fn jobs_whose_callers_left_are_dropped() {
        let queue = Queue::new(limits(8, 4));
        let (a, ra) = job(vec![3]);
        let (b, _rb) = job(vec![4]);
        queue.push(a).unwrap();
        queue.push(b).unwrap();
        drop(ra);
        let group = queue.next_group().unwrap();
        assert_eq!(group.iter().map(|j| j.longest()).collect::<Vec<_>>(), vec![4]);
    }
}

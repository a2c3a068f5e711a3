//! The batcher's grouping, cost model and queue.

use super::*;

/// Limits for planning passes: rows and padded tokens.
fn plan(max_batch_size: usize, max_batch_tokens: usize) -> BatchLimits {
    BatchLimits { max_batch_size, max_batch_tokens, max_wait: Duration::ZERO, max_queue: 1 }
}

#[test]
fn passes_keep_similar_lengths_together() {
    // Eight of 60 tokens, then twenty of 10: two passes cost 40 + 480 and
    // 40 + 200 tokens, one pass 40 + 1,680.
    let mut lengths = vec![60; 8];
    lengths.extend([10; 20]);
    assert_eq!(plan_passes(&lengths, &plan(32, 10_000), PaddingCost::Full), vec![(0, 8), (8, 28)]);
    // A 36-token example among 100s pads 64 tokens, more than a pass of
    // its own costs (40 + 36).
    let mut long = vec![100; 19];
    long.push(36);
    assert_eq!(plan_passes(&long, &plan(32, 10_000), PaddingCost::Full), vec![(0, 19), (19, 20)]);
    // When the padding is skipped, one pass is cheaper.
    assert_eq!(plan_passes(&long, &plan(32, 10_000), PaddingCost::Skipped), vec![(0, 20)]);
}

#[test]
fn passes_respect_rows_and_tokens() {
    let lengths = [20; 10];
    for padding in [PaddingCost::Full, PaddingCost::Skipped] {
        assert_eq!(plan_passes(&lengths, &plan(4, 10_000), padding), vec![(0, 4), (4, 8), (8, 10)]);
        assert_eq!(plan_passes(&lengths, &plan(32, 60), padding), vec![(0, 3), (3, 6), (6, 9), (9, 10)]);
        // One example longer than the token limit still gets its own pass.
        assert_eq!(plan_passes(&[500, 5], &plan(32, 100), padding), vec![(0, 1), (1, 2)]);
        assert!(plan_passes(&[], &plan(32, 100), padding).is_empty());
    }
}

#[test]
fn small_waste_is_not_cut() {
    // 27 tokens of padding (40 + 48 in all) cost less than a second pass
    // (40 + 12 + 40 + 9).
    assert_eq!(plan_passes(&[12, 3, 3, 3], &plan(32, 10_000), PaddingCost::Full), vec![(0, 4)]);
}

/// Every way to cut `lengths` into contiguous passes within the limits:
/// the least total cost.
fn cheapest_by_brute_force(lengths: &[usize], limits: &BatchLimits, padding: PaddingCost) -> usize {
    let n = lengths.len();
    let mut best = usize::MAX;
    for cuts in 0..1u32 << (n - 1) {
        let (mut total, mut start, mut fits) = (0, 0, true);
        for end in 1..=n {
            if end == n || cuts & (1 << (end - 1)) != 0 {
                let rows = end - start;
                fits &= rows == 1 || (rows <= limits.max_batch_size && rows * lengths[start] <= limits.max_batch_tokens);
                total += pass_cost(rows, lengths[start], lengths[start..end].iter().sum(), padding);
                start = end;
            }
        }
        if fits {
            best = best.min(total);
        }
    }
    best
}

#[test]
fn planned_passes_cost_the_least_of_every_cut() {
    let mut state = 12345u64;
    for case in 0..300 {
        let n = 1 + case % 11;
        let mut lengths: Vec<usize> = (0..n)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                3 + (state >> 33) as usize % 90
            })
            .collect();
        lengths.sort_unstable_by(|a, b| b.cmp(a));
        let padding = if case % 2 == 0 { PaddingCost::Full } else { PaddingCost::Skipped };
        let limits = plan(1 + case % 5, 60 + case % 200);
        let passes = plan_passes(&lengths, &limits, padding);
        assert_eq!(passes.first().map(|p| p.0), Some(0));
        assert_eq!(passes.last().map(|p| p.1), Some(n));
        assert!(passes.windows(2).all(|w| w[0].1 == w[1].0), "{passes:?}");
        let cost: usize = passes.iter().map(|&(s, e)| pass_cost(e - s, lengths[s], lengths[s..e].iter().sum(), padding)).sum();
        assert_eq!(cost, cheapest_by_brute_force(&lengths, &limits, padding), "{lengths:?} {limits:?}");
    }
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
    let group = take_group(&mut jobs, &limits(3, 10), PaddingCost::Full);
    let mut lengths: Vec<usize> = group.iter().map(|j| j.longest()).collect();
    assert_eq!(lengths[0], 30, "the oldest first");
    lengths.sort_unstable();
    assert_eq!(lengths, vec![29, 30, 31]);
    let left: Vec<usize> = jobs.iter().map(|(j, _)| j.longest()).collect();
    assert_eq!(left, vec![5, 6]);
}

fn queue_of(lengths: &[usize]) -> (VecDeque<(Job, Instant)>, Vec<oneshot::Receiver<Result<JobOutput, String>>>) {
    let mut jobs = VecDeque::new();
    let mut receivers = Vec::new();
    for &n in lengths {
        let (j, rx) = job(vec![n]);
        jobs.push_back((j, Instant::now()));
        receivers.push(rx);
    }
    (jobs, receivers)
}

#[test]
fn a_deep_queue_yields_a_full_group_of_equal_lengths() {
    // Oldest 20, then 10s, 20s and 40s interleaved: the group is the
    // eight 20s, not the eight nearest in arrival.
    let mut lengths = vec![20];
    for _ in 0..7 {
        lengths.extend([10, 40, 20]);
    }
    let (mut jobs, _receivers) = queue_of(&lengths);
    let group = take_group(&mut jobs, &limits(8, 64), PaddingCost::Full);
    assert_eq!(group.iter().map(|j| j.longest()).collect::<Vec<_>>(), vec![20; 8]);
    assert_eq!(jobs.len(), 14);
}

#[test]
fn a_long_oldest_job_runs_alone_and_the_short_ones_together() {
    let mut lengths = vec![60];
    lengths.extend([10; 20]);
    let (mut jobs, _receivers) = queue_of(&lengths);
    let first = take_group(&mut jobs, &limits(32, 64), PaddingCost::Full);
    assert_eq!(first.iter().map(|j| j.longest()).collect::<Vec<_>>(), vec![60]);
    let second = take_group(&mut jobs, &limits(32, 64), PaddingCost::Full);
    assert_eq!(second.len(), 20);
    assert!(jobs.is_empty());
    // When padding costs nothing (the CPU path), one group takes them all.
    let (mut jobs, _receivers) = queue_of(&lengths);
    assert_eq!(take_group(&mut jobs, &limits(32, 64), PaddingCost::Skipped).len(), 21);
}

#[test]
fn groups_keep_within_the_token_limit() {
    let (mut jobs, _receivers) = queue_of(&[30; 10]);
    let l = BatchLimits { max_batch_tokens: 100, ..limits(32, 64) };
    let group = take_group(&mut jobs, &l, PaddingCost::Full);
    assert_eq!(group.len(), 3, "three of 30 fit in 100 padded tokens, four do not");
    // A job bigger than the limit on its own still runs.
    let (mut big, _r) = queue_of(&[500, 5]);
    assert_eq!(take_group(&mut big, &l, PaddingCost::Full).iter().map(|j| j.longest()).collect::<Vec<_>>(), vec![500]);
}

#[test]
fn a_full_queue_refuses_and_a_closed_one_too() {
    let queue = Queue::new(limits(8, 2), PaddingCost::Full);
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
    let queue = Queue::new(l, PaddingCost::Full);
    let (a, _ra) = job(vec![3]);
    queue.push(a).unwrap();
    let started = Instant::now();
    assert_eq!(queue.next_group().map(|g| g.len()), Some(1));
    assert!(started.elapsed() < Duration::from_secs(1), "nothing was arriving, so no wait");
}

#[test]
fn jobs_whose_callers_left_are_dropped() {
    let queue = Queue::new(limits(8, 4), PaddingCost::Full);
    let (a, ra) = job(vec![3]);
    let (b, _rb) = job(vec![4]);
    queue.push(a).unwrap();
    queue.push(b).unwrap();
    drop(ra);
    let group = queue.next_group().unwrap();
    assert_eq!(group.iter().map(|j| j.longest()).collect::<Vec<_>>(), vec![4]);
}

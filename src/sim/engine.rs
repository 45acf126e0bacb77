//! Simulated engines: one prefill engine with its queue, one decode engine with its batch,
//! and the aggregated worker that is both.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use crate::profile::{DecodeModel, PrefillModel};
use crate::workload::Request;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Life {
    /// Cold start: GPUs paid for, no work served.
    Starting,
    Ready,
    /// Takes no new work, finishes what it has, then goes.
    Draining,
    Gone,
}

/// What scaling needs of an engine of either role.
pub trait Replica {
    fn life(&self) -> Life;
    fn set_life(&mut self, life: Life, now: f64);
    fn is_idle(&self) -> bool;
    /// The work it holds, to drain the least loaded first.
    fn load(&self) -> u64;
    /// When its cold start began (its GPUs held from then); infinite while it is pending.
    fn born_s(&self) -> f64;

    /// Ends its cold start; false when it was cancelled meanwhile.
    fn finish_cold_start(&mut self, now: f64) -> bool {
        if self.life() != Life::Starting {
            return false;
        }
        self.set_life(Life::Ready, now);
        true
    }

    /// A draining replica that has finished its work goes; true when it went.
    fn leave_if_drained(&mut self, now: f64) -> bool {
        if self.life() == Life::Draining && self.is_idle() {
            self.set_life(Life::Gone, now);
            return true;
        }
        false
    }
}

/// Shrinks a pool toward `target` replicas counted as ready or starting: cold starts are
/// cancelled first (newest first), then the least loaded ready engines drain (going at once
/// when idle). Returns how many engines the caller must start to reach the target.
pub fn resize_pool<E: Replica>(pool: &mut [E], target: u32, now: f64) -> u32 {
    let counted = pool
        .iter()
        .filter(|e| matches!(e.life(), Life::Starting | Life::Ready))
        .count() as u32;
    if target >= counted {
        return target - counted;
    }
    let mut remove = counted - target;
    for e in pool.iter_mut().rev() {
        if remove == 0 {
            break;
        }
        if e.life() == Life::Starting {
            e.set_life(Life::Gone, now);
            remove -= 1;
        }
    }
    let mut ready: Vec<usize> = (0..pool.len())
        .filter(|&i| pool[i].life() == Life::Ready)
        .collect();
    ready.sort_by_key(|&i| (pool[i].load(), std::cmp::Reverse(i)));
    for i in ready.into_iter().take(remove as usize) {
        let e = &mut pool[i];
        let next = if e.is_idle() {
            Life::Gone
        } else {
            Life::Draining
        };
        e.set_life(next, now);
    }
    0
}

macro_rules! replica_impl {
    ($t:ty, $load:ident) => {
        impl Replica for $t {
            fn life(&self) -> Life {
                self.life
            }
            fn set_life(&mut self, life: Life, now: f64) {
                self.life = life;
                if life == Life::Gone {
                    self.gone_s = Some(now);
                }
            }
            fn is_idle(&self) -> bool {
                <$t>::is_idle(self)
            }
            fn born_s(&self) -> f64 {
                self.born_s
            }
            fn load(&self) -> u64 {
                self.$load
            }
        }
    };
}

replica_impl!(PrefillEngine, queued_tokens);
replica_impl!(DecodeEngine, reserved_tokens);
replica_impl!(Worker, reserved_tokens);

pub struct PrefillEngine {
    pub life: Life,
    pub born_s: f64,
    pub gone_s: Option<f64>,
    /// `(request, tokens already prefilled)` in arrival order.
    queue: VecDeque<(u32, u32)>,
    /// Tokens still to prefill, over the whole queue.
    pub queued_tokens: u64,
    /// Chunks of the batch in flight: tokens taken from each of the first queue entries.
    batch: Vec<u32>,
}

impl PrefillEngine {
    pub fn new(now: f64, life: Life) -> PrefillEngine {
        PrefillEngine {
            life,
            born_s: now,
            gone_s: None,
            queue: VecDeque::new(),
            queued_tokens: 0,
            batch: Vec::new(),
        }
    }

    pub fn is_idle(&self) -> bool {
        self.queue.is_empty()
    }

    /// Whether an iteration is in flight.
    pub fn is_busy(&self) -> bool {
        !self.batch.is_empty()
    }

    pub fn queue_len(&self) -> usize {
        self.queue.len()
    }

    /// Queues a prompt whose first `cached` tokens (fewer than `isl`) are in the engine's
    /// prefix cache: it is prefilled from there, each chunk costing what it does after them.
    pub fn enqueue_past_cached(&mut self, id: u32, isl: u32, cached: u32) {
        let cached = cached.min(isl.saturating_sub(1));
        self.queue.push_back((id, cached));
        self.queued_tokens += (isl - cached) as u64;
    }

    /// Tokens held in this engine's KV cache: what is prefilled so far plus the batch in flight.
    pub fn kv_tokens(&self) -> f64 {
        let started: u64 = self
            .queue
            .iter()
            .take_while(|e| e.1 > 0)
            .map(|e| e.1 as u64)
            .sum();
        (started + self.batch.iter().map(|&t| t as u64).sum::<u64>()) as f64
    }

    /// Starts the next iteration if idle and there is work: takes up to `budget` tokens from
    /// the front of the queue. Returns its duration in ms: the fixed overhead plus each
    /// chunk's token cost, so one whole request alone takes exactly its profiled TTFT.
    pub fn start_batch(
        &mut self,
        requests: &[Request],
        model: &PrefillModel,
        budget: u32,
    ) -> Option<f64> {
        if !self.batch.is_empty() || self.queue.is_empty() {
            return None;
        }
        let mut left = budget.max(1);
        let mut ms = model.overhead_ms();
        for &(id, done) in self.queue.iter() {
            if left == 0 {
                break;
            }
            let isl = requests[id as usize].isl;
            let take = (isl - done).min(left);
            ms += model.chunk_cost_ms(done as f64, (done + take) as f64);
            self.batch.push(take);
            left -= take;
        }
        Some(ms)
    }

    /// Ends the iteration in flight; returns the requests whose prefill is complete.
    pub fn finish_batch(&mut self, requests: &[Request]) -> Vec<u32> {
        let mut done_ids = Vec::new();
        for take in std::mem::take(&mut self.batch) {
            let entry = self
                .queue
                .front_mut()
                .expect("a chunk belongs to a queued request");
            entry.1 += take;
            self.queued_tokens -= take as u64;
            if entry.1 >= requests[entry.0 as usize].isl {
                done_ids.push(entry.0);
                self.queue.pop_front();
            } else {
                // A partly prefilled request stays at the front for the next iteration;
                // it was the batch's last chunk, so the loop ends here.
                break;
            }
        }
        done_ids
    }
}

pub struct DecodeEngine {
    pub life: Life,
    pub born_s: f64,
    pub gone_s: Option<f64>,
    /// Tokens reserved for admitted requests (input + full output each).
    pub reserved_tokens: u64,
    /// Tokens currently in the KV cache of the running batch.
    pub live_tokens: f64,
    active: u32,
    steps_done: u64,
    /// `(step at which it finishes, request)`.
    finishing: BinaryHeap<Reverse<(u64, u32)>>,
    /// Admitted while a step was running; they join at the next step.
    joining: Vec<u32>,
    stepping: bool,
    /// Joined since the last step began: their first decode step is the next.
    fresh: Vec<u32>,
    /// In the step running, their first: their token gap runs from their first token.
    first_step: Vec<u32>,
    step_started_s: f64,
}

/// The token gaps one decode step ends: `steady` requests each waited the step's `step_ms`;
/// `first` made their second token, their gap measured from their first.
pub struct StepGaps<'a> {
    pub step_ms: f64,
    pub steady: u32,
    pub first: &'a [u32],
}

impl DecodeEngine {
    pub fn new(now: f64, life: Life) -> DecodeEngine {
        DecodeEngine {
            life,
            born_s: now,
            gone_s: None,
            reserved_tokens: 0,
            live_tokens: 0.0,
            active: 0,
            steps_done: 0,
            finishing: BinaryHeap::new(),
            joining: Vec::new(),
            stepping: false,
            fresh: Vec::new(),
            first_step: Vec::new(),
            step_started_s: now,
        }
    }

    pub fn is_idle(&self) -> bool {
        self.active == 0 && self.joining.is_empty()
    }

    pub fn batch_len(&self) -> u32 {
        self.active + self.joining.len() as u32
    }

    /// Whether a step is in flight.
    pub fn is_stepping(&self) -> bool {
        self.stepping
    }

    pub fn admit(&mut self, id: u32, r: Request) {
        self.reserved_tokens += r.isl as u64 + r.osl as u64;
        if self.stepping {
            self.joining.push(id);
        } else {
            self.join(id, r);
        }
    }

    fn join(&mut self, id: u32, r: Request) {
        self.active += 1;
        // The first token came from prefill; decode makes the other osl - 1.
        self.live_tokens += r.isl as f64 + 1.0;
        self.fresh.push(id);
        self.finishing
            .push(Reverse((self.steps_done + (r.osl as u64 - 1), id)));
    }

    /// Starts a step if not stepping and the batch is not empty; returns its duration in ms,
    /// the profile's ITL at this engine's KV usage and mean context.
    pub fn start_step(&mut self, model: &DecodeModel, now: f64) -> Option<f64> {
        if self.stepping || self.active == 0 {
            return None;
        }
        self.stepping = true;
        self.step_started_s = now;
        self.first_step.clear();
        std::mem::swap(&mut self.first_step, &mut self.fresh);
        let kv = self.live_tokens / model.max_kv_tokens();
        let context = self.live_tokens / self.active as f64;
        Some(model.itl_ms(kv, context))
    }

    /// The token gaps the step in flight ends at `now`; call before [`Self::finish_step`].
    pub fn step_gaps(&self, now: f64) -> StepGaps<'_> {
        StepGaps {
            step_ms: (now - self.step_started_s) * 1000.0,
            steady: self.active - self.first_step.len() as u32,
            first: &self.first_step,
        }
    }

    /// Ends the step: every running request made one token. Returns those now finished.
    pub fn finish_step(&mut self, requests: &[Request]) -> Vec<u32> {
        self.stepping = false;
        self.steps_done += 1;
        self.live_tokens += self.active as f64;
        let mut finished = Vec::new();
        while let Some(&Reverse((step, id))) = self.finishing.peek() {
            if step > self.steps_done {
                break;
            }
            self.finishing.pop();
            let r = requests[id as usize];
            self.active -= 1;
            self.live_tokens -= r.isl as f64 + r.osl as f64;
            self.reserved_tokens -= r.isl as u64 + r.osl as u64;
            finished.push(id);
        }
        if self.active == 0 {
            self.live_tokens = 0.0; // no drift from float sums
        }
        for id in std::mem::take(&mut self.joining) {
            self.join(id, requests[id as usize]);
        }
        finished
    }
}

/// An aggregated worker: one engine that prefills and decodes. Each iteration runs a decode
/// step for its batch and, alongside, a chunk of the prompts queued at it (chunked prefill
/// mixed into the decode batch), paying one iteration overhead for both. A prompt is queued
/// only with room for its whole KV (input and output) reserved, and decodes where it was
/// prefilled: no transfer.
pub struct Worker {
    /// The worker's life; its two engines' own are not read.
    pub life: Life,
    pub born_s: f64,
    pub gone_s: Option<f64>,
    pub prefill: PrefillEngine,
    pub decode: DecodeEngine,
    /// KV reserved for everything admitted: prompts queued and requests decoding.
    pub reserved_tokens: u64,
    /// The part of `reserved_tokens` kept for output: what the prefix cache cannot use.
    pub reserved_output_tokens: u64,
}

impl Worker {
    pub fn new(now: f64, life: Life) -> Worker {
        Worker {
            life,
            born_s: now,
            gone_s: None,
            prefill: PrefillEngine::new(now, Life::Ready),
            decode: DecodeEngine::new(now, Life::Ready),
            reserved_tokens: 0,
            reserved_output_tokens: 0,
        }
    }

    pub fn is_idle(&self) -> bool {
        self.prefill.is_idle() && self.decode.is_idle() && !self.is_busy()
    }

    pub fn is_busy(&self) -> bool {
        self.prefill.is_busy() || self.decode.is_stepping()
    }

    /// Requests admitted and not finished.
    pub fn requests(&self) -> usize {
        self.prefill.queue_len() + self.decode.batch_len() as usize
    }

    /// Queues a prompt whose first `cached` tokens are in the worker's prefix cache,
    /// reserving its whole KV (the cached blocks too: on the safe side of sharing them).
    pub fn enqueue(&mut self, id: u32, r: Request, cached: u32) {
        self.reserved_tokens += r.isl as u64 + r.osl as u64;
        self.reserved_output_tokens += r.osl as u64;
        self.prefill.enqueue_past_cached(id, r.isl, cached);
    }

    /// KV tokens the prefix cache may hold: all but what is kept for admitted requests'
    /// output. Their prompts' blocks are cached blocks themselves, shared, as in vLLM.
    pub fn cache_room_tokens(&self, max_kv_tokens: f64) -> f64 {
        (max_kv_tokens - self.reserved_output_tokens as f64).max(0.0)
    }

    /// Tokens in this worker's KV cache: the decoding batch's and the prompts prefilled so far.
    pub fn kv_tokens(&self) -> f64 {
        self.decode.live_tokens + self.prefill.kv_tokens()
    }

    /// Starts an iteration if none is in flight and there is work; returns its duration in
    /// ms. A decode step alone takes the profile's ITL, a chunk alone its prefill time
    /// (overhead included); together, the step and the chunk's token cost: one overhead.
    pub fn start_iteration(
        &mut self,
        requests: &[Request],
        prefill_model: &PrefillModel,
        decode_model: &DecodeModel,
        budget: u32,
        now: f64,
    ) -> Option<f64> {
        if self.is_busy() {
            return None;
        }
        let step = self.decode.start_step(decode_model, now);
        let chunk = self.prefill.start_batch(requests, prefill_model, budget);
        match (step, chunk) {
            (Some(s), Some(c)) => Some(s + (c - prefill_model.overhead_ms()).max(0.0)),
            (s, c) => s.or(c),
        }
    }

    /// Ends the iteration in flight: returns the requests whose prefill completed (their
    /// first token) and those that finished decoding. Completed prompts join the batch at
    /// the next step.
    pub fn finish_iteration(&mut self, requests: &[Request]) -> (Vec<u32>, Vec<u32>) {
        let finished = if self.decode.is_stepping() {
            self.decode.finish_step(requests)
        } else {
            Vec::new()
        };
        for &id in &finished {
            self.release(requests[id as usize]);
        }
        let prefilled = if self.prefill.is_busy() {
            self.prefill.finish_batch(requests)
        } else {
            Vec::new()
        };
        (prefilled, finished)
    }

    /// A prefilled request starts decoding here (its KV was reserved when it was queued).
    pub fn start_decoding(&mut self, id: u32, r: Request) {
        self.decode.admit(id, r);
        // `admit` reserves for the decode engine's own accounting; the worker's reservation
        // was made at `enqueue`, and the decode engine's is not read for a worker.
    }

    /// Frees a request's KV: it finished decoding, or needed none (one output token).
    pub fn release(&mut self, r: Request) {
        self.reserved_tokens -= r.isl as u64 + r.osl as u64;
        self.reserved_output_tokens -= r.osl as u64;
    }
}

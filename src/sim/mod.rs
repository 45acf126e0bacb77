//! The dry run: a discrete-event, per-request simulation of a Dynamo deployment,
//! disaggregated or aggregated.
//!
//! Disaggregated, requests arrive from a workload, queue at a prefill engine (join the
//! shortest queue, in tokens), are prefilled in chunked batches, move their KV cache to a
//! decode engine (the one with the most free KV; a pool-level FIFO waits when none has room)
//! and decode in continuous batches. Aggregated, they queue at a worker with room for their
//! KV (the shortest queue), which mixes prefill chunks into its decode steps and decodes
//! them where it prefilled them. Every `interval_s` the policy under test is shown an [`Observation`]
//! of the interval and returns targets, which start replicas (after a cold start) or drain them.
//! How batches map to time is documented in `docs/simulator.md`.

mod engine;
pub mod oracle;
pub mod policies;
mod prefix_cache;

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use serde::{Deserialize, Serialize};

use crate::metrics::{IntervalAccumulator, ItlObserved};
use crate::planner::{Decision, Limits, Observation, Policy, ReplicaState, RoleReplicas, Sla};
use crate::profile::{DecodeModel, PrefillModel, Profile};
use crate::workload::Request;
use engine::{DecodeEngine, Life, PrefillEngine, Replica, Worker};
use prefix_cache::BlockCache;
pub use prefix_cache::PrefixCache;

/// KV cache transfer from prefill to decode: `base_ms + per_1k_tokens_ms * isl / 1000`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KvTransfer {
    #[serde(default)]
    pub base_ms: f64,
    #[serde(default)]
    pub per_1k_tokens_ms: f64,
}

impl KvTransfer {
    fn seconds(&self, isl: u32) -> f64 {
        (self.base_ms + self.per_1k_tokens_ms * isl as f64 / 1000.0) / 1000.0
    }
}

/// A signal of the observation the policies can be shown without (`deployment.withhold`):
/// a dry run of a deployment whose metrics lack it, or of a tool that does not send it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// The arrivals of the interval's second half.
    RequestsSecondHalf,
    /// The p50, p90 and p99 of TTFT and ITL; their means are kept (Dynamo's own metrics
    /// are means).
    Percentiles,
    /// The means of TTFT and ITL; their percentiles are kept (a source that reports
    /// percentiles only).
    Means,
    TtftMs,
    ItlMs,
    KvUtilization,
    QueuedPrefillTokens,
    /// The replicas per role and state (a source that does not report them).
    Replicas,
    /// The prefix caches' hit rate (engines that cache but do not export it).
    PrefixCacheHitRate,
}

/// The observation with the `withheld` signals left out, as a policy is shown it.
pub fn withholding(obs: &Observation, withheld: &[Signal]) -> Observation {
    let mut seen = obs.clone();
    for signal in withheld {
        match signal {
            Signal::RequestsSecondHalf => seen.requests_second_half = None,
            Signal::Percentiles => {
                for summary in [&mut seen.ttft_ms, &mut seen.itl_ms].into_iter().flatten() {
                    summary.p50 = None;
                    summary.p90 = None;
                    summary.p99 = None;
                }
            }
            Signal::Means => {
                for summary in [&mut seen.ttft_ms, &mut seen.itl_ms].into_iter().flatten() {
                    summary.mean = None;
                }
            }
            Signal::TtftMs => seen.ttft_ms = None,
            Signal::ItlMs => seen.itl_ms = None,
            Signal::KvUtilization => seen.kv_utilization = None,
            Signal::QueuedPrefillTokens => seen.queued_prefill_tokens = None,
            Signal::Replicas => seen.replicas = None,
            Signal::PrefixCacheHitRate => seen.prefix_cache_hit_rate = None,
        }
    }
    seen
}

/// Everything the simulated deployment needs besides the workload and the policy.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub sla: Sla,
    pub limits: Limits,
    pub interval_s: f64,
    /// Cold start of a new replica: GPUs are paid from the request, work starts after this.
    pub startup_s: f64,
    /// The cold start the policies that cannot see the run are told (`startup_s` unless the
    /// scenario's configuration has gone stale).
    pub told_startup_s: f64,
    /// How often gauges (KV utilisation, queue) are sampled, as Prometheus scrapes them.
    pub scrape_s: f64,
    /// Tokens one prefill iteration may take (chunked prefill).
    pub prefill_token_budget: u32,
    pub kv_transfer: KvTransfer,
    /// Requests one decode engine may batch, besides the KV limit.
    pub max_decode_batch: Option<u32>,
    /// Replicas ready at time 0 unless the policy names its own.
    pub initial: (u32, u32),
    /// Policy ticks stop here; requests already admitted still finish.
    pub duration_s: f64,
    pub max_context_tokens: f64,
    /// One pool of workers that prefill and decode (the decode count is the workers'), not
    /// separate prefill and decode pools.
    pub aggregated: bool,
    /// Signals the policies are not shown (the timeline keeps them).
    pub withhold: Vec<Signal>,
    /// Prefill engines keep the prompts' prefix blocks and compute only what they lack
    /// (`deployment.prefix_cache`); `None`: every prompt is prefilled whole.
    pub prefix_cache: Option<PrefixCache>,
    /// Spans `(from_s, to_s)` in which the policies are shown no signal at all: a decision
    /// at a time within one (after `from_s`, up to `to_s`) sees its time, interval and the
    /// replicas only, as the live loop shows the planner a metrics read that failed.
    pub signal_outages: Vec<(f64, f64)>,
    /// How the frontend sends requests to the engines (`deployment.router`).
    pub router: Routing,
    /// The buckets the observations' latency percentiles are read through, as
    /// `histogram_quantile` reads a live deployment's (`deployment.latency_percentiles`);
    /// `None`: exact.
    pub latency_histograms: Option<crate::planner::percentiles::LatencyHistograms>,
    /// ITL observed per request or per token gap (`deployment.itl_observed`).
    pub itl_observed: ItlObserved,
}

/// How the simulated frontend picks the engine (or worker) a request goes to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Routing {
    /// The least loaded: the prefill engine (or worker) with the fewest tokens to compute,
    /// the decode engine with the most free KV, as a KV-aware router weighs load.
    #[default]
    LeastLoaded,
    /// In turn, whatever each holds (Dynamo's default `--router-mode round-robin`): the next
    /// ready engine after the last one sent to. A request sent to a decode engine or an
    /// aggregated worker without KV room for it waits there until the room frees, as
    /// Dynamo's push router without a busy threshold (its default) sends it all the same
    /// and the engine queues it.
    RoundRobin,
    /// At random among the ready engines (`--router-mode random`), from a fixed seed: a run
    /// replays alike. Requests wait at an engine without room as in turn.
    Random,
}

/// The seed of the simulated frontend's random router.
const RANDOM_ROUTER_SEED: u64 = 0x5eed;

/// The simulated frontend: it picks the engine (or worker) of a pool each request goes to,
/// as its `Routing` says, and keeps what sending in turn and at random need.
struct FrontendRouter {
    routing: Routing,
    /// The last engine each pool sent to (`Pool` order), for sending in turn.
    last: [Option<usize>; 3],
    /// The dice of the random router.
    rng: Pcg64,
}

impl FrontendRouter {
    fn new(routing: Routing) -> FrontendRouter {
        FrontendRouter {
            routing,
            last: [None; 3],
            rng: Pcg64::seed_from_u64(RANDOM_ROUTER_SEED),
        }
    }

    /// One of the pool's `n` engines that `eligible` accepts: the next in turn after the
    /// last one sent to, one drawn uniformly, or what `least_loaded` picks among them.
    fn pick(
        &mut self,
        pool: Pool,
        n: usize,
        eligible: impl Fn(usize) -> bool,
        least_loaded: impl FnOnce(&dyn Fn(usize) -> bool) -> Option<usize>,
    ) -> Option<usize> {
        let last = &mut self.last[pool as usize];
        let chosen = match self.routing {
            Routing::LeastLoaded => least_loaded(&eligible),
            Routing::RoundRobin => {
                let start = last.map_or(0, |l| l + 1);
                (0..n).map(|k| (start + k) % n).find(|&i| eligible(i))
            }
            Routing::Random => {
                let open: Vec<usize> = (0..n).filter(|&i| eligible(i)).collect();
                (!open.is_empty()).then(|| open[self.rng.random_range(0..open.len())])
            }
        };
        if chosen.is_some() {
            *last = chosen;
        }
        chosen
    }
}

/// The observation a policy is shown at `t`: blank but for the time, interval and replicas
/// within a signal outage, else without the withheld signals.
pub fn shown(obs: &Observation, t: f64, cfg: &SimConfig) -> Observation {
    if cfg
        .signal_outages
        .iter()
        .any(|&(from, to)| t > from && t <= to)
    {
        return Observation {
            time_s: obs.time_s,
            interval_s: obs.interval_s,
            replicas: obs.replicas,
            ..Default::default()
        };
    }
    withholding(obs, &cfg.withhold)
}

/// What happened to one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// NaN for a rejected request.
    pub ttft_ms: f32,
    /// Mean inter-token latency; 0 for one-token outputs; NaN for a rejected request.
    pub itl_ms: f32,
}

impl Outcome {
    pub fn rejected(&self) -> bool {
        self.ttft_ms.is_nan()
    }
    pub fn meets(&self, sla: &Sla) -> bool {
        self.ttft_ms as f64 <= sla.ttft_ms && self.itl_ms as f64 <= sla.itl_ms
    }
}

/// One row of a policy's timeline: an interval as observed, and what was decided at its end.
#[derive(Debug, Clone)]
pub struct IntervalRow {
    pub observation: Observation,
    pub completions: u64,
    /// Share of the interval's completions that met the SLA.
    pub attainment: Option<f64>,
    pub target_prefill: u32,
    pub target_decode: u32,
    pub gpus: u32,
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct SimResult {
    pub policy: String,
    /// The policy's settings (`Policy::settings`), where it has any.
    pub settings: Option<serde_json::Value>,
    pub outcomes: Vec<Outcome>,
    pub timeline: Vec<IntervalRow>,
    /// Every observation the policy was shown (signals withheld and outages applied) and
    /// its decision, in order, the first at time 0: the lines `decide` would be given and
    /// answer (`observations_<policy>.jsonl`, `decisions_<policy>.jsonl`).
    pub exchanges: Vec<(Observation, Decision)>,
    pub gpu_seconds: f64,
    pub max_prefill: u32,
    pub max_decode: u32,
    pub end_s: f64,
    /// With prefix caching: the prompt tokens routed to prefill engines, and how many of
    /// them were found in the engine's cache.
    pub prefix_tokens: Option<PrefixTokens>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PrefixTokens {
    pub prompt: u64,
    pub cached: u64,
}

/// The pool an engine is in.
#[derive(Debug, Clone, Copy)]
enum Pool {
    Prefill,
    Decode,
    Workers,
}

#[derive(Debug, Clone, Copy)]
enum Event {
    PrefillDone(u32),
    DecodeStep(u32),
    PrefillReady(u32),
    DecodeReady(u32),
    KvArrive(u32),
    WorkerStep(u32),
    WorkerReady(u32),
}

struct Scheduled {
    at: f64,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scheduled {
    // Reversed: BinaryHeap is a max-heap and the earliest event must come first.
    fn cmp(&self, o: &Self) -> Ordering {
        o.at.total_cmp(&self.at).then(o.seq.cmp(&self.seq))
    }
}

/// The token gaps a decode step ends at `now`: counted by the accumulator when it observes
/// ITL per token, and recorded for the emulator, whose frontend observes ITL as Dynamo's
/// does, once per token gap.
fn observe_token_gaps(
    acc: &mut IntervalAccumulator,
    records: &mut Option<Vec<Record>>,
    flight: &[InFlight],
    e: &DecodeEngine,
    now: f64,
) {
    if !acc.observes_itl_per_token() && records.is_none() {
        return;
    }
    let gaps = e.step_gaps(now);
    let firsts = gaps
        .first
        .iter()
        .map(|&id| (now - flight[id as usize].first_token_s) * 1000.0);
    for (ms, count) in std::iter::once((gaps.step_ms, gaps.steady)).chain(firsts.map(|ms| (ms, 1)))
    {
        if count == 0 {
            continue;
        }
        acc.on_token_gaps(ms, count);
        if let Some(rec) = records {
            rec.push(Record::TokenGaps {
                gap_s: ms / 1000.0,
                count,
            });
        }
    }
}

/// Per-request state while in flight.
#[derive(Debug, Clone, Copy, Default)]
struct InFlight {
    first_token_s: f64,
    finish_s: f64,
}

/// One step of a request's life, recorded when asked for (the emulator turns these into
/// Prometheus metrics).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Record {
    Arrival {
        isl: u32,
    },
    FirstToken {
        ttft_s: f64,
    },
    Completion {
        osl: u32,
        duration_s: f64,
    },
    /// `count` tokens streamed, each `gap_s` after the request's token before it.
    TokenGaps {
        gap_s: f64,
        count: u32,
    },
    /// With prefix caching, a prompt routed to a prefill engine holding its first `cached`
    /// tokens.
    PrefixLookup {
        isl: u32,
        cached: u32,
    },
}

/// A simulated deployment that can be stepped: the dry run drives it tick by tick, the
/// emulator in real time.
pub struct Deployment {
    cfg: SimConfig,
    prefill_model: PrefillModel,
    decode_model: DecodeModel,
    requests: Vec<Request>,
    outcomes: Vec<Outcome>,
    flight: Vec<InFlight>,
    heap: BinaryHeap<Scheduled>,
    seq: u64,
    now: f64,
    next_arrival: usize,
    next_scrape: f64,
    prefill: Vec<PrefillEngine>,
    decode: Vec<DecodeEngine>,
    /// Aggregated workers (empty in a disaggregated deployment, as `prefill` and `decode`
    /// are in an aggregated one).
    workers: Vec<Worker>,
    /// Requests waiting for a ready worker with room for their KV.
    worker_waiting: VecDeque<u32>,
    /// Requests waiting for any ready prefill engine (only when none is ready).
    prefill_backlog: VecDeque<u32>,
    /// Requests whose KV has arrived but no decode engine has room (least loaded), or none
    /// is ready.
    decode_waiting: VecDeque<u32>,
    /// Requests sent to each decode engine (by index) and waiting there for KV room, in the
    /// order they came (in turn or at random; the least-loaded router sends only where
    /// there is room).
    decode_held: Vec<VecDeque<u32>>,
    /// The same at each aggregated worker.
    worker_held: Vec<VecDeque<u32>>,
    /// Engines ordered but not placed yet, in the order they were ordered: the GPUs they
    /// need are still held by replicas draining (a pod pending until the scheduler finds
    /// room). Counted as starting; their GPUs and cold start begin when placed.
    pending: Vec<(Pool, u32)>,
    acc: IntervalAccumulator,
    records: Option<Vec<Record>>,
    target: (u32, u32),
    max_prefill: u32,
    max_decode: u32,
    /// Each prefill engine's (or aggregated worker's) prefix blocks, by its index (with
    /// prefix caching).
    block_caches: Vec<BlockCache>,
    prefix_tokens: PrefixTokens,
    router: FrontendRouter,
}

/// Runs one policy over one workload.
pub fn simulate(
    cfg: &SimConfig,
    profile: &Profile,
    requests: &[Request],
    policy: &mut dyn Policy,
    progress: Option<&indicatif::ProgressBar>,
) -> SimResult {
    let initial = policy.initial_replicas().unwrap_or(cfg.initial);
    let mut sim = Deployment::new(cfg.clone(), profile, requests.to_vec(), initial);
    let mut timeline = Vec::new();
    // The first decision, at time 0, sees an empty interval and the initial replicas.
    let first_obs = Observation {
        time_s: 0.0,
        interval_s: cfg.interval_s,
        replicas: Some(sim.replica_states()),
        ..Default::default()
    };
    let d = policy.decide(0.0, &first_obs);
    sim.apply_targets(d.prefill, d.decode);
    let mut exchanges = vec![(first_obs, d)];

    let mut next_tick = cfg.interval_s;
    while next_tick <= cfg.duration_s + 1e-9 {
        sim.advance_to(next_tick, progress);
        let t = next_tick;
        let replicas = sim.replica_states();
        let (obs, extras) = sim.acc.take(t, cfg.interval_s, replicas);
        let seen = shown(&obs, t, cfg);
        let decision = policy.decide(t, &seen);
        sim.apply_targets(decision.prefill, decision.decode);
        timeline.push(IntervalRow {
            observation: obs,
            completions: extras.completions,
            attainment: None,
            target_prefill: sim.target.0,
            target_decode: sim.target.1,
            gpus: sim.gpus_held(),
            reasons: decision.reasons.clone(),
        });
        exchanges.push((seen, decision));
        next_tick += cfg.interval_s;
    }
    sim.advance_to(f64::INFINITY, progress);
    if let Some(pb) = progress {
        pb.set_position(requests.len() as u64);
    }
    // The run ends when its last request is done (or at the workload's end). Replicas still
    // starting then are not waited for: a cold start longer than the run would otherwise
    // bill each of them for all of it.
    let last_done_s = sim.flight.iter().map(|f| f.finish_s).fold(0.0, f64::max);
    let end_s = last_done_s.max(cfg.duration_s);
    let gpu_seconds = sim.gpu_seconds(end_s);
    fill_attainment(&mut timeline, &sim.outcomes, &sim.flight, cfg);
    SimResult {
        policy: policy.name().to_string(),
        settings: policy.settings(),
        outcomes: sim.outcomes,
        timeline,
        exchanges,
        gpu_seconds,
        max_prefill: sim.max_prefill,
        max_decode: sim.max_decode,
        end_s,
        prefix_tokens: cfg.prefix_cache.is_some().then_some(sim.prefix_tokens),
    }
}

/// Attainment per interval, over the requests that finished in it.
fn fill_attainment(
    timeline: &mut [IntervalRow],
    outcomes: &[Outcome],
    flight: &[InFlight],
    cfg: &SimConfig,
) {
    let n = timeline.len();
    let mut met = vec![0u64; n];
    let mut total = vec![0u64; n];
    for (i, o) in outcomes.iter().enumerate() {
        if o.rejected() {
            continue;
        }
        if n == 0 {
            break;
        }
        let k = ((flight[i].finish_s / cfg.interval_s).floor() as usize).min(n - 1);
        total[k] += 1;
        if o.meets(&cfg.sla) {
            met[k] += 1;
        }
    }
    for (k, row) in timeline.iter_mut().enumerate() {
        row.attainment = (total[k] > 0).then(|| met[k] as f64 / total[k] as f64);
    }
}

impl Deployment {
    /// A deployment with `initial` replicas ready at time 0 (within the limits), to serve
    /// `requests` (sorted by arrival).
    pub fn new(
        cfg: SimConfig,
        profile: &Profile,
        requests: Vec<Request>,
        initial: (u32, u32),
    ) -> Deployment {
        let n = requests.len();
        let (p0, d0, _) = cfg.limits.clamp(initial.0, initial.1);
        let mut sim = Deployment {
            prefill_model: profile.prefill_model(),
            decode_model: profile.decode_model(),
            outcomes: vec![
                Outcome {
                    ttft_ms: f32::NAN,
                    itl_ms: f32::NAN
                };
                n
            ],
            flight: vec![InFlight::default(); n],
            heap: BinaryHeap::new(),
            seq: 0,
            now: 0.0,
            next_arrival: 0,
            next_scrape: cfg.scrape_s,
            prefill: (0..p0)
                .map(|_| PrefillEngine::new(0.0, Life::Ready))
                .collect(),
            decode: (0..if cfg.aggregated { 0 } else { d0 })
                .map(|_| DecodeEngine::new(0.0, Life::Ready))
                .collect(),
            workers: (0..if cfg.aggregated { d0 } else { 0 })
                .map(|_| Worker::new(0.0, Life::Ready))
                .collect(),
            worker_waiting: VecDeque::new(),
            prefill_backlog: VecDeque::new(),
            decode_waiting: VecDeque::new(),
            decode_held: Vec::new(),
            worker_held: Vec::new(),
            pending: Vec::new(),
            acc: IntervalAccumulator::reading_percentiles_through(cfg.latency_histograms.clone())
                .observing_itl(cfg.itl_observed),
            records: None,
            target: (p0, d0),
            max_prefill: 0,
            max_decode: 0,
            block_caches: Vec::new(),
            prefix_tokens: PrefixTokens::default(),
            router: FrontendRouter::new(cfg.router),
            requests,
            cfg,
        };
        sim.note_peaks();
        sim
    }

    /// Keeps a [`Record`] of every arrival, first token, token gap and completion from now on.
    pub fn record(&mut self) {
        self.records.get_or_insert_with(Vec::new);
    }

    /// The records kept since the last call.
    pub fn take_records(&mut self) -> Vec<Record> {
        self.records
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// The replicas asked for last, after the limits.
    pub fn target(&self) -> (u32, u32) {
        self.target
    }

    /// Requests accepted and not yet finished.
    pub fn in_flight(&self) -> usize {
        let p: usize = self.prefill.iter().map(|e| e.queue_len()).sum();
        let d: usize = self.decode.iter().map(|e| e.batch_len() as usize).sum();
        let w: usize = self.workers.iter().map(|e| e.requests()).sum();
        p + d
            + w
            + self.prefill_backlog.len()
            + self.decode_waiting.len()
            + self.worker_waiting.len()
            + self.held()
    }

    /// Requests waiting at an engine for KV room.
    fn held(&self) -> usize {
        self.decode_held
            .iter()
            .chain(&self.worker_held)
            .map(VecDeque::len)
            .sum()
    }

    /// Requests waiting for a prefill or a decode slot.
    pub fn queued(&self) -> usize {
        let p: usize = self
            .prefill
            .iter()
            .map(|e| e.queue_len().saturating_sub(1))
            .sum();
        let w: usize = self
            .workers
            .iter()
            .map(|e| e.prefill.queue_len().saturating_sub(1))
            .sum();
        p + w
            + self.prefill_backlog.len()
            + self.decode_waiting.len()
            + self.worker_waiting.len()
            + self.held()
    }

    /// Mean KV utilisation (0..1) of ready engines per role, and queued prefill tokens.
    pub fn gauges(&self) -> (Option<f64>, Option<f64>, f64) {
        let max_kv = self.decode_model.max_kv_tokens();
        let mean = |it: &mut dyn Iterator<Item = f64>| {
            let (s, n) = it.fold((0.0, 0u32), |(s, n), v| (s + v, n + 1));
            (n > 0).then(|| s / n as f64)
        };
        let kv_p = mean(
            &mut self
                .prefill
                .iter()
                .filter(|e| e.life == Life::Ready)
                .map(|e| e.kv_tokens() / max_kv),
        );
        let kv_d = mean(
            &mut self
                .decode
                .iter()
                .filter(|e| e.life == Life::Ready)
                .map(|e| e.live_tokens / max_kv)
                .chain(
                    self.workers
                        .iter()
                        .filter(|e| e.life == Life::Ready)
                        .map(|e| e.kv_tokens() / max_kv),
                ),
        );
        let mut queued: u64 = self
            .prefill
            .iter()
            .filter(|e| e.life != Life::Gone)
            .map(|e| e.queued_tokens)
            .sum();
        queued += self
            .workers
            .iter()
            .filter(|e| e.life != Life::Gone)
            .map(|e| e.prefill.queued_tokens)
            .sum::<u64>();
        queued += self
            .prefill_backlog
            .iter()
            .chain(&self.worker_waiting)
            .chain(self.worker_held.iter().flatten())
            .map(|&r| self.requests[r as usize].isl as u64)
            .sum::<u64>();
        (kv_p, kv_d, queued as f64)
    }

    /// Processes everything that happens up to time `t`: engine events, arrivals and gauge
    /// scrapes, in that order at equal times.
    pub fn advance_to(&mut self, t: f64, progress: Option<&indicatif::ProgressBar>) {
        loop {
            let t_arrival = self
                .requests
                .get(self.next_arrival)
                .map_or(f64::INFINITY, |r| r.arrival_s);
            let t_event = self.heap.peek().map_or(f64::INFINITY, |e| e.at);
            let t_scrape = if self.next_scrape <= self.cfg.duration_s + 1e-9 {
                self.next_scrape
            } else {
                f64::INFINITY
            };
            let next = t_event.min(t_arrival).min(t_scrape);
            if !next.is_finite() || next > t {
                break;
            }
            self.now = next;
            if t_event <= next {
                let e = self.heap.pop().expect("peeked");
                self.handle(e.event);
            } else if t_arrival <= next {
                let id = self.next_arrival as u32;
                self.next_arrival += 1;
                self.arrive(id);
                if let Some(pb) = progress {
                    if self.next_arrival % 4096 == 0 {
                        pb.set_position(self.next_arrival as u64);
                    }
                }
            } else {
                self.scrape();
                self.next_scrape += self.cfg.scrape_s;
            }
        }
        if t.is_finite() {
            self.now = self.now.max(t);
        }
    }

    /// Summarises the interval ending now, as a policy would see it.
    pub fn observe(&mut self, interval_s: f64) -> Observation {
        let replicas = self.replica_states();
        self.acc.take(self.now, interval_s, replicas).0
    }

    fn schedule(&mut self, at: f64, event: Event) {
        self.seq += 1;
        self.heap.push(Scheduled {
            at,
            seq: self.seq,
            event,
        });
    }

    pub fn replica_states(&self) -> RoleReplicas {
        fn count<'e>(lives: impl Iterator<Item = &'e Life>) -> ReplicaState {
            let mut s = ReplicaState::default();
            for l in lives {
                match l {
                    Life::Starting => s.starting += 1,
                    Life::Ready => s.ready += 1,
                    Life::Draining => s.draining += 1,
                    Life::Gone => {}
                }
            }
            s
        }
        RoleReplicas {
            prefill: count(self.prefill.iter().map(|e| &e.life)),
            decode: count(
                self.decode
                    .iter()
                    .map(|e| &e.life)
                    .chain(self.workers.iter().map(|e| &e.life)),
            ),
        }
    }

    /// GPUs held by replicas that are placed: ready, draining, or in their cold start (not
    /// those still pending).
    fn gpus_held(&self) -> u32 {
        fn placed<E: Replica>(pool: &[E]) -> u32 {
            pool.iter()
                .filter(|e| e.life() != Life::Gone && e.born_s().is_finite())
                .count() as u32
        }
        let decode = placed(&self.decode) + placed(&self.workers);
        self.cfg.limits.gpus(placed(&self.prefill), decode)
    }

    fn note_peaks(&mut self) {
        let r = self.replica_states();
        self.max_prefill = self
            .max_prefill
            .max(r.prefill.ready + r.prefill.starting + r.prefill.draining);
        self.max_decode = self
            .max_decode
            .max(r.decode.ready + r.decode.starting + r.decode.draining);
    }

    fn gpu_seconds(&self, end_s: f64) -> f64 {
        let l = &self.cfg.limits;
        // From the start of a replica's cold start to its removal, or to the end of the run.
        let held = |born_s: f64, gone_s: Option<f64>| {
            (gone_s.unwrap_or(end_s).min(end_s) - born_s).max(0.0)
        };
        let p: f64 = self.prefill.iter().map(|e| held(e.born_s, e.gone_s)).sum();
        let d: f64 = self
            .decode
            .iter()
            .map(|e| held(e.born_s, e.gone_s))
            .chain(self.workers.iter().map(|e| held(e.born_s, e.gone_s)))
            .sum();
        p * l.gpus_per_prefill_engine as f64 + d * l.gpus_per_decode_engine as f64
    }

    /// Starts or drains replicas toward the targets, within the limits.
    pub fn apply_targets(&mut self, prefill: u32, decode: u32) {
        // Whatever a policy asks, the deployment never leaves its limits.
        let (p, d, _) = self.cfg.limits.clamp(prefill, decode);
        self.target = (p, d);
        if self.cfg.aggregated {
            self.scale_workers(d);
        } else {
            self.scale_prefill(p);
            self.scale_decode(d);
        }
        // After both roles have shrunk: what one gives up at once the other may take.
        self.place_pending();
        self.note_peaks();
    }

    fn scale_prefill(&mut self, target: u32) {
        for _ in 0..engine::resize_pool(&mut self.prefill, target, self.now) {
            self.pending
                .push((Pool::Prefill, self.prefill.len() as u32));
            self.prefill
                .push(PrefillEngine::new(f64::INFINITY, Life::Starting));
        }
    }

    fn scale_decode(&mut self, target: u32) {
        for _ in 0..engine::resize_pool(&mut self.decode, target, self.now) {
            self.pending.push((Pool::Decode, self.decode.len() as u32));
            self.decode
                .push(DecodeEngine::new(f64::INFINITY, Life::Starting));
        }
        let decode = &self.decode;
        if release_held(&mut self.decode_held, &mut self.decode_waiting, |i| {
            decode[i].life != Life::Ready
        }) {
            self.admit_waiting();
        }
    }

    fn scale_workers(&mut self, target: u32) {
        for _ in 0..engine::resize_pool(&mut self.workers, target, self.now) {
            self.pending
                .push((Pool::Workers, self.workers.len() as u32));
            self.workers
                .push(Worker::new(f64::INFINITY, Life::Starting));
        }
        let workers = &self.workers;
        if release_held(&mut self.worker_held, &mut self.worker_waiting, |i| {
            workers[i].life != Life::Ready
        }) {
            self.admit_to_workers();
        }
    }

    /// Places the pending engines that the GPUs not held now have room for, in the order
    /// they were ordered; each begins its cold start now. Those cancelled meanwhile go.
    fn place_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let (now, startup_s) = (self.now, self.cfg.startup_s);
        let l = self.cfg.limits;
        let mut free = l.gpu_budget.saturating_sub(self.gpus_held());
        let mut waiting = std::mem::take(&mut self.pending);
        waiting.retain(|&(pool, id)| {
            let i = id as usize;
            let (life, gpus) = match pool {
                Pool::Prefill => (self.prefill[i].life(), l.gpus_per_prefill_engine),
                Pool::Decode => (self.decode[i].life(), l.gpus_per_decode_engine),
                Pool::Workers => (self.workers[i].life(), l.gpus_per_decode_engine),
            };
            if life != Life::Starting {
                return false;
            }
            if gpus > free {
                return true;
            }
            free -= gpus;
            let ready = match pool {
                Pool::Prefill => {
                    self.prefill[i].born_s = now;
                    Event::PrefillReady(id)
                }
                Pool::Decode => {
                    self.decode[i].born_s = now;
                    Event::DecodeReady(id)
                }
                Pool::Workers => {
                    self.workers[i].born_s = now;
                    Event::WorkerReady(id)
                }
            };
            self.seq += 1;
            self.heap.push(Scheduled {
                at: now + startup_s,
                seq: self.seq,
                event: ready,
            });
            false
        });
        self.pending = waiting;
    }

    fn scrape(&mut self) {
        let (kv_p, kv_d, queued) = self.gauges();
        self.acc.on_scrape(kv_p, kv_d, queued);
    }

    fn arrive(&mut self, id: u32) {
        let r = self.requests[id as usize];
        let need = r.isl as f64 + r.osl as f64;
        if need > self.cfg.max_context_tokens || need > self.decode_model.max_kv_tokens() {
            // Too large for the model's context: rejected and counted, never clamped. The
            // observation counts served requests, as PromQL filtered on success would.
            return;
        }
        self.acc.on_arrival(self.now, r.isl);
        if let Some(rec) = &mut self.records {
            rec.push(Record::Arrival { isl: r.isl });
        }
        if self.cfg.aggregated {
            self.worker_waiting.push_back(id);
            self.admit_to_workers();
        } else {
            self.route_prefill(id);
        }
    }

    /// Sends waiting requests, in arrival order, to a ready worker, where each waits until
    /// the worker has room for its KV. The least-loaded router sends only to a worker with
    /// room, the one with the fewest prompt tokens to compute (its queue, and what the
    /// prompt lacks in its prefix cache there, as `route_prefill` weighs them), and holds the
    /// request while none has room; in turn or at random, whatever each worker holds.
    fn admit_to_workers(&mut self) {
        let max_kv = self.decode_model.max_kv_tokens() as u64;
        let weighs_load = self.router.routing == Routing::LeastLoaded;
        while let Some(&id) = self.worker_waiting.front() {
            let r = self.requests[id as usize];
            let cap = self.cfg.max_decode_batch;
            let workers = &self.workers;
            let cached = |i| cached_tokens(&self.cfg.prefix_cache, &self.block_caches, i, r);
            let eligible = |i: usize| {
                let w = &workers[i];
                if weighs_load {
                    has_room(w.life, w.reserved_tokens, w.requests(), r, max_kv, cap)
                } else {
                    w.life == Life::Ready
                }
            };
            let least_loaded = |room: &dyn Fn(usize) -> bool| {
                (0..workers.len()).filter(|&i| room(i)).min_by_key(|&i| {
                    let w = &workers[i];
                    let to_compute = w.prefill.queued_tokens + u64::from(r.isl - cached(i));
                    (to_compute, w.reserved_tokens, i)
                })
            };
            let Some(i) = self
                .router
                .pick(Pool::Workers, workers.len(), eligible, least_loaded)
            else {
                break;
            };
            self.worker_waiting.pop_front();
            held_at(&mut self.worker_held, i).push_back(id);
            self.admit_held_at_worker(i);
        }
    }

    /// Queues the requests waiting at worker `i`, in the order they came, while it has room
    /// for their KV, and starts an iteration if it has work.
    fn admit_held_at_worker(&mut self, i: usize) {
        let max_kv = self.decode_model.max_kv_tokens() as u64;
        let cap = self.cfg.max_decode_batch;
        while let Some(&id) = self.worker_held.get(i).and_then(VecDeque::front) {
            let r = self.requests[id as usize];
            let w = &self.workers[i];
            if !has_room(w.life, w.reserved_tokens, w.requests(), r, max_kv, cap) {
                break;
            }
            self.worker_held[i].pop_front();
            let cached = cached_tokens(&self.cfg.prefix_cache, &self.block_caches, i, r);
            self.note_prefix_lookup(r.isl, cached);
            self.workers[i].enqueue(id, r, cached);
        }
        self.start_worker(i);
    }

    fn start_worker(&mut self, i: usize) {
        if let Some(ms) = self.workers[i].start_iteration(
            &self.requests,
            &self.prefill_model,
            &self.decode_model,
            self.cfg.prefill_token_budget,
            self.now,
        ) {
            self.schedule(self.now + ms / 1000.0, Event::WorkerStep(i as u32));
        }
    }

    /// Queues a prompt at a ready prefill engine: the next in turn, one drawn at random, or
    /// (least loaded) the one with the fewest prompt tokens to compute. With prefix caching
    /// those are the engine's queue and what the prompt lacks there, so a prompt goes where
    /// its prefix is unless the queue there costs more than the prefix saves (as a KV-aware
    /// router weighs overlap against load).
    fn route_prefill(&mut self, id: u32) {
        let r = self.requests[id as usize];
        let prefill = &self.prefill;
        let cached = |i| cached_tokens(&self.cfg.prefix_cache, &self.block_caches, i, r);
        let ready = |i: usize| prefill[i].life == Life::Ready;
        let least_loaded = |ready: &dyn Fn(usize) -> bool| {
            (0..prefill.len())
                .filter(|&i| ready(i))
                .min_by_key(|&i| (prefill[i].queued_tokens + u64::from(r.isl - cached(i)), i))
        };
        let Some(i) = self
            .router
            .pick(Pool::Prefill, prefill.len(), ready, least_loaded)
        else {
            self.prefill_backlog.push_back(id);
            return;
        };
        let cached = cached(i);
        self.note_prefix_lookup(r.isl, cached);
        self.prefill[i].enqueue_past_cached(id, r.isl, cached);
        self.start_prefill(i);
    }

    /// Counts a prompt's lookup in the prefix caches, when there are caches.
    fn note_prefix_lookup(&mut self, isl: u32, cached: u32) {
        if self.cfg.prefix_cache.is_none() {
            return;
        }
        self.prefix_tokens.prompt += u64::from(isl);
        self.prefix_tokens.cached += u64::from(cached);
        self.acc.on_prefix_lookup(isl, cached);
        if let Some(rec) = &mut self.records {
            rec.push(Record::PrefixLookup { isl, cached });
        }
    }

    /// With prefix caching, engine or worker `i` keeps the blocks of the prompts it has
    /// prefilled, in as many blocks as `room_tokens` of KV hold: a prefill engine's whole
    /// KV cache, an aggregated worker's less what its admitted requests keep for output.
    fn cache_prefilled(&mut self, i: usize, ids: &[u32], room_tokens: f64) {
        let Some(pc) = &self.cfg.prefix_cache else {
            return;
        };
        if self.block_caches.len() <= i {
            self.block_caches.resize_with(i + 1, || BlockCache::new(0));
        }
        let cache = &mut self.block_caches[i];
        cache.set_capacity((room_tokens / f64::from(pc.block_tokens.max(1))) as usize);
        for &id in ids {
            let prefix = self.requests[id as usize].prefix;
            cache.use_blocks(prefix.keys(&pc.blocks));
        }
    }

    fn start_prefill(&mut self, i: usize) {
        if let Some(ms) = self.prefill[i].start_batch(
            &self.requests,
            &self.prefill_model,
            self.cfg.prefill_token_budget,
        ) {
            self.schedule(self.now + ms / 1000.0, Event::PrefillDone(i as u32));
        }
    }

    /// Admits the requests waiting at decode engine `i`, in the order they came, while it
    /// has room for their KV, and starts a step if it has a batch.
    fn admit_held_at_decode(&mut self, i: usize) {
        let max_kv = self.decode_model.max_kv_tokens() as u64;
        let cap = self.cfg.max_decode_batch;
        while let Some(&id) = self.decode_held.get(i).and_then(VecDeque::front) {
            let r = self.requests[id as usize];
            let e = &self.decode[i];
            if !has_room(
                e.life,
                e.reserved_tokens,
                e.batch_len() as usize,
                r,
                max_kv,
                cap,
            ) {
                break;
            }
            self.decode_held[i].pop_front();
            self.decode[i].admit(id, r);
        }
        self.start_decode(i);
    }

    fn start_decode(&mut self, i: usize) {
        if let Some(ms) = self.decode[i].start_step(&self.decode_model, self.now) {
            self.schedule(self.now + ms / 1000.0, Event::DecodeStep(i as u32));
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::PrefillReady(i) => {
                if !self.prefill[i as usize].finish_cold_start(self.now) {
                    return; // cancelled during its cold start
                }
                while let Some(id) = self.prefill_backlog.pop_front() {
                    self.route_prefill(id);
                }
            }
            Event::DecodeReady(i) => {
                if !self.decode[i as usize].finish_cold_start(self.now) {
                    return;
                }
                self.admit_waiting();
            }
            Event::PrefillDone(i) => {
                let done = self.prefill[i as usize].finish_batch(&self.requests);
                self.cache_prefilled(i as usize, &done, self.decode_model.max_kv_tokens());
                for id in done {
                    let r = self.requests[id as usize];
                    let transfer = self.cfg.kv_transfer.seconds(r.isl);
                    if transfer > 0.0 {
                        self.schedule(self.now + transfer, Event::KvArrive(id));
                    } else {
                        self.first_token(id);
                    }
                }
                if self.prefill[i as usize].leave_if_drained(self.now) {
                    self.place_pending();
                } else {
                    self.start_prefill(i as usize);
                }
            }
            Event::KvArrive(id) => self.first_token(id),
            Event::WorkerReady(i) => {
                if !self.workers[i as usize].finish_cold_start(self.now) {
                    return;
                }
                self.admit_to_workers();
            }
            Event::WorkerStep(i) => {
                let now = self.now;
                if self.workers[i as usize].decode.is_stepping() {
                    let decode = &self.workers[i as usize].decode;
                    observe_token_gaps(&mut self.acc, &mut self.records, &self.flight, decode, now);
                }
                let (prefilled, finished) =
                    self.workers[i as usize].finish_iteration(&self.requests);
                let room =
                    self.workers[i as usize].cache_room_tokens(self.decode_model.max_kv_tokens());
                self.cache_prefilled(i as usize, &prefilled, room);
                for id in finished {
                    self.complete(id, now);
                }
                for id in prefilled {
                    let r = self.requests[id as usize];
                    if self.record_first_token(id) {
                        self.workers[i as usize].start_decoding(id, r);
                    } else {
                        self.workers[i as usize].release(r);
                    }
                }
                if self.workers[i as usize].leave_if_drained(now) {
                    self.place_pending();
                } else {
                    self.admit_held_at_worker(i as usize);
                }
                self.admit_to_workers();
            }
            Event::DecodeStep(i) => {
                let now = self.now;
                let decode = &self.decode[i as usize];
                observe_token_gaps(&mut self.acc, &mut self.records, &self.flight, decode, now);
                let finished = self.decode[i as usize].finish_step(&self.requests);
                for id in finished {
                    self.complete(id, now);
                }
                if self.decode[i as usize].leave_if_drained(now) {
                    self.place_pending();
                } else {
                    self.admit_held_at_decode(i as usize);
                }
                self.admit_waiting();
            }
        }
    }

    /// The first token reaches the user; the request moves to decode.
    fn first_token(&mut self, id: u32) {
        if self.record_first_token(id) {
            self.decode_waiting.push_back(id);
            self.admit_waiting();
        }
    }

    /// Records the first token; completes a request that has no more to make. Returns
    /// whether it goes on to decode.
    fn record_first_token(&mut self, id: u32) -> bool {
        let r = self.requests[id as usize];
        let ttft_ms = (self.now - r.arrival_s) * 1000.0;
        self.outcomes[id as usize].ttft_ms = ttft_ms as f32;
        self.flight[id as usize].first_token_s = self.now;
        self.acc.on_first_token(ttft_ms);
        if let Some(rec) = &mut self.records {
            rec.push(Record::FirstToken {
                ttft_s: ttft_ms / 1000.0,
            });
        }
        if r.osl <= 1 {
            self.complete(id, self.now);
            return false;
        }
        true
    }

    fn complete(&mut self, id: u32, now: f64) {
        let r = self.requests[id as usize];
        let itl = if r.osl > 1 {
            Some((now - self.flight[id as usize].first_token_s) * 1000.0 / (r.osl - 1) as f64)
        } else {
            None
        };
        self.outcomes[id as usize].itl_ms = itl.unwrap_or(0.0) as f32;
        self.flight[id as usize].finish_s = now;
        if let Some(rec) = &mut self.records {
            rec.push(Record::Completion {
                osl: r.osl,
                duration_s: now - r.arrival_s,
            });
        }
        self.acc.on_completion(r.osl, itl);
    }

    /// Sends waiting requests, in arrival order, to a ready decode engine, where each waits
    /// until the engine has room for its KV. The least-loaded router sends only to an engine
    /// with room, the one with the most, and holds the request while none has room; in turn
    /// or at random, whatever each engine holds.
    fn admit_waiting(&mut self) {
        let max_kv = self.decode_model.max_kv_tokens() as u64;
        let weighs_load = self.router.routing == Routing::LeastLoaded;
        while let Some(&id) = self.decode_waiting.front() {
            let r = self.requests[id as usize];
            let cap = self.cfg.max_decode_batch;
            let decode = &self.decode;
            let eligible = |i: usize| {
                let e = &decode[i];
                if weighs_load {
                    let batch = e.batch_len() as usize;
                    has_room(e.life, e.reserved_tokens, batch, r, max_kv, cap)
                } else {
                    e.life == Life::Ready
                }
            };
            let most_room = |room: &dyn Fn(usize) -> bool| {
                (0..decode.len())
                    .filter(|&i| room(i))
                    .min_by_key(|&i| (decode[i].reserved_tokens, i))
            };
            let Some(i) = self
                .router
                .pick(Pool::Decode, decode.len(), eligible, most_room)
            else {
                break;
            };
            self.decode_waiting.pop_front();
            held_at(&mut self.decode_held, i).push_back(id);
            self.admit_held_at_decode(i);
        }
    }
}

/// The requests waiting at engine `i`, the list grown to reach it.
fn held_at(held: &mut Vec<VecDeque<u32>>, i: usize) -> &mut VecDeque<u32> {
    if held.len() <= i {
        held.resize_with(i + 1, VecDeque::new);
    }
    &mut held[i]
}

/// Moves the requests waiting at engines that `leaving` names (no longer ready: draining)
/// back to the router, ahead of those waiting there, in the order they came. Returns
/// whether any moved.
fn release_held(
    held: &mut [VecDeque<u32>],
    waiting: &mut VecDeque<u32>,
    leaving: impl Fn(usize) -> bool,
) -> bool {
    let mut back: Vec<u32> = Vec::new();
    for (i, h) in held.iter_mut().enumerate() {
        if !h.is_empty() && leaving(i) {
            back.extend(h.drain(..));
        }
    }
    // Request ids are in arrival order.
    back.sort_unstable();
    for &id in back.iter().rev() {
        waiting.push_front(id);
    }
    !back.is_empty()
}

/// The tokens of `r`'s prompt that engine (or worker) `i` holds in its prefix cache (none
/// without prefix caching): the run of its blocks from the first, all but the prompt's
/// last token at most.
fn cached_tokens(
    prefix_cache: &Option<PrefixCache>,
    caches: &[BlockCache],
    i: usize,
    r: Request,
) -> u32 {
    let (Some(pc), Some(cache)) = (prefix_cache, caches.get(i)) else {
        return 0;
    };
    let hits = cache.leading_hits(r.prefix.keys(&pc.blocks)) as u64;
    (hits * u64::from(pc.block_tokens)).min(u64::from(r.isl.saturating_sub(1))) as u32
}

/// Whether a ready engine holding `reserved` KV tokens and `requests` requests can take `r`:
/// its whole KV (input and output) fits, and the batch cap, if any, is not reached.
fn has_room(
    life: Life,
    reserved: u64,
    requests: usize,
    r: Request,
    max_kv: u64,
    cap: Option<u32>,
) -> bool {
    life == Life::Ready
        && reserved + r.isl as u64 + r.osl as u64 <= max_kv
        && cap.is_none_or(|c| requests < c as usize)
}

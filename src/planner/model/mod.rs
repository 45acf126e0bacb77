//! The performance model: what latency a number of replicas gives at a load.
//!
//! Prefill is a multi-server queue: requests arrive at rate `lambda` and take `S` (the
//! profiled TTFT at their ISL, times a learned correction) on one of `P` engines. Waiting
//! times follow the M/M/c (Erlang C) tail, `P(W > t) = C(P, a) * exp(-(P/S - lambda) t)`, so a
//! TTFT percentile target is met, not an average at full utilisation. Engines batch queued
//! prompts into one iteration and share its fixed overhead, so the `S` that sets the waiting
//! shrinks as the queue grows (`shared_service_ms`).
//!
//! Decode is a batch whose size follows from Little's law: `n = lambda/D * OSL * ITL`, and
//! whose ITL the profile gives at that batch's KV usage and context, times a learned
//! correction; the two are solved together. The batch size is taken at a high quantile of
//! its Poisson spread, so a per-request ITL percentile holds.
//!
//! Corrections are fitted online from observed against expected latency (a robust fit in
//! log space, with `argmin`), smoothed, and bounded.

mod decode;
mod fit;
mod queue;

use std::cell::RefCell;

use serde::{Deserialize, Serialize};

use crate::planner::percentiles::LatencyHistograms;
use crate::profile::{DecodeModel, PrefillModel};

pub use decode::{
    decode_itl_at_batch, decode_itl_ms, decode_itl_within, decode_mean_batch, interleaved_stretch,
    itl_batch_z, largest_batch_within, DecodeCorrection, ItlAtBatches, Router,
};
pub use fit::fit_correction;
use queue::QueueMemo;
pub use queue::{erlang_c, shared_service_ms, PrefillQueue, QueueQuantile};

/// Inverse of the standard normal CDF (Acklam's rational approximation, |error| < 1.2e-9).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.38357751867269e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let p = p.clamp(1e-12, 1.0 - 1e-12);
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// What is learned online: multipliers on the profile's prefill time and decode ITL, the
/// spread of prefill times (the p99 request alone, as a multiple of the mean one: long
/// prompts), and the variability of prefill waiting times.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Corrections {
    pub prefill: f64,
    pub prefill_tail: f64,
    pub prefill_variability: f64,
    pub decode: f64,
    /// How much more the decode batch swings than random arrivals make it swing (1 for
    /// Poisson arrivals; bursts within an interval make it more), from the ITL p99.
    #[serde(default = "one")]
    pub decode_variability: f64,
    /// The KV a decode request in flight holds, as a multiple of `ISL + OSL / 2` (see
    /// `DecodeCorrection`), from the observed KV utilisation.
    #[serde(default = "one")]
    pub decode_context: f64,
}

fn one() -> f64 {
    1.0
}

impl Corrections {
    /// Each correction's name, as `/metrics` labels it and a restart reads it back.
    pub const KINDS: [&'static str; 6] = [
        "prefill",
        "prefill_tail",
        "prefill_variability",
        "decode",
        "decode_variability",
        "decode_context",
    ];

    pub fn get(&self, kind: &str) -> Option<f64> {
        let mut c = *self;
        c.slot(kind).map(|v| *v)
    }

    fn slot(&mut self, kind: &str) -> Option<&mut f64> {
        match kind {
            "prefill" => Some(&mut self.prefill),
            "prefill_tail" => Some(&mut self.prefill_tail),
            "prefill_variability" => Some(&mut self.prefill_variability),
            "decode" => Some(&mut self.decode),
            "decode_variability" => Some(&mut self.decode_variability),
            "decode_context" => Some(&mut self.decode_context),
            _ => None,
        }
    }

    /// What the decode latencies are computed with.
    pub fn decode_terms(&self) -> DecodeCorrection {
        DecodeCorrection {
            speed: self.decode,
            context: self.decode_context,
        }
    }
}

impl Corrections {
    /// The corrections pressed against their bounds (within 1%: smoothing approaches a
    /// bound without reaching it), as `name xV (range LO-HI)`; `speed` is the configured
    /// range of the prefill and decode multipliers. A prompt spread of 1 is no spread: its
    /// lower bound is the natural value, not a limit hit.
    pub fn at_bounds(&self, speed: (f64, f64)) -> Vec<String> {
        let near = |v: f64, b: f64| (v - b).abs() <= 0.01 * b;
        [
            ("prefill", self.prefill, speed, true),
            ("slowest prompts", self.prefill_tail, TAIL_RANGE, false),
            (
                "waiting variability",
                self.prefill_variability,
                VARIABILITY_RANGE,
                true,
            ),
            ("decode", self.decode, speed, true),
            (
                "batch variability",
                self.decode_variability,
                DECODE_VARIABILITY_RANGE,
                true,
            ),
            ("KV per request", self.decode_context, CONTEXT_RANGE, true),
        ]
        .into_iter()
        .filter(|&(_, v, (lo, hi), low_too)| near(v, hi) || (low_too && near(v, lo)))
        .map(|(name, v, (lo, hi), _)| format!("{name} x{v:.2} (range {lo}-{hi})"))
        .collect()
    }
}

impl Default for Corrections {
    fn default() -> Self {
        Corrections {
            prefill: 1.0,
            prefill_tail: 1.0,
            prefill_variability: 1.0,
            decode: 1.0,
            decode_variability: 1.0,
            decode_context: 1.0,
        }
    }
}

/// A relative change of the prompt spread or the waiting variability within one refit
/// below which the prefill fits are not run a second time.
const REFIT_SHIFT: f64 = 0.01;

/// Bounds of the learned prefill-time spread.
pub const TAIL_RANGE: (f64, f64) = (1.0, 8.0);

/// How far past the most load per engine it was checked at the prefill waiting model is
/// trusted: a scale-down loads each engine at most this many times the most load seen
/// lately (`sla_planner::untested_load_floor`), and a waiting variability learned below 1
/// returns to 1 by this many times the most load learned from (`waiting_variability`).
pub const UNTESTED_LOAD_STRETCH: f64 = 2.0;

/// Bounds of the learned prefill variability. Requests that come in bursts of seconds wait
/// many times longer than random arrivals at the minute's mean rate would (a code trace
/// at four copies and double speed held it at the old bound of 5).
pub const VARIABILITY_RANGE: (f64, f64) = (0.2, 20.0);
/// Bounds of the learned decode batch variability.
pub const DECODE_VARIABILITY_RANGE: (f64, f64) = (0.5, 10.0);
/// The fewest requests per decode engine (by Little's law) an interval's KV utilisation is
/// learned from.
const MIN_CONTEXT_BATCH: f64 = 3.0;
/// Bounds of the learned KV per decode request: a prefix cache shares prompts (less), and
/// outputs of widely varied length keep the long ones in flight (more; `DecodeCorrection`).
pub const CONTEXT_RANGE: (f64, f64) = (0.25, 4.0);
/// The quantile of `Evidence::observed_tail_ms`: the p99, the tail that SLAs are about
/// (the exponential tail model fitted to a p90 overstates the p99 of real queues).
pub const TAIL_QUANTILE: f64 = 0.99;

/// One interval's evidence: what was observed and what fed the model.
#[derive(Debug, Clone, Copy)]
pub struct Evidence {
    pub lambda: f64,
    pub engines: u32,
    /// The prompts' length: what decode holds.
    pub isl: f64,
    /// The prompt length as prefill costs it (`Load::prefill_isl`): `isl` without a prefix
    /// cache.
    pub prefill_isl: f64,
    pub osl: f64,
    pub observed_ms: f64,
    /// The observed p99 (TTFT or ITL), when known.
    pub observed_tail_ms: Option<f64>,
    /// Replicas did not change during the interval, so its latencies are steady-state.
    pub steady: bool,
    /// The observed mean KV utilisation of the role (decode), 0..1.
    pub observed_kv: Option<f64>,
    /// Requests behind the observation; more requests weigh more.
    pub weight: f64,
    /// On a worker that interleaves prefill chunks with decode steps (aggregated mode), the
    /// mean ITL observed: the decode step a prompt waits behind, and a sign that decode
    /// steps stretch while the worker prefills. `None` on a role's own engines.
    pub interleaved_itl_ms: Option<f64>,
}

impl Evidence {
    /// A prompt's own time on this evidence's engines at prefill speed `k`, and the
    /// iteration overhead prompts queued together share: none on an interleaving worker,
    /// where each prompt's chunk rides a decode step. `profile_ms` and `overhead_ms` are
    /// the profile's for this evidence's ISL (read once per fit: a fit tries dozens of `k`).
    fn prefill_service(&self, profile_ms: f64, overhead_ms: f64, k: f64) -> (f64, f64) {
        match self.interleaved_itl_ms {
            Some(step) => (k * profile_ms + step, 0.0),
            None => (k * profile_ms, k * overhead_ms),
        }
    }
}

/// Bounds and smoothing of the online correction.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorrectionConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Intervals of evidence in one fit.
    #[serde(default = "default_window")]
    pub window: usize,
    #[serde(default = "default_min")]
    pub min: f64,
    #[serde(default = "default_max")]
    pub max: f64,
    /// Weight of a new fit against the previous value (exponential smoothing).
    #[serde(default = "default_smoothing")]
    pub smoothing: f64,
}

fn yes() -> bool {
    true
}
fn default_window() -> usize {
    10
}
fn default_min() -> f64 {
    0.25
}
fn default_max() -> f64 {
    4.0
}
fn default_smoothing() -> f64 {
    0.5
}

impl Default for CorrectionConfig {
    fn default() -> Self {
        CorrectionConfig {
            enabled: true,
            window: default_window(),
            min: default_min(),
            max: default_max(),
            smoothing: default_smoothing(),
        }
    }
}

/// The profile, its corrections, and the evidence they are fitted from.
#[derive(Debug, Clone)]
pub struct PerformanceModel {
    pub prefill: PrefillModel,
    pub decode: DecodeModel,
    pub corrections: Corrections,
    cfg: CorrectionConfig,
    /// How prompts reach aggregated workers (their decode learning reads it).
    router: Router,
    prefill_evidence: Vec<Evidence>,
    /// The most load per prefill engine (erlangs at the profile's speed) among the steady
    /// intervals learned from: how far the learned waiting has been checked
    /// (`waiting_variability`).
    prefill_load_tested: Option<f64>,
    decode_evidence: Vec<Evidence>,
    /// Reads of the KV a decode request in flight holds (log of the ratio to the mean
    /// lengths', weight), one per interval that gave one (`learn_context`).
    context_reads: Vec<(f64, f64)>,
    queue_memo: QueueMemo,
    /// The buckets the observed percentiles were read through (`None`: exact): the
    /// expected ones are read through them too before they are compared.
    histograms: Option<LatencyHistograms>,
}

impl PerformanceModel {
    /// The embedded profile's model, nothing learned yet (tests of the model and the solver).
    #[cfg(test)]
    pub(crate) fn embedded_default() -> PerformanceModel {
        let p = crate::profile::Profile::embedded_default();
        PerformanceModel::new(
            p.prefill_model(),
            p.decode_model(),
            CorrectionConfig::default(),
            Router::default(),
        )
    }

    pub fn new(
        prefill: PrefillModel,
        decode: DecodeModel,
        cfg: CorrectionConfig,
        router: Router,
    ) -> PerformanceModel {
        PerformanceModel {
            prefill,
            decode,
            corrections: Corrections::default(),
            cfg,
            router,
            prefill_evidence: Vec::new(),
            prefill_load_tested: None,
            decode_evidence: Vec::new(),
            context_reads: Vec::new(),
            queue_memo: QueueMemo::default(),
            histograms: None,
        }
    }

    /// Reads the observed percentiles through `histograms` from now on.
    pub fn read_percentiles_through(&mut self, histograms: Option<LatencyHistograms>) {
        self.histograms = histograms;
    }

    /// Service time of one prefill at this ISL, corrected, ms.
    pub fn prefill_service_ms(&self, isl: f64) -> f64 {
        self.corrections.prefill * self.prefill.ttft_ms(isl)
    }

    /// Load per prefill engine at `lambda` requests/s of this ISL on `engines`, in erlangs
    /// at the profile's speed (the learned speed scales loads alike, so they compare).
    fn load_per_prefill_engine(&self, lambda: f64, engines: u32, isl: f64) -> f64 {
        lambda * self.prefill.ttft_ms(isl) / 1000.0 / f64::from(engines)
    }

    /// The most load per prefill engine, in erlangs at the profile's speed, among the
    /// intervals the waiting was learned from; `None` before any.
    pub fn prefill_load_tested(&self) -> Option<f64> {
        self.prefill_load_tested
    }

    /// Takes the waiting as learned at up to `erlangs` per engine (tests of the solver).
    #[cfg(test)]
    pub(crate) fn set_prefill_load_tested(&mut self, erlangs: f64) {
        self.prefill_load_tested = Some(erlangs);
    }

    /// The waiting variability the prefill queue at `lambda` requests/s of this ISL on
    /// `engines` is planned with. A learned variability of 1 or more is taken as it is. One
    /// below M/M/c's 1 is taken up to the most load per engine it was learned at
    /// (`prefill_load_tested`); beyond, where prompts vary in length, it rises towards 1.
    /// The fit reads the waiting from the TTFT p99, and when the slowest prompts take
    /// several times the typical prompt's time, the p99 is mostly their own time: at loads
    /// where little waits, the fit cannot tell a wider spread from more waiting, and a low
    /// variability learned there says little about the loads nearer the engines' capacity.
    /// A slow sinusoid of prompts spread as widely as the Azure traces' (log-normal, their
    /// standard deviation their mean; slowest prompts x3.7) taught 0.26 in its troughs on
    /// two engines, and its next peak was planned on those two at 36 req/s (TTFT p99 284
    /// ms expected against the 300 ms target; 437 ms was seen at 34 req/s). Beyond the load
    /// learned at, the variability goes the share of the way to 1 that the spread is of the
    /// slowest prompts' time (`1 - 1 / slowest prompts`), linearly in the load, all of it at
    /// `UNTESTED_LOAD_STRETCH` times the load learned at. Prompts of one length (slowest
    /// prompts x1) show their waiting plainly and keep what they taught. With no load
    /// learned from (corrections read back after a restart), 1.
    pub fn waiting_variability(&self, lambda: f64, engines: u32, isl: f64) -> f64 {
        let v = self.corrections.prefill_variability;
        if v >= 1.0 || engines == 0 {
            return v;
        }
        let Some(tested) = self.prefill_load_tested.filter(|t| *t > 0.0) else {
            return 1.0;
        };
        let load = self.load_per_prefill_engine(lambda, engines, isl);
        let beyond = (load / tested - 1.0) / (UNTESTED_LOAD_STRETCH - 1.0);
        if beyond.is_nan() {
            return 1.0;
        }
        v + (self.untested_waiting_variability() - v) * beyond.clamp(0.0, 1.0)
    }

    /// The waiting variability `waiting_variability` takes from `UNTESTED_LOAD_STRETCH`
    /// times the most load learned at: a learned one below 1 moved towards 1 by the share of
    /// the slowest prompts' own time that is their spread, which the fit could have read as
    /// waiting instead.
    pub fn untested_waiting_variability(&self) -> f64 {
        let v = self.corrections.prefill_variability;
        if v >= 1.0 {
            return v;
        }
        let spread = 1.0 - 1.0 / self.corrections.prefill_tail.max(1.0);
        v + (1.0 - v) * spread
    }

    /// The prefill queue `engines` make at `lambda` requests/s of this ISL, corrected (the
    /// iteration overhead shared by prompts batched together).
    pub fn prefill_queue(&self, lambda: f64, engines: u32, isl: f64) -> PrefillQueue {
        let k = self.corrections.prefill;
        PrefillQueue::new(
            lambda,
            engines,
            k * self.prefill.ttft_ms(isl),
            k * self.prefill.overhead_ms(),
        )
    }

    /// Takes corrections learned before a restart (read back from Prometheus), each
    /// within the range it is learned in; unknown names and values that are not finite
    /// are left out. Returns what was taken. Nothing is taken with corrections disabled.
    pub fn restore(&mut self, values: &[(String, f64)]) -> Vec<(String, f64)> {
        if !self.cfg.enabled {
            return Vec::new();
        }
        let speed = (self.cfg.min, self.cfg.max);
        let mut taken = Vec::new();
        for (kind, v) in values {
            let range = match kind.as_str() {
                "prefill" | "decode" => speed,
                "prefill_tail" => TAIL_RANGE,
                "prefill_variability" => VARIABILITY_RANGE,
                "decode_variability" => DECODE_VARIABILITY_RANGE,
                "decode_context" => CONTEXT_RANGE,
                _ => continue,
            };
            let Some(slot) = self.corrections.slot(kind) else {
                continue;
            };
            if v.is_finite() {
                *slot = v.clamp(range.0, range.1);
                taken.push((kind.clone(), *slot));
            }
        }
        taken
    }

    /// What a refit is pulled towards when its evidence says little: the value learned so
    /// far, a window's step back towards neutral (1). What was learned is kept while the
    /// evidence bears on nothing else and fades over a few windows without it; a pull to 1
    /// itself undid in two or three quiet intervals what a burst had taught, and a bursty
    /// code trace then met its next burst under-sized.
    fn fading(&self, current: f64) -> f64 {
        current.powf(1.0 - 1.0 / self.cfg.window.max(1) as f64)
    }

    /// A new fit blended into the value it refits (exponential smoothing), within `range`.
    fn smoothed(&self, new: f64, old: f64, (lo, hi): (f64, f64)) -> f64 {
        let s = self.cfg.smoothing;
        (s * new + (1.0 - s) * old).clamp(lo, hi)
    }

    /// The most offered load per prefill engine (erlangs: arrivals x corrected service time
    /// / engines) among the window's steady intervals: how far the waiting model has been
    /// tested.
    pub fn prefill_load_seen(&self) -> Option<f64> {
        self.prefill_evidence
            .iter()
            .filter(|e| e.steady && e.engines > 0)
            .map(|e| {
                self.load_per_prefill_engine(e.lambda, e.engines, e.prefill_isl)
                    * self.corrections.prefill
            })
            .reduce(f64::max)
    }

    /// Records an interval's prefill evidence and refits, from steady intervals only (the
    /// replicas did not change during them): the service-time multiplier from mean TTFT,
    /// then the prompt spread and the waiting variability from the p99, in turn. Quiet
    /// intervals pin the spread (little waiting), busy ones the variability.
    pub fn learn_prefill(&mut self, e: Evidence) {
        if !self.cfg.enabled {
            return;
        }
        push_window(&mut self.prefill_evidence, e, self.cfg.window);
        if e.steady && e.engines > 0 {
            let load = self.load_per_prefill_engine(e.lambda, e.engines, e.prefill_isl);
            if load.is_finite() {
                self.prefill_load_tested =
                    Some(self.prefill_load_tested.map_or(load, |t| t.max(load)));
            }
        }
        let ev: Vec<Evidence> = self
            .prefill_evidence
            .iter()
            .copied()
            .filter(|e| e.steady)
            .collect();
        if ev.is_empty() {
            return;
        }
        let memo = RefCell::new(std::mem::take(&mut self.queue_memo));
        let profile_ms: Vec<f64> = ev
            .iter()
            .map(|e| self.prefill.ttft_ms(e.prefill_isl))
            .collect();
        let overhead_ms = self.prefill.overhead_ms();
        let queue_of = |i: usize, k: f64| {
            let e = &ev[i];
            let (service, overhead) = e.prefill_service(profile_ms[i], overhead_ms, k);
            memo.borrow_mut()
                .queue(e.lambda, e.engines, service, overhead)
        };
        let c = self.corrections;
        let (mut k, mut t, mut v) = (c.prefill, c.prefill_tail, c.prefill_variability);
        let (tlo, thi) = TAIL_RANGE;
        let (vlo, vhi) = VARIABILITY_RANGE;
        let queues_at =
            |k: f64| -> Vec<PrefillQueue> { (0..ev.len()).map(|i| queue_of(i, k)).collect() };
        let mut queues = queues_at(k);
        // The share of an interval's prompts the queue says went straight to an engine.
        let calm_share = |q: &PrefillQueue, v: f64| (1.0 - q.wait_probability(v)).clamp(0.0, 1.0);
        // The profile measured the engines too. Until the window holds an interval's worth
        // of prompts expected (at the speed learned so far) to go straight to an engine, it
        // stands in for the rest at its own speed: a ramp's one busy minute on one engine,
        // its waits past what the queue at the minute's mean rate says, had been read as
        // engines 1.18 times slower, for ten minutes of prefill sized for them. Reckoned
        // once: at a refit's trial speed, a slow interval's first reading would call the
        // profile back against the calm intervals before it.
        let calm_seen: f64 = queues.iter().map(|q| calm_share(q, v)).sum();
        let profile_share = (1.0 - calm_seen).max(0.0);
        // The speed is fitted against the spread and the variability and they against it:
        // a second round refits all three only when the first moved either of them by more
        // than `REFIT_SHIFT`. Else the first round's fits stand: the speed was fitted
        // against nearly the values they hold, and each of them against a partner that
        // moved as little. In steady state they rarely move that much, and each of these
        // fits costs some 7% of a decision.
        let mut fitted_against: Option<(f64, f64)> = None;
        for _ in 0..2 {
            let moved = |now: f64, was: f64| (now / was - 1.0).abs() > REFIT_SHIFT;
            let refit =
                fitted_against.is_none_or(|(t_was, v_was)| moved(t, t_was) || moved(v, v_was));
            if !refit {
                break;
            }
            fitted_against = Some((t, v));
            // The engines' speed shows in the prompts that went straight to an engine: each
            // interval counts by the share of its arrivals the model expects not to wait,
            // and intervals count alike, not by their requests. A mean over thousands of
            // prompts is precise; what tells intervals apart is how well the queue at their
            // mean rate describes them, and a burst within one interval (most of its
            // prompts waited) describes the arrivals, not slower engines.
            let mut calm: Vec<Evidence> = ev
                .iter()
                .zip(&queues)
                .map(|(e, q)| Evidence {
                    weight: calm_share(q, v),
                    ..*e
                })
                .collect();
            let fitted = calm.len();
            if profile_share > 0.0 {
                calm.push(Evidence {
                    weight: profile_share,
                    ..calm[0]
                });
            }
            k = fit_correction(
                &calm,
                self.cfg.min,
                self.cfg.max,
                self.fading(c.prefill),
                |i, e, k| {
                    // The stand-in saw the profile's own speed: k expected, 1 seen.
                    if i >= fitted {
                        return Some((k, 1.0));
                    }
                    Some((queue_of(i, k).mean_ms(v), e.observed_ms))
                },
            )
            .unwrap_or(k);
            // The queue at each piece of evidence depends on k only: built once for
            // both fits below (each tries dozens of values) and the next round's weights.
            queues = queues_at(k);
            let at_p99: Vec<QueueQuantile> = queues
                .iter()
                .map(|q| q.at_quantile(TAIL_QUANTILE, v))
                .collect();
            // Through a histogram, the reading of a tail whose p90 is the typical prompt's
            // (the spread fit tries its values at this variability: read once).
            let ttft_buckets = self.histograms.as_ref().map(|h| &h.ttft);
            let p90_at = |q: &PrefillQueue, v: f64| ttft_buckets.map(|_| q.quantile_ms(0.9, v));
            let as_read = |p99: f64, p90: Option<f64>| match (ttft_buckets, p90) {
                (Some(b), Some(p90)) => b.tail_reading(TAIL_QUANTILE, p99, 0.9, p90),
                _ => p99,
            };
            let at_p90: Vec<Option<f64>> = queues.iter().map(|q| p90_at(q, v)).collect();
            t = fit_correction(&ev, tlo, thi, self.fading(c.prefill_tail), |i, e, t| {
                e.observed_tail_ms
                    .map(|o| (as_read(at_p99[i].slowest_ms(t), at_p90[i]), o))
            })
            .unwrap_or(t);
            v = fit_correction(
                &ev,
                vlo,
                vhi,
                self.fading(c.prefill_variability),
                |i, e, v| {
                    e.observed_tail_ms.map(|o| {
                        let p99 = queues[i].at_quantile(TAIL_QUANTILE, v).slowest_ms(t);
                        (as_read(p99, p90_at(&queues[i], v)), o)
                    })
                },
            )
            .unwrap_or(v);
        }
        self.queue_memo = memo.into_inner();
        let speed = (self.cfg.min, self.cfg.max);
        self.corrections.prefill = self.smoothed(k, c.prefill, speed);
        self.corrections.prefill_tail = self.smoothed(t, c.prefill_tail, TAIL_RANGE);
        self.corrections.prefill_variability =
            self.smoothed(v, c.prefill_variability, VARIABILITY_RANGE);
    }

    /// Records a read of the KV a decode request in flight holds and refits it: the observed
    /// KV over the batch Little's law gives at the observed ITL, against the mean lengths'
    /// `ISL + OSL / 2`. The caller gives the engines that served the whole interval (its KV
    /// reading is theirs) and only intervals whose requests flowed: steady ones, or ones
    /// whose mean ITL met the target (an overloaded interval's ITL holds the wait for a
    /// decode slot, and its batch would be read too large). Unlike the speed it needs no
    /// steady replicas, so it is known by a load's first rise, not after it. Not on workers
    /// that interleave prefill, whose KV holds the prompts being prefilled too.
    pub fn learn_context(&mut self, e: &Evidence) {
        if !self.cfg.enabled {
            return;
        }
        let Some(kv) = e.observed_kv.filter(|_| e.interleaved_itl_ms.is_none()) else {
            return;
        };
        let batch = e.lambda / f64::from(e.engines.max(1)) * (e.osl - 1.0).max(0.0) * e.observed_ms
            / 1000.0;
        // A batch of one or two says more of which requests were in flight than of what a
        // request holds.
        if batch < MIN_CONTEXT_BATCH || kv <= 0.0 {
            return;
        }
        let expected = batch * DecodeCorrection::at_speed(1.0).context(e.isl, e.osl);
        let read = (kv * self.decode.max_kv_tokens() / expected).ln();
        push_window(&mut self.context_reads, (read, e.weight), self.cfg.window);
        // Half a window of reads first, as for the batch variability: with a few, their
        // scatter is itself unknown.
        let enough = self.context_reads.len() >= self.cfg.window.div_ceil(2).max(3);
        if let Some(f) = mean_clear_of_noise(&self.context_reads).filter(|_| enough) {
            self.corrections.decode_context =
                self.smoothed(f.exp(), self.corrections.decode_context, CONTEXT_RANGE);
        }
    }

    /// Records an interval's decode evidence and refits the ITL multiplier: against the
    /// profile at the observed KV utilisation when it is known, else against the
    /// steady-state batch. Steady intervals only: while replicas change, requests wait for a
    /// decode slot and their ITL (first token to last, per token) measures that queue, not
    /// the engines' speed; learnt as slowness, it would over-size decode long after.
    pub fn learn_decode(&mut self, e: Evidence) {
        if !self.cfg.enabled || !e.steady {
            return;
        }
        push_window(&mut self.decode_evidence, e, self.cfg.window);
        let ev = self.decode_evidence.clone();
        let model = &self.decode;
        // On an interleaving worker, decode steps stretch by the share of its time spent on
        // prefill, as the aggregated solver expects them to: the mean share for the mean
        // ITL; for the p99, the share the p99 request saw (`stretch_at`, below).
        let (prefill, prefill_speed) = (&self.prefill, self.corrections.prefill);
        let router = self.router;
        let stretch_at = |e: &Evidence, z: f64| match e.interleaved_itl_ms {
            Some(itl) => {
                let service = prefill_speed * prefill.ttft_ms(e.prefill_isl);
                let life_s = e.osl * itl / 1000.0;
                let landing = router.landing_rate(e.lambda, e.engines, life_s, service);
                interleaved_stretch(landing, service, life_s, z)
            }
            None => 1.0,
        };
        let stretches: Vec<f64> = ev.iter().map(|e| stretch_at(e, 0.0)).collect();
        let context = self.corrections.decode_context;
        let terms = |speed: f64| DecodeCorrection { speed, context };
        // The profile's ITL at the observed KV utilisation does not depend on the speed
        // tried: read once per piece of evidence, not at every speed.
        let at_kv: Vec<Option<f64>> = ev
            .iter()
            .map(|e| {
                e.observed_kv
                    .map(|kv| model.itl_ms(kv, terms(1.0).context(e.isl, e.osl)))
            })
            .collect();
        let fit = fit_correction(
            &ev,
            self.cfg.min,
            self.cfg.max,
            self.fading(self.corrections.decode),
            |i, e, k| {
                let expected = match at_kv[i] {
                    Some(itl) => k * itl,
                    None => {
                        decode_itl_ms(model, terms(k), e.lambda, e.engines, e.isl, e.osl, 0.0, 4.0)
                            .map_or(f64::INFINITY, |x| x.0)
                    }
                };
                Some((expected * stretches[i], e.observed_ms))
            },
        );
        if let Some(k) = fit {
            let speed = (self.cfg.min, self.cfg.max);
            self.corrections.decode = self.smoothed(k, self.corrections.decode, speed);
        }
        // The ITL p99 is the p99 request's batch: as far above the mean batch as the
        // arrivals swing. Fitted at the speed just learned, against the batch quantile the
        // solver plans with (a request's ITL averages its lifetime's batch).
        // Half a window of steady intervals first: one interval's p99 is one burst, or the
        // start of a ramp within the interval, not how the arrivals swing.
        let tails = ev.iter().filter(|e| e.observed_tail_ms.is_some()).count();
        if tails < self.cfg.window.div_ceil(2) {
            return;
        }
        let k = terms(self.corrections.decode);
        let z = itl_batch_z(TAIL_QUANTILE);
        let z90 = itl_batch_z(0.9);
        let itl_buckets = self.histograms.as_ref().map(|h| &h.itl);
        let (lo, hi) = DECODE_VARIABILITY_RANGE;
        // Neither the curve the quantiles are read on nor the mean batch depends on the
        // variability: each found once per interval.
        let curves: Vec<ItlAtBatches> = ev
            .iter()
            .map(|e| ItlAtBatches::new(model, k, e.isl, e.osl))
            .collect();
        let batches: Vec<Option<f64>> = ev
            .iter()
            .zip(&curves)
            .map(|(e, c)| c.mean_batch(e.lambda, e.engines))
            .collect();
        let fit = fit_correction(
            &ev,
            lo,
            hi,
            self.fading(self.corrections.decode_variability),
            |i, e, w| {
                let observed = e.observed_tail_ms?;
                let at_z = |z: f64| {
                    batches[i]
                        .and_then(|n| curves[i].at(n, z * w, 4.0))
                        .unwrap_or(f64::INFINITY)
                        * stretch_at(e, z * w)
                };
                let expected = match itl_buckets {
                    Some(b) => b.tail_reading(TAIL_QUANTILE, at_z(z), 0.9, at_z(z90)),
                    None => at_z(z),
                };
                Some((expected, observed))
            },
        );
        if let Some(w) = fit {
            self.corrections.decode_variability =
                self.smoothed(w, self.corrections.decode_variability, (lo, hi));
        }
    }
}

/// The weighted mean of `(value, weight)` pairs when it stands clear of zero by
/// `CLEAR_OF_NOISE` of its standard errors, else 0 (nothing shown); `None` with fewer than
/// three. The KV read over an interval scatters by a tenth about what its requests hold (the
/// requests in flight are a count); a window of such reads, taken at face value, would
/// move the decode sizing by a few percent from one window to the next on loads whose
/// requests hold just what their mean lengths say.
fn mean_clear_of_noise(values: &[(f64, f64)]) -> Option<f64> {
    if values.len() < 3 {
        return None;
    }
    let total: f64 = values.iter().map(|v| v.1).sum();
    let squares: f64 = values.iter().map(|v| v.1 * v.1).sum();
    if total <= 0.0 {
        return None;
    }
    let mean = values.iter().map(|(x, w)| x * w).sum::<f64>() / total;
    let var = values
        .iter()
        .map(|(x, w)| w * (x - mean).powi(2))
        .sum::<f64>()
        / total;
    // Effective number of reads, as the weights differ.
    let n = total * total / squares;
    let se = (var / (n - 1.0).max(1.0)).sqrt();
    Some(if mean.abs() > CLEAR_OF_NOISE * se {
        mean
    } else {
        0.0
    })
}

/// Standard errors a window's mean must stand clear of neutral to be taken.
const CLEAR_OF_NOISE: f64 = 3.0;

fn push_window<T>(v: &mut Vec<T>, e: T, window: usize) {
    v.push(e);
    if v.len() > window.max(1) {
        v.remove(0);
    }
}

#[cfg(test)]
mod tests;

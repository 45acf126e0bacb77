//! The SLA planner: forecast, model, solve, stabilise, clip; with the reasons at each step.
//! A decision takes the interval (`decide_now`, here), learns from it (`learn.rs`), plans
//! the horizon (`plan.rs`) and settles the wish into the decision (`settle.rs`).

use serde::{Deserialize, Serialize};

use super::cold_start::ColdStarts;
use super::forecast::{
    empirical_quantile, standard_normal_cdf, ExcursionCeiling, ForecasterKind, RecurringPeak,
    SignalForecast, SignalForecaster,
};
use super::model::{
    itl_batch_z, normal_quantile, CorrectionConfig, Evidence, PerformanceModel, Router,
    UNTESTED_LOAD_STRETCH,
};
use super::percentiles::LatencyPercentiles;
use super::solver::{
    decode_itl, fewest_prefill_for_expected_misses, prefill_ttft, solve, Load, Mode, SolverConfig,
    SolverNote,
};
use super::stabilizer::{Stabilizer, StabilizerConfig};
use super::step_pool::{Pooled, StepPool};
use super::{
    Decision, Forecast, LatencySummary, Observation, Policy, PolicyContext, ReplicaState,
    RoleReplicas,
};

mod learn;
mod plan;
mod prefix;
mod settle;

use plan::{HorizonPlan, Quantiles};
use prefix::{CachedShares, PromptWork};
use settle::beyond_the_profile;
pub use settle::{untested_load_floor, LOAD_TESTED_FLOOR};

/// The planner's settings; every field has a default (`docs/planner.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannerConfig {
    /// constant | smoothed | linear | holt-winters | kalman | seasonal | harmonic | auto
    /// (picked per signal by backtest error).
    #[serde(default = "default_forecaster")]
    pub forecaster: ForecasterKind,
    /// Period of the load, seconds; found by autocorrelation when absent.
    #[serde(default)]
    pub season_s: Option<f64>,
    /// The request rate is planned at this quantile of its forecast (headroom).
    #[serde(default = "default_headroom")]
    pub headroom_quantile: f64,
    /// Relative error of the rate forecast assumed at the first observation, before any
    /// change is seen: the bound is then `z * prior_error * point` above it.
    #[serde(default = "default_prior_error")]
    pub prior_error: f64,
    /// The forecasters' time step, seconds: shorter decision intervals are pooled into
    /// steps of about this length (`step_pool`); longer ones are a step each.
    #[serde(default = "default_forecast_step")]
    pub forecast_step_s: f64,
    /// This share of requests must have TTFT within target.
    #[serde(default = "default_quantile")]
    pub ttft_quantile: f64,
    /// This share of requests must have ITL within target (sets the decode batch quantile).
    #[serde(default = "default_quantile")]
    pub itl_quantile: f64,
    /// Share of the KV cache reservations may fill.
    #[serde(default = "default_kv_fraction")]
    pub kv_fraction: f64,
    #[serde(default)]
    pub mode: Mode,
    /// How the frontend sends prompts to aggregated workers: round-robin (Dynamo's
    /// default; random too) or kv (to the least loaded worker).
    #[serde(default)]
    pub router: Router,
    /// How the observations' TTFT and ITL percentiles were read: `exact`, `dynamo`
    /// (`histogram_quantile` over the buckets Dynamo's frontend ships with) or `{ttft_s:
    /// [...], itl_s: [...]}` (bucket bounds, seconds). The model's expected percentiles are
    /// read through the same buckets before they are compared with them. Absent: exact; in
    /// a simulation the deployment's (`deployment.latency_percentiles`), in `run` the
    /// buckets Prometheus's histograms have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_percentiles: Option<LatencyPercentiles>,
    #[serde(default)]
    pub correction: CorrectionConfig,
    #[serde(default)]
    pub stabilizer: StabilizerConfig,
}

fn default_forecaster() -> ForecasterKind {
    ForecasterKind::Auto
}
fn default_headroom() -> f64 {
    0.9
}
fn default_prior_error() -> f64 {
    super::forecast::DEFAULT_PRIOR_ERROR
}
fn default_forecast_step() -> f64 {
    60.0
}
fn default_quantile() -> f64 {
    0.99
}
fn default_kv_fraction() -> f64 {
    0.9
}

impl Default for PlannerConfig {
    fn default() -> Self {
        PlannerConfig {
            forecaster: default_forecaster(),
            season_s: None,
            headroom_quantile: default_headroom(),
            prior_error: default_prior_error(),
            forecast_step_s: default_forecast_step(),
            ttft_quantile: default_quantile(),
            itl_quantile: default_quantile(),
            kv_fraction: default_kv_fraction(),
            mode: Mode::default(),
            router: Router::default(),
            latency_percentiles: None,
            correction: CorrectionConfig::default(),
            stabilizer: StabilizerConfig::default(),
        }
    }
}

impl PlannerConfig {
    /// Checks every field; the message starts with the field's name.
    pub fn validate(&self) -> Result<(), String> {
        for (name, q) in [
            ("headroom_quantile", self.headroom_quantile),
            ("ttft_quantile", self.ttft_quantile),
            ("itl_quantile", self.itl_quantile),
        ] {
            if !(q > 0.0 && q < 1.0) {
                return Err(format!("{name}: must be in (0, 1) (got {q})"));
            }
        }
        if !(self.prior_error.is_finite() && self.prior_error >= 0.0) {
            return Err(format!(
                "prior_error: must be >= 0 (got {})",
                self.prior_error
            ));
        }
        if !(self.forecast_step_s.is_finite() && self.forecast_step_s > 0.0) {
            return Err(format!(
                "forecast_step_s: must be > 0 (got {})",
                self.forecast_step_s
            ));
        }
        if !(self.kv_fraction > 0.0 && self.kv_fraction <= 1.0) {
            return Err(format!(
                "kv_fraction: must be in (0, 1] (got {})",
                self.kv_fraction
            ));
        }
        if let Some(s) = self.season_s {
            if !(s.is_finite() && s > 0.0) {
                return Err(format!("season_s: must be > 0 (got {s})"));
            }
        }
        let c = &self.correction;
        if !(c.min > 0.0 && c.min <= 1.0 && c.max >= 1.0 && c.max.is_finite()) {
            return Err(format!(
                "correction.min/max: need 0 < min <= 1 <= max (got {}, {})",
                c.min, c.max
            ));
        }
        if !(c.smoothing > 0.0 && c.smoothing <= 1.0) {
            return Err(format!(
                "correction.smoothing: must be in (0, 1] (got {})",
                c.smoothing
            ));
        }
        if c.window == 0 {
            return Err("correction.window: must be at least 1".into());
        }
        if let Some(p) = &self.latency_percentiles {
            p.histograms()
                .map_err(|(field, e)| format!("latency_percentiles.{field}: {e}"))?;
        }
        self.stabilizer.validate()
    }
}

pub struct SlaPlanner {
    name: String,
    ctx: PolicyContext,
    cfg: PlannerConfig,
    model: PerformanceModel,
    rate: SignalForecaster,
    isl: SignalForecaster,
    osl: SignalForecaster,
    /// Intervals waiting to make up the forecasters' next step.
    pool: StepPool,
    stabilizer: Stabilizer,
    last: Option<(u32, u32)>,
    /// Ready replicas at the previous observation, to tell steady intervals.
    last_ready: Option<(u32, u32)>,
    /// Prefill tokens queued at the previous observation, to tell an interval spent
    /// working off a backlog.
    last_queued: Option<f64>,
    /// Whether the previous observation's prompts waited past the TTFT target on average:
    /// without a queue reading, the sign that an interval began behind a backlog.
    last_waited_out: bool,
    /// Without a queue reading, the prefill tokens the previous interval's waits imply were
    /// queued (`queue_from_waits`), to tell an interval spent working off a backlog.
    last_queue_estimate: Option<f64>,
    /// The planner's own decisions `(time_s, prefill, decode)` back to the newest one a cold
    /// start old: what runs, for a source that does not report replicas.
    ordered: Vec<(f64, u32, u32)>,
    /// When the decode replicas were last seen changing (or first seen), or last seen with
    /// their KV cache full: requests that began before then averaged their ITL over other
    /// replicas, or over waits for KV room.
    decode_unsettled_at: Option<f64>,
    /// The replicas found at the first decision: what the operator deployed.
    found: Option<(u32, u32)>,
    /// Since when no request has arrived, and the rate forecast just before (a silence).
    silence: Option<(f64, f64)>,
    /// The end of the last interval whose request count reached the forecasters: an
    /// interval that begins later leaves a stretch nobody observed (`fill_unseen`).
    fed_until_s: Option<f64>,
    /// How long the replicas took to start: the cold start planned with when longer than
    /// the configured one (`cold_start_s`).
    cold_starts: ColdStarts,
    /// The share of prompt tokens the prefill engines' prefix caches held lately.
    cached_shares: CachedShares,
}

/// Arrivals the rate forecast must have expected in a silence for it to be taken as a gap:
/// a Poisson count expecting 3 is 0 one time in 20, so a sparse load's quiet intervals
/// do not pass for one.
const SILENCE_EXPECTED: f64 = 3.0;
/// Fewest requests in an interval for its latencies to count as evidence.
const MIN_EVIDENCE_REQUESTS: f64 = 20.0;

/// Most intervals the forecasters look ahead. An interval far shorter than the cold start
/// (an external tool's 1 ms ticks) would otherwise ask for billions of steps; past this the
/// steps are finer than anything the forecast can tell apart.
const MAX_HORIZON_STEPS: usize = 10_000;
/// Most steps of the horizon the solver sizes for in one decision. Beyond it they are
/// sampled evenly, ends included: the forecast moves smoothly from step to step, and the
/// decision's cost stays bounded however short the interval.
const MAX_PLANNED_STEPS: usize = 64;
/// The quantile of the forecast errors taken for its worst recent miss (of the last dozen,
/// the largest): a scale-down window holds no more than the load would ask at that miss.
const WORST_MISS_QUANTILE: f64 = 0.999;

/// The latency at the reported percentile an SLA that `share` of requests must meet is
/// judged at: the p90 for a share of 90% or less, else the p99, so that one over the
/// target means at least as many requests late as the SLA allows where the share is 90%
/// or 99% (an SLA of 95% is judged at the p99, on the safe side: from 1% late).
fn judged_at(summary: &LatencySummary, share: f64) -> Option<f64> {
    if share > 0.9 {
        summary.p99
    } else {
        summary.p90
    }
}

/// The steps the solver sizes for: 0 (the interval just seen), 1 (the queue to work off)
/// and the horizon, with every step between them while there are few, else evenly spaced.
fn planned_steps(h: usize) -> Vec<usize> {
    if h <= MAX_PLANNED_STEPS {
        return (0..=h).collect();
    }
    let mut steps: Vec<usize> = (0..=MAX_PLANNED_STEPS)
        .map(|i| (i * h).div_ceil(MAX_PLANNED_STEPS))
        .collect();
    steps.insert(1, 1);
    steps.dedup();
    steps
}

/// A past interval as the forecasters take it (`SlaPlanner::warm`): the history a restart
/// reads back, or the intervals a metrics outage hid.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PastInterval {
    /// Its end, on the clock `decide` is given.
    pub end_s: f64,
    /// Requests that arrived in it.
    pub requests: f64,
    pub isl_mean: Option<f64>,
    pub osl_mean: Option<f64>,
    /// Its TTFT and ITL percentiles, ms (those kept: p90 and p99): over the SLA's target
    /// at the percentile it is judged at (`SlaPlanner::missed_the_sla`), the interval
    /// missed it, and an excursion of the load it falls in is remembered as one that
    /// needed capacity.
    pub ttft_ms: LatencySummary,
    pub itl_ms: LatencySummary,
}

impl SlaPlanner {
    pub fn new(mut ctx: PolicyContext, cfg: PlannerConfig) -> SlaPlanner {
        if cfg.mode == Mode::Aggregated {
            // One pool does both: there is no prefill role to size, and the GPU budget is
            // the workers' alone (a deployment's prefill minimum would hold a phantom engine).
            ctx.limits.min_prefill = 0;
            ctx.limits.max_prefill = 0;
        }
        let pool = StepPool::new(cfg.forecast_step_s, ctx.startup_s);
        let (rate, isl, osl) = Self::fresh_forecasters(&cfg, pool.step_len_s(ctx.interval_s));
        let mut model = PerformanceModel::new(
            ctx.prefill.clone(),
            ctx.decode.clone(),
            cfg.correction,
            cfg.router,
        );
        // Checked by `PlannerConfig::validate`.
        model.read_percentiles_through(
            cfg.latency_percentiles
                .as_ref()
                .and_then(|p| p.histograms().ok().flatten()),
        );
        SlaPlanner {
            name: "planner".into(),
            rate,
            isl,
            osl,
            pool,
            stabilizer: Stabilizer::new(cfg.stabilizer),
            model,
            ctx,
            cfg,
            last: None,
            last_ready: None,
            last_queued: None,
            last_waited_out: false,
            last_queue_estimate: None,
            ordered: Vec::new(),
            decode_unsettled_at: None,
            found: None,
            silence: None,
            fed_until_s: None,
            cold_starts: ColdStarts::default(),
            cached_shares: CachedShares::default(),
        }
    }

    /// The same planner shown under another name: a dry run's variant with its own
    /// settings is named by its `--policy` spec.
    pub fn named(mut self, name: impl Into<String>) -> SlaPlanner {
        self.name = name.into();
        self
    }

    /// The cold start planned with: the configured one, or the replicas' own where they
    /// have shown a longer one (`ColdStarts::planned_s`).
    fn cold_start_s(&self) -> f64 {
        self.cold_starts.planned_s(self.ctx.startup_s)
    }

    /// The rate, ISL and OSL forecasters as configured, with nothing seen, for steps of
    /// `step_s`.
    fn fresh_forecasters(
        cfg: &PlannerConfig,
        step_s: f64,
    ) -> (SignalForecaster, SignalForecaster, SignalForecaster) {
        let period = cfg.season_s.map(|s| (s / step_s).round() as usize);
        (
            SignalForecaster::new(cfg.forecaster, period)
                .with_prior_error(cfg.prior_error)
                .with_excursions(),
            SignalForecaster::new(cfg.forecaster, period),
            SignalForecaster::new(cfg.forecaster, period),
        )
    }

    /// Feeds past intervals to the forecasters without deciding: the history a restart
    /// reads back, or the intervals a metrics outage hid, read back once the metrics
    /// answer again; oldest first. An interval the forecasters already took (one that
    /// begins before the end of the last taken, by more than a twentieth of an interval of
    /// clock jitter) is not taken twice, nor is one without a count; a stretch between the
    /// intervals taken is filled as `decide` fills one (`fill_unseen`). An interval whose
    /// TTFT or ITL p90 was over its target is noted as `decide` notes one
    /// (`missed_the_sla`), so the bursts that needed capacity are remembered across a
    /// restart. Returns the number taken.
    pub fn warm(&mut self, history: &[PastInterval], interval_s: f64) -> usize {
        let mut taken = 0;
        for past in history {
            let (end_s, requests) = (past.end_s, past.requests);
            let start_s = end_s - interval_s;
            let seen = self
                .fed_until_s
                .is_some_and(|until| start_s < until - interval_s / 20.0);
            if seen || !(end_s.is_finite() && requests.is_finite() && requests >= 0.0) {
                continue;
            }
            let (isl, osl) = (past.isl_mean, past.osl_mean);
            self.fill_unseen(start_s, interval_s, requests / interval_s, isl, osl);
            self.fed_until_s = Some(end_s);
            if self.missed_the_sla(&past.ttft_ms, &past.itl_ms) {
                self.rate.note_missed();
            }
            for pooled in self.pool.add(interval_s, requests, None, isl, osl) {
                self.observe_pooled(&pooled, interval_s);
            }
            taken += 1;
        }
        taken
    }

    /// Whether an interval with these TTFT and ITL percentiles missed the SLA: more of its
    /// requests were late than the SLA's share allows, so an excursion of the load it falls
    /// in needed capacity that was not there (`SignalForecaster::recurring_peak`). Each
    /// target is judged at the reported percentile that share calls for (`judged_at`): a
    /// p99 SLA at the p99. Judged at the p90, a burst with 2 to 5% of its requests late
    /// counted as met, and capacity kept for bursts like it lapsed before the next.
    fn missed_the_sla(&self, ttft_ms: &LatencySummary, itl_ms: &LatencySummary) -> bool {
        let over = |summary: &LatencySummary, share: f64, target: f64| {
            judged_at(summary, share).is_some_and(|ms| ms > target)
        };
        over(ttft_ms, self.cfg.ttft_quantile, self.ctx.sla.ttft_ms)
            || over(itl_ms, self.cfg.itl_quantile, self.ctx.sla.itl_ms)
    }

    /// Fills the forecast steps between the end of the last interval the forecasters took
    /// and `start_s`, where an interval of `interval_s` whose rate is `rate` begins: a
    /// decision's observations lost (a metrics outage, a tool's skipped line). Taken as
    /// consecutive, the intervals after a gap would shift a period found by its length and
    /// steepen a trend's slope per step. The steps, as many as the gap spans to the nearest
    /// whole one (a few seconds of clock jitter are none), are filled with each
    /// forecaster's forecast from before the gap, bent in a straight line to end at this
    /// interval's value, and no forecast is scored against them
    /// (`SignalForecaster::observe_unseen`); a gap longer than the forecasters' memory
    /// leaves nothing to forecast from, and they start afresh. Returns the reason to give.
    fn fill_unseen(
        &mut self,
        start_s: f64,
        interval_s: f64,
        rate: f64,
        isl: Option<f64>,
        osl: Option<f64>,
    ) -> Option<String> {
        let gap_s = start_s - self.fed_until_s?;
        let step_s = self.pool.step_len_s(interval_s);
        // A step the pool has begun ends where the gap begins, and closes as a step of its own.
        let begun = !self.pool.is_empty();
        let steps = ((self.pool.span_s() + gap_s) / step_s).round() as usize;
        let unseen = steps.saturating_sub(usize::from(begun));
        if unseen == 0 || gap_s <= 0.0 {
            return None;
        }
        if unseen > self.rate.memory_steps() {
            (self.rate, self.isl, self.osl) =
                Self::fresh_forecasters(&self.cfg, self.pool.step_len_s(self.ctx.interval_s));
            self.pool = StepPool::new(self.cfg.forecast_step_s, self.ctx.startup_s);
            return Some(format!(
                "no interval seen for {gap_s:.0}s, longer than the forecasters remember ({} steps): the load is forecast afresh",
                self.rate.memory_steps()
            ));
        }
        if let Some(pooled) = self.pool.close() {
            self.observe_pooled(&pooled, interval_s);
        }
        let from = self.rate.last()?;
        let h = self.horizon_steps(interval_s, step_s);
        // Each forecaster's path through the gap, bent to end at this interval's value:
        // a straight line for a level or a trend, the load's shape for a periodic one.
        let bridge = |f: &SignalForecaster, to: Option<f64>| -> Option<Vec<f64>> {
            let path: Vec<f64> = (1..=unseen + 1)
                .map(|j| f.point(j))
                .collect::<Option<_>>()?;
            let miss = to.map_or(0.0, |to| to - path[unseen]);
            Some(
                (1..=unseen)
                    .map(|j| (path[j - 1] + miss * j as f64 / (unseen + 1) as f64).max(0.0))
                    .collect(),
            )
        };
        let length = |v: Option<f64>| v.filter(|v| v.is_finite() && *v > 0.0);
        let paths = [
            bridge(&self.rate, Some(rate)),
            bridge(&self.isl, length(isl)),
            bridge(&self.osl, length(osl)),
        ];
        for (f, path) in [&mut self.rate, &mut self.isl, &mut self.osl]
            .into_iter()
            .zip(paths)
        {
            for y in path.into_iter().flatten() {
                f.observe_unseen(y, h);
            }
        }
        Some(format!(
            "no interval seen for {gap_s:.0}s: its {unseen} forecast step(s) filled with the forecast from {from:.2} req/s bent to end at {rate:.2} (no forecast scored against them)"
        ))
    }

    /// Takes corrections learned before a restart (`PerformanceModel::restore`), so the
    /// engines' speed and the load's burstiness need not be learned again.
    pub fn restore_corrections(&mut self, values: &[(String, f64)]) -> Vec<(String, f64)> {
        self.model.restore(values)
    }

    /// The limits decisions are clipped to.
    pub fn limits(&self) -> crate::planner::Limits {
        self.ctx.limits
    }

    /// Changes the limits from the next decision on (checked by the caller).
    /// Reads the observations' percentiles through `how` from now on (the live loop,
    /// once it has found the buckets of Prometheus's histograms).
    pub fn read_percentiles_through(&mut self, how: LatencyPercentiles) {
        let histograms = how.histograms().ok().flatten();
        self.model.read_percentiles_through(histograms);
        self.cfg.latency_percentiles = Some(how);
    }

    pub fn set_limits(&mut self, limits: crate::planner::Limits) {
        self.ctx.limits = limits;
    }

    pub fn sla(&self) -> crate::planner::Sla {
        self.ctx.sla
    }

    /// Feeds a step's value from intervals of `interval_s` to the forecasters
    /// (`step_pool`), scored at the horizon.
    fn observe_pooled(&mut self, pooled: &Pooled, interval_s: f64) {
        let h = self.horizon_steps(interval_s, pooled.span_s);
        Self::observe_into(
            (&mut self.rate, &mut self.isl, &mut self.osl),
            pooled,
            pooled.span_s,
            h,
        );
    }

    /// Feeds a pooled value spanning `pooled.span_s` to forecasters whose step is
    /// `step_s`: the arrivals as a rate with their counting scatter (a Poisson count of n
    /// scatters by sqrt(n)), and, when the count's second half is known, the rise within
    /// the span, per step; the lengths when requests came.
    fn observe_into(
        (rate, isl, osl): (
            &mut SignalForecaster,
            &mut SignalForecaster,
            &mut SignalForecaster,
        ),
        pooled: &Pooled,
        step_s: f64,
        h: usize,
    ) {
        let (n, span) = (pooled.requests, pooled.span_s);
        rate.observe_sampled(pooled.rate(), n.sqrt() / span, h);
        if let Some(late) = pooled.second_half {
            // Half-span rates, half a span apart: their difference over that distance is
            // the slope, and a Poisson count's halves differ by sqrt(n).
            let per_step = 4.0 * step_s / (span * span);
            rate.observe_within((2.0 * late - n) * per_step, n.sqrt() * per_step);
        }
        if n > 0.0 {
            if let Some(v) = pooled.isl {
                isl.observe(v, h);
            }
            if let Some(v) = pooled.osl {
                osl.observe(v, h);
            }
        }
    }

    /// Replica counts as the reasons name them: `4P+3D`, or `3 workers` in aggregated mode.
    fn counts(&self, prefill: u32, decode: u32) -> String {
        match self.cfg.mode {
            Mode::Disaggregated => format!("{prefill}P+{decode}D"),
            Mode::Aggregated => format!("{decode} workers"),
        }
    }

    /// Steps of `step_s` from the newest one seen to when capacity ordered at the next
    /// decision, an interval of `interval_s` on, could be ready: an interval split into
    /// halves spans two steps; pooled ones, the step they fill.
    fn horizon_steps(&self, interval_s: f64, step_s: f64) -> usize {
        let next_decision_s = if self.pool.halves(interval_s) {
            interval_s
        } else {
            step_s
        };
        ((next_decision_s + self.cold_start_s()) / step_s)
            .ceil()
            .clamp(1.0, MAX_HORIZON_STEPS as f64) as usize
    }

    fn current(&self, obs: &Observation) -> (u32, u32) {
        match obs.replicas {
            Some(r) => (r.prefill.held(), r.decode.held()),
            None => self
                .last
                .unwrap_or((self.ctx.limits.min_prefill, self.ctx.limits.min_decode)),
        }
    }

    /// The index of the order standing a cold start before `now_s` (the newest made by
    /// then: it still says what was ready at that moment); `None` before the first order.
    fn standing_order(&self, now_s: f64) -> Option<usize> {
        let since = now_s - self.cold_start_s().max(0.0);
        self.ordered.iter().rposition(|&(t, _, _)| t <= since)
    }

    /// Notes a decision as ordered, keeping the order standing a cold start back and
    /// every one since.
    fn note_ordered(&mut self, now_s: f64, prefill: u32, decode: u32) {
        self.ordered.push((now_s, prefill, decode));
        let keep_from = self.standing_order(now_s).unwrap_or(0);
        self.ordered.drain(..keep_from);
    }

    /// The replicas as the planner ordered them, at `now_s`: ready those every order over
    /// the last cold start kept (an engine ordered later is still starting; one let go is
    /// gone at once), starting the rest of the newest order. `None` until an order is a
    /// cold start old: what ran before the first order is not known.
    fn as_ordered(&self, now_s: f64) -> Option<RoleReplicas> {
        let window = &self.ordered[self.standing_order(now_s)?..];
        let last = window.last()?;
        let ready = (
            window.iter().map(|o| o.1).min().unwrap_or(last.1),
            window.iter().map(|o| o.2).min().unwrap_or(last.2),
        );
        let role = |ready: u32, target: u32| ReplicaState {
            ready,
            starting: target.saturating_sub(ready),
            draining: 0,
        };
        Some(RoleReplicas {
            prefill: role(ready.0, last.1),
            decode: role(ready.1, last.2),
        })
    }

    /// The quantiles a decision plans at: the rate at the headroom quantile's bound, the
    /// lengths at their points, prefill for the prompts expected to miss.
    fn planning_quantiles(&self) -> Quantiles {
        Quantiles {
            rate: self.cfg.headroom_quantile,
            lengths: None,
            expected_misses: true,
            worst_case: false,
        }
    }

    /// Without a request count: holds, or, once the forecast's errors are measured, raises
    /// a role the forecast needs more of by the time a replica ordered now could be ready,
    /// counted from the newest interval seen. Nothing is scaled down on missing data; a
    /// load that repeats or trends goes on doing so while the metrics are out.
    fn hold_or_follow(&mut self, now_s: f64, obs: &Observation, interval_s: f64) -> Decision {
        const WHY: &str = "request count missing";
        let current = self.current(obs);
        let Some(seen_until) = self.fed_until_s.filter(|_| self.rate.bound_measured()) else {
            return self.hold(obs, WHY);
        };
        let unseen_s = (now_s - seen_until).max(0.0);
        let step_s = self.pool.step_len_s(interval_s);
        let last = self.rate.last().unwrap_or(0.0);
        let plan = self.plan_horizon(
            last,
            interval_s,
            step_s,
            0.0,
            self.planning_quantiles(),
            current,
            unseen_s,
        );
        if plan.prefill <= current.0 && plan.decode <= current.1 {
            return self.hold(obs, WHY);
        }
        let wish = (plan.prefill.max(current.0), plan.decode.max(current.1));
        let mut reasons = vec![format!(
            "{WHY}: nothing scaled down; the forecast asks for {}, {unseen_s:.0}s past the last interval seen",
            self.counts(wish.0, wish.1)
        )];
        reasons.push(self.plan_reason(&plan, step_s));
        reasons.extend(self.cached_reason(&plan));
        reasons.extend(plan.solution.notes.iter().map(ToString::to_string));
        let (counts, notes) = self.stabilizer.apply(now_s, wish, current, None);
        reasons.extend(notes);
        // The stabiliser never lowers a wish at or above what runs; kept explicit, as the
        // promise this path makes (nothing scaled down on missing data).
        let counts = (counts.0.max(current.0), counts.1.max(current.1));
        self.finish(counts, reasons, &plan, step_s)
    }

    /// Keeps the current replicas: missing or broken signals never scale anything down.
    fn hold(&mut self, obs: &Observation, why: &str) -> Decision {
        let (p, d) = self.current(obs);
        let decision = Decision {
            corrections: Some(self.model.corrections),
            ..Decision::clipped(&self.ctx.limits, p, d, vec![format!("hold: {why}")])
        };
        self.stabilizer
            .note_hold(obs.time_s, (decision.prefill, decision.decode));
        self.last = Some((decision.prefill, decision.decode));
        decision
    }
}

/// Decode KV-cache utilisation from which the cache counts as full: requests are admitted
/// only as others finish (engines keep a few blocks free, and a request's last blocks are
/// partly filled, so a full cache reads below 1).
pub const KV_FULL: f64 = 0.9;

impl Policy for SlaPlanner {
    fn name(&self) -> &str {
        &self.name
    }

    fn settings(&self) -> Option<serde_json::Value> {
        serde_json::to_value(&self.cfg).ok()
    }

    /// Observation in, decision out: take the interval (pooled into forecast steps), learn
    /// from its latencies, size each role for the most any step of the horizon asks, then
    /// the holds, the stabiliser and the limits, each saying why.
    fn decide(&mut self, now_s: f64, obs: &Observation) -> Decision {
        self.cold_starts.observe(now_s, obs.replicas.as_ref());
        let mut decision = self.decide_now(now_s, obs);
        let interval_s = self.interval_of(obs);
        decision.reasons.extend(
            self.cold_starts
                .reasons(now_s, self.ctx.startup_s, interval_s),
        );
        self.note_ordered(now_s, decision.prefill, decision.decode);
        decision
    }
}

impl SlaPlanner {
    /// The observation's interval, or the configured one where it gives none that is valid.
    fn interval_of(&self, obs: &Observation) -> f64 {
        if obs.interval_s.is_finite() && obs.interval_s > 0.0 {
            obs.interval_s
        } else {
            self.ctx.interval_s
        }
    }

    /// `Policy::decide`, before the decision is noted as ordered.
    fn decide_now(&mut self, now_s: f64, obs: &Observation) -> Decision {
        if self.found.is_none() {
            self.found = Some(self.current(obs));
        }
        let interval_s = self.interval_of(obs);
        let requests = match obs.requests {
            Some(n) if n.is_finite() && n >= 0.0 => n,
            Some(_) => return self.hold(obs, "request count is not a number"),
            None => return self.hold_or_follow(now_s, obs, interval_s),
        };
        let unseen = self.fill_unseen(
            now_s - interval_s,
            interval_s,
            requests / interval_s,
            obs.isl_mean,
            obs.osl_mean,
        );
        self.fed_until_s = Some(now_s);
        let silence = self.silence_hold(now_s, interval_s, requests);
        let step_s = self.pool.step_len_s(interval_s);
        if self.missed_the_sla(
            &obs.ttft_ms.unwrap_or_default(),
            &obs.itl_ms.unwrap_or_default(),
        ) {
            self.rate.note_missed();
        }
        for pooled in self.pool.add(
            interval_s,
            requests,
            obs.requests_second_half,
            obs.isl_mean,
            obs.osl_mean,
        ) {
            self.observe_pooled(&pooled, interval_s);
        }
        // Replicas not reported are taken as the planner ordered them, ready a cold start
        // after the order: its latencies then teach as a reported count's would.
        let assumed = obs
            .replicas
            .is_none()
            .then(|| self.as_ordered(now_s))
            .flatten();
        let assumed_reason = assumed.map(|r| {
            format!(
                "replicas not reported: taken as ordered, each ready {:.0}s after its order ({}P+{}D ready)",
                self.cold_start_s(), r.prefill.ready, r.decode.ready
            )
        });
        let learned = self.learn(obs, obs.replicas.or(assumed), requests, interval_s);
        self.cached_shares.observe(
            obs.prefix_cache_hit_rate,
            requests,
            self.cfg.correction.window,
        );
        let backlog = obs
            .queued_prefill_tokens
            .filter(|q| q.is_finite() && *q > 0.0)
            .unwrap_or(0.0);
        let rate = requests / interval_s;
        let current = self.current(obs);
        let plan = self.plan_horizon(
            rate,
            interval_s,
            step_s,
            backlog,
            self.planning_quantiles(),
            current,
            0.0,
        );
        // What the load would ask if it came in at the forecast's worst miss of the last
        // dozen, or at its own worst rise where the forecast is no clearly better than the
        // last value (`SignalForecaster::worst_case`): a role whose wish falls at every
        // decision of the scale-down window is held no higher (worked out only then, and
        // once those misses are known). The window it
        // cuts short covered the lengths' misses as well, which the plan's point forecasts
        // of them do not: here they are taken at the bound the rate is planned at (on
        // Mooncake's trace a minute's mean prompt ranges over 4,800-6,900 tokens; the worst
        // of all three signals at once would keep nearly everything).
        let falling = self.stabilizer.falling(now_s, (plan.prefill, plan.decode));
        let shrinking =
            (falling.0 && plan.prefill < current.0) || (falling.1 && plan.decode < current.1);
        let worst_miss = (shrinking && self.rate.misses_known()).then(|| {
            let p = self.plan_horizon(
                rate,
                interval_s,
                step_s,
                backlog,
                Quantiles {
                    rate: WORST_MISS_QUANTILE,
                    lengths: Some(self.cfg.headroom_quantile),
                    expected_misses: false,
                    worst_case: true,
                },
                current,
                0.0,
            );
            (p.prefill, p.decode)
        });

        let mut reasons = vec![self.plan_reason(&plan, step_s)];
        reasons.extend(self.cached_reason(&plan));
        reasons.extend(assumed_reason);
        reasons.extend(unseen);
        if backlog > 0.0 {
            reasons.push(format!(
                "{backlog:.0} queued prefill tokens to work off within {step_s:.0}s"
            ));
        }
        reasons.extend(learned);
        reasons.extend(plan.solution.notes.iter().map(ToString::to_string));
        reasons.extend(plan.too_late.clone());
        reasons.extend(beyond_the_profile(
            &self.model,
            plan.load.isl,
            plan.load.osl,
        ));
        let counts = self.settle(now_s, obs, &plan, worst_miss, silence, &mut reasons);
        self.finish(counts, reasons, &plan, step_s)
    }
}

#[cfg(test)]
mod tests;

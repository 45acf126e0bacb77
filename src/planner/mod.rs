//! Decisions: from what the last interval showed to how many replicas each role should have.
//!
//! Architecture invariant: nothing in this module does I/O or reads a clock. Time comes in
//! as `now_s`; observations come in as values. The same code runs live, in simulation and
//! behind `decide`.

pub mod baselines;
pub mod cold_start;
pub mod forecast;
pub mod harmonic;
pub mod model;
mod observation;
pub mod percentiles;
pub mod sla_planner;
pub mod solver;
pub mod stabilizer;
pub mod step_pool;

pub use crate::scaler::Limits;
pub use observation::{
    ceilings, percentile_sorted, shown, Decision, Forecast, LatencySummary, Observation,
    ReplicaState, RoleKv, RoleReplicas, MAX_REPLICAS,
};

use serde::{Deserialize, Serialize};

/// Latency targets. A request meets the SLA when its TTFT and its mean ITL are both within target.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Sla {
    pub ttft_ms: f64,
    pub itl_ms: f64,
}

/// What a policy is told about the deployment it steers.
#[derive(Debug, Clone)]
pub struct PolicyContext {
    pub sla: Sla,
    pub limits: Limits,
    pub interval_s: f64,
    /// Expected cold start of a new replica.
    pub startup_s: f64,
    pub prefill: crate::profile::PrefillModel,
    pub decode: crate::profile::DecodeModel,
    pub max_context_tokens: f64,
}

impl PolicyContext {
    /// A context whose models and context limit come from `profile`.
    pub fn new(
        profile: &crate::profile::Profile,
        sla: Sla,
        limits: Limits,
        interval_s: f64,
        startup_s: f64,
    ) -> PolicyContext {
        PolicyContext {
            sla,
            limits,
            interval_s,
            startup_s,
            prefill: profile.prefill_model(),
            decode: profile.decode_model(),
            max_context_tokens: profile.max_context_tokens,
        }
    }
}

/// A scaling policy: called once per interval with what the interval showed.
pub trait Policy: Send {
    fn name(&self) -> &str;
    /// Replicas the deployment starts with, when the policy has its own idea of them.
    fn initial_replicas(&self) -> Option<(u32, u32)> {
        None
    }
    fn decide(&mut self, now_s: f64, obs: &Observation) -> Decision;
    /// The settings the policy decides by, where it has any to show: a dry run's summary
    /// records them beside its figures, so two planner variants' runs say what each was.
    fn settings(&self) -> Option<serde_json::Value> {
        None
    }
}

/// A policy context for unit tests: the embedded profile, up to 16 engines per role (no
/// prefill role when `aggregated`), 32 GPUs, a decision a minute and a minute's cold start.
#[cfg(test)]
pub(crate) fn test_context(sla: Sla, aggregated: bool) -> PolicyContext {
    let profile = crate::profile::Profile::embedded_default();
    PolicyContext::new(
        &profile,
        sla,
        Limits {
            min_prefill: if aggregated { 0 } else { 1 },
            max_prefill: if aggregated { 0 } else { 16 },
            min_decode: 1,
            max_decode: 16,
            gpu_budget: 32,
            gpus_per_prefill_engine: 1,
            gpus_per_decode_engine: 1,
        },
        60.0,
        60.0,
    )
}

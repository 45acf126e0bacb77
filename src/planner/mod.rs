//! Decisions: from what the last interval showed to how many replicas each role should have.
//!
//! Architecture invariant: nothing in this module does I/O or reads a clock. Time comes in
//! as `now_s`; observations come in as values. The same code runs live, in simulation and
//! behind `decide`.

pub mod baselines;
mod observation;

pub use observation::{percentile_sorted, Decision, Forecast, LatencySummary, Observation, ReplicaState, RoleKv, RoleReplicas};

use serde::{Deserialize, Serialize};

/// Latency targets. A request meets the SLA when its TTFT and its mean ITL are both within target.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Sla {
    pub ttft_ms: f64,
    pub itl_ms: f64,
}

/// Replica and GPU limits of one deployment.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Limits {
    pub min_prefill: u32,
    pub max_prefill: u32,
    pub min_decode: u32,
    pub max_decode: u32,
    /// Total GPUs the two roles may hold together, counting starting and draining replicas' GPUs
    /// as the cluster does.
    pub gpu_budget: u32,
    pub gpus_per_prefill_engine: u32,
    pub gpus_per_decode_engine: u32,
}

impl Limits {
    pub fn gpus(&self, prefill: u32, decode: u32) -> u32 {
        prefill * self.gpus_per_prefill_engine + decode * self.gpus_per_decode_engine
    }

    /// Clamps to per-role bounds, then shrinks both roles in proportion until the pair fits
    /// the GPU budget (never below the minimums). Returns the pair and whether anything clipped.
    pub fn clamp(&self, prefill: u32, decode: u32) -> (u32, u32, Vec<String>) {
        let mut notes = Vec::new();
        let p0 = prefill.clamp(self.min_prefill, self.max_prefill);
        let d0 = decode.clamp(self.min_decode, self.max_decode);
        if p0 != prefill {
            notes.push(format!("prefill {prefill} clipped to [{}, {}]", self.min_prefill, self.max_prefill));
        }
        if d0 != decode {
            notes.push(format!("decode {decode} clipped to [{}, {}]", self.min_decode, self.max_decode));
        }
        let (mut p, mut d) = (p0, d0);
        if self.gpus(p, d) > self.gpu_budget {
            let scale = self.gpu_budget as f64 / self.gpus(p, d) as f64;
            p = ((p as f64 * scale).floor() as u32).max(self.min_prefill);
            d = ((d as f64 * scale).floor() as u32).max(self.min_decode);
            // Hand back the GPUs that flooring left unused, to the role that lost more.
            loop {
                let p_short = p0.saturating_sub(p) as f64 / p0.max(1) as f64;
                let d_short = d0.saturating_sub(d) as f64 / d0.max(1) as f64;
                let try_p = p_short >= d_short && p < p0 && self.gpus(p + 1, d) <= self.gpu_budget;
                let try_d = d < d0 && self.gpus(p, d + 1) <= self.gpu_budget;
                if try_p {
                    p += 1;
                } else if try_d {
                    d += 1;
                } else if p < p0 && self.gpus(p + 1, d) <= self.gpu_budget {
                    p += 1;
                } else {
                    break;
                }
            }
            notes.push(format!("GPU budget {} binds: {p0}P+{d0}D shrunk to {p}P+{d}D", self.gpu_budget));
        }
        (p, d, notes)
    }
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

/// A scaling policy: called once per interval with what the interval showed.
pub trait Policy: Send {
    fn name(&self) -> &str;
    /// Replicas the deployment starts with, when the policy has its own idea of them.
    fn initial_replicas(&self) -> Option<(u32, u32)> {
        None
    }
    fn decide(&mut self, now_s: f64, obs: &Observation) -> Decision;
}

//! Baseline policies the planner is measured against: static, schedule replay, Dynamo's
//! throughput planner as published, and an HPA-style threshold policy.

use std::collections::VecDeque;

use super::{Decision, Observation, Policy, PolicyContext};

/// Fixed replica counts.
pub struct StaticPolicy {
    name: String,
    prefill: u32,
    decode: u32,
}

impl StaticPolicy {
    pub fn new(prefill: u32, decode: u32) -> StaticPolicy {
        StaticPolicy::named(format!("static:{prefill},{decode}"), prefill, decode)
    }

    pub fn named(name: String, prefill: u32, decode: u32) -> StaticPolicy {
        StaticPolicy {
            name,
            prefill,
            decode,
        }
    }
}

impl Policy for StaticPolicy {
    fn name(&self) -> &str {
        &self.name
    }
    fn initial_replicas(&self) -> Option<(u32, u32)> {
        Some((self.prefill, self.decode))
    }
    fn decide(&mut self, _now_s: f64, _obs: &Observation) -> Decision {
        Decision {
            prefill: self.prefill,
            decode: self.decode,
            reasons: vec!["static".into()],
            forecast: None,
            ..Default::default()
        }
    }
}

/// Replays `(time_s, prefill, decode)` rows: the deployment starts as the first row says,
/// and at each tick asks for the last row at or before now. A second row at time 0 is
/// therefore ordered at the start and ready a cold start later: what any policy could do
/// from that first deployment at the earliest.
pub struct SchedulePolicy {
    name: String,
    rows: Vec<(f64, u32, u32)>,
}

impl SchedulePolicy {
    /// `rows` must be sorted by time and non-empty.
    pub fn new(name: String, rows: Vec<(f64, u32, u32)>) -> SchedulePolicy {
        SchedulePolicy { name, rows }
    }

    fn at(&self, t: f64) -> (u32, u32) {
        let i = self.rows.partition_point(|r| r.0 <= t);
        let r = self.rows[i.saturating_sub(1)];
        (r.1, r.2)
    }
}

impl Policy for SchedulePolicy {
    fn name(&self) -> &str {
        &self.name
    }
    fn initial_replicas(&self) -> Option<(u32, u32)> {
        let first = self.rows[0];
        Some((first.1, first.2))
    }
    fn decide(&mut self, now_s: f64, _obs: &Observation) -> Decision {
        let (p, d) = self.at(now_s);
        Decision {
            prefill: p,
            decode: d,
            reasons: vec![format!("schedule row for t={now_s:.0}s")],
            forecast: None,
            ..Default::default()
        }
    }
}

/// Dynamo's throughput-based planner, from its published formula: one step ahead with a
/// constant (last value) predictor, prefill sized at full utilisation, decode at the best
/// profiled throughput whose ITL meets the (corrected) target, proportional shrink to the
/// budget, and a skipped tick when metrics are missing.
pub struct DynamoPolicy {
    ctx: PolicyContext,
    corrections: bool,
    name: String,
}

impl DynamoPolicy {
    pub fn new(ctx: PolicyContext, corrections: bool) -> DynamoPolicy {
        let name = if corrections {
            "dynamo".to_string()
        } else {
            "dynamo:no-correction".to_string()
        };
        DynamoPolicy {
            ctx,
            corrections,
            name,
        }
    }

    fn hold(&self, obs: &Observation, why: &str) -> Decision {
        let r = obs.replicas.unwrap_or_default();
        Decision {
            prefill: r.prefill.held(),
            decode: r.decode.held(),
            reasons: vec![format!("tick skipped: {why}")],
            forecast: None,
            ..Default::default()
        }
    }
}

impl Policy for DynamoPolicy {
    fn name(&self) -> &str {
        &self.name
    }

    fn decide(&mut self, _now_s: f64, obs: &Observation) -> Decision {
        let (n, isl, osl) = match (obs.requests, obs.isl_mean, obs.osl_mean) {
            (Some(n), Some(isl), Some(osl)) if n > 0.0 && isl.is_finite() && osl.is_finite() => {
                (n, isl, osl)
            }
            _ => return self.hold(obs, "request count, ISL or OSL missing or NaN"),
        };
        let c = &self.ctx;
        let interval = obs.interval_s.max(1e-9);
        let mut reasons = Vec::new();
        // Prefill: c_p = observed TTFT / profiled TTFT(ISL), applied as min(1, c_p).
        let mut c_p = 1.0;
        if self.corrections {
            if let Some(mean) = obs.ttft_ms.and_then(|t| t.mean) {
                c_p = mean / c.prefill.ttft_ms(isl);
            }
        }
        let prefill_tokens_per_s = n * isl / interval * c_p.min(1.0);
        let p_raw = prefill_tokens_per_s
            / c.prefill.tokens_per_s_per_gpu(isl)
            / c.limits.gpus_per_prefill_engine as f64;
        let p = (p_raw.ceil() as u32).max(1);
        // Decode: c_d = observed ITL / profiled ITL at the observed concurrency and context.
        let context = isl + osl / 2.0;
        let mut c_d = 1.0;
        if self.corrections {
            if let (Some(itl), Some(r)) = (obs.itl_ms.and_then(|l| l.mean), obs.replicas) {
                let engines = (r.decode.ready.max(1)) as f64;
                let concurrency = n / interval * osl * itl / 1000.0 / engines;
                let kv = concurrency * context / c.decode.max_kv_tokens();
                let expected = c.decode.itl_ms(kv, context);
                if expected > 0.0 && itl > 0.0 {
                    c_d = itl / expected;
                }
            }
        }
        let best = c
            .decode
            .best_tokens_per_s_per_gpu(c.sla.itl_ms / c_d, context);
        let decode_tokens_per_s = n * osl / interval;
        let d = if best > 0.0 {
            ((decode_tokens_per_s / best / c.limits.gpus_per_decode_engine as f64).ceil() as u32)
                .max(1)
        } else {
            reasons.push(
                "no profiled point meets the corrected ITL target; decode at its maximum".into(),
            );
            c.limits.max_decode
        };
        reasons.push(format!(
            "n={n:.0} isl={isl:.0} osl={osl:.0}; c_p={c_p:.2} c_d={c_d:.2}; prefill {p_raw:.2} engines, decode {:.2} engines",
            if best > 0.0 { decode_tokens_per_s / best } else { f64::NAN }
        ));
        Decision {
            forecast: Some(super::Forecast {
                horizon_s: interval,
                requests_per_s: n / interval,
                isl,
                osl,
                method: None,
            }),
            ..Decision::clipped(&c.limits, p, d, reasons)
        }
    }
}

/// HPA-style: `desired = ceil(ready * metric / target)` per role, ignored within a tolerance
/// of 10%, with the largest recommendation of the last 300 s kept on the way down.
/// Prefill's metric is the queued prefill tokens per ready engine, its target the tokens an
/// engine prefills in half the TTFT target; decode's metric is the decode KV utilisation, its
/// target the profiled KV usage at which ITL reaches the target at the observed context.
/// Aggregated workers (limits with no prefill role) take both metrics, and the larger
/// recommendation, as an HPA with two metrics does (and Dynamo's load-based planner scaled
/// aggregated workers on their KV utilisation).
pub struct ThresholdPolicy {
    ctx: PolicyContext,
    tolerance: f64,
    stabilization_s: f64,
    history: VecDeque<(f64, u32, u32)>,
}

impl ThresholdPolicy {
    pub fn new(ctx: PolicyContext) -> ThresholdPolicy {
        ThresholdPolicy {
            ctx,
            tolerance: 0.1,
            stabilization_s: 300.0,
            history: VecDeque::new(),
        }
    }

    fn hpa(&self, current: u32, metric: f64, target: f64) -> u32 {
        if current == 0 {
            return 1;
        }
        let ratio = metric / target;
        if (ratio - 1.0).abs() <= self.tolerance {
            current
        } else {
            (current as f64 * ratio).ceil() as u32
        }
    }
}

impl Policy for ThresholdPolicy {
    fn name(&self) -> &str {
        "threshold"
    }

    fn decide(&mut self, now_s: f64, obs: &Observation) -> Decision {
        let r = obs.replicas.unwrap_or_default();
        let c = &self.ctx;
        let mut reasons = Vec::new();
        let isl = obs
            .isl_mean
            .filter(|x| x.is_finite())
            .unwrap_or(c.prefill.max_profiled_isl() / 4.0);
        let osl = obs.osl_mean.filter(|x| x.is_finite()).unwrap_or(0.0);
        let aggregated = c.limits.is_aggregated();
        // The role the queue is measured against: prefill engines, or the workers.
        let queue_role = if aggregated { r.decode } else { r.prefill };
        let by_queue = obs.queued_prefill_tokens.map(|q| {
            let per_engine = q / queue_role.ready.max(1) as f64;
            let target = c.prefill.tokens_per_s_per_engine(isl) * c.sla.ttft_ms / 1000.0 * 0.5;
            reasons.push(format!(
                "prefill queue {per_engine:.0} tokens/engine vs target {target:.0}"
            ));
            self.hpa(queue_role.ready, per_engine, target).max(1)
        });
        let by_kv = obs.kv_utilization.and_then(|k| k.decode).map(|kv| {
            let context = isl + osl / 2.0;
            let target = c
                .decode
                .max_kv_usage_for_itl(c.sla.itl_ms, context)
                .unwrap_or(0.05)
                .max(0.01);
            reasons.push(format!("decode KV {kv:.3} vs target {target:.3}"));
            self.hpa(r.decode.ready, kv, target).max(1)
        });
        let (p, d) = if aggregated {
            let held = r.decode.held();
            let workers = match (by_queue, by_kv) {
                (None, None) => {
                    reasons.push("prefill queue and KV utilisation missing: workers held".into());
                    held
                }
                (q, k) => q.into_iter().chain(k).max().unwrap_or(held),
            };
            (0, workers)
        } else {
            let p = by_queue.unwrap_or_else(|| {
                reasons.push("prefill queue missing: prefill held".into());
                r.prefill.held()
            });
            let d = by_kv.unwrap_or_else(|| {
                reasons.push("decode KV utilisation missing: decode held".into());
                r.decode.held()
            });
            (p, d)
        };
        // Scale-down stabilisation: the highest recommendation within the window.
        self.history.push_back((now_s, p, d));
        while self
            .history
            .front()
            .is_some_and(|h| h.0 < now_s - self.stabilization_s)
        {
            self.history.pop_front();
        }
        let p_stable = self.history.iter().map(|h| h.1).max().unwrap_or(p);
        let d_stable = self.history.iter().map(|h| h.2).max().unwrap_or(d);
        if p_stable > p || d_stable > d {
            reasons.push(format!(
                "scale-down stabilised over {:.0}s",
                self.stabilization_s
            ));
        }
        Decision::clipped(&c.limits, p_stable, d_stable, reasons)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::{ReplicaState, RoleKv, RoleReplicas, Sla};

    fn ctx(aggregated: bool) -> PolicyContext {
        crate::planner::test_context(
            Sla {
                ttft_ms: 200.0,
                itl_ms: 10.0,
            },
            aggregated,
        )
    }

    fn observed(queued: Option<f64>, kv: Option<f64>, prefill: u32, decode: u32) -> Observation {
        let ready = |n| ReplicaState {
            ready: n,
            ..Default::default()
        };
        Observation {
            time_s: 60.0,
            interval_s: 60.0,
            requests: Some(600.0),
            isl_mean: Some(3000.0),
            osl_mean: Some(300.0),
            queued_prefill_tokens: queued,
            kv_utilization: kv.map(|d| RoleKv {
                prefill: None,
                decode: Some(d),
            }),
            replicas: Some(RoleReplicas {
                prefill: ready(prefill),
                decode: ready(decode),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_threshold_rule_scales_workers_on_the_larger_of_queue_and_kv() {
        // Aggregated: (queued tokens, KV) on 4 workers -> workers. The queue's target per
        // worker is the tokens it prefills in half the TTFT target; each metric alone
        // scales in proportion, both take the larger; neither holds.
        let target_tokens = {
            let c = ctx(true);
            c.prefill.tokens_per_s_per_engine(3000.0) * 0.1
        };
        let cases = [
            (Some(4.0 * 1.95 * target_tokens), None, 8),
            (Some(4.0 * 0.45 * target_tokens), None, 2),
            (Some(4.0 * 1.95 * target_tokens), Some(0.0), 8),
            (Some(0.0), Some(1.0), 16),
            (None, None, 4),
        ];
        for (queued, kv, want) in cases {
            let mut policy = ThresholdPolicy::new(ctx(true));
            let d = policy.decide(60.0, &observed(queued, kv, 0, 4));
            assert_eq!((d.prefill, d.decode), (0, want), "{queued:?} {kv:?}: {d:?}");
        }
        // Disaggregated, the same queue scales prefill and leaves decode to the KV.
        let mut policy = ThresholdPolicy::new(ctx(false));
        let d = policy.decide(
            60.0,
            &observed(Some(4.0 * 1.95 * target_tokens), None, 4, 3),
        );
        assert_eq!((d.prefill, d.decode), (8, 3), "{d:?}");
    }
}

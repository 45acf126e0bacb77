//! Benchmark: one decision of the planner, observation in, decision out.
//!
//! The planner is first shown two hours of a sinusoidal load (so its forecasters, the
//! seasonal one included, are warm); then each decision is timed on the next observations.
//! Run with `cargo bench --bench decide`; it prints the median and the 99th percentile.
//! `DECIDE_INTERVAL_S=10` times decisions every 10 s instead of every minute (intervals
//! pooled into forecast steps, with a copy of the forecasters for the step under way).

use std::time::Instant;

use sla_planner::planner::sla_planner::{PlannerConfig, SlaPlanner};
use sla_planner::planner::{
    LatencySummary, Limits, Observation, Policy, PolicyContext, ReplicaState, RoleKv, RoleReplicas,
    Sla,
};
use sla_planner::profile::Profile;

fn observation(i: usize, interval_s: f64) -> Observation {
    let t = interval_s * (i + 1) as f64;
    let rate =
        25.0 + 20.0 * (2.0 * std::f64::consts::PI * t / 600.0 - std::f64::consts::FRAC_PI_2).sin();
    let lat = |m: f64| {
        Some(LatencySummary {
            mean: Some(m),
            p50: Some(m),
            p90: Some(m * 1.4),
            p99: Some(m * 2.0),
        })
    };
    Observation {
        time_s: t,
        interval_s,
        requests: Some(rate * interval_s),
        requests_second_half: Some(rate * interval_s / 2.0),
        isl_mean: Some(3000.0),
        osl_mean: Some(300.0),
        ttft_ms: lat(70.0 + rate),
        itl_ms: lat(6.0 + rate / 20.0),
        kv_utilization: Some(RoleKv {
            prefill: Some(0.01),
            decode: Some(0.02 * rate / 10.0),
        }),
        queued_prefill_tokens: Some(1000.0),
        prefix_cache_hit_rate: None,
        replicas: Some(RoleReplicas {
            prefill: ReplicaState {
                ready: 4,
                starting: 0,
                draining: 0,
            },
            decode: ReplicaState {
                ready: 4,
                starting: 0,
                draining: 0,
            },
        }),
    }
}

fn main() {
    let interval_s: f64 = match std::env::var("DECIDE_INTERVAL_S") {
        Ok(v) => v
            .parse()
            .ok()
            .filter(|s: &f64| s.is_finite() && *s > 0.0)
            .unwrap_or_else(|| panic!("DECIDE_INTERVAL_S: not a positive number: {v:?}")),
        Err(_) => 60.0,
    };
    let p = Profile::embedded_default();
    let ctx = PolicyContext::new(
        &p,
        Sla {
            ttft_ms: 200.0,
            itl_ms: 10.0,
        },
        Limits {
            min_prefill: 1,
            max_prefill: 12,
            min_decode: 1,
            max_decode: 12,
            gpu_budget: 12,
            gpus_per_prefill_engine: 1,
            gpus_per_decode_engine: 1,
        },
        interval_s,
        60.0,
    );
    let mut planner = SlaPlanner::new(ctx, PlannerConfig::default());
    // Two hours, whatever the interval.
    let warm = (7200.0 / interval_s).round() as usize;
    for i in 0..warm {
        let o = observation(i, interval_s);
        planner.decide(o.time_s, &o);
    }
    let n = 2000;
    let obs: Vec<Observation> = (warm..warm + n)
        .map(|i| observation(i, interval_s))
        .collect();
    let mut times = Vec::with_capacity(n);
    for o in &obs {
        let t = Instant::now();
        let d = planner.decide(o.time_s, o);
        times.push(t.elapsed().as_secs_f64() * 1e6);
        std::hint::black_box(d);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "decide: median {:.1} us, p99 {:.1} us, max {:.1} us over {n} decisions (after {warm} warm-up)",
        times[n / 2],
        times[n * 99 / 100],
        times[n - 1]
    );
}

//! Properties of the planner that must hold whatever it is shown.

use proptest::prelude::*;

use sla_planner::planner::model::{CorrectionConfig, PerformanceModel, Router};
use sla_planner::planner::sla_planner::{PlannerConfig, SlaPlanner};
use sla_planner::planner::solver::{solve, Load, Mode, SolverConfig};
use sla_planner::planner::{
    ceilings, LatencySummary, Limits, Observation, Policy, PolicyContext, ReplicaState, RoleKv,
    RoleReplicas, Sla, MAX_REPLICAS,
};
use sla_planner::profile::Profile;

fn limits(min_p: u32, max_p: u32, min_d: u32, max_d: u32, budget: u32) -> Limits {
    Limits {
        min_prefill: min_p,
        max_prefill: max_p,
        min_decode: min_d,
        max_decode: max_d,
        gpu_budget: budget,
        gpus_per_prefill_engine: 1,
        gpus_per_decode_engine: 1,
    }
}

fn context(l: Limits) -> PolicyContext {
    let p = Profile::embedded_default();
    PolicyContext::new(
        &p,
        Sla {
            ttft_ms: 200.0,
            itl_ms: 10.0,
        },
        l,
        60.0,
        120.0,
    )
}

fn latency() -> impl Strategy<Value = Option<LatencySummary>> {
    prop::option::of(
        // Any of the four may be missing, as from a source that reports some of them.
        (0.1f64..5000.0, 1.0f64..3.0, 0u8..16).prop_map(|(m, s, present)| {
            let has = |bit: u8| present & (1 << bit) != 0;
            LatencySummary {
                mean: has(0).then_some(m),
                p50: has(1).then_some(m),
                p90: has(2).then_some(m * s),
                p99: has(3).then_some(m * s * s),
            }
        }),
    )
}

prop_compose! {
    fn observation(t: f64)(
        requests in prop::option::of(0.0f64..20000.0),
        second_half in prop::option::of(0.0f64..=1.0),
        isl in prop::option::of(1.0f64..16000.0),
        osl in prop::option::of(1.0f64..4000.0),
        ttft in latency(),
        itl in latency(),
        kv in prop::option::of(0.0f64..1.0),
        queued in prop::option::of(0.0f64..1e7),
        hit_rate in prop::option::of(0.0f64..=1.0),
        replicas in prop::option::of((0u32..20, 0u32..5, 0u32..20, 0u32..5)),
    ) -> Observation {
        Observation {
            time_s: t,
            interval_s: 60.0,
            requests,
            requests_second_half: requests.zip(second_half).map(|(n, share)| n * share),
            isl_mean: isl,
            osl_mean: osl,
            ttft_ms: ttft,
            itl_ms: itl,
            kv_utilization: kv.map(|k| RoleKv { prefill: None, decode: Some(k) }),
            queued_prefill_tokens: queued,
            prefix_cache_hit_rate: hit_rate,
            replicas: replicas.map(|(pr, ps, dr, ds)| RoleReplicas {
                prefill: ReplicaState { ready: pr, starting: ps, draining: 0 },
                decode: ReplicaState { ready: dr, starting: ds, draining: 0 },
            }),
        }
    }
}

/// A value anywhere from `10^lo` to `10^hi`, or 0.
fn magnitude(lo: f64, hi: f64) -> impl Strategy<Value = f64> {
    prop_oneof![Just(0.0), (lo..hi).prop_map(|e: f64| 10f64.powf(e))]
}

/// Up to the ceiling `most` in powers of ten from `10^lo`, the ceiling itself included.
fn up_to(lo: f64, most: f64) -> impl Strategy<Value = f64> {
    prop_oneof![magnitude(lo, most.log10()), Just(most)]
}

prop_compose! {
    /// Valid but far from any deployment: every magnitude up to its ceiling (`ceilings`:
    /// ten million requests a second, prompts of 10^8 tokens, latencies from nothing to a
    /// day), counts up to `MAX_REPLICAS`.
    fn extreme_observation(t: f64)(
        requests in prop::option::of(up_to(-3.0, ceilings::REQUESTS_PER_S * 60.0)),
        isl in prop::option::of(up_to(-3.0, ceilings::TOKENS_PER_REQUEST)),
        osl in prop::option::of(up_to(-3.0, ceilings::TOKENS_PER_REQUEST)),
        latency in prop::option::of(up_to(-6.0, ceilings::LATENCY_MS)),
        kv in prop::option::of(0.0f64..=1.0),
        queued in prop::option::of(up_to(0.0, ceilings::QUEUED_TOKENS)),
        counts in prop::option::of(prop::array::uniform4(prop_oneof![0u32..4, Just(MAX_REPLICAS)])),
        hit_rate in prop::option::of(prop_oneof![Just(0.0), Just(1.0), 0.0f64..=1.0]),
    ) -> Observation {
        let summary = latency.map(|m| LatencySummary { mean: Some(m), p50: Some(m), p90: Some(m), p99: Some(m) });
        Observation {
            time_s: t,
            interval_s: 60.0,
            requests,
            requests_second_half: None,
            isl_mean: isl,
            osl_mean: osl,
            ttft_ms: summary,
            itl_ms: summary,
            kv_utilization: kv.map(|k| RoleKv { prefill: Some(k), decode: Some(k) }),
            queued_prefill_tokens: queued,
            prefix_cache_hit_rate: hit_rate,
            replicas: counts.map(|[pr, ps, dr, ds]| RoleReplicas {
                prefill: ReplicaState { ready: pr, starting: ps, draining: 0 },
                decode: ReplicaState { ready: dr, starting: ds, draining: 0 },
            }),
        }
    }
}

/// Up to two dozen minutes' observations, now and then after a gap (a few minutes, or
/// months: longer than the forecasters remember).
fn observations() -> impl Strategy<Value = Vec<Observation>> {
    (1usize..25).prop_flat_map(|n| {
        prop::collection::vec(
            prop_oneof![8 => Just(0.0), 2 => Just(180.0), 1 => Just(1.0e7)],
            n,
        )
        .prop_flat_map(|gaps| {
            let mut t = 0.0;
            gaps.iter()
                .map(|gap| {
                    t += 60.0 + gap;
                    observation(t)
                })
                .collect::<Vec<_>>()
        })
    })
}

#[test]
fn keeps_the_deployment_found_until_the_bound_is_measured() {
    let mut planner = SlaPlanner::new(context(limits(1, 16, 1, 16, 32)), PlannerConfig::default());
    let mut replicas = (7, 1);
    let mut prefill = Vec::new();
    for tick in 0..16 {
        let t = 60.0 * tick as f64;
        let obs = Observation {
            time_s: t,
            interval_s: 60.0,
            // A quiet start: a few requests a second, then none, then a few again.
            requests: (tick > 0).then_some([300.0, 200.0, 0.0, 250.0][tick % 4]),
            isl_mean: Some(2200.0),
            osl_mean: Some(25.0),
            replicas: Some(RoleReplicas {
                prefill: ReplicaState {
                    ready: replicas.0,
                    starting: 0,
                    draining: 0,
                },
                decode: ReplicaState {
                    ready: replicas.1,
                    starting: 0,
                    draining: 0,
                },
            }),
            ..Default::default()
        };
        let d = planner.decide(t, &obs);
        if (1..=5).contains(&tick) {
            assert!(
                d.reasons
                    .iter()
                    .any(|r| r.contains("7P+1D found at the start")),
                "{:?}",
                d.reasons
            );
        }
        replicas = (d.prefill, d.decode);
        prefill.push(d.prefill);
    }
    // Three minutes of a few requests a second say little about the next burst: the
    // operator's seven prefill engines stay until the forecast's errors at the horizon
    // (three minutes) have been scored three times; then the planner sizes for the load.
    assert!(prefill[..=5].iter().all(|&p| p == 7), "{prefill:?}");
    assert!(prefill[15] < 7, "{prefill:?}");
}

#[test]
fn a_correction_pressed_against_its_bound_is_reported() {
    let mut planner = SlaPlanner::new(context(limits(1, 16, 1, 16, 32)), PlannerConfig::default());
    let steady = ReplicaState {
        ready: 4,
        starting: 0,
        draining: 0,
    };
    let mut reported = Vec::new();
    for tick in 1..=8 {
        let t = 60.0 * tick as f64;
        // Prompts of 2,000 tokens take tens of milliseconds on the profiled engines; these
        // take seconds, more than the largest speed correction (x4) explains.
        let obs = Observation {
            time_s: t,
            interval_s: 60.0,
            requests: Some(600.0),
            isl_mean: Some(2000.0),
            osl_mean: Some(200.0),
            ttft_ms: Some(LatencySummary {
                mean: Some(3000.0),
                p50: Some(3000.0),
                p90: Some(3500.0),
                p99: Some(4000.0),
            }),
            replicas: Some(RoleReplicas {
                prefill: steady,
                decode: steady,
            }),
            ..Default::default()
        };
        let d = planner.decide(t, &obs);
        reported.push(
            d.reasons
                .iter()
                .find(|r| r.starts_with("at its bound"))
                .cloned(),
        );
    }
    // Nothing learned yet at the first decision; after a few intervals the speed correction
    // sits at its upper bound, and the decision says so.
    assert!(reported[0].is_none(), "{reported:?}");
    let last = reported.last().unwrap().as_deref().unwrap_or("");
    assert!(
        last.starts_with("at its bound: prefill x3.9") && last.contains("(range 0.25-4)"),
        "{reported:?}"
    );
}

/// Every router the planner can be told of.
fn routers() -> impl Strategy<Value = Router> {
    prop_oneof![
        Just(Router::RoundRobin),
        Just(Router::Random),
        Just(Router::Kv)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn never_outside_limits_or_budget(obs in observations(), min_p in 1u32..3, min_d in 1u32..3, extra in 0u32..8, budget in 4u32..20, aggregated in any::<bool>(), router in routers()) {
        let l = limits(min_p, min_p + extra, min_d, min_d + extra, budget.max(min_p + min_d));
        let mode = if aggregated { Mode::Aggregated } else { Mode::Disaggregated };
        let mut planner = SlaPlanner::new(context(l), PlannerConfig { mode, router, ..PlannerConfig::default() });
        for o in &obs {
            let d = planner.decide(o.time_s, o);
            if aggregated {
                // One pool of workers: never a prefill replica, whatever was observed.
                prop_assert_eq!(d.prefill, 0, "{:?}", d);
            } else {
                prop_assert!(d.prefill >= l.min_prefill && d.prefill <= l.max_prefill, "{d:?}");
            }
            prop_assert!(d.decode >= l.min_decode && d.decode <= l.max_decode, "{d:?}");
            prop_assert!(l.gpus(d.prefill, d.decode) <= l.gpu_budget, "{d:?}");
            prop_assert!(!d.reasons.is_empty());
        }
    }

    /// Counts, budgets and loads far past any deployment's are decided like small ones, and
    /// in bounded time: searches over counts once tried every count up to the maximum, each
    /// with an Erlang B as long (a budget of 100,000 GPUs took minutes per decision), and a
    /// count of ready and starting replicas past `u32::MAX` wrapped.
    #[test]
    fn extreme_loads_and_counts_get_a_decision_within_limits(
        obs in (1usize..6).prop_flat_map(|n| (0..n).map(|i| extreme_observation(60.0 * (i + 1) as f64)).collect::<Vec<_>>()),
        budget in prop_oneof![Just(16u32), Just(1000), Just(MAX_REPLICAS)],
        aggregated in any::<bool>(),
    ) {
        let l = limits(if aggregated { 0 } else { 1 }, if aggregated { 0 } else { budget }, 1, budget, budget);
        let mode = if aggregated { Mode::Aggregated } else { Mode::Disaggregated };
        let mut planner = SlaPlanner::new(context(l), PlannerConfig { mode, ..PlannerConfig::default() });
        for o in &obs {
            prop_assert_eq!(o.validate(), Ok(()));
            let d = planner.decide(o.time_s, o);
            prop_assert!(d.prefill >= l.min_prefill && d.prefill <= l.max_prefill, "{d:?}");
            prop_assert!(d.decode >= l.min_decode && d.decode <= l.max_decode, "{d:?}");
            prop_assert!(l.gpus(d.prefill, d.decode) <= l.gpu_budget, "{d:?}");
        }
    }

    /// External tools pick the interval: a millisecond tick or a day must get a decision
    /// within limits like a minute does (a 1 ns tick once asked the solver for 6e10 steps).
    #[test]
    fn any_interval_length_gets_a_decision_within_limits(obs in observations(), log_interval in -12.0f64..6.0) {
        let interval = 10f64.powf(log_interval);
        let l = limits(1, 12, 1, 12, 12);
        let mut planner = SlaPlanner::new(context(l), PlannerConfig::default());
        for (i, o) in obs.iter().enumerate() {
            let t = interval * (i + 1) as f64;
            let d = planner.decide(t, &Observation { time_s: t, interval_s: interval, ..o.clone() });
            prop_assert!(d.prefill >= 1 && d.prefill <= 12 && d.decode >= 1 && d.decode <= 12, "{d:?}");
            prop_assert!(l.gpus(d.prefill, d.decode) <= 12, "{d:?}");
        }
    }

    #[test]
    fn never_scales_down_when_the_request_count_is_missing(obs in observations(), pr in 1u32..6, ps in 0u32..3, dr in 1u32..6, ds in 0u32..3) {
        let l = limits(1, 16, 1, 16, 32);
        let mut planner = SlaPlanner::new(context(l), PlannerConfig::default());
        for o in &obs {
            planner.decide(o.time_s, o);
        }
        let t = obs.last().map_or(0.0, |o| o.time_s) + 60.0;
        let blind = Observation {
            time_s: t,
            interval_s: 60.0,
            replicas: Some(RoleReplicas {
                prefill: ReplicaState { ready: pr, starting: ps, draining: 0 },
                decode: ReplicaState { ready: dr, starting: ds, draining: 0 },
            }),
            ..Default::default()
        };
        let d = planner.decide(t, &blind);
        // It holds, or raises a role its measured forecast needs more of; never lowers one.
        prop_assert!(d.prefill >= pr + ps && d.decode >= dr + ds, "{d:?}");
        prop_assert!(l.gpus(d.prefill, d.decode) <= 32 && d.prefill <= 16 && d.decode <= 16, "{d:?}");
        if (d.prefill, d.decode) == (pr + ps, dr + ds) {
            prop_assert!(d.reasons[0].starts_with("hold"), "{:?}", d.reasons);
        } else {
            prop_assert!(
                d.reasons[0].starts_with("request count missing: nothing scaled down; the forecast asks for"),
                "{:?}",
                d.reasons
            );
        }
    }

    #[test]
    fn more_load_never_fewer_replicas(lambda in 0.0f64..80.0, more in 0.0f64..40.0, isl in 50.0f64..12000.0, osl in 2.0f64..2000.0, v in 0.2f64..5.0, k in 0.5f64..2.0, f in 0.25f64..4.0) {
        let p = Profile::embedded_default();
        let mut m = PerformanceModel::new(p.prefill_model(), p.decode_model(), CorrectionConfig::default(), Router::default());
        m.corrections.prefill_variability = v;
        m.corrections.decode = k;
        m.corrections.decode_context = f;
        let l = limits(1, 64, 1, 64, 128);
        let cfg = SolverConfig { ttft_quantile: 0.99, itl_batch_z: 2.33, kv_fraction: 0.9, mode: Mode::Disaggregated, router: Router::default(), incumbent: None };
        let sla = Sla { ttft_ms: 500.0, itl_ms: 20.0 };
        let a = solve(&m, &sla, &l, &cfg, &Load { lambda, isl, prefill_isl: isl, osl, backlog_tokens: 0.0, drain_s: 60.0 });
        let b = solve(&m, &sla, &l, &cfg, &Load { lambda: lambda + more, isl, prefill_isl: isl, osl, backlog_tokens: 0.0, drain_s: 60.0 });
        prop_assert!(b.prefill >= a.prefill && b.decode >= a.decode, "{a:?} then {b:?}");
    }

    /// Aggregated workers, behind any router: more load never fewer workers.
    #[test]
    fn more_load_never_fewer_workers(lambda in 0.0f64..80.0, more in 0.0f64..40.0, isl in 50.0f64..12000.0, osl in 2.0f64..2000.0, k in 0.5f64..2.0, router in routers()) {
        let p = Profile::embedded_default();
        let mut m = PerformanceModel::new(p.prefill_model(), p.decode_model(), CorrectionConfig::default(), router);
        m.corrections.decode = k;
        let l = limits(0, 0, 1, 64, 64);
        let cfg = SolverConfig { ttft_quantile: 0.99, itl_batch_z: 2.33, kv_fraction: 0.9, mode: Mode::Aggregated, router, incumbent: None };
        let sla = Sla { ttft_ms: 1000.0, itl_ms: 20.0 };
        let at = |lambda| Load { lambda, isl, prefill_isl: isl, osl, backlog_tokens: 0.0, drain_s: 60.0 };
        let (a, b) = (solve(&m, &sla, &l, &cfg, &at(lambda)), solve(&m, &sla, &l, &cfg, &at(lambda + more)));
        prop_assert!(b.decode >= a.decode, "{a:?} then {b:?}");
    }

    /// More of each prompt found in the prefix caches leaves prefill less to compute:
    /// never more prefill engines, and decode, which holds whole prompts, as before.
    #[test]
    fn more_cached_never_more_prefill(lambda in 0.0f64..80.0, isl in 50.0f64..12000.0, osl in 2.0f64..2000.0, share in 0.0f64..1.0, more in 0.0f64..1.0) {
        let p = Profile::embedded_default();
        let prefill = p.prefill_model();
        let m = PerformanceModel::new(p.prefill_model(), p.decode_model(), CorrectionConfig::default(), Router::default());
        let l = limits(1, 64, 1, 64, 128);
        let cfg = SolverConfig { ttft_quantile: 0.99, itl_batch_z: 2.33, kv_fraction: 0.9, mode: Mode::Disaggregated, router: Router::default(), incumbent: None };
        let sla = Sla { ttft_ms: 500.0, itl_ms: 20.0 };
        let at = |share: f64| Load { lambda, isl, prefill_isl: prefill.isl_past_cached(isl, share * isl), osl, backlog_tokens: 0.0, drain_s: 60.0 };
        let less = at(share);
        let most = at((share + more).min(1.0));
        prop_assert!(most.prefill_isl <= less.prefill_isl && less.prefill_isl <= isl);
        let a = solve(&m, &sla, &l, &cfg, &less);
        let b = solve(&m, &sla, &l, &cfg, &most);
        prop_assert!(b.prefill <= a.prefill && b.decode == a.decode, "{a:?} then {b:?}");
    }
}

/// Scaling down, the planner loads its prefill engines at most twice as much as it has
/// seen them loaded lately (or as `LOAD_TESTED_FLOOR`): what it predicts beyond rests on
/// what it learned where little waited.
#[test]
fn a_scale_down_loads_engines_at_most_twice_what_was_seen() {
    use sla_planner::planner::sla_planner::{untested_load_floor, LOAD_TESTED_FLOOR};
    // The floor: the offered load over twice the seen load per engine, rounded up.
    assert_eq!(untested_load_floor(3.0, Some(0.5)), Some(3));
    assert_eq!(untested_load_floor(3.1, Some(0.5)), Some(4));
    assert_eq!(
        untested_load_floor(3.0, Some(0.05)),
        Some(5),
        "quiet evidence counts as {LOAD_TESTED_FLOOR}"
    );
    assert_eq!(untested_load_floor(3.0, None), None);
    assert_eq!(untested_load_floor(0.0, Some(0.5)), None);

    let mut ctx = context(limits(1, 16, 1, 16, 32));
    ctx.sla.ttft_ms = 1000.0;
    let profile = Profile::embedded_default();
    let isl = 3000.0;
    let service_s = profile.prefill_model().ttft_ms(isl) / 1000.0;
    let mut planner = SlaPlanner::new(ctx, PlannerConfig::default());
    let steady = |ready| ReplicaState {
        ready,
        starting: 0,
        draining: 0,
    };
    let mut prefill = 12;
    let mut kept = 0;
    let mut seen = Vec::new();
    for tick in 1..=30 {
        let t = 60.0 * tick as f64;
        let rate = 60.0;
        let obs = Observation {
            time_s: t,
            interval_s: 60.0,
            requests: Some(rate * 60.0),
            isl_mean: Some(isl),
            osl_mean: Some(200.0),
            // Prompts that went straight to an engine: no waiting shows.
            ttft_ms: Some(LatencySummary {
                mean: Some(70.0),
                p50: Some(65.0),
                p90: Some(90.0),
                p99: Some(120.0),
            }),
            replicas: Some(RoleReplicas {
                prefill: steady(prefill),
                decode: steady(4),
            }),
            ..Default::default()
        };
        seen.push(rate * service_s / f64::from(prefill));
        let d = planner.decide(t, &obs);
        if d.prefill < prefill {
            let most = seen
                .iter()
                .rev()
                .take(10)
                .fold(LOAD_TESTED_FLOOR, |a, &b| a.max(b));
            let after = rate * service_s / f64::from(d.prefill);
            assert!(
                after <= 2.0 * most * 1.05,
                "tick {tick}: {prefill} -> {}: {after:.2} erlangs per engine after at most {most:.2} seen; {:?}",
                d.prefill,
                d.reasons
            );
        }
        kept += d.reasons.iter().any(|r| r.starts_with("prefill: kept at")) as usize;
        prefill = d.prefill;
    }
    assert!(kept > 0, "the floor bound at some decision");
}

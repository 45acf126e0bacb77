//! The simulator reproduces the profile it is given, and queues past capacity.

mod common;

use sla_planner::planner::baselines::{SchedulePolicy, StaticPolicy};
use sla_planner::profile::{load_profile, Profile};
use sla_planner::sim::{simulate, Outcome, PrefixCache, PrefixTokens, Routing, SimConfig};
use sla_planner::workload::{LengthDist, PrefixBlocks, RateShape, Request, SyntheticSpec};

fn one_at_a_time(isls: &[u32], osl: u32) -> Vec<Request> {
    // 30 s apart: every request finds the deployment empty.
    isls.iter()
        .enumerate()
        .map(|(i, &isl)| Request::new(1.0 + 30.0 * i as f64, isl, osl))
        .collect()
}

/// Each request's outcome on `cfg`'s deployment held at `(p, d)` replicas.
fn outcomes(
    cfg: &SimConfig,
    profile: &Profile,
    requests: &[Request],
    (p, d): (u32, u32),
) -> Vec<Outcome> {
    simulate(cfg, profile, requests, &mut StaticPolicy::new(p, d), None).outcomes
}

#[test]
fn one_request_at_a_time_gives_profiled_ttft() {
    let profile = Profile::embedded_default();
    let isls: Vec<u32> = profile
        .prefill
        .prefill_isl
        .iter()
        .map(|&x| x as u32)
        .collect();
    let requests = one_at_a_time(&isls, 2);
    let cfg = common::sim_config(&profile, 1, 1, 30.0 * isls.len() as f64 + 60.0);
    for (i, o) in outcomes(&cfg, &profile, &requests, (1, 1))
        .iter()
        .enumerate()
    {
        let want = profile.prefill.prefill_ttft[i];
        let got = o.ttft_ms as f64;
        assert!(
            (got - want).abs() / want < 0.05,
            "ISL {}: simulated TTFT {got:.2} ms, profiled {want:.2} ms",
            isls[i]
        );
    }
}

#[test]
fn one_request_at_a_time_gives_low_load_itl() {
    let profile = Profile::embedded_default();
    let model = profile.decode_model();
    // Contexts of the profile's sweep: isl + osl/2 = context.
    for &context in &[350.0, 2997.0, 5644.0, 8291.0, 10938.0, 13585.0] {
        let osl = 200u32;
        let isl = (context - osl as f64 / 2.0) as u32;
        let requests = one_at_a_time(&[isl, isl, isl], osl);
        let cfg = common::sim_config(&profile, 1, 1, 200.0);
        let outcomes = outcomes(&cfg, &profile, &requests, (1, 1));
        // The profile's lowest-KV point at this context is one request alone.
        let i = (0..profile.decode.x_kv_usage.len())
            .filter(|&i| (profile.decode.y_context_length[i] - context).abs() < 0.5)
            .min_by(|&a, &b| profile.decode.x_kv_usage[a].total_cmp(&profile.decode.x_kv_usage[b]))
            .unwrap();
        let want = profile.decode.z_itl[i];
        for o in &outcomes {
            let got = o.itl_ms as f64;
            assert!(
                (got - want).abs() / want < 0.05,
                "context {context}: simulated ITL {got:.3} ms, profiled {want:.3} ms"
            );
        }
        assert!((model.itl_ms(0.0, context) - want).abs() / want < 0.05);
    }
}

/// One worker that prefills and decodes (aggregated), static.
fn aggregated(profile: &Profile, workers: u32, duration_s: f64) -> sla_planner::sim::SimConfig {
    let mut cfg = common::sim_config(profile, 0, workers, duration_s);
    cfg.aggregated = true;
    cfg.limits.min_prefill = 0;
    cfg.limits.max_prefill = 0;
    cfg
}

#[test]
fn an_aggregated_worker_alone_prefills_and_decodes_as_profiled() {
    let profile = Profile::embedded_default();
    let model = profile.decode_model();
    let (isl, osl) = (2950u32, 100u32);
    let requests = one_at_a_time(&[isl, isl, isl], osl);
    let res = simulate(
        &aggregated(&profile, 1, 120.0),
        &profile,
        &requests,
        &mut StaticPolicy::new(0, 1),
        None,
    );
    assert_eq!((res.max_prefill, res.max_decode), (0, 1));
    let ttft = profile.prefill_model().ttft_ms(isl as f64);
    let itl = model.itl_ms(0.0, isl as f64 + osl as f64 / 2.0);
    for o in &res.outcomes {
        assert!(
            (o.ttft_ms as f64 - ttft).abs() / ttft < 0.05,
            "{o:?} vs {ttft:.1} ms"
        );
        assert!(
            (o.itl_ms as f64 - itl).abs() / itl < 0.05,
            "{o:?} vs {itl:.2} ms"
        );
    }
}

#[test]
fn an_aggregated_worker_stretches_its_decode_steps_while_it_prefills() {
    // A long answer decodes while prompts of 3,000 tokens arrive twice a second. On a
    // worker that does both, each prompt's prefill rides a decode step and lengthens it,
    // by about the share of the worker's time spent prefilling; on separate prefill and
    // decode engines the answer's steps are as they would be alone.
    let profile = Profile::embedded_default();
    let long = Request::new(1.0, 1000, 3000);
    let prompts: Vec<Request> = (0..40)
        .map(|i| Request::new(2.0 + 0.5 * i as f64, 3000, 2))
        .collect();
    let alone =
        outcomes(&aggregated(&profile, 1, 60.0), &profile, &[long], (0, 1))[0].itl_ms as f64;
    let requests: Vec<Request> = std::iter::once(long).chain(prompts).collect();
    let shared =
        outcomes(&aggregated(&profile, 1, 60.0), &profile, &requests, (0, 1))[0].itl_ms as f64;
    let separate = outcomes(
        &common::sim_config(&profile, 1, 1, 60.0),
        &profile,
        &requests,
        (1, 1),
    )[0]
    .itl_ms as f64;
    // Two prompts a second of ~60 ms each: a share of about 0.12, a stretch of about 1.14.
    let share = 2.0 * profile.prefill_model().ttft_ms(3000.0) / 1000.0;
    let stretch = shared / alone;
    assert!(
        stretch > 1.0 + share / 2.0 && stretch < 1.0 / (1.0 - share) * 1.05,
        "alone {alone:.2} ms, sharing the worker {shared:.2} ms (x{stretch:.2}), share {share:.2}"
    );
    assert!(
        (separate - alone).abs() / alone < 0.05,
        "{separate:.2} vs {alone:.2}"
    );
}

fn mean_ttft_by_half(rate: f64) -> (f64, f64) {
    let profile = Profile::embedded_default();
    let spec = SyntheticSpec {
        rate: RateShape::Constant { rps: rate },
        duration_s: 600.0,
        isl: LengthDist::Fixed(3000),
        osl: LengthDist::Fixed(50),
    };
    let requests = spec.generate(3);
    let cfg = common::sim_config(&profile, 1, 4, 600.0);
    let outcomes = outcomes(&cfg, &profile, &requests, (1, 4));
    let half = |first: bool| {
        let v: Vec<f64> = requests
            .iter()
            .zip(&outcomes)
            .filter(|(r, _)| (r.arrival_s < 300.0) == first)
            .map(|(_, o)| o.ttft_ms as f64)
            .collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    (half(true), half(false))
}

#[test]
fn past_capacity_queueing_makes_ttft_grow() {
    // One prefill engine does ~49.8k tokens/s at ISL 3000: ~16.6 requests/s.
    let (a1, a2) = mean_ttft_by_half(8.0);
    let (b1, b2) = mean_ttft_by_half(25.0);
    assert!(
        a1 < 150.0 && a2 < 150.0,
        "below capacity TTFT stays near the profile: {a1:.1}, {a2:.1}"
    );
    assert!(
        b2 > 2.0 * b1,
        "past capacity the queue grows: first half {b1:.0} ms, second half {b2:.0} ms"
    );
    assert!(
        b1 > 10.0 * a1,
        "past capacity TTFT is far above the unloaded figure: {b1:.0} vs {a1:.0}"
    );
}

#[test]
fn embedded_profile_is_the_h200_npz_profile() {
    let from_npz = load_profile(&common::h200_dir()).expect("the shipped H200 profile loads");
    let embedded = Profile::embedded_default();
    assert_eq!(from_npz.prefill, embedded.prefill);
    assert_eq!(from_npz.decode, embedded.decode);
}

#[test]
fn decode_surface_is_monotone_in_kv_usage() {
    let model = Profile::embedded_default().decode_model();
    for context in [350.0, 1000.0, 3000.0, 7000.0, 13585.0, 16000.0] {
        let mut last = 0.0;
        for i in 0..=100 {
            let itl = model.itl_ms(i as f64 / 100.0, context);
            assert!(itl >= last - 1e-9, "ITL falls at kv {i}% context {context}");
            last = itl;
        }
    }
}

/// A request of `isl` tokens whose first `isl / 512` whole blocks are the pool's from `start`.
fn with_blocks(at: f64, isl: u32, start: u32, copy: u32) -> Request {
    Request {
        prefix: PrefixBlocks {
            start,
            len: isl / 512,
            copy,
        },
        ..Request::new(at, isl, 2)
    }
}

fn caching(profile: &Profile, prefill: u32, blocks: Vec<u64>, duration_s: f64) -> SimConfig {
    with_cache(common::sim_config(profile, prefill, 1, duration_s), blocks)
}

fn with_cache(mut cfg: SimConfig, blocks: Vec<u64>) -> SimConfig {
    cfg.prefix_cache = Some(PrefixCache {
        block_tokens: 512,
        blocks: blocks.into(),
    });
    cfg
}

/// `engines` prefill engines (and a decode engine), then `engines` aggregated workers, each
/// caching prefixes of `blocks`, with the counts a static policy holds them at.
fn caching_both_ways(
    profile: &Profile,
    engines: u32,
    blocks: Vec<u64>,
    duration_s: f64,
) -> [(SimConfig, (u32, u32)); 2] {
    [
        (
            caching(profile, engines, blocks.clone(), duration_s),
            (engines, 1),
        ),
        (
            with_cache(aggregated(profile, engines, duration_s), blocks),
            (0, engines),
        ),
    ]
}

#[test]
fn a_prompt_whose_prefix_an_engine_holds_is_prefilled_from_there() {
    let profile = Profile::embedded_default();
    let model = profile.prefill_model();
    // Blocks 0-5 twice (a conversation's second turn repeats its first), then the same
    // blocks in a second copy of the trace, which shares nothing with the first.
    let blocks: Vec<u64> = (0..6).collect();
    let isl = 3172; // six whole blocks, and 100 tokens of the turn's own
    let requests = vec![
        with_blocks(1.0, isl, 0, 0),
        with_blocks(30.0, isl, 0, 0),
        with_blocks(60.0, isl, 0, 1),
    ];
    let run = |cfg: &SimConfig, (p, d): (u32, u32)| {
        let res = simulate(cfg, &profile, &requests, &mut StaticPolicy::new(p, d), None);
        let ttft: Vec<f64> = res.outcomes.iter().map(|o| o.ttft_ms as f64).collect();
        (ttft, res.prefix_tokens)
    };
    let (whole, none) = run(&common::sim_config(&profile, 1, 1, 120.0), (1, 1));
    assert_eq!(none, None);
    let alone = model.ttft_ms(isl as f64);
    // On a prefill engine, and on an aggregated worker (idle but for the prompt).
    for (cfg, counts) in caching_both_ways(&profile, 1, blocks, 120.0) {
        let (cached, tokens) = run(&cfg, counts);
        for t in whole.iter().chain([&cached[0], &cached[2]]) {
            assert!(
                (t - alone).abs() / alone < 0.01,
                "{counts:?}: {t} against {alone}"
            );
        }
        // The six blocks are found: what is left costs the rest of the prompt, after the
        // cached tokens, and the iteration's overhead.
        let rest = model.overhead_ms() + model.chunk_cost_ms(3072.0, isl as f64);
        assert!(
            (cached[1] - rest).abs() / rest < 0.01,
            "{counts:?}: {} against {rest}",
            cached[1]
        );
        assert!(cached[1] < alone / 2.0);
        assert_eq!(
            tokens,
            Some(PrefixTokens {
                prompt: 3 * u64::from(isl),
                cached: 3072,
            }),
            "{counts:?}"
        );
    }
}

#[test]
fn a_prompt_goes_to_the_engine_that_holds_its_prefix() {
    let profile = Profile::embedded_default();
    let model = profile.prefill_model();
    let isl = 2048;
    // Two conversations' first turns land one on each of two engines (the second finds the
    // first engine busy); a later turn of the second conversation finds both idle and goes
    // where its prefix is, not to the first engine by its index. Among prefill engines and
    // among aggregated workers alike.
    let requests = vec![
        with_blocks(1.0, isl, 0, 0),
        with_blocks(1.001, isl, 4, 0),
        with_blocks(30.0, isl + 100, 4, 0),
    ];
    for (cfg, (p, d)) in caching_both_ways(&profile, 2, (0..8).collect(), 90.0) {
        let later = outcomes(&cfg, &profile, &requests, (p, d))[2].ttft_ms as f64;
        let rest = model.overhead_ms() + model.chunk_cost_ms(isl as f64, (isl + 100) as f64);
        assert!(
            (later - rest).abs() / rest < 0.01,
            "{p}P+{d}D: {later} against {rest}"
        );
    }
}

#[test]
fn an_aggregated_workers_cache_holds_what_its_decoding_leaves_of_the_kv() {
    // Long answers decoding on the one worker keep all but 4,210 tokens of its KV for
    // their output. A prompt of 6 blocks, then one of 8 other blocks: the cache has room
    // for 8 blocks, so the first prompt's go, and its conversation's next turn finds none.
    // Without the second prompt (or on a prefill engine, whose whole KV caches) it finds
    // all six.
    let profile = Profile::embedded_default();
    let max_kv = profile.decode_model().max_kv_tokens() as u64;
    let (answer_isl, answer_osl) = (10u64, 16_000u64);
    let kept_free = 4210;
    let answers_kv = max_kv - kept_free;
    let full = answers_kv / (answer_isl + answer_osl);
    let mut requests: Vec<Request> = (0..full)
        .map(|i| Request::new(0.1 + 0.001 * i as f64, 10, answer_osl as u32))
        .collect();
    let last = answers_kv - full * (answer_isl + answer_osl);
    assert!(last > answer_isl, "the answers' KV is made up exactly");
    requests.push(Request::new(0.5, 10, (last - answer_isl) as u32));
    let turn = |at: f64| with_blocks(at, 3172, 0, 0);
    let other = with_blocks(5.0, 4196, 6, 0); // blocks 6..14, all its own
    let blocks: Vec<u64> = (0..14).collect();
    let found = |requests: Vec<Request>| {
        let cfg = with_cache(aggregated(&profile, 1, 40.0), blocks.clone());
        let res = simulate(
            &cfg,
            &profile,
            &requests,
            &mut StaticPolicy::new(0, 1),
            None,
        );
        let served = res.outcomes.iter().filter(|o| o.ttft_ms > 0.0).count();
        assert_eq!(
            served,
            requests.len(),
            "every prompt was admitted and prefilled"
        );
        res.prefix_tokens.expect("caching").cached
    };
    let mut with_other = requests.clone();
    with_other.extend([turn(1.0), other, turn(30.0)]);
    let mut without = requests;
    without.extend([turn(1.0), turn(30.0)]);
    assert_eq!(found(without), 3072, "six blocks kept");
    assert_eq!(found(with_other), 0, "evicted by the other prompt's eight");
}

/// A scenario's deployment routing requests as `router` says.
fn routed(mut cfg: SimConfig, router: Routing) -> SimConfig {
    cfg.router = router;
    cfg
}

/// The two kinds of pool a router test runs on, with the replicas each holds: `(p, d)`
/// prefill and decode engines, and two aggregated workers.
fn both_pools(profile: &Profile, (p, d): (u32, u32)) -> [(SimConfig, (u32, u32)); 2] {
    [
        (common::sim_config(profile, p, d, 60.0), (p, d)),
        (aggregated(profile, 2, 60.0), (0, 2)),
    ]
}

#[test]
fn a_round_robin_router_sends_prompts_in_turn_whatever_each_engine_holds() {
    let profile = Profile::embedded_default();
    // A long prompt, then two short ones a millisecond apart, on two engines (prefill
    // engines, then aggregated workers). The first short one goes to the idle engine either
    // way; the second goes where the least work is queued (beside the first short one), or
    // in turn (behind the long one).
    let requests = vec![
        Request::new(1.0, 8000, 2),
        Request::new(1.001, 100, 2),
        Request::new(1.002, 100, 2),
    ];
    for (cfg, replicas) in both_pools(&profile, (2, 1)) {
        let ttft = |router| -> Vec<f64> {
            outcomes(&routed(cfg.clone(), router), &profile, &requests, replicas)
                .iter()
                .map(|o| o.ttft_ms as f64)
                .collect()
        };
        let (least_loaded, in_turn) = (ttft(Routing::LeastLoaded), ttft(Routing::RoundRobin));
        let long = least_loaded[0];
        assert!(
            least_loaded[2] < long / 4.0,
            "aggregated {}: least loaded {least_loaded:?}",
            cfg.aggregated
        );
        assert!(
            in_turn[2] > long,
            "aggregated {}: in turn {in_turn:?}",
            cfg.aggregated
        );
        assert_eq!(in_turn[0], long);
        assert!(
            in_turn[1] < long / 4.0,
            "aggregated {}: in turn {in_turn:?}",
            cfg.aggregated
        );
    }
}

#[test]
fn a_round_robin_router_admits_to_decode_engines_in_turn() {
    let profile = Profile::embedded_default();
    // A long context, then two short ones, each prefilled alone: the second short one is
    // batched beside the other short one (the most free KV) or, in turn, beside the long
    // context, whose steps take longer.
    let requests = vec![
        Request::new(1.0, 12_000, 3000),
        Request::new(4.0, 100, 3000),
        Request::new(7.0, 100, 300),
    ];
    let itl = |router| {
        let cfg = routed(common::sim_config(&profile, 1, 2, 120.0), router);
        let o = outcomes(&cfg, &profile, &requests, (1, 2));
        (o[1].itl_ms as f64, o[2].itl_ms as f64)
    };
    let ((_, least_loaded), (first_in_turn, in_turn)) =
        (itl(Routing::LeastLoaded), itl(Routing::RoundRobin));
    let model = profile.decode_model();
    let beside_short = model.itl_ms(0.0, 250.0);
    assert!(
        least_loaded < beside_short * 1.05,
        "{least_loaded:.3} vs {beside_short:.3} ms"
    );
    // In turn, the first short one had the second engine to itself.
    assert!(
        first_in_turn < beside_short * 1.05,
        "{first_in_turn:.3} vs {beside_short:.3} ms"
    );
    assert!(
        in_turn > least_loaded * 1.05,
        "in turn {in_turn:.3} ms, least loaded {least_loaded:.3} ms"
    );
}

#[test]
fn in_turn_a_request_waits_at_a_full_engine_while_another_has_room() {
    let profile = Profile::embedded_default();
    // Engines that hold one request each. A long answer holds the first, a short one
    // passes through the second, then a third request comes. Least loaded, it goes to the
    // free second engine; in turn, to the first, where it waits for the long answer to
    // finish, as Dynamo's router without a busy threshold sends it there and the engine
    // queues it. On decode engines the wait is after the first token (its ITL); on
    // aggregated workers, before it (its TTFT).
    let requests = vec![
        Request::new(1.0, 1000, 3000),
        Request::new(2.0, 1000, 10),
        Request::new(5.0, 1000, 100),
    ];
    for (cfg, replicas) in both_pools(&profile, (1, 2)) {
        let third = |router| {
            let mut cfg = routed(cfg.clone(), router);
            cfg.max_decode_batch = Some(1);
            let o = outcomes(&cfg, &profile, &requests, replicas)[2];
            if cfg.aggregated {
                o.ttft_ms as f64
            } else {
                o.itl_ms as f64
            }
        };
        let (least_loaded, in_turn) = (third(Routing::LeastLoaded), third(Routing::RoundRobin));
        // The long answer has some 2,000 steps, nine seconds, left to make when the third
        // request comes: spread over the third's 99 steps, 90 ms more each.
        assert!(
            in_turn > 10.0 * least_loaded,
            "aggregated {}: in turn {in_turn:.1} ms, least loaded {least_loaded:.1} ms",
            cfg.aggregated
        );
    }
}

#[test]
fn a_request_waiting_at_an_engine_that_drains_goes_back_to_the_router() {
    let profile = Profile::embedded_default();
    // Decode engines of one request each, in turn. A long answer of short context on the
    // first engine, a shorter answer of long context on the second; the third request goes
    // to the first, in turn, and waits. At 5 s the deployment shrinks to one decode engine:
    // the first (the least KV reserved) drains, and the third request goes back to the
    // router, to wait at the second engine instead and decode when its answer is done,
    // long before the first engine's is.
    let requests = vec![
        Request::new(1.0, 10, 5000),
        Request::new(1.5, 8000, 1500),
        Request::new(2.0, 100, 100),
    ];
    let mut cfg = routed(
        common::sim_config(&profile, 1, 2, 60.0),
        Routing::RoundRobin,
    );
    cfg.max_decode_batch = Some(1);
    cfg.interval_s = 5.0;
    let mut policy = SchedulePolicy::new("shrink".into(), vec![(0.0, 1, 2), (5.0, 1, 1)]);
    let res = simulate(&cfg, &profile, &requests, &mut policy, None);
    let finish = |i: usize, arrival: f64, osl: f64| {
        let o = res.outcomes[i];
        arrival + (o.ttft_ms as f64 + o.itl_ms as f64 * (osl - 1.0)) / 1000.0
    };
    let (long, shorter, third) = (
        finish(0, 1.0, 5000.0),
        finish(1, 1.5, 1500.0),
        finish(2, 2.0, 100.0),
    );
    assert!(third.is_finite(), "the third request was served");
    assert!(
        third > shorter && third < shorter + 2.0 && third < long - 5.0,
        "the third finished at {third:.1} s; the second engine's answer at {shorter:.1} s, the first's at {long:.1} s"
    );
}

#[test]
fn a_random_router_sends_two_prompts_to_one_engine_about_half_the_time() {
    let profile = Profile::embedded_default();
    // A hundred pairs of prompts a millisecond apart, 10 s between pairs, on two engines.
    // Weighing load or in turn, the second of a pair never waits for the first; at random,
    // it lands on the same engine (and waits) about half the time.
    let requests: Vec<Request> = (0..100)
        .flat_map(|k| {
            let at = 1.0 + 10.0 * f64::from(k);
            [Request::new(at, 3000, 2), Request::new(at + 0.001, 3000, 2)]
        })
        .collect();
    let waited = |router| {
        let cfg = routed(common::sim_config(&profile, 2, 1, 1010.0), router);
        outcomes(&cfg, &profile, &requests, (2, 1))
            .chunks(2)
            .filter(|pair| pair[1].ttft_ms > 1.5 * pair[0].ttft_ms)
            .count()
    };
    assert_eq!(waited(Routing::LeastLoaded), 0);
    assert_eq!(waited(Routing::RoundRobin), 0);
    let at_random = waited(Routing::Random);
    assert!((30..=70).contains(&at_random), "{at_random} of 100 pairs");
}

//! ITL observed as Dynamo's frontend observes it: once per token gap, not once per request.
//! The SLA counts each request's mean; a histogram of gaps reads the steps, each request's
//! first gap, and on aggregated workers the steps that prefilled a prompt alongside.

mod common;

use sla_planner::metrics::ItlObserved;
use sla_planner::planner::baselines::StaticPolicy;
use sla_planner::planner::LatencySummary;
use sla_planner::profile::Profile;
use sla_planner::sim::{simulate, Deployment, Record, SimConfig};
use sla_planner::workload::{LengthDist, RateShape, Request, SyntheticSpec};

fn constant_load(rps: f64, isl: u32, osl: u32, duration_s: f64) -> Vec<Request> {
    SyntheticSpec {
        rate: RateShape::Constant { rps },
        duration_s,
        isl: LengthDist::Fixed(isl),
        osl: LengthDist::Fixed(osl),
    }
    .generate(7)
}

/// Every interval's ITL reading after the first, under a static deployment.
fn itl_readings(mut cfg: SimConfig, requests: &[Request], how: ItlObserved) -> Vec<LatencySummary> {
    cfg.itl_observed = how;
    let (p, d) = cfg.initial;
    let profile = Profile::embedded_default();
    let res = simulate(&cfg, &profile, requests, &mut StaticPolicy::new(p, d), None);
    res.exchanges
        .iter()
        .skip(2)
        .filter_map(|(o, _)| o.itl_ms)
        .collect()
}

fn aggregated(workers: u32, duration_s: f64) -> SimConfig {
    let profile = Profile::embedded_default();
    let mut cfg = common::sim_config(&profile, 0, workers, duration_s);
    cfg.aggregated = true;
    cfg.limits.min_prefill = 0;
    cfg.limits.max_prefill = 0;
    cfg
}

/// The readings of the intervals after the first two, per request and per token gap, in
/// pairs.
fn both_readings(cfg: &SimConfig, requests: &[Request]) -> Vec<(LatencySummary, LatencySummary)> {
    let per_request = itl_readings(cfg.clone(), requests, ItlObserved::PerRequest);
    let per_token = itl_readings(cfg.clone(), requests, ItlObserved::PerToken);
    assert!(
        per_request.len() >= 8,
        "{} intervals read",
        per_request.len()
    );
    per_request.into_iter().zip(per_token).collect()
}

#[test]
fn long_outputs_token_gaps_read_about_as_the_requests_means_do() {
    let profile = Profile::embedded_default();
    let cfg = common::sim_config(&profile, 2, 2, 600.0);
    for (req, tok) in both_readings(&cfg, &constant_load(12.0, 3000, 300, 600.0)) {
        let (rm, tm) = (req.mean.unwrap(), tok.mean.unwrap());
        assert!(
            (tm - rm).abs() / rm < 0.01,
            "means: per request {rm}, per token {tm}"
        );
        // A request's mean smooths its batch; the gaps' tail is a little wider, no more.
        let ratio = tok.p99.unwrap() / req.p99.unwrap();
        assert!(
            (0.99..1.10).contains(&ratio),
            "p99s: {req:?} against {tok:?}"
        );
    }
}

#[test]
fn short_outputs_first_gaps_stand_above_the_steps() {
    // Nine gaps a request, the first from its first token to the end of the decode
    // engine's next step: a tenth of the gaps, waiting out the step in flight.
    let profile = Profile::embedded_default();
    let cfg = common::sim_config(&profile, 2, 1, 600.0);
    for (req, tok) in both_readings(&cfg, &constant_load(12.0, 3000, 10, 600.0)) {
        let (p50, p99) = (tok.p50.unwrap(), tok.p99.unwrap());
        assert!(p99 > 1.4 * p50, "per token: {tok:?}");
        assert!(p99 > 1.4 * req.p99.unwrap(), "{req:?} against {tok:?}");
    }
}

#[test]
fn an_aggregated_workers_token_gaps_tail_is_the_steps_that_prefilled_a_prompt() {
    // 2.5 prompts a second a worker, each prefilled alongside one step: about 1.5% of the
    // gaps take a 3,000-token prompt's time more.
    let profile = Profile::embedded_default();
    let prompt_ms = profile.prefill_model().ttft_ms(3000.0);
    for (req, tok) in both_readings(
        &aggregated(4, 600.0),
        &constant_load(10.0, 3000, 300, 600.0),
    ) {
        assert!(
            tok.p99.unwrap() > prompt_ms / 2.0,
            "{tok:?}, a prompt {prompt_ms} ms"
        );
        assert!(req.p99.unwrap() < 10.0, "{req:?}");
        // The other gaps are steps alone, where each request's mean carries its share.
        assert!(
            tok.p50.unwrap() < req.p50.unwrap(),
            "{req:?} against {tok:?}"
        );
    }
}

#[test]
fn every_token_after_the_first_is_one_gap_and_the_gaps_add_up_to_the_requests_time() {
    let profile = Profile::embedded_default();
    let cfg = common::sim_config(&profile, 2, 2, 300.0);
    let requests = constant_load(12.0, 3000, 40, 300.0);
    let mut sim = Deployment::new(cfg.clone(), &profile, requests.clone(), (2, 2));
    sim.record();
    sim.advance_to(400.0, None);
    let (mut gaps, mut gap_ms) = (0u64, 0.0);
    for r in sim.take_records() {
        if let Record::TokenGaps { gap_s, count } = r {
            assert!(gap_s > 0.0 && count > 0, "{r:?}");
            gaps += u64::from(count);
            gap_ms += gap_s * 1000.0 * f64::from(count);
        }
    }
    assert_eq!(gaps, requests.len() as u64 * 39);
    // Each request's ITL is its time from first token to last over its gaps.
    let res = simulate(
        &cfg,
        &profile,
        &requests,
        &mut StaticPolicy::new(2, 2),
        None,
    );
    let request_ms: f64 = res
        .outcomes
        .iter()
        .map(|o| f64::from(o.itl_ms) * 39.0)
        .sum();
    assert!(
        (gap_ms - request_ms).abs() / request_ms < 1e-5,
        "{gap_ms} against {request_ms}"
    );
}

#[test]
fn the_sla_is_counted_per_request_however_itl_is_observed_and_a_bad_name_is_an_input_error() {
    let attainment = |sets: &[&str]| {
        common::simulate_json("sin-5-45", "static:4,4", sets)["policies"][0]["slo_attainment"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(
        attainment(&[]),
        attainment(&["deployment.itl_observed=per_token"])
    );
    let err = common::simulate_input_error("deployment.itl_observed=per_gap");
    assert!(
        err.contains("deployment.itl_observed") && err.contains("per_token"),
        "{err}"
    );
}

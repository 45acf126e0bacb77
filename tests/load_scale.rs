//! `--load-scale K`: a scenario at K times its load on a deployment K times as large.

use sla_planner::planner::solver::Mode;
use sla_planner::scenario::{load, Overrides};
use sla_planner::workload::RateShape;

fn scaled(name: &str, k: Option<f64>) -> sla_planner::scenario::Scenario {
    let ov = Overrides {
        load_scale: k,
        ..Default::default()
    };
    load(name, &ov).expect("scenario loads")
}

#[test]
fn a_synthetic_load_scales_its_rates_budget_and_start() {
    let (one, three) = (scaled("sin-5-45", None), scaled("sin-5-45", Some(3.0)));
    let rate = &three.file.workload.synthetic.as_ref().unwrap().rate;
    assert_eq!(
        *rate,
        RateShape::Sinusoid {
            min_rps: 15.0,
            max_rps: 135.0,
            period_s: 600.0
        }
    );
    let ratio = three.requests.len() as f64 / one.requests.len() as f64;
    assert!((ratio - 3.0).abs() < 0.05, "requests x{ratio}");
    assert_eq!(one.sim.limits.gpu_budget * 3, three.sim.limits.gpu_budget);
    assert_eq!((one.sim.initial, three.sim.initial), ((1, 1), (3, 3)));
    assert_eq!(
        one.sim.limits.min_prefill, three.sim.limits.min_prefill,
        "minima stay"
    );
    assert!(
        three
            .notes
            .iter()
            .any(|n| n.contains("--load-scale 3") && n.contains("GPU budget 36")),
        "{:?}",
        three.notes
    );
}

#[test]
fn a_trace_scales_its_copies_closer_together() {
    let (one, three) = (
        scaled("azure-conv-x8", None),
        scaled("azure-conv-x8", Some(3.0)),
    );
    let t = &three.file.workload.trace.as_ref().unwrap().transform;
    assert_eq!((t.replicate, t.replicate_shift_s), (Some(24), Some(2.5)));
    assert_eq!(
        three.requests.len(),
        3 * one.requests.len(),
        "every copy is whole"
    );
    // The copies spread over the same minute, so each minute holds three times the load.
    let per_minute = |s: &sla_planner::scenario::Scenario| {
        let mut m = vec![0usize; 60];
        for r in &s.requests {
            m[((r.arrival_s / 60.0) as usize).min(59)] += 1;
        }
        m
    };
    for (a, b) in per_minute(&one).into_iter().zip(per_minute(&three)) {
        if a == 0 {
            assert_eq!(b, 0, "a silent minute stays silent");
            continue;
        }
        let ratio = b as f64 / a as f64;
        assert!((ratio - 3.0).abs() < 0.25, "a minute of {a} -> {b}");
    }
    assert_eq!(one.sim.limits.gpu_budget * 3, three.sim.limits.gpu_budget);
}

#[test]
fn aggregated_workers_scale_and_the_empty_prefill_pool_stays_empty() {
    let two = scaled("sin-5-45-aggregated", Some(2.0));
    assert_eq!(two.file.deployment.mode, Mode::Aggregated);
    assert_eq!(two.sim.initial, (0, 4));
    assert_eq!(two.sim.limits.gpu_budget, 32);
}

#[test]
fn a_trace_given_on_the_command_line_scales_its_own_copies() {
    let trace = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/traces/azure_llm_2023_conv.csv");
    let with = |copies: u32, k: Option<f64>| {
        let ov = Overrides {
            trace: Some(trace.clone()),
            transform: sla_planner::workload::TraceTransform {
                replicate: Some(copies),
                ..Default::default()
            },
            load_scale: k,
            ..Default::default()
        };
        load("sin-5-45", &ov).expect("scenario loads")
    };
    let (two_doubled, four) = (with(2, Some(2.0)), with(4, None));
    assert_eq!(two_doubled.requests.len(), four.requests.len());
    assert_eq!(
        two_doubled.sim.limits.gpu_budget,
        2 * four.sim.limits.gpu_budget
    );
    assert!(
        two_doubled
            .notes
            .iter()
            .any(|n| n.contains("4 copies of the trace")),
        "{:?}",
        two_doubled.notes
    );
}

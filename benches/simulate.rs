//! Benchmark: simulated requests per second.
//!
//! The reference workload is the one-hour Azure 2023 conversation trace with 8 interleaved
//! copies (about 155k requests) under one policy (static 4P+6D), read from ../shared/data.
//! Run with `cargo bench --bench simulate`; it prints the median of several runs.

use std::path::Path;
use std::time::Instant;

use sla_planner::planner::baselines::StaticPolicy;
use sla_planner::scenario::{self, Overrides};
use sla_planner::sim::simulate;

fn main() {
    let data =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/traces/azure_llm_2023_conv.csv");
    assert!(
        data.exists(),
        "the Azure trace is expected at {}",
        data.display()
    );
    let ov = Overrides {
        startup_s: Some(60.0),
        ..Default::default()
    };
    let sc = scenario::load("azure-conv-x8", &ov).expect("scenario loads");
    let runs = 5;
    let mut times = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let r = simulate(
            &sc.sim,
            &sc.profile,
            &sc.requests,
            &mut StaticPolicy::new(4, 6),
            None,
        );
        times.push(t.elapsed().as_secs_f64());
        assert_eq!(r.outcomes.len(), sc.requests.len());
    }
    times.sort_by(f64::total_cmp);
    let median = times[runs / 2];
    println!(
        "simulate azure-conv-x8 static:4,6: {} requests, median {:.3} s over {runs} runs ({:.0} simulated requests/s; min {:.3} s, max {:.3} s)",
        sc.requests.len(),
        median,
        sc.requests.len() as f64 / median,
        times[0],
        times[runs - 1]
    );
}

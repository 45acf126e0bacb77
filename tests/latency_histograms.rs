//! A deployment whose TTFT and ITL percentiles are read as a live one's are: through
//! `histogram_quantile` over the buckets Dynamo's frontend exports (TTFT bounds at 100, 220
//! and 470 ms around a 200 ms target; ITL at 6.7 and 13 ms around a 10 ms one). The
//! planner told so reads its own expectations through the same buckets; one that takes the
//! readings at their word sizes for latencies no request had.

mod common;

/// Attainment and GPU-hours of the planner on `scenario` with `sets`.
fn planner_on(scenario: &str, sets: &[&str]) -> (f64, f64) {
    let summary = common::simulate_json(scenario, "planner", sets);
    let p = &summary["policies"][0];
    (
        p["slo_attainment"].as_f64().unwrap(),
        p["gpu_hours"].as_f64().unwrap(),
    )
}

#[test]
fn a_planner_told_the_histograms_buckets_spends_about_what_exact_percentiles_cost() {
    let exact = planner_on("azure-conv-x8", &[]);
    let told = planner_on("azure-conv-x8", &["deployment.latency_percentiles=dynamo"]);
    let not_told = planner_on(
        "azure-conv-x8",
        &[
            "deployment.latency_percentiles=dynamo",
            "planner.latency_percentiles=exact",
        ],
    );
    let report = format!("exact {exact:?}, told {told:?}, not told {not_told:?}");
    eprintln!("{report}");
    // Measured 2026-12-07: 99.75% at 6.57 GPU-hours exact, 99.81% at 6.60 told, 99.96% at
    // 8.24 not told (its ITL p99s read 12.9 ms where the requests' were 7.4).
    assert!(told.0 >= 0.99, "{report}");
    assert!(told.1 <= 1.05 * exact.1, "{report}");
    assert!(not_told.1 >= 1.15 * exact.1, "{report}");
}

#[test]
fn bucket_bounds_that_do_not_rise_are_an_input_error_naming_the_field() {
    let err = common::simulate_input_error(
        "deployment.latency_percentiles={ttft_s: [0.1, 0.05], itl_s: [0.01]}",
    );
    assert!(
        err.contains("deployment.latency_percentiles.ttft_s") && err.contains("0.05 follows 0.1"),
        "{err}"
    );
    let err =
        common::simulate_input_error("planner.latency_percentiles={ttft_s: [0.1], itl_s: []}");
    assert!(
        err.contains("planner.latency_percentiles.itl_s") && err.contains("at least one bound"),
        "{err}"
    );
    let err = common::simulate_input_error("planner.latency_percentiles=dynamic");
    assert!(
        err.contains("planner.latency_percentiles") && err.contains("dynamic"),
        "{err}"
    );
}

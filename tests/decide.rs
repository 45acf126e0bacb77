//! `sla-planner decide`: JSON lines in, one decision or one error per line out.

mod common;

use common::decide;

fn obs(t: f64, requests: f64, ready: (u32, u32)) -> String {
    serde_json::json!({
        "time_s": t, "interval_s": 60, "requests": requests, "isl_mean": 3000, "osl_mean": 300,
        "ttft_ms": {"mean": 70, "p50": 65, "p90": 90, "p99": 130},
        "itl_ms": {"mean": 7, "p50": 7, "p90": 8, "p99": 9},
        "kv_utilization": {"decode": 0.05},
        "queued_prefill_tokens": 0,
        "replicas": {"prefill": {"ready": ready.0}, "decode": {"ready": ready.1}}
    })
    .to_string()
}

#[test]
fn one_decision_per_line_and_more_load_more_replicas() {
    let input = [obs(60.0, 300.0, (1, 1)), obs(120.0, 2700.0, (1, 1))].join("\n") + "\n";
    let (code, out, err) = decide(&["--scenario", "sin-5-45"], &input);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.len(), 2);
    for d in &out {
        assert!(
            d["prefill"].is_u64()
                && d["decode"].is_u64()
                && d["reasons"].is_array()
                && d["forecast"].is_object(),
            "{d}"
        );
    }
    assert!(
        out[1]["prefill"].as_u64() > out[0]["prefill"].as_u64(),
        "{out:?}"
    );
    assert!(out[1]["decode"].as_u64() >= out[0]["decode"].as_u64());
    assert!(
        out[1]["prefill"].as_u64().unwrap() + out[1]["decode"].as_u64().unwrap() <= 12,
        "within the scenario's budget"
    );
}

#[test]
fn malformed_lines_get_an_error_naming_the_field_and_the_run_goes_on() {
    let input = [
        obs(60.0, 300.0, (1, 1)),
        r#"{"time_s": 120, "interval_s": 60, "requests": "many"}"#.to_string(),
        r#"{"time_s": 180, "interval_s": 60, "ttft_ms": {"mean": 1, "p99": -3}}"#.to_string(),
        r#"{"time_s": 240, "interval_s": 60, "kv_utilization": {"decode": 3}}"#.to_string(),
        "not json".to_string(),
        obs(300.0, 600.0, (2, 2)),
        obs(300.0, 600.0, (2, 2)),
        r#"{"time_s": 360, "interval_s": 60, "requests": 10, "requests_second_half": 11}"#
            .to_string(),
        r#"{"time_s": 420, "interval_s": 60, "replicas": {"prefill": {"ready": 4294967295}, "decode": {}}}"#
            .to_string(),
        r#"{"time_s": 480, "interval_s": 60, "requests": 600, "isl_mean": 1e12}"#.to_string(),
    ]
    .join("\n");
    let (code, out, err) = decide(&["--scenario", "sin-5-45"], &input);
    assert_eq!(code, 2, "input errors exit 2 at the end");
    assert!(err.contains("8 input lines"), "{err}");
    assert_eq!(out.len(), 10);
    assert!(
        out[1]["error"].as_str().unwrap().contains("field requests"),
        "{}",
        out[1]
    );
    assert_eq!(out[1]["line"], 2);
    assert!(
        out[2]["error"].as_str().unwrap().contains("ttft_ms.p99"),
        "{}",
        out[2]
    );
    assert!(
        out[3]["error"]
            .as_str()
            .unwrap()
            .contains("kv_utilization.decode"),
        "{}",
        out[3]
    );
    assert!(out[4]["error"].is_string());
    assert!(out[5]["prefill"].is_u64(), "the run goes on: {}", out[5]);
    // The same interval twice: time must move on.
    assert!(
        out[6]["error"]
            .as_str()
            .unwrap()
            .starts_with("field time_s: must be after"),
        "{}",
        out[6]
    );
    // Part of a count cannot exceed it.
    assert!(
        out[7]["error"]
            .as_str()
            .unwrap()
            .starts_with("field requests_second_half: must be at most requests"),
        "{}",
        out[7]
    );
    // A replica count past any cluster's is a broken source, not a load to plan for.
    assert!(
        out[8]["error"]
            .as_str()
            .unwrap()
            .starts_with("field replicas.prefill.ready: must be at most 100000"),
        "{}",
        out[8]
    );
    // So is a mean prompt longer than any context window (a unit mixed up, say).
    assert_eq!(
        out[9]["error"],
        "field isl_mean: must be at most 100000000 tokens (got 1000000000000)"
    );
}

#[test]
fn a_byte_order_mark_before_the_first_line_is_read_past() {
    // As a file saved by a Windows editor starts; on a later line it is no observation.
    let input = format!(
        "\u{feff}{}\n\u{feff}{}\n",
        obs(60.0, 300.0, (1, 1)),
        obs(120.0, 300.0, (1, 1))
    );
    let (code, out, _) = decide(&["--scenario", "sin-5-45"], &input);
    assert_eq!(code, 2);
    assert!(out[0]["prefill"].is_u64(), "{}", out[0]);
    assert_eq!(out[1]["line"], 2, "{}", out[1]);
}

#[test]
fn an_array_is_neither_an_observation_nor_a_part_of_one() {
    let input = [
        "[60, 60, 600, 300, 3000, 300]".to_string(),
        r#"{"time_s": 60, "interval_s": 60, "requests": 600, "itl_ms": [7, 6, 8, 9]}"#.to_string(),
        r#"{"time_s": 60, "interval_s": 60, "replicas": {"prefill": [2, 0, 0], "decode": {}}}"#
            .to_string(),
        // A list under a field an observation lacks is read past like any such field.
        r#"{"time_s": 60, "interval_s": 60, "requests": 600, "tags": ["a"]}"#.to_string(),
    ]
    .join("\n");
    let (code, out, err) = decide(
        &["--scenario", "sin-5-45", "--ignore-unknown-fields"],
        &input,
    );
    assert_eq!(code, 2, "{err}");
    assert_eq!(
        out[0]["error"],
        "an observation is a JSON object, one a line: got an array"
    );
    assert_eq!(
        out[1]["error"],
        "field itl_ms: an object expected, got an array"
    );
    assert_eq!(
        out[2]["error"],
        "field replicas.prefill: an object expected, got an array"
    );
    assert!(out[3]["prefill"].is_u64(), "{}", out[3]);
}

#[test]
fn fields_an_observation_lacks_are_errors_unless_decide_is_told_to_read_past_them() {
    // A tool's lines may carry more than an observation: its own metadata, a p95.
    let with_extras = |t: f64, requests: f64, ready: (u32, u32)| {
        let mut o: serde_json::Value = serde_json::from_str(&obs(t, requests, ready)).unwrap();
        o["gpus"] = 8.into();
        o["ttft_ms"]["p95"] = 120.into();
        o["replicas"]["prefill"]["pending"] = 1.into();
        o.to_string()
    };
    let lines = [
        with_extras(60.0, 300.0, (1, 1)),
        with_extras(120.0, 2700.0, (1, 1)),
        with_extras(180.0, 2700.0, (2, 2)),
    ];
    let input = lines.join("\n") + "\n";

    let (code, out, err) = decide(&["--scenario", "sin-5-45"], &input);
    assert_eq!(code, 2, "{err}");
    assert_eq!(out.len(), 3);
    let first = out[0]["error"].as_str().unwrap();
    assert!(
        first.starts_with("field ")
            && ["gpus", "ttft_ms.p95", "replicas.prefill.pending"]
                .iter()
                .any(|f| first.starts_with(&format!("field {f}: ")))
            && first.contains("--ignore-unknown-fields"),
        "names the field as the docs write it, and the way past it: {first}"
    );

    let (code, read_past, err) = decide(
        &["--scenario", "sin-5-45", "--ignore-unknown-fields"],
        &input,
    );
    assert_eq!(code, 0, "{err}");
    // Decided as the same lines without the extras are.
    let plain = [
        obs(60.0, 300.0, (1, 1)),
        obs(120.0, 2700.0, (1, 1)),
        obs(180.0, 2700.0, (2, 2)),
    ]
    .join("\n")
        + "\n";
    let (_, expected, _) = decide(&["--scenario", "sin-5-45"], &plain);
    assert_eq!(read_past, expected);
    // Each field read past is named on stderr once, at its first line.
    for field in ["gpus", "ttft_ms.p95", "replicas.prefill.pending"] {
        let named = format!("line 1: field {field} is not a field of an observation");
        assert_eq!(err.matches(&named).count(), 1, "{field}: {err}");
    }
    assert_eq!(err.matches("warning:").count(), 3, "{err}");
}

#[test]
fn a_line_holds_one_observation() {
    let input = format!(
        "{} {}\n",
        obs(60.0, 300.0, (1, 1)),
        obs(120.0, 300.0, (1, 1))
    );
    let (code, out, err) = decide(&["--scenario", "sin-5-45"], &input);
    assert_eq!(code, 2, "{err}");
    let error = out[0]["error"].as_str().unwrap();
    assert!(
        error.starts_with("more on the line after the observation") && error.contains("column"),
        "{error}"
    );
}

#[test]
fn intervals_may_not_overlap_beyond_clock_jitter() {
    let line = |t: f64, interval: f64| {
        serde_json::json!({"time_s": t, "interval_s": interval, "requests": 600}).to_string()
    };
    let input = [
        line(60.0, 60.0),
        // Read 59 s after the previous line: a second of jitter passes.
        line(119.0, 60.0),
        // A 60 s window read 30 s later: half of it was the previous line's.
        line(149.0, 60.0),
        // The same, told as what it is: 30 s since the previous valid line.
        line(149.0, 30.0),
        // A gap is not an overlap.
        line(400.0, 60.0),
    ]
    .join("\n");
    let (code, out, err) = decide(&["--scenario", "sin-5-45"], &input);
    assert_eq!(code, 2, "{err}");
    assert_eq!(out.len(), 5);
    for i in [0, 1, 3, 4] {
        assert!(out[i]["prefill"].is_u64(), "line {}: {}", i + 1, out[i]);
    }
    // The gap's minutes keep their place in the forecasters' time: filled, not skipped.
    assert!(
        out[4]["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().starts_with(
                "no interval seen for 191s: its 3 forecast step(s) filled with the forecast"
            )),
        "{}",
        out[4]
    );
    assert_eq!(out[2]["line"], 3);
    assert!(
        out[2]["error"]
            .as_str()
            .unwrap()
            .starts_with("field interval_s: the interval (60 s, from 89) overlaps the previous observation's, which ended at 119"),
        "{}",
        out[2]
    );
}

#[test]
fn config_file_and_its_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("planner.yaml");
    std::fs::write(
        &good,
        "sla: { ttft_ms: 300, itl_ms: 15 }\ndeployment: { interval_s: 30, startup_s: 90, gpu_budget: 16, max_decode: 3 }\nplanner: { forecaster: kalman }\n",
    )
    .unwrap();
    let (code, out, err) = decide(
        &["--config", good.to_str().unwrap()],
        &(obs(30.0, 3000.0, (1, 1)) + "\n"),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out[0]["decode"].as_u64().unwrap() <= 3);
    // The observation says 60 s intervals: 60 + 90 s of cold start is three whole intervals.
    assert_eq!(out[0]["forecast"]["horizon_s"], 180.0);
    // The configured forecaster is the one planned with, and the reasons say so.
    assert_eq!(out[0]["forecast"]["method"], "kalman");
    assert!(
        out[0]["reasons"][0]
            .as_str()
            .is_some_and(|r| r.contains("kalman forecast")),
        "{:?}",
        out[0]["reasons"]
    );

    let bad = tmp.path().join("bad.yaml");
    std::fs::write(&bad, "sla: { ttft_ms: 300, itl_ms: 15 }\ndeployment: { interval_s: 30, startup_s: 90, gpu_budget: 6 }\nplanner: { headroom_quantile: 2 }\n").unwrap();
    let (code, _, err) = decide(&["--config", bad.to_str().unwrap()], "");
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!("config {}: ", bad.display()))
            && err.contains("planner.headroom_quantile"),
        "{err}"
    );
    // The field is named once, then what is wrong with it.
    assert!(
        err.contains("planner.headroom_quantile: must be in (0, 1) (got 2)")
            && err.matches("headroom_quantile").count() == 1,
        "{err}"
    );
}

/// `decide --config` takes `run`'s own config, as the running planner reads it: the shipped
/// ConfigMap's, at the shipped sinusoid's cold start, decides as that scenario does; its
/// errors name the file and the field, and its profile is found from the file's folder.
#[test]
fn decide_takes_runs_own_config() {
    use serde::Deserialize;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let map = std::fs::read_to_string(root.join("deploy/configmap.yaml")).unwrap();
    let map = serde_json::Value::deserialize(serde_yaml_ng::Deserializer::from_str(&map)).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let run_yaml = tmp.path().join("config.yaml");
    std::fs::write(&run_yaml, map["data"]["config.yaml"].as_str().unwrap()).unwrap();
    let run_yaml = run_yaml.to_str().unwrap();
    let input: String = [
        obs(60.0, 600.0, (1, 1)),
        obs(120.0, 1500.0, (2, 2)),
        obs(180.0, 2400.0, (4, 3)),
        obs(240.0, 1200.0, (4, 4)),
    ]
    .join("\n")
        + "\n";
    let (code, as_run, err) = decide(&["--config", run_yaml, "--set", "startup_s=60"], &input);
    assert_eq!(code, 0, "{err}");
    let (code, as_scenario, err) = decide(&["--scenario", "sin-5-45"], &input);
    assert_eq!(code, 0, "{err}");
    assert_eq!(as_run, as_scenario);
    // Its own cold start (180 s) plans further ahead.
    let (code, own, err) = decide(&["--config", run_yaml], &input);
    assert_eq!(code, 0, "{err}");
    assert_eq!(own[0]["forecast"]["horizon_s"], 240.0, "{}", own[0]);

    let (code, _, err) = decide(
        &["--config", run_yaml, "--set", "planner.headroom_quantile=2"],
        "",
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!("config {run_yaml}: "))
            && err.contains("planner.headroom_quantile: must be in (0, 1) (got 2)"),
        "{err}"
    );
    let (code, _, err) = decide(
        &["--config", run_yaml, "--set", "profile=profiles/none.json"],
        "",
    );
    assert_eq!(code, 2, "{err}");
    let missing = tmp.path().join("profiles/none.json");
    assert!(err.contains(&missing.display().to_string()), "{err}");
}

#[test]
fn a_latency_summary_may_hold_some_of_its_fields() {
    // A source that reports the mean and the p99 only: the planner learns from what is
    // there. Prompts observed four times slower than the profile must show in the
    // correction, as they do with all four fields.
    let line = |t: f64, ttft: serde_json::Value| {
        serde_json::json!({
            "time_s": t, "interval_s": 60, "requests": 600, "isl_mean": 3000, "osl_mean": 300,
            "ttft_ms": ttft,
            "replicas": {"prefill": {"ready": 4}, "decode": {"ready": 4}}
        })
        .to_string()
    };
    let run = |ttft: serde_json::Value| {
        let input: Vec<String> = (1..=6)
            .map(|i| line(60.0 * i as f64, ttft.clone()))
            .collect();
        let (code, out, err) = decide(&["--scenario", "sin-5-45"], &(input.join("\n") + "\n"));
        assert_eq!(code, 0, "{err}");
        assert_eq!(out.len(), 6);
        out[5]["corrections"]["prefill"].as_f64().unwrap()
    };
    let partial = run(serde_json::json!({"mean": 260, "p99": 400}));
    let full = run(serde_json::json!({"mean": 260, "p50": 255, "p90": 330, "p99": 400}));
    assert!(
        partial > 2.0,
        "the mean alone teaches the speed: x{partial}"
    );
    assert_eq!(
        partial, full,
        "p50 and p90 are not what the planner learns from"
    );
    let none = run(serde_json::json!({}));
    assert_eq!(none, 1.0, "an empty summary teaches nothing");
}

/// A load longer than anything the profile measured is planned from the profile's edge, and
/// the decision says so; a load within it says nothing of the kind.
#[test]
fn a_load_beyond_the_profile_is_named_in_the_reasons() {
    let line = |isl: u32| {
        serde_json::json!({
            "time_s": 60, "interval_s": 60, "requests": 120, "isl_mean": isl, "osl_mean": 300,
        })
        .to_string()
            + "\n"
    };
    let beyond = |isl: u32| {
        let (code, out, err) = decide(&["--scenario", "sin-5-45"], &line(isl));
        assert_eq!(code, 0, "{err}");
        out[0]["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_string())
            .filter(|r| r.contains("beyond the profile"))
            .collect::<Vec<String>>()
    };
    assert!(beyond(3000).is_empty(), "{:?}", beyond(3000));
    let long = beyond(20_000);
    assert_eq!(long.len(), 2, "{long:?}");
    assert!(
        long[0].starts_with("ISL 20000 is beyond the profile's longest prompt (16372 tokens)"),
        "{long:?}"
    );
    assert!(
        long[1].starts_with("decode context 20150 tokens is beyond the profile's longest"),
        "{long:?}"
    );
}

#[test]
fn a_field_set_on_the_command_line_is_the_configs_own() {
    // The forecaster and a limit of a config file, and of a shipped scenario, set without
    // a copy.
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("planner.yaml");
    std::fs::write(
        &config,
        "sla: { ttft_ms: 200, itl_ms: 10 }\ndeployment: { interval_s: 60, startup_s: 60, gpu_budget: 12 }\n",
    )
    .unwrap();
    // Three intervals: a line needs three values, and before them the forecast is the
    // last value's (the decision names the method that made it).
    let input: String = [60.0, 120.0, 180.0]
        .iter()
        .map(|&t| obs(t, 3000.0, (1, 1)) + "\n")
        .collect();
    for source in [
        vec!["--scenario", "sin-5-45"],
        vec!["--config", config.to_str().unwrap()],
    ] {
        let mut args = source.clone();
        args.extend([
            "--set",
            "planner.forecaster=linear",
            "--set",
            "deployment.max_decode=2",
        ]);
        let (code, out, err) = decide(&args, &input);
        assert_eq!(code, 0, "{err}");
        assert_eq!(out[0]["forecast"]["method"], "constant", "{args:?}");
        assert_eq!(out[2]["forecast"]["method"], "linear", "{args:?}");
        assert!(out.iter().all(|d| d["decode"] == 2), "{args:?}: {out:?}");
    }
    let (code, _, err) = decide(
        &[
            "--scenario",
            "sin-5-45",
            "--set",
            "planner.headroom_quantile=2",
        ],
        "",
    );
    assert_eq!(code, 2);
    assert!(err.contains("planner.headroom_quantile"), "{err}");
}

#[test]
fn aggregated_workers_are_sized_for_the_router_named() {
    // Prompts of 7,000 tokens, answers of 50, 4 req/s. Sent to the least loaded worker
    // (Dynamo's KV router), a prompt rides a short answer's steps only when no worker is
    // idle, and sent in turn only a whole turn after the answer's own: fewer workers meet
    // the ITL target than when sent at random, and the reason says what was assumed.
    let line = |t: f64| {
        serde_json::json!({
            "time_s": t, "interval_s": 60, "requests": 240, "isl_mean": 7000, "osl_mean": 50,
            "replicas": {"prefill": {}, "decode": {"ready": 4}}
        })
        .to_string()
            + "\n"
    };
    let input = line(60.0) + &line(120.0);
    let workers = |router: &str| {
        let set = format!("planner.router={router}");
        let args = [
            "--scenario",
            "sin-5-45-aggregated",
            "--set",
            "sla.ttft_ms=1000",
            "--set",
            &set,
        ];
        let (code, out, err) = decide(&args, &input);
        assert_eq!(code, 0, "{err}");
        let last = &out[1];
        let reasons = last["reasons"].to_string();
        (last["decode"].as_u64().unwrap(), reasons)
    };
    let (at_random, said) = workers("random");
    assert!(said.contains("router random"), "{said}");
    let (in_turn, said) = workers("round-robin");
    assert!(!said.contains("router"), "{said}");
    let (least_loaded, said) = workers("kv");
    assert!(said.contains("router kv"), "{said}");
    assert!(
        least_loaded < at_random,
        "{least_loaded} against {at_random}"
    );
    assert!(in_turn < at_random, "{in_turn} against {at_random}");
    let (code, _, err) = decide(
        &[
            "--scenario",
            "sin-5-45-aggregated",
            "--set",
            "planner.router=fastest",
        ],
        "",
    );
    assert_eq!(code, 2);
    assert!(err.contains("planner.router"), "{err}");
}

#[test]
fn only_aggregated_workers_may_leave_the_prefill_counts_out() {
    // Aggregated workers are reported under `decode`; a line may leave `prefill` out and is
    // decided as with `prefill: {}`. A disaggregated deployment's prefill counts left out
    // would read as no prefill engines, so that line is an error naming the field.
    let line = |t: f64, with_prefill: bool| {
        let mut v = serde_json::json!({
            "time_s": t, "interval_s": 60, "requests": 600, "isl_mean": 3000, "osl_mean": 300,
            "itl_ms": {"mean": 7}, "ttft_ms": {"mean": 90},
            "replicas": {"decode": {"ready": 3}}
        });
        if with_prefill {
            v["replicas"]["prefill"] = serde_json::json!({});
        }
        v.to_string() + "\n"
    };
    let run = |scenario: &str, with_prefill: bool| {
        let input = line(60.0, with_prefill) + &line(120.0, with_prefill);
        decide(&["--scenario", scenario], &input)
    };
    let (code, left_out, err) = run("sin-5-45-aggregated", false);
    assert_eq!(code, 0, "{err}");
    let (_, given, _) = run("sin-5-45-aggregated", true);
    assert_eq!(left_out, given);
    assert!(left_out[1]["decode"].as_u64().unwrap() > 0, "{left_out:?}");

    let (code, out, err) = run("sin-5-45", false);
    assert_eq!(code, 2, "{err}");
    assert_eq!(out.len(), 2, "one answer a line");
    for answer in &out {
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(
            error.starts_with("field replicas.prefill: missing"),
            "{answer}"
        );
    }
    let (code, out, err) = run("sin-5-45", true);
    assert_eq!(code, 0, "{err}");
    assert!(out[1]["prefill"].as_u64().unwrap() > 0, "{out:?}");
}

/// The observations a dry run showed its planner, fed to `decide` with the same scenario
/// and settings, are answered with the decisions the planner made in the run: `decide` is
/// the same core, and the files `simulate --out` writes are lines it reads and prints.
#[test]
fn decide_answers_a_dry_runs_observations_with_the_dry_runs_decisions() {
    let variant = "planner:headroom_quantile=0.95";
    // Aggregated workers at a 180 s cold start, percentiles withheld and a metrics outage
    // (what the planner is shown differs from what happened); a real trace's first 20
    // minutes with the prefix caches its prompts name.
    let runs: [(&[&str], &[&str]); 2] = [
        (
            &[
                "--scenario",
                "sin-5-45-aggregated",
                "--startup-s",
                "180",
                "--set",
                "deployment.withhold=[percentiles]",
                "--set",
                "deployment.signal_outages=[{from_s: 600, to_s: 800}]",
                "--policy",
                "planner",
                "--policy",
                variant,
            ],
            &[
                "--scenario",
                "sin-5-45-aggregated",
                "--set",
                "deployment.startup_s=180",
            ],
        ),
        (
            &[
                "--scenario",
                "mooncake-conv-x4",
                "--set",
                "workload.trace.transform.window={start_s: 0, end_s: 1200}",
                "--set",
                "deployment.prefix_cache={}",
                "--policy",
                "planner",
            ],
            &["--scenario", "mooncake-conv-x4"],
        ),
    ];
    for (simulate, told) in runs {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().to_str().unwrap();
        let mut args = vec!["simulate"];
        args.extend(simulate);
        args.extend(["--out", out]);
        common::run_stdout(&args);
        let policies: &[(&str, &[&str])] = if simulate.contains(&variant) {
            &[
                ("planner", &[]),
                (
                    "planner_headroom_quantile_0.95",
                    &["--set", "planner.headroom_quantile=0.95"],
                ),
            ]
        } else {
            &[("planner", &[])]
        };
        for (stem, sets) in policies {
            let read = |name: &str| {
                std::fs::read_to_string(dir.path().join(format!("{name}_{stem}.jsonl"))).unwrap()
            };
            let (observations, decided) = (read("observations"), read("decisions"));
            let mut args = told.to_vec();
            args.extend(*sets);
            let (code, answers, err) = decide(&args, &observations);
            assert_eq!(code, 0, "{simulate:?}, {stem}: {err}");
            let decided: Vec<serde_json::Value> = decided
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            assert!(decided.len() > 15, "{simulate:?}: {} lines", decided.len());
            assert_eq!(answers.len(), decided.len(), "{simulate:?}, {stem}");
            for (k, (answer, made)) in answers.iter().zip(&decided).enumerate() {
                assert_eq!(answer, made, "{simulate:?}, {stem}: line {}", k + 1);
            }
        }
    }
}

/// A reader that goes away (`decide ... | head -1`) ends `decide` quietly: no error about
/// the pipe, and the exit code still says whether the lines read were valid.
#[test]
fn a_reader_that_goes_away_ends_decide_quietly() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    for (first, code) in [(obs(60.0, 300.0, (1, 1)), 0), ("not json".to_string(), 2)] {
        let mut child = Command::new(common::bin())
            .args(["decide", "--scenario", "sin-5-45"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "{first}").unwrap();
        let mut answers = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        answers.read_line(&mut line).unwrap();
        drop(answers);
        // Lines after the reader left: decide stops at the first answer it cannot write
        // (and the pipe to it may close under these writes).
        for k in 2..200 {
            if writeln!(stdin, "{}", obs(60.0 * f64::from(k), 300.0, (1, 1))).is_err() {
                break;
            }
        }
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{first}: {stderr}");
        assert!(!stderr.contains("Broken pipe"), "{stderr}");
    }
}

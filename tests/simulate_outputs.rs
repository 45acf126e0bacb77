//! `sla-planner simulate ... --out DIR` writes the summary, timelines and report, and the
//! same inputs give the same summary.

mod common;

use std::process::Command;

use sla_planner::sim::Routing;

fn simulate_into(dir: &std::path::Path) -> serde_json::Value {
    let out = Command::new(common::bin())
        .args([
            "simulate",
            "--scenario",
            "sin-5-45",
            "--policy",
            "static:2,2",
            "--policy",
            "dynamo",
            "--policy",
            "oracle",
            "--out",
        ])
        .arg(dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("| static:2,2 ") && stdout.contains("| oracle "),
        "the table is printed: {stdout}"
    );
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn writes_summary_timelines_and_report_deterministically() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let mut sa = simulate_into(a.path());
    let mut sb = simulate_into(b.path());

    let policies = sa["policies"].as_array().unwrap();
    let names: Vec<&str> = policies
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["static:2,2", "dynamo", "oracle"]);
    for p in policies {
        for key in [
            "requests",
            "completed",
            "rejected",
            "slo_attainment",
            "ttft_attainment",
            "itl_attainment",
            "gpu_hours",
            "goodput_per_gpu_hour",
            "max_prefill",
            "max_decode",
            "misses_in_warmup",
            "misses_after_warmup",
            "slo_attainment_after_warmup",
            "gpu_hours_after_warmup",
        ] {
            assert!(p[key].is_number(), "{key} in {p}");
        }
        for key in ["ttft_ms", "itl_ms"] {
            for q in ["p50", "p90", "p99"] {
                assert!(p[key][q].is_number(), "{key}.{q}");
            }
        }
        let att = p["slo_attainment"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&att));
        // The warm-up split accounts for every miss (requests finishing after the last
        // interval aside).
        let missed = p["completed"].as_f64().unwrap() * (1.0 - att);
        let split =
            p["misses_in_warmup"].as_f64().unwrap() + p["misses_after_warmup"].as_f64().unwrap();
        assert!(
            (missed - split).abs() <= 0.01 * missed + 5.0,
            "{missed} misses, {split} split: {p}"
        );
    }
    // Static 2P+2D holds 4 GPUs for the whole 1800 s.
    assert!((policies[0]["gpu_hours"].as_f64().unwrap() - 2.0).abs() < 0.01);
    // The oracle meets the SLA for nearly everyone; 2P+2D cannot carry the 45 req/s peak.
    assert!(policies[2]["slo_attainment"].as_f64().unwrap() > 0.99);
    assert!(policies[0]["slo_attainment"].as_f64().unwrap() < 0.9);
    assert_eq!(sa["sla"]["ttft_ms"], 200.0);
    assert_eq!(sa["scenario"]["name"], "sin-5-45");
    assert!(sa["wall_time_s"].is_number());

    sa.as_object_mut().unwrap().remove("wall_time_s");
    sb.as_object_mut().unwrap().remove("wall_time_s");
    assert_eq!(sa, sb, "same seed, same inputs, same summary");

    for stem in ["static_2_2", "dynamo", "oracle"] {
        let csv = std::fs::read_to_string(a.path().join(format!("timeline_{stem}.csv"))).unwrap();
        let mut lines = csv.lines();
        let header = lines.next().unwrap();
        assert!(header.starts_with("time_s,arrivals,isl_mean,osl_mean,prefill_ready"));
        assert_eq!(lines.count(), 30, "one row per 60 s interval of 1800 s");
        let same = std::fs::read_to_string(b.path().join(format!("timeline_{stem}.csv"))).unwrap();
        assert_eq!(csv, same);
    }
    let html = std::fs::read_to_string(a.path().join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("id=\"comparison\""));
    assert_eq!(
        html.matches("data-series=\"oracle\"").count(),
        5,
        "oracle in each per-policy chart"
    );
    assert!(
        !html.contains("<script src") && !html.contains("href=\"http") && !html.contains("@import"),
        "self-contained"
    );
}

/// `static:best` stays within the GPU budget: when no deployment within it reaches 99%, it is
/// the split of the whole budget that comes closest, and says so, rather than a deployment
/// the budget would cut down under a name it does not run.
#[test]
fn the_best_static_deployment_keeps_within_the_budget() {
    use sla_planner::profile::Profile;
    use sla_planner::sim::oracle::best_static;
    let profile = Profile::embedded_default();
    // 20 req/s of 3000-token prompts for five minutes: a few engines of each role.
    let requests = common::steady_requests(6000, 20.0, 3000, 300);
    let mut cfg = common::sim_config(&profile, 1, 1, 300.0);
    let ample = best_static(&cfg, &profile, &requests, 0.99);
    assert!(ample.meets_target, "{ample:?}");
    let need = cfg.limits.gpus(ample.prefill, ample.decode);
    assert!(need >= 3, "a load that needs several engines: {ample:?}");

    cfg.limits.gpu_budget = need - 1;
    let tight = best_static(&cfg, &profile, &requests, 0.99);
    assert!(!tight.meets_target, "{tight:?}");
    assert_eq!(
        cfg.limits.gpus(tight.prefill, tight.decode),
        need - 1,
        "the whole budget, split: {tight:?}"
    );

    let summary = common::run_json(&[
        "simulate",
        "--scenario",
        "sin-5-45",
        "--gpu-budget",
        "6",
        "--policy",
        "static:best",
        "--json",
    ]);
    let p = &summary["policies"][0];
    let name = p["name"].as_str().unwrap();
    assert!(name.ends_with("(budget-bound)"), "{name}");
    let (np, nd) = name
        .trim_start_matches("static:best=")
        .split_once(' ')
        .unwrap()
        .0
        .split_once(',')
        .unwrap();
    assert_eq!(p["max_prefill"].as_u64().unwrap().to_string(), np, "{p}");
    assert_eq!(p["max_decode"].as_u64().unwrap().to_string(), nd, "{p}");
}

/// Five minutes of a light load (2 req/s, ISL 1000, OSL 50) on a deployment the scenario
/// starts at `initial`, under a schedule of `rows`, with a cold start of `startup_s`.
fn run_schedule(
    initial: (u32, u32),
    startup_s: f64,
    rows: Vec<(f64, u32, u32)>,
) -> (sla_planner::sim::SimConfig, sla_planner::sim::SimResult) {
    use sla_planner::planner::baselines::SchedulePolicy;
    use sla_planner::profile::Profile;
    let profile = Profile::embedded_default();
    let requests = common::steady_requests(600, 2.0, 1000, 50);
    let mut cfg = common::sim_config(&profile, initial.0, initial.1, 300.0);
    cfg.startup_s = startup_s;
    let mut policy = SchedulePolicy::new("schedule".into(), rows);
    let result = sla_planner::sim::simulate(&cfg, &profile, &requests, &mut policy, None);
    (cfg, result)
}

#[test]
fn gpus_are_billed_until_the_last_request_is_done_not_until_late_replicas_start() {
    // 1P+1D; at two minutes the schedule asks for 3P+3D, whose cold start (a day) outlasts
    // the run.
    let (cfg, result) = run_schedule((1, 1), 86_400.0, vec![(0.0, 1, 1), (120.0, 3, 3)]);
    assert_eq!(
        result.outcomes.iter().filter(|o| o.meets(&cfg.sla)).count(),
        600
    );
    // Two GPUs for the whole run, four more from 120 s to its end (300 s and the last
    // request's few seconds), none of them for the day the four take to start.
    let run = 2.0 * 300.0 + 4.0 * 180.0;
    assert!(
        result.gpu_seconds >= run && result.gpu_seconds <= run + 6.0 * 10.0,
        "{} GPU-seconds",
        result.gpu_seconds
    );
}

#[test]
fn a_schedule_starts_as_its_first_row_and_orders_a_second_row_at_time_zero() {
    // The scenario says 2P+2D; the schedule starts at 1P+1D and at once asks for 3P+3D,
    // which a 120 s cold start makes ready at 120 s, not at 0.
    let (_, result) = run_schedule((2, 2), 120.0, vec![(0.0, 1, 1), (0.0, 3, 3)]);
    let replicas = |k: usize| result.timeline[k].observation.replicas.unwrap();
    // The timeline's rows are at 60 s, 120 s, ...
    let at_60 = replicas(0);
    assert_eq!(
        (at_60.prefill.ready, at_60.prefill.starting),
        (1, 2),
        "{at_60:?}"
    );
    assert_eq!(
        (at_60.decode.ready, at_60.decode.starting),
        (1, 2),
        "{at_60:?}"
    );
    let at_120 = replicas(1);
    assert_eq!(
        (at_120.prefill.ready, at_120.decode.ready),
        (3, 3),
        "{at_120:?}"
    );
}

#[test]
fn a_replica_waits_for_the_gpus_a_draining_one_still_holds() {
    // Four GPUs, 1P+3D busy with long outputs (4,000 tokens: about half a minute each). At
    // 60 s the schedule moves a GPU from decode to prefill: the decode engine drains its
    // requests for some 25 s, and the new prefill engine, pending until then, begins its
    // 50 s cold start only when that GPU is free. The deployment never holds more than four.
    use sla_planner::planner::baselines::SchedulePolicy;
    use sla_planner::profile::Profile;
    let profile = Profile::embedded_default();
    let requests = common::steady_requests(600, 2.0, 1000, 4000);
    let mut cfg = common::sim_config(&profile, 1, 3, 300.0);
    cfg.limits.gpu_budget = 4;
    cfg.startup_s = 50.0;
    let mut policy = SchedulePolicy::new("schedule".into(), vec![(0.0, 1, 3), (60.0, 2, 2)]);
    let result = sla_planner::sim::simulate(&cfg, &profile, &requests, &mut policy, None);
    for row in &result.timeline {
        assert!(
            row.gpus <= 4,
            "{} GPUs at {} s",
            row.gpus,
            row.observation.time_s
        );
    }
    assert!(
        result.gpu_seconds <= 4.0 * result.end_s + 1e-6,
        "{} GPU-seconds over {} s",
        result.gpu_seconds,
        result.end_s
    );
    // At 120 s the prefill engine is still in its cold start (ready at 110 s had it begun
    // at 60 s, while the decode engine still held the GPU).
    let at_120 = result.timeline[1].observation.replicas.unwrap();
    assert_eq!(
        (at_120.prefill.ready, at_120.prefill.starting),
        (1, 1),
        "{at_120:?}"
    );
    let at_180 = result.timeline[2].observation.replicas.unwrap();
    assert_eq!(at_180.prefill.ready, 2, "{at_180:?}");
}

#[test]
fn an_aggregated_deployment_runs_workers_and_no_prefill_pool() {
    // Every policy sizes the workers (the threshold rule on their queue and KV too); none
    // ever holds a prefill replica. The oracle and the
    // cheapest static deployment meet the SLA on workers alone, and the planner keeps
    // within it after its first ramp.
    let summary = common::run_json(&[
        "simulate",
        "--scenario",
        "sin-5-45-aggregated",
        "--policy",
        "planner",
        "--policy",
        "static:best",
        "--policy",
        "oracle",
        "--policy",
        "threshold",
        "--json",
    ]);
    let policies = summary["policies"].as_array().unwrap();
    assert_eq!(policies.len(), 4);
    for p in policies {
        assert_eq!(p["max_prefill"], 0, "{p}");
        assert!(p["max_decode"].as_u64().unwrap() >= 2, "{p}");
        assert_eq!(p["completed"], p["requests"], "{p}");
    }
    let attainment = |i: usize, key: &str| policies[i][key].as_f64().unwrap();
    assert!(attainment(1, "slo_attainment") >= 0.99, "{}", policies[1]);
    assert!(attainment(2, "slo_attainment") >= 0.99, "{}", policies[2]);
    assert!(
        attainment(0, "slo_attainment_after_warmup") >= 0.99,
        "{}",
        policies[0]
    );

    // Pool-sizing baselines cannot steer workers: asked for, they are refused; `compare`,
    // which runs one list over every scenario, leaves them out and says so.
    let out = std::process::Command::new(common::bin())
        .args([
            "simulate",
            "--scenario",
            "sin-5-45-aggregated",
            "--policy",
            "dynamo",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("aggregated"));
}

/// An interval no count can bring to 99% (one prompt in it too long for the TTFT target on
/// any engine, among fewer than a hundred) costs the oracle what the same interval without
/// that prompt costs it, not its whole budget: more engines serve no more requests there,
/// and a bound that paid for them would flatter the policies measured against it.
#[test]
fn the_oracle_pays_nothing_extra_for_an_interval_no_count_can_bring_to_target() {
    use sla_planner::profile::Profile;
    use sla_planner::sim::oracle::need_for_interval;
    let profile = Profile::embedded_default();
    let cfg = common::sim_config(&profile, 1, 1, 120.0);
    let prefill = profile.prefill_model();
    let too_long = (1..=64)
        .map(|k| f64::from(k) * 1000.0)
        .find(|&isl| {
            isl <= profile.max_context_tokens && prefill.ttft_ms(isl) > 1.5 * cfg.sla.ttft_ms
        })
        .expect("the profile has prompts half as slow again as the TTFT target");
    // Two minutes of 1 req/s; in the second minute one of the 60 prompts is too long.
    let steady = common::steady_requests(120, 1.0, 1000, 100);
    let mut with_long = steady.clone();
    with_long[90].isl = too_long as u32;
    let plain = need_for_interval(&cfg, &profile, &steady, 1, 0.99);
    let out_of_reach = need_for_interval(&cfg, &profile, &with_long, 1, 0.99);
    assert_eq!(
        plain,
        (1, 1),
        "1 req/s of short prompts needs one engine of each"
    );
    assert_eq!(
        out_of_reach,
        plain,
        "the too-long prompt misses at any count: {too_long} tokens take {:.0} ms alone",
        prefill.ttft_ms(too_long)
    );
}

/// An interval shorter than a request's life: the oracle sizes it for the batches the
/// requests in flight with its own make, before and after it, as it sizes a minute.
#[test]
fn the_oracle_sizes_a_short_interval_for_the_requests_in_flight_with_its_own() {
    use sla_planner::profile::Profile;
    use sla_planner::sim::oracle::need_for_interval;
    let profile = Profile::embedded_default();
    for rate in [30.0, 60.0] {
        // Three minutes of requests of 300 output tokens: some 3 s in flight each, and a
        // decode batch a few engines deep.
        let steady = common::steady_requests((180.0 * rate) as usize, rate, 1000, 300);
        let mut cfg = common::sim_config(&profile, 1, 1, 180.0);
        let minute = need_for_interval(&cfg, &profile, &steady, 1, 0.99);
        assert!(minute.1 >= 3, "{rate} req/s: {minute:?}");
        cfg.interval_s = 1.0;
        for k in [70, 90, 110] {
            let second = need_for_interval(&cfg, &profile, &steady, k, 0.99);
            assert_eq!(second, minute, "{rate} req/s, second {k}");
        }
    }
}

/// Outcomes of `requests` on a static deployment of `prefill` and `decode` engines that no
/// budget or limit cuts down.
fn run_static(
    requests: &[sla_planner::workload::Request],
    prefill: u32,
    decode: u32,
) -> Vec<sla_planner::sim::Outcome> {
    run_static_routed(requests, prefill, decode, Routing::LeastLoaded)
}

/// `run_static` behind `router`.
fn run_static_routed(
    requests: &[sla_planner::workload::Request],
    prefill: u32,
    decode: u32,
    router: Routing,
) -> Vec<sla_planner::sim::Outcome> {
    use sla_planner::planner::baselines::StaticPolicy;
    use sla_planner::profile::Profile;
    let profile = Profile::embedded_default();
    let mut cfg = common::sim_config(&profile, prefill, decode, 0.0);
    cfg.router = router;
    cfg.limits.max_prefill = prefill.max(1);
    cfg.limits.max_decode = decode.max(1);
    cfg.limits.gpu_budget = prefill + decode;
    let mut policy = StaticPolicy::new(prefill, decode);
    sla_planner::sim::simulate(&cfg, &profile, requests, &mut policy, None).outcomes
}

/// The oracle's and `static:best`'s searches rest on two things the simulator does: a
/// request's first token does not wait on the decode engines, so prefill is searched beside
/// the fewest; and engines beyond the requests in flight are never reached (the router picks
/// the lowest-numbered of the least loaded, or the next in turn from the first), so no
/// search runs more engines than requests. A router drawing at random reaches them.
#[test]
fn decode_engines_delay_no_first_token_and_engines_beyond_the_requests_serve_none() {
    // Twice the requests one decode engine's KV cache holds, arriving at 50 a second: some
    // wait for its room.
    let kv = sla_planner::profile::Profile::embedded_default()
        .decode_model()
        .max_kv_tokens();
    let burst = common::steady_requests((2.0 * kv / 3300.0) as usize, 50.0, 3000, 300);
    let one_decode = run_static(&burst, 3, 1);
    let many_decode = run_static(&burst, 3, 12);
    for (a, b) in one_decode.iter().zip(&many_decode) {
        assert_eq!(a.ttft_ms, b.ttft_ms, "{a:?} {b:?}");
    }
    assert!(
        one_decode
            .iter()
            .zip(&many_decode)
            .any(|(a, b)| a.itl_ms > 1.2 * b.itl_ms),
        "one decode engine is slower than twelve: the load is a real one"
    );
    let few = &burst[..40];
    assert_eq!(run_static(few, 40, 40), run_static(few, 200, 200));
    assert_ne!(run_static(few, 10, 10), run_static(few, 40, 40));
    let in_turn = |p, d| run_static_routed(few, p, d, Routing::RoundRobin);
    assert_eq!(in_turn(40, 40), in_turn(200, 200));
    assert_ne!(in_turn(10, 10), in_turn(40, 40));
    let at_random = |p, d| run_static_routed(few, p, d, Routing::Random);
    assert_ne!(at_random(40, 40), at_random(200, 200));
}

#[test]
fn a_field_set_on_the_command_line_runs_as_the_file_edited() {
    let text = sla_planner::scenario::EMBEDDED
        .iter()
        .find(|(n, _)| *n == "sin-5-45")
        .unwrap()
        .1;
    let edited = text
        .replace(
            "sla: { ttft_ms: 200, itl_ms: 10 }",
            "sla: { ttft_ms: 500, itl_ms: 10 }",
        )
        .replace("  interval_s: 60\n", "  interval_s: 30\n");
    assert_ne!(edited, text);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("edited.yaml");
    std::fs::write(&file, edited).unwrap();
    let planner = |args: &[&str]| {
        let mut all = vec!["simulate", "--policy", "planner", "--json"];
        all.extend_from_slice(args);
        let s = common::run_json(&all);
        let p = &s["policies"][0];
        (
            p["slo_attainment"].as_f64().unwrap(),
            p["gpu_hours"].as_f64().unwrap(),
            p["scale_changes"].as_u64().unwrap(),
        )
    };
    let set = planner(&[
        "--scenario",
        "sin-5-45",
        "--set",
        "sla.ttft_ms=500",
        "--set",
        "deployment.interval_s=30",
    ]);
    assert_eq!(set, planner(&["--scenario", file.to_str().unwrap()]));
    assert_ne!(set, planner(&["--scenario", "sin-5-45"]));
    let static_with = |sets: &[&str]| common::simulate_json("sin-5-45", "static:4,4", sets);
    // The summary says what was set.
    let s = static_with(&["sla.ttft_ms=500"]);
    assert_eq!(
        s["scenario"]["notes"][0],
        "set on the command line: sla.ttft_ms=500"
    );
    // A scalar set is typed by the field that reads it, as in the file: `name: 5` is a name.
    let s = static_with(&["workload.synthetic.duration_s=60", "name=5"]);
    assert_eq!(s["scenario"]["name"], "5", "{}", s["scenario"]);
}

#[test]
fn planner_variants_run_side_by_side_each_as_its_settings_set_on_the_scenario_would() {
    let outcome = |p: &serde_json::Value| {
        (
            p["name"].as_str().unwrap().to_string(),
            p["slo_attainment"].as_f64().unwrap(),
            p["gpu_hours"].as_f64().unwrap(),
            p["scale_changes"].as_u64().unwrap(),
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let variant = "planner:headroom_quantile=0.97; stabilizer.scale_down_window_s=300";
    let together = common::run_json(&[
        "simulate",
        "--scenario",
        "sin-5-45",
        "--policy",
        "planner",
        "--policy",
        variant,
        "--json",
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    let rows: Vec<_> = together["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(outcome)
        .collect();
    let alone = |sets: &[&str]| {
        let mut args = vec!["simulate", "--scenario", "sin-5-45", "--policy", "planner"];
        for set in sets {
            args.extend(["--set", set]);
        }
        args.push("--json");
        outcome(&common::run_json(&args)["policies"][0])
    };
    assert_eq!(rows[0], alone(&[]));
    let set = alone(&[
        "planner.headroom_quantile=0.97",
        "planner.stabilizer.scale_down_window_s=300",
    ]);
    assert_eq!(rows[1], (variant.to_string(), set.1, set.2, set.3));
    assert_ne!((rows[0].1, rows[0].2), (rows[1].1, rows[1].2), "{rows:?}");
    // The summary records each planner's settings: the variant's as changed, the rest kept.
    let settings = |i: usize| &together["policies"][i]["settings"];
    assert_eq!(settings(0)["headroom_quantile"], 0.9);
    assert_eq!(settings(1)["headroom_quantile"], 0.97);
    assert_eq!(settings(0)["stabilizer"]["scale_down_window_s"], 120.0);
    assert_eq!(settings(1)["stabilizer"]["scale_down_window_s"], 300.0);
    assert_eq!(settings(0)["prior_error"], settings(1)["prior_error"]);
    // Each writes its own timeline, named by its spec.
    for stem in [
        "planner",
        "planner_headroom_quantile_0.97__stabilizer.scale_down_window_s_300",
    ] {
        assert!(
            dir.path().join(format!("timeline_{stem}.csv")).is_file(),
            "{stem}"
        );
    }
}

#[test]
fn a_trace_whose_arrivals_share_their_instants_is_named_and_can_be_spread() {
    // Ten requests every 3 s, as a release that rounds its timestamps writes them.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rounded.jsonl");
    let lines: Vec<String> = (0..200)
        .map(|i| {
            format!(
                r#"{{"timestamp": {}, "input_length": 1000, "output_length": 50, "hash_ids": []}}"#,
                (i / 10) * 3000
            )
        })
        .collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let notes = |extra: &[&str]| {
        let trace = [
            "--scenario",
            "azure-conv-x8",
            "--trace",
            file.to_str().unwrap(),
        ];
        scenario_notes(&[&trace[..], extra].concat())
    };
    let as_recorded = notes(&[]);
    assert!(
        as_recorded
            .iter()
            .any(|n| n.starts_with("180 of 200 arrivals share their timestamp")),
        "{as_recorded:?}"
    );
    let spread = notes(&["--spread-s", "3"]);
    assert!(
        !spread.iter().any(|n| n.contains("share their timestamp")),
        "{spread:?}"
    );
}

/// The notes `simulate --json` gives of its scenario, run with `args` and one static policy.
fn scenario_notes(args: &[&str]) -> Vec<String> {
    let mut all = vec!["simulate", "--policy", "static:1,1", "--json"];
    all.extend_from_slice(args);
    common::run_json(&all)["scenario"]["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect()
}

/// A deployment whose engines have more GPUs than the profile was measured on is named:
/// the engines run at the profile's speed, and Dynamo's formula sizes for faster ones.
#[test]
fn engines_sized_otherwise_than_the_profile_are_named() {
    let notes = |extra: &[&str]| scenario_notes(&[&["--scenario", "sin-5-45"][..], extra].concat());
    let as_measured = notes(&[]);
    assert!(
        !as_measured.iter().any(|n| n.contains("measured on")),
        "{as_measured:?}"
    );
    let doubled = notes(&["--set", "deployment.gpus_per_decode_engine=2"]);
    assert!(
        doubled.iter().any(|n| n
            .starts_with("the profile's decode engines were measured on 1 GPU(s) each")
            && n.contains("2.00x as fast")),
        "{doubled:?}"
    );
    assert!(
        !doubled
            .iter()
            .any(|n| n.contains("prefill engines were measured")),
        "{doubled:?}"
    );
}

/// `compare` runs its scenarios side by side; the table keeps them, and each one's cold
/// starts, in the order asked for.
#[test]
fn compare_keeps_the_order_of_its_scenarios_and_cold_starts() {
    let out = std::process::Command::new(common::bin())
        .args([
            "compare",
            "--scenario",
            "step-10-30",
            "--scenario",
            "flash-crowd",
            "--startup-s",
            "180",
            "--startup-s",
            "60",
            "--policy",
            "planner",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let table = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<String> = table
        .lines()
        .filter(|l| l.contains("| planner |"))
        .map(|l| l.split('|').take(3).collect::<Vec<_>>().join("|"))
        .collect();
    assert_eq!(
        rows,
        [
            "| step-10-30 | 180 s ",
            "| step-10-30 | 60 s ",
            "| flash-crowd | 180 s ",
            "| flash-crowd | 60 s ",
        ],
        "{table}"
    );
}

/// `budget-at-start` starts where the scenario starts and orders the whole budget at time
/// 0; `compare` gives what it reaches beside the planner's attainment where that misses 99%.
#[test]
fn budget_at_start_orders_the_whole_budget_at_once_and_compare_shows_what_it_reaches() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_string_lossy().to_string();
    let summary = common::run_json(&[
        "simulate",
        "--scenario",
        "sin-5-45",
        "--startup-s",
        "180",
        "--policy",
        "budget-at-start",
        "--policy",
        "planner",
        "--out",
        &out,
        "--json",
    ]);
    let policies = summary["policies"].as_array().unwrap();
    let (bound, planner) = (&policies[0], &policies[1]);
    let name = bound["name"].as_str().unwrap();
    let (p, d) = name
        .strip_prefix("budget-at-start=")
        .and_then(|s| s.split_once(','))
        .unwrap_or_else(|| panic!("{name}"));
    let (p, d): (u64, u64) = (p.parse().unwrap(), d.parse().unwrap());
    // The scenario's budget is 12 GPUs of one engine each; it starts on 1P+1D.
    assert_eq!(p + d, 12, "{name}");
    assert_eq!(bound["max_prefill"].as_u64(), Some(p), "{bound}");
    // A minute in, it still runs the 1P+1D it started on, the rest of the budget starting.
    let timeline = std::fs::read_to_string(dir.path().join(format!(
        "timeline_{}.csv",
        name.replace([':', '=', ','], "_")
    )))
    .unwrap_or_else(|e| {
        panic!(
            "{e}: {:?}",
            std::fs::read_dir(dir.path()).unwrap().collect::<Vec<_>>()
        )
    });
    let mut rows = csv::Reader::from_reader(timeline.as_bytes());
    let headers = rows.headers().unwrap().clone();
    let first = rows.records().next().unwrap().unwrap();
    let cell = |key: &str| -> u64 {
        let i = headers.iter().position(|h| h == key).unwrap();
        first[i].parse().unwrap()
    };
    assert_eq!(
        (cell("prefill_ready"), cell("prefill_starting")),
        (1, p - 1)
    );
    assert_eq!((cell("decode_ready"), cell("decode_starting")), (1, d - 1));
    let attainment = |v: &serde_json::Value| v["slo_attainment"].as_f64().unwrap();
    assert!(attainment(bound) > attainment(planner), "{bound} {planner}");
    assert!(attainment(bound) < 0.99, "{bound}");

    let table = common::run_stdout(&[
        "compare",
        "--scenario",
        "sin-5-45",
        "--startup-s",
        "180",
        "--policy",
        "planner",
        "--policy",
        "budget-at-start",
    ]);
    let standing = table
        .lines()
        .find(|l| l.starts_with("| sin-5-45 | 180 s | ") && l.contains("**no**"))
        .unwrap_or_else(|| panic!("{table}"));
    let expected = format!("(budget at start: {:.2}%)", attainment(bound) * 100.0);
    assert!(standing.contains(&expected), "{standing}");
}

/// A test double: a static 1P+1D policy that keeps every observation it is shown.
struct RecordingPolicy(Vec<sla_planner::planner::Observation>);

impl sla_planner::planner::Policy for RecordingPolicy {
    fn name(&self) -> &str {
        "recording"
    }
    fn decide(
        &mut self,
        _now_s: f64,
        obs: &sla_planner::planner::Observation,
    ) -> sla_planner::planner::Decision {
        self.0.push(obs.clone());
        sla_planner::planner::Decision {
            prefill: 1,
            decode: 1,
            ..Default::default()
        }
    }
}

#[test]
fn in_a_signal_outage_the_policy_sees_only_the_time_and_the_replicas() {
    let profile = sla_planner::profile::Profile::embedded_default();
    let requests = common::steady_requests(600, 2.0, 1000, 50);
    let mut cfg = common::sim_config(&profile, 1, 1, 300.0);
    cfg.signal_outages = vec![(60.0, 180.0)];
    let mut policy = RecordingPolicy(Vec::new());
    let result = sla_planner::sim::simulate(&cfg, &profile, &requests, &mut policy, None);
    let seen = policy.0.split_off(1);
    assert_eq!(seen.len(), result.timeline.len());
    for (shown, row) in seen.iter().zip(&result.timeline) {
        let whole = &row.observation;
        assert!(
            whole.requests.is_some() && whole.ttft_ms.is_some(),
            "the timeline keeps them"
        );
        if shown.time_s > 60.0 && shown.time_s <= 180.0 {
            let blank = sla_planner::planner::Observation {
                time_s: whole.time_s,
                interval_s: whole.interval_s,
                replicas: whole.replicas,
                ..Default::default()
            };
            assert_eq!(shown, &blank);
        } else {
            assert_eq!(shown, whole);
        }
    }
    assert_eq!(
        seen.iter().filter(|o| o.requests.is_none()).count(),
        2,
        "the decisions at 120 s and 180 s"
    );
}

#[test]
fn withheld_signals_are_not_shown_to_the_policy_and_the_timeline_keeps_them() {
    use sla_planner::sim::Signal;
    let profile = sla_planner::profile::Profile::embedded_default();
    let requests = common::steady_requests(600, 2.0, 1000, 50);
    let run = |withhold: Vec<Signal>| {
        let mut cfg = common::sim_config(&profile, 1, 1, 300.0);
        cfg.withhold = withhold;
        let mut policy = RecordingPolicy(Vec::new());
        let result = sla_planner::sim::simulate(&cfg, &profile, &requests, &mut policy, None);
        // The first decision, at time 0, is shown no interval.
        (policy.0.split_off(1), result)
    };
    let (full, _) = run(Vec::new());
    let (seen, result) = run(vec![
        Signal::RequestsSecondHalf,
        Signal::Percentiles,
        Signal::QueuedPrefillTokens,
    ]);
    assert_eq!(seen.len(), full.len());
    for (shown, (whole, row)) in seen.iter().zip(full.iter().zip(&result.timeline)) {
        assert_eq!(&row.observation, whole, "the timeline keeps every signal");
        let ttft = whole.ttft_ms.unwrap();
        assert!(ttft.p99.is_some() && whole.requests_second_half.is_some());
        assert!(whole.queued_prefill_tokens.is_some());
        assert_eq!(shown.requests_second_half, None);
        assert_eq!(shown.queued_prefill_tokens, None);
        for (s, w) in [(shown.ttft_ms, whole.ttft_ms), (shown.itl_ms, whole.itl_ms)] {
            let (s, w) = (s.unwrap(), w.unwrap());
            assert_eq!((s.p50, s.p90, s.p99), (None, None, None));
            assert_eq!(s.mean, w.mean, "means are kept");
        }
        // The rest as it was.
        assert_eq!(
            (
                shown.requests,
                shown.isl_mean,
                shown.kv_utilization,
                shown.replicas
            ),
            (
                whole.requests,
                whole.isl_mean,
                whole.kv_utilization,
                whole.replicas
            )
        );
    }
    let (seen, _) = run(vec![Signal::Means]);
    for (shown, whole) in seen.iter().zip(&full) {
        for (s, w) in [(shown.ttft_ms, whole.ttft_ms), (shown.itl_ms, whole.itl_ms)] {
            let (s, w) = (s.unwrap(), w.unwrap());
            assert_eq!(s.mean, None);
            assert_eq!((s.p50, s.p90, s.p99), (w.p50, w.p90, w.p99));
        }
    }
    let (seen, _) = run(vec![
        Signal::TtftMs,
        Signal::ItlMs,
        Signal::KvUtilization,
        Signal::Replicas,
    ]);
    assert!(seen.iter().all(|o| o.ttft_ms.is_none()
        && o.itl_ms.is_none()
        && o.kv_utilization.is_none()
        && o.replicas.is_none()));
    // These requests name no prefix blocks; an observation with a hit rate shows the rule.
    let mut cached = full[0].clone();
    cached.prefix_cache_hit_rate = Some(0.4);
    let without = |signal| sla_planner::sim::withholding(&cached, &[signal]);
    assert_eq!(
        without(Signal::PrefixCacheHitRate).prefix_cache_hit_rate,
        None
    );
    assert_eq!(without(Signal::Replicas).prefix_cache_hit_rate, Some(0.4));
}

#[test]
fn the_sweeps_unshipped_shapes_are_valid_scenarios_each_described() {
    use sla_planner::scenario::{load, Overrides};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/shapes");
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    let mut shapes = 0;
    let out = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let kind = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if kind != "yaml" && kind != "py" {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            readme.contains(&format!("| `{name}` |")),
            "{name} is not described in scripts/shapes/README.md"
        );
        if kind == "yaml" {
            load(path.to_str().unwrap(), &Overrides::default())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        } else {
            // A script writes a trace, replayed with the conversation trace's scenario.
            let trace = out.path().join(format!("{name}.csv"));
            let status = std::process::Command::new("python3")
                .arg(&path)
                .arg(&trace)
                .status()
                .unwrap_or_else(|e| panic!("python3 {name}: {e}"));
            assert!(status.success(), "python3 {name}: {status}");
            let overrides = Overrides {
                trace: Some(trace),
                ..Overrides::default()
            };
            let sc = load("azure-conv-x8", &overrides).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(
                sc.requests.len() > 10_000,
                "{name}: {} requests",
                sc.requests.len()
            );
        }
        shapes += 1;
    }
    let described = readme.lines().filter(|l| l.starts_with("| `")).count();
    assert_eq!(
        described, shapes,
        "scripts/shapes/README.md describes files not there"
    );
}

//! A planner told a profile that is not what its engines do (a stale profile, one measured
//! on other hardware): `planner_profile` in a scenario, `--planner-profile` on the command
//! line. The online correction has to find the difference; policies that see the whole run
//! keep the engines' own profile. Likewise a cold start told shorter than the replicas take
//! (`deployment.planner_startup_s`): the planner plans with the one its replicas show.

mod common;

use std::path::Path;
use std::process::Command;

use sla_planner::profile::{to_own_json, Profile};

/// The embedded profile with every prefill time `factor` times longer.
fn write_slowed_prefill(path: &Path, factor: f64) {
    let p = Profile::embedded_default().slowed(factor, 1.0);
    std::fs::write(path, to_own_json(&p)).unwrap();
}

const STEADY: &str = "name: steady
seed: 3
profile: default
workload:
  synthetic:
    rate: { shape: constant, rps: 15 }
    duration_s: 900
    isl: 3000
    osl: 100
sla: { ttft_ms: 400, itl_ms: 10 }
deployment: { interval_s: 60, startup_s: 60, gpu_budget: 16 }
";

fn simulate(dir: &Path, scenario: &str, extra: &[&str]) -> serde_json::Value {
    let file = dir.join("scenario.yaml");
    std::fs::write(&file, scenario).unwrap();
    let out_dir = dir.join("out");
    let mut args = vec![
        "simulate",
        "--scenario",
        file.to_str().unwrap(),
        "--policy",
        "planner",
        "--policy",
        "static:3,2",
        "--json",
        "--out",
        out_dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    common::run_json(&args)
}

/// The planner's last timeline row: its prefill multiplier (from "corrections: prefill
/// x0.34 (slowest ...") and the prefill engines it holds.
fn last_decision(dir: &Path) -> (f64, u32) {
    let mut rdr = csv::Reader::from_path(dir.join("out/timeline_planner.csv")).unwrap();
    let headers = rdr.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let last = rdr.records().last().unwrap().unwrap();
    let reasons = &last[col("reasons")];
    let at = reasons.find("corrections: prefill x").expect(reasons) + 22;
    let k = reasons[at..].split(' ').next().unwrap().parse().unwrap();
    (k, last[col("prefill_target")].parse().unwrap())
}

fn policy<'a>(summary: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    summary["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap()
}

#[test]
fn a_planner_told_a_slower_profile_learns_its_engines_are_faster() {
    let told = tempfile::tempdir().unwrap();
    let truth = tempfile::tempdir().unwrap();
    let slow = told.path().join("slow.json");
    write_slowed_prefill(&slow, 3.0);

    let mismatched = simulate(
        told.path(),
        STEADY,
        &["--planner-profile", slow.to_str().unwrap()],
    );
    let matched = simulate(truth.path(), STEADY, &[]);

    // Told prefill takes three times as long as it does, the planner learns x1/3 (a range
    // ending at 0.5 kept it at 0.5, and the planner paid for engines it did not need), and
    // by the end holds the prefill engines it holds when told the truth.
    let (k, engines) = last_decision(told.path());
    let (k_truth, engines_truth) = last_decision(truth.path());
    assert!((0.28..0.40).contains(&k), "prefill correction {k}");
    assert!(
        (0.9..1.1).contains(&k_truth),
        "prefill correction {k_truth}"
    );
    assert_eq!(engines, engines_truth);
    let notes = mismatched["scenario"]["notes"].to_string();
    assert!(
        notes.contains("are told h200_llama-3.1-8b-fp8_tp1, prefill x3, decode x1 ("),
        "{notes}"
    );
    let m = policy(&mismatched, "planner");
    assert!(m["slo_attainment"].as_f64().unwrap() >= 0.99, "{m}");

    // A static deployment runs the engines, not what the planner was told.
    assert_eq!(
        policy(&mismatched, "static:3,2")["slo_attainment"],
        policy(&matched, "static:3,2")["slo_attainment"]
    );
}

#[test]
fn a_scenario_names_the_planner_profile_relative_to_itself() {
    let dir = tempfile::tempdir().unwrap();
    write_slowed_prefill(&dir.path().join("slow.json"), 3.0);
    let scenario = STEADY.replace(
        "profile: default\n",
        "profile: default\nplanner_profile: slow.json\n",
    );
    simulate(dir.path(), &scenario, &[]);
    let (k, _) = last_decision(dir.path());
    assert!((0.28..0.40).contains(&k), "prefill correction {k}");
}

#[test]
fn a_missing_planner_profile_is_an_input_error() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = STEADY.replace(
        "profile: default\n",
        "profile: default\nplanner_profile: nowhere.json\n",
    );
    let file = dir.path().join("scenario.yaml");
    std::fs::write(&file, scenario).unwrap();
    for extra in [vec![], vec!["--planner-profile", "/nonexistent/p.json"]] {
        let out = Command::new(common::bin())
            .args(["simulate", "--scenario"])
            .arg(&file)
            .args(["--policy", "planner"])
            .args(&extra)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        let named = if extra.is_empty() {
            "nowhere.json"
        } else {
            "/nonexistent/p.json"
        };
        assert!(stderr.contains(named), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // `decide --scenario` tells its planner what `simulate` tells it.
    let out = Command::new(common::bin())
        .args(["decide", "--scenario"])
        .arg(&file)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("nowhere.json"), "{stderr}");
}

/// A sinusoid on replicas that take 180 s to start, the planner told 60 s.
const SLOW_STARTS: &str = "name: slow-starts
seed: 5
profile: default
workload:
  synthetic:
    rate: { shape: sinusoid, min_rps: 5, max_rps: 30, period_s: 600 }
    duration_s: 1500
    isl: 3000
    osl: 200
sla: { ttft_ms: 400, itl_ms: 10 }
deployment: { interval_s: 60, startup_s: 180, planner_startup_s: 60, gpu_budget: 16 }
";

#[test]
fn a_planner_told_a_short_cold_start_plans_with_the_one_its_replicas_show() {
    let told = tempfile::tempdir().unwrap();
    let truth = tempfile::tempdir().unwrap();
    let mismatched = simulate(told.path(), SLOW_STARTS, &["--policy", "oracle"]);
    let matched = simulate(
        truth.path(),
        &SLOW_STARTS.replace("planner_startup_s: 60, ", ""),
        &["--policy", "oracle"],
    );
    let notes = mismatched["scenario"]["notes"].to_string();
    assert!(
        notes.contains("the engines take 180s to start; the planner, dynamo and threshold policies are told 60s"),
        "{notes}"
    );
    // The oracle knows the engines' cold start either way.
    assert_eq!(
        policy(&mismatched, "oracle")["gpu_hours"],
        policy(&matched, "oracle")["gpu_hours"]
    );
    // Once its first replicas have started, the planner says it plans with their cold
    // start; told the truth, it has nothing to say of it.
    let reasons = |dir: &Path| -> Vec<String> {
        let mut rdr = csv::Reader::from_path(dir.join("out/timeline_planner.csv")).unwrap();
        let col = rdr
            .headers()
            .unwrap()
            .iter()
            .position(|h| h == "reasons")
            .unwrap();
        rdr.records().map(|r| r.unwrap()[col].to_string()).collect()
    };
    let planned: Vec<String> = reasons(told.path())
        .into_iter()
        .filter(|r| r.contains("cold start planned as"))
        .collect();
    assert!(planned.len() >= 10, "{planned:?}");
    assert!(!reasons(truth.path())
        .iter()
        .any(|r| r.contains("cold start planned as")),);
}

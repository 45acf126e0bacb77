//! Every kind of bad input gets exit code 2 and a message naming the file, line, array or
//! field at fault, never a panic.

mod common;

use std::fs::File;
use std::path::Path;
use std::process::Command;

use ndarray::{arr0, Array1};
use ndarray_npy::NpzWriter;
use sla_planner::profile::Profile;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str]) -> Run {
    let out = Command::new(common::bin())
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("binary runs");
    let r = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(!r.stderr.contains("panicked"), "no panic: {}", r.stderr);
    r
}

fn assert_input_error(args: &[&str], needles: &[&str]) {
    let r = run(args);
    assert_eq!(r.code, 2, "exit code 2 for {args:?}; stderr: {}", r.stderr);
    for n in needles {
        assert!(r.stderr.contains(n), "stderr names {n:?}: {}", r.stderr);
    }
}

/// `simulate` of `trace` under one static deployment, with `extra` arguments.
fn replay_args<'a>(trace: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["simulate", "--policy", "static:1,1", "--trace", trace];
    args.extend_from_slice(extra);
    args
}

/// Writes a Dynamo-layout profile directory from the embedded profile, with `edit` applied
/// to the decode arrays by name.
fn write_profile_dir(dir: &Path, edit: impl Fn(&str, &mut Vec<f64>), drop_array: Option<&str>) {
    let p = Profile::embedded_default();
    let pre = dir.join("selected_prefill_interpolation");
    let dec = dir.join("selected_decode_interpolation");
    std::fs::create_dir_all(&pre).unwrap();
    std::fs::create_dir_all(&dec).unwrap();
    let mut w = NpzWriter::new(File::create(pre.join("raw_data.npz")).unwrap());
    let isl: Array1<i64> = p.prefill.prefill_isl.iter().map(|&x| x as i64).collect();
    w.add_array("prefill_isl", &isl).unwrap();
    for (name, v) in [
        ("prefill_ttft", &p.prefill.prefill_ttft),
        ("prefill_thpt_per_gpu", &p.prefill.prefill_thpt_per_gpu),
    ] {
        let mut v = v.clone();
        edit(name, &mut v);
        if drop_array != Some(name) {
            w.add_array(name, &Array1::from(v)).unwrap();
        }
    }
    w.finish().unwrap();
    let mut w = NpzWriter::new_compressed(File::create(dec.join("raw_data.npz")).unwrap());
    for (name, v) in [
        ("x_kv_usage", &p.decode.x_kv_usage),
        ("y_context_length", &p.decode.y_context_length),
        ("z_itl", &p.decode.z_itl),
        ("z_thpt_per_gpu", &p.decode.z_thpt_per_gpu),
    ] {
        let mut v = v.clone();
        edit(name, &mut v);
        if drop_array != Some(name) {
            w.add_array(name, &Array1::from(v)).unwrap();
        }
    }
    w.add_array("max_kv_tokens", &arr0(p.decode.max_kv_tokens as i64))
        .unwrap();
    w.finish().unwrap();
}

fn sim_with_profile(dir: &Path) -> Run {
    run(&[
        "simulate",
        "--scenario",
        "sin-5-45",
        "--policy",
        "static:4,5",
        "--profile",
        dir.to_str().unwrap(),
    ])
}

#[test]
fn a_written_dynamo_profile_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    write_profile_dir(tmp.path(), |_, _| {}, None);
    let r = sim_with_profile(tmp.path());
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("static:4,5"));
}

#[test]
fn profile_directory_missing() {
    assert_input_error(
        &[
            "simulate",
            "--profile",
            "/nonexistent/profile",
            "--policy",
            "static:1,1",
        ],
        &["profile /nonexistent/profile: does not exist"],
    );
}

#[test]
fn profile_directory_without_dynamo_files() {
    let tmp = tempfile::tempdir().unwrap();
    assert_input_error(
        &[
            "simulate",
            "--policy",
            "static:1,1",
            "--profile",
            tmp.path().to_str().unwrap(),
        ],
        &["selected_prefill_interpolation/raw_data.npz"],
    );
}

#[test]
fn profile_array_missing() {
    let tmp = tempfile::tempdir().unwrap();
    write_profile_dir(tmp.path(), |_, _| {}, Some("z_itl"));
    let r = sim_with_profile(tmp.path());
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("selected_decode_interpolation/raw_data.npz")
            && r.stderr.contains("z_itl")
            && r.stderr.contains("missing"),
        "{}",
        r.stderr
    );
}

/// One edit of the profile's arrays per case, and what the error must name.
type ProfileEdit = fn(&str, &mut Vec<f64>);

#[test]
fn bad_profile_arrays_are_named() {
    let cases: [(&str, ProfileEdit, &[&str]); 4] = [
        (
            "a value that is not finite",
            |n, v| {
                if n == "prefill_ttft" {
                    v[3] = f64::NAN
                }
            },
            &["prefill_ttft", "element 3 is not finite"],
        ),
        (
            "a negative value",
            |n, v| {
                if n == "z_itl" {
                    v[0] = -1.0
                }
            },
            &["z_itl", "positive"],
        ),
        (
            "arrays of different lengths",
            |n, v| {
                if n == "z_thpt_per_gpu" {
                    v.pop();
                }
            },
            &["z_thpt_per_gpu", "40 points"],
        ),
        (
            "too few points",
            |n, v| {
                if n.starts_with("prefill") {
                    v.truncate(1)
                }
            },
            &["at least 2"],
        ),
    ];
    for (what, edit, needles) in cases {
        let tmp = tempfile::tempdir().unwrap();
        write_profile_dir(tmp.path(), edit, None);
        let r = sim_with_profile(tmp.path());
        assert_eq!(r.code, 2, "{what}: exit code 2; stderr: {}", r.stderr);
        for n in needles {
            assert!(
                r.stderr.contains(n),
                "{what}: stderr names {n:?}: {}",
                r.stderr
            );
        }
    }
}

#[test]
fn profile_file_not_npz() {
    let tmp = tempfile::tempdir().unwrap();
    write_profile_dir(tmp.path(), |_, _| {}, None);
    std::fs::write(
        tmp.path()
            .join("selected_prefill_interpolation/raw_data.npz"),
        "not a zip",
    )
    .unwrap();
    let r = sim_with_profile(tmp.path());
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("not a valid .npz"), "{}", r.stderr);
}

#[test]
fn dynamo_json_profile_form_loads_and_is_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let p = Profile::embedded_default();
    std::fs::write(
        tmp.path().join("prefill_raw_data.json"),
        serde_json::to_string(&p.prefill).unwrap(),
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("decode_raw_data.json"),
        serde_json::to_string(&p.decode).unwrap(),
    )
    .unwrap();
    let r = sim_with_profile(tmp.path());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut bad = serde_json::to_value(&p.decode).unwrap();
    bad["z_itl"][2] = serde_json::json!("fast");
    std::fs::write(tmp.path().join("decode_raw_data.json"), bad.to_string()).unwrap();
    let r = sim_with_profile(tmp.path());
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("decode_raw_data.json") && r.stderr.contains("z_itl"),
        "{}",
        r.stderr
    );
}

#[test]
fn own_profile_format_is_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("p.json");
    let shipped = include_str!("../profiles/h200_llama-3.1-8b-fp8_tp1.json");
    let extra = shipped.replacen(
        "\"max_kv_tokens\"",
        "\"max_batch\": 64, \"max_kv_tokens\"",
        1,
    );
    assert_ne!(extra, shipped, "the shipped profile names max_kv_tokens");
    let cases = [
        (
            r#"{"format": "other", "name": "x", "source": "y", "max_context_tokens": 1, "prefill": {}, "decode": {}}"#.to_string(),
            "prefill_isl",
        ),
        // A field the format does not have is named, not passed over.
        (extra, "unknown field `max_batch`"),
    ];
    for (text, named) in cases {
        std::fs::write(&f, text).unwrap();
        let path = f.to_str().unwrap();
        assert_input_error(
            &["simulate", "--policy", "static:1,1", "--profile", path],
            &["p.json", named],
        );
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn trace_malformed_line_names_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let f = write(tmp.path(), "t.jsonl", "{\"timestamp\": 0, \"input_length\": 100, \"output_length\": 10}\n{\"timestamp\": 5, \"input_length\": \"x\"}\n");
    assert_input_error(&replay_args(&f, &[]), &["t.jsonl, line 2: ", "(column "]);
    // The JSON reader's own place ("line 1", each line being read alone) is not repeated.
    let r = run(&replay_args(&f, &[]));
    assert!(!r.stderr.contains("line 1"), "{}", r.stderr);
}

#[test]
fn skip_bad_lines_reports_how_many() {
    let tmp = tempfile::tempdir().unwrap();
    let f = write(
        tmp.path(),
        "t.jsonl",
        "{\"timestamp\": 0, \"input_length\": 100, \"output_length\": 10}\nnot json\n{\"timestamp\": 1000, \"input_length\": 0, \"output_length\": 10}\n{\"timestamp\": 2000, \"input_length\": 100, \"output_length\": 10}\n",
    );
    let r = run(&replay_args(&f, &["--skip-bad-lines"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("2 malformed trace lines skipped")
            && r.stdout.contains("line 2")
            && r.stdout.contains("line 3"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains(": 2 requests"), "{}", r.stdout);
}

#[test]
fn azure_bad_timestamp_names_line() {
    let tmp = tempfile::tempdir().unwrap();
    let f = write(tmp.path(), "a.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.9799600,4808,10\nlater,3180,8\n");
    assert_input_error(&replay_args(&f, &[]), &["a.csv", "line 3", "TIMESTAMP"]);
}

#[test]
fn azure_2024_and_burstgpt_are_read() {
    let tmp = tempfile::tempdir().unwrap();
    let a = write(tmp.path(), "a24.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2024-05-10 00:00:00.009930+00:00,100,10\n2024-05-10 00:00:01+00:00,200,20\n");
    let r = run(&replay_args(&a, &[]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let b = write(
        tmp.path(),
        "b.csv",
        "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n5,ChatGPT,472,18,490,Conversation log\n6,GPT-4,1000,0,1000,Conversation log\n7.5,ChatGPT,300,40,340,API log\n",
    );
    let r = run(&replay_args(&b, &[]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("1 rows marked failed") && r.stdout.contains(": 2 requests"),
        "{}",
        r.stdout
    );
}

#[test]
fn a_plain_csv_trace_is_replayed_and_its_faults_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let ok = write(
        tmp.path(),
        "mine.csv",
        "request_id,arrival_ms,prompt_tokens,completion_tokens\nr1,0,100,10\nr2,500,200,20\nr3,1250,300,30\n",
    );
    let r = run(&replay_args(&ok, &[]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains(": 3 requests"), "{}", r.stdout);
    // The run says how it read the times, so a unit named wrongly shows.
    assert!(
        (r.stdout.clone() + &r.stderr).contains(
            "plain trace: arrival times from arrival_ms in milliseconds, input tokens from \
             prompt_tokens, output tokens from completion_tokens"
        ),
        "{} {}",
        r.stdout,
        r.stderr
    );
    // Forced, a file whose extension would say otherwise is read as plain CSV, and so are
    // JSON lines that name their fields as its header would.
    for (name, text, requests) in [
        ("mine.txt", "time_s,isl,osl\n0,100,10\n1,100,10\n", 2),
        (
            "mine.out",
            "{\"arrival_ms\": 0, \"isl\": 100, \"osl\": 10}\n{\"arrival_ms\": 900, \"isl\": 100, \"osl\": 10}\n{\"arrival_ms\": 1800, \"isl\": 100, \"osl\": 10}\n",
            3,
        ),
    ] {
        let f = write(tmp.path(), name, text);
        let r = run(&replay_args(&f, &["--trace-format", "plain"]));
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(
            r.stdout.contains(&format!(": {requests} requests")),
            "{}",
            r.stdout
        );
    }
    let unitless = write(tmp.path(), "u.csv", "timestamp,isl,osl\n0,100,10\n");
    assert_input_error(
        &replay_args(&unitless, &[]),
        &["u.csv", "line 1", "timestamp_s (seconds) or timestamp_ms"],
    );
    let bad_row = write(
        tmp.path(),
        "r.csv",
        "arrival_s,isl,osl\n0,100,10\n1,none,10\n",
    );
    assert_input_error(
        &replay_args(&bad_row, &[]),
        &["r.csv", "line 3", "column isl"],
    );
}

#[test]
fn trace_unknown_format() {
    let tmp = tempfile::tempdir().unwrap();
    let f = write(tmp.path(), "x.csv", "a,b,c\n1,2,3\n");
    assert_input_error(&replay_args(&f, &[]), &["x.csv", "unknown trace format"]);
}

#[test]
fn trace_missing_or_empty() {
    assert_input_error(
        &replay_args("/nonexistent/t.jsonl", &[]),
        &["/nonexistent/t.jsonl"],
    );
    let tmp = tempfile::tempdir().unwrap();
    let f = write(tmp.path(), "e.jsonl", "\n");
    assert_input_error(&replay_args(&f, &[]), &["e.jsonl", "no requests"]);
}

#[test]
fn transforms_need_a_trace_and_sane_values() {
    assert_input_error(
        &["simulate", "--policy", "static:1,1", "--replicate", "3"],
        &["--trace"],
    );
    let tmp = tempfile::tempdir().unwrap();
    let f = write(
        tmp.path(),
        "t.jsonl",
        "{\"timestamp\": 0, \"input_length\": 100, \"output_length\": 10}\n",
    );
    // Each transform flag on the trace, and what its error must name. A window that leaves
    // nothing is named as the window, on the command line and (below) in a scenario file.
    let cases: [(&[&str], &[&str]); 3] = [
        (&["--time-scale=-2"], &["time_scale"]),
        (&["--window", "abc"], &["--window"]),
        (
            &["--window", "50:60"],
            &["t.jsonl", "no requests within --window 50:60"],
        ),
    ];
    for (flags, needles) in cases {
        assert_input_error(&replay_args(&f, flags), needles);
    }
    let scenario = write(
        tmp.path(),
        "s.yaml",
        &include_str!("../simulations/sin-5-45.yaml").replace(
            "  synthetic:\n    rate: { shape: sinusoid, min_rps: 5, max_rps: 45, period_s: 600 }\n    duration_s: 1800\n    isl: 3000\n    osl: 300\n",
            &format!("  trace:\n    file: {f}\n    transform: {{ window: {{ start_s: 50, end_s: 60 }} }}\n"),
        ),
    );
    assert_input_error(
        &[
            "simulate",
            "--scenario",
            &scenario,
            "--policy",
            "static:1,1",
        ],
        &[
            "s.yaml",
            "workload.trace.transform.window",
            "holds no requests from 50 s to 60 s",
        ],
    );
}

#[test]
fn scenario_errors_name_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let base = include_str!("../simulations/sin-5-45.yaml");
    // (file, text replaced, replacement, what the error must name)
    let cases: [(&str, &str, &str, &[&str]); 19] = [
        ("typo.yaml", "interval_s: 60", "interval: 60", &["interval"]),
        // A top-level field is named by the error itself, not as a field path.
        (
            "isl.yaml",
            "isl: 3000",
            "isl: {dist: normal, mean: 3000}",
            &["field workload.synthetic.isl: missing field `sd`"],
        ),
        (
            "init.yaml",
            "initial: { prefill: 1, decode: 1 }",
            "initial: { prefill: 1, decode: 1, extra: 2 }",
            &["field deployment.initial: unknown field `extra`"],
        ),
        // A run of years is refused before it is generated.
        (
            "long.yaml",
            "duration_s: 1800",
            "duration_s: 1.0e9",
            &["field workload.synthetic.duration_s: the run would span 16666667 intervals"],
        ),
        // A run with no decision in it.
        (
            "short.yaml",
            "duration_s: 1800",
            "duration_s: 50",
            &["field workload.synthetic.duration_s: the run (50 s) is shorter than one decision interval (deployment.interval_s, 60 s)"],
        ),
        // Lengths that are not the distribution asked for.
        (
            "cap.yaml",
            "isl: 3000",
            "isl: {dist: lognormal, mean: 3000, cv: 1, max: 2000}",
            &["field workload.synthetic.isl: lognormal: max (2000) is below the mean (3000)"],
        ),
        (
            "inf.yaml",
            "osl: 300",
            "osl: {dist: normal, mean: .inf, sd: 1}",
            &["field workload.synthetic.osl: normal: needs a finite mean >= 1"],
        ),
        (
            "top.yaml",
            "name: sin-5-45",
            "nam: sin-5-45",
            &["top.yaml: unknown field `nam`"],
        ),
        (
            "neg.yaml",
            "interval_s: 60",
            "interval_s: -5",
            &["deployment.interval_s"],
        ),
        ("rate.yaml", "max_rps: 45", "max_rps: 1", &["max_rps"]),
        (
            "pol.yaml",
            "dynamo, threshold",
            "dynamo, hpa",
            &["policies", "hpa"],
        ),
        (
            "nt.yaml",
            "  synthetic:",
            "  trace: { file: missing.csv }\n  synthetic:",
            &["workload"],
        ),
        (
            "agg.yaml",
            "policies:",
            "planner: { mode: aggregated }\npolicies:",
            &["planner.mode", "disaggregated"],
        ),
        // Sizes no deployment has, each of which would stall a run or a decision.
        (
            "budget.yaml",
            "gpu_budget: 12",
            "gpu_budget: 4000000000",
            &["field deployment.gpu_budget: at most 100000 GPUs (got 4000000000)"],
        ),
        (
            "chunk.yaml",
            "gpus_per_decode_engine: 1",
            "gpus_per_decode_engine: 1\n  prefill_token_budget: 1",
            &["field deployment.prefill_token_budget: must be at least 64 tokens (got 1)"],
        ),
        (
            "scrape.yaml",
            "gpus_per_decode_engine: 1",
            "gpus_per_decode_engine: 1\n  scrape_s: 0.000001",
            &["field deployment.scrape_s: must be at least 0.01 s"],
        ),
        // A signal the observation has no such name for.
        (
            "withhold.yaml",
            "gpus_per_decode_engine: 1",
            "gpus_per_decode_engine: 1\n  withhold: [percentile]",
            &[
                "deployment.withhold",
                "unknown variant `percentile`",
                "percentiles",
            ],
        ),
        // A router the simulator has no such name for.
        (
            "router.yaml",
            "gpus_per_decode_engine: 1",
            "gpus_per_decode_engine: 1\n  router: fastest",
            &[
                "deployment.router",
                "unknown variant `fastest`",
                "round-robin",
            ],
        ),
        // An outage that ends before it begins.
        (
            "outage.yaml",
            "gpus_per_decode_engine: 1",
            "gpus_per_decode_engine: 1\n  signal_outages: [{from_s: 0, to_s: 60}, {from_s: 900, to_s: 600}]",
            &[
                "field deployment.signal_outages[1]: needs 0 <= from_s < to_s",
                "got from_s 900, to_s 600",
            ],
        ),
    ];
    for (file, from, to, named) in cases {
        assert!(base.contains(from), "{file}: the base scenario changed");
        let path = write(tmp.path(), file, &base.replace(from, to));
        let mut want = vec![file];
        want.extend_from_slice(named);
        assert_input_error(&["simulate", "--scenario", &path], &want);
    }
}

#[test]
fn a_run_config_names_what_does_not_fit_its_mode() {
    // An aggregated graph has one pool of workers: prefill limits and services belong to a
    // disaggregated one, and a worker service to an aggregated one.
    let tmp = tempfile::tempdir().unwrap();
    let cfg = common::run_config(tmp.path(), "agg", 9090, 6443, "");
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(
        text.contains("planner:\n") && text.contains("limits: { gpu_budget: 8 }"),
        "the run config has a planner section and limits"
    );
    let aggregated = text.replace("planner:\n", "planner:\n  mode: aggregated\n");
    let cases = [
        (
            aggregated.replace("gpu_budget: 8 }", "gpu_budget: 8, max_prefill: 2 }"),
            "limits.max_prefill",
        ),
        (
            aggregated.replace("gpu_budget: 8 }", "gpu_budget: 8, min_decode: 0 }"),
            "limits.min_decode",
        ),
        (
            format!("{aggregated}  prefill_service: VllmPrefillWorker\n"),
            "kubernetes.prefill_service",
        ),
        (
            format!("{text}  worker_service: worker\n"),
            "kubernetes.worker_service",
        ),
        (
            text.replace("planner:\n", "planner:\n  correction: { smoothing: 0 }\n"),
            "planner.correction.smoothing: must be in (0, 1]",
        ),
    ];
    for (body, field) in cases {
        std::fs::write(&cfg, body).unwrap();
        let path = cfg.display().to_string();
        // A config is named as one, not as a scenario.
        assert_input_error(
            &["run", "--config", &path],
            &[&format!("config {path}: field "), field],
        );
    }
    // `decide` serves aggregated decisions: the workers are the decode count, prefill 0.
    let out = Command::new(common::bin())
        .args(["decide", "--config", &write(tmp.path(), "decide.yaml", "sla: { ttft_ms: 300, itl_ms: 10 }\ndeployment: { interval_s: 60, startup_s: 60, gpu_budget: 8 }\nplanner: { mode: aggregated }\n")])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(
                br#"{"time_s": 60, "interval_s": 60, "requests": 900, "isl_mean": 2000, "osl_mean": 250}"#,
            )?;
            c.wait_with_output()
        })
        .unwrap();
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["prefill"], 0, "{d}");
    assert!(d["decode"].as_u64().unwrap() >= 1, "{d}");
}

#[test]
fn unknown_scenario_and_policy() {
    assert_input_error(
        &["simulate", "--scenario", "no-such-scenario"],
        &["no-such-scenario", "sin-5-45"],
    );
    assert_input_error(&["simulate", "--policy", "static:2"], &["static:2"]);
    assert_input_error(&["simulate", "--policy", "magic"], &["magic"]);
    assert_input_error(&["simulate", "--policy", "oracle:1.5"], &["oracle:1.5"]);
}

#[test]
fn a_planner_variants_settings_are_checked_as_the_scenarios_are() {
    let variant = |spec: &str, needles: &[&str]| {
        assert_input_error(
            &["simulate", "--policy", "static:1,1", "--policy", spec],
            needles,
        )
    };
    variant("planner:", &["planner:headroom_quantile=0.95"]);
    variant("planner:headroom_quantile", &["expected FIELD=VALUE"]);
    variant(
        "planner:no_such_field=1",
        &["unknown field `no_such_field`"],
    );
    variant(
        "planner:headroom_quantile=2",
        &["headroom_quantile: must be in (0, 1) (got 2)"],
    );
    variant(
        "planner:stabilizer.tolerance=abc",
        &["stabilizer.tolerance: invalid type"],
    );
    variant(
        "planner:mode=aggregated",
        &["mode: is the simulated deployment's (deployment.mode)"],
    );
    // Two policies of one name would write one timeline file.
    assert_input_error(
        &["simulate", "--policy", "planner", "--policy", "planner"],
        &["--policy \"planner\" is given twice"],
    );
}

#[test]
fn schedule_file_errors_name_the_line() {
    let tmp = tempfile::tempdir().unwrap();
    let f = write(
        tmp.path(),
        "s.csv",
        "time_s,prefill,decode\n0,2,2\n600,x,3\n",
    );
    assert_input_error(
        &["simulate", "--policy", &format!("schedule:{f}")],
        &["s.csv", "line 3", "prefill"],
    );
    let ok = write(
        tmp.path(),
        "ok.csv",
        "time_s,prefill,decode\n0,2,2\n600,4,5\n",
    );
    let r = run(&["simulate", "--policy", &format!("schedule:{ok}")]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let r = run(&["simulate", "--no-such-flag"]);
    assert_eq!(r.code, 2);
}

#[test]
fn an_aggregated_deployment_refuses_what_sizes_pools() {
    for (policy, named) in [
        ("dynamo", "sizes prefill and decode pools"),
        ("static:2,4", "static:0,W"),
    ] {
        assert_input_error(
            &[
                "simulate",
                "--scenario",
                "sin-5-45-aggregated",
                "--policy",
                policy,
            ],
            &[policy, named],
        );
    }
    // The workers are counted as decode: a minimum of none is no deployment.
    let tmp = tempfile::tempdir().unwrap();
    let text = sla_planner::scenario::EMBEDDED
        .iter()
        .find(|(n, _)| *n == "sin-5-45-aggregated")
        .unwrap()
        .1;
    let path = write(
        tmp.path(),
        "agg0.yaml",
        &text.replace(
            "  mode: aggregated\n",
            "  mode: aggregated\n  min_decode: 0\n",
        ),
    );
    assert_input_error(
        &["simulate", "--scenario", &path],
        &["agg0.yaml", "deployment.min_decode"],
    );
}

#[test]
fn a_field_set_on_the_command_line_is_checked_as_the_file_is() {
    assert_input_error(
        &[
            "simulate",
            "--scenario",
            "sin-5-45",
            "--set",
            "sla.ttft=500",
        ],
        &["--set sla.ttft", "unknown field `ttft`"],
    );
    assert_input_error(
        &[
            "simulate",
            "--scenario",
            "sin-5-45",
            "--set",
            "sla.ttft_ms.x=5",
        ],
        &["--set sla.ttft_ms.x", "sla.ttft_ms is not a mapping"],
    );
    assert_input_error(
        &["simulate", "--scenario", "sin-5-45", "--set", "sla"],
        &["--set \"sla\"", "FIELD=VALUE"],
    );
    assert_input_error(
        &[
            "simulate",
            "--scenario",
            "sin-5-45",
            "--set",
            "deployment.interval_s=-5",
        ],
        &["deployment.interval_s", "must be > 0"],
    );
    assert_input_error(
        &[
            "decide",
            "--scenario",
            "sin-5-45",
            "--set",
            "deployment.planner_startup_s=-5",
        ],
        &[
            "deployment.planner_startup_s",
            "must be >= 0 and at most 86400 s (a day) (got -5)",
        ],
    );
    // Of several sets, the one that does not fit is named, and what it should be.
    assert_input_error(
        &[
            "simulate",
            "--scenario",
            "sin-5-45",
            "--set",
            "workload.synthetic.duration_s=60",
            "--set",
            "workload.synthetic.isl=abc",
        ],
        &[
            "field --set workload.synthetic.isl: ",
            "expected a whole number of tokens, or a distribution",
        ],
    );
}

/// `compare` runs its scenarios side by side; a bad one among good ones is still an input
/// error naming it, and the runs not yet started are not.
#[test]
fn compare_names_a_bad_scenario_among_good_ones() {
    let r = run(&[
        "compare",
        "--scenario",
        "step-10-30",
        "--scenario",
        "no-such-scenario",
        "--scenario",
        "flash-crowd",
        "--policy",
        "planner",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("\"no-such-scenario\""), "{}", r.stderr);
    assert!(r.stdout.is_empty(), "no table: {}", r.stdout);
    assert!(
        !r.stderr.contains("running flash-crowd"),
        "no run starts after a failure: {}",
        r.stderr
    );
}

/// `--load-scale K` that cannot be made is a usage error naming the flag: not a number above
/// zero, a trace whose copies times K are not whole, a budget past the largest count.
#[test]
fn load_scale_errors_name_the_flag() {
    for (args, needles) in [
        (
            &["--scenario", "azure-conv-x8", "--load-scale", "1.1"][..],
            &["--load-scale 1.1", "8 copies", "not a whole number"][..],
        ),
        (
            &["--scenario", "sin-5-45", "--load-scale", "0"][..],
            &["--load-scale", "> 0 (got 0)"][..],
        ),
        (
            &["--scenario", "sin-5-45", "--load-scale=-3"][..],
            &["--load-scale", "> 0 (got -3)"][..],
        ),
        (
            &["--scenario", "sin-5-45", "--load-scale", "1e9"][..],
            &["--load-scale 1000000000", "GPU budget"][..],
        ),
        // Within the budget's cap, but more arrivals than a run may draw: named, not run.
        (
            &["--scenario", "sin-5-45", "--load-scale", "2000"][..],
            &["workload.synthetic.rate", "arrivals", "at most 50000000"][..],
        ),
    ] {
        let mut all = vec!["simulate", "--policy", "static:1,1"];
        all.extend_from_slice(args);
        assert_input_error(&all, needles);
    }
}

#[test]
fn prefix_caching_needs_a_trace_that_names_blocks() {
    assert_input_error(
        &[
            "simulate",
            "--policy",
            "static:1,1",
            "--set",
            "deployment.prefix_cache={}",
        ],
        &[
            "deployment.prefix_cache",
            "names no prompt's prefix blocks",
            "hash_ids",
        ],
    );
    let tmp = tempfile::tempdir().unwrap();
    let turns = (0..20)
        .map(|i| {
            format!(
                "{{\"timestamp\": {}, \"input_length\": 1100, \"output_length\": 5, \"hash_ids\": [7, 8]}}\n",
                i * 3000
            )
        })
        .collect::<String>();
    let f = write(tmp.path(), "turns.jsonl", &turns);
    for (value, field) in [
        ("{block_tokens: 0}", "deployment.prefix_cache.block_tokens"),
        ("{blocks: 512}", "blocks"),
    ] {
        let set = format!("deployment.prefix_cache={value}");
        assert_input_error(&replay_args(&f, &["--set", &set]), &[field]);
    }
    // Each turn after the first finds its two blocks (1,024 of its 1,100 tokens).
    let r = run(&replay_args(
        &f,
        &["--set", "deployment.prefix_cache={}", "--json"],
    ));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let summary: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let share = summary["policies"][0]["prefix_cache_hit_share"]
        .as_f64()
        .unwrap();
    let want = 19.0 * 1024.0 / (20.0 * 1100.0);
    assert!((share - want).abs() < 1e-4, "{share} against {want}");
    // Aggregated workers cache the prompts they prefill as well.
    let r = run(&[
        "simulate",
        "--policy",
        "static:0,1",
        "--trace",
        &f,
        "--set",
        "deployment.mode=aggregated",
        "--set",
        "deployment.prefix_cache={}",
        "--json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let summary: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let share = summary["policies"][0]["prefix_cache_hit_share"]
        .as_f64()
        .unwrap();
    assert!(
        (share - want).abs() < 1e-4,
        "aggregated: {share} against {want}"
    );
    let r = run(&replay_args(&f, &["--json"]));
    let summary: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(summary["policies"][0]
        .get("prefix_cache_hit_share")
        .is_none());
}

#[test]
fn times_past_a_day_are_refused_before_any_run_or_timer() {
    // A decision interval, cold start or timeout past a day is a unit mixed up. The
    // simulator stepped through one for as long as it was (a trace replay with decisions
    // 1e300 s apart never ended), and a timer cannot hold one.
    for (set, named) in [
        ("deployment.interval_s=1e300", "deployment.interval_s"),
        ("deployment.startup_s=1e12", "deployment.startup_s"),
        (
            "deployment.planner_startup_s=90000",
            "deployment.planner_startup_s",
        ),
        ("deployment.scrape_s=1e6", "deployment.scrape_s"),
        (
            "deployment.kv_transfer.base_ms=1e300",
            "deployment.kv_transfer.base_ms",
        ),
    ] {
        assert_input_error(
            &["simulate", "--scenario", "sin-5-45", "--set", set],
            &[&format!("field {named}: must be"), "(a day)"],
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let cfg = common::run_config(tmp.path(), "days", 9090, 6443, "");
    let text = std::fs::read_to_string(&cfg).unwrap();
    for (from, to, named) in [
        ("interval_s: 10", "interval_s: 1.0e300", "interval_s"),
        ("startup_s: 5", "startup_s: 90000", "startup_s"),
        (
            "  timeout_s: 3\n  history",
            "  timeout_s: 1.0e300\n  history",
            "prometheus.timeout_s",
        ),
    ] {
        assert!(text.contains(from), "the run config changed: {from}");
        std::fs::write(&cfg, text.replacen(from, to, 1)).unwrap();
        let path = cfg.display().to_string();
        assert_input_error(
            &["run", "--config", &path],
            &[&format!("field {named}: must be"), "(a day)"],
        );
    }
}

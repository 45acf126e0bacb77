//! `docs/decide.schema.json` describes `decide`'s lines as they are: every field the types
//! serialise, the ranges `Observation::validate` holds them to, and every line `decide`
//! answers. Checked with Python's `jsonschema` (installed with kubernetes-validate by
//! scripts/deps.sh), a validator an external tool would use.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use sla_planner::planner::forecast::ForecasterKind;
use sla_planner::planner::model::Corrections;
use sla_planner::planner::{
    ceilings, Decision, Forecast, LatencySummary, Observation, ReplicaState, RoleKv, RoleReplicas,
    MAX_REPLICAS,
};

fn schema() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/decide.schema.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).expect("the schema is JSON")
}

fn def<'a>(schema: &'a Value, name: &str) -> &'a Value {
    &schema["$defs"][name]
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().expect("an object").keys().cloned().collect()
}

/// Every part of a full observation that is an object, as a list of keys from the root.
fn object_parts(value: &Value, at: &[String], found: &mut Vec<Vec<String>>) {
    if let Some(fields) = value.as_object() {
        if !at.is_empty() {
            found.push(at.to_vec());
        }
        for (key, part) in fields {
            object_parts(part, &[at, std::slice::from_ref(key)].concat(), found);
        }
    }
}

/// `decide` answers each object part of an observation given as an array (which serde
/// would read into the part's fields by position) with an error naming the part: its
/// guard knows every object part the type has, those added since included.
fn every_object_part_refuses_an_array(full: &Value) {
    let mut parts = Vec::new();
    object_parts(full, &[], &mut parts);
    assert!(parts.len() >= 6, "{parts:?}");
    let lines: Vec<String> = parts
        .iter()
        .map(|path| {
            let mut line = full.clone();
            let mut at = &mut line;
            for key in path {
                at = &mut at[key.as_str()];
            }
            *at = json!([1, 2]);
            line.to_string()
        })
        .collect();
    let (code, out, _) = common::decide(&["--scenario", "sin-5-45"], &(lines.join("\n") + "\n"));
    assert_eq!(code, 2);
    assert_eq!(out.len(), parts.len());
    for (path, answer) in parts.iter().zip(&out) {
        let expected = format!("field {}: an object expected, got an array", path.join("."));
        assert_eq!(answer["error"], json!(expected), "{path:?}");
    }
}

fn property_names(schema: &Value, name: &str) -> BTreeSet<String> {
    keys(&def(schema, name)["properties"])
}

#[test]
fn the_schema_names_every_field_the_types_serialise_and_their_ceilings() {
    let s = schema();
    let latency = LatencySummary {
        mean: Some(1.0),
        p50: Some(1.0),
        p90: Some(1.0),
        p99: Some(1.0),
    };
    let state = ReplicaState {
        ready: 1,
        starting: 1,
        draining: 1,
    };
    let full = Observation {
        time_s: 60.0,
        interval_s: 60.0,
        requests: Some(1.0),
        requests_second_half: Some(1.0),
        isl_mean: Some(1.0),
        osl_mean: Some(1.0),
        ttft_ms: Some(latency),
        itl_ms: Some(latency),
        kv_utilization: Some(RoleKv {
            prefill: Some(0.1),
            decode: Some(0.1),
        }),
        queued_prefill_tokens: Some(1.0),
        prefix_cache_hit_rate: Some(0.5),
        replicas: Some(RoleReplicas {
            prefill: state,
            decode: state,
        }),
    };
    let obs = serde_json::to_value(full).unwrap();
    assert_eq!(keys(&obs), property_names(&s, "observation"));
    every_object_part_refuses_an_array(&obs);
    assert_eq!(keys(&obs["ttft_ms"]), property_names(&s, "latency"));
    assert_eq!(
        keys(&obs["kv_utilization"]),
        keys(&def(&s, "observation")["properties"]["kv_utilization"]["properties"])
    );
    assert_eq!(
        keys(&obs["replicas"]),
        keys(&def(&s, "observation")["properties"]["replicas"]["properties"])
    );
    assert_eq!(
        keys(&obs["replicas"]["decode"]),
        property_names(&s, "replica_state")
    );

    let decision = Decision {
        prefill: 1,
        decode: 1,
        reasons: vec!["why".into()],
        forecast: Some(Forecast {
            horizon_s: 120.0,
            requests_per_s: 1.0,
            isl: 1.0,
            osl: 1.0,
            method: Some(ForecasterKind::Kalman),
        }),
        expected_ttft_ms: Some(1.0),
        expected_itl_ms: Some(1.0),
        corrections: Some(Corrections::default()),
    };
    let d = serde_json::to_value(decision).unwrap();
    let decision_schema = def(&s, "decision");
    assert_eq!(keys(&d), property_names(&s, "decision"));
    assert_eq!(
        keys(&d["forecast"]),
        keys(&decision_schema["properties"]["forecast"]["properties"])
    );
    assert_eq!(
        keys(&d["corrections"]),
        keys(&decision_schema["properties"]["corrections"]["properties"])
    );

    // The methods a decision may name: every forecaster `auto` chooses among, and only
    // those (a method added to the enum must be placed here to compile).
    let named: BTreeSet<String> = decision_schema["properties"]["forecast"]["properties"]["method"]
        ["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let kind: ForecasterKind = serde_json::from_value(m.clone()).expect("a method");
            kind.name().to_string()
        })
        .collect();
    let chosen = |k: ForecasterKind| match k {
        ForecasterKind::Constant
        | ForecasterKind::Smoothed
        | ForecasterKind::Linear
        | ForecasterKind::HoltWinters
        | ForecasterKind::Kalman
        | ForecasterKind::Seasonal
        | ForecasterKind::Harmonic => true,
        ForecasterKind::Auto => false,
    };
    let all = [
        ForecasterKind::Constant,
        ForecasterKind::Smoothed,
        ForecasterKind::Linear,
        ForecasterKind::HoltWinters,
        ForecasterKind::Kalman,
        ForecasterKind::Seasonal,
        ForecasterKind::Harmonic,
        ForecasterKind::Auto,
    ];
    let expected: BTreeSet<String> = all
        .into_iter()
        .filter(|&k| chosen(k))
        .map(|k| k.name().to_string())
        .collect();
    assert_eq!(named, expected);

    // The ceilings are the code's.
    let props = &def(&s, "observation")["properties"];
    let max = |v: &Value| v["maximum"].as_f64().expect("a maximum");
    assert_eq!(max(&props["interval_s"]), ceilings::INTERVAL_S);
    assert_eq!(
        max(&props["requests"]),
        ceilings::REQUESTS_PER_S * ceilings::INTERVAL_S
    );
    assert_eq!(max(&props["requests_second_half"]), max(&props["requests"]));
    assert_eq!(max(def(&s, "tokens")), ceilings::TOKENS_PER_REQUEST);
    assert_eq!(max(def(&s, "latency_ms")), ceilings::LATENCY_MS);
    assert_eq!(
        max(&props["queued_prefill_tokens"]),
        ceilings::QUEUED_TOKENS
    );
    assert_eq!(max(def(&s, "replica_count")), f64::from(MAX_REPLICAS));
}

/// Which of `observations` the schema's observation accepts, and the schema's complaints
/// about each of `outputs` as decide's lines (none for a valid line).
fn validate(
    schema: &Value,
    observations: &[Value],
    outputs: &[Value],
) -> (Vec<bool>, Vec<Vec<String>>) {
    let script = r##"
import json, sys
from jsonschema import Draft202012Validator
d = json.load(sys.stdin)
s = d["schema"]
Draft202012Validator.check_schema(s)
def of(name):
    return Draft202012Validator(dict(s, **{"$ref": "#/$defs/" + name}))
obs, out = of("observation"), of("output")
print(json.dumps({
    "observations": [obs.is_valid(x) for x in d["observations"]],
    "outputs": [[e.message for e in out.iter_errors(x)] for x in d["outputs"]],
}))
"##;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let input = json!({"schema": schema, "observations": observations, "outputs": outputs});
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python3 with jsonschema (installed with kubernetes-validate by scripts/deps.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let valid = v["observations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_bool().unwrap())
        .collect();
    let complaints = v["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e.as_array()
                .unwrap()
                .iter()
                .map(|m| m.as_str().unwrap().to_string())
                .collect()
        })
        .collect();
    (valid, complaints)
}

#[test]
fn the_schema_and_decide_agree_on_each_line() {
    let latency = json!({"mean": 70, "p50": 65, "p90": 90, "p99": 130});
    // Each line a minute after the one before, whether or not that one was valid: decide
    // measures time from the last valid line, and a line a minute on never overlaps it.
    let bodies: Vec<(Value, bool)> = vec![
        (
            json!({"requests": 1200, "isl_mean": 3000, "osl_mean": 300, "ttft_ms": latency,
            "itl_ms": {"mean": 7, "p99": 9}, "kv_utilization": {"prefill": 0.1, "decode": 0.3},
            "queued_prefill_tokens": 0, "requests_second_half": 600, "prefix_cache_hit_rate": 0.3,
            "replicas": {"prefill": {"ready": 2, "starting": 1}, "decode": {"ready": 2, "draining": 1}}}),
            true,
        ),
        (json!({}), true),
        (
            json!({"requests": null, "ttft_ms": null, "replicas": null}),
            true,
        ),
        (
            json!({"requests": 600, "replicas": {"prefill": {}, "decode": {"ready": 3}}}),
            true,
        ),
        (json!({"requests": 600, "isl_mean": 100000000}), true),
        (json!({"requests": 600, "ttft_ms": {"p99": 86400000}}), true),
        (
            json!({"requests": 600, "replicas": {"prefill": {"ready": 100000}, "decode": {}}}),
            true,
        ),
        (json!({"requests": 600, "typo": 1}), false),
        (json!({"requests": -1}), false),
        (json!({"requests": 600, "isl_mean": 1e12}), false),
        (json!({"requests": 600, "osl_mean": -3}), false),
        (
            json!({"requests": 600, "kv_utilization": {"decode": 1.5}}),
            false,
        ),
        (json!({"requests": 600, "prefix_cache_hit_rate": 1}), true),
        (
            json!({"requests": 600, "prefix_cache_hit_rate": 1.2}),
            false,
        ),
        (
            json!({"requests": 600, "prefix_cache_hit_rate": -0.1}),
            false,
        ),
        (json!({"requests": 600, "ttft_ms": {"p99": 1e9}}), false),
        (json!({"requests": 600, "itl_ms": {"p95": 9}}), false),
        (
            json!({"requests": 600, "queued_prefill_tokens": 1e14}),
            false,
        ),
        (
            json!({"requests": 600, "replicas": {"prefill": {"ready": 100001}, "decode": {}}}),
            false,
        ),
        (
            json!({"requests": 600, "replicas": {"prefill": {"ready": 1.5}, "decode": {}}}),
            false,
        ),
        (json!({"requests": 600, "replicas": {"prefill": {}}}), false),
        (json!({"requests": 600, "interval_s": 0}), false),
        (json!({"requests": 600, "interval_s": 172800}), false),
        (json!({"requests": "600"}), false),
        // serde would read an array into the summary's fields in order.
        (
            json!({"requests": 600, "ttft_ms": [70, 65, 90, 130]}),
            false,
        ),
        (
            json!({"requests": 600, "replicas": {"prefill": {}, "decode": [3, 0, 0]}}),
            false,
        ),
    ];
    let observations: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(i, (body, _))| {
            let mut o = json!({"time_s": 60.0 * (i + 1) as f64, "interval_s": 60});
            for (k, v) in body.as_object().unwrap() {
                o[k] = v.clone();
            }
            o
        })
        .collect();
    // Without time_s: no observation either.
    let mut lines: Vec<Value> = observations.clone();
    lines.push(json!({"interval_s": 60, "requests": 600}));
    let input: String = lines.iter().map(|l| format!("{l}\n")).collect();

    let (code, answers, err) = common::decide(&["--scenario", "sin-5-45"], &input);
    assert_eq!(code, 2, "some lines are invalid: {err}");
    assert_eq!(answers.len(), lines.len());

    let (valid, complaints) = validate(&schema(), &lines, &answers);
    for (i, line) in lines.iter().enumerate() {
        let decided = answers[i].get("error").is_none();
        let expected = bodies.get(i).is_some_and(|b| b.1);
        assert_eq!(
            decided,
            expected,
            "decide on line {}: {line} -> {}",
            i + 1,
            answers[i]
        );
        assert_eq!(valid[i], expected, "the schema on line {}: {line}", i + 1);
        assert!(
            complaints[i].is_empty(),
            "answer to line {} ({}) against the schema: {:?}",
            i + 1,
            answers[i],
            complaints[i]
        );
    }
}

#[test]
fn the_schema_leaves_the_prefill_counts_to_the_mode() {
    // The schema cannot see the deployment's mode: it takes a line without
    // `replicas.prefill`, which aggregated workers may send and `decide` then decides. (A
    // disaggregated deployment's `decide` answers it as an error: tests/decide.rs.)
    let lines = vec![json!({"time_s": 60, "interval_s": 60, "requests": 600,
        "replicas": {"decode": {"ready": 3}}})];
    let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let (code, answers, err) = common::decide(&["--scenario", "sin-5-45-aggregated"], &input);
    assert_eq!(code, 0, "{err}");
    let (valid, complaints) = validate(&schema(), &lines, &answers);
    assert!(valid[0], "the schema refused {}", lines[0]);
    assert!(complaints[0].is_empty(), "{:?}", complaints[0]);
}

/// The lines `simulate --out` writes for `decide` (`observations_<policy>.jsonl`,
/// `decisions_<policy>.jsonl`) are the schema's: every observation an `observation`, every
/// decision an `output`, under each kind of policy.
#[test]
fn a_dry_runs_observations_and_decisions_are_the_schemas_lines() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let stems = ["planner", "static_2_2", "dynamo", "oracle"];
    common::run_stdout(&[
        "simulate",
        "--scenario",
        "sin-5-45",
        "--set",
        "deployment.signal_outages=[{from_s: 600, to_s: 700}]",
        "--policy",
        "planner",
        "--policy",
        "static:2,2",
        "--policy",
        "dynamo",
        "--policy",
        "oracle",
        "--out",
        out,
    ]);
    let lines = |name: &str, stem: &str| -> Vec<Value> {
        std::fs::read_to_string(dir.path().join(format!("{name}_{stem}.jsonl")))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let schema = schema();
    for stem in stems {
        let (observations, decisions) = (lines("observations", stem), lines("decisions", stem));
        assert_eq!(observations.len(), decisions.len(), "{stem}");
        assert!(observations.len() > 25, "{stem}: {}", observations.len());
        let (valid, complaints) = validate(&schema, &observations, &decisions);
        for (k, ok) in valid.iter().enumerate() {
            assert!(ok, "{stem}: observation {}: {}", k + 1, observations[k]);
        }
        for (k, c) in complaints.iter().enumerate() {
            assert!(c.is_empty(), "{stem}: decision {}: {c:?}", k + 1);
        }
    }
}

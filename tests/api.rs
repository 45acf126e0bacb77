//! The status API: each route's status codes and body shape, writes only with the token,
//! a write taking effect at the next decision, and the OpenAPI file matching the routes.

mod common;

use common::*;
use serde_json::Value;

fn json(port: u16, path: &str) -> Value {
    let (code, body) = http(port, "GET", path, None, None);
    assert_eq!(code, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

#[test]
fn reads_are_open_and_shaped() {
    let dir = tempfile::tempdir().unwrap();
    let (_demo, port) = start_demo(dir.path(), 60.0, None);
    wait_for("a few decisions", 30, || {
        json(port, "/api/v1/status")["ticks"].as_u64().unwrap() >= 3
    });
    assert_eq!(http(port, "GET", "/healthz", None, None).0, 200);
    assert_eq!(http(port, "GET", "/readyz", None, None).0, 200);
    let st = json(port, "/api/v1/status");
    for key in [
        "ready",
        "leader",
        "advisory",
        "paused",
        "ticks",
        "errors_total",
        "decisions_total",
        "sla",
        "limits",
        "observation",
        "decision",
    ] {
        assert!(st.get(key).is_some(), "status.{key}: {st}");
    }
    assert!(st["decision"]["reasons"]
        .as_array()
        .is_some_and(|r| !r.is_empty()));
    let h = json(port, "/api/v1/history");
    let ticks = h["ticks"].as_array().unwrap();
    assert!(ticks.len() >= 3);
    for key in [
        "time_s",
        "requests_per_s",
        "forecast_requests_per_s",
        "prefill",
        "decode",
        "reasons",
        "wrote",
    ] {
        assert!(ticks[0].get(key).is_some(), "tick.{key}");
    }
    let since = ticks[1]["time_s"].as_f64().unwrap();
    let later = json(port, &format!("/api/v1/history?since={since}"));
    assert!(later["ticks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["time_s"].as_f64().unwrap() > since));
    // Refused as JSON naming the parameter, as every refusal is; a parameter the query
    // lacks is named too, not read past (all ticks would come back).
    for (query, field) in [("since=soon", "since"), ("limit=5", "limit")] {
        let (code, body) = http(port, "GET", &format!("/api/v1/history?{query}"), None, None);
        assert_eq!(code, 400, "{body}");
        assert_eq!(
            serde_json::from_str::<Value>(&body)
                .map(|v| v["field"].clone())
                .ok(),
            Some(Value::from(field)),
            "{body}"
        );
    }
    let cfg = json(port, "/api/v1/config");
    assert!(cfg["sla"].is_object() && cfg["limits"].is_object());
    let (code, metrics) = http(port, "GET", "/metrics", None, None);
    assert_eq!(code, 200);
    for name in [
        "sla_planner_requests_per_second",
        "sla_planner_forecast_requests_per_second",
        "sla_planner_forecast_horizon_seconds",
        "sla_planner_prefix_cache_hit_ratio",
        "sla_planner_latency_seconds{",
        "sla_planner_replicas{",
        "sla_planner_model_correction_ratio{",
        "sla_planner_decisions_total{",
        "sla_planner_tick_duration_seconds",
    ] {
        assert!(metrics.contains(name), "{name} in /metrics:\n{metrics}");
    }
    let (code, page) = http(port, "GET", "/", None, None);
    assert!(code == 200 && page.contains("chart-load"), "the dashboard");
    for remote in [
        "src=\"http",
        "href=\"http",
        "@import",
        "fetch(\"http",
        "url(http",
    ] {
        assert!(!page.contains(remote), "self-contained page: {remote}");
    }
    // Writes are refused without a configured token.
    let (code, body) = http(port, "POST", "/api/v1/control/pause", None, None);
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        http(
            port,
            "PUT",
            "/api/v1/control/limits",
            Some("guess"),
            Some("{\"max_prefill\": 2}")
        )
        .0,
        403
    );
    assert_eq!(http(port, "GET", "/api/v1/nothing", None, None).0, 404);
}

#[test]
fn writes_need_the_token_validate_and_apply_at_the_next_decision() {
    let dir = tempfile::tempdir().unwrap();
    let token = "s3cret-token";
    let (_demo, port) = start_demo(dir.path(), 60.0, Some(token));
    wait_for("a first decision", 30, || {
        json(port, "/api/v1/status")["ticks"].as_u64().unwrap() >= 1
    });
    assert_eq!(
        http(port, "POST", "/api/v1/control/pause", None, None).0,
        401
    );
    assert_eq!(
        http(
            port,
            "POST",
            "/api/v1/control/pause",
            Some("wrong-token!"),
            None
        )
        .0,
        401
    );
    let put_limits = |body: &str| {
        http(
            port,
            "PUT",
            "/api/v1/control/limits",
            Some(token),
            Some(body),
        )
    };
    let refused = [
        ("{\"max_prefill\": 0}", "max_prefill"),
        // No prefill at all would turn the pools into workers: refused, not a change of shape.
        ("{\"min_prefill\": 0, \"max_prefill\": 0}", "min_prefill"),
        ("{\"gpu_budget\": 1}", "gpu_budget"),
        // A value of the wrong kind names its field, not the value.
        ("{\"gpu_budget\": -1}", "gpu_budget"),
    ];
    for (limits, field) in refused {
        let (code, body) = put_limits(limits);
        assert_eq!(
            (
                code,
                serde_json::from_str::<Value>(&body).unwrap()["field"].as_str()
            ),
            (422, Some(field)),
            "{limits}: {body}"
        );
    }
    let (code, body) = put_limits("{\"max_prefil\": 2}");
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("max_prefil"));
    // Not limits by position either.
    let (code, body) = put_limits("[1, 2, 1, 2, 4]");
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("an array"), "{body}");
    // A cap of 2 per role binds on sin-5-45, whose peak needs 4+4.
    let (code, body) = put_limits("{\"max_prefill\": 2, \"max_decode\": 2}");
    assert_eq!(code, 200, "{body}");
    let set_at = json(port, "/api/v1/status")["ticks"].as_u64().unwrap();
    wait_for("two more decisions", 30, || {
        json(port, "/api/v1/status")["ticks"].as_u64().unwrap() >= set_at + 2
    });
    let st = json(port, "/api/v1/status");
    assert_eq!(st["limits"]["max_prefill"], 2);
    assert!(
        st["decision"]["prefill"].as_u64().unwrap() <= 2
            && st["decision"]["decode"].as_u64().unwrap() <= 2,
        "{st}"
    );
    let (code, body) = http(port, "POST", "/api/v1/control/pause", Some(token), None);
    assert_eq!(code, 200, "{body}");
    let paused_at = json(port, "/api/v1/status")["ticks"].as_u64().unwrap();
    wait_for("decisions while paused", 30, || {
        json(port, "/api/v1/status")["ticks"].as_u64().unwrap() >= paused_at + 3
    });
    let h = json(port, "/api/v1/history");
    let after: Vec<&Value> = h["ticks"]
        .as_array()
        .unwrap()
        .iter()
        .skip(paused_at as usize + 1)
        .collect();
    assert!(
        !after.is_empty() && after.iter().all(|t| t["wrote"] == false),
        "nothing written while paused"
    );
    assert_eq!(json(port, "/api/v1/status")["paused"], true);
    assert_eq!(
        http(port, "POST", "/api/v1/control/resume", Some(token), None).0,
        200
    );
    // The token is never shown.
    let (_, cfg) = http(port, "GET", "/api/v1/config", None, None);
    assert!(!cfg.contains(token));
}

#[test]
fn an_aggregated_deployment_takes_worker_limits_and_refuses_prefill_ones() {
    let dir = tempfile::tempdir().unwrap();
    let token = "s3cret-token";
    let (_demo, port) = start_demo_with(
        dir.path(),
        60.0,
        Some(token),
        &["--scenario", "sin-5-45-aggregated"],
    );
    wait_for("a first decision", 30, || {
        json(port, "/api/v1/status")["ticks"].as_u64().unwrap() >= 1
    });
    let (code, body) = http(
        port,
        "PUT",
        "/api/v1/control/limits",
        Some(token),
        Some("{\"max_prefill\": 2}"),
    );
    assert_eq!(code, 422, "{body}");
    let err = serde_json::from_str::<Value>(&body).unwrap();
    assert_eq!(err["field"], "max_prefill", "{body}");
    assert!(body.contains("aggregated"), "{body}");
    // The workers are bounded as decode is; sin-5-45's peak needs more than 3.
    let (code, body) = http(
        port,
        "PUT",
        "/api/v1/control/limits",
        Some(token),
        Some("{\"max_decode\": 3}"),
    );
    assert_eq!(code, 200, "{body}");
    let set_at = json(port, "/api/v1/status")["ticks"].as_u64().unwrap();
    wait_for("two more decisions", 30, || {
        json(port, "/api/v1/status")["ticks"].as_u64().unwrap() >= set_at + 2
    });
    let st = json(port, "/api/v1/status");
    assert_eq!(st["limits"]["max_decode"], 3, "{st}");
    assert_eq!(st["decision"]["prefill"], 0, "{st}");
    assert!(st["decision"]["decode"].as_u64().unwrap() <= 3, "{st}");
}

/// The observations the loop kept, replayed through `decide` with the demo's scenario, give
/// back the loop's decisions: one core behind the live loop and the pipe, and lines each
/// reads as the other writes them.
#[test]
fn the_loops_observations_replayed_through_decide_give_its_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let (_demo, port) = start_demo(dir.path(), 60.0, None);
    wait_for("eight decisions", 60, || {
        json(port, "/api/v1/status")["ticks"].as_u64().unwrap() >= 8
    });
    let lines = |path: &str| {
        let (code, body) = http(port, "GET", path, None, None);
        assert_eq!(code, 200, "{path}: {body}");
        body
    };
    let observations = lines("/api/v1/observations");
    let decisions = lines("/api/v1/decisions");
    let (code, answers, err) = decide(&["--scenario", "sin-5-45"], &observations);
    assert_eq!(code, 0, "{err}");
    let made: Vec<Value> = decisions
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(answers.len() >= 8, "{observations}");
    // The loop may have decided again between the two reads.
    assert!(made.len() >= answers.len(), "{decisions}");
    for (k, (answer, kept)) in answers.iter().zip(&made).enumerate() {
        assert_eq!(answer, kept, "tick {}", k + 1);
    }
    // `since` keeps the later ticks, as for the history.
    let first: Value = serde_json::from_str(observations.lines().next().unwrap()).unwrap();
    let since = first["time_s"].as_f64().unwrap();
    let later = lines(&format!("/api/v1/observations?since={since}"));
    assert!(later.lines().count() >= answers.len() - 1, "{later}");
    assert!(
        later.lines().all(|l| {
            let o: Value = serde_json::from_str(l).unwrap();
            o["time_s"].as_f64().unwrap() > since
        }),
        "{later}"
    );
    let (code, body) = http(port, "GET", "/api/v1/decisions?since=soon", None, None);
    assert_eq!(code, 400, "{body}");
}

#[test]
fn openapi_documents_exactly_the_routes() {
    use serde::Deserialize;
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.yaml"),
    )
    .unwrap();
    let doc = Value::deserialize(serde_yaml_ng::Deserializer::from_str(&text)).unwrap();
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented.push((method.to_uppercase(), path.clone()));
        }
    }
    documented.sort();
    let mut served: Vec<(String, String)> = sla_planner::live::api::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    served.sort();
    assert_eq!(documented, served);
}

#[test]
fn sigterm_stops_the_demo_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (mut demo, port) = start_demo(dir.path(), 60.0, None);
    wait_for("a decision", 30, || {
        json(port, "/api/v1/status")["ticks"].as_u64().unwrap() >= 1
    });
    let status = terminate(&mut demo, 10);
    assert!(status.success(), "{status}");
    assert!(demo.output().contains("shutting down"), "{}", demo.output());
}

#[test]
fn the_dashboard_stays_up_after_the_demo_workload() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let args: Vec<String> = [
        "demo",
        "--scenario",
        "e2e-ramp",
        "--speed",
        "100",
        "--log-format",
        "json",
        "--listen",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("127.0.0.1:{port}")])
    .collect();
    let mut demo = Proc::spawn("demo", bin(), &args, dir.path());
    // 200 s of workload at 100x: over in about 2.4 s.
    wait_for("the end of the workload", 30, || {
        demo.output().contains("stays up")
    });
    assert!(demo.alive());
    assert_eq!(http(port, "GET", "/", None, None).0, 200);
    assert!(
        json(port, "/api/v1/history")["ticks"]
            .as_array()
            .unwrap()
            .len()
            >= 10
    );
    assert!(terminate(&mut demo, 10).success());
}

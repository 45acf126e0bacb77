//! The dashboard in a real browser: headless Chromium (Debian's package, installed by
//! scripts/deps.sh) opens the dashboard of a running `demo`; the rendered DOM must hold
//! data points in every chart and entries in the decision log. A screenshot is saved.

mod common;

use std::process::Command;

use common::*;

fn chromium(args: &[String]) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=8000",
            "--window-size=1150,2300",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .output()
        .expect("chromium is installed by scripts/deps.sh")
}

/// The DOM the dashboard of a running `demo` renders (after at least four decisions), and
/// its URL.
fn rendered_dashboard(dir: &std::path::Path, extra: &[&str]) -> (Proc, String, String) {
    let (demo, port) = start_demo_with(dir, 60.0, None, extra);
    wait_for("some decisions", 30, || {
        http_get(port, "/api/v1/status").is_some_and(|(_, b)| {
            serde_json::from_str::<serde_json::Value>(&b).unwrap()["ticks"]
                .as_u64()
                .unwrap_or(0)
                >= 4
        })
    });
    let url = format!("http://127.0.0.1:{port}/");
    let out = chromium(&["--dump-dom".into(), url.clone()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (demo, String::from_utf8_lossy(&out.stdout).into_owned(), url)
}

/// Asserts the chart holds a series of at least three points; returns its SVG.
fn chart_with_data<'d>(dom: &'d str, chart: &str) -> &'d str {
    let start = dom
        .find(&format!("id=\"{chart}\""))
        .unwrap_or_else(|| panic!("{chart} in the DOM"));
    let section = &dom[start..];
    let section = &section[..section
        .find("</svg>")
        .unwrap_or_else(|| panic!("{chart} was drawn:\n{dom}"))];
    let points: Vec<u64> = section
        .split("data-points=\"")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].parse().unwrap())
        .collect();
    assert!(
        !points.is_empty() && points.iter().any(|&n| n >= 3),
        "{chart} holds data points: {points:?}"
    );
    section
}

#[test]
fn charts_hold_data_and_the_decision_log_has_entries() {
    let dir = tempfile::tempdir().unwrap();
    let (_demo, dom, url) = rendered_dashboard(dir.path(), &[]);
    for chart in [
        "chart-load",
        "chart-ttft",
        "chart-itl",
        "chart-replicas-prefill",
        "chart-replicas-decode",
        "chart-kv",
    ] {
        chart_with_data(&dom, chart);
    }
    let rows = dom.matches("class=\"decision\"").count();
    assert!(rows >= 3, "the decision log has entries: {rows}");
    assert!(
        dom.contains("TTFT p99 target binds") || dom.contains("plan for"),
        "reasons are shown"
    );
    for route in ["/api/v1/observations", "/api/v1/decisions"] {
        assert!(
            dom.contains(&format!("href=\"{route}\"")),
            "a link to {route}"
        );
    }
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let out = chromium(&[format!("--screenshot={}", shot.display()), url]);
    assert!(
        out.status.success()
            && std::fs::metadata(&shot)
                .map(|m| m.len() > 10_000)
                .unwrap_or(false),
        "a screenshot at {}",
        shot.display()
    );
}

#[test]
fn an_aggregated_deployment_shows_workers_not_pools() {
    let dir = tempfile::tempdir().unwrap();
    let (_demo, dom, _) = rendered_dashboard(dir.path(), &["--scenario", "sin-5-45-aggregated"]);
    for chart in ["chart-load", "chart-ttft", "chart-itl", "chart-kv"] {
        chart_with_data(&dom, chart);
    }
    let workers = chart_with_data(&dom, "chart-replicas-decode");
    assert!(workers.contains("Worker replicas"), "{workers}");
    // No prefill role: its chart is hidden and empty, and the log has one count column.
    let prefill = &dom[dom.find("id=\"chart-replicas-prefill\"").unwrap()..];
    let prefill = &prefill[..prefill.find('>').unwrap()];
    assert!(prefill.contains("hidden"), "{prefill}");
    assert!(
        dom.contains("<th>workers</th>") && !dom.contains("<th>prefill</th>"),
        "the decision log counts workers"
    );
    assert!(dom.contains("limits: workers 1-16"), "limits name workers");
    assert!(
        dom.contains("workers meet TTFT and ITL"),
        "reasons are shown"
    );
}

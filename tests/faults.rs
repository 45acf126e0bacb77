//! The live loop under faults, against the emulator's fault injection and a real
//! Prometheus: nothing unsafe is written, the planner keeps running, and it recovers.

mod common;

use common::*;

struct Rig {
    dir: tempfile::TempDir,
    api: u16,
    prom: u16,
    _emulator: Proc,
    prometheus: Proc,
}

fn rig(emulator_flags: &[&str]) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let prom = free_port();
    let mut args: Vec<String> = vec![
        "emulate".into(),
        "--listen".into(),
        format!("127.0.0.1:{api}"),
        "--scenario".into(),
        "e2e-ramp".into(),
    ];
    args.extend(emulator_flags.iter().map(|s| s.to_string()));
    let emulator = Proc::spawn("emulator", bin(), &args, dir.path());
    wait_for("the emulator", 30, || http_get(api, "/metrics").is_some());
    let prometheus = start_prometheus(dir.path(), prom, api);
    Rig {
        dir,
        api,
        prom,
        _emulator: emulator,
        prometheus,
    }
}

fn planner(r: &Rig, name: &str, extra: &str, status: Option<u16>) -> Proc {
    let cfg = run_config(r.dir.path(), name, r.prom, r.api, extra);
    let mut args = vec![
        "run".into(),
        "--config".into(),
        cfg.display().to_string(),
        "--log-format".into(),
        "json".into(),
    ];
    if let Some(p) = status {
        args.extend(["--listen".into(), format!("127.0.0.1:{p}")]);
    }
    Proc::spawn(name, bin(), &args, r.dir.path())
}

fn sleep(s: u64) {
    std::thread::sleep(std::time::Duration::from_secs(s));
}

fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn prometheus_stopped_mid_run_holds_then_recovers() {
    let mut r = rig(&[]);
    let status = free_port();
    let mut p = planner(
        &r,
        "run",
        "leader_election: { enabled: false }\n",
        Some(status),
    );
    wait_for("a first decision", 60, || {
        count(&p.output(), "\"message\":\"decision\"") >= 2
    });
    r.prometheus.stop();
    let before = emulator_state(r.api);
    let writes_before = before["writes"].as_array().unwrap().len();
    sleep(35);
    assert!(
        p.alive(),
        "the planner keeps running without Prometheus:\n{}",
        p.output()
    );
    let during = emulator_state(r.api);
    assert_eq!(
        during["writes"].as_array().unwrap().len(),
        writes_before,
        "no write while the signals are missing"
    );
    assert_eq!(during["replicas"], before["replicas"], "replicas held");
    let (code, body) = http_get(status, "/readyz").unwrap();
    assert!(code == 200 && body.contains("holding"), "{code} {body}");
    let log = p.output();
    assert_eq!(
        count(&log, "holding replicas"),
        1,
        "logged once per incident:\n{log}"
    );
    // Prometheus comes back on the same port with the same data.
    r.prometheus = start_prometheus(r.dir.path(), r.prom, r.api);
    wait_for("recovery", 60, || p.output().contains("recovered"));
    // The intervals it could not read are asked of Prometheus again (it scraped none of
    // them while stopped: the planner fills them).
    wait_for("the read-back", 30, || {
        p.output()
            .contains("\"message\":\"intervals the outage hid read back\"")
    });
    // It says how many intervals were hidden, and how many of them Prometheus had kept
    // (none while it was stopped, but it may scrape the last once it is back).
    let log = p.output();
    let line = log
        .lines()
        .find(|l| l.contains("intervals the outage hid read back"))
        .unwrap();
    let read_back: serde_json::Value = serde_json::from_str(line).unwrap();
    let hidden = read_back["hidden"].as_u64().unwrap_or(0);
    assert!(hidden >= 1, "{line}");
    assert!(read_back["intervals"].as_u64().unwrap() <= hidden, "{line}");
    let (_, st) = http_get(status, "/api/v1/status").unwrap();
    let st: serde_json::Value = serde_json::from_str(&st).unwrap();
    assert!(
        st["errors_total"]["prometheus_error"].as_u64().unwrap_or(0)
            + st["errors_total"]["prometheus_timeout"]
                .as_u64()
                .unwrap_or(0)
            >= 2,
        "{st}"
    );
}

#[test]
fn conflicts_and_server_errors_are_retried_and_converge() {
    let r = rig(&["--error-rate", "0.25", "--conflict-rate", "0.5"]);
    let p = planner(&r, "run", "leader_election: { enabled: false }\n", None);
    // The ramp peaks at 40 req/s from 60 s: prefill must rise well above 1.
    wait_for("the scale to converge despite faults", 150, || {
        emulator_state(r.api)["replicas"]["VllmPrefillWorker"]
            .as_u64()
            .unwrap()
            >= 3
    });
    let log = p.output();
    assert!(
        log.contains("retrying"),
        "conflicts and errors were retried:\n{log}"
    );
    let state = emulator_state(r.api);
    let used = observed_calls(&state);
    assert!(
        used.is_subset(&declared_calls()),
        "undeclared calls: {used:?}"
    );
    assert!(
        used.contains(&(
            "nvidia.com".to_string(),
            "dynamographdeploymentscalingadapters/scale".to_string(),
            "get".to_string()
        )),
        "a 409 is followed by a re-read"
    );
    for w in emulator_state(r.api)["writes"].as_array().unwrap() {
        let n = w["replicas"].as_u64().unwrap();
        assert!((1..=8).contains(&n), "{w}");
    }
}

#[test]
fn forbidden_scale_is_a_clear_error() {
    let r = rig(&["--forbid-scale"]);
    let mut p = planner(&r, "run", "leader_election: { enabled: false }\n", None);
    wait_for("a write attempt", 120, || {
        p.output().contains("kube_forbidden")
    });
    let log = p.output();
    let line = log.lines().find(|l| l.contains("kube_forbidden")).unwrap();
    assert!(
        line.contains("`patch`")
            && line.contains("dynamographdeploymentscalingadapters/scale")
            && line.contains("nvidia.com"),
        "{line}"
    );
    assert!(p.alive());
    assert!(emulator_state(r.api)["writes"]
        .as_array()
        .unwrap()
        .is_empty());
    // SIGTERM stops it cleanly.
    let status = terminate(&mut p, 10);
    assert!(status.success(), "{status}");
    assert!(p.output().contains("shutting down"));
}

#[test]
fn two_planners_one_lease_only_the_leader_writes() {
    let r = rig(&[]);
    let a = planner(
        &r,
        "a",
        "leader_election: { identity: planner-a, lease_duration_s: 3 }\n",
        None,
    );
    let b = planner(
        &r,
        "b",
        "leader_election: { identity: planner-b, lease_duration_s: 3 }\n",
        None,
    );
    wait_for("some scaling", 120, || {
        !emulator_state(r.api)["writes"]
            .as_array()
            .unwrap()
            .is_empty()
    });
    sleep(20);
    let (la, lb) = (a.output(), b.output());
    let scaled = (
        count(&la, "\"message\":\"scaled\""),
        count(&lb, "\"message\":\"scaled\""),
    );
    let leaders = (count(&la, "became leader"), count(&lb, "became leader"));
    assert_eq!(
        leaders.0 + leaders.1,
        1,
        "one leader: {leaders:?}\nA:\n{la}\nB:\n{lb}"
    );
    assert!(
        (scaled.0 == 0) != (scaled.1 == 0),
        "only the leader writes: {scaled:?}"
    );
    let follower = if leaders.0 == 1 { &lb } else { &la };
    assert!(
        follower.contains("\"leader\":false"),
        "the follower decides but does not write"
    );
    let leases = emulator_state(r.api)["leases"].as_array().unwrap().clone();
    assert_eq!(leases.len(), 1);
    let holder = leases[0]["spec"]["holderIdentity"].as_str().unwrap();
    assert_eq!(
        holder,
        if leaders.0 == 1 {
            "planner-a"
        } else {
            "planner-b"
        }
    );
}

#[test]
fn run_check_says_what_it_would_scale_and_writes_nothing() {
    let mut r = rig(&[]);
    let cfg = run_config(r.dir.path(), "check", r.prom, r.api, "");
    let check = || {
        std::process::Command::new(bin())
            .args(["run", "--config", &cfg.display().to_string(), "--check"])
            .output()
            .unwrap()
    };
    let out = check();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "config: valid; planner.mode disaggregated",
        "prefill service VllmPrefillWorker, decode service VllmDecodeWorker",
        "VllmPrefillWorker is scaled through DynamoGraphDeploymentScalingAdapter sla-demo-vllmprefillworker/scale",
        "replicas: prefill 1 ready",
        &format!("prometheus: http://127.0.0.1:{}", r.prom),
    ] {
        assert!(stdout.contains(line), "{line:?} in:\n{stdout}");
    }
    // Without Prometheus the check fails and says where.
    r.prometheus.stop();
    let out = check();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("prometheus:"), "{stderr}");
    let state = emulator_state(r.api);
    assert!(
        state["writes"].as_array().unwrap().is_empty(),
        "a check writes nothing: {state}"
    );
}

//! End to end with a real Prometheus: `sla-planner emulate` serves a simulated Dynamo
//! deployment's metrics and Kubernetes API; Prometheus scrapes it; `sla-planner run` reads
//! Prometheus and writes the DGDSA scale subresource of the emulator. Under a load ramp the
//! replicas rise, after it they fall back, and no write leaves the limits.

mod common;

use common::*;

/// Polls the emulator every 2 s, checking the planner keeps running, and hands each state
/// to `each` until it says it has seen what it waits for, or for `seconds` at most (the
/// assertions after it then say what was not seen).
fn watch(
    planner: &mut Proc,
    api: u16,
    seconds: u64,
    mut each: impl FnMut(&serde_json::Value) -> bool,
) {
    let start = std::time::Instant::now();
    while start.elapsed().as_secs() < seconds {
        std::thread::sleep(std::time::Duration::from_secs(2));
        assert!(
            planner.alive(),
            "the planner keeps running:\n{}",
            planner.output()
        );
        if each(&emulator_state(api)) {
            return;
        }
    }
}

/// The API calls the emulator saw that the Role does not grant (tests/deploy.rs checks the
/// Role against the declaration); they must be none.
fn assert_declared(used: &std::collections::BTreeSet<(String, String, String)>) {
    let declared = declared_calls();
    assert!(
        used.is_subset(&declared),
        "undeclared calls: {:?}",
        used.difference(&declared).collect::<Vec<_>>()
    );
}

/// The emulator serving `scenario` and a real Prometheus scraping it (and the ports in
/// `also_scrape`): both processes (kept alive by the caller) and the emulator's and
/// Prometheus's ports.
fn emulated_cluster(
    dir: &std::path::Path,
    scenario: &str,
    also_scrape: &[u16],
) -> (Proc, Proc, u16, u16) {
    let api = free_port();
    let prom = free_port();
    let emulator = Proc::spawn(
        "emulator",
        bin(),
        &[
            "emulate".into(),
            "--listen".into(),
            format!("127.0.0.1:{api}"),
            "--scenario".into(),
            scenario.into(),
        ],
        dir,
    );
    wait_for("the emulator", 30, || http_get(api, "/metrics").is_some());
    let targets: Vec<u16> = [api].iter().chain(also_scrape).copied().collect();
    let prometheus = start_prometheus_scraping(dir, prom, &targets);
    (emulator, prometheus, api, prom)
}

/// `sla-planner run` on `cfg`, serving its status API on `status` when given.
fn spawn_run(
    name: &str,
    cfg: &std::path::Path,
    dir: &std::path::Path,
    status: Option<u16>,
) -> Proc {
    let mut args = vec![
        "run".to_string(),
        "--config".into(),
        cfg.display().to_string(),
    ];
    if let Some(port) = status {
        args.extend(["--listen".into(), format!("127.0.0.1:{port}")]);
    }
    Proc::spawn(name, bin(), &args, dir)
}

/// `run`'s config for a single planner (no leader election), with `edit` applied to its text.
fn leaderless_config(
    dir: &std::path::Path,
    prom: u16,
    api: u16,
    edit: impl FnOnce(String) -> String,
) -> std::path::PathBuf {
    let cfg = run_config(
        dir,
        "run",
        prom,
        api,
        "leader_election: { enabled: false }\n",
    );
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, edit(text)).unwrap();
    cfg
}

#[test]
fn replicas_follow_a_load_ramp_through_a_real_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let status = free_port();
    let (_emulator, _prometheus, api, prom) = emulated_cluster(dir.path(), "e2e-ramp", &[]);
    let cfg = run_config(
        dir.path(),
        "run",
        prom,
        api,
        "leader_election: { lease_duration_s: 3 }\n",
    );
    let mut planner = spawn_run("run", &cfg, dir.path(), Some(status));

    // The ramp: 3 req/s until 30 s, up to 40 req/s at 60 s, held to 110 s, back to 3 req/s by
    // 130 s. Watched until the replicas have fallen back after it.
    let mut peak = (0u64, 0u64);
    let mut samples = Vec::new();
    let watching = std::time::Instant::now();
    watch(&mut planner, api, 200, |s| {
        let t = s["wall_s"].as_f64().unwrap();
        let p = s["replicas"]["VllmPrefillWorker"].as_u64().unwrap();
        let d = s["replicas"]["VllmDecodeWorker"].as_u64().unwrap();
        samples.push((t, p, d));
        peak = (peak.0.max(p), peak.1.max(d));
        t > 130.0 && peak.0 >= 3 && p < peak.0 && p + d < peak.0 + peak.1
    });
    let watched_s = watching.elapsed().as_secs_f64();
    let state = emulator_state(api);
    let writes = state["writes"].as_array().unwrap();
    let log = planner.output();
    assert!(
        !writes.is_empty(),
        "the planner wrote replica counts:\n{log}"
    );
    for w in writes {
        assert_eq!(
            w["via"], "scale",
            "writes go through the adapters' scale subresource"
        );
        let n = w["replicas"].as_u64().unwrap();
        assert!((1..=8).contains(&n), "a write within [min, budget]: {w}");
    }
    for &(t, p, d) in &samples {
        assert!(
            p >= 1 && d >= 1 && p + d <= 8,
            "at {t:.0} s: {p}P+{d}D leaves the limits"
        );
    }
    assert!(
        peak.0 >= 3,
        "prefill rose under the ramp: {samples:?}\n{log}"
    );
    let last = samples.last().unwrap();
    assert!(
        last.1 < peak.0,
        "prefill fell back after the ramp: {samples:?}"
    );
    assert!(
        last.1 + last.2 < peak.0 + peak.1,
        "replicas fell back after the ramp: {samples:?}"
    );
    assert!(
        state["events"].as_u64().unwrap() >= 1,
        "scales are recorded as Events"
    );
    // Structured logs with the reasons of each decision.
    assert!(
        log.lines()
            .any(|l| l.contains("\"message\":\"decision\"") && l.contains("\"reasons\"")),
        "{log}"
    );
    // The percentiles are read as Prometheus made them: through the buckets of the
    // frontend's histograms (Dynamo's default, TTFT bounds at 0.1 and 0.22 s), found in
    // Prometheus at start or once its first requests were served.
    assert!(
        log.lines().any(|l| l.contains("latency percentiles")
            && l.contains("read through Prometheus's histogram buckets")
            && l.contains("0.1,0.22,0.47")),
        "{log}"
    );
    // Every call made is declared (and so granted: tests/deploy.rs checks the Role against
    // the declaration); every declared call but the 409 re-read was made.
    let used = observed_calls(&state);
    assert_declared(&used);
    let unused: Vec<_> = declared_calls().difference(&used).cloned().collect();
    let reread = (
        "nvidia.com".to_string(),
        "dynamographdeploymentscalingadapters/scale".to_string(),
        "get".to_string(),
    );
    assert_eq!(unused, vec![reread], "declared but not made");
    // Resident memory of `run` in steady state (recorded in the README; read, not asserted).
    if let Ok(s) = std::fs::read_to_string(format!("/proc/{}/status", planner.child.id())) {
        if let Some(l) = s.lines().find(|l| l.starts_with("VmRSS")) {
            println!(
                "sla-planner run resident memory: {}",
                l.trim_start_matches("VmRSS:").trim()
            );
        }
    }
    let (code, body) = http_get(status, "/readyz").unwrap();
    assert_eq!(code, 200, "{body}");
    let (code, body) = http_get(status, "/api/v1/status").unwrap();
    assert_eq!(code, 200);
    let st: serde_json::Value = serde_json::from_str(&body).unwrap();
    // A decision every 10 s while it was watched (a few late or missed allowed).
    assert!(
        st["ticks"].as_f64().unwrap() >= 0.75 * watched_s / 10.0 && st["leader"] == true,
        "{st} in {watched_s:.0} s"
    );
    // The count's second half is read too (the rise within an interval): some of a steady
    // 3 req/s, never more than the whole.
    let requests = st["observation"]["requests"].as_f64().unwrap();
    let late = st["observation"]["requests_second_half"].as_f64();
    assert!(
        late.is_some_and(|late| late > 0.0 && late <= requests),
        "{st}"
    );
}

/// An aggregated graph: one `worker` service (componentType worker, no subComponentType)
/// with one scaling adapter. `run` in `planner.mode: aggregated` finds it, sizes the
/// workers from the frontend's latencies in Prometheus, and writes that one adapter only.
#[test]
fn aggregated_workers_follow_a_load_ramp_through_a_real_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    // 2 req/s, a 20 s ramp to 24 req/s at 50 s, held 50 s, back to 2 req/s by 110 s.
    let scenario = dir.path().join("ramp-aggregated.yaml");
    std::fs::write(
        &scenario,
        "name: ramp-aggregated\ndescription: real-time ramp on aggregated workers\nseed: 3\nprofile: default\n\
workload:\n  synthetic:\n    rate: { shape: flash_crowd, base_rps: 2, peak_rps: 24, at_s: 30, ramp_s: 20, hold_s: 50, decay_s: 10 }\n    duration_s: 1000\n    isl: 3000\n    osl: 150\n\
sla: { ttft_ms: 200, itl_ms: 10 }\n\
deployment:\n  mode: aggregated\n  interval_s: 10\n  startup_s: 5\n  scrape_s: 2\n  gpu_budget: 8\n  initial: { prefill: 0, decode: 1 }\n",
    )
    .unwrap();
    let (_emulator, _prometheus, api, prom) =
        emulated_cluster(dir.path(), &scenario.display().to_string(), &[]);
    let cfg = leaderless_config(dir.path(), prom, api, |text| {
        text.replace("planner:\n", "planner:\n  mode: aggregated\n")
    });
    let mut planner = spawn_run("run", &cfg, dir.path(), None);

    // Watched until the workers have fallen back after the ramp.
    let mut samples = Vec::new();
    let mut peak = 0;
    watch(&mut planner, api, 160, |s| {
        let services: Vec<&String> = s["replicas"].as_object().unwrap().keys().collect();
        assert_eq!(services, ["worker"], "the graph has one worker service");
        let (t, w) = (
            s["wall_s"].as_f64().unwrap(),
            s["replicas"]["worker"].as_u64().unwrap(),
        );
        samples.push((t, w));
        peak = peak.max(w);
        t > 110.0 && peak >= 3 && w < peak
    });
    let state = emulator_state(api);
    let log = planner.output();
    let writes = state["writes"].as_array().unwrap();
    assert!(
        !writes.is_empty(),
        "the planner wrote worker counts:\n{log}"
    );
    for w in writes {
        assert_eq!(w["service"], "worker", "{w}");
        assert_eq!(w["via"], "scale", "{w}");
        let n = w["replicas"].as_u64().unwrap();
        assert!((1..=8).contains(&n), "a write within [min, budget]: {w}");
    }
    println!("workers over time (wall s, workers): {samples:?}");
    assert!(peak >= 3, "workers rose under the ramp: {samples:?}\n{log}");
    let last = samples.last().unwrap().1;
    assert!(last < peak, "workers fell back after the ramp: {samples:?}");
    assert!(
        log.contains("aggregated worker service worker"),
        "the log names what is scaled:\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("\"message\":\"decision\"")
                && l.contains("workers meet TTFT and ITL")),
        "{log}"
    );
    // The calls made are the disaggregated loop's, on one adapter: all declared.
    assert_declared(&observed_calls(&state));
}

/// What the planner learned about the engines survives a restart: it exports its
/// corrections on `/metrics`, Prometheus scrapes them, and a new `run` reads them back
/// before its first decision. The emulated engines prefill twice as slowly as the profile
/// the planner is given says, so the prefill multiplier it learns is about 2.
#[test]
fn a_restarted_planner_reads_back_what_it_learned() {
    let dir = tempfile::tempdir().unwrap();
    let slow = std::process::Command::new(bin())
        .args(["profile", "--slower-prefill", "2"])
        .output()
        .unwrap();
    assert!(slow.status.success());
    std::fs::write(dir.path().join("slow.json"), &slow.stdout).unwrap();
    let scenario = dir.path().join("slow-prefill.yaml");
    std::fs::write(
        &scenario,
        "name: slow-prefill\ndescription: engines twice as slow at prefill as profiled\nseed: 5\nprofile: slow.json\n\
workload:\n  synthetic:\n    rate: { shape: constant, rps: 10 }\n    duration_s: 1000\n    isl: 3000\n    osl: 150\n\
sla: { ttft_ms: 400, itl_ms: 10 }\n\
deployment:\n  interval_s: 10\n  startup_s: 5\n  scrape_s: 2\n  gpu_budget: 12\n  initial: { prefill: 3, decode: 2 }\n",
    )
    .unwrap();
    let status = free_port();
    // Prometheus scrapes the planner's /metrics too, as a ServiceMonitor would.
    let (_emulator, _prometheus, api, prom) =
        emulated_cluster(dir.path(), &scenario.display().to_string(), &[status]);
    let cfg = leaderless_config(dir.path(), prom, api, |text| {
        text.replace("ttft_ms: 200", "ttft_ms: 400")
    });
    // The restarts below run variants of the same config.
    let text = std::fs::read_to_string(&cfg).unwrap();
    let run = |name: &str, cfg: &std::path::Path| spawn_run(name, cfg, dir.path(), Some(status));
    let learned_prefill = || {
        http_get(status, "/api/v1/status").and_then(|(_, b)| {
            serde_json::from_str::<serde_json::Value>(&b).ok()?["decision"]["corrections"]
                ["prefill"]
                .as_f64()
        })
    };
    let mut first = run("run-first", &cfg);
    wait_for("the planner to learn the slower prefill", 120, || {
        learned_prefill().is_some_and(|k| k > 1.6)
    });
    std::thread::sleep(std::time::Duration::from_secs(3)); // a scrape of what it learned
    let learned = learned_prefill().unwrap();
    assert!(terminate(&mut first, 20).success(), "{}", first.output());

    let mut second = run("run-second", &cfg);
    wait_for("a first decision after the restart", 40, || {
        learned_prefill().is_some()
    });
    let restored = learned_prefill().unwrap();
    let log = second.output();
    assert!(
        log.contains("model corrections restored from Prometheus"),
        "{log}"
    );
    // The history it warmed from holds the TTFT p99s (which tell the intervals that missed
    // the SLA), read with the count and the lengths.
    let warmed = log
        .lines()
        .find(|l| l.contains("forecasters warmed from Prometheus history"))
        .unwrap_or_else(|| panic!("{log}"));
    let warmed: serde_json::Value = serde_json::from_str(warmed).unwrap();
    assert!(
        warmed["with_latencies"].as_u64().is_some_and(|n| n > 0)
            && warmed["intervals"].as_u64().is_some_and(|n| n > 0),
        "{warmed}"
    );
    assert!(
        (restored / learned - 1.0).abs() < 0.1,
        "the first decision after the restart plans with what was learned: {restored} against {learned}\n{log}"
    );
    assert!(terminate(&mut second, 20).success());

    // Told not to read them back, it starts from the profile.
    let fresh_cfg = dir.path().join("fresh.yaml");
    std::fs::write(
        &fresh_cfg,
        text.replace(
            "history_intervals: 6",
            "history_intervals: 6\n  restore_corrections: false",
        ),
    )
    .unwrap();
    let mut fresh = run("run-fresh", &fresh_cfg);
    wait_for("a first decision without restoring", 40, || {
        learned_prefill().is_some()
    });
    let log = fresh.output();
    let first_decision = log
        .lines()
        .find(|l| l.contains("\"message\":\"decision\""))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        first_decision.contains("prefill x1.00"),
        "a first decision from the profile: {first_decision}"
    );
    assert!(terminate(&mut fresh, 20).success());

    // Given another profile (here the engines' own), corrections learned against the old
    // one are not read back: they are labelled with the profile they were learned against.
    let new_profile = dir.path().join("new-profile.yaml");
    std::fs::write(&new_profile, format!("profile: slow.json\n{text}")).unwrap();
    let mut other = run("run-other-profile", &new_profile);
    wait_for("a first decision with another profile", 40, || {
        learned_prefill().is_some()
    });
    let log = other.output();
    assert!(
        log.contains("no model corrections in Prometheus to restore"),
        "{log}"
    );
    assert!(terminate(&mut other, 20).success());
}

#[test]
fn the_prefix_caches_hit_rate_is_read_through_a_real_prometheus() {
    // Mooncake's conversations replayed on prefill engines that cache prompt prefixes: the
    // emulated workers export their hit rate under Dynamo's name, and the live source's
    // default query reads it (and counts the queue past it).
    let dir = tempfile::tempdir().unwrap();
    let trace = shared_data().join("traces/mooncake_conversation.jsonl");
    let scenario = dir.path().join("cached.yaml");
    std::fs::write(
        &scenario,
        format!(
            "name: cached\nprofile: default\nworkload:\n  trace:\n    file: {}\n    transform: {{ replicate: 4, replicate_shift_s: 15, spread_s: 3 }}\n\
sla: {{ ttft_ms: 1000, itl_ms: 10 }}\ndeployment:\n  interval_s: 10\n  startup_s: 5\n  gpu_budget: 16\n  prefix_cache: {{}}\n",
            trace.display()
        ),
    )
    .unwrap();
    let (_emulator, _prometheus, _api, prom) =
        emulated_cluster(dir.path(), &scenario.display().to_string(), &[]);
    let cfg: sla_planner::live::config::PrometheusConfig =
        serde_yaml_ng::from_str(&format!("url: http://127.0.0.1:{prom}\ntimeout_s: 3\n")).unwrap();
    let source = sla_planner::metrics::prometheus::PrometheusSource::new(
        &cfg,
        sla_planner::planner::solver::Mode::Disaggregated,
    )
    .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut seen = None;
    wait_for("a prefix cache hit rate in Prometheus", 90, || {
        seen = runtime
            .block_on(source.observe(0.0, 10.0))
            .ok()
            .filter(|o| o.prefix_cache_hit_rate.is_some_and(|h| h > 0.0));
        seen.is_some()
    });
    let obs = seen.unwrap();
    let hit_rate = obs.prefix_cache_hit_rate.unwrap();
    assert!(
        hit_rate < 0.5,
        "a few conversations' turns found cached: {obs:?}"
    );
    assert!(obs.isl_mean.is_some(), "{obs:?}");
}

//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

use sla_planner::planner::{Limits, Sla};
use sla_planner::profile::Profile;
use sla_planner::sim::{KvTransfer, SimConfig};
use sla_planner::workload::Request;

/// The shared reference data beside the project; CI always has it there.
pub fn shared_data() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    assert!(
        p.is_dir(),
        "the reference data is expected at {} (see README)",
        p.display()
    );
    p
}

pub fn h200_dir() -> PathBuf {
    shared_data().join("profiles/h200_llama-3.1-8b-fp8_tp1p_tp1d")
}

pub fn sim_config(profile: &Profile, prefill: u32, decode: u32, duration_s: f64) -> SimConfig {
    SimConfig {
        sla: Sla {
            ttft_ms: 200.0,
            itl_ms: 10.0,
        },
        limits: Limits {
            min_prefill: 1,
            max_prefill: 64,
            min_decode: 1,
            max_decode: 64,
            gpu_budget: 128,
            gpus_per_prefill_engine: 1,
            gpus_per_decode_engine: 1,
        },
        interval_s: 60.0,
        startup_s: 60.0,
        told_startup_s: 60.0,
        scrape_s: 15.0,
        prefill_token_budget: profile.max_context_tokens as u32,
        kv_transfer: KvTransfer::default(),
        max_decode_batch: None,
        initial: (prefill, decode),
        duration_s,
        max_context_tokens: profile.max_context_tokens,
        aggregated: false,
        withhold: Vec::new(),
        signal_outages: Vec::new(),
        prefix_cache: None,
        router: Default::default(),
        latency_histograms: None,
        itl_observed: Default::default(),
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sla-planner")
}

/// `sla-planner decide ARGS` fed `input`: its exit code, each output line as JSON, stderr.
pub fn decide(args: &[&str], input: &str) -> (i32, Vec<serde_json::Value>, String) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(bin())
        .arg("decide")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each output line is JSON"))
        .collect();
    (
        out.status.code().unwrap_or(-1),
        lines,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What `sla-planner ARGS` prints on standard output, run from the project directory; it
/// must succeed.
pub fn run_stdout(args: &[&str]) -> String {
    let out = std::process::Command::new(bin())
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sla-planner {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `sla-planner` with `args` from the project directory, expects success, and parses
/// its standard output as JSON.
pub fn run_json(args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&run_stdout(args)).unwrap()
}

/// `simulate --json` of `scenario` under `policy` with each of `sets` set: the summary.
pub fn simulate_json(scenario: &str, policy: &str, sets: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "simulate",
        "--scenario",
        scenario,
        "--policy",
        policy,
        "--json",
    ];
    for set in sets {
        args.extend(["--set", set]);
    }
    run_json(&args)
}

/// `simulate` of `sin-5-45` under the planner with `set` set: an input error (exit code
/// 2); its message.
pub fn simulate_input_error(set: &str) -> String {
    let out = std::process::Command::new(bin())
        .args([
            "simulate",
            "--scenario",
            "sin-5-45",
            "--policy",
            "planner",
            "--set",
            set,
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    err
}

/// A child process killed when dropped, its output kept in files.
pub struct Proc {
    pub child: std::process::Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, program: &str, args: &[String], dir: &std::path::Path) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let child = std::process::Command::new(program)
            .args(args)
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        Proc { child, log }
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback port nothing listens on, for a process the test starts next. Chosen below
/// the kernel's ephemeral range (32768-60999 by default): a port from there (what binding
/// port 0 gives) may be handed to an outgoing connection, such as Prometheus scraping,
/// before the process binds it, and the process then fails with "address in use".
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    static DRAWS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    loop {
        // A random draw (the standard library's hasher keys are random per process).
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(DRAWS.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let port = 20_000 + (h.finish() % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A plain HTTP/1.0 GET on loopback: (status, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

pub fn wait_for(what: &str, timeout_s: u64, mut ok: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while start.elapsed().as_secs() < timeout_s {
        if ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    panic!("timed out after {timeout_s} s waiting for {what}");
}

/// The emulator's own view: writes seen, replicas asked for, ready replicas.
pub fn emulator_state(port: u16) -> serde_json::Value {
    let (code, body) = http_get(port, "/emulator/state").expect("the emulator answers");
    assert_eq!(code, 200);
    serde_json::from_str(&body).unwrap()
}

/// A Prometheus scraping `target_port` every second.
pub fn start_prometheus(dir: &std::path::Path, port: u16, target_port: u16) -> Proc {
    start_prometheus_scraping(dir, port, &[target_port])
}

/// A Prometheus scraping each of `target_ports` every second.
pub fn start_prometheus_scraping(dir: &std::path::Path, port: u16, target_ports: &[u16]) -> Proc {
    let cfg = dir.join("prometheus.yml");
    let targets: Vec<String> = target_ports
        .iter()
        .map(|p| format!("'127.0.0.1:{p}'"))
        .collect();
    std::fs::write(
        &cfg,
        format!("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: dynamo\n    static_configs:\n      - targets: [{}]\n", targets.join(", ")),
    )
    .unwrap();
    let data = dir.join("prometheus-data");
    let p = Proc::spawn(
        "prometheus",
        "prometheus",
        &[
            format!("--config.file={}", cfg.display()),
            format!("--storage.tsdb.path={}", data.display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--log.level=warn".into(),
        ],
        dir,
    );
    wait_for("Prometheus to be ready", 60, || {
        http_get(port, "/-/ready").is_some_and(|(c, _)| c == 200)
    });
    p
}

/// A `run` config pointing at this Prometheus and this emulator.
pub fn run_config(
    dir: &std::path::Path,
    name: &str,
    prom_port: u16,
    api_port: u16,
    extra: &str,
) -> PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        format!(
            "interval_s: 10\nstartup_s: 5\nsla: {{ ttft_ms: 200, itl_ms: 10 }}\nlimits: {{ gpu_budget: 8 }}\n\
planner:\n  stabilizer: {{ scale_down_window_s: 20 }}\n\
prometheus:\n  url: http://127.0.0.1:{prom_port}\n  timeout_s: 3\n  history_intervals: 6\n\
kubernetes:\n  namespace: default\n  dgd: sla-demo\n  api_url: http://127.0.0.1:{api_port}\n  timeout_s: 3\n{extra}"
        ),
    )
    .unwrap();
    path
}

/// `(group, resource, verb)` of a Kubernetes API call.
pub fn rbac_triple(method: &str, path: &str) -> (String, String, String) {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    // /apis/{group}/{version}/namespaces/{ns}/{resource}[/{name}[/{sub}]] or /api/v1/namespaces/...
    let (group, rest) = match parts.first() {
        Some(&"apis") => (parts[1].to_string(), &parts[3..]),
        _ => (String::new(), &parts[2..]),
    };
    let rest = if rest.first() == Some(&"namespaces") {
        &rest[2..]
    } else {
        rest
    };
    let resource = match rest.len() {
        3 => format!("{}/{}", rest[0], rest[2]),
        _ => rest[0].to_string(),
    };
    let named = rest.len() >= 2;
    let verb = match (method, named) {
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", _) => "delete",
        _ => "unknown",
    };
    (group, resource, verb.to_string())
}

/// The rules of the Role in deploy/rbac.yaml, as `(group, resource, verb)`.
pub fn role_rules() -> std::collections::BTreeSet<(String, String, String)> {
    use serde::Deserialize;
    let text =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/rbac.yaml"))
            .unwrap();
    let mut out = std::collections::BTreeSet::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let v = serde_json::Value::deserialize(doc).unwrap();
        if v["kind"] != "Role" {
            continue;
        }
        for rule in v["rules"].as_array().unwrap() {
            for g in rule["apiGroups"].as_array().unwrap() {
                for r in rule["resources"].as_array().unwrap() {
                    for verb in rule["verbs"].as_array().unwrap() {
                        out.insert((
                            g.as_str().unwrap().to_string(),
                            r.as_str().unwrap().to_string(),
                            verb.as_str().unwrap().to_string(),
                        ));
                    }
                }
            }
        }
    }
    out
}

/// `sla_planner::scaler::kube::API_CALLS` as a set of owned triples.
pub fn declared_calls() -> std::collections::BTreeSet<(String, String, String)> {
    sla_planner::scaler::kube::API_CALLS
        .iter()
        .map(|(g, r, v)| (g.to_string(), r.to_string(), v.to_string()))
        .collect()
}

/// The calls the emulator saw, as triples.
pub fn observed_calls(
    state: &serde_json::Value,
) -> std::collections::BTreeSet<(String, String, String)> {
    state["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| rbac_triple(c[0].as_str().unwrap(), c[1].as_str().unwrap()))
        .collect()
}

/// An HTTP/1.0 request with an optional bearer token and JSON body: (status, body).
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let body = body.unwrap_or("");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(s, "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let (head, body) = buf.split_once("\r\n\r\n").unwrap();
    (
        head.split_whitespace().nth(1).unwrap().parse().unwrap(),
        body.to_string(),
    )
}

/// `sla-planner demo` on a free port; `token` enables the API's writes.
pub fn start_demo(dir: &std::path::Path, speed: f64, token: Option<&str>) -> (Proc, u16) {
    start_demo_with(dir, speed, token, &[])
}

/// `start_demo` with more arguments (`--scenario NAME`, say).
pub fn start_demo_with(
    dir: &std::path::Path,
    speed: f64,
    token: Option<&str>,
    extra: &[&str],
) -> (Proc, u16) {
    let port = free_port();
    let mut args = vec![
        "demo".into(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--speed".into(),
        speed.to_string(),
        "--log-format".into(),
        "json".into(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    if let Some(t) = token {
        let f = dir.join("token");
        std::fs::write(&f, format!("{t}\n")).unwrap();
        args.extend(["--api-token-file".into(), f.display().to_string()]);
    }
    let p = Proc::spawn("demo", bin(), &args, dir);
    wait_for("the demo's API", 30, || {
        http_get(port, "/healthz").is_some_and(|(c, _)| c == 200)
    });
    (p, port)
}

/// Sends SIGTERM and waits up to `timeout_s` for the process to exit; its exit status.
pub fn terminate(p: &mut Proc, timeout_s: u64) -> std::process::ExitStatus {
    let pid = p.child.id().to_string();
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -TERM {pid}");
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = p.child.try_wait().unwrap() {
            return status;
        }
        assert!(
            start.elapsed().as_secs() < timeout_s,
            "no exit within {timeout_s} s of SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// `n` requests of `isl` and `osl` tokens arriving evenly at `per_s` a second from time 0.
pub fn steady_requests(n: usize, per_s: f64, isl: u32, osl: u32) -> Vec<Request> {
    (0..n)
        .map(|i| Request::new(i as f64 / per_s, isl, osl))
        .collect()
}

//! The command line: one `Args` struct, one function per subcommand.

use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};

use crate::error::InputError;
use crate::planner::{shown, Observation};
use crate::report::{self, PolicySummary, ScenarioInfo, Summary};
use crate::scenario::{self, Overrides};
use crate::sim::policies::{build_policy, check_policy_spec, PolicyEnv};
use crate::sim::{simulate, SimResult};
use crate::workload::{TraceFormat, TraceTransform, Window};

#[derive(Parser, Debug)]
#[command(
    name = "sla-planner",
    version,
    about = "SLA-aware autoscaling planner for NVIDIA Dynamo LLM inference"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Dry run: replay a workload through a simulated deployment under one or more policies.
    Simulate(SimulateArgs),
    /// Compare policies over scenarios and cold starts, as one markdown table.
    Compare(CompareArgs),
    /// The decision core behind a pipe: observations as JSON lines on stdin, one decision
    /// per line on stdout (docs/decide.md).
    Decide(DecideArgs),
    /// Run beside a DynamoGraphDeployment: Prometheus in, DGDSA `/scale` out (docs/run.md).
    Run(RunArgs),
    /// A simulated Dynamo deployment in real time: Dynamo metrics and the Kubernetes API
    /// subset a planner uses, for pointing a planner at with no cluster (a test double).
    Emulate(EmulateArgs),
    /// The run loop against an in-process simulated deployment: no Prometheus, no cluster.
    Demo(DemoArgs),
    /// Print a profile (Dynamo profiler directory or profile JSON) in the project's own format.
    Profile(ProfileArgs),
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// JSON when stdout is not a terminal, text when it is.
    Auto,
    Json,
    Text,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The config file (YAML; docs/run.md).
    #[arg(long)]
    pub config: PathBuf,
    /// Serve the API, /metrics and the dashboard here (the Service in deploy/ exposes it in-cluster only).
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// A file holding the bearer token that enables the API's writes (pause, resume, limits);
    /// without it they answer 403.
    #[arg(long)]
    pub api_token_file: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "auto")]
    pub log_format: LogFormat,
    /// Check the config, the DynamoGraphDeployment, its adapters and Prometheus, print what
    /// would be scaled, and exit (nothing is decided or written).
    #[arg(long)]
    pub check: bool,
}

#[derive(Args, Debug)]
pub struct EmulateArgs {
    #[arg(long, default_value = "127.0.0.1:9400")]
    pub listen: std::net::SocketAddr,
    /// The workload, SLA and deployment of this scenario (name or file).
    #[arg(long, default_value = "e2e-ramp")]
    pub scenario: String,
    /// Simulated seconds per wall-clock second.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Cold start of a new replica, simulated seconds (overrides the scenario).
    #[arg(long)]
    pub startup_s: Option<f64>,
    #[arg(long, default_value = "default")]
    pub namespace: String,
    #[arg(long, default_value = "sla-demo")]
    pub dgd: String,
    #[arg(long, default_value = "llama-3.1-8b")]
    pub model: String,
    /// Share of API calls answered 500.
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Share of writes answered 409 Conflict.
    #[arg(long, default_value_t = 0.0)]
    pub conflict_rate: f64,
    /// Added to every API call, ms.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Answer scale writes 403 Forbidden.
    #[arg(long)]
    pub forbid_scale: bool,
    #[arg(long, value_enum, default_value = "auto")]
    pub log_format: LogFormat,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Serve the API, /metrics and the dashboard here.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// A file holding the bearer token that enables the API's writes; without it they answer 403.
    #[arg(long)]
    pub api_token_file: Option<PathBuf>,
    /// The workload, SLA, deployment and planner settings of this scenario (name or file).
    #[arg(long, default_value = "sin-5-45")]
    pub scenario: String,
    /// Simulated seconds per wall-clock second.
    #[arg(long, default_value_t = 20.0)]
    pub speed: f64,
    #[arg(long, value_enum, default_value = "auto")]
    pub log_format: LogFormat,
}

#[derive(Args, Debug)]
pub struct DecideArgs {
    /// Take the SLA, limits, profile and planner settings from this scenario (name or file).
    #[arg(long, conflicts_with = "config")]
    pub scenario: Option<String>,
    /// Take them from this config file: the profile, sla, deployment and planner sections of a
    /// scenario, or `run`'s own config (decided as the running planner decides).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Set one field of the scenario or config file (repeatable), as `simulate --set` does:
    /// `--set planner.headroom_quantile=0.95`.
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    pub sets: Vec<String>,
    /// Read on past fields an observation does not have, naming each once on stderr,
    /// instead of answering the line with an error (for a tool whose lines carry more).
    #[arg(long)]
    pub ignore_unknown_fields: bool,
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Scenarios (repeatable); all shipped scenarios but the real-time e2e-ramp when absent.
    #[arg(long = "scenario")]
    pub scenarios: Vec<String>,
    /// Cold starts to run each scenario with, seconds (repeatable).
    #[arg(long = "startup-s", default_values_t = [60.0, 180.0])]
    pub startups: Vec<f64>,
    /// Policies (repeatable).
    #[arg(long = "policy", default_values_t = ["planner".to_string(), "static:best".to_string(), "dynamo".to_string(), "threshold".to_string(), "oracle".to_string(), "budget-at-start".to_string()])]
    pub policies: Vec<String>,
    /// Also write the table to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// A shipped scenario name (see simulations/) or a scenario YAML file.
    #[arg(long, default_value = "sin-5-45")]
    pub scenario: String,
    /// Replay this trace instead of the scenario's workload (Mooncake JSONL; Azure or BurstGPT CSV; plain CSV or JSONL).
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Trace format, when the extension and header do not tell.
    #[arg(long, value_enum)]
    pub trace_format: Option<TraceFormatArg>,
    /// Skip malformed trace lines and report how many, instead of stopping at the first.
    #[arg(long)]
    pub skip_bad_lines: bool,
    /// With --trace: keep arrivals in START:END seconds.
    #[arg(long, value_name = "START:END")]
    pub window: Option<String>,
    /// With --trace: multiply arrival times (0.5 plays twice as fast).
    #[arg(long)]
    pub time_scale: Option<f64>,
    /// With --trace: overlay K interleaved copies to raise the load.
    #[arg(long, value_name = "K")]
    pub replicate: Option<u32>,
    /// With --trace: its timestamps were rounded to S seconds (Mooncake's to 3); place each
    /// arrival at random within the S seconds after it (seeded) instead of all at once.
    #[arg(long, value_name = "S")]
    pub spread_s: Option<f64>,
    /// A Dynamo profiler output directory or a profile JSON file, instead of the scenario's.
    #[arg(long)]
    pub profile: Option<PathBuf>,
    /// The profile the policies are given, when it is not the one the simulated engines run
    /// (a stale or borrowed profile); the oracle and static:best keep the engines' own.
    #[arg(long)]
    pub planner_profile: Option<PathBuf>,
    /// Policy to run (repeatable): planner | planner:FIELD=VALUE[;FIELD=VALUE...] (a variant with those settings changed) | static:P,D | static:best | schedule:FILE | dynamo | dynamo:no-correction | threshold | oracle | oracle:TARGET | budget-at-start.
    #[arg(long = "policy")]
    pub policies: Vec<String>,
    /// Cold start of a new replica, seconds (overrides the scenario).
    #[arg(long)]
    pub startup_s: Option<f64>,
    /// GPU budget (overrides the scenario).
    #[arg(long)]
    pub gpu_budget: Option<u32>,
    /// Seed for synthetic workloads (overrides the scenario).
    #[arg(long)]
    pub seed: Option<u64>,
    /// K times the load on a deployment K times as large: a synthetic workload's rates, or
    /// K times the trace's copies (K times closer together), and the GPU budget, per-role
    /// maxima and initial counts (rounded up). For a trace, K times its copies must be whole.
    #[arg(long, value_name = "K")]
    pub load_scale: Option<f64>,
    /// Set one field of the scenario file (repeatable), by its path: `--set sla.ttft_ms=500`,
    /// `--set deployment.interval_s=30`, `--set planner.headroom_quantile=0.95`. The value is
    /// read as YAML.
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    pub sets: Vec<String>,
    /// Directory for `summary.json`, `timeline_<policy>.csv` and `report.html`.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the summary JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum TraceFormatArg {
    Mooncake,
    Azure,
    Burstgpt,
    Plain,
}

impl From<TraceFormatArg> for TraceFormat {
    fn from(f: TraceFormatArg) -> TraceFormat {
        match f {
            TraceFormatArg::Mooncake => TraceFormat::Mooncake,
            TraceFormatArg::Azure => TraceFormat::Azure,
            TraceFormatArg::Burstgpt => TraceFormat::Burstgpt,
            TraceFormatArg::Plain => TraceFormat::Plain,
        }
    }
}

#[derive(Args, Debug)]
pub struct ProfileArgs {
    /// A Dynamo profiler output directory or a profile JSON file; the embedded default if absent.
    #[arg(long)]
    pub profile: Option<PathBuf>,
    /// Multiply every prefill time by F (throughput divided): an engine F times slower at
    /// prefill than profiled, for dry runs of a stale profile (`--planner-profile`).
    #[arg(long, value_name = "F", default_value_t = 1.0)]
    pub slower_prefill: f64,
    /// Multiply every decode ITL by F (throughput divided).
    #[arg(long, value_name = "F", default_value_t = 1.0)]
    pub slower_decode: f64,
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Simulate(a) => run_simulate(a),
        Command::Compare(a) => run_compare(a),
        Command::Decide(a) => run_decide(a),
        Command::Run(a) => {
            init_logs(a.log_format);
            let cfg = crate::live::config::RunConfig::load(&a.config)?;
            let dir = a
                .config
                .parent()
                .map(std::path::Path::to_path_buf)
                .unwrap_or_default();
            if a.check {
                return runtime()?.block_on(crate::live::run::check(cfg, &dir));
            }
            let token = read_token(a.api_token_file.as_deref())?;
            runtime()?.block_on(crate::live::run::run(cfg, &dir, a.listen, token))
        }
        Command::Emulate(a) => run_emulate(a),
        Command::Demo(a) => run_demo(a),
        Command::Profile(a) => {
            let p = match a.profile {
                Some(path) => crate::profile::load_profile(&path)?,
                None => crate::profile::Profile::embedded_default(),
            };
            for (flag, f) in [
                ("--slower-prefill", a.slower_prefill),
                ("--slower-decode", a.slower_decode),
            ] {
                if !(f.is_finite() && f > 0.0) {
                    return Err(
                        InputError::Usage(format!("{flag} {f}: must be a number > 0")).into(),
                    );
                }
            }
            let p = p.slowed(a.slower_prefill, a.slower_decode);
            println!("{}", crate::profile::to_own_json(&p));
            Ok(())
        }
    }
}

fn parse_window(s: &str) -> Result<Window, InputError> {
    let bad = || {
        InputError::Usage(format!(
            "--window {s:?}: expected START:END in seconds, such as 0:600"
        ))
    };
    let (a, b) = s.split_once(':').ok_or_else(bad)?;
    Ok(Window {
        start_s: a.trim().parse().map_err(|_| bad())?,
        end_s: b.trim().parse().map_err(|_| bad())?,
    })
}

/// Results of a dry run, for callers other than the terminal (tests, benches).
pub struct DryRun {
    pub summary: Summary,
    pub results: Vec<SimResult>,
}

pub fn dry_run(a: &SimulateArgs, show_progress: bool) -> Result<DryRun, InputError> {
    dry_run_applicable(a, show_progress, false)
}

/// `dry_run`; with `skip_inapplicable`, the policies that cannot steer the scenario's
/// deployment (pool-sizing baselines on an aggregated one) are left out with a note, as
/// `compare` runs one list of policies over every scenario.
fn dry_run_applicable(
    a: &SimulateArgs,
    show_progress: bool,
    skip_inapplicable: bool,
) -> Result<DryRun, InputError> {
    let started = Instant::now();
    if a.trace.is_none()
        && (a.window.is_some()
            || a.time_scale.is_some()
            || a.replicate.is_some()
            || a.spread_s.is_some())
    {
        return Err(InputError::Usage(
            "--window, --time-scale, --replicate and --spread-s apply to --trace".into(),
        ));
    }
    for p in &a.policies {
        check_policy_spec(p)?;
    }
    let ov = Overrides {
        trace: a.trace.clone(),
        trace_format: a.trace_format.map(Into::into),
        skip_bad_lines: a.skip_bad_lines,
        transform: TraceTransform {
            window: a.window.as_deref().map(parse_window).transpose()?,
            time_scale: a.time_scale,
            replicate: a.replicate,
            replicate_shift_s: None,
            spread_s: a.spread_s,
        },
        profile: a.profile.clone(),
        planner_profile: a.planner_profile.clone(),
        startup_s: a.startup_s,
        gpu_budget: a.gpu_budget,
        seed: a.seed,
        sets: scenario::parse_sets(&a.sets)?,
        load_scale: a.load_scale,
    };
    let mut sc = scenario::load(&a.scenario, &ov)?;
    let mut specs: Vec<String> = if a.policies.is_empty() {
        sc.file.policies.clone()
    } else {
        a.policies.clone()
    };
    if skip_inapplicable && sc.sim.aggregated {
        let (left, kept): (Vec<String>, Vec<String>) = specs
            .into_iter()
            .partition(|p| crate::sim::policies::sizes_pools(p));
        if !left.is_empty() {
            sc.notes.push(format!(
                "not run: {} (it sizes prefill and decode pools; this deployment is aggregated)",
                left.join(", ")
            ));
        }
        specs = kept;
    }
    if specs.is_empty() {
        return Err(InputError::Usage(
            "no policy: pass --policy (the scenario names none)".into(),
        ));
    }
    for p in &specs {
        check_policy_spec(p).map_err(|e| InputError::Scenario {
            file: sc.origin.clone(),
            field: "policies".into(),
            message: e.to_string(),
        })?;
    }
    let env = policy_env(&sc);
    // Each policy writes its own timeline: two of one name would write one file, the
    // second run's over the first's.
    let mut stems = std::collections::BTreeMap::new();
    for spec in &specs {
        if let Some(earlier) = stems.insert(crate::report::file_stem(spec), spec) {
            return Err(InputError::Usage(format!(
                "--policy {spec:?} is given twice{}: each policy is run once",
                if earlier == spec {
                    String::new()
                } else {
                    format!(" (as {earlier:?}, the same name in its timeline file)")
                }
            )));
        }
    }
    let mut policies = Vec::new();
    for spec in &specs {
        policies.push(build_policy(spec, &env)?);
    }
    let progress = show_progress.then(|| {
        let pb = indicatif::ProgressBar::new((sc.requests.len() * policies.len()) as u64);
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} simulating {pos}/{len} request-runs [{elapsed}]",
            )
            .expect("valid template"),
        );
        pb
    });
    // Policies run in parallel, one simulation each; results keep the order given.
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(policies.len())
        .max(1);
    let mut results: Vec<Option<SimResult>> = (0..policies.len()).map(|_| None).collect();
    let chunks: Vec<Vec<(usize, Box<dyn crate::planner::Policy>)>> = {
        let mut c: Vec<Vec<_>> = (0..threads).map(|_| Vec::new()).collect();
        for (i, p) in policies.into_iter().enumerate() {
            c[i % threads].push((i, p));
        }
        c
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                let sc = &sc;
                let progress = progress.as_ref();
                s.spawn(move || {
                    chunk
                        .into_iter()
                        .map(|(i, mut p)| {
                            let local = progress.map(|_| indicatif::ProgressBar::hidden());
                            let r = simulate(
                                &sc.sim,
                                &sc.profile,
                                &sc.requests,
                                p.as_mut(),
                                local.as_ref(),
                            );
                            if let Some(pb) = progress {
                                pb.inc(sc.requests.len() as u64);
                            }
                            (i, r)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            for (i, r) in h.join().expect("simulation threads do not panic") {
                results[i] = Some(r);
            }
        }
    });
    if let Some(pb) = progress {
        pb.finish_and_clear();
    }
    let results: Vec<SimResult> = results
        .into_iter()
        .map(|r| r.expect("every policy ran"))
        .collect();
    let summary = Summary {
        scenario: ScenarioInfo {
            name: sc.file.name.clone(),
            description: sc.file.description.clone(),
            origin: sc.origin.clone(),
            workload: sc.workload_source.clone(),
            requests: sc.requests.len(),
            duration_s: sc.sim.duration_s,
            interval_s: sc.sim.interval_s,
            startup_s: sc.sim.startup_s,
            gpu_budget: sc.sim.limits.gpu_budget,
            profile: sc.profile.name.clone(),
            notes: (!a.sets.is_empty())
                .then(|| format!("set on the command line: {}", a.sets.join(", ")))
                .into_iter()
                .chain(sc.notes.iter().cloned())
                .collect(),
        },
        sla: sc.sim.sla,
        policies: results
            .iter()
            .map(|r| PolicySummary::of(r, &sc.sim.sla))
            .collect(),
        wall_time_s: (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
    };
    Ok(DryRun { summary, results })
}

fn run_simulate(a: SimulateArgs) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let run = dry_run(&a, std::io::stderr().is_terminal())?;
    if let Some(dir) = &a.out {
        std::fs::create_dir_all(dir).map_err(|e| InputError::io(dir, e))?;
        report::write_summary(dir, &run.summary)?;
        for r in &run.results {
            report::write_timeline(dir, r)?;
            report::write_exchanges(dir, r)?;
        }
        let html = report::render_html(&run.summary, &run.results);
        let path = dir.join("report.html");
        std::fs::write(&path, html).map_err(|e| InputError::io(&path, e))?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&run.summary)?);
    } else {
        let s = &run.summary.scenario;
        println!(
            "{}: {} requests, {} ({:.0} s), SLA TTFT <= {} ms, ITL <= {} ms, cold start {:.0} s, budget {} GPUs",
            s.name, s.requests, s.workload, s.duration_s, run.summary.sla.ttft_ms, run.summary.sla.itl_ms, s.startup_s, s.gpu_budget
        );
        for n in &s.notes {
            println!("note: {n}");
        }
        print!("{}", report::table(&run.summary.policies));
        let hits: Vec<String> = run
            .summary
            .policies
            .iter()
            .filter_map(|p| {
                let share = p.prefix_cache_hit_share?;
                Some(format!("{} {:.1}%", p.name, 100.0 * share))
            })
            .collect();
        if !hits.is_empty() {
            println!("prompt tokens found in a prefix cache: {}", hits.join(", "));
        }
        println!("wall time {:.2} s", run.summary.wall_time_s);
        if let Some(dir) = &a.out {
            println!(
                "wrote {}/summary.json, timeline_*.csv, observations_*.jsonl, decisions_*.jsonl, report.html",
                dir.display()
            );
        }
    }
    Ok(())
}

fn simulate_args(scenario: &str, startup_s: f64, policies: &[String]) -> SimulateArgs {
    SimulateArgs {
        scenario: scenario.to_string(),
        trace: None,
        trace_format: None,
        skip_bad_lines: false,
        window: None,
        time_scale: None,
        replicate: None,
        spread_s: None,
        profile: None,
        planner_profile: None,
        policies: policies.to_vec(),
        startup_s: Some(startup_s),
        gpu_budget: None,
        seed: None,
        load_scale: None,
        sets: Vec::new(),
        out: None,
        json: false,
    }
}

fn run_compare(a: CompareArgs) -> anyhow::Result<()> {
    let scenarios: Vec<String> = if a.scenarios.is_empty() {
        // e2e-ramp is a 200 s real-time ramp for the emulator, not a planning benchmark.
        crate::scenario::EMBEDDED
            .iter()
            .filter(|(n, _)| *n != "e2e-ramp")
            .map(|(n, _)| n.to_string())
            .collect()
    } else {
        a.scenarios.clone()
    };
    let jobs: Vec<(&String, f64)> = scenarios
        .iter()
        .flat_map(|sc| a.startups.iter().map(move |&startup| (sc, startup)))
        .collect();
    // Runs go to one worker per core (most of a run is one policy's search, on one core);
    // the table keeps the order of the jobs.
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(jobs.len())
        .max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    // After a run fails (a bad scenario, say) no new run starts: the error comes sooner.
    let failed = std::sync::atomic::AtomicBool::new(false);
    let mut summaries: Vec<Option<Result<Summary, InputError>>> =
        (0..jobs.len()).map(|_| None).collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    while !failed.load(std::sync::atomic::Ordering::Relaxed) {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&(sc, startup)) = jobs.get(i) else {
                            break;
                        };
                        eprintln!("running {sc} with a {startup:.0} s cold start");
                        let args = simulate_args(sc, startup, &a.policies);
                        let run = dry_run_applicable(&args, false, true).map(|r| r.summary);
                        if run.is_err() {
                            failed.store(true, std::sync::atomic::Ordering::Relaxed);
                        }
                        done.push((i, run));
                    }
                    done
                })
            })
            .collect();
        for h in handles {
            for (i, r) in h.join().expect("comparison threads do not panic") {
                summaries[i] = Some(r);
            }
        }
    });
    let mut runs = Vec::new();
    for (&(sc, startup), summary) in jobs.iter().zip(summaries) {
        // Jobs are started in order and none after a failure, so a job not run comes after
        // a failed one, whose error returns first.
        let summary = summary.expect("a job not run follows a failed one")?;
        for note in &summary.scenario.notes {
            eprintln!("{sc} with a {startup:.0} s cold start: {note}");
        }
        runs.push((sc.clone(), startup, summary));
    }
    let table = report::comparison_markdown(&runs);
    print!("{table}");
    if let Some(path) = &a.out {
        std::fs::write(path, &table).map_err(|e| InputError::io(path, e))?;
    }
    Ok(())
}

/// The share of an interval that may overlap the previous observation's: clock jitter.
const OVERLAP_ALLOWED: f64 = 0.05;

/// How `decide` answers a field that an observation does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownFields {
    /// The line is answered with an error naming the field: a typo must not pass silently.
    Reject,
    /// The line is decided without the field; the caller names it.
    Ignore,
}

/// `decide`'s answer to one input line.
#[derive(Debug, Clone, PartialEq)]
pub struct DecideAnswer {
    /// The decision, or an error naming the field, as one JSON line.
    pub text: String,
    /// The line was a valid observation and was decided.
    pub decided: bool,
    /// Fields of the line that an observation does not have (`ttft_ms.p95`), read past.
    pub ignored: Vec<String>,
}

/// One line of JSON read as an observation: the observation and the paths of the fields it
/// does not have, or the error, prefixed with the field it is about.
pub fn read_observation(line: &str) -> Result<(Observation, Vec<String>), String> {
    if let Some(at) = array_for_an_object(line) {
        return Err(match at {
            None => "an observation is a JSON object, one a line: got an array".to_string(),
            Some(field) => format!("field {field}: an object expected, got an array"),
        });
    }
    let mut ignored = Vec::new();
    let mut note = |path: serde_ignored::Path| ignored.push(field_path(&path));
    let de = &mut serde_json::Deserializer::from_str(line);
    let parsed: Result<Observation, _> =
        serde_path_to_error::deserialize(serde_ignored::Deserializer::new(&mut *de, &mut note));
    let obs = parsed.map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.inner().to_string()
        } else {
            format!("field {path}: {}", e.inner())
        }
    })?;
    // A second value on the line (two observations run together) would go unread.
    de.end().map_err(|e| {
        format!(
            "more on the line after the observation, from column {}: one observation a line",
            e.column()
        )
    })?;
    Ok((obs, ignored))
}

/// The parts of an observation that are objects, as JSON pointers below the line's root
/// (held to `Observation`'s own by `tests/decide_schema.rs`).
const OBJECT_PARTS: [&str; 6] = [
    "/ttft_ms",
    "/itl_ms",
    "/kv_utilization",
    "/replicas",
    "/replicas/prefill",
    "/replicas/decode",
];

/// Where the line holds an array in place of an object: `Some(None)` for the whole line,
/// `Some(Some(field))` for a part of it. serde reads an array into a struct's fields in
/// order, so `[60, 60, 600]` would be read as an observation at 60 s; no field of an
/// observation is a list, and an array is a mistake to name, not fields by position.
fn array_for_an_object(line: &str) -> Option<Option<String>> {
    if !line.contains('[') {
        return None;
    }
    // Not JSON at all: the deserializer says where.
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    if value.is_array() {
        return Some(None);
    }
    OBJECT_PARTS
        .iter()
        .find(|at| value.pointer(at).is_some_and(serde_json::Value::is_array))
        .map(|at| Some(at[1..].replace('/', ".")))
}

/// A field's path as the observation's documentation writes it, `ttft_ms.p95`: the keys
/// and indices from the line's root, with none of serde's steps into an `Option`.
fn field_path(path: &serde_ignored::Path) -> String {
    use serde_ignored::Path;
    let mut steps = Vec::new();
    let mut at = path;
    loop {
        at = match at {
            Path::Root => break,
            Path::Map { parent, key } => {
                steps.push(key.clone());
                parent
            }
            Path::Seq { parent, index } => {
                steps.push(index.to_string());
                parent
            }
            Path::Some { parent }
            | Path::NewtypeStruct { parent }
            | Path::NewtypeVariant { parent } => parent,
        };
    }
    steps.reverse();
    steps.join(".")
}

/// Whether the line's `replicas` leaves out `prefill`, which serde fills with zeros (read
/// after the line has parsed as an observation, so this second, lenient read cannot fail
/// where that one passed).
fn replicas_without_prefill(line: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Line {
        replicas: Option<Roles>,
    }
    #[derive(serde::Deserialize)]
    struct Roles {
        prefill: Option<serde::de::IgnoredAny>,
    }
    matches!(
        serde_json::from_str::<Line>(line),
        Ok(Line {
            replicas: Some(Roles { prefill: None })
        })
    )
}

/// One input line of `decide`, answered: the decision, or an error naming the field.
/// `mode` is the deployment's: only aggregated workers may leave `replicas.prefill` out.
pub fn decide_line(
    policy: &mut dyn crate::planner::Policy,
    mode: crate::planner::solver::Mode,
    line: &str,
    line_no: u64,
    last_time_s: &mut Option<f64>,
    unknown: UnknownFields,
) -> DecideAnswer {
    let err = |msg: String| DecideAnswer {
        text: serde_json::json!({ "line": line_no, "error": msg }).to_string(),
        decided: false,
        ignored: Vec::new(),
    };
    let (obs, ignored) = match read_observation(line) {
        Ok(read) => read,
        Err(msg) => return err(msg),
    };
    if unknown == UnknownFields::Reject {
        if let Some(field) = ignored.first() {
            return err(format!(
                "field {field}: not a field of an observation (docs/decide.md lists them; `decide --ignore-unknown-fields` reads on past such fields)"
            ));
        }
    }
    if let Err(m) = obs.validate() {
        return err(format!("field {m}"));
    }
    if mode == crate::planner::solver::Mode::Disaggregated && replicas_without_prefill(line) {
        return err("field replicas.prefill: missing: a disaggregated deployment reports its prefill engines' counts beside decode's, or leaves `replicas` out where they are not known (only aggregated workers, reported under decode, leave `prefill` out)".to_string());
    }
    // Observations describe consecutive intervals; one out of order would be planned as if
    // time had gone back (windows and forecasts would read it as new).
    if let Some(last) = *last_time_s {
        if obs.time_s <= last {
            return err(format!(
                "field time_s: must be after the previous observation's {} (got {})",
                shown(last),
                shown(obs.time_s)
            ));
        }
        // Nor may intervals overlap: a window read every half window (a rolling rate)
        // would have each arrival counted twice over the planner's steps, and a trend
        // read at twice its pace. Clocks jitter; a twentieth of the interval passes.
        let began = obs.time_s - obs.interval_s;
        if last - began > obs.interval_s * OVERLAP_ALLOWED {
            return err(format!(
                "field interval_s: the interval ({} s, from {}) overlaps the previous observation's, which ended at {}: observations describe consecutive intervals (count each line's signals over the time since the previous line, and send that time as interval_s)",
                shown(obs.interval_s),
                shown(began),
                shown(last)
            ));
        }
    }
    *last_time_s = Some(obs.time_s);
    let decision = policy.decide(obs.time_s, &obs);
    DecideAnswer {
        text: serde_json::to_string(&decision).expect("plain data serialises"),
        decided: true,
        ignored,
    }
}

fn run_decide(a: DecideArgs) -> anyhow::Result<()> {
    use std::io::{BufRead, Write};
    let sets = crate::scenario::parse_sets(&a.sets)?;
    let (ctx, cfg) = match a.config.as_deref() {
        Some(path) => {
            use crate::live::config::RunConfig;
            let text = crate::error::read_text(path)?;
            if RunConfig::recognises(&text) {
                // `run`'s own config: decide as the running planner does.
                crate::live::run::decide_setup(&text, path, &sets)?
            } else {
                let source = crate::scenario::DecideSource::Config { text: &text, path };
                crate::scenario::decide_setup(source, &sets)?
            }
        }
        None => {
            let source = crate::scenario::DecideSource::Scenario(a.scenario.as_deref());
            crate::scenario::decide_setup(source, &sets)?
        }
    };
    let mode = cfg.mode;
    let mut planner = crate::planner::sla_planner::SlaPlanner::new(ctx, cfg);
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    let unknown = if a.ignore_unknown_fields {
        UnknownFields::Ignore
    } else {
        UnknownFields::Reject
    };
    let mut bad = 0u64;
    let mut last_time_s = None;
    // Each field read past is named once, at the first line that carries it.
    let mut named = std::collections::BTreeSet::new();
    for (i, line) in stdin.lock().lines().enumerate() {
        let line = line.map_err(|e| InputError::Usage(format!("stdin: {e}")))?;
        // A file saved by a Windows editor may start with a byte order mark, as input files
        // are read past one (`error::read_text`).
        let line = match line.strip_prefix(crate::error::BYTE_ORDER_MARK) {
            Some(rest) if i == 0 => rest,
            _ => line.as_str(),
        };
        if line.trim().is_empty() {
            continue;
        }
        let line_no = i as u64 + 1;
        let answer = decide_line(&mut planner, mode, line, line_no, &mut last_time_s, unknown);
        for field in answer.ignored {
            if named.insert(field.clone()) {
                eprintln!("warning: line {line_no}: field {field} is not a field of an observation; read past, here and on later lines");
            }
        }
        bad += u64::from(!answer.decided);
        if let Err(e) = writeln!(out, "{}", answer.text).and_then(|()| out.flush()) {
            // The reader has gone (`decide ... | head`): no one is left to answer, but the
            // exit code still says whether the lines read so far were valid.
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                break;
            }
            return Err(e.into());
        }
    }
    if bad > 0 {
        return Err(InputError::Usage(format!(
            "{bad} input lines were not valid observations (see the error lines)"
        ))
        .into());
    }
    Ok(())
}

/// The API token from a file (a mounted Secret), trimmed; an empty file is an error.
fn read_token(path: Option<&std::path::Path>) -> Result<Option<String>, InputError> {
    let Some(path) = path else { return Ok(None) };
    let t = crate::error::read_text(path)?.trim().to_string();
    if t.is_empty() {
        return Err(InputError::Usage(format!(
            "--api-token-file {}: the file is empty",
            path.display()
        )));
    }
    Ok(Some(t))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn init_logs(format: LogFormat) {
    use std::io::IsTerminal;
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stdout().is_terminal(),
    };
    // kube-client logs every failed call itself; the loop logs them once per incident.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube_client=off"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

fn run_emulate(a: EmulateArgs) -> anyhow::Result<()> {
    init_logs(a.log_format);
    if !(a.speed.is_finite() && a.speed > 0.0) {
        return Err(InputError::Usage(format!("--speed must be > 0 (got {})", a.speed)).into());
    }
    for (name, v) in [
        ("--error-rate", a.error_rate),
        ("--conflict-rate", a.conflict_rate),
    ] {
        if !(0.0..=1.0).contains(&v) {
            return Err(InputError::Usage(format!("{name} must be in 0..1 (got {v})")).into());
        }
    }
    let sc = crate::scenario::load(
        &a.scenario,
        &crate::scenario::Overrides {
            startup_s: a.startup_s,
            ..Default::default()
        },
    )?;
    let mut sim = sc.sim.clone();
    sim.duration_s = f64::INFINITY; // gauges are sampled for as long as it runs
    let cfg = crate::emulate::EmulatorConfig {
        namespace: a.namespace.clone(),
        dgd: a.dgd.clone(),
        model: a.model.clone(),
        speed: a.speed,
        faults: crate::emulate::Faults {
            error_rate: a.error_rate,
            conflict_rate: a.conflict_rate,
            latency_ms: a.latency_ms,
            forbid_scale: a.forbid_scale,
        },
    };
    let state = crate::emulate::state(cfg, sim, &sc.profile, sc.requests.clone());
    runtime()?.block_on(async move {
        let listener = crate::emulate::bind(a.listen).await.map_err(|e| InputError::Usage(format!("--listen {}: {e}", a.listen)))?;
        tracing::info!(message = "emulating", addr = %listener.local_addr()?, scenario = %sc.file.name, dgd = %a.dgd, namespace = %a.namespace);
        crate::emulate::serve(state, listener, crate::live::shutdown_signal()).await?;
        Ok(())
    })
}

/// What the policies of a loaded scenario are built from.
fn policy_env(sc: &crate::scenario::Scenario) -> PolicyEnv<'_> {
    PolicyEnv {
        sim: &sc.sim,
        planner: sc.file.planner.clone(),
        profile: &sc.profile,
        planner_profile: &sc.planner_profile,
        requests: &sc.requests,
    }
}

fn run_demo(a: DemoArgs) -> anyhow::Result<()> {
    use crate::planner::sla_planner::SlaPlanner;
    init_logs(a.log_format);
    if !(a.speed.is_finite() && a.speed > 0.0) {
        return Err(InputError::Usage(format!("--speed must be > 0 (got {})", a.speed)).into());
    }
    let token = read_token(a.api_token_file.as_deref())?;
    let sc = crate::scenario::load(&a.scenario, &crate::scenario::Overrides::default())?;
    let config_json = serde_json::json!({
        "mode": "demo",
        "scenario": sc.file.name,
        "speed": a.speed,
        "interval_s": sc.sim.interval_s,
        "startup_s": sc.sim.startup_s,
        "sla": sc.sim.sla,
        "limits": sc.sim.limits,
        "planner": sc.file.planner,
    });
    let env = policy_env(&sc);
    let planner = SlaPlanner::new(env.context(), sc.file.planner.clone());
    let edges = crate::live::sim_edges::SimEdges::of_scenario(&sc);
    let interval = sc.sim.interval_s;
    let end = sc.requests.last().map_or(0.0, |r| r.arrival_s) + 2.0 * interval;
    runtime()?.block_on(async move {
        let mut lp = crate::live::Loop::new(planner, edges.clone(), edges, interval, false, None);
        let api = crate::live::api::ApiState {
            status: lp.status.clone(),
            control: lp.control.clone(),
            token: token.map(std::sync::Arc::new),
            config: std::sync::Arc::new(config_json),
            metric_labels: Default::default(),
        };
        let bound = crate::live::server::spawn(a.listen, api).await.map_err(|e| InputError::Usage(format!("--listen {}: {e}", a.listen)))?;
        tracing::info!(message = "demo: the run loop on a simulated deployment", scenario = %sc.file.name, speed = a.speed, status = %format!("http://{bound}/api/v1/status"));
        let started = std::time::Instant::now();
        let speed = a.speed;
        let clock = move || started.elapsed().as_secs_f64() * speed;
        let done = async move { tokio::time::sleep(std::time::Duration::from_secs_f64(end / speed)).await };
        let workload_over = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let over = workload_over.clone();
        let stop = async move {
            tokio::select! {
                _ = done => over.store(true, std::sync::atomic::Ordering::SeqCst),
                _ = crate::live::shutdown_signal() => {},
            }
        };
        crate::live::drive(&mut lp, std::time::Duration::from_secs_f64(interval / speed), clock, stop).await;
        if workload_over.load(std::sync::atomic::Ordering::SeqCst) {
            // Decisions stop with the workload; the dashboard stays up to be looked at.
            tracing::info!(message = "the scenario's workload is over; the dashboard stays up until Ctrl-C", dashboard = %format!("http://{bound}/"));
            crate::live::shutdown_signal().await;
        }
        tracing::info!(message = "shutting down");
        Ok(())
    })
}

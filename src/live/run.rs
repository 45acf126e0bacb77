//! `sla-planner run`: Prometheus in, DGDSA `/scale` out.

use std::net::SocketAddr;
use std::time::Duration;

use tracing::{info, warn};

use super::config::RunConfig;
use super::lease::Elector;
use super::{
    drive, server, shutdown_signal, wall_clock, Actuator, Fault, Loop, PastInterval, Signals,
};
use crate::error::InputError;
use crate::metrics::prometheus::PrometheusSource;
use crate::planner::percentiles::LatencyPercentiles;
use crate::planner::sla_planner::PlannerConfig;
use crate::planner::sla_planner::SlaPlanner;
use crate::planner::{Observation, PolicyContext, RoleReplicas};
use crate::profile::{load_profile, Profile};
use crate::scaler::kube::KubeScaler;

impl Signals for PrometheusSource {
    async fn observe(&mut self, now_s: f64, interval_s: f64) -> Result<Observation, Fault> {
        PrometheusSource::observe(self, now_s, interval_s)
            .await
            .map_err(|e| Fault {
                label: e.label(),
                message: e.to_string(),
            })
    }

    async fn history(
        &mut self,
        end_s: f64,
        interval_s: f64,
        points: u32,
    ) -> Result<Vec<PastInterval>, Fault> {
        PrometheusSource::history(self, end_s, interval_s, points)
            .await
            .map_err(|e| Fault {
                label: e.label(),
                message: e.to_string(),
            })
    }

    async fn latency_buckets_found(&mut self) -> Option<LatencyPercentiles> {
        self.buckets_found_since().await
    }
}

impl Actuator for KubeScaler {
    async fn replicas(&mut self) -> Result<RoleReplicas, Fault> {
        KubeScaler::replicas(self).await.map_err(|e| Fault {
            label: e.label(),
            message: e.to_string(),
        })
    }

    async fn apply(&mut self, prefill: u32, decode: u32, why: &str) -> Result<(), Fault> {
        let applied = KubeScaler::apply(self, prefill, decode, why)
            .await
            .map_err(|e| Fault {
                label: e.label(),
                message: e.to_string(),
            })?;
        if !applied.changed.is_empty() {
            info!(message = "scaled", changes = %applied.changed.join(", "), retries = applied.retries, fallback = applied.fallback);
        }
        Ok(())
    }
}

/// The profile a config names: the embedded one for `default`, else a profiler directory
/// or profile file, from the config file's folder.
pub fn profile_of(cfg: &RunConfig, config_dir: &std::path::Path) -> Result<Profile, InputError> {
    if cfg.profile == "default" {
        Ok(Profile::embedded_default())
    } else {
        load_profile(&config_dir.join(&cfg.profile))
    }
}

pub fn planner_for(cfg: &RunConfig, profile: &Profile) -> anyhow::Result<SlaPlanner> {
    let (ctx, planner) = planner_setup(cfg, profile)?;
    Ok(SlaPlanner::new(ctx, planner))
}

/// What `decide --config` decides with, given `run`'s own config (`text`, read from
/// `path`, with `--set` fields): the file checked, and its profile found, as `run` does.
pub fn decide_setup(
    text: &str,
    path: &std::path::Path,
    sets: &[(String, serde_yaml_ng::Value)],
) -> anyhow::Result<(PolicyContext, PlannerConfig)> {
    let cfg = RunConfig::parse(text, &path.display().to_string(), sets)?;
    let profile = profile_of(&cfg, path.parent().unwrap_or(std::path::Path::new("")))?;
    planner_setup(&cfg, &profile)
}

/// The planner's context and settings a config gives: what `run` decides with, and
/// `decide --config` given the same file.
fn planner_setup(
    cfg: &RunConfig,
    profile: &Profile,
) -> anyhow::Result<(PolicyContext, PlannerConfig)> {
    let limits = cfg.limits().map_err(|(f, m)| anyhow::anyhow!("{f}: {m}"))?;
    let ctx = PolicyContext::new(profile, cfg.sla, limits, cfg.interval_s, cfg.startup_s);
    Ok((ctx, cfg.planner.clone()))
}

/// What the profile says of engines given another number of GPUs than it was measured on:
/// their speed is learned from their latencies (the corrections), the budget counts the
/// GPUs given.
fn engine_size_warnings(cfg: &RunConfig, profile: &Profile) -> anyhow::Result<Vec<String>> {
    let limits = cfg.limits().map_err(|(f, m)| anyhow::anyhow!("{f}: {m}"))?;
    let aggregated = cfg.planner.mode == crate::planner::solver::Mode::Aggregated;
    Ok(profile
        .engine_gpus_differ(
            (!aggregated).then_some(limits.gpus_per_prefill_engine),
            limits.gpus_per_decode_engine,
        )
        .into_iter()
        .map(|(role, measured, given)| {
            format!(
                "the profile's {role} engines were measured on {measured} GPU(s) each, the config gives them {given}: the planner starts from the profile's speed, learns the engines' own from their latencies, and counts {given} GPU(s) an engine against the budget"
            )
        })
        .collect())
}

/// The labels that name this deployment, and the profile its corrections were learned
/// against, on the planner's exported corrections; they select them again after a restart.
fn deployment_labels<'c>(
    cfg: &'c RunConfig,
    profile: &'c str,
) -> [(&'static str, Option<&'c str>); 3] {
    [
        ("dgd", Some(cfg.kubernetes.dgd.as_str())),
        ("dgd_namespace", Some(cfg.kubernetes.namespace.as_str())),
        ("profile", Some(profile)),
    ]
}

fn identity(cfg: &RunConfig) -> String {
    cfg.leader_election
        .identity
        .clone()
        .or_else(|| std::env::var("POD_NAME").ok())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| format!("sla-planner-{}", std::process::id()))
}

/// Connects to the API server; transient failures (5xx, timeouts, unreachable) are retried
/// with backoff, a missing object or permission is reported at once.
async fn connect_with_retries(cfg: &RunConfig) -> anyhow::Result<KubeScaler> {
    let mut backoff = Duration::from_millis(500);
    let mut attempt = 1;
    loop {
        match KubeScaler::connect(&cfg.kubernetes, cfg.planner.mode).await {
            Ok(s) => return Ok(s),
            Err(e)
                if attempt < 10
                    && matches!(
                        e.label(),
                        "kube_server_error" | "kube_timeout" | "kube_transport"
                    ) =>
            {
                warn!(message = "cannot reach the DGD yet; retrying", attempt, error = %e);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                attempt += 1;
            }
            Err(e) => return Err(anyhow::anyhow!("{e}")),
        }
    }
}

/// `run --check`: what `run` would do, without deciding or writing. Checks the config and
/// the profile, connects to the API server once, finds the services and adapters, reads
/// the replicas, and asks Prometheus for the last interval; prints each on a line. An
/// unreachable API server or Prometheus, or a graph that does not fit, is an error; a
/// Prometheus that answers with no traffic yet is said, not an error.
pub async fn check(cfg: RunConfig, config_dir: &std::path::Path) -> anyhow::Result<()> {
    let profile = profile_of(&cfg, config_dir)?;
    planner_for(&cfg, &profile)?;
    let limits = cfg.limits().map_err(|(f, m)| anyhow::anyhow!("{f}: {m}"))?;
    println!(
        "config: valid; planner.mode {}, a decision every {} s, cold start {} s, {} GPUs; profile {} ({})",
        format!("{:?}", cfg.planner.mode).to_lowercase(),
        cfg.interval_s,
        cfg.startup_s,
        limits.gpu_budget,
        profile.name,
        profile.fingerprint()
    );
    for warning in engine_size_warnings(&cfg, &profile)? {
        println!("profile: {warning}");
    }
    let scaler = KubeScaler::connect(&cfg.kubernetes, cfg.planner.mode)
        .await
        .map_err(|e| anyhow::anyhow!("kubernetes: {e}"))?;
    println!(
        "kubernetes: DynamoGraphDeployment {}/{}: {}",
        cfg.kubernetes.namespace, cfg.kubernetes.dgd, scaler.topology
    );
    for (service, target) in scaler.writes_to() {
        println!("kubernetes: {service} is scaled through {target}");
    }
    let r = scaler
        .replicas()
        .await
        .map_err(|e| anyhow::anyhow!("kubernetes: {e}"))?;
    let state = |s: crate::planner::ReplicaState| {
        format!(
            "{} ready, {} starting, {} draining",
            s.ready, s.starting, s.draining
        )
    };
    match scaler.topology.prefill() {
        Some(_) => println!(
            "replicas: prefill {}; decode {}",
            state(r.prefill),
            state(r.decode)
        ),
        None => println!("replicas: workers {}", state(r.decode)),
    }
    let source = PrometheusSource::new(&cfg.prometheus, cfg.planner.mode)?;
    match source.observe(wall_clock(), cfg.interval_s).await {
        Ok(o) => {
            let or_none = |v: Option<f64>| v.map_or("none".to_string(), |x| format!("{x:.1}"));
            println!(
                "prometheus: {}: last {} s: {} requests, ISL mean {}, OSL mean {}, TTFT p99 {} ms, ITL p99 {} ms",
                cfg.prometheus.url,
                cfg.interval_s,
                or_none(o.requests),
                or_none(o.isl_mean),
                or_none(o.osl_mean),
                or_none(o.ttft_ms.and_then(|l| l.p99)),
                or_none(o.itl_ms.and_then(|l| l.p99)),
            );
        }
        Err(crate::metrics::prometheus::SourceError::NoData) => println!(
            "prometheus: {}: answers, but with no request count for the last {} s (no traffic yet, or prometheus.model / dynamo_namespace match no series); run holds until there is one",
            cfg.prometheus.url, cfg.interval_s
        ),
        Err(e) => return Err(anyhow::anyhow!("prometheus: {}: {e}", cfg.prometheus.url)),
    }
    match &cfg.planner.latency_percentiles {
        Some(told) => println!(
            "latency percentiles: as planner.latency_percentiles says ({})",
            serde_json::to_string(told).unwrap_or_default()
        ),
        None => match source.latency_buckets().await {
            Ok(Some(LatencyPercentiles::Buckets { ttft_s, itl_s })) => println!(
                "latency percentiles: read through Prometheus's buckets, TTFT {} from {} to {} s, ITL {} from {} to {} s",
                ttft_s.len(),
                ttft_s[0],
                ttft_s[ttft_s.len() - 1],
                itl_s.len(),
                itl_s[0],
                itl_s[itl_s.len() - 1],
            ),
            _ => println!(
                "latency percentiles: no TTFT and ITL histogram buckets in Prometheus yet; run takes Dynamo's default buckets until it finds them"
            ),
        },
    }
    Ok(())
}

pub async fn run(
    cfg: RunConfig,
    config_dir: &std::path::Path,
    listen: Option<SocketAddr>,
    api_token: Option<String>,
) -> anyhow::Result<()> {
    let profile = profile_of(&cfg, config_dir)?;
    let mut source = PrometheusSource::new(&cfg.prometheus, cfg.planner.mode)?;
    let mut cfg = cfg;
    if cfg.planner.latency_percentiles.is_none() {
        cfg.planner.latency_percentiles = Some(source.latency_percentiles().await);
    }
    let mut planner = planner_for(&cfg, &profile)?;
    for warning in engine_size_warnings(&cfg, &profile)? {
        warn!(message = "engines sized otherwise than the profile", detail = %warning);
    }
    let fingerprint = profile.fingerprint();
    let scaler = connect_with_retries(&cfg).await?;
    info!(message = "connected", dgd = %cfg.kubernetes.dgd, namespace = %cfg.kubernetes.namespace, scales = %scaler.topology);

    // Warm the forecasters from Prometheus history, so a restart does not forget the load.
    match source
        .history(
            wall_clock(),
            cfg.interval_s,
            cfg.prometheus.history_intervals,
        )
        .await
    {
        Ok(points) => {
            let taken = planner.warm(&points, cfg.interval_s);
            // Intervals whose TTFT tail came back: those that missed the SLA are told apart.
            let with_latencies = points.iter().filter(|p| p.ttft_ms.p99.is_some()).count();
            info!(
                message = "forecasters warmed from Prometheus history",
                intervals = taken,
                with_latencies
            );
        }
        Err(e) => warn!(message = "no history to warm the forecasters; starting cold", error = %e),
    }

    // And the corrections learned before the restart, so the engines' speed and the
    // load's bursts need not be learned again.
    if cfg.prometheus.restore_corrections {
        let window_s = cfg.interval_s * f64::from(cfg.prometheus.history_intervals.max(1));
        match source
            .last_corrections(&deployment_labels(&cfg, &fingerprint), window_s)
            .await
        {
            Ok(found) if !found.is_empty() => {
                let taken = planner.restore_corrections(&found);
                let taken: Vec<String> = taken.iter().map(|(k, v)| format!("{k} {v:.3}")).collect();
                if taken.is_empty() {
                    info!(message = "model corrections in Prometheus not taken: planner.correction is disabled");
                } else {
                    info!(message = "model corrections restored from Prometheus", corrections = %taken.join(", "));
                }
            }
            Ok(_) => info!(
                message =
                    "no model corrections in Prometheus to restore; starting from the profile"
            ),
            Err(e) => {
                warn!(message = "could not read back model corrections; starting from the profile", error = %e)
            }
        }
    }

    let leader = if cfg.leader_election.enabled {
        let id = identity(&cfg);
        let elector = Elector::new(
            scaler.client(),
            &cfg.kubernetes.namespace,
            &cfg.leader_election.lease_name,
            &id,
            Duration::from_secs_f64(cfg.leader_election.lease_duration_s),
        );
        let flag = elector.leader.clone();
        tokio::spawn(elector.run());
        Some(flag)
    } else {
        None
    };
    let mut lp = Loop::new(
        planner,
        source,
        scaler,
        cfg.interval_s,
        cfg.advisory,
        leader,
    );
    if let Some(addr) = listen {
        let state = super::api::ApiState {
            status: lp.status.clone(),
            control: lp.control.clone(),
            token: api_token.map(std::sync::Arc::new),
            config: std::sync::Arc::new(super::api::redact(serde_json::to_value(&cfg)?)),
            metric_labels: std::sync::Arc::new(
                deployment_labels(&cfg, &fingerprint)
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.unwrap_or_default().to_string()))
                    .collect(),
            ),
        };
        let bound = server::spawn(addr, state).await?;
        info!(message = "serving health and status", addr = %bound);
    }
    drive(
        &mut lp,
        Duration::from_secs_f64(cfg.interval_s),
        wall_clock,
        shutdown_signal(),
    )
    .await;
    info!(message = "shutting down");
    Ok(())
}

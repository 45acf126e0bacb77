//! The config file of `sla-planner run` (YAML). Every field is checked; an error names the
//! field and what it allows. Defaults are documented in `docs/run.md`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::InputError;
use crate::planner::sla_planner::PlannerConfig;
use crate::planner::solver::Mode;
use crate::planner::{Limits, Sla};

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Seconds between decisions.
    #[serde(default = "d_interval")]
    pub interval_s: f64,
    /// Expected cold start of a new replica, seconds.
    #[serde(default = "d_startup")]
    pub startup_s: f64,
    /// Compute and report, never write.
    #[serde(default)]
    pub advisory: bool,
    /// `default` (embedded H200 profile), a Dynamo profiler directory or a profile JSON.
    #[serde(default = "d_profile")]
    pub profile: String,
    pub sla: Sla,
    pub limits: LimitsSpec,
    #[serde(default)]
    pub planner: PlannerConfig,
    pub prometheus: PrometheusConfig,
    pub kubernetes: KubeConfig,
    #[serde(default)]
    pub leader_election: LeaderConfig,
}

#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    pub gpu_budget: u32,
    /// Prefill fields: 1, the budget's worth of engines and 1 when absent (disaggregated);
    /// an aggregated deployment has no prefill role and refuses them.
    #[serde(default)]
    pub min_prefill: Option<u32>,
    #[serde(default)]
    pub max_prefill: Option<u32>,
    /// Decode engines, or an aggregated deployment's workers.
    #[serde(default = "one")]
    pub min_decode: u32,
    #[serde(default)]
    pub max_decode: Option<u32>,
    #[serde(default)]
    pub gpus_per_prefill_engine: Option<u32>,
    #[serde(default = "one")]
    pub gpus_per_decode_engine: u32,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    pub url: String,
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default = "d_timeout")]
    pub timeout_s: f64,
    /// Label filters on the frontend metrics.
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub dynamo_namespace: Option<String>,
    /// `dynamo_component` label of the prefill and decode workers' KV metrics.
    #[serde(default = "d_prefill_component")]
    pub prefill_component: String,
    #[serde(default = "d_decode_component")]
    pub decode_component: String,
    /// Intervals of history read at start to warm the forecasters.
    #[serde(default = "d_history")]
    pub history_intervals: u32,
    /// Read back at start the model corrections this deployment's planner exported last
    /// (`sla_planner_model_correction_ratio`, within the history), when Prometheus scrapes
    /// the planner.
    #[serde(default = "yes")]
    pub restore_corrections: bool,
    #[serde(default)]
    pub queries: Queries,
}

/// PromQL per signal. `$window` becomes the interval (`60s`), `$filter` the label matchers,
/// `$q` the quantile.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Queries {
    pub requests: String,
    pub isl_mean: String,
    pub osl_mean: String,
    pub ttft_mean_ms: String,
    pub ttft_quantile_ms: String,
    pub itl_mean_ms: String,
    pub itl_quantile_ms: String,
    pub kv_usage: String,
    pub queued_requests: String,
    /// The share of prompt tokens the prefill workers found in their prefix caches, over
    /// `$filter` naming their component (aggregated: the workers').
    pub prefix_cache_hit_rate: String,
}

impl Default for Queries {
    fn default() -> Self {
        let mean = |m: &str, scale: &str| {
            format!("{scale}sum(increase({m}_sum{{$filter}}[$window])) / sum(increase({m}_count{{$filter}}[$window]))")
        };
        let quantile = |m: &str| {
            format!(
                "1000 * histogram_quantile($q, sum by (le) (rate({m}_bucket{{$filter}}[$window])))"
            )
        };
        Queries {
            requests: "sum(increase(dynamo_frontend_requests_total{$filter}[$window]))".into(),
            isl_mean: mean("dynamo_frontend_input_sequence_tokens", ""),
            osl_mean: mean("dynamo_frontend_output_sequence_tokens", ""),
            ttft_mean_ms: mean("dynamo_frontend_time_to_first_token_seconds", "1000 * "),
            ttft_quantile_ms: quantile("dynamo_frontend_time_to_first_token_seconds"),
            itl_mean_ms: mean("dynamo_frontend_inter_token_latency_seconds", "1000 * "),
            itl_quantile_ms: quantile("dynamo_frontend_inter_token_latency_seconds"),
            kv_usage: "avg(avg_over_time(dynamo_component_kvstats_gpu_cache_usage_percent{$filter}[$window]))".into(),
            queued_requests: "avg(avg_over_time(dynamo_frontend_queued_requests{$filter}[$window]))".into(),
            prefix_cache_hit_rate: "avg(avg_over_time(dynamo_component_kvstats_gpu_prefix_cache_hit_rate{$filter}[$window]))".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct KubeConfig {
    pub namespace: String,
    /// Name of the DynamoGraphDeployment.
    pub dgd: String,
    /// Service names; found by `subComponentType` when absent.
    #[serde(default)]
    pub prefill_service: Option<String>,
    #[serde(default)]
    pub decode_service: Option<String>,
    /// The aggregated workers' service (`planner.mode: aggregated`); found by
    /// `componentType: worker` when absent.
    #[serde(default)]
    pub worker_service: Option<String>,
    /// Patch the DGD when a scaling adapter is missing (logged every time).
    #[serde(default)]
    pub fallback_dgd_patch: bool,
    /// API server URL; in-cluster or kubeconfig when absent.
    #[serde(default)]
    pub api_url: Option<String>,
    #[serde(default = "d_timeout")]
    pub timeout_s: f64,
    /// Record each scale as a Kubernetes Event on the DGD.
    #[serde(default = "yes")]
    pub events: bool,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct LeaderConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "d_lease")]
    pub lease_name: String,
    #[serde(default = "d_lease_duration")]
    pub lease_duration_s: f64,
    /// This replica's name in the Lease; `POD_NAME`, else the host name.
    #[serde(default)]
    pub identity: Option<String>,
}

impl Default for LeaderConfig {
    fn default() -> Self {
        LeaderConfig {
            enabled: true,
            lease_name: d_lease(),
            lease_duration_s: d_lease_duration(),
            identity: None,
        }
    }
}

fn d_interval() -> f64 {
    60.0
}
fn d_startup() -> f64 {
    180.0
}
fn d_profile() -> String {
    "default".into()
}
fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}
fn d_timeout() -> f64 {
    10.0
}
fn d_prefill_component() -> String {
    "prefill".into()
}
fn d_decode_component() -> String {
    "backend".into()
}
fn d_history() -> u32 {
    120
}
fn d_lease() -> String {
    "sla-planner".into()
}
fn d_lease_duration() -> f64 {
    15.0
}

fn bad(file: &str, field: &str, message: impl Into<String>) -> InputError {
    InputError::Config {
        file: file.to_string(),
        field: field.to_string(),
        message: message.into(),
    }
}

impl RunConfig {
    pub fn load(path: &Path) -> Result<RunConfig, InputError> {
        let text = crate::error::read_text(path)?;
        RunConfig::parse(&text, &path.display().to_string(), &[])
    }

    /// A config from its text, with fields changed by `--set` (as `decide --config` takes
    /// one), checked as a file is; errors name `origin`.
    pub fn parse(
        text: &str,
        origin: &str,
        sets: &[(String, serde_yaml_ng::Value)],
    ) -> Result<RunConfig, InputError> {
        let cfg: RunConfig =
            crate::scenario::parse_with_sets(text, origin, sets).map_err(InputError::in_config)?;
        cfg.validate(origin).map_err(InputError::in_config)?;
        Ok(cfg)
    }

    /// Whether a config text is one of these, `run`'s (it names the Prometheus or the
    /// Kubernetes side), rather than a `decide` config's sections of a scenario.
    pub fn recognises(text: &str) -> bool {
        serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text)
            .is_ok_and(|doc| doc.get("prometheus").is_some() || doc.get("kubernetes").is_some())
    }

    pub fn validate(&self, file: &str) -> Result<(), InputError> {
        let pos = |field: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(bad(file, field, format!("must be a number > 0 (got {v})")))
            }
        };
        pos("sla.ttft_ms", self.sla.ttft_ms)?;
        pos("sla.itl_ms", self.sla.itl_ms)?;
        // Each becomes a timer (or a horizon): past a day it is a unit mixed up, and past
        // what a `Duration` holds it could not be set at all.
        for (field, v, zero_ok) in [
            ("interval_s", self.interval_s, false),
            ("startup_s", self.startup_s, true),
            ("prometheus.timeout_s", self.prometheus.timeout_s, false),
            ("kubernetes.timeout_s", self.kubernetes.timeout_s, false),
            (
                "leader_election.lease_duration_s",
                self.leader_election.lease_duration_s,
                false,
            ),
        ] {
            crate::scenario::seconds_within_a_day(v, zero_ok).map_err(|m| bad(file, field, m))?;
        }
        let url = &self.prometheus.url;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(bad(
                file,
                "prometheus.url",
                format!("must be an http:// or https:// URL (got {url:?})"),
            ));
        }
        if let Some(u) = &self.kubernetes.api_url {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(bad(
                    file,
                    "kubernetes.api_url",
                    format!("must be an http:// or https:// URL (got {u:?})"),
                ));
            }
        }
        if self.kubernetes.namespace.is_empty() || self.kubernetes.dgd.is_empty() {
            return Err(bad(
                file,
                "kubernetes.namespace",
                "namespace and dgd must name the deployment",
            ));
        }
        self.planner
            .validate()
            .map_err(|m| crate::scenario::part_err(file, "planner", &m))?;
        self.check_services(file)?;
        self.limits().map_err(|(f, m)| bad(file, &f, m))?;
        Ok(())
    }

    /// The services named must match the mode: a prefill and a decode service for a
    /// disaggregated graph, one worker service for an aggregated one.
    fn check_services(&self, file: &str) -> Result<(), InputError> {
        let k = &self.kubernetes;
        match self.planner.mode {
            Mode::Aggregated => {
                for (field, set) in [
                    ("kubernetes.prefill_service", k.prefill_service.is_some()),
                    ("kubernetes.decode_service", k.decode_service.is_some()),
                ] {
                    if set {
                        return Err(bad(
                            file,
                            field,
                            "planner.mode is aggregated: one pool of workers is scaled; name it \
                             with kubernetes.worker_service",
                        ));
                    }
                }
            }
            Mode::Disaggregated => {
                if k.worker_service.is_some() {
                    return Err(bad(
                        file,
                        "kubernetes.worker_service",
                        "names an aggregated graph's workers; set planner.mode: aggregated, or \
                         name kubernetes.prefill_service and kubernetes.decode_service",
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn limits(&self) -> Result<Limits, (String, String)> {
        let s = &self.limits;
        let aggregated = self.planner.mode == Mode::Aggregated;
        if aggregated {
            for (field, set) in [
                ("min_prefill", s.min_prefill.is_some()),
                ("max_prefill", s.max_prefill.is_some()),
                (
                    "gpus_per_prefill_engine",
                    s.gpus_per_prefill_engine.is_some(),
                ),
            ] {
                if set {
                    return Err((
                        format!("limits.{field}"),
                        "planner.mode is aggregated: there is no prefill role; the workers \
                         take min_decode, max_decode and gpus_per_decode_engine"
                            .into(),
                    ));
                }
            }
        }
        let mut l = Limits::build(
            s.gpu_budget,
            (
                s.gpus_per_prefill_engine.unwrap_or(1),
                s.gpus_per_decode_engine,
            ),
            (s.min_prefill.unwrap_or(1), s.min_decode),
            (s.max_prefill, s.max_decode),
        );
        let checked = if aggregated {
            l.min_prefill = 0;
            l.max_prefill = 0;
            l.validate_aggregated()
        } else {
            l.validate()
        };
        checked.map_err(|(f, m)| (format!("limits.{f}"), m))?;
        Ok(l)
    }
}

/// Expands a query template.
pub fn expand(template: &str, window_s: f64, filter: &str, q: Option<f64>) -> String {
    let mut s = template
        .replace("$window", &format!("{}s", window_s.round().max(1.0) as u64))
        .replace("$filter", filter);
    if let Some(q) = q {
        s = s.replace("$q", &format!("{q}"));
    }
    s
}

/// Label matchers from name/value pairs with a value, `a="x",b="y"`.
pub fn matchers(pairs: &[(&str, Option<&str>)]) -> String {
    pairs
        .iter()
        .filter_map(|(k, v)| {
            v.filter(|v| !v.is_empty())
                .map(|v| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_expand() {
        let q = Queries::default();
        let f = matchers(&[("model", Some("llama")), ("dynamo_namespace", None)]);
        assert_eq!(f, "model=\"llama\"");
        assert_eq!(
            expand(&q.requests, 60.0, &f, None),
            "sum(increase(dynamo_frontend_requests_total{model=\"llama\"}[60s]))"
        );
        let t = expand(&q.ttft_quantile_ms, 30.0, "", Some(0.99));
        assert_eq!(t, "1000 * histogram_quantile(0.99, sum by (le) (rate(dynamo_frontend_time_to_first_token_seconds_bucket{}[30s])))");
    }
}

//! Replica counts out to Kubernetes: read the DGD, write the DGDSA `scale` subresource.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::Client;
use serde_json::{json, Value};
use tracing::{info, warn};

use crate::live::config::KubeConfig;
use crate::planner::solver::Mode;
use crate::planner::{ReplicaState, RoleReplicas};

#[derive(Debug, thiserror::Error)]
pub enum ScaleError {
    #[error("forbidden: the planner's ServiceAccount needs `{verb}` on `{resource}` (API group {group}) in namespace {namespace}: {message}")]
    Forbidden {
        verb: &'static str,
        resource: &'static str,
        group: &'static str,
        namespace: String,
        message: String,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("API server error {code}: {message}")]
    Server { code: u16, message: String },
    #[error("the API server did not answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot reach the API server: {0}")]
    Transport(String),
    #[error("{0}")]
    Invalid(String),
}

impl ScaleError {
    pub fn label(&self) -> &'static str {
        match self {
            ScaleError::Forbidden { .. } => "kube_forbidden",
            ScaleError::NotFound(_) => "kube_not_found",
            ScaleError::Server { code: 409, .. } => "kube_conflict",
            ScaleError::Server { .. } => "kube_server_error",
            ScaleError::Timeout(_) => "kube_timeout",
            ScaleError::Transport(_) => "kube_transport",
            ScaleError::Invalid(_) => "kube_invalid",
        }
    }

    fn retryable(&self) -> bool {
        matches!(
            self,
            ScaleError::Server { .. } | ScaleError::Timeout(_) | ScaleError::Transport(_)
        )
    }
}

fn classify(
    e: kube::Error,
    verb: &'static str,
    resource: &'static str,
    group: &'static str,
    namespace: &str,
) -> ScaleError {
    match e {
        kube::Error::Api(s) if s.code == 403 => ScaleError::Forbidden {
            verb,
            resource,
            group,
            namespace: namespace.to_string(),
            message: s.message.clone(),
        },
        kube::Error::Api(s) if s.code == 404 => ScaleError::NotFound(s.message.clone()),
        kube::Error::Api(s) => ScaleError::Server {
            code: s.code,
            message: s.message.clone(),
        },
        other => ScaleError::Transport(other.to_string()),
    }
}

/// What a write did, for logs and the decision record.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    pub changed: Vec<String>,
    pub retries: u32,
    pub fallback: bool,
}

/// The services `run` scales: a prefill and a decode pool, or one pool of aggregated
/// workers (the decision's `decode`; its `prefill` is always 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    Disaggregated { prefill: String, decode: String },
    Aggregated { worker: String },
}

impl Topology {
    /// The service sized by the decision's prefill count, if the graph has one.
    pub fn prefill(&self) -> Option<&str> {
        match self {
            Topology::Disaggregated { prefill, .. } => Some(prefill),
            Topology::Aggregated { .. } => None,
        }
    }

    /// The service sized by the decision's decode count: decode engines or workers.
    pub fn decode(&self) -> &str {
        match self {
            Topology::Disaggregated { decode, .. } => decode,
            Topology::Aggregated { worker } => worker,
        }
    }
}

/// Which of a decision's counts a scaled service takes.
#[derive(Debug, Clone, Copy)]
enum Role {
    Prefill,
    Decode,
}

impl std::fmt::Display for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Topology::Disaggregated { prefill, decode } => {
                write!(f, "prefill service {prefill}, decode service {decode}")
            }
            Topology::Aggregated { worker } => write!(f, "aggregated worker service {worker}"),
        }
    }
}

pub struct KubeScaler {
    client: Client,
    cfg: KubeConfig,
    dgd_api: Api<DynamicObject>,
    adapter_api: Api<DynamicObject>,
    pub topology: Topology,
    /// Adapter names by scaled service; `None` where the adapter is missing and the DGD is
    /// patched instead.
    adapters: HashMap<String, Option<String>>,
    timeout: Duration,
}

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("nvidia.com", "v1alpha1", kind),
        plural,
    )
}

pub const GROUP: &str = "nvidia.com";

/// Every Kubernetes API call `run` makes, as `(API group, resource, verb)`. The Role in
/// `deploy/rbac.yaml` grants exactly these (tests check both sides).
pub const API_CALLS: &[(&str, &str, &str)] = &[
    ("nvidia.com", "dynamographdeployments", "get"),
    ("nvidia.com", "dynamographdeploymentscalingadapters", "get"),
    // Re-read after a 409 Conflict.
    (
        "nvidia.com",
        "dynamographdeploymentscalingadapters/scale",
        "get",
    ),
    (
        "nvidia.com",
        "dynamographdeploymentscalingadapters/scale",
        "patch",
    ),
    ("coordination.k8s.io", "leases", "get"),
    ("coordination.k8s.io", "leases", "create"),
    ("coordination.k8s.io", "leases", "update"),
    ("", "events", "create"),
];

/// Made only with `kubernetes.fallback_dgd_patch: true`; not in the default Role.
pub const FALLBACK_CALLS: &[(&str, &str, &str)] =
    &[("nvidia.com", "dynamographdeployments", "patch")];

impl KubeScaler {
    /// Connects, reads the DGD, finds the services `mode` scales (prefill and decode, or
    /// the aggregated workers) and their adapters. A missing DGD, service or adapter (without
    /// fallback), or a graph of the other shape, is an error that names it.
    pub async fn connect(cfg: &KubeConfig, mode: Mode) -> Result<KubeScaler, ScaleError> {
        let timeout = Duration::from_secs_f64(cfg.timeout_s);
        let mut config = match &cfg.api_url {
            Some(url) => kube::Config::new(
                url.parse()
                    .map_err(|e| ScaleError::Invalid(format!("kubernetes.api_url {url:?}: {e}")))?,
            ),
            None => kube::Config::infer().await.map_err(|e| {
                ScaleError::Transport(format!("no in-cluster or kubeconfig credentials: {e}"))
            })?,
        };
        config.default_namespace = cfg.namespace.clone();
        config.read_timeout = Some(timeout);
        config.connect_timeout = Some(timeout);
        let client = Client::try_from(config).map_err(|e| ScaleError::Transport(e.to_string()))?;
        let dgd_api = Api::namespaced_with(
            client.clone(),
            &cfg.namespace,
            &resource("DynamoGraphDeployment", "dynamographdeployments"),
        );
        let adapter_api = Api::namespaced_with(
            client.clone(),
            &cfg.namespace,
            &resource(
                "DynamoGraphDeploymentScalingAdapter",
                "dynamographdeploymentscalingadapters",
            ),
        );
        let dgd = fetch_dgd(&dgd_api, cfg, timeout).await?;
        let topology = discover(&dgd.data, mode, cfg).map_err(|why| {
            ScaleError::NotFound(format!(
                "DynamoGraphDeployment {}/{}: {why}",
                cfg.namespace, cfg.dgd
            ))
        })?;
        let mut s = KubeScaler {
            client,
            cfg: cfg.clone(),
            dgd_api,
            adapter_api,
            topology,
            adapters: HashMap::new(),
            timeout,
        };
        let services: Vec<String> = s.scaled().map(|(svc, _)| svc.to_string()).collect();
        for service in services {
            let adapter = s.check_adapter(&service).await?;
            s.adapters.insert(service, adapter);
        }
        Ok(s)
    }

    /// The scaled services, each with the role whose count it takes.
    fn scaled(&self) -> impl Iterator<Item = (&str, Role)> {
        let prefill = self.topology.prefill().map(|p| (p, Role::Prefill));
        prefill
            .into_iter()
            .chain([(self.topology.decode(), Role::Decode)])
    }

    /// Each scaled service with where its counts are written: its adapter's `scale`
    /// subresource, or (fallback) the DGD itself.
    pub fn writes_to(&self) -> Vec<(String, String)> {
        self.scaled()
            .map(|(service, _)| {
                let target = match self.adapters.get(service).and_then(Option::as_ref) {
                    Some(adapter) => format!("DynamoGraphDeploymentScalingAdapter {adapter}/scale"),
                    None => "the DGD (fallback_dgd_patch: no adapter)".to_string(),
                };
                (service.to_string(), target)
            })
            .collect()
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    async fn call<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, kube::Error>>,
        verb: &'static str,
        res: &'static str,
    ) -> Result<T, ScaleError> {
        timed(self.timeout, &self.cfg.namespace, fut, verb, res).await
    }

    async fn read_dgd(&self) -> Result<DynamicObject, ScaleError> {
        fetch_dgd(&self.dgd_api, &self.cfg, self.timeout).await
    }

    fn adapter_name(&self, service: &str) -> String {
        format!("{}-{}", self.cfg.dgd, service.to_lowercase())
    }

    async fn check_adapter(&self, service: &str) -> Result<Option<String>, ScaleError> {
        let name = self.adapter_name(service);
        match self.call(self.adapter_api.get(&name), "get", "dynamographdeploymentscalingadapters").await {
            Ok(_) => Ok(Some(name)),
            Err(ScaleError::NotFound(_)) if self.cfg.fallback_dgd_patch => {
                warn!(message = "scaling adapter missing; service will be scaled by patching the DGD", adapter = %name, service);
                Ok(None)
            }
            Err(ScaleError::NotFound(_)) => Err(ScaleError::NotFound(format!(
                "DynamoGraphDeploymentScalingAdapter {}/{name} not found (enable scalingAdapter on service {service}, or set kubernetes.fallback_dgd_patch)",
                self.cfg.namespace
            ))),
            Err(e) => Err(e),
        }
    }

    /// Ready, starting (asked for, not ready) and draining (ready beyond what is asked for)
    /// replicas per role, from the DGD.
    pub async fn replicas(&self) -> Result<RoleReplicas, ScaleError> {
        let dgd = self.read_dgd().await?;
        role_replicas(&dgd.data, &self.topology).map_err(|why| {
            ScaleError::Invalid(format!(
                "DynamoGraphDeployment {}/{}: {why}",
                self.cfg.namespace, self.cfg.dgd
            ))
        })
    }

    /// Writes the targets: the scale subresource of each adapter whose count differs, with
    /// retries (409: re-read and retry; 5xx and timeouts: back off). A missing adapter is
    /// patched through the DGD only when configured, and logged each time.
    pub async fn apply(&self, prefill: u32, decode: u32, why: &str) -> Result<Applied, ScaleError> {
        let mut applied = Applied::default();
        let current = self.replicas().await?;
        // The aggregated planner's prefill is 0 by its limits; anything else is a bug
        // upstream, and there is no service it could scale.
        if self.topology.prefill().is_none() && prefill > 0 {
            return Err(ScaleError::Invalid(format!(
                "a prefill target of {prefill} for an aggregated graph (it has no prefill service)"
            )));
        }
        for (service, role) in self.scaled() {
            let (target, state) = match role {
                Role::Prefill => (prefill, current.prefill),
                Role::Decode => (decode, current.decode),
            };
            let now = state.held();
            if target == now {
                continue;
            }
            let adapter = self.adapters.get(service).and_then(Option::as_ref);
            match adapter {
                Some(name) => applied.retries += self.write_scale(name, target).await?,
                None => {
                    warn!(message = "patching the DGD: no scaling adapter for this service", service = %service, replicas = target);
                    let patch = json!({"spec": {"services": {service: {"replicas": target}}}});
                    self.call(
                        self.dgd_api.patch(
                            &self.cfg.dgd,
                            &PatchParams::default(),
                            &Patch::Merge(&patch),
                        ),
                        "patch",
                        "dynamographdeployments",
                    )
                    .await?;
                    applied.fallback = true;
                }
            }
            applied.changed.push(format!("{service} {now} -> {target}"));
        }
        if !applied.changed.is_empty() && self.cfg.events {
            self.event(&format!("Scaled {}: {why}", applied.changed.join(", ")))
                .await;
        }
        Ok(applied)
    }

    async fn write_scale(&self, name: &str, replicas: u32) -> Result<u32, ScaleError> {
        let patch = json!({"spec": {"replicas": replicas}});
        let mut retries = 0;
        let mut backoff = Duration::from_millis(200);
        loop {
            let res = self
                .call(
                    self.adapter_api.patch_scale(
                        name,
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    ),
                    "patch",
                    "dynamographdeploymentscalingadapters/scale",
                )
                .await;
            match res {
                Ok(_) => return Ok(retries),
                Err(ScaleError::Server { code: 409, .. }) if retries < 8 => {
                    // Someone wrote in between: read the latest and write again.
                    let _ = self
                        .call(
                            self.adapter_api.get_scale(name),
                            "get",
                            "dynamographdeploymentscalingadapters/scale",
                        )
                        .await;
                }
                Err(e) if e.retryable() && retries < 8 => {
                    warn!(message = "scale write failed; retrying", adapter = name, error = %e, retry = retries + 1);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e),
            }
            retries += 1;
        }
    }

    async fn event(&self, message: &str) {
        let api: Api<Event> = Api::namespaced(self.client.clone(), &self.cfg.namespace);
        let now = k8s_openapi::jiff::Timestamp::now();
        let ev = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}-sla-planner-", self.cfg.dgd)),
                namespace: Some(self.cfg.namespace.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some("nvidia.com/v1alpha1".into()),
                kind: Some("DynamoGraphDeployment".into()),
                name: Some(self.cfg.dgd.clone()),
                namespace: Some(self.cfg.namespace.clone()),
                ..Default::default()
            },
            reason: Some("Scaled".into()),
            message: Some(message.chars().take(1000).collect()),
            type_: Some("Normal".into()),
            source: Some(EventSource {
                component: Some("sla-planner".into()),
                host: None,
            }),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: Some(MicroTime(now)),
            reporting_component: Some("sla-planner".into()),
            reporting_instance: Some(
                std::env::var("POD_NAME").unwrap_or_else(|_| "sla-planner".into()),
            ),
            action: Some("Scale".into()),
            count: Some(1),
            ..Default::default()
        };
        match self
            .call(api.create(&PostParams::default(), &ev), "create", "events")
            .await
        {
            Ok(_) => info!(message = "event recorded", event = message),
            Err(e) => warn!(message = "could not record the scale as an Event", error = %e),
        }
    }
}

/// One API call within the timeout, its failure classified for `namespace`.
async fn timed<T>(
    timeout: Duration,
    namespace: &str,
    fut: impl std::future::Future<Output = Result<T, kube::Error>>,
    verb: &'static str,
    res: &'static str,
) -> Result<T, ScaleError> {
    match tokio::time::timeout(timeout, fut).await {
        Err(_) => Err(ScaleError::Timeout(timeout)),
        Ok(r) => r.map_err(|e| classify(e, verb, res, GROUP, namespace)),
    }
}

/// Reads the DGD, with a not-found error that names it.
async fn fetch_dgd(
    api: &Api<DynamicObject>,
    cfg: &KubeConfig,
    timeout: Duration,
) -> Result<DynamicObject, ScaleError> {
    let got = timed(
        timeout,
        &cfg.namespace,
        api.get(&cfg.dgd),
        "get",
        "dynamographdeployments",
    )
    .await;
    got.map_err(|e| match e {
        ScaleError::NotFound(_) => ScaleError::NotFound(format!(
            "DynamoGraphDeployment {}/{} not found",
            cfg.namespace, cfg.dgd
        )),
        e => e,
    })
}

/// The services to scale in a DGD's JSON: by configured name, else by `componentType` and
/// `subComponentType`, else by the usual names. On failure, what is missing and how to name it.
pub fn discover(dgd: &Value, mode: Mode, cfg: &KubeConfig) -> Result<Topology, String> {
    let services = dgd
        .pointer("/spec/services")
        .and_then(Value::as_object)
        .ok_or("its spec has no services")?;
    let field = |v: &Value, f: &str| v.get(f).and_then(Value::as_str).map(str::to_string);
    let with_sub = |role: &str| {
        services
            .iter()
            .find(|(_, v)| field(v, "subComponentType").as_deref() == Some(role))
            .map(|(name, _)| name.clone())
    };
    // Workers with no role of their own: what an aggregated graph runs.
    let plain_workers: Vec<&String> = services
        .iter()
        .filter(|(_, v)| {
            field(v, "componentType").as_deref() == Some("worker")
                && field(v, "subComponentType").is_none()
        })
        .map(|(name, _)| name)
        .collect();
    let configured = |name: &Option<String>, field: &str| -> Result<Option<String>, String> {
        match name {
            Some(n) if services.contains_key(n) => Ok(Some(n.clone())),
            Some(n) => Err(format!("has no service {n:?} (kubernetes.{field})")),
            None => Ok(None),
        }
    };
    let usual = |names: &[&str]| {
        names
            .iter()
            .find(|n| services.contains_key(**n))
            .map(|n| n.to_string())
    };
    match mode {
        Mode::Disaggregated => {
            let looks_aggregated = || match (with_sub("prefill"), plain_workers.first()) {
                (None, Some(w)) => format!(
                    "; it looks aggregated (service {w} is a worker with no subComponentType): \
                     set planner.mode: aggregated"
                ),
                _ => String::new(),
            };
            let prefill = configured(&cfg.prefill_service, "prefill_service")?
                .or_else(|| with_sub("prefill"))
                .or_else(|| usual(&["VllmPrefillWorker", "TRTLLMPrefillWorker", "prefill"]))
                .ok_or_else(|| {
                    format!(
                        "has no prefill service (subComponentType: prefill, or \
                         kubernetes.prefill_service){}",
                        looks_aggregated()
                    )
                })?;
            let decode = configured(&cfg.decode_service, "decode_service")?
                .or_else(|| with_sub("decode"))
                .or_else(|| usual(&["VllmDecodeWorker", "TRTLLMDecodeWorker", "decode"]))
                .ok_or_else(|| {
                    "has no decode service (subComponentType: decode, or \
                     kubernetes.decode_service)"
                        .to_string()
                })?;
            Ok(Topology::Disaggregated { prefill, decode })
        }
        Mode::Aggregated => {
            if let Some(w) = configured(&cfg.worker_service, "worker_service")? {
                return Ok(Topology::Aggregated { worker: w });
            }
            // Scaling one pool of a disaggregated graph as if it did both would starve it.
            if let Some(p) = with_sub("prefill") {
                return Err(format!(
                    "is disaggregated (service {p} has subComponentType: prefill), but \
                     planner.mode is aggregated"
                ));
            }
            match plain_workers.as_slice() {
                [one] => Ok(Topology::Aggregated {
                    worker: one.to_string(),
                }),
                [] => usual(&["worker", "VllmDecodeWorker", "TRTLLMWorker", "decode"])
                    .map(|worker| Topology::Aggregated { worker })
                    .ok_or_else(|| {
                        "has no worker service (componentType: worker, or \
                         kubernetes.worker_service)"
                            .to_string()
                    }),
                many => Err(format!(
                    "has {} worker services ({}); name the one to scale with \
                     kubernetes.worker_service",
                    many.len(),
                    many.iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            }
        }
    }
}

/// Ready, starting and draining replicas of the scaled services, from a DGD's JSON. A
/// scaled service gone from the spec, or without a replica count, is an error: read as 0,
/// it would look like nothing runs (the loop holds instead). A missing `readyReplicas` is
/// 0, as Kubernetes leaves zero counts out of a status.
pub fn role_replicas(dgd: &Value, topology: &Topology) -> Result<RoleReplicas, String> {
    let state = |svc: &str| -> Result<ReplicaState, String> {
        let spec = dgd
            .pointer(&format!("/spec/services/{svc}"))
            .ok_or_else(|| format!("service {svc} is no longer in its spec"))?;
        let desired = spec
            .get("replicas")
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("spec.services.{svc}.replicas is not a replica count"))?
            as u32;
        let ready = dgd
            .pointer(&format!("/status/services/{svc}/readyReplicas"))
            .and_then(Value::as_u64)
            .unwrap_or(0) as u32;
        Ok(ReplicaState {
            ready: ready.min(desired),
            starting: desired.saturating_sub(ready),
            draining: ready.saturating_sub(desired),
        })
    };
    Ok(RoleReplicas {
        prefill: match topology.prefill() {
            Some(p) => state(p)?,
            None => ReplicaState::default(),
        },
        decode: state(topology.decode())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_are_read_per_role_and_a_vanished_service_is_an_error() {
        let dgd = json!({
            "spec": {"services": {"P": {"replicas": 3}, "D": {"replicas": 2}, "W": {}}},
            "status": {"services": {"P": {"readyReplicas": 1}, "D": {"readyReplicas": 4}}}
        });
        let pools = Topology::Disaggregated {
            prefill: "P".into(),
            decode: "D".into(),
        };
        let r = role_replicas(&dgd, &pools).unwrap();
        assert_eq!(
            (r.prefill.ready, r.prefill.starting, r.prefill.draining),
            (1, 2, 0)
        );
        assert_eq!(
            (r.decode.ready, r.decode.starting, r.decode.draining),
            (2, 0, 2)
        );
        // Aggregated: the workers are the decode role; nothing under prefill.
        let workers = Topology::Aggregated { worker: "D".into() };
        let r = role_replicas(&dgd, &workers).unwrap();
        assert_eq!(r.prefill, ReplicaState::default());
        assert_eq!(r.decode.ready, 2);
        // A service renamed or removed since start, or without a count: not "0 replicas".
        let gone = Topology::Aggregated { worker: "X".into() };
        assert!(role_replicas(&dgd, &gone)
            .unwrap_err()
            .contains("service X"));
        let uncounted = Topology::Aggregated { worker: "W".into() };
        assert!(role_replicas(&dgd, &uncounted)
            .unwrap_err()
            .contains("spec.services.W.replicas"));
    }

    fn cfg() -> KubeConfig {
        serde_json::from_value(json!({"namespace": "dynamo", "dgd": "g"})).unwrap()
    }

    fn dgd(services: Value) -> Value {
        json!({"spec": {"services": services}})
    }

    #[test]
    fn services_are_found_by_role_then_by_name_as_the_mode_asks() {
        let frontend = json!({"componentType": "frontend", "replicas": 1});
        let worker = |sub: Option<&str>| match sub {
            Some(s) => json!({"componentType": "worker", "subComponentType": s}),
            None => json!({"componentType": "worker"}),
        };
        let disagg = dgd(json!({
            "Frontend": frontend,
            "P": worker(Some("prefill")),
            "D": worker(Some("decode")),
        }));
        // Dynamo's current aggregated example: one `worker` service, no subComponentType.
        let agg = dgd(json!({"Frontend": frontend, "worker": worker(None)}));
        // An older one names the aggregated worker VllmDecodeWorker.
        let agg_old = dgd(json!({"Frontend": frontend, "VllmDecodeWorker": worker(None)}));
        let two = dgd(json!({"A": worker(None), "B": worker(None)}));
        let named_only = dgd(json!({"TRTLLMWorker": {"replicas": 1}}));
        let d = Mode::Disaggregated;
        let a = Mode::Aggregated;
        let cases: Vec<(&Value, Mode, Result<Topology, &str>)> = vec![
            (
                &disagg,
                d,
                Ok(Topology::Disaggregated {
                    prefill: "P".into(),
                    decode: "D".into(),
                }),
            ),
            (
                &agg,
                a,
                Ok(Topology::Aggregated {
                    worker: "worker".into(),
                }),
            ),
            (
                &agg_old,
                a,
                Ok(Topology::Aggregated {
                    worker: "VllmDecodeWorker".into(),
                }),
            ),
            (
                &named_only,
                a,
                Ok(Topology::Aggregated {
                    worker: "TRTLLMWorker".into(),
                }),
            ),
            (&disagg, a, Err("service P has subComponentType: prefill")),
            (&agg, d, Err("set planner.mode: aggregated")),
            (&two, a, Err("2 worker services (A, B)")),
        ];
        for (graph, mode, want) in cases {
            let got = discover(graph, mode, &cfg());
            match want {
                Ok(t) => assert_eq!(got, Ok(t), "{graph} in {mode:?}"),
                Err(part) => {
                    let e = got.expect_err("an error");
                    assert!(e.contains(part), "{e:?} should say {part:?}");
                }
            }
        }
        // A configured name wins, and a wrong one is named.
        let mut c = cfg();
        c.worker_service = Some("B".into());
        assert_eq!(
            discover(&two, a, &c),
            Ok(Topology::Aggregated { worker: "B".into() })
        );
        c.worker_service = Some("C".into());
        assert!(discover(&two, a, &c)
            .unwrap_err()
            .contains("kubernetes.worker_service"));
    }
}

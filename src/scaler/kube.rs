//! Replica counts out to Kubernetes: read the DGD, write the DGDSA `scale` subresource.

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

pub struct KubeScaler {
    client: Client,
    cfg: KubeConfig,
    dgd_api: Api<DynamicObject>,
    adapter_api: Api<DynamicObject>,
    pub prefill_service: String,
    pub decode_service: String,
    /// Adapter names; `None` where the adapter is missing and the DGD is patched instead.
    prefill_adapter: Option<String>,
    decode_adapter: Option<String>,
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
    /// Connects, reads the DGD, finds the prefill and decode services and their adapters.
    /// A missing DGD, service or adapter (without fallback) is an error that names it.
    pub async fn connect(cfg: &KubeConfig) -> Result<KubeScaler, ScaleError> {
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
        let mut s = KubeScaler {
            client,
            cfg: cfg.clone(),
            dgd_api,
            adapter_api,
            prefill_service: String::new(),
            decode_service: String::new(),
            prefill_adapter: None,
            decode_adapter: None,
            timeout,
        };
        let dgd = s.read_dgd().await?;
        s.prefill_service = find_service(&dgd, "prefill", cfg.prefill_service.as_deref())
            .ok_or_else(|| ScaleError::NotFound(format!("DynamoGraphDeployment {}/{} has no prefill service (subComponentType: prefill, or kubernetes.prefill_service)", cfg.namespace, cfg.dgd)))?;
        s.decode_service = find_service(&dgd, "decode", cfg.decode_service.as_deref())
            .ok_or_else(|| ScaleError::NotFound(format!("DynamoGraphDeployment {}/{} has no decode service (subComponentType: decode, or kubernetes.decode_service)", cfg.namespace, cfg.dgd)))?;
        s.prefill_adapter = s.check_adapter(&s.prefill_service.clone()).await?;
        s.decode_adapter = s.check_adapter(&s.decode_service.clone()).await?;
        Ok(s)
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
        match tokio::time::timeout(self.timeout, fut).await {
            Err(_) => Err(ScaleError::Timeout(self.timeout)),
            Ok(r) => r.map_err(|e| classify(e, verb, res, GROUP, &self.cfg.namespace)),
        }
    }

    async fn read_dgd(&self) -> Result<DynamicObject, ScaleError> {
        self.call(
            self.dgd_api.get(&self.cfg.dgd),
            "get",
            "dynamographdeployments",
        )
        .await
        .map_err(|e| match e {
            ScaleError::NotFound(_) => ScaleError::NotFound(format!(
                "DynamoGraphDeployment {}/{} not found",
                self.cfg.namespace, self.cfg.dgd
            )),
            e => e,
        })
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
        let state = |svc: &str| {
            let desired = dgd
                .data
                .pointer(&format!("/spec/services/{svc}/replicas"))
                .and_then(Value::as_u64)
                .unwrap_or(0) as u32;
            let ready = dgd
                .data
                .pointer(&format!("/status/services/{svc}/readyReplicas"))
                .and_then(Value::as_u64)
                .unwrap_or(0) as u32;
            ReplicaState {
                ready: ready.min(desired),
                starting: desired.saturating_sub(ready),
                draining: ready.saturating_sub(desired),
            }
        };
        Ok(RoleReplicas {
            prefill: state(&self.prefill_service),
            decode: state(&self.decode_service),
        })
    }

    /// Writes the targets: the scale subresource of each adapter whose count differs, with
    /// retries (409: re-read and retry; 5xx and timeouts: back off). A missing adapter is
    /// patched through the DGD only when configured, and logged each time.
    pub async fn apply(&self, prefill: u32, decode: u32, why: &str) -> Result<Applied, ScaleError> {
        let mut applied = Applied::default();
        let current = self.replicas().await?;
        let roles = [
            (
                &self.prefill_service,
                &self.prefill_adapter,
                prefill,
                current.prefill.ready + current.prefill.starting,
            ),
            (
                &self.decode_service,
                &self.decode_adapter,
                decode,
                current.decode.ready + current.decode.starting,
            ),
        ];
        for (service, adapter, target, now) in roles {
            if target == now {
                continue;
            }
            match adapter {
                Some(name) => applied.retries += self.write_scale(name, target).await?,
                None => {
                    warn!(message = "patching the DGD: no scaling adapter for this service", service = %service, replicas = target);
                    let patch =
                        json!({"spec": {"services": {service.as_str(): {"replicas": target}}}});
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

/// The service of this role: by name when configured, else by `subComponentType`, else by
/// the usual names.
fn find_service(dgd: &DynamicObject, role: &str, configured: Option<&str>) -> Option<String> {
    let services = dgd.data.pointer("/spec/services")?.as_object()?;
    if let Some(name) = configured {
        return services.contains_key(name).then(|| name.to_string());
    }
    if let Some((name, _)) = services
        .iter()
        .find(|(_, v)| v.get("subComponentType").and_then(Value::as_str) == Some(role))
    {
        return Some(name.clone());
    }
    let fallback: &[&str] = if role == "prefill" {
        &["VllmPrefillWorker", "TRTLLMPrefillWorker", "prefill"]
    } else {
        &["VllmDecodeWorker", "TRTLLMDecodeWorker", "decode"]
    };
    fallback
        .iter()
        .find(|n| services.contains_key(**n))
        .map(|n| n.to_string())
}

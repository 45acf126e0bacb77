//! The subset of the Kubernetes API a planner uses, over the emulated deployment, with
//! Kubernetes-shaped objects and errors.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::{ScaleWrite, State, PREFILL_SERVICE};

pub struct ApiState {
    resource_version: u64,
    /// `spec.replicas` of the adapters, by service.
    replicas: HashMap<String, u32>,
    leases: HashMap<String, Value>,
    pub events: Vec<Value>,
    rng: rand_pcg::Pcg64,
}

impl ApiState {
    /// The adapters' initial replicas, by service.
    pub fn new(initial: &[(&str, u32)]) -> ApiState {
        let replicas = initial.iter().map(|&(s, n)| (s.to_string(), n)).collect();
        ApiState {
            resource_version: 1,
            replicas,
            leases: HashMap::new(),
            events: Vec::new(),
            rng: rand_pcg::Pcg64::seed_from_u64(7),
        }
    }

    fn bump(&mut self) -> String {
        self.resource_version += 1;
        self.resource_version.to_string()
    }
}

/// A Kubernetes `Status` error body.
fn status(code: StatusCode, reason: &str, message: String) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code.as_u16()});
    (code, Json(body)).into_response()
}

/// A request body as JSON, or the 400 the API server would answer.
fn json_body(body: &Bytes) -> Result<Value, Box<Response>> {
    serde_json::from_slice(body).map_err(|e| {
        Box::new(status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("the body is not JSON: {e}"),
        ))
    })
}

fn not_found(kind: &str, name: &str) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{kind} \"{name}\" not found"),
    )
}

/// Injected faults: latency always, then a 500 or (for writes) a 409 at their rates.
async fn fault(state: &State, write: bool) -> Option<Response> {
    let f = state.cfg.faults;
    if f.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(f.latency_ms)).await;
    }
    let mut api = state.k8s.lock().expect("emulator lock");
    if f.error_rate > 0.0 && api.rng.random::<f64>() < f.error_rate {
        return Some(status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "injected fault".into(),
        ));
    }
    if write && f.conflict_rate > 0.0 && api.rng.random::<f64>() < f.conflict_rate {
        return Some(status(
            StatusCode::CONFLICT,
            "Conflict",
            "Operation cannot be fulfilled: the object has been modified; please apply your changes to the latest version and try again".into(),
        ));
    }
    None
}

fn adapter_name(dgd: &str, service: &str) -> String {
    format!("{dgd}-{}", service.to_lowercase())
}

fn service_of_adapter(state: &State, name: &str) -> Option<&'static str> {
    state
        .services()
        .iter()
        .map(|&(s, _)| s)
        .find(|s| adapter_name(&state.cfg.dgd, s) == name)
}

fn dgd_json(state: &State) -> Value {
    let api = state.k8s.lock().expect("emulator lock");
    let r = state
        .deployment
        .lock()
        .expect("emulator lock")
        .replica_states();
    let want = |s: &str| api.replicas.get(s).copied().unwrap_or(0);
    let svc_status = |desired: u32, ready: u32| json!({"replicas": desired, "updatedReplicas": desired, "readyReplicas": ready, "availableReplicas": ready});
    let worker = |sub: Option<&str>, replicas: u32| {
        let mut w = json!({"componentType": "worker", "replicas": replicas, "resources": {"limits": {"gpu": "1"}}, "scalingAdapter": {"enabled": true}});
        if let Some(sub) = sub {
            w["subComponentType"] = json!(sub);
        }
        w
    };
    let mut spec = json!({"Frontend": {"componentType": "frontend", "replicas": 1}});
    let mut statuses = json!({"Frontend": svc_status(1, 1)});
    for &(service, sub) in state.services() {
        // Ready replicas by role; an aggregated graph's workers are the decode count.
        let ready = if service == PREFILL_SERVICE {
            r.prefill.ready
        } else {
            r.decode.ready
        };
        spec[service] = worker(sub, want(service));
        statuses[service] = svc_status(want(service), ready);
    }
    json!({
        "apiVersion": "nvidia.com/v1alpha1",
        "kind": "DynamoGraphDeployment",
        "metadata": {"name": state.cfg.dgd, "namespace": state.cfg.namespace, "resourceVersion": api.resource_version.to_string()},
        "spec": {"services": spec},
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "services": statuses,
        }
    })
}

fn adapter_json(state: &State, service: &str, api: &ApiState) -> Value {
    let name = adapter_name(&state.cfg.dgd, service);
    let n = api.replicas.get(service).copied().unwrap_or(0);
    json!({
        "apiVersion": "nvidia.com/v1alpha1",
        "kind": "DynamoGraphDeploymentScalingAdapter",
        "metadata": {"name": name, "namespace": state.cfg.namespace, "resourceVersion": api.resource_version.to_string()},
        "spec": {"replicas": n, "dgdRef": {"name": state.cfg.dgd, "serviceName": service}},
        "status": {"replicas": n, "selector": format!("nvidia.com/dgd={},nvidia.com/service={}", state.cfg.dgd, service.to_lowercase())}
    })
}

fn scale_json(state: &State, service: &str, api: &ApiState) -> Value {
    let name = adapter_name(&state.cfg.dgd, service);
    let n = api.replicas.get(service).copied().unwrap_or(0);
    json!({
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {"name": name, "namespace": state.cfg.namespace, "resourceVersion": api.resource_version.to_string()},
        "spec": {"replicas": n},
        "status": {"replicas": n, "selector": format!("nvidia.com/dgd={},nvidia.com/service={}", state.cfg.dgd, service.to_lowercase())}
    })
}

/// Applies new adapter replicas to the simulated deployment.
fn set_replicas(state: &State, api: &mut ApiState, service: &str, n: u32, via: &'static str) {
    api.replicas.insert(service.to_string(), n);
    api.bump();
    // Every service but the prefill one is sized as decode: decode engines or workers.
    let count = |prefill: bool| {
        state
            .services()
            .iter()
            .filter(|&&(s, _)| (s == PREFILL_SERVICE) == prefill)
            .map(|&(s, _)| api.replicas.get(s).copied().unwrap_or(0))
            .sum::<u32>()
    };
    let (p, d) = (count(true), count(false));
    state
        .deployment
        .lock()
        .expect("emulator lock")
        .apply_targets(p, d);
    state
        .writes
        .lock()
        .expect("emulator lock")
        .push(ScaleWrite {
            wall_s: state.wall_s(),
            service: service.to_string(),
            replicas: n,
            via,
        });
}

fn check_ns(state: &State, ns: &str) -> Option<Response> {
    (ns != state.cfg.namespace).then(|| {
        status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("namespace \"{ns}\" not found"),
        )
    })
}

async fn get_dgd(
    AxState(state): AxState<Arc<State>>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    if let Some(r) = fault(&state, false).await.or_else(|| check_ns(&state, &ns)) {
        return r;
    }
    if name != state.cfg.dgd {
        return not_found("dynamographdeployments.nvidia.com", &name);
    }
    Json(dgd_json(&state)).into_response()
}

async fn patch_dgd(
    AxState(state): AxState<Arc<State>>,
    Path((ns, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let body = match json_body(&body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    if let Some(r) = fault(&state, true).await.or_else(|| check_ns(&state, &ns)) {
        return r;
    }
    if name != state.cfg.dgd {
        return not_found("dynamographdeployments.nvidia.com", &name);
    }
    if let Some(services) = body.pointer("/spec/services").and_then(Value::as_object) {
        let mut api = state.k8s.lock().expect("emulator lock");
        for (svc, v) in services {
            let Some(n) = v.get("replicas").and_then(Value::as_u64) else {
                continue;
            };
            if !state.services().iter().any(|&(s, _)| s == svc) {
                return status(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    format!("spec.services.{svc}: no such service"),
                );
            }
            set_replicas(&state, &mut api, svc, n as u32, "dgd-patch");
        }
    }
    Json(dgd_json(&state)).into_response()
}

async fn list_adapters(AxState(state): AxState<Arc<State>>, Path(ns): Path<String>) -> Response {
    if let Some(r) = fault(&state, false).await.or_else(|| check_ns(&state, &ns)) {
        return r;
    }
    let api = state.k8s.lock().expect("emulator lock");
    let items: Vec<Value> = state
        .services()
        .iter()
        .map(|&(s, _)| adapter_json(&state, s, &api))
        .collect();
    Json(json!({"apiVersion": "nvidia.com/v1alpha1", "kind": "DynamoGraphDeploymentScalingAdapterList", "metadata": {"resourceVersion": api.resource_version.to_string()}, "items": items})).into_response()
}

/// A read of one scaling adapter: injected faults, the namespace, then the adapter's service.
async fn read_adapter(state: &State, ns: &str, name: &str) -> Result<&'static str, Response> {
    if let Some(r) = fault(state, false).await.or_else(|| check_ns(state, ns)) {
        return Err(r);
    }
    service_of_adapter(state, name)
        .ok_or_else(|| not_found("dynamographdeploymentscalingadapters.nvidia.com", name))
}

/// A GET of an adapter or of its `scale` subresource: `render` writes the object found.
async fn read_adapter_as(
    state: &State,
    ns: &str,
    name: &str,
    render: fn(&State, &str, &ApiState) -> Value,
) -> Response {
    match read_adapter(state, ns, name).await {
        Ok(service) => {
            let api = state.k8s.lock().expect("emulator lock");
            Json(render(state, service, &api)).into_response()
        }
        Err(r) => r,
    }
}

async fn get_adapter(
    AxState(state): AxState<Arc<State>>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    read_adapter_as(&state, &ns, &name, adapter_json).await
}

async fn get_scale(
    AxState(state): AxState<Arc<State>>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    read_adapter_as(&state, &ns, &name, scale_json).await
}

async fn write_scale(
    AxState(state): AxState<Arc<State>>,
    Path((ns, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let body = match json_body(&body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    if let Some(r) = fault(&state, true).await.or_else(|| check_ns(&state, &ns)) {
        return r;
    }
    if state.cfg.faults.forbid_scale {
        return status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!(
                "dynamographdeploymentscalingadapters.nvidia.com \"{name}\" is forbidden: User \"system:serviceaccount:{ns}:sla-planner\" cannot patch resource \"dynamographdeploymentscalingadapters/scale\" in API group \"nvidia.com\" in the namespace \"{ns}\""
            ),
        );
    }
    let Some(service) = service_of_adapter(&state, &name) else {
        return not_found("dynamographdeploymentscalingadapters.nvidia.com", &name);
    };
    let Some(n) = body.pointer("/spec/replicas").and_then(Value::as_i64) else {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "spec.replicas: Required value".into(),
        );
    };
    if n < 0 {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!("spec.replicas: Invalid value: {n}: must be greater than or equal to 0"),
        );
    }
    let mut api = state.k8s.lock().expect("emulator lock");
    set_replicas(&state, &mut api, service, n as u32, "scale");
    Json(scale_json(&state, service, &api)).into_response()
}

async fn get_lease(
    AxState(state): AxState<Arc<State>>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    if let Some(r) = fault(&state, false).await {
        return r;
    }
    let api = state.k8s.lock().expect("emulator lock");
    match api.leases.get(&format!("{ns}/{name}")) {
        Some(l) => Json(l.clone()).into_response(),
        None => not_found("leases.coordination.k8s.io", &name),
    }
}

async fn create_lease(
    AxState(state): AxState<Arc<State>>,
    Path(ns): Path<String>,
    body: Bytes,
) -> Response {
    let mut body = match json_body(&body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    if let Some(r) = fault(&state, true).await {
        return r;
    }
    let Some(name) = body
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "metadata.name: Required value".into(),
        );
    };
    let mut api = state.k8s.lock().expect("emulator lock");
    let key = format!("{ns}/{name}");
    if api.leases.contains_key(&key) {
        return status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("leases.coordination.k8s.io \"{name}\" already exists"),
        );
    }
    let rv = api.bump();
    body["metadata"]["resourceVersion"] = json!(rv);
    body["metadata"]["namespace"] = json!(ns);
    api.leases.insert(key, body.clone());
    (StatusCode::CREATED, Json(body)).into_response()
}

async fn replace_lease(
    AxState(state): AxState<Arc<State>>,
    Path((ns, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let mut body = match json_body(&body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    if let Some(r) = fault(&state, true).await {
        return r;
    }
    let mut api = state.k8s.lock().expect("emulator lock");
    let key = format!("{ns}/{name}");
    let Some(current) = api.leases.get(&key) else {
        return not_found("leases.coordination.k8s.io", &name);
    };
    // Optimistic concurrency, as the API server does it.
    let current_rv = current.pointer("/metadata/resourceVersion").cloned();
    if body.pointer("/metadata/resourceVersion").cloned() != current_rv {
        return status(StatusCode::CONFLICT, "Conflict", format!("Operation cannot be fulfilled on leases.coordination.k8s.io \"{name}\": the object has been modified; please apply your changes to the latest version and try again"));
    }
    let rv = api.bump();
    body["metadata"]["resourceVersion"] = json!(rv);
    api.leases.insert(key, body.clone());
    Json(body).into_response()
}

async fn create_event(
    AxState(state): AxState<Arc<State>>,
    Path(_ns): Path<String>,
    body: Bytes,
) -> Response {
    let body = match json_body(&body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    if let Some(r) = fault(&state, true).await {
        return r;
    }
    state
        .k8s
        .lock()
        .expect("emulator lock")
        .events
        .push(body.clone());
    (StatusCode::CREATED, Json(body)).into_response()
}

/// Not Kubernetes: what the emulator saw, for tests and curious operators.
async fn writes(AxState(state): AxState<Arc<State>>) -> Response {
    let writes = state.writes.lock().expect("emulator lock").clone();
    let api = state.k8s.lock().expect("emulator lock");
    let r = state
        .deployment
        .lock()
        .expect("emulator lock")
        .replica_states();
    Json(json!({
        "wall_s": state.wall_s(),
        "writes": writes,
        "replicas": api.replicas,
        "ready": {"prefill": r.prefill.ready, "decode": r.decode.ready},
        "events": api.events.len(),
        "calls": state.calls.lock().expect("emulator lock").iter().map(|(m, p)| json!([m, p])).collect::<Vec<_>>(),
        "leases": api.leases.values().cloned().collect::<Vec<_>>(),
    }))
    .into_response()
}

async fn record_call(
    AxState(state): AxState<Arc<State>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path().to_string();
    if path.starts_with("/api") {
        state
            .calls
            .lock()
            .expect("emulator lock")
            .insert((req.method().to_string(), path));
    }
    next.run(req).await
}

pub fn routes(state: Arc<State>) -> Router {
    let nv = "/apis/nvidia.com/v1alpha1/namespaces/{ns}";
    Router::new()
        .route(
            &format!("{nv}/dynamographdeployments/{{name}}"),
            get(get_dgd).patch(patch_dgd),
        )
        .route(
            &format!("{nv}/dynamographdeploymentscalingadapters"),
            get(list_adapters),
        )
        .route(
            &format!("{nv}/dynamographdeploymentscalingadapters/{{name}}"),
            get(get_adapter),
        )
        .route(
            &format!("{nv}/dynamographdeploymentscalingadapters/{{name}}/scale"),
            get(get_scale).patch(write_scale).put(write_scale),
        )
        .route(
            "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases",
            post(create_lease),
        )
        .route(
            "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}",
            get(get_lease).put(replace_lease),
        )
        .route("/api/v1/namespaces/{ns}/events", post(create_event))
        .route("/emulator/state", get(writes))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            record_call,
        ))
        .with_state(state)
}

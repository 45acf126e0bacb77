//! The planner's HTTP API: health probes, `/metrics`, the status and history API, run-time
//! control (only with a bearer token), and the dashboard. Response bodies are their own
//! DTOs, documented in `docs/openapi.yaml` (a test checks it against `ROUTES`).

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use super::{SharedControl, SharedStatus, TickRecord};
use crate::planner::model::Corrections;
use crate::planner::{Decision, Limits, Observation, Sla};

/// Every route served, as (method, path). `docs/openapi.yaml` documents exactly these.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/api/v1/status"),
    ("GET", "/api/v1/history"),
    ("GET", "/api/v1/observations"),
    ("GET", "/api/v1/decisions"),
    ("GET", "/api/v1/config"),
    ("POST", "/api/v1/control/pause"),
    ("POST", "/api/v1/control/resume"),
    ("PUT", "/api/v1/control/limits"),
];

#[derive(Clone)]
pub struct ApiState {
    pub status: SharedStatus,
    pub control: SharedControl,
    /// Writes need `Authorization: Bearer <token>`; without a token they are refused.
    pub token: Option<Arc<String>>,
    /// The effective configuration, secrets redacted.
    pub config: Arc<serde_json::Value>,
    /// Labels naming the deployment on the exported corrections (`dgd`, `dgd_namespace`).
    pub metric_labels: Arc<Vec<(String, String)>>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorDto {
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

fn error(code: StatusCode, msg: impl Into<String>, field: Option<&str>) -> Response {
    (
        code,
        Json(ErrorDto {
            error: msg.into(),
            field: field.map(str::to_string),
        }),
    )
        .into_response()
}

#[derive(Debug, Serialize, Deserialize)]
pub struct StatusDto {
    pub ready: bool,
    pub leader: bool,
    pub advisory: bool,
    pub paused: bool,
    pub ticks: u64,
    pub holding: Option<String>,
    pub errors_total: BTreeMap<String, u64>,
    pub decisions_total: BTreeMap<String, u64>,
    pub sla: Option<Sla>,
    pub limits: Option<Limits>,
    pub observation: Option<Observation>,
    pub decision: Option<Decision>,
    pub last_tick_seconds: f64,
}

#[derive(Debug, Serialize, Deserialize, Clone, Copy)]
pub struct RoleDto {
    pub target: u32,
    pub ready: u32,
    pub starting: u32,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct TickDto {
    pub time_s: f64,
    pub requests_per_s: Option<f64>,
    pub forecast_requests_per_s: Option<f64>,
    pub isl_mean: Option<f64>,
    pub osl_mean: Option<f64>,
    pub ttft_ms: Option<crate::planner::LatencySummary>,
    pub itl_ms: Option<crate::planner::LatencySummary>,
    pub expected_ttft_ms: Option<f64>,
    pub expected_itl_ms: Option<f64>,
    pub kv_prefill: Option<f64>,
    pub kv_decode: Option<f64>,
    pub prefill: RoleDto,
    pub decode: RoleDto,
    pub leader: bool,
    pub wrote: bool,
    pub reasons: Vec<String>,
}

impl From<&TickRecord> for TickDto {
    fn from(t: &TickRecord) -> TickDto {
        let o = &t.observation;
        TickDto {
            time_s: t.time_s,
            requests_per_s: o.requests.map(|n| n / o.interval_s),
            forecast_requests_per_s: t.decision.forecast.map(|f| f.requests_per_s),
            isl_mean: o.isl_mean,
            osl_mean: o.osl_mean,
            ttft_ms: o.ttft_ms,
            itl_ms: o.itl_ms,
            expected_ttft_ms: t.decision.expected_ttft_ms,
            expected_itl_ms: t.decision.expected_itl_ms,
            kv_prefill: o.kv_utilization.and_then(|k| k.prefill),
            kv_decode: o.kv_utilization.and_then(|k| k.decode),
            prefill: RoleDto {
                target: t.decision.prefill,
                ready: t.replicas.prefill.ready,
                starting: t.replicas.prefill.starting,
            },
            decode: RoleDto {
                target: t.decision.decode,
                ready: t.replicas.decode.ready,
                starting: t.replicas.decode.starting,
            },
            leader: t.leader,
            wrote: t.wrote,
            reasons: t.decision.reasons.clone(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct HistoryDto {
    pub ticks: Vec<TickDto>,
}

/// A history query: `since` alone. A parameter it lacks (a typo, a `limit` it does not
/// have) is refused rather than read past, as the whole history would come back unfiltered.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    pub since: Option<f64>,
}

/// A change of limits: any subset of the fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsUpdate {
    pub min_prefill: Option<u32>,
    pub max_prefill: Option<u32>,
    pub min_decode: Option<u32>,
    pub max_decode: Option<u32>,
    pub gpu_budget: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ControlDto {
    pub paused: bool,
    pub limits: Option<Limits>,
    /// Changes apply at the next decision.
    pub applies: String,
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<ApiState>) -> Response {
    let st = s.status.lock().expect("status lock");
    match (st.ready, &st.holding) {
        (true, None) => (StatusCode::OK, "ready\n".to_string()).into_response(),
        (true, Some(why)) => {
            (StatusCode::OK, format!("ready, holding replicas: {why}\n")).into_response()
        }
        (false, _) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "no decision yet\n".to_string(),
        )
            .into_response(),
    }
}

async fn status(State(s): State<ApiState>) -> Json<StatusDto> {
    let st = s.status.lock().expect("status lock");
    Json(StatusDto {
        ready: st.ready,
        leader: st.leader,
        advisory: st.advisory,
        paused: st.paused,
        ticks: st.ticks,
        holding: st.holding.clone(),
        errors_total: st.errors_total.clone(),
        decisions_total: st.decisions_total.clone(),
        sla: st.sla,
        limits: st.limits,
        observation: st.last_observation.clone(),
        decision: st.last_decision.clone(),
        last_tick_seconds: st.last_tick_seconds,
    })
}

/// The field serde names in an "unknown field `name`, expected ..." message.
fn unknown_field(msg: &str) -> Option<&str> {
    let (_, after) = msg.split_once("unknown field `")?;
    after.split('`').next()
}

/// The `since` of a history query: ticks with `time_s` above it, all without one. A query
/// that does not parse is answered as every other refusal is: JSON, the parameter named.
fn since(query: Result<Query<HistoryQuery>, QueryRejection>) -> Result<f64, Box<Response>> {
    match query {
        Ok(Query(q)) => Ok(q.since.unwrap_or(f64::NEG_INFINITY)),
        Err(rejection) => {
            let text = rejection.body_text();
            Err(Box::new(match unknown_field(&text) {
                Some(name) => error(
                    StatusCode::BAD_REQUEST,
                    format!("{name}: not a parameter of this query (it takes `since`)"),
                    Some(name),
                ),
                None => error(
                    StatusCode::BAD_REQUEST,
                    "since: must be a number (seconds)",
                    Some("since"),
                ),
            }))
        }
    }
}

async fn history(
    State(s): State<ApiState>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Response {
    let since = match since(query) {
        Ok(since) => since,
        Err(refused) => return *refused,
    };
    let st = s.status.lock().expect("status lock");
    Json(HistoryDto {
        ticks: st
            .history
            .iter()
            .filter(|t| t.time_s > since)
            .map(TickDto::from)
            .collect(),
    })
    .into_response()
}

/// The kept ticks' lines, one per tick, as JSON lines: what `decide` reads or prints.
fn tick_lines(
    s: &ApiState,
    query: Result<Query<HistoryQuery>, QueryRejection>,
    line: impl Fn(&TickRecord) -> String,
) -> Response {
    let since = match since(query) {
        Ok(since) => since,
        Err(refused) => return *refused,
    };
    let st = s.status.lock().expect("status lock");
    let body: String = st
        .history
        .iter()
        .filter(|t| t.time_s > since)
        .map(|t| line(t) + "\n")
        .collect();
    ([(header::CONTENT_TYPE, "application/jsonl")], body).into_response()
}

/// The observations the planner was shown, as `decide` lines: replayed through `decide`
/// with another configuration, they say what it would have decided.
async fn observations(
    State(s): State<ApiState>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Response {
    tick_lines(&s, query, |t| t.observation.decide_line())
}

/// The planner's decisions to those observations, as `decide` prints them.
async fn decisions(
    State(s): State<ApiState>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Response {
    tick_lines(&s, query, |t| {
        serde_json::to_string(&t.decision).expect("plain data serialises")
    })
}

async fn config(State(s): State<ApiState>) -> Json<serde_json::Value> {
    Json((*s.config).clone())
}

/// `None` when the request may write; else the refusal.
fn authorize(s: &ApiState, headers: &HeaderMap) -> Option<Response> {
    let Some(token) = &s.token else {
        return Some(error(
            StatusCode::FORBIDDEN,
            "writes are disabled: start with --api-token-file to enable them",
            None,
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Compare without an early exit, so timing says nothing about the token.
    let ok = given.is_some_and(|g| {
        g.len() == token.len()
            && g.bytes()
                .zip(token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    });
    (!ok).then(|| {
        error(
            StatusCode::UNAUTHORIZED,
            "a valid bearer token is required",
            None,
        )
    })
}

fn control_dto(s: &ApiState) -> Json<ControlDto> {
    let c = s.control.lock().expect("control lock").clone();
    let limits = c.limits.or(s.status.lock().expect("status lock").limits);
    Json(ControlDto {
        paused: c.paused,
        limits,
        applies: "at the next decision".into(),
    })
}

async fn pause(State(s): State<ApiState>, headers: HeaderMap) -> Response {
    if let Some(r) = authorize(&s, &headers) {
        return r;
    }
    s.control.lock().expect("control lock").paused = true;
    tracing::info!(message = "scaling paused through the API");
    control_dto(&s).into_response()
}

async fn resume(State(s): State<ApiState>, headers: HeaderMap) -> Response {
    if let Some(r) = authorize(&s, &headers) {
        return r;
    }
    s.control.lock().expect("control lock").paused = false;
    tracing::info!(message = "scaling resumed through the API");
    control_dto(&s).into_response()
}

async fn set_limits(State(s): State<ApiState>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = authorize(&s, &headers) {
        return r;
    }
    // serde reads an array into a struct's fields in order: `[1, 2]` would set the minimum
    // and maximum prefill counts. Limits are named, each of them.
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not a limits object: an array; name each limit (`{\"max_prefill\": 4}`)",
            None,
        );
    }
    let de = &mut serde_json::Deserializer::from_slice(&body);
    let update: LimitsUpdate = match serde_path_to_error::deserialize(de) {
        Ok(u) => u,
        Err(e) => {
            // The field is where the value failed; an unknown one is named by the message.
            let path = e.path().to_string();
            let msg = e.inner().to_string();
            let field = if path != "." {
                Some(path)
            } else {
                unknown_field(&msg).map(str::to_string)
            };
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("not a limits object: {msg}"),
                field.as_deref(),
            );
        }
    };
    let current = s.control.lock().expect("control lock").limits.or(s
        .status
        .lock()
        .expect("status lock")
        .limits);
    let Some(mut l) = current else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "no limits known yet", None);
    };
    // The deployment keeps its shape: limits that would turn a disaggregated one into
    // workers (no prefill) are refused like any other invalid limits.
    let aggregated = l.is_aggregated();
    if aggregated {
        let prefill_fields = [
            ("min_prefill", update.min_prefill),
            ("max_prefill", update.max_prefill),
        ];
        if let Some((field, _)) = prefill_fields.iter().find(|(_, v)| v.is_some()) {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "the deployment is aggregated: there is no prefill role; its workers are \
                 bounded by min_decode and max_decode",
                Some(field),
            );
        }
    }
    l.min_prefill = update.min_prefill.unwrap_or(l.min_prefill);
    l.max_prefill = update.max_prefill.unwrap_or(l.max_prefill);
    l.min_decode = update.min_decode.unwrap_or(l.min_decode);
    l.max_decode = update.max_decode.unwrap_or(l.max_decode);
    l.gpu_budget = update.gpu_budget.unwrap_or(l.gpu_budget);
    let checked = if aggregated {
        l.validate_aggregated()
    } else {
        l.validate()
    };
    if let Err((field, msg)) = checked {
        return error(StatusCode::UNPROCESSABLE_ENTITY, msg, Some(field));
    }
    s.control.lock().expect("control lock").limits = Some(l);
    control_dto(&s).into_response()
}

/// `/metrics` in the Prometheus text format, built from the status at each scrape.
async fn metrics(State(s): State<ApiState>) -> Response {
    let st = s.status.lock().expect("status lock");
    let mut reg = Registry::with_prefix("sla_planner");
    let gauge = |reg: &mut Registry, name: &str, help: &str, v: Option<f64>| {
        let g: Gauge<f64, AtomicU64> = Gauge::default();
        g.set(v.unwrap_or(f64::NAN));
        reg.register(name, help, g);
    };
    let o = st.last_observation.clone().unwrap_or_default();
    let d = st.last_decision.clone().unwrap_or_default();
    gauge(
        &mut reg,
        "requests_per_second",
        "Observed request rate over the last interval",
        o.requests.map(|n| n / o.interval_s.max(1e-9)),
    );
    gauge(
        &mut reg,
        "forecast_requests_per_second",
        "Request rate the last decision planned for",
        d.forecast.map(|f| f.requests_per_s),
    );
    // The interval and the cold start planned with: longer than configured where the
    // replicas have shown a longer cold start.
    gauge(
        &mut reg,
        "forecast_horizon_seconds",
        "How far ahead the last decision planned",
        d.forecast.map(|f| f.horizon_s),
    );
    gauge(
        &mut reg,
        "prefix_cache_hit_ratio",
        "Share of the last interval's prompt tokens the prefill workers found cached",
        o.prefix_cache_hit_rate,
    );
    let lat: Family<Vec<(String, String)>, Gauge<f64, AtomicU64>> = Family::default();
    for (metric, source, v) in [
        ("ttft", "observed_p99", o.ttft_ms.and_then(|l| l.p99)),
        ("ttft", "observed_mean", o.ttft_ms.and_then(|l| l.mean)),
        ("ttft", "expected", d.expected_ttft_ms),
        ("itl", "observed_p99", o.itl_ms.and_then(|l| l.p99)),
        ("itl", "observed_mean", o.itl_ms.and_then(|l| l.mean)),
        ("itl", "expected", d.expected_itl_ms),
    ] {
        lat.get_or_create(&vec![
            ("latency".into(), metric.into()),
            ("source".into(), source.into()),
        ])
        .set(v.map_or(f64::NAN, |ms| ms / 1000.0));
    }
    reg.register(
        "latency_seconds",
        "TTFT and ITL, observed and expected by the model",
        lat,
    );
    let replicas: Family<Vec<(String, String)>, Gauge> = Family::default();
    let r = o.replicas.unwrap_or_default();
    for (role, target, state) in [
        ("prefill", d.prefill, r.prefill),
        ("decode", d.decode, r.decode),
    ] {
        for (kind, v) in [
            ("target", target),
            ("ready", state.ready),
            ("starting", state.starting),
            ("draining", state.draining),
        ] {
            replicas
                .get_or_create(&vec![
                    ("role".into(), role.into()),
                    ("state".into(), kind.into()),
                ])
                .set(v as i64);
        }
    }
    reg.register(
        "replicas",
        "Replicas per role: the target, and as the DGD reports them",
        replicas,
    );
    let corr: Family<Vec<(String, String)>, Gauge<f64, AtomicU64>> = Family::default();
    if let Some(c) = d.corrections {
        for kind in Corrections::KINDS {
            // Labelled with the deployment, so a restart reads back its own.
            let mut labels = s.metric_labels.as_ref().clone();
            labels.push(("kind".into(), kind.into()));
            corr.get_or_create(&labels)
                .set(c.get(kind).unwrap_or(f64::NAN));
        }
    }
    reg.register(
        "model_correction_ratio",
        "Learned corrections of the performance model",
        corr,
    );
    let decisions: Family<Vec<(String, String)>, Counter> = Family::default();
    for (reason, n) in &st.decisions_total {
        decisions
            .get_or_create(&vec![("reason".into(), reason.clone())])
            .inc_by(*n);
    }
    reg.register("decisions", "Decisions by binding reason", decisions);
    let errors: Family<Vec<(String, String)>, Counter> = Family::default();
    for (kind, n) in &st.errors_total {
        errors
            .get_or_create(&vec![("kind".into(), kind.clone())])
            .inc_by(*n);
    }
    reg.register("errors", "Failed reads and writes by kind", errors);
    gauge(
        &mut reg,
        "tick_duration_seconds",
        "Duration of the last decision tick",
        Some(st.last_tick_seconds),
    );
    let paused: Gauge = Gauge::default();
    paused.set(i64::from(st.paused));
    reg.register(
        "paused",
        "1 while scaling is paused through the API",
        paused,
    );
    drop(st);
    let mut out = String::new();
    encode(&mut out, &reg).expect("writing to a String");
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

async fn dashboard() -> Html<String> {
    Html(super::dashboard::page())
}

pub fn routes(state: ApiState) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/status", get(status))
        .route("/api/v1/history", get(history))
        .route("/api/v1/observations", get(observations))
        .route("/api/v1/decisions", get(decisions))
        .route("/api/v1/config", get(config))
        .route("/api/v1/control/pause", post(pause))
        .route("/api/v1/control/resume", post(resume))
        .route("/api/v1/control/limits", put(set_limits))
        .with_state(state)
}

/// Redacts every field whose name says it holds a secret.
pub fn redact(mut v: serde_json::Value) -> serde_json::Value {
    match &mut v {
        serde_json::Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if k.contains("token") || k.contains("password") || k.contains("secret") {
                    if !x.is_null() {
                        *x = serde_json::Value::String("<redacted>".into());
                    }
                } else {
                    *x = redact(x.take());
                }
            }
        }
        serde_json::Value::Array(a) => {
            for x in a.iter_mut() {
                *x = redact(x.take());
            }
        }
        _ => {}
    }
    v
}

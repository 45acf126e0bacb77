//! Dynamo-named metrics of the emulated deployment, in the Prometheus text format.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use axum::extract::State as AxState;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::State;
use crate::sim::Record;

type Labels = Vec<(String, String)>;

pub struct DynamoMetrics {
    registry: Mutex<Registry>,
    requests: Counter,
    ttft: Histogram,
    itl: Histogram,
    duration: Histogram,
    isl: Histogram,
    osl: Histogram,
    inflight: Gauge,
    queued: Gauge,
    kv: Family<Labels, Gauge<f64, AtomicU64>>,
}

impl DynamoMetrics {
    pub fn new(model: &str, namespace: &str) -> DynamoMetrics {
        let mut root = Registry::default();
        let labels = [
            ("model".to_string(), model.to_string()),
            ("dynamo_namespace".to_string(), namespace.to_string()),
        ];
        let reg = root.sub_registry_with_labels(
            labels
                .iter()
                .map(|(k, v)| (k.clone().into(), v.clone().into())),
        );
        let m = DynamoMetrics {
            registry: Mutex::new(Registry::default()),
            requests: Counter::default(),
            ttft: Histogram::new(exponential_buckets(0.005, 1.6, 22)),
            itl: Histogram::new(exponential_buckets(0.001, 1.4, 22)),
            duration: Histogram::new(exponential_buckets(0.05, 1.6, 22)),
            isl: Histogram::new(exponential_buckets(16.0, 2.0, 12)),
            osl: Histogram::new(exponential_buckets(4.0, 2.0, 12)),
            inflight: Gauge::default(),
            queued: Gauge::default(),
            kv: Family::default(),
        };
        reg.register(
            "dynamo_frontend_requests",
            "Requests received",
            m.requests.clone(),
        );
        reg.register(
            "dynamo_frontend_time_to_first_token_seconds",
            "Time to first token",
            m.ttft.clone(),
        );
        reg.register(
            "dynamo_frontend_inter_token_latency_seconds",
            "Mean inter-token latency of a request",
            m.itl.clone(),
        );
        reg.register(
            "dynamo_frontend_request_duration_seconds",
            "Request duration",
            m.duration.clone(),
        );
        reg.register(
            "dynamo_frontend_input_sequence_tokens",
            "Input tokens per request",
            m.isl.clone(),
        );
        reg.register(
            "dynamo_frontend_output_sequence_tokens",
            "Output tokens per request",
            m.osl.clone(),
        );
        reg.register(
            "dynamo_frontend_inflight_requests",
            "Requests in flight",
            m.inflight.clone(),
        );
        reg.register(
            "dynamo_frontend_queued_requests",
            "Requests waiting for an engine",
            m.queued.clone(),
        );
        reg.register(
            "dynamo_component_kvstats_gpu_cache_usage_percent",
            "KV cache usage of the component's workers (0..1)",
            m.kv.clone(),
        );
        *m.registry.lock().expect("metrics lock") = root;
        m
    }

    pub fn update(
        &self,
        records: &[Record],
        kv_prefill: Option<f64>,
        kv_decode: Option<f64>,
        inflight: usize,
        queued: usize,
        aggregated: bool,
    ) {
        for r in records {
            match *r {
                Record::Arrival { isl } => {
                    self.requests.inc();
                    self.isl.observe(isl as f64);
                }
                Record::FirstToken { ttft_s } => self.ttft.observe(ttft_s),
                Record::Completion {
                    osl,
                    itl_s,
                    duration_s,
                } => {
                    self.osl.observe(osl as f64);
                    self.duration.observe(duration_s);
                    if let Some(itl) = itl_s {
                        self.itl.observe(itl);
                    }
                }
            }
        }
        self.inflight.set(inflight as i64);
        self.queued.set(queued as i64);
        let mut components = vec![("backend", kv_decode)];
        if !aggregated {
            components.push(("prefill", kv_prefill));
        }
        for (component, v) in components {
            let labels = vec![("dynamo_component".to_string(), component.to_string())];
            self.kv.get_or_create(&labels).set(v.unwrap_or(0.0));
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry.lock().expect("metrics lock"))
            .expect("writing to a String");
        out
    }
}

async fn metrics(AxState(state): AxState<Arc<State>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

pub fn routes(state: Arc<State>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(state)
}

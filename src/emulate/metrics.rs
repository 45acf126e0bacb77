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
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::State;
use crate::planner::percentiles::dynamo_log_bounds;
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
    prefix_hit_rate: Family<Labels, Gauge<f64, AtomicU64>>,
    /// The last prompts' `(tokens, tokens found cached)`, which the hit rate is over.
    lookups: Mutex<std::collections::VecDeque<(u32, u32)>>,
}

/// The prompts a worker's prefix cache hit rate is over: vLLM's window.
const HIT_RATE_WINDOW: usize = 1000;

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
            // The buckets Dynamo's frontend exports by default.
            ttft: Histogram::new(dynamo_log_bounds(0.001, 480.0, 18)),
            itl: Histogram::new(dynamo_log_bounds(0.001, 2.0, 13)),
            duration: Histogram::new(dynamo_log_bounds(1.0, 512.0, 10)),
            isl: Histogram::new(dynamo_log_bounds(50.0, 128_000.0, 12)),
            osl: Histogram::new(dynamo_log_bounds(50.0, 32_000.0, 10)),
            inflight: Gauge::default(),
            queued: Gauge::default(),
            kv: Family::default(),
            prefix_hit_rate: Family::default(),
            lookups: Mutex::new(std::collections::VecDeque::new()),
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
        reg.register(
            "dynamo_component_kvstats_gpu_prefix_cache_hit_rate",
            "Share of the last prompts' tokens the component's workers found in their prefix caches (0..1)",
            m.prefix_hit_rate.clone(),
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
                Record::Completion { osl, duration_s } => {
                    self.osl.observe(osl as f64);
                    self.duration.observe(duration_s);
                }
                // Dynamo's frontend observes ITL once per token gap.
                Record::TokenGaps { gap_s, count } => {
                    for _ in 0..count {
                        self.itl.observe(gap_s);
                    }
                }
                Record::PrefixLookup { isl, cached } => {
                    let mut lookups = self.lookups.lock().expect("metrics lock");
                    lookups.push_back((isl, cached));
                    if lookups.len() > HIT_RATE_WINDOW {
                        lookups.pop_front();
                    }
                }
            }
        }
        // Exported once prompts have been looked up: without prefix caching there is none.
        let lookups = self.lookups.lock().expect("metrics lock");
        let prompt: u64 = lookups.iter().map(|&(isl, _)| u64::from(isl)).sum();
        if prompt > 0 {
            let found: u64 = lookups.iter().map(|&(_, cached)| u64::from(cached)).sum();
            let component = if aggregated { "backend" } else { "prefill" };
            let labels = vec![("dynamo_component".to_string(), component.to_string())];
            self.prefix_hit_rate
                .get_or_create(&labels)
                .set(found as f64 / prompt as f64);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn hit_rate_line(m: &DynamoMetrics) -> Option<String> {
        m.encode()
            .lines()
            .find(|l| l.starts_with("dynamo_component_kvstats_gpu_prefix_cache_hit_rate{"))
            .map(str::to_string)
    }

    #[test]
    fn itl_is_observed_once_per_token_gap_as_dynamos_frontend_observes_it() {
        let m = DynamoMetrics::new("m", "ns");
        let records = [
            Record::TokenGaps {
                gap_s: 0.005,
                count: 3,
            },
            Record::TokenGaps {
                gap_s: 0.012,
                count: 1,
            },
            Record::Completion {
                osl: 5,
                duration_s: 0.3,
            },
        ];
        m.update(&records, None, None, 0, 0, false);
        let text = m.encode();
        let line = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("no {name} in {text}"))
                .to_string()
        };
        let count = line("dynamo_frontend_inter_token_latency_seconds_count");
        assert!(count.ends_with(" 4"), "{count}");
        let sum = line("dynamo_frontend_inter_token_latency_seconds_sum");
        let sum: f64 = sum.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((sum - 0.027).abs() < 1e-12, "{sum}");
    }

    #[test]
    fn the_prefix_hit_rate_is_the_last_thousand_prompts_share_and_absent_without_a_cache() {
        let m = DynamoMetrics::new("m", "ns");
        m.update(&[Record::Arrival { isl: 100 }], None, None, 0, 0, false);
        assert_eq!(hit_rate_line(&m), None, "no cache, no hit rate");
        let lookup = |isl, cached| Record::PrefixLookup { isl, cached };
        m.update(
            &[lookup(1000, 0), lookup(3000, 2000)],
            None,
            None,
            0,
            0,
            false,
        );
        let line = hit_rate_line(&m).unwrap();
        assert!(line.contains("dynamo_component=\"prefill\""), "{line}");
        assert!(line.ends_with(" 0.5"), "{line}");
        // A thousand prompts later the first two are out of the window.
        let all_cached: Vec<Record> = (0..HIT_RATE_WINDOW).map(|_| lookup(10, 9)).collect();
        m.update(&all_cached, None, None, 0, 0, false);
        assert!(hit_rate_line(&m).unwrap().ends_with(" 0.9"));
    }
}

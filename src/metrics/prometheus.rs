//! Observations from a real Prometheus: PromQL over Dynamo's frontend and worker metrics.

use std::time::Duration;

use prometheus_http_query::response::{Data, InstantVector};
use prometheus_http_query::Client;
use tracing::{info, warn};

use crate::live::config::{expand, matchers, PrometheusConfig};
use crate::planner::percentiles::LatencyPercentiles;
use crate::planner::sla_planner::PastInterval;
use crate::planner::solver::Mode;
use crate::planner::{LatencySummary, Observation, RoleKv};

/// Why a read failed; the label is low-cardinality, for metrics and logs.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("Prometheus did not answer within {0:?}")]
    Timeout(Duration),
    #[error("Prometheus query failed: {0}")]
    Query(String),
    #[error("Prometheus returned no usable request count")]
    NoData,
}

impl SourceError {
    pub fn label(&self) -> &'static str {
        match self {
            SourceError::Timeout(_) => "prometheus_timeout",
            SourceError::Query(_) => "prometheus_error",
            SourceError::NoData => "prometheus_no_data",
        }
    }
}

pub struct PrometheusSource {
    client: Client,
    cfg: PrometheusConfig,
    timeout: Duration,
    /// Aggregated workers report their KV as the decode component; there is no prefill one.
    mode: Mode,
    /// The latency histograms' buckets were not found at start and are still looked for
    /// (`buckets_found_since`).
    looking_for_buckets: bool,
}

impl PrometheusSource {
    pub fn new(cfg: &PrometheusConfig, mode: Mode) -> anyhow::Result<PrometheusSource> {
        let timeout = Duration::from_secs_f64(cfg.timeout_s);
        let mut builder = reqwest::Client::builder().timeout(timeout);
        if let Some(path) = &cfg.bearer_token_file {
            let token = std::fs::read_to_string(path).map_err(|e| {
                anyhow::anyhow!("prometheus.bearer_token_file {}: {e}", path.display())
            })?;
            let mut headers = reqwest::header::HeaderMap::new();
            let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.trim()))
                .map_err(|_| {
                    anyhow::anyhow!(
                        "prometheus.bearer_token_file {}: not a valid token",
                        path.display()
                    )
                })?;
            headers.insert(reqwest::header::AUTHORIZATION, value);
            builder = builder.default_headers(headers);
        }
        if let Some(path) = &cfg.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("prometheus.ca_file {}: {e}", path.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| anyhow::anyhow!("prometheus.ca_file {}: {e}", path.display()))?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder.build()?;
        let client = Client::from(http, &cfg.url)
            .map_err(|e| anyhow::anyhow!("prometheus.url {:?}: {e}", cfg.url))?;
        Ok(PrometheusSource {
            client,
            cfg: cfg.clone(),
            timeout,
            mode,
            looking_for_buckets: false,
        })
    }

    fn frontend_filter(&self) -> String {
        matchers(&[
            ("model", self.cfg.model.as_deref()),
            ("dynamo_namespace", self.cfg.dynamo_namespace.as_deref()),
        ])
    }

    fn component_filter(&self, component: &str) -> String {
        matchers(&[
            ("dynamo_namespace", self.cfg.dynamo_namespace.as_deref()),
            ("dynamo_component", Some(component)),
        ])
    }

    /// One instant query; `Ok(None)` when the answer is empty or not a number.
    async fn scalar(&self, promql: String) -> Result<Option<f64>, SourceError> {
        let fut = self.client.query(promql).get();
        let res = tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| SourceError::Timeout(self.timeout))?;
        let res = res.map_err(|e| SourceError::Query(e.to_string()))?;
        let v = match res.data() {
            Data::Vector(v) => v.first().map(|s| s.sample().value()),
            Data::Scalar(s) => Some(s.value()),
            Data::Matrix(_) => None,
        };
        Ok(v.filter(|x| x.is_finite()))
    }

    /// One instant query's series; none where the answer is not a vector.
    async fn series(&self, promql: String) -> Result<Vec<InstantVector>, SourceError> {
        let fut = self.client.query(promql).get();
        let res = tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| SourceError::Timeout(self.timeout))?
            .map_err(|e| SourceError::Query(e.to_string()))?;
        Ok(match res.into_inner().0 {
            Data::Vector(v) => v,
            _ => Vec::new(),
        })
    }

    /// Reads the last interval. A failed or empty request count is an error (the planner
    /// then holds); other signals may be missing.
    pub async fn observe(&self, now_s: f64, interval_s: f64) -> Result<Observation, SourceError> {
        let q = &self.cfg.queries;
        let f = self.frontend_filter();
        let w = interval_s;
        let requests = self
            .scalar(expand(&q.requests, w, &f, None))
            .await?
            .ok_or(SourceError::NoData)?;
        // The same count over the interval's second half, for a rise within it; the window
        // is whole seconds, so the count is scaled to the half it stands for.
        let half = (w / 2.0).round().max(1.0);
        let requests_second_half = self
            .scalar(expand(&q.requests, half, &f, None))
            .await?
            .map(|n| (n * w / 2.0 / half).clamp(0.0, requests.max(0.0)));
        let isl = self.scalar(expand(&q.isl_mean, w, &f, None)).await?;
        let osl = self.scalar(expand(&q.osl_mean, w, &f, None)).await?;
        let latency = |mean_q: &str, quant_q: &str| {
            let mean_q = expand(mean_q, w, &f, None);
            let qs: Vec<String> = [0.5, 0.9, 0.99]
                .iter()
                .map(|&x| expand(quant_q, w, &f, Some(x)))
                .collect();
            async move {
                let mean = self.scalar(mean_q).await?;
                let mut p = [None; 3];
                for (i, s) in qs.into_iter().enumerate() {
                    p[i] = self.scalar(s).await?;
                }
                // What Prometheus has is passed on; a summary with nothing in it is none.
                let [p50, p90, p99] = p;
                let summary = LatencySummary {
                    mean,
                    p50,
                    p90,
                    p99,
                };
                Ok::<_, SourceError>((summary != LatencySummary::default()).then_some(summary))
            }
        };
        let ttft = latency(&q.ttft_mean_ms, &q.ttft_quantile_ms).await?;
        let itl = latency(&q.itl_mean_ms, &q.itl_quantile_ms).await?;
        // KV usage and the prefix hit rate: Dynamo exports fractions; a value above 1 is
        // read as a percentage.
        let fraction = |v: Option<f64>| {
            v.map(|x| if x > 1.0 { x / 100.0 } else { x })
                .map(|x| x.clamp(0.0, 1.0))
        };
        let kv_p = match self.mode {
            Mode::Disaggregated => fraction(
                self.scalar(expand(
                    &q.kv_usage,
                    w,
                    &self.component_filter(&self.cfg.prefill_component),
                    None,
                ))
                .await?,
            ),
            Mode::Aggregated => None,
        };
        let kv_d = fraction(
            self.scalar(expand(
                &q.kv_usage,
                w,
                &self.component_filter(&self.cfg.decode_component),
                None,
            ))
            .await?,
        );
        // The prompts' prefill runs on the prefill workers, or on the aggregated ones.
        let prefill_workers = match self.mode {
            Mode::Disaggregated => &self.cfg.prefill_component,
            Mode::Aggregated => &self.cfg.decode_component,
        };
        let hit_rate = fraction(
            self.scalar(expand(
                &q.prefix_cache_hit_rate,
                w,
                &self.component_filter(prefill_workers),
                None,
            ))
            .await?,
        );
        let queued = self.scalar(expand(&q.queued_requests, w, &f, None)).await?;
        Ok(Observation {
            time_s: now_s,
            interval_s,
            requests: Some(requests),
            requests_second_half,
            isl_mean: isl,
            osl_mean: osl,
            ttft_ms: ttft,
            itl_ms: itl,
            kv_utilization: (kv_p.is_some() || kv_d.is_some()).then_some(RoleKv {
                prefill: kv_p,
                decode: kv_d,
            }),
            // The frontend counts queued requests; at the mean ISL, less what the prefix
            // caches hold, that is the prefill backlog.
            queued_prefill_tokens: queued
                .zip(isl)
                .map(|(n, isl)| n * isl * (1.0 - hit_rate.unwrap_or(0.0))),
            prefix_cache_hit_rate: hit_rate,
            replicas: None,
        })
    }

    /// The model corrections this deployment's planner exported last within `window_s`
    /// (its `/metrics`, scraped by this Prometheus; averaged over planner replicas), by
    /// name. Empty when none were scraped.
    pub async fn last_corrections(
        &self,
        deployment: &[(&str, Option<&str>)],
        window_s: f64,
    ) -> Result<Vec<(String, f64)>, SourceError> {
        // One query for all of them, a series per correction; `restore` ignores names it
        // does not know.
        let q = format!(
            "avg by (kind) (last_over_time(sla_planner_model_correction_ratio{{{}}}[{}s]))",
            matchers(deployment),
            window_s.round().max(1.0) as u64
        );
        Ok(self
            .series(q)
            .await?
            .iter()
            .filter_map(|s| {
                let kind = s.metric().get("kind")?;
                let v = s.sample().value();
                v.is_finite().then(|| (kind.clone(), v))
            })
            .collect())
    }

    /// The buckets Prometheus's TTFT and ITL histograms have, as the quantile queries read
    /// them: `Ok(None)` where either query reads no `_seconds_bucket` series or Prometheus
    /// holds none yet (no request served).
    pub async fn latency_buckets(&self) -> Result<Option<LatencyPercentiles>, SourceError> {
        let q = &self.cfg.queries;
        let ttft = self.bucket_bounds_s(&q.ttft_quantile_ms).await?;
        let itl = self.bucket_bounds_s(&q.itl_quantile_ms).await?;
        Ok(ttft
            .zip(itl)
            .map(|(ttft_s, itl_s)| LatencyPercentiles::Buckets { ttft_s, itl_s }))
    }

    /// How the percentiles were read, for a planner not told: through the buckets
    /// Prometheus's histograms have, or, before they have any series (no request served
    /// yet) or when they cannot be read, Dynamo's default buckets; then they are looked for
    /// again at each `buckets_found_since`.
    pub async fn latency_percentiles(&mut self) -> LatencyPercentiles {
        match self.latency_buckets().await {
            Ok(Some(found)) => {
                info!(message = "latency percentiles read through Prometheus's histogram buckets", buckets = %serde_json::to_string(&found).unwrap_or_default());
                self.looking_for_buckets = false;
                return found;
            }
            Ok(None) => info!(message = "no TTFT and ITL histogram buckets in Prometheus yet; percentiles taken as read through Dynamo's default buckets"),
            Err(e) => warn!(message = "could not read the histograms' buckets; percentiles taken as read through Dynamo's default buckets", error = %e),
        }
        self.looking_for_buckets = true;
        LatencyPercentiles::Dynamo
    }

    /// The buckets, once found where `latency_percentiles` did not find them; `None`
    /// otherwise.
    pub async fn buckets_found_since(&mut self) -> Option<LatencyPercentiles> {
        if !self.looking_for_buckets {
            return None;
        }
        let found = self.latency_buckets().await.ok().flatten()?;
        self.looking_for_buckets = false;
        Some(found)
    }

    /// The finite upper bounds, seconds, of the `_seconds_bucket` series a quantile query
    /// reads (their `le` labels), ascending.
    async fn bucket_bounds_s(&self, quantile_query: &str) -> Result<Option<Vec<f64>>, SourceError> {
        let Some(metric) = seconds_bucket_metric(quantile_query) else {
            return Ok(None);
        };
        let q = format!("count by (le) ({metric}{{{}}})", self.frontend_filter());
        let mut bounds: Vec<f64> = self
            .series(q)
            .await?
            .iter()
            .filter_map(|s| s.metric().get("le")?.parse::<f64>().ok())
            .filter(|b| b.is_finite())
            .collect();
        bounds.sort_by(f64::total_cmp);
        bounds.dedup();
        Ok((!bounds.is_empty()).then_some(bounds))
    }

    /// The last `points` intervals of request count, ISL and OSL, and TTFT and ITL p90s and
    /// p99s, oldest first.
    pub async fn history(
        &self,
        now_s: f64,
        interval_s: f64,
        points: u32,
    ) -> Result<Vec<PastInterval>, SourceError> {
        if points == 0 {
            return Ok(Vec::new());
        }
        let q = &self.cfg.queries;
        let f = self.frontend_filter();
        let end = now_s.floor() as i64;
        let start = end - (interval_s * points as f64) as i64;
        let range = |promql: String| {
            let fut = self
                .client
                .query_range(promql, start, end, interval_s)
                .get();
            async move {
                let res = tokio::time::timeout(self.timeout, fut)
                    .await
                    .map_err(|_| SourceError::Timeout(self.timeout))?;
                let res = res.map_err(|e| SourceError::Query(e.to_string()))?;
                Ok::<_, SourceError>(match res.data() {
                    Data::Matrix(m) => m
                        .first()
                        .map(|r| {
                            r.samples()
                                .iter()
                                .map(|s| (s.timestamp(), s.value()))
                                .collect()
                        })
                        .unwrap_or_default(),
                    _ => Vec::new(),
                })
            }
        };
        let req: Vec<(f64, f64)> = range(expand(&q.requests, interval_s, &f, None)).await?;
        let isl: Vec<(f64, f64)> = range(expand(&q.isl_mean, interval_s, &f, None)).await?;
        let osl: Vec<(f64, f64)> = range(expand(&q.osl_mean, interval_s, &f, None)).await?;
        let at_q = |template: &str, q: f64| expand(template, interval_s, &f, Some(q));
        let ttft_p90: Vec<(f64, f64)> = range(at_q(&q.ttft_quantile_ms, 0.9)).await?;
        let itl_p90: Vec<(f64, f64)> = range(at_q(&q.itl_quantile_ms, 0.9)).await?;
        let ttft_p99: Vec<(f64, f64)> = range(at_q(&q.ttft_quantile_ms, 0.99)).await?;
        let itl_p99: Vec<(f64, f64)> = range(at_q(&q.itl_quantile_ms, 0.99)).await?;
        let at = |v: &[(f64, f64)], t: f64| {
            v.iter()
                .find(|p| (p.0 - t).abs() < 0.5)
                .map(|p| p.1)
                .filter(|x| x.is_finite())
        };
        Ok(req
            .iter()
            .filter(|(_, n)| n.is_finite())
            .map(|&(t, n)| PastInterval {
                end_s: t,
                requests: n,
                isl_mean: at(&isl, t),
                osl_mean: at(&osl, t),
                ttft_ms: LatencySummary {
                    p90: at(&ttft_p90, t),
                    p99: at(&ttft_p99, t),
                    ..LatencySummary::default()
                },
                itl_ms: LatencySummary {
                    p90: at(&itl_p90, t),
                    p99: at(&itl_p99, t),
                    ..LatencySummary::default()
                },
            })
            .collect())
    }
}

/// The histogram a quantile query reads: its first metric name ending in
/// `_seconds_bucket`, the unit the bounds are taken in.
fn seconds_bucket_metric(query: &str) -> Option<&str> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    query.split(|c: char| !is_name(c)).find(|word| {
        word.ends_with("_seconds_bucket") && !word.starts_with(|c: char| c.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_histogram_a_quantile_query_reads_is_found_by_its_seconds_bucket_name() {
        let q = "1000 * histogram_quantile($q, sum by (le) (rate(dynamo_frontend_time_to_first_token_seconds_bucket{$filter}[$window])))";
        assert_eq!(
            seconds_bucket_metric(q),
            Some("dynamo_frontend_time_to_first_token_seconds_bucket")
        );
        assert_eq!(
            seconds_bucket_metric("my:ttft_seconds_bucket"),
            Some("my:ttft_seconds_bucket")
        );
        // Another unit, or no histogram at all: nothing to read the bounds from.
        assert_eq!(
            seconds_bucket_metric("histogram_quantile($q, rate(ttft_ms_bucket[1m]))"),
            None
        );
        assert_eq!(seconds_bucket_metric("avg(ttft_p99_seconds)"), None);
    }
}

//! Observations in: turning raw signals into the [`Observation`] a policy reads.
//!
//! [`IntervalAccumulator`] collects what a Dynamo frontend and its workers would export
//! during one interval (arrivals, first tokens, completions or token gaps, gauge samples at
//! scrape times) and summarises it the way the PromQL queries of a live deployment do:
//! latency percentiles exact, or read through histogram buckets as `histogram_quantile`
//! reads them ([`crate::planner::percentiles`]); ITL per request, or per token gap as
//! Dynamo's frontend observes it ([`ItlObserved`]).

pub mod prometheus;

use crate::planner::percentiles::{Buckets, LatencyHistograms};
use crate::planner::{LatencySummary, Observation, RoleKv, RoleReplicas};

/// How a deployment observes ITL: once per request, its mean over its tokens (what the SLA
/// counts, and what a tool with per-request records reports), or once per token gap, as
/// Dynamo's frontend feeds its ITL histogram. Percentiles of token gaps are not those of
/// requests: a request's mean smooths the batch over its life, and its first gap (from
/// its first token to the end of its first decode step) stands alone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItlObserved {
    #[default]
    PerRequest,
    PerToken,
}

#[derive(Debug, Default, Clone)]
pub struct IntervalAccumulator {
    /// Arrival times: their count, and the count in the interval's second half.
    arrival_times: Vec<f64>,
    isl_sum: f64,
    completions: u64,
    osl_sum: f64,
    ttft_ms: Vec<f64>,
    itl_ms: Vec<f64>,
    /// Token gaps `(ms, how many)`, when ITL is observed per token.
    itl_gaps: Vec<(f64, u32)>,
    itl_observed: ItlObserved,
    kv_prefill: GaugeMean,
    kv_decode: GaugeMean,
    queued_prefill_tokens: GaugeMean,
    /// Prompt tokens routed to prefill engines that cache prefixes, and of those the ones
    /// found cached; none routed without a cache.
    prefix_tokens: Option<(u64, u64)>,
    /// The buckets latency percentiles are read through; `None`: exact.
    histograms: Option<LatencyHistograms>,
}

#[derive(Debug, Default, Clone, Copy)]
struct GaugeMean {
    sum: f64,
    n: u32,
}

impl GaugeMean {
    fn add(&mut self, v: Option<f64>) {
        if let Some(v) = v.filter(|v| v.is_finite()) {
            self.sum += v;
            self.n += 1;
        }
    }
    fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64)
    }
}

/// Interval figures kept for timelines next to the observation.
#[derive(Debug, Clone, Default)]
pub struct IntervalExtras {
    pub completions: u64,
}

impl IntervalAccumulator {
    /// An accumulator whose percentiles are read through `histograms` (exact for `None`).
    pub fn reading_percentiles_through(histograms: Option<LatencyHistograms>) -> Self {
        IntervalAccumulator {
            histograms,
            ..Default::default()
        }
    }

    pub fn on_arrival(&mut self, at_s: f64, isl: u32) {
        self.arrival_times.push(at_s);
        self.isl_sum += isl as f64;
    }

    pub fn on_first_token(&mut self, ttft_ms: f64) {
        self.ttft_ms.push(ttft_ms);
    }

    /// ITL observed `how`: per token gap ([`Self::on_token_gaps`]), as Dynamo's frontend
    /// observes it, or once per finished request (its mean).
    pub fn observing_itl(mut self, how: ItlObserved) -> Self {
        self.itl_observed = how;
        self
    }

    pub fn observes_itl_per_token(&self) -> bool {
        self.itl_observed == ItlObserved::PerToken
    }

    /// A finished request; `itl_ms` (its mean) is `None` for a single-token output.
    pub fn on_completion(&mut self, osl: u32, itl_ms: Option<f64>) {
        self.completions += 1;
        self.osl_sum += osl as f64;
        if let Some(itl) = itl_ms.filter(|_| !self.observes_itl_per_token()) {
            self.itl_ms.push(itl);
        }
    }

    /// `count` tokens streamed, each `ms` after the request's token before it.
    pub fn on_token_gaps(&mut self, ms: f64, count: u32) {
        if self.observes_itl_per_token() && count > 0 {
            self.itl_gaps.push((ms, count));
        }
    }

    /// A prompt of `isl` tokens routed to a prefill engine holding its first `cached`.
    pub fn on_prefix_lookup(&mut self, isl: u32, cached: u32) {
        let (prompt, found) = self.prefix_tokens.get_or_insert((0, 0));
        *prompt += u64::from(isl);
        *found += u64::from(cached);
    }

    /// One scrape of the gauges: mean KV utilisation per role (0..1) and queued prefill tokens.
    pub fn on_scrape(
        &mut self,
        kv_prefill: Option<f64>,
        kv_decode: Option<f64>,
        queued_prefill_tokens: f64,
    ) {
        self.kv_prefill.add(kv_prefill);
        self.kv_decode.add(kv_decode);
        self.queued_prefill_tokens.add(Some(queued_prefill_tokens));
    }

    /// Summarises the interval and starts the next one.
    pub fn take(
        &mut self,
        time_s: f64,
        interval_s: f64,
        replicas: RoleReplicas,
    ) -> (Observation, IntervalExtras) {
        let mut a = std::mem::take(self);
        let kv = RoleKv {
            prefill: a.kv_prefill.mean(),
            decode: a.kv_decode.mean(),
        };
        let arrivals = a.arrival_times.len();
        let half_way = time_s - interval_s / 2.0;
        let obs = Observation {
            time_s,
            interval_s,
            requests: Some(arrivals as f64),
            requests_second_half: Some(
                a.arrival_times.iter().filter(|&&t| t >= half_way).count() as f64
            ),
            isl_mean: (arrivals > 0).then(|| a.isl_sum / arrivals as f64),
            osl_mean: (a.completions > 0).then(|| a.osl_sum / a.completions as f64),
            ttft_ms: summary(&mut a.ttft_ms, a.histograms.as_ref().map(|h| &h.ttft)),
            itl_ms: if a.observes_itl_per_token() {
                weighted_summary(&mut a.itl_gaps, a.histograms.as_ref().map(|h| &h.itl))
            } else {
                summary(&mut a.itl_ms, a.histograms.as_ref().map(|h| &h.itl))
            },
            kv_utilization: (kv.prefill.is_some() || kv.decode.is_some()).then_some(kv),
            queued_prefill_tokens: a.queued_prefill_tokens.mean(),
            prefix_cache_hit_rate: a
                .prefix_tokens
                .filter(|&(prompt, _)| prompt > 0)
                .map(|(prompt, found)| found as f64 / prompt as f64),
            replicas: Some(replicas),
        };
        // Keep the sample buffers' capacity for the next interval.
        a.ttft_ms.clear();
        a.itl_ms.clear();
        a.itl_gaps.clear();
        a.arrival_times.clear();
        self.ttft_ms = a.ttft_ms;
        self.itl_ms = a.itl_ms;
        self.itl_gaps = a.itl_gaps;
        self.itl_observed = a.itl_observed;
        self.arrival_times = a.arrival_times;
        self.histograms = a.histograms;
        (
            obs,
            IntervalExtras {
                completions: a.completions,
            },
        )
    }
}

/// The samples' exact mean (a histogram's `_sum` over its `_count`), and their percentiles
/// exact or as `histogram_quantile` reads them from `buckets`.
fn summary(samples: &mut [f64], buckets: Option<&Buckets>) -> Option<LatencySummary> {
    let exact = LatencySummary::of(samples)?;
    let Some(buckets) = buckets else {
        return Some(exact);
    };
    Some(LatencySummary {
        p50: buckets.quantile(samples, 0.50),
        p90: buckets.quantile(samples, 0.90),
        p99: buckets.quantile(samples, 0.99),
        ..exact
    })
}

/// [`summary`] of weighted samples `(ms, count)`: each value observed `count` times.
fn weighted_summary(
    samples: &mut [(f64, u32)],
    buckets: Option<&Buckets>,
) -> Option<LatencySummary> {
    samples.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut running = 0.0;
    let cumulative: Vec<f64> = samples
        .iter()
        .map(|&(_, n)| {
            running += n as f64;
            running
        })
        .collect();
    if running <= 0.0 {
        return None;
    }
    let mean = samples.iter().map(|&(ms, n)| ms * n as f64).sum::<f64>() / running;
    let at = |q: f64| match buckets {
        Some(b) => b.quantile_weighted(samples, &cumulative, q),
        None => {
            // Nearest rank: the first value whose running count reaches `ceil(q * n)`.
            let rank = (q * running).ceil().max(1.0);
            let i = cumulative.partition_point(|&c| c < rank);
            Some(samples[i.min(samples.len() - 1)].0)
        }
    };
    Some(LatencySummary {
        mean: Some(mean),
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarises_and_resets() {
        let mut acc = IntervalAccumulator::default();
        acc.on_arrival(1.0, 100);
        acc.on_arrival(45.0, 300);
        acc.on_first_token(50.0);
        acc.on_completion(10, Some(8.0));
        acc.on_completion(1, None);
        acc.on_scrape(Some(0.1), Some(0.5), 200.0);
        acc.on_scrape(None, Some(0.7), 0.0);
        let (o, x) = acc.take(60.0, 60.0, RoleReplicas::default());
        assert_eq!(o.requests, Some(2.0));
        assert_eq!(o.requests_second_half, Some(1.0));
        assert_eq!(o.isl_mean, Some(200.0));
        assert_eq!(o.osl_mean, Some(5.5));
        assert_eq!(o.itl_ms.unwrap().mean, Some(8.0));
        assert!((o.kv_utilization.unwrap().decode.unwrap() - 0.6).abs() < 1e-12);
        assert_eq!(o.kv_utilization.unwrap().prefill, Some(0.1));
        assert_eq!(o.queued_prefill_tokens, Some(100.0));
        assert_eq!(o.prefix_cache_hit_rate, None, "no cache, no hit rate");
        assert_eq!(x.completions, 2);
        let (o2, _) = acc.take(120.0, 60.0, RoleReplicas::default());
        assert_eq!(o2.requests, Some(0.0));
        assert_eq!(o2.requests_second_half, Some(0.0));
        assert_eq!(o2.isl_mean, None);
        assert!(o2.ttft_ms.is_none());
    }

    #[test]
    fn percentiles_read_through_histograms_keep_the_exact_mean() {
        let histograms = LatencyHistograms {
            ttft: Buckets::dynamo_ttft(),
            itl: Buckets::dynamo_itl(),
        };
        let mut acc = IntervalAccumulator::reading_percentiles_through(Some(histograms));
        for i in 0..100 {
            acc.on_completion(100, Some(7.0 + 0.004 * f64::from(i)));
        }
        let (o, _) = acc.take(60.0, 60.0, RoleReplicas::default());
        let itl = o.itl_ms.unwrap();
        // All within the bucket from 6.7 to 13 ms: read linearly across it.
        assert!(
            (itl.p99.unwrap() - (6.7 + 6.3 * 0.99)).abs() < 1e-9,
            "{itl:?}"
        );
        assert!(
            (itl.p50.unwrap() - (6.7 + 6.3 * 0.5)).abs() < 1e-9,
            "{itl:?}"
        );
        assert!((itl.mean.unwrap() - 7.198).abs() < 1e-9, "{itl:?}");
        // The next interval reads through them too.
        acc.on_completion(100, Some(7.0));
        let (o2, _) = acc.take(120.0, 60.0, RoleReplicas::default());
        assert!(o2.itl_ms.unwrap().p99.unwrap() > 12.9);
    }

    #[test]
    fn token_gaps_read_as_that_many_observations_and_request_means_go_unread() {
        // A hundred gaps, unsorted, one value in two lots; the p90's and the p99's ranks
        // fall on a value's last gap.
        let gaps = [(5.1, 8), (4.4, 60), (12.5, 1), (4.4, 30), (9.0, 1)];
        let expanded = || {
            let mut all: Vec<f64> = gaps
                .iter()
                .flat_map(|&(ms, n)| std::iter::repeat_n(ms, n as usize))
                .collect();
            all.sort_by(f64::total_cmp);
            all
        };
        let dynamo = LatencyHistograms {
            ttft: Buckets::dynamo_ttft(),
            itl: Buckets::dynamo_itl(),
        };
        for histograms in [None, Some(dynamo)] {
            let buckets = histograms.as_ref().map(|h| h.itl.clone());
            let mut acc = IntervalAccumulator::reading_percentiles_through(histograms)
                .observing_itl(ItlObserved::PerToken);
            for &(ms, n) in &gaps {
                acc.on_token_gaps(ms, n);
            }
            acc.on_completion(300, Some(50.0));
            let (o, _) = acc.take(60.0, 60.0, RoleReplicas::default());
            let got = o.itl_ms.unwrap();
            let mut all = expanded();
            let mut want = summary(&mut all, buckets.as_ref()).unwrap();
            // A mean of 100 gaps summed in another order.
            assert!((got.mean.unwrap() - want.mean.unwrap()).abs() < 1e-9);
            want.mean = got.mean;
            assert_eq!(got, want, "{buckets:?}");
            assert!(
                got.p99.unwrap() > 5.1,
                "the longest gaps are the tail: {got:?}"
            );
            // The next interval starts empty, and stays per token.
            acc.on_completion(10, Some(8.0));
            let (o2, _) = acc.take(120.0, 60.0, RoleReplicas::default());
            assert_eq!(o2.itl_ms, None);
        }
    }

    #[test]
    fn the_hit_rate_is_the_share_of_the_intervals_prompt_tokens_found_cached() {
        let mut acc = IntervalAccumulator::default();
        acc.on_prefix_lookup(1000, 0);
        acc.on_prefix_lookup(3000, 2048);
        let (o, _) = acc.take(60.0, 60.0, RoleReplicas::default());
        assert_eq!(o.prefix_cache_hit_rate, Some(2048.0 / 4000.0));
        let (o2, _) = acc.take(120.0, 60.0, RoleReplicas::default());
        assert_eq!(o2.prefix_cache_hit_rate, None, "each interval its own");
    }
}

//! Latency percentiles as a live deployment reads them. Dynamo's frontend exports TTFT and ITL as
//! classic Prometheus histograms, and `histogram_quantile` reads a percentile from their
//! cumulative bucket counts, linear within the bucket its rank falls in: a p99 inside a
//! bucket from 100 to 220 ms is wherever the share of requests in that bucket puts it, not
//! where the slowest requests were.

use serde::{Deserialize, Serialize};

/// How latency percentiles are read: by the simulated deployment
/// (`deployment.latency_percentiles`), and as the planner is told they were
/// (`planner.latency_percentiles`). Written `exact`, `dynamo`, or `{ttft_s: [...], itl_s:
/// [...]}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum LatencyPercentiles {
    /// The interval's requests themselves (nearest rank), as a tool with per-request
    /// records would report them.
    #[default]
    Exact,
    /// `histogram_quantile` over the buckets of Dynamo's frontend as it ships (TTFT: 0 and
    /// 17 bounds from 2.2 ms to 480 s; ITL: 0 and 12 bounds from 1.9 ms to 2 s).
    Dynamo,
    /// `histogram_quantile` over buckets of the operator's own: upper bounds in seconds,
    /// ascending (the `+Inf` bucket is implied).
    Buckets { ttft_s: Vec<f64>, itl_s: Vec<f64> },
}

/// The bounds, as written: both, and nothing else.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BucketBounds {
    ttft_s: Vec<f64>,
    itl_s: Vec<f64>,
}

// By hand rather than `untagged`: a string names a layout and a mapping gives the bounds,
// so a misspelt name or a missing bound list is told as it is.
impl<'de> Deserialize<'de> for LatencyPercentiles {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = LatencyPercentiles;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("exact, dynamo, or {ttft_s: [bounds], itl_s: [bounds]}")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<LatencyPercentiles, E> {
                match v {
                    "exact" => Ok(LatencyPercentiles::Exact),
                    "dynamo" => Ok(LatencyPercentiles::Dynamo),
                    other => Err(E::invalid_value(serde::de::Unexpected::Str(other), &self)),
                }
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                m: A,
            ) -> Result<LatencyPercentiles, A::Error> {
                let b = BucketBounds::deserialize(serde::de::value::MapAccessDeserializer::new(m))?;
                Ok(LatencyPercentiles::Buckets {
                    ttft_s: b.ttft_s,
                    itl_s: b.itl_s,
                })
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl Serialize for LatencyPercentiles {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            LatencyPercentiles::Exact => s.serialize_str("exact"),
            LatencyPercentiles::Dynamo => s.serialize_str("dynamo"),
            LatencyPercentiles::Buckets { ttft_s, itl_s } => BucketBounds {
                ttft_s: ttft_s.clone(),
                itl_s: itl_s.clone(),
            }
            .serialize(s),
        }
    }
}

/// The two histograms' buckets, ms.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyHistograms {
    pub ttft: Buckets,
    pub itl: Buckets,
}

impl LatencyPercentiles {
    /// The buckets to read percentiles through; `None` for exact percentiles. An error names
    /// the field (within `latency_percentiles`) and what is wrong with it.
    pub fn histograms(&self) -> Result<Option<LatencyHistograms>, (&'static str, String)> {
        match self {
            LatencyPercentiles::Exact => Ok(None),
            LatencyPercentiles::Dynamo => Ok(Some(LatencyHistograms {
                ttft: Buckets::dynamo_ttft(),
                itl: Buckets::dynamo_itl(),
            })),
            LatencyPercentiles::Buckets { ttft_s, itl_s } => {
                let ms = |field, bounds: &[f64]| {
                    Buckets::from_ms(bounds.iter().map(|s| s * 1000.0).collect())
                        .map_err(|e| (field, e))
                };
                Ok(Some(LatencyHistograms {
                    ttft: ms("ttft_s", ttft_s)?,
                    itl: ms("itl_s", itl_s)?,
                }))
            }
        }
    }
}

/// The bucket bounds Dynamo's frontend gives a histogram: a bucket at 0, then `count - 1`
/// bounds spaced evenly in log from `min` (excluded) to `max`, each rounded to two
/// significant figures, repeats dropped. Dynamo reads `min`, `max` and `count` from
/// `DYN_METRICS_TTFT_*`, `DYN_METRICS_ITL_*` and their like.
pub fn dynamo_log_bounds(min: f64, max: f64, count: usize) -> Vec<f64> {
    let (lo, hi) = (min.ln(), max.ln());
    let mut bounds = vec![0.0];
    for i in 1..count {
        let x = (lo + (hi - lo) * i as f64 / (count - 1) as f64).exp();
        let scale = 10f64.powf(1.0 - x.log10().floor());
        let rounded = (x * scale).round() / scale;
        if bounds.last() != Some(&rounded) {
            bounds.push(rounded);
        }
    }
    bounds
}

/// Upper bounds of a classic histogram's finite buckets, ms, strictly ascending; the `+Inf`
/// bucket is implied.
#[derive(Debug, Clone, PartialEq)]
pub struct Buckets(Vec<f64>);

impl Buckets {
    pub fn from_ms(bounds: Vec<f64>) -> Result<Buckets, String> {
        if bounds.is_empty() {
            return Err("at least one bound is needed".into());
        }
        if let Some(b) = bounds.iter().find(|b| !b.is_finite() || **b < 0.0) {
            return Err(format!("{b} is not a finite bound of 0 or more"));
        }
        if let Some(w) = bounds.windows(2).find(|w| w[1] <= w[0]) {
            return Err(format!(
                "bounds must rise strictly: {} follows {}",
                w[1] / 1000.0,
                w[0] / 1000.0
            ));
        }
        Ok(Buckets(bounds))
    }

    /// Dynamo's layout for latencies in seconds (`dynamo_log_bounds`), in ms.
    pub fn log_spaced(min_s: f64, max_s: f64, count: usize) -> Buckets {
        Buckets(
            dynamo_log_bounds(min_s, max_s, count)
                .into_iter()
                .map(|s| s * 1000.0)
                .collect(),
        )
    }

    /// Dynamo's frontend TTFT histogram as it ships: 1 ms to 480 s, 18 buckets.
    pub fn dynamo_ttft() -> Buckets {
        Buckets::log_spaced(0.001, 480.0, 18)
    }

    /// Dynamo's frontend ITL histogram as it ships: 1 ms to 2 s, 13 buckets.
    pub fn dynamo_itl() -> Buckets {
        Buckets::log_spaced(0.001, 2.0, 13)
    }

    /// What `histogram_quantile(q, ...)` reads from these buckets of a latency whose
    /// quantile `q` is `at_ms` and whose quantile `q_below` (< `q`) is `below_ms`, its tail
    /// between and around them exponential (a point where the two meet). A model's
    /// expected percentile is compared with a reading through the same buckets this way:
    /// like with like. Read as a value, a reading is linear within its bucket, as if the
    /// requests there spread evenly, which they seldom do: requests whose ITL all lay
    /// between 7.0 and 7.4 ms read an ITL p99 of 12.9 ms through Dynamo's bucket from 6.7
    /// to 13 ms, and taken at its word it had the 10 ms ITL target missed.
    pub fn tail_reading(&self, q: f64, at_ms: f64, q_below: f64, below_ms: f64) -> f64 {
        if !at_ms.is_finite() {
            return at_ms;
        }
        let n = self.0.len();
        let at = self.0.partition_point(|&b| b < at_ms);
        if at >= n {
            // The `+Inf` bucket: the highest finite bound.
            return self.0[n - 1];
        }
        let upper = self.0[at];
        let lower = if at == 0 { 0.0 } else { self.0[at - 1] };
        if upper <= 0.0 {
            return upper;
        }
        let share_below = |x: f64| {
            if x <= 0.0 {
                0.0
            } else if below_ms >= at_ms {
                if x < at_ms {
                    0.0
                } else {
                    1.0
                }
            } else {
                let (s_at, s_below) = (1.0 - q, 1.0 - q_below);
                let survival = s_at * (s_below / s_at).powf((at_ms - x) / (at_ms - below_ms));
                1.0 - survival.min(1.0)
            }
        };
        let (f_lower, f_upper) = (share_below(lower), share_below(upper));
        if f_upper <= f_lower {
            return at_ms;
        }
        lower + (upper - lower) * ((q - f_lower) / (f_upper - f_lower)).clamp(0.0, 1.0)
    }

    /// The `q` quantile of `sorted` samples (ms, ascending) as Prometheus's
    /// `histogram_quantile` reads it from these buckets: the first bucket whose cumulative
    /// count reaches the rank `q * n`, linear from its lower bound to its upper one; in the
    /// `+Inf` bucket, the highest finite bound. `None` without samples.
    pub fn quantile(&self, sorted: &[f64], q: f64) -> Option<f64> {
        if sorted.is_empty() {
            return None;
        }
        self.quantile_of_counts(sorted.len() as f64, q, |upper| {
            sorted.partition_point(|&x| x <= upper) as f64
        })
    }

    /// [`Self::quantile`] of weighted samples: `(ms, count)` ascending by ms, with `cumulative`
    /// their running count (as many observations of each value as its count).
    pub fn quantile_weighted(
        &self,
        sorted: &[(f64, u32)],
        cumulative: &[f64],
        q: f64,
    ) -> Option<f64> {
        let &total = cumulative.last()?;
        if total <= 0.0 {
            return None;
        }
        self.quantile_of_counts(total, q, |upper| {
            let i = sorted.partition_point(|&(x, _)| x <= upper);
            if i == 0 {
                0.0
            } else {
                cumulative[i - 1]
            }
        })
    }

    /// `histogram_quantile` over `n` observations, `cumulative(le)` of them at or below `le`.
    fn quantile_of_counts(&self, n: f64, q: f64, cumulative: impl Fn(f64) -> f64) -> Option<f64> {
        let rank = q * n;
        let mut below = 0.0;
        let mut lower = 0.0;
        for &upper in &self.0 {
            let cumulative = cumulative(upper);
            if cumulative >= rank {
                if upper <= 0.0 {
                    return Some(upper);
                }
                let in_bucket = cumulative - below;
                return Some(lower + (upper - lower) * (rank - below) / in_bucket);
            }
            below = cumulative;
            lower = upper;
        }
        self.0.last().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamo_default_buckets_are_log_spaced_at_two_figures() {
        let seconds = |b: Buckets| b.0.iter().map(|ms| ms / 1000.0).collect::<Vec<_>>();
        let close = |a: Vec<f64>, b: &[f64]| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-9)
        };
        let ttft = seconds(Buckets::dynamo_ttft());
        let want = [
            0.0, 0.0022, 0.0047, 0.01, 0.022, 0.047, 0.1, 0.22, 0.47, 1.0, 2.2, 4.7, 10.0, 22.0,
            48.0, 100.0, 220.0, 480.0,
        ];
        assert!(close(ttft.clone(), &want), "{ttft:?}");
        let itl = seconds(Buckets::dynamo_itl());
        let want = [
            0.0, 0.0019, 0.0035, 0.0067, 0.013, 0.024, 0.045, 0.084, 0.16, 0.3, 0.56, 1.1, 2.0,
        ];
        assert!(close(itl.clone(), &want), "{itl:?}");
    }

    #[test]
    fn a_quantile_is_read_linearly_within_its_bucket() {
        let b = Buckets::from_ms(vec![100.0, 200.0, 400.0]).unwrap();
        // 90 samples at 50 ms, 10 at 150 ms: the p95's rank 95 lies halfway through the
        // second bucket's ten, whatever those ten are.
        let mut s = vec![50.0; 90];
        s.extend([150.0; 10]);
        assert_eq!(b.quantile(&s, 0.95), Some(150.0));
        assert_eq!(b.quantile(&s, 0.99), Some(190.0));
        // The rank within the first bucket: from 0.
        assert_eq!(b.quantile(&s, 0.45), Some(50.0));
        // Past the highest finite bound: that bound.
        assert_eq!(b.quantile(&[500.0, 900.0], 0.99), Some(400.0));
        assert_eq!(b.quantile(&[], 0.5), None);
    }

    #[test]
    fn an_expected_tail_reads_as_the_histogram_reads_it() {
        let b = Buckets::dynamo_itl();
        // Every request at 7.2 ms: the p99 reads near the top of the bucket from 6.7 to 13.
        let mut s = vec![7.2; 1000];
        let read = b.quantile(&s, 0.99).unwrap();
        assert!(
            (b.tail_reading(0.99, 7.2, 0.9, 7.2) - read).abs() < 1e-9,
            "{read}"
        );
        // Spread exponentially (p90 20 ms, p99 40 ms): the reading is the histogram's of
        // that spread, within a few percent.
        s = (0..100_000)
            .map(|i| {
                let u = (i as f64 + 0.5) / 100_000.0;
                20.0 - 20.0 / 10f64.ln() * (10.0 * (1.0 - u)).ln()
            })
            .collect();
        let read = b.quantile(&s, 0.99).unwrap();
        let expected = b.tail_reading(0.99, 40.0, 0.9, 20.0);
        assert!(
            (expected / read - 1.0).abs() < 0.03,
            "{expected} against {read}"
        );
        // Past the highest bound, and past capacity.
        assert_eq!(b.tail_reading(0.99, 5000.0, 0.9, 4000.0), 2000.0);
        assert_eq!(
            b.tail_reading(0.99, f64::INFINITY, 0.9, 20.0),
            f64::INFINITY
        );
        // Requests all at a bound are in the bucket it tops.
        let read = b.quantile(&[13.0; 100], 0.99).unwrap();
        assert!(
            (b.tail_reading(0.99, 13.0, 0.9, 13.0) - read).abs() < 1e-9,
            "{read}"
        );
    }

    #[test]
    fn a_bucket_at_zero_holds_nothing_and_reads_nothing() {
        let b = Buckets::from_ms(vec![0.0, 10.0]).unwrap();
        assert_eq!(b.quantile(&[5.0, 5.0], 0.5), Some(5.0));
    }

    #[test]
    fn bad_bounds_are_named() {
        let err = LatencyPercentiles::Buckets {
            ttft_s: vec![0.1, 0.05],
            itl_s: vec![0.01],
        }
        .histograms()
        .unwrap_err();
        assert_eq!(err.0, "ttft_s");
        assert!(err.1.contains("0.05 follows 0.1"), "{err:?}");
        let err = LatencyPercentiles::Buckets {
            ttft_s: vec![0.1],
            itl_s: vec![],
        }
        .histograms()
        .unwrap_err();
        assert_eq!(err.0, "itl_s");
        assert!(err.1.contains("at least one"), "{err:?}");
    }
}

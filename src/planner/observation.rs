//! What a policy sees and what it answers. Field names are a public interface
//! (`sla-planner decide`, `docs/decide.md`): keep them stable.

use serde::{Deserialize, Serialize};

/// Mean and percentiles of one latency over an interval, milliseconds. Each may be missing
/// (a source that reports the mean and the p99 only); what is there is used.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct LatencySummary {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p90: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99: Option<f64>,
}

/// The standard normal's 90th and 99th percentiles.
const Z90: f64 = 1.281_551_565_544_600_4;
const Z99: f64 = 2.326_347_874_040_841;

impl LatencySummary {
    /// The mean; from a source that reports percentiles only, the mean of the lognormal
    /// through the p50 and the p90 (else the p99), or the p50 alone. The planner learns the
    /// engines' speeds from means: percentiles alone had taught it nothing.
    pub fn mean_or_estimate(&self) -> Option<f64> {
        let usable = |v: Option<f64>| v.filter(|v| v.is_finite() && *v > 0.0);
        if let Some(mean) = usable(self.mean) {
            return Some(mean);
        }
        let p50 = usable(self.p50)?;
        // The log-spread the p50 and a higher percentile give a lognormal.
        let spread =
            |p: Option<f64>, z: f64| usable(p).filter(|&p| p > p50).map(|p| (p / p50).ln() / z);
        let sigma = spread(self.p90, Z90)
            .or_else(|| spread(self.p99, Z99))
            .unwrap_or(0.0);
        Some(p50 * (sigma * sigma / 2.0).exp())
    }

    /// Summarises samples (sorted in place); `None` when there are none.
    pub fn of(samples: &mut [f64]) -> Option<LatencySummary> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_by(f64::total_cmp);
        let mean = samples.iter().sum::<f64>() / samples.len() as f64;
        Some(LatencySummary {
            mean: Some(mean),
            p50: Some(percentile_sorted(samples, 0.50)),
            p90: Some(percentile_sorted(samples, 0.90)),
            p99: Some(percentile_sorted(samples, 0.99)),
        })
    }
}

/// Nearest-rank percentile of sorted samples.
pub fn percentile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct RoleKv {
    #[serde(default)]
    pub prefill: Option<f64>,
    #[serde(default)]
    pub decode: Option<f64>,
}

/// The most replicas of one role, or GPUs of one deployment, the planner takes: more than
/// any cluster holds, and few enough that a decision's searches over counts stay short.
/// Counts above it are input errors, not loads to plan for.
pub const MAX_REPLICAS: u32 = 100_000;

/// The ceilings on what one observation may report, past which a value is a fault (a unit
/// mixed up, a counter misread, a custom query gone wrong) rather than a load to plan for:
/// each is beyond what any deployment within [`MAX_REPLICAS`] sees, and below them a
/// decision's searches stay short.
pub mod ceilings {
    /// An interval of a day: a control loop's are seconds to minutes.
    pub const INTERVAL_S: f64 = 86_400.0;
    /// Ten million requests a second: a hundred a second on each of [`super::MAX_REPLICAS`].
    pub const REQUESTS_PER_S: f64 = 1e7;
    /// A mean input or output of a hundred million tokens: ten times the longest context
    /// window any model offers.
    pub const TOKENS_PER_REQUEST: f64 = 1e8;
    /// A latency of a day, in milliseconds: no request waits that long for a token.
    pub const LATENCY_MS: f64 = 86_400_000.0;
    /// Prefill tokens waiting: a longest prompt queued on each of [`super::MAX_REPLICAS`].
    pub const QUEUED_TOKENS: f64 = TOKENS_PER_REQUEST * super::MAX_REPLICAS as f64;
}

/// Replicas of one role by lifecycle state.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReplicaState {
    #[serde(default)]
    pub ready: u32,
    #[serde(default)]
    pub starting: u32,
    #[serde(default)]
    pub draining: u32,
}

impl ReplicaState {
    /// The replicas the role holds or will: ready and starting (draining ones are going).
    /// Saturating: a broken count must not wrap to a small one.
    pub fn held(&self) -> u32 {
        self.ready.saturating_add(self.starting)
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RoleReplicas {
    /// May be left out of a line only where there is no prefill pool (aggregated workers
    /// are reported under `decode`); `decide` answers it as missing on a disaggregated
    /// deployment, where zeros would read as no prefill engines (`cli::decide_line`).
    #[serde(default)]
    pub prefill: ReplicaState,
    pub decode: ReplicaState,
}

/// What the last interval showed, as Prometheus and the DGD status would show it.
/// Any signal may be missing. A field this type (or one within it) does not have is not
/// denied by serde here: `decide` finds it as it reads the line (`cli::read_observation`)
/// and answers it as an error, or names it and reads on when told to.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Observation {
    /// End of the interval, seconds (any epoch; only differences matter).
    pub time_s: f64,
    pub interval_s: f64,
    /// Requests that arrived in the interval; `None` when the count could not be read.
    #[serde(default)]
    pub requests: Option<f64>,
    /// Of those, the ones that arrived in the interval's second half: a rise within the
    /// interval shows here before any later interval can show it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_second_half: Option<f64>,
    #[serde(default)]
    pub isl_mean: Option<f64>,
    #[serde(default)]
    pub osl_mean: Option<f64>,
    #[serde(default)]
    pub ttft_ms: Option<LatencySummary>,
    #[serde(default)]
    pub itl_ms: Option<LatencySummary>,
    #[serde(default)]
    pub kv_utilization: Option<RoleKv>,
    #[serde(default)]
    pub queued_prefill_tokens: Option<f64>,
    /// The share of the interval's prompt tokens the prefill engines found in their prefix
    /// caches, 0..1 (Dynamo: the workers' `gpu_prefix_cache_hit_rate`); prefill is sized
    /// for the rest. `None`: nothing is taken as cached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_cache_hit_rate: Option<f64>,
    #[serde(default)]
    pub replicas: Option<RoleReplicas>,
}

/// Removes the fields whose value is null, at every depth.
fn drop_nulls(v: &mut serde_json::Value) {
    if let serde_json::Value::Object(map) = v {
        map.retain(|_, field| !field.is_null());
        map.values_mut().for_each(drop_nulls);
    }
}

/// A number as an error message shows it: in full where that is short, in exponent form
/// where it would run to hundreds of digits (`1e300`) or zeros (`1e-300`).
pub fn shown(x: f64) -> String {
    let a = x.abs();
    if a != 0.0 && !(1e-6..1e15).contains(&a) {
        format!("{x:e}")
    } else {
        format!("{x}")
    }
}

impl Observation {
    /// This observation as one line `decide` reads (no newline), its missing signals left
    /// out as a source without them would send it: what `simulate --out` and the live
    /// API's `/api/v1/observations` give, to replay through `decide`.
    pub fn decide_line(&self) -> String {
        let mut line = serde_json::to_value(self).expect("plain data serialises");
        drop_nulls(&mut line);
        line.to_string()
    }

    /// Checks values a JSON reader cannot: ranges, and magnitudes no deployment reports
    /// ([`ceilings`]). The message starts with the field's name.
    pub fn validate(&self) -> Result<(), String> {
        let within = |name: &str, v: Option<f64>, most: f64, unit: &str| match v {
            Some(x) if !(x.is_finite() && x >= 0.0) => {
                Err(format!("{name}: must be a number >= 0 (got {})", shown(x)))
            }
            Some(x) if x > most => Err(format!(
                "{name}: must be at most {}{unit} (got {})",
                shown(most),
                shown(x)
            )),
            _ => Ok(()),
        };
        if !self.time_s.is_finite() {
            return Err(format!("time_s: must be a number (got {})", self.time_s));
        }
        if !(self.interval_s.is_finite() && self.interval_s > 0.0) {
            return Err(format!(
                "interval_s: must be > 0 (got {})",
                shown(self.interval_s)
            ));
        }
        within(
            "interval_s",
            Some(self.interval_s),
            ceilings::INTERVAL_S,
            " s",
        )?;
        // The count's ceiling is a rate's: it scales with the interval.
        let most_requests = ceilings::REQUESTS_PER_S * self.interval_s;
        let per_s = format!(
            " ({} a second over {} s)",
            shown(ceilings::REQUESTS_PER_S),
            shown(self.interval_s)
        );
        within("requests", self.requests, most_requests, &per_s)?;
        within(
            "requests_second_half",
            self.requests_second_half,
            most_requests,
            &per_s,
        )?;
        if let (Some(all), Some(late)) = (self.requests, self.requests_second_half) {
            if late > all {
                return Err(format!(
                    "requests_second_half: must be at most requests ({}; got {})",
                    shown(all),
                    shown(late)
                ));
            }
        }
        let tokens = ceilings::TOKENS_PER_REQUEST;
        within("isl_mean", self.isl_mean, tokens, " tokens")?;
        within("osl_mean", self.osl_mean, tokens, " tokens")?;
        within(
            "queued_prefill_tokens",
            self.queued_prefill_tokens,
            ceilings::QUEUED_TOKENS,
            "",
        )?;
        for (name, l) in [("ttft_ms", self.ttft_ms), ("itl_ms", self.itl_ms)] {
            if let Some(l) = l {
                for (q, v) in [
                    ("mean", l.mean),
                    ("p50", l.p50),
                    ("p90", l.p90),
                    ("p99", l.p99),
                ] {
                    within(
                        &format!("{name}.{q}"),
                        v,
                        ceilings::LATENCY_MS,
                        " ms (a day)",
                    )?;
                }
            }
        }
        if let Some(r) = self.replicas {
            for (role, st) in [("prefill", r.prefill), ("decode", r.decode)] {
                for (state, n) in [
                    ("ready", st.ready),
                    ("starting", st.starting),
                    ("draining", st.draining),
                ] {
                    if n > MAX_REPLICAS {
                        return Err(format!(
                            "replicas.{role}.{state}: must be at most {MAX_REPLICAS} (got {n})"
                        ));
                    }
                }
            }
        }
        if let Some(x) = self.prefix_cache_hit_rate {
            if !(0.0..=1.0).contains(&x) {
                return Err(format!(
                    "prefix_cache_hit_rate: must be in 0..1 (got {})",
                    shown(x)
                ));
            }
        }
        if let Some(k) = self.kv_utilization {
            for (role, v) in [("prefill", k.prefill), ("decode", k.decode)] {
                if let Some(x) = v {
                    if !(0.0..=1.0).contains(&x) {
                        return Err(format!(
                            "kv_utilization.{role}: must be in 0..1 (got {})",
                            shown(x)
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// What a policy forecast for the horizon it planned for.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Forecast {
    pub horizon_s: f64,
    pub requests_per_s: f64,
    pub isl: f64,
    pub osl: f64,
    /// The method whose forecast (and bound) of the rate was planned for; none when the
    /// policy has no forecaster or nothing had been forecast yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<super::forecast::ForecasterKind>,
}

/// Target replicas per role, with the reasons.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Decision {
    pub prefill: u32,
    pub decode: u32,
    pub reasons: Vec<String>,
    #[serde(default)]
    pub forecast: Option<Forecast>,
    /// TTFT (at the planner's percentile) and ITL the model expects at these counts, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_ttft_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_itl_ms: Option<f64>,
    /// The performance model's learned multipliers on the profile's latencies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrections: Option<super::model::Corrections>,
}

impl Decision {
    /// The decision for `prefill` and `decode` clipped to `limits`, with `reasons` followed
    /// by whatever the clipping changed: every policy's last step.
    pub fn clipped(
        limits: &super::Limits,
        prefill: u32,
        decode: u32,
        mut reasons: Vec<String>,
    ) -> Decision {
        let (prefill, decode, notes) = limits.clamp(prefill, decode);
        reasons.extend(notes);
        Decision {
            prefill,
            decode,
            reasons,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<f64> = (1..=100).map(|x| x as f64).collect();
        let s = LatencySummary::of(&mut v).unwrap();
        assert_eq!((s.p50, s.p90, s.p99), (Some(50.0), Some(90.0), Some(99.0)));
        assert_eq!(s.mean, Some(50.5));
        assert!(LatencySummary::of(&mut []).is_none());
    }

    #[test]
    fn numbers_in_errors_stay_short() {
        assert_eq!(shown(60.0), "60");
        assert_eq!(shown(0.25), "0.25");
        assert_eq!(shown(0.0), "0");
        assert_eq!(shown(1764662400.5), "1764662400.5");
        assert_eq!(shown(1e300), "1e300");
        assert_eq!(shown(-2.5e-300), "-2.5e-300");
        let obs = Observation {
            time_s: 60.0,
            interval_s: -1e300,
            ..Default::default()
        };
        assert_eq!(
            obs.validate().unwrap_err(),
            "interval_s: must be > 0 (got -1e300)"
        );
    }

    #[test]
    fn replica_counts_past_any_cluster_are_errors_and_never_wrap() {
        let with = |decode: ReplicaState| Observation {
            time_s: 60.0,
            interval_s: 60.0,
            replicas: Some(RoleReplicas {
                prefill: ReplicaState::default(),
                decode,
            }),
            ..Default::default()
        };
        let most = ReplicaState {
            ready: MAX_REPLICAS,
            starting: MAX_REPLICAS,
            draining: MAX_REPLICAS,
        };
        assert_eq!(with(most).validate(), Ok(()));
        let over = ReplicaState {
            starting: MAX_REPLICAS + 1,
            ..most
        };
        assert_eq!(
            with(over).validate().unwrap_err(),
            "replicas.decode.starting: must be at most 100000 (got 100001)"
        );
        // Ready and starting together saturate rather than wrap to a small count.
        let huge = ReplicaState {
            ready: u32::MAX,
            starting: 2,
            draining: 0,
        };
        assert_eq!(huge.held(), u32::MAX);
    }

    #[test]
    fn magnitudes_no_deployment_reports_are_errors_naming_the_field() {
        let base = Observation {
            time_s: 60.0,
            interval_s: 60.0,
            requests: Some(1200.0),
            isl_mean: Some(3000.0),
            osl_mean: Some(300.0),
            ..Default::default()
        };
        fn latency(p99: f64) -> Option<LatencySummary> {
            Some(LatencySummary {
                p99: Some(p99),
                ..Default::default()
            })
        }
        let check = |o: Observation| o.validate();
        // Each at its ceiling passes; just past it fails, naming the field and the ceiling.
        type Setter = fn(&mut Observation, f64);
        let cases: Vec<(&str, Setter, f64)> = vec![
            ("interval_s", |o, x| o.interval_s = x, ceilings::INTERVAL_S),
            ("requests", |o, x| o.requests = Some(x), 6e8),
            ("isl_mean", |o, x| o.isl_mean = Some(x), 1e8),
            ("osl_mean", |o, x| o.osl_mean = Some(x), 1e8),
            (
                "queued_prefill_tokens",
                |o, x| o.queued_prefill_tokens = Some(x),
                1e13,
            ),
            ("ttft_ms.p99", |o, x| o.ttft_ms = latency(x), 86_400_000.0),
            ("itl_ms.p99", |o, x| o.itl_ms = latency(x), 86_400_000.0),
        ];
        for (field, set, most) in cases {
            let mut o = base.clone();
            set(&mut o, most);
            assert_eq!(check(o.clone()), Ok(()), "{field} at {most}");
            set(&mut o, most * 1.001);
            let err = check(o).unwrap_err();
            assert!(
                err.starts_with(&format!("{field}: must be at most {}", shown(most))),
                "{err}"
            );
        }
        // The request count's ceiling is a rate's: ten times the interval, ten times the count.
        let long = Observation {
            interval_s: 600.0,
            requests: Some(6e9),
            ..base.clone()
        };
        assert_eq!(long.validate(), Ok(()));
        let err = Observation {
            requests_second_half: Some(1e300),
            requests: Some(1e300),
            ..base
        }
        .validate()
        .unwrap_err();
        assert_eq!(
            err,
            "requests: must be at most 600000000 (10000000 a second over 60 s) (got 1e300)"
        );
    }

    #[test]
    fn a_mean_is_estimated_from_percentiles_when_it_is_not_reported() {
        let summary = |mean, p50, p90, p99| LatencySummary {
            mean,
            p50,
            p90,
            p99,
        };
        // A reported mean is the mean, whatever the percentiles say.
        let reported = summary(Some(70.0), Some(50.0), Some(90.0), Some(400.0));
        assert_eq!(reported.mean_or_estimate(), Some(70.0));
        // A lognormal's percentiles (median 50, log-spread 0.6) give back its mean.
        let (median, sigma): (f64, f64) = (50.0, 0.6);
        let at = |z: f64| Some(median * (sigma * z).exp());
        let mean = median * (sigma * sigma / 2.0).exp();
        for s in [
            summary(None, Some(median), at(Z90), at(Z99)),
            summary(None, Some(median), None, at(Z99)),
            // A mean that is no number is no mean.
            summary(Some(f64::NAN), Some(median), at(Z90), None),
        ] {
            let estimate = s.mean_or_estimate().unwrap();
            assert!((estimate / mean - 1.0).abs() < 1e-9, "{s:?}: {estimate}");
        }
        // The median alone, or a higher percentile no higher than it: the median.
        assert_eq!(
            summary(None, Some(50.0), None, None).mean_or_estimate(),
            Some(50.0)
        );
        assert_eq!(
            summary(None, Some(50.0), Some(50.0), Some(40.0)).mean_or_estimate(),
            Some(50.0)
        );
        // Without a median nothing is estimated.
        assert_eq!(
            summary(None, None, Some(90.0), Some(400.0)).mean_or_estimate(),
            None
        );
    }
}

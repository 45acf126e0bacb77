//! Workloads: the requests a simulation replays, from recorded traces or generated with a seed.

mod synthetic;
mod trace;

pub use synthetic::{LengthDist, RateShape, SyntheticSpec};
pub use trace::{read_trace, Trace, TraceFormat, TraceReadOptions};

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// One request: when it arrives and how many tokens go in and come out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Request {
    /// Seconds from the start of the workload.
    pub arrival_s: f64,
    pub isl: u32,
    pub osl: u32,
    /// The prompt's prefix blocks, where the trace names them (Mooncake's `hash_ids`).
    pub prefix: PrefixBlocks,
}

impl Request {
    /// A request whose prompt shares no named prefix.
    pub fn new(arrival_s: f64, isl: u32, osl: u32) -> Request {
        Request {
            arrival_s,
            isl,
            osl,
            prefix: PrefixBlocks::NONE,
        }
    }
}

/// A prompt's prefix blocks: `len` hashes from `start` in the trace's block pool, in the
/// prompt's order, each standing for `block_tokens` tokens (equal hashes, equal content).
/// A copy of a replicated trace has its own `copy` number, so its prompts share blocks
/// with each other as the trace's do, and not with another copy's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PrefixBlocks {
    pub start: u32,
    pub len: u32,
    pub copy: u32,
}

impl PrefixBlocks {
    pub const NONE: PrefixBlocks = PrefixBlocks {
        start: 0,
        len: 0,
        copy: 0,
    };

    /// The block keys, each a pool hash told apart by copy.
    pub fn keys<'p>(&self, pool: &'p [u64]) -> impl Iterator<Item = u64> + 'p {
        let salt = u64::from(self.copy).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let range = self.start as usize..(self.start + self.len) as usize;
        pool.get(range).unwrap_or(&[]).iter().map(move |h| h ^ salt)
    }
}

/// Reshaping of a recorded trace, applied in the order window, time scale, replication,
/// spread.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TraceTransform {
    /// The trace's timestamps were rounded down to this many seconds (Mooncake's release
    /// rounds to 3 s): each arrival is placed uniformly at random within the quantum after
    /// its recorded time (seeded by the scenario's seed; each copy of a replicated trace
    /// apart). Replayed as recorded, the requests of one quantum would arrive at the same
    /// instant, a burst no user made.
    #[serde(default)]
    pub spread_s: Option<f64>,
    /// Keep arrivals in `[start_s, end_s)` (seconds from the trace start), then shift to 0.
    #[serde(default)]
    pub window: Option<Window>,
    /// Multiply arrival times by this factor: 0.5 plays the trace twice as fast.
    #[serde(default)]
    pub time_scale: Option<f64>,
    /// Overlay this many copies of the trace, copy `j` shifted by `j * replicate_shift_s`
    /// around the trace's span: what a copy's shift moves past the end comes back at the
    /// start, so every copy runs from the trace's first second to its last.
    #[serde(default)]
    pub replicate: Option<u32>,
    /// Shift between copies; defaults to the trace's mean gap between arrivals divided by
    /// the number of copies, so copies interleave and the load's shape over time is kept.
    #[serde(default)]
    pub replicate_shift_s: Option<f64>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Window {
    pub start_s: f64,
    pub end_s: f64,
}

impl TraceTransform {
    /// The transform with `k` times the copies, `k` times closer together, so the copies
    /// spread over the same span and the load keeps its shape: an error when the copies
    /// would not be a whole number.
    pub fn with_copies_scaled(&self, k: f64) -> Result<TraceTransform, String> {
        let now = self.replicate.unwrap_or(1);
        let copies = f64::from(now) * k;
        let whole = copies.round();
        if (copies - whole).abs() > 1e-9 * copies.max(1.0)
            || whole < 1.0
            || whole > f64::from(u32::MAX)
        {
            let noun = if now == 1 { "copy" } else { "copies" };
            return Err(format!(
                "{now} {noun} of the trace times {k} is not a whole number of copies"
            ));
        }
        Ok(TraceTransform {
            replicate: Some(whole as u32),
            replicate_shift_s: self.replicate_shift_s.map(|s| s / k),
            ..self.clone()
        })
    }

    /// Checks the transform's numbers; `field` prefixes the names in messages.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(q) = self.spread_s {
            if !(q.is_finite() && q >= 0.0) {
                return Err(format!("spread_s: must be >= 0 (got {q})"));
            }
        }
        if let Some(w) = self.window {
            if !(w.start_s.is_finite()
                && w.end_s.is_finite()
                && w.start_s >= 0.0
                && w.end_s > w.start_s)
            {
                return Err(format!(
                    "window: start_s must be >= 0 and below end_s (got {} and {})",
                    w.start_s, w.end_s
                ));
            }
        }
        if let Some(s) = self.time_scale {
            if !(s.is_finite() && s > 0.0) {
                return Err(format!("time_scale: must be a positive number (got {s})"));
            }
        }
        if let Some(k) = self.replicate {
            if k == 0 || k > 1000 {
                return Err(format!("replicate: must be 1 to 1000 copies (got {k})"));
            }
        }
        if let Some(s) = self.replicate_shift_s {
            if !(s.is_finite() && s >= 0.0) {
                return Err(format!("replicate_shift_s: must be >= 0 (got {s})"));
            }
        }
        Ok(())
    }

    /// Applies the transform; `requests` must be sorted by arrival. The result is sorted.
    /// `seed` draws the spread within quantised timestamps (the same seed, the same times).
    pub fn apply(&self, mut requests: Vec<Request>, seed: u64) -> Vec<Request> {
        if let Some(w) = self.window {
            requests.retain(|r| r.arrival_s >= w.start_s && r.arrival_s < w.end_s);
            for r in &mut requests {
                r.arrival_s -= w.start_s;
            }
        }
        if let Some(s) = self.time_scale {
            for r in &mut requests {
                r.arrival_s *= s;
            }
        }
        if let Some(k) = self.replicate.filter(|&k| k > 1) {
            let n = requests.len();
            let first = requests.first().map_or(0.0, |r| r.arrival_s);
            let span = requests.last().map_or(first, |r| r.arrival_s) - first;
            let mean_gap = if n > 1 { span / (n - 1) as f64 } else { 0.0 };
            let shift = self.replicate_shift_s.unwrap_or(mean_gap / k as f64);
            // Each copy's shift wraps around the trace's span (and one mean gap, the distance
            // between any two arrivals): every copy runs from the first second to the last,
            // so the load is `k` times the trace's throughout, not a rise over the first
            // `k` shifts as the copies come in one after another.
            let period = span + mean_gap;
            let base = requests.clone();
            for j in 1..k {
                requests.extend(base.iter().map(|r| {
                    let offset = r.arrival_s - first + shift * j as f64;
                    let wrapped = if period > 0.0 {
                        offset % period
                    } else {
                        offset
                    };
                    Request {
                        arrival_s: first + wrapped,
                        prefix: PrefixBlocks {
                            copy: j,
                            ..r.prefix
                        },
                        ..*r
                    }
                }));
            }
            requests.sort_by(|a, b| a.arrival_s.total_cmp(&b.arrival_s));
        }
        // Last, so each copy's arrivals are placed apart from the others'; the quantum is
        // the recorded trace's, played at its time scale.
        if let Some(q) = self.spread_s.filter(|&q| q > 0.0) {
            let quantum = q * self.time_scale.unwrap_or(1.0);
            let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
            for r in &mut requests {
                r.arrival_s += quantum * rng.random::<f64>();
            }
            requests.sort_by(|a, b| a.arrival_s.total_cmp(&b.arrival_s));
        }
        requests
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reqs(times: &[f64]) -> Vec<Request> {
        times.iter().map(|&t| Request::new(t, 10, 5)).collect()
    }

    #[test]
    fn each_copy_of_a_trace_has_its_own_prefix_blocks() {
        let pool = [10u64, 11, 12];
        let first = Request {
            prefix: PrefixBlocks {
                start: 1,
                len: 2,
                copy: 0,
            },
            ..Request::new(5.0, 1500, 10)
        };
        let t = TraceTransform {
            window: Some(Window {
                start_s: 1.0,
                end_s: 100.0,
            }),
            time_scale: Some(2.0),
            replicate: Some(3),
            ..Default::default()
        };
        let copies = t.apply(vec![first], 1);
        assert_eq!(copies.len(), 3);
        let mut keys: Vec<Vec<u64>> = copies
            .iter()
            .map(|r| r.prefix.keys(&pool).collect())
            .collect();
        // The first copy's keys are the trace's own; no two copies share one.
        assert!(keys.contains(&vec![11, 12]));
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), 3);
        assert!(keys.iter().all(|k| k.len() == 2));
        assert_eq!(PrefixBlocks::NONE.keys(&pool).count(), 0);
    }

    #[test]
    fn scaled_copies_are_k_times_as_many_and_k_times_closer() {
        let t = TraceTransform {
            replicate: Some(8),
            replicate_shift_s: Some(7.5),
            spread_s: Some(3.0),
            ..Default::default()
        };
        let three = t.with_copies_scaled(3.0).unwrap();
        assert_eq!(three.replicate, Some(24));
        assert_eq!(three.replicate_shift_s, Some(2.5));
        assert_eq!(three.spread_s, Some(3.0), "the rest is kept");
        let half = t.with_copies_scaled(0.5).unwrap();
        assert_eq!(
            (half.replicate, half.replicate_shift_s),
            (Some(4), Some(15.0))
        );
        // No copies given is one copy; no shift given stays the default (the mean gap over
        // the copies, which shrinks with them).
        let one = TraceTransform::default().with_copies_scaled(2.0).unwrap();
        assert_eq!((one.replicate, one.replicate_shift_s), (Some(2), None));
        for k in [1.1, 0.1, 1e-12] {
            let e = t.with_copies_scaled(k).unwrap_err();
            assert!(e.contains("whole number"), "{k}: {e}");
        }
    }

    #[test]
    fn window_keeps_and_shifts() {
        let t = TraceTransform {
            window: Some(Window {
                start_s: 1.0,
                end_s: 3.0,
            }),
            ..Default::default()
        };
        let out = t.apply(reqs(&[0.0, 1.0, 2.5, 3.0]), 1);
        assert_eq!(
            out.iter().map(|r| r.arrival_s).collect::<Vec<_>>(),
            vec![0.0, 1.5]
        );
    }

    #[test]
    fn time_scale_compresses() {
        let t = TraceTransform {
            time_scale: Some(0.5),
            ..Default::default()
        };
        let out = t.apply(reqs(&[0.0, 2.0, 4.0]), 1);
        assert_eq!(
            out.iter().map(|r| r.arrival_s).collect::<Vec<_>>(),
            vec![0.0, 1.0, 2.0]
        );
    }

    #[test]
    fn replicate_interleaves_copies() {
        let t = TraceTransform {
            replicate: Some(2),
            ..Default::default()
        };
        let out = t.apply(reqs(&[0.0, 2.0, 4.0]), 1);
        // mean gap 2 s, two copies: shift 1 s.
        assert_eq!(
            out.iter().map(|r| r.arrival_s).collect::<Vec<_>>(),
            vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
        );
    }

    #[test]
    fn copies_wrap_around_the_span_so_the_load_is_k_times_from_the_start() {
        // One arrival a second for a minute, four copies 15 s apart: each copy runs the
        // whole minute, so its first 15 s hold four arrivals a second, not one (as they
        // would while the copies came in one after another), and none falls past its end.
        let t = TraceTransform {
            replicate: Some(4),
            replicate_shift_s: Some(15.0),
            ..Default::default()
        };
        let times: Vec<f64> = (0..60).map(f64::from).collect();
        let out = t.apply(reqs(&times), 1);
        assert_eq!(out.len(), 240);
        let within = |a: f64, b: f64| out.iter().filter(|r| (a..b).contains(&r.arrival_s)).count();
        assert_eq!(within(0.0, 15.0), 60);
        assert_eq!(within(45.0, 60.0), 60);
        assert!(out.windows(2).all(|w| w[0].arrival_s <= w[1].arrival_s));
    }

    #[test]
    fn spread_places_a_quantum_s_arrivals_within_it() {
        let t = TraceTransform {
            spread_s: Some(3.0),
            ..Default::default()
        };
        // Ten requests recorded at 0 s and ten at 3 s: spread over [0, 3) and [3, 6).
        let recorded = reqs(&[[0.0; 10], [3.0; 10]].concat());
        let out = t.apply(recorded.clone(), 7);
        let times: Vec<f64> = out.iter().map(|r| r.arrival_s).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "sorted: {times:?}");
        assert_eq!(
            times.iter().filter(|&&x| (0.0..3.0).contains(&x)).count(),
            10
        );
        assert_eq!(
            times.iter().filter(|&&x| (3.0..6.0).contains(&x)).count(),
            10
        );
        let distinct = times.windows(2).filter(|w| w[0] < w[1]).count();
        assert_eq!(
            distinct, 19,
            "no two arrivals left at one instant: {times:?}"
        );
        // The same seed gives the same times, another seed others.
        assert_eq!(t.apply(recorded.clone(), 7), out);
        assert_ne!(t.apply(recorded.clone(), 8), out);
        // No spread, no change.
        assert_eq!(
            TraceTransform::default().apply(recorded.clone(), 7),
            recorded
        );
    }

    #[test]
    fn validate_names_the_bad_part() {
        let t = TraceTransform {
            spread_s: Some(f64::NAN),
            ..Default::default()
        };
        assert!(t.validate().unwrap_err().starts_with("spread_s"));
        let t = TraceTransform {
            time_scale: Some(-1.0),
            ..Default::default()
        };
        assert!(t.validate().unwrap_err().starts_with("time_scale"));
        let t = TraceTransform {
            replicate: Some(0),
            ..Default::default()
        };
        assert!(t.validate().unwrap_err().starts_with("replicate"));
    }
}

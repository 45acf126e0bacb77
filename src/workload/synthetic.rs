//! Seeded synthetic workloads: Poisson arrivals under a rate shape, lengths from distributions.

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp1, LogNormal, Normal};
use rand_pcg::Pcg64;
use serde::{Deserialize, Serialize};

use super::Request;

/// Arrival rate over time, requests per second.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "shape", rename_all = "snake_case", deny_unknown_fields)]
pub enum RateShape {
    Constant {
        rps: f64,
    },
    /// Dynamo's benchmark: `(min+max)/2 + (max-min)/2 * sin(2*pi*t/period - pi/2)`, so it starts at `min`.
    Sinusoid {
        min_rps: f64,
        max_rps: f64,
        period_s: f64,
    },
    /// `base_rps`, then `step_rps` from `at_s` (until `until_s`, if given).
    Step {
        base_rps: f64,
        step_rps: f64,
        at_s: f64,
        #[serde(default)]
        until_s: Option<f64>,
    },
    /// A flash crowd: from `base_rps` a linear ramp of `ramp_s` to `peak_rps` at `at_s`,
    /// held `hold_s`, then a linear decay of `decay_s` back to base.
    FlashCrowd {
        base_rps: f64,
        peak_rps: f64,
        at_s: f64,
        ramp_s: f64,
        hold_s: f64,
        decay_s: f64,
    },
    /// A working day compressed into `day_s`: quiet night, a morning and a larger afternoon peak.
    Diurnal {
        min_rps: f64,
        max_rps: f64,
        day_s: f64,
    },
    /// Bursts that recur at irregular times: `base_rps`, and `peak_rps` for `burst_s` once
    /// in every `every_s`, starting at a point of each such window drawn from `seed`, so
    /// the gaps between bursts range from 0 to twice `every_s - burst_s`.
    Bursts {
        base_rps: f64,
        peak_rps: f64,
        every_s: f64,
        burst_s: f64,
        #[serde(default)]
        seed: u64,
    },
}

/// SplitMix64's finaliser: a well-mixed 64-bit value from `x`, in `[0, 1)`.
fn unit_hash(x: u64) -> f64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

impl RateShape {
    /// The same shape with every rate multiplied by `k` (times and periods unchanged).
    pub fn scaled(&self, k: f64) -> RateShape {
        let mut r = self.clone();
        match &mut r {
            RateShape::Constant { rps } => *rps *= k,
            RateShape::Sinusoid {
                min_rps, max_rps, ..
            }
            | RateShape::Diurnal {
                min_rps, max_rps, ..
            } => {
                *min_rps *= k;
                *max_rps *= k;
            }
            RateShape::Step {
                base_rps, step_rps, ..
            } => {
                *base_rps *= k;
                *step_rps *= k;
            }
            RateShape::FlashCrowd {
                base_rps, peak_rps, ..
            }
            | RateShape::Bursts {
                base_rps, peak_rps, ..
            } => {
                *base_rps *= k;
                *peak_rps *= k;
            }
        }
        r
    }

    pub fn rate_at(&self, t: f64) -> f64 {
        use std::f64::consts::PI;
        match *self {
            RateShape::Constant { rps } => rps,
            RateShape::Sinusoid {
                min_rps,
                max_rps,
                period_s,
            } => {
                (min_rps + max_rps) / 2.0
                    + (max_rps - min_rps) / 2.0 * (2.0 * PI * t / period_s - PI / 2.0).sin()
            }
            RateShape::Step {
                base_rps,
                step_rps,
                at_s,
                until_s,
            } => {
                if t >= at_s && until_s.is_none_or(|u| t < u) {
                    step_rps
                } else {
                    base_rps
                }
            }
            RateShape::FlashCrowd {
                base_rps,
                peak_rps,
                at_s,
                ramp_s,
                hold_s,
                decay_s,
            } => {
                let up_start = at_s - ramp_s;
                let down_start = at_s + hold_s;
                let f = if t < up_start || t >= down_start + decay_s {
                    0.0
                } else if t < at_s {
                    if ramp_s > 0.0 {
                        (t - up_start) / ramp_s
                    } else {
                        1.0
                    }
                } else if t < down_start {
                    1.0
                } else if decay_s > 0.0 {
                    1.0 - (t - down_start) / decay_s
                } else {
                    0.0
                };
                base_rps + (peak_rps - base_rps) * f
            }
            RateShape::Diurnal {
                min_rps,
                max_rps,
                day_s,
            } => {
                let x = (t / day_s).rem_euclid(1.0);
                (min_rps + (max_rps - min_rps) * diurnal_shape(x)).max(0.0)
            }
            RateShape::Bursts {
                base_rps,
                peak_rps,
                every_s,
                burst_s,
                seed,
            } => {
                let window = (t / every_s).floor();
                let start = window * every_s
                    + unit_hash(seed ^ (window as u64)) * (every_s - burst_s).max(0.0);
                if t >= 0.0 && t >= start && t < start + burst_s {
                    peak_rps
                } else {
                    base_rps
                }
            }
        }
    }

    /// An upper bound of the rate over `[0, duration_s]`, for thinning.
    pub fn max_rate(&self) -> f64 {
        match *self {
            RateShape::Constant { rps } => rps,
            RateShape::Sinusoid {
                min_rps, max_rps, ..
            }
            | RateShape::Diurnal {
                min_rps, max_rps, ..
            } => min_rps.max(max_rps),
            RateShape::Step {
                base_rps, step_rps, ..
            } => base_rps.max(step_rps),
            RateShape::FlashCrowd {
                base_rps, peak_rps, ..
            }
            | RateShape::Bursts {
                base_rps, peak_rps, ..
            } => base_rps.max(peak_rps),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        let nonneg = |name: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(format!("{name}: must be a number >= 0 (got {v})"))
            }
        };
        let pos = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(format!("{name}: must be a number > 0 (got {v})"))
            }
        };
        let min_max = |min_rps: f64, max_rps: f64| {
            nonneg("min_rps", min_rps)?;
            nonneg("max_rps", max_rps)?;
            if max_rps < min_rps {
                Err(format!(
                    "max_rps: must be >= min_rps ({max_rps} < {min_rps})"
                ))
            } else {
                Ok(())
            }
        };
        match *self {
            RateShape::Constant { rps } => nonneg("rps", rps),
            RateShape::Sinusoid {
                min_rps,
                max_rps,
                period_s,
            } => {
                min_max(min_rps, max_rps)?;
                pos("period_s", period_s)
            }
            RateShape::Step {
                base_rps,
                step_rps,
                at_s,
                until_s,
            } => {
                nonneg("base_rps", base_rps)?;
                nonneg("step_rps", step_rps)?;
                nonneg("at_s", at_s)?;
                if let Some(u) = until_s {
                    if !(u.is_finite() && u > at_s) {
                        return Err(format!("until_s: must be after at_s (got {u})"));
                    }
                }
                Ok(())
            }
            RateShape::FlashCrowd {
                base_rps,
                peak_rps,
                at_s,
                ramp_s,
                hold_s,
                decay_s,
            } => {
                nonneg("base_rps", base_rps)?;
                nonneg("peak_rps", peak_rps)?;
                nonneg("at_s", at_s)?;
                nonneg("ramp_s", ramp_s)?;
                nonneg("hold_s", hold_s)?;
                nonneg("decay_s", decay_s)
            }
            RateShape::Diurnal {
                min_rps,
                max_rps,
                day_s,
            } => {
                min_max(min_rps, max_rps)?;
                pos("day_s", day_s)
            }
            RateShape::Bursts {
                base_rps,
                peak_rps,
                every_s,
                burst_s,
                ..
            } => {
                nonneg("base_rps", base_rps)?;
                nonneg("peak_rps", peak_rps)?;
                pos("every_s", every_s)?;
                pos("burst_s", burst_s)?;
                if burst_s > every_s {
                    return Err(format!(
                        "burst_s: must be <= every_s ({burst_s} > {every_s})"
                    ));
                }
                Ok(())
            }
        }
    }
}

/// Daily load shape in 0..1 for `x` in 0..1 of a day (0 = midnight): two Gaussian peaks at
/// 10:00 (0.8) and 15:00 (1.0) over a floor that is lowest around 04:00.
fn diurnal_shape(x: f64) -> f64 {
    let bump = |centre: f64, width: f64| {
        let d = (x - centre).abs().min(1.0 - (x - centre).abs());
        (-(d * d) / (2.0 * width * width)).exp()
    };
    let v = 0.8 * bump(10.0 / 24.0, 2.0 / 24.0)
        + 1.0 * bump(15.0 / 24.0, 2.5 / 24.0)
        + 0.15 * bump(20.0 / 24.0, 3.0 / 24.0);
    v.min(1.0)
}

/// Token counts: a fixed number or a distribution.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(untagged)]
pub enum LengthDist {
    Fixed(u32),
    Dist(DistSpec),
}

// By hand rather than `untagged`: a number is a count and a mapping a distribution, so a
// mistake inside the mapping (an unknown `dist`, a field missing) is told as it is, not as
// "data did not match any variant".
impl<'de> Deserialize<'de> for LengthDist {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Lengths;
        impl<'de> serde::de::Visitor<'de> for Lengths {
            type Value = LengthDist;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "a whole number of tokens, or a distribution such as \
                     {dist: lognormal, mean: 3000, cv: 0.5}",
                )
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<LengthDist, E> {
                u32::try_from(v)
                    .map(LengthDist::Fixed)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<LengthDist, E> {
                u64::try_from(v)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
                    .and_then(|v| self.visit_u64(v))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, m: A) -> Result<LengthDist, A::Error> {
                DistSpec::deserialize(serde::de::value::MapAccessDeserializer::new(m))
                    .map(LengthDist::Dist)
            }
        }
        d.deserialize_any(Lengths)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "dist", rename_all = "snake_case", deny_unknown_fields)]
pub enum DistSpec {
    Uniform {
        min: u32,
        max: u32,
    },
    Normal {
        mean: f64,
        sd: f64,
    },
    /// Log-normal with this mean and coefficient of variation (sd / mean); heavy-tailed,
    /// like real prompt lengths.
    Lognormal {
        mean: f64,
        cv: f64,
        #[serde(default)]
        max: Option<u32>,
    },
    Exponential {
        mean: f64,
    },
}

impl LengthDist {
    pub fn validate(&self) -> Result<(), String> {
        match self {
            LengthDist::Fixed(0) => Err("must be at least 1 token".into()),
            LengthDist::Fixed(_) => Ok(()),
            LengthDist::Dist(DistSpec::Uniform { min, max }) if *min == 0 || max < min => {
                Err(format!("uniform: needs 1 <= min <= max (got {min}, {max})"))
            }
            LengthDist::Dist(DistSpec::Normal { mean, sd })
                if !(*mean >= 1.0 && mean.is_finite() && *sd >= 0.0 && sd.is_finite()) =>
            {
                Err(format!(
                    "normal: needs a finite mean >= 1 and sd >= 0 (got {mean}, {sd})"
                ))
            }
            LengthDist::Dist(DistSpec::Lognormal { mean, cv, .. })
                if !(*mean >= 1.0 && mean.is_finite() && *cv > 0.0 && cv.is_finite()) =>
            {
                Err(format!(
                    "lognormal: needs a finite mean >= 1 and cv > 0 (got {mean}, {cv})"
                ))
            }
            // A cap below the mean would clip nearly every draw to it: lengths of `max`, not
            // the mean asked for.
            LengthDist::Dist(DistSpec::Lognormal {
                mean,
                max: Some(max),
                ..
            }) if f64::from(*max) < *mean => Err(format!(
                "lognormal: max ({max}) is below the mean ({mean}); the lengths would be clipped to it"
            )),
            LengthDist::Dist(DistSpec::Exponential { mean })
                if !(*mean >= 1.0 && mean.is_finite()) =>
            {
                Err(format!("exponential: needs a finite mean >= 1 (got {mean})"))
            }
            LengthDist::Dist(_) => Ok(()),
        }
    }

    pub fn sample(&self, rng: &mut Pcg64) -> u32 {
        let v = match self {
            LengthDist::Fixed(n) => return *n,
            LengthDist::Dist(DistSpec::Uniform { min, max }) => {
                return rng.random_range(*min..=*max)
            }
            LengthDist::Dist(DistSpec::Normal { mean, sd }) => Normal::new(*mean, *sd)
                .map(|d| d.sample(rng))
                .unwrap_or(*mean),
            LengthDist::Dist(DistSpec::Lognormal { mean, cv, max }) => {
                let sigma2 = (1.0 + cv * cv).ln();
                let mu = mean.ln() - sigma2 / 2.0;
                let v = LogNormal::new(mu, sigma2.sqrt())
                    .map(|d| d.sample(rng))
                    .unwrap_or(*mean);
                max.map_or(v, |m| v.min(m as f64))
            }
            LengthDist::Dist(DistSpec::Exponential { mean }) => {
                let e: f64 = Exp1.sample(rng);
                e * mean
            }
        };
        v.round().clamp(1.0, u32::MAX as f64) as u32
    }
}

/// A generated workload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SyntheticSpec {
    pub rate: RateShape,
    pub duration_s: f64,
    pub isl: LengthDist,
    pub osl: LengthDist,
}

/// Most arrivals a synthetic workload may draw: fifty million requests, about a day at
/// 600 req/s.
pub const MAX_ARRIVALS: f64 = 5e7;

impl SyntheticSpec {
    pub fn validate(&self) -> Result<(), String> {
        self.rate.validate().map_err(|e| format!("rate.{e}"))?;
        if !(self.duration_s.is_finite() && self.duration_s > 0.0) {
            return Err(format!("duration_s: must be > 0 (got {})", self.duration_s));
        }
        self.isl.validate().map_err(|e| format!("isl: {e}"))?;
        self.osl.validate().map_err(|e| format!("osl: {e}"))
    }

    /// Whether generating it is within reach: arrivals are drawn at the highest rate and
    /// thinned, that many draws, each a request held in memory at worst. Past
    /// `MAX_ARRIVALS` it is an error, not an hour of work and the machine's memory.
    pub fn check_size(&self) -> Result<(), String> {
        let draws = self.rate.max_rate() * self.duration_s;
        if draws > MAX_ARRIVALS {
            return Err(format!(
                "rate: up to {draws:.0} arrivals (the highest rate, {} req/s, for {} s); at most {MAX_ARRIVALS:.0}",
                self.rate.max_rate(),
                self.duration_s
            ));
        }
        Ok(())
    }

    /// Poisson arrivals with the shape's rate (thinning), lengths drawn independently.
    pub fn generate(&self, seed: u64) -> Vec<Request> {
        let mut rng = Pcg64::seed_from_u64(seed);
        let lambda_max = self.rate.max_rate();
        let mut out = Vec::new();
        if lambda_max <= 0.0 {
            return out;
        }
        let mut t = 0.0;
        loop {
            let e: f64 = Exp1.sample(&mut rng);
            t += e / lambda_max;
            if t >= self.duration_s {
                break;
            }
            let u: f64 = rng.random();
            if u * lambda_max <= self.rate.rate_at(t) {
                let isl = self.isl.sample(&mut rng);
                let osl = self.osl.sample(&mut rng);
                out.push(Request::new(t, isl, osl));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scaled_shape_is_every_rate_times_k_at_every_time() {
        let shapes = [
            RateShape::Constant { rps: 7.0 },
            RateShape::Sinusoid {
                min_rps: 5.0,
                max_rps: 45.0,
                period_s: 600.0,
            },
            RateShape::Step {
                base_rps: 10.0,
                step_rps: 30.0,
                at_s: 100.0,
                until_s: Some(400.0),
            },
            RateShape::FlashCrowd {
                base_rps: 5.0,
                peak_rps: 30.0,
                at_s: 100.0,
                ramp_s: 60.0,
                hold_s: 120.0,
                decay_s: 90.0,
            },
            RateShape::Diurnal {
                min_rps: 2.0,
                max_rps: 40.0,
                day_s: 3600.0,
            },
            RateShape::Bursts {
                base_rps: 10.0,
                peak_rps: 40.0,
                every_s: 480.0,
                burst_s: 120.0,
                seed: 3,
            },
        ];
        for shape in shapes {
            let scaled = shape.scaled(3.0);
            for t in (0..3600).step_by(7).map(f64::from) {
                let (a, b) = (shape.rate_at(t), scaled.rate_at(t));
                assert!(
                    (b - 3.0 * a).abs() < 1e-9 * a.max(1.0),
                    "{shape:?} at {t}: {a} -> {b}"
                );
            }
            assert!(
                (scaled.max_rate() - 3.0 * shape.max_rate()).abs() < 1e-9,
                "{shape:?}"
            );
        }
    }

    #[test]
    fn sinusoid_matches_dynamo_definition() {
        let s = RateShape::Sinusoid {
            min_rps: 5.0,
            max_rps: 45.0,
            period_s: 600.0,
        };
        assert!((s.rate_at(0.0) - 5.0).abs() < 1e-9);
        assert!((s.rate_at(300.0) - 45.0).abs() < 1e-9);
        assert!((s.rate_at(150.0) - 25.0).abs() < 1e-9);
    }

    #[test]
    fn poisson_count_near_integral() {
        let spec = SyntheticSpec {
            rate: RateShape::Sinusoid {
                min_rps: 5.0,
                max_rps: 45.0,
                period_s: 600.0,
            },
            duration_s: 1800.0,
            isl: LengthDist::Fixed(3000),
            osl: LengthDist::Fixed(300),
        };
        let r = spec.generate(7);
        // Expected 25 rps * 1800 s = 45000, sd ~212.
        assert!((r.len() as f64 - 45000.0).abs() < 1000.0, "{}", r.len());
        assert_eq!(spec.generate(7), r, "same seed, same workload");
        assert_ne!(spec.generate(8), r);
    }

    #[test]
    fn lognormal_mean_close() {
        let d = LengthDist::Dist(DistSpec::Lognormal {
            mean: 1000.0,
            cv: 1.0,
            max: None,
        });
        let mut rng = Pcg64::seed_from_u64(1);
        let n = 20000;
        let m = (0..n).map(|_| d.sample(&mut rng) as f64).sum::<f64>() / n as f64;
        assert!((m - 1000.0).abs() < 50.0, "{m}");
    }

    #[test]
    fn bursts_come_once_a_window_for_their_length_at_seeded_points() {
        let shape = |seed: u64| RateShape::Bursts {
            base_rps: 10.0,
            peak_rps: 40.0,
            every_s: 480.0,
            burst_s: 120.0,
            seed,
        };
        let s = shape(3);
        let starts = |s: &RateShape| -> Vec<f64> {
            (1..3600)
                .map(f64::from)
                .filter(|&t| s.rate_at(t) == 40.0 && s.rate_at(t - 1.0) == 10.0)
                .collect()
        };
        let got = starts(&s);
        // One burst in each of the seven whole windows (one may start at a window's first
        // second, with no base second before it), each 120 s long, base in between.
        assert!(got.len() >= 6 && got.len() <= 8, "{got:?}");
        for &t in &got {
            let window = (t / 480.0).floor() * 480.0;
            assert!(t - window <= 360.0, "{t}");
            assert_eq!(s.rate_at(t + 119.0), 40.0);
            assert_eq!(s.rate_at(t + 120.0), 10.0, "{t}");
        }
        let peak_s = (0..3360)
            .filter(|&t| s.rate_at(f64::from(t)) == 40.0)
            .count();
        assert_eq!(peak_s, 120 * 7, "seven whole windows, a burst each");
        // Irregular: not one period apart, and another seed places them elsewhere.
        let gaps: Vec<f64> = got.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().any(|&g| (g - gaps[0]).abs() > 30.0), "{gaps:?}");
        assert_ne!(starts(&shape(4)), got);
        assert_eq!(s.max_rate(), 40.0);
        assert!(shape(0).validate().is_ok());
        let long = RateShape::Bursts {
            base_rps: 10.0,
            peak_rps: 40.0,
            every_s: 480.0,
            burst_s: 600.0,
            seed: 0,
        };
        assert!(long.validate().unwrap_err().contains("burst_s"));
    }

    #[test]
    fn flash_crowd_shape() {
        let s = RateShape::FlashCrowd {
            base_rps: 1.0,
            peak_rps: 11.0,
            at_s: 100.0,
            ramp_s: 10.0,
            hold_s: 20.0,
            decay_s: 10.0,
        };
        assert_eq!(s.rate_at(0.0), 1.0);
        assert_eq!(s.rate_at(95.0), 6.0);
        assert_eq!(s.rate_at(110.0), 11.0);
        assert_eq!(s.rate_at(125.0), 6.0);
        assert_eq!(s.rate_at(200.0), 1.0);
    }
}

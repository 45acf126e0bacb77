//! Replica counts out.
//!
//! Architecture invariant: every replica count that leaves the planner, whatever produced
//! it, passes through [`Limits::clamp`], so no input can scale a role below its minimum or
//! the deployment past its GPU budget.

pub mod kube;

use serde::{Deserialize, Serialize};

use crate::planner::MAX_REPLICAS;

/// Replica and GPU limits of one deployment.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Limits {
    pub min_prefill: u32,
    pub max_prefill: u32,
    pub min_decode: u32,
    pub max_decode: u32,
    /// Total GPUs the two roles may hold together, counting starting and draining replicas' GPUs
    /// as the cluster does.
    pub gpu_budget: u32,
    pub gpus_per_prefill_engine: u32,
    pub gpus_per_decode_engine: u32,
}

/// A count within [`MAX_REPLICAS`], or the field at fault.
fn at_most(field: &'static str, n: u32, what: &str) -> Result<(), (&'static str, String)> {
    if n > MAX_REPLICAS {
        return Err((field, format!("at most {MAX_REPLICAS} {what} (got {n})")));
    }
    Ok(())
}

impl Limits {
    /// GPUs the counts hold (saturating: a count far past any budget stays past it).
    pub fn gpus(&self, prefill: u32, decode: u32) -> u32 {
        prefill
            .saturating_mul(self.gpus_per_prefill_engine)
            .saturating_add(decode.saturating_mul(self.gpus_per_decode_engine))
    }

    /// Limits from a config's fields; an absent maximum is the budget's worth of engines.
    pub fn build(
        gpu_budget: u32,
        gpus_per_engine: (u32, u32),
        min: (u32, u32),
        max: (Option<u32>, Option<u32>),
    ) -> Limits {
        let per = (gpus_per_engine.0.max(1), gpus_per_engine.1.max(1));
        Limits {
            min_prefill: min.0,
            max_prefill: max.0.unwrap_or(gpu_budget / per.0),
            min_decode: min.1,
            max_decode: max.1.unwrap_or(gpu_budget / per.1),
            gpu_budget,
            gpus_per_prefill_engine: gpus_per_engine.0,
            gpus_per_decode_engine: gpus_per_engine.1,
        }
    }

    /// Checks the limits hold together; on failure, the field at fault and why. The same
    /// rules serve scenario files, the `run` config and the API's run-time changes.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.gpus_per_prefill_engine == 0 {
            return Err((
                "gpus_per_prefill_engine",
                "GPUs per engine must be at least 1".into(),
            ));
        }
        if self.min_prefill == 0 {
            return Err((
                "min_prefill",
                "a disaggregated deployment needs at least one prefill replica".into(),
            ));
        }
        // The budget first: a maximum left out is the budget's worth of engines, and one
        // below the minimum then means the budget is short, not the maximum written.
        self.validate_decode()?;
        at_most("max_prefill", self.max_prefill, "replicas")?;
        if self.max_prefill < self.min_prefill {
            return Err((
                "max_prefill",
                format!(
                    "{} is below min_prefill {}",
                    self.max_prefill, self.min_prefill
                ),
            ));
        }
        Ok(())
    }

    /// An aggregated deployment's limits: no prefill role (its bounds are 0), the workers
    /// counted as decode. A disaggregated one always allows a prefill engine.
    pub fn is_aggregated(&self) -> bool {
        self.max_prefill == 0
    }

    /// `validate` for an aggregated deployment: one pool of workers, counted as decode, and
    /// no prefill role (its limits are 0).
    pub fn validate_aggregated(&self) -> Result<(), (&'static str, String)> {
        debug_assert_eq!((self.min_prefill, self.max_prefill), (0, 0));
        self.validate_decode()
    }

    fn validate_decode(&self) -> Result<(), (&'static str, String)> {
        at_most("gpu_budget", self.gpu_budget, "GPUs")?;
        at_most("max_decode", self.max_decode, "replicas")?;
        if self.gpus_per_decode_engine == 0 {
            return Err((
                "gpus_per_decode_engine",
                "GPUs per engine must be at least 1".into(),
            ));
        }
        if self.min_decode == 0 {
            return Err((
                "min_decode",
                "a deployment needs at least one decode replica (or aggregated worker)".into(),
            ));
        }
        let least = self.gpus(self.min_prefill, self.min_decode);
        if least > self.gpu_budget {
            let gpus = |n: u32| format!("{n} GPU{}", if n == 1 { "" } else { "s" });
            let prefill = if self.min_prefill > 0 {
                format!(
                    "{} prefill of {} each, ",
                    self.min_prefill,
                    gpus(self.gpus_per_prefill_engine)
                )
            } else {
                String::new()
            };
            return Err((
                "gpu_budget",
                format!(
                    "{} cannot hold the minimum replicas: {} ({prefill}{} decode of {} each)",
                    gpus(self.gpu_budget),
                    gpus(least),
                    self.min_decode,
                    gpus(self.gpus_per_decode_engine)
                ),
            ));
        }
        if self.max_decode < self.min_decode {
            return Err((
                "max_decode",
                format!(
                    "{} is below min_decode {}",
                    self.max_decode, self.min_decode
                ),
            ));
        }
        Ok(())
    }

    /// Clamps to per-role bounds, then shrinks both roles in proportion until the pair fits
    /// the GPU budget (never below the minimums). Returns the pair and whether anything clipped.
    pub fn clamp(&self, prefill: u32, decode: u32) -> (u32, u32, Vec<String>) {
        let mut notes = Vec::new();
        let p0 = prefill.clamp(self.min_prefill, self.max_prefill);
        let d0 = decode.clamp(self.min_decode, self.max_decode);
        if p0 != prefill {
            notes.push(format!(
                "prefill {prefill} clipped to [{}, {}]",
                self.min_prefill, self.max_prefill
            ));
        }
        if d0 != decode {
            notes.push(format!(
                "decode {decode} clipped to [{}, {}]",
                self.min_decode, self.max_decode
            ));
        }
        let (mut p, mut d) = (p0, d0);
        if self.gpus(p, d) > self.gpu_budget {
            let scale = self.gpu_budget as f64 / self.gpus(p, d) as f64;
            p = ((p as f64 * scale).floor() as u32).max(self.min_prefill);
            d = ((d as f64 * scale).floor() as u32).max(self.min_decode);
            // A role held at its minimum leaves the other to give up the rest.
            while self.gpus(p, d) > self.gpu_budget {
                let p_spare = p > self.min_prefill;
                let d_spare = d > self.min_decode;
                let p_rel = p.saturating_sub(self.min_prefill) as f64 / p0.max(1) as f64;
                let d_rel = d.saturating_sub(self.min_decode) as f64 / d0.max(1) as f64;
                if p_spare && (!d_spare || p_rel >= d_rel) {
                    p -= 1;
                } else if d_spare {
                    d -= 1;
                } else {
                    break; // only when the minimums themselves exceed the budget (rejected by validation)
                }
            }
            // Hand back the GPUs that flooring left unused, to the role that lost more.
            loop {
                let p_short = p0.saturating_sub(p) as f64 / p0.max(1) as f64;
                let d_short = d0.saturating_sub(d) as f64 / d0.max(1) as f64;
                let try_p = p_short >= d_short && p < p0 && self.gpus(p + 1, d) <= self.gpu_budget;
                let try_d = d < d0 && self.gpus(p, d + 1) <= self.gpu_budget;
                if try_p {
                    p += 1;
                } else if try_d {
                    d += 1;
                } else if p < p0 && self.gpus(p + 1, d) <= self.gpu_budget {
                    p += 1;
                } else {
                    break;
                }
            }
            notes.push(format!(
                "GPU budget {} binds: {p0}P+{d0}D shrunk to {p}P+{d}D",
                self.gpu_budget
            ));
        }
        (p, d, notes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(budget: u32) -> Limits {
        Limits {
            min_prefill: 1,
            max_prefill: 10,
            min_decode: 1,
            max_decode: 10,
            gpu_budget: budget,
            gpus_per_prefill_engine: 1,
            gpus_per_decode_engine: 1,
        }
    }

    #[test]
    fn clamp_table() {
        // (prefill, decode, budget) -> (prefill, decode), with minimums of 1 unless noted
        let cases = [
            ((0, 0, 8), (1, 1)),
            ((20, 3, 100), (10, 3)),
            ((4, 5, 8), (4, 4)),
            ((4, 4, 8), (4, 4)),
            ((6, 2, 4), (3, 1)),
            ((1, 9, 4), (1, 3)),
        ];
        for ((p, d, b), want) in cases {
            let (gp, gd, notes) = limits(b).clamp(p, d);
            assert_eq!((gp, gd), want, "clamp({p}, {d}) with budget {b}");
            assert!(gp + gd <= b);
            assert_eq!(notes.is_empty(), (p, d) == want);
        }
    }

    #[test]
    fn validate_names_the_field() {
        let ok = limits(8);
        assert!(ok.validate().is_ok());
        let cases = [
            (
                Limits {
                    min_prefill: 0,
                    ..ok
                },
                "min_prefill",
            ),
            (
                Limits {
                    min_decode: 0,
                    ..ok
                },
                "min_decode",
            ),
            (
                Limits {
                    max_prefill: 0,
                    ..ok
                },
                "max_prefill",
            ),
            (
                Limits {
                    max_decode: 0,
                    ..ok
                },
                "max_decode",
            ),
            (
                Limits {
                    gpu_budget: 1,
                    ..ok
                },
                "gpu_budget",
            ),
            (
                Limits {
                    gpus_per_decode_engine: 0,
                    ..ok
                },
                "gpus_per_decode_engine",
            ),
            (
                Limits {
                    gpu_budget: MAX_REPLICAS + 1,
                    ..ok
                },
                "gpu_budget",
            ),
            (
                Limits {
                    gpu_budget: MAX_REPLICAS,
                    max_prefill: MAX_REPLICAS + 1,
                    ..ok
                },
                "max_prefill",
            ),
            (
                Limits {
                    gpu_budget: MAX_REPLICAS,
                    max_decode: MAX_REPLICAS + 1,
                    ..ok
                },
                "max_decode",
            ),
        ];
        for (l, field) in cases {
            assert_eq!(l.validate().unwrap_err().0, field, "{l:?}");
        }
        // Aggregated: no prefill role, the workers counted as decode.
        let workers = Limits {
            min_prefill: 0,
            max_prefill: 0,
            ..ok
        };
        assert_eq!(workers.validate().unwrap_err().0, "min_prefill");
        assert!(workers.validate_aggregated().is_ok());
        let none = Limits {
            min_decode: 0,
            ..workers
        };
        assert_eq!(none.validate_aggregated().unwrap_err().0, "min_decode");
        assert_eq!(
            Limits::build(12, (2, 4), (1, 1), (None, Some(2))).max_prefill,
            6
        );
        // A maximum left out is the budget's engines: 3 GPUs hold no prefill engine of 8,
        // and the budget, not the maximum nobody wrote, is named.
        let short = Limits::build(3, (8, 1), (1, 1), (None, None)).validate();
        let (field, why) = short.unwrap_err();
        assert_eq!(field, "gpu_budget");
        assert!(
            why.ends_with("9 GPUs (1 prefill of 8 GPUs each, 1 decode of 1 GPU each)"),
            "{why}"
        );
    }

    #[test]
    fn a_role_at_its_minimum_leaves_the_other_to_shrink() {
        // Found by the property test: with minimums of 2, shrinking 2P+6D to 4 GPUs in
        // proportion floors prefill back to 2, so decode must give up the rest.
        let l = Limits {
            min_prefill: 2,
            min_decode: 2,
            max_prefill: 6,
            max_decode: 6,
            ..limits(4)
        };
        let (p, d, _) = l.clamp(0, 6);
        assert_eq!((p, d), (2, 2));
    }

    #[test]
    fn clamp_respects_gpus_per_engine() {
        let l = Limits {
            gpus_per_prefill_engine: 2,
            gpus_per_decode_engine: 4,
            ..limits(16)
        };
        let (p, d, _) = l.clamp(4, 4);
        assert!(l.gpus(p, d) <= 16, "{p} {d}");
        assert!(p >= 1 && d >= 1);
    }
}

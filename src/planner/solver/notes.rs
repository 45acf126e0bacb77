//! What bound a solution's counts, as values, and how each reads in a decision's reasons.

use std::fmt;

use crate::planner::model::Router;

/// What bound a solution's counts. Kept as values and written out only for the solution a
/// decision keeps: a decision solves every step to the horizon (and a recurring peak's), so
/// most solutions are dropped, and formatting their notes cost more than some searches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SolverNote {
    /// The slowest prompts alone (ms, the spread applied) miss the TTFT target.
    SlowestPromptsMiss {
        alone_ms: f64,
    },
    PrefillBinds {
        prefill: u32,
        ttft_quantile: f64,
    },
    /// Prefill sized for the share of prompts expected to miss over the rates the forecast
    /// may see, fewer than the rate at its bound asks.
    PrefillForExpectedMisses {
        prefill: u32,
        at_bound: u32,
        /// The share expected to miss, and the share the TTFT percentile allows.
        share: f64,
        allowed: f64,
        /// How many rates the share is over (the forecast's recent errors).
        outcomes: usize,
    },
    TtftOutOfReach {
        max_prefill: u32,
    },
    DecodeBinds {
        decode: u32,
    },
    /// Decode (aggregated: the workers) sized for the last value's bound, above the
    /// forecast's, where the forecast is no clearly better than the last value.
    DecodeAtLastValuesBound {
        decode: u32,
        at_bound: u32,
        rate: f64,
        aggregated: bool,
    },
    /// Decode sized, before the forecast's errors are measured, for a ramp going on at
    /// the pace its latest interval's halves show, steeper than its steps.
    DecodeAtWithinPace {
        decode: u32,
        at_bound: u32,
        rate: f64,
        aggregated: bool,
    },
    ItlOutOfReach {
        max_decode: u32,
    },
    BudgetBinds {
        gpu_budget: u32,
        needed: (u32, u32),
        split: (u32, u32),
        /// The largest share of the load the split meets both targets for, if any.
        share: Option<f64>,
        /// Shared in proportion to the needs: no split keeps up with the whole load.
        by_need: bool,
        /// Chosen for the most requests expected to meet both targets: that share.
        expected: Option<f64>,
        /// A split expected to serve more, and that share, not moved to for what an
        /// engine's move between the roles costs while it starts.
        passed_over: Option<((u32, u32), f64)>,
    },
    AggregatedMeets {
        workers: u32,
        router: Router,
    },
    AggregatedOutOfReach {
        max_workers: u32,
        router: Router,
    },
}

impl fmt::Display for SolverNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SolverNote::SlowestPromptsMiss { alone_ms } => write!(
                f,
                "the slowest prompts ({alone_ms:.0} ms alone) miss the TTFT target whatever the replicas; sized for the rest"
            ),
            SolverNote::PrefillBinds {
                prefill,
                ttft_quantile,
            } => write!(
                f,
                "prefill {prefill}: TTFT p{:.0} target binds",
                ttft_quantile * 100.0
            ),
            SolverNote::PrefillForExpectedMisses {
                prefill,
                at_bound,
                share,
                allowed,
                outcomes,
            } => write!(
                f,
                "prefill {prefill}, not the {at_bound} the bound's rate asks: over the rates of the forecast's last {outcomes} misses, {:.2}% of prompts expected to miss the TTFT target ({}% allowed)",
                share * 100.0,
                // 1 at p99, 0.5 at p99.5.
                (allowed * 1000.0).round() / 10.0
            ),
            SolverNote::TtftOutOfReach { max_prefill } => write!(
                f,
                "TTFT target out of reach even at max_prefill {max_prefill}"
            ),
            SolverNote::DecodeBinds { decode } => {
                write!(f, "decode {decode}: ITL target and KV capacity bind")
            }
            SolverNote::DecodeAtLastValuesBound {
                decode,
                at_bound,
                rate,
                aggregated,
            }
            | SolverNote::DecodeAtWithinPace {
                decode,
                at_bound,
                rate,
                aggregated,
            } => {
                let why = if matches!(self, SolverNote::DecodeAtWithinPace { .. }) {
                    "the ramp going on at the pace its latest interval's halves show, steeper than its steps, as"
                } else {
                    "the last value's bound, as the forecast is no clearly better than the last value and"
                };
                let (role, one) = if aggregated {
                    ("aggregated: workers", "a worker")
                } else {
                    ("decode", "an engine")
                };
                write!(
                    f,
                    "{role} {decode}, not the {at_bound} the bound's rate asks: sized for {rate:.2} req/s, {why} {one} short misses every request on it"
                )
            }
            SolverNote::ItlOutOfReach { max_decode } => {
                write!(f, "ITL target out of reach even at max_decode {max_decode}")
            }
            SolverNote::BudgetBinds {
                gpu_budget,
                needed: (p, d),
                split: (bp, bd),
                share,
                by_need,
                expected,
                passed_over,
            } => {
                if let Some(expected) = expected {
                    write!(
                        f,
                        "GPU budget {gpu_budget} binds: {p}P+{d}D needed; {bp}P+{bd}D expected to meet both targets for {:.0}% of requests at 50-100% of the planned load",
                        100.0 * expected
                    )?;
                    return match passed_over {
                        None => write!(f, ", the most of any split"),
                        Some(((op, od), more)) => write!(
                            f,
                            "; {op}P+{od}D, {:.0}%, not moved to: an engine moved between the roles leaves one short while it starts, which costs more than it gains",
                            100.0 * more
                        ),
                    };
                }
                let how = if by_need {
                    "shared in proportion to the needs, as no split keeps up with the whole load"
                } else {
                    "the rest to keep the worse latency ratio lowest"
                };
                match share {
                    Some(share) => write!(
                        f,
                        "GPU budget {gpu_budget} binds: {p}P+{d}D needed; {bp}P+{bd}D meets both targets for at least {}% of the load, no split for more ({how})",
                        // Whole per cents, rounded down (the share found is a lower bound).
                        (100.0 * share).floor() as u32
                    ),
                    None => write!(
                        f,
                        "GPU budget {gpu_budget} binds: {p}P+{d}D needed; no split meets both targets for any share of the load: {bp}P+{bd}D, {how}"
                    ),
                }
            }
            SolverNote::AggregatedMeets { workers, router } => write!(
                f,
                "aggregated: {workers} workers meet TTFT and ITL{}",
                routed(router)
            ),
            SolverNote::AggregatedOutOfReach {
                max_workers,
                router,
            } => write!(
                f,
                "aggregated: targets out of reach even at {max_workers} workers{}",
                routed(router)
            ),
        }
    }
}

/// What the aggregated model assumes of the router, where it is not Dynamo's default.
fn routed(router: Router) -> &'static str {
    match router {
        Router::RoundRobin => "",
        Router::Random => {
            " (router random: every worker takes its share of the prompts, busy or not)"
        }
        Router::Kv => " (router kv: prompts join a busy worker only when none is idle)",
    }
}

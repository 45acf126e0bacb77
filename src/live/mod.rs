//! The live loop: every interval, read what the deployment shows, ask the decision core,
//! write the targets. The same loop runs against Prometheus and Kubernetes (`run`) and
//! against the in-process simulator (`demo`); only the edges differ.

pub mod api;
pub mod config;
pub mod dashboard;
pub mod lease;
pub mod run;
pub mod server;
pub mod sim_edges;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tracing::{error, info, warn};

use crate::planner::sla_planner::SlaPlanner;
use crate::planner::{Decision, Observation, Policy, RoleReplicas};

/// A failed read or write, with a low-cardinality label for counting.
#[derive(Debug, Clone)]
pub struct Fault {
    pub label: &'static str,
    pub message: String,
}

pub use crate::planner::sla_planner::PastInterval;

/// Where observations come from.
pub trait Signals {
    fn observe(
        &mut self,
        now_s: f64,
        interval_s: f64,
    ) -> impl Future<Output = Result<Observation, Fault>> + Send;

    /// The intervals of `interval_s` ending at `end_s` and the `points` before it, oldest
    /// first, as far as the source kept them: read back after an outage of the reads.
    /// A source that keeps no history has none.
    fn history(
        &mut self,
        _end_s: f64,
        _interval_s: f64,
        _points: u32,
    ) -> impl Future<Output = Result<Vec<PastInterval>, Fault>> + Send {
        std::future::ready(Ok(Vec::new()))
    }

    /// The buckets the source's latency percentiles are read through, once it has found
    /// them where it had not at start (a histogram has series only after its first
    /// request); the planner then reads its percentiles through them. `None` otherwise.
    fn latency_buckets_found(
        &mut self,
    ) -> impl Future<Output = Option<crate::planner::percentiles::LatencyPercentiles>> + Send {
        std::future::ready(None)
    }
}

/// Where replica counts go, and where the current ones are read.
pub trait Actuator {
    fn replicas(&mut self) -> impl Future<Output = Result<RoleReplicas, Fault>> + Send;
    fn apply(
        &mut self,
        prefill: u32,
        decode: u32,
        why: &str,
    ) -> impl Future<Output = Result<(), Fault>> + Send;
}

/// What the loop shows the outside (health probes, the status API).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Status {
    /// A decision exists, or the loop holds for a stated reason.
    pub ready: bool,
    pub leader: bool,
    pub advisory: bool,
    pub ticks: u64,
    /// The incident under way, if any.
    pub holding: Option<String>,
    pub errors_total: BTreeMap<String, u64>,
    pub last_observation: Option<Observation>,
    pub last_decision: Option<Decision>,
    pub last_tick_seconds: f64,
    /// Scaling paused through the API: decisions are made and shown, not written.
    pub paused: bool,
    pub limits: Option<crate::planner::Limits>,
    pub sla: Option<crate::planner::Sla>,
    /// Decisions by their binding reason (a small fixed set), since start.
    pub decisions_total: BTreeMap<String, u64>,
    /// The last ticks, oldest first, at most `HISTORY` of them.
    #[serde(skip)]
    pub history: std::collections::VecDeque<TickRecord>,
}

/// Ticks kept for `/api/v1/history` and the dashboard.
pub const HISTORY: usize = 720;

/// One tick as it happened.
#[derive(Debug, Clone, Serialize)]
pub struct TickRecord {
    pub time_s: f64,
    pub observation: Observation,
    pub decision: Decision,
    pub replicas: RoleReplicas,
    pub leader: bool,
    /// The targets were written (not advisory, not paused, leader, and they changed).
    pub wrote: bool,
}

pub type SharedStatus = Arc<Mutex<Status>>;

/// Run-time changes through the API, applied at the next tick.
#[derive(Debug, Clone, Default)]
pub struct Control {
    pub paused: bool,
    pub limits: Option<crate::planner::Limits>,
}

pub type SharedControl = Arc<Mutex<Control>>;

pub struct Loop<S, A> {
    pub planner: SlaPlanner,
    pub signals: S,
    pub actuator: A,
    pub interval_s: f64,
    pub advisory: bool,
    /// Set by leader election; `None` when election is off.
    pub leader: Option<Arc<AtomicBool>>,
    pub status: SharedStatus,
    pub control: SharedControl,
    incident: Option<&'static str>,
    /// The end of the first interval whose signals could not be read, while they cannot:
    /// the intervals from it are read back once they can (`read_back`).
    unread_since: Option<f64>,
}

/// Most intervals read back after an outage (Prometheus answers at most 11,000 points a
/// series); the forecasters remember fewer.
const MAX_READ_BACK: f64 = 10_000.0;

impl<S: Signals, A: Actuator> Loop<S, A> {
    pub fn new(
        planner: SlaPlanner,
        signals: S,
        actuator: A,
        interval_s: f64,
        advisory: bool,
        leader: Option<Arc<AtomicBool>>,
    ) -> Self {
        let status = Arc::new(Mutex::new(Status {
            advisory,
            limits: Some(planner.limits()),
            sla: Some(planner.sla()),
            ..Default::default()
        }));
        let control = Arc::new(Mutex::new(Control::default()));
        Loop {
            planner,
            signals,
            actuator,
            interval_s,
            advisory,
            leader,
            status,
            control,
            incident: None,
            unread_since: None,
        }
    }

    /// Gives the planner the intervals an outage of the reads hid, from the first unread
    /// to the one before `now_s`'s, as far as the source kept them: Prometheus may have
    /// scraped on while the planner could not query it. What it did not keep is filled by
    /// the planner (`SlaPlanner::fill_unseen`).
    async fn read_back(&mut self, now_s: f64) {
        let Some(first_end) = self.unread_since.take() else {
            return;
        };
        let last_end = now_s - self.interval_s;
        let points = ((last_end - first_end) / self.interval_s).round() + 1.0;
        if points.is_nan() || points < 1.0 {
            return;
        }
        let points = points.min(MAX_READ_BACK) as u32;
        match self
            .signals
            .history(last_end, self.interval_s, points)
            .await
        {
            Ok(past) => {
                let taken = self.planner.warm(&past, self.interval_s);
                info!(
                    message = "intervals the outage hid read back",
                    // `hidden`: intervals the planner could not read; `intervals`: how
                    // many of them Prometheus had kept (the planner fills the rest).
                    intervals = taken,
                    hidden = points
                );
            }
            Err(f) => warn!(
                message = "could not read back the intervals the outage hid; the planner fills them",
                kind = f.label,
                error = %f.message
            ),
        }
    }

    /// Counts a fault and logs it once per incident.
    fn fault(&mut self, f: &Fault) {
        let mut st = self.status.lock().expect("status lock");
        *st.errors_total.entry(f.label.to_string()).or_default() += 1;
        st.holding = Some(format!("{}: {}", f.label, f.message));
        st.ready = true;
        drop(st);
        if self.incident != Some(f.label) {
            if f.label == "kube_forbidden" {
                error!(message = "cannot scale: missing RBAC permission", kind = f.label, error = %f.message);
            } else {
                warn!(message = "holding replicas: a signal or the API is unavailable", kind = f.label, error = %f.message);
            }
            self.incident = Some(f.label);
        }
    }

    /// One decision at `now_s` (seconds; any epoch).
    pub async fn tick(&mut self, now_s: f64) {
        let started = std::time::Instant::now();
        let control = self.control.lock().expect("control lock").clone();
        if let Some(l) = control.limits {
            if l != self.planner.limits() {
                info!(
                    message = "limits changed through the API",
                    min_prefill = l.min_prefill,
                    max_prefill = l.max_prefill,
                    min_decode = l.min_decode,
                    max_decode = l.max_decode,
                    gpu_budget = l.gpu_budget
                );
                self.planner.set_limits(l);
            }
        }
        let mut clean = true;
        // The signals before the replicas: a source that advances a simulated deployment to
        // `now_s` (`demo`) must have done so before its replicas are read, or they are an
        // interval old, and replicas that started on time read as slow to start.
        let signals = self.signals.observe(now_s, self.interval_s).await;
        let replicas = match self.actuator.replicas().await {
            Ok(r) => r,
            Err(f) => {
                // Without the current replicas there is nothing safe to write: hold.
                self.fault(&f);
                self.unread_since.get_or_insert(now_s);
                return;
            }
        };
        // A source that answers with what no interval holds (a negative count or latency
        // from a custom query, a replica count past any cluster's) is a faulty signal, not a
        // load: the planner holds, as without the signal.
        let observed = signals.and_then(|mut o| {
            o.replicas = Some(replicas);
            o.validate().map(|()| o).map_err(|message| Fault {
                label: "invalid_signal",
                message,
            })
        });
        let obs = match observed {
            Ok(o) => {
                self.read_back(now_s).await;
                if let Some(found) = self.signals.latency_buckets_found().await {
                    info!(message = "latency percentiles now read through Prometheus's histogram buckets", buckets = %serde_json::to_string(&found).unwrap_or_default());
                    self.planner.read_percentiles_through(found);
                }
                o
            }
            Err(f) => {
                self.fault(&f);
                self.unread_since.get_or_insert(now_s);
                clean = false;
                Observation {
                    time_s: now_s,
                    interval_s: self.interval_s,
                    replicas: Some(replicas),
                    ..Default::default()
                }
            }
        };
        let decision = self.planner.decide(now_s, &obs);
        let leader = self
            .leader
            .as_ref()
            .is_none_or(|l| l.load(Ordering::SeqCst));
        let current = (replicas.prefill.held(), replicas.decode.held());
        info!(
            message = "decision",
            prefill = decision.prefill,
            decode = decision.decode,
            current_prefill = current.0,
            current_decode = current.1,
            requests = obs.requests.unwrap_or(f64::NAN),
            leader,
            advisory = self.advisory,
            paused = control.paused,
            reasons = %decision.reasons.join("; ")
        );
        let mut wrote = false;
        if !self.advisory
            && !control.paused
            && leader
            && (decision.prefill, decision.decode) != current
        {
            let why = decision.reasons.first().cloned().unwrap_or_default();
            match self
                .actuator
                .apply(decision.prefill, decision.decode, &why)
                .await
            {
                Ok(()) => wrote = true,
                Err(f) => {
                    self.fault(&f);
                    clean = false;
                }
            }
        }
        if clean && self.incident.take().is_some() {
            info!(message = "recovered: signals and API answer again");
        }
        let mut st = self.status.lock().expect("status lock");
        st.ticks += 1;
        st.ready = true;
        st.leader = leader;
        st.paused = control.paused;
        st.limits = Some(self.planner.limits());
        if clean {
            st.holding = None;
        }
        *st.decisions_total
            .entry(reason_class(&decision).to_string())
            .or_default() += 1;
        st.history.push_back(TickRecord {
            time_s: now_s,
            observation: obs.clone(),
            decision: decision.clone(),
            replicas,
            leader,
            wrote,
        });
        while st.history.len() > HISTORY {
            st.history.pop_front();
        }
        st.last_observation = Some(obs);
        st.last_decision = Some(decision);
        st.last_tick_seconds = started.elapsed().as_secs_f64();
    }
}

/// The decision's binding reason, from a small fixed set (a metric label).
pub fn reason_class(d: &Decision) -> &'static str {
    let all = d.reasons.join(" ");
    if all.starts_with("hold") {
        "hold"
    } else if all.contains("GPU budget") {
        "budget"
    } else if all.contains("clipped") {
        "limit"
    } else if all.contains("held at") || all.contains("stabilised") || all.contains("tolerance") {
        "stabilised"
    } else if all.contains("TTFT") && all.contains("out of reach")
        || all.contains("ITL target out of reach")
    {
        "out_of_reach"
    } else {
        "sla"
    }
}

/// Runs `tick` every interval of `clock` until `shutdown` resolves.
pub async fn drive<S: Signals, A: Actuator>(
    lp: &mut Loop<S, A>,
    period: std::time::Duration,
    clock: impl Fn() -> f64,
    shutdown: impl Future<Output = ()>,
) {
    let mut every = tokio::time::interval(period);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await; // the first tick fires at once; wait a whole interval of data first
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = every.tick() => lp.tick(clock()).await,
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Seconds since the Unix epoch: the live loop's `now`.
pub fn wall_clock() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::sla_planner::PlannerConfig;
    use crate::planner::{Limits, PolicyContext, ReplicaState, Sla};

    /// Test double: a Prometheus that answers every query with `observation`.
    struct CannedSignals(Observation);

    impl Signals for CannedSignals {
        async fn observe(&mut self, now_s: f64, interval_s: f64) -> Result<Observation, Fault> {
            Ok(Observation {
                time_s: now_s,
                interval_s,
                ..self.0.clone()
            })
        }
    }

    /// Test double: a deployment of 2P+3D that records what is written to it.
    #[derive(Default)]
    struct RecordingActuator(Vec<(u32, u32)>);

    impl Actuator for RecordingActuator {
        async fn replicas(&mut self) -> Result<RoleReplicas, Fault> {
            let ready = |n| ReplicaState {
                ready: n,
                ..Default::default()
            };
            Ok(RoleReplicas {
                prefill: ready(2),
                decode: ready(3),
            })
        }

        async fn apply(&mut self, prefill: u32, decode: u32, _why: &str) -> Result<(), Fault> {
            self.0.push((prefill, decode));
            Ok(())
        }
    }

    /// Test double: a Prometheus under 20 req/s whose queries fail at the times in `down`,
    /// and that kept its samples of them when `kept`; it records the history asked for.
    struct FlakySignals {
        down: Vec<f64>,
        kept: bool,
        asked: Vec<(f64, u32)>,
    }

    impl Signals for FlakySignals {
        async fn observe(&mut self, now_s: f64, interval_s: f64) -> Result<Observation, Fault> {
            if self.down.contains(&now_s) {
                return Err(Fault {
                    label: "prometheus_unreachable",
                    message: "connection refused".into(),
                });
            }
            Ok(Observation {
                time_s: now_s,
                interval_s,
                requests: Some(20.0 * interval_s),
                isl_mean: Some(3000.0),
                osl_mean: Some(300.0),
                ..Default::default()
            })
        }

        async fn history(
            &mut self,
            end_s: f64,
            interval_s: f64,
            points: u32,
        ) -> Result<Vec<PastInterval>, Fault> {
            self.asked.push((end_s, points));
            // As a range query: every step from `points` intervals before the end to it.
            Ok((0..=points)
                .rev()
                .map(|k| end_s - f64::from(k) * interval_s)
                .filter(|_| self.kept)
                .map(|t| PastInterval {
                    end_s: t,
                    requests: 20.0 * interval_s,
                    isl_mean: Some(3000.0),
                    osl_mean: Some(300.0),
                    ..Default::default()
                })
                .collect())
        }
    }

    fn test_ctx() -> PolicyContext {
        PolicyContext::new(
            &crate::profile::Profile::embedded_default(),
            Sla {
                ttft_ms: 200.0,
                itl_ms: 10.0,
            },
            Limits::build(16, (1, 1), (1, 1), (None, None)),
            60.0,
            60.0,
        )
    }

    #[tokio::test]
    async fn the_intervals_an_outage_of_the_reads_hid_are_read_back() {
        for kept in [true, false] {
            let signals = FlakySignals {
                down: vec![360.0, 420.0, 480.0],
                kept,
                asked: Vec::new(),
            };
            let planner = SlaPlanner::new(test_ctx(), PlannerConfig::default());
            let mut lp = Loop::new(
                planner,
                signals,
                RecordingActuator::default(),
                60.0,
                false,
                None,
            );
            for minute in 1..=9 {
                lp.tick(60.0 * f64::from(minute)).await;
            }
            // Asked once, at 540 s, for the three intervals ending 360 to 480 s.
            assert_eq!(lp.signals.asked, vec![(480.0, 3)]);
            let st = lp.status.lock().unwrap().clone();
            assert_eq!(st.errors_total.get("prometheus_unreachable"), Some(&3));
            let reasons = st.last_decision.expect("a decision").reasons;
            let filled = reasons
                .iter()
                .any(|r| r.starts_with("no interval seen for 180s"));
            // Read back, there is no gap left for the planner to fill; not kept, it fills it.
            assert_eq!(filled, !kept, "kept {kept}: {reasons:?}");
        }
    }

    #[tokio::test]
    async fn the_demos_replicas_are_read_at_the_ticks_time() {
        // `demo`'s edges advance the simulated deployment when the signals are read: read
        // after them, the replicas are the tick's own, so replicas that start in the
        // scenario's cold start are seen to (read before, they were an interval old: a
        // replica not quite ready at one tick was seen ready two ticks later, and the
        // planner took it for slow to start).
        let sc = crate::scenario::load("sin-5-45", &crate::scenario::Overrides::default())
            .expect("a shipped scenario");
        let edges = sim_edges::SimEdges::of_scenario(&sc);
        let planner = SlaPlanner::new(test_ctx(), sc.file.planner);
        let mut lp = Loop::new(planner, edges.clone(), edges, 60.0, false, None);
        let mut grew = false;
        for minute in 1..=30 {
            // Ticks a wall clock drives come a little early or late.
            let jitter_s = if minute % 2 == 1 { 0.5 } else { 0.0 };
            let now_s = 60.0 * f64::from(minute) + jitter_s;
            lp.tick(now_s).await;
            let st = lp.status.lock().unwrap().clone();
            let seen = st.last_observation.and_then(|o| o.replicas).unwrap();
            grew |= seen.prefill.ready > 1;
            let reasons = st.last_decision.expect("a decision").reasons;
            assert!(
                !reasons.iter().any(|r| r.contains("cold start planned as")),
                "at {now_s}s: {reasons:?}"
            );
        }
        assert!(grew, "the ramp started replicas");
    }

    #[tokio::test]
    async fn a_signal_no_interval_can_hold_is_a_fault_and_the_loop_holds() {
        let planner = SlaPlanner::new(test_ctx(), PlannerConfig::default());
        // A custom request-count query that went negative (a rate of a gauge, say).
        let broken = Observation {
            requests: Some(-120.0),
            isl_mean: Some(3000.0),
            osl_mean: Some(300.0),
            ..Default::default()
        };
        let mut lp = Loop::new(
            planner,
            CannedSignals(broken),
            RecordingActuator::default(),
            60.0,
            false,
            None,
        );
        lp.tick(60.0).await;
        let st = lp.status.lock().unwrap().clone();
        assert_eq!(st.errors_total.get("invalid_signal"), Some(&1), "{st:?}");
        let holding = st.holding.unwrap_or_default();
        assert!(
            holding.starts_with("invalid_signal: requests: must be a number >= 0"),
            "{holding}"
        );
        let d = st.last_decision.expect("a decision");
        assert_eq!((d.prefill, d.decode), (2, 3), "{d:?}");
        assert!(
            lp.actuator.0.is_empty(),
            "nothing written: {:?}",
            lp.actuator.0
        );
    }
}

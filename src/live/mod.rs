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

/// Where observations come from.
pub trait Signals {
    fn observe(
        &mut self,
        now_s: f64,
        interval_s: f64,
    ) -> impl Future<Output = Result<Observation, Fault>> + Send;
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
}

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
        let replicas = match self.actuator.replicas().await {
            Ok(r) => r,
            Err(f) => {
                // Without the current replicas there is nothing safe to write: hold.
                self.fault(&f);
                return;
            }
        };
        // A source that answers with what no interval holds (a negative count or latency
        // from a custom query, a replica count past any cluster's) is a faulty signal, not a
        // load: the planner holds, as without the signal.
        let observed = self
            .signals
            .observe(now_s, self.interval_s)
            .await
            .and_then(|mut o| {
                o.replicas = Some(replicas);
                o.validate().map(|()| o).map_err(|message| Fault {
                    label: "invalid_signal",
                    message,
                })
            });
        let obs = match observed {
            Ok(o) => o,
            Err(f) => {
                self.fault(&f);
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

    #[tokio::test]
    async fn a_signal_no_interval_can_hold_is_a_fault_and_the_loop_holds() {
        let profile = crate::profile::Profile::embedded_default();
        let ctx = PolicyContext::new(
            &profile,
            Sla {
                ttft_ms: 200.0,
                itl_ms: 10.0,
            },
            Limits::build(16, (1, 1), (1, 1), (None, None)),
            60.0,
            60.0,
        );
        let planner = SlaPlanner::new(ctx, PlannerConfig::default());
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

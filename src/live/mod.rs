//! The live loop: every interval, read what the deployment shows, ask the decision core,
//! write the targets. The same loop runs against Prometheus and Kubernetes (`run`) and
//! against the in-process simulator (`demo`); only the edges differ.

pub mod config;
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
}

pub type SharedStatus = Arc<Mutex<Status>>;

pub struct Loop<S, A> {
    pub planner: SlaPlanner,
    pub signals: S,
    pub actuator: A,
    pub interval_s: f64,
    pub advisory: bool,
    /// Set by leader election; `None` when election is off.
    pub leader: Option<Arc<AtomicBool>>,
    pub status: SharedStatus,
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
            ..Default::default()
        }));
        Loop {
            planner,
            signals,
            actuator,
            interval_s,
            advisory,
            leader,
            status,
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
        let mut clean = true;
        let replicas = match self.actuator.replicas().await {
            Ok(r) => r,
            Err(f) => {
                // Without the current replicas there is nothing safe to write: hold.
                self.fault(&f);
                return;
            }
        };
        let obs = match self.signals.observe(now_s, self.interval_s).await {
            Ok(mut o) => {
                o.replicas = Some(replicas);
                o
            }
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
        let current = (
            replicas.prefill.ready + replicas.prefill.starting,
            replicas.decode.ready + replicas.decode.starting,
        );
        info!(
            message = "decision",
            prefill = decision.prefill,
            decode = decision.decode,
            current_prefill = current.0,
            current_decode = current.1,
            requests = obs.requests.unwrap_or(f64::NAN),
            leader,
            advisory = self.advisory,
            reasons = %decision.reasons.join("; ")
        );
        if !self.advisory && leader && (decision.prefill, decision.decode) != current {
            let why = decision.reasons.first().cloned().unwrap_or_default();
            if let Err(f) = self
                .actuator
                .apply(decision.prefill, decision.decode, &why)
                .await
            {
                self.fault(&f);
                clean = false;
            }
        }
        if clean && self.incident.take().is_some() {
            info!(message = "recovered: signals and API answer again");
        }
        let mut st = self.status.lock().expect("status lock");
        st.ticks += 1;
        st.ready = true;
        st.leader = leader;
        if clean {
            st.holding = None;
        }
        st.last_observation = Some(obs);
        st.last_decision = Some(decision);
        st.last_tick_seconds = started.elapsed().as_secs_f64();
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
            _ = &mut shutdown => {
                info!(message = "shutting down");
                return;
            }
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

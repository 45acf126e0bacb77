//! The loop's edges over the in-process simulator (`demo`): observations as Prometheus
//! would show them, replica counts straight into the simulated deployment.

use std::sync::{Arc, Mutex};

use super::{Actuator, Fault, Signals};
use crate::planner::{Observation, RoleReplicas};
use crate::sim::Deployment;

/// A simulated deployment advanced to simulated time `now_s` on every call.
#[derive(Clone)]
pub struct SimEdges {
    pub deployment: Arc<Mutex<Deployment>>,
}

impl SimEdges {
    pub fn new(deployment: Deployment) -> SimEdges {
        SimEdges {
            deployment: Arc::new(Mutex::new(deployment)),
        }
    }

    /// A scenario's deployment and workload, run for as long as it is advanced (`demo`).
    pub fn of_scenario(sc: &crate::scenario::Scenario) -> SimEdges {
        let mut sim = sc.sim.clone();
        sim.duration_s = f64::INFINITY;
        SimEdges::new(Deployment::new(
            sim,
            &sc.profile,
            sc.requests.clone(),
            sc.sim.initial,
        ))
    }
}

impl Signals for SimEdges {
    async fn observe(&mut self, now_s: f64, interval_s: f64) -> Result<Observation, Fault> {
        let mut d = self.deployment.lock().expect("simulator lock");
        d.advance_to(now_s, None);
        Ok(d.observe(interval_s))
    }
}

impl Actuator for SimEdges {
    async fn replicas(&mut self) -> Result<RoleReplicas, Fault> {
        Ok(self
            .deployment
            .lock()
            .expect("simulator lock")
            .replica_states())
    }

    async fn apply(&mut self, prefill: u32, decode: u32, _why: &str) -> Result<(), Fault> {
        self.deployment
            .lock()
            .expect("simulator lock")
            .apply_targets(prefill, decode);
        Ok(())
    }
}

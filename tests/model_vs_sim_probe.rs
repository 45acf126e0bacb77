mod common;
use sla_planner::planner::baselines::StaticPolicy;
use sla_planner::planner::model::prefill_ttft_ms;
use sla_planner::profile::Profile;
use sla_planner::sim::simulate;
use sla_planner::workload::{LengthDist, RateShape, SyntheticSpec};
#[test]
fn probe() {
    let profile = Profile::embedded_default();
    let pm = profile.prefill_model();
    for (p, rate) in [
        (1u32, 5.0),
        (1, 10.0),
        (2, 20.0),
        (4, 40.0),
        (4, 45.0),
        (6, 45.0),
        (3, 30.0),
    ] {
        let spec = SyntheticSpec {
            rate: RateShape::Constant { rps: rate },
            duration_s: 600.0,
            isl: LengthDist::Fixed(3000),
            osl: LengthDist::Fixed(20),
        };
        let req = spec.generate(5);
        let cfg = common::sim_config(&profile, p, 8, 600.0);
        let res = simulate(&cfg, &profile, &req, &mut StaticPolicy::new(p, 8), None);
        let mut t: Vec<f64> = res.outcomes.iter().map(|o| o.ttft_ms as f64).collect();
        t.sort_by(f64::total_cmp);
        let q = |x: f64| t[((x * t.len() as f64) as usize).min(t.len() - 1)];
        let mean = t.iter().sum::<f64>() / t.len() as f64;
        let s = pm.ttft_ms(3000.0);
        let m1 = prefill_ttft_ms(rate, p, s, 0.99, 1.0);
        let m5 = prefill_ttft_ms(rate, p, s, 0.99, 0.5);
        let m9 = prefill_ttft_ms(rate, p, s, 0.9, 1.0);
        eprintln!("P={p} rate={rate}: sim mean {mean:.1} p90 {:.1} p99 {:.1} | model v=1 mean {:.1} p99 {:.1} p90 {:.1} | v=.5 p99 {:.1}", q(0.9), q(0.99), m1.1, m1.0, m9.0, m5.0);
    }
}

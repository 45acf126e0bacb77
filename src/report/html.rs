//! `report.html`: one self-contained page (inline CSS and SVG, no scripts, no network).

use std::fmt::Write;

use super::svg::{LineChart, Series, CHART_CSS};
use super::Summary;
use crate::sim::SimResult;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn series_of(
    r: &SimResult,
    name: String,
    f: impl Fn(&crate::sim::IntervalRow) -> Option<f64>,
    step: bool,
) -> Series {
    Series {
        name,
        points: r
            .timeline
            .iter()
            .map(|row| (row.observation.time_s, f(row).unwrap_or(f64::NAN)))
            .collect(),
        step,
        dashed: false,
    }
}

pub fn render_html(summary: &Summary, results: &[SimResult]) -> String {
    let sc = &summary.scenario;
    let mut charts = Vec::new();
    if let Some(first) = results.first() {
        charts.push(LineChart {
            title: "Load: arrivals per second in each interval".into(),
            x_label: "time (s)".into(),
            y_label: "requests/s".into(),
            series: vec![series_of(
                first,
                "arrivals/s".into(),
                |row| {
                    row.observation
                        .requests
                        .map(|n| n / row.observation.interval_s)
                },
                false,
            )],
            ..Default::default()
        });
    }
    let held = |s: crate::planner::ReplicaState| s.held() as f64;
    type Role = fn(crate::planner::RoleReplicas) -> crate::planner::ReplicaState;
    let roles: [(&str, Role); 2] = [("Prefill", |x| x.prefill), ("Decode", |x| x.decode)];
    for (role, state) in roles {
        charts.push(LineChart {
            title: format!("{role} replicas (ready + starting) at each decision"),
            x_label: "time (s)".into(),
            y_label: "replicas".into(),
            series: results
                .iter()
                .map(|r| {
                    series_of(
                        r,
                        r.policy.clone(),
                        |row| row.observation.replicas.map(|x| held(state(x))),
                        true,
                    )
                })
                .collect(),
            ..Default::default()
        });
    }
    charts.push(LineChart {
        title: "TTFT p90 per interval against the SLA".into(),
        x_label: "time (s)".into(),
        y_label: "ms (log)".into(),
        series: results
            .iter()
            .map(|r| {
                series_of(
                    r,
                    r.policy.clone(),
                    |row| row.observation.ttft_ms.and_then(|l| l.p90),
                    false,
                )
            })
            .collect(),
        reference: vec![(
            summary.sla.ttft_ms,
            format!("SLA {} ms", summary.sla.ttft_ms),
        )],
        log_y: true,
    });
    charts.push(LineChart {
        title: "ITL p90 per interval against the SLA".into(),
        x_label: "time (s)".into(),
        y_label: "ms (log)".into(),
        series: results
            .iter()
            .map(|r| {
                series_of(
                    r,
                    r.policy.clone(),
                    |row| row.observation.itl_ms.and_then(|l| l.p90),
                    false,
                )
            })
            .collect(),
        reference: vec![(summary.sla.itl_ms, format!("SLA {} ms", summary.sla.itl_ms))],
        log_y: true,
    });
    charts.push(LineChart {
        title: "SLO attainment of the requests finishing in each interval".into(),
        x_label: "time (s)".into(),
        y_label: "share".into(),
        series: results
            .iter()
            .map(|r| series_of(r, r.policy.clone(), |row| row.attainment, false))
            .collect(),
        reference: vec![(0.99, "99%".into())],
        log_y: false,
    });

    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>sla-planner dry run: {}</title><style>\
body {{ font: 14px system-ui, sans-serif; margin: 24px auto; max-width: 1100px; color: #222; }}\
table {{ border-collapse: collapse; margin: 12px 0; }} th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}\
th:first-child, td:first-child {{ text-align: left; }} th {{ background: #f3f3f3; }} .note {{ color: #555; }}\
{CHART_CSS}</style></head><body>",
        esc(&sc.name)
    );
    let _ = write!(
        h,
        "<h1>Dry run: {}</h1><p>{}</p>",
        esc(&sc.name),
        esc(&sc.description)
    );
    let _ = write!(
        h,
        "<p class=\"note\">Workload: {} ({} requests over {:.0} s). Profile: {}. SLA: TTFT &le; {} ms and mean ITL &le; {} ms. \
Decision every {:.0} s; cold start {:.0} s; GPU budget {}.</p>",
        esc(&sc.workload),
        sc.requests,
        sc.duration_s,
        esc(&sc.profile),
        summary.sla.ttft_ms,
        summary.sla.itl_ms,
        sc.interval_s,
        sc.startup_s,
        sc.gpu_budget
    );
    for n in &sc.notes {
        let _ = write!(h, "<p class=\"note\">{}</p>", esc(n));
    }
    h.push_str("<h2>Comparison</h2><table id=\"comparison\"><tr><th>policy</th><th>SLO attainment</th><th>TTFT att.</th><th>ITL att.</th><th>GPU-hours</th><th>goodput/GPU-h</th><th>TTFT p50/p90/p99 ms</th><th>ITL p50/p90/p99 ms</th><th>max P</th><th>max D</th><th>changes (reversed)</th><th>rejected</th></tr>");
    for p in &summary.policies {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{:.2}%</td><td>{:.2}%</td><td>{:.2}%</td><td>{:.2}</td><td>{:.0}</td><td>{:.0} / {:.0} / {:.0}</td><td>{:.2} / {:.2} / {:.2}</td><td>{}</td><td>{}</td><td>{} ({})</td><td>{}</td></tr>",
            esc(&p.name),
            p.slo_attainment * 100.0,
            p.ttft_attainment * 100.0,
            p.itl_attainment * 100.0,
            p.gpu_hours,
            p.goodput_per_gpu_hour,
            p.ttft_ms.p50,
            p.ttft_ms.p90,
            p.ttft_ms.p99,
            p.itl_ms.p50,
            p.itl_ms.p90,
            p.itl_ms.p99,
            p.max_prefill,
            p.max_decode,
            p.scale_changes,
            p.reversals,
            p.rejected
        );
    }
    h.push_str("</table><h2>Over time</h2>");
    for c in charts {
        h.push_str("<div>");
        h.push_str(&c.render());
        h.push_str("</div>");
    }
    h.push_str("</body></html>\n");
    h
}

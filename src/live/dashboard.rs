//! The dashboard: one page, its script and styles compiled into the binary (no CDN, works
//! offline). It polls `/api/v1/history` and draws SVG charts in the style of the dry-run
//! report (`report::svg::CHART_CSS` and `PALETTE`).

use crate::report::svg::{CHART_CSS, PALETTE};

const SCRIPT: &str = include_str!("dashboard.js");

pub fn page() -> String {
    let palette = serde_json::to_string(&PALETTE).expect("strings serialise");
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sla-planner</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 16px auto; max-width: 1100px; color: #222; }}
header {{ display: flex; gap: 24px; align-items: baseline; flex-wrap: wrap; }}
.pill {{ padding: 2px 8px; border-radius: 10px; background: #eef; }}
.pill.bad {{ background: #fdd; }}
table {{ border-collapse: collapse; width: 100%; }} th, td {{ border-bottom: 1px solid #ddd; padding: 3px 6px; text-align: left; vertical-align: top; }}
td.num {{ text-align: right; white-space: nowrap; }}
{CHART_CSS}
</style></head>
<body>
<header><h1>sla-planner</h1><span id="state" class="pill">connecting…</span><span id="sla"></span><span id="limits"></span></header>
<div id="charts">
<div id="chart-load"></div>
<div id="chart-ttft"></div>
<div id="chart-itl"></div>
<div id="chart-replicas-prefill"></div>
<div id="chart-replicas-decode"></div>
<div id="chart-kv"></div>
</div>
<h2>Decisions</h2>
<table id="decisions"><thead><tr><th>time</th><th>prefill</th><th>decode</th><th>reasons</th></tr></thead><tbody></tbody></table>
<p id="downloads">The kept ticks as <code>sla-planner decide</code> lines, to replay with another configuration:
<a href="/api/v1/observations" download="observations.jsonl">observations</a>,
<a href="/api/v1/decisions" download="decisions.jsonl">decisions</a>.</p>
<script>const PALETTE = {palette};</script>
<script>{SCRIPT}</script>
</body></html>
"#
    )
}

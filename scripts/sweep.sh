#!/usr/bin/env bash
# Runs the planner alone over a set of simulations and prints one line per run:
# scenario, variant, SLO attainment (%), GPU-hours, tab-separated. Two such outputs are
# compared with --compare. This is how a change to the planner is weighed before it is
# kept (docs/evaluation.md, "How a change is weighed").
#
#   scripts/sweep.sh [--bin PATH] SET... > after.tsv
#   scripts/sweep.sh --compare before.tsv after.tsv
#
# With --decisions, each line's third field is instead a digest of the run's planner
# timeline (every interval's counts, latencies and the decision's reasons): a change meant
# to leave every decision as it was (a refactor) is shown to by `diff` of two such outputs.
#
#   scripts/sweep.sh --decisions [--bin PATH] SET... > after.tsv
#
# SETs: shipped (every shipped scenario at 60 and 180 s cold starts, 22 runs), variants
# (one field changed: SLA, interval, cold start, GPUs per engine, budget; 107 runs), long
# (decisions every 120 and 300 s, eight scenarios, both cold starts; 32 runs), scale (five
# scenarios at 3 and 10 times their load and budget, 20 runs), seeds (every synthetic
# scenario over seeds 1 to 5 at both cold starts, 70 runs), replays (the real traces and
# Mooncake's synthetic one at 2, 6 and 12 copies, played at double and half speed, both
# cold starts; 48 runs), cold (every shipped scenario at 300 and 600 s cold starts
# but the four at 300 s in variants, 18 runs), shapes (the workloads in scripts/shapes/,
# not shipped, at both cold starts; 24 runs), budgets (six scenarios under budgets of 4 to
# 8 GPUs, both cold starts, but the five in variants; 55 runs), cache (Mooncake's traces
# replayed with prefix caching: the shipped conversation scenario and the synthetic trace
# at 2, 4 and 8 copies, both cold starts; 8 runs), aggregated (aggregated workers on
# Mooncake's traces with and without prefix caching, and long prompts with short answers,
# both cold starts; 20 runs), routers (a frontend routing in turn or at random, the planner
# told so: the shipped sinusoid and real traces, and aggregated workers; 32 runs),
# histograms (every shipped scenario at both cold starts, its percentiles read through
# Dynamo's default histogram buckets, the planner told so; 22 runs), tokens (every shipped
# scenario at both cold starts, its ITL observed per token gap as Dynamo's frontend
# observes it, with exact percentiles and through Dynamo's buckets; 44 runs), light (the
# real traces at one copy and sin-5-45 at 0.2 to 2 req/s, both cold starts; 10 runs).
# Needs python3 to read the JSON.
set -euo pipefail
caller=$PWD
cd "$(dirname "$0")/.."
# A path as the caller gave it, from the caller's directory.
from_caller() { [[ $1 == /* ]] && echo "$1" || echo "$caller/$1"; }

compare() {
    python3 - "$1" "$2" <<'PY'
import sys

def fail(message):
    print(message, file=sys.stderr)
    sys.exit(2)

def read(path):
    runs = {}
    try:
        lines = open(path).read().splitlines()
    except OSError as e:
        fail(f"{path}: {e.strerror}")
    for n, line in enumerate(lines, 1):
        fields = line.split("\t")
        if len(fields) != 4:
            fail(f"{path}:{n}: expected 4 tab-separated fields, got {len(fields)}")
        if (fields[0], fields[1]) in runs:
            fail(f"{path}:{n}: {fields[0]}, {fields[1]}: a run listed twice")
        try:
            runs[(fields[0], fields[1])] = (float(fields[2]), float(fields[3]))
        except ValueError:
            fail(f"{path}:{n}: attainment and GPU-hours must be numbers")
    return runs

before, after = read(sys.argv[1]), read(sys.argv[2])
missing = sorted(set(before) ^ set(after))
if missing:
    fail(f"the two sweeps differ in their runs, e.g. {missing[0]}")
d_att = d_gpu = 0.0
up = down = 0
for key in sorted(before):
    (a0, g0), (a1, g1) = before[key], after[key]
    d_att += a1 - a0
    d_gpu += g1 - g0
    up += a1 > a0 + 0.005
    down += a1 < a0 - 0.005
    if abs(a1 - a0) > 0.005 or abs(g1 - g0) > 0.005:
        print(f"{key[0]:<19} {key[1]:<40} {a0:6.2f}% {g0:6.2f} -> {a1:6.2f}% {g1:6.2f}")
print(f"{len(before)} runs: attainment {d_att:+.2f} points in sum, GPU-hours {d_gpu:+.2f}; {up} up, {down} down")
PY
}

if [[ ${1:-} == --compare ]]; then
    [[ $# -eq 3 ]] || { echo "usage: $0 --compare BEFORE.tsv AFTER.tsv" >&2; exit 2; }
    compare "$(from_caller "$2")" "$(from_caller "$3")"
    exit
fi

decisions=0
if [[ ${1:-} == --decisions ]]; then
    decisions=1
    shift
fi
bin=target/release/sla-planner
if [[ ${1:-} == --bin ]]; then
    [[ $# -ge 2 ]] || { echo "usage: $0 [--decisions] [--bin PATH] SET..." >&2; exit 2; }
    bin=$(from_caller "$2")
    shift 2
fi
[[ $# -ge 1 ]] || { echo "usage: $0 [--decisions] [--bin PATH] shipped|variants|long|cold|scale|seeds|replays|shapes|budgets|cache|aggregated|routers|histograms|tokens|light..." >&2; exit 2; }
[[ -x $bin ]] || { echo "$bin: not an executable (cargo build --release, or --bin PATH)" >&2; exit 2; }
# Traces the sets write for themselves (scripts/shapes/*.py), gone when the sweep ends.
generated=$(mktemp -d)
trap 'rm -rf "$generated"' EXIT

# Every shipped scenario, and the synthetic ones among them.
shipped=(sin-5-45 sin-5-45-aggregated sin-5-45-budget8 sin-5-45-2h azure-conv-x8 azure-code-x8
    mooncake-conv-x4 flash-crowd step-10-30 diurnal-2-40 bursts-10-40)
synthetic=(sin-5-45 sin-5-45-aggregated sin-5-45-budget8 flash-crowd step-10-30 diurnal-2-40 bursts-10-40)

# Eight scenarios decided every IV seconds, for each IV given, at both cold starts.
decisions_every() {
    local iv sc
    for iv in "$@"; do
        for sc in azure-conv-x8 azure-code-x8 mooncake-conv-x4 sin-5-45 diurnal-2-40 \
            flash-crowd step-10-30 bursts-10-40; do
            echo "$sc|decisions every $iv s|--set deployment.interval_s=$iv"
            echo "$sc|decisions every $iv s, cold start 180 s|--set deployment.interval_s=$iv --startup-s 180"
        done
    done
}

# One run per line: scenario|variant|simulate's arguments beyond the scenario.
runs() {
    local set=$1 sc st iv k s pair
    case $set in
    shipped)
        for sc in "${shipped[@]}"; do
            for st in 60 180; do echo "$sc|cold start $st s|--startup-s $st"; done
        done
        ;;
    variants)
        cat <<'EOF'
azure-conv-x8|ttft 100 ms|--set sla.ttft_ms=100
azure-conv-x8|ttft 500 ms|--set sla.ttft_ms=500
azure-conv-x8|itl 7 ms|--set sla.itl_ms=7
azure-conv-x8|itl 20 ms|--set sla.itl_ms=20
azure-conv-x8|interval 30 s|--set deployment.interval_s=30
azure-conv-x8|cold start 300 s|--startup-s 300
azure-conv-x8|2 GPUs per prefill engine|--set deployment.gpus_per_prefill_engine=2
azure-code-x8|ttft 300 ms|--set sla.ttft_ms=300
azure-code-x8|ttft 500 ms|--set sla.ttft_ms=500
azure-code-x8|itl 7 ms|--set sla.itl_ms=7
azure-code-x8|itl 20 ms|--set sla.itl_ms=20
azure-code-x8|interval 30 s|--set deployment.interval_s=30
azure-code-x8|cold start 300 s|--startup-s 300
mooncake-conv-x4|ttft 500 ms|--set sla.ttft_ms=500
mooncake-conv-x4|itl 7 ms|--set sla.itl_ms=7
mooncake-conv-x4|itl 20 ms|--set sla.itl_ms=20
mooncake-conv-x4|interval 30 s|--set deployment.interval_s=30
mooncake-conv-x4|cold start 300 s|--startup-s 300
diurnal-2-40|itl 20 ms|--set sla.itl_ms=20
diurnal-2-40|cold start 300 s|--startup-s 300
diurnal-2-40|interval 30 s|--set deployment.interval_s=30
azure-conv-x8|budget 5|--gpu-budget 5
azure-conv-x8|budget 5, cold start 180 s|--gpu-budget 5 --startup-s 180
bursts-10-40|budget 6|--gpu-budget 6
bursts-10-40|budget 6, cold start 180 s|--gpu-budget 6 --startup-s 180
sin-5-45|budget 5, cold start 180 s|--gpu-budget 5 --startup-s 180
azure-code-x8|4 copies, cold start 180 s|--set workload.trace.transform.replicate=4 --startup-s 180
EOF
        decisions_every 5 10 15 30 180
        ;;
    long)
        # Decisions further apart than a forecast step (180 s is in variants).
        decisions_every 120 300
        ;;
    cold)
        # Cold starts of five and ten minutes (a large model's weights loading); the four
        # runs at 300 s that variants holds are left to it, so the sets can be run together.
        for sc in "${shipped[@]}"; do
            for st in 300 600; do
                case "$sc $st" in
                "azure-conv-x8 300" | "azure-code-x8 300" | "mooncake-conv-x4 300" | "diurnal-2-40 300") ;;
                *) echo "$sc|cold start $st s|--startup-s $st" ;;
                esac
            done
        done
        ;;
    scale)
        for k in 3 10; do for st in 60 180; do
            for sc in azure-code-x8 azure-conv-x8 diurnal-2-40 mooncake-conv-x4 sin-5-45; do
                echo "$sc|${k}x, cold start $st s|--load-scale $k --startup-s $st"
            done
        done; done
        ;;
    seeds)
        # The bursts' placement has a seed of its own: it moves with the arrivals'.
        for sc in "${synthetic[@]}"; do for st in 60 180; do for s in 1 2 3 4 5; do
            local extra=""
            [[ $sc == bursts-10-40 ]] && extra=" --set workload.synthetic.rate.seed=$s"
            echo "$sc|seed $s, cold start $st s|--seed $s --startup-s $st$extra"
        done; done; done
        ;;
    replays)
        # The real traces (and Mooncake's synthetic one) replayed at other loads and paces:
        # 2, 6 or 12 copies at the default shift (the mean gap over the copies, so their
        # arrivals nearly coincide: burstier than the shipped scenarios' spread copies),
        # Mooncake's 3 s timestamps as they are, played at double and half speed, under a
        # budget that does not bind. Each keeps its scenario's SLA.
        local traces=../shared/data/traces
        for pair in azure-conv-x8:azure_llm_2023_conv.csv azure-code-x8:azure_llm_2023_code.csv \
            mooncake-conv-x4:mooncake_conversation.jsonl mooncake-conv-x4:mooncake_synthetic.jsonl; do
            sc=${pair%%:*}
            for k in 2 6 12; do for s in 0.5 2; do for st in 60 180; do
                echo "$sc|${pair#*:} x$k, time scale $s, cold start $st s|--trace $traces/${pair#*:} --replicate $k --time-scale $s --gpu-budget 64 --startup-s $st"
            done; done; done
        done
        ;;
    budgets)
        # Budgets of 4 to 8 GPUs, where most of these six need more: which split of a budget
        # that binds serves the most. The five runs variants holds are left to it.
        for sc in sin-5-45 azure-conv-x8 azure-code-x8 mooncake-conv-x4 bursts-10-40 diurnal-2-40; do
            for b in 4 5 6 7 8; do for st in 60 180; do
                case "$sc $b $st" in
                "azure-conv-x8 5 60" | "azure-conv-x8 5 180" | "bursts-10-40 6 60" | "bursts-10-40 6 180" | "sin-5-45 5 180") ;;
                *) echo "$sc|budget $b, cold start $st s|--gpu-budget $b --startup-s $st" ;;
                esac
            done; done
        done
        ;;
    cache)
        # Mooncake's traces replayed with prefix caching: the shipped conversation scenario,
        # and the synthetic trace at 2, 4 and 8 copies (docs/evaluation.md, "Prefix caching").
        for st in 60 180; do
            echo "mooncake-conv-x4|prefix caching, cold start $st s|--set deployment.prefix_cache={} --startup-s $st"
            for k in 2 4 8; do
                echo "mooncake-conv-x4|mooncake_synthetic.jsonl x$k, prefix caching, cold start $st s|--trace ../shared/data/traces/mooncake_synthetic.jsonl --replicate $k --set deployment.prefix_cache={} --startup-s $st"
            done
        done
        ;;
    aggregated)
        # Aggregated workers beyond sin-5-45-aggregated: Mooncake's traces (prompts chunked
        # 2,048 tokens at a time into the decode steps, as that scenario's), with and without
        # prefix caching, and long prompts with short answers, whose lives are shorter than
        # a prompt's prefill (docs/evaluation.md, "Aggregated workers"). The planner is told
        # the simulator's router, as sin-5-45-aggregated tells it.
        local agg="--set deployment.mode=aggregated --set deployment.prefill_token_budget=2048 --set planner.router=kv"
        local short="--set workload.synthetic.isl=7000 --set workload.synthetic.osl=50 --set sla.ttft_ms=1000"
        for st in 60 180; do
            for cache in "" " --set deployment.prefix_cache={}"; do
                local named=${cache:+, prefix caching}
                echo "mooncake-conv-x4|aggregated$named, cold start $st s|$agg$cache --startup-s $st"
                for k in 2 4 8; do
                    echo "mooncake-conv-x4|mooncake_synthetic.jsonl x$k, aggregated$named, cold start $st s|--trace ../shared/data/traces/mooncake_synthetic.jsonl --replicate $k $agg$cache --startup-s $st"
                done
            done
            echo "sin-5-45-aggregated|ISL 7000, OSL 50, cold start $st s|$short --startup-s $st"
            echo "sin-5-45-aggregated|4 req/s, ISL 7000, OSL 50, cold start $st s|$short --set workload.synthetic.rate={\"shape\":\"constant\",\"rps\":4} --startup-s $st"
        done
        ;;
    routers)
        # A frontend that routes in turn or at random (deployment.router; the other sets
        # route to the least loaded), the planner told so: sin-5-45 and the real-trace
        # scenarios, and aggregated workers on sin-5-45, Mooncake's traces and long prompts
        # with short answers, both cold starts (docs/evaluation.md, "Other routers").
        local agg="--set deployment.mode=aggregated --set deployment.prefill_token_budget=2048"
        local short="--set workload.synthetic.isl=7000 --set workload.synthetic.osl=50 --set sla.ttft_ms=1000"
        for router in round-robin random; do
            local told="--set deployment.router=$router --set planner.router=$router"
            for st in 60 180; do
                local run="router $router, cold start $st s"
                for sc in sin-5-45 azure-conv-x8 azure-code-x8 mooncake-conv-x4 sin-5-45-aggregated; do
                    echo "$sc|$run|$told --startup-s $st"
                done
                echo "mooncake-conv-x4|aggregated, $run|$agg $told --startup-s $st"
                echo "mooncake-conv-x4|mooncake_synthetic.jsonl x4, aggregated, $run|--trace ../shared/data/traces/mooncake_synthetic.jsonl --replicate 4 $agg $told --startup-s $st"
                echo "sin-5-45-aggregated|4 req/s, ISL 7000, OSL 50, $run|$short --set workload.synthetic.rate={\"shape\":\"constant\",\"rps\":4} $told --startup-s $st"
            done
        done
        ;;
    histograms)
        # Percentiles as a live deployment reads them: histogram_quantile over Dynamo's
        # default buckets (docs/evaluation.md, "Percentiles read through histogram buckets").
        for sc in "${shipped[@]}"; do
            for st in 60 180; do
                echo "$sc|Dynamo's buckets, cold start $st s|--set deployment.latency_percentiles=dynamo --startup-s $st"
            done
        done
        ;;
    tokens)
        # ITL observed per token gap, as Dynamo's frontend feeds its histogram (docs/
        # evaluation.md, "ITL observed per token gap"); through Dynamo's buckets as well,
        # as a live deployment's readings are made.
        for sc in "${shipped[@]}"; do
            for st in 60 180; do
                echo "$sc|per token gap, cold start $st s|--set deployment.itl_observed=per_token --startup-s $st"
                echo "$sc|per token gap, Dynamo's buckets, cold start $st s|--set deployment.itl_observed=per_token --set deployment.latency_percentiles=dynamo --startup-s $st"
            done
        done
        ;;
    light)
        # Light loads, where one engine more doubles a role (docs/evaluation.md, "Beyond the
        # shipped scenarios"): the real traces at one copy, each with its scenario's SLA and
        # budget, and sin-5-45's sinusoid at 0.2 to 2 req/s rather than 5 to 45.
        for st in 60 180; do
            for sc in azure-conv-x8 azure-code-x8 mooncake-conv-x4; do
                echo "$sc|one copy, cold start $st s|--set workload.trace.transform.replicate=1 --startup-s $st"
            done
            echo "mooncake-conv-x4|mooncake_synthetic.jsonl x1, cold start $st s|--trace ../shared/data/traces/mooncake_synthetic.jsonl --replicate 1 --startup-s $st"
            echo "sin-5-45|0.2 to 2 req/s, cold start $st s|--set workload.synthetic.rate.min_rps=0.2 --set workload.synthetic.rate.max_rps=2 --startup-s $st"
        done
        ;;
    shapes)
        # Workload shapes no shipped scenario has (scripts/shapes/README.md).
        for sc in scripts/shapes/*.yaml; do
            for st in 60 180; do echo "$sc|cold start $st s|--startup-s $st"; done
        done
        # A script writes a trace, replayed with the conversation trace's SLA and budget.
        for script in scripts/shapes/*.py; do
            name=$(basename "$script")
            python3 "$script" "$generated/$name.csv"
            for st in 60 180; do
                echo "azure-conv-x8|$name, cold start $st s|--trace $generated/$name.csv --startup-s $st"
            done
        done
        ;;
    *)
        echo "unknown set: $set (shipped, variants, long, cold, scale, seeds, replays, shapes, budgets, cache, aggregated, routers, histograms, tokens, light)" >&2
        exit 2
        ;;
    esac
}

one() {
    local scenario variant args json out digest
    IFS='|' read -r scenario variant args <<<"$1"
    if [[ $decisions == 1 ]]; then
        out=$(mktemp -d)
        # shellcheck disable=SC2086 # the arguments are words
        if ! "$bin" simulate --scenario "$scenario" $args --policy planner --out "$out" >/dev/null; then
            echo "$scenario, $variant: simulate failed (above)" >&2
            rm -rf "$out"
            return 1
        fi
        digest=$(sha256sum "$out/timeline_planner.csv" | cut -c1-16)
        rm -rf "$out"
        printf '%s\t%s\t%s\n' "$scenario" "$variant" "$digest"
        return
    fi
    # shellcheck disable=SC2086 # the arguments are words
    if ! json=$("$bin" simulate --scenario "$scenario" $args --policy planner --json); then
        echo "$scenario, $variant: simulate failed (above)" >&2
        return 1
    fi
    python3 -c '
import json, sys
p = json.load(sys.stdin)["policies"][0]
sys.stdout.write("%s\t%s\t%.2f\t%.2f\n" % (sys.argv[1], sys.argv[2], 100 * p["slo_attainment"], p["gpu_hours"]))
' "$scenario" "$variant" <<<"$json"
}
export -f one
export bin decisions

for set in "$@"; do runs "$set"; done |
    xargs -d '\n' -P "$(nproc)" -I{} bash -c 'one "$1"' _ {} |
    sort

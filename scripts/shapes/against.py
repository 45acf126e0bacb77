#!/usr/bin/env python3
"""Writes a trace whose request rate and prompt length swing against each other.

    python3 scripts/shapes/against.py OUT.csv

An hour of Poisson arrivals at 20 +/- 10 req/s and log-normal prompts (cv 0.8) whose mean is
2,000 -/+ 800 tokens, on one 20-minute period: at each trough of the rate the prompts are
longest, so a decode engine holds more KV a request just as the count it is sized for is
lowest. Outputs are log-normal about 250 tokens. Seeded: the same file every time. A plain
CSV (`arrival_s,input_tokens,output_tokens`) for `simulate --trace`, run with the
conversation trace's SLA and budget:

    sla-planner simulate --scenario azure-conv-x8 --trace OUT.csv
"""

import math
import random
import sys

DURATION_S = 3600.0
PERIOD_S = 1200.0
SEED = 5


def lognormal(rng: random.Random, mean: float, cv: float) -> float:
    sigma = math.sqrt(math.log(1.0 + cv * cv))
    return rng.lognormvariate(math.log(mean) - sigma * sigma / 2.0, sigma)


def main() -> int:
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} OUT.csv", file=sys.stderr)
        return 2
    rng = random.Random(SEED)
    # The rate's peak bounds it, so arrivals are drawn at the peak and thinned to the rate.
    peak = 30.0
    t = 0.0
    try:
        out = open(sys.argv[1], "w", encoding="utf-8")
    except OSError as e:
        print(f"{sys.argv[0]}: {sys.argv[1]}: {e.strerror}", file=sys.stderr)
        return 2
    with out:
        out.write("arrival_s,input_tokens,output_tokens\n")
        while True:
            t += rng.expovariate(peak)
            if t > DURATION_S:
                break
            phase = math.sin(2.0 * math.pi * t / PERIOD_S)
            if rng.random() * peak > 20.0 + 10.0 * phase:
                continue
            isl = min(30000, max(1, int(lognormal(rng, 2000.0 - 800.0 * phase, 0.8))))
            osl = min(4000, max(1, int(lognormal(rng, 250.0, 0.8))))
            out.write(f"{t:.3f},{isl},{osl}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Writes a trace whose work moves between prefill and decode every ten minutes.

    python3 scripts/shapes/roles.py OUT.csv

An hour of Poisson arrivals at a steady 18 req/s. For ten minutes the requests are long
documents with short answers (prompts log-normal about 4,000 tokens, outputs about 60),
for the next ten short questions with long answers (prompts about 300, outputs about 700;
cv 0.5 throughout), and so on. The rate never moves; the engines each role needs swing
several-fold at every turn, and the mean output is read from requests that finished.
Seeded: the same file every time. A plain CSV (`arrival_s,input_tokens,output_tokens`)
for `simulate --trace`, run with the conversation trace's SLA and budget:

    sla-planner simulate --scenario azure-conv-x8 --trace OUT.csv
"""

import math
import random
import sys

DURATION_S = 3600.0
RATE = 18.0
TURN_S = 600.0
SEED = 7


def lognormal(rng: random.Random, mean: float, cv: float) -> float:
    sigma = math.sqrt(math.log(1.0 + cv * cv))
    return rng.lognormvariate(math.log(mean) - sigma * sigma / 2.0, sigma)


def main() -> int:
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} OUT.csv", file=sys.stderr)
        return 2
    rng = random.Random(SEED)
    try:
        out = open(sys.argv[1], "w", encoding="utf-8")
    except OSError as e:
        print(f"{sys.argv[0]}: {sys.argv[1]}: {e.strerror}", file=sys.stderr)
        return 2
    t = 0.0
    with out:
        out.write("arrival_s,input_tokens,output_tokens\n")
        while True:
            t += rng.expovariate(RATE)
            if t > DURATION_S:
                break
            if int(t // TURN_S) % 2 == 0:
                isl, osl = lognormal(rng, 4000.0, 0.5), lognormal(rng, 60.0, 0.5)
            else:
                isl, osl = lognormal(rng, 300.0, 0.5), lognormal(rng, 700.0, 0.5)
            out.write(f"{t:.3f},{min(30000, max(1, int(isl)))},{min(4000, max(1, int(osl)))}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

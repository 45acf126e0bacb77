#!/usr/bin/env python3
"""Writes a trace whose rate jumps between three levels and stays for heavy-tailed spells.

    python3 scripts/shapes/levels.py OUT.csv

An hour of Poisson arrivals at 8, 20 or 35 req/s, each spell's level drawn at random and its
length from a Pareto law (shape 1.3, 20 s at the least, 600 s at the most): most spells
are shorter than a minute, a few last ten. No level is forecast from the ones before it,
and a spell at the top level may be over before capacity ordered on seeing it is ready.
Prompts log-normal about 1,200 tokens, outputs about 250 (cv 0.8). Seeded: the same file
every time. A plain CSV (`arrival_s,input_tokens,output_tokens`) for `simulate --trace`,
run with the conversation trace's SLA and budget:

    sla-planner simulate --scenario azure-conv-x8 --trace OUT.csv
"""

import bisect
import os
import random
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "common"))
from shape_trace import lognormal, poisson, write  # noqa: E402

DURATION_S = 3600.0
LEVELS = (8.0, 20.0, 35.0)
SEED = 9


def arrivals():
    rng = random.Random(SEED)
    starts, levels = [], []
    t = 0.0
    while t < DURATION_S:
        starts.append(t)
        levels.append(rng.choice(LEVELS))
        t += min(600.0, 20.0 * rng.paretovariate(1.3))
    # Arrivals drawn at the top level and thinned to the spell's.
    peak = max(LEVELS)
    for t in poisson(rng, peak, DURATION_S):
        level = levels[bisect.bisect_right(starts, t) - 1]
        if rng.random() * peak > level:
            continue
        yield t, lognormal(rng, 1200.0, 0.8), lognormal(rng, 250.0, 0.8)


if __name__ == "__main__":
    sys.exit(write(sys.argv, arrivals()))

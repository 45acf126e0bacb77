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
import os
import random
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "common"))
from shape_trace import lognormal, poisson, write  # noqa: E402

DURATION_S = 3600.0
PERIOD_S = 1200.0
SEED = 5


def arrivals():
    rng = random.Random(SEED)
    # The rate's peak bounds it, so arrivals are drawn at the peak and thinned to the rate.
    peak = 30.0
    for t in poisson(rng, peak, DURATION_S):
        phase = math.sin(2.0 * math.pi * t / PERIOD_S)
        if rng.random() * peak > 20.0 + 10.0 * phase:
            continue
        isl = lognormal(rng, 2000.0 - 800.0 * phase, 0.8)
        osl = lognormal(rng, 250.0, 0.8)
        yield t, isl, osl


if __name__ == "__main__":
    sys.exit(write(sys.argv, arrivals()))

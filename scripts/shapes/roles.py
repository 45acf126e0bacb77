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

import os
import random
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "common"))
from shape_trace import lognormal, poisson, write  # noqa: E402

DURATION_S = 3600.0
RATE = 18.0
TURN_S = 600.0
SEED = 7


def arrivals():
    rng = random.Random(SEED)
    for t in poisson(rng, RATE, DURATION_S):
        if int(t // TURN_S) % 2 == 0:
            yield t, lognormal(rng, 4000.0, 0.5), lognormal(rng, 60.0, 0.5)
        else:
            yield t, lognormal(rng, 300.0, 0.5), lognormal(rng, 700.0, 0.5)


if __name__ == "__main__":
    sys.exit(write(sys.argv, arrivals()))

"""What the shape scripts share: log-normal draws and writing a plain CSV trace.

A script calls `write(sys.argv, arrivals)` with a generator of `(arrival_s, input_tokens,
output_tokens)`; `write` checks the one argument, names an output it cannot write, and
returns the exit code (2 for a usage or output error).
"""

import math
import random
import sys
from typing import Iterable, Tuple

# Lengths are clipped to what the traces hold at most.
MAX_INPUT = 30000
MAX_OUTPUT = 4000


def lognormal(rng: random.Random, mean: float, cv: float) -> float:
    """A log-normal draw with this mean and coefficient of variation."""
    sigma = math.sqrt(math.log(1.0 + cv * cv))
    return rng.lognormvariate(math.log(mean) - sigma * sigma / 2.0, sigma)


def poisson(rng: random.Random, rate: float, duration_s: float) -> Iterable[float]:
    """Arrival times of a Poisson process at `rate` per second, up to `duration_s`."""
    t = 0.0
    while True:
        t += rng.expovariate(rate)
        if t > duration_s:
            return
        yield t


def write(argv: list, arrivals: Iterable[Tuple[float, float, float]]) -> int:
    if len(argv) != 2:
        print(f"usage: {argv[0]} OUT.csv", file=sys.stderr)
        return 2
    try:
        out = open(argv[1], "w", encoding="utf-8")
    except OSError as e:
        print(f"{argv[0]}: {argv[1]}: {e.strerror}", file=sys.stderr)
        return 2
    with out:
        out.write("arrival_s,input_tokens,output_tokens\n")
        for t, isl, osl in arrivals:
            isl = min(MAX_INPUT, max(1, int(isl)))
            osl = min(MAX_OUTPUT, max(1, int(osl)))
            out.write(f"{t:.3f},{isl},{osl}\n")
    return 0

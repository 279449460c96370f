"""Timing two or more versions of the same work in one run: alternating, so the machine's load falls on each alike.

medians = cpu_medians({"compiled": f, "library": g}, repeat=5)   # prints each and returns the medians
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def cpu_medians(variants: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Run each variant `repeat` times, in turn (a, b, a, b, ...), and print and return its median CPU seconds."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeat):
        for name, fn in variants.items():
            t0 = time.process_time()
            fn()
            times[name].append(time.process_time() - t0)
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name, t in times.items():
        print(
            f"{name:28s} {medians[name]:.3f} CPU s (median of {repeat}, alternating; range {min(t):.3f}-{max(t):.3f})"
        )
    return medians

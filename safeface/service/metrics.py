"""Prometheus text-format metrics of one service process: requests by route and status, request
latency as a histogram, calls in flight, overload and rate refusals. Counts only: no subject,
key or token ever appears in a label."""

from __future__ import annotations

import threading
from typing import Optional

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_HELP = {
    "safeface_requests_total": ("counter", "HTTP requests by route template and status code."),
    "safeface_request_seconds": ("histogram", "HTTP request latency in seconds, by route template."),
    "safeface_in_flight": ("gauge", "Calls admitted to the work queue and not yet finished."),
    "safeface_overload_total": ("counter", "Calls refused with 503 because the work queue was full."),
    "safeface_rate_limited_total": ("counter", "Calls refused with 429 because a key was over its rate."),
    "safeface_auth_failures_total": ("counter", "Requests refused with 401."),
    "safeface_index_unavailable_total": ("counter", "Calls answered 503 because the store's Milvus could not be "
                                                    "asked (searches answer from the records meanwhile)."),
    "safeface_index_up": ("gauge", "1 while searches use the store's index; 0 while the records answer them (the "
                                   "index still opening or in a retry window after a failure)."),
}


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._hist: dict[str, list[float]] = {}  # route -> per-bucket counts, +Inf, sum

    def count(self, name: str, labels: Optional[dict[str, str]] = None, by: float = 1.0) -> None:
        key = (name, tuple(sorted((labels or {}).items())))
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + by

    def gauge(self, name: str, value: float) -> None:
        with self._lock:
            self._values[(name, ())] = float(value)

    def observe(self, route: str, seconds: float) -> None:
        with self._lock:
            h = self._hist.setdefault(route, [0.0] * (len(BUCKETS) + 2))
            for i, b in enumerate(BUCKETS):
                if seconds <= b:
                    h[i] += 1
            h[len(BUCKETS)] += 1
            h[len(BUCKETS) + 1] += seconds

    def render(self) -> str:
        with self._lock:
            values = dict(self._values)
            hist = {k: list(v) for k, v in self._hist.items()}
        out: list[str] = []
        for name, (kind, text) in _HELP.items():
            out += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
            if kind == "histogram":
                for route, h in sorted(hist.items()):
                    for i, b in enumerate(BUCKETS):
                        out.append(f'{name}_bucket{{route="{_esc(route)}",le="{b}"}} {h[i]:g}')
                    out.append(f'{name}_bucket{{route="{_esc(route)}",le="+Inf"}} {h[len(BUCKETS)]:g}')
                    out.append(f'{name}_count{{route="{_esc(route)}"}} {h[len(BUCKETS)]:g}')
                    out.append(f'{name}_sum{{route="{_esc(route)}"}} {h[len(BUCKETS) + 1]:.6f}')
                continue
            rows = [(labels, v) for (n, labels), v in values.items() if n == name]
            if not rows and kind != "counter":
                rows = [((), 0.0)]
            for labels, v in sorted(rows):
                lab = ",".join(f'{k}="{_esc(val)}"' for k, val in labels)
                out.append(f"{name}{{{lab}}} {v:g}" if lab else f"{name} {v:g}")
        return "\n".join(out) + "\n"


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

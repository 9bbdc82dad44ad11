"""The pictures an assessor expects, as PNG files: ROC, DET, CMC, score distributions and
per-group bars. matplotlib with the Agg backend (no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from ..atomicfile import atomic_path, make_dirs
from . import metrics


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    make_dirs(path.parent)
    fig.tight_layout()
    try:
        # Renamed into place: savefig opened the path as it found it, and wrote through a link
        # planted there (another user's file, or a workspace's) with the plot.
        with atomic_path(path, durable=False) as tmp:
            fig.savefig(tmp, dpi=110, format=path.suffix.lstrip(".") or "png")
    finally:
        _plt().close(fig)
    return path


def roc_plot(curves: Mapping[str, metrics.Curve], path: Path) -> Path:
    """TMR against FMR on a log FMR axis."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for label, c in curves.items():
        ok = c.fmr > 0
        ax.plot(c.fmr[ok], c.tmr[ok], label=label)
    ax.set_xscale("log")
    ax.set_xlabel("false match rate (FMR)")
    ax.set_ylabel("true match rate (1 - FNMR)")
    ax.set_title("ROC")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def det_plot(curves: Mapping[str, metrics.Curve], path: Path, xlabel: str = "false match rate (FMR)",
             ylabel: str = "false non-match rate (FNMR)") -> Path:
    """FNMR against FMR on normal-deviate axes (ISO/IEC 19795-1's DET); with other labels, any
    pair of error rates (APCER and BPCER for presentation attacks)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    ticks = np.array([1e-4, 1e-3, 1e-2, 0.05, 0.2, 0.5])
    for label, c in curves.items():
        ax.plot(metrics.probit(c.fmr), metrics.probit(c.fnmr), label=label)
    ax.set_xticks(metrics.probit(ticks))
    ax.set_xticklabels([f"{t:g}" for t in ticks])
    ax.set_yticks(metrics.probit(ticks))
    ax.set_yticklabels([f"{t:g}" for t in ticks])
    lim = (float(metrics.probit([5e-5])[0]), float(metrics.probit([0.6])[0]))
    ax.set_xlim(*lim)
    ax.set_ylim(*lim)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title("DET")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    return _save(fig, path)


def score_histogram(mated: np.ndarray, nonmated: np.ndarray, path: Path, threshold: Optional[float] = None,
                    title: str = "score distributions", xlabel: str = "cosine similarity",
                    local: Optional[metrics.Unlinkability] = None) -> Path:
    """Mated and non-mated score densities; with `local`, D(s) of the unlinkability measure."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    lo = float(min(np.min(mated), np.min(nonmated)))
    hi = float(max(np.max(mated), np.max(nonmated)))
    bins = np.linspace(lo, hi if hi > lo else lo + 1e-6, 60)
    ax.hist(nonmated, bins=bins, density=True, alpha=0.55, label=f"non-mated (n={len(nonmated)})")
    ax.hist(mated, bins=bins, density=True, alpha=0.55, label=f"mated (n={len(mated)})")
    if threshold is not None:
        ax.axvline(threshold, color="k", linestyle="--", linewidth=1, label=f"threshold {threshold:.3f}")
    if local is not None:
        ax2 = ax.twinx()
        centres = (local.bin_edges[:-1] + local.bin_edges[1:]) / 2
        ax2.plot(centres, local.local, color="k", linewidth=1, label="D(s)")
        ax2.set_ylim(0, 1.05)
        ax2.set_ylabel("local linkability D(s)")
        title = f"{title} (D_sys = {local.dsys:.3f})"
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def cmc_plot(curve: np.ndarray, path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    ranks = np.arange(1, len(curve) + 1)
    ax.plot(ranks, curve, marker="o", markersize=3)
    ax.set_xlabel("rank")
    ax.set_ylabel("identification rate")
    ax.set_title("CMC")
    ax.set_ylim(min(0.9, float(curve.min()) - 0.02), 1.0)
    ax.grid(True, alpha=0.3)
    return _save(fig, path)


def group_bars(values: Mapping[str, float], path: Path, metric: str, intervals: Optional[Mapping[str, Sequence[float]]] = None) -> Path:
    """One bar per group, with 95% intervals when given."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    names = list(values)
    vals = [values[n] for n in names]
    err = None
    if intervals:
        err = np.array([[max(0.0, values[n] - intervals[n][0]) for n in names],
                        [max(0.0, intervals[n][1] - values[n]) for n in names]])
    ax.bar(names, vals, yerr=err, capsize=4)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per group")
    for lbl in ax.get_xticklabels():
        lbl.set_rotation(30)
        lbl.set_ha("right")
    return _save(fig, path)

"""The one ONNX Runtime session factory: how safeface imports onnxruntime, picks execution
providers and builds a session from model bytes it has already verified. Callers hand it bytes,
never a path, so what runs is what was hashed."""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence

from ...errors import ModelError


def onnxruntime() -> Any:
    # ONNX Runtime's telemetry keeps a device id under ~/.cache and posts session and inference
    # events (model names, counts, timings) to its vendor: nothing the SDK runs is reported
    # anywhere. The variable is read when the library loads; a host that loaded it first has its
    # events switched off here too.
    os.environ["ORT_DISABLE_TELEMETRY"] = "1"
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ModelError(f"onnxruntime cannot be imported ({exc}); install safeface[cpu] or safeface[gpu] "
                         "(or: pip install onnxruntime).") from None
    off = getattr(ort, "disable_telemetry_events", None)
    if off is not None:
        off()
    return ort


def default_providers() -> list[str]:
    """CUDA first when this onnxruntime build has it, then the CPU."""
    available = set(onnxruntime().get_available_providers())
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def new_session(model: bytes, what: str, providers: Optional[Sequence[str]] = None,
                intra_op_threads: int = 0, spin: Optional[bool] = None) -> Any:
    """An InferenceSession over `model` (verified bytes). `what` names the model in errors.
    `intra_op_threads` 0 lets ONNX Runtime choose; `spin` None keeps its default for idle
    worker threads, False stops them busy-waiting (they steal cores other processes need on a
    shared or small machine)."""
    ort = onnxruntime()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only: ORT's warnings are not the user's to act on
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # No arena: ONNX Runtime's keeps the largest run's buffers for the life of the process, so
    # after MMOD searched a photo (550 MiB for a 1280x886 group photo) the steps after it stacked
    # on top: anonymizing a 50-megapixel photo peaked at 2,849 MiB (1,984 without), 12 megapixels
    # at 2,243 (1,545), a 50-megapixel verify at 1,045 (848). A large buffer costs its page faults
    # each run, small next to the run.
    opts.enable_cpu_mem_arena = False
    if intra_op_threads:
        opts.intra_op_num_threads = int(intra_op_threads)
    if spin is not None:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    try:
        return ort.InferenceSession(model, sess_options=opts, providers=list(providers or default_providers()))
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelError(f"ONNX Runtime cannot load {what} ({exc}).") from None

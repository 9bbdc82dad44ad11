"""Face detection, alignment and descriptors."""

from __future__ import annotations

from typing import Any

from .dlib_engine import DlibEngine

ENGINES = ("dlib", "onnx")


def get_engine(name: str = "dlib", **kw: Any) -> DlibEngine:
    """An engine by name: "dlib" (dlib on the CPU) or "onnx" (dlib's networks on ONNX Runtime;
    keyword arguments go to OnnxEngine)."""
    if name == "dlib":
        return DlibEngine(**kw)
    if name == "onnx":
        from .onnx_engine import OnnxEngine

        return OnnxEngine(**kw)
    raise ValueError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}.")

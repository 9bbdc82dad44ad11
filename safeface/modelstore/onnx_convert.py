"""Conversion of dlib's face networks to ONNX, and the cache of converted files.

* ``dlib-resnet-v1`` becomes a graph from a batch of (N, 150, 150, 3) RGB chips (uint8, NHWC, as
  DlibEngine.chips gives them) to (N, 128) float32 descriptors exactly as dlib gives them (not unit
  length). dlib's input normalisation, (pixel - channel mean) / 256, is inside the graph.
* ``dlib-mmod`` becomes a fully convolutional graph from dlib's tiled image pyramid, (1, 3, H, W)
  float32 already normalised, to the (1, windows, h, w) detector scores; mmod_decode.py builds the
  pyramid and turns the scores into boxes as dlib does.

Converted files live in ``models_home()/converted/<source sha256>/<name>.onnx``, each recorded in
the model registry (its SHA-256, the SHA-256 of the file it was built from, licence and source).
They are built on first use; a file whose hash no longer matches its record is rebuilt."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..atomicfile import write_atomic
from ..errors import ModelError
from ..hashing import read_hashed, read_verified, sha256_file_cached, same_digest
from . import registry
from .dlib_format import (
    Affine, AddPrev, Conv, Dense, Identity, MetricLoss, MmodLoss, Network, Pool, Relu, Skip, Tag, parse_network,
)

OPSET = 17
IR_VERSION = 8  # onnx writes a newer IR than many onnxruntime releases read
CONVERTIBLE = ("dlib-resnet-v1", "dlib-mmod")


def _onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:  # pragma: no cover - onnx is a dependency
        raise ModelError(f"the onnx package cannot be imported ({exc}); run: pip install onnx") from None
    return onnx


# -- graph building -----------------------------------------------------------------------------

Shape = Optional[tuple[int, int, int]]  # (channels, rows, cols) when static


class _Graph:
    def __init__(self) -> None:
        self.onnx = _onnx()
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self._n = 0

    def name(self, base: str) -> str:
        self._n += 1
        return f"{base}_{self._n}"

    def const(self, base: str, value: np.ndarray) -> str:
        n = self.name(base)
        self.inits.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(value), n))
        return n

    def op(self, op_type: str, inputs: list[str], base: Optional[str] = None, **attrs: Any) -> str:
        out = self.name(base or op_type.lower())
        self.nodes.append(self.onnx.helper.make_node(op_type, inputs, [out], **attrs))
        return out


def _pool_out(n: int, window: int, stride: int, pad: int) -> int:
    return 1 + (n + 2 * pad - window) // stride


def _emit_layers(g: _Graph, net: Network, x: str, shape: Shape) -> tuple[str, Shape]:
    """Add the network's layers to the graph. Shapes are tracked when static so that add_prev can
    zero-pad mismatched operands the way dlib's tt::add does (top-left aligned)."""
    outputs: dict[int, tuple[str, Shape]] = {}
    for i, layer in enumerate(net.layers):
        if isinstance(layer, Conv):
            attrs: dict[str, Any] = dict(strides=list(layer.stride), pads=[layer.padding[0], layer.padding[1]] * 2,
                                         kernel_shape=list(layer.kernel))
            ins = [x, g.const("w", layer.weight)]
            if layer.bias is not None:
                ins.append(g.const("b", layer.bias))
            x = g.op("Conv", ins, **attrs)
            if layer.relu:
                x = g.op("Relu", [x])
            if shape is not None:
                kh, kw = layer.kernel
                shape = (int(layer.weight.shape[0]), _pool_out(shape[1], kh, layer.stride[0], layer.padding[0]),
                         _pool_out(shape[2], kw, layer.stride[1], layer.padding[1]))
        elif isinstance(layer, Affine):
            if layer.conv_mode:
                gamma = layer.gamma.reshape(1, -1, 1, 1)
                beta = layer.beta.reshape(1, -1, 1, 1)
            else:
                if shape is None:
                    raise ModelError("an fc-mode affine layer needs a fixed input size.")
                gamma = layer.gamma.reshape((1,) + shape)
                beta = layer.beta.reshape((1,) + shape)
            x = g.op("Add", [g.op("Mul", [x, g.const("gamma", gamma)]), g.const("beta", beta)])
        elif isinstance(layer, Relu):
            x = g.op("Relu", [x])
        elif isinstance(layer, Pool):
            if layer.window == (0, 0):
                x = g.op("GlobalMaxPool" if layer.kind == "max" else "GlobalAveragePool", [x])
                if shape is not None:
                    shape = (shape[0], 1, 1)
            else:
                pads = [layer.padding[0], layer.padding[1]] * 2
                op = "MaxPool" if layer.kind == "max" else "AveragePool"
                extra: dict[str, Any] = {} if layer.kind == "max" else {"count_include_pad": 0}
                x = g.op(op, [x], kernel_shape=list(layer.window), strides=list(layer.stride), pads=pads, **extra)
                if shape is not None:
                    shape = (shape[0], _pool_out(shape[1], layer.window[0], layer.stride[0], layer.padding[0]),
                             _pool_out(shape[2], layer.window[1], layer.stride[1], layer.padding[1]))
        elif isinstance(layer, Tag) or isinstance(layer, Identity):
            pass
        elif isinstance(layer, Skip):
            x, shape = outputs[layer.source]
        elif isinstance(layer, AddPrev):
            y, yshape = outputs[layer.source]
            if shape != yshape:
                if shape is None or yshape is None:
                    raise ModelError("add_prev over differently sized tensors needs a fixed input size.")
                target = tuple(max(a, b) for a, b in zip(shape, yshape))
                x = _pad_to(g, x, shape, target)
                y = _pad_to(g, y, yshape, target)
                shape = target  # type: ignore[assignment]
            x = g.op("Add", [x, y])
        elif isinstance(layer, Dense):
            x = g.op("Flatten", [x], axis=1)
            x = g.op("MatMul", [x, g.const("fc", layer.weight)])
            if layer.bias is not None:
                x = g.op("Add", [x, g.const("fcb", layer.bias)])
            shape = None
        else:  # pragma: no cover - the reader only yields the kinds above
            raise ModelError(f"cannot convert layer {layer!r}.")
        outputs[i] = (x, shape)
    return x, shape


def _pad_to(g: _Graph, x: str, shape: tuple[int, int, int], target: tuple[int, ...]) -> str:
    if tuple(shape) == tuple(target):
        return x
    pads = np.array([0, 0, 0, 0, 0, target[0] - shape[0], target[1] - shape[1], target[2] - shape[2]], dtype=np.int64)
    return g.op("Pad", [x, g.const("pads", pads)], mode="constant")


def _finish(g: _Graph, inputs: list[Any], outputs: list[Any], name: str) -> Any:
    onnx = g.onnx
    graph = onnx.helper.make_graph(g.nodes, name, inputs, outputs, initializer=g.inits)
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)],
                                   producer_name="safeface")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def recognition_model(net: Network) -> Any:
    """ONNX model: chips (N, rows, cols, 3) uint8 RGB -> descriptors (N, D) float32."""
    if not isinstance(net.loss, MetricLoss) or net.input.size is None:
        raise ModelError("the recognition conversion needs a loss_metric network with a sized RGB input.")
    onnx = _onnx()
    rows, cols = net.input.size
    g = _Graph()
    x = g.op("Cast", ["chips"], to=onnx.TensorProto.FLOAT)
    x = g.op("Sub", [x, g.const("mean", np.array(net.input.mean_rgb, dtype=np.float32))])
    x = g.op("Mul", [x, g.const("scale", np.array(1.0 / 256.0, dtype=np.float32))])
    x = g.op("Transpose", [x], perm=[0, 3, 1, 2])
    x, _ = _emit_layers(g, net, x, (3, rows, cols))
    g.nodes.append(onnx.helper.make_node("Identity", [x], ["descriptors"]))
    dim = int(next(layer for layer in reversed(net.layers) if isinstance(layer, Dense)).weight.shape[1])
    inp = onnx.helper.make_tensor_value_info("chips", onnx.TensorProto.UINT8, ["N", rows, cols, 3])
    out = onnx.helper.make_tensor_value_info("descriptors", onnx.TensorProto.FLOAT, ["N", dim])
    return _finish(g, [inp], [out], "dlib_resnet_descriptor")


def mmod_model(net: Network) -> Any:
    """ONNX model: pyramid (1, 3, H, W) float32, normalised -> scores (1, windows, h, w)."""
    if not isinstance(net.loss, MmodLoss) or net.input.kind != "input_rgb_image_pyramid":
        raise ModelError("the detector conversion needs a loss_mmod network over an RGB image pyramid.")
    if net.loss.bbox_regression:
        raise ModelError("MMOD networks with bounding-box regression are not supported yet.")
    onnx = _onnx()
    g = _Graph()
    x, _ = _emit_layers(g, net, "pyramid", None)
    g.nodes.append(onnx.helper.make_node("Identity", [x], ["scores"]))
    inp = onnx.helper.make_tensor_value_info("pyramid", onnx.TensorProto.FLOAT, [1, 3, "H", "W"])
    out = onnx.helper.make_tensor_value_info("scores", onnx.TensorProto.FLOAT, [1, len(net.loss.windows), "h", "w"])
    return _finish(g, [inp], [out], "dlib_mmod_detector")


def build(name: str, source: bytes) -> Any:
    """The ONNX model of the dlib network serialised in `source`."""
    net = parse_network(source, name)
    if name == "dlib-resnet-v1":
        return recognition_model(net)
    if name == "dlib-mmod":
        return mmod_model(net)
    raise ModelError(f"no ONNX conversion for {name!r}; convertible models: {', '.join(CONVERTIBLE)}.")


# -- the cache ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ConvertedModel:
    name: str
    source_sha256: str
    onnx_sha256: str
    path: Path

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "source_sha256": self.source_sha256, "onnx_sha256": self.onnx_sha256,
                "path": str(self.path)}


def converted_home() -> Path:
    return registry.models_home() / "converted"


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data)


def ensure_converted(name: str, force: bool = False, source: Optional[Path] = None) -> ConvertedModel:
    """The verified ONNX file for a dlib model, converting it first when it is missing, when its
    hash differs from the model registry's record, or when `force` is set."""
    if name not in CONVERTIBLE:
        raise ModelError(f"no ONNX conversion for {name!r}; convertible models: {', '.join(CONVERTIBLE)}.")
    src = source or registry.verified_path(name)
    src_sha = sha256_file_cached(src)
    path = converted_home() / src_sha / f"{name}.onnx"
    rec = registry.load().file(path)
    if not force and rec is not None and rec.derived_from == src_sha and path.is_file():
        if sha256_file_cached(path) == rec.sha256:
            return ConvertedModel(name, src_sha, rec.sha256, path)
        # altered or half-written: rebuild from the verified source rather than load it
    # The bytes converted are the bytes hashed: the check above may be a hash remembered for
    # the file's size and time, which a file changed in place and its time put back keeps.
    actual, raw = read_hashed(src)
    if not same_digest(actual, src_sha):
        raise ModelError(f"model {name!r}: {src} changed while it was being converted (SHA-256 {actual[:16]}..., not "
                         f"{src_sha[:16]}... as checked), so it was not converted; reinstall or re-fetch it.")
    data: bytes = build(name, raw).SerializeToString()
    _write_atomic(path, data)
    onnx_sha = hashlib.sha256(data).hexdigest()
    with registry.update() as reg:
        reg.put_file(registry.converted_record(name, path, onnx_sha, len(data), src_sha))
    return ConvertedModel(name, src_sha, onnx_sha, path)


def convert_all(force: bool = False) -> list[dict[str, str]]:
    """Convert every convertible model (for `safeface models convert`); one record per model."""
    return [ensure_converted(name, force=force).to_dict() for name in CONVERTIBLE]


def load_session_bytes(model: ConvertedModel) -> bytes:
    """The converted file's bytes after re-checking its hash (what a session is built from)."""
    return read_verified(model.path, model.onnx_sha256, f"{model.path} changed after it was checked; run "
                         "`safeface models convert --force` to rebuild it.")


"""A reader for dlib's serialized DNN files (``*.dat`` from face-recognition-models), in NumPy.

dlib writes a network as nested objects: the loss layer, then one wrapper per layer from the
output down (add_layer / add_tag_layer / add_skip_layer, each a version number), then the input
layer, then each layer's details from the input up. Integers use dlib's variable-length code, floats
a (mantissa, exponent) pair, tensors raw little-endian float32. Only the layer kinds that dlib's
face models use are understood; anything else raises ModelError.

dlib does not store tag or skip IDs (they live in the C++ type), so the reader resolves them by the
residual idioms dlib's networks are built from: ``add_prev<... tag<X>>`` and
``add_prev<... skip<tag<... tag<X>>>>`` (see ``_resolve_tags``)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..errors import ModelError

_FLOAT_SPECIAL = {32000: float("inf"), 32001: float("-inf"), 32002: float("nan")}


# -- layer values ----------------------------------------------------------------------------

@dataclass(frozen=True)
class InputLayer:
    kind: str  # "input_rgb_image", "input_rgb_image_sized" or "input_rgb_image_pyramid"
    mean_rgb: tuple[float, float, float]
    size: Optional[tuple[int, int]] = None  # (rows, cols) for the sized input
    pyramid_padding: int = 10
    pyramid_outer_padding: int = 11


@dataclass(frozen=True)
class Conv:
    weight: np.ndarray = field(repr=False)  # (out, in, kh, kw)
    bias: Optional[np.ndarray] = field(repr=False)
    stride: tuple[int, int]
    padding: tuple[int, int]
    relu: bool = False  # con_6 may carry a fused relu

    @property
    def kernel(self) -> tuple[int, int]:
        return int(self.weight.shape[2]), int(self.weight.shape[3])


@dataclass(frozen=True)
class Dense:
    weight: np.ndarray = field(repr=False)  # (inputs, outputs): y = x @ weight
    bias: Optional[np.ndarray] = field(repr=False)


@dataclass(frozen=True)
class Affine:
    """y = x * gamma + beta per channel (conv mode) or per element (fc mode). Batch norm layers
    become this, with dlib's own conversion."""
    gamma: np.ndarray = field(repr=False)
    beta: np.ndarray = field(repr=False)
    conv_mode: bool


@dataclass(frozen=True)
class Relu:
    pass


@dataclass(frozen=True)
class Pool:
    kind: str  # "max" or "avg"
    window: tuple[int, int]  # (0, 0): the whole input
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass(frozen=True)
class Tag:
    pass


@dataclass(frozen=True)
class Skip:
    source: int  # index of the Tag whose output this layer passes on


@dataclass(frozen=True)
class AddPrev:
    source: int  # index of the Tag whose output is added to this layer's input


@dataclass(frozen=True)
class Identity:
    """A layer dlib marked disabled (its work was fused into the layer below)."""


Layer = Union[Conv, Dense, Affine, Relu, Pool, Tag, Skip, AddPrev, Identity]


@dataclass(frozen=True)
class MetricLoss:
    margin: float
    distance_threshold: float


@dataclass(frozen=True)
class DetectorWindow:
    width: int
    height: int
    label: str = ""


@dataclass(frozen=True)
class MmodLoss:
    windows: tuple[DetectorWindow, ...]
    nms_iou: float
    nms_covered: float
    bbox_regression: bool


Loss = Union[MetricLoss, MmodLoss]


@dataclass(frozen=True)
class Network:
    input: InputLayer
    layers: tuple[Layer, ...]  # from the input up
    loss: Loss


# -- byte stream ------------------------------------------------------------------------------

class _Stream:
    def __init__(self, data: bytes, name: str) -> None:
        self.data = data
        self.pos = 0
        self.name = name

    def fail(self, what: str) -> ModelError:
        return ModelError(
            f"{self.name} is not a dlib network file this reader understands: {what} (at byte {self.pos}). "
            "The file may be truncated or altered; reinstall face-recognition-models."
        )

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise self.fail(f"the file ends early (wanted {n} more bytes)")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def integer(self) -> int:
        head = self.take(1)[0]
        size = head & 0x0F
        if size == 0 or size > 8 or head & 0x70:
            raise self.fail(f"bad integer control byte 0x{head:02x}")
        value = int.from_bytes(self.take(size), "little")
        return -value if head & 0x80 else value

    def peek_string(self) -> Optional[str]:
        """The string at the current position if one is there (printable ASCII, 1-64 long)."""
        saved = self.pos
        try:
            n = self.integer()
            if not 1 <= n <= 64:
                return None
            raw = self.take(n)
            if not all(32 < b < 127 for b in raw):
                return None
            return raw.decode("ascii")
        except ModelError:
            return None
        finally:
            self.pos = saved

    def string(self) -> str:
        n = self.integer()
        if n < 0 or n > 4096:
            raise self.fail(f"implausible string length {n}")
        try:
            return self.take(n).decode("ascii")
        except UnicodeDecodeError:
            raise self.fail("a name is not ASCII") from None

    def flag(self) -> bool:
        ch = self.take(1)
        if ch not in (b"0", b"1"):
            raise self.fail(f"bad boolean byte {ch!r}")
        return ch == b"1"

    def real(self) -> float:
        if self.pos < len(self.data) and self.data[self.pos] & 0x70:
            raise self.fail("an ASCII-encoded float (pre-2012 dlib files are not supported)")
        mantissa = self.integer()
        exponent = self.integer()
        if exponent in _FLOAT_SPECIAL:
            return _FLOAT_SPECIAL[exponent]
        if not -32768 <= exponent < 32000:
            raise self.fail(f"bad float exponent {exponent}")
        return float(np.ldexp(np.float64(mantissa), exponent))

    def tensor(self) -> np.ndarray:
        version = self.integer()
        if version != 2:
            raise self.fail(f"tensor version {version}, expected 2")
        shape = tuple(self.integer() for _ in range(4))
        if any(d < 0 for d in shape):
            raise self.fail(f"negative tensor shape {shape}")
        count = int(np.prod(shape, dtype=np.int64))
        raw = self.take(4 * count)
        out: np.ndarray = np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)
        return out

    def alias(self) -> tuple[int, int, int, int]:
        version = self.integer()
        if version != 1:
            raise self.fail(f"alias tensor version {version}, expected 1")
        return (self.integer(), self.integer(), self.integer(), self.integer())


def _size(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64))


def _slice(s: _Stream, params: np.ndarray, offset: int, shape: tuple[int, ...]) -> np.ndarray:
    flat = params.reshape(-1)
    n = _size(shape)
    if offset + n > flat.size:
        raise s.fail(f"a layer's parameters are shorter than its shape {shape}")
    out: np.ndarray = flat[offset:offset + n].reshape(shape).copy()
    return out


# -- layer details ------------------------------------------------------------------------------

def _read_details(s: _Stream) -> Layer:
    name = s.string()
    if name in ("con_4", "con_5", "con_6"):
        params = s.tensor()
        s.integer()  # num_filters (also in the filters alias)
        s.integer(), s.integer()  # nr, nc
        stride = (s.integer(), s.integer())
        padding = (s.integer(), s.integer())
        fshape = s.alias()
        bshape = s.alias()
        for _ in range(4):
            s.real()  # learning-rate and weight-decay multipliers
        use_bias = s.flag() if name in ("con_5", "con_6") else True
        relu = s.flag() if name == "con_6" else False
        weight = _slice(s, params, 0, fshape)
        bias = _slice(s, params, _size(fshape), (_size(bshape),)) if use_bias else None
        return Conv(weight=weight, bias=bias, stride=stride, padding=padding, relu=relu)
    if name in ("fc_2", "fc_3"):
        outputs = s.integer()
        inputs = s.integer()
        params = s.tensor()
        wshape = s.alias()
        s.alias()
        bias_mode = s.integer()
        for _ in range(4):
            s.real()
        use_bias = s.flag() if name == "fc_3" else True
        if bias_mode not in (0, 1):
            raise s.fail(f"unknown fc bias mode {bias_mode}")
        if params.size == 0 or _size(wshape) != inputs * outputs:
            raise s.fail("an fc layer without its weights (was the network trained?)")
        weight = _slice(s, params, 0, (inputs, outputs))
        has_bias = bias_mode == 0 and use_bias
        bias = _slice(s, params, inputs * outputs, (outputs,)) if has_bias else None
        return Dense(weight=weight, bias=bias)
    if name in ("bn_con2", "bn_fc2"):
        params = s.tensor()
        gshape = s.alias()
        s.alias()
        s.tensor(), s.tensor()  # batch means and inverse stds (training only)
        running_means = s.tensor().reshape(-1)
        running_vars = s.tensor().reshape(-1)
        s.integer(), s.integer()  # num_updates, running_stats_window_size
        for _ in range(4):
            s.real()
        eps = s.real()
        n = _size(gshape)
        g = _slice(s, params, 0, (n,))
        b = _slice(s, params, n, (n,))
        # dlib's affine_(bn_) conversion, in float32 as dlib does it
        gamma = (g / np.sqrt(running_vars + np.float32(eps))).astype(np.float32)
        beta = (b - gamma * running_means).astype(np.float32)
        return Affine(gamma=gamma, beta=beta, conv_mode=name == "bn_con2")
    if name in ("affine_", "affine_2"):
        params = s.tensor()
        gshape = s.alias()
        s.alias()
        mode = s.integer()
        disabled = s.flag() if name == "affine_2" else False
        if disabled:
            return Identity()
        n = _size(gshape)
        return Affine(gamma=_slice(s, params, 0, (n,)), beta=_slice(s, params, n, (n,)), conv_mode=mode == 0)
    if name in ("relu_", "relu_2"):
        disabled = s.flag() if name == "relu_2" else False
        return Identity() if disabled else Relu()
    if name in ("max_pool_2", "avg_pool_2"):
        window = (s.integer(), s.integer())
        stride = (s.integer(), s.integer())
        padding = (s.integer(), s.integer())
        return Pool(kind=name[:3], window=window, stride=stride, padding=padding)
    if name == "add_prev_":
        return AddPrev(source=-1)
    raise ModelError(
        f"{s.name}: layer {name!r} is not one safeface can convert (known: con, fc, bn_con/bn_fc, affine, "
        "relu, max_pool, avg_pool, add_prev, tag, skip)."
    )


def _read_input(s: _Stream) -> InputLayer:
    name = s.string()
    if name not in ("input_rgb_image", "input_rgb_image_sized", "input_rgb_image_pyramid", "input_rgb_image_pyramid2"):
        raise ModelError(f"{s.name}: input layer {name!r} is not supported (only dlib's RGB image inputs are).")
    mean = (s.real(), s.real(), s.real())
    if name == "input_rgb_image_sized":
        rows, cols = s.integer(), s.integer()
        return InputLayer(kind=name, mean_rgb=mean, size=(rows, cols))
    if name.startswith("input_rgb_image_pyramid"):
        pad, outer = (s.integer(), s.integer()) if name.endswith("2") else (10, 11)
        return InputLayer(kind="input_rgb_image_pyramid", mean_rgb=mean, pyramid_padding=pad, pyramid_outer_padding=outer)
    return InputLayer(kind=name, mean_rgb=mean)


def _read_loss(s: _Stream) -> Loss:
    name = s.string()
    if name == "loss_metric_":
        return MetricLoss(margin=0.1, distance_threshold=0.75)
    if name == "loss_metric_2":
        return MetricLoss(margin=s.real(), distance_threshold=s.real())
    if name == "loss_mmod_":
        version = s.integer()
        if not 1 <= version <= 4:
            raise s.fail(f"mmod options version {version}")
        windows: list[DetectorWindow] = []
        if version == 1:
            windows.append(DetectorWindow(s.integer(), s.integer()))
        else:
            for _ in range(s.integer()):
                wv = s.integer()
                if wv not in (1, 2):
                    raise s.fail(f"detector window version {wv}")
                w, h = s.integer(), s.integer()
                windows.append(DetectorWindow(w, h, s.string() if wv == 2 else ""))
        for _ in range(3):
            s.real()  # training losses and the truth-match threshold
        nms_iou, nms_covered = s.real(), s.real()
        s.real(), s.real()  # overlaps_ignore (training only)
        if version >= 3:
            s.take(1)  # assume_image_pyramid: a raw uint8
        bbr = False
        if version >= 4:
            bbr = s.flag()
            s.real()
        if not windows:
            raise s.fail("an mmod loss without detector windows")
        return MmodLoss(windows=tuple(windows), nms_iou=nms_iou, nms_covered=nms_covered, bbox_regression=bbr)
    raise ModelError(f"{s.name}: loss layer {name!r} is not supported (known: loss_metric, loss_mmod).")


# -- the network ----------------------------------------------------------------------------------

def _read_network(s: _Stream) -> Network:
    if s.integer() != 1:
        raise s.fail("this is not a dlib network (add_loss_layer version is not 1)")
    loss = _read_loss(s)

    # The wrappers from the output down, until the one that holds the input layer.
    wrappers: list[int] = []
    while True:
        version = s.integer()
        following = s.peek_string()
        if following is not None and following.startswith("input"):
            bottom = version
            break
        if version not in (1, 2):
            raise s.fail(f"unexpected layer wrapper version {version}")
        wrappers.append(version)
        if len(wrappers) > 10000:
            raise s.fail("too many layers")
    inp = _read_input(s)

    layers: list[Layer] = []
    # The bottom wrapper: add_layer over the input (versions 2-3) or add_tag_layer over it (1-2).
    nxt = s.peek_string()
    if nxt is not None and len(nxt) >= 4 and bottom in (2, 3):
        layers.append(_read_details(s))
        for _ in range(3):
            s.flag()
        s.tensor(), s.tensor(), s.tensor()  # x_grad, cached_output, grad_final
        if bottom == 3:
            s.integer()  # sample expansion factor
    elif bottom in (1, 2):
        layers.append(Tag())
        s.tensor(), s.tensor()
        s.flag()
        if bottom == 2:
            s.integer()
    else:
        raise s.fail(f"unexpected input wrapper version {bottom}")

    for version in reversed(wrappers):
        if version == 2:
            layers.append(_read_details(s))
            for _ in range(3):
                s.flag()
            s.tensor(), s.tensor(), s.tensor()  # x_grad, cached_output, params_grad
        else:
            layers.append(Tag())  # tag or skip: decided below
    if s.pos != len(s.data):
        raise s.fail(f"{len(s.data) - s.pos} bytes follow the network")
    return Network(input=inp, layers=tuple(_resolve_tags(s, layers)), loss=loss)


def _resolve_tags(s: _Stream, layers: list[Layer]) -> list[Layer]:
    """Turn version-1 wrappers into tags and skips, and point add_prev and skip at their tags.

    A wrapper right above another wrapper is a skip over that tag (``skipN<tagM<...>>``): it passes
    on the tag before it, and the tag right under it is the one the next add_prev adds. Every other
    wrapper is a tag; add_prev adds the newest open tag."""
    out: list[Layer] = list(layers)
    open_tags: list[int] = []
    for i, layer in enumerate(layers):
        if isinstance(layer, Tag):
            lower_is_wrapper = i > 0 and isinstance(layers[i - 1], Tag) and isinstance(out[i - 1], Tag)
            if lower_is_wrapper and i - 1 in open_tags:
                if len(open_tags) < 2:
                    raise s.fail("a skip layer with no tag to skip to")
                under = open_tags.pop()
                target = open_tags.pop()
                out[i] = Skip(source=target)
                open_tags.append(under)
            else:
                open_tags.append(i)
        elif isinstance(layer, AddPrev):
            if not open_tags:
                raise s.fail("an add_prev layer with no tag to add")
            out[i] = AddPrev(source=open_tags.pop())
    if open_tags and any(isinstance(x, (AddPrev, Skip)) for x in out):
        raise s.fail("tags and add_prev layers do not pair up")
    return out


def read_network(path: Union[str, Path]) -> Network:
    """Parse a dlib DNN file. Raises ModelError when the file is truncated, malformed, or holds a
    layer this reader does not know."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read the model file {p}: {exc.strerror or exc}.") from None
    return parse_network(data, p.name)


def parse_network(data: bytes, name: str = "model") -> Network:
    s = _Stream(data, name)
    try:
        return _read_network(s)
    except RecursionError:  # pragma: no cover - the reader is iterative
        raise s.fail("nesting too deep") from None
    except (ValueError, struct.error, OverflowError) as exc:
        raise s.fail(str(exc)) from None

"""dlib's networks on ONNX Runtime: the same descriptors and MMOD boxes as DlibEngine, faster.

OnnxEngine is a DlibEngine (HOG detector, 5-point landmarks and chip extraction stay dlib's) whose
ResNet descriptor and MMOD detector run as converted ONNX graphs (see onnx_convert.py)."""

from __future__ import annotations

import os
import threading
from typing import Any, Optional, Sequence

import numpy as np

from ...errors import ImageError, ModelError
from ...modelstore import onnx_convert, registry
from . import mmod_decode
from .arrays import check_chips, check_rgb_image, l2_normalize
from .dlib_engine import CHIP_SIZE, MASKED_MMOD_THRESHOLD, DlibEngine, _image_key, mmod_too_small
from .ort_session import default_providers, new_session
from ...modelstore.dlib_format import Network, read_network

THREADS_ENV = "SAFEFACE_ONNX_THREADS"
DEFAULT_BATCH = 64


class OnnxEngine(DlibEngine):
    """DlibEngine with embedding and MMOD detection on ONNX Runtime. Thread-safe: sessions are
    created once under a lock and ONNX Runtime's run() may be called concurrently.

    `intra_op_threads`: ONNX Runtime's threads per call (default: $SAFEFACE_ONNX_THREADS, else
    its own choice); `providers`: execution providers in order of preference; `batch_size`: most
    chips per ONNX Runtime call; `spin`: let idle ONNX Runtime threads busy-wait (faster on a
    dedicated machine, slower on a shared one)."""

    name = "onnx"

    def __init__(self, intra_op_threads: Optional[int] = None, providers: Optional[Sequence[str]] = None,
                 batch_size: int = DEFAULT_BATCH, spin: bool = False) -> None:
        super().__init__()
        if intra_op_threads is None:
            env = os.environ.get(THREADS_ENV, "").strip()
            try:
                intra_op_threads = int(env) if env else 0
            except ValueError:
                raise ModelError(f"{THREADS_ENV} must be a whole number of threads, not {env!r}.") from None
        if intra_op_threads < 0 or batch_size < 1:
            raise ValueError("intra_op_threads must be >= 0 and batch_size >= 1.")
        self.intra_op_threads = intra_op_threads
        self.providers = list(providers) if providers else default_providers()
        self.batch_size = batch_size
        self.spin = spin
        self._sessions: dict[str, Any] = {}
        self._mmod_net: Optional[Network] = None
        self._session_lock = threading.Lock()
        self._last_mmod = threading.local()

    # -- sessions -------------------------------------------------------------------------------
    def _session(self, name: str) -> Any:
        with self._session_lock:
            sess = self._sessions.get(name)
            if sess is None:
                model = onnx_convert.ensure_converted(name)
                sess = new_session(onnx_convert.load_session_bytes(model), str(model.path), self.providers,
                                   intra_op_threads=self.intra_op_threads, spin=self.spin)
                self._sessions[name] = sess
            return sess

    def _mmod_network(self) -> Network:
        with self._session_lock:
            if self._mmod_net is None:
                self._mmod_net = read_network(registry.verified_path("dlib-mmod"))
            return self._mmod_net

    # -- embedding --------------------------------------------------------------------------------
    def raw_descriptors(self, chips: np.ndarray, jitters: int = 0) -> np.ndarray:
        """dlib's descriptors (not unit length), (N, 128) float64, batched on ONNX Runtime.
        Jittering is dlib's own random augmentation, so jitters > 0 runs on dlib."""
        if jitters:
            return super().raw_descriptors(chips, jitters)
        chips = check_chips(chips, CHIP_SIZE)
        if len(chips) == 0:
            return np.zeros((0, self.embedding_dim), dtype=np.float64)
        sess = self._session("dlib-resnet-v1")
        parts = [sess.run(["descriptors"], {"chips": chips[i:i + self.batch_size]})[0]
                 for i in range(0, len(chips), self.batch_size)]
        return np.concatenate(parts).astype(np.float64)

    def embed_chips(self, chips: np.ndarray) -> np.ndarray:
        return l2_normalize(self.raw_descriptors(chips))

    # -- detection --------------------------------------------------------------------------------
    def detect_rects(self, image: np.ndarray, detector: str = "hog", upsample: int = 1) -> list[tuple[Any, float]]:
        if detector != "mmod":
            return super().detect_rects(image, detector, upsample)
        image = check_rgb_image(image)
        # Decoded at the masked step's lower bar once: the strongest boxes come out the same
        # (suppression runs strongest first), and the weak ones are kept for weak_rects.
        dets = [(self._dlib.rectangle(*d.rect), d.score) for d in self.mmod_detections(image, upsample, MASKED_MMOD_THRESHOLD)]
        self._keep_weak(image, ("mmod", upsample), [(r, s) for r, s in dets if s < 0.0])
        return [(r, s) for r, s in dets if s >= 0.0]

    def masked_rects(self, image: np.ndarray, upsample: int = 1) -> list[tuple[Any, float, str]]:
        """As DlibEngine's, with MMOD's weak detections too (at `upsample` searched for when
        missing)."""
        image = check_rgb_image(image)
        if ("mmod", upsample) not in self._kept_weak(image):
            self.detect_rects(image, "mmod", upsample)
        return super().masked_rects(image, upsample)

    def mmod_detections(self, image: np.ndarray, upsample: int = 1,
                        threshold: float = 0.0) -> list[mmod_decode.Detection]:
        """dlib's cnn_face_detection_model_v1(image, upsample) on ONNX Runtime: unclipped boxes
        (with `threshold` 0, dlib's own; lower finds weaker faces)."""
        if upsample < 0:
            raise ValueError("upsample must be >= 0.")
        if mmod_too_small(image, upsample):
            return []
        key = (upsample, *_image_key(image))
        last = getattr(self._last_mmod, "value", None)
        if last is not None and last[0] == key:
            scores, rects = last[1], last[2]
        else:
            scores, rects = self._mmod_scores(image, upsample)
            # The masked step looks again at the same image with a lower bar: keep the network's
            # output for that second look (one per thread, so threads never share it).
            self._last_mmod.value = (key, scores, rects)
        if scores is None or not rects:
            return []
        dets = mmod_decode.decode(scores, rects, self._mmod_network(), threshold)
        if upsample:
            dets = [mmod_decode.Detection(mmod_decode.rect_down_2(d.rect, upsample), d.score) for d in dets]
        return dets

    def _mmod_scores(self, image: np.ndarray, upsample: int) -> tuple[Optional[np.ndarray], list[Any]]:
        net = self._mmod_network()
        img = np.ascontiguousarray(image)
        for _ in range(upsample):
            # dlib's pyramid_up: a bilinear resize to the size pyramid_down<2> maps the image up to
            rows, cols = mmod_decode.upsampled_size_2(*img.shape[:2])
            img = self._dlib.resize_image(img, rows, cols)
        pyramid, rects = mmod_decode.build_pyramid(img, net)
        if not rects:
            return None, []
        try:
            scores = self._session("dlib-mmod").run(["scores"], {"pyramid": pyramid})[0][0]
        except Exception as exc:  # onnxruntime raises its own untyped errors (a 1x1 image, ...)
            h, w = image.shape[:2]
            raise ImageError(f"the MMOD detector cannot search a {w}x{h} image ({type(exc).__name__}); "
                             "pass a photograph of the face.") from None
        return scores, list(rects)

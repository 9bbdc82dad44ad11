"""dlib's networks read in NumPy, converted to ONNX and run on ONNX Runtime, against dlib itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from datasets_path import datasets

from safeface.errors import ModelError
from safeface.hashing import sha256_file_cached
from safeface.imageio import load_image
from safeface.hazmat.vision import get_engine, mmod_decode
from safeface.modelstore import dlib_format, onnx_convert, packs, registry
from safeface.hazmat.vision.dlib_engine import DlibEngine
from safeface.hazmat.vision.onnx_engine import OnnxEngine

from tests.face_fixtures import lfw_face_chips

DATASETS = datasets()
LFW = DATASETS / "lfw-dev" / "images"
N_FACES = 100


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"the shared test images are not here ({path}); set SAFEFACE_DATASETS to their folder")
    return path


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("safeface_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SAFEFACE_HOME", str(root))
        yield root


@pytest.fixture(scope="module")
def engines(home: Path) -> tuple[DlibEngine, OnnxEngine]:
    return DlibEngine(), OnnxEngine(intra_op_threads=2)


@pytest.fixture(scope="module")
def lfw_chips(engines: tuple[DlibEngine, OnnxEngine]) -> np.ndarray:
    """Aligned chips of the first N_FACES LFW images where HOG finds a face (detected once)."""
    dl, _ = engines
    chips = lfw_face_chips(dl, _need(LFW), N_FACES)
    if len(chips) < N_FACES:
        pytest.skip(f"fewer than {N_FACES} LFW faces found")
    return chips


# -- the reader -----------------------------------------------------------------------------------

def test_reader_parses_the_recognition_resnet() -> None:
    net = dlib_format.read_network(registry.verified_path("dlib-resnet-v1"))
    assert net.input.kind == "input_rgb_image_sized" and net.input.size == (150, 150)
    np.testing.assert_allclose(net.input.mean_rgb, (122.782, 117.001, 104.298), atol=1e-4)
    assert isinstance(net.loss, dlib_format.MetricLoss)
    kinds = [type(layer).__name__ for layer in net.layers]
    assert kinds.count("Conv") == 29 and kinds.count("AddPrev") == 14 and kinds.count("Skip") == 4
    dense = net.layers[-1]
    assert isinstance(dense, dlib_format.Dense) and dense.weight.shape == (256, 128) and dense.bias is None
    # every add_prev and skip points back at a tag below it
    for i, layer in enumerate(net.layers):
        if isinstance(layer, (dlib_format.AddPrev, dlib_format.Skip)):
            assert layer.source < i and isinstance(net.layers[layer.source], dlib_format.Tag)


def test_reader_parses_the_mmod_detector() -> None:
    net = dlib_format.read_network(registry.verified_path("dlib-mmod"))
    assert net.input.kind == "input_rgb_image_pyramid"
    assert isinstance(net.loss, dlib_format.MmodLoss)
    assert [(w.width, w.height) for w in net.loss.windows] == [(80, 80)]
    convs = [layer for layer in net.layers if isinstance(layer, dlib_format.Conv)]
    assert [c.weight.shape[0] for c in convs] == [16, 32, 32, 45, 45, 45, 1]
    # bn_con layers arrive as affine with dlib's conversion
    assert sum(isinstance(layer, dlib_format.Affine) for layer in net.layers) == 6
    assert mmod_decode.output_to_input_map(net) == (8.0, 14.0, 8.0, 14.0)


@pytest.mark.parametrize("keep", [0, 1, 40, 5000, -1])
def test_truncated_file_raises_model_error(keep: int) -> None:
    data = registry.verified_path("dlib-mmod").read_bytes()
    cut = data[:keep] if keep >= 0 else data[:-1]
    with pytest.raises(ModelError, match="dlib network|ends early"):
        dlib_format.parse_network(cut, "mmod.dat")


def test_trailing_and_garbage_bytes_raise_model_error(tmp_path: Path) -> None:
    data = registry.verified_path("dlib-mmod").read_bytes()
    with pytest.raises(ModelError, match="bytes follow"):
        dlib_format.parse_network(data + b"\x00\x01", "mmod.dat")
    bad = tmp_path / "noise.dat"
    bad.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ModelError):
        dlib_format.read_network(bad)


def test_reader_rejects_an_unknown_layer() -> None:
    data = registry.verified_path("dlib-mmod").read_bytes()
    assert b"\x01\x05relu_" in data
    altered = data.replace(b"\x01\x05relu_", b"\x01\x05gelu_", 1)
    with pytest.raises(ModelError, match="'gelu_' is not one safeface can convert"):
        dlib_format.parse_network(altered, "mmod.dat")
    altered = data.replace(b"loss_mmod_", b"loss_yolo_", 1)
    with pytest.raises(ModelError, match="loss layer 'loss_yolo_'"):
        dlib_format.parse_network(altered, "mmod.dat")


# -- one field of a dlib file altered ------------------------------------------------------------------

def _mmod() -> bytes:
    return registry.verified_path("dlib-mmod").read_bytes()


def _stream_at(data: bytes, name: bytes) -> dlib_format._Stream:
    """A stream positioned just after the first layer name `name` (dlib writes it with a
    one-byte length prefix: control byte 0x01, then the length)."""
    i = data.index(name)
    assert data[i - 2:i] == bytes([1, len(name)])
    s = dlib_format._Stream(data, "m")
    s.pos = i - 2
    assert s.string() == name.decode()
    return s


def test_an_out_of_range_float_exponent_is_refused() -> None:
    """A float whose exponent is outside dlib's range is refused, not read as infinity."""
    data = _mmod()
    s = _stream_at(data, b"input_rgb_image_pyramid")
    start = s.pos
    s.real()
    # mantissa 1, exponent 40000 (0x9c40), in dlib's integer code
    altered = data[:start] + b"\x01\x01" + b"\x02\x40\x9c" + data[s.pos:]
    with pytest.raises(ModelError, match="bad float exponent"):
        dlib_format.parse_network(altered, "mmod.dat")


def test_an_mmod_loss_without_detector_windows_is_refused() -> None:
    """A detector whose loss layer lists no detection windows is refused."""
    data = _mmod()
    s = _stream_at(data, b"loss_mmod_")
    start = s.pos
    assert s.integer() == 1  # options version 1: one window, width and height
    s.integer(), s.integer()
    altered = data[:start] + b"\x01\x02" + b"\x01\x00" + data[s.pos:]  # version 2, zero windows
    with pytest.raises(ModelError, match="without detector windows"):
        dlib_format.parse_network(altered, "mmod.dat")


def test_a_negative_filter_shape_is_a_model_error() -> None:
    """A layer whose filter shape is negative raises ModelError, not a bare NumPy error."""
    data = bytearray(_mmod())
    s = _stream_at(bytes(data), b"con_4")
    s.tensor()
    for _ in range(7):
        s.integer()  # filters, rows, cols, stride, padding
    assert s.integer() == 1  # alias version
    assert data[s.pos] == 0x01
    data[s.pos] |= 0x80  # the first filter dimension, negated
    with pytest.raises(ModelError, match="dlib network"):
        dlib_format.parse_network(bytes(data), "mmod.dat")


def test_an_unknown_fc_bias_mode_is_refused() -> None:
    """The recognizer's fully connected layer with an unknown bias mode is refused."""
    data = registry.verified_path("dlib-resnet-v1").read_bytes()
    s = _stream_at(data, b"fc_2")
    s.integer(), s.integer()
    s.tensor()
    s.alias(), s.alias()
    start = s.pos
    s.integer()
    altered = data[:start] + b"\x01\x07" + data[s.pos:]
    with pytest.raises(ModelError, match="unknown fc bias mode 7"):
        dlib_format.parse_network(altered, "resnet.dat")


def test_a_converted_file_changed_after_its_check_is_not_loaded(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The bytes given to ONNX Runtime are hashed again: a converted file swapped after its check
    is refused."""
    monkeypatch.setenv("SAFEFACE_HOME", str(tmp_path / "home"))
    model = onnx_convert.ensure_converted("dlib-mmod")
    good = onnx_convert.load_session_bytes(model)
    model.path.write_bytes(good[:-10] + b"0123456789")
    with pytest.raises(ModelError, match="changed after it was checked"):
        onnx_convert.load_session_bytes(model)


def test_a_bad_boolean_byte_is_refused() -> None:
    """A layer wrapper's boolean field holding anything but '0' or '1' is refused."""
    data = _mmod()
    i = data.index(b"input_rgb_image_pyramid")
    s = dlib_format._Stream(data, "m")
    s.pos = i - 2
    dlib_format._read_input(s)
    dlib_format._read_details(s)  # the first layer over the input; three flags follow
    assert data[s.pos:s.pos + 1] in (b"0", b"1")
    altered = data[:s.pos] + b"7" + data[s.pos + 1:]
    with pytest.raises(ModelError, match="bad boolean byte"):
        dlib_format.parse_network(altered, "mmod.dat")


# -- conversion cache ------------------------------------------------------------------------------------

def test_conversion_is_cached_verified_and_rebuilt_when_altered(home: Path) -> None:
    first = onnx_convert.ensure_converted("dlib-mmod")
    src_sha = sha256_file_cached(registry.verified_path("dlib-mmod"))
    assert first.path == home / "models" / "converted" / src_sha / "dlib-mmod.onnx"
    record = json.loads((home / "models" / "registry.json").read_text())
    row = [f for f in record["files"] if f["name"] == "dlib-mmod"][0]
    assert (row["kind"], row["derived_from"], row["sha256"]) == ("converted", src_sha, first.onnx_sha256)
    assert row["path"] == f"converted/{src_sha}/dlib-mmod.onnx" and row["licence"] == registry.entry("dlib-mmod").licence
    mtime = first.path.stat().st_mtime_ns
    again = onnx_convert.ensure_converted("dlib-mmod")
    assert again.path.stat().st_mtime_ns == mtime and again.onnx_sha256 == first.onnx_sha256

    first.path.write_bytes(first.path.read_bytes()[:-10] + b"0123456789")  # tampered
    listed = {r["name"]: r for r in packs.list_models() if r["kind"] == "onnx"}
    assert listed["dlib-mmod"]["verified"] is False and listed["dlib-mmod"]["licence"] == registry.entry("dlib-mmod").licence
    checked = {r["name"]: r for r in packs.verify_installed()}
    assert checked["dlib-mmod (converted)"]["ok"] is False and "altered" in checked["dlib-mmod (converted)"]["reason"]
    rebuilt = onnx_convert.ensure_converted("dlib-mmod")
    assert sha256_file_cached(rebuilt.path) == rebuilt.onnx_sha256 == first.onnx_sha256

    assert {r["name"]: r["ok"] for r in packs.verify_installed()}["dlib-mmod (converted)"] is True
    records = onnx_convert.convert_all()
    assert sorted(r["name"] for r in records) == ["dlib-mmod", "dlib-resnet-v1"]
    assert all(Path(r["path"]).is_file() for r in records)


def test_a_source_changed_in_place_with_its_time_put_back_is_not_converted(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The source's check may be a hash remembered for its size and time: a file changed in
    place, same size, time put back, kept that hash, and its altered weights were converted and
    recorded as derived from the genuine file. The bytes converted are hashed themselves now."""
    import os

    home = tmp_path / "home"  # no conversion made yet
    monkeypatch.setenv("SAFEFACE_HOME", str(home))
    src = tmp_path / "mmod.dat"
    src.write_bytes(registry.verified_path("dlib-mmod").read_bytes())
    genuine = sha256_file_cached(src)  # checked once, as a running engine has
    st = src.stat()
    raw = bytearray(src.read_bytes())
    raw[raw.index(b"con_") + 60] ^= 0x40  # inside the first convolution's weights
    src.write_bytes(bytes(raw))
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert sha256_file_cached(src) == genuine  # the remembered hash, not the file's
    with pytest.raises(ModelError, match="changed while it was being converted"):
        onnx_convert.ensure_converted("dlib-mmod", source=src)
    assert not (home / "models" / "converted" / genuine).exists()
    assert not [f for f in registry.load().files() if f.name == "dlib-mmod"]


def test_a_source_rewritten_after_its_check_is_not_what_gets_converted(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A dlib file rewritten by another process right after conversion read and hashed it: the
    ONNX recorded as derived from the genuine hash is the genuine file's conversion."""
    import hashlib

    monkeypatch.setenv("SAFEFACE_HOME", str(tmp_path / "home"))
    genuine = registry.verified_path("dlib-mmod").read_bytes()
    src = tmp_path / "mmod.dat"
    src.write_bytes(genuine)
    altered = bytearray(genuine)
    altered[altered.index(b"con_") + 60] ^= 0x40  # inside the first convolution's weights
    real = onnx_convert.read_hashed

    def read_then_rewritten(path: Path) -> tuple[str, bytes]:
        got = real(path)
        Path(path).write_bytes(bytes(altered))  # another writer, just after this read
        return got

    monkeypatch.setattr(onnx_convert, "read_hashed", read_then_rewritten)
    made = onnx_convert.ensure_converted("dlib-mmod", source=src)
    assert made.source_sha256 == hashlib.sha256(genuine).hexdigest()
    expected = hashlib.sha256(onnx_convert.build("dlib-mmod", genuine).SerializeToString()).hexdigest()
    assert made.onnx_sha256 == expected == hashlib.sha256(made.path.read_bytes()).hexdigest()


def test_models_verify_hashes_a_file_changed_in_place_afresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`models verify` in a process that has hashed the converted file already (a service)
    read its remembered hash: a file changed in place, size and time put back, passed."""
    import os

    monkeypatch.setenv("SAFEFACE_HOME", str(tmp_path / "home"))
    made = onnx_convert.ensure_converted("dlib-mmod")
    assert {r["name"]: r["ok"] for r in packs.verify_installed()}["dlib-mmod (converted)"] is True
    st = made.path.stat()
    raw = bytearray(made.path.read_bytes())
    raw[-5] ^= 0x01
    made.path.write_bytes(bytes(raw))
    os.utime(made.path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert {r["name"]: r["ok"] for r in packs.verify_installed()}["dlib-mmod (converted)"] is False


def test_unreadable_registry_is_refused_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFEFACE_HOME", str(tmp_path))
    reg = tmp_path / "models" / "registry.json"
    reg.parent.mkdir(parents=True)
    reg.write_text("{not json")
    with pytest.raises(ModelError, match="registry .* is unreadable"):
        onnx_convert.ensure_converted("dlib-mmod")
    assert reg.read_text() == "{not json"  # left for the user to look at, not overwritten


@pytest.mark.slow
def test_get_engine_by_name(home: Path) -> None:
    assert get_engine("onnx").name == "onnx"
    assert type(get_engine("dlib")) is DlibEngine
    assert type(get_engine()) is OnnxEngine  # the default once descriptors match dlib's
    with pytest.raises(ModelError, match="unknown engine"):
        get_engine("tensorflow")


def test_engines_without_settings_are_shared_by_a_process_and_not_by_its_children() -> None:
    """Each handle used to load its own models (about a second, and their memory); a forked
    child must not use the parent's ONNX Runtime sessions."""
    import os

    shared = get_engine("onnx")
    assert get_engine("onnx") is shared and get_engine() is shared
    assert get_engine("dlib") is get_engine("dlib") is not shared
    assert get_engine("onnx", batch_size=4) is not shared  # settings of its own: a new engine
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report whether it was handed the parent's engine, then leave
        try:
            os.write(write, b"same" if get_engine("onnx") is shared else b"own")
        finally:
            os._exit(0)
    os.close(write)
    answer = os.read(read, 16)
    os.close(read)
    os.waitpid(pid, 0)
    assert answer == b"own"


# -- equivalence with dlib ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_descriptors_equal_dlibs_on_100_lfw_faces(engines: tuple[DlibEngine, OnnxEngine], lfw_chips: np.ndarray) -> None:
    dl, ox = engines
    ref = dl.raw_descriptors(lfw_chips)
    got = ox.raw_descriptors(lfw_chips)
    assert got.shape == ref.shape == (N_FACES, 128)
    assert np.abs(got - ref).max() < 1e-4
    unit = ox.embed_chips(lfw_chips[:8])
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-5)
    # a batch gives what one chip at a time gives
    np.testing.assert_allclose(ox.raw_descriptors(lfw_chips[3:4])[0], got[3], atol=1e-5)


def _mmod_cases() -> list[tuple[str, int, int]]:
    # (image, downscale step, upsample): small enough that dlib's own MMOD stays quick; t1.jpg is
    # cut to its top-left 640x443 (three of its six faces)
    return [
        ("insightface/t1.jpg", 1, 0),
        ("face_recognition/test_images/obama.jpg", 3, 0),
        ("lfw-dev/images/AJ_Lamas/AJ_Lamas_0001.jpg", 1, 1),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("name,step,upsample", _mmod_cases())
def test_mmod_boxes_equal_dlibs_cnn_detector(engines: tuple[DlibEngine, OnnxEngine], name: str, step: int,
                                             upsample: int) -> None:
    dl, ox = engines
    path = _need(DATASETS / name)
    image = load_image(path)[::step, ::step]
    if name.endswith("t1.jpg"):
        image = image[:443, :640]
    image = np.ascontiguousarray(image)
    ref = sorted((r.left(), r.top(), r.right(), r.bottom()) for r, _ in dl.detect_rects(image, "mmod", upsample))
    got = sorted(d.rect for d in ox.mmod_detections(image, upsample))
    assert len(ref) == (3 if name.endswith("t1.jpg") else 1)
    assert len(got) == len(ref)
    assert np.abs(np.array(got) - np.array(ref)).max() <= 2
    faces = ox.detect(image, "mmod", upsample)
    assert len(faces) == len(ref) and all(f.detector == "mmod" and f.landmarks.shape == (5, 2) for f in faces)


def test_t1_has_six_faces_with_onnx_mmod(engines: tuple[DlibEngine, OnnxEngine]) -> None:
    _, ox = engines
    image = load_image(_need(DATASETS / "insightface" / "t1.jpg"))
    assert len(ox.detect(image, "mmod", upsample=0)) == 6


def test_hog_still_dlibs(engines: tuple[DlibEngine, OnnxEngine]) -> None:
    dl, ox = engines
    image = load_image(_need(DATASETS / "face_recognition" / "test_images" / "obama.jpg"))
    assert [f.box for f in ox.detect(image, "hog")] == [f.box for f in dl.detect(image, "hog")]


@pytest.mark.slow
def test_mmod_landmarks_start_from_a_hog_like_box(engines: tuple[DlibEngine, OnnxEngine]) -> None:
    """MMOD faces keep the detector's box, but their landmarks start from the box shifted to where
    HOG would put it; they land closer to the landmarks HOG's box gives than unshifted ones do."""
    from safeface.anonymize.detect import iou
    from safeface.hazmat.vision.dlib_engine import MMOD_LANDMARK_SHIFT

    _, ox = engines
    shifted_err, plain_err, faces = 0.0, 0.0, 0
    for rel in ("test_images/obama.jpg", "test_images/biden.jpg", "test_images/obama2.jpg", "examples/two_people.jpg"):
        # Halved (faces still 69-142 px wide): MMOD at upsample 1, the pipeline's step, costs a fifth.
        image = np.ascontiguousarray(load_image(_need(DATASETS / "face_recognition" / rel))[::2, ::2])
        hog = ox.detect(image, "hog", 1)
        for (rect, _), face in zip(ox.detect_rects(image, "mmod", 1), ox.detect(image, "mmod", 1)):
            assert face.box[0] == max(rect.left(), 0) and face.box[1] == max(rect.top(), 0)
            assert np.allclose(face.landmarks, ox.landmarks_for(image, ox._shifted(rect, MMOD_LANDMARK_SHIFT)))
            twin = max(hog, key=lambda h: iou(h.box, face.box))
            width = twin.box[2] - twin.box[0]
            shifted_err += float(np.linalg.norm(face.landmarks - twin.landmarks, axis=1).mean()) / width
            plain_err += float(np.linalg.norm(ox.landmarks_for(image, rect) - twin.landmarks, axis=1).mean()) / width
            faces += 1
    assert faces >= 5
    assert shifted_err < plain_err, (shifted_err, plain_err)


def test_onnx_runtime_keeps_no_telemetry_and_reports_nothing(tmp_path: Path) -> None:
    """ONNX Runtime's telemetry wrote a device id and an event store under ~/.cache and queued
    session and inference events (model names, counts, timings) for its vendor: an ordinary
    embedding through the default engine left them in a fresh home folder. The engine now
    switches it off before the library loads."""
    import subprocess
    import sys

    from safeface.modelstore.registry import safeface_home
    from tests.child_process import child_env

    _need(LFW)
    home = tmp_path / "home"
    home.mkdir()
    face = next(LFW.rglob("*.jpg"))
    code = ("import sys; from safeface.hazmat.vision import get_engine; from safeface.imageio import load_image; "
            "import numpy as np; e = get_engine('onnx'); print(len(e.detect(load_image(sys.argv[1]))), "
            "e.embed_chips(np.zeros((1, 150, 150, 3), np.uint8)).shape)")
    env = child_env(HOME=str(home), SAFEFACE_HOME=str(safeface_home()))
    env.pop("ORT_DISABLE_TELEMETRY", None)
    run = subprocess.run([sys.executable, "-c", code, str(face)], env=env, cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    written = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
    assert written == [], written

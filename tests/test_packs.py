"""Model packs: fetch over a local HTTP server (the only mock is the network's far end: a real
server on 127.0.0.1 serving real zip files), verification, refusal of attribute models, and the
insightface engine on tiny real ONNX models run by ONNX Runtime."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import shutil
import stat
import sys
import threading
import zipfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from safeface.cli import _Parser, models_cmds  # noqa: E402
from safeface.errors import ModelError, ModelFetchError  # noqa: E402
from safeface.modelstore import fetch, packs, registry  # noqa: E402
from safeface.hazmat.vision.arcface_align import ARCFACE_DST, norm_crop, umeyama, warp_affine  # noqa: E402
from safeface.hazmat.vision.insightface_engine import InsightFaceEngine  # noqa: E402

DET_INPUT = 128
STRIDES = (8, 16, 32)
ANCHORS = 2
EMB_DIM = 512
RNG_SEED = 7


# -- tiny models -----------------------------------------------------------------------------------
def _model_bytes(nodes: list[Any], inputs: list[Any], outputs: list[Any], inits: list[Any]) -> bytes:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _scrfd_maps() -> list[np.ndarray]:
    """Score, box and keypoint maps (in stride units) with two faces: a strong one on two anchors
    of one stride-8 cell (NMS keeps one) and a weaker one at stride 16."""
    scores, boxes, kps = [], [], []
    for s in STRIDES:
        n = (DET_INPUT // s) ** 2 * ANCHORS
        scores.append(np.full((n, 1), 0.1, np.float32))
        boxes.append(np.ones((n, 4), np.float32))
        kps.append(np.zeros((n, 10), np.float32))
    face_kps = np.array([-1, -0.5, 1, -0.5, 0, 0.3, -0.8, 1.2, 0.8, 1.2], np.float32)
    i = (8 * 16 + 8) * ANCHORS  # stride 8, cell (8, 8): centre (64, 64)
    scores[0][i] = 0.9
    boxes[0][i] = 3.0
    kps[0][i] = face_kps
    scores[0][i + 1] = 0.8  # the same face seen by the second anchor, a little larger
    boxes[0][i + 1] = 3.2
    kps[0][i + 1] = face_kps
    j = (2 * 8 + 2) * ANCHORS  # stride 16, cell (2, 2): centre (32, 32)
    scores[1][j] = 0.7
    boxes[1][j] = 1.0
    kps[1][j] = face_kps * 0.5
    return scores + boxes + kps


def fake_scrfd() -> bytes:
    maps = _scrfd_maps()
    inp = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, DET_INPUT, DET_INPUT])
    nodes = [
        helper.make_node("ReduceMean", ["input.1"], ["m"], keepdims=0),
        helper.make_node("Mul", ["m", "zero"], ["z"]),
    ]
    inits = [numpy_helper.from_array(np.array(0.0, np.float32), "zero")]
    outputs = []
    for k, arr in enumerate(maps):
        name = str(448 + k)  # real SCRFD exports have numeric output names
        inits.append(numpy_helper.from_array(arr, f"c{k}"))
        nodes.append(helper.make_node("Add", [f"c{k}", "z"], [name]))
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(arr.shape)))
    return _model_bytes(nodes, [inp], outputs, inits)


def arcface_weight() -> np.ndarray:
    return np.random.default_rng(RNG_SEED).normal(size=(147, EMB_DIM)).astype(np.float32)


def fake_arcface() -> bytes:
    inp = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["None", 3, 112, 112])
    out = helper.make_tensor_value_info("683", TensorProto.FLOAT, ["None", EMB_DIM])
    nodes = [
        helper.make_node("AveragePool", ["input.1"], ["p"], kernel_shape=[16, 16], strides=[16, 16]),
        helper.make_node("Flatten", ["p"], ["f"], axis=1),
        helper.make_node("MatMul", ["f", "W"], ["683"]),
    ]
    return _model_bytes(nodes, [inp], [out], [numpy_helper.from_array(arcface_weight(), "W")])


def fake_genderage() -> bytes:
    inp = helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 96, 96])
    out = helper.make_tensor_value_info("fc1", TensorProto.FLOAT, [1, 3])
    nodes = [
        helper.make_node("GlobalAveragePool", ["data"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"], axis=1),
        helper.make_node("MatMul", ["f", "W"], ["fc1"]),
    ]
    return _model_bytes(nodes, [inp], [out], [numpy_helper.from_array(np.eye(3, dtype=np.float32), "W")])


def expected_embedding(chips: np.ndarray) -> np.ndarray:
    x = (chips.astype(np.float32) - 127.5) / 127.5
    pooled = x.reshape(len(x), 7, 16, 7, 16, 3).mean(axis=(2, 4))  # (N, 7, 7, 3)
    flat = pooled.transpose(0, 3, 1, 2).reshape(len(x), -1)  # channel-major, as Flatten of NCHW
    e = flat @ arcface_weight()
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def make_zip(members: dict[str, bytes], symlinks: tuple[str, ...] = (),
             method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name in symlinks:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


@pytest.fixture(scope="module")
def models() -> dict[str, bytes]:
    return {"det": fake_scrfd(), "rec": fake_arcface(), "ga": fake_genderage()}


# -- a real HTTP server on loopback ------------------------------------------------------------------
class Server:
    def __init__(self) -> None:
        self.routes: dict[str, tuple[str, Any]] = {}
        self.requests: list[str] = []
        routes, requests = self.routes, self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                requests.append(self.path)
                kind, payload = routes.get(self.path, ("missing", b""))
                if kind == "missing":
                    self.send_error(404)
                elif kind == "redirect":
                    self.send_response(302)
                    self.send_header("Location", payload)
                    self.end_headers()
                else:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/zip")
                    if kind != "nolength":
                        self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    # "truncate": promise every byte, send half, close the connection.
                    self.wfile.write(payload[: len(payload) // 2] if kind == "truncate" else payload)
                    self.wfile.flush()
                    self.close_connection = True

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def add(self, path: str, payload: Any, kind: str = "ok") -> str:
        self.routes[path] = (kind, payload)
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


@pytest.fixture()
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SAFEFACE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def good_pack(models: dict[str, bytes], prefix: str = "") -> bytes:
    return make_zip({f"{prefix}det_10g.onnx": models["det"], f"{prefix}w600k_r50.onnx": models["rec"],
                     f"{prefix}readme.txt": b"tiny test pack"})


def test_good_fetch_installs_and_engine_runs(server: Server, models: dict[str, bytes], tmp_path: Path) -> None:
    data = good_pack(models, prefix="tinypack/")
    url = server.add("/tinypack.zip", data)
    dest = tmp_path / "packs"
    result = fetch.fetch_pack("tinypack", dest_dir=dest, url=url, sha256=sha(data))

    assert result.path == dest / "tinypack" and not result.already_installed
    assert result.downloaded_bytes == len(data) and result.archive_sha256 == sha(data)
    assert {(f.file, f.role) for f in result.installed} == {("det_10g.onnx", "detection"), ("w600k_r50.onnx", "recognition")}
    assert [s["file"] for s in result.skipped] == ["readme.txt"]
    assert sorted(p.name for p in dest.iterdir()) == ["tinypack"]  # no archive or staging left
    assert sorted(p.name for p in result.path.iterdir()) == ["det_10g.onnx", "w600k_r50.onnx"]
    # One registry file records the pack and each of its files with hash, licence and source.
    doc = json.loads((registry.registry_path()).read_text())
    files = {Path(f["path"]).name: f for f in doc["files"]}
    assert files["w600k_r50.onnx"]["sha256"] == sha(models["rec"]) and files["det_10g.onnx"]["sha256"] == sha(models["det"])
    assert files["det_10g.onnx"]["source"] == url and files["det_10g.onnx"]["kind"] == "pack"
    assert "licence" in files["det_10g.onnx"]["licence"]
    assert [p["archive_sha256"] for p in doc["packs"]] == [sha(data)]

    engine = InsightFaceEngine(result.path)
    assert (engine.name, engine.embedding_dim, engine.chip_size) == ("insightface", EMB_DIM, 112)
    assert engine.det_size == (DET_INPUT, DET_INPUT)  # a fixed-size model runs at its own size
    assert "CPUExecutionProvider" in engine.providers

    image = np.random.default_rng(1).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    faces = engine.detect(image)
    # Input 128 for a 256 image: everything the model says is doubled back.
    assert [round(f.score, 3) for f in faces] == [0.9, 0.7]
    np.testing.assert_allclose(faces[0].box, (80, 80, 176, 176), atol=1e-3)
    np.testing.assert_allclose(faces[1].box, (32, 32, 96, 96), atol=1e-3)
    offs = np.array([-1, -0.5, 1, -0.5, 0, 0.3, -0.8, 1.2, 0.8, 1.2], np.float32).reshape(5, 2)
    np.testing.assert_allclose(faces[0].landmarks, (offs * 8 + 64) * 2, atol=1e-3)
    assert faces[0].detector == "scrfd"

    chips = engine.chips(image, faces)
    assert chips.shape == (2, 112, 112, 3) and chips.dtype == np.uint8
    emb = engine.embed_chips(chips)
    assert emb.shape == (2, EMB_DIM) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(emb, expected_embedding(chips), atol=1e-4)
    assert engine.embed_chips(np.zeros((0, 112, 112, 3), np.uint8)).shape == (0, EMB_DIM)

    # By name, from the same packs directory; and a second fetch finds it installed.
    assert InsightFaceEngine("tinypack", dest_dir=dest).embedding_dim == EMB_DIM
    again = fetch.fetch_pack("tinypack", dest_dir=dest, url=url, sha256=sha(data))
    assert again.already_installed and len(server.requests) == 1


def test_wrong_hash_fails_and_leaves_nothing(server: Server, models: dict[str, bytes], tmp_path: Path) -> None:
    data = good_pack(models)
    url = server.add("/p.zip", data)
    dest = tmp_path / "packs"
    with pytest.raises(ModelFetchError, match="SHA-256 .* not the expected"):
        fetch.fetch_pack("tinypack", dest_dir=dest, url=url, sha256="0" * 64)
    assert list(dest.iterdir()) == []


def test_no_hash_means_no_download(server: Server, tmp_path: Path) -> None:
    url = server.add("/p.zip", b"whatever")
    with pytest.raises(ModelFetchError, match="never downloads without a hash"):
        fetch.fetch_pack("tinypack", dest_dir=tmp_path, url=url)
    with pytest.raises(ModelFetchError, match="64 hexadecimal"):
        fetch.fetch_pack("tinypack", dest_dir=tmp_path, url=url, sha256="abc")
    # A manifest pack's pinned hash cannot be overridden.
    with pytest.raises(ModelFetchError, match="pinned by the manifest"):
        fetch.fetch_pack("buffalo_l", dest_dir=tmp_path, url=url, sha256="1" * 64)
    assert server.requests == []


def test_truncated_download_fails(server: Server, models: dict[str, bytes], tmp_path: Path) -> None:
    data = good_pack(models)
    url = server.add("/cut.zip", data, kind="truncate")
    dest = tmp_path / "packs"
    with pytest.raises(ModelFetchError, match="truncated|cut short"):
        fetch.fetch_pack("tinypack", dest_dir=dest, url=url, sha256=sha(data))
    assert list(dest.iterdir()) == []


def test_oversized_download_is_stopped(server: Server, models: dict[str, bytes], tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A server announcing, or just sending, more than the size limit is cut off; nothing stays."""
    data = good_pack(models)
    monkeypatch.setattr(fetch, "MAX_ARCHIVE_BYTES", len(data) - 1)
    dest = tmp_path / "packs"
    with pytest.raises(ModelFetchError, match="more than the .*-byte limit; not downloaded"):
        fetch.fetch_pack("tinypack", dest_dir=dest, url=server.add("/big.zip", data), sha256=sha(data))
    with pytest.raises(ModelFetchError, match="sent more than the .*-byte limit"):
        fetch.fetch_pack("tinypack", dest_dir=dest, url=server.add("/quiet.zip", data, kind="nolength"), sha256=sha(data))
    assert list(dest.iterdir()) == []
    monkeypatch.setattr(fetch, "MAX_ARCHIVE_BYTES", len(data))
    assert fetch.fetch_pack("tinypack", dest_dir=dest, url=server.add("/quiet.zip", data, kind="nolength"),
                            sha256=sha(data)).downloaded_bytes == len(data)


def test_attribute_model_is_refused(server: Server, models: dict[str, bytes], tmp_path: Path) -> None:
    data = make_zip({"det_10g.onnx": models["det"], "w600k_r50.onnx": models["rec"], "genderage.onnx": models["ga"],
                     "2d106det.onnx": b"landmarks"})
    url = server.add("/ga.zip", data)
    dest = tmp_path / "packs"
    result = fetch.fetch_pack("gapack", dest_dir=dest, url=url, sha256=sha(data))
    assert [r["file"] for r in result.refused] == ["genderage.onnx"]
    assert "gender/age" in result.refused[0]["reason"] and "refused" in result.refused[0]["reason"]
    assert not (result.path / "genderage.onnx").exists() and not (result.path / "2d106det.onnx").exists()
    assert packs.read_record(result.path).refused[0]["file"] == "genderage.onnx"

    # A pack directory that holds an attribute model is not loaded.
    (result.path / "genderage.onnx").write_bytes(models["ga"])
    with pytest.raises(ModelError, match="attribute model"):
        InsightFaceEngine(result.path)
    assert [r["ok"] for r in fetch.verify_installed(dest) if r["name"] == "gapack"] == [False]

    # An attribute model cannot be installed as a custom recognizer, by name or in disguise.
    ga = tmp_path / "genderage.onnx"
    ga.write_bytes(models["ga"])
    det = tmp_path / "det_x.onnx"
    det.write_bytes(models["det"])
    with pytest.raises(ModelFetchError, match="attribute model"):
        fetch.install_custom(det, ga, name="mine", dest_dir=dest)
    disguised = tmp_path / "w600k_fake.onnx"
    disguised.write_bytes(models["ga"])
    installed = fetch.install_custom(det, disguised, name="mine", dest_dir=dest)
    with pytest.raises(ModelError, match="112x112|classifier"):
        InsightFaceEngine(installed.path)


def test_archive_without_recognizer_fails(server: Server, models: dict[str, bytes], tmp_path: Path) -> None:
    data = make_zip({"det_10g.onnx": models["det"], "genderage.onnx": models["ga"]})
    url = server.add("/norec.zip", data)
    with pytest.raises(ModelFetchError, match="holds no recognizer"):
        fetch.fetch_pack("norec", dest_dir=tmp_path / "packs", url=url, sha256=sha(data))
    assert list((tmp_path / "packs").iterdir()) == []


def test_tampered_file_refused_at_load(server: Server, models: dict[str, bytes], tmp_path: Path) -> None:
    data = good_pack(models)
    dest = tmp_path / "packs"
    result = fetch.fetch_pack("tinypack", dest_dir=dest, url=server.add("/p.zip", data), sha256=sha(data))
    InsightFaceEngine(result.path)
    rec = result.path / "w600k_r50.onnx"
    raw = bytearray(rec.read_bytes())
    raw[-1] ^= 0xFF
    rec.write_bytes(bytes(raw))
    with pytest.raises(ModelError, match="altered after installation"):
        InsightFaceEngine(result.path)
    rows = {r["name"]: r for r in fetch.verify_installed(dest)}
    assert rows["tinypack"]["ok"] is False and "altered" in rows["tinypack"]["reason"]
    # An edited record does not help: the manifest would catch it for a manifest pack, and for
    # this one the recognizer's hash is checked against the record the fetch wrote.
    with pytest.raises(ModelFetchError, match="does not verify"):
        fetch.fetch_pack("tinypack", dest_dir=dest, url=server.add("/p.zip", data), sha256=sha(data))
    repaired = fetch.fetch_pack("tinypack", dest_dir=dest, url=server.add("/p.zip", data), sha256=sha(data), force=True)
    assert InsightFaceEngine(repaired.path).embedding_dim == EMB_DIM
    assert sorted(p.name for p in dest.iterdir()) == ["tinypack"]


@pytest.mark.parametrize("member", ["../evil.onnx", "/abs/evil.onnx", "a/b/c/w600k_r50.onnx", "..\\evil.onnx"])
def test_unsafe_paths_refused(server: Server, models: dict[str, bytes], tmp_path: Path, member: str) -> None:
    data = make_zip({"det_10g.onnx": models["det"], "w600k_r50.onnx": models["rec"], member: b"x"})
    dest = tmp_path / "a" / "packs"
    with pytest.raises(ModelFetchError, match="unsafe|leave the pack directory|nested"):
        fetch.fetch_pack("tinypack", dest_dir=dest, url=server.add("/t.zip", data), sha256=sha(data))
    assert list(dest.iterdir()) == [] and sorted(p.name for p in (tmp_path / "a").iterdir()) == ["packs"]


def test_symlink_member_refused(server: Server, models: dict[str, bytes], tmp_path: Path) -> None:
    data = make_zip({"det_10g.onnx": models["det"], "w600k_r50.onnx": models["rec"]}, symlinks=("link.onnx",))
    with pytest.raises(ModelFetchError, match="symbolic link"):
        fetch.fetch_pack("tinypack", dest_dir=tmp_path / "p", url=server.add("/s.zip", data), sha256=sha(data))
    assert list((tmp_path / "p").iterdir()) == []


def test_non_loopback_http_refused(server: Server, tmp_path: Path) -> None:
    with pytest.raises(ModelFetchError, match="only https"):
        fetch.fetch_pack("tinypack", dest_dir=tmp_path, url="http://example.com/p.zip", sha256="a" * 64)
    with pytest.raises(ModelFetchError, match="only https"):
        fetch.fetch_pack("tinypack", dest_dir=tmp_path, url="ftp://127.0.0.1/p.zip", sha256="a" * 64)
    # A loopback server may not redirect the download to plain http elsewhere.
    url = server.add("/r.zip", "http://example.com/p.zip", kind="redirect")
    with pytest.raises(ModelFetchError, match="only https"):
        fetch.fetch_pack("tinypack", dest_dir=tmp_path / "p", url=url, sha256="a" * 64)
    assert server.requests == ["/r.zip"]


def test_manifest_packs() -> None:
    specs = {s.name: s for s in packs.pack_specs()}
    assert set(specs) == {"buffalo_l", "buffalo_s", "antelopev2", "custom"}
    for name in ("buffalo_l", "buffalo_s", "antelopev2"):
        s = specs[name]
        assert s.url == f"https://github.com/deepinsight/insightface/releases/download/v0.7/{name}.zip"
        assert s.sha256 is not None and len(s.sha256) == 64
        assert "non-commercial" in s.licence
        roles = {m.file: m.role for m in s.members}
        assert roles["genderage.onnx"] == "attribute"
        assert sorted(r for r in roles.values() if r in ("detection", "recognition")) == ["detection", "recognition"]
        assert packs.classify("genderage.onnx", s) == "attribute"
    assert specs["custom"].url is None
    with pytest.raises(ModelFetchError, match="add-custom"):
        fetch.fetch_pack("custom")


# -- alignment ---------------------------------------------------------------------------------------
def test_umeyama_recovers_a_similarity() -> None:
    rng = np.random.default_rng(3)
    angle, scale, t = 0.4, 1.7, np.array([12.0, -5.0])
    r = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = rng.uniform(0, 100, (5, 2))
    m = umeyama(src, src @ r.T + t)
    np.testing.assert_allclose(m[:, :2], r, atol=1e-9)
    np.testing.assert_allclose(m[:, 2], t, atol=1e-9)
    with pytest.raises(ValueError):
        umeyama(np.ones((5, 2)), ARCFACE_DST)


def test_norm_crop_is_identity_on_the_template() -> None:
    image = np.random.default_rng(4).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    np.testing.assert_array_equal(norm_crop(image, ARCFACE_DST), image)
    # Twice the size with the face at twice the coordinates: the chip is the image halved.
    big = np.kron(image, np.ones((2, 2, 1), np.uint8))
    chip = norm_crop(big, ARCFACE_DST * 2 + 0.5)
    assert np.abs(chip.astype(int) - image).mean() < 1.0


def smooth_image(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Random content without pixel-scale edges. OpenCV quantises each sampling position to
    1/32 pixel, so on white noise it differs from exact bilinear sampling by up to 255/32 grey
    levels; a camera image, like this one, changes slowly enough for that to stay below 1."""
    from PIL import Image

    small = rng.integers(0, 256, (shape[0] // 16, shape[1] // 16, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((shape[1], shape[0]), Image.BICUBIC))


def test_warp_matches_opencv_when_available() -> None:
    cv2 = pytest.importorskip("cv2", reason="OpenCV is only a peer to compare with, not a dependency")
    rng = np.random.default_rng(5)
    image = smooth_image(rng, (300, 280))
    src = ARCFACE_DST * 1.8 + rng.normal(0, 2, (5, 2)) + [60, 70]
    m = umeyama(src, ARCFACE_DST)
    ours = warp_affine(image, m, (112, 112)).astype(int)
    theirs = cv2.warpAffine(image, m, (112, 112), borderValue=0.0).astype(int)
    assert np.abs(ours - theirs).max() <= 1  # OpenCV interpolates in fixed point


# -- CLI ---------------------------------------------------------------------------------------------
def run_cli(argv: list[str]) -> int:
    parser = _Parser(prog="safeface")
    models_cmds.register(parser.add_subparsers(dest="command", parser_class=_Parser))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


def test_cli_fetch_list_verify(server: Server, models: dict[str, bytes], tmp_path: Path,
                               capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    data = good_pack(models)
    url = server.add("/p.zip", data)
    dest = str(tmp_path / "packs")
    assert run_cli(["models", "fetch", "tinypack", "--url", url, "--sha256", sha(data), "--dest", dest, "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["name"] == "tinypack" and "LICENCE of pack tinypack" in out.err

    assert run_cli(["models", "list", "--dest", dest, "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["tinypack"]["installed"] and rows["tinypack"]["verified"]
    assert rows["buffalo_l"]["installed"] is False and "non-commercial" in rows["buffalo_l"]["licence"]

    assert run_cli(["models", "verify", "--dest", dest]) == 0
    capsys.readouterr()
    (tmp_path / "packs" / "tinypack" / "det_10g.onnx").write_bytes(b"swapped")
    assert run_cli(["models", "verify", "--dest", dest, "--json"]) == 4
    assert [r["ok"] for r in json.loads(capsys.readouterr().out) if r["name"] == "tinypack"] == [False]

    monkeypatch.setitem(sys.modules, "safeface.modelstore.onnx_convert", None)
    assert run_cli(["models", "convert"]) == 1
    assert "ONNX converter" in capsys.readouterr().err


def test_cli_add_custom(models: dict[str, bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    det, rec = tmp_path / "my_det.onnx", tmp_path / "my_rec.onnx"
    det.write_bytes(models["det"])
    rec.write_bytes(models["rec"])
    dest = str(tmp_path / "packs")
    assert run_cli(["models", "add-custom", "--detector", str(det), "--recognizer", str(rec), "--dest", dest,
                    "--licence", "MIT (my own training)"]) == 0
    assert "MIT (my own training)" in capsys.readouterr().err
    engine = InsightFaceEngine(Path(dest) / "custom")
    assert engine.licence == "MIT (my own training)" and engine.embedding_dim == EMB_DIM
    shutil.rmtree(Path(dest) / "custom")
    with pytest.raises(ModelError, match="no installed pack"):
        InsightFaceEngine("custom", dest_dir=Path(dest))


def test_agrees_with_insightface_reference(models: dict[str, bytes], tmp_path: Path) -> None:
    """The same tiny models run by insightface's own SCRFD and ArcFace classes (a peer, present
    in the test environment, not a dependency): same boxes, points and embeddings."""
    pytest.importorskip("cv2", reason="insightface's reference classes need OpenCV")
    scrfd_ref = pytest.importorskip("insightface.model_zoo.scrfd", reason="insightface is only a peer here")
    arcface_ref = pytest.importorskip("insightface.model_zoo.arcface_onnx", reason="insightface is only a peer here")
    from insightface.app.common import Face as RefFace

    det, rec = tmp_path / "det.onnx", tmp_path / "rec.onnx"
    det.write_bytes(models["det"])
    rec.write_bytes(models["rec"])
    engine = InsightFaceEngine(fetch.install_custom(det, rec, dest_dir=tmp_path / "packs").path)
    image = smooth_image(np.random.default_rng(2), (256, 256))
    bgr = np.ascontiguousarray(image[:, :, ::-1])  # insightface works on OpenCV's BGR images

    ref_det = scrfd_ref.SCRFD(model_file=str(det))
    ref_det.prepare(-1, input_size=(DET_INPUT, DET_INPUT))
    boxes, kps = ref_det.detect(bgr, input_size=(DET_INPUT, DET_INPUT))
    faces = engine.detect(image)
    np.testing.assert_allclose([f.box for f in faces], boxes[:, :4], atol=1e-3)
    np.testing.assert_allclose([f.score for f in faces], boxes[:, 4], atol=1e-6)
    np.testing.assert_allclose(np.stack([f.landmarks for f in faces]), kps, atol=1e-3)

    ref_rec = arcface_ref.ArcFaceONNX(model_file=str(rec))
    ref_rec.prepare(-1)
    ref = np.stack([ref_rec.get(bgr, RefFace(bbox=b[:4], kps=k, det_score=b[4])) for b, k in zip(boxes, kps)])
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    ours = engine.embed_chips(engine.chips(image, faces))
    assert np.min(np.sum(ref * ours, axis=1)) > 0.9999


def test_a_failed_registry_write_leaves_the_old_pack_in_place(server: Server, models: dict[str, bytes],
                                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Installing is one step: when recording the new pack fails (disk full at the rename), the
    pack that was there before is back, verified, and nothing half-installed is left."""
    data = good_pack(models)
    dest = tmp_path / "packs"
    fetch.fetch_pack("tinypack", dest_dir=dest, url=server.add("/p.zip", data), sha256=sha(data))
    before = registry.registry_path().read_bytes()
    other = make_zip({"det_10g.onnx": models["det"], "w600k_r50.onnx": fake_arcface() + b"", "notes.txt": b"v2"})

    def full_disk(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(registry, "write_atomic", full_disk)
        with pytest.raises(ModelFetchError, match="nothing was installed"):
            fetch.fetch_pack("tinypack", dest_dir=dest, url=server.add("/p2.zip", other), sha256=sha(other), force=True)
    assert registry.registry_path().read_bytes() == before
    assert sorted(p.name for p in dest.iterdir()) == ["tinypack"]
    assert packs.verify_pack(dest / "tinypack").record.archive_sha256 == sha(data)


def test_a_pack_folder_copied_in_is_not_trusted(models: dict[str, bytes], tmp_path: Path) -> None:
    """A folder of model files put beside installed packs by hand (no record in the registry)
    is not loaded, whatever it holds."""
    dest = tmp_path / "packs"
    (dest / "planted").mkdir(parents=True)
    (dest / "planted" / "det_10g.onnx").write_bytes(models["det"])
    (dest / "planted" / "w600k_r50.onnx").write_bytes(models["rec"])
    with pytest.raises(ModelError, match="not a pack safeface installed"):
        InsightFaceEngine("planted", dest_dir=dest)
    assert packs.installed_pack_dirs(dest) == []

"""The eval commands on a small subset of LFW dev: JSON, HTML and PNG written, values sane,
the workspace summary in place, and an interrupted run resumed from the embedding cache."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from datasets_path import datasets

from safeface.cli import main
from safeface.evaluate.datasets import read_pairs
from safeface.errors import ConfigError
from safeface.evaluate.embedcache import EmbeddingCache, config_fingerprint, embed_images
from safeface.hazmat.vision import DEFAULT_ENGINE, Pipeline, PipelineConfig, get_engine

DATASETS = datasets()
LFW = DATASETS / "lfw-dev"
PAIRS = LFW / "pairsDevTest.txt"

pytestmark = pytest.mark.skipif(not PAIRS.is_file(), reason=f"LFW dev test set not found at {LFW}")

# Flip off keeps these tests at one descriptor per image; flip has its own pipeline tests.
FAST = ["--no-flip", "--no-progress"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    doc: dict[str, Any] = json.loads(out)
    return doc


def _rate(x: Any) -> None:
    assert isinstance(x, float) and 0.0 <= x <= 1.0


@pytest.mark.slow
def test_verify_writes_json_html_plots_and_workspace_summary(tmp_path: Path, cache: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    out, ws = tmp_path / "out", tmp_path / "ws"
    doc = _run(capsys, "eval", "verify", "--pairs", str(PAIRS), "--root", str(LFW), "--limit", "12", *FAST,
               "--out", str(out), "--cache", str(cache), "--workspace", str(ws), "--json")
    m = doc["metrics"]
    assert doc["kind"] == "verify" and doc["engine"] == DEFAULT_ENGINE and doc["options"]["flip"] is False
    assert m["pairs"] == 12 and m["mated_pairs"] == 6 and m["nonmated_pairs"] == 6
    _rate(m["accuracy_10fold"]["mean"])
    assert 2 <= len(m["accuracy_10fold"]["folds"]) <= 10
    assert m["accuracy_best_threshold"]["accuracy"] >= 0.75  # dlib's model on easy LFW pairs
    _rate(m["eer"]["value"])
    assert m["eer"]["low"] <= m["eer"]["value"] <= m["eer"]["high"]
    for far in ("0.01", "0.001", "0.0001"):
        _rate(m["tar_at_far"][far]["tar"]["value"])
        assert m["tar_at_far"][far]["supported"] is False  # 6 non-mated pairs cannot show 1e-2
    assert m["fta"]["images_without_face"] == 0 and m["images"] > 12
    for name in ("verify.json", "verify.html", "verify-roc.png", "verify-det.png", "verify-scores.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "verify-roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (out / "verify.html").read_text()
    assert "verify-det.png" in html and "eer.value" in html
    latest = json.loads((ws / "reports" / "evaluation" / "latest.json").read_text())
    assert set(latest) >= {"generated_at", "kind", "dataset", "engine", "metrics", "plots"}
    assert latest["kind"] == "verify" and set(latest["runs"]) == {"verify"}
    for rel in latest["plots"].values():
        assert (ws / "reports" / "evaluation" / rel).is_file()
    # the workspace gets the summary and plots, never the embeddings
    assert not list(ws.rglob("*.npz"))


@pytest.mark.slow
def test_interrupted_run_resumes_from_the_cache(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pairs = read_pairs(PAIRS, LFW, limit=6)
    paths = list(dict.fromkeys(p for pr in pairs for p in (pr.image1, pr.image2)))
    engine = get_engine(DEFAULT_ENGINE)

    class Interrupted(Pipeline):
        calls = 0

        def detect(self, image, **kw):  # type: ignore[no-untyped-def,override]
            Interrupted.calls += 1
            if Interrupted.calls == 4:
                raise KeyboardInterrupt
            return super().detect(image, **kw)

    cfg = PipelineConfig(flip=False)
    fp = config_fingerprint(Pipeline(engine, cfg))
    with pytest.raises(KeyboardInterrupt):
        embed_images(Interrupted(engine, cfg), paths, EmbeddingCache(tmp_path, fp), progress=False, batch=2)
    # the first batch of two was saved before Ctrl-C hit the second
    assert len(EmbeddingCache(tmp_path, fp).records) == 2
    recs, stats = embed_images(Pipeline(engine, cfg), paths, EmbeddingCache(tmp_path, fp), progress=False)
    assert stats.from_cache == 2 and stats.embedded == len(paths) - 2
    again, stats2 = embed_images(Pipeline(engine, cfg), paths, EmbeddingCache(tmp_path, fp), progress=False)
    assert stats2.embedded == 0 and stats2.from_cache == len(paths)
    for p in paths:
        a, b = recs[p].embedding, again[p].embedding
        assert (a is None) == (b is None) and (a is None or np.array_equal(a, b))
    # no embedding is on disk in the clear, and an altered shard is refused
    shards = sorted(EmbeddingCache(tmp_path, fp).dir.glob("shard-*"))
    assert shards and all(s.suffix == ".sealed" for s in shards)
    on_disk = b"".join(s.read_bytes() for s in shards)
    for r in recs.values():
        if r.embedding is not None:
            assert r.embedding.astype(np.float32).tobytes()[:16] not in on_disk
    original = shards[0].read_bytes()
    shards[0].write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    with pytest.raises(ConfigError, match="does not open"):
        EmbeddingCache(tmp_path, fp)
    shards[0].write_bytes(original)
    # and through the command: a second run embeds nothing new
    args = ["eval", "verify", "--pairs", str(PAIRS), "--root", str(LFW), "--limit", "6", *FAST,
            "--out", str(tmp_path / "out"), "--cache", str(tmp_path), "--json"]
    doc = _run(capsys, *args)
    assert doc["metrics"]["run"]["images_embedded"] == 0


@pytest.mark.slow
def test_identify(tmp_path: Path, cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    doc = _run(capsys, "eval", "identify", "--root", str(LFW), "--limit", "14", "--holdout", "3", *FAST,
               "--out", str(out), "--cache", str(cache), "--json")
    m = doc["metrics"]
    assert m["gallery_size"] >= 2 and m["mated_searches"] >= 2 and m["nonmated_searches"] >= 1
    _rate(m["rank1"]["value"])
    assert m["rank1"]["value"] <= m["rank5"]["value"]
    assert all(a <= b for a, b in zip(m["cmc"], m["cmc"][1:])) and m["cmc"][-1] == 1.0
    assert "0.01" in m["fnir_at_fpir"]
    assert (out / "identify-cmc.png").stat().st_size > 0 and (out / "identify.html").is_file()


def test_demographics_from_operator_labels(tmp_path: Path, cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pairs = read_pairs(PAIRS, LFW, limit=12)
    subjects = sorted({s for p in pairs for s in (p.subject1, p.subject2)})
    # Arbitrary labels standing in for what an operator supplies with a test set.
    groups = tmp_path / "groups.csv"
    groups.write_text("subject,band\n" + "".join(f"{s},{'g1' if k % 2 else 'g2'}\n" for k, s in enumerate(subjects)))
    out = tmp_path / "out"
    doc = _run(capsys, "eval", "demographics", "--pairs", str(PAIRS), "--root", str(LFW), "--limit", "12",
               "--groups", str(groups), *FAST, "--out", str(out), "--cache", str(cache), "--json")
    band = doc["metrics"]["band"]
    fnmr_pairs = sum(r["fnmr"]["pairs"] for r in band["groups"].values() if "fnmr" in r)
    fmr_pairs = sum(r["fmr"]["pairs"] for r in band["groups"].values() if "fmr" in r)
    assert fnmr_pairs == 6 and fmr_pairs == 6
    assert {"g1", "g2"} <= set(band["groups"])
    assert band["threshold"] == pytest.approx(0.91)
    assert (out / "demographics-band-fnmr.png").is_file() and (out / "demographics-band-fmr.png").is_file()


def test_protection_command(tmp_path: Path, cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["eval", "protection", "--pairs", str(PAIRS), "--root", str(LFW), "--limit", "12", *FAST,
            "--out", str(tmp_path / "out"), "--cache", str(cache), "--json"]
    try:
        import safeface.hazmat.templates.transform  # noqa: F401
    except ImportError:
        assert main(args) == 1
        assert "template protection is not part of this build" in capsys.readouterr().err
        return
    m = _run(capsys, *args)["metrics"]
    assert m["scores_agree"] is True and m["accuracy_raw"] == m["accuracy_protected"]
    assert 0.0 <= m["dsys_across_keys"] <= 1.0
    assert (tmp_path / "out" / "protection-unlinkability.png").is_file()


@pytest.mark.slow
def test_verify_and_identify_with_masked_probes(tmp_path: Path, cache: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    doc = _run(capsys, "eval", "verify", "--pairs", str(PAIRS), "--root", str(LFW), "--limit", "8", *FAST,
               "--mask-probe", "surgical", "--out", str(out), "--cache", str(cache), "--json")
    m = doc["metrics"]["masked"]
    assert m["kind"] == "surgical" and m["failure_to_acquire"]["masked_images"] > 0
    for name in ("unmasked", "probe_masked", "probe_masked_plain", "both_masked", "both_masked_plain",
                 "enrolment_masked", "enrolment_masked_plain"):
        _rate(m[name]["accuracy_10fold"]["mean"])
        for far in ("0.001", "0.01"):
            _rate(m[name]["fnmr_at_fmr"][far])
    # The unmasked figures of the masked report are the run's own.
    assert m["unmasked"]["accuracy_10fold"] == doc["metrics"]["accuracy_10fold"]
    assert m["probe_masked"]["masked_path_pairs"] > 0 and m["probe_masked_plain"]["masked_path_pairs"] == 0
    assert m["enrolment_masked"]["masked_path_pairs"] > 0 and m["enrolment_masked_plain"]["masked_path_pairs"] == 0
    _rate(m["mask_detection"]["masked_found"]["value"])
    _rate(m["mask_detection"]["bare_called_masked"]["value"])
    assert (out / "verify-probe-masked-scores.png").is_file() and (out / "verify-both-masked-scores.png").is_file()
    # The mask detector's own training people are set apart: the held-out report names only
    # people it never saw, and the threshold calibration only people it did.
    from safeface.hazmat.vision.mask_detect import trained_on

    people = {p.parent.name for p in LFW.rglob("*.jpg")}
    assert any(trained_on(n) for n in people) and not all(trained_on(n) for n in people)
    held = m.get("held_out")
    if held is not None:
        assert 0 < held["pairs"] < 8 and held["failure_to_acquire"]["masked_images"] < m["failure_to_acquire"]["masked_images"]
    cal = m["calibration_on_trained_half"]
    assert cal == {} or (0 < cal["masked_threshold"] <= 1 and cal["images"] < m["failure_to_acquire"]["masked_images"])
    again = _run(capsys, "eval", "verify", "--pairs", str(PAIRS), "--root", str(LFW), "--limit", "8", *FAST,
                 "--mask-probe", "surgical", "--out", str(out), "--cache", str(cache), "--json")
    assert again["metrics"]["masked"]["probe_masked"] == m["probe_masked"]  # same seed, same masks, from cache
    doc = _run(capsys, "eval", "identify", "--root", str(LFW), "--limit", "6", *FAST, "--mask-probe", "n95",
               "--out", str(tmp_path / "ident"), "--cache", str(cache), "--json")
    mi = doc["metrics"]["masked"]
    assert {"probe_masked", "probe_masked_plain", "both_masked"} <= set(mi)
    _rate(mi["probe_masked"]["rank1"]["value"])


def test_a_masked_evaluation_measures_the_masked_thresholds_a_deployment_applies(
        tmp_path: Path, cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An operator evaluates a deployment's matching.threshold of 0.95 with a mask probe: the
    masked path was measured at the fixed 0.953, a bar no such deployment applies (the SDK
    tightens it), and the report showed those figures. The run measures the SDK's thresholds."""
    from safeface.hazmat.vision import DEFAULT_MASKED_THRESHOLD, masked_default

    doc = _run(capsys, "eval", "verify", "--pairs", str(PAIRS), "--root", str(LFW), "--limit", "2", *FAST,
               "--threshold", "0.95", "--mask-probe", "surgical", "--out", str(tmp_path / "out"), "--cache",
               str(cache), "--json")
    m = doc["metrics"]["masked"]
    applied = masked_default(DEFAULT_MASKED_THRESHOLD, 0.95)  # both masked: the same, never looser
    assert applied > 0.97 and m["masked_threshold"] == applied and m["both_masked_threshold"] == applied

"""Bounded input: what one call may cost, what a degenerate image does, how many faces an
enrolment or verification sees, and how subject ids are compared. Each test tries what a
hostile or careless caller would send: a 1x1 image, a huge flat photo, a bystander small
enough that only the upsampled detector step finds them, "bob " for "bob"."""

from __future__ import annotations

import io
import sqlite3
import sys
import time
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import PASSPHRASE, consent, foreign_consent, images, make_workspace, open_sf, past_the_skew  # noqa: E402

from safeface.errors import ImageError, InvalidArgument, PolicyViolation, SafeFaceError  # noqa: E402
from safeface.hazmat.templates import normalize_subject, pseudonymize  # noqa: E402
from safeface.hazmat.vision import Outcome, Pipeline, PipelineConfig  # noqa: E402
from safeface.sdk import SafeFace  # noqa: E402


@pytest.fixture(scope="module")
def imgs() -> Path:
    return images()


@pytest.fixture(scope="module")
def onnx_engine() -> Any:
    from safeface.hazmat.vision import get_engine

    return get_engine("onnx")


class Recording:
    """A real engine whose detect calls are written down (shape and upsample of what it scans)."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self.scanned: list[tuple[str, int, int, int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def detect(self, image: np.ndarray, detector: str = "hog", upsample: int = 1) -> Any:
        self.scanned.append((detector, image.shape[0], image.shape[1], upsample))
        return self._engine.detect(image, detector=detector, upsample=upsample)


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def failed(sf: SafeFace, op: str) -> int:
    return int(sf.facts()["audit"]["by_operation"].get(op, {}).get("failed", 0))


def with_bystander(imgs: Path) -> np.ndarray:
    """Obama at 400x500 with Biden's face pasted small in a corner: HOG at upsample 1 (the first
    step) sees only Obama; the upsample-2 step sees both."""
    a = Image.open(imgs / "obama.jpg").convert("RGB").resize((400, 500), Image.Resampling.BILINEAR)
    b = Image.open(imgs / "biden.jpg").convert("RGB")
    a.paste(b.resize((int(b.width * 0.06), int(b.height * 0.06)), Image.Resampling.BILINEAR), (5, 5))
    return np.asarray(a)


# -- tiny images: an outcome or an ImageError, never ONNX Runtime's own error ------------------
@pytest.mark.parametrize("side", [1, 2, 10])
def test_tiny_image_is_no_face_not_a_backend_error(onnx_engine: Any, side: int) -> None:
    pipe = Pipeline(onnx_engine)
    img = np.full((side, side, 3), 128, np.uint8)
    assert pipe.embed(img).outcome is Outcome.NO_FACE
    assert pipe.detect(img, count_all=True) == []
    assert pipe.embed(np.full((side, 300, 3), 128, np.uint8)).outcome is Outcome.NO_FACE  # a thin strip too


def test_mmod_on_a_tiny_image_finds_nothing(onnx_engine: Any) -> None:
    """Under MMOD_MIN_SIDE px once upsampled, no face fits: nothing is searched (ONNX Runtime
    raised on a 2x2 image, and dlib's own MMOD corrupted the heap; test_odd_inputs.py)."""
    for side, upsample in ((2, 0), (2, 1), (9, 1), (19, 0)):
        assert onnx_engine.mmod_detections(np.zeros((side, side, 3), np.uint8), upsample) == []
    assert onnx_engine.mmod_detections(np.zeros((40, 40, 3), np.uint8), 0) == []  # searched: a flat image


def test_tiny_image_in_verify_is_an_audited_image_error(tmp_path: Path, onnx_engine: Any) -> None:
    ws = make_workspace(tmp_path / "ws")
    with SafeFace.open(ws.root, PASSPHRASE, pipeline=Pipeline(onnx_engine)) as sf:
        t = consent(ws, "alice")
        for side in (1, 2, 10):
            with pytest.raises(ImageError, match="no face"):
                sf.verify(png(np.full((side, side, 3), 200, np.uint8)), "alice", "demo", t)
        assert failed(sf, "verify") == 3


# -- the pixel budget --------------------------------------------------------------------------
def test_detection_scans_at_most_the_pixel_budget(imgs: Path, onnx_engine: Any) -> None:
    small = np.asarray(Image.open(imgs / "obama.jpg").convert("RGB"))
    big = np.asarray(Image.fromarray(small).resize((small.shape[1] * 2, small.shape[0] * 2)))  # 4.1 megapixels
    rec = Recording(onnx_engine)
    faces = Pipeline(rec).detect(big)  # type: ignore[arg-type]
    assert len(faces) == 1 and rec.scanned
    assert all(h * w * 4 ** up <= 4.0e6 * 1.01 for _, h, w, up in rec.scanned), rec.scanned
    # The box comes back in the big image's pixels: twice the box found in the original.
    ref = Pipeline(onnx_engine).detect(small)[0]
    assert np.allclose(np.array(faces[0].box), 2 * np.array(ref.box), atol=0.06 * (ref.box[2] - ref.box[0]))
    assert np.allclose(faces[0].landmarks, 2 * ref.landmarks, atol=0.06 * (ref.box[2] - ref.box[0]))
    # A flat image runs every step, each one scaled to a smaller configured budget; steps that
    # would scan no finer than an earlier one of the same detector are skipped.
    rec.scanned.clear()
    flat = np.full((1500, 2000, 3), 128, np.uint8)
    assert Pipeline(rec, PipelineConfig(detect_megapixels=0.5)).detect(flat, count_all=True) == []  # type: ignore[arg-type]
    assert [(d, up) for d, _, _, up in rec.scanned] == [("hog", 1), ("mmod", 1), ("masked", 1)]
    assert all(h * w * 4 ** up <= 0.5e6 * 1.01 for _, h, w, up in rec.scanned), rec.scanned


def test_pixel_budget_is_checked() -> None:
    for bad in (0, -1, float("nan"), float("inf"), True, "4"):
        with pytest.raises(ValueError, match="detect_megapixels"):
            PipelineConfig(detect_megapixels=bad)  # type: ignore[arg-type]


# -- every detector step counts faces for enrolment and verification ---------------------------
def test_count_all_finds_the_bystander_the_first_step_misses(imgs: Path, onnx_engine: Any) -> None:
    img = with_bystander(imgs)
    pipe = Pipeline(onnx_engine)
    assert len(pipe.detect(img)) == 1  # the cascade stops at the first step that finds a face
    assert len(pipe.detect(img, count_all=True)) == 2
    assert pipe.embed(img, count_all=True).outcome is Outcome.SEVERAL_FACES
    # One face seen by several steps (HOG and MMOD boxes differ) is counted once.
    alone = np.asarray(Image.open(imgs / "obama2.jpg").convert("RGB").resize((400, 500)))
    faces = pipe.detect(alone, count_all=True)
    assert len(faces) == 1 and len(pipe.detect(alone)) == 1


def test_enrolment_refuses_a_bystander_only_the_upsampled_step_sees(tmp_path: Path, imgs: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        with pytest.raises(ImageError, match="2 faces"):
            sf.enroll(png(with_bystander(imgs)), "alice", "demo", consent(ws, "alice"))
        assert sf.facts()["templates"] == 0 and failed(sf, "enroll") == 1


# -- subject ids: NFC, trimmed, printable ------------------------------------------------------
def test_subject_ids_are_normalised_before_pseudonymisation(tmp_path: Path, imgs: Path) -> None:
    nfc, nfd = "Jos\u00e9", "Jose\u0301"
    assert nfc != nfd and unicodedata.normalize("NFC", nfd) == nfc
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        assert sf.pseudonym(nfd) == sf.pseudonym(nfc) and sf.pseudonym("bob ") == sf.pseudonym("\tbob")
        sf.enroll(imgs / "obama.jpg", nfd, "demo", consent(ws, nfd))
        assert sf.erase(nfc).templates_removed == 1  # typed the other way, still the same person
        t = consent(ws, "bob")
        sf.enroll(imgs / "biden.jpg", "bob ", "demo", t)  # the token names "bob"; the call "bob "
        assert sf.verify(imgs / "biden.jpg", "bob", "demo", t).match
        assert sf.erase(" bob").templates_removed == 1


@pytest.mark.parametrize("variant", ["alice\u200b", "\ufeffalice", "ali\u200dce", "alice\u2060", "al\u00adice",
                                     "alice\u034f", "alice\ufe0f", "alice\U000e0100", "alice\u3164", "\u115falice",
                                     "alice\u2800", "alice\u17b4", "alice\u200e", "\u202eecila", "alice\ufff9",
                                     # joiners where they join nothing: after a letter that joins no
                                     # further (ا), at an end, after a virama with no letter next
                                     "\u0645\u0647\u062f\u0627\u200c\u0632\u0627\u062f\u0647", "\u0645\u0647\u062f\u06cc\u200c",
                                     "\u0dc1\u200d\u0dbb\u0dd3", "\u0dc1\u0dca\u200d", "\u0dc1\u0dca\u200d\u200d\u0dbb",
                                     # after a virama where another spelling draws the same: the
                                     # Malayalam chillu (U+0D7D), Marathi's eyelash ra (RRA, U+0931);
                                     # where it draws nothing (Thai, a ZWNJ before a vowel, no letter)
                                     "\u0d15\u0d32\u0d4d\u200d\u0d2a\u0d28", "\u092e\u0930\u094d\u200d\u092f\u093e\u0926\u093e",
                                     "\u0e01\u0e3a\u200d\u0e01", "\u0915\u094d\u200c\u0905", "\u094d\u200dalice",
                                     # beside a letter that joins only before it (Rohingya yeh); after
                                     # a Tangut ideograph, which Python names not (a ValueError escaped)
                                     "\u0628\u08ac\u200c\u0628", "\U00017000\u200c"])
def test_an_id_with_a_code_point_that_shows_nothing_enrols_no_one(tmp_path: Path, imgs: Path, variant: str) -> None:
    """An id that prints as "alice" (a zero-width character, a joiner, a CSV export's byte-order
    mark, a soft hyphen, a variation selector, a blank filler, a direction mark) would be a second
    subject an erasure of alice misses: no enrolment is made under it, in a batch either."""
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        with pytest.raises(InvalidArgument, match="shows nothing"):
            sf.enroll(imgs / "obama.jpg", variant, "demo", foreign_consent(ws, variant))
        with pytest.raises(InvalidArgument, match="shows nothing"):
            sf.enroll_many([(imgs / "biden.jpg", "bob", consent(ws, "bob")),
                            (imgs / "obama.jpg", variant, foreign_consent(ws, variant))], "demo")
        assert not sf.records()


@pytest.mark.parametrize("variant", ["alice\u200b", "\ufeffalice", "alice\u200e"])
def test_no_consent_to_enrol_is_issued_under_an_id_that_prints_as_another(tmp_path: Path, variant: str) -> None:
    """The shipped issuer (`safeface consent issue`, the demo) refuses a consent that names enrolment
    for an id enrolment would refuse, while the person is still at the consent screen; a consent
    to verify only is still issued (a subject enrolled under that id by an earlier release)."""
    from safeface.policy.deployment import Deployment
    from safeface.policy.issuer import issue_consent
    from safeface.workspace.keys import read_signing_key

    ws = make_workspace(tmp_path / "ws")
    key, dep = read_signing_key(ws.demo_issuer), Deployment.load(ws.config)
    with pytest.raises(InvalidArgument, match="shows nothing"):
        issue_consent(key, dep, variant, ["demo"])
    _, token = issue_consent(key, dep, variant, ["demo"], operations=["verify"])
    assert token.subject == normalize_subject(variant) and token.operations == ("verify",)


LOOK_ALIKES = {"\u0430lice": "CYRILLIC SMALL LETTER A", "bob-\u03bf": "GREEK SMALL LETTER OMICRON",
               "\uff41lice": "FULLWIDTH LATIN SMALL LETTER A", "\ufb01ona": "LATIN SMALL LIGATURE FI",
               "alice\u00a0smith": "NO-BREAK SPACE", "alice\u00b2": "SUPERSCRIPT TWO",
               "ali\u0307ce": "COMBINING DOT ABOVE", "al\u0131\u0307ce": "COMBINING DOT ABOVE",
               "a\u01c0ice": "LATIN LETTER DENTAL CLICK", "\u0251lice": "LATIN SMALL LETTER ALPHA",
               "\u0261reg": "LATIN SMALL LETTER SCRIPT G", "AL\ua4f2CE": "LISU LETTER I", "b\u2c9fb": "COPTIC",
               "b\u1040b": "MYANMAR DIGIT ZERO", "user\u0661": "ARABIC-INDIC DIGIT ONE",
               "alice\u1680smith": "OGHAM SPACE MARK", "\u03a0\u0435\u0442\u0440\u043e\u0432": "GREEK CAPITAL LETTER PI",
               "EMP-\u1040\u104042": "MYANMAR DIGIT ZERO", "Jos\u00e9\u0301": "COMBINING ACUTE ACCENT",
               "Mar\u0131\u0301a": "COMBINING ACUTE ACCENT", "Louis \u0425\u0406\u0474": "CYRILLIC",
               "\ua731am": "SMALL CAPITAL S", "\ua4d9.Smith": "LISU", "user\u02d0123": "TRIANGULAR COLON",
               "\u0628\u200c\u0712": "ARABIC LETTER BEH", "Th\u1ecb\u0307 Lan": "COMBINING DOT ABOVE",
               "alice  smith": "two spaces in a row"}  # a page shows them as one  # a non-joiner taken as spelling splits no word
# Honest ids: one script a word, accents, other scripts, digits, the ʻokina, Armenian's և.
HONEST = ("\u0418\u0432\u0430\u043d", "\u674e\u96f7", "Jos\u00e9", "Zo\u00eb van Dijk", "EMP-0042 \u0414\u043c\u0438\u0442\u0440\u0438\u0439",
          "\u03a3\u03bf\u03c6\u03af\u03b1 Garc\u00eda", "\u0438\u0432\u0430\u043d@example.com", "Nguy\u1ec5n V\u0103n Th\u00e0nh",
          "\u0130smail Y\u0131ld\u0131z", "O\u2019Brien", "\u02bbOkina", "\u5c71\u7530 \u305f\u308d\u3046",
          "\u0533\u0587\u0578\u0580\u0563", "\u0645\u062d\u0645\u062f\u0661", "\u4f50\u3005\u6728", "\u674e\u3007",
          "VIP\u5ba2\u6237001", "\u039d\u03af\u03bd\u03b1 M\u00fcller", "\u0415\u0440\u0451\u0445\u0430 Smith",
          # joiners that are spelling: Persian "Mahdizadeh" with its non-joiner, Sinhala "Sri"
          "\u0645\u0647\u062f\u06cc\u200c\u0632\u0627\u062f\u0647", "\u0dc1\u0dca\u200d\u0dbb\u0dd3 \u0db4\u0dd9\u0dbb\u0dda\u0dbb\u0dcf")


def test_an_id_that_prints_as_another_visibly_enrols_no_one(tmp_path: Path, imgs: Path) -> None:
    """Visible look-alikes of a plain id (a Cyrillic а among Latin letters, a full-width ａ, a
    ligature, a no-break space, a dot above an i, a phonetic ɑ, a Myanmar zero) would be second
    subjects an erasure of the plain id misses: no enrolment, and no consent to enrol from the
    shipped issuer. Honest ids are enrolled as before."""
    from safeface.policy.deployment import Deployment
    from safeface.policy.issuer import issue_consent
    from safeface.workspace.keys import read_signing_key

    ws = make_workspace(tmp_path / "ws")
    key, dep = read_signing_key(ws.demo_issuer), Deployment.load(ws.config)
    with open_sf(ws) as sf:
        for variant, named in LOOK_ALIKES.items():
            with pytest.raises(InvalidArgument, match=f"{named}.*print as another id") as info:
                sf.enroll(imgs / "obama.jpg", variant, "demo", foreign_consent(ws, variant))
            assert variant not in str(info.value)  # the error names the code point, not the id
            with pytest.raises(InvalidArgument, match="print as another id"):
                issue_consent(key, dep, variant, ["demo"])
        assert not sf.records()
        for plain in HONEST:
            sf.enroll(imgs / "obama.jpg", plain, "demo", consent(ws, plain))
        assert len(sf.records()) == len(HONEST)


PRINT_ALIKE = (("alice", "ALICE"), ("\u0410\u043d\u043d\u0430", "\u0410\u041d\u041d\u0410"),  # Анна, АННА
               ("\u03bd\u03b9\u03ba\u03bf\u03c2", "\u039d\u0399\u039a\u039f\u03a3"),  # νικος, ΝΙΚΟΣ
               ("cocoa", "\u0441\u043e\u0441\u043e\u0430"), ("bob", "\u0412\u041e\u0412"),
               ("EMP-0042", "EMP\u20100042"), ("EMP-0042", "EMP\u22120042"), ("EMP-0042", "EMP\u20130042"),
               ("O'Brien", "O\u2019Brien"), ("j.smith", "j\u00b7smith"), ("a/b", "a\u2215b"),
               ("JOE", "\u037f\u039f\u0395"), ("cocoa", "\u1c83\u1c82\u1c83\u1c82\u0430"),
               ("HOP", "\u04ba\u041e\u0420"), ("LILI", "\uabae\uab96\uabae\uab96"), ("RED", "\u13d2\u13ac\u13a0"),
               ("wow", "\u0461\u043e\u0461"), ("vika", "\u03bd\u03b9\u03ba\u03b1"),
               ("Chlo\u00eb", "\u0421\u04bb\u04cf\u043e\u0451"), ("A\u00efda", "\u0410\u0457\u0501\u0430"),
               ("TOM", "\u2ca6\u2c9e\u2c98"), ("3141", "\u0417141"), ("BOB", "\ua7b4OB"), ("Xavier", "\ua7b3avier"),
               ("O'Brien", "O\u00b4Brien"),
               # drawn alike in common fonts (look version 2): digits and letters, letter pairs
               ("EMP-0042", "EMP-O042"), ("EMP-0042", "emp-oo42"), ("Ian", "lan"), ("B1LL", "BILL"), ("bi1l", "bill"),
               ("mary", "rnary"), ("vvu", "wu"), ("\u0130ZM\u0130R", "izmir"),  # İZMİR, the Turkish capital dotted
               # Arabic and Persian keyboards' letters drawn alike, a tatweel, Persian digits
               ("\u0639\u0644\u06cc", "\u0639\u0644\u064a"), ("\u06a9\u0631\u06cc\u0645", "\u0643\u0631\u064a\u0645"),
               ("\u0645\u062d\u0640\u0645\u062f", "\u0645\u062d\u0645\u062f"), ("\u0641\u0627\u0637\u0645\u06c1", "\u0641\u0627\u0637\u0645\u0647"),
               ("\u06f1\u06f2\u06f3", "\u0661\u0662\u0663"), ("\u0641\u0627\u0637\u0645\u06c3", "\u0641\u0627\u0637\u0645\u0629"),
               # letters drawn as a capital I, with accents or in other scripts; w and vv in any order
               ("Iva", "\u0399\u03bd\u03b1"), ("Ida", "\u0406\u0501\u0430"), ("Ivan", "\u0196van"),
               ("\u00cdsak", "\u013asak"), ("vw-7", "wv-7"), ("vvv", "wv"),
               # the same name without its non-joiner: the look keeps no joiner
               ("\u0645\u0647\u062f\u06cc\u0632\u0627\u062f\u0647", "\u0645\u0647\u062f\u06cc\u200c\u0632\u0627\u062f\u0647"),
               # look version 3: the Arabic-Indic one and seven and the alef, Lisu's upright capitals and
               # its tone letters drawn as a full stop and a comma
               ("lv", "\u0661\u0667"), ("lv", "\u06f1\u06f7"), ("\u0627\u062d\u0645\u062f", "\u0661\u062d\u0645\u062f"),
               ("ALICE", "\ua4ee\ua4e1\ua4f2\ua4da\ua4f0"), ("BOT", "\ua4d0\ua4f3\ua4d4"),
               ("LI.", "\ua4e1\ua4f2\ua4f8"), ("TO,", "\ua4d4\ua4f3\ua4f9"))
TOLD_APART = (("Strau\u00df", "Strauss"), ("Wei\u00df", "WEISS"), ("\u0533\u0587\u0578\u0580\u0563", "\u0533\u0565\u0582\u0578\u0580\u0563"),
              ("Jos\u00e9", "Jose"), ("I\u015f\u0131k", "Isik"), ("anna", "anne"), ("EMP-0042", "EMP-0043"),
              ("Ayd\u0131n", "Aydin"), ("\u0237oe", "joe"), ("ian", "lan"), ("EMP-0042", "EMP-0O43"),
              ("Ian", "Lan"), ("ALI", "ALL"), ("EMP-1042", "EMP-L042"),
              ("\u0639\u0644\u06cc", "\u0639\u0644\u0649\u0627"), ("clim", "dim"), ("cloh", "doh"), ("Clara", "Dara"),
              ("\u0399\u03b1\u03bd", "lan"), ("\u039d\u0399\u039a\u039f\u03a3", "NIKOS"), ("\u0661\u0667", "17"))


def test_ids_that_print_alike_share_a_look_and_others_do_not() -> None:
    """The look digests (read by capitals and by small letters) of ids that differ only in
    case, in punctuation drawn alike, or in letters of other scripts drawn as Latin ones: one of
    them is shared. Different spellings ("Strauß", "Strauss"; "José", "Jose") share none."""
    from safeface.hazmat.templates.pseudonym import look_digests

    key = b"k" * 32

    def alike(a: str, b: str) -> bool:  # as a store compares them: capitals with capitals, small with small
        return any(x == y for x, y in zip(look_digests(key, a), look_digests(key, b)))

    for a, b in PRINT_ALIKE:
        assert alike(a, b), (a, b)
    for a, b in TOLD_APART:
        assert not alike(a, b), (a, b)
    assert not set(look_digests(key, "alice")) & set(look_digests(b"j" * 32, "alice"))  # keyed
    from safeface.lookalike import skeletons

    for text in ("\u1fb3\u0323", "Jos\u00e9", "\u0451\u0301", "\uac00\u11a8"):  # stable under NFD
        assert skeletons(text) == skeletons(unicodedata.normalize("NFD", text)), ascii(text)


_V1_ALPHABET = ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                "\u0430\u0435\u043e\u0440\u0441\u0443\u0445\u0456\u0410\u0412\u0415\u041a\u041c\u041d\u041e"
                "\u0420\u0421\u0422\u0425\u0406\u03bf\u03b1\u03bd\u03c1\u0391\u0392\u0395\u0399\u039f\u03a1")


@pytest.mark.parametrize("before,alphabet", [
    (1, _V1_ALPHABET),
    (2, _V1_ALPHABET + "\u039d\u03b9\u041a\u0422\u043a\u0442\u04cf\u04c0\u0501\u0627\u0661\u0665\u0667\u06f1\u06f5\u06f7"
     + "".join(map(chr, range(0xA4D0, 0xA4FA))))])
def test_what_a_look_version_read_alike_the_next_reads_alike_too(before: int, alphabet: str) -> None:
    """A version must not let through what the one before refused once a subject's rows carry
    its digests: version 2's first draft read an ASCII capital I as "l" but a Greek or Cyrillic
    one as "i", so the all-Greek "Ινα" beside "Iva" was refused by version 1 and enrolled by
    version 2; version 3's first draft read "c1" apart from "cl" and "КӀАНТ" from "к1ант". Every
    pair of ids of up to two letters and digits (ASCII, Cyrillic and Greek drawn as Latin; from
    version 3 also Lisu, the alef and Arabic-Indic digits) that may be enrolled and that a
    version read alike, the next reads alike (ids mixing scripts in a word, such as "iν" with a
    Greek nu, are refused before any look is compared)."""
    from collections import defaultdict

    from safeface.hazmat.templates.pseudonym import new_subject_problem
    from safeface.lookalike import skeletons

    letters = sorted(set(alphabet))
    ids = [t for t in letters + [a + b for a in letters for b in letters] if new_subject_problem(t) is None]
    old = {t: skeletons(t, before) for t in ids}
    new = {t: skeletons(t, before + 1) for t in ids}
    lost = []
    for reading in (0, 1):
        groups = defaultdict(list)
        for t in ids:
            groups[old[t][reading]].append(t)
        for group in groups.values():
            first = group[0]
            lost += [(first, t) for t in group[1:] if not any(x == y for x, y in zip(new[first], new[t]))]
    assert not lost, lost[:10]


def test_an_id_that_prints_as_an_enrolled_one_enrols_no_one(tmp_path: Path, imgs: Path) -> None:
    """Ids that pass every check alone but print as an enrolled subject's: "ALICE" beside "alice",
    an all-Cyrillic "сосоа" beside "cocoa". A consent for them is genuine (the issuer cannot see
    the gallery), so the store refuses, under its write lock, and the attempt is on record.
    After "alice" is erased, "ALICE" may enrol."""
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        sf.enroll(imgs / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        sf.enroll(imgs / "biden.jpg", "cocoa", "demo", consent(ws, "cocoa"))
        for twin in ("ALICE", "Alice", "\u0441\u043e\u0441\u043e\u0430"):
            with pytest.raises(InvalidArgument, match="prints as the id of a subject already enrolled"):
                sf.enroll(imgs / "obama2.jpg", twin, "demo", consent(ws, twin))
        assert len(sf.records()) == 2
        refused = [e for e in sf.audit_entries() if e.operation == "enroll" and e.decision != "allowed"]
        assert [(e.decision, e.note) for e in refused] == [("failed", "InvalidArgument")] * 3
        assert sf.erase("alice").templates_removed == 1
        sf.enroll(imgs / "obama2.jpg", "ALICE", "demo", consent(ws, "ALICE"))
        assert len(sf.records()) == 2 and sf.audit_verify().entries > 0


@pytest.mark.parametrize("asked,enrolled", [("\uff41lice", "alice"), ("Jos\u00e9\u00a0Mar\u00eda", "Jos\u00e9 Mar\u00eda"),
                                            ("\u5c71\u7530\u3000\u592a\u90ce", "\u5c71\u7530 \u592a\u90ce"),
                                            ("bob\u200b", "bob"), ("alice  smith", "alice smith"),
                                            # drawn as Latin letters: a Cyrillic а, a dot above
                                            # the i, a phonetic ɑ (they reached nobody)
                                            ("\u0430lice", "alice"), ("ali\u0307ce", "alice"), ("\u0251lice", "alice")])
def test_an_erasure_in_a_spelling_enrolment_refuses_reaches_the_usual_spelling(tmp_path: Path, imgs: Path,
                                                                              asked: str, enrolled: str) -> None:
    """Enrolment refused the source system's spelling and the person was enrolled as usually
    written. An erasure (or a withdrawal) that arrives in the source system's spelling reached
    nobody and said so with a receipt for 0 templates; it now reaches the usual spelling too."""
    for op in ("erase", "revoke"):
        ws = make_workspace(tmp_path / op)
        with open_sf(ws) as sf:
            t = consent(ws, enrolled)
            sf.enroll(imgs / "obama.jpg", enrolled, "demo", t)
            receipt = sf.erase(asked) if op == "erase" else sf.revoke(subject=asked)
            assert receipt.templates_removed == 1 and not sf.records(), op
            assert sf.pseudonym(enrolled) in receipt.subjects
            with pytest.raises(PolicyViolation):
                sf.verify(imgs / "obama2.jpg", enrolled, "demo", t)
            assert sf.audit_verify().entries > 0


def test_a_refused_or_empty_erasure_in_an_odd_spelling_does_not_stop_the_next_reaching_the_usual(
        tmp_path: Path, imgs: Path) -> None:
    """The usual spelling was skipped whenever any erasure entry named the odd spelling's
    pseudonym: a kiosk's refused erasure of "ａlice" (its entry names the spellings it asked for),
    or an earlier erasure that reached alice through the usual spelling and found no row under
    "ａlice" itself. The operator's next erasure in that spelling then removed 0 templates and
    alice still verified. Only a removal that took rows of the odd spelling itself counts."""
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        sf.enroll(imgs / "obama.jpg", "alice", "demo", consent(ws, "alice"))
    with open_sf(ws, role="kiosk") as kiosk, pytest.raises(PolicyViolation):
        kiosk.erase("\uff41lice")
    for round_ in range(2):  # the second: alice consented and enrolled again after the first erasure
        with open_sf(ws) as sf:
            if round_:
                time.sleep(1.1)  # a consent dated within the skew after the erasure counts as withdrawn
                sf.enroll(imgs / "obama.jpg", "alice", "demo", consent(ws, "alice", now=past_the_skew()))
            receipt = sf.erase("\uff41lice")
            assert receipt.templates_removed == 1 and not sf.records(), round_
            assert sf.audit_verify().entries > 0


def test_an_erasure_reaches_the_usual_spelling_only_for_an_id_no_one_is_enrolled_under(
        tmp_path: Path, imgs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """"Գևորգ" is a spelling enrolment takes (Armenian writes "և" so), and "Գեւորգ" is another
    subject; "user²" was enrolled by an earlier release and may be another account than "user2".
    Erasing either reaches its own rows only. A number still names the subject its text does."""
    import safeface.sdk.facade as facade

    ws = make_workspace(tmp_path / "ws")
    legacy = "user\u00b2"
    with monkeypatch.context() as m:
        m.setattr(facade, "_check_new_subject", lambda s: None)  # as an earlier release enrolled
        with open_sf(ws) as sf:
            sf.enroll(imgs / "obama.jpg", legacy, "demo", foreign_consent(ws, legacy))
    from safeface.storage.gallery import Gallery
    from safeface.storage.rows import ROW_COLS, seal_row, unseal_row
    from safeface.workspace.passphrase import open_keyring

    with Gallery.open(ws.gallery, open_keyring(ws, PASSPHRASE), 128) as g:
        keys = g._require_keys()
    with sqlite3.connect(ws.gallery) as db:  # an earlier release sealed no look digest and stored none
        for r in db.execute(f"SELECT {ROW_COLS} FROM rows").fetchall():
            e, vec, token = unseal_row(keys, r, 128)
            db.execute("UPDATE rows SET sealed = ?, look = NULL, look_small = NULL WHERE row_id = ?", (seal_row(
                keys, r[0], e.pseudonym, sorted(e.purposes), e.token_id, r[4], e.expires_us, vec, token,
                visible=e.visible, masked_enrolment=e.masked_enrolment), r[0]))
    pairs = (("\u0533\u0587\u0578\u0580\u0563", "\u0533\u0565\u0582\u0578\u0580\u0563"), (legacy, "user2"))
    with open_sf(ws) as sf:
        for _, other in pairs:
            sf.enroll(imgs / "biden.jpg", other, "demo", consent(ws, other))
        sf.enroll(imgs / "obama2.jpg", "42", "demo", consent(ws, "42"))
        sf.enroll(imgs / "obama.jpg", pairs[0][0], "demo", consent(ws, pairs[0][0]))
        for asked, other in pairs:
            removed = []
            for _ in range(2):  # a retried erasure finds no rows under the spelling, and still not the other
                receipt = sf.erase(asked)
                assert receipt.subjects == (sf.pseudonym(asked),)
                assert sf.records(other), f"erasing {asked!a} reached {other!a}"
                removed.append(receipt.templates_removed)
            assert removed == [1, 0]
        assert sf.erase(42).templates_removed == 1  # type: ignore[arg-type]
        assert sf.audit_verify().entries > 0


@pytest.mark.parametrize("bad", ["", "   ", "bo\x00b", "a\nb", "x\u2028y", "\x1b[31mred", 7, None])
def test_empty_or_control_character_subject_ids_are_invalid(tmp_path: Path, bad: Any) -> None:
    with pytest.raises(InvalidArgument):
        normalize_subject(bad)
    with pytest.raises(InvalidArgument):
        pseudonymize(b"k" * 32, bad)
    assert issubclass(InvalidArgument, SafeFaceError) and issubclass(InvalidArgument, ValueError)


def test_subject_id_case_and_inner_spaces_are_kept() -> None:
    key = b"k" * 32
    assert pseudonymize(key, "Bob") != pseudonymize(key, "bob")
    assert pseudonymize(key, "bob smith") != pseudonymize(key, "bobsmith")
    assert normalize_subject("  Zoë\u00a0") == "Zoë"


# -- F5: ids enrolled before the change can no longer be erased by their id ------------------------


def test_a_subject_enrolled_under_an_invisible_character_before_keeps_working(tmp_path: Path, imgs: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Ids are pseudonymised as written: a subject an earlier release enrolled under an id with a
    byte-order mark (a CSV export's) is still verified and erased by that id."""
    import safeface.sdk.facade as facade

    ws = make_workspace(tmp_path / "ws")
    subject = "\ufeffalice"
    token = foreign_consent(ws, subject)
    with monkeypatch.context() as m:
        m.setattr(facade, "_check_new_subject", lambda s: None)  # as an earlier release enrolled
        with open_sf(ws) as sf:
            sf.enroll(imgs / "obama.jpg", subject, "demo", token)
    with open_sf(ws) as sf:
        assert sf.verify(imgs / "obama2.jpg", subject, "demo", token).match
        assert sf.erase(subject).templates_removed == 1 and not sf.records()
        assert sf.audit_verify().entries > 0


@pytest.mark.parametrize("bad", ["ali\u0378ce", "alice\ue000", "bob\U000F0000", "a" * 257])
def test_unassigned_private_use_or_overlong_subject_ids_are_invalid(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        normalize_subject(bad)
    assert normalize_subject("a" * 256)


def test_a_pseudonym_key_under_32_bytes_is_refused() -> None:
    from safeface.errors import ConfigError

    with pytest.raises(ConfigError):
        pseudonymize(b"k" * 16, "alice")

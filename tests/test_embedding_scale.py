"""Embeddings of any finite scale given to the store (a vendor pipeline that does not normalise).

The store normalises every embedding before sealing it, and every row it opens must hold a unit
template. An embedding whose squares overflow (1e160) or fall into subnormal floats (1e-161) was
normalised by a norm of infinity or a rounded one: a zero or stretched template was sealed,
scored above 1 in the handle that stored it, and every later open of the gallery refused the
whole store, blaming someone holding the keys."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_gallery_open_handles import DIM, EXP, _fresh, _unit  # noqa: E402

from safeface.storage.gallery import Enrollment, Gallery  # noqa: E402


@pytest.mark.parametrize("scale", [1e160, 1e-161, 1e-300])
def test_an_embedding_of_extreme_scale_is_stored_as_a_unit_vector_and_the_gallery_opens_again(
        tmp_path: Path, scale: float) -> None:
    """A pipeline hands the store alice's embedding times 1e160, 1e-161 or 1e-300: she is stored
    as her unit template (scored 1 against herself) and the gallery opens again afterwards."""
    _, keyring, db = _fresh(tmp_path)
    with Gallery.open(db, keyring, DIM) as g:
        g.add_many([Enrollment("alice", _unit(1) * scale, ("demo",), "tok-a", EXP, visible=_unit(3) * scale)])
        assert g.search(_unit(1), "demo", k=1)[0].score == pytest.approx(1.0, abs=1e-4)
    with Gallery.open(db, keyring, DIM) as g:
        assert g.search(_unit(1), "demo", k=1)[0].score == pytest.approx(1.0, abs=1e-4)

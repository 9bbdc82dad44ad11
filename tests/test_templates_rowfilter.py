"""The gallery's allowed-row filter against a brute-force reference over random operations."""

from __future__ import annotations

import numpy as np

from safeface.hazmat.templates.rowfilter import RowFilter

PURPOSES = ("access", "payment", "boarding")


def test_row_filter_matches_reference_through_growth_removal_and_compaction() -> None:
    rng = np.random.default_rng(0)
    ref: dict[int, tuple[frozenset[str], int]] = {}
    f = RowFilter.build([(1, frozenset({"access"}), 50)])
    ref[1] = (frozenset({"access"}), 50)
    next_id = 2
    for step in range(6000):
        op = rng.random()
        if op < 0.45 or not ref:
            ps = frozenset(p for p in PURPOSES if rng.random() < 0.5)
            exp = int(rng.integers(0, 100))
            f.upsert(next_id, ps, exp)
            ref[next_id] = (ps, exp)
            next_id += 1
        elif op < 0.55:  # update in place (touch, re-seal with a new expiry)
            rid = int(rng.choice(list(ref)))
            ps, _ = ref[rid]
            exp = int(rng.integers(0, 100))
            f.upsert(rid, ps, exp)
            ref[rid] = (ps, exp)
        else:
            rid = int(rng.choice(list(ref))) if rng.random() < 0.95 else -5  # and an unknown id
            f.remove(rid)
            ref.pop(rid, None)
        if step % 97 == 0 or step > 5990:
            for purpose in PURPOSES + ("marketing",):
                now = int(rng.integers(0, 100))
                want = sorted(r for r, (ps, e) in ref.items() if purpose in ps and e > now)
                assert sorted(f.allowed(purpose, now).tolist()) == want
            assert len(f) == len(ref)
    assert next_id > 2000  # enough rows went through to grow and compact the arrays

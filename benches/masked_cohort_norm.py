"""Does score normalisation against a cohort help the masked path? On LFW dev pairs with a random
synthetic mask drawn before detection (the records `safeface eval verify --mask-probe` makes and
caches), each masked-path score s (visible-region template against the masked probe's
visible-region embedding) is compared with its S-norm:

    ((s - mean_e) / std_e + (s - mean_q) / std_q) / 2

where mean_e and std_e are the enrolment template's scores against a cohort of masked probes and
mean_q and std_q the probe's against a cohort of templates. The cohort is every image of the half
of the people the mask detector was trained on (mask_detect.trained_on), less the pair's own two
people. Only pairs whose probe the detector calls masked are scored (the masked path). Prints
10-fold accuracy and FNMR at FMR 1e-2 for the raw and the normalised scores. Not adopted: see
README, "Masked faces". Measures only; writes nothing but the embedding cache it is pointed at.

    python benches/masked_cohort_norm.py --pairs $D/pairsDevTest.txt --root $D --cache DIR
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from safeface.evaluate import masked as mk  # noqa: E402
from safeface.evaluate import metrics  # noqa: E402
from safeface.evaluate.datasets import read_pairs  # noqa: E402
from safeface.evaluate.session import EvalOptions, Session  # noqa: E402
from safeface.hazmat.vision.mask_detect import trained_on  # noqa: E402


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=Path, required=True)
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--cache", type=Path, required=True, help="the embedding cache of `safeface eval` (sealed)")
    ap.add_argument("--limit", type=int, default=None)
    a = ap.parse_args()
    pairs = read_pairs(a.pairs, a.root, a.limit)
    session = Session.open(EvalOptions(progress=False), a.cache)
    paths = [p for pr in pairs for p in (pr.image1, pr.image2)]
    session.embed(paths)
    rec = mk.masked_records(session, paths, "random", 0, progress=False)
    cohort = [p for p, r in rec.items() if trained_on(Path(p).parent.name)
              and r.visible is not None and r.masked_visible is not None]
    people = np.array([Path(p).parent.name for p in cohort])
    templates = _unit(np.stack([rec[p].visible for p in cohort]))
    probes = _unit(np.stack([rec[p].masked_visible for p in cohort]))
    print(f"{len(pairs)} pairs; cohort {len(cohort)} images of {len(set(people))} people")

    def norm_stats(x: np.ndarray, c: np.ndarray, exclude: set[str]) -> tuple[float, float]:
        s = (c @ x)[~np.isin(people, list(exclude))]
        return float(s.mean()), float(s.std())

    for mode in ("probe", "both"):
        raw, snorm, same, folds = [], [], [], []
        for p in pairs:
            probe = rec[p.image2]
            enrol = rec[p.image1].visible if mode == "probe" else rec[p.image1].masked_visible
            if enrol is None or probe.masked_visible is None or not probe.detected_masked:
                continue
            e, q = _unit(enrol), _unit(probe.masked_visible)
            s = float(e @ q)
            me, se = norm_stats(e, probes, {p.subject1, p.subject2})
            mq, sq = norm_stats(q, templates if mode == "probe" else probes, {p.subject1, p.subject2})
            raw.append(s)
            snorm.append(0.5 * ((s - me) / se + (s - mq) / sq))
            same.append(p.same)
            folds.append(p.fold)
        sm, fo = np.array(same), np.array(folds)
        for name, x in (("raw", np.array(raw)), ("s-norm", np.array(snorm))):
            acc = metrics.kfold_accuracy(x, sm, fo).mean
            t = metrics.threshold_at_rate(x[~sm], 1e-2)
            print(f"{mode:5s} {name:6s} pairs {len(x)}: 10-fold accuracy {acc:.2%}, "
                  f"FNMR at FMR 1e-2 {float(np.mean(x[sm] < t)):.2%}")


if __name__ == "__main__":
    main()

"""Does a learned linear map of the visible-region embeddings, or fusing the masked path's score
with the plain one, help masked faces? On LFW dev pairs with a random synthetic mask drawn before
detection (the records `safeface eval verify --mask-probe` makes and caches), the masked path's
score (visible-region template against a masked probe's visible-region embedding) is compared
with:

- wccn: both sides times W^-1/2, W the within-person covariance of the visible-region templates
  and masked probes' visible-region embeddings of each person together (the mask's own change
  and the person's other photos), shrunk toward a multiple of the identity by s;
- lda: the same whitening, then the k directions that best part the people's means;
- fusion: w times the masked path's score plus (1 - w) times the plain score (enrolment's main
  template against the probe's whole embedding; both masked: the two whole embeddings), the
  cosine of the two unit vectors put end to end, each scaled by the root of its weight;
- wccn+fusion: both.

Everything is fitted on the half of the people the mask detector was trained on
(mask_detect.trained_on) and measured on the other half. Each family's setting (s, k, w) is the
one with the lowest FNMR on the trained half at its own threshold, scored person-disjoint
(5 folds of the trained people, each scored by a map fitted on the other four); the threshold
is where those out-of-fold impostors reach the FMR that bare impostors of the trained half reach
at the deployed 0.91 (as `calibrate_on_trained_half` sets the masked threshold), one for a probe
against a bare enrolment and one for both masked. Scores on the held-out half are made the way
the SDK decides (`masked.scenario`: the map or the fusion replaces the visible-region vectors,
so a probe the detector misses still goes the plain way).

Prints, for probe masked and both masked, on the held-out pairs of the pair file: 10-fold
accuracy with a 95% interval of its gain over the current method (pairs drawn again within each
fold), FNMR at FMR 1e-2, FMR, FNMR and accuracy at the trained-half threshold, and the pairs
whose decision there changes against the current method; then on every held-out image pair whose
probe the detector calls masked (many more pairs, masked path only): FNMR at FMR 1e-2 and 1e-3,
FMR and FNMR at the threshold.

On LFW dev test (408 held-out pairs; 1,100 and 542 mated image pairs), nothing gains reliably:
the best, wccn+fusion for a masked probe, 93.97% 10-fold against 93.18% (gain -2.1..+3.3
points), FNMR at the threshold 12.0% against 12.9% on every image pair at the same FMR (0.96%);
fusion alone 94.42% (-1.8..+2.5), 12.2%. Both masked: every method's 10-fold lower, FNMR at the
threshold on every image pair 14.2% at best against 14.4%. WCCN and LDA alone are no better
than the current method (the 128-D embeddings span about 80 dimensions, and 749 faces of 473
people are few to learn a within-person covariance from). The SDK uses none of them. Measures
only; writes nothing but the embedding cache it is pointed at (nothing when every record is
cached).

    python benches/masked_projection.py --pairs $D/pairsDevTest.txt --root $D --cache DIR
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from safeface.evaluate import masked as mk  # noqa: E402
from safeface.evaluate import metrics  # noqa: E402
from safeface.evaluate.datasets import Pair, read_pairs  # noqa: E402
from safeface.evaluate.embedcache import Record  # noqa: E402
from safeface.evaluate.session import EvalOptions, Session  # noqa: E402
from safeface.hazmat.vision import DEFAULT_THRESHOLD  # noqa: E402
from safeface.hazmat.vision.mask_detect import trained_on  # noqa: E402

FOLDS = 5
SHRINK = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95)
# The embeddings of a set of faces span about 80 of the 128 dimensions (the singular values of
# the trained half's fall by 10^4 there): LDA with more is WCCN.
LDA_DIMS = (32, 48, 64, 80)
WEIGHTS = (0.95, 0.9, 0.85, 0.8, 0.7)
MODES = ("probe", "both")
BOOTSTRAP = 300

Map = Callable[[np.ndarray], np.ndarray]  # rows of unit vectors in, rows of unit vectors out


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


@dataclass(frozen=True)
class Images:
    """Unit vectors of a set of images: visible-region template of the bare image (t), visible-
    region embedding of the masked image (q), plain embedding of the bare (b) and masked (m)
    image; the person, and whether the detector calls the masked image masked."""

    t: np.ndarray
    q: np.ndarray
    b: np.ndarray
    m: np.ndarray
    person: np.ndarray
    masked: np.ndarray

    @classmethod
    def of(cls, paths: Sequence[Path], bare: Mapping[Path, Record], rec: Mapping[Path, mk.MaskedRecord]) -> "Images":
        def unit(vs: list[Optional[np.ndarray]]) -> np.ndarray:
            return _unit(np.stack([np.asarray(v) for v in vs]))

        return cls(unit([rec[p].visible for p in paths]), unit([rec[p].masked_visible for p in paths]),
                   unit([bare[p].embedding for p in paths]), unit([rec[p].masked for p in paths]),
                   np.array([p.parent.name for p in paths]), np.array([rec[p].detected_masked for p in paths]))

    def take(self, keep: np.ndarray) -> "Images":
        return Images(self.t[keep], self.q[keep], self.b[keep], self.m[keep], self.person[keep], self.masked[keep])


def _whitener(x: Images, shrink: float) -> np.ndarray:
    """W^-1/2 of the within-person covariance of t and q together, shrunk toward the identity."""
    z, who = np.concatenate([x.t, x.q]), np.concatenate([x.person, x.person])
    w = np.zeros((z.shape[1], z.shape[1]))
    for p in np.unique(who):
        d = z[who == p] - z[who == p].mean(axis=0)
        w += d.T @ d
    w /= len(z)
    w = (1 - shrink) * w + shrink * np.trace(w) / len(w) * np.eye(len(w))
    ev, v = np.linalg.eigh(w)
    out: np.ndarray = v @ np.diag(ev ** -0.5) @ v.T
    return out


def fit_wccn(shrink: float) -> Callable[[Images], Map]:
    def fit(x: Images) -> Map:
        a = _whitener(x, shrink)
        return lambda v: _unit(v @ a)
    return fit


def fit_lda(shrink: float, k: int) -> Callable[[Images], Map]:
    def fit(x: Images) -> Map:
        a = _whitener(x, shrink)
        z, who = np.concatenate([x.t, x.q]) @ a, np.concatenate([x.person, x.person])
        mu = z.mean(axis=0)
        sb = np.zeros((z.shape[1], z.shape[1]))
        for p in np.unique(who):
            c = z[who == p].mean(axis=0) - mu
            sb += (who == p).sum() * np.outer(c, c)
        _, u = np.linalg.eigh(sb)
        proj = a @ u[:, ::-1][:, :k]
        return lambda v: _unit(v @ proj)
    return fit


@dataclass(frozen=True)
class Method:
    """A map of the visible-region vectors (None: as they are) and a fusion weight (1: none)."""

    name: str
    fit: Optional[Callable[[Images], Map]] = None
    weight: float = 1.0

    def vectors(self, f: Optional[Map], region: np.ndarray, whole: np.ndarray) -> np.ndarray:
        """What the masked path compares: the (mapped) visible-region vector, and with fusion the
        whole embedding after it, so that the cosine is the weighted sum of the two scores."""
        r = f(region) if f is not None else region
        if self.weight >= 1.0:
            return r
        return np.concatenate([np.sqrt(self.weight) * r, np.sqrt(1 - self.weight) * whole], axis=1)


def _scores(method: Method, f: Optional[Map], x: Images) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Mated and non-mated masked-path scores among the images of `x`, per mode; probes are the
    images the detector calls masked (both masked: enrolments too)."""
    enrol, probe = method.vectors(f, x.t, x.b), method.vectors(f, x.q, x.m)
    same = x.person[:, None] == x.person[None, :]
    other = ~np.eye(len(x.person), dtype=bool)
    sp, sb = enrol @ probe.T, probe @ probe.T
    mp = x.masked[None, :] & other
    mb = np.triu(x.masked[:, None] & x.masked[None, :], 1)
    return {"probe": (sp[same & mp], sp[~same & mp]), "both": (sb[same & mb], sb[~same & mb])}


def trained_half_figures(method: Method, x: Images, bare_impostors: np.ndarray
                         ) -> dict[str, tuple[float, float]]:
    """Per mode: the threshold where out-of-fold impostors reach the bare FMR at the deployed
    threshold, and the out-of-fold FNMR there."""
    fold = np.array([hashlib.sha256(p.encode()).digest()[1] % FOLDS for p in x.person])
    parts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {m: [] for m in MODES}
    for k in range(FOLDS):
        f = method.fit(x.take(fold != k)) if method.fit is not None else None
        for mode, s in _scores(method, f, x.take(fold == k)).items():
            parts[mode].append(s)
    out = {}
    for mode in MODES:
        g, i = (np.concatenate([s[j] for s in parts[mode]]) for j in (0, 1))
        t = mk.calibrated_masked_threshold(bare_impostors, i, DEFAULT_THRESHOLD)
        assert t is not None
        out[mode] = (t, float(np.mean(g < t)))
    return out


def mapped_records(method: Method, f: Optional[Map], bare: Mapping[Path, Record],
                   rec: Mapping[Path, mk.MaskedRecord]) -> dict[Path, mk.MaskedRecord]:
    """The records with the method's vectors in place of the visible-region ones, so that
    `masked.scenario` scores the masked path with them and everything else as the SDK does."""
    out = {}
    for p, r in rec.items():
        t = q = None
        if r.visible is not None and bare[p].embedding is not None:
            t = method.vectors(f, _unit(r.visible)[None], _unit(bare[p].embedding)[None])[0]
        if r.masked_visible is not None and r.masked is not None:
            q = method.vectors(f, _unit(r.masked_visible)[None], _unit(r.masked)[None])[0]
        out[p] = replace(r, visible=t, masked_visible=q)
    return out


def pair_figures(s: np.ndarray, same: np.ndarray, folds: np.ndarray) -> dict[str, float]:
    t = DEFAULT_THRESHOLD  # every masked-path score is shifted so that this decides
    fmr, fnmr = metrics.fmr_fnmr(s[same], s[~same], t)
    return {"acc": metrics.kfold_accuracy(s, same, folds).mean,
            "fnmr2": 1.0 - metrics.tar_at_far(s[same], s[~same], 1e-2).tmr.value,
            "fmr": fmr, "fnmr": fnmr, "acc_t": float(np.mean((s >= t) == same))}


def kfold_gain(s: np.ndarray, base: np.ndarray, same: np.ndarray, folds: np.ndarray) -> tuple[float, float]:
    """95% interval of the 10-fold accuracy gain over `base`, pairs drawn again within each fold
    (the same draw for both)."""
    rng = np.random.default_rng(0)
    by_fold = [np.flatnonzero(folds == k) for k in np.unique(folds)]
    gains = []
    for _ in range(BOOTSTRAP):
        ix = np.concatenate([rng.choice(f, f.size) for f in by_fold])
        gains.append(metrics.kfold_accuracy(s[ix], same[ix], folds[ix]).mean
                     - metrics.kfold_accuracy(base[ix], same[ix], folds[ix]).mean)
    lo, hi = np.quantile(gains, [0.025, 0.975])
    return float(lo), float(hi)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=Path, required=True)
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--cache", type=Path, required=True, help="the embedding cache of `safeface eval` (sealed)")
    a = ap.parse_args()
    pairs = read_pairs(a.pairs, a.root, None)
    session = Session.open(EvalOptions(progress=False), a.cache)
    paths = [p for pr in pairs for p in (pr.image1, pr.image2)]
    bare, _ = session.embed(paths)
    rec = mk.masked_records(session, paths, "random", 0, progress=False)
    whole = [p for p, r in rec.items() if r.visible is not None and r.masked_visible is not None
             and r.masked is not None and bare[p].embedding is not None]
    train = Images.of([p for p in whole if trained_on(p.parent.name)], bare, rec)
    held = Images.of([p for p in whole if not trained_on(p.parent.name)], bare, rec)
    same_t = train.person[:, None] == train.person[None, :]
    bare_impostors = (train.b @ train.b.T)[np.triu(~same_t, 1)]
    held_pairs: list[Pair] = [p for p in pairs if not trained_on(p.subject1) and not trained_on(p.subject2)]
    print(f"trained half: {len(train.person)} images of {len(set(train.person))} people; held-out half: "
          f"{len(held.person)} images of {len(set(held.person))} people, {len(held_pairs)} pairs of the pair file; "
          f"bare FMR at {DEFAULT_THRESHOLD} on the trained half {np.mean(bare_impostors >= DEFAULT_THRESHOLD):.2%}")

    families: list[list[Method]] = [
        [Method("current")],
        [Method(f"wccn s={s}", fit_wccn(s)) for s in SHRINK],
        [Method(f"lda s={s} k={k}", fit_lda(s, k)) for s in SHRINK for k in LDA_DIMS],
        [Method(f"fusion w={w}", None, w) for w in WEIGHTS],
        [Method(f"wccn+fusion s={s} w={w}", fit_wccn(s), w) for s in SHRINK for w in WEIGHTS],
    ]
    print("\nsetting chosen per family and mode on the trained half (out-of-fold FNMR at its threshold):")
    chosen: dict[str, list[tuple[Method, dict[str, tuple[float, float]]]]] = {m: [] for m in MODES}
    for fam in families:
        figs = [(m, trained_half_figures(m, train, bare_impostors)) for m in fam]
        for mode in MODES:
            m, fg = min(figs, key=lambda mf: mf[1][mode][1])
            chosen[mode].append((m, fg))
            print(f"  {mode:5s} {m.name:26s} threshold {fg[mode][0]:.4f}  FNMR {fg[mode][1]:.2%}")

    same = np.array([p.same for p in held_pairs])
    folds = np.array([p.fold for p in held_pairs])
    for mode in MODES:
        print(f"\n{'probe masked, enrolment bare' if mode == 'probe' else 'both masked'}; held-out half "
              f"({len(held_pairs)} pairs of the pair file, the SDK's paths; then every held-out image pair, "
              "masked path only)")
        print(f"  {'method':26s} {'10-fold':>8s} {'gain 95%':>13s} {'FNMR@1e-2':>9s} {'FMR@t':>6s} {'FNMR@t':>7s}"
              f" {'acc@t':>6s} {'mates +/-':>9s} {'imp +/-':>7s} | {'FNMR@1e-2':>9s} {'FNMR@1e-3':>9s} {'FMR@t':>6s}"
              f" {'FNMR@t':>7s}")
        base: Optional[np.ndarray] = None  # the current method's scores
        for m, fg in chosen[mode]:
            f = m.fit(train) if m.fit is not None else None
            t = fg[mode][0]
            # Both masked, one side not called masked: the masked path at the probe's threshold.
            sc = mk.scenario(held_pairs, bare, mapped_records(m, f, bare, rec), mode, DEFAULT_THRESHOLD,
                             fg["probe"][0], both_masked_threshold=fg["both"][0])
            s = sc.scores.scores
            base = s if base is None else base
            pf = pair_figures(s, same, folds)
            lo, hi = kfold_gain(s, base, same, folds)
            now, before = s >= DEFAULT_THRESHOLD, base >= DEFAULT_THRESHOLD
            mates = f"+{int((now & ~before & same).sum())}/-{int((~now & before & same).sum())}"
            imps = f"+{int((now & ~before & ~same).sum())}/-{int((~now & before & ~same).sum())}"
            g, i = _scores(m, f, held)[mode]
            fnmr2 = 1.0 - metrics.tar_at_far(g, i, 1e-2).tmr.value
            fnmr3 = 1.0 - metrics.tar_at_far(g, i, 1e-3).tmr.value
            print(f"  {m.name:26s} {pf['acc']:8.2%} {f'{lo:+.1%}..{hi:+.1%}':>13s} {pf['fnmr2']:9.2%}"
                  f" {pf['fmr']:6.2%} {pf['fnmr']:7.2%} {pf['acc_t']:6.2%} {mates:>9s} {imps:>7s} |"
                  f" {fnmr2:9.2%} {fnmr3:9.2%} {float(np.mean(i >= t)):6.2%} {float(np.mean(g < t)):7.2%}")
        print(f"  (every held-out image pair: {len(g)} mated, {len(i)} non-mated)")


if __name__ == "__main__":
    main()

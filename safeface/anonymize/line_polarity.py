"""Rows or columns inverted by a key: a pseudo-random set of lines, with no period for the line
test (alternating.py) to find, hides a face from HOG, and whoever holds the key inverts those
lines back. Without the key, the lines are put back by their neighbours: a natural line is far
closer to the one next to it than to that line's negative, so wherever a line is closer to its
neighbour's negative, one of the two was inverted.

The test: in a block of a natural frame few neighbouring lines are closer inverted (an edge from
dark to its negative's level: at most 6% of a block's pairs in vtest.avi and the stage clip);
lines inverted at random make about half of them so. Two repairs, each searched with its
negative. Inverted back: each strip of BLOCK px across is followed down its lines, each line
inverted where it is closer to the line above once inverted (exact for a key writing 255 - v,
colour kept). Fitted, in grey: a line reads flipped from the one above where the two are
anticorrelated (a key may add an offset or a gain to its negative, 255 - 0.7 v + 60, which the
first repair leaves as bands off their neighbours), and each line of the other polarity than
its strip's first is negated and fitted to its nearest lines of the first (their mean and
spread). An edge in the face can be read as an inversion, inverting the rest of its block
below it (the negatives). Lines only brightened, darkened or given less contrast by a key,
none inverted (g v + o), keep their neighbours' texture and move in level or spread: a second
test counts pairs that changed so, far more than their texture did, across two neighbouring
strips (or, for a key moving runs of lines together, pairs whose shift a pair a few
lines on takes back), and a third repair (shifted_back) fits the lines of the moved kind to their neighbours,
the kind told by which way the last such pair above went; a fourth (leveled), for a key writing
more than two levels, takes away what the shifts above each line add up to, less its running
median."""

from __future__ import annotations

from typing import Callable, Iterator, Optional

import numpy as np

from .channels import channel_mean

# Blocks of this many pixels a side are judged; lines are followed in strips this wide.
BLOCK = 32
# A pair of neighbouring lines reads as inverted where, across a block, the pair differs by at
# least KEYED_LEVELS on average, and KEYED_RATIO times as much as the first line and the
# second's negative...
KEYED_LEVELS = 8
KEYED_RATIO = 3.0
# ... and a block holds lines inverted by a key where at least this share of its pairs read so:
# with a tenth of a face's rows inverted at random (HOG found 3 of 8 LFW faces), 0.22-0.38 of a
# block's; with half, 0.56-0.69; every other row, all. Natural footage: at most 0.03.
KEYED_SHARE = 0.1
# Bands of lines inverted (8 rows in every 32: two pairs of a block read inverted, 0.0625) hid
# faces under that share. A pair reading inverted by a wider margin is rarer in natural footage
# (at most one of a block's 32, 0.031, in vtest.avi, the stage clip and LFW): two such pairs in
# a block are enough.
BAND_LEVELS = 16
BAND_RATIO = 6.0
BAND_SHARE = 0.06
# A line this flat (standard deviation in levels of its channels' mean, over a strip) has no
# texture to correlate: whether it was inverted is judged by its level instead.
FLAT_LEVELS = 4.0
# A flipped line's spread is brought to its neighbours' by at most this factor either way (a
# key's gain of 0.25 to 4; a flat line is only moved).
MAX_GAIN = 4.0
# Lines judged at a time (a whole number of blocks): a 50-megapixel photo takes a few megabytes
# of differences at a time.
BAND = 16 * BLOCK
# Lines only brightened, darkened or given less contrast by a key (g v + o, none inverted) keep
# their neighbours' texture and change level or spread. A pair reads shifted where the two
# differ in mean and spread by SHIFT_LEVELS or more, SHIFT_RATIO times their difference in
# texture (what is left once mean and spread are matched), and the same pair of the next strip
# across reads so too (a key writes whole lines; a natural edge seldom crosses many in a
# block)...
SHIFT_LEVELS = 10.0
SHIFT_RATIO = 2.0
# ... and a block holds such lines where this share of its pairs read so: every frame of
# vtest.avi at most 0.19, of the stage clip 0.25; 90 LFW faces 0.19, but 2 of 13 larger photos
# (face_recognition's obama2.jpg, biden2.jpg) 0.34-0.41, which are searched in the views too;
# a fifth to a half of a face's lines keyed at g 0.3-1.5 and o -60..60, at least 0.34.
SHIFT_SHARE = 0.28
# A key may write lines at more than two levels (+60, unchanged and -60 at random): which way the
# last shifted pair went no longer tells a line's kind. The leveled repair adds up the shifts
# down each strip and takes away their running median over this many lines either side (the
# level the strip's lines share): 11 of 14 sampled faces keyed so found in it, 2 by shifted_back;
# the whole video search of another sample, 18 of 18 (7 before), photos 15 of 18 (6).
LEVEL_LINES = 16
# A key moving runs of lines together (2-8) shifts only a run's ends: 0.19-0.25 of a block's
# pairs, as natural footage. But each run's end takes back its start, within RUN_LINES lines
# and RUN_MATCH of its size, which natural lines seldom do: at most 2 of a block's 32 pairs in
# vtest.avi and the stage clip, 4 of 518 LFW photos past the bar; 3-8 under such keys (11 of 11
# sampled faces). Runs of 5-8 were not looked for (1 of 12 hidden faces found; 9 now). Only a
# pair whose neighbour above does not return counts: a blurred edge's pairs return together
# (with 5-8 counted so, 13 of the 518 photos). Fine blinds, ruled paper and interlaced fields
# do it too.
RUN_LINES = (2, 3, 4, 5, 6, 7, 8)
RUN_MATCH = 0.35
RUN_SHARE = 0.09


def _pairs(image: np.ndarray, axis: int) -> Iterator[tuple[tuple[int, int], np.ndarray, np.ndarray]]:
    """For each band of rows: ((first pair, first block across), same, inverted), where same[i, k]
    is the mean difference of neighbouring lines i and i + 1 along `axis` (0: rows, 1: columns)
    over block k across them, and inverted[i, k] the same with line i + 1 inverted."""
    import cv2

    h, w = image.shape[:2]
    for start in range(0, h - 1 if axis == 0 else h, BAND):
        if axis == 0:
            part = image[start:start + BAND + 1, :w // BLOCK * BLOCK]
            a, b = part[:-1], part[1:]
            size = (w // BLOCK, a.shape[0])
        else:
            part = image[start:start + BAND]
            part = part[:part.shape[0] // BLOCK * BLOCK]
            if part.shape[0] == 0:
                break
            a, b = part[:, :-1], part[:, 1:]
            size = (a.shape[1], part.shape[0] // BLOCK)
        means = [np.asarray(cv2.resize(np.ascontiguousarray(cv2.absdiff(a, other)), size,
                                       interpolation=cv2.INTER_AREA), np.float32)
                 for other in (b, cv2.bitwise_not(b))]
        if axis == 1:
            means = [m.transpose(1, 0, *range(2, m.ndim)) for m in means]
        same, inverted = (m.reshape(m.shape[0], m.shape[1], -1).mean(axis=-1) for m in means)
        yield ((start, 0) if axis == 0 else (0, start // BLOCK)), same, inverted


def has_keyed_lines(image: np.ndarray, axis: int) -> bool:
    """Whether some block of `image` has its lines along `axis` (0: rows) inverted in no order."""
    if min(image.shape[:2]) < BLOCK + 1:
        return False
    for _, same, inverted in _pairs(image, axis):
        blocks = same.shape[0] // BLOCK
        if not blocks:
            continue
        for levels, ratio, share in ((KEYED_LEVELS, KEYED_RATIO, KEYED_SHARE), (BAND_LEVELS, BAND_RATIO, BAND_SHARE)):
            reads = (same >= levels) & (same >= ratio * inverted)
            if bool(np.any(reads[:blocks * BLOCK].reshape(blocks, BLOCK, -1).mean(axis=1) >= share)):
                return True
    return False


def _grey(part: np.ndarray, luma: bool = False) -> np.ndarray:
    """The mean of `part`'s channels (`luma`: its RGB luma, a third of the CPU, for a test), as
    float32. Colour is no guide to a line's polarity in video: 4:2:0 chroma is shared by two
    rows, so a keyed row and its neighbour blend theirs."""
    if luma and part.ndim == 3 and part.shape[2] == 3:
        import cv2

        part = cv2.cvtColor(np.ascontiguousarray(part), cv2.COLOR_RGB2GRAY)
    out: np.ndarray = np.asarray(part, np.float32)
    return out.mean(axis=2) if out.ndim == 3 else out


def _grey_levels(image: np.ndarray) -> np.ndarray:
    """The mean of `image`'s channels rounded to uint8 levels, made a band of BAND rows at a time:
    the whole photo's float32 copy and mean held five copies of a 50-megapixel photo (750 MB)."""
    out = np.empty(image.shape[:2], np.uint8)
    for y in range(0, image.shape[0], BAND):
        part = image[y:y + BAND]
        out[y:y + BAND] = part if part.ndim == 2 else channel_mean(part, tuple(range(part.shape[2])))
    return out


def inverted_back(image: np.ndarray, axis: int) -> np.ndarray:
    """A copy of `image` with the lines along `axis` of each strip BLOCK px across put back to
    the polarity of the strip's first line, each inverted where it is closer to the one before
    once inverted (the rest of the image, under a block across, as it is)."""
    h, w = image.shape[:2]
    n, strips = (h, w // BLOCK) if axis == 0 else (w, h // BLOCK)
    flips = np.zeros((n, strips), np.uint8)  # row i: line i reads inverted from line i - 1
    for (line, block), same, inverted in _pairs(image, axis):
        flips[line + 1:line + 1 + same.shape[0], block:block + same.shape[1]] = inverted < same
    parity = (np.cumsum(flips, axis=0) % 2).astype(bool)
    out = np.array(image, copy=True)
    for y in range(0, strips * BLOCK if axis == 1 else h, BAND):
        band = out[y:y + BAND]
        mask: np.ndarray
        if axis == 0:
            mask = np.zeros(band.shape[:2], bool)
            mask[:, :strips * BLOCK] = np.repeat(parity[y:y + band.shape[0]], BLOCK, axis=1)
        else:
            mask = np.repeat(parity[:, y // BLOCK:(y + band.shape[0]) // BLOCK].T, BLOCK, axis=0)
            band = band[:mask.shape[0]]
        band[mask] = 255 - band[mask]
    return out


def _line_stats(image: np.ndarray, axis: int, step: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per line along `axis` and strip BLOCK px across (of the mean of its channels): the mean,
    the mean square, and with the next line the mean product, each (lines, strips) (the product
    one line fewer), from every `step`-th pixel across the lines (more than one: of its luma, for
    a test). Judged a band at a time, as _pairs."""
    import cv2

    h, w = image.shape[:2]
    n, strips = (h, w // BLOCK) if axis == 0 else (w, h // BLOCK)
    mean, square = np.zeros((n, strips), np.float32), np.zeros((n, strips), np.float32)
    cross = np.zeros((max(n - 1, 0), strips), np.float32)

    def pooled(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        m = np.asarray(cv2.resize(a, size, interpolation=cv2.INTER_AREA), np.float32)
        m = np.asarray(m.reshape(size[1], size[0], -1).mean(axis=-1), np.float32)
        return m if axis == 0 else np.ascontiguousarray(m.T)

    for start in range(0, h if axis == 0 else strips * BLOCK, BAND):
        if axis == 0:
            part = _grey(image[start:start + BAND + 1, :strips * BLOCK:step], step > 1)
            stop = min(start + BAND, h)
            lines = part[:stop - start]
            size = (strips, lines.shape[0])
            mean[start:stop] = pooled(lines, size)
            square[start:stop] = pooled(cv2.multiply(lines, lines), size)
            pairs = cv2.multiply(part[:-1], part[1:])
            cross[start:start + pairs.shape[0]] = pooled(pairs, (strips, pairs.shape[0]))
        else:
            # Whole blocks only: a last band's partial block, sampled every `step` rows, counted
            # as one more block than the strips held.
            k = (min(start + BAND, strips * BLOCK) - start) // BLOCK
            part = _grey(image[start:start + k * BLOCK:step], step > 1)
            cols = slice(start // BLOCK, start // BLOCK + k)
            mean[:, cols] = pooled(part, (w, k))
            square[:, cols] = pooled(cv2.multiply(part, part), (w, k))
            cross[:, cols] = pooled(cv2.multiply(part[:, :-1], part[:, 1:]), (w - 1, k))
    return mean, square, cross


def _shifts(mean: np.ndarray, square: np.ndarray, cross: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each pair of neighbouring lines (lines - 1, strips): whether it reads shifted (its
    change of mean and spread far over its change of texture), and the changes of mean and of
    spread."""
    spread = np.sqrt(np.maximum(square - mean * mean, 0.0))
    dm, ds = mean[1:] - mean[:-1], spread[1:] - spread[:-1]
    texture = 2.0 * np.maximum(spread[:-1] * spread[1:] - (cross - mean[:-1] * mean[1:]), 0.0)
    level = dm * dm + ds * ds
    return (level >= SHIFT_LEVELS ** 2) & (level >= SHIFT_RATIO ** 2 * texture), dm, ds


def _returned(reads: np.ndarray, dm: np.ndarray, ds: np.ndarray) -> np.ndarray:
    """For each pair of neighbouring lines (lines - 1, strips): whether it reads shifted and a
    pair RUN_LINES on reads shifted back by about as much (the start of a run of lines moved
    together), and the pair above it does not (one pair for an edge blurred over two or three)."""
    size = np.sqrt(dm * dm + ds * ds)
    out = np.zeros_like(reads)
    for k in RUN_LINES:
        a, b = slice(0, reads.shape[0] - k), slice(k, None)
        back = np.sqrt((dm[a] + dm[b]) ** 2 + (ds[a] + ds[b]) ** 2) <= RUN_MATCH * np.maximum(size[a], size[b])
        out[a] |= reads[a] & reads[b] & back
    out[1:] &= ~out[:-1]
    return out


def has_shifted_lines(image: np.ndarray, axis: int) -> bool:
    """Whether some block of `image` has its lines along `axis` (0: rows) moved in level or
    spread by a key, in no order, one at a time or in short runs (judged on every other pixel
    across the lines: a few ms a video frame)."""
    if min(image.shape[:2]) < BLOCK + 1:
        return False
    mean, square, cross = _line_stats(image, axis, step=2)
    reads, dm, ds = _shifts(mean, square, cross)
    # A flat line beside a textured one has no texture to compare (the texture term is ~0): a
    # blank column beside a glyph's in text, a halftone dot's edge. A key keeps a line's texture
    # as it moves it, so such pairs say nothing of one; they made text pages read shifted.
    flat = np.sqrt(np.maximum(square - mean * mean, 0.0)) < FLAT_LEVELS
    reads &= flat[:-1] == flat[1:]
    blocks = reads.shape[0] // BLOCK
    if not blocks or reads.shape[1] < 2:
        return False
    # Either way up: a key moving each line up in one strip and down in the next (32 px apart,
    # on the grid the test reads) read as nothing when the two had to agree.
    for pairs, share in ((reads, SHIFT_SHARE), (_returned(reads, dm, ds), RUN_SHARE)):
        both = pairs[:, :-1] & pairs[:, 1:]
        if np.any(both[:blocks * BLOCK].reshape(blocks, BLOCK, -1).mean(axis=1) >= share):
            return True
    return False


def _repair_stats(image: np.ndarray, axis: int) -> Optional[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """_line_stats of every pixel, with each line's spread: what a repair fits lines by; None
    where the image has under two lines or is under a strip across (nothing to fit)."""
    h, w = image.shape[:2]
    n, strips = (h, w // BLOCK) if axis == 0 else (w, h // BLOCK)
    if n < 2 or strips == 0:
        return None
    mean, square, cross = _line_stats(image, axis)
    return mean, square, cross, np.sqrt(np.maximum(square - mean * mean, 0.0))


def fitted(image: np.ndarray, axis: int) -> np.ndarray:
    """A copy of `image` with the lines along `axis` of each strip BLOCK px across put back to
    the polarity of the strip's first line (the rest of the image, under a block across, as it
    is). A key need not invert exactly (255 - v): it may add an offset or a gain as well (255 -
    v + 60, 255 - 0.7 v), which left every put-back line off its neighbours by that much. So a
    line reads inverted from the one before where the two are anticorrelated (which neither
    offset nor gain changes), or, where either is flat, closer to its negative; and each line
    of the other polarity is mapped back by an affine fit to its nearest lines of the first:
    negated, then scaled and moved to their mean and spread."""
    stats = _repair_stats(image, axis)
    if stats is None:
        return np.array(image, copy=True)
    mean, square, cross, spread = stats
    n, strips = mean.shape
    above, below = mean[:-1], mean[1:]
    textured = (spread[:-1] >= FLAT_LEVELS) & (spread[1:] >= FLAT_LEVELS)
    # Flipped: a negative covariance between the two lines; a flat one, its level: closer to
    # the other's negative, or off it as a key moves a line (a gain of 0.3 leaves many keyed
    # lines flat, and an offset keeps them off both: 88 - 0.3 v beside v, 4 of 8 faces put
    # back by the first rule alone, 7 with both).
    flat = (np.abs(above - below) > np.abs(above + below - 255.0)) | _shifts(mean, square, cross)[0]
    flips = np.where(textured, cross < above * below, flat)
    parity = np.concatenate([np.zeros((1, strips), bool), np.cumsum(flips, axis=0) % 2 == 1])
    return _mapped(image, axis, mean, spread, parity, np.full((n, strips), -1.0, np.float32))


def shifted_back(image: np.ndarray, axis: int) -> np.ndarray:
    """A copy of `image` with the lines along `axis` a key moved in level or spread (g v + o)
    put back to their neighbours' (the rest, under a block across, as it is). Each strip's
    lines are split by the pairs that read shifted: a line is of the other kind where the last
    such pair above it went up (in mean, or in spread where that changed more), so a natural
    edge read as a shift misplaces the lines only until the next pair going down; and each
    line of that kind is fitted to its nearest lines of the first (their mean and spread),
    negated where the pair into its run was anticorrelated (a key with a negative gain: 88 -
    0.3 v, at its neighbours' brightness, reads shifted and not inverted)."""
    stats = _repair_stats(image, axis)
    if stats is None:
        return np.array(image, copy=True)
    mean, square, cross, spread = stats
    n, strips = mean.shape
    reads, dm, ds = _shifts(mean, square, cross)
    up = np.where(np.abs(dm) >= np.abs(ds), dm, ds) > 0
    anti = cross < mean[:-1] * mean[1:]
    last = np.maximum.accumulate(np.where(reads, np.arange(n - 1)[:, None], -1), axis=0)
    column = np.arange(strips)[None, :]
    seen = last >= 0
    at = np.maximum(last, 0)
    parity = np.concatenate([np.zeros((1, strips), bool), seen & up[at, column]])
    sign = np.concatenate([np.ones((1, strips)), np.where(seen & anti[at, column], -1.0, 1.0)])
    return _mapped(image, axis, mean, spread, parity, sign.astype(np.float32))


def leveled(image: np.ndarray, axis: int) -> np.ndarray:
    """A copy of `image` with the lines along `axis` a key moved in level or spread put back by
    what the shifted pairs above them added up to in their strip, less that sum's running median
    over LEVEL_LINES lines either side (in mean, and in log spread). For a key writing lines at
    more than two levels, which shifted_back's two kinds cannot hold; a natural edge read as a
    shift moves the lines after it only until the median follows it. No key with a negative
    gain (fitted and shifted_back hold those)."""
    from scipy.ndimage import median_filter

    stats = _repair_stats(image, axis)
    if stats is None:
        return np.array(image, copy=True)
    mean, square, cross, spread = stats
    reads = _shifts(mean, square, cross)[0]
    log_spread = np.log(np.maximum(spread, 1.0))
    start = np.zeros((1, mean.shape[1]))
    window = (2 * LEVEL_LINES + 1, 1)
    sums = []
    for line in (mean, log_spread):
        total = np.concatenate([start, np.cumsum(np.where(reads, np.diff(line, axis=0), 0.0), axis=0)])
        sums.append(total - median_filter(total, size=window, mode="nearest"))
    level, log_gain = sums
    ratio = np.where(spread >= FLAT_LEVELS, np.clip(np.exp(-log_gain), 1 / MAX_GAIN, MAX_GAIN), 1.0)
    gain = ratio.astype(np.float32)
    offset = ((1.0 - ratio) * mean - level).astype(np.float32)
    return _affine(image, axis, gain, offset, (level != 0) | (log_gain != 0))


def _mapped(image: np.ndarray, axis: int, mean: np.ndarray, spread: np.ndarray, parity: np.ndarray,
            sign: np.ndarray) -> np.ndarray:
    """A copy of `image` with each line of each strip where `parity` is set (never a strip's
    first line) multiplied by `sign` (-1: negated), then scaled and moved to the mean and spread
    of its nearest lines where it is not."""
    n, strips = parity.shape
    if not parity.any():
        return np.array(image, copy=True)
    # Each such line's reference: the mean and spread of the nearest lines without parity above
    # and below it in its strip (line 0 has none, so there is always one above).
    index = np.broadcast_to(np.arange(n)[:, None], (n, strips))
    up = np.maximum.accumulate(np.where(parity, -1, index), axis=0)
    down = np.minimum.accumulate(np.where(parity, n, index)[::-1], axis=0)[::-1]
    down = np.where(down < n, down, up)
    column = np.arange(strips)[None, :]
    ref_mean = (mean[up, column] + mean[down, column]) / 2
    ref_spread = (spread[up, column] + spread[down, column]) / 2
    ratio = np.where(spread >= FLAT_LEVELS,
                     np.clip(ref_spread / np.maximum(spread, 1e-6), 1 / MAX_GAIN, MAX_GAIN), 1.0)
    gain = np.where(parity, sign * ratio, 1.0).astype(np.float32)
    offset = np.where(parity, ref_mean - sign * ratio * mean, 0.0).astype(np.float32)
    return _affine(image, axis, gain, offset, parity)


def _affine(image: np.ndarray, axis: int, gain: np.ndarray, offset: np.ndarray,
            changed: np.ndarray) -> np.ndarray:
    """A copy of `image` with each line along `axis` of each strip BLOCK px across mapped to
    gain * v + offset ((lines, strips) each), a band at a time, skipping bands where `changed`
    is nowhere set (the rest of the image, under a block across, as it is)."""
    h = image.shape[0]
    strips = changed.shape[1]
    out = np.array(image, copy=True)
    extra = (1,) * (image.ndim - 2)
    for y in range(0, strips * BLOCK if axis == 1 else h, BAND):
        if axis == 0:
            lines = slice(y, min(y + BAND, h))
            if not changed[lines].any():
                continue
            band = out[lines, :strips * BLOCK]
            g = np.repeat(gain[lines], BLOCK, axis=1)
            o = np.repeat(offset[lines], BLOCK, axis=1)
        else:
            k = min(BAND, strips * BLOCK - y) // BLOCK
            cols = slice(y // BLOCK, y // BLOCK + k)
            if not changed[:, cols].any():
                continue
            band = out[y:y + k * BLOCK]
            g = np.repeat(gain[:, cols].T, BLOCK, axis=0)
            o = np.repeat(offset[:, cols].T, BLOCK, axis=0)
        mapped = band * g.reshape(g.shape + extra) + o.reshape(o.shape + extra)
        band[...] = np.clip(np.rint(mapped), 0, 255).astype(np.uint8)
    return out


def _put_back(image: np.ndarray, rows: bool, cols: bool, repair: Callable[[np.ndarray, int], np.ndarray],
              test: Callable[[np.ndarray, int], bool] = has_keyed_lines) -> np.ndarray:
    """A copy of `image` with its rows (where `rows`), then its columns (where `cols`, or where
    `test` finds them once the rows are put back), put back by `repair`."""
    view = repair(image, 0) if rows else image
    if cols or test(view, 1):
        view = repair(view, 1)
    elif view is image:
        view = np.array(image, copy=True)
    return view


def _in_colour(view: np.ndarray, image: np.ndarray) -> np.ndarray:
    """A grey `view` with as many channels as `image`."""
    return np.repeat(view[..., None], image.shape[2], axis=2) if image.ndim == 3 else view


def keyed_views(image: np.ndarray) -> Iterator[np.ndarray]:
    """Where a block of `image`'s rows or columns reads as inverted in no order: `image` with
    its lines inverted back (inverted_back: exact for a key writing 255 - v, colour kept), then
    its negative, made in place of it; then in grey (its channels' mean) with its lines fitted
    back (fitted: a key with an offset or a gain), and its negative. Grey, since a colour
    video's 4:2:0 chroma blends each keyed row's colour with its neighbour's, which no fit
    of a line puts back. Where a block's lines read moved in level or spread (a key writing g v
    + o, none inverted, or inverted at its neighbours' brightness): the fitted view and its
    negative too, and in grey with those lines fitted back (shifted_back), and its negative,
    and with the shifts above each line taken away (leveled: a key of more than two levels).
    Nothing where no block reads either way. One view at a time (a caller keeping one keeps a
    copy)."""
    rows, cols = has_keyed_lines(image, 0), has_keyed_lines(image, 1)
    shifted_rows, shifted_cols = has_shifted_lines(image, 0), has_shifted_lines(image, 1)
    if rows or cols:
        view = _put_back(image, rows, cols, inverted_back)
        yield view
        np.subtract(255, view, out=view)
        yield view
        del view
    if rows or cols or shifted_rows or shifted_cols:
        # A key inverting at its neighbours' brightness (88 - 0.3 v) may read shifted only.
        view = _in_colour(_put_back(_grey_levels(image), rows or shifted_rows, cols or shifted_cols, fitted), image)
        yield view
        np.subtract(255, view, out=view)
        yield view
        del view
    if shifted_rows or shifted_cols:
        view = _in_colour(_put_back(_grey_levels(image), shifted_rows, shifted_cols, shifted_back,
                                    has_shifted_lines), image)
        yield view
        np.subtract(255, view, out=view)
        yield view
        del view
        # A key writing more than two levels (leveled): no negative, as it fits no negative gain.
        yield _in_colour(_put_back(_grey_levels(image), shifted_rows, shifted_cols, leveled, has_shifted_lines),
                         image)

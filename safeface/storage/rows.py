"""Sealed gallery rows, whatever holds them: the row types, the key versions a store is under, and
how a row is sealed and opened. A row sealed since masked faces are matched also holds, inside the
same seal, its visible-region template (the face under synthetic masks, protected by the same
keyed transform): one consent, one expiry, one erasure for both. Whether the enrolment image
itself was masked is sealed with it too (the marker in front of the visible-region template), so
a masked probe meets such a row with its own threshold and a hand edit of the flag fails the seal.
A row sealed since LOOKS_MAGIC also holds its look digests (the columns look, look_small that
refuse a look-alike id), so blanking or changing them fails the row where it is opened; a row
sealed before binds none and opens with them blank or as two digests (check_looks).
The SQLite gallery and the PostgreSQL record store both use this,
so a row sealed by one opens in the other byte for byte (the seal binds the row id, pseudonym,
purposes, token reference, provenance, expiry and key versions, never where the row lives)."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Collection, Iterable, Optional, Sequence

import numpy as np

from ..errors import ConfigError, IntegrityError, InvalidArgument
from ..hashing import same_digest
from ..hazmat.templates.keyring import Keyring
from ..hazmat.templates.pseudonym import look_digests, pseudonymize
from ..hazmat.templates.sealing import RowBinding, Sealer
from ..hazmat.templates.transform import TemplateTransform
from ..lookalike import LOOK_VERSION

SCHEMA_VERSION = 1
# A row as both stores select it, in this order.
ROW_COLS = ("row_id, pseudonym, purposes, token_id, provenance, expires_us, "
            "transform_version, seal_version, sealed")
# A row as the stores select it to open it: ROW_COLS, then its look digests (Looks), which the
# seal binds in every row sealed since LOOKS_MAGIC (unseal_row compares them with these columns).
OPEN_COLS = ROW_COLS + ", look, look_small"
# Rows (in OPEN_COLS) that keep no look digest: those an earlier release stored, and the only ones
# a look-alike check cannot see. A new subject's enrolment opens each of them first, so one whose
# seal binds digests (blanked by hand) is refused there, not only where it is next opened.
BLANK_LOOKS = "(look IS NULL OR look = '' OR look_small IS NULL OR look_small = '')"
# Marks the row's look digests inside a sealed blob, right behind the template: each a 2-byte
# big-endian length and its UTF-8 text ("" for a row an earlier release stored without). A row
# sealed without the marker (before the look digests were bound) opens as before.
LOOKS_MAGIC = b"\x00sf-looks-1\x00"
# Marks a visible-region template inside a sealed blob, between the template (and its look
# digests) and the token (a token never starts with a NUL byte). Rows sealed without one open as
# before. The second marker, same layout after it, says the enrolment image was masked (the mask detector said so).
VISIBLE_MAGIC = b"\x00sf-visible-1\x00"
VISIBLE_MAGIC_MASKED = b"\x00sf-visible-masked-1\x00"
# What a store's search and verify match (`path`): None, every row's main template; "visible", the
# visible-region templates of rows enrolled bare; "visible-masked", those of rows enrolled masked
# (a masked probe meets each with its own threshold); "plain-only", the main templates of rows
# without a visible-region template (those a masked probe can meet only the plain way);
# "plain-bare", the main templates of every row not enrolled masked: the SDK meets a masked
# enrolment only through its visible-region template, whatever the probe, because two masked
# faces compared whole look alike (a probe whose mask the detector missed would pass).
PATHS = (None, "visible", "visible-masked", "plain-only", "plain-bare")


@dataclass(frozen=True)
class GalleryRow:
    """A row's public description (never its template)."""

    row_id: int
    pseudonym: str
    purposes: tuple[str, ...]
    token_id: str
    expires_at: datetime
    provenance: str
    created_at: datetime
    last_interaction: Optional[datetime]
    token: Optional[str] = field(default=None, repr=False)  # sealed with the row; None before tokens were kept
    masked_template: bool = False  # the row holds a visible-region template for masked probes
    masked_enrolment: bool = False  # its enrolment image was masked (sealed; a masked probe's own threshold)


@dataclass(frozen=True)
class Enrollment:
    """One template to store with `add_many` (the arguments of `Gallery.add`)."""

    subject_id: str
    embedding: np.ndarray = field(repr=False)
    purposes: Sequence[str]
    token_id: str
    expires_at: datetime
    provenance: str = "consent"
    token: Optional[str] = field(default=None, repr=False)  # the consent or legal-basis token, sealed with the row
    # The raw visible-region embedding for masked probes; protected and sealed into the same row.
    visible: Optional[np.ndarray] = field(default=None, repr=False)
    # The mask detector called the enrolment image masked; sealed with the visible-region template.
    visible_masked: bool = False


@dataclass(frozen=True)
class Match:
    pseudonym: str
    score: float
    row_id: int
    token_id: str


@dataclass(frozen=True)
class ErasureResult:
    """What an erasure removed. `pseudonym` is None when the rows belonged to several subjects
    (or none). `vectors` says what became of the rows' vectors in an external index: "removed"
    (a query by id confirmed them gone) or "pending" (the index was unreachable; the removal is
    queued and retried). None for a store whose index lives in the process."""

    pseudonym: Optional[str]
    row_ids: tuple[int, ...]
    count: int
    vectors: Optional[str] = None
    # "pending" when the SQLite store could not yet drop the erased rows' old pages from its
    # write-ahead log (another connection was reading it): done at its next write, open or close.
    copies: Optional[str] = None
    # Rows the audit log listed as stored that were already gone (an erasure stopped between its
    # store's commit and its entry): named by this erasure's entry (not counted as removed by it)
    # and by its receipt, the one the person gets.
    settled: tuple[int, ...] = ()
    # Rows the audit log names as the subject's (or the consent's) that the erasure found stored
    # under no id (moved and edited by hand: no seal opens as theirs), and the rows failing their
    # integrity check that may be them: kept, named by the erasure's entry, not by its receipt.
    not_found: tuple[int, ...] = ()
    failing: tuple[int, ...] = ()


@dataclass(frozen=True)
class RekeyResult:
    rows: int
    transform_version: tuple[int, int]
    seal_version: tuple[int, int]


@dataclass(frozen=True)
class Entry:
    pseudonym: str
    purposes: frozenset[str]
    token_id: str
    expires_us: int
    visible: Optional[np.ndarray] = field(default=None, repr=False, compare=False)  # protected
    masked_enrolment: bool = False  # the visible-region template comes from a masked enrolment image
    # The look digests as the seal binds them (as stored, for a row sealed before they were bound):
    # what a store may judge look-alikes by without going through a database index.
    looks: tuple[str, str] = ("", "")


@dataclass
class Keys:
    """The key versions a store's rows are under, and the objects made from them."""

    transform_version: int
    seal_version: int
    transform: TemplateTransform
    sealer: Sealer


def to_us(t: datetime, what: str) -> int:
    if not isinstance(t, datetime):
        raise ConfigError(f"{what} must be a datetime, got {type(t).__name__}.")
    if t.tzinfo is None or t.utcoffset() is None:
        raise ConfigError(f"{what} must be timezone-aware (e.g. datetime.now(timezone.utc)).")
    delta = t - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def touched_expiry(new_expiry: Optional[datetime], purpose: Optional[str]) -> Optional[int]:
    """The expiry an interaction moves rows to, in microseconds. An interaction happens under one
    purpose and moves only the rows held for it: a match under a long purpose must not carry a
    short purpose's rows past their retention, nor cut a long one's short."""
    if new_expiry is None:
        return None
    if purpose is None:
        raise ConfigError("moving an expiry needs the purpose the interaction was under (touch(..., purpose=...)).")
    check_text(purpose, "purpose")
    return to_us(new_expiry, "new_expiry")


def ended_columns(columns: Iterable[Any], ended: Collection[str]) -> list[str]:
    """Of the purposes columns stored (`columns`, as rows are written: the integrity check holds
    them to that spelling), those of rows held only for purposes `ended` names: one purpose, or
    several that have all ended."""
    gone, out = {str(p) for p in ended}, []
    for c in columns:
        try:
            held = json.loads(c) if isinstance(c, str) else None
        except ValueError:
            continue
        if isinstance(held, list) and held and all(isinstance(p, str) and p in gone for p in held):
            out.append(c)
    return out


def purge_condition(now_us: int, columns: Sequence[str], mark: str) -> tuple[str, tuple[Any, ...]]:
    """The WHERE clause (with `mark` as the placeholder) and arguments of the rows a purge takes:
    expired at `now_us`, or with a purposes column `columns` names (ended_columns)."""
    return (f"expires_us <= {mark}" + "".join(f" OR purposes = {mark}" for _ in columns),
            (now_us, *columns))


def moved_expiry(purposes: Collection[str], current_us: int, new_us: int) -> int:
    """A row's expiry after an interaction under one of its purposes: the new one for a row held
    for that purpose alone; never later than it was for a row also held for others, whose
    retention this interaction says nothing about."""
    return new_us if len(purposes) <= 1 else min(current_us, new_us)


def from_us(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=int(us))


def iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat()


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def check_text(value: str, what: str) -> None:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{what} must be a non-empty string.")


def check_purposes(purposes: Sequence[str]) -> tuple[str, ...]:
    if isinstance(purposes, str):
        raise ConfigError("purposes must be a sequence of purpose names, not a single string.")
    out = tuple(sorted(set(purposes)))
    if not out:
        raise ConfigError("a gallery row needs at least one purpose.")
    for p in out:
        check_text(p, "each purpose")
    return out


def check_embedding(embedding: np.ndarray, dim: int) -> np.ndarray:
    """The embedding as a unit float64 vector of the store's dimension."""
    v = np.asarray(embedding, dtype=np.float64).reshape(-1)
    if v.shape[0] != dim:
        raise ConfigError(f"the embedding has dimension {v.shape[0]} but the gallery holds {dim}.")
    if not np.isfinite(v).all():
        raise ConfigError("the embedding contains NaN or infinity.")
    # Scaled by its largest entry first: the squares of an embedding near 1e160 overflow, and those
    # near 1e-161 lose their precision in subnormal floats, so its norm sealed a zero or stretched
    # template, which every later open refused as a key holder's (_check_unit).
    peak = float(np.abs(v).max()) if v.size else 0.0
    if peak == 0.0:
        raise ConfigError("the embedding is all zeros.")
    v = v / peak
    return v / float(np.linalg.norm(v))


# The meta key a re-key sets, in the transaction that moves the rows, to the versions it moved
# them from, MACed under the new seal key: a store made new under the keyring's newest keys has
# none, so the old versions its rows (or their backup) may still be under are not taken for left
# over (SafeFace._finish_rekey); one inserted by hand, without the key, does not hold.
REKEYED_FROM = "rekeyed_from"


def rekey_mark(keyring: Keyring, meta: dict[str, str], moved_from: str) -> str:
    """The REKEYED_FROM value for a store whose meta names its new key versions and ids."""
    key = keyring.key("seal", int(meta["seal_version"]))
    body = f"safeface-rekeyed|{moved_from}|{meta['transform_key_id']}|{meta['seal_key_id']}"
    return moved_from + "|" + hmac.new(key, body.encode("utf-8"), hashlib.sha256).hexdigest()


def rekey_mark_holds(keyring: Keyring, meta: dict[str, str]) -> bool:
    """Whether the store's meta carries a REKEYED_FROM value made with its keys."""
    got = meta.get(REKEYED_FROM) or ""
    try:
        want = rekey_mark(keyring, meta, got.split("|", 1)[0])
    except (KeyError, ValueError, ConfigError):
        return False
    return same_digest(got, want)


def erased_mark(keyring: Keyring, seal_version: int, row_id: int, sealed_sha256: str,
                namespace: Optional[str] = None) -> str:
    """A MAC, under the seal key, saying that an erasure deleted row `row_id`, whose sealed bytes
    had this SHA-256: written in the delete's transaction, so that a retry of an erasure killed
    before its audit entry can tell the row it finds gone from one moved by hand (see
    ServerStore._owned). Without the key, no one can write one for a row they only moved.
    `namespace`: the store's schema, which the note is bound to (each namespace numbers its rows
    from 1, so a note copied from another namespace sharing the keyring named a row here); None:
    the form an earlier release wrote, bound to no namespace."""
    key = keyring.key("seal", int(seal_version))
    body = (f"safeface-erased|{int(row_id)}|{sealed_sha256}" if namespace is None
            else f"safeface-erased-in|{namespace}|{int(row_id)}|{sealed_sha256}")
    return hmac.new(key, body.encode("utf-8"), hashlib.sha256).hexdigest()


def initial_meta(keyring: Keyring, dim: int) -> dict[str, str]:
    """The meta a new store records: schema, dimension and the key versions (with their ids)."""
    tv, sv, pv = keyring.version("transform"), keyring.version("seal"), keyring.version("pseudonym")
    return {
        "schema": str(SCHEMA_VERSION),
        "dim": str(dim),
        "transform_version": str(tv),
        "transform_key_id": keyring.key_id("transform", tv),
        "seal_version": str(sv),
        "seal_key_id": keyring.key_id("seal", sv),
        "pseudonym_version": str(pv),
        "pseudonym_key_id": keyring.key_id("pseudonym", pv),
    }


def keys_from_meta(meta: dict[str, str], keyring: Keyring, dim: int, where: str) -> tuple[Keys, int]:
    """The keys a store's meta names, checked against the keyring; and the pseudonym key
    version. `where` names the store in errors."""
    if meta.get("schema") != str(SCHEMA_VERSION):
        raise ConfigError(f"{where} has schema {meta.get('schema')!r}; this safeface reads schema "
                          f"{SCHEMA_VERSION}. Upgrade safeface, or open it with the version that wrote it.")
    if meta.get("dim") != str(dim):
        raise ConfigError(f"{where} holds {meta.get('dim')}-dimensional templates, but it was opened with "
                          f"dim={dim}; use the engine it was enrolled with.")
    named = [(purpose, meta_number(meta.get(f"{purpose}_version"), f"{purpose}_version", where),
              meta.get(f"{purpose}_key_id"))
             for purpose in ("transform", "seal", "pseudonym")]
    (_, tv, _), (_, sv, _), (_, pv, _) = named
    for purpose, v, kid in named:
        if v not in keyring.versions(purpose):
            refresh = getattr(keyring, "refresh", None)
            if refresh is not None:
                refresh()
        if v not in keyring.versions(purpose):
            raise ConfigError(f"the keyring holds no {purpose} key version {v}, which {where} is under; "
                              f"open it with the keyring it was made with.")
        if keyring.key_id(purpose, v) != kid:
            raise ConfigError(f"the keyring's {purpose} key version {v} (id {keyring.key_id(purpose, v)}) is not "
                              f"the one {where} is under (id {kid}); open it with the keyring it was made with.")
    keys = [keyring.key("transform", tv), keyring.key("seal", sv), keyring.key("pseudonym", pv)]
    if len({hashlib.sha256(k).digest() for k in keys}) != 3:
        raise ConfigError("the keyring hands out one key for several purposes; the transform, seal and "
                          "pseudonym keys must be independent.")
    return (Keys(tv, sv, TemplateTransform.from_key(keyring.key("transform", tv), dim), Sealer(keyring.key("seal", sv))),
            pv)


def meta_number(value: Any, key: str, where: str) -> int:
    """A key version, count or id a store keeps in its meta table (`value`, None when absent). One
    missing or edited into something that is no number names the entry: a bare KeyError or
    ValueError stopped every open, search or enrolment without saying what had been edited."""
    try:
        return int(value)
    except (TypeError, ValueError):
        raise IntegrityError(f"{where}: its meta entry {key!r} is missing or not a number (edited by hand); nothing "
                             "was changed. Restore the store's meta table from a backup.") from None


def pseudonym_of(keyring: Keyring, version: int, subject_id: str) -> str:
    return pseudonymize(keyring.key("pseudonym", version), subject_id)


@dataclass(frozen=True)
class Looks:
    """A subject id's look digests (pseudonym.look_digests): `stored`, of the present version,
    kept beside each new row (columns look, look_small); `earlier`, of each earlier version, to
    compare with rows stored under it (a row cannot be digested again: the id is not stored)."""

    stored: tuple[str, str]
    earlier: tuple[tuple[str, str], ...]

    def where(self, mark: str) -> str:
        """"(look IN (...) OR look_small IN (...))" with `mark` for each parameter of query()."""
        marks = ", ".join([mark] * (1 + len(self.earlier)))
        return f"(look IN ({marks}) OR look_small IN ({marks}))"

    def query(self) -> tuple[str, ...]:
        """Parameters of where(): every version's capitals reading, then its small-letter one."""
        every = (self.stored, *self.earlier)
        return tuple(d[0] for d in every) + tuple(d[1] for d in every)


def looks_of(keyring: Keyring, version: int, subject_id: str) -> Looks:
    key = keyring.key("pseudonym", version)
    return Looks(look_digests(key, subject_id),
                 tuple(look_digests(key, subject_id, v) for v in range(1, LOOK_VERSION)))


LookColumns = tuple[Optional[str], Optional[str]]  # a row's look, look_small as stored (None: NULL)


def stored_looks(look: Any, look_small: Any) -> tuple[str, str]:
    """A row's look columns as a seal binds them: NULL (an earlier release's SQLite row) is ""."""
    return ("" if look is None else str(look), "" if look_small is None else str(look_small))


def blob(template: np.ndarray, token: Optional[str], visible: Optional[np.ndarray], masked_enrolment: bool,
         looks: Optional[LookColumns] = None) -> bytes:
    """What a seal covers: the protected template (little-endian float32), then the row's look
    digests behind LOOKS_MAGIC (`looks`; every row the stores seal now has them, None only lays
    out a row as sealed before), then the protected visible-region template behind its marker if
    there is one (VISIBLE_MAGIC_MASKED when the enrolment image was masked), then the token."""
    head = b""
    if looks is not None:
        parts = [v.encode("utf-8") for v in stored_looks(*looks)]
        if any(len(v) > 0xFFFF for v in parts):
            raise ConfigError("a look digest column holds more than 65,535 bytes; it cannot be sealed.")
        head = LOOKS_MAGIC + b"".join(len(v).to_bytes(2, "big") + v for v in parts)
    if visible is None:
        if masked_enrolment:
            raise ConfigError("a masked enrolment is recorded with its visible-region template; this row has none. "
                              "Pass the visible-region embedding with visible_masked=True, or leave the flag off.")
        mid = b""
    else:
        magic = VISIBLE_MAGIC_MASKED if masked_enrolment else VISIBLE_MAGIC
        mid = magic + np.asarray(visible).astype("<f4").tobytes()
    return template.astype("<f4").tobytes() + head + mid + (token or "").encode("utf-8")


def seal_row(keys: Keys, row_id: int, pseudonym: str, purposes: Sequence[str], token_id: str, provenance: str,
             expires_us: int, template: np.ndarray, token: Optional[str], *,
             visible: Optional[np.ndarray], masked_enrolment: bool, looks: Optional[LookColumns] = None) -> bytes:
    """Seal a row. `visible` and `masked_enrolment` have no defaults: a re-seal (touch, rekey)
    that forgot them would drop the visible-region template or the masked-enrolment flag.
    `looks`: the look, look_small columns the row is stored with, bound by the seal (unseal_row
    refuses the row once they differ). The stores always pass them; None seals a row as an
    earlier release did, whose look columns nothing vouches for."""
    binding = RowBinding(int(row_id), pseudonym, tuple(purposes), token_id, provenance, int(expires_us),
                         keys.transform_version, keys.seal_version)
    return keys.sealer.seal(blob(template, token, visible, masked_enrolment, looks), binding)


@dataclass(frozen=True)
class Prepared:
    """An Enrollment checked for storing (as `add_many` of either store needs it): its pseudonym,
    the unit raw embeddings, purposes sorted, expiry in microseconds."""

    pseudonym: str
    embedding: np.ndarray = field(repr=False)
    purposes: tuple[str, ...]
    token_id: str
    provenance: str
    expires_us: int
    token: Optional[str] = field(repr=False)
    visible: Optional[np.ndarray] = field(repr=False)
    visible_masked: bool
    looks: Looks  # the id's look digests, the present version's stored beside the row


def prepare(item: Enrollment, pseudonym: str, looks: Looks, dim: int) -> Prepared:
    purposes = check_purposes(item.purposes)
    check_text(item.token_id, "token_id")
    check_text(item.provenance, "provenance")
    if item.visible_masked and item.visible is None:
        raise ConfigError("visible_masked=True needs the enrolment's visible-region embedding (visible=...): the "
                          "flag is sealed with that template.")
    return Prepared(pseudonym, check_embedding(item.embedding, dim), purposes, item.token_id, item.provenance,
                    to_us(item.expires_at, "expires_at"), item.token,
                    None if item.visible is None else check_embedding(item.visible, dim), bool(item.visible_masked),
                    looks)


LOOKALIKE_REFUSED = ("the subject id prints as the id of a subject already enrolled, or of another in the same batch: "
                     "the two differ only in case, in punctuation drawn alike (a Unicode hyphen), or in letters "
                     "drawn alike (a Cyrillic \"о\" for a Latin \"o\", a small capital). A second person under it "
                     "would be missed by an erasure of the other. Enrol under the id as it is already written, or "
                     "under one that reads differently.")


def refuse_lookalikes(prepared: Sequence[Prepared], others: Callable[[Looks, str], bool],
                      enrolled: Callable[[str], bool]) -> None:
    """Inside a store's write (so that two processes cannot both pass): refuse a batch that would
    enrol a new subject whose id prints as another's, in the store or anywhere in the batch.
    `others(looks, pseudonym)`: whether a row of another subject shares a look digest, of
    either version (Looks.query); `enrolled(pseudonym)`: whether the subject has rows (one
    already enrolled is not new; rows stored before look digests existed have none and are not
    found)."""
    owners: dict[tuple[int, str], set[str]] = {}  # every item's, before any is judged: order cannot matter
    for p in prepared:
        for i, d in enumerate(p.looks.stored):
            owners.setdefault((i, d), set()).add(p.pseudonym)
    for p in prepared:
        clash = (any(owners[(i, d)] - {p.pseudonym} for i, d in enumerate(p.looks.stored))
                 or others(p.looks, p.pseudonym))
        if clash and not enrolled(p.pseudonym):
            raise InvalidArgument(LOOKALIKE_REFUSED)


def refuse_blanked(rows: Iterable[Sequence[Any]], keys: Keys, dim: int) -> None:
    """Inside a store's write, before refuse_lookalikes: open each row BLANK_LOOKS selects (in
    OPEN_COLS). A row sealed before look digests were bound opens; one whose seal binds digests
    its columns no longer hold (blanked by hand, so that a look-alike finds nothing to clash with)
    raises IntegrityError naming it, and nothing is written."""
    for r in rows:
        unseal_row(keys, r, dim)


def refuse_kept(kept: Sequence[int], table: str) -> None:
    """Inside an erasure's transaction, after its delete: rows it removed that are still there
    (a trigger that skips the delete or puts the row back, a rule that does nothing instead).
    The receipt would have said erased while the row stayed searchable; refused instead, so the
    transaction is rolled back and the erasure recorded as failed."""
    if kept:
        raise IntegrityError(f"rows {', '.join(str(int(r)) for r in kept)} are still stored after the erasure's "
                             f"delete: a database trigger or rule on {table} kept them. Nothing was erased. Find who "
                             "added it, remove it, and erase again.")


def check_path(path: Optional[str]) -> None:
    if path not in PATHS:
        raise ConfigError(f"path must be one of {', '.join(map(repr, PATHS))}, got {path!r}.")


def path_template(entry: Entry, vec: np.ndarray, path: Optional[str]) -> Optional[np.ndarray]:
    """The template of a row that `path` (see PATHS) scores, or None when the row takes no part."""
    if path is None:
        return vec
    if path == "plain-only":
        return vec if entry.visible is None else None
    if path == "plain-bare":
        return None if entry.masked_enrolment else vec
    return entry.visible if entry.masked_enrolment == (path == "visible-masked") else None


def protect(keys: Keys, raw: Optional[np.ndarray], dim: int) -> Optional[np.ndarray]:
    """A raw visible-region embedding through the store's keyed transform (as the main template),
    or None."""
    if raw is None:
        return None
    out: np.ndarray = keys.transform.apply(check_embedding(raw, dim).reshape(1, -1))[0].astype(np.float32)
    return out


def rekeyed(old: Keys, new: Keys, same_transform: bool, visible: Optional[np.ndarray]) -> Optional[np.ndarray]:
    """A protected visible-region template moved to the new transform (as rekey moves the main one)."""
    if visible is None or same_transform:
        return visible
    return np.asarray(old.transform.rekey_to(new.transform, visible)).astype(np.float32)


_HEX = frozenset("0123456789abcdef")


def _digest_shaped(v: str) -> bool:
    return len(v) == 64 and set(v) <= _HEX


def _bound_looks(rest: bytes, row_id: Any) -> tuple[Optional[tuple[str, str]], bytes]:
    """The look digests a sealed blob binds (the part behind its template), or None for a row
    sealed before they were bound; and what follows them."""
    if not rest.startswith(LOOKS_MAGIC):
        return None, rest
    at, out = len(LOOKS_MAGIC), []
    for _ in range(2):
        n = int.from_bytes(rest[at:at + 2], "big")
        if len(rest) < at + 2 + n:
            raise IntegrityError(f"gallery row {row_id} failed its integrity check: its sealed look digests are "
                                 "truncated.")
        try:
            out.append(rest[at + 2:at + 2 + n].decode("utf-8"))
        except UnicodeDecodeError:
            raise IntegrityError(f"gallery row {row_id} failed its integrity check: its sealed look digests are "
                                 "not valid.") from None
        at += 2 + n
    return (out[0], out[1]), rest[at:]


def check_looks(row_id: Any, bound: Optional[tuple[str, str]], look: Any, look_small: Any) -> None:
    """The row's look columns against what its seal binds. A row sealed before they were bound
    (`bound` None) passes with none (as an earlier release stored it) or with two digests, as
    safeface wrote them: nothing else ("x") was ever stored."""
    stored = stored_looks(look, look_small)
    if bound is not None:
        if stored != bound:
            raise IntegrityError(f"gallery row {row_id} failed its integrity check: its look digest columns "
                                 "(look, look_small) are not the ones its seal binds (altered by hand: a look-alike "
                                 "id could be enrolled beside its subject, and escape the subject's erasure).")
    elif stored != ("", "") and not all(_digest_shaped(v) for v in stored):
        raise IntegrityError(f"gallery row {row_id} failed its integrity check: its look digest columns hold "
                             "neither digests nor nothing (altered by hand).")


def unseal_row(keys: Keys, row: Sequence[Any], dim: int) -> tuple[Entry, np.ndarray, Optional[str]]:
    """A row in OPEN_COLS order, opened: its entry (with its visible-region template, if any),
    protected template and token. Raises IntegrityError naming the row when any bound column or
    the blob was altered, the look digests included (check_looks). The stores always pass
    OPEN_COLS; a row in ROW_COLS order alone (a host's own tool) is opened without its look
    columns compared."""
    if len(row) == 11:
        (row_id, pseudonym, purposes_json, token_id, provenance, expires_us, tv, sv, sealed, look,
         look_small) = row
    else:
        (row_id, pseudonym, purposes_json, token_id, provenance, expires_us, tv, sv, sealed) = row
    try:
        purposes = tuple(json.loads(purposes_json))
    except (TypeError, ValueError):
        raise IntegrityError(f"gallery row {row_id} failed its integrity check: its purposes "
                             f"column is not valid.") from None
    # Exactly as written, not only the same JSON: the purge and the index find rows by this text,
    # so a respelled copy ('["\\u0064emo"]') kept an ended purpose's rows out of its purge.
    if purposes_json != json.dumps(list(purposes)):
        raise IntegrityError(f"gallery row {row_id} failed its integrity check: its purposes column is not "
                             "as written (respelled by hand).")
    if tv != keys.transform_version or sv != keys.seal_version:
        raise IntegrityError(f"gallery row {row_id} failed its integrity check: it claims key versions "
                             f"{tv}/{sv} but the gallery is under {keys.transform_version}/{keys.seal_version}.")
    binding = RowBinding(int(row_id), str(pseudonym), purposes, str(token_id), str(provenance),
                         int(expires_us), int(tv), int(sv))
    plain = keys.sealer.open(bytes(sealed), binding)
    n = 4 * dim
    if len(plain) < n:
        raise IntegrityError(f"gallery row {row_id} failed its integrity check: its template has the wrong length.")
    bound, rest = _bound_looks(plain[n:], row_id)
    if len(row) == 11:
        check_looks(row_id, bound, look, look_small)
    visible, masked_enrolment = None, False
    for magic, masked in ((VISIBLE_MAGIC, False), (VISIBLE_MAGIC_MASKED, True)):
        if rest.startswith(magic):
            m = len(magic)
            if len(rest) < m + n:
                raise IntegrityError(f"gallery row {row_id} failed its integrity check: its visible-region template "
                                     f"has the wrong length.")
            visible, masked_enrolment = np.frombuffer(rest[m:m + n], dtype="<f4").astype(np.float32), masked
            rest = rest[m + n:]
            break
    token = rest.decode("utf-8") if rest else None
    vec = np.frombuffer(plain[:n], dtype="<f4").astype(np.float32)
    _check_unit(row_id, vec, "template")
    if visible is not None:
        _check_unit(row_id, visible, "visible-region template")
    looks = bound if bound is not None else stored_looks(look, look_small) if len(row) == 11 else ("", "")
    return (Entry(str(pseudonym), frozenset(purposes), str(token_id), int(expires_us), visible, masked_enrolment,
                  looks),
            vec, token)


# How far a stored template's squared norm may stray from 1: float32 rounding through the
# transform and re-keys stays near 1e-6.
UNIT_SLACK = 1e-3


def _check_unit(row_id: Any, template: np.ndarray, what: str) -> None:
    """Every template safeface seals is a unit vector (check_embedding, an orthogonal transform).
    One sealed otherwise by a key holder scored every probe by its scale: a template times 1e30
    (or NaN, which passes every threshold test) came first for every face in identify and verify."""
    t = template.astype(np.float64)  # float32 would overflow (and warn) on a scale of 1e30
    if not abs(float(t @ t) - 1.0) <= UNIT_SLACK:  # NaN and inf fail too
        raise IntegrityError(f"gallery row {row_id} failed its integrity check: its {what} is not a unit vector, "
                             "so safeface did not seal it (someone holding the keys did). Restore the store from a "
                             "backup made before the change.")


def describe(entry: Entry, row_id: int, provenance: str, created_at: str, last_interaction: Optional[str],
             token: Optional[str]) -> GalleryRow:
    return GalleryRow(int(row_id), entry.pseudonym, tuple(sorted(entry.purposes)), entry.token_id,
                      from_us(entry.expires_us), str(provenance), _stored_time(row_id, "created_at", created_at),
                      _stored_time(row_id, "last_interaction", last_interaction) if last_interaction else None, token,
                      entry.visible is not None, entry.masked_enrolment)


def _stored_time(row_id: int, column: str, value: Any) -> datetime:
    """A row's created_at or last_interaction, which no seal binds (they only describe the row).
    A value edited into something that is no date names the row: a bare ValueError crashed the
    records, the store check and `audit verify` instead of pointing at the edit."""
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise IntegrityError(f"gallery row {row_id} failed its integrity check: its {column} column is not a date "
                             "(edited by hand).") from None

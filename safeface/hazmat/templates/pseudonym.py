"""Subject pseudonyms: the gallery keys rows by HMAC-SHA256(subject id) under the deployment's
pseudonym key, so the subject's identifier itself is never stored."""

from __future__ import annotations

import hashlib
import hmac

from ...errors import ConfigError

# Domain separation: the same key used for anything else would give unrelated digests.
_LABEL = b"safeface pseudonym v1\x00"


def pseudonymize(key: bytes, subject_id: str) -> str:
    """The subject's pseudonym: 64 hex digits of HMAC-SHA256(key, label || utf-8 subject id)."""
    if not isinstance(subject_id, str) or not subject_id:
        raise ConfigError("a subject id must be a non-empty string.")
    if len(key) < 32:
        raise ConfigError("the pseudonym key must be at least 32 bytes.")
    return hmac.new(key, _LABEL + subject_id.encode("utf-8"), hashlib.sha256).hexdigest()


def same_pseudonym(a: str, b: str) -> bool:
    """Constant-time equality of two pseudonyms (they are keyed digests: compare them as secrets)."""
    return hmac.compare_digest(a.encode("ascii", "replace"), b.encode("ascii", "replace"))


_TOKEN_LABEL = b"safeface token ref v1\x00"


def token_pseudonym(key: bytes, token_id: str) -> str:
    """A consent or legal-basis token's id as stored and logged: a keyed digest under the
    pseudonym key, so a token id seen in one workspace cannot be found in another's records."""
    if not isinstance(token_id, str) or not token_id:
        raise ConfigError("a token id must be a non-empty string.")
    return "t-" + hmac.new(key, _TOKEN_LABEL + token_id.encode("utf-8"), hashlib.sha256).hexdigest()[:32]

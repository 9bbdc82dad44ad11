"""Template protection and the gallery store: pseudonyms, the keyed revocable transform, sealing,
the keyring, and the SQLite gallery of sealed protected templates."""

from __future__ import annotations

from .gallery import (
    Enrollment,
    ErasureResult,
    Gallery,
    GalleryRow,
    IndexFactory,
    Match,
    RekeyResult,
    default_index_factory,
)
from .keyring import (
    PURPOSES,
    HostKeyring,
    Keyring,
    KeyProvider,
    PassphraseKeyring,
    ScryptParams,
    StaticKeyProvider,
    key_id_of,
)
from .pseudonym import pseudonymize, same_pseudonym
from .sealing import RowBinding, Sealer
from .transform import TemplateTransform

__all__ = [
    "PURPOSES",
    "Enrollment",
    "ErasureResult",
    "Gallery",
    "GalleryRow",
    "HostKeyring",
    "IndexFactory",
    "KeyProvider",
    "Keyring",
    "Match",
    "PassphraseKeyring",
    "RekeyResult",
    "RowBinding",
    "ScryptParams",
    "Sealer",
    "StaticKeyProvider",
    "TemplateTransform",
    "default_index_factory",
    "key_id_of",
    "pseudonymize",
    "same_pseudonym",
]

"""Names checked by a pattern and then used elsewhere: a final newline must not pass.

Python's `re.match` with a pattern ending in "$" accepts "name\n". A storage namespace spelt
"safeface\n" passed the check although the lock key is computed from that spelling and PostgreSQL
reads the schema as "safeface"; a model pack named "dlib\n" would become a file name with a
newline in it."""

from __future__ import annotations

import pytest

from safeface.errors import ConfigError, ModelError
from safeface.modelstore.packs import check_pack_name
from safeface.storage.server import check_namespace


@pytest.mark.parametrize("name", ["safeface\n", "safeface\r\n", "\nsafeface", "safe face", 7])
def test_a_namespace_with_a_final_newline_or_of_another_type_is_refused(name: object) -> None:
    """A deployment names its server schema "safeface\\n": refused before any statement is made."""
    with pytest.raises(ConfigError, match="storage.namespace"):
        check_namespace(name)  # type: ignore[arg-type]
    check_namespace("safeface")  # the plain spelling passes


def test_a_pack_name_with_a_final_newline_is_refused() -> None:
    """A model pack named "dlib\\n" is refused, as any other odd character is."""
    with pytest.raises(ModelError, match="not a usable pack name"):
        check_pack_name("dlib\n")
    assert check_pack_name("dlib") == "dlib"

"""Creating a workspace: its deployment, keyring, empty (authenticated) trust store, audit log
with its anchor, and, for a demo, insecure demo keys trusted through the audited path."""

from __future__ import annotations

import datetime as dt
import os
import secrets
from pathlib import Path
from typing import Optional, Sequence

from ..errors import ConfigError
from ..policy.deployment import Deployment, blank_config, demo_config
from ..policy.rules import DEFAULT_PROFILE, check_profiles
from ..policy.tokens import public_key_text
from .assessment import assessment_note, sealed
from .audit import AuditLog
from ..atomicfile import write_atomic, write_new
from .keys import ASSESSMENT_MAC, derived_key, mark_demo, new_signing_key
from .passphrase import PASSPHRASE_ENV, resolve_passphrase
from .paths import WorkspacePaths
from .session import start_witnesses, workspace_anchors
from .trust import change_trust, write_empty


def init_workspace(root: Path, *, demo: bool = False, profiles: Sequence[str] = (DEFAULT_PROFILE,),
                   passphrase: Optional[str] = None, passphrase_file: Optional[Path] = None,
                   today: Optional[dt.date] = None) -> WorkspacePaths:
    """Create a workspace. With `demo`, a complete sample deployment with demo keys (and, unless
    a passphrase is given, a generated demo passphrase stored in it); without, a configuration
    to fill in (which refuses every call until complete)."""
    from ..hazmat.templates.keyring import PassphraseKeyring
    from ..policy.receipts import receipt_key

    paths = WorkspacePaths(Path(root))
    profs = check_profiles(list(profiles))
    if paths.config.exists():
        raise ConfigError(f"{paths.root} already holds a deployment; choose an empty directory.")
    # Owner only, whatever the host's umask: the folder holds the configuration and the stores,
    # and whoever may write it may delete or swap them (a folder that exists is left as it is).
    paths.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    paths.keys.mkdir(mode=0o700, exist_ok=True)
    today = today or dt.datetime.now(dt.timezone.utc).date()
    if demo and not passphrase and passphrase_file is None and not os.environ.get(PASSPHRASE_ENV):
        # With none given, a demo keeps its own passphrase in the workspace (insecure by design).
        passphrase = "demo-" + secrets.token_urlsafe(18)
        write_new(paths.demo_passphrase, (passphrase + "\n").encode())
    passphrase = resolve_passphrase(paths.root, passphrase, passphrase_file)
    deployment = Deployment.from_dict(demo_config(today, profs) if demo else blank_config(profs))
    deployment.save(paths.config)
    keyring = PassphraseKeyring.create(paths.keyring, passphrase)
    if demo:
        mark_demo(paths, keyring)
    write_atomic(paths.receipt_public, public_key_text(receipt_key(keyring.key("pseudonym")).public_key()) + "\n")
    paths.reports.mkdir(mode=0o700, exist_ok=True)
    write_empty(paths, keyring)
    assessed = deployment.section("assessment")
    if assessed.get("covers"):  # a demo is created assessed: sealed like `safeface assess` seals it
        assessed = sealed(derived_key(keyring, ASSESSMENT_MAC), assessed, deployment.covered_settings())
        deployment = Deployment.from_dict({**deployment.raw, "assessment": assessed})
        deployment.save(paths.config)
    with AuditLog(paths.audit, keyring.key("audit"), workspace_anchors(paths, keyring, deployment)) as log:
        kind = "demo workspace" if demo else "workspace"
        log.append("init", "allowed", note=f"{kind}; profiles {','.join(profs)}"
                   + (f"; {assessment_note(assessed)}" if assessed.get("covers") else ""))
        start_witnesses(log, first=True)  # a witness named from the start is on record like any other
        if demo:
            issuer = new_signing_key(paths.demo_issuer)
            authority = new_signing_key(paths.demo_authority)
            change_trust(paths, keyring, log, add=[
                ("consent-issuer", issuer.public_key(), "DEMO consent service (insecure)"),
                ("authority", authority.public_key(), "DEMO authority (insecure)")])
    return paths

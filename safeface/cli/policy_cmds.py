"""The compliance commands: a workspace (init, assess, keys), consent and legal-basis tokens, the
guarded biometric calls (enroll, verify, identify, export, analyze), rights (erase, consent
revoke), housekeeping (purge, rekey) and evidence (audit verify, report).

The keyring passphrase comes from $SAFEFACE_PASSPHRASE or --passphrase-file (a --demo workspace
falls back to its stored, insecure demo passphrase)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path
from typing import Any, Optional

from ..errors import ConfigError
from .common import EXIT_OK, print_json, say

PROFILE_CHOICES = ("cn-2025", "eu", "us-bipa")


def _ws(p: argparse.ArgumentParser) -> None:
    p.add_argument("workspace", help="workspace directory")
    p.add_argument("--passphrase-file", type=Path, default=None,
                   help="file holding the keyring passphrase (default: $SAFEFACE_PASSPHRASE)")
    p.add_argument("--role", default=None, help="the caller's role as defined in deployment.json (default: its default_role)")


def _open(args: argparse.Namespace) -> Any:
    from ..sdk import SafeFace

    return SafeFace.open(args.workspace, passphrase_file=args.passphrase_file, role=args.role)


def _token_arg(value: Optional[str]) -> Optional[str]:
    """A token given inline, or as @FILE."""
    if value is None:
        return None
    if value.startswith("@"):
        try:
            return Path(value[1:]).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the token file {value[1:]} ({exc.strerror}).") from None
    return value.strip()


def register(sub: Any) -> None:
    p = sub.add_parser("init", help="create a workspace (--demo: a complete sample deployment)")
    p.add_argument("workspace")
    p.add_argument("--demo", action="store_true", help="a complete sample deployment with purpose 'demo' and demo keys")
    p.add_argument("--profile", action="append", choices=PROFILE_CHOICES, default=None,
                   help="policy profile; repeat to stack (default: cn-2025)")
    p.add_argument("--passphrase-file", type=Path, default=None)
    p.set_defaults(func=_init)

    p = sub.add_parser("assess", help="record the impact assessment covering the current configuration")
    _ws(p)
    p.add_argument("--reference", required=True)
    p.add_argument("--date", required=True, help="YYYY-MM-DD")
    p.set_defaults(func=_assess)

    p = sub.add_parser("keys", help="create a signing key for consent or legal bases and trust it")
    ks = p.add_subparsers(dest="keys_command", metavar="ACTION")
    k = ks.add_parser("new", help="generate an Ed25519 key, write its private half to --out, trust its public half")
    _ws(k)
    k.add_argument("--kind", choices=("consent-issuer", "authority"), required=True)
    k.add_argument("--out", type=Path, required=True, help="where to write the private key (keep it off this machine)")
    k.add_argument("--label", default="")
    k.set_defaults(func=_keys_new)

    p = sub.add_parser("consent", help="issue or revoke consent tokens")
    cs = p.add_subparsers(dest="consent_command", metavar="ACTION")
    c = cs.add_parser("issue", help="print a signed consent token (needs the issuer's private key)")
    _ws(c)
    c.add_argument("--subject", required=True)
    c.add_argument("--purpose", required=True, action="append", help="repeat for several purposes")
    c.add_argument("--operations", default="enroll,verify,identify", help="comma-separated: enroll,verify,identify,transmit")
    c.add_argument("--days", type=float, default=365.0, help="validity in days (default 365)")
    c.add_argument("--birth-date", default=None, help="YYYY-MM-DD, as declared by the person")
    c.add_argument("--guardian", default=None, help="the parent or guardian who consents for a child under 14")
    c.add_argument("--issuer-key", type=Path, default=None, help="PEM private key (default: the demo key of a demo workspace)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=_consent_issue)
    c = cs.add_parser("revoke", help="withdraw a consent: processing stops, templates are erased, a receipt is printed")
    _ws(c)
    g = c.add_mutually_exclusive_group(required=True)
    g.add_argument("--token-id")
    g.add_argument("--subject")
    c.set_defaults(func=_consent_revoke)

    p = sub.add_parser("legal-basis", help="issue a legal-basis token (an authority's key)")
    ls = p.add_subparsers(dest="lb_command", metavar="ACTION")
    c = ls.add_parser("issue")
    _ws(c)
    c.add_argument("--authority", required=True)
    c.add_argument("--provision", required=True, help="the legal provision that provides for the processing")
    c.add_argument("--reference", default="", help="the order's case or file reference")
    c.add_argument("--purpose", required=True, action="append")
    c.add_argument("--operations", default="identify")
    c.add_argument("--days", type=float, default=30.0)
    c.add_argument("--authority-key", type=Path, default=None)
    c.set_defaults(func=_lb_issue)

    for name, helptext in (("enroll", "enrol a consenting subject's face"), ("verify", "is this the subject? (1:1)")):
        p = sub.add_parser(name, help=helptext)
        _ws(p)
        p.add_argument("image")
        p.add_argument("--subject", required=True)
        p.add_argument("--purpose", required=True)
        p.add_argument("--consent", default=None, help="the consent token, or @FILE")
        p.add_argument("--legal-basis", default=None, help="a legal-basis token, or @FILE")
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=_enroll if name == "enroll" else _verify)

    p = sub.add_parser("identify", help="who is this? (1:N among consenting subjects of the purpose)")
    _ws(p)
    p.add_argument("image")
    p.add_argument("--purpose", required=True)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--consent", default=None)
    g.add_argument("--legal-basis", default=None)
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_identify)

    p = sub.add_parser("export", help="disclose a subject's records to a recipient (needs transmit consent or a legal basis)")
    _ws(p)
    p.add_argument("--subject", required=True)
    p.add_argument("--purpose", required=True)
    p.add_argument("--recipient", required=True)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--consent", default=None)
    g.add_argument("--legal-basis", default=None)
    p.set_defaults(func=_export)

    p = sub.add_parser("erase", help="erase a subject at once; prints a signed receipt")
    _ws(p)
    p.add_argument("--subject", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_erase)

    p = sub.add_parser("analyze", help="technical facts about the faces (count, boxes); personal attributes are refused")
    _ws(p)
    p.add_argument("image")
    p.add_argument("--attribute", action="append", default=None, help="faces, box, landmarks or score; repeatable")
    p.set_defaults(func=_analyze)

    p = sub.add_parser("purge", help="remove expired templates now; prints the receipt")
    _ws(p)
    p.set_defaults(func=_purge)

    p = sub.add_parser("rekey", help="rotate the template keys and move every template to them (no images needed)")
    _ws(p)
    p.set_defaults(func=_rekey)

    p = sub.add_parser("audit", help="check the audit log")
    a = p.add_subparsers(dest="audit_command", metavar="ACTION")
    v = a.add_parser("verify", help="detect any edit, deletion, reordering or truncation (exit 4)")
    _ws(v)
    v.set_defaults(func=_audit_verify)

    p = sub.add_parser("report", help="write the compliance report (HTML and JSON)")
    _ws(p)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=_report)


# -- handlers ------------------------------------------------------------------------------
def _init(args: argparse.Namespace) -> int:
    from ..workspace.layout import PASSPHRASE_ENV, init_workspace, resolve_passphrase

    passphrase = None
    if not args.demo or args.passphrase_file is not None:
        passphrase = resolve_passphrase(Path(args.workspace), None, args.passphrase_file)
    paths = init_workspace(Path(args.workspace), demo=args.demo, profiles=tuple(args.profile or ("cn-2025",)),
                           passphrase=passphrase)
    print(f"workspace created: {paths.root}")
    if args.demo:
        say(f"demo deployment with purpose 'demo'. INSECURE demo keys and passphrase are stored in {paths.keys}: "
            "never use a demo workspace for real people.")
    else:
        say(f"fill in {paths.config}, record the impact assessment with `safeface assess`, and trust your consent "
            f"service's key with `safeface keys new`. Every call is refused until the deployment is complete. "
            f"(passphrase from ${PASSPHRASE_ENV} or --passphrase-file)")
    return EXIT_OK


def _assess(args: argparse.Namespace) -> int:
    from ..policy.deployment import Deployment
    from ..workspace.layout import WorkspacePaths, check_registrable

    paths = WorkspacePaths(Path(args.workspace))
    dep = Deployment.load(paths.config)
    check_registrable(dep)
    try:
        dt.date.fromisoformat(args.date)
    except ValueError:
        raise ConfigError(f"--date must be YYYY-MM-DD, not {args.date!r}.") from None
    raw = dict(dep.raw)
    raw["assessment"] = {**dep.section("assessment"), "reference": args.reference, "date": args.date,
                         "covers": dep.config_digest()}
    Deployment.from_dict(raw).save(paths.config)
    print(f"assessment {args.reference} ({args.date}) recorded as covering the current configuration")
    return EXIT_OK


def _keys_new(args: argparse.Namespace) -> int:
    from ..workspace.layout import WorkspacePaths, new_signing_key, trust_public_key

    paths = WorkspacePaths(Path(args.workspace))
    if not paths.config.is_file():
        raise ConfigError(f"{paths.root} is not a safeface workspace.")
    key = new_signing_key(args.out)
    kind = "consent_issuers" if args.kind == "consent-issuer" else "authorities"
    kid = trust_public_key(paths, kind, key.public_key(), args.label or args.kind)
    print(f"key {kid} trusted as {args.kind}; private key written to {args.out}")
    return EXIT_OK


def _issuer_key(args: argparse.Namespace, given: Optional[Path], demo_path: Path, what: str) -> Any:
    from ..workspace.layout import read_signing_key

    if given is not None:
        return read_signing_key(given)
    if demo_path.is_file():
        return read_signing_key(demo_path)
    raise ConfigError(f"issuing needs the {what}'s private key: pass it with --{what.replace(' ', '-')}-key (only a demo "
                      "workspace keeps one inside the workspace).")


def _consent_issue(args: argparse.Namespace) -> int:
    from ..policy.deployment import Deployment
    from ..policy.issuer import issue_consent
    from ..workspace.layout import WorkspacePaths

    paths = WorkspacePaths(Path(args.workspace))
    dep = Deployment.load(paths.config)
    key = _issuer_key(args, args.issuer_key, paths.demo_issuer, "issuer")
    ops = [o.strip() for o in args.operations.split(",") if o.strip()]
    wire, token = issue_consent(key, dep, args.subject, args.purpose, operations=ops, days=args.days,
                                birth_date=args.birth_date, guardian=args.guardian)
    if args.json:
        print_json({"token": wire, "token_id": token.token_id,
                    "expires_at": dt.datetime.fromtimestamp(token.expires_at, dt.timezone.utc).isoformat()})
    else:
        print(wire)
    return EXIT_OK


def _lb_issue(args: argparse.Namespace) -> int:
    from ..policy.issuer import issue_legal_basis
    from ..workspace.layout import WorkspacePaths

    paths = WorkspacePaths(Path(args.workspace))
    key = _issuer_key(args, args.authority_key, paths.demo_authority, "authority")
    ops = [o.strip() for o in args.operations.split(",") if o.strip()]
    wire, _ = issue_legal_basis(key, authority=args.authority, provision=args.provision, reference=args.reference,
                                purposes=args.purpose, operations=ops, days=args.days)
    print(wire)
    return EXIT_OK


def _consent_revoke(args: argparse.Namespace) -> int:
    with _open(args) as sf:
        receipt = sf.revoke(token_id=args.token_id, subject=args.subject)
    print_json(receipt.to_dict())
    return EXIT_OK


def _enroll(args: argparse.Namespace) -> int:
    with _open(args) as sf:
        r = sf.enroll(args.image, args.subject, args.purpose, _token_arg(args.consent),
                      legal_basis=_token_arg(args.legal_basis))
    if args.json:
        print_json(r.to_dict())
    else:
        print(f"enrolled {args.subject} for {r.purpose} (pseudonym {r.pseudonym[:16]}..., expires {r.expires_at.date()})")
    return EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    with _open(args) as sf:
        r = sf.verify(args.image, args.subject, args.purpose, _token_arg(args.consent),
                      legal_basis=_token_arg(args.legal_basis))
    if args.json:
        print_json(r.to_dict())
    else:
        score = "no template" if r.score is None else f"score {r.score:.3f}"
        print(f"{'match' if r.match else 'no match'} ({score}, threshold {r.threshold})")
    return EXIT_OK


def _identify(args: argparse.Namespace) -> int:
    with _open(args) as sf:
        found = sf.identify(args.image, args.purpose, consent=_token_arg(args.consent),
                            legal_basis=_token_arg(args.legal_basis), top_k=args.top_k)
    if args.json:
        print_json({"candidates": [{"subject": c.subject, "score": round(c.score, 4)} for c in found]})
    else:
        print(f"{len(found)} candidate(s)")
        for c in found:
            print(f"  {c.subject}  {c.score:.3f}")
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    with _open(args) as sf:
        e = sf.export(args.subject, args.purpose, args.recipient, consent=_token_arg(args.consent),
                      legal_basis=_token_arg(args.legal_basis))
    print_json(e.to_dict())
    return EXIT_OK


def _erase(args: argparse.Namespace) -> int:
    with _open(args) as sf:
        receipt = sf.erase(args.subject)
    print_json(receipt.to_dict())
    return EXIT_OK


def _analyze(args: argparse.Namespace) -> int:
    with _open(args) as sf:
        out = sf.analyze(args.image, attributes=args.attribute or ["faces"])
    print_json(out)
    return EXIT_OK


def _purge(args: argparse.Namespace) -> int:
    with _open(args) as sf:
        receipt = sf.purge_expired()
    print_json(receipt.to_dict() if receipt else {"templates_removed": 0})
    return EXIT_OK


def _rekey(args: argparse.Namespace) -> int:
    with _open(args) as sf:
        out = sf.rekey()
    print_json(out)
    return EXIT_OK


def _audit_verify(args: argparse.Namespace) -> int:
    # Only the keyring and the log: checking the record must not depend on (or change) the gallery.
    from ..workspace.audit import AuditLog
    from ..workspace.layout import WorkspacePaths, resolve_passphrase
    from ..hazmat.templates.keyring import PassphraseKeyring

    paths = WorkspacePaths(Path(args.workspace))
    if not paths.config.is_file() or not paths.keyring.is_file():
        raise ConfigError(f"{paths.root} is not a safeface workspace (deployment.json or keys/keyring.json missing).")
    if not paths.audit.is_file():
        from ..errors import IntegrityError

        raise IntegrityError(f"the audit log {paths.audit} is missing: it was deleted.")
    keyring = PassphraseKeyring.open(paths.keyring, resolve_passphrase(paths.root, None, args.passphrase_file))
    with AuditLog(paths.audit, keyring.key("audit")) as log:
        r = log.verify()
    print(f"audit log intact: {r.entries} entries, head {r.head_hash[:16]}... signed")
    return EXIT_OK


def _report(args: argparse.Namespace) -> int:
    with _open(args) as sf:
        paths = sf.report(args.out)
    print(json.dumps({k: str(v) for k, v in paths.items()}))
    return EXIT_OK

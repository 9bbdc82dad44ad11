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

from ..policy.tokens import MAX_TOKEN_CHARS
from ..regularfile import read_text
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


def _kind(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kind", choices=("consent-issuer", "authority"), required=True)


# A token file holds one token and maybe a line end or two.
MAX_TOKEN_FILE_BYTES = MAX_TOKEN_CHARS + 64


def _token_arg(value: Optional[str]) -> Optional[str]:
    """A token given inline, or as @FILE."""
    if value is None:
        return None
    if value.startswith("@"):
        return read_text(Path(value[1:]), f"the token file {value[1:]}", MAX_TOKEN_FILE_BYTES)
    return value.strip()


def register(sub: Any) -> None:
    p = sub.add_parser("init", help="create a workspace (--demo: a complete sample deployment)")
    p.add_argument("workspace")
    p.add_argument("--demo", action="store_true", help="a complete sample deployment with purpose 'demo' and demo keys")
    p.add_argument("--profile", action="append", choices=PROFILE_CHOICES, default=None,
                   help="policy profile; repeat to stack (default: cn-2025)")
    p.add_argument("--passphrase-file", type=Path, default=None)
    p.set_defaults(func=_init)

    p = sub.add_parser("assess", help="record the impact assessment covering the current configuration "
                       "(needs the passphrase; audited)")
    _ws(p)
    p.add_argument("--reference", required=True)
    p.add_argument("--date", required=True, help="YYYY-MM-DD")
    p.add_argument("--reviewed", default=None, help="YYYY-MM-DD of the assessment's latest review (yearly)")
    p.add_argument("--accept-changes", action="store_true",
                   help="record it although covered settings changed since the last assessment (they are listed)")
    p.set_defaults(func=_assess)

    p = sub.add_parser("keys", help="trust the public keys that sign consent and legal bases (needs the passphrase; audited)")
    ks = p.add_subparsers(dest="keys_command", metavar="ACTION")
    k = ks.add_parser("new", help="generate an Ed25519 key, write its private half to --out, trust its public half")
    _ws(k)
    _kind(k)
    k.add_argument("--out", type=Path, required=True, help="where to write the private key (keep it off this machine)")
    k.add_argument("--label", default="")
    k.set_defaults(func=_keys_new)
    k = ks.add_parser("import", help="trust the public keys of a JWK Set (RFC 7517)")
    _ws(k)
    _kind(k)
    k.add_argument("--jwks", type=Path, required=True, help="a JWK Set file of Ed25519 public keys")
    k.add_argument("--label", default="")
    k.set_defaults(func=_keys_import)
    k = ks.add_parser("export", help="write the public keys trusted now as a JWK Set")
    _ws(k)
    _kind(k)
    k.add_argument("--out", type=Path, required=True)
    k.set_defaults(func=_keys_export)
    k = ks.add_parser("remove", help="stop trusting a key (by its RFC 7638 thumbprint)")
    _ws(k)
    _kind(k)
    k.add_argument("--thumbprint", required=True)
    k.set_defaults(func=_keys_remove)
    k = ks.add_parser("list", help="every key trusted, now or before, with its thumbprint and dates")
    _ws(k)
    k.set_defaults(func=_keys_list)

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
    c.add_argument("--issuer", default="", help="the token's iss claim (default: the signing key's thumbprint URI)")
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
    c.add_argument("--issuer", default="", help="the token's iss claim (default: the signing key's thumbprint URI)")
    c.set_defaults(func=_lb_issue)

    for name, helptext in (("enroll", "enrol a consenting subject's face"), ("verify", "is this the subject? (1:1)")):
        p = sub.add_parser(name, help=helptext)
        _ws(p)
        p.add_argument("image")
        p.add_argument("--subject", required=True)
        p.add_argument("--purpose", required=True)
        p.add_argument("--consent", default=None, help="the consent token, or @FILE")
        p.add_argument("--legal-basis", default=None, help="a legal-basis token, or @FILE")
        p.add_argument("--liveness", default=None, help="evidence from `liveness check`, or @FILE (PA-01)")
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
    p.add_argument("--liveness", default=None, help="evidence from `liveness check`, or @FILE (PA-01)")
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
    v = a.add_parser("verify", help="detect any edit, deletion, reordering, truncation or rollback (exit 4)")
    _ws(v)
    v.add_argument("--checkpoint", type=Path, action="append", default=[],
                   help="a signed checkpoint (`audit checkpoint`) the log must still contain; repeatable")
    v.add_argument("--witness", type=Path, action="append", default=[],
                   help="a witness file (besides those in deployment.json) the log must agree with; repeatable")
    v.set_defaults(func=_audit_verify)
    v = a.add_parser("restart-witness", help="write again, on record, a lost witness the log records (keys the "
                     "host holds: safeface.workspace.admin.restart_witness(WS, PATH, keyring=...))")
    _ws(v)
    v.add_argument("witness", type=Path, help="the witness file, as deployment.json audit.witness names it")
    v.set_defaults(func=_audit_restart_witness)
    v = a.add_parser("checkpoint", help="sign the log's head for an assessor to keep")
    _ws(v)
    v.add_argument("--out", type=Path, required=True)
    v.set_defaults(func=_audit_checkpoint)

    p = sub.add_parser("report", help="write the compliance report (HTML and JSON)")
    _ws(p)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=_report)


# -- handlers ------------------------------------------------------------------------------
def _init(args: argparse.Namespace) -> int:
    from ..workspace.init import init_workspace
    from ..workspace.passphrase import PASSPHRASE_ENV

    paths = init_workspace(Path(args.workspace), demo=args.demo, profiles=tuple(args.profile or ("cn-2025",)),
                           passphrase_file=args.passphrase_file)
    print(f"workspace created: {paths.root}")
    if args.demo:
        say(f"demo deployment with purpose 'demo'. INSECURE demo keys and passphrase are stored in {paths.keys}: "
            "never use a demo workspace for real people.")
    else:
        say(f"fill in {paths.config}, record the impact assessment with `safeface assess`, and trust your consent "
            f"service's key with `safeface keys import` (or `keys new`). Every call is refused until the deployment "
            f"is complete. (passphrase from ${PASSPHRASE_ENV} or --passphrase-file)")
    return EXIT_OK


def _assess(args: argparse.Namespace) -> int:
    from ..workspace.admin import record_assessment

    done = record_assessment(Path(args.workspace), args.reference, args.date, args.passphrase_file,
                             reviewed=args.reviewed, accept_changes=args.accept_changes)
    print(f"assessment {args.reference} ({args.date}) recorded as covering the current configuration, "
          "sealed and named in the audit log")
    for change in done.changes or ():
        print(f"  changed since the last assessment: {change}")
    return EXIT_OK


def _keys_new(args: argparse.Namespace) -> int:
    from ..workspace.admin import keys_new

    key = keys_new(Path(args.workspace), args.kind, args.out, args.label, args.passphrase_file)
    print(f"key {key.thumbprint} trusted as {args.kind}; private key written to {args.out}")
    return EXIT_OK


def _keys_import(args: argparse.Namespace) -> int:
    from ..workspace.admin import keys_import

    added = keys_import(Path(args.workspace), args.kind, args.jwks, args.label, args.passphrase_file)
    for key in added:
        print(f"key {key.thumbprint} trusted as {args.kind}")
    if not added:
        say("every key of the set was already trusted; nothing changed")
    return EXIT_OK


def _keys_export(args: argparse.Namespace) -> int:
    from ..workspace.admin import keys_export

    n = keys_export(Path(args.workspace), args.kind, args.out, args.passphrase_file)
    print(f"{n} {args.kind} key(s) written to {args.out}")
    return EXIT_OK


def _keys_remove(args: argparse.Namespace) -> int:
    from ..workspace.admin import keys_remove

    key = keys_remove(Path(args.workspace), args.kind, args.thumbprint, args.passphrase_file)
    print(f"key {key.thumbprint} no longer trusted as {args.kind}")
    return EXIT_OK


def _keys_list(args: argparse.Namespace) -> int:
    from ..workspace.admin import keys_list

    print_json({"keys": keys_list(Path(args.workspace), args.passphrase_file)})
    return EXIT_OK


def _issuer_key(args: argparse.Namespace, given: Optional[Path], kind: str) -> Any:
    from ..workspace.keys import issuer_signing_key
    from ..workspace.paths import WorkspacePaths

    return issuer_signing_key(WorkspacePaths(Path(args.workspace)), given, kind)


def _consent_issue(args: argparse.Namespace) -> int:
    from ..policy.deployment import Deployment
    from ..policy.issuer import issue_consent
    from ..workspace.paths import WorkspacePaths

    paths = WorkspacePaths(Path(args.workspace))
    dep = Deployment.load(paths.config)
    key = _issuer_key(args, args.issuer_key, "issuer")
    ops = [o.strip() for o in args.operations.split(",") if o.strip()]
    wire, token = issue_consent(key, dep, args.subject, args.purpose, operations=ops, days=args.days,
                                birth_date=args.birth_date, guardian=args.guardian, issuer=args.issuer)
    if args.json:
        print_json({"token": wire, "token_id": token.token_id, "audience": token.audience[0],
                    "expires_at": dt.datetime.fromtimestamp(token.expires_at, dt.timezone.utc).isoformat()})
    else:
        print(wire)
    return EXIT_OK


def _lb_issue(args: argparse.Namespace) -> int:
    from ..policy.deployment import Deployment
    from ..policy.issuer import issue_legal_basis
    from ..workspace.paths import WorkspacePaths

    audience = Deployment.load(WorkspacePaths(Path(args.workspace)).config).deployment_id
    key = _issuer_key(args, args.authority_key, "authority")
    ops = [o.strip() for o in args.operations.split(",") if o.strip()]
    wire, _ = issue_legal_basis(key, audience=audience, authority=args.authority, provision=args.provision,
                                reference=args.reference, purposes=args.purpose, operations=ops, days=args.days,
                                issuer=args.issuer)
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
                      legal_basis=_token_arg(args.legal_basis), liveness=_token_arg(args.liveness))
    if args.json:
        print_json(r.to_dict())
    else:
        print(f"enrolled {args.subject} for {r.purpose} (pseudonym {r.pseudonym[:16]}..., expires {r.expires_at.date()})")
    return EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    with _open(args) as sf:
        r = sf.verify(args.image, args.subject, args.purpose, _token_arg(args.consent),
                      legal_basis=_token_arg(args.legal_basis), liveness=_token_arg(args.liveness))
    if args.json:
        print_json(r.to_dict())
    else:
        score = "no template" if r.score is None else f"score {r.score:.3f}"
        print(f"{'match' if r.match else 'no match'} ({score}, threshold {r.threshold})")
    return EXIT_OK


def _identify(args: argparse.Namespace) -> int:
    with _open(args) as sf:
        found = sf.identify(args.image, args.purpose, consent=_token_arg(args.consent),
                            legal_basis=_token_arg(args.legal_basis), top_k=args.top_k,
                            liveness=_token_arg(args.liveness))
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
    from ..workspace.admin import audit_verify

    st = audit_verify(Path(args.workspace), args.passphrase_file, checkpoints=args.checkpoint, witnesses=args.witness)
    r = st.report
    print(f"audit log intact: {r.entries} entries, head {r.head_hash[:16]}... signed; anchored in "
          f"{', '.join(r.anchors) or 'nothing'}; trust store matches its record ({st.trusted_keys} key(s) trusted); "
          f"template store matches the log ({st.store.rows} row(s), digest {st.store.digest[:16]}...)")
    for cp in st.checkpoints:
        print(f"checkpoint of {cp['time']} (entry {cp['seq']}) still holds")
    return EXIT_OK


def _audit_restart_witness(args: argparse.Namespace) -> int:
    from ..workspace.admin import restart_witness

    seq = restart_witness(Path(args.workspace), args.witness, args.passphrase_file)
    print(f"audit witness {args.witness} restarted at entry {seq}: a rollback of the log before it can no longer "
          "be seen by this witness")
    return EXIT_OK


def _audit_checkpoint(args: argparse.Namespace) -> int:
    from ..workspace.admin import audit_checkpoint

    doc = audit_checkpoint(Path(args.workspace), args.out, args.passphrase_file)
    print(f"checkpoint of entry {doc['seq']} ({doc['hash'][:16]}...) signed by key {doc['kid']}, written to {args.out}")
    return EXIT_OK


def _report(args: argparse.Namespace) -> int:
    with _open(args) as sf:
        paths = sf.report(args.out)
    print(json.dumps({k: str(v) for k, v in paths.items()}))
    return EXIT_OK

"""Evaluation reports: one JSON summary and one self-contained HTML page next to the plots.

The JSON keys are fixed so that the compliance report can embed the latest evaluation:
{"generated_at", "kind", "dataset", "engine", "options", "metrics", "plots": {name: relative path}}.
With a workspace, the summary and plots are also copied to `<ws>/reports/evaluation/`
(`<kind>.json`, and `latest.json`: this run, plus the latest run of each kind under "runs");
nothing else of the evaluation (no embedding) goes there."""

from __future__ import annotations

import datetime as _dt
import hashlib
import html
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from ..atomicfile import MAX_COPY_BYTES, make_dirs, write_atomic
from ..regularfile import read_no_link
from ..jsonnum import finite_json

WORKSPACE_DIR = Path("reports") / "evaluation"
KINDS = ("verify", "identify", "demographics", "protection")


@dataclass(frozen=True)
class Written:
    json_path: Path
    html_path: Path
    workspace_json: Optional[Path]
    workspace_bytes: Optional[bytes] = None  # latest.json as written, whose digest may be put on record


def summary(kind: str, dataset: Mapping[str, Any], engine: str, options: Mapping[str, Any],
            figures: Mapping[str, Any], plots: Mapping[str, Path], base: Path) -> dict[str, Any]:
    doc: dict[str, Any] = finite_json({
        "generated_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "kind": kind,
        "dataset": dict(dataset),
        "engine": engine,
        "options": dict(options),
        "metrics": dict(figures),
        "plots": {name: os.path.relpath(p, base) for name, p in plots.items()},
    })
    return doc


def deployment_id(workspace: Path) -> Optional[str]:
    """The id of the workspace's deployment (deployment.json "id"), None when unreadable: the
    summary names the deployment it was written for."""
    try:
        raw = json.loads((Path(workspace) / "deployment.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    v = raw.get("id") if isinstance(raw, dict) else None
    return v if isinstance(v, str) else None


def _rows(prefix: str, x: Any) -> list[tuple[str, str]]:
    if isinstance(x, Mapping):
        out: list[tuple[str, str]] = []
        for k, v in x.items():
            out += _rows(f"{prefix}.{k}" if prefix else str(k), v)
        return out
    if isinstance(x, list) and len(x) > 12:
        return [(prefix, f"[{len(x)} values]")]
    if isinstance(x, float):
        return [(prefix, f"{x:.6g}")]
    return [(prefix, str(x))]


def render_html(doc: Mapping[str, Any]) -> str:
    rows = "\n".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>"
                     for k, v in _rows("", doc["metrics"]))
    opts = html.escape(json.dumps(doc["options"], sort_keys=True))
    ds = html.escape(json.dumps(doc["dataset"], sort_keys=True))
    imgs = "\n".join(f'<figure><img src="{html.escape(p)}" alt="{html.escape(n)}"><figcaption>{html.escape(n)}'
                     f"</figcaption></figure>" for n, p in doc["plots"].items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>safeface evaluation: {html.escape(doc['kind'])}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}td{{padding:2px 10px;border-bottom:1px solid #ddd}}
figure{{display:inline-block;margin:6px}}img{{max-width:520px}}</style></head><body>
<h1>safeface evaluation: {html.escape(doc['kind'])}</h1>
<p>Generated {html.escape(doc['generated_at'])} with engine <b>{html.escape(doc['engine'])}</b>.</p>
<p>Data set: <code>{ds}</code></p><p>Options: <code>{opts}</code></p>
<h2>Figures</h2><table>{rows}</table>
<h2>Plots</h2>{imgs}
</body></html>
"""


def write_report(out_dir: Path, doc: Mapping[str, Any], plots: Mapping[str, Path],
                 workspace: Optional[Path] = None) -> Written:
    make_dirs(out_dir)  # none of it writable by others, who could swap the figures an assessor reads
    kind = str(doc["kind"])
    jpath = out_dir / f"{kind}.json"
    write_atomic(jpath, json.dumps(doc, indent=2) + "\n")
    hpath = out_dir / f"{kind}.html"
    write_atomic(hpath, render_html(doc))
    ws_json = None
    if workspace is not None:
        dest = Path(workspace) / WORKSPACE_DIR
        make_dirs(dest)
        rel: dict[str, str] = {}
        digests: dict[str, str] = {}
        for name, p in plots.items():
            target = dest / p.name
            data = read_no_link(Path(p), MAX_COPY_BYTES)  # the bytes written are the bytes hashed
            write_atomic(target, data)
            rel[name] = target.name
            digests[target.name] = hashlib.sha256(data).hexdigest()
        # Each plot's SHA-256, so that the compliance report shows only the plots of this summary
        # (one swapped in reports/evaluation/ is left out and named).
        ws_doc = {**doc, "plots": rel, "plot_sha256": digests}
        write_atomic(dest / f"{kind}.json", json.dumps(ws_doc, indent=2) + "\n")
        # latest.json: this run at the top level, and the latest run of every kind under "runs"
        runs = {}
        for f in sorted(dest.glob("*.json")):
            if f.stem in KINDS:
                try:
                    runs[f.stem] = json.loads(f.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    continue
        ws_json = dest / "latest.json"
        text = json.dumps({**ws_doc, "runs": runs}, indent=2) + "\n"
        write_atomic(ws_json, text)
        return Written(jpath, hpath, ws_json, text.encode("utf-8"))
    return Written(jpath, hpath, ws_json)

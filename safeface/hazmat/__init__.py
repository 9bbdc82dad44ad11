"""Hazardous materials: the parts of safeface that bypass consent, purpose and audit.

Like ``cryptography.hazmat``, everything below this package is for vendors who know what they
are doing: the raw-embedding pipeline (``hazmat.vision``), the matching index with its compiled
core (``hazmat.index``) and the template primitives (``hazmat.templates``). Nothing here asks
for a token, checks a purpose or writes an audit entry, and ``hazmat.vision`` hands out raw
embeddings, which are biometric data. Use :class:`safeface.SafeFace` for anything that touches a
real person; a workspace's store audit names every row that did not come through it.

Nothing in this package imports the policy, the workspace, storage or the SDK.
"""

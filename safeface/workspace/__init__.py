"""A workspace: its paths, keys and trust, policy state, audit log and report."""

"""Running a read of the workspace's database files in a child process.

SQLite's locks are POSIX advisory locks, which the kernel drops, every one a process holds on a
file, when any descriptor of that file is closed, whoever in the process opened it. A read of a
database (or its -shm) by name through a descriptor of this process's own, once closed, left
this process's connections unlocked: another process closing its last connection then took the
file for unused, checkpointed it and deleted a -wal still in use here. A child's descriptors, and
its locks, are its own. A child costs a process start (0.1 to 0.25 s on a busy 2-core host), so
only reads made after a failure or for a read-only check go this way, never a call's or an
open's ordinary path."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

# The folder holding this safeface package: the child imports the same code, whatever its
# environment says (-I ignores PYTHONPATH and the user's site folder; -S the site's .pth files:
# the child needs the standard library alone). Searched after the standard library: the folder
# may be a site-packages holding an old backport named like a standard module (PyPI's `pathlib`),
# which, first, the child imported in the standard one's place.
_PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)


def run_apart(target: str, args: Sequence[str]) -> Any:
    """The JSON value that `target` ("module:function" of safeface, called with `args`, each a
    str) printed as its last line of output in a child process. OSError where no child could
    be started; ValueError where it printed no JSON value (killed, out of memory)."""
    module, function = target.split(":")
    code = (f"import sys; sys.path.append(sys.argv[1]); from {module} import {function}; "
            f"{function}(*sys.argv[2:])")
    # No environment: the child needs none, and this one may hold secrets ($SAFEFACE_PASSPHRASE).
    # Names as the bytes this process would open (the child decodes them back the same way).
    argv = [os.fsencode(a) for a in (_PACKAGE_PARENT, *args)]
    done = subprocess.run([_interpreter(), "-I", "-S", "-c", code, *argv], stdin=subprocess.DEVNULL,
                          capture_output=True, close_fds=True, env={})
    lines = done.stdout.decode("utf-8", "replace").strip().splitlines()
    if not lines:
        raise ValueError(f"the child process printed nothing (exit {done.returncode}): "
                         + done.stderr.decode("utf-8", "replace").strip()[-300:])
    return json.loads(lines[-1])


def _interpreter() -> str:
    """The Python to start the child with: this one's, or where sys.executable is no Python (a
    server embedding it: uWSGI, mod_wsgi) the same installation's python3.X, which the child
    needs only the standard library of (running the server's binary with these arguments is
    never tried). OSError where there is none (a bundled app: PyInstaller)."""
    if getattr(sys, "frozen", False):
        raise OSError(errno.ENOEXEC, "no Python interpreter to start a child process with (a bundled app)")
    if os.path.basename(sys.executable).lower().startswith(("python", "pypy")):
        return sys.executable
    name = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    for prefix in dict.fromkeys((sys.exec_prefix, sys.base_exec_prefix)):
        found = os.path.join(prefix, "bin", name)
        if os.path.isfile(found) and os.access(found, os.X_OK):
            return found
    raise OSError(errno.ENOEXEC, f"no Python interpreter to start a child process with ({name} is not in "
                                 f"{sys.base_exec_prefix}/bin)")

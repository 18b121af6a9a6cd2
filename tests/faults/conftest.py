"""Shared by the fault batteries: how to run a child that may not write a folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PY = sys.executable
REPO = Path(__file__).resolve().parents[2]

# Ways to run a child without root's right to write any folder: root with the file-permission
# override dropped (it can still run this Python, wherever it lives), else the user nobody.
UNPRIVILEGED = (
    ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"],
    ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"],
    ["runuser", "-u", "nobody", "--"],
)


def unprivileged(cannot_write: Path) -> list[str]:
    """The first prefix of UNPRIVILEGED under which a child can import mghkit and cannot create a
    file in ``cannot_write``; skips the test (with the reason) where none can."""
    if os.geteuid() != 0:
        pytest.skip("not root: these checks drop root's rights to make a folder read-only for the child")
    probe = (f"import mghkit.cli\ntry:\n    open({str(cannot_write / '.probe')!r}, 'w')\n"
             "except PermissionError:\n    pass\nelse:\n    raise SystemExit(3)")  # fmt: skip
    for prefix in UNPRIVILEGED:
        if shutil.which(prefix[0]) is None:
            continue
        done = subprocess.run([*prefix, PY, "-c", probe], capture_output=True, cwd=REPO, timeout=60)
        (cannot_write / ".probe").unlink(missing_ok=True)
        if done.returncode == 0:
            return prefix
    pytest.skip("no way to run this Python without the right to write a folder (setpriv, runuser)")

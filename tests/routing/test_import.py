"""The routing package is pure Python: the server can import it without FastAPI, torch or scikit-learn."""

from __future__ import annotations

import subprocess
import sys


def test_import_pulls_in_no_web_or_ml_framework():
    code = ("import sys, srl_rlvr.routing, srl_rlvr.routing.router, srl_rlvr.routing.cascade; "
            "print(sorted(m for m in ('fastapi', 'starlette', 'torch', 'sklearn', 'transformers') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"

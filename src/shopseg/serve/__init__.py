"""Serving a finished run: the HTTP scoring API (FastAPI), the dashboard (Streamlit) and the run-folder reader
they share.

Only :mod:`shopseg.serve.rundir` is imported here; the API and the dashboard need the ``serve`` extra
(``pip install 'shopseg[serve]'``) and are imported on use.
"""

from __future__ import annotations

from shopseg.serve.rundir import RunData, ScoreResult, open_run_db, run_id

__all__ = ["RunData", "ScoreResult", "open_run_db", "run_id"]

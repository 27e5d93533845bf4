"""Sessions: the source's session id when present, else inactivity gaps (window functions in SQL)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shopseg.backends import DuckDBBackend
from shopseg.clean.events import clean_events, sessionize_sql
from shopseg.config import EventsConfig
from shopseg.ingest.events import ingest_events


def _sessions(backend: DuckDBBackend, path: Path, work: Path, **cfg: object) -> pd.DataFrame:
    ing = ingest_events(backend, [path], EventsConfig(**cfg), work=work)  # type: ignore[arg-type]
    clean_events(backend, ing, EventsConfig(**cfg))  # type: ignore[arg-type]
    return backend.df("SELECT customer_id, ts, session_id FROM events ORDER BY customer_id, ts")


def test_gap_boundaries(backend: DuckDBBackend, write_file: Callable[..., Path], tmp_path: Path) -> None:
    text = (
        "user_id,event_time,event_type\n"
        "a,2024-01-01 10:00:00,view\n"
        "a,2024-01-01 10:30:00,view\n"  # exactly 30 minutes: same session
        "a,2024-01-01 11:00:01,view\n"  # 30 minutes and 1 second: new session
        "a,2024-01-01 11:00:01,cart\n"  # same instant: same session
        "b,2024-01-01 10:15:00,view\n"  # another customer, interleaved in time: own sessions
        "b,2024-01-02 10:15:00,view\n"
    )
    df = _sessions(backend, write_file("e.csv", text), tmp_path / "w")
    assert list(df["session_id"]) == ["a#1", "a#1", "a#2", "a#2", "b#1", "b#2"]


def test_configurable_gap(backend: DuckDBBackend, write_file: Callable[..., Path], tmp_path: Path) -> None:
    text = "user_id,event_time,event_type\na,2024-01-01 10:00:00,view\na,2024-01-01 10:10:00,view\n"
    assert _sessions(backend, write_file("e.csv", text), tmp_path / "w")["session_id"].nunique() == 1
    df = _sessions(backend, write_file("e.csv", text), tmp_path / "w", session_gap_minutes=5)
    assert list(df["session_id"]) == ["a#1", "a#2"]


def test_session_id_column_is_used_as_given(
    backend: DuckDBBackend, write_file: Callable[..., Path], tmp_path: Path
) -> None:
    text = (
        "user_id,event_time,event_type,user_session\n"
        "a,2024-01-01 10:00:00,view,x\n"
        "a,2024-01-03 10:00:00,view,x\n"  # two days apart but one session id: one session
        "a,2024-01-03 10:01:00,view,y\n"
    )
    df = _sessions(backend, write_file("e.csv", text), tmp_path / "w")
    assert list(df["session_id"]) == ["x", "x", "y"]
    assert backend.scalar("SELECT table_type FROM information_schema.tables WHERE table_name = 'events'") == "VIEW"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    gaps=st.lists(st.integers(min_value=0, max_value=7200), min_size=1, max_size=25),
    customers=st.lists(st.sampled_from("abc"), min_size=25, max_size=25),
    gap_minutes=st.sampled_from([1.0, 30.0, 45.5]),
)
def test_sessions_match_a_direct_count(
    backend: DuckDBBackend, gaps: list[int], customers: list[str], gap_minutes: float
) -> None:
    """Sessions per customer = 1 + gaps longer than the limit between that customer's consecutive events."""
    start = datetime(2024, 1, 1)
    t, rows = start, []
    for i, g in enumerate(gaps):
        t += timedelta(seconds=g)
        rows.append((customers[i], t, i + 1))
    frame = pd.DataFrame(rows, columns=["customer_id", "ts", "_row_id"])
    for c in ("session_id", "event_type", "product_id", "category", "brand", "device", "order_id", "banner_slot"):
        frame[c] = None
    frame["price"] = 1.0
    backend.create_table("src", frame)
    got = backend.df(
        f"SELECT customer_id, count(DISTINCT session_id) AS n FROM ({sessionize_sql('src', gap_minutes)}) GROUP BY 1"
    )
    want = {}
    for cust, g in frame.groupby("customer_id"):
        d = g["ts"].sort_values().diff().dt.total_seconds().dropna()
        want[cust] = 1 + int((d > gap_minutes * 60).sum())
    assert dict(zip(got["customer_id"], got["n"], strict=True)) == want

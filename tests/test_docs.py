"""Docs that cannot drift: generated references are current, README keeps its promises."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _gen() -> object:
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts" / "gen_docs.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_generated_docs_are_current() -> None:
    gen = _gen()
    for rel, fn in gen.DOCS.items():  # type: ignore[attr-defined]
        assert (ROOT / rel).read_text(encoding="utf-8") == fn(), f"{rel} is stale: run `make docs`"


def test_readme_shows_the_two_commands_first_and_ci_calls_the_test_command() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first_block = readme.split("```bash", 1)[1].split("```", 1)[0]
    assert "make demo" in first_block and "make test" in first_block
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_every_cli_command_is_in_the_readme() -> None:
    import typer

    from shopseg.cli import app

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    group = typer.main.get_command(app)
    for name in group.commands:  # type: ignore[attr-defined]
        assert f"shopseg {name}" in readme

"""Generate docs/cli.md, docs/configuration.md and docs/openapi.json from the code (a test checks they are current).

python scripts/gen_docs.py          # rewrite all three files
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def cli_markdown() -> str:
    import typer

    from shopseg.cli import app

    group: Any = typer.main.get_command(app)
    lines = ["# Command-line reference", "", "Generated from the code by `scripts/gen_docs.py`; do not edit.", ""]
    for name in sorted(group.commands):
        cmd = group.commands[name]
        lines += [f"## `shopseg {name}`", "", (cmd.help or "").strip(), ""]
        args = [p for p in cmd.params if getattr(p, "param_type_name", "") == "argument"]
        opts = [p for p in cmd.params if getattr(p, "param_type_name", "") == "option"]
        if args:
            lines += ["| argument | description |", "|---|---|"]
            for p in args:
                lines.append(f"| `{p.name.upper()}` | {(getattr(p, 'help', '') or '').strip()} |")
            lines.append("")
        if opts:
            lines += ["| option | description | default |", "|---|---|---|"]
            for p in opts:
                flags = ", ".join(f"`{o}`" for o in p.opts)
                default = "" if p.default in (None, False) or callable(p.default) else f"`{p.default}`"
                text = (p.help or "").strip().replace("|", "\\|")
                lines.append(f"| {flags} | {text} | {default} |")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def config_markdown() -> str:
    from pydantic import BaseModel

    from shopseg.config import RunConfig

    lines = [
        "# Configuration",
        "",
        "Generated from `shopseg/config.py` by `scripts/gen_docs.py`; do not edit. Pass a TOML file with",
        "`--config FILE`; command-line flags override it.",
        "",
    ]
    for section, field in RunConfig.model_fields.items():
        model = field.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        lines += [f"## `[{section}]`", "", "| setting | default | description |", "|---|---|---|"]
        for name, f in model.model_fields.items():
            default = f.get_default(call_default_factory=True)
            shown = "unset" if default is None else f"`{default!r}`"
            text = (f.description or "").replace("|", "\\|")
            lines.append(f"| `{name}` | {shown} | {text} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def openapi_json() -> str:
    import json

    from shopseg.serve.api import openapi_document

    return json.dumps(openapi_document(), indent=2, ensure_ascii=False) + "\n"


DOCS = {"docs/cli.md": cli_markdown, "docs/configuration.md": config_markdown, "docs/openapi.json": openapi_json}


def main() -> int:
    for rel, fn in DOCS.items():
        (ROOT / rel).write_text(fn(), encoding="utf-8")
        print(f"wrote {rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

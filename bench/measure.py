"""Run a command and report its wall time and peak memory as one JSON line.

Usage: python bench/measure.py [--label NAME] -- CMD ARGS...

The command's own output passes through unchanged; the JSON line is printed last on stdout. Peak RSS is the
largest resident set of the child process tree's biggest process (``getrusage(RUSAGE_CHILDREN).ru_maxrss``),
which on Linux is in KiB. If the command's last stdout line is a JSON object it is included as ``"child"``.
The exit status is the command's.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Any


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--label", default=None, help="name to put in the JSON line")
    parser.add_argument("cmd", nargs=argparse.REMAINDER, help="-- command and arguments")
    args = parser.parse_args(argv)
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        parser.error("no command given (usage: measure.py -- CMD ARGS...)")

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    last_line = ""
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        if line.strip():
            last_line = line.strip()
    returncode = proc.wait()
    wall = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)

    child: Any = None
    try:
        parsed = json.loads(last_line)
        if isinstance(parsed, dict):
            child = parsed
    except ValueError:
        pass
    result: dict[str, Any] = {
        "label": args.label,
        "cmd": cmd,
        "returncode": returncode,
        "wall_s": round(wall, 3),
        "user_s": round(usage.ru_utime, 3),
        "sys_s": round(usage.ru_stime, 3),
        "peak_rss_mib": round(usage.ru_maxrss / 1024.0, 1),
        "child": child,
    }
    print(json.dumps(result))
    return returncode


if __name__ == "__main__":
    raise SystemExit(main())

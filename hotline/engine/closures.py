"""The emergency-closure switch ops flip at run time: a small file of schedule names.

Owns the file `<paths.data>/closures` (one opening-hours schedule name per line; `#`
comments), reading it for the engine's watch loop and writing it for `hotline closure`.
A schedule named there — or in `ivr.closed` in config.yaml — is closed whatever the time:
an `hours` step on it takes its `closed` branch with reason `emergency`. Writes are atomic
(a temporary file renamed over the old one) so the engine never reads half a file.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


def closures_file(data_dir: Path) -> Path:
    return data_dir / "closures"


def read_closures(path: Path) -> set[str]:
    """The schedule names in the file (none when it does not exist). Lines that are not
    names are ignored: the file is written by `hotline closure`, not by hand."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return set()
    names = set()
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if NAME.match(line):
            names.add(line)
    return names


def write_closures(path: Path, names: set[str]) -> None:
    for name in names:
        if not NAME.match(name):
            raise ValueError(f"{name!r} is not a schedule name (letters, digits, - and _)")
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "# schedules closed by the emergency switch (hotline closure set|clear NAME)\n"
    body += "".join(f"{n}\n" for n in sorted(names))
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=".closures.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as fh:
            fh.write(body)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

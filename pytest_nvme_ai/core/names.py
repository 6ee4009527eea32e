"""User-given names that become file names: they stay names, never paths.

A baseline name becomes `<baseline dir>/<name>.json`; a name such as
`../outside` or `/etc/x` would write outside that directory. Names are
checked where they enter (settings, CLI) and the final path is checked again
against its directory (`path_in`), so a name can never escape it.
"""
from __future__ import annotations

import re
from pathlib import Path

# Letters, digits and a few separators; must start with a letter or digit (no dotfiles, no "..").
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}")
NAME_RULE = "letters, digits, '_', '.', '+' and '-', starting with a letter or digit, at most 128 characters"


class NameError_(ValueError):
    """A name that is not a plain file name (a ValueError, so the CLI prints it as one line)."""


def check_name(name: str, what: str = "name", hint: str = "") -> str:
    """`name` unchanged when it is a plain name; a NameError_ saying why and what to do otherwise."""
    s = str(name)
    if not _NAME_RE.fullmatch(s) or ".." in s:
        kind = "a path, not a name" if any(c in s for c in "/\\") or s in (".", "..") or ".." in s else "not a plain name"
        raise NameError_(f"{what} {s!r} is {kind}: use {NAME_RULE}" + (f"; {hint}" if hint else ""))
    return s


def path_in(directory: Path, name: str, suffix: str = "", what: str = "name") -> Path:
    """`directory/<name><suffix>`, refused unless it lies directly in `directory` (defence in depth)."""
    check_name(name, what)
    d = Path(directory).resolve()
    p = d / f"{name}{suffix}"   # not resolved: a baseline kept as a symlink stays usable
    if p.parent != d or p.name in (".", ".."):
        raise NameError_(f"{what} {name!r} would put a file outside {d}")
    return p

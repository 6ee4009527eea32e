"""Secrets never leave the process: URLs and command lines made safe before anything records them.

A PostgreSQL history URL may carry a password (`postgresql://user:PW@host/db`) or put one in its query
(`?password=PW`, libpq's `sslpassword`, ...). Everything that writes a command line or a URL somewhere a
person or another program reads it (results.json `run.argv`, the HTML report, the history rows, JUnit,
lock files, error messages) passes it through here first. Pure string work, no SQLAlchemy: `core` imports
nothing heavy, and a URL SQLAlchemy cannot parse must be masked all the same.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"

# Query keys whose value is a secret (libpq's connection keywords and the usual spellings).
SECRET_KEYS = frozenset({"password", "passwd", "pwd", "pass", "sslpassword", "secret", "token", "api_key",
                         "apikey", "access_token", "auth"})

# scheme://user:secret@host  -> the secret, anywhere in a text (messages quote URLs inside sentences).
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@]*:)(?P<secret>[^@\s/]*)(?P<at>@)")
# key=secret inside a query or a libpq keyword string (password=... host=...).
_KEYVALUE = re.compile(r"(?P<key>(?<![A-Za-z0-9_])(?:" + "|".join(sorted(SECRET_KEYS, key=len, reverse=True))
                       + r"))(?P<eq>\s*=\s*)(?P<secret>[^&\s;'\"]+)", re.IGNORECASE)


def redact_url(url: str) -> str:
    """`url` with any password (user info or query) replaced by ***; other text is returned unchanged."""
    if "://" not in url:
        return redact_text(url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        if ":" in userinfo:
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:{MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in SECRET_KEYS for k, _ in pairs):
            query = urlencode([(k, MASK if k.lower() in SECRET_KEYS else v) for k, v in pairs], safe="*")
    if netloc == parts.netloc and query == parts.query:
        return url   # nothing secret: unchanged, byte for byte (urlunsplit would drop the '//' of sqlite:////x)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """Mask every URL password and every `password=...`-style pair inside a free text."""
    text = _USERINFO.sub(lambda m: f"{m.group('head')}{MASK}{m.group('at')}", text)
    return _KEYVALUE.sub(lambda m: f"{m.group('key')}{m.group('eq')}{MASK}", text)


def redact_argv(argv: Iterable[object]) -> list[str]:
    """A command line with secrets masked in every argument (`--opt=URL` and `--opt URL` alike)."""
    return [redact_text(str(a)) for a in argv]


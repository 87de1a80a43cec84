"""URLs that may carry a credential: the one place where they are shown, stored or split.

A registry behind a proxy is often given as ``https://user:TOKEN@host/``
(RFC 3986 section 3.2.1 userinfo).  The userinfo is a secret: it must never
reach a message, a ``--json`` document, ``phi.lock`` or a cache key, and it
is sent only as HTTP Basic credentials (RFC 7617) to the origin (scheme,
host, port; RFC 6454) of the URL it was written in.  Three views of such a
URL, and nothing else, are used anywhere:

* :func:`redact` (and :func:`redact_text` for free text): for display,
  ``https://***@host/path``; a URL without userinfo is unchanged;
* :func:`strip_credentials`: for storing, ``https://host/path``;
* :func:`split_credentials`: for sending, the clean URL and the value of
  the ``Authorization`` header, which :func:`same_origin` decides where to send.

Pure functions of strings; imports only the standard library.
"""

from __future__ import annotations

import base64
import re
import urllib.parse
from typing import Final

__all__ = ["REDACTED", "origin", "redact", "redact_text", "same_origin", "split_credentials",
           "strip_credentials"]

#: What replaces a URL's userinfo on display.
REDACTED: Final = "***"
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
#: ``scheme://userinfo@`` anywhere in a text: the userinfo runs to the last ``@`` before the path,
#: as urllib.parse.urlsplit reads it (a password with an unescaped ``@`` is still hidden whole).
_USERINFO: Final = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s]*@")


def _host_port(netloc: str) -> str:
    return netloc.rpartition("@")[2]


def redact(url: str) -> str:
    """``url`` for display: its userinfo, if any, replaced by ``***``."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{REDACTED}@{_host_port(parts.netloc)}"))


def redact_text(text: str) -> str:
    """``text`` (a message, a list of URLs) with the userinfo of every URL in it replaced by ``***``."""
    if "@" not in text:  # the common case, and the cheap one
        return text
    return _USERINFO.sub(lambda m: f"{m['scheme']}{REDACTED}@", text)


def strip_credentials(url: str) -> str:
    """``url`` for storing (phi.lock, cache keys): without userinfo."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=_host_port(parts.netloc)))


def split_credentials(url: str) -> tuple[str, str | None]:
    """(``url`` without userinfo, the ``Authorization`` header value its userinfo stands for, or None).

    ``user:password`` and a lone ``token`` (sent as ``token:``) become HTTP
    Basic credentials; percent-escapes in them are decoded first (RFC 3986).
    """
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo = parts.netloc.rpartition("@")[0]
    user, _, password = userinfo.partition(":")
    pair = f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}".encode()
    clean = urllib.parse.urlunsplit(parts._replace(netloc=_host_port(parts.netloc)))
    return clean, "Basic " + base64.b64encode(pair).decode("ascii")


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of ``url``, lower-cased, the port defaulted (RFC 6454).

    Raises ValueError for a port that is not a number in 0-65535.
    """
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme)


def same_origin(a: str, b: str) -> bool:
    """Whether credentials meant for ``a`` may be sent to ``b``: same scheme, host and port."""
    return origin(a) == origin(b)

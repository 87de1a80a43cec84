"""Sizes and tables for people: one convention for every command.

phi-get shows sizes in decimal SI units (1 kB = 1000 bytes, 1 MB = 10^6,
1 GB = 10^9, 1 TB = 10^12), the base disk makers, download tools and the
Hugging Face Hub use, with three significant digits and the unit always
written: ``512 B``, ``7.25 MB``, ``2.40 GB``.  Memory sizes use the same
base, so a download and the memory it needs compare at a glance.  ``--json``
output carries exact byte counts instead (fields named ``*_bytes`` or
``size``).

Tables have a header row and columns aligned with two spaces; the same
text is printed to a terminal and to a pipe (the device side draws them with
rich on a terminal, :mod:`phi_get.resolver.progress`), one row per line, so
``grep`` and ``cut`` work on them.

This module imports nothing of phi-get.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["format_table", "human_bytes"]

_UNITS = ("kB", "MB", "GB", "TB", "PB")


def human_bytes(n: float) -> str:
    """``n`` bytes in decimal units with three significant digits (``0 B``, ``950 B``, ``1.23 GB``)."""
    if n < 0:
        return "-" + human_bytes(-n)
    if n < 1000:
        return f"{int(n)} B"
    value = float(n)
    for unit in _UNITS:
        value /= 1000
        if value < 999.5 or unit == _UNITS[-1]:
            digits = 2 if value < 9.995 else 1 if value < 99.95 else 0
            return f"{value:.{digits}f} {unit}"
    raise AssertionError("unreachable")


def format_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Plain text: the header, then one line per row, columns padded to their widest cell."""
    cells = [[str(h) for h in headers], *([("-" if c is None else str(c)) for c in row] for row in rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells)

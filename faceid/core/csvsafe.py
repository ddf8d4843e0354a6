"""CSV that opens safely in a spreadsheet: the cell rules every CSV leaving the desk follows.

- **No formulas** (OWASP ASVS 1.2.10): a text cell whose first character is one of
  ``= + - @``, tab, CR, LF or NUL, or their full-width forms, gets a leading ``'``. Some
  importers trim leading blanks (e.g. LibreOffice's "Trim spaces" CSV option), turning
  ``"  =1+1"`` into ``"=1+1"``: the check also looks past leading whitespace and invisible
  format characters. Numbers are left alone (a number cannot carry a formula and must stay a
  number: no prefix on ``-1.5``).
- **Excel-friendly bytes**: UTF-8 with a BOM (Excel otherwise guesses a legacy code page and
  garbles Chinese), the csv module's ``QUOTE_MINIMAL`` quoting (biz_ids contain commas; no
  hand-written quoting) and ``\\r\\n`` line ends.

``faceid.reports.export`` writes the governed verification export with these rules; ``frame_csv``
writes the small tables behind charts and comparisons with the same ones.
"""

from __future__ import annotations

import csv
import io
import numbers
import re
from collections.abc import Iterable, Sequence
from datetime import datetime, time
from typing import Any

BOM = "\ufeff".encode()

# Characters that make a spreadsheet treat a cell as a formula, plus their full-width forms:
# harmless to prefix (no name or id starts with them) and typed by CJK IMEs.
FORMULA_START = frozenset("=+-@\t\r\n\0＝＋－＠")
# Invisible format characters an importer may drop before looking at the first character.
INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff"

_SEP = "\x01"  # not whitespace (\x1c-\x1f are, for str.isspace and \s)
#: A cell start (each cell follows a separator: the row is joined with one in front) that
#: *might* need the prefix: formula characters, any whitespace, invisible characters. Almost
#: no row matches, so one regex over the joined row replaces a function call per cell; a match
#: (even a false one, e.g. a separator inside a cell) falls back to the exact ``neutralise``.
MAYBE_FORMULA = re.compile(
    r"\x01[\s\x00=+\-@\uff1d\uff0b\uff0d\uff20\u200b\u200c\u200d\u2060\ufeff]")


def neutralise(cell: str) -> str:
    """Prefix ``'`` to a cell a spreadsheet would read as a formula (ASVS 1.2.10)."""
    if not cell:
        return cell
    first = cell[0]
    if first in FORMULA_START:
        return "'" + cell
    if first.isspace() or first in INVISIBLE:
        rest = cell.lstrip().lstrip(INVISIBLE).lstrip()
        if rest[:1] in FORMULA_START:
            return "'" + cell
    return cell


def neutralise_row(row: list[str], number_at: int | None = None) -> list[str]:
    """``neutralise`` every cell of a row of texts, except the number at ``number_at``."""
    if not MAYBE_FORMULA.search(_SEP + _SEP.join(row)):
        return row
    return [x if i == number_at else neutralise(x) for i, x in enumerate(row)]


class Records:
    """The csv module writing into a reused buffer: rows in, CSV text out."""

    def __init__(self) -> None:
        self._buf = io.StringIO(newline="")  # newline="": the csv module owns line ends
        self._writer = csv.writer(self._buf, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")

    def text(self, rows: Iterable[Sequence[Any]]) -> str:
        self._buf.seek(0)
        self._buf.truncate()
        self._writer.writerows(rows)
        return self._buf.getvalue()

    def line(self, row: Sequence[Any]) -> str:
        return self.text((row,))


def frame_csv(frame: Any) -> bytes:
    """A small table (the numbers behind a chart, a comparison) as spreadsheet-safe CSV.
    Group labels such as a verify_error value come from FaceID and may be hostile too.
    ``frame`` is a pandas DataFrame (not imported here: the export path never builds one)."""
    records = Records()
    header = [neutralise(str(c)) for c in frame.columns]
    body = ([_small_cell(x) for x in row] for row in frame.itertuples(index=False, name=None))
    return BOM + (records.line(header) + records.text(body)).encode("utf-8")


def _small_cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and value != value):  # None / NaN
        return ""
    if isinstance(value, numbers.Number):
        return str(value)  # numbers cannot carry a formula and must stay numbers
    if isinstance(value, datetime):  # includes pandas.Timestamp
        if value.tzinfo is None and value.time() == time.min:
            return value.date().isoformat()  # a day bucket
        return value.isoformat()
    return neutralise(str(value))

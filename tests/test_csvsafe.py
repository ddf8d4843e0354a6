"""The spreadsheet cell rules (faceid.core.csvsafe), as properties over hostile-looking text."""

from __future__ import annotations

import csv
import io

from hypothesis import given
from hypothesis import strategies as st

from faceid.core.csvsafe import (
    BOM,
    FORMULA_START,
    INVISIBLE,
    Records,
    frame_csv,
    neutralise,
    neutralise_row,
)

# Text built mostly from the characters that matter: formula starts (ASCII and full-width),
# every kind of whitespace Python knows, invisible format characters, the row separator the
# fast path uses, quotes, commas, newlines, and some ordinary letters.
SPACES = "".join(chr(c) for c in range(0x3001) if chr(c).isspace())
ALPHABET = "".join(sorted(set(FORMULA_START) | set(SPACES) | set(INVISIBLE))) + '\x01",\'aZ9张'
cells = st.text(alphabet=ALPHABET, max_size=8)


@given(st.lists(cells, min_size=1, max_size=6))
def test_the_fast_row_check_never_differs_from_neutralising_each_cell(row: list[str]) -> None:
    assert neutralise_row(list(row)) == [neutralise(c) for c in row]


@given(st.lists(cells, min_size=2, max_size=6), st.integers(min_value=0, max_value=5))
def test_the_number_cell_is_never_prefixed(row: list[str], at: int) -> None:
    at %= len(row)
    out = neutralise_row(list(row), number_at=at)
    assert out[at] == row[at]
    assert [c for i, c in enumerate(out) if i != at] == [
        neutralise(c) for i, c in enumerate(row) if i != at]


@given(cells)
def test_no_neutralised_cell_starts_a_formula(cell: str) -> None:
    out = neutralise(cell)
    assert out[:1] not in FORMULA_START
    # ... not even after an importer trims leading blanks and invisible characters.
    trimmed = out.lstrip().lstrip(INVISIBLE).lstrip()
    assert trimmed[:1] not in FORMULA_START or out.startswith("'")


@given(st.lists(st.lists(cells, min_size=1, max_size=4), max_size=5))
def test_records_round_trip_through_the_csv_module(rows: list[list[str]]) -> None:
    text = Records().text(rows)
    back = list(csv.reader(io.StringIO(text, newline="")))
    assert back == rows


def test_frame_csv_has_bom_crlf_and_keeps_numbers() -> None:
    import pandas as pd

    frame = pd.DataFrame({"=label": ["@x", "ok"], "n": [-1.5, 2]})
    data = frame_csv(frame)
    assert data.startswith(BOM)
    assert data.decode("utf-8-sig") == "'=label,n\r\n'@x,-1.5\r\nok,2.0\r\n"

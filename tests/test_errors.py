"""The error tree mirrors the page's error table, code by code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from faceid.core import errors
from faceid.core.errors import ERROR_CODES, APIError, api_error

# The API page, kept in the repository (a copy of ../shared/spec/): a clone alone must be
# enough to run the suite.
SPEC = Path(__file__).resolve().parent / "fixtures" / "spec" / "faceid-lite-get_result.zh.txt"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "spec" / SPEC.name
# Rows of the page's error tables: "400 BAD_ARGUMENTS:<key> ..."
ROW = re.compile(r"^(\d{3}) ([A-Z_]+)(?::<(\w+)>)?\s", re.MULTILINE)


def page_codes() -> list[tuple[int, str, str | None]]:
    text = SPEC.read_text(encoding="utf-8")
    table = text[text.index("# 错误码列表"):]
    rows = [(int(s), code, part) for s, code, part in ROW.findall(table)]
    assert len(rows) >= 11, "the spec's error table was not found"
    return rows


def test_every_code_on_the_page_is_mapped_with_its_http_status() -> None:
    for status, code, _ in page_codes():
        assert code in ERROR_CODES, f"{code} from the page has no exception class"
        assert ERROR_CODES[code].documented_status == status, code


def test_no_class_is_mapped_that_the_page_does_not_list() -> None:
    assert set(ERROR_CODES) == {code for _, code, _ in page_codes()}


@pytest.mark.parametrize(("raw", "cls", "attr", "value"), [
    ("BAD_ARGUMENTS:return_image", errors.BadArguments, "key", "return_image"),
    ("MISSING_ARGUMENTS:api_key", errors.MissingArguments, "key", "api_key"),
    ("AUTHORIZATION_ERROR:Denied.", errors.AuthorizationError, "reason", "Denied."),
])
def test_colon_suffix_is_parsed(raw: str, cls: type, attr: str, value: str) -> None:
    err = api_error(raw, http_status=400, request_id="1,abc")
    assert isinstance(err, cls)
    assert getattr(err, attr) == value
    assert err.raw_code == raw
    assert value in str(err)


def test_every_class_has_a_plain_message_and_a_retry_policy() -> None:
    for cls in ERROR_CODES.values():
        err = cls()
        assert str(err) and "[" in str(err)
        assert err.retry in ("never", "once", "backoff")
    # The quota-relevant policies the field notes call for:
    assert errors.ConcurrencyLimitExceeded.retry == "backoff"
    assert errors.InternalError.retry == "once"
    for never in (errors.ResultNotFound, errors.AuthenticationError, errors.DataDestroyed,
                  errors.BadArguments, errors.MissingArguments, errors.APINotFound,
                  errors.MessageEncryptionError, errors.AuthorizationError):
        assert never.retry == "never"


def test_unknown_code_is_kept_visible() -> None:
    err = api_error("SOMETHING_NEW:x", http_status=418)
    assert isinstance(err, errors.UnknownAPIError)
    assert "SOMETHING_NEW:x" in str(err)
    assert err.http_status == 418


def test_tree_shape() -> None:
    for cls in ERROR_CODES.values():
        assert issubclass(cls, APIError) and issubclass(cls, errors.FaceIDError)
    assert issubclass(errors.NetworkError, errors.TransportError)
    assert issubclass(errors.QuotaExhausted, errors.RequestRefused)
    # The module docstring draws every class of the tree.
    for name in dir(errors):
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, errors.FaceIDError):
            assert name in (errors.__doc__ or ""), f"{name} missing from the drawn tree"


def test_the_kept_copy_of_the_api_page_is_current() -> None:
    """Where the team's shared copy is beside the checkout, ours must not have drifted."""
    if not SHARED.exists():
        pytest.skip("no ../shared/spec beside this checkout (a plain clone)")
    assert SPEC.read_bytes() == SHARED.read_bytes()

"""The get_result client: arguments, retries that respect the quota, the attempt ledger hook,
and the api_secret never reaching a log line or an exception text."""

from __future__ import annotations

import json
import logging
import traceback

import httpx
import pytest

from faceid.api.client import FaceIDClient, outcome_code
from faceid.api.simulator import SimulatorState, http_status_for, start_in_thread
from faceid.core import errors
from faceid.core.errors import ERROR_CODES, ConfigError, InvalidRequest

SECRET = "s3cr3t-VALUE-never-shown"  # noqa: S105
KEY = "key-123"


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def before(self, biz_id: str, attempt: int) -> int:
        self.events.append(("before", biz_id, attempt))
        return attempt

    def after(self, token: int, outcome: str, http_status: int | None) -> None:
        self.events.append(("after", token, outcome, http_status))


def mock_client(handler, **kw) -> FaceIDClient:
    return FaceIDClient(KEY, SECRET, "https://api.example.test",
                        transport=httpx.MockTransport(handler), sleep=lambda s: None, **kw)


def error_answer(code: str, status: int | None = None) -> httpx.Response:
    return httpx.Response(status or http_status_for(code),
                          json={"error_message": code, "request_id": "1,r", "time_used": 3})


def test_request_carries_all_arguments_and_returns_raw_bytes() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b'{"raw": "as received"}')

    answer = mock_client(handler).get_result("1462259748,52b1")
    q = seen[0].url.params
    assert seen[0].url.path == "/faceid/lite/get_result"
    assert (q["api_key"], q["api_secret"], q["biz_id"]) == (KEY, SECRET, "1462259748,52b1")
    assert q["return_image"] == "4" and q["return_verify_time"] == "1"
    assert answer.body == b'{"raw": "as received"}' and answer.attempts == 1


@pytest.mark.parametrize("bad", [-1, 7, True, "4"])
def test_return_image_is_validated_before_sending(bad: object) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("must not be sent")

    with pytest.raises(InvalidRequest):
        mock_client(handler).get_result("1,a", return_image=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("biz_id", ["", "   ", "a\nb", "x" * 300])
def test_bad_biz_id_refused(biz_id: str) -> None:
    with pytest.raises(InvalidRequest):
        mock_client(lambda r: httpx.Response(200)).get_result(biz_id)


@pytest.mark.parametrize("url", ["http://api.megvii.com", "ftp://x", "https://a/?k=v",
                                 "https://user:pw@api.megvii.com"])
def test_unsafe_base_urls_refused(url: str) -> None:
    with pytest.raises(ConfigError):
        FaceIDClient(KEY, SECRET, url)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8900", "http://localhost:1", "http://[::1]:2",
                                 "https://api-sgp.megvii.com"])
def test_loopback_http_and_regional_https_allowed(url: str) -> None:
    FaceIDClient(KEY, SECRET, url).close()


def test_concurrency_limit_is_retried_with_backoff_then_succeeds() -> None:
    answers = [error_answer("CONCURRENCY_LIMIT_EXCEEDED")] * 3
    answers.append(httpx.Response(200, content=b"{}"))
    sleeps: list[float] = []
    rec = Recorder()
    client = FaceIDClient(KEY, SECRET, "https://x.test", sleep=sleeps.append,
                          transport=httpx.MockTransport(lambda r: answers.pop(0)))
    answer = client.get_result("1,a", attempts=rec)
    assert answer.attempts == 4 and len(sleeps) == 3 and all(s > 0 for s in sleeps)
    # Ledger hook: every attempt announced before its outcome.
    kinds = [e[0] for e in rec.events]
    assert kinds == ["before", "after"] * 4
    assert [e[2] for e in rec.events if e[0] == "after"] == ["CONCURRENCY_LIMIT_EXCEEDED"] * 3 + [
        "OK"]


def test_internal_error_is_retried_at_most_once() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return error_answer("INTERNAL_ERROR")

    with pytest.raises(errors.InternalError):
        mock_client(handler).get_result("1,a")
    assert len(calls) == 2


def test_read_timeout_is_ambiguous_and_retried_once() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(errors.AmbiguousTransportError):
        mock_client(handler).get_result("1,a")
    assert len(calls) == 2


def test_connection_errors_retried_until_attempts_run_out() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(errors.NetworkError):
        mock_client(handler, max_attempts=3).get_result("1,a")
    assert len(calls) == 3


@pytest.mark.parametrize("code", [c for c, cls in ERROR_CODES.items() if cls.retry == "never"])
def test_never_retry_codes_are_sent_once(code: str) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return error_answer(code + (":biz_id" if "ARGUMENTS" in code else ""))

    with pytest.raises(ERROR_CODES[code]) as info:
        mock_client(handler).get_result("1,a")
    assert len(calls) == 1
    assert info.value.http_status == http_status_for(code)
    assert outcome_code(info.value) == code


def test_gateway_error_without_code_is_ambiguous() -> None:
    with pytest.raises(errors.AmbiguousTransportError, match="HTTP 502"):
        mock_client(lambda r: httpx.Response(502, content=b"<html>bad gateway</html>")
                    ).get_result("1,a")


def test_redirect_is_not_followed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": "https://evil.test/steal"})

    with pytest.raises(errors.APIError):
        mock_client(handler).get_result("1,a")


# ------------------------------------------------------------------ the secret never leaks


def _all_text(exc: BaseException) -> str:
    parts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    seen = exc.__context__ or exc.__cause__
    while seen is not None:  # nothing chained may carry the URL either
        parts.append(repr(seen) + str(seen))
        seen = seen.__context__ or seen.__cause__
    return "\n".join(parts)


@pytest.mark.parametrize("scenario", ["403", "500", "connect", "timeout", "502"])
def test_secret_never_in_logs_or_exceptions(scenario: str, caplog: pytest.LogCaptureFixture,
                                            capsys: pytest.CaptureFixture) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if scenario == "403":
            return error_answer("AUTHENTICATION_ERROR")
        if scenario == "500":
            return error_answer("INTERNAL_ERROR")
        if scenario == "502":
            return httpx.Response(502, content=str(request.url).encode())  # echo the URL back
        if scenario == "connect":
            raise httpx.ConnectError(f"cannot connect to {request.url}", request=request)
        raise httpx.ReadTimeout(f"timeout reading {request.url}", request=request)

    caplog.set_level(logging.DEBUG)
    logging.getLogger("httpx").setLevel(logging.DEBUG)  # even if someone turns it up
    with pytest.raises(errors.FaceIDError) as info:
        mock_client(handler, max_attempts=2).get_result("1,a")
    logging.getLogger("httpx").info("HTTP Request: GET https://x/?api_secret=%s", SECRET)
    text = _all_text(info.value) + caplog.text + "".join(
        r.getMessage() for r in caplog.records) + capsys.readouterr().err
    assert SECRET not in text
    assert "api_secret=" not in str(info.value)


def test_secret_never_in_logs_over_real_http(caplog: pytest.LogCaptureFixture) -> None:
    """Drive a 403, a 500 and a refused connection through the simulator over real HTTP."""
    caplog.set_level(logging.DEBUG)
    state = SimulatorState(api_key=KEY, api_secret=SECRET)
    [biz_id] = state.add_generated(1, seed=1)
    texts: list[str] = []
    with start_in_thread(state) as sim:
        wrong = FaceIDClient(KEY, SECRET + "x", sim.base_url, sleep=lambda s: None)
        with pytest.raises(errors.AuthenticationError) as e403:
            wrong.get_result(biz_id)
        texts.append(_all_text(e403.value))
        client = FaceIDClient(KEY, SECRET, sim.base_url, sleep=lambda s: None)
        state.fail_next("INTERNAL_ERROR", 2)
        with pytest.raises(errors.InternalError) as e500:
            client.get_result(biz_id)
        texts.append(_all_text(e500.value))
        base = sim.base_url
    with pytest.raises(errors.NetworkError) as econn:
        FaceIDClient(KEY, SECRET, base, sleep=lambda s: None, max_attempts=2).get_result(biz_id)
    texts.append(_all_text(econn.value))
    blob = "\n".join(texts) + caplog.text
    assert SECRET not in blob and (SECRET + "x") not in blob


def test_repr_hides_secret() -> None:
    c = FaceIDClient(KEY, SECRET, "https://x.test")
    assert SECRET not in repr(c) and SECRET not in repr(vars(c).get("_http"))


# ------------------------------------------------------------------ every code over real HTTP


@pytest.mark.parametrize("code", sorted(ERROR_CODES))
def test_every_error_code_through_the_simulator(code: str) -> None:
    state = SimulatorState(api_key=KEY, api_secret=SECRET)
    [biz_id] = state.add_generated(1, seed=2)
    raw = code + (":biz_id" if code in ("MISSING_ARGUMENTS", "BAD_ARGUMENTS") else "")
    raw = code + ":Denied." if code == "AUTHORIZATION_ERROR" else raw
    with start_in_thread(state) as sim:
        state.fail_next(raw, 5)
        client = FaceIDClient(KEY, SECRET, sim.base_url, sleep=lambda s: None, max_attempts=2)
        with pytest.raises(ERROR_CODES[code]) as info:
            client.get_result(biz_id)
    assert info.value.http_status == ERROR_CODES[code].documented_status
    assert info.value.raw_code == raw


def test_success_through_the_simulator_is_the_raw_body() -> None:
    state = SimulatorState(api_key=KEY, api_secret=SECRET)
    [biz_id] = state.add_generated(1, seed=3)
    with start_in_thread(state) as sim:
        answer = FaceIDClient(KEY, SECRET, sim.base_url).get_result(biz_id)
    doc = json.loads(answer.body)
    assert doc["biz_info"]["biz_id"] == biz_id and state.reads(biz_id) == 1

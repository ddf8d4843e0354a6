"""Every error the desk can raise, in one tree (modelled on ``httpx._exceptions``).

FaceIDError
├── ConfigError                 settings that cannot work (plain http to a remote host, no key)
├── RequestRefused              a call we refuse to send (bad argument, quota already spent)
│   ├── InvalidRequest          an argument outside the page's domain (return_image=7, empty biz_id)
│   └── QuotaExhausted          the ledger shows no read left, or the 1-day window has closed
├── DocumentError               a document that is not a get_result response at all
├── PermissionDenied            the actor's role does not grant the operation
│   ├── NotAllowed              a review action refused by role or the four-eyes rule
│   └── ExportRefused           an export the role may not make (e.g. unmasked)
├── InvalidRole                 a role name that is not reviewer/senior/auditor/admin
├── ReviewError                 a review action refused; the text says why
│   ├── CaseNotFound            no stored case has this biz_id
│   ├── NotAllowed              (also a PermissionDenied, above)
│   ├── ClaimConflict           someone else holds the claim
│   ├── NotClaimed              deciding without holding the claim
│   ├── InvalidDecision         missing reason/note, unknown outcome
│   └── StaleCase               decided on a stale view (optimistic lock lost)
├── ExportError                 a bad export request
│   └── ExportRefused           (also a PermissionDenied, above)
├── InsightsError               a bad report request
├── UserError                   a user change refused
│   ├── UserExists
│   ├── UnknownUser
│   ├── PasswordRejected
│   └── LastAdmin               would leave no enabled admin
├── TransportError              FaceID never answered in a usable way
│   ├── NetworkError            the request never reached FaceID: it cannot have counted a read
│   └── AmbiguousTransportError the request may have reached FaceID (read timeout, broken answer)
└── APIError                    FaceID answered with an ``error_message`` (see ``ERROR_CODES``)
    ├── ResultNotFound              400 RESULT_NOT_FOUND
    ├── VideoFaceOcclude            400 VIDEO_FACE_OCCLUDE
    ├── AuthenticationError         403 AUTHENTICATION_ERROR
    ├── AuthorizationError          403 AUTHORIZATION_ERROR:<reason>
    ├── MessageEncryptionError      400 MESSAGE_ENCRYPTION_ERROR
    ├── ConcurrencyLimitExceeded    403 CONCURRENCY_LIMIT_EXCEEDED
    ├── MissingArguments            400 MISSING_ARGUMENTS:<key>
    ├── DataDestroyed               403 DATA_DESTROYED
    ├── BadArguments                400 BAD_ARGUMENTS:<key>
    ├── APINotFound                 404 API_NOT_FOUND
    ├── InternalError               500 INTERNAL_ERROR
    └── UnknownAPIError             anything the page does not list

No exception text in this module ever contains a URL, a query string or a credential: the
api_secret travels in FaceID's query string, so we never format a request into a message.

Each APIError class says how the client may retry it, because a read may count against the
3-read quota (field notes): ``"backoff"`` for answers that never counted, ``"once"`` for
ambiguous ones, ``"never"`` for the rest.
"""

from __future__ import annotations

from typing import ClassVar, Literal

RetryPolicy = Literal["never", "once", "backoff"]


class FaceIDError(Exception):
    """Base of every error raised by ``faceid``. ``str(e)`` is safe to show a reviewer."""

    plain: ClassVar[str] = "Something went wrong."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.plain)

    @property
    def message(self) -> str:
        return str(self)


class ConfigError(FaceIDError):
    plain = "The desk is misconfigured."


class RequestRefused(FaceIDError):
    plain = "The request was not sent."


class InvalidRequest(RequestRefused):
    plain = "The request has an invalid argument."


class QuotaExhausted(RequestRefused):
    plain = "FaceID allows no more reads of this result."


class DocumentError(FaceIDError):
    plain = "This document is not a FaceID get_result response."


class PermissionDenied(FaceIDError):
    """The actor's role does not grant the operation. The text names role and operation only."""

    plain = "You are not allowed to do this."

    def __init__(self, message: str | None = None, *, permission: str | None = None,
                 role: str | None = None) -> None:
        self.permission = permission
        self.role = role
        super().__init__(message)


class InvalidRole(FaceIDError):
    plain = "Unknown role."


class ReviewError(FaceIDError):
    """A review action was refused; ``str(e)`` is the plain reason shown to the reviewer."""

    plain = "The review action was refused."


class CaseNotFound(ReviewError):
    plain = "No stored case has this biz_id."


class NotAllowed(ReviewError, PermissionDenied):
    """Refused by role or by the four-eyes rule. Also a ``PermissionDenied``, so callers (and
    ``tests/test_roles.py``) can treat every service's refusals alike."""

    plain = "Your role does not allow this action."


class ClaimConflict(ReviewError):
    plain = "Someone else holds the claim on this case."


class NotClaimed(ReviewError):
    plain = "Claim the case before deciding it."


class InvalidDecision(ReviewError):
    plain = "The decision is incomplete."


class StaleCase(ReviewError):
    plain = ("This case changed after you opened it (someone claimed, released or decided it). "
             "Nothing was saved: reload the case, check what changed, then act again.")


class ExportError(FaceIDError):
    plain = "The export could not be made."


class ExportRefused(ExportError, PermissionDenied):
    plain = "Your role may not make this export."


class InsightsError(FaceIDError):
    plain = "The report could not be made."


class UserError(FaceIDError):
    plain = "The user could not be changed."


class UserExists(UserError):
    plain = "That user already exists."


class UnknownUser(UserError):
    plain = "No such user."


class PasswordRejected(UserError):
    plain = "That password is not acceptable."


class LastAdmin(UserError):
    plain = "This would leave no enabled admin: nobody could manage users any more."


class TransportError(FaceIDError):
    plain = "FaceID could not be reached."
    retry: ClassVar[RetryPolicy] = "never"


class NetworkError(TransportError):
    plain = "FaceID could not be reached (network error); no read was spent."
    retry = "backoff"


class AmbiguousTransportError(TransportError):
    plain = "FaceID did not answer in time; the read may have been counted."
    retry = "once"


class APIError(FaceIDError):
    """FaceID answered with an ``error_message``.

    ``code`` is the bare code (``"BAD_ARGUMENTS"``); ``detail`` is what followed the colon
    (the ``<key>`` or ``<reason>``), ``http_status`` what FaceID sent, ``request_id`` its
    request id (safe to show: it carries no credential).
    """

    code: ClassVar[str] = ""
    documented_status: ClassVar[int | None] = None
    retry: ClassVar[RetryPolicy] = "never"
    plain = "FaceID refused the request."

    def __init__(
        self,
        detail: str | None = None,
        *,
        http_status: int | None = None,
        request_id: str | None = None,
        raw_code: str | None = None,
    ) -> None:
        self.detail = detail or None
        self.http_status = http_status
        self.request_id = request_id
        self.raw_code = raw_code or (f"{self.code}:{detail}" if detail else self.code)
        super().__init__(self._describe())

    def _describe(self) -> str:
        text = self.plain
        if self.detail:
            text = f"{text} ({self.detail})"
        return f"{text} [{self.raw_code}]"


class ResultNotFound(APIError):
    code = "RESULT_NOT_FOUND"
    documented_status = 400
    plain = "FaceID has no result for this biz_id (wrong or mistyped biz_id)."


class VideoFaceOcclude(APIError):
    code = "VIDEO_FACE_OCCLUDE"
    documented_status = 400
    plain = "The face in the uploaded video is covered."


class AuthenticationError(APIError):
    code = "AUTHENTICATION_ERROR"
    documented_status = 403
    plain = "FaceID rejected the api_key/api_secret pair."


class AuthorizationError(APIError):
    code = "AUTHORIZATION_ERROR"
    documented_status = 403
    plain = "This api_key may not call get_result (disabled, over its call limit or no permission)."

    @property
    def reason(self) -> str | None:
        return self.detail


class MessageEncryptionError(APIError):
    code = "MESSAGE_ENCRYPTION_ERROR"
    documented_status = 400
    plain = "FaceID failed to encrypt sensitive data in its answer."


class ConcurrencyLimitExceeded(APIError):
    code = "CONCURRENCY_LIMIT_EXCEEDED"
    documented_status = 403
    plain = "FaceID is at its concurrency limit; the read was not counted."
    retry = "backoff"


class MissingArguments(APIError):
    code = "MISSING_ARGUMENTS"
    documented_status = 400
    plain = "A required argument was missing."

    @property
    def key(self) -> str | None:
        return self.detail


class DataDestroyed(APIError):
    code = "DATA_DESTROYED"
    documented_status = 403
    plain = "FaceID has destroyed this result (past 1 day or past 3 reads)."


class BadArguments(APIError):
    code = "BAD_ARGUMENTS"
    documented_status = 400
    plain = "FaceID could not parse an argument."

    @property
    def key(self) -> str | None:
        return self.detail


class APINotFound(APIError):
    code = "API_NOT_FOUND"
    documented_status = 404
    plain = "FaceID does not know this API (check the base URL)."


class InternalError(APIError):
    code = "INTERNAL_ERROR"
    documented_status = 500
    plain = "FaceID had an internal error; the read may have been counted."
    retry = "once"


class UnknownAPIError(APIError):
    code = "UNKNOWN"
    plain = "FaceID answered with an error this desk does not know."


#: The page's error table: bare code -> class. A test checks every code on the page is here.
ERROR_CODES: dict[str, type[APIError]] = {
    cls.code: cls
    for cls in (
        ResultNotFound,
        VideoFaceOcclude,
        AuthenticationError,
        AuthorizationError,
        MessageEncryptionError,
        ConcurrencyLimitExceeded,
        MissingArguments,
        DataDestroyed,
        BadArguments,
        APINotFound,
        InternalError,
    )
}


def api_error(
    error_message: str | None, *, http_status: int | None = None, request_id: str | None = None
) -> APIError:
    """Build the right APIError from FaceID's ``error_message`` (e.g. ``BAD_ARGUMENTS:biz_id``)."""
    raw = (error_message or "").strip()
    code, sep, detail = raw.partition(":")
    cls = ERROR_CODES.get(code.strip())
    if cls is None:
        # Keep the unknown code visible; it is FaceID's text, not ours, and holds no secret.
        return UnknownAPIError(
            None, http_status=http_status, request_id=request_id,
            raw_code=raw or f"HTTP {http_status}",
        )
    return cls(detail.strip() if sep else None, http_status=http_status,
               request_id=request_id, raw_code=raw)

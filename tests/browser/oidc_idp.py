"""A minimal OpenID Connect provider for the browser tests (test infrastructure only).

Just enough of OIDC Core + Discovery for ``st.login`` (Authlib's Starlette client) to run the
real authorization-code flow against it over loopback HTTP: discovery, ``/authorize`` (no
login screen: it signs in whoever ``next_subject`` names and redirects straight back), ``/token``
(client authentication, redirect_uri and PKCE S256 checked; an RS256-signed ID token carrying
the nonce, signed with joserfc, which Authlib itself uses), ``/jwks``. Every request is
recorded so a test can assert what the desk sent.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import RSAKey


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    nonce: str | None
    subject: str
    challenge: str | None


@dataclass
class IdP:
    client_id: str
    client_secret: str
    #: Who /authorize signs in next (the test changes it between logins).
    next_subject: str = "subject-1"
    email: str = "person@example.com"
    requests: list[str] = field(default_factory=list)
    tokens_issued: int = 0
    issuer: str = ""
    _grants: dict[str, Grant] = field(default_factory=dict)
    _key: Any = None
    _server: ThreadingHTTPServer | None = None

    def start(self) -> IdP:
        self._key = RSAKey.generate_key(2048, parameters={"kid": "test-key"}, private=True)
        handler = type("Handler", (_Handler,), {"idp": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.issuer = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def metadata_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def metadata(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic",
                                                      "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["openid", "email", "profile"],
        }

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self._key.as_dict(private=False)]}

    def authorize(self, query: dict[str, str]) -> str:
        """The redirect back to the client, with a code (or an OAuth error)."""
        redirect = query.get("redirect_uri", "")
        if query.get("client_id") != self.client_id or not redirect:
            raise ValueError("unknown client or no redirect_uri")
        code = secrets.token_urlsafe(16)
        self._grants[code] = Grant(self.client_id, redirect, query.get("nonce"),
                                   self.next_subject, query.get("code_challenge"))
        back = {"code": code, "state": query.get("state", "")}
        return f"{redirect}?{urlencode(back)}"

    def token(self, form: dict[str, str], basic: tuple[str, str] | None) -> dict[str, Any]:
        client_id, client_secret = basic or (form.get("client_id", ""),
                                             form.get("client_secret", ""))
        if (client_id, client_secret) != (self.client_id, self.client_secret):
            raise PermissionError("invalid_client")
        grant = self._grants.pop(form.get("code", ""), None)  # a code works once
        if grant is None or form.get("redirect_uri") != grant.redirect_uri:
            raise PermissionError("invalid_grant")
        if grant.challenge is not None:
            verifier = form.get("code_verifier", "").encode()
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=")
            if digest.decode() != grant.challenge:
                raise PermissionError("invalid_grant")
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": grant.subject, "aud": self.client_id,
                  "iat": now, "exp": now + 300, "email": self.email, "name": "Test Person"}
        if grant.nonce:
            claims["nonce"] = grant.nonce
        id_token = jwt.encode({"alg": "RS256", "kid": "test-key"}, claims, self._key)
        self.tokens_issued += 1
        return {"access_token": secrets.token_urlsafe(16), "token_type": "Bearer",
                "expires_in": 300, "id_token": id_token}


class _Handler(BaseHTTPRequestHandler):
    idp: IdP

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        url = urlsplit(self.path)
        self.idp.requests.append(f"GET {url.path}")
        if url.path == "/.well-known/openid-configuration":
            self._json(200, self.idp.metadata())
        elif url.path == "/jwks":
            self._json(200, self.idp.jwks())
        elif url.path == "/authorize":
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            try:
                location = self.idp.authorize(query)
            except ValueError as exc:
                self._json(400, {"error": "invalid_request", "error_description": str(exc)})
                return
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._json(404, {"error": "not_found"})

    def do_POST(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        self.idp.requests.append(f"POST {url.path}")
        length = int(self.headers.get("Content-Length") or 0)
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        basic = None
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
            basic = (user, pw)
        if url.path != "/token":
            self._json(404, {"error": "not_found"})
            return
        try:
            self._json(200, self.idp.token(form, basic))
        except PermissionError as exc:
            self._json(400, {"error": str(exc)})

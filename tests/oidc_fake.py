"""A local fake of Slack's OpenID Connect endpoints, for "Sign in with Slack" tests.

``GET /openid/connect/authorize`` signs the browser in at once as ``fake.user`` (set it before the
test signs in; a Slack Connect customer is a user of another team) and redirects to the redirect URI with
a code and the state; ``POST /api/openid.connect.token`` exchanges the code (checking the client's
credentials and the redirect URI, as Slack does) for an access token and an id_token carrying the nonce;
``POST /api/openid.connect.userInfo`` answers with the user's claims for that access token.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web


@dataclass
class SlackUser:
    id: str
    team: str
    name: str
    email: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class FakeSlackOidc:
    client_id: str = "1234.5678"
    client_secret: str = "oidc-client-secret"
    user: SlackUser = field(default_factory=lambda: SlackUser("U0LEAD", "T0HOME", "Lee Lead", "lee@example.com"))
    authorizations: list[dict[str, str]] = field(default_factory=list)
    """The query of every authorize request, as the browser sent it."""
    exchanges: list[dict[str, str]] = field(default_factory=list)
    """The form of every token request."""
    _codes: dict[str, tuple[SlackUser, dict[str, str]]] = field(default_factory=dict)
    _tokens: dict[str, SlackUser] = field(default_factory=dict)
    _runner: web.AppRunner | None = None
    url: str = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/openid/connect/authorize", self._authorize)
        app.router.add_post("/api/openid.connect.token", self._token)
        app.router.add_post("/api/openid.connect.userInfo", self._user_info)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    @property
    def authorize_url(self) -> str:
        return f"{self.url}/openid/connect/authorize"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _authorize(self, request: web.Request) -> web.Response:
        query = dict(request.query)
        self.authorizations.append(query)
        if query.get("client_id") != self.client_id or query.get("response_type") != "code" \
                or "openid" not in query.get("scope", "").split():
            return web.Response(status=400, text="invalid_request")
        code = secrets.token_urlsafe(12)
        self._codes[code] = (self.user, query)
        raise web.HTTPFound(query["redirect_uri"] + "?" + urlencode({"code": code, "state": query.get("state", "")}))

    async def _token(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.exchanges.append({k: str(v) for k, v in form.items()})
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return web.json_response({"ok": False, "error": "invalid_client_id"})
        found = self._codes.pop(str(form.get("code")), None)
        if found is None:
            return web.json_response({"ok": False, "error": "invalid_code"})
        user, asked = found
        if form.get("redirect_uri") != asked["redirect_uri"] or form.get("grant_type") != "authorization_code":
            return web.json_response({"ok": False, "error": "bad_redirect_uri"})
        access = "xoxp-" + secrets.token_hex(8)
        self._tokens[access] = user
        now = int(time.time())
        claims: dict[str, Any] = {"iss": "https://slack.com", "sub": user.id, "aud": self.client_id,
                                  "exp": now + 3600, "iat": now, "auth_time": now, "nonce": asked.get("nonce"),
                                  "https://slack.com/user_id": user.id, "https://slack.com/team_id": user.team,
                                  "email": user.email, "name": user.name}
        header = {"typ": "JWT", "alg": "RS256", "kid": "fake"}
        id_token = ".".join([_b64(json.dumps(header).encode()), _b64(json.dumps(claims).encode()),
                             _b64(b"not-a-real-signature")])
        return web.json_response({"ok": True, "access_token": access, "token_type": "Bearer", "id_token": id_token})

    async def _user_info(self, request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        user = self._tokens.get(token)
        if user is None:
            return web.json_response({"ok": False, "error": "invalid_auth"})
        return web.json_response({"ok": True, "sub": user.id, "https://slack.com/user_id": user.id,
                                  "https://slack.com/team_id": user.team, "email": user.email,
                                  "email_verified": True, "name": user.name, "given_name": user.name.split()[0]})

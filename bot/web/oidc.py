""""Sign in with Slack" (OpenID Connect) for the dashboard, and its signed session cookie.

The dashboard shows customers' words and staff's work, so only members of the workspace that installed
Baton may read it. Slack Connect customers are Slack users too, of another workspace: the
``https://slack.com/team_id`` claim tells them apart, and anyone else's is refused.

The flow is the authorization-code flow: ``/dashboard/signin/slack`` sends the browser to Slack's
authorize page with a random ``state`` (CSRF) and ``nonce`` kept in a short-lived signed cookie; Slack sends
it back to ``/dashboard/signin/callback`` with a code, which is exchanged for tokens server to server
(``openid.connect.token``); ``openid.connect.userInfo`` says who it is. The id_token comes straight from
Slack's token endpoint over TLS, so, as OpenID Connect Core 3.1.3.7 allows, its issuer is trusted from the
TLS connection rather than from a signature: its audience, expiry and nonce are still checked.

The session is a cookie holding who signed in and until when, signed with HMAC-SHA256: HttpOnly,
SameSite=Lax, Secure when the public URL is https. No server-side session store, so every process of a
deployment accepts it, and a changed secret signs everybody out.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import structlog
from aiohttp import ClientError, ClientSession, ClientTimeout, web

from bot.settings import Settings

log = structlog.get_logger(__name__)

DEFAULT_API_URL = "https://slack.com/api/"
SESSION_COOKIE = "baton_session"
SIGNIN_COOKIE = "baton_signin"
SESSION_SECONDS = 8 * 3600
"""A working day: then Slack is asked again (a person who left the workspace cannot sign in any more)."""
SIGNIN_SECONDS = 600
"""How long a started sign-in may take at Slack before its state is forgotten."""
TEAM_CLAIM = "https://slack.com/team_id"
USER_CLAIM = "https://slack.com/user_id"
ISSUER = "https://slack.com"
CALLBACK_PATH = "/dashboard/signin/callback"


@dataclass(frozen=True)
class User:
    """Who is signed in: a member of the installing workspace."""

    id: str
    team: str
    name: str
    email: str | None = None


@dataclass(frozen=True)
class OidcConfig:
    client_id: str
    client_secret: str
    public_url: str
    authorize_url: str
    api_url: str
    session_key: bytes
    team: str | None = None
    """The installing workspace (``BATON_SLACK_TEAM``); ``None``: the one the Slack platform logged in to."""

    @property
    def redirect_uri(self) -> str:
        return self.public_url + CALLBACK_PATH

    @property
    def secure(self) -> bool:
        """Cookies only over https, when people reach Baton over https."""
        return self.public_url.startswith("https://")

    def __repr__(self) -> str:  # never print the secrets
        return (f"OidcConfig(client_id={self.client_id!r}, public_url={self.public_url!r}, team={self.team!r}, "
                f"authorize_url={self.authorize_url!r}, api_url={self.api_url!r})")

    @classmethod
    def from_settings(cls, settings: Settings, *, slack_configured: bool = False) -> OidcConfig | str:
        """The sign-in configuration, or why there is none (one sentence, naming what to set)."""
        missing = [name for name, value in (("SLACK_CLIENT_ID", settings.slack_client_id),
                                            ("SLACK_CLIENT_SECRET", settings.slack_client_secret),
                                            ("BATON_PUBLIC_URL", settings.public_url)) if not value]
        if not settings.slack_team and not slack_configured:
            missing.append("BATON_SLACK_TEAM (or a Slack bot token, whose workspace is then the one)")
        if missing:
            return "sign-in with Slack is not configured: set " + ", ".join(missing)
        assert settings.slack_client_id and settings.slack_client_secret and settings.public_url
        secret = settings.slack_client_secret.get_secret_value()
        if settings.session_secret is not None:
            key = settings.session_secret.get_secret_value().encode()
        else:  # a key of its own, so the client secret itself never signs anything a browser holds
            key = hmac.new(secret.encode(), b"baton dashboard session", hashlib.sha256).digest()
        api = settings.slack_api_url or DEFAULT_API_URL
        return cls(client_id=settings.slack_client_id, client_secret=secret,
                   public_url=settings.public_url.rstrip("/"), authorize_url=settings.slack_oidc_authorize_url,
                   api_url=api if api.endswith("/") else api + "/", session_key=key, team=settings.slack_team)


# ---- signed values ----


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(key: bytes, purpose: str, payload: dict[str, Any]) -> str:
    """``payload`` as a cookie value nobody can change unnoticed: base64(JSON).base64(HMAC). ``purpose`` is
    signed with it, so a value made for one cookie is worthless as another."""
    body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    mac = hmac.new(key, f"{purpose}.{body}".encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}"


def unsign(key: bytes, purpose: str, value: str | None, *, now: float | None = None) -> dict[str, Any] | None:
    """The payload of a value :func:`sign` made for ``purpose``, unless it was changed or has expired."""
    if not value or value.count(".") != 1:
        return None
    body, mac = value.split(".")
    expected = hmac.new(key, f"{purpose}.{body}".encode(), hashlib.sha256).digest()
    try:
        if not hmac.compare_digest(_unb64(mac), expected):
            return None
        payload = json.loads(_unb64(body))
    except (ValueError, binascii.Error):
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("exp"), int | float):
        return None
    if payload["exp"] <= (time.time() if now is None else now):
        return None
    return payload


def _claims(id_token: str) -> dict[str, Any] | None:
    """The claims of a JWT, unverified (see the module's docstring for why that is sound here)."""
    parts = id_token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(_unb64(parts[1]))
    except (ValueError, binascii.Error):
        return None
    return claims if isinstance(claims, dict) else None


def local_path(target: str | None) -> str:
    """Where to go after signing in: a dashboard path of this site only (never another site's URL)."""
    if target and target.startswith("/dashboard") and not target.startswith("//") \
            and not any(c in target for c in "\\\r\n"):
        return target
    return "/dashboard"


class SignInRefused(Exception):
    """Sign-in did not succeed; ``status`` and the message are what the person is shown."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class SignIn:
    """The sign-in routes' logic and the session check; the dashboard renders the pages around it."""

    def __init__(self, config: OidcConfig, *, team: Any = None, timeout: float = 10.0) -> None:
        """``team``: a callable giving the installing workspace's id when ``BATON_SLACK_TEAM`` is unset
        (the Slack platform knows it once logged in)."""
        self.config = config
        self._team = team
        self.timeout = timeout

    def team(self) -> str | None:
        if self.config.team:
            return self.config.team
        found = self._team() if callable(self._team) else None
        return str(found) if found else None

    # ---- the session ----

    def user(self, request: web.Request) -> User | None:
        """The signed-in member, or ``None`` (no cookie, a changed one, an expired one, another team)."""
        payload = unsign(self.config.session_key, "session", request.cookies.get(SESSION_COOKIE))
        if payload is None:
            return None
        team = self.team()
        if not team or payload.get("team") != team or not isinstance(payload.get("sub"), str):
            return None
        return User(id=payload["sub"], team=team, name=str(payload.get("name") or payload["sub"]),
                    email=payload.get("email") if isinstance(payload.get("email"), str) else None)

    def _cookie(self, response: web.StreamResponse, name: str, value: str, *, max_age: int, path: str) -> None:
        response.set_cookie(name, value, max_age=max_age, path=path, httponly=True, samesite="Lax",
                            secure=self.config.secure)

    def sign_out(self, response: web.StreamResponse) -> None:
        response.del_cookie(SESSION_COOKIE, path="/dashboard")

    # ---- the flow ----

    def start(self, target: str | None) -> web.HTTPFound:
        """The redirect to Slack's authorize page, with a fresh state and nonce in a signed cookie."""
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        query = urlencode({"response_type": "code", "scope": "openid profile email", "client_id": self.config.client_id,
                           "redirect_uri": self.config.redirect_uri, "state": state, "nonce": nonce,
                           **({"team": team} if (team := self.team()) else {})})
        separator = "&" if "?" in self.config.authorize_url else "?"
        response = web.HTTPFound(f"{self.config.authorize_url}{separator}{query}")
        pending = {"state": state, "nonce": nonce, "next": local_path(target),
                   "exp": int(time.time()) + SIGNIN_SECONDS}
        self._cookie(response, SIGNIN_COOKIE, sign(self.config.session_key, "signin", pending),
                     max_age=SIGNIN_SECONDS, path="/dashboard/signin")
        return response

    async def finish(self, request: web.Request) -> tuple[User, str]:
        """Check Slack's answer (state, code, tokens, team) and return the member and where to go next.
        Raises :class:`SignInRefused`."""
        pending = unsign(self.config.session_key, "signin", request.cookies.get(SIGNIN_COOKIE))
        state = request.query.get("state", "")
        if pending is None or not hmac.compare_digest(str(pending.get("state", "")).encode(), state.encode()):
            log.warning("dashboard_signin_refused", reason="state does not match")
            raise SignInRefused(400, "This sign-in link is stale or was not started here. Please sign in again.")
        if "error" in request.query:
            raise SignInRefused(400, f"Slack did not sign you in ({request.query['error'][:100]}).")
        code = request.query.get("code")
        if not code:
            raise SignInRefused(400, "Slack's answer has no code. Please sign in again.")
        expected = self.team()
        if not expected:
            raise SignInRefused(503, "Baton does not know its workspace yet: set BATON_SLACK_TEAM.")
        tokens = await self._call("openid.connect.token", data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": self.config.redirect_uri,
            "client_id": self.config.client_id, "client_secret": self.config.client_secret})
        access = tokens.get("access_token")
        if not isinstance(access, str) or not access:
            raise SignInRefused(502, "Slack gave no access token.")
        # Slack's OpenID token answer always carries an id_token: without one, the nonce cannot be checked.
        id_claims = _claims(tokens["id_token"]) if isinstance(tokens.get("id_token"), str) else None
        problem = self._bad_id_token(id_claims, str(pending.get("nonce", ""))) if id_claims is not None \
            else "no id_token"
        if problem or id_claims is None:
            log.warning("dashboard_signin_refused", reason=problem)
            raise SignInRefused(400, "Slack's answer could not be checked. Please sign in again.")
        info = await self._call("openid.connect.userInfo", token=access)
        user_id = info.get(USER_CLAIM) or info.get("sub")
        team = info.get(TEAM_CLAIM)
        if id_claims.get(TEAM_CLAIM) != team or id_claims.get("sub") != info.get("sub"):
            log.warning("dashboard_signin_refused", reason="id_token and userInfo disagree")
            raise SignInRefused(400, "Slack's answer could not be checked. Please sign in again.")
        if not isinstance(user_id, str) or not isinstance(team, str) or team != expected:
            log.warning("dashboard_signin_refused", reason="not a member of the installing workspace",
                        user=user_id if isinstance(user_id, str) else None,
                        team=team if isinstance(team, str) else None)
            raise SignInRefused(403, "This dashboard is for members of the workspace that runs Baton. "
                                     "You signed in with an account of another workspace.")
        name = info.get("name") or info.get("given_name") or user_id
        email = info.get("email") if isinstance(info.get("email"), str) else None
        log.info("dashboard_signed_in", user=user_id, team=team)
        return User(id=user_id, team=team, name=str(name), email=email), str(pending.get("next") or "/dashboard")

    def session_cookie(self, response: web.StreamResponse, user: User) -> None:
        """Sign ``user`` in on ``response`` (and forget the finished sign-in's state)."""
        payload = {"sub": user.id, "team": user.team, "name": user.name[:200], "email": user.email,
                   "exp": int(time.time()) + SESSION_SECONDS}
        self._cookie(response, SESSION_COOKIE, sign(self.config.session_key, "session", payload),
                     max_age=SESSION_SECONDS, path="/dashboard")
        response.del_cookie(SIGNIN_COOKIE, path="/dashboard/signin")

    def _bad_id_token(self, claims: dict[str, Any] | None, nonce: str) -> str | None:
        if claims is None:
            return "id_token does not parse"
        audience = claims.get("aud")
        if audience != self.config.client_id and not (isinstance(audience, list) and self.config.client_id in audience):
            return "id_token is for another client"
        if claims.get("iss") != ISSUER:
            return "id_token has another issuer"
        if not isinstance(claims.get("exp"), int | float) or claims["exp"] < time.time() - 60:
            return "id_token has expired"
        if not nonce or not hmac.compare_digest(str(claims.get("nonce", "")).encode(), nonce.encode()):
            return "id_token's nonce does not match"
        return None

    async def _call(self, method: str, *, data: dict[str, str] | None = None,
                    token: str | None = None) -> dict[str, Any]:
        """One Slack Web API call of the flow; what Slack answers, or :class:`SignInRefused` (the error's
        name is logged, never the code or the tokens)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            async with ClientSession(timeout=ClientTimeout(total=self.timeout)) as http:
                async with http.post(self.config.api_url + method, data=data or {}, headers=headers) as response:
                    answer = await response.json(content_type=None)
        except (ClientError, TimeoutError, ValueError) as exc:
            log.warning("dashboard_signin_failed", method=method, error=type(exc).__name__)
            raise SignInRefused(502, "Slack could not be reached to finish signing in. Please try again.") from None
        if not isinstance(answer, dict) or not answer.get("ok"):
            error = str(answer.get("error", "no answer"))[:100] if isinstance(answer, dict) else "no answer"
            log.warning("dashboard_signin_failed", method=method, error=error)
            raise SignInRefused(502, f"Slack refused to finish signing in ({error}).")
        return answer

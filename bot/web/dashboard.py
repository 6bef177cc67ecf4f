"""The support lead's dashboard at ``/dashboard``: the KPIs, charts and breakdowns of a period, and from
every number the conversations behind it, down to one conversation's transcript and decisions.

Served by the same process as Slack's endpoints, with server-side Jinja2 templates (autoescaped: customer
text is hostile) and charts drawn on the server as inline SVG (:mod:`bot.charts`): no script, no external
resource, so a strict Content-Security-Policy holds. Only members of the installing Slack workspace may read
it (:mod:`bot.web.oidc`); without sign-in configured it is not served at all.

A built report is kept a minute per period, so a page and the drill-down opened from it count the same
conversations, and a lead clicking around does not rebuild it at every click.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as dt_time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import jinja2
import sqlalchemy as sa
import structlog
from aiohttp import web
from markupsafe import Markup

from bot import reports
from bot.handoff import explain
from bot.policy import Policy
from bot.store import Store, conversations, drafts, reviews
from bot.web.oidc import SESSION_COOKIE, OidcConfig, SignIn, SignInRefused, User, local_path

if TYPE_CHECKING:
    from bot.app import Application
    from bot.reports import Report, Row

log = structlog.get_logger(__name__)

CACHE_SECONDS = 60.0
CACHE_PERIODS = 4
DEFAULT_DAYS = 7
LONGEST = timedelta(days=366)
"""The longest period a page shows: a year's report is built in seconds, off the event loop."""
QUICK_DAYS = (7, 30, 90)
_CONVERSATION_ID = re.compile(r"^[0-9a-fA-F-]{36}$")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

KPIS: dict[str, tuple[str, str, str]] = {key: (k.label, k.kind, k.hint) for key, k in reports.KPIS.items()}
"""Every KPI of the report's ``kpis``: its label, its kind of number and what it means, as the templates read it."""


Builder = Callable[[Store, Policy, datetime, datetime], Awaitable["Report"]]


async def _build(store: Store, policy: Policy, since: datetime, until: datetime) -> Report:
    return await reports.build(store, policy, since, until)


# ---- formatting, for the templates ----


def card_link(row: Any, team: str | None, workspace_url: str | None = None) -> str | None:
    """A link that opens the conversation's Slack card: the message itself, in the permalink form Slack gives
    (``https://name.slack.com/archives/C…/p<ts without the dot>``) when the workspace's address is known (the
    Slack platform's ``auth.test``), else its channel in the Slack app."""
    channel, ts = (row["card_channel"], row["card_ts"]) if isinstance(row, Mapping) \
        else (getattr(row, "card_channel", None), getattr(row, "card_ts", None))
    if not channel:
        return None
    if workspace_url and ts:
        return f"{workspace_url.rstrip('/')}/archives/{channel}/p{str(ts).replace('.', '')}"
    return "https://slack.com/app_redirect?" + urlencode({"channel": channel, **({"team": team} if team else {})})


_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_templates.filters.update(fmt=reports.show, when=reports.when)
_templates.globals.update(KPIS=KPIS)


def render(name: str, *, status: int = 200, **context: Any) -> web.Response:
    """A page, with the headers that keep it private and inert: no cache, no framing, nothing but inline
    styles and this site's forms."""
    response = web.Response(text=_templates.get_template(name).render(**context), status=status,
                            content_type="text/html")
    response.headers.update(_HEADERS)
    return response


_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


# ---- periods ----


@dataclass(frozen=True)
class Period:
    """Conversations started from ``since`` (included) to ``until`` (not included): days in ``zone``, the
    policy's business-hours zone, as ``python -m bot report`` and the weekly digest count them."""

    since: date
    until: date
    zone: str = "UTC"

    @property
    def start(self) -> datetime:
        return datetime.combine(self.since, dt_time(0), ZoneInfo(self.zone))

    @property
    def end(self) -> datetime:
        return datetime.combine(self.until, dt_time(0), ZoneInfo(self.zone))

    @property
    def last_day(self) -> date:
        return self.until - timedelta(days=1)

    @property
    def query(self) -> dict[str, str]:
        return {"since": self.since.isoformat(), "until": self.until.isoformat()}

    @classmethod
    def last(cls, days: int, today: date, zone: str = "UTC") -> Period:
        """The last ``days`` days, today included."""
        return cls(today - timedelta(days=days - 1), today + timedelta(days=1), zone)

    @classmethod
    def of(cls, query: Mapping[str, str], today: date, zone: str = "UTC") -> Period:
        """The period a page asks for (the last week when it asks for none); ``ValueError`` says what is
        wrong with it, in words for the page."""
        default = cls.last(DEFAULT_DAYS, today, zone)
        try:
            since = date.fromisoformat(query["since"]) if query.get("since") else default.since
            until = date.fromisoformat(query["until"]) if query.get("until") else default.until
        except ValueError:
            raise ValueError("Dates are written YYYY-MM-DD, for example 2026-12-01.") from None
        if since >= until:
            raise ValueError("The period must end after it starts.")
        if until - since > LONGEST:
            raise ValueError(f"A period covers at most {LONGEST.days} days.")
        return cls(since, until, zone)


@dataclass
class Built:
    """One period's report with what the pages draw from it, made once."""

    report: Report
    data: dict[str, Any]
    charts: list[tuple[str, str, Markup]]
    at: float


@dataclass
class Dashboard:
    """The pages; :func:`mount` adds them to the application's web app when sign-in is configured."""

    store: Store
    policy: Policy
    signin: SignIn
    build: Builder = _build
    team: Callable[[], str | None] = lambda: None
    workspace_url: Callable[[], str | None] = lambda: None
    """The Slack workspace's address, for links to the cards themselves (``None``: links to their channel)."""
    today: Callable[[], date] | None = None
    """Today's date (tests fix it); ``None``: today in the business-hours zone."""
    cache_seconds: float = CACHE_SECONDS
    _cache: OrderedDict[Period, asyncio.Task[Built]] = field(default_factory=OrderedDict)

    @property
    def zone(self) -> str:
        return self.policy.business_hours.timezone

    def _today(self) -> date:
        return self.today() if self.today is not None else datetime.now(ZoneInfo(self.zone)).date()

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/dashboard", self._guard(self.overview))
        app.router.add_get("/dashboard/conversations", self._guard(self.conversations))
        app.router.add_get("/dashboard/conversations/{id}", self._guard(self.conversation))
        app.router.add_get("/dashboard/signin", self.signin_page)
        app.router.add_get("/dashboard/signin/slack", self.signin_start)
        app.router.add_get("/dashboard/signin/callback", self.signin_callback)
        app.router.add_post("/dashboard/signout", self.signout)

    # ---- sign-in ----

    def _guard(self, handler: Callable[[web.Request, User], Awaitable[web.StreamResponse]]) -> Handler:
        """No page without a session: the way to sign-in instead, back to the same page after."""
        async def guarded(request: web.Request) -> web.StreamResponse:
            user = self.signin.user(request)
            if user is None:
                response = web.HTTPFound("/dashboard/signin?" + urlencode({"next": request.path_qs}))
                if request.cookies.get(SESSION_COOKIE):  # changed, expired or another team's: dropped
                    self.signin.sign_out(response)
                raise response
            return await handler(request, user)
        return guarded

    async def signin_page(self, request: web.Request) -> web.Response:
        target = local_path(request.query.get("next"))
        if self.signin.user(request) is not None:  # signed in already
            raise web.HTTPFound(target)
        return render("signin.j2", user=None, next=target)

    async def signin_start(self, request: web.Request) -> web.StreamResponse:
        raise self.signin.start(request.query.get("next"))

    async def signin_callback(self, request: web.Request) -> web.StreamResponse:
        try:
            user, target = await self.signin.finish(request)
        except SignInRefused as refused:
            page = "refused.j2" if refused.status == 403 else "error.j2"
            response = render(page, status=refused.status, user=None, message=str(refused),
                              title="Not a member" if refused.status == 403 else "Sign-in failed")
            self.signin.sign_out(response)
            return response
        response = web.HTTPFound(local_path(target))
        self.signin.session_cookie(response, user)
        raise response

    async def signout(self, _request: web.Request) -> web.StreamResponse:
        response = web.HTTPSeeOther("/dashboard/signin")
        self.signin.sign_out(response)
        raise response

    # ---- reports ----

    async def report(self, period: Period) -> Built:
        """The period's report, built at most once a minute (the same for every page opened meanwhile)."""
        now = time.monotonic()
        task = self._cache.get(period)
        if task is not None and task.done() and (task.exception() is not None
                                                 or now - task.result().at > self.cache_seconds):
            task = None
        if task is None:
            task = asyncio.ensure_future(self._make(period))
            self._cache[period] = task
            while len(self._cache) > CACHE_PERIODS:
                self._cache.popitem(last=False)
        self._cache.move_to_end(period)
        return await asyncio.shield(task)

    async def _make(self, period: Period) -> Built:
        report = await self.build(self.store, self.policy, period.start, period.end)
        data = await asyncio.to_thread(report.to_json)
        charts = await asyncio.to_thread(_draw, data)
        return Built(report, data, charts, time.monotonic())

    def _period(self, request: web.Request) -> Period:
        try:
            return Period.of(request.query, self._today(), self.zone)
        except ValueError as exc:
            raise self._error(400, "That period cannot be shown", str(exc)) from None

    def _error(self, status: int, title: str, message: str, user: User | None = None) -> web.HTTPException:
        return _as_exception(render("error.j2", status=status, title=title, message=message, user=user))

    def _common(self, user: User, period: Period) -> dict[str, Any]:
        today = self._today()
        return {"user": user, "period": period,
                "quick": [(days, Period.last(days, today, self.zone)) for days in QUICK_DAYS],
                "link": _Links(period)}

    # ---- pages ----

    async def overview(self, request: web.Request, user: User) -> web.Response:
        period = self._period(request)
        built = await self.report(period)
        return render("overview.j2", **self._common(user, period), data=built.data, charts=built.charts)

    async def conversations(self, request: web.Request, user: User) -> web.Response:
        """The conversations behind one number: :meth:`bot.reports.Report.drill` (a KPI, for an intent or
        a breakdown's value), narrowed further for the numbers of the lower tables (a handoff reason, a
        severity, a review tag, a knowledge gap, an article)."""
        period = self._period(request)
        query = request.query
        kpi = query.get("kpi", "conversations")
        intent, by, value = (query.get(k) or None for k in ("intent", "by", "value"))
        built = await self.report(period)
        try:
            rows = built.report.drill(kpi, intent=intent, by=by, value=value)
            rows, narrowed = _narrow(built, rows, query)
        except (KeyError, ValueError, IndexError) as exc:
            raise self._error(400, "That number cannot be listed", str(exc).strip("'\""), user) from None
        label = KPIS[kpi][0] if kpi in KPIS else kpi.replace("_", " ").capitalize()
        filters = [(k, v) for k, v in (("intent", intent), (by, value)) if k and v] + narrowed
        team = self.team()
        return render("conversations.j2", **self._common(user, period), rows=rows, kpi=kpi, label=label,
                      filters=filters, card=lambda row: card_link(row, team, self.workspace_url()))

    async def conversation(self, request: web.Request, user: User) -> web.Response:
        conversation_id = request.match_info["id"]
        period = self._period(request)
        if not _CONVERSATION_ID.match(conversation_id):
            raise self._error(404, "No such conversation", "There is no conversation with that id.", user)
        async with self.store.transaction() as conn:
            found = (await conn.execute(sa.select(conversations).where(conversations.c.id == conversation_id))) \
                .mappings().first()
            if found is None:
                raise self._error(404, "No such conversation", "There is no conversation with that id.", user)
            drafted = [dict(r) for r in (await conn.execute(
                sa.select(drafts).where(drafts.c.conversation_id == conversation_id).order_by(drafts.c.id)))
                .mappings()]
            reviewed = [dict(r) for r in (await conn.execute(
                sa.select(reviews).where(reviews.c.conversation_id == conversation_id).order_by(reviews.c.id)))
                .mappings()]
            transcript = await self.store.transcript(conversation_id)
            decided = await self.store.decisions_of(conversation_id)
            moves = await self.store.transitions_of(conversation_id)
        rules = {rule: explain(rule, self.policy) for d in decided for rule in d["rules"] or ()}
        return render("conversation.j2", **self._common(user, period), conversation=dict(found),
                      transcript=transcript, decisions=decided, transitions=moves, drafts=drafted,
                      reviews=reviewed, rules=rules, card=card_link(found, self.team(), self.workspace_url()))


NARROWING = ("rule", "severity", "tag", "gap", "draft", "handled", "article")
"""The query parameters that narrow a drill-down beyond what :meth:`bot.reports.Report.drill` selects."""


def _narrow(built: Built, rows: Sequence[Row], query: Mapping[str, str]) -> tuple[list[Row], list[tuple[str, str]]]:
    """``rows`` narrowed by the query's ``rule`` (a handoff reason), ``severity``, ``tag`` (a review tag),
    ``gap`` (the index of an unanswered question) and ``article``; and those filters, in words."""
    out, said = list(rows), []
    if rule := query.get("rule"):
        out = [r for r in out if rule in r.escalation_reasons]
        said.append(("handoff reason", rule))
    if severity := query.get("severity"):
        out = [r for r in out if (r.severity or "(none)") == severity]
        said.append(("severity", severity))
    if tag := query.get("tag"):
        out = [r for r in out if tag in r.tags]
        said.append(("review tag", tag))
    if (gap := query.get("gap")) is not None:
        found = built.data["knowledge_gaps"]["unanswered"][int(gap)]
        ids = set(found["conversations"])
        out = [r for r in out if r.id in ids]
        said.append(("unanswered question", found["question"]))
    if draft := query.get("draft"):
        out = [r for r in out if draft in r.drafts]
        said.append(("draft", draft))
    if handled := query.get("handled"):
        out = [r for r in out if r.escalated == (handled == "human")]
        said.append(("answered by", "a person" if handled == "human" else "the bot alone"))
    if article := query.get("article"):
        ids = {cid for cid, name, tagged in built.report.article_tags if name == article and (not tag or tagged == tag)}
        out = [r for r in out if r.id in ids]
        said.append(("article", article))
    return out, said


def _as_exception(page: web.Response) -> web.HTTPException:
    error = web.HTTPException(text=page.text, content_type="text/html", headers=_HEADERS)
    error.set_status(page.status, page.reason)
    return error


def _draw(data: dict[str, Any]) -> list[tuple[str, str, Markup]]:
    """The report's charts as inline SVG (vl-convert is CPU work: this runs in a thread)."""
    from bot import charts

    return [(name, title, charts.inline_svg(charts.svg(make(data)), f"chart-{name}"))
            for name, (title, make) in charts.CHARTS.items()]


@dataclass(frozen=True)
class _Links:
    """The drill-down link of any number on a page of ``period``."""

    period: Period

    def __call__(self, kpi: str, **narrow: Any) -> str:
        """``narrow``: ``intent``, ``by`` and ``value`` (:meth:`bot.reports.Report.drill`) and
        :data:`NARROWING`'s."""
        query = {"kpi": kpi, **self.period.query, **{k: str(v) for k, v in narrow.items() if v is not None}}
        return "/dashboard/conversations?" + urlencode(query)

    def page(self, period: Period | None = None) -> str:
        return "/dashboard?" + urlencode((period or self.period).query)

    def conversation(self, conversation_id: str) -> str:
        return f"/dashboard/conversations/{conversation_id}?" + urlencode(self.period.query)


DASHBOARD = web.AppKey("dashboard", Dashboard)
"""The mounted dashboard, in the web app it serves (for tests and for whoever needs its cache)."""


def mount(application: Application, web_app: web.Application) -> Dashboard | None:
    """Add the dashboard to ``web_app`` when "Sign in with Slack" is configured; otherwise log, once, why it
    is off (its pages are then not found: nobody can read them unsigned)."""
    slack = application.platforms.get("slack")
    config = OidcConfig.from_settings(application.settings, slack_configured=slack is not None)
    if isinstance(config, str):
        log.info("dashboard_off", reason=config)
        return None

    def team() -> str | None:
        return config.team or getattr(slack, "team_id", None)

    dashboard = Dashboard(application.store, application.service.policy, SignIn(config, team=team), team=team,
                          workspace_url=lambda: getattr(slack, "workspace_url", None))
    dashboard.routes(web_app)
    web_app[DASHBOARD] = dashboard
    log.info("dashboard_on", path="/dashboard", redirect_uri=config.redirect_uri, team=team())
    return dashboard

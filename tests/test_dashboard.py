"""The dashboard at /dashboard in a real headless Chromium (Debian's, driven by Playwright), served by the real
application's web app on 127.0.0.1, signed in through a local fake of Slack's OpenID Connect endpoints, on a
store (SQLite and PostgreSQL) holding a scripted history."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import structlog
from aiohttp import ClientSession, CookieJar, web
from aiohttp.test_utils import TestServer
from oidc_fake import FakeSlackOidc, SlackUser
from pg import free_port

from bot.app import Application
from bot.engine import Engine
from bot.settings import Settings
from bot.store import Store, autonomy_changes, conversations, decisions, drafts, messages, reviews, transitions
from bot.web import oidc
from bot.web.dashboard import DASHBOARD, card_link

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
HOME, CUSTOMERS = "T0HOME", "T0CUSTOMER"
HOSTILE = "<script>window.pwned = 1</script><img src=x onerror=\"window.pwned = 2\"> how do I export a transcript?"

needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's Chromium (/usr/bin/chromium) is not "
                                    "installed: apt-get install chromium (CI installs it)")


# ---- a scripted history ----


@dataclass
class History:
    """The conversations written, by name, and when the period's first one started."""

    ids: dict[str, str] = field(default_factory=dict)
    base: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0) - timedelta(days=2))


async def seed(store: Store) -> History:
    """Five conversations in the last week and one long before, written through the store's tables:

    - ``answered``: how_to, answered by the bot, resolved by it, CSAT 5 (Acme);
    - ``gap``: how_to, the help center had no answer (hostile text), still open (Acme);
    - ``refund``: billing, handed off (billing.refund, high), a person answered 30 min later, resolved, CSAT 2,
      a Slack card, tagged "unnecessary escalation" in review (Globex);
    - ``lost``: meeting_issue, handed off (data_loss.gone, critical), answered after 90 min, a draft edited,
      a Slack card, its article tagged "outdated article" (Globex);
    - ``cancel``: cancellation, handed off (churn.cancel, high), nobody answered yet (Initech);
    - ``old``: billing, 40 days ago: outside every period the tests look at.
    """
    history = History()
    t = history.base
    async with store.transaction() as conn:
        async def conversation(name: str, *, intent: str, started: datetime, organisation: str, state: str,
                               severity: str | None = None, route: str | None = None, csat: int | None = None,
                               card: str | None = None) -> str:
            cid = str(uuid.uuid4())
            history.ids[name] = cid
            await conn.execute(conversations.insert().values(
                id=cid, platform="slack", workspace=HOME, channel="C0SHARED", thread=cid,
                customer_id=f"U0{name.upper()}", customer_name=f"{name.title()} Customer", organisation=organisation,
                state=state, intent=intent, severity=severity, route=route, details={}, asked=[], csat=csat,
                card_channel="C0CARDS" if card else None, card_ts=card, started_at=started, updated_at=started))
            await conn.execute(transitions.insert().values(conversation_id=cid, from_state=None, to_state="open",
                                                           cause="first customer message", actor="U0", at=started))
            return cid

        async def say(cid: str, role: str, text: str, at: datetime) -> int:
            return int((await conn.execute(messages.insert().values(
                conversation_id=cid, role=role, author_id="baton" if role == "bot" else f"U0{role}",
                author_name=role.title(), text=text, at=at).returning(messages.c.id))).scalar_one())

        async def decide(cid: str, message_id: int, *, intent: str, escalate: bool, severity: str,
                         route: str | None, rules: list[str], at: datetime) -> None:
            await conn.execute(decisions.insert().values(
                conversation_id=cid, message_id=message_id, intent=intent, escalate=escalate, severity=severity,
                route=route, rules=rules, inputs={}, output={}, policy_version="test", at=at))

        async def move(cid: str, before: str, after: str, at: datetime, actor: str = "baton") -> None:
            await conn.execute(transitions.insert().values(conversation_id=cid, from_state=before, to_state=after,
                                                           cause="scripted", actor=actor, at=at))

        # answered by the bot
        c = await conversation("answered", intent="how_to", started=t, organisation="Acme", state="resolved", csat=5)
        m = await say(c, "customer", "How do I share a recording?", t)
        await say(c, "bot", "Open the recording and choose Share.", t + timedelta(seconds=5))
        await decide(c, m, intent="how_to", escalate=False, severity="low", route=None,
                     rules=["knowledge.answered"], at=t)
        await move(c, "open", "resolved", t + timedelta(minutes=10))

        # a knowledge gap, in hostile words
        t2 = t + timedelta(hours=1)
        c = await conversation("gap", intent="how_to", started=t2, organisation="Acme", state="open")
        m = await say(c, "customer", HOSTILE, t2)
        await say(c, "bot", "I could not find that in the help center.", t2 + timedelta(seconds=5))
        await decide(c, m, intent="how_to", escalate=False, severity="low", route=None,
                     rules=["knowledge.no_answer"], at=t2)

        # a billing handoff, answered in 30 minutes
        t3 = t + timedelta(hours=2)
        c = await conversation("refund", intent="billing", started=t3, organisation="Globex", state="resolved",
                               severity="high", route="billing", csat=2, card="1700000000.000100")
        m = await say(c, "customer", "I want a refund for the double charge", t3)
        await decide(c, m, intent="billing", escalate=True, severity="high", route="billing",
                     rules=["billing.refund", "route.billing"], at=t3)
        await move(c, "open", "escalated", t3)
        await move(c, "escalated", "claimed", t3 + timedelta(minutes=20), actor="U0AGENT")
        await say(c, "staff", "Refunded, sorry about that.", t3 + timedelta(minutes=30))
        await move(c, "claimed", "resolved", t3 + timedelta(minutes=40), actor="U0AGENT")
        await conn.execute(reviews.insert().values(conversation_id=c, reason="escalated", intent="billing",
                                                   text="refund", created_at=t3, tag="unnecessary escalation",
                                                   tagged_by="U0LEAD", tagged_at=t3 + timedelta(hours=1)))

        # a data-loss handoff with an edited draft
        t4 = t + timedelta(hours=3)
        c = await conversation("lost", intent="meeting_issue", started=t4, organisation="Globex", state="claimed",
                               severity="critical", route="engineering", card="1700000000.000200")
        m = await say(c, "customer", "Our recording is gone, the file is empty", t4)
        await decide(c, m, intent="meeting_issue", escalate=True, severity="critical", route="engineering",
                     rules=["data_loss.gone", "route.engineering"], at=t4)
        await move(c, "open", "escalated", t4)
        await conn.execute(drafts.insert().values(
            conversation_id=c, intent="meeting_issue", mode="draft", route="engineering", text="We are on it.",
            citations=[], status="edited", created_at=t4, decided_by="U0AGENT", decided_at=t4 + timedelta(minutes=80),
            final_text="We are on it: engineering is restoring the file.", edit_ratio=0.4))
        await say(c, "staff", "We are on it: engineering is restoring the file.", t4 + timedelta(minutes=90))
        await conn.execute(reviews.insert().values(conversation_id=c, reason="answered", intent="meeting_issue",
                                                   text="recording", article="recordings.md", created_at=t4,
                                                   tag="outdated article", tagged_by="U0LEAD", tagged_at=t4))

        # a churn handoff nobody answered yet
        t5 = t + timedelta(hours=4)
        c = await conversation("cancel", intent="cancellation", started=t5, organisation="Initech",
                               state="escalated", severity="high", route="success")
        m = await say(c, "customer", "We want to cancel our subscription", t5)
        await decide(c, m, intent="cancellation", escalate=True, severity="high", route="success",
                     rules=["churn.cancel", "route.success"], at=t5)
        await move(c, "open", "escalated", t5)

        # long before
        t6 = t - timedelta(days=40)
        c = await conversation("old", intent="billing", started=t6, organisation="Globex", state="resolved")
        await say(c, "customer", "An old question", t6)

        await conn.execute(autonomy_changes.insert().values(intent="how_to", mode="auto", previous="draft",
                                                            by="U0LEAD", why="agreement 0.97 over 50", figures={},
                                                            at=t + timedelta(hours=5)))
    return history


# ---- the application, the fake and the browser ----


@dataclass
class Site:
    url: str
    app: Application
    web: web.Application
    fake: FakeSlackOidc
    history: History


def settings_for(fake: FakeSlackOidc, port: int, **extra: Any) -> Settings:
    return Settings(slack_client_id=fake.client_id, slack_client_secret=fake.client_secret,
                    public_url=f"http://127.0.0.1:{port}", slack_team=HOME,
                    slack_oidc_authorize_url=fake.authorize_url, slack_api_url=fake.api_url, **extra)


@pytest.fixture
async def site(store: Store, engine: Engine) -> AsyncIterator[Site]:
    history = await seed(store)
    fake = FakeSlackOidc()
    await fake.start()
    port = free_port()
    async with Application(settings_for(fake, port), engine, store, platforms={}, port=0) as app:
        served = app.web_app()
        server = TestServer(served, host="127.0.0.1", port=port)
        await server.start_server()
        try:
            yield Site(f"http://127.0.0.1:{port}", app, served, fake, history)
        finally:
            await server.close()
            await fake.close()


@dataclass
class Browser:
    page: Any
    context: Any
    problems: list[str]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """A fresh headless Chromium page that records every console error and failed request."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's Chromium (/usr/bin/chromium) is not installed: apt-get install chromium")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        context = await chromium.new_context(viewport={"width": 1360, "height": 900})
        page = await context.new_page()
        problems: list[str] = []
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning")
                else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} {r.failure}"))
        try:
            yield Browser(page, context, problems)
        finally:
            await context.close()
            await chromium.close()


async def sign_in(site: Site, browser: Browser, path: str = "/dashboard") -> None:
    """Open ``path`` with no session, get sent to sign-in, and sign in with Slack (the fake's current user)."""
    page = browser.page
    await page.goto(site.url + path)
    assert page.url.startswith(site.url + "/dashboard/signin?")
    await page.get_by_role("link", name="Sign in with Slack").click()
    await page.wait_for_load_state()


# ---- in the browser ----


@needs_chromium
async def test_a_member_signs_in_reads_the_kpis_and_charts_and_drills_down(site: Site, browser: Browser,
                                                                          tmp_path: Path) -> None:
    page = browser.page
    await sign_in(site, browser)
    assert page.url.startswith(site.url + "/dashboard?") or page.url == site.url + "/dashboard"

    # Slack was asked the OpenID way, and the code was exchanged for this site's redirect URI
    asked = site.fake.authorizations[-1]
    assert asked["scope"] == "openid profile email" and asked["response_type"] == "code"
    assert asked["redirect_uri"] == site.url + "/dashboard/signin/callback"
    assert asked["state"] and asked["nonce"] and asked["team"] == HOME
    assert site.fake.exchanges[-1]["redirect_uri"] == asked["redirect_uri"]

    # the session cookie: HttpOnly, SameSite=Lax, for the dashboard only
    cookies = {c["name"]: c for c in await browser.context.cookies()}
    session = cookies[oidc.SESSION_COOKIE]
    assert session["httpOnly"] and session["sameSite"] == "Lax" and session["path"] == "/dashboard"
    assert session["expires"] > datetime.now(UTC).timestamp() + 3600
    assert oidc.SIGNIN_COOKIE not in cookies

    # the headline KPIs: 5 conversations in the week (not the one 40 days ago); 3 handoffs, 2 answered
    kpi = page.locator('[data-kpi="conversations"] .value')
    assert (await kpi.inner_text()).strip() == "5"
    assert (await page.locator('[data-kpi="csat_responses"] .value').inner_text()).strip() == "2"
    assert "Lee Lead" in await page.locator("header").inner_text()

    # the four charts are inline SVG with marks in them
    figures = page.locator("figure[data-chart]")
    assert await figures.count() == 4
    for index in range(4):
        figure = figures.nth(index)
        name = await figure.get_attribute("data-chart")
        marks = await figure.locator("svg [class*='mark-'] path, svg [class*='mark-'] line, "
                                     "svg [class*='mark-'] text").count()
        assert marks > 0, f"chart {name} has no marks"
        box = await figure.locator("svg").first.bounding_box()
        assert box is not None and box["width"] > 200 and box["height"] > 100, name

    # the lower tables are there, customer words escaped
    assert await page.locator("#intents tr[data-intent]").count() == 4
    gaps = page.locator("#knowledge-gaps")
    assert "<script>window.pwned = 1</script>" in await gaps.inner_text()
    assert await page.evaluate("window.pwned") is None
    assert "unnecessary escalation" in await page.locator("#review-tags").inner_text()

    await page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
    await page.locator("#charts").screenshot(path=str(tmp_path / "charts.png"))

    # a number opens its conversations: billing's conversations, then the headline's handoff reasons
    await page.locator('#intents tr[data-intent="billing"] td').first.locator("a").click()
    await page.wait_for_load_state()
    assert "/dashboard/conversations?" in page.url and "intent=billing" in page.url
    listed = await page.locator("#drill tr[data-conversation]").evaluate_all(
        "rows => rows.map(r => r.dataset.conversation)")
    assert listed == [site.history.ids["refund"]]
    link = page.locator("#drill a", has_text="open in Slack")
    assert await link.get_attribute("href") == "https://slack.com/app_redirect?channel=C0CARDS&team=T0HOME"

    await page.go_back()
    await page.locator('[data-kpi="conversations"] .value').click()
    await page.wait_for_load_state()
    listed = await page.locator("#drill tr[data-conversation]").evaluate_all(
        "rows => rows.map(r => r.dataset.conversation)")
    assert sorted(listed) == sorted(v for k, v in site.history.ids.items() if k != "old")

    await page.go_back()
    await page.locator("#handoff-reasons tr", has_text="churn.cancel").locator("a").click()
    await page.wait_for_load_state()
    listed = await page.locator("#drill tr[data-conversation]").evaluate_all(
        "rows => rows.map(r => r.dataset.conversation)")
    assert listed == [site.history.ids["cancel"]]

    # one conversation: the transcript (escaped), the decision's rules in words, transitions
    await page.go_back()
    await page.locator("#knowledge-gaps a").first.click()
    await page.wait_for_load_state()
    await page.locator("#drill a code").first.click()
    await page.wait_for_load_state()
    assert site.history.ids["gap"] in page.url
    body = await page.locator("main").inner_text()
    assert HOSTILE in body and "knowledge.no_answer" in body and "first customer message" in body
    assert await page.evaluate("window.pwned") is None

    assert browser.problems == []


@needs_chromium
async def test_a_slack_connect_customer_is_refused_and_sees_no_data(site: Site, browser: Browser) -> None:
    site.fake.user = SlackUser("U0CUST", CUSTOMERS, "Cara Customer", "cara@customer.example")
    response_status: list[int] = []
    browser.page.on("response", lambda r: response_status.append(r.status)
                    if r.url.startswith(site.url + "/dashboard/signin/callback") else None)
    await sign_in(site, browser)
    page = browser.page
    assert response_status == [403]
    text = await page.locator("body").inner_text()
    assert "members of the workspace that runs Baton" in text
    for name, cid in site.history.ids.items():
        assert cid not in await page.content(), name
    assert "refund" not in text.lower() and "Conversations" not in text
    assert oidc.SESSION_COOKIE not in {c["name"] for c in await browser.context.cookies()}

    await page.goto(site.url + "/dashboard")  # still no way in
    assert page.url.startswith(site.url + "/dashboard/signin?")
    assert [p for p in browser.problems if "403" not in p] == []


@needs_chromium
async def test_no_session_or_a_changed_cookie_leads_to_sign_in(site: Site, browser: Browser) -> None:
    page = browser.page
    cid = site.history.ids["refund"]
    for path in ("/dashboard", "/dashboard/conversations?kpi=conversations", f"/dashboard/conversations/{cid}"):
        await page.goto(site.url + path)
        assert page.url.startswith(site.url + "/dashboard/signin?"), path
        assert "double charge" not in await page.content() and await page.locator("table").count() == 0

    await sign_in(site, browser, f"/dashboard/conversations/{cid}")
    assert page.url.startswith(f"{site.url}/dashboard/conversations/{cid}")  # back where it was going

    session = next(c for c in await browser.context.cookies() if c["name"] == oidc.SESSION_COOKIE)
    body, mac = session["value"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    forged = base64.urlsafe_b64encode(json.dumps({**claims, "sub": "U0SOMEONE"}).encode()).rstrip(b"=").decode()
    await browser.context.add_cookies([{**session, "value": f"{forged}.{mac}"}])
    await page.goto(f"{site.url}/dashboard/conversations/{cid}")
    assert page.url.startswith(site.url + "/dashboard/signin?")
    assert "double charge" not in await page.content()
    assert oidc.SESSION_COOKIE not in {c["name"] for c in await browser.context.cookies()}  # dropped
    assert browser.problems == []


# ---- over plain HTTP ----


async def signed_in(site: Site, http: ClientSession) -> None:
    """Sign ``http`` in as the fake's user, following the redirects as a browser would."""
    async with http.get(site.url + "/dashboard/signin/slack?next=/dashboard") as response:
        assert response.status == 200, await response.text()


async def test_the_state_must_match_and_a_changed_code_is_refused(site: Site) -> None:
    async with ClientSession(cookie_jar=CookieJar(unsafe=True)) as http:
        async with http.get(site.url + "/dashboard/signin/slack", allow_redirects=False) as response:
            assert response.status == 302
            authorize = response.headers["Location"]
        async with http.get(authorize, allow_redirects=False) as response:
            callback = response.headers["Location"]
        forged = callback.replace("state=", "state=x")
        async with http.get(forged, allow_redirects=False) as response:
            assert response.status == 400
            assert oidc.SESSION_COOKIE not in response.cookies or not response.cookies[oidc.SESSION_COOKIE].value
        assert site.fake.exchanges == []  # nothing was exchanged for a forged state

    # the right callback, in a browser that did not start the sign-in
    async with ClientSession(cookie_jar=CookieJar(unsafe=True)) as other:
        async with other.get(callback, allow_redirects=False) as response:
            assert response.status == 400


async def test_pages_of_a_signed_in_member(site: Site) -> None:
    async with ClientSession(cookie_jar=CookieJar(unsafe=True)) as http:
        await signed_in(site, http)
        async with http.get(site.url + "/dashboard") as response:
            assert response.status == 200
            assert "default-src 'none'" in response.headers["Content-Security-Policy"]
            assert response.headers["Cache-Control"] == "no-store"
            page = await response.text()
        assert "&lt;script&gt;window.pwned" in page and "<script>" not in page
        assert "http://" not in page.replace("http://www.w3.org", "")  # nothing external is loaded

        async with http.get(site.url + "/dashboard?since=2026-12-10&until=2026-12-01") as response:
            assert response.status == 400
            assert "must end after it starts" in await response.text()
        async with http.get(site.url + "/dashboard?since=yesterday") as response:
            assert response.status == 400
        async with http.get(site.url + "/dashboard/conversations?kpi=<b>nope</b>") as response:
            assert response.status == 400
            assert "<b>nope</b>" not in await response.text()
        async with http.get(site.url + f"/dashboard/conversations/{uuid.uuid4()}") as response:
            assert response.status == 404
        async with http.get(site.url + "/dashboard/conversations/../../etc") as response:
            assert response.status == 404

        # the old conversation is in a period of its own
        old = site.history.base - timedelta(days=40)  # its day in the business-hours zone, as the page counts days
        day = old.astimezone(ZoneInfo(site.app.service.policy.business_hours.timezone)).date()
        since, until = day.isoformat(), (day + timedelta(days=1)).isoformat()
        async with http.get(site.url + f"/dashboard/conversations?kpi=conversations&since={since}&until={until}") \
                as response:
            assert site.history.ids["old"] in await response.text()

        async with http.post(site.url + "/dashboard/signout", allow_redirects=False) as response:
            assert response.status == 303
        async with http.get(site.url + "/dashboard", allow_redirects=False) as response:
            assert response.status == 302 and response.headers["Location"].startswith("/dashboard/signin")


async def test_a_page_and_its_drill_down_agree_for_a_minute(site: Site, store: Store) -> None:
    async with ClientSession(cookie_jar=CookieJar(unsafe=True)) as http:
        await signed_in(site, http)
        async with http.get(site.url + "/dashboard") as response:
            assert response.status == 200
        late = await seed(store)  # five more conversations arrive while the lead reads
        async with http.get(site.url + "/dashboard/conversations?kpi=conversations") as response:
            page = await response.text()
        assert site.history.ids["refund"] in page and late.ids["refund"] not in page

        site.web[DASHBOARD].cache_seconds = 0  # a minute later: built again, with the late conversations
        async with http.get(site.url + "/dashboard/conversations?kpi=conversations") as response:
            assert late.ids["refund"] in await response.text()


async def test_off_without_sign_in_configured(store: Store, engine: Engine) -> None:
    with structlog.testing.capture_logs() as logs:
        async with Application(Settings(slack_client_id="1.2"), engine, store, platforms={}, port=0) as app:
            server = TestServer(app.web_app(), host="127.0.0.1")
            await server.start_server()
            try:
                async with ClientSession(cookie_jar=CookieJar(unsafe=True)) as http:
                    for path in ("/dashboard", "/dashboard/signin", "/dashboard/signin/slack"):
                        async with http.get(server.make_url(path), allow_redirects=False) as response:
                            assert response.status == 404, path
            finally:
                await server.close()
    off = [e for e in logs if e["event"] == "dashboard_off"]
    assert len(off) == 1
    assert "SLACK_CLIENT_SECRET" in off[0]["reason"] and "BATON_PUBLIC_URL" in off[0]["reason"]
    assert "SLACK_CLIENT_ID" not in off[0]["reason"]


# ---- the signed values ----


def test_signed_values_refuse_changes_expiry_and_other_purposes() -> None:
    key = b"k" * 32
    value = oidc.sign(key, "session", {"sub": "U1", "exp": 2_000_000_000})
    assert oidc.unsign(key, "session", value, now=1_000) == {"sub": "U1", "exp": 2_000_000_000}
    assert oidc.unsign(key, "session", value, now=2_000_000_001) is None
    assert oidc.unsign(key, "signin", value, now=1_000) is None
    assert oidc.unsign(b"x" * 32, "session", value, now=1_000) is None
    body, mac = value.split(".")
    assert oidc.unsign(key, "session", f"{body}x.{mac}", now=1_000) is None
    assert oidc.unsign(key, "session", f"{body}.{mac[:-2]}", now=1_000) is None
    for junk in ("", ".", "a.b.c", "%%%.%%%", None):
        assert oidc.unsign(key, "session", junk, now=1_000) is None


def test_only_dashboard_paths_are_followed_after_sign_in() -> None:
    assert oidc.local_path("/dashboard/conversations?kpi=x") == "/dashboard/conversations?kpi=x"
    for elsewhere in ("https://evil.example/", "//evil.example/dashboard", "/\\evil.example", None, "/healthz",
                      "/dashboard\r\nLocation: https://evil.example/"):
        assert oidc.local_path(elsewhere) == "/dashboard"


def test_the_configuration_never_prints_its_secrets() -> None:
    config = oidc.OidcConfig.from_settings(Settings(slack_client_id="1.2", slack_client_secret="s3cret-value",
                                                    public_url="https://baton.example.com/", slack_team=HOME))
    assert isinstance(config, oidc.OidcConfig)
    assert "s3cret" not in repr(config) and config.redirect_uri == "https://baton.example.com/dashboard/signin/callback"
    assert config.secure and config.session_key != b"s3cret-value"


def test_a_card_link_opens_the_card_itself_when_the_workspace_is_known() -> None:
    row = {"card_channel": "C0CARDS", "card_ts": "1733400000.123456"}
    assert card_link(row, "T0HOME", "https://notewise.slack.com/") == \
        "https://notewise.slack.com/archives/C0CARDS/p1733400000123456"  # Slack's permalink form
    assert card_link(row, "T0HOME") == "https://slack.com/app_redirect?channel=C0CARDS&team=T0HOME"
    assert card_link({"card_channel": None, "card_ts": None}, "T0HOME", "https://notewise.slack.com/") is None

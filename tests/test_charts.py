"""The charts and the HTML report (bot/charts.py), from hand-written report JSON in ``Report.to_json()``'s schema.

Charts are rendered for real by vl-convert and read back: SVG parsed as XML (marks counted, labels and their
order checked), PNG by its header. The HTML report is parsed and audited for anything that would load from
elsewhere or run, and for escaping of what customers typed.
"""

from __future__ import annotations

import asyncio
import re
import struct
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

import altair as alt
import pytest
from aiohttp import web

from bot import charts, reports
from bot.policy import Policy
from bot.store import Store

SVG = "{http://www.w3.org/2000/svg}"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def kpis(conversations: int, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "conversations": conversations, "bot_resolution_rate": 0.5, "first_contact_resolution": 0.75,
        "repeat_contact_rate": 0.125, "escalation_accuracy": 0.9, "missed_escalations": 1,
        "time_to_human_p50_minutes": 12.0, "time_to_human_p90_minutes": 95.5, "sla_breaches": 2,
        "draft_edit_rate": 0.25, "drafts_rejected_rate": None, "csat_average": 4.25, "csat_responses": 4,
    }
    values.update(overrides)
    return values


def sample() -> dict[str, Any]:
    """A week with two intents, three severities, a question that tries to run a script."""
    return {
        "period": {"since": "2026-11-01T00:00:00+00:00", "until": "2026-11-08T00:00:00+00:00"},
        "generated_at": "2026-11-08T09:00:00+00:00",
        "kpis": {**kpis(8), "by_intent": {"billing": kpis(3, csat_average=3.0, bot_resolution_rate=0.0),
                                          "meeting_issue": kpis(5, bot_resolution_rate=0.8)}},
        "breakdowns": {"platform": {"slack": kpis(6), "discord": kpis(2)}, "route": {"support": kpis(8)},
                       "organisation": {"Acme <b>Corp</b>": kpis(8)}},
        "time_to_human": {
            "by_severity": {
                "high": {"count": 3, "p50_minutes": 5.0, "p90_minutes": 30.0, "p50_business_minutes": 4.0,
                         "p90_business_minutes": 20.0},
                "critical": {"count": 1, "p50_minutes": 2.0, "p90_minutes": 2.0, "p50_business_minutes": None,
                             "p90_business_minutes": None},
                "low": {"count": 2, "p50_minutes": 300.0, "p90_minutes": 900.0, "p50_business_minutes": 120.0,
                        "p90_business_minutes": 400.0},
            },
            "p50_business_minutes": 10.0, "p90_business_minutes": 200.0,
        },
        "handoff_reasons": [{"rule": "risk.billing_dispute", "words": "A billing dispute", "count": 2},
                            {"rule": "ask.human", "words": "Asked for a person", "count": 3}],
        "drafts": {"by_intent": {
            "billing": {"decided": 4, "edited": 1, "rejected": 1, "edit_rate": 0.25, "rejected_rate": 0.25,
                        "mean_edit_ratio": 0.1},
            "meeting_issue": {"decided": 10, "edited": 5, "rejected": 0, "edit_rate": 0.5, "rejected_rate": 0.0,
                              "mean_edit_ratio": 0.3},
            "how_to": {"decided": 0, "edited": 0, "rejected": 0, "edit_rate": None, "rejected_rate": None,
                       "mean_edit_ratio": None},
        }},
        "autonomy": {
            "current": {"billing": "draft", "meeting_issue": "auto", "how_to": "shadow", "security": "draft"},
            "changes": [{"intent": "meeting_issue", "mode": "auto", "previous": "draft", "by": "U123 <lead>",
                         "why": "agreement 0.95 over 40 drafts", "at": "2026-11-03T10:00:00+00:00"}],
        },
        "csat": {"by_intent": {"billing": {"average": 3.0, "responses": 1},
                               "meeting_issue": {"average": 4.667, "responses": 3},
                               "how_to": {"average": None, "responses": 0}},
                 "bot": {"average": 4.5, "responses": 2}, "human": {"average": 4.0, "responses": 2}},
        "knowledge_gaps": {
            "unanswered": [{"question": "<script>alert(1)</script> how do I export?", "count": 3,
                            "conversations": ["c1", "c2", "c3"]}],
            "articles": [{"article": "https://help.example.com/recordings", "tag": "outdated", "count": 2}],
        },
        "review_tags": {"correct": 5, "should_have_escalated": 1},
        "daily": [{"date": f"2026-11-0{d}", "conversations": d, "bot_resolved": d // 2, "escalated": 1,
                   "resolved": d - 1} for d in range(1, 8)],
    }


def empty() -> dict[str, Any]:
    """A period with no conversations at all, as the report gives it."""
    nothing = dict.fromkeys(reports.KPI_KEYS)
    nothing.update(conversations=0, missed_escalations=0, sla_breaches=0, csat_responses=0)
    return {
        "period": {"since": "2026-11-01T00:00:00+00:00", "until": "2026-11-08T00:00:00+00:00"},
        "generated_at": "2026-11-08T09:00:00+00:00",
        "kpis": {**nothing, "by_intent": {}},
        "breakdowns": {"platform": {}, "route": {}, "organisation": {}},
        "time_to_human": {"by_severity": {}, "p50_business_minutes": None, "p90_business_minutes": None},
        "handoff_reasons": [], "drafts": {"by_intent": {}}, "autonomy": {"current": {}, "changes": []},
        "csat": {"by_intent": {}, "bot": {"average": None, "responses": 0},
                 "human": {"average": None, "responses": 0}},
        "knowledge_gaps": {"unanswered": [], "articles": []}, "review_tags": {}, "daily": [],
    }


def large(intents: int = 30, days: int = 90) -> dict[str, Any]:
    """A quarter with many intents, for timing the whole page."""
    report = sample()
    names = [f"intent_{i:02d}" for i in range(intents)]
    report["kpis"]["by_intent"] = {n: kpis(i + 1) for i, n in enumerate(names)}
    report["drafts"]["by_intent"] = {n: {"decided": 10, "edited": i % 10, "rejected": i % 3, "edit_rate": i % 10 / 10,
                                         "rejected_rate": i % 3 / 10, "mean_edit_ratio": 0.2}
                                     for i, n in enumerate(names)}
    report["autonomy"]["current"] = {n: charts.MODES[i % 3] for i, n in enumerate(names)}
    report["csat"]["by_intent"] = {n: {"average": 1 + i % 5, "responses": i} for i, n in enumerate(names)}
    report["breakdowns"]["organisation"] = {f"Org {i}": kpis(i) for i in range(50)}
    report["daily"] = [{"date": f"2026-{1 + d // 28:02d}-{1 + d % 28:02d}", "conversations": 40 + d % 7,
                        "bot_resolved": 20, "escalated": 5 + d % 3, "resolved": 30} for d in range(days)]
    report["knowledge_gaps"]["unanswered"] = [{"question": f"How do I do thing {i}?", "count": 50 - i,
                                               "conversations": ["c"] * (50 - i)} for i in range(40)]
    return report


# ---------------------------------------------------------------- reading SVG


def parse(document: str) -> ET.Element:
    return ET.fromstring(document)


def marks(root: ET.Element, kind: str) -> list[ET.Element]:
    """The drawn items of every ``kind`` mark (rect, line, symbol, text) that carries data."""
    return [item for group in root.iter(f"{SVG}g")
            if f"mark-{kind} role-mark" in group.get("class", "") for item in group]


def axis_labels(root: ET.Element) -> list[str]:
    return [t.text or "" for group in root.iter(f"{SVG}g") if "role-axis-label" in group.get("class", "")
            for t in group.iter(f"{SVG}text")]


def top(item: ET.Element) -> float:
    """The vertical position a bar starts at: Vega writes its path as ``M x,y ...``."""
    match = re.match(r"M[-\d.]+,([-\d.]+)", item.get("d", ""))
    assert match, item.attrib
    return float(match.group(1))


def texts(root: ET.Element) -> str:
    return " ".join(t.text or "" for t in root.iter(f"{SVG}text"))


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


# ---------------------------------------------------------------- the charts


def test_charts_are_named_in_display_order() -> None:
    assert list(charts.CHARTS) == ["volume", "time_to_human", "autonomy", "csat"]
    assert all(title for title, _ in charts.CHARTS.values())


def test_volume_draws_a_bar_per_day_and_a_line_per_series() -> None:
    root = parse(charts.svg(charts.volume(sample())))
    bars = marks(root, "rect")
    assert len(bars) == 7
    assert [b.get("aria-label", "").split("Conversations: ")[-1] for b in bars] == [str(d) for d in range(1, 8)]
    assert len(marks(root, "line")) == 2  # resolved by the bot, escalated
    assert len(marks(root, "symbol")) == 14  # a point per day on each line
    dashed = [item.get("stroke-dasharray") for item in marks(root, "line")]
    assert sorted(dashed, key=str) == ["1,0", "6,3"]  # solid and dashed: told apart without colour
    assert {"Day", "Conversations per day", "All conversations", "Resolved by the bot", "Escalated"} <= {
        t.text for t in root.iter(f"{SVG}text")}


def test_time_to_human_draws_each_known_percentile_by_severity_in_order() -> None:
    root = parse(charts.svg(charts.time_to_human(sample())))
    bars = marks(root, "rect")
    assert len(bars) == 2 + 4 + 4  # critical has no business-hours figures yet
    labels = axis_labels(root)
    assert [label for label in labels if "(n=" in label] == ["critical (n=1)", "high (n=3)", "low (n=2)"]
    # Most severe at the top.
    first = {s: min(top(b) for b in bars if f"Severity: {s} " in b.get("aria-label", "")) for s in
             ("critical", "high", "low")}
    assert first["critical"] < first["high"] < first["low"]
    assert "Time to a human (hours)" in texts(root)  # 900 minutes is drawn in hours
    assert "15 h 00 min" in texts(root)  # and each bar says its value


def test_autonomy_draws_edit_and_rejected_rates_and_every_intents_mode() -> None:
    root = parse(charts.svg(charts.autonomy(sample())))
    bars = marks(root, "rect")
    assert len(bars) == 4  # billing and meeting_issue, two rates each; how_to has no decided drafts
    labels = [label for label in axis_labels(root) if "·" in label]
    assert labels == ["meeting_issue · auto · 10 drafts", "billing · draft · 4 drafts", "how_to · shadow · 0 drafts",
                      "security · draft · 0 drafts"]  # highest edit rate first; every mode shown
    assert "Share of the intent's drafts" in texts(root)


def test_csat_draws_one_bar_per_answered_intent_best_first() -> None:
    root = parse(charts.svg(charts.csat(sample())))
    bars = marks(root, "rect")
    assert len(bars) == 2  # how_to has no responses
    assert [label for label in axis_labels(root) if "(n=" in label] == ["meeting_issue (n=3)", "billing (n=1)"]
    assert top(bars[0]) != top(bars[1])
    by_label = {b.get("aria-label", "").split("intent: ")[1].split(";")[0]: top(b) for b in bars}
    assert by_label["meeting_issue (n=3)"] < by_label["billing (n=1)"]
    assert "4.7" in texts(root).split()


@pytest.mark.parametrize("name", list(charts.CHARTS))
def test_every_chart_renders_to_png(name: str) -> None:
    chart = charts.CHARTS[name][1](sample())
    root = parse(charts.svg(chart))
    width, height = float(root.get("width", 0)), float(root.get("height", 0))
    image = charts.png(chart)
    assert png_size(image) == (round(width * 2), round(height * 2))
    assert len(image) > 5_000
    assert png_size(charts.png(chart, scale=1)) == (round(width), round(height))


@pytest.mark.parametrize("name", list(charts.CHARTS))
def test_every_chart_says_so_when_there_is_no_data(name: str) -> None:
    chart = charts.CHARTS[name][1](empty())
    root = parse(charts.svg(chart))
    assert not marks(root, "rect")
    assert re.search(r"\bNo \w+", texts(root))
    assert png_size(charts.png(chart))[0] > 0


@pytest.mark.parametrize("report", [sample, empty, large])
def test_every_chart_is_valid_vega_lite(report: Any) -> None:
    """svg() and png() skip Altair's schema validation for speed; it is done here instead."""
    for _, build in charts.CHARTS.values():
        build(report()).to_dict(validate=True)


def shape(value: Any, depth: int = 0) -> Any:
    """The keys of a report, down to the fixed ones (maps keyed by data, like intents, are not compared)."""
    if isinstance(value, dict) and depth < 2:
        return {k: type(v).__name__ if k in {"by_intent", "by_severity", "review_tags", "current"}
                else shape(v, depth + 1) for k, v in value.items()}
    return type(value).__name__ if depth < 2 else None


async def test_a_real_report_of_an_empty_period_renders(store: Store, policy: Policy) -> None:
    """The real report's JSON (bot/reports.py), from an empty store: same shape as the hand-written ones."""
    built = await reports.build(store, policy, datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 9, tzinfo=UTC),
                                now=datetime(2026, 11, 20, tzinfo=UTC))
    data = built.to_json()
    assert shape(data) == shape(sample())
    assert set(data["kpis"]) == set(sample()["kpis"])
    assert len(data["daily"]) >= 7 and not any(d["conversations"] for d in data["daily"])
    root = parse(charts.svg(charts.volume(data)))
    assert "No conversations in this period" in texts(root) and not marks(root, "rect")
    page = read(charts.render_html(data))
    assert dict(page.headline)["Conversations"] == "0"
    assert [tag for tag, _ in page.tags].count("svg") == 4


def test_charts_survive_a_report_with_missing_sections() -> None:
    for _, build in charts.CHARTS.values():
        assert re.search(r"\bNo \w+", texts(parse(charts.svg(build({})))))
    assert [tag for tag, _ in read(charts.render_html({})).tags].count("svg") == 4


def test_a_name_with_markup_is_text_in_the_chart() -> None:
    report = sample()
    report["csat"]["by_intent"]["<img src=x onerror=alert(1)>"] = {"average": 2.0, "responses": 1}
    root = parse(charts.svg(charts.csat(report)))  # would not parse if the markup went in raw
    assert "<img src=x onerror=alert(1)> (n=1)" in axis_labels(root)
    assert not list(root.iter(f"{SVG}img")) and not list(root.iter("img"))


async def test_rendering_fetches_nothing() -> None:
    """vl-convert is allowed no URL: a chart pointing at a live local server fails and the server sees nothing."""
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.json_response([{"a": 1}])

    app = web.Application()
    app.router.add_get("/data.json", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        chart = alt.Chart(alt.UrlData(f"http://127.0.0.1:{port}/data.json")).mark_bar().encode(x="a:Q")
        with pytest.raises(ValueError, match="not allowed"):
            await asyncio.to_thread(charts.svg, chart)
        with pytest.raises(ValueError, match="not allowed"):
            await asyncio.to_thread(charts.png, chart)
    finally:
        await runner.cleanup()
    assert seen == []


def test_inlined_charts_keep_their_own_clip_paths() -> None:
    """Vega numbers clip paths from 1 in every chart; two inline charts must not clip with each other's."""
    chart = alt.Chart(alt.Data(values=[{"a": 1, "b": 2}, {"a": 5, "b": 9}])).mark_bar(clip=True).encode(
        x=alt.X("a:Q", scale=alt.Scale(domain=[0, 3])), y="b:Q")
    document = charts.svg(chart)
    assert 'id="clip1"' in document
    page = str(charts.inline_svg(document, "one")) + str(charts.inline_svg(document, "two"))
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert sorted(ids) == ["one-clip1", "two-clip1"]
    assert set(re.findall(r"url\(#([^)]+)\)", page)) == set(ids)
    assert "xmlns" not in page


# ---------------------------------------------------------------- formatting


def test_values_are_formatted_for_people() -> None:
    assert charts.fmt("bot_resolution_rate", 0.5) == "50.0%"
    assert charts.fmt("first_contact_resolution", 1.0) == "100.0%"
    assert charts.fmt("escalation_accuracy", None) == "n/a"
    assert charts.fmt("time_to_human_p50_minutes", 12.0) == "12 min"
    assert charts.fmt("time_to_human_p90_minutes", 95.5) == "1 h 36 min"
    assert charts.fmt("time_to_human_p90_minutes", 3 * 24 * 60 + 125) == "3 d 2 h"
    assert charts.fmt("time_to_human_p50_minutes", 0.5) == "30 s"
    assert charts.fmt("csat_average", 4.25) == "4.25 / 5"
    assert charts.fmt("conversations", 12345) == "12,345"
    assert charts.fmt("some_new_rate", 0.125) == "12.5%"
    assert reports.when("2026-11-03T10:00:00+00:00") == "2026-11-03 10:00 UTC"
    assert reports.when("2026-11-03T10:00:00+01:00") == "2026-11-03 10:00 UTC+0100"
    assert reports.when("2026-11-03") == "2026-11-03"
    assert reports.when(None) == "n/a"


# ---------------------------------------------------------------- the HTML report


class Page(HTMLParser):
    """Every tag with its attributes, the text, the CSS, and the headline's label/value pairs."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.css: list[str] = []
        self.headline: list[tuple[str, str]] = []
        self._stack: list[str] = []
        self._dt = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in {"meta", "br", "path", "rect", "line"}:
            self._stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        while self._stack and self._stack.pop() != tag:
            pass

    def handle_data(self, data: str) -> None:
        where = self._stack[-1] if self._stack else ""
        if where == "style":
            self.css.append(data)
            return
        self.text.append(data)
        if where == "dt":
            self._dt = data.strip()
        elif where == "dd" and self._dt:
            self.headline.append((self._dt, data.strip()))
            self._dt = ""


def read(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    return page


def test_the_report_is_one_self_contained_page() -> None:
    html = charts.render_html(sample())
    page = read(html)
    names = [tag for tag, _ in page.tags]
    assert names.count("svg") == 4
    for forbidden in ("script", "link", "img", "iframe", "object", "embed", "base", "image", "use", "a"):
        assert forbidden not in names
    for tag, attrs in page.tags:
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            if name in {"src", "href", "xlink:href", "srcset", "action", "data"}:
                assert (value or "").startswith("#"), (tag, name, value)
            assert "http" not in (value or "").lower(), (tag, name, value)
    css = "".join(page.css)
    assert "@import" not in css and "http" not in css
    assert all(ref.startswith("#") for ref in re.findall(r"url\(\s*['\"]?([^)'\"]*)", html))
    # "http" appears only as data a person reads: the article's address, as text.
    assert html.count("http") == 1 and "https://help.example.com/recordings" in "".join(page.text)


def test_the_report_shows_every_kpi_with_its_value() -> None:
    report = sample()
    page = read(charts.render_html(report))
    headline = dict(page.headline)
    keys = [k for k in report["kpis"] if k != "by_intent"]
    assert len(headline) == len(keys) == 13
    for key in keys:
        assert headline[charts.kpi_label(key)] == charts.fmt(key, report["kpis"][key])
    assert headline["Bot resolution rate"] == "50.0%"
    assert headline["Drafts rejected"] == "n/a"
    assert headline["Time to a human, p90"] == "1 h 36 min"
    assert headline["CSAT average"] == "4.25 / 5"
    text = " ".join(" ".join(page.text).split())
    assert "2026-11-01 00:00 UTC" in text and "2026-11-08 00:00 UTC" in text
    for expected in ("meeting_issue", "discord", "Acme <b>Corp</b>", "Asked for a person", "risk.billing_dispute",
                     "should_have_escalated", "agreement 0.95 over 40 drafts", "U123 <lead>", "outdated",
                     "p50 10 min, p90 3 h 20 min", "4.50 / 5 (2 responses)", "6 h 40 min", "0.0%"):
        assert expected in text, expected


def test_a_kpi_the_report_adds_later_is_shown_too() -> None:
    report = sample()
    report["kpis"]["reopened_rate"] = 0.1
    headline = dict(read(charts.render_html(report)).headline)
    assert headline["Reopened rate"] == "10.0%"


def test_what_customers_typed_is_escaped() -> None:
    html = charts.render_html(sample())
    page = read(html)
    assert "&lt;script&gt;alert(1)&lt;/script&gt; how do I export?" in html
    assert "<script>" not in html
    assert "Acme &lt;b&gt;Corp&lt;/b&gt;" in html
    assert "b" not in {tag for tag, _ in page.tags}
    assert "<script>alert(1)</script> how do I export?" in "".join(page.text)


def test_an_empty_period_renders() -> None:
    html = charts.render_html(empty())
    page = read(html)
    assert [tag for tag, _ in page.tags].count("svg") == 4
    headline = dict(page.headline)
    assert headline["Conversations"] == "0"
    assert headline["Bot resolution rate"] == "n/a"
    text = " ".join(page.text)
    for note in ("No conversations in this period", "No handoffs in this period", "No CSAT responses in this period"):
        assert note in text


def test_the_report_is_printable() -> None:
    css = "".join(read(charts.render_html(sample())).css)
    media = css[css.index("@media print"):]
    assert re.search(r"figure[^{]*\{[^}]*break-inside:\s*avoid", media)
    assert "thead { display: table-header-group; }" in media
    assert "background: none" in media  # table shading gives way to black rules on paper


def test_render_html_on_a_quarter_of_thirty_intents() -> None:
    report = large()
    charts.render_html(empty())  # vl-convert's first call starts its engine; not what is measured
    started = time.perf_counter()
    html = charts.render_html(report)
    elapsed = time.perf_counter() - started
    page = read(html)
    assert len(dict(page.headline)) == 13
    autonomy = parse(charts.svg(charts.autonomy(report)))
    assert len([label for label in axis_labels(autonomy) if "·" in label]) == 30
    print(f"\nrender_html, 30 intents, 90 days, 50 organisations: {elapsed:.2f} s, {len(html) / 1024:.0f} KiB")

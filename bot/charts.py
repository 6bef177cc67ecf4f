"""Charts for a support lead, drawn on the server, and the self-contained HTML report.

The charts are built with Altair (Vega-Lite) from a report's JSON (``Report.to_json()`` in
``bot/reports.py``) and rendered by vl-convert, which runs Vega in-process: no browser, no Node. The data
is always inline and vl-convert is told to allow no external URL at all, so rendering never touches the
network, and an SVG or PNG can go anywhere (the HTML report, the dashboard, the weekly digest's image).

Readable in print and in greyscale: bars sorted, axes labelled, a few colours of clearly different
lightness with a dark outline, dashed lines where colour alone would tell series apart. A period with no
data draws an honest "no data" panel instead of failing.

:func:`render_html` is ``python -m bot report --format html``: one file with inline CSS and inline SVG, no
script and no external resource, escaped throughout (questions and organisation names come from customers).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import altair as alt
import vl_convert
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from bot.reports import KPIS, minutes, show, when

Builder = Callable[[dict[str, Any]], "alt.Chart | alt.LayerChart"]

WIDTH = 560
INK = "#222222"
BLUES = ("#0b2e4f", "#3a6ea5", "#8fb3d9", "#dbe7f3")
"""Dark to light: one hue, so series differ by lightness and survive a black-and-white printer."""
ACCENT = "#c15a00"
SEVERITIES = ("critical", "high", "medium", "low")
MODES = ("shadow", "draft", "auto")

RATES = {key for key, kpi in KPIS.items() if kpi.kind == "rate"}


# ---------------------------------------------------------------- formatting


def kpi_label(key: str) -> str:
    """The label a person reads for a KPI key."""
    return KPIS[key].label if key in KPIS else key.replace("_", " ").capitalize()


def kpi_column(key: str) -> str:
    """The shorter label of a KPI's column in the wide tables (they must fit a printed page)."""
    return KPIS[key].column if key in KPIS else kpi_label(key)


def kpi_keys(kpis: Mapping[str, Any]) -> list[str]:
    """The report's KPI keys (not ``by_intent``): the known ones in their order, then any others."""
    known = [k for k in KPIS if k in kpis]
    return known + [k for k in kpis if k not in KPIS and k != "by_intent"]


def fmt(key: str, value: Any) -> str:
    """A KPI value as text, by its key: rates as percentages, minutes as durations, null as ``n/a``."""
    if key in KPIS:
        return show(value, KPIS[key].kind)
    if key.endswith(("_rate", "_accuracy")):
        return show(value, "rate")
    if key.endswith("_minutes"):
        return show(value, "minutes")
    if key == "average":
        return show(value, "score")
    if key == "mean_edit_ratio":
        return show(value, "ratio")
    return show(value, "count")


# ---------------------------------------------------------------- charts


def _values(rows: list[dict[str, Any]]) -> alt.InlineData:
    return alt.InlineData(values=rows)


def _no_data(title: str, note: str) -> alt.Chart:
    """A panel that says plainly there is nothing to draw, at the size of a chart."""
    panel = alt.Chart(_values([{"note": note}]), title=title, description=f"{title}: {note}", width=WIDTH,
                      height=80)
    chart: alt.Chart = panel.mark_text(fontSize=14, color="#555555").encode(text="note:N")
    return chart


def _by_severity(severity: str) -> tuple[int, str]:
    """Most severe first; a severity the policy adds later after the known ones."""
    return (SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES), severity)


def _unit(peak: float) -> tuple[str, float]:
    """Hours once minutes would make long axes; the axis title says which."""
    return ("hours", 60.0) if peak > 180 else ("minutes", 1.0)


def volume(report: dict[str, Any]) -> alt.Chart | alt.LayerChart:
    """Conversations per day (bars) with those the bot resolved and those escalated (lines)."""
    title = "Volume and resolution per day"
    daily = report.get("daily") or []
    if not any(d.get("conversations") for d in daily):  # the report lists every day, even empty ones
        return _no_data(title, "No conversations in this period")
    names = {"bot_resolved": "Resolved by the bot", "escalated": "Escalated"}
    everything = "All conversations"
    order = [everything, *names.values()]
    colour = alt.Scale(domain=order, range=[BLUES[3], BLUES[0], ACCENT])
    bars = [{"date": d["date"], "series": everything, "count": d.get("conversations") or 0} for d in daily]
    lines = [{"date": d["date"], "series": label, "count": d.get(key) or 0}
             for d in daily for key, label in names.items()]
    x = alt.X("utcyearmonthdate(date):T", title="Day", axis=alt.Axis(format="%d %b", labelAngle=0))
    base = alt.Chart(_values(bars)).mark_bar(stroke=BLUES[2], strokeWidth=0.5).encode(
        x=x,
        y=alt.Y("count:Q", title="Conversations per day", axis=alt.Axis(tickMinStep=1)),
        color=alt.Color("series:N", title=None, sort=order, scale=colour,
                        legend=alt.Legend(orient="top", symbolType="square")),
        tooltip=[alt.Tooltip("date:N", title="Day"), alt.Tooltip("count:Q", title="Conversations")],
    )
    line = alt.Chart(_values(lines)).mark_line(point=len(daily) <= 31, strokeWidth=2).encode(  # dots: a month
        # Points at the middle of their day's bar.
        x=alt.X("utcyearmonthdate(date):T", bandPosition=0.5),
        y="count:Q",
        color=alt.Color("series:N", sort=order, scale=colour),
        strokeDash=alt.StrokeDash("series:N", sort=order[1:], scale=alt.Scale(domain=order[1:],
                                                                              range=[[1, 0], [6, 3]]),
                                  legend=None),
        tooltip=[alt.Tooltip("date:N", title="Day"), alt.Tooltip("series:N", title="Of which"),
                 alt.Tooltip("count:Q", title="Conversations")],
    )
    return alt.LayerChart(layer=[base, line], title=title, description=title, width=WIDTH, height=220)


def time_to_human(report: dict[str, Any]) -> alt.Chart | alt.LayerChart:
    """p50 and p90 time to a human after a handoff, by severity, in wall-clock and in business hours."""
    title = "Time to a human after a handoff, by severity"
    by = (report.get("time_to_human") or {}).get("by_severity") or {}
    measures = {"p50_minutes": "p50, wall-clock", "p90_minutes": "p90, wall-clock",
                "p50_business_minutes": "p50, business hours", "p90_business_minutes": "p90, business hours"}
    order = sorted(by, key=_by_severity)
    peak = max((float(v) for s in by.values() for k in measures if (v := s.get(k)) is not None), default=0.0)
    if not peak and not any((by[s].get("count") or 0) for s in by):
        return _no_data(title, "No handoffs in this period")
    unit, div = _unit(peak)
    labels = {s: f"{s} (n={by[s].get('count') or 0})" for s in order}
    rows = [{"severity": labels[s], "measure": label, "value": float(v) / div, "text": minutes(float(v))}
            for s in order for key, label in measures.items() if (v := by[s].get(key)) is not None]
    if not rows:
        return _no_data(title, "No human has answered a handoff yet")
    legend = list(measures.values())
    base = alt.Chart(_values(rows)).encode(
        y=alt.Y("severity:N", title="Severity", sort=[labels[s] for s in order]),
        yOffset=alt.YOffset("measure:N", sort=legend),
        x=alt.X("value:Q", title=f"Time to a human ({unit})"),
    )
    bars = base.mark_bar(stroke=INK, strokeWidth=0.5).encode(
        color=alt.Color("measure:N", title=None, sort=legend, scale=alt.Scale(domain=legend, range=list(BLUES)),
                        legend=alt.Legend(orient="top", columns=2)),
        tooltip=[alt.Tooltip("severity:N", title="Severity"), alt.Tooltip("measure:N", title="Measure"),
                 alt.Tooltip("text:N", title="Time")],
    )
    text = base.mark_text(align="left", dx=3, fontSize=9, color=INK).encode(text="text:N")
    return alt.LayerChart(layer=[bars, text], title=title, description=title, width=WIDTH - 120, height=alt.Step(11))


def autonomy(report: dict[str, Any]) -> alt.Chart | alt.LayerChart:
    """Per intent: how often staff edited and rejected the bot's drafts, with the intent's autonomy mode now."""
    title = "Drafts edited and rejected, and autonomy, per intent"
    drafts = (report.get("drafts") or {}).get("by_intent") or {}
    current = (report.get("autonomy") or {}).get("current") or {}
    intents = sorted(set(drafts) | set(current),
                     key=lambda i: (-((drafts.get(i) or {}).get("edit_rate") or 0.0),
                                    -((drafts.get(i) or {}).get("rejected_rate") or 0.0), i))
    if not intents:
        return _no_data(title, "No drafts and no autonomy settings in this period")
    labels = {i: f"{i} · {current.get(i) or 'mode n/a'} · {(drafts.get(i) or {}).get('decided') or 0} drafts"
              for i in intents}
    measures = {"edit_rate": "Edited", "rejected_rate": "Rejected"}
    rows = [{"intent": labels[i], "measure": label, "value": float(v), "text": f"{float(v):.0%}"}
            for i in intents for key, label in measures.items()
            if (v := (drafts.get(i) or {}).get(key)) is not None]
    # A row per intent without a rate still gets its axis label, so every mode is shown.
    y = alt.Y("intent:N", title=None,
              scale=alt.Scale(domain=[labels[i] for i in intents]), axis=alt.Axis(labelLimit=320))
    legend = list(measures.values())
    base = alt.Chart(_values(rows)).encode(
        y=y,
        yOffset=alt.YOffset("measure:N", sort=legend),
        x=alt.X("value:Q", title="Share of the intent's drafts", scale=alt.Scale(domain=[0, 1]),
                axis=alt.Axis(format="%")),
    )
    bars = base.mark_bar(stroke=INK, strokeWidth=0.5).encode(
        color=alt.Color("measure:N", title=None, sort=legend, scale=alt.Scale(domain=legend,
                                                                              range=[BLUES[1], BLUES[3]]),
                        legend=alt.Legend(orient="top")),
        tooltip=[alt.Tooltip("intent:N", title="Intent"), alt.Tooltip("measure:N", title="Drafts"),
                 alt.Tooltip("text:N", title="Share")],
    )
    text = base.mark_text(align="left", dx=3, fontSize=9, color=INK).encode(text="text:N")
    heading = alt.Title(title, subtitle="Each row: intent · its autonomy mode now · drafts decided in the period")
    return alt.LayerChart(layer=[bars, text], title=heading, description=title, width=WIDTH - 200, height=alt.Step(10))


def csat(report: dict[str, Any]) -> alt.Chart | alt.LayerChart:
    """Average CSAT (1 to 5) per intent, best first, with how many customers answered."""
    title = "Customer satisfaction by intent"
    by = (report.get("csat") or {}).get("by_intent") or {}
    answered = sorted(((float(v["average"]), f"{i} (n={v.get('responses') or 0})") for i, v in by.items()
                       if v.get("average") is not None), key=lambda pair: (-pair[0], pair[1]))
    if not answered:
        return _no_data(title, "No CSAT responses in this period")
    rows = [{"intent": label, "average": average, "text": f"{average:.1f}"} for average, label in answered]
    base = alt.Chart(_values(rows)).encode(
        y=alt.Y("intent:N", title=None, sort=[label for _, label in answered],
                axis=alt.Axis(labelLimit=260)),
        x=alt.X("average:Q", title="Average CSAT (1 = poorly, 5 = very well)", scale=alt.Scale(domain=[0, 5]),
                axis=alt.Axis(tickMinStep=1)),
    )
    bars = base.mark_bar(color=BLUES[1], stroke=INK, strokeWidth=0.5).encode(
        tooltip=[alt.Tooltip("intent:N", title="Intent"), alt.Tooltip("text:N", title="Average")])
    text = base.mark_text(align="left", dx=3, fontSize=10, color=INK).encode(text="text:N")
    heading = alt.Title(title, subtitle="Each row: intent (number of responses)")
    return alt.LayerChart(layer=[bars, text], title=heading, description=title, width=WIDTH - 160, height=alt.Step(18))


CHARTS: dict[str, tuple[str, Builder]] = {
    "volume": ("Volume and resolution per day", volume),
    "time_to_human": ("Time to a human by severity", time_to_human),
    "autonomy": ("Draft edits, rejections and autonomy per intent", autonomy),
    "csat": ("CSAT by intent", csat),
}
"""name -> (title, builder), in display order."""


# ---------------------------------------------------------------- rendering


def _spec(chart: alt.Chart | alt.LayerChart) -> dict[str, Any]:
    """The chart's Vega-Lite, with the page's font. Not validated against the schema again here (a quarter of
    the rendering time): the tests validate every chart this module builds."""
    spec: dict[str, Any] = chart.to_dict(validate=False)
    spec.setdefault("config", {}).update({"font": "DejaVu Sans, Helvetica, Arial, sans-serif",
                                          "view": {"stroke": None}, "background": "white"})
    return spec


def _version() -> str:
    """The Vega-Lite version Altair writes for, as vl-convert names it (``v6.4.1`` -> ``6.4``)."""
    major, minor = alt.SCHEMA_VERSION.lstrip("v").split(".")[:2]
    wanted = f"{major}.{minor}"
    return wanted if wanted in vl_convert.get_vegalite_versions() else vl_convert.get_vegalite_versions()[-1]


def svg(chart: alt.Chart | alt.LayerChart) -> str:
    """The chart as an SVG document; no external URL is allowed, so nothing is fetched."""
    out: str = vl_convert.vegalite_to_svg(_spec(chart), vl_version=_version(), allowed_base_urls=[])
    return out


def png(chart: alt.Chart | alt.LayerChart, *, scale: float = 2) -> bytes:
    """The chart as a PNG image (``scale`` 2 is sharp on high-density screens and in Slack)."""
    out: bytes = vl_convert.vegalite_to_png(_spec(chart), vl_version=_version(), scale=scale,
                                            allowed_base_urls=[])
    return out


_ROOT = re.compile(r"\s+xmlns(:xlink)?=\"[^\"]*\"")
_ID = re.compile(r"\bid=\"([^\"]+)\"")


def inline_svg(document: str, prefix: str) -> Markup:
    """An SVG made fit to sit inside an HTML page beside others.

    HTML needs no namespace declarations (dropping them leaves the page free of URLs), and Vega numbers
    its clip paths from 1 in every chart, so each chart's ids get a prefix lest charts clip each other.
    """
    head, sep, rest = document.partition(">")
    document = _ROOT.sub("", head) + sep + rest
    for name in set(_ID.findall(document)):
        new = f"{prefix}-{name}"
        document = (document.replace(f'id="{name}"', f'id="{new}"')
                    .replace(f"url(#{name})", f"url(#{new})").replace(f'href="#{name}"', f'href="#{new}"'))
    return Markup(document)  # Vega escapes the text it writes (tested with markup in an intent name).


@cache
def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["kpi"] = lambda value, key: fmt(key, value)
    env.filters["minutes"] = minutes
    env.filters["when"] = when
    env.globals["kpi_label"] = kpi_label
    env.globals["kpi_column"] = kpi_column
    return env


def _table(groups: Mapping[str, Mapping[str, Any]], keys: Iterable[str]) -> list[tuple[str, list[str]]]:
    """Rows of formatted KPI values, busiest group first."""
    keys = list(keys)
    ordered = sorted(groups.items(), key=lambda kv: (-(kv[1].get("conversations") or 0), kv[0]))
    return [(name, [fmt(k, values.get(k)) for k in keys]) for name, values in ordered]


def render_html(report: dict[str, Any]) -> str:
    """The whole report as one self-contained, printable HTML page."""
    kpis = report.get("kpis") or {}
    keys = kpi_keys(kpis)
    figures = [(name, title, inline_svg(svg(build(report)), f"chart-{name}"))
               for name, (title, build) in CHARTS.items()]
    breakdowns = report.get("breakdowns") or {}
    tth = report.get("time_to_human") or {}
    severities = sorted(tth.get("by_severity") or {}, key=_by_severity)
    return _environment().get_template("report.html.j2").render(
        report=report,
        period=report.get("period") or {},
        headline=[(kpi_label(k), fmt(k, kpis.get(k))) for k in keys],
        keys=keys,
        figures=figures,
        by_intent=_table(kpis.get("by_intent") or {}, keys),
        breakdowns=[(dimension, _table(breakdowns.get(dimension) or {}, keys))
                    for dimension in ("platform", "route", "organisation")],
        severities=[(s, tth["by_severity"][s]) for s in severities],
        tth=tth,
        handoff_reasons=sorted(report.get("handoff_reasons") or [], key=lambda r: (-r.get("count", 0), r["rule"])),
        drafts=sorted(((report.get("drafts") or {}).get("by_intent") or {}).items()),
        autonomy=report.get("autonomy") or {"current": {}, "changes": []},
        csat=report.get("csat") or {},
        gaps=report.get("knowledge_gaps") or {"unanswered": [], "articles": []},
        review_tags=sorted((report.get("review_tags") or {}).items(), key=lambda kv: (-kv[1], kv[0])),
    )

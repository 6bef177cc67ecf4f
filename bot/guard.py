"""The pre-send guard: every message for a customer is checked before it is sent.

A message fails when it has an unfilled template placeholder, repeats the bot's previous message
in the conversation, greets or names someone other than the customer, links somewhere that is not in
the help center, or carries internal-only content (rule ids, internal notes, Slack group ids, staff
names the policy keeps internal), or would notify anyone (a broadcast or a mention, in Slack's or
Discord's syntax: the adapters escape what they post, and this refuses it all the same). A failing
message is never sent: the engine holds it for review and hands the conversation to a person instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from bot.policy import Policy

_PLACEHOLDER = re.compile(r"\{\{.*?\}\}|\{[A-Za-z_][\w.]*\}|%\([a-z_]+\)s|\$\{[^}]*\}|<(?:[A-Z][A-Z_]{2,})>|\[(?:NAME|"
                          r"CUSTOMER|TODO|PLACEHOLDER|INSERT[^\]]*)\]|\bTODO\b|\bTBD\b")
_URL = re.compile(r"https?://[^\s<>|\"')\]]+", re.I)
_GREETING = re.compile(r"^\s*(?:hi|hello|hey|dear|thanks|thank you|good (?:morning|afternoon|evening))[ ,]+"
                       r"([A-Z][\w'-]+)", re.I)
_NOT_A_NAME = frozenset({"there", "again", "all", "team", "everyone", "folks", "so", "for", "and", "i", "we", "you"})
_SLACK_GROUP = re.compile(r"\b[SG]0[0-9A-Z]{6,}\b|<!subteam\^[^>]+>")
# What would notify people if a platform read it as markup: Slack's <!here>, <!channel>, <!everyone>,
# <@U…>, <!subteam^…>; Discord's <@123>, <@!123>, <@&123>; and the bare broadcasts both know.
BROADCAST = re.compile(r"(?<![\w@])@(everyone|here|channel)\b", re.I)
"""A bare broadcast word, which Slack parses in mrkdwn or with name linking, and Discord always."""
_NOTIFIES = re.compile(r"<!(?:here|channel|everyone|subteam\^)[^>]*>|<@[!&]?[UW]?[0-9A-Z]+(?:\|[^>]*)?>|"
                       + BROADCAST.pattern, re.I)


@dataclass(frozen=True)
class Problem:
    kind: str
    """empty | placeholder | repeat | wrong_person | unknown_link | internal | notifies"""
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


def _normal(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


class Guard:
    """Checks outgoing customer messages against the policy and the help center's links."""

    def __init__(self, policy: Policy, allowed_urls: Iterable[str] = ()) -> None:
        self.policy = policy
        self.allowed_urls = frozenset(u.rstrip("/") for u in allowed_urls)
        rule_ids = [r.id for s in policy.signals.values() for r in s.rules]
        rule_ids += [c.id for i in policy.intents.values() for c in i.cues]
        self._rule_ids = re.compile(r"(?<![\w.])(" + "|".join(re.escape(i) for i in sorted(rule_ids, key=len,
                                    reverse=True)) + r")(?![\w])") if rule_ids else None
        internal = [re.escape(m) for m in policy.guard.internal_markers] + \
            [r"\b" + re.escape(n) + r"\b" for n in policy.guard.internal_names] + \
            [r"\b" + re.escape(r.slack) + r"\b" for r in policy.routes.values()]
        self._internal = re.compile("|".join(internal), re.I) if internal else None

    def check(self, text: str, *, customer_name: str | None = None, previous: str | None = None) -> list[Problem]:
        """Every problem with ``text``; an empty list means it may be sent."""
        problems: list[Problem] = []
        if not text.strip():
            return [Problem("empty", "the message is empty")]
        for m in _PLACEHOLDER.finditer(text):
            problems.append(Problem("placeholder", f"unfilled template placeholder {m.group(0)!r}"))
        if previous is not None and _normal(previous) == _normal(text):
            problems.append(Problem("repeat", "the same text as the bot's previous message in this conversation"))
        if greeting := _GREETING.match(text):
            named = greeting.group(1)
            first = (customer_name or "").split()[0].lower() if customer_name else None
            if named.lower() not in _NOT_A_NAME and named.lower() != first:
                problems.append(Problem("wrong_person", f"greets {named!r}, but the customer is "
                                                        f"{customer_name or 'not known by name'}"))
        for m in _URL.finditer(text):
            url = m.group(0).rstrip(".,;:!?").rstrip("/")
            if url not in self.allowed_urls:
                problems.append(Problem("unknown_link", f"{url} is not a help-center article"))
        if self._rule_ids is not None and (rule := self._rule_ids.search(text)):
            problems.append(Problem("internal", f"mentions the internal rule id {rule.group(0)!r}"))
        if self._internal is not None and (internal := self._internal.search(text)):
            problems.append(Problem("internal", f"contains internal-only content {internal.group(0)!r}"))
        if ping := _NOTIFIES.search(text):
            problems.append(Problem("notifies", f"would notify people: {ping.group(0)!r}"))
        if group := _SLACK_GROUP.search(text):
            problems.append(Problem("internal", f"mentions the internal Slack group {group.group(0)!r}"))
        return problems

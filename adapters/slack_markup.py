"""Slack's message markup read as plain text, as the customer saw it when they wrote it.

Pure functions: :func:`wanted` says which ids a message mentions (so the adapter can look their names
up), :func:`render` turns Slack's markup into readable text with those names, :func:`rich_text` reads a
message's rich-text blocks (a forwarded message often has no ``text``), :func:`shared` finds forwarded
and shared messages in ``attachments``. Slack escapes exactly ``&``, ``<`` and ``>`` in a message's text
(https://api.slack.com/reference/surfaces/formatting#escaping), so every ``<…>`` is markup and the three
entities are decoded once, at the end.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_TEXT = 40_000
"""Slack's longest message text (longer ones are truncated by Slack): the most Baton reads of one."""

_MARKUP = re.compile(r"<([^<>\n]{1,4000})>")
_ENTITY = re.compile(r"&(amp|lt|gt);")
_ENTITIES = {"amp": "&", "lt": "<", "gt": ">"}
_USER_ID = re.compile(r"^[UWB][A-Z0-9]{2,}$")
_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{2,}$")
_BROADCASTS = {"here", "channel", "everyone"}


@dataclass
class Names:
    """What the markup's ids are called: users (``None`` for the bot itself, whose mention is dropped)
    and channels; an id with no name here is shown by its label, or as itself."""

    users: Mapping[str, str | None] = field(default_factory=dict)
    channels: Mapping[str, str] = field(default_factory=dict)


def wanted(texts: Iterable[str]) -> tuple[set[str], set[str]]:
    """The user and channel ids mentioned without a label in ``texts`` (whose names must be looked up)."""
    users: set[str] = set()
    channels: set[str] = set()
    for text in texts:
        for inner in _MARKUP.findall(text):
            target, _, label = inner.partition("|")
            if target.startswith("@") and _USER_ID.match(target[1:]):
                users.add(target[1:])
            elif target.startswith("#") and _CHANNEL_ID.match(target[1:]) and not label:
                channels.add(target[1:])
    return users, channels


def render(text: str, names: Names | None = None) -> str:
    """Slack markup as plain text: ``<@U1>`` → ``@Dana``, ``<#C1|general>`` → ``#general``, ``<!here>`` →
    ``@here``, ``<!subteam^S1|@oncall>`` → ``@oncall``, ``<mailto:a@b|a@b>`` → ``a@b``, ``<https://u|docs>``
    → ``docs (https://u)``, ``<!date^…|fallback>`` → ``fallback``; then ``&lt;`` ``&gt;`` ``&amp;`` decoded,
    once (``&amp;lt;`` stays ``&lt;``, as the customer typed it)."""
    names = names or Names()

    def one(match: re.Match[str]) -> str:
        target, _, label = match.group(1).partition("|")
        if target.startswith("@"):
            user = target[1:]
            if user in names.users:
                name = names.users[user]
                return "" if name is None else f"@{name}"
            return f"@{label or user}"
        if target.startswith("#"):
            channel = target[1:]
            return f"#{label or names.channels.get(channel) or channel}"
        if target.startswith("!"):
            command = target[1:]
            if command in _BROADCASTS:
                return f"@{command}"
            if command.startswith("subteam^"):
                return label if label.startswith("@") else f"@{label or 'group'}"
            return label  # <!date^…|fallback>, and any command to come: its fallback text
        if target.startswith("mailto:"):
            return label or target.removeprefix("mailto:")
        if label and label != target and label not in (target.split("://", 1)[-1], target.split("://", 1)[-1] + "/"):
            return f"{label} ({target})"
        return target

    rendered = _MARKUP.sub(one, text)
    return _ENTITY.sub(lambda m: _ENTITIES[m.group(1)], rendered)


def rich_text(blocks: Any) -> str:
    """A message's ``rich_text`` blocks as Slack markup (to :func:`render`); other blocks are skipped."""
    if not isinstance(blocks, list):
        return ""
    parts = [_part(part) for block in blocks if isinstance(block, dict) and block.get("type") == "rich_text"
             for part in _dicts(block.get("elements"))]
    return "\n".join(p for p in parts if p).strip()


def _part(part: dict[str, Any]) -> str:
    """One section, quote, preformatted block or list of a rich-text block."""
    kind = part.get("type")
    if kind == "rich_text_list":
        items = ["".join(_inline(e) for e in _dicts(item.get("elements"))) for item in _dicts(part.get("elements"))]
        ordered = part.get("style") == "ordered"
        return "\n".join(f"{n}. {item}" if ordered else f"• {item}" for n, item in enumerate(items, 1))
    text = "".join(_inline(e) for e in _dicts(part.get("elements")))
    if kind == "rich_text_quote":
        return "\n".join(f"&gt; {line}" for line in text.splitlines())
    return text


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _inline(element: dict[str, Any]) -> str:
    kind = element.get("type")
    if kind == "text":
        return escape(_str(element.get("text")))
    if kind == "user":
        return f"<@{_str(element.get('user_id'))}>"
    if kind == "channel":
        return f"<#{_str(element.get('channel_id'))}>"
    if kind == "usergroup":
        return f"<!subteam^{_str(element.get('usergroup_id'))}>"
    if kind == "broadcast":
        return f"<!{_str(element.get('range'))}>"
    if kind == "link":
        url, text = _str(element.get("url")), _str(element.get("text"))
        return f"<{url}|{escape(text)}>" if text else f"<{url}>"
    if kind == "emoji":
        return f":{_str(element.get('name'))}:"
    if kind == "date":
        return escape(_str(element.get("fallback")))
    return ""


def shared(attachments: Any) -> list[tuple[str | None, str, str | None]]:
    """Forwarded and shared messages in a message's ``attachments``: (author's name, their text as Slack
    markup, author's user id when no name is given). Link previews are not the customer's words: skipped."""
    if not isinstance(attachments, list):
        return []
    found: list[tuple[str | None, str, str | None]] = []
    for item in attachments[:20]:
        if not isinstance(item, dict) or not (item.get("is_share") or item.get("is_msg_unfurl")):
            continue
        text = _str(item.get("text"))
        if not text:
            for held in item.get("message_blocks") or []:
                message = held.get("message") if isinstance(held, dict) else None
                if isinstance(message, dict):
                    text = "\n".join(p for p in (text, rich_text(message.get("blocks"))) if p)
        if not text:
            text = _str(item.get("fallback"))
        author = _str(item.get("author_name")) or _str(item.get("author_subname")) or None
        author_id = _str(item.get("author_id")) or None
        found.append((author, text, None if author else author_id))
    return found


def files(event: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The file objects of a message (its own, then those of what it forwards), well-formed ones only."""
    found = _dicts(event.get("files"))
    for item in _dicts(event.get("attachments")):
        if item.get("is_share") or item.get("is_msg_unfurl"):
            found += _dicts(item.get("files"))
    return found[:50]


def needs_lookup(file: Mapping[str, Any]) -> bool:
    """A Slack Connect file arrives with only its id: ``files.info`` tells its name."""
    return file.get("file_access") == "check_file_info" or not (file.get("name") or file.get("title"))


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def escape(text: str) -> str:
    """Text as Slack's own escaping has it: ``&``, ``<`` and ``>`` as entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

"""Plain text for the detectors: the customer's words without links, mentions, emoji codes and markup.

Retrieval and triage read :func:`plain`; the stored message keeps what the customer wrote. Every
replacement keeps the text's length, so that an offset in the plain text is the same offset in the
original and a signal's evidence can always be quoted verbatim from what the customer wrote
(:func:`verbatim`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

# Raw platform markup (the form a `triage` input or a test may carry):
# Slack: <https://x|label>, <mailto:a@b|a@b>, <@U123>, <@U123|name>, <#C123|name>, <!here>, <!subteam^S1|@team>.
# Discord: <@123>, <@!123>, <@&123>, <#123>, <:name:123>, <a:name:123>, <t:1700000000:R>.
_ANGLED = re.compile(r"<(?:[@#!][^<>\s]{0,200}|https?://[^<>\s]{1,2000}|mailto:[^<>\s]{1,400}|a?:\w{1,64}:\d{1,25}"
                     r"|t:\d{1,12}(?::\w)?)>")
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>]+", re.I)
# What the adapters make of mentions before the engine reads them: "@U024BE7LH", "@Dana", "#general".
_AT = re.compile(r"(?<![\w@.])@[^\W_][\w.\-]{0,79}")
_CHANNEL = re.compile(r"(?<![\w&#])#[a-z][a-z0-9_\-]{1,79}(?![\w])")
_EMOJI_CODE = re.compile(r"(?<![\w:]):[a-z0-9_+\-]{1,64}:(?![\w:])", re.I)
_CODE_FENCE = re.compile(r"```")
_MARKUP = re.compile(r"(?<!\w)[*_~`]+(?=\S)|(?<=\S)[*_~`]+(?!\w)|^\s*&gt;|^\s*>", re.M)
# The adapters' own lines (see :func:`compose`): a file's name is not the customer's words, nor is the
# message they reply to (often the bot's own).
_CONTENT_MARK = re.compile(r"^\[(?:attachment|sticker|embed): [^\n]*\]$|^\[forwarded(?: from [^\n]*)?\]$"
                           r"|^\[in reply(?: to [^\n]*)?\]$(?:\n>[^\n]*)*", re.M)


def _blank(match: re.Match[str]) -> str:
    return " " * (match.end() - match.start())


@lru_cache(maxsize=256)
def plain(text: str) -> str:
    """``text`` with links, mentions, emoji codes and markup replaced by spaces (same length). Cached: the
    detectors, the intent cues, small talk and the help center all read it for the same message."""
    if not text:
        return text
    out = _CONTENT_MARK.sub(_blank, text)
    out = _ANGLED.sub(_blank, out)
    out = _URL.sub(_blank, out)
    out = _AT.sub(_blank, out)
    out = _CHANNEL.sub(_blank, out)
    out = _EMOJI_CODE.sub(_blank, out)
    out = _CODE_FENCE.sub(_blank, out)
    return _MARKUP.sub(_blank, out)


def verbatim(original: str, start: int, end: int) -> str:
    """The customer's own words at ``start:end`` of :func:`plain`'s output, trimmed of blanked edges."""
    return original[start:end].strip()


def compose(text: str, *, files: Sequence[str] = (), forwards: Sequence[tuple[str | None, str]] = (),
            replying_to: tuple[str | None, str] | None = None, limit: int | None = None) -> str:
    """A message's whole content as one text, the same on every platform: the message it replies to, if
    any (``[in reply to Dana]`` and its lines quoted with "> "), what the customer wrote, each forwarded
    or shared message (``[forwarded from Dana]``, quoted), then a line per file (``[attachment: notes.pdf
    (PDF)]``, ``[sticker: wave]``, ``[embed: title]``). The detectors read forwarded words but neither the
    marks nor the message replied to (often the bot's own); the card's transcript shows all of it. Cut at
    ``limit`` characters (the platform's maximum), before anything reads it."""
    parts: list[str] = []
    if replying_to is not None:
        parts += _quoted("in reply to", *replying_to)
    if text.strip():
        parts.append(text.strip())
    for author, forwarded in forwards:
        parts += _quoted("forwarded from", author, forwarded)
    parts += [f"[{mark}]" for mark in files if mark]
    whole = "\n".join(parts)
    return whole[:limit] if limit is not None else whole


def _quoted(head: str, author: str | None, text: str) -> list[str]:
    mark = f"[{head} {_one_line(author)}]" if author and _one_line(author) else f"[{head.rsplit(' ', 1)[0]}]"
    return [mark] + [f"> {line}" if line.strip() else ">" for line in text.strip().splitlines()]


def attachment(name: str, kind: str | None = None, *, mark: str = "attachment") -> str:
    """One file's line for :func:`compose`: ``attachment: name (kind)``."""
    name = _one_line(name) or "unnamed file"
    return f"{mark}: {name}" + (f" ({_one_line(kind)})" if kind and kind.lower() not in name.lower() else "")


def _one_line(text: str | None) -> str:
    return re.sub(r"[\s\[\]]+", " ", text or "").strip()[:200]

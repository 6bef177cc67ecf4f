"""The fields Baton reads from Slack's payloads, as pydantic models: a payload that does not fit is
refused with a clear answer (a logged rejection, or an ephemeral message to the clicker) before
anything acts on it. Raw payloads stay dicts elsewhere; these models only say what must be there, of
which type (as discord.py keeps its raw payload types apart from its models). Extra fields are
ignored: Slack adds fields often.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class EditedMessage(_Payload):
    ts: str
    user: str | None = None
    bot_id: str | None = None
    text: str | None = None
    thread_ts: str | None = None
    edited: dict[str, Any] | None = None


class MessageEvent(_Payload):
    """A ``message`` or ``app_mention`` event in a channel."""

    type: str
    channel: str
    ts: str | None = None
    event_ts: str | None = None
    thread_ts: str | None = None
    user: str | None = None
    user_team: str | None = None
    team: str | None = None
    user_profile: dict[str, Any] | None = None
    bot_id: str | None = None
    subtype: str | None = None
    text: str | None = None
    message: EditedMessage | None = None
    """``message_changed``: the message as it is now."""
    previous_message: dict[str, Any] | None = None
    files: list[Any] | None = None
    attachments: list[Any] | None = None
    blocks: list[Any] | None = None


class User(_Payload):
    id: str
    team_id: str | None = None
    """The person's own workspace: staff are the installing workspace's members."""


class Option(_Payload):
    value: str


class Action(_Payload):
    """A button (its ``value``) or a menu (its ``selected_option``) on a card."""

    action_id: str
    value: str | None = None
    selected_option: Option | None = None


class Click(_Payload):
    """A ``block_actions`` payload: a button on a handoff card."""

    user: User
    trigger_id: str | None = None
    actions: list[Action]


class Container(_Payload):
    """Where a clicked control is: the message that carries it."""

    channel_id: str
    message_ts: str


class TagChoice(Click):
    """A ``block_actions`` payload of a review post's tag menu: the option's value names the review item
    (``"<review_id>|<tag>"``), and the container is the review post to redraw."""

    container: Container


class Input(_Payload):
    value: str | None = None


class State(_Payload):
    values: dict[str, dict[str, Input]] = {}
    """Block id -> action id -> what was typed."""


class View(_Payload):
    id: str | None = None
    private_metadata: str = ""
    """The conversation id the modal was opened for."""
    state: State = State()


class Submission(_Payload):
    """A ``view_submission`` payload: the "Send to customer" modal."""

    user: User
    trigger_id: str | None = None
    view: View


def reason(error: ValidationError) -> str:
    """A short, loggable account of what did not fit (field paths and what was wrong), no values."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'payload'}: {e['msg']}" for e in error.errors()[:5])

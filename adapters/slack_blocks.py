"""Block Kit for the internal handoff card, the "Send to customer" modal and the QA review posts.

Pure functions of a :class:`bot.model.Handoff` (or of a stored review item): the card is drawn again from
the stored state on every change (claim, loop-in, SLA, resolve), and a review post once tagged, so what
staff see is always what the store holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from adapters import slack_markup as markup
from bot.guard import BROADCAST
from bot.model import ConversationState, Handoff
from bot.policy import Policy

CLAIM = "baton_claim"
LOOP_IN = "baton_loop_in"
SEND = "baton_send"
RESOLVE = "baton_resolve"
APPROVE = "baton_approve"
REJECT = "baton_reject"
ESCALATE = "baton_escalate"
TAG = "baton_tag"
PROMOTE = "baton_promote"
UNNEEDED = "baton_unneeded"
SEND_VIEW = "baton_send_view"
MESSAGE_BLOCK, MESSAGE_INPUT = "message", "text"

_SEVERITY_MARK = {"critical": ":red_circle:", "high": ":large_orange_circle:", "medium": ":large_yellow_circle:",
                  "low": ":white_circle:"}
_MAX_TEXT = 2900  # a section's text is limited to 3000 characters
_MAX_OPTION_VALUE = 150  # an option's value (Slack's limit)
_DECIDED = {"approved": "Draft approved by {who}", "edited": "Draft sent edited by {who}",
            "rejected": "Draft rejected by {who}: {reason}", "answered": "Answered by {who}; the bot's answer is "
                                                                         "kept to measure agreement",
            "superseded": "Draft set aside: the conversation was resolved first"}


def mention(target: str | None) -> str:
    """Slack's mention syntax for a user group (S...), a user (U.../W...) or a channel (C.../G...)."""
    if not target:
        return ""
    if target.startswith("S"):
        return f"<!subteam^{target}>"
    if target.startswith(("U", "W")):
        return f"<@{target}>"
    if target.startswith(("C", "G")):
        return f"<#{target}>"
    return target


def escape(text: str) -> str:
    """Text from outside (a customer's words, a name, a file name) as Slack shows it and never acts on it:
    ``&``, ``<`` and ``>`` escaped, so no ``<!channel>``, ``<@U…>`` or ``<!subteam^…>`` markup survives, and
    a word joiner after the ``@`` of a bare ``@here``/``@channel``/``@everyone``, which Slack would
    otherwise parse in a message posted with ``link_names``, or in a block's mrkdwn."""
    return BROADCAST.sub("@\u2060\\1", markup.escape(text))


def _mrkdwn(text: str) -> dict[str, Any]:
    """A mrkdwn text object that Slack does not auto-link: only explicit markup (ours) acts."""
    return {"type": "mrkdwn", "text": text[:_MAX_TEXT], "verbatim": True}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(text)}


def _button(text: str, action_id: str, value: str, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {"type": "button", "text": {"type": "plain_text", "text": text[:75]},
                              "action_id": action_id, "value": value}
    if style:
        button["style"] = style
    return button


def _quoted(text: str) -> str:
    return "\n".join(f">{line}" for line in escape(text).splitlines() or [""])


def option_value(conversation_id: str, choice: str) -> str:
    """A card menu option's value: the conversation and the choice (both come back in the click)."""
    return f"{conversation_id}|{choice}"


def split_option(value: str) -> tuple[str, str]:
    """The conversation and the choice of a card menu option's value (:func:`option_value`)."""
    conversation_id, _, choice = value.partition("|")
    return conversation_id, choice


def _reject_menu(conversation_id: str, reasons: list[str]) -> list[dict[str, Any]]:
    """The Reject menu: one option per reason of the policy."""
    return _menu(REJECT, conversation_id, reasons, "Reject")


def _menu(action_id: str, key: str, choices: list[str], placeholder: str) -> list[dict[str, Any]]:
    """A menu of the policy's choices, each option's value ``key|choice`` (a choice too long for an option's
    value is left out rather than cut, since a cut one would not be the policy's; no menu without options,
    which Slack would refuse along with the whole message)."""
    options = [{"text": {"type": "plain_text", "text": choice[:75]}, "value": option_value(key, choice)}
               for choice in choices if len(option_value(key, choice)) <= _MAX_OPTION_VALUE]
    return [{"type": "static_select", "action_id": action_id, "options": options[:100],
             "placeholder": {"type": "plain_text", "text": placeholder}}] if options else []


def _draft(handoff: Handoff) -> tuple[list[dict[str, Any]], bool]:
    """The bot's draft on the card (its text while it waits, one line once a person decided), and whether
    it still waits for approval."""
    draft = handoff.draft
    if not draft:
        return [], False
    status, who = str(draft.get("status")), mention(draft.get("decided_by")) or "someone"
    if status == "pending":
        if draft.get("mode") == "shadow":
            return [_section("*The bot would have said* (not sent; answer with Send to customer)\n"
                             + _quoted(str(draft.get("text") or "")))], False
        return [_section("*Draft answer* (waiting for approval)\n" + _quoted(str(draft.get("text") or "")))], True
    line = _DECIDED.get(status, "Draft " + escape(status) + " by {who}")
    return [{"type": "context", "elements": [_mrkdwn(
        ":memo: " + line.format(who=who, reason=escape(str(draft.get("reason") or "-"))))]}], False


REVIEW_REASONS = {"auto_answer": "Sent on its own (a sample of automatic answers)",
                  "low_confidence": "Low confidence: was it read right?",
                  "hold": "Held by the pre-send guard",
                  "handoff": "Handed to a person: was it needed?",
                  "csat": "Rated 1-2 by the customer",
                  "repeat_contact": "Repeat contact: the customer came back"}
"""Why an item was picked for review, as the review post says it (by ``ReviewItem.reason``)."""


def review_text(review: Mapping[str, Any]) -> str:
    """A review post's notification text: why it was picked (no customer words)."""
    reason = str(review.get("reason") or "")
    return f"QA review: {REVIEW_REASONS.get(reason, escape(reason))} ({escape(str(review.get('intent') or '-'))})"


def _tag_menu(review_id: str, tags: list[str]) -> list[dict[str, Any]]:
    """The tag menu of a review post: one option per tag of the policy."""
    return _menu(TAG, review_id, tags, "Tag this")


def link(url: str | None, label: str) -> str:
    """A mrkdwn link to ``url`` (ours or the help center's), or ``-``; a URL that could break out of the
    link syntax is shown escaped instead."""
    if not url:
        return "-"
    if url.startswith(("https://", "http://")) and not any(c in url for c in "<>| \n"):
        return f"<{url.replace('&', '&amp;')}|{escape(label)}>"
    return escape(url)


def review_post(review: Mapping[str, Any], tags: list[str], *, thread_link: str | None, card_link: str | None,
                platform: str) -> list[dict[str, Any]]:
    """A QA review post: why it was picked, what happened (the customer's words escaped), where to look
    (the customer's thread, the handoff card if any, the article used), and the tag menu; once tagged,
    who tagged it and how instead of the menu."""
    reason = str(review.get("reason") or "")
    head = f":mag: *{REVIEW_REASONS.get(reason, escape(reason))}* · intent {escape(str(review.get('intent') or '-'))}"
    where = [f"*Customer's thread:* {link(thread_link, f'open in {platform.capitalize()}')}"]
    if card_link:
        where.append(f"*Handoff card:* {link(card_link, 'open the card')}")
    if review.get("article"):
        where.append(f"*Article:* {link(str(review['article']), str(review['article']))}")
    blocks: list[dict[str, Any]] = [_section(head), _section(_quoted(str(review.get("text") or ""))),
                                    {"type": "context", "elements": [_mrkdwn(" · ".join(where))]}]
    if review.get("tag"):
        line = f":label: Tagged *{escape(str(review['tag']))}* by {mention(review.get('tagged_by')) or 'someone'}"
        if review.get("note"):
            line += f": {escape(str(review['note']))}"
        blocks.append({"type": "context", "elements": [_mrkdwn(line)]})
    elif menu := _tag_menu(str(review.get("id")), tags):
        blocks.append({"type": "actions", "block_id": "baton_review_actions", "elements": menu})
    return blocks


def _when(value: Any) -> str:
    if not value:
        return "-"
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} {{time}}|{moment:%Y-%m-%d %H:%M %Z}>"


def _label(policy: Policy, name: str) -> str:
    try:
        return policy.field(name).label
    except KeyError:
        return name


def status_line(handoff: Handoff) -> str:
    conversation = handoff.conversation
    if conversation.state is ConversationState.resolved:
        status = f":white_check_mark: Resolved by {mention(handoff.resolved_by)}"
        if handoff.csat is not None:
            status += f" · CSAT {handoff.csat}/5"
    elif conversation.claimed_by:
        status = f":raising_hand: Claimed by {mention(conversation.claimed_by)}"
    else:
        status = ":hourglass_flowing_sand: Unclaimed"
        if handoff.sla_due:
            status += f" · reply due {_when(handoff.sla_due)}"
    if handoff.looped_in:
        status += " · looped in: " + ", ".join(f"{i.route} by {mention(i.actor)}" for i in handoff.looped_in)
    return status


def card(handoff: Handoff, policy: Policy, groups: Mapping[str, str], *, permalink: str | None,
         next_tier: str | None = None) -> list[dict[str, Any]]:
    """The handoff card: the continuity brief, the bot's draft if any, the card's status and its buttons.
    ``next_tier``: the route the conversation can be escalated to (``Service.next_tier``), if any."""
    brief = handoff.brief
    conversation = handoff.conversation
    route = handoff.sla_route or brief["route"]
    who = escape(brief["customer"]) + (f" ({escape(brief['organisation'])})" if brief.get("organisation") else "")
    if brief.get("contract"):
        who += f" · contract: {escape(brief['contract'])}"
    severity = str(brief["severity"])
    head = (f"{_SEVERITY_MARK.get(severity, '')} *{severity.upper()}* handoff for {mention(groups.get(route))} "
            f"({escape(policy.routes[route].description) if route in policy.routes else route})")
    blocks: list[dict[str, Any]] = [
        _section(head),
        {"type": "section", "fields": [
            _mrkdwn(f"*Customer*\n{who}"),
            _mrkdwn(f"*Intent*\n{brief['intent']} (confidence {brief['confidence']:.2f})"),
            _mrkdwn("*Customer's thread*\n" + (
                f"<{permalink}|open in {conversation.platform.capitalize()}>" if permalink else "-")),
            _mrkdwn(f"*Reply due by*\n{_when(brief.get('due'))}"),
        ]},
        _section(f"*Goal*\n>{escape(brief['goal']) or '-'}"),
        _section("*Why now*\n" + ("\n".join(f"• {escape(w)}" for w in brief["why_now"]) or "-")),
    ]
    if brief["urgent_words"]:
        blocks.append(_section("*In their words*\n" + " · ".join(f"\u201c{escape(w)}\u201d"
                                                                 for w in brief["urgent_words"])))
    filled = {k: v for k, v in brief["details"].items() if v}
    if filled or brief["missing"]:
        lines = [f"• {_label(policy, k)}: {escape(str(v))}" for k, v in filled.items()]
        if brief["missing"]:
            lines.append("• still missing: " + ", ".join(brief["missing"]))
        blocks.append(_section("*Details*\n" + "\n".join(lines)))
    for key, label in (("timeline", "Timeline"), ("tried", "Already tried")):
        if brief.get(key):
            blocks.append(_section(f"*{label}*\n" + "\n".join(f"• {escape(x)}" for x in brief[key][:8])))
    said = brief["bot_said"]
    blocks.append(_section("*Bot already said*\n" + ("\n".join(f">{escape(s)}" for s in said[-3:]) or "nothing yet")))
    written = brief.get("written_by") or "rules"
    by = "" if written == "rules" else f" _(summary by {escape(written)}; the words in quotes are the customer's)_"
    blocks.append(_section(f"*Suggested next step*\n{escape(brief['next_step'])}{by}"))
    drafted, waiting = _draft(handoff)
    blocks.extend(drafted)
    blocks.append({"type": "context", "elements": [_mrkdwn(status_line(handoff))]})
    if conversation.state is not ConversationState.resolved:
        buttons: list[dict[str, Any]] = []
        if waiting:
            buttons.append(_button("Approve & send", APPROVE, conversation.id, "primary"))
            buttons.append(_button("Edit & send", SEND, conversation.id))
            buttons.extend(_reject_menu(conversation.id, policy.autonomy.reject_reasons))
        if not conversation.claimed_by:
            buttons.append(_button("Claim", CLAIM, conversation.id, None if waiting else "primary"))
        looped = {i.route for i in handoff.looped_in}
        for name in policy.escalation.loop_in:
            if name not in looped:
                label = policy.routes[name].label or name
                buttons.append(_button(f"Loop in {label}", f"{LOOP_IN}:{name}", conversation.id))
        if next_tier is not None:
            upper = policy.routes[next_tier].label or next_tier if next_tier in policy.routes else next_tier
            buttons.append(_button(f"Escalate to {upper}", ESCALATE, conversation.id))
        if not waiting:
            buttons.append(_button("Send to customer", SEND, conversation.id))
        if not waiting:  # a handoff a person judges was not needed: escalation accuracy (README: KPIs)
            buttons.append(_button("Not needed", UNNEEDED, conversation.id))
        buttons.append(_button("Resolve", RESOLVE, conversation.id, "danger"))
        blocks.append({"type": "actions", "block_id": "baton_card_actions", "elements": buttons[:25]})
    return blocks


def card_text(handoff: Handoff, groups: Mapping[str, str]) -> str:
    """The card's notification text (what a phone shows, and what screen readers read first)."""
    brief = handoff.brief
    route = handoff.sla_route or brief["route"]
    return (f"{mention(groups.get(route))} {str(brief['severity']).upper()} handoff: {escape(brief['customer'])} "
            f"({brief['intent']}). {status_line(handoff)}")


def send_modal(conversation_id: str, customer: str, draft: str | None) -> dict[str, Any]:
    """The "Send to customer" modal: its first input is the message, prefilled with the bot's draft."""
    element: dict[str, Any] = {"type": "plain_text_input", "action_id": MESSAGE_INPUT, "multiline": True,
                               "max_length": 3000}
    if draft:
        element["initial_value"] = draft[:3000]
    return {
        "type": "modal",
        "callback_id": SEND_VIEW,
        "private_metadata": conversation_id,
        "title": {"type": "plain_text", "text": "Send to customer"},
        "submit": {"type": "plain_text", "text": "Send"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {"type": "input", "block_id": MESSAGE_BLOCK, "element": element,
             "label": {"type": "plain_text", "text": f"Message to {customer}"[:2000]}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text":
                "Posted in the customer's thread under your name. Messages in the internal thread stay internal."}]},
        ],
    }


def autonomy_notice(intent: str, mode: str, previous: str, why: str, *, confirmed: bool,
                    figures: Mapping[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """The leads' notice of an intent's autonomy: a change made (a demotion, or a promotion the policy lets
    Baton make alone), or a proposed promotion with a **Promote** button. Returns (text, blocks)."""
    head = (f"*{intent}* is now *{mode}* (was {previous})" if confirmed
            else f"*{intent}* could move up from *{previous}* to *{mode}*")
    text = f"{head}: {escape(why)}"
    shown: list[dict[str, Any]] = [_section(f":bar_chart: {text}")]
    if figures:
        unedited, edit = float(figures.get("approved_unedited", 0)), float(figures.get("mean_edit_ratio", 0))
        shown.append({"type": "context", "elements": [_mrkdwn(
            f"sample {figures.get('sample', 0)} · approved unedited {unedited:.0%} · mean edit {edit:.2f} · "
            f"rejected {float(figures.get('rejected', 0)):.0%} · harmful {figures.get('harmful', 0)}")]})
    if not confirmed:
        shown.append({"type": "actions", "block_id": "baton_autonomy", "elements": [
            _button(f"Promote to {mode}", PROMOTE, f"{intent}|{previous}", "primary")]})
    return text.replace("*", ""), shown

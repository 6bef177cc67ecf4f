"""Earned autonomy: per intent, whether the bot's answers go out on their own (``auto``), wait for a
person's approval (``draft``) or are only written down while a person answers (``shadow``).

Each intent starts at its policy's ``autonomy`` (the ``assisted`` tier at ``draft`` unless it says less;
the ``human`` tier never above ``draft``) and moves one step at a time on measured agreement: the drafts
staff approved unedited, how much they changed the others (a normalised Levenshtein distance, from
rapidfuzz), how many they rejected, and harmful rejections. Promotion needs a lead's confirmation unless
the policy says otherwise; demotion is immediate. Every change is stored with its figures and who made
it (``autonomy_changes``), and :func:`modes` replays them over the policy's starting points.

Pure functions, except :func:`modes`, :func:`review` and :func:`promote`, which read and write the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

from rapidfuzz.distance import Levenshtein

from bot.model import Tier
from bot.policy import Policy

if TYPE_CHECKING:
    from bot.store import Store

Mode = Literal["shadow", "draft", "auto"]
LADDER: tuple[Mode, ...] = ("shadow", "draft", "auto")
JUDGED = ("approved", "edited", "rejected", "answered")
"""What a person did with a draft: sent it as it was, sent it changed, rejected it, or (shadow mode)
answered the customer themselves."""


def ceiling(policy: Policy, intent: str) -> Mode:
    """The highest mode an intent may reach: ``draft`` for the human tier, else ``auto``."""
    return "draft" if policy.intents[intent].tier is Tier.human else "auto"


def starting(policy: Policy, intent: str) -> Mode:
    """An intent's mode before any change: the policy's, never above its ceiling (nor, for the assisted
    tier, above ``draft``)."""
    spec = policy.intents[intent]
    mode: Mode = spec.autonomy
    top: Mode = "draft" if spec.tier in (Tier.human, Tier.assisted) else ceiling(policy, intent)
    return mode if LADDER.index(mode) <= LADDER.index(top) else top


def edit_ratio(draft: str, sent: str) -> float:
    """How much of the draft a person changed before sending: 0 (as it was) to 1 (all of it)."""
    return round(float(Levenshtein.normalized_distance(" ".join(draft.split()), " ".join(sent.split()))), 4)


@dataclass(frozen=True)
class Figures:
    """Agreement over an intent's last reviewed drafts."""

    sample: int
    approved_unedited: float
    """Share sent exactly as the bot wrote it (in shadow mode: what staff sent was the same)."""
    mean_edit_ratio: float
    rejected: float
    harmful: int
    """Rejections for a reason the policy calls harmful."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def figures(reviewed: Sequence[dict[str, Any]], policy: Policy) -> Figures:
    """The figures of drafts people judged (rows of the ``drafts`` table, any order)."""
    rows = [r for r in reviewed if r["status"] in JUDGED]
    if not rows:
        return Figures(sample=0, approved_unedited=0.0, mean_edit_ratio=0.0, rejected=0.0, harmful=0)
    unedited = sum(1 for r in rows if r["status"] != "rejected" and not (r["edit_ratio"] or 0.0))
    ratios = [float(r["edit_ratio"] or 0.0) for r in rows if r["status"] != "rejected"]
    rejected = [r for r in rows if r["status"] == "rejected"]
    return Figures(sample=len(rows), approved_unedited=round(unedited / len(rows), 4),
                   mean_edit_ratio=round(sum(ratios) / len(ratios), 4) if ratios else 0.0,
                   rejected=round(len(rejected) / len(rows), 4),
                   harmful=sum(1 for r in rejected if r["reason"] in policy.autonomy.harmful))


@dataclass(frozen=True)
class Change:
    intent: str
    mode: Mode
    previous: Mode
    why: str
    figures: Figures
    confirmed: bool
    """A demotion, or a promotion the policy lets Baton make alone; else a proposal for a lead."""


def judge(policy: Policy, intent: str, mode: Mode, measured: Figures, *, harmful: str | None = None) -> Change | None:
    """The change the figures call for, if any. ``harmful``: the reason of a rejection just made that the
    policy calls harmful (it demotes at once, whatever the sample)."""
    rules = policy.autonomy
    step = LADDER.index(mode)
    if harmful is not None and step > 0:
        return Change(intent, LADDER[step - 1], mode, f"a draft was rejected as harmful: {harmful}", measured, True)
    if measured.sample < rules.min_sample:
        return None
    if step > 0 and measured.approved_unedited < rules.demote_unedited:
        return Change(intent, LADDER[step - 1], mode,
                      f"approved unedited {measured.approved_unedited:.0%} < {rules.demote_unedited:.0%} over the "
                      f"last {measured.sample}", measured, True)
    if LADDER.index(mode) < LADDER.index(ceiling(policy, intent)) \
            and measured.approved_unedited >= rules.promote_unedited \
            and measured.mean_edit_ratio <= rules.promote_max_edit and measured.rejected <= rules.max_rejected \
            and measured.harmful == 0:
        return Change(intent, LADDER[step + 1], mode,
                      f"approved unedited {measured.approved_unedited:.0%}, mean edit {measured.mean_edit_ratio:.2f}, "
                      f"rejected {measured.rejected:.0%} over the last {measured.sample}", measured, rules.auto_promote)
    return None


async def modes(store: Store, policy: Policy) -> dict[str, Mode]:
    """Every intent's mode now: its starting mode, then every stored change in order."""
    current = {intent: starting(policy, intent) for intent in policy.intents}
    for change in await store.autonomy_changes():
        if change["intent"] in current and change["mode"] in LADDER:
            mode = cast(Mode, change["mode"])
            top = ceiling(policy, change["intent"])
            current[change["intent"]] = mode if LADDER.index(mode) <= LADDER.index(top) else top
    return current


async def review(store: Store, policy: Policy, intent: str, *, harmful: str | None = None) -> Change | None:
    """After a person judged one of ``intent``'s drafts: apply the change the figures call for when it
    needs no confirmation (stored, by ``baton``), and return it (a proposal is returned, not stored)."""
    mode = (await modes(store, policy))[intent]
    measured = await measure(store, policy, intent)
    change = judge(policy, intent, mode, measured, harmful=harmful)
    if change is not None and change.confirmed:
        await store.record_autonomy(intent, mode=change.mode, previous=change.previous, by="baton", why=change.why,
                                    figures=change.figures.as_dict())
    return change


async def measure(store: Store, policy: Policy, intent: str) -> Figures:
    """The figures of ``intent``'s window: the drafts judged and the answers sent on their own that reviewers
    tagged, since its last change of mode (a new mode is judged on its own record, so a demotion is not undone
    by the figures that came before it)."""
    changes = await store.autonomy_changes(intent)
    since = changes[-1]["at"] if changes else None
    window = policy.autonomy.window
    judged = await store.reviewed_drafts(intent, window=window, since=since)
    # Answers sent on their own count too, as reviewers tagged them: "correct" is agreement, any other tag not.
    judged += [{"status": "approved" if row["tag"] == "correct" else "rejected",
                "edit_ratio": 0.0 if row["tag"] == "correct" else None, "reason": row["tag"],
                "decided_at": row["tagged_at"]}
               for row in await store.tagged_answers(intent, window=window, since=since)]
    judged.sort(key=lambda row: row["decided_at"], reverse=True)
    return figures(judged[:window], policy)


async def promote(store: Store, policy: Policy, intent: str, *, by: str, from_mode: str | None = None) -> Change:
    """A lead confirms a proposed promotion (from ``from_mode``, when the proposal named it: a proposal
    already acted on, or overtaken by a demotion, is refused). Raises ``ValueError`` when the figures do not
    call for one."""
    mode = (await modes(store, policy))[intent]
    if from_mode is not None and from_mode != mode:
        raise ValueError(f"{intent} is {mode} now, no longer {from_mode}: this proposal is out of date")
    measured = await measure(store, policy, intent)
    change = judge(policy, intent, mode, measured)
    if change is None or LADDER.index(change.mode) <= LADDER.index(mode):
        raise ValueError(f"{intent} does not qualify for promotion from {mode} (sample {measured.sample}, approved "
                         f"unedited {measured.approved_unedited:.0%}, mean edit {measured.mean_edit_ratio:.2f}, "
                         f"rejected {measured.rejected:.0%})")
    await store.record_autonomy(intent, mode=change.mode, previous=mode, by=by, why=change.why,
                                figures=measured.as_dict())
    return change


async def table(store: Store, policy: Policy) -> dict[str, dict[str, Any]]:
    """Per intent, what a lead reads: its mode and ceiling, the figures of its window, the promotion they
    call for (``proposed``, with ``why``), and its last change (``None``, or mode, previous, by, why, at)."""
    current = await modes(store, policy)
    changes = await store.autonomy_changes()
    out: dict[str, dict[str, Any]] = {}
    for intent, mode in current.items():
        measured = await measure(store, policy, intent)
        change = judge(policy, intent, mode, measured)
        proposal = change if change is not None and not change.confirmed else None
        last = next((c for c in reversed(changes) if c["intent"] == intent), None)
        out[intent] = {"mode": mode, "ceiling": ceiling(policy, intent), **measured.as_dict(),
                       "proposed": proposal.mode if proposal else None, "why": proposal.why if proposal else "",
                       "last_change": None if last is None else {
                           "mode": last["mode"], "previous": last["previous"], "by": last["by"], "why": last["why"],
                           "at": last["at"].isoformat()}}
    return out

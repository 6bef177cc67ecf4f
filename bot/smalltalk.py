"""Messages that carry no request: greetings, thanks, "ok", "help", emoji, a bare link or "?".

:func:`kind` reads the cleaned text (``bot.text.plain``: links, mentions, emoji codes and markup
already blanked) and says which of these it is, or ``None`` when the message has any word beyond
greeting, thanks, acknowledgement and asking-for-help words ("thanks, but the recording is still
missing" is a real message, not a thank-you).
"""

from __future__ import annotations

import re
from typing import Literal

Kind = Literal["greeting", "thanks", "ack", "help", "emoji", "empty"]

_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*|\d+")
_EMOJI = re.compile(r"[\u2600-\u27bf\U0001f000-\U0001faff]|:[a-z0-9_+\-]{1,64}:", re.I)

_GREETING = frozenset("""
hi hii hiii hey heya hiya hello helo hallo howdy yo greetings morning afternoon evening gm sup
""".split())
_THANKS = frozenset("""
thanks thank thx thnx thanx tnx ty tyvm tysm cheers appreciate appreciated appreciation grateful kudos
""".split())
_ACK = frozenset("""
ok okay okey k kk cool great perfect awesome amazing brilliant excellent nice lovely wonderful super fantastic
noted understood gotcha alright fine sorted solved resolved fixed worked works working helped helps helpful helping
""".split())
_HELP = frozenset("""
help helpme sos assist assistance support question questions query
""".split())
# Words that go with the ones above without adding a request ("thank you so much, that did the trick").
_FILLER = frozenset("""
a an the so very much many lot lots all you u ya yall y'all team there folks everyone everybody guys people
friends again good day for your ur that this it its it's did do does the trick now got get just really
please pls plz me i i'm im we us my our someone somebody anyone anybody is are can could would need needs
have has with some something quick one here out to and oh ah well yes yeah yep wow indeed sir madam
""".split())
_OWNED = frozenset({"the", "your", "ur", "for", "all", "great", "quick"})
_VOCABULARY = _GREETING | _THANKS | _ACK | _HELP | _FILLER


def kind(text: str, original: str | None = None) -> Kind | None:
    """What kind of message without a request ``text`` (cleaned by ``bot.text.plain``) is; ``None`` for a
    real message. ``original`` (the text as written) tells an emoji apart from a bare link or mention."""
    if len(text) > 160 and len(" ".join(text.split())) > 160:
        return None
    words: list[str] = []
    for match in _WORD.finditer(text):  # most messages stop at their first real word
        word = match.group(0).lower().replace("’", "'")
        if word not in _VOCABULARY or len(words) == 12:
            return None
        words.append(word)
    if not words:  # only emoji, punctuation, a link or a mention
        return "emoji" if _EMOJI.search(original if original is not None else text) else "empty"
    # "thanks for the help" thanks; "can someone help" asks for it.
    if any(w in _HELP and (i == 0 or words[i - 1] not in _OWNED) for i, w in enumerate(words)):
        return "help"
    if any(w in _THANKS for w in words):
        return "thanks"
    if any(w in _ACK for w in words):
        return None if "?" in text else "ack"  # "is it fixed?" asks something
    if any(w in _GREETING for w in words):
        return "greeting"
    return "help" if any(w in ("need", "can", "could", "someone", "anyone", "anybody", "somebody") for w in words) \
        else None

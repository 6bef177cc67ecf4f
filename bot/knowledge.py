"""The help center: Markdown articles, BM25 retrieval, grounded answers with a citation, abstaining.

Articles are Markdown files with front matter (``id``, ``title``, ``url``) in one folder. Each
paragraph is a passage; passages are ranked with BM25 (rank_bm25) over words with the article's
title added. The answer is made only of whole sentences of the best passage, quoted as written, and
cites the article's URL. The confidence is the share of the question's content words (weighted by
how rare they are in the help center) that the best article covers; below the policy's threshold the
bot does not answer.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from rank_bm25 import BM25Okapi

from bot.policy import Knowledge as KnowledgeSettings

STOPWORDS = frozenset("""
a about above after again all am an and any are as at be been before being below between both but by can could
did do does doing down during each few for from further had has have having he her here hers him his how i if in
into is it its itself just me more most my myself no nor not now of off on once only or other our ours out over
own same she should so some such than that the their theirs them then there these they this those through to too
under until up very was we were what when where which while who whom why will with would you your yours yourself
hi hello hey please thanks thank help need want know tell get got let lets im ive id dont doesnt cant cannot able
way possible anyone someone something anything also still really just us notewise question wondering
""".split())

_WORD = re.compile(r"[a-z0-9]+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"“(])")


def stem(word: str) -> str:
    """A light English stemmer: enough to match "recordings" with "recording" and "joined" with "join"."""
    for suffix, keep in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            return word[: len(word) - len(suffix)] + keep
    return word


def terms(text: str) -> list[str]:
    return [stem(w) for w in _WORD.findall(text.lower().replace("'", "")) if w not in STOPWORDS]


class KnowledgeError(ValueError):
    """An unreadable help-center folder or article; the message names the file and the reason."""


@dataclass(frozen=True)
class Article:
    id: str
    title: str
    url: str
    body: str
    path: str

    @property
    def passages(self) -> list[str]:
        return [p.strip() for p in re.split(r"\n\s*\n", self.body) if p.strip() and not p.lstrip().startswith("#")]


@dataclass(frozen=True)
class Answer:
    article: Article
    passage: str
    text: str
    """Whole sentences of the passage, as written."""
    confidence: float
    score: float


def parse_article(text: str, path: str) -> Article:
    if not text.startswith("---"):
        raise KnowledgeError(f"{path}: no front matter (a first line '---', then id, title and url)")
    try:
        _, head, body = text.split("---", 2)
    except ValueError:
        raise KnowledgeError(f"{path}: the front matter is not closed with '---'") from None
    meta: dict[str, str] = {}
    for line in head.strip().splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            raise KnowledgeError(f"{path}: front matter line {line!r} is not 'key: value'")
        meta[key.strip()] = value.strip().strip("\"'")
    missing = [k for k in ("id", "title", "url") if not meta.get(k)]
    if missing:
        raise KnowledgeError(f"{path}: front matter is missing {', '.join(missing)}")
    if not re.match(r"https?://", meta["url"]):
        raise KnowledgeError(f"{path}: url must start with http:// or https://")
    return Article(id=meta["id"], title=meta["title"], url=meta["url"], body=body.strip(), path=path)


@dataclass(frozen=True)
class Grounded:
    """An answer written from retrieved passages (by the language model) that cites only articles it
    was given; the engine sends it as it would its own answer, through the same guard."""

    text: str
    articles: tuple[Article, ...]


class KnowledgeBase:
    """Retrieval over a folder of articles. Build once; ``answer`` is pure and thread-safe."""

    def __init__(self, articles: list[Article], settings: KnowledgeSettings | None = None) -> None:
        if not articles:
            raise KnowledgeError("the help center has no articles")
        ids = Counter(a.id for a in articles)
        if dupes := sorted(i for i, n in ids.items() if n > 1):
            raise KnowledgeError(f"article ids must be unique; repeated: {dupes}")
        self.articles = articles
        self.settings = settings or KnowledgeSettings()
        self._passages: list[tuple[Article, str]] = [(a, p) for a in articles for p in a.passages]
        corpus = [terms(a.title) + terms(p) for a, p in self._passages]
        self._bm25 = BM25Okapi(corpus)
        self._corpus = [set(words) for words in corpus]
        documents = [set(terms(a.title + " " + a.body)) for a in articles]
        frequency = Counter(t for d in documents for t in d)
        n = len(articles)
        self._idf = {t: math.log(1 + n / f) for t, f in frequency.items()}
        self._unknown_idf = math.log(1 + n)
        self._article_terms = {a.id: d for a, d in zip(articles, documents, strict=True)}
        self.urls = frozenset(a.url for a in articles)

    @classmethod
    def load(cls, folder: str | Path | None = None, settings: KnowledgeSettings | None = None) -> KnowledgeBase:
        """The articles in ``folder``, or the shipped sample help center when ``None``."""
        if folder is None:
            root = resources.files("bot.defaults").joinpath("knowledge")
            files = sorted((f for f in root.iterdir() if f.name.endswith(".md")), key=lambda f: f.name)
            articles = [parse_article(f.read_text("utf-8"), f"<shipped>/knowledge/{f.name}") for f in files]
        else:
            path = Path(folder)
            if not path.is_dir():
                raise KnowledgeError(f"{path}: not a folder of help-center articles")
            articles = [parse_article(f.read_text("utf-8"), str(f)) for f in sorted(path.glob("*.md"))]
        return cls(articles, settings)

    def search(self, question: str, limit: int = 3) -> list[tuple[Article, str, float]]:
        query = terms(question)
        if not query:
            return []
        scores = self._bm25.get_scores(query)
        # BM25's idf can be zero or below for words in most passages (a small help center): keep
        # every passage that shares a word with the question, best first.
        wanted = set(query)
        sharing = [i for i, words in enumerate(self._corpus) if wanted & words]
        ranked = sorted(sharing, key=lambda i: scores[i], reverse=True)[:limit]
        return [(self._passages[i][0], self._passages[i][1], float(scores[i])) for i in ranked]

    def passages_for(self, question: str, limit: int = 3) -> list[tuple[Article, str]]:
        """The best passages for ``question``, one entry per article (its passages joined), best first."""
        found: dict[str, tuple[Article, list[str]]] = {}
        for article, passage, _score in self.search(question, limit):
            found.setdefault(article.id, (article, []))[1].append(passage)
        return [(article, "\n\n".join(parts)) for article, parts in found.values()]

    def coverage(self, question: str, article: Article) -> float:
        """The idf-weighted share of the question's content words that ``article`` contains."""
        query = set(terms(question))
        if not query:
            return 0.0
        have = self._article_terms[article.id]
        weight = {t: self._idf.get(t, self._unknown_idf) for t in query}
        return sum(w for t, w in weight.items() if t in have) / sum(weight.values())

    def answer(self, question: str) -> Answer | None:
        """The best grounded answer, or ``None`` when no article covers the question well enough."""
        hits = self.search(question)
        if not hits:
            return None
        # Of the best passages, the one whose article covers most of the question.
        confidence, article, passage, score = max(
            ((self.coverage(question, a), a, p, s) for a, p, s in hits), key=lambda hit: (hit[0], hit[3]))
        if confidence < self.settings.min_score:
            return None
        return Answer(article, passage, self._condense(question, article, passage), round(confidence, 3), score)

    def _condense(self, question: str, article: Article, passage: str) -> str:
        """The article's sentences that share the rarest words with the question (at most
        ``max_sentences``, in the article's order); the best passage's first sentences when none do."""
        limit = self.settings.max_sentences
        query = set(terms(question))
        sentences = [s for p in article.passages for s in _SENTENCE.split(p.replace("\n", " "))]

        def weight(sentence: str) -> float:
            return sum(self._idf.get(t, 0.0) for t in query & set(terms(sentence)))

        ranked = sorted(range(len(sentences)), key=lambda i: (-weight(sentences[i]), i))
        if not ranked or weight(sentences[ranked[0]]) == 0:
            return " ".join(_SENTENCE.split(passage.replace("\n", " "))[:limit])
        best = weight(sentences[ranked[0]])
        keep = sorted(i for i in ranked[:limit] if weight(sentences[i]) >= best / 2)
        return " ".join(sentences[i] for i in keep)

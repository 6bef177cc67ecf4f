"""The help center: Markdown articles, hybrid retrieval, grounded answers with a citation, abstaining.

Articles are Markdown files with front matter (``id``, ``title``, ``url``) in one folder. Each paragraph
is a passage and each passage is made of sentences, quoted as written.

Retrieval reads the question as :func:`bot.text.plain` gives it (links, mentions, emoji codes and markup
blanked), so what surrounds a question does not change its answer. With the sentence-embedding model
(:mod:`bot.embeddings`) a passage scores the cosine similarity between the question and its closest
sentence, plus ``lexical_weight`` times the lexical coverage of its article: the idf-weighted share of
the question's content words (stemmed) that the article contains. Meaning finds the sentence; the words
keep a question about something the help center never mentions (a product it does not integrate with,
a feature it does not have) from being answered by whatever sounds closest. Below ``min_match`` the bot
does not answer. Without the model (not installed, checksum failed, or ``embeddings = false``) passages
are ranked by BM25 (rank_bm25) and the article's coverage alone must reach ``min_score``.

The answer is the best sentence, with the sentences of its passage that match the question almost as
well, at most ``max_sentences``, in the article's order. A sentence that only makes sense after
another one (it starts with "They", "It", "This", "Then"...) never comes without the sentence before it.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import snowballstemmer
from rank_bm25 import BM25Okapi

from bot.embeddings import Embedder, Vectors, cache_folder, load_embedder
from bot.policy import Knowledge as KnowledgeSettings
from bot.text import plain

STOPWORDS = frozenset("""
a about above after again all am an and any are as at be been before being below between both but by can could
did do does doing down during each few for from further had has have having he her here hers him his how i if in
into is it its itself just me more most my myself no nor not now of off on once only or other our ours out over
own same she should so some such than that the their theirs them then there these they this those through to too
under until up very was we were what when where which while who whom why will with would you your yours yourself
hi hello hey please thanks thank help need want know tell get got let lets im ive id dont doesnt cant cannot able
way possible anyone someone something anything also still really just us notewise question wondering
whats wheres hows whos theres thats ur u pls plz ok okay
""".split())

_WORD = re.compile(r"[a-z0-9]+")
_APOSTROPHE = re.compile(r"['’]")
_SPACE = re.compile(r"\s+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"“(])")
_DEPENDENT = re.compile(
    r"^[\"“(]*(?:they|them|their|theirs|it|its|this|that|these|those|then|he|she|his|her|also|however|otherwise"
    r"|instead|so|but|and|or|too|both|such|which|again|still|here|there(?!\s+(?:is|are|was|were|will|may|can)\b)"
    r"|until then|after that|before that|in that case|if so|if not|the latter|the former|the same)\b",
    re.I,
)
"""A sentence that starts like this leans on the one before it ("They are kept...", "Then click...")."""
_STEMMER = snowballstemmer.stemmer("english")
_CLOSE = 0.1
"""Another sentence of the passage joins the best one when its similarity is at most this much lower
(with the lexical score alone: when its weight is at least half the best one's)."""


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """The Snowball (Porter 2) stem of an English word: "recordings" and "recorded" are both "record"."""
    return str(_STEMMER.stemWord(word))


def terms(text: str) -> list[str]:
    """The stemmed content words of ``text``, in order."""
    return [stem(w) for w in _WORD.findall(_APOSTROPHE.sub("", text.lower())) if w not in STOPWORDS]


def sentences(passage: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(_SPACE.sub(" ", passage).strip()) if s.strip()]


def leans_on_previous(sentence: str) -> bool:
    """Whether ``sentence`` only makes sense after the one before it."""
    return bool(_DEPENDENT.match(sentence))


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
    """Whole sentences of the article, as written, in its order."""
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


@dataclass(frozen=True)
class _Sentence:
    passage: int
    """Index into ``KnowledgeBase._passages``."""
    text: str
    leans: bool
    """Only makes sense after the sentence before it (same passage)."""


class KnowledgeBase:
    """Retrieval over a folder of articles. Build once; ``answer`` is pure and thread-safe.

    ``embedder`` is the sentence-embedding model to rank with; by default the shared one is loaded when
    the settings ask for embeddings (``None`` when it cannot be, then ranking is lexical).
    ``lexical=True`` ranks with the lexical score alone whatever is installed.
    """

    def __init__(self, articles: list[Article], settings: KnowledgeSettings | None = None, *,
                 embedder: Embedder | None = None, lexical: bool = False) -> None:
        if not articles:
            raise KnowledgeError("the help center has no articles")
        ids = Counter(a.id for a in articles)
        if dupes := sorted(i for i, n in ids.items() if n > 1):
            raise KnowledgeError(f"article ids must be unique; repeated: {dupes}")
        self.articles = articles
        self.settings = settings or KnowledgeSettings()
        self._passages: list[tuple[Article, str]] = [(a, p) for a in articles for p in a.passages]
        if not self._passages:
            raise KnowledgeError("the help center's articles have no text (only front matter and headings)")
        self._article_of = [i for i, a in enumerate(articles) for _ in a.passages]
        corpus = [terms(a.title) + terms(p) for a, p in self._passages]
        self._bm25 = BM25Okapi(corpus)
        self._corpus = [set(words) for words in corpus]
        documents = [set(terms(a.title + " " + a.body)) for a in articles]
        frequency = Counter(t for d in documents for t in d)
        n = len(articles)
        self._idf = {t: math.log(1 + n / f) for t, f in frequency.items()}
        self._unknown_idf = math.log(1 + n)
        self._article_terms = {a.id: d for a, d in zip(articles, documents, strict=True)}
        self._documents = documents
        self.urls = frozenset(a.url for a in articles)

        self._sentences: list[_Sentence] = []
        for index, (_article, passage) in enumerate(self._passages):
            for sentence in sentences(passage):
                self._sentences.append(_Sentence(index, sentence, leans_on_previous(sentence)))
        self._sentence_passage = np.asarray([s.passage for s in self._sentences], dtype=np.int64)
        self._article_sentences: list[list[int]] = [[] for _ in articles]
        for i, s in enumerate(self._sentences):
            self._article_sentences[self._article_of[s.passage]].append(i)
        self._sentence_terms = [set(terms(self._in_context(i))) for i in range(len(self._sentences))]

        if lexical or not self.settings.embeddings:
            embedder = None
        elif embedder is None:
            embedder = load_embedder(cache_folder(self.settings.cache))
        self._embedder = embedder
        # Answers are a pure function of the (plain) question: repeated questions cost a look-up.
        self._answers = lru_cache(maxsize=2048)(self._answer)
        self._vectors: Vectors | None = None
        if embedder is not None:
            # A sentence that leans on the one before is embedded with it, so that "They" has a meaning.
            texts = [self._in_context(i) for i in range(len(self._sentences))]
            self._vectors = embedder.vectors(texts, cache_folder(self.settings.cache))

    @property
    def semantic(self) -> bool:
        """Whether answers are ranked with sentence embeddings (else with the lexical score alone)."""
        return self._embedder is not None

    @classmethod
    def load(cls, folder: str | Path | None = None, settings: KnowledgeSettings | None = None, *,
             embedder: Embedder | None = None, lexical: bool = False) -> KnowledgeBase:
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
        return cls(articles, settings, embedder=embedder, lexical=lexical)

    # ---- ranking ----

    def _in_context(self, index: int) -> str:
        """The sentence with those it leans on before it (in its passage)."""
        start = min(self._with_context(index) or {index})
        return " ".join(s.text for s in self._sentences[start:index + 1])

    def _coverages(self, query: set[str]) -> list[float]:
        """For each article, the idf-weighted share of ``query`` that it contains."""
        if not query:
            return [0.0] * len(self.articles)
        weight = {t: self._idf.get(t, self._unknown_idf) for t in query}
        total = sum(weight.values())
        return [sum(w for t, w in weight.items() if t in have) / total for have in self._documents]

    def _similarities(self, question: str) -> Vectors | None:
        """The cosine similarity of ``question`` (plain text) with every sentence, or ``None`` without a model."""
        if self._embedder is None or self._vectors is None:
            return None
        return self._vectors @ self._embedder.embed(question)

    def _hybrid(self, question: str) -> tuple[list[float], Vectors] | None:
        """Per passage, the best sentence's similarity plus ``lexical_weight`` times its article's
        coverage; and the sentences' similarities. ``None`` without a model."""
        similarity = self._similarities(question)
        if similarity is None:
            return None
        best = np.full(len(self._passages), -1.0, dtype=np.float32)
        np.maximum.at(best, self._sentence_passage, similarity)
        coverage = self._coverages(set(terms(question)))
        weight = self.settings.lexical_weight
        scores = [float(best[i]) + weight * coverage[self._article_of[i]] for i in range(len(self._passages))]
        return scores, similarity

    def search(self, question: str, limit: int = 3) -> list[tuple[Article, str, float]]:
        """The best passages for ``question``, best first, with their scores (hybrid with the model,
        else BM25 over the passages that share a word with the question)."""
        question = _SPACE.sub(" ", plain(question)).strip()
        if not question:
            return []
        hybrid = self._hybrid(question)
        if hybrid is not None:
            scores = hybrid[0]
            ranked = sorted(range(len(scores)), key=lambda i: scores[i], reverse=True)[:limit]
            return [(self._passages[i][0], self._passages[i][1], scores[i]) for i in ranked]
        query = terms(question)
        if not query:
            return []
        bm25 = self._bm25.get_scores(query)
        # BM25's idf can be zero or below for words in most passages (a small help center): keep
        # every passage that shares a word with the question, best first.
        wanted = set(query)
        sharing = [i for i, words in enumerate(self._corpus) if wanted & words]
        ranked = sorted(sharing, key=lambda i: bm25[i], reverse=True)[:limit]
        return [(self._passages[i][0], self._passages[i][1], float(bm25[i])) for i in ranked]

    def passages_for(self, question: str, limit: int = 3) -> list[tuple[Article, str]]:
        """The best passages for ``question``, one entry per article (its passages joined), best first."""
        found: dict[str, tuple[Article, list[str]]] = {}
        for article, passage, _score in self.search(question, limit):
            found.setdefault(article.id, (article, []))[1].append(passage)
        return [(article, "\n\n".join(parts)) for article, parts in found.values()]

    def coverage(self, question: str, article: Article) -> float:
        """The idf-weighted share of the question's content words that ``article`` contains."""
        query = set(terms(plain(question)))
        if not query:
            return 0.0
        have = self._article_terms[article.id]
        weight = {t: self._idf.get(t, self._unknown_idf) for t in query}
        return sum(w for t, w in weight.items() if t in have) / sum(weight.values())

    # ---- answering ----

    def answer(self, question: str) -> Answer | None:
        """The best grounded answer, or ``None`` when nothing in the help center fits the question well."""
        question = _SPACE.sub(" ", plain(question)).strip()
        return self._answers(question) if question else None

    def _answer(self, question: str) -> Answer | None:
        hybrid = self._hybrid(question)
        if hybrid is None:
            return self._lexical_answer(question)
        scores, similarity = hybrid
        if not scores:
            return None
        best = max(range(len(scores)), key=lambda i: scores[i])
        score = scores[best]
        if score < self.settings.min_match:
            return None
        article, passage = self._passages[best]
        # Within the article, sentences rank by the same blend, with each sentence's own coverage.
        weight = self.settings.lexical_weight
        members = self._article_sentences[self._article_of[best]]
        shares = self._shares(question, members)
        ranked = {i: float(similarity[i]) + weight * share for i, share in zip(members, shares, strict=True)}
        confidence = min(1.0, max(0.0, score / (1 + weight)))
        return Answer(article, passage, self._condense(ranked, _CLOSE), round(confidence, 3), round(score, 3))

    def _shares(self, question: str, members: list[int]) -> list[float]:
        """For each of these sentences (with those it leans on), the idf-weighted share of the question's
        words it has."""
        query = set(terms(question))
        if not query:
            return [0.0] * len(members)
        weight = {t: self._idf.get(t, self._unknown_idf) for t in query}
        total = sum(weight.values())
        return [sum(w for t, w in weight.items() if t in self._sentence_terms[i]) / total for i in members]

    def _lexical_answer(self, question: str) -> Answer | None:
        hits = self.search(question)
        if not hits:
            return None
        # Of the best passages, the one whose article covers most of the question.
        confidence, article, passage, score = max(
            ((self.coverage(question, a), a, p, s) for a, p, s in hits), key=lambda hit: (hit[0], hit[3]))
        if confidence < self.settings.min_score:
            return None
        index = self._passages.index((article, passage))
        query = set(terms(question))
        ranked = {i: sum(self._idf.get(t, 0.0) for t in query & self._sentence_terms[i])
                  for i in self._article_sentences[self._article_of[index]]}
        if max(ranked.values()) <= 0:  # no sentence shares a rare word: the best passage's opening
            ranked = {i: -n for n, i in enumerate(i for i in ranked if self._sentences[i].passage == index)}
        top = max(ranked.values())
        return Answer(article, passage, self._condense(ranked, top / 2 if top > 0 else math.inf),
                      round(confidence, 3), score)

    def _condense(self, scores: dict[int, float], margin: float) -> str:
        """The best sentence by ``scores`` (sentence index -> score) and the others that score at most
        ``margin`` below it, at most ``max_sentences``, in the article's order. A sentence that leans on
        the one before it comes with that one, or not at all."""
        limit = self.settings.max_sentences
        ranked = sorted(scores, key=lambda i: (-scores[i], i))
        top = scores[ranked[0]]
        chosen: set[int] = set()
        for i in ranked:
            if chosen and scores[i] < top - margin:
                break
            needed = self._with_context(i)
            if needed is None or len(chosen | needed) > limit:
                continue
            chosen |= needed
            if len(chosen) >= limit:
                break
        return " ".join(self._sentences[i].text for i in sorted(chosen or {min(scores)}))

    def _with_context(self, index: int) -> set[int] | None:
        """``index`` and the sentences of its passage it leans on; ``None`` if it leans on nothing there."""
        needed = {index}
        while self._sentences[index].leans:
            if index == 0 or self._sentences[index - 1].passage != self._sentences[index].passage:
                return None
            index -= 1
            needed.add(index)
        return needed

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

Real messages wrap a question in context ("URGENT: how do I …, before our 2pm call??", a question and a
pasted log). So the help center scores the whole message and the parts of it that ask (:func:`focus`:
its sentences that ask, and their clauses that ask, cut at commas, colons, "before", "because", "since"
…; a long message is read for its first sentences that ask), and answers from the best, a part only when
it beats the whole by ``FRAGMENT_MARGIN`` and the whole still agrees with its passage. A reading that names
a rare, specific term that no article mentions (:func:`is_specific`: an acronym, a product's name, a code
such as "HIPAA", "Zapier" or "27001") is never answered: a merely related sentence ("it is GDPR
compliant") would imply too much.

The answer is the best sentence, with the sentences of its article that match the question almost as
well (as the whole message and the part that found it put it), at most ``max_sentences``, in the
article's order. A sentence that only makes sense after another one (it starts with "They", "It",
"This", "Then"...) never comes without the sentence before it. A question about a price gets a sentence
that says what something costs or where the price is shown, or no answer.
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

from bot.embeddings import Embedder, Vectors, cache_folder, load_embedder, vocabulary
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
isnt arent wasnt werent wont wouldnt couldnt shouldnt didnt havent hasnt hadnt youre theyre weve youve theyve
ill youll theyll hed shed wed youd theyd fyi btw asap thx ty
""".split())
SHORT = {"diff": "difference", "info": "information", "convo": "conversation", "config": "configuration",
         "acct": "account", "vid": "video", "vids": "videos", "rec": "recording", "recs": "recordings",
         "min": "minute", "mins": "minutes", "hr": "hour", "hrs": "hours", "msg": "message", "pw": "password",
         "pwd": "password", "cal": "calendar", "sub": "subscription", "tz": "timezone", "org": "organisation"}
"""Chat shorthand, read as the word it stands for."""

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
_ASKS = re.compile(
    r"^\W*(?:how|what|whats|when|where|which|why|who|can|could|does|do|did|is|are|was|will|would|should|may"
    r"|am|has|have|any)\b|\bhow (?:to|do|can|does|long|much|many|soon|often)\b"
    r"|\b(?:is there|are there|do you|can i|can we|tell me|wondering|want to know|need to know)\b", re.I)
"""A clause that asks something (a sentence asks with a question mark too)."""
_BREAK = re.compile(r"(?<=[.!?])\s+|\s*\n\s*")
"""Where a message's sentences end (a line break ends one too)."""
_CLAUSE = re.compile(r"\s*[,;:]\s+|\s+[-–—]+\s+|\s+(?:before|because|since|so|while|as soon as|for (?:our|my|the))\s+",
                     re.I)
"""Where the clause that asks may be cut from what surrounds it ("…, how do I …", "… before our 2pm call")."""
_LEAD = re.compile(r"^(?:\W*\b(?:and|so|but|also|anyway|ok|okay|well|now|then|basically|urgent|asap|fyi|btw|quick"
                   r"(?: question| q)?)\b)+\W*", re.I)
"""Words that open a clause without being part of what it asks."""
_PREFIX = re.compile(r"^(?:un|re|dis|mis|non|pre|de|co|sub|over|under|up|off|out|in)(?=[a-z]{3})")
_SUFFIX = re.compile(r"(?<=[a-z]{3})(?:s|es|ed|d|ing|able|ible|er|ers|ations?|i[sz]e|i[sz]ed|i[sz]ing"
                     r"|in|up|out|on|off)$")
"""A common prefix or ending, or a particle that makes a compound ("unlink", "permissions", "login")."""
_PRICE_ASKED = re.compile(
    r"\b(?:costs?|prices?|pricing|priced)\b|\bhow much (?:is|are|does|will|would) (?:it|the|a|an|your|this|that|each"
    r"|one|per|pro|business|notewise)\b|\bhow much (?:do|would|will) (?:i|we|you) (?:pay|be charged|charge)\b", re.I)
"""A question about what something costs."""
_PRICE_GIVEN = re.compile(r"[$€£¥]\s?\d|\b\d[\d.,]*\s?(?:usd|eur|gbp|dollars?|euros?|pounds?)\b"
                          r"|\b(?:costs?|prices?|pricing|free of charge|no charge|no extra cost)\b", re.I)
"""A sentence that says what something costs, or where the price is shown."""
_SMALL_NUMBER = re.compile(r"^\d{1,2}(?:st|nd|rd|th|s|am|pm|h|m|min|mins|k|x)?$")
"""A day of the month, an hour, a count: said in passing ("before our 2pm call", "my 1:1s")."""
FOCUS = 400
"""A message longer than this (characters) is read for its sentences that ask, at most ``ASKED`` of them."""
ASKED = 3
FRAGMENT_MARGIN = 0.03
"""A part of the message (a sentence, a clause) must beat the whole message by this much to be preferred."""
FRAGMENT_SUPPORT = 0.2
"""A part is read only where the whole message scores its passage at most this much below ``min_match``."""
LEXICAL_FRAGMENT_MARGIN = 0.15
"""The same for the lexical score alone (a share of the words), where a short part is covered more easily."""
_CLOSE = 0.1
"""Another sentence of the passage joins the best one when its similarity is at most this much lower
(with the lexical score alone: when its weight is at least half the best one's)."""


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """The Snowball (Porter 2) stem of an English word: "recordings" and "recorded" are both "record"."""
    return str(_STEMMER.stemWord(word))


def terms(text: str) -> list[str]:
    """The stemmed content words of ``text``, in order."""
    return [stem(w) for w in words(text) if w not in STOPWORDS]


def words(text: str) -> list[str]:
    """The words of ``text``, lower case, without apostrophes, chat shorthand spelled out."""
    return [SHORT.get(w, w) for w in _WORD.findall(_APOSTROPHE.sub("", text.lower()))]


def sentences(passage: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(_SPACE.sub(" ", passage).strip()) if s.strip()]


def focus(question: str) -> list[str]:
    """The question to answer, then the parts of it that ask something on their own.

    The first item is the whole message, or, for one longer than ``FOCUS`` characters, its first
    ``ASKED`` sentences that ask (else its first two sentences). Then, when there are several, each
    sentence that asks; then each clause that asks, cut at commas, colons, dashes and words such as
    "before", "because", "since", "so" or "while", without an opening "so", "anyway" or "URGENT".
    "URGENT: how do I add a teammate before our 2pm call??" gives "how do I add a teammate"; a pasted
    log after "how do I invite a teammate?" gives that sentence alone.
    """
    question = _SPACE.sub(" ", question).strip() if len(question) <= FOCUS else question.strip()
    said = [s.strip() for s in _BREAK.split(question) if s.strip()]
    asking = [s for s in said if "?" in s or _ASKS.search(s)]
    if len(question) > FOCUS:
        said = asking[:ASKED] or said[:2]
        asking = said if asking else []
        question = _SPACE.sub(" ", " ".join(said))[:FOCUS * 2]
    parts = [question]
    for sentence in asking if len(said) > 1 else said:
        sentence = _SPACE.sub(" ", sentence)
        if sentence not in parts:
            parts.append(sentence)
        for clause in _CLAUSE.split(sentence):
            clause = _LEAD.sub("", clause).strip()
            if clause and clause not in parts and _ASKS.search(clause):
                parts.append(clause)
    return parts


_OWNER_NOUNS = frozenset("""workspace workspaces team teams org orgs organisation organization company corp corporation
inc ltd llc gmbh office""".split())
"""Nouns after which an unknown word names the customer's own organisation, not what the question is about
("account" is not one: "my GitHub account" names another product)."""


def is_specific(word: str, common: frozenset[str]) -> bool:
    """Whether ``word`` (lower case) is a rare, specific term: a code or a number of three digits or more,
    or a word that is not in ``common`` (:func:`bot.embeddings.vocabulary`), neither without a common
    prefix or ending: "hipaa", "jira", "mp3" and "27001" are; "unlink", "login", "2pm" and "1:1s" are not."""
    if any(c.isdigit() for c in word):
        return not _SMALL_NUMBER.match(word)
    if word in common:
        return False
    root = _PREFIX.sub("", word)
    return not any(bare in common or bare + "e" in common
                   for bare in {root, _SUFFIX.sub("", word), _SUFFIX.sub("", root)} - {word})


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
class _Query:
    text: str
    weights: dict[str, float]
    """Stemmed content word -> its idf weight (as much as a word of one article for a word of none)."""
    specific: int
    """How many rare, specific terms it names that no article mentions."""


@dataclass(frozen=True)
class _Reading:
    """One reading of a question (the whole of it, or a part that asks) and how the help center scores it."""

    query: _Query
    handicap: float
    scores: list[float]
    """Per passage (see ``KnowledgeBase._hybrid``)."""
    similarity: Vectors
    """Per sentence."""


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
        self._common = vocabulary()
        # Each word of the help center, and each with one letter left out: a question's word that is one
        # of these, or becomes one with a letter left out, is a typing slip ("reccording"), not a name.
        written = {w for a in articles for w in words(a.title + " " + a.body) if len(w) >= 5}
        self._near = written | {w[:i] + w[i + 1:] for w in written for i in range(len(w))}
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

    def _query(self, text: str) -> _Query:
        """``text``'s content words with their weights, and how many of them are rare, specific terms that
        no article mentions."""
        weights: dict[str, float] = {}
        specific: set[str] = set()
        sequence = words(text)
        for index, word in enumerate(sequence):
            if word in STOPWORDS:
                continue
            # The customer's own names ("the Acme Corp workspace", "our globex team") are not the subject.
            owned = index + 1 < len(sequence) and sequence[index + 1] in _OWNER_NOUNS
            term = stem(word)
            if term in self._idf:
                weights[term] = self._idf[term]
                continue
            # A word no article uses weighs as much as a word of one article.
            weights[term] = self._unknown_idf
            if self._common is not None and not owned and is_specific(word, self._common) \
                    and not self._misspelt(word):
                specific.add(term)
        return _Query(text, weights, len(specific))

    def _misspelt(self, word: str) -> bool:
        """Whether ``word`` is within a slip of a key (a letter added, left out, changed or swapped) of a
        word of the help center."""
        return len(word) >= 5 and (word in self._near or any(word[:i] + word[i + 1:] in self._near
                                                              for i in range(len(word))))

    def _coverages(self, query: _Query) -> list[float]:
        """For each article, the weighted share of the question's words that it contains."""
        total = sum(query.weights.values())
        if not total:
            return [0.0] * len(self.articles)
        return [sum(w for t, w in query.weights.items() if t in have) / total for have in self._documents]

    def _similarities(self, question: str) -> Vectors | None:
        """The cosine similarity of ``question`` (plain text) with every sentence, or ``None`` without a model."""
        if self._embedder is None or self._vectors is None:
            return None
        return self._vectors @ self._embedder.embed(question)

    def _hybrid(self, query: _Query, handicap: float) -> tuple[list[float], Vectors] | None:
        """Per passage, the best sentence's similarity plus ``lexical_weight`` times its article's
        coverage, less ``handicap``; and the sentences' similarities. ``None`` without a model."""
        similarity = self._similarities(query.text)
        if similarity is None:
            return None
        best = np.full(len(self._passages), -1.0, dtype=np.float32)
        np.maximum.at(best, self._sentence_passage, similarity)
        coverage = self._coverages(query)
        weight = self.settings.lexical_weight
        scores = [float(best[i]) + weight * coverage[self._article_of[i]] - handicap
                  for i in range(len(self._passages))]
        return scores, similarity

    def _readings(self, question: str) -> list[_Reading]:
        """The question and the parts of it that ask (:func:`focus`), each with its passages' scores and
        its sentences' similarities (none without a model)."""
        readings: list[_Reading] = []
        for n, part in enumerate(focus(question)):
            query = self._query(part)
            if n and len(query.weights) < 2:
                continue  # a clause of one word is not a question of its own
            handicap = FRAGMENT_MARGIN if n else 0.0
            hybrid = self._hybrid(query, handicap)
            if hybrid is None:
                return []
            readings.append(_Reading(query, handicap, *hybrid))
        return readings

    @staticmethod
    def _best(readings: list[_Reading]) -> _Reading | None:
        """The reading whose best passage scores highest (the whole question on a tie)."""
        return max((r for r in readings if r.scores), key=lambda r: max(r.scores), default=None)

    def _supported(self, part: _Reading, whole: _Reading) -> bool:
        """Whether the whole message agrees, if weakly, with the passage a part of it finds best: it scores
        that passage at least ``min_match - FRAGMENT_SUPPORT``. "How long does it take?" after a sentence
        about a bank transfer is not a question about transcripts."""
        if part is whole or not part.scores:
            return True
        best = max(range(len(part.scores)), key=lambda i: part.scores[i])
        return whole.scores[best] >= self.settings.min_match - FRAGMENT_SUPPORT

    def search(self, question: str, limit: int = 3) -> list[tuple[Article, str, float]]:
        """The best passages for ``question``, best first, with their scores (hybrid with the model,
        else BM25 over the passages that share a word with the question)."""
        question = _SPACE.sub(" ", plain(question)).strip()
        if not question:
            return []
        if self._embedder is not None:
            best = self._best(self._readings(question))
            if best is None:
                return []
            scores = best.scores
            ranked = sorted(range(len(scores)), key=lambda i: scores[i], reverse=True)[:limit]
            return [(self._passages[i][0], self._passages[i][1], scores[i]) for i in ranked]
        query = terms(" ".join(focus(question)[:1]))
        if not query:
            return []
        return self._bm25_search(query, limit)

    def _bm25_search(self, query: list[str], limit: int) -> list[tuple[Article, str, float]]:
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
        """The weighted share of the question's content words that ``article`` contains."""
        query = self._query(plain(question))
        total = sum(query.weights.values())
        have = self._article_terms[article.id]
        return sum(w for t, w in query.weights.items() if t in have) / total if total else 0.0

    # ---- answering ----

    def answer(self, question: str) -> Answer | None:
        """The best grounded answer, or ``None`` when nothing in the help center fits the question well."""
        question = _SPACE.sub(" ", plain(question)).strip()
        return self._answers(question) if question else None

    def _answer(self, question: str) -> Answer | None:
        if self._embedder is None:
            return self._lexical_answer(question)
        # A reading that names a rare, specific term no article mentions (an acronym, a product, a code:
        # "is it HIPAA compliant?") is not answered from a merely related sentence ("it is GDPR compliant").
        readings = self._readings(question)
        found = self._best([r for r in readings if not r.query.specific and self._supported(r, readings[0])])
        if found is None:
            return None
        scores = found.scores
        best = max(range(len(scores)), key=lambda i: scores[i])
        score = scores[best]
        if score < self.settings.min_match:
            return None
        article, passage = self._passages[best]
        # Within the article, sentences rank by the same blend, with each sentence's own coverage, as the
        # whole message and the part that found the article put it (their mean): the part that asks finds
        # the article, and what the rest adds ("we use SSO, how do I change my email") can choose the sentence.
        weight = self.settings.lexical_weight
        members = self._article_sentences[self._article_of[best]]
        ranked = dict.fromkeys(members, 0.0)
        chosen = [found] if found is readings[0] else [readings[0], found]
        for reading in chosen:
            shares = self._shares(reading.query, members)
            for i, share in zip(members, shares, strict=True):
                ranked[i] += (float(reading.similarity[i]) + weight * share) / len(chosen)
        text = self._priced(" ".join(r.query.text for r in chosen), ranked, _CLOSE)
        if text is None:
            return None
        confidence = min(1.0, max(0.0, score / (1 + weight)))
        return Answer(article, passage, text, round(confidence, 3), round(score, 3))

    def _priced(self, question: str, ranked: dict[int, float], margin: float) -> str | None:
        """The condensed answer; for a question about a price, one that says what it costs (or where the
        price is shown), from the sentences of the article that do, or ``None`` when none does: a list
        of features is no answer to "what does it cost?"."""
        text = self._condense(ranked, margin)
        if not _PRICE_ASKED.search(question) or _PRICE_GIVEN.search(text):
            return text
        priced = {i: score for i, score in ranked.items() if _PRICE_GIVEN.search(self._in_context(i))}
        return self._condense(priced, margin) if priced else None

    def _shares(self, query: _Query, members: list[int]) -> list[float]:
        """For each of these sentences (with those it leans on), the weighted share of the question's
        words it has."""
        total = sum(query.weights.values())
        if not total:
            return [0.0] * len(members)
        return [sum(w for t, w in query.weights.items() if t in self._sentence_terms[i]) / total for i in members]

    def _lexical_answer(self, question: str) -> Answer | None:
        # Of the question and the parts of it that ask (without a rare term no article mentions), the one
        # an article covers best; of its best passages, the one whose article covers most of it.
        best: tuple[float, _Query, Article, str, float] | None = None
        for n, part in enumerate(focus(question)):
            query = self._query(part)
            if not query.weights or query.specific or (n and len(query.weights) < 2):
                continue
            penalty = LEXICAL_FRAGMENT_MARGIN if n else 0.0
            for article, passage, score in self._bm25_search(list(query.weights), 3):
                have = self._article_terms[article.id]
                covered = sum(w for t, w in query.weights.items() if t in have) / sum(query.weights.values())
                if best is None or (covered - penalty, score) > (best[0], best[4]):
                    best = (covered - penalty, query, article, passage, score)
        if best is None or best[0] < self.settings.min_score:
            return None
        confidence, query, article, passage, score = best
        index = self._passages.index((article, passage))
        ranked = {i: sum(self._idf.get(t, 0.0) for t in query.weights if t in self._sentence_terms[i])
                  for i in self._article_sentences[self._article_of[index]]}
        if max(ranked.values()) <= 0:  # no sentence shares a rare word: the best passage's opening
            ranked = {i: -n for n, i in enumerate(i for i in ranked if self._sentences[i].passage == index)}
        top = max(ranked.values())
        text = self._priced(query.text, ranked, top / 2 if top > 0 else math.inf)
        return Answer(article, passage, text, round(max(0.0, confidence), 3), score) if text is not None else None

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

"""The help center: the shipped articles, retrieval, grounded answers, abstaining, bad folders."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.knowledge import KnowledgeBase, KnowledgeError

TOPICS = ["connect-calendars", "meeting-platforms", "transcript-timing", "sharing-recordings", "languages", "auto-join",
          "change-email", "invite-teammates", "crm-exports", "retention", "plans", "payment-method",
          "delete-recording", "privacy-security", "mobile-api"]


def test_the_sample_help_center_covers_the_issue_topics(knowledge):
    ids = {a.id for a in knowledge.articles}
    assert len(ids) >= 15 and set(TOPICS) <= ids
    for article in knowledge.articles:
        assert article.title and article.url.startswith("https://help.notewise.example/")


@pytest.mark.parametrize("question, article", [
    ("How do I connect my Outlook calendar?", "connect-calendars"),
    ("Does it work with Microsoft Teams?", "meeting-platforms"),
    ("when will my transcript be ready", "transcript-timing"),
    ("how can I share a recording with someone outside my company", "sharing-recordings"),
    ("what languages do you support", "languages"),
    ("how do I stop the bot joining a meeting", "auto-join"),
    ("how do I change my email address", "change-email"),
    ("how to invite my team", "invite-teammates"),
    ("can I export notes to salesforce", "crm-exports"),
    ("how long do you keep recordings", "retention"),
    ("what is the difference between pro and business", "plans"),
    ("how do I update my credit card", "payment-method"),
    ("how do I delete a recording", "delete-recording"),
    ("is there an android app", "mobile-api"),
])
def test_questions_are_answered_from_the_right_article(knowledge, question, article):
    answer = knowledge.answer(question)
    assert answer is not None and answer.article.id == article
    # Nothing in the answer comes from outside the article: it is made of the article's own sentences.
    flat = re.sub(r"\s+", " ", answer.article.body)
    for sentence in re.split(r"(?<=[.!?]) ", answer.text):
        assert sentence in flat


@pytest.mark.parametrize("question", [
    "can I integrate with Jira?", "what is the capital of France", "do you offer a discount for nonprofits?",
    "how do I reset my password?",
])
def test_below_the_threshold_it_does_not_guess(knowledge, question):
    assert knowledge.answer(question) is None


def test_a_folder_of_its_own(tmp_path: Path):
    (tmp_path / "a.md").write_text("---\nid: refunds\ntitle: Refunds\nurl: https://help.example.com/refunds\n---\n"
                                   "Refunds are paid within 5 business days to the original card.\n")
    kb = KnowledgeBase.load(tmp_path)
    answer = kb.answer("when are refunds paid?")
    assert answer is not None and answer.article.url == "https://help.example.com/refunds"


@pytest.mark.parametrize("content, reason", [
    ("no front matter", "no front matter"),
    ("---\nid: x\ntitle: X\n---\nbody", "missing url"),
    ("---\nid: x\ntitle: X\nurl: ftp://x\n---\nbody", "url must start with"),
    ("---\nid x\n---\nbody", "is not 'key: value'"),
])
def test_bad_articles_name_the_file_and_the_reason(tmp_path: Path, content, reason):
    (tmp_path / "bad.md").write_text(content)
    with pytest.raises(KnowledgeError, match=reason) as err:
        KnowledgeBase.load(tmp_path)
    assert "bad.md" in str(err.value)


def test_an_empty_or_missing_folder_is_refused(tmp_path: Path):
    with pytest.raises(KnowledgeError, match="no articles"):
        KnowledgeBase.load(tmp_path)
    with pytest.raises(KnowledgeError, match="not a folder"):
        KnowledgeBase.load(tmp_path / "nope")

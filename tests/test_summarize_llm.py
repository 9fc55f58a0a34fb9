"""The ``openai`` backend against a real HTTP server on loopback that speaks the API.

The server gives canned chat-completions replies, malformed JSON, 400s, 500s and
replies too slow for the timeout; every failure must end in the offline default,
never in an empty result, and every lesson kept must be grounded in the article.
"""

# ruff: noqa: E501  (article fixtures are prose, kept one paragraph a line)

from __future__ import annotations

import datetime as dt
import http.server
import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from digest.capture import free_port
from digest.config import LLMSettings, SummarizeSettings, load_settings
from digest.db import Store
from digest.errors import SummarizerError
from digest.models import Article, Summary
from digest.summarize import get_summarizer, summarize_article
from digest.summarize.grounding import unsupported_facts
from digest.summarize.llm import MAX_RETRIES, SCHEMA
from digest.summarize.text import split_sentences

TEXT = (
    "Le studio lyonnais Pixel Nord a présenté mardi un court métrage réalisé en six semaines "
    "avec une équipe de 12 personnes. "
    "Le film mêle animation traditionnelle et images générées, retouchées image par image par les artistes. "
    "« L’outil nous a fait gagner du temps sur les décors, pas sur l’histoire », explique la réalisatrice Inès Morel. "
    "Le budget total atteint 180.000 euros, soit trois fois moins qu’une production classique. "
    "Les écoles d’animation de la région suivent l’expérience de près."
)
TITLE = "Pixel Nord mêle animation et IA générative"

GOOD = {
    "summary": "Pixel Nord a réalisé en six semaines, avec 12 personnes, un court métrage qui mêle "
    "animation traditionnelle et images générées.",
    "lessons": [
        {
            "lesson": "Les outils génératifs accélèrent la fabrication des décors, mais l’écriture reste humaine.",
            "quote": "L'outil nous a fait gagner du temps sur les décors, pas sur l'histoire",  # ' for ’
        },
        {
            "lesson": "Les images générées demandent encore un vrai travail de retouche par les artistes.",
            "quote": "retouchées image par image par les artistes",
        },
        {
            "lesson": "Un budget de 180 000 euros montre que de petites équipes peuvent produire un film.",
            "quote": "le budget total atteint 180.000 euros",  # case differs
        },
    ],
}


def article(text: str = TEXT, title: str = TITLE, language: str = "") -> Article:
    return Article(
        source="test",
        url="https://example.org/pixel",
        title=title,
        text=text,
        published=dt.datetime(2026, 3, 3, tzinfo=dt.UTC),
        language=language,
    )


def completion(content: str) -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "model": "test-model",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
        }
    ).encode()


Reply = Callable[[dict[str, Any]], tuple[int, bytes] | None]


@dataclass
class FakeLLM:
    """An OpenAI-compatible endpoint; ``replies`` are used in order, the last one repeats."""

    base_url: str
    replies: list[Reply] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def settings(self, **llm: Any) -> SummarizeSettings:
        values = {
            "base_url": self.base_url,
            "model": "test-model",
            "api_key": "sk-test",
            "timeout": 5.0,
        }
        values.update(llm)
        return SummarizeSettings(backend="openai", llm=LLMSettings(**values))

    def handle(self, request: http.server.BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length", "0"))
        body = json.loads(request.rfile.read(length))
        self.bodies.append(body)
        self.headers.append(dict(request.headers.items()))
        reply = self.replies[min(len(self.bodies), len(self.replies)) - 1]
        answer = reply(body)
        if answer is None:  # too slow: the client gives up first
            self.release.wait(10)
            answer = (200, completion(json.dumps(GOOD)))
        status, payload = answer
        try:
            request.send_response(status)
            request.send_header("Content-Type", "application/json")
            request.send_header("Content-Length", str(len(payload)))
            request.end_headers()
            request.wfile.write(payload)
        except OSError:
            pass  # the client timed out and closed the connection


def ok(content: dict[str, Any] | str) -> Reply:
    text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    return lambda body: (200, completion(text))


def status(code: int) -> Reply:
    return lambda body: (code, b'{"error": {"message": "boom"}}')


def hang(body: dict[str, Any]) -> None:
    return None


@pytest.fixture
def llm(http_server: Any) -> Iterator[FakeLLM]:
    fake = FakeLLM(http_server.url("/v1"))
    http_server.routes["/v1/chat/completions"] = fake.handle
    yield fake
    fake.release.set()


def assert_grounded(result: Any, text: str = TEXT) -> None:
    """What is shown is grounded; with no lesson, the editor is told why."""
    assert result.summary.strip()
    assert result.lessons or result.no_lessons == "no_takeaway"
    for lesson in result.lessons:
        assert text[lesson.start : lesson.end] == lesson.quote
        assert unsupported_facts(lesson.text, text) == []
    assert unsupported_facts(result.summary, text) == []


def test_a_good_reply_is_used_and_its_quotes_are_located(llm: FakeLLM) -> None:
    llm.replies = [ok(GOOD)]
    result = summarize_article(article(), llm.settings())
    assert result.backend == "openai"
    assert result.summary == GOOD["summary"]
    assert [x.text for x in result.lessons] == [x["lesson"] for x in GOOD["lessons"]]
    assert result.grounded and all(result.checks.values()), result.checks
    assert (
        result.lessons[0].quote
        == "L’outil nous a fait gagner du temps sur les décors, pas sur l’histoire"
    )
    assert result.lessons[2].quote == "Le budget total atteint 180.000 euros"
    assert_grounded(result)

    assert [x.backend for x in result.lessons] == ["openai"] * 3

    (body,) = llm.bodies
    assert body["model"] == "test-model"
    assert body["max_tokens"] > 0  # always: a looping model stops
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"] == SCHEMA
    # The instructions travel in the user message: some chat templates drop the system one.
    (user,) = body["messages"]
    assert user["role"] == "user"
    assert "métiers du numérique et de la création" in user["content"]
    assert "mot pour mot" in user["content"]
    assert TEXT in user["content"] and TITLE in user["content"]
    assert llm.headers[0]["Authorization"] == "Bearer sk-test"


def test_the_prompt_speaks_to_the_configured_audience(llm: FakeLLM) -> None:
    llm.replies = [ok(GOOD)]
    settings = replace(
        llm.settings(),
        audience="acteurs de la formation et des métiers créatifs",
        angle="ce que cela change pour nos métiers",
    )
    summarize_article(article(), settings)
    prompt = llm.bodies[0]["messages"][0]["content"]
    assert "acteurs de la formation et des métiers créatifs" in prompt
    assert "ce que cela change pour nos métiers" in prompt


def test_an_english_article_gets_an_english_prompt(llm: FakeLLM) -> None:
    text = (
        "The studio Pixel North released a short film made in six weeks by a team of 12 people. "
        "The film mixes hand-drawn animation and generated images retouched by the artists. "
        "Its budget was three times lower than a classic production."
    )
    llm.replies = [
        ok(
            {
                "summary": "Pixel North made a short film in six weeks.",
                "lessons": [
                    {
                        "lesson": "Generated images still need retouching.",
                        "quote": "generated images retouched by the artists",
                    },
                    {
                        "lesson": "Small teams can produce films.",
                        "quote": "made in six weeks by a team of 12 people",
                    },
                ],
            }
        )
    ]
    result = summarize_article(article(text, title="Pixel North"), llm.settings())
    assert result.backend == "openai"
    prompt = llm.bodies[0]["messages"][0]["content"]
    assert "digital and creative" in prompt and "word for word" in prompt
    assert_grounded(result, text)


def test_a_server_without_json_schema_gets_json_object(llm: FakeLLM) -> None:
    def picky(body: dict[str, Any]) -> tuple[int, bytes]:
        if body["response_format"]["type"] == "json_schema":
            return 400, b'{"error": {"message": "response_format json_schema is not supported"}}'
        return 200, completion(json.dumps(GOOD))

    llm.replies = [picky]
    assert summarize_article(article(), llm.settings()).backend == "openai"
    assert [b["response_format"]["type"] for b in llm.bodies] == ["json_schema", "json_object"]
    assert llm.bodies[1]["response_format"]["schema"] == SCHEMA  # llama.cpp constrains to it
    # The next article goes straight to json_object: the server's limits are remembered.
    other = article(TEXT.replace("mardi", "lundi"))
    assert summarize_article(other, llm.settings()).backend == "openai"
    assert [b["response_format"]["type"] for b in llm.bodies][2:] == ["json_object"]


def test_a_model_that_refuses_temperature_is_asked_without_it(llm: FakeLLM) -> None:
    def reasoning_model(body: dict[str, Any]) -> tuple[int, bytes]:
        if "temperature" in body:
            return (
                400,
                b'{"error": {"message": "Unsupported value: \'temperature\' does not support 0"}}',
            )
        return 200, completion(json.dumps(GOOD))

    llm.replies = [reasoning_model]
    assert summarize_article(article(), llm.settings()).backend == "openai"
    assert ["temperature" in b for b in llm.bodies] == [True, False]
    assert all(b["response_format"]["type"] == "json_schema" for b in llm.bodies)


def test_malformed_json_is_not_asked_again(llm: FakeLLM) -> None:
    # At temperature 0 the same question gets the same bad answer: no retry.
    llm.replies = [ok('{"summary": "Pixel Nord a présenté'), ok(GOOD)]
    result = summarize_article(article(), llm.settings())
    assert len(llm.bodies) == 1
    assert result.backend == "extractive"
    assert_grounded(result)


def test_json_among_prose_is_found(llm: FakeLLM) -> None:
    llm.replies = [
        ok("Voici ma réponse :\n" + json.dumps(GOOD, ensure_ascii=False) + "\nBonne lecture !")
    ]
    assert summarize_article(article(), llm.settings()).backend == "openai"


def test_llama_cpp_answers_500_to_json_schema(llm: FakeLLM) -> None:
    def llama_cpp(body: dict[str, Any]) -> tuple[int, bytes]:
        if body["response_format"]["type"] == "json_schema":
            return 500, b'{"error": {"code": 500, "message": "Unrecognized schema"}}'
        return 200, completion(json.dumps(GOOD))

    llm.replies = [llama_cpp]
    assert summarize_article(article(), llm.settings()).backend == "openai"
    assert [b["response_format"]["type"] for b in llm.bodies] == ["json_schema", "json_object"]


def test_a_context_too_long_is_not_a_missing_feature(llm: FakeLLM) -> None:
    long_text = TEXT + " " + "Les écoles d’animation de la région suivent l’expérience. " * 400

    def small_context(body: dict[str, Any]) -> tuple[int, bytes]:
        if len(body["messages"][0]["content"]) > 6_000:
            return 400, (
                b'{"error": {"code": 400, "message": "the request exceeds the available '
                b'context size, try increasing it", "type": "exceed_context_size_error"}}'
            )
        return 200, completion(json.dumps(GOOD))

    llm.replies = [small_context]
    result = summarize_article(article(long_text), llm.settings())
    assert result.backend == "openai"
    sizes = [len(b["messages"][0]["content"]) for b in llm.bodies]
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] <= 6_000  # trimmed to fit
    assert all(b["response_format"]["type"] == "json_schema" for b in llm.bodies)


def test_a_fenced_json_answer_is_accepted(llm: FakeLLM) -> None:
    llm.replies = [ok("```json\n" + json.dumps(GOOD, ensure_ascii=False) + "\n```")]
    assert summarize_article(article(), llm.settings()).backend == "openai"


@pytest.mark.parametrize("code", [500, 503, 429])
def test_server_errors_fall_back_to_the_offline_default(llm: FakeLLM, code: int) -> None:
    llm.replies = [status(code)]
    result = summarize_article(article(), llm.settings())
    # 500: json_schema, json_object, then no response_format; 503 and 429: asked again twice.
    assert len(llm.bodies) == 3
    assert result.backend == "extractive"
    assert_grounded(result)


def test_a_refusal_is_not_retried(llm: FakeLLM) -> None:
    llm.replies = [status(401)]
    result = summarize_article(article(), llm.settings())
    assert len(llm.bodies) == 1
    assert result.backend == "extractive"


def test_timeouts_fall_back_to_the_offline_default(llm: FakeLLM) -> None:
    llm.replies = [hang]
    result = summarize_article(article(), llm.settings(timeout=1.0))
    # The deadline is the article's, retries included: the article is not asked forever.
    assert len(llm.bodies) <= 1 + MAX_RETRIES
    assert result.backend == "extractive"
    assert_grounded(result)


def test_a_server_that_is_down_falls_back_to_the_offline_default() -> None:
    settings = SummarizeSettings(
        backend="openai",
        llm=LLMSettings(base_url=f"http://127.0.0.1:{free_port()}/v1", model="m", timeout=2.0),
    )
    result = summarize_article(article(), settings)
    assert result.backend == "extractive"
    assert_grounded(result)


def test_ungrounded_lessons_are_dropped_and_replaced_from_the_offline_default(
    llm: FakeLLM, caplog: pytest.LogCaptureFixture
) -> None:
    reply = {
        "summary": GOOD["summary"],
        "lessons": [
            {
                "lesson": "Le studio a été racheté par Netflix.",
                "quote": "Pixel Nord a été racheté par Netflix",
            },
            {
                "lesson": "Le film a coûté 2 millions d'euros.",
                "quote": "Le budget total atteint 180.000 euros",
            },
            GOOD["lessons"][1],
        ],
    }
    llm.replies = [ok(reply)]
    with caplog.at_level(logging.INFO, logger="digest.summarize"):
        result = summarize_article(article(), llm.settings())
    # What the model wrote and why it is not shown, for an editor running `digest -v`.
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 2
    assert "quote not in the article" in dropped[0] and "Netflix" in dropped[0]
    assert "a number or name not in the article" in dropped[1] and "2 millions" in dropped[1]
    assert result.backend == "openai"
    texts = [x.text for x in result.lessons]
    assert GOOD["lessons"][1]["lesson"] in texts
    assert not any("Netflix" in t or "2 millions" in t for t in texts)
    # The article has no takeaway of its own to top up with: the model's one grounded
    # lesson stays, labelled as the model's.
    assert [x.backend for x in result.lessons] == ["openai"]
    assert result.checks["lesson1_quote"] is False
    assert result.checks["lesson2_quote"] is True and result.checks["lesson2_facts"] is False
    assert result.checks["lessons_count"] is False  # the backend's own lessons were too few
    assert result.grounded is True  # after the repair, everything shown is grounded
    assert_grounded(result)


def test_a_summary_with_an_invented_fact_is_replaced(llm: FakeLLM) -> None:
    reply = dict(GOOD, summary="Pixel Nord sortira son film en 2027 chez Gaumont.")
    llm.replies = [ok(reply)]
    result = summarize_article(article(), llm.settings())
    assert result.checks["summary_facts"] is False
    assert "2027" not in result.summary and "Gaumont" not in result.summary
    assert result.summary in " ".join(TEXT.split()) or result.summary.split(".")[0] in TEXT
    assert_grounded(result)


def test_the_cache_saves_a_second_request_but_not_a_fallback(llm: FakeLLM, tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'digest.db'}")
    llm.replies = [ok(GOOD)]
    first = summarize_article(article(), llm.settings(), store)
    second = summarize_article(article(), llm.settings(), store)
    assert first == second and len(llm.bodies) == 1
    # Another model is another result; the API key is not part of the key.
    summarize_article(article(), llm.settings(model="other-model"), store)
    assert len(llm.bodies) == 2
    summarize_article(article(), llm.settings(api_key="sk-rotated"), store)
    assert len(llm.bodies) == 2
    # A fallback result is not cached: the next run asks the model again.
    llm.replies = [status(500)]
    text = TEXT + " Une avant-première est prévue."
    assert summarize_article(article(text), llm.settings(), store).backend == "extractive"
    before = len(llm.bodies)
    summarize_article(article(text), llm.settings(), store)
    assert len(llm.bodies) == before + 3


def test_missing_settings_say_which_variables_to_set() -> None:
    with pytest.raises(SummarizerError) as info:
        get_summarizer(SummarizeSettings(backend="openai"))
    assert "DIGEST_LLM_BASE_URL" in str(info.value) and "DIGEST_LLM_MODEL" in str(info.value)


def test_the_environment_configures_the_backend(llm: FakeLLM, tmp_path: Path) -> None:
    config = tmp_path / "digest.toml"
    config.write_text('[summarize]\nbackend = "openai"\n', encoding="utf-8")
    settings = load_settings(
        config,
        {
            "DIGEST_LLM_BASE_URL": llm.base_url,
            "DIGEST_LLM_MODEL": "env-model",
            "DIGEST_LLM_API_KEY": "sk-env",
        },
    )
    llm.replies = [ok(GOOD)]
    assert summarize_article(article(), settings.summarize).backend == "openai"
    assert llm.bodies[0]["model"] == "env-model"
    assert llm.headers[0]["Authorization"] == "Bearer sk-env"


def test_a_summary_that_is_too_long_is_replaced(llm: FakeLLM) -> None:
    long_summary = " ".join([GOOD["summary"]] * 5)
    llm.replies = [ok(dict(GOOD, summary=long_summary))]
    result = summarize_article(article(), llm.settings())
    assert result.checks["summary_length"] is False
    assert len(result.summary.split()) <= 60
    assert [x.text for x in result.lessons] == [x["lesson"] for x in GOOD["lessons"]]


def test_a_summary_that_copies_the_article_out_is_replaced(llm: FakeLLM) -> None:
    # Gemma 3 270M through llama.cpp answered with the article's four sentences: short
    # enough in words, grounded, and no summary. It would also swallow every lesson.
    copied = " ".join(s.text for s in split_sentences(TEXT)[:4])
    assert len(copied.split()) <= 80
    llm.replies = [ok(dict(GOOD, summary=copied))]
    result = summarize_article(article(), llm.settings())
    assert result.checks["summary_length"] is False
    assert len(split_sentences(result.summary)) <= 2
    assert [x.text for x in result.lessons] == [x["lesson"] for x in GOOD["lessons"]]


def test_lessons_from_the_offline_top_up_say_so_and_bad_lessons_go(llm: FakeLLM) -> None:
    takeaway = "Pour les écoles d’animation, la leçon est claire : il faut enseigner la retouche autant que le dessin."
    text = TEXT + " " + takeaway
    reply = {
        "summary": GOOD["summary"],
        "lessons": [
            {"lesson": "Ce que cela nous apprend", "quote": "Les écoles d’animation de la région"},
            GOOD["lessons"][1],
            GOOD["lessons"][1],  # a duplicate
        ],
    }
    llm.replies = [ok(reply)]
    result = summarize_article(article(text), llm.settings())
    assert result.backend == "openai"
    assert [(x.text, x.backend) for x in result.lessons] == [
        (GOOD["lessons"][1]["lesson"], "openai"),
        (takeaway, "extractive"),
    ]
    assert result.checks["lesson1_fresh"] is False and result.checks["lesson3_fresh"] is False
    assert_grounded(result, text)


def test_many_articles_are_asked_a_few_at_a_time_in_order_with_progress(
    llm: FakeLLM, tmp_path: Path
) -> None:
    from digest.summarize import summarize_many

    llm.replies = [ok(GOOD)]
    texts = [TEXT, TEXT.replace("mardi", "lundi"), "", TEXT.replace("mardi", "jeudi")]
    seen: list[tuple[int, int]] = []
    store = Store(f"sqlite:///{tmp_path / 'digest.db'}")
    settings = replace(llm.settings(), llm=replace(llm.settings().llm, concurrency=2))
    results = list(
        summarize_many(
            [article(t) for t in texts], settings, store, lambda d, n, a: seen.append((d, n))
        )
    )
    assert [getattr(r, "backend", "nothing") for r in results] == [
        "openai",
        "openai",
        "nothing",
        "openai",
    ]
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert len(llm.bodies) == 3
    # Cached in the caller's thread: asking again sends nothing.
    again = list(summarize_many([article(t) for t in texts if t], settings, store))
    assert [r.backend for r in again if isinstance(r, Summary)] == ["openai"] * 3
    assert len(llm.bodies) == 3


def test_past_the_issue_deadline_articles_get_the_offline_default(llm: FakeLLM) -> None:
    from digest.summarize import summarize_many

    llm.replies = [ok(GOOD)]
    settings = replace(llm.settings(), llm=replace(llm.settings().llm, issue_timeout=0.0))
    results = list(summarize_many([article(), article(TEXT + " Fin.")], settings))
    assert [r.backend for r in results if isinstance(r, Summary)] == ["extractive"] * 2
    assert llm.bodies == []  # never an empty issue, and no time spent


def test_config_and_environment_reach_the_prompt_and_the_deadline(
    llm: FakeLLM, tmp_path: Path
) -> None:
    config = tmp_path / "digest.toml"
    config.write_text(
        '[newsletter]\naudience = "acteurs de la formation et des métiers créatifs"\n'
        '[summarize]\nbackend = "openai"\n',
        encoding="utf-8",
    )
    settings = load_settings(
        config,
        {"DIGEST_LLM_BASE_URL": llm.base_url, "DIGEST_LLM_MODEL": "m", "DIGEST_LLM_TIMEOUT": "42"},
    )
    assert settings.summarize.llm.timeout == 42.0
    llm.replies = [ok(GOOD)]
    summarize_article(article(), settings.summarize)
    assert "acteurs de la formation" in llm.bodies[0]["messages"][0]["content"]


def test_digest_summarize_without_a_config_shows_progress(
    llm: FakeLLM,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import io

    from digest.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DIGEST_CONFIG", raising=False)
    monkeypatch.setenv("DIGEST_LLM_BASE_URL", llm.base_url)
    monkeypatch.setenv("DIGEST_LLM_MODEL", "m")
    monkeypatch.setenv("DIGEST_LLM_TIMEOUT", "20")
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps({"title": TITLE, "text": TEXT}) + "\n"))
    llm.replies = [ok(GOOD)]
    assert main(["summarize", "--backend", "openai", "-"]) in (0, None)
    out, err = capsys.readouterr()
    assert json.loads(out)["backend"] == "openai"
    assert f"summarized: {TITLE}" in err

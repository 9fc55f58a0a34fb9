"""The ``openai`` backend: any OpenAI-compatible chat-completions endpoint.

Works with OpenAI itself, with local servers that speak the same API (Ollama at
``http://localhost:11434/v1``, llama.cpp's server, vLLM, LM Studio) and with
hosted gateways. Settings come from ``[summarize.llm]`` or ``DIGEST_LLM_BASE_URL``,
``DIGEST_LLM_MODEL``, ``DIGEST_LLM_API_KEY`` and ``DIGEST_LLM_TIMEOUT``.

What servers really do, and what we do about it:

- Structured output: we ask for ``response_format: json_schema``; a server that
  refuses it (a 400, or llama.cpp's 500) is asked with ``json_object`` plus the
  schema (which llama.cpp uses to constrain the output), then with no
  ``response_format`` at all, and the answer is parsed tolerantly (the first JSON
  object in it, fenced or not). What a server refused is remembered per endpoint.
- A 400 that says the context is too long (llama.cpp's default is 2,048 tokens) is
  not a missing feature: the article is cut to half and asked again.
- ``max_tokens`` is always sent: a small model that loops stops there, instead of
  holding the server while our timeout has long given up.
- One deadline per article (``timeout``, retries included). Transport errors,
  timeouts and 429/502/503/504 are retried while time remains; an answer that is
  not usable is not (asking again at temperature 0 gets the same answer).
- The instructions go in the user message: some chat templates (Gemma's) drop the
  system message.

Each lesson comes with a verbatim quote from the article, which the grounding
checks then look for. A failure raises ``SummarizerError``: ``summarize_article``
gives that article the offline default.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import httpx

from ..config import SummarizeSettings
from ..errors import SummarizerError
from ..i18n import strings_for
from ..language import detect_language
from ..models import Article, Lesson, Summary
from . import NothingToSummarize
from .text import unglue

__all__ = ["MAX_PROMPT_CHARS", "OpenAISummarizer", "SCHEMA", "build_messages"]

MAX_PROMPT_CHARS = 16_000
"""Article text sent to the model at most (≈ 4,000 tokens): bounds cost and latency."""

# The schema OpenAI's strict mode accepts (every property required, no extra ones);
# the number of lessons is enforced by us, not by ``minItems``, which not every
# server supports.
SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["summary", "lessons"],
    "properties": {
        "summary": {"type": "string"},
        "lessons": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["lesson", "quote"],
                "properties": {"lesson": {"type": "string"}, "quote": {"type": "string"}},
            },
        },
    },
}

# The institute's voice: lessons are generalised takeaways for its community, not
# facts from the news. The examples were written for this prompt.
_PROMPTS = {
    "fr": (
        "Tu rédiges la veille hebdomadaire d'un institut de formation. Ses lecteurs : "
        "{audience}. Pour l'article ci-dessous, écris en français :\n"
        "- « summary » : une ou deux phrases complètes qui disent qui a fait quoi, en "
        "nommant le sujet (pas de « il » ni de « le jeu » sans l'avoir présenté) ;\n"
        "- « lessons » : de 2 à {max} leçons « {label} » : {angle}. Une "
        "leçon n'est pas un fait de l'article mais ce qu'il enseigne, généralisé, en 25 "
        "mots au plus. Chaque leçon a une « quote » : un passage copié mot pour mot dans "
        "l'article, qui la justifie.\n"
        "Exemples de leçons dans notre style :\n"
        "« Un lancement raté se rattrape : reconnaître l'erreur vite et dire ce qui "
        "change. »\n"
        "« Un outil gratuit a toujours un modèle économique : il faut le comprendre avant "
        "d'en dépendre. »\n"
        "N'utilise aucun chiffre, date ou nom propre absent de l'article. "
        "Réponds uniquement par un objet JSON avec les clés « summary » (un texte) et "
        "« lessons » (une liste d'objets avec les clés « lesson » et « quote »)."
    ),
    "en": (
        "You write the weekly digest of a training institute. Its readers: {audience}. "
        "For the article below, write in English:\n"
        '- "summary": one or two complete sentences saying who did what, naming the '
        'subject (no "it" or "the game" before introducing it);\n'
        '- "lessons": 2 to {max} lessons ("{label}"): {angle}. A lesson is '
        "not a fact from the article but what it teaches, generalised, in at most 25 "
        'words. Each lesson has a "quote": a passage copied word for word from the '
        "article that supports it.\n"
        "Examples of lessons in our style:\n"
        '"Crisis management: set priorities and bring the team back to quality."\n'
        '"A free tool always has a business model: understand it before depending on it."\n'
        "Use no number, date or proper name that is not in the article. "
        'Answer only with a JSON object with the keys "summary" (a text) and "lessons" '
        '(a list of objects with the keys "lesson" and "quote").'
    ),
}
_DEFAULTS = {
    "fr": (
        "des personnes qui se forment ou travaillent dans les métiers du numérique et de "
        "la création",
        "ce que cet article enseigne à ces lecteurs pour leur métier ou leur formation",
    ),
    "en": (
        "people who train or work in digital and creative careers",
        "what this article teaches those readers about their work or training",
    ),
}


def build_messages(
    article: Article,
    max_lessons: int,
    audience: str = "",
    angle: str = "",
    max_chars: int = MAX_PROMPT_CHARS,
) -> list[dict[str, str]]:
    """The chat messages for one article, in the article's language (French by default).

    One user message carries the instructions and the article: chat templates that
    drop the system message (Gemma's) would otherwise lose every instruction.
    """
    language = (article.language or detect_language(article.text) or "fr")[:2].lower()
    language = language if language in _PROMPTS else "fr"
    default_audience, default_angle = _DEFAULTS[language]
    instructions = _PROMPTS[language].format(
        label=strings_for(language)["lessons_title"],
        max=max(2, min(4, max_lessons)),
        audience=audience or default_audience,
        angle=angle or default_angle,
    )
    body = unglue(article.text)[:max_chars]
    label = ("Titre", "Article") if language != "en" else ("Title", "Article")
    user = f"{instructions}\n\n{label[0]} : {article.title}\n\n{label[1]} :\n{body}"
    return [{"role": "user", "content": user}]


MAX_RETRIES = 2
"""Transport errors and busy answers are asked again this many times, deadline permitting."""

_LIMITS: dict[tuple[str, str], set[str]] = {}
_FORMATS = ("json_schema", "json_object", "none")
_RETRYABLE = (408, 429, 502, 503, 504)
_CONTEXT = re.compile(
    r"context|too long|too many tokens|maximum.{0,20}length|exceed|n_ctx", re.IGNORECASE
)


class OpenAISummarizer:
    """Summaries from an OpenAI-compatible ``/chat/completions`` endpoint."""

    name = "openai"

    def __init__(self, settings: SummarizeSettings) -> None:
        llm = settings.llm
        if not llm.base_url or not llm.model:
            raise SummarizerError(
                "the openai summarizer needs a base URL and a model",
                hint="set DIGEST_LLM_BASE_URL (e.g. http://localhost:11434/v1 for Ollama) "
                "and DIGEST_LLM_MODEL, or [summarize.llm] base_url and model",
            )
        self.settings = settings
        self.url = llm.base_url.rstrip("/") + "/chat/completions"
        # What the server refused once (json_schema, json_object, temperature), shared
        # by every backend of this process talking to the same endpoint and model.
        self.limits = _LIMITS.setdefault((self.url, llm.model), set())

    def summarize(self, article: Article) -> Summary:
        if not article.text.strip():
            raise NothingToSummarize(f"nothing to summarize: {article.title!r} has no text")
        llm = self.settings.llm
        deadline = time.monotonic() + llm.timeout
        headers = {"Authorization": f"Bearer {llm.api_key}"} if llm.api_key else {}
        max_chars = MAX_PROMPT_CHARS
        error: Exception | None = None
        retries = 0
        with httpx.Client(headers=headers, follow_redirects=False) as client:
            while retries <= MAX_RETRIES:
                left = deadline - time.monotonic()
                if left <= 0.05:
                    break
                if error is not None:
                    time.sleep(min(0.5 * retries, left / 4))  # a short pause, then again
                messages = build_messages(
                    article,
                    self.settings.max_lessons,
                    self.settings.audience,
                    self.settings.angle,
                    max_chars,
                )
                try:
                    content = self._complete(client, messages, deadline)
                except _ContextTooLong:
                    if max_chars < 1_000:
                        error = SummarizerError("the article does not fit the model's context")
                        break
                    max_chars //= 2  # llama.cpp's default context is 2,048 tokens
                    continue
                except httpx.HTTPStatusError as exc:
                    error = exc
                    if exc.response.status_code not in _RETRYABLE:
                        break
                    retries += 1
                    continue
                except httpx.TransportError as exc:  # timeouts, refused, reset
                    error = exc
                    retries += 1
                    continue
                return _parse(content, self.name)  # a bad answer is not asked again
        raise SummarizerError(
            f"the model at {llm.base_url} gave no usable answer: {_describe(error)}",
            hint="check that the server is up and the model loaded; a model on a CPU may need "
            "a longer [summarize.llm] timeout (DIGEST_LLM_TIMEOUT)",
        )

    def _complete(
        self, client: httpx.Client, messages: list[dict[str, str]], deadline: float
    ) -> str:
        # A refusal may be the server's way of saying it lacks a feature: json_schema
        # (llama.cpp answers 500), json_object, or temperature (some reasoning models
        # accept only their default). Each is dropped once, for good.
        llm = self.settings.llm
        refused: set[str] = set()  # remembered only once a simpler way has worked
        while True:
            body: dict[str, Any] = {
                "model": llm.model,
                "messages": messages,
                "max_tokens": llm.max_tokens,
            }
            if "temperature" not in self.limits:
                body["temperature"] = 0
            shape = next(f for f in _FORMATS if f not in self.limits | refused or f == "none")
            if shape == "json_schema":
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "digest_summary", "strict": True, "schema": SCHEMA},
                }
            elif shape == "json_object":
                body["response_format"] = {"type": "json_object", "schema": SCHEMA}
            left = max(0.05, deadline - time.monotonic())
            timeout = httpx.Timeout(left, connect=min(10.0, left))
            response = client.post(self.url, json=body, timeout=timeout)
            code = response.status_code
            if code == 400 and _CONTEXT.search(response.text):
                raise _ContextTooLong()
            if code == 400 and "temperature" in response.text and "temperature" not in self.limits:
                self.limits.add("temperature")
                continue
            if code in (400, 422, 500) and shape != "none":
                refused.add(shape)  # try the next, simpler way of asking for JSON
                continue
            if code < 400:
                self.limits.update(refused)
            break
        response.raise_for_status()
        try:
            reply = response.json()
            content = reply["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise SummarizerError(f"unexpected reply shape ({exc!r})") from None
        if not isinstance(content, str):
            raise SummarizerError("the reply has no text content")
        return content


class _ContextTooLong(Exception):
    """The server says the prompt does not fit its context window."""


_FENCE = re.compile(r"```(?:json)?\s*(.*?)\s*```", re.DOTALL)


def _parse(content: str, backend: str) -> Summary:
    """The model's JSON, checked against ``SCHEMA`` by hand (no validator dependency).

    Tolerant of what servers without structured output return: a fenced block, or
    prose around the object.
    """
    fenced = _FENCE.search(content)
    if fenced:
        content = fenced.group(1)
    try:
        data = json.loads(content)
    except ValueError:
        start, end = content.find("{"), content.rfind("}")
        try:
            data = json.loads(content[start : end + 1]) if 0 <= start < end else None
        except ValueError:
            data = None
        if data is None:
            raise SummarizerError("the model's answer is not JSON") from None
    if not isinstance(data, dict):
        raise SummarizerError("the model's answer is not a JSON object")
    summary = data.get("summary")
    lessons = data.get("lessons")
    if not isinstance(summary, str) or not summary.strip():
        raise SummarizerError("the model's answer has no summary")
    if not isinstance(lessons, list):
        raise SummarizerError("the model's answer has no list of lessons")
    parsed: list[Lesson] = []
    for item in lessons:
        if (
            isinstance(item, dict)
            and isinstance(item.get("lesson"), str)
            and isinstance(item.get("quote"), str)
            and item["lesson"].strip()
        ):
            parsed.append(Lesson(item["lesson"].strip(), item["quote"].strip(), backend=backend))
    return Summary(summary.strip(), tuple(parsed[:4]), backend, grounded=False)


def _describe(error: Exception | None) -> str:
    if error is None:
        return "no time left"
    if isinstance(error, httpx.TimeoutException):
        return "timed out"
    if isinstance(error, httpx.HTTPStatusError):
        return f"HTTP {error.response.status_code}"
    return str(error) or type(error).__name__

"""The ``openai`` backend: any OpenAI-compatible chat-completions endpoint.

Works with OpenAI itself, with local servers that speak the same API (Ollama at
``http://localhost:11434/v1``, llama.cpp's server, vLLM, LM Studio) and with
hosted gateways. Settings come from ``[summarize.llm]`` or ``DIGEST_LLM_BASE_URL``,
``DIGEST_LLM_MODEL`` and ``DIGEST_LLM_API_KEY``.

The reply must be JSON: we ask for ``response_format: json_schema`` and, when a
server rejects that with a 400 (several local servers only know ``json_object``),
ask again with ``json_object`` and remember it. Each lesson comes with a verbatim
quote from the article, which the grounding checks then look for. Any failure
(a timeout, a 5xx or 429, JSON that does not parse or does not fit the schema) is
retried once (a 401 or 404 is not: asking again changes nothing), then raised as
``SummarizerError``: ``summarize_article`` falls back to the
offline default for that article.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from ..config import SummarizeSettings
from ..errors import SummarizerError
from ..models import Article, Lesson, Summary
from . import NothingToSummarize
from .text import detect_language

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

_PROMPTS = {
    "fr": (
        "Tu rédiges la veille hebdomadaire d'un institut de formation aux métiers du "
        "numérique et de la création. Ses lecteurs se forment ou travaillent dans ces "
        "métiers. Pour l'article ci-dessous, écris en français :\n"
        "- « summary » : un résumé factuel d'une ou deux phrases ;\n"
        "- « lessons » : de 2 à {max} leçons « Ce que cela nous apprend », utiles à ces "
        "lecteurs, de 25 mots au plus chacune. Chaque leçon a une « quote » : un "
        "passage copié mot pour mot dans l'article, qui la justifie.\n"
        "N'utilise aucun chiffre, date ou nom propre absent de l'article. "
        "Réponds uniquement par un objet JSON "
        '{{"summary": "...", "lessons": [{{"lesson": "...", "quote": "..."}}]}}.'
    ),
    "en": (
        "You write the weekly digest of an institute that trains people for digital and "
        "creative careers; its readers train or work in those fields. For the article "
        "below, write in English:\n"
        '- "summary": a factual summary of one or two sentences;\n'
        '- "lessons": 2 to {max} lessons ("What this teaches us") useful to those readers, '
        'at most 25 words each. Each lesson has a "quote": a passage copied word for word '
        "from the article that supports it.\n"
        "Use no number, date or proper name that is not in the article. "
        "Answer only with a JSON object "
        '{{"summary": "...", "lessons": [{{"lesson": "...", "quote": "..."}}]}}.'
    ),
}


def build_messages(article: Article, max_lessons: int) -> list[dict[str, str]]:
    """The chat messages for one article, in the article's language (French by default)."""
    language = (article.language or detect_language(article.text) or "fr")[:2].lower()
    system = _PROMPTS.get(language, _PROMPTS["fr"]).format(max=max(2, min(4, max_lessons)))
    body = article.text[:MAX_PROMPT_CHARS]
    label = ("Titre", "Article") if language != "en" else ("Title", "Article")
    user = f"{label[0]} : {article.title}\n\n{label[1]} :\n{body}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


_LIMITS: dict[tuple[str, str], set[str]] = {}


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
        # What the server refused once (json_schema, temperature), shared by every
        # backend of this process talking to the same endpoint and model.
        self.limits = _LIMITS.setdefault((self.url, llm.model), set())
        self.attempts = 2

    def summarize(self, article: Article) -> Summary:
        if not article.text.strip():
            raise NothingToSummarize(f"nothing to summarize: {article.title!r} has no text")
        messages = build_messages(article, self.settings.max_lessons)
        llm = self.settings.llm
        headers = {"Authorization": f"Bearer {llm.api_key}"} if llm.api_key else {}
        timeout = httpx.Timeout(llm.timeout, connect=min(10.0, llm.timeout))
        error: Exception | None = None
        with httpx.Client(timeout=timeout, headers=headers, follow_redirects=False) as client:
            for _ in range(self.attempts):
                try:
                    content = self._complete(client, messages)
                    return _parse(content, self.name)
                except (httpx.HTTPError, SummarizerError) as exc:
                    error = exc
                    if _final(exc):
                        break
        raise SummarizerError(
            f"the model at {llm.base_url} gave no usable answer: {_describe(error)}",
            hint="check DIGEST_LLM_BASE_URL, DIGEST_LLM_MODEL and that the server is up",
        )

    def _complete(self, client: httpx.Client, messages: list[dict[str, str]]) -> str:
        # A 400 may be the server's way of saying it lacks a feature: json_schema
        # (older local servers: use json_object) or temperature (some reasoning
        # models accept only their default). Each is dropped once, for good.
        for _ in range(3):
            body: dict[str, Any] = {"model": self.settings.llm.model, "messages": messages}
            if "temperature" not in self.limits:
                body["temperature"] = 0
            if "json_schema" not in self.limits:
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "digest_summary", "strict": True, "schema": SCHEMA},
                }
            else:
                body["response_format"] = {"type": "json_object"}
            response = client.post(self.url, json=body)
            if response.status_code != 400:
                break
            if "temperature" in response.text and "temperature" not in self.limits:
                self.limits.add("temperature")
            elif "json_schema" not in self.limits:
                self.limits.add("json_schema")
            else:
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


_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


def _parse(content: str, backend: str) -> Summary:
    """The model's JSON, checked against ``SCHEMA`` by hand (no validator dependency)."""
    fenced = _FENCE.match(content)
    if fenced:
        content = fenced.group(1)
    try:
        data = json.loads(content)
    except ValueError as exc:
        raise SummarizerError(f"the model's answer is not JSON ({exc})") from None
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
            parsed.append(Lesson(item["lesson"].strip(), item["quote"].strip()))
    if not parsed:
        raise SummarizerError("the model's answer has no usable lesson")
    return Summary(summary.strip(), tuple(parsed[:4]), backend, grounded=False)


def _final(error: Exception) -> bool:
    """A refusal that asking again will not change (bad key, unknown model)."""
    if isinstance(error, httpx.HTTPStatusError):
        code = error.response.status_code
        return 400 <= code < 500 and code not in (408, 409, 429)
    return False


def _describe(error: Exception | None) -> str:
    if isinstance(error, httpx.TimeoutException):
        return "timed out"
    if isinstance(error, httpx.HTTPStatusError):
        return f"HTTP {error.response.status_code}"
    return str(error) or type(error).__name__

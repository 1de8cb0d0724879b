"""Text generators for Self-Instruct: callables ``generate(prompt, max_new_tokens, seed) -> str``.

``SelfInstruct`` (``llmtap.self_instruct``) asks a generator for every piece of text it needs and
does not care where the text comes from:

* ``LMGenerator`` samples from an ``llmtap.lm.CausalLM``: the course model, offline
  (``course_generator``), or a Hugging Face model (``llmtap.hf``);
* ``OpenAIGenerator`` posts to an OpenAI-compatible HTTP endpoint you configure (a local server
  or a hosted API), with the standard library only.

A generator that fails raises ``GeneratorError``; the loop then leaves its pool as it was.
"""
from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

from .checkpoints import load_course_model
from .lm import CourseLM, check_lm


class GeneratorError(RuntimeError):
    """The generator failed (no answer, an HTTP error, a reply in an unexpected shape)."""


# ----------------------------------------------------------------------------- a language model
class LMGenerator:
    """Text from an ``llmtap.lm.CausalLM`` (the course model or a Hugging Face model), sampled
    with ``temperature`` and ``top_k``. A prompt longer than the context keeps its end."""

    def __init__(self, lm, temperature: float = 0.8, top_k: int | None = 40):
        self.lm = check_lm(lm)
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        self.temperature, self.top_k = temperature, top_k

    def __call__(self, prompt: str, max_new_tokens: int = 48, seed: int = 0) -> str:
        budget = (self.lm.max_len or 10**9) - max_new_tokens      # room left for the answer
        prompt = keep_end(prompt, lambda text: len(self.lm.encode(text, bos=True)), budget)
        return self.lm.generate(prompt, max_new_tokens, self.temperature, self.top_k, seed=seed)


def keep_end(prompt: str, n_tokens, budget: int) -> str:
    """The prompt with whole lines dropped from the top until ``n_tokens(prompt) <= budget``
    (a single line too long is halved), so that a small context still sees the open question."""
    while len(prompt) > 1 and n_tokens(prompt) > budget:
        prompt = prompt.split("\n", 1)[1] if "\n" in prompt else prompt[len(prompt) // 2:]
    return prompt


def course_generator(device=None, temperature: float = 0.8, top_k: int | None = 40) -> LMGenerator:
    """The course model as a generator. Its tokenizer lacks most Chinese characters outside its
    corpus: they are read as raw UTF-8 bytes (``CourseLM(unknown="bytes")``)."""
    model, tokenizer = load_course_model(device)
    return LMGenerator(CourseLM(model, tokenizer, unknown="bytes"), temperature, top_k)


# ----------------------------------------------------------------------------- an HTTP endpoint
class OpenAIGenerator:
    """An OpenAI-compatible HTTP endpoint (a local server or a hosted API), with the standard
    library only. ``endpoint="chat"`` posts to /v1/chat/completions, "completions" to
    /v1/completions. ``base_url`` is e.g. "http://127.0.0.1:8000" or "https://host/v1".

    A reply that ended by itself (``finish_reason`` "stop") gets a closing line end, so that
    ``parse_instructions`` keeps its last instruction; one cut by ``max_tokens`` ("length") keeps
    its open last line, which ``parse_instructions`` drops, as the released Self-Instruct code does."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, endpoint: str = "chat",
                 temperature: float = 0.7, timeout: float = 60.0):
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        if endpoint not in ("chat", "completions"):
            raise ValueError(f"endpoint must be 'chat' or 'completions', got {endpoint!r}")
        if not isinstance(model, str) or not model:
            raise ValueError("model must name the served model, e.g. 'Qwen2.5-7B-Instruct'")
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        root = base_url.rstrip("/")
        root = root if root.endswith("/v1") else root + "/v1"
        self.url = root + ("/chat/completions" if endpoint == "chat" else "/completions")
        self.model, self.api_key, self.endpoint = model, api_key, endpoint
        self.temperature, self.timeout = temperature, timeout

    def __repr__(self) -> str:
        return f"OpenAIGenerator({self.url!r}, model={self.model!r})"      # never shows the key

    def __call__(self, prompt: str, max_new_tokens: int = 48, seed: int = 0) -> str:
        body = {"model": self.model, "max_tokens": max_new_tokens, "temperature": self.temperature, "seed": seed}
        if self.endpoint == "chat":
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        return self._text_of(self._post(body))

    def _post(self, body: dict) -> bytes:
        """The raw reply to ``body``; a GeneratorError that says what went wrong otherwise."""
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, json.dumps(body).encode(), headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                return reply.read()
        except urllib.error.HTTPError as e:
            raise GeneratorError(f"{self.url} answered HTTP {e.code}: {e.read()[:200].decode(errors='replace')}") from None
        except (socket.timeout, TimeoutError):
            raise GeneratorError(f"{self.url} did not answer within {self.timeout} s; raise timeout= "
                                 f"or check the server") from None
        except urllib.error.URLError as e:
            if isinstance(e.reason, (socket.timeout, TimeoutError)):
                raise GeneratorError(f"{self.url} did not answer within {self.timeout} s") from None
            raise GeneratorError(f"cannot reach {self.url}: {e.reason}") from None

    def _text_of(self, raw: bytes) -> str:
        """The generated text in a reply: choices[0].message.content (chat) or choices[0].text."""
        try:
            choice = json.loads(raw)["choices"][0]
            text = choice["message"]["content"] if self.endpoint == "chat" else choice["text"]
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise GeneratorError(f"{self.url} replied with something that is not JSON: {raw[:120]!r}") from None
        except (KeyError, IndexError, TypeError):
            where = "choices[0].message.content" if self.endpoint == "chat" else "choices[0].text"
            raise GeneratorError(f"{self.url} replied with JSON without {where}: {raw[:160]!r}") from None
        if not isinstance(text, str):
            raise GeneratorError(f"{self.url} replied with a {type(text).__name__} where text was expected")
        ended_by_itself = choice.get("finish_reason") == "stop"      # "length": cut by max_tokens
        return text + "\n" if ended_by_itself and not text.endswith("\n") else text

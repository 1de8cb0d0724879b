"""The generators: the course model and Hugging Face models through LMGenerator, and an
OpenAI-compatible HTTP endpoint (a local test server here) through OpenAIGenerator."""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llmtap.generators import GeneratorError, LMGenerator, OpenAIGenerator, course_generator, keep_end
from llmtap.hf import load_lm
from llmtap.lm import CourseLM
from llmtap.self_instruct import SelfInstruct, instruction_prompt, load_seed_tasks


# ----------------------------------------------------------------------------- language models
def test_course_model_generator_fits_long_prompts():
    lm = load_lm("course", device="cpu")
    gen = LMGenerator(CourseLM(lm.model, lm.tokenizer, unknown="bytes"))
    long_prompt = instruction_prompt([t.instruction for t in load_seed_tasks()[20:30]], "zh")   # bytes: > 256 tokens
    assert len(gen.lm.encode(long_prompt, bos=True)) > 256
    out = gen(long_prompt, max_new_tokens=16, seed=0)
    assert isinstance(out, str) and out == gen(long_prompt, max_new_tokens=16, seed=0)
    with pytest.raises(TypeError):
        LMGenerator(lm.model)
    with pytest.raises(ValueError, match="temperature"):
        LMGenerator(lm, temperature=-1)


def test_course_generator_reads_unknown_characters_as_bytes():
    gen = course_generator("cpu", temperature=0.5, top_k=7)
    assert isinstance(gen.lm, CourseLM) and gen.lm.unknown == "bytes"
    assert (gen.temperature, gen.top_k) == (0.5, 7)
    assert isinstance(gen("任务1：写一首关于鲸鱼的诗。\n任务2：", max_new_tokens=4), str)   # 鲸 is not in the corpus


def test_keep_end_drops_whole_lines_from_the_top():
    prompt = "header line\nTask 1: one\nTask 2: two\nTask 3: "
    assert keep_end(prompt, len, 100) == prompt
    assert keep_end(prompt, len, 32) == "Task 1: one\nTask 2: two\nTask 3: "
    assert keep_end(prompt, len, 20) == "Task 2: two\nTask 3: "
    assert keep_end("x" * 40, len, 10) == "x" * 10                        # one long line: halved until it fits


def test_hugging_face_generator_drives_the_loop():
    lm = load_lm("random-gpt2", device="cpu")
    gen = LMGenerator(lm, temperature=0.0)
    prompt = instruction_prompt([t.instruction for t in load_seed_tasks()[:8]], "zh")   # > 256 byte tokens
    out = gen(prompt, max_new_tokens=8)
    assert isinstance(out, str) and out == gen(prompt, max_new_tokens=8)
    si = SelfInstruct(gen, seed=0, max_new_tokens=8)
    si.step()
    assert si.counts["prompts"] == 1


# ----------------------------------------------------------------------------- the HTTP generator
class Handler(BaseHTTPRequestHandler):
    mode = "chat"
    seen = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Handler.seen.append((self.path, self.headers.get("Authorization"), body))
        mode = Handler.mode
        if mode == "slow":
            time.sleep(1.0)
        if mode == "error":
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b"model overloaded")
            return
        if mode in ("chat", "slow", "cut"):
            reply = {"choices": [{"message": {"role": "assistant", "content": " Name a colour.\nTask 10: Count the apples in the basket."},
                                  "finish_reason": "length" if mode == "cut" else "stop"}]}
        elif mode == "completions":
            reply = {"choices": [{"text": " Explain how tides work."}]}
        elif mode == "no choices":
            reply = {"error": "nope"}
        else:                     # "not json"
            reply = None
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        try:
            self.wfile.write(b"<html>oops" if reply is None else json.dumps(reply).encode())
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_http_generator_chat_and_completions(server):
    Handler.mode, Handler.seen = "chat", []
    gen = OpenAIGenerator(server, model="local-model", api_key="sk-test", timeout=5)
    assert gen("Task 1: x\nTask 2:", 32, 7) == " Name a colour.\nTask 10: Count the apples in the basket.\n"
    path, auth, body = Handler.seen[-1]
    assert path == "/v1/chat/completions" and auth == "Bearer sk-test"
    assert body["model"] == "local-model" and body["max_tokens"] == 32 and body["messages"][0]["content"].endswith("Task 2:")
    assert "sk-test" not in repr(gen)
    Handler.mode = "completions"
    gen = OpenAIGenerator(server + "/v1/", model="m", endpoint="completions", timeout=5)
    assert gen("prompt", 8) == " Explain how tides work."
    assert Handler.seen[-1][0] == "/v1/completions" and Handler.seen[-1][1] is None
    Handler.mode = "chat"
    si = SelfInstruct(OpenAIGenerator(server, model="m", timeout=5), seed=0)
    si.step()
    assert si.counts["instructions generated"] == 2
    Handler.mode = "cut"          # the same text cut by max_tokens: its open last line is dropped
    gen = OpenAIGenerator(server, model="m", timeout=5)
    assert gen("prompt", 8) == " Name a colour.\nTask 10: Count the apples in the basket."
    si = SelfInstruct(OpenAIGenerator(server, model="m", timeout=5), seed=0)
    si.step()
    assert si.counts["instructions generated"] == 1


@pytest.mark.parametrize("mode, words", [("slow", "did not answer within"), ("not json", "not JSON"),
                                         ("no choices", "without choices"), ("error", "HTTP 500.*overloaded")])
def test_http_generator_failures_are_clear_and_keep_the_pool(server, mode, words):
    Handler.mode = "chat"
    si = SelfInstruct(OpenAIGenerator(server, model="m", timeout=0.3), seed=0)
    before = [t.instruction for t in si.seed_tasks + si.generated]
    Handler.mode = mode
    with pytest.raises(GeneratorError, match=words):
        si.step()
    assert [t.instruction for t in si.seed_tasks + si.generated] == before and len(si.index) == len(before) and not si.counts


def test_http_generator_unreachable_and_bad_arguments():
    with pytest.raises(GeneratorError, match="cannot reach"):
        OpenAIGenerator("http://127.0.0.1:9", model="m", timeout=2)("hi")
    with pytest.raises(ValueError, match="http"):
        OpenAIGenerator("127.0.0.1:8000", model="m")
    with pytest.raises(ValueError, match="endpoint"):
        OpenAIGenerator("http://x", model="m", endpoint="embeddings")
    with pytest.raises(ValueError, match="model"):
        OpenAIGenerator("http://x", model="")
    with pytest.raises(ValueError, match="timeout"):
        OpenAIGenerator("http://x", model="m", timeout=0)

"""Shared test setup: tests marked ``cuda`` are skipped on machines without a CUDA GPU.

The models in these tests are tiny; one CPU thread runs them fastest (thread hand-offs cost more
than the matrix products, badly so when another process is busy on the same cores).
"""
import pytest
import torch

import llmtap
from llmtap.lm import CourseLM
from llmtap.model import GPT, GPTConfig
from llmtap.tokenizer import Tokenizer

torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def sharp_gpt():
    """make(chars, block_size) -> (model, tokenizer): a small random GPT whose weights are drawn
    wide (std 0.3), so that its next-token distributions are far from uniform and scores differ."""
    def make(chars: str, block_size: int):
        tok = Tokenizer(chars)
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=block_size, n_layer=2, n_head=2, n_embd=16)).eval()
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() >= 2:
                    p.normal_(0, 0.3)
        return model, tok
    return make


@pytest.fixture(scope="session")
def toy(sharp_gpt):
    """A CourseLM over a small sharp random GPT that knows the characters of the prompting tests."""
    return CourseLM(*sharp_gpt("abcdefgh →我好感到不。，因为[]XZ\n", block_size=64))


@pytest.fixture(scope="session")
def course():
    """The shipped course model behind the CausalLM interface, on the CPU."""
    model, tok = llmtap.load_course_model("cpu")
    return CourseLM(model.eval(), tok)


@pytest.fixture(scope="session")
def course_report():
    """The capability report of the shipped model: the numbers of `python -m llmtap.pretrain --report`."""
    from llmtap.checkpoints import COURSE_MODEL_PATH
    from llmtap.pretrain import capability_report
    if not COURSE_MODEL_PATH.is_file():
        pytest.skip(f"no course model checkpoint at {COURSE_MODEL_PATH} (build it with `python -m llmtap.pretrain`)")
    return capability_report(*llmtap.load_course_model("cpu"), n=300)


@pytest.fixture
def verdict(capsys):
    """verdict(checker, answer) -> (passed, the one line the checker printed)."""
    def run(checker, answer):
        passed = checker(answer)
        lines = capsys.readouterr().out.strip().splitlines()
        assert len(lines) == 1, f"a checker prints exactly one line, got {lines}"
        return passed, lines[0]
    return run


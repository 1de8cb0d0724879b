"""The checkers of the graded exercises (llmtap.checks), what they share: each prints one line under
its title, says "not solved yet" for the exercise stub, tells the student's crash from its own, and
every checker has a mutation bank in tests/test_checks_chNN.py (RIGHT: answers written differently
from the solution that it must accept; WRONG: the usual mistakes, each of which it must reject with
a phrase that names the reason), run here."""
import importlib

import pytest

from llmtap import checks
from llmtap.checks.common import run_check

TITLES = {
    checks.check_causal_mask: "Exercise: causal mask",
    checks.check_sample_next: "Exercise: temperature and top-k sampling",
    checks.check_next_token_loss: "Exercise: next-token loss",
    checks.check_answer_logprob: "Exercise: answer scorer",
    checks.check_label_probs: "Exercise: verbalizer",
    checks.check_kshot_prompt: "Exercise: k-shot prompt",
    checks.check_lora_forward: "Exercise: LoRA forward",
    checks.check_lora_layer: "Exercise: the LoRA layer",
    checks.check_merge_weight: "Exercise: merge",
    checks.check_lora_param_count: "Exercise: LoRA parameter count",
    checks.check_nf4_block: "Exercise: one NF4 block",
    checks.check_dora_weight: "Exercise: DoRA's weight",
    checks.check_pissa_init: "Exercise: PiSSA's start",
    checks.check_adapter_forward: "Exercise: adapter forward",
    checks.check_adapter_block: "Exercise: the adapter block",
    checks.check_prefix_attention: "Exercise: attention with a prefix",
    checks.check_soft_prompt_from_text: "Exercise: soft prompt from text",
    checks.check_alibi_slopes: "Exercise: ALiBi slopes",
    checks.check_alibi_bias: "Exercise: ALiBi bias",
    checks.check_interpolated_positions: "Exercise: interpolated positions",
    checks.check_yarn_inv_freq: "Exercise: YaRN frequencies",
    checks.check_lcs: "Exercise: longest common subsequence",
    checks.check_keep_instruction: "Exercise: the instruction filter",
    checks.check_instruction_round: "Exercise: one Self-Instruct round",
    checks.check_sft_batch: "Exercise: the SFT batch",
    checks.check_assistant_mask: "Exercise: the assistant mask",
    checks.check_block_mask: "Exercise: the block-diagonal causal mask",
    checks.check_chat_labels: "Exercise: chat labels",
}
BANKS = [f"test_checks_ch{n:02d}" for n in range(7)] + ["test_checks_ch02b"]


BANK = {bank: importlib.import_module(bank) for bank in BANKS}
RIGHT = [(bank, c, a) for bank, m in BANK.items() for c, a in m.RIGHT]
WRONG = [(bank, c, a, phrase) for bank, m in BANK.items() for c, a, phrase in m.WRONG]


def stub(*args, **kwargs):
    raise NotImplementedError("exercise not solved yet")


def test_every_exported_checker_has_a_title_and_one_bank():
    assert set(TITLES) == {getattr(checks, name) for name in checks.__all__ if name.startswith("check_")}
    banked = [c for m in BANK.values() for c in m.CHECKERS]
    assert sorted(c.__name__ for c in banked) == sorted(c.__name__ for c in TITLES)


@pytest.mark.parametrize("checker", list(TITLES), ids=[c.__name__ for c in TITLES])
def test_every_checker_has_a_bank(checker):
    """At least 5 wrong answers (the usual mistakes) and 2 right ones written differently from the solution."""
    assert sum(c is checker for _, c, *_ in WRONG) >= 5 and sum(c is checker for _, c, _ in RIGHT) >= 2


@pytest.mark.parametrize("bank, checker, answer", RIGHT, ids=[f"{b[-4:]}-{a.__name__}" for b, c, a in RIGHT])
def test_right_answers_are_accepted(verdict, bank, checker, answer):
    passed, line = verdict(checker, answer)
    assert passed and line == f"{TITLES[checker]}: correct ✓", line


@pytest.mark.parametrize("bank, checker, answer, phrase", WRONG, ids=[f"{b[-4:]}-{a.__name__}" for b, c, a, _ in WRONG])
def test_wrong_answers_are_rejected_with_the_reason(verdict, bank, checker, answer, phrase):
    passed, line = verdict(checker, answer)
    assert not passed and line.startswith(f"{TITLES[checker]}: "), line
    assert ("not right yet" in line or "your code raised" in line) and phrase in line, line


@pytest.mark.parametrize("checker", list(TITLES), ids=[c.__name__ for c in TITLES])
def test_the_stub_is_not_solved_yet(verdict, checker):
    passed, line = verdict(checker, stub)
    assert not passed and line.startswith(f"{TITLES[checker]}: not solved yet - "), line


def test_run_check_tells_the_students_crash_from_its_own(capsys):
    def crashes(x):
        return x[5]

    def test(answer):
        answer([1, 2])
    assert run_check("T", test, crashes, shape_hint="a hint") is False
    assert capsys.readouterr().out.strip() == "T: your code raised IndexError: list index out of range - a hint"

    def buggy_checker(answer):
        raise KeyError("oops")
    assert run_check("T", buggy_checker, lambda: None) is False
    out = capsys.readouterr().out.strip()
    assert out.startswith("T: the checker itself failed (KeyError") and "not in your answer" in out
    assert run_check("T", lambda answer: answer(), lambda: None) is True
    assert capsys.readouterr().out.strip() == "T: correct ✓"
    assert run_check("T", lambda: None) is True                   # a test that takes no answer
    capsys.readouterr()

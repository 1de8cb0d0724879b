import time

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest
import torch

from llmtap import widgets
from llmtap.lm import CourseLM
from llmtap.model import GPT, GPTConfig
from llmtap.positions import alibi_bias
from llmtap.rouge import rouge_filter
from llmtap.self_instruct import load_seed_tasks
from llmtap.tokenizer import Tokenizer


@pytest.fixture
def tiny():
    tok = Tokenizer(list("abc我感到"))
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16)).eval(), tok


def test_next_token_probs_are_the_top_of_the_softmax(tiny):
    model, tok = tiny
    pieces, probs = widgets.next_token_probs(model, tok, "ab", temperature=1.0, top=5)
    assert len(pieces) == len(probs) == 5
    assert probs == sorted(probs, reverse=True)
    logits, _ = model(torch.tensor([tok.encode("ab", bos=True)]))
    full = torch.softmax(logits[0, -1], -1)
    assert abs(probs[0] - full.max().item()) < 1e-6
    assert pieces[0] == tok.id_to_piece(int(full.argmax()))


def test_temperature_flattens_the_distribution(tiny):
    model, tok = tiny
    _, cold = widgets.next_token_probs(model, tok, "a", temperature=0.2, top=1)
    _, hot = widgets.next_token_probs(model, tok, "a", temperature=5.0, top=1)
    assert cold[0] > hot[0]
    with pytest.raises(ValueError, match="temperature"):
        widgets.next_token_probs(model, tok, "a", temperature=0)


def test_live_loss_plot_records_points():
    plot = widgets.LiveLossPlot()
    plot.update(10, 2.5)
    plot.update(20, 2.0)
    assert plot.steps == [10, 20] and plot.losses == [2.5, 2.0]
    line = plot.ax.get_lines()[0]
    assert list(line.get_ydata()) == [2.5, 2.0]


def test_next_token_explorer_builds(tiny):
    model, tok = tiny
    ui = widgets.next_token_explorer(model, tok, "ab")
    assert len(ui.children) == 3


def test_prompt_classifier_demo_updates_and_reports_bad_input(tiny, capsys):
    model, tok = tiny
    lm = CourseLM(model, tok)
    ui = widgets.prompt_classifier_demo(lm, {"t1": "[X]我感到[Z]", "t2": "[X]感到[Z]"},
                                        {"v": {"pos": ["a"], "neg": ["b", "c"]}}, text="ab")
    box = ui.children[0]
    assert "cannot classify" not in capsys.readouterr().out
    box.value = "ab🙂"                              # a character the tokenizer has no token for
    assert "cannot classify this: the tokenizer has no token for the characters ['🙂']" in capsys.readouterr().out
    with pytest.raises(ValueError, match="at least one template"):
        widgets.prompt_classifier_demo(lm, {}, {"v": {"pos": ["a"]}})


def test_lora_explorer(capsys):
    grid = {(1, 2): {"params": 10, "accuracy": 0.5, "spectrum": [1.0]},
            (4, 2): {"params": 40, "accuracy": 0.9, "spectrum": [1.0, 0.5, 0.2, 0.1]}}
    ui = widgets.lora_explorer(grid, full_spectrum=[2.0, 1.0, 0.5])
    pick_r = ui.children[0].children[0]
    pick_r.value = 4
    pick_r.value = 1
    assert "no run" not in capsys.readouterr().out
    with pytest.raises(ValueError, match="grid is empty"):
        widgets.lora_explorer({})


# ----------------------------------------------------------------------------- chapter 03: PEFT methods compared
def test_peft_explorer_builds_and_rejects_bad_results():
    results = {"adapters": {4: {"params": 100, "percent": 0.5, "latency": 1.3},
                            16: {"params": 400, "percent": 2.0, "latency": 1.35}},
               "LoRA merged": {4: {"params": 90, "percent": 0.4, "latency": 1.0}}}
    ui = widgets.peft_explorer(results)
    ui.children[0].children[0].value = "LoRA merged"                   # switch method: sizes follow
    assert list(ui.children[0].children[1].options) == [4]
    with pytest.raises(ValueError, match="lacks"):
        widgets.peft_explorer({"x": {1: {"params": 1}}})
    with pytest.raises(ValueError, match="non-empty"):
        widgets.peft_explorer({})


# ----------------------------------------------------------------------------- chapter 04: ALiBi and RoPE scaling
def test_alibi_heatmaps_draw_the_bias():
    fig = widgets.alibi_heatmaps(8, 12)
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 8
    data = images[-1].get_array()
    want = alibi_bias(8, 12)[7]
    assert abs(float(data[11, 0]) - want[11, 0].item()) < 1e-6
    assert torch.isnan(torch.as_tensor(data.filled(float("nan")) if hasattr(data, "filled") else data)[0, 5])   # the future
    assert len([ax for ax in widgets.alibi_heatmaps(32, 4).axes if ax.images]) == 8   # capped at 8 panels
    with pytest.raises(ValueError):
        widgets.alibi_heatmaps(0, 4)
    with pytest.raises(ValueError):
        widgets.alibi_heatmaps(4, 0)


def test_rope_angles_figure():
    fig = widgets.rope_angles_figure(255, 64, 4.0, "linear", head_dim=16, pair=7)
    right = fig.axes[1]
    plain, linear = (line.get_ydata() for line in right.get_lines()[:2])
    assert plain[-1] > 1.0 >= linear[-1] - 1e-6          # the slowest pair: out of range unscaled, back in with PI
    plt.close(fig)
    for kind in ("ntk", "yarn", "dynamic"):
        plt.close(widgets.rope_angles_figure(100, 64, 2.0, kind, head_dim=16))
    with pytest.raises(ValueError):
        widgets.rope_angles_figure(10, 64, 2.0, "linear", head_dim=16, pair=8)
    with pytest.raises(ValueError):
        widgets.rope_angles_figure(-1, 64, 2.0)
    with pytest.raises(ValueError):
        widgets.rope_angles_figure(10, 64, 0.5)


def test_alibi_and_rope_explorers_build():
    pytest.importorskip("ipywidgets")
    ui = widgets.alibi_explorer(8, 32)
    heads = ui.children[0].children[0]
    heads.value = 3
    assert heads.value == 3
    ui = widgets.rope_explorer(64, 16)
    ui.children[1].children[1].value = "yarn"
    with pytest.raises(ValueError):
        widgets.alibi_explorer(0, 32)


# ----------------------------------------------------------------------------- chapter 05: instruction data
POOL = ["Write a short story about a brave dog.", "写一首关于春天的诗。"]
CANDIDATES = ["Write a short story about a brave cat.", "写一首关于夏天的诗。", "Explain how tides work.",
              "Explain how the tides work.", "List three fruits."]


def shown_decisions(capsys) -> list[str]:
    """The candidates the explorer printed as kept at its last redraw."""
    lines = capsys.readouterr().out.splitlines()
    return [line.split(maxsplit=2)[2] for line in lines if line.startswith("kept ")]


def test_rouge_threshold_explorer_redraws_the_filter(capsys):
    ui = widgets.rouge_threshold_explorer(CANDIDATES, POOL)
    assert shown_decisions(capsys) == rouge_filter(CANDIDATES, POOL, 0.7)[0]
    slider = ui.children[0]
    for threshold in (0.3, 0.5, 0.9, 1.0):
        slider.value = threshold                       # redraws: the filter runs again
        assert shown_decisions(capsys) == rouge_filter(CANDIDATES, POOL, threshold)[0], threshold
    with pytest.raises(ValueError):
        widgets.rouge_threshold_explorer([], POOL)


def test_rouge_threshold_explorer_redraws_fast_at_the_chapters_size():
    pool = [t.instruction for t in load_seed_tasks()]                      # chapter 05: 44 seeds, 22 candidates
    candidates = [f"{verb} {thing} about the sea." for verb in ("Write", "Explain", "List") for thing in
                  ("a poem", "three facts", "a short story", "five tips", "a recipe", "an email", "a riddle")] + ["把这个分数化成小数。"]
    slider = widgets.rouge_threshold_explorer(candidates, pool).children[0]
    t0 = time.perf_counter()
    slider.value = 0.5
    assert time.perf_counter() - t0 < 1.0

import math
import sys
import time
import types

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import ipywidgets
import pytest
import torch
import torch.nn.functional as F

from llmtap import widgets
from llmtap.lm import CourseLM
from llmtap.model import GPT, GPTConfig
from llmtap.positions import alibi_bias
from llmtap.rouge import rouge_filter
from llmtap.self_instruct import load_seed_tasks
from llmtap.tokenizer import Tokenizer


@pytest.fixture(autouse=True)
def close_figures():
    """Under Agg, plt.show() keeps each explorer's figure open: close them after every test."""
    yield
    plt.close("all")


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


def controls(ui) -> list:
    """The controls of an explorer: its rows, HBoxes opened, without the output area."""
    rows = ui.children[:-1]
    return [c for row in rows for c in (row.children if isinstance(row, ipywidgets.HBox) else [row])]


def last_title() -> str:
    return plt.gcf().axes[0].get_title()


def test_next_token_explorer_builds_and_redraws(tiny):
    model, tok = tiny
    ui = widgets.next_token_explorer(model, tok, "ab")
    assert len(ui.children) == 3
    assert last_title() == "after 'ab', T = 1.0"
    ui.children[1].value = 2.0                               # the temperature slider
    assert last_title() == "after 'ab', T = 2.0"
    ui.children[0].value = "a" * 200                          # a long prompt is cut, the T kept
    assert last_title().endswith("…', T = 2.0") and len(last_title()) <= widgets.TITLE_CHARS
    with pytest.raises(TypeError, match="str"):
        widgets.next_token_explorer(model, tok, 42)


def test_the_default_prompt_has_a_spread_out_next_token_distribution(course):
    # the course model must be unsure after it, or the bars do not move with the temperature
    model, tok = course.model, course.tokenizer
    ids = torch.tensor([tok.encode(widgets.EXPLORER_PROMPT, bos=True)])
    with torch.no_grad():
        logits = model(ids)[0][0, -1].float()
    p1, p11 = F.softmax(logits, -1), F.softmax(logits / 1.1, -1)
    entropy = -(p1 * p1.clamp_min(1e-12).log()).sum().item()
    assert p1.max() < 0.5 and entropy > math.log(4), (p1.max().item(), entropy)
    assert (p1 - p11).abs().max() > 0.005                      # T = 1.0 -> 1.1 visibly moves a bar


def test_every_control_shows_its_whole_label(tiny):
    model, tok = tiny
    explorers = [widgets.next_token_explorer(model, tok, "ab"),
                 widgets.prompt_classifier_demo(CourseLM(model, tok), {"t": "[X]我感到[Z]"}, {"v": {"pos": ["a"]}}, "ab"),
                 widgets.lora_explorer({(1, 2): {"params": 1, "accuracy": 0.5, "spectrum": [1.0]}}),
                 widgets.peft_explorer({"m": {1: {"params": 1, "percent": 0.1, "latency": 1.0}}}),
                 widgets.alibi_explorer(4, 8), widgets.rope_explorer(16, 8),
                 widgets.rouge_threshold_explorer(["a b"], ["c d"])]
    for ui in explorers:
        for control in controls(ui):
            assert control.style.description_width == "initial", control.description


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


def test_prompt_classifier_demo_cuts_a_long_title_before_drawing_it(sharp_gpt):
    lm = CourseLM(*sharp_gpt("ab我感到", block_size=128))
    widgets.prompt_classifier_demo(lm, {"t": "[X]我感到[Z]"}, {"v": {"pos": ["a"], "neg": ["b"]}}, text="我" * 100)
    title = last_title()
    assert len(title) == widgets.TITLE_CHARS and title == "我" * (widgets.TITLE_CHARS - 1) + "…"
    with pytest.raises(ValueError, match="at least 2"):
        widgets.shorten("abc", 1)


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


def scaled_over_plain(position: int, trained_len: int = 64, factor: float = 4.0, rope_type: str = "dynamic"):
    """Per pair, the scaled angle ratio of the right panel over the unscaled one (slow pairs only,
    whose angles stay below one turn, so neither is capped)."""
    fig = widgets.rope_angles_figure(position, trained_len, factor, rope_type, head_dim=16)
    plain, scaled = (torch.tensor(line.get_ydata()) for line in fig.axes[1].get_lines()[:2])
    plt.close(fig)
    return (scaled / plain)[-3:]


def test_dynamic_rope_follows_the_position():
    inside = scaled_over_plain(40)                                # within L = 64: RoPE unchanged
    assert torch.allclose(inside, torch.ones_like(inside))
    assert torch.allclose(scaled_over_plain(63), torch.ones(3))
    near, far = scaled_over_plain(100), scaled_over_plain(400)  # longer sequence: stronger scaling
    assert (far < near).all() and (near < 1).all(), (near, far)
    # the other types do not depend on the length: the same ratio at every position
    assert torch.allclose(scaled_over_plain(100, rope_type="ntk"), scaled_over_plain(400, rope_type="ntk"))


def test_alibi_and_rope_explorers_build():
    pytest.importorskip("ipywidgets")
    ui = widgets.alibi_explorer(8, 32)
    heads = ui.children[0].children[0]
    heads.value = 3
    assert heads.value == 3
    ui = widgets.rope_explorer(64, 16)
    ui.children[1].children[1].value = "dynamic"
    before = plt.gcf().axes[1].get_lines()[1].get_ydata().copy()
    ui.children[0].children[0].value = 400                 # the position slider redraws "dynamic" too
    assert (plt.gcf().axes[1].get_lines()[1].get_ydata() != before).any()
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


# ----------------------------------------------------------------------------- ipywidgets 7 and 8, Colab
def test_live_view_redraws_on_every_kind_of_control():
    calls = []
    text, slider = ipywidgets.Text(value="a"), ipywidgets.IntSlider(value=1)
    pick = ipywidgets.Dropdown(options=["x", "y"])
    ui = widgets.live_view([text, [slider, pick]], lambda: calls.append((text.value, slider.value, pick.value)))
    assert isinstance(ui.children[-1], ipywidgets.Output) and len(ui.children) == 3
    text.value, slider.value, pick.value = "b", 5, "y"
    assert calls == [("a", 1, "x"), ("b", 1, "x"), ("b", 5, "x"), ("b", 5, "y")]


@pytest.fixture
def fake_colab(monkeypatch):
    """A google.colab module whose output.enable_custom_widget_manager records its calls."""
    calls = []
    colab = types.ModuleType("google.colab")
    colab.output = types.SimpleNamespace(enable_custom_widget_manager=lambda: calls.append(1))
    google = types.ModuleType("google")
    google.colab = colab
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setattr(widgets, "_colab_manager_enabled", False)
    return calls


def test_colab_with_ipywidgets_8_gets_its_custom_widget_manager_once(fake_colab, monkeypatch):
    monkeypatch.setattr(widgets.w, "__version__", "8.1.5")
    widgets.alibi_explorer(4, 8)
    widgets.rouge_threshold_explorer(["a b"], ["c d"])
    assert fake_colab == [1]


def test_colab_with_ipywidgets_7_needs_no_widget_manager(fake_colab, monkeypatch):
    monkeypatch.setattr(widgets.w, "__version__", "7.7.1")
    widgets.alibi_explorer(4, 8)
    assert fake_colab == []
    assert widgets.enable_colab_widget_manager() is False


def test_off_colab_nothing_is_enabled(monkeypatch):
    monkeypatch.setitem(sys.modules, "google.colab", None)        # import google.colab fails
    monkeypatch.setattr(widgets, "_colab_manager_enabled", False)
    monkeypatch.setattr(widgets.w, "__version__", "8.1.5")
    assert widgets.enable_colab_widget_manager() is False


def test_ipywidgets_major():
    assert widgets.ipywidgets_major() == int(ipywidgets.__version__.split(".")[0]) >= 7


KERNEL_CELLS = ["%matplotlib inline\nfrom llmtap import widgets",
                "still = widgets.alibi_explorer(2, 4)",
                "moved = widgets.alibi_explorer(2, 4)",
                "moved.children[0].children[0].value = 1       # redraws, from a later cell as a student would"]


def explorer_pngs(nb) -> list[list[str]]:
    """The PNGs in the output area of each displayed explorer, in display order."""
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    shown = [o["data"]["application/vnd.jupyter.widget-view+json"]["model_id"] for cell in nb.cells
             for o in cell.outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    areas = [state[vbox]["state"]["children"][-1].removeprefix("IPY_MODEL_") for vbox in shown]
    return [[o["data"]["image/png"] for o in state[area]["state"]["outputs"] if "image/png" in o.get("data", {})]
            for area in areas]


@pytest.mark.slow
def test_an_explorer_draws_and_redraws_in_a_kernel():
    # Output widgets capture a drawing only inside a kernel: run one the way a notebook does
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in KERNEL_CELLS])
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3", store_widget_state=True).execute()
    still, moved = explorer_pngs(nb)
    assert len(still) == len(moved) == 1                       # a first drawing each, cleared on redraw
    assert still != moved                                      # the moved one drew again: 1 head, not 2


def test_a_static_copy_of_the_first_view_only_when_asked(monkeypatch):
    drawn = []
    slider = ipywidgets.IntSlider(value=1)
    monkeypatch.delenv(widgets.STATIC_COPY, raising=False)
    widgets.live_view([slider], lambda: drawn.append("view"))
    assert drawn == ["view"]                                   # the live output's first drawing only
    drawn.clear()
    monkeypatch.setenv(widgets.STATIC_COPY, "1")
    widgets.live_view([slider], lambda: drawn.append("view"))
    assert drawn == ["view", "view"]                           # and once more, as a plain saved figure


# ----------------------------------------------------------------------------- chapter 06: loss masks
CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a fruit."},
        {"role": "assistant", "content": "pear"}, {"role": "user", "content": "一种动物？"},
        {"role": "assistant", "content": "apple"}]


def test_token_roles_follow_the_messages():
    from llmtap.chat import render
    rendered = render(CHAT, "human-assistant")
    roles = widgets.token_roles(CHAT, rendered)
    text = rendered.text
    assert "".join(c for c, r in zip(text, roles) if r == "assistant") == "pearapple"
    assert "".join(c for c, r in zip(text, roles) if r == "system") == "Be brief."
    assert roles[text.index("Human")] == "template"


@pytest.mark.parametrize("bug,trained", [(None, 11), ("pad-is-eos", 9), ("late-start", 9), ("train-on-prompt", None)])
def test_loss_mask_figure_frames_the_trained_tokens(bug, trained):
    from llmtap.chat import chat_labels, render, token_mask
    tok = Tokenizer.from_text(render(CHAT, "human-assistant").text)
    fig = widgets.loss_mask_figure(CHAT, "human-assistant", tok, bug=bug)
    ids, mask = token_mask(render(CHAT, "human-assistant", bos_token="<bos>"), tok)
    n = int((chat_labels(ids, mask, bug=bug, pad_id=tok.eos_id)[1] != -100).sum())
    assert trained is None or n == trained            # "pear<eos>" + "apple<eos>" is 11 tokens
    assert f"{n} trained" in fig.axes[0].get_title()
    framed = [p for p in fig.axes[0].patches if p.get_edgecolor()[:3] == (1.0, 0.0, 0.0)]
    assert len(framed) == n
    plt.close(fig)


def test_loss_mask_explorer_redraws(capsys):
    ui = widgets.loss_mask_explorer(CHAT)
    template, bug = ui.children[0].children
    assert "alpaca" not in template.options                   # two turns: the alpaca template refuses them
    bug.value = "pad-is-eos"
    assert "never learns to stop" in capsys.readouterr().out
    template.value = "chatml"
    assert "pad-is-eos" in last_title()

import matplotlib
matplotlib.use("Agg")
import pytest
import torch

from llmtap import widgets
from llmtap.model import GPT, GPTConfig
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


def test_plot_text_escapes_cjk_without_a_cjk_font(monkeypatch):
    monkeypatch.setattr(widgets, "_HAS_CJK_FONT", False)
    assert widgets.plot_text("ok 好") == "ok U+597D"
    monkeypatch.setattr(widgets, "_HAS_CJK_FONT", True)
    assert widgets.plot_text("ok 好") == "ok 好"


def test_live_loss_plot_records_points():
    plot = widgets.LiveLossPlot()
    plot.update(10, 2.5)
    plot.update(20, 2.0)
    assert plot.steps == [10, 20] and plot.losses == [2.5, 2.0]
    line = plot.ax.get_lines()[0]
    assert list(line.get_ydata()) == [2.5, 2.0]


def test_next_token_explorer_builds(tiny):
    pytest.importorskip("ipywidgets")
    model, tok = tiny
    ui = widgets.next_token_explorer(model, tok, "ab")
    assert len(ui.children) == 3


def test_prompt_classifier_demo_updates_and_reports_bad_input(tiny, capsys):
    from llmtap.prompting import CausalLM
    model, tok = tiny
    lm = CausalLM(model, tok)
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

"""Chapter 04 checkers and widgets."""
import pytest
import torch

from llmtap import checks, widgets
from llmtap.positions import alibi_bias, alibi_slopes, interpolate_positions


def _alibi_bias_answer(slopes, T):
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    return -slopes[:, None, None] * (i - j)


def test_checkers_accept_right_answers(capsys):
    assert checks.check_alibi_slopes(alibi_slopes)
    assert checks.check_alibi_bias(_alibi_bias_answer)
    assert checks.check_alibi_bias(lambda s, T: _alibi_bias_answer(s, T).masked_fill(
        ~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf")))                 # masked future is fine
    assert checks.check_interpolated_positions(lambda T, L, Lp: interpolate_positions(torch.arange(T), L, Lp))
    assert checks.check_ntk_base(lambda b, s, d: b * s ** (d / (d - 2)))
    assert capsys.readouterr().out.count("correct") == 5


def test_checkers_reject_wrong_answers(capsys):
    def only_powers_of_two(n):
        a = 256 ** (1 / n)
        return torch.tensor([a ** -(h + 1) for h in range(n)])
    assert not checks.check_alibi_slopes(only_powers_of_two)
    assert "not a power of two" in capsys.readouterr().out
    assert not checks.check_alibi_bias(lambda s, T: -_alibi_bias_answer(s, T))
    assert "sign" in capsys.readouterr().out
    assert not checks.check_alibi_bias(lambda s, T: _alibi_bias_answer(s, T)[0])
    assert "shape" in capsys.readouterr().out
    assert not checks.check_interpolated_positions(lambda T, L, Lp: torch.arange(T) * Lp / L)
    assert "stretches" in capsys.readouterr().out
    assert not checks.check_ntk_base(lambda b, s, d: b * s)
    assert "want" in capsys.readouterr().out


def test_checkers_report_unsolved_and_crashes(capsys):
    def stub(*args):
        raise NotImplementedError
    for check in (checks.check_alibi_slopes, checks.check_alibi_bias, checks.check_interpolated_positions,
                  checks.check_ntk_base):
        assert not check(stub)
    assert capsys.readouterr().out.count("not solved yet") == 4
    assert not checks.check_alibi_bias(lambda s, T: 1 / 0)
    assert "ZeroDivisionError" in capsys.readouterr().out


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
    import matplotlib.pyplot as plt
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


def test_explorers_build():
    pytest.importorskip("ipywidgets")
    import matplotlib
    matplotlib.use("Agg")
    ui = widgets.alibi_explorer(8, 32)
    heads = ui.children[0].children[0]
    heads.value = 3
    assert heads.value == 3
    ui = widgets.rope_explorer(64, 16)
    ui.children[1].children[1].value = "yarn"
    with pytest.raises(ValueError):
        widgets.alibi_explorer(0, 32)

"""Chinese text in plots: a Chinese font when one is installed, code points otherwise."""
from matplotlib import rcParams

from llmtap import plots


def test_plot_text_escapes_cjk_without_a_cjk_font(monkeypatch):
    monkeypatch.setattr(plots, "_HAS_CJK_FONT", False)
    assert plots.plot_text("ok 好") == "ok U+597D"
    monkeypatch.setattr(plots, "_HAS_CJK_FONT", True)
    assert plots.plot_text("ok 好") == "ok 好"


def test_plot_text_looks_for_a_font_once(monkeypatch):
    calls = []
    monkeypatch.setattr(plots, "_HAS_CJK_FONT", None)
    monkeypatch.setattr(plots, "use_cjk_font", lambda: calls.append(1))        # finds none
    assert plots.plot_text("猫") == "U+732B" and plots.plot_text("狗 dog") == "U+72D7 dog"
    assert calls == [1]


class FakeFont:
    def __init__(self, name):
        self.name = name


def test_use_cjk_font_takes_the_first_installed_one(monkeypatch):
    monkeypatch.setitem(rcParams, "font.sans-serif", ["DejaVu Sans"])
    monkeypatch.setitem(rcParams, "axes.unicode_minus", True)
    monkeypatch.setattr(plots.font_manager.fontManager, "ttflist", [FakeFont("DejaVu Sans"), FakeFont("SimHei"),
                                                                     FakeFont("Noto Sans SC")])
    assert plots.use_cjk_font() == "Noto Sans SC"                  # earlier in CJK_FONTS than SimHei
    assert rcParams["font.sans-serif"][:2] == ["Noto Sans SC", "DejaVu Sans"]
    assert rcParams["axes.unicode_minus"] is False
    monkeypatch.setattr(plots.font_manager.fontManager, "ttflist", [FakeFont("DejaVu Sans")])
    assert plots.use_cjk_font() is None


def test_has_cjk():
    assert plots.has_cjk("ok 好") and plots.has_cjk("カ") and not plots.has_cjk("ok, café ±")

"""Chinese text in plots: the shipped course font is registered and draws every course character."""
import io
import unicodedata

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest
from fontTools.ttLib import TTFont
from matplotlib import font_manager, ft2font, rcParams

from llmtap import build_font, plots

CHINESE = "动物：狐狸、猫、昨天我在公园里丢了钱包。我感到糟糕！"


def is_cjk(c: str) -> bool:
    """Han ideographs, CJK punctuation and full-width forms: what only a CJK font draws."""
    return unicodedata.name(c, "").startswith(("CJK", "IDEOGRAPHIC", "FULLWIDTH")) or 0x3000 <= ord(c) < 0x3040


def missing_glyph_warnings(recwarn) -> list[str]:
    return [str(w.message) for w in recwarn if "missing from font" in str(w.message)]


def draw_to_png(text: str, **font) -> None:
    fig, ax = plt.subplots(figsize=(4, 2))
    ax.set_title(text, **font)
    ax.set_xticks([0, 1], ["甲", "乙"])
    fig.savefig(io.BytesIO(), format="png")
    plt.close(fig)


def test_the_font_is_registered_first():
    assert plots.FONT_PATH.is_file()
    assert rcParams["font.sans-serif"][0] == plots.FONT_FAMILY
    assert rcParams["axes.unicode_minus"] is False
    shipped = [f for f in font_manager.fontManager.ttflist if f.fname == str(plots.FONT_PATH)]
    assert [f.name for f in shipped] == [plots.FONT_FAMILY]          # its own name, added once


def test_chinese_text_uses_the_shipped_font():
    fig, ax = plt.subplots()
    title = ax.set_title(CHINESE)
    assert font_manager.findfont(title.get_fontproperties()) == str(plots.FONT_PATH)
    plt.close(fig)


def test_chinese_renders_without_missing_glyphs(recwarn):
    draw_to_png(CHINESE + " ℝ ΔW −1")          # ℝ is not in the CJK font: DejaVu Sans draws it
    assert missing_glyph_warnings(recwarn) == []


def test_the_warning_check_can_fail(recwarn):
    draw_to_png(CHINESE, fontfamily="DejaVu Sans")   # matplotlib's own font alone has no Chinese
    assert missing_glyph_warnings(recwarn)


def test_the_font_has_every_chinese_character_of_the_course():
    has = set(ft2font.FT2Font(str(plots.FONT_PATH)).get_charmap())
    chars = build_font.course_characters()
    lacking = "".join(c for c in chars if is_cjk(c) and ord(c) not in has)
    assert not lacking, f"the course font lacks {lacking!r}: rebuild it (llmtap/data/fonts/README.txt)"
    dejavu = set(ft2font.FT2Font(font_manager.findfont("DejaVu Sans")).get_charmap())
    nowhere = [c for c in chars if ord(c) not in has | dejavu]
    assert all(ord(c) > 0xFFFF for c in nowhere), nowhere            # only emoji, which no plot shows


def test_course_characters():
    chars = build_font.course_characters()
    assert chars == "".join(sorted(set(chars)))
    from llmtap.corpus import alphabet
    assert set(alphabet()) - {"\n"} <= set(chars)
    assert {"。", "，", "A", "~", "积", "\u3000"} <= set(chars) and "\n" not in chars
    with pytest.raises(FileNotFoundError, match="checkout"):
        build_font.course_characters("/nonexistent")


def test_use_course_font_again_adds_nothing_twice():
    with matplotlib.rc_context():
        matplotlib.rcdefaults()                             # what a notebook may do after the import
        assert rcParams["font.sans-serif"][0] != plots.FONT_FAMILY
        n_fonts = len(font_manager.fontManager.ttflist)
        assert plots.use_course_font() == plots.use_course_font() == plots.FONT_FAMILY
        assert rcParams["font.sans-serif"].count(plots.FONT_FAMILY) == 1
        assert rcParams["font.family"] == ["sans-serif", plots.FALLBACK_FAMILY]
        assert len(font_manager.fontManager.ttflist) == n_fonts


def test_the_shipped_font_names_itself_and_keeps_its_licence():
    names = TTFont(plots.FONT_PATH)["name"]
    assert names.getDebugName(1) == plots.FONT_FAMILY
    assert "Open Font License" in names.getDebugName(13)
    licence = (plots.FONT_PATH.parent / "OFL.txt").read_text(encoding="utf-8")
    assert "SIL OPEN FONT LICENSE Version 1.1" in licence and "Adobe" in licence


@pytest.mark.skipif(not build_font.SOURCE_FONT.is_file(), reason="needs fonts-noto-cjk (a development-time package)")
def test_build_font_is_deterministic(tmp_path):
    first = build_font.build_font(out=tmp_path / "a.otf", chars="动物狐狸猫abc")
    second = build_font.build_font(out=tmp_path / "b.otf", chars="动物狐狸猫abc")
    assert (tmp_path / "a.otf").read_bytes() == (tmp_path / "b.otf").read_bytes()
    assert first["sha256"] == second["sha256"] and first["characters"] == 8
    font = TTFont(tmp_path / "a.otf")
    assert set(font.getBestCmap()) == {ord(c) for c in "动物狐狸猫abc"}
    assert font["name"].getDebugName(1) == plots.FONT_FAMILY
    with pytest.raises(FileNotFoundError, match="fonts-noto-cjk"):
        build_font.build_font(source=tmp_path / "none.ttc", out=tmp_path / "c.otf", chars="猫")

"""Chinese text in matplotlib plots, with or without a Chinese font installed.

Matplotlib's default font has no Chinese glyphs: a Chinese label comes out as empty boxes.
``use_cjk_font`` switches to an installed font that has them; where there is none,
``plot_text`` spells each CJK character as its code point (U+4F60), so that a plot stays readable.
Nothing is downloaded.
"""
from __future__ import annotations

from matplotlib import font_manager, rcParams

CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Micro Hei", "SimHei",
             "Microsoft YaHei", "PingFang SC", "Heiti SC", "Arial Unicode MS")
_FIRST_CJK = 0x2E80          # the first CJK block (radicals); kana, ideographs and Hangul come after


def use_cjk_font() -> str | None:
    """Switch matplotlib to the first installed font of ``CJK_FONTS``; its name, or None if there is none."""
    installed = {f.name for f in font_manager.fontManager.ttflist}
    for name in CJK_FONTS:
        if name in installed:
            rcParams["font.sans-serif"] = [name] + list(rcParams["font.sans-serif"])
            rcParams["axes.unicode_minus"] = False
            return name
    return None


_HAS_CJK_FONT = None         # looked up on the first call of plot_text


def plot_text(text: str) -> str:
    """``text`` as it can be drawn: unchanged with a Chinese font, else CJK characters as U+XXXX."""
    global _HAS_CJK_FONT
    if _HAS_CJK_FONT is None:
        _HAS_CJK_FONT = use_cjk_font() is not None
    if _HAS_CJK_FONT:
        return text
    return "".join(c if ord(c) < _FIRST_CJK else f"U+{ord(c):04X}" for c in text)


def has_cjk(text: str) -> bool:
    """Whether ``text`` has a character that ``plot_text`` would spell out without a Chinese font."""
    return any(ord(c) >= _FIRST_CJK for c in text)

"""Chinese text in matplotlib plots, on every machine.

Matplotlib's own font has no Chinese glyphs, and Colab and most Linux machines have no Chinese
font installed: a Chinese label would come out as empty boxes. The course therefore ships a
small font of its own, a subset of Noto Sans CJK SC (SIL Open Font License) with a glyph for
every character the course writes (``llmtap/data/fonts/README.txt`` says how it is rebuilt).
Importing this module registers it with matplotlib and makes it the first sans-serif font;
nothing is downloaded and no system font is needed.
"""
from __future__ import annotations

import warnings
from pathlib import Path

from matplotlib import font_manager, rcParams

FONT_PATH = Path(__file__).with_name("data") / "fonts" / "llmtap-sans-sc.otf"
FONT_FAMILY = "llmtap Sans SC"                  # a name of its own: a full Noto Sans CJK SC may be installed too
FALLBACK_FAMILY = "DejaVu Sans"                 # matplotlib's own font, for the few symbols it lacks (ℝ, ⟶)


def use_course_font() -> str:
    """Register the course's Chinese font with matplotlib and put it first; returns its family.

    Safe to call again (after ``plt.rcdefaults()``, say): the font is added only once."""
    if not FONT_PATH.is_file():
        raise FileNotFoundError(f"the course font {FONT_PATH} is missing: reinstall llmtap")
    if not any(Path(f.fname) == FONT_PATH for f in font_manager.fontManager.ttflist):
        font_manager.fontManager.addfont(FONT_PATH)
    rcParams["font.sans-serif"] = [FONT_FAMILY] + [f for f in rcParams["font.sans-serif"] if f != FONT_FAMILY]
    # Matplotlib falls back glyph by glyph only along font.family, not along font.sans-serif.
    if FALLBACK_FAMILY not in rcParams["font.family"]:
        rcParams["font.family"] = list(rcParams["font.family"]) + [FALLBACK_FAMILY]
    rcParams["axes.unicode_minus"] = False      # the ASCII hyphen for minus signs, as Chinese setups do
    return FONT_FAMILY


try:
    use_course_font()
except FileNotFoundError as e:        # plots still work, only Chinese text shows as boxes
    warnings.warn(str(e), stacklevel=2)

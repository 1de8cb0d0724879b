"""Rebuild the Chinese font that ``llmtap.plots`` ships: a subset of Noto Sans CJK SC.

A full CJK font is 16-20 MB; the course writes a few hundred distinct characters. This keeps
the glyphs of exactly those characters (plus ASCII and the usual CJK punctuation), so that
every plot can draw Chinese on any machine without a download. Run it from a checkout of the
course after changing the texts, on a Debian or Ubuntu machine (development time only):

    apt-get install -y fonts-noto-cjk
    python -m llmtap.build_font

The same source font and the same course texts give the same file, byte for byte.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import unicodedata
from pathlib import Path

from fontTools import subset
from fontTools.ttLib import TTCollection

from .corpus import alphabet
from .plots import FONT_FAMILY, FONT_PATH

SOURCE_FONT = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")    # Debian's fonts-noto-cjk
SOURCE_FAMILY = "Noto Sans CJK SC"               # the Simplified Chinese face of the collection
POSTSCRIPT_NAME = "llmtapSansSC-Regular"
REPO_ROOT = Path(__file__).resolve().parents[1]

PRINTABLE_ASCII = "".join(chr(c) for c in range(0x20, 0x7F))
# The CJK Symbols and Punctuation block (。、「」《》...) and the full-width forms (，！？：（）...)
# that a Chinese keyboard types; only those the font has are kept.
CJK_PUNCTUATION = "".join(chr(c) for c in [*range(0x3000, 0x3040), *range(0xFF01, 0xFF66)]) + "‘’“”…—–·"


def course_characters(root: Path = REPO_ROOT) -> str:
    """Every character the course can draw, sorted: the corpus alphabet, the notebooks
    (solutions/ and chapters/, markdown and code), the seed tasks, the library's own strings,
    printable ASCII and CJK punctuation."""
    root = Path(root)
    notebooks = sorted(root.glob("solutions/*.ipynb")) + sorted(root.glob("chapters/*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"no notebooks under {root}/solutions: run this from a checkout of the course")
    texts = [alphabet(), PRINTABLE_ASCII, CJK_PUNCTUATION]
    for path in notebooks:
        texts += ["".join(cell["source"]) for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]]
    texts.append((root / "llmtap" / "data" / "seed_tasks.jsonl").read_text(encoding="utf-8"))
    texts += [path.read_text(encoding="utf-8") for path in sorted((root / "llmtap").rglob("*.py"))]
    # every character but the control ones (newlines, tabs): spaces such as U+3000 need a glyph too
    return "".join(sorted({c for text in texts for c in text if unicodedata.category(c)[0] != "C"}))


def load_face(collection: Path, family: str):
    """The face named ``family`` of a .ttc collection, as a fontTools TTFont."""
    if not Path(collection).is_file():
        raise FileNotFoundError(f"{collection} not found: install it with `apt-get install -y fonts-noto-cjk`, "
                                "or pass --source")
    # recalcTimestamp=False keeps the source's dates in the head table: saving must not stamp today
    faces = TTCollection(str(collection), recalcTimestamp=False).fonts
    for face in faces:
        if face["name"].getDebugName(1) == family:
            return face
    raise ValueError(f"{collection} has no face {family!r}; it has {[f['name'].getDebugName(1) for f in faces]}")


def rename(font, family: str, postscript_name: str) -> None:
    """Give the subset a name of its own: it never stands in for a full Noto Sans CJK SC installed
    on the same machine, and a Modified Version (in the OFL's sense) leaves the original's name."""
    names = font["name"]
    for record in list(names.names):
        if record.nameID in (1, 3, 4, 16):                 # family, unique id, full name, typographic family
            names.setName(family if record.nameID != 3 else f"{postscript_name};subset of {SOURCE_FAMILY}",
                          record.nameID, record.platformID, record.platEncID, record.langID)
        elif record.nameID == 6:                           # the PostScript name, which must match the CFF's
            names.setName(postscript_name, 6, record.platformID, record.platEncID, record.langID)
    cff = font["CFF "].cff
    cff.fontNames = [postscript_name]
    top = cff.topDictIndex[0]
    for key in ("FullName", "FamilyName"):
        if hasattr(top, key):
            setattr(top, key, family)


def build_font(source: Path = SOURCE_FONT, out: Path = FONT_PATH, chars: str | None = None) -> dict:
    """Write the subset of ``source``'s SC face for ``chars`` (default: ``course_characters()``)
    to ``out``. Returns what it did: the file, its size, its sha256, the glyph count and the
    characters the source font has no glyph for (matplotlib draws those with DejaVu Sans)."""
    chars = course_characters() if chars is None else chars
    if not chars:
        raise ValueError("no characters to keep")
    font = load_face(source, SOURCE_FAMILY)
    has = font.getBestCmap()
    options = subset.Options()
    options.name_IDs = ["*"]             # keep the copyright and the licence (OFL condition 2) in the font
    options.notdef_outline = True        # a character without a glyph shows as a box, not as nothing
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=sorted({ord(c) for c in chars}))
    subsetter.subset(font)
    rename(font, FONT_FAMILY, POSTSCRIPT_NAME)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    font.save(str(out))
    data = out.read_bytes()
    return {"file": str(out), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "glyphs": len(font.getGlyphOrder()), "characters": sum(ord(c) in has for c in chars),
            "not in the source font": "".join(c for c in chars if ord(c) not in has)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m llmtap.build_font", description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=SOURCE_FONT,
                        help=f"the Noto Sans CJK .ttc (default {SOURCE_FONT})")
    parser.add_argument("--out", type=Path, default=FONT_PATH, help=f"where to write the subset (default {FONT_PATH})")
    args = parser.parse_args(argv)
    for key, value in build_font(args.source, args.out).items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()

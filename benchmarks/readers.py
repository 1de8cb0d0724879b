"""Instruction-data readers: llmtap.instruct / llmtap.conversations versus plain ``json``, in one run.

For every format a seeded synthetic file of about ``--mb`` megabytes is written, then read
(a) by the llmtap reader, which checks every example, keeps where it came from and builds
records or conversations, and (b) by the standard library alone (``json.loads`` of the whole
list, or of every line), which only parses. The table gives MB/s of each and their ratio: the
price of the checks. With ``--real DIR``, a folder of real public files you downloaded (Stanford Alpaca in parts
under alpaca_en/, sharegpt/, llamafactory/, oasst/), those are read too; the 52k Alpaca list
is assembled from its parts in a temporary folder.

    python benchmarks/readers.py [--mb 20] [--quick] [--real DIR]
"""
from __future__ import annotations

import glob
import gzip
import json
import random
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import base_parser, print_table  # noqa: E402

from llmtap.conversations import read_messages, read_oasst, read_sharegpt  # noqa: E402
from llmtap.instruct import read_alpaca, read_dolly, read_jsonl  # noqa: E402

WORDS = ("apple pear lemon cat dog fox river mountain write explain list compare summarize the a of in for "
         "苹果 梨 柠檬 猫 狗 河 山 写 解释 比较 总结").split()


def text(rng, n):
    return " ".join(rng.choice(WORDS) for _ in range(n))


def row(rng, fmt, i):
    if fmt in ("alpaca", "jsonl"):
        return {"instruction": text(rng, 12), "input": text(rng, rng.choice([0, 0, 20])), "output": text(rng, 60)}
    if fmt == "dolly":
        return {"instruction": text(rng, 12), "context": text(rng, 20), "response": text(rng, 60), "category": "qa"}
    if fmt == "sharegpt":
        return {"id": str(i), "conversations": [{"from": "human" if k % 2 == 0 else "gpt", "value": text(rng, 40)}
                                                for k in range(2 * rng.randint(1, 3))]}
    if fmt == "messages":
        return {"messages": [{"role": "user" if k % 2 == 0 else "assistant", "content": text(rng, 40)}
                             for k in range(2 * rng.randint(1, 3))]}
    raise ValueError(fmt)


def oasst_rows(rng, i):
    """One tree: a prompt, 2 ranked replies, a follow-up under the first."""
    ids = [f"{i}-{k}" for k in range(4)]
    parents = [None, ids[0], ids[0], ids[1]]
    roles = ["prompter", "assistant", "assistant", "prompter"]
    rows = [{"message_id": m, "parent_id": p, "role": r, "text": text(rng, 40), "lang": "en", "rank": k % 2,
             "deleted": False, "review_result": True} for k, (m, p, r) in enumerate(zip(ids, parents, roles))]
    rows.append({"message_id": f"{i}-4", "parent_id": ids[3], "role": "assistant", "text": text(rng, 40), "lang": "en",
                 "rank": 0, "deleted": False, "review_result": True})
    return rows


def synthetic(folder: Path, mb: float, seed: int = 0) -> dict:
    """(path, llmtap reader, lines?) per format, each file about ``mb`` megabytes."""
    rng, files = random.Random(seed), {}
    readers = {"alpaca": (read_alpaca, False), "jsonl": (read_jsonl, True), "dolly": (read_dolly, True),
               "sharegpt": (read_sharegpt, False), "messages": (read_messages, True)}
    for fmt, (read, lines) in readers.items():
        items, size, i = [], 0, 0
        while size < mb * 1e6:
            items.append(row(rng, fmt, i))
            size += len(json.dumps(items[-1], ensure_ascii=False).encode())
            i += 1
        files[fmt] = (write(folder / f"{fmt}.json", items, lines), read, lines)
    rows, size, i = [], 0, 0
    while size < mb * 1e6:
        rows += oasst_rows(rng, i)
        size += sum(len(json.dumps(r).encode()) for r in rows[-5:])
        i += 1
    files["oasst rows"] = (write(folder / "oasst.jsonl", rows, True), read_oasst, True)
    return files


def write(path: Path, items, lines: bool) -> Path:
    body = "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in items) if lines else \
        json.dumps(items, ensure_ascii=False, indent=2)
    path.write_text(body, encoding="utf-8")
    return path


def real(folder: Path, data: Path) -> dict:
    files = {}
    parts = sorted(glob.glob(str(data / "alpaca_en" / "*.json.gz")))
    if parts:
        items = [x for p in parts for x in json.loads(gzip.decompress(Path(p).read_bytes()))]
        files["real Alpaca 52k (list)"] = (write(folder / "alpaca_data.json", items, False), read_alpaca, False)
        files["real Alpaca 52k (lines)"] = (write(folder / "alpaca_data.jsonl", items, True), read_jsonl, True)
    for name, rel, read, lines in [("real ShareGPT (FastChat)", "sharegpt/fastchat_dummy_conversation.json.gz",
                                    read_sharegpt, False),
                                   ("real ShareGPT tools (LLaMA-Factory)", "llamafactory/glaive_toolcall_en_demo.json.gz",
                                    read_sharegpt, False),
                                   ("real OASST rows", "oasst/oasst1_validation_en.jsonl.gz", read_oasst, True),
                                   ("real OASST trees", "oasst/en_100_tree.jsonl.gz", read_oasst, True)]:
        if (data / rel).is_file():
            body = gzip.decompress((data / rel).read_bytes())
            path = folder / Path(rel).name[:-3]
            path.write_bytes(body)
            files[name] = (path, read, lines)
    return files


def plain_json(path: Path, lines: bool):
    body = path.read_text(encoding="utf-8")
    return [json.loads(line) for line in body.splitlines() if line.strip()] if lines else json.loads(body)


def best_of(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main():
    ap = base_parser(__doc__)
    ap.add_argument("--mb", type=float, default=20.0, help="size of each synthetic file in MB")
    ap.add_argument("--real", type=Path, default=None, help="folder of downloaded real files (alpaca_en/, sharegpt/, llamafactory/, oasst/)")
    args = ap.parse_args()
    mb, repeat = (0.5, 1) if args.quick else (args.mb, 3)
    with tempfile.TemporaryDirectory() as tmp:
        files = synthetic(Path(tmp), mb)
        if args.real is not None:
            files.update(real(Path(tmp), args.real))
        out = []
        for name, (path, read, lines) in files.items():
            size = path.stat().st_size / 1e6
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t_llmtap, got = best_of(lambda: read(path, on_error="skip"), repeat)
            t_json, _ = best_of(lambda: plain_json(path, lines), repeat)
            out.append({"format": name, "MB": round(size, 1), "examples": len(got), "skipped": len(got.skipped),
                        "llmtap MB/s": size / t_llmtap, "json MB/s": size / t_json,
                        "llmtap / json time": t_llmtap / t_json})
    print_table(out, "reading instruction data: llmtap readers vs plain json parsing (best of "
                     f"{repeat}, one process)")


if __name__ == "__main__":
    main()

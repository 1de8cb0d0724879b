"""Run every benchmark (or the ones named) in turn: python benchmarks/run.py [--device cuda] [--quick] [names]"""
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
ALL = sorted(p.stem for p in HERE.glob("*.py") if p.stem not in ("common", "run"))

if __name__ == "__main__":
    flags = [a for a in sys.argv[1:] if a.startswith("--")]
    values = [a for a in sys.argv[1:] if not a.startswith("--")]
    if "--device" in flags and values:          # "--device cuda": keep the value with its flag
        flags.append(values.pop(0))
    names = values or ALL
    unknown = sorted(set(names) - set(ALL))
    if unknown:
        sys.exit(f"unknown benchmark(s) {unknown}; available: {ALL}")
    failed = [n for n in names if subprocess.call([sys.executable, str(HERE / f"{n}.py"), *flags]) != 0]
    sys.exit(f"failed: {failed}" if failed else 0)

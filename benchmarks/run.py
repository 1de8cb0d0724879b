"""Run every benchmark (or the ones named) in turn:

    python benchmarks/run.py [--device cuda] [--threads 1] [--quick] [names]

Flags pass through to each benchmark; ``--device`` and ``--threads`` take a value.
"""
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
ALL = sorted(p.stem for p in HERE.glob("*.py") if p.stem not in ("common", "run"))
TAKES_VALUE = {"--device", "--threads"}


def split_args(argv):
    flags, names, args = [], [], iter(argv)
    for a in args:
        if a.startswith("--"):
            flags.append(a)
            if a in TAKES_VALUE:
                flags.append(next(args, ""))
        else:
            names.append(a)
    return flags, names


if __name__ == "__main__":
    flags, names = split_args(sys.argv[1:])
    names = names or ALL
    unknown = sorted(set(names) - set(ALL))
    if unknown:
        sys.exit(f"unknown benchmark(s) {unknown}; available: {ALL}")
    failed = [n for n in names if subprocess.call([sys.executable, str(HERE / f"{n}.py"), *flags]) != 0]
    sys.exit(f"failed: {failed}" if failed else 0)

#!/usr/bin/env python3
"""Run the chapter notebooks the way a student's fresh Colab runtime runs them.

A student on Colab has Colab's preinstalled packages and nothing else; the notebook's first
cell installs llmtap when it is missing. This runner reproduces that path on a CPU machine:

1. a fresh virtual environment with only what Colab preinstalls and the lessons may use
   (COLAB_PACKAGES below: CPU torch, numpy, matplotlib, ipywidgets 7.7, tqdm, ipykernel),
   registered as a Jupyter kernel inside that environment only;
2. a wheel built from this checkout, whose path goes to the kernel as LLMTAP_SOURCE: that is
   what the first cell installs;
3. each chapters/*.ipynb, unchanged, copied to its own folder outside the checkout and executed
   top to bottom there with nbclient; before every notebook the environment is put back to its
   preinstalled state, as each Colab notebook gets a fresh runtime (``--jobs`` notebooks at a
   time, each job with an environment of its own);
4. a table (notebook, seconds, result, first error), the executed copies and summary.json in
   the output folder, and exit status 1 when any notebook had an error output, timed out, or
   made pip replace a pinned preinstalled package (torch, ipywidgets).

See ci/colab_like.md for what this reproduces and what it does not.
"""
from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHAPTERS = REPO / "chapters"
DEFAULT_OUT = Path(tempfile.gettempdir()) / "llmtap-colab-like"
KERNEL_NAME = "colab-like"
BASELINE_FILE = "colab-like-baseline.json"

# What a Colab runtime has preinstalled and the lessons may rely on. Nothing of the test
# extras (transformers, peft, rouge-score, pytest, nbval): a notebook that needs one of those
# fails here as it would for a student whose Colab lacks it.
COLAB_PACKAGES = ["torch==2.13.0", "numpy", "matplotlib", "ipywidgets==7.7.*", "tqdm", "ipykernel"]
# Installing llmtap must leave these at their preinstalled version (Colab's own builds).
PINNED = ["torch", "ipywidgets"]
# Must not be in the fresh environment.
ABSENT = ["transformers", "peft", "rouge-score", "pytest", "nbval", "llmtap"]
# Versions printed for the record.
REPORTED = ["torch", "numpy", "matplotlib", "ipywidgets", "widgetsnbextension", "jupyterlab-widgets",
            "tqdm", "ipykernel", "ipython", "traitlets", "comm", "safetensors", "llmtap"]

PIP_TIMEOUT = 1500        # seconds for creating the environment (torch is large)
STEP_TIMEOUT = 600        # seconds for any other pip / build step


class SetupError(RuntimeError):
    """The runner could not prepare the environment (not a notebook failure)."""


ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def plain(text: str) -> str:
    return ANSI.sub("", text)


def log(msg: str = "") -> None:
    print(msg, flush=True)


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def run(cmd, *, timeout: float, cwd=None, env=None, quiet: bool = False) -> str:
    """Run a command, bounded in time; raise SetupError with its output tail when it fails."""
    shown = " ".join(str(c) for c in cmd)
    if not quiet:
        log(f"$ {shown}")
    try:
        p = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, timeout=timeout, text=True,
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except subprocess.TimeoutExpired as e:
        raise SetupError(f"timed out after {timeout:.0f} s: {shown}") from e
    out = "\n".join(line for line in p.stdout.splitlines()
                    if not re.match(r"WARNING: Location '.*' is ignored", line))
    if p.returncode != 0:
        raise SetupError(f"exit {p.returncode}: {shown}\n{out[-4000:]}")
    return out


def vpython(venv: Path) -> Path:
    return venv / "bin" / "python"


def pip_list(venv: Path) -> dict[str, str]:
    out = run([vpython(venv), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
              timeout=STEP_TIMEOUT, quiet=True)
    start = out.find("[")
    return {norm(d["name"]): d["version"] for d in json.loads(out[start:])}


def pip_env() -> dict[str, str]:
    env = dict(os.environ)
    for k in ("PYTHONPATH", "PYTHONHOME", "PIP_REQUIRE_VIRTUALENV", "PIP_USER"):
        env.pop(k, None)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


# ---------------------------------------------------------------------------- environment

def check_cpu_torch(venv: Path, tmp: Path) -> None:
    """Refuse to go on when pip would fetch a non-CPU (multi-GB CUDA) torch build."""
    report = tmp / f"torch-resolution-{venv.name}.json"     # one per environment: they may be made side by side
    run([vpython(venv), "-m", "pip", "install", "--dry-run", "--no-deps", "--quiet", "--report", report,
         COLAB_PACKAGES[0]], timeout=STEP_TIMEOUT, env=pip_env())
    items = json.loads(report.read_text())["install"]
    torch = next(i for i in items if norm(i["metadata"]["name"]) == "torch")
    version, url = torch["metadata"]["version"], torch["download_info"]["url"]
    log(f"torch resolves to {version} from {url}")
    if "+cpu" not in version and os.environ.get("COLAB_LIKE_ANY_TORCH") != "1":
        raise SetupError(f"pip would install torch {version} from {url}, which is not a CPU build "
                         "(it may be a multi-GB CUDA build). Make a CPU wheel of torch 2.13.0 "
                         "reachable by pip, or set COLAB_LIKE_ANY_TORCH=1 to accept this one.")


def create_venv(venv: Path, python: str, tmp: Path) -> dict[str, str]:
    if venv.exists() and any(venv.iterdir()):
        raise SetupError(f"{venv} exists and is not empty: not creating an environment there")
    t0 = time.monotonic()
    log(f"== creating the Colab-like environment in {venv}")
    run([python, "-m", "venv", venv], timeout=STEP_TIMEOUT)
    check_cpu_torch(venv, tmp)
    run([vpython(venv), "-m", "pip", "install", "--quiet", *COLAB_PACKAGES], timeout=PIP_TIMEOUT, env=pip_env())
    # The kernelspec goes inside the environment: the user's own Jupyter kernels are not touched.
    run([vpython(venv), "-m", "ipykernel", "install", "--prefix", venv, "--name", KERNEL_NAME,
         "--display-name", "Python 3 (Colab-like)"], timeout=STEP_TIMEOUT)
    baseline = pip_list(venv)
    present = [n for n in ABSENT if norm(n) in baseline]
    if present:
        raise SetupError(f"the fresh environment holds packages it must not: {present}")
    (venv / BASELINE_FILE).write_text(json.dumps(baseline, indent=1, sort_keys=True))
    log(f"environment ready in {time.monotonic() - t0:.0f} s")
    return baseline


def diff(baseline: dict[str, str], now: dict[str, str]):
    changed = {n: (baseline[n], now[n]) for n in baseline if n in now and now[n] != baseline[n]}
    added = {n: now[n] for n in now if n not in baseline}
    removed = {n: baseline[n] for n in baseline if n not in now}
    return changed, added, removed


def reset_venv(venv: Path, baseline: dict[str, str]) -> str:
    """Put the environment back to its preinstalled state (a fresh Colab runtime)."""
    changed, added, removed = diff(baseline, pip_list(venv))
    if added:
        run([vpython(venv), "-m", "pip", "uninstall", "--yes", "--quiet", *sorted(added)],
            timeout=STEP_TIMEOUT, env=pip_env(), quiet=True)
    back = sorted(set(changed) | set(removed))
    if back:
        run([vpython(venv), "-m", "pip", "install", "--quiet", "--no-deps",
             *[f"{n}=={baseline[n]}" for n in back]], timeout=PIP_TIMEOUT, env=pip_env(), quiet=True)
    left = diff(baseline, pip_list(venv))
    if any(left):
        raise SetupError("could not reset the environment: changed {}, added {}, removed {}".format(*left))
    if not (added or back):
        return "already fresh"
    return f"reset: removed {', '.join(sorted(added)) or '-'}; restored {', '.join(back) or '-'}"


def kernel_dir(venv: Path) -> Path:
    return venv / "share" / "jupyter" / "kernels"


# ---------------------------------------------------------------------------- llmtap source

def build_wheel(tmp: Path) -> Path:
    """A wheel of the checkout, built from a copy so that nothing is written into the checkout."""
    src, dest = tmp / "src", tmp / "wheel"
    skip = shutil.ignore_patterns(".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__",
                                  ".ipynb_checkpoints", "*.pyc")
    shutil.copytree(REPO, src, ignore=skip, symlinks=True)
    log("== building the llmtap wheel from the checkout")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", dest, src],
        timeout=STEP_TIMEOUT, env=pip_env())
    wheels = sorted(dest.glob("llmtap-*.whl"))
    if len(wheels) != 1:
        raise SetupError(f"expected one llmtap wheel in {dest}, found {wheels}")
    log(f"LLMTAP_SOURCE={wheels[0]}")
    return wheels[0]


def installed_from(venv: Path) -> str | None:
    """Where the environment's llmtap came from (its direct_url.json), or None when not installed."""
    code = textwrap.dedent("""
        import json, importlib.metadata as m
        try:
            d = m.distribution("llmtap")
        except m.PackageNotFoundError:
            print("NONE")
        else:
            t = d.read_text("direct_url.json")
            print(json.loads(t)["url"] if t else "index: llmtap " + d.version)
    """)
    out = run([vpython(venv), "-c", code], timeout=120, quiet=True, env=pip_env()).strip().splitlines()[-1]
    return None if out == "NONE" else out


# ---------------------------------------------------------------------------- notebooks

def kernel_env(venv: Path, source: str) -> dict[str, str]:
    """The kernel's environment: the Colab-like venv first on PATH, nothing of the project's."""
    env = dict(os.environ)
    for k in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "MPLBACKEND", "JUPYTER_PATH",
              "PIP_REQUIRE_VIRTUALENV", "PIP_USER", "CONDA_PREFIX"):
        env.pop(k, None)
    project_bins = {str(Path(sys.prefix) / "bin"), str(REPO / ".venv" / "bin")}
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and p not in project_bins]
    env["PATH"] = os.pathsep.join([str(venv / "bin"), *path])
    env["VIRTUAL_ENV"] = str(venv)
    env["PYTHONNOUSERSITE"] = "1"
    env["LLMTAP_SOURCE"] = source
    return env


def source_head(cell, n: int = 3) -> str:
    lines = [line for line in cell.source.splitlines() if line.strip()][:n]
    return "\n".join("      | " + line[:110] for line in lines)


def error_outputs(nb) -> list[dict]:
    found = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                found.append({"cell": index, "in": cell.get("execution_count"),
                              "expected": "raises-exception" in cell.get("metadata", {}).get("tags", []),
                              "ename": out.get("ename", ""), "evalue": plain(str(out.get("evalue", ""))),
                              "source": source_head(cell)})
    return found


def warnings_of(nb, limit: int = 8) -> list[str]:
    """First line of each warning a cell wrote to stderr (shown, not failing)."""
    found = []
    for index, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                for line in out.get("text", "").splitlines():
                    if re.search(r"Warning|WARNING|Error|ERROR", line) and not re.search(r"Location '.*' is ignored", line):
                        line = re.sub(r"^\S*/ipykernel_\d+/\d+\.py:\d+: ", "", line.strip())
                        if f"cell {index}: {line[:160]}" not in found:
                            found.append(f"cell {index}: {line[:160]}")
    return found[:limit] + ([f"... {len(found) - limit} more"] if len(found) > limit else [])


def stream_text(cell) -> str:
    text = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")
    return "\n".join(line for line in plain(text).splitlines()
                     if line.strip() and not re.search(r"Location '.*' is ignored", line))


async def execute(nb, workdir: Path, venv: Path, env: dict, cell_timeout: int, nb_timeout: int):
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient

    ksm = KernelSpecManager(kernel_dirs=[str(kernel_dir(venv))])
    km = AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=ksm)
    argv0 = Path(km.kernel_spec.argv[0])
    if argv0 != vpython(venv):
        raise SetupError(f"kernelspec {KERNEL_NAME} starts {argv0}, not {vpython(venv)}")
    client = NotebookClient(nb, km=km, kernel_name=KERNEL_NAME, timeout=cell_timeout, startup_timeout=180,
                            allow_errors=True, record_timing=True, shutdown_kernel="immediate",
                            resources={"metadata": {"path": str(workdir)}})
    try:
        await asyncio.wait_for(client.async_execute(env=env, cwd=str(workdir)), timeout=nb_timeout)
    finally:
        try:
            if km.has_kernel:
                await km.shutdown_kernel(now=True)
        except Exception:       # the kernel may be gone already
            pass
        try:
            await km.cleanup_resources()
        except Exception:
            pass


def cell_seconds(cell) -> float | None:
    from datetime import datetime
    t = cell.get("metadata", {}).get("execution", {})
    a, b = t.get("iopub.execute_input"), t.get("shell.execute_reply")
    if not (a and b):
        return None
    parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))
    return (parse(b) - parse(a)).total_seconds()


def run_notebook(path: Path, work_root: Path, out_dir: Path, venv: Path, baseline: dict, source: str,
                 args) -> dict:
    import nbformat
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    res = {"notebook": path.name, "seconds": None, "install_seconds": None, "result": "ok",
           "errors": [], "problems": [], "pip": {}, "llmtap_from": None}
    log(f"\n== {path.name}")
    log(f"fresh runtime: {reset_venv(venv, baseline)}")
    workdir = work_root / path.stem
    workdir.mkdir(parents=True)
    target = workdir / path.name
    shutil.copy2(path, target)
    nb = nbformat.read(target, as_version=4)
    for cell in nb.cells:       # outputs and timings saved in the file must not pass for this run's
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            cell.metadata.pop("execution", None)

    if installed_from(venv) is not None:
        raise SetupError("llmtap is importable before the notebook ran: the install branch would be skipped")

    t0 = time.monotonic()
    try:
        env = kernel_env(venv, source)
        if getattr(args, "kernel_threads", None):      # jobs side by side: each kernel its share of the cores
            env.setdefault("OMP_NUM_THREADS", str(args.kernel_threads))
        asyncio.run(execute(nb, workdir, venv, env, args.cell_timeout, args.notebook_timeout))
    except CellTimeoutError as e:
        res["problems"].append(f"a cell ran past {args.cell_timeout} s: {str(e).splitlines()[0][:200]}")
    except DeadKernelError as e:
        res["problems"].append(f"the kernel died: {e}")
    except asyncio.TimeoutError:
        res["problems"].append(f"the notebook ran past {args.notebook_timeout} s")
    except SetupError:
        raise
    except Exception as e:      # nbclient / kernel start problems: record, go on with the next notebook
        res["problems"].append(f"{type(e).__name__}: {e}")
        traceback.print_exc()
    res["seconds"] = round(time.monotonic() - t0, 1)

    code = [c for c in nb.cells if c.cell_type == "code"]
    if code:
        res["install_seconds"] = cell_seconds(code[0])
    nbformat.write(nb, out_dir / path.name)

    errors = error_outputs(nb)
    res["errors"] = errors
    res["warnings"] = warnings_of(nb)
    res["llmtap_from"] = installed_from(venv)
    if res["llmtap_from"] is None:
        tail = stream_text(code[0]).strip()[-600:] if code else ""
        res["problems"].append("the first cell did not install llmtap" + (f"; its output ends:\n{tail}" if tail else ""))
    elif Path(source).is_file() and not res["llmtap_from"].endswith("/" + Path(source).name):
        res["problems"].append(f"llmtap came from {res['llmtap_from']}, not from LLMTAP_SOURCE={source}")

    changed, added, removed = diff(baseline, pip_list(venv))
    res["pip"] = {"changed": {n: f"{a} -> {b}" for n, (a, b) in changed.items()}, "added": added,
                  "removed": removed}
    for n in PINNED:
        if n in changed or n in removed:
            res["problems"].append(f"pip replaced preinstalled {n} "
                                   f"{baseline[n]} -> {changed[n][1] if n in changed else 'removed'}")

    bad = [e for e in errors if not e["expected"]]
    if bad or res["problems"]:
        res["result"] = "FAILED"
    if any(n in changed or n in removed for n in PINNED):
        res["result"] = "FAILED (pip)"
    for n, e in enumerate(errors):
        tag = "expected error (raises-exception)" if e["expected"] else "ERROR"
        if n < 8:
            log(f"  {tag} in cell {e['cell']} [In {e['in']}]: {e['ename']}: {e['evalue'][:300]}")
            log(e["source"])
        elif n < 30:
            log(f"  {tag} in cell {e['cell']} [In {e['in']}]: {e['ename']}: {e['evalue'][:120]}")
        else:
            log(f"  ... {len(errors) - n} more errors (all in {out_dir / 'summary.json'})")
            break
    for p in res["problems"]:
        log(f"  PROBLEM: {p}")
    for w in res["warnings"]:
        log(f"  warning (not a failure) in {w}")
    if res["pip"]["changed"] or res["pip"]["added"] or res["pip"]["removed"]:
        log(f"  pip after the run: changed {res['pip']['changed'] or '-'}; added {res['pip']['added'] or '-'}"
            f"; removed {res['pip']['removed'] or '-'}")
    log(f"  {path.name}: {res['result']} in {res['seconds']} s (executed copy: {out_dir / path.name})")
    return res


# ---------------------------------------------------------------------------- main

def select(folder: Path, names: list[str] | None) -> list[Path]:
    every = sorted(folder.glob("*.ipynb"))
    if not every:
        raise SystemExit(f"no notebooks in {folder}")
    if not names:
        return every
    chosen = []
    for name in names:
        key = Path(name).name.removesuffix(".ipynb")
        hits = [p for p in every if p.stem == key] or [p for p in every if p.stem.startswith(key)]
        if len(hits) != 1:
            raise SystemExit(f"{name!r} matches {len(hits)} notebooks in {folder} "
                             f"(have: {', '.join(p.name for p in every)})")
        if hits[0] not in chosen:
            chosen.append(hits[0])
    return chosen


def first_error(res: dict) -> str:
    bad = [e for e in res["errors"] if not e["expected"]]
    if bad:
        e = bad[0]
        more = f" (+{len(bad) - 1} more)" if len(bad) > 1 else ""
        return f"cell {e['cell']}: {e['ename']}: {e['evalue'].splitlines()[0][:90] if e['evalue'] else ''}{more}"
    if res["problems"]:
        return res["problems"][0].splitlines()[0][:110]
    return ""


def table(results: list[dict]) -> str:
    rows = [("notebook", "seconds", "install s", "result", "first error")]
    for r in results:
        inst = r.get("install_seconds")
        rows.append((r["notebook"], "-" if r["seconds"] is None else f"{r['seconds']:.1f}",
                     "-" if inst is None else f"{inst:.1f}", r["result"], first_error(r)))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for i, row in enumerate(rows):
        lines.append("  ".join(c.ljust(w) if j != 1 and j != 2 else c.rjust(w)
                               for j, (c, w) in enumerate(zip(row[:4], widths))) + "  " + row[4])
        if i == 0:
            lines.append("-" * (sum(widths) + 8 + 40))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--notebooks", nargs="+", metavar="NB",
                    help="run only these chapters (file name, stem or prefix: 02, 02_lora, chapters/02_lora.ipynb)")
    ap.add_argument("--folder", type=Path, default=CHAPTERS,
                    help="run the notebooks of this folder instead of chapters/ (e.g. solutions/)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT,
                    help=f"where the executed copies and summary.json go (default {DEFAULT_OUT})")
    ap.add_argument("--venv", type=Path, help="create the environment here (default: a temporary folder)")
    ap.add_argument("--reuse-venv", type=Path, metavar="PATH",
                    help="use the environment at PATH, creating it there first if missing; never deleted")
    ap.add_argument("--keep", action="store_true", help="keep the environment and the temporary folders")
    ap.add_argument("--source", help="what the first cell installs (LLMTAP_SOURCE); default: a wheel of the checkout")
    ap.add_argument("--python", default=sys.executable, help="interpreter the environment is made from")
    ap.add_argument("--cell-timeout", type=int, default=600, help="seconds per cell (default 600)")
    ap.add_argument("--notebook-timeout", type=int, default=1800, help="seconds per notebook (default 1800)")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                    help="notebooks run at once, each job in an environment of its own (default: 2, or 1 on one core)")
    ap.add_argument("--budget", type=int, default=4800,
                    help="seconds for the whole run; notebooks not started by then count as failed (default 4800)")
    args = ap.parse_args(argv)

    t_start = time.monotonic()
    folder = args.folder.resolve()
    notebooks = select(folder, args.notebooks)
    out_dir = args.out.resolve()
    if inside(out_dir, REPO) and out_dir != REPO:
        log(f"note: the output folder {out_dir} is inside the checkout")
    out_dir.mkdir(parents=True, exist_ok=True)
    for p in [*(out_dir / n.name for n in sorted(folder.glob("*.ipynb"))), out_dir / "summary.json"]:
        p.unlink(missing_ok=True)       # only this run's results stay in the output folder

    tmp = Path(tempfile.mkdtemp(prefix="llmtap-colab-like-"))
    if inside(tmp, REPO):
        raise SystemExit(f"the temporary folder {tmp} lies inside the checkout; set TMPDIR elsewhere")
    work_root = tmp / "content"         # Colab's working folder is /content
    reuse = args.reuse_venv is not None
    venv = (args.reuse_venv or args.venv or tmp / "venv").absolute()
    if inside(venv, REPO):
        raise SystemExit(f"the environment {venv} must lie outside the checkout")
    results, status = [], 0
    # Every command runs from the temporary folder: a `python -c` or `-m` started in the checkout
    # would see the checkout's llmtap through sys.path[0].
    here = os.getcwd()
    os.chdir(tmp)
    log(f"colab-like run of {len(notebooks)} notebook(s) from {folder}; temporary folder {tmp}")
    try:
        # One environment per job: a notebook resets and installs into its own, as on Colab.
        jobs = max(1, min(args.jobs, len(notebooks)))
        extra = [tmp / f"venv-{j}" for j in range(2, jobs + 1)]
        with concurrent.futures.ThreadPoolExecutor(jobs) as pool:      # made side by side
            made = [pool.submit(create_venv, other, args.python, tmp) for other in extra]
            if reuse and (venv / BASELINE_FILE).exists():
                log(f"== reusing the environment in {venv}")
                baseline = json.loads((venv / BASELINE_FILE).read_text())
            else:
                baseline = create_venv(venv, args.python, tmp)
            for other, future in zip(extra, made):
                if future.result() != baseline:
                    raise SetupError(f"{other} holds other packages than {venv}: the jobs would not run alike")
        log("preinstalled (the Colab-like runtime):")
        for n in REPORTED:
            if n in baseline:
                log(f"  {n}=={baseline[n]}")
        log(f"  python {run([vpython(venv), '-c', 'import platform; print(platform.python_version())'], timeout=60, quiet=True).strip()}")
        log(f"  ({len(baseline)} packages in all; absent: {', '.join(ABSENT)})")

        source = args.source or str(build_wheel(tmp))
        free = queue.Queue()
        for env_dir in [venv, *extra]:
            free.put(env_dir)

        def one(path: Path) -> dict:
            if time.monotonic() - t_start > args.budget:
                return {"notebook": path.name, "seconds": None, "install_seconds": None,
                        "result": "NOT RUN", "errors": [], "pip": {}, "warnings": [],
                        "problems": [f"the run's budget of {args.budget} s was spent"]}
            env_dir = free.get()
            try:
                return run_notebook(path, work_root, out_dir, env_dir, baseline, source, args)
            finally:
                free.put(env_dir)

        if jobs > 1:
            # torch on every core in each of two kernels slows both down many times over
            args.kernel_threads = max(1, (os.cpu_count() or 1) // jobs)
            log(f"{jobs} notebooks at a time, each in its own environment, {args.kernel_threads} CPU thread(s) each")
        with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
            results.extend(pool.map(one, notebooks))      # in the notebooks' order
    except SetupError as e:
        log(f"\nSETUP FAILED: {e}")
        status = 2
    finally:
        total = time.monotonic() - t_start
        if results:
            log("\n" + table(results))
            log(f"\ntotal wall time {total:.0f} s")
            replaced = {r["notebook"]: r["pip"].get("changed", {}) for r in results if r["pip"].get("changed")}
            if replaced:
                log("pip replaced preinstalled packages: " + "; ".join(f"{k}: {v}" for k, v in replaced.items()))
            else:
                log("pip replaced no preinstalled package")
            log(f"executed notebooks: {out_dir}")
            (out_dir / "summary.json").write_text(json.dumps(
                {"total_seconds": round(total, 1), "venv": str(venv), "notebooks": results}, indent=1))
        os.chdir(here)
        if args.keep or reuse:
            log(f"kept: environment {venv}, temporary folder {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
            if venv.exists() and not inside(venv, tmp):
                shutil.rmtree(venv, ignore_errors=True)
    if status:
        return status
    failed = [r["notebook"] for r in results if r["result"] != "ok"]
    if failed:
        log(f"FAILED: {', '.join(failed)}")
        return 1
    log(f"all {len(results)} notebook(s) ran without an error in a Colab-like runtime")
    return 0


if __name__ == "__main__":
    sys.exit(main())

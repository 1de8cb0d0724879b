"""`pytest` runs on every core (pytest-xdist: ``-n auto --dist loadscope`` in pyproject.toml).

A notebook's cells share one kernel and must run in order, so all of a notebook goes to one
worker; every other test is a unit of its own, so that the long ones (the staleness checks of
tests/test_experiments.py) spread over the workers instead of queueing behind each other."""
import os

# Each worker (and the notebook kernels it starts, which inherit this) gets its share of the
# cores: two workers each running torch on every core slow each other down many times over.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    share = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ.setdefault("OMP_NUM_THREADS", str(share))


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class NotebooksWhole(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::")[0]
            return path if path.endswith(".ipynb") else nodeid

    return NotebooksWhole(config, log)

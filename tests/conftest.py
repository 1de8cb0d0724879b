"""Shared test setup: tests marked ``cuda`` are skipped on machines without a CUDA GPU.

The models in these tests are tiny; one CPU thread runs them fastest (thread hand-offs cost more
than the matrix products, badly so when another process is busy on the same cores).
"""
import pytest
import torch

torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)

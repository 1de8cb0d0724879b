"""Where the code runs: device choice, autocast, synchronised timing, scoped CPU threads, MPS fallbacks."""
import pytest
import torch

from llmtap import device as dev
from llmtap.device import autocast_dtype, cpu_threads, pick_device, seconds, singular_values, synchronize


def test_pick_device_prefer():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("cuda:1") == torch.device("cuda", 1)


def test_pick_device_cpu_here():
    if torch.cuda.is_available() or torch.backends.mps.is_available():
        pytest.skip("an accelerator is present")
    assert pick_device() == torch.device("cpu")


@pytest.mark.cuda
def test_pick_device_cuda():
    assert pick_device().type == "cuda"


def test_autocast_dtype_cpu_and_mps():
    assert autocast_dtype(torch.device("cpu")) is None
    assert autocast_dtype("mps") is None                  # MPS runs in fp32: no bf16 autocast there


@pytest.mark.cuda
def test_autocast_dtype_cuda_and_synchronize():
    assert autocast_dtype(torch.device("cuda")) in (torch.bfloat16, torch.float16)
    x = torch.randn(512, 512, device="cuda")
    y = x @ x
    synchronize("cuda")
    assert torch.isfinite(y).all()


def test_synchronize_and_seconds_on_the_cpu():
    synchronize("cpu")                                    # nothing to wait for, and no error
    calls = []
    t = seconds(lambda: calls.append(1), "cpu", repeats=3, warmup=2)
    assert len(calls) == 5 and t >= 0.0
    with pytest.raises(ValueError, match="repeats"):
        seconds(lambda: None, "cpu", repeats=0)


def test_cpu_threads_gives_the_count_back_even_after_an_error():
    before = torch.get_num_threads()
    other = 2 if before == 1 else 1                       # a count that differs from the current one
    with cpu_threads(other):
        assert torch.get_num_threads() == other
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError):
        with cpu_threads(other):
            raise RuntimeError("inside")
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads"):
        with cpu_threads(0):
            pass
    with cpu_threads(other, device="cuda"):               # a GPU run keeps its thread settings
        assert torch.get_num_threads() == before
    with cpu_threads(other, device=torch.device("cpu")):
        assert torch.get_num_threads() == other


def test_singular_values_and_the_mps_fallback(monkeypatch, capsys):
    m = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    s = singular_values(m)
    assert torch.allclose(s, torch.linalg.svd(m).S, atol=1e-5) and (s[:-1] >= s[1:]).all()
    # the fallback path, exercised on a CPU: report once, compute on the CPU, return to the device
    dev._told.clear()
    dev._on_cpu_instead("torch.linalg.svdvals", torch.device("mps"))
    dev._on_cpu_instead("torch.linalg.svdvals", torch.device("mps"))
    assert capsys.readouterr().out.count("no mps kernel") == 1
    with pytest.raises(ValueError, match="2-D"):
        singular_values(torch.zeros(2, 2, 2))


@pytest.mark.skipif(not torch.backends.mps.is_available(), reason="needs Apple's MPS")
def test_singular_values_on_mps():
    m = torch.randn(6, 4)
    assert torch.allclose(singular_values(m.to("mps")).cpu(), torch.linalg.svdvals(m), atol=1e-4)

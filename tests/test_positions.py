import math

import pytest
import torch

from llmtap import positions
from llmtap.positions import (Rotary, alibi_bias, alibi_slopes, apply_rope, check_position_kind, interpolated_positions,
                              rope_cos_sin,
                              rope_inv_freq, sinusoidal_table)


# ----------------------------------------------------------------------------- sinusoidal
def test_sinusoidal_table_by_hand():
    d = 8
    table = sinusoidal_table(20, d)
    assert table.shape == (20, d)
    for p in (0, 1, 5, 19):
        for i in range(d // 2):
            w = 1.0 / 10000 ** (2 * i / d)
            assert table[p, 2 * i].item() == pytest.approx(math.sin(p * w), abs=1e-5)
            assert table[p, 2 * i + 1].item() == pytest.approx(math.cos(p * w), abs=1e-5)
    assert torch.equal(table[0, 0::2], torch.zeros(d // 2))
    assert torch.equal(table[0, 1::2], torch.ones(d // 2))


def test_sinusoidal_bad_inputs():
    for args in ((0, 8), (4, 0), (4, 7), (-1, 8)):
        with pytest.raises(ValueError):
            sinusoidal_table(*args)


# ----------------------------------------------------------------------------- ALiBi
def test_alibi_slopes_powers_of_two():
    assert torch.allclose(alibi_slopes(8), torch.tensor([2.0 ** -(i + 1) for i in range(8)]))
    assert torch.allclose(alibi_slopes(4), torch.tensor([1 / 4, 1 / 16, 1 / 64, 1 / 256]))
    assert torch.allclose(alibi_slopes(1), torch.tensor([1 / 256]))
    assert torch.allclose(alibi_slopes(2), torch.tensor([1 / 16, 1 / 256]))
    for n in (1, 2, 4, 8, 16, 32):
        s = alibi_slopes(n)
        assert s.shape == (n,)
        assert s[-1].item() == pytest.approx(1 / 256)
        # geometric with ratio a^-1, a^n = 256
        a = 256 ** (1 / n)
        assert s[0].item() == pytest.approx(1 / a)
        if n > 1:
            assert torch.allclose(s[1:] / s[:-1], torch.full((n - 1,), 1 / a))


@pytest.mark.parametrize("n", [3, 5, 6, 7, 12, 20])
def test_alibi_slopes_non_powers_of_two(n):
    lower = 2 ** int(math.floor(math.log2(n)))
    s = alibi_slopes(n)
    assert s.shape == (n,)
    first = [(256 ** (-1 / lower)) ** (i + 1) for i in range(lower)]
    double = [(256 ** (-1 / (2 * lower))) ** (i + 1) for i in range(2 * lower)]
    rest = double[0::2][: n - lower]
    assert torch.allclose(s, torch.tensor(first + rest))
    assert len(set(s.tolist())) == n, "slopes are distinct"


def test_alibi_slopes_6_explicit():
    # lower = 4: 1/4, 1/16, 1/64, 1/256; from 8 heads (1/2, 1/4, ..., 1/256) every other: 1/2, 1/8
    assert torch.allclose(alibi_slopes(6), torch.tensor([1 / 4, 1 / 16, 1 / 64, 1 / 256, 1 / 2, 1 / 8]))


def test_alibi_bias():
    H, T = 4, 6
    bias = alibi_bias(H, T)
    m = alibi_slopes(H)
    assert bias.shape == (H, T, T)
    for h in range(H):
        assert torch.equal(torch.diagonal(bias[h]), torch.zeros(T))
        for i in range(T):
            for j in range(T):
                assert bias[h, i, j].item() == pytest.approx(-m[h].item() * (i - j))
    # past keys are penalised more the further back they are
    assert (bias[:, -1, :-1].diff(dim=-1) > 0).all()


def test_alibi_bias_queries_are_the_last_keys():
    H, q, k = 2, 3, 7
    bias = alibi_bias(H, q, k)
    m = alibi_slopes(H)
    assert bias.shape == (H, q, k)
    for h in range(H):
        for i in range(q):
            for j in range(k):
                assert bias[h, i, j].item() == pytest.approx(-m[h].item() * ((k - q + i) - j))
    assert torch.allclose(bias, alibi_bias(H, k)[:, -q:])


def test_alibi_bad_inputs():
    for n in (0, -2, 2.0, "4"):
        with pytest.raises(ValueError):
            alibi_slopes(n)


# ----------------------------------------------------------------------------- RoPE
def _rotate(x, pos, inv_freq):
    cos, sin = rope_cos_sin(torch.tensor([pos]), inv_freq)
    x = x.view(1, 1, 1, -1)
    out, _ = apply_rope(x, x, cos, sin)
    return out.view(-1)


def test_rope_relative_property():
    torch.manual_seed(0)
    d = 16
    inv_freq, factor = rope_inv_freq(d)
    assert factor == 1.0
    q, k = torch.randn(d), torch.randn(d)
    for diff in (0, 1, 3, 10):
        dots = [torch.dot(_rotate(q, m, inv_freq), _rotate(k, m - diff, inv_freq)).item()
                for m in (diff, diff + 1, diff + 7, diff + 50)]
        assert max(dots) - min(dots) < 1e-3, (diff, dots)
    # and it really depends on the distance
    d1 = torch.dot(_rotate(q, 5, inv_freq), _rotate(k, 4, inv_freq)).item()
    d3 = torch.dot(_rotate(q, 5, inv_freq), _rotate(k, 2, inv_freq)).item()
    assert abs(d1 - d3) > 1e-3


def test_rope_preserves_norm_and_position_zero_is_identity():
    torch.manual_seed(1)
    d = 8
    inv_freq, _ = rope_inv_freq(d)
    x = torch.randn(d)
    assert torch.allclose(_rotate(x, 0, inv_freq), x)
    for p in (1, 7, 100):
        assert _rotate(x, p, inv_freq).norm().item() == pytest.approx(x.norm().item(), rel=1e-5)


def test_rope_inv_freq_values():
    d, base = 8, 10000.0
    inv_freq, _ = rope_inv_freq(d, base)
    want = torch.tensor([base ** (-2 * i / d) for i in range(d // 2)])
    assert torch.allclose(inv_freq, want)


def test_rope_linear_scaling_divides_inv_freq():
    d = 16
    plain, _ = rope_inv_freq(d)
    for factor in (1.0, 2.0, 4.0):
        scaled, attn = rope_inv_freq(d, scaling={"rope_type": "linear", "factor": factor})
        assert torch.allclose(scaled, plain / factor)
        assert attn == 1.0
    legacy, _ = rope_inv_freq(d, scaling={"type": "linear", "factor": 2.0})
    assert torch.allclose(legacy, plain / 2)
    # position interpolation: position p with factor s is position p / s without scaling
    x = torch.randn(d)
    scaled, _ = rope_inv_freq(d, scaling={"rope_type": "linear", "factor": 4.0})
    assert torch.allclose(_rotate(x, 12, scaled), _rotate(x, 3, plain), atol=1e-5)


def test_rope_bad_inputs():
    with pytest.raises(ValueError):
        rope_inv_freq(7)
    with pytest.raises(ValueError):
        rope_inv_freq(0)
    with pytest.raises(ValueError):
        rope_inv_freq(8, base=1.0)
    with pytest.raises(ValueError):
        rope_inv_freq(8, scaling={"rope_type": "linear", "factor": 0.5})
    with pytest.raises(ValueError):
        rope_inv_freq(8, scaling={"rope_type": "yarn-ish", "factor": 2.0})
    with pytest.raises(ValueError):
        rope_inv_freq(8, scaling={"factor": 2.0})


def test_position_kinds():
    for kind in positions.POSITION_KINDS:
        assert check_position_kind(kind) == kind
    for bad in ("foo", "Rope", "", None):
        with pytest.raises(ValueError):
            check_position_kind(bad)


def test_rope_rotation_by_hand():
    # "half" layout: feature i pairs with i + d/2 and the pair turns by the angle p * theta_i:
    # (a, b) -> (a cos - b sin, a sin + b cos)
    d, p = 8, 3
    inv_freq, _ = rope_inv_freq(d)
    x = torch.arange(1.0, d + 1)
    got = _rotate(x, p, inv_freq)
    for i in range(d // 2):
        angle = p * 10000.0 ** (-2 * i / d)
        a, b = x[i].item(), x[i + d // 2].item()
        assert got[i].item() == pytest.approx(a * math.cos(angle) - b * math.sin(angle), abs=1e-5)
        assert got[i + d // 2].item() == pytest.approx(a * math.sin(angle) + b * math.cos(angle), abs=1e-5)


# ----------------------------------------------------------------------------- RoPE scaling vs transformers
def _hf_rope(rope_type, head_dim, base, factor, original, max_positions, seq_len=None, **extra):
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    scaling = {"rope_type": rope_type, "factor": factor, **extra}
    if original is not None:
        scaling["original_max_position_embeddings"] = original
    config = LlamaConfig(hidden_size=head_dim * 4, num_attention_heads=4, head_dim=head_dim, rope_theta=base,
                         max_position_embeddings=max_positions, rope_scaling=scaling)
    return ROPE_INIT_FUNCTIONS[rope_type](config, "cpu", seq_len=seq_len)


@pytest.mark.parametrize("head_dim", [16, 64, 128])
@pytest.mark.parametrize("factor", [1.0, 2.0, 4.0, 8.0])
def test_linear_matches_transformers(head_dim, factor):
    want, want_attn = _hf_rope("linear", head_dim, 10000.0, factor, None, 256)
    got, attn = rope_inv_freq(head_dim, 10000.0, {"rope_type": "linear", "factor": factor})
    assert torch.allclose(got, want, rtol=1e-6, atol=0)
    assert attn == want_attn == 1.0


@pytest.mark.parametrize("head_dim", [16, 64])
@pytest.mark.parametrize("factor", [2.0, 4.0])
@pytest.mark.parametrize("seq_len", [None, 10, 64, 65, 100, 256, 1000])
def test_dynamic_matches_transformers(head_dim, factor, seq_len):
    L = 64     # transformers takes the trained length from max_position_embeddings for "dynamic"
    want, want_attn = _hf_rope("dynamic", head_dim, 10000.0, factor, None, L, seq_len=seq_len)
    got, attn = rope_inv_freq(head_dim, 10000.0, {"rope_type": "dynamic", "factor": factor,
                                                   "original_max_position_embeddings": L}, seq_len=seq_len)
    assert torch.allclose(got, want, rtol=1e-5, atol=0)
    assert attn == want_attn
    plain, _ = rope_inv_freq(head_dim)
    if seq_len is None or seq_len <= L:
        assert torch.allclose(got, plain)              # no change inside the trained window
    else:
        assert (got[1:] < plain[1:]).all()             # longer input: slower rotations


@pytest.mark.parametrize("head_dim", [16, 32, 64, 128])
@pytest.mark.parametrize("factor", [2.0, 4.0, 16.0])
@pytest.mark.parametrize("original", [64, 2048])
@pytest.mark.parametrize("extra", [{}, {"beta_fast": 16, "beta_slow": 2}, {"mscale": 1.0, "mscale_all_dim": 0.5},
                                   {"attention_factor": 1.3}, {"truncate": False}])
def test_yarn_matches_transformers(head_dim, factor, original, extra):
    import inspect
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    if "truncate" in extra and "truncate" not in inspect.getsource(ROPE_INIT_FUNCTIONS["yarn"]):
        pytest.skip("this transformers version has no 'truncate' option for YaRN")
    want, want_attn = _hf_rope("yarn", head_dim, 10000.0, factor, original, int(original * factor), **extra)
    got, attn = rope_inv_freq(head_dim, 10000.0, {"rope_type": "yarn", "factor": factor,
                                                   "original_max_position_embeddings": original, **extra})
    assert torch.allclose(got, want, rtol=1e-5, atol=0)
    assert attn == pytest.approx(want_attn, rel=1e-12)


def test_yarn_keeps_fast_pairs_and_interpolates_slow_ones():
    d, s, L = 64, 4.0, 64
    plain, _ = rope_inv_freq(d)
    got, attn = rope_inv_freq(d, scaling={"rope_type": "yarn", "factor": s, "original_max_position_embeddings": L})
    assert torch.allclose(got[0], plain[0])            # turns >> 32 times within L: unchanged
    assert torch.allclose(got[-1], plain[-1] / s)      # turns < once within L: interpolated
    assert ((got <= plain + 1e-9) & (got >= plain / s - 1e-9)).all()
    assert attn == pytest.approx(0.1 * math.log(s) + 1.0)


def test_ntk_base_scaling():
    d, base = 16, 10000.0
    for s in (1.0, 2.0, 8.0):
        got, attn = rope_inv_freq(d, base, {"rope_type": "ntk", "factor": s})
        new_base = base * s ** (d / (d - 2))
        assert torch.allclose(got, torch.tensor([new_base ** (-2 * i / d) for i in range(d // 2)]))
        assert attn == 1.0
        plain, _ = rope_inv_freq(d, base)
        assert got[0] == plain[0]                                  # the fastest pair is untouched
        assert got[-1].item() == pytest.approx(plain[-1].item() / s, rel=1e-5)   # the slowest is divided by s
    # dynamic NTK at length n is static NTK with the factor s n / L - (s - 1): here 4 * 128 / 32 - 3 = 13
    dyn, _ = rope_inv_freq(d, base, {"rope_type": "dynamic", "factor": 4.0, "original_max_position_embeddings": 32},
                           seq_len=128)
    assert torch.allclose(dyn, rope_inv_freq(d, base, {"rope_type": "ntk", "factor": 13.0})[0])


def test_rope_relative_property_holds_for_every_scaling():
    torch.manual_seed(2)
    d = 16
    q, k = torch.randn(d), torch.randn(d)
    for scaling in ({"rope_type": "linear", "factor": 4.0}, {"rope_type": "ntk", "factor": 4.0},
                    {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32}):
        inv_freq, _ = rope_inv_freq(d, scaling=scaling)
        for diff in (0, 2, 9):
            dots = [torch.dot(_rotate(q, m, inv_freq), _rotate(k, m - diff, inv_freq)).item()
                    for m in (diff, diff + 5, diff + 77, diff + 400)]
            assert max(dots) - min(dots) < 1e-3, (scaling, diff, dots)


def test_linear_scaling_is_position_interpolation():
    # position interpolation f'(x, m) = f(x, m L / L'): rotating by position m with factor s = L'/L
    # is rotating by m / s, a position inside the trained range [0, L)
    d, s = 16, 4.0
    plain, _ = rope_inv_freq(d)
    scaled, _ = rope_inv_freq(d, scaling={"rope_type": "linear", "factor": s})
    pos = torch.arange(256)
    c1, s1 = rope_cos_sin(pos, scaled)
    c2, s2 = rope_cos_sin(pos * 64 / 256, plain)
    assert torch.allclose(c1, c2, atol=1e-5) and torch.allclose(s1, s2, atol=1e-5)


def test_rope_scaling_bad_inputs():
    bad = [({"rope_type": "linear", "factor": 0.9}, None),
           ({"rope_type": "ntk", "factor": 0.0}, None),
           ({"rope_type": "yarn", "factor": 2.0}, None),                          # no original length
           ({"rope_type": "dynamic", "factor": 2.0}, None),
           ({"rope_type": "dynamic", "factor": 2.0, "original_max_position_embeddings": 0}, None),
           ({"rope_type": "dynamic", "factor": 2.0, "original_max_position_embeddings": 8}, -3),
           ({"rope_type": "linear"}, None),                                          # no factor
           ({"rope_type": "longrope", "factor": 2.0}, None)]
    for scaling, seq_len in bad:
        with pytest.raises(ValueError):
            rope_inv_freq(16, scaling=scaling, seq_len=seq_len)
    with pytest.raises(TypeError):
        rope_inv_freq(16, scaling="linear")


# ----------------------------------------------------------------------------- ALiBi, the paper's rule
@pytest.mark.parametrize("n", list(range(1, 65)))
def test_alibi_slopes_follow_the_paper_for_every_head_count(n):
    s = alibi_slopes(n)
    assert s.shape == (n,) and s.dtype == torch.float32
    if n & (n - 1) == 0:   # a power of two: 2^(-8/n), 2^(-16/n), ..., 2^(-8)
        want = [2.0 ** (-8.0 * (h + 1) / n) for h in range(n)]
    else:                  # closest power of two below, then the odd-numbered slopes of 2x that count
        p = 2 ** int(math.log2(n))
        want = [2.0 ** (-8.0 * (h + 1) / p) for h in range(p)]
        want += [2.0 ** (-8.0 * (h + 1) / (2 * p)) for h in range(0, 2 * p, 2)][: n - p]
    assert torch.allclose(s, torch.tensor(want), rtol=1e-6, atol=0)
    assert ((s > 0) & (s < 1)).all() and len(set(s.tolist())) == n


def test_alibi_bool_head_count_rejected():
    with pytest.raises(ValueError):
        alibi_slopes(True)


def test_rotary_tables():
    """Rotary gives the plain tables without scaling, recomputes theta from the length for dynamic
    NTK (unchanged up to L), and multiplies cos and sin by YaRN's attention factor."""
    pos = torch.arange(40)
    plain = Rotary(8)
    assert torch.equal(torch.stack(plain(pos, 40)), torch.stack(rope_cos_sin(pos, rope_inv_freq(8)[0])))
    dyn_scaling = {"rope_type": "dynamic", "factor": 2.0, "original_max_position_embeddings": 16}
    dynamic = Rotary(8, scaling=dyn_scaling)
    assert torch.equal(torch.stack(dynamic(pos[:16], 16)), torch.stack(plain(pos[:16], 16)))
    want = rope_cos_sin(pos, rope_inv_freq(8, scaling=dyn_scaling, seq_len=40)[0])
    assert torch.equal(torch.stack(dynamic(pos, 40)), torch.stack(want))
    yarn = Rotary(8, scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16,
                              "attention_factor": 1.5})
    inv, factor = rope_inv_freq(8, scaling=yarn.scaling)
    cos, sin = rope_cos_sin(pos, inv)
    assert factor == 1.5 and torch.allclose(torch.stack(yarn(pos, 40)), torch.stack((1.5 * cos, 1.5 * sin)))


def test_interpolated_positions_are_pi_frequencies():
    pos = interpolated_positions(256, 64, 256)
    assert pos.dtype == torch.float32 and pos.shape == (256,) and pos[-1].item() == 255 / 4 < 64
    theta, _ = rope_inv_freq(16)
    theta_pi, _ = rope_inv_freq(16, scaling={"rope_type": "linear", "factor": 4.0})
    for a, b in zip(rope_cos_sin(pos, theta), rope_cos_sin(torch.arange(256), theta_pi)):
        assert torch.allclose(a, b, atol=1e-5)
    assert torch.equal(interpolated_positions(5, 8, 8), torch.arange(5.0))          # no extension: unchanged
    for bad in [(0, 64, 128), (8, 64, 32), (8, 64.0, 128), (True, 64, 128)]:
        with pytest.raises(ValueError):
            interpolated_positions(*bad)

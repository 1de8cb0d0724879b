"""Checkers of chapter 00 (the course model): the causal mask, sampling, the next-token loss.

Each one tries several inputs chosen so that the usual mistakes give a different result from the
right answer, and names the mistake when the answer equals what that mistake gives. Sampling is
checked by drawing thousands of tokens in one call (the rows repeated) and comparing the counts
with the distribution softmax(logits / T) over the top k.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .common import StudentCodeError, expect_shape, likely_cause, number_answer, run_check, tensor_answer


# ----------------------------------------------------------------------------- causal mask
def check_causal_mask(causal_mask) -> bool:
    """causal_mask(T) -> (T, T) bool tensor, True where query i may attend to key j (j <= i)."""
    def test(answer):
        for T in (5, 1, 2, 3, 9):
            what = f"causal_mask({T})"
            got = answer(T)
            # the mask goes to F.scaled_dot_product_attention as attn_mask: only a bool tensor masks there
            assert isinstance(got, torch.Tensor), (f"{what} must be a torch.Tensor (it is passed to "
                                                   f"F.scaled_dot_product_attention), got {type(got).__name__}")
            assert got.dtype == torch.bool, (
                f"{what} must be a bool tensor (True = may attend), got {got.dtype}: only a bool mask hides "
                f"keys, a float one is *added* to the attention scores, so 1/0 hides nothing; use dtype=torch.bool")
            got = got.detach().cpu()
            expect_shape(got, (T, T), f"{what}, (query i, key j)")
            past = torch.ones(T, T, dtype=torch.bool).tril()
            if torch.equal(got, past):
                continue
            cause = likely_cause(got, {
                "that is transposed (it lets each query see the future): True must be on and below the "
                "diagonal, j <= i (tril, not triu)": past.T,
                "the diagonal must be True too: a token attends to itself (j <= i, not j < i)": past.tril(-1),
                "that is inverted: True means 'may attend', so the past is True and the future False "
                "(masked_fill wants the opposite, attn_mask wants this)": ~past,
                "the future is not hidden: row i must be False for every j > i": torch.ones(T, T, dtype=torch.bool),
                "row i must be True for every earlier key j <= i, not only for j = i": torch.eye(T, dtype=torch.bool),
            }, past)
            i, j = (int(n) for n in (got != past).nonzero()[0])
            raise AssertionError(
                f"{what}: entry [i={i}, j={j}] should be {bool(past[i, j])} (query {i} "
                f"{'may' if j <= i else 'must not'} see key {j}), got {bool(got[i, j])} "
                f"({int((got != past).sum())} of {T * T} entries differ)" + (f" - {cause}" if cause else ""))
    return run_check("Exercise: causal mask", test, causal_mask,
                     shape_hint="the mask is (T, T): row i is the query, column j the key")


# ----------------------------------------------------------------------------- sampling
N = 4000    # draws per row: a frequency is then within about 0.8% of its probability (one sigma)


def _hinted(hint, fn, *args, when=""):
    """fn(*args), where a crash of the student's code whose message has ``when`` in it (and no hint
    yet) gets ``hint``."""
    try:
        return fn(*args)
    except StudentCodeError as e:
        if e.hint or when not in str(e.error):
            raise
        raise StudentCodeError(e.error, hint) from e.error


def _token_ids(ids, B: int, V: int, what: str) -> torch.Tensor:
    """The answer as a (B,) int64 tensor of ids in [0, V); any integer dtype or a numpy array is fine."""
    if type(ids).__module__ == "numpy":
        ids = torch.as_tensor(ids)
    assert isinstance(ids, torch.Tensor), f"{what} must be a tensor of token ids, got {type(ids).__name__}"
    assert not ids.is_floating_point() and ids.dtype != torch.bool, \
        f"{what}: token ids are integers (argmax and torch.multinomial give int64), got {ids.dtype}"
    if tuple(ids.shape) == (B, 1):
        raise AssertionError(f"{what} must have shape ({B},), one id per row, got ({B}, 1): squeeze(1) it")
    if B == 1 and ids.dim() == 0:
        raise AssertionError(f"{what} must have shape (1,), one id per row, got (): squeeze(1), not squeeze(), "
                             f"keeps the batch dimension of a single row")
    expect_shape(ids, (B,), f"{what}, one id per row")
    ids = ids.detach().cpu().long()
    assert ((ids >= 0) & (ids < V)).all(), f"{what}: ids must lie in [0, {V}), got {ids.tolist()[:8]}"
    return ids


def _draws(answer, rows: torch.Tensor, temperature, top_k, seed: int = 0) -> torch.Tensor:
    """(len(rows), N) ids: N draws for each row, in one call with every row repeated N times."""
    logits = rows.repeat_interleave(N, dim=0)
    before = logits.clone()
    # one top-k threshold for the whole batch leaves the rows with smaller logits nothing to draw
    ids = _hinted("a row of logits has no token left to draw: is one threshold used for the whole batch? "
                  "Each row has its own k-th largest logit, topk(logits, k, dim=-1).values[:, -1:]",
                  answer, logits, temperature, top_k, torch.Generator().manual_seed(seed), when="nan")
    assert torch.equal(logits, before), "do not change logits in place: the caller still needs them"
    what = f"sample_next(logits {tuple(logits.shape)}, temperature={temperature}, top_k={top_k})"
    return _token_ids(ids, len(logits), rows.shape[1], what).view(len(rows), N)


def _probs(row: torch.Tensor, temperature: float, top_k=None) -> torch.Tensor:
    """softmax(row / T) over the k largest logits (ties with the k-th kept), float64."""
    z = row.double() / temperature
    if top_k is not None:
        z = z.masked_fill(z < z.topk(top_k).values[-1], -math.inf)
    return z.softmax(-1)


def _fits(freq: torch.Tensor, p: torch.Tensor) -> bool:
    """Do the frequencies of N draws fit the probabilities p (5 sigma, plus a little)?"""
    return bool(((freq - p).abs() <= 5 * (p * (1 - p) / N).sqrt() + 0.01).all())


def _expect_distribution(ids: torch.Tensor, p: torch.Tensor, where: str, mistakes: dict) -> None:
    """The N draws ``ids`` of one row must fit p; else say by how much, and which mistake fits them."""
    freq = torch.bincount(ids, minlength=len(p)).double() / N
    if _fits(freq, p):
        return
    v = int((freq - p).abs().argmax())
    cause = next((c for c, q in mistakes.items() if _fits(freq, q) and not _fits(q, p)), None)
    raise AssertionError(f"{where}: token {v} came out {freq[v]:.1%} of the time, it should be {p[v]:.1%} "
                         f"(frequencies of {N} draws: {[round(f, 3) for f in freq.tolist()]})"
                         + (f" - {cause}" if cause else ""))


def _top(row: torch.Tensor, k: int) -> set:
    """The ids of the k largest logits of a row (with ties at the k-th, all of them)."""
    return set(torch.nonzero(row >= row.topk(k).values[-1]).view(-1).tolist()) if k > 0 else set()


# top-k inputs: (rows, temperature, k). Every kept token has probability >= 10%, so that in N draws each
# one shows up; rows of one batch have their own thresholds, and no single threshold fits them all.
TOP_K_CASES = (
    (torch.tensor([[2.0, 1.8, 1.5, 1.0, -1.0], [1.7, 0.0, 0.9, 0.6, -0.5]]), 1.0, 3),
    (torch.tensor([[3.0, 1.0, 0.5, 0.0], [2.5, 2.0, 1.5, 0.0]]), 1.0, 2),
    (torch.tensor([[-1.0, -3.0, -2.0, -2.5, -4.0], [0.5, 0.4, 0.3, 2.0, 0.45]]), 1.0, 3),
    (torch.tensor([[1.0, 1.0, 0.0, -1.0]]), 1.0, 2),                      # a tie inside the top 2
    (torch.tensor([[1.0, 1.5, 0.0, -1.0], [0.2, -0.2, 0.0, 1.0]]), 0.5, 2),   # with a temperature
    (torch.tensor([[0.0, 2.0, 1.0]]), 1.0, 1),                             # k = 1: greedy
    (torch.tensor([[0.0, 1.0, 0.5]]), 1.0, 3),                             # k = vocab: no cut
)


def check_sample_next(sample_next) -> bool:
    """sample_next(logits, temperature, top_k, generator) -> (B,) token ids."""
    def test(answer):
        # 1. temperature 0 is greedy: the argmax of each row, whatever top_k and the generator
        logits = torch.tensor([[0.0, 3.0, 1.0, 2.0], [5.0, 1.0, 0.0, 4.9], [-2.0, -1.0, -3.0, -1.5]])
        for top_k in (None, 2):
            what = f"sample_next(logits, temperature=0, top_k={top_k})"
            ids = _token_ids(_hinted("temperature 0 means greedy: return logits.argmax(dim=-1) before dividing "
                                     "by the temperature", answer, logits.clone(), 0.0, top_k, None), 3, 4, what)
            assert torch.equal(ids, logits.argmax(-1)), (f"{what}: temperature 0 must pick the argmax of each row, "
                                                         f"{logits.argmax(-1).tolist()}, got {ids.tolist()}")

        # 2. one row in, one id out, shape (1,); the generator may be None
        _token_ids(answer(torch.tensor([[0.0, 1.0, 2.0]]), 1.0, None, None), 1, 3,
                   "sample_next(logits (1, 3), temperature=1, top_k=None, generator=None)")

        # 3. equal logits: every token equally likely
        flat = torch.zeros(1, 3)
        _expect_distribution(_draws(answer, flat, 1.0, None)[0], torch.full((3,), 1 / 3),
                             "equal logits [0, 0, 0] must be sampled evenly", {
                                 "that always picks the largest logit: at temperature > 0 draw from "
                                 "softmax(logits / T) with torch.multinomial(probs, 1, generator=generator)":
                                     torch.tensor([1.0, 0, 0])})

        # 4. the temperature sharpens (T < 1) or flattens (T > 1) softmax(logits / T)
        row = torch.tensor([[1.0, 2.0, 0.0, 3.0]])
        for T in (0.5, 2.0):
            _expect_distribution(_draws(answer, row, T, None)[0], _probs(row[0], T),
                                 f"logits {row[0].tolist()}, temperature {T}: softmax(logits / {T})", {
                                     "the temperature is ignored: divide the logits by it": _probs(row[0], 1.0),
                                     "that multiplies the logits by the temperature: divide them, logits / T "
                                     "(T < 1 sharpens, T > 1 flattens)": (row[0].double() * T).softmax(-1),
                                     "that always picks the largest logit: draw from softmax(logits / T)":
                                         F.one_hot(row[0].argmax(), 4).double(),
                                 })

        # 5. top-k keeps the k largest logits of each row - all of them, and nothing else
        for rows, T, k in TOP_K_CASES:
            draws = _draws(answer, rows, T, k)
            where = f"top_k={k}, temperature {T}, logits {[[round(x, 3) for x in r] for r in rows.tolist()]}"
            seen = [set(d.unique().tolist()) for d in draws]
            want = [_top(r, k) for r in rows]
            if seen != want:
                everything = set(range(rows.shape[1]))
                mistakes = {
                    f"that keeps only k-1 = {k - 1} tokens: mask the logits strictly below the k-th largest "
                    f"(logits < kth), and take the k-th with topk(logits, k)": [_top(r, k - 1) for r in rows],
                    f"that keeps k+1 = {k + 1} tokens: the k-th largest is topk(logits, k).values[:, -1:]":
                        [_top(r, k + 1) for r in rows],
                    "top_k is ignored: set every logit below the k-th largest of its row to -inf":
                        [everything] * len(rows),
                    "that uses the first row's threshold for every row: each row has its own k-th largest logit, "
                    "topk(logits, k, dim=-1).values[:, -1:]":
                        [set(torch.nonzero(r >= rows[0].topk(k).values[-1]).view(-1).tolist()) for r in rows],
                }
                cause = next((c for c, s in mistakes.items() if s == seen and s != want), None)
                r = next(r for r in range(len(rows)) if seen[r] != want[r])
                extra, missing = sorted(seen[r] - want[r]), sorted(want[r] - seen[r])
                raise AssertionError(
                    f"{where}: row {r} must draw exactly the tokens {sorted(want[r])} (its {k} largest logits), "
                    + (f"but {extra} came out too" if extra else f"but {missing} never came out in {N} draws")
                    + (f" - {cause}" if cause else ""))
            for r in range(len(rows)):
                _expect_distribution(draws[r], _probs(rows[r], T, k), f"{where}, row {r}: softmax(logits / T) "
                                     f"over the top {k}", {
                                         "the temperature is ignored: divide the logits by it": _probs(rows[r], 1.0, k),
                                         "the kept tokens are drawn evenly: draw from softmax over the kept logits "
                                         "(the others set to -inf)": _probs(rows[r], 1.0, k).ceil() / len(want[r])})

        # 6. the draws come from the generator passed in: the same seed gives the same tokens
        logits = torch.randn(64, 6, generator=torch.Generator().manual_seed(3))
        for top_k in (None, 3):
            runs = []
            for global_seed in (1, 2):
                with torch.random.fork_rng(devices=[]):    # leave the notebook's global random state alone
                    torch.manual_seed(global_seed)
                    runs.append(_token_ids(answer(logits.clone(), 1.0, top_k, torch.Generator().manual_seed(5)),
                                           64, 6, f"sample_next(logits (64, 6), temperature=1, top_k={top_k})"))
            assert torch.equal(*runs), (
                f"top_k={top_k}: two calls with generators of the same seed drew different tokens - draw with "
                f"torch.multinomial(probs, 1, generator=generator), not from the global random state")
    return run_check("Exercise: temperature and top-k sampling", test, sample_next,
                     shape_hint="the k-th largest logit of each row must have shape (B, 1) to broadcast against "
                                "logits (B, vocab): topk(logits, k, dim=-1).values[:, -1:]")


# ----------------------------------------------------------------------------- next-token loss
def _cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The cross-entropy of each (B, T', V) logit row against its target, float64, shape (B, T')."""
    return -logits.double().log_softmax(-1).gather(-1, targets[..., None]).squeeze(-1)


def check_next_token_loss(next_token_loss) -> bool:
    """next_token_loss(logits (B, T, V), idx (B, T)) -> mean cross-entropy of predicting idx[:, t+1]."""
    def test(answer):
        g = torch.Generator().manual_seed(1)
        for B, T, V in ((2, 7, 11), (3, 5, 6), (1, 2, 4), (4, 9, 3)):
            logits = (2 * torch.randn(B, T, V, generator=g)).requires_grad_()
            idx = torch.randint(0, V, (B, T), generator=g)
            before = (logits.detach().clone(), idx.clone())
            what = f"next_token_loss(logits {(B, T, V)}, idx {(B, T)})"
            raw = answer(logits, idx)
            assert torch.equal(logits.detach(), before[0]) and torch.equal(idx, before[1]), \
                f"{what}: do not change logits or idx in place"
            ce = _cross_entropy(logits.detach()[:, :-1], idx[:, 1:])     # (B, T-1): one loss per prediction
            want = ce.mean()
            if not isinstance(raw, torch.Tensor):
                number_answer(raw, what)    # a clear message for what is not a number at all
                raise AssertionError(f"{what} must return the loss as a scalar tensor, got {type(raw).__name__}: a "
                                     f"Python number is cut off from the graph and cannot be trained with .backward()")
            got = tensor_answer(raw, what)
            if got.dim() != 0:
                cause = likely_cause(got.mean(), {"that is the loss of every position (reduction='none'): "
                                                  "return its mean": want}) if got.numel() == B * (T - 1) else None
                raise AssertionError(f"{what} must be a scalar tensor (shape ()), the mean over the B (T-1) = "
                                     f"{B * (T - 1)} predictions, got shape {tuple(got.shape)}"
                                     + (f" - {cause}" if cause else ""))
            assert raw.requires_grad, (f"{what}: the loss must stay connected to the logits so that .backward() "
                                       f"can train the model: compute it with torch operations (no .item(), "
                                       f"numpy or torch.tensor(...) on the way)")
            if abs(got.item() - want.item()) <= 1e-5 + 1e-5 * abs(want.item()):
                continue
            x = logits.detach()
            flat_x, flat_y = x.reshape(-1, V)[:-1], idx.reshape(-1)[1:]
            cause = likely_cause(got, {
                "position t must predict token t+1: shift the targets by one, logits[:, :-1] against idx[:, 1:]":
                    _cross_entropy(x, idx).mean(),
                "that is shifted the wrong way: logits[:, :-1] (positions 0 .. T-2) predict idx[:, 1:]":
                    _cross_entropy(x[:, 1:], idx[:, :-1]).mean(),
                "that is the sum: take the mean over the B (T-1) predictions (reduction='mean')": ce.sum(),
                "that shifts the flattened batch, so the last position of a row predicts the first token of the "
                "next: shift inside each row, logits[:, :-1] and idx[:, 1:], then flatten":
                    _cross_entropy(flat_x[None], flat_y[None]).mean(),
                f"that divides by B T = {B * T}: there are B (T-1) = {B * (T - 1)} predictions, take their mean":
                    ce.sum() / (B * T),
                "that averages over the rows but sums over the positions: take the mean over all B (T-1) predictions":
                    ce.sum() / B,
                "F.cross_entropy takes raw logits (it applies log_softmax itself): do not softmax them first":
                    _cross_entropy(x[:, :-1].softmax(-1), idx[:, 1:]).mean(),
                "the logits are not log-probabilities: apply log_softmax before picking the target's entry":
                    -x[:, :-1].double().gather(-1, idx[:, 1:, None]).mean(),
            }, want, atol=1e-5)
            raise AssertionError(f"{what}: expected {want.item():.6f}, got {got.item():.6f}"
                                 + (f" - {cause}" if cause else ""))
    return run_check("Exercise: next-token loss", test, next_token_loss,
                     shape_hint="F.cross_entropy wants logits (N, V) and targets (N,): "
                                "logits[:, :-1].reshape(-1, V) and idx[:, 1:].reshape(-1)")

"""Checker cells for the graded exercises.

Each ``check_*`` function tests a student's answer against the library and prints one line:
correct, not solved yet (the stub still raises NotImplementedError), or what is wrong.
It returns True only for a correct answer.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def run_check(title: str, test) -> bool:
    try:
        test()
    except NotImplementedError:
        print(f"{title}: not solved yet - fill in the exercise cell, run it, then run this cell again.")
        return False
    except AssertionError as e:
        print(f"{title}: not right yet - {e}")
        return False
    except Exception as e:  # the student's code crashed: say how, do not stop the notebook
        print(f"{title}: your code raised {type(e).__name__}: {e}")
        return False
    print(f"{title}: correct ✓")
    return True


# ----------------------------------------------------------------------------- chapter 00
def check_causal_mask(causal_mask) -> bool:
    """causal_mask(T) -> (T, T) bool tensor, True where query i may attend to key j (j <= i)."""
    def test():
        for T in (1, 2, 5, 9):
            m = causal_mask(T)
            assert isinstance(m, torch.Tensor), f"return a torch.Tensor, got {type(m).__name__}"
            assert m.shape == (T, T), f"for T={T} the mask must be ({T}, {T}), got {tuple(m.shape)}"
            assert m.dtype == torch.bool, f"return a bool tensor (True = may attend), got {m.dtype}"
            want = torch.ones(T, T, dtype=torch.bool).tril()
            assert torch.equal(m, want), f"wrong entries for T={T}: row i must be True for j <= i only"
    return run_check("Exercise: causal mask", test)


def check_sample_next(sample_next) -> bool:
    """sample_next(logits, temperature, top_k, generator) -> (B,) token ids."""
    def test():
        logits = torch.tensor([[0.0, 3.0, 1.0, 2.0], [5.0, 1.0, 0.0, 4.9]])
        ids = sample_next(logits, 0.0, None, None)
        assert torch.equal(torch.as_tensor(ids).view(-1), torch.tensor([1, 0])), \
            "temperature 0 must pick the argmax of each row"
        g = torch.Generator().manual_seed(0)
        draws = torch.stack([torch.as_tensor(sample_next(logits, 1.0, 2, g)).view(-1) for _ in range(400)])
        assert set(draws[:, 0].tolist()) <= {1, 3}, "top_k=2 must only ever return the 2 most likely ids"
        assert set(draws[:, 1].tolist()) <= {0, 3}, "top_k=2 must only ever return the 2 most likely ids"
        g = torch.Generator().manual_seed(0)
        flat = torch.zeros(1, 3)
        draws = torch.stack([torch.as_tensor(sample_next(flat, 1.0, None, g)).view(-1) for _ in range(600)])
        counts = torch.bincount(draws.view(-1), minlength=3).float() / 600
        assert (counts - 1 / 3).abs().max() < 0.08, f"equal logits must be sampled evenly, got {counts.tolist()}"
        g = torch.Generator().manual_seed(0)
        hot = torch.stack([torch.as_tensor(sample_next(torch.tensor([[0.0, 1.0]]), 0.25, None, g)).view(-1)
                           for _ in range(400)]).float().mean()
        assert hot > 0.9, "a low temperature must sharpen the distribution (logits / T)"
    return run_check("Exercise: temperature and top-k sampling", test)


def check_next_token_loss(next_token_loss) -> bool:
    """next_token_loss(logits (B, T, V), idx (B, T)) -> mean cross-entropy of predicting idx[:, t+1]."""
    def test():
        g = torch.Generator().manual_seed(1)
        logits = torch.randn(2, 7, 11, generator=g)
        idx = torch.randint(0, 11, (2, 7), generator=g)
        want = F.cross_entropy(logits[:, :-1].reshape(-1, 11), idx[:, 1:].reshape(-1))
        got = next_token_loss(logits, idx)
        assert isinstance(got, torch.Tensor) and got.dim() == 0, "return a scalar tensor"
        shifted_wrong = F.cross_entropy(logits.reshape(-1, 11), idx.reshape(-1))
        assert not torch.allclose(got, shifted_wrong), \
            "position t must predict token t+1: shift the targets by one"
        assert torch.allclose(got, want, atol=1e-5), f"expected {want.item():.4f}, got {float(got):.4f}"
    return run_check("Exercise: next-token loss", test)


# ----------------------------------------------------------------------------- chapter 01
def _toy_lm():
    from .model import GPT, GPTConfig
    from .prompting import CausalLM
    from .tokenizer import Tokenizer
    tok = Tokenizer("abcdefgh→我好感到不。\n")
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=16)).eval()
    return CausalLM(model, tok)


def check_answer_logprob(answer_logprob) -> bool:
    """answer_logprob(lm, context, continuation) -> float: log P(continuation | context)."""
    def test():
        lm = _toy_lm()
        for context, cont in [("我感到", "好。"), ("ab", "c"), ("我", "不好不好")]:
            got = answer_logprob(lm, context, cont)
            assert isinstance(got, (float, int)) or (torch.is_tensor(got) and got.numel() == 1), \
                f"return one number, got {type(got).__name__}"
            want = lm.score([context], [cont])[0, 0].item()
            got = float(got)
            assert abs(got - want) < 1e-3, (f"for context {context!r} and continuation {cont!r} expected "
                                            f"{want:.4f}, got {got:.4f}. Sum log P(token | all before it) over the "
                                            f"continuation's tokens only, with <bos> in front of the context")
    return run_check("Exercise: answer scorer", test)


def check_label_probs(label_probs) -> bool:
    """label_probs(answer_scores, answers, label_words) -> (n, n_labels): softmax over answers, summed per label."""
    def test():
        from .prompting import Verbalizer
        words = {"negative": ["不好", "糟糕"], "neutral": ["一般"], "positive": ["太好了", "好"]}
        v = Verbalizer(words)
        torch.manual_seed(1)
        scores = torch.randn(4, len(v.answers)) * 3
        got = label_probs(scores, v.answers, words)
        assert torch.is_tensor(got), f"return a tensor, got {type(got).__name__}"
        assert got.shape == (4, 3), f"expected shape (4, 3): one row per input, one column per label; got {tuple(got.shape)}"
        assert torch.allclose(got.sum(-1), torch.ones(4), atol=1e-5), "each row must sum to 1"
        want = v.label_probs(scores, "sum")
        assert torch.allclose(got.float(), want, atol=1e-5), \
            "take softmax over the answers first, then add up the probabilities of each label's answers"
        reordered = {"positive": words["positive"], "negative": words["negative"], "neutral": words["neutral"]}
        answers2 = reordered["positive"] + reordered["negative"] + reordered["neutral"]
        perm = [v.answers.index(z) for z in answers2]
        got2 = label_probs(scores[:, perm], answers2, reordered)
        assert torch.allclose(got2.float(), want[:, [2, 0, 1]], atol=1e-5), \
            "columns must follow the order of the labels in label_words, whatever the order of the answers"
    return run_check("Exercise: verbalizer", test)


def check_kshot_prompt(kshot_prompt) -> bool:
    """kshot_prompt(demos, query) -> str in the corpus format 'x→y\n' per demonstration, then 'query→'."""
    def test():
        from .prompting import icl_prompt
        cases = [([], "苹果"), ([("猫", "甲")], "狗"), ([("cat", "red"), ("pear", "blue"), ("dog", "red")], "apple")]
        for demos, query in cases:
            got, want = kshot_prompt(demos, query), icl_prompt(demos, query)
            assert isinstance(got, str), f"return a str, got {type(got).__name__}"
            assert got == want, f"for {len(demos)} demonstrations expected {want!r}, got {got!r}"
    return run_check("Exercise: k-shot prompt", test)


# ----------------------------------------------------------------------------- chapter 02
def check_lora_forward(lora_forward) -> bool:
    """lora_forward(x, W0, A, B, alpha, r) -> W0 x + (alpha / r) B A x, for x of shape (..., d_in)."""
    def test():
        g = torch.Generator().manual_seed(0)
        d_in, d_out, r, alpha = 12, 10, 3, 6.0
        x, W0 = torch.randn(4, 5, d_in, generator=g), torch.randn(d_out, d_in, generator=g)
        A, B = torch.randn(r, d_in, generator=g), torch.randn(d_out, r, generator=g)
        got = lora_forward(x, W0, A, B, alpha, r)
        assert torch.is_tensor(got) and got.shape == (4, 5, d_out), \
            f"expected a tensor of shape (4, 5, {d_out}), got {getattr(got, 'shape', type(got).__name__)}"
        base = x @ W0.T
        assert torch.allclose(lora_forward(x, W0, A, torch.zeros_like(B), alpha, r), base, atol=1e-5), \
            "with B = 0 the result must be exactly W0 x"
        assert not torch.allclose(got, base + (x @ A.T) @ B.T, atol=1e-4) or alpha / r == 1, \
            "scale the update by alpha / r"
        assert torch.allclose(got, base + (alpha / r) * (x @ A.T) @ B.T, atol=1e-4), \
            "h = x W0ᵀ + (alpha / r) (x Aᵀ) Bᵀ"
    return run_check("Exercise: LoRA forward", test)


def check_merge_weight(merge_weight) -> bool:
    """merge_weight(W0, A, B, alpha, r) -> W0 + (alpha / r) B A, without changing W0."""
    def test():
        g = torch.Generator().manual_seed(1)
        W0, A, B = torch.randn(7, 9, generator=g), torch.randn(2, 9, generator=g), torch.randn(7, 2, generator=g)
        keep = W0.clone()
        got = merge_weight(W0, A, B, 4.0, 2)
        assert torch.is_tensor(got) and got.shape == W0.shape, "return a tensor shaped like W0 (d_out, d_in)"
        assert torch.equal(W0, keep), "do not change W0 in place: unmerging needs the original"
        assert torch.allclose(got, W0 + 2.0 * B @ A, atol=1e-5), "merged weight = W0 + (alpha / r) B A"
    return run_check("Exercise: merge", test)


def check_lora_param_count(lora_param_count) -> bool:
    """lora_param_count(model, targets, r) -> trainable parameters LoRA adds to the named linear layers."""
    def test():
        import copy
        from .lora import add_lora, count_parameters
        from .model import GPT, GPTConfig
        model = GPT(GPTConfig(vocab_size=40, block_size=8, n_layer=3, n_head=2, n_embd=24))
        for targets, r in [(["c_attn"], 4), (["c_attn", "c_proj"], 2), (["c_fc"], 8)]:
            got = lora_param_count(model, targets, r)
            want = count_parameters(add_lora(copy.deepcopy(model), targets, r=r))[0]
            assert got == want, f"for targets {targets} and r={r} expected {want}, got {got}: each wrapped " \
                                f"layer adds r (d_in + d_out)"
    return run_check("Exercise: LoRA parameter count", test)


# ----------------------------------------------------------------------------- chapter 03
# (chapter 03 checkers go here)
def check_adapter_forward(adapter_forward) -> bool:
    """adapter_forward(h, W_down, b_down, W_up, b_up) -> h + GELU(h W_downᵀ + b_down) W_upᵀ + b_up,
    with the weights in nn.Linear's layout: W_down (m, d), W_up (d, m)."""
    def test():
        from .adapters import Adapter
        torch.manual_seed(0)
        adapter = Adapter(12, 3)
        h = torch.randn(2, 5, 12)
        args = (adapter.down.weight.detach(), adapter.down.bias.detach())
        zero_up = adapter_forward(h, *args, torch.zeros(12, 3), torch.zeros(12))
        assert torch.is_tensor(zero_up) and zero_up.shape == h.shape, \
            f"return a tensor shaped like h {tuple(h.shape)}, got {getattr(zero_up, 'shape', type(zero_up).__name__)}"
        assert torch.allclose(zero_up, h, atol=1e-6), \
            "with W_up = 0 and b_up = 0 the adapter must return h unchanged: add h back (the residual)"
        with torch.no_grad():
            adapter.up.weight.normal_()
            adapter.up.bias.normal_()
        got = adapter_forward(h, *args, adapter.up.weight.detach(), adapter.up.bias.detach())
        linear = h + (h @ args[0].T + args[1]) @ adapter.up.weight.detach().T + adapter.up.bias.detach()
        assert not torch.allclose(got, linear, atol=1e-4), "apply the nonlinearity f = GELU inside the bottleneck"
        assert torch.allclose(got, adapter(h).detach(), atol=1e-5), \
            "expected h + GELU(h W_downᵀ + b_down) W_upᵀ + b_up"
    return run_check("Exercise: adapter forward", test)


def check_prefix_attention(prefix_attention) -> bool:
    """prefix_attention(q, k, v, prefix_k, prefix_v) -> attention output (B, H, T, d): keys and values
    [P_k ; K], [P_v ; V]; every query sees all prefix entries and the tokens up to its own."""
    def test():
        g = torch.Generator().manual_seed(0)
        B, H, T, P, d = 2, 3, 6, 4, 8
        q, k, v = (torch.randn(B, H, T, d, generator=g) for _ in range(3))
        pk, pv = torch.randn(B, H, P, d, generator=g), torch.randn(B, H, P, d, generator=g)
        got = prefix_attention(q, k, v, pk, pv)
        assert torch.is_tensor(got) and got.shape == (B, H, T, d), \
            f"expected shape {(B, H, T, d)} (one output per token, none for the prefix), got " \
            f"{getattr(got, 'shape', type(got).__name__)}"
        allowed = torch.cat([torch.ones(T, P, dtype=torch.bool), torch.ones(T, T, dtype=torch.bool).tril()], dim=1)
        keys, values = torch.cat([pk, k], dim=2), torch.cat([pv, v], dim=2)
        want = F.scaled_dot_product_attention(q, keys, values, attn_mask=allowed)
        top_left = F.scaled_dot_product_attention(q, keys, values, is_causal=True)
        assert not torch.allclose(got, top_left, atol=1e-4), \
            "is_causal=True on T x (P + T) scores lets query i see only keys 0..i, i.e. the prefix: " \
            "shift the causal part by P"
        no_mask = F.scaled_dot_product_attention(q, keys, values)
        assert not torch.allclose(got, no_mask, atol=1e-4), "the tokens must stay causal: mask the future tokens"
        assert torch.allclose(got, want, atol=1e-5), \
            "query i must see all P prefix entries and tokens 0..i, with scores q kᵀ / sqrt(d)"
    return run_check("Exercise: attention with a prefix", test)


def check_soft_prompt_from_text(soft_prompt_from_text) -> bool:
    """soft_prompt_from_text(embedding_weight, tokenizer, text) -> (n_tokens, n_embd): the embedding rows
    of the text's tokens, as a new tensor; ValueError for characters the tokenizer has no token for."""
    def test():
        from .prefix import soft_prompt_from_text as reference
        from .tokenizer import Tokenizer
        tok = Tokenizer("abcdefgh我好感到不。心情")
        g = torch.Generator().manual_seed(0)
        weight = torch.randn(tok.vocab_size, 8, generator=g)
        keep = weight.clone()
        for text in ("心情", "我感到不好。", "a"):
            got = soft_prompt_from_text(weight, tok, text)
            want = reference(weight, tok, text)
            assert torch.is_tensor(got) and got.shape == want.shape, \
                f"for {text!r} expected shape {tuple(want.shape)} (one row per token), got " \
                f"{getattr(got, 'shape', type(got).__name__)}"
            assert torch.equal(got, want), f"for {text!r}: take the embedding rows of tokenizer.encode(text)"
            got.add_(1.0)
            assert torch.equal(weight, keep), "return a copy: training the soft prompt must not change the embeddings"
        try:
            soft_prompt_from_text(weight, tok, "心情😀")
        except ValueError:
            pass
        else:
            raise AssertionError("a character the tokenizer lacks (😀) must raise ValueError, not fall back to bytes")
    return run_check("Exercise: soft prompt from text", test)


# ----------------------------------------------------------------------------- chapter 04
# (chapter 04 checkers go here)
def check_alibi_slopes(alibi_slopes) -> bool:
    """alibi_slopes(n_heads) -> (n_heads,) tensor of ALiBi head slopes, any head count."""
    from .positions import alibi_slopes as reference

    def test():
        for n in (1, 2, 4, 8, 16, 3, 5, 6, 12, 20):
            got = torch.as_tensor(alibi_slopes(n), dtype=torch.float32).view(-1)
            assert got.shape == (n,), f"for {n} heads return {n} slopes, got shape {tuple(got.shape)}"
            want = reference(n)
            if n & (n - 1) == 0:
                assert torch.allclose(got, want, rtol=1e-5), \
                    f"{n} heads (a power of two): want 1/a, 1/a^2, ... with a^{n} = 256, i.e. {want.tolist()}"
            else:
                assert torch.allclose(got, want, rtol=1e-5), \
                    (f"{n} heads (not a power of two): take the {2 ** (n.bit_length() - 1)} slopes of the power of two "
                     f"below, then every other slope of twice that count; want {[round(x, 5) for x in want.tolist()]}")
    return run_check("Exercise: ALiBi slopes", test)


def check_alibi_bias(alibi_bias) -> bool:
    """alibi_bias(slopes, T) -> (H, T, T) tensor with m_h * -(i - j) for keys j <= i (above the
    diagonal anything: the causal mask hides it)."""
    def test():
        for slopes, T in ((torch.tensor([0.5, 0.25]), 5), (torch.tensor([1 / 4, 1 / 16, 1 / 64, 1 / 256]), 9),
                          (torch.tensor([0.3]), 1)):
            got = torch.as_tensor(alibi_bias(slopes, T)).float()
            assert got.shape == (len(slopes), T, T), f"want shape (H, T, T) = {(len(slopes), T, T)}, got {tuple(got.shape)}"
            i = torch.arange(T)[:, None]
            j = torch.arange(T)[None, :]
            want = -slopes[:, None, None] * (i - j)
            seen = (j <= i).expand_as(got)
            if not torch.allclose(got[seen], want[seen], atol=1e-6):
                if torch.allclose(got[seen], -want[seen], atol=1e-6):
                    raise AssertionError("the sign is flipped: keys further back must get a more negative bias")
                raise AssertionError(f"entry [h, i, j] must be m_h * -(i - j); for T={T}, head 0 row {T - 1} "
                                     f"want {want[0, -1].tolist()}, got {got[0, -1].tolist()}")
    return run_check("Exercise: ALiBi bias", test)


def check_interpolated_positions(interpolated_positions) -> bool:
    """interpolated_positions(T, trained_len, target_len) -> positions 0 .. T-1 squeezed by L / L'."""
    def test():
        for T, L, L_new in ((8, 4, 8), (256, 64, 256), (10, 10, 10), (7, 3, 12)):
            got = torch.as_tensor(interpolated_positions(T, L, L_new)).float().view(-1)
            assert got.shape == (T,), f"want {T} positions, got shape {tuple(got.shape)}"
            want = torch.arange(T).float() * L / L_new
            if L != L_new and torch.allclose(got, torch.arange(T).float() * L_new / L):
                raise AssertionError("that stretches: position m becomes m L / L' (divide by the factor L'/L)")
            assert torch.allclose(got, want, atol=1e-5), \
                f"m' = m L / L': for T={T}, L={L}, L'={L_new} want {want[:5].tolist()}..., got {got[:5].tolist()}..."
        assert torch.as_tensor(interpolated_positions(256, 64, 256)).max() < 64, "every position must fall in [0, L)"
    return run_check("Exercise: interpolated positions", test)


def check_ntk_base(ntk_base) -> bool:
    """ntk_base(base, factor, head_dim) -> base' = base * factor^(d / (d - 2))."""
    def test():
        for base, s, d in ((10000.0, 4.0, 64), (10000.0, 1.0, 16), (500000.0, 8.0, 128)):
            got = float(ntk_base(base, s, d))
            want = base * s ** (d / (d - 2))
            assert abs(got - want) <= 1e-6 * want, f"base={base}, s={s}, d={d}: want {want:.6g}, got {got:.6g}"
    return run_check("Exercise: NTK-aware base", test)


# ----------------------------------------------------------------------------- chapter 05
# (chapter 05 checkers go here)
def check_lcs(lcs) -> bool:
    """lcs(a, b) -> length of the longest common subsequence of two token lists."""
    def test():
        import random
        from .rouge import lcs_length, tokenize
        cases = [([], ["a"]), (["a"], ["a"]), (["a", "b", "c"], ["c", "b", "a"]),
                 (tokenize("写一首关于春天的诗"), tokenize("写一首诗")),
                 ("the cat sat on the mat".split(), "the dog sat on a mat".split())]
        rng = random.Random(0)
        cases += [([rng.choice("abc") for _ in range(rng.randint(0, 12))],
                   [rng.choice("abc") for _ in range(rng.randint(0, 12))]) for _ in range(40)]
        for a, b in cases:
            got, want = lcs(list(a), list(b)), lcs_length(list(a), list(b))
            assert isinstance(got, int) or (hasattr(got, "item") and got.numel() == 1), \
                f"return an int, got {type(got).__name__}"
            assert int(got) == want, (f"LCS({a}, {b}) is {want}, got {int(got)}: L[i][j] = L[i-1][j-1] + 1 when "
                                      f"a[i-1] == b[j-1], else max(L[i-1][j], L[i][j-1])")
            assert int(lcs(list(b), list(a))) == want, "the LCS is symmetric: lcs(b, a) must equal lcs(a, b)"
    return run_check("Exercise: longest common subsequence", test)


def check_keep_instruction(keep_instruction) -> bool:
    """keep_instruction(instruction, pool) -> bool: no blacklisted keyword, ROUGE-L < 0.7 with every pool entry."""
    def test():
        pool = ["Write a short story about a brave dog.", "写一首关于春天的诗。"]
        cases = [("Explain how rainbows form.", True, "a new, different instruction must be kept"),
                 ("Write a short story about a brave cat.", False, "ROUGE-L 0.875 with a pool entry: reject (>= 0.7)"),
                 ("写一首关于夏天的诗。", False, "Chinese near-duplicate (ROUGE-L 0.89): count each Chinese character "
                                        "as a token, e.g. with llmtap.rouge.rouge_l"),
                 ("Describe the image below.", False, "'image' is a blacklisted keyword"),
                 ("根据这张图片写一段说明。", False, "'图片' is a blacklisted keyword"),
                 ("把这个视频的内容总结一下。", False, "'视频' is a blacklisted keyword"),
                 ("Write a story about a dragon and a knight.", True, "ROUGE-L 0.59 < 0.7: keep"),
                 ("Explain how rainbows form in the sky.", True, "an empty pool has nothing to be similar to")]
        for k, (text, want, why) in enumerate(cases):
            got = keep_instruction(text, [] if k == len(cases) - 1 else pool)
            assert isinstance(got, bool), f"return True or False, got {type(got).__name__}"
            assert got == want, f"{text!r}: expected {want} ({why})"
    return run_check("Exercise: the instruction filter", test)


def check_sft_labels(sft_labels) -> bool:
    """sft_labels(prompt_ids, response_ids) -> (x, y): inputs and targets with the prompt masked (-100)."""
    def test():
        from .train import collate_completions
        for p, c in [([1, 10, 11, 12], [20, 21, 2]), ([1], [5]), ([1, 7, 7], [7, 7, 2])]:
            got = sft_labels(list(p), list(c))
            assert isinstance(got, tuple) and len(got) == 2, "return a pair (x, y)"
            x, y = (list(map(int, t)) for t in got)
            want_x, want_y = (t[0].tolist() for t in collate_completions([(p, c)], pad_id=0))
            assert len(x) == len(p) + len(c) - 1, "x is prompt + response without the last token"
            assert x == want_x, f"x should be {want_x}, got {x}"
            assert len(y) == len(x), "y must be as long as x: y[t] is the token x predicts at position t"
            assert y[:len(p) - 1] == want_y[:len(p) - 1], \
                f"the prompt part of y must be -100 (no loss): expected {want_y}, got {y}"
            assert y == want_y, f"expected y = {want_y}, got {y}: position t predicts token t + 1"
    return run_check("Exercise: SFT labels", test)
